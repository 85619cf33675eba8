#!/usr/bin/env python3
"""Fake Unipile API v1 (messaging) for msgsync's tests (stdlib only).

Imitates /work/shared/reference/facebook-unipile.md §B with the shapes of
reference/fixtures/unipile/. Base /api/v1/, key in the X-API-KEY header:

  GET chats?account_id=A[,B]&account_type&unread&before&after&limit&cursor  ChatList
  GET chats/{id}[?account_id=A]     Chat + "lastMessage" (Message | null)
  GET chats/{id}/messages?cursor&before&after&limit&sender_id             MessageList
  GET chats/{id}/attendees          {"object":"ChatAttendeeList","items","cursor":null}
  GET chats/{id}/sync               {"object":"ChatHistorySync","chat_id","status"}
  GET messages?account_id=A&cursor&before&after&limit&sender_id           MessageList
  GET messages/{id}                 Message
  GET messages/{id}/attachments/{attachment_id}   the bytes (the key checked)
  GET /files/{attachment_id}?expires&token   an attachment's link (no key needed;
                                    tests/fake/fakefiles.py: 403 once expired)
  GET chat_attendees?account_id&limit&cursor (ChatAttendeeList), chat_attendees/{id}

FROM THE REFERENCE: no key -> 401 errors/missing_credentials, a wrong one ->
401 errors/invalid_credentials; Content-Type "application/json; charset=utf-8";
errors {"status","type","title","detail"} with the error_*.json texts; lists
{"object","items","cursor"}, cursor null on the last page; before/after
EXCLUSIVE, exactly YYYY-MM-DDTHH:MM:SS.sssZ, else 400 errors/invalid_parameters
"<name> must match pattern <the OpenAPI pattern>" (checked with the stricter
^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$, then "<name> must be a valid
date"); limit 1..250, default 100; a cursor is standard base64 ('=' padded, so
it may hold + / =; unencoded, '+' arrives as a space and fails) of the compact
JSON of the filters given (account_id, account_type, before, after, unread,
sender_id), "limit" and "cursor":{"last_id","last_date"} of the page's last
item, as cursor_decoded_example.json; chats/{id} takes a Unipile id or a
provider id with account_id; 0/1 integer flags; the fixtures' keys and order.

CHOICES (the reference does not say; the real service may differ):
  * Lists are ordered (timestamp desc, id desc), ids by code point, chats by
    "timestamp" (documented for chats/{id}/messages only); a cursor continues
    strictly below (last_date, last_id). chat_attendees: id ascending, keyset
    last_id. chats/{id}/attendees: the others, then self (as the fixture).
  * With a cursor the filters come from it and other parameters are ignored,
    except limit, which overrides (the SDK's "cursor + limit"). A cursor that
    does not decode or fit the endpoint -> 400 "cursor is invalid"; "" -> 400.
  * Other 400s: "limit must be integer" | ">= 1" | "<= 250", "unread must be
    boolean" (true|false|1|0), "account_type must be equal to one of the
    allowed values", a provider chat id without account_id. An unknown
    account_id (chats: any of the list; messages: ONE id, no list) -> 404
    "... Account not found". Unknown parameters are ignored; an empty
    account_id / sender_id / account_type counts as absent.
  * unread=true|false: chats with unread 1|0; sender_id matches sender_id or
    sender_attendee_id; lastMessage = the newest message (hidden, deleted,
    events included); subresources take Unipile ids only.
  * chat.timestamp = its newest message's timestamp (or its creation time if
    later) and never moves back: a late message leaves it alone.
  * Optional keys only when set: attendee_provider_id (type 0), quoted,
    event_type (is_event), message_type ("MESSAGE" on LINKEDIN, else only
    via "fields"); attendees: picture_url unless
    serial%3==0, profile_url (LINKEDIN, INSTAGRAM, TWITTER), specifics
    (LINKEDIN, INSTAGRAM).
  * Provider ids: WHATSAPP 336xxxxxxxx@s.whatsapp.net, groups 120363..@g.us,
    messages "3EB0"+16 hex; LINKEDIN ACoAA.. users, "2-"+base64 chats and
    messages; others digits. A 1:1 WhatsApp/Telegram chat's provider_id is the
    other party's id (fixtures). Unipile ids: 22 base64url chars of
    sha256("<kind>/<serial>"), one serial for everything.
  * Non-GET requests and unknown paths: 404 errors/resource_not_found "Cannot
    <METHOD> <path>", endpoint "other" (a test can see a PATCH read-status).
  * --max-limit / config max_limit silently caps pages (cursor kept non-null).

DATA. --account ID[:TYPE] (repeatable; default acc-1, WHATSAPP), each with a
self attendee. --chats N --messages M: per account N chats of M messages over
the 30 days before --seed-end (default: start). Message g = j*N + c (chat c,
its j-th) is at end - 30d + (g+1)*30d/(N*M) - (g*389)%1000 ms; g%10==9 shares
g-1's millisecond, g%10==4 its second; from self if j%3==1; g%11==10 an
attachment, text null; g%13==12 a reaction; g%17==16 quotes the chat's
previous one; g%19==18 edited; g%29==28 a hidden event (event_type 1);
g%31==30 deleted; seen unless g%4==0. Chat c: type 1 with 3 others if c%5==4;
unread_count 1+c%3, unread 1 if c%4==0; archived c%7==6, muted_until -1
c%6==5, pinned c%9==8. Deterministic (times too, given --seed-end).

CONTROL API (/_control/..., JSON bodies, not logged; errors 400 {"error"}).
Times: "at" (ISO 8601, naive = UTC, ms kept) or "ago" (seconds), else now;
"step" (s): item k of n is at t - (n-1-k)*step (default 0: the same ms).
  POST account {"id","type"} -> {"id","self"}
  POST chat    {"account","n":1,"name","type":0,"attendees":K (1; groups 2) |
               "attendee_ids","at"|"ago","step","messages":M,"message_step"}
               -> {"ids","message_ids"}; the messages end at the chat's time,
               alternating, the newest from the other party
  POST message {"chat","n":1,"from":"self"|"other"|ATTENDEE_ID,"text" (null
               ok),"at"|"ago","step","hidden","is_event","event_type","deleted",
               "edited","seen","delivered","attachments":K|[..],"quoted":
               MESSAGE_ID|{..},"provider_id","fields":{verbatim}} -> {"ids"}.
               chat.timestamp moves when newest; an incoming (not is_sender)
               message adds 1 to unread_count and sets unread 1. An old "at"
               is a LATE message: listed at its old position
  POST read    {"chat"}: unread_count 0, unread 0
  POST edit_message | edit_chat | edit_attendee {"id","fields"}: verbatim, a
               "timestamp" parsed like "at" (messages re-sort; may move the
               chat forward); edit_message sets edited 1 unless given
  POST delete_message {"id"|"ids","purge":false}: deleted 1 (purge: gone)
  POST restore_message {"id"|"ids"}: purged messages back, as they were
  POST delete_chat {"id"}: it and its messages vanish (404)
  POST duplicate {"id","fields"}: the message (provider_id, timestamp) under a
               new Unipile id, as re-ingested; unread untouched
  POST sync    {"chat":ID|"*","polls":K,"final":"SYNC_DONE"}: the chat's next
               K polls answer SYNC_STARTED, then SYNC_RUNNING; then final
  POST fault   {"endpoint":E|"*","kind","times":1 (-1 forever),"after":0 (let
               that many through)}; kind = 429 (+"retry_after":1 -> Retry-After)
               | 503 | 504 | 401 (disconnected_account) | 403 (feature_not_
               subscribed) | 500 (provider_error), fixture bodies | http
               (+"status","type","title","detail" | "body") | truncate (200,
               JSON cut in half) | nonjson (200 text/html) | close (no answer)
               | slow (+"delay":5, then the answer) | empty_page (lists: items
               [] and a cursor resuming where the request started; +"fresh":
               true: a new cursor string each time) | empty_fresh (empty_page
               with "fresh") | bad_row (the middle item of a list gets
               "id":{"unexpected":"object"}) | cycle (lists: the first two
               cursors are real, then they alternate: A, B, A, B, ...).
               Faults and gates act before the key check.
  MEDIA (SPEC §9): listed attachments get "url" (a link with a token holding
  the link secret) and "url_expires_at" (ms), unless given or unavailable.
  POST media_add {"content_b64","name","mime",["chat"]} -> {"id",
               "attachment_id"}: a new incoming message with that one file
  POST media_expire: every link served so far stops working (403)
  POST media_cut {"n":1}: the next n file bodies (links or the attachment
               endpoint) are cut mid-transfer; media_slow {"delay","n"}:
               they trickle out; media_clear: neither
  POST media_gone {"id"|"ids"}: the messages' files are gone (410 on links,
               404 at the endpoint)
  GET  media_state {"secret","generation","served",...}
  POST gate    {"endpoint","after":N}: hold requests after the Nth until
  POST release; clear_faults; clear_log
  POST config  {"token","latency":s,"max_limit":N|null} -> the config
  GET  requests[?endpoint=E&since=K] {"count","total","requests":[{method,path,
               endpoint,query (dict),key_sent,key_ok,headers (no X-API-KEY),
               status,conn,t,t_end}]}
  GET  stats   {"total","by_endpoint","blocked","connections","faults","gates"}
  GET  wait?endpoint=E&count=N[&blocked=B][&timeout=30]  (408 on timeout)
  GET  state   {"accounts":{id:{type,self,chats,messages,attendees}},"now","config"}
  GET  dump?account=A&what=chats|messages|attendees {"what","account","count",
               "items"}: every item as the API renders it, no faults or cap, in
               API order (newest first; attendees id ascending)

Endpoints (log, faults, gates, wait): chats, chat, chat_messages, messages,
message, attendees (chats/{id}/attendees), chat_attendees (list, one), sync,
other. The server plumbing is tests/fake/fakelib.py's: ThreadingHTTPServer on
127.0.0.1, HTTP/1.1 keep-alive, TCP_NODELAY, one write per response, the port
written atomically to --port-file once listening, --exit-with-parent,
--verbose (every answer logged), the request log, gates, faults and the shared
controls.
"""

