"""namespace_create state=frozen and signal_all over real ssh against a lab host.

One guest (init-less: the reaper is its PID 1) lives for the whole module, with `cpu: 0.05`
so that its busy-looping processes cost the shared machine little.  Processes are started in
it with guest_enter_exec (so they are in its cgroup).  Everything is checked from outside the
guest on the lab host: /proc/PID/status (a busy loop is R running, S when frozen),
/proc/PID/cgroup, and the guest's cgroup files (cgroup.events / freezer.state, cgroup.procs).
The guest is removed at the end, also on failure, and its cgroup must be gone.
"""

from __future__ import annotations

import itertools
import json
import os

import pytest
import yaml
from harness import _bin

pytestmark = pytest.mark.integration

CREATE = "linuxns.guests.namespace_create"
EXEC = "linuxns.guests.guest_enter_exec"
INFO = "linuxns.guests.namespace_info"
NAME = "cgops1"
STATE = "/run/linuxns"
SPIN = "setsid sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &"
SLEEP = "setsid sleep 1000 </dev/null >/dev/null 2>&1 &"
_count = itertools.count(1)

# From outside, on the lab host: {pid: (State letter, cmdline)} of every process whose
# /proc/PID/cgroup puts it in the guest's cgroup (the unified line, or name=systemd), and the
# guest's freezer files.
PROBE = r"""
import json, os, sys
name, paths = sys.argv[1], json.loads(sys.argv[2])
procs = {}
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        with open("/proc/%s/cgroup" % p) as f:
            lines = [l.rstrip("\n").split(":", 2) for l in f]
        if not any(c in ("", "name=systemd") and path.endswith("/" + name) for _h, c, path in lines):
            continue
        with open("/proc/%s/status" % p) as f:
            st = next(l.split()[1] for l in f if l.startswith("State:"))
        with open("/proc/%s/cmdline" % p, "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode().strip()
    except (OSError, StopIteration):
        continue
    procs[p] = [st, cmd]
files = {}
for key, d in paths.items():
    for fname in ("cgroup.events", "cgroup.freeze", "freezer.state"):
        fp = os.path.join(d, fname)
        if (key == "unified") == fname.startswith("cgroup.") and os.path.exists(fp):
            files[key + "/" + fname] = open(fp).read().strip()
print(json.dumps({"procs": procs, "files": files, "dirs": [d for d in paths.values() if os.path.isdir(d)]}))
"""


def record(lab_exec) -> dict:
    return json.loads(lab_exec("lab1", ["cat", "%s/guests/%s/meta.json" % (STATE, NAME)]).stdout)


def probe(lab_exec, paths) -> dict:
    out = json.loads(lab_exec("lab1", ["python3", "-c", PROBE, NAME, json.dumps(paths)]).stdout)
    out["procs"] = {int(p): v for p, v in out["procs"].items()}
    return out


def others(seen, init) -> dict:
    return {p: v for p, v in seen["procs"].items() if p != init}


@pytest.fixture(scope="module")
def guest(lab, ansible):
    def lab_exec(host, argv, check=True):
        from harness import lab_exec as run
        return run(lab, host, argv, check=check)

    paths = {}
    try:
        ansible.playbook([{CREATE: {"name": NAME, "stop_timeout": 2, "limits": {"cpu": 0.05, "pids": 64}}}])
        meta = record(lab_exec)
        paths.update(meta["cgroup"]["paths"])
        yield {"init": meta["init_pid"], "paths": paths, "lab_exec": lab_exec}
    finally:
        ansible.playbook([{CREATE: {"name": NAME, "state": "absent", "stop_timeout": 2}}])
        if paths:
            assert probe(lab_exec, paths)["dirs"] == [], "the guest's cgroup was left"


def start(ansible_playbook, cmd):
    run = ansible_playbook([{EXEC: {"guest": NAME, "cmd": cmd, "shell": True}}])
    assert run.last["rc"] == 0, run.describe()


def wait_procs(lab_exec, paths, cond, what):
    for _attempt in range(300):  # hang guard only (each probe is one lab exec)
        seen = probe(lab_exec, paths)
        if cond(seen):
            return seen
    raise AssertionError("never happened: %s (last: %s)" % (what, seen))


def frozen_files(seen) -> bool:
    f = seen["files"]
    if "unified/cgroup.freeze" in f:  # cgroup v2's freezer where the host has it (here: the unified mount)
        return f["unified/cgroup.freeze"] == "1" and "frozen 1" in f["unified/cgroup.events"]
    return f["freezer/freezer.state"] == "FROZEN"


def connection_raw(lab, ansible, base):
    """`ansible NAME -m raw -a true` through the linuxns.guests.guest connection (the guests inventory)."""
    from lab import ssh_common_args

    host_vars = {"ansible_user": "root", "ansible_ssh_private_key_file": str(lab.key_path),
                 "ansible_ssh_common_args": " ".join(ssh_common_args(lab.state_dir))}
    inv = os.path.join(base, "ops.guests.yml")
    with open(inv, "w") as f:
        yaml.safe_dump({"plugin": "linuxns.guests.guests", "hostname_template": "{guest}",
                        "hosts": {"lab1": {"address": lab.host(1).address, "vars": host_vars, "guests": [{"name": NAME}]}}}, f)
    argv = [_bin("ansible"), NAME, "-i", inv, "-m", "raw", "-a", "true"]
    return ansible._run(argv, ansible.workdir / ("cgops-conn-%d.jsonl" % next(_count)), True, 600)


