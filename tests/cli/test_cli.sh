#!/usr/bin/env bash
# test_cli.sh - end-to-end tests of the `backprop` command.
#
# Usage: test_cli.sh BACKPROP_BINARY WORK_DIR [PYTHON3]
# Registered with CTest as "cli" (src/cli/CMakeLists.txt). Every data set is
# synthetic and generated here, so the whole script runs in seconds on the
# CPU backend; nothing depends on Fashion-MNIST being installed.
set -u

BP=${1:?usage: test_cli.sh BACKPROP_BINARY WORK_DIR [PYTHON3]}
WORK=${2:?usage: test_cli.sh BACKPROP_BINARY WORK_DIR [PYTHON3]}
PY=${3:-python3}
. "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

# ---- Synthetic data -----------------------------------------------------------
"$PY" - <<'EOF' || { echo "FAIL: cannot generate the test data" >&2; exit 1; }
import gzip, random, struct

def example(rng, n_in, n_classes):
    c = rng.randrange(n_classes)
    x = [min(1.0, max(0.0, 0.5 + 0.35 * ((k % n_classes) == c) - 0.15 + rng.gauss(0, 0.12)))
         for k in range(n_in)]
    return x, c

rng = random.Random(7)
for name, n in (("train.csv", 600), ("test.csv", 200)):
    with open(name, "w") as f:
        f.write(",".join("x%d" % k for k in range(8)) + ",label\n")
        for _ in range(n):
            x, c = example(rng, 8, 3)
            f.write(",".join("%.5f" % v for v in x) + ",%d\n" % c)

# FANN: 2 outputs (one-hot), 6 inputs.
with open("small.data", "w") as f:
    f.write("300 6 2\n")
    for _ in range(300):
        x, c = example(rng, 6, 2)
        f.write(" ".join("%.5f" % v for v in x) + "\n")
        f.write(" ".join("1" if k == c else "0" for k in range(2)) + "\n")

# A larger set for the Ctrl-C test: one epoch takes a noticeable moment.
with open("big.data", "w") as f:
    f.write("20000 64 4\n")
    for _ in range(20000):
        x, c = example(rng, 64, 4)
        f.write(" ".join("%.3f" % v for v in x) + "\n")
        f.write(" ".join("1" if k == c else "0" for k in range(4)) + "\n")

