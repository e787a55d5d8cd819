#!/usr/bin/env bash
# bench/bench-chunk-size.sh BUILD_BIN -- the chunk-size measurement behind the README's
# choice: a pgbench cluster (scale $SCALE, default 10) archived into one repository per
# chunk size (8, 32, 128 KiB; RAGSAFE_CHUNK_SIZE), a chunked backup into each, then
# pgbench -N for $SECS s at $RATE tps (default 30 s at 10 tps: about 2 % of the pages of
# pgbench_accounts), a second chunked backup into each. Prints, per size: the first
# backup's stored bytes, the second's new bytes (and % of the first), new chunks, and
# the repository's object count. Run as root (clusters run as postgres).
set -u
BIN=${1:?usage: bench-chunk-size.sh BIN_DIR}
SCALE=${SCALE:-10} SECS=${SECS:-30} RATE=${RATE:-10}
RAGSAFE_BIN=$BIN
export RAGSAFE_BIN
source "$(dirname "$0")/../tests/integration/lib.sh"
t_init
SIZES="8192 32768 131072"
cmd=""
for s in $SIZES; do
    repo_init "$T/r$s"
    cmd="$cmd${cmd:+ && }$BIN/ragsafe-archive --repo $T/r$s %p %f"
done
pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$cmd'"
pg_start src || exit 1
as_pg pgbench -i -q -s "$SCALE" -h "$T/src" -p 5432 -U postgres postgres >/dev/null 2>&1
bb() { as_pg env RAGSAFE_CHUNK_SIZE="$1" "$BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$T/r$1" \
       -c fast --format chunked --no-progress --label "$2" >/dev/null 2>"$T/bb-$1-$2.err" || cat "$T/bb-$1-$2.err"; }
js() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
for s in $SIZES; do bb "$s" b1; done
as_pg pgbench -n -N -T "$SECS" -R "$RATE" -h "$T/src" -p 5432 -U postgres postgres 2>&1 | grep -E "number of transactions actually|tps"
for s in $SIZES; do
    t0=$(date +%s.%N); bb "$s" b2; t1=$(date +%s.%N)
    f=$T/r$s/backups/b1/backup.json g=$T/r$s/backups/b2/backup.json
    s1=$(js "$f" 'j["stored_bytes"]'); s2=$(js "$g" 'j["stored_bytes"]')
    printf 'chunk %6d: b1 %s stored (%s chunks), b2 %s new (%s %%), %s new chunks of %s, %s objects under chunks/, b2 took %.1f s\n' \
        "$s" "$s1" "$(js "$f" 'j["chunks"]["count"]')" "$s2" "$((s2 * 100 / s1))" \
        "$(js "$g" 'j["chunks"]["new"]')" "$(js "$g" 'j["chunks"]["count"]')" \
        "$(find "$T/r$s/chunks" -type f | wc -l)" "$(echo "$t1 - $t0" | bc)"
done
# the same cluster as one tar backup, and the 32 KiB chunked backup's time against it
t0=$(date +%s.%N)
as_pg "$BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$T/r32768" -c fast --format tar --no-progress \
    --label t1 >/dev/null 2>"$T/bb-tar.err" || cat "$T/bb-tar.err"
t1=$(date +%s.%N)
t2=$(date +%s.%N); bb 32768 b3; t3=$(date +%s.%N)
printf 'tar backup: %s stored in %.1f s; a third chunked (32 KiB) backup right after: %s new in %.1f s\n' \
    "$(js "$T/r32768/backups/t1/backup.json" 'j["stored_bytes"]')" "$(echo "$t1 - $t0" | bc)" \
    "$(js "$T/r32768/backups/b3/backup.json" 'j["stored_bytes"]')" "$(echo "$t3 - $t2" | bc)"
