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
                  "outlier": "ids are opaque strings; the cursor is a time (future_time)"}

    def start(self, n, secret=False):
        self.ctx.cluster.createdb(self.ctx.db)
        per = 4
        self.fake = self.ctx.new_fake(kind=fe.FbFake, conversations=n // per, messages=per, max_limit=25,
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
