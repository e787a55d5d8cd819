#!/usr/bin/env bash
# 047_pitr_extract_errors.sh -- errors at the end of extraction are told apart:
# a full disk is an I/O failure of the restore (exit 1, reported once, naming the
# path), a tar that holds an entry twice is a damaged backup (exit 3, naming it).
#
# The decompressing thread reads up to 4 MiB ahead of the writer, so when the disk
# fills in the last MiB the object has already been read to its end: the old code
# then took the write error for a clean end, and the restore blamed the backup for
# every file it had not written ("missing from the backup", exit 3).
#   - bytes: a tmpfs sized from backup_manifest to run out about 256 KiB before the
#     end of the base tar (write() fails with ENOSPC);
#   - inodes: a tmpfs with room for every byte but three inodes short (open() fails
#     with ENOSPC). A free-space check before writing counts bytes, not inodes, so
#     this case still reaches the extraction when one is in place.
#   - a duplicate entry: base.tar.zst rebuilt with python's tarfile, one member
#     appended a second time, recompressed with zstd, its ragsafe trailer (size and
#     SHA-256 of the tar) and backup.json's digest of the object rewritten, so only
#     the duplicate is wrong. restore and verify both exit 3 naming the entry.
# b1 is a --format tar backup (restored with --target-lsn before b2); b2, of the
# default chunked format, goes through the same two full disks: its chunks are
# written in place by several threads, and a full disk must still be one I/O failure
# of the restore (exit 1, reported once), never blamed on the backup.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
pg_archiving src "$REPO" || exit 1
as_pg "$PGBIN/pgbench" -i -s 2 -q -h "$T/src" -p 5432 -U postgres postgres >/dev/null 2>&1 || exit 1
as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast -l b1 --format tar \
    >/dev/null 2>"$T/bb.err" || { cat "$T/bb.err"; exit 1; }
pg_sql src "create table after_backup (id int)" || exit 1
L1=$(pg_sql src "select pg_current_wal_lsn()")
as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast -l b2 \
    >/dev/null 2>"$T/bb2.err" || { cat "$T/bb2.err"; exit 1; }
pg_sql src "create table after_backup2 (id int)" || exit 1
switch_wal src || exit 1
pg_stop src

M=$REPO/backups/b1/backup_manifest
# bytes the extracted files take on a tmpfs (whole 4 KiB pages)
PAGES=$(jq '[.Files[].Size | ((. + 4095) / 4096 | floor)] | add' "$M")
NEED=$((PAGES * 4096))
ENTRIES=$(zstd -q -dc "$REPO/backups/b1/base.tar.zst" | tar -t | wc -l)
echo "# base tar: $ENTRIES entries, $NEED bytes in pages"
M2=$REPO/backups/b2/backup_manifest
PAGES2=$(jq '[.Files[].Size | ((. + 4095) / 4096 | floor)] | add' "$M2")
NEED2=$((PAGES2 * 4096))
ENTRIES2=$(zstd -q -dc "$REPO/backups/b2/base.chunks.zst" | jq '.entries | length')
echo "# chunked b2: $ENTRIES2 entries, $NEED2 bytes in pages"

# restore_into DIR NAME [OPTION...]: restore b1 (tar) into DIR/data; stderr in
# $T/NAME.err, status in $rc. restore_into2: the same for b2 (chunked).
restore_into() {
    local d=$1 n=$2; shift 2
    "$PITR" restore --repo "$REPO" --pgdata "$d/data" --target-lsn "$L1" "$@" >/dev/null 2>"$T/$n.err"
    rc=$?
    sed 's/^/#   /' "$T/$n.err" | head -8
}
restore_into2() {
    local d=$1 n=$2; shift 2
    "$PITR" restore --repo "$REPO" --pgdata "$d/data" --target-latest "$@" >/dev/null 2>"$T/$n.err"
    rc=$?
    sed 's/^/#   /' "$T/$n.err" | head -8
}

