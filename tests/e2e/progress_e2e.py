"""End-to-end tests of a pass's live progress (SPEC §2): on a terminal (a
pseudo-terminal as stderr), with and without --progress/--no-progress, -q,
--json; -v's line per page; SIGUSR1's status lines.  Imported by run.py,
whose @test they register; run them with
    python3 tests/e2e/run.py --filter progress_
"""

import json
import os
import pty
import re
import signal
import struct
import subprocess
import threading
import time

import __main__ as e2e
import smseagle_e2e as sms

test, check, eq, Fail = e2e.test, e2e.check, e2e.eq, e2e.Fail

ESC = "\x1b"
# A progress line: "wa/messages: 300 fetched, 300 stored, 1234/s, 15%, 2s left".
LINE = re.compile(r"(\w+)/([\w-]+): (\d+) fetched, (?:(\d+) stored|dry run), (\d+)/s"
                  r"(?:, chats \d+/\d+)?(?:, (\d+)%)?")
PS = {"conversations": 10, "messages": 100, "contacts": 10}


class TtyResult(e2e.Result):
    """A run whose stderr (and maybe stdout) was a terminal: tty is what
    the terminal received, byte for byte (its \\n arrive as \\r\\n)."""

    def __init__(self, argv, rc, out, tty, dt):
        super().__init__(argv, rc, out, tty, dt)
        self.tty = tty


def run_tty(ctx, prog, *args, stdout_tty=False, timeout=120, env=None):
    """Runs prog with stderr on a pseudo-terminal (120 columns, 40 rows);
    stdout too with stdout_tty, else a pipe."""
    argv = ctx.argv(prog, args, None)
    master, slave = pty.openpty()
    import fcntl
    import termios
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    got = bytearray()

    def reader():
        while True:
            try:
                b = os.read(master, 65536)
            except OSError:
                return          # EIO: the last writer closed the terminal
            if not b:
                return
            got.extend(b)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    env = ctx.proc_env(dict({"TERM": "xterm"}, **(env or {})))
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                         stdout=slave if stdout_tty else subprocess.PIPE, stderr=slave,
                         env=env)
    os.close(slave)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise Fail("%s timed out" % " ".join(argv))
    t.join(timeout=30)
    os.close(master)
    res = TtyResult(argv, p.returncode, (out or b"").decode("utf-8", "replace"),
                    bytes(got).decode("utf-8", "replace"), time.monotonic() - t0)
    ctx.note(res)
    ctx.sanity(res)
    return res


def screen(text):
    """What a terminal shows after text: lines, with \\r, \\n, cursor up
    (ESC [ n A), erase to the end of the screen (ESC [ J) and of the line
    (ESC [ K).  Anything else after an ESC fails the test."""
    lines, row, col = [""], 0, 0
    i = 0
    while i < len(text):
        c = text[i]
        if c == ESC:
            m = re.match(r"\x1b\[(\d*)([AJK])", text[i:])
            check(m is not None, "unexpected escape sequence %r" % text[i:i + 10])
            n, op = int(m.group(1) or 1), m.group(2)
            if op == "A":
                row = max(0, row - n)
            elif op == "J":
                lines[row] = lines[row][:col]
                del lines[row + 1:]
            else:
                lines[row] = lines[row][:col]
            i += len(m.group(0))
            continue
        if c == "\r":
            col = 0
        elif c == "\n":
            row += 1
            if row == len(lines):
                lines.append("")
        else:
            ln = lines[row]
            ln = ln.ljust(col)
            lines[row] = ln[:col] + c + ln[col + 1:]
            col += 1
        i += 1
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def progress_lines(text):
    text = re.sub(r"\x1b\[\d*[A-Za-z]", "\n", text)
    return [m for m in (LINE.match(ln) for ln in re.split(r"[\r\n]", text)) if m]


def seqapi_setup(ctx, **kw):
    ctx.setup(conversations=30, messages=1200, contacts=25, **kw)
    ctx.config(page_size=PS)


