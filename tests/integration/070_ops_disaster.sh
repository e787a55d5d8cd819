#!/usr/bin/env bash
# ragsafe-test: serial (an assertion measures time: runs alone, see tests/run.sh)
# 070_ops_disaster.sh -- scripts/disaster-recovery.sh against a real PostgreSQL 15, synthetic
# Milvus volumes, fake Milvus stop/start commands (they log) and a fake health endpoint:
#   - no confirmation (stdin empty, no --yes): exit 2, nothing touched;
#   - --target-time T: PostgreSQL to T, the Milvus snapshot at or before T (not the
#     later one), config from the snapshot before T, each phase timed, health checked;
#   - --snapshot LABEL: PostgreSQL to the restore point that snapshot recorded, so the
#     documents equal what Milvus had.
#   - the restore is made with --archive-mode preserve, and the moved-aside data
#     directory is kept and printed with the rollback commands;
#   - a repository WAL object recovery needs is damaged (after the plan and restore, in
#     a start command that returns at once): the server stops FATAL (ragsafe-restore exit 128) and the
#     script exits non-zero within seconds, quoting the FATAL.
source "$(dirname "$0")/lib.sh"
t_init

B=$RAGSAFE_BIN
REPO=$T/repo
V=$T/volumes
LOG=$T/milvus-cmds.log
DR=$RAGSAFE_SRC/scripts/disaster-recovery.sh
FAKE=$RAGSAFE_SRC/tests/integration/fake_milvus.py
as_pg mkdir -p "$REPO"
: >"$LOG"

printf '{"up": true, "collections": {"docs": 10}}\n' >"$T/state.up"
printf '{"up": false, "collections": {"docs": 10}}\n' >"$T/state.down"
cp "$T/state.up" "$T/state.json"
python3 "$FAKE" serve --portfile "$T/port" --state "$T/state.json" --log "$T/fake.log" \
    --pidfile "$T/fake.pid" --max-seconds 300 &
t_on_exit "kill $!"
for _ in $(seq 50); do [ -s "$T/port" ] && break; sleep 0.1; done
HEALTH="http://127.0.0.1:$(cat "$T/port")/healthz"
# the fake stack goes down and up with these (ragsafe-milvus checks both)
MSTOP="echo stop >>$LOG && cp $T/state.down $T/s.tmp && mv $T/s.tmp $T/state.json"
MSTART="echo start >>$LOG && cp $T/state.up $T/s.tmp && mv $T/s.tmp $T/state.json"

pg_init primary
pg_set primary "wal_level = replica"
pg_set primary "archive_mode = on"
pg_set primary "archive_command = '$B/ragsafe-archive --repo $REPO %p %f'"
pg_start primary
CONN=$(pg_conn primary)
pg_sql primary "CREATE TABLE documents (id int PRIMARY KEY, title text);
INSERT INTO documents SELECT g, 'd' || g FROM generate_series(1, 100) g;"
ok "base backup" as_pg "$B/ragsafe-basebackup" -d "$CONN" --repo "$REPO" --checkpoint fast -l b1 >/dev/null

# config files, key
mkdir -p "$T/platform/backend"
echo "SECRET=one" >"$T/platform/.env"; chmod 600 "$T/platform/.env"
echo "[alembic]" >"$T/platform/backend/alembic.ini"
"$B/ragsafe-files" keygen "$T/key"
"$B/ragsafe-files" snapshot --repo "$REPO" --key-file "$T/key" --base "$T/platform" --label cfg1 .env backend >/dev/null

# Milvus snapshot A (with a restore point), taken while 100 documents exist
mkdir -p "$V/etcd/member" "$V/minio/a-bucket" "$V/milvus/rdb_data"
head -c 100000 /dev/urandom >"$V/etcd/member/db"
head -c 50000 /dev/urandom >"$V/minio/a-bucket/seg1"
echo one >"$V/milvus/rdb_data/CURRENT"
cp -a "$V" "$T/volumes-A"
VOLS=(--volume etcd="$V/etcd" --volume minio="$V/minio" --volume milvus="$V/milvus")
ok "milvus snapshot A with a restore point" "$B/ragsafe-milvus" snapshot --repo "$REPO" --label snapA \
    "${VOLS[@]}" --stop-cmd "$MSTOP" --start-cmd "$MSTART" --pg "$CONN"
