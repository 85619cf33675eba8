#!/usr/bin/env python3
"""Fake seqapi backend for msgsync's tests and benchmarks (stdlib only).

Serves the endpoints of /work/shared/reference/seqapi.md:

  GET /sync/{conversations,messages,contacts}/{integration}?since_seq=X&limit=N
  GET /sync/status/{integration}

Data is generated lazily and deterministically from each row's index, so a
million messages cost almost no memory: only edited/added rows keep state.
Every stream has its own seq counter by default (--shared-seq: one for all);
an edit gives the row a new seq, so it moves to the end of its stream.

The server plumbing is tests/fake/fakelib.py's: HTTP/1.1 keep-alive,
TCP_NODELAY and one write per response (see reference/README.md: otherwise
Nagle against delayed ACK stalls every response), ThreadingHTTPServer on
127.0.0.1, port 0 by default; the chosen port is written to --port-file
(atomically) once the socket listens; the request log, gates, faults and the
shared controls (fault, clear_faults, gate, release, clear_log, requests,
stats, wait).

Control API for tests (JSON bodies; none of these are logged as requests):

  POST /_control/add      {"stream","n",["conversation_index"],["sender_index"],
                           ["age_days": sent that many days ago (messages)],
                           ["special":{"OFFSET":"nul|badutf8|surrogate|hostile"}]}
  POST /_control/edit     {"stream", "ids":[...] | "indexes":[...] | "n":K,
                           ["kind":"edit|delete|purge|restore|status|nul|badutf8|surrogate|hostile"]}
                           status (+"status":"delivered"): the message takes that
                           delivery status, nothing else changes
                           delete: a tombstone row ("deleted":true, new seq);
                           purge: the row vanishes (a hard delete);
                           restore: a purged row comes back with a new seq
  POST /_control/fault    {"endpoint":"messages|conversations|contacts|status|*",
                           "kind": "http"      (+"status":500, "body")
                                 | "429"       (+"retry_after":1)
                                 | "truncate"  (valid HTTP, JSON cut in half)
                                 | "truncate_conn" (Content-Length larger than sent, then close)
                                 | "nonjson"   (200 text/html)
                                 | "stuck"     (latest_seq = since_seq, has_more true; +"rows":true keeps rows)
                                 | "huge"      (+"size":bytes, +"chunked":bool)
                                 | "slow"      (+"delay":seconds, then the normal answer)
                                 | "close"     (drop the connection, no answer)
                                 | "bad_row"   (one row with a wrong type: "seq":"x")
                                 | "bad_id"    (the page's middle row, or the row of
                                               +"seq":N wherever it comes, gets
                                               "id":{"bad":true}, its seq kept: a
                                               row that cannot be stored)
                                 | "disorder"  (the page's first two rows swapped)
                                 | "latest_ahead" (latest_seq = last row + "by" (1000),
                                               has_more true: trusting it skips rows)
                           "times":1 (-1 = forever), "after":0 (let that many through first)}
  POST /_control/clear_faults
  Media (SPEC §9; tests/fake/fakefiles.py): with --media, every generated
  image, audio, document and sticker message carries one file "media<index>"
  (without it their media array is empty), linked as
  {base}/files/media<index>?expires=E&token=T (a per-link token holding the
  link secret; refused with 403 once expired, 410 when gone); its bytes are
  fakefiles.pattern(id, size), or those given to media_add.
  POST /_control/media_add {"content_b64","name","mime",["type"],
                           ["conversation_index"]} -> {"id","media_id","seq"}
                           a new message carrying one file of those bytes
  POST /_control/media_expire   every link served so far stops working
  POST /_control/media_cut {"n":1}  the next n file bodies are cut mid-transfer
  POST /_control/media_slow {"delay":5,"n":1 (-1: all)}  bodies trickle out
  POST /_control/media_gone {"id"|"ids"}  the message's file is gone (410)
  POST /_control/media_clear    no more cuts or slow bodies
  GET  /_control/media_state    {"secret","generation","served","refused",...}
  POST /_control/prerender   render every page again (--prerender after changes)
  POST /_control/reset_seq {"keep":M, ["streams":[...]], ["recreate":true]}
                           backend restored from an old backup: only the first M
                           original rows remain, seqs continue from there (below a
                           reader's cursor); recreate: rows added afterwards get
                           ids the old backend never had (a re-created backend,
                           whose new seqs may pass the old cursor: add them)
  POST /_control/add {..., "hold":true}   the rows get their seqs but stay
                           invisible (pages, status, counts) until
  POST /_control/commit {"stream",["n"]}  commits them (n: the n lowest only): a
                           concurrent writer's transaction that commits after
                           higher seqs were served
  POST /_control/gate     {"endpoint", "after":N}  block the (N+1)th request to
                           the endpoint from now on until /_control/release
  POST /_control/release
  POST /_control/config   {"token", "gzip", "total_count", "latency"}
  POST /_control/clear_log
  GET  /_control/requests[?endpoint=E&since=K]  {"count","requests":[{method,path,
                           endpoint,query,headers(no Authorization),auth,status,conn,t,t_end}]}
  GET  /_control/stats    {"total","by_endpoint","blocked","connections"}
  GET  /_control/wait?endpoint=E&count=N[&blocked=B][&timeout=S]
                           block until that many requests (or blocked ones)
  GET  /_control/state    per stream: count, latest_seq, next_index, ...
  GET  /_control/dump?stream=S   every live row, decoded, in seq order

All control requests take an optional "integration" (default: the first).

Other modes:
  --bench          measure the server's own throughput (messages/s)
  --dump-copy S    print stream S as PostgreSQL COPY text (benchmark floor)
  --prerender      (make bench) render every page of every stream once at
                   start, at msgsync's default page sizes, and answer those
                   requests with the stored bytes: the fake's CPU then stays
                   out of what the bench measures.  Other requests, and all
                   after a control call that changes data, render as usual.
"""

