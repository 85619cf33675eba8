"""End-to-end tests of full-text search (issue 14; SPEC §2 sync-search,
§4 search.language, §6): the web-search syntax, the filters, the output
(text and --json, exactly), ranking, empty outcomes, the index being used,
and a change of search.language re-indexing at the next pass. Imported by
run.py:

    python3 tests/e2e/run.py --filter search_

The store is filled by a real pass of the seqapi fake; the messages whose
words the tests look for are then written with SQL (their bodies are what
matters, not how they arrived), in source 'wa' and in a second source
'sms' that is configured but never run.
"""

import json
import os
import re
import subprocess
import time

import __main__ as e2e

test, check, eq, Fail = e2e.test, e2e.check, e2e.eq, e2e.Fail

# (external id, conversation, sender, direction, sent_at, body)
MESSAGES = [
    ("s1", "wa", "sc1", "alice", "in", "2026-03-01T10:00:00Z",
     "the zebrafish swims in the blue aquarium"),
    ("s2", "wa", "sc1", "bob", "out", "2026-03-02T10:00:00Z",
     "zebrafish aquarium zebrafish aquarium, twice each"),
    ("s3", "wa", "sc2", "carol", "in", "2026-03-03T10:00:00Z",
     "a blue aquarium without fish, and a long tail of other words here"),
    ("s4", "wa", "sc2", "nobody", "in", "2026-03-04T10:00:00Z",
     "quokka runs every morning"),
    ("s5", "sms", "sc3", "phoneonly", "in", "2026-03-05T10:00:00Z",
     "zebrafish by text message"),
    ("s6", "sms", "sc3", None, "out", "2026-03-06T10:00:00Z",
     "aquarium cleaning quokka"),
    ("s7", "wa", "sc1", "alice", "in", "2026-03-07T10:00:00Z",
     "zebrafish deleted message"),
]

KEYS = ["source", "conversation", "external_id", "sent_at", "direction", "sender",
        "body", "snippet", "rank"]


def store(ctx, lang=None):
    """Source 'wa' synced once from the fake, source 'sms' configured; then
    MESSAGES, with contacts showing each fallback of the sender's name."""
    ctx.setup(conversations=3, messages=10, contacts=3)
    sms = ctx.source_cfg(name="sms", integration="int-2")
    ctx.config(sources=[ctx.source_cfg(page_size=e2e.PS), sms])
    if lang:
        set_language(ctx, lang)
    e2e.ok_pass(ctx.run("full-sync", "-j", "-s", "wa"))
    ctx.sql("INSERT INTO source (name, type) VALUES ('sms', 'seqapi')")
    ctx.sql("""
        INSERT INTO conversation (source_id, external_id, title)
        SELECT s.id, c, c FROM source s, (VALUES ('wa', 'sc1'), ('wa', 'sc2'),
            ('sms', 'sc3')) v(src, c) WHERE s.name = v.src;
        INSERT INTO contact (source_id, external_id, display_name, username, phone)
        SELECT s.id, v.ext, v.dn, v.un, v.ph FROM source s, (VALUES
            ('wa', 'alice', 'Alice A', 'alice_u', '+48111'),
            ('wa', 'bob', NULL, 'bob_u', '+48222'),
            ('wa', 'carol', NULL, NULL, '+48333'),
            ('wa', 'nobody', NULL, NULL, NULL),
            ('sms', 'phoneonly', NULL, NULL, '+48444')) v(src, ext, dn, un, ph)
        WHERE s.name = v.src""")
    for ext, src, conv, sender, d, at, body in MESSAGES:
        ctx.sql("INSERT INTO message (source_id, external_id, conversation_id,"
                " sender_contact_id, direction, body, sent_at)"
                " SELECT s.id, '%s', (SELECT id FROM conversation WHERE source_id = s.id"
                "  AND external_id = '%s'), (SELECT id FROM contact WHERE source_id = s.id"
                "  AND external_id = %s), '%s', '%s', '%s' FROM source s WHERE s.name = '%s'"
                % (ext, conv, "'%s'" % sender if sender else "NULL", d, body, at, src))
    ctx.sql("UPDATE message SET deleted_at = now() WHERE external_id = 's7'")


