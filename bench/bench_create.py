"""Bench: one namespace_create task (list form) vs. a plain shell loop of `unshare`.

On lab host 1 (LINUXNS_LAB / LINUXNS_LAB_BASE select the lab; one that is not up is
brought up with one host and taken down at the end), for each size N (default 100 and
1000) and each round, side by side in one run, alternating which side goes first:

  shell create    one ssh session runs a bash loop: per guest a folder of 5 pin files in a
                  private bind-mounted folder and `unshare --mount=F --uts=F --ipc=F --net=F
                  --pid=F --fork --kill-child=KILL catatonit -P &`, waiting until the mnt pin
                  (unshare binds it last) is unshare's mount namespace. On Linux 6.18 the
                  mount-namespace pin fails with EINVAL when the new namespace got a lower id
                  than the pinning process's (per-CPU id batches; see guest_create._newer_mnt_ns):
                  the loop then kills the failed try's reaper (PID 1 of its pinned pid
                  namespace), unmounts what it pinned, moves itself to the next CPU
                  (`taskset -p`) and retries. Retries are counted and reported.
  shell teardown  one ssh session: per guest SIGKILL its unshare (--kill-child takes the
                  reaper along), umount its 5 pins; then one `rm -rf` of the folder.
  ours create     one `linuxns.guests.namespace_create` task, `guests:` list of N names,
                  default namespaces mnt,uts,ipc,net,pid.
  ours rerun      the same task again (no change).
  ours remove     the same list with state=absent.

Times are the wall time seen on the controller: the ssh command for the shell side (a
warm ControlMaster), the task's start-to-result time for ours (a warming ping task
first; Ansible's ssh master is warm too). Each result is checked from outside (pins in
the lab host's mountinfo, processes) before the next step.

    LINUXNS_LAB=b LINUXNS_LAB_BASE=60 .venv/bin/python bench/bench_create.py [--sizes 100,1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import Bench, median, table

SHELL_DIR = "/tmp/linuxns-bench-shell"
NS = ("mnt", "uts", "ipc", "net", "pid")

SHELL_CREATE = r"""
set -u
B=$1; N=$2
mkdir -p "$B"
mount --bind "$B" "$B"
mount --make-private "$B"
ncpu=$(nproc); cpu=0; retries=0
for ((i = 1; i <= N; i++)); do
    d=$B/s$i
    mkdir "$d"
    : > "$d/mnt"; : > "$d/uts"; : > "$d/ipc"; : > "$d/net"; : > "$d/pid"
    while :; do
        unshare --mount="$d/mnt" --uts="$d/uts" --ipc="$d/ipc" --net="$d/net" --pid="$d/pid" \
            --fork --kill-child=KILL catatonit -P </dev/null >/dev/null 2>&1 &
        pid=$!
        ok=
        while :; do
            # the mnt pin is made last: once it is unshare's mount namespace, all pins are made
            if [ "$d/mnt" -ef "/proc/$pid/ns/mnt" ]; then ok=1; break; fi
            st=
            read -r _ _ st _ < "/proc/$pid/stat" 2>/dev/null
            case $st in Z|X|'') break ;; esac
        done
        if [ -n "$ok" ]; then echo "$pid" > "$d/init"; break; fi
        wait "$pid"
        # unshare forks the reaper before it pins; --kill-child (PR_SET_PDEATHSIG, set
        # by the child after fork) can miss a parent that failed fast: kill what is PID 1
        # of the pinned pid namespace, then drop the pins the failed try made.
        for p in /proc/[0-9]*; do
            [ "$p/ns/pid" -ef "$d/pid" ] && kill -KILL "${p#/proc/}" 2>/dev/null
        done
        umount -q "$d/mnt" "$d/uts" "$d/ipc" "$d/net" "$d/pid" 2>/dev/null
        retries=$((retries + 1))
        [ "$retries" -gt $((N + 50)) ] && { echo "too many retries" >&2; exit 1; }
        cpu=$(( (cpu + 1) % ncpu ))
        taskset -pc "$cpu" $$ >/dev/null
    done
done
echo "retries=$retries"
"""

SHELL_TEARDOWN = r"""
set -u
B=$1
for d in "$B"/s*; do
    read -r p < "$d/init"
    kill -KILL "$p"   # unshare; --kill-child takes its reaper along
    umount "$d/mnt" "$d/uts" "$d/ipc" "$d/net" "$d/pid"
done
umount "$B"
rm -rf "$B"
"""

COUNT = r"""
import os, sys
prefix, state = sys.argv[1], sys.argv[2]
mounts = 0
with open("/proc/self/mountinfo") as f:
    for line in f:
        if line.split()[4].startswith(prefix + "/"):
            mounts += 1
procs = 0
for p in os.listdir("/proc"):
    if p.isdigit() and p != "1":
        try:
            if "catatonit" in os.readlink("/proc/%s/exe" % p):  # /usr/bin/catatonit, or /memfd:catatonit (deleted)
                procs += 1
        except OSError:
            pass
