"""End-to-end tests of rows that cannot be stored (SPEC §7.9, on_bad_row) and
of the per-entity counters (SPEC §5, `related`), for several source types.
Imported by run.py, whose @test they register:

    python3 tests/e2e/run.py --filter badrow_
"""

import json

import __main__ as e2e
import facebook_e2e as fb
import unipile_e2e as uni
from smseagle_e2e import SmsFake  # noqa: F401
import smseagle_faults_e2e as smsf

test, check, eq, Fail = e2e.test, e2e.check, e2e.eq, e2e.Fail

QUARANTINE = 'on_bad_row = "quarantine";'


def rejected_rows(ctx, source="wa"):
    return ctx.sql_json(
        "SELECT r.stream, r.position, r.reason, r.raw, r.times_seen,"
        " r.resolved_at IS NOT NULL AS resolved, r.first_seen_at <= r.last_seen_at AS ordered"
        " FROM rejected_row r JOIN source s ON s.id = r.source_id"
        " WHERE s.name = '%s' ORDER BY r.id" % source)


def status_source(ctx, name="wa"):
    r = ctx.run("sync-status", "--json")
    r.expect_rc(0)
    return [s for s in r.json["sources"] if s["name"] == name][0]


def seqapi_poisoned(ctx, extra=""):
    """A synced seqapi source, 900 new messages upstream, and the message of
    one seq among them poisoned (its id an object) on every read; returns
    (messages cursor before, poisoned seq)."""
    ctx.setup(conversations=10, messages=600, contacts=10)
    ctx.config(page_size=e2e.PS, extra=extra)
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    ctx.fake.add("messages", 900)
    cur = int(ctx.cursor("messages"))
    seq = cur + 150
    ctx.fake.fault("messages", "bad_id", seq=seq, times=-1)
    return cur, seq


@test
def badrow_seqapi_fail(ctx):
    """on_bad_row = fail (the default): the page fails with a data error
    naming source, stream, position and field; nothing of it is written, the
    cursor stays, and each pass tries again until the upstream is fixed."""
    cur, seq = seqapi_poisoned(ctx)
    for attempt in (1, 2):
        r = ctx.run("incr-sync", "-j")
        r.expect_rc(65)
        err = r.source().get("error") or {}
        eq(err.get("kind"), "data", "error kind (pass %d)" % attempt)
        msg = err.get("message", "")
        for want in ("'wa'", "'messages'", str(seq), "'id'"):
            check(want in msg, "the error names %s" % want, msg)
        eq(int(ctx.cursor("messages")), cur, "messages cursor (pass %d)" % attempt)
        eq(ctx.count("message"), 600, "messages stored (nothing of the poisoned page)")
        eq(ctx.count("rejected_row"), 0, "rejected rows under on_bad_row = fail")
        eq(r.stream("messages").get("rejected"), 0, "rejected counter under fail")
    ctx.fake.call("clear_faults", {})
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    eq(r.stream("messages").get("inserted"), 900, "messages inserted once fixed")
    e2e.assert_exact(ctx)


