"""The fork server (forkserver.py): a big batch's guests made by children of a small process
of the run's, not of the module; checked through the kernel's view (/proc, the pins, cgroups)."""

from __future__ import annotations

import errno
import os
import re
import signal
import time

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import forkserver, guests, procfs
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, KernelError

pytestmark = pytest.mark.unit

N = forkserver.MIN_GUESTS


@pytest.fixture
def module_forks(monkeypatch):
    """The pids of the children this process (the module) forks during the test."""
    forks = []
    real = os.fork

    def fork():
        pid = real()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return forks


@pytest.fixture
def servers(monkeypatch):
    """The pids of the fork servers started during the test."""
    pids = []
    real = forkserver.ForkServer.__init__

    def init(self):
        real(self)
        pids.append(self.clone.pid)

    monkeypatch.setattr(forkserver.ForkServer, "__init__", init)
    return pids


def _gone(pid: int) -> bool:
    """Ended and reaped: no such process (a zombie would still be there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_big_batch_forks_its_guests_children_from_the_fork_server(unit_registry, module_forks, servers, made_for_real):
    r = unit_registry
    names = ["fs%02d" % i for i in range(N)]
    out = guests.ensure_guests(r, [{"name": n} for n in names])
    made_for_real(r, out["results"], names)
    # The module forked the server's clone and the batch's clean mount namespace, not a child per guest
    # (it forked N of them before the server).
    assert len(servers) == 1 and len(module_forks) <= 2, module_forks
    assert servers[0] in module_forks
    assert _gone(servers[0])  # ended with the run, and reaped by it
    again = guests.ensure_guests(r, [{"name": n} for n in names])
    assert not again["changed"] and len(servers) == 1  # a no-change run starts no server
    assert [g["guest"]["init_pid"] for g in again["results"]] == [g["guest"]["init_pid"] for g in out["results"]]


def test_a_batch_without_init_is_made_through_the_fork_server(unit_registry, servers):
    r = unit_registry
    names = ["fsn%02d" % i for i in range(N)]
    out = guests.ensure_guests(r, [{"name": n, "namespaces": ["net", "uts", "mnt"]} for n in names])
    assert len(servers) == 1 and all(g["action"] == "create" for g in out["results"])
    for g in out["results"]:
        meta = r.load(g["name"])
        assert meta.init_pid is None and sorted(meta.pins) == ["mnt", "net", "uts"]
        for t, pin in meta.pins.items():
            assert os.stat(pin.path).st_ino == pin.ino != os.stat("/proc/self/ns/%s" % t).st_ino


def test_a_batch_sharing_namespaces_joins_them_through_the_fork_server(unit_registry, servers):
    r = unit_registry
    src = guests.ensure_guests(r, [{"name": "fsrc"}])["results"][0]["guest"]
    names = ["fsh%02d" % i for i in range(N)]
    out = guests.ensure_guests(r, [{"name": n, "namespaces": ["mnt", "pid"], "share": {"net": "fsrc", "uts": "fsrc"}} for n in names])
    assert len(servers) == 1 and all(g["action"] == "create" for g in out["results"])
    for g in out["results"]:
        pid = g["guest"]["init_pid"]
        for t in ("net", "uts"):  # joined: the source's namespaces, as the kernel says
            assert os.stat("/proc/%d/ns/%s" % (pid, t)).st_ino == src["namespaces"][t]["inode"]
        assert os.stat("/proc/%d/ns/pid" % pid).st_ino not in (src["namespaces"]["pid"]["inode"], os.stat("/proc/self/ns/pid").st_ino)


def test_a_small_batch_forks_its_children_itself(unit_registry, module_forks, servers, made_for_real):
    names = ["fss%d" % i for i in range(3)]
    out = guests.ensure_guests(unit_registry, [{"name": n} for n in names])
    made_for_real(unit_registry, out["results"], names)
    assert servers == [] and len(module_forks) >= len(names)


def test_without_a_fork_server_a_big_batch_forks_its_children_itself(unit_registry, module_forks, monkeypatch, made_for_real):
    def refused(self):
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(forkserver.ForkServer, "__init__", refused)
    names = ["fsf%02d" % i for i in range(N)]
    out = guests.ensure_guests(unit_registry, [{"name": n} for n in names])
    made_for_real(unit_registry, out["results"], names)
    assert len(module_forks) >= N


def test_a_request_too_big_for_the_server_has_its_child_forked_by_the_module(unit_registry, module_forks, servers, monkeypatch, made_for_real):
    monkeypatch.setattr(forkserver, "MAX_SENT", 64)  # every spec is bigger
    names = ["fsb%02d" % i for i in range(N)]
    out = guests.ensure_guests(unit_registry, [{"name": n} for n in names])
    made_for_real(unit_registry, out["results"], names)
    assert len(servers) == 1 and len(module_forks) >= N + 1 and _gone(servers[0])


def test_a_fork_server_killed_mid_batch_fails_the_guests_under_way_and_leaks_nothing(unit_registry, servers, monkeypatch, made_for_real):
    r = unit_registry
    names = ["fsk%02d" % i for i in range(N + 2)]
    real = forkserver.ForkServer.fork
    asked = []

    def fork(self, spec, *args):
        asked.append(spec.name)
        if len(asked) == 3:  # the attacker's (or the OOM killer's) moment: the server dies between two guests
            os.kill(self.clone.pid, signal.SIGKILL)
            for _attempt in range(500):
                if procfs.is_zombie(self.clone.pid):
                    break
                time.sleep(0.01)
        return real(self, spec, *args)

    monkeypatch.setattr(forkserver.ForkServer, "fork", fork)
    with pytest.raises(GuestError) as failed:
        guests.ensure_guests(r, [{"name": n} for n in names])
    # The guests made together (guests._Together) were under way with the third: the children of
    # those not done yet died with the server.  The task stops at the first of them in its order:
    # the guests before it stay, whole; nothing of it or of any guest after it is left.
    first = failed.value.msg.split("'")[1]
    assert first in names[:3] and re.match(r"guest '%s': (the fork server .*(ended|failed)|the process creating its namespaces "
                                           r"died unexpectedly)" % first, failed.value.msg), failed.value.msg
    made = names[: names.index(first)]
    assert [g["name"] for g in failed.value.details["results"]] == made
    assert _gone(servers[0])
    assert sorted(r.names()) == made
    for n in made:
        assert procfs.process_alive(r.load(n).init_pid, None)
    # nothing of the others: no record, no pin or netns name mounted, no cgroup, no context id
    mounts = open("/proc/self/mountinfo").read()
    for n in names[len(made):]:
        assert n not in mounts and not os.path.exists(r.guest_dir(n))
    assert not [d for d, _subdirs, _files in os.walk("/sys/fs/cgroup") if os.path.basename(d) in names[len(made):]]
    assert len(r.used_context_ids()) == len(made)
    monkeypatch.setattr(forkserver.ForkServer, "fork", real)
    out = guests.ensure_guests(r, [{"name": n} for n in names])  # a rerun makes the rest, with a new server
    assert [g["action"] for g in out["results"]] == ["none"] * len(made) + ["create"] * (len(names) - len(made))
    assert len(servers) == 2 and _gone(servers[1])
    made_for_real(r, out["results"][len(made):], names[len(made):])


def test_a_fork_that_fails_leaves_no_fd_open(unit_registry, monkeypatch):
    def no_fork():
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    fds = sorted(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "fork", no_fork)
    with pytest.raises(KernelError, match=r"guest 'fsx': the process that makes its namespaces could not be forked: .*EAGAIN.*pids limit"):
        guests.ensure_guests(unit_registry, [{"name": "fsx"}])
    assert sorted(os.listdir("/proc/self/fd")) == fds  # the handshake's four pipes closed (they stayed open before)
    assert not os.path.exists(unit_registry.guest_dir("fsx")) and "fsx" not in open("/proc/self/mountinfo").read()


@pytest.fixture
def children(monkeypatch):
    """The children C the fork servers forked during the test, as the module got them."""
    got = []
    real = forkserver.ForkServer.fork

    def fork(self, *args, **kwargs):
        child = real(self, *args, **kwargs)
        if child is not None:
            got.append(child)
        return child

    monkeypatch.setattr(forkserver.ForkServer, "fork", fork)
    return got


def _nspid(pid: int) -> list:
    """The pid of ``pid`` in each PID namespace it is in, the host's first (/proc/PID/status NSpid)."""
    with open("/proc/%d/status" % pid) as f:
        return [int(v) for line in f if line.startswith("NSpid:") for v in line.split()[1:]]