# An IDX directory (gzip-compressed, as Debian ships Fashion-MNIST): 4x4 images.
import os
os.makedirs("idx", exist_ok=True)
def idx_pair(prefix, n):
    imgs, labels = bytearray(), bytearray()
    for _ in range(n):
        x, c = example(rng, 16, 4)
        imgs += bytes(int(v * 255) for v in x)
        labels.append(c)
    with gzip.open("idx/%s-images-idx3-ubyte.gz" % prefix, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 4, 4) + imgs)
    with gzip.open("idx/%s-labels-idx1-ubyte.gz" % prefix, "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + labels)
idx_pair("train", 400)
idx_pair("t10k", 100)
EOF

# ---- --help, --version -----------------------------------------------------------
expect_rc 0 "--version" -- "$BP" --version
check "--version prints the version" grep -Eq '^backprop [0-9]+\.[0-9]+\.[0-9]+' out.txt
expect_rc 0 "--help" -- "$BP" --help
check "--help lists the commands" grep -q 'train' out.txt
for cmd in train eval predict info; do
  expect_rc 0 "$cmd --help" -- "$BP" "$cmd" --help
  check "$cmd --help shows its usage" grep -q "Usage: backprop $cmd" out.txt
  expect_rc 0 "$cmd -h" -- "$BP" "$cmd" -h
done
expect_rc 0 "help train" -- "$BP" help train
check "train --help mentions the exit status 130" grep -q '130' out.txt

# ---- Usage errors: exit 2, one line naming the problem and the help -------------
expect_rc 2 "no command" -- "$BP"
expect_rc 2 "unknown command" -- "$BP" frobnicate
expect_rc 2 "unknown option" -- "$BP" train --bogus
check "usage error names the option" grep -q -- "--bogus" err.txt
check "usage error points at the help" grep -q "see backprop train --help" err.txt
check "usage error is one line" test "$(wc -l <err.txt)" -eq 1
expect_rc 2 "bad --epochs" -- "$BP" train --data train.csv --epochs 0
check "bad value is named" grep -q -- "--epochs" err.txt
expect_rc 2 "bad --epochs text" -- "$BP" train --data train.csv --epochs ten
expect_rc 2 "bad --lr" -- "$BP" train --data train.csv --lr -1
expect_rc 2 "bad --lr nan" -- "$BP" train --data train.csv --lr nan
expect_rc 2 "bad --batch" -- "$BP" train --data train.csv --batch 0
expect_rc 2 "bad --backend" -- "$BP" train --data train.csv --backend gpu
expect_rc 2 "bad --layers" -- "$BP" train --data train.csv --layers 8,x,3
expect_rc 2 "bad --format" -- "$BP" train --data train.csv --format xml
expect_rc 2 "missing value" -- "$BP" train --data
expect_rc 2 "bad --math" -- "$BP" train --data train.csv --math fp16
check "bad --math is named with the choices" grep -q -- "--math.*fp32|tf32|bf16" err.txt
check "bad --math is one line" test "$(wc -l <err.txt)" -eq 1
expect_rc 2 "--math without a value" -- "$BP" train --data train.csv --math
expect_rc 2 "--nondeterministic takes no value" -- "$BP" train --data train.csv --nondeterministic=1
expect_rc 2 "--layers with --hidden" -- "$BP" train --data train.csv --layers 5 --hidden 5
expect_rc 2 "--test without --data" -- "$BP" train --test test.csv
expect_rc 2 "eval without --model" -- "$BP" eval --data test.csv
check "missing option is named" grep -q -- "--model" err.txt
expect_rc 2 "eval without --data" -- "$BP" eval --model m.safetensors
expect_rc 2 "predict without --model" -- "$BP" predict --data test.csv
expect_rc 2 "info without a file" -- "$BP" info
expect_rc 2 "info with an unknown option" -- "$BP" info --bogus x

# ---- Failures: exit 1 with the library's message ----------------------------------
expect_rc 1 "missing data file" -- "$BP" train --data missing.csv --backend cpu
check "missing file is named" grep -q "missing.csv" err.txt
expect_rc 1 "missing model" -- "$BP" eval --model missing.safetensors --data test.csv
expect_rc 1 "info on a missing model" -- "$BP" info missing.safetensors
printf 'not a model' >junk.safetensors
expect_rc 1 "info on a malformed model" -- "$BP" info junk.safetensors
expect_rc 1 "missing default data set" -- env BACKPROP_FASHION_MNIST="$WORK/nowhere" "$BP" train
check "says how to get Fashion-MNIST" grep -q "apt-get install dataset-fashion-mnist" err.txt
check "in one line" test "$(wc -l <err.txt)" -eq 1
expect_rc 1 "unwritable log" -- "$BP" train --data train.csv --backend cpu --log nodir/log.csv
if ! "$BP" --version | grep -q 'cuda ('; then
  expect_rc 1 "cuda backend in a CPU-only build" -- "$BP" train --data train.csv --backend cuda
fi

# ---- Training: JSON, CSV log, SVG plot, saved model ---------------------------------
TRAIN=("$BP" train --data train.csv --test test.csv --layers 8,16,3 --epochs 6 --batch 16 --lr 1
       --seed 3 --backend cpu)
expect_rc 0 "train" -- "${TRAIN[@]}" --save m.safetensors --log log.csv --plot plot.svg --json
cp out.txt train.json
check "--json output parses" "$PY" -c 'import json,sys; json.load(open(sys.argv[1]))' train.json
check "--json has the keys" "$PY" - train.json <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
for k in ("test_accuracy", "test_cost", "train_cost", "epochs", "seconds", "backend"):
    assert k in d, k
assert d["epochs"] == 6, d["epochs"]
assert d["backend"] == "cpu"
assert d["sizes"] == [8, 16, 3], d["sizes"]
assert 0 <= d["test_accuracy"] <= 1 and d["test_cost"] >= 0 and d["train_cost"] >= 0
assert d["test_accuracy"] > 0.6, d["test_accuracy"]  # the synthetic task is easy
assert len(d["history"]) == 6
EOF
check "the log has a header and one row per epoch" "$PY" - log.csv <<'EOF'
import csv, math, sys
rows = list(csv.reader(open(sys.argv[1])))
assert rows[0] == ["epoch", "train_cost", "test_cost", "test_accuracy", "seconds",
                   "train_accuracy"], rows[0]
assert len(rows) == 7, len(rows)
for i, r in enumerate(rows[1:], 1):
    assert len(r) == 6 and int(r[0]) == i, r
    assert all(math.isfinite(float(v)) for v in r[1:]), r
    assert 0 <= float(r[3]) <= 1 and 0 <= float(r[5]) <= 1, r
assert float(rows[-1][5]) > 0.6, rows[-1]  # the synthetic task is easy
EOF
check "the log's last row matches --json" "$PY" - log.csv train.json <<'EOF'
import csv, json, sys
last = list(csv.reader(open(sys.argv[1])))[-1]
d = json.load(open(sys.argv[2]))
assert float(last[3]) == d["test_accuracy"] and float(last[2]) == d["test_cost"], (last, d)
EOF
check "the plot is well-formed SVG" "$PY" - plot.svg <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
lines = root.findall(".//{http://www.w3.org/2000/svg}polyline")
assert len(lines) == 3, len(lines)  # train cost, test cost, test accuracy
for l in lines:
    assert len(l.get("points").split()) == 6
text = open(sys.argv[1]).read()
assert "href" not in text and "<script" not in text  # self-contained
EOF
expect_rc 0 "info" -- "$BP" info m.safetensors
check "info shows the sizes" grep -q "8,16,3" out.txt
check "info shows the parameter count" grep -q "195" out.txt
check "info shows the epochs" grep -Eq "epochs +6" out.txt
check "info shows the learning rate" grep -Eq "lr +1$" out.txt
expect_rc 0 "info --json" -- "$BP" info --json m.safetensors
check "info --json parses" "$PY" - out.txt <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["sizes"] == [8, 16, 3] and d["parameters"] == 195, d
m = d["metadata"]
for k in ("epochs", "batch", "lr", "seed", "test_accuracy", "test_cost", "train_cost", "data",
          "backend", "date"):
    assert k in m, k
assert m["batch"] == "16" and m["seed"] == "3" and m["data"] == "train.csv", m
EOF

# eval reads the saved model back: the same cost and accuracy as training reported.
expect_rc 0 "eval --json" -- "$BP" eval --model m.safetensors --data test.csv --backend cpu --json
cp out.txt eval.json
check "eval gives training's accuracy and cost" "$PY" - train.json eval.json <<'EOF'
import json, sys
t, e = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert e["accuracy"] == t["test_accuracy"], (e["accuracy"], t["test_accuracy"])
assert e["cost"] == t["test_cost"], (e["cost"], t["test_cost"])
assert e["examples"] == 200
EOF
expect_rc 0 "eval" -- "$BP" eval --model m.safetensors --data test.csv
check "eval prints the accuracy" grep -q "accuracy" out.txt

# predict: one line per example.
expect_rc 0 "predict" -- "$BP" predict --model m.safetensors --data test.csv
check "predict prints one line per example" test "$(wc -l <out.txt)" -eq 200
check "predict prints the 3 outputs" "$PY" -c '
import sys
for line in open(sys.argv[1]):
    v = [float(x) for x in line.split()]
    assert len(v) == 3 and all(0 <= x <= 1 for x in v), line
' out.txt
cp out.txt outputs.txt
expect_rc 0 "predict --class" -- "$BP" predict --model m.safetensors --data test.csv --class
check "predict --class prints one class per example" "$PY" -c '
import sys
classes = [int(l) for l in open(sys.argv[1])]
outs = [[float(x) for x in l.split()] for l in open(sys.argv[2])]
assert len(classes) == 200 and all(0 <= c < 3 for c in classes)
assert classes == [o.index(max(o)) for o in outs]
' out.txt outputs.txt
expect_rc 1 "eval on data of another width" -- "$BP" eval --model m.safetensors --data small.data

# Same seed, same result on the CPU, bit for bit (the seconds aside).
expect_rc 0 "train again" -- "${TRAIN[@]}" --json --quiet
cp out.txt train2.json
check "same seed gives the same result" "$PY" - train.json train2.json <<'EOF'
import json, sys
def strip(d):
    for k in ("seconds", "load_seconds", "model"):
        d.pop(k)
    for h in d["history"]:
        h.pop("seconds")
    return d
a, b = (strip(json.load(open(p))) for p in sys.argv[1:3])
assert a == b, (a, b)
EOF
check "--quiet prints nothing on stderr" test ! -s err.txt
check "the default math mode is fp32, deterministic" "$PY" - train.json <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["math"] == "fp32" and d["deterministic"] is True, (d["math"], d["deterministic"])
EOF

# --cuda-graphs: recorded; the CPU backend ignores it, so the training is the
# default one bit for bit.
expect_rc 0 "train --cuda-graphs" -- "${TRAIN[@]}" --cuda-graphs --json --quiet
check "--cuda-graphs: recorded, and on the CPU the same training" "$PY" - out.txt train.json <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["cuda_graphs"] is True and b["cuda_graphs"] is False, (a["cuda_graphs"], b["cuda_graphs"])
assert [h["train_cost"] for h in a["history"]] == [h["train_cost"] for h in b["history"]]
assert a["test_accuracy"] == b["test_accuracy"]
EOF
expect_rc 2 "--cuda-graphs takes no value" -- "$BP" train --data train.csv --cuda-graphs=1

# --kernels and --products: options passed to the library and recorded; the
# CPU backend ignores them, so the training is the default one bit for bit.
expect_rc 0 "train --kernels fused --products cublaslt" -- "${TRAIN[@]}" --kernels fused \
  --products cublaslt --json --quiet
check "--kernels/--products: recorded, and on the CPU the same training" "$PY" - out.txt train.json <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert (a["kernels"], a["products"]) == ("fused", "cublaslt"), (a["kernels"], a["products"])
assert (b["kernels"], b["products"]) == ("reference", "cublas"), (b["kernels"], b["products"])
assert [h["train_cost"] for h in a["history"]] == [h["train_cost"] for h in b["history"]]
EOF
expect_rc 2 "--kernels takes reference or fused" -- "$BP" train --data train.csv --kernels fastest

# --threads: the CPU context's thread count, recorded; at these sizes every
# pass and product stays on one thread, so the training is the same bit for bit.
expect_rc 0 "train --threads 2" -- "${TRAIN[@]}" --threads 2 --json --quiet
check "--threads: recorded, the same training" "$PY" - out.txt train.json <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["threads"] == 2, a["threads"]
assert [h["train_cost"] for h in a["history"]] == [h["train_cost"] for h in b["history"]]
EOF
expect_rc 2 "--threads must be at least 1" -- "$BP" train --data train.csv --threads 0

# Math modes: bf16 and tf32 are emulated on the CPU backend. They still learn,
# rerun bit for bit, differ from fp32, and are recorded in the outputs.
for mode in bf16 tf32; do
  expect_rc 0 "train --math $mode" -- "${TRAIN[@]}" --math "$mode" --json --save "$mode.safetensors"
  cp out.txt "$mode.json"
  check "--math $mode: recorded and still learns" "$PY" - "$mode.json" "$mode" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["math"] == sys.argv[2] and d["deterministic"] is True, d
assert d["test_accuracy"] > 0.6, d["test_accuracy"]
assert d["history"][-1]["train_cost"] < d["history"][0]["train_cost"], d["history"]
EOF
  check "--math $mode: differs from fp32" "$PY" - "$mode.json" train.json <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert [h["train_cost"] for h in a["history"]] != [h["train_cost"] for h in b["history"]]
EOF
  expect_rc 0 "train --math $mode again" -- "${TRAIN[@]}" --math "$mode" --json --quiet
  check "--math $mode: same seed, same result" "$PY" - "$mode.json" out.txt <<'EOF'
import json, sys
def strip(d):
    for k in ("seconds", "load_seconds", "model"):
        d.pop(k)
    for h in d["history"]:
        h.pop("seconds")
    return d
a, b = (strip(json.load(open(p))) for p in sys.argv[1:3])
assert a == b, (a, b)
EOF
done
expect_rc 0 "info --json on a bf16 model" -- "$BP" info --json bf16.safetensors
check "the model records its math mode" "$PY" - out.txt <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))["metadata"]
assert m["math"] == "bf16" and m["deterministic"] == "true", m
EOF
expect_rc 0 "train --nondeterministic" -- "${TRAIN[@]}" --nondeterministic --json --quiet
check "--nondeterministic is recorded; the CPU gives the fp32 result anyway" "$PY" - out.txt train.json <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["deterministic"] is False and b["deterministic"] is True
for d in (a, b):
    for k in ("seconds", "load_seconds", "model", "deterministic"):
        d.pop(k)
    for h in d["history"]:
        h.pop("seconds")
