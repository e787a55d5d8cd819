#!/usr/bin/env bash
# 016_wal_ahead.sh -- ragsafe-archive --look-ahead and ragsafe-restore --prefetch, on
# both the io_uring path and the fallback (RAGSAFE_NO_URING=1).
#
# A PostgreSQL 15 primary with 1 MB segments archives under pgbench with
# --look-ahead 4 (a call also archives the next ready segments in parallel, later
# calls answer at once); a pg_basebackup -X none copy recovers with --prefetch 4 (a
# call also spools the next segments) to the primary's exact state, and leaves no
# spool behind. Then file by file: look-ahead never touches archive_status (that is
# PostgreSQL's) and its objects are exact; a spooled file that was damaged or does
# not hold what its name says is never handed to recovery ("a spool file is never
# used without its checksum").
source "$(dirname "$0")/lib.sh"
t_init

ARCH=$RAGSAFE_BIN/ragsafe-archive
REST=$RAGSAFE_BIN/ragsafe-restore

in_mode() {
    local m=$1; shift
    if [ "$m" = fallback ]; then
        as_pg env RAGSAFE_NO_URING=1 "$@"
    else
        as_pg env -u RAGSAFE_NO_URING "$@"
    fi
}
in_dir() { local d=$1; shift; (cd "$d" && "$@"); }
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
pgbench() { as_pg "$PGBIN/pgbench" -h "$T/$1" -p 5432 -U postgres "${@:2}" postgres; }

STATE_SQL="select (select sum(abalance) || ':' || count(*) from pgbench_accounts)
    || '/' || (select count(*) || ':' || coalesce(sum(delta), 0) from pgbench_history)"

