#!/usr/bin/env bash
# 060_s3_wal.sh -- the WAL path with the repository in S3 (a local s3rver): PostgreSQL
# archiving into s3://BUCKET/PREFIX and ragsafe-restore reading back; not found -> 1,
# a damaged object -> 128; the S3 server stopped: restore -> 128 (never 1), archive -> 1,
# PostgreSQL's archiver retries and catches up once the server is back; a segment of
# incompressible data goes up as a multipart upload and comes back intact.
#
# s3rver (npm) is installed into /var/tmp/ragsafe-s3rver when missing; only when npm
# cannot reach its registry is the test skipped (exit 77, counted as skipped).
# Credentials and endpoint come from a config file (s3-key, s3-key-secret,
# s3-endpoint), as a DBA would set them up; every request passes the SigV4 verifier.
source "$(dirname "$0")/lib.sh"
t_init

ARCH=$RAGSAFE_BIN/ragsafe-archive
REST=$RAGSAFE_BIN/ragsafe-restore
BUCKET=ragsafe
# credentials and endpoint from the config file below, not the environment
export S3_LOG=1 S3_NO_ENV=1
s3_start "$BUCKET"
PORT=$S3PORT

CONF=$T/ragsafe.conf
cat >"$CONF" <<EOF
s3-endpoint = http://127.0.0.1:$PORT
s3-key = S3RVER
s3-key-secret = S3RVER
EOF
chown postgres: "$CONF"
chmod 0600 "$CONF"
REPO=s3://$BUCKET/pg
# The object of a WAL file in s3rver's directory.
s3_obj() {
    local f=$1
    case $f in
        *.history) echo "$T/s3/$BUCKET/pg/wal/$f.zst._S3rver_object" ;;
        *) echo "$T/s3/$BUCKET/pg/wal/${f:0:16}/$f.zst._S3rver_object" ;;
    esac
}
flip_byte() {
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\x$(printf %02x $((b ^ 0xff)))" | dd of="$1" bs=1 seek="$2" count=1 conv=notrunc status=none
}
# rs_restore NAME DEST [VAR=value... | --option...]: ragsafe-restore as postgres, in $T.
rs_restore() {
    local f=$1 dest=$2 envs=() opts=(); shift 2
    for a in "$@"; do case $a in --*) opts+=("$a") ;; *=*) envs+=("$a") ;; *) opts+=("$a") ;; esac; done
    (cd "$T" && as_pg env "${envs[@]}" "$REST" --config "$CONF" --repo "$REPO" "${opts[@]}" "$f" "$dest")
}

# 1. PostgreSQL archives into S3 (and a cp copy for comparison).
pg_init a || exit 1
mkdir -p "$T/segs" && chown postgres: "$T/segs"
pg_set a "wal_level = replica"
pg_set a "archive_mode = on"
pg_set a "archive_timeout = 0"
pg_set a "archive_command = 'cp %p $T/segs/%f && $ARCH -v --config $CONF --repo $REPO %p %f'"
pg_start a || exit 1
as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -i -s 1 -q postgres >/dev/null 2>&1
for i in 1 2; do
    as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -n -t 200 postgres >/dev/null 2>&1
    pg_sql a "select pg_switch_wal()" >/dev/null
done
last=$(pg_sql a "select pg_walfile_name(pg_switch_wal())")
ok "PostgreSQL archived into S3 up to $last" pg_wait_for a "select last_archived_wal >= '$last' from pg_stat_archiver" t 60
is "no failed archive_command calls" 0 "$(pg_sql a 'select failed_count from pg_stat_archiver')"
mapfile -t SEGS < <(cd "$T/segs" && ls | grep -E '^[0-9A-F]{24}$' | sort)
ok "at least 3 segments archived" [ "${#SEGS[@]}" -ge 3 ]
n=0
for f in "${SEGS[@]}"; do [ -s "$(s3_obj "$f")" ] && n=$((n + 1)); done
is "every archived segment is an object in the bucket" "${#SEGS[@]}" "$n"
ok "repo.json is in the bucket" [ -s "$T/s3/$BUCKET/pg/repo.json._S3rver_object" ]
ok "objects carry the SHA-256 of the segment in their metadata" \
    grep -q "x-amz-meta-ragsafe-sha256\": \"$(sha256sum "$T/segs/${SEGS[0]}" | cut -c1-64)" \
    "${T}/s3/$BUCKET/pg/wal/${SEGS[0]:0:16}/${SEGS[0]}.zst._S3rver_metadata.json"
