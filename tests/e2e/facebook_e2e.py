"""End-to-end tests of the facebook source (keyset watermarks over the Graph
API's newest-first conversations), against the fake tests/fake/facebook.py.
Imported by run.py, whose @test they register:

    python3 tests/e2e/run.py --filter fb_
"""

import base64
import hashlib
import hmac
import os
import signal
import time
from datetime import datetime, timezone

import __main__ as e2e

HERE = os.path.dirname(os.path.abspath(__file__))
FB_FAKE = os.path.join(os.path.dirname(HERE), "fake", "facebook.py")

test, check, eq, Fail = e2e.test, e2e.check, e2e.eq, e2e.Fail


class FbFake(e2e.Fake):
    SCRIPT = FB_FAKE

    def __init__(self, ctx, name="fake", pages=("1111",), **opts):
        self.pages = list(pages)
        super().__init__(ctx, name=name, page=self.pages, **opts)

    def post(self, what, **body):
        return self.call(what, body)

    def dump(self, page=None, platform=None):
        q = "dump"
        args = []
        if page:
            args.append("page=" + page)
        if platform:
            args.append("platform=" + platform)
        if args:
            q += "?" + "&".join(args)
        return self.call(q)["conversations"]

    def api_requests(self, endpoint=None):
        return self.requests(endpoint)


def fb_setup(ctx, pages=("1111",), name="fake", **opts):
    ctx.cluster.createdb(ctx.db)
    f = ctx.new_fake(kind=FbFake, name=name, pages=pages, **opts)
    ctx.fake = f
    return f


def fb_source(ctx, name="fb", fake=None, page="1111", extra="", token=None):
    fake = fake or ctx.fake
    tf = ctx.token_file(token if token is not None else fake.token, name + ".token")
    return ('  { name = "%s"; type = "facebook"; url = "%s"; page_id = "%s";'
            ' token_file = "%s"; %s }' % (name, fake.url, page, tf, extra))


def fb_config(ctx, extra="", **kw):
    return ctx.config(sources=[fb_source(ctx, extra=extra, **kw)])


def stored_msgs(ctx, source="fb"):
    rows = ctx.sql_json(
        "SELECT m.external_id, m.body, m.direction, m.sent_at, m.attachments,"
        " c.external_id AS conv, k.external_id AS sender FROM message m"
        " JOIN source s ON s.id = m.source_id"
        " LEFT JOIN conversation c ON c.id = m.conversation_id"
        " LEFT JOIN contact k ON k.id = m.sender_contact_id WHERE s.name = '%s'" % source)
    return {r["external_id"]: r for r in rows}


def stored_convs(ctx, source="fb"):
    rows = ctx.sql_json(
        "SELECT c.external_id, c.title, c.unread_count, c.is_read, c.last_message_at,"
        " c.kind, c.raw IS NULL AS placeholder FROM conversation c"
        " JOIN source s ON s.id = c.source_id WHERE s.name = '%s'" % source)
    return {r["external_id"]: r for r in rows}


