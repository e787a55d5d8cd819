#!/usr/bin/env bash
# bench/bench-wal.sh BUILD -- the WAL path: ragsafe-archive / ragsafe-restore against
# pgBackRest, cp + sync and the floor, per segment, whole process.
#
# 1. A throwaway PostgreSQL 15 cluster under pgbench (scale 10, then timed runs with
#    checkpoint_timeout 30s so full-page images recur as in production) archives with
#    a plain `cp`; 16 full segments written by the pgbench transactions are kept.
# 2. pgBackRest: one stanza per round (posix repository, compress-type=zst,
#    compress-level=3, archive-async=n), stanza-create against the running cluster;
#    then the cluster stops and only files are timed.
# 3. Per segment, the tools run one after the other in an order that rotates with the
#    segment (so none always runs first or last), each timed as a whole process from
#    one bash as the postgres user (no runuser per call):
#      archive: ragsafe-archive, ragsafe-archive (RAGSAFE_NO_URING=1: the same
#               plain-syscall path since 2026-12-02, a gauge of the noise),
#               ragsafe-archive --look-ahead 4 (called as PostgreSQL does: cwd a
#               data directory whose archive_status holds .ready files, .done after
#               each call), pgbackrest archive-push, cp + sync FILE, floor (read +
#               SHA-256 + zstd -3 in one process: bench/floor.c, writes nothing)
#      restore: ragsafe-restore (both paths; and with --prefetch 4, where the call
#               for N also fetches N+1..N+4 so the next calls are a rename),
#               pgbackrest archive-get, into DATA/pg_wal/RECOVERYXLOG as
#               PostgreSQL asks.
#    BENCH_ROUNDS rounds (default 3), each into fresh repositories.
# 4. A markdown table of medians (ms) and the ratios against the targets:
#    archive <= 1/3 of pgBackRest and <= 1.5x the floor; restore <= 1/2 of pgBackRest.
#
# BENCH_WAL_ALT=BUILD2: a second build's ragsafe-restore restores too, in the same
# rotation from the same repositories ("restore-ragsafe-alt": before / after a change).
# Progress goes to stderr, the table to stdout. KEEP_TMP=1 keeps the work dir.
set -euo pipefail

BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")" && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
ROUNDS=${BENCH_ROUNDS:-3}
NSEG=${BENCH_SEGMENTS:-16}

