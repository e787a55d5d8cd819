#!/usr/bin/env bash
# 045_pitr_records.sh -- restore records, the timeline tree, and "latest" warnings.
#
# A primary archives into a repository; after a base backup and some commits a restore
# with --start runs beside it (own port and socket) and keeps archiving (what
# --archive-mode preserve does; before that option existed, every copy did): its
# promotion archives 00000002.history and nothing else yet. Then:
# - the restore left a record in restores/ naming who, when, the backup, the target as
#   typed and as written, the planned stop, the data directory, the archive mode and
#   the new timeline and where the server stopped;
# - info shows timeline 2 with parent 1, its fork point and the restore that made it,
#   and reports no gap for it (text, --json, --prometheus), nor does verify;
# - plan --target-latest warns that two leaf timelines exist, naming
#   --target-timeline 1 and, once timeline 1 has newer commits, that latest misses the
#   newest archived commit; an explicit --target-timeline has no warning;
# - a restore without --start, started by hand, makes timeline 3: info finds its
#   record by the fork point, and no gap while it has archived no segment;
# - a restore from a repository it cannot write succeeds with a warning;
# - every restore that wrote a data directory has exactly one record;
# - in an encrypted repository the record is sealed, and info reads it with the key.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
pg_archiving src "$REPO" || exit 1

copy_sql() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$T/copy" -p 5433 -U postgres -d postgres -c "$1"; }
nrecords() { find "$1/restores" -name '*.json' 2>/dev/null | wc -l; }
hist_fork() { zstd -dc "$REPO/wal/$1.history.zst" | awk 'NF >= 2 && $1 !~ /^#/ { f = $2 } END { print f }'; }
wait_file() { local i; for ((i = 0; i < 300; i++)); do [ -e "$1" ] && return 0; sleep 0.2; done; return 1; }

pg_sql src "create table t (id int primary key, v text);
            insert into t select g, 'base' from generate_series(1, 100) g" || exit 1
as_pg "$PGBIN/pgbench" -i -s 1 -q -h "$T/src" -p 5432 postgres >"$T/pgbench.log" 2>&1 || { cat "$T/pgbench.log"; exit 1; }
backup=$(as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast 2>"$T/bb.err")
[ -n "$backup" ] || { cat "$T/bb.err"; exit 1; }
as_pg "$PGBIN/pgbench" -n -t 200 -h "$T/src" -p 5432 postgres >>"$T/pgbench.log" 2>&1 || { cat "$T/pgbench.log"; exit 1; }
sleep 1.1
pg_sql src "insert into t values (1000, 'before TA')"
TA=$(pg_sql src "select clock_timestamp()")
sleep 1.1
pg_sql src "insert into t values (1001, 'after TA')"
switch_wal src || exit 1

# The copy runs beside the original: a pg_ctl that gives it its own port and socket
# (what restore's --port / --set write into its configuration).
mkdir -p "$T/wbin"
cat >"$T/wbin/pg_ctl" <<EOF
#!/bin/sh
exec "$PGBIN/pg_ctl" -o "-p 5433 -k $T/copy" "\$@"
EOF
chmod 0755 "$T/wbin" "$T/wbin/pg_ctl"
AM=() AM_WANT=off
if "$PITR" --help | grep -q -- '--archive-mode'; then AM=(--archive-mode preserve) AM_WANT=preserve; fi

# --- a restore with --start that keeps archiving: timeline 2 -------------------------
T_CLUSTERS+=(copy)
"$PITR" restore --repo "$REPO" --pgdata "$T/copy" --target-time "$TA" --start --pg-bin "$T/wbin" \
    "${AM[@]}" --json >"$T/copy.json" 2>"$T/copy.err"
is "restore --start exits 0" 0 "$?"
is "the copy promoted" promoted "$(jq -r .recovery.state "$T/copy.json")"
is "the copy runs on timeline 2" 00000002 "$(copy_sql "select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")"
ok "its promotion archived 00000002.history" wait_file "$REPO/wal/00000002.history.zst"
FORK=$(hist_fork 00000002)
ok "the history file names a fork point" test -n "$FORK"
is "the copy archived no segment of timeline 2 yet" 0 "$(find "$REPO/wal" -name '00000002000*.zst' | wc -l)"

