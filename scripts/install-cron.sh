#!/usr/bin/env bash
# install-cron.sh -- install ragsafe's backup schedule (the runbook's cron lines).
#
# Usage: install-cron.sh --repo DIR --pgconn CONNINFO [OPTION]...
#
# Entries (times are the system's local time, as cron reads them):
#   01:00 daily     config           ragsafe-files snapshot of --config-path PATHs
#   every 6 h       basebackup       ragsafe-basebackup at 02:00, 08:00, 14:00, 20:00
#                                    (--backup-every, --backup-cron)
#   03:00 daily     milvus-snapshot  ragsafe-milvus snapshot (cold; --pg records a restore
#                                    point so a disaster recovery can match PostgreSQL)
#   04:00 Sunday    logs             ragsafe-files snapshot of --log-path PATHs
#   05:00 daily     expire-pg (--keep-window 7d --keep-daily 30: every backup of the
#                   last 7 days with point-in-time recovery, one a day for 30 days),
#                   05:15 expire-milvus, 05:30 expire-config, 05:35 expire-logs
#   06:00 daily     verify-pg, 06:30 verify-milvus, 06:45 verify-files
#   07:00 1st of month restore-drill scripts/restore-drill.sh
#   04:30 daily     dump-DB          ragsafe-pitr dump --target-latest of each --dump-db DB
#                                    into --dump-dir DIR/DB.dump (a portable logical dump
#                                    from the repository: production is not touched)
#   07:30 daily     check            ragsafe-pitr check: every archiving and backup
#                                    prerequisite; any FAILED or WARNING exits non-zero,
#                                    so the notify command fires
# config / logs / milvus entries appear only when their paths or volumes are given.
# Every entry runs through ragsafe-job.sh: flock (runs never overlap), --notify-cmd on
# failure, a status line in STATUS-DIR/<job>.status for the monitoring.
#
# Install it as the user PostgreSQL runs as (postgres): archive_command writes into the
# same repository as these jobs, and every file in it should have one owner.
#
# The entries live in one block between "# BEGIN ragsafe" and "# END ragsafe" lines:
# installing again replaces the block in place, everything else in the crontab stays.
# The block installed is printed on stdout.
#
# Options:
#   --repo DIR                 repository (required)
#   --pgconn CONNINFO          libpq connection string of the primary (required)
#   --milvus-volume NAME=DIR   a Milvus volume (repeat: etcd=..., minio=..., milvus=...)
#   --milvus-stop-cmd CMD      e.g. 'docker compose -f /opt/rag/docker-compose.yml stop -t 300 standalone minio etcd'
#   --milvus-start-cmd CMD     e.g. 'docker compose -f /opt/rag/docker-compose.yml start etcd minio standalone'
#   --milvus-health-url URL    e.g. http://localhost:9091/healthz
#   --config-path PATH         a config file or directory (repeat)
#   --log-path PATH            a log directory (repeat)
#   --files-base DIR           config and log paths are stored relative to DIR
#   --key-file FILE            ragsafe-files key (default /etc/ragsafe/files.key)
#   --notify-cmd CMD           run (sh -c) on failure: $1 the job, $2 the message, the
#                              message and the job's log tail on stdin, e.g.
#                              'mail -s "ragsafe: $1 failed" ops@example.com'
#   --status-dir DIR           status files (default /var/lib/ragsafe/status)
#   --bin DIR                  ragsafe executables (default: where ragsafe-pitr is on
#                              PATH, else /usr/local/bin)
#   --backup-every DUR         base backup interval, whole hours dividing 24 (1h, 2h,
#                              3h, 4h, 6h, 8h, 12h, 24h or 1d), the first at 02:00
#                              (default 6h)
#   --backup-cron 'EXPR'       the base backup's five cron time fields instead (digits
#                              and * , - / only), e.g. '30 */4 * * *'
#   --keep-window DUR          PITR window kept by expire (default 7d)
#   --keep-daily N             expire also keeps the newest backup of each of the last
#                              N days (default 30; 0: none)
#   --keep-backups DUR         expire also keeps every backup younger than DUR (not
#                              passed unless given)
#   --milvus-keep-last N       Milvus snapshots kept (default 7)
#   --files-keep-last N        config snapshots kept (default 60)
#   --logs-keep-last N         log snapshots kept (default 8)
#   --drill-args ARGS          extra arguments for restore-drill.sh (e.g. --check-sql ...)
#   --check-args ARGS          extra arguments for ragsafe-pitr check (e.g. --min-free 100G
#                              --rpo 5m --max-backup-age 30h)
#   --dump-db DB               a daily logical dump of database DB (repeat)
#   --dump-dir DIR             where --dump-db writes DB.dump (custom format, replaced
#                              atomically each day)
#   --crontab FILE             edit FILE instead of the user's crontab (tests)
#   --dry-run                  print the block and change nothing
set -euo pipefail

