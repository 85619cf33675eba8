"""End-to-end tests of coverage (SPEC §6 table coverage, §5 sync-status
`coverage`): what every pass records of how complete each conversation's
mirror is, for SMSEagle, seqapi and Instagram. Imported by run.py; run
them with  python3 tests/e2e/run.py --filter cov_
"""

import json
import re

import __main__ as e2e
import smseagle_e2e as sms

test, check, eq, ok_pass = e2e.test, e2e.check, e2e.eq, e2e.ok_pass


def coverage(ctx, source):
    """The source's coverage rows by conversation external id."""
    rows = ctx.sql_json(
        "SELECT c.external_id, v.stored_messages, v.upstream_messages,"
        " v.history_complete, v.gaps, v.unrecoverable,"
        " v.listable_from IS NOT NULL AS limited,"
        " v.history_reached_at IS NOT NULL AS reached, v.seq,"
        " (SELECT count(*) FROM message m WHERE m.conversation_id = c.id) AS real"
        " FROM conversation c JOIN source s ON s.id = c.source_id"
        " LEFT JOIN coverage v ON v.conversation_id = c.id"
        " WHERE s.name = '%s'" % source)
    return {r["external_id"]: r for r in rows}


def status_coverage(ctx, cfg, source):
    r = ctx.run("sync-status", "--json", cfg=cfg)
    eq(r.rc, 0, "sync-status --json exit status")
    for s in r.json["sources"]:
        if s["name"] == source:
            return s["coverage"]
    raise e2e.Fail("no source %r in sync-status --json" % source)


def seqapi_synced(ctx, conversations, messages, extra=""):
    """A seqapi source walked once from seq 0 by incr-sync; its config."""
    ctx.setup(conversations=conversations, messages=messages, contacts=3)
    cfg = ctx.config(page_size=e2e.PS, extra=extra)
    ok_pass(ctx.run("incr-sync", "-j", cfg=cfg), "incr-sync")
    return cfg


def rows_state(ctx):
    """Every coverage row's id, seq and checked_at, as one text."""
    return ctx.sql("SELECT string_agg(conversation_id || ':' || seq || ':' ||"
                   " checked_at, ',' ORDER BY conversation_id) FROM coverage")


def all_complete(ctx, source, want, what):
    """Every conversation's row counts its messages and is complete as want."""
    cov = coverage(ctx, source)
    every_row_counts(cov)
    check(all(v["history_complete"] == want for v in cov.values()), what, cov)
    return cov


def every_row_counts(cov):
    for ext, r in cov.items():
        check(r["stored_messages"] is not None, "conversation %s has no coverage row" % ext)
        eq(r["stored_messages"], r["real"], "stored_messages of %s" % ext)


@test
def cov_smseagle_cold_start_then_full(ctx):
    """A cold start stores only the window: no conversation is complete
    until a full sync has walked every folder from the start."""
    sms.sms_setup(ctx, inbox=30, sent=30)
    cfg = sms.sms_config(ctx, extra="page_size = 7; cold_start_days = 7;")
    r = ctx.run("incr-sync", "-j", cfg=cfg)
    ok_pass(r, "incr-sync")
    cov = coverage(ctx, "sms")
    check(cov, "no conversation stored by the cold start")
    every_row_counts(cov)
    check(not any(v["history_complete"] for v in cov.values()),
          "a conversation is complete after a cold start", cov)
    eq(ctx.sql("SELECT count(*) FROM sync_state WHERE history_complete_at IS NOT NULL"),
       "0", "streams walked from the start after a cold start")
    c = status_coverage(ctx, cfg, "sms")
    eq(c["complete"], 0, "sync-status complete after the cold start")
    eq(c["conversations"], len(cov), "sync-status conversations")

    r = ctx.run("full-sync", "-j", cfg=cfg)
    ok_pass(r, "full-sync")
    cov = coverage(ctx, "sms")
    every_row_counts(cov)
    eq(sum(v["real"] for v in cov.values()),
       int(ctx.sql("SELECT count(*) FROM message")), "messages over conversations")
    check(all(v["history_complete"] for v in cov.values()),
          "a conversation is not complete after the full sync", cov)
    eq(ctx.sql("SELECT count(*) FROM sync_state WHERE history_complete_at IS NULL"),
       "0", "streams not walked from the start after the full sync")
    c = status_coverage(ctx, cfg, "sms")
    eq(c, {"conversations": len(cov), "complete": len(cov), "gaps": 0,
           "unrecoverable": 0}, "sync-status coverage after the full sync")


