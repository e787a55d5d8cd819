#!/usr/bin/env bash
# ragsafe-test: serial (an assertion measures time: runs alone, see tests/run.sh)
# 090_receive -- ragsafe-receive: WAL streamed into the repository next to
# archive_command (each segment stored once, archive_command never failing on one the
# receiver stored first, the same bytes as pg_wal's), SIGTERM (exit 0, the partial and
# stream/status.json stored), a second run resuming the spool, a server of another
# cluster refused, and a recovery point of zero: a synchronous receiver, a commit, the
# primary stopped with -m immediate and its data directory deleted; a restore from the
# repository alone has the row.
T_NAME=090_receive
. "$(dirname "$0")/lib.sh"
t_init

RECV=$RAGSAFE_BIN/ragsafe-receive
PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
SPOOL=$T/spool
pg_archiving src "$REPO" || exit 1
pg_set src "wal_keep_size = 0"
install -d -o postgres -m 0700 "$SPOOL"

# receiver_start LOG [ARGS...]: ragsafe-receive in the background as postgres; RPID.
receiver_start() {
    local log=$1; shift
    # setpriv execs (runuser would fork): RPID is the receiver itself
    setpriv --reuid=postgres --regid=postgres --clear-groups \
        "$RECV" --repo "$REPO" --spool "$SPOOL" -d "$(pg_conn src)" --slot rs -v "$@" >>"$log" 2>&1 &
    RPID=$!
    t_on_exit "kill -9 $RPID"
}
streaming() {
    pg_wait_for src "select count(*) from pg_stat_replication where application_name = 'ragsafe_receive' and state = 'streaming'" 1 30
}
# status_field FIELD: a field of stream/status.json (a plain repository: plain JSON;
# jq is not assumed, and the fields are flat)
status_field() {
    sed -E 's/^\{//; s/\}$//; s/,"/\n"/g' "$REPO/stream/status.json" 2>/dev/null |
        sed -nE "s/^\"$1\":\"?([^\"]*)\"?\$/\\1/p"
}
lsn_num() { echo $(( (0x${1%/*} << 32) | 0x${1#*/} )); }
lsn_ge() { [ "$(lsn_num "$1")" -ge "$(lsn_num "$2")" ]; }
# wait_flushed LSN: until status.json reports flush_lsn >= LSN (20 s)
wait_flushed() {
    local i f
    for ((i = 0; i < 100; i++)); do
        f=$(status_field flush_lsn) && [ -n "$f" ] && lsn_ge "$f" "$1" && return 0
        sleep 0.2
    done
    echo "# flush_lsn ${f:-none}, wanted $1" >&2
    return 1
}

pg_sql src "create table t (v text)" || exit 1
bb=$(as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast 2>"$T/bb.err")
ok "base backup taken" [ -n "$bb" ] || cat "$T/bb.err"

# --- a first run, under load, next to archive_command ---
receiver_start "$T/recv1.log" --create-slot
ok "receiver connects (pg_stat_replication: streaming)" streaming
ok "--create-slot made a physical slot" \
    pg_wait_for src "select slot_type from pg_replication_slots where slot_name = 'rs'" physical 5
as_pg "$PGBIN/pgbench" -h "$T/src" -U postgres -i -s 3 postgres >"$T/pgbench-i.log" 2>&1
as_pg "$PGBIN/pgbench" -h "$T/src" -U postgres -T 4 -c 2 postgres >"$T/pgbench.log" 2>&1
pg_sql src "insert into t values ('x')"
switch_wal src
# a record in the new segment, so the segment in progress has bytes whatever the timing
# (right after the switch it may have none yet, and no partial)
pg_sql src "insert into t values ('y')"
lsn=$(pg_sql src "select pg_current_wal_flush_lsn()")
ok "status.json reaches the primary's flush position" wait_flushed "$lsn"
# asynchronous (not in synchronous_standby_names yet): the repository holds a commit once
# --partial-interval (1 s) has passed; 3 s allowed for a loaded machine
pg_sql src "insert into t values ('z')"
lsn_z=$(pg_sql src "select pg_current_wal_flush_lsn()")
seg_z=$(pg_sql src "select pg_walfile_name('$lsn_z')")
sleep 3
f=$(status_field flush_lsn)
ok "asynchronous: 3 s after a commit, status.json covers it (flushed ${f:-none}, commit $lsn_z)" \
    lsn_ge "${f:-0/0}" "$lsn_z"
ok "... and the stored partial holds its bytes" \
    bash -c 'zstd -qdc "$1" >"$3/pz" && n=$(( $(printf "%d" 0x${4#*/}) % 16777216 )) &&
             cmp -n "$n" "$3/pz" "$2"' _ "$REPO/stream/00000001/$seg_z.partial" \
    "$T/src/pg_wal/$seg_z" "$T" "$lsn_z"

seg_now=$(pg_sql src "select pg_walfile_name(pg_current_wal_lsn())")
# every segment the receiver completed is in wal/ (it stores them before removing them
# from the spool)
for ((i = 0; i < 50; i++)); do
    ls "$SPOOL" | grep -qE '^[0-9A-F]{24}$' || break
    sleep 0.2
done
kill -TERM "$RPID"
wait "$RPID"
is "SIGTERM: exit 0" 0 "$?"
RPID=
is "SIGTERM: the spool holds only the segment in progress" "$seg_now.partial" "$(ls "$SPOOL")"
ok "SIGTERM: stream/00000001/$seg_now.partial stored" [ -f "$REPO/stream/00000001/$seg_now.partial" ]
ok "the partial is a zstd object of one segment, its flushed bytes the primary's" \
    bash -c 'zstd -qdc "$1" >"$3/p" && [ "$(stat -c %s "$3/p")" = 16777216 ] &&
             n=$(( $(printf "%d" 0x${4#*/}) % 16777216 )) &&
             cmp -n "$n" "$3/p" "$2"' _ "$REPO/stream/00000001/$seg_now.partial" \
    "$T/src/pg_wal/$seg_now" "$T" "$lsn"
for f in format system_identifier slot application_name timeline flush_lsn flush_time segment pid host updated server_lsn; do
    s=$(status_field "$f")
    ok "status.json has $f ($s)" [ -n "$s" ]
done
is "status.json: system_identifier is the primary's" \
    "$(pg_sql src "select system_identifier from pg_control_system()")" "$(status_field system_identifier)"
is "status.json: segment" "$seg_now" "$(status_field segment)"

failed=$(pg_sql src "select failed_count from pg_stat_archiver")
is "archive_command never failed (pg_stat_archiver.failed_count)" 0 "$failed"
ok "the receiver stored segments archive_command had stored, or the other way round" \
    bash -c 'grep -q "already archived with identical content" "$1" "$2"' _ "$T/recv1.log" "$T/src.log"
# every segment in wal/ still in pg_wal: the same bytes (a zstd stream, one per name)
n=0 bad=
for z in "$REPO"/wal/*/*.zst; do
    name=$(basename "$z" .zst)
    [[ $name =~ ^[0-9A-F]{24}$ ]] || continue
    [ -f "$T/src/pg_wal/$name" ] && [[ $name < $seg_now ]] || continue
    n=$((n + 1))
    zstd -qdc "$z" | cmp -s - "$T/src/pg_wal/$name" || bad="$bad $name"
done
ok "segments compared with pg_wal ($n)" [ "$n" -ge 2 ]
is "every stored segment equals pg_wal's" "" "$bad"
ok "stored segments made their partials go (only the segment in progress has one)" \
    bash -c '[ "$(ls "$1" | wc -l)" = 1 ]' _ "$REPO/stream/00000001"

# --- a second run resumes the spool, as the synchronous standby ---
pg_sql src "alter system set synchronous_standby_names = 'ragsafe_receive'"
pg_sql src "select pg_reload_conf()" >/dev/null
receiver_start "$T/recv2.log"
ok "second run: connects" streaming
ok "second run: resumes the spooled segment" \
    bash -c 'sleep 1; grep -q "resuming spooled segment \"$2.partial\"" "$1"' _ "$T/recv2.log" "$seg_now"

# --- synchronous: a commit returns only once the receiver has it ---
ok "the receiver is the synchronous standby" \
    pg_wait_for src "select sync_state from pg_stat_replication where application_name = 'ragsafe_receive'" sync 20
pg_sql src "insert into t values ('before')"
last=$(pg_sql src "insert into t values ('the last row') returning pg_current_wal_insert_lsn()")
as_pg "$PGBIN/pg_ctl" -D "$T/src" -m immediate -w stop >/dev/null
rm -rf "${T:?}/src"
ok "the primary is gone" [ ! -d "$T/src" ]
ok "the receiver stores the partial holding the last commit ($last)" wait_flushed "$last"
is "status.json: synchronous" true "$(status_field synchronous)"
kill -TERM "$RPID"
wait "$RPID"
is "second run: SIGTERM exit 0 with the server gone" 0 "$?"
RPID=

"$PITR" restore --repo "$REPO" --pgdata "$T/r" --target-latest >"$T/r.out" 2>"$T/r.err"
rc=$?
is "pitr restore --target-latest: exit 0" 0 "$rc"
[ "$rc" = 0 ] || cat "$T/r.err"
pg_set r "unix_socket_directories = '$T/r'"
pg_set r "archive_mode = off"
if pg_start r && pg_wait_for r "select pg_is_in_recovery()" f 120; then
    is "recovery point zero: the last committed row is back" "before,the last row,x,y,z" \
        "$(pg_sql r "select string_agg(v, ',' order by v) from t")"
else
    fail "the restored server recovers"
    tail -20 "$T/r.log"
fi
ok "recovery used the streamed partial" grep -q "streamed partial segment" "$T/r.log"
pg_stop r

# --- a server of another cluster is refused ---
pg_init other || exit 1
pg_start other || exit 1
as_pg "$RECV" --repo "$REPO" --spool "$SPOOL" -d "$(pg_conn other)" >"$T/other.out" 2>"$T/other.err"
rc=$?
is "another cluster: exit 3" 3 "$rc"
ok "another cluster: the refusal names it" grep -q "refusing to stream from a server of another database system" "$T/other.err"
ok "another cluster: the spool is untouched" [ -f "$SPOOL/$(ls "$SPOOL" | head -1)" ]

exit_is "no --spool: exit 2" 2 "$RECV" --repo "$REPO" -d "$(pg_conn other)"
exit_is "relative --spool: exit 2" 2 "$RECV" --repo "$REPO" --spool spool -d "$(pg_conn other)"
t_done
