#!/usr/bin/env bash
# restore-drill.sh -- prove the backups restore: the newest backup brought to the latest
# archived point in a temp dir, started on a spare port, checked, measured, removed.
#
# Usage: restore-drill.sh --repo DIR [OPTION]...
#
#   1. RPO: the age of the newest archived WAL segment (ragsafe-pitr info --json),
#      against --rpo-objective;
#   2. ragsafe-pitr restore --target-latest into a fresh temp dir (--owner);
#   3. the copy is started with archiving off (it must never write into the
#      repository), listening only on a Unix socket in the temp dir, on a spare port,
#      with local trust authentication, and followed until it is promoted;
#   4. sanity queries: row counts of users, documents and search_history where those
#      tables exist in --dbname, or each --check-sql (must succeed; output printed);
#   5. RTO: from the start of step 2 to a promoted, answering server, against
#      --rto-objective;
#   6. the server is stopped and the temp dir removed, on every exit path.
# Exit status 0 only when every step worked and both objectives are met; the last line
# is a one-line summary (ragsafe-job.sh puts it in the status file).
#
# Options:
#   --repo DIR            repository (required)
#   --bin DIR             ragsafe executables (default: ragsafe-pitr on PATH)
#   --pg-bin DIR          PostgreSQL 15 binaries (default: pg_config --bindir, else
#                         /usr/lib/postgresql/15/bin)
#   --owner USER          run the copy as USER (as root; default postgres)
#   --pg-user NAME        database role for the checks (default postgres)
#   --dbname DB           database the platform tables live in (default postgres)
#   --check-sql SQL       a sanity query (repeat); replaces the table counts
#   --port N              port of the copy (default: the first free from 54329)
#   --workdir DIR         parent of the temp dir (default ${TMPDIR:-/var/tmp})
#   --rto-objective DUR   default 2h        --rpo-objective DUR   default 5m
#   --keep                keep the temp dir and leave nothing running (debugging)
set -uo pipefail

prog=restore-drill
repo='' bin='' pg_bin='' owner='' pg_user=postgres dbname=postgres port='' workdir=${TMPDIR:-/var/tmp}
rto_obj=2h rpo_obj=5m keep=0
check_sql=()

die() { echo "$prog: error: $1" >&2; echo "$prog: FAILED: $1"; exit "${2:-1}"; }
# dur DUR -- seconds of "90", "30s", "15m", "2h", "1d"
dur() {
    case $1 in
    *[!0-9smhd]*|'') return 1 ;;
    *s) echo "${1%s}" ;; *m) echo $((${1%m} * 60)) ;; *h) echo $((${1%h} * 3600)) ;;
    *d) echo $((${1%d} * 86400)) ;; *) echo "$1" ;;
    esac
}

while [ $# -gt 0 ]; do
    case $1 in
    --repo) repo=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --pg-bin) pg_bin=$2; shift 2 ;;
    --owner) owner=$2; shift 2 ;;
    --pg-user) pg_user=$2; shift 2 ;;
    --dbname) dbname=$2; shift 2 ;;
    --check-sql) check_sql+=("$2"); shift 2 ;;
    --port) port=$2; shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    --rto-objective) rto_obj=$2; shift 2 ;;
    --rpo-objective) rpo_obj=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument \"$1\" (try --help)" 2 ;;
    esac
done
[ -n "$repo" ] || die "--repo DIR is required" 2
rto_s=$(dur "$rto_obj") || die "invalid --rto-objective \"$rto_obj\"" 2
rpo_s=$(dur "$rpo_obj") || die "invalid --rpo-objective \"$rpo_obj\"" 2
if [ -z "$bin" ]; then
    p=$(command -v ragsafe-pitr) || die "ragsafe-pitr not found on PATH (use --bin DIR)" 2
    bin=$(dirname "$p")
