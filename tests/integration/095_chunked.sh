#!/usr/bin/env bash
# 095_chunked.sh -- chunked base backups (ragsafe-basebackup --format chunked).
#   - backup b1, pgbench -N (about 2 % of pgbench_accounts' pages), backup b2: b2 stores
#     < 40 % of b1's bytes; no object under chunks/ is a plain digest;
#   - each backup restores (pitr restore --jobs 2) to its exact state (a checksum of
#     pgbench_accounts taken right after the backup); in a copy of the repository with
#     b2 removed and expire run (b2's pack swept), b1 still restores; with b1 expired,
#     b2 still restores; verify passes;
#   - pitr extract: a plain data directory that pg_verifybackup -n accepts;
#   - a flipped chunk used by both backups: verify exit 3 naming both backups and the
#     file; restore exit 3 naming file and chunk; a missing pack: restore refuses before
#     writing anything (exit 3);
#   - kill -9 during a backup, and during expire's sweep: the next backup / expire and
#     verify pass.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
BB=$RAGSAFE_BIN/ragsafe-basebackup
REPO=$T/repo
SCALE=${CHUNKED_SCALE:-10}
pg_archiving src "$REPO" || exit 1
as_pg pgbench -i -q -s "$SCALE" -h "$T/src" -p 5432 -U postgres postgres >"$T/pgbench-init.log" 2>&1 \
    || { cat "$T/pgbench-init.log"; fail "pgbench -i"; t_done; exit 1; }

SUM="select md5(string_agg(aid::text || ':' || abalance, ',' order by aid)) from pgbench_accounts"
bb() { as_pg "$BB" -d "$(pg_conn src)" --repo "$REPO" -c fast --format chunked --no-progress "$@"; }
jget() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
LSN="select pg_current_wal_lsn()"

# --- 1. two backups, the second small ------------------------------------------------
bb --label b1 >/dev/null 2>"$T/bb1.err"
is "chunked backup b1" 0 "$?"
S1=$(pg_sql src "$SUM"); L1=$(pg_sql src "$LSN")
as_pg pgbench -n -N -t "${CHUNKED_TXNS:-300}" -h "$T/src" -p 5432 -U postgres postgres >/dev/null 2>&1
bb --label b2 >/dev/null 2>"$T/bb2.err"
is "chunked backup b2" 0 "$?"
S2=$(pg_sql src "$SUM"); L2=$(pg_sql src "$LSN")
pg_sql src "create table later (id int)" # WAL past L2 so both targets are reachable
switch_wal src || exit 1
ok "the data changed between the backups" [ "$S1" != "$S2" ]
B1=$(jget "$REPO/backups/b1/backup.json" 'j["stored_bytes"]')
B2=$(jget "$REPO/backups/b2/backup.json" 'j["stored_bytes"]')
echo "# stored bytes: b1 $B1, b2 $B2 ($((B2 * 100 / B1)) %)"
ok "b2 stores < 40 % of b1's bytes" [ "$((B2 * 100))" -lt "$((B1 * 40))" ]
is "backup.json says chunked" chunked "$(jget "$REPO/backups/b2/backup.json" 'j["layout"]')"
as_pg "$BB" --repo "$REPO" --verify b2 >/dev/null 2>"$T/bbv.err"
is "ragsafe-basebackup --verify of a chunked backup exits 0" 0 "$?"
ok "no tar in a chunked backup" bash -c "! ls '$REPO'/backups/b1/ | grep -q tar"
ok "objects under chunks/ are packs and indexes with random names" \
    bash -c "ls '$REPO/chunks' | grep -Eqv '^[0-9a-f]{32}\.(pack|idx)$' && exit 1; ls '$REPO/chunks' | grep -q pack"
CTRL=$(sha256sum "$T/src/PG_VERSION" | cut -c1-64)
ok "no object name holds a content digest" bash -c "! find '$REPO' | grep -q '$CTRL'"

# --- 2. restores -------------------------------------------------------------------------
restore() { # restore REPO NAME LSN [args]
    local repo=$1 name=$2 lsn=$3; shift 3
    "$PITR" restore --repo "$repo" --pgdata "$T/$name" --target-lsn "$lsn" \
        --set "unix_socket_directories=$T/$name" "$@"
}
boot_sum() { # boot_sum NAME: start, wait for promotion, print the checksum, stop
    pg_start "$1" >/dev/null && pg_wait_for "$1" "select pg_is_in_recovery()" f 120 \
        && pg_sql "$1" "$SUM"; pg_stop "$1" >/dev/null 2>&1
}
cp -a "$REPO" "$T/repo2"
restore "$REPO" r2 "$L2" --jobs 2 >"$T/r2.out" 2>"$T/r2.err"
is "restore of b2 exits 0" 0 "$?"
ok "restore used b2" grep -q "b2" "$T/r2.out"
is "b2 restores to its exact state" "$S2" "$(boot_sum r2)"
restore "$REPO" r1 "$L1" --jobs 1 >"$T/r1.out" 2>"$T/r1.err"
is "restore of b1 exits 0" 0 "$?"
is "b1 restores to its exact state" "$S1" "$(boot_sum r1)"

