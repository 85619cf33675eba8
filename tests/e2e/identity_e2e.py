"""End-to-end tests of one person across sources (SPEC §6, msgsync(7)
PEOPLE): the identity resolution at the end of every pass, over a seqapi
source (WhatsApp numbers, some without their '+') and an SMSEagle device.
Run them with  python3 tests/e2e/run.py --filter identity_
"""

import re

import __main__ as e2e
import smseagle_e2e as sms

test, check, eq, Fail = e2e.test, e2e.check, e2e.eq, e2e.Fail


def setup(ctx, cc=None, contacts=10, numbers=("+491510000001", "+491510000003")):
    """seqapi "wa" (contacts k0..k9: even ones "+49151000000i", odd ones
    "49151000000i", k4 and k9 none) and smseagle "sms" with one inbox
    message from each of numbers."""
    ctx.cluster.createdb(ctx.db)
    ctx.fake = ctx.new_fake(conversations=2, messages=5, contacts=contacts)
    ctx.sms = ctx.new_fake(kind=sms.SmsFake, name="sms", inbox=0)
    for n in numbers:
        ctx.sms.inbox(number=n, text="hello from %s" % n)
    write_config(ctx, cc)


def write_config(ctx, cc):
    ctx.config(sources=[ctx.source_cfg(), sms.sms_source(ctx, fake=ctx.sms)])
    if cc is not None:
        with open(ctx.cfg, "a") as f:
            f.write("identity = { default_calling_code = %d; };\n" % cc)


def contact(ctx, source, ext):
    r = ctx.sql_json(
        "SELECT k.id, k.phone, k.person_id, k.seq, l.reason, l.evidence,"
        " l.person_id AS link_person FROM contact k JOIN source s ON s.id = k.source_id"
        " LEFT JOIN person_link l ON l.contact_id = k.id"
        " WHERE s.name = '%s' AND k.external_id = '%s'" % (source, ext))
    check(r, "no contact %s/%s" % (source, ext))
    return r[0]


def invariant(ctx, what):
    """Every contact has a person, and a link that names it."""
    bad = ctx.sql_json(
        "SELECT k.id, k.person_id, l.person_id AS link FROM contact k"
        " LEFT JOIN person_link l ON l.contact_id = k.id"
        " LEFT JOIN person p ON p.id = k.person_id"
        " WHERE p.id IS NULL OR l.person_id IS DISTINCT FROM k.person_id")
    eq(bad, [], what + ": contacts without a person or its link")
    empty = ctx.sql_json("SELECT p.id FROM person p WHERE NOT EXISTS"
                         " (SELECT 1 FROM contact k WHERE k.person_id = p.id)")
    eq(empty, [], what + ": persons without contacts")


def run_ok(ctx, *args):
    r = ctx.run(*args, "-j", "-v")
    r.expect_rc(0)
    j = r.json
    eq(j.get("status"), "ok", "%s status" % args[0])
    return r


def decided(r):
    m = re.search(r"identity: (\d+) contact\(s\) decided", r.err)
    check(m, "no identity line at -v", r.err)
    return int(m.group(1))


def snapshot(ctx):
    return ctx.sql_json(
        "SELECT 'c' AS tbl, id, seq FROM contact UNION ALL"
        " SELECT 'p', id, seq FROM person UNION ALL"
        " SELECT 'l', contact_id, seq FROM person_link ORDER BY 1, 2")


