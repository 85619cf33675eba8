"""End-to-end tests of the unipile source, against the fake Unipile API
tests/fake/unipile.py. Imported by run.py, whose @test they register; run
them with  python3 tests/e2e/run.py --filter uni_
"""

import calendar
import os
import re
import signal
import time
from datetime import datetime, timedelta, timezone

import __main__ as e2e

HERE = os.path.dirname(os.path.abspath(__file__))
UNI_FAKE = os.path.join(os.path.dirname(HERE), "fake", "unipile.py")

ACCOUNT = "acc-1"
KINDS = {0: "direct", 1: "group", 2: "channel"}
MS_RX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

test, check, eq, Fail = e2e.test, e2e.check, e2e.eq, e2e.Fail


class UniFake(e2e.Fake):
    SCRIPT = UNI_FAKE

    def post(self, what, **body):
        return self.call(what, body)

    def chat(self, **kw):
        return self.post("chat", **kw)

    def message(self, chat, n=1, **kw):
        return self.post("message", chat=chat, n=n, **kw)["ids"]

    def dump(self, what="messages", account=ACCOUNT):
        return self.call("dump?account=%s&what=%s" % (account, what))["items"]

    def state(self, integration=None):
        return self.call("state")

    def api_requests(self, endpoint=None):
        return [r for r in self.requests(endpoint) if r.get("endpoint")]


def uni_setup(ctx, name="fake", **opts):
    """A fresh database and a fake Unipile (options: chats=, messages=, ...)."""
    ctx.cluster.createdb(ctx.db)
    ctx.fake = ctx.new_fake(kind=UniFake, name=name, **opts)
    return ctx.fake


def uni_source(ctx, name="uni", fake=None, url=None, extra="", token=None,
               account=ACCOUNT):
    fake = fake or ctx.fake
    tf = ctx.token_file(token if token is not None else fake.token, name + ".token")
    return ('  { name = "%s"; type = "unipile"; url = "%s"; account_id = "%s";\n'
            '    token_file = "%s"; %s }' % (name, url or fake.url, account, tf, extra))


def uni_config(ctx, extra="", **kw):
    return ctx.config(sources=[uni_source(ctx, extra=extra, **kw)])


# -- times and marks ----------------------------------------------------------

def ms_of(ts):
    """Unipile's YYYY-MM-DDTHH:MM:SS.mmmZ as epoch milliseconds."""
    d = datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(d.timetuple()) * 1000 + int(ts[20:23])


def fmt_ms(ms):
    s, r = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + ".%03dZ" % r


def mark(item):
    """The stored watermark of an item: its time with microseconds, and id."""
    return "%s.%03d000Z|%s" % (item["timestamp"][:19], ms_of(item["timestamp"]) % 1000,
                               item["id"])


def mark_ms(m):
    return ms_of(m.split("|", 1)[0][:23] + "Z")


def key(item):
    """Walk order: (time, id), ids by code point, as the watermark compares."""
    return (ms_of(item["timestamp"]), item["id"])


def pg_time(s):
    return None if s is None else datetime.fromisoformat(s).astimezone(timezone.utc)


def up_time(ts):
    return None if ts is None else datetime.fromisoformat(ts.replace("Z", "+00:00"))


def iso_ms(ms):
    return fmt_ms(ms)


# -- what the database holds ------------------------------------------------

def stored_messages(ctx, source="uni", where="true"):
    rows = ctx.sql_json(
        "SELECT m.external_id, m.direction, m.kind, m.body, m.sent_at, m.status,"
        " m.deleted_at IS NOT NULL AS deleted, m.attachments, m.raw->>'provider_id' AS pid,"
        " m.seq, c.external_id AS conv, k.external_id AS sender"
        " FROM message m JOIN source s ON s.id = m.source_id"
        " LEFT JOIN conversation c ON c.id = m.conversation_id"
        " LEFT JOIN contact k ON k.id = m.sender_contact_id"
        " WHERE s.name = '%s' AND %s" % (source, where))
    return {r["external_id"]: r for r in rows}


def stored_convs(ctx, source="uni"):
    rows = ctx.sql_json(
        "SELECT c.external_id, c.title, c.kind, c.is_read, c.unread_count,"
        " c.last_message_at, c.archived, c.raw IS NULL AS placeholder"
        " FROM conversation c JOIN source s ON s.id = c.source_id WHERE s.name = '%s'"
        % source)
    return {r["external_id"]: r for r in rows}


def stored_contacts(ctx, source="uni"):
    rows = ctx.sql_json(
        "SELECT k.external_id, k.display_name, k.phone, k.username,"
        " k.raw IS NULL AS placeholder"
        " FROM contact k JOIN source s ON s.id = k.source_id WHERE s.name = '%s'" % source)
    return {r["external_id"]: r for r in rows}


def expected_messages(fake, upto=None):
    """The fake's messages as msgsync stores them: once per provider id (the
    first in the walk's order, newest first), those at or above `upto` (a
    (ms, id) key) if given."""
    want, pids = {}, set()
    for m in fake.dump("messages"):
        if m["provider_id"] in pids:
            continue
        pids.add(m["provider_id"])
        if upto is None or key(m) >= upto:
            want[m["id"]] = m
    return want


def msg_kind(m):
    if m.get("is_event"):
        return "event"
    return (m.get("message_type") or "message").lower()


def msg_status(m):
    return "seen" if m.get("seen") else "delivered" if m.get("delivered") else None


def no_token(atts):
    """Attachments as stored: their links without the token (lib/link.c)."""
    return [dict(a, url=re.sub(r"[?&]token=[^&#]*", "", a["url"]))
            if isinstance(a, dict) and isinstance(a.get("url"), str) else a
            for a in atts or []]


def assert_messages(ctx, fake, want=None, source="uni"):
    want = expected_messages(fake) if want is None else want
    got = stored_messages(ctx, source)
    missing, extra = set(want) - set(got), set(got) - set(want)
    check(not missing and not extra, "%d messages missing, %d unexpected (of %d upstream)"
          % (len(missing), len(extra), len(want)),
          "missing e.g. %s" % sorted(missing)[:5], "extra e.g. %s" % sorted(extra)[:5])
    for i, m in want.items():
        g = got[i]
        eq(g["direction"], "out" if m["is_sender"] else "in", "%s direction" % i)
        eq(g["kind"], msg_kind(m), "%s kind" % i)
        eq(g["body"], m["text"], "%s body" % i)
        eq(g["conv"], m["chat_id"], "%s conversation" % i)
        eq(g["sender"], m["sender_attendee_id"], "%s sender" % i)
        eq(pg_time(g["sent_at"]), up_time(m["timestamp"]), "%s sent_at" % i)
        eq(g["status"], msg_status(m), "%s status" % i)
        eq(g["deleted"], bool(m["deleted"]), "%s deleted" % i)
        eq(g["attachments"], no_token(m["attachments"]) or None, "%s attachments" % i)
        eq(g["pid"], m["provider_id"], "%s raw provider_id" % i)


