# harness.sh - what the command's end-to-end scripts share, sourced by
# test_cli.sh and test_recipe.sh after they set BP (the binary), WORK (an
# empty work folder) and PY (python3): the work folder, the counters, and the
# checks. Each script ends with `harness_end`.

case $BP in /*) ;; *) BP=$PWD/$BP ;; esac
rm -rf "$WORK"
mkdir -p "$WORK" || exit 1
cd "$WORK" || exit 1

failures=0
checks=0
pass() { checks=$((checks + 1)); }
fail() {
  checks=$((checks + 1))
  failures=$((failures + 1))
  echo "FAIL: $*" >&2
}
# expect_rc WANT DESCRIPTION -- COMMAND...: runs COMMAND (stdout to out.txt,
# stderr to err.txt) and checks its exit status.
expect_rc() {
  local want=$1 what=$2
  shift 3
  "$@" >out.txt 2>err.txt
  local rc=$?
  if [ "$rc" -eq "$want" ]; then
    pass
  else
    fail "$what: exit status $rc, expected $want: $*"
    sed 's/^/    stderr: /' err.txt | head -5 >&2
  fi
}
# check DESCRIPTION COMMAND...: the command must succeed.
check() {
  local what=$1
  shift
  if "$@"; then pass; else fail "$what"; fi
}
json_get() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
# The counts, and the status: 0 when every check passed.
harness_end() {
  echo "$checks checks, $failures failed"
  [ "$failures" -eq 0 ]
}
