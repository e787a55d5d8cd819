#!/usr/bin/env bash
# 040_pitr_targets.sh -- ragsafe-pitr plan / restore against real PostgreSQL 15 WAL.
#
# A cluster archives through ragsafe-archive; one base backup by ragsafe-basebackup;
# then marks (clock_timestamp() after a commit, table contents) one second apart,
# an xid, a named restore point and an LSN. Each target is restored into a new data
# directory, started, and its table compared exactly with what the mark recorded:
# two times between commits, an xid (inclusive and exclusive), a restore point, an
# LSN, latest and immediate. restore --start follows recovery to a paused target and
# reports where it stopped. The restored directory is owned by postgres, mode 0700,
# carries recovery.signal and the settings with an explicit +00 offset.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
pg_archiving src "$REPO" || exit 1

state() { pg_sql "$1" "select count(*) || ':' || coalesce(sum(id), 0) from t"; }
# restore_to NAME ARGS...: ragsafe-pitr restore into $T/NAME.
restore_to() {
    local name=$1; shift
    "$PITR" restore --repo "$REPO" --pgdata "$T/$name" "$@" >"$T/$name.out" 2>"$T/$name.err"
}
# boot NAME: start a restored cluster on its own socket, without archiving, and wait
# until recovery has ended (promoted).
boot() {
    # (the source's socket lock file came with the backup; ragsafe-pitr leaves it out)
    pg_set "$1" "unix_socket_directories = '$T/$1'"
    pg_set "$1" "archive_mode = off"
    pg_start "$1" && pg_wait_for "$1" "select pg_is_in_recovery()" f 120
}
# check_restore NAME EXPECTED DESC ARGS...: restore, boot, compare, stop, remove.
check_restore() {
    local name=$1 want=$2 desc=$3; shift 3
    restore_to "$name" "$@"
    local rc=$?
    is "$desc: restore exits 0" 0 "$rc"
    if [ "$rc" != 0 ]; then cat "$T/$name.err"; return; fi
    if boot "$name"; then
        is "$desc: table contents" "$want" "$(state "$name")"
    else
        fail "$desc: server recovers"; tail -20 "$T/$name.log"
    fi
    pg_stop "$name" >/dev/null 2>&1
    rm -rf "${T:?}/$name"
}

pg_sql src "create table t (id int primary key, v text)" || exit 1
pg_sql src "insert into t select g, md5(g::text) from generate_series(1, 100) g"
backup=$(as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast 2>"$T/bb.err")
is "base backup exits 0" 0 "$?"
[ -n "$backup" ] || { cat "$T/bb.err"; exit 1; }
S0=$(state src)

# marks: a commit, then the time right after it, one second apart
M=(); C=()
for i in 1 2 3; do
    sleep 1.1
    pg_sql src "insert into t select g, 'm$i' from generate_series($i * 1000, $i * 1000 + 9) g"
    M[$i]=$(pg_sql src "select clock_timestamp()")
    C[$i]=$(state src)
done
sleep 1.1
XID=$(pg_sql src "insert into t values (5000, 'xid'); select txid_current()")
C_XID=$(state src)
pg_sql src "insert into t values (5001, 'after xid')"
pg_sql src "select pg_create_restore_point('before_delete')" >/dev/null
C_RP=$(state src)
pg_sql src "delete from t where id < 50"
LSN=$(pg_sql src "select pg_current_wal_lsn()")
C_LSN=$(state src)
sleep 1.1
pg_sql src "insert into t values (6000, 'last')"
C_LAST=$(state src)
switch_wal src || exit 1

# --- plan ----------------------------------------------------------------------------
"$PITR" plan --repo "$REPO" --target-time "${M[2]}" >"$T/plan.out" 2>"$T/plan.err"
is "plan exits 0" 0 "$?"
ok "plan names the backup" grep -q "backup: *$backup" "$T/plan.out"
ok "plan shows the timeline path" grep -q "timeline path: *1" "$T/plan.out"
ok "plan shows first and last segment" grep -Eq "wal: *[0-9A-F]{24} \.\. [0-9A-F]{24}" "$T/plan.out"
ok "plan estimates the recovery time" grep -q "estimate:" "$T/plan.out"
"$PITR" plan --repo "$REPO" --target-time "${M[2]}" --json >"$T/plan.json"
is "plan --json names the backup" "$backup" "$(jq -r .backup "$T/plan.json")"
ok "plan --json stops before a later commit" grep -q "before commit" <<<"$(jq -r .stop "$T/plan.json")"

# a time without an offset is read in the local zone; the plan shows the UTC instant
local_m2=$(TZ=Asia/Tokyo date -d "${M[2]}" '+%Y-%m-%d %H:%M:%S.%6N')
TZ=Asia/Tokyo "$PITR" plan --repo "$REPO" --target-time "$local_m2" --json >"$T/plan_local.json"
is "local time resolves to the same UTC instant" "$(date -u -d "${M[2]}" '+%Y-%m-%dT%H:%M:%S.%6NZ')" \
    "$(jq -r .target.utc "$T/plan_local.json")"
