"""Run the unit suite and the lab suites (integration, security) side by side: `make test`.

    run_suites.py PYTHON [PYTEST ARGS...]

The unit suite works on the machine itself (its own state folders, netns folder and cgroup
parent, see tests/unit/conftest.py); the integration and security suites work in the lab hosts.
They share nothing, and the lab suites spend most of their time waiting on ssh and on Ansible's
controller, so running the two at once takes about the time of the longer one instead of the sum.

The lab suites' output streams to the terminal as it comes; the unit suite's output is kept in a
file and printed whole when it ends, so the two never interleave.  The exit status is 0 only when
both pytest runs exit 0: any other status, 5 (no test collected) included, fails the run.
SIGTERM or SIGINT stops both runs (each takes its labs and guests down as on any SIGTERM).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time

SUITES = (("unit", ["tests/unit"]), ("integration and security", ["tests/integration", "tests/security"]))


def main(argv: list) -> int:
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    python, args = argv[1], argv[2:]
    procs = []
    started = time.monotonic()

    def stop(signum, frame):
        for _name, proc, _out, _t in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc, _out, _t in procs:
            proc.wait()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with tempfile.TemporaryFile(mode="w+", prefix="linuxns-unit-") as unit_out:
        for name, paths in SUITES:
            out = unit_out if name == "unit" else None
            proc = subprocess.Popen([python, "-m", "pytest", *paths, *args], stdout=out,
                                    stderr=subprocess.STDOUT if out else None, stdin=subprocess.DEVNULL)
            procs.append((name, proc, out, time.monotonic()))
        ended = {}
        for name, proc, _out, t in reversed(procs):  # the lab suites first: their output is live
            rc = proc.wait()
            ended[name] = (rc, time.monotonic() - t)
        unit_out.seek(0)
        print("\n" + "=" * 30 + " unit suite (ran at the same time) " + "=" * 30, flush=True)
        sys.stdout.write(unit_out.read())
    print("\n" + "=" * 30 + " suites " + "=" * 30)
    for name, _paths in SUITES:
        rc, took = ended[name]
        print("%-26s pytest exit %d in %.0f s%s" % (name, rc, took, "" if rc == 0 else "  FAILED"))
    print("%-26s %.0f s" % ("both, wall time", time.monotonic() - started), flush=True)
    return 0 if all(rc == 0 for rc, _took in ended.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