ok "a stored object is a plain zstd stream (zstd -d gives the segment)" \
    bash -c "zstd -dc '$(s3_obj "${SEGS[0]}")' | cmp -s - '$T/segs/${SEGS[0]}'"

# 2. restore: every segment back, byte for byte; absent files are 1.
good=0
for f in "${SEGS[@]}"; do
    rm -f "$T/out"
    rs_restore "$f" out && cmp -s "$T/out" "$T/segs/$f" && good=$((good + 1))
done
is "every segment restored from S3 with identical bytes" "${#SEGS[@]}" "$good"
mkdir -p "$T/ragsafe-prefetch" && touch "$T/ragsafe-prefetch/000000010000000000000099" && chown -R postgres: "$T/ragsafe-prefetch"
exit_is "a segment not in the bucket: exit 1" 1 rs_restore 0000000100000000000000F0 out
ok "... the end of the archive clears the prefetch spool" [ ! -e "$T/ragsafe-prefetch" ]
exit_is "a future timeline history file: exit 1" 1 rs_restore 00000009.history out
exit_is "already archived with identical content: exit 0" 0 \
    as_pg "$ARCH" --config "$CONF" --repo "$REPO" "$T/segs/${SEGS[1]}" "${SEGS[1]}"
cp "$T/segs/${SEGS[1]}" "$T/other" && chown postgres: "$T/other"
flip_byte "$T/other" 100000
as_pg "$ARCH" --config "$CONF" --repo "$REPO" "$T/other" "${SEGS[1]}" 2>"$T/err"
is "same name with different content: exit 3" 3 "$?"
ok "... refused as different content" grep -q "already archived with different content" "$T/err"
exit_is "--s3-uri-style must be path or host: exit 2" 2 \
    as_pg "$ARCH" --config "$CONF" --s3-uri-style sideways --repo "$REPO" "$T/segs/${SEGS[1]}" "${SEGS[1]}"
exit_is "a bucket that does not exist: restore exits 128" 128 \
    as_pg "$REST" --config "$CONF" --repo "s3://nosuchbucket/pg" "${SEGS[1]}" "$T/out"
exit_is "no credentials: restore exits 128" 128 \
    as_pg env RAGSAFE_S3_ENDPOINT="http://127.0.0.1:$PORT" "$REST" --config /dev/null --repo "$REPO" "${SEGS[1]}" "$T/out"

# 3. a damaged object is 128, never 1, and %p is not created.
obj=$(s3_obj "${SEGS[1]}")
cp "$obj" "$T/obj.bak"
flip_byte "$obj" 200
rm -f "$T/out"
rs_restore "${SEGS[1]}" out 2>"$T/err"
is "a flipped byte in the object: exit 128" 128 "$?"
ok "the message names the object" grep -q "${SEGS[1]}" "$T/err"
ok "%p not created for a damaged object" [ ! -e "$T/out" ]
cp "$T/obj.bak" "$obj"
exit_is "the repaired object restores again" 0 rs_restore "${SEGS[1]}" out

# 3b. prefetch: asked for N, the next segments are fetched alongside, verified, and
# the next calls are answered from the spool; a damaged object is never spooled.
rm -rf "$T/ragsafe-prefetch" "$T/out"
exit_is "restore with --prefetch 2: exit 0" 0 rs_restore "${SEGS[0]}" out --prefetch 2
ok "... the next two segments are spooled" \
    test -f "$T/ragsafe-prefetch/${SEGS[1]}" -a -f "$T/ragsafe-prefetch/${SEGS[2]}"
rm -f "$T/out"
(cd "$T" && as_pg "$REST" -v --config "$CONF" --repo "$REPO" --prefetch 2 "${SEGS[1]}" out) 2>"$T/err"
is "the next call is answered from the spool: exit 0" 0 "$?"
ok "... it says so" grep -q "from the prefetched copy" "$T/err"
ok "... with identical bytes" cmp -s "$T/out" "$T/segs/${SEGS[1]}"
ok "... and the spooled copy was consumed" [ ! -e "$T/ragsafe-prefetch/${SEGS[1]}" ]
rm -rf "$T/ragsafe-prefetch" "$T/out"
obj=$(s3_obj "${SEGS[2]}")
cp "$obj" "$T/obj.bak"
flip_byte "$obj" 300
exit_is "prefetching over a damaged object: the asked segment still restores" 0 \
    rs_restore "${SEGS[1]}" out --prefetch 2
