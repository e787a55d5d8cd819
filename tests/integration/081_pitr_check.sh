#!/usr/bin/env bash
# 081_pitr_check.sh -- ragsafe-pitr check against a real PostgreSQL 15 cluster.
#
# The repository is a small tmpfs (32 MiB, mode 0750, owned by postgres). A healthy
# cluster (archiving into it, archive_timeout 60, a fresh base backup, a verify run):
# every check ok, exit 0, the same in --json. Then broken settings, two at a time, each
# reported FAILED with its hint on the line after it, every other check still run,
# exit 2: archive_mode off with a stale backup (--max-backup-age 1s) and a stale Milvus
# snapshot (--max-milvus-age 1s; a cold snapshot of synthetic volumes); archive_command
# into another repository with a role that lacks REPLICATION (user=norep); a failing
# archive_command (a repository directory that does not exist: pg_stat_archiver shows
# the failures, the forced switch is not archived within --switch-timeout) with the
# nearly full repository (--min-free 100M on the 32 MiB tmpfs). The repository's
# ownership and modes: an entry owned by root, a group-writable folder, the root not
# owned by the server's user (FAILED), others may read it (a warning). A repository
# never verified is a warning alone: exit 1. An archive_command through a config file
# naming the repository is ok; a relative ragsafe-archive is FAILED. A server that is
# not there: FAILED, the repository checks still run. A usage error: exit 2.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
mkdir -p "$REPO"
mount -t tmpfs -o size=32m,mode=0750 tmpfs "$REPO" || t_skip "cannot mount a tmpfs (not root?)"
t_on_exit "umount '$REPO'"
chown postgres: "$REPO"
pg_archiving src "$REPO" || exit 1
pg_set src "archive_timeout = 60"
pg_sql src "select pg_reload_conf()" >/dev/null
pg_sql src "create table t (id int primary key); insert into t select generate_series(1, 1000)"
switch_wal src || exit 1
as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast >/dev/null 2>"$T/bb.err" ||
    { cat "$T/bb.err"; exit 1; }
as_pg "$PITR" verify --repo "$REPO" >/dev/null 2>&1 || { fail "verify before check"; exit 1; }

GOOD=(--min-free 1M --rpo 1h --max-backup-age 1h --switch-timeout 30)
ALL="server system_identifier archive_mode wal_level archive_command archive_timeout archiver
wal_switch replication max_wal_senders replication_slots repository cipher_key free_space
backup_age wal_age last_verify milvus_age receiver"
# check ARGS...: ragsafe-pitr check as postgres; stdout in OUT, stderr in ERR, status in RC
check() {
    OUT=$(as_pg "$PITR" check --repo "$REPO" "$@" 2>"$T/check.err")
    RC=$?
    ERR=$(cat "$T/check.err")
}
# line NAME: the check's line; hint_of NAME: the line right after it
line() { grep "^  $1: " <<<"$OUT"; }
hint_of() { grep -A1 "^  $1: " <<<"$OUT" | sed -n 2p; }
show() { sed 's/^/#   /' <<<"$OUT"; sed 's/^/#   err: /' <<<"$ERR"; }
# failed NAME DETAIL HINT: NAME's line is FAILED with DETAIL, the next line the HINT
failed() {
    ok "$CASE: $1 FAILED ($2)" grep -q "^  $1: FAILED (.*$2" <<<"$(line "$1")"
    ok "$CASE: $1's hint: $3" grep -q "^    hint: .*$3" <<<"$(hint_of "$1")"
}
# only_failed NAMES: exactly these checks FAILED (the others ran and said ok or WARNING)
only_failed() {
    local got
    got=$(grep -o '^  [a-z_]*: FAILED' <<<"$OUT" | cut -d: -f1 | tr -d ' ' | paste -sd' ')
    is "$CASE: the failed checks" "$1" "$got"
    [ "$got" = "$1" ] || show
    is "$CASE: every check reported" 19 "$(grep -cE '^  [a-z_]+: (ok|WARNING|FAILED)' <<<"$OUT")"
}

