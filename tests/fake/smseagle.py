#!/usr/bin/env python3
"""Fake SMSEagle APIv2 device for msgsync's tests (stdlib only).

Imitates /work/shared/reference/smseagle-telegram.md §A, with the row shapes
of reference/fixtures/smseagle/. Served under /api/v2/ and /index.php/api/v2/:

  GET    messages/{inbox|outbox|sent|error|delivered}?id_from&id_to&date_from&
         date_to&number&limit&unread&modem_no&sender_name   -> 200 [rows] | 404
  GET    messages/count, messages/count/{folder} (?date_from&date_to&modem_no)
  GET    messages/status/{id}      {"status":"SendingOK","id":7,"folder":"sentitems"}
  POST   messages/sms {"to":[..],"text",["validity","modem_no","encoding","test"]}
  POST   messages/sms_single {"to":"+48..","text",...}
  DELETE messages/{inbox|outbox|sent}[/{id_from}/{id_to}[/{creator_id}]]

FROM THE REFERENCE: the token in the `access-token` header, the
`access_token` query parameter or `access_token` in a JSON body, else 401
{"message":"Invalid API key."}; 400 {"message":{param: reason}} for a
non-integer id ("The type of the attribute must be one of int (string
given).") or a bad date ("Wrong date format."); an empty result is 404
{"message":"Resource(s) not found"}; outbox and sent share an id sequence
and a message keeps its id outbox -> sent (Gammu), the inbox has its own;
the row fields and their quirks (smsc and validity strings, class 255,
text_binary/attachments/udh often null, error_code null or an int); dates in
ISO 8601 with the device's offset; snake_case statuses in rows, Gammu
CamelCase and old folder names (outbox|sentitems) from status/{id}; the
send answer [{"status":"queued","message":text,"number","id"}] (test:true: id 0).

CHOICES (the reference does not say; a real device may differ):
  * error = sent rows with status sending_error|error, delivered = sent rows
    with delivery_ok; folder_id 1 inbox, 2 outbox, 3 sent/error/delivered.
  * id_from/id_to inclusive. limit keeps the LOWEST matching ids, then the
    page is ordered as configured (default desc: take max(id), not the last
    row). No default limit; --max-limit / cap_limit caps pages silently.
  * id_from/id_to/limit < 1: 400 "The value must be no less than 1." (spec:
    minimum 1). An empty parameter counts as absent. unread is 0|1|true|false.
  * date_from/date_to (inclusive) filter on receive_date (inbox) or
    sending_date (if null insert_date; a row with neither never matches).
    Syntax YYYY-MM-DD[T ]hh:mm[:ss[.frac]][Z|+hh:mm|+hhmm|+hh], naive =
    device-local. An unencoded '+' arrives as a space (as in PHP) and fails.
  * number and sender_name match exactly; unknown parameters are ignored;
    count/{folder} answers the same five keys as count; DELETE answers 200
    even if nothing matched. 404 {"message":"Unknown folder"} for a bad
    folder, {"message":"Not found."} for other paths; 405 {"message":"Unknown
    method."}. Request bodies need a Content-Length.
  * JSON is compact UTF-8 (Yii's JSON_UNESCAPED_UNICODE); quirk
    escape_unicode gives PHP's default \\uXXXX instead.
  * Generated text = TEXTS[serial % 7] % serial, serial counting every
    message ever created (never reset: a re-used id gets a new text);
    encoding unicode unless ASCII; text_binary (UTF-16BE hex) if serial % 3
    == 0, else null. Default numbers NUMBERS[id % 5].

INITIAL DATA (--inbox/--outbox/--sent N, k = 0..N-1, relative to start):
  * sent: sending_date = now - (N-k)*30d // (N+1), insert_date 5 s earlier;
    number NUMBERS[k % 5]; validity "30m" if k % 7 == 6 else "max"; status
    sending_error (error_code 350) if k % 20 == 19, else sending_ok if
    k % 5 == 3, else delivery_ok with delivery_date = sending_date + 15 s;
    update_date = delivery_date or sending_date; sender_name "apiuser".
  * inbox: receive_date = now - (N-k)*30d // (N+1), update_date 1 s later,
    NUMBERS[k % 5], read unless k % 4 == 0, modem_no 2 if k % 10 == 9.
  * outbox: insert = sending = update = now - (N-k)*60 s, reserved, smsc null.
  Ids follow creation time (--shared-ids interleaves the three by time; ties:
  sent, inbox, outbox). /_control/dump shows every value.

CONTROL API (JSON bodies, not logged as API requests; errors 400 {"error"}).
Times: "ago" (seconds before now) or "at" (ISO, naive = device-local), else
now. inbox and send also take "fields" (applied as by set).

  POST /_control/inbox  {"n":1,"number","text","ago"|"at","step":0,"read":false,
                         "modem_no":1,"fields","id"} -> {"ids":[..]}; message k of n
                         is dated t - (n-1-k)*step. "id" (n = 1): the message
                         gets that id, outside the id sequence (an outlier)
  POST /_control/send   {"n":1,"number","text","validity":"max","ago"|"at","step",
                         "status":"reserved","sender_name":"apiuser","modem_no":1,
                         "fields","id"} -> {"ids"}: outbox rows, insert = sending =
                         update = t; "id" as for inbox
  POST /_control/mms    {"parts":[{"content_b64"|"content","name","content_type"}],
                         "number","text","ago"|"at"} -> {"id","external_id"}: an
                         incoming MMS; "content" goes out as given (not base64?).
                         Parts are rendered only with attachments=1 (else null).
  POST /_control/media_add {"content_b64","name","mime"} -> the same, one part
  POST /_control/move   {"ids","status":"sending_ok","error_code":null,"ago"|"at"}
                         outbox -> sent, same id: sets sending_date, update_date,
                         smsc -> {"ids"}; an id not in the outbox is an error
  POST /_control/report {"ids","status":"delivery_ok|delivery_failed|
                         delivery_pending|delivery_unknown","ago"|"at"} on sent
                         rows: status, update_date, delivery_date (ok/failed)
  POST /_control/set    {"ids","fields":{..},"inbox":false} -> {"ids"}. A date
                         field null or a parseable ISO string also moves the time
                         the filters use (the string is rendered verbatim); any
                         other row key is replaced as given (status decides
                         error/delivered); unknown keys are added. Not "id".
  POST /_control/delete {"folder":"inbox"|"outgoing","ids"} -> {"deleted":n}
  POST /_control/restore {"folder","ids"} -> {"restored":n}  deleted rows back, as they were
  POST /_control/reset_ids {"keep":M,["sequences":["inbox","outgoing"]]} only ids
                         <= M survive; next id = min(next, M+1), keep 0: --first-id
                         (--shared-ids: always both) -> {"state"}
  POST /_control/fault  {"endpoint":"inbox|outbox|sent|error|delivered|count|
                         status|send|delete|*","kind","times":1 (-1 forever),
                         "after":0 (let that many through first)}; kind =
                           http (+"status":500,+"body") | 429 (+"retry_after":1)
                         | truncate (valid HTTP, JSON cut in half)
                         | truncate_conn (Content-Length larger than sent, close)
                         | nonjson (200 text/html) | slow (+"delay":5)
                         | close (no answer) | huge (+"size":1MiB, valid JSON)
                         | bad_row (+"field":"id": the middle row gets "id":"x",
                                    another field {"unexpected":"object"})
                         | ignore_id_from (answers as if id_from were absent)
                         Faults and gates act before the token check.
  POST /_control/gate   {"endpoint","after":N} hold requests after the Nth until
  POST /_control/release; also clear_faults, clear_log
  POST /_control/config {"token","order":"asc|desc|shuffle","seed","cap_limit":N|null,
                         "latency":s,"offset":"+05:30"} -> the whole config
  POST /_control/quirks {"smsc_number","error_code_string","id_string","null_fields":
                         [..],"extra_field","escape_unicode","count_extra"
                         (inbox_read/sent_read in count)}, merged; "reset":true
                         clears first -> {"quirks"}
  GET  /_control/requests[?endpoint=E&since=K] {"count","total","requests":[{method,
                         path,endpoint,query (access_token "***"),token_in
                         (header|query|body|null),headers (no access-token),body
                         (JSON, token masked),status,conn,t,t_end}]}
  GET  /_control/stats  {"total","by_endpoint","blocked","connections","faults","gates"}
  GET  /_control/wait?endpoint=E&count=N[&blocked=B][&timeout=30]  (408 on timeout)
  GET  /_control/state  {"inbox":{count,max_id,next_id},"outgoing":{..},
                         "folders":{inbox..delivered},"shared_ids","offset","now"}
  GET  /_control/dump?folder=F  {"folder","rows"}: the view as the API renders it
                         (quirks, no faults), ascending id; F may be "outgoing"

Endpoint names (log, faults, gates, wait): the folder, count, status, send,
delete, other. The server plumbing is tests/fake/fakelib.py's (as for
seqapi.py): ThreadingHTTPServer on 127.0.0.1, HTTP/1.1 keep-alive,
TCP_NODELAY, one write per response, the port written atomically to
--port-file once listening, --exit-with-parent; the request log, gates,
faults and the controls fault, clear_faults, gate, release, clear_log,
requests, stats, wait.
"""

