"""Files a fake upstream serves behind expiring, token-carrying links
(stdlib only; SPEC §9, issue 13). Used by seqapi.py, smseagle.py and
unipile.py.

A link is {base}/files/{id}?expires=<epoch s>&token=<per-link token>. Every
token holds the fake's link secret (Files.secret; a test greps for it: it
must never appear in msgsync's output, logs or rows) and the links'
generation: expire() starts a new generation, and every link given out
before then is refused (403), while links given out from then on work.

What the controls of a fake map to (the lock of the fake is held):
  expire()          every link served so far stops working
  cut += n          the next n file bodies are cut mid-transfer (the whole
                    Content-Length announced, half of the body sent, then
                    the connection closed)
  slow = [delay, n] the next n bodies (-1: all) take delay seconds each,
                    sent in pieces
  gone.add(id)      the file is gone for good: 410
Bytes are deterministic: a file's own content, or pattern(id, size).
"""

import hashlib
import ssl
import time
from urllib.parse import quote

SECRET = "lnkSEKRIT7q"
TTL = 7 * 86400


def pattern(fid, size):
    """size deterministic bytes of file fid."""
    seed = hashlib.sha256(("file/%s" % fid).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def base_of(handler):
    """scheme://host[:port] of the fake as the client addressed it."""
    tls = isinstance(handler.connection, ssl.SSLSocket)
    host = handler.headers.get("Host")
    if not host:
        host = "%s:%d" % handler.server.server_address[:2]
    return "%s://%s" % ("https" if tls else "http", host)


class Files:
    def __init__(self, secret=SECRET, ttl=TTL):
        self.secret, self.ttl = secret, ttl
        self.gen, self.gen_start = 0, int(time.time())
        self.content = {}       # id -> bytes of files with content of their own
        self.gone = set()
        self.cut = 0
        self.slow = None        # [delay, n]
        self.served = self.refused = self.cuts = 0

    def expires(self):
        return self.gen_start + self.ttl

    def token(self, fid, gen=None):
        gen = self.gen if gen is None else gen
        h = hashlib.sha256(("%s/%d/%s" % (self.secret, gen, fid)).encode()).hexdigest()
        return "%s-%d-%s" % (self.secret, gen, h[:16])

    def link(self, base, fid):
        """The current link of file fid under base."""
        return "%s/files/%s?expires=%d&token=%s" % (base, quote(str(fid), safe=""),
                                                    self.expires(), self.token(fid))

    def expire(self):
        self.gen += 1
        self.gen_start = int(time.time())
        return {"generation": self.gen, "expires": self.expires()}

    def state(self):
        return {"secret": self.secret, "generation": self.gen, "expires": self.expires(),
                "files": len(self.content), "gone": sorted(self.gone), "cut": self.cut,
                "slow": self.slow, "served": self.served, "refused": self.refused,
                "cuts": self.cuts}

    def control(self, what, d):
        """The shared media controls (the fake's lock held): the answer, or
        None when what is not one of them."""
        if what == "media_expire":
            return self.expire()
        if what == "media_cut":
            self.cut += int(d.get("n", 1))
            return {"cut": self.cut}
        if what == "media_slow":
            self.slow = [float(d.get("delay", 5)), int(d.get("n", 1))]
            return {"slow": self.slow}
        if what == "media_clear":
            self.cut, self.slow = 0, None
            return {"ok": True}
        return None

    def check(self, fid, q, exists):
        """The status a request for file fid with query q (a dict) gets."""
        if not exists:
            return 404
        if fid in self.gone:
            return 410
        try:
            exp = int(q.get("expires", ""))
        except ValueError:
            return 403
        if q.get("token") != self.token(fid) or exp != self.expires() or exp < time.time():
            return 403
        return 200

    def plan(self):
        """How the next body goes out: ("cut"|"slow"|None, delay)."""
        if self.cut > 0:
            self.cut -= 1
            self.cuts += 1
            return "cut", 0
        if self.slow is not None and self.slow[1] != 0:
            delay = self.slow[0]
            if self.slow[1] > 0:
                self.slow[1] -= 1
            return "slow", delay
        return None, 0


def send_body(handler, body, ctype, how, delay, headers=()):
    """Answers 200 with body (bytes) as planned: whole, cut mid-transfer,
    or trickled over delay seconds."""
    if how is None:
        handler.respond(200, body, ctype=ctype, headers=headers)
        return
    if how == "cut":
        handler.close_connection = True
        handler.respond(200, body[:len(body) // 2], ctype=ctype, headers=headers,
                        clen=len(body))
        handler.hangup()
        return
    # Slow: the head at once, the body in 20 pieces over delay seconds.
    h = ["HTTP/1.1 200 OK", "Content-Type: %s" % ctype, "Content-Length: %d" % len(body),
         "Connection: close"] + ["%s: %s" % kv for kv in headers]
    handler.close_connection = True
    if handler.entry is not None:
        handler.entry["status"], handler.entry["t_end"] = 200, time.time()
    handler.status_sent = 200
    try:
        handler.wfile.write(("\r\n".join(h) + "\r\n\r\n").encode("latin-1"))
        step = max(1, len(body) // 20)
        for k in range(0, max(1, len(body)), step):
            handler.wfile.write(body[k:k + step])
            handler.wfile.flush()
            time.sleep(delay / 20.0)
    except (BrokenPipeError, ConnectionResetError):
        pass


def serve_file(handler, files, fid, q, content, ctype="application/octet-stream"):
    """Serves GET /files/{fid}?expires&token (the fake's lock NOT held):
    content is the file's bytes, or None when there is no such file."""
    st = handler.server.state
    with st.lock:
        code = files.check(fid, q, content is not None)
        how, delay = files.plan() if code == 200 else (None, 0)
        if code == 200:
            files.served += 1
        else:
            files.refused += 1
    if code != 200:
        why = {404: "no such file", 410: "gone", 403: "link expired or not valid"}[code]
        handler.respond(code, '{"error":"%s"}' % why, ctype="application/json")
        return
    send_body(handler, content, ctype, how, delay)
