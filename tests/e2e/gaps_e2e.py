"""End-to-end tests of issue 12's points 3 and 4: gaps of since_seq streams
healed on later passes (stream_gap, gap_window), and reset fingerprints
(an upstream re-created whose new seqs or ids already passed the old cursor
is a protocol error that full-sync --restart takes up).  The real binaries
against a real PostgreSQL and the fakes (tests/fake/seqapi.py: add with
"hold" and commit for a late-committed row, reset_seq with "recreate")."""

import __main__ as e2e
from __main__ import *  # noqa: F401,F403 -- the harness: Ctx, check, eq, test, ...


def _gaps(ctx, stream="messages"):
    return ctx.sql_json("SELECT lo, hi, reads, found_at::text AS found, checked_at IS NOT NULL "
                        "AS checked, unrecoverable_at IS NOT NULL AS unrec FROM stream_gap "
                        "WHERE stream = '%s' ORDER BY lo" % stream)


def _msg_requests(ctx):
    return [q for q in ctx.fake.requests("messages")]


def _gap_setup(ctx, window=3600, messages=100):
    ctx.setup(conversations=5, messages=messages, contacts=5)
    ctx.config(page_size=PS, extra="gap_window = %d;" % window)
    ok_pass(ctx.run("full-sync", "-j"))


@test
def late_commit_healed(ctx):
    # A row whose transaction commits after higher seqs were served: the
    # pass that skips it keeps the gap, the next one re-reads it and stores
    # the row exactly once; the gap is closed.
    _gap_setup(ctx)
    held = ctx.fake.add("messages", 1, hold=True)
    ctx.fake.add("messages", 3)
    r = ok_pass(ctx.run("incr-sync", "-j"))
    m = r["sources"][0]["streams"][1]
    eq((m["stream"], m["inserted"], m["gaps"]), ("messages", 3, 1), "the pass that skips it")
    eq((m.get("gaps_open"), m.get("gaps_healed"), m.get("gaps_unrecoverable")), (1, 0, 0),
       "gaps_open, gaps_healed, gaps_unrecoverable")
    seq = held["first_seq"]
    g = _gaps(ctx)
    eq([(x["lo"], x["hi"], x["unrec"]) for x in g], [(seq, seq, False)], "stream_gap rows")
    found = g[0]["found"]
    # Still not committed: re-read, still missing, its first found_at kept.
    ctx.fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    g = _gaps(ctx)
    eq([(x["lo"], x["reads"], x["found"], x["checked"]) for x in g], [(seq, 1, found, True)],
       "a gap re-read and still missing")
    eq(r.stream("messages").get("gaps_open"), 1, "gaps_open")
    reqs = _msg_requests(ctx)
    eq([q["query"].get("since_seq") for q in reqs], [str(seq - 1)], "the re-read's request")
    # Committed: the next pass stores it, once.
    ctx.fake.call("commit", {"stream": "messages"})
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    m = r.stream("messages")
    eq((m["inserted"], m["updated"], m.get("gaps_healed"), m.get("gaps_open")), (1, 0, 1, 0),
       "inserted, updated, gaps_healed, gaps_open after the commit")
    eq(_gaps(ctx), [], "stream_gap after healing")
    eq(ctx.count("message", "external_id = 'm%d'" % held["indexes"][0]), 1, "the late row")
    eq(ctx.count("message"), 104, "messages")
    assert_exact(ctx)
    # Nothing left: the next pass asks no page at all.
    ctx.fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    eq(len(_msg_requests(ctx)), 0, "message requests of a pass with nothing left")
    eq(r.stream("messages").get("inserted"), 0, "inserted on the pass after")


@test
def neighbouring_gaps_share_a_request(ctx):
    _gap_setup(ctx)
    a = ctx.fake.add("messages", 1, hold=True)["first_seq"]
    ctx.fake.add("messages", 2)
    b = ctx.fake.add("messages", 2, hold=True)["first_seq"]
    ctx.fake.add("messages", 1)
    r = ok_pass(ctx.run("incr-sync", "-j"))
    eq(r["sources"][0]["streams"][1].get("gaps_open"), 2, "gaps_open")
    eq([(x["lo"], x["hi"]) for x in _gaps(ctx)], [(a, a), (b, b + 1)], "stream_gap rows")
    ctx.fake.call("commit", {"stream": "messages"})
    ctx.fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    m = r.stream("messages")
    eq((m["inserted"], m.get("gaps_healed"), m.get("gaps_open")), (3, 2, 0),
       "inserted, gaps_healed, gaps_open")
    eq(len(_msg_requests(ctx)), 1, "requests re-reading both gaps (and no walk: nothing new)")
    eq(m.get("api_calls"), 1, "api_calls of the stream")
    assert_exact(ctx)


