#!/usr/bin/env bash
# 091_pitr_stream_restore.sh -- restore --target-latest from a repository whose last
# commits exist only in a receiver's partial (stream/<tli>/<segment>.partial): the
# restored server has them.
#
# PENDING until ragsafe-restore serves partials (h1's restore_cmd/ change, issue 17):
# rename to 091_pitr_stream_restore.sh at merge. Every assertion from "restore: commit B
# is there" on needs that change; before it, recovery ends at the last archived segment
# and B is missing (ragsafe-restore answers "not found" for the partial's segment).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/stream_lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
pg_archiving src "$REPO" || exit 1
pg_sql src "create table t (id int primary key, v text)" || exit 1
pg_sql src "insert into t select g, 'base' from generate_series(1, 100) g"
backup=$(as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast 2>"$T/bb.err")
ok "base backup taken" test -n "$backup"
pg_sql src "insert into t values (200, 'archived')"
switch_wal src || exit 1
pg_sql src "insert into t values (300, 'A')"
MA=$(pg_sql src "select clock_timestamp()")
sleep 1.1
pg_sql src "insert into t values (400, 'B')"
WANT_LATEST=$(pg_sql src "select count(*) || ':' || sum(id) from t")
stream_partial src "$REPO"
ok "partial object stored (${STREAM_SEG:-}, flushed to ${STREAM_FLUSH:-})" test -f "${STREAM_OBJ:-/nonexistent}"
as_pg "$PGBIN/pg_ctl" -D "$T/src" -m immediate -w stop >/dev/null
rm -rf "${T:?}/src"

state() { pg_sql "$1" "select count(*) || ':' || sum(id) from t"; }
# restore_boot NAME ARGS...: restore into $T/NAME with the server started by restore
# (--start: it waits for recovery to end), then read the table.
restore_boot() {
    local name=$1; shift
    "$PITR" restore --repo "$REPO" --pgdata "$T/$name" --start --target-action promote \
        --set "unix_socket_directories=$T/$name" "$@" >"$T/$name.out" 2>"$T/$name.err"
}

restore_boot latest --target-latest
is "restore --target-latest exits 0" 0 "$?"
ok "restore prints the streamed partial in its plan" grep -q "including a streamed partial segment $STREAM_SEG" "$T/latest.out"
T_CLUSTERS+=(latest)
# needs ragsafe-restore's partial serving (h1):
is "restore: commit B is there (the last streamed commit)" "$WANT_LATEST" "$(state latest)"
pg_stop latest

restore_boot attime --target-time "$MA"
is "restore --target-time between A and B exits 0" 0 "$?"
T_CLUSTERS+=(attime)
# needs ragsafe-restore's partial serving (h1): without it the target is never reached
is "restore to a time inside the partial: A, not B" "1:0" \
    "$(pg_sql attime "select count(*) filter (where id = 300) || ':' || count(*) filter (where id = 400) from t")"
pg_stop attime

t_done
