#!/usr/bin/env bash
# 030_basebackup_standby.sh -- ragsafe-basebackup against a streaming standby.
#
# The primary archives with ragsafe-archive into the repository; the backup is taken
# from the standby (BASE_BACKUP there does no WAL switch, so the stop segment reaches
# the repository only when the primary switches it: meanwhile the primary keeps
# writing and switching, as a busy primary or archive_timeout would). The backup
# (the default, chunked format) completes, says it came from a standby, comes out with
# ragsafe-pitr extract and passes pg_verifybackup; with a quiet primary the bounded wait times out with the standby
# hint instead of hanging.
source "$(dirname "$0")/lib.sh"
t_init

BB=$RAGSAFE_BIN/ragsafe-basebackup
REPO=$T/repo
mkdir -p "$REPO" && chown postgres: "$REPO"

pg_init a || exit 1
pg_set a "archive_mode = on"
pg_set a "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO %p %f'"
pg_start a || exit 1
as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -i -s 1 -q postgres >/dev/null 2>&1 || exit 1

as_pg "$PGBIN/pg_basebackup" -h "$T/a" -p 5432 -U postgres -D "$T/s" -R -X stream -c fast \
    >"$T/s.basebackup.log" 2>&1 || { cat "$T/s.basebackup.log"; exit 1; }
# the primary's socket lives in its data directory: its lock file came along
rm -f "$T/s/.s.PGSQL.5432" "$T/s/.s.PGSQL.5432.lock"
pg_set s "unix_socket_directories = '$T/s'"
pg_start s || exit 1
pg_wait_for s "select pg_is_in_recovery()" t 30 || exit 1

# keep the primary writing and switching WAL while the standby's backup runs
(
    while [ ! -e "$T/stop-switching" ]; do
        pg_sql a "insert into pgbench_history (tid, bid, aid, delta, mtime) values (1, 1, 1, 1, now());
                  select pg_switch_wal()" >/dev/null 2>&1
        sleep 1
    done
) &
switcher=$!
t_on_exit "touch '$T/stop-switching'; kill $switcher"

label=$(as_pg "$BB" -d "$(pg_conn s)" --repo "$REPO" -c fast --wal-timeout 60 -v 2>"$T/bb.err"); rc=$?
is "backup from the standby exits 0" 0 "$rc"
[ "$rc" = 0 ] || cat "$T/bb.err"
ok "it knew it was a standby" grep -q '(standby)' "$T/bb.err"
B=$REPO/backups/$label
ok "backup.json stored" test -s "$B/backup.json"
is "same system identifier as the primary" "$(pg_sql a 'select system_identifier from pg_control_system()')" \
    "$(jq -r .system_identifier "$B/backup.json")"
ok "ragsafe-pitr extract writes it out" "$RAGSAFE_BIN/ragsafe-pitr" --repo "$REPO" extract "$label" "$T/x"
ok "backup_label says BACKUP FROM: standby" grep -q 'BACKUP FROM: standby' "$T/x/backup_label"
ok "pg_verifybackup --no-parse-wal passes" "$PGBIN/pg_verifybackup" --no-parse-wal -q \
    -m "$B/backup_manifest" "$T/x"
stop_wal=$(jq -r .stop_wal "$B/backup.json")
ok "the stop segment is in the repository" test -f "$REPO/wal/${stop_wal:0:16}/$stop_wal.zst"

# a quiet primary: the stop segment never fills, the wait is bounded and says why
touch "$T/stop-switching"
wait "$switcher" 2>/dev/null
exit_is "quiet primary: the WAL wait times out (exit 1)" 1 \
    as_pg "$BB" -d "$(pg_conn s)" --repo "$REPO" -c fast --wal-timeout 3 --label quiet 2>"$T/quiet.err"
ok "timeout names the segment" grep -Eq 'WAL segment "[0-9A-F]{24}" was not archived within 3 seconds' "$T/quiet.err"
ok "standby hint: pg_switch_wal on the primary" grep -q 'pg_switch_wal' "$T/quiet.err"
ok "no complete backup" test ! -e "$REPO/backups/quiet"

t_done
