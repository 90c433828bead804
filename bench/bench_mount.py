"""Bench: one namespace_mount task (list form) vs. a shell loop of `nsenter -m mount`.

On lab host 1 (LINUXNS_LAB / LINUXNS_LAB_BASE select the lab; one that is not up is
brought up with one host and taken down at the end) a guest ``bm`` (mnt, uts, ipc, net,
pid; no own root) gets N mounts (default 200: half tmpfs size=1m, half binds of one
host folder), side by side in one run, alternating which side goes first:

  shell mount     one ssh session runs a bash loop: per mount `mkdir -p` of the mount
                  point and `nsenter --mount=PIN mount -t tmpfs ...` or `mount --bind`.
                  No check whether it is mounted already, no table, no rollback.
  shell umount    one ssh session: per mount `nsenter --mount=PIN umount`.
  ours mount      one `linuxns.guests.namespace_mount` task with a `mounts:` list of N
                  entries, state=mounted (the guest's table is written too).
  ours rerun      the same task again (no change: compared with the guest's mountinfo).
  ours absent     the same list with state=absent (unmounted and removed from the table).

Times are the wall time seen on the controller: the ssh command for the shell side (a
warm ControlMaster), the task's start-to-result time for ours (a warming ping task first).
Each step is checked from outside (the guest's mountinfo via findmnt --task) before the next.

    LINUXNS_LAB=m LINUXNS_LAB_BASE=40 .venv/bin/python bench/bench_mount.py [--n 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys

from _common import Bench, median, table

GUEST = "bm"
BASE = "/tmp/linuxns-bench-mount"
TABLES = BASE + "/tables"
PIN = "/run/linuxns/guests/%s/ns/mnt" % GUEST

SHELL_MOUNT = r"""
set -eu
B=$1; N=$2; PIN=$3
for ((i = 1; i <= N; i++)); do
    d=$B/s/m$i
    mkdir -p "$d"
    if (( i % 2 )); then
        nsenter --mount="$PIN" mount -t tmpfs -o size=1m tmpfs "$d"
    else
        nsenter --mount="$PIN" mount --bind "$B/src" "$d"
    fi
done
"""

SHELL_UMOUNT = r"""
set -eu
B=$1; N=$2; PIN=$3
for ((i = 1; i <= N; i++)); do
    nsenter --mount="$PIN" umount "$B/s/m$i"
done
"""


def guest_mounts(bench, prefix):
    """Mounts below ``prefix`` in the guest's own mount table (from outside)."""
    meta = json.loads(bench.exec(["cat", "/run/linuxns/guests/%s/meta.json" % GUEST]).stdout)
    out = bench.exec(["findmnt", "-J", "-l", "--task", str(meta["init_pid"]), "-o", "TARGET"]).stdout
    return sum(1 for r in json.loads(out)["filesystems"] if r["target"].startswith(prefix + "/"))


def expect(bench, prefix, n, what):
    got = guest_mounts(bench, prefix)
    if got != n:
        raise SystemExit("%s: the guest has %d mounts below %s, expected %d" % (what, got, prefix, n))


def entries(n):
    out = []
    for i in range(1, n + 1):
        if i % 2:
            out.append({"path": "%s/o/m%d" % (BASE, i), "fstype": "tmpfs", "opts": "size=1m"})
        else:
            out.append({"path": "%s/o/m%d" % (BASE, i), "fstype": "bind", "src": BASE + "/src"})
    return out


def shell_round(bench, n, figures):
    seconds, _out = bench.ssh_script(SHELL_MOUNT, BASE, str(n), PIN)
    figures.setdefault("shell mount", []).append(seconds)
    expect(bench, BASE + "/s", n, "shell mount")
    seconds, _out = bench.ssh_script(SHELL_UMOUNT, BASE, str(n), PIN)
    figures.setdefault("shell umount", []).append(seconds)
    expect(bench, BASE + "/s", 0, "shell umount")


def ours_round(bench, n, figures):
    mounts = entries(n)
    for label, state, changed, after in (("ours mount", "mounted", True, n), ("ours rerun", "mounted", False, n), ("ours absent", "absent", True, 0)):
        rec = bench.task("linuxns.guests.namespace_mount", {"guest": GUEST, "table_dir": TABLES, "state": state, "mounts": mounts})
        if rec["changed"] != changed:
            raise SystemExit("%s: changed=%s, expected %s" % (label, rec["changed"], changed))
        figures.setdefault(label, []).append(rec["seconds"])
        figures.setdefault(label + " (process)", []).append(rec["process"])
        expect(bench, BASE + "/o", after, label)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep-lab", action="store_true", help="leave a lab this bench brought up running")
    args = ap.parse_args(argv)
    figures = {}
    with Bench(keep_lab=args.keep_lab) as bench:
        bench.exec(["sh", "-c", "rm -rf %s; mkdir -p %s/src %s/s %s/o && echo x > %s/src/file" % (BASE, BASE, BASE, BASE, BASE)])
        bench.task("linuxns.guests.namespace_create", {"name": GUEST})
        try:
            for r in range(args.rounds):
                order = (shell_round, ours_round) if r % 2 == 0 else (ours_round, shell_round)
                for side in order:
                    side(bench, args.n, figures)
                print("round %d done" % (r + 1), file=sys.stderr, flush=True)
        finally:
            bench.task("linuxns.guests.namespace_create", {"name": GUEST, "state": "absent", "stop_timeout": 2})
            bench.exec(["rm", "-rf", BASE], check=False)
    sm, su = median(figures["shell mount"]), median(figures["shell umount"])
    om, orr, oa = (median(figures[k]) for k in ("ours mount", "ours rerun", "ours absent"))
    pm = median(figures["ours mount (process)"])
    rows = [
        (args.n, "mount", "%.2f" % sm, "%.2f" % om, "%.2fx" % (om / sm), "%.2f" % pm, "%.2fx" % (pm / sm)),
        (args.n, "no-change rerun", "-", "%.2f" % orr, "%.2fx" % (orr / sm), "-", "-"),
        (args.n, "unmount (+table)", "%.2f" % su, "%.2f" % oa, "%.2fx" % (oa / su), "-", "-"),
    ]
    print("median of %d rounds, seconds (lab host %s); ratio = ours / shell (rerun: / shell mount); goal for mount <= 1.5x"
          % (args.rounds, bench.host.name))
    print(table(rows, ("mounts", "step", "shell", "ours task", "ratio", "ours process", "ratio")))
    print("raw: " + "; ".join("%s: %s" % (k, " ".join("%.2f" % v for v in vals)) for k, vals in sorted(figures.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
