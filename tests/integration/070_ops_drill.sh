#!/usr/bin/env bash
# 070_ops_drill.sh -- scripts/restore-drill.sh end to end against a real PostgreSQL 15:
# archive through ragsafe-archive, a base backup, more writes, then the drill records
# the source's row counts at a restore point, restores the newest backup to it on a
# spare port, compares every table with the source, reports RTO and RPO, cleans up;
# failures exit non-zero: a copy whose tables differ from the source (one empty), a
# check whose output is not the --expected one, a failing check, a missed RPO; a drill
# with nothing to compare the copy with is refused.
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
# a restore point before the writes below: a drill that reuses its name gets a copy
# that stops there (recovery stops at the first restore point of a name)
pg_sql primary "SELECT pg_create_restore_point('drill-dup')" >/dev/null
# writes after the backup: the drill must replay them from the archive
pg_sql primary "INSERT INTO users SELECT g, 'u' || g FROM generate_series(11, 17) g;
INSERT INTO search_history (q) SELECT 'q' || g FROM generate_series(1, 33) g;"
pg_sql primary "SELECT pg_switch_wal()" >/dev/null
ok "last segment archived" pg_wait_for primary \
    "SELECT last_archived_wal = pg_walfile_name(pg_current_wal_lsn() - 1) FROM pg_stat_archiver" t
history_before=$(find "$REPO/wal" -name '*.history*' | wc -l)

out=$("$RAGSAFE_SRC/scripts/restore-drill.sh" --repo "$REPO" --bin "$RAGSAFE_BIN" --owner postgres \
    --workdir "$T/work" --rpo-objective 1h 2>&1)
is "a drill with nothing to compare the copy with: refused (exit 2)" 2 "$?"
ok "... says why and what to give" bash -c 'grep -q "nothing to compare the restored copy with" <<<"$1" &&
    grep -q -- "--source CONNINFO" <<<"$1"' _ "$out"

out=$("$RAGSAFE_SRC/scripts/restore-drill.sh" --repo "$REPO" --bin "$RAGSAFE_BIN" --owner postgres \
    --workdir "$T/work" --rpo-objective 1h --source "$(pg_conn primary)" 2>&1)
rc=$?
echo "$out" | sed 's/^/#   /'
is "drill exits 0" 0 "$rc"
ok "the source's counts recorded at a restore point" grep -q "public.users: 17 rows$" <<<"$out"
ok "users in the copy as in the source (17 rows)" grep -q "public.users: 17 rows, as the source: ok" <<<"$out"
ok "documents as in the source (200 rows)" grep -q "public.documents: 200 rows, as the source: ok" <<<"$out"
ok "search_history from WAL after the backup (33 rows)" \
    grep -q "public.search_history: 33 rows, as the source: ok" <<<"$out"
ok "restored to the drill's restore point" grep -q "restore to --target-name ragsafe-drill-" <<<"$out"
ok "summary: 3 tables, none differ" grep -q "3 tables, 0 differ from the source" <<<"$out"
ok "RTO reported against 7200 s" grep -Eq "RTO [0-9]+ s \(objective 7200 s\): ok" <<<"$out"
ok "RPO reported against 3600 s" grep -Eq "RPO [0-9]+ s \(objective 3600 s\): ok" <<<"$out"
ok "summary is the last line" bash -c "tail -n1 <<<\"\$1\" | grep -q '^restore-drill: ok: RTO'" _ "$out"
is "temp dir removed" "" "$(ls -A "$T/work")"
is "no server left running from the drill" "" "$(pgrep -f "$T/work/" || true)"
is "the copy did not archive into the repository (no new timeline)" "$history_before" \
    "$(find "$REPO/wal" -name '*.history*' | wc -l)"
is "primary untouched and still answering" 17 "$(pg_sql primary "SELECT count(*) FROM users")"

# a copy that is not what the source had at the restore point: the name reused, so
# recovery stops at the first "drill-dup", before the writes after the backup
out=$("$RAGSAFE_SRC/scripts/restore-drill.sh" --repo "$REPO" --bin "$RAGSAFE_BIN" --owner postgres \
    --workdir "$T/work" --rpo-objective 1h --source "$(pg_conn primary)" --restore-point drill-dup 2>&1)
rc=$?
echo "$out" | grep -E 'MISMATCH|FAILED' | sed 's/^/#   /'
is "a copy that differs from the source: exit 1" 1 "$rc"
ok "... an empty table in the copy is a mismatch" \
    grep -q "public.search_history: MISMATCH: 0 rows, the source had 33" <<<"$out"
ok "... fewer rows is a mismatch" grep -q "public.users: MISMATCH: 10 rows, the source had 17" <<<"$out"
ok "... an equal table is not" grep -q "public.documents: 200 rows, as the source: ok" <<<"$out"
ok "... summary names the failure" grep -q "^restore-drill: FAILED: .*3 tables, 2 differ from the source" <<<"$out"
is "temp dir removed after a mismatch" "" "$(ls -A "$T/work")"

# --check-sql SQL --expect VALUE: the output must be VALUE; a failing check fails the
# drill, and still cleans up
out=$("$RAGSAFE_SRC/scripts/restore-drill.sh" --repo "$REPO" --bin "$RAGSAFE_BIN" --owner postgres \
    --workdir "$T/work" --rpo-objective 1h --check-sql "SELECT count(*) FROM users WHERE id > 10" --expect 7 \
    --check-sql "SELECT count(*) FROM users" --expect 999 --check-sql "SELECT * FROM no_such_table" 2>&1)
rc=$?
echo "$out" | tail -n 5 | sed 's/^/#   /'
is "failing checks: exit 1" 1 "$rc"
ok "the passing check printed its result" grep -q "check 1: .* -> 7" <<<"$out"
ok "a result other than --expect fails" grep -q "check 2 FAILED: .* -> 17, expected 999" <<<"$out"
ok "the failing check reported" grep -q "check 3 FAILED" <<<"$out"
is "temp dir removed after a failure" "" "$(ls -A "$T/work")"
exit_is "--expect without a --check-sql before it: usage, exit 2" 2 \
    "$RAGSAFE_SRC/scripts/restore-drill.sh" --repo "$REPO" --expect 1

# a missed RPO objective fails the drill (the newest segment is older than 1 s)
sleep 2
"$RAGSAFE_SRC/scripts/restore-drill.sh" --repo "$REPO" --bin "$RAGSAFE_BIN" --owner postgres \
    --workdir "$T/work" --rpo-objective 1s --check-sql "SELECT 1" --expect 1 >"$T/rpo.out" 2>&1
rc=$?
ok "missed RPO: non-zero exit" test "$rc" -ne 0
ok "missed RPO: reported" grep -q "RPO.*MISSED" "$T/rpo.out"
exit_is "no repository: exit 1" 1 "$RAGSAFE_SRC/scripts/restore-drill.sh" --repo "$T/nope" \
    --bin "$RAGSAFE_BIN" --workdir "$T/work" --check-sql "SELECT 1" --expect 1 2>/dev/null
t_done
