#!/usr/bin/env bash
# 052_milvus_restore_safety -- a ragsafe-milvus restore can be killed at any moment and
# never leaves the three volumes mixed; it never writes under a live process; it never
# recreates set-id bits or device files; no secret on its command line.
#
# Milvus itself cannot run on these machines (no container runtime, no images): the
# volumes are synthetic Milvus-shaped trees made by fake_milvus.py, and fake_milvus.py
# serve stands in for Milvus' /healthz (see 050_milvus_snapshot.sh). The stop and start
# commands flip that server between down and up.
#
# kill -9 at a chosen point uses the test hook RAGSAFE_MILVUS_TEST_KILL=POINT[:N]
# (milvus/journal.c): the process SIGKILLs itself after N files extracted (extract:N),
# once the staging trees are durable (staged), after the stop command (stopped), once
# the journal says "swapping" (swapping), or after the N-th rename of the swap
# (rename:N). After each kill, the next ragsafe-milvus command (a rerun, list, verify,
# expire or snapshot) must leave every volume wholly old or wholly new, all three the
# same, no staging directory behind, the stack started again, and verify passing.
source "$(dirname "$0")/lib.sh"
t_init

milvus_env || exit 1
LOG="$T/stack.log"
tree_of() { python3 "$FAKE" tree "$1"; }

printf '{"up": true, "collections": {}}\n' >"$T/state.json"
printf '{"up": false, "collections": {}}\n' >"$T/state.down"
printf '{"up": true, "collections": {}}\n' >"$T/state.up"
python3 "$FAKE" serve --portfile "$T/port" --state "$T/state.json" --log "$LOG" \
    --pidfile "$T/fake.pid" --max-seconds 600 &
FAKE_PID=$!
t_on_exit "kill $FAKE_PID"
for _ in $(seq 50); do [ -s "$T/port" ] && break; sleep 0.1; done
HEALTH="http://127.0.0.1:$(cat "$T/port")/healthz"
STOP="echo stop >>$LOG && cp $T/state.down $T/s.tmp && mv $T/s.tmp $T/state.json"
START="echo start >>$LOG && cp $T/state.up $T/s.tmp && mv $T/s.tmp $T/state.json"
STACK=(--stop-cmd "$STOP" --start-cmd "$START" --health-url "$HEALTH" --health-timeout 20)
# list, verify and expire take the start command from the config file
CFG="$T/ragsafe.conf"
printf 'start-cmd = %s\nhealth-url = %s\nhealth-timeout = 20\n' "$START" "$HEALTH" >"$CFG"
chmod 0600 "$CFG"

# the snapshot ("new") and the volumes as they are later ("old")
python3 "$FAKE" gen "$V" --mb 6 --seed 5
"$M" snapshot --repo "$R" "${VOLS[@]}" --assume-stopped --label s1 >/dev/null
is "snapshot s1" 0 $?
"$M" restore s1 --repo "$R" --volume "etcd=$T/ref/etcd" --volume "minio=$T/ref/minio" \
    --volume "milvus=$T/ref/milvus" --assume-stopped >/dev/null
is "reference restore" 0 $?
python3 "$FAKE" grow "$V" --percent 20 --seed 6 >/dev/null
cp -a "$V" "$T/old"
for v in etcd minio milvus; do
    tree_of "$T/ref/$v" >"$T/new.$v"
    tree_of "$T/old/$v" >"$T/old.$v"
done
ok "old and new differ" bash -c "! cmp -s '$T/old.minio' '$T/new.minio'"

# which: old | new | mixed, for the three volumes together
which_state() {
    local o=0 n=0 v
    for v in etcd minio milvus; do
        tree_of "$V/$v" >"$T/cur.$v" 2>/dev/null
        if cmp -s "$T/cur.$v" "$T/old.$v"; then o=$((o + 1))
        elif cmp -s "$T/cur.$v" "$T/new.$v"; then n=$((n + 1)); fi
    done
    if [ $o = 3 ]; then echo old; elif [ $n = 3 ]; then echo new; else echo "mixed(old=$o new=$n)"; fi
}
reset_volumes() {
    rm -rf "$V"
    cp -a "$T/old" "$V"
    write_up
}
write_up() { cp "$T/state.up" "$T/s.tmp" && mv "$T/s.tmp" "$T/state.json"; }
leftovers() { find "$T/vol" -maxdepth 1 -name '*.ragsafe-staging-*' | wc -l; }