# b1 expired: b2 alone
"$PITR" expire --repo "$REPO" --keep-window 0 --keep-backups 0 --min-backups 1 >"$T/exp1.out" 2>&1
is "expire of b1 exits 0" 0 "$?"
ok "b1 is gone" [ ! -e "$REPO/backups/b1" ]
restore "$REPO" r2b "$L2" >"$T/r2b.out" 2>"$T/r2b.err"
is "b2 restores after b1 expired" "$S2" "$(boot_sum r2b)"
"$PITR" verify --repo "$REPO" >"$T/v1.out" 2>&1
is "verify after expiring b1 exits 0" 0 "$?"

# --delta over b1's restored (and started) copy, to b2: only changed chunks fetched
restore "$REPO" r1 "$L2" --delta >"$T/rdelta.out" 2>"$T/rdelta.err"
is "restore --delta over b1's copy to b2 exits 0" 0 "$?"
ok "--delta fetched fewer chunks than the backup has" python3 -c '
import re, sys
m = re.search(r"delta: (\d+) of (\d+) chunk", open(sys.argv[1]).read())
sys.exit(0 if m and int(m.group(1)) < int(m.group(2)) / 2 else 1)' "$T/rdelta.err"
is "the delta copy holds b2's state" "$S2" "$(boot_sum r1)"

# b2 removed (the other order): its own pack goes, b1 still restores
PACKS=$(ls "$T/repo2/chunks" | grep -c pack)
rm -rf "$T/repo2/backups/b2"
"$PITR" expire --repo "$T/repo2" --keep-window 3650d >"$T/exp2.out" 2>&1
is "expire (sweep) of the copy exits 0" 0 "$?"
ok "the pack only b2 used was swept" [ "$(ls "$T/repo2/chunks" | grep -c pack)" -lt "$PACKS" ]
restore "$T/repo2" r1b "$L1" >"$T/r1b.out" 2>"$T/r1b.err"
is "b1 restores after b2 was removed and swept" "$S1" "$(boot_sum r1b)"

# --- 3. extract ----------------------------------------------------------------------------
"$PITR" extract --repo "$REPO" b2 "$T/x2" >"$T/x2.out" 2>"$T/x2.err"
is "extract exits 0" 0 "$?"
ok "pg_verifybackup -n accepts the extracted directory" "$PGBIN/pg_verifybackup" -n "$T/x2"
mkdir -p "$T/full"; touch "$T/full/x"
"$PITR" extract --repo "$REPO" b2 "$T/full" >/dev/null 2>"$T/x3.err"
is "extract into a non-empty directory: exit 1" 1 "$?"
ok "... and says why" grep -q "not empty" "$T/x3.err"

# --- 4. damage -------------------------------------------------------------------------------
# a chunk both b2 and b3 use, inside pgbench_accounts: flip a byte of its compressed data
bb --label b3 >/dev/null 2>"$T/bb3.err"
is "chunked backup b3" 0 "$?"
L3=$(pg_sql src "$LSN"); pg_sql src "create table later2 (id int)"; switch_wal src || exit 1
ACC=$(pg_sql src "select pg_relation_filepath('pgbench_accounts')")
cat >"$T/flip.py" <<'PY'
import json, os, struct, subprocess, sys
repo, path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
def chunks(label):
    raw = subprocess.run(["zstd", "-dc", f"{repo}/backups/{label}/base.chunks.zst"], capture_output=True, check=True).stdout
    for e in json.loads(raw)["entries"]:
        if e["path"] == path:
            return e["chunks"]