@test
def progress_tty_area(ctx):
    """On a terminal: the redrawn lines with the percent (seqapi's
    total_count); a log line in the middle and the final summary are
    whole, and nothing of the area is left on the screen."""
    seqapi_setup(ctx)
    # A retry mid-pass: its log line must not be garbled by the area.
    ctx.fake.fault("messages", "http", status=503, times=1, after=4)
    # Pages that take 50 ms: the area, redrawn at most every 100 ms, is
    # redrawn while the 12 pages of messages come in.
    ctx.fake.call("config", {"latency": 0.05})
    r = run_tty(ctx, "full-sync", stdout_tty=True)
    r.expect_rc(0)
    e2e.assert_exact(ctx)
    lines = progress_lines(r.tty)
    streams = {(m.group(1), m.group(2)) for m in lines}
    for s in e2e.STREAMS:
        check(("wa", s) in streams, "no progress line for wa/%s on the terminal" % s,
              r.tty[-3000:])
    pct = [m for m in lines if m.group(2) == "messages" and m.group(6) is not None]
    check(pct, "no messages progress line with a percent", r.tty[-3000:])
    check(any(0 < int(m.group(6)) < 100 for m in pct),
          "no percent between 0 and 100 while the messages came in", r.tty[-3000:])
    check(ESC + "[" in r.tty, "no escape sequence: the area is not redrawn in place")
    shown = screen(r.tty)
    # Nothing of the area is left; the log line and the summary are whole.
    check(not any(LINE.search(ln) for ln in shown),
          "a progress line is left on the screen", "\n".join(shown))
    retry = [ln for ln in shown if "retrying in" in ln]
    eq(len(retry), 1, "retry log lines on the screen")
    check(retry[0].startswith("full-sync: ") and "503" in retry[0],
          "the retry log line is not whole: %r" % retry[0])
    logs = [ln for ln in shown if ln.startswith("full-sync: ")]
    check(all(re.match(r"full-sync: (applying migration \d+ \(\w+\)|cannot fetch .*"
                       r"HTTP 503; retrying in [\d.]+ s)$", ln) for ln in logs),
          "a log line on the screen is not whole", "\n".join(shown))
    summary = shown[len(logs):]
    eq(shown[:len(logs)], logs, "log lines before the summary")
    check(summary and summary[0].startswith("wa: ok"),
          "the summary does not start the rest of the screen", "\n".join(shown))
    for s in e2e.STREAMS:
        n = ctx.fake.state()[s]["count"]
        check(any(re.match(r"\s+%s\s+%d fetched: %d new" % (s, n, n), ln) for ln in summary),
              "summary line of %s missing or garbled" % s, "\n".join(shown))


@test
def progress_not_on_pipes(ctx):
    """Without a terminal (cron) no progress; --progress forces plain lines,
    even with -q and --json, and its total makes the last line 100%."""
    seqapi_setup(ctx)
    r = ctx.run("full-sync")
    r.expect_rc(0)
    check(not progress_lines(r.err) and ESC not in r.err,
          "progress without a terminal", r.desc())
    r = ctx.run("full-sync", "--restart", "--progress", "-q", "-j")
    e2e.ok_pass(r)
    check(ESC not in r.err and "\r" not in r.err,
          "escape sequences or carriage returns without a terminal", r.desc())
    done = {}
    for ln in r.err.splitlines():
        m = LINE.search(ln)
        check(m is not None, "a stderr line that is not a progress line: %r" % ln)
        check(ln.startswith("full-sync: wa/"), "plain line without the program: %r" % ln)
        if "done in" in ln:
            done[m.group(2)] = m
    eq(sorted(done), sorted(e2e.STREAMS), "streams with a last (done) line")
    st = ctx.fake.state()
    for s in e2e.STREAMS:
        eq(int(done[s].group(3)), st[s]["count"], "%s fetched in its last line" % s)
        eq(done[s].group(6), "100", "%s percent in its last line" % s)