def assert_chats(ctx, fake, source="uni"):
    chats = fake.dump("chats")
    got = stored_convs(ctx, source)
    eq(sorted(k for k, v in got.items() if not v["placeholder"]), sorted(c["id"] for c in chats),
       "conversations stored")
    for c in chats:
        g = got[c["id"]]
        eq(g["title"], c["name"], "%s title" % c["id"])
        eq(g["kind"], KINDS[c["type"]], "%s kind" % c["id"])
        eq(g["unread_count"], c["unread_count"], "%s unread_count" % c["id"])
        eq(g["is_read"], not c["unread"], "%s is_read" % c["id"])
        eq(g["archived"], bool(c["archived"]), "%s archived" % c["id"])
        eq(pg_time(g["last_message_at"]), up_time(c["timestamp"]), "%s last_message_at"
           % c["id"])
    atts = fake.dump("attendees")
    got = stored_contacts(ctx, source)
    eq(sorted(k for k, v in got.items() if not v["placeholder"]), sorted(a["id"] for a in atts),
       "contacts stored")
    for a in atts:
        g = got[a["id"]]
        eq(g["display_name"], a["name"], "%s display_name" % a["id"])
        eq(g["username"], a["provider_id"], "%s username" % a["id"])
        m = re.match(r"^(\d+)@s\.whatsapp\.net$", a["provider_id"])
        eq(g["phone"], "+" + m.group(1) if m else None, "%s phone" % a["id"])


def assert_exact(ctx, fake, source="uni", check_cursor=True):
    assert_chats(ctx, fake, source)
    assert_messages(ctx, fake, source=source)
    if check_cursor:
        msgs, chats = fake.dump("messages"), fake.dump("chats")
        eq(ctx.cursor("messages", source), mark(max(msgs, key=key)) if msgs else None,
           "messages cursor")
        eq(ctx.cursor("chats", source), mark(max(chats, key=key)) if chats else None,
           "chats cursor")


def after_params(fake):
    return [q["query"].get("after") for q in fake.api_requests("messages")]


def a_chat(fake, at=None, messages=0, **kw):
    """A new 1:1 chat; returns its id (and message ids)."""
    if at is not None:
        kw["at"] = at
    r = fake.chat(messages=messages, **kw)
    return r["ids"][0], r["message_ids"][0]


# ---------------------------------------------------------------------------


@test
def uni_full_sync_exact(ctx):
    """Chats (1:1 and groups) with their attendees, messages over several
    pages, the fake's flags (hidden events, deleted, edited, attachments)."""
    fake = uni_setup(ctx, chats=7, messages=30)
    uni_config(ctx, extra="page_size = 25;")
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r, "full-sync")
    eq(r.source("uni").get("type"), "unipile", "source type")
    assert_exact(ctx, fake)
    n = len(fake.dump("messages"))
    eq(r.stream("messages", "uni")["fetched"], n, "messages fetched")
    eq(r.stream("messages", "uni")["api_calls"], e2e.page_count(n, 25), "messages api_calls")
    eq(r.stream("chats", "uni")["fetched"], 7, "chats fetched")
    eq(r.stream("chats", "uni")["api_calls"], 1 + 7, "chats api_calls (a page, attendees)")
    e2e.json_cursor_is_db(ctx, r, "messages", "uni")
    e2e.json_cursor_is_db(ctx, r, "chats", "uni")
    reqs = fake.api_requests()
    check(all(q["key_ok"] for q in reqs), "a request without the right X-API-KEY")
    check(all(q["headers"].get("Accept") == "application/json" for q in reqs),
          "Accept: application/json not sent", [q["headers"] for q in reqs[:2]])
    check(all(q["query"].get("limit") == "25" for q in reqs if q["endpoint"] in
              ("chats", "messages")), "limit is not the page size")
    check(all(q["query"].get("account_id") == ACCOUNT for q in reqs if q["endpoint"] in
              ("chats", "messages")), "account_id not sent")
    check(all("after" not in q["query"] and "before" not in q["query"]
              for q in fake.api_requests("messages")), "a full walk filtered by time")
    check(all(q["method"] == "GET" for q in reqs), "a request that is not a GET")
    # Nothing new: no row touched, exit 0, nothing printed with -q.
    seq = ctx.sql("SELECT max(seq) FROM (SELECT seq FROM message UNION ALL SELECT seq FROM"
                  " conversation UNION ALL SELECT seq FROM contact) t")
    r = ctx.run("incr-sync", "-q")
    r.expect_rc(0)
    eq((r.out, r.err), ("", ""), "incr-sync -q output with nothing new")
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r)
    eq(r.source("uni")["totals"]["updated"], 0, "full-sync rerun updated")
    eq(ctx.sql("SELECT max(seq) FROM (SELECT seq FROM message UNION ALL SELECT seq FROM"
               " conversation UNION ALL SELECT seq FROM contact) t"), seq,
       "max(seq) after reruns")
    # status-poll has nothing to do for this type.
    r = ctx.run("status-poll", "-j")
    r.expect_rc(0)
    eq(r.source("uni").get("status"), "skipped", "status-poll source status")
    check("nothing to poll" in (r.source("uni").get("reason") or ""), "status-poll reason",
          r.source("uni"))


@test
def uni_incr_new_and_after(ctx):
    """incr-sync reads only what follows its watermark minus the lookback:
    `after` is exactly that minus 1 ms, in the one format Unipile takes."""
    fake = uni_setup(ctx, chats=12, messages=5)
    uni_config(ctx, extra="page_size = 5; cold_start_days = 0;")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    check(after_params(fake) and all(a is None for a in after_params(fake)),
          "a first pass without a watermark (cold_start_days = 0) used `after`",
          after_params(fake))
    assert_exact(ctx, fake)
    for rnd in range(2):
        w = ctx.cursor("messages", "uni")
        chats = fake.dump("chats")
        fake.message(chats[rnd]["id"], n=4, step=1.5)
        fake.message(chats[rnd + 1]["id"], n=2, **{"from": "self"})
        new_chat, _ = a_chat(fake, messages=3, message_step=2)
        fake.clear_log()
        r = ctx.run("incr-sync", "-j")
        e2e.ok_pass(r)
        eq(r.stream("messages", "uni")["inserted"], 9, "messages inserted (round %d)" % rnd)
        afters = after_params(fake)
        want = fmt_ms(mark_ms(w) - 3600 * 1000 - 1)
        check(afters and all(a == want for a in afters), "`after` of every page: want %s"
              % want, afters)
        check(MS_RX.match(afters[0]), "`after` format", afters[0])
        assert_exact(ctx, fake)
        check(new_chat in stored_convs(ctx), "the new chat is stored")
        if rnd == 0:
            # The chat walk stopped at its floor: old chats were not asked.
            check(len(fake.api_requests("attendees")) < len(fake.dump("chats")),
                  "attendees asked for every chat: the chat walk did not stop at "
                  "its floor")


