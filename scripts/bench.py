#!/usr/bin/env python3
"""make bench: full-sync of N seqapi messages from the local fake into a
throwaway PostgreSQL, against the physical floor (a plain COPY of the same
rows into an identical table: the rows as full-sync stored them, every
column it writes; and, as before issue 11, the fake's 9 fields alone), then a rerun over the unchanged data, then
full-sync --import of a generated Telegram Desktop export of N messages.

Then a no-op incr-sync over many seqapi sources (default 1,000, one fake
upstream, sync.jobs = 8): a first pass sets every cursor, the second, which
finds nothing new, is measured (wall time per source, peak RSS, requests
the fake received per source and per stream).

The fake serves the load's pages as it rendered them before the runs
(--prerender): its CPU, printed for each run, is the harness's, not
msgsync's.

Prints messages/s, wall time, peak RSS of the msgsync process, the COPY
rate and the ratio, and for the rerun its rate and the WAL it generated;
at the end the three figures of issue 11 against their targets.
Not part of make check: it prints figures, it asserts nothing.
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = os.path.join(TOP, "tests", "fake", "seqapi.py")
PGLOCAL = os.path.join(TOP, "scripts", "pg-local")


def sh(cmd, env=None, **kw):
    return subprocess.run(cmd, env=env, check=True, **kw)


def psql(env, sql):
    out = sh(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql], env=env,
             stdout=subprocess.PIPE, text=True).stdout
    return out.strip()


def wait_port(path, proc):
    for _ in range(600):
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return int(open(path).read().strip())
        if proc.poll() is not None:
            sys.exit("bench: the fake upstream exited early")
        time.sleep(0.05)
    sys.exit("bench: the fake upstream did not start")


sys.path.insert(0, os.path.join(TOP, "tests", "fake"))
from measure import run_measured  # noqa: E402


def run_timed(cmd, env, feed=None):
    """Runs cmd (feed(stdin) writes its input); returns (wall seconds, peak
    RSS in MB of that process, its CPU seconds)."""
    rc, err, wall, rss, cpu = run_measured(cmd, env, feed)
    if rc != 0:
        sys.exit("bench: %s exited %d: %s" % (cmd[0], rc,
                                              err[-500:].decode("utf-8", "replace")))
    return wall, rss, cpu


def proc_cpu(pid):
    """CPU seconds (user + system) process pid has used so far."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def http_get(port, path, body=None):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("POST" if body is not None else "GET", path,
              body=json.dumps(body) if body is not None else None)
    r = c.getresponse().read()
    c.close()
    return json.loads(r)


def many_sources(tmp, env, nsrc, jobs, fig):
    """A no-op incr-sync over nsrc seqapi sources of one fake (each its own
    integration), measured on its second pass."""
    env = dict(env)
    psql(env, "CREATE DATABASE bench_many")
    env["PGDATABASE"] = "bench_many"
    portfile = os.path.join(tmp, "port-many")
    ids = ["int-%d" % i for i in range(nsrc)]
    argv = [sys.executable, FAKE, "--port-file", portfile, "--messages", "20",
            "--conversations", "3", "--contacts", "5"]
    for i in ids:
        argv += ["--integration", i]
    fake = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = wait_port(portfile, fake)
        conf = os.path.join(tmp, "many.conf")
        with open(conf, "w") as f:
            f.write('database = { conninfo = "dbname=bench_many"; };\n'
                    'sync = { jobs = %d; };\nsources = (\n' % jobs)
            f.write(",\n".join(
                '  { name = "s%d"; type = "seqapi"; url = "http://127.0.0.1:%d";'
                ' integration_id = "%s"; token_env = "BENCH_TOKEN"; }' % (k, port, i)
                for k, i in enumerate(ids)))
            f.write("\n);\n")
        cmd = [os.path.join(TOP, "incr-sync"), "-q", "-c", conf]
        w1, _, _ = run_timed(cmd, env)
        got = int(psql(env, "SELECT count(*) FROM message"))
        if got != 20 * nsrc:
            sys.exit("bench: many sources: expected %d messages, found %d"
                     % (20 * nsrc, got))
        http_get(port, "/_control/clear_log", {})
        c0 = http_get(port, "/_control/stats")["connections"]
        wall, rss, cpu = run_timed(cmd, env)
        st = http_get(port, "/_control/stats")
        reqs = st["total"]
        nstreams = 3 * nsrc
        per = wall * 1000.0 / nsrc
        print("incr-sync, no-op, %d seqapi sources (sync.jobs = %d): %.2f s wall,"
              " %.2f ms per source, peak RSS %.1f MB, msgsync CPU %.1f s, %d requests"
              " (%.2f per source, %.2f per stream: %s), %d connections"
              " (first pass %.2f s)"
              % (nsrc, jobs, wall, per, rss, cpu, reqs, reqs / nsrc, reqs / nstreams,
                 ", ".join("%s %d" % kv for kv in sorted(st["by_endpoint"].items())),
                 st["connections"] - c0, w1))
        fig["noop_ms"] = per
        fig["noop_rss"] = rss
        fig["noop_req_stream"] = reqs / nstreams
    finally:
        fake.terminate()
        fake.wait()


