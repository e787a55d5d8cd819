#!/usr/bin/env bash
# 010_wal_roundtrip.sh -- a PostgreSQL 15 primary archives through ragsafe-archive under
# a pgbench load; a `pg_basebackup -X none` copy recovers through ragsafe-restore to
# the primary's exact state. Once on the io_uring path (16 MB segments) and once on
# the fallback path (RAGSAFE_NO_URING=1, 4 MB segments: the size comes from the page
# header, not assumed).
#
# The copy first meets a corrupted object (one flipped byte in the last segment):
# recovery must stop with FATAL (restore_command status > 125) instead of promoting
# early; once the object is repaired the same copy recovers to the primary's state,
# promotes, and archives its 00000002.history into the same repository.
source "$(dirname "$0")/lib.sh"
t_init

wal_key() {
    case $1 in
        *.history) echo "wal/$1.zst" ;;
        *) echo "wal/${1:0:16}/$1.zst" ;;
    esac
}
obj_matches() {
    [ -f "$1" ] && zstd -q -t "$1" 2>/dev/null && zstd -q -dc <"$1" 2>/dev/null | cmp -s - "$2"
}
flip_byte() {
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\x$(printf %02x $((b ^ 0xff)))" | dd of="$1" bs=1 seek="$2" count=1 conv=notrunc status=none
}
in_archive_recovery() { as_pg "$PGBIN/pg_controldata" -D "$1" | grep -q 'in archive recovery'; }
# recovery_outcome NAME LOGPOS: wait until the server started on NAME either exits
# ("down") or is ready after recovery ("up"); LOGPOS: where its log began.
recovery_outcome() {
    local i
    for ((i = 0; i < 600; i++)); do
        if [ ! -f "$T/$1/postmaster.pid" ]; then echo down; return; fi
        if tail -c +$(($2 + 1)) "$T/$1.log" | grep -q 'ready to accept connections'; then echo up; return; fi
        sleep 0.2
    done
    echo timeout
}
wait_for_file() {
    local i
    for ((i = 0; i < $2 * 5; i++)); do [ -f "$1" ] && return 0; sleep 0.2; done
    return 1
}
pgbench() { as_pg "$PGBIN/pgbench" -h "$T/$1" -p 5432 -U postgres "${@:2}" postgres; }

STATE_SQL="select (select sum(abalance) || ':' || count(*) from pgbench_accounts)
    || '/' || (select count(*) || ':' || coalesce(sum(delta), 0) from pgbench_history)
    || '/' || (select sum(bbalance) from pgbench_branches)
    || '/' || (select count(*) || ':' || md5(string_agg(v, ',' order by id)) from after_backup)"

