"""Every guest in its own cgroup (issue 14), over real ssh against a lab host.

What happened is checked from outside the guests, from this process: /proc/PID/cgroup of
the guests' processes and the guest cgroups' own files (the lab host shares this machine's
/sys/fs/cgroup; its sshd runs in this test's cgroup and sets LINUXNS_CGROUP_PARENT, so the
guests' cgroups are below ours: ``linuxns-lab-LAB/lab1/NAME`` in every hierarchy).

One module-scoped set of guests on lab1, made in one task:
- ``cga``: a busybox root with a private cgroup namespace and ``pids: 64`` (the fork bomb),
- ``cgb``: a busybox root without limits (placement, limits changed in place, the bystander),
- ``cgm``: a busybox root with ``memory: 64M`` (the memory hog).
"""

from __future__ import annotations

import os
import random
import shutil

import pytest
from harness import busybox_tree
from lab import cgroup_parent_name, own_cgroup_dirs

pytestmark = pytest.mark.integration

CREATE = "linuxns.guests.namespace_create"
INFO = "linuxns.guests.namespace_info"
EXEC = "linuxns.guests.guest_enter_exec"
GUESTS = ("cga", "cgb", "cgm")
BAD = ("cgbad1", "cgbad2", "cgbad3", "cgbad4", "cgbad5", "cgbad6", "cgcrash")
MARK = random.randint(100000, 999999)  # sleep MARK+N: this run's processes, found in /proc
# a background shell that holds 4 MB in a variable while it sleeps
HOLD = "sh -c 'x=$(head -c 4000000 /dev/zero | tr \"\\0\" a); sleep %d; test -n \"$x\"' </dev/null >/dev/null 2>&1 &"


def expected_dirs(lab, name: str) -> set:
    """The folders of guest NAME's cgroup on lab1: linuxns-lab-LAB/lab1/NAME below our cgroup, every hierarchy."""
    return set(own_cgroup_dirs("%s/%s" % (cgroup_parent_name(lab.name, "lab1"), name)).values())


def dirs_of(pid: int) -> set:
    """The cgroup folders process PID is in, one per hierarchy (from /proc/PID/cgroup)."""
    return set(own_cgroup_dirs("", self_cgroup="/proc/%d/cgroup" % pid).values())


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def by_key(paths: dict, controller: str) -> str:
    """The folder of the hierarchy that carries CONTROLLER (a v1 key may list several)."""
    return next(d for k, d in paths.items() if controller in k.split(","))


def pids_of(argv_text: str) -> list:
    """Pids (this machine's) of the processes whose command line is ARGV_TEXT."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if cmd == argv_text:
                out.append(int(entry))
    return out


def procs(paths: dict) -> set:
    return {int(p) for p in read(os.path.join(by_key(paths, "pids"), "cgroup.procs")).split()}


@pytest.fixture(scope="module")
def root_dir(lab):
    base = "/var/tmp/linuxns-it-cg-%d" % os.getpid()
    root = os.path.join(base, "root")
    busybox_tree(root, dirs=("etc", "proc", "dev", "tmp", "sys"), passwd=True)
    yield root
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def guests(lab, ansible, root_dir):
    """cga, cgb and cgm on lab1 (one task); all removed at the end, with the bad inputs' names."""
    try:
        run = ansible.playbook([{CREATE: {"root": root_dir, "guests": [
            {"name": "cga", "namespaces": ["mnt", "uts", "ipc", "net", "pid", "cgroup"], "limits": {"pids": 64}},
            {"name": "cgb"},
            {"name": "cgm", "limits": {"memory": "64M", "pids": 64}},
        ]}}])
        yield {g["name"]: g["guest"] for g in run.last["guests"]}
    finally:
        ansible.playbook([{CREATE: {"guests": list(GUESTS + BAD), "state": "absent", "stop_timeout": 1}}])