import argparse
import base64
import binascii
import bisect
import calendar
import hashlib
import json
import re
import sys
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs, unquote

import fakefiles
import fakelib


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# ===========================================================================
# Unipile: constants, errors, times, ids, cursors

TYPES = ("WHATSAPP", "LINKEDIN", "SLACK", "TWITTER", "MESSENGER", "INSTAGRAM", "TELEGRAM")
MS_RX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
OPENAPI_PATTERN = r"^[1-2]\d{3}-[0-1]\d-[0-3]\dT\d{2}:\d{2}:\d{2}.\d{3}Z$"
FILTER_KEYS = ("account_id", "account_type", "before", "after", "unread", "sender_id")
ERR = {  # fault kind | name -> (status, type, title, detail), texts of the fixtures
    "429": (429, "errors/too_many_requests", "Too many requests", "The provider cannot "
            "accept any more requests at the moment. Please try again later"),
    "503": (503, "errors/no_client_session", "No client session",
            "No client session is currently running."),
    "504": (504, "errors/request_timeout", "Request timed out", "Request Timeout. Please "
            "try again, and if the issue persists, contact support."),
    "401": (401, "errors/disconnected_account", "Disconnected account",
            "The account appears to be disconnected from the provider service."),
    "403": (403, "errors/feature_not_subscribed", "Feature not subscribed", "The requested "
            "feature has either not been subscribed or not been authenticated properly."),
    "500": (500, "errors/provider_error", "Provider error",
            "The provider is experiencing operational problems. Please try again later."),
    "missing": (401, "errors/missing_credentials", "Missing credentials",
                "Some credentials are necessary to perform the request."),
    "invalid": (401, "errors/invalid_credentials", "Invalid credentials",
                "The provided credentials are invalid."),
}
FAULT_KINDS = ("429", "503", "504", "401", "403", "500", "http", "truncate", "nonjson",
               "close", "slow", "empty_page", "empty_fresh", "bad_row", "cycle")
NAMES = ("Alice Example", "Bob Zażółć", "Chloé Martin", "Dmitri Иванов", "Eve 李",
         "Frank O'Brien", 'Grace "G" Hopper', "Hana 🌸", "Ivo Novák", "Jun Tanaka")