is "one restore, one record" 1 "$(nrecords "$REPO")"
REC=$(find "$REPO/restores" -name '*.json' | head -1)
ID=$(basename "$REC" .json)
ok "record key is restores/<UTC stamp>-<random>.json" grep -Eq '^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$' <<<"$ID"
is "record: id" "$ID" "$(jq -r .id "$REC")"
is "record: user" "$(id -un)" "$(jq -r .user "$REC")"
is "record: host" "$(hostname)" "$(jq -r .host "$REC")"
ok "record: when" grep -Eq '^[0-9-]{10}T[0-9:]{8}Z$' <<<"$(jq -r .started "$REC")"
is "record: backup" "$backup" "$(jq -r .backup "$REC")"
is "record: target kind" time "$(jq -r .target.kind "$REC")"
is "record: target as typed" "$TA" "$(jq -r .target.value "$REC")"
is "record: target as written (the instant of recovery_target_time, RFC 3339)" \
    "$(date -u -d "$(grep -oP "recovery_target_time = '\K[^']+" "$T/copy/postgresql.auto.conf")" '+%Y-%m-%dT%H:%M:%S.%6NZ')" \
    "$(jq -r .target.written "$REC")"
is "record: planned stop is the plan's" "$(jq -r .stop_lsn "$T/copy.json")" "$(jq -r .planned_stop.lsn "$REC")"
is "record: planned stop on timeline 1" 1 "$(jq -r .planned_stop.timeline "$REC")"
is "record: data directory" "$T/copy" "$(jq -r .pgdata "$REC")"
is "record: archive mode" "$AM_WANT" "$(jq -r .archive_mode "$REC")"
is "record: state" promoted "$(jq -r .state "$REC")"
is "record: new timeline" 2 "$(jq -r .server.new_timeline "$REC")"
is "record: where it stopped is the fork point" "$FORK" "$(jq -r .server.replay_lsn "$REC")"
is "record: last replayed commit" "$(jq -r .recovery.last_replay_timestamp "$T/copy.json")" \
    "$(jq -r .server.replay_timestamp "$REC")"

# --- info: the tree, no gap for the new timeline -------------------------------------
"$PITR" info --repo "$REPO" --json >"$T/info.json" 2>"$T/info.err"
is "info --json exits 0" 0 "$?"
tl2() { jq -r ".timelines[] | select(.timeline == 2) | $1" "$T/info.json"; }
is "info: timeline 2's parent is 1" 1 "$(tl2 .parent)"
is "info: timeline 2's fork point" "$FORK" "$(tl2 .switchpoint)"
is "info: timeline 2 made by the restore" "$ID" "$(tl2 .created_by)"
is "info: timeline 2 is new" true "$(tl2 .new)"
is "info: timeline 2 has no missing segment" 0 "$(tl2 .missing_segments)"
is "info: timeline 1 lists 2 as a child" 2 "$(jq -c '.timelines[] | select(.timeline == 1) | .children[]' "$T/info.json")"
is "info: both are leaves" "true true" "$(jq -r '[.timelines[] | .leaf] | map(tostring) | join(" ")' "$T/info.json")"
ok "info: timeline 1's newest commit" test "$(jq -r '.timelines[] | select(.timeline == 1) | .newest_commit.time' "$T/info.json")" != null
is "info --json lists the record" "$ID" "$(jq -r '.restores[0].id' "$T/info.json")"
"$PITR" info --repo "$REPO" >"$T/info.txt" 2>&1
is "info exits 0" 0 "$?"
ok "info: timeline 2 branched off 1 at the fork, new" \
    grep -q "timeline 2 (branched off timeline 1 at $FORK): new, no WAL archived yet" "$T/info.txt"
ok "info: names the restore that made timeline 2" grep -q "created by restore $ID ($(id -un)@" "$T/info.txt"
ok "info: tree shows 2 under 1" grep -Eq "^  \+- 2 at $FORK \(leaf\), new: no WAL archived yet, made by restore $ID" "$T/info.txt"
ok "info: no gap reported" bash -c "! grep -q 'gaps:' '$T/info.txt'"
"$PITR" info --repo "$REPO" --prometheus >"$T/info.prom" 2>&1
is "info --prometheus exits 0" 0 "$?"
ok "prometheus: no missing segment on timeline 2" \
    grep -q 'ragsafe_wal_missing_segments{repo="[^"]*",timeline="2"} 0$' "$T/info.prom"
ok "prometheus: no missing segment anywhere" bash -c "! grep -Eq '^ragsafe_wal_missing_segments.* [1-9]' '$T/info.prom'"