@test
def badrow_seqapi_quarantine(ctx):
    """on_bad_row = quarantine: the row goes to rejected_row as received, the
    rest of the page is stored, `rejected` counts it, sync-status reports it
    (text, JSON, --check WARNING, Prometheus) until a later pass stores an
    item read at the same seq; seeing the same rejection again bumps it."""
    cur, seq = seqapi_poisoned(ctx, extra=QUARANTINE)
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    js = r.stream("messages")
    eq((js.get("fetched"), js.get("inserted"), js.get("rejected")), (900, 899, 1),
       "messages fetched / inserted / rejected")
    eq(r.stream("contacts").get("rejected"), 0, "contacts rejected")
    eq(ctx.count("message"), 1499, "messages stored (all but the poisoned one)")
    eq(int(ctx.cursor("messages")), cur + 900, "messages cursor (past the quarantined row)")
    rows = rejected_rows(ctx)
    eq(len(rows), 1, "rejected rows")
    rj = rows[0]
    eq((rj["stream"], rj["position"], rj["times_seen"], rj["resolved"]),
       ("messages", str(seq), 1, False), "rejected row")
    check("'id'" in rj["reason"] or "id" in rj["reason"], "reason names the field", rj)
    raw = json.loads(rj["raw"])
    eq((raw.get("id"), raw.get("seq")), ({"bad": True}, seq), "the row as received")
    eq(ctx.sql("SELECT rejected FROM sync_run ORDER BY id DESC LIMIT 1"), "1",
       "sync_run.rejected")

    eq(status_source(ctx).get("rejected"), 1, "sync-status --json rejected")
    t = ctx.run("sync-status")
    t.expect_rc(0)
    check("1 rejected" in t.out, "sync-status text shows the rejected row", t.out)
    c = ctx.run("sync-status", "--check")
    eq(c.rc, 1, "sync-status --check exit while a rejected row is unresolved")
    check(c.out.startswith("MSGSYNC WARNING") and "rejected" in c.out, "check line", c.out)
    p = ctx.run("sync-status", "--prometheus")
    p.expect_rc(0)
    for want in ("# HELP msgsync_source_rejected_rows ", "# TYPE msgsync_source_rejected_rows gauge",
                 'msgsync_source_rejected_rows{source="wa"} 1'):
        check(want in p.out, "prometheus has %r" % want, p.out[-600:])

    # The same rejection seen again (a full walk re-reads it): one row, seen twice.
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r)
    eq(r.stream("messages").get("rejected"), 1, "rejected by the full walk")
    rows = rejected_rows(ctx)
    eq([(x["position"], x["times_seen"], x["resolved"], x["ordered"]) for x in rows],
       [(str(seq), 2, False, True)], "rejected rows after seeing it again")

    # Fixed upstream: the next walk stores the item at that seq and resolves it.
    ctx.fake.call("clear_faults", {})
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r)
    eq(r.stream("messages").get("rejected"), 0, "rejected once fixed")
    rows = rejected_rows(ctx)
    eq([(x["position"], x["resolved"]) for x in rows], [(str(seq), True)],
       "the rejected row is resolved")
    eq(status_source(ctx).get("rejected"), 0, "sync-status rejected once resolved")
    c = ctx.run("sync-status", "--check")
    eq(c.rc, 0, "sync-status --check once resolved: %s" % c.out)
    e2e.assert_exact(ctx)


@test
def badrow_seqapi_dry_run(ctx):
    """A dry run counts a quarantined row but writes nothing."""
    cur, seq = seqapi_poisoned(ctx, extra=QUARANTINE)
    r = ctx.run("full-sync", "-j", "--dry-run")
    e2e.ok_pass(r)
    eq(r.stream("messages").get("rejected"), 1, "rejected in a dry run")
    eq(ctx.count("rejected_row"), 0, "rejected rows written by a dry run")
    eq(int(ctx.cursor("messages")), cur, "cursor after a dry run")


@test
def badrow_smseagle_fail(ctx):
    """SMSEagle: a message whose id is not one fails its folder (exit 65,
    kind data), nothing of the page stored, cursor unchanged; the other
    folders run; fixed upstream, the next pass stores everything."""
    fake = smsf.sms_setup(ctx, inbox=30, sent=20)
    smsf.cfg(ctx, "page_size = 50;")
    fake.fault("inbox", "bad_row", times=1)
    r = ctx.run("full-sync", "-j")
    r.expect_rc(65)
    err = r.source("sms").get("error") or {}
    eq(err.get("kind"), "data", "error kind")
    check("'inbox'" in err.get("message", "") and "'id'" in err.get("message", ""),
          "the error names the folder and the field", err)
    eq(smsf.inbox_ids(ctx), set(), "inbox messages stored (nothing of the page)")
    eq(ctx.cursor("inbox", "sms"), None, "inbox cursor")
    eq(r.stream("sent", "sms").get("inserted"), 20, "the other folders ran")
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    smsf.assert_exact(ctx, fake)


