"""Run one bench for two checkouts, alternating, and print each run's figures and new/base.

A bench's own ratios (ours / shell, ours / baseline...) are measured side by side in one
run; comparing two versions of the collection needs the same again one level up: the
machine is shared and noisy, so both checkouts run the same bench in turn (base, new,
base, new, ...), each on its own lab, and every figure the bench prints is compared
run by run.

    .venv/bin/python bench/side_by_side.py --base /work/wt-base --new . --repeat 3 \\
        create -- --sizes 100 --rounds 2

BENCH is ``create``, ``exec``, ``mount``, ``links``, ``connection`` (bench/bench_BENCH.py
of each checkout, run with that checkout's .venv and its own copy of the bench), or a
path relative to the checkouts; arguments after ``--`` go to the bench.  Each checkout
has its own lab (``--base-lab NAME:BASE``, ``--new-lab NAME:BASE``; defaults bbase:180
and bnew:200), brought up once with one host before the first run and taken down at the
end when this script brought it up (also after a failure or Ctrl-C).

Figures: every number of the bench's output (lines of its tables and its ``label  N s``
lines; ``raw:`` lines and numbers that are the same in every run, like sizes, are left
out), named by its row and column (or the text before it).  For each: the values of the
base runs, of the new runs, the ratio of the medians new/base and the spread of the ratios
of the pairs (run i of new / run i of base).  The raw outputs go to ``--out`` (default: a
folder under /tmp, printed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NUMBER = re.compile(r"^-?\d+(?:\.\d+)?x?$")
IN_TEXT = re.compile(r"(?<![\w.\-])(-?\d+(?:\.\d+)?)x?(?![\w.])")
SKIP = re.compile(r"^\s*raw:")


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def _num(cell: str) -> float:
    return float(cell.rstrip("x"))


def figures(text: str) -> dict:
    """label -> value for every number of a bench's output (see the module's docstring)."""
    out = {}
    lines = text.splitlines()
    header = None
    for i, line in enumerate(lines):
        if SKIP.match(line) or not line.strip():
            header = None if not line.strip() else header
            continue
        if set(line.strip()) <= {"-", " "}:
            continue  # a table's rule
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if nxt.strip() and set(nxt.strip()) <= {"-", " "}:
            header = re.split(r"\s{2,}", line.strip())  # a table's header (bench/_common.table)
            header = [h if h not in header[:j] else "%s %s" % (header[j - 1], h) for j, h in enumerate(header)]
            continue
        cells = re.split(r"\s{2,}", line.strip())
        if header and len(cells) == len(header):
            row = " ".join(c for c in cells if not NUMBER.match(c)) or cells[0]
            for col, cell in zip(header, cells):
                if NUMBER.match(cell):
                    _put(out, "%s | %s" % (row, col), _num(cell))
            continue
        header = None
        found = list(IN_TEXT.finditer(line))
        for j, m in enumerate(found):
            before = line[found[j - 1].end() if j else 0 : m.start()].strip(" :=,(")
            label = line[: found[0].start()].strip(" :=,(") if not j else "%s ... %s" % (line[: found[0].start()].strip(" :=,("), before)
            _put(out, label or line.strip()[:40], float(m.group(1)))
    return out


def _put(out: dict, label: str, value: float) -> None:
    key, k = label, 2
    while key in out:  # the same label twice in one output: number them
        key = "%s [%d]" % (label, k)
        k += 1
    out[key] = value


def compare(base_runs: list, new_runs: list) -> list:
    """Rows (label, base values, new values, ratio of medians, min and max pair ratio)."""
    rows = []
    runs = base_runs + new_runs
    if not base_runs or not new_runs:
        return rows
    for label in runs[0]:
        if not all(label in r for r in runs):
            continue
        values = [r[label] for r in runs]
        if len(set(values)) == 1:
            continue  # a size, a count: the same in every run
        b = [r[label] for r in base_runs]
        n = [r[label] for r in new_runs]
        mb, mn = statistics.median(b), statistics.median(n)
        pairs = [y / x for x, y in zip(b, n) if x]
        rows.append((label, b, n, (mn / mb) if mb else float("nan"),
                     min(pairs) if pairs else float("nan"), max(pairs) if pairs else float("nan")))
    return rows


class Side:
    def __init__(self, name: str, checkout: str, lab: str):
        self.name = name
        self.dir = Path(checkout).resolve()
        self.lab, self.lab_base = (lab.split(":", 1) + [""])[:2]
        if not self.lab or not self.lab_base.isdigit():
            raise SystemExit("--%s-lab %r: use NAME:BASE (e.g. bbase:180)" % (name, lab))
        self.python = self.dir / ".venv" / "bin" / "python"
        self.brought_up = False

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(LINUXNS_LAB=self.lab, LINUXNS_LAB_BASE=self.lab_base)
        return env

    def lab_cmd(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.python), str(self.dir / "tests" / "lab" / "lab.py"), *args],
                              env=self.env(), cwd=self.dir, capture_output=True, text=True, check=False)

    def up(self) -> None:
        status = self.lab_cmd("status")
        try:
            hosts = json.loads(status.stdout)["hosts"]
        except (ValueError, KeyError):
            hosts = []
        if any(h.get("n") == 1 and h.get("healthy") for h in hosts):
            return
        self.brought_up = True
        res = self.lab_cmd("up", "--hosts", "1")
        if res.returncode != 0:
            raise SystemExit("%s: lab %s up failed: %s" % (self.name, self.lab, res.stderr[-2000:]))

    def down(self) -> None:
        if self.brought_up:
            self.lab_cmd("down")


def bench_path(side: Side, bench: str) -> Path:
    if "/" in bench or bench.endswith(".py"):
        return side.dir / bench
    return side.dir / "bench" / ("bench_%s.py" % bench)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--base", required=True, help="the baseline checkout (with .venv and `make link` done)")
    ap.add_argument("--new", default=".", help="the checkout to compare (default: this one)")
    ap.add_argument("--base-lab", default="bbase:180", help="LINUXNS_LAB:LINUXNS_LAB_BASE of the base side")
    ap.add_argument("--new-lab", default="bnew:200", help="LINUXNS_LAB:LINUXNS_LAB_BASE of the new side")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side (alternating base, new)")
    ap.add_argument("--out", help="folder for the raw outputs (default: a new one under /tmp)")
    ap.add_argument("bench", help="create, exec, mount, links, connection, or a path in the checkouts")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="-- then the bench's own arguments")
    opts = ap.parse_args(argv)
    args = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    sides = [Side("base", opts.base, opts.base_lab), Side("new", opts.new, opts.new_lab)]
    if sides[0].lab == sides[1].lab:
        raise SystemExit("the two sides need labs of their own (--base-lab, --new-lab)")
    out = Path(opts.out) if opts.out else Path(tempfile.mkdtemp(prefix="linuxns-side-by-side-"))
    out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _terminated)
    runs = {"base": [], "new": []}
    failed = []
    try:
        for side in sides:
            side.up()
        for i in range(opts.repeat):
            for side in sides:
                cmd = [str(side.python), str(bench_path(side, opts.bench)), *args]
                t0 = time.monotonic()
                with open(out / ("%s-%d.err" % (side.name, i + 1)), "w") as err:
                    proc = subprocess.run(cmd, env=side.env(), cwd=side.dir, stdout=subprocess.PIPE,
                                          stderr=err, text=True, check=False)
                secs = time.monotonic() - t0
                (out / ("%s-%d.out" % (side.name, i + 1))).write_text(proc.stdout)
                print("=== %s run %d (%s, lab %s, %.0f s, rc %d, %s UTC)" % (
                    side.name, i + 1, side.dir, side.lab, secs, proc.returncode, time.strftime("%H:%M", time.gmtime())))
                print(proc.stdout.rstrip(), flush=True)
                if proc.returncode != 0:
                    failed.append("%s run %d (rc %d, see %s)" % (side.name, i + 1, proc.returncode, out))
                    continue
                runs[side.name].append(figures(proc.stdout))
    finally:
        for side in sides:
            side.down()
    rows = compare(runs["base"], runs["new"])
    print()
    print("%s: %d base runs, %d new runs (alternating); ratio = median new / median base; "
          "pairs = run i new / run i base, min..max" % (opts.bench, len(runs["base"]), len(runs["new"])))
    width = max([len(r[0]) for r in rows] + [6])
    print("%s  %-23s  %-23s  %6s  %s" % ("figure".ljust(width), "base", "new", "ratio", "pairs"))
    for label, b, n, ratio, lo, hi in rows:
        print("%s  %-23s  %-23s  %6.2f  %.2f..%.2f" % (
            label.ljust(width), " ".join("%g" % v for v in b), " ".join("%g" % v for v in n), ratio, lo, hi))
    print("raw outputs: %s" % out)
    for f in failed:
        print("FAILED: %s" % f)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
