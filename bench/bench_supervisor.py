"""Bench: the memory of the restart supervisor (module_utils/supervisor.py) per number of guests.

It runs on this machine as root, in a private mount namespace of its own (nothing it mounts
outlives it) and a scratch state folder; no lab is needed, the supervisor is one local process.
For each N it starts the supervisor as the guest_host role does (/usr/bin/python3 -m
...supervisor), waits for its first look at the state folder ("found N guests: watching N
running inits"), lets it scan a few more times, and reads its VmRSS and Pss
(/proc/PID/status, /proc/PID/smaps_rollup).  Goal: <= 16 MiB RSS at 1000 guests.

Two kinds of guests:

  records  (default) N guest records (meta.json, restart: on-failure) whose init is ONE live
           process of the bench: the supervisor holds one pidfd, one poll slot, one mtime and
           one Watched entry per record, as for real guests; only the kernel side differs.
  real     N real guests made with guests.ensure_guests (one batch; init: sleep), as
           namespace_create makes them; slower (a few seconds per 10 guests on a loaded
           machine), so the default here is smaller.

    .venv/bin/python bench/bench_supervisor.py [--guests 0,100,1000] [--kind records|real]

Figures in KiB; the per-guest slope is (RSS(N max) - RSS(N min)) / (N max - N min).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "build"))

from ansible_collections.linuxns.guests.plugins.module_utils import procfs  # noqa: E402
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg  # noqa: E402
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc  # noqa: E402
from ansible_collections.linuxns.guests.plugins.module_utils.errors import KernelError  # noqa: E402

MODULE = "ansible_collections.linuxns.guests.plugins.module_utils.supervisor"
SCANS = 5  # scans after the first, before the figure is read


def kib(pid: int, path: str, key: str) -> int:
    with open("/proc/%d/%s" % (pid, path)) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def make_records(r: reg.Registry, n: int, pid: int) -> None:
    start = procfs.proc_start_time(pid)
    r.ensure()
    for i in range(n):
        meta = reg.GuestRecord("g%05d" % i, reg.READY)
        meta.update({"context_id": 2 + i, "namespaces": ["mnt", "uts", "ipc", "net", "pid"], "init": ["sleep", "1000000"],
                     "restart": "on-failure", "restart_delay": 1.0, "restart_max_delay": 60.0, "restart_max": 0})
        meta.init_pid, meta.init_start = pid, start
        r.save(meta)


def make_real(r: reg.Registry, n: int) -> None:
    from ansible_collections.linuxns.guests.plugins.module_utils import guests

    entries = [{"name": "g%05d" % i, "init": ["sleep", "1000000"], "restart": "on-failure", "_in_list": True} for i in range(n)]
    if entries:
        guests.ensure_guests(r, entries)


def remove_real(r: reg.Registry) -> None:
    from ansible_collections.linuxns.guests.plugins.module_utils import guests

    names = r.names()
    if names:
        guests.ensure_guests(r, [{"name": n, "state": "absent", "stop_timeout": 1, "_in_list": True} for n in names])


def reap() -> None:
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def measure(state: str, n: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO / "build"))
    proc = subprocess.Popen(["/usr/bin/python3", "-m", MODULE, "--state-dir", state, "--scan-interval", "0.2"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        while "found" not in line:
            line = proc.stderr.readline()
            if not line:
                raise SystemExit("the supervisor ended: %s" % proc.wait())
        assert "watching %d running inits" % n in line, line
        time.sleep(SCANS * 0.2)
        return {"guests": n, "rss_kib": kib(proc.pid, "status", "VmRSS"), "pss_kib": kib(proc.pid, "smaps_rollup", "Pss"),
                "fds": len(os.listdir("/proc/%d/fd" % proc.pid))}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--guests", default=None, help="comma-separated counts (records: 0,100,1000; real: 0,50,200)")
    parser.add_argument("--kind", choices=("records", "real"), default="records")
    args = parser.parse_args()
    counts = [int(x) for x in (args.guests or ("0,100,1000" if args.kind == "records" else "0,50,200")).split(",")]
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    sc.unshare_one("mnt")
    sc.mount("none", "/", None, sc.MS_REC | sc.MS_PRIVATE)
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)  # the real guests' inits are reaped here when they are removed
    tmp = tempfile.mkdtemp(prefix="bench-supervisor-")
    os.environ["LINUXNS_TABLE_DIR"] = os.path.join(tmp, "tables")
    os.environ["LINUXNS_CGROUP_PARENT"] = "bench-supervisor-%d" % os.getpid()
    sleeper = subprocess.Popen(["sleep", "1000000"])
    rows = []
    try:
        for n in counts:
            state = os.path.join(tmp, "state-%d" % n)
            r = reg.Registry(state, os.path.join(tmp, "netns-%d" % n))
            t0 = time.monotonic()
            if args.kind == "records":
                make_records(r, n, sleeper.pid)
            else:
                make_real(r, n)
            made = time.monotonic() - t0
            try:
                row = measure(state, n)
            finally:
                if args.kind == "real":
                    remove_real(r)
                    reap()
            row["made_s"] = round(made, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        sleeper.kill()
        sleeper.wait()
        for name in os.listdir(tmp):  # the state folders are bind mounts of themselves (registry.ensure)
            for _attempt in range(8):
                try:
                    sc.umount2(os.path.join(tmp, name), sc.MNT_DETACH)
                except KernelError:
                    break
        shutil.rmtree(tmp, ignore_errors=True)
        reap()
        from ansible_collections.linuxns.guests.plugins.module_utils import cgroups

        for d in cgroups.resolve_parent(cgroups.detect(), os.environ["LINUXNS_CGROUP_PARENT"]).values():
            if os.path.isdir(d):
                os.rmdir(d)
    lo, hi = rows[0], rows[-1]
    if hi["guests"] > lo["guests"]:
        slope = (hi["rss_kib"] - lo["rss_kib"]) / (hi["guests"] - lo["guests"])
        print("kind %s: RSS %d KiB at %d guests, %d KiB at %d; %.2f KiB per guest; at 1000 guests: %.1f MiB"
              % (args.kind, lo["rss_kib"], lo["guests"], hi["rss_kib"], hi["guests"], slope,
                 (lo["rss_kib"] + slope * (1000 - lo["guests"])) / 1024))
    return 0


if __name__ == "__main__":
    sys.exit(main())
