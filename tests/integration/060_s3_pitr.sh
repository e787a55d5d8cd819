#!/usr/bin/env bash
# 060_s3_pitr.sh -- a base backup and a point-in-time restore with the repository in S3
# (a local s3rver): PostgreSQL archives into s3://BUCKET/PREFIX, ragsafe-basebackup
# writes the backup there (the base tar in multipart uploads, the set written under its
# final name with backup.json, the commit, last: no copies; a folder without backup.json
# is a killed run's leftover, removed by the next backup), ragsafe-pitr info / plan / verify / restore read it back,
# and the restored cluster, whose restore_command reads WAL from S3, recovers exactly
# to a time between two commits. ragsafe-basebackup --verify re-hashes the stored backup.
#
# The S3 settings reach every tool (and the servers' archive_command / restore_command)
# through the environment: RAGSAFE_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
BUCKET=ragsafe
S3_LOG=1 s3_start "$BUCKET"
export RAGSAFE_S3_PART_SIZE=5242880
REPO=s3://$BUCKET/prod/pg
OBJ=$T/s3/$BUCKET/prod/pg

pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO %p %f'"
pg_start src || exit 1

state() { pg_sql "$1" "select count(*) || ':' || coalesce(sum(id), 0) from t"; }

pg_sql src "create table t (id int primary key, v text)" || exit 1
pg_sql src "insert into t select g, md5(g::text) from generate_series(1, 100) g"
# incompressible rows so the base tar spans several 5 MiB parts
pg_sql src "create table blob as select g, (select string_agg(md5(random()::text || g || s), '') from generate_series(1, 40) s) v from generate_series(1, 16000) g"
# (--format tar: one object sent in parts; b2 below is of the default, chunked format)
backup=$(as_pg env "RAGSAFE_S3_ENDPOINT=$RAGSAFE_S3_ENDPOINT" "$RAGSAFE_BIN/ragsafe-basebackup" \
    -d "$(pg_conn src)" --repo "$REPO" -c fast --format tar 2>"$T/bb.err")
is "base backup into S3 exits 0" 0 "$?"
[ -n "$backup" ] || { cat "$T/bb.err"; exit 1; }
ok "backup.json is in the bucket" [ -s "$OBJ/backups/$backup/backup.json._S3rver_object" ]
ok "base.tar.zst is in the bucket" [ -s "$OBJ/backups/$backup/base.tar.zst._S3rver_object" ]
is "no .partial set left behind" "" "$(ls "$OBJ/backups" | grep partial)"
is "the backup lock was released" "" "$(ls "$OBJ/locks" 2>/dev/null | grep -v '^$')"
ok "the base tar went up in parts" grep -aq "/base.tar.zst?partNumber=2&uploadId=.* 200 " "$T/s3rver.log"
ok "the set was written under its final name, backup.json (the commit) after the tars" \
    python3 -c 'import sys, re
log = open(sys.argv[1], errors="replace").read()
j = log.find("/backups/%s/backup.json" % sys.argv[2]); t = log.find("/backups/%s/base.tar.zst" % sys.argv[2])
sys.exit(0 if 0 <= t < j else 1)' "$T/s3rver.log" "$backup"
is "... never under a .partial name, never copied" "0" \
    "$(grep -ac 'partial/\|x-amz-copy-source\|Copied object' "$T/s3rver.log")"
exit_is "ragsafe-basebackup --verify re-hashes the stored backup" 0 \
    "$RAGSAFE_BIN/ragsafe-basebackup" --repo "$REPO" --verify "$backup"

sleep 1.1
pg_sql src "insert into t select g, 'm1' from generate_series(1000, 1009) g"
M1=$(pg_sql src "select clock_timestamp()")
C1=$(state src)
sleep 1.1
pg_sql src "insert into t select g, 'm2' from generate_series(2000, 2009) g"
C2=$(state src)
switch_wal src || exit 1

"$PITR" info --repo "$REPO" >"$T/info.out" 2>"$T/info.err"
is "pitr info exits 0" 0 "$?"
ok "pitr info lists the backup" grep -q "$backup" "$T/info.out"
"$PITR" plan --repo "$REPO" --target-time "$M1" >"$T/plan.out" 2>"$T/plan.err"
is "pitr plan exits 0" 0 "$?"
ok "pitr plan names the backup" grep -q "$backup" "$T/plan.out"
"$PITR" verify --repo "$REPO" >"$T/verify.out" 2>"$T/verify.err"
is "pitr verify exits 0" 0 "$?"

"$PITR" restore --repo "$REPO" --pgdata "$T/r1" --target-time "$M1" >"$T/r1.out" 2>"$T/r1.err"
is "pitr restore from S3 exits 0" 0 "$?"
ok "restore_command reads from the S3 repository" \
    grep -q "restore_command = .*ragsafe-restore.* --repo .*$REPO" "$T/r1/postgresql.auto.conf"