# kill_at POINT NEXT-COMMAND... EXPECTED(old|new)
kill_at() {
    local point=$1 want=$2; shift 2
    reset_volumes
    : >"$LOG"
    RAGSAFE_MILVUS_TEST_KILL=$point "$M" restore s1 --repo "$R" "${VOLS[@]}" --force "${STACK[@]}" \
        >/dev/null 2>"$T/kill.err"
    is "[$point] restore killed by the hook" 137 $?
    ok "[$point] the hook fired" grep -q "test hook: killed at" "$T/kill.err"
    "$@" >/dev/null 2>"$T/next.err"
    is "[$point] next command ($2) exits 0" 0 $?
    is "[$point] volumes wholly $want" "$want" "$(which_state)"
    is "[$point] no staging directory left" 0 "$(leftovers)"
    ok "[$point] stack up again" grep -q '"up": true' "$T/state.json"
    ok "[$point] no journal left" test ! -e "$R/milvus/journal/restore.json" -a \
        ! -e "$R/milvus/journal/stack-stopped.json"
}

kill_at extract:20 old "$M" list --repo "$R" --config "$CFG"
ok "[extract:20] rollback reported" grep -q "rolled back" "$T/next.err"
kill_at staged old "$M" verify --repo "$R" --config "$CFG"
kill_at stopped old "$M" list --repo "$R" --config "$CFG"
ok "[stopped] the stopped stack is reported and started" grep -q "MAY BE DOWN.*restore" "$T/next.err"
ok "[stopped] started by the next command" grep -qx start "$LOG"
kill_at swapping new "$M" list --repo "$R" --config "$CFG"
ok "[swapping] roll forward reported" grep -q "rolled forward" "$T/next.err"
kill_at rename:1 new "$M" expire --repo "$R" --config "$CFG" --keep-last 5
kill_at rename:4 new "$M" restore s1 --repo "$R" "${VOLS[@]}" --force "${STACK[@]}"
ok "[rename:4] the rerun restored again: old contents kept aside" \
    test "$(find "$T/vol" -maxdepth 1 -name '*.ragsafe-old-*' | wc -l)" -ge 3
kill_at rename:6 new "$M" snapshot --repo "$R" "${VOLS[@]}" "${STACK[@]}" --label after6
exit_is "verify passes after every recovery" 0 "$M" verify --repo "$R"

# a killed run with no start command at hand: said loudly, stack left alone
reset_volumes
RAGSAFE_MILVUS_TEST_KILL=rename:3 "$M" restore s1 --repo "$R" "${VOLS[@]}" --force "${STACK[@]}" \
    >/dev/null 2>&1
"$M" list --repo "$R" >/dev/null 2>"$T/next.err"
is "without a start command: the next command still exits 0" 0 $?
is "the half swap is finished anyway" new "$(which_state)"
ok "says loudly that the stack is down and who stopped it" \
    grep -q "MAY BE DOWN: ragsafe-milvus restore (pid [0-9]* on" "$T/next.err"
ok "names the fix" grep -q "hint: start the stack" "$T/next.err"
ok "stack still down" grep -q '"up": false' "$T/state.json"
"$M" list --repo "$R" --config "$CFG" >/dev/null 2>&1
ok "the next command with a start command starts it" grep -q '"up": true' "$T/state.json"
ok "and forgets it" test ! -e "$R/milvus/journal/stack-stopped.json"

# a snapshot killed while the stack is down
write_up
RAGSAFE_MILVUS_TEST_KILL=stopped "$M" snapshot --repo "$R" "${VOLS[@]}" "${STACK[@]}" --label k1 \
    >/dev/null 2>&1
is "snapshot killed after the stop" 137 $?
ok "stack down after the killed snapshot" grep -q '"up": false' "$T/state.json"
"$M" verify --repo "$R" --config "$CFG" >/dev/null 2>"$T/next.err"
ok "verify reports who stopped it" grep -q "MAY BE DOWN: ragsafe-milvus snapshot" "$T/next.err"
ok "and starts it" grep -q '"up": true' "$T/state.json"