TEXTS = ("Is the shop open on Sunday? #%d", "Grüße aus Köln, Nachricht %d",
         "emoji 👋🏽 and 你好 #%d", 'quote "%d", backslash \\ and a newline\nsecond line',
         "Order #%d paid", "Zażółć gęślą jaźń %d", "%d: Lorem ipsum dolor sit amet")


class ApiError(Exception):
    def __init__(self, status, detail=None, type_=None, title=None):
        if status in ERR:
            status, type_, title, detail = ERR[status]
        self.body = {"status": status, "type": type_, "title": title, "detail": detail}
        super().__init__(detail)


def bad(detail):
    return ApiError(400, detail, "errors/invalid_parameters", "Invalid parameters")


def not_found(what, detail=None):
    return ApiError(404, detail or "The requested resource were not found. %s not found"
                    % what, "errors/resource_not_found", "Resource not found.")


def fmt_ms(ms):
    s, r = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + ".%03dZ" % r


def parse_api_time(name, v):
    """A before/after/last_date value -> epoch ms; else ApiError 400."""
    if not isinstance(v, str) or not MS_RX.match(v):
        raise bad("%s must match pattern %s" % (name, OPENAPI_PATTERN))
    try:
        t = datetime.strptime(v[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise bad("%s must be a valid date" % name)
    return calendar.timegm(t.timetuple()) * 1000 + int(v[20:23])


def parse_iso(s):
    """Control times: any ISO 8601 (naive = UTC) -> epoch ms."""
    dt = datetime.fromisoformat(str(s).replace("Z", "+00:00").replace("z", "+00:00"))
    dt = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    return calendar.timegm(dt.timetuple()) * 1000 + dt.microsecond // 1000


def now_ms():
    return int(round(time.time() * 1000))


def when(d):
    if d.get("at") is not None:
        return parse_iso(d["at"])
    return int(round((time.time() - float(d.get("ago") or 0)) * 1000))


def uid(kind, n):
    return base64.urlsafe_b64encode(hashlib.sha256(b"%s/%d" % (kind.encode(), n))
                                    .digest()[:16]).rstrip(b"=").decode()


def prov(type_, what, n):
    """Provider ids; what = user | group | chat | msg."""
    if type_ == "WHATSAPP":
        return {"user": "336%08d@s.whatsapp.net" % n, "group": "120363%012d@g.us" % n,
                "chat": "336%08d@s.whatsapp.net" % n,
                "msg": "3EB0" + hashlib.sha256(b"p/%d" % n).hexdigest()[:16].upper()}[what]
    if type_ == "LINKEDIN":
        return "ACoAA%011d" % n if what == "user" else "2-" + uid("li", n)
    return str({"user": 5100000000, "group": 7100000000, "chat": 9100000000, "msg": 0}[what]
               + n)


def encode_cursor(d):
    return base64.b64encode(dumps(d).encode("utf-8")).decode("ascii")


def decode_cursor(s):
    try:
        d = json.loads(base64.b64decode(s.encode("ascii"), validate=True))
        if isinstance(d, dict):
            return d
    except (ValueError, binascii.Error, UnicodeError):
        pass
    raise bad("cursor is invalid")


def public(d):
    return {k: v for k, v in d.items() if k[0] != "_"}


# ===========================================================================
# The store. Chats, messages, attendees are dicts in API key order; internal
# keys start with "_" (_ts epoch ms, _serial; a chat's _att and _msgs). A
# chat's _msgs and each account's acc_msgs are sorted [(ts, id)] ascending.

class Store:
    def __init__(self, cap):
        self.serial, self.cap = 0, cap
        self.accounts, self.chats, self.msgs, self.att, self.acc_msgs = {}, {}, {}, {}, {}
        self.sync = {}

    def next(self):
        self.serial += 1
        return self.serial

    def add_account(self, acc, type_="WHATSAPP"):
        if type_ not in TYPES or acc in self.accounts:
            raise ValueError("account %r exists or type not one of %s" % (acc, TYPES))
        self.accounts[acc], self.acc_msgs[acc] = {"id": acc, "type": type_}, []
        self.accounts[acc]["self"] = self.new_att(acc, "Account %s" % acc, 1)
        return self.accounts[acc]

    def new_att(self, acc, name=None, is_self=0):
        n, type_ = self.next(), self.accounts[acc]["type"]
        a = {"object": "ChatAttendee", "id": uid("att", n), "account_id": acc,
             "provider_id": prov(type_, "user", n), "name": name or NAMES[n % len(NAMES)],
             "is_self": is_self, "hidden": 0}
        if n % 3:
            a["picture_url"] = "https://fake-unipile.invalid/pictures/%s.jpg" % a["id"]
        if type_ in ("LINKEDIN", "INSTAGRAM", "TWITTER"):
            a["profile_url"] = "https://%s.invalid/in/user-%d" % (type_.lower(), n)
        if type_ == "LINKEDIN":
            a["specifics"] = {"provider": "LINKEDIN", "member_urn": "urn:li:member:%d" % n,
                              "occupation": "Baker", "network_distance": "DISTANCE_1",
                              "pending_invitation": False, "headline": "Baker"}
        elif type_ == "INSTAGRAM":
            a["specifics"] = {"provider": "INSTAGRAM", "public_identifier": "user.%d" % n}
        a["_serial"] = n
        self.att[a["id"]] = a
        return a["id"]

    def new_chat(self, acc, t, type_=0, name=None, others=None, k_att=None):
        if acc not in self.accounts:
            raise ValueError("unknown account %r" % acc)
        if type_ not in (0, 1, 2):
            raise ValueError("chat type %r is not 0, 1 or 2" % type_)
        account, n = self.accounts[acc], self.next()
        for a in others or ():
            if a not in self.att or self.att[a]["account_id"] != acc:
                raise ValueError("attendee %r is not of account %s" % (a, acc))
        k = int(k_att if k_att is not None else 1 if type_ == 0 else 2)
        others = list(others or [self.new_att(acc) for _ in range(max(1, k))])
        other = self.att[others[0]]
        if type_:
            pid = prov(account["type"], "group", n)
        elif account["type"] in ("WHATSAPP", "TELEGRAM"):
            pid = other["provider_id"]
        else:
            pid = prov(account["type"], "chat", n)
        c = {"object": "Chat", "id": uid("chat", n), "account_id": acc,
             "account_type": account["type"], "provider_id": pid}
        if type_ == 0:
            c["attendee_provider_id"] = other["provider_id"]
        c.update(name=name or (other["name"] if type_ == 0 else "Group %d" % n), type=type_,
                 timestamp=fmt_ms(t), unread_count=0, archived=0, muted_until=None,
                 read_only=0, disabledFeatures=[], pinned=0, unread=0,
                 _ts=t, _serial=n, _att=others + [account["self"]], _msgs=[])
        self.chats[c["id"]] = c
        return c

    def touch(self, c, t):
        if t > c["_ts"]:
            c["_ts"], c["timestamp"] = t, fmt_ms(t)

    def index(self, m, add=True):
        k = (m["_ts"], m["id"])
        for lst in (self.chats[m["chat_id"]]["_msgs"], self.acc_msgs[m["account_id"]]):
            if add:
                bisect.insort(lst, k)
            else:
                i = bisect.bisect_left(lst, k)
                if i < len(lst) and lst[i] == k:
                    del lst[i]

    def add_msg(self, c, t, sender, text, provider_id=None):
        n, a = self.next(), self.att[sender]
        m = {"object": "Message", "id": uid("msg", n), "account_id": c["account_id"],
             "chat_id": c["id"], "chat_provider_id": c["provider_id"],
             "provider_id": provider_id or prov(c["account_type"], "msg", n),
             "sender_id": a["provider_id"], "sender_attendee_id": a["id"], "text": text,
             "attachments": [], "timestamp": fmt_ms(t), "is_sender": a["is_self"],
             "reactions": [], "seen": 0, "seen_by": {}, "hidden": 0, "deleted": 0,
             "edited": 0, "is_event": 0, "delivered": 1, "behavior": None, "original": "",
             "subject": None, "_ts": t, "_serial": n}
        if c["account_type"] == "LINKEDIN":
            m["message_type"] = "MESSAGE"
        self.msgs[m["id"]] = m
        self.index(m)
        self.touch(c, t)
        return m

    def set_ts(self, m, t):
        self.index(m, add=False)
        m["_ts"], m["timestamp"] = t, fmt_ms(t)
        self.index(m)
        self.touch(self.chats[m["chat_id"]], t)

    def drop_msg(self, m):
        self.index(m, add=False)
        del self.msgs[m["id"]]

    @staticmethod
    def attachment(n, k):
        i, common = "att-%d-%d" % (n, k), {"unavailable": False}
        return dict([{"id": i, "type": "img", "mimetype": "image/jpeg", "file_size": 84211 + n,
                      "size": {"width": 960, "height": 720}, "sticker": False},
                     {"id": i, "type": "file", "file_name": "invoice-%d.pdf" % n,
                      "mimetype": "application/pdf", "file_size": 12000 + n},
                     {"id": i, "type": "audio", "mimetype": "audio/ogg", "file_size": 5000 + n,
                      "duration": 7, "voice_note": True}][(n + k) % 3], **common)

    @staticmethod
    def quote(q):
        return {k: q[k] for k in ("provider_id", "sender_id", "text", "attachments")}

    def text(self):
        return TEXTS[(self.serial + 1) % len(TEXTS)] % (self.serial + 1)

    def seed(self, n_chats, n_msgs, end, attachments=True):
        span, total = 30 * 86400 * 1000, n_chats * n_msgs
        for acc in list(self.accounts):
            me, chats, prev, last = self.accounts[acc]["self"], [], None, {}
            for c in range(n_chats):
                t = end - span if n_msgs else end - (n_chats - 1 - c) * span // n_chats
                ch = self.new_chat(acc, t, int(c % 5 == 4), k_att=3 if c % 5 == 4 else 1)
                ch.update(archived=int(c % 7 == 6), muted_until=-1 if c % 6 == 5 else None,
                          pinned=int(c % 9 == 8))
                chats.append(ch)
            for g in range(total):
                c, j = g % n_chats, g // n_chats
                ch, t = chats[c], end - span + (g + 1) * span // total - (g * 389) % 1000
                if g % 10 == 9 and prev is not None:
                    t = prev
                elif g % 10 == 4 and prev is not None:
                    t = prev - prev % 1000 + (prev % 1000 + 7) % 1000
                others, prev = ch["_att"][:-1], t
                sender = me if j % 3 == 1 else others[j % len(others)]
                m = self.add_msg(ch, t, sender, TEXTS[g % len(TEXTS)] % g)
                m["seen"] = int(g % 4 != 0)
                if g % 11 == 10 and attachments:
                    m["attachments"], m["text"] = [self.attachment(g, 0)], None
                if g % 13 == 12:
                    m["reactions"] = [{"value": "👍", "sender_id": self.att[me]["provider_id"],
                                       "is_sender": True}]
                if g % 17 == 16 and c in last:
                    m["quoted"] = self.quote(last[c])
                m["edited"] = int(g % 19 == 18)
                if g % 29 == 28:
                    m.update(text="%s reacted 👍 to a message" % self.att[sender]["name"],
                             hidden=1, is_event=1, event_type=1)
                m["deleted"], last[c] = int(g % 31 == 30), m
            for c, ch in enumerate(chats):
                if c % 4 == 0:
                    ch.update(unread_count=1 + c % 3, unread=1)

    # -- queries ----------------------------------------------------------

    @staticmethod
    def walk(keys, lookup, before, after, pos, limit, pred=None):
        """Newest first over sorted (ts, id) keys, strictly below before and
        pos, strictly above after -> (items, more)."""
        hi = len(keys) if before is None else bisect.bisect_left(keys, (before, ""))
        if pos is not None:
            hi = min(hi, bisect.bisect_left(keys, pos))
        out = []
        for i in range(hi - 1, -1, -1):
            if after is not None and keys[i][0] <= after:
                break
            it = lookup[keys[i][1]]
            if pred is None or pred(it):
                out.append(it)
                if len(out) > limit:
                    break
        return out[:limit], len(out) > limit

    def chat_keys(self, f):
        accs, un = f.get("account_id") or list(self.accounts), f.get("unread")
        return sorted((c["_ts"], c["id"]) for c in self.chats.values()
                      if c["account_id"] in accs
                      and f.get("account_type") in (None, c["account_type"])
                      and (un is None or bool(c["unread"]) == un))

    def msg_keys(self, account=None):
        if account is not None:
            return self.acc_msgs.get(account, [])
        return sorted(k for lst in self.acc_msgs.values() for k in lst)

    @staticmethod
    def sender_pred(f):
        s = f.get("sender_id")
        return None if s is None else (
            lambda m: m["sender_id"] == s or m["sender_attendee_id"] == s)

    def render_chat(self, c, last=False):
        d = public(c)
        if last:
            d["lastMessage"] = public(self.msgs[c["_msgs"][-1][1]]) if c["_msgs"] else None
        return d

    def find_chat(self, cid, account=None):
        c = self.chats.get(cid)
        if c is not None and account in (None, c["account_id"]):
            return c
        hits = [c for c in self.chats.values() if c["provider_id"] == cid]
        if account is None and hits:
            raise bad("account_id is required when chat_id is a provider id")
        hits = [c for c in hits if c["account_id"] == account]
        if not hits:
            raise not_found("Chat")
        return hits[0]

    def get(self, table, i, what):
        if i not in table:
            raise not_found(what)
        return table[i]

    def state(self):
        return {a: {"type": acc["type"], "self": acc["self"],
                    "chats": sum(c["account_id"] == a for c in self.chats.values()),
                    "messages": len(self.acc_msgs[a]),
                    "attendees": sum(x["account_id"] == a for x in self.att.values())}
                for a, acc in self.accounts.items()}


# ===========================================================================
# HTTP handler

def classify(method, parts):
    n, p0 = len(parts), parts[0] if parts else None
    if method != "GET":
        return "other"
    if p0 == "chats" and n <= 2:
        return ("chats", "chat")[n - 1]
    if p0 == "chats" and n == 3 and parts[2] in ("messages", "attendees", "sync"):
        return {"messages": "chat_messages"}.get(parts[2], parts[2])
    if p0 == "messages" and n <= 2:
        return ("messages", "message")[n - 1]
    if p0 == "messages" and n == 4 and parts[2] == "attachments":
        return "attachment"
    return "chat_attendees" if p0 == "chat_attendees" and n <= 2 else "other"


class Handler(fakelib.Handler):
    server_version = "fake-unipile/1"
    content_type = "application/json; charset=utf-8"
    control_ascii = False
    fault_kinds = FAULT_KINDS
    nonjson_body = "<html><body><h1>502 Bad Gateway</h1>nginx</body></html>\n"
    internal_error = ApiError(500, "internal error of the fake", "errors/unexpected_error",
                              "Unexpected error").body
    control_exceptions = fakelib.Handler.control_exceptions + (IndexError, ApiError)
    log_answers = True
    get_only = ("stats", "requests", "state", "dump", "media_state")
    dumps = staticmethod(dumps)

    def control_dumps(self, obj, error=False):
        return dumps(obj)

    def api(self, method, u):
        state = self.server.state
        self.read_body()
        if u.path.startswith("/files/") and u.path.count("/") == 2:
            return self.api_file(method, u)
        base = "/api/v1/"
        parts = ([unquote(p) for p in u.path[len(base):].split("/") if p]
                 if u.path.startswith(base) else [])
        endpoint = classify(method, parts) if u.path.startswith(base) else "other"
        q = {k: v[-1] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
        key = self.headers.get("X-API-KEY")
        entry = {"method": method, "path": u.path, "endpoint": endpoint, "query": q,
                 "key_sent": key is not None, "key_ok": key is not None and key == state.token,
                 "headers": self.headers_without("x-api-key"),
                 "status": None, "conn": self.conn_id, "t": time.time(), "t_end": None}
        self.serve_logged(endpoint, entry, lambda fault: self.serve_api(
            method, u.path, parts, endpoint, q, key, fault))

    def api_file(self, method, u):
        """GET /files/{attachment id}?expires&token: an attachment's link."""
        state = self.server.state
        fid = unquote(u.path[len("/files/"):])
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        entry = {"method": method, "path": u.path, "endpoint": "files", "file": fid,
                 "query": dict(q, token="***") if "token" in q else q,
                 "key_sent": self.headers.get("X-API-KEY") is not None,
                 "headers": self.headers_without("x-api-key"), "status": None,
                 "conn": self.conn_id, "t": time.time(), "t_end": None}

        def serve(fault):
            if self.answer_fault(fault):
                return
            with state.lock:
                content, mime = state.file_of(None, fid)
            fakefiles.serve_file(self, state.files, fid, q, content, mime)
        self.serve_logged("files", entry, serve)

    def ep_attachment_bytes(self, parts):
        """GET messages/{id}/attachments/{attachment_id}: the bytes (the key
        checked), cut or slowed as the media controls say."""
        state = self.server.state
        with state.lock:
            content, mime = state.file_of(parts[1], parts[3])
            if content is None:
                raise not_found("Attachment")
            if parts[3] in state.files.gone:
                raise not_found("Attachment")
            how, delay = state.files.plan()
            state.files.served += 1
        fakefiles.send_body(self, content, mime, how, delay)

    def add_links(self, obj):
        """Attachments carry their link (a token in it) and its expiry, as
        they are listed now (the fake's lock is held)."""
        files = self.server.state.files
        base = fakefiles.base_of(self)

        def msg(m):
            if not isinstance(m, dict) or not isinstance(m.get("attachments"), list):
                return m
            out = []
            for a in m["attachments"]:
                if isinstance(a, dict) and "id" in a and "url" not in a \
                        and not a.get("unavailable"):
                    a = dict(a, url=files.link(base, a["id"]),
                             url_expires_at=files.expires() * 1000)
                out.append(a)
            return dict(m, attachments=out)
        if obj.get("object") == "Message":
            return msg(obj)
        if "lastMessage" in obj:
            return dict(obj, lastMessage=msg(obj["lastMessage"]))
        if isinstance(obj.get("items"), list):
            return dict(obj, items=[msg(m) if isinstance(m, dict) and
                                    m.get("object") == "Message" else m
                                    for m in obj["items"]])
        return obj

    def serve_api(self, method, path, parts, endpoint, q, key, fault):
        state = self.server.state
        k = fault["kind"] if fault else None
        if k in ERR:
            h = [("Retry-After", str(fault.get("retry_after", 1)))] if k == "429" else []
            return self.respond_json(ERR[k][0], ApiError(k).body, headers=h)
        if k == "http":
            code = int(fault.get("status", 500))
            b = fault.get("body") or ApiError(code, fault.get("detail", "injected"),
                                              fault.get("type", "errors/unexpected_error"),
                                              fault.get("title", "Injected error")).body
            return self.respond(code, b if isinstance(b, str) else dumps(b))
        if self.answer_fault(fault):
            return
        try:
            if key is None or key != state.token:
                raise ApiError("missing" if key is None else "invalid")
            if endpoint == "other":
                raise not_found(None, "Cannot %s %s" % (method, path))
            if endpoint == "attachment":
                return self.ep_attachment_bytes(parts)
            with state.lock:
                obj, resume = getattr(self, "ep_" + endpoint)(parts, q, state.store)
                obj = self.add_links(obj)
        except ApiError as e:
            return self.respond_json(e.body["status"], e.body)
        if k == "bad_row" and obj.get("items"):
            items = list(obj["items"])
            items[len(items) // 2] = dict(items[len(items) // 2], id={"unexpected": "object"})
            obj = dict(obj, items=items)
        if k in ("empty_page", "empty_fresh") and "items" in obj:
            r = dict(resume or {})
            if fault.get("fresh") or k == "empty_fresh":
                with state.lock:
                    state.nonce = getattr(state, "nonce", 0) + 1
                    r["n"] = state.nonce
            obj = dict(obj, items=[], cursor=encode_cursor(r))
        if k == "cycle" and obj.get("cursor"):
            with state.lock:
                seen = state.__dict__.setdefault("cycles", {}).setdefault(endpoint, [])
                if len(seen) >= 2:
                    obj = dict(obj, cursor=seen[len(seen) % 2])
                seen.append(obj["cursor"])
        self.respond_page(k, dumps(obj).encode("utf-8"))

    # -- query parsing ----------------------------------------------------

    def query(self, q, keys, st, lists=()):
        """-> (filters, pos (ts|None, id) | None, limit, resume-cursor dict);
        the names in lists take comma lists."""
        lim = None
        if "limit" in q:
            if not re.match(r"^[+-]?\d+$", q["limit"]):
                raise bad("limit must be integer")
            lim = int(q["limit"])
            if lim < 1 or lim > 250:
                raise bad("limit must be %s" % (">= 1" if lim < 1 else "<= 250"))
        pos, f = None, {}
        if "cursor" in q:
            if q["cursor"] == "":
                raise bad("cursor must NOT have fewer than 1 characters")
            c = decode_cursor(q["cursor"])
            try:
                for k in keys:
                    if c.get(k) is not None:
                        f[k] = c[k]
                        if not isinstance(f[k], list if k in lists else bool if k == "unread"
                                          else str):
                            raise TypeError
                        if k in ("before", "after"):
                            parse_api_time(k, f[k])
                cc = c.get("cursor")
                if cc:
                    pos = (parse_api_time("last_date", cc["last_date"]) if "last_date" in cc
                           else None, str(cc["last_id"]))
                limit = lim or c.get("limit") or 100
                if type(limit) is not int or not 1 <= limit <= 250:
                    raise TypeError
            except (ApiError, KeyError, TypeError, AttributeError):
                raise bad("cursor is invalid")
        else:
            for k in keys:
                v = q.get(k)
                if v is None or (v == "" and k not in ("before", "after")):
                    continue
                if k in lists:
                    v = [x for x in v.split(",") if x]
                if k == "account_type" and v not in TYPES:
                    raise bad("account_type must be equal to one of the allowed values")
                if k == "unread":
                    if v not in ("true", "false", "1", "0"):
                        raise bad("unread must be boolean")
                    v = v in ("true", "1")
                if k in ("before", "after"):
                    parse_api_time(k, v)
                f[k] = v
            acc = f.get("account_id")
            for a in [acc] if isinstance(acc, str) else acc or []:
                if a not in st.accounts:
                    raise not_found("Account")
            limit = lim or 100
        f = {k: f[k] for k in FILTER_KEYS if k in f}
        resume = dict(f, limit=limit)
        if pos is not None:
            resume["cursor"] = dict(c["cursor"])
        return f, pos, limit, resume

    @staticmethod
    def page(obj, f, limit, items, more, last_date=True):
        nxt = None
        if more:
            cur = {"last_id": items[-1]["id"]}
            if last_date:
                cur["last_date"] = items[-1]["timestamp"]
            nxt = encode_cursor(dict(f, limit=limit, cursor=cur))
        return {"object": obj, "items": [public(x) for x in items], "cursor": nxt}

    def list_keys(self, keys, lookup, q, names, st, obj, lists=()):
        f, pos, limit, resume = self.query(q, names, st, lists)
        if pos is not None and pos[0] is None:
            raise bad("cursor is invalid")
        b, a = (parse_api_time(n, f[n]) if n in f else None for n in ("before", "after"))
        items, more = st.walk(keys(f) if callable(keys) else keys, lookup, b, a, pos,
                              min(limit, st.cap or limit), st.sender_pred(f))
        return self.page(obj, f, limit, items, more), resume

    # -- endpoints: (parts, q, store) -> (object, resume-cursor dict) -------

    def ep_chats(self, parts, q, st):
        return self.list_keys(st.chat_keys, st.chats, q, ("account_id", "account_type",
                              "unread", "before", "after"), st, "ChatList", ("account_id",))

    def ep_chat(self, parts, q, st):
        return st.render_chat(st.find_chat(parts[1], q.get("account_id") or None), True), None

    def ep_chat_messages(self, parts, q, st):
        c = st.get(st.chats, parts[1], "Chat")
        return self.list_keys(c["_msgs"], st.msgs, q, ("before", "after", "sender_id"), st,
                              "MessageList")

    def ep_messages(self, parts, q, st):
        return self.list_keys(lambda f: st.msg_keys(f.get("account_id")), st.msgs, q,
                              ("account_id", "before", "after", "sender_id"), st, "MessageList")

    def ep_message(self, parts, q, st):
        return public(st.get(st.msgs, parts[1], "Message")), None

    def ep_attendees(self, parts, q, st):
        c = st.get(st.chats, parts[1], "Chat")
        return {"object": "ChatAttendeeList", "items": [public(st.att[a]) for a in c["_att"]],
                "cursor": None}, {}

    def ep_chat_attendees(self, parts, q, st):
        if len(parts) == 2:
            return public(st.get(st.att, parts[1], "Attendee")), None
        f, pos, limit, resume = self.query(q, ("account_id",), st)
        eff = min(limit, st.cap or limit)
        ids = sorted(i for i, a in st.att.items()
                     if f.get("account_id") in (None, a["account_id"]))
        lo = bisect.bisect_right(ids, pos[1]) if pos else 0
        return self.page("ChatAttendeeList", f, limit, [st.att[i] for i in ids[lo:lo + eff]],
                         lo + eff < len(ids), last_date=False), resume

    def ep_sync(self, parts, q, st):
        st.get(st.chats, parts[1], "Chat")
        plan, status = st.sync.get(parts[1]), "SYNC_DONE"
        if plan is None and "*" in st.sync:
            plan = st.sync[parts[1]] = dict(st.sync["*"])
        if plan and plan["left"] > 0:
            status = "SYNC_STARTED" if plan["left"] == plan["polls"] else "SYNC_RUNNING"
            plan["left"] -= 1
        elif plan:
            status = plan["final"]
        return {"object": "ChatHistorySync", "chat_id": parts[1], "status": status}, None

    # -- control API ------------------------------------------------------

    def control_get(self, what, q):
        state = self.server.state
        with state.lock:
            if what == "state":
                return {"accounts": state.store.state(), "now": fmt_ms(now_ms()),
                        "config": state.config()}
            if what == "dump":
                d = self.dump(q, state.store)
                d["items"] = [self.add_links(x) if x.get("object") == "Message" else x
                              for x in d["items"]]
                return d
            if what == "media_state":
                return state.files.state()
        return None

    def shared_post(self, what, d):
        res = super().shared_post(what, d)
        if what in ("clear_faults", "release"):     # unipile's answer: both counts
            res = {"faults": len(self.server.state.faults),
                   "gates": len(self.server.state.gates)}
        return res

    @staticmethod
    def dump(q, st):
        acc, what = q.get("account"), q.get("what", "messages")
        if acc is not None and acc not in st.accounts:
            raise ValueError("unknown account %r" % acc)
        if what == "chats":
            keys = st.chat_keys({"account_id": [acc] if acc else None})
            items = [st.render_chat(st.chats[i]) for _, i in reversed(keys)]
        elif what == "messages":
            items = [public(st.msgs[i]) for _, i in reversed(st.msg_keys(acc))]
        elif what == "attendees":
            items = [public(st.att[i]) for i in sorted(st.att)
                     if acc in (None, st.att[i]["account_id"])]
        else:
            raise ValueError("what is chats, messages or attendees")
        return {"what": what, "account": acc, "count": len(items), "items": items}

    def control_post(self, what, d):
        state = self.server.state
        st = state.store
        res = state.files.control(what, d)
        if res is not None:
            return res
        if what == "media_add":
            # A new incoming message carrying one file of exactly these bytes.
            import base64 as b64
            content = b64.b64decode(d.get("content_b64", ""))
            mime = str(d.get("mime", "image/jpeg"))
            if d.get("chat"):
                c = st.chats[d["chat"]]
            else:
                acc = next(iter(st.accounts))
                cs = [c for c in st.chats.values() if c["account_id"] == acc]
                c = cs[0] if cs else st.new_chat(acc, when(d))
            m = st.add_msg(c, when(d), c["_att"][0], d.get("text"))
            kind = {"image": "img", "video": "video", "audio": "audio"}.get(
                mime.split("/")[0], "file")
            a = {"id": "att-%d-0" % m["_serial"], "type": kind, "unavailable": False,
                 "file_size": len(content), "mimetype": mime}
            if kind == "file":
                a["file_name"] = d.get("name", "f.bin")
            m["attachments"] = [a]
            state.files.content[a["id"]] = content
            c["unread_count"] += 1
            c["unread"] = 1
            return {"id": m["id"], "attachment_id": a["id"], "chat": c["id"]}
        if what == "media_gone":
            for i in d.get("ids") or [d["id"]]:
                for a in st.msgs[i]["attachments"]:
                    state.files.gone.add(a["id"])
            return {"gone": sorted(state.files.gone)}

        def get(table, key="id"):
            if d[key] not in table:
                raise ValueError("unknown %s %r" % (key, d[key]))
            return table[d[key]]

        def step(key="step"):
            return int(round(float(d.get(key) or 0) * 1000))

        def incoming(c, m):
            if not m["is_sender"]:
                c["unread_count"] += 1
                c["unread"] = 1

        if what == "account":
            a = st.add_account(str(d["id"]), d.get("type", "WHATSAPP"))
            return {"id": a["id"], "self": a["self"]}
        if what == "chat":
            acc = d.get("account") or next(iter(st.accounts))
            n, t, m = int(d.get("n", 1)), when(d), int(d.get("messages", 0))
            mstep = step("message_step" if "message_step" in d else "step")
            ids, mids = [], []
            for k in range(n):
                tk = t - (n - 1 - k) * step()
                c = st.new_chat(acc, tk - max(0, m - 1) * mstep, int(d.get("type", 0)),
                                d.get("name"), d.get("attendee_ids"), d.get("attendees"))
                mids.append([])
                for j in range(m):
                    s = c["_att"][0] if (m - 1 - j) % 2 == 0 else c["_att"][-1]
                    msg = st.add_msg(c, tk - (m - 1 - j) * mstep, s, st.text())
                    incoming(c, msg)
                    mids[-1].append(msg["id"])
                st.touch(c, tk)
                ids.append(c["id"])
            return {"ids": ids, "message_ids": mids}
        if what == "message":
            c, frm = get(st.chats, "chat"), d.get("from", "other")
            sender = {"self": c["_att"][-1], "other": c["_att"][0]}.get(frm, frm)
            if sender not in c["_att"]:
                raise ValueError("%r is not an attendee of chat %s" % (sender, c["id"]))
            n, t, ids = int(d.get("n", 1)), when(d), []
            for k in range(n):
                m = st.add_msg(c, t - (n - 1 - k) * step(), sender,
                               d["text"] if "text" in d else st.text(), d.get("provider_id"))
                for f in ("hidden", "is_event", "deleted", "edited", "seen", "delivered"):
                    if f in d:
                        m[f] = int(bool(d[f]))
                if m["is_event"]:
                    m["event_type"] = int(d.get("event_type", 0))
                at = d.get("attachments")
                if at:
                    m["attachments"] = (list(at) if isinstance(at, list) else
                                        [st.attachment(m["_serial"], i) for i in range(int(at))])
                if d.get("quoted"):
                    m["quoted"] = (d["quoted"] if isinstance(d["quoted"], dict)
                                   else st.quote(get(st.msgs, "quoted")))
                self.apply(m, d.get("fields") or {}, st)
                incoming(c, m)
                ids.append(m["id"])
            return {"ids": ids}
        if what == "read":
            c = get(st.chats, "chat")
            c.update(unread_count=0, unread=0)
            return {"ids": [c["id"]]}
        if what in ("edit_message", "edit_chat", "edit_attendee"):
            it = get({"edit_message": st.msgs, "edit_chat": st.chats, "edit_attendee": st.att}
                     [what])
            fields = dict(d.get("fields") or {})
            if what == "edit_message":
                fields.setdefault("edited", 1)
            self.apply(it, fields, st)
            return {"ids": [it["id"]]}
        if what == "delete_message":
            ids = d.get("ids") or [d["id"]]
            for i in ids:
                if i not in st.msgs:
                    raise ValueError("unknown id %r" % i)
                m = st.msgs[i]
                if d.get("purge"):
                    st.drop_msg(m)
                    state.__dict__.setdefault("trash", {})[i] = m
                else:
                    m["deleted"] = 1
            return {"ids": ids}
        if what == "restore_message":
            ids = d.get("ids") or [d["id"]]
            for i in ids:
                m = state.__dict__.get("trash", {}).pop(i)
                st.msgs[i] = m
                st.index(m)
            return {"ids": ids}
        if what == "delete_chat":
            c = get(st.chats)
            for _, i in list(c["_msgs"]):
                st.drop_msg(st.msgs[i])
            del st.chats[c["id"]]
            return {"ids": [c["id"]]}
        if what == "duplicate":
            o = get(st.msgs)
            m = st.add_msg(st.chats[o["chat_id"]], o["_ts"], o["sender_attendee_id"],
                           o["text"], o["provider_id"])
            serial, mid = m["_serial"], m["id"]
            m.clear()
            m.update(json.loads(json.dumps(o)), id=mid, _serial=serial)
            self.apply(m, d.get("fields") or {}, st)
            return {"ids": [mid]}
        if what == "sync":
            chat, polls = d.get("chat", "*"), int(d.get("polls", 0))
            if chat != "*":
                get(st.chats, "chat")
            else:
                st.sync.clear()
            st.sync[chat] = {"polls": polls, "left": polls, "final": d.get("final", "SYNC_DONE")}
            return {"sync": st.sync[chat]}
        if what == "config":
            state.token = str(d.get("token", state.token))
            state.latency = float(d.get("latency", state.latency))
            if "max_limit" in d:
                st.cap = None if d["max_limit"] is None else int(d["max_limit"])
            return state.config()
        return None

    @staticmethod
    def apply(it, fields, st):
        """Sets fields verbatim; a "timestamp" is parsed (messages re-sort)."""
        for k, v in fields.items():
            if k in ("object", "id", "account_id", "chat_id") or k.startswith("_"):
                raise ValueError("field %r cannot be set" % k)
            if k == "timestamp" and it.get("object") == "Message":
                st.set_ts(it, parse_iso(v))
            elif k == "timestamp" and it.get("object") == "Chat":
                it["_ts"] = parse_iso(v)
                it["timestamp"] = fmt_ms(it["_ts"])
            else:
                it[k] = v


class State(fakelib.State):
    """The fake's data beside fakelib's log, gates, faults, token and
    latency, all under its lock."""

    def __init__(self, args):
        super().__init__(args.token)
        self.store = Store(args.max_limit)
        self.files = fakefiles.Files()
        for a in args.account or ["acc-1"]:
            acc, _, type_ = a.partition(":")
            self.store.add_account(acc, type_.upper() or "WHATSAPP")
        if args.chats:
            self.store.seed(args.chats, args.messages,
                            parse_iso(args.seed_end) if args.seed_end else now_ms(),
                            not args.no_seed_attachments)

    def config(self):
        return {"token": self.token, "latency": self.latency, "max_limit": self.store.cap}

    def file_of(self, mid, aid):
        """(bytes, MIME type) of attachment aid (of message mid; None: any
        message), (None, None) if there is none."""
        msgs = [self.store.msgs.get(mid)] if mid is not None else self.store.msgs.values()
        for m in msgs:
            for a in (m or {}).get("attachments") or ():
                if isinstance(a, dict) and a.get("id") == aid:
                    mime = a.get("mimetype") or "application/octet-stream"
                    if aid in self.files.content:
                        return self.files.content[aid], mime
                    size = a.get("file_size")
                    size = int(size) if str(size).isdigit() else 1000
                    return fakefiles.pattern(aid, size), mime
        return None, None


def main(argv=None):
    ap = argparse.ArgumentParser(description="fake Unipile API v1 for msgsync tests")
    fakelib.add_server_args(ap, token_help="the X-API-KEY")
    ap.add_argument("--account", action="append", help="ID[:TYPE], repeatable (acc-1)")
    ap.add_argument("--chats", type=int, default=0, help="initial chats per account")
    ap.add_argument("--messages", type=int, default=0, help="initial messages per chat")
    ap.add_argument("--seed-end", help="ISO time the initial 30 days end at (default now)")
    ap.add_argument("--max-limit", type=int, help="silently cap every page at N items")
    ap.add_argument("--no-seed-attachments", action="store_true",
                    help="the initial messages carry no attachment (g%%11==10 ones "
                    "only lose their text)")
    args = ap.parse_args(argv)
    if args.max_limit is not None and args.max_limit < 1 or args.chats < 0 or args.messages < 0:
        ap.error("--max-limit must be >= 1, --chats and --messages >= 0")
    try:
        state = State(args)
    except ValueError as e:
        ap.error(str(e))
    return fakelib.serve(args, Handler, state)


if __name__ == "__main__":
    sys.exit(main())