say() { echo "bench-wal: $*" >&2; }
die() { echo "bench-wal: error: $*" >&2; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

for t in ragsafe-archive ragsafe-restore; do
    [ -x "$BUILD/bin/$t" ] || die "no \"$BUILD/bin/$t\" (run make first)"
done
command -v pgbackrest >/dev/null || die "pgbackrest is not installed (scripts/install-deps.sh)"
[ -x "$PGBIN/initdb" ] || die "PostgreSQL 15 is not installed in \"$PGBIN\""
[ "$(id -u)" -eq 0 ] || die "run as root (the cluster and pgBackRest run as postgres)"

B=$(mktemp -d /tmp/ragsafe-bench-wal.XXXXXX)
chmod 0755 "$B"
chown postgres: "$B"
cleanup() {
    if [ -f "$B/pg/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$B/pg" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ -z "${KEEP_TMP:-}" ]; then rm -rf "$B"; else say "kept $B"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- executables where postgres can run them
as_pg mkdir -p "$B/bin" "$B/segs" "$B/sock" "$B/rd/pg_wal" "$B/pgbr-log" "$B/pgbr-lock"
install -m 0755 "$BUILD/bin/ragsafe-archive" "$BUILD/bin/ragsafe-restore" "$B/bin/"
ALT=${BENCH_WAL_ALT:-}
if [ -n "$ALT" ]; then
    [ -x "$ALT/bin/ragsafe-restore" ] || die "no \"$ALT/bin/ragsafe-restore\" (BENCH_WAL_ALT)"
    install -m 0755 "$ALT/bin/ragsafe-restore" "$B/bin/ragsafe-restore-alt"
fi
cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o "$B/bin/floor" "$SRC/floor.c" \
    $(pkg-config --cflags --libs libzstd libcrypto) || die "could not build bench/floor.c"

# --- 16 real pgbench segments
say "making $NSEG pgbench segments"
as_pg "$PGBIN/initdb" -D "$B/pg" -A trust -U postgres --no-sync >"$B/initdb.log" 2>&1 \
    || { cat "$B/initdb.log" >&2; die "initdb failed"; }
cat >>"$B/pg/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$B/sock'
port = 5432
fsync = off
shared_buffers = 64MB
max_wal_size = 1GB
checkpoint_timeout = 30s
wal_level = replica
archive_mode = on
archive_command = 'cp %p $B/segs/%f'
log_min_messages = warning
CONF
as_pg "$PGBIN/pg_ctl" -D "$B/pg" -l "$B/pg.log" -w -t 120 start >/dev/null || die "could not start the cluster"
sql() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$B/sock" -p 5432 -U postgres -d postgres -c "$1"; }
pgb() { as_pg "$PGBIN/pgbench" -h "$B/sock" -p 5432 -U postgres "$@" postgres >/dev/null 2>&1; }
pgb -i -s 10 -q || die "pgbench -i failed"
first=$(sql "select pg_walfile_name(pg_current_wal_lsn())")
count_new() { (cd "$B/segs" && ls | grep -E '^[0-9A-F]{24}$' | awk -v f="$first" '$0 > f' | wc -l); }
for ((i = 0; i < 20; i++)); do
    [ "$(count_new)" -gt "$NSEG" ] && break
    pgb -n -c 2 -j 2 -T 10 || die "pgbench failed"
done
last=$(sql "select pg_walfile_name(pg_switch_wal())")
for ((i = 0; i < 300; i++)); do
    [ "$(sql "select last_archived_wal >= '$last' from pg_stat_archiver")" = t ] && break
    sleep 0.2
done
# full segments written by pgbench transactions: after the one -i ended in, before
# the last (cut short by pg_switch_wal)
mapfile -t SEGS < <(cd "$B/segs" && ls | grep -E '^[0-9A-F]{24}$' | sort \
    | awk -v f="$first" -v l="$last" '$0 > f && $0 < l' | head -n "$NSEG")
[ "${#SEGS[@]}" -eq "$NSEG" ] || die "only ${#SEGS[@]} pgbench segments, wanted $NSEG"
seg_size=$(stat -c %s "$B/segs/${SEGS[0]}")

# --- pgBackRest: one stanza (repository) per round, created against the live cluster
for ((r = 1; r <= ROUNDS; r++)); do
    cat >"$B/pgbr$r.conf" <<CONF
[global]
repo1-path=$B/pgbr$r
repo1-type=posix
compress-type=zst
compress-level=3
archive-async=n
log-level-console=warn
log-level-stderr=warn
log-level-file=off
log-path=$B/pgbr-log
lock-path=$B/pgbr-lock

[bench]
pg1-path=$B/pg
pg1-socket-path=$B/sock
pg1-port=5432
pg1-user=postgres
CONF
    chown postgres: "$B/pgbr$r.conf"
    as_pg pgbackrest --config="$B/pgbr$r.conf" --stanza=bench stanza-create >"$B/stanza.log" 2>&1 \
        || { cat "$B/stanza.log" >&2; die "pgbackrest stanza-create failed"; }
done
as_pg "$PGBIN/pg_ctl" -D "$B/pg" -m fast -w -t 120 stop >/dev/null
chmod -R a+rX "$B/segs"

# --- the timed part: one bash as postgres
cat >"$B/inner.sh" <<'INNER'
set -eu
B=$1 ROUNDS=$2 PIN=$3; shift 3
SEGS=("$@")
times=$B/times
tf=$B/.cpu
# child_cpu: CPU=user+sys ms of every child so far (the times builtin, no fork).
child_cpu() {
    local l u s
    times >"$tf"
    { read -r l; read -r l; } <"$tf"
    u=${l%% *} s=${l##* }
    CPU=0
    for v in "$u" "$s"; do
        local m=${v%%m*} x=${v#*m}
        x=${x%s}
        CPU=$((CPU + m * 60000 + 10#${x%.*} * 1000 + 10#${x#*.}))
    done
}
# t TOOL CMD...: run CMD, append "TOOL wall-microseconds cpu-ms" to $times; a failure
# stops all.
t() {
    local tool=$1 a b c0; shift
    child_cpu; c0=$CPU
    a=${EPOCHREALTIME/./}
    "$@" || { echo "bench-wal: error: $tool failed: $*" >&2; exit 1; }
    b=${EPOCHREALTIME/./}
    child_cpu
    echo "$tool $((b - a)) $((CPU - c0)) $ROUND" >>"$times"
}
nouring() { RAGSAFE_NO_URING=1 "$@"; }
cpsync() { cp "$1" "$2" && sync "$2"; }
out=$B/rd/pg_wal/RECOVERYXLOG

# warm-up: binaries and libraries into the page cache, nothing recorded
s=${SEGS[0]}
mkdir -p "$B/warm"   # no tool creates a repository's root
"$B/bin/ragsafe-archive" --repo "$B/warm" "$B/segs/$s" "$s"
"$B/bin/ragsafe-restore" --repo "$B/warm" "$s" "$out"; rm -f "$out"
pgbackrest --config="$B/pgbr1.conf" --stanza=bench archive-push "$B/segs/$s" >/dev/null
pgbackrest --config="$B/pgbr1.conf" --stanza=bench archive-get "$s" "$out" >/dev/null; rm -f "$out"
"$B/bin/floor" "$B/segs/$s" >/dev/null
for ((r = 1; r <= ROUNDS; r++)); do
    rm -rf "$B/pgbr$r/archive/bench/15-1/"[0-9A-F]*   # the warm-up's segment
    mkdir -p "$B/cp$r" "$B/ad$r/pg_wal/archive_status" "$B/rs$r" "$B/rsnu$r" "$B/rsla$r"
    # repo.json exists before the timing starts (a segment outside the timed set)
    for rp in rs rsnu rsla; do "$B/bin/ragsafe-archive" --repo "$B/$rp$r" "$B/segs/$PIN" "$PIN"; done
    for s in "${SEGS[@]}"; do
        ln "$B/segs/$s" "$B/ad$r/pg_wal/$s"
        : >"$B/ad$r/pg_wal/archive_status/$s.ready"
    done
done

archive_one() {
    local tool=$1 r=$2 s=$3
    case $tool in
        ragsafe) t archive-ragsafe "$B/bin/ragsafe-archive" --repo "$B/rs$r" "$B/segs/$s" "$s" ;;
        ragsafe-nouring) t archive-ragsafe-nouring nouring "$B/bin/ragsafe-archive" --repo "$B/rsnu$r" "$B/segs/$s" "$s" ;;
        pgbackrest) t archive-pgbackrest pgbackrest --config="$B/pgbr$r.conf" --stanza=bench archive-push "$B/segs/$s" ;;
        ragsafe-ahead)
            # as PostgreSQL calls it: cwd the data directory, %p relative, .ready
            # files for what is still to archive, .done once a call returned 0
            cd "$B/ad$r"
            t archive-ragsafe-ahead "$B/bin/ragsafe-archive" --look-ahead 4 --repo "$B/rsla$r" "pg_wal/$s" "$s"
            mv "pg_wal/archive_status/$s.ready" "pg_wal/archive_status/$s.done"
            cd "$B" ;;
        cp) t archive-cp cpsync "$B/segs/$s" "$B/cp$r/$s" ;;
        floor) t floor "$B/bin/floor" "$B/segs/$s" >/dev/null ;;
    esac
}
restore_one() {
    local tool=$1 r=$2 s=$3
    case $tool in
        ragsafe) t restore-ragsafe "$B/bin/ragsafe-restore" --repo "$B/rs$r" "$s" "$out" ;;
        ragsafe-nouring) t restore-ragsafe-nouring nouring "$B/bin/ragsafe-restore" --repo "$B/rsnu$r" "$s" "$out" ;;
        ragsafe-alt) t restore-ragsafe-alt "$B/bin/ragsafe-restore-alt" --repo "$B/rs$r" "$s" "$out" ;;
        ragsafe-prefetch) t restore-ragsafe-prefetch "$B/bin/ragsafe-restore" --prefetch 4 --repo "$B/rs$r" "$s" "$out" ;;
        pgbackrest) t restore-pgbackrest pgbackrest --config="$B/pgbr$r.conf" --stanza=bench archive-get "$s" "$out" ;;
    esac
    cmp -s "$out" "$B/segs/$s" || { echo "bench-wal: error: $tool restored a wrong $s" >&2; exit 1; }
    rm -f "$out"
}

