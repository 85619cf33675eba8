"""End-to-end tests of what an operator starts from: `make demo`
(scripts/demo) (issue 11, point 8)."""

import json
import os
import re
import subprocess

import __main__ as e2e

test, check, eq = e2e.test, e2e.check, e2e.eq


# The points the demo calls out (lines starting with ">>"), in the order
# they happen.
HIGHLIGHTS = (
    r">> office-sms: only the last 7 days .*, \d+ of the gateway's 142 SMS",
    r">> \d+ messages; office-sms now has all 142 SMS",
    r">> wa: 25 new and 5 edited messages, nothing else fetched",
    r">> fb-shop: both messages sent in the same second are stored",
    r">> fb-support: the late message, .* was caught by the lookback",
    r">> wa-sales: the chat '.+' turned unread: it was read \(0 unread\), now unread \(1 unread\)",
    r">> no output, exit 0",
    r">> SMS (\d+) queued .*: outbox, ",
    r">> SMS (\d+) sent .*: sent, sending_ok, tracking pending",
    r">> SMS (\d+) delivered: sent, delivery_ok, tracking final",
    r">> tg: \d+ messages imported from the export",
    r">> tg: incr-sync read each chat only down to where the export ended: \d+ new",
)


@test
def demo_tells_the_story(ctx):
    """scripts/demo (what `make demo` runs, after a quiet build) tells the
    story in at most ~150 lines: each pass's text summary, exactly one JSON
    document, every highlight in plain words as it happens, and a final
    sync-status that is OK."""
    env = dict(os.environ)
    for k in ("MSGSYNC_CONFIG", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE"):
        env.pop(k, None)
    r = subprocess.run(["bash", os.path.join(e2e.TOP, "scripts", "demo")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, text=True, env=env, timeout=300)
    lines = r.stdout.splitlines()
    tail = "\n".join(lines[-15:])
    eq(r.returncode, 0, "demo exit status (last lines:\n%s)" % tail)
    check(len(lines) <= 160, "the demo prints %d lines, want at most ~150" % len(lines))
    check("\033[" not in r.stdout, "terminal escapes in the output of a demo not on a terminal")
    for bad in ("dependencies are missing", "Traceback", "ERROR:", "FATAL:"):
        check(bad not in r.stdout, "the demo printed %r" % bad, tail)

    # Every highlight, once, in order; the SMS is the same one throughout.
    at, sms = -1, set()
    for pat in HIGHLIGHTS:
        hits = [i for i, ln in enumerate(lines) if re.match(pat, ln)]
        eq(len(hits), 1, "lines matching %r" % pat)
        check(hits[0] > at, "%r comes out of order" % pat)
        at = hits[0]
        m = re.match(pat, lines[at])
        if m.groups():
            sms.add(m.group(1))
    eq(len(sms), 1, "the SMS ids of queued, sent and delivered")

    # Exactly one JSON document: status-poll's, with the delivery in it.
    starts = [i for i, ln in enumerate(lines) if ln.startswith(("{", "["))]
    eq(len(starts), 1, "JSON documents in the demo")
    end = next(i for i in range(starts[0], len(lines)) if lines[i] == "}")
    doc = json.loads("\n".join(lines[starts[0]:end + 1]))
    eq(doc.get("command"), "status-poll", "the JSON example's command")
    src = doc["sources"][0]
    eq((src["name"], src["status"], src["finalized"]), ("office-sms", "ok", 1),
       "the JSON example's source")

    # The final sync-status: every enabled source, and the check OK.
    i = lines.index("$ sync-status")
    for name in ("wa", "office-sms", "fb-shop", "fb-support", "wa-sales", "tg"):
        check(any(ln.startswith(name + " (") for ln in lines[i:]),
              "sync-status shows no source %r" % name)
    check(any(ln.startswith("MSGSYNC OK - ") for ln in lines[i:]),
          "sync-status --check is not OK", tail)
