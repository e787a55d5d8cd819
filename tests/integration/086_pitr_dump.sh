#!/usr/bin/env bash
# 086_pitr_dump.sh -- ragsafe-pitr dump: pg_dump of one database as of an instant, from
# the repository alone, with the live cluster stopped.
#
# Database app of cluster src holds three tables; after a base backup rows are added,
# then a DELETE on one table and a DROP TABLE on another at known instants (the time
# and a sorted COPY of each table recorded just before each accident). A dump as of
# each instant, pg_restore'd into a fresh database of another cluster, holds exactly
# those rows. --schema-only, --data-only, --table, --format directory --jobs 2, --json;
# an unreachable target is refused before any scratch directory exists; SIGTERM midway
# leaves no scratch server, no scratch directory and no output. src is stopped during
# every dump (nothing can have connected to it) and its tables are unchanged after.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
install -d -o postgres -g postgres -m 0750 "$REPO" || exit 1
pg_archiving src "$REPO" || exit 1

# q CLUSTER DB SQL
q() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$T/$1" -p 5432 -U postgres -d "$2" -c "$3"; }
copy() { q "$1" "$2" "copy (select * from $3 order by id) to stdout"; }

q src postgres "create database app" || exit 1
q src postgres "create database other" || exit 1
q src other "create table big as select g as id, md5(g::text) v from generate_series(1, 20000) g"
q src app "create table a (id int primary key, v text);
           create table b (id int primary key, v text);
           create table c (id int primary key, v text);
           insert into a select g, 'a' || g from generate_series(1, 100) g;
           insert into b select g, 'b' || g from generate_series(1, 50) g;
           insert into c select g, 'c' || g from generate_series(1, 10) g;" || exit 1
# a table in a tablespace: the dump restores it inside its scratch directory, never
# over the live cluster's tablespace directory
mkdir -p "$T/ts1" && chown postgres: "$T/ts1"
q src app "create tablespace ts1 location '$T/ts1'" || exit 1
q src app "create table d (id int primary key, v text) tablespace ts1;
           insert into d select g, 'd' || g from generate_series(1, 30) g;" || exit 1
# x1 and x2: renamed after the backup, so that the name x1 stands for another database
# at the target than in the backup
q src postgres "create database x1" && q src postgres "create database x2" || exit 1
q src x1 "create table t as select g as id from generate_series(1, 5) g" || exit 1
q src x2 "create table t as select g as id from generate_series(1, 7) g" || exit 1
backup=$(as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast 2>"$T/bb.err")
[ -n "$backup" ] || { cat "$T/bb.err"; exit 1; }
# the backup records pg_database (oid, name, default tablespace)
is "backup.json: the databases of pg_database (oids, names, tablespaces)" \
    "$(q src postgres "select oid || ' ' || datname || ' ' || dattablespace from pg_database order by oid")" \
    "$(jq -r '.databases[] | "\(.oid) \(.name) \(.tablespace)"' "$REPO/backups/$backup/backup.json")"
q src app "insert into a select g, 'a' || g from generate_series(101, 120) g;
           update b set v = 'changed' where id <= 5;
           insert into c values (11, 'c11');
           delete from d where id > 25"
sleep 1.1
T1=$(q src app "select clock_timestamp()")
for t in a b c d; do copy src app $t >"$T/at1.$t"; done
sleep 1.1
q src app "delete from a where id % 2 = 0"     # accident 1
q src app "insert into c values (12, 'c12')"
sleep 1.1
T2=$(q src app "select clock_timestamp()")
for t in a b c; do copy src app $t >"$T/at2.$t"; done
sleep 1.1
q src app "drop table b"                       # accident 2
q src app "insert into c values (13, 'c13')"
q src postgres "alter database x1 rename to x1old" && q src postgres "alter database x2 rename to x1" || exit 1
sleep 1.1
T3=$(q src postgres "select clock_timestamp()")
q src postgres "create table after_t3 ()"   # a commit after T3: recovery needs one
APP_OID=$(q src postgres "select oid from pg_database where datname = 'app'")
OTHER_OID=$(q src postgres "select oid from pg_database where datname = 'other'")
BIG_FILE=$(q src other "select pg_relation_filepath('big')")
BIG_SIZE=$(stat -c %s "$T/src/$BIG_FILE")
LIVE=$(q src app "select (select count(*) from a) || ':' || (select count(*) from c)")
switch_wal src || exit 1
# the live cluster is down from here on: a dump cannot have connected to it
pg_stop src
TS_BEFORE=$(find "$T/ts1" -type f | sort | xargs md5sum)

