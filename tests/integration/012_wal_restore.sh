#!/usr/bin/env bash
# 012_wal_restore.sh -- ragsafe-restore's exit statuses on real pgbench WAL, on both the
# io_uring path and the fallback (RAGSAFE_NO_URING=1).
#
# PostgreSQL takes a restore_command status <= 125 as "not in the archive", ends
# recovery and promotes; so only a file that is truly absent may give 1. A damaged
# object (one flipped byte, truncated, no trailer, empty), an unreadable or missing
# repository, a missing repo.json, bad arguments: all > 125, with a message naming the
# object, and %p never created.
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

# flip_byte FILE OFFSET: invert every bit of one byte in place.
flip_byte() {
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\x$(printf %02x $((b ^ 0xff)))" | dd of="$1" bs=1 seek="$2" count=1 conv=notrunc status=none
}

# restore_fails NAME MODE REPO FILE: ragsafe-restore must exit > 125, name the file
# in its message, and leave no %p behind.
restore_fails() {
    local what=$1 m=$2 repo=$3 f=$4 st
    rm -f "$D/pg_wal/RECOVERYXLOG"
    in_dir "$D" in_mode "$m" "$REST" --repo "$repo" "$f" pg_wal/RECOVERYXLOG 2>"$T/err"
    st=$?
    if [ "$st" -gt 125 ]; then pass "$what: exit $st > 125"; else fail "$what: exit $st > 125"; sed 's/^/#   /' "$T/err"; fi
    ok "$what: %p not created" [ ! -e "$D/pg_wal/RECOVERYXLOG" ]
    is "$what: no temp file left in pg_wal" "" "$(ls -A "$D/pg_wal" | grep RECOVERYXLOG)"
    ok "$what: the message names $f" grep -q "$f" "$T/err"
}

# restore_ok NAME MODE REPO FILE SRC
restore_ok() {
    rm -f "$D/pg_wal/RECOVERYXLOG"
    exit_is "$1: exit 0" 0 in_dir "$D" in_mode "$2" "$REST" --repo "$3" "$4" pg_wal/RECOVERYXLOG
    ok "$1: %p holds the original bytes" cmp -s "$D/pg_wal/RECOVERYXLOG" "$5"
    rm -f "$D/pg_wal/RECOVERYXLOG"
}

# Real WAL from a cluster archiving with cp.
pg_cp_archiving a "$T/segs" || exit 1
as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -i -s 1 -q postgres >/dev/null 2>&1
for i in 1 2; do
    as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -n -t 300 postgres >/dev/null 2>&1
    pg_sql a "select pg_switch_wal()" >/dev/null
done
last=$(pg_sql a "select pg_walfile_name(pg_switch_wal())")
pg_wait_for a "select last_archived_wal >= '$last' from pg_stat_archiver" t 60 || exit 1
pg_stop a
mapfile -t SEGS < <(cd "$T/segs" && ls | grep -E '^[0-9A-F]{24}$' | sort)
ok "the source cluster produced at least 3 segments" [ "${#SEGS[@]}" -ge 3 ]
S1=${SEGS[0]} S2=${SEGS[1]} S3=${SEGS[2]}
printf '1\t0/3000000\tno recovery target specified\n' >"$T/segs/00000002.history"
chmod -R a+rX "$T/segs"

