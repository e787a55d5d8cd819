#!/usr/bin/env python3
"""fake_milvus.py -- stand-ins for the ragsafe-milvus tests and benchmark.

Milvus itself cannot run on these machines (no container runtime, no network to fetch
images), so the tests use:

  serve [--port P | --portfile F] --state FILE --log FILE
      A small HTTP server answering like Milvus 2.4's REST v2 API on /v2/vectordb/...
      (collections/list, get_stats, flush) and its health endpoint GET /healthz
      ("OK" with 200, or 500 "Not all components are healthy" while 'down').
      FILE is JSON: {"up": true, "collections": {"docs": 1000, ...}, "token": null,
      "flush_404": false}; the server re-reads it on every request, so a test's stop
      and start commands flip "up" by rewriting it. Every request is appended to the
      log file ("GET /healthz 200", "POST /v2/vectordb/collections/flush docs").

  gen DIR --mb N [--seed S]
      Milvus-shaped volumes under DIR/etcd, DIR/minio, DIR/milvus (see NOTES-milvus.md):
      etcd member/snap/db (mutable bbolt-like file) and member/wal/*.wal; MinIO bucket
      a-bucket/files/{insert_log,delta_log,stats_log,index_files}/... with each object a
      directory holding xl.meta (small objects inline) and <uuid>/part.1, plus .minio.sys;
      RocksMQ rdb_data/ and rdb_data_meta_kv/ (.sst, MANIFEST, CURRENT, LOG, LOCK); a few
      symlinks. Vector data looks like float32 (random mantissas, narrow exponents), ids
      like sequential int64s: about as compressible as real binlogs.

  tree DIR
      A listing of every entry's path, type, mode, owner, mtime, size and SHA-256 (or
      link target): two trees are the same when their listings are.

  digests DIR
      The content units ragsafe-milvus stores for DIR ("sha256 size" lines): whole files,
      and 512 KiB chunks of files larger than 4 MiB.

  manifest-get FILE / manifest-put FILE
      Read a stored snapshot manifest (milvus/snapshots/<label>.json.zst) as JSON, or
      store JSON from stdin as one (zstd plus ragsafe's SHA-256 trailer frame): the
      tests edit manifests to play an attacker.

  grow DIR --percent P [--seed S]
      Adds P % (of the MinIO bytes) as new segment objects, rewrites pages of the etcd db
      in place (same size), appends to the WAL, adds an .sst and rewrites MANIFEST/CURRENT:
      what Milvus does between two snapshots.
"""
import argparse
import array
import http.server
import json
import os
import random
import sys
import uuid


# ---------------------------------------------------------------- HTTP server

