#!/usr/bin/env bash
# 082_output_summary.sh -- what the tools say when nobody watches a terminal, and the
# progress of long work (issue 13: "Quiet where it should not be", "Progress on long
# work").
#
#   - ragsafe-basebackup prints a one-line summary on stderr (label, size, duration,
#     rate, WAL range; the range's segments are in the repository) while stdout keeps
#     only the label;
#   - --progress prints plain progress lines to a non-terminal (basebackup, its
#     --verify, pitr restore and verify, milvus snapshot and verify); without it
#     nothing; on a pseudo-terminal (script(1)) one line redrawn with "\r" and
#     clear-to-EOL, and --no-progress silences it there;
#   - ragsafe-files keygen says where the key is (absolute path) and to keep a copy
#     away from the repository;
#   - basebackup --verify counts the data files of backup_manifest, not stored objects;
#   - ragsafe-milvus verify names both snapshots and every file a damaged object shared
#     by two snapshots takes away; restore reports that object once, however many files
#     and workers need it.
# Milvus cannot run on these machines: the Milvus volumes here are plain directories
# made by this script, snapshotted with --assume-stopped (as 050/051 do with
# fake_milvus.py).
source "$(dirname "$0")/lib.sh"
t_init

BB=$RAGSAFE_BIN/ragsafe-basebackup
PITR=$RAGSAFE_BIN/ragsafe-pitr
M=$RAGSAFE_BIN/ragsafe-milvus
REPO=$T/repo

pg_archiving a "$REPO" || exit 1
as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -i -s 2 -q postgres >/dev/null 2>&1 || exit 1
bb() { as_pg "$BB" -d "$(pg_conn a)" --repo "$REPO" -c fast "$@"; }

# --- the summary on stderr, the label alone on stdout -----------------------------------
bb -l b1 >"$T/b1.out" 2>"$T/b1.err" || { cat "$T/b1.err"; exit 1; }
sumre='notice: backup "b1" done: [0-9.]+ [KMGT]?i?B \([0-9.]+ [KMGT]?i?B stored\) in [0-9.]+ s \([0-9.]+ [KMGT]?i?B/s\), WAL [0-9A-F]{24} \.\. [0-9A-F]{24}$'
ok "summary line on stderr (not a terminal) while stdout holds only the label" \
    bash -c '[ "$(cat "$1")" = b1 ] && grep -Eq "$2" "$3"' _ "$T/b1.out" "$sumre" "$T/b1.err"
first=$(sed -En 's/.*, WAL ([0-9A-F]{24}) \.\. ([0-9A-F]{24})$/\1/p' "$T/b1.err")
last=$(sed -En 's/.*, WAL ([0-9A-F]{24}) \.\. ([0-9A-F]{24})$/\2/p' "$T/b1.err")
ok "the summary's WAL range is in the repository" \
    bash -c 'test -n "$2" && test -n "$3" && test -f "$1/wal/${2:0:16}/$2.zst" && test -f "$1/wal/${3:0:16}/$3.zst"' \
    _ "$REPO" "$first" "$last"

# --- --progress to a non-terminal ------------------------------------------------------
bb -l b2 --progress >"$T/b2.out" 2>"$T/b2.err"
is "backup --progress exits 0 and prints the label" "0 b2" "$? $(cat "$T/b2.out")"
ok "plain progress lines (no terminal control) on a non-terminal with --progress, none without" \
    bash -c '! grep -q "progress:" "$1" && grep -Eq "^ragsafe-basebackup: progress: backup: [0-9.]+ [KMGT]?i?B( of | in )" "$2" && ! grep -q $'"'"'[\r\033]'"'"' "$2"' \
    _ "$T/b1.err" "$T/b2.err"

# --- on a pseudo-terminal -----------------------------------------------------------------
as_pg script -qec "$BB -d '$(pg_conn a)' --repo '$REPO' -c fast -l tty1 >'$T/tty1.out'" \
    "$T/tty1.log" >/dev/null 2>&1
ok "terminal: one line redrawn (\\r, clear to EOL) and the summary after it" \
    bash -c 'grep -q "^tty1$" "$1" && grep -q $'"'"'\rbackup: .*\033\[K'"'"' "$2" && grep -q "backup \"tty1\" done:" "$2"' \
    _ "$T/tty1.out" "$T/tty1.log"
as_pg script -qec "$BB -d '$(pg_conn a)' --repo '$REPO' -c fast -l tty2 --no-progress >'$T/tty2.out'" \
    "$T/tty2.log" >/dev/null 2>&1
ok "terminal with --no-progress: no progress line, the summary still" \
    bash -c 'grep -q "^tty2$" "$1" && ! grep -q $'"'"'\rbackup: '"'"' "$2" && grep -q "backup \"tty2\" done:" "$2"' \
    _ "$T/tty2.out" "$T/tty2.log"

# --- basebackup --verify counts the data files -----------------------------------------
nman=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["Files"]))' \
    "$REPO/backups/b1/backup_manifest")
as_pg "$BB" --repo "$REPO" --verify b1 >/dev/null 2>"$T/v.err"
is "--verify exits 0 and counts as many files checked as backup_manifest lists ($nman)" 0:1 \
    "$?:$(grep -c "backup \"b1\" verified: $nman files checked" "$T/v.err")"
