# s3_proxy.py -- S3 fault/latency proxy for the tests: python3 s3_proxy.py LISTEN_PORT UPSTREAM_PORT CONTROL_FILE
# CONTROL_FILE holds one line, read on every request:
#   ok | delay MS | fail500 N [SKIP] | cut N [SKIP]
# fail500 / cut: after SKIP requests pass, the next N requests fail: 500 InternalError,
# or (cut, GETs with a body) half the body and then the connection closes.
import http.client, http.server, sys, threading, time, os
listen, upstream, control = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()

def take(kind):
    """Decrement the counter of kind in the control file; True when one was left."""
    with lock:
        try:
            words = open(control).read().split()
        except OSError:
            return False, 0
        if len(words) in (2, 3) and words[0] == kind:
            n = int(words[1])
            skip = int(words[2]) if len(words) == 3 else 0
            if kind == 'delay':
                return True, n
            if skip > 0:
                open(control, 'w').write('%s %d %d\n' % (kind, n, skip - 1))
                return False, 0
            if n > 0:
                open(control, 'w').write('%s %d\n' % (kind, n - 1))
                return True, n
        return False, 0

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a):
        pass
    def handle_any(self):
        n = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(n) if n else None
        d, ms = take('delay')
        if d:
            time.sleep(ms / 1000.0)
        if take('fail500')[0]:
            msg = b'<?xml version="1.0"?><Error><Code>InternalError</Code><Message>injected</Message></Error>'
            self.send_response(500)
            self.send_header('Content-Length', str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        c = http.client.HTTPConnection('127.0.0.1', upstream, timeout=60)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ('connection',)}
        c.request(self.command, self.path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        cut = self.command == 'GET' and len(data) > 1000 and take('cut')[0]
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
            if cut:
                self.wfile.write(data[:len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data)
        c.close()
    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(('127.0.0.1', listen), H).serve_forever()