@test
def uni_boundary_instant(ctx):
    """Messages sharing the watermark's millisecond, or its second, are never
    lost, whatever their ids: two passes with messages at that instant."""
    fake = uni_setup(ctx)
    t = (int(time.time()) - 86400) * 1000 + 700
    chat, _ = a_chat(fake, at=iso_ms(t - 5000))
    uni_config(ctx, extra="lookback = 1;")
    fake.message(chat, n=3, at=iso_ms(t), step=0)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_messages(ctx, fake)
    eq(mark_ms(ctx.cursor("messages", "uni")), t, "watermark instant")
    below = False
    for rnd in range(2):
        w_id = ctx.cursor("messages", "uni").split("|", 1)[1]
        new = fake.message(chat, n=4, at=iso_ms(t), step=0)    # the same millisecond
        below = below or any(i < w_id for i in new)
        fake.message(chat, n=2, at=iso_ms(t - 400), step=0.1)  # the same second
        fake.clear_log()
        e2e.ok_pass(ctx.run("incr-sync", "-j"))
        eq(after_params(fake), [fmt_ms(t - 1000 - 1)], "`after` (round %d)" % rnd)
        assert_messages(ctx, fake)
    check(below, "no new message at the instant sorts below the watermark's id: the "
          "test proves nothing")
    # Without a lookback the watermark's millisecond is still read again.
    uni_config(ctx, extra="lookback = 0;")
    fake.message(chat, n=5, at=iso_ms(t), step=0)
    fake.clear_log()
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    eq(after_params(fake), [fmt_ms(t - 1)], "`after` without a lookback")
    assert_messages(ctx, fake)


@test
def uni_late_message(ctx):
    """A message ingested late, with an old timestamp: inside the lookback
    incr-sync finds it; outside, only full-sync does."""
    fake = uni_setup(ctx, chats=3, messages=10)
    uni_config(ctx, extra="lookback = 600;")
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    w = mark_ms(ctx.cursor("messages", "uni"))
    chat = fake.dump("chats")[-1]["id"]
    inside = fake.message(chat, at=iso_ms(w - 300 * 1000))[0]
    outside = fake.message(chat, at=iso_ms(w - 7200 * 1000))[0]
    fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    eq(after_params(fake), [fmt_ms(w - 600 * 1000 - 1)], "`after`")
    got = stored_messages(ctx)
    check(inside in got, "the late message inside the lookback was missed")
    check(outside not in got, "the late message outside the lookback was read by incr-sync")
    eq(mark_ms(ctx.cursor("messages", "uni")), w, "the watermark moved for a late message")
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r)
    eq(r.stream("messages", "uni")["inserted"], 1, "full-sync inserted")
    assert_exact(ctx, fake)


