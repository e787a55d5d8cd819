#!/usr/bin/env bash
# 041_pitr_timelines.sh -- timelines, refusals and damage.
#
# A cluster with a tablespace archives into a repository; after one base backup a
# restore to a past instant is promoted and written to, archiving into the same
# repository: timeline 2 branches off timeline 1 while the original keeps writing
# on timeline 1. Restores on both timelines (by time and latest, the tablespace
# remapped with --tablespace-map) match what each server held. Unreachable targets
# (a timeline that does not exist, before the first backup, after the last commit,
# a timeline no backup lies on) exit 1 naming the reason and a reachable target, and
# write nothing. A non-empty --pgdata is refused, and moved aside with --force.
# A segment removed from the middle makes plan and verify fail naming it; a flipped
# byte makes verify exit 3. The backups are of the default, chunked format; a backup
# whose tar (a --format tar backup) or whose chunk manifest names an entry outside
# --pgdata is refused (exit 3) and nothing is left.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
mkdir -p "$REPO" "$T/ts_src" && chown postgres: "$REPO" "$T/ts_src"

pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO %p %f'"
pg_start src || exit 1

state() { pg_sql "$1" "select (select count(*) || ':' || coalesce(sum(id), 0) from t) || '/' || (select count(*) from tt)"; }
TSOID=
# restore_to NAME ARGS...: restore into $T/NAME, the tablespace into $T/NAME_ts.
restore_to() {
    local name=$1; shift
    "$PITR" restore --repo "$REPO" --pgdata "$T/$name" --tablespace-map "$TSOID=$T/${name}_ts" \
        "$@" >"$T/$name.out" 2>"$T/$name.err"
}
# boot NAME [archive]: start a restored cluster on its own socket; wait for promotion.
boot() {
    rm -f "$T/$1"/.s.PGSQL.*
    pg_set "$1" "unix_socket_directories = '$T/$1'"
    [ "${2:-}" = archive ] || pg_set "$1" "archive_mode = off"
    pg_start "$1" && pg_wait_for "$1" "select pg_is_in_recovery()" f 120
}
check_restore() {
    local name=$1 want=$2 desc=$3; shift 3
    restore_to "$name" "$@"
    local rc=$?
    is "$desc: restore exits 0" 0 "$rc"
    if [ "$rc" != 0 ]; then cat "$T/$name.err"; return; fi
    if boot "$name"; then
        is "$desc: table contents" "$want" "$(state "$name")"
    else
        fail "$desc: server recovers"; tail -20 "$T/$name.log"
    fi
    pg_stop "$name" >/dev/null 2>&1
    rm -rf "${T:?}/$name" "${T:?}/${name}_ts"
}

pg_sql src "create tablespace ts1 location '$T/ts_src'" || exit 1
TSOID=$(pg_sql src "select oid from pg_tablespace where spcname = 'ts1'")
pg_sql src "create table t (id int primary key, v text);
            create table tt (id int) tablespace ts1;
            insert into t select g, 'base' from generate_series(1, 100) g;
            insert into tt select generate_series(1, 500)" || exit 1
backup=$(as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast 2>"$T/bb.err")
[ -n "$backup" ] || { cat "$T/bb.err"; exit 1; }

sleep 1.1
pg_sql src "insert into t values (1000, 'a'); insert into tt values (1000)"
TA=$(pg_sql src "select clock_timestamp()")
CA=$(state src)
sleep 1.1
pg_sql src "insert into t values (1001, 'tli1 only')"
switch_wal src || exit 1

# --- fork: restore to TA, promote onto timeline 2, write, archive ---------------------
restore_to fork --target-time "$TA" --archive-mode preserve
is "fork restore exits 0" 0 "$?"
boot fork archive || { cat "$T/fork.err"; tail -20 "$T/fork.log"; exit 1; }
is "fork holds the state at TA" "$CA" "$(state fork)"
is "fork is on timeline 2" "2" "$(pg_sql fork "select timeline_id from pg_control_checkpoint()")"
sleep 1.1
pg_sql fork "insert into t values (2000, 'tli2'); insert into tt values (2000)"
TB=$(pg_sql fork "select clock_timestamp()")
CB=$(state fork)
sleep 1.1
pg_sql fork "insert into t values (2001, 'tli2 last')"
CB_LAST=$(state fork)
switch_wal fork || exit 1
pg_wait_for fork "select count(*) from pg_ls_archive_statusdir() where name like '%.ready'" 0 60
ok "00000002.history archived" test -s "$REPO/wal/00000002.history.zst"

