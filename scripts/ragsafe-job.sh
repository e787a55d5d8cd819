#!/usr/bin/env bash
# ragsafe-job.sh [OPTION]... NAME CMD [ARG]... -- run one scheduled ragsafe job.
#
# What cron runs for every entry install-cron.sh writes:
#   - runs never overlap: an exclusive flock on LOCKDIR/NAME.lock; a run that finds the
#     previous one still going does not wait, it fails with "previous run still running"
#     (so a hung job is noticed rather than piling up);
#   - CMD's stdout and stderr go to STATUSDIR/NAME.log (replaced each run), mode 0600:
#     it can hold whatever a failing tool printed, and only the job's user (and root)
#     needs it -- the status line and the notification carry the gist to others;
#   - secrets never reach the log, the status line or a notification: in the logged
#     command line and in CMD's output, password=... (libpq conninfo, also quoted,
#     PGPASSWORD=, secret=, token=) and the password of a postgresql://user:pass@ URI
#     become ****, as does the value of an option named like --*password*, --*secret*,
#     --*token*; the values of the shell-command options (--stop-cmd, --start-cmd,
#     --version-cmd, --notify-cmd...) are left out of the logged command line;
#   - every run, whatever happens, writes one line to STATUSDIR/NAME.status (atomically):
#         <job> <unix time> <ok|failed> <seconds> <message>
#     the message being CMD's last line (on failure its last error line), for the
#     monitoring (a node_exporter textfile collector, a Nagios check) to read;
#   - on failure NOTIFY-CMD runs through /bin/sh with the job name in $1 (and
#     RAGSAFE_JOB), the message in $2 (and RAGSAFE_JOB_MESSAGE), and on stdin the
#     message plus the last 20 lines of the job's log:
#         --notify-cmd 'mail -s "ragsafe: $1 failed" ops@example.com'
#         --notify-cmd 'logger -t ragsafe "$1 failed: $2"'
# Exit status: CMD's (1 when it could not run or overlapped).
#
# Options (or the environment):
#   --status-dir DIR    RAGSAFE_STATUS_DIR   default /var/lib/ragsafe/status
#   --lock-dir DIR      RAGSAFE_LOCK_DIR     default: the status dir
#   --notify-cmd CMD    RAGSAFE_NOTIFY_CMD   default: none
set -u

status_dir=${RAGSAFE_STATUS_DIR:-/var/lib/ragsafe/status}
lock_dir=${RAGSAFE_LOCK_DIR:-}
notify_cmd=${RAGSAFE_NOTIFY_CMD:-}

usage() { sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case $1 in
    --status-dir) status_dir=$2; shift 2 ;;
    --lock-dir) lock_dir=$2; shift 2 ;;
    --notify-cmd) notify_cmd=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "ragsafe-job: error: unknown option \"$1\"" >&2; exit 2 ;;
    *) break ;;
    esac
done
if [ $# -lt 2 ]; then
    echo "ragsafe-job: error: usage: ragsafe-job.sh [OPTION]... NAME CMD [ARG]..." >&2
    exit 2
fi
job=$1; shift
case $job in
*[!A-Za-z0-9._-]*|.*|'') echo "ragsafe-job: error: invalid job name \"$job\"" >&2; exit 2 ;;
esac
lock_dir=${lock_dir:-$status_dir}
mkdir -p "$status_dir" "$lock_dir" || exit 1

start=$(date +%s)

# mask -- a filter that hides secrets (see the header): key=value forms (quoted or
# not) of password / passwd / secret / token, and the password of a URI.
mask() {
    sed -E \
        -e "s/([A-Za-z_-]*(password|passwd|secret|token)[A-Za-z_-]*[[:space:]]*=[[:space:]]*)('([^'\\\\]|\\\\.)*'|\"([^\"\\\\]|\\\\.)*\"|[^[:space:]&'\"]+)/\\1****/Ig" \
        -e 's#([A-Za-z][A-Za-z0-9+.-]*://[^:/@[:space:]]*):[^@/[:space:]]*@#\1:****@#g'
}