@test
def identity_across_sources(ctx):
    """The same customer as a WhatsApp contact without '+' and as an SMS
    sender with it: one person, linked by the number."""
    setup(ctx)
    run_ok(ctx, "full-sync")
    invariant(ctx, "after full-sync")
    wa, sm = contact(ctx, "wa", "k1"), contact(ctx, "sms", "+491510000001")
    eq(wa["phone"], "+491510000001", "the WhatsApp number in E.164")
    eq(wa["person_id"], sm["person_id"], "one person across sources")
    eq((wa["reason"], wa["evidence"]), ("phone", "+491510000001"), "k1's link")
    eq((sm["reason"], sm["evidence"]), ("phone", "+491510000001"), "the SMS sender's link")
    eq(ctx.sql("SELECT phone FROM person WHERE id = %d" % wa["person_id"]),
       "+491510000001", "person.phone")
    eq(ctx.sql("SELECT display_name FROM person WHERE id = %d" % wa["person_id"]),
       "Contact 1", "person.display_name (the first name of its contacts)")
    k0 = contact(ctx, "wa", "k0")
    eq((k0["reason"], k0["evidence"]), ("single", None), "a contact alone")
    check(k0["person_id"] != wa["person_id"], "k0 has a person of its own")
    # The view: the SMS and the WhatsApp side of the person.
    eq(ctx.sql("SELECT body FROM person_message WHERE person_id = %d AND"
               " source = 'sms' AND role = 'from'" % wa["person_id"]),
       "hello from +491510000001", "the person's SMS in person_message")
    # Nothing changed: nothing decided, no row renumbered.
    before = snapshot(ctx)
    state = ctx.sql_json("SELECT position, own_txid FROM identity_state")[0]
    r = run_ok(ctx, "incr-sync")
    eq(decided(r), 0, "contacts decided by a pass that changed none")
    eq(snapshot(ctx), before, "contact, person and person_link rows after an idle pass")
    check(ctx.sql_json("SELECT position FROM identity_state")[0]["position"] !=
          state["position"], "identity_state.position did not move")
    invariant(ctx, "after incr-sync")


@test
def identity_overrides(ctx):
    """An operator's link and unlink win in every later pass; removing one
    takes effect at the next pass of any kind, with nothing else changed."""
    setup(ctx)
    run_ok(ctx, "full-sync")
    k0, s0 = contact(ctx, "wa", "k0"), contact(ctx, "sms", "+491510000003")
    k1, s1 = contact(ctx, "wa", "k1"), contact(ctx, "sms", "+491510000001")
    check(k0["person_id"] != s0["person_id"], "k0 and the SMS sender start apart")
    eq(k1["person_id"], s1["person_id"], "k1 and its SMS sender start together")
    ctx.sql("INSERT INTO person_override (contact_id, other_contact_id, action, note)"
            " VALUES (%d, %d, 'link', 'same shop'), (%d, %d, 'unlink', 'shared phone')"
            % (k0["id"], s0["id"], k1["id"], s1["id"]))
    r = run_ok(ctx, "status-poll", "-s", "sms")
    check(decided(r) >= 4, "the four contacts of the overrides decided", r.err)
    k0, s0 = contact(ctx, "wa", "k0"), contact(ctx, "sms", "+491510000003")
    k1, s1 = contact(ctx, "wa", "k1"), contact(ctx, "sms", "+491510000001")
    eq(k0["person_id"], s0["person_id"], "linked by the operator")
    eq((k0["reason"], k0["evidence"]), ("manual", str(s0["id"])), "k0's link")
    eq((s0["reason"], s0["evidence"]), ("manual", str(k0["id"])), "the sender's link")
    check(k1["person_id"] != s1["person_id"], "unlinked by the operator")
    eq((k1["reason"], s1["reason"]), ("single", "single"), "unlinked contacts' reasons")
    invariant(ctx, "after the overrides")
    # Later passes, with changes from the upstream, keep them.
    ctx.sms.inbox(number="+491510000001", text="again")
    for cmd in ("incr-sync", "full-sync"):
        run_ok(ctx, cmd)
        k0, s0 = contact(ctx, "wa", "k0"), contact(ctx, "sms", "+491510000003")
        k1, s1 = contact(ctx, "wa", "k1"), contact(ctx, "sms", "+491510000001")
        eq(k0["person_id"], s0["person_id"], "the link after " + cmd)
        check(k1["person_id"] != s1["person_id"], "the unlink after " + cmd)
        invariant(ctx, "after " + cmd)
    # Removing an override: the next pass of any kind, nothing else changed.
    ctx.sql("DELETE FROM person_override WHERE action = 'unlink'")
    run_ok(ctx, "status-poll", "-s", "sms")
    k1, s1 = contact(ctx, "wa", "k1"), contact(ctx, "sms", "+491510000001")
    eq(k1["person_id"], s1["person_id"], "together again once the unlink is gone")
    eq(k1["reason"], "phone", "k1's reason once the unlink is gone")
    ctx.sql("DELETE FROM person_override")
    run_ok(ctx, "status-poll", "-s", "sms")
    k0, s0 = contact(ctx, "wa", "k0"), contact(ctx, "sms", "+491510000003")
    check(k0["person_id"] != s0["person_id"], "apart again once the link is gone")
    eq(ctx.count("person_queue"), 0, "person_queue emptied")
    invariant(ctx, "after the overrides went")