import argparse
import base64
import json
import random
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs

import fakelib

FOLDERS = ("inbox", "outbox", "sent", "error", "delivered")
VALIDITY = ("5m", "10m", "30m", "1h", "2h", "4h", "12h", "1d", "2d", "5d", "1w", "2w",
            "4w", "max")
CAMEL = {"sending_ok": "SendingOK", "sending_ok_no_report": "SendingOKNoReport",
         "delivery_ok": "DeliveryOK", "delivery_pending": "DeliveryPending",
         "delivery_unknown": "DeliveryUnknown", "delivery_failed": "DeliveryFailed",
         "sending_error": "SendingError", "reserved": "Reserved", "error": "Error"}
REPORTS = ("delivery_ok", "delivery_failed", "delivery_pending", "delivery_unknown")
FAULT_KINDS = ("http", "429", "truncate", "truncate_conn", "nonjson", "slow", "close",
               "bad_row", "huge", "ignore_id_from")
QUIRKS = ("smsc_number", "error_code_string", "id_string", "null_fields", "extra_field",
          "escape_unicode", "count_extra")
SMSC = "+48601000310"
NUMBERS = ("+48600100200", "+48600100201", "+48600999999", "+421905123456",
           "+4915112345678")
TEXTS = ("Hello, is the office open today? #%d",
         "Za\u017c\u00f3\u0142\u0107 g\u0119\u015bl\u0105 ja\u017a\u0144 #%d",
         "Reminder: invoice 2025/%d is due",
         "Gr\u00fc\u00dfe aus K\u00f6ln, Nachricht %d",
         "emoji \U0001F44B\U0001F3FD and \u4f60\u597d #%d",
         'quote "%d", backslash \\ and a newline\nsecond line',
         "Your appointment #%d is tomorrow at 10:00")
