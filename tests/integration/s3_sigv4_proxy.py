# s3_sigv4_proxy.py -- an independent SigV4 verifier in front of s3rver (which ignores
# signatures), for the tests:
#     python3 s3_sigv4_proxy.py LISTEN_PORT UPSTREAM_PORT ACCESS_KEY SECRET_KEY
#
# Every request must carry an "AWS4-HMAC-SHA256" Authorization header for ACCESS_KEY.
# The signature is recomputed with botocore (Debian's python3-botocore; S3SigV4Auth:
# no path normalisation, payload hash taken from x-amz-content-sha256) from the method,
# the raw path and query, the headers the request lists in SignedHeaders and
# SECRET_KEY. host, x-amz-date, x-amz-content-sha256 and every x-amz-* header sent must
# be signed, and x-amz-content-sha256 must be the SHA-256 of the body as received
# (UNSIGNED-PAYLOAD is accepted, as S3 does). A request that passes is forwarded to
# 127.0.0.1:UPSTREAM_PORT unchanged; one that fails gets S3's own answer (403
# SignatureDoesNotMatch / InvalidAccessKeyId / AccessDenied, 400
# XAmzContentSHA256Mismatch) and never reaches the server. One line per request on
# stderr: "ok METHOD PATH" or "refused CODE METHOD PATH: why".
import hashlib
import hmac
import http.client
import http.server
import re
import sys

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

listen, upstream = int(sys.argv[1]), int(sys.argv[2])
access_key, secret_key = sys.argv[3], sys.argv[4]

AUTH_RE = re.compile(
    r'^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,\s*'
    r'SignedHeaders=([a-z0-9;._-]+),\s*Signature=([0-9a-f]{64})$')
UNSIGNED = ('UNSIGNED-PAYLOAD', 'STREAMING-UNSIGNED-PAYLOAD-TRAILER')


def log(line):
    sys.stderr.write(line + '\n')
    sys.stderr.flush()


class Refused(Exception):
    def __init__(self, status, code, message, why):
        super().__init__(why)
        self.status, self.code, self.message, self.why = status, code, message, why


def mismatch(why):
    return Refused(403, 'SignatureDoesNotMatch',
                   'The request signature we calculated does not match the signature you '
                   'provided. Check your key and signing method.', why)


def verify(method, path, headers, body):
    """Raise Refused unless the request is signed with access_key/secret_key."""
    auth = headers.get('Authorization')
    if not auth:
        raise Refused(403, 'AccessDenied', 'Access Denied', 'no Authorization header')
    m = AUTH_RE.match(auth.strip())
    if not m:
        raise Refused(400, 'AuthorizationHeaderMalformed',
                      'The authorization header is malformed', 'malformed: ' + auth)
    akid, day, region, service, signed, signature = m.groups()
    if akid != access_key:
        raise Refused(403, 'InvalidAccessKeyId',
                      'The AWS Access Key Id you provided does not exist in our records.',
                      'unknown access key ' + akid)
    if service != 's3':
        raise mismatch('credential scope service is %s' % service)
    amz_date = headers.get('x-amz-date')
    if not amz_date or not re.match(r'^\d{8}T\d{6}Z$', amz_date) or amz_date[:8] != day:
        raise mismatch('x-amz-date %r does not match the scope date %s' % (amz_date, day))
    names = signed.split(';')
    if names != sorted(set(names)):
        raise mismatch('SignedHeaders not sorted or repeated: ' + signed)
    sent = {k.lower() for k in headers.keys()}
    for need in ['host', 'x-amz-date', 'x-amz-content-sha256'] + \
            sorted(k for k in sent if k.startswith('x-amz-')):
        if need not in names:
            raise Refused(403, 'AccessDenied',
                          'There were headers present in the request which were not signed',
                          'header %s not signed (SignedHeaders=%s)' % (need, signed))
    for n in names:
        if n not in sent:
            raise mismatch('signed header %s not sent' % n)
    payload = headers.get('x-amz-content-sha256')
    if payload not in UNSIGNED and payload != hashlib.sha256(body or b'').hexdigest():
        raise Refused(400, 'XAmzContentSHA256Mismatch',
                      "The provided 'x-amz-content-sha256' header does not match what was "
                      "computed.", 'payload hash %s is not the body\'s' % payload)

    req = AWSRequest(method=method, url='http://%s%s' % (headers.get('host'), path),
                     headers={n: ','.join(headers.get_all(n)) for n in names})
    req.context['timestamp'] = amz_date
    signer = S3SigV4Auth(Credentials(access_key, secret_key), service, region)
    canonical = signer.canonical_request(req)
    if signer.signed_headers(signer.headers_to_sign(req)) != signed:
        raise mismatch('botocore would sign %s, not %s'
                       % (signer.signed_headers(signer.headers_to_sign(req)), signed))
    want = signer.signature(signer.string_to_sign(req, canonical), req)
    if not hmac.compare_digest(want, signature):
        raise mismatch('signature %s, computed %s over %r' % (signature, want, canonical))


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *a):
        pass

    def read_body(self):
        if 'chunked' in (self.headers.get('Transfer-Encoding') or '').lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b';')[0].strip() or b'0', 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return b''.join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(n) if n else b''

    def refuse(self, r):
        log('refused %s %s %s: %s' % (r.code, self.command, self.path, r.why))
        msg = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s'
               '</Message></Error>' % (r.code, r.message)).encode()
        self.send_response(r.status)
        self.send_header('Content-Type', 'application/xml')
        self.send_header('Content-Length', '0' if self.command == 'HEAD' else str(len(msg)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(msg)

    def handle_any(self):
        body = self.read_body()
        try:
            verify(self.command, self.path, self.headers, body)
        except Refused as r:
            self.refuse(r)
            return
        log('ok %s %s' % (self.command, self.path))
        c = http.client.HTTPConnection('127.0.0.1', upstream, timeout=120)
        hdrs = {k: v for k, v in self.headers.items()
                if k.lower() not in ('connection', 'transfer-encoding', 'content-length',
                                     'expect')}
        if body or self.command in ('PUT', 'POST'):
            hdrs['Content-Length'] = str(len(body))
        c.request(self.command, self.path, body=body if body else None, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ('connection', 'transfer-encoding', 'content-length'):
                self.send_header(k, v)
        if self.command == 'HEAD':
            self.send_header('Content-Length', r.getheader('Content-Length') or '0')
        else:
            self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)
        c.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(('127.0.0.1', listen), H).serve_forever()