assert a == b, (a, b)
EOF
expect_rc 0 "train --math bf16 without --quiet" -- "$BP" train --data train.csv --epochs 1 --backend cpu --math bf16
check "the summary names the math mode" grep -q "bf16" out.txt
check "the progress names the math mode" grep -q "bf16 math" err.txt

# Hidden widths only, and the other formats.
expect_rc 0 "--hidden" -- "$BP" train --data train.csv --hidden 5,4 --epochs 1 --backend cpu --json
check "--hidden sizes" "$PY" -c 'import json,sys; assert json.load(open(sys.argv[1]))["sizes"] == [8,5,4,3]' out.txt
# --layers gives all widths; one that disagrees with the data is a usage
# error naming both numbers, never a guess (it used to train 8,5,8,3,3).
expect_rc 2 "--layers not matching the inputs" -- "$BP" train --data train.csv --layers 5,8,3 --epochs 1 --backend cpu
check "--layers: names both input widths" grep -q "starts with 5 but the data has 8 inputs" err.txt
expect_rc 2 "--layers not matching the outputs" -- "$BP" train --data train.csv --layers 8,4 --epochs 1 --backend cpu
check "--layers: names both output widths" grep -q "ends with 4 but the data has 3 outputs" err.txt
expect_rc 2 "--layers with one width" -- "$BP" train --data train.csv --layers 7 --epochs 1 --backend cpu
check "--layers 7: points at --hidden" grep -q -- "--hidden 7" err.txt
expect_rc 0 "FANN data" -- "$BP" train --data small.data --epochs 3 --backend cpu --json
check "FANN sizes and no test set" "$PY" - out.txt <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["sizes"] == [6, 100, 2] and d["test_examples"] == 0 and d["test_accuracy"] is None, d
EOF
expect_rc 0 "IDX directory" -- "$BP" train --data idx --epochs 2 --backend cpu --json --save idx.safetensors
check "IDX directory gives train and test" "$PY" - out.txt <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["train_examples"] == 400 and d["test_examples"] == 100, d
assert d["sizes"][0] == 16 and d["sizes"][-1] == 10, d["sizes"]
EOF
expect_rc 0 "eval on an IDX directory" -- "$BP" eval --model idx.safetensors --data idx --json
check "eval on the t10k files" "$PY" -c 'import json,sys; assert json.load(open(sys.argv[1]))["examples"] == 100' out.txt
expect_rc 0 "IDX images file" -- "$BP" predict --model idx.safetensors --data idx/t10k-images-idx3-ubyte.gz --class
check "predict on an IDX images file" test "$(wc -l <out.txt)" -eq 100
expect_rc 0 "CSV with real-valued targets" -- "$BP" train --data train.csv --targets 1 --epochs 1 --backend cpu --json
check "--targets 1 gives one output" "$PY" -c 'import json,sys; assert json.load(open(sys.argv[1]))["sizes"][-1] == 1' out.txt