def test_the_server_forks_each_guests_init_itself(unit_registry, children, made_for_real):
    """One fork a guest: the server forks C as the first process of the guest's new PID
    namespace, and C is the init (it forked the init from C before: two forks a guest)."""
    names = ["fsi%02d" % i for i in range(N)]
    out = guests.ensure_guests(unit_registry, [{"name": n} for n in names])
    made_for_real(unit_registry, out["results"], names)
    inits = [g["guest"]["init_pid"] for g in out["results"]]
    assert sorted(c.pid for c in children) == sorted(inits) and all(c.is_init for c in children)
    for pid in inits:
        assert _nspid(pid)[1:] == [1]  # PID 1 of a namespace right below the host's
    assert len({os.stat("/proc/%d/ns/pid" % pid).st_ino for pid in inits}) == N
    again = guests.ensure_guests(unit_registry, [{"name": n} for n in names])
    assert not again["changed"] and [g["guest"]["init_pid"] for g in again["results"]] == inits


def test_a_mixed_batch_gives_each_guest_a_pid_namespace_of_its_own_below_the_hosts(unit_registry, children):
    """Guests whose C the server forks into a new PID namespace, between guests whose C forks
    the init (a time namespace: it, like a PID namespace, is for the children of the process
    that makes it): after each, the server's next child is born in the server's own PID
    namespace again - never in the guest before's."""
    entries = []
    for i in range(N):
        if i % 2:
            entries.append({"name": "fsm%02d" % i, "namespaces": ["mnt", "uts", "pid", "time"]})
        else:
            entries.append({"name": "fsm%02d" % i})
    out = guests.ensure_guests(unit_registry, entries)
    assert [g["action"] for g in out["results"]] == ["create"] * N
    host_pid_ns = os.stat("/proc/self/ns/pid").st_ino
    seen = set()
    for entry, res in zip(entries, out["results"]):
        pid = res["guest"]["init_pid"]
        assert procfs.process_alive(pid, None)
        assert _nspid(pid)[1:] == [1], (entry, _nspid(pid))  # one level below the host's, its PID 1
        ino = os.stat("/proc/%d/ns/pid" % pid).st_ino
        assert ino != host_pid_ns and ino not in seen
        seen.add(ino)
        is_init = [c.is_init for c in children if c.pid == pid]
        assert is_init == ([True] if "time" not in entry.get("namespaces", []) else []), entry  # a time guest's init is C's child
    assert len(children) == N
