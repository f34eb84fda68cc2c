#!/usr/bin/env python3
"""Cross-checks backprop's model files against the reference `safetensors` package.

  safetensors_interop.py --check-ours MODEL.safetensors --expect PARAMS.bin
      Reads a file written by backprop with safetensors.numpy.load_file and
      compares it, bit for bit, with PARAMS.bin: raw little-endian float32,
      layers.0.weight, layers.0.bias, layers.1.weight, ... each row-major.
      Also checks the names, shapes and the metadata backprop writes.

  safetensors_interop.py --write OUT.safetensors [--sizes 6,4,2] [--seed N] [--dump OUT.bin]
      Writes a model with numpy + safetensors (float32, names layers.{i}.weight
      and layers.{i}.bias) and the same raw dump (default OUT.safetensors.bin)
      for backprop to compare with what it loads.

Exit status 0 on success, 1 on a mismatch (with a message on stderr), 2 on
bad usage or a missing package.
"""
import argparse
import json
import struct
import sys

try:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file
except ImportError as e:  # the C++ test skips before calling us without them
    print(f"safetensors_interop: {e}", file=sys.stderr)
    sys.exit(2)


def fail(msg):
    print(f"safetensors_interop: {msg}", file=sys.stderr)
    sys.exit(1)


def layer_names(n_layers):
    for i in range(n_layers):
        yield f"layers.{i}.weight"
        yield f"layers.{i}.bias"


def check_ours(path, expect_path):
    tensors = load_file(path)
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
    if len(tensors) % 2 != 0 or not tensors:
        fail(f"{path}: {len(tensors)} tensors, expected a weight and a bias per layer")
    n_layers = len(tensors) // 2
    names = list(layer_names(n_layers))
    if sorted(tensors) != sorted(names):
        fail(f"{path}: tensor names {sorted(tensors)} != {sorted(names)}")

    sizes = [tensors["layers.0.weight"].shape[1]]
    for i in range(n_layers):
        w, b = tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]
        if w.dtype != np.float32 or b.dtype != np.float32:
            fail(f"{path}: layer {i} dtypes {w.dtype}, {b.dtype}; expected float32")
        if w.ndim != 2 or w.shape[1] != sizes[-1] or b.shape != (w.shape[0],):
            fail(f"{path}: layer {i} shapes {w.shape}, {b.shape} are inconsistent")
        sizes.append(w.shape[0])

    want_meta = {
        "format": "backprop",
        "activation": "sigmoid",
        "cost": "quadratic",
        "sizes": ",".join(str(s) for s in sizes),
    }
    for k, v in want_meta.items():
        if meta.get(k) != v:
            fail(f"{path}: metadata {k!r} is {meta.get(k)!r}, expected {v!r}")
    if "backprop_version" not in meta:
        fail(f"{path}: metadata lacks 'backprop_version'")

    # The data must start 8-byte aligned and the header be compact JSON.
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = f.read(n)
    if n % 8 != 0:
        fail(f"{path}: header length {n} is not a multiple of 8")
    parsed = json.loads(header)
    if list(parsed)[: len(names)] != names or list(parsed)[-1] != "__metadata__":
        fail(f"{path}: header keys are not in the documented order: {list(parsed)}")

    ours = np.concatenate([tensors[k].reshape(-1) for k in names])
    expect = np.fromfile(expect_path, dtype="<f4")
    if ours.size != expect.size:
        fail(f"{path}: {ours.size} values, {expect_path} has {expect.size}")
    a, b = ours.astype("<f4").view("<u4"), expect.view("<u4")
    bad = np.nonzero(a != b)[0]
    if bad.size:
        i = bad[0]
        fail(f"{path}: value {i} differs: {ours[i]!r} (0x{a[i]:08x}) vs {expect[i]!r} (0x{b[i]:08x})")
    print(f"ok: {path}: {n_layers} layers, sizes {sizes}, {ours.size} values bit-exact")


def write(path, sizes, seed, dump):
    rng = np.random.default_rng(seed)
    tensors = {}
    for i in range(len(sizes) - 1):
        tensors[f"layers.{i}.weight"] = rng.standard_normal((sizes[i + 1], sizes[i])).astype(np.float32)
        tensors[f"layers.{i}.bias"] = rng.standard_normal(sizes[i + 1]).astype(np.float32)
    # The package orders data by dtype and name (layers.0.bias before
    # layers.0.weight): a different layout from ours, on purpose.
    save_file(tensors, path, metadata={"format": "np", "written_by": "safetensors_interop.py"})
    flat = np.concatenate([tensors[k].reshape(-1) for k in layer_names(len(sizes) - 1)])
    flat.astype("<f4").tofile(dump)
    print(f"ok: wrote {path} (sizes {sizes}) and {dump}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check-ours", metavar="MODEL")
    mode.add_argument("--write", metavar="OUT")
    ap.add_argument("--expect", metavar="BIN")
    ap.add_argument("--sizes", default="6,4,2")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--dump", metavar="BIN")
    args = ap.parse_args()
    if args.check_ours:
        if not args.expect:
            ap.error("--check-ours needs --expect")
        check_ours(args.check_ours, args.expect)
    else:
        sizes = [int(s) for s in args.sizes.split(",")]
        if len(sizes) < 2 or min(sizes) < 1:
            ap.error("--sizes needs at least two positive widths")
        write(args.write, sizes, args.seed, args.dump or args.write + ".bin")


if __name__ == "__main__":
    main()