def graph_time(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S%z")


def pg_time(s):
    return datetime.fromisoformat(s).astimezone(timezone.utc)


def assert_fb_exact(ctx, fake, source="fb", page="1111", platform="messenger",
                    readable=None):
    """The database holds every conversation of the Page and every message
    the API details (Instagram: the newest 20 of each), once each."""
    convs = fake.dump(page, platform)
    want_m = {}
    for c in convs:
        for m in c["messages"]:
            if m["detail"]:
                want_m[m["id"]] = (c, m)
    got_c = stored_convs(ctx, source)
    got_m = stored_msgs(ctx, source)
    eq(sorted(k for k, v in got_c.items() if not v["placeholder"]),
       sorted(c["id"] for c in convs), "stored conversations")
    missing = set(want_m) - set(got_m)
    extra = set(got_m) - set(want_m)
    check(not missing and not extra, "%d messages missing, %d unexpected (of %d)"
          % (len(missing), len(extra), len(want_m)), sorted(missing)[:3], sorted(extra)[:3])
    for mid, (c, m) in want_m.items():
        g = got_m[mid]
        eq(g["conv"], c["id"], "%s conversation" % mid)
        eq(g["body"], m.get("message"), "%s body" % mid)
        eq(g["direction"], "out" if m["from_page"] else "in", "%s direction" % mid)
        eq(pg_time(g["sent_at"]), graph_time(m["created_time"]), "%s sent_at" % mid)
        eq(g["sender"], m["from"]["id"], "%s sender" % mid)
    for c in convs:
        g = got_c[c["id"]]
        eq(g["unread_count"], c["unread_count"], "%s unread_count" % c["id"])
        eq(pg_time(g["last_message_at"]), graph_time(c["updated_time"]),
           "%s last_message_at" % c["id"])


def watermark(ctx, source="fb"):
    return ctx.cursor("conversations", source)


# ---------------------------------------------------------------------------




@test
def fb_full_sync_exact(ctx):
    fake = fb_setup(ctx, conversations=60, messages=5)
    fb_config(ctx)
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r, "full-sync")
    assert_fb_exact(ctx, fake)
    convs = fake.dump("1111", "messenger")
    top = max((graph_time(c["updated_time"]), c["id"]) for c in convs)
    eq(watermark(ctx), top[0].strftime("%Y-%m-%dT%H:%M:%S.000000Z") + "|" + top[1],
       "the watermark: the newest (updated_time, id)")
    e2e.json_cursor_is_db(ctx, r, "conversations", "fb")
    # Participants are contacts with their names; titles name the others.
    names = ctx.sql("SELECT count(*) FROM contact WHERE display_name IS NOT NULL")
    check(int(names) >= 2, "participants are not contacts with names")
    c0 = stored_convs(ctx)[convs[0]["id"]]
    others = [p["name"] for p in convs[0]["participants"]["data"] if p["id"] != "1111"]
    eq(c0["title"], ", ".join(others), "conversation title")
    # A pass with nothing new rewrites nothing and reads only the lookback.
    seq = ctx.sql("SELECT max(seq) FROM message")
    fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    eq(ctx.sql("SELECT max(seq) FROM message"), seq, "max(seq) after a pass with nothing new")
    eq(len(fake.api_requests("conversations")), 1, "conversation listings")
    check(len(fake.api_requests("messages")) <= 2, "messages read back beyond the lookback",
          len(fake.api_requests("messages")))
    r = ctx.run("incr-sync", "-q")
    r.expect_rc(0)
    eq((r.out, r.err), ("", ""), "-q output with nothing new")


@test
def fb_incr_new_messages(ctx):
    fake = fb_setup(ctx, conversations=30, messages=3)
    fb_config(ctx, extra="lookback = 60; cold_start_days = 0;")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    convs = fake.dump("1111", "messenger")
    old = convs[-1]["id"]           # the oldest conversation gets new messages
    fake.post("message", conversation=old, n=3, step=1, attachments=True)
    fake.post("message", conversation=convs[5]["id"], n=1, **{"from": "page"})
    new = fake.post("conversation", messages=2)["ids"]
    fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    assert_fb_exact(ctx, fake)
    eq(r.stream("conversations", "fb")["inserted"] >= 6, True, "rows inserted")
    got = stored_msgs(ctx)
    check(any(g["attachments"] for g in got.values()), "attachments not stored")
    # The changed conversations had their messages read, and besides them
    # only those within the lookback of the old watermark.
    asked = {q["path"].split("/")[-2] for q in fake.api_requests("messages")}
    changed = {old, convs[5]["id"], new[0]}
    check(changed <= asked, "a changed conversation was not read", asked)
    top = graph_time(convs[0]["updated_time"]).timestamp()
    recent = {c["id"] for c in convs if graph_time(c["updated_time"]).timestamp() >= top - 60}
    eq(asked - changed - recent, set(), "conversations read below the floor")


@test
def fb_boundary_second(ctx):
    """Conversations and messages sharing the watermark's second are not lost,
    whatever their ids."""
    fake = fb_setup(ctx, conversations=0)
    fb_config(ctx)
    at = int(time.time()) - 30
    a = fake.post("conversation", n=1, at=at, messages=1)["ids"][0]
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    # Same second, ids on both sides of the watermark's.
    more = fake.post("conversation", n=3, at=at, messages=2)["ids"]
    fake.post("message", conversation=a, n=2, at=at)
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    assert_fb_exact(ctx, fake)
    check(len(more) == 3 and all(m in stored_convs(ctx) for m in more), "a tie was lost")


