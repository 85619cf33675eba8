"""End-to-end tests of the configuration as an operator meets it (issue 11):
every error of a file in one run, "did you mean", disabled sources'
credentials left alone, sync-status without any upstream secret, --json
errors as JSON, JSON log lines that are valid UTF-8 from the first line on,
and the example configuration. Imported by run.py, whose @test they
register; run them with  python3 tests/e2e/run.py --filter config_
"""

import json
import os
import re

import __main__ as e2e

test, check, eq, Fail = e2e.test, e2e.check, e2e.eq, e2e.Fail

HERE = os.path.dirname(os.path.abspath(__file__))


class SmsFake(e2e.Fake):
    SCRIPT = os.path.join(os.path.dirname(HERE), "fake", "smseagle.py")


def head(ctx, log=""):
    """The global part of a test configuration."""
    return ('database = { conninfo = "%s"; };\n'
            'http = { timeout = 10; connect_timeout = 5; retries = 1; backoff = 0.01; };\n'
            'log = { level = "info"; %s };\n' % (ctx.cluster.conninfo(ctx.db), log))


def disabled_sources(ctx):
    """Disabled sources of every type whose credentials are all missing."""
    ctx.env["MSGSYNC_E2E_UNSET"] = ""
    return [
        '  { name = "off-wa"; type = "seqapi"; enabled = false; url = "http://127.0.0.1:9";\n'
        '    integration_id = "x"; token_file = "%s/missing.token"; }' % ctx.dir,
        '  { name = "off-uni"; type = "unipile"; enabled = false; url = "http://127.0.0.1:9";\n'
        '    account_id = "a"; token_env = "MSGSYNC_E2E_UNSET"; }',
        '  { name = "off-sms"; type = "smseagle"; enabled = false; url = "http://127.0.0.1:9"; }',
        '  { name = "off-fb"; type = "facebook"; enabled = false; page_id = "1";\n'
        '    token_file = "%s/fb.token"; app_secret_file = "%s/fb.secret"; }' % (ctx.dir, ctx.dir),
        '  { name = "off-tg"; type = "telegram"; enabled = false; tdlib_dir = "%s/tg";\n'
        '    api_id = 1; }' % ctx.dir,
    ]


def error_lines(res, prog):
    """The "FILE:LINE: message" lines a command wrote on stderr (text logs)."""
    out = []
    for line in res.err.splitlines():
        check(line.startswith(prog + ": "), "stderr line without '%s: '" % prog, res.desc())
        out.append(line[len(prog) + 2:])
    return out


def json_lines(res):
    """Every stderr line: one JSON object of valid UTF-8 (Fail otherwise)."""
    raw = res.raw_err if hasattr(res, "raw_err") else res.err.encode()
    objs = []
    for line in raw.split(b"\n"):
        if not line:
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Fail("stderr line is not valid UTF-8 (%s): %r" % (e, line[:200]))
        try:
            o = json.loads(text)
        except ValueError as e:
            raise Fail("stderr line is not JSON (%s): %r" % (e, text[:300]))
        check(isinstance(o, dict) and isinstance(o.get("message"), str),
              "a JSON log line without a message", text[:300])
        objs.append(o)
    return objs


def run_raw(ctx, prog, *args, env=None, cfg=None):
    """ctx.run, keeping stderr's bytes (the harness decodes with 'replace')."""
    import subprocess
    argv = ctx.argv(prog, args, cfg)
    r = subprocess.run(argv, capture_output=True, env=ctx.proc_env(env), timeout=60,
                       stdin=subprocess.DEVNULL)
    res = e2e.Result(argv, r.returncode, r.stdout.decode("utf-8", "replace"),
                     r.stderr.decode("utf-8", "replace"), 0)
    res.raw_err = r.stderr
    ctx.sanity(res)
    return res


