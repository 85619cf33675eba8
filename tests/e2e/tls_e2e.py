"""End-to-end tests of TLS trust (SPEC §4: a ca_file, global or per source,
adds to the system's trusted CAs and never replaces them; one that cannot be
read is a configuration error, 78): the real binaries against the fake
seqapi backend served over HTTPS (tests/fake/fakelib.py --tls-cert) with
certificates made at test time by the openssl command, through the harness
in run.py.

"The system's CAs" cannot be the machine's real bundle here (no internet,
and it must not be touched), so a test stands one in: msgsync takes
SSL_CERT_FILE (and SSL_CERT_DIR), when set, as the system's CAs, as OpenSSL
and the curl command do.  With SSL_CERT_FILE = CA B and ca_file = CA A, a
server signed by B and one signed by A must both verify; each control run
shows that the other trust alone would not have done it."""

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request

import __main__ as e2e

test, check, eq, Fail = e2e.test, e2e.check, e2e.eq, e2e.Fail


def openssl(ctx, *args):
    r = subprocess.run(["openssl"] + list(args), cwd=ctx.dir, capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 0, "openssl %s failed" % " ".join(args), r.stderr.strip())


def make_ca(ctx, name):
    """A private CA: ca-NAME.pem (certificate) and ca-NAME.key; returns the
    certificate's path."""
    cnf = os.path.join(ctx.dir, "ca-%s.cnf" % name)
    with open(cnf, "w") as f:
        f.write("[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = v3\n"
                "[dn]\nCN = msgsync test CA %s\n"
                "[v3]\nbasicConstraints = critical, CA:TRUE\n"
                "keyUsage = critical, keyCertSign, cRLSign\n"
                "subjectKeyIdentifier = hash\n" % name)
    openssl(ctx, "req", "-x509", "-config", cnf, "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca-%s.key" % name,
            "-out", "ca-%s.pem" % name, "-days", "2")
    return os.path.join(ctx.dir, "ca-%s.pem" % name)