# the original goes on writing on timeline 1
sleep 1.1
pg_sql src "insert into t values (1002, 'tli1 later')"
T1=$(pg_sql src "select clock_timestamp()")
C1=$(state src)
sleep 1.1
pg_sql src "insert into t values (1003, 'tli1 last')"
C1_LAST=$(state src)
switch_wal src || exit 1

# --- plan and info see both timelines ------------------------------------------------
"$PITR" plan --repo "$REPO" --target-time "$TB" --target-timeline 2 >"$T/plan2.out" 2>&1
is "plan on timeline 2 exits 0" 0 "$?"
ok "plan shows the path 1 -> 2 with the switch point" grep -Eq "timeline path: +1 \(until [0-9A-F]+/[0-9A-F]+\) -> 2" "$T/plan2.out"
"$PITR" info --repo "$REPO" --json >"$T/info.json" 2>"$T/info.err"
is "info exits 0" 0 "$?"
is "info lists timeline 2 with parent 1" "1" "$(jq -r '.timelines[] | select(.timeline == 2) | .parent' "$T/info.json")"
ok "info gives a window on timeline 2" test "$(jq -r '.timelines[] | select(.timeline == 2) | .window.to' "$T/info.json")" != null
ok "info gives the RPO" test "$(jq -r .rpo.age_seconds "$T/info.json")" -ge 0

# --- restores on both timelines ------------------------------------------------------
check_restore r_tb "$CB" "timeline 2 at TB" --target-time "$TB" --target-timeline 2
check_restore r_t1 "$C1" "timeline 1 at T1 (after the branch)" --target-time "$T1" --target-timeline 1
check_restore r_latest "$CB_LAST" "latest (timeline 2)" --target-latest
check_restore r_l1 "$C1_LAST" "timeline 1 latest" --target-latest --target-timeline 1

# --- unreachable targets: refused, nothing written -----------------------------------
refused() {
    local desc=$1 pattern=$2; shift 2
    "$PITR" restore --repo "$REPO" --pgdata "$T/never" "$@" >"$T/never.out" 2>"$T/never.err"
    local rc=$?
    is "$desc: exit 1" 1 "$rc"
    ok "$desc: names the reason" grep -q "$pattern" "$T/never.err"
    ok "$desc: nothing written" test ! -e "$T/never"
}
refused "timeline 3" "timeline 3 does not exist" --target-latest --target-timeline 3
ok "timeline 3: lists the timelines" grep -q "timelines in the repository: 1, 2" "$T/never.err"
refused "before the first backup" "before the end of the oldest" --target-time "2001-01-01 00:00:00+00"
ok "before the first backup: hint names the earliest time" grep -q "earliest reachable target is --target-time" "$T/never.err"
early=$(sed -n "s/.*earliest reachable target is --target-time '\([^']*\)'.*/\1/p" "$T/never.err")
"$PITR" plan --repo "$REPO" --target-time "$early" >"$T/early.out" 2>"$T/early.err"
is "before the first backup: the hinted --target-time '$early' is reachable" 0 "$?" || cat "$T/early.err"
refused "after the last commit" "no archived commit after" --target-time "2099-01-01T00:00:00Z"
ok "after the last commit: hint names the last commit" grep -q "nearest reachable target is the last archived commit" "$T/never.err"
# the hinted target is one a DBA can take as it is (a --target-time of that commit was
# not: it needs a later commit to stop at)
hinted=$(sed -n 's/.*nearest reachable target is .*: \(--target-[a-z]*\) \([^ ]*\)$/\1 \2/p' "$T/never.err")
"$PITR" plan --repo "$REPO" $hinted >"$T/hinted.out" 2>"$T/hinted.err"
is "after the last commit: the hinted target ($hinted) is reachable" 0 "$?" || cat "$T/hinted.err"
refused "unknown restore point" 'no restore point "nope"' --target-name nope
refused "xid never committed" "has no commit or abort record" --target-xid 4000000000
mkdir "$T/empty" && chown postgres: "$T/empty"
"$PITR" restore --repo "$REPO" --pgdata "$T/empty" --target-timeline 3 --target-latest 2>/dev/null
is "refused restore leaves an empty --pgdata empty" "" "$(ls -A "$T/empty")"

