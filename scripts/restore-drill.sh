#!/usr/bin/env bash
# restore-drill.sh -- prove the backups restore: the newest backup brought to a recorded
# point in a temp dir, started on a spare port, compared with the source, measured,
# removed.
#
# Usage: restore-drill.sh --repo DIR --source CONNINFO [OPTION]...
#        restore-drill.sh --repo DIR --check-sql SQL --expect VALUE [OPTION]...
#
#   1. RPO: the age of the newest archived WAL segment (ragsafe-pitr info --json),
#      against --rpo-objective;
#   2. with --source (the production primary): the row count of every permanent user
#      table of its database, taken while those tables are locked against writes
#      (SHARE mode, at most --lock-timeout waiting for the lock; reads go on), and a
#      restore point (pg_create_restore_point, --restore-point) in the same
#      transaction, so the counts are exactly the restore point's; then pg_switch_wal()
#      and a wait (--archive-wait) until the source has archived that segment. Needs
#      a role that may lock the tables and create restore points (a superuser);
#   3. ragsafe-pitr restore into a fresh temp dir (--owner): to that restore point
#      with --source, else --target-latest;
#   4. the copy is started with archiving off (it must never write into the
#      repository), listening only on a Unix socket in the temp dir, on a spare port,
#      with local trust authentication, and followed until it is promoted;
#   5. checks: with --source, every table counted in step 2 must hold exactly as many
#      rows in the copy (in the source's database, or --dbname); each --check-sql must
#      succeed and, when an --expect follows it, print exactly VALUE. A drill with
#      neither --source nor an --expect compares nothing and is refused (usage);
#   6. RTO: from the start of step 3 to a promoted, answering server, against
#      --rto-objective;
#   7. the server is stopped and the temp dir removed, on every exit path.
# Exit status 0 only when every step worked, every check matched and both objectives
# are met; 2 on a usage error; the last line is a one-line summary (ragsafe-job.sh
# puts it in the status file).
#
# Options:
#   --repo DIR            repository (required)
#   --source CONNINFO     libpq connection string of the source (the primary archiving
#                         into --repo): row counts compared at a restore point
#   --restore-point NAME  name of that restore point (default ragsafe-drill-<UTC time>);
#                         recovery stops at the first restore point of that name
#   --lock-timeout DUR    longest wait for the tables' locks (default 10s)
#   --archive-wait DUR    longest wait for the restore point's segment (default 5m)
#   --bin DIR             ragsafe executables (default: ragsafe-pitr on PATH)
#   --pg-bin DIR          PostgreSQL 15 binaries (default: pg_config --bindir, else
#                         /usr/lib/postgresql/15/bin)
#   --owner USER          run the copy as USER (as root; default postgres)
#   --pg-user NAME        database role for the checks (default postgres)
#   --dbname DB           database of the checks (default: the source's, else postgres)
#   --check-sql SQL       a sanity query (repeat); must succeed
#   --expect VALUE        what the --check-sql before it must print (psql -At: columns
#                         joined by '|', rows by newlines)
#   --port N              port of the copy (default: the first free from 54329)
#   --workdir DIR         parent of the temp dir (default ${TMPDIR:-/var/tmp})
#   --rto-objective DUR   default 2h        --rpo-objective DUR   default 5m
#   --keep                keep the temp dir and leave nothing running (debugging)
set -uo pipefail

prog=restore-drill
repo='' bin='' pg_bin='' owner='' pg_user=postgres dbname='' port='' workdir=${TMPDIR:-/var/tmp}
rto_obj=2h rpo_obj=5m keep=0 source='' rp_name='' lock_timeout=10s archive_wait=5m
check_sql=() check_expect=() check_has=()

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
    --check-sql) check_sql+=("$2"); check_expect+=(''); check_has+=(0); shift 2 ;;
    --expect)
        [ ${#check_sql[@]} -gt 0 ] || die "--expect must follow a --check-sql" 2
        check_expect[${#check_sql[@]} - 1]=$2; check_has[${#check_sql[@]} - 1]=1; shift 2 ;;
    --source) source=$2; shift 2 ;;
    --restore-point) rp_name=$2; shift 2 ;;
    --lock-timeout) lock_timeout=$2; shift 2 ;;
    --archive-wait) archive_wait=$2; shift 2 ;;
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
lock_s=$(dur "$lock_timeout") || die "invalid --lock-timeout \"$lock_timeout\"" 2
wait_s=$(dur "$archive_wait") || die "invalid --archive-wait \"$archive_wait\"" 2
expects=0
for h in "${check_has[@]}"; do expects=$((expects + h)); done
if [ -z "$source" ] && [ "$expects" -eq 0 ]; then
    echo "$prog: hint: give --source CONNINFO (row counts compared with the source at a restore point) or --check-sql SQL --expect VALUE" >&2
    die "nothing to compare the restored copy with: a copy with empty tables would pass" 2
fi
[ -n "$rp_name" ] || rp_name=ragsafe-drill-$(date -u +%Y%m%dT%H%M%SZ)
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