@test
def fb_late_message(ctx):
    fake = fb_setup(ctx, conversations=0)
    fb_config(ctx, extra="lookback = 300;")
    now = int(time.time())
    a = fake.post("conversation", at=now - 10, messages=1)["ids"][0]
    b = fake.post("conversation", at=now - 5, messages=1)["ids"][0]
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    # Late: older than the newest message of its conversation, inside the
    # lookback window (a is re-listed: its time is within it).
    late_in = fake.post("message", conversation=a, at=now - 100)["ids"][0]
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    check(late_in in stored_msgs(ctx), "a late message inside the lookback was missed")
    # Outside it: incr-sync cannot see it, full-sync finds it.
    c = fake.post("conversation", at=now - 3600, messages=1)["ids"][0]
    late_out = fake.post("message", conversation=c, at=now - 4000)["ids"][0]
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    check(late_out not in stored_msgs(ctx) and c not in stored_convs(ctx),
          "incr-sync read below its floor")
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r)
    check(late_out in stored_msgs(ctx), "full-sync missed the late message")
    assert_fb_exact(ctx, fake)
    eq(b in stored_convs(ctx), True, "conversation b")


@test
def fb_rate_limit_memory(ctx):
    fake = fb_setup(ctx, conversations=10)
    fb_config(ctx)
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    wm = watermark(ctx)
    fake.post("message", conversation=fake.dump("1111", "messenger")[0]["id"])
    # A BUC limit that asks for an hour: more than any pass can wait.
    fake.post("fault", endpoint="*", kind="error", code=80006, regain_minutes=60, times=-1)
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(75)
    s = r.source("fb")
    eq(s["error"]["kind"], "rate_limit", "error kind")
    eq(watermark(ctx), wm, "the watermark after a rate limit")
    until = ctx.sql("SELECT extract(epoch FROM next_allowed_at - now())::int FROM source "
                    "WHERE name = 'fb'")
    check(until and 3500 <= int(until) <= 3700, "next_allowed_at is not an hour ahead: %r"
          % until)
    fake.clear_log()
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(0)
    eq(r.source("fb")["status"], "skipped", "the next pass")
    eq(fake.stats()["total"], 0, "requests while the window is open")
    r = ctx.run("incr-sync", "-q")
    r.expect_rc(0)
    eq((r.out, r.err), ("", ""), "-q output while skipped")
    # A short limit (regain 0: backoff) is waited out within the pass.
    ctx.sql("UPDATE source SET next_allowed_at = NULL")
    fake.call("clear_faults", {})
    fake.post("fault", endpoint="conversations", kind="error", code=4, regain_minutes=0,
              times=1)
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    check(r.stream("conversations", "fb")["retries"] >= 1, "the rate limit was not retried")
    assert_fb_exact(ctx, fake)


@test
def fb_three_pages_one_failing(ctx):
    pages = ("1111", "2222", "3333")
    fake = fb_setup(ctx, pages=pages, conversations=8, messages=3,
                    token="1111=tok-a-1111")
    fake.call("config", {"token": {"1111": "tok-a-1111", "2222": "tok-b-2222",
                                   "3333": "tok-c-3333"}})
    srcs = [fb_source(ctx, "fb-a", page="1111", token="tok-a-1111"),
            fb_source(ctx, "fb-b", page="2222", token="expired-token"),
            fb_source(ctx, "fb-c", page="3333", token="tok-c-3333")]
    ctx.config(sources=srcs, sync={"jobs": 3})
    # Hold fb-c's listing: fb-a must finish while fb-c is stuck.
    fake.call("gate", {"endpoint": "conversations", "page": "3333", "after": 0})
    p = ctx.start("full-sync", "-j")
    check(fake.wait("conversations", blocked=1, timeout=30) is not None, "fb-c never asked")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and ctx.count(
            "message m JOIN source s ON s.id = m.source_id", "s.name = 'fb-a'") < 24:
        time.sleep(0.05)
    eq(ctx.count("message m JOIN source s ON s.id = m.source_id", "s.name = 'fb-a'"), 24,
       "fb-a's messages while fb-c is held")
    fake.call("release", {})
    r = ctx.finish(p)
    r.expect_rc(1)
    eq(r.source("fb-a")["status"], "ok", "fb-a")
    eq(r.source("fb-c")["status"], "ok", "fb-c")
    eq(r.source("fb-b")["status"], "failed", "fb-b")
    eq(r.source("fb-b")["error"]["kind"], "auth", "fb-b's error")
    assert_fb_exact(ctx, fake, "fb-a", "1111")
    assert_fb_exact(ctx, fake, "fb-c", "3333")
    # Alone, the expired token is exit 77.
    r = ctx.run("incr-sync", "-j", "-s", "fb-b")
    r.expect_rc(77)


