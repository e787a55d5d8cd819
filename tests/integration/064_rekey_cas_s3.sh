#!/usr/bin/env bash
# 064_rekey_cas_s3.sh -- key rotation (ragsafe-pitr rekey) of an encrypted S3 repository
# (local s3rver behind the SigV4 verifier) holding a Milvus snapshot and a ragsafe-files
# snapshot sealed with the repository key (no WAL: 064_rekey_s3.sh covers it). Milvus
# cannot run here: the volumes are synthetic Milvus-shaped trees (fake_milvus.py, as in
# 050-052). rekey is killed (-9, RAGSAFE_TEST_REKEY_KILL_AFTER) every 5 objects and run
# again until it finishes (the killed run's S3 locks, which would hold a rerun off for
# 10 minutes, are removed as an operator would); after each kill ragsafe-milvus expire
# and ragsafe-files expire are refused. Then every object is at its new address, both
# snapshots verify and restore exactly with the new key, the old key is refused.
source "$(dirname "$0")/lib.sh"
t_init

MV=$RAGSAFE_BIN/ragsafe-milvus
FL=$RAGSAFE_BIN/ragsafe-files
PITR=$RAGSAFE_BIN/ragsafe-pitr
FAKE=$RAGSAFE_SRC/tests/integration/fake_milvus.py
BUCKET=ragsafe
s3_start "$BUCKET"
REPO=s3://$BUCKET/rk
S3D=$T/s3/$BUCKET/rk
V=$T/vol
P=$T/proj
OLD=$T/old.key
NEW=$T/new.key
openssl rand -hex 32 >"$OLD"
openssl rand -hex 32 >"$NEW"
chmod 0600 "$OLD" "$NEW"
VOLS=(--volume "etcd=$V/etcd" --volume "minio=$V/minio" --volume "milvus=$V/milvus")
to() { echo --volume "etcd=$1/etcd" --volume "minio=$1/minio" --volume "milvus=$1/milvus"; }
tree_of() { python3 "$FAKE" tree "$1"; }
# the objects below a prefix, by key (s3rver keeps each object as a file of that name)
objs() { (cd "$S3D" && find "$1" -type f -name '*.zst*' | grep -v metadata | sort); }

python3 "$FAKE" gen "$V" --mb 2 --seed 11
for v in etcd minio milvus; do tree_of "$V/$v" >"$T/m1.$v"; done
exit_is "Milvus snapshot m1 into S3 (old key)" 0 "$MV" snapshot --repo "$REPO" --cipher-key-file "$OLD" \
    "${VOLS[@]}" --assume-stopped --label m1
mkdir -p "$P/logs"
printf 'SECRET=hunter2\n' >"$P/.env"
head -c 100000 /dev/urandom >"$P/logs/app.log"
exit_is "ragsafe-files snapshot f1 into S3 (the repository's old key)" 0 "$FL" snapshot --repo "$REPO" \
    --cipher-key-file "$OLD" --base "$P" --label f1 .env logs
objs milvus/objects >"$T/mv.before"
objs files/objects >"$T/fl.before"
nmv=$(wc -l <"$T/mv.before")
nfl=$(wc -l <"$T/fl.before")
ok "Milvus objects to move ($nmv)" [ "$nmv" -gt 10 ]
ok "ragsafe-files objects to move ($nfl)" [ "$nfl" -ge 2 ]

rc=0 kills=0 refused=0
for i in $(seq 1 100); do
    env RAGSAFE_TEST_REKEY_KILL_AFTER=5 "$PITR" rekey --repo "$REPO" --cipher-key-file "$OLD" \
        --new-cipher-key-file "$NEW" >"$T/k.out" 2>"$T/k.err"
    rc=$?
    [ "$rc" = 137 ] || break
    kills=$((kills + 1))
    # the killed run's locks expire after 10 minutes: play the expiry
    find "$S3D/locks" -type f -name '*.lock*' -delete
    "$MV" expire --repo "$REPO" --cipher-key-file "$NEW" --keep-last 1 >/dev/null 2>"$T/e.err" ; e1=$?
    "$FL" expire --repo "$REPO" --cipher-key-file "$NEW" --keep-last 1 >/dev/null 2>"$T/e2.err"; e2=$?
    [ "$e1" = 1 ] && [ "$e2" = 1 ] && grep -q "being re-keyed" "$T/e.err" && refused=$((refused + 1))
done
[ "$rc" = 0 ] || cat "$T/k.err"
is "rekey, killed and run again, finishes: exit 0" 0 "$rc"
ok "... after several kills ($kills)" [ "$kills" -ge 3 ]
is "after every kill the sweeps were refused" "$kills" "$refused"
objs milvus/objects >"$T/mv.after"
objs files/objects >"$T/fl.after"
is "as many Milvus objects as before" "$nmv" "$(wc -l <"$T/mv.after")"
is "... none left at its old address" 0 "$(comm -12 "$T/mv.before" "$T/mv.after" | wc -l)"
is "as many ragsafe-files objects as before" "$nfl" "$(wc -l <"$T/fl.after")"
is "... none left at its old address" 0 "$(comm -12 "$T/fl.before" "$T/fl.after" | wc -l)"

exit_is "ragsafe-milvus verify with the new key: exit 0" 0 "$MV" verify --repo "$REPO" --cipher-key-file "$NEW"
exit_is "ragsafe-milvus verify with the old key: exit 3" 3 "$MV" verify --repo "$REPO" --cipher-key-file "$OLD"
exit_is "ragsafe-files verify with the new key: exit 0" 0 "$FL" verify --repo "$REPO" --cipher-key-file "$NEW"
exit_is "ragsafe-files verify with the old key: exit 3" 3 "$FL" verify --repo "$REPO" --cipher-key-file "$OLD"
"$MV" restore m1 --repo "$REPO" --cipher-key-file "$NEW" $(to "$T/out") --assume-stopped >/dev/null 2>"$T/mr.err"
rc=$?; [ "$rc" = 0 ] || cat "$T/mr.err"
is "ragsafe-milvus restore with the new key: exit 0" 0 "$rc"
for v in etcd minio milvus; do
    ok "... volume $v exactly as snapshotted" cmp -s "$T/m1.$v" <(tree_of "$T/out/$v")
done
exit_is "ragsafe-files restore with the new key: exit 0" 0 \
    "$FL" restore f1 --repo "$REPO" --cipher-key-file "$NEW" --target "$T/fout"
ok "... contents as snapshotted" diff -r --no-dereference "$P" "$T/fout"
t_done