TZ=Asia/Tokyo "$PITR" plan --repo "$REPO" --target-time "$local_m2" >"$T/plan_local.out"
ok "plan prints the UTC instant" grep -Eq "= $(date -u -d "${M[2]}" '+%Y-%m-%dT%H:%M:%S')\.[0-9]{6}Z" "$T/plan_local.out"
exit_is "malformed time: usage error" 2 "$PITR" plan --repo "$REPO" --target-time "yesterday" 2>/dev/null
exit_is "two targets: usage error" 2 "$PITR" plan --repo "$REPO" --target-latest --target-xid 5 2>/dev/null
exit_is "no target: usage error" 2 "$PITR" plan --repo "$REPO" 2>/dev/null
exit_is "not a repository: exit 1" 1 "$PITR" info --repo "$T" 2>/dev/null

# --- restores, compared exactly ------------------------------------------------------
check_restore r_t1 "${C[1]}" "time mark 1" --target-time "${M[1]}"
check_restore r_t2 "${C[2]}" "time mark 2" --target-time "${M[2]}"
check_restore r_xid "$C_XID" "xid $XID" --target-xid "$XID"
check_restore r_xidx "${C[3]}" "xid $XID exclusive" --target-xid "$XID" --exclusive
check_restore r_rp "$C_RP" "restore point" --target-name before_delete
check_restore r_lsn "$C_LSN" "lsn $LSN" --target-lsn "$LSN"
check_restore r_latest "$C_LAST" "latest" --target-latest
check_restore r_imm "$S0" "immediate" --target-immediate

# --- what a restore leaves behind ----------------------------------------------------
restore_to r_look --target-time "${M[2]}"
is "restore exits 0" 0 "$?"
is "data directory owned by postgres" "postgres" "$(stat -c %U "$T/r_look")"
is "data directory mode 0700" "700" "$(stat -c %a "$T/r_look")"
is "files inside owned by postgres" "" "$(find "$T/r_look" ! -user postgres | head -1)"
ok "recovery.signal created" test -f "$T/r_look/recovery.signal"
ok "no recovery.conf" test ! -e "$T/r_look/recovery.conf"
auto=$T/r_look/postgresql.auto.conf
ok "restore_command names ragsafe-restore by absolute path" \
    grep -q "^restore_command = '''$RAGSAFE_BIN/ragsafe-restore'' --repo ''$REPO'' %f %p'" "$auto"
ok "recovery_target_time has an explicit +00 offset" \
    grep -Eq "^recovery_target_time = '[0-9-]{10} [0-9:.]{15}\+00'" "$auto"
ok "recovery_target_timeline written" grep -q "^recovery_target_timeline = '1'" "$auto"
ok "recovery_target_action written" grep -q "^recovery_target_action = 'promote'" "$auto"
ok "the source's socket lock file is in the backup" grep -q '"Path": ".s.PGSQL.5432.lock"' "$T/r_look/backup_manifest"
ok "... but not restored (a reused PID in it would stop the server from starting)" \
    test ! -e "$T/r_look/.s.PGSQL.5432.lock"
ok "backup_manifest copied for pg_verifybackup (the lock file, runtime state, ignored)" \
    "$PGBIN/pg_verifybackup" --no-parse-wal -q -i .s.PGSQL.5432.lock "$T/r_look"
rm -rf "${T:?}/r_look"

# --- --start follows recovery and reports where it stopped ---------------------------
pg_stop src
T_CLUSTERS+=(r_start)
"$PITR" restore --repo "$REPO" --pgdata "$T/r_start" --target-time "${M[2]}" \
    --target-action pause --start --json >"$T/r_start.json" 2>"$T/r_start.err"
is "restore --start exits 0" 0 "$?"
is "recovery paused at the target" "paused" "$(jq -r .recovery.state "$T/r_start.json")"
usecs() { date -u -d "$1" +%s%6N; }
is "reported last replay timestamp is mark 2's commit" \
    "$(usecs "$(jq -r .last_commit_time "$T/r_start.json")")" \
    "$(usecs "$(jq -r .recovery.last_replay_timestamp "$T/r_start.json")")"
ok "reported replay lsn" grep -Eq '^[0-9A-F]+/[0-9A-F]+$' <<<"$(jq -r .recovery.last_replay_lsn "$T/r_start.json")"
is "paused server shows mark 2" "${C[2]}" \
    "$(as_pg "$PGBIN/psql" -XAtq -h "$T/src" -p 5432 -U postgres -d postgres \
        -c "select count(*) || ':' || coalesce(sum(id), 0) from t")"
as_pg "$PGBIN/pg_ctl" -D "$T/r_start" -m fast -w stop >/dev/null

t_done