want = set(chunks("b2")) & set(chunks("b3"))
for name in sorted(os.listdir(f"{repo}/chunks")):
    if not name.endswith(".pack"):
        continue
    p = f"{repo}/chunks/{name}"
    data = bytearray(open(p, "rb").read())
    off = 0
    while off < len(data):
        magic, size, raw, zl = struct.unpack_from("<IIII", data, off)
        digest = data[off + 16:off + 48].hex()
        if digest in want:
            if mode == "flip":
                data[off + 48 + zl // 2] ^= 0xFF
                open(p, "wb").write(data)
            print(digest, name)
            sys.exit(0)
        off += 48 + zl
sys.exit(1)
PY
cp -a "$REPO" "$T/repo.good"
FLIP=$(python3 "$T/flip.py" "$REPO" "$ACC" flip)
ok "a shared chunk of $ACC was flipped" [ -n "$FLIP" ]
CHUNK=${FLIP%% *}
"$PITR" verify --repo "$REPO" >"$T/v2.out" 2>"$T/v2.err"
is "verify of a flipped chunk: exit 3" 3 "$?"
ok "verify names the chunk" grep -q "chunk $CHUNK" "$T/v2.err"
ok "verify names backup b2 and the file" grep -q "used by backup b2, file \"$ACC\"" "$T/v2.err"
ok "verify names backup b3 and the file" grep -q "used by backup b3, file \"$ACC\"" "$T/v2.err"
restore "$REPO" rd "$L3" >"$T/rd.out" 2>"$T/rd.err"
is "restore over a flipped chunk: exit 3" 3 "$?"
ok "restore names the file and the chunk" grep -q "file \"$ACC\": chunk $CHUNK" "$T/rd.err"
ok "the damaged file was not left behind" [ ! -e "$T/rd/$ACC" ]
# the same with more threads than packs: each pack read by one thread, its chunks
# decoded and written on the others (chunkstore_read_pack_par)
restore "$REPO" rd2 "$L3" -vv --jobs 16 >"$T/rd2.out" 2>"$T/rd2.err"
is "restore over a flipped chunk, pack split between threads: exit 3" 3 "$?"
ok "... the pack was split between threads" grep -q "read on one thread, its chunks decoded and written on 16" "$T/rd2.err"
ok "... names the file and the chunk" grep -q "file \"$ACC\": chunk $CHUNK" "$T/rd2.err"
ok "... the damaged file was not left behind" [ ! -e "$T/rd2/$ACC" ]

rm -rf "$REPO"; cp -a "$T/repo.good" "$REPO"
PACK=$(python3 "$T/flip.py" "$REPO" "$ACC" find | cut -d' ' -f2)
mv "$REPO/chunks/$PACK" "$T/saved.pack"
"$PITR" verify --repo "$REPO" >"$T/v3.out" 2>"$T/v3.err"
is "verify of a missing pack: exit 3" 3 "$?"
ok "verify names the missing pack" grep -q "chunk pack \"chunks/$PACK\" is missing" "$T/v3.err"
restore "$REPO" rm "$L3" >"$T/rm.out" 2>"$T/rm.err"
is "restore with a missing pack: exit 3" 3 "$?"
ok "restore names a file with a missing chunk" grep -q "file \".*\": chunk [0-9a-f]* .*is missing" "$T/rm.err"
rm -rf "$REPO"; cp -a "$T/repo.good" "$REPO"
restore "$REPO" r16 "$L2" -vv --jobs 16 >"$T/r16.out" 2>"$T/r16.err"
ok "an intact restore with packs split between threads" grep -q "read on one thread, its chunks decoded and written on 16" "$T/r16.err"
is "... restores b2's data" "$S2" "$(boot_sum r16)"

# --- 5. kill -9 ---------------------------------------------------------------------------------
as_pg pgbench -n -N -t 300 -h "$T/src" -p 5432 -U postgres postgres >/dev/null 2>&1
as_pg sh -c 'echo $$ >"$1/bb.pid"; shift; exec "$@"' sh "$T" "$BB" -d "$(pg_conn src)" --repo "$REPO" \
    -c fast --format chunked --no-progress --max-rate 2M --label killed >/dev/null 2>&1 &
for _ in $(seq 50); do [ -s "$T/bb.pid" ] && break; sleep 0.1; done
# killed mid-stream, whatever the load: the transfer is slowed to 2 MB/s and the kill
# comes once the backup's folder exists and a second has gone by
for _ in $(seq 300); do [ -e "$REPO/backups/killed.partial" ] && break; sleep 0.1; done
sleep 1
kill -9 "$(cat "$T/bb.pid")"
is "the backup was still running when killed" 0 "$?"
wait
ok "the killed backup left no backup" [ ! -e "$REPO/backups/killed" ]
bb --label b4 >/dev/null 2>"$T/bb4.err"
is "a backup after a killed one exits 0" 0 "$?"
"$PITR" verify --repo "$REPO" >"$T/v4.out" 2>&1
is "verify after the killed backup exits 0" 0 "$?"
# kill -9 in the sweep, after the first index is removed (test hook)
rm -rf "$REPO/backups/b4" "$REPO/backups/b3"
bash -c 'RAGSAFE_TEST_SWEEP_KILL=1 exec "$0" expire --repo "$1" --keep-window 3650d' "$PITR" "$REPO" >"$T/expk.out" 2>&1
is "the sweep was killed" 137 "$?"
ok "it left a pack without its index" bash -c \
    "cd '$REPO/chunks' && for p in *.pack; do [ -e \"\${p%.pack}.idx\" ] || exit 0; done; exit 1"
"$PITR" expire --repo "$REPO" --keep-window 3650d >"$T/exp3.out" 2>&1
is "the next expire exits 0" 0 "$?"
"$PITR" verify --repo "$REPO" >"$T/v5.out" 2>&1
is "verify after the killed sweep exits 0" 0 "$?"
restore "$REPO" r2c "$L2" >"$T/r2c.out" 2>"$T/r2c.err"
is "b2 still restores after the killed sweep" "$S2" "$(boot_sum r2c)"
t_done
