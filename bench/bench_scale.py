"""Bench: many guests on one host - N guests with a veth and an address each, in one task per module.

On lab host 1 of the lab selected by LINUXNS_LAB / LINUXNS_LAB_BASE (a lab that is not up is
brought up with one host and taken down at the end), for each size N in turn (default
100,1000,3000,10000), from an empty lab host:

  create         one `linuxns.guests.namespace_create` task, `guests:` list of N names
                 (default namespaces mnt,uts,ipc,net,pid, the default reaper), table_dir in the
                 lab host's private /run
  link           one `linuxns.guests.netns_link` task, `links:` list of N entries: per guest a
                 veth eth0 in the guest, its peer vsNNNNN on the host (no bridge: a Linux
                 bridge holds at most 1024 ports), one address on eth0 from 198.19.128.0/17
  rerun create   the create task again (changed=false)
  rerun link     the link task again (changed=false)
  teardown       one namespace_create task, state=absent, purge=true (a guest's veth goes with
                 its net namespace)

Times are each task's start-to-result wall time on the controller (bench/callback; a warming
ping first, so the ssh master is warm). Idle memory: /proc/meminfo (the kernel is shared by the
machine) read after a settle pause before the create and after the link; the drop of
MemAvailable and the growth of the kernel's objects (Slab + KernelStack + PageTables + Percpu)
per guest, plus the PSS of the guests' inits. The machine is shared: the load average is
printed with every row.

Safety: a size whose projected memory (the per-guest cost measured at the largest size run so
far, times 1.5; a small size's cost is mostly fixed cost spread over few guests) would take
MemAvailable below --floor (default 4 GiB) is skipped; a watchdog reads MemAvailable every second
during a task and, below the floor, kills the module's process in the lab host (by pid) and
tears down. Teardown runs always (also on Ctrl-C, SIGTERM or a failure), and the lab
host is checked to hold no pin, reaper, netns, veth or guest cgroup afterwards.

    LINUXNS_LAB=scale3 LINUXNS_LAB_BASE=180 .venv/bin/python bench/bench_scale.py [--sizes 100,1000,3000,10000]

`--guest-options JSON` adds namespace_create options to every guest (for example
'{"privileged": true}': no confinement, to compare against the default confined guest);
`--link-options JSON` adds netns_link options to every link (for example
'{"peer": {"ipv6": false}}': no IPv6 on the host's ends).

`--cgroup-shards K` gives guest i the cgroup_parent `linuxns-lab-LAB/lab1/gNNN` (NNN = i % K), so
that the guests' cgroups are K folders of siblings instead of one (the teardown removes the K
folders); on a cgroup v1 host the kernel walks a cgroup's siblings when it makes or removes one
in the cpuset hierarchy (docs/performance.md, "Guests' cgroups in folders of a few hundred").

`--task-floor` (with `--brief`) also runs each brief rerun's task through a floor module of the same
name in a throwaway collection (benchfloor.guests): ours' options parsed by AnsibleModule from
the same module_utils (so the same payload), then `changed: false` at once - what Ansible and
the argument parsing cost a task of N entries before any of the module's own work.

`--profile DIR` runs each phase once more per size, in-process in the lab host under cProfile
(the module's main() with the same arguments; the host's Python and pyroute2, ansible-core from the venv), and writes DIR/SIZE-PHASE.prof
plus the top functions by cumulative time; for finding per-guest O(n) steps, not for timing.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

from _common import REPO, VENV_BIN, Bench, kernel, meminfo, table
from lab import cgroup_parent_name, run_tree

CREATE = "linuxns.guests.namespace_create"
LINK = "linuxns.guests.netns_link"
FLOOR_TASKS = {CREATE: "create_task", LINK: "link_task"}
FLOOR_MODULE = '''#!/usr/bin/python
# bench/bench_scale.py --task-floor: %(module)s's options, parsed as ours parses them, and nothing done.
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxns.guests.plugins.module_utils import code_cache

if __name__ == "__main__":
    code_cache.cache_code()

from ansible_collections.linuxns.guests.plugins.module_utils import %(task)s as task
from ansible_collections.linuxns.guests.plugins.module_utils.common import common_args, new_module


def main():
    module = new_module(AnsibleModule, argument_spec=common_args(**task.OPTIONS), supports_check_mode=True, **task.RULES)
    module.exit_json(changed=False)


if __name__ == "__main__":
    main()
'''


def floor_name(module: str) -> str:
    """The floor module standing for MODULE (bench --task-floor)."""
    return "benchfloor.guests." + module.rsplit(".", 1)[1]


def make_floor(folder: Path) -> str:
    """The throwaway collection benchfloor.guests under FOLDER: its collections path."""
    mods = folder / "ansible_collections" / "benchfloor" / "guests" / "plugins" / "modules"
    mods.mkdir(parents=True)
    (mods.parent.parent / "galaxy.yml").write_text("namespace: benchfloor\nname: guests\nversion: 0.0.1\n")
    for module, task in FLOOR_TASKS.items():
        (mods / (module.rsplit(".", 1)[1] + ".py")).write_text(FLOOR_MODULE % {"module": module, "task": task})
    return str(folder)


PREFIX = "sc"
TABLE_DIR = "/run/linuxns-bench-scale-table"
GiB = 1024 * 1024  # in KiB
SITE = str(next((REPO / ".venv" / "lib").resolve().glob("python3*/site-packages")))  # ansible-core for --profile

COUNT = r"""
import glob, json, os
out = {"pins": 0, "reapers": 0, "guests": 0, "netns": 0, "veths": 0, "cgroups": 0, "mounts": 0, "pss": 0}
with open("/proc/self/mountinfo") as f:
    for line in f:
        out["mounts"] += 1
        mp = line.split()[4]
        if mp.startswith("/run/linuxns/guests/") or mp.startswith("/run/netns/"):
            out["pins"] += 1
