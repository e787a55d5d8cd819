#!/usr/bin/env bash
# 046_pitr_damage.sh -- what restore and verify must check (issue 12).
#
# One repository with two backups and a few archived segments is built once and
# copied fresh for each scenario:
#   1. a segment object copied over the next segment's name: ragsafe-restore (direct
#      and prefetch) refuses it with 128, verify exits 3 naming it, plan exits 3;
#   2. one damaged object (the oldest backup.json, an unrelated .history) is reported
#      alone: info / plan carry on with the intact rest, verify exits 3;
#   3. verify rejects what restore would fail on (repo.json no longer matching);
#   4. damage is exit 3 everywhere, I/O 1 (b1 is a --format tar backup, b2 one of the
#      default chunked format: a broken base tar, chunk manifest, chunk pack);
#   5. expire removes a killed expire's backups/.<label>.deleting/ leftover.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
RESTORE=$RAGSAFE_BIN/ragsafe-restore
ORIG=$T/orig
mkdir -p "$ORIG" && chown postgres: "$ORIG"

pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $ORIG %p %f'"
pg_start src || exit 1
bb() { as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$ORIG" -c fast -l "$@" \
    >/dev/null 2>"$T/$1.err" || { cat "$T/$1.err"; exit 1; }; }

pg_sql src "create table t (id int primary key); insert into t values (1)" || exit 1
bb b1 --format tar
pg_sql src "insert into t values (2)"
switch_wal src
bb b2
for i in 3 4 5; do
    pg_sql src "insert into t values ($i)"
    switch_wal src || exit 1
done
pg_stop src

# fresh REPO: a copy of the pristine repository
fresh() { rm -rf "$T/repo"; cp -a "$ORIG" "$T/repo"; REPO=$T/repo; }
segkey() { echo "$REPO/wal/${1:0:16}/$1.zst"; }
mapfile -t SEGS < <(find "$ORIG/wal" -name '0*.zst' ! -name '*.history.zst' ! -name '*.backup.zst' \
    -printf '%f\n' | sed 's/\.zst$//' | sort)
ok "at least four segments archived" test "${#SEGS[@]}" -ge 4
A=${SEGS[-3]}
B=${SEGS[-2]}

fresh
exit_is "pristine repository verifies" 0 "$PITR" verify --repo "$REPO"

# --- 1. a segment under the wrong name ------------------------------------------------
fresh
cp "$(segkey "$A")" "$(segkey "$B")"
mkdir -p "$T/pgwal"
exit_is "ragsafe-restore refuses a segment stored under the next one's name (128)" 128 \
    "$RESTORE" --repo "$REPO" --prefetch 0 "$B" "$T/pgwal/$B"
ok "nothing was written to %p" test ! -e "$T/pgwal/$B"
"$RESTORE" --repo "$REPO" --prefetch 0 "$B" "$T/pgwal/$B" 2>"$T/r1.err"
ok "ragsafe-restore names the page address" grep -q "page address" "$T/r1.err"
# the prefetch path: asking for A spools the next ones, but never the misnamed B
exit_is "ragsafe-restore with prefetch serves the intact A" 0 \
    "$RESTORE" --repo "$REPO" --prefetch 2 "$A" "$T/pgwal/$A"
ok "prefetch did not spool the misnamed B" test ! -e "$T/pgwal/ragsafe-prefetch/$B"
exit_is "and asking for B then is 128" 128 "$RESTORE" --repo "$REPO" --prefetch 2 "$B" "$T/pgwal/$B"
exit_is "verify: a segment under the wrong name is damage (3)" 3 "$PITR" verify --repo "$REPO"
"$PITR" verify --repo "$REPO" >/dev/null 2>"$T/v1.err"
ok "verify names the object" grep -q "\"$B\" is damaged: page address" "$T/v1.err"
exit_is "plan latest refuses (3)" 3 "$PITR" plan --repo "$REPO" --target-latest
"$PITR" plan --repo "$REPO" --target-latest >/dev/null 2>"$T/p1.err"
ok "plan names the object" grep -q "\"$B\" is damaged" "$T/p1.err"

# --- 2. one damaged object is judged alone --------------------------------------------
fresh
echo '{"format":1, "label":' >"$REPO/backups/b1/backup.json"   # the oldest backup
exit_is "info with a damaged backup.json still works (0)" 0 "$PITR" info --repo "$REPO"
"$PITR" info --repo "$REPO" >"$T/i2.out" 2>&1
ok "info lists the damaged backup.json" grep -q "backups/b1/backup.json: backup.json does not parse" "$T/i2.out"
ok "info still shows the intact backup" grep -qE "^  b2 " "$T/i2.out"
exit_is "info --prometheus still works (0)" 0 "$PITR" info --repo "$REPO" --prometheus
"$PITR" info --repo "$REPO" --prometheus >"$T/i2.prom" 2>/dev/null
ok "prometheus exports the damaged object" grep -qE '^ragsafe_damaged_objects\{.*\} 1$' "$T/i2.prom"
exit_is "plan chooses among the intact backups (0)" 0 "$PITR" plan --repo "$REPO" --target-latest
"$PITR" plan --repo "$REPO" --target-latest >"$T/p2.out" 2>&1
ok "the plan uses b2" grep -q "backup: *b2" "$T/p2.out"
exit_is "verify reports the damaged backup (3)" 3 "$PITR" verify --repo "$REPO"
"$PITR" verify --repo "$REPO" >/dev/null 2>"$T/v2.err"
ok "verify names it" grep -q '"backups/b1/backup.json" is damaged' "$T/v2.err"
# a --target-immediate restore from b2 into a fresh directory works
exit_is "restore with a damaged oldest backup.json (0)" 0 \
    "$PITR" restore --repo "$REPO" --pgdata "$T/r2" --target-immediate
rm -rf "$T/r2"

# a damaged history file off the path: plan is unaffected, verify reports it
fresh
printf 'not a zstd object' >"$REPO/wal/00000007.history.zst"
exit_is "info with a damaged unrelated .history (0)" 0 "$PITR" info --repo "$REPO"
exit_is "plan with a damaged unrelated .history (0)" 0 "$PITR" plan --repo "$REPO" --target-latest --target-timeline 1
exit_is "verify reports the damaged .history (3)" 3 "$PITR" verify --repo "$REPO"
"$PITR" verify --repo "$REPO" >/dev/null 2>"$T/v3.err"
ok "verify names the .history" grep -q '00000007.history.zst" is damaged' "$T/v3.err"
# ... on the path (timeline 2 would be "latest"): a refusal naming it, exit 3
printf 'not a zstd object' >"$REPO/wal/00000002.history.zst"
exit_is "plan latest through a damaged 00000002.history refuses (3)" 3 "$PITR" plan --repo "$REPO" --target-latest
"$PITR" plan --repo "$REPO" --target-latest >/dev/null 2>"$T/p3.err"
ok "the refusal names the history file" grep -q '00000002.history' "$T/p3.err"
exit_is "restore refuses it too (3)" 3 "$PITR" restore --repo "$REPO" --pgdata "$T/r3" --target-latest
exit_is "plan on timeline 1 still works (0)" 0 "$PITR" plan --repo "$REPO" --target-latest --target-timeline 1

# --- 3. verify checks what restore would fail on --------------------------------------
# repo.json no longer matching the segments (system identifier, then segment size)
fresh
jq '.system_identifier = "1234567890123456789"' "$ORIG/repo.json" >"$REPO/repo.json"
exit_is "verify: repo.json's system identifier does not match the segments (3)" 3 "$PITR" verify --repo "$REPO"
"$PITR" verify --repo "$REPO" >/dev/null 2>"$T/v4.err"
ok "verify says which system" grep -q "database system [0-9]* in the page header, the repository belongs to 1234567890123456789" "$T/v4.err"
exit_is "ragsafe-restore refuses those segments (128)" 128 "$RESTORE" --repo "$REPO" --prefetch 0 "$B" "$T/pgwal/x"
fresh
jq '.wal_segment_size = 33554432' "$ORIG/repo.json" >"$REPO/repo.json"
exit_is "verify: repo.json's segment size does not match the segments (3)" 3 "$PITR" verify --repo "$REPO"
"$PITR" verify --repo "$REPO" >/dev/null 2>"$T/v5.err"
ok "verify says which size" grep -q "segment size 16777216 in the page header, the repository's is 33554432" "$T/v5.err"

# a backup_manifest that parses (its own checksum recomputed) but is not the one
# backup.json records: restore used to accept it while verify refused it
fresh
python3 - "$REPO/backups/b2/backup_manifest" <<'PY'
import hashlib, re, sys
p = sys.argv[1]
t = open(p, "rb").read()
at = t.rindex(b'"Manifest-Checksum"')
ls = t.rindex(b"\n", 0, at) + 1
body = t[:ls].replace(b"{", b"{ ", 1)   # same content, other bytes
tail = re.sub(rb'"[0-9a-f]{64}"', b'"' + hashlib.sha256(body).hexdigest().encode() + b'"', t[ls:])
open(p, "wb").write(body + tail)
PY
exit_is "verify refuses a backup_manifest backup.json does not record (3)" 3 "$PITR" verify --repo "$REPO"
exit_is "restore refuses it too (3)" 3 "$PITR" restore --repo "$REPO" --pgdata "$T/r4" --target-immediate
"$PITR" restore --repo "$REPO" --pgdata "$T/r4" --target-immediate >/dev/null 2>"$T/r4.err"
ok "restore says why" grep -q "checksum mismatch for backup_manifest (backup.json)" "$T/r4.err"
rm -rf "$T/r4"

# --- 4. damage is exit 3 everywhere, I/O 1 --------------------------------------------
# a WAL object that is not a zstd stream any more (its trailer intact)
fresh
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.write(b"\0" * 16)' "$(segkey "$B")"
exit_is "ragsafe-restore: a damaged WAL object (128)" 128 "$RESTORE" --repo "$REPO" --prefetch 0 "$B" "$T/pgwal/y"
exit_is "plan: a damaged WAL object is damage (3)" 3 "$PITR" plan --repo "$REPO" --target-latest
exit_is "restore: a damaged WAL object is damage (3)" 3 "$PITR" restore --repo "$REPO" --pgdata "$T/r5" --target-latest
exit_is "verify: a damaged WAL object is damage (3)" 3 "$PITR" verify --repo "$REPO"
rm -rf "$T/r5"
# a base tar object whose zstd stream is broken (b1, restored up to its own end)
fresh
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.write(b"\0" * 16)' "$REPO/backups/b1/base.tar.zst"
exit_is "restore: a broken base tar is damage (3)" 3 "$PITR" restore --repo "$REPO" --pgdata "$T/r6" \
    --target-lsn "$(jq -r .stop_lsn "$ORIG/backups/b1/backup.json")"
exit_is "verify: the same broken base tar (3)" 3 "$PITR" verify --repo "$REPO"
rm -rf "$T/r6"
# a chunk manifest whose zstd stream is broken (b2)
fresh
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.write(b"\0" * 16)' "$REPO/backups/b2/base.chunks.zst"
exit_is "restore: a broken chunk manifest is damage (3)" 3 "$PITR" restore --repo "$REPO" --pgdata "$T/r6" --target-immediate
exit_is "verify: the same broken chunk manifest (3)" 3 "$PITR" verify --repo "$REPO"
rm -rf "$T/r6"
# chunk packs whose records are broken (b2's chunks)
fresh
for p in "$REPO"/chunks/*.pack; do
    python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.write(b"\0" * 16)' "$p"
done
exit_is "restore: a broken chunk pack is damage (3)" 3 "$PITR" restore --repo "$REPO" --pgdata "$T/r6" --target-immediate
exit_is "verify: the same broken chunk pack (3)" 3 "$PITR" verify --repo "$REPO"
rm -rf "$T/r6"
# reading that fails (not damage): an unreadable segment object is 1, not 3
if [ "$(id -u)" = 0 ]; then
    fresh
    chown -R postgres: "$REPO"
    chmod 000 "$(segkey "$B")"
    exit_is "verify: an unreadable WAL object is an I/O failure (1)" 1 as_pg "$PITR" verify --repo "$REPO"
    exit_is "plan: an unreadable WAL object is an I/O failure (1)" 1 as_pg "$PITR" plan --repo "$REPO" --target-latest
fi

# --- 5. a killed expire's hidden leftover ------------------------------------------------
fresh
mkdir -p "$REPO/backups/.b0.deleting/sub"
head -c 1048576 /dev/urandom >"$REPO/backups/.b0.deleting/base.tar.zst"
echo x >"$REPO/backups/.b0.deleting/sub/f"
exit_is "expire --dry-run exits 0" 0 "$PITR" expire --repo "$REPO" --keep-window 3650d --dry-run
ok "a dry run leaves the leftover" test -d "$REPO/backups/.b0.deleting"
exit_is "expire exits 0" 0 "$PITR" expire --repo "$REPO" --keep-window 3650d
ok "expire removed the leftover .b0.deleting" test ! -e "$REPO/backups/.b0.deleting"
ok "and kept both backups" test -f "$REPO/backups/b1/backup.json" -a -f "$REPO/backups/b2/backup.json"

t_done
