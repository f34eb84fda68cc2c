#!/usr/bin/env bash
# fault_test.sh MPIEXEC PROGRAM kill|stop - a rank that dies or stops
# responding ends the whole job, non-zero, within 60 s.
#   kill: SIGKILL rank 1 of 3 once it has trained an epoch; mpirun ends the job.
#   stop: SIGSTOP rank 1 with --comm-timeout 20; the other ranks' next
#         collective passes its deadline, they print a message that names the
#         timeout and call bp_comm_abort (MPI_Abort), which ends the job.
set -u
mpiexec=$1 program=$2 mode=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$mpiexec" -np 3 "$program" --fault-test "$dir" --comm-timeout 20 >"$dir/out" 2>&1 &
job=$!
for _ in $(seq 600); do [ -s "$dir/rank1.pid" ] && break; sleep 0.1; done
if [ ! -s "$dir/rank1.pid" ]; then
  echo "FAIL: rank 1 did not start training within 60 s"; cat "$dir/out"; kill "$job"; exit 1
fi
victim=$(cat "$dir/rank1.pid")
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
cat "$dir/out"
echo "fault_test $mode: the job ended with status $rc after ${elapsed} s"
if [ $rc = 0 ]; then echo "FAIL: exit status 0 after a $mode"; exit 1; fi
if [ "$mode" = stop ] && ! grep -q "communication timeout of 20 s" "$dir/out"; then
  echo "FAIL: no message naming the timeout"; exit 1
fi
echo PASS
