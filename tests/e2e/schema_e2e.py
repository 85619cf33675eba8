"""End-to-end tests of the store's schema itself (SPEC §6): a COMMENT on
every table, view and column; message_status_history of every source type
with delivery statuses; the views conversation_overview and person_message,
their answers and their plans.  Run them with
    python3 tests/e2e/run.py --filter schema_  (or status_history_, view_)
"""

import __main__ as e2e
import smseagle_e2e as sms
import unipile_e2e as uni

test, check, eq, Fail = e2e.test, e2e.check, e2e.eq, e2e.Fail

# Tables and views of the public schema, and their columns, without a
# comment.  Temporary tables (the stage tables) live in a pg_temp schema.
UNCOMMENTED = """
SELECT c.relname AS rel, NULL AS col FROM pg_class c
 JOIN pg_namespace n ON n.oid = c.relnamespace
 LEFT JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass
  AND d.objsubid = 0
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND c.relpersistence <> 't' AND coalesce(btrim(d.description), '') = ''
UNION ALL
SELECT c.relname, a.attname FROM pg_class c
 JOIN pg_namespace n ON n.oid = c.relnamespace
 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 LEFT JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass
  AND d.objsubid = a.attnum
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND c.relpersistence <> 't' AND coalesce(btrim(d.description), '') = ''
ORDER BY 1, 2 NULLS FIRST"""


def uncommented(ctx):
    return ["%s.%s" % (r["rel"], r["col"]) if r["col"] else r["rel"]
            for r in ctx.sql_json(UNCOMMENTED)]


@test
def schema_touch_columns(ctx):
    """message_touch names message's columns (a WHEN may not read a
    generated column in NEW): every column but the ones the trigger sets
    and the generated body_tsv is compared, so that a real change of any
    of them moves the row in the change feed, and an UPDATE that changes
    none does not."""
    ctx.setup(conversations=2, messages=5, contacts=2)
    ctx.config()
    e2e.ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    when = ctx.sql("SELECT pg_get_triggerdef(oid) FROM pg_trigger"
                   " WHERE tgname = 'message_touch'")
    cols = ctx.sql("SELECT string_agg(column_name, ',') FROM information_schema.columns"
                   " WHERE table_name = 'message'").split(",")
    for c in cols:
        if c in ("seq", "updated_at", "txid", "body_tsv"):
            continue
        check("new.%s" % c in when.lower(), "message_touch does not compare %s" % c, when)
    ctx.sql("UPDATE message SET body = body")
    mid = int(ctx.sql("SELECT min(id) FROM message"))
    seq = ctx.sql("SELECT seq FROM message WHERE id = %d" % mid)
    ctx.sql("UPDATE message SET body = body, raw = raw WHERE id = %d" % mid)
    eq(ctx.sql("SELECT seq FROM message WHERE id = %d" % mid), seq, "seq after a no-op")
    ctx.sql("UPDATE message SET folder = 'x' WHERE id = %d" % mid)
    check(int(ctx.sql("SELECT seq FROM message WHERE id = %d" % mid)) > int(seq),
          "seq after a change")


