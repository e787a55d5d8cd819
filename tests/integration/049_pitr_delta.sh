#!/usr/bin/env bash
# 049_pitr_delta.sh -- ragsafe-pitr restore --delta over a stale copy of the same cluster.
#   - a restored copy, started (promoted) and stopped, then damaged: bytes overwritten
#     in one relation file, another truncated, one removed, a stray file, a stray
#     directory and a stray pg_wal segment added. restore --delta to a later target:
#     exit 0, most files kept, every file matches backup_manifest (pg_verifybackup),
#     nothing the backup lacks is left (stray files, pg_wal contents, postmaster.opts,
#     backup_label.old), the server starts and reaches the target (exact row count);
#   - --delta over that copy while it runs: refused naming the PID, nothing changed;
#   - --delta over another cluster's data directory, and over a non-empty directory
#     that is no data directory: refused, nothing changed;
#   - timing: a full restore vs a --delta restore of the same target ('# full X s,
#     delta Y s'); DELTA_SCALE sets the pgbench scale (default 20).
# DELTA_FORMAT picks the base backup's format (default chunked, the default;
# 049_pitr_delta_tar.sh runs all of it again with tar).
source "$(dirname "$0")/lib.sh"
t_init
FORMAT=${DELTA_FORMAT:-chunked}

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
SCALE=${DELTA_SCALE:-20}
pg_archiving src "$REPO" || exit 1
as_pg pgbench -i -q -s "$SCALE" -h "$T/src" -p 5432 -U postgres postgres >"$T/pgbench-init.log" 2>&1 \
    || { cat "$T/pgbench-init.log"; fail "pgbench -i"; t_done; exit 1; }
pg_sql src "create table m (id int)" || exit 1
as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast --label b1 --format "$FORMAT" >/dev/null 2>"$T/bb.err"
is "base backup" 0 "$?"
as_pg pgbench -n -T 3 -h "$T/src" -p 5432 -U postgres postgres >/dev/null 2>&1
pg_sql src "insert into m select generate_series(1, 100)"
L1=$(pg_sql src "select pg_current_wal_lsn()")
as_pg pgbench -n -T 3 -h "$T/src" -p 5432 -U postgres postgres >/dev/null 2>&1
pg_sql src "insert into m select generate_series(101, 250)"
L2=$(pg_sql src "select pg_current_wal_lsn()")
switch_wal src || exit 1
ACC=$(pg_sql src "select pg_relation_filepath('pgbench_accounts')")
TEL=$(pg_sql src "select pg_relation_filepath('pgbench_accounts_pkey')")
BRA=$(pg_sql src "select pg_relation_filepath('pgbench_branches')")
TLR=$(pg_sql src "select pg_relation_filepath('pgbench_tellers')")
DBDIR=$(dirname "$ACC")

count() { pg_sql "$1" "select count(*) from m"; }
# restore NAME LSN [args]: restore into $T/NAME with its own socket directory
restore() {
    local name=$1 lsn=$2; shift 2
    "$PITR" restore --repo "$REPO" --pgdata "$T/$name" --target-lsn "$lsn" \
        --set "unix_socket_directories=$T/$name" "$@"
}
boot() { pg_start "$1" && pg_wait_for "$1" "select pg_is_in_recovery()" f 120; }
# names, sizes and contents of every file under a directory
listing() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum; find . | sort); }

# --- 1. a stale copy -------------------------------------------------------------------
restore d "$L1" >"$T/d1.out" 2>"$T/d1.err"
is "first restore (to L1) exits 0" 0 "$?"
if boot d; then
    is "the first copy reached L1" 100 "$(count d)"
else
    fail "the first copy reached L1"; tail -5 "$T/d.log"
fi
pg_sql d "checkpoint" >/dev/null 2>&1

# --- 2. --delta while it runs: refused, nothing changed ---------------------------------
DPID=$(head -1 "$T/d/postmaster.pid")
touch "$T/d/stray-while-running"
out=$(restore d "$L2" --delta 2>&1); rc=$?
is "--delta over the running copy: exit 1" 1 "$rc"
ok "... names the PID" grep -q "is in use by a running PostgreSQL server (PID $DPID)" <<<"$out"
echo "$out" | sed 's/^/#   /'
ok "... the stray file is still there (nothing removed)" test -f "$T/d/stray-while-running"
ok "... its postmaster.pid still there" test -f "$T/d/postmaster.pid"
is "... the server still answers" 1 "$(pg_sql d "select 1")"
pg_stop d || fail "stop the first copy"
rm -f "$T/d/stray-while-running"

# --- 3. damage it ----------------------------------------------------------------------
dd if=/dev/urandom of="$T/d/$ACC" bs=8192 seek=5 count=1 conv=notrunc status=none
truncate -s 8192 "$T/d/$TEL"
rm -f "$T/d/$BRA"
echo stray >"$T/d/$DBDIR/999999"
mkdir -p "$T/d/straydir/sub" && echo x >"$T/d/straydir/sub/f"
truncate -s 16M "$T/d/pg_wal/0000000100000000000000FE"
chown -R postgres: "$T/d"
ok "the stopped copy has postmaster.opts (to be removed)" test -f "$T/d/postmaster.opts"
ok "the stopped copy has backup_label.old (to be removed)" test -f "$T/d/backup_label.old"

