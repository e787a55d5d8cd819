#!/usr/bin/env bash
# 060_s3_cipher.sh -- encryption at rest (--cipher-key-file, AES-256-GCM frames, see
# lib/cipher.h) on the WAL path, in a local repository and in S3 (a local s3rver):
# the stored object holds no zstd stream a reader without the key could open; the
# key restores the exact bytes; a wrong key, no key, or one flipped bit is 128 (never
# garbage, never 1); repo.json records the encryption, so a missing or wrong key is
# told at once and a repository never mixes sealed and plain objects; the duplicate
# check works on the encrypted trailer alone; the look-ahead and the prefetch carry
# the key; an encrypted base backup (multipart) in S3 and a PITR restore from it.
source "$(dirname "$0")/lib.sh"
t_init

ARCH=$RAGSAFE_BIN/ragsafe-archive
REST=$RAGSAFE_BIN/ragsafe-restore
BUCKET=ragsafe
s3_start "$BUCKET"

openssl rand -hex 32 >"$T/key"
openssl rand -hex 32 >"$T/wrong"
chown postgres: "$T/key" "$T/wrong"
chmod 0600 "$T/key" "$T/wrong"
flip_byte() {
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\x$(printf %02x $((b ^ 0xff)))" | dd of="$1" bs=1 seek="$2" count=1 conv=notrunc status=none
}

# real WAL: a cluster archiving with cp
pg_cp_archiving a "$T/segs" || exit 1
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

mkdir -p "$T/local" && chown postgres: "$T/local"
for REPO in "$T/local" "s3://$BUCKET/enc"; do
    case $REPO in s3://*) where=s3; objdir=$T/s3/$BUCKET/enc; sfx=._S3rver_object ;; *) where=local; objdir=$REPO; sfx= ;; esac
    S=${SEGS[0]}
    obj=$objdir/wal/${S:0:16}/$S.zst$sfx
    arch() { (cd "$T" && as_pg "$ARCH" --repo "$REPO" "$@"); }
    rest() { (cd "$T" && as_pg "$REST" --repo "$REPO" --prefetch 0 "$@"); }

    exit_is "$where: archive with --cipher-key-file: exit 0" 0 arch --cipher-key-file "$T/key" "$T/segs/$S" "$S"
    ok "$where: the object is cipher frames" bash -c "head -c 4 '$obj' | grep -q RGSE"
    ok "$where: the object is no zstd stream (stock zstd cannot read it)" bash -c "! zstd -t -q '$obj' 2>/dev/null"
    rm -f "$T/out"
    exit_is "$where: restore with the key: exit 0" 0 rest --cipher-key-file "$T/key" "$S" out
    ok "$where: ... identical bytes" cmp -s "$T/out" "$T/segs/$S"
    exit_is "$where: archive again, identical content (checked on the encrypted trailer): exit 0" 0 \
        arch --cipher-key-file "$T/key" "$T/segs/$S" "$S"
    cp "$obj" "$T/obj.before"
    exit_is "$where: archive again under another key: exit 3" 3 \
        arch --cipher-key-file "$T/wrong" "$T/segs/$S" "$S"
    ok "$where: ... the stored object untouched" cmp -s "$obj" "$T/obj.before"
    rm -f "$T/out"
    rest --cipher-key-file "$T/wrong" "$S" out 2>"$T/err"
    is "$where: restore with a wrong key: exit 128" 128 "$?"
    ok "$where: ... says wrong key (told by repo.json's key check)" grep -q "wrong key for repository" "$T/err"
    ok "$where: ... %p not created" [ ! -e "$T/out" ]
    exit_is "$where: restore without the key: exit 128" 128 rest "$S" out
    cp "$obj" "$T/obj.bak"
    flip_byte "$obj" $(($(stat -c %s "$obj") / 2))
    exit_is "$where: one flipped bit in the ciphertext: exit 128" 128 rest --cipher-key-file "$T/key" "$S" out
    ok "$where: ... %p not created" [ ! -e "$T/out" ]
    cp "$T/obj.bak" "$obj"
    flip_byte "$obj" $(($(stat -c %s "$obj") - 3))
    exit_is "$where: one flipped bit in the final frame: exit 128" 128 rest --cipher-key-file "$T/key" "$S" out
    cp "$T/obj.bak" "$obj"
    exit_is "$where: the repaired object restores" 0 rest --cipher-key-file "$T/key" "$S" out
    ok "$where: repo.json records the encryption" bash -c "grep -q aes-256-gcm '$objdir/repo.json$sfx'"
    S2=${SEGS[1]}
    obj2=$objdir/wal/${S2:0:16}/$S2.zst$sfx
    arch "$T/segs/$S2" "$S2" 2>"$T/err"
    is "$where: archiving without the key into the encrypted repository: exit 3" 3 "$?"
    ok "$where: ... says it is encrypted" grep -q "is encrypted and no key was given" "$T/err"
    ok "$where: ... nothing stored" [ ! -e "$obj2" ]
    case $where in s3) PLAIN=s3://$BUCKET/plain; pobj=$T/s3/$BUCKET/plain/wal/${S2:0:16}/$S2.zst$sfx ;;
                   *) PLAIN=$T/plain; mkdir -p "$PLAIN"; chown postgres: "$PLAIN"; pobj=$PLAIN/wal/${S2:0:16}/$S2.zst ;; esac
    exit_is "$where: a plain repository" 0 bash -c "cd '$T' && runuser -u postgres -- '$ARCH' --repo '$PLAIN' '$T/segs/$S2' '$S2'"
    (cd "$T" && as_pg "$ARCH" --repo "$PLAIN" --cipher-key-file "$T/key" "$T/segs/${SEGS[2]}" "${SEGS[2]}") 2>"$T/err"
    is "$where: ... refuses a key: exit 3" 3 "$?"
    ok "$where: ... says it is not encrypted" grep -q "is not encrypted, but a key was given" "$T/err"
    # a plain object planted where a sealed one belongs: an error, never its bytes
    mkdir -p "$(dirname "$obj2")" && cp "$pobj" "$obj2"
    exit_is "$where: a plain object in the encrypted repository, restored with the key: exit 128" 128 \
        rest --cipher-key-file "$T/key" "$S2" out
    rm -f "$obj2"
