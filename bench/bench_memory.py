"""Bench: the memory an idle guest costs, at N (default 100) idle guests on lab host 1.

Per round: a control interval with nothing done (the machine's noise), then /proc/meminfo
before, one namespace_create task making N guests (default namespaces mnt,uts,ipc,net,pid,
init = the default reaper), a settle pause, /proc/meminfo after and the PSS of every
guest's init (sum of Pss in /proc/PID/smaps_rollup over the guests' init pids, read on the
lab host), then the guests are removed. Figures per guest, in KiB:

  init PSS        the guest's only process when idle (its reaper)
  kernel objects  delta of Slab + KernelStack + PageTables + Percpu (namespaces, pins,
                  mounts, the reaper's task and stack, ...)
  state files     delta of Shmem (meta.json and pin files in the tmpfs state folder)
  MemAvailable    the drop of MemAvailable, for reference (noisiest: page cache moves)

/proc/meminfo is machine-wide and these machines are shared: the control interval shows
the noise, and the medians over rounds are reported. Goal: init PSS + kernel objects
<= 1 MiB per guest.

    LINUXNS_LAB=b LINUXNS_LAB_BASE=60 .venv/bin/python bench/bench_memory.py [--guests 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from _common import Bench, kernel, median, meminfo, table

PSS = r"""
import glob, json
tot = {"guests": 0, "Pss": 0, "Rss": 0, "Pss_Anon": 0, "Pss_File": 0}
for path in glob.glob("/run/linuxns/guests/*/meta.json"):
    with open(path) as f:
        pid = json.load(f).get("init_pid")
    tot["guests"] += 1
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in tot:
                tot[key] += int(rest.split()[0])
print(json.dumps(tot))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--guests", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds to wait before each meminfo reading")
    ap.add_argument("--keep-lab", action="store_true")
    args = ap.parse_args(argv)
    n = args.guests
    names = [{"name": "m%04d" % i} for i in range(1, n + 1)]
    rows, per = [], {"pss": [], "kernel": [], "shmem": [], "avail": [], "noise_kernel": [], "noise_avail": []}
    with Bench(keep_lab=args.keep_lab) as bench:
        try:
            for r in range(args.rounds):
                time.sleep(args.settle)
                c0 = meminfo()
                time.sleep(args.settle)
                c1 = meminfo()
                b = meminfo()
                rec = bench.task("linuxns.guests.namespace_create", {"guests": names})
                if not rec["changed"] or rec["count"] != n:
                    raise SystemExit("creating %d guests did not report %d changed results: %s" % (n, n, rec))
                time.sleep(args.settle)
                a = meminfo()
                pss = json.loads(bench.exec(["python3", "-c", PSS]).stdout)
                if pss["guests"] != n:
                    raise SystemExit("found %d guests on the lab host, expected %d" % (pss["guests"], n))
                bench.task("linuxns.guests.namespace_create", {"guests": names, "state": "absent"})
                row = {
                    "pss": pss["Pss"] / n,
                    "kernel": (kernel(a) - kernel(b)) / n,
                    "shmem": (a["Shmem"] - b["Shmem"]) / n,
                    "avail": (b["MemAvailable"] - a["MemAvailable"]) / n,
                    "noise_kernel": (kernel(c1) - kernel(c0)) / n,
                    "noise_avail": (c0["MemAvailable"] - c1["MemAvailable"]) / n,
                }
                for k, v in row.items():
                    per[k].append(v)
                detail = {k: (a[k] - b[k]) / n for k in ("SUnreclaim", "SReclaimable", "KernelStack", "PageTables", "Percpu")}
                rows.append((r + 1, "%.0f" % row["pss"], "%.0f" % row["kernel"], "%.0f" % row["shmem"], "%.0f" % (row["pss"] + row["kernel"]),
                             "%.0f" % row["avail"], "%.0f" % row["noise_kernel"], "%.0f" % row["noise_avail"],
                             " ".join("%s=%.0f" % kv for kv in detail.items()), "rss=%.0f" % (pss["Rss"] / n)))
                print("round %d done" % (r + 1), file=sys.stderr, flush=True)
        finally:
            bench.task("linuxns.guests.namespace_create", {"guests": names, "state": "absent"})

    def med(key):
        return median(per[key])

    rows.append(("median", "%.0f" % med("pss"), "%.0f" % med("kernel"), "%.0f" % med("shmem"),
                 "%.0f" % (med("pss") + med("kernel")), "%.0f" % med("avail"), "%.0f" % med("noise_kernel"), "%.0f" % med("noise_avail"), "", ""))
    print("KiB per idle guest at %d guests (namespaces mnt,uts,ipc,net,pid; default reaper) on lab host %s" % (n, bench.host.name))
    print(table(rows, ("round", "init PSS", "kernel objs", "state files", "PSS+kernel", "MemAvailable drop",
                       "noise kernel", "noise MemAvail", "kernel detail", "init RSS")))
    total = med("pss") + med("kernel")
    print("per guest: %.0f KiB (init PSS %.0f + kernel objects %.0f); goal <= 1024 KiB: %s"
          % (total, med("pss"), med("kernel"), "met" if total <= 1024 else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
