#!/usr/bin/env bash
# 051_milvus_integrity -- ragsafe-milvus verify, restore and expire against damage.
#
# Milvus cannot run on these machines: the volumes are synthetic Milvus-shaped trees
# made by fake_milvus.py (see 050_milvus_snapshot.sh), taken with --assume-stopped.
#
# Covers: one flipped byte in a stored object makes verify and restore fail (exit 3)
# naming the object, and the restore leaves its targets as they were; a missing object
# is named too; manifests with "..", absolute paths or a path through a symlink are
# refused before anything is written; expire keeps every object its kept snapshots
# reference and removes the rest; the repository lock is shared with snapshot;
# a different stack version is refused.
source "$(dirname "$0")/lib.sh"
t_init

milvus_env || exit 1

python3 "$FAKE" gen "$V" --mb 24 --seed 3
"$M" snapshot --repo "$R" "${VOLS[@]}" --assume-stopped --label a1 >/dev/null
is "snapshot a1" 0 $?

# --- a flipped byte -------------------------------------------------------------------
# the object of the etcd db: find its digest in the manifest
mget() { python3 "$FAKE" manifest-get "$R/milvus/snapshots/$1.json.zst"; }
mput() { python3 "$FAKE" manifest-put "$R/milvus/snapshots/$1.json.zst"; }
dbsha=$(mget a1 | python3 -c '
import json, sys
m = json.load(sys.stdin)
for v in m["volumes"]:
    for e in v["entries"]:
        if v["name"] == "etcd" and e["path"] == "member/snap/db":
            print(e["sha256"])')
OBJ="milvus/objects/${dbsha:0:2}/$dbsha.zst"
ok "db object stored" test -f "$R/$OBJ"
cp "$R/$OBJ" "$T/obj.good"
python3 - "$R/$OBJ" <<'PY'
import os, sys
p = sys.argv[1]
with open(p, "r+b") as f:
    off = os.path.getsize(p) // 2
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x01]))
PY
"$M" verify --repo "$R" >"$T/v.out" 2>"$T/v.err"
is "verify of a flipped byte exits 3" 3 $?
ok "verify names the corrupt object" grep -q "$OBJ\" is corrupt" "$T/v.err"
ok "verify counts one corrupt object" grep -q "1 corrupt" "$T/v.out"
"$M" verify a1 --repo "$R" >/dev/null 2>&1
is "verify of the one snapshot exits 3" 3 $?

F="$T/fresh"
mkdir -p "$F/etcd"
"$M" restore a1 --repo "$R" $(to "$F") --assume-stopped >"$T/r.out" 2>"$T/r.err"
is "restore over a flipped byte exits 3" 3 $?
ok "restore names the corrupt object" grep -q "$OBJ\" is corrupt" "$T/r.err"
ok "restore names the file it could not write" grep -q 'could not restore ".*/etcd/member/snap/db"' "$T/r.err"
ok "empty target left empty" test -z "$(ls -A "$F/etcd")"
ok "absent target left absent" test ! -e "$F/minio"
ok "partial restore kept aside for inspection" test -d "$(ls -d "$F"/minio.ragsafe-failed-* | head -1)"
rm -rf "$F"

# --- a missing object ------------------------------------------------------------------
mv "$R/$OBJ" "$T/obj.bad"
"$M" verify --repo "$R" >/dev/null 2>"$T/v.err"
is "verify with a missing object exits 3" 3 $?
ok "verify names the missing object and the file" grep -q "\"$OBJ\" for \"etcd/member/snap/db\" is missing" "$T/v.err"
exit_is "restore with a missing object exits 3" 3 "$M" restore a1 --repo "$R" $(to "$F") --assume-stopped
rm -rf "$F"
cp "$T/obj.good" "$R/$OBJ"
exit_is "verify after repair exits 0" 0 "$M" verify --repo "$R"