@test
def identity_calling_code(ctx):
    """A national number is linked only with identity.default_calling_code;
    setting it later resolves every contact again."""
    setup(ctx, numbers=("+491510000007",))
    run_ok(ctx, "full-sync")
    k2 = contact(ctx, "wa", "k2")
    # An operator (or another writer) stores a national number.
    ctx.sql("UPDATE contact SET phone = '0151 0000007' WHERE id = %d" % k2["id"])
    run_ok(ctx, "status-poll", "-s", "sms")
    k2, s7 = contact(ctx, "wa", "k2"), contact(ctx, "sms", "+491510000007")
    eq(k2["phone"], "0151 0000007", "a national number kept as given")
    check(k2["person_id"] != s7["person_id"], "no calling code: not linked")
    eq(k2["reason"], "single", "k2 alone")
    invariant(ctx, "without a calling code")
    write_config(ctx, 49)
    r = run_ok(ctx, "status-poll", "-s", "sms")
    eq(decided(r), ctx.count("contact"), "a new calling code decides every contact")
    k2, s7 = contact(ctx, "wa", "k2"), contact(ctx, "sms", "+491510000007")
    eq(k2["phone"], "+491510000007", "the national number in E.164 now")
    eq(k2["person_id"], s7["person_id"], "linked with the calling code")
    eq((k2["reason"], k2["evidence"]), ("phone", "+491510000007"), "k2's link")
    eq(ctx.sql("SELECT calling_code FROM identity_state"), "49",
       "identity_state.calling_code")
    invariant(ctx, "with a calling code")


@test
def identity_phone_change(ctx):
    """A contact whose number changes moves to the person of its new number;
    the person it leaves empty is removed."""
    setup(ctx, numbers=("+491510000001", "+491510000008"))
    run_ok(ctx, "full-sync")
    k2 = contact(ctx, "wa", "k2")
    old = k2["person_id"]
    eq(ctx.count("contact", "person_id = %d" % old), 1, "k2 alone in its person")
    ctx.sql("UPDATE contact SET phone = '+49 151 0000008' WHERE id = %d" % k2["id"])
    r = run_ok(ctx, "incr-sync")
    eq(decided(r), 1, "one contact changed, one decided")
    k2, s8 = contact(ctx, "wa", "k2"), contact(ctx, "sms", "+491510000008")
    eq(k2["phone"], "+491510000008", "the new number in E.164")
    eq(k2["person_id"], s8["person_id"], "k2 moved to the person of its new number")
    eq(ctx.count("person", "id = %d" % old), 0, "the person left empty is removed")
    invariant(ctx, "after the change")
    # Split: k1 leaves the number it shared.
    k1 = contact(ctx, "wa", "k1")
    ctx.sql("UPDATE contact SET phone = NULL WHERE id = %d" % k1["id"])
    run_ok(ctx, "incr-sync")
    k1, s1 = contact(ctx, "wa", "k1"), contact(ctx, "sms", "+491510000001")
    check(k1["person_id"] != s1["person_id"], "k1 without a number leaves the person")
    eq((k1["reason"], s1["reason"]), ("single", "single"), "both alone")
    invariant(ctx, "after the split")


@test
def identity_dry_run(ctx):
    """full-sync --dry-run resolves nothing (it writes nothing)."""
    setup(ctx)
    r = ctx.run("full-sync", "--dry-run", "-j", "-v")
    r.expect_rc(0)
    check("identity:" not in r.err, "a dry run resolved identities", r.err)