pg_sql primary "INSERT INTO documents SELECT g, 'd' || g FROM generate_series(101, 150) g"
sleep 1.1
T2=$(pg_sql primary "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
sleep 1.1
echo "SECRET=two" >"$T/platform/.env"
"$B/ragsafe-files" snapshot --repo "$REPO" --key-file "$T/key" --base "$T/platform" --label cfg2 .env backend >/dev/null
pg_sql primary "INSERT INTO documents SELECT g, 'd' || g FROM generate_series(151, 200) g"
head -c 50000 /dev/urandom >"$V/minio/a-bucket/seg2"
echo two >"$V/milvus/rdb_data/CURRENT"
ok "milvus snapshot B after T2" "$B/ragsafe-milvus" snapshot --repo "$REPO" --label snapB \
    "${VOLS[@]}" --stop-cmd "$MSTOP" --start-cmd "$MSTART"
pg_sql primary "SELECT pg_switch_wal()" >/dev/null
ok "WAL archived" pg_wait_for primary \
    "SELECT last_archived_wal = pg_walfile_name(pg_current_wal_lsn() - 1) FROM pg_stat_archiver" t

# the disaster
pg_stop primary
rm -rf "$V/minio/a-bucket"; echo garbage >"$V/etcd/member/db"
echo "SECRET=broken" >"$T/platform/.env"
: >"$LOG"

PGSTOP="[ ! -f $T/primary/postmaster.pid ] || runuser -u postgres -- $PGBIN/pg_ctl -D $T/primary -m fast -w stop"
COMMON=(--repo "$REPO" --bin "$B" --pgdata "$T/primary" --owner postgres --pg-stop-cmd "$PGSTOP"
    --milvus-stop-cmd "$MSTOP" --milvus-start-cmd "$MSTART" --health-url "$HEALTH"
    --files-key-file "$T/key" --files-target "$T/platform")

# 1. no confirmation: refused, nothing touched
exit_is "no stdin, no --yes: exit 2" 2 "$DR" "${COMMON[@]}" --target-time "$T2" </dev/null
exit_is "answer 'no': exit 2" 2 bash -c '"$@" <<<no' _ "$DR" "${COMMON[@]}" --target-time "$T2"
is "refused: config untouched" "SECRET=broken" "$(cat "$T/platform/.env")"
is "refused: milvus commands not run" "" "$(cat "$LOG")"
ok "refused: no data directory moved aside" bash -c "! ls -d '$T'/primary.ragsafe-old-* 2>/dev/null"
exit_is "two targets: usage" 2 "$DR" "${COMMON[@]}" --target-time "$T2" --snapshot snapA --yes

# 2. --target-time T2 (confirmed on stdin): PostgreSQL to T2, Milvus A (at or before T2), cfg1
out=$(echo yes | "$DR" "${COMMON[@]}" --target-time "$T2" 2>&1)
rc=$?
echo "$out" | sed -n '/== timings/,$p' | sed 's/^/#   /'
is "target-time: exit 0" 0 "$rc"
is "target-time: documents as of T2" 150 "$(pg_sql primary "SELECT count(*) FROM documents")"
ok "target-time: Milvus snapshot A chosen (at or before T2)" grep -q "restore snapshot snapA" <<<"$out"
# the replaced volumes sit next to them as NAME.ragsafe-old-TIME
same_as_A() { local v; for v in etcd minio milvus; do diff -r "$T/volumes-A/$v" "$V/$v" || return 1; done; }
ok "target-time: Milvus volumes equal snapshot A" same_as_A
is "target-time: stop before start" "stop start" "$(tr '\n' ' ' <"$LOG" | sed 's/ $//')"
is "target-time: config from before T2" "SECRET=one" "$(cat "$T/platform/.env")"
ok "target-time: PostgreSQL timed" grep -Eq "^   postgresql +[0-9]+ s" <<<"$out"
ok "target-time: Milvus timed" grep -Eq "^   milvus +[0-9]+ s" <<<"$out"
ok "target-time: config timed" grep -Eq "^   config +[0-9]+ s" <<<"$out"
ok "target-time: PostgreSQL health" grep -q "PostgreSQL: accepting connections, out of recovery" <<<"$out"
ok "target-time: Milvus health" grep -q "Milvus: .* answers OK" <<<"$out"
ok "target-time: the old data directory moved aside" bash -c "ls -d '$T'/primary.ragsafe-old-* >/dev/null"
ok "target-time: restored with --archive-mode preserve" grep -q "archiving: *preserved" <<<"$out"
ok "target-time: the kept directory and the rollback printed" \
    grep -q "mv .*primary.ragsafe-old-" <(sed -n '/== kept for rollback/,$p' <<<"$out")

# 3. --snapshot snapA --yes: PostgreSQL to snapA's restore point: 100 documents
: >"$LOG"
pg_sql primary "INSERT INTO documents VALUES (999, 'after the first recovery')"
# the first recovery branched timeline 2 after snapA's restore point: the restore point
# lies on timeline 1 (following "latest" would need timeline 2's unfinished segment)
out=$("$DR" "${COMMON[@]}" --snapshot snapA --target-timeline 1 --yes 2>&1 </dev/null)
rc=$?
echo "$out" | tail -n 3 | sed 's/^/#   /'
is "snapshot: exit 0" 0 "$rc"
is "snapshot: documents equal what Milvus had (restore point)" 100 "$(pg_sql primary "SELECT count(*) FROM documents")"
ok "snapshot: the restore point was the target" grep -q -- "--target-name snapA" <<<"$out"
ok "snapshot: Milvus volumes equal snapshot A" same_as_A
is "snapshot: the running server was stopped first, milvus stop/start" "stop start" "$(tr '\n' ' ' <"$LOG" | sed 's/ $//')"

# 4. a snapshot without a restore point cannot anchor PostgreSQL
exit_is "snapshot B has no restore point: exit 2" 2 "$DR" "${COMMON[@]}" --snapshot snapB --yes
# 5. --skip-milvus leaves the volumes alone; Milvus that does not come back fails the run
: >"$LOG"
out=$("$DR" "${COMMON[@]}" --target-latest --target-timeline 1 --yes --skip-milvus 2>&1)
rc=$?
is "skip-milvus, latest on timeline 1: exit 0" 0 "$rc"
is "latest: every document" 200 "$(pg_sql primary "SELECT count(*) FROM documents")"
is "skip-milvus: no milvus command ran" "" "$(cat "$LOG")"
out=$("$DR" "${COMMON[@]}" --target-latest --target-timeline 1 --yes --health-timeout 2 \
    --milvus-start-cmd "echo start >>$LOG" 2>&1)
ok "Milvus unhealthy: non-zero exit" test $? -ne 0
ok "Milvus unhealthy: reported" grep -q "NOT healthy\|milvus restore failed" <<<"$out"

# 6. a WAL object recovery needs is damaged after the restore (in the start command):
#    the server stops FATAL, the script notices at once
seg=$(find "$REPO/wal" -path '*/00000001*' -name '00000001????????????????.zst' | sort | tail -n1)
ok "a timeline 1 segment in the repository ($(basename "$seg"))" test -f "$seg"
size=$(stat -c %s "$seg")
DAMAGE="dd if=/dev/urandom of=$seg bs=1 count=256 seek=$((size / 2)) conv=notrunc status=none"
# -W: the start command returns at once (as "docker compose start" does), so the script's
# recovery loop must notice the dead postmaster itself
START="$DAMAGE && date +%s >$T/started && runuser -u postgres -- $PGBIN/pg_ctl -D $T/primary -l $T/primary/ragsafe-start.log -W start"
out=$(timeout 90 "$DR" "${COMMON[@]}" --target-latest --target-timeline 1 --yes --skip-milvus \
    --pg-start-cmd "$START" 2>&1)
rc=$?
end=$(date +%s)
echo "$out" | grep -E "FATAL|FAILED|stopped" | sed 's/^/#   /'
ok "damaged WAL: non-zero exit" test "$rc" -ne 0 -a "$rc" -ne 124
# at once: measured from the server's FATAL (how long recovery took to get there
# depends on the machine's load), and the whole run bounded
fatal_ts=$(grep -h 'FATAL:  could not restore file' "$T/primary/ragsafe-start.log" 2>/dev/null | tail -n1 | awk '{print $1" "$2" "$3}')
fatal_epoch=$(date -d "$fatal_ts" +%s 2>/dev/null || echo 0)
ok "damaged WAL: noticed within 5 s of the server's FATAL ($((end - fatal_epoch)) s)" \
    test "$fatal_epoch" -gt 0 -a $((end - fatal_epoch)) -le 5
ok "damaged WAL: the run ended within 60 s of the start ($((end - $(cat "$T/started" 2>/dev/null || echo 0))) s)" \
    test $((end - $(cat "$T/started" 2>/dev/null || echo 0))) -le 60
ok "damaged WAL: the FATAL quoted" grep -q "FATAL: .*could not restore file" <<<"$out"
ok "damaged WAL: reported as stopped during recovery" grep -q "FAILED: PostgreSQL stopped during recovery" <<<"$out"
t_done
