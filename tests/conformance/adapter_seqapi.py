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
    DATED_CONV = 0          # the conversation index add_dated() adds to

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

    # Deletions: a row vanishes from every page (the fake's purge); back,
    # it has a new seq, as a backend that re-inserts it gives it.

    def delete(self, ext):
        self.fake.edit("messages", ids=[ext], kind="purge")

    def restore(self, ext):
        self.fake.edit("messages", ids=[ext], kind="restore")

    def add_dated(self, ago):
        r = self.fake.add("messages", 1, conversation_index=self.DATED_CONV,
                          age_days=ago / 86400.0)
        return "m%d" % r["indexes"][0]

    def conv_of_dated(self):
        return "c%d" % self.DATED_CONV

    def by_conv(self):
        out = {}
        for r in self.fake.dump("messages"):
            out.setdefault(r["conversation_id"], set()).add(r["id"])
        return out

    # A row committed late: 30 new messages, the 11th held (its seq given,
    # the row invisible) until commit.

    def late_hide(self):
        self.fake.add("messages", 10)
        r = self.fake.add("messages", 1, hold=True)
        self.fake.add("messages", 19)
        return "m%d" % r["indexes"][0]

    def late_release(self, ext):
        self.fake.call("commit", {"stream": "messages"})

    def reset_past(self):
        # Restored from a backup of its first half (seqs continue from
        # there), then written to: ten old rows edited (their seqs now
        # follow the backup's), more new rows than the lost ones, so that
        # the newest seq is beyond the old cursor and each seq the reader
        # knew belongs to another row.
        st = self.fake.state()["messages"]
        keep = st["count"] // 2
        self.fake.call("reset_seq", {"keep": keep, "streams": ["messages"]})
        self.fake.edit("messages", indexes=list(range(10, 20)))
        self.fake.add("messages", st["latest_seq"] - keep + 25)
        new = self.fake.state()["messages"]["latest_seq"]
        if new <= st["latest_seq"]:
            raise h.Fail("the re-created stream's seqs (%d) did not pass the old cursor (%d)"
                         % (new, st["latest_seq"]))

    # Attachments (SPEC §9): the fake's files behind expiring, token-carrying
    # links (tests/fake/fakefiles.py); media_refresh reads the message again.

    def media_add(self, content, name="f.jpg", mime="image/jpeg"):
        import base64
        return self.fake.call("media_add", {"content_b64": base64.b64encode(content).decode(),
                                            "name": name, "mime": mime})["id"]

    def media_expire(self):
        self.fake.call("media_expire", {})

    def media_cut(self, n):
        self.fake.call("media_cut", {"n": n})

    def media_slow(self, delay, n=1):
        self.fake.call("media_slow", {"delay": delay, "n": n})

    def media_gone(self, ext):
        self.fake.call("media_gone", {"id": ext})

    def media_token(self):
        return self.fake.call("media_state")["secret"]
