#!/usr/bin/env bash
# 063_s3_sigv4.sh -- the S3 credentials are really checked. s3rver ignores signatures,
# so every S3 test runs it behind tests/integration/s3_sigv4_proxy.py, which recomputes
# each request's SigV4 signature with botocore and answers 403 on a mismatch. Here:
# the verifier itself refuses an unsigned request, a request signed with another
# secret and a body that is not the one signed, and passes a correctly signed one;
# then ragsafe-archive, ragsafe-restore and ragsafe-pitr with a wrong secret (or an
# unknown access key) fail with S3's own error code and message, and nothing is written
# into the bucket; with the right secret everything works and no request was refused.
source "$(dirname "$0")/lib.sh"
t_init

ARCH=$RAGSAFE_BIN/ragsafe-archive
REST=$RAGSAFE_BIN/ragsafe-restore
PITR=$RAGSAFE_BIN/ragsafe-pitr
BUCKET=ragsafe
REPO=s3://$BUCKET/pg
s3_start "$BUCKET"
ok "s3_start started the verifier" [ -n "${S3VPID:-}" ]
ok "... in front of s3rver (its own port)" [ "$S3PORT" != "$S3RVER_PORT" ]
URL=http://127.0.0.1:$S3PORT/$BUCKET

# objects in the bucket (s3rver keeps one file per object and per metadata)
objects() { find "$T/s3/$BUCKET" -type f -printf '%P\n' 2>/dev/null | sort; }
# sigcurl SECRET CURL-ARGS...: curl signing with SigV4 for S3_KEY and SECRET
sigcurl() {
    local secret=$1; shift
    curl -s -o "$T/curl.body" -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
        --user "$S3_KEY:$secret" -H "x-amz-content-sha256: $(printf '' | sha256sum | cut -c1-64)" "$@"
}

# 1. the verifier on its own
is "verifier: an unsigned request: 403" 403 "$(curl -s -o "$T/curl.body" -w '%{http_code}' "$URL/x")"
ok "... AccessDenied" grep -q '<Code>AccessDenied</Code>' "$T/curl.body"
is "verifier: a GET signed with the right secret reaches s3rver (404 NoSuchKey)" 404 \
    "$(sigcurl "$S3_SECRET" "$URL/x")"
ok "... NoSuchKey, from s3rver" grep -q 'NoSuchKey' "$T/curl.body"
is "verifier: a GET signed with another secret: 403" 403 "$(sigcurl wrong "$URL/x")"
ok "... SignatureDoesNotMatch" grep -q '<Code>SignatureDoesNotMatch</Code>' "$T/curl.body"
printf 'other body' >"$T/other"
is "verifier: a PUT whose body is not the one hashed and signed: 400" 400 \
    "$(sigcurl "$S3_SECRET" -T "$T/other" "$URL/y")"
ok "... XAmzContentSHA256Mismatch" grep -q '<Code>XAmzContentSHA256Mismatch</Code>' "$T/curl.body"
is "... nothing written" "" "$(objects)"

# 2. a cluster whose WAL segments are copied out by cp, to archive by hand
pg_cp_archiving a "$T/segs" || exit 1
pg_sql a "create table t as select generate_series(1, 10000) i" >/dev/null
switch_wal a || fail "a segment is archived"
S=$(cd "$T/segs" && ls | grep -E '^[0-9A-F]{24}$' | sort | head -1)
ok "a segment to archive" [ -n "$S" ]

# arch / rest / pitr SECRET [KEY] ARGS...: the tools as postgres, credentials from the
# environment
arch() { local s=$1; shift; (cd "$T" && as_pg env AWS_SECRET_ACCESS_KEY="$s" "$ARCH" --repo "$REPO" "$@"); }
rest() { local s=$1; shift; (cd "$T" && as_pg env AWS_SECRET_ACCESS_KEY="$s" "$REST" --repo "$REPO" "$@"); }

exit_is "archive with a wrong secret: exit 1" 1 arch wrong "$T/segs/$S" "$S" 2>"$T/arch.err"
ok "... names S3's SignatureDoesNotMatch" grep -q 'HTTP 403 SignatureDoesNotMatch' "$T/arch.err"
ok "... and says what it means" grep -q 'signature we calculated does not match' "$T/arch.err"
is "... nothing written into the bucket" "" "$(objects)"
exit_is "archive with an unknown access key: exit 1" 1 \
    bash -c "cd '$T' && runuser -u postgres -- env AWS_ACCESS_KEY_ID=NOBODY '$ARCH' --repo '$REPO' '$T/segs/$S' '$S'" \
    2>"$T/arch2.err"
ok "... names S3's InvalidAccessKeyId" grep -q 'HTTP 403 InvalidAccessKeyId' "$T/arch2.err"
is "... nothing written into the bucket" "" "$(objects)"

n0=$(s3_verified)
exit_is "archive with the right secret: exit 0" 0 arch "$S3_SECRET" "$T/segs/$S" "$S"
ok "... the segment is in the bucket" bash -c "find '$T/s3/$BUCKET/pg/wal' -name '$S.zst._S3rver_object' | grep -q ."
ok "... through the verifier ($n0 requests passed before, $(s3_verified) after)" [ "$(s3_verified)" -gt "$n0" ]

exit_is "restore with a wrong secret: 128 (never 1, 'not found', which would end recovery)" 128 \
    rest wrong "$S" out 2>"$T/rest.err"
ok "... names S3's answer (HTTP 403)" grep -q 'HTTP 403' "$T/rest.err"
ok "... no file written" [ ! -e "$T/out" ]
exit_is "restore with the right secret: exit 0" 0 rest "$S3_SECRET" "$S" out
ok "... the exact segment" cmp -s "$T/out" "$T/segs/$S"

AWS_SECRET_ACCESS_KEY=wrong "$PITR" info --repo "$REPO" >"$T/info.out" 2>"$T/info.err"
is "pitr info with a wrong secret: exit 1" 1 "$?"
ok "... names S3's SignatureDoesNotMatch" grep -q 'HTTP 403 SignatureDoesNotMatch' "$T/info.err"
exit_is "pitr info with the right secret: exit 0" 0 "$PITR" info --repo "$REPO" >/dev/null

grep '^refused' "$T/sigv4.log" | sed 's/^/# /' | cut -c1-200
s3_stop
t_done