@test
def uni_since(ctx):
    fake = uni_setup(ctx, chats=3, messages=20)
    uni_config(ctx)
    msgs = fake.dump()
    since = msgs[len(msgs) // 2]["timestamp"][:19] + "Z"
    e2e.ok_pass(ctx.run("full-sync", "-j", "--since", since, "--stream", "messages"))
    s_ms = ms_of(since[:19] + ".000Z")
    eq(set(after_params(fake)), {fmt_ms(s_ms - 1)}, "`after` of full-sync --since")
    assert_messages(ctx, fake, {m["id"]: m for m in msgs if ms_of(m["timestamp"]) >= s_ms})


@test
def uni_unread_on_new(ctx):
    """A new incoming message makes its chat unread locally, before the chat
    list says so; an outgoing one does not, nor does a full sync's history."""
    fake = uni_setup(ctx, chats=6, messages=5)
    uni_config(ctx)
    for c in fake.dump("chats"):
        fake.post("read", chat=c["id"])
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    eq({k: v["is_read"] for k, v in stored_convs(ctx).items()},
       {c["id"]: True for c in fake.dump("chats")}, "read state after a full sync")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    a, b = [c["id"] for c in fake.dump("chats")[:2]]
    fake.message(a)
    fake.message(b, **{"from": "self"})
    # Upstream still says read (the account read it meanwhile): the message
    # stream alone marks the chat.
    fake.post("read", chat=a)
    e2e.ok_pass(ctx.run("incr-sync", "-j", "--stream", "messages"))
    got = stored_convs(ctx)
    eq(got[a]["is_read"], False, "chat with a new incoming message")
    eq(got[b]["is_read"], True, "chat with a new outgoing message")
    check(all(v["is_read"] for k, v in got.items() if k not in (a,)), "other chats unread")
    # The chat list has the last word.
    e2e.ok_pass(ctx.run("incr-sync", "-j", "--stream", "chats"))
    eq(stored_convs(ctx)[a]["is_read"], True, "read state from the chat list")
    # Seen again, the message is no longer new.
    e2e.ok_pass(ctx.run("incr-sync", "-j", "--stream", "messages"))
    eq(stored_convs(ctx)[a]["is_read"], True, "read state after the message is read again")


@test
def uni_duplicate_stored_once(ctx):
    """A re-ingested copy (the same provider id and time under a new Unipile
    id) is stored once, and stays once on later passes."""
    fake = uni_setup(ctx, chats=3, messages=8)
    uni_config(ctx, extra="page_size = 5;")
    msgs = fake.dump()
    for m in (msgs[3], msgs[10]):
        fake.post("duplicate", id=m["id"])
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    assert_messages(ctx, fake)
    for m in (msgs[3], msgs[10]):
        eq(ctx.count("message", "raw->>'provider_id' = '%s'" % m["provider_id"]), 1,
           "rows of provider id %s" % m["provider_id"])
    chat = fake.dump("chats")[0]["id"]
    new = fake.message(chat, n=2)
    for i in new:
        fake.post("duplicate", id=i)
    for cmd in ("incr-sync", "incr-sync", "full-sync"):
        e2e.ok_pass(ctx.run(cmd, "-j"))
        assert_messages(ctx, fake)
    eq(len(stored_messages(ctx)), len(fake.dump()) - 4, "messages stored")


@test
def uni_redelivered_later_pass(ctx):
    """SPEC 7.10: a message stored by one pass and re-delivered in a later
    pass under a new id with the same provider_id (here newer than the
    watermark, so the later pass meets the copy alone) stays one row: the
    row first stored keeps its id, the copy is counted unchanged. A copy
    and its original on one page are one row too."""
    fake = uni_setup(ctx, chats=3, messages=4)
    uni_config(ctx, extra="page_size = 5; lookback = 0; cold_start_days = 0;")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    before = len(stored_messages(ctx))
    m = fake.dump()[2]
    pid = m["provider_id"]
    now = fmt_ms(int(time.time() * 1000))
    copy = fake.post("duplicate", id=m["id"], fields={"timestamp": now})["ids"][0]
    r = ctx.run("incr-sync", "-j", "--stream", "messages")
    e2e.ok_pass(r)
    rows = ctx.sql_json("SELECT external_id, provider_id FROM message"
                        " WHERE raw->>'provider_id' = '%s'" % pid)
    eq([(x["external_id"], x["provider_id"]) for x in rows], [(m["id"], pid)],
       "rows of provider id %s (copy %s)" % (pid, copy))
    s = r.stream("messages", "uni")
    eq((s["inserted"], s["unchanged"] >= 1), (0, True), "the copy's counters")
    eq(len(stored_messages(ctx)), before, "messages stored")
    # A second copy and the first on one page, in a later full walk.
    fake.post("duplicate", id=m["id"], fields={"timestamp": now})
    for cmd in ("incr-sync", "full-sync"):
        e2e.ok_pass(ctx.run(cmd, "-j"))
        eq(ctx.count("message", "raw->>'provider_id' = '%s'" % pid), 1,
           "rows of provider id %s after %s" % (pid, cmd))
        eq(len(stored_messages(ctx)), before, "messages stored after %s" % cmd)
    # The original changes and sits right after its newer copies on one
    # page: the stored row takes the change, the copies stay out.
    uni_config(ctx, extra="page_size = 50; lookback = 0;")
    fake.post("edit_message", id=m["id"],
              fields={"text": "changed", "timestamp": fmt_ms(ms_of(now) - 1)})
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    got = stored_messages(ctx, where="m.raw->>'provider_id' = '%s'" % pid)
    eq([(k, v["body"]) for k, v in got.items()], [(m["id"], "changed")],
       "the row of provider id %s after its original changed" % pid)


@test
def uni_provider_id_migration(ctx):
    """Migration 4 on a database stored by an earlier version: the unipile
    rows get their provider_id (a double stored before keeps none, and the
    unique index still builds), and a copy delivered afterwards is known."""
    fake = uni_setup(ctx, chats=2, messages=3)
    uni_config(ctx, extra="lookback = 0; cold_start_days = 0;")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    m = fake.dump()[1]
    ctx.schema_before(4)
    ctx.sql("INSERT INTO message (source_id, external_id, raw, row_hash)"
            " SELECT source_id, external_id || '-double', raw, row_hash FROM message"
            " WHERE external_id = '%s'" % m["id"])
    now = fmt_ms(int(time.time() * 1000))
    fake.post("duplicate", id=m["id"], fields={"timestamp": now})
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    rows = ctx.sql_json("SELECT external_id, provider_id FROM message"
                        " WHERE raw->>'provider_id' = '%s' ORDER BY id" % m["provider_id"])
    eq([(r["external_id"], r["provider_id"]) for r in rows],
       [(m["id"], m["provider_id"]), (m["id"] + "-double", None)],
       "rows of provider id %s" % m["provider_id"])
    eq(ctx.count("message", "provider_id IS NULL"), 1, "rows without provider_id")
    eq(ctx.sql("SELECT col_description('message'::regclass, attnum) IS NOT NULL"
               " FROM pg_attribute WHERE attrelid = 'message'::regclass"
               " AND attname = 'provider_id'"), "t", "provider_id has a COMMENT")


@test
def uni_rate_limit_retry(ctx):
    """429 with Retry-After is waited for and retried; a DSN URL that already
    ends in /api/v1 is used as it is."""
    fake = uni_setup(ctx, chats=3, messages=30)
    uni_config(ctx, url=fake.url + "/api/v1/", extra="page_size = 20;")
    fake.fault("messages", "429", retry_after=1, after=1)
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r)
    eq(r.stream("messages", "uni").get("retries"), 1, "messages retries after a 429")
    reqs = fake.api_requests("messages")
    i = [k for k, q in enumerate(reqs) if q["status"] == 429]
    eq(len(i), 1, "429 answers")
    gap = reqs[i[0] + 1]["t"] - reqs[i[0]]["t_end"]
    check(gap >= 0.95, "retried %.2fs after a 429 with Retry-After: 1" % gap)
    check(all(q["path"].startswith("/api/v1/") and "/api/v1/api/v1" not in q["path"]
              for q in fake.api_requests()), "paths", [q["path"] for q in reqs[:2]])
    assert_exact(ctx, fake)
    # 503 is retried too; after the retries the pass fails with 69 and says why.
    fake.fault("messages", "503", times=-1)
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(69)
    msg = r.source("uni")["error"]["message"]
    check("errors/no_client_session" in msg and "503" in msg, "the 503's type", msg)


@test
def uni_auth_errors(ctx):
    """401 disconnected_account and a wrong key: exit 77, kind auth, the
    Unipile type and title in the message; 404 and 400 are data errors."""
    fake = uni_setup(ctx, chats=2, messages=5)
    uni_config(ctx, extra="cold_start_days = 0;")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    cur = {s: ctx.cursor(s, "uni") for s in ("chats", "messages")}
    fake.message(fake.dump("chats")[0]["id"], n=2)
    fake.fault("chats", "401", times=-1)
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(77)
    err = r.source("uni")["error"]
    eq(err["kind"], "auth", "error kind")
    check("errors/disconnected_account" in err["message"] and
          "Disconnected account" in err["message"], "type and title in the message", err)
    check("account 'acc-1'" in err["message"], "the account in the message", err)
    check("errors/disconnected_account" in r.err, "the error is not logged", r.err)
    eq({s: ctx.cursor(s, "uni") for s in ("chats", "messages")}, cur, "cursors after a 401")
    fake.call("clear_faults", {})
    uni_config(ctx, token="not-the-key")
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(77)
    check("errors/invalid_credentials" in r.source("uni")["error"]["message"],
          "invalid_credentials", r.source("uni")["error"])
    fake.fault("messages", "403", times=-1)
    uni_config(ctx, extra="cold_start_days = 0;")
    r = ctx.run("incr-sync", "-j", "--stream", "messages")
    r.expect_rc(77)
    check("errors/feature_not_subscribed" in r.source("uni")["error"]["message"], "403 type")
    fake.call("clear_faults", {})
    # An account Unipile does not know: 404, a data error.
    uni_config(ctx, account="no-such-account")
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(65)
    eq(r.source("uni")["error"]["kind"], "data", "404 error kind")
    check("errors/resource_not_found" in r.source("uni")["error"]["message"], "404 type")
    # A 400 (a parameter it refuses): protocol.
    uni_config(ctx, extra="cold_start_days = 0;")
    fake.fault("messages", "http", status=400, type="errors/invalid_parameters",
               title="Invalid parameters", detail="after must match pattern", times=-1)
    r = ctx.run("incr-sync", "-j", "--stream", "messages")
    r.expect_rc(65)
    eq(r.source("uni")["error"]["kind"], "protocol", "400 error kind")
    fake.call("clear_faults", {})
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_exact(ctx, fake)