@test
def identity_database_error(ctx):
    """A database error in the resolution fails the pass (kind database, exit
    75, a line on stderr even with -q, the JSON's top-level error) and leaves
    the store as it was; the next pass resolves."""
    setup(ctx)
    run_ok(ctx, "full-sync")
    ctx.sql("CREATE FUNCTION e2e_refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN RAISE EXCEPTION 'e2e: no links today'; END $$;"
            " CREATE TRIGGER e2e_refuse BEFORE INSERT ON person_link"
            " FOR EACH ROW EXECUTE FUNCTION e2e_refuse()")
    before = snapshot(ctx)
    pos = ctx.sql("SELECT position FROM identity_state")
    ctx.sms.inbox(number="+48555000111", text="a new customer")
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(75)
    j = r.json
    eq(j.get("status"), "failed", "JSON status")
    eq((j.get("error") or {}).get("kind"), "database", "JSON error kind")
    check("no links today" in j["error"]["message"], "the cause in the JSON", j)
    eq(sorted(s["status"] for s in j["sources"]), ["ok", "ok"], "the sources themselves")
    new = contact(ctx, "sms", "+48555000111")
    eq((new["person_id"], new["reason"]), (None, None), "the new contact is not resolved")
    eq([x for x in snapshot(ctx) if x["id"] != new["id"] or x["tbl"] != "c"], before,
       "nothing of the resolution is left")
    eq(ctx.sql("SELECT position FROM identity_state"), pos, "identity_state untouched")
    r = ctx.run("incr-sync", "-q")
    r.expect_rc(75)
    check("no links today" in r.err, "-q still prints the failure", r.err)
    eq(r.out, "", "stdout with -q")
    ctx.sql("DROP TRIGGER e2e_refuse ON person_link")
    r = run_ok(ctx, "incr-sync")
    eq(decided(r), 1, "the next pass decides the new contact")
    invariant(ctx, "after the failure")


@test
def identity_unlink_wins(ctx):
    """Unlinks refuse any union that would put their two contacts in one
    person: one number shared by three (a switchboard) and a chain of links
    through an unlinked pair."""
    setup(ctx, numbers=())
    run_ok(ctx, "full-sync")
    k = {i: contact(ctx, "wa", "k%d" % i)["id"] for i in (0, 1, 2, 3, 5, 6)}
    ctx.sql("UPDATE contact SET phone = '+48221234567' WHERE id IN (%d, %d, %d)"
            % (k[0], k[1], k[2]))
    ctx.sql("INSERT INTO person_override (contact_id, other_contact_id, action) VALUES"
            " (%d, %d, 'unlink'),"      # the switchboard: k0 and k1 apart
            " (%d, %d, 'link'), (%d, %d, 'link'), (%d, %d, 'unlink')"
            % (k[0], k[1], k[3], k[5], k[5], k[6], k[3], k[6]))
    run_ok(ctx, "incr-sync")
    p = {i: contact(ctx, "wa", "k%d" % i) for i in k}
    check(p[0]["person_id"] != p[1]["person_id"], "the unlinked pair shares a person")
    eq(p[2]["person_id"], p[0]["person_id"], "the third joins the first it may")
    eq((p[0]["reason"], p[0]["evidence"]), ("phone", "+48221234567"), "k0's link")
    eq(p[1]["reason"], "single", "k1 alone with its number")
    eq(p[3]["person_id"], p[5]["person_id"], "the first link")
    check(p[6]["person_id"] != p[3]["person_id"], "a link through an unlinked pair")
    eq(p[6]["reason"], "single", "k6 alone")
    invariant(ctx, "after the overrides")
    # A person keeps its id while most of its contacts stay.
    kept = p[0]["person_id"]
    ctx.sql("DELETE FROM person_override WHERE action = 'unlink' AND contact_id = %d"
            % k[0])
    run_ok(ctx, "status-poll", "-s", "sms")
    p = {i: contact(ctx, "wa", "k%d" % i) for i in (0, 1, 2)}
    eq({p[i]["person_id"] for i in p}, {kept}, "the three together, in the person"
       " most of them had")
    invariant(ctx, "after the unlink went")
