"""End-to-end tests of read-only reads and honest outcomes (issue 11,
points 2 and 4): `full-sync --dry-run` and `sync-status` never migrate or
insert, also as a role that may only read (or nothing at all); database
refusals exit 78 kind `database`, an unreachable one 75, reported once and
on one clean line; an interruption is one clear line. Imported by run.py:

    python3 tests/e2e/run.py --filter ro_
"""

import os
import re
import signal

import __main__ as e2e
from smseagle_faults_e2e import free_port

test, check, eq, Fail = e2e.test, e2e.check, e2e.eq, e2e.Fail
PS = e2e.PS
STREAMS = e2e.STREAMS


def public_tables(ctx):
    return ctx.sql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables"
                   " WHERE schemaname = 'public'")


def role(ctx, name, attrs="LOGIN"):
    """A role of the shared cluster, dropped (with what it owns) at the end."""
    ctx.sql('DROP ROLE IF EXISTS "%s"' % name, db="postgres")
    ctx.sql('CREATE ROLE "%s" %s' % (name, attrs), db="postgres")

    def drop():
        ctx.sql('REASSIGN OWNED BY "%s" TO CURRENT_USER' % name)
        ctx.sql('DROP OWNED BY "%s"' % name)
        ctx.sql('DROP ROLE IF EXISTS "%s"' % name, db="postgres")
    ctx.cleanup.append(drop)
    return name


def config_as(ctx, user=None, extra="", name="ro.conf", **kw):
    """A copy of the test's configuration connecting as user (and with extra
    conninfo keywords)."""
    path = ctx.cfg
    ctx.config(name=name, **kw)
    p = os.path.join(ctx.dir, name)
    text = open(p).read()
    if user is not None:
        me = ctx.cluster.env["PGUSER"]
        check("user=%s " % me in text, "the conninfo names no user", text)
        text = text.replace("user=%s " % me, "user=%s %s" % (user, extra))
    elif extra:
        text = text.replace("connect_timeout=5", "connect_timeout=5 " + extra)
    with open(p, "w") as f:
        f.write(text)
    os.chmod(p, 0o600)
    ctx.cfg = path
    return p


def one_clean_line(msg, what):
    check("\n" not in msg.strip() and "\t" not in msg, "%s is not one line" % what, msg)
    for bad in ("FATAL:", "ERROR:", "LINE 1", "^", "  "):
        check(bad not in msg, "%s carries %r" % (what, bad), msg)


def never_synced(ctx, r, sources=("wa",)):
    r.expect_rc(0)
    got = {s["name"]: s for s in r.json["sources"]}
    eq(sorted(got), sorted(sources), "sources in sync-status")
    for name in sources:
        s = got[name]
        eq(s.get("last_run"), None, "last_run of %s" % name)
        eq(s.get("consecutive_failures"), 0, "consecutive_failures of %s" % name)
        eq(sorted(x["stream"] for x in s["streams"]), sorted(STREAMS), "streams of %s" % name)
        for st in s["streams"]:
            eq(st.get("cursor"), None, "cursor of %s/%s" % (name, st["stream"]))


# ---------------------------------------------------------------------------
# Read-only means read-only


@test
def ro_empty_database(ctx):
    """--dry-run and sync-status on a database without the schema: they
    work (every row counted as new) and leave it empty; as the owner and as
    a role that may do nothing but connect."""
    ctx.setup(conversations=10, messages=700, contacts=10)
    ctx.config(page_size=PS)
    nobody = role(ctx, "ro_nobody_" + ctx.db)
    as_nobody = config_as(ctx, nobody)
    for cfg in (ctx.cfg, as_nobody):
        r = ctx.run("full-sync", "-j", "--dry-run", cfg=cfg)
        r.expect_rc(0)
        eq(r.json.get("status"), "ok", "status of a dry run on an empty database")
        for stream in STREAMS:
            n = ctx.fake.state()[stream]["count"]
            eq(r.stream(stream).get("fetched"), n, "%s fetched" % stream)
            eq(r.stream(stream).get("inserted"), n, "%s counted as new" % stream)
        eq(public_tables(ctx), "", "tables after full-sync --dry-run")
        never_synced(ctx, ctx.run("sync-status", "-j", cfg=cfg))
        r = ctx.run("sync-status", cfg=cfg)
        r.expect_rc(0)
        check("never" in r.out, "plain sync-status does not say never synced", r.desc())
        eq(r.err, "", "stderr of sync-status on an empty database")
        eq(public_tables(ctx), "", "tables after sync-status")
    # A real pass migrates; then sync-status still reads a new source as new.
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    check(public_tables(ctx) != "", "incr-sync created no schema")


