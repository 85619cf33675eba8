#!/usr/bin/env python3
"""Fake Facebook Graph API (Page conversations: Messenger and Instagram) for
msgsync's tests (stdlib only). Imitates /work/shared/reference/
facebook-unipile.md §A with the shapes of reference/fixtures/facebook/.
Paths take an optional version prefix (any vNN.N; none = --version, v21.0):

  GET  /{page-id}/conversations?platform=messenger|instagram (any case)&fields
       &limit&after&before&user_id -> {"data":[..],"paging":{"cursors":{"before",
       "after"},"previous"?,"next"?}}
  GET  /{conversation-id}?fields=id,..,messages.limit(n).after(c){id,from,..}
  GET  /{conversation-id}/messages?fields&limit&after&before   (newest first)
  GET  /{message-id}?fields=id,created_time,from,to,message,attachments,tags
  GET  /me, /{page-id}  -> {"name","id"} of the Page, and with
       fields=instagram_business_account {"instagram_business_account":{"id"}}
  POST /  (batch; form or JSON: access_token, appsecret_proof, batch,
       include_headers) -> [{"code","headers"?,"body":"<json string>"} | null]
  GET  /cdn/{attachment-id}?oe=<hex epoch>&token=<per-link token>  the bytes
       of an attachment (the fake's own host stands for the CDN)

FROM THE REFERENCE: access_token query/form parameter, bad or missing -> 400
code 190 "Invalid OAuth access token - Cannot parse access token";
appsecret_proof = hex HMAC-SHA256(key=app secret, msg=token), required with
--app-secret (wrong: 100 "Invalid appsecret_proof provided in the API
argument", missing: 100 "API calls from the server require an appsecret_proof
argument", OAuthException); the conversation/message fields and shapes
(participants, senders, from, to {name,email,id}, Instagram {username,id};
"message" "" without text; attachments/tags only when they have data); ids
t_<digits>, m_<b64>, aWdf<b64> (Instagram); times "2026-11-21T09:15:02+0000";
default fields id,updated_time / id,created_time; the end of a list is the
absence of "next" (cursors on every non-empty page); absolute next/previous
URLs carrying access_token (and appsecret_proof when sent); nested
messages.limit(n){..} with its own paging, next pointing to /{id}/messages;
user_id -> {"data":[{"id"}]} without paging; since/until/folder/tags ignored;
errors HTTP 400 {"error":{message,type,code,error_subcode?,is_transient?,
fbtrace_id}} with the fixture texts (4, 32, 613, 80001, 80002, 80006, 100
"After Cursor ... exceeds"); the usage headers; batch <= 50 ops, body a JSON
string, null = not finished.

CHOICES (not in the reference; the real Graph may differ):
  * Order: conversations by updated_time desc, messages by created_time desc,
    ties by id desc (string comparison). Cursors are opaque base64 ("QVFIU.."
    = b"AQHR"+JSON) holding the key of the edge item, so items added during a
    walk are neither repeated nor skipped; config cursor_mode "offset" holds
    an offset instead (new items shift later pages: duplicates). Garbage or
    another list's cursor -> 100 "(#100) Invalid cursor".
  * limit: default 25 (also nested), silently capped at max_limit (100);
    unparsable or < 1 = the default.
  * Empty page with next: data [] plus cursors/next that resume at the same
    place (new strings, so "after repeated" checks do not fire). config
    empty_pages alternates after-requests of the conversations and /messages
    edges: real, empty, real, ... (first page real); fault empty_page empties
    one answer (if items remain).
  * Instagram (ig_detail_limit 20; messenger_detail_limit null = none): lists
    render messages ranked >= 20 (newest first) with id and created_time only;
    GET /{message-id} of one -> 400 "(#100) The requested message has been
    deleted", OAuthException, code 100 (wording invented, reference §C.3).
  * Another page's token: /{page}/conversations -> 400 code 200 "(#200)
    Permissions error"; its conversation/message ids, and unknown ids -> 100
    subcode 33 GraphMethodException "Unsupported get request. Object with ID
    '..' does not exist, ...". Unknown edge -> 100 "(#100) Tried accessing
    nonexisting field (x) on node type (Page)"; bad fields -> 2500; other
    methods -> 100 "Unsupported post request.".
  * Headers on every answer but http/nonjson/close faults: facebook-api-
    version; X-App-Usage {call_count,total_time,total_cputime}; X-Business-Use-
    Case-Usage {"<page>":[{type,call_count,total_cputime,total_time,
    estimated_time_to_regain_access}]}: type messenger|instagram by platform,
    else "pages"; key the request's page, else the token's. Values from config
    usage (default 1,1,1, eta 0); a rate-limit fault sets eta = regain_minutes
    (default 1) and call_count 100 (X-App-Usage for 4/17, BUC for the others).
  * Batch: GET ops only, no "name"/JSONPath; an op may carry its own
    access_token in relative_url (its proof is then not checked); > 50 -> 400
    code 1 GraphBatchException "Too many requests in batch message. Maximum
    batch size is 50"; include_headers default true ([{name,value}]). Ops are
    logged and counted as requests of their own endpoint ("batch" = log index
    of the POST) and take faults (error/http: that entry's code and body;
    timeout/close: null; truncate/nonjson: broken body; slow); no gates.
  * Data: a user message adds 1 to unread_count (unless "read"), a page
    message resets it; message_count always counts; updated_time and snippet
    follow the newest message (image without text: "You sent a photo." /
    "<First> sent a photo."); an older message is LATE and moves neither
    ("touch" forces either way); a deletion recomputes them only with
    "recompute". Tags (Messenger only): user inbox[,read],source:chat; page
    inbox,read,sent,source:web. 190/463 text is typical, not quoted; fault
    http defaults to 500 with code 2 "An unexpected error has occurred...".

INITIAL DATA per page (--conversations N, --messages M (3)): conversation k
has its newest message at now - (N-k)*30d // (N+1), except that k % 10 == 9
ties with k-1; --platform-mix puts k % 3 == 2 on Instagram. Message j at
newest - (M-1-j)*97 s, the newest from the user, then alternating; it is
unread if k % 4 == 0. Every 5th message (global serial) has an image, every
10th then no text (--attachments-every N: every Nth, 0 none). Tokens
"token-<PAGE>" (--token T: T for every page).

CONTROL API (/_control/..., JSON, not logged; errors 400 {"error"}). Times:
"at" (ISO or Graph format, naive = UTC, or epoch) or "ago" (s), default now;
"page" defaults to the first. Faults and gates act before the token check.
  POST conversation {"page","platform","n":1,"participants":[{..}],"at"|"ago",
       "cstep":0,"messages":1,"step":0,"from":"user","text","read"} -> {"ids"};
       conversation i of n has its newest message at t-(n-1-i)*cstep, message j
       of K at that-(K-1-j)*step, alternating so that the newest is "from"
  POST message {"conversation","page"?,"n":1,"from":"user"|"page","text","at"|
       "ago","step":0,"attachments":false,"read":false,"touch":null} -> {"ids"}
  POST edit_conversation {"id","fields":{"updated_time":time,"message_count",
       "unread_count","snippet","can_reply",..any},"at"|"ago" (= updated_time)}
       -> {"conversation": as in dump}
  POST delete_message {"ids","recompute":false}, delete_conversation {"ids"}
       -> {"deleted":n}; restore_message {"ids"} -> {"restored":n} (deleted
       messages back, as they were; their conversation's fields unchanged)
  POST fault {"endpoint":"conversations|conversation|messages|message|batch|page|
       other|*" ("a|b" or a list),"page"?,"kind","times":1 (-1 forever),"after":0}
       kind = error (+"code":80006|4|17|32|613|80001|80002|190|100|any,
       "error_subcode","message","type","is_transient","status":400,
       "regain_minutes":1) or just the code ("80006") | http (+"status","body")
       | close | slow (+"delay":5) | truncate (JSON cut in half) | nonjson (200
       text/html) | empty_page (+"fresh":true: a new 'after' string every
       time, the same place) | cycle (lists: the first two 'after' cursors
       are real, then they alternate: A, B, A, B, ...) | timeout (batch:
       "entries":[i..] null, default the last; an op: null) | 429
       (+"retry_after":1: HTTP 429 with Retry-After, as a proxy in front of
       the Graph API answers: {"error":{"code":429,"status":...,"message":..}})
       | bad_row (a list answer's middle item, with +"first":true its first,
       gets an id that is an object)
  POST clear_faults | gate {"endpoint","page"?,"after":N} (hold requests after
       the Nth until release) | release | clear_log
  POST config {"token":"T"|{"PAGE":"T"},"app_secret":S|null,"latency":s,
       "empty_pages","max_limit","default_limit","max_batch","usage":{..}|null,
       "ig_detail_limit","messenger_detail_limit","cursor_mode","version"} -> all
  GET  requests[?endpoint=E&since=I] {"count","total","requests":[{i,method,path,
       version,endpoint,page,query (access_token/appsecret_proof "***"),token_ok,
       proof_ok (null without app secret),batch,status,conn,t,t_end}]}
  GET  stats {"total","http","by_endpoint","blocked","connections","faults","gates"}
  GET  wait?endpoint=E&count=N[&blocked=B][&timeout=30]  (408 on timeout)
  GET  state {"pages":{id:{name,ig_id,messenger:{conversations,messages},
       instagram:{..}}},"now","config"}
  GET  dump[?page=&platform=] {"count","conversations":[API order, every field,
       page, platform, updated_epoch, messages:[newest first, every field,
       created_epoch, from_page, read, detail]]}

ATTACHMENTS (SPEC §9; CHOICES): an attachment's link (image_data.url for
image/*, video_data.url for video/*, else file_url) is /cdn/<id>?oe=<hex
expiry>&token=<token> on the fake's own host, like a Facebook CDN link; the
token starts with "fbcdntok" (media_token) and is made per attachment when it
is first rendered, valid for config link_ttl (172800) s: two days, as CDN links
last days. A link whose token is not the attachment's current one, or whose oe
passed, gets 403 "URL signature expired"; an attachment gone for good 404 (and
a read of its message 400 code 100 subcode 33). The bytes are deterministic (SHA-256 blocks of the id) unless
given. Controls:
  POST message {.., "file": {"content_b64","name","mime"}} a message carrying
       that file (its attachment id is returned in "attachments")
  POST expire_links {} every link served so far stops working (a new read of
       the message gives a fresh one) -> {"expired": n}
  POST cut {"n":1} the next n file bodies are cut mid-transfer (half written,
       the whole length announced, then the connection dropped)
  POST gone {"message": id} its files are gone for good; the message cannot
       be read any more (it stays in the listings)
  POST slow {"delay":1,"n":1} the next n file bodies come 16 KiB per delay s
  POST config {"link_ttl": s, "cdn_delay": s (between 16 KiB chunks, always)}
  GET  media_token -> {"token": "fbcdntok"}

Endpoint names (log, faults, gates, wait): cdn (the files), conversations, conversation (GET
/{conversation-id}), messages (its /messages edge), message, batch, page
(/me, /{page-id}), other. The server plumbing is tests/fake/fakelib.py's:
ThreadingHTTPServer on 127.0.0.1, HTTP/1.1 keep-alive, TCP_NODELAY, one write
per response (the log entry gets its status first), --port-file written
atomically once listening, --exit-with-parent, the request log, gates,
faults and the shared controls. Request bodies need a Content-Length.
"""

