#!/usr/bin/env bash
# bench/bench-archive-load.sh BUILD -- sustained archiving under a full pgbench load
# (issue 16): TPS and the pg_wal backlog with each archive_command.
#
# One PostgreSQL 15 cluster (pgbench scale BENCH_ARCHIVE_SCALE, default 20, ~300 MB;
# checkpoint_timeout 60s so full-page images recur; fsync on; synchronous_commit off
# by default, BENCH_ARCHIVE_SYNC_COMMIT=on to change: this machine's virtual disk takes
# ~10 ms per fsync, so with it on pgbench waits on the disk at ~100 TPS and writes a
# segment every ~8 s, which any archiver keeps up with; off, pgbench is CPU-bound as on
# a production server with a fast WAL disk and writes several segments a second,
# which is the load this benchmark is about). Its archive_command is switched with ALTER SYSTEM + pg_reload_conf()
# between runs rather than one cluster per configuration: every configuration then
# sees the same database, the same files on the same disk and the same shared buffers,
# and no initdb + pgbench -i (a minute or more here) sits between runs. archive_command
# is a sighup setting: the archiver rereads it between two calls; that the switch took
# is proved before each run (the segment pg_switch_wal() closes must land in the new
# destination).
#
# Configurations (a fresh destination per configuration and round):
#   cp            cp %p DIR/%f && sync DIR/%f   (coreutils sync FILE = fsync of that
#                 file: the copy is durable before PostgreSQL recycles the segment,
#                 as every other configuration's is; uncompressed)
#   ragsafe       ragsafe-archive --repo DIR %p %f            (zstd 3, the defaults)
#   ragsafe-ahead ragsafe-archive --look-ahead 4 --repo DIR %p %f   (4: the README's
#                 and the S3 default)
#   pgbackrest    pgbackrest archive-push %p, archive-async=y, process-max=2, a spool
#                 directory, compress-type=zst, compress-level=3 (its best configuration
#                 here, as in bench-pitr.sh)
# Each run: the previous configuration's backlog drained, the new command proved in
# effect, CHECKPOINT; then `pgbench -n -c 2 -j 2 -T BENCH_ARCHIVE_SECONDS` (default 300,
# the issue's 5 minutes) while a sampler counts pg_wal/archive_status/*.ready every
# 0.5 s; then pg_switch_wal() and the time until everything is archived ("drain").
# Checked at the end of each run: pg_stat_archiver's failed_count did not move, and
# every segment from the run's first to its last is in the destination.
# BENCH_ARCHIVE_ROUNDS rounds (default 1); the order is forward in odd rounds and
# reversed in even ones, rotated by one every two rounds.
# Table: per configuration the median TPS, TPS vs cp's in the same round (median and
# range), the backlog's max and p95 (.ready files, all samples of all rounds), the
# median drain time and the archiver's children's CPU time per segment (user+sys of
# the archive_command processes; pgBackRest's async process detaches and is not
# counted there).
#
# Progress goes to stderr, the table to stdout. KEEP_TMP=1 keeps the work dir.
set -euo pipefail

BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SECS=${BENCH_ARCHIVE_SECONDS:-300}
ROUNDS=${BENCH_ARCHIVE_ROUNDS:-1}
SCALE=${BENCH_ARCHIVE_SCALE:-20}
AHEAD=${BENCH_ARCHIVE_AHEAD:-4}
SYNC_COMMIT=${BENCH_ARCHIVE_SYNC_COMMIT:-off}
CONFIGS=(cp ragsafe ragsafe-ahead pgbackrest)
[ -n "${BENCH_ARCHIVE_CONFIGS:-}" ] && read -r -a CONFIGS <<<"$BENCH_ARCHIVE_CONFIGS"