def test_every_guest_gets_its_cgroup_below_the_parent(lab, guests):
    for name in GUESTS:
        paths = guests[name]["cgroup"]["paths"]
        assert set(paths.values()) == expected_dirs(lab, name), name
        assert all(os.path.isdir(d) for d in paths.values()), name
    limits = guests["cga"]["cgroup"]["paths"]
    assert read(os.path.join(by_key(limits, "pids"), "pids.max")) == "64"  # set at creation
    assert read(os.path.join(by_key(guests["cgm"]["cgroup"]["paths"], "memory"), "memory.limit_in_bytes")) == str(64 << 20)


def test_every_kind_of_guest_process_lands_in_the_guest_cgroup(lab, guests, ansible_playbook):
    play = [
        {"name": "inside cga", EXEC: {"guest": "cga", "argv": ["cat", "/proc/self/cgroup"]}},
        {"name": "exec in cgb", EXEC: {"guest": "cgb", "argv": ["sh", "-c", "sleep %d </dev/null >/dev/null 2>&1 &" % (MARK + 1)]}},
        {"name": "connection to cgb", "ansible.builtin.raw": "sleep %d </dev/null >/dev/null 2>&1 &" % (MARK + 2),
         "vars": {"ansible_connection": "linuxns.guests.guest", "linuxns_guest": "cgb"}},
    ]
    run = ansible_playbook(play)
    # cga has a private cgroup namespace, unshared after its cgroup was joined: it sees its cgroup as /.
    lines = run.task("inside cga")["stdout_lines"]
    assert lines and all(line.endswith(":/") for line in lines), lines
    want = expected_dirs(lab, "cgb")
    for n in (1, 2):
        found = pids_of("sleep %d" % (MARK + n))
        assert len(found) == 1, (n, found)
        assert dirs_of(found[0]) == want, n
    # The init (reaper) of each guest: PID 1 of its pid namespace, in its cgroup.
    for name in GUESTS:
        paths = guests[name]["cgroup"]["paths"]
        inits = [p for p in procs(paths) if read("/proc/%d/status" % p).split("NSpid:")[1].split("\n")[0].split()[-1] == "1"]
        assert len(inits) == 1 and dirs_of(inits[0]) == expected_dirs(lab, name), name


def kernel_limits(paths: dict) -> dict:
    mem = by_key(paths, "memory")
    cpu = by_key(paths, "cpu")
    return {
        "memory": read(os.path.join(mem, "memory.limit_in_bytes")),
        "cpu": (read(os.path.join(cpu, "cpu.cfs_quota_us")), read(os.path.join(cpu, "cpu.cfs_period_us"))),
        "pids": read(os.path.join(by_key(paths, "pids"), "pids.max")),
    }


UNLIMITED = str(0x7FFFFFFFFFFFF000)  # v1 memory.limit_in_bytes without a limit (PAGE_COUNTER_MAX pages)


def converge_one_run(ansible_playbook, args: dict):
    """Check mode, a real run and a second real run of one namespace_create task, in ONE playbook
    (check_mode per task); asserts the project rule. (check, first, second) results."""
    tasks = [{"name": label, CREATE: args, "check_mode": label == "check", "diff": True} for label in ("check", "first", "second")]
    run = ansible_playbook(tasks)
    check, first, second = (run.task(label) for label in ("check", "first", "second"))
    assert check.changed == first.changed and first.changed and not second.changed, (check.result, first.result, second.result)
    return check, first, second


