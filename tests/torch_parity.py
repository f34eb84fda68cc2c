#!/usr/bin/env python3
"""Parity with PyTorch: the same initial weights, the same batches in the same
order, 100 steps of each optimizer; the weights must agree within 1e-4.

    python3 tests/torch_parity.py path/to/libbackprop.so

Runs the library through ctypes (CPU backend) and torch.optim side by side.
Where torch is not importable it prints why and exits 77 (ctest: skipped);
CI need not install torch.
"""
import ctypes as C
import math
import random
import sys

SKIP = 77

try:
    import torch
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"torch_parity: skipped: torch is not importable ({e})")
    sys.exit(SKIP)

if len(sys.argv) != 2:
    print(__doc__)
    sys.exit(2)
lib = C.CDLL(sys.argv[1])

SIGMOID, TANH, RELU, IDENTITY, SOFTMAX = range(5)
QUADRATIC, CROSS_ENTROPY = range(2)
SGD, ADAM, ADAMW, RPROP = range(4)


class Desc(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("version", C.c_uint32), ("n_sizes", C.c_int),
                ("sizes", C.POINTER(C.c_int)), ("seed", C.c_uint64),
                ("activations", C.POINTER(C.c_int)), ("cost", C.c_int), ("optimizer", C.c_int),
                ("math", C.c_int), ("deterministic", C.c_int), ("cuda_graphs", C.c_int),
                ("kernels", C.c_int), ("products", C.c_int)]


class OptConfig(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("version", C.c_uint32), ("kind", C.c_int),
                ("momentum", C.c_double), ("nesterov", C.c_int), ("weight_decay", C.c_double),
                ("beta1", C.c_double), ("beta2", C.c_double), ("eps", C.c_double),
                ("eta_minus", C.c_double), ("eta_plus", C.c_double), ("step_min", C.c_double),
                ("step_max", C.c_double)]


lib.bp_context_create.argtypes = [C.c_int, C.c_int, C.POINTER(C.c_void_p)]
lib.bp_network_desc_init.argtypes = [C.POINTER(Desc), C.c_int, C.POINTER(C.c_int), C.c_uint64]
lib.bp_network_create_ex.argtypes = [C.c_void_p, C.POINTER(Desc), C.POINTER(C.c_void_p)]
lib.bp_optimizer_config_init.argtypes = [C.POINTER(OptConfig), C.c_int]
lib.bp_network_set_optimizer.argtypes = [C.c_void_p, C.POINTER(OptConfig)]
lib.bp_network_get_layer.argtypes = [C.c_void_p, C.c_int, C.POINTER(C.c_float),
                                     C.POINTER(C.c_float)]
lib.bp_train_batch.argtypes = [C.c_void_p, C.POINTER(C.c_float), C.POINTER(C.c_float), C.c_int,
                               C.c_float, C.POINTER(C.c_float)]
lib.bp_network_destroy.argtypes = [C.c_void_p]
lib.bp_context_destroy.argtypes = [C.c_void_p]
lib.bp_context_last_error.argtypes = [C.c_void_p]
lib.bp_context_last_error.restype = C.c_char_p


def floats(values):
    return (C.c_float * len(values))(*values)


def check(st, ctx):
    if st != 0:
        raise RuntimeError(f"status {st}: {lib.bp_context_last_error(ctx).decode()}")


def layer_weights(net, sizes):
    out = []
    for i in range(len(sizes) - 1):
        W = (C.c_float * (sizes[i] * sizes[i + 1]))()
        b = (C.c_float * sizes[i + 1])()
        lib.bp_network_get_layer(net, i, W, b)
        out.append((torch.tensor(list(W)).reshape(sizes[i + 1], sizes[i]), torch.tensor(list(b))))
    return out


def torch_model(sizes, hidden, weights):
    act = {SIGMOID: torch.nn.Sigmoid, TANH: torch.nn.Tanh, RELU: torch.nn.ReLU,
           IDENTITY: torch.nn.Identity}[hidden]
    layers = []
    for i in range(len(sizes) - 1):
        lin = torch.nn.Linear(sizes[i], sizes[i + 1])
        with torch.no_grad():
            lin.weight.copy_(weights[i][0])
            lin.bias.copy_(weights[i][1])
        layers.append(lin)
        if i + 1 < len(sizes) - 1:
            layers.append(act())
    return torch.nn.Sequential(*layers)  # the output activation is in the loss


def torch_loss(z, y, output, cost):
    n = z.shape[0]
    if cost == CROSS_ENTROPY and output == SOFTMAX:
        return torch.nn.functional.cross_entropy(z, y, reduction="sum") / n
    if cost == CROSS_ENTROPY:
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum") / n
    a = torch.softmax(z, dim=1) if output == SOFTMAX else {
        SIGMOID: torch.sigmoid, TANH: torch.tanh, RELU: torch.relu, IDENTITY: lambda t: t}[output](z)
    return ((a - y) ** 2).sum() / n


