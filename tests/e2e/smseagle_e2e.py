"""End-to-end tests of the smseagle source and of status-poll, against the
fake device tests/fake/smseagle.py. Imported by run.py, whose @test they
register; run them with  python3 tests/e2e/run.py --filter sms_
"""

import json
import os
import re
import signal
import time
from datetime import datetime, timedelta, timezone

import __main__ as e2e

HERE = os.path.dirname(os.path.abspath(__file__))
SMS_FAKE = os.path.join(os.path.dirname(HERE), "fake", "smseagle.py")

FOLDERS = ("inbox", "outbox", "sent", "error")
FINAL = ("delivery_ok", "delivery_failed", "sending_error", "error")
VALIDITY = {"5m": 300, "10m": 600, "30m": 1800, "1h": 3600, "2h": 7200, "4h": 14400,
            "12h": 43200, "1d": 86400, "2d": 172800, "5d": 432000, "1w": 604800,
            "2w": 1209600, "4w": 2419200}

test, check, eq, Fail = e2e.test, e2e.check, e2e.eq, e2e.Fail


class SmsFake(e2e.Fake):
    SCRIPT = SMS_FAKE

    def post(self, what, **body):
        return self.call(what, body)

    def inbox(self, n=1, **kw):
        return self.post("inbox", n=n, **kw)["ids"]

    def send(self, n=1, **kw):
        return self.post("send", n=n, **kw)["ids"]

    def move(self, ids, status="sending_ok", **kw):
        return self.post("move", ids=ids, status=status, **kw)["ids"]

    def report(self, ids, status="delivery_ok", **kw):
        return self.post("report", ids=ids, status=status, **kw)["ids"]

    def state(self, integration=None):
        return self.call("state")

    def dump(self, folder, integration=None):
        return self.call("dump?folder=" + folder)["rows"]

    def api_requests(self, folder=None):
        return [r for r in self.requests(folder) if r.get("endpoint")]


def sms_setup(ctx, name="fake", **opts):
    """A fresh database and a fake device (SmsFake options: inbox=, sent=, ...)."""
    ctx.cluster.createdb(ctx.db)
    ctx.fake = ctx.new_fake(kind=SmsFake, name=name, **opts)
    return ctx.fake


def sms_source(ctx, name="sms", fake=None, url=None, extra="", token=None):
    fake = fake or ctx.fake
    tf = ctx.token_file(token if token is not None else fake.token, name + ".token")
    return ('  { name = "%s"; type = "smseagle"; url = "%s"; token_file = "%s"; %s }'
            % (name, url or fake.url, tf, extra))


def sms_config(ctx, extra="", **kw):
    return ctx.config(sources=[sms_source(ctx, extra=extra, **kw)])


def ext_id(folder, row_id):
    return "in:%d" % int(row_id) if folder == "inbox" else str(int(row_id))


def stored(ctx, source="sms", where="true"):
    """Stored messages by external id."""
    rows = ctx.sql_json(
        "SELECT m.external_id, m.direction, m.folder, m.status, m.body, m.kind,"
        " m.sent_at, m.status_at, m.validity_expires_at, m.tracking, m.raw,"
        " m.seq, c.external_id AS conv, k.external_id AS sender, k.phone AS sender_phone,"
        " p.expires_at AS pending_until"
        " FROM message m JOIN source s ON s.id = m.source_id"
        " LEFT JOIN conversation c ON c.id = m.conversation_id"
        " LEFT JOIN contact k ON k.id = m.sender_contact_id"
        " LEFT JOIN pending_message p ON p.message_id = m.id"
        " WHERE s.name = '%s' AND %s" % (source, where))
    return {r["external_id"]: r for r in rows}


def utc(iso):
    """An ISO date with an offset, as the UTC instant PostgreSQL prints."""
    if iso is None:
        return None
    d = datetime.fromisoformat(iso).astimezone(timezone.utc)
    return d


def pg_time(s):
    if s is None:
        return None
    return datetime.fromisoformat(s).astimezone(timezone.utc)


def expected(fake, folders=FOLDERS):
    """What the device holds, by external id: the row of the folder read last
    (the order of `folders`), as msgsync stores a message once."""
    want = {}
    for f in folders:
        for r in fake.dump(f):
            want[ext_id(f, r["id"])] = (f, r)
    return want


