#!/usr/bin/env bash
# 064_rekey_cas.sh -- key rotation (ragsafe-pitr rekey) of an encrypted local repository
# that holds, besides real WAL (pgbench) and a base backup, content-addressed objects:
# two Milvus snapshots and two ragsafe-files snapshots sealed with the repository key.
# Milvus itself cannot run on these machines: its volumes are synthetic Milvus-shaped
# trees (fake_milvus.py gen/grow, as in 050-052), snapshotted with --assume-stopped.
# Their objects are addressed by HMAC(key, sha256): rekey moves each one to its new
# address. The rekey is killed (-9, RAGSAFE_TEST_REKEY_KILL_AFTER) every few objects
# and run again until it finishes (kills land in every phase, and in the content-
# addressed phase always between the new copy and the removal of the old one: one such
# new copy is damaged, and the rerun writes it again instead of trusting it); after
# each kill ragsafe-milvus and ragsafe-files expire (the sweeps) are refused and delete
# nothing. Then: every object moved (no old address left, none lost), everything
# verifies under the new key only (pitr verify, base backup, ragsafe-milvus verify,
# ragsafe-files verify), restores byte-identical with it (every WAL segment, both Milvus
# snapshots, both ragsafe-files snapshots), the old key is refused; the sweeps work again.
# A second repository whose ragsafe-files snapshots use ragsafe-files' own key: rekey
# leaves files/ alone and it still restores with that key.
source "$(dirname "$0")/lib.sh"
t_init

R=$T/repo
OLD=$T/old.key
NEW=$T/new.key
BB=$RAGSAFE_BIN/ragsafe-basebackup
PITR=$RAGSAFE_BIN/ragsafe-pitr
REST=$RAGSAFE_BIN/ragsafe-restore
MV=$RAGSAFE_BIN/ragsafe-milvus
FL=$RAGSAFE_BIN/ragsafe-files
FAKE=$RAGSAFE_SRC/tests/integration/fake_milvus.py
V=$T/vol
P=$T/proj
VOLS=(--volume "etcd=$V/etcd" --volume "minio=$V/minio" --volume "milvus=$V/milvus")
to() { echo --volume "etcd=$1/etcd" --volume "minio=$1/minio" --volume "milvus=$1/milvus"; }
tree_of() { python3 "$FAKE" tree "$1"; }
ftree() { (cd "$1" && find . -mindepth 1 -printf '%p %y %m %U:%G %T@ %l\n' | sort); }
rekey() { as_pg "$PITR" rekey --repo "$R" --cipher-key-file "$OLD" --new-cipher-key-file "$NEW" "$@"; }
objs() { (cd "$R" && find "$1" -type f -name '*.zst' | sort); }

mkdir -p "$R" "$T/segs" && chown postgres: "$R" "$T/segs"
openssl rand -hex 32 >"$OLD"
openssl rand -hex 32 >"$NEW"
chown postgres: "$OLD" "$NEW"
chmod 0600 "$OLD" "$NEW"

# --- the repository: WAL, a base backup, Milvus and ragsafe-files snapshots -----------------
pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = 'cp %p $T/segs/%f && $RAGSAFE_BIN/ragsafe-archive --repo $R --cipher-key-file $OLD %p %f'"
pg_start src || exit 1
as_pg "$PGBIN/pgbench" -h "$T/src" -p 5432 -U postgres -i -s 1 -q postgres >/dev/null 2>&1
label=$(as_pg "$BB" -d "$(pg_conn src)" --repo "$R" --cipher-key-file "$OLD" -c fast 2>"$T/bb.err")
[ -n "$label" ] || { cat "$T/bb.err"; fail "base backup"; t_done; exit 1; }
as_pg "$PGBIN/pgbench" -h "$T/src" -p 5432 -U postgres -n -t 300 postgres >/dev/null 2>&1
last=$(pg_sql src "select pg_walfile_name(pg_switch_wal())")
pg_wait_for src "select last_archived_wal >= '$last' from pg_stat_archiver" t 60 || fail "WAL archived"
pg_stop src

python3 "$FAKE" gen "$V" --mb 8 --seed 7
tree_of "$V/etcd" >"$T/m1.etcd"; tree_of "$V/minio" >"$T/m1.minio"; tree_of "$V/milvus" >"$T/m1.milvus"
exit_is "Milvus snapshot m1 (old key)" 0 "$MV" snapshot --repo "$R" --cipher-key-file "$OLD" "${VOLS[@]}" \
    --assume-stopped --label m1
python3 "$FAKE" grow "$V" --percent 10 --seed 8 >/dev/null
tree_of "$V/etcd" >"$T/m2.etcd"; tree_of "$V/minio" >"$T/m2.minio"; tree_of "$V/milvus" >"$T/m2.milvus"
exit_is "Milvus snapshot m2 (old key)" 0 "$MV" snapshot --repo "$R" --cipher-key-file "$OLD" "${VOLS[@]}" \
    --assume-stopped --label m2