@test
def ro_select_only_role(ctx):
    """A monitoring role with SELECT only: sync-status reports, --dry-run
    counts, and neither writes anything (no source row for a source that has
    none yet, no sync_run, no cursor)."""
    ctx.setup(conversations=10, messages=700, contacts=10)
    other = ctx.new_fake("other")
    srcs = [ctx.source_cfg(page_size=PS), ctx.source_cfg("other", fake=other)]
    ctx.config(sources=srcs[:1])
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    ctx.fake.add("messages", 50)
    ro = role(ctx, "ro_select_" + ctx.db)
    ctx.sql('GRANT USAGE ON SCHEMA public TO "%s"; GRANT SELECT ON ALL TABLES IN SCHEMA'
            ' public TO "%s"' % (ro, ro))
    cfg = config_as(ctx, ro, sources=srcs)
    before = ctx.sql("SELECT (SELECT count(*) FROM source) || '/' ||"
                     " (SELECT count(*) FROM sync_run) || '/' ||"
                     " (SELECT string_agg(stream || '=' || coalesce(cursor, '-'), ','"
                     "  ORDER BY stream) FROM sync_state)")
    r = ctx.run("sync-status", "-j", cfg=cfg)
    r.expect_rc(0)
    got = {s["name"]: s for s in r.json["sources"]}
    msgs = [s for s in got["wa"]["streams"] if s["stream"] == "messages"][0]
    eq(msgs.get("cursor"), ctx.cursor("messages"), "cursor read by the read-only role")
    eq(got["wa"]["rows"]["messages"], 700, "messages read by the read-only role")
    never_synced(ctx, ctx.run("sync-status", "-j", "-s", "other", cfg=cfg), ("other",))
    r = ctx.run("full-sync", "-j", "--dry-run", cfg=cfg)
    r.expect_rc(0)
    eq(r.json.get("status"), "ok", "status of a read-only dry run")
    eq(r.stream("messages").get("fetched"), 750, "messages fetched by the dry run")
    eq(r.stream("messages", "other").get("inserted"),
       other.state()["messages"]["count"], "a source with no rows counts every row as new")
    after = ctx.sql("SELECT (SELECT count(*) FROM source) || '/' ||"
                    " (SELECT count(*) FROM sync_run) || '/' ||"
                    " (SELECT string_agg(stream || '=' || coalesce(cursor, '-'), ','"
                    "  ORDER BY stream) FROM sync_state)")
    eq(after, before, "sources/runs/cursors after the read-only dry run")


# ---------------------------------------------------------------------------
# Refusals: 78 kind database, once, on one line


def expect_refusal(ctx, cfg, what, word=None):
    r = ctx.run("incr-sync", "-j", cfg=cfg)
    r.expect_rc(78)
    j = r.json
    eq(j.get("status"), "failed", "%s: top-level status" % what)
    err = j.get("error") or {}
    eq(err.get("kind"), "database", "%s: error kind" % what)
    one_clean_line(err.get("message", ""), "%s: the JSON message" % what)
    if word:
        check(word in err["message"], "%s: the message does not say %r" % (what, word),
              err["message"])
    eq(len(r.err.strip().splitlines()), 1, "%s: lines on stderr" % what)
    one_clean_line(r.err, "%s: stderr" % what)
    r = ctx.run("sync-status", cfg=cfg)
    r.expect_rc(78)
    one_clean_line(r.err, "%s: sync-status stderr" % what)
    return r