for mode in uring fallback; do
    if [ $mode = fallback ]; then envp="env RAGSAFE_NO_URING=1"; else envp="env -u RAGSAFE_NO_URING"; fi

    # --- A. a real primary and copy
    P=p_$mode C=c_$mode R=$T/repo_$mode
    repo_init "$R"
    pg_init $P --wal-segsize=1 || exit 1
    pg_set $P "wal_level = replica"
    pg_set $P "archive_mode = on"
    pg_set $P "archive_command = '$envp $ARCH --look-ahead 4 --repo $R %p %f'"
    pg_start $P || exit 1
    pgbench $P -i -s 2 -q >/dev/null 2>&1
    as_pg "$PGBIN/pg_basebackup" -h "$T/$P" -p 5432 -U postgres -X none -c fast -D "$T/$C" 2>/dev/null
    rm -f "$T/$C"/.s.PGSQL.*
    ok "$mode: base backup" [ -f "$T/$C/backup_label" ]
    pgbench $P -n -c 2 -j 2 -T 5 >/dev/null 2>&1
    # at least six more segments whatever the load (pgbench -T makes little WAL on a busy machine)
    pg_sql $P "create table filler (x int)" >/dev/null
    for i in 1 2 3 4 5 6; do
        pg_sql $P "insert into filler values ($i); select pg_switch_wal()" >/dev/null
    done
    last=$(pg_sql $P "select pg_walfile_name(pg_switch_wal())")
    ok "$mode: --look-ahead 4: everything up to $last archived" \
        pg_wait_for $P "select last_archived_wal >= '$last' from pg_stat_archiver" t 120
    is "$mode: --look-ahead 4: no failure" 0 "$(pg_sql $P 'select failed_count from pg_stat_archiver')"
    want=$(pg_sql $P "$STATE_SQL")
    n=0 bad=0
    for st in "$T/$P"/pg_wal/archive_status/*.done; do
        f=$(basename "$st" .done)
        [ -f "$T/$P/pg_wal/$f" ] || continue
        n=$((n + 1))
        obj_matches "$R/$(wal_key "$f")" "$T/$P/pg_wal/$f" || { bad=$((bad + 1)); echo "# $f differs"; }
    done
    ok "$mode: archived segments still in pg_wal compared ($n)" [ "$n" -ge 5 ]
    is "$mode: every one exact" 0 "$bad"
    is "$mode: no temp file left in the repository" "" "$(find "$R" -name '.*' -printf '%P\n')"
    pg_stop $P

    cat >>"$T/$C/postgresql.conf" <<CONF
unix_socket_directories = '$T/$C'
restore_command = '$envp $REST --prefetch 4 --repo $R %f %p'
recovery_target_timeline = 'latest'
hot_standby = off
archive_mode = off
CONF
    as_pg touch "$T/$C/recovery.signal"
    ok "$mode: --prefetch 4: the copy starts" pg_start $C
    ok "$mode: --prefetch 4: recovery ends and the copy promotes" pg_wait_for $C "select pg_is_in_recovery()" f 120
    is "$mode: --prefetch 4: the copy has the primary's exact state" "$want" "$(pg_sql $C "$STATE_SQL")"
    is "$mode: --prefetch 4: no spool left in pg_wal" "" \
        "$(find "$T/$C/pg_wal" -path '*ragsafe-prefetch/*' -printf '%P\n' 2>/dev/null)"
    pg_stop $C

    # --- B. file by file, in a stand-in data directory
    D=$T/d_$mode R2=$T/repo2_$mode
    repo_init "$R2"
    as_pg mkdir -p "$D/pg_wal/archive_status"
    mapfile -t SEGS < <(cd "$R/wal/0000000100000000" && ls | grep -E '^[0-9A-F]{24}\.zst$' | sed 's/\.zst$//' | sort | head -8)
    for s in "${SEGS[@]}"; do
        zstd -q -dc <"$R/$(wal_key "$s")" >"$T/src_$s"
        cp "$T/src_$s" "$D/pg_wal/$s"
        : >"$D/pg_wal/archive_status/$s.ready"
    done
    chown -R postgres: "$D"
    S1=${SEGS[0]} S2=${SEGS[1]} S3=${SEGS[2]} S4=${SEGS[3]}

    # into a repository that has its repo.json already
    R4=$T/repo4_$mode
    repo_init "$R4"
    exit_is "$mode: pin a repository with ${SEGS[7]}" 0 in_mode $mode "$ARCH" --repo "$R4" "$D/pg_wal/${SEGS[7]}" "${SEGS[7]}"
    exit_is "$mode: archive $S1 with --look-ahead 3" 0 \
        in_dir "$D" in_mode $mode "$ARCH" --look-ahead 3 --repo "$R4" "pg_wal/$S1" "$S1"
    for s in "$S1" "$S2" "$S3" "$S4"; do
        ok "$mode: ... $s stored and exact" obj_matches "$R4/$(wal_key "$s")" "$T/src_$s"
    done
    is "$mode: ... archive_status left to PostgreSQL" "${#SEGS[@]}" "$(ls "$D/pg_wal/archive_status" | grep -c '\.ready$')"
    mv "$D/pg_wal/archive_status/$S1.ready" "$D/pg_wal/archive_status/$S1.done"
    exit_is "$mode: the call for $S2 exits 0" 0 \
        in_dir "$D" in_mode $mode "$ARCH" --look-ahead 3 --repo "$R4" "pg_wal/$S2" "$S2"
    ok "$mode: ... $S2 still exact" obj_matches "$R4/$(wal_key "$S2")" "$T/src_$S2"
    mv "$D/pg_wal/archive_status/$S1.done" "$D/pg_wal/archive_status/$S1.ready"

    # the first call into a brand-new repository: the look-ahead threads and the
    # call itself all create repo.json (repo.h: "a concurrent creator wins and is
    # then compared")
    exit_is "$mode: first call into a new repository with --look-ahead 3" 0 \
        in_dir "$D" in_mode $mode "$ARCH" --look-ahead 3 --repo "$R2" "pg_wal/$S1" "$S1" 2>/dev/null
    for s in "$S1" "$S2" "$S3" "$S4"; do
        ok "$mode: ... $s stored ahead and exact" obj_matches "$R2/$(wal_key "$s")" "$T/src_$s"
    done

    # a repository filled one call at a time, for the prefetch
    R2=$T/repo3_$mode
    repo_init "$R2"
    for s in "${SEGS[@]}"; do in_mode $mode "$ARCH" --repo "$R2" "$D/pg_wal/$s" "$s"; done

    as_pg mkdir -p "$D/rd/pg_wal"
    X=$D/rd/pg_wal/RECOVERYXLOG
    SP=$D/rd/pg_wal/ragsafe-prefetch
    exit_is "$mode: restore $S1 with --prefetch 3" 0 in_mode $mode "$REST" --prefetch 3 --repo "$R2" "$S1" "$X"
    ok "$mode: ... exact" cmp -s "$X" "$T/src_$S1"
    rm -f "$X"
    ok "$mode: ... $S2 spooled" [ -f "$SP/$S2" ]
    if [ -f "$SP/$S2" ]; then
        flip_byte "$SP/$S2" 5000
        exit_is "$mode: a damaged spool file: re-fetched from the repository, exit 0" 0 \
            in_mode $mode "$REST" --prefetch 3 --repo "$R2" "$S2" "$X" 2>/dev/null
        ok "$mode: ... the exact segment, never the damaged copy" cmp -s "$X" "$T/src_$S2"
        rm -f "$X"
    fi
    if [ -d "$SP" ]; then
        cp "$T/src_$S4" "$SP/$S3" && chown postgres: "$SP/$S3"
        exit_is "$mode: a spool file holding another segment: re-fetched, exit 0" 0 \
            in_mode $mode "$REST" --prefetch 3 --repo "$R2" "$S3" "$X" 2>/dev/null
        ok "$mode: ... the exact segment, never the other one" cmp -s "$X" "$T/src_$S3"
        rm -f "$X"
    fi
    if [ -f "$SP/$S4" ] && [ -f "$SP/$S4.sum" ]; then
        # spool files are not fsync'd: one recorded in another boot (a crash since) is
        # re-hashed even when its inode, size and mtime still match the record
        touch -r "$SP/$S4" "$T/stamp"
        flip_byte "$SP/$S4" 7000
        touch -r "$T/stamp" "$SP/$S4"
        sed -i '2s/^[^ ]*/00000000-0000-0000-0000-000000000000/' "$SP/$S4.sum"
        exit_is "$mode: a damaged spool file from before a restart: re-hashed, re-fetched, exit 0" 0 \
            in_mode $mode "$REST" --prefetch 3 --repo "$R2" "$S4" "$X" 2>/dev/null
        ok "$mode: ... the exact segment, never the damaged copy" cmp -s "$X" "$T/src_$S4"
        rm -f "$X"
    else
        fail "$mode: $S4 spooled with its record"
    fi
    exit_is "$mode: the end of the archive: not found" 1 \
        in_mode $mode "$REST" --prefetch 3 --repo "$R2" "${S1:0:16}000000F0" "$X"
    is "$mode: ... and the spool is gone" "" "$(find "$SP" -type f -printf '%P\n' 2>/dev/null)"
done

t_done
