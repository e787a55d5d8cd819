#!/usr/bin/env bash
# 086_pitr_dump_s3.sh -- ragsafe-pitr dump from a repository in S3 (a local s3rver
# behind the SigV4 verifier): an accident (a DELETE) after the backup; the dump as of
# just before it holds exactly the rows of that instant (compared with a COPY taken on
# the primary then), the scratch server's restore_command reads WAL from S3 with the
# settings of this environment, the database list comes from backup.json, only app's
# relation files are written, and no scratch directory is left.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
BUCKET=ragsafe
s3_start "$BUCKET"
REPO=s3://$BUCKET/prod/pg
q() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$T/$1" -p 5432 -U postgres -d "$2" -c "$3"; }

pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO %p %f'"
pg_start src || exit 1
q src postgres "create database app" && q src postgres "create database other" || exit 1
q src other "create table big as select g as id, md5(g::text) v from generate_series(1, 20000) g" || exit 1
q src app "create table documents (id int primary key, body text);
           insert into documents select g, md5(g::text) from generate_series(1, 200) g" || exit 1
backup=$(as_pg env "RAGSAFE_S3_ENDPOINT=$RAGSAFE_S3_ENDPOINT" "$RAGSAFE_BIN/ragsafe-basebackup" \
    -d "$(pg_conn src)" --repo "$REPO" -c fast 2>"$T/bb.err")
[ -n "$backup" ] || { cat "$T/bb.err"; exit 1; }
q src app "insert into documents select g, 'after' from generate_series(201, 250) g"
sleep 1.1
TM=$(q src app "select clock_timestamp()")
q src app "copy (select * from documents order by id) to stdout" >"$T/at.documents"
sleep 1.1
q src app "delete from documents where id % 3 = 0"    # the accident
APP_OID=$(q src postgres "select oid from pg_database where datname = 'app'")
switch_wal src || exit 1
pg_stop src

mkdir -p "$T/scratch"
"$PITR" dump --repo "$REPO" --target-time "$TM" --dbname app --table documents -v \
    --file "$T/documents.dump" --scratch "$T/scratch" >"$T/d.out" 2>"$T/d.err"
is "dump from the S3 repository exits 0" 0 "$?"
[ -s "$T/documents.dump" ] || sed 's/^/#   /' "$T/d.err"
ok "the report counts the 250 rows before the DELETE" grep -q "table: *public.documents: 250 rows" "$T/d.out"
ok "the database list came from backup.json in S3" \
    grep -q "database list: from backup $backup's backup.json" "$T/d.err"
ok "only app's (OID $APP_OID) and postgres's relation files restored" \
    grep -q "only the relation files of database \"app\" (OID $APP_OID)" "$T/d.out"
ok "the scratch server read WAL from S3 (restore_command checked against the bucket)" \
    grep -q "the restore_command works" "$T/d.err"
is "scratch directory removed" "" "$(ls -A "$T/scratch")"
pg_init dst && pg_start dst || exit 1
q dst postgres "create database r" || exit 1
"$PGBIN/pg_restore" -h "$T/dst" -p 5432 -U postgres -d r "$T/documents.dump"
is "pg_restore exits 0" 0 "$?"
ok "documents holds exactly its rows before the DELETE" cmp -s "$T/at.documents" \
    <(q dst r "copy (select * from documents order by id) to stdout")
s3_all_signed
t_done