"$PITR" verify --repo "$REPO" >"$T/verify.out" 2>"$T/verify.err"
is "verify: the new timeline is not missing segments (exit 0)" 0 "$?"
ok "verify: no segment reported missing" bash -c "! grep -q 'is missing' '$T/verify.err'"

# --- plan --target-latest: two leaves ------------------------------------------------
"$PITR" plan --repo "$REPO" --target-latest --json >"$T/plan0.json" 2>"$T/plan0.err"
ok "plan (new timeline 2): warns of two leaf timelines" \
    grep -q 'warning: 2 leaf timelines exist: "latest" follows timeline 2' "$T/plan0.err"
ok "plan (new timeline 2): names --target-timeline 1" grep -q "timeline 1: newest archived commit .*pick it with --target-timeline 1" "$T/plan0.err"

# both timelines go on: the copy writes on 2, then the original on 1 (newest commit)
copy_sql "insert into t values (2000, 'tli2')" || fail "write on the copy"
copy_sql "select pg_switch_wal()" >/dev/null
for ((i = 0; i < 300; i++)); do
    [ "$(find "$REPO/wal" -name '00000002000*.zst' | wc -l)" -gt 0 ] && break
    sleep 0.2
done
sleep 1.1
pg_sql src "insert into t values (1002, 'tli1 newest')"
switch_wal src || exit 1

"$PITR" info --repo "$REPO" --json >"$T/info2.json" 2>/dev/null
is "info: timeline 2 with WAL is no longer new" false "$(jq -r '.timelines[] | select(.timeline == 2) | .new' "$T/info2.json")"
is "info: still no missing segment on timeline 2" 0 "$(jq -r '.timelines[] | select(.timeline == 2) | .missing_segments' "$T/info2.json")"

"$PITR" plan --repo "$REPO" --target-latest --json >"$T/plan.json" 2>"$T/plan.err"
is "plan --target-latest exits 0" 0 "$?"
is "latest follows timeline 2" 2 "$(jq -r .target.timeline "$T/plan.json")"
ok "plan warns of two leaf timelines" grep -q 'warning: 2 leaf timelines exist: "latest" follows timeline 2' "$T/plan.err"
ok "plan names --target-timeline 1" grep -q "timeline 1: newest archived commit .*; pick it with --target-timeline 1" "$T/plan.err"
ok "plan names the restore that made timeline 2" grep -q "timeline 2: newest archived commit .*; created by restore $ID .*; pick it with --target-timeline 2" "$T/plan.err"
ok "plan warns that latest misses the newest commit" \
    grep -q 'warning: timeline 2, which "latest" follows, does not hold the newest archived commit: .* on timeline 1; --target-timeline 1 restores up to it' "$T/plan.err"
is "plan --json: two warnings" 2 "$(jq '.warnings | length' "$T/plan.json")"
ok "plan --json: the leaves warning names --target-timeline 1" grep -q -- "--target-timeline 1" <<<"$(jq -r '.warnings[0]' "$T/plan.json")"
"$PITR" plan --repo "$REPO" --target-latest --target-timeline 1 --json >"$T/plan1.json" 2>"$T/plan1.err"
is "plan --target-timeline 1 exits 0" 0 "$?"
is "an explicit timeline: no warnings" 0 "$(jq '.warnings | length' "$T/plan1.json")"
ok "an explicit timeline: nothing on stderr" test ! -s "$T/plan1.err"
as_pg "$PGBIN/pg_ctl" -D "$T/copy" -m fast -w stop >/dev/null

# --- a restore without --start, started by hand with archiving on: timeline 3 --------
TB=$(pg_sql src "select clock_timestamp()")
sleep 1.1
pg_sql src "insert into t values (1003, 'after TB')"
switch_wal src || exit 1
"$PITR" restore --repo "$REPO" --pgdata "$T/copy2" --target-time "$TB" --target-timeline 1 "${AM[@]}" \
    >"$T/copy2.out" 2>"$T/copy2.err"