def assert_folders(ctx, fake=None, folders=FOLDERS, source="sms", check_cursor=True):
    """The database holds every message of the folders once, with the data
    of the row as the device has it now; each cursor is the folder's max id."""
    fake = fake or ctx.fake
    want = expected(fake, folders)
    got = stored(ctx, source)
    missing = set(want) - set(got)
    extra = set(got) - set(want)
    check(not missing and not extra, "%d messages missing, %d unexpected (of %d on the device)"
          % (len(missing), len(extra), len(want)),
          "missing e.g. %s" % sorted(missing)[:5], "extra e.g. %s" % sorted(extra)[:5])
    for ext, (folder, r) in want.items():
        g = got[ext]
        inbox = folder == "inbox"
        eq(g["direction"], "in" if inbox else "out", "%s direction" % ext)
        eq(g["body"], r["text"], "%s body" % ext)
        eq(g["conv"], r["number"], "%s conversation" % ext)
        if inbox:
            eq(g["sender"], r["number"], "%s sender" % ext)
            eq(pg_time(g["sent_at"]), utc(r["receive_date"]), "%s sent_at" % ext)
        else:
            eq(g["status"], r["status"], "%s status" % ext)
            eq(pg_time(g["sent_at"]), utc(r["sending_date"] or r["insert_date"]),
               "%s sent_at" % ext)
        eq(g["raw"].get("id"), r["id"], "%s raw id" % ext)
        if not inbox:
            want_f = ("outbox" if folder == "outbox" else
                      "error" if r["status"] in ("sending_error", "error") else "sent")
            eq(g["folder"], want_f, "%s folder" % ext)
    if check_cursor:
        for f in folders:
            rows = fake.dump(f)
            want_c = str(max(int(r["id"]) for r in rows)) if rows else None
            eq(ctx.cursor(f, source), want_c, "%s cursor" % f)


# ---------------------------------------------------------------------------


@test
def sms_full_sync_exact(ctx):
    """All folders, several pages each in the device's descending order, with
    inbox and outgoing ids overlapping (two sequences, both from 1)."""
    fake = sms_setup(ctx, inbox=45, sent=60, outbox=4)
    sms_config(ctx, extra="page_size = 10;")
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r, "full-sync")
    assert_folders(ctx)
    inbox_ids = {r["id"] for r in fake.dump("inbox")}
    out_ids = {r["id"] for r in fake.dump("sent")}
    check(inbox_ids & out_ids, "the fake's id sequences do not overlap: the test proves nothing")
    # Pages: id_from = cursor + 1, limit = page_size.
    reqs = fake.api_requests("inbox")
    eq([q["query"].get("id_from") for q in reqs], ["1", "11", "21", "31", "41"],
       "inbox id_from of each page")
    check(all(q["query"].get("limit") == "10" for q in reqs), "limit is not the page size")
    eq(r.stream("inbox", "sms")["fetched"], 45, "inbox fetched")
    eq(r.stream("inbox", "sms")["api_calls"], 5, "inbox api_calls")
    eq(r.stream("sent", "sms")["inserted"], 60, "sent inserted")
    e2e.json_cursor_is_db(ctx, r, "sent", "sms")
    # Nothing new: no row touched, exit 0, nothing printed with -q.
    seq = ctx.sql("SELECT max(seq) FROM message")
    r = ctx.run("incr-sync", "-q")
    r.expect_rc(0)
    eq((r.out, r.err), ("", ""), "incr-sync -q output with nothing new")
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r)
    eq(r.source("sms")["totals"]["updated"], 0, "full-sync rerun updated")
    eq(ctx.sql("SELECT max(seq) FROM message"), seq, "max(seq) after reruns")


@test
def sms_incr_new_and_orders(ctx):
    fake = sms_setup(ctx, inbox=5, sent=5)
    sms_config(ctx, extra="page_size = 4; cold_start_days = 0;")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_folders(ctx)
    for order in ("asc", "shuffle", "desc"):
        fake.call("config", {"order": order})
        fake.inbox(6)
        ids = fake.send(3)
        fake.move(ids[:2])
        r = ctx.run("incr-sync", "-j")
        e2e.ok_pass(r)
        eq(r.stream("inbox", "sms")["inserted"], 6, "inbox inserted (%s order)" % order)
        assert_folders(ctx)


@test
def sms_empty_folders(ctx):
    fake = sms_setup(ctx)
    sms_config(ctx, extra='folders = [ "inbox", "outbox", "sent", "error", "delivered" ];')
    r = ctx.run("incr-sync", "-j")
    j = e2e.ok_pass(r)
    eq([s["stream"] for s in j["sources"][0]["streams"]],
       ["inbox", "outbox", "sent", "error", "delivered"], "streams")
    for f in ("inbox", "outbox", "sent", "error", "delivered"):
        eq(r.stream(f, "sms")["fetched"], 0, "%s fetched" % f)
        eq(ctx.cursor(f, "sms"), None, "%s cursor" % f)
    check(all(q["status"] == 404 for q in fake.api_requests()), "the device did not answer 404")
    r = ctx.run("incr-sync", "-q")
    r.expect_rc(0)
    eq((r.out, r.err), ("", ""), "-q output")


@test
def sms_base_paths(ctx):
    fake = sms_setup(ctx, inbox=3)
    srcs = [sms_source(ctx, "bare", url=fake.url + "/"),
            sms_source(ctx, "api", url=fake.url + "/api/v2"),
            sms_source(ctx, "php", url=fake.url + "/index.php/api/v2")]
    ctx.config(sources=srcs)
    r = ctx.run("full-sync", "-j", "--stream", "inbox")
    e2e.ok_pass(r)
    paths = sorted({q["path"] for q in fake.api_requests("inbox")})
    eq(paths, ["/api/v2/messages/inbox", "/index.php/api/v2/messages/inbox"], "paths asked")
    for s in ("bare", "api", "php"):
        eq(r.stream("inbox", s)["inserted"], 3, "source %s inserted" % s)