for mode in ${WAL_MODES:-uring fallback}; do
    P=p_$mode C=c_$mode R=$T/repo_$mode
    repo_init "$R"
    if [ $mode = fallback ]; then
        envp="env RAGSAFE_NO_URING=1"; segsize=4
    else
        envp="env -u RAGSAFE_NO_URING"; segsize=16
    fi
    pg_init $P --wal-segsize=$segsize || exit 1
    pg_set $P "wal_level = replica"
    pg_set $P "archive_mode = on"
    pg_set $P "archive_command = '$envp $RAGSAFE_BIN/ragsafe-archive --repo $R %p %f'"
    pg_start $P || exit 1

    pgbench $P -i -s 5 -q >/dev/null 2>&1
    ok "$mode: pgbench -i -s 5" [ "$(pg_sql $P 'select count(*) from pgbench_accounts')" = 500000 ]
    as_pg "$PGBIN/pg_basebackup" -h "$T/$P" -p 5432 -U postgres -X none -c fast -D "$T/$C" 2>"$T/$C.bb.log" \
        || cat "$T/$C.bb.log"
    # the socket lives in the data directory (lib.sh): its lock file came along
    rm -f "$T/$C"/.s.PGSQL.*
    ok "$mode: pg_basebackup -X none" [ -f "$T/$C/backup_label" ]
    ok "$mode: the copy has no WAL of its own" [ -z "$(ls "$T/$C/pg_wal" | grep -E '^[0-9A-F]{24}$')" ]

    # a fixed number of transactions, not a duration: a loaded machine makes few in 8 s
    pgbench $P -n -c 2 -j 2 -t 1500 >/dev/null 2>&1
    pg_sql $P "create table after_backup (id int primary key, v text);
               insert into after_backup select g, md5(g::text) from generate_series(1, 20000) g;
               update pgbench_accounts set abalance = abalance + 7 where aid % 1000 = 1;"
    last=$(pg_sql $P "select pg_walfile_name(pg_switch_wal())")
    ok "$mode: the last segment ($last) was archived" \
        pg_wait_for $P "select last_archived_wal >= '$last' from pg_stat_archiver" t 120
    is "$mode: no archive_command failure" 0 "$(pg_sql $P 'select failed_count from pg_stat_archiver')"
    want=$(pg_sql $P "$STATE_SQL")
    is "$mode: transactions after the backup" 3000 "$(pg_sql $P 'select count(*) from pgbench_history')"

    # the repository as a DBA sees it
    SYSID=$(as_pg "$PGBIN/pg_controldata" -D "$T/$P" | awk -F: '/Database system identifier/ {gsub(/ /, "", $2); print $2}')
    ok "$mode: repo.json pins the primary's system identifier" grep -q "\"system_identifier\" *: *\"$SYSID\"" "$R/repo.json"
    ok "$mode: repo.json records $segsize MB segments" grep -q "\"wal_segment_size\" *: *$((segsize << 20))" "$R/repo.json"
    ok "$mode: the last segment is at wal/<first 16 hex>/<name>.zst" [ -f "$R/$(wal_key "$last")" ]
    nbk=$(find "$R/wal" -name '*.backup.zst' | wc -l)
    ok "$mode: pg_basebackup's .backup file archived" [ "$nbk" -ge 1 ]
    compared=0 bad=0
    for st in "$T/$P"/pg_wal/archive_status/*.done; do
        f=$(basename "$st" .done)
        [ -f "$T/$P/pg_wal/$f" ] || continue
        compared=$((compared + 1))
        obj_matches "$R/$(wal_key "$f")" "$T/$P/pg_wal/$f" || { bad=$((bad + 1)); echo "# $f differs"; }
    done
    ok "$mode: archived files still in pg_wal compared ($compared)" [ "$compared" -ge 2 ]
    is "$mode: stock zstd -d of every one gives pg_wal's bytes" 0 "$bad"
    is "$mode: no temp file left in the repository" "" "$(find "$R" -name '.*' -printf '%P\n')"
    nobj=$(find "$R/wal" -name '*.zst' | wc -l)
    pg_stop $P

    # the copy: recover through ragsafe-restore
    cat >>"$T/$C/postgresql.conf" <<CONF
unix_socket_directories = '$T/$C'
restore_command = '$envp $RAGSAFE_BIN/ragsafe-restore --repo $R %f %p'
recovery_target_timeline = 'latest'
hot_standby = off
CONF
    as_pg touch "$T/$C/recovery.signal"

    # first with the last segment's object damaged: recovery must stop, not promote
    # (hot_standby off: no connections until recovery ends)
    O=$R/$(wal_key "$last")
    cp -p "$O" "$T/last.saved"
    flip_byte "$O" $(($(stat -c %s "$O") / 2))
    logpos=$(stat -c %s "$T/$C.log" 2>/dev/null || echo 0)
    pg_start $C >/dev/null 2>&1
    outcome=$(recovery_outcome $C "$logpos")
    is "$mode: recovery over a damaged object stops the server" down "$outcome"
    [ "$outcome" = down ] || pg_stop $C
    ok "$mode: ... FATAL: could not restore file $last" grep -q "FATAL: *could not restore file \"$last\"" "$T/$C.log"
    ok "$mode: ... the server is not running" [ ! -f "$T/$C/postmaster.pid" ]
    ok "$mode: ... and did not promote (still in archive recovery)" in_archive_recovery "$T/$C"
    ok "$mode: ... no new timeline" [ ! -e "$T/$C/pg_wal/00000002.history" ]
    ok "$mode: ... recovery.signal still there" [ -e "$T/$C/recovery.signal" ]

    # the DBA repairs the repository and starts again
    cp -p "$T/last.saved" "$O"
    ok "$mode: the copy starts once the object is repaired" pg_start $C
    ok "$mode: recovery ends and the copy promotes" pg_wait_for $C "select pg_is_in_recovery()" f 120
    is "$mode: the copy has the primary's exact state" "$want" "$(pg_sql $C "$STATE_SQL")"
    is "$mode: the copy is on timeline 2" 00000002 "$(pg_sql $C "select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")"
    ok "$mode: the promoted copy archives 00000002.history into the repository" \
        wait_for_file "$R/wal/00000002.history.zst" 60
    ok "$mode: 00000002.history stored at wal/00000002.history.zst and exact" \
        obj_matches "$R/wal/00000002.history.zst" "$T/$C/pg_wal/00000002.history"
    is "$mode: the copy's archiver never failed" 0 "$(pg_sql $C 'select failed_count from pg_stat_archiver')"
    ok "$mode: the primary's objects are all still there" [ "$(find "$R/wal" -name '00000001*.zst' | wc -l)" -ge "$nobj" ]
    pg_stop $C
done

t_done
