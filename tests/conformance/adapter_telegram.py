"""telegram: the fake TDLib tests/fake/tdjson/libtdjson.so, driven by a
scenario file (telegram_e2e.Scenario). TDLib's answers are in-process JSON
objects: its "HTTP" faults are TDLib errors (500, 429 "retry after N"), a
held request is a call paused until a file exists (fault "pause_file"),
latency a delay of the fake's getChatHistory answers. A re-delivery is a
message imported from a Telegram Desktop export (full-sync --import), then
fetched through TDLib."""

import json
import os
import time

import telegram_e2e as te

from base import Adapter as Base, Fail, Skip

API_HASH = "0123456789abcdef0123456789abcdef"     # telegram_e2e.tg_source's
METHOD = "getChatHistory"


class Adapter(Base):
    type = "telegram"
    source = "tg"
    FAULTS = {"5xx": None, "429": None, "slow": None, "bad_row": None}   # see fault()
    NO_MEANING = {
        "truncate": "TDLib hands its answers over in-process as whole JSON objects: "
                    "there is no page on a wire to cut",
        "loop": "the fake TDLib cannot repeat a history page yet (getChatHistory walks "
                "from_message_id, no cursor is handed out)",
        "cycle": "the fake TDLib cannot repeat a history page yet (getChatHistory walks "
                 "from_message_id, no cursor is handed out)",
        "empty": "the fake TDLib cannot answer empty history pages yet (an empty page "
                 "ends a chat's walk)",
        "outlier": "message ids come from Telegram through TDLib, which orders a chat's "
                   "history by them: an id beyond the others is the newest message",
        "future": "the cursors are message ids per chat, never a time",
        "reset_past": "message ids come from Telegram's servers, not from a database the "
                      "operator could restore or re-create: no fingerprint (msgsync(7))"}

    def start(self, n, secret=False):
        ctx = self.ctx
        ctx.cluster.createdb(ctx.db)
        s = self.s = te.Scenario(ctx)
        s.d["page_max"] = 20
        self.next = {}
        self.holds = 0
        per = n // 5
        for k in range(5):
            cid = -4012345600 - k
            s.add_chat(te.chat(cid, "chat %d" % k, "basic"))
            self.next[cid] = 1000 * (k + 1)
            self.add(cid, per, te.NOW - 20 * 86400, 60)
        s.write()
        te.sign_in(ctx)
        self.span = n // 20 + 5
        self.config()
        return self

    def add(self, cid, n, t0, step):
        for i in range(n):
            sid = self.next[cid]
            self.next[cid] += 1
            self.s.add(cid, te.msg(cid, sid, te.ME if sid % 3 == 0 else te.ANN,
                                   int(t0 + i * step)))

    def source_cfg(self, extra=""):
        return te.tg_source(self.ctx, extra=extra)

    def secrets(self):
        return [API_HASH]

    def grow(self, rnd):
        for cid in rnd.sample(sorted(self.next), 2):
            self.add(cid, rnd.randrange(1, 15), time.time() - 100, 1)
        self.s.write()

    def upstream_ids(self):
        return [te.ext(c, m) for c, m in self.s.all_messages()]

    def truth(self, cursor=True):
        te.assert_exact(self.ctx, self.s, source=self.source)

    # Holds: a getChatHistory call paused until a file exists.

    def hold(self, after):
        self.holds += 1
        self.pause = os.path.join(self.ctx.dir, "tdlib-pause.%d" % self.holds)
        self.base = len(self.s.requests(METHOD))
        self.after = after
        self.s.d["faults"] = [{"method": METHOD, "after": after, "count": 1,
                               "pause_file": self.pause}]
        self.s.write()

    def wait_held(self, p, timeout=40):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.s.requests(METHOD)) > self.base + self.after:
                return True
            if p.poll() is not None:
                return False
            time.sleep(0.01)        # polling the fake's request log
        raise Fail("the pass never reached getChatHistory call %d" % (self.after + 1))

    def release(self):
        open(self.pause, "w").close()
        self.s.d["faults"] = []
        self.s.write()

    # Faults: TDLib errors.

    def fault(self, kind, after=0, times=1, **kw):
        if kind == "5xx":
            f = {"code": 500, "message": "Internal Server Error"}
        elif kind == "429":
            f = {"code": 429, "message": "Too Many Requests: retry after %d"
                 % kw.get("retry_after", 1)}
        elif kind == "bad_row":
            f = {"bad_message": True}
        elif kind == "slow":
            # Never answered: a hang (latency() makes answers slow instead).
            self.s.d["hang"] = [METHOD]
            self.s.write()
            return
        else:
            self.require(kind)
        f.update(method=METHOD, after=after, count=times)
        self.s.d["faults"] = [f]
        self.s.write()
        # The fake counts a fault's calls per client, and every pass is a
        # new client: a fault for a number of calls lasts one pass here,
        # as the HTTP fakes' faults, counted across passes, do.
        self.one_pass = times != -1

    def run(self, cmd, *args, **kw):
        try:
            return super().run(cmd, *args, **kw)
        finally:
            if getattr(self, "one_pass", False):
                self.one_pass = False
                self.clear_faults()

    def clear_faults(self):
        self.s.d["faults"] = []
        self.s.d.pop("hang", None)
        self.s.write()

    # A re-delivery: a new message comes first in an export of its chat
    # (basic group -G is the export's "private_group" G, its message N is
    # TDLib's N << 20), then through TDLib. Telegram has no provider id
    # beside the message id, which both deliveries must map to the same
    # external_id "chat:id": the item's rows are found by what the two
    # have in common (source, chat, text and time), not by that id.

    def redeliver(self):
        cid = sorted(self.next)[len(self.next) // 2]
        sid = self.next[cid]
        self.next[cid] += 2
        now = int(time.time())
        m = te.msg(cid, sid, te.ANN, now - 60)
        chat = self.s.chat(cid)
        path = os.path.join(self.ctx.dir, "tg-export.json")
        with open(path, "w") as f:
            json.dump(export(cid, chat["chat"]["title"], chat["messages"] + [m]), f,
                      indent=1)
        r = self.ok("full-sync", "-s", self.source, "--import", path)
        js = r.stream("messages", self.source)
        n = len(chat["messages"]) + 1
        if (js["fetched"], js["inserted"]) != (n, 1):
            raise Fail("the import of %d messages of which 1 new: fetched %d, inserted %d"
                       % (n, js["fetched"], js["inserted"]), r.desc())
        pid = te.ext(cid, m)
        self.redelivered = {pid: m}
        if self.ctx.count("message", self.redelivered_rows(pid)) != 1:
            raise Fail("the imported message %s is not stored once" % pid)
        # TDLib now has it too, and a newer one.
        self.s.add(cid, m, te.msg(cid, sid + 1, te.ME, now - 30))
        self.s.write()
        return pid

    def redelivered_rows(self, pid):
        """The SQL condition selecting the message rows of item pid."""
        m = self.redelivered[pid]
        return ("source_id = (SELECT id FROM source WHERE name = '%s') AND conversation_id ="
                " (SELECT id FROM conversation WHERE external_id = '%d') AND body = '%s'"
                " AND sent_at = to_timestamp(%d)"
                % (self.source, m["chat_id"], m["content"]["text"]["text"], m["date"]))

    # Deletions: a message leaves the scenario (TDLib no longer has it).

    def delete(self, ext):
        cid, mid = (int(x) for x in ext.split(":"))
        msgs = self.s.chat(cid)["messages"]
        m = next(m for m in msgs if m["id"] == mid)
        msgs.remove(m)
        self.__dict__.setdefault("trash", {})[ext] = m
        self.s.write()

    def restore(self, ext):
        cid = int(ext.split(":")[0])
        msgs = self.s.chat(cid)["messages"]
        msgs.append(self.trash.pop(ext))
        msgs.sort(key=lambda m: m["id"])
        self.s.write()

    def conv_of_dated(self):
        return str(sorted(self.next)[0])

    def add_dated(self, ago):
        cid = int(self.conv_of_dated())
        sid = self.next[cid]
        self.next[cid] += 1
        m = te.msg(cid, sid, te.ANN, int(time.time() - ago))
        self.s.add(cid, m)
        self.s.write()
        return te.ext(cid, m)

    def by_conv(self):
        out = {}
        for c, m in self.s.all_messages():
            if m["id"] % te.SHIFT == 0:
                out.setdefault(str(c), set()).add(te.ext(c, m))
        return out

    def latency(self, s):
        # Each getChatHistory answer takes s seconds (the fake queues it
        # at once and hands it out then); read by every new client, so
        # from the next pass on.
        self.s.d["latency"] = s
        self.s.write()

    # Attachments (SPEC §9): TDLib downloads a message's file itself
    # (downloadFile, synchronous) and hands over a complete local file: no
    # link on a wire to cut, slow down or carry a token.

    NO_LINK = "TDLib downloads the file itself and hands over a complete local file"

    def media_add(self, content, name="f.jpg", mime="image/jpeg"):
        cid = sorted(self.next)[0]
        sid = self.next[cid]
        self.next[cid] += 1
        fid = 900000 + sid
        ct = te.document(fid, len(content), "AgADconf%d" % sid, name, mime)
        ct["document"]["document"]["fake_content_hex"] = content.hex()
        m = te.msg(cid, sid, te.ANN, int(time.time()) - 5, content=ct)
        self.s.add(cid, m)
        self.s.write()
        return te.ext(cid, m)

    def media_expire(self):
        # A file reference expired: the next download of every file is
        # refused once (400 FILE_REFERENCE_EXPIRED); a fresh getMessage cures it.
        self.s.d["faults"] = [{"method": "downloadFile", "after": 0, "count": 1,
                               "code": 400, "message": "FILE_REFERENCE_EXPIRED"}]
        self.s.write()
        self.one_pass = True        # one media-sync pass, as fault() does

    def media_cut(self, n):
        raise Skip("telegram: %s: no body to cut" % self.NO_LINK)

    def media_slow(self, delay, n=1):
        raise Skip("telegram: %s: the fake TDLib answers downloadFile at once" % self.NO_LINK)

    def media_gone(self, ext):
        cid, mid = (int(x) for x in ext.split(":"))
        for c, m in self.s.all_messages():
            if c == cid and m["id"] == mid:
                for f in _td_files(m["content"]):
                    f["fake_gone"] = True
        self.s.write()

    def media_token(self):
        raise Skip("telegram: %s, with no link or token" % self.NO_LINK)


def export(cid, title, msgs):
    """A Telegram Desktop export (result.json) of the account te.ME holding
    basic group cid with the TDLib messages msgs (te.msg's)."""
    names = {te.ME: "Me Myself", te.ANN: "Ann Example"}
    out = []
    for m in sorted(msgs, key=lambda m: m["id"]):
        who = m["sender_id"]["user_id"]
        body = m["content"]["text"]["text"]
        out.append({"id": m["id"] // te.SHIFT, "type": "message",
                    "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(m["date"])),
                    "date_unixtime": str(m["date"]), "from": names.get(who, "User %d" % who),
                    "from_id": "user%d" % who, "text": body,
                    "text_entities": [{"type": "plain", "text": body}]})
    return {"about": "Here is the data you requested.",
            "personal_information": {"user_id": te.ME, "first_name": "Me",
                                     "last_name": "Myself", "phone_number": "+1 555 000 1234",
                                     "username": "@me"},
            "chats": {"about": "This page lists all chats from this export.",
                      "list": [{"name": title, "type": "private_group", "id": -cid,
                                "messages": out}]}}


def _td_files(j):
    """The TDLib file objects in j (a message's content)."""
    if isinstance(j, dict):
        if j.get("@type") == "file":
            yield j
        for v in j.values():
            yield from _td_files(v)
    elif isinstance(j, list):
        for v in j:
            yield from _td_files(v)
