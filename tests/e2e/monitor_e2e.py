"""End-to-end tests of monitoring (SPEC §2, sync-status): the --check
thresholds, the Prometheus text format, abandoned runs, never-synced
streams and an interrupted full sync's checkpoint in the plain report.
Imported by run.py, whose @test they register:

    python3 tests/e2e/run.py --filter monitor_

Lags, failures and rate-limit windows are set by writing the test database
directly where that is simplest; auth failures, killed and interrupted
passes are real.
"""

import math
import os
import re
import signal
import subprocess
import time

import __main__ as e2e
from media_e2e import attach, media_setup

test, check, eq, Fail = e2e.test, e2e.check, e2e.eq, e2e.Fail


def synced(ctx, **cfg):
    """A seqapi source 'wa', fully synced once."""
    ctx.setup(conversations=5, messages=40, contacts=5)
    ctx.config(page_size=e2e.PS, **cfg)
    e2e.ok_pass(ctx.run("full-sync", "-j"))


def check_run(ctx, *args, want=None):
    """sync-status --check ARGS: (exit status, line); the line is one line."""
    r = ctx.run("sync-status", "--check", *args)
    lines = r.out.splitlines()
    eq(len(lines), 1, "lines printed by --check (%r)" % r.out)
    if want is not None:
        eq(r.rc, want, "exit of --check %s: %s" % (" ".join(args), r.out.strip()))
        state = ("OK", "WARNING", "CRITICAL", "UNKNOWN")[want]
        check(lines[0].startswith("MSGSYNC %s - " % state), "check line state", lines[0])
    return r.rc, lines[0]


def summary(line):
    """The check line without its performance data."""
    return line.split(" | ")[0]


def set_lag(ctx, stream, secs, source="wa"):
    ctx.sql("UPDATE sync_state s SET last_success_at = now() - interval '%d seconds' "
            "FROM source o WHERE o.id = s.source_id AND o.name = '%s' AND s.stream = '%s'"
            % (secs, source, stream))


def source_id(ctx, name="wa"):
    return ctx.sql("SELECT id FROM source WHERE name = '%s'" % name)


def status_json(ctx, name="wa"):
    r = ctx.run("sync-status", "--json")
    r.expect_rc(0)
    return r.source(name)


@test
def monitor_check_lag(ctx):
    """CRITICAL as soon as a lag exceeds --max-lag (not at twice it),
    WARNING between --warn-lag (default half of --max-lag) and --max-lag,
    OK below; the line names the stream and both figures."""
    synced(ctx)
    check_run(ctx, want=0)
    set_lag(ctx, "messages", 3601)
    rc, line = check_run(ctx, want=2)
    check(re.search(r"wa/messages lag 1h0m\d+s > 1h", summary(line)), "critical lag named",
          line)
    check("wa/contacts" not in line, "only the late stream is named", line)
    set_lag(ctx, "messages", 1900)
    rc, line = check_run(ctx, want=1)
    check(re.search(r"wa/messages lag 31m4\ds > 30m", summary(line)), "warning lag named",
          line)
    check_run(ctx, "--warn-lag", "2000", want=0)
    rc, line = check_run(ctx, "--max-lag", "1800", "--warn-lag", "600", want=2)
    check("> 30m" in summary(line), "the critical threshold in the line", line)
    check_run(ctx, "--max-lag", "2500", "--warn-lag", "1000", want=1)
    # --max-lag alone: the warning starts at half of it.
    check_run(ctx, "--max-lag", "3000", want=1)
    check_run(ctx, "--max-lag", "7200", want=0)
    # The performance data carries both thresholds.
    rc, line = check_run(ctx, "--max-lag", "900", "--warn-lag", "300", want=2)
    check(re.search(r"\| max_lag=\d+s;300;900 ", line), "perfdata thresholds", line)
    # --warn-lag goes with --check; above --max-lag it is a usage error.
    r = ctx.run("sync-status", "--warn-lag", "10")
    r.expect_rc(64)
    r = ctx.run("sync-status", "--check", "--warn-lag", "7200")
    r.expect_rc(3)
    r = ctx.run("sync-status", "--help")
    check("--warn-lag" in r.out, "--help names --warn-lag", r.out)