def test_limits_set_changed_in_place_and_removed(lab, guests, ansible_playbook, root_dir):
    paths = guests["cgb"]["cgroup"]["paths"]
    init = guests["cgb"]["init_pid"]
    check, first, _second = converge_one_run(ansible_playbook, {"name": "cgb", "root": root_dir,
                                                                "limits": {"memory": "128M", "cpu": 0.5, "pids": 100}})
    assert first["action"] == "update" and check["action"] == "update"
    assert kernel_limits(paths) == {"memory": str(128 << 20), "cpu": ("50000", "100000"), "pids": "100"}
    assert first["guest"]["limits"] == {"memory": 128 << 20, "cpu": 0.5, "pids": 100}
    check, first, second = converge_one_run(ansible_playbook, {"name": "cgb", "root": root_dir, "limits": {"memory": "256M", "pids": 50}})
    for diff in (check["diff"], first["diff"]):  # check mode predicts the diff too
        assert diff["before"]["limits"] == {"memory": 128 << 20, "cpu": 0.5, "pids": 100}, diff
        assert diff["after"]["limits"] == {"memory": 256 << 20, "pids": 50}, diff
    assert kernel_limits(paths) == {"memory": str(256 << 20), "cpu": ("-1", "100000"), "pids": "50"}
    converge_one_run(ansible_playbook, {"name": "cgb", "root": root_dir, "limits": {}})
    assert kernel_limits(paths) == {"memory": UNLIMITED, "cpu": ("-1", "100000"), "pids": "max"}
    assert second["guest"]["init_pid"] == init  # in place: the same guest all along


def test_bounded_fork_bomb_stops_at_the_pids_limit(lab, guests, ansible_playbook):
    # At most 200 forks, into a guest made with pids: 64; the sleeps stay until the guest goes.
    bomb = "i=0; while [ $i -lt 200 ]; do sleep %d </dev/null >/dev/null 2>&1 & i=$((i+1)); done; true" % (MARK + 3)
    run = ansible_playbook([
        {"name": "bomb", EXEC: {"guest": "cga", "argv": ["sh", "-c", bomb]}, "ignore_errors": True},
        {"name": "bystander guest", EXEC: {"guest": "cgb", "argv": ["echo", "alive"]}},
        {"name": "host", "ansible.builtin.command": "echo alive"},
    ])
    assert "can't fork" in run.task("bomb")["stderr"]  # the shell met the limit
    paths = guests["cga"]["cgroup"]["paths"]
    pids_dir = by_key(paths, "pids")
    assert int(read(os.path.join(pids_dir, "pids.events")).split()[1]) > 0  # forks refused at the limit
    sleeps = pids_of("sleep %d" % (MARK + 3))
    # stopped at 64: the reaper, the joiner and the shell (both gone now) and 61 sleeps
    assert len(sleeps) + 3 == 64
    assert read(os.path.join(pids_dir, "pids.current")) == str(len(sleeps) + 1)
    assert all(dirs_of(p) == expected_dirs(lab, "cga") for p in sleeps)
    assert run.task("bystander guest")["stdout"] == "alive" and run.task("host")["stdout"] == "alive"