import argparse
import base64
import bisect
import gzip as gziplib
import json
import os
import re
import sys
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs, unquote

import fakefiles
import fakelib

STREAMS = ("conversations", "messages", "contacts")
# msgsync's default seqapi page sizes (lib/connectors/seqapi.c), for --prerender.
PRERENDER_LIMITS = {"conversations": 100, "messages": 1500, "contacts": 500}
BASE_EPOCH = 1767225600  # 2026-01-01T00:00:00Z
EDIT_EPOCH = BASE_EPOCH + 400 * 86400

# ---------------------------------------------------------------------------
# Deterministic row rendering. Rows are rendered straight to JSON text from
# templates (json.dumps per row is far too slow for 200k rows/s). Invalid
# UTF-8 travels as surrogate escapes and becomes raw bytes when the page is
# encoded with errors="surrogateescape".

_day_cache = {}
_HMS_B = [b"T%02d:%02d:%02dZ" % (s // 3600, s // 60 % 60, s % 60) for s in range(86400)]
_day_cache_b = {}


def ts(sec):
    """RFC 3339 UTC of epoch seconds."""
    day, rem = divmod(sec, 86400)
    p = _day_cache.get(day)
    if p is None:
        p = datetime.fromtimestamp(day * 86400, timezone.utc).strftime("%Y-%m-%d")
        _day_cache[day] = p
    return "%sT%02d:%02d:%02dZ" % (p, rem // 3600, rem // 60 % 60, rem % 60)


# Body fragments, already JSON-escaped; %d gets the message index.
BODY_VARIANTS = (
    '"Hello, this is message %d"',
    '"Gr\u00fc\u00dfe aus K\u00f6ln, Nachricht %d"',
    '"emoji \U0001F44B\U0001F3FD and CJK \u4f60\u597d %d"',
    '"quote \\"%d\\" and a newline\\nsecond line"',
    '"tab\\tseparated\\t%d \\u00e9t\\u00e9 \\/ slash"',
    '"%d: Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt"',
    '"\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442 %d \u00bfqu\u00e9?"',
)
NVAR = len(BODY_VARIANTS)

# Hostile bodies (JSON text with surrogate-escaped raw bytes).
SPECIAL_BODIES = {
    "nul": '"before\\u0000after %d"',
    "badutf8": '"bad\udcff\udcfe bytes %d"',
    "surrogate": '"lone \\ud800 surrogate %d"',
    "hostile": '"nul\\u0000 raw\udcff\udcc0\udcaf end %d"',
}
SPECIAL_KINDS = tuple(SPECIAL_BODIES)

MSG_TYPES = ("text", "text", "text", "image", "text", "audio", "text", "text",
             "document", "text", "text", "sticker", "text", "location")
MSG_STATUS = ("read", "delivered", "sent", "read", "delivered", "pending", "read", "failed")

MSG_T = ('{"id":"m%d","seq":%d,"conversation_id":"c%d","sender_id":%s,'
         '"from_me":%s,"body":%s,"type":"%s","status":"%s","sent_at":"%s",'
         '"edited_at":%s,"deleted":%s,"media":%s,"reply_to_id":%s,'
         '"updated_at":"%s"}')
MEDIA_T = ('[{"id":"media%d","mime_type":"%s","size":%d,'
           '"url":"%s","file_name":%s}]')
# Links are rendered under this base, replaced by the fake's own as the
# client addressed it when a page is sent (pages may be rendered ahead).
BASE = "@BASE@"
BASE_B = BASE.encode()
MIME = {"image": "image/jpeg", "audio": "audio/ogg", "document": "application/pdf",
        "sticker": "image/webp"}
CONV_T = ('{"id":"c%d","seq":%d,"title":%s,"type":"%s","last_message_at":"%s",'
          '"unread_count":%d,"archived":%s,"created_at":"%s","updated_at":"%s",'
          '"participants":[%s]}')
CONTACT_T = ('{"id":"k%d","seq":%d,"phone":%s,"name":%s,"push_name":%s,'
             '"is_business":%s,"updated_at":"%s"}')


class Stream:
    """One entity stream: rows 0..base_n-1 exist from the start with seq
    offset + i*stride + 1; added and edited rows live in a sorted tail."""

    def __init__(self, name, base_n, offset, stride, counter):
        self.name = name
        self.base_n = base_n
        self.offset = offset
        self.stride = stride
        self.counter = counter          # shared [next_seq] list or own
        self.n_items = base_n           # next row index
        self.moved = set()              # base rows that got a new seq
        self.moved_seqs = []            # their old base seqs, sorted
        self.tail_seqs = []             # ascending seqs of tail rows
        self.tail_items = {}            # seq -> index
        self.item_seq = {}              # index -> seq (tail rows only)
        self.version = {}               # index -> edit count
        self.special = {}               # index -> hostile body kind
        self.deleted = set()
        self.purged = set()             # hard-deleted: gone from every page
        self.sent_of = {}               # message index -> sent_at (epoch s)
        self.conv_of = {}               # message index -> conversation index
        self.sender_of = {}             # message index -> contact index or -1
        self.media = {}                 # message index -> (type, name, mime, size)
        self.status_of = {}             # message index -> delivery status
        self.custom = set()             # indexes with any of the above
        self.hidden = set()             # seqs of rows not committed yet (hold)

    def base_seq(self, i):
        return self.offset + i * self.stride + 1

    def base_top(self):
        return self.base_seq(self.base_n - 1) if self.base_n else self.offset

    def current_seq(self, idx):
        s = self.item_seq.get(idx)
        if s is not None:
            return s
        if idx < self.base_n and idx not in self.moved:
            return self.base_seq(idx)
        return None

    def latest_seq(self):
        vis = [s for s in self.tail_seqs[-len(self.hidden) - 1:] if s not in self.hidden] \
            if self.hidden else self.tail_seqs[-1:]
        if vis:
            return vis[-1]
        if self.hidden and len(self.hidden) < len(self.tail_seqs):
            return max(s for s in self.tail_seqs if s not in self.hidden)
        i = self.base_n - 1
        while i >= 0 and i in self.moved:
            i -= 1
        return self.base_seq(i) if i >= 0 else 0

    def count(self):
        return self.base_n - len(self.moved) + len(self.tail_seqs) - len(self.hidden)

    def _first_base_after(self, since):
        return max(0, (since - self.offset - 1) // self.stride + 1)

    def select(self, since, limit):
        """[(seq, idx)] of at most limit live rows with seq > since, and
        the number of live rows after since."""
        out = []
        i = self._first_base_after(since)
        n = self.base_n
        if i < n:
            moved = self.moved
            bs = self.offset + i * self.stride + 1
            st = self.stride
            if not moved:
                j = min(n, i + limit)
                out = [(bs + (k - i) * st, k) for k in range(i, j)]
            else:
                while i < n and len(out) < limit:
                    if i not in moved:
                        out.append((bs, i))
                    i += 1
                    bs += st
        base_after = max(0, self.base_n - self._first_base_after(since))
        base_after -= len(self.moved_seqs) - bisect.bisect_right(self.moved_seqs, since)
        pos = bisect.bisect_right(self.tail_seqs, since)
        total = base_after + len(self.tail_seqs) - pos
        if self.hidden:
            total -= sum(1 for s in self.hidden if s > since)
            for s in self.tail_seqs[pos:]:
                if len(out) >= limit:
                    break
                if s not in self.hidden:
                    out.append((s, self.tail_items[s]))
        elif len(out) < limit:
            for s in self.tail_seqs[pos:pos + limit - len(out)]:
                out.append((s, self.tail_items[s]))
        return out, total

    def _next_seq(self):
        s = self.counter[0]
        self.counter[0] += 1
        return s

    def add(self, n):
        idxs = []
        for _ in range(n):
            idx = self.n_items
            self.n_items += 1
            s = self._next_seq()
            self.tail_seqs.append(s)
            self.tail_items[s] = idx
            self.item_seq[idx] = s
            idxs.append(idx)
        return idxs

    def touch(self, idx, edit=True):
        """Gives row idx a new seq (an edit; edit=False: the body and
        edited_at stay as they are); returns it."""
        old = self.current_seq(idx)
        if old is None:
            raise KeyError("no live row %d in %s" % (idx, self.name))
        if idx in self.item_seq:
            del self.tail_items[old]
            p = bisect.bisect_left(self.tail_seqs, old)
            del self.tail_seqs[p]
        else:
            self.moved.add(idx)
            bisect.insort(self.moved_seqs, old)
        s = self._next_seq()
        self.tail_seqs.append(s)
        self.tail_items[s] = idx
        self.item_seq[idx] = s
        if edit:
            self.version[idx] = self.version.get(idx, 0) + 1
        self.custom.add(idx)
        return s

    def purge(self, idx):
        """Removes row idx outright (a hard delete: no tombstone)."""
        old = self.current_seq(idx)
        if old is None:
            raise KeyError("no live row %d in %s" % (idx, self.name))
        if idx in self.item_seq:
            del self.tail_items[old]
            del self.tail_seqs[bisect.bisect_left(self.tail_seqs, old)]
            del self.item_seq[idx]
        else:
            self.moved.add(idx)
            bisect.insort(self.moved_seqs, old)
        self.purged.add(idx)

    def restore(self, idx):
        """A purged row comes back, with a new seq; returns it."""
        self.purged.discard(idx)
        s = self._next_seq()
        self.tail_seqs.append(s)
        self.tail_items[s] = idx
        self.item_seq[idx] = s
        self.custom.add(idx)
        return s

    def reset(self, keep, recreate=False):
        """Backend restored from an old backup: only the first `keep`
        original rows, in their original state; seqs continue after them.
        recreate: rows added from now on get ids the old backend never had."""
        keep = max(0, min(keep, self.base_n))
        old_items = self.n_items
        self.base_n = keep
        self.n_items = keep if not recreate else old_items + 1000000
        self.hidden = set()
        self.moved = set()
        self.moved_seqs = []
        self.tail_seqs = []
        self.tail_items = {}
        self.item_seq = {}
        self.version = {}
        self.special = {k: v for k, v in self.special.items() if k < keep}
        self.deleted = set()
        self.purged = set()
        self.conv_of = {k: v for k, v in self.conv_of.items() if k < keep}
        self.sender_of = {k: v for k, v in self.sender_of.items() if k < keep}
        self.media = {k: v for k, v in self.media.items() if k < keep}
        self.status_of = {}
        self.custom = (set(self.special) | set(self.conv_of) | set(self.sender_of)
                       | set(self.media))


class Integration:
    def __init__(self, iid, n_conv, n_msg, n_contacts, stride=1, shared_seq=False,
                 media=False):
        self.id = iid
        self.gen_media = media          # generated media messages carry a file
        self.n_conv0 = max(1, n_conv)
        self.n_contacts0 = max(1, n_contacts)
        self.shared_seq = shared_seq
        self.files = fakefiles.Files()  # the State's, when served
        self._msg_makers = None
        self.streams = {}
        sizes = {"conversations": n_conv, "messages": n_msg, "contacts": n_contacts}
        if shared_seq:
            counter = [1]
            off = 0
            for name in STREAMS:
                st = Stream(name, sizes[name], off, stride, counter)
                off = st.base_top()
                self.streams[name] = st
            counter[0] = off + 1
        else:
            for name in STREAMS:
                counter = [1]
                st = Stream(name, sizes[name], 0, stride, counter)
                counter[0] = st.base_top() + 1
                self.streams[name] = st

    def status(self):
        return {name: self.streams[name].latest_seq() for name in STREAMS}

    def reset_seq(self, keep, streams=None, recreate=False):
        for name in streams or STREAMS:
            self.streams[name].reset(keep, recreate)
        if self.shared_seq:
            top = max(s.latest_seq() for s in self.streams.values())
            self.streams["messages"].counter[0] = top + 1
        else:
            for name in streams or STREAMS:
                st = self.streams[name]
                st.counter[0] = st.latest_seq() + 1

    # -- rendering --------------------------------------------------------

    def render_message(self, st, seq, i):
        v = st.version.get(i, 0)
        conv = st.conv_of.get(i)
        if conv is None:
            conv = i % self.n_conv0
        typ = MSG_TYPES[i % 14]
        added = st.media.get(i)
        if added is not None:
            typ = added[0]
        from_me = i % 3 == 0
        sender = st.sender_of.get(i)
        if sender is None:
            sender = -1 if from_me else (i * 7919) % self.n_contacts0
        sender_s = "null" if sender < 0 else '"k%d"' % sender
        sent = ts(st.sent_of.get(i, BASE_EPOCH + i * 37))
        sp = st.special.get(i)
        deleted = i in st.deleted
        if deleted:
            body = "null"
        elif sp is not None:
            body = SPECIAL_BODIES[sp] % i
        elif typ == "text":
            body = BODY_VARIANTS[i % NVAR] % i
        elif typ == "location":
            body = "null"
        else:
            body = '"caption %d"' % i if i % 2 else "null"
        if v:
            if not deleted and body != "null":
                body = body[:-1] + ' [edit %d]"' % v
            ed = ts(EDIT_EPOCH + i + v * 3600)
            edited = '"%s"' % ed
            upd = ed
        else:
            edited = "null"
            upd = sent
        if added is not None:
            media = MEDIA_T % (i, json.dumps(added[2])[1:-1], added[3],
                               self.files.link(BASE, "media%d" % i), json.dumps(added[1]))
        elif typ in MIME and self.gen_media:
            media = MEDIA_T % (i, MIME[typ], 1000 + i % 100000,
                               self.files.link(BASE, "media%d" % i),
                               '"doc%d.pdf"' % i if typ == "document" else "null")
        else:
            media = "[]"
        reply = '"m%d"' % (i - 1) if i % 7 == 6 else "null"
        return MSG_T % (i, seq, conv, sender_s, "true" if from_me else "false", body,
                        typ, st.status_of.get(i, MSG_STATUS[i % 8]), sent, edited,
                        "true" if deleted else "false", media, reply, upd)

    def render_conversation(self, st, seq, i):
        v = st.version.get(i, 0)
        group = i % 4 == 3
        if group:
            parts = ",".join('"k%d"' % ((i * 31 + k) % self.n_contacts0) for k in range(3))
        else:
            parts = '"k%d"' % ((i * 31) % self.n_contacts0)
        sp = st.special.get(i)
        if sp is not None:
            title = SPECIAL_BODIES[sp] % i
        elif group:
            title = '"Group %d \u00e9quipe"' % i
        else:
            title = '"Conversation %d"' % i
        if v:
            title = title[:-1] + ' [edit %d]"' % v
        created = ts(BASE_EPOCH + i * 60)
        upd = ts(EDIT_EPOCH + i + v * 3600) if v else created
        return CONV_T % (i, seq, title, "group" if group else "direct",
                         ts(BASE_EPOCH + i * 60 + 3600), i % 5,
                         "true" if i % 10 == 9 else "false", created, upd, parts)

    def render_contact(self, st, seq, i):
        v = st.version.get(i, 0)
        phone = ('"+49151%07d"' if i % 2 == 0 else '"49151%07d"') % i if i % 5 != 4 else "null"
        sp = st.special.get(i)
        name = SPECIAL_BODIES[sp] % i if sp is not None else '"Contact %d"' % i
        if v:
            name = name[:-1] + ' [edit %d]"' % v
        push = '"K%d"' % i if i % 3 else "null"
        upd = ts(EDIT_EPOCH + i + v * 3600) if v else ts(BASE_EPOCH + i * 11)
        return CONTACT_T % (i, seq, phone, name, push,
                            "true" if i % 17 == 0 else "false", upd)

    def _message_templates(self):
        """str.format templates for unmodified messages, one per residue of
        the index modulo 168 (the period of every index-derived choice):
        {0}=i {1}=seq {2}=conversation {3}=sender {4}=sent_at {5}=i-1 {6}=size
        {7}=the media's link."""
        def esc(x):
            return x.replace("{", "{{").replace("}", "}}")

        def pct(x):  # a %d fragment -> {0}
            return "{0}".join(esc(p) for p in x.split("%d"))
        out = []
        for r in range(168):
            typ = MSG_TYPES[r % 14]
            from_me = r % 3 == 0
            if typ == "text":
                body = pct(BODY_VARIANTS[r % NVAR])
            elif typ == "location":
                body = "null"
            else:
                body = '"caption {0}"' if r % 2 else "null"
            if typ in MIME and self.gen_media:
                media = esc('[{"id":"media') + "{0}" + esc('","mime_type":"%s","size":' % MIME[typ]) + \
                    "{6}" + esc(',"url":"') + "{7}" + esc('","file_name":') + ('"doc{0}.pdf"' if typ == "document" else "null") + "}}]"
            else:
                media = "[]"
            t = ('{{"id":"m{0}","seq":{1},"conversation_id":"c{2}","sender_id":'
                 + ("null" if from_me else '"k{3}"')
                 + ',"from_me":' + ("true" if from_me else "false")
                 + ',"body":' + body + ',"type":"' + typ + '","status":"' + MSG_STATUS[r % 8]
                 + '","sent_at":"{4}","edited_at":null,"deleted":false,"media":' + media
                 + ',"reply_to_id":' + ('"m{5}"' if r % 7 == 6 else "null")
                 + ',"updated_at":"{4}"}}')
            out.append(t)
        return out

    def _message_makers(self):
        """One compiled bytes-%-formatter per template: fn(i, seq, conversation,
        sender, sent_at bytes, i-1, size) -> row bytes."""
        def conv(m):
            if m.group(0) == "{{":
                return "{"
            if m.group(0) == "}}":
                return "}"
            order.append(int(m.group(1)))
            return "%s" if m.group(1) in "47" else "%d"
        names = ("i", "seq", "c", "k", "t", "ip", "sz", "u")
        makers = []
        for t in self._message_templates():
            order = []
            pb = re.sub(r"\{\{|\}\}|\{(\d)\}", conv, t.replace("%", "%%")).encode("utf-8")
            src = "lambda i, seq, c, k, t, ip, sz, u: P %% (%s,)" % ", ".join(
                names[o] for o in order)
            makers.append(eval(src, {"P": pb}))
        return makers

    def render_messages_fast(self, st, rows):
        mk = self._msg_makers
        if mk is None:
            mk = self._msg_makers = self._message_makers()
        custom = st.custom
        nconv = self.n_conv0
        ncont = self.n_contacts0
        hms = _HMS_B
        days = _day_cache_b
        link = self.files.link
        out = []
        app = out.append
        for seq, i in rows:
            if i in custom:
                app(self.render_message(st, seq, i).encode("utf-8", "surrogateescape"))
                continue
            d, rem = divmod(BASE_EPOCH + i * 37, 86400)
            p = days.get(d)
            if p is None:
                p = days[d] = ts(d * 86400)[:10].encode()
            u = link(BASE, "media%d" % i).encode() \
                if self.gen_media and i % 14 in (3, 5, 8, 11) else b""
            app(mk[i % 168](i, seq, i % nconv, (i * 7919) % ncont, p + hms[rem], i - 1,
                            1000 + i % 100000, u))
        return out

    def render(self, name, rows):
        st = self.streams[name]
        if name == "messages":
            return self.render_messages_fast(st, rows)
        if name == "conversations":
            r = self.render_conversation
        elif name == "conversations":
            r = self.render_conversation
        else:
            r = self.render_contact
        return [r(st, s, i).encode("utf-8", "surrogateescape") for s, i in rows]

    def page(self, name, since, limit, with_total=True):
        """Returns (rendered rows (bytes), rows, latest_seq, has_more, total)."""
        st = self.streams[name]
        rows, total = st.select(since, limit)
        latest = rows[-1][0] if rows else since
        has_more = total > len(rows)
        text = self.render(name, rows)
        return text, rows, latest, has_more, total


def page_json(name, rendered, latest, has_more, total, with_total=True):
    """The page body (bytes) from rendered rows (bytes)."""
    tail = b',"total_count":%d' % total if with_total else b""
    return b'{"%s":[%s],"latest_seq":%d,"has_more":%s%s}' % (
        name.encode(), b",".join(rendered), latest, b"true" if has_more else b"false", tail)


def id_index(stream, ext_id):
    """'m12' -> 12 (the prefix letter depends on the stream)."""
    return int(str(ext_id)[1:])


# ---------------------------------------------------------------------------
# COPY text (for the benchmark's floor: COPY straight into the table).

def _copy_escape(s):
    if s is None:
        return "\\N"
    return (s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def dump_copy(integ, stream, out, batch=5000):
    """Writes every live row of a stream as PostgreSQL COPY text
    (tab-separated, \\N for NULL). Columns for messages:
    external_id, conversation_external_id, sender_external_id, direction,
    kind, body, sent_at, edited_at, status, raw (jsonb text).
    Other streams: external_id, raw. Hostile rows are sanitised as a reader
    would (NUL and invalid UTF-8 -> U+FFFD)."""
    since = 0
    while True:
        text, rows, latest, has_more, _ = integ.page(stream, since, batch)
        for row in text:
            raw = row.decode("utf-8", "replace")
            raw = raw.replace("\\u0000", "\\ufffd")
            raw = re.sub(r"\\ud[89a-f][0-9a-f]{2}", "\\\\ufffd", raw)
            d = json.loads(raw)
            if stream == "messages":
                f = (d["id"], d["conversation_id"], d["sender_id"],
                     "out" if d["from_me"] else "in", d["type"], d["body"],
                     d["sent_at"], d["edited_at"], d["status"], raw)
            else:
                f = (d["id"], raw)
            out.write("\t".join(_copy_escape(x) for x in f) + "\n")
        if not has_more:
            break
        since = latest


# ---------------------------------------------------------------------------
# Server state shared by handler threads.

class State(fakelib.State):
    def __init__(self, args):
        super().__init__(args.token)
        self.gzip = args.gzip
        self.total_count = not args.no_total_count
        self.max_limit = args.max_limit
        self.integrations = {}
        self.files = fakefiles.Files()
        for iid in args.integration or ["int-1"]:
            self.integrations[iid] = Integration(
                iid, args.conversations, args.messages, args.contacts,
                stride=args.seq_stride, shared_seq=args.shared_seq, media=args.media)
            self.integrations[iid].files = self.files
        self.default_iid = next(iter(self.integrations))
        self.pages = None
        if args.prerender:
            self.prerender()

    def prerender(self):
        """Every page of every stream at msgsync's default page sizes, keyed
        by (integration, stream, since_seq, limit)."""
        pages = {}
        for it in self.integrations.values():
            for name in STREAMS:
                limit = min(PRERENDER_LIMITS[name], self.max_limit)
                since = 0
                while True:
                    text, rows, latest, has_more, total = it.page(name, since, limit)
                    pages[(it.id, name, since, limit)] = page_json(
                        name, text, latest, has_more, total, self.total_count)
                    if not has_more:
                        break
                    since = latest
        self.pages = pages

    def file_content(self, fid):
        """The bytes of file fid (a message's "media<index>" of the first
        integration, or one added with content), None if there is none."""
        if fid in self.files.content:
            return self.files.content[fid]
        m = re.match(r"^media(\d+)$", fid)
        if m is None:
            return None
        it = self.integrations[self.default_iid]
        i, s = int(m.group(1)), it.streams["messages"]
        if i >= s.n_items or i in s.purged or MSG_TYPES[i % 14] not in MIME \
                or not it.gen_media:
            return None
        return fakefiles.pattern(fid, 1000 + i % 100000)

    def integ(self, d):
        iid = (d or {}).get("integration") or self.default_iid
        it = self.integrations.get(iid)
        if it is None:
            raise KeyError("unknown integration '%s'" % iid)
        return it


class Handler(fakelib.Handler):
    server_version = "fake-seqapi/1"
    encode_errors = "surrogateescape"   # invalid UTF-8 travels as surrogate escapes
    fault_kinds = ("http", "429", "truncate", "truncate_conn", "nonjson", "stuck", "huge",
                   "slow", "close", "bad_row", "disorder", "latest_ahead", "bad_id")
    http_fault_body = '{"error":"internal error"}'
    rate_limit_body = '{"error":"rate limited"}'
    nonjson_body = "<html><body>502 Bad Gateway (nginx)</body></html>\n"

    def control_error(self, e):
        return str(e)

    # -- the seqapi surface -----------------------------------------------

    def api(self, method, u):
        st = self.server.state
        parts = u.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "files":
            return self.api_file(method, u, parts[1])
        endpoint = parts[1] if len(parts) == 3 and parts[0] == "sync" else None
        q = parse_qs(u.query, keep_blank_values=True)
        auth = self.headers.get("Authorization")
        entry = {"method": method, "path": u.path, "endpoint": endpoint,
                 "query": {k: v[-1] for k, v in q.items()},
                 "headers": self.headers_without("authorization"),
                 "auth": ("ok" if auth == "Bearer " + st.token else
                          "missing" if auth is None else "bad"),
                 "conn": self.conn_id, "t": time.time(), "status": None, "t_end": None}
        self.serve_logged(endpoint or "other", entry,
                          lambda fault: self.serve_api(method, parts, endpoint, q, auth, fault))

    def api_file(self, method, u, fid):
        """GET /files/{id}?expires&token: a media file behind its link."""
        st = self.server.state
        fid = unquote(fid)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        entry = {"method": method, "path": u.path, "endpoint": "files", "file": fid,
                 "query": dict(q, token="***") if "token" in q else q,
                 "headers": self.headers_without("authorization"),
                 "auth": "ok" if self.headers.get("Authorization") == "Bearer " + st.token
                 else "missing" if self.headers.get("Authorization") is None else "bad",
                 "conn": self.conn_id, "t": time.time(), "status": None, "t_end": None}

        def serve(fault):
            if self.answer_fault(fault):
                return
            with st.lock:
                content = st.file_content(fid)
            fakefiles.serve_file(self, st.files, fid, q, content)
        self.serve_logged("files", entry, serve)

    def respond_page(self, kind, body, code=200, headers=()):
        """Pages carry links under BASE: the fake's own base goes in."""
        if isinstance(body, bytes) and BASE_B in body:
            body = body.replace(BASE_B, fakefiles.base_of(self).encode())
        super().respond_page(kind, body, code, headers)

    def serve_api(self, method, parts, endpoint, q, auth, fault):
        st = self.server.state
        if self.answer_fault(fault):
            return
        if fault is not None and fault["kind"] == "huge":
            self.send_huge(int(fault.get("size", 1 << 20)), bool(fault.get("chunked")),
                           endpoint or "messages")
            return
        if auth != "Bearer " + st.token:
            self.respond(401, '{"error":"unauthorized"}',
                         headers=[("WWW-Authenticate", 'Bearer realm="seqapi"')])
            return
        if method != "GET" or endpoint is None or parts[0] != "sync":
            self.respond(404, '{"error":"not found"}')
            return
        if endpoint != "status" and endpoint not in STREAMS:
            self.respond(404, '{"error":"not found"}')
            return
        integ = st.integrations.get(parts[2])
        if integ is None:
            self.respond(404, '{"error":"integration not found"}')
            return
        if endpoint == "status":
            with st.lock:
                body = json.dumps(integ.status())
            self.respond(200, body)
            return
        try:
            since = int(q.get("since_seq", ["0"])[-1] or 0)
            limit = int(q.get("limit", ["100"])[-1] or 100)
        except ValueError:
            self.respond(400, '{"error":"bad since_seq or limit"}')
            return
        if limit <= 0:
            self.respond(400, '{"error":"limit must be positive"}')
            return
        limit = min(limit, st.max_limit)
        pages = st.pages
        if fault is None and pages is not None:
            body = pages.get((integ.id, endpoint, since, limit))
            if body is not None:
                self.respond_page(None, body)
                return
        with st.lock:
            rows, total = integ.streams[endpoint].select(since, limit)
            rendered = integ.render(endpoint, rows)
        latest = rows[-1][0] if rows else since
        has_more = total > len(rows)
        k = fault["kind"] if fault else None
        if k == "stuck":
            body = page_json(endpoint, rendered if fault.get("rows") else [], since, True,
                             total, st.total_count)
        elif k == "disorder" and len(rendered) >= 2:
            rendered[0], rendered[1] = rendered[1], rendered[0]
            body = page_json(endpoint, rendered, latest, has_more, total, st.total_count)
        elif k == "latest_ahead":
            body = page_json(endpoint, rendered, latest + int(fault.get("by", 1000)), True,
                             total, st.total_count)
        elif k == "bad_row" and rendered:
            rendered[len(rendered) // 2] = re.sub(rb'"seq":\d+', b'"seq":"x"',
                                                  rendered[len(rendered) // 2], count=1)
            body = page_json(endpoint, rendered, latest, has_more, total, st.total_count)
        elif k == "bad_id" and rendered:
            at = [j for j, (sq, _) in enumerate(rows) if sq == int(fault["seq"])] \
                if "seq" in fault else [len(rendered) // 2]
            for j in at:
                rendered[j] = re.sub(rb'"id":"[^"]*"', b'"id":{"bad":true}', rendered[j],
                                     count=1)
            body = page_json(endpoint, rendered, latest, has_more, total, st.total_count)
        else:
            body = page_json(endpoint, rendered, latest, has_more, total, st.total_count)
        self.respond_page(k, body)

    def send_huge(self, size, chunked, name):
        head = '{"%s":[],"latest_seq":0,"has_more":false,"padding":"' % name
        tail = '"}'
        pad = max(0, size - len(head) - len(tail))
        if not chunked:
            body = (head + "x" * pad + tail).encode()
            self.respond(200, body)
            return
        # Chunked: no Content-Length, the client must cap while streaming.
        h = ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
             "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        self.close_connection = True
        try:
            self.wfile.write(h.encode() + b"%x\r\n%s\r\n" % (len(head), head.encode()))
            chunk = b"x" * 65536
            left = pad
            while left > 0:
                c = chunk if left >= len(chunk) else chunk[:left]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                left -= len(c)
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail.encode()))
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.status_sent = 200

    # -- control API ------------------------------------------------------

    def control_get(self, what, q):
        st = self.server.state
        if what == "state":
            with st.lock:
                it = st.integ(q)
                out = {}
                for name, s in it.streams.items():
                    out[name] = {"count": s.count(), "latest_seq": s.latest_seq(),
                                 "next_index": s.n_items, "next_seq": s.counter[0],
                                 "edited": len(s.version)}
                return {"integration": it.id, "streams": out}
        if what == "dump":
            name = q.get("stream", "messages")
            with st.lock:
                it = st.integ(q)
                s = it.streams[name]
                rows, _ = s.select(0, s.count() + 1)
                rendered = it.render(name, rows)
            out = []
            base = fakefiles.base_of(self)
            for text in rendered:
                out.append(json.loads(text.decode("utf-8", "replace").replace(BASE, base)))
            return {"stream": name, "rows": out}
        if what == "media_state":
            with st.lock:
                return st.files.state()
        return None

    def control_post(self, what, d):
        st = self.server.state
        if what in ("add", "edit", "reset_seq", "config", "commit", "media_add",
                    "media_expire"):
            st.pages = None     # pre-rendered pages no longer say what is there
        res = st.files.control(what, d)
        if res is not None:
            return res
        if what == "media_add":
            # A new message carrying one file of exactly these bytes.
            it = st.integ(d)
            s = it.streams["messages"]
            content = base64.b64decode(d.get("content_b64", ""))
            mime = str(d.get("mime", "image/jpeg"))
            typ = d.get("type") or next((t for t, m in MIME.items()
                                         if m.split("/")[0] == mime.split("/")[0]), "document")
            i = s.add(1)[0]
            s.media[i] = (typ, d.get("name", "f.jpg"), mime, len(content))
            s.custom.add(i)
            if "conversation_index" in d:
                s.conv_of[i] = int(d["conversation_index"])
            st.files.content["media%d" % i] = content
            return {"id": "m%d" % i, "media_id": "media%d" % i, "index": i,
                    "seq": s.current_seq(i), "latest_seq": s.latest_seq()}
        if what == "media_gone":
            # The files of these messages are gone for good (410).
            ids = d.get("ids") or [d["id"]]
            for x in ids:
                st.files.gone.add("media%d" % id_index("messages", x))
            return {"gone": sorted(st.files.gone)}
        if what == "prerender":
            st.prerender()
            return {"pages": len(st.pages)}
        if what == "add":
            it = st.integ(d)
            s = it.streams[d.get("stream", "messages")]
            idxs = s.add(int(d.get("n", 1)))
            if d.get("hold"):
                s.hidden.update(s.item_seq[i] for i in idxs)
            for i in idxs:
                if "conversation_index" in d:
                    s.conv_of[i] = int(d["conversation_index"])
                    s.custom.add(i)
                if "sender_index" in d:
                    s.sender_of[i] = int(d["sender_index"])
                    s.custom.add(i)
                if "age_days" in d:
                    s.sent_of[i] = int(time.time() - float(d["age_days"]) * 86400)
                    s.custom.add(i)
            for off, kind in (d.get("special") or {}).items():
                if kind not in SPECIAL_BODIES:
                    raise ValueError("unknown special kind '%s'" % kind)
                s.special[idxs[int(off)]] = kind
                s.custom.add(idxs[int(off)])
            return {"indexes": idxs[:10000], "first_seq": s.current_seq(idxs[0]) if idxs else None,
                    "latest_seq": s.latest_seq()}
        if what == "edit":
            it = st.integ(d)
            s = it.streams[d.get("stream", "messages")]
            if "ids" in d:
                idxs = [id_index(s.name, x) for x in d["ids"]]
            elif "indexes" in d:
                idxs = [int(x) for x in d["indexes"]]
            else:
                n = int(d.get("n", 1))
                live = s.count()
                step = max(1, live // max(1, n))
                rows, _ = s.select(0, live)
                idxs = [i for _, i in rows[::step]][:n]
            kind = d.get("kind", "edit")
            seqs = []
            for i in idxs:
                if kind == "purge":
                    s.purge(i)
                    continue
                if kind == "restore":
                    seqs.append(s.restore(i))
                    continue
                if kind == "delete":
                    s.deleted.add(i)
                elif kind == "status":
                    s.status_of[i] = str(d["status"])
                    seqs.append(s.touch(i, edit=False))
                    continue
                elif kind in SPECIAL_BODIES:
                    s.special[i] = kind
                elif kind != "edit":
                    raise ValueError("unknown edit kind '%s'" % kind)
                seqs.append(s.touch(i))
            return {"indexes": idxs, "seqs": seqs, "latest_seq": s.latest_seq()}
        if what == "commit":
            it = st.integ(d)
            s = it.streams[d.get("stream", "messages")]
            held = sorted(s.hidden)
            if "n" in d:
                held = held[:int(d["n"])]
            s.hidden -= set(held)
            return {"committed": held, "latest_seq": s.latest_seq()}
        if what == "reset_seq":
            it = st.integ(d)
            it.reset_seq(int(d.get("keep", 0)), d.get("streams"), bool(d.get("recreate")))
            return {"status": it.status()}
        if what == "config":
            if "token" in d:
                st.token = str(d["token"])
            if "gzip" in d:
                st.gzip = bool(d["gzip"])
            if "total_count" in d:
                st.total_count = bool(d["total_count"])
            if "latency" in d:
                st.latency = float(d["latency"])
            return {"ok": True}
        return None


# ---------------------------------------------------------------------------
# --bench: fetch every message page over one keep-alive connection from a
# separate client process and report the server's rows/s.

def bench(args):
    import http.client
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        pf = os.path.join(tmp, "port")
        cmd = [sys.executable, os.path.abspath(__file__), "--port-file", pf,
               "--messages", str(args.messages), "--conversations", str(args.conversations),
               "--contacts", str(args.contacts), "--token", "bench"]
        if args.gzip:
            cmd.append("--gzip")
        p = subprocess.Popen(cmd)
        try:
            for _ in range(500):
                if os.path.exists(pf):
                    break
                time.sleep(0.01)
            port = int(open(pf).read())
            conn = http.client.HTTPConnection("127.0.0.1", port)
            hdr = {"Authorization": "Bearer bench"}
            if args.gzip:
                hdr["Accept-Encoding"] = "gzip"
            t0 = time.perf_counter()
            cpu0 = _child_cpu(p.pid)
            since, rows, nbytes, reqs = 0, 0, 0, 0
            rx = re.compile(rb'"latest_seq":(\d+),"has_more":(true|false)')
            while True:
                conn.request("GET", "/sync/messages/int-1?since_seq=%d&limit=%d"
                             % (since, args.bench_limit), headers=hdr)
                r = conn.getresponse()
                body = r.read()
                reqs += 1
                nbytes += len(body)
                if r.getheader("Content-Encoding") == "gzip":
                    body = gziplib.decompress(body)
                m = rx.search(body, max(0, len(body) - 200))
                new = int(m.group(1))
                rows += body.count(b',"seq":')
                since = new
                if m.group(2) == b"false":
                    break
            dt = time.perf_counter() - t0
            cpu = _child_cpu(p.pid) - cpu0
            conns = json.loads(_get(port, "/_control/stats"))["connections"] - 1
            print("fake-seqapi bench: %d messages in %d pages, %.1f MB, %.2f s wall "
                  "(%.0f messages/s), server CPU %.2f s (%.0f messages per CPU-second), "
                  "%d connection(s)" % (rows, reqs, nbytes / 1e6, dt, rows / dt, cpu,
                                         rows / cpu if cpu else 0, conns))
        finally:
            p.terminate()
            p.wait()


def _get(port, path):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", path)
    return c.getresponse().read()


def _child_cpu(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        tck = os.sysconf("SC_CLK_TCK")
        return (int(v[11]) + int(v[12])) / tck
    except OSError:
        return 0.0


def main(argv=None):
    ap = argparse.ArgumentParser(description="fake seqapi backend for msgsync tests")
    fakelib.add_server_args(ap)
    ap.add_argument("--integration", action="append",
                    help="integration id (repeatable; default int-1)")
    ap.add_argument("--conversations", type=int, default=10)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--contacts", type=int, default=10)
    ap.add_argument("--seq-stride", type=int, default=1,
                    help="seq distance between original rows (>1 leaves gaps)")
    ap.add_argument("--shared-seq", action="store_true",
                    help="one seq counter for every stream")
    ap.add_argument("--max-limit", type=int, default=100000)
    ap.add_argument("--gzip", action="store_true", help="gzip when the client accepts it")
    ap.add_argument("--media", action="store_true",
                    help="generated image, audio, document and sticker messages carry a "
                    "file each (else their media array is empty)")
    ap.add_argument("--no-total-count", action="store_true")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--bench-limit", type=int, default=1500)
    ap.add_argument("--dump-copy", metavar="STREAM", choices=STREAMS)
    ap.add_argument("--prerender", action="store_true",
                    help="render every page at msgsync's default page sizes once, at start")
    args = ap.parse_args(argv)
    if args.seq_stride < 1:
        ap.error("--seq-stride must be >= 1")

    if args.bench:
        bench(args)
        return 0
    if args.dump_copy:
        it = Integration("int-1", args.conversations, args.messages, args.contacts,
                         stride=args.seq_stride, shared_seq=args.shared_seq)
        out = open(sys.stdout.fileno(), "w", encoding="utf-8", buffering=1 << 20, closefd=False)
        dump_copy(it, args.dump_copy, out)
        out.flush()
        return 0

    return fakelib.serve(args, Handler, State(args))


if __name__ == "__main__":
    sys.exit(main())
