#!/usr/bin/env bash
# 014_wal_kill9.sh -- kill -9 at random moments, on both the io_uring path and the
# fallback (RAGSAFE_NO_URING=1).
#
# 50 trials per path: ragsafe-archive on a real pgbench segment into a repository that
# starts empty (so the first trials also race the creation of repo.json), killed after
# a random sleep of 0 to 1.3x one run's time (bounded to 40..400 ms). After every
# trial there is either no object under the final name or one that decompresses to
# exactly the source, and repo.json is absent or complete. Stale temp files are left in place between trials: the final
# normal runs must still succeed. Then 25 kills of ragsafe-restore: %p is absent or
# exact, never partial.
source "$(dirname "$0")/lib.sh"
t_init

ARCH=$RAGSAFE_BIN/ragsafe-archive
REST=$RAGSAFE_BIN/ragsafe-restore
TRIALS=${WAL_KILL_TRIALS:-50}

in_mode() {
    local m=$1; shift
    if [ "$m" = fallback ]; then
        as_pg env RAGSAFE_NO_URING=1 "$@"
    else
        as_pg env -u RAGSAFE_NO_URING "$@"
    fi
}
# bg_mode MODE CMD...: start CMD as postgres in the background such that $! is CMD
# itself (setpriv and env exec; runuser would stay in between and take the signal).
bg_mode() {
    local m=$1; shift
    if [ "$m" = fallback ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups env RAGSAFE_NO_URING=1 "$@" &
    else
        setpriv --reuid=postgres --regid=postgres --init-groups env -u RAGSAFE_NO_URING "$@" &
    fi
}
wal_key() {
    case $1 in
        *.history) echo "wal/$1.zst" ;;
        *) echo "wal/${1:0:16}/$1.zst" ;;
    esac
}
obj_matches() {
    [ -f "$1" ] && zstd -q -t "$1" 2>/dev/null && zstd -q -dc <"$1" 2>/dev/null | cmp -s - "$2"
}
# msleep MS: sleep MS milliseconds.
msleep() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# Real WAL from a cluster archiving with cp.
pg_cp_archiving a "$T/segs" || exit 1
as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -i -s 4 -q postgres >/dev/null 2>&1
as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -n -t 500 postgres >/dev/null 2>&1
last=$(pg_sql a "select pg_walfile_name(pg_switch_wal())")
pg_wait_for a "select last_archived_wal >= '$last' from pg_stat_archiver" t 60 || exit 1
SYSID=$(as_pg "$PGBIN/pg_controldata" -D "$T/a" | awk -F: '/Database system identifier/ {gsub(/ /, "", $2); print $2}')
pg_stop a
mapfile -t SEGS < <(cd "$T/segs" && ls | grep -E '^[0-9A-F]{24}$' | sort)
ok "the source cluster produced at least 3 segments" [ "${#SEGS[@]}" -ge 3 ]
# two full segments of pgbench data
SA=${SEGS[1]} SB=${SEGS[2]}
chmod -R a+rX "$T/segs"