pg_init dst && pg_start dst || exit 1
mkdir -p "$T/scratch" "$T/out"
dump() { "$PITR" dump --repo "$REPO" "$@"; }
# restore_into DB FILE: a fresh database of dst from a dump (pg_restore as root, who
# owns the dump)
restore_into() {
    q dst postgres "create database $1" &&
    "$PGBIN/pg_restore" --no-tablespaces -h "$T/dst" -p 5432 -U postgres -d "$1" "$2"
}

# --- before accident 1 --------------------------------------------------------------
dump --target-time "$T1" --dbname app --file "$T/out/t1.dump" --scratch "$T/scratch" \
    >"$T/t1.out" 2>"$T/t1.err"
is "dump as of T1 exits 0" 0 "$?" || cat "$T/t1.err"
is "scratch directory removed" "" "$(ls -A "$T/scratch")"
is "no temporary file left beside the dump" "t1.dump" "$(ls -A "$T/out")"
ok "report names table a with its 120 rows" grep -q "table: *public.a: 120 rows" "$T/t1.out"
ok "report names the instant (last replayed commit)" grep -q "as of: *last replayed commit 20" "$T/t1.out"
restore_into r1 "$T/out/t1.dump"
is "pg_restore of the T1 dump exits 0" 0 "$?"
for t in a b c d; do
    ok "T1: table $t holds exactly its rows at T1" cmp -s "$T/at1.$t" <(copy dst r1 $t)
done
is "the live cluster's tablespace directory untouched" "$TS_BEFORE" \
    "$(find "$T/ts1" -type f | sort | xargs md5sum)"

# --- only app's relation files are restored ---------------------------------------------
mkdir -p "$T/keep"
dump --target-time "$T1" --dbname app --table c --file "$T/out/keep.dump" --scratch "$T/keep" \
    --keep-scratch -v >"$T/keep.out" 2>"$T/keep.err"
is "--keep-scratch dump exits 0" 0 "$?" || cat "$T/keep.err"
ok "the database list came from backup.json (no first pass over the base tar)" \
    grep -q "database list: from backup $backup's backup.json" "$T/keep.err"
K=$(ls -d "$T"/keep/ragsafe-dump-*/pgdata)
ok "--keep-scratch: the scratch data directory is kept" test -f "$K/PG_VERSION"
ok "--keep-scratch: its server is stopped" bash -c "test -f '$K/PG_VERSION' && ! pgrep -f '^$PGBIN/postgres -D $T/keep/' >/dev/null"
ok "the other database's table file is there, at its full size ($BIG_SIZE bytes)" \
    test "$(stat -c %s "$K/$BIG_FILE" 2>/dev/null)" = "$BIG_SIZE"
ok "... but hollow: no disk blocks (du $(du -k "$K/$BIG_FILE" | cut -f1) KiB)" \
    test "$(du -k "$K/$BIG_FILE" | cut -f1)" -eq 0
other_kb=$(du -sk "$K/base/$OTHER_OID" | cut -f1)
app_kb=$(du -sk "$K/base/$APP_OID" | cut -f1)
ok "database other takes < 100 KiB on disk ($other_kb KiB), app more ($app_kb KiB)" \
    test "$other_kb" -lt 100 -a "$app_kb" -gt "$other_kb"
ok "the report says the other databases were restored hollow" \
    grep -q "only the relation files of database \"app\" (OID $APP_OID) and postgres; the other databases' hollow" "$T/keep.out"
rm -rf "${T:?}/keep"

