#!/usr/bin/env bash
# 095_chunked_s3.sh -- chunked base backups in an S3 repository (the local test server):
# two backups with pgbench -N between them, the second stores < 40 % of the first's
# bytes, the chunk store is a handful of objects (packs + indexes, random names), the
# backups are committed by backup.json (no .partial, no copies); verify passes; restore
# --jobs 2 from S3 recovers b2's exact state; expire of b1 sweeps nothing b2 needs
# (verify and another restore pass after it).
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
BUCKET=ragsafe
S3_LOG=1 s3_start "$BUCKET"
REPO=s3://$BUCKET/prod/pg
OBJ=$T/s3/$BUCKET/prod/pg
SUM="select md5(string_agg(aid::text || ':' || abalance, ',' order by aid)) from pgbench_accounts"

pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO %p %f'"
pg_start src || exit 1
as_pg pgbench -i -q -s 5 -h "$T/src" -p 5432 -U postgres postgres >/dev/null 2>&1
bb() { as_pg env "RAGSAFE_S3_ENDPOINT=$RAGSAFE_S3_ENDPOINT" "$RAGSAFE_BIN/ragsafe-basebackup" \
       -d "$(pg_conn src)" --repo "$REPO" -c fast --format chunked --no-progress --json "$@"; }
stored() { python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])'; }

B1=$(bb --label b1 2>"$T/bb1.err" | stored)
ok "chunked backup b1 into S3" [ -n "$B1" ]
as_pg pgbench -n -N -t 200 -h "$T/src" -p 5432 -U postgres postgres >/dev/null 2>&1
B2=$(bb --label b2 2>"$T/bb2.err" | stored)
ok "chunked backup b2 into S3" [ -n "$B2" ]
S2=$(pg_sql src "$SUM"); L2=$(pg_sql src "select pg_current_wal_lsn()")
pg_sql src "create table later (id int)"; switch_wal src || exit 1
echo "# stored bytes: b1 $B1, b2 $B2"
ok "b2 stores < 40 % of b1's bytes" [ "$((B2 * 100))" -lt "$((B1 * 40))" ]
N=$(ls "$OBJ/chunks" | grep -c '_S3rver_object$')
echo "# objects under chunks/: $N"
ok "the chunk store is a handful of objects (packs + indexes)" bash -c "[ $N -ge 2 ] && [ $N -le 8 ]"
ok "chunk object names are random ids" bash -c \
    "ls '$OBJ/chunks' | grep '_S3rver_object\$' | grep -Eqv '^[0-9a-f]{32}\.(pack|idx)\._S3rver_object\$' && exit 1; exit 0"
is "no .partial name, no copy" "0" "$(grep -ac 'partial/\|x-amz-copy-source' "$T/s3rver.log")"
"$PITR" verify --repo "$REPO" >"$T/v.out" 2>&1
is "verify of the S3 repository exits 0" 0 "$?"
restore() {
    "$PITR" restore --repo "$REPO" --pgdata "$T/$1" --target-lsn "$L2" --jobs 2 \
        --set "unix_socket_directories=$T/$1" >"$T/$1.out" 2>"$T/$1.err"
}
boot_sum() {
    pg_start "$1" >/dev/null && pg_wait_for "$1" "select pg_is_in_recovery()" f 120 \
        && pg_sql "$1" "$SUM"; pg_stop "$1" >/dev/null 2>&1
}
restore r1
is "restore --jobs 2 from S3 exits 0" 0 "$?"
is "b2 restored from S3 holds its exact state" "$S2" "$(boot_sum r1)"
"$PITR" expire --repo "$REPO" --keep-window 0 --keep-backups 0 --min-backups 1 >"$T/exp.out" 2>&1
is "expire of b1 exits 0" 0 "$?"
"$PITR" verify --repo "$REPO" >"$T/v2.out" 2>&1
is "verify after expire exits 0" 0 "$?"
restore r2
is "b2 restores after b1 expired" "$S2" "$(boot_sum r2)"
t_done