for p in os.listdir("/proc"):
    if p.isdigit() and p != "1":
        try:
            if "catatonit" in os.readlink("/proc/%s/exe" % p):
                out["reapers"] += 1
        except OSError:
            pass
out["guests"] = len(os.listdir("/run/linuxns/guests")) if os.path.isdir("/run/linuxns/guests") else 0
out["netns"] = len(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else 0
with open("/proc/net/dev") as f:  # this network namespace's (the lab host's /sys is the machine's)
    names = [line.split(":")[0].strip() for line in f if ":" in line]
out["veths"] = sum(1 for n in names if n.startswith("vs") and n[2:].isdigit())
for path in glob.glob("/run/linuxns/guests/*/meta.json"):
    try:
        with open(path) as f:
            meta = json.load(f)
        for d in (meta.get("cgroup") or {}).get("paths", {}).values():
            out["cgroups"] += os.path.isdir(d)
        with open("/proc/%d/smaps_rollup" % meta["init_pid"]) as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["pss"] += int(line.split()[1])
    except (OSError, ValueError, KeyError, TypeError):
        pass
print(json.dumps(out))
"""

# Run inside the lab host by the host's Python (its pyroute2, as Ansible runs the modules there),
# with ansible-core from the venv after it: one module's main() under cProfile.
PROFILE = r"""
import cProfile, io, json, pstats, sys
sys.path.insert(0, sys.argv[1])
sys.path.append(sys.argv[4])
from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes
module, out = sys.argv[2], sys.argv[3]
args = json.load(sys.stdin)
args.update({"_ansible_check_mode": False, "_ansible_diff": False})
basic._ANSIBLE_ARGS = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
basic._ANSIBLE_PROFILE = "legacy"
mod = __import__("ansible_collections.linuxns.guests.plugins.modules." + module, fromlist=["main"])
import os
real_stdout = os.dup(1)
devnull = os.open("/dev/null", os.O_WRONLY)
os.dup2(devnull, 1)
prof = cProfile.Profile()
try:
    prof.runcall(mod.main)
except SystemExit:
    pass
finally:
    os.dup2(real_stdout, 1)
prof.dump_stats(out)
s = io.StringIO()
pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(45)
print(s.getvalue())
"""


def guest(i: int) -> str:
    return "%s%05d" % (PREFIX, i)


def address(i: int) -> str:
    # 198.19.128.0/17 (inside 198.18.0.0/15): 250 addresses per /24, from .2; up to 31,750 guests
    return "198.19.%d.%d/17" % (128 + i // 250, i % 250 + 2)


GUEST_OPTIONS = {}  # --guest-options: merged into every guest entry of the create
CGROUP_SHARDS = {"base": None, "count": 0}  # --cgroup-shards: guest i's cgroup_parent is BASE/gNNN, NNN = i % count
LINK_OPTIONS = {}  # --link-options: merged into every link entry (its "peer" key by key)
BRIEF = {"return_unchanged": False}  # --brief: each no-change rerun also with this, right after the full one


def create_args(n: int, state: str = "present") -> dict:
    extra = GUEST_OPTIONS if state == "present" else {}
    args = {"guests": [dict(extra, name=guest(i)) for i in range(n)], "table_dir": TABLE_DIR, "state": state}
    if state == "present" and CGROUP_SHARDS["count"]:
        for i, entry in enumerate(args["guests"]):
            entry["cgroup_parent"] = shard(i)
    if state == "absent":
        args["purge"] = True
    return args


def shard(i: int) -> str:
    """Guest i's cgroup_parent with --cgroup-shards: one of COUNT folders below the lab host's."""
    return "%s/g%03d" % (CGROUP_SHARDS["base"], i % CGROUP_SHARDS["count"])


# Run inside the lab host (its Python): remove the --cgroup-shards folders, empty once the guests
# are gone (namespace_create makes a missing cgroup_parent and leaves it, as any parent).
SHARDS_RM = r"""
import glob, os, sys
sys.path.insert(0, sys.argv[1])
from lab import own_cgroup_dirs
left = []
for d in own_cgroup_dirs(sys.argv[2]).values():
    for shard in glob.glob(os.path.join(d, "g[0-9][0-9][0-9]")):
        try:
            os.rmdir(shard)
        except OSError as exc:
            left.append("%s: %s" % (shard, exc.strerror))
if left:
    sys.exit("cgroup shards left: " + "; ".join(left))
"""


def link_args(n: int) -> dict:
    extra = {k: v for k, v in LINK_OPTIONS.items() if k != "peer"}
    peer = LINK_OPTIONS.get("peer") or {}
    return {"ifname": "eth0", "kind": "veth",
            "links": [dict(extra, guest=guest(i), addresses=[address(i)], peer=dict(peer, ifname="vs%05d" % i)) for i in range(n)]}


def load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


class Scale(Bench):
    """Bench plus a task runner with a memory watchdog."""

    def __init__(self, floor_kib: int, keep_lab: bool = False, collections=None):
        super().__init__(keep_lab=keep_lab)
        self.floor = floor_kib
        self.collections = collections or str(REPO / "build")  # another checkout's build/: its code, same lab
        self.floor_path = None  # --task-floor: make_floor's collections path
        self.low_memory = False

    def env(self) -> dict:
        env = super().env()
        env["ANSIBLE_COLLECTIONS_PATH"] = self.collections + (":" + self.floor_path if self.floor_path else "")
        return env

    def _module_pids(self) -> list:
        """Pids of Ansible module processes running in lab host 1 (ours: only this bench uses it)."""
        script = ("import os\nfor p in os.listdir('/proc'):\n if p.isdigit():\n  try:\n"
                  "   c=open('/proc/%s/cmdline'%p,'rb').read()\n  except OSError:\n   continue\n"
                  "  if b'AnsiballZ_' in c or b'ansible_collections.linuxns' in c:\n   print(p)\n")
        out = self.exec(["python3", "-c", script], check=False).stdout
        return [int(p) for p in out.split()]

    def _watch(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            if meminfo()["MemAvailable"] < self.floor:
                self.low_memory = True
                for pid in self._module_pids():
                    self.exec(["kill", "-KILL", str(pid)], check=False)
                return

    def run(self, module: str, args: dict, timeout: float = 1800) -> dict:
        """One timed task (as Bench.task), watched: MemAvailable below the floor kills it."""
        vars_file = self.tmp / "args.json"
        vars_file.write_text(json.dumps({"bench_args": args}))
        pb = self.tmp / "play.yml"
        pb.write_text(json.dumps([{"hosts": self.host.name, "gather_facts": False, "tasks": [
            {"name": "warm the connection", "ansible.builtin.ping": {}},
            {"name": "timed", module: "{{ bench_args }}"}]}]))
        with contextlib.suppress(FileNotFoundError):
            self.record.unlink()
        stop = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(stop,), daemon=True)
        watcher.start()
        t0 = time.monotonic()
        try:  # interrupted or over the timeout: ansible's forked workers are killed too (lab.run_tree)
            proc = run_tree([str(VENV_BIN / "ansible-playbook"), "-i", str(self.lab.inventory_path), "-e", "@" + str(vars_file), str(pb)],
                            env=self.env(), capture_output=True, text=True, timeout=timeout)
        finally:
            stop.set()
            watcher.join()
        out, err = proc.stdout, proc.stderr
        process = time.monotonic() - t0
        if self.low_memory:
            raise MemoryError("MemAvailable fell below %d MiB during %s: stopped" % (self.floor // 1024, module))
        records = [json.loads(line) for line in self.record.read_text().splitlines()] if self.record.exists() else []
        timed = [r for r in records if r["task"] == "timed"]
        if proc.returncode != 0 or not timed or timed[0]["status"] != "ok":
            raise RuntimeError("ansible-playbook failed (rc=%s): %s%s" % (proc.returncode, out[-3000:], err[-2000:]))
        rec = dict(timed[0])
        rec["process"] = process
        rec["load"] = load()
        return rec

    def count(self) -> dict:
        return json.loads(self.exec(["python3", "-c", COUNT]).stdout)

    def profile(self, module: str, args: dict, out: Path) -> str:
        """The module's main() once in the lab host under cProfile (the venv's Python)."""
        inside = "/run/linuxns-bench-scale.prof"
        parent = "LINUXNS_CGROUP_PARENT=" + cgroup_parent_name(self.lab.name, self.host.name)  # as the lab's sshd sets it
        proc = self.exec(["env", parent, "/usr/bin/python3", "-c", PROFILE, self.collections, module, inside, SITE],
                         input=json.dumps(args), timeout=1800, check=False)
        if proc.returncode != 0:
            raise RuntimeError("profile of %s failed: %s" % (module, proc.stderr[-3000:]))
        data = self.exec(["base64", "-w0", inside]).stdout
        self.exec(["rm", "-f", inside])

        out.write_bytes(base64.b64decode(data))
        return proc.stdout


def teardown(s: Scale, n: int) -> dict:
    """Remove the N guests (one task), then anything a failed run left: returns the task's record."""
    rec = None
    try:
        rec = s.run(CREATE, create_args(n, "absent"))
    except (RuntimeError, MemoryError) as exc:
        print("teardown task: %s" % exc, file=sys.stderr)
        s.low_memory = False
        with contextlib.suppress(RuntimeError, MemoryError):
            rec = s.run(CREATE, create_args(n, "absent"))
    # veths of guests that were never made (a failed link step left host ends): none expected
    s.exec(["sh", "-c", "for l in $(sed -n 's/^ *\\(vs[0-9]*\\):.*/\\1/p' /proc/net/dev); do ip link del $l; done; rm -rf %s; true" % TABLE_DIR],
           check=False)
    if CGROUP_SHARDS["count"]:
        proc = s.exec(["python3", "-c", SHARDS_RM, str(REPO / "tests" / "lab"), CGROUP_SHARDS["base"]], check=False)
        if proc.returncode != 0:
            print("teardown: %s" % proc.stderr.strip(), file=sys.stderr)
    return rec


