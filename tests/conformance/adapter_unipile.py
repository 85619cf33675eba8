"""unipile: the fake Unipile API tests/fake/unipile.py (chats, messages,
attendees; a (timestamp, id) watermark)."""

import time

import unipile_e2e as ue

from base import SECRET, Adapter as Base


class Adapter(Base):
    type = "unipile"
    source = "uni"
    hold_endpoint = "messages"
    fault_endpoint = "messages"
    FAULTS = dict(Base.FAULTS, bad_row=("bad_row", {}), empty=("empty_fresh", {}),
                  cycle=("cycle", {}))
    NO_MEANING = {"loop": "a cursor that does not advance is the cursor_cycle case "
                          "(A -> B -> A, the general form)",
                  "outlier": "ids are opaque strings; the cursor is a time (future_time)",
                  "reset_past": "the cursor is a time watermark, not an id or seq a "
                                "re-created upstream could pass"}

    def start(self, n, secret=False):
        self.ctx.cluster.createdb(self.ctx.db)
        chats = max(5, n // 40)
        # No seeded attachments: the media cases count the files they add.
        self.fake = self.ctx.fake = self.ctx.new_fake(
            kind=ue.UniFake, chats=chats, messages=n // chats,
            token=SECRET if secret else "conf-token", no_seed_attachments=True)
        self.span = n // 25 + 2
        self.config()
        return self

    def source_cfg(self, extra=""):
        return ue.uni_source(self.ctx, extra="page_size = 25; " + extra)

    def chats(self):
        return [c["id"] for c in self.fake.dump("chats")]

    def grow(self, rnd):
        chats = self.chats()
        for c in rnd.sample(chats, min(3, len(chats))):
            self.fake.message(c, n=rnd.randrange(1, 6))

    def upstream_ids(self):
        return [m["id"] for m in self.fake.dump()]

    def truth(self, cursor=True):
        ue.assert_exact(self.ctx, self.fake, source=self.source, check_cursor=cursor)

    def redeliver(self):
        m = self.fake.dump()[len(self.fake.dump()) // 2]
        self.fake.post("duplicate", id=m["id"],
                       fields={"timestamp": ue.fmt_ms(int(time.time() * 1000))})
        return m["provider_id"]

    def future(self):
        self.fake.message(self.chats()[0], n=1, at="2100-01-01T00:00:00.000Z")

    # Deletions: the message is purged (no longer listed, no "deleted" flag).

    def delete(self, ext):
        self.fake.post("delete_message", id=ext, purge=True)

    def restore(self, ext):
        self.fake.post("restore_message", id=ext)

    def conv_of_dated(self):
        if not getattr(self, "dated", None):
            self.dated = self.chats()[0]
        return self.dated

    def add_dated(self, ago):
        return self.fake.message(self.conv_of_dated(), n=1, ago=ago)[0]

    def by_conv(self):
        out = {}
        for m in self.fake.dump():
            out.setdefault(m["chat_id"], set()).add(m["id"])
        return out

    # Attachments (SPEC §9): links that expire, with a token; the bytes also
    # at GET /api/v1/messages/{id}/attachments/{attachment_id} (X-API-KEY).

    def media_add(self, content, name="f.jpg", mime="image/jpeg"):
        import base64
        return self.fake.post("media_add", content_b64=base64.b64encode(content).decode(),
                              name=name, mime=mime)["id"]

    def media_expire(self):
        self.fake.post("media_expire")

    def media_cut(self, n):
        self.fake.post("media_cut", n=n)

    def media_slow(self, delay, n=1):
        self.fake.post("media_slow", delay=delay, n=n)

    def media_gone(self, ext):
        self.fake.post("media_gone", id=ext)

    def media_token(self):
        return self.fake.call("media_state")["secret"]
