#!/usr/bin/env bash
# bench/bench-chunk-size.sh BUILD_BIN -- the chunk-size measurement behind the README's
# choice (issue 15): one cluster with pgbench -i -s $SCALE (default 10) and the RAG
# schema of bench/rag_workload.sh, archived into one repository per chunk size (8, 32,
# 128 KiB; RAGSAFE_CHUNK_SIZE) and store (posix; with S3=1 also S3: the tests' local
# s3rver behind the SigV4 verifier, tests/integration/lib.sh s3_start). A first chunked
# backup into each (into an empty repository: the "full" size), then for each workload
# of $WORKLOADS in turn (default "rag pgbench"):
#   rag      bench/rag_workload.sh rag_writes: documents +2 %, search_history +5 %,
#            updates of 1 % of users and 0.2 % of documents' metadata;
#   pgbench  pgbench -N with enough transactions to touch ~2 % of pgbench_accounts'
#            pages (random rows: P * 0.0202 transactions for P pages);
# then a second backup into each repository (the sizes' order rotating per workload,
# posix and S3 alternating first). Printed per workload, size and store: the second
# backup's new bytes (stored_bytes) and % of the first backup, its new chunks, the
# objects it added to the repository (WAL excluded), for S3 its PUT requests and all
# its requests (from the verifier's log, WAL excluded), and its wall time (one run:
# times depend on the machine's load, bytes and counts do not). Then, posix only, one
# tar backup and one 32 KiB chunked backup right after it, for the time.
# Environment: SCALE (10), WORKLOADS ("rag pgbench"), S3 (1: also S3; when s3rver is
# not installed in $RAGSAFE_S3RVER_DIR, default /var/tmp/ragsafe-s3rver, the S3 part is
# skipped with a note), TAR (1: the tar comparison at the end; 0: none).
# Run as root (the cluster runs as postgres). Markdown on stdout, progress on stderr.
set -u
BIN=${1:?usage: bench-chunk-size.sh BIN_DIR}
BIN=$(cd "$BIN" && pwd) || exit 2
SCALE=${SCALE:-10} WORKLOADS=${WORKLOADS:-rag pgbench} S3=${S3:-0} TAR=${TAR:-1}
RAGSAFE_BIN=$BIN RAGSAFE_SRC=$(cd "$(dirname "$0")/.." && pwd)
export RAGSAFE_BIN RAGSAFE_SRC
HERE=$(dirname "$0")
source "$HERE/../tests/integration/lib.sh"
source "$HERE/rag_workload.sh"
say() { echo "bench-chunk-size: $*" >&2; }
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
t_init
SIZES="8192 32768 131072"
STORES=posix
notes=()
BUCKET=ragsafe
if [ "$S3" = 1 ]; then
    if [ -f "${RAGSAFE_S3RVER_DIR:-/var/tmp/ragsafe-s3rver}/node_modules/s3rver/bin/s3rver.js" ] &&
        command -v node >/dev/null; then
        s3_start "$BUCKET" >&2
        STORES="posix s3"
    else
        notes+=("S3 skipped: s3rver is not installed in ${RAGSAFE_S3RVER_DIR:-/var/tmp/ragsafe-s3rver} (run TESTS=095 tests/run.sh --integration-only build once, it installs it)")
        say "${notes[-1]}"
    fi
fi
repo() { if [ "$2" = s3 ]; then echo "s3://$BUCKET/c$1"; else echo "$T/r$1"; fi; }
cmd=""
for st in $STORES; do
    for s in $SIZES; do
        [ "$st" = posix ] && repo_init "$T/r$s"
        cmd="$cmd${cmd:+ && }$BIN/ragsafe-archive --repo $(repo "$s" "$st") %p %f"
    done
done
pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$cmd'"
pg_set src "max_wal_size = 2GB"
pg_set src "checkpoint_timeout = 30min"
pg_start src || exit 1
sql() { pg_sql src "$1"; }
say "pgbench -i -s $SCALE and the RAG schema"
as_pg pgbench -i -q -s "$SCALE" -h "$T/src" -p 5432 -U postgres postgres >"$T/pgbench-i.log" 2>&1 ||
    { cat "$T/pgbench-i.log"; exit 1; }
rag_schema && rag_fill && sql "vacuum analyze" || exit 1

