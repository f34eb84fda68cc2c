#!/usr/bin/env bash
# test_recipe.sh - end-to-end tests of train's recipe options (activations,
# cost, optimizers, schedules, shuffling, validation and early stopping,
# --init, --standardize, --epochs 0) and of the model files they write, as
# eval, predict and info read them back; eval --confusion; regression.
#
# Usage: test_recipe.sh BACKPROP_BINARY WORK_DIR [PYTHON3]
# Registered with CTest as "cli_recipe" (src/cli/CMakeLists.txt). Synthetic
# data only; runs in seconds on the CPU backend.
set -u

BP=${1:?usage: test_recipe.sh BACKPROP_BINARY WORK_DIR [PYTHON3]}
WORK=${2:?usage: test_recipe.sh BACKPROP_BINARY WORK_DIR [PYTHON3]}
PY=${3:-python3}
. "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
# py EXPR...: a Python expression that must be true (json and st are loaded).
py() { "$PY" -c "import json, sys; sys.path.insert(0, '.'); from st import *; sys.exit(0 if ($1) else 1)"; }

# ---- Data and helpers -----------------------------------------------------------
"$PY" - <<'EOF' || { echo "FAIL: cannot generate the test data" >&2; exit 1; }
import random

def example(rng, n_in, n_classes):
    c = rng.randrange(n_classes)
    x = [min(1.0, max(0.0, 0.5 + 0.35 * ((k % n_classes) == c) - 0.15 + rng.gauss(0, 0.12)))
         for k in range(n_in)]
    return x, c

rng = random.Random(11)
for name, n, off, scale in (("train.csv", 600, 0, 1), ("test.csv", 200, 0, 1),
                           ("far.csv", 600, 100, 50), ("fartest.csv", 200, 100, 50)):
    with open(name, "w") as f:
        f.write(",".join("x%d" % k for k in range(8)) + ",label\n")
        for _ in range(n):
            x, c = example(rng, 8, 3)
            # far*.csv: inputs far from [0, 1] (offset 100, scale 50), where
            # --standardize matters.
            f.write(",".join("%.5f" % (off + scale * v) for v in x) + ",%d\n" % c)
# Regression: y = sum of the inputs / 4, with noise.
for name, n in (("reg.csv", 400), ("regtest.csv", 100)):
    with open(name, "w") as f:
        for _ in range(n):
            x = [rng.uniform(-1, 1) for _ in range(4)]
            f.write(",".join("%.5f" % v for v in x) + ",%.5f\n" % (sum(x) / 4 + rng.gauss(0, 0.01)))

with open("st.py", "w") as f:
    f.write('''
import json, struct
def st_read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    data = b[8 + n:]
    return h, meta, {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in h.items()}
def meta(path, key):
    return st_read(path)[1].get(key)
def layers(path):
    t = st_read(path)[2]
    return {k: v for k, v in t.items() if k.startswith("layers.")}
def same_layers(a, b):
    return layers(a) == layers(b)
def js(path):
    return json.load(open(path))
def st_write(path, tensors, meta):
    header, data = {}, b""
    for k, (shape, vals) in tensors.items():
        raw = struct.pack("<%df" % len(vals), *vals)
        header[k] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta is not None:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
''')
EOF

T=("$BP" train --data train.csv --test test.csv --backend cpu --hidden 16 -q)

# ---- Usage errors -----------------------------------------------------------------
expect_rc 2 "unknown activation" -- "${T[@]}" --activation swish
check "unknown activation: the choices are named" grep -q "sigmoid|tanh|relu|identity" err.txt
expect_rc 2 "softmax on hidden layers" -- "${T[@]}" --activation softmax
expect_rc 2 "unknown output" -- "${T[@]}" --output gelu
expect_rc 2 "unknown cost" -- "${T[@]}" --cost hinge
expect_rc 2 "cross-entropy on a relu output" -- "${T[@]}" --cost cross-entropy --output relu
expect_rc 2 "unknown optimizer" -- "${T[@]}" --optimizer lbfgs
expect_rc 2 "momentum with adam" -- "${T[@]}" --optimizer adam --momentum 0.9
expect_rc 2 "nesterov without momentum" -- "${T[@]}" --nesterov
expect_rc 2 "negative weight decay" -- "${T[@]}" --weight-decay -1
expect_rc 2 "bad schedule" -- "${T[@]}" --lr-schedule step:0:0.5
expect_rc 2 "bad schedule name" -- "${T[@]}" --lr-schedule linear
expect_rc 2 "bad warmup" -- "${T[@]}" --warmup -1
expect_rc 2 "validation fraction 1" -- "${T[@]}" --validation 1
expect_rc 2 "validation fraction 0" -- "${T[@]}" --validation 0
expect_rc 2 "early stop without validation" -- "${T[@]}" --early-stop 3
expect_rc 2 "--epochs 0 without --save" -- "${T[@]}" --epochs 0