is "restore without --start exits 0" 0 "$?"
is "two restores, two records" 2 "$(nrecords "$REPO")"
REC2=$(find "$REPO/restores" -name '*.json' ! -name "$ID.json" | head -1)
ID2=$(basename "$REC2" .json)
is "record 2: state restored (not started)" restored "$(jq -r .state "$REC2")"
is "record 2: no server section" null "$(jq -r .server "$REC2")"
pg_set copy2 "port = 5434"
pg_set copy2 "unix_socket_directories = '$T/copy2'"
pg_set copy2 "archive_mode = on"
pg_set copy2 "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO %p %f'"
pg_start copy2 || exit 1
ok "copy 2 promotes" bash -c "for i in \$(seq 300); do [ \"\$(runuser -u postgres -- '$PGBIN/psql' -XAtq -h '$T/copy2' -p 5434 -U postgres -d postgres -c 'select pg_is_in_recovery()' 2>/dev/null)\" = f ] && exit 0; sleep 0.2; done; exit 1"
ok "its promotion archived 00000003.history" wait_file "$REPO/wal/00000003.history.zst"
"$PITR" info --repo "$REPO" --json >"$T/info3.json" 2>/dev/null
is "info: timeline 3's parent is 1" 1 "$(jq -r '.timelines[] | select(.timeline == 3) | .parent' "$T/info3.json")"
is "info: timeline 3 made by restore 2 (by its fork point)" "$ID2" "$(jq -r '.timelines[] | select(.timeline == 3) | .created_by' "$T/info3.json")"
is "info: timeline 3 is new" true "$(jq -r '.timelines[] | select(.timeline == 3) | .new' "$T/info3.json")"
is "info: timeline 3 has no missing segment" 0 "$(jq -r '.timelines[] | select(.timeline == 3) | .missing_segments' "$T/info3.json")"
is "info --json lists both records" 2 "$(jq '.restores | length' "$T/info3.json")"
"$PITR" plan --repo "$REPO" --target-latest >/dev/null 2>"$T/plan3.err"
ok "plan: three leaf timelines" grep -q 'warning: 3 leaf timelines exist: "latest" follows timeline 3' "$T/plan3.err"
# immediate: a clean shutdown would switch and archive timeline 3's first segment
as_pg "$PGBIN/pg_ctl" -D "$T/copy2" -m immediate -w stop >/dev/null

# --- a repository the restoring user cannot write: restore works, warns --------------
cp -a "$REPO" "$T/repo_ro"
chown -R root: "$T/repo_ro" && chmod -R a+rX,go-w "$T/repo_ro"
as_pg "$PITR" restore --repo "$T/repo_ro" --pgdata "$T/copy3" --target-time "$TA" --target-timeline 1 \
    >"$T/copy3.out" 2>"$T/copy3.err"
is "restore from a read-only repository exits 0" 0 "$?"
ok "it warns that no record was kept" grep -q "warning: could not record this restore in the repository" "$T/copy3.err"
ok "the data directory is restored" test -f "$T/copy3/recovery.signal"
is "no record appeared in it" 2 "$(nrecords "$T/repo_ro")"

# --- an encrypted repository: the record is sealed like every object ------------------
ER=$T/erepo KEY=$T/key
mkdir -p "$ER" && chown postgres: "$ER"
openssl rand -hex 32 >"$KEY" && chown postgres: "$KEY" && chmod 0600 "$KEY"
pg_init enc || exit 1
pg_set enc "port = 5435"
pg_set enc "archive_mode = on"
pg_set enc "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $ER --cipher-key-file $KEY %p %f'"
pg_start enc || exit 1
enc_conn="host=$T/enc port=5435 user=postgres dbname=postgres"
as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$enc_conn" --repo "$ER" --cipher-key-file "$KEY" -c fast \
    >/dev/null 2>"$T/ebb.err" || { cat "$T/ebb.err"; exit 1; }
as_pg "$PGBIN/psql" -XAtq -h "$T/enc" -p 5435 -U postgres -d postgres -c "create table e (x int); select pg_switch_wal()" >/dev/null
for ((i = 0; i < 300; i++)); do [ "$(find "$ER/wal" -name '0*.zst' ! -name '*.backup.zst' | wc -l)" -ge 3 ] && break; sleep 0.2; done
"$PITR" restore --repo "$ER" --cipher-key-file "$KEY" --pgdata "$T/ecopy" --target-latest >/dev/null 2>"$T/ecopy.err"
is "restore from an encrypted repository exits 0" 0 "$?"
EREC=$(find "$ER/restores" -name '*.json' | head -1)
ok "its record is cipher frames" bash -c "head -c 4 '$EREC' | grep -q RGSE"
ok "its record has no readable text" bash -c "! grep -aq ecopy '$EREC'"
"$PITR" info --repo "$ER" --cipher-key-file "$KEY" --json >"$T/einfo.json" 2>/dev/null
is "info with the key reads it" "$(basename "$EREC" .json)" "$(jq -r '.restores[0].id' "$T/einfo.json")"

t_done
