#!/usr/bin/env python3
"""A plain file server, a provider's CDN, for the engine's media-sync tests
(tests/e2e/media_e2e.py) and make bench (the fakes of the source types
serve their own files through fakefiles.py):
GET /f/NAME serves the file NAME of --dir, as a CDN serves a signed link.

Its ugly corners, switched on through POST /_control/set {...}:
  token: "T"      a link without token=T is refused (403)
  cut: N          the next N bodies stop halfway (the Content-Length is whole)
  slow: B         bodies are sent at about B bytes a second
  gone: [NAME]    those files answer 410 Gone
A link whose expires= (epoch seconds) is past is refused (403).
GET /_control/log lists the requests: path, query, the Authorization and
X-API-KEY headers they carried.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakelib  # noqa: E402


class State:
    def __init__(self, root):
        self.root = root
        self.lock = threading.Lock()
        self.token = None
        self.cut = 0
        self.slow = 0
        self.gone = set()
        self.log = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, body=b"", ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        st = self.server.state
        n = int(self.headers.get("Content-Length") or 0)
        d = json.loads(self.rfile.read(n) or b"{}")
        if self.path == "/_control/set":
            with st.lock:
                for k in ("token", "cut", "slow"):
                    if k in d:
                        setattr(st, k, d[k])
                if "gone" in d:
                    st.gone = set(d["gone"])
            return self.reply(200, b"{}", "application/json")
        self.reply(404)

    def do_GET(self):
        st = self.server.state
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        if u.path == "/_control/log":
            with st.lock:
                body = json.dumps(st.log).encode()
            return self.reply(200, body, "application/json")
        with st.lock:
            st.log.append({"path": u.path, "query": u.query,
                           "authorization": self.headers.get("Authorization"),
                           "x_api_key": self.headers.get("X-API-KEY")})
            token, gone = st.token, u.path[3:] in st.gone
            cut = st.cut > 0
            if cut:
                st.cut -= 1
            slow = st.slow
        if not u.path.startswith("/f/") or "/" in u.path[3:]:
            return self.reply(404, b"not found")
        name = u.path[3:]
        path = os.path.join(st.root, name)
        if gone:
            return self.reply(410, b"gone")
        if token is not None and q.get("token", [None])[0] != token:
            return self.reply(403, b"link refused: no valid token")
        exp = q.get("expires", [None])[0]
        if exp is not None and int(exp) < time.time():
            return self.reply(403, b"link expired")
        try:
            f = open(path, "rb")
        except OSError:
            return self.reply(404, b"not found")
        with f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            limit = size // 2 if cut else size
            sent = 0
            chunk = 1 << 20 if not slow else max(1, slow // 20)
            while sent < limit:
                b = f.read(min(chunk, limit - sent))
                if not b:
                    break
                self.wfile.write(b)
                sent += len(b)
                if slow:
                    self.wfile.flush()
                    time.sleep(len(b) / slow)
            if cut:
                self.wfile.flush()
                self.close_connection = True


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    fakelib.add_server_args(ap, token=None)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--token", help="ignored (the harness passes one)")
    args = ap.parse_args()
    return fakelib.serve(args, Handler, State(args.dir))


if __name__ == "__main__":
    sys.exit(main())
