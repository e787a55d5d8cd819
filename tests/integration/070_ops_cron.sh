#!/usr/bin/env bash
# ragsafe-test: serial (an assertion measures time: runs alone, see tests/run.sh)
# 070_ops_cron.sh -- scripts/install-cron.sh into a temp crontab file: --dry-run changes
# nothing, the real install writes the runbook's schedule in one marked block, keeps
# foreign lines, is idempotent and replaces its block in place; the installed entries
# run as cron would run them (sh -c, % unescaped) through ragsafe-job.sh: a real base
# backup leaves an "ok" status line, a failing job a "failed" line and a notification,
# the daily ragsafe-pitr check with a FAILED check (a stale backup) fails its job, names
# the check in the status line and notifies, and a run that finds the previous one
# still going (flock) does not overlap. Secrets
# stay out of the logs: a password in the connection string (trust auth ignores it)
# or printed by a failing job is masked in the log, the status line and the
# notification, the stop/start commands are not logged, and logs are created 0600.
source "$(dirname "$0")/lib.sh"
t_init

B=$RAGSAFE_BIN
S=$RAGSAFE_SRC/scripts
REPO=$T/repo
CT=$T/crontab
ST=$T/status
as_pg mkdir -p "$REPO"
pg_init primary
pg_set primary "wal_level = replica"
pg_set primary "archive_mode = on"
pg_set primary "archive_command = '$B/ragsafe-archive --repo $REPO %p %f'"
pg_start primary
CONN="$(pg_conn primary) password=hunter2 application_name=cron%job"
"$B/ragsafe-files" keygen "$T/key"
mkdir -p "$T/platform/logs"; echo "A=1" >"$T/platform/.env"; echo log >"$T/platform/logs/app.log"

printf 'MAILTO=ops@example.com\n15 * * * * /usr/bin/true # someone else\n' >"$CT"
orig=$(cat "$CT")
ARGS=(--repo "$REPO" --pgconn "$CONN" --bin "$B" --status-dir "$ST" --crontab "$CT"
    --milvus-volume etcd=/srv/milvus/volumes/etcd --milvus-volume minio=/srv/milvus/volumes/minio
    --milvus-stop-cmd "docker compose stop -t 300 standalone minio etcd"
    --milvus-start-cmd "docker compose start etcd minio standalone"
    --config-path .env --log-path logs --files-base "$T/platform" --key-file "$T/key"
    --notify-cmd "echo \"\$1: \$2\" >>$T/notified"
    --check-args "--min-free 1M --switch-timeout 30 --max-backup-age 1s")

dry=$("$S/install-cron.sh" "${ARGS[@]}" --dry-run)
is "dry run: exit 0" 0 $?
is "dry run: crontab unchanged" "$orig" "$(cat "$CT")"
ok "dry run: prints the block" grep -q "^# BEGIN ragsafe" <<<"$dry"
ok "dry run: no status dir created" test ! -e "$ST"

out=$("$S/install-cron.sh" "${ARGS[@]}")
is "install: exit 0" 0 $?
ct=$(cat "$CT")
is "install: foreign lines kept" "$orig" "$(sed -n 1,2p "$CT")"
is "install: printed exactly the installed block" "$(sed -n '/^# BEGIN ragsafe/,/^# END ragsafe/p' "$CT")" \
    "$(sed -n '/^# BEGIN ragsafe/,/^# END ragsafe/p' <<<"$out")"
is "dry run printed the same block" "$(sed -n '/^# BEGIN ragsafe/,/^# END ragsafe/p' <<<"$dry")" \
    "$(sed -n '/^# BEGIN ragsafe/,/^# END ragsafe/p' <<<"$out")"
sched() { grep -E "^$1 .*ragsafe-job.sh' .* $2 '" "$CT" | head -1; }
ok "config snapshot daily 01:00" test -n "$(sched '0 1 \* \* \*' config)"
ok "base backup every 6 hours from 02:00" test -n "$(sched '0 2,8,14,20 \* \* \*' basebackup)"
ok "milvus snapshot daily 03:00" test -n "$(sched '0 3 \* \* \*' milvus-snapshot)"
ok "logs weekly (Sunday)" test -n "$(sched '0 4 \* \* 0' logs)"
ok "expire 05:00" test -n "$(sched '0 5 \* \* \*' expire-pg)"
ok "expire keeps 7 days of PITR and 30 daily backups" grep -q "'expire' '--repo' '$REPO' '--keep-window' '7d' '--keep-daily' '30'$" <<<"$(sched '0 5 \* \* \*' expire-pg)"
ok "verify daily" test -n "$(sched '0 6 \* \* \*' verify-pg)"
ok "restore drill monthly" test -n "$(sched '0 7 1 \* \*' restore-drill)"
ok "check daily 07:30, with --check-args" grep -q "ragsafe-pitr' 'check' '--repo' '$REPO' '-d' .* '--max-backup-age' '1s'" <<<"$(sched '30 7 \* \* \*' check)"
ok "milvus entry has the stop and start commands" grep -q "'docker compose stop -t 300 standalone minio etcd'.*'docker compose start etcd minio standalone'" <<<"$(sched '0 3 \* \* \*' milvus-snapshot)"
ok "% escaped for cron" grep -q 'application_name=cron\\%job' "$CT"
ok "every entry goes through ragsafe-job.sh" bash -c "! grep -E '^[0-9]' '$CT' | grep -v '/usr/bin/true' | grep -vq 'ragsafe-job.sh'"
is "thirteen entries" 13 "$(grep -c "ragsafe-job.sh" "$CT")"