import argparse
import base64
import hashlib
import hmac
import json
import re
import sys
import time
from bisect import bisect_left, bisect_right
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote, urlsplit

import fakelib


# ===========================================================================
# Graph vocabulary

PLATFORMS = ("messenger", "instagram")
RATE_CODES = (4, 17, 32, 613, 80001, 80002, 80006)
RL = " Wait a bit and try again. For more info, please refer to " \
     "https://developers.facebook.com/docs/graph-api/overview/rate-limiting."
CANNED = {   # code -> (message, subcode, is_transient)
    4: ("(#4) Application request limit reached", None, True),
    17: ("(#17) User request limit reached", None, True),
    32: ("(#32) Page request limit reached", None, None),
    613: ("(#613) Calls to this api have exceeded the rate limit.", None, None),
    80001: ("(#80001) There have been too many calls to this Page account." + RL, None, None),
    80002: ("(#80002) There have been too many calls to this Instagram account." + RL,
            None, None),
    80006: ("(#80006) There have been too many messenger api calls to this Page account." + RL,
            None, None),
    190: ("Error validating access token: Session has expired on Saturday, 21-Nov-26 01:00:00"
          " PST. The current time is Saturday, 21-Nov-26 01:15:02 PST.", 463, None),
    100: ("(#100) The After Cursor specified exceeds the max limit supported by this endpoint",
          None, None),
}
FAULT_KINDS = ("error", "http", "close", "slow", "truncate", "nonjson", "empty_page", "timeout",
               "429", "bad_row", "cycle")
CONV_FIELDS = "id,updated_time,link,message_count,unread_count,snippet,can_reply," \
              "is_subscribed,participants,senders,former_participants,scoped_thread_key"
MSG_FIELDS = "id,created_time,from,to,message,attachments,tags"
TOKEN_PREFIX = "fbcdntok"


def file_bytes(aid, size):
    """The deterministic bytes of attachment aid."""
    out, i = bytearray(), 0
    while len(out) < size:
        out += hashlib.sha256(("%s:%d" % (aid, i)).encode()).digest()
        i += 1
    return bytes(out[:size])
FIRST = ("Alice", "Bob", "Carol", "Dana", "Erik", "Fatima", "Gosia", "Hiro", "Ines", "Zoë")
LAST = ("Example", "Sample", "Tester", "Müller", "Nowak")
TEXTS = ("Is the shop open on Sunday? #%d", "Hello, how can we help? (%d)",
         "Za\u017c\u00f3\u0142\u0107 g\u0119\u015bl\u0105 ja\u017a\u0144 #%d",
         "emoji \U0001F44B\U0001F3FD and \u4f60\u597d #%d",
         'quote "%d", backslash \\ and a newline\nsecond line',
         "Order %d: can I pick it up at 10:00?", "Thanks, see you tomorrow! %d")
HTML = "<html><body><h1>502 Bad Gateway</h1></body></html>\n"
SEP = (",", ":")


class GraphError(Exception):
    def __init__(self, code, message, type_="OAuthException", subcode=None, transient=None,
                 status=400):
        super().__init__(message)
        self.code, self.status = code, status
        self.err = {k: v for k, v in (("message", message), ("type", type_), ("code", code),
                                      ("error_subcode", subcode), ("is_transient", transient))
                    if v is not None}

    def body(self, trace):
        return {"error": dict(self.err, fbtrace_id=trace)}


def no_object(oid):
    return GraphError(100, "Unsupported get request. Object with ID '%s' does not exist, cannot "
                      "be loaded due to missing permissions, or does not support this operation."
                      " Please read the Graph API documentation at https://developers.facebook"
                      ".com/docs/graph-api" % oid, "GraphMethodException", 33)