class Handler(http.server.BaseHTTPRequestHandler):
    state_file = None
    log_file = None

    def log_message(self, fmt, *args):  # quiet stderr
        pass

    def _state(self):
        try:
            with open(self.state_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"up": False, "collections": {}}

    def _log(self, line):
        if self.log_file:
            with open(self.log_file, "a") as f:
                f.write(line + "\n")

    def _send(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        st = self._state()
        if self.path == "/healthz":
            if st.get("up"):
                self._log("GET /healthz 200")
                self._send(200, "OK", "text/plain")
            else:
                self._log("GET /healthz 500")
                self._send(500, "Not all components are healthy, 0/4", "text/plain")
            return
        self._send(404, "404 page not found", "text/plain")

    def do_POST(self):
        st = self._state()
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not st.get("up"):
            # a stopped Milvus does not answer at all: drop the connection
            self._log("POST %s down" % self.path)
            self.close_connection = True
            return
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            self._send(200, json.dumps({"code": 1100, "message": "invalid json"}))
            return
        token = st.get("token")
        if token and self.headers.get("Authorization") != "Bearer " + token:
            self._send(200, json.dumps({"code": 1800, "message": "user hasn't authenticated"}))
            return
        colls = st.get("collections", {})
        name = req.get("collectionName")
        if self.path == "/v2/vectordb/collections/list":
            self._log("POST %s" % self.path)
            self._send(200, json.dumps({"code": 0, "data": sorted(colls)}))
        elif self.path == "/v2/vectordb/collections/get_stats":
            self._log("POST %s %s" % (self.path, name))
            if name not in colls:
                self._send(200, json.dumps({"code": 100, "message": "collection not found[collection=%s]" % name}))
            else:
                self._send(200, json.dumps({"code": 0, "data": {"rowCount": colls[name]}}))
        elif self.path == "/v2/vectordb/collections/flush":
            self._log("POST %s %s" % (self.path, name))
            if st.get("flush_404"):
                self._send(404, "404 page not found", "text/plain")
            elif name not in colls:
                self._send(200, json.dumps({"code": 100, "message": "collection not found"}))
            else:
                self._send(200, json.dumps({"code": 0, "data": {}}))
        else:
            self._send(404, "404 page not found", "text/plain")


def serve(args):
    Handler.state_file = args.state
    Handler.log_file = args.log
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    if args.portfile:
        with open(args.portfile + ".tmp", "w") as f:
            f.write(str(srv.server_address[1]))
        os.rename(args.portfile + ".tmp", args.portfile)
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(str(os.getpid()))
    # bounded life: a test that forgets us does not leave a server behind for long
    srv.timeout = 1
    import threading
    t = threading.Timer(args.max_seconds, srv.shutdown)
    t.daemon = True
    t.start()
    srv.serve_forever()


# ---------------------------------------------------------------- volumes

def floats(rng, n):
    """n bytes that look like little-endian float32 in [-1, 1): random mantissa bytes,
    exponent bytes from a narrow set."""
    b = bytearray(rng.randbytes(n))
    n4 = n // 4
    exps = bytes(rng.choice((0x3c, 0x3d, 0x3e, 0x3f, 0xbd, 0xbe, 0xbf)) for _ in range(256))
    b[3:n4 * 4:4] = (exps * (n4 // 256 + 1))[:n4]
    return bytes(b)


def int64s(start, n):
    count = n // 8 + 1
    return array.array("q", range(start, start + count)).tobytes()[:n]


def write(path, data, mtime=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def minio_object(root, key, data, rng):
    """A MinIO single-drive object: <key>/xl.meta, data inline when small, else in
    <key>/<uuid>/part.1."""
    d = os.path.join(root, "a-bucket", key)
    du = str(uuid.UUID(int=rng.getrandbits(128)))
    meta = {"Versions": [{"Type": 1, "V2Obj": {"ID": "", "DDir": du, "EcAlgo": 1, "EcM": 1,
            "EcN": 0, "EcBSize": 1048576, "Size": len(data), "MTime": rng.getrandbits(40),
            "MetaSys": {}, "MetaUsr": {"etag": "%032x" % rng.getrandbits(128),
            "content-type": "application/octet-stream"}}}]}
    header = b"XL2 \x01\x00\x03\x00" + json.dumps(meta).encode()
    if len(data) < 128 * 1024:
        write(os.path.join(d, "xl.meta"), header + b"\x00inline\x00" + data)
    else:
        write(os.path.join(d, "xl.meta"), header)
        write(os.path.join(d, du, "part.1"), data)


def segment(root, rng, coll, part, seg, budget):
    """One sealed segment's binlogs: a vector field, an id field, stats and a delta log,
    and an index file. Returns bytes written."""
    written = 0
    rows = max(16, budget // (4 * 128 + 16))
    logid = rng.getrandbits(40)
    vec = floats(rng, min(budget // 2, rows * 4 * 128))
    ids = int64s((seg % 1000000) * 1000000, rows * 8)
    base = "files/insert_log/%d/%d/%d" % (coll, part, seg)
    minio_object(root, "%s/101/%d" % (base, logid), vec, rng); written += len(vec)
    minio_object(root, "%s/100/%d" % (base, logid + 1), ids, rng); written += len(ids)
    minio_object(root, "%s/0/%d" % (base, logid + 2), int64s(0, rows * 8 // 4), rng)
    minio_object(root, "%s/1/%d" % (base, logid + 3), int64s(seg % 1000000, rows * 8 // 4), rng)
    st = json.dumps({"fieldID": 100, "min": seg % 1000000, "max": seg % 1000000 + rows,
                     "bf": rng.randbytes(256).hex()}).encode()
    minio_object(root, "files/stats_log/%d/%d/%d/100/%d" % (coll, part, seg, logid + 4), st, rng)
    if rng.random() < 0.3:
        minio_object(root, "files/delta_log/%d/%d/%d/%d" % (coll, part, seg, logid + 5),
                     int64s((seg % 1000000) * 1000000, 64 * 8) + int64s(0, 64 * 8), rng)
    idx = floats(rng, budget - written) if budget > written else b""
    if idx:
        minio_object(root, "files/index_files/%d/1/%d/%d/%d/HNSW_%d" %
                     (rng.getrandbits(40), part, seg, coll, rng.randrange(4)), idx, rng)
        written += len(idx)
    return written


def gen(args):
    rng = random.Random(args.seed)
    top = args.dir
    total = args.mb * 1024 * 1024
    # etcd: ~6 % of the total, MinIO ~85 %, milvus (RocksMQ) the rest
    etcd = os.path.join(top, "etcd")
    db = bytearray(max(1, total // 16 // 4096) * 4096)
    for off in range(0, len(db), 4096):
        if rng.random() < 0.6:
            page = rng.randbytes(1024) + bytes(3072)
            db[off:off + 4096] = page
    write(os.path.join(etcd, "member/snap/db"), bytes(db))
    wal = rng.randbytes(len(db) // 4) + bytes(len(db) // 2)
    write(os.path.join(etcd, "member/wal/0000000000000000-0000000000000000.wal"), wal)
    write(os.path.join(etcd, "member/wal/0.tmp"), bytes(len(db) // 8))
    write(os.path.join(etcd, "member/snap/0000000000000002-0000000000002711.snap"),
          rng.randbytes(2048))

    minio = os.path.join(top, "minio")
    write(os.path.join(minio, ".minio.sys/format.json"),
          json.dumps({"version": "1", "format": "xl-single", "id": str(uuid.uuid4())}).encode())
    write(os.path.join(minio, ".minio.sys/config/config.json/xl.meta"), rng.randbytes(900))
    write(os.path.join(minio, ".minio.sys/buckets/.usage.json/xl.meta"), rng.randbytes(700))
    write(os.path.join(minio, ".minio.sys/buckets/a-bucket/.metadata.bin/xl.meta"), rng.randbytes(400))
    os.makedirs(os.path.join(minio, ".minio.sys/tmp/.trash"), exist_ok=True)
    budget = total * 85 // 100
    seg = 440000000000000000
    coll = 4450000000000000
    while budget > 0:
        size = min(budget, int(2 ** rng.uniform(12, 21)))  # 4 KiB .. 2 MiB
        budget -= segment(minio, rng, coll + seg % 3, coll + 1, seg, size)
        seg += 1

    mv = os.path.join(top, "milvus")
    rest = max(total - total * 85 // 100 - len(db) * 2, 1 << 20)
    n = 0
    while rest > 0:
        size = min(rest, 2 << 20)
        write(os.path.join(mv, "rdb_data/%06d.sst" % (n + 10)), rng.randbytes(size // 2) + bytes(size // 2))
        rest -= size
        n += 1
    for d in ("rdb_data", "rdb_data_meta_kv"):
        write(os.path.join(mv, d, "CURRENT"), b"MANIFEST-000005\n")
        write(os.path.join(mv, d, "MANIFEST-000005"), rng.randbytes(4096))
        write(os.path.join(mv, d, "LOG"), b"rocksdb log\n" * 200)
        write(os.path.join(mv, d, "LOCK"), b"")
        write(os.path.join(mv, d, "OPTIONS-000007"), b"[Version]\n  rocksdb_version=6.29.5\n" * 20)
    write(os.path.join(mv, "rdb_data_meta_kv/000009.sst"), rng.randbytes(30000))
    os.makedirs(os.path.join(mv, "data/cache"), exist_ok=True)
    os.symlink("../rdb_data/CURRENT", os.path.join(mv, "data/current-link"))
    os.symlink("/var/lib/milvus/rdb_data", os.path.join(mv, "data/abs-link"))
    os.chmod(os.path.join(etcd, "member"), 0o700)
    os.chmod(os.path.join(etcd, "member/snap/db"), 0o600)


def grow(args):
    rng = random.Random(args.seed)
    top = args.dir
    minio = os.path.join(top, "minio")
    size = 0
    for dp, dn, fn in os.walk(minio):
        for f in fn:
            size += os.lstat(os.path.join(dp, f)).st_size
    budget = size * args.percent // 100
    added = 0
    seg = 450000000000000000 + rng.getrandbits(20) * 1000
    while added < budget:
        added += segment(minio, rng, 4450000000000000, 4450000000000001, seg,
                         min(budget - added + 1, 1 << 20))
        seg += 1
    # etcd: pages rewritten in place, same size; WAL appended in place
    db = os.path.join(top, "etcd/member/snap/db")
    with open(db, "r+b") as f:
        for _ in range(8):
            f.seek(rng.randrange(os.path.getsize(db) // 4096) * 4096)
            f.write(rng.randbytes(512))
    wal = os.path.join(top, "etcd/member/wal/0000000000000000-0000000000000000.wal")
    with open(wal, "r+b") as f:
        f.seek(os.path.getsize(wal) // 2)
        f.write(rng.randbytes(4096))
    mv = os.path.join(top, "milvus/rdb_data")
    write(os.path.join(mv, "%06d.sst" % (900 + rng.randrange(1000))), rng.randbytes(100000))
    write(os.path.join(mv, "MANIFEST-000005"), rng.randbytes(4096))
    print(added)


def tree(args):
    """One line per entry under DIR: path, type, mode, owner, mtime (ns), size and
    SHA-256 or link target. Two trees are equal when their listings are."""
    import hashlib
    import stat as st
    top = args.dir
    out = []
    for dp, dn, fn in os.walk(top):
        dn.sort()
        for name in sorted(dn + fn):
            p = os.path.join(dp, name)
            rel = os.path.relpath(p, top)
            s = os.lstat(p)
            line = "%s %o %d:%d %d" % (rel, st.S_IMODE(s.st_mode), s.st_uid, s.st_gid, s.st_mtime_ns)
            if st.S_ISLNK(s.st_mode):
                line = "%s %d:%d %d link %s" % (rel, s.st_uid, s.st_gid, s.st_mtime_ns, os.readlink(p))
            elif st.S_ISDIR(s.st_mode):
                line += " dir"
            else:
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                line += " %d %s" % (s.st_size, h.hexdigest())
            out.append(line)
    s = os.lstat(top)
    out.append(". %o %d:%d %d root" % (st.S_IMODE(s.st_mode), s.st_uid, s.st_gid, s.st_mtime_ns))
    sys.stdout.write("\n".join(sorted(out)) + "\n")


def digests(args):
    """The content units ragsafe-milvus stores for DIR, one "sha256 size" line each:
    a whole file, or for a file larger than 4 MiB its 512 KiB chunks (milvus.h)."""
    import hashlib
    units = {}
    for dp, dn, fn in os.walk(args.dir):
        for name in fn:
            p = os.path.join(dp, name)
            if os.path.islink(p):
                continue
            size = os.path.getsize(p)
            with open(p, "rb") as f:
                if size > 4 << 20:
                    while True:
                        b = f.read(512 << 10)
                        if not b:
                            break
                        units[hashlib.sha256(b).hexdigest()] = len(b)
                else:
                    units[hashlib.sha256(f.read()).hexdigest()] = size
    for h in sorted(units):
        print(h, units[h])


def manifest_get(args):
    """Print a stored snapshot manifest (<label>.json.zst) as JSON."""
    import subprocess
    sys.stdout.write(subprocess.run(["zstd", "-q", "-d", "-c", args.file], check=True,
                                    stdout=subprocess.PIPE).stdout.decode())


def manifest_put(args):
    """Store JSON from stdin as a manifest object: zstd frames plus ragsafe's
    skippable trailer frame (zst.h: size and SHA-256 of the original bytes)."""
    import hashlib
    import struct
    import subprocess
    raw = sys.stdin.buffer.read()
    comp = subprocess.run(["zstd", "-q", "-c"], input=raw, check=True,
                          stdout=subprocess.PIPE).stdout
    trailer = struct.pack("<II4sIQ", 0x184D2A5E, 48, b"RGSF", 1, len(raw)) + \
        hashlib.sha256(raw).digest()
    with open(args.file, "wb") as f:
        f.write(comp + trailer)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=0, help="0: any free port, see --portfile")
    s.add_argument("--portfile")
    s.add_argument("--state", required=True)
    s.add_argument("--log")
    s.add_argument("--pidfile")
    s.add_argument("--max-seconds", type=float, default=600)
    g = sub.add_parser("gen")
    g.add_argument("dir")
    g.add_argument("--mb", type=int, default=60)
    g.add_argument("--seed", type=int, default=1)
    r = sub.add_parser("grow")
    r.add_argument("dir")
    r.add_argument("--percent", type=int, default=2)
    r.add_argument("--seed", type=int, default=2)
    t = sub.add_parser("tree")
    t.add_argument("dir")
    d = sub.add_parser("digests")
    d.add_argument("dir")
    for name in ("manifest-get", "manifest-put"):
        m = sub.add_parser(name)
        m.add_argument("file")
    args = ap.parse_args()
    {"serve": serve, "gen": gen, "grow": grow, "tree": tree, "digests": digests,
     "manifest-get": manifest_get, "manifest-put": manifest_put}[args.cmd](args)


if __name__ == "__main__":
    main()