@test
def fb_token_never_shown(ctx):
    secret = "app-s3cret-value"
    fake = fb_setup(ctx, conversations=6, app_secret=secret, token="fb-T0KEN-abc")
    sf = os.path.join(ctx.dir, "app.secret")
    with open(sf, "w") as f:
        f.write(secret + "\n")
    os.chmod(sf, 0o600)
    fb_config(ctx, extra='app_secret_file = "%s";' % sf)
    fake.post("config", empty_pages=True)
    r = ctx.run("full-sync", "-j", "-vv")
    e2e.ok_pass(r)
    assert_fb_exact(ctx, fake)
    reqs = fake.api_requests()
    check(reqs and all(q["token_ok"] and q["proof_ok"] for q in reqs),
          "a request without the token or the right appsecret_proof")
    proof = hmac.new(secret.encode(), b"fb-T0KEN-abc", hashlib.sha256).hexdigest()
    fake.post("fault", endpoint="messages", kind="http", status=500, times=-1)
    r2 = ctx.run("incr-sync", "-j", "-vv")
    for res in (r, r2):
        for s in ("fb-T0KEN-abc", proof, secret):
            check(s not in res.out + res.err, "a secret in the output: %r" % s, res.desc())
    # A wrong secret: the proof is refused, an auth error.
    with open(sf, "w") as f:
        f.write("wrong-secret\n")
    fake.call("clear_faults", {})
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(77)


@test
def fb_error_echo_across_cut(ctx):
    """A token that Graph echoes in its error message across the point where
    the connector cuts that message (200 bytes) is masked whole: no prefix
    of it in the JSON error or on stderr."""
    token = "fb-T0KEN-across-the-cut"
    fake = fb_setup(ctx, conversations=2, token=token)
    fb_config(ctx, extra="cold_start_days = 0;")
    fake.post("fault", endpoint="conversations", kind="error", code=100, times=-1,
              message="x" * 193 + token + " is not valid for this call")
    r = ctx.run("incr-sync", "-j", "-vv")
    r.expect_rc(65)
    msg = r.source("fb")["error"]["message"]
    check("x***" in msg, "the echoed token is not masked", msg)
    for text in (msg, r.out, r.err):
        check("x" + token[:3] not in text, "a prefix of the token in the output", r.desc())


@test
def fb_instagram_limit(ctx):
    fake = fb_setup(ctx, conversations=0)
    fb_config(ctx, extra='platform = "instagram";')
    c = fake.post("conversation", platform="instagram", messages=30, step=10)["ids"][0]
    fake.post("conversation", platform="instagram", messages=3, step=10)
    r = ctx.run("full-sync", "-j")
    e2e.ok_pass(r)
    st = r.stream("conversations", "fb")
    eq(st["gaps"], 10, "messages Instagram would not detail, reported")
    check("could not be read" in r.err, "the limit is not logged", r.desc())
    assert_fb_exact(ctx, fake, platform="instagram")
    eq(ctx.count("message m JOIN conversation c ON c.id = m.conversation_id",
                 "c.external_id = '%s'" % c), 20, "messages stored of the long one")
    dirs = {g["direction"] for g in stored_msgs(ctx).values()}
    eq(dirs, {"in", "out"}, "directions on Instagram")