"$S/install-cron.sh" "${ARGS[@]}" >/dev/null
is "idempotent: same file after a second install" "$ct" "$(cat "$CT")"
is "one block" 1 "$(grep -c '^# BEGIN ragsafe' "$CT")"
"$S/install-cron.sh" "${ARGS[@]}" --files-keep-last 9 >/dev/null
is "reinstall with other options: still one block" 1 "$(grep -c '^# BEGIN ragsafe' "$CT")"
ok "reinstall: block replaced" grep -q "'--prefix' 'config-' '--keep-last' '9'" "$CT"
is "reinstall: foreign lines kept" "$orig" "$(sed -n 1,2p "$CT")"

# run entries as cron does: the command after the five time fields, % unescaped, sh -c,
# as the postgres user (the crontab's owner: archive_command writes the same repository)
chown postgres: "$T/key"
mkdir -p "$ST"; chown postgres: "$ST"
run_entry() { local c; c=$(sched "$1" "$2" | cut -d' ' -f6- | sed 's/\\%/%/g'); as_pg sh -c "$c"; }
exit_is "basebackup entry runs" 0 run_entry '0 2,8,14,20 \* \* \*' basebackup
read -r job ts res secs msg <"$ST/basebackup.status"
is "status: job name" basebackup "$job"
is "status: ok" ok "$res"
ok "status: unix time now" test $(( $(date +%s) - ts )) -lt 60
ok "status: duration in seconds" grep -Eq '^[0-9]+$' <<<"$secs"
is "status: message is the backup label" "$(ls "$REPO/backups")" "$msg"
exit_is "config entry runs" 0 run_entry '0 1 \* \* \*' config
is "config: status ok" ok "$(cut -d' ' -f3 "$ST/config.status")"
exit_is "logs entry runs" 0 run_entry '0 4 \* \* 0' logs
exit_is "verify-files entry runs" 0 run_entry '45 6 \* \* \*' verify-files
is "config and logs snapshots, labelled by job" "config-,logs-" \
    "$("$B/ragsafe-files" list --repo "$REPO" --key-file "$T/key" | cut -c1-7 | sed 's/[0-9].*//' | sort | paste -sd,)"
exit_is "expire-config entry runs" 0 run_entry '30 5 \* \* \*' expire-config
exit_is "expire-logs entry runs" 0 run_entry '35 5 \* \* \*' expire-logs
ok "no notification after successes" test ! -e "$T/notified"

# a failing job: status failed, notify called with the job name and the message
chmod 0644 "$T/key"
run_entry '45 6 \* \* \*' verify-files 2>/dev/null
ok "failing job: non-zero" test $? -ne 0
is "failing job: status failed" failed "$(cut -d' ' -f3 "$ST/verify-files.status")"
cat "$ST/verify-files.status" "$T/notified" | sed "s/^/#   /"
ok "failing job: message carries the error" grep -q "must be 0600" "$ST/verify-files.status"
ok "failing job: notified with job and message" grep -q "^verify-files: exit status 2: .*must be 0600" "$T/notified"
chmod 0600 "$T/key"

# no overlap: while the lock is held, a run fails fast and says so
as_pg flock "$ST/verify-pg.lock" sleep 5 &
sleep 0.5
start=$(date +%s)
run_entry '0 6 \* \* \*' verify-pg 2>/dev/null
rc=$?
ok "overlapping run refused" test "$rc" -ne 0
ok "overlapping run did not wait" test $(( $(date +%s) - start )) -lt 4
ok "overlap: status says so" grep -q "failed .*previous run still running" "$ST/verify-pg.status"
ok "overlap: notified" grep -q "^verify-pg: previous run still running" "$T/notified"
wait
exit_is "after the lock is free it runs" 0 run_entry '0 6 \* \* \*' verify-pg
is "verify-pg: status ok" ok "$(cut -d' ' -f3 "$ST/verify-pg.status")"