as_pg "$BB" --repo "$REPO" --verify b1 --progress >/dev/null 2>"$T/vp.err"
ok "--verify --progress: progress lines" grep -q '^ragsafe-basebackup: progress: verify: ' "$T/vp.err"

# --- pitr restore and verify -------------------------------------------------------------
"$PITR" verify --repo "$REPO" >/dev/null 2>"$T/pv0.err"
"$PITR" verify --repo "$REPO" --progress >/dev/null 2>"$T/pv.err"
ok "pitr verify: progress lines with --progress only" \
    bash -c '! grep -q "progress:" "$1" && grep -Eq "^ragsafe-pitr: progress: verify: [0-9.]+ [KMGT]?i?B in " "$2"' \
    _ "$T/pv0.err" "$T/pv.err"
"$PITR" restore --repo "$REPO" --pgdata "$T/r1" --target-immediate --progress >/dev/null 2>"$T/pr.err"
is "pitr restore --progress exits 0" 0 $?
ok "pitr restore: progress lines with --progress" \
    grep -Eq '^ragsafe-pitr: progress: restore: [0-9.]+ [KMGT]?i?B in ' "$T/pr.err"
pg_stop a

# --- ragsafe-files keygen ---------------------------------------------------------------
(cd "$T" && "$RAGSAFE_BIN/ragsafe-files" keygen fkey) 2>"$T/kg.err"
ok "keygen says where the key is (absolute path)" grep -q "\"$T/fkey\"" "$T/kg.err"
ok "keygen says to keep a copy away from the repository" \
    grep -q 'keep a copy away from the repository' "$T/kg.err"

# --- milvus: one damaged object shared by two snapshots ------------------------------------
V=$T/vol
MR=$T/mrepo
mkdir -p "$V/etcd/member" "$V/minio/bucket" "$V/milvus/rdb" "$MR"
head -c 200000 /dev/urandom >"$T/shared.bin"
cp "$T/shared.bin" "$V/etcd/member/db"
for i in $(seq 1 30); do cp "$T/shared.bin" "$V/minio/bucket/obj$i"; done
head -c 5000 /dev/urandom >"$V/milvus/rdb/other"
VOLS=(--volume "etcd=$V/etcd" --volume "minio=$V/minio" --volume "milvus=$V/milvus")
"$M" snapshot --repo "$MR" "${VOLS[@]}" --assume-stopped --label s1 >/dev/null 2>"$T/ms1.err"
echo more >"$V/milvus/rdb/more"
"$M" snapshot --repo "$MR" "${VOLS[@]}" --assume-stopped --label s2 --progress >/dev/null 2>"$T/ms2.err"
ok "milvus snapshot: progress lines with --progress, none without" \
    bash -c '! grep -q "progress:" "$1" && grep -Eq "^ragsafe-milvus: progress: snapshot: [0-9.]+ [KMGT]?i?B in " "$2"' \
    _ "$T/ms1.err" "$T/ms2.err"
sha=$(sha256sum <"$T/shared.bin" | cut -c1-64)
OBJ="milvus/objects/${sha:0:2}/$sha.zst"
# the snapshots must exist and share the object, or nothing below means anything
test -f "$MR/$OBJ" -a -f "$MR/milvus/snapshots/s1.json.zst" || { echo "# setup failed"; cat "$T"/ms*.err; exit 1; }
python3 - "$MR/$OBJ" <<'PY'
import os, sys
p = sys.argv[1]
with open(p, "r+b") as f:
    off = os.path.getsize(p) // 2
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x01]))
PY
"$M" verify --repo "$MR" >/dev/null 2>"$T/mv.err" # naming, with no option new to it
named() { grep -c "snapshot \"$1\": file \"$2\" is damaged: it needs object \"$OBJ\"" "$T/mv.err"; }
ok "verify names snapshot s1's files that need it" \
    bash -c '[ "$1" = 1 ] && [ "$2" = 1 ] && [ "$3" = 1 ]' _ "$(named s1 etcd/member/db)" \
    "$(named s1 minio/bucket/obj1)" "$(named s1 minio/bucket/obj30)"
ok "verify names snapshot s2's files that need it" \
    bash -c '[ "$1" = 1 ] && [ "$2" = 1 ]' _ "$(named s2 etcd/member/db)" "$(named s2 minio/bucket/obj7)"
is "verify names all 62 files (31 in each snapshot), nothing else" 62 \
    "$(grep -c 'is damaged: it needs object' "$T/mv.err")"
"$M" verify --repo "$MR" --progress >/dev/null 2>"$T/mvp.err"
is "milvus verify --progress exits 3 with progress lines" 3:1 \
    "$?:$(grep -c '^ragsafe-milvus: progress: verify: ' "$T/mvp.err")"

F=$T/fresh
"$M" restore s1 --repo "$MR" --volume "etcd=$F/etcd" --volume "minio=$F/minio" \
    --volume "milvus=$F/milvus" --assume-stopped --jobs 8 >/dev/null 2>"$T/mr.err"
is "restore exits 3 and reports the damaged object once (31 files, 8 workers need it)" "3 1 1" \
    "$? $(grep -c "could not restore \".*\": object \"$OBJ\" is corrupt" "$T/mr.err") $(grep -c 'could not decompress object' "$T/mr.err")"

t_done
