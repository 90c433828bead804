"""guest_stop: a batch of removals sweeps all its guests' namespaces with one /proc scan a round."""

from __future__ import annotations

import os
import signal
import time

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import enter, guest_stop, guests, procfs

pytestmark = pytest.mark.unit

NAMESPACES = ["mnt", "uts", "ipc", "net"]  # no pid namespace: no init takes the members along


def start_behind(meta: dict, types, token: str) -> None:
    """Leave a background ``sleep`` in the guest's ``types`` namespaces (its shell exits)."""
    before = started(token)
    devnull = os.open("/dev/null", os.O_RDWR)
    try:
        argv = ["/bin/sh", "-c", "sleep 300 >/dev/null 2>&1 & exit 0"]
        spawned = enter.spawn_in_guest(meta, types, argv, {"PATH": "/usr/bin:/bin", "LINUXNS_STOP_TEST": token},
                                       (devnull, devnull, devnull))
        messages = enter.status_messages(enter.read_all(spawned.status_fd))
        os.close(spawned.status_fd)
        enter.wait_child(spawned.pid)
        # started, and its shell exited 0 (a spawn that failed says why here, not as a missing process later)
        assert [m for m in messages if "error" in m or "report" in m] == [] and messages[-1:] == [{"exit": 0}], messages
        assert started(token) - before, "the sleep left in %s's %s namespaces is gone (%s): %s" % (meta.name, types, token, messages)
    finally:
        os.close(devnull)


def started(token: str) -> set:
    """pids of the processes this test left behind (marked in their environment), zombies aside."""
    mark = ("LINUXNS_STOP_TEST=%s" % token).encode()
    found = set()
    for pid in procfs.pids():
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                if mark in f.read().split(b"\0") and not procfs.is_zombie(pid):
                    found.add(pid)
        except OSError:
            pass
    return found


@pytest.fixture
def token():
    mark = "%d-%d" % (os.getpid(), time.monotonic_ns())
    yield mark
    for pid in started(mark):  # what a broken sweep left behind
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def scans(monkeypatch):
    """Counts the /proc scans of guest_stop's sweep (procfs.Index built by it)."""
    count = [0]

    class Counted(procfs.Index):
        def __init__(self, *args, **kw):
            count[0] += 1
            super().__init__(*args, **kw)

    monkeypatch.setattr(guest_stop.procfs, "Index", Counted)
    return count


def test_batch_removal_one_scan_per_round(unit_registry, token, scans):
    """Eight guests removed by one task, each with a process that entered only its net
    namespace (invisible to stop_processes: only the sweep finds it): all are killed, and
    the sweep scanned /proc fewer than twice per guest (one scan a round for the batch; the
    per-guest sweep took at least two per guest)."""
    names = ["st%d" % i for i in range(8)]
    guests.ensure_guests(unit_registry, [{"name": n, "namespaces": NAMESPACES, "stop_timeout": 0} for n in names])
    for n in names:
        start_behind(unit_registry.load(n), ["net"], token)
    assert len(started(token)) == len(names)
    scans[0] = 0
    out = guests.ensure_guests(unit_registry, [{"name": n, "state": "absent"} for n in names])
    assert [r["action"] for r in out["results"]] == ["remove"] * len(names)
    assert unit_registry.names() == []
    deadline = time.monotonic() + 10  # SIGKILL is sent; give the kernel its moment to finish them
    while started(token) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started(token) == set()
    assert 2 <= scans[0] < 2 * len(names)


def test_single_removal_sweeps_its_guest_only(unit_registry, token):
    """Removing one guest kills what entered its net namespace and leaves another guest's alone."""
    guests.ensure_guests(unit_registry, [{"name": n, "namespaces": NAMESPACES, "stop_timeout": 0} for n in ("sa", "sb")])
    start_behind(unit_registry.load("sa"), ["net"], token + "a")
    start_behind(unit_registry.load("sb"), ["net"], token)
    kept = started(token)
    assert len(kept) == 1
    try:
        guests.ensure_guests(unit_registry, [{"name": "sa", "state": "absent"}])
        deadline = time.monotonic() + 10
        while started(token + "a") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started(token + "a") == set()
        assert started(token) == kept
    finally:
        for pid in started(token + "a"):
            os.kill(pid, signal.SIGKILL)


def test_shared_namespace_lives_on_with_the_guest_sharing_it(unit_registry, token):
    """Guest sb shares sa's net namespace: removing sa alone leaves the processes in that
    namespace that entered it through sb (sb still has it, and they are in sb's cgroup) - one
    that entered through sa is sa's (in sa's cgroup) and goes with it; removing both in one
    batch kills them (nothing keeps the namespace any more: no process may stay behind in it)."""
    pair = [
        {"name": "sa", "namespaces": NAMESPACES, "stop_timeout": 0},
        {"name": "sb", "namespaces": ["mnt"], "share": {"net": "sa"}, "stop_timeout": 0},
    ]
    guests.ensure_guests(unit_registry, pair)
    start_behind(unit_registry.load("sb"), ["net"], token)
    start_behind(unit_registry.load("sa"), ["net"], token + "a")
    left = started(token)
    assert len(left) == 1 and len(started(token + "a")) == 1
    guests.ensure_guests(unit_registry, [{"name": "sa", "state": "absent"}])
    assert started(token) == left  # sb's net, in sb's cgroup: not sa's to empty
    assert started(token + "a") == set()  # sa's cgroup: removed with sa
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    guests.ensure_guests(unit_registry, [{"name": "sb", "state": "absent"}])
    guests.ensure_guests(unit_registry, pair)
    start_behind(unit_registry.load("sa"), ["net"], token)
    assert len(started(token) - left) == 1
    guests.ensure_guests(unit_registry, [{"name": "sa", "state": "absent"}, {"name": "sb", "state": "absent"}])
    deadline = time.monotonic() + 10
    while (started(token) - left) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started(token) - left == set()
