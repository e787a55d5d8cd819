#!/usr/bin/env bash
# 060_s3_faults.sh -- S3 failures in the middle of archiving and restoring, through a
# small fault-injecting proxy in front of a local s3rver: transient 500s are retried
# (single PUT, multipart parts, GETs, the open), a GET cut off mid-body resumes with a
# Range request, and a persistent failure is an error -- ragsafe-archive exits 1 and
# leaves no object (so the next call retries cleanly), ragsafe-restore exits 128 and
# never creates %p, never 1.
source "$(dirname "$0")/lib.sh"
t_init

ARCH=$RAGSAFE_BIN/ragsafe-archive
REST=$RAGSAFE_BIN/ragsafe-restore
BUCKET=ragsafe
s3_start "$BUCKET"
PPORT=$(free_port)
echo ok >"$T/ctl"
chmod 0666 "$T/ctl"
python3 "$RAGSAFE_SRC/tests/integration/s3_proxy.py" "$PPORT" "$S3PORT" "$T/ctl" 2>"$T/proxy.log" &
PXPID=$!
t_on_exit "kill $PXPID"
wait_port "$S3PORT" && wait_port "$PPORT" || { echo "# servers did not start"; exit 1; }
ctl() { echo "$*" >"$T/ctl"; }

export RAGSAFE_S3_ENDPOINT=http://127.0.0.1:$PPORT AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
export RAGSAFE_S3_RETRIES=4 RAGSAFE_S3_PART_SIZE=5242880
REPO=s3://$BUCKET/f
OBJ=$T/s3/$BUCKET/f/wal/0000000100000000

# segments: initdb's first one, and a copy of it full of random data (multipart)
pg_init a || exit 1
S1=000000010000000000000001
cp "$T/a/pg_wal/$S1" "$T/s1"
R=000000010000000000000070
cp "$T/s1" "$T/rnd"
head -c $((16 * 1024 * 1024 - 8192)) /dev/urandom | dd of="$T/rnd" bs=8192 seek=1 conv=notrunc status=none
python3 - "$T/rnd" <<'PY'
import struct, sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(8); f.write(struct.pack('<Q', 0x70 * 16 * 1024 * 1024))
PY
chown postgres: "$T/s1" "$T/rnd"
arch() { as_pg env RAGSAFE_S3_ENDPOINT="$RAGSAFE_S3_ENDPOINT" "$ARCH" --repo "$REPO" "$@"; }
rest() { (cd "$T" && as_pg "$REST" --prefetch 0 --repo "$REPO" "$@"); }

# archive
ctl fail500 3
exit_is "archive: three 500s in a row are retried: exit 0" 0 arch "$T/s1" "$S1"
is "... the proxy's failures were all used" "fail500 0" "$(cat "$T/ctl")"
ctl fail500 1000
exit_is "archive: a persistent 500: exit 1" 1 arch "$T/rnd" "$R"
ok "... no object left behind" [ ! -e "$OBJ/$R.zst._S3rver_object" ]
ctl fail500 2 4
exit_is "archive: 500s during the multipart upload are retried: exit 0" 0 arch "$T/rnd" "$R"
ok "... the object is complete" [ -s "$OBJ/$R.zst._S3rver_object" ]
ctl ok
rm -f "$OBJ/$R.zst"._S3rver_*
ctl fail500 1000 5
exit_is "archive: the server fails for good mid-multipart: exit 1" 1 arch "$T/rnd" "$R"
ok "... no object appears (the upload is never completed)" [ ! -e "$OBJ/$R.zst._S3rver_object" ]
ctl ok
exit_is "... and the next call archives it cleanly" 0 arch "$T/rnd" "$R"

# restore
ctl fail500 3
rm -f "$T/out"
exit_is "restore: three 500s are retried: exit 0" 0 rest "$S1" out
ok "... identical bytes" cmp -s "$T/out" "$T/s1"
ctl cut 2
rm -f "$T/out"
exit_is "restore: a GET cut off twice mid-body resumes (Range): exit 0" 0 rest "$R" out
ok "... identical bytes" cmp -s "$T/out" "$T/rnd"
is "... both cuts happened" "cut 0" "$(cat "$T/ctl")"
ctl fail500 1000
rm -f "$T/out"
exit_is "restore: a persistent 500 on a present segment: exit 128" 128 rest "$S1" out
exit_is "restore: a persistent 500 on an absent segment: exit 128, not 1" 128 rest 0000000100000000000000F0 out
ok "... %p never created" [ ! -e "$T/out" ]
ctl fail500 1000 1
exit_is "restore: the server fails for good once repo.json is read: exit 128" 128 rest "$R" out
ok "... %p not created" [ ! -e "$T/out" ]
ctl cut 1000
exit_is "restore: every GET cut off: exit 128" 128 rest "$R" out
ok "... %p not created" [ ! -e "$T/out" ]
ctl ok
exit_is "restore: the server healthy again: exit 0" 0 rest "$R" out
ok "... identical bytes" cmp -s "$T/out" "$T/rnd"

s3_all_signed
kill "$PXPID"; s3_stop
wait 2>/dev/null
t_done