def settle(seconds: float) -> dict:
    time.sleep(seconds)
    return meminfo()


def one_size(s: Scale, n: int, args) -> dict:
    before = settle(args.settle)
    load0 = load()
    made = False
    fig = {"n": n}
    try:
        made = True
        rec = s.run(CREATE, create_args(n))
        if not rec["changed"] or rec["count"] != n:
            raise RuntimeError("create %d: changed=%s with %d results" % (n, rec["changed"], rec["count"]))
        fig["create"], fig["load_create"] = rec["seconds"], rec["load"]
        print("n=%d create %.1f s (load %s)" % (n, rec["seconds"], rec["load"]), file=sys.stderr, flush=True)
        rec = s.run(LINK, link_args(n))
        if not rec["changed"]:
            raise RuntimeError("link %d: not changed" % n)
        fig["link"], fig["load_link"] = rec["seconds"], rec["load"]
        print("n=%d link %.1f s (load %s)" % (n, rec["seconds"], rec["load"]), file=sys.stderr, flush=True)
        after = settle(args.settle)
        got = s.count()
        want = {"guests": n, "netns": n, "veths": n, "reapers": n}
        if any(got[k] != v for k, v in want.items()):
            raise RuntimeError("after create+link of %d: found %s" % (n, got))
        fig["mounts"] = got["mounts"]
        fig["avail"] = (before["MemAvailable"] - after["MemAvailable"]) / n
        fig["kernel"] = (kernel(after) - kernel(before)) / n
        fig["slab"] = (after["Slab"] - before["Slab"]) / n
        fig["pss"] = got["pss"] / n
        reruns = [("rerun create", CREATE, create_args(n)), ("rerun link", LINK, link_args(n))]
        if args.brief:  # side by side: each full rerun, then the same task with return_unchanged: false
            reruns = [r for phase, module, margs in reruns for r in ((phase, module, margs), (phase + " brief", module, dict(margs, **BRIEF)))]
        for phase, module, margs in reruns:
            rec = s.run(module, margs)
            if rec["changed"] or (phase.endswith("brief") and rec["unchanged"] != n):
                raise RuntimeError("%s %d: reported changed (or not %d unchanged: %s)" % (phase, n, n, rec["unchanged"]))
            fig[phase], fig["load_" + phase] = rec["seconds"], rec["load"]
            print("n=%d %s %.1f s (load %s)" % (n, phase, rec["seconds"], rec["load"]), file=sys.stderr, flush=True)
            if args.task_floor and phase.endswith("brief"):  # the same task through the floor module, right after it
                rec = s.run(floor_name(module), margs)
                if rec["changed"]:
                    raise RuntimeError("%s %d: the floor module reported changed" % (phase, n))
                fig[phase + " floor"] = rec["seconds"]
                print("n=%d %s floor %.1f s" % (n, phase, rec["seconds"]), file=sys.stderr, flush=True)
        if args.profile:
            prof_dir = Path(args.profile)
            prof_dir.mkdir(parents=True, exist_ok=True)
            for phase, module, margs in (("rerun-create", "namespace_create", create_args(n)), ("rerun-link", "netns_link", link_args(n))):
                text = s.profile(module, margs, prof_dir / ("%d-%s.prof" % (n, phase)))
                (prof_dir / ("%d-%s.txt" % (n, phase))).write_text(text)
    finally:
        if made and args.keep_guests:
            print("n=%d kept: the lab and its %d guests stay (bench/module_main.py); remove them with "
                  "tests/lab/lab.py down" % (n, n), file=sys.stderr, flush=True)
        elif made:
            rec = teardown(s, n)
            if rec is not None:
                fig["teardown"], fig["load_teardown"] = rec["seconds"], rec["load"]
                print("n=%d teardown %.1f s (load %s)" % (n, rec["seconds"], rec["load"]), file=sys.stderr, flush=True)
    if args.keep_guests:
        return fig
    left = s.count()
    if any(left[k] for k in ("pins", "reapers", "guests", "netns", "veths")):
        raise RuntimeError("after the teardown of %d the lab host still holds %s" % (n, left))
    if args.profile and "teardown" in fig:
        # profile a create and a teardown in-process too (after the timed round)
        prof_dir = Path(args.profile)
        try:
            for phase, module, margs in (("create", "namespace_create", create_args(n)), ("link", "netns_link", link_args(n)),
                                         ("teardown", "namespace_create", create_args(n, "absent"))):
                text = s.profile(module, margs, prof_dir / ("%d-%s.prof" % (n, phase)))
                (prof_dir / ("%d-%s.txt" % (n, phase))).write_text(text)
        finally:
            teardown(s, n)
    fig["load0"] = load0
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--sizes", default="100,1000,3000,10000")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds to wait before each meminfo reading")
    ap.add_argument("--floor", type=float, default=4.0, help="GiB of MemAvailable never to go below")
    ap.add_argument("--profile", metavar="DIR", help="also profile each phase in-process (cProfile) into DIR")
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("--collections", metavar="DIR", help="the build/ folder of another checkout to run its code (default: this one's)")
    ap.add_argument("--keep-lab", action="store_true")
    ap.add_argument("--keep-guests", action="store_true",
                    help="leave the lab and the last size's guests up, no teardown (for bench/module_main.py); one size only")
    ap.add_argument("--guest-options", metavar="JSON", default="{}",
                    help='options of namespace_create for every guest, e.g. \'{"privileged": true}\' (confinement off)')
    ap.add_argument("--link-options", metavar="JSON", default="{}",
                    help='options of netns_link for every link, e.g. \'{"peer": {"ipv6": false}}\' (no IPv6 on the host\'s ends)')
    ap.add_argument("--brief", action="store_true",
                    help="also run each no-change rerun with return_unchanged: false, right after the full one")
    ap.add_argument("--cgroup-shards", type=int, default=0, metavar="K",
                    help="give guest i the cgroup_parent LAB_PARENT/gNNN, NNN = i %% K: K folders of siblings instead of one")
    ap.add_argument("--task-floor", action="store_true",
                    help="with --brief: also run each brief rerun's task through a floor module (options parsed, nothing done)")
    args = ap.parse_args(argv)
    if args.task_floor and not args.brief:
        raise SystemExit("--task-floor goes with --brief")
    if args.keep_guests:
        if "," in args.sizes or args.profile:
            raise SystemExit("--keep-guests takes one size and no --profile")
        args.keep_lab = True
    GUEST_OPTIONS.update(json.loads(args.guest_options))
    LINK_OPTIONS.update(json.loads(args.link_options))
    sizes = [int(x) for x in args.sizes.split(",")]
    if args.profile:  # the profile runs in the lab host, which has a /tmp of its own
        hidden = [p for p in (args.collections or str(REPO / "build"), SITE) if os.path.realpath(p).startswith("/tmp/")]
        if hidden:
            raise SystemExit("--profile: %s is under /tmp, which a lab host does not see (its /tmp is its own): "
                             "profile from a checkout outside /tmp" % ", ".join(hidden))
    figures = []
    per_guest, largest = 0.0, 0  # KiB per guest at the largest size run so far
    with Scale(int(args.floor * GiB), keep_lab=args.keep_lab, collections=args.collections) as s:
        got = s.count()
        if any(got[k] for k in ("pins", "reapers", "guests", "netns", "veths")):
            raise SystemExit("lab host 1 is not empty: %s" % got)
        if args.task_floor:
            s.floor_path = make_floor(s.tmp / "floor")
        if args.cgroup_shards:
            CGROUP_SHARDS.update(base=cgroup_parent_name(s.lab.name, s.host.name), count=args.cgroup_shards)
        for n in sizes:
            avail = meminfo()["MemAvailable"]
            need = n * max(per_guest, 100.0) * 1.5
            if avail - need < s.floor:
                print("n=%d skipped: projected %.1f GiB of %.1f GiB available would go below the floor of %.1f GiB"
                      % (n, need / GiB, avail / GiB, args.floor), file=sys.stderr)
                break
            try:
                fig = one_size(s, n, args)
            except MemoryError as exc:
                print("n=%d: %s" % (n, exc), file=sys.stderr)
                break
            figures.append(fig)
            if n >= largest:
                largest, per_guest = n, max(fig.get("avail", 0), fig.get("kernel", 0) + fig.get("pss", 0))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    phases = ("create", "link", "rerun create", "rerun link", "teardown")
    rows = [[f["n"]] + ["%.1f" % f[p] if p in f else "-" for p in phases]
            + ["%.1f" % (f["rerun create"] + f["rerun link"]) if "rerun link" in f else "-"]
            + ["%.0f" % f.get("avail", float("nan")), "%.0f" % f.get("kernel", float("nan")), "%.0f" % f.get("pss", float("nan")),
               str(f.get("mounts", "-")), "/".join(str(f.get("load_" + p, "-")) for p in phases)]
            for f in figures]
    print("seconds per phase, one task each (lab host %s, code %s); KiB per idle guest; load average (1 min) at each phase's end"
          % (s.host.name, s.collections))
    print(table(rows, ("guests", "create", "link", "rerun create", "rerun link", "teardown", "rerun both",
                       "MemAvail drop", "kernel objs", "init PSS", "mounts", "load c/l/rc/rl/t")))
    rows = [[f["n"]] + ["%.2f" % (1000 * f[p] / f["n"]) if p in f else "-" for p in phases] for f in figures]
    print("ms per guest")
    print(table(rows, ("guests",) + phases))
    if args.brief:
        rows = [[f["n"]] + ["%.1f / %.1f" % (f[p], f[p + " brief"]) if p + " brief" in f else "-" for p in ("rerun create", "rerun link")]
                + ["%.1f / %.1f" % (f["rerun create"] + f["rerun link"], f["rerun create brief"] + f["rerun link brief"])
                   if "rerun link brief" in f else "-"]
                + ["%.2f" % ((f["rerun create brief"] + f["rerun link brief"]) / (f["rerun create"] + f["rerun link"]))
                   if "rerun link brief" in f else "-"] for f in figures]
        print("no-change reruns, seconds: every result / return_unchanged: false (run right after it)")
        print(table(rows, ("guests", "rerun create", "rerun link", "both", "ratio brief/full")))
    if args.task_floor:
        rows = [[f["n"]] + ["%.2f / %.2f" % (f[p + " brief"], f[p + " brief floor"]) if p + " brief floor" in f else "-"
                            for p in ("rerun create", "rerun link")]
                + ["%.2f / %.2f" % tuple(sum(f[p + " brief" + x] for p in ("rerun create", "rerun link")) for x in ("", " floor"))
                   if "rerun link brief floor" in f else "-"] for f in figures]
        print("brief no-change reruns against the floor (the same task: options parsed, nothing done), seconds: ours / floor")
        print(table(rows, ("guests", "rerun create", "rerun link", "both")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
