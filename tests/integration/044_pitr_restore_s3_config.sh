#!/usr/bin/env bash
# 044_pitr_restore_s3_config.sh -- an S3 repository configured only through a config file
# (repo, endpoint and credentials in --config FILE; nothing in the environment): the
# archive_command, the base backup and ragsafe-pitr restore all read that file, and the
# restore_command pitr restore writes carries --config, so a restore with --start
# reaches its target (without it recovery would stop with "no S3 credentials").
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
S3_NO_ENV=1 s3_start ragsafe
unset RAGSAFE_S3_ENDPOINT AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY RAGSAFE_REPO RAGSAFE_CONFIG
CONF=$T/ragsafe.conf
cat >"$CONF" <<CONF
repo = s3://ragsafe/prod/pg
s3-endpoint = http://127.0.0.1:$S3PORT
s3-key = S3RVER
s3-key-secret = S3RVER
CONF
# root runs pitr restore, postgres the archive and restore commands: owned by root,
# readable by the postgres group (a config others can write is refused: it holds commands)
chown root:postgres "$CONF"; chmod 0640 "$CONF"

pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --config $CONF %p %f'"
pg_start src || exit 1
state() { pg_sql "$1" "select count(*) || ':' || coalesce(sum(id), 0) from t"; }
pg_sql src "create table t (id int primary key, v text)" || exit 1
pg_sql src "insert into t select g, md5(g::text) from generate_series(1, 100) g"
ok "base backup into S3 with only --config" \
    as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --config "$CONF" -c fast --label b1
pg_sql src "insert into t values (1001, 'after the backup')"
LSN=$(pg_sql src "select pg_current_wal_lsn()")
C1=$(state src)
pg_sql src "insert into t values (1002, 'after the target')"
switch_wal src || exit 1

T_CLUSTERS+=(r)
"$PITR" restore --config "$CONF" --pgdata "$T/r" --target-lsn "$LSN" --start --port 5433 \
    --set "unix_socket_directories=$T/r" >"$T/r.out" 2>"$T/r.err"
rc=$?
is "restore --config (S3) --start: exit 0" 0 "$rc"
[ "$rc" = 0 ] || sed 's/^/#   /' "$T/r.err" | tail -8
ok "the restore_command carries --config" grep -q "^restore_command = .*--config ''$CONF''" "$T/r/postgresql.auto.conf"
ok "... and no credentials" bash -c "! grep -q S3RVER '$T/r/postgresql.auto.conf'"
is "recovered to the target from S3" "$C1" \
    "$(as_pg "$PGBIN/psql" -XAtq -h "$T/r" -p 5433 -U postgres -d postgres -c "select count(*) || ':' || coalesce(sum(id), 0) from t")"
as_pg "$PGBIN/pg_ctl" -D "$T/r" -m fast -w stop >/dev/null 2>&1
t_done
