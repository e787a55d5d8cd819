#!/usr/bin/env bash
# 097_restore_overlap.sh -- ragsafe-pitr restore extracts the base backup into a private
# sibling of the data directory (.DIR.ragsafe-restore-XXXXXX) while the plan verifies
# the WAL, and renames it into place only once the plan proved the target reachable.
#
# - an unreachable target (the extraction ran beside the plan): refused, DIR absent (or
#   the empty directory it was), nothing left beside it;
# - a non-empty DIR is refused before any work (no plan, no extraction, no sibling);
# - SIGTERM during the restore: nothing written into DIR, nothing left beside it; a
#   second restore into the same DIR meanwhile is refused, naming the busy sibling;
# - kill -9 during the restore: DIR untouched; the sibling it leaves is removed by the
#   next restore into DIR, which recovers the exact contents at the target;
# - both formats: the target after the chunked backup, one between the two backups
#   (tar); RAGSAFE_NO_RESTORE_OVERLAP=1 restores the same contents the serial way.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
pg_archiving src "$REPO" || exit 1

sum() { pg_sql "$1" "select count(*) || ':' || md5(coalesce(string_agg(id || v, ',' order by id), '')) from t"; }
sibs() { find "$T" -maxdepth 1 \( -name ".$1.ragsafe-restore-*" -o -name ".$1.ragsafe-wal-*" \) | wc -l; }
# wait_sib NAME: until the restore's private sibling exists (30 s at most)
wait_sib() {
    for _ in $(seq 3000); do
        [ -n "$(find "$T" -maxdepth 1 -name ".$1.ragsafe-restore-*" 2>/dev/null)" ] && return 0
        sleep 0.01
    done
    return 1
}
bb() { as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast --no-progress "$@" >/dev/null; }

pg_sql src "create table t (id int primary key, v text)" || exit 1
# enough data that the extraction lasts while the test stops the restore
pg_sql src "insert into t select g, repeat(md5(g::text), 6) from generate_series(1, 300000) g"
bb --format tar || exit 1
pg_sql src "update t set v = 'between' where id <= 10"
WANT1=$(sum src)
TARGET1=$(pg_sql src "select clock_timestamp()")
sleep 1.1
pg_sql src "update t set v = 'after between' where id <= 20"
bb --format chunked || exit 1
for i in 1 2; do
    pg_sql src "insert into t select g, md5(g::text) from generate_series($i * 1000000, $i * 1000000 + 50000) g"
    switch_wal src || exit 1
done
pg_sql src "update t set v = 'at target' where id <= 10"
WANT=$(sum src)
TARGET=$(pg_sql src "select clock_timestamp()")
sleep 1.1
pg_sql src "delete from t where id <= 500"
switch_wal src || exit 1

# --- unreachable: the extraction ran beside the plan; nothing in or beside DIR -------
exit_is "an lsn beyond the archived WAL is refused" 1 \
    "$PITR" restore -v --repo "$REPO" --pgdata "$T/u" --target-lsn 7FFF/0 --owner postgres \
    >"$T/u.out" 2>"$T/u.err"
ok "the backup was being extracted beside the plan" grep -q "extracted while the plan verifies" "$T/u.err"
ok "the refusal says why" grep -q "target unreachable" "$T/u.err"
ok "the data directory was not created" test ! -e "$T/u"
is "nothing left beside it" 0 "$(sibs u)"
install -d -o postgres -g postgres -m 0750 "$T/e"
exit_is "a time with no later commit is refused" 1 \
    "$PITR" restore -v --repo "$REPO" --pgdata "$T/e" --target-time '2999-01-01 00:00:00+00' \
    --owner postgres >"$T/e.out" 2>"$T/e.err"
ok "(extracted beside the plan)" grep -q "extracted while the plan verifies" "$T/e.err"
is "the empty data directory stays empty" "" "$(ls -A "$T/e")"
is "the empty data directory keeps its mode" 750 "$(stat -c %a "$T/e")"
is "nothing left beside it" 0 "$(sibs e)"

# --- a non-empty DIR: refused before any work -----------------------------------------
mkdir "$T/n" && echo keep >"$T/n/file"
exit_is "a non-empty data directory is refused" 1 \
    "$PITR" restore -v --repo "$REPO" --pgdata "$T/n" --target-time "$TARGET" --owner postgres \
    >"$T/n.out" 2>"$T/n.err"
ok "it says so" grep -q "is not empty" "$T/n.err"
ok "before any extraction or plan" bash -c "! grep -Eq 'extracting|plan made|spooled' '$T/n.err'"
is "its contents are untouched" "keep" "$(cat "$T/n/file")"
is "nothing made beside it" 0 "$(sibs n)"

# --- SIGTERM: nothing written into DIR, nothing left beside it ----------------------
"$PITR" restore -v --repo "$REPO" --pgdata "$T/s" --target-time "$TARGET" --owner postgres \
    >"$T/s.out" 2>"$T/s.err" &
