#!/usr/bin/env bash
# 061_cipher_repo.sh -- an encrypted local repository end to end (--cipher-key-file on
# every tool): WAL archived by a real cluster, a base backup, a PITR restore whose
# restore_command carries the key file, and Milvus-shaped volumes (synthetic files;
# Milvus itself cannot run here) in the same repository. Checks that every stored
# object is AES-256-GCM frames (stock zstd cannot read any of it), that a content
# address reveals no plaintext digest while identical content is still stored once,
# that every tool refuses to run without the key or with another one (and writes
# nothing), and that a tampered base backup fails its verification.
source "$(dirname "$0")/lib.sh"
t_init

R=$T/repo
KEY=$T/key
BB=$RAGSAFE_BIN/ragsafe-basebackup
PITR=$RAGSAFE_BIN/ragsafe-pitr
MV=$RAGSAFE_BIN/ragsafe-milvus
FAKE=$RAGSAFE_SRC/tests/integration/fake_milvus.py

mkdir -p "$R" && chown postgres: "$R"
openssl rand -hex 32 >"$KEY"
openssl rand -hex 32 >"$T/wrong"
chown postgres: "$KEY" "$T/wrong"
chmod 0600 "$KEY" "$T/wrong"
state() { pg_sql "$1" "select count(*) || ':' || coalesce(sum(id), 0) from t"; }

pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $R --cipher-key-file $KEY %p %f'"
pg_start src || exit 1
pg_sql src "create table t (id int primary key, v text)" || exit 1
pg_sql src "insert into t select g, md5(g::text) from generate_series(1, 100) g"
as_pg "$PGBIN/pgbench" -h "$T/src" -p 5432 -U postgres -i -s 2 -q postgres >/dev/null 2>&1

# without the key: refused before anything is written
as_pg "$BB" -d "$(pg_conn src)" --repo "$R" -c fast -l nokey >/dev/null 2>"$T/nokey.err"
is "base backup without the key: exit 3" 3 "$?"
ok "... says the repository is encrypted" grep -q "is encrypted and no key was given" "$T/nokey.err"
ok "... nothing written (no backup)" [ ! -e "$R/backups/nokey" ]
ok "... nothing written (no partial backup)" [ ! -e "$R/backups/nokey.partial" ]

label=$(as_pg "$BB" -d "$(pg_conn src)" --repo "$R" --cipher-key-file "$KEY" -c fast 2>"$T/bb.err")
is "base backup with the key: exit 0" 0 "$?"
[ -n "$label" ] || { cat "$T/bb.err"; exit 1; }
B=$R/backups/$label
# the default, chunked format: the chunk manifest and every pack and index are sealed
ok "base.chunks.zst is cipher frames" bash -c "head -c 4 '$B/base.chunks.zst' | grep -q RGSE"
ok "... stock zstd cannot read it" bash -c "! zstd -t -q '$B/base.chunks.zst' 2>/dev/null"
n_plain=$(find "$R/chunks" -type f | while read -r f; do head -c 4 "$f" | grep -q RGSE || echo "$f"; done | wc -l)
is "every chunk pack and index is sealed" "0 yes" "$n_plain $(ls "$R/chunks" | grep -q pack && echo yes)"
ok "backup_manifest is sealed too (no file names readable)" bash -c "! grep -aq PG_VERSION '$B/backup_manifest'"
ok "repo.json stays readable and records the encryption" grep -q aes-256-gcm "$R/repo.json"
n_plain=$(find "$R/wal" -type f -name '*.zst' | while read -r f; do head -c 4 "$f" | grep -q RGSE || echo "$f"; done | wc -l)
is "every archived WAL object is sealed" 0 "$n_plain"
exit_is "--verify with the key: exit 0" 0 "$BB" --repo "$R" --cipher-key-file "$KEY" --verify "$label"
"$BB" --repo "$R" --cipher-key-file "$T/wrong" --verify "$label" 2>"$T/v.err"
is "--verify with another key: exit 3" 3 "$?"
ok "... says wrong key" grep -q "wrong key" "$T/v.err"