@test
def progress_json_log_lines(ctx):
    """With JSON log lines every stderr line stays one JSON object: asked-for
    progress comes as JSON lines, and a terminal gets no area drawn."""
    seqapi_setup(ctx)
    js = {"MSGSYNC_LOG_FORMAT": "json"}
    r = ctx.run("full-sync", "--restart", "--progress", env=js)
    r.expect_rc(0)
    msgs = []
    for ln in r.err.splitlines():
        try:
            msgs.append(json.loads(ln)["message"])
        except (ValueError, KeyError):
            raise Fail("a stderr line that is not a JSON log object: %r" % ln)
    check(any(LINE.search(m) and "done in" in m for m in msgs),
          "no progress line among the JSON log lines", r.err[-2000:])
    r = run_tty(ctx, "full-sync", "--restart", env=js)
    r.expect_rc(0)
    check(ESC not in r.tty and not progress_lines(r.tty),
          "a progress area drawn between JSON log lines", r.tty[-2000:])
    r = run_tty(ctx, "full-sync", "--restart", "--progress", env=js)
    r.expect_rc(0)
    check(ESC not in r.tty, "escape sequences between JSON log lines", r.tty[-2000:])
    for ln in r.tty.replace("\r\n", "\n").splitlines():
        try:
            json.loads(ln)
        except ValueError:
            raise Fail("a terminal line that is not a JSON log object: %r" % ln)


@test
def progress_suppressed_on_tty(ctx):
    """On a terminal: --no-progress, -q and --json show none."""
    seqapi_setup(ctx)
    r = run_tty(ctx, "full-sync", "--no-progress", "--restart")
    r.expect_rc(0)
    check(not progress_lines(r.tty) and ESC not in r.tty,
          "--no-progress shows progress", r.tty[-2000:])
    check(r.out.startswith("wa: ok"), "no summary with --no-progress", r.out)
    r = run_tty(ctx, "full-sync", "-q", "--restart")
    r.expect_rc(0)
    eq(r.tty, "", "terminal output of full-sync -q")
    r = run_tty(ctx, "full-sync", "-j", "--restart")
    e2e.ok_pass(r)
    check(not progress_lines(r.tty) and ESC not in r.tty, "--json shows progress",
          r.tty[-2000:])
    # The last of --progress and --no-progress wins.
    r = run_tty(ctx, "incr-sync", "--progress", "--no-progress")
    r.expect_rc(0)
    check(not progress_lines(r.tty), "--progress --no-progress shows progress")
    r = run_tty(ctx, "incr-sync", "--no-progress", "--progress", "-q")
    r.expect_rc(0)
    check(progress_lines(r.tty), "--no-progress --progress -q shows none", r.tty[-2000:])


@test
def progress_verbose_pages(ctx):
    """-v logs one line per page (with its counts and position); the
    default level does not."""
    seqapi_setup(ctx)
    r = ctx.run("full-sync", "-v")
    r.expect_rc(0)
    st = ctx.fake.state()
    by = ctx.fake.stats()["by_endpoint"]
    for s in e2e.STREAMS:
        pages = [ln for ln in r.err.splitlines()
                 if "stream '%s': page of " % s in ln]
        eq(len(pages), by.get(s), "-v page lines of %s vs pages the fake served" % s)
        eq(by.get(s), e2e.page_count(st[s]["count"], PS[s]), "pages of %s" % s)
        first = re.search(r"page of (\d+) item\(s\): (\d+) inserted, (\d+) updated, "
                          r"\d+ unchanged; cursor '(\d+)', checkpoint '(\d+)'", pages[0])
        check(first is not None, "page line without counts and position: %r" % pages[0])
        eq(int(first.group(1)), PS[s], "items in the first %s page line" % s)
        eq(int(first.group(2)), PS[s], "inserted in the first %s page line" % s)
        eq(first.group(5), first.group(4), "checkpoint of the first page")
        eq(pages[-1].split("cursor '")[1].split("'")[0], str(st[s]["latest_seq"]),
           "cursor in the last %s page line" % s)
    ctx.fake.clear_log()
    r = ctx.run("full-sync", "--restart")
    r.expect_rc(0)
    check("page of" not in r.err, "page lines without -v", r.desc())
    r = ctx.run("full-sync", "--dry-run", "-v")
    r.expect_rc(0)
    n = len([ln for ln in r.err.splitlines() if "page of" in ln and "(dry run)" in ln])
    eq(n, sum(e2e.page_count(st[s]["count"], PS[s]) for s in e2e.STREAMS),
       "-v page lines of a dry run")