# --- hostile manifests -----------------------------------------------------------------
# each variant of a1's manifest, stored under a new label, must be refused before any
# file is written
evil() { # label python-statement-editing-entries-of-volume-etcd
    mget a1 | python3 -c '
import json, sys
m = json.load(sys.stdin)
m["label"] = sys.argv[1]
ents = [v for v in m["volumes"] if v["name"] == "etcd"][0]["entries"]
exec(sys.argv[2])
json.dump(m, sys.stdout)' "$1" "$2" | mput "$1"
}
evil dotdot 'ents.append({"path": "../../escaped", "type": "file", "mode": 420, "size": ents[-1].get("size", 0), "sha256": [e for e in ents if e["type"] == "file"][0]["sha256"]})'
evil abspath 'ents.append({"path": "/tmp/escaped", "type": "dir", "mode": 493})'
evil midparent 'ents.append({"path": "member/../../escaped", "type": "dir", "mode": 493})'
evil vialink 'ents.append({"path": "lnk", "type": "symlink", "target": "'"$T"'/outside"}); ents.append({"path": "lnk/escaped", "type": "file", "mode": 420, "size": 0, "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"})'
mkdir -p "$T/outside"
for l in dotdot abspath midparent vialink; do
    "$M" restore "$l" --repo "$R" $(to "$F") --assume-stopped >/dev/null 2>"$T/e.err"
    is "manifest '$l' refused (exit 1)" 1 $?
    ok "manifest '$l': nothing written" test ! -e "$F"
done
ok "refusal names the unsafe path" grep -q 'not a directory listed before it' "$T/e.err"
"$M" restore dotdot --repo "$R" $(to "$F") --assume-stopped 2>&1 | grep -q 'unsafe path "../../escaped"'
is "'..' refusal names the path" 0 "${PIPESTATUS[1]}"
ok "nothing escaped" test ! -e "$T/escaped" -a ! -e /tmp/escaped -a -z "$(ls -A "$T/outside")"
rm -f "$R"/milvus/snapshots/{dotdot,abspath,midparent,vialink}.json.zst

# --- expire keeps what kept snapshots reference ------------------------------------------
python3 "$FAKE" grow "$V" --percent 5 --seed 21 >/dev/null
"$M" snapshot --repo "$R" "${VOLS[@]}" --assume-stopped --label a2 >/dev/null
python3 "$FAKE" grow "$V" --percent 5 --seed 22 >/dev/null
"$M" snapshot --repo "$R" "${VOLS[@]}" --assume-stopped --label a3 >/dev/null
want=$(python3 - "$R/milvus/snapshots" "$FAKE" <<'PY'
import json, os, subprocess, sys
d = sys.argv[1]
def shas(l):
    m = json.loads(subprocess.run([sys.executable, sys.argv[2], "manifest-get",
                                   os.path.join(d, l + ".json.zst")],
                                  stdout=subprocess.PIPE, check=True).stdout)
    out = set()
    for v in m["volumes"]:
        for e in v["entries"]:
            if e["type"] == "file":
                out |= set(e["chunks"]) if "chunks" in e else {e["sha256"]}
    return out
a1, a2, a3 = shas("a1"), shas("a2"), shas("a3")
print(len(a1 - a2 - a3), len(a2 | a3))
PY
)
before=$(find "$R/milvus/objects" -type f | wc -l)
out=$("$M" expire --repo "$R" --keep-last 2 --dry-run --json)
is "dry run removes nothing" "$before" "$(find "$R/milvus/objects" -type f | wc -l)"
out=$("$M" expire --repo "$R" --keep-last 2 --json)
is "expire exits 0" 0 $?
ok "oldest snapshot expired" test ! -e "$R/milvus/snapshots/a1.json.zst"
ok "kept snapshots remain" test -e "$R/milvus/snapshots/a2.json.zst" -a -e "$R/milvus/snapshots/a3.json.zst"
is "objects only a1 referenced are removed" "${want% *}" \
   "$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["objects_removed"])')"
is "every object a2 and a3 reference is kept" "${want#* }" "$(find "$R/milvus/objects" -type f | wc -l)"
exit_is "verify after expire exits 0" 0 "$M" verify --repo "$R"
F2="$T/fresh2"
"$M" restore a2 --repo "$R" $(to "$F2") --assume-stopped >/dev/null
is "oldest kept snapshot still restores" 0 $?
rm -rf "$F2"
# --keep-daily keeps the newest snapshot of each of the last D days: a copy of a2 dated
# yesterday survives, a2 (same day as the newer a3) goes
mget a2 | python3 -c '
import json, sys
m = json.load(sys.stdin)
m["label"] = "old"
m["started_unix"] -= 86400
json.dump(m, sys.stdout)' | mput old
touch -d '-1 day' "$R/milvus/snapshots/old.json.zst"
"$M" expire --repo "$R" --keep-last 1 --keep-daily 2 >/dev/null
is "keep-daily keeps the newest of each day" "a3.json.zst old.json.zst" "$(ls "$R/milvus/snapshots" | tr '\n' ' ' | sed 's/ $//')"
exit_is "verify after keep-daily expire exits 0" 0 "$M" verify --repo "$R"
exit_is "expire without --keep-last is a usage error" 2 "$M" expire --repo "$R"
# a damaged manifest: verify and restore exit 3, expire refuses to sweep
cp "$R/milvus/snapshots/a3.json.zst" "$T/a3.good"
python3 -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 3] ^= 0x20; open(p, "wb").write(b)' \
    "$R/milvus/snapshots/a3.json.zst"