@test
def sms_token_in(ctx):
    fake = sms_setup(ctx, inbox=2, token="t+k/3n=&x")
    sms_config(ctx, extra='token_in = "query";')
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    reqs = fake.api_requests()
    check(reqs and all(q["token_in"] == "query" for q in reqs), "token not sent as a query "
          "parameter", [q["token_in"] for q in reqs])
    check(all("access-token" not in {k.lower() for k in q["headers"]} for q in reqs),
          "access-token header sent as well")
    # A failing request must not show the token, in any spelling.
    fake.fault("inbox", "http", status=500, times=-1, body="boom")
    r = ctx.run("incr-sync", "-j", "-vv")
    r.expect_rc(69)
    for spelled in ("t+k/3n=&x", "t%2Bk%2F3n%3D%26x", "t+k", "3n=&x"):
        check(spelled not in r.out + r.err, "the token appears in the output: %r" % spelled,
              r.desc())
    fake.call("clear_faults", {})
    # Header mode, the default.
    ctx.config(sources=[sms_source(ctx)])
    fake.clear_log()
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    reqs = fake.api_requests()
    check(reqs and all(q["token_in"] == "header" for q in reqs), "token not sent as header")
    check(all("access_token" not in q["query"] for q in reqs), "token in the query as well")
    # A wrong token: 77, the JSON names the source and the kind.
    ctx.config(sources=[sms_source(ctx, token="wrong-token")])
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(77)
    eq(r.source("sms")["error"]["kind"], "auth", "error kind")


@test
def sms_outbox_to_sent_one_row(ctx):
    fake = sms_setup(ctx)
    sms_config(ctx)
    ids = fake.send(3, validity="1h")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    got = stored(ctx)
    for i in ids:
        g = got[str(i)]
        eq((g["folder"], g["status"], g["tracking"]), ("outbox", "reserved", "pending"),
           "message %d after the first pass" % i)
        check(g["pending_until"] is not None, "message %d is not pending" % i)
    fake.move(ids, "sending_ok")
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    eq(r.stream("sent", "sms")["fetched"], 3, "sent fetched")
    got = stored(ctx)
    eq(len(got), 3, "messages stored after the move")
    for i in ids:
        eq((got[str(i)]["folder"], got[str(i)]["status"]), ("sent", "sending_ok"),
           "message %d after the move" % i)
    # The delivery report arrives later; status-poll picks it up.
    fake.report(ids[:2], "delivery_ok")
    fake.report(ids[2:], "delivery_failed")
    r = ctx.run("status-poll", "-j")
    r.expect_rc(0)
    s = r.source("sms")
    eq((s["polled"], s["updated"], s["finalized"], s["expired"], s["still_pending"]),
       (3, 3, 3, 0, 0), "status-poll counts")
    eq(s["api_calls"], 1, "status-poll api_calls (contiguous ids, one folder)")
    got = stored(ctx)
    dev = {r["id"]: r for r in fake.dump("sent")}
    for i in ids:
        g = got[str(i)]
        eq(g["status"], dev[i]["status"], "message %d status" % i)
        eq(pg_time(g["status_at"]), utc(dev[i]["delivery_date"] or dev[i]["update_date"]),
           "message %d status_at" % i)
        eq(g["tracking"], "final", "message %d tracking" % i)
    eq(ctx.count("pending_message"), 0, "pending after the reports")
    eq(ctx.count("message"), 3, "messages")
    # Nothing left to poll: no request at all.
    fake.clear_log()
    r = ctx.run("status-poll", "-j")
    r.expect_rc(0)
    eq(r.source("sms")["polled"], 0, "polled with nothing pending")
    eq(len(fake.api_requests()), 0, "requests with nothing pending")


@test
def sms_dates_offsets(ctx):
    fake = sms_setup(ctx, offset="+05:30")
    sms_config(ctx)
    fake.inbox(2, at="2026-03-01T08:00:00+05:30", step=60)
    ids = fake.send(1, at="2026-03-01T23:30:00+05:30", validity="2h")
    fake.move(ids, at="2026-03-01T23:45:00+05:30")
    fake.call("config", {"offset": "-03:00"})
    fake.inbox(1, at="2026-03-01T20:00:00-03:00")
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r)
    got = stored(ctx)
    inbox = sorted((v["sent_at"] for k, v in got.items() if k.startswith("in:")))
    eq([pg_time(x) for x in inbox],
       [datetime(2026, 3, 1, 2, 29, tzinfo=timezone.utc),
        datetime(2026, 3, 1, 2, 30, tzinfo=timezone.utc),
        datetime(2026, 3, 1, 23, 0, tzinfo=timezone.utc)], "inbox sent_at in UTC")
    g = got[str(ids[0])]
    eq(pg_time(g["sent_at"]), datetime(2026, 3, 1, 18, 15, tzinfo=timezone.utc), "sent_at")
    eq(pg_time(g["validity_expires_at"]), datetime(2026, 3, 1, 20, 15, tzinfo=timezone.utc),
       "validity_expires_at = sending time + 2h")


