"""End-to-end tests of the change feed (issue 14 part 3, SPEC §2
sync-changes, msgsync(7) CHANGES): sync-changes and msgsync_changes()
return every contact, conversation and message change once, oldest first,
page after page; an unchanged upsert is no change; and following `next`
never skips a change, also while writers commit out of order (a
deterministic case with a transaction held open, and a stress test with
concurrent writers). Imported by run.py:

    python3 tests/e2e/run.py --filter changes_
"""

import json
import os
import random
import re
import subprocess
import time

import __main__ as e2e
from smseagle_faults_e2e import free_port

test, check, eq, Fail = e2e.test, e2e.check, e2e.eq, e2e.Fail

TABLES = ("contact", "conversation", "message")
TOKEN = re.compile(r"^v1\.(\d+)\.(\d+)$")


def feed(ctx, since, *args, cfg=None):
    """One sync-changes call: (changes, last line)."""
    r = ctx.run("sync-changes", "--since", since, *args, cfg=cfg)
    r.expect_rc(0)
    check(r.out.endswith("\n"), "the feed does not end with a newline", r.desc())
    try:
        lines = [json.loads(x) for x in r.out.split("\n")[:-1]]
    except ValueError as e:
        raise Fail("a line of the feed is not JSON (%s)" % e, r.desc())
    check(lines, "sync-changes printed nothing", r.desc())
    last = lines[-1]
    eq(sorted(last), ["has_more", "next"], "keys of the last line")
    check(isinstance(last["has_more"], bool), "has_more is not a boolean", last)
    for c in lines[:-1]:
        eq(sorted(c), ["row", "seq", "table"], "keys of a change line")
        check(c["table"] in TABLES, "unknown table %r" % c["table"])
        eq(c["row"]["seq"], c["seq"], "seq of the line vs of its row")
    return lines[:-1], last


def token(t):
    """The position a v1 token names (the tests may look inside)."""
    m = TOKEN.match(t)
    check(m, "not a v1 token: %r" % t)
    return (int(m.group(1)), int(m.group(2)))


def position(c):
    return (c["row"]["txid"], c["seq"])


def follow(ctx, since="0", *args, pages=None):
    """Follows next until has_more is false: (changes, next). pages gets
    each call's (changes, last line)."""
    out = []
    for _ in range(100000):
        ch, last = feed(ctx, since, *args)
        if pages is not None:
            pages.append((ch, last))
        out += ch
        check(last["next"] != since or not last["has_more"],
              "has_more is true but next did not move", since, last)
        since = last["next"]
        if not last["has_more"]:
            return out, since
    raise Fail("the feed never ended")


def ascending(changes, what):
    pos = [position(c) for c in changes]
    check(all(a < b for a, b in zip(pos, pos[1:])),
          "%s: positions are not strictly ascending" % what,
          [p for p in zip(pos, pos[1:]) if p[0] >= p[1]][:3])


def db_state(ctx, source=None):
    """{(table, id): seq} of every contact, conversation and message."""
    where = "" if source is None else \
        " WHERE source_id = (SELECT id FROM source WHERE name = '%s')" % source
    q = " UNION ALL ".join("SELECT '%s' AS tbl, id, seq FROM %s%s" % (t, t, where)
                           for t in TABLES)
    return {(r["tbl"], r["id"]): r["seq"] for r in ctx.sql_json(q)}


def sql_error(ctx, q):
    """What psql says on stderr when q fails (it must)."""
    env = dict(os.environ)
    env.update(ctx.cluster.env)
    env["PGDATABASE"] = ctx.db
    r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", q],
                       capture_output=True, text=True, env=env, timeout=30)
    check(r.returncode != 0, "psql succeeded: %s" % q, r.stdout[:300])
    return r.stderr


def keyed(changes):
    return [(c["table"], c["row"]["id"]) for c in changes]


def loaded(ctx, **kw):
    """A store written by a real pass (the fake's rows)."""
    ctx.setup(conversations=kw.get("conversations", 6), messages=kw.get("messages", 40),
              contacts=kw.get("contacts", 5))
    ctx.config(page_size=e2e.PS)
    e2e.ok_pass(ctx.run("full-sync", "-j"))


# ---------------------------------------------------------------------------


