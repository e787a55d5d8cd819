#!/usr/bin/env bash
# 081_pitr_check_s3.sh -- ragsafe-pitr check with the repository in S3 (a local s3rver):
# a healthy cluster archiving into s3://BUCKET/prod/pg (a base backup, a verify run) is
# all ok, exit 0: free_space is n/a, the forced switch is found and read back through
# S3, archive_command's s3:// location matches (also written with a trailing slash).
# An archive_command into another prefix of the same bucket is FAILED with its hint, and
# so is the switch (within --switch-timeout), exit 2.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
BUCKET=ragsafe
s3_start "$BUCKET"
REPO=s3://$BUCKET/prod/pg

pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_timeout = 60"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO/ %p %f'"
pg_start src || exit 1
switch_wal src || exit 1
as_pg env "RAGSAFE_S3_ENDPOINT=$RAGSAFE_S3_ENDPOINT" "$RAGSAFE_BIN/ragsafe-basebackup" \
    -d "$(pg_conn src)" --repo "$REPO" -c fast >/dev/null 2>"$T/bb.err" || { cat "$T/bb.err"; exit 1; }
"$PITR" verify --repo "$REPO" >/dev/null 2>&1 || { fail "verify before check"; exit 1; }

GOOD=(--min-free 1M --rpo 1h --max-backup-age 1h --switch-timeout 30)
check() {
    OUT=$("$PITR" check --repo "$REPO" -d "$(pg_conn src)" "$@" 2>"$T/check.err")
    RC=$?
}
show() { sed 's/^/#   /' <<<"$OUT"; sed 's/^/#   err: /' "$T/check.err"; }

check "${GOOD[@]}"
is "healthy: exit 0" 0 "$RC"
is "healthy: 19 ok" "19 ok, 0 warnings, 0 failed" "$(tail -1 <<<"$OUT")"
ok "healthy: free_space n/a" grep -q "^  free_space: ok (n/a: an S3 repository)" <<<"$OUT"
ok "healthy: archive_command into this repository (trailing slash)" grep -q "^  archive_command: ok (.*/ragsafe-archive into $REPO/)" <<<"$OUT"
ok "healthy: the switched segment read back from S3" grep -q "^  wal_switch: ok (segment .* archived and read back intact" <<<"$OUT"
[ "$RC" = 0 ] || show

pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo s3://$BUCKET/other %p %f'"
pg_sql src "select pg_reload_conf()" >/dev/null
check "${GOOD[@]}" --switch-timeout 5
is "elsewhere: exit 2" 2 "$RC"
ok "elsewhere: archive_command FAILED" grep -q "^  archive_command: FAILED (it archives into \"s3://$BUCKET/other\", not into this repository \"$REPO\")" <<<"$OUT"
hint=$(grep -A1 "^  archive_command: FAILED" <<<"$OUT" | sed -n 2p)
ok "elsewhere: its hint" grep -q "^    hint: archive_command = '.*/ragsafe-archive --repo $REPO %p %f'" <<<"$hint"
ok "elsewhere: wal_switch FAILED" grep -q "^  wal_switch: FAILED (segment .* was not archived into this repository within 5 s)" <<<"$OUT"
[ "$RC" = 2 ] || show
s3_all_signed
t_done