@test
def sms_type_quirks(ctx):
    fake = sms_setup(ctx, inbox=4, sent=6)
    sms_config(ctx, extra="cold_start_days = 0;")
    fake.call("quirks", {"smsc_number": True, "error_code_string": True, "id_string": True,
                         "extra_field": True, "escape_unicode": True})
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_folders(ctx)
    fake.call("quirks", {"reset": True, "null_fields": ["sending_date", "delivery_date",
                                                        "validity", "text_binary", "smsc",
                                                        "error_code", "update_date"]})
    ids = fake.send(2)
    fake.move(ids)
    fake.post("set", ids=ids[:1], fields={"validity": 30, "class": "255", "status": None,
                                          "attachments": "none", "text": 12345})
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    got = stored(ctx)
    check(all(str(i) in got for i in ids), "quirky rows not stored")
    eq(got[str(ids[0])]["body"], "12345", "a number as text")
    eq(got[str(ids[0])]["tracking"], "pending", "a row without status is followed")


@test
def sms_cold_start_window(ctx):
    fake = sms_setup(ctx, inbox=30, sent=30)
    sms_config(ctx)
    now = datetime.now(timezone.utc)
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    for f in ("inbox", "sent"):
        q = fake.api_requests(f)[0]["query"]
        check("date_from" in q, "the first incremental pass of %s has no date_from" % f, q)
        d = datetime.fromisoformat(q["date_from"].replace("Z", "+00:00"))
        check(abs((now - timedelta(days=7) - d).total_seconds()) < 120,
              "%s date_from is not now - 7 days: %s" % (f, q["date_from"]))
    got = stored(ctx)
    week = now - timedelta(days=7, seconds=-60)
    for f in ("inbox", "sent"):
        rows = fake.dump(f)
        recent = {ext_id(f, r["id"]) for r in rows
                  if utc(r.get("receive_date") or r.get("sending_date")) >= week}
        have = {k for k in got if (k.startswith("in:")) == (f == "inbox")}
        check(recent and have == recent, "%s: stored %d, want the %d of the last 7 days"
              % (f, len(have), len(recent)))
        check(len(recent) < len(rows), "the window selected everything")
    # Later passes continue from the cursor, without a date filter.
    fake.inbox(2)
    fake.clear_log()
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    q = fake.api_requests("inbox")[0]["query"]
    check("date_from" not in q, "a pass with a cursor still filters by date", q)
    # full-sync reads everything.
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    assert_folders(ctx)
    # cold_start_days = 2 narrows it; 0 reads everything.
    for days, frac in ((2, 2 / 30), (0, 1.0)):
        ctx.cluster.createdb(ctx.db)
        sms_config(ctx, extra="cold_start_days = %d;" % days)
        e2e.ok_pass(ctx.run("incr-sync", "-j"))
        n = ctx.count("message", "external_id LIKE 'in:%'")
        want = sum(1 for r in fake.dump("inbox")
                   if days == 0 or utc(r["receive_date"]) >= now - timedelta(days=days, seconds=-60))
        eq(n, want, "inbox rows with cold_start_days = %d" % days)


@test
def sms_full_resumable(ctx):
    fake = sms_setup(ctx, inbox=400)
    sms_config(ctx, extra="page_size = 20;")
    # Stop the walk after 6 pages: the next full-sync resumes from there.
    p = ctx.start("full-sync", "-j", "--stream", "inbox")
    fake.call("gate", {"endpoint": "inbox", "after": 6})
    got = fake.wait("inbox", count=7, blocked=1, timeout=30)
    check(got is not None, "the walk did not reach the gate")
    os.kill(p.pid, signal.SIGKILL)
    ctx.finish(p)
    fake.call("release", {})
    e2e.wait_unlocked(ctx)
    cp = ctx.state_row("inbox", "sms")["full_checkpoint"]
    check(cp is not None and int(cp) >= 100, "no checkpoint after the kill: %r" % cp)
    eq(ctx.count("message"), int(cp), "rows stored up to the checkpoint")
    fake.clear_log()
    e2e.ok_pass(ctx.run("full-sync", "-j", "--stream", "inbox"))
    eq(fake.api_requests("inbox")[0]["query"]["id_from"], str(int(cp) + 1),
       "the resumed walk starts after the checkpoint")
    assert_folders(ctx, folders=("inbox",))
    eq(ctx.state_row("inbox", "sms")["full_checkpoint"], None, "checkpoint after the walk")