say() { echo "bench-archive-load: $*" >&2; }
die() { echo "bench-archive-load: error: $*" >&2; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

[ -x "$BUILD/bin/ragsafe-archive" ] || die "no \"$BUILD/bin/ragsafe-archive\" (run make first)"
command -v pgbackrest >/dev/null || die "pgbackrest is not installed (scripts/install-deps.sh)"
[ -x "$PGBIN/initdb" ] || die "PostgreSQL 15 is not installed in \"$PGBIN\""
[ "$(id -u)" -eq 0 ] || die "run as root (the cluster and pgBackRest run as postgres)"

B=$(mktemp -d /tmp/ragsafe-bench-archload.XXXXXX)
chmod 0755 "$B"
sampler_pid=
cleanup() {
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
    if [ -f "$B/pg/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$B/pg" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ -z "${KEEP_TMP:-}" ]; then rm -rf "$B"; else say "kept $B"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$B/bin" "$B/sock" "$B/a" "$B/pgbr-lock" "$B/pgbr-log"
install -m 0755 "$BUILD/bin/ragsafe-archive" "$B/bin/"
chown -R postgres: "$B"

say "initdb and pgbench -i -s $SCALE"
as_pg "$PGBIN/initdb" -D "$B/pg" -A trust -U postgres >"$B/initdb.log" 2>&1 \
    || { cat "$B/initdb.log" >&2; die "initdb failed"; }
cat >>"$B/pg/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$B/sock'
port = 5432
shared_buffers = 128MB
max_wal_size = 1GB
checkpoint_timeout = 60s
synchronous_commit = $SYNC_COMMIT
wal_level = replica
archive_mode = on
archive_command = 'true'
log_min_messages = warning
CONF
as_pg "$PGBIN/pg_ctl" -D "$B/pg" -l "$B/pg.log" -w -t 120 start >/dev/null || die "could not start the cluster"
sql() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$B/sock" -p 5432 -U postgres -d postgres -c "$1"; }
as_pg "$PGBIN/pgbench" -h "$B/sock" -p 5432 -U postgres -i -s "$SCALE" -q postgres >"$B/init.log" 2>&1 \
    || { tail -3 "$B/init.log" >&2; die "pgbench -i failed"; }

# pgBackRest: one stanza (repository, spool) per round, created against the live cluster
for ((r = 1; r <= ROUNDS; r++)); do
    cat >"$B/pgbr$r.conf" <<CONF
[global]
repo1-path=$B/a/pgbackrest$r
repo1-type=posix
compress-type=zst
compress-level=3
archive-async=y
process-max=2
spool-path=$B/spool$r
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

# command CONFIG ROUND: the archive_command; dest CONFIG ROUND: where it archives
dest() { echo "$B/a/$1$2"; }
command_of() {
    local d; d=$(dest "$1" "$2")
    case $1 in
        cp) echo "cp %p $d/%f && sync $d/%f" ;;
        ragsafe) echo "$B/bin/ragsafe-archive --repo $d %p %f" ;;
        ragsafe-ahead) echo "$B/bin/ragsafe-archive --look-ahead $AHEAD --repo $d %p %f" ;;
        pgbackrest) echo "pgbackrest --config=$B/pgbr$2.conf --stanza=bench archive-push %p" ;;
        *) die "unknown configuration \"$1\"" ;;
    esac
}
# archived NAME CONFIG ROUND: is segment NAME in that destination?
archived() {
    local d; d=$(dest "$2" "$3")
    case $2 in
        cp) [ -f "$d/$1" ] ;;
        ragsafe | ragsafe-ahead) [ -f "$d/wal/${1:0:16}/$1.zst" ] ;;
        pgbackrest) compgen -G "$d/archive/bench/15-1/${1:0:16}/$1-*" >/dev/null ;;
    esac
}
# wait_archived LSN: until pg_stat_archiver has archived the segment holding LSN
# (its WAL file was switched already); prints nothing, fails after 10 minutes
wait_archived() {
    local seg i
    seg=$(sql "select pg_walfile_name('$1')")
    for ((i = 0; i < 6000; i++)); do
        [ "$(sql "select coalesce(last_archived_wal, '') >= '$seg' from pg_stat_archiver")" = t ] && return 0
        sleep 0.1
    done
    die "the archiver did not reach $seg: $(sql "select * from pg_stat_archiver")"
}
# switch_and_wait: close the current segment and wait until it is archived; prints
# its name
switch_and_wait() {
    local lsn
    lsn=$(sql "select pg_switch_wal()")
    wait_archived "$lsn"
    sql "select pg_walfile_name('$lsn')"
}
archiver_pid() { sql "select pid from pg_stat_activity where backend_type = 'archiver'"; }
# children CPU (clock ticks, user+sys) the archiver has reaped so far
archiver_cpu() { awk '{ print $16 + $17 }' "/proc/$1/stat"; }