"$M" verify --repo "$R" >/dev/null 2>"$T/v.err"
is "verify with a damaged manifest exits 3" 3 $?
ok "verify names the damaged manifest" grep -q 'a3.json.zst' "$T/v.err"
exit_is "restore from a damaged manifest exits 3" 3 "$M" restore a3 --repo "$R" $(to "$T/fresh4") --assume-stopped
exit_is "expire refuses while a manifest is unreadable" 1 "$M" expire --repo "$R" --keep-last 1
# ... but it hides no good snapshot from list (issue 12)
"$M" list --repo "$R" >"$T/l.out" 2>"$T/l.err"
is "list with a damaged manifest exits 0" 0 $?
ok "list still shows the good snapshot" grep -q '^old ' "$T/l.out"
ok "list leaves the damaged one out" bash -c '! grep -q "^a3 " "$1"' _ "$T/l.out"
ok "list names the damaged manifest" grep -q 'snapshot "a3" is left out' "$T/l.err"
cp "$T/a3.good" "$R/milvus/snapshots/a3.json.zst"
# a manifest whose file size does not match its object: restore would refuse it, so
# verify must too (issue 12)
mget a3 | python3 -c '
import json, sys
m = json.load(sys.stdin)
m["label"] = "wsize"
for v in m["volumes"]:
    for e in v["entries"]:
        if v["name"] == "etcd" and e["path"] == "member/snap/db":
            e["size"] += 1
json.dump(m, sys.stdout)' | mput wsize
"$M" verify --repo "$R" >/dev/null 2>"$T/ws.err"
is "verify of a manifest with a wrong file size exits 3" 3 $?
ok "verify names the file and both sizes" grep -q 'snapshot "wsize": "etcd/member/snap/db" is [0-9]* bytes.* in the manifest, its object holds' "$T/ws.err"
exit_is "verify of that one snapshot exits 3" 3 "$M" verify wsize --repo "$R"
exit_is "restore of it exits 3 too" 3 "$M" restore wsize --repo "$R" $(to "$T/fresh5") --assume-stopped
rm -f "$R/milvus/snapshots/wsize.json.zst"
rm -rf "$T/fresh5"

# --- the lock is shared with snapshot ------------------------------------------------------
python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "a"); fcntl.flock(f, fcntl.LOCK_EX); open(sys.argv[2], "w").close()
time.sleep(30)' "$R/locks/milvus.lock" "$T/locked" &
lpid=$!
t_on_exit "kill $lpid"
for _ in $(seq 50); do [ -e "$T/locked" ] && break; sleep 0.1; done
exit_is "snapshot refused while the lock is held" 1 "$M" snapshot --repo "$R" "${VOLS[@]}" \
    --assume-stopped --label locked
exit_is "expire refused while the lock is held" 1 "$M" expire --repo "$R" --keep-last 1
kill "$lpid" 2>/dev/null
wait "$lpid" 2>/dev/null

# --- a different stack version is refused ----------------------------------------------------
"$M" snapshot --repo "$R" "${VOLS[@]}" --assume-stopped --label v1 \
    --version-cmd 'echo milvus:v2.4.15 etcd:v3.5.16 minio:RELEASE.2023-03-20' >/dev/null
exit_is "restore under another stack version exits 3" 3 "$M" restore v1 --repo "$R" \
    $(to "$T/fresh3") --assume-stopped --version-cmd 'echo milvus:v2.5.4 etcd:v3.5.16 minio:RELEASE.2023-03-20'
ok "nothing restored under another version" test ! -e "$T/fresh3"
exit_is "--ignore-version restores anyway" 0 "$M" restore v1 --repo "$R" $(to "$T/fresh3") \
    --assume-stopped --ignore-version --version-cmd 'echo milvus:v2.5.4'

t_done