mkdir -p "$P/backend" "$P/logs"
printf 'DATABASE_URL=postgresql://rag:hunter2@db/rag\n' >"$P/.env"; chmod 0600 "$P/.env"
printf '[alembic]\nscript_location = migrations\n' >"$P/backend/alembic.ini"
head -c 300000 /dev/urandom >"$P/logs/app.log"
cp "$P/logs/app.log" "$P/logs/app.log.1"
ln -s app.log "$P/logs/current.log"
exit_is "ragsafe-files snapshot f1 (the repository's old key)" 0 "$FL" snapshot --repo "$R" \
    --cipher-key-file "$OLD" --base "$P" --label f1 .env backend logs
cp -a "$P" "$T/proj.f1"
printf 'DATABASE_URL=postgresql://rag:hunter3@db/rag\n' >"$P/.env"
head -c 1000 /dev/urandom >>"$P/logs/app.log"
exit_is "ragsafe-files snapshot f2" 0 "$FL" snapshot --repo "$R" --cipher-key-file "$OLD" --base "$P" \
    --label f2 .env backend logs
cp -a "$P" "$T/proj.f2"
chown -R postgres: "$R" # rekey runs as the repository's owner

objs milvus/objects >"$T/mv.before"
objs files/objects >"$T/fl.before"
nmv=$(wc -l <"$T/mv.before")
nfl=$(wc -l <"$T/fl.before")
ok "Milvus objects to move ($nmv)" [ "$nmv" -gt 20 ]
ok "ragsafe-files objects to move ($nfl)" [ "$nfl" -ge 4 ]
cp "$R/files/snapshots/f1.json" "$T/f1.manifest.before"

# --- rotate, killed every 7 objects, until it finishes ---------------------------------------
rc=0 kills=0 sweep_refused=0 sweep_bad=0 lost=0 damaged=
touch "$T/mark"
for i in $(seq 1 100); do
    as_pg env RAGSAFE_TEST_REKEY_KILL_AFTER=7 "$PITR" rekey --repo "$R" --cipher-key-file "$OLD" \
        --new-cipher-key-file "$NEW" >"$T/k.out" 2>"$T/k.err"
    rc=$?
    cat "$T/k.err" >>"$T/all.err"
    [ "$rc" = 137 ] || break
    kills=$((kills + 1))
    # the first kill among Milvus objects leaves the newest one (a new copy) beside its
    # old copy: damage it in the middle (its last frame still opens with the new key)
    newest=$(cd "$R" && find milvus/objects -type f -newer "$T/mark" -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)
    if [ -z "$damaged" ] && [ -n "$newest" ]; then
        damaged=$newest
        python3 -c 'import os, sys