def torch_optimizer(params, kind, lr, cfg):
    if kind == SGD:
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=bool(cfg.nesterov),
                               weight_decay=cfg.weight_decay)
    if kind == ADAM:
        return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    if kind == ADAMW:
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    return torch.optim.Rprop(params, lr=lr)


def run(case, ctx):
    name, sizes, hidden, output, cost, kind, lr, batch, tweak = case
    n, steps = 200, 100
    rng = random.Random(7)
    X = [rng.uniform(-1, 1) for _ in range(n * sizes[0])]
    Y = []
    for e in range(n):
        if output == SOFTMAX:
            row = [0.0] * sizes[-1]
            row[rng.randrange(sizes[-1])] = 1.0
        else:
            row = [rng.uniform(0, 1) for _ in range(sizes[-1])]
        Y += row
    acts = (C.c_int * (len(sizes) - 1))(*([hidden] * (len(sizes) - 2) + [output]))
    csizes = (C.c_int * len(sizes))(*sizes)
    desc = Desc()
    lib.bp_network_desc_init(C.byref(desc), len(sizes), csizes, 42)
    desc.activations = acts
    desc.cost = cost
    desc.optimizer = kind
    net = C.c_void_p()
    check(lib.bp_network_create_ex(ctx, C.byref(desc), C.byref(net)), ctx)
    try:
        cfg = OptConfig()
        lib.bp_optimizer_config_init(C.byref(cfg), kind)
        tweak(cfg)
        check(lib.bp_network_set_optimizer(net, C.byref(cfg)), ctx)
        model = torch_model(sizes, hidden, layer_weights(net, sizes))
        opt = torch_optimizer(model.parameters(), kind, lr, cfg)
        Xt = torch.tensor(X).reshape(n, sizes[0])
        Yt = torch.tensor(Y).reshape(n, sizes[-1])
        for s in range(steps):
            start = (s * batch) % n
            k = min(batch, n - start)
            xb, yb = X[start * sizes[0]:(start + k) * sizes[0]], Y[start * sizes[-1]:(start + k) * sizes[-1]]
            check(lib.bp_train_batch(net, floats(xb), floats(yb), k, lr, None), ctx)
            opt.zero_grad()
            torch_loss(model(Xt[start:start + k]), Yt[start:start + k], output, cost).backward()
            opt.step()
        ours = layer_weights(net, sizes)
        theirs = [m for m in model if isinstance(m, torch.nn.Linear)]
        worst = max(max((ours[i][0] - theirs[i].weight.detach()).abs().max().item(),
                        (ours[i][1] - theirs[i].bias.detach()).abs().max().item())
                    for i in range(len(sizes) - 1))
        ok = worst <= 1e-4 and math.isfinite(worst)
        print(f"{'ok  ' if ok else 'FAIL'} {name}: largest weight difference after {steps} steps "
              f"{worst:.3g}")
        return ok
    finally:
        lib.bp_network_destroy(net)


def set_fields(**kw):
    def tweak(cfg):
        for k, v in kw.items():
            setattr(cfg, k, v)
    return tweak


CASES = [
    ("sgd (the seed's model)", [6, 16, 4], SIGMOID, SIGMOID, QUADRATIC, SGD, 0.5, 20, set_fields()),
    ("sgd momentum nesterov weight decay, relu, softmax + cross-entropy", [6, 16, 12, 4], RELU,
     SOFTMAX, CROSS_ENTROPY, SGD, 0.05, 20, set_fields(momentum=0.9, nesterov=1, weight_decay=1e-3)),
    ("adam, tanh, sigmoid + cross-entropy", [6, 16, 4], TANH, SIGMOID, CROSS_ENTROPY, ADAM, 1e-3,
     20, set_fields()),
    ("adam weight decay, relu, softmax + quadratic", [6, 16, 4], RELU, SOFTMAX, QUADRATIC, ADAM,
     1e-3, 20, set_fields(weight_decay=1e-2)),
    ("adamw, relu, softmax + cross-entropy", [6, 16, 12, 4], RELU, SOFTMAX, CROSS_ENTROPY, ADAMW,
     1e-3, 20, set_fields()),
    ("rprop (full batch), tanh, identity + quadratic", [6, 16, 4], TANH, IDENTITY, QUADRATIC,
     RPROP, 0.01, 200, set_fields()),
]


def main():
    torch.manual_seed(0)
    ctx = C.c_void_p()
    check(lib.bp_context_create(1, 0, C.byref(ctx)), None)  # the CPU backend
    try:
        results = [run(case, ctx) for case in CASES]
    finally:
        lib.bp_context_destroy(ctx)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
