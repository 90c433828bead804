"""Per-task work that must not be repeated per guest (issue 18, 10,000 guests on one host).

Each test counts how often a step that costs O(guests on the host) runs in one task of N
guests, and asserts it stays constant - the kernel or the files do the real work (no mocks:
the counted functions are wrapped and still called).
"""

from __future__ import annotations

import os
import resource

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import guest_spec, guests, links
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc

pytestmark = pytest.mark.unit


def _counting(monkeypatch, module, name, counts, key):
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        counts[key] = counts.get(key, 0) + 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def test_run_netns_is_made_rshared_once_per_task(unit_registry, monkeypatch):
    """MS_SHARED|MS_REC on /run/netns walks every alias below it (one per guest): once per task,
    not once per new guest (1.3 ms per call at 1000 guests, 13 ms at 10,000 - quadratic)."""
    r = unit_registry
    real = sc.mount
    rshared = []

    def mount(source, target, fstype, flags, data=None):
        done = real(source, target, fstype, flags, data)
        if target == r.netns_dir and flags & sc.MS_SHARED and flags & sc.MS_REC:
            rshared.append(target)  # made (the first try on a folder that is no mount point fails: EINVAL)
        return done

    monkeypatch.setattr(sc, "mount", mount)
    out = guests.ensure_guests(r, [{"name": "rs%d" % i, "namespaces": ["net"], "_in_list": True} for i in range(4)])
    assert [x["action"] for x in out["results"]] == ["create"] * 4
    assert len(rshared) == 1
    # a second task (a new Registry per task, as the module makes) sets it up once again
    again = type(r)(r.state_dir, r.netns_dir)
    guests.ensure_guests(again, [{"name": "rs9", "namespaces": ["net"]}])
    assert len(rshared) == 2


def test_the_guests_of_a_task_share_one_batch(unit_registry, monkeypatch):
    """The batch (earlier entries of the task, for share: NAME) is one dict for the task; a copy
    per guest was O(n^2) in time and memory (10,000 copies of up to 10,000 entries)."""
    made = []

    class Recorded(guest_spec.Spec):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(guests, "Spec", Recorded)
    n = 40
    entries = [{"name": "b%d" % i, "_in_list": True} for i in range(n)]
    entries.append({"name": "bshare", "namespaces": ["uts"], "share": {"net": "b3"}, "_in_list": True})
    out = guests.ensure_guests(unit_registry, entries, check_mode=True)
    assert out["changed"] and len(out["results"]) == n + 1
    assert len(made) == n + 1
    assert len({id(s.batch) for s in made}) == 1
    assert len(made[0].batch) == n + 1
    assert made[-1].deferred == ["net"]  # share of a guest listed before still resolves through it


def test_a_no_change_run_reads_each_guest_record_once(unit_registry, monkeypatch):
    """A no-change rerun reads each guest's record once (the plan keeps it); it read it three
    times (the plan, the freeze/signal part of the plan, the result).  After a change earlier
    in the run, later results are read again: that change may have touched them."""
    entries = [{"name": "r%d" % i, "namespaces": ["uts"], "_in_list": True} for i in range(6)]
    assert guests.ensure_guests(unit_registry, entries)["changed"]
    reads = []
    real = type(unit_registry).load

    def counted(self, name):
        reads.append(name)
        return real(self, name)

    monkeypatch.setattr(type(unit_registry), "load", counted)
    out = guests.ensure_guests(unit_registry, entries)
    assert not out["changed"] and all(r["guest"]["name"] == r["name"] for r in out["results"])
    assert sorted(reads) == sorted(e["name"] for e in entries)
    reads.clear()
    changed = [dict(entries[0], hostname="changed-r0")] + entries[1:]
    out = guests.ensure_guests(unit_registry, changed)
    assert out["results"][0]["changed"] and out["results"][1]["guest"]["name"] == "r1"
    assert reads.count("r1") == 2  # the plan's read, and the result's after r0 changed


