#!/usr/bin/env bash
# bench/bench-s3.sh BUILD -- the WAL path with the repository in S3 and a remote
# store's latency: ragsafe-archive (look-ahead on / off) and ragsafe-restore (prefetch
# on / off) against pgBackRest's archive-push / archive-get with archive-async=y and
# process-max=4, all to the same S3 server.
#
# 1. s3rver (npm; /var/tmp/ragsafe-s3rver) on 127.0.0.1 over TLS (a throwaway
#    self-signed certificate: pgBackRest speaks S3 over TLS only), behind a TCP proxy
#    that holds every client->server chunk for BENCH_LATENCY_MS (default 20) ms: one
#    added round trip latency per request, no bandwidth cap.
# 2. A PostgreSQL 15 cluster under pgbench archives with cp; BENCH_SEGMENTS (default
#    24) full segments are kept; the pgBackRest stanza is created against it, then it
#    stops.
# 3. Archive: PostgreSQL's archiver is emulated exactly: every segment is put back
#    into the stopped cluster's pg_wal with its archive_status/X.ready, and the
#    archive command is called for each in order from the data directory, X.ready
#    renamed to X.done after each success (what pgarch.c does). One bash as postgres
#    times the whole backlog. Each tool archives into its own fresh prefix.
# 4. Restore: recovery's calls are emulated: restore_command for each segment in
#    order into DATA/pg_wal/RECOVERYXLOG, the file removed after each call.
# 5. A markdown table: segments per second and ratios against the targets
#    (archive >= 2x pgBackRest's throughput, restore <= 0.5x its time).
#
# Progress goes to stderr, the table to stdout. KEEP_TMP=1 keeps the work dir.
set -euo pipefail

BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
NSEG=${BENCH_SEGMENTS:-24}
LAT=${BENCH_LATENCY_MS:-20}
S3DIR=/var/tmp/ragsafe-s3rver
S3JS=$S3DIR/node_modules/s3rver/bin/s3rver.js

