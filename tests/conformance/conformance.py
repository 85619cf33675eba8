#!/usr/bin/env python3
"""The conformance suite: every connector through the same matrix against
its fake, each case ending with the store equal to the fake's truth.

    python3 tests/conformance/conformance.py --top DIR [--filter S] [--seed N] [-v]

The harness is tests/e2e/run.py's (one PostgreSQL from scripts/pg-local, a
fresh database and fake per case, the binaries' sanity checks). A connector
is a fake plus an adapter, tests/conformance/adapter_<type>.py (found, not
listed; base.py says what an adapter provides). Case names are
conf_<case>_<type>. Random choices (kill points, growth) come from --seed
(default: the time), printed first, so a failure replays with --seed.

Cases whose fix is still on another branch are in EXPECTED_TO_FAIL below:
they run and report XFAIL without failing the suite; once the fix is
there they report XPASS, which fails it until the line is taken off.
"""

import argparse
import glob
import importlib
import os
import random
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from base import Fail, Skip, check, eq, h  # noqa: E402

N = 200             # messages of a connector's fake
KILLS = 10          # kill -9 that must land per connector
LOOP_TIMEOUT = 6    # seconds a pass may take against a loop or a hang

# ===========================================================================
# EXPECTED TO FAIL UNTIL MERGED -- (case, type or "*", the fix it waits for).
# The integrator removes a line when its fix lands (the case then reports
# XPASS, a failure, until then).
EXPECTED_TO_FAIL = [
    # The case sets stored rows back to pending; a stored SMSEagle MMS part
    # keeps no content and has no link (inline only, no refresh by design):
    # it becomes unavailable.  The case or the design changes (conn-a's report).
]
# ===========================================================================


def rnd_for(case, ad):
    return random.Random("%d/%s/%s" % (h.SEED, case, ad.type))


