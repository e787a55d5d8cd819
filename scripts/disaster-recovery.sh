#!/usr/bin/env bash
# disaster-recovery.sh -- bring the whole platform back, in the runbook's order:
# PostgreSQL first (point in time), then Milvus, then the config files; then a health
# check of both.
#
# Usage: disaster-recovery.sh --repo DIR --pgdata DIR (--target-time T | --snapshot LABEL
#                             | --target-latest) [OPTION]...
#
# Where to:
#   --target-time T     PostgreSQL to T (ISO 8601, give an offset or Z); Milvus from the
#                       newest snapshot taken at or before T; config from the newest
#                       ragsafe-files snapshot at or before T.
#   --snapshot LABEL    Milvus snapshot LABEL, and PostgreSQL to the restore point that
#                       snapshot recorded while Milvus was stopped (ragsafe-milvus
#                       snapshot --pg), so documents and embeddings agree; config from
#                       the newest snapshot at or before it.
#   --target-latest     PostgreSQL to the end of the archive; the newest of the rest.
#
# Every destructive step is listed first and needs a confirmation: "yes" on stdin,
# or --yes. No stdin (or anything but "yes") refuses, exit 2, nothing touched.
# Each phase is timed; the exit status is 0 only when every phase and both health
# checks passed.
#
# PostgreSQL:
#   --pgdata DIR             data directory to restore into (its old contents are moved
#                            aside by ragsafe-pitr --force, to DIR.ragsafe-old-TIME, and
#                            kept: the report prints them and the rollback commands).
#                            The restored server keeps archiving (--archive-mode
#                            preserve): its new timeline goes into the repository.
#                            A server that stops during recovery (FATAL) ends the
#                            run at once, quoting the FATAL lines of its log.
#   --owner USER             owner of the data directory (default postgres when root)
#   --pg-stop-cmd CMD        stops the server first (e.g. 'docker compose stop rag-postgres');
#                            it must succeed when the server is already down
#   --pg-start-cmd CMD       starts it after the restore (e.g. 'docker compose start
#                            rag-postgres'); default: pg_ctl start as the owner (pg_ctl
#                            on PATH or in /usr/lib/postgresql/15/bin); recovery is then
#                            followed over --pg-conn until the server is promoted
#   --pg-conn CONNINFO       for the health check (and to follow recovery with
#                            --pg-start-cmd); default: the restored data directory's
#                            socket and port
#   --target-timeline N      passed to ragsafe-pitr (default latest)
#   --pitr-cmd CMD           how to run ragsafe-pitr for the restore itself (split on
#                            spaces), for a data directory inside a container, e.g.
#                            'docker compose -f /opt/rag/docker-compose.yml run --rm
#                            --no-deps --entrypoint /opt/ragsafe/bin/ragsafe-pitr rag-postgres'
#                            (see scripts/docker-compose.ragsafe.yml); default BIN/ragsafe-pitr
# Milvus:
#   --milvus-volume NAME=DIR restore into DIR (repeat; default: the recorded directories)
#   --milvus-stop-cmd CMD / --milvus-start-cmd CMD   passed to ragsafe-milvus restore
#   --health-url URL         Milvus health endpoint (http://localhost:9091/healthz)
#   --health-timeout SECS    how long ragsafe-milvus waits for it (its default: 300)
#   --skip-milvus
# Config (skipped unless both are given):
#   --files-key-file FILE    the ragsafe-files key
#   --files-target DIR       where the config files go back (the --base of the snapshots)
#   --files-snapshot LABEL   this one instead of the newest at or before the target
# Other:
#   --bin DIR                ragsafe executables (default: ragsafe-pitr on PATH)
#   --yes                    do not ask
set -uo pipefail

prog=disaster-recovery
repo='' bin='' pgdata='' owner='' target_time='' snapshot='' latest=0 yes=0 pg_stop='' pg_start='' pg_conn=''
tli='' pitr_cmd='' mstop='' mstart='' health_url='' health_timeout='' skip_milvus=0 fkey='' ftarget='' fsnap=''
volumes=()

die() { echo "$prog: error: $1" >&2; exit "${2:-1}"; }
while [ $# -gt 0 ]; do
    case $1 in
    --repo) repo=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --pgdata) pgdata=$2; shift 2 ;;
    --owner) owner=$2; shift 2 ;;
    --target-time) target_time=$2; shift 2 ;;
    --snapshot) snapshot=$2; shift 2 ;;
    --target-latest) latest=1; shift ;;
    --target-timeline) tli=$2; shift 2 ;;
    --pg-stop-cmd) pg_stop=$2; shift 2 ;;
    --pg-start-cmd) pg_start=$2; shift 2 ;;
    --pg-conn) pg_conn=$2; shift 2 ;;
    --pitr-cmd) pitr_cmd=$2; shift 2 ;;
    --milvus-volume) volumes+=("$2"); shift 2 ;;
    --milvus-stop-cmd) mstop=$2; shift 2 ;;
    --milvus-start-cmd) mstart=$2; shift 2 ;;
    --health-url) health_url=$2; shift 2 ;;
    --health-timeout) health_timeout=$2; shift 2 ;;
    --skip-milvus) skip_milvus=1; shift ;;
    --files-key-file) fkey=$2; shift 2 ;;
    --files-target) ftarget=$2; shift 2 ;;
    --files-snapshot) fsnap=$2; shift 2 ;;
    --yes) yes=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument \"$1\" (try --help)" 2 ;;
    esac
