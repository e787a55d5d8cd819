#!/usr/bin/env bash
# 091_pitr_stream_info.sh -- what ragsafe-pitr info and check make of a receiver:
# stream/status.json (ragsafe-receive's status, pitr/pitr.h) in the text, --json and
# Prometheus output of info (slot, host/pid, flush LSN and time, lag in bytes and
# seconds, stale); check's receiver line (fresh ok; stale: FAILED when synchronous,
# WARNING when not; unreadable: WARNING); and check's replication_slots on real slots:
# an active slot (pg_receivewal, stopped with SIGSTOP) holding back more than
# --max-slot-wal, and an inactive one, each named with what it retains and the fix.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/stream_lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
pg_archiving src "$REPO" || exit 1
pg_sql src "create table big (id int, v text)" || exit 1
as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast >/dev/null 2>"$T/bb.err" ||
    { cat "$T/bb.err"; exit 1; }
pg_sql src "insert into big values (1, 'after the backup')"
switch_wal src || exit 1
SYSID=$(jq -r .system_identifier "$REPO/repo.json")
GOOD=(--min-free 1M --rpo 1h --max-backup-age 1h --switch-timeout 30)

utc() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
# status UPDATED_AGO FLUSH_AGO SYNC: a status.json of this cluster, 4096 bytes behind
status() {
    local now server flush
    now=$(date +%s)
    server=$(pg_sql src "select pg_current_wal_lsn()")
    flush=$(pg_sql src "select pg_current_wal_lsn() - 4096")
    FLUSH_EPOCH=$((now - $2))
    stream_status "$REPO" "{\"format\":1,\"system_identifier\":\"$SYSID\",\"slot\":\"ragsafe\",
\"application_name\":\"ragsafe_receive\",\"timeline\":1,\"flush_lsn\":\"$flush\",
\"flush_time\":\"$(utc $FLUSH_EPOCH)\",\"segment\":\"$(pg_sql src "select pg_walfile_name('$flush')")\",
\"pid\":4242,\"host\":\"backup-host\",\"updated\":\"$(utc $((now - $1)))\",\"server_lsn\":\"$server\",
\"synchronous\":$3}"
}
# check ARGS...: ragsafe-pitr check as postgres; stdout in OUT, status in RC
check() {
    OUT=$(as_pg "$PITR" check --repo "$REPO" "$@" 2>"$T/check.err")
    RC=$?
}
line() { grep "^  $1: " <<<"$OUT"; }
hint_of() { grep -A1 "^  $1: " <<<"$OUT" | sed -n 2p; }
metric() { awk -v m="$1" '$1 ~ "^"m"[{ ]" {print $NF}' "$T/metrics.prom" | head -1; }

# --- no receiver: nothing shown, check n/a ----------------------------------------------
as_pg "$PITR" info --repo "$REPO" --json >"$T/info0.json"
is "no status: info --json receiver is null" true "$(jq -r 'has("receiver") and .receiver == null' "$T/info0.json")"

# --- a fresh receiver, 3 s and 4096 bytes behind --------------------------------------
status 1 3 true
as_pg "$PITR" info --repo "$REPO" >"$T/info.txt" 2>"$T/info.err"
ok "info: the receiver line names slot, application, host and pid" \
    grep -q "^receiver: slot ragsafe, application_name ragsafe_receive, on backup-host (pid 4242), synchronous$" "$T/info.txt"
ok "info: the lag in bytes" grep -q "^  lag: [0-9]* s, 4096 bytes (the server is at " "$T/info.txt"
ok "info: the status's age, not stale" grep -Eq "^  status updated [0-9TZ:-]+, [0-9]+ s ago$" "$T/info.txt"
as_pg "$PITR" info --repo "$REPO" --json >"$T/info.json"
is "info --json: receiver.slot" ragsafe "$(jq -r .receiver.slot "$T/info.json")"
is "info --json: receiver.lag_bytes" 4096 "$(jq -r .receiver.lag_bytes "$T/info.json")"
ok "info --json: receiver.lag_seconds is the flush's age (3..20)" \
    bash -c "l=\$(jq -r .receiver.lag_seconds '$T/info.json'); [ \"\$l\" -ge 3 ] && [ \"\$l\" -le 20 ]"
is "info --json: receiver.stale" false "$(jq -r .receiver.stale "$T/info.json")"
is "info --json: receiver.flush_time" "$(utc $FLUSH_EPOCH)" "$(jq -r .receiver.flush_time "$T/info.json")"
as_pg "$PITR" info --repo "$REPO" --prometheus >"$T/metrics.prom"
is "prometheus: ragsafe_receive_up" 1 "$(metric ragsafe_receive_up)"
is "prometheus: ragsafe_receive_flush_lag_bytes" 4096 "$(metric ragsafe_receive_flush_lag_bytes)"
is "prometheus: ragsafe_receive_last_flush_timestamp_seconds" "$FLUSH_EPOCH" "$(metric ragsafe_receive_last_flush_timestamp_seconds)"
ok "prometheus: ragsafe_receive_flush_lag_seconds >= 3" test "$(metric ragsafe_receive_flush_lag_seconds)" -ge 3
is "prometheus: ragsafe_receive_synchronous" 1 "$(metric ragsafe_receive_synchronous)"
bad=$(grep -v '^#' "$T/metrics.prom" | grep -Evc '^[a-z_]+\{repo="[^"]*"(,timeline="[0-9]+")?\} -?[0-9.]+$')
is "prometheus: six receiver samples, every sample line well formed" "6 0" \
    "$(grep -Ec '^ragsafe_receive_[a-z_]+\{repo="[^"]*"\} -?[0-9.]+$' "$T/metrics.prom") $bad"