def set_language(ctx, lang):
    """Rewrites the configuration with search = { language = lang; }."""
    text = open(ctx.cfg).read()
    text = re.sub(r"\nsearch = \{[^}]*\};", "", text)
    with open(ctx.cfg, "w") as f:
        f.write(text + 'search = { language = "%s"; };\n' % lang)


def search(ctx, *args, rc=0, env=None):
    r = ctx.run("sync-search", *args, env=env)
    r.expect_rc(rc)
    return r


def hits(ctx, *args):
    """--json: the objects printed, in order."""
    r = search(ctx, "-j", *args)
    out = []
    for line in r.out.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            raise Fail("a line of --json is not JSON: %r" % line, r.desc())
    return out


def ids(ctx, *args):
    return [h["external_id"] for h in hits(ctx, *args)]


@test
def search_syntax(ctx):
    """Words (all of them), "phrases", -excluded, or; best match first."""
    store(ctx)
    eq(ids(ctx, "zebrafish aquarium"), ["s2", "s1"], "two words")
    eq(ids(ctx, "aquarium zebrafish"), ["s2", "s1"], "in another order")
    eq(ids(ctx, '"blue aquarium"'), ["s3", "s1"], "a phrase (equal ranks: newest first)")
    eq(sorted(ids(ctx, '"aquarium blue"')), [], "a phrase is ordered")
    eq(ids(ctx, "aquarium -zebrafish -cleaning"), ["s3"], "excluded words")
    eq(sorted(ids(ctx, "quokka or swims")), ["s1", "s4", "s6"], "or")
    eq(ids(ctx, "ZEBRAFISH text"), ["s5"], "case does not matter")
    eq(ids(ctx, "zebrafish deleted"), [], "a deleted message is not found")


@test
def search_filters(ctx):
    """--source (repeatable), --conversation, --since, --until, --limit."""
    store(ctx)
    eq(ids(ctx, "zebrafish"), ["s2", "s5", "s1"], "everything")
    eq(ids(ctx, "-s", "sms", "zebrafish"), ["s5"], "--source sms")
    eq(ids(ctx, "-s", "wa", "zebrafish"), ["s2", "s1"], "--source wa")
    eq(ids(ctx, "-s", "wa", "--source", "sms", "zebrafish"), ["s2", "s5", "s1"],
       "two --source")
    eq(ids(ctx, "--conversation", "sc1", "aquarium"), ["s2", "s1"], "--conversation")
    eq(ids(ctx, "--conversation", "nope", "aquarium"), [], "an unknown conversation")
    eq(ids(ctx, "--since", "2026-03-02", "zebrafish"), ["s2", "s5"], "--since a day")
    eq(ids(ctx, "--since", "2026-03-02T10:00:01Z", "zebrafish"), ["s5"],
       "--since a time")
    eq(ids(ctx, "--until", "2026-03-02", "zebrafish"), ["s2", "s1"],
       "--until a day reaches its end")
    eq(ids(ctx, "--until", "2026-03-02T10:00:00Z", "zebrafish"), ["s2", "s1"],
       "--until a time includes it")
    eq(ids(ctx, "--until", "2026-03-02T09:59:59Z", "zebrafish"), ["s1"],
       "--until a time before")
    eq(ids(ctx, "--since", "2026-03-02", "--until", "2026-03-04", "aquarium"),
       ["s2", "s3"], "--since and --until")
    eq(ids(ctx, "--limit", "1", "zebrafish"), ["s2"], "--limit 1")
    eq(ids(ctx, "--limit", "2", "zebrafish"), ["s2", "s5"], "--limit 2")
    r = search(ctx, "-s", "nope", "zebrafish", rc=64)
    check("nope" in r.err, "an unknown --source is named", r.desc())