# a timeline on which no backup lies: a backup taken on timeline 2, then a copy of
# the repository without the timeline 1 backup
as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn fork)" --repo "$REPO" -c fast >/dev/null 2>"$T/bb2.err" \
    || cat "$T/bb2.err"
cp -a "$REPO" "$T/repo2"
rm -rf "$T/repo2/backups/$backup"
"$PITR" plan --repo "$T/repo2" --target-latest --target-timeline 1 >/dev/null 2>"$T/nobk.err"
is "no backup on timeline 1's history: exit 1" 1 "$?"
ok "no backup on timeline 1's history: says so" grep -q "no backup lies on the history of timeline 1" "$T/nobk.err"
"$PITR" plan --repo "$T/repo2" --target-latest --target-timeline 2 >/dev/null 2>&1
is "the timeline 2 backup serves timeline 2" 0 "$?"
pg_stop fork

# --- non-empty --pgdata: refused; --force moves it aside -----------------------------
mkdir -p "$T/busy" && echo precious >"$T/busy/file" && chown -R postgres: "$T/busy"
restore_to busy --target-latest --target-timeline 1
is "non-empty --pgdata refused" 1 "$?"
is "its contents untouched" "precious" "$(cat "$T/busy/file")"
restore_to busy --target-latest --target-timeline 1 --force
is "--force restores" 0 "$?"
aside=$(ls -d "$T"/busy.ragsafe-old-* 2>/dev/null | head -1)
ok "old contents moved aside to DIR.ragsafe-old-TIME" test -f "$aside/file"
ok "restored directory holds the backup" test -f "$T/busy/PG_VERSION"

# --- verify, and damage --------------------------------------------------------------
"$PITR" verify --repo "$REPO" >"$T/verify.out" 2>&1
is "verify of the intact repository exits 0" 0 "$?"
ok "verify says intact" grep -q "repository intact" "$T/verify.out"