def make_server_cert(ctx, name, ca):
    """A server certificate for 127.0.0.1 and localhost signed by CA ca:
    returns (cert, key) paths."""
    cnf = os.path.join(ctx.dir, "srv-%s.cnf" % name)
    with open(cnf, "w") as f:
        f.write("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = localhost\n"
                "[v3]\nbasicConstraints = critical, CA:FALSE\n"
                "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
                "subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    key, csr, crt = ("srv-%s.%s" % (name, x) for x in ("key", "csr", "pem"))
    openssl(ctx, "req", "-new", "-config", cnf, "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr)
    openssl(ctx, "x509", "-req", "-in", csr, "-CA", "ca-%s.pem" % ca, "-CAkey",
            "ca-%s.key" % ca, "-set_serial", str(0x5000 + len(name)), "-days", "2",
            "-extfile", cnf, "-extensions", "v3", "-out", crt)
    return os.path.join(ctx.dir, crt), os.path.join(ctx.dir, key)


class TlsFake(e2e.Fake):
    """The fake seqapi over HTTPS with a certificate signed by one CA; its
    control calls trust that CA."""

    def __init__(self, ctx, name="fake", ca=None, **opts):
        super().__init__(ctx, name=name, **opts)
        self.url = "https://127.0.0.1:%d" % self.port
        self.tls = ssl.create_default_context(cafile=ca)

    def call(self, path, body=None, timeout=60):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/_control/" + path, data=data,
                                     method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.tls) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise Fail("fake control %s: HTTP %d %s" % (path, e.code, e.read()[:300]))


def tls_fake(ctx, name, ca, **data):
    """Starts the fake seqapi as `name`, serving HTTPS with a certificate
    signed by CA ca (made by make_ca)."""
    crt, key = make_server_cert(ctx, name, ca)
    data.setdefault("conversations", 4)
    data.setdefault("messages", 30)
    data.setdefault("contacts", 3)
    return ctx.new_fake(name=name, kind=TlsFake, ca=os.path.join(ctx.dir, "ca-%s.pem" % ca),
                        tls_cert=crt, tls_key=key, **data)


def cert_failure(res, source, rc=69):
    """The source failed on the server's certificate: kind network, exit 69
    (1 when another source succeeded)."""
    res.expect_rc(rc)
    s = res.source(source)
    eq(s.get("status"), "failed", "source %s status" % source)
    err = s.get("error") or {}
    eq(err.get("kind"), "network", "source %s error kind" % source)
    check("certificate" in (err.get("message") or ""),
          "source %s: the error does not name the certificate" % source, res.desc())


def line_of(path, needle):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if needle in line:
                return n
    raise Fail("%r not in %s" % (needle, path))


@test
def tls_private_ca(ctx):
    """ca_file = a private CA: a full-sync over https verifies and stores
    everything, per source, as http.ca_file, relative to the configuration
    file's directory, and from a bundle of several certificates; without it
    the same server is refused on its certificate (69, network) before any
    request reaches it."""
    ctx.setup(fake=False)
    make_ca(ctx, "a")
    other = make_ca(ctx, "other")
    fake = tls_fake(ctx, "wa", "a")
    ctx.fake = fake

    r = ctx.run("full-sync", "-j", cfg=ctx.config())
    cert_failure(r, "wa")
    eq(fake.stats()["total"], 0, "requests that reached the server without ca_file")

    ca = os.path.join(ctx.dir, "ca-a.pem")
    e2e.ok_pass(ctx.run("full-sync", "-j", cfg=ctx.config(extra='ca_file = "%s";' % ca)),
                "full-sync")
    e2e.assert_exact(ctx)

    # Global, relative to the configuration's directory (the binaries run
    # elsewhere), in a bundle: text, another CA, then A.
    with open(os.path.join(ctx.dir, "bundle.pem"), "w") as f:
        f.write("Extra CAs for msgsync\n" + open(other).read() + "\n" + open(ca).read())
    fake.add("messages", 7)
    e2e.ok_pass(ctx.run("incr-sync", "-j", cfg=ctx.config(http={"ca_file": "bundle.pem"})),
                "incr-sync")
    e2e.assert_exact(ctx)

    # A bundle without A does not trust the server.
    r = ctx.run("incr-sync", "-j", cfg=ctx.config(http={"ca_file": other}))
    cert_failure(r, "wa")


@test
def tls_ca_file_adds_to_system_cas(ctx):
    """ca_file adds to the system's CAs: with the system's CAs = CA B
    (SSL_CERT_FILE) and ca_file = CA A, a server signed by B and one signed
    by A both verify, whether ca_file is global or per source.  Controls:
    the system's CAs alone refuse A's server; ca_file alone (with the real
    system bundle, which does not hold B) refuses B's."""
    ctx.setup(fake=False)
    ca_a = make_ca(ctx, "a")
    ca_b = make_ca(ctx, "b")
    fa = tls_fake(ctx, "a", "a")
    fb = tls_fake(ctx, "b", "b", messages=20)
    empty = os.path.join(ctx.dir, "empty-dir")
    os.makedirs(empty, exist_ok=True)
    system_b = {"SSL_CERT_FILE": ca_b, "SSL_CERT_DIR": empty}

    def cfg(extra_a="", extra_b="", http=None):
        return ctx.config(http=http, sources=[
            ctx.source_cfg(name="a", fake=fa, extra=extra_a),
            ctx.source_cfg(name="b", fake=fb, extra=extra_b)])

    # Global ca_file.
    e2e.ok_pass(ctx.run("full-sync", "-j", cfg=cfg(http={"ca_file": ca_a}), env=system_b),
                "full-sync")
    e2e.assert_exact(ctx, fake=fa, source="a")
    e2e.assert_exact(ctx, fake=fb, source="b")

    # Per source: a's ca_file, b on the system's CAs only.
    fa.add("messages", 5)
    fb.add("messages", 6)
    e2e.ok_pass(ctx.run("incr-sync", "-j", cfg=cfg(extra_a='ca_file = "%s";' % ca_a),
                        env=system_b), "incr-sync")
    e2e.assert_exact(ctx, fake=fa, source="a")
    e2e.assert_exact(ctx, fake=fb, source="b")

    # Controls.
    r = ctx.run("incr-sync", "-j", cfg=cfg(), env=system_b)
    cert_failure(r, "a", rc=1)
    eq(r.source("b").get("status"), "ok", "b's status on the system's CAs alone")
    r = ctx.run("incr-sync", "-j", cfg=cfg(http={"ca_file": ca_a}))
    cert_failure(r, "b", rc=1)
    eq(r.source("a").get("status"), "ok", "a's status with ca_file alone")


@test
def tls_ca_file_unreadable(ctx):
    """A ca_file that cannot be read is a configuration error (78) at load,
    naming the configuration file and line of the key, before any request;
    a disabled source's is not read."""
    ctx.setup()
    missing = os.path.join(ctx.dir, "no-such-ca.pem")
    cases = [
        ("http.ca_file", ctx.config(http={"ca_file": missing}, name="global.conf"),
         "ca_file '%s': No such file or directory" % missing),
        ("source ca_file", ctx.config(extra='ca_file = "%s";' % missing, name="source.conf"),
         "source 'wa': ca_file '%s': No such file or directory" % missing),
        ("directory", ctx.config(extra='ca_file = "%s";' % ctx.dir, name="dir.conf"),
         "source 'wa': ca_file '%s': Is a directory" % ctx.dir),
    ]
    for what, cfg, want in cases:
        for prog in ("full-sync", "incr-sync", "status-poll"):
            r = ctx.run(prog, cfg=cfg)
            r.expect_rc(78)
            where = "%s:%d: " % (cfg, line_of(cfg, "ca_file ="))
            check(where + want in r.err,
                  "%s, %s: stderr lacks %r" % (what, prog, where + want), r.desc())
    eq(ctx.fake.stats()["total"], 0, "requests")
    # A disabled source's ca_file is not read.
    ok = ctx.source_cfg()
    off = ctx.source_cfg(name="off", extra='enabled = false; ca_file = "%s";' % missing)
    e2e.ok_pass(ctx.run("full-sync", "-j", cfg=ctx.config(sources=[ok, off])), "full-sync")


@test
def tls_ca_file_without_certificate(ctx):
    """A ca_file that holds no certificate (empty, text, a private key only)
    or a broken one is a configuration error (78) naming file and line."""
    ctx.setup()
    make_ca(ctx, "a")
    ca = open(os.path.join(ctx.dir, "ca-a.pem")).read()
    body = ca.split("-----BEGIN CERTIFICATE-----\n")[1]
    files = {
        "empty.pem": ("", "no PEM certificate in it"),
        "text.pem": ("not a certificate\n", "no PEM certificate in it"),
        "key.pem": (open(os.path.join(ctx.dir, "ca-a.key")).read(),
                    "no PEM certificate in it"),
        "broken.pem": ("-----BEGIN CERTIFICATE-----\n" + body[:40] + "!!!\n" + body[60:],
                       "certificate 1 is not valid PEM"),
    }
    for name, (text, want) in files.items():
        p = os.path.join(ctx.dir, name)
        with open(p, "w") as f:
            f.write(text)
        for cfg in (ctx.config(http={"ca_file": p}, name="global.conf"),
                    ctx.config(extra='ca_file = "%s";' % p, name="source.conf")):
            r = ctx.run("full-sync", "-j", cfg=cfg)
            r.expect_rc(78)
            where = "%s:%d: " % (cfg, line_of(cfg, "ca_file ="))
            check(where in r.err and "ca_file '%s': %s" % (p, want) in r.err,
                  "%s: stderr lacks %r and %r" % (name, where, want), r.desc())
    eq(ctx.fake.stats()["total"], 0, "requests")