@test
def search_output(ctx):
    """--json has exactly the keys of SPEC §2, of the right types; the text
    output is one block per hit; the sender falls back from the display
    name to the username, the phone, the external id, or null."""
    store(ctx)
    hs = hits(ctx, "zebrafish or quokka or aquarium")
    eq(len(hs), 6, "hits")
    for h in hs:
        eq(list(h.keys()), KEYS, "the keys of a hit")
        for k in KEYS[:5] + ["body", "snippet"]:
            check(isinstance(h[k], str), "%s is a string" % k, h)
        check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", h["sent_at"]),
              "sent_at is RFC 3339 UTC", h)
        check(isinstance(h["rank"], (int, float)) and h["rank"] > 0, "rank is a number", h)
        check(h["direction"] in ("in", "out"), "direction", h)
    by = {h["external_id"]: h for h in hs}
    eq(by["s1"]["sender"], "Alice A", "sender: display name")
    eq(by["s2"]["sender"], "bob_u", "sender: username")
    eq(by["s3"]["sender"], "+48333", "sender: phone")
    eq(by["s4"]["sender"], "nobody", "sender: external id")
    eq(by["s6"]["sender"], None, "no sender")
    eq(by["s5"]["sender"], "+48444", "sender of the other source")
    eq(by["s5"]["source"], "sms", "source")
    eq(by["s5"]["conversation"], "sc3", "conversation")
    eq(by["s1"]["body"], MESSAGES[0][6], "body")
    eq(by["s1"]["sent_at"], "2026-03-01T10:00:00Z", "sent_at")
    check("[zebrafish]" in by["s1"]["snippet"] and "[aquarium]" in by["s1"]["snippet"],
          "the snippet marks the matches", by["s1"])
    r = search(ctx, "quokka runs")
    eq(r.out, "wa  sc2  2026-03-04T10:00:00Z  in  nobody\n"
       "    [quokka] [runs] every morning\n", "text output")
    r = search(ctx, "quokka")
    eq(r.out.count("\n\n"), 1, "blocks are separated by a blank line")
    # A message that says little: no conversation, sender, time, direction.
    ctx.sql("INSERT INTO message (source_id, external_id, body) SELECT id, 's8',"
            " E'wombat \\u001b[2J bell\\u0007' FROM source WHERE name = 'wa'")
    r = search(ctx, "wombat")
    eq(r.out, "wa  -  -  -  -\n    [wombat]  [2J bell\n", "text of a bare message:"
       " its control characters are spaces")
    # A conversation's id is upstream data too: no escape reaches a terminal.
    ctx.sql("INSERT INTO conversation (source_id, external_id) SELECT id, E'c\\u001b[31m9'"
            " FROM source WHERE name = 'wa';"
            " INSERT INTO message (source_id, external_id, conversation_id, body)"
            " SELECT c.source_id, 's9', c.id, 'numbat' FROM conversation c"
            " WHERE c.external_id = E'c\\u001b[31m9'")
    r = search(ctx, "numbat")
    eq(r.out, "wa  c [31m9  -  -  -\n    [numbat]\n", "text of a message in a"
       " conversation whose id has an escape")
    h = hits(ctx, "wombat")[0]
    eq([h[k] for k in ("conversation", "sent_at", "direction", "sender")],
       [None] * 4, "nulls of a bare message")
    eq(h["body"], "wombat \x1b[2J bell\x07", "its body, as stored")
    check("secret" not in r.out + r.err and "e2e-token" not in r.out + r.err,
          "no secret printed", r.desc())


@test
def search_ranking(ctx):
    """A message with both words twice ranks above one with each once, and
    ranks are in descending order."""
    store(ctx)
    hs = hits(ctx, "zebrafish aquarium")
    eq([h["external_id"] for h in hs], ["s2", "s1"], "order")
    check(hs[0]["rank"] > hs[1]["rank"], "s2 ranks higher", hs)
    hs = hits(ctx, "zebrafish or aquarium or quokka")
    ranks = [h["rank"] for h in hs]
    eq(ranks, sorted(ranks, reverse=True), "ranks descend")