@test
def uni_pagination(ctx):
    """An empty page with a cursor is followed; the same cursor twice is a
    protocol error, not an endless walk; a capped page size changes nothing."""
    fake = uni_setup(ctx, chats=3, messages=20, max_limit=7)
    uni_config(ctx, extra="page_size = 25;")
    fake.fault("messages", "empty_page")
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    assert_exact(ctx, fake)
    fake.fault("messages", "empty_page", after=1)
    r = ctx.run("full-sync", "-j", "--restart")
    r.expect_rc(65)
    err = r.source("uni")["error"]
    eq(err["kind"], "protocol", "error kind")
    check("pagination does not advance" in err["message"], "message", err)
    e2e.ok_pass(ctx.run("full-sync", "-j", "--restart"))
    assert_exact(ctx, fake)


@test
def uni_kill9_resume(ctx):
    """kill -9 in the middle of a full walk: what is stored matches the
    checkpoint; the next full-sync goes on just before it and ends exact."""
    fake = uni_setup(ctx, chats=10, messages=200)
    uni_config(ctx, extra="page_size = 50;")
    fake.call("gate", {"endpoint": "messages", "after": 10})
    p = ctx.start("full-sync", "-j")
    got = fake.wait("messages", count=11, blocked=1, timeout=30)
    check(got is not None, "the walk did not reach the gate")
    os.kill(p.pid, signal.SIGKILL)
    ctx.finish(p)
    fake.call("release", {})
    e2e.wait_unlocked(ctx)
    st = ctx.state_row("messages", "uni")
    cp = st["full_checkpoint"]
    check(cp is not None, "no checkpoint after the kill")
    eq(st["cursor"], None, "the watermark of an unfinished walk")
    # "~FLOOR TOP LOW": everything from the top down to low is stored.
    check(cp.startswith("~- "), "the checkpoint of a walk under way", cp)
    low = cp.split(" ")[2]
    cp_key = (mark_ms(low), low.split("|", 1)[1])
    assert_messages(ctx, fake, expected_messages(fake, upto=cp_key))
    check(len(stored_messages(ctx)) >= 400, "too few rows before the kill")
    # The world goes on meanwhile.
    fake.message(fake.dump("chats")[0]["id"], n=3)
    fake.clear_log()
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    # What is newer than the walk's top first, then on below its low.
    befores = [q["query"].get("before") for q in fake.api_requests("messages")]
    eq(befores[0], None, "the resumed walk's first request")
    check(fmt_ms(cp_key[0] + 1) in befores, "the resumed walk's `before`", befores)
    # 40 pages in all, 10 of them stored before the kill.
    check(len(befores) <= 33, "the resumed walk read again what it had", len(befores))
    eq(ctx.state_row("messages", "uni")["full_checkpoint"], None, "checkpoint after the walk")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_exact(ctx, fake)


@test
def uni_resumed_full_sync_watermark(ctx):
    """A full walk killed twice and resumed: when it completes, each
    stream's watermark is the top of the whole walk (what the killed
    passes stored included), not of the part the last pass read, so the
    cursor is not lower than what is stored before any incr-sync."""
    fake = uni_setup(ctx, chats=10, messages=200)
    uni_config(ctx, extra="page_size = 50; lookback = 0;")
    for k in (10, 20):
        fake.clear_log()
        fake.call("gate", {"endpoint": "messages", "after": k})
        p = ctx.start("full-sync", "-j")
        check(fake.wait("messages", count=k + 1, blocked=1, timeout=30) is not None,
              "the walk did not reach the gate")
        os.kill(p.pid, signal.SIGKILL)
        ctx.finish(p)
        fake.call("release", {})
        e2e.wait_unlocked(ctx)
        cp = ctx.state_row("messages", "uni")["full_checkpoint"]
        check(cp is not None, "no checkpoint after the kill")
        eq(ctx.cursor("messages", "uni"), None, "the watermark of an unfinished walk")
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    msgs, chats = fake.dump("messages"), fake.dump("chats")
    eq(ctx.cursor("messages", "uni"), mark(max(msgs, key=key)),
       "the messages watermark after the resumed walk")
    eq(ctx.cursor("chats", "uni"), mark(max(chats, key=key)),
       "the chats watermark after the resumed walk")
    assert_messages(ctx, fake)
    # The next incr-sync reads nothing below the top again.
    fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    eq(r.stream("messages", "uni")["inserted"], 0, "messages inserted by the incr-sync")
    check(len(fake.api_requests("messages")) <= 1, "the incr-sync walked again",
          len(fake.api_requests("messages")))


@test
def uni_token_secret(ctx):
    """The X-API-KEY value never shows in stdout or stderr, whatever fails."""
    token = "uK+/=s3cr3t&x"
    fake = uni_setup(ctx, chats=2, messages=4, token=token)
    uni_config(ctx)
    outs = [ctx.run("full-sync", "-j", "-vv")]
    e2e.ok_pass(outs[0])
    for kind, rc in (("500", 69), ("401", 77), ("truncate", 65), ("nonjson", 65)):
        fake.call("clear_faults", {})
        fake.fault("*", kind, times=-1)
        r = ctx.run("incr-sync", "-j", "-vv")
        r.expect_rc(rc)
        outs.append(r)
    fake.call("clear_faults", {})
    uni_config(ctx, token=token + "-wrong")
    outs.append(ctx.run("incr-sync", "-j", "-vv"))
    outs[-1].expect_rc(77)
    for r in outs:
        for spelled in (token, "uK%2B%2F%3Ds3cr3t%26x", "s3cr3t"):
            check(spelled not in r.out + r.err, "the token appears in the output: %r"
                  % spelled, r.desc())
    check(all("s3cr3t" not in str(q["query"]) for q in fake.api_requests()),
          "the token in a query")


