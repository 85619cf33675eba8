"""End-to-end tests of full-sync --prune (SPEC §8) and of deletions the
provider reports itself: the real binaries against a real PostgreSQL and
the fake seqapi backend (tests/fake/seqapi.py).  The conformance suite runs
the same story for every source type; these pin the details."""

import __main__ as e2e
from __main__ import *  # noqa: F401,F403 -- the harness: Ctx, check, eq, test, ...

PS = {"conversations": 10, "messages": 25, "contacts": 10}


def prune_setup(ctx, messages=100):
    ctx.setup(conversations=5, messages=messages, contacts=5)
    ctx.config(page_size=PS)
    ok_pass(ctx.run("full-sync", "-j"), "full-sync")


def msg_state(ctx, ext):
    return ctx.sql_json("SELECT missing_since IS NOT NULL AS missing, deleted_at IS NOT NULL"
                        " AS deleted, deleted_reason AS reason, stream FROM message"
                        " WHERE external_id = '%s'" % ext)[0]


def prune_counts(r, stream="messages"):
    js = r.stream(stream)
    return js.get("missing"), js.get("pruned")


@test
def prune_two_walks(ctx):
    """A message gone upstream is missing after one complete walk and
    deleted (pruned) after the second; nothing else is touched; a plain
    full-sync neither marks nor reports."""
    prune_setup(ctx)
    gone = ctx.fake.edit("messages", indexes=[7], kind="purge")
    ext = "m7"
    check(ctx.count("message", "external_id = '%s'" % ext) == 1, "m7 stored")
    r = ctx.run("full-sync", "-j")
    ok_pass(r, "full-sync")
    check("missing" not in r.stream("messages"), "a plain full-sync reports no 'missing'")
    eq(ctx.count("message", "missing_since IS NOT NULL"), 0, "plain full-sync marks nothing")
    r = ctx.run("full-sync", "--prune", "-j")
    ok_pass(r, "full-sync")
    eq(prune_counts(r), (1, 0), "messages missing/pruned after the first prune walk")
    eq(prune_counts(r, "contacts"), (0, 0), "contacts missing/pruned")
    eq(msg_state(ctx, ext), {"missing": True, "deleted": False, "reason": None,
                             "stream": "messages"}, "m7 after one walk")
    seq1 = ctx.sql("SELECT seq FROM message WHERE external_id = 'm7'")
    r = ctx.run("full-sync", "--prune", "-j")
    ok_pass(r, "full-sync")
    eq(prune_counts(r), (0, 1), "messages missing/pruned after the second prune walk")
    eq(msg_state(ctx, ext), {"missing": True, "deleted": True, "reason": "pruned",
                             "stream": "messages"}, "m7 after two walks")
    check(ctx.sql("SELECT seq FROM message WHERE external_id = 'm7'") != seq1,
          "pruning gives the row a new seq (a change readers see)")
    eq(ctx.count("message", "deleted_at IS NOT NULL OR missing_since IS NOT NULL"), 1,
       "only m7 is marked")
    r = ctx.run("full-sync", "--prune", "-j")
    ok_pass(r, "full-sync")
    eq(prune_counts(r), (0, 0), "a pruned message is not counted again")
    check(gone, "the fake purged m7")


@test
def prune_reappear(ctx):
    """A message seen again clears missing_since, and a pruned deleted_at;
    an incremental pass that sees it is enough."""
    prune_setup(ctx)
    ctx.fake.edit("messages", indexes=[3, 4], kind="purge")
    ok_pass(ctx.run("full-sync", "--prune", "-j"), "full-sync")
    ok_pass(ctx.run("full-sync", "--prune", "-j"), "full-sync")
    eq(ctx.count("message", "deleted_reason = 'pruned'"), 2, "two pruned")
    ctx.fake.edit("messages", indexes=[3], kind="restore")
    ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    eq(msg_state(ctx, "m3"), {"missing": False, "deleted": False, "reason": None,
                              "stream": "messages"}, "m3 seen again")
    eq(msg_state(ctx, "m4")["reason"], "pruned", "m4 stays pruned")
    # Missing once, then back before the second walk: never deleted.
    ctx.fake.edit("messages", indexes=[9], kind="purge")
    ok_pass(ctx.run("full-sync", "--prune", "-j"), "full-sync")
    eq(msg_state(ctx, "m9")["missing"], True, "m9 missing")
    ctx.fake.edit("messages", indexes=[9], kind="restore")
    r = ctx.run("full-sync", "--prune", "-j")
    ok_pass(r, "full-sync")
    eq(msg_state(ctx, "m9"), {"missing": False, "deleted": False, "reason": None,
                              "stream": "messages"}, "m9 seen again")
    eq(prune_counts(r), (0, 0), "nothing missing or pruned")