def test_memory_hog_is_oom_killed_inside_the_guest_only(lab, guests, ansible_playbook):
    # dd wants a 256 MiB buffer in a guest limited to 64 MiB (this machine has no swap).
    run = ansible_playbook([
        {"name": "hog", EXEC: {"guest": "cgm", "argv": ["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]},
         "ignore_errors": True},
        {"name": "bystander", EXEC: {"guest": "cgb", "argv": ["echo", "alive"]}},
        {"name": "info", INFO: {"name": "cgm"}},
    ])
    hog = run.task("hog")
    assert hog["rc"] == 128 + 9 or hog["rc"] == -9, hog.result  # SIGKILL by the OOM killer
    assert run.task("bystander")["stdout"] == "alive"
    view = run.task("info")["guests"][0]["cgroup"]
    assert view["oom_kills"] >= 1, view
    assert view["limits"]["memory"] == 64 << 20 and view["version"] == "hybrid"
    assert set(view["paths"].values()) == expected_dirs(lab, "cgm")
    for key in ("memory_current", "memory_peak", "pids_current", "cpu_usage_usec"):
        assert isinstance(view[key], int), (key, view)
    assert view["frozen"] is False
    assert "oom_kill 0" not in read(os.path.join(by_key(view["paths"], "memory"), "memory.oom_control"))
    assert guests["cga"]["init_pid"] and guests["cgb"]["init_pid"]


def test_bad_input_names_guest_and_parameter_and_changes_nothing(lab, guests, ansible_playbook, root_dir):
    cases = {
        "cgbad1": ({"bogus": 1}, "bogus"),
        "cgbad2": ({"memory": -1}, "memory"),
        "cgbad3": ({"cpu": 0}, "cpu"),
        "cgbad4": ({"cpuset_cpus": "0-%d" % (os.cpu_count() + 63)}, "cpuset_cpus"),
    }
    tasks = [{"name": n, CREATE: {"name": n, "root": root_dir, "limits": lim}, "ignore_errors": True} for n, (lim, _w) in cases.items()]
    tasks += [
        # an init that cannot start: the guest's processes ran in its cgroup, and the rollback removes it
        {"name": "cgbad5", CREATE: {"name": "cgbad5", "root": root_dir, "init": ["/bin/nonexistent"]}, "ignore_errors": True},
        # a memory limit below what cgb uses now: a shell holding 4 MB (not reclaimable without swap)
        {"name": "hold memory", EXEC: {"guest": "cgb", "argv": ["sh", "-c", HOLD % (MARK + 4)]}},
        {"name": "below usage", CREATE: {"name": "cgb", "root": root_dir, "limits": {"memory": "1M"}}, "ignore_errors": True},
        {"name": "info", INFO: {"guests": ["cgbad1", "cgbad2", "cgbad3", "cgbad4", "cgbad5", "cgb"]}},
    ]
    run = ansible_playbook(tasks)
    for name, (_lim, word) in cases.items():
        res = run.task(name)
        assert res.failed and name in res["msg"] and "limits" in res["msg"] and word in res["msg"], res.result
        assert "Traceback" not in res["msg"]
    assert run.task("cgbad5").failed and "cgbad5" in run.task("cgbad5")["msg"]
    below = run.task("below usage")
    assert below.failed and "cgb" in below["msg"] and "memory" in below["msg"], below.result
    info = run.task("info")
    assert sorted(info["missing"]) == ["cgbad1", "cgbad2", "cgbad3", "cgbad4", "cgbad5"]
    assert info["guests"][0]["cgroup"]["limits"].get("memory") in (None, "max")  # unchanged (no memory limit)
    for name in cases.keys() | {"cgbad5"}:
        assert not [d for d in expected_dirs(lab, name) if os.path.exists(d)], name


def test_a_killed_creation_leaves_a_cgroup_the_next_run_removes(lab, guests, ansible_playbook, root_dir):
    """The module killed right after the creating child was forked (faults.Step.FORKED): the
    record names the cgroup, and the next run (here a removal) removes it."""
    run = ansible_playbook([
        {"name": "killed", CREATE: {"name": "cgcrash", "root": root_dir, "limits": {"pids": 10}},
         "environment": {"_LINUXNS_TEST_KILL_AT": "forked"}, "ignore_errors": True},
    ])
    assert run.task("killed").failed
    assert all(os.path.isdir(d) for d in expected_dirs(lab, "cgcrash"))  # made before the crash
    ansible_playbook([{CREATE: {"name": "cgcrash", "state": "absent"}}])
    assert not [d for d in expected_dirs(lab, "cgcrash") if os.path.exists(d)]


def test_removal_leaves_no_cgroup_and_no_process(lab, guests, ansible_playbook):
    # Last: removes the module's guests (the batch removal path, one task).
    ansible_playbook([{CREATE: {"guests": list(GUESTS), "state": "absent", "stop_timeout": 1}}])
    for name in GUESTS:
        assert not [d for d in expected_dirs(lab, name) if os.path.exists(d)], name
    assert not [p for n in (1, 2, 3, 4) for p in pids_of("sleep %d" % (MARK + n))]
