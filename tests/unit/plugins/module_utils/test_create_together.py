"""A big batch's new guests made at the same time (guests._Together): each by a thread of the
module's, through the fork server; taken in the task's order, context ids in that order, and a
failure leaving what it leaves when they are made one at a time.  Checked through the kernel's
view (/proc, mountinfo, the pins, cgroups)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import faults, forkserver, guest_create, guests, persist, procfs
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestConflict, KernelError

pytestmark = pytest.mark.unit

N = forkserver.MIN_GUESTS  # a batch this big has a fork server: its new guests are made together


@pytest.fixture
def overlap(monkeypatch):
    """The most guests guests.apply was making at one moment, and the names it made."""
    state = {"now": 0, "most": 0, "applied": []}
    lock = threading.Lock()
    real = guests.apply

    def apply(registry, p, *args, **kwargs):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            state["applied"].append(p.spec.name)
        try:
            return real(registry, p, *args, **kwargs)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(guests, "apply", apply)
    return state


def _nothing_of(r, names) -> None:
    """No record, state folder, pin or netns name mounted, cgroup or context id of ``names``."""
    mounts = open("/proc/self/mountinfo").read().split()
    for n in names:
        assert not os.path.exists(r.guest_dir(n)) and r.load(n) is None
        assert not [m for m in mounts if m.endswith("/" + n) or "/%s/" % n in m], n
    assert not [d for d, _subdirs, _files in os.walk("/sys/fs/cgroup") if os.path.basename(d) in names]
    assert not {r.ctx_owner(c) for c in r.used_context_ids()} & set(names)


def test_a_big_batch_makes_its_new_guests_together_in_the_tasks_order(unit_registry, overlap, made_for_real):
    r = unit_registry
    names = ["tg%02d" % i for i in range(N)]
    entries = [{"name": n} for n in names]
    check = guests.ensure_guests(r, entries, check_mode=True)
    assert [g["action"] for g in check["results"]] == ["create"] * N and overlap["applied"] == [] and r.names() == []
    out = guests.ensure_guests(r, entries)
    made_for_real(r, out["results"], names)
    assert overlap["most"] >= 2, overlap  # made at the same time (one at a time before)
    assert sorted(overlap["applied"]) == names
    # Context ids in the task's order, as one at a time: the same names get the same ids on every host.
    ctxs = [g["guest"]["context_id"] for g in out["results"]]
    assert ctxs == list(range(ctxs[0], ctxs[0] + N)), ctxs
    assert sorted(out["diff"]["after"]) == names and out["changed"]
    again = guests.ensure_guests(r, entries)
    assert not again["changed"] and [g["guest"]["init_pid"] for g in again["results"]] == [g["guest"]["init_pid"] for g in out["results"]]


def test_a_failure_mid_batch_leaves_what_one_guest_at_a_time_leaves(unit_registry, overlap, monkeypatch, made_for_real):
    """Guest m meets a network namespace of another's under its name in the netns folder (an
    operator's `ip netns add`), found at its last step; the guest after it is made meanwhile.
    The task fails naming guest m; the guests before it stay; guest m is rolled back, and the one
    made meanwhile is removed again; the other's namespace is left as it was."""
    r = unit_registry
    names = ["tf%02d" % i for i in range(N)]
    m = 5
    r.ensure()
    r.ensure_netns_dir()  # the folder set up as ip netns and the module do: one mount of it
    theirs = os.path.join(r.netns_dir, names[m])
    open(theirs, "w").close()
    sc.mount("/proc/self/ns/net", theirs, None, sc.MS_BIND)  # this process's own network namespace: not the guest's
    theirs_ino = os.stat(theirs).st_ino
    removed, seen = [], []
    real_alias, real_remove = guest_create._make_alias, guests.remove

    def alias(registry, name, meta, run):
        if name == names[m]:  # until the next guest is made, so that it is there to remove
            for _attempt in range(1000):
                after = registry.load(names[m + 1])
                if after is not None and after.phase == reg.READY:
                    seen.append(names[m + 1])
                    break
                time.sleep(0.01)
        return real_alias(registry, name, meta, run)

    def remove(registry, name, *args, **kwargs):
        removed.append(name)
        return real_remove(registry, name, *args, **kwargs)

    monkeypatch.setattr(guest_create, "_make_alias", alias)
    monkeypatch.setattr(guests, "remove", remove)
    try:
        with pytest.raises(GuestConflict) as failed:
            guests.ensure_guests(r, [{"name": n} for n in names])
        assert failed.value.msg.startswith("guest %r: a network namespace named %r already exists in %s and is not this guest's"
                                           % (names[m], names[m], r.netns_dir)), failed.value.msg
        assert seen == [names[m + 1]] and names[m + 1] in removed  # made together with guest m, then removed again
        assert [g["name"] for g in failed.value.details["results"]] == names[:m]
        assert r.names() == names[:m]
        for n in names[:m]:
            assert procfs.process_alive(r.load(n).init_pid, None)
        _nothing_of(r, names[m + 1:])
        assert not os.path.exists(r.guest_dir(names[m])) and r.load(names[m]) is None
        assert r.guest_dir(names[m]) + "/" not in open("/proc/self/mountinfo").read()  # no pin of its
        assert not [d for d, _subdirs, _files in os.walk("/sys/fs/cgroup") if os.path.basename(d) == names[m]]
        assert os.stat(theirs).st_ino == theirs_ino  # theirs, untouched
        assert len(r.used_context_ids()) == m
        # the guest made meanwhile keeps the context id it was given, as any removed guest does
        kept = persist.Kept(persist.resolve_table_dir(r.state_dir), names[m + 1]).read_context_id()
        assert kept is not None and kept not in r.used_context_ids()
        assert overlap["most"] >= 2 and names[-1] not in overlap["applied"]  # no new guest begun after the failure
    finally:
        for _attempt in range(8):
            try:
                sc.umount2(theirs, sc.MNT_DETACH)
            except KernelError:
                break
        os.unlink(theirs)
    monkeypatch.setattr(guest_create, "_make_alias", real_alias)
    out = guests.ensure_guests(r, [{"name": n} for n in names])  # the name free again: a rerun makes the rest
    assert [g["action"] for g in out["results"]] == ["none"] * m + ["create"] * (N - m)
    made_for_real(r, out["results"][m:], names[m:])