@test
def prune_interrupted_prunes_nothing(ctx):
    """A walk cut short (--max-runtime, a failure) prunes nothing; the walk
    it resumes is not whole either; the next whole walk prunes."""
    prune_setup(ctx, messages=200)
    ctx.fake.edit("messages", indexes=[150], kind="purge")
    ctx.fake.fault("messages", "http", status=500, times=-1, after=2)
    r = ctx.run("full-sync", "--prune", "-j")
    r.expect_rc(69)
    eq(ctx.count("message", "missing_since IS NOT NULL"), 0, "a failed walk marks nothing")
    ctx.fake.call("clear_faults", {})
    r = ctx.run("full-sync", "--prune", "-j")
    ok_pass(r, "full-sync")
    eq(ctx.count("message", "missing_since IS NOT NULL"), 0,
       "a walk resumed from a checkpoint marks nothing")
    check("nothing pruned" in r.err, "the resumed walk says why nothing was pruned", r.desc())
    r = ctx.run("full-sync", "--prune", "-j")
    ok_pass(r, "full-sync")
    eq(prune_counts(r), (1, 0), "the whole walk finds m150 missing")


@test
def prune_window(ctx):
    """--prune-window DAYS reconciles only messages sent in the last DAYS
    days; older ones are neither marked nor read."""
    prune_setup(ctx)
    new = "m%d" % ctx.fake.add("messages", 1, age_days=2)["indexes"][0]
    old = "m%d" % ctx.fake.add("messages", 1, age_days=60)["indexes"][0]
    ctx.fake.add("messages", 1)     # the newest row stays: latest_seq holds
    ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    ctx.fake.edit("messages", ids=[old, new], kind="purge")
    r = ctx.run("full-sync", "--prune", "--prune-window", "30", "-j")
    ok_pass(r, "full-sync")
    eq(msg_state(ctx, new)["missing"], True, "the recent deleted message is missing")
    eq(msg_state(ctx, old)["missing"], False, "the old one is outside the window")
    eq(prune_counts(r), (1, 0), "one missing")


@test
def prune_usage(ctx):
    ctx.setup()
    ctx.config(page_size=PS)
    for args in (["incr-sync", "--prune"], ["full-sync", "--prune-window", "3"],
                 ["full-sync", "--prune", "--dry-run"],
                 ["full-sync", "--prune", "--prune-window", "x"]):
        r = ctx.run(*args)
        r.expect_rc(64)


@test
def upstream_deletion_reason(ctx):
    """A deletion the provider reports (seqapi's deleted: true) is stored
    with deleted_reason 'upstream'."""
    prune_setup(ctx)
    ctx.fake.edit("messages", indexes=[5], kind="delete")
    ok_pass(ctx.run("incr-sync", "-j"))
    eq(msg_state(ctx, "m5"), {"missing": False, "deleted": True, "reason": "upstream",
                              "stream": "messages"}, "m5 deleted upstream")
    ctx.fake.add("messages", 1)
    ok_pass(ctx.run("incr-sync", "-j"))
    eq(ctx.count("message", "deleted_reason IS NOT NULL"), 1, "one deletion")


@test
def prune_migration_backfill(ctx):
    """Migration 5 on rows stored before it: each message gets the stream
    that stores it and a deletion reported earlier its reason, so the next
    pruning walk reconciles old rows too."""
    prune_setup(ctx)
    ctx.fake.edit("messages", indexes=[5], kind="delete")
    ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    ctx.schema_before(5)
    ctx.fake.edit("messages", indexes=[8], kind="purge")
    r = ctx.run("full-sync", "--prune", "-j")
    ok_pass(r, "full-sync")
    eq(ctx.count("message", "stream IS DISTINCT FROM 'messages'"), 0,
       "messages without their stream")
    eq(msg_state(ctx, "m5")["reason"], "upstream", "an earlier deletion's reason")
    eq(prune_counts(r), (1, 0), "the old rows are reconciled")


@test
def prune_newest_row_gone(ctx):
    """A seqapi backend that removes its newest row outright looks
    restored (latest_seq below the cursor): the pass stops with a protocol
    error, and full-sync --restart --prune takes it up and reconciles."""
    prune_setup(ctx)
    newest = ctx.sql("SELECT external_id FROM message ORDER BY (raw->>'seq')::bigint DESC"
                     " LIMIT 1")
    ctx.fake.edit("messages", ids=[newest], kind="purge")
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(65)
    eq(r.source()["error"]["kind"], "protocol", "error kind")
    r = ctx.run("full-sync", "--restart", "--prune", "-j")
    ok_pass(r, "full-sync")
    eq(prune_counts(r), (1, 0), "the restarted walk finds it missing")
    ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    r = ctx.run("full-sync", "--prune", "-j")
    ok_pass(r, "full-sync")
    eq(prune_counts(r), (0, 1), "the next walk prunes it")
    eq(msg_state(ctx, newest)["reason"], "pruned", "%s pruned" % newest)