# --- healthy -------------------------------------------------------------------------
CASE=healthy
check -d "$(pg_conn src)" "${GOOD[@]}"
is "healthy: exit 0" 0 "$RC"
for n in $ALL; do
    ok "healthy: $n ok" grep -q "^  $n: ok" <<<"$(line "$n")"
done
ok "healthy: the summary" grep -q "^19 ok, 0 warnings, 0 failed$" <<<"$OUT"
ok "healthy: no hint line" bash -c '! grep -q "hint:" <<<"$1"' _ "$OUT"
ok "healthy: the switched segment was archived and read back" grep -q "wal_switch: ok (segment 0000000100000000000000.. archived and read back intact" <<<"$OUT"
ok "healthy: archive_command names this repository" grep -q "archive_command: ok (.*/ragsafe-archive into $REPO" <<<"$OUT"
[ "$RC" = 0 ] || show
JSON=$(as_pg "$PITR" check --repo "$REPO" -d "$(pg_conn src)" "${GOOD[@]}" --json 2>/dev/null)
is "healthy --json: exit 0" 0 "$?"
is "healthy --json: 19 checks" 19 "$(jq -r length <<<"$JSON")"
is "healthy --json: all ok" ok "$(jq -r 'map(.status) | unique | join(",")' <<<"$JSON")"
is "healthy --json: names, in order" "$(echo $ALL)" "$(jq -r 'map(.name) | join(" ")' <<<"$JSON")"
is "healthy --json: keys" "detail,hint,name,status" "$(jq -r '.[0] | keys | join(",")' <<<"$JSON")"

# --- a Milvus snapshot in the repository (cold, synthetic volumes) -----------------------
for v in etcd minio milvus; do as_pg mkdir -p "$T/mv/$v"; as_pg sh -c "echo $v >'$T/mv/$v/f'"; done
as_pg "$RAGSAFE_BIN/ragsafe-milvus" snapshot --repo "$REPO" --volume "etcd=$T/mv/etcd" \
    --volume "minio=$T/mv/minio" --volume "milvus=$T/mv/milvus" --label m1 --assume-stopped >/dev/null
CASE="milvus snapshot"
check -d "$(pg_conn src)" "${GOOD[@]}"
is "$CASE: exit 0" 0 "$RC"
ok "$CASE: milvus_age ok, the snapshot named" grep -q "^  milvus_age: ok (m1, started [0-9]* s ago; objective 30.0 h)" <<<"$OUT"

# --- the repository's ownership and modes -----------------------------------------------
CASE="root-owned entry"
touch "$REPO/stray"
check -d "$(pg_conn src)" "${GOOD[@]}"
is "$CASE: exit 2" 2 "$RC"
failed repository "1 entry not owned by postgres, the repository's owner, e.g. \"$REPO/stray\" (root)" "chown -R postgres: $REPO"
only_failed "repository"
rm "$REPO/stray"
CASE="group-writable"
chmod 0770 "$REPO/backups"
check -d "$(pg_conn src)" "${GOOD[@]}"
is "$CASE: exit 2" 2 "$RC"
failed repository "\"$REPO/backups\" is writable by its group (mode 0770)" "chmod -R go-w $REPO"
chmod 0750 "$REPO/backups"
CASE="root owns the root"
chown root:postgres "$REPO"   # (postgres can still read it)
check -d "$(pg_conn src)" "${GOOD[@]}"
failed repository "\"$REPO\" is owned by root, the server runs as postgres" "chown -R postgres: $REPO"
chown postgres: "$REPO"
CASE="others can read"
chmod 0755 "$REPO"
check -d "$(pg_conn src)" "${GOOD[@]}"
is "$CASE: exit 1 (a warning)" 1 "$RC"
ok "$CASE: repository WARNING" grep -q "^  repository: WARNING (others can read \"$REPO\" (mode 0755), and it is not encrypted" <<<"$OUT"
chmod 0750 "$REPO"

