#!/usr/bin/env bash
# bench/bench-dump.sh BUILD -- issue 14's benchmark: one table as of T from a cluster
# whose large database is not the one wanted, by
#     ragsafe-pitr dump --target-time T --dbname app --table documents
# against what a DBA does without it:
#     ragsafe-pitr restore --target-time T --start (a full restore, recovery, promote),
#     then pg_dump -t documents, then stop the server.
# Both read the same repository (ragsafe-archive WAL, one ragsafe-basebackup backup).
# The cluster: database big (pgbench, scale BENCH_DUMP_SCALE, default 50, ~750 MB) and
# database app (table documents, 10000 rows). Prints a markdown table on stdout
# (wall time, bytes on disk in the scratch / restored directory, ratio), progress on
# stderr. Target: dump <= 0.3x the full restore's time.
set -u
BUILD=${1:?usage: bench-dump.sh BUILD}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SCALE=${BENCH_DUMP_SCALE:-50}

say() { echo "bench-dump: $*" >&2; }
die() { say "error: $*"; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

[ -x "$BUILD/bin/ragsafe-pitr" ] || die "no \"$BUILD/bin/ragsafe-pitr\""

T=$(mktemp -d /tmp/ragsafe-bench-dump.XXXXXX)
chmod 0755 "$T"
chown postgres: "$T"
cleanup() {
    for d in pg full; do
        [ -f "$T/$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$T/$d" -m immediate -w stop >/dev/null 2>&1
    done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$T/bin" "$T/sock" "$T/sock2" "$T/repo" "$T/scratch" "$T/out"
cp "$BUILD"/bin/ragsafe-* "$T/bin/"
chmod 0755 "$T/bin"/*
chown postgres: "$T/sock" "$T/sock2" "$T/repo"
PITR=$T/bin/ragsafe-pitr
q() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$T/sock" -p 5432 -U postgres -d "$1" -c "$2"; }

say "initdb, scale $SCALE"
as_pg "$PGBIN/initdb" -D "$T/pg" -A trust -U postgres --no-sync >/dev/null || die "initdb"
cat >>"$T/pg/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$T/sock'
port = 5432
shared_buffers = 128MB
max_wal_size = 1GB
archive_mode = on
archive_command = '$T/bin/ragsafe-archive --repo $T/repo %p %f'
CONF
as_pg "$PGBIN/pg_ctl" -D "$T/pg" -l "$T/pg.log" -w start >/dev/null || die "start"
q postgres "create database big" && q postgres "create database app" || die "createdb"
as_pg "$PGBIN/pgbench" -h "$T/sock" -p 5432 -U postgres -i -s "$SCALE" -q big >/dev/null 2>&1 || die "pgbench -i"
q app "create table documents (id int primary key, body text);
       insert into documents select g, repeat(md5(g::text), 8) from generate_series(1, 10000) g" || die "app"
as_pg "$T/bin/ragsafe-basebackup" -d "host=$T/sock port=5432 user=postgres dbname=postgres" \
    --repo "$T/repo" -c fast >/dev/null 2>"$T/bb.err" || { cat "$T/bb.err" >&2; die "basebackup"; }
as_pg "$PGBIN/pgbench" -h "$T/sock" -p 5432 -U postgres -T 20 -c 2 big >/dev/null 2>&1
sleep 1.1
TM=$(q app "select clock_timestamp()")
q app "delete from documents where id % 3 = 0"
q postgres "select pg_switch_wal()" >/dev/null
sleep 3
as_pg "$PGBIN/pg_ctl" -D "$T/pg" -m fast -w stop >/dev/null
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true

say "ragsafe-pitr dump"
t0=$(date +%s.%N)
"$PITR" dump --repo "$T/repo" --target-time "$TM" --dbname app --table documents \
    --file "$T/out/documents.dump" --scratch "$T/scratch" --keep-scratch >"$T/dump.out" 2>"$T/dump.err" \
    || { cat "$T/dump.err" >&2; die "dump"; }
t1=$(date +%s.%N)
dump_s=$(echo "$t1 - $t0" | bc)
dump_kb=$(du -sk "$T"/scratch/ragsafe-dump-* | cut -f1)
dump_base_kb=$(du -sk "$T"/scratch/ragsafe-dump-*/pgdata/base | cut -f1)
rm -rf "$T"/scratch/ragsafe-dump-*

sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
say "full restore + pg_dump -t"
t0=$(date +%s.%N)
"$PITR" restore --repo "$T/repo" --pgdata "$T/full" --target-time "$TM" --owner postgres --start \
    --set "unix_socket_directories=$T/sock2" --set "listen_addresses=" >/dev/null 2>"$T/full.err" \
    || { cat "$T/full.err" >&2; die "restore"; }
"$PGBIN/pg_dump" -h "$T/sock2" -p 5432 -U postgres -d app -t documents -Fc -f "$T/out/full.dump" \
    || die "pg_dump"
as_pg "$PGBIN/pg_ctl" -D "$T/full" -m fast -w stop >/dev/null
t1=$(date +%s.%N)
full_s=$(echo "$t1 - $t0" | bc)
full_kb=$(du -sk "$T/full" | cut -f1)
full_base_kb=$(du -sk "$T/full/base" | cut -f1)

rows_dump=$(grep -o "public.documents: [0-9]* rows" "$T/dump.out")
echo "| method (scale $SCALE, one table as of T) | wall time s | disk KiB (all) | base/ KiB | time ratio |"
echo "|---|---:|---:|---:|---:|"
printf '| ragsafe-pitr dump --table documents | %.1f | %s | %s | %.2f |\n' "$dump_s" "$dump_kb" "$dump_base_kb" "$(echo "$dump_s / $full_s" | bc -l)"
printf '| ragsafe-pitr restore --start + pg_dump -t | %.1f | %s | %s | 1.00 |\n' "$full_s" "$full_kb" "$full_base_kb"
say "dump reported: $rows_dump"
