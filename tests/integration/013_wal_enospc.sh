#!/usr/bin/env bash
# 013_wal_enospc.sh -- the repository on a full tmpfs, on both the io_uring path and the
# fallback (RAGSAFE_NO_URING=1).
#
# With the file system full (or a few bytes, a quarter, half, nearly all of an object
# free) ragsafe-archive exits 1 so PostgreSQL retries; no object ever appears under a
# final name unless it is complete (every final-name object passes `zstd -t` and
# decompresses to its source), no temp file is left behind, and once space returns
# the same segment archives. ragsafe-restore writing into a full pg_wal exits > 125.
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
wal_key() {
    case $1 in
        *.history) echo "wal/$1.zst" ;;
        *) echo "wal/${1:0:16}/$1.zst" ;;
    esac
}
obj_matches() {
    [ -f "$1" ] && zstd -q -t "$1" 2>/dev/null && zstd -q -dc <"$1" 2>/dev/null | cmp -s - "$2"
}

# all_final_objects_good REPO: every non-hidden *.zst decompresses to its source in
# $T/segs; prints the bad ones.
all_final_objects_good() {
    local o n bad=0
    while IFS= read -r o; do
        n=$(basename "$o" .zst)
        if ! obj_matches "$o" "$T/segs/$n"; then echo "# bad final object: $o"; bad=1; fi
    done < <(find "$1" -name '*.zst' ! -name '.*' 2>/dev/null)
    [ $bad -eq 0 ]
}
repo_json_ok() { [ ! -e "$1/repo.json" ] || grep -q '"system_identifier" *: *"[0-9]*"' "$1/repo.json"; }
temps() { find "$1" -name '.*' -printf '%P\n' 2>/dev/null; }

# fill FS FREE: leave about FREE bytes free on the tmpfs at FS.
fill() {
    rm -f "$1/filler"
    dd if=/dev/zero of="$1/filler" bs=64k status=none 2>/dev/null
    [ "$2" -gt 0 ] && truncate -s -"$2" "$1/filler"
    sync
}

# Real WAL from a cluster archiving with cp.
pg_cp_archiving a "$T/segs" || exit 1
as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -i -s 4 -q postgres >/dev/null 2>&1
last=$(pg_sql a "select pg_walfile_name(pg_switch_wal())")
pg_wait_for a "select last_archived_wal >= '$last' from pg_stat_archiver" t 60 || exit 1
pg_stop a
mapfile -t SEGS < <(cd "$T/segs" && ls | grep -E '^[0-9A-F]{24}$' | sort)
ok "the source cluster produced at least 3 segments" [ "${#SEGS[@]}" -ge 3 ]
S1=${SEGS[0]} S2=${SEGS[1]} S3=${SEGS[2]}
printf '1\t0/3000000\tno recovery target specified\n' >"$T/segs/00000002.history"
chmod -R a+rX "$T/segs"
csize=$(zstd -3 -c <"$T/segs/$S2" | wc -c)
echo "# $S2 compresses to $csize bytes at level 3"

for mode in uring fallback; do
    FS=$T/fs_$mode
    R=$FS/repo
    mkdir -p "$FS"
    mount -t tmpfs -o size=24m,mode=0755 tmpfs "$FS" || { fail "$mode: mount a tmpfs"; continue; }
    t_on_exit "umount '$FS'"
    chown postgres: "$FS"
    repo_init "$R"

    # --- a brand-new repository on a full file system: not even repo.json fits
    fill "$FS" 0
    exit_is "$mode: first archive into a full file system exits 1" 1 \
        in_mode $mode "$ARCH" --repo "$R" "$T/segs/$S1" "$S1" 2>"$T/err"
    ok "$mode: ... with a message" [ -s "$T/err" ]
    ok "$mode: ... repo.json absent or complete" repo_json_ok "$R"
    ok "$mode: ... no object under a final name" [ ! -e "$R/$(wal_key "$S1")" ]
    is "$mode: ... no temp file left" "" "$(temps "$FS")"
    rm -f "$FS/filler"
    exit_is "$mode: space back: archive $S1" 0 in_mode $mode "$ARCH" --repo "$R" "$T/segs/$S1" "$S1"
    ok "$mode: ... stored and exact" obj_matches "$R/$(wal_key "$S1")" "$T/segs/$S1"
    ok "$mode: ... repo.json complete" grep -q '"system_identifier"' "$R/repo.json"

    # --- a pinned repository, several amounts of free space
    for free in 0 4096 $((csize / 4)) $((csize / 2)) $((csize * 7 / 8)); do
        fill "$FS" "$free"
        exit_is "$mode: archive $S2 with ~$free bytes free exits 1" 1 \
            in_mode $mode "$ARCH" --repo "$R" "$T/segs/$S2" "$S2" 2>/dev/null
        ok "$mode: ~$free free: no object under a final name" [ ! -e "$R/$(wal_key "$S2")" ]
        ok "$mode: ~$free free: every final-name object is complete" all_final_objects_good "$R"
        is "$mode: ~$free free: no temp file left" "" "$(temps "$FS")"
    done
    fill "$FS" 0
    exit_is "$mode: history into a full file system exits 1" 1 \
        in_mode $mode "$ARCH" --repo "$R" "$T/segs/00000002.history" 00000002.history 2>/dev/null
    ok "$mode: ... history not stored" [ ! -e "$R/wal/00000002.history.zst" ]
    exit_is "$mode: the archived segment still restores on a full file system" 0 \
        in_mode $mode "$REST" --repo "$R" "$S1" "$T/out-$mode"
    ok "$mode: ... exact" cmp -s "$T/out-$mode" "$T/segs/$S1"

    # --- restore into a full pg_wal: a failure, not "not found"
    as_pg mkdir -p "$FS/pg_wal"
    fill "$FS" 0
    in_mode $mode "$REST" --repo "$R" "$S1" "$FS/pg_wal/RECOVERYXLOG" 2>/dev/null
    st=$?
    ok "$mode: restore into a full pg_wal exits > 125 (got $st)" [ "$st" -gt 125 ]
    ok "$mode: ... no %p" [ ! -e "$FS/pg_wal/RECOVERYXLOG" ]
    is "$mode: ... no temp file left" "" "$(ls -A "$FS/pg_wal")"

    # --- space returns: the same segments archive
    rm -f "$FS/filler"
    exit_is "$mode: space back: archive $S2" 0 in_mode $mode "$ARCH" --repo "$R" "$T/segs/$S2" "$S2"
    ok "$mode: ... stored and exact" obj_matches "$R/$(wal_key "$S2")" "$T/segs/$S2"
    exit_is "$mode: space back: archive 00000002.history" 0 \
        in_mode $mode "$ARCH" --repo "$R" "$T/segs/00000002.history" 00000002.history
    ok "$mode: ... stored and exact" obj_matches "$R/wal/00000002.history.zst" "$T/segs/00000002.history"
    exit_is "$mode: space back: archive $S3" 0 in_mode $mode "$ARCH" --repo "$R" "$T/segs/$S3" "$S3"
    ok "$mode: every final-name object is complete" all_final_objects_good "$R"
    is "$mode: no temp file left" "" "$(temps "$FS")"
    umount "$FS"
done

t_done
