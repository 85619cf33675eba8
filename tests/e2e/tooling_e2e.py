"""End-to-end tests of the scripts an operator runs beside the programs
(scripts/), through the harness in run.py."""

import os
import subprocess

import __main__ as e2e

test, check, eq = e2e.test, e2e.check, e2e.eq


@test
def install_deps_check_under_sh(ctx):
    """make runs `sh scripts/install-deps --check`: under sh (dash on Debian)
    it must answer as under bash, not fail on bash syntax and make every
    `make check` and `make demo` claim that dependencies are missing."""
    script = os.path.join(e2e.TOP, "scripts", "install-deps")
    got = {}
    for shell in ("sh", "bash"):
        r = subprocess.run([shell, script, "--check"], capture_output=True, text=True,
                           timeout=60)
        got[shell] = (r.returncode, r.stdout.splitlines()[-1:] if r.stdout else [])
        check("Illegal option" not in r.stderr and "syntax error" not in r.stderr,
              "%s: %s" % (shell, r.stderr.strip()))
    eq(got["sh"], got["bash"], "install-deps --check under sh and under bash")
