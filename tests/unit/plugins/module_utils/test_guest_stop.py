"""guest_stop: a batch of removals sweeps all its guests' namespaces with one /proc scan a round."""

from __future__ import annotations

import os
import signal
import time

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import enter, guest_stop, guests, procfs

pytestmark = pytest.mark.unit

NAMESPACES = ["mnt", "uts", "ipc", "net"]  # no pid namespace: no init takes the members along


def start_behind(meta: dict, types, token: str, command: str = "sleep 300") -> None:
    """Leave ``command`` running in the background in the guest's ``types`` namespaces (its
    shell exits)."""
    before = started(token)
    devnull = os.open("/dev/null", os.O_RDWR)
    try:
        argv = ["/bin/sh", "-c", "%s >/dev/null 2>&1 & exit 0" % command]
        spawned = enter.spawn_in_guest(meta, types, argv, {"PATH": "/usr/bin:/bin", "LINUXNS_STOP_TEST": token},
                                       (devnull, devnull, devnull))
        messages = enter.status_messages(enter.read_all(spawned.status_fd))
        os.close(spawned.status_fd)
        enter.wait_child(spawned.pid)
        # started, and its shell exited 0 (a spawn that failed says why here, not as a missing process later)
        assert [m for m in messages if "error" in m or "report" in m] == [] and messages[-1:] == [{"exit": 0}], messages
        # the background child may be in its exec when its shell is gone: /proc/PID/environ reads
        # empty between the new program's memory going in and its environment being laid out
        # (fs/proc/base.c environ_read: no mm->env_end yet; failed once under load), so it is
        # looked for again before the test fails
        deadline = time.monotonic() + 10
        while not started(token) - before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started(token) - before, "%r left in %s's %s namespaces is gone (%s): %s" % (command, meta.name, types, token, messages)
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


WAIT_FOR_THE_OTHER = """#!/bin/sh
# PID 1 of guest {me}: on SIGTERM it says so, then exits cleanly only once {other} got its SIGTERM too
trap 'touch {dir}/{me}.term; while [ ! -e {dir}/{other}.term ]; do sleep 0.05; done; touch {dir}/{me}.clean; exit 0' TERM
touch {dir}/{me}.ready
while :; do sleep 0.1; done
"""


def wait_ready(tmp_path, names) -> None:
    """Until each WAIT_FOR_THE_OTHER script has set its trap: a SIGTERM before that ends the shell
    at once, without a word (the removal came right after the start: failed once in CI)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all((tmp_path / ("%s.ready" % n)).exists() for n in names):
        time.sleep(0.01)
    assert all((tmp_path / ("%s.ready" % n)).exists() for n in names), sorted(p.name for p in tmp_path.iterdir())


def test_a_batch_removal_signals_every_init_before_waiting_for_one(unit_registry, tmp_path):
    """Two init-based guests removed by one task; each init exits on SIGTERM only once the other
    init got its SIGTERM too.  Both end cleanly: every init of the batch is signalled before
    any wait.  Before, the guests were stopped one by one: the first init waited for a SIGTERM
    the second got only after the first's stop_timeout ran out and it was killed (so removing
    N guests whose inits ignore SIGTERM took N stop timeouts, not one)."""
    pair = {"ha": "hb", "hb": "ha"}
    for me, other in pair.items():
        script = tmp_path / ("init-" + me)
        script.write_text(WAIT_FOR_THE_OTHER.format(me=me, other=other, dir=tmp_path))
        script.chmod(0o755)
    guests.ensure_guests(unit_registry, [{"name": n, "namespaces": ["uts", "pid"], "init": [str(tmp_path / ("init-" + n))], "stop_timeout": 5}
                                         for n in pair])
    inits = {n: (unit_registry.load(n).init_pid, unit_registry.load(n).init_start) for n in pair}
    assert all(procfs.process_alive(*i) for i in inits.values())
    wait_ready(tmp_path, pair)
    out = guests.ensure_guests(unit_registry, [{"name": n, "state": "absent"} for n in pair])
    assert [r["action"] for r in out["results"]] == ["remove", "remove"]
    assert unit_registry.names() == []
    assert sorted(p.name for p in tmp_path.glob("*.term")) == ["ha.term", "hb.term"]
    assert sorted(p.name for p in tmp_path.glob("*.clean")) == ["ha.clean", "hb.clean"]  # before: ["hb.clean"]
    assert not any(procfs.process_alive(*i) for i in inits.values())


def test_a_batch_removal_signals_every_init_less_guests_processes_before_waiting(unit_registry, tmp_path, token):
    """The same for two guests without an init (a reaper as PID 1): a process in each exits on
    SIGTERM only once the other got its SIGTERM too.  Both end cleanly, and the reapers are
    killed after them.  Before, each guest's processes were signalled and waited for in turn."""
    pair = {"la": "lb", "lb": "la"}
    guests.ensure_guests(unit_registry, [{"name": n, "namespaces": ["mnt", "uts", "pid"], "stop_timeout": 5} for n in pair])
    reapers = {n: (unit_registry.load(n).init_pid, unit_registry.load(n).init_start) for n in pair}
    for me, other in pair.items():
        script = tmp_path / ("member-" + me)
        script.write_text(WAIT_FOR_THE_OTHER.format(me=me, other=other, dir=tmp_path))
        start_behind(unit_registry.load(me), ["mnt", "uts", "pid"], token, "/bin/sh %s" % script)
    index = guest_stop.ProcIndex()
    members = {n: index.members(unit_registry.load(n)) - {reapers[n][0]} for n in pair}
    assert all(members.values()), members  # the script (and its sleep), in the guest's pid namespace
    wait_ready(tmp_path, pair)
    out = guests.ensure_guests(unit_registry, [{"name": n, "state": "absent"} for n in pair])
    assert [r["action"] for r in out["results"]] == ["remove", "remove"]
    assert unit_registry.names() == []
    assert sorted(p.name for p in tmp_path.glob("*.term")) == ["la.term", "lb.term"]
    assert sorted(p.name for p in tmp_path.glob("*.clean")) == ["la.clean", "lb.clean"]  # before: one of them
    assert not any(procfs.process_alive(*r) for r in reapers.values())