@test
def sms_pending_expiry_values(ctx):
    fake = sms_setup(ctx)
    sms_config(ctx, extra="tracking_horizon = 7200;")
    at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=30)
    ids = {}
    for v in list(VALIDITY) + ["max"]:
        ids[v] = fake.send(1, validity=v, at=at.isoformat())[0]
    fake.move(list(ids.values()), "sending_ok", at=at.isoformat())
    fin = fake.send(4, at=at.isoformat())
    fake.move(fin[:2], "sending_ok", at=at.isoformat())
    fake.report(fin[:1], "delivery_ok")
    fake.report(fin[1:2], "delivery_failed")
    fake.move(fin[2:], "sending_error", at=at.isoformat())
    fake.post("set", ids=fin[3:], fields={"status": "error"})
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    got = stored(ctx)
    for v, i in ids.items():
        g = got[str(i)]
        secs = VALIDITY.get(v, 7200)
        eq(pg_time(g["pending_until"]), at + timedelta(seconds=secs),
           "expires_at of validity %s" % v)
        eq(g["tracking"], "pending", "tracking of validity %s" % v)
        if v == "max":
            eq(g["validity_expires_at"], None, "validity_expires_at of max")
        else:
            eq(pg_time(g["validity_expires_at"]), at + timedelta(seconds=secs),
               "validity_expires_at of %s" % v)
    for i in fin:
        eq(got[str(i)]["pending_until"], None, "final message %d pending" % i)
        eq(got[str(i)]["tracking"], "final", "final message %d tracking" % i)
    eq(ctx.count("pending_message"), len(ids), "pending messages")
    # Already expired when first seen: pending until status-poll has had a
    # last look, which expires it, for good.
    old = fake.send(1, validity="5m", ago=3600)
    fake.move(old, ago=3500)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    g = stored(ctx)[str(old[0])]
    eq((pg_time(g["pending_until"]), g["tracking"]),
       (utc(fake.dump("sent")[-1]["sending_date"]) + timedelta(seconds=300), "pending"),
       "message whose validity ended before it was seen")
    r = ctx.run("status-poll", "-j")
    r.expect_rc(0)
    eq((r.source("sms")["polled"], r.source("sms")["expired"]), (len(ids) + 1, 1),
       "status-poll polled / expired")
    g = stored(ctx)[str(old[0])]
    eq((g["pending_until"], g["tracking"]), (None, "expired"), "after status-poll")
    seq = ctx.sql("SELECT max(seq) FROM message")
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    g = stored(ctx)[str(old[0])]
    eq((g["pending_until"], g["tracking"]), (None, "expired"), "an expired one re-read")
    eq(ctx.sql("SELECT max(seq) FROM message"), seq, "max(seq) after re-reading")


@test
def sms_status_poll_mixed(ctx):
    fake = sms_setup(ctx)
    sms_config(ctx)
    queued = fake.send(3)             # stay in the outbox
    sent = fake.send(6)
    fake.move(sent)
    far = fake.send(1)
    fake.move(far)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    eq(ctx.count("pending_message"), 10, "pending after the sync")
    fake.report(sent[:2], "delivery_ok")
    fake.report(sent[2:3], "delivery_pending")
    fake.move(queued[:1], "sending_error")
    # Time passes for two of them: their windows close (one was delivered
    # meanwhile, and the last poll sees it).
    ctx.sql("UPDATE pending_message SET expires_at = now() - interval '1 second' WHERE "
            "message_id IN (SELECT id FROM message WHERE external_id IN ('%d', '%d'))"
            % (sent[4], sent[5]))
    fake.report(sent[5:6], "delivery_ok")
    fake.clear_log()
    r = ctx.run("status-poll", "-j")
    r.expect_rc(0)
    s = r.source("sms")
    eq(s["polled"], 10, "polled")
    eq(s["finalized"], 4, "finalized (2 delivered, 1 sending error, 1 delivered at expiry)")
    eq(s["expired"], 1, "expired")
    eq(s["still_pending"], 5, "still pending")
    eq(s["status"], "ok", "source status")
    got = stored(ctx)
    eq(got[str(sent[4])]["tracking"], "expired", "expired message tracking")
    eq(got[str(sent[4])]["status"], "sending_ok", "expired message keeps its last status")
    eq(got[str(sent[5])]["tracking"], "final", "delivered-at-expiry tracking")
    eq(got[str(queued[0])]["status"], "sending_error", "status of the failed one")
    eq(got[str(sent[2])]["status"], "delivery_pending", "status of the pending report")
    eq(ctx.count("pending_message"), 5, "pending after the poll")
    # Requests: outbox once for the queued ids, sent once for the range.
    reqs = fake.api_requests()
    eq(s["api_calls"], len(reqs), "api_calls vs the device's log")
    by = {}
    for q in reqs:
        by.setdefault(q["endpoint"], []).append(q["query"])
    eq(len(by.get("outbox", [])), 1, "outbox requests")
    eq(len(by.get("sent", [])), 1, "sent requests")
    eq((by["outbox"][0]["id_from"], by["outbox"][0]["id_to"]),
       (str(queued[0]), str(queued[-1])), "outbox range")
    # The order: soonest expiry first (the expired one is in the first chunk
    # anyway); a second pass polls only what is left.
    fake.clear_log()
    r = ctx.run("status-poll", "-j")
    eq(r.source("sms")["polled"], 5, "polled on the second pass")
    out = ctx.sql("SELECT count(*) FROM pending_message WHERE last_polled_at IS NULL")
    eq(out, "0", "pending messages never polled")


