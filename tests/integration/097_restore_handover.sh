#!/usr/bin/env bash
# 097_restore_handover.sh -- ragsafe-pitr restore hands the WAL its plan verified to the
# restored server's restore_command (pg_wal/ragsafe-prefetch), which takes each segment
# by rename instead of fetching, decompressing and hashing it again.
#
# - restore to a time target: the report names the handed-over segments, the spool holds
#   them (owned by postgres), nothing is left beside the data directory; with every
#   segment object then moved out of the repository the server still recovers to the
#   exact contents of the source at the target (so none was fetched again), and the
#   spool is consumed;
# - a handed-over segment changed after the plan (a byte flipped, its mtime put back)
#   is not used: ragsafe-restore warns, fetches the repository's copy, and recovery
#   reaches the same exact contents;
# - an unreachable target is refused with the data directory untouched and no spool
#   left anywhere.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
pg_archiving src "$REPO" || exit 1

sum() { pg_sql "$1" "select count(*) || ':' || md5(coalesce(string_agg(id || v, ',' order by id), '')) from t"; }
spooled() { find "$T/$1/pg_wal/ragsafe-prefetch" -maxdepth 1 -name '0*' ! -name '*.sum' 2>/dev/null | wc -l; }

pg_sql src "create table t (id int primary key, v text)" || exit 1
pg_sql src "insert into t select g, md5(g::text) from generate_series(1, 1000) g"
as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast >/dev/null 2>"$T/bb.err" \
    || { cat "$T/bb.err"; exit 1; }
# several segments of WAL after the backup, then the target, then a later commit
for i in 1 2 3; do
    pg_sql src "insert into t select g, repeat(md5(g::text), 8) from generate_series($i * 100000, $i * 100000 + 20000) g"
    switch_wal src || exit 1
done
pg_sql src "update t set v = 'at target' where id <= 10"
WANT=$(sum src)
TARGET=$(pg_sql src "select clock_timestamp()")
sleep 1.1
pg_sql src "delete from t where id <= 500"
switch_wal src || exit 1

# --- handover, and nothing fetched again --------------------------------------------
"$PITR" restore --repo "$REPO" --pgdata "$T/a" --target-time "$TARGET" --owner postgres \
    >"$T/a.out" 2>"$T/a.err"
is "restore exits 0" 0 "$?"
n=$(sed -n 's/^wal handover: *\([0-9]*\) segment.*/\1/p' "$T/a.out")
ok "the report names the handed-over segments ($n)" test "${n:-0}" -ge 4
is "the spool holds them" "${n:-x}" "$(spooled a)"
is "each with its record" "${n:-x}" "$(find "$T/a/pg_wal/ragsafe-prefetch" -name '*.sum' | wc -l)"
is "owned by the server's user" "postgres" "$(stat -c %U "$T/a/pg_wal/ragsafe-prefetch")"
is "no spool left beside the data directory" "" "$(find "$T" -maxdepth 1 -name '.a.ragsafe-wal-*')"
# every segment object out of the repository: what recovery replays can only come
# from the handover
mkdir "$T/wal-away"
for d in "$REPO"/wal/0*/; do mv "$d" "$T/wal-away/"; done
if pg_boot_restored a; then
    is "recovered from the handed-over WAL alone: exact contents at the target" "$WANT" "$(sum a)"
else
    fail "recovered from the handed-over WAL alone"; tail -20 "$T/a.log"
fi
is "the handed-over segments were consumed" 0 "$(spooled a)"
ok "ragsafe-restore reported no failure" bash -c "! grep -q 'ragsafe-restore: error' '$T/a.log'"
pg_stop a
mv "$T/wal-away"/* "$REPO/wal/"

# --- a handed-over segment changed after the plan is not used ---------------------------
"$PITR" restore --repo "$REPO" --pgdata "$T/b" --target-time "$TARGET" --owner postgres \
    >"$T/b.out" 2>"$T/b.err"
is "second restore exits 0" 0 "$?"
victim=$(find "$T/b/pg_wal/ragsafe-prefetch" -maxdepth 1 -name '0*' ! -name '*.sum' | sort | sed -n 2p)
ok "a second handed-over segment exists" test -n "$victim"
touch -r "$victim" "$T/stamp"
# the page magic of its first page: a server reading it would stop there
printf '\x00\x00' | dd of="$victim" bs=1 seek=0 count=2 conv=notrunc status=none
touch -r "$T/stamp" "$victim"
if pg_boot_restored b; then
    is "recovery with a changed handed-over segment: exact contents at the target" "$WANT" "$(sum b)"
else
    fail "recovery with a changed handed-over segment"; tail -20 "$T/b.log"
fi
ok "ragsafe-restore said it ignored the changed copy" \
    grep -q "ignoring the handed-over copy of \"$(basename "$victim")\": it changed" "$T/b.log"
pg_stop b

# --- an unreachable target: refused, nothing written -------------------------------------
mkdir -m 0700 "$T/c" && chown postgres: "$T/c"
touch -d '2001-01-01' "$T/c"
before=$(stat -c '%Y %U %a' "$T/c")
"$PITR" restore --repo "$REPO" --pgdata "$T/c" --target-time "$(date -u -d '+1 day' '+%Y-%m-%d %H:%M:%S+00')" \
    --owner postgres >"$T/c.out" 2>"$T/c.err"
is "unreachable target: exit 1" 1 "$?"
ok "... refused as unreachable" grep -q "target unreachable" "$T/c.err"
is "... the data directory is untouched" "$before" "$(stat -c '%Y %U %a' "$T/c")"
is "... and empty" "" "$(ls -A "$T/c")"
is "... no spool left beside it" "" "$(find "$T" -maxdepth 1 -name '.c.ragsafe-wal-*')"

t_done
