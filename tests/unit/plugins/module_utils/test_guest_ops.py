"""guests.py: state=frozen (freeze, thaw) and signal_all, on real cgroups of this machine.

The guests' cgroups live below the test process's own cgroup (tests/unit/conftest.py sets a
relative LINUXNS_CGROUP_PARENT); a process is put into a guest with enter.spawn_in_guest, the
way guest_enter_exec does.  Checked from outside: /proc/PID/status, /proc/PID/cgroup and the
cgroup files.
"""

from __future__ import annotations

import os
import shlex

import pytest
from waiting import wait_for

from ansible_collections.linuxns.guests.plugins.module_utils import enter, guests
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, InvalidInput

SPIN = ["/bin/sh", "-c", "while :; do :; done"]


def state(pid: int) -> str:
    with open("/proc/%d/status" % pid) as f:
        return next(line.split()[1] for line in f if line.startswith("State:"))


def freeze_files(meta) -> dict:
    out = {}
    for key, folder in meta.cgroup["paths"].items():
        name = "cgroup.events" if key == "unified" else "freezer.state" if key == "freezer" else None
        if name and os.path.exists(os.path.join(folder, name)):
            with open(os.path.join(folder, name)) as f:
                out[key] = f.read()
    return out


def in_guest_cgroup(meta, pid: int) -> bool:
    with open("/proc/%d/cgroup" % pid) as f:
        mine = {(c or "unified"): p for _h, c, p in (line.rstrip("\n").split(":", 2) for line in f)}
    return all(mine.get(k, "").endswith("/" + meta.name) for k in meta.cgroup["paths"])


def start(meta, argv):
    """A process in the guest (its cgroup and namespaces), reaped by the guest's init."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        spawned = enter.spawn_in_guest(meta, None, ["/bin/sh", "-c", "%s >/dev/null 2>&1 </dev/null &" % shlex.join(argv)],
                                       {"PATH": "/usr/bin:/bin"}, (null, null, null))
        enter.read_all(spawned.status_fd)
        os.close(spawned.status_fd)
        enter.wait_child(spawned.pid)
    finally:
        os.close(null)


def guest_pids(meta) -> list:
    """The processes in the guest's cgroup (its cgroup.procs), each also checked in /proc/PID/cgroup."""
    pids = set()
    for folder in meta.cgroup["paths"].values():
        with open(os.path.join(folder, "cgroup.procs")) as f:
            pids.update(int(p) for p in f.read().split())
    out = []
    for pid in sorted(pids):
        try:
            assert in_guest_cgroup(meta, pid), pid
        except FileNotFoundError:
            continue  # gone meanwhile
        out.append(pid)
    return out


@pytest.fixture
def guest(unit_registry):
    guests.ensure_guests(unit_registry, [{"name": "ops1", "stop_timeout": 1}])
    meta = unit_registry.load("ops1")
    assert meta.cgroup and meta.cgroup["paths"], meta.to_json()
    yield unit_registry, meta
    guests.ensure_guests(unit_registry, [{"name": "ops1", "state": "absent", "stop_timeout": 1}])
    assert not any(os.path.exists(p) for p in meta.cgroup["paths"].values())


def run(registry, check=False, **entry):
    out = guests.ensure_guests(registry, [dict({"name": "ops1"}, **entry)], check_mode=check)
    return out, out["results"][0]