@test
def fb_kill9_mid_walk(ctx):
    fake = fb_setup(ctx, conversations=120, messages=4)
    fb_config(ctx)
    for k in (15, 60):
        before = fake.stats()["by_endpoint"].get("messages", 0)
        p = ctx.start("full-sync", "-j")
        fake.wait("messages", count=before + k, timeout=40)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        ctx.finish(p)
        e2e.wait_unlocked(ctx)
        eq(watermark(ctx), None, "a watermark after an interrupted first walk")
        check(ctx.state_row("conversations", "fb")["full_checkpoint"] is not None,
              "no checkpoint after the kill")
        fake.post("message", conversation=fake.dump("1111", "messenger")[-1]["id"])
    fake.clear_log()
    r = ctx.run("full-sync", "-j", timeout=120)
    e2e.ok_pass(r)
    assert_fb_exact(ctx, fake)
    # The resumed walk read again only what the killed ones had not done.
    check(len(fake.api_requests("messages")) < 120, "the resumed walk started over",
          len(fake.api_requests("messages")))
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_fb_exact(ctx, fake)


@test
def fb_graph_errors(ctx):
    fake = fb_setup(ctx, conversations=4)
    fb_config(ctx, extra="cold_start_days = 0;")
    fake.post("fault", endpoint="conversations", kind="error", code=190, error_subcode=463,
              times=-1)
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(77)
    check("190" in r.source("fb")["error"]["message"], "the code is not named", r.desc())
    fake.call("clear_faults", {})
    fake.post("fault", endpoint="conversations", kind="error", code=2, is_transient=True,
              times=1)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    fake.post("fault", endpoint="messages", kind="truncate", times=1)
    fake.post("message", conversation=fake.dump("1111", "messenger")[0]["id"])
    r = ctx.run("incr-sync", "-j")
    r.expect_rc(65)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_fb_exact(ctx, fake)


# -- the engine's walk: cold start, walks continued, outliers, loops ------------

def ts_of(s):
    """A stored mark's or a walk's time ("YYYY-MM-DDTHH:MM:SS.ffffffZ") in s."""
    return datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=timezone.utc).timestamp() + int(s[20:26]) / 1e6


@test
def fb_cold_start(ctx):
    """A new source's first incr-sync takes the cold-start window
    (cold_start_days, default 7), not the whole history of 30 days."""
    fake = fb_setup(ctx, conversations=40, messages=3)
    fb_config(ctx)
    t0 = time.time()
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    t1 = time.time()
    convs = fake.dump("1111", "messenger")
    inside = {c["id"] for c in convs if c["updated_epoch"] > t1 + 2 - 7 * 86400}
    outside = {c["id"] for c in convs if c["updated_epoch"] < t0 - 7 * 86400 - 300}
    check(inside and outside, "the fake's history spans the window")
    got = set(stored_convs(ctx))
    eq(inside - got, set(), "conversations of the last 7 days not stored")
    eq(outside & got, set(), "conversations older than 7 days stored")
    msgs = {m["id"] for c in convs for m in c["messages"] if c["id"] in inside}
    eq(msgs - set(stored_msgs(ctx)), set(), "their messages not stored")
    check(not watermark(ctx).startswith("~"), "the watermark after the walk")


@test
def fb_cold_start_continued(ctx):
    """A first walk longer than one pass (--max-runtime) keeps its work and
    completes over later passes: every message once; each conversation's
    messages read once (the listing is read again: Graph cannot list below
    a time)."""
    fake = fb_setup(ctx, conversations=150, messages=2)
    fb_config(ctx)
    fake.post("config", latency=0.1)
    fake.post("clear_log")
    passes = 0
    while passes < 15:
        passes += 1
        r = ctx.run("incr-sync", "-j", "--max-runtime", "1")
        r.expect_rc(0)
        if passes == 1:
            eq(r.json["status"], "partial", "the first pass is cut short")
            floor = ts_of(watermark(ctx)[1:])
        if r.json["status"] == "ok":
            break
    eq(r.json["status"], "ok", "the walk never completed (%d passes)" % passes)
    check(passes >= 3, "the walk took %d passes" % passes)
    convs = [c for c in fake.dump("1111", "messenger") if c["updated_epoch"] >= floor]
    want = {m["id"] for c in convs for m in c["messages"] if m["created_epoch"] >= floor}
    eq(set(stored_msgs(ctx)), want, "messages stored")
    top = max((graph_time(c["updated_time"]), c["id"]) for c in convs)
    eq(watermark(ctx), top[0].strftime("%Y-%m-%dT%H:%M:%S.000000Z") + "|" + top[1],
       "the watermark after the walk")
    # Each pass reads again those within the lookback (300 s) of the top,
    # and may lose the request the deadline cut.
    near = len([c for c in convs if c["updated_epoch"] >= top[0].timestamp() - 300])
    reqs = len(fake.api_requests("messages"))
    check(reqs <= len(convs) + passes * (near + 1), "%d message requests for %d "
          "conversations in %d passes" % (reqs, len(convs), passes))