@test
def uni_error_echo_across_cut(ctx):
    """A token that Unipile echoes in an error's detail (or title) across
    the point where the connector cuts it (200 / 120 bytes) is masked
    whole: no prefix of it in the JSON error or on stderr."""
    token = "uni-T0KEN-across-the-cut"
    fake = uni_setup(ctx, chats=2, messages=2, token=token)
    uni_config(ctx, extra="cold_start_days = 0;")
    fake.fault("*", "http", status=400, times=-1, body={
        "status": 400, "type": "errors/invalid_parameters",
        "title": "t" * 115 + token, "detail": "x" * 195 + token + " is not valid"})
    r = ctx.run("incr-sync", "-j", "-vv")
    r.expect_rc(65)
    msg = r.source("uni")["error"]["message"]
    check("x***" in msg and "t***" in msg, "the echoed token is not masked", msg)
    for text in (msg, r.out, r.err):
        for c in "xt":
            check(c + token[:3] not in text, "a prefix of the token in the output",
                  r.desc())


@test
def uni_hostile_pages(ctx):
    """Malformed pages are clear errors; wrong types, NUL bytes, lone
    surrogates and absurd values are sanitised rows, never a crash."""
    fake = uni_setup(ctx, chats=2, messages=3)
    uni_config(ctx)
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    cur = ctx.cursor("messages", "uni")
    for body, what in (('{"object":"MessageList","items":{},"cursor":null}', "items"),
                       ('{"object":"MessageList","items":[],"cursor":5}', "cursor"),
                       ('[' * 100000, "nesting"), ('{"items":[', "truncated"),
                       ('[]', "not an object")):
        fake.fault("messages", "http", status=200, body=body)
        r = ctx.run("incr-sync", "-j", "--stream", "messages")
        r.expect_rc(65)
        check(r.source("uni")["error"]["kind"] in ("protocol", "data"), what,
              r.source("uni")["error"])
        eq(ctx.cursor("messages", "uni"), cur, "cursor after a bad page (%s)" % what)
    chat = fake.dump("chats")[0]["id"]
    bad = ('{"object":"MessageList","cursor":null,"items":['
           '{"id":5,"timestamp":12,"text":{"a":1},"is_sender":"yes","attachments":"x",'
           '"chat_id":[1],"seen":1e308,"deleted":-1},'
           '{"id":null},"str",7,{"id":""},{"id":"%s"},'
           '{"id":"ok-1","chat_id":"%s","timestamp":"2026-13-45T00:00:00.000Z",'
           '"text":"a\\u0000b\\ud800c","provider_id":"p\\u0000"},'
           '{"id":"ok-2","chat_id":"%s","timestamp":"%s",'
           '"text":"\\udfff","is_sender":1,"message_type":"INMAIL","attachments":[{"id":1}],'
           '"sender_attendee_id":{"x":1},"provider_id":12345678901234567890}]}'
           % ("x" * 5000, chat, chat, fmt_ms(mark_ms(cur) - 1000)))
    # Rows without a usable id (null, not objects, "", 5000 bytes) cannot be
    # stored: under on_bad_row = fail the page fails, nothing of it stored.
    fake.fault("messages", "http", status=200, body=bad)
    r = ctx.run("incr-sync", "-j", "--stream", "messages")
    r.expect_rc(65)
    eq(r.source("uni")["error"]["kind"], "data", "a page with unstorable rows")
    eq(ctx.cursor("messages", "uni"), cur, "cursor after a page with unstorable rows")
    # Quarantined, they are kept aside and the rest of the page is stored.
    uni_config(ctx, extra='on_bad_row = "quarantine";')
    fake.fault("messages", "http", status=200, body=bad)
    r = ctx.run("incr-sync", "-j", "--stream", "messages")
    e2e.ok_pass(r)
    check(r.stream("messages", "uni")["sanitized"] > 0, "nothing counted as sanitised",
          r.stream("messages", "uni"))
    eq(r.stream("messages", "uni")["rejected"], 5, "rows without a usable id quarantined")
    eq(ctx.count("rejected_row", "stream = 'messages' AND resolved_at IS NULL"), 5,
       "rejected rows of the messages stream")
    got = stored_messages(ctx, where="m.external_id IN ('5', 'ok-1', 'ok-2')")
    eq(sorted(got), ["5", "ok-1", "ok-2"], "sanitised rows stored")
    eq(got["ok-2"]["kind"], "inmail", "message_type as kind")
    eq(got["ok-2"]["direction"], "out", "direction")
    eq(got["ok-1"]["sent_at"], None, "an impossible date")
    check("\x00" not in (got["ok-1"]["body"] or ""), "a NUL byte stored")
    eq(ctx.cursor("messages", "uni"), cur, "cursor moved by a sanitised page that is older")
    bad_chats = ('{"object":"ChatList","cursor":null,"items":[{"id":"c-x","type":7,'
                 '"account_type":"WHATSAPP","unread_count":-5,"unread":"x","timestamp":null,'
                 '"archived":2,"name":["n"]},{"id":"c-y","type":2,"name":"Chan",'
                 '"timestamp":"2020-01-01T00:00:00.000Z","unread_count":3}]}')
    fake.fault("chats", "http", status=200, body=bad_chats)
    fake.fault("attendees", "http", status=200, times=-1, body=(
        '{"object":"ChatAttendeeList","cursor":null,"items":[{"id":"a-1","name":"A",'
        '"provider_id":"+33 6 12 34 56 78"},{"id":"a-2","provider_id":"@s.whatsapp.net"},'
        '{"id":"a-3","provider_id":"4915112345678:12@s.whatsapp.net"},'
        '{"id":"a-4","provider_id":"5100000001"},{"id":"a-5","provider_id":7},"x",{}]}'))
    r = ctx.run("full-sync", "-j", "--stream", "chats")
    e2e.ok_pass(r)
    check(r.stream("chats", "uni")["rejected"] >= 2, "attendees without an id quarantined",
          r.stream("chats", "uni"))
    convs = stored_convs(ctx)
    eq((convs["c-x"]["kind"], convs["c-x"]["is_read"], convs["c-x"]["unread_count"],
        convs["c-x"]["title"], convs["c-x"]["last_message_at"], convs["c-x"]["archived"]),
       ("whatsapp", None, None, None, None, True), "the odd chat")
    eq((convs["c-y"]["kind"], convs["c-y"]["is_read"]), ("channel", False), "the channel")
    ks = stored_contacts(ctx)
    eq({k: ks[k]["phone"] for k in ("a-1", "a-2", "a-3", "a-4", "a-5")},
       {"a-1": "+33612345678", "a-2": None, "a-3": "+4915112345678", "a-4": None,
        "a-5": None}, "phones from provider ids")