@test
def changes_feed_all(ctx):
    """From 0, every contact, conversation and message once, oldest first,
    each as stored (row = every column, plus the source's name); then
    nothing more, and next does not move."""
    loaded(ctx)
    ch, last = feed(ctx, "0", "--limit", "100000")
    eq(last["has_more"], False, "has_more of a page holding everything")
    state = db_state(ctx)
    got = keyed(ch)
    eq(len(got), len(set(got)), "changes returned twice")
    eq(set(got), set(state), "rows in the feed vs in the store")
    for c in ch:
        eq(c["seq"], state[(c["table"], c["row"]["id"])], "seq of %s" % c["table"])
        eq(c["row"]["source"], "wa", "source of a row")
    ascending(ch, "the feed from 0")
    # Every column of each table is in its rows, but message.body_tsv
    # (msgsync_changes() names message's columns: a new one must be added).
    for t in TABLES:
        cols = set(ctx.sql("SELECT string_agg(column_name, ',') FROM"
                           " information_schema.columns WHERE table_name = '%s'"
                           % t).split(",")) - {"body_tsv"}
        for c in (c for c in ch if c["table"] == t):
            eq(sorted(c["row"]), sorted(cols | {"source"}), "the keys of a %s row" % t)
            break
    want = {r["id"]: r for r in ctx.sql_json("SELECT id, external_id, body FROM message")}
    for c in ch:
        if c["table"] == "message":
            r = want[c["row"]["id"]]
            eq((c["row"]["external_id"], c["row"]["body"]), (r["external_id"], r["body"]),
               "external_id and body of message %d" % r["id"])
    check(TOKEN.match(last["next"]), "next is no v1 token", last)
    again, last2 = feed(ctx, last["next"])
    eq(again, [], "changes after the end")
    eq(last2["has_more"], False, "has_more after the end")
    # (Anything in the cluster that takes a transaction id, autoanalyze
    # included, may move the boundary on: next never goes back.)
    check(token(last2["next"]) >= token(last["next"]), "next went back", last, last2)
    # The default limit is 1000; -q and -v change only the logging.
    r = ctx.run("sync-changes", "-q", "--since", "0")
    r.expect_rc(0)
    eq(r.err, "", "stderr with -q")
    eq(len(r.out.splitlines()), len(ch) + 1, "lines with the default --limit")