# 2. the source's row counts at a restore point of their own
src_tables=() src_counts=()
if [ -n "$source" ]; then
    step "source: row counts of its permanent tables at restore point \"$rp_name\""
    # one transaction: the tables locked against writes (SHARE), counted, the restore
    # point created; no commit can change them in between
    src_out=$(as_owner "$pg_bin/psql" -XAtq -v ON_ERROR_STOP=1 -v rp="$rp_name" -d "$source" 2>&1 <<SQL
SET lock_timeout = '${lock_s}s';
BEGIN;
SELECT 'db|' || current_database();
CREATE TEMP VIEW drill_tables AS
  SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind = 'r' AND c.relpersistence = 'p'
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%';
SELECT 'LOCK TABLE ' || string_agg(format('%I.%I', nspname, relname), ', ') || ' IN SHARE MODE'
  FROM drill_tables
\gexec
SELECT format('SELECT %L || count(*) FROM %I.%I',
              'count|' || format('%I.%I', nspname, relname) || '|', nspname, relname)
  FROM drill_tables ORDER BY nspname, relname
\gexec
SELECT 'rp|' || pg_create_restore_point(:'rp');
COMMIT;
SELECT 'seg|' || pg_walfile_name(pg_switch_wal());
SQL
    ) || die "could not count the source's tables and create restore point \"$rp_name\": $src_out"
    src_db='' seg=''
    while IFS= read -r line; do
        case $line in
        db\|*) src_db=${line#db|} ;;
        seg\|*) seg=${line#seg|} ;;
        count\|*) line=${line#count|}; src_tables+=("${line%|*}"); src_counts+=("${line##*|}") ;;
        esac
    done <<<"$src_out"
    [ -n "$seg" ] || die "unexpected answer from the source: $src_out"
    dbname=${dbname:-$src_db}
    for i in "${!src_tables[@]}"; do echo "   ${src_tables[$i]}: ${src_counts[$i]} rows"; done
    [ ${#src_tables[@]} -gt 0 ] || echo "   (no permanent user tables in database \"$src_db\")"
    echo "   waiting (at most ${wait_s} s) until the source has archived $seg"
    archived=
    for ((i = 0; i < wait_s; i++)); do
        a=$(as_owner "$pg_bin/psql" -XAtq -d "$source" -c \
            "SELECT last_archived_wal ~ '^[0-9A-F]{24}\$' AND last_archived_wal >= '$seg' FROM pg_stat_archiver" 2>/dev/null)
        [ "$a" = t ] && { archived=1; break; }
        sleep 1
    done
    [ -n "$archived" ] || die "the source did not archive $seg (restore point \"$rp_name\") within ${wait_s} s"
    step_done
fi
dbname=${dbname:-postgres}

mkdir -p "$workdir" || die "could not create \"$workdir\""
T=$(mktemp -d "$workdir/ragsafe-drill.XXXXXX") || die "could not create a temp dir in \"$workdir\""
chmod 0700 "$T"
[ -n "$owner" ] && chown "$owner": "$T"

t0=$(date +%s)
target=(--target-latest)
[ -n "$source" ] && target=(--target-name "$rp_name")
step "restore to ${target[*]} into $T/data"
owner_args=()
[ -n "$owner" ] && owner_args=(--owner "$owner")
"$bin/ragsafe-pitr" --repo "$repo" restore "${target[@]}" --pgdata "$T/data" \
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

step "checks in database \"$dbname\""
summary=
if [ -n "$source" ]; then
    bad=0
    for i in "${!src_tables[@]}"; do
        t=${src_tables[$i]} want=${src_counts[$i]}
        if ! c=$(psql_ -d "$dbname" -c "SELECT count(*) FROM $t" 2>&1); then
            echo "   $t: MISMATCH: could not count it in the copy: $c"
            bad=$((bad + 1))
        elif [ "$c" != "$want" ]; then
            echo "   $t: MISMATCH: $c rows, the source had $want at the restore point"
            bad=$((bad + 1))
        else
            echo "   $t: $c rows, as the source: ok"
        fi
    done
    [ "$bad" -eq 0 ] || fail=1
    summary="${#src_tables[@]} tables, $bad differ from the source"
fi
n=0
for i in "${!check_sql[@]}"; do
    s=${check_sql[$i]}
    n=$((n + 1))
    if ! out=$(psql_ -d "$dbname" -c "$s" 2>&1); then
        echo "   check $n FAILED: $s: $out"
        fail=1
    elif [ "${check_has[$i]}" -eq 1 ] && [ "$out" != "${check_expect[$i]}" ]; then
        echo "   check $n FAILED: $s -> $(printf '%s' "$out" | tr '\n' ' '), expected ${check_expect[$i]}"
        fail=1
    else
        echo "   check $n: $s -> $(printf '%s' "$out" | tr '\n' ' ')"
    fi
done
[ "$n" -eq 0 ] || summary="${summary:+$summary, }$n checks"
step_done

rto_verdict=ok
if [ "$rto" -gt "$rto_s" ]; then rto_verdict=MISSED; fail=1; fi
echo "== RTO ${rto} s (objective ${rto_s} s): $rto_verdict; RPO ${rpo} s (objective ${rpo_s} s): $rpo_verdict"
if [ "$fail" -ne 0 ]; then
    echo "$prog: FAILED: RTO ${rto} s/${rto_s} s $rto_verdict, RPO ${rpo} s/${rpo_s} s $rpo_verdict, $summary"
    exit 1
fi
echo "$prog: ok: RTO ${rto} s/${rto_s} s, RPO ${rpo} s/${rpo_s} s, $summary"
