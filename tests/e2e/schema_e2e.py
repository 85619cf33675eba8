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
