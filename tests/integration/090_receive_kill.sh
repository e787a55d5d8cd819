#!/usr/bin/env bash
# 090_receive_kill -- ragsafe-receive killed with -9 at random moments under pgbench
# load, 30 times, restarted each time: what the server was told is flushed (the slot's
# restart_lsn) is always in the spool or the repository with the primary's bytes, and
# at the end wal/ holds every segment from the first streamed one on, no gap, each
# equal to the primary's pg_wal copy. No archive_command: wal/ is the receiver's alone.
T_NAME=090_receive_kill
. "$(dirname "$0")/lib.sh"
t_init

RECV=$RAGSAFE_BIN/ragsafe-receive
REPO=$T/repo
SPOOL=$T/spool
SEG=16777216
TRIALS=${TRIALS:-30}
repo_init "$REPO"
pg_init src || exit 1
pg_set src "wal_keep_size = 2GB"
pg_set src "max_wal_size = 2GB"
pg_start src || exit 1
install -d -o postgres -m 0700 "$SPOOL"

receiver_start() {
    setpriv --reuid=postgres --regid=postgres --clear-groups \
        "$RECV" --repo "$REPO" --spool "$SPOOL" -d "$(pg_conn src)" --slot rs --create-slot \
        --partial-interval 0.2 -v >>"$T/recv.log" 2>&1 &
    RPID=$!
    t_on_exit "kill -9 $RPID"
}
lsn_num() { echo $(( (0x${1%/*} << 32) | 0x${1#*/} )); }
segname() { printf '00000001%08X%08X' $(($1 / 256)) $(($1 % 256)); }

# flushed_ok: the slot's restart_lsn (the last flush position reported) is covered by
# the spool or the repository, with the primary's bytes
flushed_ok() {
    local r n off name f
    r=$(pg_sql src "select restart_lsn from pg_replication_slots where slot_name = 'rs'")
    [ -n "$r" ] || return 0
    n=$(lsn_num "$r")
    off=$((n % SEG))
    [ "$off" -gt 0 ] || return 0
    name=$(segname $((n / SEG)))
    for f in "$SPOOL/$name.partial" "$SPOOL/$name"; do
        if [ -f "$f" ]; then
            cmp -s -n "$off" "$f" "$T/src/pg_wal/$name" && return 0
            echo "# $f differs from pg_wal's below $r" >&2
            return 1
        fi
    done
    f=$REPO/wal/${name:0:16}/$name.zst
    if [ -f "$f" ]; then
        zstd -qdc "$f" | cmp -s -n "$off" - "$T/src/pg_wal/$name" && return 0
    fi
    echo "# flushed $r is in neither the spool nor the repository" >&2
    return 1
}

as_pg "$PGBIN/pgbench" -h "$T/src" -U postgres -i -s 2 postgres >"$T/pgbench-i.log" 2>&1
first=$(pg_sql src "select pg_walfile_name(pg_current_wal_lsn())")
as_pg "$PGBIN/pgbench" -h "$T/src" -U postgres -T 600 -c 2 postgres >"$T/pgbench.log" 2>&1 &
BPID=$!
t_on_exit "kill $BPID"

# warm-up: until the receiver has reported a flush, the slot's restart_lsn is where
# RESERVE_WAL put it (the last checkpoint's redo), which the receiver never claimed
receiver_start
ok "warm-up: the receiver reports a flush position" pg_wait_for src \
    "select restart_lsn > redo_lsn from pg_replication_slots, pg_control_checkpoint() where slot_name = 'rs'" t 60
kill -9 "$RPID"
wait "$RPID" 2>/dev/null
bad=0
flushed_ok || bad=$((bad + 1))
for ((i = 1; i <= TRIALS; i++)); do
    receiver_start
    sleep "0.$((RANDOM % 9 + 1))$((RANDOM % 10))"
    kill -9 "$RPID"
    wait "$RPID" 2>/dev/null
    flushed_ok || bad=$((bad + 1))
    # now and then a pg_switch_wal, so kills also land at segment ends
    [ $((i % 5)) = 0 ] && pg_sql src "select pg_switch_wal()" >/dev/null
done
is "$TRIALS kills: what was reported flushed was always spooled or stored" 0 "$bad"
kill "$BPID"
wait "$BPID" 2>/dev/null

receiver_start
pg_sql src "insert into pgbench_history (tid, bid, aid, delta) values (1, 1, 1, 1)"
end=$(pg_sql src "select pg_walfile_name(pg_current_wal_lsn())")
sw=$(pg_sql src "select pg_switch_wal()")
ok "the last run catches up (slot past the switch)" pg_wait_for src \
    "select restart_lsn >= '$sw' from pg_replication_slots where slot_name = 'rs'" t 60
for ((i = 0; i < 100; i++)); do
    [ -f "$REPO/wal/${end:0:16}/$end.zst" ] && break
    sleep 0.2
done
kill -TERM "$RPID"
wait "$RPID"
is "the last run: SIGTERM exit 0" 0 "$?"
ok "no error but lost connections in the receiver's log" \
    bash -c '! grep "error:" "$1" | grep -v "could not read the WAL stream\|could not connect\|is active for PID"' _ "$T/recv.log"

# every segment from the first to the last, each the primary's
gap= wrong= n=0
s=$((16#${first:16:8} + 16#${first:8:8} * 256))
e=$((16#${end:16:8} + 16#${end:8:8} * 256))
for ((k = s; k <= e; k++)); do
    name=$(segname "$k")
    z=$REPO/wal/${name:0:16}/$name.zst
    if [ ! -f "$z" ]; then gap="$gap $name"; continue; fi
    n=$((n + 1))
    zstd -qdc "$z" | cmp -s - "$T/src/pg_wal/$name" || wrong="$wrong $name"
done
ok "segments $first .. $end: more than a few ($n)" [ "$n" -ge 3 ]
is "no gap in wal/" "" "$gap"
is "every segment under its final name is the primary's" "" "$wrong"
is "no temp file left in the repository" "" "$(find "$REPO" -name '.*' -type f | head -3)"
t_done