def error_object(res, cmd, kind, rc):
    """stdout is exactly one JSON object: the error that stopped cmd (SPEC §5)."""
    res.expect_rc(rc)
    lines = [ln for ln in res.out.splitlines() if ln.strip()]
    eq(len(lines), 1, "lines of JSON on stdout")
    j = res.json
    eq(j.get("command"), cmd, "JSON command")
    eq(j.get("status"), "failed", "JSON status")
    eq(j.get("sources"), [], "JSON sources")
    check(isinstance(j.get("error"), dict), "no JSON error object", res.desc())
    eq(j["error"].get("kind"), kind, "JSON error.kind")
    check(isinstance(j["error"].get("message"), str) and j["error"]["message"],
          "JSON error.message empty", res.desc())
    check(isinstance(j.get("errors"), list) and j["errors"] and
          j["errors"][0] == j["error"]["message"],
          "JSON errors must list the message first", res.desc())
    if cmd == "sync-status":
        check(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", j.get("generated_at", "")),
              "sync-status error without generated_at", res.desc())
    else:
        check(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", j.get("started_at", "")),
              "no started_at", res.desc())
        check(isinstance(j.get("duration_ms"), int) and j["duration_ms"] >= 0,
              "no duration_ms", res.desc())
    return j


# ---------------------------------------------------------------------------

@test
def config_disabled_sources_unchecked(ctx):
    """A disabled source's credentials (token_file, token_env, app_secret_file,
    api_hash_file) are neither read nor required: the enabled source runs.
    Selected with --source, a disabled source may run: then they are."""
    ctx.setup()
    ctx.fake.add("messages", 3)
    ctx.config(sources=[ctx.source_cfg()] + disabled_sources(ctx))
    j = e2e.ok_pass(ctx.run("incr-sync", "--json"), "incr-sync")
    eq([s["name"] for s in j["sources"]], ["wa"], "sources run")
    e2e.assert_exact(ctx)

    r = ctx.run("incr-sync", "-s", "off-wa", "-s", "off-tg").expect_rc(78)
    lines = error_lines(r, "incr-sync")
    eq(len(lines), 2, "errors of the selected disabled sources")
    check("cannot read token_file '%s/missing.token'" % ctx.dir in lines[0], lines[0])
    check("source 'off-tg' needs exactly one of 'api_hash_file', 'api_hash_env'"
          in lines[1], lines[1])

    # Their keys are still checked.
    ctx.config(sources=[ctx.source_cfg(),
                        '  { name = "off"; type = "seqapi"; enabled = false;\n'
                        '    url = "http://127.0.0.1:9"; integration_id = 5;\n'
                        '    tokn_file = "/x"; }'])
    r = ctx.run("incr-sync").expect_rc(78)
    lines = error_lines(r, "incr-sync")
    eq(len(lines), 2, "errors of a disabled source's keys")
    check(lines[0].endswith("'integration_id' must be a string, not an integer"), lines[0])
    check(lines[1].endswith("unknown key 'tokn_file' in source 'off' "
                            "(did you mean 'token_file'?)"), lines[1])


@test
def config_all_errors_at_once(ctx):
    """Every error of a file in one run, one "FILE:LINE: message" line each,
    in the order found, exit 78 once; unknown keys with a guess."""
    ctx.setup(fake=False)
    cfg = ctx.config(raw=(
        'databse = { conninfo = "x"; };\n'                                    # 1
        'http = { timeout = "30"; retrys = 2; };\n'                           # 2
        'sync = { jobs = 0; };\n'                                             # 3
        'log = { levl = "info"; };\n'                                         # 4
        'sources = (\n'                                                       # 5
        '  { name = "wa"; type = "seqapi"; url = "http://127.0.0.1:9";\n'    # 6
        '    integration_id = "i"; tokn_file = "/x"; },\n'                    # 7
        '  { name = "wa"; type = "smseagel"; },\n'                            # 8
        '  { name = "fb"; type = "facebook";\n'                               # 9
        '    token_file = "%s/none.token"; } );\n' % ctx.dir))                 # 10
    r = ctx.run("incr-sync").expect_rc(78)
    want = [
        "1: unknown key 'databse' in the top level (did you mean 'database'?)",
        "2: 'timeout' must be an integer, not a string",
        "2: unknown key 'retrys' in 'http' (did you mean 'retries'?)",
        "3: 'jobs' must be between 1 and 256, not 0",
        "4: unknown key 'levl' in 'log' (did you mean 'level'?)",
        "7: unknown key 'tokn_file' in source 'wa' (did you mean 'token_file'?)",
        "6: source 'wa' needs exactly one of 'token', 'token_file', 'token_env'",
        "8: duplicate source name 'wa' (first at line 6)",
        "8: source 'wa': unknown type 'smseagel' (did you mean 'smseagle'?)",
        "9: source 'fb' has no 'page_id' (required for type facebook)",
        "10: cannot read token_file '%s/none.token'" % ctx.dir,
    ]
    got = error_lines(r, "incr-sync")
    eq(len(got), len(want), "error lines\n    " + "\n    ".join(got))
    for g, w in zip(got, want):
        check(g.startswith(cfg + ":" + w), "got %r, want %r" % (g, cfg + ":" + w))
    eq(r.out, "", "stdout")

    # The same for sync-status, which reads no token: the rest is checked.
    r = ctx.run("sync-status").expect_rc(78)
    got = error_lines(r, "sync-status")
    eq(len(got), len(want) - 1, "sync-status error lines\n    " + "\n    ".join(got))
    check(not any("none.token" in g for g in got), "sync-status read a token file", *got)


