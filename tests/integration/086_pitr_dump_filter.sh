#!/usr/bin/env bash
# 086_pitr_dump_filter.sh -- the WAL filter of ragsafe-pitr dump (lib/walfilter.c): the
# scratch server replays database other's page records as XLOG_NOOP records. pgbench
# runs in other after the backup, over several WAL segments, so records of other run
# from one segment into the next (joined by the filter: a change left unfiltered after
# its page's full-page image became a no-op would PANIC replay, "WAL contains references
# to invalid pages"), while app gets inserts, an update and a delete at known instants.
# The dump of app as of T with the filter, and without it (RAGSAFE_NO_WAL_FILTER=1),
# both hold exactly app's rows as of T; the filtered one says how many records became
# no-ops and how many were joined across segments, and handed its WAL over whole. A
# filter gone wrong (RAGSAFE_TEST_WAL_FILTER_GAPS) makes replay PANIC: the dump starts
# over without it and still succeeds.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
pg_archiving src "$REPO" || exit 1
q() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$T/src" -p 5432 -U postgres -d "$1" -c "$2"; }

q postgres "create database app" && q postgres "create database other" || exit 1
as_pg "$PGBIN/pgbench" -h "$T/src" -p 5432 -U postgres -i -s 2 -q other >/dev/null 2>&1 || exit 1
q app "create table t (id int primary key, v text);
       insert into t select g, 't' || g from generate_series(1, 300) g" || exit 1
backup=$(as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast \
    2>"$T/bb.err")
[ -n "$backup" ] || { cat "$T/bb.err"; exit 1; }
seg0=$(pg_sql src "select pg_walfile_name(pg_current_wal_insert_lsn())")
# other's load after the backup: each page's first change a full-page image, then more
as_pg "$PGBIN/pgbench" -h "$T/src" -p 5432 -U postgres -n -c 2 -t 9000 other >/dev/null 2>&1 &
bench=$!
for i in 1 2 3 4 5 6; do
    q app "insert into t select g, 'r$i-' || g from generate_series(1000 * $i, 1000 * $i + 99) g" || exit 1
    sleep 0.3
done
q app "update t set v = 'x' where id <= 50"
wait "$bench" || exit 1
sleep 1.1
T1=$(q app "select clock_timestamp()")
q app "copy (select * from t order by id) to stdout" >"$T/at1"
sleep 1.1
q app "delete from t where id % 3 = 0"     # the accident
q other "update pgbench_accounts set abalance = 1 where aid <= 20000"
seg1=$(pg_sql src "select pg_walfile_name(pg_current_wal_insert_lsn())")
switch_wal src || exit 1
pg_stop src
nseg=$((16#${seg1:16:8} - 16#${seg0:16:8} + 1))
ok "the WAL since the backup spans several segments ($seg0 .. $seg1: $nseg)" test "$nseg" -ge 3

untable() { "$PGBIN/pg_restore" -f - -a -t t "$1" | awk '/^COPY/ {c = 1; next} /^\\\./ {c = 0} c' | sort -n; }

mkdir -p "$T/scratch" "$T/out"
"$PITR" dump --repo "$REPO" --target-time "$T1" --dbname app --table t --file "$T/out/f.dump" \
    --scratch "$T/scratch" -v >"$T/f.out" 2>"$T/f.err"
is "dump with the filter exits 0" 0 "$?" || tail -20 "$T/f.err"
is "... holds exactly t's rows as of the target" "$(cat "$T/at1")" "$(untable "$T/out/f.dump")"
line=$(grep "WAL filter: [0-9]* of [0-9]* records" "$T/f.err")
n=$(sed -n 's/.*WAL filter: \([0-9]*\) of.*/\1/p' <<<"$line")
j=$(sed -n 's/.*; \([0-9]*\) records\{0,1\} joined.*/\1/p' <<<"$line")
ok "... turned other's records into no-ops (${n:-none})" test "${n:-0}" -gt 1000
ok "... joined records across segment boundaries (${j:-none})" test "${j:-0}" -ge 1
ok "... handed the WAL over whole (no 'no WAL handed over')" bash -c "! grep -q 'no WAL handed over' '$T/f.err'"
ok "... no scratch left" test -z "$(ls -A "$T/scratch")"

RAGSAFE_NO_WAL_FILTER=1 "$PITR" dump --repo "$REPO" --target-time "$T1" --dbname app --table t \
    --file "$T/out/u.dump" --scratch "$T/scratch" -v >"$T/u.out" 2>"$T/u.err"
is "dump without the filter exits 0" 0 "$?" || tail -20 "$T/u.err"
ok "... and says nothing of a filter" bash -c "! grep -q 'WAL filter' '$T/u.err'"
is "both dumps hold the same rows" "$(untable "$T/out/u.dump")" "$(untable "$T/out/f.dump")"
# a filter gone wrong (a test knob leaves every odd segment as it was, yet passes it as
# filtered whole): replay PANICs on a hollow page, and the dump starts over without the
# filter instead of failing
RAGSAFE_TEST_WAL_FILTER_GAPS=1 "$PITR" dump --repo "$REPO" --target-time "$T1" --dbname app \
    --table t --file "$T/out/g.dump" --scratch "$T/scratch" -v >"$T/g.out" 2>"$T/g.err"
is "dump through a broken filter exits 0" 0 "$?" || tail -20 "$T/g.err"
ok "... after starting over without the filter" grep -q "starts over without the filter" "$T/g.err"
is "... and holds the same rows" "$(untable "$T/out/f.dump")" "$(untable "$T/out/g.dump")"
ok "... no scratch left" test -z "$(ls -A "$T/scratch")"
t_done