@test
def monitor_check_auth(ctx):
    """A rejected credential is CRITICAL at once (one failure), named."""
    synced(ctx)
    ctx.config(page_size=e2e.PS, token="not-the-token")
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(77)
    rc, line = check_run(ctx, want=2)
    check("wa: 1 failed run in a row, last error auth" in summary(line)
          or "wa: 1 failure in a row, last error auth" in summary(line),
          "auth failure named", line)
    check("not-the-token" not in line, "no secret in the line", line)


@test
def monitor_check_failures(ctx):
    """Any failure is a WARNING naming the last error's kind; --max-failures
    in a row (default 3) is CRITICAL, for a stream and for a source whose
    runs fail without a stream's (here: failed runs recorded directly)."""
    synced(ctx)
    ctx.fake.add("messages", 1)    # something new: the pass asks for a page
    ctx.fake.fault("messages", "http", status=500, times=-1)
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(69)
    rc, line = check_run(ctx, want=1)
    check("wa/messages: 1 failure in a row, last error " in summary(line),
          "one failure named with its kind", line)
    for _ in range(2):
        ctx.run("incr-sync", "-j").expect_rc(69)
    rc, line = check_run(ctx, want=2)
    check("wa/messages: 3 failures in a row" in summary(line), "three failures", line)
    check_run(ctx, "--max-failures", "4", want=1)
    ctx.fake.call("clear_faults", {})
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    check_run(ctx, want=0)
    # Runs that failed before any stream (the streams' counters stay 0).
    sid = source_id(ctx)
    ctx.sql("INSERT INTO sync_run (source_id, command, status, finished_at, error_kind,"
            " error_message) VALUES (%s, 'status-poll', 'failed', now(), 'network', 'x')"
            % sid)
    rc, line = check_run(ctx, want=1)
    check("wa: 1 failed run in a row, last error network" in summary(line),
          "a failed run of the source", line)
    ctx.sql("INSERT INTO sync_run (source_id, command, status, finished_at, error_kind,"
            " error_message) SELECT %s, 'status-poll', 'failed', now(), 'network', 'x'"
            " FROM generate_series(1, 2)" % sid)
    rc, line = check_run(ctx, want=2)
    check("wa: 3 failed runs in a row" in summary(line), "three failed runs", line)
    check_run(ctx, "--max-failures", "4", want=1)


@test
def monitor_check_warnings(ctx):
    """WARNING while a remembered rate-limit window is open (not once it
    has passed) and while rejected rows are unresolved; each named."""
    synced(ctx)
    ctx.sql("UPDATE source SET next_allowed_at = now() + interval '1 hour' WHERE name = 'wa'")
    rc, line = check_run(ctx, want=1)
    check("wa: rate limited until 20" in summary(line), "rate limit named", line)
    ctx.sql("UPDATE source SET next_allowed_at = now() - interval '1 second' WHERE name = 'wa'")
    check_run(ctx, want=0)
    ctx.sql("INSERT INTO rejected_row (source_id, stream, position, reason, raw)"
            " VALUES (%s, 'messages', '7', 'id: not a string', '{}')" % source_id(ctx))
    rc, line = check_run(ctx, want=1)
    check("wa: 1 rejected row unresolved" in summary(line), "rejected row named", line)
    ctx.sql("UPDATE rejected_row SET resolved_at = now()")
    check_run(ctx, want=0)