rm -f "$T/r1"/.s.PGSQL.*
pg_set r1 "unix_socket_directories = '$T/r1'"
pg_set r1 "archive_mode = off"
# the restored server's restore_command inherits the S3 settings from this environment
if pg_start r1 && pg_wait_for r1 "select pg_is_in_recovery()" f 120; then
    is "recovered exactly to the time between the commits" "$C1" "$(state r1)"
    is "the blob table came back" 16000 "$(pg_sql r1 'select count(*) from blob')"
    ok "no prefetched WAL left in pg_wal once recovery ended" [ ! -e "$T/r1/pg_wal/ragsafe-prefetch" ]
else
    fail "the restored cluster recovers from S3"; tail -20 "$T/r1.log"
fi
pg_stop r1 >/dev/null 2>&1

# expire in S3: a second backup, then the first goes (DeleteObjects, backup.json first)
# a killed backup's leftover: objects under backups/<x>/ but no backup.json
echo junk >"$T/junk"
is "a leftover object PUT (signed)" 200 \
    "$(s3_curl PUT "$RAGSAFE_S3_ENDPOINT/$BUCKET/prod/pg/backups/zombie/base.tar.zst" "$T/junk")"
ok "a leftover folder is planted" [ -s "$OBJ/backups/zombie/base.tar.zst._S3rver_object" ]
"$PITR" info --repo "$REPO" >"$T/info2.out" 2>&1
ok "... pitr info does not count it as a backup" bash -c "! grep -q zombie '$T/info2.out'"
pg_sql src "insert into t values (3000, 'before b2')"
b2=$(as_pg env "RAGSAFE_S3_ENDPOINT=$RAGSAFE_S3_ENDPOINT" "$RAGSAFE_BIN/ragsafe-basebackup" \
    -d "$(pg_conn src)" --repo "$REPO" -c fast -l b2 2>"$T/bb2.err")
is "a second base backup into S3 exits 0" 0 "$?"
ok "... it removed the leftover folder" [ ! -e "$OBJ/backups/zombie/base.tar.zst._S3rver_object" ]
ok "... and kept the first backup" [ -s "$OBJ/backups/$backup/backup.json._S3rver_object" ]
ok "b2 (chunked) stored its chunk manifest" [ -s "$OBJ/backups/b2/base.chunks.zst._S3rver_object" ]
ok "... its chunks in packs" bash -c "ls '$OBJ/chunks' | grep -q '\.pack'"
ok "... backup.json (the commit) after the manifest and every pack and index" \
    python3 -c 'import sys, re
log = open(sys.argv[1], errors="replace").read()
j = log.find("Stored object \"prod/pg/backups/b2/backup.json\"")
m = log.find("Stored object \"prod/pg/backups/b2/base.chunks.zst\"")
p = [x.start() for x in re.finditer(r"Stored object \"prod/pg/chunks/[0-9a-f]+\.(pack|idx)\"", log)]
sys.exit(0 if 0 <= m < j and p and max(p) < j else 1)' "$T/s3rver.log"
pg_sql src "insert into t values (3001, 'after b2')" # so that the switch has a segment to close
switch_wal src || exit 1
# a window of 1 s that opens after b2's end: b2 restores all of it, the first goes
sleep 2
args=(--repo "$REPO" --keep-window 1s --keep-backups 1s --min-backups 1)
# a live lock held by another host: expire must refuse
printf 'owner=otherhost:1:x\nexpires=99999999999\n' >"$T/lock"
is "another host's lock PUT (signed)" 200 \
    "$(s3_curl PUT "$RAGSAFE_S3_ENDPOINT/$BUCKET/prod/pg/locks/backup.lock" "$T/lock")"
"$PITR" expire "${args[@]}" >"$T/exp0.out" 2>&1
is "expire while another host holds the S3 lock: exit 1" 1 "$?"
ok "... the first backup is still there" [ -s "$OBJ/backups/$backup/backup.json._S3rver_object" ]
is "... its lock removed (signed DELETE)" 204 \
    "$(s3_curl DELETE "$RAGSAFE_S3_ENDPOINT/$BUCKET/prod/pg/locks/backup.lock")"
"$PITR" expire "${args[@]}" >"$T/exp.out" 2>&1
is "pitr expire in S3 exits 0" 0 "$?"
is "the first backup's objects are gone" "" "$(find "$OBJ/backups/$backup" -type f 2>/dev/null)"
ok "the second backup is kept" [ -s "$OBJ/backups/b2/backup.json._S3rver_object" ]
"$PITR" info --repo "$REPO" >"$T/info2.out" 2>&1
# (the backups section: the restore records below it still name the first backup)
sed -n '/^backups:/,/^$/p' "$T/info2.out" >"$T/info2.backups"
ok "pitr info lists b2 only" bash -c "grep -q b2 '$T/info2.backups' && ! grep -q '$backup' '$T/info2.backups'"
is "the expire lock was released" "" "$(ls "$OBJ/locks" 2>/dev/null)"

pg_stop src
s3_all_signed
s3_stop
t_done