@test
def cov_seqapi_walk_and_stream_gap(ctx):
    """seqapi walks from seq 0: complete after its first walk; an open
    stream gap (it belongs to no one conversation) makes none complete
    until it is healed."""
    cfg = seqapi_synced(ctx, 6, 120)
    cov = all_complete(ctx, "wa", True, "not complete after the first walk from seq 0")
    eq(len(cov), 6, "conversations")
    eq(status_coverage(ctx, cfg, "wa"),
       {"conversations": 6, "complete": 6, "gaps": 0, "unrecoverable": 0},
       "sync-status coverage")

    # A row committed late upstream: the pass that skips it keeps a gap.
    ctx.fake.add("messages", 1, hold=True)
    ctx.fake.add("messages", 3)
    ok_pass(ctx.run("incr-sync", "-j", cfg=cfg), "incr-sync")
    eq(ctx.sql("SELECT count(*) FROM stream_gap"), "1", "stream gaps kept")
    all_complete(ctx, "wa", False, "complete with an open stream gap")
    c = status_coverage(ctx, cfg, "wa")
    eq((c["complete"], c["gaps"]), (0, 1), "sync-status complete, gaps with a stream gap")

    # The row commits: the next pass heals the gap, and all are complete again.
    ctx.fake.call("commit", {"stream": "messages"})
    ok_pass(ctx.run("incr-sync", "-j", cfg=cfg), "incr-sync")
    eq(ctx.sql("SELECT count(*) FROM stream_gap"), "0", "stream gaps after healing")
    all_complete(ctx, "wa", True, "not complete once the stream gap closed")
    eq(status_coverage(ctx, cfg, "wa"),
       {"conversations": 6, "complete": 6, "gaps": 0, "unrecoverable": 0},
       "sync-status coverage after healing")


@test
def cov_seqapi_unrecoverable_gap(ctx):
    """A stream gap whose window passed counts as unrecoverable messages of
    its source, and keeps every conversation from being complete."""
    cfg = seqapi_synced(ctx, 4, 40, extra="gap_window = 0;")
    ctx.fake.add("messages", 2, hold=True)
    ctx.fake.add("messages", 1)
    ok_pass(ctx.run("incr-sync", "-j", cfg=cfg), "incr-sync")
    eq(status_coverage(ctx, cfg, "wa"),
       {"conversations": 4, "complete": 0, "gaps": 1, "unrecoverable": 2},
       "sync-status coverage with an unrecoverable two-seq gap")
    all_complete(ctx, "wa", False, "complete with an unrecoverable stream gap")


@test
def cov_noop_pass_rewrites_nothing(ctx):
    """A pass that stores nothing leaves every coverage row as it was."""
    cfg = seqapi_synced(ctx, 4, 40)
    before = rows_state(ctx)
    check(before, "no coverage rows after the first pass")
    r = ctx.run("incr-sync", "-j", cfg=cfg)
    ok_pass(r, "incr-sync")
    eq(r.source()["totals"]["inserted"] + r.source()["totals"]["updated"], 0,
       "rows written by the no-op pass")
    eq(rows_state(ctx), before, "coverage rows after a no-op pass")
    # One new message rewrites only its conversation's row.
    top = ctx.sql("SELECT max(seq) FROM coverage")
    ctx.fake.add("messages", 1)
    ok_pass(ctx.run("incr-sync", "-j", cfg=cfg), "incr-sync")
    eq(ctx.sql("SELECT count(*) FROM coverage WHERE seq > %s" % top), "1",
       "coverage rows changed by one new message")


