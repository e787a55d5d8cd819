#!/usr/bin/env bash
# 066_reader_locks_s3.sh -- readers and expire with the repository in S3 (s3rver).
#
# A ragsafe-pitr verify (test hook RAGSAFE_TEST_READER_SLEEP) holds a reader lease,
# locks/retention.<owner>.shared; meanwhile the archiver archives, an expire with
# RAGSAFE_LOCK_TIMEOUT=2 exits 1 and deletes nothing, an expire with the default
# timeout waits for the lease to go, then deletes; the lease is removed at exit. (An
# expired lease, a killed reader's, is ignored: tests/unit/check_s3.c.)
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
BUCKET=ragsafe
s3_start "$BUCKET"
REPO=s3://$BUCKET/p
OBJ=$T/s3/$BUCKET/p

pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO %p %f'"
pg_start src || exit 1
bb() { as_pg env "RAGSAFE_S3_ENDPOINT=$RAGSAFE_S3_ENDPOINT" "$RAGSAFE_BIN/ragsafe-basebackup" \
    -d "$(pg_conn src)" --repo "$REPO" -c fast -l "$1" >/dev/null 2>"$T/$1.err"; }
leases() { ls "$OBJ/locks" 2>/dev/null | grep -c '^retention\..*\.shared\._S3rver_object$'; }
backups() { ls "$OBJ/backups" 2>/dev/null | tr '\n' ' '; }

pg_sql src "create table t (id int primary key); insert into t values (1)" || exit 1
bb b1 || { cat "$T/b1.err"; exit 1; }
pg_sql src "insert into t values (2)"
switch_wal src || exit 1
bb b2 || { cat "$T/b2.err"; exit 1; }
args=(--repo "$REPO" --keep-window 0s --keep-backups 0s --min-backups 1)

RAGSAFE_TEST_READER_SLEEP=12 "$PITR" verify --repo "$REPO" >"$T/reader.out" 2>&1 &
RPID=$!
for _ in $(seq 50); do [ "$(leases)" -ge 1 ] && break; sleep 0.1; done
is "the reader holds one lease" 1 "$(leases)"
pg_sql src "insert into t values (3)"
ok "the archiver archives while the lease is held" switch_wal src
before=$(backups)

RAGSAFE_LOCK_TIMEOUT=2 "$PITR" expire "${args[@]}" >"$T/short.out" 2>"$T/short.err"
is "expire with a 2 s lock timeout while a lease is live: exit 1" 1 "$?"
ok "says readers are active" grep -q "readers are active" "$T/short.err"
is "no backup deleted" "$before" "$(backups)"
ok "the reader is still running" kill -0 "$RPID"

"$PITR" expire "${args[@]}" >"$T/wait.out" 2>&1
is "expire (default timeout) waits for the lease, then exits 0" 0 "$?"
wait "$RPID"
is "the reader (verify) passed" 0 "$?"
is "b1 deleted after the reader finished" "b2 " "$(backups)"
is "no lease left" 0 "$(leases)"

t_done
