#!/usr/bin/env python3
"""torch_step.py - the PyTorch peer of bench_step: the same networks, the same math.

Math (as backprop.h): Linear + Sigmoid on every layer, cost = squared error
summed over the outputs and averaged over the batch
(F.mse_loss(out, y, reduction='sum') / B), plain SGD (torch.optim.SGD, no
momentum, no weight decay), float32 with TF32 off
(torch.backends.cuda.matmul.allow_tf32 = False, matmul precision 'highest'),
weights ~ Normal(0, 1/fan_in), biases 0.

Step timing mirrors bench_step: a data set of n = B*S random examples on the
device (inputs uniform in [0,1), one-hot targets); per epoch a random
permutation is drawn first (not timed, as bench_step subtracts its shuffle),
then S steps, each gathering its batch by index (index_select) and training;
the wall time of the S steps (synchronized at the end) over S, median over the
timed epochs after a warm-up epoch.

Model (--model HIDDEN-OUTPUT-COST-OPTIMIZER, as bench_step's; default
sigmoid-sigmoid-quadratic-sgd, the math above): the hidden layers' and the
output's activation (sigmoid, tanh, relu, identity; softmax on the output),
the cost (quadratic: the sum of squares above; ce: cross-entropy, with a
softmax output F.cross_entropy(z, y, reduction='sum') / B on the logits,
with a sigmoid output F.binary_cross_entropy_with_logits summed / B) and
torch.optim's SGD, Adam, AdamW or Rprop with its defaults and --lr.

Modes: eager; cudagraph (CUDA only: forward, loss, backward and the SGD step
captured once in a torch.cuda.CUDAGraph and replayed; the gather stays outside
the graph); compile (torch.compile of the model and loss; optimizer eager;
only with --compile, it takes a while per shape).

End to end (--e2e DIR): 784-100-10 on the gzipped IDX files in DIR with the
given batch and learning rate, evaluating the test set after every epoch,
until the test accuracy reaches --target.

Without torch it prints how to install a build and writes a "skipped" JSON,
exit status 0.
"""
import argparse
import gzip
import json
import math
import os
import platform
import statistics
import struct
import sys
import time

INSTALL_HINT = ("PyTorch is not installed: pip install torch (PyPI's build runs on the CPU "
                "too)")


def parse_config(s):
    sizes, batch = s.split("@")
    return [int(v) for v in sizes.split("-")], int(batch)


def write_json(path, obj):
    if path:
        with open(path, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")


def skip(args, why):
    print(f"torch_step: skipped: {why}")
    write_json(args.json, {"peer": "torch", "device": args.device, "skipped": why})
    return 0


ACTS = ("sigmoid", "tanh", "relu", "identity", "softmax")


def parse_model(spec):
    words = spec.split("-")
    if (len(words) != 4 or words[0] not in ACTS[:4] or words[1] not in ACTS
            or words[2] not in ("quadratic", "ce") or words[3] not in ("sgd", "adam", "adamw", "rprop")
            or (words[2] == "ce" and words[1] not in ("softmax", "sigmoid"))):
        raise ValueError(f"--model HIDDEN-OUTPUT-COST-OPTIMIZER, e.g. relu-softmax-ce-adamw, not {spec!r}")
    return {"hidden": words[0], "output": words[1], "cost": words[2], "optimizer": words[3]}


def act_module(torch, name):
    return {"sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU,
            "identity": torch.nn.Identity, "softmax": lambda: torch.nn.Softmax(dim=1)}[name]()


def build_model(torch, sizes, device, seed, model=None):
    """The network; with cross-entropy the last activation is left to the loss
    (it takes the logits), as backprop computes the cost from z."""
    model = model or parse_model("sigmoid-sigmoid-quadratic-sgd")
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for i in range(len(sizes) - 1):
        lin = torch.nn.Linear(sizes[i], sizes[i + 1])
        with torch.no_grad():
            lin.weight.normal_(0.0, 1.0 / math.sqrt(sizes[i]), generator=gen)
            lin.bias.zero_()
        last = i + 2 == len(sizes)
        layers.append(lin)
        if not last:
            layers.append(act_module(torch, model["hidden"]))
        elif model["cost"] != "ce":
            layers.append(act_module(torch, model["output"]))
    return torch.nn.Sequential(*layers).to(device)


def make_optimizer(torch, params, model, lr):
    return {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
            "rprop": torch.optim.Rprop}[model["optimizer"]](params, lr=lr)


def make_loss(F, model):
    if model["cost"] == "ce" and model["output"] == "softmax":
        return lambda z, y: F.cross_entropy(z, y, reduction="sum") / z.shape[0]
    if model["cost"] == "ce":
        return lambda z, y: F.binary_cross_entropy_with_logits(z, y, reduction="sum") / z.shape[0]
    return lambda a, y: F.mse_loss(a, y, reduction="sum") / a.shape[0]


def make_data(torch, n, n_in, n_out, device, seed):
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, n_in, generator=gen)
    Y = torch.zeros(n, n_out)
    if n_out == 1:
        Y[:, 0] = torch.randint(0, 2, (n,), generator=gen).float()
    else:
        Y[torch.arange(n), torch.randint(0, n_out, (n,), generator=gen)] = 1.0
    return X.to(device), Y.to(device)