@test
def sms_status_poll_ranges(ctx):
    fake = sms_setup(ctx)
    sms_config(ctx, extra="page_size = 10;")
    ids = fake.send(25)
    fake.move(ids)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    # Only every other one is still pending.
    fake.report(ids[1::2], "delivery_ok")
    e2e.ok_pass(ctx.run("status-poll", "-j"))
    fake.clear_log()
    r = ctx.run("status-poll", "-j")
    s = r.source("sms")
    eq(s["polled"], 13, "polled")
    reqs = fake.api_requests("sent")
    spans = [(int(q["query"]["id_from"]), int(q["query"]["id_to"])) for q in reqs]
    check(all(b - a < 10 for a, b in spans), "a request spans more than page_size ids", spans)
    eq(len(reqs), 3, "requests for 13 ids spread over 25 with page_size 10")
    eq(s["api_calls"], 3, "api_calls")


@test
def sms_status_poll_kill9(ctx):
    fake = sms_setup(ctx)
    sms_config(ctx)
    out = fake.send(4)
    sent = fake.send(4)
    fake.move(sent)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    fake.move(out)
    fake.report(out + sent, "delivery_ok")
    before = ctx.count("pending_message")
    fake.call("gate", {"endpoint": "sent", "after": 0})
    p = ctx.start("status-poll", "-j")
    check(fake.wait("sent", count=1, blocked=1, timeout=30) is not None,
          "status-poll did not reach the gate")
    os.kill(p.pid, signal.SIGKILL)
    ctx.finish(p)
    fake.call("release", {})
    e2e.wait_unlocked(ctx)
    eq(ctx.count("pending_message"), before, "pending messages after a kill mid-poll")
    r = ctx.run("status-poll", "-j")
    r.expect_rc(0)
    eq(r.source("sms")["finalized"], 8, "finalized after the kill")
    eq(ctx.count("pending_message"), 0, "pending at the end")
    eq(ctx.count("message", "tracking = 'final'"), 8, "final messages")


@test
def sms_status_poll_errors(ctx):
    fake = sms_setup(ctx)
    sms_config(ctx)
    ids = fake.send(3)
    fake.move(ids)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    fake.report(ids, "delivery_ok")
    fake.fault("sent", "http", status=503, times=-1)
    r = ctx.run("status-poll", "-j")
    r.expect_rc(69)
    eq(r.source("sms")["status"], "failed", "source status")
    eq(ctx.count("pending_message"), 3, "pending after a failed poll")
    fake.call("clear_faults", {})
    fake.fault("sent", "truncate")
    r = ctx.run("status-poll", "-j")
    r.expect_rc(65)
    eq(ctx.count("pending_message"), 3, "pending after a truncated answer")
    r = ctx.run("status-poll", "-q")
    r.expect_rc(0)
    eq((r.out, r.err), ("", ""), "status-poll -q output")
    eq(ctx.count("pending_message"), 0, "pending at the end")
    # sync-status counts what is pending.
    fake.move(fake.send(2))
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    r = ctx.run("sync-status", "--json")
    r.expect_rc(0)
    src = [s for s in r.json["sources"] if s["name"] == "sms"][0]
    eq(src["pending"], 2, "sync-status pending")


def _reset_case(ctx, keep, add):
    fake = sms_setup(ctx, inbox=30, sent=30)
    sms_config(ctx, extra="cold_start_days = 0;")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    cursors = {f: ctx.cursor(f, "sms") for f in FOLDERS}
    n = ctx.count("message")
    fake.post("reset_ids", keep=keep)
    add(fake)
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(65)
    s = r.source("sms")
    eq(s["status"], "failed", "source status")
    eq(s["error"]["kind"], "protocol", "error kind")
    msg = s["error"]["message"]
    check("sms" in msg and ("inbox" in msg or "sent" in msg), "the error names neither the "
          "source nor the folder", msg)
    check("restart" in msg or "restored" in msg or "replaced" in msg,
          "the error does not say what happened", msg)
    check("sms" in r.err and "restarted" in r.err, "nothing logged", r.desc())
    eq({f: ctx.cursor(f, "sms") for f in FOLDERS}, cursors, "cursors after the reset")
    eq(ctx.count("message"), n, "messages after the reset")
    # Loud on every pass, not once.
    ctx.run("incr-sync", "-q").expect_rc(65)
    return fake


@test
def sms_id_reset_replaced(ctx):
    """A new device database: ids start again at 1, below our cursors."""
    _reset_case(ctx, 0, lambda f: (f.inbox(3), f.move(f.send(2))))


@test
def sms_id_reset_restored(ctx):
    """A database restored from an old backup: ids continue from below our
    cursor, the old messages are the same as those stored."""
    fake = _reset_case(ctx, 20, lambda f: f.inbox(2))
    # full-sync --restart takes the device up again under this name.
    r = ctx.run("full-sync", "-j", "--restart")
    e2e.ok_pass(r)
    eq(ctx.cursor("inbox", "sms"), str(max(x["id"] for x in fake.dump("inbox"))),
       "inbox cursor after the restarted walk")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    new = fake.inbox(1)[0]
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    st = r.stream("inbox", "sms")
    # Its id was given out before the restore: that row is replaced.
    eq((st["fetched"], st["inserted"] + st["updated"]), (1, 1), "new message after the take-up")
    dev = {x["id"]: x for x in fake.dump("inbox")}
    eq(stored(ctx)["in:%d" % new]["body"], dev[new]["text"], "the new message's text")