switch_and_wait >/dev/null   # pgbench -i's WAL, through 'true'
apid=$(archiver_pid)
[ -n "$apid" ] || die "no archiver process"
hz=$(getconf CLK_TCK)

# the sampler: .ready files every 0.5 s, one count per line, until killed
sample() {
    shopt -s nullglob
    local f
    while :; do
        f=("$B/pg/pg_wal/archive_status/"*.ready)
        echo "${#f[@]}"
        sleep 0.5
    done
}

results=$B/results   # config round tps drain_ms segments cpu_ticks failed
: >"$results"
run_one() {
    local cfg=$1 r=$2 i d cmd seg first last lsn0 lsn1 c0 c1 f0 f1 n0 n1 t0 t1 tps missing=0
    d=$(dest "$cfg" "$r")
    as_pg mkdir -p "$d"
    cmd=$(command_of "$cfg" "$r")
    sql "alter system set archive_command = '$cmd'" >/dev/null
    sql "select pg_reload_conf()" >/dev/null
    # the previous configuration's last segment is archived (run_one ends that way);
    # a switch's segment must land here: the archiver runs the new command (the
    # postmaster forwards the SIGHUP asynchronously: the first may go the old way)
    for ((i = 0; ; i++)); do
        seg=$(switch_and_wait)
        archived "$seg" "$cfg" "$r" && break
        [ "$i" -lt 10 ] || die "$cfg: $seg not in $d: the new archive_command is not in effect"
        sleep 0.5
    done
    sql "checkpoint" >/dev/null
    lsn0=$(sql "select pg_current_wal_lsn()")
    first=$(sql "select pg_walfile_name('$lsn0')")
    read -r f0 n0 <<<"$(sql "select failed_count, archived_count from pg_stat_archiver" | tr '|' ' ')"
    c0=$(archiver_cpu "$apid")
    say "round $r: $cfg for $SECS s (load $(cut -d' ' -f1-3 /proc/loadavg))"
    sample >"$B/ready.$cfg.$r" &
    sampler_pid=$!
    as_pg "$PGBIN/pgbench" -h "$B/sock" -p 5432 -U postgres -n -c 2 -j 2 -T "$SECS" postgres \
        >"$B/pgbench.$cfg.$r" 2>&1 || { cat "$B/pgbench.$cfg.$r" >&2; die "pgbench failed"; }
    t0=${EPOCHREALTIME/./}
    kill "$sampler_pid"; wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$B/pgbench.$cfg.$r")
    [ -n "$tps" ] || { cat "$B/pgbench.$cfg.$r" >&2; die "no tps in pgbench's output"; }
    last=$(switch_and_wait)
    t1=${EPOCHREALTIME/./}
    c1=$(archiver_cpu "$apid")
    read -r f1 n1 <<<"$(sql "select failed_count, archived_count from pg_stat_archiver" | tr '|' ' ')"
    lsn1=$(sql "select pg_current_wal_lsn()")
    # every segment of the run, first to last, is in the destination
    while read -r s; do
        [ "$s" \> "$last" ] && break
        archived "$s" "$cfg" "$r" || { say "$cfg round $r: $s missing from $d"; missing=$((missing + 1)); }
    done < <(sql "select pg_walfile_name('$lsn0'::pg_lsn + n * 16777216::numeric)
                  from generate_series(0, ceil(('$lsn1'::pg_lsn - '$lsn0'::pg_lsn) / 16777216)::int) n")
    [ "$missing" -eq 0 ] || die "$cfg: $missing segments of round $r were not archived"
    echo "$cfg $r $tps $(((t1 - t0) / 1000)) $((n1 - n0)) $((c1 - c0)) $((f1 - f0))" >>"$results"
    say "  tps $tps, $((n1 - n0)) segments ($first..$last), max backlog $(sort -n "$B/ready.$cfg.$r" | tail -1), drain $(((t1 - t0) / 1000)) ms, failed $((f1 - f0))"
}

for ((r = 1; r <= ROUNDS; r++)); do
    n=${#CONFIGS[@]} rot=$(((r - 1) / 2))
    for ((k = 0; k < n; k++)); do
        if ((r % 2)); then i=$(((k + rot) % n)); else i=$(((n - 1 - k + rot) % n)); fi
        run_one "${CONFIGS[i]}" "$r"
    done
done

# --- the table
col() { awk -v c="$1" -v k="$2" '$1 == c { print $k }' "$results"; }
# median [FORMAT]: of the numbers on stdin
median() { sort -g | awk -v f="${1:-%.1f}" '{ v[NR] = $1 } END { if (!NR) { print "nan"; exit } printf f, (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
range() { sort -g | awk '{ v[NR] = $1 } END { if (NR > 1) printf " (%.2f-%.2f)", v[1], v[NR] }'; }
# per round, TPS / cp's TPS in that round
vs_cp() { awk -v c="$1" '$1 == "cp" { cp[$2] = $3 } $1 == c { t[$2] = $3 } END { for (r in t) if (cp[r]) printf "%.4f\n", t[r] / cp[r] }' "$results"; }
backlog() { cat "$B"/ready."$1".* | sort -n | awk -v q="$2" '{ v[NR] = $1 } END { if (!NR) { print "nan"; exit } i = int(NR * q + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; print v[i] }'; }
# the archive_command processes' CPU as a share of the machine over the runs (pgbench
# time + drain): what archiving takes from a CPU-bound server, without the TPS noise
# of a shared machine
cpu_share() { awk -v c="$1" -v hz="$hz" -v s="$SECS" -v n="$(nproc)" '$1 == c { t += $6; w += s + $4 / 1000 } END { if (w) printf "%.1f", t / hz / (w * n) * 100; else print "nan" }' "$results"; }
cpu_per_seg() { awk -v c="$1" -v hz="$hz" '$1 == c { t += $6; s += $5 } END { if (s) printf "%.0f", t * 1000 / hz / s; else print "nan" }' "$results"; }
name_of() {
    case $1 in
        cp) echo 'cp %p DIR/%f && sync DIR/%f' ;;
        ragsafe) echo 'ragsafe-archive' ;;
        ragsafe-ahead) echo "ragsafe-archive --look-ahead $AHEAD" ;;
        pgbackrest) echo 'pgbackrest archive-push (async, process-max 2)' ;;
    esac
}
cat <<HEAD
### Sustained archiving under pgbench (TPS and pg_wal backlog)