@test
def ro_refusals_exit_78(ctx):
    """A role that may not log in, does not exist or may not connect, a
    database that does not exist, a wrong password and a missing permission
    exit 78 with kind database: retrying will not help."""
    ctx.setup(conversations=2, messages=5, contacts=2)
    srcs = [ctx.source_cfg(), ctx.source_cfg("two"), ctx.source_cfg("three")]
    ctx.config(sources=srcs)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    nologin = role(ctx, "ro_nologin_" + ctx.db, "NOLOGIN")
    expect_refusal(ctx, config_as(ctx, nologin, sources=srcs), "a NOLOGIN role",
                   "not permitted to log in")
    expect_refusal(ctx, config_as(ctx, "ro_nosuchrole", sources=srcs), "an unknown role")
    expect_refusal(ctx, config_as(ctx, db="e2e_no_such_db", sources=srcs),
                   "an unknown database", "does not exist")
    # No rights on a migrated database: permission denied (SQLSTATE 42501).
    plain = role(ctx, "ro_plain_" + ctx.db)
    expect_refusal(ctx, config_as(ctx, plain, sources=srcs), "no permission",
                   "permission denied for table schema_migrations")
    # May not connect to the database at all.
    ctx.sql('REVOKE CONNECT ON DATABASE "%s" FROM PUBLIC' % ctx.db)
    expect_refusal(ctx, config_as(ctx, plain, sources=srcs), "no CONNECT privilege")
    ctx.sql('GRANT CONNECT ON DATABASE "%s" TO PUBLIC' % ctx.db)
    # A wrong password: this role alone authenticates with one.
    pw = role(ctx, "ro_pw_" + ctx.db, "LOGIN PASSWORD 'right-pass-123456'")
    hba = ctx.sql("SHOW hba_file", db="postgres")
    text = open(hba).read()

    def restore():
        with open(hba, "w") as f:
            f.write(text)
        ctx.sql("SELECT pg_reload_conf()", db="postgres")
    ctx.cleanup.append(restore)
    with open(hba, "w") as f:
        f.write("local all %s scram-sha-256\n" % pw + text)
    ctx.sql("SELECT pg_reload_conf()", db="postgres")
    r = expect_refusal(ctx, config_as(ctx, pw, "password=wrong-pass-123456 ", sources=srcs),
                       "a wrong password", "password authentication failed")
    check("wrong-pass-123456" not in r.err, "the password in stderr", r.err)
    r = expect_refusal(ctx, config_as(ctx, pw, sources=srcs), "no password",
                       "password")
    # The right one works (as far as the missing grants let it: 78 again).
    r = ctx.run("incr-sync", "-j", cfg=config_as(ctx, pw, "password=right-pass-123456 ",
                                                  sources=srcs))
    r.expect_rc(78)
    check("permission denied" in r.json["error"]["message"], "the right password is refused",
          r.desc())


@test
def ro_unreachable_once(ctx):
    """A database that cannot be reached stops the pass before any source
    runs: 75, one line on stderr, one JSON object with the error, not one
    per source."""
    ctx.setup(conversations=2, messages=5, contacts=2)
    srcs = [ctx.source_cfg(), ctx.source_cfg("two"), ctx.source_cfg("three")]
    port = ctx.cluster.env["PGPORT"]
    ctx.config(sources=srcs)
    bad = config_as(ctx, sources=srcs)
    text = open(bad).read().replace("port=%s " % port, "port=%d " % free_port())
    with open(bad, "w") as f:
        f.write(text)
    for prog in ("incr-sync", "full-sync", "status-poll"):
        r = ctx.run(prog, "-j", cfg=bad)
        r.expect_rc(75)
        j = r.json
        eq(j.get("status"), "failed", "%s: top-level status" % prog)
        eq((j.get("error") or {}).get("kind"), "database", "%s: error kind" % prog)
        one_clean_line(j["error"].get("message", ""), "%s: the JSON message" % prog)
        eq(j.get("sources", []), [], "%s: sources of a pass that never started" % prog)
        eq(len(r.err.strip().splitlines()), 1, "%s: lines on stderr (%r)" % (prog, r.err))
        r = ctx.run(prog, cfg=bad)
        r.expect_rc(75)
        eq(r.out, "", "%s: stdout without --json" % prog)
        eq(len(r.err.strip().splitlines()), 1, "%s: lines on stderr (%r)" % (prog, r.err))
        one_clean_line(r.err, "%s: stderr" % prog)
    eq(ctx.fake.stats()["total"], 0, "requests without a database")


@test
def ro_sql_error_one_line(ctx):
    """A statement's error is its primary message (and detail), never the
    SQL and its caret."""
    ctx.setup(conversations=2, messages=5, contacts=2)
    ctx.config()
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    ctx.sql("ALTER TABLE source RENAME COLUMN next_allowed_at TO was_next_allowed_at")
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(75)
    msg = (r.json.get("error") or {}).get("message", "")
    check("next_allowed_at" in msg, "the message does not name the column", r.desc())
    one_clean_line(msg, "the JSON message")
    one_clean_line(r.err, "stderr")


