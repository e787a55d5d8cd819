#!/usr/bin/env bash
# 040_pitr_promote.sh -- restore --start promotes the server itself once recovery pauses
# at the target: writes are accepted without waiting for an end-of-recovery checkpoint
# (it runs in the background), and the data are exactly the target's.
#
# - --target-latest: the plan's last record becomes recovery_target_lsn with action
#   pause; the server stops there, is promoted, holds the source's final contents and
#   takes a write; its log shows the stop at that record and no end-of-recovery
#   checkpoint; the report and --json say how it was promoted;
# - a crash (immediate stop) right after that promotion, before any checkpoint, and a
#   restart: crash recovery from the restartpoint keeps everything, the write too;
# - --target-time: paused and promoted at the target, exact contents as of then;
# - --end-of-recovery-checkpoint: recovery ends by itself (action promote), the log shows
#   the end-of-recovery checkpoint, same contents (so too with --set hot_standby=off,
#   where a pause would shut the server down); without --start, or on dump, it is
#   refused;
# - WAL that ends before the plan's last record (RAGSAFE_TEST_LAST_REC_PAST moves the
#   written target a segment further): the server stops with FATAL instead of
#   promoting short, and the restore fails naming --end-of-recovery-checkpoint.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
pg_archiving src "$REPO" || exit 1

state() { pg_sql "$1" "select count(*) || ':' || md5(coalesce(string_agg(id || v, ',' order by id), '')) from t"; }
# start_to NAME ARGS...: restore --start --json into $T/NAME on its own socket directory
start_to() {
    local name=$1; shift
    T_CLUSTERS+=("$name")
    "$PITR" restore --repo "$REPO" --pgdata "$T/$name" --owner postgres --start --json \
        --set "unix_socket_directories=$T/$name" --set log_checkpoints=on "$@" \
        >"$T/$name.json" 2>"$T/$name.err"
}
slog() { cat "$T/$1/ragsafe-start.log"; }

pg_sql src "create table t (id int primary key, v text)" || exit 1
pg_sql src "insert into t select g, md5(g::text) from generate_series(1, 1000) g"
as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast >/dev/null 2>"$T/bb.err" \
    || { cat "$T/bb.err"; exit 1; }
# enough change after the backup that replay dirties many pages
for i in 1 2; do
    pg_sql src "update t set v = repeat(md5(id::text || '$i'), 4)"
    switch_wal src || exit 1
done
MID=$(state src)
TARGET=$(pg_sql src "select clock_timestamp()")
sleep 1.1
pg_sql src "insert into t select g, 'late' from generate_series(2000, 2100) g"
pg_sql src "delete from t where id <= 100"
FINAL=$(state src)
switch_wal src || exit 1
pg_stop src

# --- latest: paused at the plan's last record, promoted at once -----------------------
start_to a --target-latest
is "restore --start --target-latest exits 0" 0 "$?"
is "promoted" "promoted" "$(jq -r .recovery.state "$T/a.json")"
is "... at the pause" "at the pause" "$(jq -r .recovery.promotion "$T/a.json")"
last=$(sed -n "s/^recovery_target_lsn = '\([0-9A-F]*\/[0-9A-F]*\)'.*/\1/p" "$T/a/postgresql.auto.conf")
ok "the plan's last record written as recovery_target_lsn ($last)" test -n "$last"
ok "with recovery_target_action pause" grep -q "^recovery_target_action = 'pause'" "$T/a/postgresql.auto.conf"
ok "recovery stopped at that record" grep -q "recovery stopping after WAL location (LSN) \"$last\"" "$T/a/ragsafe-start.log"
ok "no end-of-recovery checkpoint before the promotion" \
    bash -c "! grep -q 'checkpoint starting: end-of-recovery' '$T/a/ragsafe-start.log'"