# --- a backup without the list (older ones): the first pass over the base tar --------------
cp -a "$REPO" "$T/repo-old"
jq 'del(.databases)' "$REPO/backups/$backup/backup.json" >"$T/repo-old/backups/$backup/backup.json"
ok "the copy's backup.json has no database list" bash -c "jq -e 'has(\"databases\") | not' '$T/repo-old/backups/$backup/backup.json' >/dev/null"
"$PITR" dump --repo "$T/repo-old" --target-time "$T1" --dbname app --table a -v \
    --file "$T/out/old-a.dump" --scratch "$T/scratch" >"$T/old-a.out" 2>"$T/old-a.err"
is "dump of a backup without a database list exits 0" 0 "$?" || cat "$T/old-a.err"
ok "... it read pg_database from the base tar" \
    grep -q "records none: reading its pg_database from the base tar" "$T/old-a.err"
ok "... restored app and postgres only" grep -q "only the relation files of database \"app\" (OID $APP_OID)" "$T/old-a.out"
restore_into r0 "$T/out/old-a.dump"
ok "... table a holds exactly its rows at T1" cmp -s "$T/at1.a" <(copy dst r0 a)
rm -rf "${T:?}/repo-old"

# --- a name that stands for another database at the target than in the backup ----------------
dump --target-time "$T3" --dbname x1 --file "$T/out/x1.dump" --scratch "$T/scratch" -v \
    >"$T/x1.out" 2>"$T/x1.err"
is "dump of x1 (renamed since the backup) exits 0" 0 "$?" || cat "$T/x1.err"
ok "... noticed x1 is another database at the target and restored the whole cluster" \
    grep -q "database \"x1\" is OID [0-9]* at the target, not the backup's" "$T/x1.err"
ok "... the report says the whole cluster" grep -q "restored: *the whole cluster" "$T/x1.out"
restore_into rx "$T/out/x1.dump"
is "... x1's table holds the 7 rows of the database now named x1 (not zero pages)" 7 \
    "$(q dst rx "select count(*) from t")"

# --- before accident 2 --------------------------------------------------------------
dump --target-time "$T2" --dbname app --file "$T/out/t2.dump" --scratch "$T/scratch" --json \
    >"$T/t2.json" 2>"$T/t2.err"
is "dump as of T2 exits 0" 0 "$?" || cat "$T/t2.err"
is "--json: rows of a after the DELETE" 60 "$(jq -r '.tables[] | select(.table == "public.a") | .rows' "$T/t2.json")"
is "--json: the scratch server promoted at the target" promoted "$(jq -r .state "$T/t2.json")"
ok "--json: the instant (last replayed commit) is before T2" bash -c "[ \"\$(date -u -d \"\$(jq -r .last_replay_timestamp '$T/t2.json')\" +%s%6N)\" -le \"\$(date -u -d '$T2' +%s%6N)\" ]"
restore_into r2 "$T/out/t2.dump"
is "pg_restore of the T2 dump exits 0" 0 "$?"
for t in a b c; do
    ok "T2: table $t holds exactly its rows at T2" cmp -s "$T/at2.$t" <(copy dst r2 $t)
done