done

# S3: the look-ahead and the prefetch carry the key
REPO=s3://$BUCKET/enc2
D=$T/pgdata && mkdir -p "$D/pg_wal/archive_status"
for s in "${SEGS[@]:1}"; do cp "$T/segs/$s" "$D/pg_wal/$s"; : >"$D/pg_wal/archive_status/$s.ready"; done
chown -R postgres: "$D"
first=${SEGS[1]}
exit_is "s3: archive with look-ahead and a key: exit 0" 0 \
    bash -c "cd '$D' && runuser -u postgres -- '$ARCH' --repo '$REPO' --cipher-key-file '$T/key' pg_wal/$first $first"
n=$(ls "$D/pg_wal/ragsafe-ahead" | grep -c '\.done$')
ok "s3: ... the look-ahead archived the other ready segments ($n)" [ "$n" -ge 2 ]
for s in "${SEGS[@]:2}"; do
    head -c 4 "$T/s3/$BUCKET/enc2/wal/${s:0:16}/$s.zst._S3rver_object" | grep -q RGSE || fail "s3: $s encrypted by the look-ahead"
done
rm -rf "$D/rd" && mkdir -p "$D/rd/pg_wal" && chown -R postgres: "$D/rd"
exit_is "s3: restore with prefetch and a key: exit 0" 0 \
    bash -c "cd '$D/rd' && runuser -u postgres -- '$REST' --repo '$REPO' --cipher-key-file '$T/key' --prefetch 2 $first pg_wal/RECOVERYXLOG"
ok "s3: ... identical bytes" cmp -s "$D/rd/pg_wal/RECOVERYXLOG" "$T/segs/$first"
ok "s3: ... the next segments were decrypted into the spool" cmp -s "$D/rd/pg_wal/ragsafe-prefetch/${SEGS[2]}" "$T/segs/${SEGS[2]}"

# S3: an encrypted base backup (--format tar, one object sent multipart: incompressible
# rows past the 5 MiB part size; 095_chunked_cipher.sh seals chunked ones) and a
# point-in-time restore from it, the restore_command carrying endpoint and key file
REPO=s3://$BUCKET/encbb
OBJ=$T/s3/$BUCKET/encbb
export RAGSAFE_S3_PART_SIZE=5242880
pg_init b || exit 1
pg_set b "archive_mode = on"
pg_set b "archive_command = '$ARCH --repo $REPO --cipher-key-file $T/key %p %f'"
pg_start b || exit 1
pg_sql b "create table blob as select g, (select string_agg(md5(random()::text || g || s), '') from generate_series(1, 40) s) v from generate_series(1, 8000) g"
label=$(as_pg env "RAGSAFE_S3_ENDPOINT=$RAGSAFE_S3_ENDPOINT" "$RAGSAFE_BIN/ragsafe-basebackup" \
    -d "$(pg_conn b)" --repo "$REPO" --cipher-key-file "$T/key" -c fast --format tar 2>"$T/bb.err")
is "s3: encrypted base backup: exit 0" 0 "$?"
[ -n "$label" ] || cat "$T/bb.err"
ok "s3: ... base.tar.zst is cipher frames" bash -c "head -c 4 '$OBJ/backups/$label/base.tar.zst._S3rver_object' | grep -q RGSE"
ok "s3: ... larger than one 5 MiB part, so sent as a multipart upload" bash -c "[ \$(stat -c %s '$OBJ/backups/$label/base.tar.zst._S3rver_object') -gt 5242880 ]"
exit_is "s3: ... --verify with the key: exit 0" 0 \
    "$RAGSAFE_BIN/ragsafe-basebackup" --repo "$REPO" --cipher-key-file "$T/key" --verify "$label"
pg_sql b "create table after_backup as select 1 as x"
want=$(pg_sql b "select count(*) from blob")
switch_wal b || fail "s3: the last segment archived"
pg_stop b
"$RAGSAFE_BIN/ragsafe-pitr" restore --repo "$REPO" --cipher-key-file "$T/key" --pgdata "$T/rb" \
    --target-latest --owner postgres >"$T/rb.out" 2>"$T/rb.err"
is "s3: pitr restore from the encrypted bucket: exit 0" 0 "$?"
ok "s3: ... restore_command names the endpoint and the key file" \
    grep -q "restore_command = .*--s3-endpoint .*--cipher-key-file .*$T/key" "$T/rb/postgresql.auto.conf"
pg_set rb "unix_socket_directories = '$T/rb'"
pg_set rb "archive_mode = off"
if pg_start rb && pg_wait_for rb "select pg_is_in_recovery()" f 120; then
    is "s3: ... the restored server has every row" "$want" "$(pg_sql rb 'select count(*) from blob')"
    is "s3: ... and what was written after the backup" "1" "$(pg_sql rb 'select count(*) from after_backup')"
else
    fail "s3: the restored server recovers from the encrypted bucket"; tail -20 "$T/rb.log"
fi
pg_stop rb >/dev/null 2>&1

s3_all_signed
s3_stop
t_done