# ---- Defaults are the seed's ----------------------------------------------------------
expect_rc 0 "default train" -- "${T[@]}" --epochs 3 --save seed.safetensors --json
cp out.txt seed.json
check "default: sigmoid everywhere" py 'meta("seed.safetensors", "activation") == "sigmoid"'
check "default: quadratic cost" py 'meta("seed.safetensors", "cost") == "quadratic"'
check "default: no optimizer state" py 'meta("seed.safetensors", "optimizer") is None'
check "default: classification" py 'js("seed.json")["task"] == "classification"'

# ---- Activations, output and cost: the file rebuilds the network ------------------
expect_rc 0 "relu + softmax + cross-entropy" -- "${T[@]}" --epochs 5 --activation relu \
  --output softmax --cost cross-entropy --lr 0.1 --save ce.safetensors --json
cp out.txt ce.json
check "activations recorded per layer" py 'meta("ce.safetensors", "activation") == "relu,softmax"'
check "cost recorded" py 'meta("ce.safetensors", "cost") == "cross-entropy"'
check "relu/softmax learns" py 'js("ce.json")["test_accuracy"] > 0.9'
expect_rc 0 "eval of the relu/softmax model" -- "$BP" eval --model ce.safetensors --data test.csv --json
check "eval reproduces the training's test cost and accuracy" \
  py 'abs(js("out.txt")["cost"] - js("ce.json")["test_cost"]) < 1e-6 and js("out.txt")["accuracy"] == js("ce.json")["test_accuracy"]'
expect_rc 0 "predict with the relu/softmax model" -- "$BP" predict --model ce.safetensors --data test.csv
check "softmax outputs sum to 1" py 'all(abs(sum(map(float, l.split())) - 1) < 1e-4 for l in open("out.txt"))'
expect_rc 0 "info shows the activations" -- "$BP" info ce.safetensors
check "info lists relu,softmax" grep -q "relu,softmax" out.txt
expect_rc 0 "cross-entropy alone picks softmax" -- "${T[@]}" --epochs 1 --cost cross-entropy \
  --activation tanh --save ce2.safetensors
check "cross-entropy default output is softmax" py 'meta("ce2.safetensors", "activation") == "tanh,softmax"'

# ---- Optimizers --------------------------------------------------------------------
for o in "sgd --momentum 0.9 --nesterov --weight-decay 0.0001 --lr 0.1" "adam --lr 0.01" \
         "adamw --lr 0.01 --weight-decay 0.05" "rprop --batch 600 --lr 0.01"; do
  expect_rc 0 "--optimizer $o" -- "${T[@]}" --epochs 8 --activation relu --cost cross-entropy \
    --optimizer $o --json --save opt.safetensors
  check "--optimizer $o learns" py 'js("out.txt")["test_accuracy"] > 0.85'
  check "--optimizer $o is recorded" py "meta('opt.safetensors', 'train_optimizer') == '${o%% *}'"
done

# ---- Learning-rate schedules and warmup --------------------------------------------
lrs() { "$PY" -c 'import json,sys; print(" ".join("%.6g" % e["lr"] for e in json.load(open("out.txt"))["history"]))'; }
expect_rc 0 "step schedule" -- "${T[@]}" --epochs 4 --lr 0.4 --lr-schedule step:2:0.5 --json
check "step:2:0.5 halves every 2 epochs" test "$(lrs)" = "0.4 0.4 0.2 0.2"
expect_rc 0 "cosine schedule with warmup" -- "${T[@]}" --epochs 5 --lr 0.4 --lr-schedule cosine \
  --warmup 2 --json
