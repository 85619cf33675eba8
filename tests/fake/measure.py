"""Peak RSS and CPU time of one program run, for the e2e tests and make
bench.

Linux keeps a process's peak RSS across exec, so a child forked from a big
interpreter (the test harness, the bench) would report at least the
interpreter's size.  A fresh, small interpreter forks and execs the
program instead, and hands the figures back."""

import os
import subprocess
import sys
import tempfile
import time

SPAWN = ("import os, sys\npid = os.fork()\nif pid == 0:\n"
         "    os.execv(sys.argv[2], sys.argv[2:])\n"
         "_, st, ru = os.wait4(pid, 0)\n"
         "open(sys.argv[1], 'w').write('%d %f' % (ru.ru_maxrss, ru.ru_utime + ru.ru_stime))\n"
         "sys.exit(os.waitstatus_to_exitcode(st))\n")


def run_measured(argv, env=None, feed=None):
    """Runs argv (feed(stdin) writes its input, if given); returns (exit
    status, stderr bytes, wall seconds, peak RSS in MB, CPU seconds)."""
    fd, fig = tempfile.mkstemp(prefix="msgsync-rss-")
    os.close(fd)
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-c", SPAWN, fig] + list(argv), env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         stdin=subprocess.PIPE if feed else subprocess.DEVNULL)
    try:
        if feed:
            try:
                feed(p.stdin)
            finally:
                p.stdin.close()
        err = p.stderr.read()
        p.wait()
        wall = time.monotonic() - t0
        with open(fig) as f:
            text = f.read().split()
    finally:
        os.unlink(fig)
    rss, cpu = (int(text[0]) / 1024.0, float(text[1])) if len(text) == 2 else (0.0, 0.0)
    return p.returncode, err, wall, rss, cpu
