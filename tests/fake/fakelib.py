"""Server plumbing shared by msgsync's fake upstreams (stdlib only).

A fake (seqapi.py, smseagle.py, ...) is three pieces on top of this module:

  * a State subclass: its data, beside the request log, gates, faults and
    counters kept here. One lock (state.lock, with state.cond on it) guards
    all of it; every State method here expects the caller to hold it,
    except admit(), which takes it.
  * a Handler subclass: its API, in api(method, url), which builds the
    request's log entry and calls serve_logged(). The class attributes
    below say how it answers (content type, fault kinds, fault bodies).
  * main(): argparse with add_server_args(), then serve(args, Handler, state).

A fake whose rules select more than the endpoint (facebook's "page", a
list of endpoints) overrides State.matches(); one that counts more per
request (facebook's "i" and "http") overrides State.record().

What every fake gets the same way:

  HTTP    HTTP/1.1 keep-alive, TCP_NODELAY, one write per response
          (reference/README.md: otherwise Nagle against delayed ACK stalls
          every response), gzip when state.gzip is on and the client accepts
          it; ThreadingHTTPServer on --host (127.0.0.1), --port (0: any);
          the port is written atomically to --port-file (else to stdout)
          once the socket listens; --exit-with-parent; --verbose logs;
          HTTPS with --tls-cert and --tls-key (tests/e2e/tls_e2e.py).
  Log     every API request counts in total and by_endpoint; the first
          log_cap are kept as log entries (dicts the fake builds: at least
          "endpoint", and "status"/"t_end", which are filled in just before
          the answer is written, so a client that has its answer finds its
          status in the log; serve_logged() fills them if none is written).
  Gates   {"endpoint","after":N, ...} lets N requests to the endpoint ("*":
          any) through, then holds each further one until /_control/release
          (at most gate_timeout seconds); "blocked" counts the held ones.
  Faults  {"endpoint","kind","times":1 (-1 = forever),"after":0, ...}: the
          first matching fault whose "after" is used up acts on the request,
          every matching fault with "after" left counts one down. The
          handler gets a copy of the fault (with its extra keys) or None.
          Kinds every fake answers alike (answer_fault()): slow (+"delay":5,
          then the normal answer), close (no answer), http (+"status":500,
          +"body"), 429 (+"retry_after":1), nonjson (200 text/html);
          truncate and truncate_conn cut a 200 body (respond_page()).
  Control (not logged; JSON bodies must be objects; errors are 400 {"error"}):
          POST fault, clear_faults, gate, release, clear_log;
          GET  requests[?endpoint=E&since=K] {"count","total","requests"},
               stats {"total","by_endpoint","blocked","connections","faults",
               "gates"}, wait?endpoint=E&count=N[&blocked=B][&timeout=30]
               (blocks until that many requests and held ones; 408 with the
               stats on timeout). Other names go to the fake's control_get()
               (any method) and control_post() (POST only, under state.cond,
               which is notified after).
"""