for mode in uring fallback; do
    R=$T/repo_$mode
    repo_init "$R" "$T/scratch_$mode"

    # how long one run takes here, to spread the kills over all of it
    t0=$(now_ms)
    in_mode $mode "$ARCH" --repo "$T/scratch_$mode" "$T/segs/$SA" "$SA"
    dur=$(($(now_ms) - t0))
    range=$((dur * 13 / 10))
    [ $range -lt 40 ] && range=40
    [ $range -gt 400 ] && range=400     # a loaded machine: keep the test short
    echo "# $mode: one archive run takes $dur ms; kills after 0..$range ms"

    killed=0 finished=0 other=0 wrong=0 badjson=0 kept=0
    for ((i = 0; i < TRIALS; i++)); do
        if ((i % 2)); then s=$SB; else s=$SA; fi
        bg_mode $mode "$ARCH" --repo "$R" "$T/segs/$s" "$s" 2>/dev/null
        pid=$!
        msleep $((RANDOM % (range + 1)))
        kill -9 $pid 2>/dev/null
        wait $pid 2>/dev/null
        st=$?
        case $st in
            137) killed=$((killed + 1)) ;;
            0) finished=$((finished + 1)) ;;
            *) other=$((other + 1)); echo "# trial $i: exit $st" ;;
        esac
        o=$R/$(wal_key "$s")
        if [ -e "$o" ]; then
            if obj_matches "$o" "$T/segs/$s"; then
                kept=$((kept + 1))
            else
                wrong=$((wrong + 1)); echo "# trial $i: wrong object under the final name $o"
                cp "$o" "$T/wrong-$mode-$i.zst"
            fi
            # remove it (sometimes) so the next trials write it again
            ((RANDOM % 4)) && rm -f "$o"
        fi
        if [ -e "$R/repo.json" ] && ! grep -q "\"system_identifier\" *: *\"$SYSID\"" "$R/repo.json"; then
            badjson=$((badjson + 1)); echo "# trial $i: incomplete repo.json"
        fi
    done
    ntemp=$(find "$R" -name '.*' 2>/dev/null | wc -l)
    echo "# $mode: $TRIALS trials: $killed killed while running, $finished finished, $other other;" \
        "$kept final objects seen (all checked), $ntemp stale temp files left"
    ok "$mode: at least $TRIALS kill trials ran" [ $((killed + finished + other)) -ge "$TRIALS" ]
    ok "$mode: the kills hit running processes ($killed of $TRIALS)" [ "$killed" -ge $((TRIALS / 5)) ]
    is "$mode: no exit status other than 0 or SIGKILL" 0 "$other"
    is "$mode: never a wrong object under a final name" 0 "$wrong"
    is "$mode: repo.json never incomplete" 0 "$badjson"

    # normal runs after the carnage, stale temps and all
    exit_is "$mode: a normal run archives $SA afterwards" 0 in_mode $mode "$ARCH" --repo "$R" "$T/segs/$SA" "$SA"
    exit_is "$mode: a normal run archives $SB afterwards" 0 in_mode $mode "$ARCH" --repo "$R" "$T/segs/$SB" "$SB"
    ok "$mode: $SA stored and exact" obj_matches "$R/$(wal_key "$SA")" "$T/segs/$SA"
    ok "$mode: $SB stored and exact" obj_matches "$R/$(wal_key "$SB")" "$T/segs/$SB"
    ok "$mode: repo.json pins the cluster" grep -q "\"system_identifier\" *: *\"$SYSID\"" "$R/repo.json"

    # ragsafe-restore killed at random moments: %p absent or exact, never partial
    D=$T/data_$mode
    as_pg mkdir -p "$D/pg_wal"
    rkilled=0 rwrong=0
    for ((i = 0; i < TRIALS / 2; i++)); do
        rm -f "$D/pg_wal/RECOVERYXLOG"
        bg_mode $mode "$REST" --repo "$R" "$SA" "$D/pg_wal/RECOVERYXLOG" 2>/dev/null
        pid=$!
        msleep $((RANDOM % (range + 1)))
        kill -9 $pid 2>/dev/null
        wait $pid 2>/dev/null
        [ $? = 137 ] && rkilled=$((rkilled + 1))
        if [ -e "$D/pg_wal/RECOVERYXLOG" ] && ! cmp -s "$D/pg_wal/RECOVERYXLOG" "$T/segs/$SA"; then
            rwrong=$((rwrong + 1)); echo "# restore trial $i: partial %p"
        fi
    done
    echo "# $mode: $((TRIALS / 2)) restore trials, $rkilled killed while running"
    is "$mode: a killed restore never leaves a partial %p" 0 "$rwrong"
    rm -f "$D/pg_wal/RECOVERYXLOG"
    exit_is "$mode: a normal restore works afterwards" 0 in_mode $mode "$REST" --repo "$R" "$SA" "$D/pg_wal/RECOVERYXLOG"
    ok "$mode: ... exact" cmp -s "$D/pg_wal/RECOVERYXLOG" "$T/segs/$SA"
done

t_done