@test
def monitor_never_synced(ctx):
    """A stream that never succeeded shows "never synced" (not "lag -0s"),
    null lag in the JSON, and is a WARNING; a source that never ran at all
    is one WARNING for the source."""
    ctx.setup(conversations=5, messages=40, contacts=5)
    ctx.config(sources=[ctx.source_cfg(page_size=e2e.PS),
                        ctx.source_cfg(name="later", integration="int-1")])
    e2e.ok_pass(ctx.run("full-sync", "-j", "-s", "wa", "--stream", "messages"))
    t = ctx.run("sync-status")
    t.expect_rc(0)
    check("-0s" not in t.out, "no negative zero lag", t.out)
    wa = t.out.split("\nlater (")[0]
    check(wa != t.out, "both sources reported", t.out)
    lines = {m.group(1): m.group(0) for m in re.finditer(r"^  (\w+) .*$", wa, re.M)}
    for st in ("conversations", "contacts"):
        check("never synced" in lines.get(st, ""), "%s shown as never synced" % st, t.out)
    check(re.search(r"^  messages .*last success 20.*, lag \d+s", wa, re.M),
          "messages shows its lag", t.out)
    js = status_json(ctx)
    streams = {s["stream"]: s for s in js["streams"]}
    eq(streams["contacts"]["lag_seconds"], None, "JSON lag of a never-synced stream")
    check(isinstance(streams["messages"]["lag_seconds"], int), "JSON lag of messages",
          streams["messages"])
    rc, line = check_run(ctx, want=1)
    s = summary(line)
    check("wa/contacts: never synced" in s and "wa/conversations: never synced" in s,
          "never-synced streams named", line)
    check("wa/messages" not in s, "the synced stream is not named", line)
    check("later: never synced" in s and "later/" not in s,
          "a source that never ran is named once", line)


def parse_exposition(text):
    """Parses the Prometheus text format strictly enough for our output:
    returns {(name, frozenset(labels.items())): value}; fails on a sample
    without HELP and TYPE before it, a duplicate series, a bad label escape
    or a bad value."""
    helps, types, series = {}, {}, {}
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
    for n, line in enumerate(text.split("\n"), 1):
        if line == "":
            check(n == len(text.split("\n")), "empty line inside the output (line %d)" % n)
            continue
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            check(name not in helps, "second HELP for %s" % name)
            helps[name] = n
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            check(len(parts) == 4 and parts[3] in ("gauge", "counter", "untyped"),
                  "bad TYPE line %d: %r" % (n, line))
            check(parts[2] not in types, "second TYPE for %s" % parts[2])
            types[parts[2]] = n
            continue
        check(not line.startswith("#"), "stray comment line %d: %r" % (n, line))
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        check(m is not None, "bad sample line %d: %r" % (n, line))
        name, body, value = m.group(1), m.group(3) or "", m.group(4)
        check(name in helps and helps[name] < n, "%s: no HELP before line %d" % (name, n))
        check(name in types and types[name] < n, "%s: no TYPE before line %d" % (name, n))
        labels, pos = {}, 0
        while pos < len(body):
            lm = label_re.match(body, pos)
            check(lm is not None, "bad labels at line %d: %r" % (n, body))
            check(lm.group(1) not in labels, "label repeated at line %d" % n)
            labels[lm.group(1)] = re.sub(r"\\(.)", lambda x: {"n": "\n"}.get(
                x.group(1), x.group(1)), lm.group(2))
            pos = lm.end()
            if pos < len(body):
                check(body[pos] == ",", "bad label separator at line %d: %r" % (n, body))
                pos += 1
        try:
            v = float(value)
        except ValueError:
            raise Fail("bad value at line %d: %r" % (n, line))
        check(value in ("NaN", "+Inf", "-Inf") or re.match(r"^-?\d+(\.\d+)?(e[+-]?\d+)?$",
                                                           value),
              "value spelt as the format wants at line %d: %r" % (n, value))
        key = (name, frozenset(labels.items()))
        check(key not in series, "duplicate series at line %d: %r" % (n, line))
        series[key] = v
    return series


