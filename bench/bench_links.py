"""Bench: netns_link wiring N guests to a bridge vs a shell loop of `ip` commands, side by side.

On lab host 1 of the lab selected by LINUXNS_LAB / LINUXNS_LAB_BASE (a lab that is not up
is brought up with one host and taken down at the end; the guests, veths and bridge the
bench makes are always removed).  N guests (net namespace only) are made once; then, for
each round, alternating which side goes first, from the same empty state:

  module  one task `linuxns.guests.netns_link: {links: [N entries]}` - per guest a veth
          eth0 (in the guest) / vblNNN (host side, on bridge lnbr-bench, created by the
          first entry), an address on eth0, both ends up, and the bridge's own address.
  shell   one `ansible.builtin.shell` task running the loop a person would write:
          `ip link add vblNNN type veth peer name eth0 netns GUEST; ip link set vblNNN
          master lnbr-bench up; ip -n GUEST addr add A dev eth0; ip -n GUEST link set eth0 up`
          (plus the bridge with its address once).

Both are whole `ansible-playbook` wall times (same ssh, pipelining on), so Ansible's own
overhead is in both; the time of a trivial task (`ansible.builtin.command: true`) is
printed for reference.  Goal: module/shell <= 1.5.  Also printed: the module's no-change rerun
(everything already wired: `changed=false`) and its check-mode run.

With ``--baseline DIR`` (the collections folder of another checkout, its ``build``), the
no-change rerun is also timed side by side: this checkout's netns_link against that one's,
alternating which goes first, ``--rerun-rounds`` times each; ``--rounds 0`` skips the rest.

    LINUXNS_LAB=x LINUXNS_LAB_BASE=30 .venv/bin/python bench/bench_links.py [--rounds 3] [--guests 200]
    git worktree add /tmp/base BASE && make -C /tmp/base link
    LINUXNS_LAB=x LINUXNS_LAB_BASE=30 .venv/bin/python bench/bench_links.py --rounds 0 --baseline /tmp/base/build --rerun-rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "lab"))

from lab import Lab, run_tree  # noqa: E402

VENV_BIN = REPO / ".venv" / "bin"
MOD = "linuxns.guests.netns_link"
CREATE = "linuxns.guests.namespace_create"
PREFIX = "benchl"
BRIDGE = "lnbr-bench"
BRIDGE_ADDR = "198.19.128.1/17"


def guest(i: int) -> str:
    return "%s%03d" % (PREFIX, i)


def address(i: int) -> str:
    return "198.19.%d.%d/17" % (128 + (i + 2) // 250, (i + 2) % 250 + 2)


class Runner:
    def __init__(self, lab: Lab, tmp: Path):
        self.lab = lab
        self.tmp = tmp
        self.n = 0

    def playbook(self, tasks: list, check: bool = False, collections: Path = REPO / "build") -> tuple:
        """(wall seconds, task results in order)."""
        self.n += 1
        pb = self.tmp / ("play%d.yml" % self.n)
        pb.write_text(json.dumps([{"hosts": "lab1", "gather_facts": False, "tasks": tasks}]))
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.lab.inventory_path), str(pb)]
        if check:
            argv.append("--check")
        record = self.tmp / ("play%d.jsonl" % self.n)
        # the tests' record callback writes each task result as a JSON line
        env = dict(os.environ, ANSIBLE_CONFIG=str(self.lab.ansible_cfg_path), ANSIBLE_COLLECTIONS_PATH=str(collections),
                   ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_PLUGINS=str(REPO / "tests" / "integration" / "callback"),
                   ANSIBLE_CALLBACKS_ENABLED="linuxns_record", LINUXNS_RECORD_FILE=str(record))
        t0 = time.monotonic()
        proc = run_tree(argv, env=env, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError("ansible-playbook failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-2000:]))
        text = record.read_text() if record.exists() else ""
        results = [json.loads(line)["result"] for line in text.splitlines() if line.strip()]
        return seconds, results


def module_task(n: int) -> dict:
    return {"name": "wire", MOD: {
        "ifname": "eth0",
        "peer": {"bridge": BRIDGE, "bridge_addresses": [BRIDGE_ADDR]},
        "links": [{"guest": guest(i), "addresses": [address(i)], "peer": {"ifname": "vbl%03d" % i}} for i in range(n)],
    }}


def shell_task(n: int) -> dict:
    lines = ["set -e", "ip link add %s type bridge" % BRIDGE, "ip link set %s up" % BRIDGE, "ip addr add %s dev %s" % (BRIDGE_ADDR, BRIDGE)]
    for i in range(n):
        g, v = guest(i), "vbl%03d" % i
        lines += [
            "ip link add %s type veth peer name eth0 netns %s" % (v, g),
            "ip link set %s master %s up" % (v, BRIDGE),
            "ip -n %s addr add %s dev eth0" % (g, address(i)),
            "ip -n %s link set eth0 up" % g,
        ]
    return {"name": "shell loop", "ansible.builtin.shell": "\n".join(lines)}


def teardown_links(lab: Lab, n: int) -> None:
    script = "for i in $(seq -f %%03g 0 %d); do ip link del vbl$i 2>/dev/null; done; ip link del %s 2>/dev/null; true" % (n - 1, BRIDGE)
    lab.exec(1, ["sh", "-c", script], check=False)


def verify(lab: Lab, n: int) -> None:
    ports = json.loads(lab.exec(1, ["ip", "-j", "link", "show", "master", BRIDGE]).stdout or "[]")
    if len(ports) != n:
        raise RuntimeError("expected %d bridge ports, found %d" % (n, len(ports)))
    last = json.loads(lab.exec(1, ["ip", "-n", guest(n - 1), "-j", "addr", "show", "eth0"]).stdout)[0]
    have = ["%s/%s" % (a["local"], a["prefixlen"]) for a in last["addr_info"] if a["family"] == "inet"]
    if have != [address(n - 1)] or "UP" not in last["flags"]:
        raise RuntimeError("guest %s: eth0 is %s %s" % (guest(n - 1), have, last["flags"]))


def rerun_side_by_side(runner: Runner, lab: Lab, n: int, noop: float, baseline: Path, rounds: int) -> None:
    """The no-change rerun of this checkout's netns_link against ``baseline``'s, alternating."""
    teardown_links(lab, n)
    runner.playbook([module_task(n)])
    verify(lab, n)
    sides = {"this checkout": REPO / "build", "baseline": baseline}
    times = {side: [] for side in sides}
    for r in range(rounds):
        for side in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            secs, res = runner.playbook([module_task(n)], collections=sides[side])
            if res[0].get("changed"):
                raise RuntimeError("%s: the no-change rerun reported changed=true" % side)
            times[side].append(secs)
    this, base = statistics.median(times["this checkout"]), statistics.median(times["baseline"])
    print("netns_link no-change rerun, %d guests, %d rounds each, alternating (whole ansible-playbook wall time, median)" % (n, rounds))
    print("  trivial task (command: true)     %6.2f s" % noop)
    for side in sides:
        print("  %-32s %6.2f s   %s" % (side, statistics.median(times[side]), " ".join("%.2f" % t for t in times[side])))
    print("  baseline: %s" % baseline)
    print("  ratio this/baseline              %6.2f" % (this / base))
    print("  ratio minus the trivial task     %6.2f" % ((this - noop) / max(base - noop, 1e-3)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--guests", type=int, default=200)
    ap.add_argument("--baseline", type=Path, help="collections folder of another checkout: its no-change rerun side by side")
    ap.add_argument("--rerun-rounds", type=int, default=5)
    args = ap.parse_args()
    n = args.guests
    lab = Lab()
    brought_up = False
    if not lab.healthy(1):
        lab.up(1)
        brought_up = True
    tmp = Path(tempfile.mkdtemp(prefix="bench-links-"))
    runner = Runner(lab, tmp)
    names = [{"name": guest(i)} for i in range(n)]
    try:
        runner.playbook([{"name": "guests", CREATE: {"guests": names, "namespaces": ["net"]}}])
        teardown_links(lab, n)
        noop = statistics.median(runner.playbook([{"name": "true", "ansible.builtin.command": "true"}])[0] for _round in range(3))
        times = {"module": [], "shell": []}
        rerun, check = [], []
        for r in range(args.rounds):
            order = ("module", "shell") if r % 2 == 0 else ("shell", "module")
            for side in order:
                teardown_links(lab, n)
                secs, res = runner.playbook([module_task(n) if side == "module" else shell_task(n)])
                verify(lab, n)
                if not res[0].get("changed"):
                    raise RuntimeError("%s: the first run did not change anything" % side)
                times[side].append(secs)
                if side == "module":
                    secs, res = runner.playbook([module_task(n)])
                    if res[0].get("changed"):
                        raise RuntimeError("the no-change rerun reported changed=true")
                    rerun.append(secs)
                    secs, res = runner.playbook([module_task(n)], check=True)
                    if res[0].get("changed"):
                        raise RuntimeError("check mode on a wired host predicted a change")
                    check.append(secs)
        if args.rounds:
            m, s = statistics.median(times["module"]), statistics.median(times["shell"])
            print("netns_link bench on lab host 1: %d guests to bridge %s, %d rounds (whole ansible-playbook wall time, median)" % (n, BRIDGE, args.rounds))
            print("  trivial task (command: true)     %6.2f s" % noop)
            print("  module, one task with links:     %6.2f s   %s" % (m, " ".join("%.2f" % t for t in times["module"])))
            print("  shell loop of ip commands        %6.2f s   %s" % (s, " ".join("%.2f" % t for t in times["shell"])))
            print("  ratio module/shell               %6.2f     (goal <= 1.5)" % (m / s))
            print("  ratio minus the trivial task     %6.2f" % ((m - noop) / max(s - noop, 1e-3)))
            print("  module no-change rerun           %6.2f s   %s" % (statistics.median(rerun), " ".join("%.2f" % t for t in rerun)))
            print("  module check mode (no change)    %6.2f s" % statistics.median(check))
        if args.baseline:
            rerun_side_by_side(runner, lab, n, noop, args.baseline, args.rerun_rounds)
    finally:
        teardown_links(lab, n)
        try:
            runner.playbook([{"name": "remove", CREATE: {"guests": names, "state": "absent"}}])
        finally:
            if brought_up:
                lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