pid=$!
ok "the restore made its private sibling" wait_sib s
kill -STOP "$pid"
ok "the data directory does not exist while it runs" test ! -e "$T/s"
exit_is "a second restore into the same directory meanwhile is refused" 1 \
    "$PITR" restore --repo "$REPO" --pgdata "$T/s" --target-time "$TARGET" --owner postgres \
    >"$T/s2.out" 2>"$T/s2.err"
ok "naming the restore that runs" grep -q "another restore into \"$T/s\" is running" "$T/s2.err"
kill -TERM "$pid"
kill -CONT "$pid"
wait "$pid"
is "SIGTERM: the restore exits 1" 1 "$?"
ok "it says it was interrupted" grep -q "interrupted by signal 15" "$T/s.err"
ok "SIGTERM: the data directory was not created" test ! -e "$T/s"
is "SIGTERM: nothing left beside it" 0 "$(sibs s)"

# --- kill -9: DIR untouched; the next restore removes what it left, and recovers ------
"$PITR" restore -v --repo "$REPO" --pgdata "$T/k" --target-time "$TARGET" --owner postgres \
    >"$T/k0.out" 2>"$T/k0.err" &
pid=$!
ok "the restore made its private sibling" wait_sib k
kill -STOP "$pid"
kill -KILL "$pid"
wait "$pid" 2>/dev/null
ok "kill -9: the data directory was not created" test ! -e "$T/k"
ok "kill -9 left the sibling" test "$(sibs k)" -ge 1
"$PITR" restore -v --repo "$REPO" --pgdata "$T/k" --target-time "$TARGET" --owner postgres \
    >"$T/k.out" 2>"$T/k.err"
is "the next restore exits 0" 0 "$?"
ok "it removed what the killed one left" grep -q "left by an interrupted restore" "$T/k.err"
ok "(chunked backup, extracted beside the plan)" grep -q "extracted while the plan verifies" "$T/k.err"
is "nothing left beside the data directory" 0 "$(sibs k)"
is "the data directory is the restore's, mode 0700" "700 postgres" "$(stat -c '%a %U' "$T/k")"
if pg_boot_restored k; then
    is "recovered: exact contents at the target" "$WANT" "$(sum k)"
else
    fail "recovered: exact contents at the target"; tail -20 "$T/k.log"
fi
pg_stop k

# --- the tar backup (target between the two), into an existing empty directory -------
install -d -o postgres -g postgres -m 0700 "$T/t"
"$PITR" restore -v --repo "$REPO" --pgdata "$T/t" --target-time "$TARGET1" --owner postgres \
    >"$T/t.out" 2>"$T/t.err"
is "tar backup: restore exits 0" 0 "$?"
ok "(extracted beside the plan)" grep -q "extracted while the plan verifies" "$T/t.err"
is "nothing left beside the data directory" 0 "$(sibs t)"
if pg_boot_restored t; then
    is "tar backup: exact contents at the target" "$WANT1" "$(sum t)"
else
    fail "tar backup: exact contents at the target"; tail -20 "$T/t.log"
fi
pg_stop t

# --- the serial order still works (RAGSAFE_NO_RESTORE_OVERLAP=1) -----------------------
RAGSAFE_NO_RESTORE_OVERLAP=1 "$PITR" restore -v --repo "$REPO" --pgdata "$T/z" \
    --target-time "$TARGET" --owner postgres >"$T/z.out" 2>"$T/z.err"
is "serial: restore exits 0" 0 "$?"
ok "(not beside the plan)" bash -c "! grep -q 'extracted while the plan verifies' '$T/z.err'"
if pg_boot_restored z; then
    is "serial: exact contents at the target" "$WANT" "$(sum z)"
else
    fail "serial: exact contents at the target"; tail -20 "$T/z.log"
fi
pg_stop z

# --- a damaged WAL segment: refused (3) before DIR is touched, the spool removed ---------
# (the plan hands over the segments before it as the walk reads them)
SEGF=$(find "$REPO/wal" -name '[0-9A-F]*[0-9A-F].zst' | sort | tail -1)
SEG=$(basename "$SEGF" .zst)
cp -a "$SEGF" "$T/seg.good"
python3 - "$SEGF" <<'PY'
import sys
p = sys.argv[1]
d = bytearray(open(p, "rb").read())
d[len(d) // 2] ^= 0xFF
open(p, "wb").write(d)
PY
exit_is "a damaged WAL segment is refused (3)" 3 \
    "$PITR" restore -v --repo "$REPO" --pgdata "$T/w" --target-latest --owner postgres \
    >"$T/w.out" 2>"$T/w.err"
ok "it names the segment" grep -q "WAL segment \"$SEG\" is corrupt" "$T/w.err"
ok "the data directory was not created" test ! -e "$T/w"
is "nothing left beside it (no sibling, no spool)" 0 "$(sibs w)"
cp -a "$T/seg.good" "$SEGF"

t_done
