"""Fault scenarios of the smseagle source, end to end: retries, rate limits,
bad pages, oversized and slow answers, kill -9 and SIGTERM mid-pass,
overlapping runs, an unreachable database, and status-poll racing
incr-sync.  Against the fake device tests/fake/smseagle.py; imported by
run.py, whose @test they register:

    python3 tests/e2e/run.py --top /work/main --filter sms_

Synchronisation is by the fake's gates and wait, never by sleeping.
"""

import os
import random
import re
import signal
import socket
import subprocess
import time

import __main__ as e2e
from smseagle_e2e import (FOLDERS, SmsFake, assert_folders, expected, ext_id,  # noqa: F401
                          sms_setup, sms_source, sms_config, stored)

test, check, eq, Fail = e2e.test, e2e.check, e2e.eq, e2e.Fail

FINAL = ("delivery_ok", "delivery_failed", "sending_error", "error")


# ---------------------------------------------------------------------------
# Helpers

def cfg(ctx, extra="", name="msgsync.conf", **config_kw):
    """One smseagle source "sms"; config_kw (http=, sync=, ...) as ctx.config."""
    return ctx.config(sources=[sms_source(ctx, extra=extra)], name=name, **config_kw)


def stored_ids(ctx, source="sms", where="true"):
    """External ids of the stored messages."""
    return {r["external_id"] for r in ctx.sql_json(
        "SELECT m.external_id FROM message m JOIN source s ON s.id = m.source_id "
        "WHERE s.name = '%s' AND %s" % (source, where))}


def inbox_ids(ctx):
    return {int(x[3:]) for x in stored_ids(ctx, where="m.external_id LIKE 'in:%'")}


def cursors(ctx, folders=FOLDERS):
    return {f: ctx.cursor(f, "sms") for f in folders}


def mark(ctx, folder):
    """The committed walk position of a folder: its full-sync checkpoint
    while one is open, else its cursor; 0 for none."""
    r = ctx.state_row(folder, "sms") or {}
    v = r.get("full_checkpoint") or r.get("cursor")
    return int(v) if v is not None else 0


def device_ids(fake, folder, upto=None):
    return {ext_id(folder, r["id"]) for r in fake.dump(folder)
            if upto is None or r["id"] <= upto}


def by_endpoint(fake):
    return fake.stats()["by_endpoint"]


def no_duplicates(ctx):
    n = ctx.sql("SELECT count(*) - count(DISTINCT (source_id, external_id)) FROM message")
    eq(n, "0", "doubled messages")


def assert_inbox_upto(ctx, fake, cur, what):
    """The stored inbox is exactly the device's inbox up to id cur."""
    want = {r["id"] for r in fake.dump("inbox") if r["id"] <= cur}
    got = inbox_ids(ctx)
    check(got == want, "%s: stored inbox is not the device's inbox up to id %d: %d stored, "
          "%d wanted (%d missing, %d beyond)" % (what, cur, len(got), len(want),
                                                 len(want - got), len(got - want)),
          "beyond e.g. %s" % sorted(got - want)[:5], "missing e.g. %s" % sorted(want - got)[:5])


def assert_exact(ctx, fake):
    """assert_folders, with the outbox cursor allowed above the outbox's
    highest id (a message that moved on leaves it there: never backwards)."""
    assert_folders(ctx, fake, check_cursor=False)
    for f in FOLDERS:
        rows = fake.dump(f)
        top = max((r["id"] for r in rows), default=None)
        cur = ctx.cursor(f, "sms")
        if f == "outbox":
            check(top is None or (cur is not None and int(cur) >= top),
                  "outbox cursor %r below the outbox's highest id %r" % (cur, top))
        else:
            eq(cur, None if top is None else str(top), "%s cursor" % f)
    no_duplicates(ctx)