pgbench scale $SCALE, \`pgbench -n -c 2 -j 2 -T $SECS\`, fsync on, synchronous_commit $SYNC_COMMIT,
checkpoint_timeout 60s, one cluster whose archive_command is switched between runs;
$ROUNDS round(s), order alternating; zstd level 3 for every compressing tool.
$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, kernel $(uname -r),
$(pgbackrest version). Backlog: .ready files in pg_wal/archive_status sampled every 0.5 s
(all rounds); drain: from the end of pgbench until the last segment is archived;
CPU: user+sys of the archive_command processes per segment, and as a share of the
machine's CPU time during the runs (pgBackRest's async process detaches: not counted).

| archive_command | median TPS | TPS vs cp (per round) | max backlog | p95 backlog | segments per run | median drain (s) | CPU ms per segment | CPU % of the machine | failed |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
HEAD
for c in "${CONFIGS[@]}"; do
    fails=$(col "$c" 7 | awk '{ s += $1 } END { print s + 0 }')
    echo "| $(name_of "$c") | $(col "$c" 3 | median) | $(vs_cp "$c" | median %.3f)$(vs_cp "$c" | range) | $(backlog "$c" 1) | $(backlog "$c" 0.95) | $(col "$c" 5 | median) | $(col "$c" 4 | awk '{ print $1 / 1000 }' | median %.1f) | $(cpu_per_seg "$c") | $(cpu_share "$c") | $fails |"
done
cat <<TAIL

Target: TPS within 5 % of cp's (ratio >= 0.95) and the backlog never above 4 segments.
Per run (config round tps drain_ms segments cpu_ticks failed):

\`\`\`
$(cat "$results")
\`\`\`
TAIL