ok "... the damaged one is not spooled" [ ! -e "$T/ragsafe-prefetch/${SEGS[2]}" ]
is "... and no temp file is left" "" "$(ls -A "$T/ragsafe-prefetch" | grep '^\.')"
exit_is "... asking for it then fails with 128" 128 rs_restore "${SEGS[2]}" out --prefetch 2
cp "$T/obj.bak" "$obj"
rm -rf "$T/ragsafe-prefetch" "$T/out"

# 4. the S3 server stopped: restore 128, archive 1; back: a clean retry.
s3_stop
rm -f "$T/out"
exit_is "server stopped: restore of an archived segment exits 128" 128 \
    rs_restore "${SEGS[1]}" out RAGSAFE_S3_RETRIES=2
exit_is "server stopped: restore of an absent segment exits 128, not 1" 128 \
    rs_restore 0000000100000000000000F0 out RAGSAFE_S3_RETRIES=2
ok "%p not created while the server is down" [ ! -e "$T/out" ]
for i in 1 2 3 4 5; do
    as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -n -t 100 postgres >/dev/null 2>&1
    pending=$(pg_sql a "select pg_walfile_name(pg_switch_wal())")
done
exit_is "server stopped: archive exits 1" 1 \
    as_pg env RAGSAFE_S3_RETRIES=2 "$ARCH" --config "$CONF" --repo "$REPO" "$T/a/pg_wal/$pending" "$pending"
ok "PostgreSQL's archive_command fails while the server is down" \
    pg_wait_for a "select failed_count > 0 from pg_stat_archiver" t 60
s3_start "$BUCKET"
ok "after the server is back PostgreSQL's archiver catches up" \
    pg_wait_for a "select last_archived_wal >= '$pending' from pg_stat_archiver" t 90
# the backlog went up in parallel: later calls found their segment archived ahead
ahead=$(grep -c "was archived ahead by an earlier call" "$T/a.log")
ok "look-ahead: calls answered from confirmed uploads ($ahead)" [ "$ahead" -ge 2 ]
is "look-ahead: every record was consumed" "" "$(ls -A "$T/a/pg_wal/ragsafe-ahead")"
good=0 all=0
for f in $(cd "$T/segs" && ls | grep -E '^[0-9A-F]{24}$'); do
    all=$((all + 1))
    rm -f "$T/out"
    rs_restore "$f" out && cmp -s "$T/out" "$T/segs/$f" && good=$((good + 1))
done
is "look-ahead: all $all segments restore with identical bytes" "$all" "$good"
rm -f "$T/out"
exit_is "the segment archived after the retry restores" 0 rs_restore "$pending" out
ok "... with identical bytes" cmp -s "$T/out" "$T/segs/$pending"
pg_stop a

# 5. a segment of random data: ~16 MiB stored, uploaded in 5 MiB parts.
cp "$T/segs/${SEGS[0]}" "$T/rnd"
head -c $((16 * 1024 * 1024 - 8192)) /dev/urandom | dd of="$T/rnd" bs=8192 seek=1 conv=notrunc status=none
chown postgres: "$T/rnd"
rname=000000010000000000000070
# the page address in the header must match the name: rewrite it (xlp_pageaddr at 8)
python3 - "$T/rnd" <<'EOF'
import struct, sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(8); f.write(struct.pack('<Q', 0x70 * 16 * 1024 * 1024))
EOF
exit_is "a 16 MiB incompressible segment archives (multipart)" 0 \
    as_pg env RAGSAFE_S3_PART_SIZE=5242880 "$ARCH" -v --config "$CONF" --repo "$REPO" "$T/rnd" "$rname"
size=$(stat -c %s "$(s3_obj "$rname")" 2>/dev/null || echo 0)
ok "the stored object is larger than two parts ($size bytes)" [ "$size" -gt $((10 * 1024 * 1024)) ]
ok "it went up in parts (s3rver saw part 4 and the completion)" \
    bash -c "grep -aq '/$rname.zst?partNumber=4&uploadId=.* 200 ' '$T/s3rver.log' &&
             grep -aq '/$rname.zst?uploadId=.* 200 ' '$T/s3rver.log'"
rm -f "$T/out"
exit_is "the multipart object restores" 0 rs_restore "$rname" out
ok "... with identical bytes" cmp -s "$T/out" "$T/rnd"
exit_is "re-archiving it finds the identical copy (ranged read of the trailer)" 0 \
    as_pg env RAGSAFE_S3_PART_SIZE=5242880 "$ARCH" --config "$CONF" --repo "$REPO" "$T/rnd" "$rname"

s3_all_signed
s3_stop
t_done
