#!/usr/bin/env bash
# 050_milvus_snapshot -- ragsafe-milvus snapshot and restore of Milvus-shaped volumes.
#
# Milvus itself cannot run on these machines (no container runtime, no images): the
# volumes are synthetic but shaped like a standalone deployment's (etcd bbolt db and
# WAL, MinIO bucket with xl.meta object dirs, RocksMQ files, symlinks), and a small
# python HTTP server (fake_milvus.py) stands in for Milvus' /healthz and REST v2 API.
# The stop and start commands flip that server between down and up and write to a log,
# so the order of stop, REST calls, start and health checks can be asserted.
#
# Covers: snapshot -> restore into fresh dirs equal in content and metadata; the
# second snapshot after +2 % new objects stores exactly the new content; row counts
# recorded, compared after restore (mismatch: exit 3); stop/start order; start after
# a failure and after SIGTERM mid-snapshot; refusal while healthy without a stop
# command; non-empty targets refused, --force moves them aside; PostgreSQL restore
# point recorded (real PostgreSQL 15).
source "$(dirname "$0")/lib.sh"
t_init

milvus_env || exit 1
LOG="$T/stack.log"

json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }
tree_of() { python3 "$FAKE" tree "$1"; }

# --- the fake stack -------------------------------------------------------------
write_state() { # up(true|false) rows-of-docs
    printf '{"up": %s, "collections": {"docs": %s, "chunks": 250}}\n' "$1" "$2" >"$T/state.tmp"
    mv "$T/state.tmp" "$T/state.json"
}
write_state true 1000
printf '{"up": false, "collections": {"docs": 1000, "chunks": 250}}\n' >"$T/state.down"
printf '{"up": true, "collections": {"docs": 1000, "chunks": 250}}\n' >"$T/state.up"
python3 "$FAKE" serve --portfile "$T/port" --state "$T/state.json" --log "$LOG" \
    --pidfile "$T/fake.pid" --max-seconds 300 &
FAKE_PID=$!
t_on_exit "kill $FAKE_PID"
for _ in $(seq 50); do [ -s "$T/port" ] && break; sleep 0.1; done
PORT=$(cat "$T/port")
HEALTH="http://127.0.0.1:$PORT/healthz"
MURL="http://127.0.0.1:$PORT"
STOP="echo stop >>$LOG && cp $T/state.down $T/s.tmp && mv $T/s.tmp $T/state.json"
START="echo start >>$LOG && cp $T/state.up $T/s.tmp && mv $T/s.tmp $T/state.json"
STACK=(--stop-cmd "$STOP" --start-cmd "$START" --health-url "$HEALTH" --health-timeout 20)

python3 "$FAKE" gen "$V" --mb 24 --seed 7
# a large mutable file (stored in 512 KiB chunks): 6 MiB, one page rewritten by grow
head -c 6291456 /dev/urandom >"$V/milvus/rdb_data/LOG.old"
ok "synthetic volumes generated" test -f "$V/etcd/member/snap/db"