@test
def fb_future_outlier(ctx):
    """A message dated in 2100 (or 27 days ahead) moves its conversation
    there: both are stored and reported, the watermark stays where the rest
    of the data puts it, and new conversations and messages are found."""
    fake = fb_setup(ctx, conversations=4, messages=2)
    fb_config(ctx, extra="cold_start_days = 0;")
    convs = fake.dump("1111", "messenger")
    fake.post("message", conversation=convs[0]["id"], at="2100-01-01T00:00:00Z")
    fake.post("message", conversation=convs[1]["id"], ago=-27 * 86400)
    r = ctx.run("incr-sync", "-j")
    e2e.ok_pass(r)
    eq(r.stream("conversations", "fb")["outliers"], 2, "outliers")
    check("max_clock_skew" in r.err, "the outlier is not logged", r.err)
    check(watermark(ctx)[:4] == time.strftime("%Y", time.gmtime()),
          "the watermark follows the outlier", watermark(ctx))
    fake.post("message", conversation=convs[2]["id"], n=2)
    fake.post("conversation", messages=2)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_fb_exact(ctx, fake)


def fb_loop(ctx, endpoint, **fault):
    fake = fb_setup(ctx, conversations=12, messages=12)
    fb_config(ctx, extra="cold_start_days = 0;")
    fake.post("config", max_limit=3)
    fake.post("fault", endpoint=endpoint, times=-1, **fault)
    r = ctx.run("incr-sync", "-j", timeout=60)
    r.expect_rc(65)
    err = r.source("fb")["error"]
    eq(err["kind"], "protocol", "error kind")
    check("pagination does not advance" in err["message"] and
          "stream 'conversations'" in err["message"],
          "the message names the loop and the stream", err)
    cur = watermark(ctx)
    check(cur is None or cur.startswith("~"), "a watermark after a looping walk", cur)


@test
def fb_cursor_cycle(ctx):
    """'after' cursors that come back (A, B, A, ...), in the listing or in a
    conversation's messages: a protocol error, not an endless pass."""
    fb_loop(ctx, "conversations", kind="cycle")


@test
def fb_cursor_cycle_messages(ctx):
    fb_loop(ctx, "messages", kind="cycle")


@test
def fb_endless_empty_pages(ctx):
    """Empty pages, each with a new 'after', without end: a protocol error."""
    fb_loop(ctx, "conversations", kind="empty_page", fresh=True)


@test
def fb_long_page_id(ctx):
    """A Page id whose request path passes 300 bytes is sent whole (the
    paths were cut in fixed buffers)."""
    page = "9" * 300
    fake = fb_setup(ctx, pages=(page,), conversations=3, messages=2)
    fb_config(ctx, page=page, extra="cold_start_days = 0;")
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_fb_exact(ctx, fake, page=page)


# -- --max-runtime: a clean stop at the deadline -------------------------------