@test
def progress_sigusr1(ctx):
    """SIGUSR1 does not end a pass: at the next page boundary it prints a
    line per running stream, and the pass completes."""
    seqapi_setup(ctx)
    # The 4th messages page waits until the signal has been sent.
    ctx.fake.call("gate", {"endpoint": "messages", "after": 3})
    p = ctx.start("full-sync", "-j")
    check(ctx.fake.wait("messages", blocked=1, timeout=60) is not None,
          "full-sync never reached the gated page")
    os.kill(p.pid, signal.SIGUSR1)
    ctx.fake.call("release", {})
    r = ctx.finish(p)
    e2e.ok_pass(r, "full-sync")
    e2e.assert_exact(ctx)
    lines = [ln for ln in r.err.splitlines() if LINE.search(ln)]
    eq(len(lines), 1, "status lines after one SIGUSR1 (one stream was running)")
    m = LINE.search(lines[0])
    eq((m.group(1), m.group(2)), ("wa", "messages"), "the stream of the status line")
    check(lines[0].startswith("full-sync: "), "status line without the program")
    # Three pages were stored before the gate, the 4th fetched with it.
    eq(int(m.group(3)), 4 * PS["messages"], "fetched in the status line")
    check(ESC not in r.err, "escape sequences without a terminal", r.desc())


@test
def progress_smseagle_count(ctx):
    """SMSEagle's totals come from /messages/count/{folder}, asked only
    when progress is shown."""
    fake = sms.sms_setup(ctx, inbox=45, sent=30)
    sms.sms_config(ctx, extra="page_size = 10;")
    r = ctx.run("full-sync", "-q")
    r.expect_rc(0)
    eq([q for q in fake.requests() if q.get("endpoint") == "count"], [],
       "count requests without progress")
    fake.clear_log()
    r = ctx.run("full-sync", "--restart", "--progress")
    r.expect_rc(0)
    counts = [q["path"] for q in fake.requests() if q.get("endpoint") == "count"]
    eq(sorted(counts), sorted("/api/v2/messages/count/" + f for f in sms.FOLDERS),
       "count requests with --progress")
    done = {LINE.search(ln).group(2): LINE.search(ln) for ln in r.err.splitlines()
            if LINE.search(ln) and "done in" in ln}
    eq(sorted(done), sorted(sms.FOLDERS), "folders with a last line")
    eq(int(done["inbox"].group(3)), 45, "inbox fetched")
    eq(done["inbox"].group(6), "100", "inbox percent in its last line")


@test
def progress_telegram_chats(ctx):
    """Telegram's measure is its chat list: chats done of chats walked."""
    import telegram_e2e as tg
    tg.tg_setup(ctx)
    r = ctx.run("full-sync", "--progress", "--stream", "messages")
    r.expect_rc(0)
    last = [ln for ln in r.err.splitlines() if ln.startswith("full-sync: tg/messages: ")
            and "done in" in ln]
    eq(len(last), 1, "last lines of tg/messages")
    m = re.search(r": (\d+) fetched, (\d+) stored, \d+/s, chats 3/3, 100%, done in ", last[0])
    check(m is not None, "no chat count in %r" % last[0], r.desc())
    eq(int(m.group(1)), 6 + 4 + 9, "messages fetched")


@test
def progress_partial_says_where(ctx):
    """A full sync cut by --max-runtime says how far it got: the checkpoint
    the next full-sync resumes from (text and JSON), none once it ends."""
    seqapi_setup(ctx)
    ctx.fake.call("gate", {"endpoint": "messages", "after": 2})
    p = ctx.start("full-sync", "--max-runtime", "1")
    r = ctx.finish(p)
    ctx.fake.call("release", {})
    r.expect_rc(0)
    check(r.out.startswith("wa: partial"), "a cut full sync is not partial", r.out)
    m = re.search(r"^\s+full sync not finished: the next full-sync resumes "
                  r"from checkpoint (\d+)$", r.out, re.M)
    check(m is not None, "no line saying where the full sync resumes", r.out)
    stored = ctx.sql("SELECT full_checkpoint FROM sync_state WHERE stream ="
                     " 'messages'")
    eq(m.group(1), stored.strip(), "the checkpoint named against the stored one")
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r)
    for st in r.json["sources"][0]["streams"]:
        eq(st.get("checkpoint", "absent"), None, "%s checkpoint after a whole "
           "walk" % st["stream"])
    check("resumes from checkpoint" not in ctx.run("full-sync").out,
          "a finished full sync says it resumes")
