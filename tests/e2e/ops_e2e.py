"""End-to-end tests of what an operator starts from: `make demo`
(scripts/demo), the cron and systemd examples (scripts/crontab.example,
scripts/systemd/) and what `make install` puts beside the programs
(issue 11, points 8 and 9)."""

import configparser
import json
import os
import re
import shutil
import subprocess

import __main__ as e2e

test, check, eq = e2e.test, e2e.check, e2e.eq

PROGS = ("incr-sync", "status-poll", "full-sync", "sync-status", "media-sync")
UNITS = os.path.join("scripts", "systemd")

# The points the demo calls out (lines starting with ">>"), in the order
# they happen.
HIGHLIGHTS = (
    r">> office-sms: only the last 7 days .*, \d+ of the gateway's 142 SMS",
    r">> \d+ messages; office-sms now has all 142 SMS",
    r">> wa: 25 new and 5 edited messages, nothing else fetched",
    r">> wa: message m\d+ carries receipt.png: attachment pending, its link stored without",
    r">> the photo \(\d+ bytes\) is stored once, named by its SHA-256",
    r">> fb-shop: both messages sent in the same second are stored",
    r">> fb-support: the late message, .* was caught by the lookback",
    r">> wa-sales: the chat '.+' turned unread: it was read \(0 unread\), now unread \(1 unread\)",
    r">> no output, exit 0",
    r">> SMS (\d+) queued .*: outbox, ",
    r">> SMS (\d+) sent .*: sent, sending_ok, tracking pending",
    r">> SMS (\d+) delivered: sent, delivery_ok, tracking final",
    r">> message_status_history keeps each status .*: reserved -> sending_ok -> delivery_ok",
    r">> person \d+ is one human on WhatsApp \(wa-sales\) and SMS \(office-sms\)",
    r">> sync-search: web-search syntax",
    r">> tg: \d+ messages imported from the export",
    r">> tg: incr-sync read each chat only down to where the export ended: \d+ new",
)


