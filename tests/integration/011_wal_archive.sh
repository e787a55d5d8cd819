#!/usr/bin/env bash
# 011_wal_archive.sh -- ragsafe-archive on real pgbench WAL, file by file, on both the
# io_uring path and the plain-syscall fallback (RAGSAFE_NO_URING=1).
#
# Covers: the repository layout and repo.json pin, the object format (plain zstd +
# the 56-byte "RGSF" trailer with size and SHA-256), relative %p from the data
# directory, identical duplicate (0 + notice), different duplicate (3, object
# untouched), .history never overwritten, .backup and .partial files, files under a
# segment name that are not segments (bad magic, wrong size), "..", usage errors,
# RAGSAFE_REPO / --config / --compress-level, and which I/O each mode uses
# (ragsafe-archive uses plain syscalls by default since issue 16; RAGSAFE_URING=1 opts
# in to io_uring, RAGSAFE_NO_URING=1 forces the fallback: both paths stay covered).
source "$(dirname "$0")/lib.sh"
t_init

ARCH=$RAGSAFE_BIN/ragsafe-archive
REST=$RAGSAFE_BIN/ragsafe-restore

# in_mode MODE CMD...: run CMD as postgres on the io_uring path (opted in) or the
# fallback path.
in_mode() {
    local m=$1; shift
    if [ "$m" = fallback ]; then
        as_pg env -u RAGSAFE_URING RAGSAFE_NO_URING=1 "$@"
    else
        as_pg env -u RAGSAFE_NO_URING RAGSAFE_URING=1 "$@"
    fi
}

# in_dir DIR CMD...: run CMD with DIR as the working directory (PostgreSQL's cwd).
in_dir() { local d=$1; shift; (cd "$d" && "$@"); }

# wal_key NAME: the repository key of a WAL-archive file name.
wal_key() {
    case $1 in
        *.history) echo "wal/$1.zst" ;;
        *) echo "wal/${1:0:16}/$1.zst" ;;
    esac
}

# obj_matches OBJ SRC: OBJ passes `zstd -t` and stock `zstd -d` yields SRC exactly.
obj_matches() {
    [ -f "$1" ] && zstd -q -t "$1" 2>/dev/null && zstd -q -dc <"$1" 2>/dev/null | cmp -s - "$2"
}

# trailer_hex SRC: the 56-byte trailer an object of SRC must end with (hex).
trailer_hex() {
    local size sha le
    size=$(stat -c %s "$1")
    le=$(printf '%016x' "$size" | fold -w2 | tac | tr -d '\n')
    sha=$(sha256sum <"$1" | cut -d' ' -f1)
    printf '5e2a4d18''30000000''52475346''01000000%s%s' "$le" "$sha"
}
lacks() { ! grep -q "$1" "$2"; }
tail_hex() { tail -c 56 "$1" | od -An -tx1 -v | tr -d ' \n'; }

# A real cluster whose WAL is copied out by a plain `cp` archive_command.
make_segments() {
    local name=$1 rounds=$2 i last
    pg_init "$name" || return 1
    mkdir -p "$T/$name.segs" && chown postgres: "$T/$name.segs"
    pg_set "$name" "wal_level = replica"
    pg_set "$name" "archive_mode = on"
    pg_set "$name" "archive_command = 'cp %p $T/$name.segs/%f'"
    pg_start "$name" || return 1
    as_pg "$PGBIN/pgbench" -h "$T/$name" -p 5432 -U postgres -i -s 1 -q postgres >/dev/null 2>&1 || return 1
    # a base backup makes the server archive a real .backup history file
    as_pg "$PGBIN/pg_basebackup" -h "$T/$name" -p 5432 -U postgres -X none -c fast -D "$T/$name.bb" 2>/dev/null || return 1
    rm -rf "$T/$name.bb"
    for ((i = 0; i < rounds; i++)); do
        as_pg "$PGBIN/pgbench" -h "$T/$name" -p 5432 -U postgres -n -t 300 postgres >/dev/null 2>&1 || return 1
        pg_sql "$name" "select pg_switch_wal()" >/dev/null || return 1
    done
    last=$(pg_sql "$name" "select pg_walfile_name(pg_switch_wal())")
    pg_wait_for "$name" "select last_archived_wal >= '$last' from pg_stat_archiver" t 60 || return 1
    pg_stop "$name"
}