def sync(torch, device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_config(torch, F, sizes, B, mode, args):
    dev = args.device
    S = args.steps
    batch_bytes = B * sizes[0] * 4
    while S > 1 and S * batch_bytes > args.data_cap_mib * 2**20:
        S -= 1
    E = args.epochs
    while E * S < args.min_steps:
        E += 1
    n = B * S
    spec = parse_model(args.model)
    model = build_model(torch, sizes, dev, args.seed, spec)
    X, Y = make_data(torch, n, sizes[0], sizes[-1], dev, args.seed ^ B)
    opt = make_optimizer(torch, model.parameters(), spec, args.lr)
    loss_fn = make_loss(F, spec)

    def loss_of(m, x, y):
        return loss_fn(m(x), y)

    if mode == "eager" or mode == "compile":
        fwd = model
        if mode == "compile":
            fwd = torch.compile(model)

        def step(idx):
            xb = X.index_select(0, idx)
            yb = Y.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            loss = loss_of(fwd, xb, yb)
            loss.backward()
            opt.step()
            return loss
    elif mode == "cudagraph":
        sx = torch.empty(B, sizes[0], device=dev)
        sy = torch.empty(B, sizes[-1], device=dev)
        sx.copy_(X[:B])
        sy.copy_(Y[:B])
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                loss_of(model, sx, sy).backward()
                opt.step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            static_loss = loss_of(model, sx, sy)
            static_loss.backward()
            opt.step()

        def step(idx):
            torch.index_select(X, 0, idx, out=sx)
            torch.index_select(Y, 0, idx, out=sy)
            graph.replay()
            return static_loss
    else:
        raise ValueError(mode)

    times = []
    loss = None
    first_loss = None
    for e in range(E + 1):  # epoch 0 is the warm-up
        perm = torch.randperm(n, device=dev)
        sync(torch, dev)
        t0 = time.perf_counter()
        for k in range(S):
            loss = step(perm[k * B:(k + 1) * B])
        sync(torch, dev)
        dt = (time.perf_counter() - t0) * 1e3
        if e == 0:
            first_loss = float(loss.detach())
        else:
            times.append(dt)
    last = float(loss.detach())
    step_ms = statistics.median(times) / S
    step_min_ms = min(times) / S  # the least disturbed epoch, on a shared machine
    flops = 6.0 * B * sum(sizes[i] * sizes[i + 1] for i in range(len(sizes) - 1))
    return {
        "name": "-".join(map(str, sizes)) + f"@{B}", "sizes": sizes, "batch": B, "mode": mode,
        "model": args.model,
        "steps_per_epoch": S, "epochs": E, "step_ms": step_ms, "step_min_ms": step_min_ms,
        "examples_per_s": B / (step_ms * 1e-3), "tflops": flops / (step_ms * 1e-3) / 1e12,
        "cost_first": first_loss, "cost_last": last,
        "ok": math.isfinite(last),
    }


# ---- end to end ------------------------------------------------------------------

def read_idx(torch, path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    t = torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8)
    return t.reshape(dims)


def find(dirname, base):
    for name in (base + ".gz", base):
        p = os.path.join(dirname, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(os.path.join(dirname, base))


def run_e2e(torch, F, args):
    dev = args.device
    t_load = time.perf_counter()
    sets = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        img = read_idx(torch, find(args.e2e, f"{prefix}-images-idx3-ubyte"))
        lab = read_idx(torch, find(args.e2e, f"{prefix}-labels-idx1-ubyte")).long()
        X = img.reshape(img.shape[0], -1).float() / 255.0
        classes = max(10, int(lab.max()) + 1)
        Y = torch.zeros(X.shape[0], classes)
        Y[torch.arange(X.shape[0]), lab] = 1.0
        sets[part] = (X.to(dev), Y.to(dev), lab.to(dev))
    load_s = time.perf_counter() - t_load
    Xtr, Ytr, _ = sets["train"]
    Xte, _, lte = sets["test"]
    sizes = [Xtr.shape[1], 100, Ytr.shape[1]]
    model = build_model(torch, sizes, dev, args.seed)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    n = Xtr.shape[0]
    B = args.batch
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    print(f"torch end to end: {'-'.join(map(str, sizes))} on {dev}, batch {B}, lr {args.lr}, "
          f"target {args.target}")
    log = []
    train_s = 0.0
    acc = 0.0
    reached = False
    t_wall = time.perf_counter()
    epoch = 0
    while epoch < args.max_epochs and time.perf_counter() - t_wall < args.max_seconds:
        sync(torch, dev)
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=dev, generator=gen)
        cost_sum = torch.zeros((), device=dev)
        for start in range(0, n, B):
            idx = perm[start:start + B]
            xb, yb = Xtr.index_select(0, idx), Ytr.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(xb), yb, reduction="sum") / xb.shape[0]
            loss.backward()
            opt.step()
            cost_sum += loss.detach() * xb.shape[0]
        sync(torch, dev)
        train_s += time.perf_counter() - t0
        epoch += 1
        with torch.no_grad():
            acc = float((model(Xte).argmax(1) == lte).float().mean())
        cost = float(cost_sum) / n
        print(f"  epoch {epoch:3d}  train {train_s:8.3f} s  cost {cost:.5f}  test accuracy {acc:.4f}")
        log.append({"epoch": epoch, "train_s": train_s, "cost": cost, "test_accuracy": acc})
        if acc >= args.target:
            reached = True
            break
    wall_s = time.perf_counter() - t_wall
    return {"epochs_log": log, "e2e": {
        "sizes": sizes, "batch": B, "lr": args.lr, "target": args.target, "reached": reached,
        "epochs": epoch, "train_s": train_s, "wall_s": wall_s, "load_s": load_s,
        "test_accuracy": acc, "n_train": n, "n_test": int(Xte.shape[0])}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--config", action="append", default=[],
                    help="SIZES@B, e.g. 784-100-10@256 (repeatable)")
    ap.add_argument("--modes", default="eager,cudagraph",
                    help="comma list of eager, cudagraph, compile (cudagraph: CUDA only)")
    ap.add_argument("--compile", action="store_true", help="add the torch.compile mode")
    ap.add_argument("--compile-budget", type=float, default=300,
                    help="seconds of torch.compile configurations at most")
    ap.add_argument("--time-budget", type=float, default=0,
                    help="seconds: start no configuration after this (0: no limit)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--min-steps", type=int, default=8)
    ap.add_argument("--data-cap-mib", type=float, default=512)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--model", default="sigmoid-sigmoid-quadratic-sgd",
                    help="HIDDEN-OUTPUT-COST-OPTIMIZER as bench_step's, e.g. relu-softmax-ce-adamw")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--json")
    ap.add_argument("--e2e", metavar="DIR")
    ap.add_argument("--target", type=float, default=0.875)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-epochs", type=int, default=100)
    ap.add_argument("--max-seconds", type=float, default=1800)
    args = ap.parse_args()
    try:
        parse_model(args.model)
    except ValueError as e:
        ap.error(str(e))

    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print(INSTALL_HINT)
        return skip(args, INSTALL_HINT)
    if args.device == "cuda" and not torch.cuda.is_available():
        return skip(args, "torch has no usable CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    out = {"peer": "torch", "torch_version": torch.__version__, "device": args.device,
           "python": platform.python_version(), "threads": torch.get_num_threads(),
           "host": platform.node()}
    if args.device == "cuda":
        out["device_name"] = torch.cuda.get_device_name(0)
        out["cuda"] = torch.version.cuda
    if args.e2e:
        out.update(run_e2e(torch, F, args))
        write_json(args.json, out)
        return 0

    modes = [m for m in args.modes.split(",") if m]
    if args.device != "cuda":
        modes = [m for m in modes if m != "cudagraph"]
    if args.compile and "compile" not in modes:
        modes.append("compile")
    configs = [parse_config(c) for c in args.config] or [([784, 100, 10], 256)]
    results = []
    compile_spent = 0.0
    print(f"torch_step: torch {torch.__version__} on {args.device}"
          f"{' (' + out.get('device_name', '') + ')' if args.device == 'cuda' else ''}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'config':<26} {'mode':<10} {'step ms':>10} {'examples/s':>12} {'TFLOP/s':>9}")
    t_start = time.perf_counter()
    for sizes, B in configs:
        name = "-".join(map(str, sizes)) + f"@{B}"
        for mode in modes:
            if args.time_budget > 0 and time.perf_counter() - t_start > args.time_budget:
                results.append({"name": name, "sizes": sizes, "batch": B, "mode": mode,
                                "skipped": f"time budget of {args.time_budget:g} s spent"})
                continue
            if mode == "compile" and compile_spent > args.compile_budget:
                results.append({"name": name, "sizes": sizes, "batch": B, "mode": mode,
                                "skipped": "compile time budget spent"})
                continue
            t0 = time.perf_counter()
            try:
                r = time_config(torch, F, sizes, B, mode, args)
                print(f"{name:<26} {mode:<10} {r['step_ms']:10.4f} {r['examples_per_s']:12.4g} "
                      f"{r['tflops']:9.4f}", flush=True)
            except Exception as e:  # a mode that does not work here is reported, not fatal
                r = {"name": name, "sizes": sizes, "batch": B, "mode": mode,
                     "error": f"{type(e).__name__}: {e}"[:300]}
                print(f"{name:<26} {mode:<10} failed: {r['error']}", flush=True)
            if mode == "compile":
                compile_spent += time.perf_counter() - t0
            results.append(r)
            if args.device == "cuda":
                torch.cuda.empty_cache()
    out["results"] = results
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
