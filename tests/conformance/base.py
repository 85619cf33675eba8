"""What every conformance adapter shares: the harness (tests/e2e/run.py,
imported as the module `run`, with the per-connector e2e files it finds)
and the adapter interface, with the HTTP fakes' side of it implemented once
(tests/fake/fakelib.py gives every HTTP fake the same gates and faults).

An adapter (tests/conformance/adapter_<type>.py, class Adapter) says, for
one source type: how to start its fake with about N items and write its
source's config (start, config), how the upstream changes between passes
(grow), what "the store equals the fake's truth" means (truth), how to hold
the binary at its k-th request (hold, wait_held, release) and how to inject
each fault (fault; raise Skip("why") where a fault has no meaning for it).
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fake"))

import run as h  # noqa: E402  -- the e2e harness, as a module

h.import_e2e_modules(h)

Fail, Skip, check, eq = h.Fail, h.Skip, h.check, h.eq

# Secrets the -vvv case looks for in every output (each adapter adds its own).
SECRET = "Cf-S3cr3t-T0k3n-9d2e7b41"


class Adapter:
    type = None             # the source type
    source = None           # the source's name in the config
    hold_endpoint = "*"     # what hold() counts
    fault_endpoint = "*"    # where fault() acts
    span = 10               # about how many hold_endpoint requests a first full pass makes
    cold_start = True       # the type has cold_start_days

    def __init__(self, ctx):
        self.ctx = ctx
        self.fake = None
        self.extra = ""     # extra source settings (every config written)

    # -- to implement ---------------------------------------------------

    def start(self, n, secret=False):
        """A fresh database and a fake with about n items (secret: the
        fake wants SECRET and every secret the source has); writes the
        config. Returns self."""
        raise NotImplementedError

    def source_cfg(self, extra=""):
        raise NotImplementedError

    def grow(self, rnd):
        """The upstream changes between passes: new items, some edits."""
        raise NotImplementedError

    def truth(self, cursor=True):
        """Fail unless the store holds every upstream item exactly once, with
        the right content (cursor: and each cursor is the upstream's newest)."""
        raise NotImplementedError

    def upstream_ids(self):
        """The external ids the upstream's messages are stored under."""
        raise NotImplementedError

    def secrets(self):
        return [SECRET]

    # Where a case has no meaning for a source type, the adapter says why
    # (NO_MEANING: fault kind or hook -> reason); a case calls require()
    # for what it needs before it starts anything.

    NO_MEANING = {}
    HOOKS = {"redeliver": "an item has no provider identity beside its id",
             "future": "the cursor is not a time",
             "outlier": "the fake cannot make an outlier id yet",
             "delete": "the fake cannot delete (and restore) a message yet",
             "add_dated": "the fake cannot add a message of a given age yet",
             "by_conv": "the adapter cannot say which conversation holds each message yet",
             "start_instagram": "only a Facebook Page's Instagram inbox lists only the newest "
                          "20 messages of a conversation",
             "late_hide": "only a since_seq stream can show a lower seq after higher ones",
             "reset_past": "the fake cannot re-create its upstream past the cursor yet",
             "media_add": "the fake serves no files yet",
             "media_expire": "the fake's links do not expire",
             "media_cut": "the fake cannot cut a file's body",
             "media_gone": "the fake cannot lose a file",
             "media_token": "the fake's links carry no token"}

    def require(self, what):
        """Skip unless the adapter can do `what` (a fault kind, a hook, "latency")."""
        if what in self.NO_MEANING:
            raise Skip("%s: %s" % (self.type, self.NO_MEANING[what]))
        if what in self.HOOKS:
            if getattr(type(self), what) is getattr(Adapter, what):
                raise Skip("%s: %s" % (self.type, self.HOOKS[what]))
        elif what != "latency" and what not in self.FAULTS:
            raise Skip("%s: the fake has no '%s' fault yet" % (self.type, what))

    def redeliver(self):
        """Delivers an item again under a new id with the same provider
        identity; returns that identity (raw->>'provider_id')."""
        self.require("redeliver")

    def future(self):
        """Adds one item dated in the year 2100."""
        self.require("future")

    def outlier(self):
        """Makes the upstream announce one id far beyond what it holds."""
        self.require("outlier")

    # Deletions and coverage (issue 12; SPEC sections 6 and 8).

    def pick(self, k=0):
        """The external id of a stored upstream message that delete() can
        take away (k: the k-th such choice, each a different message)."""
        ids = sorted(self.upstream_ids())
        return ids[len(ids) // 3 + 7 * k]

    def delete(self, ext):
        """The upstream loses message ext without a trace (no deletion is
        reported: it is simply no longer listed)."""
        self.require("delete")

    def restore(self, ext):
        """Message ext, deleted by delete(), is upstream again as it was."""
        self.require("delete")

    def add_dated(self, ago):
        """Adds one upstream message sent `ago` seconds ago, always to the
        same conversation; returns its external id."""
        self.require("add_dated")

    def conv_of_dated(self):
        """The conversation (external id) add_dated() adds to."""
        self.require("add_dated")

    def by_conv(self):
        """The upstream's messages as stored: conversation external id ->
        set of message external ids (what a complete mirror holds)."""
        self.require("by_conv")

    def start_instagram(self):
        """Like start(), for an Instagram inbox with no conversation yet."""
        self.require("start_instagram")

    def late_hide(self):
        """New messages, one of them with a seq below the others' that no
        page shows yet (committed late); returns its external id."""
        self.require("late_hide")

    def late_release(self, ext):
        """The late row commits: pages show it, at its lower seq."""
        self.require("late_hide")

    def reset_past(self):
        """The upstream is restored or re-created and has already handed out
        new ids (or seqs) beyond the old cursor."""
        self.require("reset_past")

    # Attachments (issue 13; SPEC section 9).

    def media_add(self, content, name="f.jpg", mime="image/jpeg"):
        """A new upstream message carrying one file with exactly these
        bytes; returns the message's external id."""
        self.require("media_add")

    def media_expire(self):
        """Every link served so far stops working; the provider's refresh
        gives working ones."""
        self.require("media_expire")

    def media_cut(self, n):
        """The next n file bodies stop halfway through."""
        self.require("media_cut")

    def media_gone(self, ext):
        """The file of message ext is gone for good upstream."""
        self.require("media_gone")

    def media_token(self):
        """A string the fake puts in its links that must never be printed
        or stored."""
        self.require("media_token")

    def media_config(self, max_bytes=None, store="dir", extra="", http=None):
        """The config with a media group (store under the case's directory);
        returns the store's directory."""
        d = os.path.join(self.ctx.dir, "media")
        p = self.config(extra=extra, http=http)
        with open(p, "a") as f:
            f.write('media = { store = "%s"; dir = "%s"; %s };\n' % (
                store, d, "" if max_bytes is None else "max_bytes = %d;" % max_bytes))
        return d

    # -- shared ---------------------------------------------------------

    def config(self, http=None, sync=None, extra="", name="msgsync.conf", log=None):
        http = dict({"timeout": 5, "connect_timeout": 2, "retries": 3, "backoff": 0.01},
                    **(http or {}))
        return self.ctx.config(sources=[self.source_cfg(self.extra + " " + extra)],
                               http=http, sync=sync, log=log, name=name)

    def run(self, cmd, *args, **kw):
        return self.ctx.run(cmd, "-j", *args, **kw)

    def ok(self, cmd, *args, **kw):
        r = self.run(cmd, *args, **kw)
        h.ok_pass(r)
        return r

    def assert_subset(self, what):
        """What a pass that died or failed left is whole rows of upstream
        items, each once (nothing half-written, nothing made up)."""
        got = self.stored_ids()
        check(len(got) == len(set(got)), "%s: a message stored twice" % what)
        extra = set(got) - set(self.upstream_ids())
        check(not extra, "%s: %d stored messages the upstream does not have" % (what, len(extra)),
              sorted(extra)[:5])

    def stored_ids(self, table="message"):
        return [r["external_id"] for r in self.ctx.sql_json(
            "SELECT t.external_id FROM %s t JOIN source s ON s.id = t.source_id "
            "WHERE s.name = '%s'" % (table, self.source))]

    # Holds: the binary is stopped at a known request, by the fake.

    def hold(self, after):
        """Lets `after` further requests (of hold_endpoint) through and holds
        the next one until release()."""
        self.fake.call("gate", {"endpoint": self.hold_endpoint, "after": after})

    def wait_held(self, p, timeout=40):
        """True once a request is held, False if p ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.fake.wait(blocked=1, timeout=0.2) is not None:
                return True
            if p.poll() is not None:
                return False
        raise Fail("%s never reached the held request" % os.path.basename(p.argv[0]))

    def release(self):
        self.fake.call("release", {})

    # Faults (the kinds of fakelib; an adapter maps its own).

    FAULTS = {"5xx": ("http", {"status": 503}), "429": ("429", {}),
              "truncate": ("truncate", {}), "slow": ("slow", {})}

    def fault(self, kind, after=0, times=1, **kw):
        self.require(kind)
        k, d = self.FAULTS[kind]
        kw = dict(d, **kw)
        ep = kw.pop("endpoint", self.fault_endpoint)
        self.fake.fault(ep, k, after=after, times=times, **kw)

    def clear_faults(self):
        self.fake.call("clear_faults", {})

    def latency(self, s):
        self.fake.call("config", {"latency": s})