def sample(series, name, **labels):
    key = (name, frozenset(labels.items()))
    check(key in series, "no sample %s%r" % (name, labels),
          sorted(k for k in series if k[0] == name)[:12])
    return series[key]


@test
def monitor_prometheus(ctx):
    """Valid exposition text (HELP and TYPE before each metric's samples, no
    duplicate series); a sample for every configured stream, also of a
    source that never ran (lag NaN, last success 0, counts 0); per source
    the last run's status (one-hot), next_allowed_at and rejected rows."""
    ctx.setup(conversations=5, messages=40, contacts=5)
    ctx.config(sources=[ctx.source_cfg(page_size=e2e.PS),
                        ctx.source_cfg(name="later", integration="int-1")])
    e2e.ok_pass(ctx.run("full-sync", "-j", "-s", "wa"))
    ctx.sql("UPDATE source SET next_allowed_at = '2100-01-01 00:00:00+00' WHERE name = 'wa'")
    ctx.sql("INSERT INTO rejected_row (source_id, stream, position, reason, raw)"
            " VALUES (%s, 'messages', '7', 'x', '{}'), (%s, 'messages', '8', 'x', '{}')"
            % (source_id(ctx), source_id(ctx)))
    set_lag(ctx, "messages", 120)
    r = ctx.run("sync-status", "--prometheus")
    r.expect_rc(0)
    s = parse_exposition(r.out)
    for src in ("wa", "later"):
        for st in e2e.STREAMS:
            for m in ("msgsync_stream_lag_seconds", "msgsync_stream_consecutive_failures",
                      "msgsync_stream_last_success_timestamp_seconds"):
                sample(s, m, source=src, stream=st)
        for m in ("msgsync_source_next_allowed_at_seconds", "msgsync_source_rejected_rows",
                  "msgsync_source_consecutive_failures", "msgsync_source_pending_messages",
                  "msgsync_source_last_run_timestamp_seconds", "msgsync_source_enabled"):
            sample(s, m, source=src)
        for t in ("contacts", "conversations", "messages"):
            sample(s, "msgsync_rows", source=src, table=t)
    lag = sample(s, "msgsync_stream_lag_seconds", source="wa", stream="messages")
    check(120 <= lag < 180, "lag of wa/messages: %r" % lag)
    check(math.isnan(sample(s, "msgsync_stream_lag_seconds", source="later",
                            stream="messages")), "lag of a never-run stream is NaN")
    eq(sample(s, "msgsync_stream_last_success_timestamp_seconds", source="later",
              stream="messages"), 0.0, "last success of a never-run stream")
    check(sample(s, "msgsync_stream_last_success_timestamp_seconds", source="wa",
                 stream="contacts") > 1.7e9, "last success time of wa/contacts")
    eq(sample(s, "msgsync_source_next_allowed_at_seconds", source="wa"), 4102444800.0,
       "next_allowed_at of wa")
    eq(sample(s, "msgsync_source_next_allowed_at_seconds", source="later"), 0.0,
       "next_allowed_at of a source without a window")
    eq(sample(s, "msgsync_source_rejected_rows", source="wa"), 2.0, "rejected rows")
    eq(sample(s, "msgsync_rows", source="wa", table="messages"), 40.0, "stored messages")
    eq(sample(s, "msgsync_rows", source="later", table="messages"), 0.0,
       "messages of a source that never ran")
    status = {dict(k[1])["status"]: v for k, v in s.items()
              if k[0] == "msgsync_source_last_run_status" and dict(k[1])["source"] == "wa"}
    eq(status.get("ok"), 1.0, "last run ok")
    eq(sum(status.values()), 1.0, "one-hot last run status: %r" % status)
    for want in ("failed", "abandoned", "running", "partial", "interrupted"):
        check(want in status, "status %s listed" % want, status)
    later = [v for k, v in s.items()
             if k[0] == "msgsync_source_last_run_status" and dict(k[1])["source"] == "later"]
    check(later and sum(later) == 0, "a source that never ran has no last run status")
    check(sample(s, "msgsync_source_last_run_timestamp_seconds", source="wa") > 1.7e9,
          "last run time")