def no_edge(edge, node):
    return GraphError(100, "(#100) Tried accessing nonexisting field (%s) on node type (%s)"
                      % (edge, node))


def is_error_fault(f):
    return bool(f) and f["kind"] == "error"


def bad_row(body, first=False):
    """Fault bad_row: the middle item of a list answer (with "first": the
    first, the newest, which every walk reads) gets an id that is an object
    (a row that cannot be stored); other answers are left alone."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body
    data = obj.get("data") if isinstance(obj, dict) else None
    i = 0 if first else len(data) // 2 if isinstance(data, list) else 0
    if not isinstance(data, list) or not data or not isinstance(data[i], dict):
        return body
    data[i]["id"] = {"bad": True}
    return json.dumps(obj)


def fault_error(f):
    code = int(f.get("code", 80006))
    msg, sub, tr = CANNED.get(code, ("(#%d) Fake error" % code, None, None))
    return GraphError(code, f.get("message", msg), f.get("type", "OAuthException"),
                      f.get("error_subcode", sub), f.get("is_transient", tr),
                      int(f.get("status", 400)))


def unexpected_error(trace):
    """The body of fault http by default."""
    return {"error": {"message": "An unexpected error has occurred. Please retry your "
                      "request later.", "type": "OAuthException", "is_transient": True,
                      "code": 2, "fbtrace_id": trace}}


def gtime(t):
    return datetime.fromtimestamp(int(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")


TIME_RX = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.\d+)?)?"
                     r"(Z|z|[+-]\d\d:?\d\d)?$")


def parse_time(v):
    """Epoch (number or digits) or ISO 8601 (naive = UTC) -> epoch seconds."""
    s = str(v).strip()
    if not isinstance(v, bool) and re.match(r"^-?\d+(\.\d+)?$", s):
        return int(float(s))
    m = TIME_RX.match(s)
    if not m:
        raise ValueError("bad time %r" % v)
    o = (m.group(7) or "Z").replace(":", "")
    off = 0 if o in "Zz" else (int(o[1:3]) * 60 + int(o[3:5])) * (-1 if o[0] == "-" else 1)
    dt = datetime(*(int(m.group(i) or 0) for i in range(1, 7)), tzinfo=timezone.utc)
    return int(dt.timestamp()) - off * 60


NAME_RX = re.compile(r"\s*([A-Za-z0-9_]+)\s*")
MOD_RX = re.compile(r"\.([A-Za-z_]+)\(([^)]*)\)")


def parse_fields(s):
    """'a,b{c},messages.limit(5).after(X){id}' -> [(name, {mod: arg}, sub|None)]."""
    pos = 0

    def items(closing):
        nonlocal pos
        out = []
        while pos < len(s):
            if s[pos] == closing:
                pos += 1
                return out
            if s[pos] in ", ":
                pos += 1
                continue
            m = NAME_RX.match(s, pos)
            if not m:
                raise GraphError(2500, 'Syntax error "Expected end of string instead of "%s"." '
                                 'at character %d: %s' % (s[pos], pos, s))
            name, mods, sub, pos = m.group(1), {}, None, m.end()
            while pos < len(s) and s[pos] in ".{":
                if s[pos] == "{":
                    pos += 1
                    sub = items("}")
                    continue
                m = MOD_RX.match(s, pos)
                if not m:
                    raise GraphError(2500, "Syntax error at character %d: %s" % (pos, s))
                mods[m.group(1)], pos = m.group(2), m.end()
            out.append((name, mods, sub))
        if closing:
            raise GraphError(2500, 'Syntax error "Expected "}" instead of end of string."')
        return out
    return items(None)


def unparse_fields(spec):
    return ",".join(n + "".join(".%s(%s)" % kv for kv in mods.items())
                    + ("{%s}" % unparse_fields(sub) if sub is not None else "")
                    for n, mods, sub in spec)


def enc_cursor(scope, pos, empty=False):
    raw = json.dumps([scope, pos, int(empty)], separators=SEP).encode()
    return base64.urlsafe_b64encode(b"AQHR" + raw).decode().rstrip("=")


def dec_cursor(c, scope):
    try:
        raw = base64.urlsafe_b64decode(c + "=" * (-len(c) % 4))
        sc, pos, e = json.loads(raw[4:].decode()) if raw[:4] == b"AQHR" else (None, 0, 0)
    except (ValueError, TypeError):
        sc = None
    if sc != scope or not isinstance(pos, list):
        raise GraphError(100, "(#100) Invalid cursor")
    return pos, bool(e)


def b64id(prefix, payload):
    return prefix + base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def proof_of(secret, token):
    return hmac.new(str(secret).encode(), str(token).encode(), hashlib.sha256).hexdigest()


def proof_matches(secret, token, proof):
    return bool(proof) and hmac.compare_digest(proof_of(secret, token).encode(),
                                               str(proof).lower().encode())


def paging_builder(base, token, proof):
    """-> build(path, pairs, limit, parts): a paging block; URLs as Graph's."""
    head = [("access_token", token)] + ([("appsecret_proof", proof)] if proof else [])

    def build(path, pairs, limit, pg):
        keep = [(k, v) for k, v in pairs
                if k not in ("access_token", "appsecret_proof", "after", "before", "limit")]

        def url(k, c):
            return "%s/%s?%s" % (base, path, "&".join(
                "%s=%s" % (quote(a, safe=""), quote(str(b), safe=","))
                for a, b in head + keep + [("limit", limit), (k, c)]))
        out = {"cursors": {"before": pg["before"], "after": pg["after"]}}
        if pg["previous"]:
            out["previous"] = url("before", pg["before"])
        if pg["next"]:
            out["next"] = url("after", pg["after"])
        return out
    return build


# ===========================================================================
# The Graph: pages, conversations, messages