# ---------------------------------------------------------------------------
# Interruptions: one clear line


def _interrupt(ctx, sig, rc, name, *args):
    ctx.setup(conversations=10, messages=600, contacts=10)
    ctx.config(page_size=PS)
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    ctx.fake.add("messages", 3000)
    ctx.fake.call("gate", {"endpoint": "messages", "after": 3})
    p = ctx.start("incr-sync", *args)
    check(ctx.fake.wait(blocked=1, timeout=30) is not None, "the pass never reached page 4")
    os.kill(p.pid, sig)
    ctx.fake.call("release", {})
    r = ctx.finish(p, timeout=30)
    r.expect_rc(rc)
    for line in (r.out + r.err).splitlines():
        check(not re.search(r"interrupted\W+interrupted", line), "a stutter", r.desc())
    lines = [x for x in r.err.splitlines() if x.strip()]
    eq(len(lines), 1, "lines on stderr")
    check(re.search(r"interrupted by %s after committing \d+ batch" % name, lines[0])
          and "the next run resumes" in lines[0], "the stderr line", r.desc())
    return r


@test
def ro_sigint_json(ctx):
    r = _interrupt(ctx, signal.SIGINT, 130, "SIGINT", "-j")
    eq(r.json.get("status"), "interrupted", "top-level status")
    s = r.source()
    eq(s.get("status"), "interrupted", "source status")
    eq((s.get("error") or {}).get("kind"), "interrupted", "error kind")


@test
def ro_sigterm_text(ctx):
    r = _interrupt(ctx, signal.SIGTERM, 143, "SIGTERM")
    check(r.out.startswith("wa: interrupted"), "the text result", r.desc())


# ---------------------------------------------------------------------------
# Top-level status (SPEC §5)


@test
def ro_top_level_status(ctx):
    """skipped when every source is skipped; failed when any failed, also
    beside a skipped one; partial at --max-runtime."""
    ctx.setup(conversations=10, messages=600, contacts=10)
    other = ctx.new_fake("other")
    srcs = [ctx.source_cfg(page_size=PS), ctx.source_cfg("other", fake=other)]
    ctx.config(sources=srcs)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    ctx.sql("UPDATE source SET next_allowed_at = now() + interval '1 hour'")
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(0)
    eq(r.json.get("status"), "skipped", "every source skipped")
    ctx.sql("UPDATE source SET next_allowed_at = NULL WHERE name = 'other'")
    # Something new, so that the pass asks for messages (a pass that finds
    # nothing new costs the status request alone).
    other.add("messages", 1)
    other.fault("messages", "http", status=401, times=-1)
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(1)      # SPEC §3: a skipped source counts as one that succeeded
    eq(r.json.get("status"), "failed", "one source failed, one skipped")
    ctx.sql("UPDATE source SET next_allowed_at = NULL")
    ctx.fake.add("messages", 3000)
    ctx.fake.call("gate", {"endpoint": "messages", "after": 1})
    p = ctx.start("incr-sync", "-j", "-s", "wa", "--max-runtime", "1")
    r = ctx.finish(p)
    ctx.fake.call("release", {})
    r.expect_rc(0)
    eq(r.json.get("status"), "partial", "stopped at --max-runtime")


@test
def ro_older_schema(ctx):
    """A schema older than the binaries is neither migrated nor misread by
    sync-status or --dry-run: they say what to do."""
    ctx.setup(conversations=2, messages=5, contacts=2)
    ctx.config()
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    top = ctx.sql("SELECT max(version) FROM schema_migrations")
    ctx.sql("CREATE TABLE saved AS SELECT * FROM schema_migrations WHERE version = %s;"
            "DELETE FROM schema_migrations WHERE version = %s" % (top, top))
    for args in (("sync-status",), ("full-sync", "--dry-run")):
        r = ctx.run(*args)
        r.expect_rc(75)
        check("the next incr-sync or full-sync" in r.err, "%s does not say what to do"
              % args[0], r.desc())
        eq(ctx.count("schema_migrations", "version = %s" % top), 0,
           "%s migrated" % args[0])
    ctx.sql("INSERT INTO schema_migrations SELECT * FROM saved")
    ctx.run("sync-status").expect_rc(0)
    ctx.run("full-sync", "--dry-run").expect_rc(0)
