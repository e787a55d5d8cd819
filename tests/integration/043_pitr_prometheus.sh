#!/usr/bin/env bash
# ragsafe-pitr info --prometheus: the node_exporter textfile metrics, checked against
# the repository they describe (ages, counts, sizes, window, last verify).
source "$(dirname "$0")/lib.sh"
t_init

R=$T/repo
as_pg mkdir -p "$R"
pg_init pg
pg_set pg "archive_mode = on"
pg_set pg "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $R %p %f'"
pg_start pg
as_pg "$PGBIN/pgbench" -h "$T/pg" -p 5432 -U postgres -i -s 2 -q postgres >/dev/null 2>&1
label=$(as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn pg)" --repo "$R" --checkpoint fast)
ok "base backup taken" test -n "$label"
pg_sql pg "CREATE TABLE t AS SELECT 1 AS x" >/dev/null
pg_sql pg "SELECT pg_switch_wal()" >/dev/null
pg_wait_for pg "SELECT last_archived_wal = pg_walfile_name(pg_current_wal_lsn() - 1) FROM pg_stat_archiver" t 60
ok "verify passes" as_pg "$RAGSAFE_BIN/ragsafe-pitr" verify --repo "$R"

# a Milvus snapshot in the same repository (synthetic volume)
mkdir -p "$T/vol/etcd"
head -c 100000 /dev/urandom >"$T/vol/etcd/db"
"$RAGSAFE_BIN/ragsafe-milvus" snapshot --repo "$R" --label snap1 --assume-stopped \
    --volume etcd="$T/vol/etcd" >/dev/null
chown -R postgres: "$R"

t_info=$(date +%s)
out=$(as_pg "$RAGSAFE_BIN/ragsafe-pitr" info --repo "$R" --prometheus)
status=$?
is "info --prometheus exits 0" 0 "$status"
echo "$out" >"$T/metrics.prom"

val() { awk -v m="$1" '$1 ~ "^"m"[{ ]" || $1 == m {print $NF}' "$T/metrics.prom" | head -1; }

# every sample line is "name{labels} value", every name has HELP and TYPE
bad=$(grep -v '^#' "$T/metrics.prom" | grep -Evc '^[a-z_]+\{repo="[^"]*"(,timeline="[0-9]+")?\} -?[0-9.]+$')
is "every sample line is well formed" 0 "$bad"
for n in $(grep -v '^#' "$T/metrics.prom" | sed 's/{.*//' | sort -u); do
    grep -q "^# TYPE $n gauge" "$T/metrics.prom" || fail "TYPE line for $n"
done

is "one backup counted" 1 "$(val ragsafe_backup_count)"
stored=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['stored_bytes'])" "$R/backups/$label/backup.json")
is "newest backup stored bytes match backup.json" "$stored" "$(val ragsafe_backup_newest_stored_bytes)"
stop=$(python3 -c "
import json,sys,datetime
t=json.load(open(sys.argv[1]))['stop_time']
print(int(datetime.datetime.strptime(t,'%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc).timestamp()))" "$R/backups/$label/backup.json")
is "window start on timeline 1 is the backup's stop time" "$stop" \
    "$(awk '/^ragsafe_window_start_timestamp_seconds/ && /timeline="1"/ {print $NF}' "$T/metrics.prom")"
end=$(awk '/^ragsafe_window_end_timestamp_seconds/ && /timeline="1"/ {print int($NF)}' "$T/metrics.prom")
now=$(date +%s)
ok "window end is after its start and not in the future" test "${end:-0}" -ge "$stop" -a "${end:-0}" -le "$now"
age=$(val ragsafe_wal_newest_age_seconds)
ok "newest WAL age is small and not negative ($age s)" test "${age:-999}" -ge 0 -a "${age:-999}" -lt 120
newest_file=$(find "$R/wal" -name '*.zst' -not -name '.*' -printf '%T@\n' | sort -n | tail -1)
# info ran between t_info and now: its age lies between those two instants' ages (a
# loaded machine can take seconds between them), with a second of rounding either way.
lo_age=$((t_info - ${newest_file%.*} - 1))
hi_age=$((now - ${newest_file%.*} + 1))
ok "newest WAL age agrees with the newest object's mtime ($lo_age <= $age <= $hi_age)" \
    test "${age:-999}" -ge "$lo_age" -a "${age:-999}" -le "$hi_age"
is "one Milvus snapshot counted" 1 "$(val ragsafe_milvus_snapshot_count)"
is "Milvus snapshot bytes" 100000 "$(val ragsafe_milvus_snapshot_newest_bytes)"
repo_bytes=$(find "$R" -type f -not -path '*/.*' -printf '%s\n' | awk '{s+=$1} END {print s}')
is "repository bytes equal the files under it" "$repo_bytes" "$(val ragsafe_repository_bytes)"
is "last verify succeeded" 1 "$(val ragsafe_verify_last_success)"
vt=$(val ragsafe_verify_last_timestamp_seconds)
ok "last verify time is recent" test $((now - vt)) -ge 0 -a $((now - vt)) -lt 300

# damage one WAL object: verify fails, and the metric says so
obj=$(find "$R/wal" -name '*.zst' -not -name '.*' -size +10k | head -1)
printf '\xff\xfe' | dd of="$obj" bs=1 seek=2000 conv=notrunc 2>/dev/null
exit_is "verify exits 3 on a damaged object" 3 as_pg "$RAGSAFE_BIN/ragsafe-pitr" verify --repo "$R" >/dev/null 2>&1
as_pg "$RAGSAFE_BIN/ragsafe-pitr" info --repo "$R" --prometheus >"$T/metrics.prom"
is "last verify failure is reported" 0 "$(val ragsafe_verify_last_success)"
t_done
