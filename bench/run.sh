#!/usr/bin/env bash
# bench/run.sh [BUILD] -- run every bench/bench-*.sh with the build directory as $1.
#
# Each benchmark prints its own markdown table on stdout (progress goes to stderr).
# BENCH=substring runs only the matching scripts. Exits non-zero if any benchmark
# failed to run (a missed target is reported in the table, not as a failure).
set -u
BUILD=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
if [ ! -d "$BUILD/bin" ]; then
    echo "bench/run.sh: error: no executables in \"$BUILD/bin\"" >&2
    echo "bench/run.sh: hint: run 'make BUILD=$BUILD all' first" >&2
    exit 1
fi
BUILD=$(cd "$BUILD" && pwd)

status=0
ran=0
for b in bench/bench-*.sh; do
    [ -f "$b" ] || continue
    name=$(basename "$b" .sh)
    if [ -n "${BENCH:-}" ] && [[ "$name" != *${BENCH}* ]]; then continue; fi
    ran=$((ran + 1))
    echo "=== $name" >&2
    start=$SECONDS
    if bash "$b" "$BUILD" </dev/null; then
        echo "=== $name: done ($((SECONDS - start)) s)" >&2
    else
        echo "=== $name: FAILED ($((SECONDS - start)) s)" >&2
        status=1
    fi
    echo
done
[ "$ran" -gt 0 ] || { echo "bench/run.sh: error: no benchmark matched" >&2; exit 1; }
exit $status