# ---- Divergence: a learning rate that would overflow the weights -----------------------
# One input of 1 with a target of 1e18: the gradient is about 1e17, so a
# learning rate of 1e23 would move the weight past FLT_MAX. The library refuses
# the update; the command names the epoch, keeps the model of the epoch
# before (the initial one) and exits 1.
printf '1 1 1\n1\n1e18\n' >div.data
expect_rc 1 "divergence: exit 1" -- "$BP" train --data div.data --layers 1,1 --epochs 3 --batch 1 \
  --lr 1e23 --backend cpu --save div.safetensors --quiet
check "divergence: the epoch is named" grep -q "epoch 1:" err.txt
check "divergence: the last good model is kept" grep -q "keeping the model of epoch 0" err.txt
expect_rc 0 "divergence: the kept model loads" -- "$BP" info div.safetensors
check "divergence: the kept model has finite weights" "$PY" -c '
import struct, json, sys, math
b = open("div.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
vals = struct.unpack("<2f", b[8 + n:8 + n + 8])
sys.exit(0 if all(math.isfinite(v) for v in vals) else 1)'

# ---- Ctrl-C: stops after the epoch, saves, exits 130 --------------------------------
rm -f int.safetensors
"$BP" train --data big.data --hidden 64 --epochs 100000 --batch 8 --backend cpu \
  --save int.safetensors --log int.csv >int.out 2>int.err &
pid=$!
for _ in $(seq 1 600); do
  grep -Eq '^epoch +1/' int.err 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if grep -Eq '^epoch +1/' int.err; then
  kill -INT "$pid"
  wait "$pid"
  rc=$?
  if [ "$rc" -eq 130 ]; then pass; else fail "SIGINT: exit status $rc, expected 130"; fi
  check "SIGINT: the model was saved" test -s int.safetensors
  expect_rc 0 "SIGINT: the saved model loads" -- "$BP" info int.safetensors
  check "SIGINT: the model says it was interrupted" grep -Eq "interrupted +true" out.txt
  check "SIGINT: the log kept its rows" test "$(wc -l <int.csv)" -ge 2
  check "SIGINT: the message says so" grep -q "interrupted" int.err
else
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  fail "SIGINT: training printed no epoch line in time"
  sed 's/^/    stderr: /' int.err | head -5 >&2
fi

# ---- Issue 13: hostile or accidental paths --------------------------------------------
# Every refusal below comes before training, at once: --epochs 100000 would
# otherwise run for minutes.
LONG=("$BP" train --data train.csv --epochs 100000 --backend cpu --quiet)
mkfifo fifo
expect_rc 1 "--save onto a FIFO" -- timeout 20 "${LONG[@]}" --save fifo
check "--save onto a FIFO: refused as such" grep -q "a FIFO, not a regular file" err.txt
check "--save onto a FIFO: the FIFO is still there" test -p fifo
expect_rc 1 "--plot onto a FIFO" -- timeout 20 "${LONG[@]}" --plot fifo
check "--plot onto a FIFO: the FIFO is still there" test -p fifo
ln -s /dev/null devnull.safetensors
expect_rc 1 "--save through a symlink to /dev/null" -- timeout 20 "${LONG[@]}" --save devnull.safetensors
check "--save to a device: refused" grep -q "character device" err.txt
check "--save to a device: the link is still there" test -L devnull.safetensors
mkdir -p adir
expect_rc 1 "--save onto a directory" -- timeout 20 "${LONG[@]}" --save adir
check "--save onto a directory: refused before training" grep -q "a directory" err.txt
expect_rc 1 "--save with a name too long for the temporary" -- timeout 20 "${LONG[@]}" \
  --save "$(printf 'm%.0s' $(seq 1 245))"
check "--save name too long: says why" grep -q "temporary file's suffix" err.txt
expect_rc 1 "info on a FIFO" -- timeout 20 "$BP" info fifo
check "info on a FIFO: refused, not blocked" grep -q "a FIFO" err.txt
expect_rc 1 "eval --model on a FIFO" -- timeout 20 "$BP" eval --model fifo --data test.csv
expect_rc 1 "eval --data on a FIFO" -- timeout 20 "$BP" eval --model m.safetensors --data fifo --format csv
expect_rc 1 "train --data on a FIFO" -- timeout 20 "$BP" train --data fifo --format fann --backend cpu
expect_rc 1 "eval --model /dev/zero" -- timeout 20 "$BP" eval --model /dev/zero --data test.csv
check "eval --model /dev/zero: refused as a device" grep -q "character device" err.txt
expect_rc 1 "info on a CSV" -- "$BP" info train.csv
check "info on a CSV: not a model file" grep -q "not a model file" err.txt

# info shows metadata escaped: a model may carry terminal escape sequences.
"$PY" - m.safetensors evil.safetensors <<'EOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
h["__metadata__"]["note"] = "\x1b]0;pwned\x07\x1b[2J\u009b31m\rbad"
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
EOF
expect_rc 0 "info on a model with escapes in its metadata" -- "$BP" info evil.safetensors
check "info: no raw control character reaches the terminal" "$PY" -c '
import sys
t = open(sys.argv[1], "rb").read().decode()
assert not any((ord(c) < 32 and c != "\n") or 0x7f <= ord(c) <= 0x9f for c in t), repr(t)
assert "\\x1b]0;pwned\\x07" in t, t' out.txt

# ---- Issue 13: the command's rough edges -----------------------------------------------
# eval with a model of fewer outputs than the data's classes: the shape, not a bad label.
"$PY" -c '
import sys
src = open("test.csv").read().splitlines()
out = [src[0]] + [",".join(l.split(",")[:-1] + ["4"]) if i == 0 else l for i, l in enumerate(src[1:])]
open("five.csv", "w").write("\n".join(out) + "\n")'
expect_rc 1 "eval: more classes than the model's outputs" -- "$BP" eval --model m.safetensors --data five.csv
check "eval: names the shape mismatch" grep -q "labels of 5 classes (0..4) but the model has 3 outputs" err.txt
expect_rc 0 "one epoch" -- "$BP" train --data train.csv --epochs 1 --backend cpu
check "\"1 epoch\", not \"1 epochs\"" grep -q "; 1 epoch," err.txt

# A learning rate that saturates the sigmoids: the run completes, but warns.
expect_rc 0 "--lr 100" -- "$BP" train --data train.csv --test test.csv --layers 8,16,3 --epochs 8 \
  --lr 100 --backend cpu --json
check "--lr 100: warned during the run" grep -Eq "warning: .*(not learning|not improved)" err.txt
check "--lr 100: --json says so" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["not_learning"] is True and "--lr" in d["warning"], d' out.txt
check "a good run has no warning" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["not_learning"] is False and d["warning"] is None, d' train.json

# Ctrl-C stops a long epoch at the next batch, not at its end. The signal
# must land inside an epoch: on a loaded machine the evaluation of the
# untrained network before epoch 1 can outlast the first wait, and a Ctrl-C
# then (correctly) stops before any epoch; so wait longer and try again.
for wait_s in 0.5 2 5; do
  rm -f stop.safetensors
  "$BP" train --data big.data --hidden 2048 --epochs 3 --batch 1 --backend cpu \
    --save stop.safetensors >stop.out 2>stop.err &
  pid=$!
  for _ in $(seq 1 300); do
    grep -q '^backprop: network' stop.err 2>/dev/null && break
    sleep 0.1
  done
  sleep "$wait_s"
  kill -INT "$pid"
  t0=$(date +%s)
  wait "$pid"
  rc=$?
  t1=$(date +%s)
  grep -q "interrupted after 0 epochs" stop.err && ! grep -q "stopped in epoch" stop.err || break
done
if [ "$rc" -eq 130 ]; then pass; else fail "Ctrl-C mid-epoch: exit status $rc, expected 130"; fi
check "Ctrl-C mid-epoch: stopped within seconds, not at the epoch's end" test $((t1 - t0)) -le 5
check "Ctrl-C mid-epoch: says where it stopped" grep -q "stopped in epoch 1 after" stop.err
check "Ctrl-C mid-epoch: the model was saved" test -s stop.safetensors

# A second Ctrl-C quits at once and says nothing was saved. The wide hidden
# layer makes the evaluation that follows the first one last about a second,
# so the second arrives while the run is still finishing.
"$BP" train --data big.data --hidden 4096 --epochs 100000 --batch 8 --backend cpu \
  --save stop2.safetensors >stop2.out 2>stop2.err &
pid=$!
for _ in $(seq 1 300); do
  grep -q '^backprop: network' stop2.err 2>/dev/null && break
  sleep 0.1
done
kill -INT "$pid"
sleep 0.1
kill -INT "$pid" 2>/dev/null
wait "$pid"
rc=$?
if [ "$rc" -eq 130 ]; then pass; else fail "second Ctrl-C: exit status $rc, expected 130"; fi
check "second Ctrl-C: says nothing was saved" grep -q "nothing was saved" stop2.err

# ---- Issue 13: the command's rough edges ------------------------------------------
# The per-epoch line shows the train accuracy.
expect_rc 0 "train prints the train accuracy" -- "$BP" train --data train.csv --epochs 2 --backend cpu
check "each epoch's line has the train accuracy" test "$(grep -Ec '^epoch +[0-9]+/2 .*train accuracy [01]\.[0-9]{4}' err.txt)" -eq 2

# Regression targets outside the sigmoid's range (0, 1) are warned about.
expect_rc 0 "targets outside [0, 1]" -- "$BP" train --data train.csv --targets 1 --epochs 1 --backend cpu
check "targets outside [0, 1]: warned" grep -q "warning: train.csv: .* targets lie outside \[0, 1\]" err.txt
"$PY" -c '
import csv
rows = list(csv.reader(open("train.csv")))
with open("scaled.csv", "w") as f:
    for r in rows[1:]:
        f.write(",".join(r[:-1] + [str(int(r[-1]) / 2)]) + "\n")'
expect_rc 0 "targets inside [0, 1]" -- "$BP" train --data scaled.csv --targets 1 --epochs 1 --backend cpu
check "targets inside [0, 1]: no warning" sh -c '! grep -q "outside \[0, 1\]" err.txt'

# predict accepts a CSV file of inputs alone (no label column).
"$PY" -c '
import csv
rows = list(csv.reader(open("test.csv")))
with open("inputs.csv", "w") as f:
    for r in rows[1:]:
        f.write(",".join(r[:-1]) + "\n")'
expect_rc 0 "predict on inputs alone" -- "$BP" predict --model m.safetensors --data inputs.csv --class
cp out.txt inputs_pred.txt
expect_rc 0 "predict on the labelled file" -- "$BP" predict --model m.safetensors --data test.csv --class
check "predict on inputs alone: same classes as with labels" cmp -s out.txt inputs_pred.txt
check "predict on inputs alone: one line per example" test "$(wc -l <inputs_pred.txt)" -eq 200
"$PY" -c '
with open("narrow.csv", "w") as f:
    f.write("0.1,0.2,0.3\n0.4,0.5,0.6\n")'
expect_rc 1 "predict on a file of the wrong width" -- "$BP" predict --model m.safetensors --data narrow.csv
check "the wrong width is reported as widths" grep -q "model takes 8 inputs" err.txt

# String class labels, ';' separators (detected), tab (--delimiter), hints.
"$PY" - <<'PYEOF'
import csv
names = ["cat", "dog", "bird"]
for src, dst, sep in (("train.csv", "names_train.csv", ";"), ("test.csv", "names_test.csv", ";"),
                      ("test.csv", "names_test.tsv", "\t")):
    rows = list(csv.reader(open(src)))
    with open(dst, "w") as f:
        f.write(sep.join(rows[0]) + "\n")
        for r in rows[1:]:
            f.write(sep.join(r[:-1] + [names[int(r[-1])]]) + "\n")
# The test file lists the classes in another order of first appearance.
rows = open("names_test.csv").read().splitlines()
body = sorted(rows[1:], key=lambda l: l.split(";")[-1] != "bird")
open("names_test.csv", "w").write("\n".join([rows[0]] + body) + "\n")
PYEOF
expect_rc 0 "train on class names, ';'-separated" -- "$BP" train --data names_train.csv --test names_test.csv \
  --layers 8,16,3 --epochs 6 --batch 16 --lr 1 --seed 3 --backend cpu --save names.safetensors --json
check "class names: the test set maps names as the training set does" "$PY" -c '
import json,sys; d = json.load(open(sys.argv[1])); assert d["test_accuracy"] > 0.6, d' out.txt
expect_rc 0 "info shows the classes" -- "$BP" info names.safetensors
check "the model stores its class names" grep -q "cat" out.txt
expect_rc 0 "eval on class names" -- "$BP" eval --model names.safetensors --data names_test.csv --json
check "eval on class names: the model's map is used" "$PY" -c '
import json,sys; d = json.load(open(sys.argv[1])); assert d["accuracy"] > 0.6, d' out.txt
expect_rc 0 "predict --class prints class names" -- "$BP" predict --model names.safetensors \
  --data names_test.tsv --delimiter tab --class
check "predict --class prints names" sh -c 'test "$(grep -Ecx "cat|dog|bird" out.txt)" -eq 200'
expect_rc 1 "a ';' file read with --delimiter ," -- "$BP" train --data names_train.csv --delimiter , --backend cpu --epochs 1
check "a row that does not parse gets a hint" grep -q "hint:" err.txt
"$PY" -c '
with open("decimal_comma.csv", "w") as f:
    f.write("a;b;label\n0,5;0,25;1\n0,1;0,75;0\n")'
expect_rc 1 "decimal commas" -- "$BP" train --data decimal_comma.csv --backend cpu --epochs 1
check "decimal commas get a hint" grep -q "decimal commas" err.txt

# A save that fails at the end rescues the model into $TMPDIR and says where.
# The target's directory disappears during training; Ctrl-C then ends the
# run (and makes it save) at a known point.
mkdir -p rescue/dir rescue/tmp
TMPDIR=$PWD/rescue/tmp "$BP" train --data big.data --hidden 64 --epochs 100000 --batch 8 \
  --backend cpu --save rescue/dir/model.safetensors >rescue.out 2>rescue.err &
pid=$!
for _ in $(seq 1 600); do
  grep -Eq '^epoch +1/' rescue.err 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
rm -rf rescue/dir
kill -INT "$pid"
wait "$pid"
rc=$?
check "rescue: the failed save is a failure" test "$rc" -ne 0
check "rescue: the save's failure is reported" grep -q "cannot save the model to rescue/dir/model.safetensors" rescue.err
check "rescue: says where the model went" grep -q "the model was saved to $PWD/rescue/tmp/backprop-rescued-$pid.safetensors instead" rescue.err
expect_rc 0 "rescue: the rescued model loads" -- "$BP" info "rescue/tmp/backprop-rescued-$pid.safetensors"

harness_end
