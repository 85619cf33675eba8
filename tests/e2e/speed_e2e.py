"""End-to-end tests of issue 11's speed work (point 10): what made the
figures of make bench move must keep every guarantee.  Discovered by run.py
like every *_e2e.py."""

import __main__ as e2e
from __main__ import *  # noqa: F401,F403 -- the harness: Ctx, check, eq, test, ...


def _sessions(ctx):
    """Sessions the test database has seen so far (PostgreSQL 14+)."""
    return int(ctx.sql("SELECT sessions FROM pg_stat_database WHERE datname = "
                       "current_database()"))


@test
def speed_shared_connections(ctx):
    # Six sources, two workers: each worker's connection serves its sources
    # in turn, also after one of them failed in the middle of a page.
    ids = ["int-%d" % k for k in range(6)]
    ctx.setup(conversations=3, messages=40, contacts=4, integrations=ids)
    ctx.config(sources=[ctx.source_cfg(name="s%d" % k, integration=i, page_size=PS)
                        for k, i in enumerate(ids)], sync={"jobs": 2})
    # One page of messages of some source has a row that cannot be stored:
    # that source fails with its page rolled back, the others go on.
    ctx.fake.fault("messages", "bad_id", times=1)
    s0 = _sessions(ctx)
    r = ctx.run("full-sync", "-j")
    r.expect_rc(1)      # one source failed, the others succeeded
    s1 = _sessions(ctx)
    # The reading psql above ended one session; the pass opened two.
    check(s1 - s0 <= 3, "sessions opened by a pass over six sources with "
          "sync.jobs = 2: %d, want at most 2 (+1 for the reading psql)" % (s1 - s0 - 1))
    failed = [s for s in r.json["sources"] if s["status"] != "ok"]
    eq(len(failed), 1, "sources failed by the bad row")
    eq(failed[0]["error"]["kind"], "data", "kind of the failure")
    bad = failed[0]["name"]
    for k, i in enumerate(ids):
        if "s%d" % k != bad:
            assert_exact(ctx, source="s%d" % k, integration=i)
    eq(ctx.count("message m JOIN source s ON s.id = m.source_id",
                 "s.name = '%s'" % bad), 0, "messages of the failed source")
    eq(ctx.count("sync_run", "status = 'running'"), 0, "runs left running")
    ok_pass(ctx.run("full-sync", "-j"))
    for k, i in enumerate(ids):
        assert_exact(ctx, source="s%d" % k, integration=i)
    eq(ctx.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"), "0",
       "advisory locks left after the passes")


@test
def speed_noop_touch(ctx):
    # A no-op incremental pass: one request per source, no transaction per
    # stream, yet the pass is recorded and no cursor moves.
    ctx.setup(conversations=5, messages=50, contacts=5)
    ctx.config(page_size=PS)
    ok_pass(ctx.run("full-sync", "-j"))
    ok_pass(ctx.run("incr-sync", "-j"))
    before = {s: ctx.state_row(s) for s in STREAMS}
    ctx.sql("SELECT pg_sleep(0.01)")
    ctx.fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    ok_pass(r)
    eq(ctx.fake.stats()["total"], 1, "requests of a no-op pass")
    for s in STREAMS:
        after = ctx.state_row(s)
        eq(after["cursor"], before[s]["cursor"], "%s cursor" % s)
        check(after["last_sync_at"] > before[s]["last_sync_at"],
              "%s last_sync_at moves on a no-op pass" % s, before[s], after)
        check(after["last_success_at"] > before[s]["last_success_at"],
              "%s last_success_at moves on a no-op pass" % s)
        eq(r.stream(s).get("cursor_after"), after["cursor"], "%s cursor_after" % s)
    # A reset backend is still noticed with nothing new to fetch.
    ctx.fake.call("reset_seq", {"keep": 3, "streams": ["contacts"]})
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(65)
    check("reset" in r.err, "a reset backend is reported", r.desc())
    eq(ctx.cursor("contacts"), before["contacts"]["cursor"], "contacts cursor after a reset")


@test
def speed_broken_connection_replaced(ctx):
    # One worker, two sources: the first one's connection is cut while it
    # waits for the upstream; it fails, and the second gets a connection of
    # its own instead of the broken one.
    ctx.setup(conversations=3, messages=30, contacts=3, integrations=["int-a", "int-b"])
    ctx.config(sources=[ctx.source_cfg(name="wa", integration="int-a", page_size=PS),
                        ctx.source_cfg(name="wb", integration="int-b", page_size=PS)],
               sync={"jobs": 1})
    ctx.fake.call("gate", {"endpoint": "status", "after": 0})
    p = ctx.start("full-sync", "-j")
    check(ctx.fake.wait(blocked=1, timeout=30) is not None, "the pass never asked for the status")
    eq(ctx.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
               "datname = current_database() AND application_name = 'msgsync'"), "1",
       "msgsync connections cut")
    ctx.fake.call("release", {})
    r = ctx.finish(p)
    r.expect_rc(1)
    eq(r.source("wa").get("status"), "failed", "status of the source whose connection was cut")
    eq((r.source("wa").get("error") or {}).get("kind"), "database", "its error kind")
    eq(r.source("wb").get("status"), "ok", "status of the next source")
    assert_exact(ctx, source="wb", integration="int-b")
    ok_pass(ctx.run("full-sync", "-j"))
    assert_exact(ctx, source="wa", integration="int-a")
    assert_exact(ctx, source="wb", integration="int-b")