import gzip
import json
import os
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class State:
    """The request log, gates, faults and counters of one fake."""

    log_cap = 200000        # log entries kept (total and by_endpoint go on)
    gate_timeout = 120      # seconds a gate holds a request at the most

    def __init__(self, token):
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.token = token
        self.latency = 0.0  # seconds every API request waits before its answer
        self.gzip = False
        self.faults, self.gates, self.log, self.by_endpoint = [], [], [], {}
        self.blocked = self.total = self.conn_serial = 0

    def connect(self):
        """Counts a new connection; returns its number (from 1)."""
        with self.lock:
            self.conn_serial += 1
            return self.conn_serial

    def matches(self, rule, endpoint, entry):
        """Whether a gate or fault (rule) acts on a request to endpoint
        whose log entry is entry."""
        return rule["endpoint"] in (endpoint, "*")

    def record(self, endpoint, entry):
        """Counts a request to endpoint and logs its entry (the lock is held)."""
        self.total += 1
        self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1
        if len(self.log) < self.log_cap:
            self.log.append(entry)

    def admit(self, endpoint, entry, hold=True):
        """Logs a request to endpoint, holds it at a gate (if hold), returns
        a copy of the fault that acts on it (or None). Takes the lock."""
        with self.cond:
            self.record(endpoint, entry)
            self.cond.notify_all()
            gate = None
            for g in self.gates if hold else ():
                if self.matches(g, endpoint, entry):
                    if g["skip"] > 0:
                        g["skip"] -= 1
                    else:
                        gate = g
                        break
            if gate is not None:
                self.blocked += 1
                self.cond.notify_all()
                deadline = time.monotonic() + self.gate_timeout
                while gate in self.gates and time.monotonic() < deadline:
                    self.cond.wait(1.0)
                self.blocked -= 1
                self.cond.notify_all()
            fault = None
            for f in self.faults:
                if self.matches(f, endpoint, entry):
                    if f["skip"] > 0:
                        f["skip"] -= 1
                    elif fault is None:
                        fault = f
            if fault is not None and fault["times"] > 0:
                fault["times"] -= 1
                if fault["times"] == 0:
                    self.faults.remove(fault)
            return dict(fault) if fault else None

    def add_fault(self, d, kinds):
        """Adds the fault of a /_control/fault body d (its other keys kept);
        ValueError unless its kind is one of kinds."""
        f = dict({k: v for k, v in d.items() if k != "after"},
                 endpoint=d.get("endpoint", "*"), kind=str(d["kind"]),
                 times=int(d.get("times", 1)), skip=int(d.get("after", 0)))
        if f["kind"] not in kinds:
            raise ValueError("unknown fault kind '%s'" % f["kind"])
        self.faults.append(f)
        return {"faults": len(self.faults)}

    def add_gate(self, d):
        """Adds the gate of a /_control/gate body d (its other keys kept)."""
        self.gates.append(dict({k: v for k, v in d.items() if k != "after"},
                               endpoint=d.get("endpoint", "*"), skip=int(d.get("after", 0))))
        return {"gates": len(self.gates)}

    def clear_log(self):
        self.log, self.total, self.by_endpoint = [], 0, {}

    def requests(self, endpoint=None, since=0):
        """Copies of the log entries from the since'th on, of endpoint (None: all)."""
        reqs = [dict(r) for r in self.log[since:] if endpoint is None or r["endpoint"] == endpoint]
        return {"count": len(reqs), "total": self.total, "requests": reqs}

    def stats(self):
        return {"total": self.total, "by_endpoint": dict(self.by_endpoint),
                "blocked": self.blocked, "connections": self.conn_serial,
                "faults": len(self.faults), "gates": len(self.gates)}