def test_a_big_removal_is_one_batch_with_one_sweep(unit_registry, monkeypatch):
    """Removing many guests in one task stops and sweeps them as one batch (each batch scans
    /proc two rounds or more): 300 guests were two batches of at most 256 before, so a
    10,000-guest teardown scanned /proc ~100 times; now the batch is as big as the fds allow."""
    from ansible_collections.linuxns.guests.plugins.module_utils import guest_stop

    n = 300
    entries = [{"name": "rm%d" % i, "namespaces": ["uts"], "_in_list": True} for i in range(n)]
    made = guests.ensure_guests(unit_registry, entries)
    assert [x["action"] for x in made["results"]] == ["create"] * n
    counts = {}
    _counting(monkeypatch, guests, "stop_many", counts, "batches")
    _counting(monkeypatch, guest_stop.procfs, "Index", counts, "scans")
    gone = guests.ensure_guests(unit_registry, [dict(e, state="absent") for e in entries])
    assert [x["action"] for x in gone["results"]] == ["remove"] * n
    assert counts["batches"] == 1, counts
    assert counts["scans"] <= guest_stop.SWEEP_ROUNDS
    assert not any(unit_registry.load(e["name"]) for e in entries)


def _sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink("/proc/self/fd/" + fd).startswith("socket:")
        except OSError:  # listdir's own fd, closed by now
            pass
    return count


def test_links_of_many_guests_keep_few_sockets_open(unit_registry, monkeypatch):
    """A netlink socket (3 fds with pyroute2 0.7) is not kept open per guest for the whole task:
    at 10,000 guests that was 30,000 fds besides the guests' locks (EMFILE; at ~250 guests under
    a soft limit of 1024).  Counted at each apply: the planned guests' sockets are closed."""
    pytest.importorskip("pyroute2")
    r = unit_registry
    n = 6
    guests.ensure_guests(r, [{"name": "hub", "namespaces": ["net"], "_in_list": True}]
                         + [{"name": "l%d" % i, "namespaces": ["net"], "_in_list": True} for i in range(n)])
    entries = [{"guest": "l%d" % i, "ifname": "eth0", "addresses": ["198.19.200.%d/24" % (i + 2)],
                "peer": {"guest": "hub", "ifname": "vsc%d" % i}} for i in range(n)]
    base = _sockets()
    probe = links.pyroute2_module().IPRoute()
    per_socket = _sockets() - base  # 1 with pyroute2 0.7; 0.9 adds its event loop's socketpair
    probe.close()
    open_at_apply = []
    real = links.apply_plan

    def apply_plan(net, p):
        open_at_apply.append(_sockets() - base)
        return real(net, p)

    monkeypatch.setattr(links, "apply_plan", apply_plan)
    try:
        out = links.ensure_links(r, entries)
        assert [x["action"] for x in out["results"]] == ["create"] * n
        assert len(open_at_apply) == n
        assert max(open_at_apply) <= 2 * per_socket, open_at_apply  # the host's (and one more), not one per guest
        again = links.ensure_links(r, entries)
        assert not again["changed"] and len(open_at_apply) == n
        assert _sockets() == base
    finally:
        links.ensure_links(r, [dict(e, state="absent") for e in entries])


def test_room_for_fds_raises_the_soft_limit_up_to_the_hard_one():
    """A task that locks N guests raises its soft RLIMIT_NOFILE to fit them (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
        assert sc.room_for_fds(10) == 10
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (512, hard)  # enough already
        assert sc.room_for_fds(1000) == (1000 if hard == resource.RLIM_INFINITY or hard >= 1256 else hard - 256)
        want = 1256 if hard == resource.RLIM_INFINITY else min(1256, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (want, hard)
        if hard != resource.RLIM_INFINITY:
            assert sc.room_for_fds(hard + 10) == hard - 256  # as many as fit
            assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
