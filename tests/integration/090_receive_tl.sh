#!/usr/bin/env bash
# 090_receive_tl -- ragsafe-receive following a standby (a cascading walsender, what a
# backup host next to a replica does): the primary goes, the standby is promoted to
# timeline 2, the receiver follows the end of timeline 1 onto timeline 2 (history file
# stored, streaming goes on); then the server is stopped and started again (the
# connection lost): the receiver reconnects and loses nothing. A restore from the
# repository reaches the last commit on timeline 2.
T_NAME=090_receive_tl
. "$(dirname "$0")/lib.sh"
t_init

RECV=$RAGSAFE_BIN/ragsafe-receive
REPO=$T/repo
SPOOL=$T/spool
pg_archiving p "$REPO" || exit 1
install -d -o postgres -m 0700 "$SPOOL"

status_field() {
    sed -E 's/^\{//; s/\}$//; s/,"/\n"/g' "$REPO/stream/status.json" 2>/dev/null |
        sed -nE "s/^\"$1\":\"?([^\"]*)\"?\$/\\1/p"
}
lsn_num() { echo $(( (0x${1%/*} << 32) | 0x${1#*/} )); }
# wait_flushed TLI LSN: until status.json reports that timeline and flush_lsn >= LSN
wait_flushed() {
    local i f
    for ((i = 0; i < 150; i++)); do
        f=$(status_field flush_lsn)
        [ -n "$f" ] && [ "$(status_field timeline)" = "$1" ] &&
            [ "$(lsn_num "$f")" -ge "$(lsn_num "$2")" ] && return 0
        sleep 0.2
    done
    echo "# timeline $(status_field timeline) flush_lsn ${f:-none}, wanted $1 $2" >&2
    return 1
}

pg_sql p "create table t (v text)" || exit 1
bb=$(as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn p)" --repo "$REPO" -c fast 2>"$T/bb.err")
ok "base backup taken" [ -n "$bb" ] || cat "$T/bb.err"

# a streaming standby of p, not archiving (the receiver alone stores its timeline 2)
as_pg "$PGBIN/pg_basebackup" -D "$T/s" -h "$T/p" -p 5432 -U postgres -R -X stream -c fast \
    >"$T/s.bb.log" 2>&1 || { cat "$T/s.bb.log"; exit 1; }
rm -f "$T"/s/.s.PGSQL.*  # the source's socket lock came with the copy
pg_set s "unix_socket_directories = '$T/s'"
pg_set s "archive_mode = off"
pg_start s || exit 1

setpriv --reuid=postgres --regid=postgres --clear-groups \
    "$RECV" --repo "$REPO" --spool "$SPOOL" -d "$(pg_conn s)" --slot rs --create-slot -v \
    >>"$T/recv.log" 2>&1 &
RPID=$!
t_on_exit "kill -9 $RPID"

pg_sql p "insert into t values ('tl1')"
lsn1=$(pg_sql p "select pg_current_wal_flush_lsn()")
ok "the receiver follows the standby on timeline 1" wait_flushed 1 "$lsn1"

pg_stop p
as_pg "$PGBIN/pg_ctl" -D "$T/s" -w promote >/dev/null
ok "the standby is promoted to timeline 2" \
    pg_wait_for s "select timeline_id from pg_control_checkpoint()" 2 60
pg_sql s "insert into t values ('tl2')"
lsn2=$(pg_sql s "select pg_current_wal_flush_lsn()")
ok "the receiver follows onto timeline 2" wait_flushed 2 "$lsn2"
ok "the receiver said so" grep -q "timeline 1 ended; following timeline 2" "$T/recv.log"
ok "00000002.history stored" [ -f "$REPO/wal/00000002.history.zst" ]
ok "the history file is the server's" \
    bash -c 'zstd -qdc "$1" | cmp -s - "$2"' _ "$REPO/wal/00000002.history.zst" "$T/s/pg_wal/00000002.history"

# the connection lost: the server stops and comes back
pg_stop s
sleep 1
pg_start s || exit 1
pg_sql s "insert into t values ('after restart')"
pg_sql s "select pg_switch_wal()" >/dev/null
pg_sql s "insert into t values ('last')"
lsn3=$(pg_sql s "select pg_current_wal_flush_lsn()")
ok "the receiver reconnects after the server's restart and catches up" wait_flushed 2 "$lsn3"
ok "it reconnected" grep -q "reconnecting in" "$T/recv.log"
kill -TERM "$RPID"
wait "$RPID"
is "SIGTERM: exit 0" 0 "$?"

# timeline 2 in wal/: from its first segment to the one before the current, no gap,
# each equal to the standby's pg_wal copy
cur=$(pg_sql s "select pg_walfile_name(pg_current_wal_lsn())")
gap= wrong= n=0
for f in "$T"/s/pg_wal/00000002????????????????; do
    name=$(basename "$f")
    [[ $name < $cur ]] || continue
    n=$((n + 1))
    z=$REPO/wal/${name:0:16}/$name.zst
    if [ ! -f "$z" ]; then gap="$gap $name"; continue; fi
    zstd -qdc "$z" | cmp -s - "$f" || wrong="$wrong $name"
done
ok "timeline 2 segments before the current one: $n" [ "$n" -ge 1 ]
is "timeline 2: no gap in wal/" "" "$gap"
is "timeline 2: each segment the server's" "" "$wrong"
ok "timeline 2: the segment in progress is a stream partial" [ -f "$REPO/stream/00000002/$cur.partial" ]

"$RAGSAFE_BIN/ragsafe-pitr" restore --repo "$REPO" --pgdata "$T/r" --target-latest >"$T/r.out" 2>"$T/r.err"
rc=$?
is "pitr restore --target-latest: exit 0" 0 "$rc"
[ "$rc" = 0 ] || cat "$T/r.err"
pg_set r "unix_socket_directories = '$T/r'"
pg_set r "archive_mode = off"
if pg_start r && pg_wait_for r "select pg_is_in_recovery()" f 120; then
    is "recovery on timeline 2 reaches the last commit" "after restart,last,tl1,tl2" \
        "$(pg_sql r "select string_agg(v, ',' order by v) from t")"
    is "the restored server came through timeline 2 (now on 3)" 3 \
        "$(pg_sql r "select timeline_id from pg_control_checkpoint()")"
else
    fail "the restored server recovers"
    tail -20 "$T/r.log"
fi
t_done