# shown_args ARG... -- the command line as it may be logged: secrets masked, the
# values of shell-command options (they may embed credentials) left out.
shown_args() {
    local a out=() hide=
    for a in "$@"; do
        if [ -n "$hide" ]; then
            out+=("$hide")
            hide=
            continue
        fi
        case $a in
        --*-cmd=*|--*cmd=*) out+=("${a%%=*}=<command not logged>") ;;
        --*-cmd|--*cmd) out+=("$a"); hide="<command not logged>" ;;
        --*password*=*|--*secret*=*|--*token*=*) out+=("${a%%=*}=****") ;;
        --*password*|--*secret*|--*token*) out+=("$a"); hide="****" ;;
        *) out+=("$a") ;;
        esac
    done
    printf '%s' "${out[*]}" | mask
}

# write_status RESULT MESSAGE -- the status line, atomically (temp + rename)
write_status() {
    local msg tmp
    msg=$(printf '%s' "$2" | tr '\n\t\r' '   ' | cut -c1-300)
    tmp=$(mktemp "$status_dir/.$job.status.XXXXXX") || return 1
    printf '%s %s %s %s %s\n' "$job" "$(date +%s)" "$1" "$(($(date +%s) - start))" "$msg" >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$status_dir/$job.status"
}

notify() {
    [ -n "$notify_cmd" ] || return 0
    # $1 $2 inside the command; stdin: the message and the end of the job's log
    { printf 'ragsafe job %s failed on %s: %s\n\n' "$job" "$(hostname)" "$1"
      [ -f "$status_dir/$job.log" ] && tail -n 20 "$status_dir/$job.log"; } |
    RAGSAFE_JOB=$job RAGSAFE_JOB_MESSAGE=$1 RAGSAFE_JOB_STATUS=failed \
        /bin/sh -c "$notify_cmd" ragsafe-notify "$job" "$1" \
        || echo "ragsafe-job: warning: notify command failed for job \"$job\"" >&2
}

exec 9>>"$lock_dir/$job.lock" || { write_status failed "could not open lock file"; notify "could not open lock file"; exit 1; }
if ! flock -n 9; then
    msg="previous run still running (lock $lock_dir/$job.lock held)"
    echo "ragsafe-job: error: $job: $msg" >&2
    write_status failed "$msg"
    notify "$msg"
    exit 1
fi

log=$status_dir/$job.log
# 0600 from the start, also when an older run left the file with a wider mode
(umask 077 && : >"$log") && chmod 0600 "$log" || {
    write_status failed "could not create log file $log"; notify "could not create log file $log"; exit 1; }
printf '# %s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$job" "$(shown_args "$@")" >>"$log"
# 9 (the lock) is not passed on: a server a job starts must not hold it
"$@" >>"$log" 2>&1 9>&-
rc=$?
# CMD's output masked in place (same file: a server the job started may still append
# to it), before anything is taken from it for the status line or a notification
if mtmp=$(mktemp "$status_dir/.$job.log.XXXXXX"); then
    mask <"$log" >"$mtmp" && cat "$mtmp" >"$log"
    rm -f "$mtmp"
fi
last=$(tail -n +2 "$log" | grep -v '^[[:space:]]*$' | tail -n 1)
# on failure the last error says more than a trailing hint or detail line
err=$(tail -n +2 "$log" | grep -E ': error: |: FAILED: |^ERROR: ' | tail -n 1)
if [ "$rc" -eq 0 ]; then
    write_status ok "${last:-done}"
else
    msg="exit status $rc: ${err:-${last:-no output}}"
    write_status failed "$msg"
    echo "ragsafe-job: error: $job failed: $msg (log: $log)" >&2
    notify "$msg"
fi
exit "$rc"