@test
def config_status_reads_no_secret(ctx):
    """sync-status needs no upstream secret: token files that are missing,
    token_env unset, api_hash_file and app_secret_file missing, an inline
    token in a file others can read: it reports all the same. Unknown keys
    are still errors."""
    ctx.setup()
    ctx.fake.add("messages", 2)
    ctx.config()
    e2e.ok_pass(ctx.run("incr-sync", "--json"))
    wa = ctx.source_cfg().replace(os.path.join(ctx.dir, "wa.token"),
                                  os.path.join(ctx.dir, "gone.token"))
    ctx.env["MSGSYNC_E2E_UNSET"] = ""
    mon = ctx.config(name="monitor.conf", mode=0o644, raw=head(ctx) + "sources = (\n%s\n);\n" % ",\n".join([
        wa,
        '  { name = "uni"; type = "unipile"; url = "http://127.0.0.1:9";\n'
        '    account_id = "a"; token_env = "MSGSYNC_E2E_UNSET"; }',
        '  { name = "fb"; type = "facebook"; page_id = "1"; token = "inline-token-1";\n'
        '    app_secret_file = "%s/fb.secret"; }' % ctx.dir,
        '  { name = "tg"; type = "telegram"; tdlib_dir = "%s/tg"; api_id = 1;\n'
        '    api_hash_file = "%s/tg.api_hash"; }' % (ctx.dir, ctx.dir)]))
    r = ctx.run("sync-status", "--json", cfg=mon).expect_rc(0)
    eq(sorted(s["name"] for s in r.json["sources"]), ["fb", "tg", "uni", "wa"],
       "sources reported")
    r = ctx.run("sync-status", cfg=mon).expect_rc(0)
    check("wa" in r.out, "plain sync-status names the source", r.desc())
    r = ctx.run("sync-status", "--check", cfg=mon)
    check(r.rc in (0, 1, 2) and "UNKNOWN" not in r.out, "--check could not look", r.desc())
    r = ctx.run("sync-status", "--prometheus", cfg=mon).expect_rc(0)
    # The passes still read and check them all.
    r = ctx.run("incr-sync", cfg=mon).expect_rc(78)
    eq(len(error_lines(r, "incr-sync")), 5, "errors of the pass")

    bad = ctx.config(name="typo.conf", raw=head(ctx) + "sources = (\n%s\n);\n" %
                     wa.replace("token_file", "tokenfile"))
    r = ctx.run("sync-status", "--json", cfg=bad)
    error_object(r, "sync-status", "config", 78)
    check("unknown key 'tokenfile' in source 'wa' (did you mean 'token_file'?)"
          in r.json["error"]["message"], r.desc())