def test_freeze_thaw_two_runs_and_check_mode(guest):
    registry, meta = guest
    start(meta, SPIN)
    wait_for(lambda: len(guest_pids(meta)) >= 2, "the spinner in the guest")
    spinner = max(guest_pids(meta))
    assert state(spinner) == "R" and not enter.is_frozen(meta)

    out, item = run(registry, check=True, state="frozen")
    assert item["changed"] and item["action"] == "freeze" and not enter.is_frozen(meta)
    assert out["diff"]["before"]["ops1"]["frozen"] is False and out["diff"]["after"]["ops1"]["frozen"] is True
    assert state(spinner) == "R"
    out, item = run(registry, state="frozen")
    assert item["changed"] and item["action"] == "freeze"
    assert state(spinner) == "S" and enter.is_frozen(meta)
    files = freeze_files(meta)  # cgroup v2's freezer where the host has it (here: the unified mount), else v1's
    assert ("frozen 1" in files["unified"]) if "unified" in files else files["freezer"].strip() == "FROZEN", files
    out, item = run(registry, state="frozen")
    assert not item["changed"] and item["action"] == "none"
    _out, item = run(registry, check=True, state="frozen")
    assert not item["changed"]

    _out, item = run(registry, check=True)
    assert item["changed"] and item["action"] == "thaw" and state(spinner) == "S"
    out, item = run(registry)
    assert item["changed"] and item["action"] == "thaw"
    assert out["diff"]["before"]["ops1"]["frozen"] is True and out["diff"]["after"]["ops1"]["frozen"] is False
    wait_for(lambda: state(spinner) == "R", "the spinner running again")
    assert not run(registry)[1]["changed"]
    # a guest that is not and was not frozen shows no frozen key (other diffs stay as they were)
    assert "frozen" not in run(registry)[0]["diff"]["after"]["ops1"]


def test_a_frozen_guest_is_not_entered_and_is_removed(guest):
    registry, meta = guest
    run(registry, state="frozen")
    with pytest.raises(GuestError, match=r"guest 'ops1' is frozen .*thaw it first"):
        start(meta, ["true"])
    # removal thaws first: the reaper gets its stop signal and the cgroup goes (the fixture checks)


def test_signal_all_kill_spares_init_check_mode_counts(guest):
    registry, meta = guest
    start(meta, ["sleep", "1000"])
    start(meta, SPIN)
    wait_for(lambda: len(guest_pids(meta)) >= 3, "two processes in the guest")
    others = sorted(p for p in guest_pids(meta) if p != meta.init_pid)

    _out, item = run(registry, check=True, signal_all="KILL")
    assert item["changed"] and item["action"] == "signal" and sorted(item["signalled"]) == others
    assert sorted(p for p in guest_pids(meta) if p != meta.init_pid) == others
    _out, item = run(registry, signal_all="SIGKILL")
    assert item["changed"] and sorted(item["signalled"]) == others
    wait_for(lambda: guest_pids(meta) == [meta.init_pid], "only the init left")
    assert state(meta.init_pid) in ("S", "R") and not enter.is_frozen(meta)
    _out, item = run(registry, signal_all=9)
    assert not item["changed"] and item["signalled"] == []


def test_signal_all_term_and_a_frozen_guest_stays_frozen(guest):
    registry, meta = guest
    start(meta, ["sleep", "1000"])
    wait_for(lambda: len(guest_pids(meta)) >= 2, "a process in the guest")
    _out, item = run(registry, state="frozen", signal_all="TERM")
    assert item["changed"] and item["action"] == "freeze" and len(item["signalled"]) == 1 and enter.is_frozen(meta)
    run(registry)
    wait_for(lambda: guest_pids(meta) == [meta.init_pid], "only the init left (sleep ended by SIGTERM)")

    start(meta, ["sleep", "1000"])
    wait_for(lambda: len(guest_pids(meta)) >= 2, "a process in the guest")
    run(registry, state="frozen")
    _out, item = run(registry, state="frozen", signal_all="KILL")
    assert item["changed"] and item["action"] == "signal" and len(item["signalled"]) == 1
    assert enter.is_frozen(meta), "signal_all thawed a guest that was frozen"
    run(registry)
    wait_for(lambda: guest_pids(meta) == [meta.init_pid], "only the init left")


def test_bad_input(guest):
    registry, _meta = guest
    with pytest.raises(InvalidInput, match="signal_all 'SIGNOPE' is not a signal name"):
        run(registry, signal_all="SIGNOPE")
    with pytest.raises(InvalidInput, match="signal_all goes with state=present or frozen"):
        run(registry, state="absent", signal_all="KILL")
    assert registry.load("ops1") is not None
