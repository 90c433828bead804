"""Bench: the linuxns.guests.guest connection vs. plain ssh to a host, side by side.

Part 1, ping: ``ping`` on a guest of lab host 1 through the guest connection vs. ``ping``
on lab host 1 itself over plain ssh, same ansible.cfg (the lab's: ControlPersist,
pipelining as LINUXNS_LAB_PIPELINING says), a warming ping first in both, then 9 timed
pings. Each round runs both sides, alternating which goes first; a side's time is the
median of its 9 timed tasks' start-to-result times on the controller
(bench/callback/linuxns_bench_time.py), and the whole ``ansible-playbook`` process time
for reference.

Part 2, a playbook of T tasks (default 20: command, copy, lineinfile, file, stat in turn)
over N guests (spread over lab hosts 1 and 2) vs. the same playbook over N lab hosts,
each with its own sshd (lab hosts 1..N; the lab is brought up to N hosts and put back as
it was). Time: the whole ``ansible-playbook`` run. ``--hosts 0`` skips it. A lab holds
at most 32 hosts (tests/lab/lab.py HOSTS_PER_LAB) and the host numbers of labs running
side by side must not overlap (a lab at base 100 has room for 20 hosts when no other
lab uses 101..120); N defaults to 20, and the bench says so when the lab cannot grow to N.

The guests have a busybox root with lab's /usr bound read-only (their Python) and are
removed at the end.

    LINUXNS_LAB=c LINUXNS_LAB_BASE=100 .venv/bin/python bench/bench_connection.py [--rounds 5] [--hosts 20] [--tasks 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from _common import VENV_BIN, Bench, median, run_tree, table
from lab import ssh_common_args

STATE = "/run/linuxns"
BASE = "/var/tmp/linuxns-bench-conn-%d" % os.getpid()


def make_root(path: str, busybox: str) -> None:
    for d in ("bin", "etc", "root", "usr", "proc", "dev", "tmp", "var/tmp"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    os.chmod(os.path.join(path, "var", "tmp"), 0o1777)
    os.link(busybox, os.path.join(path, "bin", "busybox"))
    for applet in subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split():
        if applet != "busybox":
            os.symlink("busybox", os.path.join(path, "bin", applet))
    for name, target in (("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "bin")):
        os.symlink(target, os.path.join(path, name))
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")


class ConnBench(Bench):
    def playbook(self, inventory: str, plays, forks: int = 20) -> tuple:
        pb = self.tmp / "play.json.yml"
        pb.write_text(json.dumps(plays))
        if self.record.exists():
            self.record.unlink()
        t0 = time.monotonic()
        proc = run_tree([str(VENV_BIN / "ansible-playbook"), "-i", inventory, "--forks", str(forks), str(pb)],
                        env=self.env(), capture_output=True, text=True, check=False)
        seconds = time.monotonic() - t0
        records = [json.loads(line) for line in self.record.read_text().splitlines()] if self.record.exists() else []
        if proc.returncode != 0:
            raise RuntimeError("ansible-playbook failed (rc=%d): %s%s" % (proc.returncode, proc.stdout[-3000:], proc.stderr[-2000:]))
        return seconds, records

    def lab_inventory(self) -> str:
        return str(self.lab.inventory_path)

    def guest_inventory(self, per_host: dict) -> str:
        host_vars = {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.lab.key_path),
            "ansible_ssh_common_args": " ".join(ssh_common_args(self.lab.state_dir)),
        }
        doc = {"plugin": "linuxns.guests.guests", "hostname_template": "{guest}",
               "guest_vars": {"ansible_python_interpreter": "/usr/bin/python3"}, "hosts": {}}
        for n, names in per_host.items():
            doc["hosts"]["lab%d" % n] = {"address": self.lab.host(n).address, "vars": host_vars, "guests": list(names)}
        path = os.path.join(BASE, "bench.guests.yml")
        with open(path, "w") as f:
            json.dump(doc, f)  # JSON is YAML
        return path


def make_guests(b: ConnBench, per_host: dict) -> None:
    busybox = os.path.join(BASE, "busybox")
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", busybox)
    specs = {}
    for n, names in per_host.items():
        specs["lab%d" % n] = []
        for g in names:
            root = os.path.join(BASE, "roots", g)
            make_root(root, busybox)
            specs["lab%d" % n].append({"name": g, "root": root})
    b.playbook(b.lab_inventory(), [{"hosts": ",".join(specs), "gather_facts": False, "tasks": [
        {"name": "guests", "linuxns.guests.namespace_create": {"guests": "{{ specs[inventory_hostname] }}"}, "vars": {"specs": specs}},
        {"name": "python",
         "linuxns.guests.namespace_mount": {"guest": "{{ item.name }}", "path": "/usr", "src": "/usr", "fstype": "bind",
                                            "opts": "ro", "table_dir": BASE + "/tables"},
         "loop": "{{ specs[inventory_hostname] }}", "vars": {"specs": specs}},
    ]}])


def remove_guests(b: ConnBench, per_host: dict) -> None:
    hosts = ",".join("lab%d" % n for n in per_host)
    names = {"lab%d" % n: list(v) for n, v in per_host.items()}
    b.playbook(b.lab_inventory(), [{"hosts": hosts, "gather_facts": False, "tasks": [
        {"linuxns.guests.namespace_create": {"guests": "{{ names[inventory_hostname] }}", "state": "absent", "stop_timeout": 2},
         "vars": {"names": names}}]}])


PINGS = 9  # timed pings per playbook run: their median is the round's figure


def ping_round(b: ConnBench, inventory: str, host: str) -> tuple:
    tasks = [{"name": "warm", "ansible.builtin.ping": {}}] + [{"name": "timed", "ansible.builtin.ping": {}} for _ping in range(PINGS)]
    seconds, records = b.playbook(inventory, [{"hosts": host, "gather_facts": False, "tasks": tasks}])
    timed = [r["seconds"] for r in records if r["task"] == "timed" and r["status"] == "ok"]
    if len(timed) != PINGS:
        raise RuntimeError("ping on %s: %d of %d timed results" % (host, len(timed), PINGS))
    return median(timed), seconds


def tasks_play(hosts: str, n: int) -> list:
    kinds = [
        {"ansible.builtin.command": "cat /etc/passwd"},
        {"ansible.builtin.copy": {"dest": "/tmp/bench-{{ idx }}", "content": "{{ inventory_hostname }} {{ idx }}\n"}},
        {"ansible.builtin.lineinfile": {"path": "/tmp/bench-lines", "line": "line {{ idx }}", "create": True}},
        {"ansible.builtin.file": {"path": "/tmp/bench-dir-{{ idx }}", "state": "directory"}},
        {"ansible.builtin.stat": {"path": "/etc/passwd"}},
    ]
    tasks = []
    for i in range(n):
        t = dict(kinds[i % len(kinds)])
        t["name"] = "task %d" % i
        t["vars"] = {"idx": i}
        tasks.append(t)
    tasks.append({"name": "clean", "ansible.builtin.shell": "rm -rf /tmp/bench-*"})
    return [{"hosts": hosts, "gather_facts": False, "tasks": tasks}]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--hosts", type=int, default=20, help="guests and lab hosts of part 2 (0: skip part 2)")
    ap.add_argument("--tasks", type=int, default=20)
    args = ap.parse_args()
    n_lab = max(2, args.hosts)
    with ConnBench() as b:
        up_before = [h.n for h in b.lab.hosts if b.lab.healthy(h.n)]
        try:
            b.lab.up(n_lab)
        except Exception as exc:
            print("cannot bring the lab up to %d hosts: %s" % (n_lab, exc))
            print("run with a smaller --hosts (or another LINUXNS_LAB_BASE)")
            if up_before and len(up_before) < n_lab:
                b.lab.up(len(up_before))
            return 2
        os.makedirs(BASE, exist_ok=True)
        half = max(1, args.hosts // 2)
        per_host = {1: ["bg%02d" % i for i in range(1, half + 1)], 2: ["bg%02d" % i for i in range(half + 1, max(args.hosts, 1) + 1)]}
        if not per_host[2]:
            del per_host[2]
        try:
            make_guests(b, per_host)
            inv = b.guest_inventory(per_host)
            rows, ratios = [], []
            for r in range(args.rounds):
                order = [("guest", inv, "bg01"), ("host", b.lab_inventory(), "lab1")]
                if r % 2:
                    order.reverse()
                got = {}
                for side, inventory, host in order:
                    got[side] = ping_round(b, inventory, host)
                ratios.append(got["guest"][0] / got["host"][0])
                rows.append([r + 1, "%.3f" % got["host"][0], "%.3f" % got["guest"][0], "%.2f" % ratios[-1],
                             "%.2f" % got["host"][1], "%.2f" % got["guest"][1]])
            print("ping: one task, lab host over ssh vs. guest over linuxns.guests.guest (pipelining %s)" % b.lab.pipelining)
            print(table(rows, ["round", "host ping s", "guest ping s", "ratio", "host process s", "guest process s"]))
            print("median ratio guest/host (task time): %.2f  (goal <= 1.2)" % median(ratios))
            if args.hosts:
                rows = []
                play_ratios = []
                for r in range(max(1, args.rounds // 2)):
                    guests = ",".join(g for names in per_host.values() for g in names)
                    labs = ",".join("lab%d" % i for i in range(1, args.hosts + 1))
                    order = [("guest", inv, guests), ("host", b.lab_inventory(), labs)]
                    if r % 2:
                        order.reverse()
                    got = {side: b.playbook(inventory, tasks_play(hosts, args.tasks))[0] for side, inventory, hosts in order}
                    play_ratios.append(got["guest"] / got["host"])
                    rows.append([r + 1, "%.1f" % got["host"], "%.1f" % got["guest"], "%.2f" % play_ratios[-1]])
                print()
                print("playbook: %d tasks over %d lab hosts (own sshd each) vs. %d guests on %d lab hosts, forks 20"
                      % (args.tasks, args.hosts, args.hosts, len(per_host)))
                print(table(rows, ["round", "lab hosts s", "guests s", "ratio"]))
                print("median ratio guests/lab hosts: %.2f" % median(play_ratios))
        finally:
            remove_guests(b, per_host)
            if up_before and len(up_before) < n_lab:
                b.lab.up(len(up_before))  # back to the hosts that were up (a lab that was down goes down in Bench.__exit__)
            shutil.rmtree(BASE, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