@test
def monitor_abandoned_run(ctx):
    """A pass killed with kill -9 leaves its run 'running'; sync-status shows
    it running while its pass holds the source's lock and abandoned once the
    lock is gone (text, JSON, a WARNING in --check), without writing; the
    next pass of that command records it as abandoned."""
    synced(ctx)
    ctx.fake.add("messages", 30)
    ctx.fake.call("gate", {"endpoint": "messages", "after": 0})
    p = ctx.start("incr-sync", "-j")
    check(ctx.fake.wait(blocked=1, timeout=30) is not None, "the pass never reached messages")
    js = status_json(ctx)
    eq(js["last_run"]["status"], "running", "status of a live run")
    check_run(ctx, want=0)
    live = js.get("running")
    os.kill(p.pid, signal.SIGKILL)
    ctx.finish(p)
    ctx.fake.call("release", {})
    e2e.wait_unlocked(ctx)
    before = ctx.sql("SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM sync_run t")
    js = status_json(ctx)
    eq(js["last_run"]["status"], "abandoned", "status of the killed run")
    eq(js["consecutive_failures"], 1, "an abandoned run counts as a failure")
    eq((live, js.get("running")), (["incr-sync"], []),
       "commands running while the pass held its lock, and after it died")
    t = ctx.run("sync-status")
    check(re.search(r"last run: incr-sync abandoned at 20", t.out), "text", t.out)
    rc, line = check_run(ctx, want=1)
    check("wa: 1 failed run in a row, last incr-sync abandoned" in summary(line),
          "check names the abandoned run", line)
    eq(ctx.sql("SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM sync_run t"), before,
       "sync_run after sync-status (nothing written)")
    eq(ctx.sql("SELECT status FROM sync_run ORDER BY id DESC LIMIT 1"), "running",
       "stored status until the next pass")
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    eq(ctx.sql("SELECT string_agg(status, ',' ORDER BY id) FROM sync_run"
               " WHERE command = 'incr-sync'"), "abandoned,ok",
       "the next pass records the killed run as abandoned")
    check_run(ctx, want=0)
    # Three killed runs in a row: CRITICAL.
    sid = source_id(ctx)
    ctx.sql("INSERT INTO sync_run (source_id, command) SELECT %s, 'full-sync'"
            " FROM generate_series(1, 3)" % sid)
    rc, line = check_run(ctx, want=2)
    check("wa: 3 failed runs in a row, last full-sync abandoned" in summary(line),
          "three abandoned runs", line)


