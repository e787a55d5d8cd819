#!/usr/bin/env bash
# demo.sh [BUILD] -- the README's first command (`make demo`).
#
# A throwaway PostgreSQL 15 cluster in a temp dir archives through ragsafe-archive under
# a pgbench load; ragsafe-basebackup takes a base backup; more writes leave three
# recorded marks; the primary is then "lost" and ragsafe-pitr restores a new data
# directory to the middle mark, starts it, and the restored rows are shown to equal that
# mark. Then a synthetic Milvus volume set is snapshotted and restored, and
# `ragsafe-pitr info` shows the repository. Everything lives in one temp dir, removed
# at the end (KEEP_TMP=1 keeps it).
set -euo pipefail

BUILD=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

T=$(mktemp -d /tmp/ragsafe-demo.XXXXXX)
chmod 0755 "$T"
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$T"
    RUNAS=(runuser -u postgres --)
fi
as_pg() { "${RUNAS[@]}" "$@"; }

cleanup() {
    for d in primary restored; do
        [ -f "$T/$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$T/$d" -m immediate -w stop >/dev/null 2>&1
    done
    if [ -z "${KEEP_TMP:-}" ]; then rm -rf "$T"; else echo "kept $T"; fi
}
trap cleanup EXIT

step_start=0
step() { step_start=$(date +%s%N); printf '\n\033[1m== %s\033[0m\n' "$*"; }
done_step() { printf '   (%d ms)\n' $(( ($(date +%s%N) - step_start) / 1000000 )); }
sql() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$T/$1" -p 5432 -U postgres -d postgres -c "$2"; }

demo_start=$(date +%s)
step "install the executables into $T/prefix (PostgreSQL runs them as its own user)"
make -s -C "$top" BUILD="$BUILD" install PREFIX="$T/prefix" >/dev/null
BIN=$T/prefix/bin
REPO=$T/repo
as_pg mkdir -p "$REPO"
ls "$BIN"
done_step

step "initdb a PostgreSQL 15 primary with archive_command = ragsafe-archive"
as_pg "$PGBIN/initdb" -D "$T/primary" -A trust -U postgres --no-sync >/dev/null
cat >>"$T/primary/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$T/primary'
port = 5432
wal_level = replica
archive_mode = on
archive_command = '$BIN/ragsafe-archive --repo $REPO %p %f'
max_wal_size = 256MB
EOF
as_pg "$PGBIN/pg_ctl" -D "$T/primary" -l "$T/primary.log" -w start >/dev/null
grep archive_command "$T/primary/postgresql.conf"
done_step

step "pgbench: initialise (scale 10) and run a 5 s load"
as_pg "$PGBIN/pgbench" -h "$T/primary" -p 5432 -U postgres -i -s 10 -q postgres 2>&1 | tail -1
as_pg "$PGBIN/pgbench" -h "$T/primary" -p 5432 -U postgres -c 2 -T 5 postgres 2>/dev/null | grep -E 'tps|transactions actually'
done_step

step "ragsafe-basebackup: a base backup over the replication protocol"
label=$(as_pg "$BIN/ragsafe-basebackup" -d "host=$T/primary port=5432 user=postgres" --repo "$REPO" --checkpoint fast)
echo "backup label: $label"
ls -l "$REPO/backups/$label"
done_step

step "more writes, with three recorded marks one second apart"
sql primary "CREATE TABLE marks (id int PRIMARY KEY, at timestamptz, accounts_sum bigint)"
declare -A mark_time mark_sum
for m in 1 2 3; do
    as_pg "$PGBIN/pgbench" -h "$T/primary" -p 5432 -U postgres -c 2 -T 2 postgres >/dev/null 2>&1
    sql primary "INSERT INTO marks SELECT $m, clock_timestamp(), sum(abalance) FROM pgbench_accounts"
    # The mark is the instant after the INSERT committed: a restore to it includes it.
    mark_time[$m]=$(sql primary "SELECT clock_timestamp()")
    mark_sum[$m]=$(sql primary "SELECT accounts_sum FROM marks WHERE id = $m")
    echo "mark $m at ${mark_time[$m]}: sum(abalance) = ${mark_sum[$m]}"
    sleep 1.1
done
sql primary "SELECT pg_switch_wal()" >/dev/null
for _ in $(seq 100); do
    [ "$(sql primary "SELECT last_archived_wal = pg_walfile_name(pg_current_wal_lsn() - 1) FROM pg_stat_archiver")" = t ] && break
    sleep 0.2
done
sql primary "SELECT 'archived: ' || archived_count || ' files, last ' || last_archived_wal || ', failed ' || failed_count FROM pg_stat_archiver"
done_step

step "disaster: the primary is gone"
as_pg "$PGBIN/pg_ctl" -D "$T/primary" -m immediate -w stop >/dev/null
echo "stopped it with -m immediate"
done_step

target="${mark_time[2]}"
step "ragsafe-pitr plan --target-time '$target' (mark 2)"
"$BIN/ragsafe-pitr" --repo "$REPO" plan --target-time "$target"
done_step

step "ragsafe-pitr restore to mark 2, start the server and follow recovery"
restore_owner=()
[ "$(id -u)" -eq 0 ] && restore_owner=(--owner postgres)
"$BIN/ragsafe-pitr" --repo "$REPO" restore --target-time "$target" --pgdata "$T/restored" \
    --target-action promote "${restore_owner[@]}"
# The copy would otherwise share the old primary's socket directory.
cat >>"$T/restored/postgresql.conf" <<EOF
unix_socket_directories = '$T/restored'
EOF
grep -E "restore_command|recovery_target" "$T/restored/postgresql.auto.conf"
as_pg "$PGBIN/pg_ctl" -D "$T/restored" -l "$T/restored.log" -w -t 300 start >/dev/null
for _ in $(seq 300); do
    [ "$(sql restored "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ] && break
    sleep 0.2
done
done_step

step "the restored cluster equals mark 2"
got_marks=$(sql restored "SELECT string_agg(id::text, ',' ORDER BY id) FROM marks")
got_sum=$(sql restored "SELECT sum(abalance) FROM pgbench_accounts")
echo "marks present: $got_marks (expected 1,2)"
echo "sum(abalance): $got_sum (mark 2 recorded ${mark_sum[2]})"
if [ "$got_marks" != "1,2" ] || [ "$got_sum" != "${mark_sum[2]}" ]; then
    echo "demo: error: the restored cluster does not match mark 2" >&2
    exit 1
fi
echo "OK: restored to the second, not to the last backup"
done_step

step "Milvus: snapshot three synthetic volumes (etcd, minio, milvus), restore, compare"
V=$T/milvus-volumes
mkdir -p "$V/etcd/member/snap" "$V/etcd/member/wal" "$V/minio/a-bucket/files/insert_log/1/2/3" "$V/milvus/rdb_data"
head -c 2000000 /dev/urandom >"$V/etcd/member/snap/db"
head -c 500000 /dev/urandom >"$V/etcd/member/wal/0000000000000000-0000000000000000.wal"
for i in $(seq 1 200); do head -c 20000 /dev/urandom >"$V/minio/a-bucket/files/insert_log/1/2/3/$i"; done
head -c 1000000 /dev/urandom >"$V/milvus/rdb_data/000001.sst"
ln -s 000001.sst "$V/milvus/rdb_data/CURRENT-link"
"$BIN/ragsafe-milvus" snapshot --repo "$REPO" --label demo \
    --volume etcd="$V/etcd" --volume minio="$V/minio" --volume milvus="$V/milvus" \
    --stop-cmd "echo '   (stop command: docker compose stop -t 300 milvus-standalone minio etcd)'" \
    --start-cmd "echo '   (start command: docker compose start etcd minio milvus-standalone)'"
"$BIN/ragsafe-milvus" restore demo --repo "$REPO" \
    --volume etcd="$T/milvus-restored/etcd" --volume minio="$T/milvus-restored/minio" \
    --volume milvus="$T/milvus-restored/milvus"
diff -r --no-dereference "$V" "$T/milvus-restored" && echo "OK: restored volumes are identical"
done_step

step "ragsafe-pitr info"
"$BIN/ragsafe-pitr" --repo "$REPO" info
done_step

printf '\ndemo finished in %d s; everything under %s is removed now.\n' $(( $(date +%s) - demo_start )) "$T"
