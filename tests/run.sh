#!/usr/bin/env bash
# tests/run.sh [--unit-only|--integration-only] BUILD -- run the test suites.
#
# Unit tests: every build/tests/check_* binary (check, CK_FORK). Integration tests:
# every tests/integration/[0-9]*.sh, against real PostgreSQL 15 clusters they start
# themselves as the postgres user. The executables are installed into a temp prefix
# the postgres user can read, since PostgreSQL runs archive_command as that user.
# Prints one closing line "N passed, N failed" counting test programs.
set -u
mode=all
case "${1:-}" in --unit-only) mode=unit; shift ;; --integration-only) mode=integration; shift ;; esac
BUILD=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

passed=0
failed=0
failed_names=()

run_one() {
    local name=$1; shift
    local start=$SECONDS
    echo "=== $name"
    if "$@"; then
        passed=$((passed + 1))
        echo "=== $name: PASS ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1))
        failed_names+=("$name")
        echo "=== $name: FAIL ($((SECONDS - start)) s)"
    fi
}

if [ "$mode" != integration ]; then
    for t in "$BUILD"/tests/check_*; do
        [ -x "$t" ] || continue
        run_one "unit/$(basename "$t")" env CK_FORK=yes "$t"
    done
fi

if [ "$mode" != unit ]; then
    prefix=$(mktemp -d /tmp/ragsafe-prefix.XXXXXX)
    trap 'rm -rf "$prefix"' EXIT
    chmod 0755 "$prefix"
    make -s BUILD="$BUILD" install PREFIX="$prefix" >/dev/null || { echo "make install failed"; exit 1; }
    export RAGSAFE_BIN="$prefix/bin"
    export RAGSAFE_SRC="$top"
    for t in tests/integration/[0-9]*.sh; do
        [ -f "$t" ] || continue
        if [ -n "${TESTS:-}" ] && ! [[ "$(basename "$t")" == *${TESTS}* ]]; then continue; fi
        run_one "integration/$(basename "$t" .sh)" bash "$t" </dev/null
    done
fi

echo
if [ "$failed" -gt 0 ]; then
    echo "failed: ${failed_names[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
