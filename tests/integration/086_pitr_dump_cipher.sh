#!/usr/bin/env bash
# 086_pitr_dump_cipher.sh -- ragsafe-pitr dump from an encrypted repository: the scratch
# server's restore_command carries the key file; the dump as of T holds exactly the
# rows at T; with another key it is refused and leaves no scratch directory.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
R=$T/repo
KEY=$T/key
install -d -o postgres -g postgres -m 0750 "$R" || exit 1
openssl rand -hex 32 >"$KEY"
openssl rand -hex 32 >"$T/wrong"
chown postgres: "$KEY" "$T/wrong"
chmod 0600 "$KEY" "$T/wrong"
q() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$T/$1" -p 5432 -U postgres -d "$2" -c "$3"; }

pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $R --cipher-key-file $KEY %p %f'"
pg_start src || exit 1
q src postgres "create database app" || exit 1
q src app "create table t (id int primary key, v text);
           insert into t select g, md5(g::text) from generate_series(1, 100) g" || exit 1
as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$R" --cipher-key-file "$KEY" \
    -c fast >/dev/null 2>"$T/bb.err" || { cat "$T/bb.err"; exit 1; }
q src app "insert into t select g, 'after' from generate_series(101, 150) g"
sleep 1.1
TM=$(q src app "select clock_timestamp()")
q src app "copy (select * from t order by id) to stdout" >"$T/at.t"
sleep 1.1
q src app "delete from t where id > 10"
switch_wal src || exit 1
pg_stop src

mkdir -p "$T/scratch"
"$PITR" dump --repo "$R" --cipher-key-file "$T/wrong" --target-time "$TM" --dbname app \
    --file "$T/w.dump" --scratch "$T/scratch" >/dev/null 2>"$T/w.err"
ok "another key: refused" test "$?" -ne 0
is "another key: no scratch directory" "" "$(ls -A "$T/scratch")"
ok "another key: no output" test ! -e "$T/w.dump"

"$PITR" dump --repo "$R" --cipher-key-file "$KEY" --target-time "$TM" --dbname app \
    --file "$T/t.dump" --scratch "$T/scratch" >"$T/t.out" 2>"$T/t.err"
is "dump from the encrypted repository exits 0" 0 "$?" || cat "$T/t.err"
ok "the report counts 150 rows of t" grep -q "table: *public.t: 150 rows" "$T/t.out"
is "scratch directory removed" "" "$(ls -A "$T/scratch")"
pg_init dst && pg_start dst || exit 1
q dst postgres "create database r" || exit 1
"$PGBIN/pg_restore" -h "$T/dst" -p 5432 -U postgres -d r "$T/t.dump"
is "pg_restore exits 0" 0 "$?"
ok "the table holds exactly its rows at T" cmp -s "$T/at.t" \
    <(q dst r "copy (select * from t order by id) to stdout")

# --target-latest: everything archived (the DELETE included); the scratch copy promotes
"$PITR" dump --repo "$R" --cipher-key-file "$KEY" --target-latest --dbname app \
    --file "$T/l.dump" --scratch "$T/scratch" >"$T/l.out" 2>"$T/l.err"
is "dump --target-latest exits 0" 0 "$?" || cat "$T/l.err"
ok "--target-latest: 10 rows (after the DELETE)" grep -q "table: *public.t: 10 rows" "$T/l.out"

# the cron installer's optional daily dump
"$RAGSAFE_SRC/scripts/install-cron.sh" --repo "$R" --pgconn "host=/nowhere" --bin "$RAGSAFE_BIN" \
    --dump-db app --dump-dir /var/backups/dumps --dry-run >"$T/cron.out" 2>/dev/null
ok "install-cron --dump-db: a daily dump-app entry, --target-latest into DIR/app.dump" \
    grep -q "^30 4 \* \* \* .* dump-app .*'dump' '--repo' '$R' '--target-latest' '--dbname' 'app' '--file' '/var/backups/dumps/app.dump'" "$T/cron.out"
t_done
