#!/usr/bin/env bash
# 030_basebackup_refusals.sh -- the server-side refusals a DBA meets when setting up
# base backups each give a clear message and a hint, exit 1, and store nothing:
# a role without REPLICATION, pg_hba.conf without a replication line,
# max_wal_senders = 0 / wal_level = minimal, a server that is not running.
source "$(dirname "$0")/lib.sh"
t_init

BB=$RAGSAFE_BIN/ragsafe-basebackup
REPO=$T/repo

pg_init a || exit 1
pg_set a "archive_mode = on"
pg_set a "archive_command = 'true'"
pg_start a || exit 1

# --- a role without the REPLICATION attribute ------------------------------------------
pg_sql a "create role plain login" || exit 1
exit_is "role without REPLICATION exits 1" 1 \
    as_pg "$BB" -d "host=$T/a port=5432 user=plain dbname=postgres" --repo "$REPO" 2>"$T/role.err"
ok "message says why" grep -qi 'replication role\|permission denied' "$T/role.err"
ok "hint: ALTER ROLE ... REPLICATION" grep -q 'hint: .*ALTER ROLE name REPLICATION' "$T/role.err"
ok "nothing stored" test ! -e "$REPO"

# --- pg_hba.conf without a replication line --------------------------------------------
cp "$T/a/pg_hba.conf" "$T/pg_hba.saved"
grep -v replication "$T/pg_hba.saved" >"$T/a/pg_hba.conf"
pg_sql a "select pg_reload_conf()" >/dev/null
sleep 0.5
exit_is "pg_hba.conf without replication exits 1" 1 \
    as_pg "$BB" -d "$(pg_conn a)" --repo "$REPO" 2>"$T/hba.err"
ok "message names pg_hba.conf" grep -q 'pg_hba.conf' "$T/hba.err"
ok "hint: add a replication line" grep -q 'hint: add a line for the "replication" pseudo-database' "$T/hba.err"
cp "$T/pg_hba.saved" "$T/a/pg_hba.conf"
pg_sql a "select pg_reload_conf()" >/dev/null

# --- wal_level = minimal (which needs max_wal_senders = 0, archive_mode = off) ---------
pg_stop a
pg_set a "wal_level = minimal"
pg_set a "max_wal_senders = 0"
pg_set a "archive_mode = off"
pg_start a || exit 1
exit_is "max_wal_senders = 0 exits 1" 1 as_pg "$BB" -d "$(pg_conn a)" --repo "$REPO" 2>"$T/senders.err"
ok "message names max_wal_senders" grep -q 'max_wal_senders' "$T/senders.err"
ok "hint: max_wal_senders and wal_level" grep -q 'hint: set max_wal_senders .* wal_level to replica' "$T/senders.err"
ok "nothing stored" test ! -e "$REPO"

# --- no server at all ---------------------------------------------------------------------
pg_stop a
exit_is "no server exits 1" 1 as_pg "$BB" -d "$(pg_conn a)" --repo "$REPO" 2>"$T/down.err"
ok "message says it could not connect" grep -q 'could not connect to the server' "$T/down.err"
ok "hint: is the server running" grep -q 'hint: is the server running' "$T/down.err"

t_done