@test
def badrow_smseagle_quarantine(ctx):
    fake = smsf.sms_setup(ctx, inbox=30, sent=20)
    smsf.cfg(ctx, "page_size = 50; " + QUARANTINE)
    fake.fault("inbox", "bad_row", times=1)
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r)
    st = r.stream("inbox", "sms")
    eq((st["fetched"], st["inserted"], st["rejected"]), (30, 29, 1),
       "inbox fetched / inserted / rejected")
    rows = rejected_rows(ctx, "sms")
    eq([(x["stream"], x["resolved"]) for x in rows], [("inbox", False)], "rejected rows")
    check('"x"' in rows[0]["raw"], "raw as received", rows[0]["raw"])
    eq(rows[0]["position"], "start", "position: the page's (the start of the folder)")
    eq(status_source(ctx, "sms").get("rejected"), 1, "sync-status rejected")
    # The next full walk reads that page again, fixed: resolved.
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    eq([x["resolved"] for x in rejected_rows(ctx, "sms")], [True],
       "resolved by a walk that stored the page read at the same position")
    eq(status_source(ctx, "sms").get("rejected"), 0, "sync-status rejected once resolved")
    smsf.assert_exact(ctx, fake)


@test
def badrow_facebook_fail(ctx):
    fake = fb.fb_setup(ctx, conversations=6, messages=4)
    fb.fb_config(ctx)
    fake.fault("messages", "bad_row", times=1)
    r = ctx.run("full-sync", "-j")
    r.expect_rc(65)
    err = r.source("fb").get("error") or {}
    eq(err.get("kind"), "data", "error kind")
    check("'id'" in err.get("message", ""), "the error names the field", err)
    eq(ctx.count("rejected_row"), 0, "rejected rows under fail")
    want = sum(len(c["messages"]) for c in fake.dump("1111"))
    check(ctx.count("message") < want, "the poisoned page was not stored")
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    fb.assert_fb_exact(ctx, fake)


@test
def badrow_unipile_fail(ctx):
    fake = uni.uni_setup(ctx, chats=3, messages=30)
    uni.uni_config(ctx, extra="page_size = 20;")
    fake.fault("messages", "bad_row", times=1)
    r = ctx.run("full-sync", "-j")
    r.expect_rc(65)
    err = r.source("uni").get("error") or {}
    eq(err.get("kind"), "data", "error kind")
    check("'messages'" in err.get("message", "") and "'id'" in err.get("message", ""),
          "the error names the stream and the field", err)
    eq(ctx.count("message"), 0, "messages stored (nothing of the poisoned page)")
    eq(ctx.cursor("messages", "uni"), None, "messages cursor")
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    uni.assert_exact(ctx, fake)


@test
def badrow_unipile_attendee_fail(ctx):
    """An attendee (a chat's contact) without a usable id fails the chats page."""
    fake = uni.uni_setup(ctx, chats=3, messages=6)
    uni.uni_config(ctx)
    fake.fault("attendees", "bad_row", times=1)
    r = ctx.run("full-sync", "-j")
    r.expect_rc(65)
    eq((r.source("uni").get("error") or {}).get("kind"), "data", "error kind")
    eq(ctx.cursor("chats", "uni"), None, "chats cursor")
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    uni.assert_exact(ctx, fake)


@test
def badrow_related_counts(ctx):
    """A stream counts only its own entity: a messages page that brings new
    senders or conversations reports inserted <= fetched, and those rows are
    counted in the source's `related`."""
    fake = uni.uni_setup(ctx, chats=4, messages=40)
    uni.uni_config(ctx)
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r)
    src = r.source("uni")
    rel = src.get("related")
    check(isinstance(rel, dict), "the source has `related`", src)
    for ent in ("contacts", "conversations"):
        check(isinstance(rel.get(ent), dict) and set(rel[ent]) >= {"inserted", "updated"},
              "related.%s" % ent, rel)
    for s in src["streams"]:
        check(s["inserted"] + s["updated"] + s["unchanged"] <= s["fetched"],
              "stream %s stored more than it fetched" % s["stream"], s)
    chats = r.stream("chats", "uni")
    eq(chats["inserted"], len(fake.dump("chats")), "chats inserted (its own entity)")
    eq(rel["contacts"]["inserted"], len(fake.dump("attendees")), "related contacts inserted")


@test
def badrow_related_seqapi_zero(ctx):
    ctx.setup(conversations=3, messages=20, contacts=3)
    ctx.config(page_size=e2e.PS)
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r)
    eq(r.source().get("related"), {"contacts": {"inserted": 0, "updated": 0},
                                   "conversations": {"inserted": 0, "updated": 0}},
       "related of a source without side rows")
    for s in r.source()["streams"]:
        eq(s.get("rejected"), 0, "%s rejected" % s["stream"])