def test_freeze_and_thaw(guest, ansible, ansible_playbook, lab, tmp_path):
    lab_exec, paths, init = guest["lab_exec"], guest["paths"], guest["init"]
    start(ansible_playbook, SPIN)
    seen = wait_procs(lab_exec, paths, lambda s: any("while" in c for _st, c in others(s, init).values()), "a busy loop in the guest")
    spinner = next(p for p, (_st, c) in others(seen, init).items() if "while" in c)
    assert seen["procs"][spinner][0] == "R" and not frozen_files(seen), seen

    task = {CREATE: {"name": NAME, "state": "frozen"}}
    check = ansible_playbook([task], check=True, diff=True).last
    assert check.changed and check["action"] == "freeze", check.result
    assert check["diff"]["before"]["frozen"] is False and check["diff"]["after"]["frozen"] is True, check["diff"]
    seen = probe(lab_exec, paths)
    assert seen["procs"][spinner][0] == "R" and not frozen_files(seen), "check mode froze the guest"
    first = ansible_playbook([task]).last
    assert first.changed and first["action"] == "freeze", first.result
    seen = probe(lab_exec, paths)
    assert frozen_files(seen), seen["files"]
    assert {p: st for p, (st, _c) in seen["procs"].items()} == {init: "S", spinner: "S"}, seen  # the busy loop stopped
    # one run: again (no change), again in check mode, namespace_info, and guest_enter_exec, which refuses
    # to enter a frozen guest (nothing hangs)
    run = ansible_playbook([dict(task, name="again"), dict(task, name="check", check_mode=True), {"name": "info", INFO: {"name": NAME}},
                            {"name": "enter", EXEC: {"guest": NAME, "argv": ["true"]}, "ignore_errors": True}])
    assert not run.task("again").changed and not run.task("check").changed
    assert run.task("info")["guests"][0]["cgroup"]["frozen"] is True, run.task("info")["guests"][0]["cgroup"]
    refused = run.task("enter")
    assert refused.failed and "guest 'cgops1' is frozen" in refused["msg"] and "state=present" in refused["msg"], refused.result
    conn = connection_raw(lab, ansible, str(tmp_path))
    r = conn.results[0]
    assert r.status == "unreachable" and "guest 'cgops1' is frozen" in r["msg"], r.result
    assert set(probe(lab_exec, paths)["procs"]) == {init, spinner}, "a refused entry left a process in the guest"

    thaw = {CREATE: {"name": NAME, "state": "present"}}
    check = ansible_playbook([thaw], check=True).last
    assert check.changed and check["action"] == "thaw" and frozen_files(probe(lab_exec, paths))
    first = ansible_playbook([thaw], diff=True).last
    assert first.changed and first["diff"]["before"]["frozen"] is True and first["diff"]["after"]["frozen"] is False
    seen = wait_procs(lab_exec, paths, lambda s: s["procs"].get(spinner, ["?"])[0] == "R", "the busy loop running again")
    assert not frozen_files(seen)
    run = ansible_playbook([dict(thaw, name="again"), {"name": "info", INFO: {"name": NAME}}])
    assert not run.task("again").changed and run.task("info")["guests"][0]["cgroup"]["frozen"] is False


def test_signal_all_kill_leaves_only_init(guest, ansible_playbook):
    lab_exec, paths, init = guest["lab_exec"], guest["paths"], guest["init"]
    start(ansible_playbook, SPIN)
    start(ansible_playbook, SLEEP)
    seen = wait_procs(lab_exec, paths, lambda s: sum("sleep 1000" in c or "while" in c for _st, c in others(s, init).values()) >= 2,
                      "a busy loop and a sleep in the guest")
    victims = sorted(others(seen, init))

    task = {CREATE: {"name": NAME, "signal_all": "SIGKILL"}}
    check = ansible_playbook([task], check=True).last
    assert check.changed and check["action"] == "signal" and sorted(check["signalled"]) == victims, check.result
    assert sorted(others(probe(lab_exec, paths), init)) == victims, "check mode signalled"
    first = ansible_playbook([task]).last
    assert first.changed and sorted(first["signalled"]) == victims, first.result
    seen = wait_procs(lab_exec, paths, lambda s: set(s["procs"]) == {init}, "only the init left in the guest")
    assert not frozen_files(seen), "signal_all left the guest frozen"
    run = ansible_playbook([dict(task, name="again"), dict(task, name="check", check_mode=True)])
    assert not run.task("again").changed and run.task("again")["signalled"] == [] and not run.task("check").changed


def test_bad_input_changes_nothing(guest, ansible_playbook):
    lab_exec, paths, init = guest["lab_exec"], guest["paths"], guest["init"]
    bad = (({"signal_all": "SIGNOPE"}, "signal_all 'SIGNOPE' is not a signal name"),
           ({"signal_all": "KILL", "state": "absent"}, "signal_all goes with state=present or frozen"),
           ({"state": "paused"}, "state"))
    run = ansible_playbook([{"name": "bad%d" % i, CREATE: dict({"name": NAME}, **args), "ignore_errors": True} for i, (args, _w) in enumerate(bad)])
    for i, (_args, words) in enumerate(bad):
        res = run.task("bad%d" % i)
        assert res.failed and words in res["msg"], res.result
    seen = probe(lab_exec, paths)
    assert init in seen["procs"] and not frozen_files(seen)
