#!/usr/bin/env bash
# tests/run.sh [--unit-only|--integration-only] BUILD -- run the test suites.
#
# Unit tests: one build/tests/check_NAME binary for every tests/unit/check_NAME.c (check,
# CK_FORK); a missing binary is a failure. Integration tests: every
# tests/integration/[0-9]*.sh (TESTS=pattern picks those whose name contains it),
# against real PostgreSQL 15 clusters they start themselves as the postgres user. The
# executables are installed into a temp prefix the postgres user can read, since
# PostgreSQL runs archive_command as that user.
#
# Exit status of a test program: 0 passed, 77 skipped (a dependency such as s3rver is
# unavailable; lib.sh's t_skip), anything else failed. Every program runs under a
# timeout (RAGSAFE_UNIT_TIMEOUT, default 300 s; RAGSAFE_TEST_TIMEOUT, default 900 s per
# integration script; both multiplied by CK_TIMEOUT_MULTIPLIER, as make asan sets it);
# a test that runs out of time is killed and counts as failed. Under CI=true a skip
# fails the run. The last line printed is "N passed, N failed, N skipped".
#
# Integration scripts run RAGSAFE_TEST_JOBS at a time (default 2: most of them wait on
# PostgreSQL, fsync and sleeps more than they use a core; each has its own temp dir,
# clusters on their own Unix sockets and free TCP ports). A script whose assertions time
# something against the clock carries the line "# ragsafe-test: serial" and runs alone,
# after the others. Each script's output is printed whole when it ends. lib.sh's pg_init
# copies a template cluster made once per run (in RAGSAFE_PG_TEMPLATE, made here) rather
# than run initdb for every cluster.
set -u
mode=all
case "${1:-}" in --unit-only) mode=unit; shift ;; --integration-only) mode=integration; shift ;; esac
BUILD=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

mult=${CK_TIMEOUT_MULTIPLIER:-1}
unit_timeout=$(( ${RAGSAFE_UNIT_TIMEOUT:-300} * mult ))
test_timeout=$(( ${RAGSAFE_TEST_TIMEOUT:-900} * mult ))

passed=0
failed=0
skipped=0
failed_names=()
skipped_names=()

# run_one NAME SECONDS CMD...: run CMD under a timeout (TERM, then KILL 30 s later).
run_one() {
    local name=$1 secs=$2 start=$SECONDS rc; shift 2
    echo "=== $name"
    timeout --kill-after=30 "$secs" "$@"
    tally "$name" $? "$secs" $((SECONDS - start))
}

# tally NAME RC TIMEOUT ELAPSED: count one program's result and print its last line.
tally() {
    local name=$1 rc=$2 secs=$3 start=$((SECONDS - $4))
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        echo "=== $name: PASS ($((SECONDS - start)) s)"
    elif [ "$rc" -eq 77 ]; then
        skipped=$((skipped + 1))
        skipped_names+=("$name")
        echo "=== $name: SKIP ($((SECONDS - start)) s)"
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        failed=$((failed + 1))
        failed_names+=("$name(timeout)")
        echo "=== $name: FAIL: timed out after $secs s"
    else
        failed=$((failed + 1))
        failed_names+=("$name")
        echo "=== $name: FAIL (exit $rc, $((SECONDS - start)) s)"
    fi
}

if [ "$mode" != integration ]; then
    for src in tests/unit/check_*.c; do
        [ -f "$src" ] || continue
        t=$BUILD/tests/$(basename "$src" .c)
        if [ ! -x "$t" ]; then
            failed=$((failed + 1))
            failed_names+=("unit/$(basename "$t")(missing)")
            echo "=== unit/$(basename "$t"): FAIL: $t was not built"
            continue
        fi
        run_one "unit/$(basename "$t")" "$unit_timeout" env CK_FORK=yes "$t"
    done
fi

if [ "$mode" != unit ]; then
    prefix=$(mktemp -d /tmp/ragsafe-prefix.XXXXXX)
    trap 'rm -rf "$prefix"' EXIT
    chmod 0755 "$prefix"
    make -s BUILD="$BUILD" install PREFIX="$prefix" >/dev/null || { echo "make install failed"; exit 1; }
    export RAGSAFE_BIN="$prefix/bin"
    export RAGSAFE_SRC="$top"
    # python3 behind a version manager's shim (pyenv) costs a second or more a call on a
    # loaded machine, and the scripts call it often: resolve it once (as lib.sh would)
    if [[ "$(command -v python3)" == */shims/python3 ]]; then
        py_real=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) &&
            [ -x "$py_real" ] && export PATH="${py_real%/*}:$PATH"
    fi
    # the template cluster lib.sh's pg_init copies (one initdb for the whole run; made by
    # the first script that needs it)
    export RAGSAFE_PG_TEMPLATE
    RAGSAFE_PG_TEMPLATE=$(mktemp -d /tmp/ragsafe-pgtemplate.XXXXXX)
    chmod 0755 "$RAGSAFE_PG_TEMPLATE" && chown postgres: "$RAGSAFE_PG_TEMPLATE" || exit 1
    jobs_max=${RAGSAFE_TEST_JOBS:-2}
    [[ "$jobs_max" =~ ^[1-9][0-9]*$ ]] || { echo "RAGSAFE_TEST_JOBS must be a positive integer"; exit 2; }
    logs=$(mktemp -d /tmp/ragsafe-testlogs.XXXXXX)
    trap 'rm -rf "$prefix" "$logs" "$RAGSAFE_PG_TEMPLATE"; kill $(jobs -p) 2>/dev/null' EXIT
    declare -A job_name=() job_start=()
    # reap: wait for one running script, then print its output and count its result.
    reap() {
        local pid rc name
        wait -n -p pid
        rc=$?
        name=${job_name[$pid]}
        echo "=== integration/$name"
        cat "$logs/$name.log"
        tally "integration/$name" "$rc" "$test_timeout" $((SECONDS - ${job_start[$pid]}))
        unset "job_name[$pid]" "job_start[$pid]"
    }
    serial=()
    for t in tests/integration/[0-9]*.sh; do
        [ -f "$t" ] || continue
        if [ -n "${TESTS:-}" ] && ! [[ "$(basename "$t")" == *${TESTS}* ]]; then continue; fi
        if grep -q '^# ragsafe-test: serial' "$t"; then serial+=("$t"); continue; fi
        while [ "${#job_name[@]}" -ge "$jobs_max" ]; do reap; done
        name=$(basename "$t" .sh)
        timeout --kill-after=30 "$test_timeout" bash "$t" </dev/null >"$logs/$name.log" 2>&1 &
        job_name[$!]=$name
        job_start[$!]=$SECONDS
    done
    while [ "${#job_name[@]}" -gt 0 ]; do reap; done
    for t in "${serial[@]}"; do
        run_one "integration/$(basename "$t" .sh)" "$test_timeout" bash "$t" </dev/null
    done
fi

echo
if [ "$failed" -gt 0 ]; then
    echo "failed: ${failed_names[*]}"
fi
if [ "$skipped" -gt 0 ]; then
    echo "skipped: ${skipped_names[*]}"
    if [ "${CI:-}" = true ]; then
        echo "error: CI=true and $skipped test program(s) skipped: ${skipped_names[*]}"
        echo "hint: install what they need (scripts/install-deps.sh; s3rver from the npm registry)"
    fi
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] || exit 1
if [ "$skipped" -gt 0 ] && [ "${CI:-}" = true ]; then
    exit 1
fi
exit 0