check "warmup ramps, cosine decays" test "$(lrs)" = "0.2 0.4 0.4 0.3 0.1"
expect_rc 0 "constant schedule" -- "${T[@]}" --epochs 2 --lr 0.3 --lr-schedule constant --json
check "constant keeps the rate" test "$(lrs)" = "0.3 0.3"

# ---- --no-shuffle: the shuffle seed no longer matters --------------------------------
expect_rc 0 "--epochs 0 writes the initialized model" -- "${T[@]}" --epochs 0 --seed 4 \
  --save init.safetensors
check "--epochs 0 file has epochs 0" py 'meta("init.safetensors", "epochs") == "0"'
expect_rc 0 "--epochs 0 again" -- "${T[@]}" --epochs 0 --seed 4 --save init2.safetensors
check "--epochs 0 is the seed's initialization" py 'same_layers("init.safetensors", "init2.safetensors")'
NS=("$BP" train --data train.csv --backend cpu -q --epochs 2 --init init.safetensors)
expect_rc 0 "no-shuffle seed 5" -- "${NS[@]}" --no-shuffle --seed 5 --save ns5.safetensors
expect_rc 0 "no-shuffle seed 9" -- "${NS[@]}" --no-shuffle --seed 9 --save ns9.safetensors
expect_rc 0 "shuffled seed 5" -- "${NS[@]}" --seed 5 --save sh5.safetensors
expect_rc 0 "shuffled seed 9" -- "${NS[@]}" --seed 9 --save sh9.safetensors
check "--no-shuffle: the same batches whatever the seed" py 'same_layers("ns5.safetensors", "ns9.safetensors")'
check "shuffled: the seed changes the batches" py 'not same_layers("sh5.safetensors", "sh9.safetensors")'
check "--no-shuffle differs from shuffled" py 'not same_layers("ns5.safetensors", "sh5.safetensors")'

# ---- --init resumes exactly (with the optimizer state) --------------------------------
R=("$BP" train --data train.csv --backend cpu -q --lr 0.01 --lr-schedule step:1:0.8)
N=(--hidden 16 --activation relu --cost cross-entropy --optimizer adam)
expect_rc 0 "4 epochs in one run" -- "${R[@]}" "${N[@]}" --epochs 4 --save whole.safetensors
expect_rc 0 "2 epochs, saved with the optimizer" -- "${R[@]}" "${N[@]}" --epochs 2 \
  --save half.safetensors --save-optimizer
check "optimizer state tensors are in the file" \
  py 'st_read("half.safetensors")[0].get("optimizer.exp_avg_sq.layers.1.bias", {}).get("shape") == [3]'
check "optimizer metadata is in the file" py 'meta("half.safetensors", "optimizer") == "adam" and int(meta("half.safetensors", "optimizer.step")) == 38'
expect_rc 0 "2 more epochs from --init" -- "${R[@]}" --epochs 2 --init half.safetensors \
  --save resumed.safetensors
check "--init + optimizer state = the uninterrupted run" py 'same_layers("whole.safetensors", "resumed.safetensors")'
check "--init continues the epoch count" py 'meta("resumed.safetensors", "epochs") == "4"'
expect_rc 0 "2 epochs, saved without the optimizer" -- "${R[@]}" "${N[@]}" --epochs 2 \
  --save half-plain.safetensors
expect_rc 0 "2 more epochs from --init without state" -- "${R[@]}" --optimizer adam --epochs 2 \
  --init half-plain.safetensors --save cold.safetensors
check "without the state the run differs (the check is not vacuous)" py 'not same_layers("whole.safetensors", "cold.safetensors")'
expect_rc 2 "--init excludes --hidden" -- "${R[@]}" --init half.safetensors --hidden 3
expect_rc 2 "--init excludes --standardize" -- "${R[@]}" --init half.safetensors --standardize
expect_rc 1 "--init of a model of other widths" -- "$BP" train --data reg.csv --targets 1 -q --init half.safetensors

# ---- --validation and --early-stop ------------------------------------------------
expect_rc 0 "--validation" -- "$BP" train --data train.csv --test test.csv --backend cpu \
  --hidden 16 --epochs 3 --validation 0.25 --json
