"""facebook: the fake Graph API tests/fake/facebook.py (a Page's Messenger
conversations and their messages)."""

import facebook_e2e as fe

from base import SECRET, Adapter as Base

APP_SECRET = "Cf-App-S3cr3t-5be0c1"


class Adapter(Base):
    type = "facebook"
    source = "fb"
    hold_endpoint = "messages"
    fault_endpoint = "messages"
    FAULTS = dict(Base.FAULTS, empty=("empty_page", {}),
                  bad_row=("bad_row", {"endpoint": "conversations", "first": True}),
                  cycle=("cycle", {"endpoint": "conversations"}))
    NO_MEANING = {"loop": "a cursor that does not advance is the cursor_cycle case "
                          "(A -> B -> A, the general form)",
                  "outlier": "ids are opaque strings; the cursor is a time (future_time)",
                  "reset_past": "the cursor is a time watermark, not an id or seq a "
                                "re-created upstream could pass"}

    def start(self, n, secret=False):
        self.ctx.cluster.createdb(self.ctx.db)
        per = 4
        self.fake = self.ctx.new_fake(kind=fe.FbFake, conversations=n // per, messages=per, max_limit=25,
                                      attachments_every=0,
                                      token=SECRET if secret else "conf-token")
        self.ctx.fake = self.fake
        if secret:
            self.fake.call("config", {"app_secret": APP_SECRET})
            p = self.ctx.token_file(APP_SECRET, "fb.app_secret")
            self.extra = 'app_secret_file = "%s";' % p
        self.span = n // per
        self.config()
        return self

    def fault(self, kind, after=0, times=1, **kw):
        if kind == "cycle":
            # The fake's cycle alternates the first two cursors of the
            # faulted requests (A, B, A, ...): pages small enough to have
            # them.
            self.fake.call("config", {"max_limit": 5})
        super().fault(kind, after=after, times=times, **kw)

    def clear_faults(self):
        super().clear_faults()
        self.fake.call("config", {"max_limit": 25})

    def source_cfg(self, extra=""):
        return fe.fb_source(self.ctx, extra=extra)

    def secrets(self):
        import hashlib
        import hmac
        proof = hmac.new(APP_SECRET.encode(), SECRET.encode(), hashlib.sha256).hexdigest()
        return [SECRET, APP_SECRET, proof]

    def convs(self):
        return [c["id"] for c in self.fake.dump("1111", "messenger")]

    def grow(self, rnd):
        convs = self.convs()
        for c in rnd.sample(convs, min(3, len(convs))):
            self.fake.post("message", conversation=c, n=rnd.randrange(1, 4))
        self.fake.post("conversation", n=1, messages=3)

    def upstream_ids(self):
        return [m["id"] for c in self.fake.dump("1111", "messenger") for m in c["messages"]]

    def truth(self, cursor=True):
        fe.assert_fb_exact(self.ctx, self.fake, source=self.source)

    def future(self):
        self.fake.post("message", conversation=self.convs()[0], at="2100-01-01T00:00:00+0000")

    # Deletions: the Graph API no longer lists the message.

    def delete(self, ext):
        self.fake.post("delete_message", ids=[ext])

    def restore(self, ext):
        self.fake.post("restore_message", ids=[ext])

    def conv_of_dated(self):
        if not getattr(self, "dated", None):
            self.dated = self.convs()[0]
        return self.dated

    def add_dated(self, ago):
        return self.fake.post("message", conversation=self.conv_of_dated(),
                              ago=ago)["ids"][0]

    def by_conv(self):
        return {c["id"]: {m["id"] for m in c["messages"] if m["detail"]}
                for c in self.fake.dump("1111", self.platform)}

    platform = "messenger"

    def start_instagram(self):
        self.ctx.cluster.createdb(self.ctx.db)
        self.fake = self.ctx.fake = self.ctx.new_fake(kind=fe.FbFake, conversations=0,
                                                      max_limit=25, token="conf-token",
                                                      attachments_every=0)
        self.platform = "instagram"
        self.extra = 'platform = "instagram";'
        self.config()
        return self

    def instagram_conversation(self, n, ago):
        """An Instagram conversation of n messages, the newest sent `ago`
        seconds ago, a minute apart; returns its id."""
        return self.fake.post("conversation", platform="instagram", messages=n, step=60,
                              ago=ago)["ids"][0]

    def messages_of(self, conv):
        """The ids of a conversation's messages upstream, newest first, and
        whether the API details each (Instagram: the newest 20)."""
        for c in self.fake.dump("1111", self.platform):
            if c["id"] == conv:
                return [(m["id"], m["detail"]) for m in c["messages"]]
        raise KeyError(conv)

    # Attachments (SPEC §9): the fake's files behind expiring CDN links on its
    # own host (/cdn/<id>?oe=<hex>&token=<per-link>); media_refresh reads the
    # message again (GET /{message-id}?fields=attachments).

    def media_add(self, content, name="f.jpg", mime="image/jpeg"):
        import base64
        conv = self.convs()[0] if self.convs() else self.fake.post(
            "conversation", platform=self.platform)["ids"][0]
        return self.fake.post("message", conversation=conv,
                              file={"content_b64": base64.b64encode(content).decode(),
                                    "name": name, "mime": mime})["ids"][0]

    def media_expire(self):
        self.fake.post("expire_links")

    def media_cut(self, n):
        self.fake.post("cut", n=n)

    def media_slow(self, delay, n=1):
        self.fake.post("slow", delay=delay, n=n)

    def media_gone(self, ext):
        self.fake.post("gone", message=ext)

    def media_token(self):
        return self.fake.call("media_token")["token"]