prog=install-cron
die() { echo "$prog: error: $*" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)

repo='' pgconn='' crontab_file='' dry_run=0 notify='' status_dir=/var/lib/ragsafe/status bin=''
key_file=/etc/ragsafe/files.key files_base='' stop_cmd='' start_cmd='' health_url=''
keep_window=7d keep_daily=30 keep_backups='' backup_every=6h backup_cron='' milvus_keep=7 files_keep=60 logs_keep=8 drill_args='' check_args=''
volumes=() config_paths=() log_paths=() dump_dbs=() dump_dir=''

while [ $# -gt 0 ]; do
    case $1 in
    --repo) repo=$2; shift 2 ;;
    --pgconn) pgconn=$2; shift 2 ;;
    --milvus-volume) volumes+=("$2"); shift 2 ;;
    --milvus-stop-cmd) stop_cmd=$2; shift 2 ;;
    --milvus-start-cmd) start_cmd=$2; shift 2 ;;
    --milvus-health-url) health_url=$2; shift 2 ;;
    --config-path) config_paths+=("$2"); shift 2 ;;
    --log-path) log_paths+=("$2"); shift 2 ;;
    --files-base) files_base=$2; shift 2 ;;
    --key-file) key_file=$2; shift 2 ;;
    --notify-cmd) notify=$2; shift 2 ;;
    --status-dir) status_dir=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --keep-window) keep_window=$2; shift 2 ;;
    --keep-backups) keep_backups=$2; shift 2 ;;
    --keep-daily) keep_daily=$2; shift 2 ;;
    --backup-every) backup_every=$2; shift 2 ;;
    --backup-cron) backup_cron=$2; shift 2 ;;
    --milvus-keep-last) milvus_keep=$2; shift 2 ;;
    --files-keep-last) files_keep=$2; shift 2 ;;
    --logs-keep-last) logs_keep=$2; shift 2 ;;
    --drill-args) drill_args=$2; shift 2 ;;
    --check-args) check_args=$2; shift 2 ;;
    --dump-db) dump_dbs+=("$2"); shift 2 ;;
    --dump-dir) dump_dir=$2; shift 2 ;;
    --crontab) crontab_file=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument \"$1\" (try --help)" ;;
    esac
done
[ -n "$repo" ] || die "--repo DIR is required"
[ -n "$pgconn" ] || die "--pgconn CONNINFO is required"
case $keep_daily in ''|*[!0-9]*) die "--keep-daily wants a number of days, not \"$keep_daily\"" ;; esac
if [ -n "$backup_cron" ]; then
    # five fields of digits, * , - / only (the command is ours)
    [ "$(printf '%s\n' "$backup_cron" | awk '{ print NF }')" = 5 ] && ! printf '%s' "$backup_cron" | grep -q '[^0-9*,/ -]' \
        || die "--backup-cron wants the five cron time fields, e.g. '0 */6 * * *', not \"$backup_cron\""
    backup_when=$backup_cron
