"""telegram: the fake TDLib tests/fake/tdjson/libtdjson.so, driven by a
scenario file (telegram_e2e.Scenario). TDLib's answers are in-process JSON
objects: its "HTTP" faults are TDLib errors (500, 429 "retry after N"), a
held request is a call paused until a file exists (fault "pause_file")."""

import os
import time

import telegram_e2e as te

from base import Adapter as Base, Fail

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
        "redeliver": "a re-delivery is a message imported from an export, then fetched "
                     "through TDLib; the adapter has no export yet (tests/e2e "
                     "tg_import_then_incr covers it)"}

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
            # Never answered (the fake has no delay): a hang.
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

    def latency(self, s):
        # Each getChatHistory answer takes s seconds (the fake queues it
        # at once and hands it out then); read by every new client, so
        # from the next pass on.
        self.s.d["latency"] = s
        self.s.write()