sleep 1.1
pg_sql src "insert into t select g, 'm1' from generate_series(1000, 1009) g"
M1=$(pg_sql src "select clock_timestamp()")
C1=$(state src)
sleep 1.1
pg_sql src "insert into t select g, 'm2' from generate_series(2000, 2009) g"
switch_wal src || fail "the last segment archived"

"$PITR" info --repo "$R" >"$T/info.out" 2>"$T/info.err"
is "pitr info without the key: exit 3" 3 "$?"
ok "... says the repository is encrypted" grep -q "is encrypted and no key was given" "$T/info.err"
exit_is "pitr info with the key: exit 0" 0 "$PITR" info --repo "$R" --cipher-key-file "$KEY"
RAGSAFE_CIPHER_KEY_FILE=$KEY "$PITR" plan --repo "$R" --target-time "$M1" >"$T/plan.out" 2>&1
is "pitr plan with the key from RAGSAFE_CIPHER_KEY_FILE: exit 0" 0 "$?"
ok "... names the backup" grep -q "$label" "$T/plan.out"
printf 'repo = %s\ncipher-key-file = %s\n' "$R" "$KEY" >"$T/ragsafe.conf"
exit_is "pitr verify with the key from the config file: exit 0" 0 "$PITR" verify --config "$T/ragsafe.conf"

"$PITR" restore --repo "$R" --cipher-key-file "$KEY" --pgdata "$T/r1" --target-time "$M1" \
    --owner postgres >"$T/r1.out" 2>"$T/r1.err"
is "pitr restore with the key: exit 0" 0 "$?"
ok "restore_command carries the key file (its path, not the key)" \
    grep -q "restore_command = .*--cipher-key-file .*$KEY" "$T/r1/postgresql.auto.conf"
ok "... and not the key itself" bash -c "! grep -q '$(cat "$KEY")' '$T/r1/postgresql.auto.conf'"
ok "... no warning about the key file (postgres can read it)" bash -c "! grep -q 'not readable' '$T/r1.err'"
install -m 0600 -o root "$KEY" "$T/rootkey"
"$PITR" restore --repo "$R" --cipher-key-file "$T/rootkey" --pgdata "$T/r3" --target-latest \
    --owner postgres >/dev/null 2>"$T/r3.err"
ok "a key file postgres cannot read draws a warning naming it" grep -q "rootkey.* is not readable by postgres" "$T/r3.err"
rm -f "$T/r1"/.s.PGSQL.*
pg_set r1 "unix_socket_directories = '$T/r1'"
pg_set r1 "archive_mode = off"
if pg_start r1 && pg_wait_for r1 "select pg_is_in_recovery()" f 120; then
    is "recovered exactly to the time between the commits" "$C1" "$(state r1)"
    is "pgbench's tables came back" 200000 "$(pg_sql r1 'select count(*) from pgbench_accounts')"
else
    fail "the restored cluster recovers from the encrypted repository"; tail -20 "$T/r1.log"
fi
pg_stop r1 >/dev/null 2>&1