is "the source's final contents" "$FINAL" "$(state a)"
ok "it takes a write" pg_sql a "insert into t values (99999, 'after promotion')"
WITH_WRITE=$(state a)
# a crash before the checkpoint the promotion requested has run (or just after)
as_pg "$PGBIN/pg_ctl" -D "$T/a" -m immediate -w stop >/dev/null
ok "restarts after a crash right after the promotion" \
    as_pg "$PGBIN/pg_ctl" -D "$T/a" -l "$T/a.restart.log" -w -t 120 -s start
is "crash recovery keeps the restored data and the write" "$WITH_WRITE" "$(state a)"
pg_stop a

# --- a time target: paused there, promoted ---------------------------------------------
start_to b --target-time "$TARGET"
is "restore --start --target-time exits 0" 0 "$?"
is "promoted at the pause" "promoted/at the pause" \
    "$(jq -r '.recovery.state + "/" + .recovery.promotion' "$T/b.json")"
is "contents as of the target" "$MID" "$(state b)"
ok "no end-of-recovery checkpoint" bash -c "! grep -q 'checkpoint starting: end-of-recovery' '$T/b/ragsafe-start.log'"
ok "the report says how it promoted" bash -c \
    "'$PITR' restore --repo '$REPO' --pgdata '$T/b2' --owner postgres --start --set 'unix_socket_directories=$T/b2' \
      --target-time '$TARGET' 2>/dev/null | grep -q '^recovery: *promoted at the target.s pause'"
T_CLUSTERS+=(b2)
pg_stop b
pg_stop b2

# --- --end-of-recovery-checkpoint: PostgreSQL's own end ----------------------------------
start_to c --target-latest --end-of-recovery-checkpoint
is "restore --start --end-of-recovery-checkpoint exits 0" 0 "$?"
is "promoted after the checkpoint" "promoted/end-of-recovery checkpoint" \
    "$(jq -r '.recovery.state + "/" + .recovery.promotion' "$T/c.json")"
ok "the end-of-recovery checkpoint ran" grep -q 'checkpoint starting: end-of-recovery' "$T/c/ragsafe-start.log"
ok "no recovery_target_lsn written" bash -c "! grep -q '^recovery_target_lsn' '$T/c/postgresql.auto.conf'"
is "same contents" "$FINAL" "$(state c)"
pg_stop c
# hot_standby off (the pause would shut the server down): recovery ends by itself
start_to f --target-latest --set hot_standby=off
is "restore --start --set hot_standby=off exits 0" 0 "$?"
is "... promoted after the end-of-recovery checkpoint" "promoted/end-of-recovery checkpoint" \
    "$(jq -r '.recovery.state + "/" + .recovery.promotion' "$T/f.json")"
is "... same contents" "$FINAL" "$(state f)"
pg_stop f
# --- WAL ending before the plan's last record: never promoted short -------------------
RAGSAFE_TEST_LAST_REC_PAST=1 start_to e --target-latest
is "restore --start exits 1 when recovery ends before the written target" 1 "$?"
ok "... with PostgreSQL's FATAL" grep -q "recovery ended before configured recovery target was reached" "$T/e.err"
ok "... and the way on (--end-of-recovery-checkpoint)" grep -q -- "--end-of-recovery-checkpoint" "$T/e.err"
ok "the server is not running" test ! -e "$T/e/postmaster.pid"
ok "... and was not promoted (still in archive recovery)" \
    bash -c "'$PGBIN/pg_controldata' '$T/e' | grep -q 'cluster state: *in archive recovery'"
"$PITR" restore --repo "$REPO" --pgdata "$T/d" --target-latest --end-of-recovery-checkpoint >"$T/d.out" 2>"$T/d.err"
is "--end-of-recovery-checkpoint without --start: usage error" 2 "$?"
ok "... naming --start" grep -q -- "--start" "$T/d.err"
ok "... before writing anything" test ! -e "$T/d"
"$PITR" dump --repo "$REPO" --target-latest --dbname postgres --file "$T/d.dump" --start \
    --end-of-recovery-checkpoint >"$T/dd.out" 2>"$T/dd.err"
is "--end-of-recovery-checkpoint on dump: usage error" 2 "$?"
ok "... no dump written" test ! -e "$T/d.dump"

t_done