# --- the disk fills up near the end of the tar (bytes) ---------------------------------
FS=$T/fs
mkdir -p "$FS"
mount -t tmpfs -o size=$((NEED - 256 * 1024)),mode=0755 tmpfs "$FS" || { fail "mount a tmpfs"; t_done; exit 1; }
t_on_exit "umount '$FS'"
# the free-space check would refuse this up front (044 tests that): skip it to reach
# the write error the extraction itself must report
restore_into "$FS" bytes --no-space-check
is "disk full near the end: exit 1" 1 "$rc"
is "... the write error is reported once" 1 "$(grep -c 'No space left on device' "$T/bytes.err")"
ok "... naming the path it could not write" grep -Eq "could not write \"$FS/(data|\.data\.ragsafe-restore-[^/]+)/.*\": No space left on device" "$T/bytes.err"
ok "... and neither the backup nor the WAL is blamed" bash -c "! grep -qE 'missing from the|corrupt|mismatch|damaged' '$T/bytes.err'"
umount "$FS"

# --- the disk runs out of inodes near the end of the tar -------------------------------
# inodes: the tmpfs root, the data directory, one per tar entry; three short (bytes to
# spare for the free-space check: the files, the plan's WAL, 5 % and 64 MiB)
mount -t tmpfs -o size=$((NEED * 2 + 256 * 1024 * 1024)),nr_inodes=$((ENTRIES + 2 - 3)),mode=0755 tmpfs "$FS" \
    || { fail "mount a tmpfs with few inodes"; t_done; exit 1; }
restore_into "$FS" inodes
is "out of inodes near the end: exit 1" 1 "$rc"
is "... the error is reported once" 1 "$(grep -c 'No space left on device' "$T/inodes.err")"
ok "... naming the path" grep -Eq "\"$FS/(data|\.data\.ragsafe-restore-[^/]+)/.*\": No space left on device" "$T/inodes.err"
ok "... and neither the backup nor the WAL is blamed" bash -c "! grep -qE 'missing from the|corrupt|mismatch|damaged' '$T/inodes.err'"
umount "$FS"

# --- the same two full disks under a chunked restore (b2, --jobs 2) ---------------------
mount -t tmpfs -o size=$((NEED2 - 256 * 1024)),mode=0755 tmpfs "$FS" || { fail "mount a tmpfs"; t_done; exit 1; }
restore_into2 "$FS" cbytes --no-space-check --jobs 2
is "chunked: disk full near the end: exit 1" 1 "$rc"
is "... the write error is reported once" 1 "$(grep -c 'No space left on device' "$T/cbytes.err")"
ok "... naming the path it could not write" grep -Eq "\"$FS/(data|\.data\.ragsafe-restore-[^/]+)/.*\": No space left on device" "$T/cbytes.err"
ok "... and the backup is not blamed" bash -c "! grep -qE 'missing from the|corrupt|mismatch|damaged' '$T/cbytes.err'"
umount "$FS"
mount -t tmpfs -o size=$((NEED2 * 2 + 256 * 1024 * 1024)),nr_inodes=$((ENTRIES2 + 2 - 3)),mode=0755 tmpfs "$FS" \
    || { fail "mount a tmpfs with few inodes"; t_done; exit 1; }
restore_into2 "$FS" cinodes --jobs 2
is "chunked: out of inodes near the end: exit 1" 1 "$rc"
is "... the error is reported once" 1 "$(grep -c 'No space left on device' "$T/cinodes.err")"
ok "... naming the path" grep -Eq "\"$FS/(data|\.data\.ragsafe-restore-[^/]+)/.*\": No space left on device" "$T/cinodes.err"
ok "... and the backup is not blamed" bash -c "! grep -qE 'missing from the|corrupt|mismatch|damaged' '$T/cinodes.err'"
umount "$FS"

# --- a tar holding the same entry twice ---------------------------------------------
DUP=$T/repo-dup
cp -a "$REPO" "$DUP"
B=$DUP/backups/b1
zstd -q -dc "$B/base.tar.zst" >"$T/base.tar"
python3 - "$T/base.tar" "$B" <<'PY' || { fail "build a tar with a duplicate entry"; t_done; exit 1; }
import hashlib, io, json, os, struct, subprocess, sys, tarfile
src, bdir = sys.argv[1], sys.argv[2]
with tarfile.open(src) as t:
    members = t.getmembers()
    dup = next(m for m in members if m.isfile() and m.name.lstrip("./") == "PG_VERSION")
    data = t.extractfile(dup).read()
out = io.BytesIO()
with tarfile.open(src) as t, tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as w:
    for m in t.getmembers():
        w.addfile(m, t.extractfile(m) if m.isfile() else None)
    w.addfile(dup, io.BytesIO(data))           # the same entry again, same bytes
