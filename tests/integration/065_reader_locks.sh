#!/usr/bin/env bash
# 065_reader_locks.sh -- readers and expire (posix).
#
# Readers (ragsafe-pitr verify/plan/restore, ragsafe-restore) hold the repository's
# "retention" lock shared; expire takes it exclusive. The test hook
# RAGSAFE_TEST_READER_SLEEP=N makes a reader sleep N s once it holds the lock. While a
# verify holds it: the archiver keeps archiving and a base backup runs (neither takes
# the lock); an expire with RAGSAFE_LOCK_TIMEOUT=1 exits 1 and deletes nothing; an
# expire with the default timeout waits until the reader is done, then deletes; the
# reader (verify) passes. While an expire holds it exclusive, ragsafe-restore waits up
# to RAGSAFE_LOCK_TIMEOUT and answers 128 (never "not found"), then serves when free.
# ragsafe-files restore/verify wait while its expire holds the "files" lock.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
pg_archiving src "$REPO" || exit 1

bb() { as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast -l "$1" 2>"$T/$1.err" >/dev/null; }
wal_count() { find "$REPO/wal" -name '0*.zst' ! -name '*.history.zst' | wc -l; }
lock_held() { ! flock -n -x "$REPO/locks/retention.lock" true; }

pg_sql src "create table t (id int primary key); insert into t values (1)" || exit 1
bb b1 || { cat "$T/b1.err"; exit 1; }
pg_sql src "insert into t values (2)"
switch_wal src || exit 1
bb b2 || { cat "$T/b2.err"; exit 1; }
args=(--repo "$REPO" --keep-window 0s --keep-backups 0s --min-backups 1)

# --- a reader holds the lock ------------------------------------------------------------
RAGSAFE_TEST_READER_SLEEP=12 "$PITR" verify --repo "$REPO" >"$T/reader.out" 2>&1 &
RPID=$!
for _ in $(seq 50); do lock_held && break; sleep 0.1; done
ok "the reader holds the retention lock" lock_held

pg_sql src "insert into t values (3)"
ok "the archiver archives while a reader holds the lock" switch_wal src
bb b3
is "a base backup runs while a reader holds the lock" 0 "$?"
WAL_BEFORE=$(wal_count)

RAGSAFE_LOCK_TIMEOUT=1 "$PITR" expire "${args[@]}" >"$T/short.out" 2>"$T/short.err"
is "expire with a 1 s lock timeout while a reader is active: exit 1" 1 "$?"
ok "says readers are active" grep -q "readers are active" "$T/short.err"
ok "b1 is not deleted" test -d "$REPO/backups/b1"
is "no WAL deleted" "$WAL_BEFORE" "$(wal_count)"
ok "the reader still holds the lock" kill -0 "$RPID"

start=$(date +%s)
"$PITR" expire "${args[@]}" >"$T/wait.out" 2>&1
is "expire (default timeout) waits for the reader, then exits 0" 0 "$?"
ok "the reader had finished when expire deleted" bash -c "! kill -0 $RPID 2>/dev/null"
wait "$RPID"
is "the reader (verify) passed: nothing deleted under it" 0 "$?"
ok "expire waited for the reader" test $(($(date +%s) - start)) -ge 3
ok "then b1 is deleted" test ! -d "$REPO/backups/b1"
ok "and WAL below b3" test "$(wal_count)" -lt "$WAL_BEFORE"

# --- ragsafe-restore and a running expire ------------------------------------------------
seg=$(find "$REPO/wal" -name '0*.zst' ! -name '*.history.zst' ! -name '*.backup.zst' | sort | tail -1)
seg=$(basename "$seg" .zst)
mkdir -p "$T/fetch" && chown postgres: "$T/fetch"
flock -x "$REPO/locks/retention.lock" sleep 4 &
FPID=$!
sleep 0.5
as_pg env RAGSAFE_LOCK_TIMEOUT=1 "$RAGSAFE_BIN/ragsafe-restore" --repo "$REPO" "$seg" "$T/fetch/$seg" 2>"$T/fetch.err"
is "ragsafe-restore while expire holds the lock: 128, not 'not found'" 128 "$?"
ok "names the running expire" grep -q "expire" "$T/fetch.err"
as_pg "$RAGSAFE_BIN/ragsafe-restore" --repo "$REPO" "$seg" "$T/fetch/$seg" 2>"$T/fetch2.err"
is "ragsafe-restore waits for the expire, then serves" 0 "$?"
ok "the segment is fetched" test -s "$T/fetch/$seg"
wait "$FPID"

# --- ragsafe-files: restore and verify hold the "files" lock shared ------------------------
F=$RAGSAFE_BIN/ragsafe-files
FR=$T/frepo
repo_init "$FR"
mkdir -p "$T/proj" && echo data >"$T/proj/a.conf"
"$F" keygen "$T/fkey" >/dev/null || exit 1
flabel=$("$F" snapshot --repo "$FR" --cipher-key-file "$T/fkey" --base "$T/proj" a.conf) || exit 1
flock -x "$FR/locks/files.lock" sleep 3 &     # a running ragsafe-files expire
FPID=$!
sleep 0.5
timeout 1 "$F" verify --repo "$FR" --cipher-key-file "$T/fkey" >/dev/null 2>&1
is "ragsafe-files verify waits while an expire holds the lock" 124 "$?"
timeout 1 "$F" restore --repo "$FR" --cipher-key-file "$T/fkey" --target "$T/frest" "$flabel" >/dev/null 2>&1
is "ragsafe-files restore waits while an expire holds the lock" 124 "$?"
wait "$FPID"
exit_is "ragsafe-files verify once the expire is done" 0 "$F" verify --repo "$FR" --cipher-key-file "$T/fkey"

t_done