@test
def config_json_errors(ctx):
    """--json: an error that stops the command before any source runs
    (configuration, usage, unknown --source, database) is one JSON object on
    stdout with the exit code unchanged; sync-status --json too; --check
    says UNKNOWN (3), --prometheus prints nothing."""
    ctx.setup()
    cfg = ctx.config(raw=head(ctx) + 'sources = (\n%s\n);\nsync = { jobz = 2; };\n'
                     % ctx.source_cfg().replace("integration_id", "integration"))
    for prog in ("incr-sync", "full-sync", "status-poll"):
        r = ctx.run(prog, "--json")
        j = error_object(r, prog, "config", 78)
        eq(len(j["errors"]), 3, "errors in the JSON")
        check(all(e.startswith(cfg + ":") for e in j["errors"]), r.desc())
        check(any("did you mean 'integration_id'?" in e for e in j["errors"]), r.desc())
        check(any("did you mean 'jobs'?" in e for e in j["errors"]), r.desc())
        # Also on stderr, one line each (cron mails it).
        eq(len(error_lines(r, prog)), 3, "stderr lines")
    r = ctx.run("sync-status", "--json")
    error_object(r, "sync-status", "config", 78)
    r = ctx.run("sync-status", "--check").expect_rc(3)
    eq(len(r.out.splitlines()), 1, "--check lines")
    check(r.out.startswith("MSGSYNC UNKNOWN - " + cfg + ":") and
          r.out.rstrip().endswith("(and 2 more configuration errors)"), r.desc())
    r = ctx.run("sync-status", "--prometheus").expect_rc(78)
    eq(r.out, "", "--prometheus stdout on a configuration error")

    # A missing file, a syntax error: one error each.
    r = ctx.run("incr-sync", "--json", cfg=os.path.join(ctx.dir, "nonexistent.conf"))
    error_object(r, "incr-sync", "config", 78)
    syn = ctx.config(name="syntax.conf", raw="sync = { jobs = ; };\n")
    r = ctx.run("incr-sync", "--json", cfg=syn)
    j = error_object(r, "incr-sync", "config", 78)
    check(j["error"]["message"].startswith(syn + ":1: "), r.desc())

    # Usage errors, --json before or after the bad option; unknown --source.
    ctx.config()
    for args in (("--json", "--max-runtime", "soon"), ("--bogus", "--json"),
                 ("-jq", "extra")):
        r = ctx.run("incr-sync", *args)
        error_object(r, "incr-sync", "config", 64)
    r = ctx.run("sync-status", "--json", "--max-lag", "5")
    error_object(r, "sync-status", "config", 64)
    r = ctx.run("incr-sync", "--json", "-s", "nosuch")
    j = error_object(r, "incr-sync", "config", 64)
    check("no source named 'nosuch'" in j["error"]["message"], r.desc())

    # The database down: still one JSON object, exit 75.
    down = ctx.config(name="down.conf", raw=(
        'database = { conninfo = "host=127.0.0.1 port=9 dbname=x connect_timeout=2"; };\n'
        'sources = (\n%s\n);\n' % ctx.source_cfg()))
    r = ctx.run("incr-sync", "--json", cfg=down).expect_rc(75)
    eq(len([ln for ln in r.out.splitlines() if ln.strip()]), 1, "JSON lines")
    eq(r.json.get("status"), "failed", "status with the database down")
    r = ctx.run("sync-status", "--json", cfg=down)
    error_object(r, "sync-status", "database", 75)