@test
def schema_comments(ctx):
    """Every table, view and column of the schema has a COMMENT (a new
    migration must add its own): the test names each one without."""
    ctx.setup(conversations=2, messages=5, contacts=2)
    ctx.config()
    e2e.ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    n = int(ctx.sql("SELECT count(*) FROM pg_class c JOIN pg_namespace n"
                    " ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                    " AND c.relkind IN ('r', 'v')"))
    check(n >= 20, "only %d tables and views in the public schema" % n)
    missing = uncommented(ctx)
    check(not missing, "%d tables, views or columns without a COMMENT (add one in the"
          " migration that creates them): %s" % (len(missing), ", ".join(missing)))
    # The check sees what it must: a table and a column without a comment.
    ctx.sql("CREATE TABLE schema_probe (a int); ALTER TABLE message ADD COLUMN probe int;"
            " CREATE VIEW schema_probe_v AS SELECT 1 AS one;"
            " COMMENT ON VIEW schema_probe_v IS 'x'")
    eq(uncommented(ctx), ["message.probe", "schema_probe", "schema_probe.a",
                          "schema_probe_v.one"], "uncommented after adding some")



# -- message_status_history ---------------------------------------------------

def history(ctx, source, ext):
    """The status history of one message, oldest observation first."""
    return ctx.sql_json(
        "SELECT h.status, h.status_at, h.observed_at FROM message_status_history h"
        " JOIN message m ON m.id = h.message_id JOIN source s ON s.id = m.source_id"
        " WHERE s.name = '%s' AND m.external_id = '%s'"
        " ORDER BY h.observed_at, h.status_at" % (source, ext))


def expect_history(ctx, source, ext, want, what):
    """The message's history is want (statuses, in order), each observed in a
    later transaction than the one before; returns it."""
    h = history(ctx, source, ext)
    eq([r["status"] for r in h], want, "%s: history of %s" % (what, ext))
    for a, b in zip(h, h[1:]):
        check(a["observed_at"] < b["observed_at"],
              "%s: %s observed at %s, not before %s observed at %s"
              % (what, a["status"], a["observed_at"], b["status"], b["observed_at"]))
    return h


def unchanged_adds_nothing(ctx, source, passes):
    """Passes over unchanged data add no history row."""
    n = ctx.count("message_status_history")
    for p in passes:
        r = ctx.run(*p)
        r.expect_rc(0)
    eq(ctx.count("message_status_history"), n, "history rows after passes over unchanged"
       " data (%s)" % ", ".join(" ".join(p) for p in passes))


@test
def status_history_seqapi(ctx):
    """seqapi: a message seen pending, then sent, then delivered (each read by
    incr-sync) has the three in its history, in order; re-reads add nothing."""
    ctx.setup(conversations=3, messages=30, contacts=5)
    ctx.config()
    e2e.ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    # m21: from me, pending (the fake's status of index 21).
    eq(ctx.sql("SELECT status FROM message WHERE external_id = 'm21'"), "pending",
       "m21 first stored")
    before = ctx.count("message_status_history")
    eq(before, ctx.count("message", "status IS NOT NULL"),
       "one history row per message with a status after the first load")
    expect_history(ctx, "wa", "m21", ["pending"], "first load")
    for st in ("sent", "delivered"):
        ctx.fake.edit("messages", indexes=[21], kind="status", status=st)
        r = ctx.run("incr-sync", "-j")
        e2e.ok_pass(r, "incr-sync")
        eq(r.stream("messages")["updated"], 1, "messages updated by the %s" % st)
    h = expect_history(ctx, "wa", "m21", ["pending", "sent", "delivered"], "after two")
    # seqapi gives no status time: status_at is when msgsync saw it.
    eq([r["status_at"] for r in h], [r["observed_at"] for r in h], "status_at")
    eq(ctx.count("message_status_history"), before + 2, "history rows")
    # An edit of the text alone is no status change.
    ctx.fake.edit("messages", indexes=[21])
    e2e.ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    unchanged_adds_nothing(ctx, "wa", [("incr-sync", "-j"), ("full-sync", "-j")])
    expect_history(ctx, "wa", "m21", ["pending", "sent", "delivered"], "at the end")


@test
def status_history_smseagle(ctx):
    """SMSEagle: an SMS queued (outbox, reserved), sent (sending_ok) and
    delivered (delivery_ok, learnt by status-poll) has the three in its
    history, in order, with the device's times; re-reads add nothing."""
    fake = sms.sms_setup(ctx)
    sms.sms_config(ctx)
    ids = fake.send(2, validity="1h")
    e2e.ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    fake.move(ids, "sending_ok")
    e2e.ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    fake.report(ids[:1], "delivery_ok")
    fake.report(ids[1:], "delivery_failed")
    r = ctx.run("status-poll", "-j")
    r.expect_rc(0)
    eq(r.source("sms")["finalized"], 2, "finalized by status-poll")
    dev = {x["id"]: x for x in fake.dump("sent")}
    for i, final in zip(ids, ("delivery_ok", "delivery_failed")):
        h = expect_history(ctx, "sms", str(i), ["reserved", "sending_ok", final],
                           "message %d" % i)
        eq(sms.pg_time(h[-1]["status_at"]), sms.utc(dev[i]["delivery_date"]),
           "message %d: the time of its report" % i)
        check(sms.pg_time(h[0]["status_at"]) <= sms.pg_time(h[1]["status_at"]),
              "message %d: queued after it was sent" % i, h)
    unchanged_adds_nothing(ctx, "sms", [("incr-sync", "-j"), ("status-poll", "-j"),
                                        ("full-sync", "-j")])
    eq(ctx.count("message_status_history"), 6, "history rows")


@test
def status_history_unipile(ctx):
    """Unipile: an outgoing message seen delivered, then seen (read) by the
    other party, as incr-sync re-reads it within its lookback, has both in
    its history, in order; re-reads add nothing."""
    fake = uni.uni_setup(ctx, chats=0, messages=0)
    uni.uni_config(ctx)
    chat = fake.chat()["ids"][0]
    mid = fake.message(chat, **{"from": "self", "text": "hello", "delivered": 1,
                                "seen": 0})[0]
    e2e.ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    expect_history(ctx, "uni", mid, ["delivered"], "first pass")
    fake.post("edit_message", id=mid, fields={"seen": 1, "edited": 0})
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r, "incr-sync")
    expect_history(ctx, "uni", mid, ["delivered", "seen"], "after it was read")
    unchanged_adds_nothing(ctx, "uni", [("incr-sync", "-j"), ("full-sync", "-j")])
    expect_history(ctx, "uni", mid, ["delivered", "seen"], "at the end")


@test
def status_history_append_only(ctx):
    """Whoever writes message (here an operator's UPDATE): a status going
    back to an earlier value is a new observation; no row is ever removed
    or rewritten, and a message without a status has no history."""
    ctx.setup(conversations=2, messages=10, contacts=3)
    ctx.config()
    e2e.ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    rows0 = ctx.sql_json("SELECT * FROM message_status_history ORDER BY message_id")
    mid = ctx.sql("SELECT id FROM message WHERE external_id = 'm5'")
    eq(ctx.sql("SELECT status FROM message WHERE id = %s" % mid), "pending", "m5")
    for st, at in (("sent", "10:00"), ("delivered", "10:05"), ("sent", "10:00"),
                   ("sent", "10:07"), ("failed", "10:09")):
        ctx.sql("UPDATE message SET status = '%s', status_at = '2026-01-01 %s+00'"
                " WHERE id = %s" % (st, at, mid))
    # The same (status, status_at) as an earlier row is that observation
    # again; back to sent at another time is a new one.
    got = ctx.sql_json("SELECT status, to_char(status_at AT TIME ZONE 'UTC', 'HH24:MI')"
                       " AS at FROM message_status_history WHERE message_id = %s"
                       " ORDER BY observed_at, status_at" % mid)
    eq([(g["status"], g["at"]) for g in got][1:],
       [("sent", "10:00"), ("delivered", "10:05"), ("sent", "10:07"), ("failed", "10:09")],
       "m5's history after the first load's")
    eq(got[0]["status"], "pending", "m5's first status")
    ctx.sql("UPDATE message SET status = NULL, status_at = NULL WHERE id = %s" % mid)
    ctx.sql("UPDATE message SET body = 'x' WHERE external_id = 'm6'")
    eq(ctx.sql_json("SELECT * FROM message_status_history WHERE message_id <> %s"
                    " ORDER BY message_id" % mid),
       [r for r in rows0 if str(r["message_id"]) != mid], "the other messages' history")
    eq(ctx.count("message_status_history", "message_id = %s" % mid), 5,
       "m5's history after its status was cleared")
    # A deleted message takes its history with it.
    n = ctx.count("message_status_history")
    ctx.sql("DELETE FROM message WHERE id = %s" % mid)
    eq(ctx.count("message_status_history"), n - 5, "history rows after m5 was deleted")


# -- the views ----------------------------------------------------------------

def want_overview(ctx, source):
    """conversation_overview computed from the tables, by conversation id."""
    convs = ctx.sql_json(
        "SELECT c.id, c.external_id, c.title, c.kind, c.unread_count, c.is_read,"
        " c.archived, c.last_message_at FROM conversation c JOIN source s"
        " ON s.id = c.source_id WHERE s.name = '%s'" % source)
    msgs = ctx.sql_json(
        "SELECT m.id, m.conversation_id, m.sent_at, extract(epoch FROM m.sent_at)"
        " AS ts, m.body, m.direction, k.display_name, k.person_id FROM message m"
        " LEFT JOIN contact k ON k.id = m.sender_contact_id WHERE m.deleted_at IS NULL")
    last = {}
    for m in msgs:
        key = (m["ts"] is not None, m["ts"] or 0, m["id"])
        if m["conversation_id"] not in last or key > last[m["conversation_id"]][0]:
            last[m["conversation_id"]] = (key, m)
    want = {}
    for c in convs:
        m = last.get(c["id"], (None, {}))[1]
        want[c["id"]] = dict(
            id=c["id"], source=source, external_id=c["external_id"], title=c["title"],
            kind=c["kind"], unread_count=c["unread_count"], is_read=c["is_read"],
            archived=c["archived"],
            last_message_at=m.get("sent_at") or c["last_message_at"],
            last_message_body=m.get("body"), last_message_direction=m.get("direction"),
            last_message_sender=m.get("display_name"),
            last_message_person_id=m.get("person_id"))
    return want


@test
def view_conversation_overview(ctx):
    """conversation_overview: per conversation its last message not deleted
    (latest sent_at, ties by the last stored, one without sent_at only when
    none has one), its sender and person, the unread count."""
    ctx.setup(conversations=6, messages=300, contacts=10)
    ctx.config()
    e2e.ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    conv = {r["external_id"]: r["id"] for r in ctx.sql_json(
        "SELECT external_id, id FROM conversation")}
    # c0's last message is deleted upstream: the one before it is its last.
    last0 = ctx.sql("SELECT external_id FROM message WHERE conversation_id = %d"
                    " ORDER BY sent_at DESC LIMIT 1" % conv["c0"])
    ctx.fake.edit("messages", ids=[last0], kind="delete")
    e2e.ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    # c1: a message stored later with the same time as its last: it wins;
    # and one without a time, which does not.  c2: its only messages
    # have no time.  A conversation with no message at all.
    ctx.sql("INSERT INTO message (source_id, external_id, conversation_id,"
            " sender_contact_id, direction, body, sent_at)"
            " SELECT source_id, 'tie', conversation_id, NULL, 'out', 'the tie', sent_at"
            " FROM message WHERE conversation_id = %d ORDER BY sent_at DESC LIMIT 1;"
            " INSERT INTO message (source_id, external_id, conversation_id, body)"
            " SELECT source_id, 'notime', %d, 'no time' FROM conversation LIMIT 1;"
            " UPDATE message SET sent_at = NULL WHERE conversation_id = %d;"
            " INSERT INTO conversation (source_id, external_id, title, last_message_at)"
            " SELECT source_id, 'empty', 'Empty', '2026-01-02 03:04:05+00'"
            " FROM conversation LIMIT 1;"
            " INSERT INTO person (display_name) VALUES ('P');"
            " UPDATE contact SET person_id = (SELECT max(id) FROM person)"
            " WHERE external_id = 'k2'" % (conv["c1"], conv["c1"], conv["c2"]))
    got = {r["id"]: r for r in ctx.sql_json("SELECT * FROM conversation_overview")}
    want = want_overview(ctx, "wa")
    eq(sorted(got), sorted(want), "conversations in the overview")
    for i in want:
        eq(got[i], want[i], "overview of conversation %d" % i)
    by = {r["external_id"]: r for r in got.values()}
    eq(by["c1"]["last_message_body"], "the tie", "c1's last message (a tie on sent_at)")
    c2_last = ctx.sql("SELECT body FROM message WHERE conversation_id = %d"
                      " AND deleted_at IS NULL ORDER BY id DESC LIMIT 1" % conv["c2"])
    eq(by["c2"]["last_message_body"], c2_last or None,
       "c2's last message (none has a time: the last stored)")
    eq((by["empty"]["last_message_at"], by["empty"]["last_message_body"]),
       ("2026-01-02T03:04:05+00:00", None), "a conversation without messages")
    check(any(r["last_message_person_id"] for r in got.values()),
          "no last message from the person of k2", want)
    deleted = ctx.sql("SELECT body FROM message WHERE external_id = '%s'" % last0)
    check(by["c0"]["last_message_body"] != deleted or deleted == "",
          "c0's last message is the deleted one")


SMS_NUMBER = "+48500100200"


def person_setup(ctx, messages=200, contacts=8):
    """An SMSEagle source (sms) and a seqapi source (wa); one person joins
    the SMS number SMS_NUMBER and the seqapi contact k3.  Returns its id."""
    fake = sms.sms_setup(ctx, name="sms")
    ctx.fake = None
    wa = ctx.new_fake(name="wa", conversations=5, messages=messages, contacts=contacts)
    fake.inbox(3, number=SMS_NUMBER, step=60)
    fake.inbox(2, number="+48500100999")
    ids = fake.send(2, number=SMS_NUMBER)
    fake.move(ids, "sending_ok")
    fake.send(1, number="+48500100999")
    ctx.config(sources=[sms.sms_source(ctx, fake=fake), ctx.source_cfg(fake=wa)])
    e2e.ok_pass(ctx.run("incr-sync", "-j"), "incr-sync")
    return int(ctx.sql(
        "INSERT INTO person (display_name) VALUES ('Ann') RETURNING id;"
        " UPDATE contact k SET person_id = currval('person_id_seq') FROM source s"
        " WHERE s.id = k.source_id AND ((s.name = 'sms' AND k.external_id = '%s')"
        " OR (s.name = 'wa' AND k.external_id = 'k3'))" % SMS_NUMBER).split("\n")[0])


@test
def view_person_message(ctx):
    """person_message: a person's messages across two sources, those it sent
    (an SMS number's inbox, a seqapi contact's messages) and those sent to
    it in its SMS number's thread; nothing of anyone else."""
    pid = person_setup(ctx)
    got = ctx.sql_json("SELECT role, source, external_id, direction, body, message_id,"
                       " contact_id FROM person_message WHERE person_id = %d" % pid)
    # From the tables: sent by one of its contacts, or outgoing in the
    # conversation named by one of them.
    want = ctx.sql_json(
        "SELECT CASE WHEN m.sender_contact_id = k.id THEN 'from' ELSE 'to' END AS role,"
        " s.name AS source, m.external_id, m.direction, m.body, m.id AS message_id,"
        " k.id AS contact_id FROM contact k JOIN source s ON s.id = k.source_id"
        " JOIN message m ON m.source_id = k.source_id"
        " LEFT JOIN conversation c ON c.id = m.conversation_id"
        " WHERE k.person_id = %d AND (m.sender_contact_id = k.id"
        " OR (m.direction = 'out' AND c.external_id = k.external_id))" % pid)

    def key(r):
        return (r["source"], r["external_id"], r["role"])
    eq(sorted(got, key=key), sorted(want, key=key), "person_message of the person")
    roles = sorted({(r["source"], r["role"]) for r in got})
    eq(roles, [("sms", "from"), ("sms", "to"), ("wa", "from")], "sources and roles")
    eq(len([r for r in got if r["source"] == "sms"]), 5, "SMS messages (3 in, 2 out)")
    eq(len([r for r in got if r["source"] == "wa"]),
       ctx.count("message m JOIN contact k ON k.id = m.sender_contact_id",
                 "k.external_id = 'k3' AND m.source_id = k.source_id"), "seqapi messages")
    eq(ctx.count("person_message", "person_id <> %d AND contact_id IN (SELECT id FROM"
                 " contact WHERE person_id = %d)" % (pid, pid)), 0,
       "its contacts' rows under another person")


def plan(ctx, q):
    return ctx.sql("EXPLAIN " + q)


@test
def view_plans(ctx):
    """With thousands of messages (analysed), a person's messages and a page
    of a source's overview read message through indexes only, and the
    overview reads a few messages per conversation, not all of them."""
    pid = person_setup(ctx, messages=6000, contacts=500)
    check(ctx.count("message") > 6000, "messages stored")
    ctx.sql("INSERT INTO person (display_name) SELECT 'x' || g FROM generate_series(1, 200) g;"
            " UPDATE contact SET person_id = (SELECT max(id) FROM person) - (id % 200)"
            " WHERE person_id IS NULL; ANALYZE")
    for q in ("SELECT * FROM person_message WHERE person_id = %d" % pid,
              "SELECT * FROM conversation_overview WHERE source = 'wa'"
              " ORDER BY last_message_at DESC LIMIT 20",
              "SELECT * FROM conversation_overview WHERE source = 'sms'"
              " ORDER BY last_message_at DESC LIMIT 20"):
        p = plan(ctx, q)
        check("Seq Scan on message" not in p, "a sequential scan of message", q, p)
    # The overview of the 5 conversations of wa reads about one message
    # each (plus ties), not the 6,000.
    a = ctx.sql("EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM conversation_overview"
                " WHERE source = 'wa' ORDER BY last_message_at DESC LIMIT 20")
    import json
    rows = []

    def walk(n):
        if n.get("Relation Name") == "message":
            rows.append(n.get("Actual Rows", 0) * n.get("Actual Loops", 1))
        for c in n.get("Plans", []):
            walk(c)
    walk(json.loads(a)[0]["Plan"])
    check(rows and sum(rows) <= 50, "the overview read %d messages" % sum(rows), a[:3000])