say() { echo "bench-s3: $*" >&2; }
die() { echo "bench-s3: error: $*" >&2; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
    local i
    for ((i = 0; i < 200; i++)); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

for t in ragsafe-archive ragsafe-restore; do
    [ -x "$BUILD/bin/$t" ] || die "no \"$BUILD/bin/$t\" (run make first)"
done
command -v pgbackrest >/dev/null || die "pgbackrest is not installed (scripts/install-deps.sh)"
command -v node >/dev/null || die "node is not installed (scripts/install-deps.sh: nodejs npm)"
[ "$(id -u)" -eq 0 ] || die "run as root (the cluster and pgBackRest run as postgres)"
if [ ! -f "$S3JS" ]; then
    say "installing s3rver into $S3DIR"
    mkdir -p "$S3DIR"
    (cd "$S3DIR" && npm install --no-audit --no-fund --silent s3rver@3.7.1 >&2) || die "npm install s3rver failed"
fi

B=$(mktemp -d /tmp/ragsafe-bench-s3.XXXXXX)
chmod 0755 "$B"
chown postgres: "$B"
PIDS=()
cleanup() {
    if [ -f "$B/pg/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$B/pg" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -z "${KEEP_TMP:-}" ]; then rm -rf "$B"; else say "kept $B"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the S3 server over TLS, and the latency in front of it
as_pg mkdir -p "$B/bin" "$B/segs" "$B/sock" "$B/rd/pg_wal" "$B/pgbr-log" "$B/pgbr-lock" "$B/pgbr-spool"
install -m 0755 "$BUILD/bin/ragsafe-archive" "$BUILD/bin/ragsafe-restore" "$B/bin/"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$B/key.pem" -out "$B/cert.pem" -days 2 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null || die "openssl req failed"
chmod 0644 "$B/cert.pem"
S3PORT=$(free_port)
mkdir -p "$B/s3"
NODE_OPTIONS=--openssl-legacy-provider node "$S3JS" -d "$B/s3" -a 127.0.0.1 -p "$S3PORT" \
    --key "$B/key.pem" --cert "$B/cert.pem" --configure-bucket ragsafe --no-vhost-buckets -s \
    >"$B/s3rver.log" 2>&1 &
PIDS+=($!)
cat >"$B/delay.py" <<'PY'
# delay.py LISTEN UPSTREAM MS: a TCP proxy holding every client->server chunk for MS
# milliseconds (order kept, no bandwidth cap): one added latency per request.
import asyncio, sys, time
listen, upstream, delay = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) / 1000.0

async def pump(reader, writer, lag):
    q = asyncio.Queue()
    async def rd():
        while True:
            data = await reader.read(1 << 16)
            await q.put((time.monotonic() + lag, data))
            if not data:
                return
    async def wr():
        while True:
            t, data = await q.get()
            d = t - time.monotonic()
            if d > 0:
                await asyncio.sleep(d)
            if not data:
                try:
                    writer.write_eof()
                except OSError:
                    pass
                return
            writer.write(data)
            await writer.drain()
    try:
        await asyncio.gather(rd(), wr())
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()

async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_connection('127.0.0.1', upstream)
    except OSError:
        cw.close()
        return
    await asyncio.gather(pump(cr, uw, delay), pump(ur, cw, 0))

async def main():
    srv = await asyncio.start_server(handle, '127.0.0.1', listen)
    async with srv:
        await srv.serve_forever()

asyncio.run(main())
PY
PORT=$(free_port)
python3 "$B/delay.py" "$PORT" "$S3PORT" "$LAT" 2>"$B/delay.log" &
PIDS+=($!)
wait_port "$S3PORT" || die "s3rver did not start"
wait_port "$PORT" || die "the latency proxy did not start"

# --- real pgbench segments
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
for ((i = 0; i < 30; i++)); do
    [ "$(count_new)" -gt "$NSEG" ] && break
    pgb -n -c 2 -j 2 -T 10 || die "pgbench failed"
done
last=$(sql "select pg_walfile_name(pg_switch_wal())")
for ((i = 0; i < 300; i++)); do
    [ "$(sql "select last_archived_wal >= '$last' from pg_stat_archiver")" = t ] && break
    sleep 0.2
done
mapfile -t SEGS < <(cd "$B/segs" && ls | grep -E '^[0-9A-F]{24}$' | sort \
    | awk -v f="$first" -v l="$last" '$0 > f && $0 < l' | head -n "$NSEG")
[ "${#SEGS[@]}" -eq "$NSEG" ] || die "only ${#SEGS[@]} pgbench segments, wanted $NSEG"

# --- pgBackRest: S3 over TLS through the same proxy
cat >"$B/pgbr.conf" <<CONF
[global]
repo1-type=s3
repo1-path=/pgbackrest
repo1-s3-bucket=ragsafe
repo1-s3-endpoint=127.0.0.1
repo1-storage-port=$PORT
repo1-s3-region=us-east-1
repo1-s3-key=S3RVER
repo1-s3-key-secret=S3RVER
repo1-s3-uri-style=path
repo1-storage-verify-tls=n
compress-type=zst
compress-level=3
archive-async=y
process-max=4
spool-path=$B/pgbr-spool
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
chown postgres: "$B/pgbr.conf"
as_pg pgbackrest --config="$B/pgbr.conf" --stanza=bench stanza-create >"$B/stanza.log" 2>&1 \
    || { cat "$B/stanza.log" >&2; die "pgbackrest stanza-create failed"; }
as_pg "$PGBIN/pg_ctl" -D "$B/pg" -m fast -w -t 120 stop >/dev/null
chmod -R a+rX "$B/segs"

# --- the timed part: one bash as postgres
cat >"$B/inner.sh" <<'INNER'
set -u
B=$1 PORT=$2; shift 2
SEGS=("$@")
export RAGSAFE_S3_ENDPOINT=https://127.0.0.1:$PORT RAGSAFE_S3_CA_FILE=$B/cert.pem
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
now() { echo "${EPOCHREALTIME/./}"; }
# busy CPU of the whole machine in clock ticks (every process: tools, s3rver, proxy)
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
# backlog: every segment back in pg_wal, marked ready
backlog() {
    find "$B/pg/pg_wal" -maxdepth 1 -type f -delete
    rm -rf "$B/pg/pg_wal/archive_status" "$B/pg/pg_wal/ragsafe-ahead"
    mkdir -p "$B/pg/pg_wal/archive_status"
    for s in "${SEGS[@]}"; do
        cp "$B/segs/$s" "$B/pg/pg_wal/$s"
        : >"$B/pg/pg_wal/archive_status/$s.ready"
    done
    sync
}
# archive NAME CMD...: PostgreSQL's archiver over the backlog (%p %f appended)
archive() {
    local name=$1 a b c s; shift
    backlog
    cd "$B/pg"
    c=$(busy)
    a=$(now)
    for s in "${SEGS[@]}"; do
        "$@" "pg_wal/$s" "$s" || { echo "bench-s3: error: $name failed on $s" >&2; exit 1; }
        mv "pg_wal/archive_status/$s.ready" "pg_wal/archive_status/$s.done"
    done
    b=$(now)
    echo "archive $name $((b - a)) $(($(busy) - c))"
}
# restore NAME CMD...: recovery's restore_command calls (%f %p appended)
restore() {
    local name=$1 a b c s; shift
    rm -rf "$B/rd/pg_wal" && mkdir -p "$B/rd/pg_wal"
    cd "$B/rd"
    c=$(busy)
    a=$(now)
    for s in "${SEGS[@]}"; do
        "$@" "$s" pg_wal/RECOVERYXLOG || { echo "bench-s3: error: $name failed on $s" >&2; exit 1; }
        cmp -s pg_wal/RECOVERYXLOG "$B/segs/$s" || { echo "bench-s3: error: $name restored $s wrong" >&2; exit 1; }
        rm -f pg_wal/RECOVERYXLOG
    done
    b=$(now)
    echo "restore $name $((b - a)) $(($(busy) - c))"
}
pgbr_push() { pgbackrest --config="$B/pgbr.conf" --stanza=bench archive-push "$B/pg/$1"; }
pgbr_get() { pgbackrest --config="$B/pgbr.conf" --stanza=bench archive-get "$1" "$B/rd/$2"; }

archive ragsafe-ahead0 "$B/bin/ragsafe-archive" --repo s3://ragsafe/rs-a --look-ahead 0
archive ragsafe-ahead4 "$B/bin/ragsafe-archive" --repo s3://ragsafe/rs-b --look-ahead 4
archive pgbackrest pgbr_push
restore ragsafe-prefetch0 "$B/bin/ragsafe-restore" --repo s3://ragsafe/rs-b --prefetch 0
restore ragsafe-prefetch8 "$B/bin/ragsafe-restore" --repo s3://ragsafe/rs-b --prefetch 8
restore pgbackrest pgbr_get
INNER
chmod 0755 "$B/inner.sh"
say "timing ${#SEGS[@]} segments, ${LAT} ms added per request"
as_pg bash "$B/inner.sh" "$B" "$PORT" "${SEGS[@]}" >"$B/times" || die "a timed run failed"

# --- the table
us() { awk -v k="$1 $2" '$1 " " $2 == k { print $3 }' "$B/times"; }
# machine CPU seconds (all processes) during a run
cpu() { awk -v k="$1 $2" -v hz="$(getconf CLK_TCK)" '$1 " " $2 == k { printf "%.2f", $4 / hz }' "$B/times"; }
rate() { awk -v n="$NSEG" -v u="$1" 'BEGIN { printf "%.1f", n / (u / 1e6) }'; }
secs() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
a0=$(us archive ragsafe-ahead0); a4=$(us archive ragsafe-ahead4); ap=$(us archive pgbackrest)
r0=$(us restore ragsafe-prefetch0); r4=$(us restore ragsafe-prefetch8); rp=$(us restore pgbackrest)
cat <<TABLE
### S3 repository, ${LAT} ms added per request ($NSEG pgbench segments, s3rver over TLS)

| path | tool | total s | segments/s | machine CPU s (all processes) |
|---|---|---:|---:|---:|
| archive | ragsafe-archive --look-ahead 0 | $(secs "$a0") | $(rate "$a0") | $(cpu archive ragsafe-ahead0) |
| archive | ragsafe-archive --look-ahead 4 | $(secs "$a4") | $(rate "$a4") | $(cpu archive ragsafe-ahead4) |
| archive | pgbackrest archive-push (async, process-max=4) | $(secs "$ap") | $(rate "$ap") | $(cpu archive pgbackrest) |
| restore | ragsafe-restore --prefetch 0 | $(secs "$r0") | $(rate "$r0") | $(cpu restore ragsafe-prefetch0) |
| restore | ragsafe-restore --prefetch 8 | $(secs "$r4") | $(rate "$r4") | $(cpu restore ragsafe-prefetch8) |
| restore | pgbackrest archive-get (async, process-max=4) | $(secs "$rp") | $(rate "$rp") | $(cpu restore pgbackrest) |

- archive throughput, look-ahead vs pgBackRest: $(ratio "$ap" "$a4")x (target >= 2x)
- restore time, prefetch vs pgBackRest: $(ratio "$r4" "$rp")x (target <= 0.5x)
TABLE