def media(tmp, env, nfiles, fig, big_mb):
    """media-sync of nfiles files of 1 MB from a local file server, against
    curl alone fetching the same files from it in the same run (one
    connection, written to disk like the store, without its fsync and
    hash), then one file of big_mb MB: wall time and peak RSS (issue 13)."""
    files = os.path.join(TOP, "tests", "fake", "cdn.py")
    seqfake = os.path.join(TOP, "tests", "fake", "seqapi.py")
    cdn = os.path.join(tmp, "cdn")
    os.makedirs(cdn)
    block = os.urandom(1 << 20)
    for i in range(nfiles):     # distinct contents: nothing deduplicated
        with open(os.path.join(cdn, "f%05d" % i), "wb") as f:
            f.write(b"%016d" % i + block[16:])
    with open(os.path.join(cdn, "big"), "wb") as f:
        for i in range(big_mb):
            f.write(b"%016d" % (i + nfiles) + block[16:])
    procs = []
    try:
        pf, sf = os.path.join(tmp, "files.port"), os.path.join(tmp, "seq.port")
        procs.append(subprocess.Popen([sys.executable, files, "--dir", cdn,
                                       "--port-file", pf], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        fport = wait_port(pf, procs[-1])
        procs.append(subprocess.Popen([sys.executable, seqfake, "--port-file", sf,
                                       "--messages", str(nfiles + 1), "--conversations",
                                       "10", "--contacts", "10"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        sport = wait_port(sf, procs[-1])
        store = os.path.join(tmp, "media")
        conf = os.path.join(tmp, "media.conf")
        with open(conf, "w") as f:
            f.write('database = { conninfo = "dbname=media"; };\n'
                    'media = { store = "dir"; dir = "%s"; max_bytes = %d; };\n'
                    'sources = ( { name = "m"; type = "seqapi";'
                    ' url = "http://127.0.0.1:%d"; integration_id = "int-1";'
                    ' token_env = "BENCH_TOKEN"; } );\n'
                    % (store, (big_mb + 1) << 20, sport))
        menv = dict(env, PGDATABASE="media")
        sh(["createdb", "media"], env=env)
        run_timed([os.path.join(TOP, "full-sync"), "-q", "-c", conf], menv)
        ids = psql(menv, "SELECT string_agg(external_id, ' ' ORDER BY id) FROM message")
        ids = ids.split()
        url = "http://127.0.0.1:%d/f/" % fport
        psql(menv, "DELETE FROM attachment")
        vals = ",".join("('%s', '%sf%05d')" % (ids[i], url, i) for i in range(nfiles))
        psql(menv, "INSERT INTO attachment (message_id, source_id, external_id, url)"
             " SELECT m.id, m.source_id, '0', v.u FROM (VALUES %s) v(x, u)"
             " JOIN message m ON m.external_id = v.x" % vals)

        # curl alone, on the same files, one connection, to disk.
        out = os.path.join(tmp, "curl")
        os.makedirs(out)
        lst = os.path.join(tmp, "curl.list")
        with open(lst, "w") as f:
            for i in range(nfiles):
                f.write('url = "%sf%05d"\noutput = "%s/f%05d"\n' % (url, i, out, i))
        # Each run starts with nothing left to write back: the files just
        # generated (and then curl's) would otherwise compete for the disk.
        os.sync()
        wall_c, rss_c, _ = run_timed([shutil.which("curl") or "/usr/bin/curl", "-sS", "--fail",
                                     "-K", lst], env)
        os.sync()
        # curl's files stay until media-sync is done: deleting 2,000 files
        # just before would make ext4 look at those freed inodes for each
        # file media-sync creates.
        wall_m, rss_m, cpu_m = run_timed([os.path.join(TOP, "media-sync"), "-q", "-c",
                                          conf], menv)
        got = int(psql(menv, "SELECT count(*) FROM attachment WHERE state = 'stored'"))
        if got != nfiles:
            sys.exit("bench: media-sync stored %d of %d files" % (got, nfiles))
        mb = nfiles * (1 << 20) / 1e6
        print("media: curl alone fetched %d files of 1 MB in %.2f s (%.0f MB/s);"
              " media-sync stored them in %.2f s (%.0f MB/s, CPU %.1f s), peak RSS %.1f MB"
              % (nfiles, wall_c, mb / wall_c, wall_m, mb / wall_m, cpu_m, rss_m))
        shutil.rmtree(out)
        fig["media_ratio"] = wall_c / wall_m
        fig["media_rss"] = rss_m

        # One big file.
        psql(menv, "INSERT INTO attachment (message_id, source_id, external_id, url)"
             " SELECT m.id, m.source_id, '0', '%sbig' FROM message m"
             " WHERE m.external_id = '%s'" % (url, ids[nfiles]))
        os.sync()
        wall_b, rss_b, _ = run_timed([os.path.join(TOP, "media-sync"), "-q", "-c", conf],
                                     menv)
        print("media: one file of %d MB stored in %.1f s, peak RSS %.1f MB"
              % (big_mb, wall_b, rss_b))
        fig["media_big_rss"] = rss_b
        fig["media_big_mb"] = big_mb
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(cdn, ignore_errors=True)


# Part `search` (issue 14): the queries, by kind; see search_bench().
SEARCH_KINDS = ("rare+common", "common+common", "phrase")


def search_bench(tmp, env, pgdir, nmsg, fig):
    """Part `search` (issue 14): nmsg messages (default 1,000,000) whose
    bodies are 5 to 30 words drawn from a Zipf-like vocabulary of 20,000
    words (P(rank r) ~ 1/r, the commonest the shortest), loaded with COPY
    into a database of their own whose schema a msgsync binary made, the
    search index then built as the schema has it (its own definition).
    Then sync-search --json --limit 20 for 50 two-word queries of mixed
    frequency (rare+common: ranks 1,000-20,000 and 10-300; common+common:
    both 10-300; a phrase of two common words), after one warm-up round,
    each timed as a whole process (start, configuration, connection,
    search, output); and in a second round its search statement alone
    (the executor time auto_explain logs for it).  Prints the median and
    p95 of both, and the plan of the slowest."""
    import random
    import statistics
    rnd = random.Random(14)
    db = "searchbench"
    senv = dict(env, PGDATABASE=db)
    sh(["createdb", db], env=env)
    conf = os.path.join(tmp, "search.conf")
    with open(conf, "w") as f:
        f.write('database = { conninfo = "dbname=%s"; };\n'
                'http = { retries = 0; };\n'
                'sources = ( { name = "bench"; type = "seqapi"; url = "http://127.0.0.1:1";'
                ' integration_id = "int-1"; token_env = "BENCH_TOKEN"; } );\n' % db)
    # Any binary that migrates makes the schema (this pass itself fails:
    # nothing listens at the source's url).
    subprocess.run([os.path.join(TOP, "incr-sync"), "-q", "-c", conf], env=senv,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if psql(senv, "SELECT count(*) FROM msgsync_setting") != "1":
        sys.exit("bench: search: the schema was not made")
    syl = [c + v for c in "bcdfghjklmnprstvz" for v in "aeiou"]
    vocab, seen = [], set()
    while len(vocab) < 20000:
        w = "".join(rnd.choice(syl) for _ in range(rnd.choice((2, 2, 3, 3, 3, 4))))
        if w not in seen:
            seen.add(w)
            vocab.append(w)
    vocab.sort(key=len)
    cum, t = [], 0.0
    for r in range(1, len(vocab) + 1):
        t += 1.0 / r
        cum.append(t)
    psql(senv, "INSERT INTO source (name, type) VALUES ('bench', 'seqapi')"
         " ON CONFLICT (name) DO NOTHING;"
         " INSERT INTO conversation (source_id, external_id, title)"
         " SELECT s.id, 'c' || g, 'conversation ' || g FROM source s,"
         " generate_series(1, 1000) g WHERE s.name = 'bench';"
         " INSERT INTO contact (source_id, external_id, display_name)"
         " SELECT s.id, 'u' || g, 'contact ' || g FROM source s,"
         " generate_series(1, 1000) g WHERE s.name = 'bench'")
    src, conv0, who0 = psql(senv, "SELECT (SELECT id FROM source WHERE name = 'bench'),"
                            " (SELECT min(id) FROM conversation),"
                            " (SELECT min(id) FROM contact)").split("|")
    t0 = time.monotonic()
    rows = os.path.join(tmp, "search.copy")
    with open(rows, "w") as f:
        for i in range(nmsg):
            f.write("%s\tm%d\t%d\t%d\t%s\t%s\t%s\n" % (
                src, i, int(conv0) + i % 1000, int(who0) + i * 7 % 1000,
                "in" if i % 3 else "out",
                " ".join(rnd.choices(vocab, cum_weights=cum, k=rnd.randint(5, 30))),
                time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(1577836800 + i * 90))))
    gen = time.monotonic() - t0
    idx = psql(senv, "SELECT indexdef FROM pg_indexes WHERE indexname = 'message_search_idx'")
    psql(senv, "DROP INDEX message_search_idx")
    t0 = time.monotonic()
    sh(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
        "\\copy message (source_id, external_id, conversation_id, sender_contact_id,"
        " direction, body, sent_at) FROM '%s'" % rows], env=senv)
    copy = time.monotonic() - t0
    os.unlink(rows)
    t0 = time.monotonic()
    psql(senv, "SET maintenance_work_mem = '512MB'; " + idx)
    build = time.monotonic() - t0
    psql(senv, "VACUUM ANALYZE message")
    size = psql(senv, "SELECT pg_size_pretty(pg_relation_size('message_search_idx'))")
    print("search: %d messages of 5-30 words (20,000-word Zipf vocabulary): generated"
          " in %.0f s, COPY %.0f s, index built in %.0f s (%s)"
          % (nmsg, gen, copy, build, size))

    def pick(lo, hi):
        return vocab[int(math.exp(rnd.uniform(math.log(lo), math.log(hi)))) - 1]
    queries = []
    for i in range(50):
        kind = SEARCH_KINDS[i % 3]
        a = pick(10, 300)
        b = pick(1000, 20000) if kind == "rare+common" else pick(10, 300)
        while b == a:
            b = pick(10, 300)
        queries.append((kind, '"%s %s"' % (a, b) if kind == "phrase" else
                        "%s %s" % (b, a)))
    argv = [os.path.join(TOP, "sync-search"), "--json", "--limit", "20", "-c", conf]

    def one(q, e):
        t0 = time.monotonic()
        r = subprocess.run(argv + [q], env=e, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        w = time.monotonic() - t0
        if r.returncode != 0:
            sys.exit("bench: sync-search %r exited %d: %s" % (q, r.returncode, r.stderr))
        return w, r.stdout.count(b"\n")
    for _, q in queries:         # warm-up: the index and the heap in memory
        one(q, senv)
    walls, found = [], []
    for _, q in queries:
        w, n = one(q, senv)
        walls.append(w * 1000)
        found.append(n)
    # The statement alone: auto_explain's executor time, in the server log.
    log = os.path.join(pgdir, "postgres.log")
    aenv = dict(senv, PGOPTIONS="-c session_preload_libraries=auto_explain"
                " -c auto_explain.log_min_duration=0 -c auto_explain.log_analyze=on"
                " -c auto_explain.log_buffers=on -c auto_explain.log_timing=off")
    sqls, plans = [], []
    for _, q in queries:
        start = os.path.getsize(log)
        one(q, aenv)
        with open(log, errors="replace") as f:
            f.seek(start)
            text = f.read()
        chunk = [c for c in text.split("duration: ")
                 if "Query Text: SELECT s.name" in c]
        if not chunk:
            sys.exit("bench: search: no plan of the search in %s" % log)
        sqls.append(float(chunk[0].split(" ms", 1)[0]))
        plans.append(re.split(r"\n\d{4}-\d\d-\d\d ", chunk[0])[0])

    def p95(v):
        return sorted(v)[max(0, int(math.ceil(0.95 * len(v))) - 1)]
    for kind in SEARCH_KINDS:
        k = [i for i, (kd, _) in enumerate(queries) if kd == kind]
        print("search: %-13s %2d queries, hits %d-%d: sync-search median %.1f ms,"
              " max %.1f ms; its SQL median %.1f ms, max %.1f ms"
              % (kind, len(k), min(found[i] for i in k), max(found[i] for i in k),
                 statistics.median(walls[i] for i in k), max(walls[i] for i in k),
                 statistics.median(sqls[i] for i in k), max(sqls[i] for i in k)))
    print("search: all 50: sync-search median %.1f ms, p95 %.1f ms; the SQL alone median"
          " %.1f ms, p95 %.1f ms" % (statistics.median(walls), p95(walls),
                                     statistics.median(sqls), p95(sqls)))
    worst = max(range(len(sqls)), key=lambda i: sqls[i])
    print("search: the slowest statement (%s, %r):" % queries[worst])
    print("    " + plans[worst].split("Query Text:")[1].split("\n", 1)[1]
          .strip().replace("\n", "\n    "))
    fig["search_ms"] = statistics.median(walls)
    fig["search_p95"] = p95(walls)
    fig["search_sql_ms"] = statistics.median(sqls)
    fig["search_sql_p95"] = p95(sqls)
    psql(env, "DROP DATABASE %s" % db)
def identity(tmp, env, ncontacts, fig):
    """The identity resolution (SPEC §6) over ncontacts contacts generated
    in SQL across three sources (30% share a number with another source's
    contact; a seventh written nationally, "600 000 123", which the calling
    code 48 makes E.164; a tenth of the others without a number): a full
    resolution (the first), an idle one, then one after 1,000 contacts
    changed their numbers.  Times are the resolution's own (its -v line)."""
    import re
    env = dict(env)
    psql(env, "CREATE DATABASE bench_identity")
    env["PGDATABASE"] = "bench_identity"
    portfile = os.path.join(tmp, "port-identity")
    fake = subprocess.Popen([sys.executable, FAKE, "--port-file", portfile, "--messages",
                             "0", "--conversations", "0", "--contacts", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = wait_port(portfile, fake)
        conf = os.path.join(tmp, "identity.conf")
        with open(conf, "w") as f:
            f.write('database = { conninfo = "dbname=bench_identity"; };\n'
                    'identity = { default_calling_code = 48; };\n'
                    'sources = ( { name = "a"; type = "seqapi";'
                    ' url = "http://127.0.0.1:%d"; integration_id = "int-1";'
                    ' token_env = "BENCH_TOKEN"; } );\n' % port)
        cmd = [os.path.join(TOP, "incr-sync"), "-v", "-c", conf]

        def resolve():
            rc, err, _, rss, _ = run_measured(cmd, env)
            err = err.decode("utf-8", "replace")
            m = re.search(r"identity: (\d+) contact\(s\) decided, (\d+) in the closure;"
                          r".*; ([0-9.]+) s", err)
            if rc != 0 or not m:
                sys.exit("bench: identity: incr-sync exited %d: %s" % (rc, err[-500:]))
            return (int(m.group(1)), int(m.group(2)), float(m.group(3)),
                    "%s; peak RSS %.0f MB" % (m.group(0), rss))
        resolve()                       # the schema, and an empty resolution
        n = ncontacts
        t0 = time.monotonic()
        psql(env, "INSERT INTO source (name, type) VALUES ('b', 'smseagle'), ('c', 'unipile');"
             " INSERT INTO contact (source_id, external_id, display_name, phone)"
             " SELECT s.id, 'c' || i, 'Customer ' || i, CASE"
             "  WHEN i > %d AND i %% 10 = 0 THEN NULL"
             "  WHEN i %% 7 = 0 THEN '600 ' || lpad(q::text, 6, '0')"
             "  ELSE '+48600' || lpad(q::text, 6, '0') END"
             " FROM generate_series(1, %d) i"
             " CROSS JOIN LATERAL (SELECT CASE WHEN i <= %d THEN (i + 1) / 2"
             "  ELSE i END AS q) n"
             " JOIN source s ON s.name = (ARRAY['a', 'b', 'c'])[1 + i %% 3]; ANALYZE contact"
             % (n * 3 // 10, n, n * 3 // 10))
        print("identity: %d contacts generated in %.1f s" % (n, time.monotonic() - t0))
        d1, c1, full, line = resolve()
        print("identity: full resolution: %.2f s (%s)" % (full, line))
        d0, c0, idle, line = resolve()
        print("identity: idle resolution: %.3f s (%s)" % (idle, line))
        psql(env, "UPDATE contact SET phone = '+48700' || lpad((id % 500)::text, 6, '0')"
             " WHERE id IN (SELECT id FROM contact ORDER BY id % 997, id LIMIT 1000)")
        d2, c2, incr, line = resolve()
        print("identity: after 1,000 contacts changed: %.3f s (%s)" % (incr, line))
        print("identity: incremental / full: %.4f; per contact decided: full %.1f us,"
              " incremental %.1f us (its closure %d)"
              % (incr / full, full * 1e6 / max(d1, 1), incr * 1e6 / max(d2, 1), c2))
        # Every contact decided again, nothing to write (a new calling code
        # under which every stored number reads the same).
        with open(conf) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(text.replace("default_calling_code = 48", "default_calling_code = 49"))
        d3, c3, again, line = resolve()
        print("identity: full resolution again, nothing to write: %.2f s (%s)"
              % (again, line))
        fig["identity_again"] = again
        fig["identity_full"] = full
        fig["identity_incr_ratio"] = incr / full
        fig["identity_incr_share"] = d2 / max(d1, 1)
    finally:
        fake.terminate()
        fake.wait()
def changes(tmp, env, n, fig):
    """sync-changes --since 0 --limit n of n message changes (plus 1,000
    contacts and conversations): its wall time, and its peak RSS against
    that of --limit 1000 (flat memory: issue 14).  Reuses the messages the
    load part stored, else writes n with SQL."""
    cenv, conf = dict(env), os.path.join(tmp, "changes.conf")
    have = 0
    if psql(env, "SELECT to_regclass('message') IS NOT NULL") == "t":
        have = int(psql(env, "SELECT count(*) FROM message"))
    db = "bench" if have >= n else "changes"
    fake = None
    try:
        if db == "changes":
            sf = os.path.join(tmp, "changes.port")
            fake = subprocess.Popen([sys.executable, FAKE, "--port-file", sf, "--messages",
                                     "1", "--conversations", "1", "--contacts", "1"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            port = wait_port(sf, fake)
        else:
            port = 1
        with open(conf, "w") as f:
            f.write('database = { conninfo = "dbname=%s"; };\n'
                    'sources = ( { name = "bench"; type = "seqapi";'
                    ' url = "http://127.0.0.1:%d"; integration_id = "int-1";'
                    ' token_env = "BENCH_TOKEN"; } );\n' % (db, port))
        cenv["PGDATABASE"] = db
        if db == "changes":
            sh(["createdb", "changes"], env=env)
            run_timed([os.path.join(TOP, "full-sync"), "-q", "-c", conf], cenv)
            psql(cenv, "INSERT INTO contact (source_id, external_id, display_name, phone,"
                 " raw) SELECT 1, 'bc' || g, 'Contact ' || g, '+4930' || (1000000 + g),"
                 " jsonb_build_object('id', g) FROM generate_series(1, 1000) g;"
                 " INSERT INTO conversation (source_id, external_id, title, kind, raw)"
                 " SELECT 1, 'bv' || g, 'Conversation ' || g, 'direct',"
                 " jsonb_build_object('id', g) FROM generate_series(1, 1000) g;")
            psql(cenv, "INSERT INTO message (source_id, external_id, conversation_id,"
                 " sender_contact_id, direction, kind, body, sent_at, status, raw)"
                 " SELECT 1, 'bm' || g, 1 + g %% 1000, 1 + g %% 1000,"
                 " CASE WHEN g %% 3 = 0 THEN 'out' ELSE 'in' END, 'text',"
                 " 'message number ' || g || ' about the delivery of order ' || (g * 7),"
                 " now() - g * interval '1 minute', 'delivered',"
                 " jsonb_build_object('id', g, 'text', 'message number ' || g)"
                 " FROM generate_series(1, %d) g" % n)
        psql(cenv, "VACUUM ANALYZE")
        total = int(psql(cenv, "SELECT (SELECT count(*) FROM message) + (SELECT count(*)"
                         " FROM contact) + (SELECT count(*) FROM conversation)"))
        prog = os.path.join(TOP, "sync-changes")
        wall, rss, cpu = run_timed([prog, "-c", conf, "--since", "0", "--limit", str(n)],
                                   cenv)
        _, rss_small, _ = run_timed([prog, "-c", conf, "--since", "0", "--limit", "1000"],
                                    cenv)
        print("sync-changes --since 0 --limit %d (of %d changes stored): %.1f s wall,"
              " %.0f changes/s, CPU %.1f s, peak RSS %.1f MB (--limit 1000: %.1f MB)"
              % (n, total, wall, n / wall, cpu, rss, rss_small))
        fig["changes_s"] = wall
        fig["changes_n"] = n
        fig["changes_rss"] = rss
        fig["changes_rss_small"] = rss_small
    finally:
        if fake is not None:
            fake.terminate()
            fake.wait()


def report(fig):
    """The speed figures of issues 11 and 12, each against its target."""
    def line(name, value, target, ok):
        print("  %-58s %-24s %s" % (name, value, ("ok" if ok else "MISSED") +
                                    " (target %s)" % target))
    print("targets:")
    if "load_ratio" in fig:
        r = fig["load_ratio"]
        line("(a) first load / COPY floor of the stored rows", "%.0f%%" % (100 * r),
             ">= 85%", r >= 0.85)
        r = fig["load_ratio9"]
        line("    first load / COPY floor of the fake's 9 fields", "%.0f%%" % (100 * r),
             ">= 85%", r >= 0.85)
    if "resync_ratio" in fig:
        r, w = fig["resync_ratio"], fig["resync_wal_per_m"]
        line("(b) unchanged resync rate / first-load rate", "%.2fx" % r, ">= 2.5x",
             r >= 2.5)
        line("    resync WAL per million rows", "%.2f MB" % w, "< 1 MB", w < 1.0)
    if "prune_ratio" in fig:
        r = fig["prune_ratio"]
        line("(d) full-sync --prune / plain full-sync, 1% deleted", "%.2fx" % r,
             "<= 1.3x", r <= 1.3)
        r = fig["prune_rss"]
        line("    its peak RSS - the plain full-sync's", "%+.1f MB" % r,
             "<= 2 MB (flat: a bounded buffer)", r <= 2.0)
    if "media_ratio" in fig:
        r = fig["media_ratio"]
        line("(e) media-sync of 1 MB files / curl alone", "%.0f%%" % (100 * r), ">= 80%",
             r >= 0.8)
        line("    its peak RSS", "%.1f MB" % fig["media_rss"], "<= 64 MB",
             fig["media_rss"] <= 64)
        line("    peak RSS of a %d MB file" % fig["media_big_mb"],
             "%.1f MB" % fig["media_big_rss"], "<= 64 MB", fig["media_big_rss"] <= 64)
    if "search_ms" in fig:
        line("(f) sync-search, two words, 1,000,000 messages: median",
             "%.1f ms" % fig["search_ms"], "<= 20 ms", fig["search_ms"] <= 20)
        print("  %-58s %.1f ms" % ("    its p95", fig["search_p95"]))
        print("  %-58s %.1f ms (p95 %.1f ms)" % ("    its SQL alone: median",
                                                fig["search_sql_ms"], fig["search_sql_p95"]))
    if "identity_full" in fig:
        line("(g) identity: first resolution (every contact written)",
             "%.1f s" % fig["identity_full"],
             "<= 30 s", fig["identity_full"] <= 30)
        line("    every contact decided again, nothing to write",
             "%.1f s" % fig["identity_again"], "<= 30 s", fig["identity_again"] <= 30)
        r, w = fig["identity_incr_ratio"], fig["identity_incr_share"]
        line("    incremental (0.1% changed) / first", "%.4f" % r,
             "proportional (~%.4f)" % w, r <= max(20 * w, 0.05))
    if "changes_s" in fig:
        w = fig["changes_s"]
        line("(h) sync-changes of %d changes" % fig["changes_n"], "%.1f s" % w,
             "<= 10 s", w <= 10)
        d = fig["changes_rss"] - fig["changes_rss_small"]
        line("    its peak RSS - that of --limit 1000", "%+.1f MB" % d,
             "<= 2 MB (flat: streamed)", d <= 2.0)
    if "noop_ms" in fig:
        line("(c) no-op incr-sync time per source", "%.2f ms" % fig["noop_ms"],
             "<= 3 ms", fig["noop_ms"] <= 3.0)
        line("    its peak RSS", "%.1f MB" % fig["noop_rss"], "<= 64 MB",
             fig["noop_rss"] <= 64.0)
        line("    its requests per stream", "%.2f" % fig["noop_req_stream"], "<= 1",
             fig["noop_req_stream"] <= 1.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1000000)
    ap.add_argument("--sources", type=int, default=1000,
                    help="sources of the no-op incr-sync")
    ap.add_argument("--jobs", type=int, default=8, help="its sync.jobs")
    ap.add_argument("--files", type=int, default=2000,
                    help="files of 1 MB media-sync fetches")
    ap.add_argument("--big-mb", type=int, default=1024, help="the big file's size")
    ap.add_argument("--search-messages", type=int, default=1000000,
                    help="messages of the search part")
    ap.add_argument("--contacts", type=int, default=1000000,
                    help="contacts of the identity resolution")
    ap.add_argument("--only", choices=("load", "sources", "import", "media", "search",
                                       "identity", "changes"),
                    action="append",
                    help="run only these parts (repeatable; default all)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    a = ap.parse_args()
    parts = a.only or ["load", "sources", "import", "media", "search", "identity",
                       "changes"]
    fig = {}
    n = a.messages
    tmp = tempfile.mkdtemp(prefix="msgsync-bench-")
    os.chmod(tmp, 0o755)  # the server may run as another user (root: postgres)
    pgdir = os.path.join(tmp, "pg")
    env = dict(os.environ)
    fake = None
    try:
        out = sh(["bash", PGLOCAL, "start", pgdir], stdout=subprocess.PIPE,
                 text=True).stdout
        for line in out.splitlines():
            if line.startswith("export "):
                k, v = line[len("export "):].split("=", 1)
                env[k] = v.strip("'\"")
        sh(["createdb", "bench"], env=env)
        env["PGDATABASE"] = "bench"
        env["BENCH_TOKEN"] = "test-token"

        if "load" in parts:
            print("bench: %d messages, 1000 conversations, 1000 contacts" % n)
            # 1. The fake alone, so that it is known not to be the bottleneck.
            r = sh([sys.executable, FAKE, "--bench", "--messages", str(n)],
                   stdout=subprocess.PIPE, text=True).stdout.strip()
            print("fake upstream alone: %s" % r.splitlines()[-1] if r else "?")

            portfile = os.path.join(tmp, "port")
            fake = subprocess.Popen([sys.executable, FAKE, "--port-file", portfile,
                                     "--messages", str(n), "--conversations", "1000",
                                     "--contacts", "1000", "--prerender"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            port = wait_port(portfile, fake)
            print("fake upstream serves pages it rendered before the runs (--prerender):"
                  " its CPU is the harness's, not msgsync's")
            conf = os.path.join(tmp, "bench.conf")
            with open(conf, "w") as f:
                f.write('database = { conninfo = "dbname=bench"; };\n'
                        'sources = ( { name = "bench"; type = "seqapi";'
                        ' url = "http://127.0.0.1:%d"; integration_id = "int-1";'
                        ' token_env = "BENCH_TOKEN"; } );\n' % port)

            # 2. The first load.
            wal0 = psql(env, "SELECT pg_current_wal_lsn()")
            fc0 = proc_cpu(fake.pid)
            wall, rss, cpu = run_timed([os.path.join(TOP, "full-sync"), "-q", "-c", conf],
                                       env)
            fcpu = proc_cpu(fake.pid) - fc0
            wal1 = psql(env, "SELECT pg_current_wal_lsn()")
            got = int(psql(env, "SELECT count(*) FROM message"))
            if got != n:
                sys.exit("bench: expected %d messages, found %d" % (n, got))
            load_wal = int(psql(env, "SELECT pg_wal_lsn_diff('%s', '%s')" % (wal1, wal0)))
            rate = n / wall
            print("full-sync first load: %.1f s wall, %.0f messages/s, peak RSS %.1f MB,"
                  " WAL %.0f MB, msgsync CPU %.1f s, fake upstream CPU %.1f s"
                  % (wall, rate, rss, load_wal / 1e6, cpu, fcpu))

            # 3. The physical floor: COPY of the rows into an identical table.
            dump = os.path.join(tmp, "messages.copy")
            with open(dump, "w") as f:
                sh([sys.executable, FAKE, "--dump-copy", "messages", "--messages", str(n),
                    "--conversations", "1000", "--contacts", "1000"], stdout=f)
            rows = os.path.join(tmp, "floor.copy")
            with open(dump, encoding="utf-8") as src, open(rows, "w", encoding="utf-8") as dst:
                for line in src:
                    f = line.rstrip("\n").split("\t")
                    # source_id, external_id, direction, kind, body, sent_at,
                    # edited_at, status, raw
                    dst.write("\t".join(["1", f[0], f[3], f[4], f[5], f[6], f[7], f[8],
                                         f[9]]) + "\n")
            def floor(path, cols):
                psql(env, "CREATE TABLE message_floor (LIKE message INCLUDING ALL)")
                t0 = time.monotonic()
                sh(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                    "\\copy message_floor (%s) FROM '%s'" % (cols, path)], env=env)
                w = time.monotonic() - t0
                psql(env, "DROP TABLE message_floor")
                return w

            # 3a. The fake's fields alone (the floor before issue 11): no
            # conversation or sender ids, attachments nor row hash.
            copy_wall = floor(rows, "source_id, external_id, direction, kind, body,"
                              " sent_at, edited_at, status, raw")
            copy_rate = n / copy_wall
            print("COPY floor, the fake's 9 fields: %.1f s wall, %.0f rows/s; full-sync"
                  " reaches %.0f%% of it" % (copy_wall, copy_rate, 100.0 * rate / copy_rate))
            fig["load_ratio9"] = rate / copy_rate
            # 3b. The rows exactly as full-sync stored them, every column it
            # writes: the physical floor of the same rows.
            cols = ("source_id, external_id, conversation_id, sender_contact_id,"
                    " direction, kind, body, sent_at, edited_at, status, status_at,"
                    " validity_expires_at, folder, attachments, raw, deleted_at,"
                    " row_hash, provider_id, deleted_reason, stream")
            stored = os.path.join(tmp, "stored.copy")
            sh(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                "\\copy (SELECT %s FROM message ORDER BY id) TO '%s'" % (cols, stored)],
               env=env)
            copy_wall = floor(stored, cols)
            copy_rate = n / copy_wall
            print("COPY floor, the stored rows (all %d columns full-sync writes): %.1f s"
                  " wall, %.0f rows/s; full-sync reaches %.0f%% of it"
                  % (len(cols.split(",")), copy_wall, copy_rate, 100.0 * rate / copy_rate))
            fig["load_ratio"] = rate / copy_rate
            os.unlink(stored)
            psql(env, "CHECKPOINT")

            # 4. Rerun over unchanged data: nothing should be written.
            seq0 = psql(env, "SELECT max(seq) FROM message")
            wal0 = psql(env, "SELECT pg_current_wal_lsn()")
            fc0 = proc_cpu(fake.pid)
            wall2, rss2, cpu2 = run_timed([os.path.join(TOP, "full-sync"), "-q", "-c", conf],
                                          env)
            fcpu2 = proc_cpu(fake.pid) - fc0
            wal1 = psql(env, "SELECT pg_current_wal_lsn()")
            seq1 = psql(env, "SELECT max(seq) FROM message")
            wal = int(psql(env, "SELECT pg_wal_lsn_diff('%s', '%s')" % (wal1, wal0)))
            print("full-sync rerun, unchanged: %.1f s wall, %.0f messages/s, WAL %.2f MB"
                  " (%.1f%% of the first load's), max(seq) %s -> %s, msgsync CPU %.1f s,"
                  " fake upstream CPU %.1f s"
                  % (wall2, n / wall2, wal / 1e6, 100.0 * wal / max(load_wal, 1), seq0,
                     seq1, cpu2, fcpu2))
            fig["resync_ratio"] = (n / wall2) / rate
            fig["resync_wal_per_m"] = wal / 1e6 * 1e6 / n
            print("peak RSS over both runs: %.1f MB" % max(rss, rss2))

            # 5. Deletions: 1% of the messages vanish upstream; a plain
            # full-sync of the same data, then full-sync --prune (SPEC §8),
            # both over pages rendered anew (issue 12: at most 1.3 times).
            gone = n // 100
            http_get(port, "/_control/edit", {"stream": "messages", "n": gone,
                                              "kind": "purge"})
            http_get(port, "/_control/prerender", {})
            wall3, rss3, _ = run_timed([os.path.join(TOP, "full-sync"), "-q", "-c", conf],
                                       env)
            wall4, rss4, _ = run_timed([os.path.join(TOP, "full-sync"), "-q", "--prune",
                                        "-c", conf], env)
            missing = int(psql(env, "SELECT count(*) FROM message"
                               " WHERE missing_since IS NOT NULL"))
            if missing != gone:
                sys.exit("bench: expected %d messages missing, found %d" % (gone, missing))
            print("full-sync after %d deletions: %.1f s wall, peak RSS %.1f MB; with --prune:"
                  " %.1f s wall, peak RSS %.1f MB, %d found missing"
                  % (gone, wall3, rss3, wall4, rss4, missing))
            fig["prune_ratio"] = wall4 / wall3
            fig["prune_rss"] = rss4 - rss3

        if "import" in parts:
            # 5. A Telegram Desktop export of n messages, piped in as generated.
            from tgexport_gen import big_export
            hf = os.path.join(tmp, "api_hash")
            with open(hf, "w") as f:
                f.write("0123456789abcdef\n")
            os.chmod(hf, 0o600)
            tconf = os.path.join(tmp, "tg.conf")
            with open(tconf, "w") as f:
                f.write('database = { conninfo = "dbname=bench"; };\n'
                        'sources = ( { name = "tg"; type = "telegram";'
                        ' tdlib_dir = "%s"; api_id = 1; api_hash_file = "%s"; } );\n'
                        % (os.path.join(tmp, "td"), hf))
            size = []
            wall, rss, cpu = run_timed(
                [os.path.join(TOP, "full-sync"), "-q", "-c", tconf, "-s", "tg", "--import",
                 "-"], env, feed=lambda w: size.append(big_export(w, 10, n // 10)))
            got = int(psql(env, "SELECT count(*) FROM message m JOIN source s ON"
                           " s.id = m.source_id WHERE s.name = 'tg'"))
            if got != n // 10 * 10:
                sys.exit("bench: import: expected %d messages, found %d" % (n // 10 * 10, got))
            print("full-sync --import of a %.0f MB Telegram Desktop export: %.1f s wall,"
                  " %.0f messages/s (%.1f MB/s), peak RSS %.1f MB, msgsync CPU %.1f s"
                  % (size[0] / 1e6, wall, got / wall, size[0] / 1e6 / wall, rss, cpu))

        if "sources" in parts:
            many_sources(tmp, env, a.sources, a.jobs, fig)
        if "media" in parts:
            media(tmp, env, a.files, fig, a.big_mb)
        if "search" in parts:
            search_bench(tmp, env, pgdir, a.search_messages, fig)
        if "identity" in parts:
            identity(tmp, env, a.contacts, fig)
        if "changes" in parts:
            changes(tmp, env, n, fig)
    finally:
        if fake is not None:
            fake.terminate()
            fake.wait()
        subprocess.run(["bash", PGLOCAL, "stop", pgdir], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    report(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