# a flipped bit in the base backup (its chunk manifest, then a chunk pack): verify and
# restore refuse it
flip() {
    local sz
    sz=$(stat -c %s "$1")
    printf '\x55' | dd of="$1" bs=1 seek=$((sz / 2)) count=1 conv=notrunc status=none
    cmp -s "$1" "$2" && printf '\xaa' | dd of="$1" bs=1 seek=$((sz / 2)) count=1 conv=notrunc status=none
}
cp "$B/base.chunks.zst" "$T/base.bak"
flip "$B/base.chunks.zst" "$T/base.bak"
"$BB" --repo "$R" --cipher-key-file "$KEY" --verify "$label" >/dev/null 2>"$T/v2.err"
ok "a tampered base backup fails --verify (exit $?)" [ "$?" -ne 0 ]
ok "... saying it does not authenticate" grep -q "wrong key or damaged object" "$T/v2.err"
"$PITR" restore --repo "$R" --cipher-key-file "$KEY" --pgdata "$T/r2" --target-latest >/dev/null 2>&1
ok "... and pitr restore refuses it" [ "$?" -ne 0 ]
cp "$T/base.bak" "$B/base.chunks.zst"
PACK=$(ls -S "$R"/chunks/*.pack | head -1)
cp "$PACK" "$T/pack.bak"
flip "$PACK" "$T/pack.bak"
"$PITR" verify --repo "$R" --cipher-key-file "$KEY" >/dev/null 2>"$T/v3.err"
is "a tampered chunk pack fails pitr verify (exit 3)" 3 "$?"
"$PITR" restore --repo "$R" --cipher-key-file "$KEY" --pgdata "$T/r2" --target-latest >/dev/null 2>&1
is "... and pitr restore refuses it (exit 3)" 3 "$?"
cp "$T/pack.bak" "$PACK"
rm -rf "$T/r2"

# --- Milvus volumes in the same repository ---------------------------------------------
V=$T/vol
python3 "$FAKE" gen "$V" --mb 6 --seed 11
VOLS=(--volume "etcd=$V/etcd" --volume "minio=$V/minio" --volume "milvus=$V/milvus")
"$MV" snapshot --repo "$R" "${VOLS[@]}" --assume-stopped --label m1 >/dev/null 2>"$T/m0.err"
is "milvus snapshot without the key: exit 3" 3 "$?"
ok "... says the repository is encrypted" grep -q "is encrypted and no key was given" "$T/m0.err"
ok "... no objects written" [ ! -e "$R/milvus" ]
exit_is "milvus snapshot with the key: exit 0" 0 \
    "$MV" snapshot --repo "$R" --cipher-key-file "$KEY" "${VOLS[@]}" --assume-stopped --label m1
mapfile -t OBJS < <(find "$R/milvus/objects" -type f -name '*.zst')
ok "objects stored (${#OBJS[@]})" [ "${#OBJS[@]}" -gt 5 ]
n_plain=$(for f in "${OBJS[@]}"; do head -c 4 "$f" | grep -q RGSE || echo "$f"; done | wc -l)
is "every Milvus object is sealed" 0 "$n_plain"
some=$(find "$V" -type f -size +1k | head -1)
sha=$(sha256sum "$some" | cut -c1-64)
ok "object names are keyed digests, not the plaintext SHA-256" bash -c "! find '$R/milvus/objects' -name '$sha.zst' | grep -q ."
ok "the snapshot manifest is sealed" bash -c "for f in '$R'/milvus/snapshots/*; do head -c 4 \"\$f\" | grep -q RGSE || exit 1; done"
exit_is "a second snapshot of the same volumes: exit 0" 0 \
    "$MV" snapshot --repo "$R" --cipher-key-file "$KEY" "${VOLS[@]}" --assume-stopped --label m2
is "... stores no new object (deduplicated by keyed address)" "${#OBJS[@]}" \
    "$(find "$R/milvus/objects" -type f -name '*.zst' | wc -l)"
exit_is "milvus verify with the key: exit 0" 0 "$MV" verify --repo "$R" --cipher-key-file "$KEY"
"$MV" verify --repo "$R" --cipher-key-file "$T/wrong" >/dev/null 2>"$T/mv.err"
is "milvus verify with another key: exit 3" 3 "$?"
ok "... says wrong key" grep -q "wrong key" "$T/mv.err"
exit_is "milvus restore with the key: exit 0" 0 \
    "$MV" restore m1 --repo "$R" --cipher-key-file "$KEY" --volume "etcd=$T/f/etcd" \
    --volume "minio=$T/f/minio" --volume "milvus=$T/f/milvus" --assume-stopped
for v in etcd minio milvus; do
    is "restored volume $v is identical" "$(python3 "$FAKE" tree "$V/$v")" "$(python3 "$FAKE" tree "$T/f/$v")"
done
victim=${OBJS[0]}
printf '\x00\x01' | dd of="$victim" bs=1 seek=60 count=2 conv=notrunc status=none
"$MV" verify --repo "$R" --cipher-key-file "$KEY" >/dev/null 2>"$T/mv2.err"
is "milvus verify finds the tampered object: exit 3" 3 "$?"
ok "... names it corrupt" grep -q "is corrupt" "$T/mv2.err"
exit_is "milvus expire keeps what snapshots need (sweep by keyed address)" 0 \
    "$MV" expire --repo "$R" --cipher-key-file "$KEY" --keep-last 2
is "... every object kept" "${#OBJS[@]}" "$(find "$R/milvus/objects" -type f -name '*.zst' | wc -l)"

pg_stop src
t_done
