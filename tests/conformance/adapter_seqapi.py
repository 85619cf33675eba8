"""seqapi: the fake backend tests/fake/seqapi.py (three since_seq streams)."""

from base import SECRET, Adapter as Base, h

PS = {"conversations": 10, "messages": 25, "contacts": 10}


class Adapter(Base):
    type = "seqapi"
    source = "wa"
    hold_endpoint = "messages"
    fault_endpoint = "messages"
    cold_start = False
    # Its own faults beside fakelib's: a row of the wrong type, a page that
    # does not advance, a latest_seq far beyond the rows.
    FAULTS = dict(Base.FAULTS, bad_row=("bad_id", {}), loop=("stuck", {}),
                  outlier=("latest_ahead", {"by": 1 << 40}))
    NO_MEANING = {
        "cycle": "the next since_seq comes from the page's rows: a cursor that does "
                 "not advance is the pagination_loop case",
        "empty": "an empty page with has_more is a page that does not advance "
                 "(pagination_loop)"}

    def start(self, n, secret=False):
        self.ctx.setup(conversations=max(5, n // 20), messages=n, contacts=max(5, n // 20),
                       token=SECRET if secret else "conf-token")
        self.fake = self.ctx.fake
        self.span = n // PS["messages"]
        self.config()
        return self

    def source_cfg(self, extra=""):
        return self.ctx.source_cfg(page_size=PS, extra=extra)

    def grow(self, rnd):
        self.fake.add("messages", rnd.randrange(5, 40))
        n = self.fake.state()["messages"]["count"]
        self.fake.edit("messages", indexes=[rnd.randrange(0, n) for _ in range(3)])
        self.fake.add("contacts", 1)

    def upstream_ids(self):
        return [r["id"] for r in self.fake.dump("messages")]

    def truth(self, cursor=True):
        h.assert_exact(self.ctx, self.fake, check_cursor=cursor)

    def outlier(self):
        # A latest_seq far beyond the rows, once.  A message is added so
        # that the next pass asks for a page at all (a stream whose status
        # says nothing is new is not asked, issue 11).
        self.fake.add("messages", 1)
        self.fault("outlier", times=1)
