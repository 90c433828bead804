"""Bench: what cgroups cost - creating guests with limits vs without, and entering a guest.

On lab host 1 of the lab selected by LINUXNS_LAB / LINUXNS_LAB_BASE (a lab that is not
up is brought up with one host and taken down at the end; the guests the bench makes are
always removed), side by side in one run, alternating which side goes first each round:

  create  one namespace_create task, `guests:` list of N names (default 1000; mnt, uts,
          ipc, net, pid), with `limits` (memory, memory_high, pids, cpu, cpu_weight) vs
          without (every guest still gets its own cgroup: that is the default now).
          Task wall time (bench/callback); each side's guests are checked from outside
          (registry, the limit files of one guest's cgroup) and removed (also timed).
          Goal: with / without <= 1.2.
  exec    ad hoc `ansible lab1 -m linuxns.guests.guest_enter_exec -a 'guest=G cmd=true'`
          (joins the guest's cgroups, then its namespaces) vs ad hoc ansible.builtin.command
          running what a shell user would: `sh -c 'echo $$ > .../cgroup.procs (each
          hierarchy); exec nsenter --all --target PID true'` - the same cgroups joined, then
          nsenter - and, for reference, plain `nsenter --all --target PID true` (no cgroup).
          Whole `ansible` process wall time, warm ssh master.  Goal: ours / cgroup baseline <= 1.05.

    LINUXNS_LAB=x LINUXNS_LAB_BASE=30 .venv/bin/python bench/bench_cgroups.py [--n 1000] [--rounds 2] [--exec-rounds 10]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from _common import Bench, median, table
from bench_exec import Runner

PREFIX = "bcg"
LIMITS = {"memory": "64M", "memory_high": "48M", "pids": 64, "cpu": 0.5, "cpu_weight": 50}


def names(n: int, side: str) -> list:
    return ["%s%s%04d" % (PREFIX, side, i) for i in range(n)]


def registered(bench) -> list:
    out = bench.exec(["sh", "-c", "ls /run/linuxns/guests 2>/dev/null || true"]).stdout.split()
    return sorted(g for g in out if g.startswith(PREFIX))


def meta(bench, name: str) -> dict:
    return json.loads(bench.exec(["cat", "/run/linuxns/guests/%s/meta.json" % name]).stdout)


def cgroup_paths(record: dict) -> dict:
    return (record.get("cgroup") or {}).get("paths") or {}


def check_limits(bench, name: str, limited: bool) -> None:
    """One guest's memory and pids limit files, read on the lab host."""
    paths = cgroup_paths(meta(bench, name))
    files = {"memory": "memory.limit_in_bytes", "pids": "pids.max"}
    for key, fname in files.items():
        folder = next((p for k, p in paths.items() if key in k.split(",")), None)
        if folder is None:
            raise SystemExit("%s: no %s hierarchy in its cgroup record %s" % (name, key, paths))
        value = bench.exec(["cat", "%s/%s" % (folder, fname)]).stdout.strip()
        want = {"memory": str(64 * 2 ** 20), "pids": "64"}[key] if limited else None
        if limited and value != want:
            raise SystemExit("%s: %s is %s, expected %s" % (name, fname, value, want))
        if not limited and key == "pids" and value != "max":
            raise SystemExit("%s: %s is %s without limits" % (name, fname, value))


def create_round(bench, n: int, side: str, figures: dict) -> None:
    guests = names(n, side)
    args = {"guests": guests}
    if side == "l":
        args["limits"] = LIMITS
    rec = bench.task("linuxns.guests.namespace_create", args)
    if not rec["changed"] or rec["count"] != n:
        raise SystemExit("create %s: changed=%s with %s results" % (side, rec["changed"], rec["count"]))
    label = "with limits" if side == "l" else "without"
    figures.setdefault(("create", label), []).append(rec["seconds"])
    if len(registered(bench)) != n:
        raise SystemExit("create %s: %d guests registered, expected %d" % (label, len(registered(bench)), n))
    check_limits(bench, guests[0], side == "l")
    check_limits(bench, guests[-1], side == "l")
    rec = bench.task("linuxns.guests.namespace_create", {"guests": guests, "state": "absent", "stop_timeout": 2})
    figures.setdefault(("remove", label), []).append(rec["seconds"])
    if registered(bench):
        raise SystemExit("remove %s: guests left: %s" % (label, registered(bench)[:5]))