@test
def cov_full_rerun_rewrites_nothing(ctx):
    """An unchanged full-sync after the first complete one recomputes no
    row (only the first walk from the start makes every row due); rows
    lost (a database restored without them) come back on the next pass."""
    cfg = seqapi_synced(ctx, 4, 40)
    ok_pass(ctx.run("full-sync", "-j", cfg=cfg), "full-sync")
    before = rows_state(ctx)
    ok_pass(ctx.run("full-sync", "-j", cfg=cfg), "full-sync")
    eq(rows_state(ctx), before, "coverage rows after an unchanged full-sync")
    ctx.sql("DELETE FROM coverage WHERE conversation_id = (SELECT min(conversation_id)"
            " FROM coverage)")
    ok_pass(ctx.run("full-sync", "-j", cfg=cfg), "full-sync")
    eq(ctx.count("coverage"), 4, "coverage rows after the next pass")
    eq(ctx.count("coverage", "history_complete"), 4, "complete rows")


@test
def cov_sync_status_formats(ctx):
    """sync-status shows coverage as text, JSON and Prometheus."""
    cfg = seqapi_synced(ctx, 3, 30)
    ctx.sql("UPDATE coverage SET unrecoverable = 5, history_complete = false"
            " WHERE conversation_id = (SELECT min(conversation_id) FROM coverage)")
    eq(status_coverage(ctx, cfg, "wa"),
       {"conversations": 3, "complete": 2, "gaps": 0, "unrecoverable": 5},
       "sync-status --json coverage")
    r = ctx.run("sync-status", cfg=cfg)
    eq(r.rc, 0, "sync-status exit status")
    check("coverage: 2 of 3 conversations complete, 0 gaps, 5 unrecoverable messages"
          in r.out, "no coverage line in sync-status", r.out)
    r = ctx.run("sync-status", "--prometheus", cfg=cfg)
    eq(r.rc, 0, "sync-status --prometheus exit status")
    for name, v in (("msgsync_coverage_conversations", 3),
                    ("msgsync_coverage_complete_conversations", 2),
                    ("msgsync_coverage_gaps", 0),
                    ("msgsync_coverage_unrecoverable_messages", 5)):
        check("# HELP %s " % name in r.out and "# TYPE %s gauge" % name in r.out,
              "no HELP/TYPE of %s" % name, r.out)
        check(re.search(r'^%s\{source="wa"\} %d$' % (name, v), r.out, re.M),
              "no sample %s = %d" % (name, v), r.out)


@test
def cov_instagram_limit(ctx):
    """Instagram details only the newest 20 messages of a conversation: one
    of 25 has 5 unrecoverable, is listable only from its 20th newest
    message, and is never complete; a short one is complete."""
    import facebook_e2e as fb
    fake = fb.fb_setup(ctx, conversations=0)
    cfg = fb.fb_config(ctx, extra='platform = "instagram";')
    long_id = fake.post("conversation", platform="instagram", messages=25,
                        step=10)["ids"][0]
    short_id = fake.post("conversation", platform="instagram", messages=3,
                         step=10)["ids"][0]
    ok_pass(ctx.run("full-sync", "-j", cfg=cfg), "full-sync")
    cov = coverage(ctx, "fb")
    every_row_counts(cov)
    lg, sh = cov[long_id], cov[short_id]
    eq((lg["stored_messages"], lg["upstream_messages"], lg["unrecoverable"],
        lg["limited"], lg["history_complete"]), (20, 25, 5, True, False),
       "the long conversation's coverage")
    eq(ctx.sql("SELECT v.listable_from = min(m.sent_at) FROM coverage v"
               " JOIN conversation c ON c.id = v.conversation_id"
               " JOIN message m ON m.conversation_id = c.id"
               " WHERE c.external_id = '%s' GROUP BY v.listable_from" % long_id),
       "t", "listable_from is the oldest readable message's time")
    eq((sh["stored_messages"], sh["upstream_messages"], sh["unrecoverable"],
        sh["limited"], sh["history_complete"]), (3, 3, 0, False, True),
       "the short conversation's coverage")
    eq(status_coverage(ctx, cfg, "fb"),
       {"conversations": 2, "complete": 1, "gaps": 0, "unrecoverable": 5},
       "sync-status coverage")
    # A no-op pass leaves the rows as they were.
    before = ctx.sql("SELECT string_agg(seq::text, ',' ORDER BY seq) FROM coverage")
    ok_pass(ctx.run("incr-sync", "-j", cfg=cfg), "incr-sync")
    eq(ctx.sql("SELECT string_agg(seq::text, ',' ORDER BY seq) FROM coverage"), before,
       "coverage rows after a pass that found nothing new")