# --- first snapshot with the whole stack dance ---------------------------------------
: >"$LOG"
out=$("$M" snapshot --repo "$R" "${VOLS[@]}" "${STACK[@]}" --milvus-url "$MURL" --label s1 --json)
is "first snapshot exits 0" 0 $?
files=$(find "$V" -type f | wc -l)
is "snapshot counts every file" "$files" "$(echo "$out" | json_get '["files"]')"
bytes=$(find "$V" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
is "snapshot counts every byte" "$bytes" "$(echo "$out" | json_get '["bytes"]')"
# order: REST (list, stats, flush) while up, then stop, health down, start, health up
order=$(grep -v '^GET /healthz 500' "$LOG" | sed -e 's/ [a-z]*$//' | uniq | tr '\n' ',')
is "REST, stop, start, health in order" \
   "POST /v2/vectordb/collections/list,POST /v2/vectordb/collections/get_stats,POST /v2/vectordb/collections/flush,stop,start,GET /healthz 200," \
   "$order"
ok "both collections flushed" test "$(grep -c 'collections/flush' "$LOG")" -eq 2
ok "stack is up again" grep -q '"up": true' "$T/state.json"
lst=$("$M" list --repo "$R" --json)
is "row counts recorded" "chunks=250 docs=1000" \
   "$(echo "$lst" | python3 -c 'import json,sys; print(" ".join("%s=%d" % (c["name"], c["rows"]) for c in json.load(sys.stdin)[0]["collections"]))')"

# --- restore into fresh directories: same content and metadata ----------------------
F="$T/fresh"
"$M" restore s1 --repo "$R" --volume "etcd=$F/etcd" --volume "minio=$F/minio" \
    --volume "milvus=$F/milvus" --assume-stopped >/dev/null
is "restore into fresh dirs exits 0" 0 $?
for v in etcd minio milvus; do
    tree_of "$V/$v" >"$T/a.$v"
    tree_of "$F/$v" >"$T/b.$v"
    ok "volume $v restored exactly (content, modes, owners, mtimes, links)" cmp -s "$T/a.$v" "$T/b.$v"
done
ok "symlink restored as a link" test -L "$F/milvus/data/abs-link"
is "symlink target kept" "/var/lib/milvus/rdb_data" "$(readlink "$F/milvus/data/abs-link")"
is "private mode kept" "600" "$(stat -c %a "$F/etcd/member/snap/db")"

# non-empty target refused; --force moves it aside
exit_is "non-empty target refused" 1 "$M" restore s1 --repo "$R" --volume "etcd=$F/etcd" \
    --volume "minio=$F/minio" --volume "milvus=$F/milvus" --assume-stopped
echo scribble >"$F/etcd/scribble"
"$M" restore s1 --repo "$R" --volume "etcd=$F/etcd" --volume "minio=$F/minio" \
    --volume "milvus=$F/milvus" --assume-stopped --force >/dev/null
is "--force restore exits 0" 0 $?
ok "old contents moved aside, not deleted" test -f "$(ls -d "$F"/etcd.ragsafe-old-*)/scribble"
ok "forced target holds the snapshot" test ! -e "$F/etcd/scribble"
rm -rf "$F"

# --- +2 % new objects: the second snapshot stores exactly the new content ------------
python3 "$FAKE" digests "$V" >"$T/before"
python3 "$FAKE" grow "$V" --percent 2 --seed 11 >/dev/null
printf 'rewritten page' | dd of="$V/milvus/rdb_data/LOG.old" bs=1 seek=3000000 conv=notrunc status=none
python3 "$FAKE" digests "$V" >"$T/after"
# expected: the content units (files, chunks of large files) after that were not before
want=$(python3 - "$T/before" "$T/after" <<'PY'
import sys
def units(p):
    return dict(l.split() for l in open(p))
b, a = units(sys.argv[1]), units(sys.argv[2])
new = {h: int(s) for h, s in a.items() if h not in b}
print(len(new), sum(new.values()))
PY
)
objs_before=$(find "$R/milvus/objects" -type f | wc -l)
du_before=$(du -sb "$R/milvus/objects" | cut -f1)
out=$("$M" snapshot --repo "$R" "${VOLS[@]}" "${STACK[@]}" --label s2 --json)
is "second snapshot exits 0" 0 $?
is "second snapshot: new objects and bytes are exactly the new content ($want)" "$want" \
   "$(echo "$out" | json_get '["new_objects"]') $(echo "$out" | json_get '["new_bytes"]')"
objs_after=$(find "$R/milvus/objects" -type f | wc -l)
is "only the new objects were added to the store" "${want% *}" "$((objs_after - objs_before))"
grew=$(( $(du -sb "$R/milvus/objects" | cut -f1) - du_before ))
total=$(echo "$out" | json_get '["bytes"]')
ok "store grew by less than 10 % of the data ($grew of $total bytes)" test "$grew" -lt "$((total / 10))"
ok "unchanged files reused" test "$(echo "$out" | json_get '["reused_bytes"]')" -gt "$((total * 8 / 10))"
F2="$T/fresh2"
"$M" restore s2 --repo "$R" --volume "etcd=$F2/etcd" --volume "minio=$F2/minio" \
    --volume "milvus=$F2/milvus" --assume-stopped >/dev/null
for v in etcd minio milvus; do
    tree_of "$V/$v" >"$T/a.$v"; tree_of "$F2/$v" >"$T/b.$v"
    ok "second snapshot restores $v exactly" cmp -s "$T/a.$v" "$T/b.$v"
done
rm -rf "$F2"

# --- row counts after restore -----------------------------------------------------------
F3="$T/fresh3"
"$M" restore s1 --repo "$R" --volume "etcd=$F3/etcd" --volume "minio=$F3/minio" \
    --volume "milvus=$F3/milvus" "${STACK[@]}" --milvus-url "$MURL" >/dev/null
is "restore with matching row counts exits 0" 0 $?
rm -rf "$F3"
printf '{"up": true, "collections": {"docs": 999, "chunks": 250}}\n' >"$T/state.up"
exit_is "row count mismatch after restore exits 3" 3 "$M" restore s1 --repo "$R" \
    --volume "etcd=$F3/etcd" --volume "minio=$F3/minio" --volume "milvus=$F3/milvus" \
    "${STACK[@]}" --milvus-url "$MURL"
printf '{"up": true, "collections": {"docs": 1000, "chunks": 250}}\n' >"$T/state.up"
rm -rf "$F3"

# --- start runs after a failure ---------------------------------------------------------
: >"$LOG"
exit_is "snapshot failing after stop exits 1" 1 "$M" snapshot --repo "$R" "${VOLS[@]}" \
    "${STACK[@]}" --pg "host=$T/nonexistent port=1 connect_timeout=2" --label bad1
is "start ran after the failure" "stop,start," "$(grep -E '^(stop|start)$' "$LOG" | tr '\n' ',')"
ok "stack is up after the failure" grep -q '"up": true' "$T/state.json"
ok "failed snapshot not recorded" test ! -e "$R/milvus/snapshots/bad1.json.zst"

# --- start runs after SIGTERM mid-snapshot ---------------------------------------------
: >"$LOG"
# fresh content at zstd level 19 on one thread: a store phase long enough to interrupt
python3 "$FAKE" gen "$T/sigvol" --mb 12 --seed 99
"$M" snapshot --repo "$R" --volume "etcd=$T/sigvol/etcd" --volume "minio=$T/sigvol/minio" \
    --volume "milvus=$T/sigvol/milvus" "${STACK[@]}" --label sig1 --compress-level 19 \
    --jobs 1 --json >"$T/sig.out" 2>"$T/sig.err" &
pid=$!
for _ in $(seq 100); do grep -q '^stop$' "$LOG" && break; sleep 0.1; done
sleep 1
ok "snapshot still running when signalled" kill -0 "$pid"
kill -TERM "$pid"
wait "$pid"
st=$?
ok "SIGTERM mid-snapshot exits non-zero" test "$st" -ne 0
is "start ran after SIGTERM" "stop,start," "$(grep -E '^(stop|start)$' "$LOG" | tr '\n' ',')"
ok "health waited for after SIGTERM" grep -q 'GET /healthz 200' "$LOG"
ok "interrupted snapshot not recorded" test ! -e "$R/milvus/snapshots/sig1.json.zst"
ok "no temp objects left behind" test -z "$(find "$R/milvus/objects" -name '.*')"
ok "signal reported" grep -q 'interrupted by signal 15' "$T/sig.err"
rm -rf "$T/sigvol"

# --- no stop command: refuse while healthy ------------------------------------------------
exit_is "refuses while the health URL answers" 1 "$M" snapshot --repo "$R" "${VOLS[@]}" \
    --health-url "$HEALTH" --label nostop
exit_is "no stop command and no health URL is a usage error" 2 "$M" snapshot --repo "$R" \
    "${VOLS[@]}" --label nostop
exit_is "unknown option is a usage error" 2 "$M" snapshot --repo "$R" --bogus

# --- PostgreSQL restore point while Milvus is down --------------------------------------
pg_init pg
pg_start pg
out=$("$M" snapshot --repo "$R" "${VOLS[@]}" "${STACK[@]}" --pg "$(pg_conn pg)" --label withpg --json)
is "snapshot with --pg exits 0" 0 $?
lsn=$(echo "$out" | json_get '["pg_lsn"]')
ok "restore point LSN recorded ($lsn)" bash -c "[[ '$lsn' =~ ^[0-9A-F]+/[0-9A-F]+$ ]]"
ok "manifest records the restore point" bash -c "zstd -dc '$R/milvus/snapshots/withpg.json.zst' | grep -q '\"restore_point\":\"withpg\"'"

"$M" verify --repo "$R" >/dev/null
is "verify of an intact repository exits 0" 0 $?

t_done
