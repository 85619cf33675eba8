"""smseagle: the fake device tests/fake/smseagle.py (four id-keyed folders)."""

import smseagle_e2e as se
import smseagle_faults_e2e as sf

from base import SECRET, Adapter as Base, Fail, Skip


class Adapter(Base):
    type = "smseagle"
    source = "sms"
    hold_endpoint = "*"
    fault_endpoint = "inbox"
    FAULTS = dict(Base.FAULTS, bad_row=("bad_row", {}))
    NO_MEANING = {
        "loop": "a folder is walked by id ranges it chooses itself (id_from/id_to), "
                "never by a cursor the device hands out",
        "cycle": "a folder is walked by id ranges it chooses itself, no cursor to cycle",
        "empty": "an empty id range is the device's 404, the end of the walk"}

    def start(self, n, secret=False):
        self.ctx.cluster.createdb(self.ctx.db)
        self.fake = self.ctx.fake = self.ctx.new_fake(
            kind=se.SmsFake, inbox=n // 2, sent=n // 2 - 10, outbox=10,
            token=SECRET if secret else "conf-token")
        self.span = n // 20 + 4
        self.config()
        return self

    def source_cfg(self, extra=""):
        return se.sms_source(self.ctx, extra="page_size = 20; " + extra)

    def grow(self, rnd):
        self.fake.inbox(n=rnd.randrange(3, 30))
        self.fake.send(n=2)

    def outlier(self):
        self.fake.inbox(n=1, id=(1 << 53) - 1)

    def upstream_ids(self):
        return list(se.expected(self.fake))

    def truth(self, cursor=True):
        if cursor:
            sf.assert_exact(self.ctx, self.fake)
        else:
            se.assert_folders(self.ctx, self.fake, check_cursor=False)
            sf.no_duplicates(self.ctx)

    # Deletions: inbox rows (external id in:N) leave the device.

    def pick(self, k=0):
        ids = sorted(r["id"] for r in self.fake.dump("inbox"))
        return se.ext_id("inbox", ids[len(ids) // 3 + 7 * k])

    def delete(self, ext):
        self.fake.post("delete", folder="inbox", ids=[int(ext.split(":")[1])])

    def restore(self, ext):
        self.fake.post("restore", folder="inbox", ids=[int(ext.split(":")[1])])

    def conv_of_dated(self):
        return self.fake.dump("inbox")[0]["number"]

    def add_dated(self, ago):
        ids = self.fake.inbox(n=1, number=self.conv_of_dated(), ago=ago)
        return se.ext_id("inbox", ids[0])

    def by_conv(self):
        out = {}
        for ext, (folder, r) in se.expected(self.fake).items():
            out.setdefault(r["number"], set()).add(ext)
        return out

    def reset_past(self):
        # The device re-created from an old backup of a third of its inbox:
        # its ids go on from there, and as many new messages arrive as to
        # take the ids beyond the old newest.
        top = max(r["id"] for r in self.fake.dump("inbox"))
        keep = top // 3
        self.fake.post("reset_ids", keep=keep, sequences=["inbox"])
        ids = self.fake.inbox(n=top - keep + 10)
        if max(ids) <= top:
            raise Fail("the re-created inbox's ids (%d) did not pass the old cursor (%d)"
                       % (max(ids), top))

    # Attachments (SPEC §9): MMS parts come inline, in base64, with the
    # message: no link to expire, cut, lose or carry a token.

    INLINE = "SMSEagle MMS parts come inline (base64) with the message: no link"

    def media_add(self, content, name="f.jpg", mime="image/jpeg"):
        import base64
        return self.fake.post("media_add", content_b64=base64.b64encode(content).decode(),
                              name=name, mime=mime)["external_id"]

    def media_expire(self):
        raise Skip("smseagle: %s to expire" % self.INLINE)

    def media_cut(self, n):
        raise Skip("smseagle: %s whose body could be cut" % self.INLINE)

    def media_slow(self, delay, n=1):
        raise Skip("smseagle: %s to serve slowly" % self.INLINE)

    def media_gone(self, ext):
        raise Skip("smseagle: %s; once read, the bytes are the store's" % self.INLINE)

    def media_token(self):
        raise Skip("smseagle: %s, no token in one" % self.INLINE)