@test
def monitor_interrupted_full_sync_text(ctx):
    """Plain sync-status shows an open full-sync walk: under way while its
    pass runs; once interrupted, its checkpoint and how many items it got,
    and that the next full-sync resumes it; gone once the walk completes."""
    ctx.setup(conversations=5, messages=3000, contacts=5)
    ctx.config(page_size={"conversations": 20, "messages": 200, "contacts": 15})
    ctx.fake.call("gate", {"endpoint": "messages", "after": 4})
    p = ctx.start("full-sync", "-j", "--stream", "messages")
    check(ctx.fake.wait(blocked=1, timeout=30) is not None, "the walk never reached page 5")
    t = ctx.run("sync-status")
    check(re.search(r"^ +full sync under way since 20\S+, at checkpoint \d+$", t.out, re.M),
          "a walk under way", t.out)
    os.kill(p.pid, signal.SIGINT)
    ctx.fake.call("release", {})
    r = ctx.finish(p, timeout=30)
    r.expect_rc(130)
    fetched = r.stream("messages")["fetched"]
    ck = ctx.state_row("messages")["full_checkpoint"]
    check(ck is not None, "a checkpoint after the interruption")
    t = ctx.run("sync-status")
    t.expect_rc(0)
    want = ("full sync interrupted since 20", ", at checkpoint %s after %d items, resumes "
            "with the next full-sync" % (ck, fetched))
    check(all(w in t.out for w in want), "the interrupted walk: %r" % (want,), t.out)
    js = status_json(ctx)
    st = [x for x in js["streams"] if x["stream"] == "messages"][0]
    eq((st["full_sync_checkpoint"], st["full_sync_fetched"]), (ck, fetched),
       "JSON checkpoint and items")
    # Killed in its next stretch: the checkpoint moves on, its items are not known.
    ctx.fake.call("gate", {"endpoint": "messages", "after": 2})
    p = ctx.start("full-sync", "-j", "--stream", "messages")
    check(ctx.fake.wait(blocked=1, timeout=30) is not None, "the resumed walk stalled")
    os.kill(p.pid, signal.SIGKILL)
    ctx.finish(p)
    ctx.fake.call("release", {})
    e2e.wait_unlocked(ctx)
    ck2 = ctx.state_row("messages")["full_checkpoint"]
    check(int(ck2) > int(ck), "the killed run moved the checkpoint: %s -> %s" % (ck, ck2))
    t = ctx.run("sync-status")
    want = ("full sync interrupted since 20", ", at checkpoint %s after %d items counted (a "
            "run that died counts none), resumes with the next full-sync" % (ck2, fetched),
            "last run: full-sync abandoned")
    check(all(w in t.out for w in want), "the walk after a kill: %r" % (want,), t.out)
    e2e.ok_pass(ctx.run("full-sync", "-j", "--stream", "messages"))
    t = ctx.run("sync-status")
    check("full sync" not in t.out, "no open walk once it completed", t.out)


ATT_ROWS = [
    # (state, size, url expires in (seconds from now, None: unknown), stored_size)
    ("pending", 1000, 1800, None),      # expires within the hour
    ("pending", 536, 3 * 3600, None),   # later
    ("pending", None, -60, None),       # already expired: refreshed, not expiring
    ("stored", 4000, None, 100),
    ("stored", None, None, 200),
    ("stored", None, None, 300),
    ("linked", 10, 600, None),          # a link kept on purpose is not "expiring"
    ("unavailable", None, None, None),
    ("failed", 99, None, None),
    ("failed", None, None, None),
]


def set_attachments(ctx, rows=ATT_ROWS, source="wa"):
    """Replaces the source's attachment rows by rows (ATT_ROWS' shape), all
    on its first message."""
    sid = source_id(ctx, source)
    vals = ", ".join(
        "(%d, '%s', %s, %s, %s)" % (
            n, st, "NULL" if size is None else size,
            "NULL" if exp is None else "now() + interval '%d seconds'" % exp,
            "NULL" if ss is None else ss)
        for n, (st, size, exp, ss) in enumerate(rows))
    ctx.sql("DELETE FROM attachment WHERE source_id = %s;"
            " INSERT INTO attachment (message_id, source_id, external_id, state, size,"
            "  url_expires_at, sha256, stored_size)"
            " SELECT m.id, m.source_id, 'f' || v.n, v.state, v.size::bigint,"
            "  v.exp::timestamptz, CASE WHEN v.state = 'stored' THEN"
            "  repeat(to_hex(v.n), 64) END, v.ss::bigint"
            " FROM (SELECT id, source_id FROM message WHERE source_id = %s"
            "  ORDER BY id LIMIT 1) m, (VALUES %s) v(n, state, size, exp, ss)"
            % (sid, sid, vals))