@test
def config_json_log_lines(ctx):
    """log.format = "json": every stderr line is one JSON object of valid
    UTF-8, also for the configuration's own errors and before the file is
    read (MSGSYNC_LOG_FORMAT); a long message is cut between characters and
    invalid bytes become U+FFFD."""
    ctx.setup()
    # An error message longer than its buffer, a 2-byte character at every
    # possible cut, then invalid bytes in a value.
    for pad in range(3):
        raw = (head(ctx, 'format = "json";') +
               'sources = ( { name = "wa"; type = "%s%s"; } );\n' % ("x" * pad, "\u00e9" * 400))
        ctx.config(raw=raw)
        r = run_raw(ctx, "incr-sync").expect_rc(78)
        objs = json_lines(r)
        eq(len(objs), 1, "log lines")
        m = objs[0]["message"]
        check("unknown type" in m and m.endswith("\u00e9") and "\ufffd" not in m,
              "message cut inside a character: %r" % m[-40:])
        eq(objs[0].get("level"), "error", "level")
        eq(objs[0].get("prog"), "incr-sync", "prog")
    p = os.path.join(ctx.dir, "msgsync.conf")
    with open(p, "wb") as f:
        f.write(head(ctx, 'format = "json";').encode() +
                b'sources = ( { name = "wa"; type = "bad\xff\xfe\xc3"; } );\n')
    r = run_raw(ctx, "incr-sync").expect_rc(78)
    objs = json_lines(r)
    check("bad\ufffd\ufffd\ufffd'" in objs[0]["message"], objs[0]["message"])

    # Before the file is read: MSGSYNC_LOG_FORMAT.
    env = {"MSGSYNC_LOG_FORMAT": "json"}
    r = run_raw(ctx, "incr-sync", cfg=os.path.join(ctx.dir, "nonexistent.conf"), env=env)
    r.expect_rc(78)
    eq(len(json_lines(r)), 1, "log lines for a missing file")
    syn = ctx.config(name="syntax.conf", raw="sync = { jobs = ; };\n")
    r = run_raw(ctx, "incr-sync", cfg=syn, env=env).expect_rc(78)
    eq(len(json_lines(r)), 1, "log lines for a syntax error")
    r = run_raw(ctx, "incr-sync", "--bogus", env=env).expect_rc(64)
    eq(len(json_lines(r)), 1, "log lines for a usage error")
    r = run_raw(ctx, "sync-status", "--bogus", env=env).expect_rc(64)
    eq(len(json_lines(r)), 1, "sync-status log lines for a usage error")

    # A whole pass, verbose, with a failing source.
    ctx.fake.add("messages", 5)
    ctx.fake.fault("messages", "http", status=500, times=-1)
    ctx.config(log={"format": "json", "level": "debug"})
    r = run_raw(ctx, "incr-sync", "-vv")
    r.expect_rc((1, 69))
    objs = json_lines(r)
    check(len(objs) >= 2, "a failing verbose pass logs lines", r.desc())


@test
def config_example_works(ctx):
    """scripts/msgsync.conf.example: exactly one enabled source, which works
    once its url and token are set; the other types are there, disabled;
    no max_runtime cuts a first full-sync by hand short."""
    ctx.cluster.createdb(ctx.db)
    fake = ctx.new_fake(kind=SmsFake, inbox=7, sent=3)
    with open(os.path.join(e2e.TOP, "scripts", "msgsync.conf.example")) as f:
        text = f.read()
    m = re.search(r"^\s*max_runtime\s*=\s*([0-9.]+)\s*;", text, re.M)
    check(m is None or float(m.group(1)) == 0, "the example sets max_runtime %s" %
          (m and m.group(1)))
    for t in ("seqapi", "smseagle", "facebook", "unipile", "telegram"):
        check(re.search(r'type\s*=\s*"%s"' % t, text), "no %s source in the example" % t)
    tok = ctx.token_file(fake.token, "office-sms.token")
    subst = (('conninfo = "dbname=msgsync"', 'conninfo = "%s"' % ctx.cluster.conninfo(ctx.db)),
             ('url = "https://192.168.0.100"', 'url = "%s"' % fake.url),
             ('token_file = "/etc/msgsync/office-sms.token"', 'token_file = "%s"' % tok))
    for old, new in subst:
        eq(text.count(old), 1, "occurrences of %r in the example" % old)
        text = text.replace(old, new)
    cfg = ctx.config(raw=text, mode=0o640)

    r = ctx.run("sync-status", "--json").expect_rc(0)
    enabled = [s["name"] for s in r.json["sources"] if s.get("enabled")]
    eq(enabled, ["office-sms"], "enabled sources of the example")
    j = e2e.ok_pass(ctx.run("full-sync", "--json"), "full-sync")
    eq([s["name"] for s in j["sources"]], ["office-sms"], "sources run")
    fetched = sum(st["fetched"] for st in j["sources"][0]["streams"])
    check(fetched >= 10, "full-sync of the example fetched %d of 10 messages" % fetched)
    e2e.ok_pass(ctx.run("incr-sync", "--json"), "incr-sync")
    r = ctx.run("sync-status", "--check", cfg=cfg)
    check(r.rc in (0, 1) and r.out.startswith("MSGSYNC "), "--check on the example", r.desc())