class Graph:
    def __init__(self, args):
        self.ver, self.cache = 0, {}   # ver bumps on every change: sort caches
        self.serial = self.userial = 0
        self.convs, self.msgs, self.pages = {}, {}, {}
        common = [t for t in args.token or [] if "=" not in t]
        for pid in args.page or ["1111"]:
            self.pages[pid] = {"id": pid, "name": "Example Page %s" % pid,
                               "token": common[-1] if common else "token-%s" % pid,
                               "ig_id": "178414" + pid.zfill(11)[-11:],
                               "ig_username": "page%s.shop" % pid}
        for pid, tok in (t.split("=", 1) for t in args.token or [] if "=" in t):
            if pid not in self.pages:
                raise ValueError("--token for unknown page %s" % pid)
            self.pages[pid]["token"] = tok
        self.cfg = {"app_secret": args.app_secret, "latency": 0.0, "empty_pages": False,
                    "max_limit": args.max_limit, "default_limit": 25, "max_batch": 50,
                    "usage": {}, "ig_detail_limit": 20, "messenger_detail_limit": None,
                    "cursor_mode": "key", "version": args.version,
                    "link_ttl": 172800, "cdn_delay": 0.0}
        self.files = {}     # attachment id -> {"bytes", "mime", "gone", "msg"}
        self.links = {}     # attachment id -> (token, oe) of its working link
        self.link_serial = 0
        self.cut = 0
        self.attach_every = args.attachments_every
        self.slow = [0.0, 0]   # delay between 16 KiB chunks, for the next n bodies

    # -- attachments -----------------------------------------------------------

    def link(self, aid, base):
        """The current link of attachment aid on the fake's host (base)."""
        cur = self.links.get(aid)
        if cur is None or cur[1] <= time.time():
            self.link_serial += 1
            tok = TOKEN_PREFIX + hmac.new(b"fake-cdn", ("%s:%d" % (aid, self.link_serial))
                                          .encode(), hashlib.sha256).hexdigest()[:24]
            cur = self.links[aid] = (tok, int(time.time()) + int(self.cfg["link_ttl"]))
        return "%s/cdn/%s?oe=%X&token=%s" % (base, aid, cur[1], cur[0])

    def render_att(self, a, keep, base):
        out = {k: v for k, v in a.items() if not k.startswith("_")}
        url = self.link(a["id"], base or "http://127.0.0.1")
        if a["_kind"] == "image":
            out["image_data"] = dict(a["_data"], url=url, preview_url=url)
        elif a["_kind"] == "video":
            out["video_data"] = dict(a["_data"], url=url)
        else:
            out["file_url"] = url
        return {k: v for k, v in out.items() if not keep or k in keep}

    def cdn(self, aid, q):
        """-> (status, bytes, mime) of GET /cdn/<aid>?oe&token."""
        f = self.files.get(aid)
        if f is None or f["gone"]:
            return 404, b"not found", "text/plain"
        cur = self.links.get(aid)
        try:
            oe = int(q.get("oe", ""), 16)
        except ValueError:
            oe = 0
        if (cur is None or not hmac.compare_digest(q.get("token", ""), cur[0]) or oe != cur[1]
                or oe <= time.time()):
            return 403, b"URL signature expired", "text/plain"
        return 200, f["bytes"], f["mime"]

    def page_of(self, d):
        pid = str(d.get("page") or next(iter(self.pages)))
        if pid not in self.pages:
            raise ValueError("unknown page %r" % pid)
        return pid

    def when(self, d):
        return parse_time(d["at"]) if d.get("at") is not None else int(
            time.time() - float(d.get("ago") or 0))

    def token_pages(self, token):
        return [p for p, v in self.pages.items() if token and v["token"] == token]

    # -- building ------------------------------------------------------------

    def new_user(self, platform, given=None):
        self.userial += 1
        k = self.userial
        first, last = FIRST[k % len(FIRST)], LAST[(k // len(FIRST)) % len(LAST)]
        if platform == "instagram":
            u = {"username": "%s.%s%d" % (first.lower(), last.lower(), k),
                 "id": "110" + str(k).zfill(13)}
        else:
            u = {"name": "%s %s" % (first, last), "email": None, "id": "671" + str(k).zfill(13)}
        u.update(given or {})
        if "email" in u and not (given or {}).get("email"):
            u["email"] = u["id"] + "@facebook.com"
        return u

    def page_part(self, c):
        p = self.pages[c["page"]]
        if c["platform"] == "instagram":
            return {"username": p["ig_username"], "id": p["ig_id"]}
        return {"name": p["name"], "email": p["id"] + "@facebook.com", "id": p["id"]}

    def new_conv(self, pid, platform, t, users=None):
        self.serial += 1
        s = self.serial
        cid = (b64id("", "ig_conversation:%s:%d" % (pid, s)) if platform == "instagram"
               else "t_%d" % (1200000000000000 + s))
        c = self.convs[cid] = {
            "id": cid, "page": pid, "platform": platform, "msgs": [], "extra": {},
            "users": [self.new_user(platform, u) for u in (users or [None])],
            "updated": t, "newest": None, "snippet": "", "message_count": 0,
            "unread_count": 0, "can_reply": True, "is_subscribed": True,
            "link": "/Page-%s/inbox/%d/" % (pid, 1200000000000100 + s)}
        self.ver += 1
        return c

    def add_msg(self, c, t, from_page, text=None, attach=None, read=False, touch=None,
                file=None):
        self.serial += 1
        s = self.serial
        mid = (b64id("", "ig_message:%s:%d" % (c["page"], s)) if c["platform"] == "instagram"
               else b64id("m_", "msgsync-fake-message-%d" % s))
        every = self.attach_every
        attach = bool(every) and s % every == 0 if attach is None else attach
        if text is None:
            text = "" if attach and s % 10 == 0 else TEXTS[s % len(TEXTS)] % s
        m = self.msgs[mid] = {"id": mid, "conv": c["id"], "created": t, "attachments": None,
                              "from_page": bool(from_page), "text": str(text),
                              "read": bool(read or from_page)}
        if attach or file:
            aid = str(1400000000000000 + s)
            if file:
                data = base64.b64decode(file.get("content_b64", ""))
                mime, name = file.get("mime", "image/jpeg"), file.get("name", "image-" + aid)
            else:
                mime, name = "image/jpeg", "image-" + aid
                data = file_bytes(aid, 80000 + s)
            kind = ("image" if mime.startswith("image/") else
                    "video" if mime.startswith("video/") else "file")
            m["attachments"] = [{"id": aid, "mime_type": mime, "name": name, "size": len(data),
                                 "_kind": kind, "_data": dict(
                                     width=960, height=720, max_width=960, max_height=720,
                                     render_as_sticker=False) if kind == "image" else {}}]
            self.files[aid] = {"bytes": data, "mime": mime, "gone": False, "msg": mid}
        c["msgs"].append(m)
        c["message_count"] += 1
        if from_page:
            c["unread_count"] = 0
            for x in c["msgs"]:
                x["read"] = True
        elif not m["read"]:
            c["unread_count"] += 1
        key = (t, mid)
        if (c["newest"] is None or key > c["newest"]) if touch is None else touch:
            c["newest"], c["updated"], c["snippet"] = key, t, self.snippet_of(c, m)
        self.ver += 1
        return m

    def snippet_of(self, c, m):
        u = c["users"][0]
        return (m["text"] if m["text"] or not m["attachments"] else "You sent a photo."
                if m["from_page"] else "%s sent a photo." % (
                    u.get("name") or u.get("username") or "").split(" ")[0])

    def seed(self, n, m, mix):
        now, t = int(time.time()), None
        for pid in self.pages:
            for k in range(n):
                if k % 10 != 9 or t is None:
                    t = now - (n - k) * 30 * 86400 // (n + 1)
                c = self.new_conv(pid, "instagram" if mix and k % 3 == 2 else "messenger", t)
                for back in range(m - 1, -1, -1):
                    self.add_msg(c, t - back * 97, back % 2 == 1,
                                 read=not (back == 0 and k % 4 == 0))

    def delete_msgs(self, ids, recompute=False):
        n = 0
        for mid in ids:
            m = self.msgs.pop(mid, None)
            c = m and self.convs.get(m["conv"])
            if not c:
                continue
            self.__dict__.setdefault("trash", {})[mid] = m
            n += 1
            c["msgs"].remove(m)
            c["message_count"] = max(0, c["message_count"] - 1)
            c["unread_count"] = max(0, c["unread_count"] - (not m["read"]))
            newest = max(c["msgs"], key=lambda x: (x["created"], x["id"]), default=None)
            if recompute and newest:
                c["newest"] = (newest["created"], newest["id"])
                c["updated"], c["snippet"] = newest["created"], self.snippet_of(c, newest)
        self.ver += 1
        return n

    def restore_msgs(self, ids):
        n = 0
        for mid in ids:
            m = self.__dict__.get("trash", {}).pop(mid, None)
            c = m and self.convs.get(m["conv"])
            if not c:
                continue
            n += 1
            self.msgs[mid] = m
            c["msgs"].append(m)
            c["message_count"] += 1
        self.ver += 1
        return n

    def delete_convs(self, ids):
        gone = [c for c in (self.convs.pop(cid, None) for cid in ids) if c]
        for m in (m for c in gone for m in c["msgs"]):
            self.msgs.pop(m["id"], None)
        self.ver += 1
        return len(gone)

    def edit_conv(self, cid, fields, d):
        c = self.convs.get(cid)
        if c is None:
            raise ValueError("no conversation %r" % cid)
        if d.get("at") is not None or d.get("ago") is not None:
            c["updated"] = self.when(d)
        for k, v in (fields or {}).items():
            if k == "id":
                raise ValueError("id cannot be changed")
            if k == "updated_time":
                c["updated"] = parse_time(v)
            elif k in ("message_count", "unread_count", "snippet", "can_reply",
                       "is_subscribed", "link"):
                c[k] = v
            else:
                c["extra"][k] = v
        self.ver += 1
        return self.dump_conv(c)

    # -- sorted views and paging ----------------------------------------------

    def sorted_view(self, key, items, keyfn):
        hit = self.cache.get(key)
        if not hit or hit[0] != self.ver:
            desc = sorted(items(), key=keyfn, reverse=True)
            hit = self.cache[key] = (self.ver, desc, [keyfn(x) for x in reversed(desc)])
        return hit[1], hit[2]

    def convs_desc(self, pid, pf):
        return self.sorted_view(("c", pid, pf), lambda: [
            c for c in self.convs.values() if c["page"] == pid and c["platform"] == pf],
            lambda c: (c["updated"], c["id"]))

    def msgs_desc(self, c):
        return self.sorted_view(("m", c["id"]), lambda: c["msgs"],
                                lambda m: (m["created"], m["id"]))

    def detail_limit(self, c):
        return self.cfg["ig_detail_limit" if c["platform"] == "instagram"
                        else "messenger_detail_limit"]

    def limit_of(self, v):
        n = int(v) if re.match(r"^\d+$", str(v)) else 0
        return min(n if n >= 1 else int(self.cfg["default_limit"]), int(self.cfg["max_limit"]))

    def window(self, desc, asc, scope, after, before, limit, force_empty=False,
               alternate=True):
        """One page of a newest-first list -> (items, start, paging parts | None)."""
        n, e, mode = len(desc), False, self.cfg["cursor_mode"]

        def resolve(pos, side):
            try:
                if pos and pos[0] == "o":
                    return max(0, min(n, int(pos[1])))
                if len(pos) < 3:
                    return 0
                k = (int(pos[1]), str(pos[2]))
            except (TypeError, ValueError, IndexError):
                raise GraphError(100, "(#100) Invalid cursor")
            return n - (bisect_left(asc, k) if side == "after" else bisect_right(asc, k))

        def posof(i, first):   # the cursor position of desc[i]
            if mode == "offset":
                return ["o", i if first else i + 1]
            return ["k"] + ([desc[i].get("updated", desc[i].get("created")), desc[i]["id"]]
                            if i >= 0 else [])

        if before:
            end = resolve(dec_cursor(before, scope)[0], "before")
            start = max(0, end - limit)
        else:
            start = 0
            if after:
                pos, e = dec_cursor(after, scope)
                start = resolve(pos, "after")
            end = min(n, start + limit)
        if start < n and not before and (force_empty or (
                alternate and self.cfg["empty_pages"] and after and not e)):
            return [], start, {"before": enc_cursor(scope, posof(start, True), True),
                               "after": enc_cursor(scope, posof(start - 1, False), True),
                               "next": True, "previous": start > 0}
        items = desc[start:end]
        return items, start, items and {
            "before": enc_cursor(scope, posof(start, True)), "previous": start > 0,
            "after": enc_cursor(scope, posof(end - 1, False)), "next": end < n}

    # -- rendering ---------------------------------------------------------------

    def render_conv(self, c, spec, ctx):
        out = {}
        for name, mods, sub in spec:
            keep = sub and [s[0] for s in sub]
            if name in c["extra"]:
                out[name] = c["extra"][name]
            elif name in ("id", "scoped_thread_key"):
                out[name] = c["id"]
            elif name == "updated_time":
                out[name] = gtime(c["updated"])
            elif name in ("link", "message_count", "unread_count", "snippet", "can_reply",
                          "is_subscribed"):
                out[name] = c[name]
            elif name in ("participants", "senders"):
                ps = c["users"] + [self.page_part(c)]
                if name == "senders" and not any(m["from_page"] for m in c["msgs"]):
                    ps = ps[:-1]
                out[name] = {"data": [{k: v for k, v in p.items() if not keep or k in keep}
                                      for p in ps]}
            elif name == "former_participants":
                out[name] = {"data": []}
            elif name == "messages":
                out[name] = self.messages_page(c, sub, mods.get("limit"), mods.get("after"),
                                               mods.get("before"), ctx, nested=True)
        out.setdefault("id", c["id"])
        return out

    def render_msg(self, m, spec, full=True, base=None):
        c = self.convs[m["conv"]]
        user, page = c["users"][0], self.page_part(c)
        out = {}
        for name, mods, sub in spec:
            if not full and name not in ("id", "created_time"):
                continue
            keep = sub and [s[0] for s in sub]
            if name == "id":
                out[name] = m["id"]
            elif name == "created_time":
                out[name] = gtime(m["created"])
            elif name == "from":
                out[name] = dict(page if m["from_page"] else user)
            elif name == "to":
                out[name] = {"data": [dict(user if m["from_page"] else page)]}
            elif name == "message":
                out[name] = m["text"]
            elif name == "attachments" and m["attachments"]:
                out[name] = {"data": [self.render_att(a, keep, base)
                                      for a in m["attachments"]]}
            elif name == "tags" and c["platform"] == "messenger":
                tags = (["inbox", "read", "sent", "source:web"] if m["from_page"] else
                        ["inbox"] + ["read"] * m["read"] + ["source:chat"])
                out[name] = {"data": [{"name": t} for t in tags]}
        out.setdefault("id", m["id"])
        return out

    def messages_page(self, c, spec, limit, after, before, ctx, nested=False, pairs=()):
        spec, limit = spec or parse_fields("id,created_time"), self.limit_of(limit)
        items, start, pg = self.window(*self.msgs_desc(c), "m:" + c["id"], after, before, limit,
                                       bool(ctx.get("empty_fault")) and not nested, not nested)
        lim = self.detail_limit(c)
        out = {"data": [self.render_msg(m, spec, lim is None or start + i < lim,
                                        ctx.get("base"))
                        for i, m in enumerate(items)]}
        if pg:
            out["paging"] = ctx["paging"](c["id"] + "/messages", [(
                "fields", unparse_fields(spec))] if nested else pairs, limit, pg)
        return out

    def dump_conv(self, c):
        d = dict(self.render_conv(c, parse_fields(CONV_FIELDS), {}), page=c["page"],
                 platform=c["platform"], updated_epoch=c["updated"])
        lim, spec = self.detail_limit(c), parse_fields(MSG_FIELDS)
        d["messages"] = [dict(self.render_msg(m, spec), created_epoch=m["created"],
                              from_page=m["from_page"], read=m["read"],
                              detail=lim is None or i < lim)
                         for i, m in enumerate(self.msgs_desc(c)[0])]
        return d

    def state(self):
        def counts(pid, pf):
            cs = [c for c in self.convs.values() if c["page"] == pid and c["platform"] == pf]
            return {"conversations": len(cs), "messages": sum(len(c["msgs"]) for c in cs)}
        return {"pages": {pid: dict({pf: counts(pid, pf) for pf in PLATFORMS}, name=p["name"],
                                    ig_id=p["ig_id"]) for pid, p in self.pages.items()},
                "now": gtime(time.time()), "config": self.config()}

    def config(self):
        return dict(self.cfg, token={p: v["token"] for p, v in self.pages.items()})

    def set_config(self, d):
        tok = d.get("token")
        for pid, t in (tok.items() if isinstance(tok, dict) else
                       ((p, tok) for p in self.pages) if tok is not None else ()):
            if str(pid) not in self.pages:
                raise ValueError("unknown page %r" % pid)
            self.pages[str(pid)]["token"] = str(t)
        if d.get("cursor_mode", "key") not in ("key", "offset"):
            raise ValueError("cursor_mode is key or offset")
        self.cfg.update((k, v) for k, v in d.items() if k in self.cfg and k != "usage")
        if "usage" in d:
            self.cfg["usage"] = dict(self.cfg["usage"], **d["usage"]) if d["usage"] else {}
        self.ver += 1
        return self.config()

    # -- the API -------------------------------------------------------------------

    def classify(self, method, parts):
        """-> (endpoint, page, platform) of a request."""
        if not parts:
            return ("batch" if method == "POST" else "other"), None, None
        x, edge = parts[0], "/".join(parts[1:])
        if x in self.pages or x == "me":
            return ({"": "page", "conversations": "conversations"}.get(edge, "other"),
                    x if x in self.pages else None, None)
        c = self.convs.get(x) or self.convs.get(self.msgs.get(x, {}).get("conv"))
        ep = ({"": "conversation", "messages": "messages"} if x in self.convs
              else {"": "message"} if c else {}).get(edge, "other")
        return ep, c and c["page"], c and c["platform"]

    def check_auth(self, q):
        token = q.get("access_token")
        tp = self.token_pages(token)
        if not tp:
            raise GraphError(190, "Invalid OAuth access token - Cannot parse access token")
        if self.cfg["app_secret"] and not q.get("appsecret_proof"):
            raise GraphError(100, "API calls from the server require an appsecret_proof argument")
        if self.cfg["app_secret"] and not proof_matches(self.cfg["app_secret"], token,
                                                        q["appsecret_proof"]):
            raise GraphError(100, "Invalid appsecret_proof provided in the API argument")
        return tp

    def get(self, method, parts, pairs, ctx):
        """One Graph call -> JSON object; raises GraphError."""
        q = dict(pairs)
        tp = self.check_auth(q)
        if method != "GET" or not parts:
            raise GraphError(100, "Unsupported %s request." % method.lower(),
                             "GraphMethodException")
        fields, x = q.get("fields"), tp[0] if parts[0] == "me" else parts[0]
        if x in self.pages:
            if len(parts) == 1:
                want = {n for n, _, _ in parse_fields(fields or "name,id")}
                out = dict({n: self.pages[x][n] for n in want if n in ("name", "id")}, id=x)
                if "instagram_business_account" in want:
                    out["instagram_business_account"] = {"id": self.pages[x]["ig_id"]}
                return out
            if parts[1:] != ["conversations"]:
                raise no_edge(parts[1], "Page")
            if x not in tp:
                raise GraphError(200, "(#200) Permissions error")
            return self.conversations(x, q, pairs, ctx)
        c = self.convs.get(x)
        if c and c["page"] in tp:
            if len(parts) == 1:
                return self.render_conv(c, parse_fields(fields or "id,updated_time"), ctx)
            if parts[1:] != ["messages"]:
                raise no_edge(parts[1], "UnifiedThread")
            return self.messages_page(c, fields and parse_fields(fields), q.get("limit"),
                                      q.get("after"), q.get("before"), ctx, pairs=pairs)
        m = self.msgs.get(x)
        c = m and self.convs[m["conv"]]
        if c and c["page"] in tp and len(parts) == 1:
            lim = self.detail_limit(c)
            if lim is not None and self.msgs_desc(c)[0].index(m) >= lim:
                raise GraphError(100, "(#100) The requested message has been deleted")
            if m.get("gone"):
                raise no_object(x)
            return self.render_msg(m, parse_fields(fields or "id,created_time"),
                                   base=ctx.get("base"))
        raise no_object(x)

    def conversations(self, pid, q, pairs, ctx):
        pf = (q.get("platform") or "messenger").lower()
        if pf not in PLATFORMS:
            raise GraphError(100, "(#100) platform must be one of the following values: "
                                  "MESSENGER, INSTAGRAM")
        desc, asc = self.convs_desc(pid, pf)
        if q.get("user_id"):
            spec = parse_fields(q.get("fields") or "id")
            return {"data": [self.render_conv(c, spec, ctx) for c in desc
                             if any(u["id"] == q["user_id"] for u in c["users"])]}
        spec = parse_fields(q.get("fields") or "id,updated_time")
        limit = self.limit_of(q.get("limit"))
        items, _, pg = self.window(desc, asc, "c:%s:%s" % (pid, pf), q.get("after"),
                                   q.get("before"), limit, bool(ctx.get("empty_fault")))
        out = {"data": [self.render_conv(c, spec, ctx) for c in items]}
        if pg:
            out["paging"] = ctx["paging"](pid + "/conversations", pairs, limit, pg)
        return out


# ===========================================================================
# Server state and the HTTP handler

class State(fakelib.State):
    """The Graph beside fakelib's log, gates and faults, under its lock. A
    log entry gets "i", its index; "http" counts the entries of HTTP
    requests (not batch ops). Gates and faults match an endpoint list
    ("a|b" or a list) and, if they have one, the request's "page"."""

    def __init__(self, args):
        super().__init__(None)      # tokens are the pages'
        self.g, self.traces, self.http = Graph(args), 0, 0
        self.g.seed(args.conversations, args.messages, args.platform_mix)
        self.cycles, self.nonce = {}, 0

    def reroute(self, endpoint, fault, obj):
        """The cycle and fresh empty_page faults rewrite a list's 'after'."""
        k = fault and fault["kind"]
        cur = (obj.get("paging") or {}).get("cursors") if isinstance(obj, dict) else None
        if not cur or not cur.get("after"):
            return
        if k == "empty_page" and fault.get("fresh"):
            raw = base64.urlsafe_b64decode(cur["after"] + "=" * (-len(cur["after"]) % 4))
            sc, pos, e = json.loads(raw[4:].decode())
            self.nonce += 1
            cur["after"] = enc_cursor(sc, pos[:3] + [self.nonce], e)
        elif k == "cycle":
            seen = self.cycles.setdefault(endpoint, [])
            if len(seen) < 2:
                seen.append(cur["after"])
            else:
                cur["after"] = seen[len(seen) % 2]
                seen.append(cur["after"])

    def matches(self, rule, endpoint, entry):
        eps = rule["endpoint"]
        names = eps if isinstance(eps, list) else str(eps).split("|")
        return ("*" in names or endpoint in names) and rule.get("page") in (None, entry["page"])

    def record(self, endpoint, entry):
        entry["i"] = self.total
        self.http += entry["batch"] is None
        super().record(endpoint, entry)

    def add_fault(self, d, kinds):
        # "80006": kind error, that code ("429" is a kind of its own: HTTP 429)
        if str(d.get("kind")).isdigit() and str(d.get("kind")) not in kinds:
            d = dict(d, kind="error", code=int(d["kind"]))
        return super().add_fault(d, kinds)

    def clear_log(self):
        super().clear_log()
        self.http = 0

    def stats(self):
        s = super().stats()
        return dict({"total": s.pop("total"), "http": self.http}, **s)

    def trace(self):
        self.traces += 1
        return base64.b64encode(hashlib.sha1(b"%d" % self.traces).digest()).decode()[:11]

    def headers(self, version, page, platform, tp, rate=None, regain=1):
        u = dict({"call_count": 1, "total_time": 1, "total_cputime": 1,
                  "estimated_time_to_regain_access": 0}, **self.g.cfg["usage"])
        app = {k: u[k] for k in ("call_count", "total_time", "total_cputime")}
        ent = {"type": platform if platform in PLATFORMS else "pages",
               "call_count": u["call_count"], "total_cputime": u["total_cputime"],
               "total_time": u["total_time"],
               "estimated_time_to_regain_access": u["estimated_time_to_regain_access"]}
        if rate in RATE_CODES:
            ent["estimated_time_to_regain_access"] = int(regain)
            (app if rate in (4, 17) else ent)["call_count"] = 100
        key = page or (tp[0] if tp else None)
        return [("facebook-api-version", version or self.g.cfg["version"]),
                ("X-App-Usage", json.dumps(app, separators=SEP)),
                ("X-Business-Use-Case-Usage", json.dumps({key: [ent]} if key else {},
                                                         separators=SEP))]

    def call(self, method, version, parts, pairs, fault, base):
        """One Graph call (HTTP request or batch op) -> (status, headers, body)."""
        q = dict(pairs)
        with self.lock:
            g = self.g
            ep, page, pf = g.classify(method, parts)
            pf = (q.get("platform") or "messenger").lower() if ep in ("conversations",) else pf
            ctx = {"empty_fault": fault and fault["kind"] == "empty_page", "base": base,
                   "paging": paging_builder("%s/%s" % (base, version or g.cfg["version"]),
                                            q.get("access_token"), q.get("appsecret_proof"))}
            rate, status = None, 200
            try:
                if is_error_fault(fault):
                    raise fault_error(fault)
                obj = g.get(method, parts, pairs, ctx)
                self.reroute(ep, fault, obj)
            except GraphError as e:
                rate, status, obj = e.code, e.status, e.body(self.trace())
            return status, self.headers(version, page, pf, g.token_pages(q.get("access_token")),
                                        rate, (fault or {}).get("regain_minutes", 1)), \
                json.dumps(obj, separators=SEP)

    def entry(self, method, path, version, endpoint, page, pairs, conn, batch=None):
        q = dict(pairs)
        with self.lock:
            tok = bool(self.g.token_pages(q.get("access_token")))
            s = self.g.cfg["app_secret"]
            proof = (proof_matches(s, q.get("access_token"), q.get("appsecret_proof"))
                     if s else None)
        return {"method": method, "path": path, "version": version, "endpoint": endpoint,
                "page": page, "query": {k: "***" if k in ("access_token", "appsecret_proof")
                                        else v for k, v in pairs},
                "token_ok": tok, "proof_ok": proof, "batch": batch, "status": None,
                "conn": conn, "t": time.time(), "t_end": None}


def split_path(path):
    parts = [p for p in path.split("/") if p]
    version = parts.pop(0) if parts and re.match(r"^v\d+\.\d+$", parts[0]) else None
    return version, parts


class Handler(fakelib.Handler):
    server_version = "fake-facebook/1"
    content_type = "application/json; charset=UTF-8"
    control_ascii = False
    fault_kinds = FAULT_KINDS
    internal_error = {"error": {"message": "fake: internal error", "code": 1}}
    # Fault 429: a gateway in front of the Graph API (Google-style error
    # object, whose code is the HTTP status, not a Graph error code).
    rate_limit_body = json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                            "message": "Quota exceeded: too many requests"}})

    @property
    def http_fault_body(self):
        """fakelib's default body of fault http: Graph's, a new fbtrace_id each time."""
        return unexpected_error(self.server.state.trace())

    def dumps(self, obj):
        return json.dumps(obj, separators=SEP)

    def api(self, method, u):
        st = self.server.state
        raw = self.read_body()
        if u.path.startswith("/cdn/"):
            pairs = parse_qsl(u.query, keep_blank_values=True)
            entry = st.entry(method, u.path, None, "cdn", None,
                             [(k, "***" if k == "token" else v) for k, v in pairs],
                             self.conn_id)
            self.serve_logged("cdn", entry, lambda fault: self.serve_cdn(
                u.path[len("/cdn/"):], dict(pairs), fault))
            return
        version, parts = split_path(u.path)
        pairs = parse_qsl(u.query, keep_blank_values=True)
        if method == "POST" and raw:
            text = raw.decode("utf-8", "replace")
            if "json" not in (self.headers.get("Content-Type") or ""):
                pairs += parse_qsl(text, keep_blank_values=True)
            else:
                try:
                    d = json.loads(text)
                except ValueError:
                    d = None
                pairs += [(k, v if isinstance(v, str) else json.dumps(v))
                          for k, v in (d.items() if isinstance(d, dict) else ())]
        with st.lock:
            endpoint, page, _ = st.g.classify(method, parts)
        entry = st.entry(method, u.path, version, endpoint, page, pairs, self.conn_id)
        self.serve_logged(endpoint, entry, lambda fault: self.serve_api(
            method, version, parts, pairs, endpoint, entry, fault))

    def serve_api(self, method, version, parts, pairs, endpoint, entry, fault):
        st = self.server.state
        k = fault and fault["kind"]
        if k == "nonjson":          # fakelib's, but with a "status"
            return self.respond(int(fault.get("status", 200)), HTML, ctype="text/html")
        if self.answer_fault(fault):
            return
        base = "http://127.0.0.1:%d" % self.server.server_address[1]
        if endpoint == "batch":
            status, headers, body = self.batch(version, pairs, fault, entry, base)
        else:
            status, headers, body = st.call(method, version, parts, pairs, fault, base)
        if k == "bad_row":
            body = bad_row(body.decode() if isinstance(body, bytes) else body,
                           fault.get("first", False))
        self.respond_page(k, body, status, headers)

    def serve_cdn(self, aid, q, fault):
        st = self.server.state
        if self.answer_fault(fault):
            return
        with st.lock:
            g = st.g
            status, body, mime = g.cdn(aid, q)
            cut = status == 200 and g.cut > 0
            if cut:
                g.cut -= 1
            delay = float(g.cfg["cdn_delay"])
            if status == 200 and not cut and g.slow[1] > 0:
                delay, g.slow[1] = g.slow[0], g.slow[1] - 1
        if status != 200:
            return self.respond(status, body, ctype=mime)
        if cut:
            self.close_connection = True
            self.respond(200, body[:len(body) // 2], ctype=mime, clen=len(body))
            return self.hangup()
        if not delay:
            return self.respond(200, body, ctype=mime, clen=len(body))
        # Slowly: the headers, then 16 KiB at a time.
        self.respond(200, b"", ctype=mime, clen=len(body))
        try:
            for i in range(0, len(body), 16384):
                time.sleep(delay)
                self.wfile.write(body[i:i + 16384])
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def batch(self, version, pairs, fault, parent, base):
        st, q = self.server.state, dict(pairs)
        with st.lock:
            g, tp, nmax = st.g, st.g.token_pages(q.get("access_token")), int(st.g.cfg["max_batch"])
            try:
                g.check_auth(q)
                try:
                    ops = json.loads(q.get("batch") or "")
                except ValueError:
                    ops = None
                if not isinstance(ops, list) or not ops:
                    raise GraphError(100, "(#100) The parameter batch is required and must be a "
                                          "non-empty JSON array")
                if len(ops) > nmax:
                    raise GraphError(1, "Too many requests in batch message. Maximum batch size "
                                        "is %d" % nmax, "GraphBatchException")
                if is_error_fault(fault):
                    raise fault_error(fault)
            except GraphError as e:
                return e.status, st.headers(version, None, None, tp, e.code, (fault or {}).get(
                    "regain_minutes", 1)), json.dumps(e.body(st.trace()), separators=SEP)
            headers = st.headers(version, None, None, tp)
        nulls = set()
        if fault and fault["kind"] == "timeout":
            nulls = {int(i) % len(ops) for i in fault.get("entries", [-1])}
        with_headers = str(q.get("include_headers", "true")).lower() != "false"
        out = [None if i in nulls else self.batch_op(op, q, version, parent, with_headers, base)
               for i, op in enumerate(ops)]
        return 200, headers, json.dumps(out, separators=SEP)

    def batch_op(self, op, q, top_version, parent, with_headers, base):
        st = self.server.state
        if not isinstance(op, dict) or not isinstance(op.get("relative_url"), str):
            e = GraphError(100, "(#100) Missing relative_url in batch operation")
            return {"code": 400, "body": json.dumps(e.body(st.trace()), separators=SEP)}
        method, u = str(op.get("method", "GET")).upper(), urlsplit(op["relative_url"])
        version, parts = split_path(u.path)
        version = version or top_version
        pairs = parse_qsl(u.query, keep_blank_values=True)
        own = dict(pairs).get("access_token")
        if own is None:
            pairs = [("access_token", q.get("access_token", ""))] + pairs + (
                [("appsecret_proof", q["appsecret_proof"])] if q.get("appsecret_proof") else [])
        elif st.g.cfg["app_secret"] and "appsecret_proof" not in dict(pairs):
            pairs.append(("appsecret_proof", proof_of(st.g.cfg["app_secret"], own)))
        with st.lock:
            endpoint, page, _ = st.g.classify(method, parts)
        entry = st.entry(method, "/" + u.path.lstrip("/"), version, endpoint, page, pairs,
                         parent["conn"], parent["i"])
        f = st.admit(endpoint, entry, hold=False)
        k = f and f["kind"]
        try:
            if k in ("timeout", "close"):
                return None
            if k == "slow":
                time.sleep(float(f.get("delay", 5)))
            if k == "http":
                status, headers = int(f.get("status", 500)), st.headers(version, page, None, [])
                body = f.get("body", self.http_fault_body)
                body = body if isinstance(body, str) else self.dumps(body)
            else:
                status, headers, body = st.call(method, version, parts, pairs, f, base)
                body = (body[:max(1, len(body) // 2)] if k == "truncate"
                        else HTML if k == "nonjson" else bad_row(body, f.get("first", False))
                        if k == "bad_row"
                        else body)
            entry["status"] = status
            res = {"code": status}
            if with_headers:
                res["headers"] = [{"name": a, "value": b} for a, b in [
                    ("Content-Type", "text/javascript; charset=UTF-8")] + headers]
            res["body"] = body
            return res
        finally:
            entry["t_end"] = time.time()

    # -- control API -------------------------------------------------------------

    def control_get(self, what, q):
        st = self.server.state
        with st.lock:
            if what == "state":
                return st.g.state()
            if what == "media_token":
                return {"token": TOKEN_PREFIX}
            if what == "dump":
                g = st.g
                convs = [g.dump_conv(c) for pid in ([q["page"]] if q.get("page") else g.pages)
                         for pf in ([q["platform"].lower()] if q.get("platform") else PLATFORMS)
                         for c in g.convs_desc(pid, pf)[0]]
                return {"count": len(convs), "conversations": convs}
        return None

    def control_post(self, what, d):
        st = self.server.state
        g = st.g
        if what == "conversation":
            pid, pf = g.page_of(d), str(d.get("platform", "messenger")).lower()
            if pf not in PLATFORMS:
                raise ValueError("platform is messenger or instagram")
            n, t, k = int(d.get("n", 1)), g.when(d), int(d.get("messages", 1))
            step, cstep = int(d.get("step", 0)), int(d.get("cstep", 0))
            ids = []
            for i in range(n):
                ti = t - (n - 1 - i) * cstep
                c = g.new_conv(pid, pf, ti, d.get("participants"))
                for back in range(k - 1, -1, -1):
                    g.add_msg(c, ti - back * step, (back % 2 == 0) == (d.get("from") == "page"),
                              d.get("text") if back == 0 else None, read=bool(d.get("read")))
                ids.append(c["id"])
            return {"ids": ids}
        if what == "message":
            c = g.convs.get(d.get("conversation"))
            if c is None or (d.get("page") and str(d["page"]) != c["page"]):
                raise ValueError("no conversation %r on that page" % d.get("conversation"))
            if d.get("from", "user") not in ("user", "page"):
                raise ValueError("from is user or page")
            n, t, step = int(d.get("n", 1)), g.when(d), int(d.get("step", 0))
            ms = [g.add_msg(c, t - (n - 1 - i) * step, d.get("from") == "page",
                            d.get("text"), bool(d.get("attachments", False)),
                            bool(d.get("read")), d.get("touch"), d.get("file"))
                  for i in range(n)]
            return {"ids": [m["id"] for m in ms],
                    "attachments": [a["id"] for m in ms for a in m["attachments"] or ()]}
        if what == "expire_links":
            n = len(g.links)
            g.links.clear()
            return {"expired": n}
        if what == "cut":
            g.cut = int(d.get("n", 1))
            return {"cut": g.cut}
        if what == "slow":
            g.slow = [float(d.get("delay", 1)), int(d.get("n", 1))]
            return {"slow": g.slow}
        if what == "gone":
            m = g.msgs[d["message"]]
            m["gone"] = True
            for a in m["attachments"] or ():
                g.files[a["id"]]["gone"] = True
            return {"gone": len(m["attachments"] or ())}
        if what == "edit_conversation":
            return {"conversation": g.edit_conv(d["id"], d.get("fields"), d)}
        if what == "delete_message":
            return {"deleted": g.delete_msgs(d.get("ids") or [d["id"]], bool(d.get("recompute")))}
        if what == "restore_message":
            return {"restored": g.restore_msgs(d.get("ids") or [d["id"]])}
        if what == "delete_conversation":
            return {"deleted": g.delete_convs(d.get("ids") or [d["id"]])}
        if what == "config":
            latency = float(d.get("latency", g.cfg["latency"]))   # fakelib waits it
            res = g.set_config(d)
            st.latency = latency
            return res
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description="fake Facebook Graph API for msgsync tests")
    fakelib.add_server_args(ap, token=None)
    ap.add_argument("--page", action="append", help="a Page id (repeatable; default 1111)")
    ap.add_argument("--token", action="append",
                    help="PAGEID=TOKEN, or TOKEN for every page (default token-PAGEID)")
    ap.add_argument("--app-secret", help="require appsecret_proof")
    ap.add_argument("--conversations", type=int, default=0, help="initial ones per page")
    ap.add_argument("--messages", type=int, default=3, help="per initial conversation")
    ap.add_argument("--platform-mix", action="store_true", help="every 3rd one on Instagram")
    ap.add_argument("--version", default="v21.0", help="the version of unversioned calls")
    ap.add_argument("--max-limit", type=int, default=100)
    ap.add_argument("--attachments-every", type=int, default=5,
                    help="every Nth message made without a given file has an image (0: none)")
    args = ap.parse_args(argv)
    try:
        state = State(args)
    except ValueError as e:
        ap.error(str(e))
    return fakelib.serve(args, Handler, state)


if __name__ == "__main__":
    sys.exit(main())
