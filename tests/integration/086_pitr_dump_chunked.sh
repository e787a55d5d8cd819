#!/usr/bin/env bash
# 086_pitr_dump_chunked.sh -- ragsafe-pitr dump from a chunked base backup
# (ragsafe-basebackup --format chunked) of a two-database cluster: the dump of app
# fetches no chunk of database other's relation files and writes none of their bytes
# (they are restored hollow), yields exactly app's rows as of the target, plans once
# (the restore it runs uses the dump's plan and its WAL handover), and ends recovery by
# a promotion at the pause, with no end-of-recovery checkpoint. other's page records
# in the WAL after the backup replay as no-ops (the WAL filter): its hollow table file
# keeps its size as of the backup, though other's table grew since.
#
# Fetched chunks: -vv's "N chunks to fetch" of the dump against a full restore of the
# same backup: the difference is at least other's table's chunks (32 KiB each).
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
install -d -o postgres -g postgres -m 0750 "$REPO" || exit 1
pg_archiving src "$REPO" || exit 1
q() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$T/$1" -p 5432 -U postgres -d "$2" -c "$3"; }

q src postgres "create database app" && q src postgres "create database other" || exit 1
# other: 8 MB of distinct rows (no chunk of it equals one of app's)
q src other "create table big as select g as id, md5(g::text) || md5((g + 1)::text) v
             from generate_series(1, 80000) g" || exit 1
q src app "create table t (id int primary key, v text);
           insert into t select g, 't' || g from generate_series(1, 200) g" || exit 1
backup=$(as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast \
    --format chunked 2>"$T/bb.err")
[ -n "$backup" ] || { cat "$T/bb.err"; exit 1; }
ok "the backup is chunked" test -s "$REPO/backups/$backup/base.chunks.zst"
BIG_FILE=$(q src other "select pg_relation_filepath('big')")
BIG_SIZE0=$(stat -c %s "$T/src/$BIG_FILE")
q src app "insert into t select g, 't' || g from generate_series(201, 250) g; update t set v = 'x' where id <= 10"
q src other "update big set v = 'changed' where id <= 1000"
sleep 1.1
T1=$(q src app "select clock_timestamp()")
q src app "copy (select * from t order by id) to stdout" >"$T/at1"
sleep 1.1
q src app "delete from t where id % 2 = 0"     # the accident
APP_OID=$(q src postgres "select oid from pg_database where datname = 'app'")
OTHER_OID=$(q src postgres "select oid from pg_database where datname = 'other'")
BIG_SIZE=$(stat -c %s "$T/src/$BIG_FILE")
switch_wal src || exit 1
pg_stop src

mkdir -p "$T/keep" "$T/out"
"$PITR" dump --repo "$REPO" --target-time "$T1" --dbname app --table t --file "$T/out/t.dump" \
    --scratch "$T/keep" --keep-scratch -vv >"$T/dump.out" 2>"$T/dump.err"
is "dump from the chunked backup exits 0" 0 "$?" || tail -20 "$T/dump.err"
ok "the report names table t with its 250 rows" grep -q "table: *public.t: 250 rows" "$T/dump.out"
is "the dump holds exactly t's rows as of the target" "$(cat "$T/at1")" \
    "$("$PGBIN/pg_restore" -f - -a -t t "$T/out/t.dump" | awk '/^COPY/ {c = 1; next} /^\\\./ {c = 0} c' | sort -n)"
ok "the restore inside the dump made no plan of its own (it used the dump's)" \
    bash -c "[ \$(grep -c 'plan made in' '$T/dump.err') = 0 ] && grep -q 'the plan spooled' '$T/dump.err'"
K=$(ls -d "$T"/keep/ragsafe-dump-*/pgdata)
# paused at the target and promoted there: no end-of-recovery checkpoint writing every
# page replay dirtied (other's into its hollow files)
ok "the scratch server's promotion was asked for" grep -q "promotion requested" "$T/dump.err"
ok "... and it was promoted at the pause" bash -c \
    "grep -A3 'pausing at the end of recovery' '$K/ragsafe-start.log' | grep -q 'received promote request'"
ok "... and wrote no end-of-recovery checkpoint" \
    bash -c "grep -q 'database system is ready to accept connections' '$K/ragsafe-start.log' && ! grep -q 'checkpoint starting: end-of-recovery' '$K/ragsafe-start.log'"
ok "other's table grew after the backup ($BIG_SIZE0 -> $BIG_SIZE bytes)" test "$BIG_SIZE" -gt "$BIG_SIZE0"
ok "other's table file is there at its size as of the backup ($BIG_SIZE0 bytes): its records replayed as no-ops" \
    test "$(stat -c %s "$K/$BIG_FILE" 2>/dev/null)" = "$BIG_SIZE0"
nf=$(sed -n 's/.*WAL filter: \([0-9]*\) of [0-9]* records.*/\1/p' "$T/dump.err")
ok "the WAL filter turned other's records into no-ops (${nf:-none})" test "${nf:-0}" -gt 0
other_kb=$(du -sk "$K/base/$OTHER_OID" | cut -f1)
app_kb=$(du -sk "$K/base/$APP_OID" | cut -f1)
ok "none of other's relation bytes written: base/$OTHER_OID takes < 200 KiB ($other_kb KiB; its table alone is $((BIG_SIZE / 1024)) KiB), app $app_kb KiB" \
    test "$other_kb" -lt 200 -a "$app_kb" -gt "$other_kb"

# chunks fetched: the dump against a full restore of the same backup
"$PITR" restore --repo "$REPO" --pgdata "$T/full" --target-time "$T1" -vv >"$T/full.out" 2>"$T/full.err"
is "a full restore of the same backup exits 0" 0 "$?" || tail -20 "$T/full.err"
fetch() { sed -n 's/.* \([0-9][0-9]*\) chunks\{0,1\} to fetch .*/\1/p' "$1" | head -1; }
n_dump=$(fetch "$T/dump.err")
n_full=$(fetch "$T/full.err")
big_chunks=$(((BIG_SIZE + 32767) / 32768))
echo "# chunks to fetch: dump $n_dump, full restore $n_full; other's table: $big_chunks"
ok "the dump fetches none of other's table's $big_chunks chunks (dump $n_dump, full restore $n_full)" \
    test -n "$n_dump" -a -n "$n_full" -a "$((n_full - n_dump))" -ge "$big_chunks"
t_done