# --- warning only: never verified -------------------------------------------------------
mv "$REPO/status/verify.json" "$T/verify.json"
CASE=unverified
check -d "$(pg_conn src)" "${GOOD[@]}"
is "unverified: exit 1 (a warning)" 1 "$RC"
ok "unverified: last_verify WARNING (never verified)" grep -q "^  last_verify: WARNING (never verified)" <<<"$OUT"
ok "unverified: its hint" grep -q "^    hint: run .*/ragsafe-pitr verify --repo $REPO" <<<"$(hint_of last_verify)"
only_failed ""
ok "unverified: stderr says so" grep -q "ragsafe-pitr: warning: check: 1 warning: last_verify" <<<"$ERR"
mv "$T/verify.json" "$REPO/status/verify.json"

# --- archive_mode off and a stale backup ---------------------------------------------
pg_stop src
pg_set src "archive_mode = off"
pg_start src
sleep 2
CASE="archive_mode off + stale backup"
check -d "$(pg_conn src)" --min-free 1M --rpo 1h --max-backup-age 1s --max-milvus-age 1s --switch-timeout 30
is "$CASE: exit 2" 2 "$RC"
failed archive_mode "archive_mode is off" "set archive_mode = on and archive_command = '.*/ragsafe-archive --repo $REPO %p %f' in postgresql.conf, then restart"
failed backup_age "ended .* ago .*, over the objective of 1 s" "take a base backup now"
failed wal_switch "not tried: the server archives nothing" "fix archive_mode"
failed milvus_age "the newest Milvus snapshot, m1, started .* ago, over the objective of 1 s" "take a snapshot (ragsafe-milvus snapshot)"
only_failed "archive_mode wal_switch backup_age milvus_age"
ok "$CASE: the summary names them" grep -q "^15 ok, 0 warnings, 4 failed (archive_mode, wal_switch, backup_age, milvus_age)$" <<<"$OUT"
ok "$CASE: one error line on stderr for the job wrapper" grep -q "^ragsafe-pitr: error: check: 4 failed: archive_mode, wal_switch, backup_age, milvus_age$" <<<"$ERR"
JSON=$(as_pg "$PITR" check --repo "$REPO" -d "$(pg_conn src)" --min-free 1M --rpo 1h --max-backup-age 1s --max-milvus-age 1s --switch-timeout 30 --json 2>/dev/null)
is "$CASE --json: exit 2" 2 "$?"
is "$CASE --json: failed entries" "archive_mode,wal_switch,backup_age,milvus_age" "$(jq -r 'map(select(.status == "failed") | .name) | join(",")' <<<"$JSON")"
ok "$CASE --json: a failed entry's hint" grep -q "set archive_mode = on" <<<"$(jq -r '.[] | select(.name == "archive_mode") | .hint' <<<"$JSON")"
is "$CASE --json: an ok entry's hint is null" null "$(jq -r '.[] | select(.name == "wal_level") | .hint' <<<"$JSON")"
pg_stop src
pg_set src "archive_mode = on"
pg_start src