@test
def cov_telegram_per_chat(ctx):
    """Telegram walks chat by chat: a chat whose walk reached its first
    message is complete even after an incr-sync; an old chat cut by the
    cold-start window is not until a full sync walks it whole."""
    import telegram_e2e as tg
    s = tg.tg_setup(ctx)
    # A chat of old messages only: the cold-start window stops before them.
    old = tg.GROUP
    for m in s.chat(old)["messages"]:
        m["date"] = tg.NOW - 30 * 86400 - m["id"] // tg.SHIFT
    s.write()
    ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    cov = coverage(ctx, "tg")
    every_row_counts(cov)
    young = [k for k in cov if k != str(old)]
    check(young, "no chat within the window", cov)
    for k in young:
        eq((cov[k]["reached"], cov[k]["history_complete"], cov[k]["gaps"]),
           (True, True, 0), "chat %s after the incr-sync" % k)
    check(str(old) in cov, "the old chat is not stored", cov)
    eq((cov[str(old)]["reached"], cov[str(old)]["history_complete"]), (False, False),
       "the old chat after a cold start")
    ok_pass(ctx.run("full-sync", "-j"), "full-sync")
    cov = coverage(ctx, "tg")
    every_row_counts(cov)
    check(all(v["history_complete"] for v in cov.values()),
          "a chat is not complete after the full sync", cov)


@test
def cov_instagram_limit_never_pruned(ctx):
    """Messages stored while they were among the newest 20 and pushed past
    the limit since are before the conversation's listable_from: two
    full-sync --prune walks leave them alone."""
    import facebook_e2e as fb
    fake = fb.fb_setup(ctx, conversations=0)
    cfg = fb.fb_config(ctx, extra='platform = "instagram";')
    cid = fake.post("conversation", platform="instagram", messages=15, step=10,
                    ago=3600)["ids"][0]
    ok_pass(ctx.run("full-sync", "-j", cfg=cfg), "full-sync")
    eq(coverage(ctx, "fb")[cid]["history_complete"], True, "15 messages: complete")
    fake.post("message", conversation=cid, n=10, step=10)
    for k in range(2):
        r = ctx.run("full-sync", "--prune", "-j", cfg=cfg)
        ok_pass(r, "full-sync")
    st = r.stream("conversations", "fb")
    eq((st.get("missing"), st.get("pruned")), (0, 0), "missing, pruned by the second walk")
    eq(ctx.count("message", "deleted_at IS NOT NULL OR missing_since IS NOT NULL"), 0,
       "messages marked missing or deleted")
    v = coverage(ctx, "fb")[cid]
    eq((v["stored_messages"], v["upstream_messages"], v["unrecoverable"], v["limited"],
        v["history_complete"]), (25, 25, 5, True, False),
       "coverage once 5 stored messages went past the limit")