@test
def changes_paging(ctx):
    """--limit N pages: each full page says has_more, the last one not;
    following next gives exactly the one-call feed; a page of exactly the
    remaining rows is not has_more."""
    loaded(ctx)
    whole, end = follow(ctx, "0", "--limit", "100000")
    n = len(whole)
    check(n > 20, "too few changes to page (%d)" % n)
    for limit in (1, 7, n, n - 1):
        pages = []
        got, nxt = follow(ctx, "0", "--limit", str(limit), pages=pages)
        eq(keyed(got), keyed(whole), "changes paged by %d vs in one call" % limit)
        check(token(nxt) >= token(end), "next at the end went back, paged by %d" % limit,
              end, nxt)
        for ch, last in pages[:-1]:
            eq(len(ch), limit, "changes on a full page of %d" % limit)
            eq(last["has_more"], True, "has_more of a full page")
            eq(last["next"], "v1.%d.%d" % position(ch[-1]),
               "next of a full page is its last change")
        eq(len(pages), max(1, -(-n // limit)), "pages of %d" % limit)
        eq(len(pages[-1][0]), n - limit * (len(pages) - 1), "changes on the last page")
        eq(pages[-1][1]["has_more"], False, "has_more of the last page")


@test
def changes_updates(ctx):
    """An upsert that changes nothing (a full-sync over the same data, an
    UPDATE to the same values) is no change; a real change gives the row
    again, once, at a later position."""
    loaded(ctx)
    _, nxt = follow(ctx)
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    ctx.sql("UPDATE message SET body = body")
    ch, nxt2 = follow(ctx, nxt)
    eq(ch, [], "changes after an unchanged resync")
    mid = int(ctx.sql("SELECT min(id) FROM message"))
    old = int(ctx.sql("SELECT seq FROM message WHERE id = %d" % mid))
    ctx.sql("UPDATE message SET body = 'edited' WHERE id = %d" % mid)
    ctx.sql("UPDATE contact SET display_name = 'renamed' WHERE id ="
            " (SELECT min(id) FROM contact)")
    ch, _ = follow(ctx, nxt2)
    eq(sorted(c["table"] for c in ch), ["contact", "message"], "tables changed")
    m = [c for c in ch if c["table"] == "message"][0]
    eq(m["row"]["id"], mid, "the message changed")
    eq(m["row"]["body"], "edited", "its new body")
    check(m["seq"] > old, "the change has no later seq (%d, was %d)" % (m["seq"], old))
    check(TOKEN.match(nxt2) and position(m) > tuple(map(int, TOKEN.match(nxt2).groups())),
          "the change is not after the position already passed", nxt2, position(m))


@test
def changes_filters(ctx):
    """--table and --source select, alone and together; msgsync_changes()
    with the same filters says the same."""
    ctx.setup(conversations=4, messages=25, contacts=3)
    other = ctx.new_fake("other", conversations=3, messages=15, contacts=2)
    ctx.config(sources=[ctx.source_cfg(page_size=e2e.PS),
                        ctx.source_cfg("other", fake=other, page_size=e2e.PS)])
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    every, _ = follow(ctx, "0", "--limit", "10")
    for args, want in (
            (("--table", "message"), lambda c: c["table"] == "message"),
            (("--table", "contact", "--table", "conversation"),
             lambda c: c["table"] != "message"),
            (("-s", "other"), lambda c: c["row"]["source"] == "other"),
            (("--source", "wa", "--source", "other"), lambda c: True),
            (("--source", "other", "--table", "message"),
             lambda c: c["row"]["source"] == "other" and c["table"] == "message")):
        got, _ = follow(ctx, "0", "--limit", "10", *args)
        eq(keyed(got), keyed([c for c in every if want(c)]), "feed with %s" % " ".join(args))
        check(got, "no change with %s" % " ".join(args))
    eq(set(keyed(follow(ctx, "0", "-s", "other")[0])),
       set(db_state(ctx, "other")), "--source other vs its rows")
    rows = ctx.sql_json("SELECT \"table\", seq, row FROM msgsync_changes('0', 1000,"
                        " ARRAY['message'], ARRAY['other'])")
    cli, last = feed(ctx, "0", "--table", "message", "-s", "other")
    eq([(r["table"], r["seq"]) for r in rows[:-1]], [(c["table"], c["seq"]) for c in cli],
       "msgsync_changes() vs sync-changes with filters")
    eq(rows[-1]["table"], None, "table of the function's last row")
    eq(rows[-1]["row"]["has_more"], last["has_more"], "has_more of both")


@test
def changes_sql_agrees(ctx):
    """msgsync_changes() and sync-changes give the same lines, page after
    page; the function's last row carries next and has_more."""
    loaded(ctx)
    since = "0"
    for _ in range(100):
        sql = ctx.sql("SET TIME ZONE 'UTC'; SELECT CASE WHEN \"table\" IS NULL THEN row::text ELSE"
                      " '{\"table\":\"' || \"table\" || '\",\"seq\":' || seq ||"
                      " ',\"row\":' || row::text || '}' END"
                      " FROM msgsync_changes('%s', 9)" % since).split("\n")
        r = ctx.run("sync-changes", "--since", since, "--limit", "9")
        r.expect_rc(0)
        cli = r.out.rstrip("\n").split("\n")
        eq(cli[:-1], sql[:-1], "changes after %s: sync-changes vs msgsync_changes()" % since)
        a, b = json.loads(cli[-1]), json.loads(sql[-1])
        eq(a["has_more"], b["has_more"], "has_more of both")
        if not a["has_more"]:
            break
        eq(a, b, "next of both")
        since = a["next"]
    else:
        raise Fail("the feed never ended")
    # NULL, '' and '0' are the beginning; NULL max is 1000.
    n = ctx.sql("SELECT count(*) FROM msgsync_changes(NULL, NULL)")
    eq(ctx.sql("SELECT count(*) FROM msgsync_changes('', 1000)"), n, "'' as the beginning")
    eq(ctx.sql("SELECT count(*) FROM msgsync_changes('0', 1000)"), n, "'0' as the beginning")


@test
def changes_usage(ctx):
    """A malformed position, a missing --since, an unknown table or source,
    a bad --limit: exit 64 naming it; SQL raises naming it. A database
    without the schema: no change, next 0. One that cannot be reached: 75."""
    loaded(ctx, messages=3)
    for bad in ("x", "1", "v1.1", "v1.a.2", "v2.1.2", "v1.1.2x", "-1", "",
                "v1.1234567890123456789.1"):
        r = ctx.run("sync-changes", "--since", bad)
        r.expect_rc(64)
        eq(r.out, "", "stdout for --since %r" % bad)
        check("'%s'" % bad in r.err, "the error does not name %r" % bad, r.desc())
        if bad:
            p = sql_error(ctx, "SELECT * FROM msgsync_changes('%s', 10)" % bad)
            check("malformed position '%s'" % bad in p, "SQL does not name %r" % bad, p)
    for args, word in ((("--limit", "10"), "--since"),
                       (("--since", "0", "--table", "person"), "person"),
                       (("--since", "0", "--limit", "0"), "'0'"),
                       (("--since", "0", "--limit", "-5"), "'-5'"),
                       (("--since", "0", "--limit", "many"), "many"),
                       (("--since", "0", "-s", "nosuch"), "nosuch"),
                       (("--since", "0", "extra"), "extra")):
        r = ctx.run("sync-changes", *args)
        r.expect_rc(64)
        check(word in r.err, "the error does not name %s" % word, r.desc())
    for sql, word in (("msgsync_changes('0', 10, ARRAY['person'])", "person"),
                      ("msgsync_changes('0', 0)", "max 0")):
        p = sql_error(ctx, "SELECT * FROM " + sql)
        check(word in p, "SQL %s does not name %s" % (sql, word))
    # No schema: nothing yet, from the beginning.
    ctx.cluster.createdb(ctx.db + "_empty")
    empty = ctx.config(name="empty.conf", db=ctx.db + "_empty")
    ch, last = feed(ctx, "0", cfg=empty)
    eq((ch, last), ([], {"next": "0", "has_more": False}), "the feed of an empty database")
    eq(ctx.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
               db=ctx.db + "_empty"), "0", "tables after sync-changes")
    bad = ctx.config(name="bad.conf")
    text = open(bad).read().replace("port=%s " % ctx.cluster.env["PGPORT"],
                                    "port=%d " % free_port())
    with open(bad, "w") as f:
        f.write(text)
    r = ctx.run("sync-changes", "--since", "0", cfg=bad)
    r.expect_rc(75)
    eq(r.out, "", "stdout without a database")


class Session:
    """A psql session kept open: statements sent one at a time, each
    answered before the next (a transaction can stay open across them)."""

    def __init__(self, ctx):
        env = dict(os.environ)
        env.update(ctx.cluster.env)
        env["PGDATABASE"] = ctx.db
        self.p = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)
        ctx.cleanup.append(self.close)

    def do(self, sql):
        self.p.stdin.write(sql.rstrip(";") + ";\n\\echo __done__\n")
        self.p.stdin.flush()
        out = []
        while True:
            line = self.p.stdout.readline()
            if line == "":
                raise Fail("the psql session ended: %s" % self.p.stderr.read())
            if line.rstrip("\n") == "__done__":
                return out
            out.append(line.rstrip("\n"))

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(timeout=30)


def insert(sid, ext, body="x"):
    return ("INSERT INTO message (source_id, external_id, body) VALUES (%d, '%s', '%s')"
            " RETURNING id, seq" % (sid, ext, body))


@test
def changes_out_of_order(ctx):
    """T1 inserts a message and stays open; T2 inserts another and commits
    (T2's seq is higher). The feed does not pass T1's position: T2's row
    waits. Once T1 commits, following next returns both. A reader of
    "seq > the highest seq seen" would have taken T2's row and then skipped
    T1's for ever."""
    loaded(ctx, messages=3)
    _, nxt = follow(ctx)
    sid = int(ctx.sql("SELECT id FROM source WHERE name = 'wa'"))
    t1 = Session(ctx)
    t1.do("BEGIN")
    id1, seq1 = map(int, t1.do(insert(sid, "t1"))[0].split("|"))
    xid1 = int(t1.do("SELECT pg_current_xact_id()")[0])
    id2, seq2 = map(int, ctx.sql(insert(sid, "t2")).split("\n")[0].split("|"))
    check(seq1 < seq2, "T1 took no lower seq than T2 (%d, %d)" % (seq1, seq2))
    # The naive reader: T2 is committed, so it sees seq2 and moves past it.
    naive = int(ctx.sql("SELECT max(seq) FROM message"))
    eq(naive, seq2, "the highest committed seq")
    for _ in range(2):
        ch, last = feed(ctx, nxt)
        eq(ch, [], "changes while T1 is open (T2's must wait)")
        eq(last["has_more"], False, "has_more while T1 is open")
        m = TOKEN.match(last["next"])
        check(m and int(m.group(1)) <= xid1, "next passed T1's position", last, xid1)
        eq(ctx.sql("SELECT count(*) FROM msgsync_changes('%s', 10) WHERE \"table\""
                   " IS NOT NULL" % nxt), "0", "msgsync_changes() while T1 is open")
        nxt = last["next"]
    t1.do("COMMIT")
    ch, nxt = follow(ctx, nxt)
    eq(sorted(keyed(ch)), sorted([("message", id1), ("message", id2)]),
       "changes after T1 committed")
    eq(ctx.sql("SELECT count(*) FROM message WHERE seq > %d AND id = %d" % (naive, id1)), "0",
       "the naive reader would see T1's row (the premise of this test)")
    eq(follow(ctx, nxt)[0], [], "changes after both")


WRITER = r"""
import random, subprocess, sys
seed, n, sid, w = map(int, sys.argv[1:5])
convs = [int(x) for x in sys.argv[5].split(",")]
rnd = random.Random(seed)
sql = []
for i in range(n):
    hold = rnd.random() < 0.1
    sql.append("BEGIN;")
    k = rnd.randint(1, 3)
    for j in range(k):
        if i > 3 and rnd.random() < 0.4:
            sql.append("UPDATE message SET body = 'w%d-%d-%d' WHERE external_id = 'w%d-%d';"
                       % (w, i, j, w, rnd.randrange(i)))
        else:
            sql.append("INSERT INTO message (source_id, external_id, body) VALUES"
                       " (%d, 'w%d-%d%s', 'new') ON CONFLICT (source_id, external_id)"
                       " DO UPDATE SET body = 'again-%d';" % (sid, w, i, "" if j == 0 else "-%d" % j, i))
    # At most one shared row per transaction, last: no deadlock.
    if rnd.random() < 0.3:
        sql.append("UPDATE conversation SET title = 'c%d-%d' WHERE id = %d;"
                   % (w, i, rnd.choice(convs)))
    sql.append("SELECT pg_sleep(%.3f);" % (rnd.uniform(0.2, 0.5) if hold else rnd.uniform(0, 0.02)))
    sql.append("COMMIT;")
sys.stdout.write("\n".join(sql) + "\n")
"""


@test
def changes_concurrent_stress(ctx):
    """Four writers, each many small transactions (inserts, updates of
    their own and shared rows, some held open a while, commits in no
    particular order) while a follower loops sync-changes --since next.
    At the end the follower has seen every row at its final seq, no
    (row, seq) twice, and positions only ascending."""
    loaded(ctx, messages=5, conversations=3)
    convs = ctx.sql("SELECT string_agg(id::text, ',') FROM conversation")
    sid = int(ctx.sql("SELECT id FROM source WHERE name = 'wa'"))
    env = dict(os.environ)
    env.update(ctx.cluster.env)
    env["PGDATABASE"] = ctx.db
    seed = e2e.SEED if e2e.SEED is not None else 1
    writers = []
    for w in range(4):
        script = subprocess.run(["python3", "-c", WRITER, str(seed * 10 + w), "60", str(sid),
                                 str(w), convs], capture_output=True, text=True, check=True).stdout
        path = os.path.join(ctx.dir, "writer%d.sql" % w)
        with open(path, "w") as f:
            f.write(script)
        p = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", path],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        ctx.procs.append(p)
        writers.append(p)
    seen = {}           # (table, id) -> [seq, ...] in the order seen
    since, calls, positions = "0", 0, []
    rnd = random.Random(seed)

    def take(changes):
        for c in changes:
            seen.setdefault((c["table"], c["row"]["id"]), []).append(c["seq"])
            positions.append(position(c))
    deadline = time.monotonic() + 60
    while any(p.poll() is None for p in writers):
        check(time.monotonic() < deadline, "the writers did not finish within 60 s")
        ch, last = feed(ctx, since, "--limit", str(rnd.choice((3, 10, 50))))
        take(ch)
        since = last["next"]
        calls += 1
    for p in writers:
        eq(p.wait(), 0, "a writer's exit status (%s)" % p.stderr.read().strip()[:300])
    ch, since = follow(ctx, since)      # everything has ended: the rest
    take(ch)
    check(all(a < b for a, b in zip(positions, positions[1:])),
          "positions went backwards or repeated across calls")
    twice = {k: v for k, v in seen.items() if len(v) != len(set(v))}
    check(not twice, "%d rows returned twice at one seq" % len(twice), list(twice.items())[:3])
    state = db_state(ctx)
    missing = {k: s for k, s in state.items() if k not in seen}
    stale = {k: (seen[k][-1], s) for k, s in state.items() if k in seen and seen[k][-1] != s}
    eq(stale, {}, "rows whose last seq seen is not their final one")
    eq(missing, {}, "rows changed and never seen")
    extra = set(seen) - set(state)
    eq(extra, set(), "rows seen that are not in the store")
    written = int(ctx.sql("SELECT count(*) FROM message WHERE external_id LIKE 'w%'"))
    check(written >= 4 * 60, "too few messages written (%d)" % written)
    check(all(("message", int(i)) in seen for i in
              ctx.sql("SELECT id FROM message WHERE external_id LIKE 'w%'").split("\n")),
          "a written message was never seen")
    if e2e.VERBOSE:
        print("    %d calls, %d changes, %d rows" % (calls, len(positions), len(seen)))