# -- the engine's walk: cold start, walks continued, outliers, loops ------------

def floor_ms_of(cursor):
    """The floor of a walk under way ("~FLOOR TOP LOW") in epoch ms."""
    check(cursor is not None and cursor.startswith("~"), "a walk under way", cursor)
    return ms_of(cursor[1:].split(" ", 1)[0][:23] + "Z")


@test
def uni_cold_start(ctx):
    """A new source's first incr-sync takes the cold-start window
    (cold_start_days, default 7), not the whole history of 30 days."""
    fake = uni_setup(ctx, chats=6, messages=20)
    a_chat(fake, at=iso_ms((time.time() - 20 * 86400) * 1000), messages=2)
    uni_config(ctx)
    t0 = time.time()
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    t1 = time.time()
    got = set(stored_messages(ctx))
    msgs = fake.dump("messages")
    # The window starts at a whole second: a margin either side.
    inside = {m["id"] for m in msgs if ms_of(m["timestamp"]) > (t1 + 2 - 7 * 86400) * 1000}
    outside = {m["id"] for m in msgs if ms_of(m["timestamp"]) < (t0 - 2 - 7 * 86400) * 1000}
    check(inside and outside, "the fake's history spans the window")
    eq(inside - got, set(), "messages of the last 7 days not stored")
    eq(outside & got, set(), "messages older than 7 days stored")
    convs = set(stored_convs(ctx))
    old_chats = {c["id"] for c in fake.dump("chats")
                 if ms_of(c["timestamp"]) < (t0 - 7 * 86400) * 1000}
    check(old_chats, "the fake has chats older than 7 days")
    eq(old_chats & convs, set(), "chats older than 7 days stored")
    check(not ctx.cursor("messages", "uni").startswith("~"), "the watermark after the walk")
    # cold_start_days = 0: the whole history.
    ctx.config(sources=[uni_source(ctx, name="uni2", extra="cold_start_days = 0;")],
               name="all.conf")
    e2e.ok_pass(ctx.run("incr-sync", "-j", cfg=os.path.join(ctx.dir, "all.conf")))
    eq(set(stored_messages(ctx, source="uni2")), {m["id"] for m in msgs},
       "cold_start_days = 0 stores everything")