ok "prometheus: HELP and TYPE for the receiver metrics" \
    bash -c "grep -q '^# TYPE ragsafe_receive_up gauge' '$T/metrics.prom' && grep -q '^# HELP ragsafe_receive_flush_lag_bytes ' '$T/metrics.prom'"

# --- check: fresh receiver ok; an active slot held back past --max-slot-wal ------------
pg_sql src "select pg_create_physical_replication_slot('rs_active', true)" >/dev/null
mkdir -p "$T/rw"
"$PGBIN/pg_receivewal" -D "$T/rw" -S rs_active -h "$T/src" -p 5432 -U postgres --no-loop >"$T/rw.log" 2>&1 &
RW=$!
t_on_exit "kill -CONT $RW; kill $RW"
pg_wait_for src "select active from pg_replication_slots where slot_name = 'rs_active'" t 30
check -d "$(pg_conn src)" "${GOOD[@]}"
ok "check: an active slot that keeps up is ok" grep -q "^  replication_slots: ok (1 slot, none inactive or retaining over 1.0 GiB)" <<<"$(line replication_slots)"
ok "check: a fresh receiver is ok" grep -q "^  receiver: ok (slot ragsafe on backup-host, flushed up to " <<<"$(line receiver)"
kill -STOP "$RW"
pg_sql src "insert into big select g, repeat('x', 1000) from generate_series(1, 4000) g"
check -d "$(pg_conn src)" "${GOOD[@]}" --max-slot-wal 1M
ok "check: the stopped consumer's slot is over --max-slot-wal: warning naming it" \
    grep -Eq "^  replication_slots: WARNING \(1 slot holding back WAL .*over 1.0 MiB: --max-slot-wal\): rs_active \(physical, retains [0-9.]+ MiB\)\)" <<<"$(line replication_slots)"
ok "check: the hint says start the consumer or drop that slot" \
    grep -q "hint: start the slot's consumer (ragsafe-receive: systemctl start ragsafe-receive), or, if it is gone for good, drop the slot: SELECT pg_drop_replication_slot('rs_active')" <<<"$(hint_of replication_slots)"
is "check: exit 1 (a warning)" 1 "$RC"
kill -CONT "$RW"; kill "$RW"; wait "$RW" 2>/dev/null
pg_wait_for src "select active from pg_replication_slots where slot_name = 'rs_active'" f 30
pg_sql src "select pg_drop_replication_slot('rs_active')" >/dev/null

# --- an inactive slot; a stale synchronous receiver ----------------------------------
pg_sql src "select pg_create_physical_replication_slot('rs_idle', true)" >/dev/null
pg_sql src "insert into big select g, repeat('y', 1000) from generate_series(1, 2000) g"
status 120 125 true
check -d "$(pg_conn src)" "${GOOD[@]}"
ok "check: the inactive slot is named with what it retains" \
    grep -Eq "^  replication_slots: WARNING \(.*rs_idle \(inactive, physical, retains [0-9.]+ (MiB|KiB)\)\)" <<<"$(line replication_slots)"
ok "check: its hint drops that slot by name" grep -q "pg_drop_replication_slot('rs_idle')" <<<"$(hint_of replication_slots)"
ok "check: a stale synchronous receiver FAILED" grep -Eq "^  receiver: FAILED \(the receiver \(slot ragsafe on backup-host, pid 4242\) last updated its status 2 min ago, as a synchronous standby" <<<"$(line receiver)"
ok "check: its hint starts ragsafe-receive" grep -q "hint: start ragsafe-receive" <<<"$(hint_of receiver)"
is "check: exit 2 (a failure)" 2 "$RC"
as_pg "$PITR" info --repo "$REPO" >"$T/info_stale.txt"
ok "info: a stale receiver says so" grep -q "status updated .*, 1[0-9][0-9] s ago: STALE" "$T/info_stale.txt"
as_pg "$PITR" info --repo "$REPO" --json >"$T/info_stale.json"
is "info --json: stale" true "$(jq -r .receiver.stale "$T/info_stale.json")"
as_pg "$PITR" info --repo "$REPO" --prometheus >"$T/metrics.prom"
is "prometheus: a stale receiver is down" 0 "$(metric ragsafe_receive_up)"

# --- a stale asynchronous receiver warns; an unreadable status warns ---------------------
status 120 125 false
check -d "$(pg_conn src)" "${GOOD[@]}"
ok "check: a stale asynchronous receiver is a WARNING" grep -q "^  receiver: WARNING (the receiver (slot ragsafe" <<<"$(line receiver)"
stream_status "$REPO" '{"format":1,"flush_lsn":"not an lsn","updated":"2026-01-01T00:00:00Z"}'
check -d "$(pg_conn src)" "${GOOD[@]}"
ok "check: an invalid status is a WARNING" grep -q "^  receiver: WARNING (could not read the receiver status" <<<"$(line receiver)"
ok "check: the error says what is wrong" grep -q 'the receiver status "stream/status.json" is invalid: flush_lsn or server_lsn is not an LSN' "$T/check.err"
as_pg "$PITR" info --repo "$REPO" --json >"$T/info_bad.json" 2>"$T/info_bad.err"
is "info with an invalid status: exit 0, the status left out, the error said" "0 true 1" \
    "$? $(jq -r 'has("receiver") and .receiver == null' "$T/info_bad.json") $(grep -c 'receiver status "stream/status.json" is invalid' "$T/info_bad.err")"

t_done
