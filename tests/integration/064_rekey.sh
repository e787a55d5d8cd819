#!/usr/bin/env bash
# 064_rekey.sh -- key rotation (ragsafe-pitr rekey) of an encrypted local repository
# filled by a real cluster (pgbench WAL, a base backup): the rekey is killed (-9, by
# the RAGSAFE_TEST_REKEY_KILL_AFTER hook) after a few objects; at that point every
# object opens with the old or the new key (verify with the new key reads them all),
# the archiver (still holding the old key) keeps archiving; the same command run again
# finishes; then everything verifies under the new key only, the old key is refused
# (exit 3), a PITR restore and ragsafe-restore work with the new key. A repository
# holding Milvus snapshots is re-keyed too (064_rekey_cas.sh in full).
source "$(dirname "$0")/lib.sh"
t_init

R=$T/repo
OLD=$T/old.key
NEW=$T/new.key
BB=$RAGSAFE_BIN/ragsafe-basebackup
PITR=$RAGSAFE_BIN/ragsafe-pitr
REST=$RAGSAFE_BIN/ragsafe-restore
MV=$RAGSAFE_BIN/ragsafe-milvus
FAKE=$RAGSAFE_SRC/tests/integration/fake_milvus.py

mkdir -p "$R" && chown postgres: "$R"
openssl rand -hex 32 >"$OLD"
openssl rand -hex 32 >"$NEW"
chown postgres: "$OLD" "$NEW"
chmod 0600 "$OLD" "$NEW"
state() { pg_sql "$1" "select count(*) || ':' || coalesce(sum(id), 0) from t"; }
objsums() { (cd "$R" && find wal backups -type f | sort | xargs md5sum); }

pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $R --cipher-key-file $OLD %p %f'"
pg_start src || exit 1
pg_sql src "create table t (id int primary key, v text)" || exit 1
pg_sql src "insert into t select g, md5(g::text) from generate_series(1, 100) g"
as_pg "$PGBIN/pgbench" -h "$T/src" -p 5432 -U postgres -i -s 2 -q postgres >/dev/null 2>&1
label=$(as_pg "$BB" -d "$(pg_conn src)" --repo "$R" --cipher-key-file "$OLD" -c fast 2>"$T/bb.err")
[ -n "$label" ] || { cat "$T/bb.err"; fail "base backup"; t_done; exit 1; }
as_pg "$PGBIN/pgbench" -h "$T/src" -p 5432 -U postgres -T 3 -c 2 postgres >/dev/null 2>&1
# a few more segments whatever the load (pgbench -T makes little WAL on a busy machine)
pg_sql src "create table pad (x int)"
for i in 1 2 3 4 5 6; do
    pg_sql src "insert into pad values ($i)"
    switch_wal src || fail "padding segment $i archived"
done
sleep 1.1
pg_sql src "insert into t select g, 'm1' from generate_series(1000, 1009) g"
M1=$(pg_sql src "select clock_timestamp()")
C1=$(state src)
sleep 1.1
pg_sql src "insert into t select g, 'm2' from generate_series(2000, 2009) g"
switch_wal src || fail "the last segment archived"
nobj=$(cd "$R" && find wal backups -type f | wc -l)
ok "a repository to rotate ($nobj objects)" [ "$nobj" -gt 8 ]
objsums >"$T/sums.before"
cp "$R/repo.json" "$T/repo.json.before"

"$PITR" rekey --repo "$R" --cipher-key-file "$OLD" --new-cipher-key-file "$NEW" >/dev/null 2>"$T/root.err"
is "rekey as root of a repository postgres owns: exit 2" 2 "$?"
ok "... says to run it as the owner" grep -q "run rekey as its owner" "$T/root.err"
is "... nothing changed" "$(cat "$T/repo.json.before")" "$(cat "$R/repo.json")"

# --- killed halfway ----------------------------------------------------------------------
as_pg env RAGSAFE_TEST_REKEY_KILL_AFTER=3 "$PITR" rekey --repo "$R" --cipher-key-file "$OLD" \
    --new-cipher-key-file "$NEW" >"$T/k.out" 2>"$T/k.err"
is "rekey killed by the test hook after 3 objects (exit 137)" 137 "$?"
ok "... repo.json records the rotation in progress" grep -q '"rotation"' "$R/repo.json"
ok "... and no key in the clear (only the old key sealed under the new)" \
    bash -c "! grep -q '$(cat "$OLD")' '$R/repo.json' && ! grep -q '$(cat "$NEW")' '$R/repo.json'"
objsums >"$T/sums.mid"
changed=$(diff "$T/sums.before" "$T/sums.mid" | grep -c '^>')
is "exactly 3 objects re-sealed at the kill" 3 "$changed"
ok "no object lost or added at the kill" \
    bash -c "diff <(awk '{print \$2}' '$T/sums.before') <(awk '{print \$2}' '$T/sums.mid')"
exit_is "mid-rotation: pitr verify with the new key reads every object (old or new key): exit 0" 0 \
    as_pg "$PITR" verify --repo "$R" --cipher-key-file "$NEW"
exit_is "mid-rotation: the base backup verifies with the new key" 0 \
    "$BB" --repo "$R" --cipher-key-file "$NEW" --verify "$label"
# the archiver still has the old key: it keeps archiving during the rotation
pg_sql src "insert into t select g, 'm3' from generate_series(3000, 3009) g"
ok "mid-rotation: archiving with the old key goes on" switch_wal src