guests = len(os.listdir(state + "/guests")) if os.path.isdir(state + "/guests") else 0
netns = len(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else 0
print(mounts, procs, guests, netns)
"""


def count(bench, prefix):
    out = bench.exec(["python3", "-c", COUNT, prefix, "/run/linuxns"]).stdout.split()
    return dict(zip(("mounts", "reapers", "guests", "netns"), map(int, out)))


def expect(bench, prefix, mounts, reapers, guests, netns, what):
    """Check the lab host from outside (a SIGKILLed reaper may take a moment to go)."""
    want = {"mounts": mounts, "reapers": reapers, "guests": guests, "netns": netns}
    deadline = time.monotonic() + 10
    got = count(bench, prefix)
    while got != want and time.monotonic() < deadline:
        time.sleep(0.2)
        got = count(bench, prefix)
    if got != want:
        raise SystemExit(f"{what}: found {got} on the lab host, expected {want}")


def shell_round(bench, n, figures):
    seconds, out = bench.ssh_script(SHELL_CREATE, SHELL_DIR, str(n))
    figures.setdefault(("shell create", n), []).append(seconds)
    figures.setdefault(("shell retries", n), []).append(int(out.split("retries=")[1].split()[0]))
    expect(bench, SHELL_DIR, 5 * n, n, 0, 0, f"shell create {n}")
    seconds = bench.ssh_script(SHELL_TEARDOWN, SHELL_DIR)[0]
    figures.setdefault(("shell teardown", n), []).append(seconds)
    expect(bench, SHELL_DIR, 0, 0, 0, 0, f"shell teardown {n}")


def ours_round(bench, n, figures):
    guests = [{"name": "b%04d" % i} for i in range(1, n + 1)]
    for label, state, changed in (("ours create", "present", True), ("ours rerun", "present", False), ("ours remove", "absent", True)):
        rec = bench.task("linuxns.guests.namespace_create", {"guests": guests, "state": state})
        if rec["changed"] != changed or rec["count"] != n:
            raise SystemExit(f"{label} {n}: changed={rec['changed']} with {rec['count']} results, expected changed={changed}")
        figures.setdefault((label, n), []).append(rec["seconds"])
        figures.setdefault((label + " (process)", n), []).append(rec["process"])
        if state == "present":
            expect(bench, "/run/linuxns/guests", 5 * n, n, n, n, f"{label} {n}")
        else:
            expect(bench, "/run/linuxns/guests", 0, 0, 0, 0, f"{label} {n}")


def cleanup(bench):
    """Remove whatever a failed round left behind (both sides)."""
    bench.exec(["bash", "-c", SHELL_TEARDOWN.replace("set -u", "") + "true", "x", SHELL_DIR], check=False)
    try:
        bench.task("linuxns.guests.namespace_create", {"guests": [{"name": "b%04d" % i} for i in range(1, 1001)], "state": "absent"})
    except RuntimeError as exc:
        print("cleanup: %s" % exc, file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep-lab", action="store_true", help="leave a lab this bench brought up running")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    figures = {}
    with Bench(keep_lab=args.keep_lab) as bench:
        expect(bench, "/run/linuxns/guests", 0, 0, 0, 0, "before the bench (lab host 1 must have no guests)")
        try:
            for n in sizes:
                for r in range(args.rounds):
                    order = (shell_round, ours_round) if r % 2 == 0 else (ours_round, shell_round)
                    for side in order:
                        side(bench, n, figures)
                    print("n=%d round %d done" % (n, r + 1), file=sys.stderr, flush=True)
        finally:
            if count(bench, "/run/linuxns/guests")["guests"] or count(bench, SHELL_DIR)["mounts"]:
                cleanup(bench)
    rows = []
    for n in sizes:
        sc, st = median(figures[("shell create", n)]), median(figures[("shell teardown", n)])
        oc, orr, orm = (median(figures[(k, n)]) for k in ("ours create", "ours rerun", "ours remove"))
        pc, prm = median(figures[("ours create (process)", n)]), median(figures[("ours remove (process)", n)])
        rows.append((n, "create", "%.2f" % sc, "%.2f" % oc, "%.2fx" % (oc / sc), "%.2f" % pc, "%.2fx" % (pc / sc)))
        rows.append((n, "no-change rerun", "-", "%.2f" % orr, "%.2fx" % (orr / sc), "-", "-"))
        rows.append((n, "remove", "%.2f" % st, "%.2f" % orm, "%.2fx" % (orm / st), "%.2f" % prm, "%.2fx" % (prm / st)))
    print("median of %d rounds, seconds (lab host %s); ratio = ours / shell (rerun: / shell create)" % (args.rounds, bench.host.name))
    print(table(rows, ("guests", "step", "shell", "ours task", "ratio", "ours process", "ratio")))
    paired = []
    for n in sizes:
        for label, base in (("create", "shell create"), ("remove", "shell teardown")):
            ours = figures[("ours " + label, n)]
            ratios = [o / b for o, b in zip(ours, figures[(base, n)])]
            paired.append("%d %s %.2fx (%s)" % (n, label, median(ratios), " ".join("%.2f" % r for r in ratios)))
    print("paired ratios (ours / shell within each round), median (per round): " + "; ".join(paired))
    print("shell loop retries after EINVAL on the mount pin (per round): %s" % {n: figures[("shell retries", n)] for n in sizes})
    print("raw: " + "; ".join("%s %d: %s" % (k[0], k[1], " ".join("%.2f" % v for v in vals)) for k, vals in sorted(figures.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