@test
def search_nothing(ctx):
    """No match: exit 0; nothing on stdout, nothing at all with -q or --json;
    an empty or stop-word-only query matches nothing; usage errors are 64;
    an unreachable database 75."""
    store(ctx, lang="english")
    r = search(ctx, "nosuchwordanywhere")
    eq(r.out, "", "stdout without a match")
    check("no message matches" in r.err, "a note on stderr", r.desc())
    for args in (["-q", "nosuchwordanywhere"], ["-j", "nosuchwordanywhere"],
                 ["-q", ""], ["-j", "the"], ["-q", "the and of"], ["-j", "-"],
                 ["-q", '""']):
        r = search(ctx, *args)
        eq((r.out, r.err), ("", ""), "output of %s" % args)
    for args in ([], ["a", "b"], ["--limit", "0", "x"], ["--limit", "x", "x"],
                 ["--limit", "2.5", "x"], ["--since", "yesterday", "x"],
                 ["--until", "2026-13-01", "x"], ["--frobnicate", "x"]):
        r = search(ctx, *args, rc=64)
        check("usage: sync-search" in r.err, "usage printed for %s" % args, r.desc())
    text = open(ctx.cfg).read()
    bad = os.path.join(ctx.dir, "down.conf")
    with open(bad, "w") as f:
        f.write(re.sub(r"host=\S+", "host=%s" % os.path.join(ctx.dir, "nosock"), text))
    os.chmod(bad, 0o600)
    r = ctx.run("sync-search", "x", cfg=bad)
    r.expect_rc(75)


@test
def search_no_schema(ctx):
    """A database without the schema: no results, exit 0, nothing created."""
    ctx.setup(fake=False)
    ctx.config(sources=[])
    r = search(ctx, "-j", "anything")
    eq(r.out, "", "stdout")
    eq(ctx.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "0",
       "tables created")


def plan_of(ctx, *args):
    """The plan sync-search's search ran with, sequential scans off (a plan
    that can use the index then does): auto_explain writes it to the
    server's log (pg-local's, written by the backend before it answers)."""
    log = os.path.join(ctx.cluster.dir, "postgres.log")
    start = os.path.getsize(log)
    env = {"PGOPTIONS": "-c session_preload_libraries=auto_explain"
           " -c auto_explain.log_min_duration=0 -c enable_seqscan=off"}
    search(ctx, *args, env=env)
    with open(log, errors="replace") as f:
        f.seek(start)
        text = f.read()
    i = text.find("Query Text: SELECT s.name")
    check(i >= 0, "the search's plan is in the server log", text[-3000:])
    return text[i:i + 20000].split("Query Text:")[1]


@test
def search_index_used(ctx):
    """The search's expression is the index's: its plan uses
    message_search_idx, also after a re-index in another language."""
    store(ctx)
    plan = plan_of(ctx, "zebrafish aquarium")
    check("Bitmap Index Scan on message_search_idx" in plan,
          "the search uses message_search_idx", plan)
    set_language(ctx, "english")
    e2e.ok_pass(ctx.run("incr-sync", "-j", "-s", "wa"))
    plan = plan_of(ctx, "zebrafish")
    check("Bitmap Index Scan on message_search_idx" in plan,
          "the english index is used", plan)


