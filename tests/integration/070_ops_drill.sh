#!/usr/bin/env bash
# 070_ops_drill.sh -- scripts/restore-drill.sh end to end against a real PostgreSQL 15:
# archive through ragsafe-archive, a base backup, more writes, then the drill restores
# the newest backup to the latest point on a spare port, counts the platform tables,
# reports RTO and RPO, cleans up; failures (a bad check, a missed RPO) exit non-zero.
source "$(dirname "$0")/lib.sh"
t_init

REPO=$T/repo
as_pg mkdir -p "$REPO" "$T/work"
pg_init primary
pg_set primary "wal_level = replica"
pg_set primary "archive_mode = on"
pg_set primary "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO %p %f'"
pg_start primary

pg_sql primary "CREATE TABLE users (id int PRIMARY KEY, name text);
CREATE TABLE documents (id int PRIMARY KEY, title text);
CREATE TABLE search_history (id serial PRIMARY KEY, q text);
INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 10) g;
INSERT INTO documents SELECT g, 'd' || g FROM generate_series(1, 200) g;"
ok "base backup" as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn primary)" --repo "$REPO" --checkpoint fast -l b1
# writes after the backup: the drill must replay them from the archive
pg_sql primary "INSERT INTO users SELECT g, 'u' || g FROM generate_series(11, 17) g;
INSERT INTO search_history (q) SELECT 'q' || g FROM generate_series(1, 33) g;"
pg_sql primary "SELECT pg_switch_wal()" >/dev/null
ok "last segment archived" pg_wait_for primary \
    "SELECT last_archived_wal = pg_walfile_name(pg_current_wal_lsn() - 1) FROM pg_stat_archiver" t
history_before=$(find "$REPO/wal" -name '*.history*' | wc -l)

out=$("$RAGSAFE_SRC/scripts/restore-drill.sh" --repo "$REPO" --bin "$RAGSAFE_BIN" --owner postgres \
    --workdir "$T/work" --rpo-objective 1h 2>&1)
rc=$?
echo "$out" | sed 's/^/#   /'
is "drill exits 0" 0 "$rc"
ok "users counted after replay (17 rows)" grep -q "users: 17 rows" <<<"$out"
ok "documents counted (200 rows)" grep -q "documents: 200 rows" <<<"$out"
ok "search_history from WAL after the backup (33 rows)" grep -q "search_history: 33 rows" <<<"$out"
ok "RTO reported against 7200 s" grep -Eq "RTO [0-9]+ s \(objective 7200 s\): ok" <<<"$out"
ok "RPO reported against 3600 s" grep -Eq "RPO [0-9]+ s \(objective 3600 s\): ok" <<<"$out"
ok "summary is the last line" bash -c "tail -n1 <<<\"\$1\" | grep -q '^restore-drill: ok: RTO'" _ "$out"
is "temp dir removed" "" "$(ls -A "$T/work")"
is "no server left running from the drill" "" "$(pgrep -f "$T/work/" || true)"
is "the copy did not archive into the repository (no new timeline)" "$history_before" \
    "$(find "$REPO/wal" -name '*.history*' | wc -l)"
is "primary untouched and still answering" 17 "$(pg_sql primary "SELECT count(*) FROM users")"

# --check-sql replaces the counts; a failing check fails the drill, and still cleans up
out=$("$RAGSAFE_SRC/scripts/restore-drill.sh" --repo "$REPO" --bin "$RAGSAFE_BIN" --owner postgres \
    --workdir "$T/work" --rpo-objective 1h --check-sql "SELECT count(*) FROM users WHERE id > 10" \
    --check-sql "SELECT * FROM no_such_table" 2>&1)
rc=$?
echo "$out" | tail -n 4 | sed 's/^/#   /'
ok "failing --check-sql: non-zero exit" test "$rc" -ne 0
ok "the passing check printed its result" grep -q "check 1: .* -> 7" <<<"$out"
ok "the failing check reported" grep -q "check 2 FAILED" <<<"$out"
is "temp dir removed after a failure" "" "$(ls -A "$T/work")"

# a missed RPO objective fails the drill (the newest segment is older than 1 s)
sleep 2
"$RAGSAFE_SRC/scripts/restore-drill.sh" --repo "$REPO" --bin "$RAGSAFE_BIN" --owner postgres \
    --workdir "$T/work" --rpo-objective 1s >"$T/rpo.out" 2>&1
rc=$?
ok "missed RPO: non-zero exit" test "$rc" -ne 0
ok "missed RPO: reported" grep -q "RPO.*MISSED" "$T/rpo.out"
exit_is "no repository: exit 1" 1 "$RAGSAFE_SRC/scripts/restore-drill.sh" --repo "$T/nope" \
    --bin "$RAGSAFE_BIN" --workdir "$T/work"
t_done