@test
def gap_window_zero_unrecoverable_at_once(ctx):
    # gap_window = 0: a gap is reported at once and never re-read; a full
    # walk that finds it filled closes it all the same.
    _gap_setup(ctx, window=0)
    held = ctx.fake.add("messages", 1, hold=True)
    ctx.fake.add("messages", 2)
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    m = r.stream("messages")
    eq((m.get("gaps_unrecoverable"), m.get("gaps_open")), (1, 0),
       "gaps_unrecoverable, gaps_open")
    check("unrecoverable" in r.err and "messages" in r.err, "a warning names it", r.desc())
    eq([x["unrec"] for x in _gaps(ctx)], [True], "stream_gap.unrecoverable_at set")
    ctx.fake.call("commit", {"stream": "messages"})
    ctx.fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    m = r.stream("messages")
    eq((m.get("gaps_unrecoverable"), m["inserted"]), (0, 0), "reported once, not re-read")
    eq(len(_msg_requests(ctx)), 0, "message requests")
    check("unrecoverable" not in r.err, "no second warning", r.desc())
    r = ctx.run("full-sync", "-j")
    ok_pass(r)
    m = r.stream("messages")
    eq((m["inserted"], m.get("gaps_healed")), (1, 1), "the full walk stores it and closes it")
    eq(_gaps(ctx), [], "stream_gap after the full walk")
    eq(ctx.count("message", "external_id = 'm%d'" % held["indexes"][0]), 1, "the late row")
    assert_exact(ctx)


@test
def gap_window_passes(ctx):
    # A short window: the pass after it re-reads the gap a last time and
    # then reports it unrecoverable; later passes leave it alone.
    _gap_setup(ctx, window=1)
    ctx.fake.add("messages", 1, hold=True)
    ctx.fake.add("messages", 2)
    ok_pass(ctx.run("incr-sync", "-j"))
    # The window is measured by the database's clock: age the gap past it.
    ctx.sql("UPDATE stream_gap SET found_at = found_at - interval '2 seconds'")
    ctx.fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    m = r.stream("messages")
    eq((m.get("gaps_unrecoverable"), m.get("gaps_open")), (1, 0), "after the window")
    eq(len(_msg_requests(ctx)), 1, "the last re-read")
    eq([(x["unrec"], x["reads"]) for x in _gaps(ctx)], [(True, 1)], "stream_gap row")
    ctx.fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    eq(len(_msg_requests(ctx)), 0, "an unrecoverable gap is not re-read")
    eq(r.stream("messages").get("gaps_unrecoverable"), 0, "reported once")


@test
def gaps_bounded_per_pass(ctx):
    # Many gaps (every other seq, 299 of them): a pass loads at most 100
    # open ones (the rest: later passes), and one page re-reads them all.
    ctx.setup(conversations=5, messages=300, contacts=5, seq_stride=2)
    ctx.config(page_size={"conversations": 20, "messages": 1000, "contacts": 15})
    r = ok_pass(ctx.run("full-sync", "-j"))
    eq(r["sources"][0]["streams"][1].get("gaps_open"), 299, "gaps_open after the walk")
    ctx.fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    m = r.stream("messages")
    eq(m.get("gaps_open"), 299, "gaps still open")
    eq(len(_msg_requests(ctx)), 1, "one request re-reads them")
    # The page covers the 100 gaps loaded and more: every gap in its range
    # is re-read; those beyond it are the next passes'.
    n = ctx.count("stream_gap", "stream = 'messages' AND reads = 1")
    check(100 <= n < 299, "gaps re-read by that page: %d" % n)
    eq([(q["query"].get("since_seq"), q["query"].get("limit")) for q in _msg_requests(ctx)],
       [("1", "200")], "the request: up to one past the 100th gap")


@test
def seqapi_reset_past_cursor(ctx):
    # The backend is re-created and its new seqs already passed the old
    # cursor: latest_seq is above the cursor, so only the anchor shows it.
    ctx.setup(conversations=5, messages=50, contacts=5)
    ctx.config(page_size=PS)
    ok_pass(ctx.run("full-sync", "-j"))
    ctx.fake.add("messages", 2)
    ok_pass(ctx.run("incr-sync", "-j"))
    fp = ctx.state_row("messages")["fingerprint"]
    eq(fp, "52:m51", "the anchor kept with the cursor")
    ctx.fake.call("reset_seq", {"keep": 0, "streams": ["messages"], "recreate": True})
    ctx.fake.add("messages", 80)
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(65)
    err = r.source().get("error") or {}
    eq(err.get("kind"), "protocol", "error kind")
    msg = err.get("message", "")
    check("messages" in msg and "full-sync --restart --source wa" in msg,
          "the error names the stream and the way out", err)
    eq(ctx.cursor("messages"), "52", "cursor kept")
    eq(ctx.count("message"), 52, "nothing of the new backend stored")
    r = ctx.run("full-sync", "-j", "--restart")
    ok_pass(r)
    eq(ctx.cursor("messages"), "80", "cursor replaced by the restarted walk")
    check(ctx.state_row("messages")["fingerprint"].startswith("80:"), "anchor replaced",
          ctx.state_row("messages"))
    eq(ctx.count("message"), 132, "old and new messages")
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    ctx.fake.add("messages", 4)
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    eq(r.stream("messages").get("inserted"), 4, "incr-sync after the reset was taken up")