def kill(p):
    try:
        os.kill(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------
# The matrix: cases today's code passes.

def case_kill9(ad):
    """kill -9 at >= KILLS points chosen by seed (the binary held by the
    fake at its k-th request, killed there or just after the answer), the
    upstream changing between runs; then clean passes; store == truth."""
    ctx = ad.ctx
    rnd = rnd_for("kill9", ad)
    ad.start(N)
    kills, tries, points = 0, 0, []
    while kills < KILLS and tries < 3 * KILLS:
        tries += 1
        if tries > 1:
            ad.grow(rnd)
        k = rnd.randint(0, max(1, ad.span // 2))
        cmd = "incr-sync" if tries % 3 == 0 else "full-sync"
        ad.hold(k)
        p = ctx.start(cmd, "-q")
        held = ad.wait_held(p)
        late = rnd.random() < 0.5
        if held and not late:
            kill(p)             # while the request is held
            ad.release()
        else:
            ad.release()
            if held:
                kill(p)         # while its answer is on the way
        r = ctx.finish(p)
        if r.rc == -signal.SIGKILL:
            kills += 1
            points.append("%s@%d%s" % (cmd[0], k, "+" if late else ""))
        else:
            r.expect_rc(0)
        h.wait_unlocked(ctx)
        ad.assert_subset("after run %d (kill point %d)" % (tries, k))
    print("    kill9 %s: seed %d, kills at (f|i)@request %s" % (ad.type, h.SEED,
                                                              " ".join(points)))
    check(kills >= KILLS, "only %d of %d kills landed in %d runs" % (kills, KILLS, tries))
    ad.ok("full-sync")
    ad.ok("incr-sync")
    ad.truth()


def case_pg_restart(ad):
    """PostgreSQL stopped while the pass waits on its upstream: the pass
    fails with 75 (or succeeds); the next pass completes; store == truth."""
    ctx = ad.ctx
    ad.start(N)
    ad.hold(max(1, ad.span // 3))
    p = ctx.start("full-sync", "-j")
    check(ad.wait_held(p), "the pass ended before the held request")
    ctx.cluster.stop()
    try:
        ad.release()
        r = ctx.finish(p)
    finally:
        ctx.cluster.start()
    r.expect_rc((0, 75))
    if r.rc == 75:
        eq((r.source(ad.source).get("error") or {}).get("kind"), "database", "error kind")
    h.wait_unlocked(ctx)
    ad.assert_subset("after the restart")
    ad.ok("full-sync")
    ad.ok("incr-sync")
    ad.truth()


def case_5xx(ad):
    """Two 5xx answers, then success: retried, the pass succeeds."""
    ad.start(N)
    ad.fault("5xx", after=1, times=2)
    r = ad.ok("full-sync")
    tot = r.source(ad.source)["totals"].get("retries", 0)
    check(tot >= 2, "%d retries reported for two 5xx answers" % tot, r.desc())
    ad.truth()


def case_429(ad):
    """429 with Retry-After: 2 (backoff 0.01): the pass waits, then succeeds."""
    ad.start(N)
    ad.fault("429", after=1, times=1, retry_after=2)
    r = ad.ok("full-sync")
    check(r.dt >= 1.9, "the pass took %.2fs: Retry-After: 2 was not honoured" % r.dt)
    ad.truth()


def case_truncated(ad):
    """A truncated page: the pass fails cleanly (65), nothing half-written
    (the next pass, with nothing re-read by hand, ends exact)."""
    ad.require("truncate")
    ad.start(N)
    ad.ok("full-sync")
    ad.grow(rnd_for("truncated", ad))
    ad.fault("truncate", after=0, times=-1)
    r = ad.run("incr-sync")
    r.expect_rc(65)
    check((r.source(ad.source).get("error") or {}).get("kind") in ("data", "protocol"),
          "error kind", r.desc())
    ad.assert_subset("after the truncated page")
    ad.clear_faults()
    ad.ok("incr-sync")
    ad.truth()


def case_secrets(ad):
    """-vvv runs, good and failing: no secret in stdout or stderr."""
    ad.start(N // 3, secret=True)
    runs = [ad.ctx.run("full-sync", "-vvv", "-j"), ad.ctx.run("full-sync", "-vvv")]
    ad.grow(rnd_for("secrets", ad))
    ad.fault("5xx", times=-1)
    runs.append(ad.ctx.run("incr-sync", "-vvv", "-j"))
    runs.append(ad.ctx.run("incr-sync", "-vvv"))
    ad.clear_faults()
    runs.append(ad.ctx.run("incr-sync", "-vvv", "-j"))
    for r in runs[:2] + runs[4:]:
        r.expect_rc(0)
    for r in runs[2:4]:
        r.expect_rc(69)
    for r in runs:
        for s in ad.secrets():
            check(s not in r.out, "a secret (%s...) in stdout" % s[:4], r.desc())
            check(s not in r.err, "a secret (%s...) in stderr" % s[:4], r.desc())
    ad.truth()


# ---------------------------------------------------------------------------
# Cases that wait for fixes on other branches (see EXPECTED_TO_FAIL).

def case_bad_row_fail(ad):
    """on_bad_row = fail (the default): the page fails with a data error, the
    cursor stays, nothing of the page is written; the next pass stores it."""
    ad.require("bad_row")
    ad.start(N)
    ad.ok("full-sync")
    ad.grow(rnd_for("bad_row", ad))
    ad.fault("bad_row", times=1)
    r = ad.run("incr-sync")
    r.expect_rc(65)
    eq((r.source(ad.source).get("error") or {}).get("kind"), "data", "error kind")
    ad.ok("incr-sync")
    ad.truth()


def case_bad_row_quarantine(ad):
    """on_bad_row = quarantine: the row goes to rejected_row, the rest of
    the page is stored; a full pass later stores the item."""
    ad.require("bad_row")
    ad.start(N)
    ad.extra = 'on_bad_row = "quarantine";'
    ad.config()
    ad.ok("full-sync")
    ad.grow(rnd_for("bad_row", ad))
    ad.fault("bad_row", times=1)
    r = ad.ok("incr-sync")
    rej = sum(st.get("rejected", 0) for st in r.source(ad.source).get("streams", []))
    eq(rej, 1, "rejected rows in the JSON")
    eq(ad.ctx.count("rejected_row"), 1, "rows in rejected_row")
    ad.ok("full-sync")
    ad.truth()


def case_redelivered(ad):
    """An item delivered again under a new id (the same provider identity)
    in a later pass is stored once."""
    ad.require("redeliver")
    ad.start(N)
    ad.ok("full-sync")
    pid = ad.redeliver()
    ad.ok("incr-sync")
    ad.ok("full-sync")
    # An adapter whose items have no raw provider_id says which rows are the item's.
    rows = getattr(ad, "redelivered_rows", lambda p: "raw->>'provider_id' = '%s'" % p)
    eq(ad.ctx.count("message", rows(pid)), 1,
       "rows of the re-delivered item (provider id %s)" % pid)


def _loops(ad, kind):
    ad.require(kind)
    ad.start(N)
    ad.fault(kind, after=1, times=-1)
    r = ad.run("full-sync", timeout=LOOP_TIMEOUT)
    r.expect_rc(65)
    eq((r.source(ad.source).get("error") or {}).get("kind"), "protocol", "error kind")
    ad.clear_faults()
    ad.ok("full-sync")
    ad.ok("incr-sync")
    ad.truth()


def case_pagination_loop(ad):
    """A page that does not advance: a protocol error, not an endless pass."""
    _loops(ad, "loop")


def case_cursor_cycle(ad):
    """A cursor cycle A -> B -> A: a protocol error, not an endless pass."""
    _loops(ad, "cycle")


def case_empty_pages(ad):
    """Endless empty pages, each with a fresh cursor: a protocol error."""
    _loops(ad, "empty")


def case_hang_max_runtime(ad):
    """A request that hangs past http.timeout (4 s): --max-runtime 1 cuts
    it; the pass ends in time, what it did is kept, the next one completes."""
    ad.require("slow")
    ad.start(N)
    ad.config(http={"timeout": 4})
    ad.fault("slow", after=1, times=-1, delay=30)
    t0 = time.monotonic()
    r = ad.run("full-sync", "--max-runtime", "1", timeout=LOOP_TIMEOUT + 12)
    dt = time.monotonic() - t0
    check(dt < 3, "--max-runtime 1 with a hung request (http.timeout 4) ran %.1fs" % dt,
          r.desc())
    r.expect_rc(0)
    eq(r.json.get("status"), "partial", "status")
    ad.clear_faults()
    ad.config()
    ad.ok("full-sync")
    ad.truth()


def case_future_time(ad):
    """One item dated in the year 2100 is stored, but the watermark stays
    where the rest of the data puts it: later items are still fetched."""
    ad.require("future")
    ad.start(N)
    ad.ok("full-sync")
    ad.future()
    ad.ok("incr-sync")
    ad.grow(rnd_for("future", ad))
    ad.ok("incr-sync")
    ad.truth(cursor=False)


def case_outlier_id(ad):
    """One id (or seq) far beyond what the upstream holds does not move the
    cursor there: later items are still fetched."""
    ad.require("outlier")
    ad.start(N)
    ad.ok("full-sync")
    ad.outlier()
    ad.run("incr-sync").expect_rc((0, 65))
    ad.grow(rnd_for("outlier", ad))
    ad.ok("incr-sync")
    ad.truth(cursor=False)


def case_cold_start_max_runtime(ad):
    """A new source's first incr-sync longer than one pass (--max-runtime 1):
    each pass keeps its work, the walk completes over later passes."""
    ad.require("latency")
    ad.start(N)
    if ad.cold_start:       # a window that holds all the fake's data (30 days)
        ad.extra = "cold_start_days = 60;"
        ad.config()
    ad.latency(min(0.1, 1.6 / max(ad.span, 1)))
    for i in range(8):
        r = ad.run("incr-sync", "--max-runtime", "1")
        r.expect_rc(0)
        if r.json.get("status") == "ok":
            break
    else:
        raise Fail("the first walk did not complete in 8 passes of --max-runtime 1")
    ad.latency(0)
    check(i > 0, "the walk fit in one pass: the case tests nothing (raise the latency)")
    ad.truth()


# ---------------------------------------------------------------------------
# Deletions and coverage (issue 12; SPEC sections 5, 6 and 8).

DAY = 86400
PRUNE_WINDOW = 5    # days: --prune-window of the window case


def marks(ad, ext):
    """missing_since, deleted_at (as set or not) and deleted_reason of the
    stored message ext."""
    rows = ad.ctx.sql_json(
        "SELECT m.missing_since IS NOT NULL AS missing, m.deleted_at IS NOT NULL AS deleted,"
        " m.deleted_reason AS reason FROM message m JOIN source s ON s.id = m.source_id"
        " WHERE s.name = '%s' AND m.external_id = '%s'" % (ad.source, ext))
    check(len(rows) == 1, "message %s is stored %d times (want once)" % (ext, len(rows)))
    return rows[0]


def want_marks(ad, ext, missing, deleted, reason, what):
    m = marks(ad, ext)
    eq((m["missing"], m["deleted"], m["reason"]), (missing, deleted, reason),
       "%s: message %s (missing_since set, deleted_at set, deleted_reason)" % (what, ext))


def snapshot(ad):
    """Each stored message's (missing_since, deleted_at, deleted_reason)."""
    return {r["external_id"]: (r["missing_since"], r["deleted_at"], r["deleted_reason"])
            for r in ad.ctx.sql_json(
                "SELECT m.external_id, m.missing_since, m.deleted_at, m.deleted_reason"
                " FROM message m JOIN source s ON s.id = m.source_id"
                " WHERE s.name = '%s'" % ad.source)}


def others_untouched(ad, exts, before, what):
    """No stored message but exts changed its missing_since, deleted_at or
    deleted_reason since the snapshot before (deletions the provider
    reports stay as they were), none is missing or pruned."""
    now = snapshot(ad)
    bad = sorted(e for e, v in now.items() if e not in exts and (
        v != before.get(e, (None, None, None)) or v[0] is not None or v[2] == "pruned"))
    check(not bad, "%s: %d messages still upstream are marked missing or deleted"
          % (what, len(bad)), ["%s: %s" % (e, now[e]) for e in bad[:5]])


def prune_counts(r, ad):
    """{stream: (missing, pruned)} of the pass's JSON, and the sums."""
    per = {st.get("stream"): (st.get("missing", 0), st.get("pruned", 0))
           for st in r.source(ad.source).get("streams", [])}
    return per, tuple(sum(v[i] for v in per.values()) for i in (0, 1))


def want_counts(r, ad, missing, pruned, what):
    per, tot = prune_counts(r, ad)
    check(all(isinstance(v, int) for p in per.values() for v in p),
          "%s: the streams' missing/pruned are not numbers" % what, per)
    eq(tot, (missing, pruned), "%s: the streams' (missing, pruned) counters" % what)
    for i, n in ((0, missing), (1, pruned)):
        if n:
            eq(sorted(v[i] for v in per.values() if v[i]), [n],
               "%s: the %s counters of the streams (one stream's, not spread)"
               % (what, ("missing", "pruned")[i]))


def prune(ad, *args):
    r = ad.run("full-sync", "--prune", *args)
    h.ok_pass(r)
    return r


def case_prune(ad):
    """A message deleted upstream: the first full-sync --prune marks it
    missing (missing 1), the second deletes it (deleted_reason pruned,
    pruned 1); the row stays; nothing else is touched."""
    ad.require("delete")
    ad.start(N)
    ad.ok("full-sync")
    before = snapshot(ad)
    n0 = len(before)
    gone = ad.pick()
    ad.delete(gone)
    r = prune(ad)
    want_counts(r, ad, 1, 0, "first walk")
    want_marks(ad, gone, True, False, None, "after the first walk")
    others_untouched(ad, [gone], before, "after the first walk")
    r = prune(ad)
    want_counts(r, ad, 0, 1, "second walk")
    want_marks(ad, gone, True, True, "pruned", "after the second walk")
    others_untouched(ad, [gone], before, "after the second walk")
    eq(len(ad.stored_ids()), n0, "stored messages (a pruned one is kept, marked)")
    r = prune(ad)
    want_counts(r, ad, 0, 0, "third walk (nothing new)")
    want_marks(ad, gone, True, True, "pruned", "after the third walk")


def case_prune_reappear(ad):
    """A message missing after one walk comes back: the next pass clears
    missing_since; one pruned comes back: it is un-deleted."""
    ad.require("delete")
    ad.start(N)
    ad.ok("full-sync")
    before = snapshot(ad)
    a, b = ad.pick(0), ad.pick(1)
    ad.delete(a)
    ad.delete(b)
    want_counts(prune(ad), ad, 2, 0, "first walk")
    want_marks(ad, a, True, False, None, "after the first walk")
    ad.restore(a)
    ad.ok("full-sync")
    want_marks(ad, a, False, False, None, "missing, back upstream, after the next pass")
    want_marks(ad, b, True, False, None, "still missing after a pass without --prune")
    want_counts(prune(ad), ad, 0, 1, "second walk")
    want_marks(ad, a, False, False, None, "back upstream, after the second walk")
    want_marks(ad, b, True, True, "pruned", "after the second walk")
    ad.restore(b)
    ad.ok("full-sync")
    want_marks(ad, b, False, False, None, "pruned, back upstream, after the next pass")
    others_untouched(ad, [], before, "at the end")
    ad.truth(cursor=False)


def case_prune_window(ad):
    """--prune-window DAYS reconciles only messages sent in the last DAYS
    days: an old message deleted upstream is never marked, a recent one is."""
    ad.require("delete")
    ad.require("add_dated")
    ad.start(N)
    old = ad.add_dated(2 * PRUNE_WINDOW * DAY)
    new = ad.add_dated(3600)
    ad.add_dated(60)            # newer ones keep coming (the deleted are not the newest)
    ad.ok("full-sync")
    before = snapshot(ad)
    ad.delete(old)
    ad.delete(new)
    w = str(PRUNE_WINDOW)
    want_counts(prune(ad, "--prune-window", w), ad, 1, 0, "first walk")
    want_marks(ad, new, True, False, None, "recent, after the first walk")
    want_marks(ad, old, False, False, None, "older than the window, after the first walk")
    want_counts(prune(ad, "--prune-window", w), ad, 0, 1, "second walk")
    want_marks(ad, new, True, True, "pruned", "recent, after the second walk")
    want_marks(ad, old, False, False, None, "older than the window, after the second walk")
    others_untouched(ad, [new], before, "after the second walk")


def case_prune_interrupted(ad):
    """A walk that fails (5xx until retries run out) or is cut by
    --max-runtime prunes nothing; a complete one then does."""
    ad.require("delete")
    ad.require("5xx")
    ad.require("latency")
    ad.start(N)
    ad.ok("full-sync")
    before = snapshot(ad)
    gone = ad.pick()
    ad.delete(gone)
    ad.fault("5xx", after=1, times=-1)
    r = ad.run("full-sync", "--prune")
    ad.clear_faults()
    check(r.rc != 0, "full-sync --prune succeeded through endless 5xx answers", r.desc())
    others_untouched(ad, [], before, "after a failed walk")
    ad.latency(max(0.05, 3.0 / max(ad.span, 1)))
    r = ad.run("full-sync", "--prune", "--restart", "--max-runtime", "1")
    ad.latency(0)
    r.expect_rc(0)
    eq(r.json.get("status"), "partial", "status of a walk cut by --max-runtime 1")
    others_untouched(ad, [], before, "after a walk cut by --max-runtime")
    want_counts(prune(ad, "--restart"), ad, 1, 0, "a complete walk")
    want_marks(ad, gone, True, False, None, "after a complete walk")


IG_LIMIT = 20       # the Instagram messages the Graph API details per conversation


def case_prune_instagram(ad):
    """Instagram details only the newest 20 messages of a conversation:
    stored messages beyond them are never pruned, also when gone upstream;
    one of the newest 20 deleted upstream is."""
    ad.require("start_instagram")
    ad.start_instagram()
    conv = ad.instagram_conversation(15, ago=2 * 3600)
    ad.ok("full-sync")
    first = [m for m, _ in ad.messages_of(conv)]
    eq(sorted(ad.stored_ids()), sorted(first), "stored messages of the first pass")
    ad.fake.post("message", conversation=conv, n=IG_LIMIT - 10, step=10)
    ms = ad.messages_of(conv)
    beyond = [m for m, detail in ms if not detail]
    eq(len(beyond), 5, "messages beyond the newest %d upstream" % IG_LIMIT)
    check(set(beyond) <= set(first), "the old messages are not the stored ones")
    ad.ok("full-sync")
    before = snapshot(ad)
    oldest, newest = beyond[-1], ms[0][0]
    ad.delete(oldest)
    ad.delete(newest)
    want_counts(prune(ad), ad, 1, 0, "first walk")
    want_counts(prune(ad), ad, 0, 1, "second walk")
    want_marks(ad, newest, True, True, "pruned", "one of the newest %d" % IG_LIMIT)
    want_marks(ad, oldest, False, False, None, "beyond the newest %d, gone upstream"
               % IG_LIMIT)
    others_untouched(ad, [newest], before, "after two walks")


def coverage_rows(ad):
    return {r["conv"]: r for r in ad.ctx.sql_json(
        "SELECT c.external_id AS conv, v.stored_messages, v.upstream_messages,"
        " v.history_complete, v.gaps, v.unrecoverable FROM coverage v"
        " JOIN conversation c ON c.id = v.conversation_id"
        " JOIN source s ON s.id = v.source_id WHERE s.name = '%s'" % ad.source)}


def stored_by_conv(ad):
    out = {}
    for r in ad.ctx.sql_json(
            "SELECT c.external_id AS conv, m.external_id FROM message m"
            " JOIN conversation c ON c.id = m.conversation_id"
            " JOIN source s ON s.id = m.source_id WHERE s.name = '%s'" % ad.source):
        out.setdefault(r["conv"], set()).add(r["external_id"])
    return out


def check_coverage(ad, what, all_complete):
    """The coverage rows and sync-status's `coverage` say what the store
    holds: a row per conversation with messages, stored_messages as stored,
    complete only where every upstream message is stored, no gap, nothing
    unrecoverable (the fakes lose nothing); all_complete: every one."""
    rows, got, up = coverage_rows(ad), stored_by_conv(ad), ad.by_conv()
    lacking = sorted(set(got) - set(rows))
    check(not lacking, "%s: conversations with stored messages but no coverage row" % what,
          lacking[:5])
    for conv, r in sorted(rows.items()):
        eq(r["stored_messages"], len(got.get(conv, ())), "%s: %s stored_messages" % (what, conv))
        eq((r["gaps"], r["unrecoverable"]), (0, 0), "%s: %s (gaps, unrecoverable)" % (what, conv))
        if r["history_complete"]:
            lost = up.get(conv, set()) - got.get(conv, set())
            check(not lost, "%s: conversation %s is complete, but %d of its upstream messages "
                  "are not stored" % (what, conv, len(lost)), sorted(lost)[:3])
        if r["upstream_messages"] is not None:
            eq(r["upstream_messages"], len(up.get(conv, ())),
               "%s: %s upstream_messages" % (what, conv))
    if all_complete:
        inc = sorted(c for c in up if up[c] and not (rows.get(c) or {}).get("history_complete"))
        check(not inc, "%s: %d of %d conversations not complete" % (what, len(inc), len(up)),
              inc[:5])
    r = ad.ctx.run("sync-status", "--json")
    r.expect_rc(0)
    cov = r.source(ad.source).get("coverage")
    check(isinstance(cov, dict), "%s: sync-status --json has no coverage object" % what,
          r.desc())
    want = {"conversations": len(rows),
            "complete": sum(1 for v in rows.values() if v["history_complete"]),
            "gaps": 0, "unrecoverable": 0}
    eq({k: cov.get(k) for k in want}, want, "%s: sync-status --json coverage" % what)
    return rows


def case_coverage(ad):
    """Coverage after a cold start (incr-sync of a new source; seqapi's
    walks from the start) and after a full sync (complete everywhere)."""
    ad.require("by_conv")
    ad.require("add_dated")
    ad.start(N)
    conv = ad.conv_of_dated()
    ad.add_dated(4 * DAY)       # older than the cold-start window, in
    ad.add_dated(3600)          # a conversation with a message inside it
    if ad.cold_start:
        ad.extra = "cold_start_days = 2;"
        ad.config()
    ad.ok("incr-sync")
    rows = check_coverage(ad, "after a cold start", not ad.cold_start)
    if ad.cold_start:
        check(conv in rows, "after a cold start: conversation %s, read in part, has no "
              "coverage row" % conv)
        check(not rows[conv]["history_complete"], "after a cold start: conversation %s, "
              "read in part (cold_start_days 2, a message 4 days old), is complete" % conv)
    ad.ok("full-sync")
    check_coverage(ad, "after a full sync", True)
    ad.truth(cursor=False)


def case_late_seq(ad):
    """A row committed late with a lower seq (pages show it only once the
    reader's cursor has passed it) is stored exactly once by a later pass."""
    ad.require("late_hide")
    ad.start(N)
    ad.ok("full-sync")
    late = ad.late_hide()
    ad.ok("incr-sync")
    check(late not in ad.stored_ids(), "the hidden row %s is stored: the fake did not hide it"
          % late)
    ad.late_release(late)
    for i in range(3):          # a later pass re-reads the gap (the first, or soon)
        ad.ok("incr-sync")
        n = ad.stored_ids().count(late)
        check(n <= 1, "the late row %s is stored %d times" % (late, n))
        if n:
            break
    eq(n, 1, "stored copies of the late row %s after three incr-syncs" % late)
    ad.ok("full-sync")
    eq(ad.stored_ids().count(late), 1, "stored copies of the late row %s" % late)
    ad.truth()


def case_reset_past_cursor(ad):
    """The upstream restored or re-created, its new ids (or seqs) already
    past the old cursor: a protocol error (65), not a silent skip;
    full-sync --restart takes it up; the store equals the new upstream."""
    ad.require("reset_past")
    ad.start(N)
    ad.ok("full-sync")
    ad.reset_past()
    r = ad.run("incr-sync")
    r.expect_rc(65)
    eq((r.source(ad.source).get("error") or {}).get("kind"), "protocol", "error kind")
    ad.ok("full-sync", "--restart")
    ad.ok("incr-sync")
    ad.truth()


# ---------------------------------------------------------------------------
# Attachments (SPEC section 9): media-sync against each connector's fake.

def media_rows(ad):
    return ad.ctx.sql_json(
        "SELECT a.external_id, a.state, a.sha256, a.stored_size, a.attempts,"
        " a.last_error, m.external_id AS message FROM attachment a"
        " JOIN message m ON m.id = a.message_id JOIN source s ON s.id = a.source_id"
        " WHERE s.name = '%s' ORDER BY m.external_id, a.external_id" % ad.source)


def media_of(ad, ext):
    rows = [r for r in media_rows(ad) if r["message"] == ext]
    check(len(rows) == 1, "message %s has one attachment row" % ext, media_rows(ad))
    return rows[0]


def store_files(d):
    """The store's files under their final names: name -> bytes."""
    out = {}
    if not os.path.isdir(d):
        return out
    for sub in os.listdir(d):
        if sub == ".tmp":
            continue
        for f in os.listdir(os.path.join(d, sub)):
            out[f] = open(os.path.join(d, sub, f), "rb").read()
    return out


def media_consistent(ad, d, what):
    """Every file under a final name holds the content it is named after;
    every stored row has its bytes there, of its size."""
    import hashlib
    files = store_files(d)
    for name, data in files.items():
        eq(hashlib.sha256(data).hexdigest(), name, "%s: a stored file's name" % what)
    for r in media_rows(ad):
        if r["state"] == "stored":
            check(r["sha256"] in files, "%s: a stored row without its file" % what, r)
            eq(len(files[r["sha256"]]), r["stored_size"], "%s: stored_size" % what)


def media_start(ad, n_files=3, **cfg):
    ad.require("media_add")
    ad.start(N // 4)
    d = ad.media_config(**cfg)
    ad.ok("full-sync")
    return d


def content(rnd, n):
    return bytes(rnd.getrandbits(8) for _ in range(min(n, 4096))) * (n // 4096 + 1)


def case_media_download(ad):
    """Files arrive with their messages and land in the store once per
    content (two messages with the same bytes: one file); the JSON counts
    them; a second pass has nothing to do."""
    rnd = rnd_for("media", ad)
    d = media_start(ad)
    a, b = content(rnd, 70000)[:70000], content(rnd, 5000)[:5000]
    exts = [ad.media_add(a), ad.media_add(a, name="copy.jpg"), ad.media_add(b, "b.pdf",
                                                                           "application/pdf")]
    ad.ok("incr-sync")
    r = ad.ok("media-sync")
    s = r.source(ad.source)
    eq((s["downloaded"], s["deduplicated"], s["still_pending"]), (3, 1, 0),
       "downloaded, deduplicated, still_pending")
    import hashlib
    files = store_files(d)
    for ext, data in zip(exts, (a, a, b)):
        row = media_of(ad, ext)
        eq((row["state"], row["sha256"]), ("stored", hashlib.sha256(data).hexdigest()), ext)
    eq(len(files), 2, "files in the store")
    media_consistent(ad, d, "after media-sync")
    eq(ad.ok("media-sync").source(ad.source)["downloaded"], 0, "a second pass")
    ad.truth()


def case_media_refresh(ad):
    """A link that expired before media-sync ran is refreshed through the
    provider and the file stored."""
    d = media_start(ad)
    ad.require("media_expire")
    data = content(rnd_for("refresh", ad), 30000)[:30000]
    ext = ad.media_add(data)
    ad.ok("incr-sync")
    ad.media_expire()
    r = ad.ok("media-sync")
    check(r.source(ad.source)["refreshed"] >= 1, "a link refreshed", r.desc())
    eq(media_of(ad, ext)["state"], "stored", "after the refresh")
    media_consistent(ad, d, "after a refresh")


def case_media_max_bytes(ad):
    """A file larger than media.max_bytes is failed with the reason, never
    truncated; nothing of it is in the store."""
    d = media_start(ad, max_bytes=20000)
    ext = ad.media_add(content(rnd_for("max", ad), 50000)[:50000])
    ad.ok("incr-sync")
    r = ad.ok("media-sync")
    eq(r.source(ad.source)["failed"], 1, "failed")
    row = media_of(ad, ext)
    eq(row["state"], "failed", "state")
    check("max_bytes" in (row["last_error"] or ""), "the reason names max_bytes", row)
    eq(store_files(d), {}, "nothing stored")


def case_media_cut_body(ad):
    """A body cut mid-transfer leaves nothing under a final name and the
    attachment pending; the next pass stores the whole file."""
    d = media_start(ad, http={"retries": 0})
    ad.require("media_cut")
    data = content(rnd_for("cut", ad), 200000)[:200000]
    ext = ad.media_add(data)
    ad.ok("incr-sync")
    ad.media_cut(1)
    r = ad.run("media-sync")
    r.expect_rc(0)
    eq(media_of(ad, ext)["state"], "pending", "after a cut body")
    eq(store_files(d), {}, "no partial file under a final name")
    ad.ok("media-sync")
    eq(media_of(ad, ext)["state"], "stored", "the next pass")
    media_consistent(ad, d, "after the cut")


def case_media_kill9(ad):
    """kill -9 at random moments of media-sync: never a file under a final
    name that is not whole, never a stored row without its bytes; clean
    passes then store everything."""
    rnd = rnd_for("mkill", ad)
    d = media_start(ad)
    exts = [ad.media_add(content(rnd, 400000)[:400000 + i]) for i in range(4)]
    ad.ok("incr-sync")
    for i in range(6):
        p = ad.ctx.start("media-sync", "-q")
        t0 = time.monotonic()
        delay = rnd.random() * 0.3
        while time.monotonic() - t0 < delay and p.poll() is None:
            time.sleep(0.005)
        kill(p)
        r = ad.ctx.finish(p)
        r.expect_rc((0, -signal.SIGKILL))
        h.wait_unlocked(ad.ctx)
        media_consistent(ad, d, "after kill %d" % i)
        # Half of what the provider can give again is fetched anew (more
        # downloads to kill into); inline parts are kept only once.
        ad.ctx.sql("UPDATE attachment SET state = 'pending', sha256 = NULL,"
                   " stored_size = NULL WHERE state = 'stored' AND url IS NOT NULL"
                   " AND random() < 0.5")
        for name in list(store_files(d)):
            if rnd.random() < 0.5 and not ad.ctx.count(
                    "attachment", "sha256 = '%s'" % name):
                os.unlink(os.path.join(d, name[:2], name))
    ad.ok("media-sync")
    for e in exts:
        eq(media_of(ad, e)["state"], "stored", e)
    media_consistent(ad, d, "at the end")
    eq(os.listdir(os.path.join(d, ".tmp")), [], "no leftover temporary file")


def case_media_full_disk(ad):
    """A full disk (a file-size limit) stores nothing under a final name and
    no row claims bytes; with room again the file is stored."""
    import resource
    import subprocess
    d = media_start(ad)
    ext = ad.media_add(content(rnd_for("disk", ad), 300000)[:300000])
    ad.ok("incr-sync")

    def lim():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))
    pr = subprocess.run(ad.ctx.argv("media-sync", ["-j"], None), capture_output=True,
                        env=ad.ctx.proc_env(None), preexec_fn=lim, timeout=120)
    check(pr.returncode in (0, 1, 75), "exit code %d on a full disk" % pr.returncode,
          pr.stderr[-500:])
    check(media_of(ad, ext)["state"] == "pending", "the row after a full disk")
    eq(store_files(d), {}, "nothing under a final name")
    ad.ok("media-sync")
    eq(media_of(ad, ext)["state"], "stored", "with room again")
    media_consistent(ad, d, "after the full disk")


def case_media_stops(ad):
    """--max-bytes stops the pass once that many bytes are in (partial,
    exit 0, the rest pending); --max-runtime too; the next pass goes on."""
    d = media_start(ad)
    rnd = rnd_for("stops", ad)
    for i in range(3):
        ad.media_add(content(rnd, 50000)[:50000 + i])
    ad.ok("incr-sync")
    r = ad.run("media-sync", "--max-bytes", "1")
    r.expect_rc(0)
    s = r.source(ad.source)
    eq((s["status"], s["downloaded"], s["still_pending"]), ("partial", 1, 2),
       "after --max-bytes 1")
    r = ad.run("media-sync", "--max-runtime", "0.001")
    r.expect_rc(0)
    check(r.source(ad.source)["still_pending"] >= 1 or
          r.source(ad.source)["status"] == "ok", "--max-runtime", r.desc())
    ad.ok("media-sync")
    eq(ad.ctx.count("attachment", "state = 'pending'"), 0, "all stored at the end")
    media_consistent(ad, d, "after the stops")


def case_media_secrets(ad):
    """-vvv media-sync, with links expired and refreshed: no secret, and no
    token a link carries, in any output or stored row."""
    ad.require("media_add")
    ad.start(N // 4, secret=True)
    ad.media_config()
    ad.ok("full-sync")
    ext = ad.media_add(content(rnd_for("msec", ad), 10000)[:10000])
    ad.ok("incr-sync")
    try:
        ad.media_expire()
    except Skip:
        pass
    runs = [ad.ctx.run("media-sync", "-vvv", "-j"), ad.ctx.run("media-sync", "-vvv")]
    try:
        secrets = ad.secrets() + [ad.media_token()]
    except Skip:
        secrets = ad.secrets()
    dump = ad.ctx.sql("SELECT (SELECT coalesce(json_agg(a), '[]') FROM attachment a)::text"
                      " || (SELECT coalesce(json_agg(m), '[]') FROM message m)::text")
    for r in runs:
        r.expect_rc(0)
        for s in secrets:
            check(s not in r.out, "a secret (%s...) in stdout" % s[:4], r.desc())
            check(s not in r.err, "a secret (%s...) in stderr" % s[:4], r.desc())
    for s in secrets:
        check(s not in dump, "a secret (%s...) stored" % s[:4])
    eq(media_of(ad, ext)["state"], "stored", "stored")


CASES = [case_kill9, case_pg_restart, case_5xx, case_429, case_truncated, case_secrets,
         case_bad_row_fail, case_bad_row_quarantine, case_redelivered,
         case_pagination_loop, case_cursor_cycle, case_empty_pages,
         case_hang_max_runtime, case_future_time, case_outlier_id,
         case_cold_start_max_runtime,
         case_prune, case_prune_reappear, case_prune_window, case_prune_interrupted,
         case_prune_instagram, case_coverage, case_late_seq, case_reset_past_cursor,
         case_media_download, case_media_refresh, case_media_max_bytes,
         case_media_cut_body, case_media_kill9, case_media_full_disk, case_media_stops,
         case_media_secrets]


# ---------------------------------------------------------------------------

def identity_complete(ctx):
    """After any case: every contact has a person (SPEC §6), whatever the
    passes went through, since the last pass resolved them."""
    if ctx.sql("SELECT to_regclass('person') IS NOT NULL") != "t":
        return
    eq(ctx.sql_json("SELECT k.external_id FROM contact k LEFT JOIN person_link l"
                    " ON l.contact_id = k.id WHERE k.person_id IS NULL"
                    " OR l.person_id IS DISTINCT FROM k.person_id"), [],
       "contacts without a person after the case")


def adapters():
    out = []
    for f in sorted(glob.glob(os.path.join(HERE, "adapter_*.py"))):
        out.append(importlib.import_module(os.path.basename(f)[:-3]).Adapter)
    return out


def matrix():
    tests, xfail = [], {}
    for A in adapters():
        for case in CASES:
            cname = case.__name__[len("case_"):]

            def t(ctx, case=case, A=A):
                case(A(ctx))
                identity_complete(ctx)
            t.__name__ = "conf_%s_%s" % (cname, A.type)
            tests.append(t)
            for c, ty, why in EXPECTED_TO_FAIL:
                if c == cname and ty in ("*", A.type):
                    xfail[t.__name__] = why
    return tests, xfail


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", default=os.path.dirname(os.path.dirname(HERE)))
    ap.add_argument("--filter", action="append", help="run cases whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--seed", type=int, help="random seed (default: time)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    h.TOP = os.path.abspath(a.top)
    h.VERBOSE, h.KEEP = a.verbose, a.keep
    h.SEED = a.seed if a.seed is not None else int(time.time()) % 100000
    tests, xfail = matrix()
    tests = [t for t in tests if not a.filter or any(f in t.__name__ for f in a.filter)]
    if a.list:
        for t in tests:
            print(t.__name__ + (" (expected to fail until merged)" if t.__name__ in xfail
                                else ""))
        return 0
    if not tests:
        print("conformance: no case matches %s" % a.filter)
        return 1
    return h.run_suite("conformance", tests, xfail)


if __name__ == "__main__":
    sys.exit(main())
