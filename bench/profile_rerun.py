"""Profile a no-change rerun of the fleet's deploy play: where its time goes, and Ansible's floor.

On lab hosts 1 and 2 (LINUXNS_LAB / LINUXNS_LAB_BASE, as bench/bench_fleet.py, whose Fleet
it uses): the deploy play of playbooks/fleet.yml makes N guests per host (untimed), then runs
again --reruns times (no change) with bench/callback/linuxns_bench_time.py recording each
task's wall time per host and guest_deploy's `steps` (each module call's wall time on the
controller); then a floor play of --floor tasks of each kind on the same hosts, side by side:

  debug   ansible.builtin.debug          the per-task floor on the controller (no connection)
  plan    set_fact of the fleet's plan    the same plus templating the guest_plan filter over N guests
  raw     ansible.builtin.raw: true      plus one ssh round trip on the warm ControlMaster (no Python)
  ping    ansible.builtin.ping           plus a module run: AnsiballZ, the host's Python, imports

and at the end the fleet's tear-down play (untimed). Prints per task (median over reruns,
slowest host), per guest_deploy step, and the floor per task kind.

    LINUXNS_LAB=fleet3 LINUXNS_LAB_BASE=140 .venv/bin/python bench/profile_rerun.py --size 200 --reruns 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

from _common import HERE, VENV_BIN, median, run_tree, table
from bench_fleet import Fleet

KINDS = {
    "debug": {"ansible.builtin.debug": {"msg": "x"}},
    "plan": {"ansible.builtin.set_fact": {
        "profile_plan": "{{ fleet_guests | linuxns.guests.guest_plan(state='started', roots_dir=fleet_dir ~ '/roots', bridge=fleet_bridge) }}"}},
    "raw": {"ansible.builtin.raw": "true"},
    "ping": {"ansible.builtin.ping": {}},
}


def floor(fleet: Fleet, n: int, count: int) -> dict:
    """Per kind: the median of every task's seconds (all hosts)."""
    tasks = [dict(KINDS[k], name="%s %d" % (k, i)) for i in range(count) for k in KINDS]
    play = [{"name": "floor", "hosts": ":".join(h.name for h in fleet.hosts), "gather_facts": False,
             "vars_files": [str(fleet.tmp / "fleet-vars.yml")], "tasks": tasks}]
    path = fleet.tmp / "floor.yml"
    path.write_text(json.dumps(play))
    env = {**os.environ, "ANSIBLE_CONFIG": str(fleet.lab.ansible_cfg_path), "ANSIBLE_CALLBACK_PLUGINS": str(HERE / "callback"),
           "ANSIBLE_CALLBACKS_ENABLED": "linuxns_bench_time", "LINUXNS_BENCH_FILE": str(fleet.record)}
    with contextlib.suppress(FileNotFoundError):
        fleet.record.unlink()
    run_tree([str(VENV_BIN / "ansible-playbook"), "-i", str(fleet.lab.inventory_path), "-e", "fleet_size=%d" % n, str(path)],
             env=env, capture_output=True, text=True, check=True)
    recs = [json.loads(line) for line in fleet.record.read_text().splitlines()]
    return {k: median([r["seconds"] for r in recs if r["task"].startswith(k + " ")]) for k in KINDS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--size", type=int, default=50, help="guests per host")
    ap.add_argument("--reruns", type=int, default=3)
    ap.add_argument("--floor", type=int, default=5, help="tasks of each kind in the floor play")
    ap.add_argument("--keep-lab", action="store_true")
    args = ap.parse_args(argv)
    n = args.size
    walls, runs = [], []
    with Fleet(args.keep_lab, 0.0) as fleet:
        fleet.plays()
        (fleet.tmp / "fleet-vars.yml").write_text((HERE.parent / "playbooks" / "vars" / "fleet.yml").read_text())
        try:
            fleet.ours("deploy", n, True)
            for _rerun in range(args.reruns):
                t0 = time.monotonic()
                fleet.ours("deploy", n, False)
                walls.append(time.monotonic() - t0)
                runs.append(fleet.breakdown[("rerun", n)])
            kinds = floor(fleet, n, args.floor)
        finally:
            with contextlib.suppress(Exception):
                fleet.ours("teardown", n, True)
            fleet.reset()
    load = os.getloadavg()
    print("no-change rerun of the deploy play, %d hosts x %d guests: wall %s s (median %.2f), load %.1f" % (
        len(fleet.hosts), n, " ".join("%.2f" % w for w in walls), median(walls), load[0]))
    order, per = [], {}
    for recs in runs:
        slowest = {}
        for r in recs:
            slowest[r["task"]] = max(slowest.get(r["task"], 0.0), r["seconds"])
            if r["task"] not in order:
                order.append(r["task"])
        for task, s in slowest.items():
            per.setdefault(task, []).append(s)
    rows = [(t[:90], "%.2f" % median(per[t])) for t in order]
    print(table(rows, ("task (with a result; slowest host)", "median s")))
    print("tasks with a result per host: %d; sum of their medians %.2f s" % (len(order), sum(median(per[t]) for t in order)))
    steps = {}
    for recs in runs:
        for r in recs:
            for s in r.get("steps") or []:
                steps.setdefault(s["step"].split(" (")[0], []).append(s["seconds"])
    print(table([(k, "%.2f" % median(v)) for k, v in steps.items()], ("guest_deploy step (module call; all hosts)", "median s")))
    print(table([(k, "%.3f" % v) for k, v in kinds.items()], ("floor task kind (%d each; all hosts)" % args.floor, "median s/task")))
    print("load (1, 5, 15 min): %.2f %.2f %.2f" % load, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