def _child(trap: str):
    import subprocess

    proc = subprocess.Popen(["/bin/sh", "-c", "trap '%s' TERM; echo ready; while :; do sleep 0.05; done" % trap], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\n"  # its trap is set
    return proc, (proc.pid, procfs.proc_start_time(proc.pid))


def test_halt_all_kills_what_outlives_its_own_timeout():
    """halt_all: a process that exits on its signal is waited for; one that ignores it gets
    SIGKILL at the end of its own timeout (not of the longest); with kill_after=None it is
    returned as still running, and left alone."""
    quits, quits_key = _child("exit 0")
    stays, stays_key = _child("")
    try:
        assert guest_stop.halt_all([quits_key + (signal.SIGTERM, 30.0), stays_key + (signal.SIGTERM, 0.2)], kill_after=None) == [stays_key]
        assert quits.wait(5) == 0
        assert procfs.process_alive(*stays_key)  # left running
        assert guest_stop.halt_all([stays_key + (signal.SIGTERM, 0.2)]) == []
        assert stays.wait(5) == -signal.SIGKILL
        assert guest_stop.halt_all([stays_key + (signal.SIGTERM, 0.2)]) == []  # gone: nothing sent, nothing left
    finally:
        for proc in (quits, stays):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _pins_mounted(registry, name: str) -> list:
    """The mount points of guest ``name``'s pins and /run/netns name, as the kernel lists them."""
    ours = (registry.pin_dir(name) + "/", registry.alias_path(name))
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = line.split()[4]
            if point.startswith(ours[0]) or point == ours[1]:
                found.append(point)
    return found


def test_a_batch_removal_releases_its_guests_together(unit_registry, monkeypatch):
    """Six guests removed by one task: their pins are unmounted by several threads at once (each
    unmount that ends a namespace waits for the kernel's RCU grace period; together the waits
    overlap).  Every guest's first unmount waits at a barrier of two: it passes only when another
    guest's unmount is under way at the same time.  Released one guest after another (the old
    code), the first unmount waits alone, the barrier breaks and the removal fails."""
    import threading

    names = ["rt%d" % i for i in range(6)]
    guests.ensure_guests(unit_registry, [{"name": n, "namespaces": NAMESPACES, "stop_timeout": 0} for n in names])
    assert all(_pins_mounted(unit_registry, n) for n in names)
    barrier = threading.Barrier(2, timeout=20)  # a guard against a hang, not a measure of time
    first = set()
    real_unpin = guest_stop.unpin

    def unpin(path):
        guest = next(n for n in names if ("/%s/" % n) in path or path.endswith("/" + n))
        if guest not in first:
            first.add(guest)
            barrier.wait()
        real_unpin(path)

    monkeypatch.setattr(guest_stop, "unpin", unpin)
    try:
        out = guests.ensure_guests(unit_registry, [{"name": n, "state": "absent"} for n in names])
    finally:
        monkeypatch.setattr(guest_stop, "unpin", real_unpin)  # the fixture's cleanup unpins for real
    assert [r["action"] for r in out["results"]] == ["remove"] * len(names)
    assert first == set(names)
    assert unit_registry.names() == []
    assert [p for n in names for p in _pins_mounted(unit_registry, n)] == []


def test_a_batch_removal_ends_every_ipc_namespace_before_any_cgroup(unit_registry, monkeypatch):
    """Five guests removed by one task: every guest's IPC pin is unmounted before the first
    guest's cgroup goes (the end of a memory cgroup visits the reclaim lists of every IPC
    namespace's mqueue filesystem still on the host).  Released guest by guest (the old code),
    the first cgroup went while four IPC namespaces were still pinned."""
    import threading

    names = ["ri%d" % i for i in range(5)]
    guests.ensure_guests(unit_registry, [{"name": n, "namespaces": NAMESPACES, "stop_timeout": 0} for n in names])
    ipc_pins = {unit_registry.load(n).pins["ipc"].path for n in names}
    events, lock = [], threading.Lock()
    real_unpin, real_release = guest_stop.unpin, guest_stop.release

    def unpin(path):
        real_unpin(path)
        with lock:
            events.append(("ipc", path) if path in ipc_pins else ("pin", path))

    def release(registry, name, meta, cgroup_run=None):
        with lock:
            events.append(("release", name))
        return real_release(registry, name, meta, cgroup_run)

    monkeypatch.setattr(guest_stop, "unpin", unpin)
    monkeypatch.setattr(guest_stop, "release", release)
    try:
        out = guests.ensure_guests(unit_registry, [{"name": n, "state": "absent"} for n in names])
    finally:
        monkeypatch.setattr(guest_stop, "unpin", real_unpin)
        monkeypatch.setattr(guest_stop, "release", real_release)
    assert [r["action"] for r in out["results"]] == ["remove"] * len(names)
    kinds = [kind for kind, _what in events]
    first_release = kinds.index("release")
    assert sorted(what for kind, what in events[:first_release] if kind == "ipc") == sorted(ipc_pins), events
    assert "ipc" not in kinds[first_release:]
    assert sorted(what for kind, what in events if kind == "release") == names
    assert unit_registry.names() == []
    assert [p for n in names for p in _pins_mounted(unit_registry, n)] == []


def test_a_failed_release_fails_for_its_guest_and_leaks_nothing(unit_registry, monkeypatch):
    """One guest's release fails in a batch of three removals: the task fails naming that guest;
    the guest before it is gone; nothing of the failed guest is lost but its IPC pin, which every
    guest of the batch gives up first (its other pins stay mounted, its record stays, so a rerun
    can remove it); the guest after it may be released but keeps its
    record.  A rerun removes both, and no pin of any of them is left mounted."""
    from ansible_collections.linuxns.guests.plugins.module_utils.errors import KernelError

    names = ["rf0", "rf1", "rf2"]
    guests.ensure_guests(unit_registry, [{"name": n, "namespaces": NAMESPACES, "stop_timeout": 0} for n in names])
    real_release = guest_stop.release

    def release(registry, name, meta, cgroup_run=None):
        if name == "rf1":
            raise KernelError("cannot remove the cgroup /sys/fs/cgroup/x: Device or resource busy (EBUSY)", errno=16)
        return real_release(registry, name, meta, cgroup_run)

    monkeypatch.setattr(guest_stop, "release", release)
    try:
        with pytest.raises(KernelError) as exc:
            guests.ensure_guests(unit_registry, [{"name": n, "state": "absent"} for n in names])
    finally:
        monkeypatch.setattr(guest_stop, "release", real_release)
    assert exc.value.msg.startswith("guest 'rf1': cannot remove the cgroup"), exc.value.msg
    assert unit_registry.load("rf0") is None and _pins_mounted(unit_registry, "rf0") == []
    assert unit_registry.load("rf1") is not None and _pins_mounted(unit_registry, "rf1")
    assert unit_registry.load("rf2") is not None
    out = guests.ensure_guests(unit_registry, [{"name": n, "state": "absent"} for n in names])
    assert [r["action"] for r in out["results"]] == ["none", "remove", "remove"]
    assert unit_registry.names() == []
    assert [p for n in names for p in _pins_mounted(unit_registry, n)] == []


def test_a_batch_removal_without_threads_to_be_had_releases_its_guests_alone(unit_registry, monkeypatch):
    """No thread can be started (a session at its pids limit: Python raises RuntimeError "can't
    start new thread"): the removal still releases every guest, from the task's own thread."""
    import threading

    names = ["rn%d" % i for i in range(4)]
    guests.ensure_guests(unit_registry, [{"name": n, "namespaces": NAMESPACES, "stop_timeout": 0} for n in names])
    starts = []

    def start(self):
        starts.append(self.name)
        raise RuntimeError("can't start new thread")

    real_start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", start)
    try:
        out = guests.ensure_guests(unit_registry, [{"name": n, "state": "absent"} for n in names])
    finally:
        monkeypatch.setattr(threading.Thread, "start", real_start)
    assert starts == ["linuxns-release"] * 2  # tried once in each phase (IPC pins, then the rest), then the task's thread alone
    assert [r["action"] for r in out["results"]] == ["remove"] * len(names)
    assert unit_registry.names() == []
    assert [p for n in names for p in _pins_mounted(unit_registry, n)] == []