# bb SIZE STORE LABEL: one chunked backup; sets B_JSON (its backup.json), B_TIME (s),
# B_OBJS (objects added, WAL excluded), B_PUTS / B_REQS (S3: requests, WAL excluded)
objects() {
    if [ "$2" = s3 ]; then
        find "$T/s3/$BUCKET/c$1" -path "*/wal/*" -prune -o -type f -name '*._S3rver_object' -print 2>/dev/null | wc -l
    else
        find "$T/r$1" -path "$T/r$1/wal" -prune -o -type f -print | wc -l
    fi
}
reqs() { grep -E "^ok $1 /$BUCKET/c$2/" "$T/sigv4.log" 2>/dev/null | grep -vc "^ok [A-Z]* /$BUCKET/c$2/wal/"; }
bb() {
    local s=$1 st=$2 o0 p0=0 r0=0 t0
    o0=$(objects "$s" "$st")
    [ "$st" = s3 ] && { p0=$(reqs PUT "$s"); r0=$(reqs '[A-Z]+' "$s"); }
    t0=$(date +%s.%N)
    B_JSON=$(as_pg env RAGSAFE_CHUNK_SIZE="$s" ${RAGSAFE_S3_ENDPOINT:+"RAGSAFE_S3_ENDPOINT=$RAGSAFE_S3_ENDPOINT"} \
        ${AWS_ACCESS_KEY_ID:+"AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"} \
        "$BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$(repo "$s" "$st")" \
        -c fast --format chunked --no-progress --json --label "$3" 2>"$T/bb-$s-$st-$3.err") ||
        { cat "$T/bb-$s-$st-$3.err" >&2; say "backup $3 ($s, $st) failed"; exit 1; }
    B_TIME=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
    B_OBJS=$(($(objects "$s" "$st") - o0))
    B_PUTS=- B_REQS=-
    [ "$st" = s3 ] && { B_PUTS=$(($(reqs PUT "$s") - p0)); B_REQS=$(($(reqs '[A-Z]+' "$s") - r0)); }
}
js() { python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1" <<<"$B_JSON"; }
# order N: the sizes rotated by N
order() { local a i n; read -r -a a <<<"$SIZES"; n=${#a[@]}; for ((i = 0; i < n; i++)); do echo "${a[$(((i + $1) % n))]}"; done; }
stores() { if [ $(($1 % 2)) = 0 ]; then echo $STORES; else echo $STORES | tr ' ' '\n' | tac; fi; }

declare -A first rows
switch_wal src >/dev/null || exit 1
say "first backups"
for s in $SIZES; do
    for st in $STORES; do
        bb "$s" "$st" b0
        first[$s.$st]=$(js 'j["stored_bytes"]')
        say "  $s $st: $(js 'j["stored_bytes"]') bytes, $(js 'j["chunks"]["count"]') chunks, $B_OBJS objects, ${B_TIME} s"
    done
done
n=0
for w in $WORKLOADS; do
    n=$((n + 1))
    case $w in
    rag) say "workload rag"; rag_writes || exit 1 ;;
    pgbench)
        pages=$(sql "select relpages from pg_class where relname = 'pgbench_accounts'")
        tx=$(awk -v p="$pages" 'BEGIN { printf "%d", p * 0.0202 + 0.5 }')
        [ "$tx" -ge 2 ] || tx=2
        say "workload pgbench: $tx transactions of -N over $pages pages of pgbench_accounts"
        as_pg pgbench -n -N -c 2 -j 2 -t $((tx / 2)) -h "$T/src" -p 5432 -U postgres postgres >"$T/w.log" 2>&1 ||
            { cat "$T/w.log"; exit 1; } ;;
    *) say "WORKLOADS: unknown workload \"$w\" (rag, pgbench)"; exit 2 ;;
    esac
    switch_wal src >/dev/null || exit 1
    for s in $(order "$n"); do
        for st in $(stores "$n"); do
            bb "$s" "$st" "w$n"
            nb=$(js 'j["stored_bytes"]')
            rows[$w.$s.$st]=$(printf '| %s | %d KiB | %s | %s | %.1f %% | %s of %s | %s | %s | %s | %s |' \
                "$w" $((s / 1024)) "$st" "$nb" "$(awk -v a="$nb" -v b="${first[$s.$st]}" 'BEGIN { print 100 * a / b }')" \
                "$(js 'j["chunks"]["new"]')" "$(js 'j["chunks"]["count"]')" "$B_OBJS" "$B_PUTS" "$B_REQS" "$B_TIME")
            say "  ${rows[$w.$s.$st]}"
        done
    done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
db=$(sql "select pg_size_pretty(pg_database_size('postgres'))")
echo "### Chunk size: the second backup after each workload (scale $SCALE, database $db)"
echo
echo "\`SCALE=$SCALE WORKLOADS=\"$WORKLOADS\" S3=$S3 bench/bench-chunk-size.sh\`, $(date -u +%Y-%m-%dT%H:%MZ); load average $LOAD0 at the start, $LOAD1 at the end."
echo
echo "| workload | chunk | store | new bytes | % of the first backup | new chunks of all | objects added | PUT requests | all requests | time (s, one run) |"
echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
for w in $WORKLOADS; do
    for s in $SIZES; do
        for st in $STORES; do echo "${rows[$w.$s.$st]}"; done
    done
done
echo
for s in $SIZES; do
    for st in $STORES; do printf '%s%d KiB %s %s' "${sep:-First backups (bytes): }" $((s / 1024)) "$st" "${first[$s.$st]}"; sep=', '; done
done
echo .
for x in "${notes[@]}"; do echo "Note: $x."; done
[ "$TAR" = 1 ] || exit 0
# the same cluster as one tar backup, and a 32 KiB chunked backup's time right after it
t0=$(date +%s.%N)
as_pg "$BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$T/r32768" -c fast --format tar --no-progress \
    --label t1 >/dev/null 2>"$T/bb-tar.err" || cat "$T/bb-tar.err"
t1=$(date +%s.%N)
bb 32768 posix b3
printf 'A tar backup (posix): %s stored in %.1f s; a chunked (32 KiB) backup right after: %s new in %s s.\n' \
    "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stored_bytes"])' "$T/r32768/backups/t1/backup.json")" \
    "$(echo "$t1 - $t0" | bc)" "$(js 'j["stored_bytes"]')" "$B_TIME"
exit 0