class Handler(BaseHTTPRequestHandler):
    """One connection. A fake sets the attributes below and implements api()
    and, for its own controls, control_get() and control_post()."""

    protocol_version = "HTTP/1.1"
    server_version = "fake/1"        # its name ("fake-x/1") also prefixes --verbose logs
    sys_version = ""
    content_type = "application/json"
    encode_errors = "strict"         # how str bodies become UTF-8
    control_ascii = True             # json.dumps(ensure_ascii) of control answers
    fault_kinds = ("http", "429", "truncate", "truncate_conn", "nonjson", "slow", "close")
    http_fault_body = '{"error":"internal error"}'     # str, or an object for dumps()
    rate_limit_body = '{"error":"rate limited"}'
    nonjson_body = "<html><body>502 Bad Gateway</body></html>\n"
    internal_error = None            # if set: an exception in api() answers 500 with it
    control_exceptions = (KeyError, ValueError, TypeError, AttributeError)   # -> 400
    log_answers = False              # --verbose logs every answer too (not only errors)
    get_only = ()                    # controls that answer GET only (else: any method)
    entry = None                     # the log entry of the request being answered

    def setup(self):
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn_id = self.server.state.connect()

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s: %s\n" % (self.server_version.split("/")[0], fmt % args))

    # -- answers ------------------------------------------------------------

    def _write(self, code, body, ctype, headers, clen):
        """Writes status line, headers and body (bytes) in one write;
        Content-Length says clen. Records the status in self.status_sent
        and, before the write, with t_end in the request's log entry."""
        h = ["HTTP/1.1 %d %s" % (code, self.responses.get(code, ("",))[0]),
             "Content-Type: %s" % ctype,
             "Content-Length: %d" % clen,
             "Connection: %s" % ("close" if self.close_connection else "keep-alive")]
        h += ["%s: %s" % kv for kv in headers]
        if self.entry is not None:
            self.entry["status"], self.entry["t_end"] = code, time.time()
        try:
            self.wfile.write(("\r\n".join(h) + "\r\n\r\n").encode("latin-1") + body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        self.status_sent = code
        if self.log_answers and self.server.verbose:
            self.log_request(code, len(body))

    def respond(self, code, body, ctype=None, headers=(), clen=None):
        """Answers body (str or bytes), gzipped if state.gzip is on, the body
        is over 256 bytes and the client accepts gzip. clen: announce that
        Content-Length instead (never gzipped)."""
        if isinstance(body, str):
            body = body.encode("utf-8", self.encode_errors)
        headers = list(headers)
        if clen is None:
            if (self.server.state.gzip and len(body) > 256
                    and "gzip" in (self.headers.get("Accept-Encoding") or "")):
                body = gzip.compress(body, 1)
                headers.append(("Content-Encoding", "gzip"))
            clen = len(body)
        self._write(code, body, ctype or self.content_type, headers, clen)

    def dumps(self, obj):
        """The fake's JSON text of an API answer."""
        return json.dumps(obj)

    def respond_json(self, code, obj, headers=()):
        self.respond(code, self.dumps(obj), headers=headers)

    def hangup(self):
        """Drops the connection (no answer, or no rest of one)."""
        self.close_connection = True
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def answer_fault(self, fault):
        """Acts on the fault kinds every fake answers alike; True if the
        request is answered by that ("slow" only waits). fault may be None."""
        k = fault["kind"] if fault else None
        if k == "slow":
            time.sleep(float(fault.get("delay", 5)))
        elif k == "close":
            self.hangup()
        elif k == "http":
            b = fault.get("body", self.http_fault_body)
            self.respond(int(fault.get("status", 500)),
                         b if isinstance(b, (str, bytes)) else self.dumps(b))
        elif k == "429":
            self.respond(429, self.rate_limit_body,
                         headers=[("Retry-After", str(fault.get("retry_after", 1)))])
        elif k == "nonjson":
            self.respond(200, self.nonjson_body, ctype="text/html")
        else:
            return False
        return k != "slow"

    def respond_page(self, kind, body, code=200, headers=()):
        """Answers body (bytes, or str of ASCII JSON) with code, cut in half
        if kind is "truncate" (valid HTTP), or "truncate_conn" (announcing
        the whole length, then hanging up)."""
        if kind == "truncate":
            self.respond(code, body[:max(1, len(body) // 2)], headers=headers)
        elif kind == "truncate_conn":
            self.close_connection = True
            self.respond(code, body[:len(body) // 2], headers=headers, clen=len(body))
            self.hangup()
        else:
            self.respond(code, body, headers=headers)

    # -- requests -------------------------------------------------------------

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def read_body(self):
        """The request body (Content-Length bytes; none without it)."""
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def headers_without(self, secret):
        """The request headers less the one (any case) that carries a secret."""
        return {k: v for k, v in self.headers.items() if k.lower() != secret}

    def dispatch(self, method):
        self.status_sent = self.entry = None
        u = urlsplit(self.path)
        if u.path.startswith("/_control/"):
            raw = self.read_body()
            try:
                d = json.loads(raw) if raw.strip() else {}
                if not isinstance(d, dict):
                    raise ValueError("the body must be a JSON object")
                q = {k: v[-1] for k, v in parse_qs(u.query).items()}
                self.control(method, u.path[len("/_control/"):], d, q)
            except self.control_exceptions as e:
                self.respond(400, self.control_dumps({"error": self.control_error(e)}, True))
            return
        try:
            self.api(method, u)
        except Exception:
            if self.internal_error is None:
                raise
            traceback.print_exc()
            if self.status_sent is None:
                self.close_connection = True
                self.respond_json(500, self.internal_error)

    def api(self, method, u):
        """The fake's API (u: the urlsplit request path)."""
        self.respond(404, self.dumps({"error": "not found"}))

    def serve_logged(self, endpoint, entry, serve):
        """Logs the request (entry) under endpoint, holds it at a gate,
        waits state.latency, calls serve(fault). The answer's status and
        t_end go to entry as it is written (an answer to a failed serve()
        too); without an answer, status None and t_end when serve() ends."""
        st = self.server.state
        self.entry = entry
        fault = st.admit(endpoint, entry)
        try:
            if st.latency:
                time.sleep(st.latency)
            serve(fault)
        finally:
            if self.status_sent is None:
                entry["status"], entry["t_end"] = None, time.time()

    # -- control API ----------------------------------------------------------

    def control_error(self, e):
        """The "error" text of a 400 control answer."""
        return "%s: %s" % (type(e).__name__, e)

    def control_dumps(self, obj, error=False):
        """The JSON text of a control answer (error: of a 400 one)."""
        return json.dumps(obj, ensure_ascii=error or self.control_ascii)

    def control(self, method, what, d, q):
        st = self.server.state
        code, res = 200, None
        if method != "GET" and what in self.get_only:
            pass                            # not one of that method's: 404
        elif what == "wait":
            code, res = self.control_wait(q)
        elif what == "stats":
            with st.lock:
                res = st.stats()
        elif what == "requests":
            with st.lock:
                res = st.requests(q.get("endpoint"), int(q.get("since", 0)))
        else:
            res = self.control_get(what, q)
            if res is None and method == "POST":
                with st.cond:
                    res = self.shared_post(what, d)
                    if res is None:
                        res = self.control_post(what, d)
                    st.cond.notify_all()
        if res is None:
            code, res = 404, {"error": "unknown control '%s'" % what}
        self.respond(code, self.control_dumps(res))

    def control_wait(self, q):
        st = self.server.state
        ep = q.get("endpoint")
        count, blocked = int(q.get("count", 0)), int(q.get("blocked", 0))
        deadline = time.monotonic() + float(q.get("timeout", 30))
        with st.cond:
            while True:
                n = st.by_endpoint.get(ep, 0) if ep else st.total
                if n >= count and st.blocked >= blocked:
                    return 200, st.stats()
                left = deadline - time.monotonic()
                if left <= 0:
                    return 408, st.stats()
                st.cond.wait(min(left, 1.0))

    def shared_post(self, what, d):
        """The POST controls every fake has (the lock is held)."""
        st = self.server.state
        if what == "fault":
            return st.add_fault(d, self.fault_kinds)
        if what == "clear_faults":
            st.faults = []
            return {"faults": 0}
        if what == "gate":
            return st.add_gate(d)
        if what == "release":
            st.gates = []
            return {"gates": 0}
        if what == "clear_log":
            st.clear_log()
            return {"ok": True}
        return None

    def control_get(self, what, q):
        """The fake's own controls of any method: the answer object, or None
        if what is not one. Takes the lock itself."""
        return None

    def control_post(self, what, d):
        """The fake's own POST controls (the lock is held): the answer
        object, or None if what is not one."""
        return None


# ---------------------------------------------------------------------------
# The server

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def write_port_file(path, port):
    """Writes port to path atomically (a reader never sees it half written)."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, path)


def watch_parent():
    """Exits the process (at once, without cleanup) when its parent goes away."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


def add_server_args(ap, token="test-token", token_help=None):
    """The options serve() reads: --host --port --port-file --token (with
    that default and help; token None: none, the fake has its own)
    --verbose --exit-with-parent."""
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    if token is not None:
        ap.add_argument("--token", default=token, help=token_help)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="exit when the process that started us goes away")
    ap.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate "
                    "(chain) and --tls-key")
    ap.add_argument("--tls-key")


def serve(args, handler, state):
    """Listens on args.host:args.port with handler over state, announces the
    port (args.port_file or stdout) and serves until interrupted; returns 0."""
    srv = Server((args.host, args.port), handler)
    srv.state = state
    if getattr(args, "tls_cert", None):
        import ssl
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        # The handshake happens in the request's thread, on its first read:
        # a client that refuses the certificate never blocks the listener.
        srv.socket = tls.wrap_socket(srv.socket, server_side=True,
                                     do_handshake_on_connect=False)
    srv.verbose = args.verbose
    if args.exit_with_parent:
        watch_parent()
    if args.port_file:
        write_port_file(args.port_file, srv.server_address[1])
    else:
        print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0
