#!/usr/bin/env bash
# cli_fault_test.sh MPIEXEC BACKPROP kill|stop - the command under
# `mpirun -np 2 backprop train`: when one rank dies or stops responding, the
# job ends non-zero within 60 s and no model file (nor a temporary one) is
# left where --save pointed.
#   kill: SIGKILL rank 1 once both ranks train; mpirun ends the job.
#   stop: SIGSTOP rank 1 with --comm-timeout 20; rank 0's next collective
#         passes its deadline, the command prints the timeout and calls
#         bp_comm_abort (MPI_Abort), which ends the job.
set -u
mpiexec=$1 cli=$2 mode=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Each rank records its pid (exec keeps it) and trains on the built-in data
# for far longer than the test lasts.
"$mpiexec" -np 2 sh -c 'echo $$ > "$0/rank${OMPI_COMM_WORLD_RANK:-$PMI_RANK}.pid"; exec "$@"' "$dir" \
  "$cli" train --backend cpu --epochs 1000000 --comm-timeout 20 --save "$dir/model.safetensors" \
  >"$dir/out" 2>&1 &
job=$!
for _ in $(seq 600); do [ -s "$dir/rank1.pid" ] && [ -s "$dir/rank0.pid" ] && break; sleep 0.1; done
if [ ! -s "$dir/rank1.pid" ]; then
  echo "FAIL: the ranks did not start within 60 s"; cat "$dir/out"; kill "$job"; exit 1
fi
sleep 3 # past the communicator's creation and the weights' broadcast: training
victim=$(cat "$dir/rank1.pid")
if ! kill -0 "$job" 2>/dev/null; then echo "FAIL: the job ended before the $mode"; cat "$dir/out"; exit 1; fi
start=$(date +%s.%N)
if [ "$mode" = kill ]; then kill -KILL "$victim"; else kill -STOP "$victim"; fi
ended=0
for _ in $(seq 600); do
  if ! kill -0 "$job" 2>/dev/null; then ended=1; break; fi
  sleep 0.1
done
elapsed=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { printf "%.1f", a - b }')
if [ $ended = 0 ]; then
  echo "FAIL: the job still runs 60 s after the $mode of rank 1"
  kill -CONT "$victim" 2>/dev/null; kill -KILL "$victim" 2>/dev/null; kill "$job"; wait "$job"
  cat "$dir/out"; exit 1
fi
wait "$job"; rc=$?
kill -KILL "$victim" 2>/dev/null # a stopped rank left behind, if any
tail -n 20 "$dir/out"
echo "cli_fault_test $mode: the job ended with status $rc after ${elapsed} s"
if [ $rc = 0 ]; then echo "FAIL: exit status 0 after a $mode"; exit 1; fi
if [ "$mode" = stop ] && ! grep -q "communication timeout of 20 s" "$dir/out"; then
  echo "FAIL: no message naming the timeout"; exit 1
fi
left=$(ls "$dir" | grep -v -E '^(out|rank[01]\.pid)$')
if [ -n "$left" ]; then echo "FAIL: files left where --save pointed: $left"; exit 1; fi
echo PASS