# --- archive_command into another repository, and a role without REPLICATION ----------
OTHER=$T/other
as_pg mkdir -m 0750 "$OTHER"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $OTHER %p %f'"
pg_sql src "select pg_reload_conf()" >/dev/null
pg_sql src "create role norep login; grant pg_monitor to norep; grant execute on function pg_switch_wal() to norep"
CASE="archive_command elsewhere + no replication"
check -d "host=$T/src port=5432 user=norep dbname=postgres" "${GOOD[@]}" --switch-timeout 5
is "$CASE: exit 2" 2 "$RC"
failed archive_command "it archives into \"$OTHER\", not into this repository \"$REPO\"" "archive_command = '.*/ragsafe-archive --repo $REPO %p %f', then SELECT pg_reload_conf()"
failed replication "role norep has neither REPLICATION nor SUPERUSER" "ALTER ROLE norep REPLICATION"
failed wal_switch "was not archived into this repository within 5 s" "archive_command"
only_failed "archive_command wal_switch replication"
[ "$RC" = 2 ] || show
ok "$CASE: the segment went to the other repository" test -n "$(find "$OTHER/wal" -name '*.zst' 2>/dev/null | head -1)"
# the same check through a config file that names the repository (archive_command --config)
printf 'repo = %s\n' "$REPO" >"$T/ragsafe.conf"
chmod 0644 "$T/ragsafe.conf"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --config $T/ragsafe.conf %p %f'"
pg_sql src "select pg_reload_conf()" >/dev/null
CASE="archive_command --config"
check -d "$(pg_conn src)" "${GOOD[@]}"
is "$CASE: exit 0" 0 "$RC"
ok "$CASE: archive_command ok, through the config file" grep -q "^  archive_command: ok (.* into $REPO (from \"$T/ragsafe.conf\"))" <<<"$OUT"
[ "$RC" = 0 ] || show
# --- a failing archive_command, and a nearly full repository -----------------------------
# (a repository below a regular file: no mkdir -p can make it)
as_pg touch "$T/notadir"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $T/notadir/repo %p %f'"
pg_sql src "select pg_reload_conf()" >/dev/null
CASE="failing archive_command + nearly full"
check -d "$(pg_conn src)" --min-free 100M --rpo 1h --max-backup-age 1h --switch-timeout 5
is "$CASE: exit 2" 2 "$RC"
failed archive_command "it names the repository \"$T/notadir/repo\", which cannot be reached (Not a directory)" "archive_command = '"
failed archiver "archiving is failing: [0-9]* failures, the last for 0000000100000000000000.. at " "server log"
failed wal_switch "was not archived into this repository within 5 s" "archive_command"
failed free_space "free on \"$REPO\", below the minimum of 100.0 MiB" "free space on the repository's file system"
only_failed "archive_command archiver wal_switch free_space"
[ "$RC" = 2 ] || show
ok "$CASE: the archiver really failed (pg_stat_archiver)" test "$(pg_sql src "select failed_count > 0 from pg_stat_archiver")" = t

# a relative ragsafe-archive (last: sh answers 127, the archiver exits and is restarted)
pg_set src "archive_command = 'ragsafe-archive --repo $REPO %p %f'"
pg_sql src "select pg_reload_conf()" >/dev/null
CASE="relative executable"
check -d "$(pg_conn src)" "${GOOD[@]}" --switch-timeout 3
failed archive_command "runs \"ragsafe-archive\" by a relative name" "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO"

# back to healthy: the archiver catches up, everything ok again
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO %p %f'"
pg_sql src "select pg_reload_conf()" >/dev/null
switch_wal src
CASE="repaired"
check -d "$(pg_conn src)" "${GOOD[@]}"
is "$CASE: exit 0" 0 "$RC"
ok "$CASE: archiver ok, with the earlier failures counted" grep -q "^  archiver: ok (.* earlier failures" <<<"$OUT"
[ "$RC" = 0 ] || show

# a server that is not there: every server check FAILED, the repository ones still run
CASE="no server"
check -d "host=$T/nowhere port=5432 user=postgres" "${GOOD[@]}"
is "$CASE: exit 2" 2 "$RC"
failed server "could not connect" "is the server running"
ok "$CASE: backup_age still checked" grep -q "^  backup_age: ok" <<<"$OUT"
ok "$CASE: archive_mode not checked" grep -q "^  archive_mode: FAILED (not checked: no connection" <<<"$OUT"

# usage
exit_is "usage: a bad --min-free is exit 2" 2 as_pg "$PITR" check --repo "$REPO" --min-free lots
t_done