ATOOLS=(ragsafe pgbackrest cp floor ragsafe-nouring ragsafe-ahead)
"$B/bin/ragsafe-archive" --help 2>&1 | grep -q -- --look-ahead || ATOOLS=(ragsafe pgbackrest cp floor ragsafe-nouring)
RTOOLS=(ragsafe pgbackrest ragsafe-nouring ragsafe-prefetch)
"$B/bin/ragsafe-restore" --help 2>&1 | grep -q -- --prefetch || RTOOLS=(ragsafe pgbackrest ragsafe-nouring)
[ -x "$B/bin/ragsafe-restore-alt" ] && RTOOLS+=(ragsafe-alt)
for ((r = 1; r <= ROUNDS; r++)); do
    echo "bench-wal: round $r of $ROUNDS" >&2
    ROUND=$r
    sync
    for ((i = 0; i < ${#SEGS[@]}; i++)); do
        for ((k = 0; k < ${#ATOOLS[@]}; k++)); do
            archive_one "${ATOOLS[(i + k) % ${#ATOOLS[@]}]}" $r "${SEGS[i]}"
        done
    done
    sync
    for ((i = 0; i < ${#SEGS[@]}; i++)); do
        for ((k = 0; k < ${#RTOOLS[@]}; k++)); do
            restore_one "${RTOOLS[(i + k) % ${#RTOOLS[@]}]}" $r "${SEGS[i]}"
        done
    done
done
INNER
say "timing $NSEG segments x $ROUNDS rounds"
pin=$(cd "$B/segs" && ls | grep -E '^[0-9A-F]{24}$' | sort | head -1)
as_pg bash "$B/inner.sh" "$B" "$ROUNDS" "$pin" "${SEGS[@]}" || die "the timed run failed"

# --- the table
# med KEY [COLUMN [DIVISOR]]: median of a column of $B/times (default: wall ms)
med() { awk -v k="$1" -v c="${2:-2}" '$1 == k { print $c }' "$B/times" | sort -n \
    | awk -v d="${3:-1000}" '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f", m / d }'; }
cpu() { awk -v k="$1" '$1 == k { s += $3; n++ } END { if (n) printf "%.1f", s / n; else print "nan" }' "$B/times"; }
mean() { awk -v k="$1" '$1 == k { s += $2; n++ } END { if (n) printf "%.1f", s / n / 1000; else print "nan" }' "$B/times"; }
cnt() { awk -v k="$1" '$1 == k' "$B/times" | wc -l; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v x="$1" -v lim="$2" 'BEGIN { print (x <= lim) ? "met" : "MISSED" }'; }

a_rs=$(med archive-ragsafe) a_rsnu=$(med archive-ragsafe-nouring) a_pb=$(med archive-pgbackrest)
a_cp=$(med archive-cp) fl=$(med floor)
r_rs=$(med restore-ragsafe) r_rsnu=$(med restore-ragsafe-nouring) r_pb=$(med restore-pgbackrest)
raw=$((NSEG * seg_size))
size_rs=$(du -sb "$B/rs1/wal" | cut -f1)
size_pb=$(du -sb "$B/pgbr1/archive" | cut -f1)

# per_round A B: the ratio of A's median to B's in each round, "lo-hi" (the spread)
per_round() {
    awk -v a="$1" -v b="$2" '$1 == a || $1 == b { print $4, $1, $2 }' "$B/times" | sort -k1,1n -k2,2 -k3,3n \
        | awk -v a="$1" '
            function med(arr, n) { return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2 }
            function flush() { if (na && nb) { r = med(va, na) / med(vb, nb); if (lo == "" || r < lo) lo = r; if (hi == "" || r > hi) hi = r } na = nb = 0 }
            $1 != cur { flush(); cur = $1 }
            $2 == a { va[++na] = $3; next } { vb[++nb] = $3 }
            END { flush(); if (lo == "") print "nan"; else printf "%.2f-%.2f", lo, hi }'
}
alt_row=
[ -n "$ALT" ] && alt_row=$'\n'"| restore | ragsafe-restore of BENCH_WAL_ALT ($ALT) | $(med restore-ragsafe-alt) | $(ratio "$(med restore-ragsafe-alt)" "$r_pb") (per round $(per_round restore-ragsafe-alt restore-pgbackrest)) | | $(mean restore-ragsafe-alt) | $(cpu restore-ragsafe-alt) |"
cat <<TABLE
### WAL path: per-segment medians (whole process, ms)

$NSEG pgbench segments of $((seg_size >> 20)) MiB x $ROUNDS rounds = $(cnt archive-ragsafe) runs per tool;
$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, kernel $(uname -r),
$(pgbackrest version), zstd $(zstd -V | grep -oE 'v[0-9.]+' | head -1). Wall medians move with the
machine's load; CPU time (user+sys of the process and its threads) much less.
Level-3 objects: ragsafe $((size_rs * 100 / raw))% of the raw WAL, pgBackRest $((size_pb * 100 / raw))%.

| step | tool | median ms | vs pgBackRest | vs floor | mean ms | mean CPU ms (user+sys) |
|---|---|---:|---:|---:|---:|---:|
| archive | ragsafe-archive | $a_rs | $(ratio "$a_rs" "$a_pb") | $(ratio "$a_rs" "$fl") | $(mean archive-ragsafe) | $(cpu archive-ragsafe) |
| archive | ragsafe-archive (RAGSAFE_NO_URING=1) | $a_rsnu | $(ratio "$a_rsnu" "$a_pb") | $(ratio "$a_rsnu" "$fl") | $(mean archive-ragsafe-nouring) | $(cpu archive-ragsafe-nouring) |
| archive | ragsafe-archive --look-ahead 4 (PostgreSQL's calls in order) | $(med archive-ragsafe-ahead) | $(ratio "$(med archive-ragsafe-ahead)" "$a_pb") | $(ratio "$(med archive-ragsafe-ahead)" "$fl") | $(mean archive-ragsafe-ahead) | $(cpu archive-ragsafe-ahead) |
| archive | pgbackrest archive-push (zst 3, sync) | $a_pb | 1.00 | $(ratio "$a_pb" "$fl") | $(mean archive-pgbackrest) | $(cpu archive-pgbackrest) |
| archive | cp + sync FILE | $a_cp | $(ratio "$a_cp" "$a_pb") | $(ratio "$a_cp" "$fl") | $(mean archive-cp) | $(cpu archive-cp) |
| floor | read + SHA-256 + zstd -3, one process | $fl | $(ratio "$fl" "$a_pb") | 1.00 | $(mean floor) | $(cpu floor) |
| restore | ragsafe-restore | $r_rs | $(ratio "$r_rs" "$r_pb") | | $(mean restore-ragsafe) | $(cpu restore-ragsafe) |$alt_row
| restore | ragsafe-restore (RAGSAFE_NO_URING=1) | $r_rsnu | $(ratio "$r_rsnu" "$r_pb") | | $(mean restore-ragsafe-nouring) | $(cpu restore-ragsafe-nouring) |
| restore | ragsafe-restore --prefetch 4 (PostgreSQL's calls in order) | $(med restore-ragsafe-prefetch) | $(ratio "$(med restore-ragsafe-prefetch)" "$r_pb") | | $(mean restore-ragsafe-prefetch) | $(cpu restore-ragsafe-prefetch) |
| restore | pgbackrest archive-get | $r_pb | 1.00 | | $(mean restore-pgbackrest) | $(cpu restore-pgbackrest) |

With --look-ahead / --prefetch one call does the work of the next few (in parallel
threads) and those calls then return at once: their median is the common case, their
mean the honest cost per segment. CPU counts every thread of the process.

| target | measured | |
|---|---:|---|
| archive <= 1/3 of pgBackRest (median, one call per segment; per round $(per_round archive-ragsafe archive-pgbackrest)) | $(ratio "$a_rs" "$a_pb") | $(verdict "$(ratio "$a_rs" "$a_pb")" 0.334) |
| archive <= 1/3 of pgBackRest (--look-ahead 4, mean per segment) | $(ratio "$(mean archive-ragsafe-ahead)" "$(mean archive-pgbackrest)") | $(verdict "$(ratio "$(mean archive-ragsafe-ahead)" "$(mean archive-pgbackrest)")" 0.334) |
| archive <= 1.5x the floor | $(ratio "$a_rs" "$fl") | $(verdict "$(ratio "$a_rs" "$fl")" 1.5) |
| restore <= 1/2 of pgBackRest (median, one call per segment; per round $(per_round restore-ragsafe restore-pgbackrest)) | $(ratio "$r_rs" "$r_pb") | $(verdict "$(ratio "$r_rs" "$r_pb")" 0.5) |
| restore <= 1/2 of pgBackRest (--prefetch 4, mean per segment) | $(ratio "$(mean restore-ragsafe-prefetch)" "$(mean restore-pgbackrest)") | $(verdict "$(ratio "$(mean restore-ragsafe-prefetch)" "$(mean restore-pgbackrest)")" 0.5) |
TABLE