@test
def anchor_costs_no_request(ctx):
    # The anchor rides on the first page (since_seq = cursor - 1, one more
    # row asked): a pass with nothing new asks no page at all.
    ctx.setup(conversations=5, messages=50, contacts=5)
    ctx.config(page_size=PS)
    ok_pass(ctx.run("full-sync", "-j"))
    ctx.fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    by = ctx.fake.stats()["by_endpoint"]
    eq({k: v for k, v in by.items() if v}, {"status": 1}, "requests of a no-op pass")
    ctx.fake.add("messages", PS["messages"])
    ctx.fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    reqs = _msg_requests(ctx)
    eq([(q["query"].get("since_seq"), q["query"].get("limit")) for q in reqs],
       [("49", str(PS["messages"] + 1))], "one page from just below the cursor")
    m = r.stream("messages")
    eq((m["fetched"], m["inserted"], m["unchanged"]), (PS["messages"], PS["messages"], 0),
       "the anchor row is not counted")


@test
def smseagle_reset_past_cursor(ctx):
    # The gateway is re-created and its new ids already passed the old
    # cursor: rows come back above it, and only the anchors (the folder's
    # highest messages as stored) show that the ids were given out again.
    import smseagle_e2e as sms
    fake = sms.sms_setup(ctx, inbox=30, sent=30)
    sms.sms_config(ctx, extra="cold_start_days = 0;")
    ok_pass(ctx.run("incr-sync", "-j"))
    cur = ctx.cursor("inbox", "sms")
    n = ctx.count("message")
    fake.post("reset_ids", keep=0)
    new = fake.inbox(int(cur) + 10)
    check(max(new) > int(cur), "the new ids pass the old cursor", new[-3:], cur)
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(65)
    s = r.source("sms")
    eq(s["error"]["kind"], "protocol", "error kind")
    msg = s["error"]["message"]
    check("inbox" in msg and "full-sync --restart --source sms" in msg,
          "the error names the folder and the way out", msg)
    eq(ctx.cursor("inbox", "sms"), cur, "inbox cursor kept")
    eq(ctx.count("message"), n, "nothing of the new device stored")
    r = ctx.run("full-sync", "-j", "--restart")
    ok_pass(r)
    eq(ctx.cursor("inbox", "sms"), str(max(new)), "inbox cursor after the restarted walk")
    ok_pass(ctx.run("incr-sync", "-j"))
    fake.inbox(2)
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    eq(r.stream("inbox", "sms")["inserted"], 2, "new messages after the take-up")


@test
def gap_partly_filled(ctx):
    # A gap of two seqs of which one commits: the row is stored, the gap
    # shrinks to the other seq and keeps when it was first found.
    _gap_setup(ctx)
    lo = ctx.fake.add("messages", 2, hold=True)["first_seq"]
    ctx.fake.add("messages", 1)
    ok_pass(ctx.run("incr-sync", "-j"))
    g = _gaps(ctx)
    eq([(x["lo"], x["hi"]) for x in g], [(lo, lo + 1)], "stream_gap rows")
    found = g[0]["found"]
    ctx.fake.call("commit", {"stream": "messages", "n": 1})
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    m = r.stream("messages")
    eq((m["inserted"], m.get("gaps_healed"), m.get("gaps_open")), (1, 0, 1),
       "inserted, gaps_healed, gaps_open")
    eq([(x["lo"], x["hi"], x["found"], x["reads"]) for x in _gaps(ctx)],
       [(lo + 1, lo + 1, found, 1)], "the gap that is left")
    ctx.fake.call("commit", {"stream": "messages"})
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    m = r.stream("messages")
    eq((m["inserted"], m.get("gaps_healed"), m.get("gaps_open")), (1, 1, 0),
       "inserted, gaps_healed, gaps_open at the end")
    eq(_gaps(ctx), [], "stream_gap at the end")
    assert_exact(ctx)
