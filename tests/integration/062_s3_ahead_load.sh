#!/usr/bin/env bash
# ragsafe-test: serial (an assertion measures time: runs alone, see tests/run.sh)
# 062_s3_ahead_load.sh -- ragsafe-archive's look-ahead keeps up with a busy primary over
# a remote store's latency. A cluster with 1 MiB WAL segments (many segments a second
# under pgbench) archives into a local s3rver behind a proxy adding DELAY ms to every
# request (tests/integration/s3_proxy.py), first with --look-ahead 0, then with
# --look-ahead 4. Asserted: without look-ahead the ready backlog in pg_wal grows (a few
# upload round trips per segment cannot keep up) and archiving ends seconds after the
# load; with it archiving is done within moments of the load's end (segments archived
# ahead still show .ready until PostgreSQL asks for them, which then returns at once,
# so the lag, not the .ready count, is what tells), and every segment in the bucket
# restores to exactly the bytes PostgreSQL handed over (a cp beside the archiver).
source "$(dirname "$0")/lib.sh"
t_init

BUCKET=ragsafe
DELAY=${DELAY:-100}
LOAD_SECS=${LOAD_SECS:-12}
s3_start "$BUCKET"
PPORT=$(free_port)
echo "delay $DELAY" >"$T/ctl"
python3 "$RAGSAFE_SRC/tests/integration/s3_proxy.py" "$PPORT" "$S3PORT" "$T/ctl" 2>"$T/proxy.log" &
t_on_exit "kill $!"
wait_port "$PPORT" || { fail "the latency proxy starts"; t_done; exit 1; }
export RAGSAFE_S3_ENDPOINT=http://127.0.0.1:$PPORT

ready() { ls "$T/$1/pg_wal/archive_status" | grep -c '\.ready$'; }

# run NAME AHEAD: a cluster under pgbench for LOAD_SECS; the largest and the final
# ready backlog go to $T/NAME.max and $T/NAME.end; then the catch-up time in s.
run() {
    local name=$1 ahead=$2 max=0 n i last
    pg_init "$name" --wal-segsize=1 || return 1
    mkdir -p "$T/copy.$name" && chown postgres: "$T/copy.$name"
    pg_set "$name" "archive_mode = on"
    pg_set "$name" "archive_command = 'cp %p $T/copy.$name/%f && $RAGSAFE_BIN/ragsafe-archive --repo s3://$BUCKET/$name --look-ahead $ahead %p %f'"
    pg_set "$name" "max_wal_size = 64MB"
    pg_set "$name" "min_wal_size = 4MB"
    pg_start "$name" || return 1
    as_pg "$PGBIN/pgbench" -h "$T/$name" -p 5432 -U postgres -i -s 2 -q postgres >/dev/null 2>&1
    as_pg "$PGBIN/pgbench" -h "$T/$name" -p 5432 -U postgres -n -c 2 -T "$LOAD_SECS" postgres >/dev/null 2>&1 &
    local bench=$!
    while kill -0 "$bench" 2>/dev/null; do
        n=$(ready "$name")
        [ "$n" -gt "$max" ] && max=$n
        sleep 0.25
    done
    wait "$bench"
    echo "$max" >"$T/$name.max"
    ready "$name" >"$T/$name.end"
    last=$(pg_sql "$name" "select pg_walfile_name(pg_switch_wal())")
    echo "$last" >"$T/$name.last"
    for ((i = 0; i < 600; i++)); do
        [ "$(pg_sql "$name" "select coalesce(last_archived_wal >= '$last', false) from pg_stat_archiver")" = t ] && break
        sleep 0.1
    done
    echo "$((i / 10))" >"$T/$name.catchup"
    pg_sql "$name" "select archived_count, failed_count from pg_stat_archiver" >"$T/$name.stat"
}

run slow 0 || { fail "cluster slow"; t_done; exit 1; }
pg_stop slow
run fast 4 || { fail "cluster fast"; t_done; exit 1; }
echo "# ready backlog without look-ahead: max $(cat "$T/slow.max"), at the end $(cat "$T/slow.end")"
echo "# ready backlog with look-ahead:    max $(cat "$T/fast.max"), at the end $(cat "$T/fast.end")"
echo "# caught up after the load in: without $(cat "$T/slow.catchup") s, with $(cat "$T/fast.catchup") s"
echo "# pg_stat_archiver (archived, failed): slow $(cat "$T/slow.stat"), fast $(cat "$T/fast.stat")"
ok "without look-ahead the backlog grows (at least 10 segments behind at the end)" [ "$(cat "$T/slow.end")" -ge 10 ]
ok "... and archiving lags the load by seconds (at least 3 s to catch up)" [ "$(cat "$T/slow.catchup")" -ge 3 ]
ok "with look-ahead archiving catches up within 3 s of the load's end" [ "$(cat "$T/fast.catchup")" -le 3 ]
ok "... sooner than without look-ahead" [ "$(cat "$T/fast.catchup")" -lt "$(cat "$T/slow.catchup")" ]
archived=$(cut -d'|' -f1 "$T/fast.stat")
# enough segments for the backlogs above to mean something (pgbench's rate depends on
# the machine's load: 26-29 on a loaded 2-core machine, more on an idle one)
ok "many segments archived under load ($archived)" [ "$archived" -ge 20 ]
ok "no archive call failed" [ "$(cut -d'|' -f2 "$T/fast.stat")" -eq 0 ]
pg_stop fast

# every archived segment restores from the bucket to exactly the bytes cp saw
echo ok >"$T/ctl"
mapfile -t SEGS < <(cd "$T/copy.fast" && ls | grep -E '^[0-9A-F]{24}$' | sort)
n=0 bad=0
for s in "${SEGS[@]}"; do
    n=$((n + 1))
    (cd "$T" && as_pg "$RAGSAFE_BIN/ragsafe-restore" --repo "s3://$BUCKET/fast" --prefetch 0 "$s" "out.seg") \
        && cmp -s "$T/out.seg" "$T/copy.fast/$s" || { bad=$((bad + 1)); echo "# $s differs or is missing"; }
    rm -f "$T/out.seg"
done
ok "at least 20 archived segments checked ($n)" [ "$n" -ge 20 ]
is "every archived segment restores identically from the bucket ($n checked)" 0 "$bad"
s3_all_signed
t_done