# --force twice within the same second: distinct move-aside names (names the old code
# would have taken are occupied)
reset_volumes
for d in 0 1 2 3; do
    s=$(date -u -d "+$d sec" +%Y%m%dT%H%M%SZ)
    for v in etcd minio milvus; do mkdir -p "$V/$v.ragsafe-old-$s"; touch "$V/$v.ragsafe-old-$s/x"; done
done
exit_is "first --force restore" 0 "$M" restore s1 --repo "$R" "${VOLS[@]}" --force --assume-stopped
exit_is "second --force restore right after" 0 "$M" restore s1 --repo "$R" "${VOLS[@]}" --force --assume-stopped
is "restored" new "$(which_state)"
is "every move-aside name distinct (4 occupied + 2 runs)" 6 \
    "$(find "$T/vol" -maxdepth 1 -name 'etcd.ragsafe-old-*' | wc -l)"

# --- never over a live process (no stop command given) ---------------------------------
reset_volumes
(cd "$V/minio" && exec sleep 300) &
SLEEP=$!
t_on_exit "kill $SLEEP"
sleep 0.3
"$M" restore s1 --repo "$R" "${VOLS[@]}" --force --assume-stopped >/dev/null 2>"$T/live.err"
is "a process with its cwd in a target: refused (exit 1)" 1 $?
ok "refusal names the PID and its command" grep -q "in use by process $SLEEP (sleep)" "$T/live.err"
ok "refusal names the fix" grep -q "hint: stop it first, or give --stop-cmd" "$T/live.err"
is "refused: nothing changed" old "$(which_state)"
is "refused: no staging directory" 0 "$(leftovers)"
kill "$SLEEP"; wait "$SLEEP" 2>/dev/null
sleep 300 <"$V/etcd/member/snap/db" &
SLEEP=$!
t_on_exit "kill $SLEEP"
sleep 0.3
"$M" restore s1 --repo "$R" "${VOLS[@]}" --force --assume-stopped >/dev/null 2>"$T/live.err"
is "a process with an open file in a target: refused" 1 $?
ok "refusal names the open file" grep -q "process $SLEEP (sleep): an open file \".*/etcd/member/snap/db\"" "$T/live.err"
is "refused: still old" old "$(which_state)"
kill "$SLEEP"; wait "$SLEEP" 2>/dev/null
exit_is "once it is gone, the restore runs" 0 "$M" restore s1 --repo "$R" "${VOLS[@]}" --force --assume-stopped

# --- no set-id bits, no device files, owners only when they fit ---------------------------
S="$T/sv"
mkdir -p "$S/etcd" "$S/minio/shared" "$S/milvus"
printf '#!/bin/sh\nid\n' >"$S/milvus/suid-tool"
chmod 4755 "$S/milvus/suid-tool"
chmod 2775 "$S/minio/shared"
echo data >"$S/minio/shared/obj"
chown postgres: "$S/minio/shared/obj"
mkfifo "$S/milvus/a-fifo"
"$M" snapshot --repo "$R" --volume "etcd=$S/etcd" --volume "minio=$S/minio" \
    --volume "milvus=$S/milvus" --assume-stopped --label su >/dev/null 2>"$T/su.err"
is "snapshot of a tree with a set-uid file and a FIFO" 0 $?
ok "the FIFO is skipped with a warning" grep -q 'warning: skipping ".*/a-fifo"' "$T/su.err"
"$M" restore su --repo "$R" $(to "$T/su1") --assume-stopped >/dev/null 2>"$T/su1.err"
is "restore of it" 0 $?
is "set-uid bit not restored" 755 "$(stat -c %a "$T/su1/milvus/suid-tool")"
is "set-gid bit of a directory not restored" 775 "$(stat -c %a "$T/su1/minio/shared")"
ok "the restore says so" grep -q 'suid-tool": set-user-ID/set-group-ID bits not restored' "$T/su1.err"
ok "no FIFO restored" test ! -e "$T/su1/milvus/a-fifo"
is "owners restored: recorded roots are root's, as the new targets'" postgres \
    "$(stat -c %U "$T/su1/minio/shared/obj")"