@test
def monitor_attachments(ctx):
    """The attachment figures of SPEC §9 per source: counts per state, bytes
    stored and pending bytes known, the pending ones whose links expire
    within the hour; in the JSON, one text line for a source that has any,
    a --check WARNING naming the source and count while such links are
    pending, and Prometheus gauges for every state of every source (0 for a
    source that never ran)."""
    ctx.setup(conversations=5, messages=40, contacts=5)
    ctx.config(sources=[ctx.source_cfg(page_size=e2e.PS),
                        ctx.source_cfg(name="later", integration="int-1")])
    e2e.ok_pass(ctx.run("full-sync", "-j", "-s", "wa"))
    set_attachments(ctx)
    want = {"pending": 3, "stored": 3, "linked": 1, "unavailable": 1, "failed": 2,
            "stored_bytes": 600, "pending_bytes": 1536, "expiring": 1}
    r = ctx.run("sync-status", "--json")
    r.expect_rc(0)
    eq(r.source("wa").get("attachments"), want, "attachments of wa")
    eq(r.source("later").get("attachments"), dict.fromkeys(want, 0),
       "attachments of a source that never ran")

    t = ctx.run("sync-status")
    t.expect_rc(0)
    wa, later = t.out.split("\nlater (")
    line = ("  attachments: 3 pending (1.5 KiB known), 3 stored (600 B), 1 linked,"
            " 1 unavailable, 2 failed, 1 expiring within an hour\n")
    check(line in wa + "\n", "the attachments line of wa", t.out)
    check("attachments" not in later, "a source without attachments has no line", t.out)

    rc, line = check_run(ctx, "-s", "wa", want=1)
    check("wa: 1 pending attachment whose link expires within an hour" in summary(line),
          "expiring attachments named", line)
    ctx.sql("UPDATE attachment SET url_expires_at = url_expires_at + interval '2 hours'"
            " WHERE external_id = 'f0'")
    rc, line = check_run(ctx, "-s", "wa", want=0)
    ctx.sql("UPDATE attachment SET url_expires_at = now() + interval '59 minutes'"
            " WHERE external_id IN ('f0', 'f1')")
    rc, line = check_run(ctx, "-s", "wa", want=1)
    check("wa: 2 pending attachments whose links expire within an hour" in summary(line),
          "two expiring attachments named", line)
    # Fetched (stored) in time: nothing to warn about.
    ctx.sql("UPDATE attachment SET state = 'stored', sha256 = repeat('c', 64),"
            " stored_size = 7 WHERE external_id IN ('f0', 'f1')")
    check_run(ctx, "-s", "wa", want=0)
    set_attachments(ctx)

    r = ctx.run("sync-status", "--prometheus")
    r.expect_rc(0)
    s = parse_exposition(r.out)
    for st in ("pending", "stored", "linked", "unavailable", "failed"):
        eq(sample(s, "msgsync_attachments", source="wa", state=st), float(want[st]),
           "msgsync_attachments of wa, %s" % st)
        eq(sample(s, "msgsync_attachments", source="later", state=st), 0.0,
           "msgsync_attachments of later, %s" % st)
    for st in ("stored", "pending"):
        eq(sample(s, "msgsync_attachment_bytes", source="wa", state=st),
           float(want[st + "_bytes"]), "msgsync_attachment_bytes of wa, %s" % st)
        eq(sample(s, "msgsync_attachment_bytes", source="later", state=st), 0.0,
           "msgsync_attachment_bytes of later, %s" % st)
    eq(sample(s, "msgsync_attachments_expiring", source="wa"), 1.0, "expiring of wa")
    eq(sample(s, "msgsync_attachments_expiring", source="later"), 0.0,
       "expiring of later")


@test
def monitor_attachments_older_store(ctx):
    """A store written before the attachment table (migration 6) does not
    break sync-status: it says what to do, as for any older schema, and once
    a pass has migrated it the figures are there (all 0 until a pass
    stores attachments)."""
    synced(ctx)
    ctx.schema_before(6)
    r = ctx.run("sync-status", "--json")
    r.expect_rc(75)
    check("the next incr-sync or full-sync" in r.err, "sync-status says what to do",
          r.desc())
    check("attachment" not in r.err, "no SQL error about the missing table", r.desc())
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    r = ctx.run("sync-status", "--json")
    r.expect_rc(0)
    eq(r.source().get("attachments", {}).get("stored"), 0, "stored after the migration")
    ctx.run("sync-status").expect_rc(0)
    ctx.run("sync-status", "--prometheus").expect_rc(0)


