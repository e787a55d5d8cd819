#!/usr/bin/env bash
# 018_wal_restore_fetch.sh -- ragsafe-restore's one-buffer fetch of a segment
# (lib/objinto.c, object_get_into: zstd decompresses straight into a buffer of the segment's
# size, hashed and written beside it) on objects ragsafe-archive never writes but the
# format allows or damage can make, built by hand with the zstd CLI and a trailer:
#   - a segment stored as two zstd frames (with content sizes and checksums, as the
#     CLI writes them): restored, byte for byte;
#   - an object holding more than a segment (a segment + 4 KiB, trailer matching):
#     refused (> 125) before anything is renamed into place, whatever the buffer;
#   - half a segment with a matching trailer: refused (> 125);
#   - a segment whose trailer records another SHA-256: refused (> 125);
# each on both I/O paths. Real pgbench WAL; repo.json from ragsafe-archive.
source "$(dirname "$0")/lib.sh"
t_init

ARCH=$RAGSAFE_BIN/ragsafe-archive
REST=$RAGSAFE_BIN/ragsafe-restore
command -v zstd >/dev/null || { t_skip "the zstd CLI is not installed"; }

pg_cp_archiving a "$T/segs" || exit 1
as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -i -s 1 -q postgres >/dev/null 2>&1
last=$(pg_sql a "select pg_walfile_name(pg_switch_wal())")
pg_wait_for a "select last_archived_wal >= '$last' from pg_stat_archiver" t 60 || exit 1
pg_stop a
mapfile -t SEGS < <(cd "$T/segs" && ls | grep -E '^[0-9A-F]{24}$' | sort)
ok "the source cluster produced at least 2 segments" [ "${#SEGS[@]}" -ge 2 ]
S1=${SEGS[0]} S2=${SEGS[1]}
chmod -R a+rX "$T/segs"

# object_of RAW OUT [SHA_FROM]: RAW as two zstd frames (split in the middle) plus a
# ragsafe trailer recording RAW's size and the SHA-256 of SHA_FROM (default RAW).
object_of() {
    local raw=$1 out=$2 sha_from=${3:-$1} half
    half=$(($(stat -c %s "$raw") / 2))
    head -c "$half" "$raw" | zstd -q -3 -c >"$out"
    tail -c +$((half + 1)) "$raw" | zstd -q -3 -c >>"$out"
    python3 - "$raw" "$sha_from" >>"$out" <<'PY'
import hashlib, os, struct, sys
size = os.path.getsize(sys.argv[1])
sha = hashlib.sha256(open(sys.argv[2], 'rb').read()).digest()
sys.stdout.buffer.write(struct.pack('<II4sIQ', 0x184D2A5E, 48, b'RGSF', 1, size) + sha)
PY
}
in_mode() {
    local m=$1; shift
    if [ "$m" = fallback ]; then as_pg env RAGSAFE_NO_URING=1 "$@"; else as_pg env -u RAGSAFE_NO_URING "$@"; fi
}
rest_s2() { (cd "$D" && in_mode "$1" "$REST" --repo "$R" "$S2" pg_wal/RECOVERYXLOG); }
# refused WHAT MODE: restoring S2 must exit > 125, name it, and leave nothing in pg_wal
refused() {
    local st
    rm -f "$D/pg_wal/RECOVERYXLOG"
    rest_s2 "$2" 2>"$T/err"
    st=$?
    if [ "$st" -gt 125 ]; then pass "$1: exit $st > 125"; else fail "$1: exit $st > 125"; sed 's/^/#   /' "$T/err"; fi
    is "$1: nothing left in pg_wal" "" "$(ls -A "$D/pg_wal" | grep RECOVERYXLOG)"
    ok "$1: the message names the object" grep -q "$S2" "$T/err"
}

head -c 4096 /dev/urandom >"$T/extra"
cat "$T/segs/$S2" "$T/extra" >"$T/long"
head -c $(($(stat -c %s "$T/segs/$S2") / 2)) "$T/segs/$S2" >"$T/short"
for mode in uring fallback; do
    R=$T/repo-$mode D=$T/data-$mode
    repo_init "$R"
    as_pg mkdir -p "$D/pg_wal"
    exit_is "$mode: archive $S1 (repo.json)" 0 in_mode $mode "$ARCH" --repo "$R" "$T/segs/$S1" "$S1"
    as_pg mkdir -p "$R/wal/${S2:0:16}"
    O=$R/wal/${S2:0:16}/$S2.zst

    object_of "$T/segs/$S2" "$O" && chown postgres: "$O"
    exit_is "$mode: a segment in two zstd frames: exit 0" 0 rest_s2 $mode
    ok "$mode: ... the original bytes" cmp -s "$D/pg_wal/RECOVERYXLOG" "$T/segs/$S2"

    object_of "$T/long" "$O"
    refused "$mode: a segment + 4 KiB, trailer matching" $mode
    ok "$mode: ... refused while decompressing (no byte past the segment)" grep -q "holds more than" "$T/err"
    object_of "$T/short" "$O"
    refused "$mode: half a segment, trailer matching" $mode
    object_of "$T/segs/$S2" "$O" "$T/segs/$S1"
    refused "$mode: a trailer with another SHA-256" $mode
    ok "$mode: ... reported as a checksum mismatch" grep -q "checksum mismatch" "$T/err"
done
t_done