cp out.txt val.json
check "validation examples reported" grep -q "150 validation examples" err.txt
check "validation cost every epoch" py 'all(e["validation_cost"] is not None for e in js("val.json")["history"])'
check "validation reported in the per-epoch line" grep -q "val cost" err.txt
expect_rc 0 "--early-stop" -- "${T[@]}" --epochs 200 --optimizer adam --lr 0.05 --hidden 64 \
  --activation relu --cost cross-entropy --validation 0.3 --early-stop 3 --save es.safetensors --json
cp out.txt es.json
check "early stop: stopped before 200 epochs" py 'js("es.json")["stopped_early"] and js("es.json")["epochs"] < 200'
check "early stop: stopped 3 epochs after the best" py 'js("es.json")["epochs"] == js("es.json")["best_epoch"] + 3'
check "early stop: the best validation cost is the kept model's" \
  py 'js("es.json")["validation_cost"] == min(e["validation_cost"] for e in js("es.json")["history"])'
expect_rc 0 "eval of the early-stopped model" -- "$BP" eval --model es.safetensors --data test.csv --json
check "early stop: the saved model is the best epoch's" \
  py 'abs(js("out.txt")["cost"] - js("es.json")["test_cost"]) < 1e-6'

# --early-stop with --save-optimizer: the kept model's optimizer state is the best
# epoch's too, so the file equals a run that stopped at that epoch by itself.
ES=("${T[@]}" --optimizer adam --lr 0.05 --hidden 64 --activation relu --cost cross-entropy
    --validation 0.3 --save-optimizer --json)
expect_rc 0 "--early-stop --save-optimizer" -- "${ES[@]}" --epochs 200 --early-stop 3 \
  --save es-opt.safetensors
cp out.txt es-opt.json
BEST=$("$PY" -c 'import json; print(json.load(open("es-opt.json"))["best_epoch"])')
expect_rc 0 "the same run stopped at the best epoch ($BEST)" -- "${ES[@]}" --epochs "$BEST" \
  --save at-best.safetensors
check "early stop: the best epoch is not the last (the check is not vacuous)" \
  py 'js("es-opt.json")["epochs"] > js("es-opt.json")["best_epoch"]'
check "early stop: weights and optimizer state are the best epoch's" \
  py 'st_read("es-opt.safetensors")[2] == st_read("at-best.safetensors")[2] and any(k.startswith("optimizer.") for k in st_read("at-best.safetensors")[2])'
check "early stop: the optimizer step is the best epoch's" \
  py 'meta("es-opt.safetensors", "optimizer.step") == meta("at-best.safetensors", "optimizer.step")'

# ---- --standardize ---------------------------------------------------------------
expect_rc 0 "--standardize" -- "$BP" train --data far.csv --test fartest.csv --backend cpu --hidden 16 -q --epochs 5 --standardize --save std.safetensors --json
cp out.txt std.json
check "scaling stored in the model" py 'len(meta("std.safetensors", "input_mean").split(",")) == 8 and len(meta("std.safetensors", "input_std").split(",")) == 8'
check "the mean is the training set's" py 'abs(float(meta("std.safetensors", "input_mean").split(",")[0]) - 125) < 10'
check "--standardize learns inputs far from [0, 1]" py 'js("std.json")["test_accuracy"] > 0.9'
expect_rc 0 "eval applies the scaling" -- "$BP" eval --model std.safetensors --data fartest.csv --json
check "eval of a standardized model matches training" \
  py 'abs(js("out.txt")["cost"] - js("std.json")["test_cost"]) < 1e-6'
expect_rc 0 "predict applies the scaling" -- "$BP" predict --model std.safetensors --data fartest.csv --class
check "predict agrees with eval's accuracy" "$PY" -c '
import sys
pred = [int(l) for l in open("out.txt")]
lab = [int(l.rsplit(",", 1)[1]) for l in list(open("fartest.csv"))[1:]]
acc = sum(p == y for p, y in zip(pred, lab)) / len(lab)
sys.exit(0 if len(pred) == 200 and acc > 0.9 else 1)'
expect_rc 0 "not standardized by default" -- "$BP" train --data far.csv --test fartest.csv \
  --backend cpu --hidden 16 -q --epochs 5 --save nostd.safetensors --json