KEYS = ("id", "number", "text", "text_binary", "attachments", "udh", "smsc", "class",
        "encoding", "folder_id")
IN_KEYS = KEYS + ("processed", "read", "oid", "modem_no", "update_date", "receive_date")
OUT_KEYS = KEYS + ("validity", "sender_name", "modem_no", "status", "error_code",
                   "update_date", "insert_date", "sending_date", "delivery_date")
DATE_KEYS = ("update_date", "receive_date", "insert_date", "sending_date", "delivery_date")
BAD_INT = "The type of the attribute must be one of int (string given)."
NOT_FOUND = {"message": "Resource(s) not found"}
DAY = 86400


# ---------------------------------------------------------------------------
# Dates

def parse_offset(s):
    """'+02:00', '-0330', '+05', 'Z' -> minutes east of UTC."""
    m = re.match(r"^([+-])(\d{2}):?(\d{2})?$", str(s).strip())
    if str(s).strip() in ("Z", "z"):
        return 0
    if not m or int(m.group(2)) * 60 + int(m.group(3) or 0) > 18 * 60:
        raise ValueError("bad UTC offset %r" % s)
    v = int(m.group(2)) * 60 + int(m.group(3) or 0)
    return -v if m.group(1) == "-" else v


def fmt_offset(minutes):
    return "%s%02d:%02d" % ("-" if minutes < 0 else "+", abs(minutes) // 60, abs(minutes) % 60)


def iso(t, off):
    """Epoch seconds -> '2025-06-23T09:12:05+02:00' in the device's offset."""
    tz = timezone(timedelta(minutes=off))
    return datetime.fromtimestamp(int(t), tz).strftime("%Y-%m-%dT%H:%M:%S") + fmt_offset(off)


DATE_RX = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
                     r"(Z|z|[+-]\d{2}(?::?\d{2})?)?$")


def parse_date(s, off):
    """ISO 8601 -> epoch seconds (float); naive = device-local. ValueError."""
    m = DATE_RX.match(str(s))
    if not m:
        raise ValueError("bad date %r" % s)
    y, mo, d, hh, mi = (int(m.group(i)) for i in range(1, 6))
    o = parse_offset(m.group(8)) if m.group(8) else off
    dt = datetime(y, mo, d, hh, mi, int(m.group(6) or 0), tzinfo=timezone(timedelta(minutes=o)))
    return dt.timestamp() + (float("0." + m.group(7)) if m.group(7) else 0.0)


# ---------------------------------------------------------------------------
# The device database. Rows are dicts keyed by API field names, dates as epoch
# seconds (or None); "raw" holds verbatim overrides, "loc" outbox|sent.