@test
def search_language_change(ctx):
    """search.language = english: sync-search keeps the index's language
    (simple) and says so until the next pass re-indexes; then stems work
    ('running' finds 'runs'). A language the database lacks is exit 78
    naming it."""
    store(ctx)
    eq(ids(ctx, "running"), [], "simple: no stemming")
    set_language(ctx, "english")
    r = search(ctx, "running")
    eq(r.out, "", "still the simple index")
    check("next incr-sync or full-sync re-indexes" in r.err and "'simple'" in r.err,
          "the notice of the coming re-index", r.desc())
    r = ctx.run("incr-sync", "-s", "wa")
    r.expect_rc(0)
    n = ctx.count("message")
    check("search.language changed from 'simple' to 'english': re-indexing %d messages"
          % n in r.err, "the re-index notice", r.desc())
    eq(ctx.sql("SELECT value FROM msgsync_setting WHERE name = 'search.language'"),
       "english", "the recorded language")
    check("'english'::regconfig" in ctx.sql(
        "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a"
        " ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
        " WHERE d.adrelid = 'message'::regclass AND a.attname = 'body_tsv'"),
          "the words are built in english")
    eq(ids(ctx, "running"), ["s4"], "english: 'running' finds 'runs'")
    r = search(ctx, "running")
    eq(r.err, "", "no notice once the index is in english")
    r = ctx.run("incr-sync", "-s", "wa")
    r.expect_rc(0)
    check("re-indexing" not in r.err, "no second re-index", r.desc())
    set_language(ctx, "klingon")
    r = ctx.run("incr-sync", "-s", "wa")
    r.expect_rc(78)
    check("search.language" in r.err and "klingon" in r.err,
          "the error names the key and the value", r.desc())
    eq(ctx.sql("SELECT value FROM msgsync_setting WHERE name = 'search.language'"),
       "english", "the recorded language is kept")


@test
def search_demo_config(ctx):
    """The example configuration (scripts/msgsync.conf.example), pointed at
    the test database, searches."""
    store(ctx)
    ex = open(os.path.join(e2e.TOP, "scripts", "msgsync.conf.example")).read()
    m = re.search(r'conninfo\s*=\s*"[^"]*"', ex)
    check(m, "the example has a conninfo")
    ex = ex.replace(m.group(0), 'conninfo = "%s"' % ctx.cluster.conninfo(ctx.db))
    p = os.path.join(ctx.dir, "example.conf")
    with open(p, "w") as f:
        f.write(ex)
    os.chmod(p, 0o600)
    r = ctx.run("sync-search", "-j", "zebrafish", cfg=p)
    r.expect_rc(0)
    eq([json.loads(x)["external_id"] for x in r.out.splitlines()], ["s2", "s5", "s1"],
       "hits with the example configuration")


@test
def search_reindex_once(ctx):
    """Three passes that start together after search.language changed
    re-index once: the others find it done under the migration lock. A
    dry run (read-only) never re-indexes."""
    store(ctx)
    set_language(ctx, "english")
    r = ctx.run("full-sync", "--dry-run", "-s", "wa")
    r.expect_rc(0)
    check("re-indexing" not in r.err, "a dry run does not re-index", r.desc())
    eq(ctx.sql("SELECT value FROM msgsync_setting WHERE name = 'search.language'"),
       "simple", "the recorded language after a dry run")
    # The migration lock held here: all three find the language changed
    # and wait for the lock; then it is let go.
    env = dict(os.environ)
    env.update(ctx.cluster.env, PGDATABASE=ctx.db)
    holder = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=env)
    ctx.cleanup.append(lambda: holder.kill() or holder.wait())
    holder.stdin.write("SELECT pg_advisory_lock(1836279667, 0);\n"
                       "SELECT 'held';\n")
    holder.stdin.flush()
    eq(holder.stdout.readline().strip(), "", "pg_advisory_lock")
    eq(holder.stdout.readline().strip(), "held", "the lock is held")
    ps = [ctx.start("incr-sync", "-s", "wa") for _ in range(3)]
    deadline = time.monotonic() + 30
    while ctx.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                  " AND NOT granted AND classid = 1836279667 AND objid = 0") != "3":
        check(time.monotonic() < deadline, "three passes wait for the migration lock")
        time.sleep(0.05)
    holder.stdin.write("SELECT pg_advisory_unlock(1836279667, 0);\n")
    holder.stdin.close()
    rs = [ctx.finish(p) for p in ps]
    holder.wait()
    for r in rs:
        r.expect_rc(0)
    eq(sum(r.err.count("re-indexing") for r in rs), 1, "re-index notices")
    eq(ctx.sql("SELECT value FROM msgsync_setting WHERE name = 'search.language'"),
       "english", "the recorded language")
    eq(ctx.sql("SELECT count(*) FROM pg_indexes WHERE tablename = 'message'"
               " AND indexdef LIKE '%body_tsv%'"), "1", "search indexes")