fi
if [ -z "$pg_bin" ]; then
    if [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then pg_bin=/usr/lib/postgresql/15/bin
    else pg_bin=$(pg_config --bindir 2>/dev/null) || die "PostgreSQL binaries not found (use --pg-bin DIR)" 2
    fi
fi
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then
    owner=${owner:-postgres}
    RUNAS=(runuser -u "$owner" --)
fi
as_owner() { "${RUNAS[@]}" "$@"; }

now_ms() { date +%s%3N; }
step_t=0
step() { step_t=$(now_ms); echo "== $*"; }
step_done() { echo "   ($(( $(now_ms) - step_t )) ms)"; }

T=
cleanup() {
    if [ -n "$T" ] && [ -f "$T/data/postmaster.pid" ]; then
        as_owner "$pg_bin/pg_ctl" -D "$T/data" -m immediate -w stop >/dev/null 2>&1
    fi
    if [ -n "$T" ] && [ -d "$T" ]; then
        if [ "$keep" -eq 1 ]; then echo "$prog: kept $T" >&2; else rm -rf "$T"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# spare port: nothing listens on it over TCP nor has its socket in the usual places
if [ -z "$port" ]; then
    for ((p = 54329; p < 54429; p++)); do
        if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null \
            && [ ! -e "/var/run/postgresql/.s.PGSQL.$p" ] && [ ! -e "/tmp/.s.PGSQL.$p" ]; then
            port=$p
            break
        fi
    done
    [ -n "$port" ] || die "no free port in 54329..54428 (use --port N)"
fi

fail=0
step "RPO: age of the newest archived WAL segment"
info=$("$bin/ragsafe-pitr" --repo "$repo" info --json) || die "ragsafe-pitr info failed"
rpo=$(printf '%s' "$info" | jq -r '.rpo.age_seconds // empty')
newest=$(printf '%s' "$info" | jq -r '.rpo.newest_segment // empty')
[ -n "$rpo" ] || die "the repository holds no archived WAL"
rpo_verdict=ok
if [ "$rpo" -gt "$rpo_s" ]; then rpo_verdict=MISSED; fail=1; fi
echo "   newest segment $newest, ${rpo} s old: RPO ${rpo} s, objective ${rpo_s} s: $rpo_verdict"
step_done

mkdir -p "$workdir" || die "could not create \"$workdir\""
T=$(mktemp -d "$workdir/ragsafe-drill.XXXXXX") || die "could not create a temp dir in \"$workdir\""
chmod 0700 "$T"
[ -n "$owner" ] && chown "$owner": "$T"

t0=$(date +%s)
step "restore the newest backup to the latest archived point into $T/data"
owner_args=()
[ -n "$owner" ] && owner_args=(--owner "$owner")
"$bin/ragsafe-pitr" --repo "$repo" restore --target-latest --pgdata "$T/data" \
    --target-action promote "${owner_args[@]}" || die "ragsafe-pitr restore failed"
step_done

step "start the copy on port $port (socket in $T, archiving off)"
# appended last, so these win over anything the backup's configuration says
cat >>"$T/data/postgresql.auto.conf" <<CONF
# restore-drill.sh: a throwaway copy
port = $port
listen_addresses = ''
unix_socket_directories = '$T'
archive_mode = off
archive_command = ''
logging_collector = off
CONF
{ echo "local all all trust"; cat "$T/data/pg_hba.conf"; } >"$T/pg_hba.conf" && cat "$T/pg_hba.conf" >"$T/data/pg_hba.conf"
if ! as_owner "$pg_bin/pg_ctl" -D "$T/data" -l "$T/server.log" -w -t "$rto_s" start >/dev/null; then
    tail -n 20 "$T/server.log" >&2
    die "the restored server did not start"
fi
psql_() { as_owner "$pg_bin/psql" -XAtq -v ON_ERROR_STOP=1 -h "$T" -p "$port" -U "$pg_user" "$@"; }
promoted=
for ((i = 0; i < rto_s * 2; i++)); do
    r=$(psql_ -d postgres -c "SELECT pg_is_in_recovery()" 2>/dev/null) && [ "$r" = f ] && { promoted=1; break; }
    [ -f "$T/data/postmaster.pid" ] || break
    sleep 0.5
done
if [ -z "$promoted" ]; then
    tail -n 20 "$T/server.log" >&2
    die "the restored server did not finish recovery"
fi
rto=$(($(date +%s) - t0))
step_done

step "sanity queries in database \"$dbname\""
summary=
if [ ${#check_sql[@]} -gt 0 ]; then
    n=0
    for s in "${check_sql[@]}"; do
        n=$((n + 1))
        if out=$(psql_ -d "$dbname" -c "$s" 2>&1); then
            echo "   check $n: $s -> $(printf '%s' "$out" | tr '\n' ' ')"
        else
            echo "   check $n FAILED: $s: $out"
            fail=1
        fi
    done
    summary="$n checks"
else
    found=0
    for t in users documents search_history; do
        ex=$(psql_ -d "$dbname" -c "SELECT to_regclass('$t') IS NOT NULL") || { fail=1; echo "   could not query database \"$dbname\""; break; }
        if [ "$ex" = t ]; then
            c=$(psql_ -d "$dbname" -c "SELECT count(*) FROM $t") || { fail=1; echo "   could not count $t"; continue; }
            echo "   $t: $c rows"
            summary+="$t=$c "
            found=1
        fi
    done
    if [ "$found" -eq 0 ] && [ "$fail" -eq 0 ]; then
        c=$(psql_ -d "$dbname" -c "SELECT count(*) FROM pg_class") || fail=1
        echo "   no users/documents/search_history tables; pg_class has $c rows"
        summary="pg_class=$c "
    fi
    summary=${summary% }
fi
step_done

rto_verdict=ok
if [ "$rto" -gt "$rto_s" ]; then rto_verdict=MISSED; fail=1; fi
echo "== RTO ${rto} s (objective ${rto_s} s): $rto_verdict; RPO ${rpo} s (objective ${rpo_s} s): $rpo_verdict"
if [ "$fail" -ne 0 ]; then
    echo "$prog: FAILED: RTO ${rto} s/${rto_s} s $rto_verdict, RPO ${rpo} s/${rpo_s} s $rpo_verdict, $summary"
    exit 1
fi
echo "$prog: ok: RTO ${rto} s/${rto_s} s, RPO ${rpo} s/${rpo_s} s, $summary"
