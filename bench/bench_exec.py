"""Bench: guest_enter_exec against ansible.builtin.command running nsenter, side by side.

On lab host 1 of the lab selected by LINUXNS_LAB / LINUXNS_LAB_BASE (a lab that is not
up is brought up with one host and taken down at the end; the guests the bench makes
are always removed), in one run, alternating which side goes first each round:

  adhoc   `ansible lab1 -m linuxns.guests.guest_enter_exec -a 'guest=benchx000 cmd=true'`
          vs `ansible lab1 -m ansible.builtin.command -a 'nsenter --all --target PID true'`
          (PID = the guest's init): whole `ansible` process wall time, warm ssh master,
          pipelining as in the lab's ansible.cfg (on).  Goal: ratio <= 1.05.
          A third side, the floor: ansible-core's own command module copied unchanged
          into a throwaway collection (benchfloor.x.command) - what being a collection
          module costs an ad hoc run, whatever the module does.
  many    one task `guest_enter_exec: {guests: [100 names], argv: [true]}` vs a task
          looping ansible.builtin.command `nsenter --all --target PID true` over the 100
          guests' inits: whole `ansible-playbook` wall time.  Goal: ratio >= 20.

Also printed: the AnsiballZ payload size of both modules (kept with
ANSIBLE_KEEP_REMOTE_FILES, pipelining off) and the time the payload takes on the
target when run there directly (median of 10, python3 AnsiballZ_*.py): wall time and CPU
time (the payload's and its children's: the CPU time moves much less with the machine's load).

    LINUXNS_LAB=x LINUXNS_LAB_BASE=30 .venv/bin/python bench/bench_exec.py [--rounds 10] [--guests 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
MOD = "linuxns.guests.guest_enter_exec"
CREATE = "linuxns.guests.namespace_create"
PREFIX = "benchx"
KEEP_DIR = "/tmp/.ansible-remote"


class Runner:
    def __init__(self, lab: Lab, tmp: Path):
        self.lab = lab
        self.tmp = tmp
        self.n = 0

    def env(self, **extra) -> dict:
        env = dict(os.environ)
        env.update({"ANSIBLE_CONFIG": str(self.lab.ansible_cfg_path), "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_COLLECTIONS_PATH": "%s:%s" % (REPO / "build", self.tmp / "floor")})
        env.update(extra)
        return env

    def adhoc(self, module: str, args: str, **env) -> float:
        argv = [str(VENV_BIN / "ansible"), "lab1", "-i", str(self.lab.inventory_path), "-m", module, "-a", args, "-o"]
        t0 = time.monotonic()
        proc = run_tree(argv, env=self.env(**env), capture_output=True, text=True, check=False)
        seconds = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError("ansible %s failed: %s%s" % (module, proc.stdout[-2000:], proc.stderr[-2000:]))
        return seconds

    def playbook(self, tasks: list, extra_vars: dict | None = None) -> tuple:
        self.n += 1
        pb = self.tmp / ("play%d.yml" % self.n)
        pb.write_text(json.dumps([{"hosts": "lab1", "gather_facts": False, "tasks": tasks}]))
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.lab.inventory_path), str(pb)]
        if extra_vars:
            vf = self.tmp / ("vars%d.json" % self.n)
            vf.write_text(json.dumps(extra_vars))
            argv += ["-e", "@" + str(vf)]
        t0 = time.monotonic()
        proc = run_tree(argv, env=self.env(), capture_output=True, text=True, check=False)
        seconds = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError("ansible-playbook failed: %s%s" % (proc.stdout[-3000:], proc.stderr[-2000:]))
        return seconds, proc.stdout


FLOOR = "benchfloor.x.command"


def make_floor(tmp: Path) -> None:
    """ansible-core's command module, unchanged, as the module of a collection of its own."""
    import ansible.modules.command

    folder = tmp / "floor" / "ansible_collections" / "benchfloor" / "x" / "plugins" / "modules"
    folder.mkdir(parents=True)
    (folder / "command.py").write_text(Path(ansible.modules.command.__file__).read_text())


def init_pids(lab: Lab, names) -> dict:
    out = {}
    for name in names:
        meta = json.loads(lab.exec(1, ["cat", "/run/linuxns/guests/%s/meta.json" % name]).stdout)
        out[name] = meta["init_pid"]
    return out


# On the target: run the payload 10 times; each run's wall time and CPU time (user + system
# of the payload and every process it waited for: the sealed clone, the command), in s.
PAYLOAD_RUNS = """
import resource, subprocess, sys, time
for _ in range(10):
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    subprocess.run(["/usr/bin/python3", sys.argv[1]], stdout=subprocess.DEVNULL, check=True)
    t1, r1 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(t1 - t0, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
"""