@test
def fb_deadline_retry_clean_stop(ctx):
    """A failed request whose retry would come after --max-runtime's
    deadline is a clean stop (partial, exit 0, the work before it kept), not
    a failed source (69); a rate limit longer than the pass can afford stays
    rate_limit (75) with next_allowed_at remembered."""
    fake = fb_setup(ctx, conversations=8, messages=2)
    ctx.config(sources=[fb_source(ctx, extra="cold_start_days = 0;")],
               http={"backoff": 20, "timeout": 20})
    fake.post("fault", endpoint="messages", kind="http", status=503, after=3, times=-1)
    t0 = time.monotonic()
    r = ctx.run("incr-sync", "-j", "--max-runtime", "5", timeout=60)
    dt = time.monotonic() - t0
    r.expect_rc(0)
    eq(r.json["status"], "partial", "status")
    eq(r.source("fb")["status"], "partial", "source status")
    eq(r.source("fb")["error"], None, "source error")
    check(dt < 4, "the pass waited %.1fs for a retry it could not make" % dt)
    eq(len(stored_msgs(ctx)), 6, "the messages stored before the stop")
    check(ctx.sql("SELECT next_allowed_at FROM source WHERE name = 'fb'") in (None, ""),
          "next_allowed_at after a clean stop")
    fake.call("clear_faults", {})
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_fb_exact(ctx, fake)
    # A rate limit that asks for longer than the pass has left.
    fake.post("message", conversation=fake.dump("1111", "messenger")[0]["id"])
    fake.post("fault", endpoint="conversations", kind="429", retry_after=30, times=-1)
    r = ctx.run("incr-sync", "-j", "--max-runtime", "5", timeout=60)
    r.expect_rc(75)
    eq(r.source("fb")["error"]["kind"], "rate_limit", "error kind")
    until = ctx.sql("SELECT extract(epoch FROM next_allowed_at - now())::int FROM source "
                    "WHERE name = 'fb'")
    check(until and 20 <= int(until) <= 31, "next_allowed_at is not 30 s ahead: %r" % until)


@test
def fb_deadline_learn_self(ctx):
    """The request at the start of an Instagram pass (the Page's Instagram
    account) cut by --max-runtime is a clean stop too (partial, exit 0)."""
    fake = fb_setup(ctx, conversations=0)
    ctx.config(sources=[fb_source(ctx, extra='platform = "instagram";')],
               http={"timeout": 20})
    fake.post("conversation", platform="instagram", messages=3)
    fake.post("fault", endpoint="page", kind="slow", delay=10, times=-1)
    t0 = time.monotonic()
    r = ctx.run("incr-sync", "-j", "--max-runtime", "2", timeout=60)
    dt = time.monotonic() - t0
    r.expect_rc(0)
    check(dt < 5, "--max-runtime 2 ran %.1fs" % dt)
    eq(r.json["status"], "partial", "status")
    eq(r.source("fb")["status"], "partial", "source status")
    eq(r.source("fb")["error"], None, "source error")
    fake.call("clear_faults", {})
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    assert_fb_exact(ctx, fake, platform="instagram")


# ---- attachments (SPEC §9) ---------------------------------------------------

def stored_atts(ctx, source="fb"):
    return ctx.sql_json(
        "SELECT m.external_id AS msg, a.external_id, a.kind, a.mime_type, a.name, a.size,"
        " a.url, a.url_expires_at, a.link_stripped, a.state, a.last_error"
        " FROM attachment a JOIN message m ON m.id = a.message_id"
        " JOIN source s ON s.id = a.source_id WHERE s.name = '%s'"
        " ORDER BY m.external_id, a.external_id" % source)


def fb_att_setup(ctx, platform="messenger"):
    fake = fb_setup(ctx)
    cid = fake.post("conversation", platform=platform, messages=1, ago=60)["ids"][0]
    content = bytes(range(256)) * 40
    r = fake.post("message", conversation=cid, ago=30, text="a photo",
                  file={"content_b64": base64.b64encode(content).decode(),
                        "name": "shop.jpg", "mime": "image/jpeg"})
    return fake, r["ids"][0], r["attachments"][0], content


def fb_att_check_no_token(ctx, fake):
    tok = fake.call("media_token")["token"]
    raw = ctx.sql("SELECT string_agg(coalesce(raw::text, '') || coalesce(attachments::text, ''),"
                  " '') FROM message")
    urls = ctx.sql("SELECT string_agg(coalesce(url, ''), ' ') FROM attachment")
    check(tok not in raw, "the CDN token is in message.raw/attachments")
    check(tok not in urls, "the CDN token is in attachment.url")