cp -a "$REPO" "$T/repo_gap"
start_seg=$(jq -r .start_wal "$REPO/backups/$backup/backup.json")
mid=$(printf '%08X%016X' 1 $((16#${start_seg:8:16} + 1)))
rm "$T/repo_gap/wal/${mid:0:16}/$mid.zst"
"$PITR" plan --repo "$T/repo_gap" --target-latest --target-timeline 1 >/dev/null 2>"$T/gap.err"
is "plan across a missing segment: exit 1" 1 "$?"
ok "plan names the missing segment" grep -q "WAL segment $mid is missing" "$T/gap.err"
"$PITR" verify --repo "$T/repo_gap" >"$T/gapv.out" 2>"$T/gapv.err"
is "verify with a missing segment: exit 3" 3 "$?"
ok "verify names the missing segment" grep -q "WAL segment $mid is missing" "$T/gapv.err"
"$PITR" info --repo "$T/repo_gap" --json >"$T/gapinfo.json" 2>/dev/null
is "info counts the missing segment" 1 "$(jq '.timelines[] | select(.timeline == 1) | .missing_segments' "$T/gapinfo.json")"
is "info names the gap (an array of ranges)" "$mid $mid 1" \
    "$(jq -r '.timelines[] | select(.timeline == 1) | .gaps[] | "\(.first) \(.last) \(.segments)"' "$T/gapinfo.json")"

cp -a "$REPO" "$T/repo_bad"
f=$(ls "$T/repo_bad/wal/0000000100000000/"0000000100000000000000*.zst | head -1)
printf '\x55' | dd of="$f" bs=1 seek=$(( $(stat -c %s "$f") / 2 )) conv=notrunc 2>/dev/null
"$PITR" verify --repo "$T/repo_bad" >/dev/null 2>"$T/bad.err"
is "verify with a flipped byte: exit 3" 3 "$?"
ok "verify names the corrupt file" grep -q "$(basename "$f" .zst)" "$T/bad.err"
cp -a "$REPO" "$T/repo_badbk"
python3 -c 'import os, sys; f = open(sys.argv[1], "r+b"); n = os.path.getsize(sys.argv[1]) // 2; f.seek(n)
b = f.read(1); f.seek(n); f.write(bytes([b[0] ^ 0x55]))' "$T/repo_badbk/backups/$backup/base.chunks.zst"
"$PITR" verify --repo "$T/repo_badbk" >/dev/null 2>"$T/badbk.err"
is "verify with a damaged backup: exit 3" 3 "$?"
ok "verify names the damaged backup" grep -q "backup $backup is damaged" "$T/badbk.err"

# --- a backup whose tar would escape --pgdata is refused, and nothing is left -------
# a --format tar backup on timeline 1 (the newest there) in a copy of the repository
as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast --format tar -l tarb \
    >/dev/null 2>"$T/bb3.err" || cat "$T/bb3.err"
cp -a "$REPO" "$T/repo_evil"
rm -rf "$REPO/backups/tarb"
E=$T/repo_evil/backups/tarb
python3 - "$E/base.tar.zst" <<'PY'
import hashlib, io, struct, subprocess, sys, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
    for name, data in (("PG_VERSION", b"15\n"), ("../evil", b"owned\n")):
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = 0o600
        tf.addfile(ti, io.BytesIO(data))
raw = buf.getvalue()
z = subprocess.run(["zstd", "-q", "-c"], input=raw, stdout=subprocess.PIPE, check=True).stdout
trailer = struct.pack("<II4sIQ", 0x184D2A5E, 48, b"RGSF", 1, len(raw)) + hashlib.sha256(raw).digest()
open(sys.argv[1], "wb").write(z + trailer)
PY
sha=$(sha256sum <"$E/base.tar.zst" | cut -c1-64)
jq --arg s "$sha" '(.files[] | select(.name == "base.tar.zst") | .sha256) = $s' "$E/backup.json" >"$T/bj" \
    && cp "$T/bj" "$E/backup.json"
"$PITR" restore --repo "$T/repo_evil" --pgdata "$T/evil_pgdata" --target-timeline 1 --target-latest \
    --tablespace-map "$TSOID=$T/evil_ts" >/dev/null 2>"$T/evil.err"
is "escaping tar entry: exit 3" 3 "$?"
ok "escaping tar entry: named" grep -q 'refusing tar entry "../evil"' "$T/evil.err"
ok "escaping tar entry: nothing written outside" test ! -e "$T/evil"
ok "escaping tar entry: the partial restore is removed" test ! -e "$T/evil_pgdata"

# --- the same in a chunk manifest -------------------------------------------------------
cp -a "$REPO" "$T/repo_evilc"
E=$T/repo_evilc/backups/$backup
python3 - "$E/base.chunks.zst" "$T/evilc.json" <<'PY'
import hashlib, json, subprocess, sys
m = json.loads(subprocess.run(["zstd", "-q", "-dc", sys.argv[1]], stdout=subprocess.PIPE, check=True).stdout)
pv = [e for e in m["entries"] if e["path"] == "PG_VERSION"][0]
m["entries"].append(dict(pv, path="../evil"))
open(sys.argv[2], "w").write(json.dumps(m))
open(sys.argv[1], "wb").write(subprocess.run(["zstd", "-q", "-c", sys.argv[2]], stdout=subprocess.PIPE,
                                             check=True).stdout)
PY
sha=$(sha256sum <"$E/base.chunks.zst" | cut -c1-64)
jq --arg s "$sha" '(.files[] | select(.name == "base.chunks.zst") | .sha256) = $s |
    (.files[] | select(.name == "base.chunks.zst") | .stored_bytes) = '"$(stat -c %s "$E/base.chunks.zst")" \
    "$E/backup.json" >"$T/bj" && cp "$T/bj" "$E/backup.json"
"$PITR" restore --repo "$T/repo_evilc" --pgdata "$T/evilc_pgdata" --target-timeline 1 --target-latest \
    --tablespace-map "$TSOID=$T/evilc_ts" >/dev/null 2>"$T/evilc.err"
is "escaping chunk manifest entry: exit 3" 3 "$?"
ok "escaping chunk manifest entry: named" grep -q 'refusing entry "../evil" in chunk manifest' "$T/evilc.err"
ok "escaping chunk manifest entry: nothing written outside" test ! -e "$T/evil"
ok "escaping chunk manifest entry: the partial restore is removed" test ! -e "$T/evilc_pgdata"

t_done