@test
def sms_deleted_newest_is_no_reset(ctx):
    fake = sms_setup(ctx, inbox=10, sent=10)
    sms_config(ctx, extra="cold_start_days = 0;")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    top = max(r["id"] for r in fake.dump("inbox"))
    fake.post("delete", folder="inbox", ids=[top])
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    fake.inbox(1)
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    eq(r.stream("inbox", "sms")["inserted"], 1, "new message after a deletion")


@test
def sms_device_ignores_id_from(ctx):
    fake = sms_setup(ctx, inbox=30)
    sms_config(ctx, extra="page_size = 10;")
    fake.fault("inbox", "ignore_id_from", times=-1)
    r = ctx.run("full-sync", "-j", "--stream", "inbox", timeout=30)
    r.expect_rc(65)
    check("does not advance" in r.source("sms")["error"]["message"], "error message",
          r.desc())
    # What was stored before the loop was seen stays, with its cursor.
    eq(ctx.count("message"), 10, "messages stored")
    eq(ctx.cursor("inbox", "sms"), "10", "cursor")


@test
def sms_id_reset_same_second(ctx):
    """Replaced at once, new messages as young as the old: told apart by
    their content, also when only one new message exists."""
    for add in (3, 1):
        fake = sms_setup(ctx, name="fake%d" % add)
        sms_config(ctx)
        fake.inbox(5)
        fake.move(fake.send(5))
        e2e.ok_pass(ctx.run("incr-sync", "-j"))
        fake.post("reset_ids", keep=0)
        fake.inbox(add)
        fake.move(fake.send(add))
        r = ctx.run("incr-sync", "-j")
        r.expect_rc(65)
        eq(r.source("sms")["error"]["kind"], "protocol", "error kind (%d new)" % add)
        ctx.fake.stop()


@test
def sms_purged_folder_is_no_reset(ctx):
    fake = sms_setup(ctx, inbox=10)
    sms_config(ctx, extra="cold_start_days = 0;")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    fake.post("delete", folder="inbox", ids=[r["id"] for r in fake.dump("inbox")])
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    new = fake.inbox(2)
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    eq(r.stream("inbox", "sms")["inserted"], 2, "new messages after a purge")
    check(min(new) > 10, "the fake reused ids after a purge")


