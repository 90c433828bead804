"""Wall time of ``linuxns-guest list``: compiled on every run against the compiled-code cache.

Builds the operator's command twice from this checkout (plugins/plugin_utils/operator_program.py):
without ``cache_dir`` (it compiles its embedded module_utils on every run, as before the cache)
and with one (root-owned, in a scratch folder); warms the cache with one run, then runs ``list``
against an empty scratch state folder ROUNDS times, the two programs interleaved so that both
see the same load. Prints the medians, their ratio and the load average before and after (the
machine is shared: compare the ratio, not the seconds). No lab host is needed; everything it
makes is in one scratch folder, removed at the end.

    .venv/bin/python bench/bench_operator.py [--rounds 15] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "build"))

from ansible_collections.linuxns.guests.plugins.plugin_utils import operator_program  # noqa: E402


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run(program: str, state: str) -> tuple:
    """(wall seconds, CPU seconds - user + system - of the run)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run([program, "--state-dir", state, "list"], check=True, capture_output=True)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--python", default=operator_program.DEFAULT_PYTHON)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="linuxns-bench-operator-")
    try:
        os.chmod(tmp, 0o755)
        state = os.path.join(tmp, "state")
        os.mkdir(state, 0o700)
        programs = {}
        for label, cache in (("compiled every run", None), ("cached code", os.path.join(tmp, "cache"))):
            path = os.path.join(tmp, "linuxns-guest-" + ("cached" if cache else "plain"))
            with open(path, "w") as f:
                f.write(operator_program.program_text(args.python, cache_dir=cache))
            os.chmod(path, 0o755)
            programs[label] = path
        run(programs["cached code"], state)  # fills the cache
        before = load()
        times = {label: [] for label in programs}
        for _round in range(args.rounds):
            for label, path in programs.items():
                times[label].append(run(path, state))
        after = load()
        med = {label: statistics.median(w for w, _c in v) for label, v in times.items()}
        cpu = {label: statistics.median(c for _w, c in v) for label, v in times.items()}
        print("linuxns-guest list, %d rounds interleaved, load average %s (before) / %s (after)" % (args.rounds, before, after))
        for label, m in med.items():
            walls = [w for w, _c in times[label]]
            print("  %-20s wall median %.3f s (min %.3f, max %.3f); CPU median %.3f s"
                  % (label, m, min(walls), max(walls), cpu[label]))
        ratios = (med["cached code"] / med["compiled every run"], cpu["cached code"] / cpu["compiled every run"])
        print("  ratio cached/plain: wall %.2f, CPU %.2f" % ratios)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