check "without --standardize the far inputs saturate the sigmoids" py 'js("out.txt")["test_accuracy"] < js("std.json")["test_accuracy"]'
check "no scaling stored by default" py 'meta("nostd.safetensors", "input_mean") is None'
expect_rc 0 "--init keeps the model's scaling" -- "$BP" train --data far.csv --backend cpu -q \
  --epochs 1 --init std.safetensors --save std2.safetensors
check "--init: the scaling is carried over" py 'meta("std2.safetensors", "input_mean") == meta("std.safetensors", "input_mean")'

# ---- Regression: mean squared error, not accuracy -------------------------------------
expect_rc 0 "regression" -- "$BP" train --data reg.csv --test regtest.csv --targets 1 --backend cpu \
  -q --hidden 8 --activation tanh --output identity --epochs 30 --lr 0.05 --save reg.safetensors --json
cp out.txt reg.json
check "regression: task reported" py 'js("reg.json")["task"] == "regression"'
check "regression: no accuracy" py 'js("reg.json")["test_accuracy"] is None'
check "regression: mse = cost / outputs, and small" py 'abs(js("reg.json")["test_mse"] - js("reg.json")["test_cost"]) < 1e-9 and js("reg.json")["test_mse"] < 0.01'
expect_rc 0 "regression progress" -- "$BP" train --data reg.csv --test regtest.csv --targets 1 \
  --backend cpu --epochs 1 --output identity
check "regression: the epoch line reports mse" grep -q "test mse" err.txt
check "regression: the summary reports mse" grep -q "test mse" out.txt
expect_rc 0 "eval of a regression" -- "$BP" eval --model reg.safetensors --data regtest.csv --targets 1
check "eval of a regression prints mse" grep -q "^mse " out.txt
expect_rc 2 "--confusion on a regression" -- "$BP" eval --model reg.safetensors --data regtest.csv \
  --targets 1 --confusion

# ---- eval --confusion ---------------------------------------------------------------
expect_rc 0 "eval --confusion" -- "$BP" eval --model ce.safetensors --data test.csv --confusion
check "confusion matrix printed" grep -q "confusion matrix" out.txt
check "confusion: 3 rows that count every example" "$PY" -c '
import sys
rows = [l.split() for l in open("out.txt").read().splitlines()[3:]]
sys.exit(0 if len(rows) == 3 and sum(int(v) for r in rows for v in r[1:]) == 200 else 1)'
expect_rc 0 "eval --confusion --json" -- "$BP" eval --model ce.safetensors --data test.csv --confusion --json
check "confusion in JSON: diagonal / total = accuracy" \
  py 'abs(sum(js("out.txt")["confusion"][i][i] for i in range(3)) / 200 - js("out.txt")["accuracy"]) < 1e-6'

# ---- Old and malformed model files --------------------------------------------------
"$PY" - <<'EOF'
import sys; sys.path.insert(0, ".")
from st import st_write
t = {"layers.0.weight": ([3, 8], [0.1 * ((i % 5) - 2) for i in range(24)]),
     "layers.0.bias": ([3], [0.0, 0.1, -0.1])}
st_write("old.safetensors", t, {"format": "backprop", "sizes": "8,3"})   # before activations
st_write("bare.safetensors", t, None)                                    # no metadata at all
st_write("swish.safetensors", t, {"activation": "swish"})
st_write("hidden-softmax.safetensors",
         {"layers.0.weight": ([2, 8], [0.1] * 16), "layers.0.bias": ([2], [0, 0]),
          "layers.1.weight": ([3, 2], [0.1] * 6), "layers.1.bias": ([3], [0, 0, 0])},
         {"activation": "softmax,sigmoid"})
EOF
expect_rc 0 "a file without activation metadata loads (sigmoid)" -- "$BP" eval --model old.safetensors --data test.csv
expect_rc 0 "a file without metadata loads" -- "$BP" predict --model bare.safetensors --data test.csv
check "old files are sigmoid networks" py 'all(0 <= float(v) <= 1 for l in open("out.txt") for v in l.split())'
expect_rc 1 "unknown activation in a file" -- "$BP" eval --model swish.safetensors --data test.csv
check "unknown activation: clear message" grep -q 'unknown activation "swish"' err.txt
expect_rc 1 "softmax on a hidden layer in a file" -- "$BP" info hidden-softmax.safetensors
check "hidden softmax: clear message" grep -q "softmax on hidden layer 0" err.txt

harness_end
