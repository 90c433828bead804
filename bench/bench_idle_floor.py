"""Bench: the kernel's own memory floor of a guest's parts (network namespace, veth, cgroups), without this collection.

Issue 18 asks for an idle cost of at most 300 KiB per guest; bench_scale.py measures ~740 KiB
for a default guest (mnt, uts, ipc, net and pid namespaces, a reaper, a veth and an address).
This bench measures what the kernel alone charges for two of its parts, made with iproute2 and
mkdir, no Python module and no pin of ours, N at a time:

  netns        `ip netns add` N times (one network namespace and its bind mount each)
  netns+veth   the same, plus a veth pair per namespace (one end inside, as eth0, with an
               address from 198.19.128.0/17, the other end outside) - a default guest's network
  cgroups      one empty cgroup per guest in every mounted cgroup hierarchy
               (v1 controllers and the unified one), as a guest gets: made below
               linuxns-bench-floor-PID inside this process's own cgroup of each hierarchy, and
               removed at the end (also on a failure)

The namespaces are made inside a throwaway mount and network namespace (`unshare --mount --net`) with
a private tmpfs on /run/netns: no name, mount or link ever shows on the host, and all of it
goes away with that namespace, also when the bench is killed. The figure is the drop of
/proc/meminfo's MemAvailable and the growth of the kernel's objects (Slab + KernelStack +
PageTables + Percpu) per namespace, after a settle pause. The machine is shared: run it quiet,
and read it next to bench_scale.py's "MemAvail drop" and "kernel objs" columns.

    .venv/bin/python bench/bench_idle_floor.py [--count 1000] [--settle 5] [--per-hierarchy]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from _common import kernel, meminfo, table
from lab import own_cgroup_dirs

# The script run inside the throwaway namespaces: make N, report, wait for "go" on stdin
# (the parent reads meminfo meanwhile), then exit - which frees everything.
INSIDE = r"""
set -eu
mount -t tmpfs -o size=1m,mode=0755 linuxns-bench /run/netns
i=0
while [ "$i" -lt "$N" ]; do
  ip netns add "f$i"
  if [ "$VETH" = 1 ]; then
    ip link add "vf$i" type veth peer name eth0 netns "f$i"
    ip -n "f$i" addr add "198.19.$((128 + i / 250)).$((i % 250 + 1))/17" dev eth0
    ip -n "f$i" link set eth0 up
    ip link set "vf$i" up
  fi
  i=$((i + 1))
done
echo made
read -r _go
"""


def one(count: int, veth: bool, settle: float) -> dict:
    time.sleep(settle)
    before = meminfo()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "N": str(count), "VETH": "1" if veth else "0"}
    proc = subprocess.Popen(["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", INSIDE],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    try:
        line = proc.stdout.readline().strip()
        if line != "made":
            raise SystemExit("the namespaces were not made (%r, rc %s)" % (line, proc.poll()))
        time.sleep(settle)
        after = meminfo()
    finally:
        if proc.poll() is None:
            proc.stdin.write("go\n")
            proc.stdin.close()
        proc.wait(timeout=600)
    return per_guest(before, after, count)


def per_guest(before: dict, after: dict, count: int) -> dict:
    """KiB per guest between two meminfo readings: the drop of MemAvailable, the growth of the kernel's objects."""
    return {
        "avail": (before["MemAvailable"] - after["MemAvailable"]) / count,
        "kernel": (kernel(after) - kernel(before)) / count,
    }


def cgroups(count: int, settle: float, only=None) -> dict:
    """``count`` empty cgroups in each hierarchy (``only``: those keys of own_cgroup_dirs),
    below linuxns-bench-floor-PID in this process's own cgroup; all removed before returning."""
    time.sleep(settle)
    before = meminfo()
    parents = own_cgroup_dirs("linuxns-bench-floor-%d" % os.getpid())
    parents = [d for key, d in sorted(parents.items()) if only is None or key in only]
    made = []
    try:
        for parent in parents:
            os.mkdir(parent)
            made.append(parent)
        for i in range(count):
            for parent in parents:
                path = os.path.join(parent, "g%d" % i)
                os.mkdir(path)
                made.append(path)
        time.sleep(settle)
        after = meminfo()
    finally:
        for path in reversed(made):
            os.rmdir(path)
    return dict(per_guest(before, after, count), hierarchies=len(parents))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds to wait before each meminfo reading")
    ap.add_argument("--per-hierarchy", action="store_true", help="also one row per cgroup hierarchy")
    args = ap.parse_args(argv)
    if not 1 <= args.count <= 8000:
        raise SystemExit("--count must be 1-8000 (the addresses come from one /17)")
    rows = []
    for label, veth in (("netns", False), ("netns+veth", True)):
        fig = one(args.count, veth, args.settle)
        rows.append([label, str(args.count), "%.0f" % fig["avail"], "%.0f" % fig["kernel"]])
        time.sleep(args.settle)  # the namespaces are freed by a kernel worker, after the exit
    fig = cgroups(args.count, args.settle)
    rows.append(["cgroups (%d hierarchies)" % fig["hierarchies"], str(args.count), "%.0f" % fig["avail"], "%.0f" % fig["kernel"]])
    if args.per_hierarchy:
        for key in sorted(own_cgroup_dirs()):
            fig = cgroups(args.count, args.settle, [key])
            rows.append(["  cgroup in " + key, str(args.count), "%.0f" % fig["avail"], "%.0f" % fig["kernel"]])
    print("KiB per guest's part, made with iproute2 or mkdir (no guest, no Python module of ours)")
    print(table(rows, ["kind", "N", "MemAvail drop", "kernel objs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