@test
def uni_cold_start_continued(ctx):
    """A first walk longer than one pass (--max-runtime) keeps its work and
    completes over later passes: every message once, no page read twice
    but the few a pass reads above what it stored."""
    fake = uni_setup(ctx, chats=4, messages=100)
    uni_config(ctx, extra="page_size = 10;")
    fake.call("config", {"latency": 0.3})
    fake.clear_log()
    inserted, passes, cursor = 0, 0, None
    while passes < 12:
        passes += 1
        r = ctx.run("incr-sync", "-j", "--stream", "messages", "--max-runtime", "1")
        r.expect_rc(0)
        inserted += r.stream("messages", "uni")["inserted"]
        cursor = ctx.cursor("messages", "uni")
        if passes == 1:
            eq(r.json["status"], "partial", "the first pass is cut short")
            floor = floor_ms_of(cursor)
        if r.json["status"] == "ok":
            break
    eq(r.json["status"], "ok", "the walk never completed (%d passes)" % passes)
    check(passes >= 3, "the walk took %d passes" % passes)
    msgs = fake.dump("messages")
    want = {m["id"] for m in msgs if ms_of(m["timestamp"]) >= floor}
    eq(set(stored_messages(ctx)), want, "messages stored")
    eq(inserted, len(want), "messages inserted over the passes")
    eq(cursor, mark(max(msgs, key=key)), "the watermark after the walk")
    pages = -(-len(want) // 10)
    reqs = len(fake.api_requests("messages"))
    check(reqs <= pages + 2 * passes, "%d page requests for %d pages in %d passes"
          % (reqs, pages, passes))


@test
def uni_future_outlier(ctx):
    """A message dated in 2100 (or 27 days ahead) is stored and reported;
    the watermarks stay where the rest of the data puts them, so what
    comes next is still found."""
    fake = uni_setup(ctx, chats=3, messages=4)
    uni_config(ctx, extra="cold_start_days = 0;")
    chats = fake.dump("chats")
    fake.message(chats[0]["id"], at="2100-01-01T00:00:00.000Z")
    fake.message(chats[1]["id"], at=iso_ms((time.time() + 27 * 86400) * 1000))
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    eq(r.stream("messages", "uni")["outliers"], 2, "messages outliers")
    check(r.stream("chats", "uni")["outliers"] >= 2, "chats outliers", r.stream("chats", "uni"))
    check("max_clock_skew" in r.err, "the outlier is not logged", r.err)
    for s in ("chats", "messages"):
        check(ctx.cursor(s, "uni")[:4] == time.strftime("%Y", time.gmtime()),
              "the %s watermark follows the outlier" % s, ctx.cursor(s, "uni"))
    fake.message(chats[2]["id"], n=2)
    a_chat(fake, messages=2)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_chats(ctx, fake)
    assert_messages(ctx, fake)


def uni_loop(ctx, stream, endpoint, **fault):
    fake = uni_setup(ctx, chats=12, messages=5, max_limit=3)
    uni_config(ctx, extra="cold_start_days = 0;")
    fake.fault(endpoint, times=-1, **fault)
    r = ctx.run("incr-sync", "-j", "--stream", stream, timeout=60)
    r.expect_rc(65)
    err = r.source("uni")["error"]
    eq(err["kind"], "protocol", "error kind")
    check("pagination does not advance" in err["message"] and
          "stream '%s'" % stream in err["message"],
          "the message names the loop and the stream", err)
    cur = ctx.cursor(stream, "uni")
    check(cur is None or cur.startswith("~"), "a watermark after a looping walk", cur)


@test
def uni_cursor_cycle(ctx):
    """Cursors that come back (A, B, A, ...) end the walk with a protocol
    error instead of an endless pass holding the lock."""
    uni_loop(ctx, "messages", "messages", kind="cycle")
    ctx.fake.call("clear_faults", {})
    ctx.fake.fault("chats", kind="cycle", times=-1)
    r = ctx.run("incr-sync", "-j", "--stream", "chats", timeout=60)
    r.expect_rc(65)
    eq(r.source("uni")["error"]["kind"], "protocol", "chats error kind")


@test
def uni_endless_empty_pages(ctx):
    """Empty pages, each with a new cursor, without end: a protocol error."""
    uni_loop(ctx, "messages", "messages", kind="empty_page", fresh=True)


@test
def uni_deadline_cuts_request(ctx):
    """--max-runtime also bounds the request in flight: a hanging answer is
    cut at the deadline, not at http.timeout, and the pass ends partial
    with what was committed before it kept."""
    fake = uni_setup(ctx, chats=2, messages=5)
    ctx.config(sources=[uni_source(ctx, extra="cold_start_days = 0;")],
               http={"timeout": 20})
    fake.fault("messages", "slow", delay=30, times=-1)
    t0 = time.monotonic()
    r = ctx.run("incr-sync", "-j", "--max-runtime", "3", timeout=60)
    dt = time.monotonic() - t0
    r.expect_rc(0)
    check(dt < 6, "--max-runtime 3 with http.timeout 20 ran %.1fs" % dt)
    eq(r.json["status"], "partial", "status")
    eq(r.source("uni")["status"], "partial", "source status")
    eq(r.source("uni")["error"], None, "source error")
    fake.call("clear_faults", {})
    check(ctx.cursor("chats", "uni") is not None, "the chats committed before the cut")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_exact(ctx, fake)


@test
def uni_clock_skew_key(ctx):
    """max_clock_skew sets how far ahead of now a time is still believed."""
    fake = uni_setup(ctx, chats=2, messages=2)
    uni_config(ctx, extra="cold_start_days = 0; max_clock_skew = 2592000;")
    ahead = iso_ms((time.time() + 27 * 86400) * 1000)
    fake.message(fake.dump("chats")[0]["id"], at=ahead)
    r = ctx.run("incr-sync", "-j", "--stream", "messages")
    e2e.ok_pass(r)
    eq(r.stream("messages", "uni")["outliers"], 0, "outliers within a 30-day skew")
    eq(ctx.cursor("messages", "uni")[:10], ahead[:10], "the watermark")


# ---------------------------------------------------------------------------
# Attachments (SPEC §9, issue 13)

from fakefiles import SECRET as LINK_SECRET  # noqa: E402 -- in every link's token


def uni_att_rows(ctx, source="uni"):
    return e2e.attachment_rows(
        ctx, source, "a.external_id AS ext, a.kind, a.mime_type, a.name, a.size, a.url,"
        " a.state, a.link_stripped, a.last_error, a.url_expires_at")


@test
def uni_attachment_rows(ctx):
    # One pending row per attachment, the link stored without its token, its
    # expiry from url_expires_at; unavailable ones say so; link and none.
    import base64
    fake = uni_setup(ctx, chats=2, messages=12)
    added = fake.post("media_add", content_b64=base64.b64encode(b"%PDF-1.4 x").decode(),
                      name="doc.pdf", mime="application/pdf")
    m = fake.message(fake.dump("chats")[0]["id"], text=None, attachments=[
        {"id": "gone-1", "type": "video", "unavailable": True, "file_size": "123",
         "gif": False}])[0]
    ctx.config(sources=[uni_source(ctx), uni_source(ctx, name="ul", extra='media = "link";'),
                        uni_source(ctx, name="un", extra='media = "none";')])
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    up = fake.dump("messages")
    want = sorted((x["id"], a["id"]) for x in up for a in x["attachments"])
    rows = uni_att_rows(ctx)
    check(len(want) >= 3, "the fake has attachments", want)
    eq(sorted((r["msg"], r["ext"]) for r in rows), want, "attachment rows")
    by = {(r["msg"], r["ext"]): r for r in rows}
    doc = by[(added["id"], added["attachment_id"])]
    eq((doc["kind"], doc["mime_type"], doc["name"], doc["size"], doc["state"],
        doc["link_stripped"]), ("file", "application/pdf", "doc.pdf", 10, "pending", True),
       "the added file")
    check(doc["url"].endswith("/files/%s?expires=%s" % (added["attachment_id"],
                                                        doc["url"].rsplit("=", 1)[-1]))
          and doc["url_expires_at"] is not None, "the added file's link", doc)
    gone = by[(m, "gone-1")]
    eq((gone["kind"], gone["size"], gone["state"], gone["last_error"]),
       ("video", 123, "unavailable", "the provider marks it unavailable"), "unavailable one")
    eq({r["state"] for r in uni_att_rows(ctx, "ul") if r["ext"] != "gone-1"}, {"linked"},
       "states under media = link")
    eq(uni_att_rows(ctx, "un"), [], "rows under media = none")
    text = ctx.sql("SELECT coalesce(string_agg(t, ' '), '') FROM (SELECT m::text AS t "
                   "FROM message m UNION ALL SELECT a::text FROM attachment a) x")
    check(LINK_SECRET not in text, "a link's token is stored")
    assert_messages(ctx, fake)


@test
def uni_attachment_media_sync(ctx):
    # media-sync fetches attachments from the attachment endpoint with the
    # API key (the listed links lose their token when stored); expired links
    # do not matter; the token of a link is never printed.
    import base64
    import hashlib
    fake = uni_setup(ctx, chats=2, messages=3)
    a = os.urandom(40000)
    m1 = fake.post("media_add", content_b64=base64.b64encode(a).decode(), name="a.jpg")
    m2 = fake.post("media_add", content_b64=base64.b64encode(b"doc").decode(),
                   name="d.pdf", mime="application/pdf")
    sd = os.path.join(ctx.dir, "media")
    p = uni_config(ctx)
    with open(p, "a") as f:
        f.write('media = { store = "dir"; dir = "%s"; };\n' % sd)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    fake.post("media_expire")
    fake.clear_log()
    r = ctx.run("media-sync", "-j", "-v")
    e2e.ok_pass(r, "media-sync")
    check(LINK_SECRET not in r.out + r.err, "a link's token printed")
    rows = {(x["msg"], x["ext"]): x for x in uni_att_rows(ctx)}
    for m in (m1, m2):
        eq(rows[(m["id"], m["attachment_id"])]["state"], "stored", "attachment of %s" % m["id"])
    reqs = fake.api_requests("attachment")
    got = sorted(x["path"] for x in reqs if x["status"] == 200)
    check(all(x["key_ok"] for x in reqs), "the endpoint without the API key", reqs)
    for m in (m1, m2):
        check("/api/v1/messages/%s/attachments/%s" % (m["id"], m["attachment_id"]) in got,
              "fetched from the endpoint", got)
    files = []
    for sub in os.listdir(sd):
        if sub != ".tmp":
            files += os.listdir(os.path.join(sd, sub))
    check(hashlib.sha256(a).hexdigest() in files and
          hashlib.sha256(b"doc").hexdigest() in files, "files in the store", files)