# --- selections -----------------------------------------------------------------------
lst() { "$PGBIN/pg_restore" -l "$1"; }
dump --target-time "$T2" --dbname app --file "$T/out/s.dump" --schema-only --scratch "$T/scratch" 2>"$T/s.err" >/dev/null
is "--schema-only exits 0" 0 "$?"
ok "--schema-only: table definitions" grep -q "TABLE public b " <(lst "$T/out/s.dump")
ok "--schema-only: no table data" bash -c "test -s '$T/out/s.dump' && ! grep -q 'TABLE DATA' <('$PGBIN/pg_restore' -l '$T/out/s.dump')"
dump --target-time "$T2" --dbname app --file "$T/out/d.dump" --data-only --scratch "$T/scratch" 2>"$T/d.err" >/dev/null
is "--data-only exits 0" 0 "$?"
ok "--data-only: table data" grep -q "TABLE DATA public b " <(lst "$T/out/d.dump")
ok "--data-only: no table definitions" bash -c "test -s '$T/out/d.dump' && ! grep -Eq ' TABLE public [abc] ' <('$PGBIN/pg_restore' -l '$T/out/d.dump')"
dump --target-time "$T1" --dbname app --table a --file "$T/out/a.dump" --scratch "$T/scratch" >"$T/a.out" 2>"$T/a.err"
is "--table a exits 0" 0 "$?"
ok "--table a: a's data" grep -q "TABLE DATA public a " <(lst "$T/out/a.dump")
ok "--table a: not b" bash -c "test -s '$T/out/a.dump' && ! grep -q ' public b ' <('$PGBIN/pg_restore' -l '$T/out/a.dump')"
ok "--table a: the report lists a only" bash -c "grep -q 'public.a' '$T/a.out' && ! grep -q 'public.b' '$T/a.out'"
dump --target-time "$T1" --dbname app --format directory --jobs 2 --file "$T/out/dir" --scratch "$T/scratch" >/dev/null 2>"$T/dir.err"
is "--format directory --jobs 2 exits 0" 0 "$?" || cat "$T/dir.err"
ok "directory format: toc.dat" test -f "$T/out/dir/toc.dat"
restore_into r3 "$T/out/dir"
ok "directory format: table a at T1" cmp -s "$T/at1.a" <(copy dst r3 a)
dump --target-time "$T1" --dbname app --file "$T/out/x.dump" --schema-only --data-only 2>/dev/null
is "--schema-only with --data-only: usage error" 2 "$?"

# --- unreachable target: refused before any scratch work ---------------------------------
dump --target-time "2001-01-01 00:00:00+00" --dbname app --file "$T/out/old.dump" \
    --scratch "$T/scratch" >/dev/null 2>"$T/old.err"
is "unreachable target: exit 1" 1 "$?"
ok "unreachable target: the nearest reachable one named" grep -qi "earliest\|nearest" "$T/old.err"
ok "unreachable target: no scratch directory was made" bash -c "! grep -q 'scratch directory' '$T/old.err'"
is "unreachable target: scratch base empty" "" "$(ls -A "$T/scratch")"
ok "unreachable target: no output" test ! -e "$T/out/old.dump"

# --- SIGTERM midway -------------------------------------------------------------------
# server_on DIR: a postmaster runs on a data directory under DIR (pgrep's pattern is
# anchored: no shell whose command line holds DIR matches)
server_on() { pgrep -f "^$PGBIN/postgres -D $1" >/dev/null; }
mkdir -p "$T/scr2" "$T/out2"
"$PITR" dump --repo "$REPO" --target-time "$T2" --dbname app --file "$T/out2/k.dump" \
    --scratch "$T/scr2" >/dev/null 2>"$T/k.err" &
kpid=$!
for ((i = 0; i < 600; i++)); do
    server_on "$T/scr2/" && break
    sleep 0.1
done
ok "SIGTERM test: the scratch server was running" server_on "$T/scr2/"
kill -TERM "$kpid"
wait "$kpid"
rc=$?
ok "SIGTERM: dump fails" test "$rc" -ne 0
ok "SIGTERM: no scratch server left running" bash -c "! pgrep -f '^$PGBIN/postgres -D $T/scr2/' >/dev/null"
ok "SIGTERM: the dump said why it stopped" grep -q "interrupted by signal 15" "$T/k.err"
is "SIGTERM: no scratch directory left" "" "$(ls -A "$T/scr2")"
is "SIGTERM: no output, partial or not" "" "$(ls -A "$T/out2")"

# --- the live cluster --------------------------------------------------------------------
pg_start src
is "the live cluster's tables unchanged" "$LIVE" \
    "$(q src app "select (select count(*) from a) || ':' || (select count(*) from c)")"
ok "b is still dropped on the live cluster" bash -c "[ \"\$(runuser -u postgres -- '$PGBIN/psql' -XAtq -h '$T/src' -U postgres -d app -c \"select to_regclass('b') is null\")\" = t ]"
t_done