make_segments a 3 || { echo "could not make WAL segments"; exit 1; }
make_segments b 0 || { echo "could not make WAL segments of a second cluster"; exit 1; }
mapfile -t SEGS < <(cd "$T/a.segs" && ls | grep -E '^[0-9A-F]{24}$' | sort)
ok "the source cluster produced at least 4 segments" [ "${#SEGS[@]}" -ge 4 ]
S1=${SEGS[1]} S2=${SEGS[2]} S3=${SEGS[3]}
SYSID_A=$(as_pg "$PGBIN/pg_controldata" -D "$T/a" | awk -F: '/Database system identifier/ {gsub(/ /, "", $2); print $2}')
SYSID_B=$(as_pg "$PGBIN/pg_controldata" -D "$T/b" | awk -F: '/Database system identifier/ {gsub(/ /, "", $2); print $2}')
BSEG=$(cd "$T/b.segs" && ls | grep -E '^[0-9A-F]{24}$' | sort | head -1)
ok "two clusters with different system identifiers" [ -n "$SYSID_A" -a "$SYSID_A" != "$SYSID_B" ]

for mode in uring fallback; do
    R=$T/repo-$mode
    repo_init "$R"
    D=$T/data-$mode                    # stands in for a data directory: cwd, pg_wal/
    as_pg mkdir -p "$D/pg_wal"
    for s in "${SEGS[@]}"; do cp "$T/a.segs/$s" "$D/pg_wal/$s"; done
    cp "$T/b.segs/$BSEG" "$T/bseg-$mode"
    chown -R postgres: "$D" "$T/bseg-$mode"

    # --- a segment, named relative to the data directory as PostgreSQL does
    exit_is "$mode: archive $S1 (relative %p, cwd = data dir)" 0 \
        in_dir "$D" in_mode $mode "$ARCH" --repo "$R" "pg_wal/$S1" "$S1"
    O1=$R/$(wal_key "$S1")
    ok "$mode: object stored at wal/<first 16 hex>/<name>.zst" [ -f "$O1" ]
    ok "$mode: stock zstd -d yields the segment exactly" obj_matches "$O1" "$T/a.segs/$S1"
    is "$mode: object ends with the RGSF trailer (size, SHA-256)" "$(trailer_hex "$T/a.segs/$S1")" "$(tail_hex "$O1")"
    ok "$mode: repo.json exists" [ -f "$R/repo.json" ]
    ok "$mode: repo.json pins the system identifier" grep -q "\"system_identifier\" *: *\"$SYSID_A\"" "$R/repo.json"
    ok "$mode: repo.json records the segment size" grep -q '"wal_segment_size" *: *16777216' "$R/repo.json"
    is "$mode: no temp file left in the repository" "" "$(find "$R" -name '.*' -printf '%P\n')"
    ok "$mode: source segment left alone" cmp -s "$D/pg_wal/$S1" "$T/a.segs/$S1"

    # --- identical duplicate: 0 with a notice, object untouched
    cp -p "$O1" "$T/o1.saved"
    exit_is "$mode: identical duplicate exits 0" 0 in_mode $mode "$ARCH" --repo "$R" "$D/pg_wal/$S1" "$S1" 2>"$T/err"
    ok "$mode: identical duplicate prints a notice on stderr" [ -s "$T/err" ]
    ok "$mode: identical duplicate leaves the object byte-identical" cmp -s "$O1" "$T/o1.saved"

    # --- different duplicate: 3, object untouched
    cp "$D/pg_wal/$S2" "$T/dup-$mode" && chown postgres: "$T/dup-$mode"
    mkdir -p "$T/dupdir-$mode" && cp "$D/pg_wal/$S2" "$T/dupdir-$mode/$S1" && chown -R postgres: "$T/dupdir-$mode"
    exit_is "$mode: different content under an archived name exits 3" 3 \
        in_mode $mode "$ARCH" --repo "$R" "$T/dupdir-$mode/$S1" "$S1" 2>"$T/err"
    ok "$mode: different duplicate is reported" [ -s "$T/err" ]
    ok "$mode: different duplicate leaves the object byte-identical" cmp -s "$O1" "$T/o1.saved"
    ok "$mode: ... and still restorable to the original" obj_matches "$O1" "$T/a.segs/$S1"

    # --- a second segment
    exit_is "$mode: archive $S2 (absolute %p)" 0 in_mode $mode "$ARCH" --repo "$R" "$D/pg_wal/$S2" "$S2"
    ok "$mode: $S2 stored and exact" obj_matches "$R/$(wal_key "$S2")" "$T/a.segs/$S2"

    # --- .history: stored at wal/<name>.zst, identical again 0, never overwritten
    H=$D/pg_wal/00000002.history
    printf '1\t0/%X\tno recovery target specified\n' $((0x3000000)) >"$H"
    printf '1\t0/%X\tno recovery target specified\n' $((0x5000000)) >"$T/h2-$mode"
    chown postgres: "$H" "$T/h2-$mode"
    exit_is "$mode: archive 00000002.history" 0 in_mode $mode "$ARCH" --repo "$R" "$H" 00000002.history
    OH=$R/wal/00000002.history.zst
    ok "$mode: history stored at wal/00000002.history.zst and exact" obj_matches "$OH" "$H"
    exit_is "$mode: same history again exits 0" 0 in_mode $mode "$ARCH" --repo "$R" "$H" 00000002.history 2>/dev/null
    cp "$OH" "$T/oh.saved"
    exit_is "$mode: a different history under the same name exits 3" 3 \
        in_mode $mode "$ARCH" --repo "$R" "$T/h2-$mode" 00000002.history 2>/dev/null
    ok "$mode: history object never overwritten" cmp -s "$OH" "$T/oh.saved"

    # --- .partial next to its segment, restorable
    P=$S3.partial
    cp "$D/pg_wal/$S3" "$D/pg_wal/$P" && chown postgres: "$D/pg_wal/$P"
    exit_is "$mode: archive $P" 0 in_mode $mode "$ARCH" --repo "$R" "$D/pg_wal/$P" "$P"
    ok "$mode: .partial stored next to its segment" obj_matches "$R/wal/${S3:0:16}/$P.zst" "$D/pg_wal/$P"
    rm -f "$T/out-$mode"
    exit_is "$mode: restore $P" 0 in_mode $mode "$REST" --repo "$R" "$P" "$T/out-$mode"
    ok "$mode: restored .partial is exact" cmp -s "$T/out-$mode" "$D/pg_wal/$P"

    # --- .backup: the real backup history file from the source cluster's pg_basebackup
    BK=$(cd "$T/a.segs" && ls | grep -E '^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$' | head -1)
    if [ -z "$BK" ]; then
        BK=${S3}.00000028.backup
        printf 'START WAL LOCATION: 0/%X (file %s)\nSTOP WAL LOCATION: 0/%X (file %s)\n' \
            $((0x3000028)) "$S3" $((0x3000100)) "$S3" >"$T/a.segs/$BK"
    fi
    cp "$T/a.segs/$BK" "$D/pg_wal/$BK" && chown postgres: "$D/pg_wal/$BK"
    exit_is "$mode: archive $BK" 0 in_mode $mode "$ARCH" --repo "$R" "$D/pg_wal/$BK" "$BK"
    ok "$mode: .backup stored next to its segment" obj_matches "$R/wal/${BK:0:16}/$BK.zst" "$T/a.segs/$BK"
    rm -f "$T/out-$mode"
    exit_is "$mode: restore $BK" 0 in_mode $mode "$REST" --repo "$R" "$BK" "$T/out-$mode"
    ok "$mode: restored .backup is exact" cmp -s "$T/out-$mode" "$T/a.segs/$BK"

    # --- not a segment under a segment name: refused with 3, nothing stored
    NS=${S3:0:16}000000F0
    head -c 16777216 /dev/zero >"$T/zero-$mode"
    head -c $((8192 * 16)) "$D/pg_wal/$S3" >"$T/short-$mode"
    head -c 16777216 /dev/urandom >"$T/rand-$mode"
    chown postgres: "$T/zero-$mode" "$T/short-$mode" "$T/rand-$mode"
    exit_is "$mode: 16 MB of zeros under a segment name exits 3 (bad magic)" 3 \
        in_mode $mode "$ARCH" --repo "$R" "$T/zero-$mode" "$NS" 2>/dev/null
    exit_is "$mode: random bytes under a segment name exits 3 (bad magic)" 3 \
        in_mode $mode "$ARCH" --repo "$R" "$T/rand-$mode" "$NS" 2>/dev/null
    exit_is "$mode: a truncated segment exits 3 (wrong size)" 3 \
        in_mode $mode "$ARCH" --repo "$R" "$T/short-$mode" "$NS" 2>/dev/null
    ok "$mode: nothing stored for refused files" [ ! -e "$R/$(wal_key "$NS")" ]

    # --- a segment from another cluster: 3, the message names both identifiers
    exit_is "$mode: a segment of another cluster exits 3" 3 \
        in_mode $mode "$ARCH" --repo "$R" "$T/bseg-$mode" "$BSEG" 2>"$T/err"
    ok "$mode: the refusal names the repository's system identifier" grep -q "$SYSID_A" "$T/err"
    ok "$mode: the refusal names the segment's system identifier" grep -q "$SYSID_B" "$T/err"
    ok "$mode: nothing stored for the other cluster's segment" [ ! -e "$R/$(wal_key "$BSEG")" ]

    # --- names that are not WAL names or climb out of the repository
    touch "$T/marker"; sleep 0.01
    exit_is "$mode: %f with .. is refused (usage)" 2 \
        in_mode $mode "$ARCH" --repo "$R" "$D/pg_wal/$S2" "../../$S2" 2>/dev/null
    exit_is "$mode: %f with .. inside is refused (usage)" 2 \
        in_mode $mode "$ARCH" --repo "$R" "$D/pg_wal/$S2" "${S2:0:16}/../$S2" 2>/dev/null
    exit_is "$mode: a %f that is not a WAL name is refused (usage)" 2 \
        in_mode $mode "$ARCH" --repo "$R" "$D/pg_wal/$S2" "postgresql.conf" 2>/dev/null
    is "$mode: nothing written anywhere for refused names" "" "$(find "$T" -newer "$T/marker" ! -type d -printf '%P\n')"

    # --- usage and failure statuses
    exit_is "$mode: no arguments exits 2" 2 in_mode $mode "$ARCH" --repo "$R" 2>/dev/null
    exit_is "$mode: an unknown option exits 2" 2 in_mode $mode "$ARCH" --no-such-option --repo "$R" "$D/pg_wal/$S2" "$S2" 2>/dev/null
    exit_is "$mode: no repository given exits 2" 2 \
        in_mode $mode env -u RAGSAFE_REPO -u RAGSAFE_CONFIG "$ARCH" "$D/pg_wal/$S2" "$S2" 2>/dev/null
    exit_is "$mode: a missing %p exits 1 (retry)" 1 \
        in_mode $mode "$ARCH" --repo "$R" "$D/pg_wal/${S3:0:16}000000EE" "${S3:0:16}000000EE" 2>/dev/null
    ok "$mode: --help exits 0" in_mode $mode "$ARCH" --help >/dev/null
    ok "$mode: --version exits 0" in_mode $mode "$ARCH" --version >/dev/null

    # --- RAGSAFE_REPO, --config, --compress-level
    exit_is "$mode: RAGSAFE_REPO names the repository" 0 \
        in_mode $mode env RAGSAFE_REPO="$R" "$ARCH" "$D/pg_wal/$S3" "$S3"
    ok "$mode: ... and the segment is stored there" obj_matches "$R/$(wal_key "$S3")" "$T/a.segs/$S3"
    R2=$T/repo2-$mode
    repo_init "$R2"
    printf '# ragsafe\nrepo = "%s"\ncompress-level = 1\n' "$R2" >"$T/conf-$mode"
    chown postgres: "$T/conf-$mode"
    exit_is "$mode: --config FILE names the repository" 0 in_mode $mode "$ARCH" --config "$T/conf-$mode" "$D/pg_wal/$S1" "$S1"
    ok "$mode: ... stored there and exact" obj_matches "$R2/$(wal_key "$S1")" "$T/a.segs/$S1"
    R3=$T/repo3-$mode
    repo_init "$R3"
    exit_is "$mode: --compress-level 9" 0 in_mode $mode "$ARCH" --repo "$R3" --compress-level 9 "$D/pg_wal/$S1" "$S1"
    ok "$mode: level 9 object is exact" obj_matches "$R3/$(wal_key "$S1")" "$T/a.segs/$S1"
    ok "$mode: level 9 object is smaller than the level 1 one" \
        [ "$(stat -c %s "$R3/$(wal_key "$S1")")" -lt "$(stat -c %s "$R2/$(wal_key "$S1")")" ]
    exit_is "$mode: --compress-level 99 exits 2" 2 in_mode $mode "$ARCH" --repo "$R3" --compress-level 99 "$D/pg_wal/$S2" "$S2" 2>/dev/null
    exit_is "$mode: a --config file that does not exist exits 2" 2 \
        in_mode $mode "$ARCH" --config "$T/no-such.conf" --repo "$R" "$D/pg_wal/$S2" "$S2" 2>/dev/null

    # --- concurrent runs into a fresh repository: they race repo.json's creation and
    # (for the same name) the temp file and the final rename. PostgreSQL never runs
    # two at once, so a loser may ask for a retry (1); nothing else, and never a wrong
    # object; a second pass succeeds everywhere.
    R5=$T/repo5-$mode
    repo_init "$R5"
    pids=()
    for s in "$S1" "$S2" "$S3" "$S1" "$S2" "$S3"; do
        in_mode $mode "$ARCH" --repo "$R5" "$D/pg_wal/$s" "$s" 2>/dev/null &
        pids+=($!)
    done
    nbad=0
    for p in "${pids[@]}"; do wait "$p"; st=$?; [ $st -le 1 ] || nbad=$((nbad + 1)); done
    is "$mode: 6 concurrent runs (3 segments twice) exit 0 or 1 (retry)" 0 "$nbad"
    for s in "$S1" "$S2" "$S3"; do
        if [ -e "$R5/$(wal_key "$s")" ]; then
            ok "$mode: ... a concurrently stored $s is exact" obj_matches "$R5/$(wal_key "$s")" "$T/a.segs/$s"
        fi
        exit_is "$mode: ... the retry of $s exits 0" 0 in_mode $mode "$ARCH" --repo "$R5" "$D/pg_wal/$s" "$s" 2>/dev/null
        ok "$mode: ... $s stored and exact" obj_matches "$R5/$(wal_key "$s")" "$T/a.segs/$s"
    done
    ok "$mode: ... repo.json pins the cluster" grep -q "\"system_identifier\" *: *\"$SYSID_A\"" "$R5/repo.json"
    is "$mode: ... no temp file left" "" "$(find "$R5" -name '.*' -printf '%P\n')"

    # --- io_uring only where opted in
    # strace is a test dependency (scripts/install-deps.sh): without it this fails
    ok "$mode: strace is installed (scripts/install-deps.sh)" command -v strace
    rm -rf "$T/repo4-$mode" "$T/strace-$mode"
    repo_init "$T/repo4-$mode"
    exit_is "$mode: ragsafe-archive under strace: exit 0" 0 \
        in_mode $mode strace -f -qq -e trace=io_uring_setup -o "$T/strace-$mode" \
        "$ARCH" --repo "$T/repo4-$mode" "$D/pg_wal/$S1" "$S1"
    ok "$mode: strace wrote its trace" [ -f "$T/strace-$mode" ]
    if [ $mode = uring ]; then
        ok "$mode: RAGSAFE_URING=1: ragsafe-archive sets up an io_uring" grep -q io_uring_setup "$T/strace-$mode"
    else
        ok "$mode: RAGSAFE_NO_URING=1: ragsafe-archive never calls io_uring_setup" lacks io_uring_setup "$T/strace-$mode"
    fi
    ok "$mode: object made under strace is exact" obj_matches "$T/repo4-$mode/$(wal_key "$S1")" "$T/a.segs/$S1"
done

t_done