# --- rerun: finishes -----------------------------------------------------------------------
as_pg "$PITR" rekey --repo "$R" --cipher-key-file "$OLD" --new-cipher-key-file "$NEW" >"$T/r.out" 2>"$T/r.err"
is "the same rekey command again: exit 0" 0 "$?"
ok "... says done" grep -q "rekey: done" "$T/r.out"
ok "repo.json: rotation finished" bash -c "! grep -q '\"rotation\"' '$R/repo.json'"
ok "repo.json: the key check changed" bash -c "! cmp -s <(grep key_check '$T/repo.json.before') <(grep key_check '$R/repo.json')"
objsums >"$T/sums.after"
is "every object re-sealed (none left as it was)" 0 \
    "$(comm -12 <(sort "$T/sums.before") <(sort "$T/sums.after") | wc -l)"
exit_is "pitr verify with the new key: exit 0" 0 as_pg "$PITR" verify --repo "$R" --cipher-key-file "$NEW"
as_pg "$PITR" verify --repo "$R" --cipher-key-file "$OLD" >/dev/null 2>"$T/vo.err"
is "pitr verify with the old key: exit 3" 3 "$?"
ok "... says wrong key" grep -q "wrong key" "$T/vo.err"
exit_is "base backup --verify with the new key: exit 0" 0 as_pg "$BB" --repo "$R" --cipher-key-file "$NEW" --verify "$label"
as_pg "$PITR" rekey --repo "$R" --cipher-key-file "$OLD" --new-cipher-key-file "$NEW" >"$T/r2.out" 2>&1
is "rekey once more (finished rotation): exit 0" 0 "$?"
ok "... re-seals nothing" grep -q "done: 0 object" "$T/r2.out"

# the archiver with the old key is now refused; switched to the new key it catches up
pg_sql src "insert into t select g, 'm4' from generate_series(4000, 4009) g"
seg=$(pg_sql src "select pg_walfile_name(pg_current_wal_insert_lsn())")
pg_sql src "select pg_switch_wal()" >/dev/null
# (no fixed sleep: the wait below ends on the archiver's failure for this segment)
ok "... PostgreSQL tried (a failure in pg_stat_archiver)" \
    pg_wait_for src "select failed_count > 0 and last_failed_wal >= '$seg' from pg_stat_archiver" t 30
is "after the rotation the old key's archiver fails (PostgreSQL keeps the WAL)" f \
    "$(pg_sql src "select last_archived_wal >= '$seg' from pg_stat_archiver")"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $R --cipher-key-file $NEW %p %f'"
pg_sql src "select pg_reload_conf()" >/dev/null
ok "with the new key file in archive_command it catches up" \
    pg_wait_for src "select last_archived_wal >= '$seg' from pg_stat_archiver" t 60
exit_is "pitr verify with the new key after more archiving: exit 0" 0 \
    as_pg "$PITR" verify --repo "$R" --cipher-key-file "$NEW"

# --- restores with the new key ------------------------------------------------------------
first=$(cd "$R/wal" && find . -name '0*[0-9A-F].zst' | sort | head -1 | xargs basename | sed 's/\.zst$//')
mkdir -p "$T/rd" && chown postgres: "$T/rd"
(cd "$T/rd" && as_pg "$REST" --repo "$R" --cipher-key-file "$NEW" --prefetch 0 "$first" "$T/rd/seg") 2>"$T/rd.err"
is "ragsafe-restore with the new key serves $first: exit 0" 0 "$?"
is "... a whole segment" 16777216 "$(stat -c %s "$T/rd/seg" 2>/dev/null)"
(cd "$T/rd" && as_pg "$REST" --repo "$R" --cipher-key-file "$OLD" --prefetch 0 "$first" "$T/rd/seg2") 2>/dev/null
ok "ragsafe-restore with the old key: refused (exit $?)" [ ! -e "$T/rd/seg2" ]
"$PITR" restore --repo "$R" --cipher-key-file "$NEW" --pgdata "$T/r1" --target-time "$M1" \
    --owner postgres >"$T/r1.out" 2>"$T/r1.err"
is "pitr restore with the new key: exit 0" 0 "$?"
rm -f "$T/r1"/.s.PGSQL.*
pg_set r1 "unix_socket_directories = '$T/r1'"
pg_set r1 "archive_mode = off"
if pg_start r1 && pg_wait_for r1 "select pg_is_in_recovery()" f 120; then
    is "recovered exactly to the target" "$C1" "$(state r1)"
    is "pgbench's tables came back" 200000 "$(pg_sql r1 'select count(*) from pgbench_accounts')"
else
    fail "the restored cluster recovers from the re-keyed repository"; tail -20 "$T/r1.log"
fi
pg_stop r1 >/dev/null 2>&1

# --- refusals -----------------------------------------------------------------------------
as_pg "$PITR" rekey --repo "$R" --cipher-key-file "$NEW" --new-cipher-key-file "$NEW" >/dev/null 2>"$T/same.err"
ok "rekey to the same key: refused (exit $?)" grep -q "the same key" "$T/same.err"
R2=$T/repo2
mkdir "$R2"   # root's: the Milvus snapshot and the rekey below run as root
V=$T/vol
python3 "$FAKE" gen "$V" --mb 1 --seed 5
"$MV" snapshot --repo "$R2" --cipher-key-file "$OLD" --volume "etcd=$V/etcd" --volume "minio=$V/minio" \
    --volume "milvus=$V/milvus" --assume-stopped --label m1 >/dev/null 2>&1
ok "a Milvus snapshot in an encrypted repository" [ -e "$R2/milvus/snapshots" ]
"$PITR" rekey --repo "$R2" --cipher-key-file "$OLD" --new-cipher-key-file "$NEW" >/dev/null 2>"$T/mv.err"
is "rekey of a repository holding Milvus snapshots: exit 0 (064_rekey_cas tests them fully)" 0 "$?"
exit_is "... the snapshot verifies with the new key" 0 "$MV" verify --repo "$R2" --cipher-key-file "$NEW"

t_done