def exec_bench(bench, rounds: int, figures: dict) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="linuxns-bench-cg-"))
    runner = Runner(bench.lab, tmp)
    guest = PREFIX + "x"
    try:
        runner.playbook([{"linuxns.guests.namespace_create": {"name": guest, "limits": LIMITS}}])
        record = meta(bench, guest)
        pid = record["init_pid"]
        procs = [p + "/cgroup.procs" for p in cgroup_paths(record).values()]
        if not procs:
            raise SystemExit("%s has no cgroup in its record: %s" % (guest, record))
        join = " ".join("echo $$ > %s;" % shlex.quote(p) for p in procs)
        sides = {
            "ours": ("linuxns.guests.guest_enter_exec", "guest=%s cmd=true" % guest),
            "cgroup+nsenter": ("ansible.builtin.command",
                               json.dumps({"argv": ["sh", "-c", "%s exec nsenter --all --target %d true" % (join, pid)]})),
            "nsenter": ("ansible.builtin.command", "nsenter --all --target %d true" % pid),
        }
        for module, args in sides.values():  # warm up: the ssh master and every code path
            runner.adhoc(module, args)
        order = list(sides)
        for r in range(rounds):
            for side in order[r % 3:] + order[: r % 3]:
                figures.setdefault(("exec", side), []).append(runner.adhoc(*sides[side]))
    finally:
        try:
            runner.playbook([{"linuxns.guests.namespace_create": {"name": guest, "state": "absent", "stop_timeout": 2}}])
        finally:
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--n", type=int, default=1000, help="guests per create (default 1000)")
    ap.add_argument("--rounds", type=int, default=2, help="create rounds (each side once per round)")
    ap.add_argument("--exec-rounds", type=int, default=10, help="ad hoc exec rounds (each side once per round)")
    ap.add_argument("--keep-lab", action="store_true", help="leave a lab this bench brought up running")
    opts = ap.parse_args(argv)
    figures = {}
    with Bench(keep_lab=opts.keep_lab) as bench:
        if registered(bench):
            raise SystemExit("lab host 1 already has bench guests: %s" % registered(bench)[:5])
        try:
            for r in range(opts.rounds):
                for side in ("n", "l") if r % 2 == 0 else ("l", "n"):
                    create_round(bench, opts.n, side, figures)
                print("create round %d done" % (r + 1), file=sys.stderr, flush=True)
            exec_bench(bench, opts.exec_rounds, figures)
        finally:
            left = registered(bench)
            if left:
                bench.task("linuxns.guests.namespace_create", {"guests": left, "state": "absent", "stop_timeout": 2})
    rows = []
    for step in ("create", "remove"):
        w, wo = median(figures[(step, "with limits")]), median(figures[(step, "without")])
        pairs = [a / b for a, b in zip(figures[(step, "with limits")], figures[(step, "without")])]
        rows.append(("%s %d" % (step, opts.n), "%.2f" % wo, "%.2f" % w, "%.2fx" % (w / wo), " ".join("%.2f" % p for p in pairs)))
    print("guests with limits vs without, median of %d rounds, seconds (lab host %s); goal create <= 1.2x" % (opts.rounds, bench.host.name))
    print(table(rows, ("step", "without", "with limits", "ratio", "pairs")))
    ours, cg, plain = (statistics.median(figures[("exec", s)]) for s in ("ours", "cgroup+nsenter", "nsenter"))
    print("ad hoc exec, %d rounds (median wall time of the `ansible` process):" % opts.exec_rounds)
    print("  guest_enter_exec cmd=true                          %.3f s" % ours)
    print("  command: join the cgroups, nsenter --all true      %.3f s" % cg)
    print("  command: nsenter --all true (no cgroup)            %.3f s" % plain)
    print("  ratio ours / cgroup baseline                       %.3f  (goal <= 1.05)" % (ours / cg))
    print("  ratio ours / plain nsenter                         %.3f" % (ours / plain))
    print("raw: " + "; ".join("%s %s: %s" % (k[0], k[1], " ".join("%.2f" % v for v in vals)) for k, vals in sorted(figures.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