done
[ -n "$repo" ] || die "--repo DIR is required" 2
[ -n "$pgdata" ] || die "--pgdata DIR is required" 2
n=0
[ -n "$target_time" ] && n=$((n + 1))
[ -n "$snapshot" ] && n=$((n + 1))
[ "$latest" -eq 1 ] && n=$((n + 1))
[ "$n" -eq 1 ] || die "give exactly one of --target-time T, --snapshot LABEL, --target-latest" 2
if [ -z "$bin" ]; then
    p=$(command -v ragsafe-pitr) || die "ragsafe-pitr not found on PATH (use --bin DIR)" 2
    bin=$(dirname "$p")
fi
[ "$(id -u)" -eq 0 ] && owner=${owner:-postgres}
command -v jq >/dev/null || die "jq is needed" 2
[ -d /usr/lib/postgresql/15/bin ] && PATH=/usr/lib/postgresql/15/bin:$PATH

# epoch SECONDS of an ISO time; empty on failure
epoch() { date -d "$1" +%s 2>/dev/null; }

# ---- decide everything before touching anything
pg_target=()
milvus_label=
ref_epoch=
if [ -n "$snapshot" ]; then
    mj=$("$bin/ragsafe-milvus" list --repo "$repo" --json) || die "could not list Milvus snapshots"
    row=$(jq -c --arg l "$snapshot" '.[] | select(.label == $l)' <<<"$mj")
    [ -n "$row" ] || die "no Milvus snapshot \"$snapshot\" in \"$repo\""
    rp=$(jq -r '.pg_restore_point // empty' <<<"$row")
    [ -n "$rp" ] || die "snapshot \"$snapshot\" recorded no PostgreSQL restore point (taken without --pg): use --target-time" 2
    pg_target=(--target-name "$rp")
    milvus_label=$snapshot
    ref_epoch=$(epoch "$(jq -r .started <<<"$row")")
elif [ -n "$target_time" ]; then
    ref_epoch=$(epoch "$target_time") || die "invalid --target-time \"$target_time\"" 2
    pg_target=(--target-time "$target_time")
else
    pg_target=(--target-latest)
fi
[ -n "$tli" ] && pg_target+=(--target-timeline "$tli")