@test
def monitor_media_sync_run(ctx):
    """A media-sync run is a pass like the others: listed as running while
    its pass holds its lock, abandoned once the lock is gone (kill -9)."""
    synced(ctx)
    sid = source_id(ctx)
    ctx.sql("INSERT INTO sync_run (source_id, command) VALUES (%s, 'media-sync')" % sid)
    env = dict(os.environ)
    env.update(ctx.cluster.env)
    env["PGDATABASE"] = ctx.db
    # media-sync's own lock of the source (lib/db.c: LOCK_SOURCE + SYNC_CMD_MEDIA).
    holder = subprocess.Popen(["psql", "-X", "-q", "-At"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, env=env, text=True)
    ctx.procs.append(holder)
    holder.stdin.write("SELECT pg_advisory_lock(1836279668 + 4, %s);\n" % sid)
    holder.stdin.flush()
    deadline = time.monotonic() + 15
    while ctx.count("pg_locks", "locktype = 'advisory' AND granted") == 0:
        check(time.monotonic() < deadline, "the lock was never taken")
        time.sleep(0.02)
    js = status_json(ctx)
    eq((js["last_run"]["command"], js["last_run"]["status"], js["running"]),
       ("media-sync", "running", ["media-sync"]), "a live media-sync run")
    holder.stdin.close()
    holder.wait(timeout=15)
    e2e.wait_unlocked(ctx)
    js = status_json(ctx)
    eq((js["last_run"]["status"], js["running"], js["consecutive_failures"]),
       ("abandoned", [], 1), "a media-sync run whose pass died")
    rc, line = check_run(ctx, want=1)
    check("wa: 1 failed run in a row, last media-sync abandoned" in summary(line),
          "check names the abandoned media-sync run", line)


@test
def monitor_attachments_after_media_sync(ctx):
    """The figures follow what media-sync did: stored counts and bytes (each
    attachment, also where two share one content), a gone file with an
    expiring link still pending (and warned about), the JSON and the check
    agreeing with the attachment table."""
    a = os.urandom(300000)
    ff, sd = media_setup(ctx, {"a.jpg": a, "a2.jpg": a, "b.pdf": b"x" * 1000})
    ff.set(gone=["b.pdf"])
    ctx.sql("DELETE FROM attachment")
    attach(ctx, "m1", "x1", url=ff.url + "/f/a.jpg", size=len(a))
    attach(ctx, "m2", "x2", url=ff.url + "/f/a2.jpg")
    attach(ctx, "m3", "x3", url=ff.url + "/f/b.pdf", size=1000,
           expires=ctx.sql("SELECT now() + interval '20 minutes'"))
    r = ctx.run("media-sync", "-j")
    e2e.ok_pass(r, "media-sync")
    eq((r.source()["downloaded"], r.source()["deduplicated"]), (2, 1), "media-sync")
    js = status_json(ctx)
    eq(js["attachments"], {"pending": 1, "stored": 2, "linked": 0, "unavailable": 0,
                           "failed": 0, "stored_bytes": 2 * len(a), "pending_bytes": 1000,
                           "expiring": 1}, "attachments after media-sync")
    rc, line = check_run(ctx, want=1)
    check("wa: 1 pending attachment whose link expires within an hour" in summary(line),
          "the pending one named", line)
    t = ctx.run("sync-status")
    check("  attachments: 1 pending (1000 B known), 2 stored (585.9 KiB), 0 linked,"
          " 0 unavailable, 0 failed, 1 expiring within an hour\n" in t.out,
          "the text line", t.out)