@test
def fb_attachment_rows(ctx):
    """A sync pass creates a pending row per Graph attachment, with its id,
    kind, mime type, name, size, the link without its token and its oe=
    expiry; the token is stored nowhere."""
    fake, mid, aid, content = fb_att_setup(ctx)
    fb_config(ctx)
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    atts = stored_atts(ctx)
    eq(len(atts), 1, "attachment rows")
    a = atts[0]
    eq((a["msg"], a["external_id"], a["kind"], a["mime_type"], a["name"], a["size"],
        a["state"]), (mid, aid, "image", "image/jpeg", "shop.jpg", len(content), "pending"),
       "the attachment row")
    check(a["url"].startswith(fake.url + "/cdn/" + aid + "?oe="), "its link", a["url"])
    check(a["link_stripped"], "the link is marked as stripped of its token")
    check(a["url_expires_at"] is not None, "the oe= expiry is kept")
    exp = datetime.fromisoformat(a["url_expires_at"]).timestamp()
    check(abs(exp - (time.time() + 172800)) < 120, "the expiry is the link's oe", exp)
    fb_att_check_no_token(ctx, fake)
    # Another pass changes nothing: still one row.
    e2e.ok_pass(ctx.run("full-sync", "-j"))
    eq(len(stored_atts(ctx)), 1, "attachment rows after a second pass")


@test
def fb_attachment_instagram_linked(ctx):
    """Instagram's files are kept as links (media = "link" by default):
    the rows are linked, not pending; media = "download" overrides it."""
    fake, mid, aid, _ = fb_att_setup(ctx, platform="instagram")
    fb_config(ctx, extra='platform = "instagram";')
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    atts = [a for a in stored_atts(ctx) if a["external_id"] == aid]
    eq([a["state"] for a in atts], ["linked"], "Instagram's attachment state")
    fb_att_check_no_token(ctx, fake)


def media_group(ctx, path):
    store = os.path.join(ctx.dir, "media")
    with open(path, "a") as f:
        f.write('media = { store = "dir"; dir = "%s"; };\n' % store)
    return store


def store_has(store, content):
    sha = hashlib.sha256(content).hexdigest()
    p = os.path.join(store, sha[:2], sha)
    return os.path.exists(p) and open(p, "rb").read() == content


@test
def fb_media_sync_refreshes_expired_link(ctx):
    """media-sync: the stored link lost its token, and the links served so
    far expired: a fresh read of the message gives a working link, whose
    bytes are stored; the token shows nowhere.  A message gone upstream
    makes its file unavailable."""
    fake, mid, aid, content = fb_att_setup(ctx)
    cid = fake.dump("1111", "messenger")[0]["id"]
    gone = fake.post("message", conversation=cid, ago=20, attachments=True)
    store = media_group(ctx, fb_config(ctx))
    e2e.ok_pass(ctx.run("incr-sync", "-j"))
    eq(len(stored_atts(ctx)), 2, "attachment rows")
    fake.post("expire_links")
    fake.post("gone", message=gone["ids"][0])
    tok = fake.call("media_token")["token"]
    r = ctx.run("media-sync", "-j")
    e2e.ok_pass(r, "media-sync")
    s = r.source("fb")
    eq((s["downloaded"], s["refreshed"], s["unavailable"], s["failed"], s["still_pending"]),
       (1, 1, 1, 0, 0), "downloaded, refreshed, unavailable, failed, still pending")
    by = {a["external_id"]: a for a in stored_atts(ctx)}
    eq(by[aid]["state"], "stored", "the refreshed file")
    check(store_has(store, content), "its bytes in the store")
    g = by[gone["attachments"][0]]
    eq(g["state"], "unavailable", "the file of the message gone upstream")
    check("gone upstream" in (g["last_error"] or ""), "why", g["last_error"])
    check(tok not in r.out + r.err, "the CDN token in media-sync's output")
    fb_att_check_no_token(ctx, fake)
    # The message read and the CDN download of the refresh happened.
    check(any(q["path"].endswith("/" + mid) for q in fake.requests("message")),
          "the message was read again")
