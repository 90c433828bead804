"""Bench: creating N ``userns: auto`` guests against N guests without a user namespace (issue 16).

In this process (the helper's engine, guests.ensure_guests, as the module runs it, without
Ansible and ssh: the difference between the two sides is the engine's), for each size N and
each round, side by side, alternating which side goes first:

  plain    one ensure_guests call of N guests, namespaces mnt,uts,ipc,net,pid
  userns   the same N guests with ``userns: auto`` (a range each from a userns_pool)
  idmap    (--roots) N guests with a busybox root each and ``userns: auto``: idmapped roots
  shift    (--roots) the same with ``userns_root: shift`` (a fresh copy of the root each round)

Each side removes (and purges) its guests before the next.  Beside the wall time, the CPU time
of the creation (this process's and its reaped helpers', user + system): on a loaded machine
the wall time of a round varies with the load, the CPU time much less.  The process runs in a private
mount namespace; the state folder, netns folder, table folder and roots are in a temporary
folder; the guests' cgroups are made below this process's own cgroup and removed.
``--profile`` prints where the userns side's time goes (cProfile, by own time).

    .venv/bin/python bench/bench_userns.py [--sizes 200,1000] [--rounds 3] [--roots 50] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build"))

from ansible_collections.linuxns.guests.plugins.module_utils import guests
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import KernelError

POOL = "3300000000:900000000"
NS = ["mnt", "uts", "ipc", "net", "pid"]


def busybox_root(path: str) -> None:
    for d in ("bin", "etc", "tmp", "proc", "dev", "sys", "usr/bin", "var/log"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", os.path.join(path, "bin", "busybox"))
    for applet in ("sh", "ls", "cat", "id", "stat", "touch", "sleep"):
        os.symlink("busybox", os.path.join(path, "bin", applet))
    for i in range(40):  # a few small files, as a minimal root has
        with open(os.path.join(path, "etc", "f%02d" % i), "w") as f:
            f.write("x\n")


def cpu_seconds() -> float:
    """User + system time of this process and its reaped children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_side(base: str, kind: str, n: int, rnd: int, profile) -> tuple:
    state, table = os.path.join(base, "state-%s-%d" % (kind, rnd)), os.path.join(base, "table")
    r = reg.Registry(state, netns_dir=os.path.join(base, "netns"))
    names = ["%s%04d" % (kind[0], i) for i in range(n)]
    entries = []
    for name in names:
        e = {"name": name, "namespaces": list(NS)}
        if kind != "plain":
            e["userns"] = "auto"
        if kind in ("idmap", "shift"):
            root = os.path.join(base, "roots", kind, str(rnd), name)
            busybox_root(root)
            e["root"] = root
            if kind == "shift":
                e["userns_root"] = "shift"
        entries.append(e)
    gone = [{"name": name, "state": "absent", "purge": True, "stop_timeout": 1} for name in names]
    try:
        if profile is not None:
            profile.enable()
        t0, c0 = time.monotonic(), cpu_seconds()
        out = guests.ensure_guests(r, entries, False, table, userns_pool=POOL)
        created, cpu = time.monotonic() - t0, cpu_seconds() - c0
        if profile is not None:
            profile.disable()
        assert out["changed"] and len(r.names()) == n, (kind, len(r.names()))
        t0 = time.monotonic()
        guests.ensure_guests(r, gone, False, table, userns_pool=POOL)
        removed = time.monotonic() - t0
        assert r.names() == []
        return created, removed, cpu
    finally:
        if r.names():  # a failed side: no guest (process, cgroup) outlives the bench
            guests.ensure_guests(r, gone, False, table, userns_pool=POOL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--sizes", default="200")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--roots", type=int, default=0, help="also idmapped against shifted roots, for this many guests")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    sc.unshare_one("mnt")
    sc.mount("none", "/", None, sc.MS_REC | sc.MS_PRIVATE)
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    parent = "linuxns-bench-userns-%d" % os.getpid()
    os.environ["LINUXNS_CGROUP_PARENT"] = parent
    base = tempfile.mkdtemp(prefix="linuxns-bench-userns-", dir="/var/tmp")
    os.chmod(base, 0o755)
    profile = cProfile.Profile() if args.profile else None
    results = {}
    try:
        plan = [(n, ("plain", "userns")) for n in (int(s) for s in args.sizes.split(","))]
        if args.roots:
            plan.append((args.roots, ("idmap", "shift")))
        for n, kinds in plan:
            for rnd in range(args.rounds):
                order = kinds if rnd % 2 == 0 else kinds[::-1]
                for kind in order:
                    results.setdefault((n, kind), []).append(run_side(base, kind, n, rnd, profile if kind == "userns" else None))

        def median(rows, i):
            return sorted(row[i] for row in rows)[len(rows) // 2]

        print("%-8s %6s %12s %12s %12s" % ("side", "N", "create (s)", "remove (s)", "create CPU"))
        for (n, kind), rows in sorted(results.items()):
            rounds = " ".join("%.2f" % row[0] for row in rows)
            cpus = " ".join("%.2f" % row[2] for row in rows)
            print("%-8s %6d %12.2f %12.2f %12.2f   rounds: %s   CPU: %s" % (
                kind, n, median(rows, 0), median(rows, 1), median(rows, 2), rounds, cpus))
        for n, kinds in plan:
            (a, ac), (b, bc) = ((median(results[(n, k)], 0), median(results[(n, k)], 2)) for k in kinds)
            print("%s/%s at N=%d: %.2fx wall, %.2fx CPU" % (kinds[1], kinds[0], n, b / a, bc / ac))
        if profile is not None:
            pstats.Stats(profile).sort_stats("tottime").print_stats(20)
    finally:
        for sub in os.listdir(base):  # the netns and state folders are mounts of themselves
            try:
                sc.umount2(os.path.join(base, sub), sc.MNT_DETACH)
            except (OSError, KernelError):
                pass
        shutil.rmtree(base, ignore_errors=True)
        for hier in ("/sys/fs/cgroup",):
            for top, dirs, _files in os.walk(hier):
                if os.path.basename(top) == parent:
                    try:
                        os.rmdir(top)
                    except OSError:
                        pass
                    dirs[:] = []
    return 0


if __name__ == "__main__":
    sys.exit(main())
