#!/usr/bin/env bash
# bench/bench-receive.sh BUILD -- commit latency and TPS with ragsafe-receive as the
# synchronous standby, against pg_receivewal --synchronous in the same role.
#
# One PostgreSQL 15 cluster (fsync on, synchronous_commit = on,
# synchronous_standby_names = 'bench_sync'), pgbench scale 10. BENCH_ROUNDS pairs
# (default 3): ragsafe-receive (posix repository, spool on the same disk) and
# pg_receivewal --synchronous (its own directory), each on its own physical slot and
# under application_name bench_sync, alternating which runs first; each run waits for
# sync_state = sync, then pgbench -n -c 4 -j 2 -T BENCH_SECONDS (default 20).
# A markdown table of medians: TPS, average latency, and ragsafe-receive's TPS as a
# share of pg_receivewal's (target: >= 90 %).
#
# Progress goes to stderr, the table to stdout. KEEP_TMP=1 keeps the work dir.
set -euo pipefail

BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-20}

say() { echo "bench-receive: $*" >&2; }
die() { echo "bench-receive: error: $*" >&2; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

[ -x "$BUILD/bin/ragsafe-receive" ] || die "no \"$BUILD/bin/ragsafe-receive\" (run make first)"
[ -x "$PGBIN/pg_receivewal" ] || die "PostgreSQL 15 is not installed in \"$PGBIN\""
[ "$(id -u)" -eq 0 ] || die "run as root (the cluster runs as postgres)"

B=$(mktemp -d /var/tmp/ragsafe-bench-receive.XXXXXX)
chmod 0755 "$B"
chown postgres: "$B"
TPID=
cleanup() {
    [ -n "$TPID" ] && kill "$TPID" 2>/dev/null && wait "$TPID" 2>/dev/null
    if [ -f "$B/pg/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$B/pg" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ -z "${KEEP_TMP:-}" ]; then rm -rf "$B"; else say "kept $B"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_pg "$PGBIN/initdb" -D "$B/pg" -A trust -U postgres >"$B/initdb.log" 2>&1
cat >>"$B/pg/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$B/pg'
shared_buffers = 128MB
max_wal_size = 1GB
synchronous_commit = on
synchronous_standby_names = 'bench_sync'
CONF
as_pg "$PGBIN/pg_ctl" -D "$B/pg" -l "$B/pg.log" -w start >/dev/null
CONN="host=$B/pg user=postgres dbname=postgres"
sql() { as_pg "$PGBIN/psql" -XAtq -h "$B/pg" -U postgres -d postgres -c "$1"; }
sql "select pg_create_physical_replication_slot('bench_r', true)" >/dev/null
sql "select pg_create_physical_replication_slot('bench_w', true)" >/dev/null
say "pgbench -i -s 10 (no standby yet: synchronous_standby_names off while loading)"
sql "alter system set synchronous_standby_names = ''" >/dev/null
sql "select pg_reload_conf()" >/dev/null
as_pg "$PGBIN/pgbench" -h "$B/pg" -U postgres -i -s 10 -q postgres >"$B/init.log" 2>&1
sql "alter system reset synchronous_standby_names" >/dev/null
sql "select pg_reload_conf()" >/dev/null
mkdir -p "$B/repo" "$B/spool" "$B/walrecv"

start_tool() {
    case $1 in
    ragsafe-receive)
        "$BUILD/bin/ragsafe-receive" --repo "$B/repo" --spool "$B/spool" -d "$CONN" \
            --slot bench_r --application-name bench_sync >>"$B/receive.log" 2>&1 &
        ;;
    pg_receivewal)
        "$PGBIN/pg_receivewal" -D "$B/walrecv" -d "$CONN application_name=bench_sync" \
            --slot bench_w --synchronous --no-loop >>"$B/receivewal.log" 2>&1 &
        ;;
    esac
    TPID=$!
    local i
    for ((i = 0; i < 150; i++)); do
        [ "$(sql "select count(*) from pg_stat_replication where application_name = 'bench_sync' and sync_state = 'sync'")" = 1 ] && return 0
        sleep 0.2
    done
    die "$1 did not become the synchronous standby"
}
stop_tool() {
    kill "$TPID"
    wait "$TPID" 2>/dev/null || true
    TPID=
}

declare -A TPS LAT
for ((round = 1; round <= ROUNDS; round++)); do
    if [ $((round % 2)) = 1 ]; then order="ragsafe-receive pg_receivewal"; else order="pg_receivewal ragsafe-receive"; fi
    for tool in $order; do
        start_tool "$tool"
        out=$(as_pg "$PGBIN/pgbench" -h "$B/pg" -U postgres -n -c 4 -j 2 -T "$SECS" postgres 2>&1)
        stop_tool
        tps=$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' <<<"$out")
        lat=$(sed -nE 's/^latency average = ([0-9.]+) ms/\1/p' <<<"$out")
        [ -n "$tps" ] || die "pgbench gave no tps: $out"
        say "round $round $tool: $tps tps, $lat ms"
        TPS[$tool]="${TPS[$tool]:-} $tps"
        LAT[$tool]="${LAT[$tool]:-} $lat"
    done
done

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
rt=$(median <<<"${TPS[ragsafe-receive]}")
wt=$(median <<<"${TPS[pg_receivewal]}")
echo "| synchronous standby ($ROUNDS rounds x $SECS s, pgbench -c 4) | TPS (median) | latency avg ms (median) |"
echo "|---|---|---|"
echo "| ragsafe-receive | $rt | $(median <<<"${LAT[ragsafe-receive]}") |"
echo "| pg_receivewal --synchronous | $wt | $(median <<<"${LAT[pg_receivewal]}") |"
awk -v a="$rt" -v b="$wt" 'BEGIN { r = 100 * a / b; printf "| ragsafe-receive / pg_receivewal | %.0f %% (target >= 90 %%: %s) | |\n", r, ((r >= 90) ? "met" : "not met") }'