def _our_children() -> set:
    """Pids of this process's live children (it is a child subreaper: a crashed run's orphans come here)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                out.add(int(entry))
    return out


@pytest.mark.parametrize("step", list(faults.Step))
def test_a_batch_killed_while_its_guests_are_made_together_converges(unit_registry, overlap, step):
    """SIGKILL the run when the first of its guests reaches STEP, while the others are at other
    steps (made together); the next run makes every guest whole, and removing them leaves no
    record, pin, netns name, cgroup, context id or process of either run."""
    r = unit_registry
    names = ["tk%02d" % i for i in range(N + 4)]
    before = _our_children()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the killed run
        os.environ[faults.ENV] = step.value
        try:
            guests.ensure_guests(reg.Registry(r.state_dir, r.netns_dir), [{"name": n} for n in names])
        finally:
            os._exit(3)
    status = os.waitpid(pid, 0)[1]
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    time.sleep(0.1)
    left = r.names()
    assert left, "the killed run reserved no guest"
    out = guests.ensure_guests(r, [{"name": n} for n in names])
    assert [g["name"] for g in out["results"]] == names and overlap["most"] >= 2
    for g in out["results"]:
        meta = r.load(g["name"])
        assert meta.phase == reg.READY and reg.health(meta) == [], (g["name"], g["action"], reg.health(meta))
        assert procfs.process_alive(meta.init_pid, None) and os.stat(meta.pins["net"].path).st_ino == meta.pins["net"].ino
    again = guests.ensure_guests(r, [{"name": n} for n in names])
    assert not again["changed"]
    removed = guests.ensure_guests(r, [{"name": n, "state": "absent"} for n in names])
    assert removed["changed"] and r.names() == []
    _nothing_of(r, names)
    for _attempt in range(50):  # the inits are killed and reaped by the removal; orphans would come here
        for _child in sc.exited_children():
            pass
        leaked = _our_children() - before
        if not leaked:
            break
        time.sleep(0.05)
    assert not leaked, [(p, open("/proc/%d/cmdline" % p, "rb").read()) for p in leaked]


def test_without_threads_a_big_batch_makes_its_guests_one_at_a_time(unit_registry, overlap, monkeypatch, made_for_real):
    real = threading.Thread.start

    def start(self):
        if self.name == "linuxns-create":
            raise RuntimeError("can't start new thread")
        return real(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    names = ["tw%02d" % i for i in range(N)]
    out = guests.ensure_guests(unit_registry, [{"name": n} for n in names])
    made_for_real(unit_registry, out["results"], names)
    assert overlap["most"] == 1 and overlap["applied"] == names


def test_turns_keep_the_tasks_order_and_skip_a_guest_that_gives_its_turn_up():
    turns = guest_create.Turns(["a", "b", "c"])
    order = []

    def reserve(name, delay):
        time.sleep(delay)
        with turns.of(name):
            order.append(name)

    threads = [threading.Thread(target=reserve, args=("c", 0)), threading.Thread(target=reserve, args=("b", 0.05))]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    assert order == []  # b and c wait for a
    turns.over("a")  # a ended without reserving (it failed before): b and c go on, in order
    for thread in threads:
        thread.join(10)
    assert order == ["b", "c"]
    with turns.of("elsewhere"):  # a guest not of the batch waits for nobody
        pass