class Device:
    def __init__(self, args):
        self.off, self.first_id = parse_offset(args.offset), args.first_id
        self.shared, self.order, self.seed = args.shared_ids, args.order, args.seed
        self.cap = args.max_limit
        self.quirks, self.inbox, self.out = {}, {}, {}
        self.serial = 0
        c = [self.first_id]
        self.seq = {"inbox": c, "outgoing": c if self.shared else [self.first_id]}

    def now(self):
        return int(time.time())

    def when(self, d):
        if d.get("at") is not None:
            return int(parse_date(d["at"], self.off))
        return int(self.now() - float(d.get("ago") or 0))

    def _new(self, which, text, number, at_id=None):
        c = self.seq[which]
        if at_id is not None:
            i = int(at_id)
            if i < 1 or i in self.inbox or i in self.out:
                raise ValueError("id %s is taken or not positive" % at_id)
        else:
            i, c[0] = c[0], c[0] + 1
        self.serial += 1
        s = self.serial
        if text is None:
            text = TEXTS[s % len(TEXTS)] % s
        return i, {"id": i, "number": number or NUMBERS[i % len(NUMBERS)], "text": text,
                   "text_binary": text.encode("utf-16-be").hex().upper() if s % 3 == 0
                   else None, "attachments": None, "udh": None, "class": 255,
                   "encoding": "standard" if text.isascii() else "unicode", "raw": {}}

    def add_inbox(self, t, number=None, text=None, read=False, modem_no=1, fields=None,
                  at_id=None):
        i, r = self._new("inbox", text, number, at_id)
        r.update(smsc=SMSC, processed=True, read=read, oid=None, modem_no=modem_no,
                 update_date=t + 1, receive_date=t)
        self.inbox[i] = r
        self.set_fields(r, fields or {})
        return i

    def add_out(self, t, number=None, text=None, validity="max", status="reserved",
                sender="apiuser", modem_no=1, fields=None, encoding=None, at_id=None):
        i, r = self._new("outgoing", text, number, at_id)
        r.update(smsc=None, validity=validity, sender_name=sender, modem_no=modem_no,
                 status=status, error_code=None, update_date=t, insert_date=t,
                 sending_date=t, delivery_date=None, loc="outbox")
        if encoding in ("standard", "unicode"):
            r["encoding"] = encoding
        self.out[i] = r
        self.set_fields(r, fields or {})
        return i

    def seed_initial(self, n_in, n_outbox, n_sent):
        now = self.now()
        plan = [(now - (n_sent - k) * 30 * DAY // (n_sent + 1), 0, k) for k in range(n_sent)]
        plan += [(now - (n_in - k) * 30 * DAY // (n_in + 1), 1, k) for k in range(n_in)]
        plan += [(now - (n_outbox - k) * 60, 2, k) for k in range(n_outbox)]
        for t, kind, k in sorted(plan):
            num = NUMBERS[k % len(NUMBERS)]
            if kind == 1:
                self.add_inbox(t, num, read=k % 4 != 0, modem_no=2 if k % 10 == 9 else 1)
            elif kind == 2:
                self.add_out(t, num)
            else:
                r = self.out[self.add_out(t - 5, num, validity="30m" if k % 7 == 6 else "max")]
                r.update(loc="sent", smsc=SMSC, sending_date=t, update_date=t)
                if k % 20 == 19:
                    r.update(status="sending_error", error_code=350)
                elif k % 5 == 3:
                    r["status"] = "sending_ok"
                else:
                    r.update(status="delivery_ok", delivery_date=t + 15, update_date=t + 15)

    def set_fields(self, r, fields):
        for k, v in fields.items():
            if k in ("id", "raw", "loc"):
                raise ValueError("field %r cannot be set" % k)
            r["raw"].pop(k, None)
            if k in DATE_KEYS:
                try:
                    r[k] = None if v is None else int(parse_date(v, self.off))
                except (ValueError, TypeError):
                    pass
                if v is not None:
                    r["raw"][k] = v
            elif k in r:
                r[k] = v
            else:
                r["raw"][k] = v

    # -- views --------------------------------------------------------

    def view(self, folder):
        if folder == "inbox":
            return list(self.inbox.values())
        if folder == "outgoing":
            return list(self.out.values())
        if folder == "outbox":
            return [r for r in self.out.values() if r["loc"] == "outbox"]
        rows = [r for r in self.out.values() if r["loc"] == "sent"]
        if folder == "error":
            return [r for r in rows if r["status"] in ("sending_error", "error")]
        if folder == "delivered":
            return [r for r in rows if r["status"] == "delivery_ok"]
        return rows

    def render(self, r, attachments=True):
        """The API's row; MMS parts only when asked (attachments=1)."""
        inbox = "loc" not in r
        d = {}
        for k in IN_KEYS if inbox else OUT_KEYS:
            if k in r["raw"]:
                d[k] = r["raw"][k]
            elif k == "attachments" and not attachments:
                d[k] = None
            elif k == "folder_id":
                d[k] = 1 if inbox else 2 if r["loc"] == "outbox" else 3
            elif k in DATE_KEYS and r[k] is not None:
                d[k] = iso(r[k], self.off)
            else:
                d[k] = r[k]
        d.update((k, v) for k, v in r["raw"].items() if k not in d)
        q = self.quirks
        if q.get("id_string"):
            d["id"] = str(d["id"])
        if q.get("smsc_number") and isinstance(d.get("smsc"), str):
            digits = re.sub(r"\D", "", d["smsc"])
            d["smsc"] = int(digits) if digits else None
        if q.get("error_code_string") and isinstance(d.get("error_code"), int):
            d["error_code"] = str(d["error_code"])
        for k in q.get("null_fields") or ():
            if k in d:
                d[k] = None
        if q.get("extra_field"):
            d["x_unknown_field"] = {"since": "fw 7.0", "flags": [1, "two", None]}
        return d

    def match(self, folder, p, ignore_id_from=False):
        """The rows of a folder view passing the filters in p, unsorted."""
        lo = None if ignore_id_from else p.get("id_from")
        hi, df, dt = p.get("id_to"), p.get("date_from"), p.get("date_to")
        out = []
        for r in self.view(folder):
            if lo is not None and r["id"] < lo or hi is not None and r["id"] > hi:
                continue
            if p.get("number") is not None and r["number"] != p["number"]:
                continue
            if p.get("modem_no") is not None and r["modem_no"] != p["modem_no"]:
                continue
            if p.get("sender_name") is not None and r.get("sender_name") != p["sender_name"]:
                continue
            if p.get("unread") and folder == "inbox" and r["read"]:
                continue
            if df is not None or dt is not None:
                t = r["receive_date"] if folder == "inbox" else (
                    r["sending_date"] if r["sending_date"] is not None else r["insert_date"])
                if t is None or df is not None and t < df or dt is not None and t > dt:
                    continue
            out.append(r)
        return out

    def select(self, folder, p, ignore_id_from=False):
        """One page: the lowest matching ids up to limit/cap, then ordered."""
        out = sorted(self.match(folder, p, ignore_id_from), key=lambda r: r["id"])
        n = [x for x in (p.get("limit"), self.cap) if x is not None]
        if n:
            out = out[:min(n)]
        if self.order == "desc":
            out.reverse()
        elif self.order == "shuffle" and out:
            rnd = random.Random("%s/%s/%d/%d" % (self.seed, folder, out[0]["id"], len(out)))
            rnd.shuffle(out)
        return out

    def counts(self, p):
        """count filters on date_from, date_to and modem_no only; no cap."""
        p = {k: p.get(k) for k in ("date_from", "date_to", "modem_no")}
        c = {f: len(self.match(f, p)) for f in FOLDERS}
        if self.quirks.get("count_extra"):
            c["inbox_read"] = sum(1 for r in self.match("inbox", p) if r["read"])
            c["sent_read"] = 0
        return c

    def state(self):
        def seq(rows, which):
            return {"count": len(rows), "max_id": max(rows) if rows else 0,
                    "next_id": self.seq[which][0]}
        return {"inbox": seq(self.inbox, "inbox"), "outgoing": seq(self.out, "outgoing"),
                "folders": {f: len(self.view(f)) for f in FOLDERS},
                "shared_ids": self.shared, "offset": fmt_offset(self.off),
                "now": iso(self.now(), self.off)}

    def reset_ids(self, keep, which=None):
        which = ("inbox", "outgoing") if self.shared or not which else which
        for w in which:
            rows = self.inbox if w == "inbox" else self.out
            for i in [i for i in rows if i > keep]:
                del rows[i]
        for w in which:
            c = self.seq[w]
            c[0] = min(c[0], keep + 1) if keep > 0 else self.first_id


# ---------------------------------------------------------------------------
# Server state shared by handler threads.

class State(fakelib.State):
    def __init__(self, args):
        super().__init__(args.token)
        self.dev = Device(args)
        self.dev.seed_initial(args.inbox, args.outbox, args.sent)


def int_param(q, name, errors, minimum=1):
    v = q.get(name)
    if v is None or v == "":
        return None
    if not re.match(r"^[+-]?\d+$", v):
        errors[name] = BAD_INT
    elif minimum is not None and int(v) < minimum:
        errors[name] = "The value must be no less than %d." % minimum
    else:
        return int(v)
    return None


def classify(method, parts):
    """API path parts after the base -> endpoint name."""
    if len(parts) < 2 or parts[0] != "messages":
        return "other"
    p, n = parts[1], len(parts)
    if p == "count" and n <= 3 or p == "status" and n == 3:
        return p
    if p in ("sms", "sms_single") and n == 2:
        return "send"
    if method == "DELETE" and n in (2, 4, 5):
        return "delete"
    return p if n == 2 and p in FOLDERS else "other"


class Handler(fakelib.Handler):
    server_version = "fake-smseagle/1"
    content_type = "application/json; charset=UTF-8"
    control_ascii = False
    fault_kinds = FAULT_KINDS
    http_fault_body = {"message": "Internal server error"}
    rate_limit_body = '{"message":"Too many requests."}'
    nonjson_body = "<html><body><h1>502 Bad Gateway</h1>nginx</body></html>\n"
    internal_error = {"message": "Internal server error"}

    def dumps(self, obj):
        esc = bool(self.server.state.dev.quirks.get("escape_unicode"))
        return json.dumps(obj, ensure_ascii=esc, separators=(",", ":"))

    # -- the SMSEagle surface ---------------------------------------------

    def api(self, method, u):
        st = self.server.state
        raw = self.read_body()
        rest = None
        for base in ("/api/v2/", "/index.php/api/v2/"):
            if u.path.startswith(base):
                rest = u.path[len(base):]
        parts = [p for p in (rest or "").split("/") if p]
        endpoint = classify(method, parts) if rest is not None else "other"
        q = {k: v[-1] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = raw.decode("utf-8", "replace")[:2000]
        token, token_in = None, None
        if self.headers.get("access-token") is not None:
            token, token_in = self.headers.get("access-token"), "header"
        elif "access_token" in q:
            token, token_in = q["access_token"], "query"
        elif isinstance(body, dict) and "access_token" in body:
            token, token_in = body["access_token"], "body"
        masked = dict(q, access_token="***") if "access_token" in q else q
        lbody = (dict(body, access_token="***")
                 if isinstance(body, dict) and "access_token" in body else body)
        entry = {"method": method, "path": u.path, "endpoint": endpoint, "query": masked,
                 "token_in": token_in, "body": lbody, "status": None,
                 "headers": self.headers_without("access-token"),
                 "conn": self.conn_id, "t": time.time(), "t_end": None}
        self.serve_logged(endpoint, entry, lambda fault: self.serve_api(
            method, parts, endpoint, q, body, token is not None and token == st.token, fault))

    def serve_api(self, method, parts, endpoint, q, body, authed, fault):
        st = self.server.state
        if self.answer_fault(fault):
            return
        k = fault["kind"] if fault else None
        if k == "huge":
            head, tail = (('[{"id":1,"number":"+48600100200","text":"', '"}]')
                          if endpoint in FOLDERS else ('{"padding":"', '"}'))
            size = int(fault.get("size", 1 << 20))
            return self.respond(200, head + "x" * max(0, size - len(head) - len(tail)) + tail)
        if not authed:
            return self.respond_json(401, {"message": "Invalid API key."})
        if endpoint == "other":
            if len(parts) == 2 and parts[0] == "messages" and method == "GET":
                return self.respond_json(404, {"message": "Unknown folder"})
            return self.respond_json(404, {"message": "Not found."})
        if endpoint == "send":
            if method != "POST":
                return self.respond_json(405, {"message": "Unknown method."})
            return self.api_send(parts[1] == "sms_single", body)
        if endpoint == "delete":
            return self.api_delete(parts)
        if method != "GET":
            return self.respond_json(405, {"message": "Unknown method."})
        if endpoint == "status":
            return self.api_status(parts[2], k)
        if endpoint == "count" and len(parts) == 3 and parts[2] not in FOLDERS:
            return self.respond_json(404, {"message": "Unknown folder"})
        errors = {}
        p = {"id_from": int_param(q, "id_from", errors), "id_to": int_param(q, "id_to", errors),
             "limit": int_param(q, "limit", errors),
             "modem_no": int_param(q, "modem_no", errors, None),
             "number": q.get("number") or None, "sender_name": q.get("sender_name") or None}
        if q.get("unread"):
            if q["unread"] not in ("0", "1", "true", "false"):
                errors["unread"] = "The value must be 0 or 1."
            p["unread"] = q["unread"] in ("1", "true")
        for name in ("date_from", "date_to"):
            if q.get(name):
                try:
                    p[name] = parse_date(q[name], st.dev.off)
                except ValueError:
                    errors[name] = "Wrong date format."
        if errors:
            return self.respond_json(400, {"message": errors})
        with st.lock:
            if endpoint == "count":
                out = st.dev.counts(p)
            else:
                att = q.get("attachments") in ("1", "true")
                out = [st.dev.render(r, att) for r in
                       st.dev.select(endpoint, p, k == "ignore_id_from")]
        if not out:
            return self.respond_json(404, NOT_FOUND)
        if k == "bad_row" and endpoint == "count":
            out["inbox"] = "x"
        elif k == "bad_row":
            field = fault.get("field", "id")
            out[len(out) // 2][field] = "x" if field == "id" else {"unexpected": "object"}
        self.respond_page(k, self.dumps(out).encode("utf-8"))

    def api_status(self, sid, k):
        st = self.server.state
        if not re.match(r"^\d+$", sid):
            return self.respond_json(400, {"message": {"id": BAD_INT}})
        with st.lock:
            r = st.dev.out.get(int(sid))
            if r is None:
                return self.respond_json(404, NOT_FOUND)
            obj = {"status": CAMEL.get(r["status"], r["status"]), "id": r["id"],
                   "folder": "outbox" if r["loc"] == "outbox" else "sentitems"}
        if k == "bad_row":
            obj["id"] = "x"
        self.respond_page(k, self.dumps(obj).encode("utf-8"))

    def api_send(self, single, body):
        st = self.server.state
        body = body if isinstance(body, dict) else {}
        to = body.get("to")
        if isinstance(to, str) and not single:
            to = [x.strip() for x in to.split(",") if x.strip()]
        elif isinstance(to, str):
            to = [to.strip()] if to.strip() else []
        ok = (isinstance(to, list) and to and all(isinstance(x, str) and x for x in to)
              and (not single or isinstance(body.get("to"), str)))
        errors = {}
        if not ok:
            errors["to"] = "To cannot be blank." if not to else "To is invalid."
        text, validity = body.get("text"), body.get("validity", "max")
        if not isinstance(text, str) or text == "":
            errors["text"] = "Text cannot be blank."
        if validity not in VALIDITY:
            errors["validity"] = "Validity is invalid."
        modem = body.get("modem_no", 1)
        if not isinstance(modem, int) or isinstance(modem, bool):
            errors["modem_no"] = BAD_INT
        if errors:
            return self.respond_json(400, {"message": errors})
        res = []
        with st.cond:
            for n in to:
                i = 0 if body.get("test") else st.dev.add_out(
                    st.dev.now(), n, text, validity=validity, modem_no=modem,
                    encoding=body.get("encoding"))
                res.append({"status": "queued", "message": text, "number": n, "id": i})
            st.cond.notify_all()
        self.respond_json(200, res)

    def api_delete(self, parts):
        st = self.server.state
        if parts[1] not in ("inbox", "outbox", "sent"):
            return self.respond_json(404, {"message": "Unknown folder"})
        lo, hi = 0, float("inf")
        if len(parts) >= 4:
            errors = {n: BAD_INT for n, v in (("id_from", parts[2]), ("id_to", parts[3]))
                      if not re.match(r"^\d+$", v)}
            if errors:
                return self.respond_json(400, {"message": errors})
            lo, hi = int(parts[2]), int(parts[3])
        with st.cond:
            table = st.dev.inbox if parts[1] == "inbox" else st.dev.out
            for r in st.dev.view(parts[1]):
                if lo <= r["id"] <= hi:
                    del table[r["id"]]
            st.cond.notify_all()
        self.respond_json(200, {"message": "Resource(s) removed successfully."})

    # -- control API ------------------------------------------------------

    def control_get(self, what, q):
        st = self.server.state
        with st.lock:
            if what == "state":
                return st.dev.state()
            if what == "dump":
                folder = q.get("folder", "inbox")
                if folder not in FOLDERS + ("outgoing",):
                    raise ValueError("unknown folder %r" % folder)
                rows = sorted(st.dev.view(folder), key=lambda r: r["id"])
                return {"folder": folder, "rows": [st.dev.render(r) for r in rows]}
        return None

    def control_post(self, what, d):
        st = self.server.state
        dev = st.dev

        def rows_of(table, where=None):
            out = []
            for i in d["ids"]:
                r = table.get(int(i))
                if r is None or (where and r["loc"] != where):
                    raise ValueError("id %s is not in %s" % (i, where or "that table"))
                out.append(r)
            return out

        if what in ("inbox", "send"):
            n, t, step = int(d.get("n", 1)), dev.when(d), int(d.get("step", 0))
            ids = []
            for k in range(n):
                tk = t - (n - 1 - k) * step
                at_id = d.get("id") if n == 1 else None
                if what == "inbox":
                    ids.append(dev.add_inbox(tk, d.get("number"), d.get("text"),
                                             bool(d.get("read", False)),
                                             int(d.get("modem_no", 1)), d.get("fields"),
                                             at_id=at_id))
                else:
                    ids.append(dev.add_out(tk, d.get("number"), d.get("text"),
                                           d.get("validity", "max"), d.get("status", "reserved"),
                                           d.get("sender_name", "apiuser"),
                                           int(d.get("modem_no", 1)), d.get("fields"),
                                           at_id=at_id))
            return {"ids": ids}
        if what == "move":
            rows, t = rows_of(dev.out, "outbox"), dev.when(d)
            for r in rows:
                r.update(loc="sent", status=d.get("status", "sending_ok"),
                         error_code=d.get("error_code"), sending_date=t, update_date=t,
                         smsc=r["smsc"] or SMSC)
                for k in ("sending_date", "update_date", "status", "error_code", "smsc"):
                    r["raw"].pop(k, None)
            return {"ids": [r["id"] for r in rows]}
        if what == "report":
            status = d.get("status", "delivery_ok")
            if status not in REPORTS:
                raise ValueError("report status must be one of %s" % ", ".join(REPORTS))
            rows, t = rows_of(dev.out, "sent"), dev.when(d)
            for r in rows:
                r.update(status=status, update_date=t)
                if status in ("delivery_ok", "delivery_failed"):
                    r["delivery_date"] = t
                for k in ("delivery_date", "update_date", "status"):
                    r["raw"].pop(k, None)
            return {"ids": [r["id"] for r in rows]}
        if what == "set":
            rows = rows_of(dev.inbox if d.get("inbox") else dev.out)
            for r in rows:
                dev.set_fields(r, d.get("fields") or {})
            return {"ids": [r["id"] for r in rows]}
        if what in ("delete", "restore"):
            folder = d.get("folder", "outgoing")
            table = {"inbox": dev.inbox, "outgoing": dev.out}[folder]
            trash = st.__dict__.setdefault("trash", {})     # (folder, id) -> deleted row
            if what == "restore":
                rows = [trash.pop((folder, int(i))) for i in d.get("ids") or []]
                table.update((r["id"], r) for r in rows)
                return {"restored": len(rows)}
            gone = [(int(i), table.pop(int(i), None)) for i in d.get("ids") or []]
            trash.update(((folder, i), r) for i, r in gone if r is not None)
            return {"deleted": sum(r is not None for _, r in gone)}
        if what in ("mms", "media_add"):
            # An incoming MMS: parts [{"content_b64" | "content" (sent as
            # given, e.g. not base64), "name", "content_type"}]; media_add:
            # one part of exactly these bytes.
            parts = d.get("parts") if what == "mms" else [
                {"content_b64": d.get("content_b64", ""), "name": d.get("name", "f.jpg"),
                 "content_type": d.get("mime", "image/jpeg")}]
            att = []
            for p in parts:
                c = p["content"] if "content" in p else base64.b64encode(
                    base64.b64decode(p.get("content_b64", ""))).decode()
                att.append({"name": p.get("name"), "content_type": p.get("content_type"),
                            "content": c})
            i = dev.add_inbox(dev.when(d), d.get("number"), d.get("text", ""))
            dev.inbox[i]["attachments"] = att
            return {"ids": [i], "id": i, "external_id": "in:%d" % i}
        if what == "reset_ids":
            seqs = d.get("sequences")
            if seqs and not set(seqs) <= {"inbox", "outgoing"}:
                raise ValueError("sequences are inbox and outgoing")
            dev.reset_ids(int(d.get("keep", 0)), seqs)
            return {"state": dev.state()}
        if what == "config":
            if d.get("order", "asc") not in ("asc", "desc", "shuffle"):
                raise ValueError("order is asc, desc or shuffle")
            dev.off = parse_offset(d["offset"]) if "offset" in d else dev.off
            st.token = str(d.get("token", st.token))
            dev.order = d.get("order", dev.order)
            dev.seed = d.get("seed", dev.seed)
            if "cap_limit" in d:
                dev.cap = None if d["cap_limit"] is None else int(d["cap_limit"])
            st.latency = float(d.get("latency", st.latency))
            return {"token": st.token, "order": dev.order, "seed": dev.seed,
                    "cap_limit": dev.cap, "latency": st.latency, "offset": fmt_offset(dev.off)}
        if what == "quirks":
            bad = [k for k in d if k not in QUIRKS + ("reset",)]
            if bad or not isinstance(d.get("null_fields", []), list):
                raise ValueError("unknown quirk(s) %s or null_fields not a list" % bad)
            if d.get("reset"):
                dev.quirks = {}
            dev.quirks.update((k, v) for k, v in d.items() if k != "reset")
            return {"quirks": dev.quirks}
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description="fake SMSEagle APIv2 device for msgsync tests")
    fakelib.add_server_args(ap)
    ap.add_argument("--inbox", type=int, default=0, help="initial inbox messages")
    ap.add_argument("--outbox", type=int, default=0, help="initial queued messages")
    ap.add_argument("--sent", type=int, default=0, help="initial sent messages")
    ap.add_argument("--offset", default="+02:00", help="the device's UTC offset")
    ap.add_argument("--first-id", type=int, default=1)
    ap.add_argument("--max-limit", type=int, help="silently cap every page at N rows")
    ap.add_argument("--seed", type=int, default=1, help="seed of the shuffle order")
    ap.add_argument("--order", choices=("asc", "desc", "shuffle"), default="desc")
    ap.add_argument("--shared-ids", action="store_true", help="one id sequence for all")
    it, fixed = iter(sys.argv[1:] if argv is None else argv), []
    for a in it:    # "--offset -03:30" would be taken for an option
        fixed.append("--offset=" + next(it, "") if a == "--offset" else a)
    args = ap.parse_args(fixed)
    try:
        parse_offset(args.offset)
    except ValueError as e:
        ap.error(str(e))
    if args.first_id < 1 or args.max_limit is not None and args.max_limit < 1:
        ap.error("--first-id and --max-limit must be >= 1")

    return fakelib.serve(args, Handler, State(args))


if __name__ == "__main__":
    sys.exit(main())