if [ "$skip_milvus" -eq 0 ] && [ -z "$milvus_label" ]; then
    mj=$("$bin/ragsafe-milvus" list --repo "$repo" --json) || die "could not list Milvus snapshots"
    # newest snapshot started at or before the target (any, for --target-latest)
    milvus_label=$(jq -r --argjson t "${ref_epoch:-9999999999}" '
        [ .[] | select((.started | fromdateiso8601) <= $t) ] | sort_by(.started) | last | .label // empty' <<<"$mj")
    [ -n "$milvus_label" ] || die "no Milvus snapshot at or before the target (use --skip-milvus to leave Milvus alone)"
fi

do_files=0
if [ -n "$fkey" ] && [ -n "$ftarget" ]; then
    do_files=1
    if [ -z "$fsnap" ]; then
        fj=$("$bin/ragsafe-files" list --repo "$repo" --key-file "$fkey" --json) \
            || die "could not list config snapshots (wrong key?)"
        fsnap=$(jq -r --argjson t "${ref_epoch:-9999999999}" '
            [ .[] | select((.created | fromdateiso8601) <= $t) ] | sort_by(.created) | last | .label // empty' <<<"$fj")
        [ -n "$fsnap" ] || die "no config snapshot at or before the target"
    fi
fi

# ---- the plan, and the confirmation
echo "== disaster recovery plan"
"$bin/ragsafe-pitr" --repo "$repo" plan "${pg_target[@]}" || die "no PostgreSQL recovery plan for this target"
echo "  1. PostgreSQL: ${pg_stop:+stop ($pg_stop), }restore $pgdata (old contents moved aside) to ${pg_target[*]}, start"
if [ "$skip_milvus" -eq 0 ]; then
    echo "  2. Milvus: restore snapshot $milvus_label (old volumes moved aside)${mstop:+; stop: $mstop}${mstart:+; start: $mstart}"
else
    echo "  2. Milvus: skipped"
fi
if [ "$do_files" -eq 1 ]; then
    echo "  3. config: restore snapshot $fsnap into $ftarget (replaced files moved aside)"
else
    echo "  3. config: skipped (no --files-key-file / --files-target)"
fi
if [ "$yes" -ne 1 ]; then
    printf 'This replaces live data. Type "yes" to go on: '
    if ! read -r answer || [ "$answer" != yes ]; then
        echo
        die "not confirmed: nothing was changed (answer \"yes\" on stdin, or pass --yes)" 2
    fi
fi

# ---- the phases
declare -a phase_names=() phase_secs=()
t_all=$(date +%s)
phase_t=0
phase() { phase_t=$(date +%s); echo; echo "== phase: $*"; }
phase_end() { phase_names+=("$1"); phase_secs+=($(($(date +%s) - phase_t))); echo "   ($1: $(($(date +%s) - phase_t)) s)"; }
report() {
    echo
    echo "== timings"
    for i in "${!phase_names[@]}"; do printf '   %-12s %5d s\n' "${phase_names[$i]}" "${phase_secs[$i]}"; done
    printf '   %-12s %5d s\n' total $(($(date +%s) - t_all))
}
abort() { echo "$prog: error: $*" >&2; report; echo "$prog: FAILED: $*"; exit 1; }

phase "PostgreSQL"
if [ -n "$pg_stop" ]; then
    /bin/sh -c "$pg_stop" || abort "the PostgreSQL stop command failed: not restoring over a live server"
fi
if [ -f "$pgdata/postmaster.pid" ] && kill -0 "$(head -n1 "$pgdata/postmaster.pid")" 2>/dev/null; then
    abort "a server is running on \"$pgdata\" (pid $(head -n1 "$pgdata/postmaster.pid")): stop it first (--pg-stop-cmd)"
fi
# --archive-mode preserve: after a real disaster the restored server is the primary, and
# its new timeline must be archived (a test restore would use the default, off)
ra=(--repo "$repo" restore "${pg_target[@]}" --pgdata "$pgdata" --force --target-action promote
    --archive-mode preserve)
[ -n "$owner" ] && ra+=(--owner "$owner")
if [ -n "$pitr_cmd" ]; then
    read -r -a pitr <<<"$pitr_cmd"
else
    pitr=("$bin/ragsafe-pitr")
fi
pitr_out=$(mktemp "${TMPDIR:-/tmp}/disaster-recovery.XXXXXX") || abort "could not create a temp file"
trap 'rm -f "$pitr_out"' EXIT
"${pitr[@]}" "${ra[@]}" | tee "$pitr_out"
[ "${PIPESTATUS[0]}" -eq 0 ] || abort "ragsafe-pitr restore failed"
# the moved-aside data directory is the rollback: keep it, and say where it is
rollback_lines=$(sed -n '/^old contents:/p; /^rollback:/,$p' "$pitr_out")
if [ -z "$pg_start" ]; then
    # no start command: pg_ctl as the owner; -w returns once connections are accepted
    runas=()
    [ "$(id -u)" -eq 0 ] && runas=(runuser -u "$owner" --)
    pgctl=$(command -v pg_ctl) || abort "pg_ctl not found (use --pg-start-cmd)"
    pg_start="$(printf '%q ' "${runas[@]}" "$pgctl" -D "$pgdata" -l "$pgdata/ragsafe-start.log" -w -t 3600 start)"
fi
if [ -z "$pg_conn" ]; then
    # the restored configuration's socket directory and port (last setting wins)
    conf() { cat "$pgdata/postgresql.conf" "$pgdata/postgresql.auto.conf" 2>/dev/null |
        sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*'\{0,1\}\([^',#]*\).*/\1/p" | tail -n1 | sed 's/[[:space:]]*$//'; }
    sock=$(conf unix_socket_directories); port=$(conf port)
    pg_conn="host=${sock:-/var/run/postgresql} port=${port:-5432} user=postgres dbname=postgres"
fi
psql_() { psql -XAtq -d "$pg_conn" -c "$1"; }
# server_fatal: the FATAL / PANIC lines of this start's server log (ragsafe-start.log,
# else the newest file under log/), indented; not what clients were told while it started
start_log=$pgdata/ragsafe-start.log
log_off=$(stat -c %s "$start_log" 2>/dev/null || echo 0)
server_fatal() {
    local f=$start_log off=$log_off
    if [ ! -f "$f" ]; then
        f=$(ls -t "$pgdata"/log/* 2>/dev/null | head -n1); off=0
    fi
    [ -n "$f" ] && [ -f "$f" ] && tail -c +"$((off + 1))" "$f" | grep -E 'FATAL:|PANIC:' |
        grep -v 'FATAL:  the database system is ' | tail -n 10 | sed 's/^/   /'
}
# postmaster_gone: its postmaster.pid names a process that no longer exists, or the
# file is gone (after it had appeared, once this start's log holds a FATAL or PANIC --
# a recovery that fails at its first WAL file can be over before the first look -- or
# 30 s after the start command returned)
pm_seen=0
postmaster_gone() {
    local pid
    if [ -f "$pgdata/postmaster.pid" ]; then
        pm_seen=1
        pid=$(head -n1 "$pgdata/postmaster.pid" 2>/dev/null)
        [ -n "$pid" ] && [ "$pid" -gt 0 ] 2>/dev/null && [ ! -d "/proc/$pid" ]
        return
    fi
    [ "$pm_seen" -eq 1 ] || [ "$1" -ge 150 ] || [ -n "$(server_fatal)" ]
}
echo "   starting: $pg_start"
if ! bash -c "$pg_start" >/dev/null; then
    fatal=$(server_fatal)
    [ -n "$fatal" ] && echo "$fatal" >&2 || tail -n 20 "$start_log" 2>/dev/null >&2
    abort "the PostgreSQL start command failed${fatal:+: $(echo "$fatal" | tail -n1 | sed 's/^ *//')}"
fi
# follow recovery until the promotion; a postmaster that died (a FATAL in recovery,
# e.g. a WAL file the repository cannot deliver: ragsafe-restore exit 128) stops it at once
for ((i = 0; ; i++)); do
    r=$(psql_ "SELECT pg_is_in_recovery()" 2>/dev/null) && [ "$r" = f ] && break
    if postmaster_gone "$i"; then
        fatal=$(server_fatal)
        echo "   PostgreSQL stopped during recovery; its log ($start_log) says:" >&2
        echo "${fatal:-   (no FATAL line found)}" >&2
        [ -n "$rollback_lines" ] && echo "$rollback_lines" | sed 's/^/   /' >&2
        abort "PostgreSQL stopped during recovery${fatal:+: $(echo "$fatal" | tail -n1 | sed 's/^ *//')}"
    fi
    [ "$i" -lt 180000 ] || abort "PostgreSQL did not finish recovery within 10 h"
    sleep 0.2
done
echo "   PostgreSQL recovered and promoted ($(psql_ "SELECT pg_current_wal_lsn()"))"
phase_end postgresql

if [ "$skip_milvus" -eq 0 ]; then
    phase "Milvus"
    ma=(restore "$milvus_label" --repo "$repo" --force)
    for v in "${volumes[@]}"; do ma+=(--volume "$v"); done
    [ -n "$mstop" ] && ma+=(--stop-cmd "$mstop")
    [ -n "$mstart" ] && ma+=(--start-cmd "$mstart")
    [ -n "$health_url" ] && ma+=(--health-url "$health_url")
    [ -n "$health_timeout" ] && ma+=(--health-timeout "$health_timeout")
    "$bin/ragsafe-milvus" "${ma[@]}" || abort "ragsafe-milvus restore failed"
    phase_end milvus
fi

if [ "$do_files" -eq 1 ]; then
    phase "config"
    "$bin/ragsafe-files" restore "$fsnap" --repo "$repo" --key-file "$fkey" --target "$ftarget" --force \
        || abort "ragsafe-files restore failed"
    echo "   restored config snapshot $fsnap into $ftarget"
    phase_end config
fi

phase "health check"
healthy=1
if pg_isready -d "$pg_conn" >/dev/null 2>&1 && [ "$(psql_ "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ]; then
    echo "   PostgreSQL: accepting connections, out of recovery ($(psql_ "SELECT pg_current_wal_lsn()"))"
else
    echo "   PostgreSQL: NOT healthy ($pg_conn)"
    healthy=0
fi
if [ "$skip_milvus" -eq 0 ]; then
    if [ -n "$health_url" ]; then
        if body=$(curl -fsS --max-time 10 "$health_url" 2>&1) && [ "${body//[[:space:]]/}" = OK ]; then
            echo "   Milvus: $health_url answers OK"
        else
            echo "   Milvus: NOT healthy ($health_url: $body)"
            healthy=0
        fi
    else
        echo "   Milvus: no --health-url, not checked"
    fi
fi
phase_end health
report
if [ -n "$rollback_lines" ]; then
    echo
    echo "== kept for rollback (remove once the restored platform is accepted)"
    echo "$rollback_lines" | sed 's/^/   /'
fi
[ "$healthy" -eq 1 ] || { echo "$prog: FAILED: health check"; exit 1; }
echo "$prog: ok: PostgreSQL to ${pg_target[*]}${milvus_label:+, Milvus snapshot $milvus_label}${fsnap:+, config $fsnap}"