def payloads(runner: Runner, lab: Lab, guest: str, pid: int) -> list:
    """(module, payload bytes, median wall seconds, median CPU seconds on the target) for both modules."""
    rows = []
    for module, args, pattern in ((MOD, "guest=%s cmd=true" % guest, "AnsiballZ_guest_enter_exec.py"),
                                  ("ansible.builtin.command", "nsenter --all --target %d true" % pid, "AnsiballZ_command.py")):
        lab.exec(1, ["rm", "-rf", KEEP_DIR])
        runner.adhoc(module, args, ANSIBLE_KEEP_REMOTE_FILES="1", ANSIBLE_PIPELINING="False")
        found = lab.exec(1, ["sh", "-c", "find %s -name %s | head -1" % (KEEP_DIR, pattern)]).stdout.strip()
        size = int(lab.exec(1, ["stat", "-c", "%s", found]).stdout)
        out = lab.exec(1, ["/usr/bin/python3", "-c", PAYLOAD_RUNS, found], timeout=1800).stdout.split()  # 10 runs: minutes under load
        times, cpu = [float(x) for x in out[0::2]], [float(x) for x in out[1::2]]
        rows.append((module, size, statistics.median(times), statistics.median(cpu)))
    lab.exec(1, ["rm", "-rf", KEEP_DIR])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--rounds", type=int, default=10, help="ad hoc rounds (each side once per round)")
    ap.add_argument("--many-rounds", type=int, default=3, help="rounds of the 100-guest comparison")
    ap.add_argument("--guests", type=int, default=100)
    opts = ap.parse_args()
    lab = Lab()
    brought_up = False
    if not lab.healthy(1):
        lab.up(1)
        brought_up = True
    names = ["%s%03d" % (PREFIX, i) for i in range(opts.guests)]
    tmp = Path(tempfile.mkdtemp(prefix="linuxns-bench-exec-"))
    runner = Runner(lab, tmp)
    try:
        runner.playbook([{CREATE: {"guests": names, "namespaces": ["mnt", "uts", "ipc", "net", "pid"]}}])
        pids = init_pids(lab, names)
        first = names[0]
        ours_args = "guest=%s cmd=true" % first
        base_args = "nsenter --all --target %d true" % pids[first]
        make_floor(tmp)
        sides = [("ours", MOD, ours_args), ("base", "ansible.builtin.command", base_args),
                 ("floor", FLOOR, "cmd='%s'" % base_args)]  # raw params are ansible.builtin's only
        for _side, module, args in sides:  # warm up: the ssh master and every code path
            runner.adhoc(module, args)
        times = {side: [] for side, _m, _a in sides}
        for r in range(opts.rounds):
            order = sides[r % 3:] + sides[:r % 3]  # each side first in turn
            if r % 2:
                order.reverse()
            for side, module, args in order:
                times[side].append(runner.adhoc(module, args))
        m_ours, m_base, m_floor = (statistics.median(times[k]) for k in ("ours", "base", "floor"))
        print("ad hoc, %d rounds (median wall time of the `ansible` process):" % opts.rounds)
        print("  guest_enter_exec cmd=true                  %.3f s" % m_ours)
        print("  command nsenter --all --target PID true    %.3f s" % m_base)
        print("  the same, command as a collection module   %.3f s  (%s)" % (m_floor, FLOOR))
        print("  ratio ours/baseline                        %.3f  (goal <= 1.05)" % (m_ours / m_base))
        print("  ratio floor/baseline                       %.3f  (being a collection module)" % (m_floor / m_base))
        print("  ratio ours/floor                           %.3f  (the module's own cost)" % (m_ours / m_floor))

        many_ours = [{"name": "ours", MOD: {"guests": names, "argv": ["true"]}}]
        many_base = [{"name": "base", "ansible.builtin.command": "nsenter --all --target {{ item }} true",
                      "loop": "{{ bench_pids }}"}]
        t_ours, t_base = [], []
        for r in range(opts.many_rounds):
            order = [("ours", many_ours, None), ("base", many_base, {"bench_pids": [pids[n] for n in names]})]
            if r % 2:
                order.reverse()
            for side, tasks, ev in order:
                (t_ours if side == "ours" else t_base).append(runner.playbook(tasks, ev)[0])
        mo, mb = statistics.median(t_ours), statistics.median(t_base)
        print("%d guests, %d rounds (median wall time of `ansible-playbook`):" % (len(names), opts.many_rounds))
        print("  one guest_enter_exec task, guests: list    %.3f s" % mo)
        print("  command nsenter loop over %d inits        %.3f s" % (len(names), mb))
        print("  ratio baseline/ours                        %.1fx  (goal >= 20x)" % (mb / mo))

        print("payload (AnsiballZ file, pipelining off), its wall and CPU time on the target (median of 10):")
        for module, size, secs, cpu in payloads(runner, lab, first, pids[first]):
            print("  %-32s %7d bytes  %.3f s  cpu %.3f s" % (module, size, secs, cpu))
    finally:
        try:
            runner.playbook([{CREATE: {"guests": names, "state": "absent", "stop_timeout": 2}}])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if brought_up:
                lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