else
    case $backup_every in
    1d) every=24 ;;
    *h) every=${backup_every%h} ;;
    *) every=x ;;
    esac
    case $every in ''|*[!0-9]*) every=0 ;; esac
    if [ "$every" -lt 1 ] || [ "$every" -gt 24 ] || [ $((24 % every)) -ne 0 ]; then
        die "--backup-every wants whole hours dividing 24 (1h, 2h, 3h, 4h, 6h, 8h, 12h, 24h), not \"$backup_every\" (or give --backup-cron 'EXPR')"
    fi
    hours=$(for ((h = 2; h < 26; h += every)); do echo $((h % 24)); done | sort -n | paste -sd,)
    backup_when="0 $hours * * *"
fi
case $repo in /*) ;; *) repo=$(cd "$repo" 2>/dev/null && pwd) || die "repository \"$repo\" not found" ;; esac
if [ -z "$bin" ]; then
    if p=$(command -v ragsafe-pitr 2>/dev/null); then bin=$(dirname "$p"); else bin=/usr/local/bin; fi
fi
for t in ragsafe-basebackup ragsafe-pitr; do
    [ -x "$bin/$t" ] || echo "$prog: warning: \"$bin/$t\" is not executable (use --bin DIR)" >&2
done
if [ ${#dump_dbs[@]} -gt 0 ]; then
    case $dump_dir in /*) ;; *) die "--dump-db needs --dump-dir /ABSOLUTE/DIR" ;; esac
fi
if [ ${#volumes[@]} -gt 0 ] && [ -z "$stop_cmd" ]; then
    die "--milvus-volume needs --milvus-stop-cmd and --milvus-start-cmd (a snapshot is taken cold)"
fi
if [ ${#config_paths[@]} -gt 0 ] || [ ${#log_paths[@]} -gt 0 ]; then
    if [ ! -f "$key_file" ]; then
        echo "$prog: warning: key file \"$key_file\" does not exist yet" >&2
        echo "$prog: hint: create it with: $bin/ragsafe-files keygen $key_file (and keep a copy off this host)" >&2
    fi
fi

# q WORD -- WORD quoted for /bin/sh (single quotes)
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
# line WHEN JOB CMD... -- one crontab entry through ragsafe-job.sh
line() {
    local when=$1 job=$2 out w; shift 2
    out="$when $(q "$here/ragsafe-job.sh") --status-dir $(q "$status_dir")"
    [ -n "$notify" ] && out+=" --notify-cmd $(q "$notify")"
    out+=" $job"
    for w in "$@"; do out+=" $(q "$w")"; done
    # cron turns an unescaped % into a newline
    printf '%s\n' "${out//%/\\%}"
}

# files_cmd WHEN JOB PATH... -- a ragsafe-files snapshot entry, labels JOB-<time>
files_cmd() {
    local when=$1 job=$2; shift 2
    local args=("$bin/ragsafe-files" snapshot --repo "$repo" --key-file "$key_file" --label-prefix "$job-")
    [ -n "$files_base" ] && args+=(--base "$files_base")
    line "$when" "$job" "${args[@]}" "$@"
}

block() {
    echo "# BEGIN ragsafe (install-cron.sh; this block is replaced on reinstall, edit outside it)"
    echo "# repo $repo; status lines in $status_dir/<job>.status"
    if [ ${#config_paths[@]} -gt 0 ]; then
        files_cmd "0 1 * * *" config "${config_paths[@]}"
    fi
    line "$backup_when" basebackup "$bin/ragsafe-basebackup" -d "$pgconn" --repo "$repo" --checkpoint fast
    if [ ${#volumes[@]} -gt 0 ]; then
        local m=("$bin/ragsafe-milvus" snapshot --repo "$repo" --pg "$pgconn")
        for v in "${volumes[@]}"; do m+=(--volume "$v"); done
        m+=(--stop-cmd "$stop_cmd")
        [ -n "$start_cmd" ] && m+=(--start-cmd "$start_cmd")
        [ -n "$health_url" ] && m+=(--health-url "$health_url")
        line "0 3 * * *" milvus-snapshot "${m[@]}"
    fi
    if [ ${#log_paths[@]} -gt 0 ]; then
        files_cmd "0 4 * * 0" logs "${log_paths[@]}"
    fi
    local db
    for db in "${dump_dbs[@]}"; do
        line "30 4 * * *" "dump-$db" "$bin/ragsafe-pitr" dump --repo "$repo" --target-latest \
            --dbname "$db" --file "$dump_dir/$db.dump"
    done
    local e=("$bin/ragsafe-pitr" expire --repo "$repo" --keep-window "$keep_window" --keep-daily "$keep_daily")
    [ -n "$keep_backups" ] && e+=(--keep-backups "$keep_backups")
    line "0 5 * * *" expire-pg "${e[@]}"
    [ ${#volumes[@]} -gt 0 ] && line "15 5 * * *" expire-milvus "$bin/ragsafe-milvus" expire --repo "$repo" --keep-last "$milvus_keep"
    if [ ${#config_paths[@]} -gt 0 ]; then
        line "30 5 * * *" expire-config "$bin/ragsafe-files" expire --repo "$repo" --key-file "$key_file" --prefix config- --keep-last "$files_keep"
    fi
    if [ ${#log_paths[@]} -gt 0 ]; then
        line "35 5 * * *" expire-logs "$bin/ragsafe-files" expire --repo "$repo" --key-file "$key_file" --prefix logs- --keep-last "$logs_keep"
    fi
    line "0 6 * * *" verify-pg "$bin/ragsafe-pitr" verify --repo "$repo"
    [ ${#volumes[@]} -gt 0 ] && line "30 6 * * *" verify-milvus "$bin/ragsafe-milvus" verify --repo "$repo"
    if [ ${#config_paths[@]} -gt 0 ] || [ ${#log_paths[@]} -gt 0 ]; then
        line "45 6 * * *" verify-files "$bin/ragsafe-files" verify --repo "$repo" --key-file "$key_file"
    fi
    local d=("$here/restore-drill.sh" --repo "$repo" --bin "$bin" --source "$pgconn")
    if [ -n "$drill_args" ]; then
        # shellcheck disable=SC2206 # word splitting wanted: a list of extra arguments
        d+=($drill_args)
    fi
    line "0 7 1 * *" restore-drill "${d[@]}"
    local k=("$bin/ragsafe-pitr" check --repo "$repo" -d "$pgconn")
    if [ -n "$check_args" ]; then
        # shellcheck disable=SC2206 # word splitting wanted: a list of extra arguments
        k+=($check_args)
    fi
    line "30 7 * * *" check "${k[@]}"
    echo "# END ragsafe"
}

new_block=$(block)

if [ "$dry_run" -eq 1 ]; then
    echo "# dry run: would install into ${crontab_file:-the crontab of $(id -un)}:"
    printf '%s\n' "$new_block"
    exit 0
fi

# the current crontab without our block
if [ -n "$crontab_file" ]; then
    current=$(cat "$crontab_file" 2>/dev/null || true)
else
    current=$(crontab -l 2>/dev/null || true)
fi
kept=$(printf '%s\n' "$current" | awk '
    /^# BEGIN ragsafe/ { skip = 1; next }
    /^# END ragsafe/   { if (skip) { skip = 0; next } }
    !skip')
# drop trailing empty lines so reinstalling does not grow the file
kept=$(printf '%s\n' "$kept" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}')
if [ -n "$kept" ]; then
    result=$(printf '%s\n\n%s\n' "$kept" "$new_block")
else
    result=$new_block
fi

if [ -n "$crontab_file" ]; then
    tmp=$(mktemp "$(dirname "$crontab_file")/.crontab.XXXXXX")
    printf '%s\n' "$result" >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$crontab_file"
else
    printf '%s\n' "$result" | crontab - || die "crontab refused the new table"
fi
mkdir -p "$status_dir" 2>/dev/null || echo "$prog: warning: could not create \"$status_dir\"" >&2
echo "# installed into ${crontab_file:-the crontab of $(id -un)}:"
printf '%s\n' "$new_block"