mkdir -p "$T/su2/etcd" "$T/su2/minio" "$T/su2/milvus"
chown postgres: "$T/su2/etcd" "$T/su2/minio" "$T/su2/milvus"
"$M" restore su --repo "$R" $(to "$T/su2") --assume-stopped >/dev/null 2>"$T/su2.err"
is "restore into targets owned by someone else" 0 $?
is "owners not restored there" root "$(stat -c %U "$T/su2/minio/shared/obj")"
ok "the restore says why and names --same-owner" grep -q 'hint: give --same-owner' "$T/su2.err"
mkdir -p "$T/su3/etcd" "$T/su3/minio" "$T/su3/milvus"
chown postgres: "$T/su3/etcd" "$T/su3/minio" "$T/su3/milvus"
exit_is "--same-owner" 0 "$M" restore su --repo "$R" $(to "$T/su3") --assume-stopped --same-owner
is "--same-owner restores the recorded owner" postgres "$(stat -c %U "$T/su3/minio/shared/obj")"
is "--same-owner still strips set-uid" 755 "$(stat -c %a "$T/su3/milvus/suid-tool")"
# a manifest that names a device node (or a FIFO) is refused before anything is written
for typ in chardev blockdev fifo; do
    python3 "$FAKE" manifest-get "$R/milvus/snapshots/su.json.zst" | python3 -c '
import json, sys
m = json.load(sys.stdin)
m["label"] = "dev"
v = [v for v in m["volumes"] if v["name"] == "milvus"][0]
v["entries"].append({"path": "null", "type": sys.argv[1], "mode": 438, "uid": 0, "gid": 0,
                     "mtime_ns": 0, "rdev": 259})
json.dump(m, sys.stdout)' "$typ" | python3 "$FAKE" manifest-put "$R/milvus/snapshots/dev.json.zst"
    "$M" restore dev --repo "$R" $(to "$T/dev") --assume-stopped >/dev/null 2>"$T/dev.err"
    ok "manifest with a $typ entry refused" test $? -ne 0
    ok "$typ: nothing written" test ! -e "$T/dev"
done
rm -f "$R/milvus/snapshots/dev.json.zst"

# --- no secret on the command line -------------------------------------------------------
printf '{"up": true, "token": "root:Milvus", "collections": {"docs": 7}}\n' >"$T/state.json"
MURL="http://127.0.0.1:$(cat "$T/port")"
TV=(--volume "etcd=$S/etcd" --volume "minio=$S/minio" --volume "milvus=$S/milvus")
rm -f "$S/milvus/a-fifo"
: >"$LOG"
"$M" snapshot --repo "$R" "${TV[@]}" --assume-stopped --milvus-url "$MURL" \
    --milvus-token root:Milvus --label tok0 >/dev/null 2>"$T/tok.err"
is "--milvus-token on the command line: refused (exit 2)" 2 $?
ok "the refusal names both replacements" \
    grep -q 'hint: .*--milvus-token-file FILE, or set RAGSAFE_MILVUS_TOKEN' "$T/tok.err"
is "refused before talking to Milvus" "" "$(cat "$LOG")"
printf 'root:Milvus\n' >"$T/token"
chmod 0640 "$T/token"
exit_is "a token file readable by the group: refused (exit 2)" 2 "$M" snapshot --repo "$R" \
    "${TV[@]}" --assume-stopped --milvus-url "$MURL" --milvus-token-file "$T/token" --label tok1
chmod 0600 "$T/token"
out=$("$M" snapshot --repo "$R" "${TV[@]}" --assume-stopped --milvus-url "$MURL" \
    --milvus-token-file "$T/token" --label tok2 --json)
is "--milvus-token-file (0600)" 0 $?
ok "the token was sent: row counts recorded" grep -q '"docs"' <<<"$("$M" list --repo "$R" --json)"
exit_is "RAGSAFE_MILVUS_TOKEN" 0 env RAGSAFE_MILVUS_TOKEN=root:Milvus "$M" snapshot --repo "$R" \
    "${TV[@]}" --assume-stopped --milvus-url "$MURL" --label tok3
exit_is "a wrong token fails" 1 env RAGSAFE_MILVUS_TOKEN=root:wrong "$M" snapshot --repo "$R" \
    "${TV[@]}" --assume-stopped --milvus-url "$MURL" --label tok4
printf '{"up": true, "collections": {}}\n' >"$T/state.json"

t_done
