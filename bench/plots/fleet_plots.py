"""Curves of the fleet bench: seconds and ms per guest against guests per host, log-log.

Runs bench/bench_fleet.py once per size (create, no-change rerun and teardown of the fleet
play against the shell script, side by side, on lab hosts 1 and 2 of the lab selected by
LINUXNS_LAB / LINUXNS_LAB_BASE), keeps the medians in a JSON file, then draws two PNGs with
matplotlib - seconds per phase, and ms per guest per phase - ours against the shell:

    LINUXNS_LAB=fb LINUXNS_LAB_BASE=170 .venv/bin/python bench/plots/fleet_plots.py run \\
        --sizes 10,50,200,1000 --rounds 1 --json bench/plots/fleet.json
    .venv/bin/python bench/plots/fleet_plots.py plot --json bench/plots/fleet.json --out docs

``make bench-plots`` does both (docs/performance.md shows the PNGs). ``plot`` alone redraws
from a saved JSON file. Up to 1012 guests per host (the fleet's guest network of a host is a
/24 up to 244 guests, a /22 above; one bridge per host).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PHASES = ("create", "rerun", "teardown")
ROW = re.compile(r"^(\d+)x(\d+)\s+(create|rerun|teardown)\s+([\d.]+)\s+([\d.]+)\s")


def parse(text: str) -> list:
    """Rows of bench_fleet.py's table: [{hosts, size, phase, base, ours}] (seconds, medians)."""
    out = []
    for line in text.splitlines():
        m = ROW.match(line.strip())
        if m:
            out.append({"hosts": int(m.group(1)), "size": int(m.group(2)), "phase": m.group(3),
                        "base": float(m.group(4)), "ours": float(m.group(5))})
    return out


def machine() -> str:
    cpus = os.cpu_count()
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // (1024 * 1024)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return "%s, %s CPUs, %d GiB, kernel %s, load %.1f at the start" % (platform.node(), cpus, mem, platform.release(), load)


def run(args) -> int:
    sizes = [int(s) for s in args.sizes.split(",")]
    data = {"machine": machine(), "rounds": args.rounds, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commands": [], "rows": []}
    for n in sizes:
        argv = [sys.executable, str(REPO / "bench" / "bench_fleet.py"), "--sizes", str(n), "--rounds", str(args.rounds),
                "--settle", str(args.settle)]
        data["commands"].append(" ".join(["bench/bench_fleet.py"] + argv[2:]))
        print("running %s" % " ".join(argv[1:]), file=sys.stderr, flush=True)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        rows = parse(proc.stdout)
        if proc.returncode != 0 or not rows:
            print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit("bench_fleet.py --sizes %d failed (rc=%d)" % (n, proc.returncode))
        data["rows"].extend(rows)
        # the rest of bench_fleet.py's report (memory per guest, ours' slowest tasks), as it printed it
        data.setdefault("reports", {})[str(n)] = [line for line in proc.stdout.splitlines() if not ROW.match(line.strip())]
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n")  # what is done so far survives a later failure
    return plot(args)


def plot(args) -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(args.json).read_text())
    rows = data["rows"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for kind, ylabel in (("seconds", "seconds (whole phase, hosts in parallel)"), ("ms-per-guest", "ms per guest")):
        fig, axes = plt.subplots(1, len(PHASES), figsize=(13, 4.2), sharex=True)
        for ax, phase in zip(axes, PHASES):
            pts = sorted((r for r in rows if r["phase"] == phase), key=lambda r: r["size"])
            xs = [r["size"] for r in pts]
            for side, label, style in (("ours", "linuxns.guests (fleet play)", "o-"), ("base", "shell script", "s--")):
                ys = [r[side] if kind == "seconds" else 1000 * r[side] / (r["size"] * r["hosts"]) for r in pts]
                ax.plot(xs, ys, style, label=label)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(phase if phase != "rerun" else "no-change rerun")
            ax.set_xlabel("guests per host")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_ylabel(ylabel)
        axes[0].legend(fontsize=8)
        hosts = rows[0]["hosts"] if rows else 0
        fig.suptitle("fleet bench, %d hosts, median of %s round(s) - %s" % (hosts, data.get("rounds"), data.get("machine", "")), fontsize=9)
        fig.tight_layout()
        path = out / ("fleet-%s.png" % kind)
        fig.savefig(path, dpi=80)
        plt.close(fig)
        made.append(str(path))
    print("\n".join(made))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run bench_fleet.py per size, save the JSON, then plot")
    r.add_argument("--sizes", default="10,50,200,1000")
    r.add_argument("--rounds", type=int, default=1)
    r.add_argument("--settle", type=float, default=2.0)
    p = sub.add_parser("plot", help="plot a saved JSON")
    for q in (r, p):
        q.add_argument("--json", default=str(HERE / "fleet.json"))
        q.add_argument("--out", default=str(REPO / "docs"))
    args = ap.parse_args(argv)
    return run(args) if args.cmd == "run" else plot(args)


if __name__ == "__main__":
    sys.exit(main())