for mode in uring fallback; do
    R=$T/repo-$mode
    repo_init "$R"
    D=$T/data-$mode
    as_pg mkdir -p "$D/pg_wal"
    for f in "$S1" "$S2" "$S3" 00000002.history; do
        exit_is "$mode: archive $f" 0 in_mode $mode "$ARCH" --repo "$R" "$T/segs/$f" "$f"
    done

    # --- the good cases
    restore_ok "$mode: restore $S1" $mode "$R" "$S1" "$T/segs/$S1"
    restore_ok "$mode: restore $S2" $mode "$R" "$S2" "$T/segs/$S2"
    restore_ok "$mode: restore 00000002.history" $mode "$R" 00000002.history "$T/segs/00000002.history"
    rm -f "$T/abs-$mode"
    exit_is "$mode: restore to an absolute %p" 0 in_mode $mode "$REST" --repo "$R" "$S3" "$T/abs-$mode"
    ok "$mode: absolute %p holds the original bytes" cmp -s "$T/abs-$mode" "$T/segs/$S3"
    exit_is "$mode: RAGSAFE_REPO names the repository" 0 \
        in_dir "$D" in_mode $mode env RAGSAFE_REPO="$R" "$REST" "$S1" pg_wal/RECOVERYXLOG
    ok "$mode: ... and the file is exact" cmp -s "$D/pg_wal/RECOVERYXLOG" "$T/segs/$S1"
    # PostgreSQL may leave an old RECOVERYXLOG; the new one replaces it
    head -c 100 /dev/zero >"$D/pg_wal/RECOVERYXLOG"; chown postgres: "$D/pg_wal/RECOVERYXLOG"
    exit_is "$mode: restore over a stale %p" 0 in_dir "$D" in_mode $mode "$REST" --repo "$R" "$S2" pg_wal/RECOVERYXLOG
    ok "$mode: stale %p replaced by the original bytes" cmp -s "$D/pg_wal/RECOVERYXLOG" "$T/segs/$S2"
    rm -f "$D/pg_wal/RECOVERYXLOG"

    # --- not in the repository: 1, quietly, nothing at %p
    for f in "${S3:0:16}000000FE" 00000009.history "${S3}.partial"; do
        exit_is "$mode: missing $f exits 1" 1 in_dir "$D" in_mode $mode "$REST" --repo "$R" "$f" pg_wal/RECOVERYXLOG 2>"$T/err"
        ok "$mode: missing $f: %p not created" [ ! -e "$D/pg_wal/RECOVERYXLOG" ]
        is "$mode: missing $f: quiet" "" "$(cat "$T/err")"
    done
    exit_is "$mode: a missing segment in a folder that does not exist exits 1" 1 \
        in_dir "$D" in_mode $mode "$REST" --repo "$R" 0000000700000000000000AA pg_wal/RECOVERYXLOG 2>/dev/null

    # --- damaged objects (each on a copy, the original put back afterwards)
    O=$R/$(wal_key "$S2")
    cp -p "$O" "$T/o.saved"
    size=$(stat -c %s "$O")
    for off in 20 $((size / 3)) $((size / 2)) $((size - 100)) $((size - 56)) $((size - 48)) $((size - 40)) $((size - 1)); do
        cp -p "$T/o.saved" "$O"
        flip_byte "$O" "$off"
        restore_fails "$mode: one flipped byte at $off of $size" $mode "$R" "$S2"
    done
    cp -p "$T/o.saved" "$O"
    truncate -s $((size / 2)) "$O"
    restore_fails "$mode: object truncated to half" $mode "$R" "$S2"
    cp -p "$T/o.saved" "$O"
    truncate -s $((size - 56)) "$O"
    restore_fails "$mode: object without its trailer" $mode "$R" "$S2"
    cp -p "$T/o.saved" "$O"
    truncate -s 0 "$O"
    restore_fails "$mode: empty object" $mode "$R" "$S2"
    cp -p "$T/o.saved" "$O"
    OH=$R/wal/00000002.history.zst
    cp -p "$OH" "$T/oh.saved"
    head -c 20 "$T/o.saved" >"$OH"
    restore_fails "$mode: history object replaced by garbage" $mode "$R" 00000002.history
    cp -p "$T/oh.saved" "$OH"
    restore_ok "$mode: repaired object restores again" $mode "$R" "$S2" "$T/segs/$S2"

    # --- an unreadable repository (postgres cannot enter; root would bypass this)
    chmod 000 "$R"
    restore_fails "$mode: repository root mode 000, present file" $mode "$R" "$S1"
    restore_fails "$mode: repository root mode 000, absent file" $mode "$R" "${S3:0:16}000000FE"
    chmod 755 "$R"
    chmod 000 "$R/wal/${S1:0:16}"
    restore_fails "$mode: segment folder mode 000, present file" $mode "$R" "$S1"
    restore_fails "$mode: segment folder mode 000, absent file" $mode "$R" "${S3:0:16}000000FE"
    chmod 755 "$R/wal/${S1:0:16}"
    chmod 000 "$O"
    restore_fails "$mode: object mode 000" $mode "$R" "$S2"
    chmod 644 "$O"
    restore_ok "$mode: permissions back, restore works" $mode "$R" "$S1" "$T/segs/$S1"

    # --- a missing repository root, a missing repo.json
    restore_fails "$mode: repository root missing" $mode "$T/no-such-repo" "$S1"
    mv "$R" "$R.moved"
    restore_fails "$mode: repository moved away, absent file" $mode "$R" "${S3:0:16}000000FE"
    mv "$R.moved" "$R"
    mv "$R/repo.json" "$T/repo.json.saved"
    restore_fails "$mode: repo.json missing" $mode "$R" "$S1"
    mv "$T/repo.json.saved" "$R/repo.json"

    # --- bad arguments are not "not found" either
    rm -f "$D/pg_wal/RECOVERYXLOG"
    in_dir "$D" in_mode $mode "$REST" --repo "$R" "../../$S1" pg_wal/RECOVERYXLOG 2>/dev/null
    st=$?
    ok "$mode: %f with .. exits > 125 (got $st)" [ "$st" -gt 125 ]
    ok "$mode: %f with ..: %p not created" [ ! -e "$D/pg_wal/RECOVERYXLOG" ]
    in_mode $mode "$REST" --repo "$R" 2>/dev/null
    st=$?
    ok "$mode: no arguments exits > 125 (got $st)" [ "$st" -gt 125 ]
    in_mode $mode "$REST" --repo "$R" --no-such-option "$S1" "$T/x-$mode" 2>/dev/null
    st=$?
    ok "$mode: an unknown option exits > 125 (got $st)" [ "$st" -gt 125 ]
    in_dir "$D" in_mode $mode "$REST" --repo "$R" "$S1" no-such-dir/RECOVERYXLOG 2>/dev/null
    st=$?
    ok "$mode: %p in a missing directory exits > 125 (got $st)" [ "$st" -gt 125 ]
done

t_done