# --- 4. another cluster, a non-data directory: refused -----------------------------------
pg_init other || exit 1
before=$(listing "$T/other")
out=$(restore other "$L2" --delta 2>&1); rc=$?
is "--delta over another cluster's data directory: exit 1" 1 "$rc"
ok "... says it is another cluster" grep -q "is a data directory of another cluster" <<<"$out"
echo "$out" | sed 's/^/#   /'
is "... nothing changed in it" "$before" "$(listing "$T/other")"
mkdir -p "$T/junk" && echo data >"$T/junk/file" && chown -R postgres: "$T/junk"
out=$(restore junk "$L2" --delta 2>&1); rc=$?
is "--delta over a non-empty directory without pg_control: exit 1" 1 "$rc"
ok "... hints at a plain restore" grep -q "use a plain restore" <<<"$out"
is "... nothing changed in it" "file" "$(ls -A "$T/junk")"
out=$(restore junk "$L2" --delta --force 2>&1); rc=$?
is "--delta with --force: usage error" 2 "$rc"

# --- 5. full restore of L2 (timed) -------------------------------------------------------
t0=$(date +%s.%N)
restore full "$L2" >"$T/full.out" 2>"$T/full.err"
rc=$?; t1=$(date +%s.%N)
is "full restore to L2 exits 0" 0 "$rc"
FULL=$(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")

# --- 6. --delta over the damaged copy (timed) --------------------------------------------
t0=$(date +%s.%N)
restore d "$L2" --delta >"$T/delta.out" 2>"$T/delta.err"
rc=$?; t1=$(date +%s.%N)
is "--delta to L2 exits 0" 0 "$rc"
[ "$rc" = 0 ] || cat "$T/delta.err"
DELTA=$(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")
echo "# delta over the started and damaged copy: $DELTA s (pgbench scale $SCALE)"
grep '^delta:' "$T/delta.out" | sed 's/^/#   /'
read -r kept written kb wb < <(sed -nE 's/^delta: *kept ([0-9]+) files? \(([0-9]+) bytes?\).*wrote ([0-9]+) files? \(([0-9]+) bytes?\).*/\1 \3 \2 \4/p' "$T/delta.out")
ok "the report gives kept and written files" test -n "${kept:-}" -a -n "${written:-}"
ok "most files kept (kept $kept, written $written)" test "${kept:-0}" -gt $((10 * ${written:-1}))
ok "the three damaged files were written, at least" test "${written:-0}" -ge 3
# every file of the backup as the manifest says (postgresql.auto.conf, recovery.signal,
# backup_manifest and pg_wal are pg_verifybackup's defaults to ignore)
ok "pg_verifybackup: every file matches backup_manifest" \
    "$PGBIN/pg_verifybackup" -q -n -i .s.PGSQL.5432.lock -m "$T/d/backup_manifest" "$T/d"
ok "the backed-up postgresql.auto.conf, then the recovery settings" \
    bash -c "grep -q \"^recovery_target_lsn = '$L2'\" '$T/d/postgresql.auto.conf'"
ok "the stray relation file is gone" test ! -e "$T/d/$DBDIR/999999"
ok "the stray directory is gone" test ! -e "$T/d/straydir"
# (and the WAL the plan verified, handed over to restore_command: 097)
is "pg_wal holds only archive_status and the handover spool" "archive_status ragsafe-prefetch" \
    "$(ls -A "$T/d/pg_wal" | tr '\n' ' ' | sed 's/ $//')"
ok "postmaster.opts is gone" test ! -e "$T/d/postmaster.opts"
ok "backup_label.old is gone" test ! -e "$T/d/backup_label.old"
ok "recovery.signal is there" test -f "$T/d/recovery.signal"
# nothing but the backup's files and what restore writes
extra=$(python3 - "$T/d" <<'PY'
import json, os, sys
d = sys.argv[1]
m = {f["Path"] for f in json.load(open(os.path.join(d, "backup_manifest")))["Files"]}
m |= {"backup_manifest", "recovery.signal"}
for root, dirs, files in os.walk(d):
    for f in files:
        rel = os.path.relpath(os.path.join(root, f), d)
        if rel not in m and not rel.startswith("pg_wal/ragsafe-prefetch/"):
            print(rel)
PY
)
is "no file the backup lacks" "" "$extra"
is "the same files as the full restore" "$(cd "$T/full" && find . -type f | sort)" "$(cd "$T/d" && find . -type f | sort)"
ok "owned by postgres" bash -c "[ -z \"\$(find '$T/d' ! -user postgres)\" ]"
if boot d; then
    is "the delta-restored copy reached L2 (exact row count)" 250 "$(count d)"
else
    fail "the delta-restored copy reached L2 (exact row count)"; tail -5 "$T/d.log"
fi
pg_stop d >/dev/null 2>&1

# --- 7. --delta into an absent directory is a plain restore ------------------------------
restore fresh "$L2" --delta >"$T/fresh.out" 2>&1
is "--delta into an absent directory exits 0" 0 "$?"
ok "pg_verifybackup on it" "$PGBIN/pg_verifybackup" -q -n -i .s.PGSQL.5432.lock -m "$T/fresh/backup_manifest" "$T/fresh"

# --- 8. timing: --delta over a never started copy with a few files changed ----------------
# (not pgbench_accounts: one changed block rewrites its whole 1 GiB segment file)
dd if=/dev/urandom of="$T/full/$TLR" bs=100 seek=1 count=1 conv=notrunc status=none
truncate -s 8192 "$T/full/$TEL"
rm -f "$T/full/$BRA"
t0=$(date +%s.%N)
restore full "$L2" --delta >"$T/delta2.out" 2>"$T/delta2.err"
rc=$?; t1=$(date +%s.%N)
is "--delta over a copy with three files changed exits 0" 0 "$rc"
DELTA2=$(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")
echo "# full $FULL s, delta $DELTA2 s (pgbench scale $SCALE, three files changed)"
grep '^delta:' "$T/delta2.out" | sed 's/^/#   /'
read -r kept written kb wb < <(sed -nE 's/^delta: *kept ([0-9]+) files? \(([0-9]+) bytes?\).*wrote ([0-9]+) files? \(([0-9]+) bytes?\).*/\1 \3 \2 \4/p' "$T/delta2.out")
# plus postgresql.auto.conf (the recovery settings) and the backed-up socket lock file
# (removed again: runtime state)
is "... wrote exactly the three changed files, postgresql.auto.conf and the lock file" 5 "${written:-}"
ok "... most bytes kept ($kb kept, $wb written)" test "${kb:-0}" -gt $((4 * ${wb:-1}))
ok "... pg_verifybackup on it" "$PGBIN/pg_verifybackup" -q -n -i .s.PGSQL.5432.lock -m "$T/full/backup_manifest" "$T/full"

# --- 9. a --delta that fails half way leaves a stale copy; a rerun continues ---------------
# (chunked: the first chunk of $TEL, which the truncation below makes --delta fetch, is
# damaged in its pack, found through the pack indexes; tar: 16 KiB of the middle of the tar)
cp -a "$REPO" "$T/repo2"
if [ "$FORMAT" = tar ]; then
    obj=$T/repo2/backups/b1/base.tar.zst
    sz=$(stat -c %s "$obj")
    dd if=/dev/urandom of="$obj" bs=4096 seek=$((sz / 4096 / 2)) count=4 conv=notrunc status=none
else python3 - "$T/repo2" "$TEL" <<'PY' || fail "damage the first chunk of $TEL"
import glob, json, os, struct, subprocess, sys
repo, rel = sys.argv[1], sys.argv[2]
m = json.loads(subprocess.run(["zstd", "-q", "-dc", repo + "/backups/b1/base.chunks.zst"],
                              stdout=subprocess.PIPE, check=True).stdout)
want = bytes.fromhex([e for e in m["entries"] if e["path"] == rel][0]["chunks"][0])
for idx in glob.glob(repo + "/chunks/*.idx"):
    b = open(idx, "rb").read()
    n = struct.unpack_from("<I", b, 8)[0]
    for i in range(n):
        d, off, ln, raw = struct.unpack_from("<32sQII", b, 16 + 48 * i)
        if d == want:
            with open(idx[:-4] + ".pack", "r+b") as f:
                f.seek(off + ln - 8)
                c = f.read(1)
                f.seek(off + ln - 8)
                f.write(bytes([c[0] ^ 0xff]))
            sys.exit(0)
sys.exit(1)
PY
fi
truncate -s 8192 "$T/full/$TEL"
out=$("$PITR" restore --repo "$T/repo2" --pgdata "$T/full" --target-lsn "$L2" --delta 2>&1); rc=$?
is "--delta from a damaged backup object: exit 3 (integrity)" 3 "$rc"
ok "... says the directory is left as a stale copy" grep -q "is left as a partly updated stale copy" <<<"$out"
ok "... and that a rerun of --delta continues" grep -q "run the same restore --delta again to continue" <<<"$out"
echo "$out" | grep -E "error|notice|hint" | head -5 | sed 's/^/#   /'
ok "... the directory is still there (not removed)" test -f "$T/full/PG_VERSION"
restore full "$L2" --delta --json >"$T/delta3.json" 2>"$T/delta3.err"
is "the rerun of --delta exits 0" 0 "$?"
ok "... its --json report has delta.kept_files and written_files" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))["delta"]
sys.exit(0 if d["kept_files"] > 900 and d["written_files"] >= 1 else 1)' "$T/delta3.json"
ok "... pg_verifybackup on it" "$PGBIN/pg_verifybackup" -q -n -i .s.PGSQL.5432.lock -m "$T/full/backup_manifest" "$T/full"
if boot full; then
    is "... it starts and reaches L2 (exact row count)" 250 "$(count full)"
else
    fail "... it starts and reaches L2 (exact row count)"; tail -5 "$T/full.log"
fi

t_done
