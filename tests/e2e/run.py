#!/usr/bin/env python3
"""The end-to-end harness: the real binaries against a real PostgreSQL and
fake upstreams (tests/fake/). The tests are in tests/e2e/<connector>_e2e.py
(and badrows_e2e.py), found by name and registered with @test; the shared
helpers (Ctx, Fake, assert_exact, ...) are here.

    python3 tests/e2e/run.py --top /work/main [--filter SUBSTR] [--keep] [-v]

Starts one throwaway PostgreSQL with scripts/pg-local (stopped at the end,
also on failure); every test gets a fresh database, a fresh fake and its own
config file (chmod 600). Prints one line per test and, last,
"e2e: N passed, N failed". Exit status 1 if any test failed.

ASAN_OPTIONS / UBSAN_OPTIONS and the rest of the environment pass through to
the binaries, so a sanitized build is tested the same way.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(os.path.dirname(HERE), "fake", "seqapi.py")
# The fakes' modules, for what the tests share with them (fakefiles.SECRET).
sys.path.insert(0, os.path.dirname(FAKE))

TOP = None
ROOT = None          # temp dir of this run
PG = None            # the shared cluster
VERBOSE = False
KEEP = False
SEED = None
BIN_TIMEOUT = 60

STREAMS = ("conversations", "messages", "contacts")


class Fail(Exception):
    pass


def check(cond, msg, *ctx):
    if not cond:
        raise Fail(msg + "".join("\n    " + str(c) for c in ctx))


def eq(got, want, what):
    if got != want:
        raise Fail("%s: got %r, want %r" % (what, got, want))


# ---------------------------------------------------------------------------
# PostgreSQL

class Cluster:
    """A pg-local cluster in DIR."""

    def __init__(self, path):
        self.dir = path
        self.env = {}

    def pg_local(self, cmd, check_rc=True):
        r = subprocess.run([os.path.join(TOP, "scripts", "pg-local"), cmd, self.dir],
                           capture_output=True, text=True, timeout=120)
        if check_rc and r.returncode != 0:
            raise RuntimeError("pg-local %s %s failed (%d): %s" %
                               (cmd, self.dir, r.returncode, r.stderr.strip()))
        return r

    def start(self):
        r = self.pg_local("start")
        for line in r.stdout.splitlines():
            m = re.match(r"export (PG\w+)=(.*)$", line.strip())
            if m:
                v = m.group(2)
                if v.startswith("'") and v.endswith("'"):
                    v = v[1:-1].replace("'\\''", "'")
                self.env[m.group(1)] = v
        for k in ("PGHOST", "PGPORT", "PGUSER"):
            if k not in self.env:
                raise RuntimeError("pg-local start printed no %s: %r" % (k, r.stdout))

    def stop(self):
        return self.pg_local("stop", check_rc=False)

    def conninfo(self, db):
        return "host=%s port=%s user=%s dbname=%s connect_timeout=5" % (
            self.env["PGHOST"], self.env["PGPORT"], self.env["PGUSER"], db)

    def psql(self, db, sql, timeout=30, check_rc=True):
        env = dict(os.environ)
        env.update(self.env)
        env["PGDATABASE"] = db
        r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, env=env, timeout=timeout)
        if check_rc and r.returncode != 0:
            raise Fail("psql failed: %s\n    %s" % (sql, r.stderr.strip()))
        return r.stdout

    def createdb(self, db):
        self.psql("postgres", 'DROP DATABASE IF EXISTS "%s"' % db)
        self.psql("postgres", 'CREATE DATABASE "%s"' % db)


# ---------------------------------------------------------------------------
# The fake

class Fake:
    """A fake upstream (tests/fake/*.py) started for one test."""
    SCRIPT = FAKE

    def __init__(self, ctx, name="fake", **opts):
        self.ctx = ctx
        self.token = opts.pop("token", "e2e-token-%s" % name)
        self.integrations = opts.pop("integrations", ["int-1"] if self.SCRIPT == FAKE else [])
        pf = os.path.join(ctx.dir, name + ".port")
        args = [sys.executable, self.SCRIPT, "--port-file", pf, "--token", self.token,
                "--exit-with-parent"]
        for i in self.integrations:
            args += ["--integration", i]
        for k, v in opts.items():
            flag = "--" + k.replace("_", "-")
            if v is True:
                args.append(flag)
            elif isinstance(v, (list, tuple)):
                for x in v:             # a repeatable flag
                    args += [flag, str(x)]
            elif v is not False and v is not None:
                args += [flag, str(v)]
        self.log = open(os.path.join(ctx.dir, name + ".log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not os.path.exists(pf):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("fake did not start (see %s.log)" % name)
            time.sleep(0.01)
        self.port = int(open(pf).read())
        self.url = "http://127.0.0.1:%d" % self.port

    def call(self, path, body=None, timeout=60):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/_control/" + path, data=data,
                                     method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise Fail("fake control %s: HTTP %d %s" % (path, e.code, e.read()[:300]))

    def fault(self, endpoint, kind, **kw):
        kw.update(endpoint=endpoint, kind=kind)
        return self.call("fault", kw)

    def add(self, stream, n, **kw):
        kw.update(stream=stream, n=n)
        return self.call("add", kw)

    def edit(self, stream, **kw):
        kw.update(stream=stream)
        return self.call("edit", kw)

    def requests(self, endpoint=None):
        q = "requests" + ("?endpoint=" + endpoint if endpoint else "")
        return self.call(q)["requests"]

    def stats(self):
        return self.call("stats")

    def clear_log(self):
        self.call("clear_log", {})

    def wait(self, endpoint=None, count=0, blocked=0, timeout=30):
        q = "wait?count=%d&blocked=%d&timeout=%g" % (count, blocked, timeout)
        if endpoint:
            q += "&endpoint=" + endpoint
        req = urllib.request.Request(self.url + "/_control/" + q)
        try:
            with urllib.request.urlopen(req, timeout=timeout + 10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code == 408:
                return None
            raise

    def state(self, integration=None):
        q = "state" + ("?integration=" + integration if integration else "")
        return self.call(q)["streams"]

    def dump(self, stream, integration=None):
        q = "dump?stream=" + stream + ("&integration=" + integration if integration else "")
        return self.call(q)["rows"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------------------
# Per-test context

class Result:
    def __init__(self, argv, rc, out, err, dt):
        self.argv, self.rc, self.out, self.err, self.dt = argv, rc, out, err, dt
        self._json = None

    @property
    def json(self):
        if self._json is None:
            try:
                self._json = json.loads(self.out)
            except ValueError as e:
                raise Fail("stdout is not JSON (%s)" % e, self.desc())
        return self._json

    def desc(self):
        return "%s -> rc=%s in %.2fs\n    stdout: %s\n    stderr: %s" % (
            " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(self.argv)),
            self.rc, self.dt, self.out[-1500:].strip(), self.err[-2500:].strip())

    def source(self, name="wa"):
        for s in self.json.get("sources", []):
            if s.get("name") == name:
                return s
        raise Fail("no source %r in the JSON" % name, self.desc())

    def stream(self, stream, name="wa"):
        for st in self.source(name).get("streams", []):
            if st.get("stream") == stream:
                return st
        raise Fail("no stream %r of source %r in the JSON" % (stream, name), self.desc())

    def expect_rc(self, want):
        if isinstance(want, int):
            want = (want,)
        if self.rc not in want:
            raise Fail("exit status %s, want %s" % (self.rc, "/".join(map(str, want))),
                       self.desc())
        return self


class Ctx:
    def __init__(self, name):
        self.name = name
        self.dir = os.path.join(ROOT, name)
        os.makedirs(self.dir, exist_ok=True)
        self.db = "e2e_" + re.sub(r"[^a-z0-9_]", "_", name.lower())
        self.cluster = PG
        self.fakes = []
        self.procs = []
        self.fake = None
        self.cfg = None
        self.env = {}
        self.cleanup = []

    # -- setup ----------------------------------------------------------

    def setup(self, fake=True, db=True, **fake_opts):
        if db:
            self.cluster.createdb(self.db)
        if fake:
            self.fake = self.new_fake(**fake_opts)
        return self

    def new_fake(self, name="fake", kind=None, **opts):
        f = (kind or Fake)(self, name=name, **opts)
        self.fakes.append(f)
        return f

    def token_file(self, token, name="token"):
        p = os.path.join(self.dir, name)
        with open(p, "w") as f:
            f.write(token + "\n")
        os.chmod(p, 0o600)
        return p

    def source_cfg(self, name="wa", fake=None, integration="int-1", token=None,
                   page_size=None, extra=""):
        fake = fake or self.fake
        tok = token if token is not None else fake.token
        tf = self.token_file(tok, name + ".token")
        ps = ""
        if isinstance(page_size, dict):
            ps = "page_size = { %s };" % " ".join("%s = %d;" % kv for kv in page_size.items())
        elif page_size is not None:
            ps = "page_size = %d;" % page_size
        return ('  { name = "%s"; type = "seqapi"; url = "%s"; integration_id = "%s";\n'
                '    token_file = "%s"; %s %s }' % (name, fake.url, integration, tf, ps, extra))

    def config(self, sources=None, http=None, sync=None, log=None, db=None, raw=None,
               mode=0o600, name="msgsync.conf", **src_kw):
        """Writes the config file; returns its path (also self.cfg).
        http/sync/log: dicts of settings over the test defaults."""
        p = os.path.join(self.dir, name)

        def group(defaults, over):
            d = dict(defaults)
            d.update(over or {})
            return " ".join("%s = %s;" % (k, json.dumps(v) if isinstance(v, str) else
                                          str(v).lower() if isinstance(v, bool) else v)
                            for k, v in d.items())
        if raw is None:
            if sources is None:
                sources = [self.source_cfg(**src_kw)]
            raw = ('database = { conninfo = "%s"; };\n'
                   'http = { %s };\n'
                   'sync = { %s };\n'
                   'log = { %s };\n'
                   'sources = (\n%s\n);\n') % (
                       self.cluster.conninfo(db or self.db),
                       group({"timeout": 10, "connect_timeout": 5, "retries": 3,
                              "backoff": 0.01}, http),
                       group({"batch_size": 500}, sync),
                       group({"level": "info"}, log),
                       ",\n".join(sources))
        with open(p, "w") as f:
            f.write(raw)
        os.chmod(p, mode)
        if name == "msgsync.conf":
            self.cfg = p
        return p

    # -- running --------------------------------------------------------

    def argv(self, prog, args, cfg):
        path = os.path.join(TOP, prog)
        check(os.access(path, os.X_OK), "binary %s not built" % path)
        a = [path]
        if cfg is not False:
            a += ["-c", cfg or self.cfg]
        return a + list(args)

    def proc_env(self, env):
        e = dict(os.environ)
        e.update(self.cluster.env)
        e.pop("MSGSYNC_CONFIG", None)
        e.update(self.env)
        if env:
            e.update(env)
        return e

    def run(self, prog, *args, cfg=None, timeout=BIN_TIMEOUT, env=None):
        argv = self.argv(prog, args, cfg)
        t0 = time.monotonic()
        try:
            r = subprocess.run(argv, capture_output=True, env=self.proc_env(env),
                               timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise Fail("%s timed out after %ss" % (" ".join(argv), timeout),
                       (e.stderr or b"")[-2000:].decode("utf-8", "replace"))
        res = Result(argv, r.returncode, r.stdout.decode("utf-8", "replace"),
                     r.stderr.decode("utf-8", "replace"), time.monotonic() - t0)
        self.note(res)
        self.sanity(res)
        return res

    def start(self, prog, *args, cfg=None, env=None):
        argv = self.argv(prog, args, cfg)
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=self.proc_env(env), stdin=subprocess.DEVNULL)
        p.argv = argv
        p.t0 = time.monotonic()
        self.procs.append(p)
        return p

    def finish(self, p, timeout=BIN_TIMEOUT):
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            raise Fail("%s did not finish within %ss" % (" ".join(p.argv), timeout),
                       err[-2000:].decode("utf-8", "replace"))
        res = Result(p.argv, p.returncode, out.decode("utf-8", "replace"),
                     err.decode("utf-8", "replace"), time.monotonic() - p.t0)
        self.note(res)
        self.sanity(res)
        return res

    def note(self, res):
        if VERBOSE:
            print("    $ " + res.desc().replace("\n", "\n    "))

    def sanity(self, res):
        """Checks that hold for every run: no crash, no sanitizer report."""
        if res.rc is not None and res.rc < 0 and res.rc not in (-signal.SIGKILL,):
            raise Fail("killed by signal %d" % -res.rc, res.desc())
        check(res.rc not in (134, 139), "crashed (exit %d)" % res.rc, res.desc())
        for pat in ("AddressSanitizer", "runtime error:", "LeakSanitizer",
                    "UndefinedBehaviorSanitizer"):
            check(pat not in res.err, "sanitizer report in stderr", res.desc())

    # -- database -------------------------------------------------------

    def sql(self, q, db=None):
        return self.cluster.psql(db or self.db, q).rstrip("\n")

    def sql_json(self, q, db=None):
        out = self.sql("SELECT coalesce(json_agg(t), '[]') FROM (%s) t" % q, db)
        return json.loads(out)

    # What undoes each migration that tests take back (newest first).
    UNDO_MIGRATION = {
        8: "DROP FUNCTION msgsync_changes(text, integer, text[], text[]),"
           " msgsync_change_position(text), msgsync_change_tables(text[]),"
           " msgsync_change_limit(integer);",
        7: "DROP VIEW person_message, conversation_overview;"
           " DROP TABLE message_status_history, person_queue, person_override,"
           " person_link, identity_state, msgsync_setting;"
           " ALTER TABLE contact DROP COLUMN person_id; DROP TABLE person;"
           " DROP INDEX message_search_idx, message_sender_idx, contact_phone_idx;"
           " DROP TRIGGER contact_touch ON contact;"
           " DROP TRIGGER conversation_touch ON conversation;"
           " DROP TRIGGER message_touch ON message;"
           " DROP TRIGGER message_status_ins ON message;"
           " DROP TRIGGER message_status_upd ON message;"
           " DROP TRIGGER message_status_del ON message;"
           " DROP FUNCTION msgsync_touch(), msgsync_status_inserted(),"
           " msgsync_status_updated(), msgsync_status_deleted(),"
           " msgsync_override_queue();"
           " ALTER TABLE contact DROP COLUMN txid;"
           " ALTER TABLE conversation DROP COLUMN txid;"
           " ALTER TABLE message DROP COLUMN txid, DROP COLUMN body_tsv;",
        6: "DROP TABLE attachment, media_blob;",
        5: "DROP TABLE coverage, stream_gap; ALTER TABLE message DROP COLUMN"
           " missing_since, DROP COLUMN deleted_reason, DROP COLUMN stream;"
           " ALTER TABLE sync_state DROP COLUMN history_complete_at;",
        4: "DROP INDEX message_provider_idx; ALTER TABLE message DROP COLUMN provider_id;",
    }

    def schema_before(self, version):
        """Turns the database back into the schema of version - 1: a store
        written by an earlier msgsync, for migration tests."""
        undo = [self.UNDO_MIGRATION[v] for v in sorted(self.UNDO_MIGRATION, reverse=True)
                if v >= version]
        self.sql("DELETE FROM schema_migrations WHERE version >= %d; %s"
                 % (version, " ".join(undo)))

    def count(self, table, where="true"):
        return int(self.sql("SELECT count(*) FROM %s WHERE %s" % (table, where)))

    def state_row(self, stream, source="wa"):
        r = self.sql_json("SELECT s.* FROM sync_state s JOIN source o ON o.id = s.source_id "
                          "WHERE o.name = '%s' AND s.stream = '%s'" % (source, stream))
        return r[0] if r else None

    def cursor(self, stream, source="wa"):
        r = self.state_row(stream, source)
        return r["cursor"] if r else None

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in self.fakes:
            f.stop()
        for fn in reversed(self.cleanup):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 -- cleanup must go on
                print("    cleanup: %s" % e)


# ---------------------------------------------------------------------------
# Shared assertions

TABLE = {"messages": "message", "conversations": "conversation", "contacts": "contact"}
TEXT_COL = {"messages": ("body", "body"), "conversations": ("title", "title"),
            "contacts": ("display_name", "name")}


def db_rows(ctx, stream, source="wa", where="true"):
    return ctx.sql_json(
        "SELECT t.external_id, t.%s AS text, t.raw IS NULL AS placeholder, t.seq "
        "FROM %s t JOIN source s ON s.id = t.source_id WHERE s.name = '%s' AND %s"
        % (TEXT_COL[stream][0], TABLE[stream], source, where))


def attachment_rows(ctx, source, cols):
    """A source's attachment rows (cols: SQL over `a`, the attachment), each
    with its message's external id as msg, by message and external id."""
    return ctx.sql_json(
        "SELECT m.external_id AS msg, %s FROM attachment a"
        " JOIN message m ON m.id = a.message_id JOIN source s ON s.id = a.source_id"
        " WHERE s.name = '%s' ORDER BY m.external_id, a.external_id" % (cols, source))


def assert_exact(ctx, fake=None, source="wa", integration=None, streams=STREAMS,
                 check_text=True, check_cursor=True):
    """The database holds exactly the upstream rows of each stream, once each,
    in their latest version, and each cursor is the upstream's latest seq."""
    fake = fake or ctx.fake
    state = fake.state(integration)
    for stream in streams:
        up = {r["id"]: r for r in fake.dump(stream, integration)}
        rows = db_rows(ctx, stream, source)
        real = [r for r in rows if not r["placeholder"]]
        ids = [r["external_id"] for r in real]
        check(len(ids) == len(set(ids)), "%s: duplicate external ids" % stream)
        missing = set(up) - set(ids)
        extra = set(ids) - set(up)
        check(not missing and not extra,
              "%s: %d upstream rows missing, %d unexpected (of %d upstream, %d stored)"
              % (stream, len(missing), len(extra), len(up), len(ids)),
              "missing e.g. %s" % sorted(missing)[:5], "extra e.g. %s" % sorted(extra)[:5])
        if stream != "messages":
            ph = [r["external_id"] for r in rows if r["placeholder"]]
            check(not (set(ph) & set(up)),
                  "%s: upstream rows still placeholders: %s" % (stream, sorted(set(ph) & set(up))[:5]))
        if check_text:
            col = TEXT_COL[stream][1]
            bad = []
            for r in real:
                u = up[r["external_id"]]
                want = u.get(col)
                if stream == "messages" and u.get("deleted"):
                    continue
                if isinstance(want, str) and ("\x00" in want or "\ufffd" in want
                                              or re.search("[\ud800-\udfff]", want)):
                    continue   # hostile text: checked by its own test
                if r["text"] != want:
                    bad.append((r["external_id"], r["text"], want))
            check(not bad, "%s: %d rows with a stale or wrong %s" % (stream, len(bad), col),
                  *["%s: stored %r, upstream %r" % b for b in bad[:3]])
        if check_cursor:
            cur = ctx.cursor(stream, source)
            want = state[stream]["latest_seq"]
            eq(cur, str(want), "%s cursor" % stream)


def committed_consistent(ctx, stream, mark, fake=None, source="wa", moved=()):
    """Stored rows of a stream walked from zero are exactly the upstream rows
    with seq <= mark (no half batch, nothing past the mark). `moved`: ids
    edited upstream after they may have been stored (their seq moved past
    the mark), allowed beyond it."""
    fake = fake or ctx.fake
    up = fake.dump(stream)
    want = {r["id"] for r in up if r["seq"] <= mark}
    got = {r["external_id"] for r in db_rows(ctx, stream, source) if not r["placeholder"]}
    got -= set(moved) - want
    check(got == want, "%s: stored rows do not match the committed mark %d: %d stored, "
          "%d upstream up to the mark (%d missing, %d beyond)" %
          (stream, mark, len(got), len(want), len(want - got), len(got - want)))


def mark_of(ctx, stream, source="wa"):
    """The committed walk position of a stream: the full-sync checkpoint if
    one is open, else the cursor; None if neither is a number."""
    r = ctx.state_row(stream, source)
    if not r:
        return 0
    for k in ("full_checkpoint", "cursor"):
        v = r.get(k)
        if v is not None:
            try:
                return int(v)
            except ValueError:
                m = re.search(r"\d+", v)
                return int(m.group()) if m else None
    return 0


def wait_unlocked(ctx, timeout=15):
    """After a kill -9 the server backend of the dead client may hold its
    advisory lock for a moment: wait until no advisory lock is held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = ctx.sql("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                    "WHERE l.locktype = 'advisory' AND d.datname = current_database()")
        if n == "0":
            return
        time.sleep(0.02)


def ok_pass(res, cmd=None):
    res.expect_rc(0)
    j = res.json
    if cmd:
        eq(j.get("command"), cmd, "JSON command")
    eq(j.get("status"), "ok", "JSON status")
    for s in j["sources"]:
        eq(s.get("status"), "ok", "source %s status" % s.get("name"))
        eq(s.get("error"), None, "source %s error" % s.get("name"))
    return j


def json_cursor_is_db(ctx, res, stream, source="wa"):
    """The JSON's cursor_after is what the database committed."""
    eq(res.stream(stream, source).get("cursor_after"), ctx.cursor(stream, source),
       "%s cursor_after in the JSON vs the stored cursor" % stream)


def page_count(n, ps):
    return max(1, -(-n // ps))


# ---------------------------------------------------------------------------
# Tests

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


PS = {"conversations": 20, "messages": 300, "contacts": 15}


# ---------------------------------------------------------------------------

class Skip(Exception):
    """Raised by a test that has no meaning in its setting (the text says why)."""


def import_e2e_modules(harness=None):
    """Imports every tests/e2e/*_e2e.py (found, not listed): each registers
    its tests through @test. They reach the harness as `__main__`; a driver
    that imports this file as a module passes it as harness, which stands in
    for __main__ while they are imported."""
    import importlib
    import glob
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    main_mod = sys.modules["__main__"]
    if harness is not None:
        sys.modules["__main__"] = harness
    try:
        return [importlib.import_module(os.path.basename(f)[:-3])
                for f in sorted(glob.glob(os.path.join(HERE, "*_e2e.py")))]
    finally:
        sys.modules["__main__"] = main_mod


if __name__ == "__main__":
    import_e2e_modules()


def run_suite(label, tests, xfail=()):
    """Runs tests (functions of a Ctx) on one throwaway PostgreSQL: one line
    per test (PASS, FAIL, SKIP; for the names in xfail, a set or a dict of
    name -> what it waits for, XFAIL, which does not fail the run, or XPASS,
    which does: a case listed as expected to fail must leave the list once
    its fix has landed),
    then "<label>: N passed, N failed". TOP, KEEP, SEED, VERBOSE are set.
    Returns the exit status (1 if any test failed)."""
    global ROOT, PG
    xfail = xfail if isinstance(xfail, dict) else dict.fromkeys(xfail, "")

    def on_term(signo, frame):
        raise KeyboardInterrupt("signal %d" % signo)
    signal.signal(signal.SIGTERM, on_term)
    ROOT = tempfile.mkdtemp(prefix="msgsync-%s." % label)
    os.chmod(ROOT, 0o755)   # the postgres user must reach the cluster dir when we are root
    print("%s: seed %d, work dir %s" % (label, SEED, ROOT), flush=True)
    passed = failed = skipped = xfailed = xpassed = 0
    t_all = time.monotonic()
    try:
        PG = Cluster(os.path.join(ROOT, "pg"))
        try:
            PG.start()
        except Exception as e:  # noqa: BLE001
            print("%s: cannot start PostgreSQL: %s" % (label, e))
            print("%s: 0 passed, %d failed" % (label, len(tests)))
            return 1
        for t in tests:
            ctx = Ctx(t.__name__)
            t0 = time.monotonic()
            name = t.__name__
            try:
                t(ctx)
                if name in xfail:
                    xpassed += 1
                    failed += 1
                    print("XPASS %-26s %5.1fs  (listed as expected to fail, but it passes:"
                          " take it off the list)" % (name, time.monotonic() - t0), flush=True)
                else:
                    passed += 1
                    print("PASS %-26s %5.1fs" % (name, time.monotonic() - t0), flush=True)
            except Skip as e:
                skipped += 1
                print("SKIP %-26s %s" % (name, e), flush=True)
            except Fail as e:
                if name in xfail:
                    xfailed += 1
                    why = str(e.args[0] if e.args else e).split("\n")[0][:160]
                    print("XFAIL %-26s %5.1fs  %s%s" % (
                        name, time.monotonic() - t0, why,
                        "\n" + " " * 11 + "(waits for %s)" % xfail[name] if xfail[name] else ""),
                        flush=True)
                    continue
                failed += 1
                print("FAIL %-26s %5.1fs  %s" % (name, time.monotonic() - t0,
                                                 str(e).replace("\n", "\n" + " " * 10)),
                      flush=True)
            except KeyboardInterrupt as e:
                failed += 1
                print("FAIL %-26s interrupted (%s); stopping" % (name, e or "SIGINT"),
                      flush=True)
                break
            except Exception:  # noqa: BLE001 -- a broken test is a failure, not a stop
                failed += 1
                print("FAIL %-26s %5.1fs  (test error)\n%s" % (
                    name, time.monotonic() - t0,
                    "".join("          " + ln for ln in
                            traceback.format_exc().splitlines(True))), flush=True)
            finally:
                ctx.close()
    finally:
        if PG is not None:
            PG.stop()
        for extra in ("pg2",):
            p = os.path.join(ROOT, extra)
            if os.path.isdir(p):
                Cluster(p).stop()
        if not KEEP and failed == 0:
            shutil.rmtree(ROOT, ignore_errors=True)
        elif not KEEP:
            # Keep only the logs worth reading; drop the clusters' data.
            for extra in ("pg", "pg2"):
                shutil.rmtree(os.path.join(ROOT, extra, "data"), ignore_errors=True)
    print("%s: %.0fs total" % (label, time.monotonic() - t_all))
    extra = ""
    if skipped or xfailed or xpassed:
        extra = " (%d skipped, %d xfail, %d xpass)" % (skipped, xfailed, xpassed)
    print("%s: %d passed, %d failed%s" % (label, passed, failed, extra))
    return 1 if failed else 0


def main():
    global TOP, VERBOSE, KEEP, SEED
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", default=os.path.dirname(os.path.dirname(HERE)))
    ap.add_argument("--filter", action="append", help="run tests whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--seed", type=int, help="random seed (default: time)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    TOP = os.path.abspath(a.top)
    VERBOSE = a.verbose
    KEEP = a.keep
    SEED = a.seed if a.seed is not None else int(time.time()) % 100000
    tests = [t for t in TESTS if not a.filter or any(f in t.__name__ for f in a.filter)]
    if a.list:
        for t in tests:
            print(t.__name__)
        return 0
    if not tests:
        print("e2e: no test matches %s" % a.filter)
        print("e2e: 0 passed, 0 failed")
        return 1
    return run_suite("e2e", tests)


if __name__ == "__main__":
    sys.exit(main())