def tracking_consistent(ctx, what):
    """Every stored outgoing message whose status is not final is followed
    (in pending_message) or was given up on (tracking 'expired'); every
    final one is out of pending_message."""
    rows = ctx.sql_json(
        "SELECT m.external_id, m.status, m.folder, m.tracking, p.message_id IS NOT NULL AS "
        "pending FROM message m LEFT JOIN pending_message p ON p.message_id = m.id "
        "WHERE m.direction = 'out'")
    lost = [r for r in rows if r["status"] not in FINAL and not r["pending"]
            and r["tracking"] != "expired"]
    stuck = [r for r in rows if r["status"] in FINAL and (r["pending"] or
                                                         r["tracking"] != "final")]
    check(not lost, "%s: %d non-final outgoing messages are not followed any more"
          % (what, len(lost)), *lost[:3])
    check(not stuck, "%s: %d final messages still followed or not marked final"
          % (what, len(stuck)), *stuck[:3])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_requests(fake, p, count, timeout=40):
    """Waits until the device has seen `count` requests in all, or process p
    has ended; True when the count was reached."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fake.wait(count=count, timeout=0.2) is not None:
            return True
        if p.poll() is not None:
            return False
    raise Fail("%s made no progress to request %d" % (os.path.basename(p.argv[0]), count))


def finish_all(ctx, procs):
    return [ctx.finish(p) for p in procs]


# ---------------------------------------------------------------------------
# 1. 5xx, then success


@test
def sms_retry_5xx(ctx):
    fake = sms_setup(ctx, inbox=120, sent=120, outbox=3)
    cfg(ctx, "page_size = 50;")
    fake.fault("inbox", "http", status=500, times=2, after=1)
    fake.fault("sent", "http", status=503, times=1, after=2)
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r, "full-sync")
    for f, n in (("inbox", 2), ("outbox", 0), ("sent", 1), ("error", 0)):
        eq(r.stream(f, "sms").get("retries"), n, "%s retries" % f)
    eq(r.source("sms")["totals"]["retries"], 3, "total retries")
    by = by_endpoint(fake)
    eq((by.get("inbox"), by.get("sent")), (3 + 2, 3 + 1),
       "inbox and sent requests (3 pages each, plus the retried ones)")
    eq(r.stream("inbox", "sms")["api_calls"], 5, "inbox api_calls (retries are calls)")
    eq([q["status"] for q in fake.api_requests("inbox")], [200, 500, 500, 200, 200],
       "inbox answers")
    eq(r.stream("inbox", "sms")["fetched"], 120, "inbox fetched (no page twice)")
    eq(r.stream("sent", "sms")["inserted"], 120, "sent inserted")
    assert_exact(ctx, fake)
    eq(ctx.sql_json("SELECT retries FROM sync_run"), [{"retries": 3}], "sync_run.retries")


# ---------------------------------------------------------------------------
# 2. 5xx forever


@test
def sms_retry_exhausted(ctx):
    """A folder answering 503 on every attempt: exit 69, kind http, nothing
    of it written.  A non-data error ends the source's pass: the folders
    after it are not asked at all (and their state records the source's
    error), the folders before it keep what they committed."""
    fake = sms_setup(ctx, inbox=60, sent=60, outbox=2)
    cfg(ctx, "page_size = 25;", http={"retries": 2})
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    fake.inbox(30)
    ids = fake.send(6)
    fake.move(ids[:3])
    before, have = cursors(ctx), stored_ids(ctx)
    fake.clear_log()
    fake.fault("inbox", "http", status=503, times=-1)
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(69)
    s = r.source("sms")
    eq(s.get("status"), "failed", "source status")
    eq((s.get("error") or {}).get("kind"), "http", "error kind")
    check("503" in s["error"].get("message", ""), "the error does not say 503", s["error"])
    eq(r.json.get("status"), "failed", "top-level status")
    by = by_endpoint(fake)
    eq(by.get("inbox"), 3, "inbox requests (1 + 2 retries)")
    eq(sum(by.get(f, 0) for f in ("outbox", "sent", "error")), 0,
       "requests to the folders after the failed one")
    eq([x["stream"] for x in s["streams"]], ["inbox"], "streams in the JSON")
    eq(cursors(ctx), before, "cursors after the failed pass")
    eq(stored_ids(ctx), have, "stored messages after the failed pass")
    e2e.json_cursor_is_db(ctx, r, "inbox", "sms")
    kinds = {x["stream"]: (x["last_error_kind"], x["consecutive_failures"]) for x in ctx.sql_json(
        "SELECT stream, last_error_kind, consecutive_failures FROM sync_state")}
    eq(kinds, {f: ("http", 1) for f in FOLDERS},
       "sync_state error of each folder (those not run carry the source's error)")

    # The third folder fails: the first two commit, the fourth is not asked.
    fake.call("clear_faults", {})
    fake.fault("sent", "http", status=500, times=-1)
    fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(69)
    eq([x["stream"] for x in r.source("sms")["streams"]], ["inbox", "outbox", "sent"],
       "streams run when sent fails")
    eq(by_endpoint(fake).get("error", 0), 0, "error folder requests after sent failed")
    assert_inbox_upto(ctx, fake, max(r["id"] for r in fake.dump("inbox")), "inbox before sent")
    eq(ctx.cursor("outbox", "sms"), str(ids[-1]), "outbox cursor")
    eq(ctx.cursor("sent", "sms"), before["sent"], "sent cursor after its failure")
    have = stored_ids(ctx)
    eq([str(i) in have for i in ids], [False] * 3 + [True] * 3,
       "stored: the queued messages (outbox ran), not the sent ones (sent failed)")
    fake.call("clear_faults", {})
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_exact(ctx, fake)


# ---------------------------------------------------------------------------
# 3. 429


@test
def sms_rate_limit(ctx):
    fake = sms_setup(ctx, inbox=80, sent=40)
    cfg(ctx, "page_size = 30;", http={"timeout": 5}, sync={"max_runtime": 30})
    # Retry-After: 1 is waited for, inline.
    fake.fault("inbox", "429", retry_after=1, after=1)
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r)
    eq(r.stream("inbox", "sms").get("retries"), 1, "inbox retries after a 429")
    reqs = fake.api_requests("inbox")
    i = [k for k, q in enumerate(reqs) if q["status"] == 429]
    eq(len(i), 1, "429 answers")
    gap = reqs[i[0] + 1]["t"] - reqs[i[0]]["t_end"]
    check(gap >= 0.95, "retried %.2fs after a 429 with Retry-After: 1 (backoff 0.01)" % gap)
    check(gap < 10, "waited %.2fs after Retry-After: 1" % gap)
    assert_exact(ctx, fake)

    # Retry-After: 3600 is more than the pass can afford: remembered.
    fake.inbox(40)
    fake.move(fake.send(2))
    cur = int(ctx.cursor("inbox", "sms"))
    before = cursors(ctx)
    fake.clear_log()
    fake.fault("inbox", "429", retry_after=3600, after=1)
    t0 = time.monotonic()
    r = ctx.run("incr-sync", "-j")
    check(time.monotonic() - t0 < 20, "the pass waited for a one-hour Retry-After")
    r.expect_rc(75)
    s = r.source("sms")
    eq(s.get("status"), "failed", "source status")
    eq((s.get("error") or {}).get("kind"), "rate_limit", "error kind")
    eq(ctx.sql("SELECT next_allowed_at > now() + interval '50 minutes' AND next_allowed_at < "
               "now() + interval '70 minutes' FROM source WHERE name = 'sms'"), "t",
       "source.next_allowed_at is the end of the window")
    eq(int(ctx.cursor("inbox", "sms")), cur + 30, "inbox cursor (one good page, then the 429)")
    assert_inbox_upto(ctx, fake, cur + 30, "after the 429")
    eq({f: ctx.cursor(f, "sms") for f in ("outbox", "sent", "error")},
       {f: before[f] for f in ("outbox", "sent", "error")}, "cursors of the other folders")
    n = fake.stats()["total"]
    for prog in ("incr-sync", "full-sync", "status-poll"):
        r = ctx.run(prog, "-j")
        r.expect_rc(0)
        s = r.source("sms")
        eq(s.get("status"), "skipped", "%s source status while the window is open" % prog)
        check(re.search(r"rate", s.get("reason") or ""), "%s: the reason does not say rate "
              "limited" % prog, s)
        eq(r.json.get("status"), "skipped", "%s top-level status" % prog)
    r = ctx.run("incr-sync", "-q")
    r.expect_rc(0)
    eq((r.out, r.err), ("", ""), "output of a quietly skipped pass")
    eq(fake.stats()["total"], n, "requests while the window is open")
    # The window passes.
    ctx.sql("UPDATE source SET next_allowed_at = now() - interval '1 second' WHERE name = 'sms'")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_exact(ctx, fake)


# ---------------------------------------------------------------------------
# 4. Pages that cannot be used


BAD_PAGES = (
    # kind, exit code (SPEC §3), error kind, retried
    ("truncate", 65, "data", False),       # 200 with JSON cut in half: cannot be understood
    ("nonjson", 65, "data", False),        # 200 text/html
    ("truncate_conn", 69, "network", True),  # the connection drops mid-body
    ("close", 69, "network", True),        # no answer at all
)


@test
def sms_bad_pages(ctx):
    """Per kind: one good inbox page, then the bad one on every attempt.
    65 for an answer that cannot be understood (no retry; the other folders
    still run: a data error is the folder's own), 69 for a connection that
    fails on every attempt (retried; the source stops).  Never a half page,
    the inbox cursor stays after the good page, and once the fault is gone
    the next pass is exact."""
    fake = sms_setup(ctx, inbox=50, sent=30, outbox=2)
    cfg(ctx, "page_size = 40;")
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    for kind, rc, ekind, retried in BAD_PAGES:
        fake.inbox(100)
        ids = fake.send(4)
        fake.move(ids[:2])
        before, cur = cursors(ctx), int(ctx.cursor("inbox", "sms"))
        fake.clear_log()
        fake.fault("inbox", kind, after=1, times=-1)
        r = ctx.run("incr-sync", "-j")
        r.expect_rc(rc)
        s = r.source("sms")
        eq(s.get("status"), "failed", "%s: source status" % kind)
        eq((s.get("error") or {}).get("kind"), ekind, "%s: error kind" % kind)
        eq(int(ctx.cursor("inbox", "sms")), cur + 40, "%s: inbox cursor (the good page only)"
           % kind)
        e2e.json_cursor_is_db(ctx, r, "inbox", "sms")
        assert_inbox_upto(ctx, fake, cur + 40, kind)
        n = by_endpoint(fake).get("inbox")
        if not retried:
            eq(n, 2, "%s: inbox requests (not retried)" % kind)
            # The other folders ran.
            eq(ctx.cursor("outbox", "sms"), str(ids[-1]), "%s: outbox cursor" % kind)
            eq(ctx.cursor("sent", "sms"), str(ids[1]), "%s: sent cursor" % kind)
            got = stored(ctx)
            eq([(got.get(str(i)) or {}).get("folder") for i in ids],
               ["sent", "sent", "outbox", "outbox"], "%s: the new outgoing messages" % kind)
        else:
            check(n >= 1 + 4, "%s: %d inbox requests, want 1 good + 1 + 3 retries" % (kind, n))
            if kind == "truncate_conn":
                eq(n, 5, "%s: inbox requests" % kind)
            eq(r.stream("inbox", "sms").get("retries"), 3, "%s: retries" % kind)
            eq(sum(by_endpoint(fake).get(f, 0) for f in ("outbox", "sent", "error")), 0,
               "%s: requests to the other folders" % kind)
            eq({f: ctx.cursor(f, "sms") for f in ("outbox", "sent", "error")},
               {f: before[f] for f in ("outbox", "sent", "error")},
               "%s: cursors of the other folders" % kind)
        fake.call("clear_faults", {})
        e2e.ok_pass(ctx.run("incr-sync", "-j"))
        assert_exact(ctx, fake)
    # A connection failing once is retried and the pass succeeds.
    for kind in ("truncate_conn", "close"):
        fake.inbox(90)
        fake.fault("inbox", kind, after=1, times=1)
        r = ctx.run("incr-sync", "-j")
        e2e.ok_pass(r)
        # libcurl itself tries a reused connection that died without an
        # answer once more on a new one: that is no retry of ours.
        check(r.stream("inbox", "sms").get("retries") in ((0, 1) if kind == "close" else (1,)),
              "%s once: retries %r" % (kind, r.stream("inbox", "sms").get("retries")))
        eq(r.stream("inbox", "sms").get("fetched"), 90, "%s once: fetched" % kind)
        assert_exact(ctx, fake)


# ---------------------------------------------------------------------------
# 5. A row without a usable id


@test
def sms_bad_row(ctx):
    """A row whose id is "x" cannot be stored: under on_bad_row = fail (the
    default) its folder fails with a data error and nothing of its page is
    written (SPEC §7.9); a text of the wrong type is a sanitised field and
    the row is stored without it."""
    fake = sms_setup(ctx, inbox=30, sent=20)
    cfg(ctx, "page_size = 50;")
    fake.fault("inbox", "bad_row", times=1)
    fake.fault("sent", "bad_row", field="text", times=1)
    r = ctx.run("full-sync", "-j")
    r.expect_rc(65)
    eq((r.source("sms").get("error") or {}).get("kind"), "data", "error kind")
    st = r.stream("inbox", "sms")
    eq((st["fetched"], st["inserted"], st["rejected"]), (30, 0, 0),
       "inbox fetched / inserted / rejected with an id \"x\"")
    eq(inbox_ids(ctx), set(), "inbox messages stored (nothing of the page)")
    eq(ctx.cursor("inbox", "sms"), None, "inbox cursor")
    st = r.stream("sent", "sms")
    eq(st["inserted"], 20, "sent inserted with one text an object")
    check(st.get("sanitized", 0) >= 1, "sent sanitized %r" % st.get("sanitized"))
    eq(ctx.count("message", "direction = 'out' AND body IS NULL"), 1,
       "messages stored without their unreadable text")
    # A walk without the fault takes both up.
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    assert_exact(ctx, fake)


# ---------------------------------------------------------------------------
# 6. An answer over http.max_body


@test
def sms_huge_body(ctx):
    fake = sms_setup(ctx, inbox=50, sent=30)
    cfg(ctx, "page_size = 20;", http={"max_body": 200000})
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    fake.inbox(30)
    ids = fake.send(3)
    fake.move(ids[:1])
    before, have = cursors(ctx), inbox_ids(ctx)
    fake.clear_log()
    fake.fault("inbox", "huge", size=5000000, times=-1)
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(65)
    s = r.source("sms")
    eq(s.get("status"), "failed", "source status")
    err = s.get("error") or {}
    eq(err.get("kind"), "data", "error kind of an oversized body")
    check(re.search(r"max_body|too large|larger", err.get("message", ""), re.I),
          "the error does not say the body is too large", err)
    eq(by_endpoint(fake).get("inbox"), 1, "inbox requests (an oversized body is not retried)")
    eq(ctx.cursor("inbox", "sms"), before["inbox"], "inbox cursor")
    eq(inbox_ids(ctx), have, "inbox messages after the oversized answer")
    eq(ctx.count("message", "length(body) > 10000"), 0, "messages from the oversized body")
    # A data error is the folder's own: the others ran.
    eq(ctx.cursor("outbox", "sms"), str(ids[-1]), "outbox cursor")
    eq(ctx.cursor("sent", "sms"), str(ids[0]), "sent cursor")
    fake.call("clear_faults", {})
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_exact(ctx, fake)


# ---------------------------------------------------------------------------
# 7. An answer slower than http.timeout


@test
def sms_timeout_slow(ctx):
    fake = sms_setup(ctx, inbox=60, sent=20)
    cfg(ctx, "page_size = 25;", http={"timeout": 1, "retries": 2})
    fake.fault("inbox", "slow", delay=3, after=1, times=1)
    t0 = time.monotonic()
    r = ctx.run("full-sync", "-j")
    dt = time.monotonic() - t0
    e2e.ok_pass(r)
    check(dt < 3, "the 1 s timeout did not cut a 3 s answer (pass took %.1fs)" % dt)
    eq(r.stream("inbox", "sms").get("retries"), 1, "retries after a timeout")
    assert_exact(ctx, fake)
    fake.inbox(10)
    cur = ctx.cursor("inbox", "sms")
    fake.clear_log()
    fake.fault("inbox", "slow", delay=3, times=-1)
    t0 = time.monotonic()
    r = ctx.run("incr-sync", "-j")
    dt = time.monotonic() - t0
    r.expect_rc(69)
    err = r.source("sms").get("error") or {}
    eq(err.get("kind"), "network", "error kind of timeouts")
    check(re.search(r"time", err.get("message", ""), re.I), "the error does not say it timed "
          "out", err)
    eq(by_endpoint(fake).get("inbox"), 3, "inbox attempts (1 + 2 retries)")
    eq(r.stream("inbox", "sms").get("retries"), 2, "retries")
    check(2.9 <= dt < 7, "3 timed-out attempts of 1 s took %.1fs" % dt)
    eq(ctx.cursor("inbox", "sms"), cur, "inbox cursor after the timeouts")


# ---------------------------------------------------------------------------
# 8. kill -9 during a long full-sync


def committed_consistent(ctx, fake, prev, moved):
    """After a kill: everything up to each folder's committed position is
    stored, and nothing was written beyond them (rows stored by earlier
    runs excepted: a completed folder is walked again from its start).
    moved: outgoing ids that changed folders between runs."""
    want = set()
    for f in FOLDERS:
        want |= device_ids(fake, f, mark(ctx, f))
    got = stored_ids(ctx)
    missing = want - got - moved
    beyond = got - want - prev - moved
    check(not missing and not beyond, "stored messages do not match the committed positions "
          "%s: %d missing, %d beyond" % ({f: mark(ctx, f) for f in FOLDERS}, len(missing),
                                          len(beyond)),
          "missing e.g. %s" % sorted(missing)[:5], "beyond e.g. %s" % sorted(beyond)[:5])
    check(prev <= got, "%d stored messages disappeared" % len(prev - got))
    no_duplicates(ctx)
    return got


@test
def sms_kill9_full(ctx):
    rnd = random.Random(e2e.SEED)
    fake = sms_setup(ctx, inbox=3000, sent=3000, outbox=6)
    cfg(ctx, "page_size = 50;")
    prev, moved = set(), set()
    kills = 0
    for i in range(12):
        if kills == 5:
            break
        base = fake.stats()["total"]
        # A walk of everything is some 130 requests, a resumed one fewer; a
        # run that ends first is no kill (the device changes, and the next
        # full-sync walks it all again).
        k = rnd.randrange(3, 110)
        p = ctx.start("full-sync", "-j")
        if wait_requests(fake, p, base + k) and p.poll() is None:
            if i % 2 == 1:
                time.sleep(rnd.random() * 0.02)   # jitter the kill point inside a page
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        res = ctx.finish(p)
        check(res.rc in (0, -signal.SIGKILL), "exit of a killed run: %s" % res.rc, res.desc())
        e2e.wait_unlocked(ctx)
        prev = committed_consistent(ctx, fake, prev, moved)
        # The device keeps changing: new messages, sending (the oldest
        # queued one first, as a modem does), delivery reports.
        fake.inbox(rnd.randrange(1, 40))
        fake.send(2)
        out = sorted(r["id"] for r in fake.dump("outbox"))
        go = out[:rnd.randrange(1, 3)]
        fake.move(go)
        moved |= {str(x) for x in go}
        ok = [r["id"] for r in fake.dump("sent") if r["status"] == "sending_ok"]
        fake.report(rnd.sample(ok, 3))
    check(kills >= 3, "only %d kills landed during the walk" % kills)
    r = ctx.run("full-sync", "-j", timeout=120)
    e2e.ok_pass(r)
    want = set(expected(fake))
    got = stored_ids(ctx)
    check(got == want, "after the final full-sync: %d missing, %d not on the device"
          % (len(want - got), len(got - want)), sorted(want - got)[:5], sorted(got - want)[:5])
    no_duplicates(ctx)
    for f in FOLDERS:
        eq(ctx.state_row(f, "sms")["full_checkpoint"], None, "%s checkpoint after the walk" % f)
    # Statuses that changed below a resumed walk's checkpoint are
    # status-poll's to refresh (they are pending).
    r = ctx.run("status-poll", "-j")
    r.expect_rc(0)
    assert_exact(ctx, fake)
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    eq(r.source("sms")["totals"]["fetched"], 0, "incr-sync after the exact full sync fetches")


# ---------------------------------------------------------------------------
# 9. kill -9 during incr-sync


@test
def sms_kill9_incr(ctx):
    rnd = random.Random(e2e.SEED + 1)
    fake = sms_setup(ctx, inbox=20, sent=20)
    cfg(ctx, "page_size = 50; cold_start_days = 0;")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    fake.inbox(2500)
    ids = fake.send(300)
    fake.move(ids[:200])
    prev = stored_ids(ctx)
    kills = 0
    for _ in range(3):
        # Some 60 requests in all: three kills of at most 15 fit in.
        k = rnd.randrange(2, 16)
        base = fake.stats()["total"]
        p = ctx.start("incr-sync", "-q")
        if wait_requests(fake, p, base + k) and p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        res = ctx.finish(p)
        if res.rc == 0:
            break
        e2e.wait_unlocked(ctx)
        assert_inbox_upto(ctx, fake, int(ctx.cursor("inbox", "sms")), "after kill %d" % kills)
        prev = committed_consistent(ctx, fake, prev, set())
        fake.inbox(rnd.randrange(1, 30))
    check(kills == 3, "only %d kills landed during incr-sync" % kills)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_exact(ctx, fake)
    tracking_consistent(ctx, "after the kills")


# ---------------------------------------------------------------------------
# 10. Overlapping runs


@test
def sms_overlap(ctx):
    """Three incr-sync and two status-poll at once: one of each works (the
    locks are per command), the others are skipped with exit 0."""
    fake = sms_setup(ctx, inbox=30, sent=30)
    cfg(ctx, "page_size = 20; cold_start_days = 0;")
    ids = fake.send(4)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    fake.inbox(50)
    fake.move(ids[:2])
    fake.clear_log()
    # Hold the incr-sync that wins at its first folder, the status-poll
    # that wins at its first lookup (the outbox: its messages were last
    # seen there).
    fake.call("gate", {"endpoint": "inbox", "after": 0})
    fake.call("gate", {"endpoint": "outbox", "after": 0})
    procs = [ctx.start("incr-sync", "-j") for _ in range(3)]
    procs += [ctx.start("status-poll", "-j") for _ in range(2)]
    check(fake.wait(blocked=2, timeout=30) is not None, "the winners never reached the device")
    deadline = time.monotonic() + 30
    while sum(p.poll() is not None for p in procs) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    running = [p for p in procs if p.poll() is None]
    eq(len(running), 2, "runs still going while the winners are held")
    eq(sorted(os.path.basename(p.argv[0]) for p in running), ["incr-sync", "status-poll"],
       "the held runs")
    fake.call("release", {})
    res = finish_all(ctx, procs)
    for r in res:
        r.expect_rc(0)
        s = r.source("sms")
        if s["status"] == "skipped":
            check(re.search(r"another|running", s.get("reason") or ""),
                  "a skipped source says why", r.desc())
            eq(r.json.get("status"), "skipped", "top-level status of a skipped run")
    eq(sorted(r.source("sms")["status"] for r in res[:3]), ["ok", "skipped", "skipped"],
       "incr-sync statuses")
    eq(sorted(r.source("sms")["status"] for r in res[3:]), ["ok", "skipped"],
       "status-poll statuses")
    eq(by_endpoint(fake).get("inbox"), 3, "inbox requests (the losers fetch nothing)")
    assert_exact(ctx, fake)
    tracking_consistent(ctx, "after the overlap")


class HeldLock:
    """A psql session of the test that holds `lock` (SQL run in an open
    transaction) until release()."""

    def __init__(self, ctx, lock):
        env = dict(os.environ)
        env.update(ctx.cluster.env)
        env["PGDATABASE"] = ctx.db
        self.p = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, env=env, text=True)
        ctx.cleanup.append(self.release)
        self.p.stdin.write("BEGIN; %s; SELECT 'held';\n" % lock)
        self.p.stdin.flush()
        line = self.p.stdout.readline().strip()
        if line != "held":
            raise Fail("cannot hold %s: %s" % (lock, line))

    def release(self):
        if self.p.poll() is None:
            self.p.stdin.write("COMMIT;\n")
            self.p.stdin.close()
            self.p.wait(timeout=30)


def wait_lock_wait(ctx, where, what, procs, timeout=30):
    """Waits until a backend waits for a lock matching `where` (on
    pg_locks); fails if one of procs ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ctx.count("pg_locks", "NOT granted AND %s" % where) > 0:
            return
        for p in procs:
            if p.poll() is not None:
                raise Fail("%s ended before %s" % (os.path.basename(p.argv[0]), what),
                           ctx.finish(p).desc())
        time.sleep(0.02)
    raise Fail("never saw %s" % what, ctx.sql(
        "SELECT string_agg(wait_event_type || ':' || wait_event || ' ' || left(query, 60),"
        " '; ') FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"))


@test
def sms_shared_id_race(ctx):
    """SPEC 8: a full-sync walking 'sent' and an incr-sync walking 'error'
    meet the same new message (one id, two folders). The pass that loses
    the race to insert it must take the other's row, not fail on the
    unique key (it exited 75). Made deterministic with gates and a lock,
    no sleeps: both passes are held at the device until both have
    connected; then the test locks pending_message, which stops whichever
    inserts first after its insert and before its commit, and the other's
    insert waits for it; both waits are seen in pg_locks before the lock
    goes."""
    fake = sms_setup(ctx, sent=10)
    cfg(ctx, "cold_start_days = 0;")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    number = fake.dump("sent")[0]["number"]
    x = fake.send(1, number=number)
    fake.move(x, status="sending_error", error_code=350)
    eq([r["id"] for r in fake.dump("error")], x, "the error folder")
    fake.call("gate", {"endpoint": "error", "after": 0})
    fake.call("gate", {"endpoint": "sent", "after": 0})
    incr = ctx.start("incr-sync", "-j", "--stream", "error")
    full = ctx.start("full-sync", "-j", "--stream", "sent")
    check(fake.wait(blocked=2, timeout=30) is not None, "the passes never reached the device")
    hold = HeldLock(ctx, "LOCK TABLE pending_message IN EXCLUSIVE MODE")
    fake.call("release", {})
    wait_lock_wait(ctx, "relation = 'pending_message'::regclass",
                   "a pass waiting after its insert", [incr, full])
    wait_lock_wait(ctx, "locktype = 'transactionid'",
                   "the other pass's insert waiting for it", [incr, full])
    hold.release()
    for r in (ctx.finish(incr), ctx.finish(full)):
        e2e.ok_pass(r)
    no_duplicates(ctx)
    got = stored(ctx, where="m.external_id = '%d'" % x[0])
    eq([(g["folder"], g["status"]) for g in got.values()], [("error", "sending_error")],
       "the message both passes met")
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    assert_exact(ctx, fake)


@test
def sms_outlier_id(ctx):
    """SPEC 7.7: a bogus id far beyond what the device holds (2^53 - 1 in
    the inbox; 123 in the sent items of a device holding 50 messages) is
    stored and reported, and the cursor stays where the rest of the data
    puts it: the messages that come after it are stored, pass after pass.
    Both used to move the cursor there, skipping every new message while
    the passes exited 0."""
    fake = sms_setup(ctx, inbox=30, sent=20)
    cfg(ctx, "cold_start_days = 0;")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    eq(cursors(ctx, ("inbox", "sent")), {"inbox": "30", "sent": "20"}, "cursors")
    big = 2 ** 53 - 1
    eq(fake.inbox(1, id=big), [big], "the bogus inbox id")
    eq(fake.send(1, id=123), [123], "the bogus outgoing id")
    fake.move([123])
    for rnd in range(2):
        new_in, new_out = fake.inbox(2), fake.send(2)
        fake.move(new_out)
        r = ctx.run("incr-sync", "-j")
        e2e.ok_pass(r)
        ids = stored_ids(ctx)
        for i in ["in:%d" % big, "123"] + ["in:%d" % i for i in new_in] + [
                str(i) for i in new_out]:
            check(i in ids, "round %d: message %s not stored" % (rnd, i))
        eq(cursors(ctx, ("inbox", "sent")),
           {"inbox": str(max(new_in)), "sent": str(max(new_out))},
           "round %d: cursors" % rnd)
        eq(r.stream("inbox", "sms")["cursor_after"], str(max(new_in)), "inbox cursor_after")
        for i in (big, 123):
            check(re.search(r"id %d is \d+ above the id below it" % i, r.err),
                  "round %d: outlier %d not reported" % (rnd, i), r.err)
    no_duplicates(ctx)


# ---------------------------------------------------------------------------
# 11. SIGTERM mid-pass


@test
def sms_sigterm_midpass(ctx):
    fake = sms_setup(ctx, inbox=40, sent=20)
    cfg(ctx, "page_size = 50;")
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    fake.inbox(1000)
    fake.move(fake.send(3))
    c0 = int(ctx.cursor("inbox", "sms"))
    before = cursors(ctx)
    fake.call("gate", {"endpoint": "inbox", "after": 3})
    p = ctx.start("incr-sync", "-j")
    check(fake.wait(blocked=1, timeout=30) is not None, "the pass never reached page 4")
    os.kill(p.pid, signal.SIGTERM)
    fake.call("release", {})
    r = ctx.finish(p, timeout=30)
    r.expect_rc(143)
    eq(r.json.get("status"), "interrupted", "top-level status")
    s = r.source("sms")
    eq(s.get("status"), "interrupted", "source status")
    cur = int(ctx.cursor("inbox", "sms"))
    check(cur in (c0 + 150, c0 + 200), "inbox cursor %d: want %d + the 3 pages committed before "
          "the signal (%d), or 4 with the page in flight" % (cur, c0, c0 + 150))
    assert_inbox_upto(ctx, fake, cur, "after SIGTERM")
    eq(r.stream("inbox", "sms").get("cursor_after"), str(cur), "cursor_after in the JSON")
    eq({f: ctx.cursor(f, "sms") for f in ("outbox", "sent", "error")},
       {f: before[f] for f in ("outbox", "sent", "error")}, "folders after the interrupted one")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_exact(ctx, fake)


# ---------------------------------------------------------------------------
# 12. PostgreSQL unreachable


@test
def sms_pg_unreachable(ctx):
    fake = sms_setup(ctx, inbox=5, sent=5)
    good = cfg(ctx, "cold_start_days = 0;")
    text = open(good).read()
    port = ctx.cluster.env["PGPORT"]
    check("port=%s " % port in text, "the conninfo has no port to change", text)
    bad = os.path.join(ctx.dir, "badpg.conf")
    with open(bad, "w") as f:
        f.write(text.replace("port=%s " % port, "port=%d " % free_port()))
    os.chmod(bad, 0o600)
    for prog in ("incr-sync", "full-sync", "status-poll"):
        t0 = time.monotonic()
        r = ctx.run(prog, "-j", cfg=bad)
        r.expect_rc(75)
        check(time.monotonic() - t0 < 10, "%s took %.1fs to give up" % (prog,
                                                                       time.monotonic() - t0))
        # Stopped before any source ran: one top-level error (SPEC §5).
        eq(r.json.get("status"), "failed", "%s status" % prog)
        eq((r.json.get("error") or {}).get("kind"), "database", "%s error kind" % prog)
    r = ctx.run("incr-sync", "-q", cfg=bad)
    r.expect_rc(75)
    eq(r.out, "", "stdout of a quiet failing pass")
    check(r.err.strip(), "a quiet failing pass says nothing on stderr")
    eq(fake.stats()["total"], 0, "requests to the device without a database")
    e2e.ok_pass(ctx.run("incr-sync", "-j", cfg=good))
    eq(ctx.count("message"), 10, "messages once the database is reachable")


# ---------------------------------------------------------------------------
# 13. status-poll and incr-sync on one source at once


@test
def sms_poll_during_incr(ctx):
    """status-poll held inside its pass while a whole incr-sync runs (its
    lock is its own) and the device moves on: both succeed, nothing
    pending is lost, and later passes are exact."""
    fake = sms_setup(ctx, inbox=10)
    cfg(ctx, "page_size = 20; cold_start_days = 0;")
    queued = fake.send(20)
    fake.move(queued[:10])
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    eq(ctx.count("pending_message"), 20, "pending after the first pass")
    fake.call("gate", {"endpoint": "outbox", "after": 0})
    p = ctx.start("status-poll", "-j")
    check(fake.wait("outbox", count=1, blocked=1, timeout=30) is not None,
          "status-poll never asked the outbox")
    fake.move(queued[10:15])
    fake.report(queued[:3], "delivery_ok")
    fake.report(queued[3:4], "delivery_failed")
    fresh = fake.send(5)
    fake.inbox(4)
    # The outbox is held: this incr-sync reads the other folders.
    r = ctx.run("incr-sync", "-j", "--stream", "inbox", "--stream", "sent",
                "--stream", "error")
    e2e.ok_pass(r)
    eq(r.stream("sent", "sms")["fetched"], 5, "sent fetched while status-poll runs")
    fake.call("release", {})
    rp = ctx.finish(p)
    rp.expect_rc(0)
    s = rp.source("sms")
    eq(s.get("status"), "ok", "status-poll source status")
    # The 5 that incr-sync stored meanwhile are its: status-poll's older
    # answers for them are not written.
    eq(s.get("polled"), 15, "polled")
    tracking_consistent(ctx, "after the overlapping passes")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    check(all(str(i) in stored_ids(ctx) for i in fresh), "messages queued meanwhile")
    r = ctx.run("status-poll", "-j")
    r.expect_rc(0)
    assert_exact(ctx, fake)
    tracking_consistent(ctx, "at the end")
    eq(ctx.count("pending_message"), 20 - 4 + 5, "pending at the end")


@test
def sms_poll_stale_overwrite(ctx):
    """status-poll must not write what it read over what incr-sync stored
    meanwhile (found by this test: it did).

    status-poll reads message A from the outbox ("reserved") and is still
    asking the device about other messages when A is sent and delivered; an
    incr-sync (its own lock) stores A from the sent items as delivery_ok and
    stops following it.  Were status-poll to commit its older view, A
    would go back to "reserved" in the outbox, followed by nobody, and no
    later pass would read it again (every cursor is past it)."""
    fake = sms_setup(ctx)
    cfg(ctx)
    g = fake.send(1)            # G: sent, then gone from the device
    fake.move(g)
    a = fake.send(1)            # A: queued
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    eq(ctx.count("pending_message"), 2, "pending after the first pass")
    fake.post("delete", folder="outgoing", ids=g)
    fake.clear_log()
    # G is in neither the outbox nor the sent items: status-poll asks the
    # error folder last, and is held there, A's answer in hand.
    fake.call("gate", {"endpoint": "error", "after": 0})
    p = ctx.start("status-poll", "-j")
    check(fake.wait("error", count=1, blocked=1, timeout=30) is not None,
          "status-poll never asked the error folder")
    eq(len(fake.api_requests("outbox")), 1, "status-poll's outbox lookup")
    fake.move(a, "sending_ok")
    fake.report(a, "delivery_ok")
    r = ctx.run("incr-sync", "-j", "--stream", "inbox", "--stream", "outbox",
                "--stream", "sent")
    e2e.ok_pass(r)
    got = stored(ctx)[str(a[0])]
    eq((got["folder"], got["status"], got["tracking"]), ("sent", "delivery_ok", "final"),
       "A after the incr-sync")
    fake.call("release", {})
    rp = ctx.finish(p)
    rp.expect_rc(0)
    got = stored(ctx)[str(a[0])]
    eq((got["folder"], got["status"]), ("sent", "delivery_ok"),
       "A after status-poll committed (the device says sent, delivery_ok)")
    tracking_consistent(ctx, "after status-poll")