@test
def sms_since_folders_page_size(ctx):
    fake = sms_setup(ctx, inbox=30, sent=30)
    sms_config(ctx, extra='folders = [ "inbox", "sent" ]; page_size = { inbox = 4; };')
    since = (datetime.now(timezone.utc) - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = ctx.run("full-sync", "-j", "--since", since)
    j = e2e.ok_pass(r)
    eq([s["stream"] for s in j["sources"][0]["streams"]], ["inbox", "sent"], "streams")
    reqs = fake.api_requests()
    check(all(q["query"].get("date_from") == since for q in reqs), "date_from is not --since",
          [q["query"] for q in reqs][:3])
    eq({q["query"]["limit"] for q in reqs if q["endpoint"] == "inbox"}, {"4"}, "inbox limit")
    eq({q["query"]["limit"] for q in reqs if q["endpoint"] == "sent"}, {"500"}, "sent limit")
    lo = datetime.fromisoformat(since.replace("Z", "+00:00"))
    want = {ext_id("inbox", x["id"]) for x in fake.dump("inbox") if utc(x["receive_date"]) >= lo}
    got = {k for k in stored(ctx) if k.startswith("in:")}
    check(want and got == want, "inbox since %s: stored %d, want %d" % (since, len(got), len(want)))
    r = ctx.run("incr-sync", "-j", "--stream", "outbox")
    r.expect_rc(64)


# ---------------------------------------------------------------------------
# MMS attachments (SPEC §9, issue 13)

def sms_att_rows(ctx, source="sms"):
    return e2e.attachment_rows(
        ctx, source, "a.external_id AS ext, a.kind, a.mime_type, a.name, a.size, a.url,"
        " a.state, a.last_error, encode(a.content, 'escape') AS content")


def _b64(b):
    import base64
    return base64.b64encode(b).decode()


@test
def sms_mms_attachments(ctx):
    # MMS parts are asked for, decoded into their rows, and the stored raw
    # keeps a reference instead of the base64; a part that is not base64 is
    # unavailable and keeps its content.
    fake = sms_setup(ctx, inbox=2)
    mid = fake.post("mms", text="look", parts=[
        {"content_b64": _b64(b"hello photo"), "name": "a.jpg", "content_type": "image/jpeg"},
        {"content": "!!not base64", "name": "b.txt", "content_type": "text/plain"},
        {"content_b64": _b64(b"\x00\x01voice"), "name": "c.amr", "content_type": "audio/amr"},
    ])["external_id"]
    sms_config(ctx)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    reqs = [r for r in fake.api_requests("inbox") if r["endpoint"] == "inbox"]
    check(reqs and all(r["query"].get("attachments") == "1" for r in reqs),
          "inbox read without attachments=1", [r["query"] for r in reqs])
    rows = sms_att_rows(ctx)
    eq([(r["msg"], r["ext"], r["kind"], r["mime_type"], r["name"], r["size"], r["state"])
        for r in rows],
       [(mid, "0", "image", "image/jpeg", "a.jpg", 11, "pending"),
        (mid, "1", "text", "text/plain", "b.txt", None, "unavailable"),
        (mid, "2", "audio", "audio/amr", "c.amr", 7, "pending")], "attachment rows")
    eq(rows[0]["content"], "hello photo", "inline content of part 0")
    check("not valid base64" in (rows[1]["last_error"] or ""), "why part 1 is unavailable",
          rows[1])
    raw = json.loads(ctx.sql("SELECT raw FROM message WHERE external_id = '%s'" % mid))
    parts = raw["attachments"]
    eq(parts[0]["content"], {"msgsync_attachment": "0", "bytes": 11}, "raw part 0")
    eq(parts[1]["content"], "!!not base64", "raw part 1 (kept as sent)")
    eq(parts[2]["content"], {"msgsync_attachment": "2", "bytes": 7}, "raw part 2")
    eq(parts[0]["name"], "a.jpg", "raw part 0 name")
    text = ctx.sql("SELECT string_agg(m::text, ' ') FROM message m")
    check(_b64(b"hello photo") not in text, "the base64 is still in a message row")
    # Plain SMS have no attachment rows; reading it again rewrites nothing.
    eq(len(rows), 3, "attachment rows of the device")
    q = "SELECT m.external_id, m.seq, m.raw FROM message m WHERE external_id = '%s'" % mid
    before = ctx.sql_json(q), ctx.sql("SELECT max(seq) FROM attachment")
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    after = ctx.sql_json(q), ctx.sql("SELECT max(seq) FROM attachment")
    eq(after, before, "messages and attachments after a rerun")


@test
def sms_mms_link_none(ctx):
    # media = "link" or "none": no store behind them, the raw keeps the base64.
    fake = sms_setup(ctx)
    mid = fake.post("media_add", content_b64=_b64(b"pic"), name="p.png",
                    mime="image/png")["external_id"]
    ctx.config(sources=[sms_source(ctx, name="sl", extra='media = "link";'),
                        sms_source(ctx, name="sn", extra='media = "none";')])
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    for src in ("sl", "sn"):
        raw = json.loads(ctx.sql("SELECT m.raw FROM message m JOIN source s ON "
                                 "s.id = m.source_id WHERE s.name = '%s' AND "
                                 "m.external_id = '%s'" % (src, mid)))
        eq(raw["attachments"][0]["content"], _b64(b"pic"), src + ": raw content")
    eq(len(sms_att_rows(ctx, "sl")), 1, "attachment rows under media = link")
    eq(sms_att_rows(ctx, "sn"), [], "attachment rows under media = none")


@test
def sms_mms_media_sync(ctx):
    # media-sync moves the inline parts to the store with no request to the
    # device; the message keeps its references; the same part in two MMS is
    # stored once.
    import hashlib
    fake = sms_setup(ctx)
    pic = os.urandom(5000)
    m1 = fake.post("media_add", content_b64=_b64(pic), name="p.jpg")["external_id"]
    m2 = fake.post("mms", parts=[
        {"content_b64": _b64(pic), "name": "same.jpg", "content_type": "image/jpeg"},
        {"content_b64": _b64(b"note"), "name": "n.txt", "content_type": "text/plain"}])[
        "external_id"]
    sd = os.path.join(ctx.dir, "media")
    p = sms_config(ctx)
    with open(p, "a") as f:
        f.write('media = { store = "dir"; dir = "%s"; };\n' % sd)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    fake.clear_log()
    r = ctx.run("media-sync", "-j")
    e2e.ok_pass(r, "media-sync")
    s = r.source("sms")
    eq((s["downloaded"], s["deduplicated"], s["bytes"]), (3, 1, 2 * len(pic) + 4),
       "downloaded, deduplicated, bytes")
    eq(fake.api_requests(), [], "requests to the device")
    got = {}
    for sub in os.listdir(sd):
        if sub != ".tmp":
            for fn in os.listdir(os.path.join(sd, sub)):
                got[fn] = open(os.path.join(sd, sub, fn), "rb").read()
    eq(sorted(got), sorted(hashlib.sha256(x).hexdigest() for x in (pic, b"note")),
       "files in the store")
    rows = sms_att_rows(ctx)
    eq([(r["msg"], r["ext"], r["state"], r["content"]) for r in rows],
       [(m1, "0", "stored", None), (m2, "0", "stored", None), (m2, "1", "stored", None)],
       "attachment rows after media-sync")
    raw = json.loads(ctx.sql("SELECT raw FROM message WHERE external_id = '%s'" % m2))
    eq(raw["attachments"][1]["content"], {"msgsync_attachment": "1", "bytes": 4},
       "the message keeps its reference")