# the daily check: a FAILED check (the backup is older than --max-backup-age 1s) makes
# the job fail, names the check in the status line, and fires the notify command
rm -f "$T/notified"
sleep 1
exit_is "check entry: exit 2 (a check FAILED)" 2 run_entry '30 7 \* \* \*' check 2>/dev/null
ok "check: the log has the report" grep -q "^  backup_age: FAILED (the newest backup" "$ST/check.log"
ok "check: ... the forced switch was archived" grep -q "^  wal_switch: ok" "$ST/check.log"
is "check: status failed" failed "$(cut -d' ' -f3 "$ST/check.status")"
ok "check: the status line names the failed check" grep -q "exit status 2: ragsafe-pitr: error: check: 1 failed: backup_age" "$ST/check.status"
ok "check: notified" grep -q "^check: exit status 2: .*check: 1 failed: backup_age" "$T/notified"

# --- secrets and the job logs ---------------------------------------------------------
ok "the connection string's password is in the crontab entry" grep -q "password=hunter2" "$CT"
ok "... but in no log or status file" bash -c "! grep -r hunter2 '$ST'"
ok "... the logged command line shows it masked" grep -q "password=\*\*\*\*" "$ST/basebackup.log"
is "job logs are created 0600" "600" "$(stat -c %a "$ST"/*.log | sort -u | paste -sd,)"
# an older log with a wider mode is narrowed on the next run
chmod 0644 "$ST/config.log"
exit_is "config entry runs again" 0 run_entry '0 1 \* \* \*' config
is "... its log is 0600 again" 600 "$(stat -c %a "$ST/config.log")"
# a failing job that prints secrets, with stop/start commands on its command line
rm -f "$T/notified"
as_pg "$S/ragsafe-job.sh" --status-dir "$ST" --notify-cmd "cat >>$T/notified; echo \"\$1: \$2\" >>$T/notified" \
    leaky sh -c 'echo "connecting to postgresql://alice:hunter2@db/app"; echo "leaky: error: could not connect with password=hunter2"; exit 1' \
    leaky --stop-cmd "curl -u admin:stopsecret http://stack/stop" --start-cmd "start-it" 2>"$T/leaky.err"
is "leaky job: exit 1" 1 "$?"
sed 's/^/#   /' "$ST/leaky.log" "$ST/leaky.status" "$T/notified"
ok "leaky job: the log keeps the lines, masked" grep -q "postgresql://alice:\*\*\*\*@db/app" "$ST/leaky.log"
ok "leaky job: no password in log, status, notification or stderr" \
    bash -c "! grep -l hunter2 '$ST/leaky.log' '$ST/leaky.status' '$T/notified' '$T/leaky.err'"
ok "leaky job: the status still carries the (masked) error" grep -q "error: could not connect with password=\*\*\*\*" "$ST/leaky.status"
ok "leaky job: the stop command is not logged" bash -c "! grep -q stopsecret '$ST/leaky.log'"
ok "leaky job: ... the option is" grep -q -- "--stop-cmd <command not logged>" "$ST/leaky.log"
exit_is "usage: no --repo" 2 "$S/install-cron.sh" --pgconn x --crontab "$CT"
# the base backup's schedule and the expire policy are options
sch=$("$S/install-cron.sh" --repo "$REPO" --pgconn x --bin "$B" --dry-run --backup-every 12h --keep-daily 7 --keep-backups 3d)
ok "--backup-every 12h: 02:00 and 14:00" grep -q "^0 2,14 \* \* \* .* basebackup " <<<"$sch"
ok "--keep-daily 7 --keep-backups 3d reach expire" grep -q "'--keep-daily' '7' '--keep-backups' '3d'$" <<<"$sch"
sch=$("$S/install-cron.sh" --repo "$REPO" --pgconn x --bin "$B" --dry-run --backup-cron '30 */4 * * *')
ok "--backup-cron: the expression as given" grep -q "^30 \*/4 \* \* \* .* basebackup " <<<"$sch"
"$S/install-cron.sh" --repo "$REPO" --pgconn x --dry-run --backup-every 5h >/dev/null 2>"$T/be.err"
is "usage: --backup-every 5h (does not divide a day)" "2 1" "$? $(grep -c 'whole hours dividing 24' "$T/be.err")"
"$S/install-cron.sh" --repo "$REPO" --pgconn x --dry-run --backup-cron '0 * * *' >/dev/null 2>"$T/bc.err"
is "usage: --backup-cron with four fields" "2 1" "$? $(grep -c 'five cron time fields' "$T/bc.err")"
t_done
