#!/usr/bin/env bash
# 064_rekey_s3.sh -- key rotation (ragsafe-pitr rekey) of an encrypted S3 repository
# (local s3rver behind the SigV4 verifier): real WAL archived with the old key; the
# rekey killed (-9, RAGSAFE_TEST_REKEY_KILL_AFTER) after 2 objects, every segment then
# restorable with the new key (objects of either key); the same command again
# finishes; then every segment restores, byte for byte, with the new key only and the
# old key is refused (128 from ragsafe-restore, 3 from pitr verify).
source "$(dirname "$0")/lib.sh"
t_init

ARCH=$RAGSAFE_BIN/ragsafe-archive
REST=$RAGSAFE_BIN/ragsafe-restore
PITR=$RAGSAFE_BIN/ragsafe-pitr
BUCKET=ragsafe
s3_start "$BUCKET"
REPO=s3://$BUCKET/rk

openssl rand -hex 32 >"$T/old"
openssl rand -hex 32 >"$T/new"
chown postgres: "$T/old" "$T/new"
chmod 0600 "$T/old" "$T/new"

pg_init a || exit 1
mkdir -p "$T/segs" && chown postgres: "$T/segs"
pg_set a "archive_mode = on"
pg_set a "archive_command = 'cp %p $T/segs/%f'"
pg_start a || exit 1
as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -i -s 1 -q postgres >/dev/null 2>&1
for i in 1 2 3; do
    as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -n -t 150 postgres >/dev/null 2>&1
    pg_sql a "select pg_switch_wal()" >/dev/null
done
last=$(pg_sql a "select pg_walfile_name(pg_switch_wal())")
pg_wait_for a "select last_archived_wal >= '$last' from pg_stat_archiver" t 60 || exit 1
pg_stop a
mapfile -t SEGS < <(cd "$T/segs" && ls | grep -E '^[0-9A-F]{24}$' | sort)
ok "at least 4 segments" [ "${#SEGS[@]}" -ge 4 ]
chmod -R a+rX "$T/segs"
arch() { (cd "$T" && as_pg "$ARCH" --repo "$REPO" "$@"); }
rest() { (cd "$T" && as_pg "$REST" --repo "$REPO" --prefetch 0 "$@"); }
restore_all() { # KEY: 0 when every segment restores byte for byte
    local s
    for s in "${SEGS[@]}"; do
        rm -f "$T/out"
        rest --cipher-key-file "$1" "$s" out 2>/dev/null || return 1
        cmp -s "$T/out" "$T/segs/$s" || return 1
    done
}
n=0
for s in "${SEGS[@]}"; do arch --cipher-key-file "$T/old" "$T/segs/$s" "$s" && n=$((n + 1)); done
is "every segment archived with the old key" "${#SEGS[@]}" "$n"

(cd "$T" && as_pg env RAGSAFE_TEST_REKEY_KILL_AFTER=2 "$PITR" rekey --repo "$REPO" --cipher-key-file "$T/old" \
    --new-cipher-key-file "$T/new" >/dev/null 2>"$T/k.err")
is "rekey killed by the test hook after 2 objects (exit 137)" 137 "$?"
ok "mid-rotation: every segment restores with the new key (objects of either key)" restore_all "$T/new"
exit_is "mid-rotation: pitr verify with the new key: exit 0" 0 \
    bash -c "cd '$T' && runuser -u postgres -- '$PITR' verify --repo '$REPO' --cipher-key-file '$T/new' >/dev/null"
(cd "$T" && as_pg "$PITR" rekey --repo "$REPO" --cipher-key-file "$T/old" --new-cipher-key-file "$T/new" >"$T/r.out" 2>"$T/r.err")
is "rerun at once: the killed run's S3 locks still hold it off (exit 1)" 1 "$?"
ok "... saying the repository is locked" grep -q "is locked" "$T/r.err"
# S3 locks of a killed holder expire after S3_LOCK_TTL (600 s): play the expiry by
# removing them (what an operator does once sure nothing else runs)
find "$T/s3/$BUCKET/rk/locks" -type f -name '*.lock*' -delete
ok "... (the lock objects are gone)" bash -c "! find '$T/s3/$BUCKET/rk/locks' -type f -name '*.lock*' | grep -q ."
(cd "$T" && as_pg "$PITR" rekey --repo "$REPO" --cipher-key-file "$T/old" --new-cipher-key-file "$T/new" >"$T/r.out" 2>"$T/r.err")
rc=$?; [ "$rc" = 0 ] || cat "$T/r.err"
is "the same rekey command again, the locks expired: exit 0" 0 "$rc"
ok "... says done" grep -q "rekey: done" "$T/r.out"
ok "every segment restores with the new key, byte for byte" restore_all "$T/new"
rest --cipher-key-file "$T/old" "${SEGS[0]}" out2 2>/dev/null
is "ragsafe-restore with the old key: 128" 128 "$?"
(cd "$T" && as_pg "$PITR" verify --repo "$REPO" --cipher-key-file "$T/old" >/dev/null 2>&1)
is "pitr verify with the old key: exit 3" 3 "$?"
exit_is "pitr verify with the new key: exit 0" 0 \
    bash -c "cd '$T' && runuser -u postgres -- '$PITR' verify --repo '$REPO' --cipher-key-file '$T/new' >/dev/null"
t_done