@test
def demo_tells_the_story(ctx):
    """scripts/demo (what `make demo` runs, after a quiet build) tells the
    story in at most ~170 lines: each pass's text summary, exactly one JSON
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
    check(len(lines) <= 180, "the demo prints %d lines, want at most ~170" % len(lines))
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

    # Exactly one JSON document: status-poll's, with the delivery in it
    # (jq -c: the figures of its source on one line).
    starts = [i for i, ln in enumerate(lines) if ln.startswith(("{", "["))]
    eq(len(starts), 1, "JSON documents in the demo")
    src = json.loads(lines[starts[0]])
    eq((src["name"], src["finalized"]), ("office-sms", 1), "the JSON example's source")
    check("status-poll" in lines[starts[0] - 1], "the JSON example's command",
          lines[starts[0] - 1])

    # The final sync-status: every enabled source, and the check OK.
    i = lines.index("$ sync-status")
    for name in ("wa", "office-sms", "fb-shop", "fb-support", "wa-sales", "tg"):
        check(any(re.match(r"%s\b(?!-)" % re.escape(name), ln) for ln in lines[i:]),
              "sync-status shows no source %r" % name)
    check(any(ln.startswith("MSGSYNC OK - ") for ln in lines[i:]),
          "sync-status --check is not OK", tail)


def cron_jobs():
    """(schedule, user, command) of each job of scripts/crontab.example."""
    jobs = []
    with open(os.path.join(e2e.TOP, "scripts", "crontab.example")) as f:
        for ln in f:
            ln = ln.rstrip("\n")
            if not ln.strip() or ln.lstrip().startswith("#") or \
                    re.match(r"^[A-Z_]+=", ln):
                continue
            fields = ln.split(None, 6)
            check(len(fields) == 7, "crontab.example: not a job: %r" % ln)
            check("%" not in fields[6], "crontab.example: an unescaped %% in %r" % ln)
            jobs.append((" ".join(fields[:5]), fields[5], fields[6]))
    return jobs


def cron_env():
    env = {}
    with open(os.path.join(e2e.TOP, "scripts", "crontab.example")) as f:
        for ln in f:
            m = re.match(r"^([A-Z_]+)=(.*)$", ln.rstrip("\n"))
            if m:
                env[m.group(1)] = m.group(2)
    return env


def first_command(cmd):
    """The first msgsync program and its options in a shell command line."""
    m = re.search(r"\b(%s)((?: -[-\w]+(?: \d+)?)*)" % "|".join(PROGS), cmd)
    check(m, "no msgsync command in %r" % cmd)
    return m.group(1) + m.group(2)


def units():
    """{file name: ConfigParser} of scripts/systemd/."""
    d = os.path.join(e2e.TOP, UNITS)
    got = {}
    for name in sorted(os.listdir(d)):
        cp = configparser.ConfigParser(strict=False, interpolation=None,
                                       comment_prefixes=("#", ";"))
        cp.optionxform = str
        with open(os.path.join(d, name)) as f:
            # Repeated keys (SystemCallFilter=) are legal in unit files.
            text = re.sub(r"\\\n", " ", f.read())
        seen, out = {}, []
        for ln in text.splitlines():
            m = re.match(r"^(\w+)=", ln)
            if m:
                seen[m.group(1)] = seen.get(m.group(1), 0) + 1
                if seen[m.group(1)] > 1:
                    ln = "%s#%d=%s" % (m.group(1), seen[m.group(1)], ln[len(m.group(0)):])
            elif ln.startswith("["):
                seen = {}
            out.append(ln)
        cp.read_string("\n".join(out))
        got[name] = cp
    return got


def exec_command(unit):
    cmd = unit["Service"]["ExecStart"]
    check(cmd.startswith("/usr/local/bin/"), "ExecStart=%s" % cmd)
    return cmd[len("/usr/local/bin/"):]


@test
def systemd_units_complete(ctx):
    """scripts/systemd/: a service and a timer for incr-sync (every five
    minutes), status-poll, media-sync (every five minutes, after incr-sync),
    a nightly full-sync and the --check alert (with
    its OnFailure= hook); the pass services can write their TDLib session
    (StateDirectory=msgsync under ProtectSystem=strict) and show
    PGPASSFILE; systemd-analyze verify (where systemd is installed) has
    nothing to say about them."""
    u = units()
    want = {"msgsync-incr": "incr-sync -q", "msgsync-status-poll": "status-poll -q",
            "msgsync-full": "full-sync -q", "msgsync-check": "sync-status --check",
            "msgsync-media": "media-sync -q"}
    for base, cmd in want.items():
        svc, tim = u.get(base + ".service"), u.get(base + ".timer")
        check(svc is not None and tim is not None, "no %s.service and .timer" % base)
        check(exec_command(svc).startswith(cmd), "%s.service runs %r, want %r..." % (
            base, exec_command(svc), cmd))
        s = svc["Service"]
        eq((s.get("Type"), s.get("User"), s.get("ProtectSystem")),
           ("oneshot", "msgsync", "strict"), "%s.service Type, User, ProtectSystem" % base)
        envs = [v for k, v in s.items() if k.split("#")[0] == "Environment"]
        check("MSGSYNC_CONFIG=/etc/msgsync/msgsync.conf" in envs and
              "PGPASSFILE=/etc/msgsync/pgpass" in envs,
              "%s.service Environment=: %s" % (base, envs))
        if base != "msgsync-check":
            eq(s.get("StateDirectory"), "msgsync", "%s.service StateDirectory" % base)
        t = tim["Timer"]
        eq(t.get("Unit"), base + ".service", "%s.timer Unit" % base)
        check(t.get("OnCalendar"), "%s.timer has no OnCalendar" % base)
        eq(tim["Install"].get("WantedBy"), "timers.target", "%s.timer WantedBy" % base)
    eq(u["msgsync-incr.timer"]["Timer"]["OnCalendar"], "*:0/5", "incr-sync's schedule")
    eq(u["msgsync-media.timer"]["Timer"]["OnCalendar"], "*:2/5", "media-sync's schedule")
    check(re.match(r"^\*-\*-\* \d\d:\d\d(:\d\d)?$",
                   u["msgsync-full.timer"]["Timer"]["OnCalendar"]),
          "full-sync is not nightly: %s" % u["msgsync-full.timer"]["Timer"]["OnCalendar"])
    eq(u["msgsync-check.service"]["Unit"].get("OnFailure"), "msgsync-alert@%n.service",
       "msgsync-check.service OnFailure")
    check("msgsync-alert@.service" in u, "no msgsync-alert@.service")
    # The same commands, with the same options, as the crontab.
    eq(sorted(first_command(exec_command(u[b + ".service"])) for b in want),
       sorted(first_command(c) for _, _, c in cron_jobs()),
       "the systemd services' commands and the crontab's")

    analyze = shutil.which("systemd-analyze")
    if not analyze:
        return
    # Verified as installed, with the programs of this tree in ExecStart=.
    d = os.path.join(ctx.dir, "units")
    os.makedirs(d)
    for name in u:
        with open(os.path.join(e2e.TOP, UNITS, name)) as f:
            text = f.read().replace("/usr/local/bin/", e2e.TOP + "/")
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    paths = [os.path.join(d, n) for n in sorted(u)]
    paths.append(os.path.join(d, "msgsync-alert@msgsync-check.service.service"))
    shutil.copy(os.path.join(d, "msgsync-alert@.service"), paths[-1])
    r = subprocess.run([analyze, "verify", "--man=no"] + paths, capture_output=True,
                       text=True, timeout=120, cwd=d)
    eq((r.returncode, r.stderr.strip()), (0, ""), "systemd-analyze verify")


@test
def cron_schedule_runs(ctx):
    """Each job of scripts/crontab.example, run as cron would (sh -c, its
    environment), against a real source: incr-sync, media-sync, status-poll
    and the nightly full-sync print nothing on success; the check mails nothing
    while all is well or after one failure (a warning), and mails its line
    and the report once passes failed --max-failures times in a row."""
    ctx.setup(messages=50)
    with open(ctx.config(), "a") as f:
        f.write('media = { dir = "%s"; };\n' % os.path.join(ctx.dir, "media"))
    jobs = cron_jobs()
    sched = {first_command(c).split()[0]: (s, u, c) for s, u, c in jobs}
    eq(sorted(sched), sorted(PROGS), "the crontab's programs")
    for prog, (s, u, _) in sched.items():
        eq(u, "msgsync", "the user of %s" % prog)
    eq(sched["incr-sync"][0], "*/5 * * * *", "incr-sync's schedule")
    eq(sched["media-sync"][0], "2-59/5 * * * *", "media-sync's schedule")
    check(re.match(r"^\d+ \d+ \* \* \*$", sched["full-sync"][0]),
          "full-sync is not nightly: %s" % sched["full-sync"][0])
    env = ctx.proc_env(None)
    env.update({k: v for k, v in cron_env().items() if k not in ("PATH", "SHELL")})
    env["PATH"] = e2e.TOP + os.pathsep + env.get("PATH", "")
    env["MSGSYNC_CONFIG"] = ctx.cfg

    def cron(prog):
        r = subprocess.run(["sh", "-c", sched[prog][2]], capture_output=True, text=True,
                           env=env, timeout=120, stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout + r.stderr

    for prog in ("incr-sync", "media-sync", "status-poll", "full-sync", "sync-status"):
        eq(cron(prog), (0, ""), "cron's %s on success (what cron would mail)" % prog)
    eq(ctx.count("message"), 50, "messages stored by the crontab's passes")
    ctx.fake.stop()                     # the upstream is gone
    rc, out = cron("incr-sync")
    check(rc != 0 and "wa" in out, "a failed incr-sync -q says so: %r" % out)
    eq(cron("sync-status"), (0, ""), "the check after one failure (a warning)")
    for _ in range(2):
        cron("incr-sync")
    rc, out = cron("sync-status")
    check(out.startswith("MSGSYNC CRITICAL"), "the check's mail after 3 failures: %r" % out)
    check(re.search(r"^wa\b(?!-)", out.split("\n", 1)[-1], re.M),
          "the check's mail has no report: %r" % out)


@test
def install_puts_examples_in_docdir(ctx):
    """make install: the example configuration, the crontab and the systemd
    units in $(PREFIX)/share/doc/msgsync, the units running the programs
    from $(BINDIR)."""
    root = os.path.join(ctx.dir, "root")
    r = subprocess.run(["make", "--no-print-directory", "-s", "-o", "all", "install",
                        "DESTDIR=" + root, "PREFIX=/opt/ms"], cwd=e2e.TOP,
                       capture_output=True, text=True, timeout=120)
    eq(r.returncode, 0, "make install (%s)" % r.stderr.strip())
    doc = os.path.join(root, "opt", "ms", "share", "doc", "msgsync")
    for f in ("msgsync.conf.example", "crontab.example"):
        check(os.path.isfile(os.path.join(doc, f)), "%s not installed" % f)
    want = sorted(os.listdir(os.path.join(e2e.TOP, UNITS)))
    eq(sorted(os.listdir(os.path.join(doc, "systemd"))), want, "the installed units")
    for name in want:
        with open(os.path.join(doc, "systemd", name)) as f:
            text = f.read()
        check("/usr/local/bin/" not in text, "%s still runs /usr/local/bin" % name)
        m = re.search(r"^ExecStart=(\S+)", text, re.M)
        if m and name != "msgsync-alert@.service":
            check(m.group(1).startswith("/opt/ms/bin/"), "%s: ExecStart=%s" % (name, m.group(1)))