p = sys.argv[1]; f = open(p, "r+b"); f.seek(os.path.getsize(p) // 3); b = f.read(1)
f.seek(os.path.getsize(p) // 3); f.write(bytes([b[0] ^ 1]))' "$R/$damaged"
    fi
    # the sweeps, with either key, after a killed rekey: refused, nothing deleted
    snap=$(cd "$R" && find milvus files -type f | sort | md5sum)
    for k in "$OLD" "$NEW"; do
        "$MV" expire --repo "$R" --cipher-key-file "$k" --keep-last 1 >/dev/null 2>"$T/e.err"
        e1=$?
        "$FL" expire --repo "$R" --cipher-key-file "$k" --keep-last 1 >/dev/null 2>"$T/e2.err"
        e2=$?
        if [ "$e1" = 1 ] && [ "$e2" = 1 ] && grep -q "being re-keyed" "$T/e.err" && grep -q "being re-keyed" "$T/e2.err"; then
            sweep_refused=$((sweep_refused + 1))
        else
            sweep_bad=$((sweep_bad + 1)); echo "# kill $kills key $k: expire $e1/$e2"; cat "$T/e.err" "$T/e2.err"
        fi
    done
    [ "$snap" = "$(cd "$R" && find milvus files -type f | sort | md5sum)" ] || lost=$((lost + 1))
    # no content lost: every Milvus object is at its old or its new address (or both)
    [ "$(objs milvus/objects | wc -l)" -ge "$nmv" ] || lost=$((lost + 1))
done
[ "$rc" = 0 ] || cat "$T/k.err"
is "rekey, killed and run again, finishes: exit 0" 0 "$rc"
ok "... after several kills ($kills)" [ "$kills" -ge 5 ]
ok "... says done" grep -q "rekey: done" "$T/k.out"
is "after every kill both sweeps were refused, with either key" $((2 * kills)) "$sweep_refused"
is "... and none ran" 0 "$sweep_bad"
is "... and nothing under milvus/ or files/ was deleted by them, no object lost" 0 "$lost"
ok "repo.json: rotation finished" bash -c "! grep -q '\"rotation\"' '$R/repo.json'"
ok "a kill among the Milvus objects left a new copy beside its old one ($damaged)" [ -n "$damaged" ]
ok "... that new copy, damaged, was written again from the old one before the old one went" \
    grep -q "\"${damaged}\" is damaged: written again" "$T/all.err"

# --- every object at its new address, none left at the old one, none lost ---------------------
objs milvus/objects >"$T/mv.after"
objs files/objects >"$T/fl.after"
is "as many Milvus objects as before" "$nmv" "$(wc -l <"$T/mv.after")"
is "... none left at its old address" 0 "$(comm -12 "$T/mv.before" "$T/mv.after" | wc -l)"
is "as many ragsafe-files objects as before" "$nfl" "$(wc -l <"$T/fl.after")"
is "... none left at its old address" 0 "$(comm -12 "$T/fl.before" "$T/fl.after" | wc -l)"
ok "the ragsafe-files manifest was rewritten" bash -c "! cmp -s '$T/f1.manifest.before' '$R/files/snapshots/f1.json'"

# --- verifies under the new key only --------------------------------------------------------
exit_is "pitr verify with the new key: exit 0" 0 as_pg "$PITR" verify --repo "$R" --cipher-key-file "$NEW"
exit_is "pitr verify with the old key: exit 3" 3 as_pg "$PITR" verify --repo "$R" --cipher-key-file "$OLD"
exit_is "base backup --verify with the new key: exit 0" 0 as_pg "$BB" --repo "$R" --cipher-key-file "$NEW" --verify "$label"
"$MV" verify --repo "$R" --cipher-key-file "$NEW" >"$T/mv.out" 2>"$T/mv.err"
is "ragsafe-milvus verify with the new key: exit 0" 0 "$?"
ok "... checked every object" grep -q "$nmv object" "$T/mv.out"
exit_is "ragsafe-milvus verify with the old key: exit 3" 3 "$MV" verify --repo "$R" --cipher-key-file "$OLD"
exit_is "ragsafe-files verify with the new key: exit 0" 0 "$FL" verify --repo "$R" --cipher-key-file "$NEW"
exit_is "ragsafe-files verify with the old key: exit 3" 3 "$FL" verify --repo "$R" --cipher-key-file "$OLD"

# --- restores byte-identical with the new key -------------------------------------------------
mkdir -p "$T/rd" && chown postgres: "$T/rd"
nseg=0 segbad=0
for s in $(cd "$T/segs" && ls | grep -E '^[0-9A-F]{24}$'); do
    rm -f "$T/rd/seg"
    (cd "$T/rd" && as_pg "$REST" --repo "$R" --cipher-key-file "$NEW" --prefetch 0 "$s" "$T/rd/seg") 2>/dev/null
    cmp -s "$T/rd/seg" "$T/segs/$s" || segbad=$((segbad + 1))
    nseg=$((nseg + 1))
done
ok "WAL segments archived ($nseg)" [ "$nseg" -ge 2 ]
is "every segment restores byte for byte with the new key" 0 "$segbad"
(cd "$T/rd" && as_pg "$REST" --repo "$R" --cipher-key-file "$OLD" --prefetch 0 "$s" "$T/rd/seg2") 2>/dev/null
is "ragsafe-restore with the old key: 128" 128 "$?"
for m in m1 m2; do
    "$MV" restore "$m" --repo "$R" --cipher-key-file "$NEW" $(to "$T/out.$m") --assume-stopped >/dev/null 2>"$T/mr.err"
    rc=$?; [ "$rc" = 0 ] || cat "$T/mr.err"
    is "ragsafe-milvus restore $m with the new key: exit 0" 0 "$rc"
    for v in etcd minio milvus; do
        tree_of "$T/out.$m/$v" >"$T/got.$m.$v"
        ok "... volume $v exactly as snapshotted" cmp -s "$T/$m.$v" "$T/got.$m.$v"
    done
done
"$MV" restore m1 --repo "$R" --cipher-key-file "$OLD" $(to "$T/out.old") --assume-stopped >/dev/null 2>&1
is "ragsafe-milvus restore with the old key: exit 3" 3 "$?"
for f in f1 f2; do
    exit_is "ragsafe-files restore $f with the new key: exit 0" 0 \
        "$FL" restore "$f" --repo "$R" --cipher-key-file "$NEW" --target "$T/fout.$f"
    ok "... contents as snapshotted" diff -r --no-dereference "$T/proj.$f" "$T/fout.$f"
    is "... modes, owners, times, links as snapshotted" "$(ftree "$T/proj.$f")" "$(ftree "$T/fout.$f")"
done
exit_is "ragsafe-files restore with the old key: exit 3" 3 \
    "$FL" restore f1 --repo "$R" --cipher-key-file "$OLD" --target "$T/fout.old"

# --- the sweeps work again, with the new key --------------------------------------------------
exit_is "ragsafe-milvus expire --keep-last 1 with the new key: exit 0" 0 \
    "$MV" expire --repo "$R" --cipher-key-file "$NEW" --keep-last 1
exit_is "... m2 still verifies" 0 "$MV" verify m2 --repo "$R" --cipher-key-file "$NEW"
exit_is "ragsafe-files expire --keep-last 1 with the new key: exit 0" 0 \
    "$FL" expire --repo "$R" --cipher-key-file "$NEW" --keep-last 1
exit_is "... f2 still verifies" 0 "$FL" verify --repo "$R" --cipher-key-file "$NEW"
chown -R postgres: "$R" # the restores above ran as root (milvus/journal/)
rekey >"$T/r2.out" 2>&1
rc=$?; [ "$rc" = 0 ] || cat "$T/r2.out"
is "rekey once more (finished rotation): exit 0" 0 "$rc"
ok "... re-seals nothing" grep -q "done: 0 object" "$T/r2.out"

# --- ragsafe-files with its own key: left alone -----------------------------------------------
R2=$T/repo2
mkdir "$R2"
FK=$T/files.key
"$FL" keygen "$FK" >/dev/null
"$MV" snapshot --repo "$R2" --cipher-key-file "$OLD" "${VOLS[@]}" --assume-stopped --label m1 >/dev/null 2>&1
"$FL" snapshot --repo "$R2" --cipher-key-file "$FK" --base "$P" --label own .env backend logs >/dev/null
chown -R postgres: "$R2"
sum2=$(cd "$R2" && find files -type f | sort | xargs md5sum)
as_pg "$PITR" rekey --repo "$R2" --cipher-key-file "$OLD" --new-cipher-key-file "$NEW" >"$T/o.out" 2>"$T/o.err"
is "rekey of a repository whose ragsafe-files key is its own: exit 0" 0 "$?"
ok "... says files/ is left as it is" grep -q "ragsafe-files' own key" "$T/o.err"
is "... files/ untouched" "$sum2" "$(cd "$R2" && find files -type f | sort | xargs md5sum)"
exit_is "... ragsafe-files verify with its own key: exit 0" 0 "$FL" verify --repo "$R2" --cipher-key-file "$FK"
exit_is "... ragsafe-milvus verify with the new key: exit 0" 0 "$MV" verify --repo "$R2" --cipher-key-file "$NEW"

# --- a damaged new copy of a multi-frame object, left beside its old copy by a kill ----------
# one Milvus file of 3 MiB (random: one object of several 1 MiB cipher frames); the kill
# after 2 objects (the manifest, then the object's new copy) leaves both copies; the
# new copy is damaged in its first frame (its last frame still opens with the new key):
# the rerun must not trust it and remove the only good copy
R3=$T/repo3
mkdir "$R3"
mkdir -p "$T/vol3/etcd"
head -c $((3 << 20)) /dev/urandom >"$T/vol3/etcd/db"
"$MV" snapshot --repo "$R3" --cipher-key-file "$OLD" --volume "etcd=$T/vol3/etcd" --assume-stopped \
    --label big >/dev/null 2>&1
old3=$(cd "$R3" && find milvus/objects -type f)
env RAGSAFE_TEST_REKEY_KILL_AFTER=2 "$PITR" rekey --repo "$R3" --cipher-key-file "$OLD" \
    --new-cipher-key-file "$NEW" >/dev/null 2>&1
is "big object: rekey killed after the new copy (exit 137)" 137 "$?"
new3=$(cd "$R3" && find milvus/objects -type f | grep -vxF "$old3")
ok "... both copies there" bash -c "[ -f '$R3/$old3' ] && [ -f '$R3/$new3' ]"
ok "... the new copy spans several frames" [ "$(stat -c %s "$R3/$new3")" -gt $((2 << 20)) ]
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(1000); b = f.read(1); f.seek(1000); f.write(bytes([b[0] ^ 1]))' "$R3/$new3"
"$PITR" rekey --repo "$R3" --cipher-key-file "$OLD" --new-cipher-key-file "$NEW" >/dev/null 2>"$T/big.err"
is "big object: the rerun finishes (exit 0)" 0 "$?"
ok "... it wrote the damaged new copy again" grep -q "is damaged: written again" "$T/big.err"
exit_is "... the snapshot verifies with the new key" 0 "$MV" verify --repo "$R3" --cipher-key-file "$NEW"
"$MV" restore big --repo "$R3" --cipher-key-file "$NEW" --volume "etcd=$T/out3" --assume-stopped >/dev/null 2>&1
ok "... and restores byte for byte" cmp -s "$T/vol3/etcd/db" "$T/out3/db"

t_done
