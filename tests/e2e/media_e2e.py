"""End-to-end tests of media-sync's engine (SPEC §9): the store (files
named by SHA-256, or large objects), durability under kill -9 and a full
disk, max_bytes, --max-bytes and --max-runtime, cut bodies and the
credentials of links.  Messages come from the fake seqapi backend; their
attachment rows point at a plain file server (tests/fake/cdn.py), so
that these pin the engine whatever each connector reports.  Each
connector's own attachments are tested in its e2e file and the
conformance suite."""

import hashlib
import os
import resource
import signal

import __main__ as e2e
from __main__ import *  # noqa: F401,F403 -- the harness: Ctx, check, eq, test, ...

HERE = os.path.dirname(os.path.abspath(__file__))


class FilesFake(e2e.Fake):
    SCRIPT = os.path.join(os.path.dirname(HERE), "fake", "cdn.py")

    def set(self, **kw):
        import json
        import urllib.request
        req = urllib.request.Request(self.url + "/_control/set",
                                     data=json.dumps(kw).encode(), method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def requests_log(self):
        import json
        import urllib.request
        with urllib.request.urlopen(self.url + "/_control/log", timeout=10) as r:
            return json.loads(r.read())


def media_setup(ctx, files, store="dir", max_bytes=None, http=None, extra=""):
    """A synced seqapi source, a file server over `files` (name -> bytes)
    and the config with its media group.  Returns (files fake, store dir)."""
    ctx.setup(conversations=2, messages=len(files) + 10, contacts=2)
    fdir = os.path.join(ctx.dir, "cdn")
    os.makedirs(fdir, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(fdir, name), "wb") as f:
            f.write(data)
    ff = ctx.new_fake("files", kind=FilesFake, dir=fdir)
    store_dir = os.path.join(ctx.dir, "media")
    p = ctx.config(http=http or {"retries": 0}, extra=extra)
    with open(p, "a") as f:
        f.write('media = { store = "%s"; dir = "%s"; %s };\n' % (
            store, store_dir, "" if max_bytes is None else "max_bytes = %d;" % max_bytes))
    ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    return ff, store_dir


def attach(ctx, msg, ext, url=None, size=None, content=None, path=None,
           expires=None, stripped=False):
    """An attachment row on message msg (external id), as a sync pass makes it."""
    ctx.sql("INSERT INTO attachment (message_id, source_id, external_id, kind, url,"
            " size, content, local_path, url_expires_at, link_stripped)"
            " SELECT id, source_id, '%s', 'photo', %s, %s, %s, %s, %s, %s FROM message"
            " WHERE external_id = '%s'" % (
                ext, "NULL" if url is None else "'%s'" % url,
                "NULL" if size is None else size,
                "NULL" if content is None else "'\\x%s'::bytea" % content.hex(),
                "NULL" if path is None else "'%s'" % path,
                "NULL" if expires is None else "'%s'" % expires,
                "true" if stripped else "false", msg))


def att(ctx, ext):
    r = ctx.sql_json("SELECT state, sha256, stored_size, attempts, last_error, content"
                     " IS NOT NULL AS has_content FROM attachment WHERE external_id = '%s'"
                     % ext)
    check(len(r) == 1, "attachment %s exists" % ext)
    return r[0]


def stored_files(store_dir):
    out = {}
    for sub in sorted(os.listdir(store_dir)):
        if sub == ".tmp":
            continue
        for f in os.listdir(os.path.join(store_dir, sub)):
            out[f] = open(os.path.join(store_dir, sub, f), "rb").read()
    return out


def tmp_files(store_dir):
    t = os.path.join(store_dir, ".tmp")
    return sorted(os.listdir(t)) if os.path.isdir(t) else []


def sha(b):
    return hashlib.sha256(b).hexdigest()


def wait_for(cond, what, timeout=30):
    """Polls an observable condition (not a sleep standing in for one)."""
    import time
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise Fail("timed out waiting for %s" % what)
        time.sleep(0.02)


def media_json(r, name="wa"):
    return r.source(name)


@test
def media_store_dir_dedupe(ctx):
    """Files land under DIR/ab/<sha256>, verified; the same content reached
    from two messages is stored once; inline content and a local file need
    no request; the JSON counts it all."""
    a, b = os.urandom(300000), os.urandom(1000)
    ff, sd = media_setup(ctx, {"a.jpg": a, "a2.jpg": a, "b.pdf": b})
    attach(ctx, "m1", "x1", url=ff.url + "/f/a.jpg", size=len(a))
    attach(ctx, "m2", "x2", url=ff.url + "/f/a2.jpg")
    attach(ctx, "m3", "x3", url=ff.url + "/f/b.pdf?expires=9999999999&sig=abc")
    attach(ctx, "m4", "x4", content=b"inline MMS bytes")
    lp = os.path.join(ctx.dir, "export.bin")
    open(lp, "wb").write(b)
    attach(ctx, "m5", "x5", path=lp)
    r = ctx.run("media-sync", "-j")
    ok_pass(r, "media-sync")
    s = media_json(r)
    eq((s["downloaded"], s["bytes"], s["deduplicated"], s["still_pending"], s["failed"]),
       (5, 2 * len(a) + 2 * len(b) + 16, 2, 0, 0),
       "downloaded, bytes, deduplicated, still_pending, failed")
    got = stored_files(sd)
    eq(sorted(got), sorted([sha(a), sha(b), sha(b"inline MMS bytes")]), "files in the store")
    for k, v in got.items():
        eq(sha(v), k, "a stored file's content hashes to its name")
        check(os.path.isfile(os.path.join(sd, k[:2], k)), "stored under DIR/ab/")
    eq(att(ctx, "x1")["state"], "stored", "x1")
    eq((att(ctx, "x2")["sha256"], att(ctx, "x2")["stored_size"]), (sha(a), len(a)), "x2")
    eq(att(ctx, "x4")["has_content"], False, "inline content leaves the row once stored")
    eq(tmp_files(sd), [], "no temporary file left")
    r = ctx.run("media-sync", "-j")
    ok_pass(r, "media-sync")
    eq(media_json(r)["downloaded"], 0, "a second pass has nothing to do")


@test
def media_store_database(ctx):
    """store = "database": one media_blob per content (a large object), the
    same content stored once."""
    a = os.urandom(200000)
    ff, sd = media_setup(ctx, {"a": a, "b": a}, store="database")
    attach(ctx, "m1", "x1", url=ff.url + "/f/a")
    attach(ctx, "m2", "x2", url=ff.url + "/f/b")
    r = ctx.run("media-sync", "-j")
    ok_pass(r, "media-sync")
    eq((media_json(r)["downloaded"], media_json(r)["deduplicated"]), (2, 1),
       "downloaded, deduplicated")
    eq(ctx.count("media_blob"), 1, "one blob for one content")
    eq(ctx.sql("SELECT encode(sha256(lo_get(loid)), 'hex') FROM media_blob"), sha(a),
       "the blob's bytes")
    eq(ctx.sql("SELECT count(*) FROM pg_largeobject_metadata"), "1",
       "the duplicate's large object was dropped")
    check(not os.path.exists(os.path.join(sd, ".tmp")), "no directory store touched")


@test
def media_max_bytes_failed(ctx):
    """A file larger than media.max_bytes is failed with the reason, never
    truncated: whether the provider says its size or not."""
    big = os.urandom(50000)
    ff, sd = media_setup(ctx, {"big": big}, max_bytes=10000)
    attach(ctx, "m1", "said", url=ff.url + "/f/big", size=len(big))
    attach(ctx, "m2", "unsaid", url=ff.url + "/f/big")
    r = ctx.run("media-sync", "-j")
    ok_pass(r, "media-sync")
    eq(media_json(r)["failed"], 2, "failed")
    for ext in ("said", "unsaid"):
        a = att(ctx, ext)
        eq(a["state"], "failed", ext)
        check("max_bytes" in a["last_error"], "the reason names max_bytes", a)
    eq(stored_files(sd), {}, "nothing stored")
    eq(tmp_files(sd), [], "no temporary file left")
    eq(len([x for x in ff.requests_log() if x["path"] == "/f/big"]), 1,
       "a size the provider says is refused without a request")


@test
def media_cut_body_retried(ctx):
    """A body cut mid-transfer stores nothing and stays pending (an
    attempt); the next pass stores the whole file."""
    a = os.urandom(400000)
    ff, sd = media_setup(ctx, {"a": a})
    attach(ctx, "m1", "x1", url=ff.url + "/f/a")
    ff.set(cut=1)
    r = ctx.run("media-sync", "-j")
    ok_pass(r, "media-sync")
    x = att(ctx, "x1")
    eq((x["state"], x["attempts"], media_json(r)["still_pending"]), ("pending", 1, 1),
       "after a cut body")
    eq(stored_files(sd), {}, "nothing under a final name")
    eq(tmp_files(sd), [], "no temporary file left")
    r = ctx.run("media-sync", "-j")
    ok_pass(r, "media-sync")
    eq(att(ctx, "x1")["state"], "stored", "stored at the next pass")
    eq(stored_files(sd), {sha(a): a}, "the whole file")


@test
def media_kill9_mid_download(ctx):
    """kill -9 during a download leaves no file under a final name and no
    row claiming bytes; the next pass removes the leftover and stores it."""
    a = os.urandom(600000)
    ff, sd = media_setup(ctx, {"a": a})
    attach(ctx, "m1", "x1", url=ff.url + "/f/a")
    ff.set(slow=100000)
    p = ctx.start("media-sync", "-j")
    wait_for(lambda: tmp_files(sd) and os.path.getsize(os.path.join(sd, ".tmp",
             tmp_files(sd)[0])) > 0, "a download under way")
    p.kill()
    p.wait()
    eq(att(ctx, "x1")["state"], "pending", "the row after kill -9")
    eq(stored_files(sd), {}, "no file under a final name")
    check(len(tmp_files(sd)) == 1, "the partial file stays under its temporary name")
    ff.set(slow=0)
    r = ctx.run("media-sync", "-j")
    ok_pass(r, "media-sync")
    eq(att(ctx, "x1")["state"], "stored", "stored by the next pass")
    eq(tmp_files(sd), [], "the leftover is removed")
    eq(stored_files(sd), {sha(a): a}, "the file")


def fsize_limit(n):
    def lim():
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
    return lim


@test
def media_full_disk(ctx):
    """A full disk (here a file-size limit) stops the source with a clear
    error and exit 75; nothing is stored under a final name, the row stays
    pending, and the next pass with room stores it."""
    a = os.urandom(300000)
    ff, sd = media_setup(ctx, {"a": a})
    attach(ctx, "m1", "x1", url=ff.url + "/f/a")
    argv = ctx.argv("media-sync", ["-j"], None)
    import subprocess
    pr = subprocess.run(argv, capture_output=True, env=ctx.proc_env(None),
                        preexec_fn=fsize_limit(100000), timeout=60)
    eq(pr.returncode, 75, "exit code on a full disk")
    out = pr.stdout.decode()
    check("media store" in out and "File too large" in out, "the error says why", out)
    eq(att(ctx, "x1")["state"], "pending", "the row")
    eq(stored_files(sd), {}, "nothing under a final name")
    eq(tmp_files(sd), [], "no temporary file left")
    r = ctx.run("media-sync", "-j")
    ok_pass(r, "media-sync")
    eq(att(ctx, "x1")["state"], "stored", "stored once there is room")


@test
def media_max_bytes_and_runtime_stop(ctx):
    """--max-bytes stops the pass once that many bytes are downloaded (the
    file under way is finished); --max-runtime cuts a slow download cleanly:
    both partial, exit 0, the rest pending."""
    files = {"f%d" % i: os.urandom(100000) for i in range(4)}
    ff, sd = media_setup(ctx, files)
    for i in range(4):
        attach(ctx, "m%d" % (i + 1), "x%d" % i, url=ff.url + "/f/f%d" % i)
    r = ctx.run("media-sync", "-j", "--max-bytes", "150k")
    eq(r.rc, 0, "exit code")
    s = media_json(r)
    eq((s["status"], s["downloaded"], s["still_pending"]), ("partial", 2, 2),
       "after --max-bytes 150k")
    ff.set(slow=50000)
    r = ctx.run("media-sync", "-j", "--max-runtime", "1")
    eq(r.rc, 0, "exit code")
    s = media_json(r)
    eq((s["status"], s["downloaded"]), ("partial", 0), "after --max-runtime 1")
    eq(s["still_pending"], 2, "still pending")
    eq(ctx.sql("SELECT max(attempts) FROM attachment WHERE state = 'pending'"), "0",
       "a cut download is not a failed attempt")
    eq(tmp_files(sd), [], "no temporary file left")
    r = ctx.run("media-sync", "--max-bytes", "x")
    eq(r.rc, 64, "a bad --max-bytes is a usage error")


@test
def media_links_and_credentials(ctx):
    """A link off the source's origin gets none of its credentials; a
    refused or expired link of a type that cannot refresh is an attempt,
    a gone one unavailable after its attempts; links are printed without
    their query."""
    a = os.urandom(1000)
    ff, sd = media_setup(ctx, {"a": a, "b": a})
    ff.set(token="per-link-Secr3t-77", gone=["b"])
    attach(ctx, "m1", "x1", url=ff.url + "/f/a?token=per-link-Secr3t-77")
    attach(ctx, "m2", "x2", url=ff.url + "/f/a", stripped=True)
    attach(ctx, "m3", "x3", url=ff.url + "/f/b?token=per-link-Secr3t-77")
    r = ctx.run("media-sync", "-j", "-v")
    ok_pass(r, "media-sync")
    eq(att(ctx, "x1")["state"], "stored", "x1")
    check(all(x["authorization"] is None for x in ff.requests_log()),
          "no credential of the source sent to another origin")
    # seqapi refreshes a stripped link by reading the message again; m2
    # carries no file x2 upstream, so the attempt fails and it stays pending.
    eq(att(ctx, "x2")["state"], "pending", "a stripped link whose refresh fails")
    check("changed since" in att(ctx, "x2")["last_error"], "x2's reason", att(ctx, "x2"))
    eq(att(ctx, "x3")["attempts"], 1, "a gone file: an attempt")
    check("per-link-Secr3t-77" not in r.out + r.err, "a link's token is never printed")


@test
def media_restart_and_modes(ctx):
    """--restart tries failed attachments again; media = "link" downloads
    nothing; switching to download queues the linked rows."""
    a = os.urandom(5000)
    ff, sd = media_setup(ctx, {"a": a}, max_bytes=1000)
    attach(ctx, "m1", "x1", url=ff.url + "/f/a")
    ctx.run("media-sync")
    eq(att(ctx, "x1")["state"], "failed", "over max_bytes")
    p = ctx.cfg
    txt = open(p).read().replace("max_bytes = 1000;", "")
    open(p, "w").write(txt)
    r = ctx.run("media-sync", "-j")
    eq(media_json(r)["downloaded"], 0, "a failed row is left alone")
    r = ctx.run("media-sync", "-j", "--restart")
    eq((media_json(r)["downloaded"], att(ctx, "x1")["state"]), (1, "stored"),
       "--restart tries it again")
    ctx.sql("UPDATE attachment SET state = 'linked', sha256 = NULL, stored_size = NULL")
    open(p, "w").write(txt.replace('integration_id = "int-1";',
                                   'integration_id = "int-1"; media = "link";'))
    r = ctx.run("media-sync", "-j")
    ok_pass(r, "media-sync")
    eq(att(ctx, "x1")["state"], "linked", "media = link downloads nothing")
    open(p, "w").write(txt)
    r = ctx.run("media-sync", "-j")
    eq((media_json(r)["downloaded"], media_json(r)["deduplicated"]), (1, 1),
       "back to download: the linked row is fetched (its content is there)")


@test
def media_dedupe_across_sources(ctx):
    """The same content reached from two sources is stored once."""
    a = os.urandom(120000)
    ctx.setup(conversations=2, messages=6, contacts=2, integrations=["int-1", "int-2"])
    fdir = os.path.join(ctx.dir, "cdn")
    os.makedirs(fdir)
    for name in ("one", "two"):
        with open(os.path.join(fdir, name), "wb") as f:
            f.write(a)
    ff = ctx.new_fake("files", kind=FilesFake, dir=fdir)
    sd = os.path.join(ctx.dir, "media")
    p = ctx.config(sources=[ctx.source_cfg("wa"), ctx.source_cfg("wb", integration="int-2")])
    with open(p, "a") as f:
        f.write('media = { dir = "%s"; };\n' % sd)
    ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    for src, name in (("wa", "one"), ("wb", "two")):
        ctx.sql("INSERT INTO attachment (message_id, source_id, external_id, url)"
                " SELECT m.id, m.source_id, 'x', '%s/f/%s' FROM message m JOIN source s"
                " ON s.id = m.source_id WHERE s.name = '%s' AND m.external_id = 'm1'"
                % (ff.url, name, src))
    r = ctx.run("media-sync", "-j")
    ok_pass(r, "media-sync")
    eq(r.source("wa")["downloaded"] + r.source("wb")["downloaded"], 2, "downloaded")
    # The two sources run side by side: both may fetch it before either
    # has stored it (the second rename then replaces it with the same bytes).
    check(r.source("wa")["deduplicated"] + r.source("wb")["deduplicated"] <= 1,
          "deduplicated", r.desc())
    eq(stored_files(sd), {sha(a): a}, "one file for both sources")
    eq(ctx.count("attachment", "state = 'stored' AND sha256 = '%s'" % sha(a)), 2,
       "both rows point to it")