tar = out.getvalue()
z = subprocess.run(["zstd", "-q", "-c"], input=tar, stdout=subprocess.PIPE, check=True).stdout
obj = z + struct.pack("<II4sIQ", 0x184D2A5E, 48, b"RGSF", 1, len(tar)) + hashlib.sha256(tar).digest()
with open(os.path.join(bdir, "base.tar.zst"), "wb") as f:
    f.write(obj)
bj = os.path.join(bdir, "backup.json")
info = json.load(open(bj))
for f in info["files"]:
    if f["name"] == "base.tar.zst":
        f["sha256"] = hashlib.sha256(obj).hexdigest()
        f["stored_bytes"] = len(obj)
info["stored_bytes"] = sum(f["stored_bytes"] for f in info["files"])
json.dump(info, open(bj, "w"), indent=2)
print("# duplicated", dup.name)
PY
ok "the rebuilt object passes zstd -t" zstd -q -t "$B/base.tar.zst"
"$PITR" restore --repo "$DUP" --pgdata "$T/dup" --target-lsn "$L1" >/dev/null 2>"$T/dup.err"
rc=$?
sed 's/^/#   /' "$T/dup.err" | head -6
is "a duplicate tar entry: restore exits 3" 3 "$rc"
ok "... naming the entry" grep -q 'tar entry "PG_VERSION" appears twice in "backups/b1/base.tar.zst"' "$T/dup.err"
ok "... not as a failed create" bash -c "! grep -q 'File exists' '$T/dup.err'"
"$PITR" verify --repo "$DUP" >"$T/vdup.out" 2>&1
rc=$?
sed 's/^/#   /' "$T/vdup.out" | head -6
is "a duplicate tar entry: verify exits 3" 3 "$rc"
ok "... naming the entry" grep -q 'tar entry "PG_VERSION" appears twice' "$T/vdup.out"

# --- a chunk manifest holding the same entry twice (b2) --------------------------------
DUPC=$T/repo-dupc
cp -a "$REPO" "$DUPC"
B=$DUPC/backups/b2
python3 - "$B" "$T/dupc.json" <<'PY' || fail "build a chunk manifest with a duplicate entry"
import hashlib, json, os, subprocess, sys
bdir, tmp = sys.argv[1], sys.argv[2]
cm = os.path.join(bdir, "base.chunks.zst")
m = json.loads(subprocess.run(["zstd", "-q", "-dc", cm], stdout=subprocess.PIPE, check=True).stdout)
m["entries"].append([e for e in m["entries"] if e["path"] == "PG_VERSION"][0])
open(tmp, "w").write(json.dumps(m))
obj = subprocess.run(["zstd", "-q", "-c", tmp], stdout=subprocess.PIPE, check=True).stdout
open(cm, "wb").write(obj)
bj = os.path.join(bdir, "backup.json")
info = json.load(open(bj))
for f in info["files"]:
    if f["name"] == "base.chunks.zst":
        f["sha256"] = hashlib.sha256(obj).hexdigest()
        f["stored_bytes"] = len(obj)
json.dump(info, open(bj, "w"), indent=2)
PY
"$PITR" restore --repo "$DUPC" --pgdata "$T/dupc" --target-latest >/dev/null 2>"$T/dupc.err"
rc=$?
sed 's/^/#   /' "$T/dupc.err" | head -6
is "a duplicate chunk manifest entry: restore exits 3" 3 "$rc"
ok "... naming the entry" grep -q 'entry "PG_VERSION" appears twice in "backups/b2/base.chunks.zst"' "$T/dupc.err"
ok "... nothing left" test ! -e "$T/dupc"
"$PITR" verify --repo "$DUPC" >"$T/vdupc.out" 2>&1
is "a duplicate chunk manifest entry: verify exits 3" 3 "$?"
ok "... naming the entry" grep -q 'entry "PG_VERSION" appears twice' "$T/vdupc.out"

# the untouched repository still restores: the checks above are not blanket refusals
"$PITR" restore --repo "$REPO" --pgdata "$T/good" --target-latest >/dev/null 2>"$T/good.err"
is "the original backup restores: exit 0" 0 "$?"
exit_is "... and verifies" 0 bash -c "'$PITR' verify --repo '$REPO' >/dev/null 2>&1"

t_done
