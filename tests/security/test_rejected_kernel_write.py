# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""namespace_create when the kernel rejects a time-offset or id-map write.

The process creating the namespaces waits for the module to write its
/proc/PID/{uid_map,gid_map,timens_offsets}.  When the kernel refused that write, the
module waited for the child while still holding the write end of the pipe the child
was reading: the task never returned, the guest's lock stayed held and the guest
stayed in ``phase: creating``.  Whoever can pass a guest's parameters (an inventory,
a role's variables) could wedge the host's guest management that way.
"""

from __future__ import annotations

import fcntl
import os

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import guests
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError

pytestmark = pytest.mark.unit

NAME = "sec-kw"
DEFAULTS = ["mnt", "uts", "ipc", "net", "pid"]


def children() -> set:
    """pids whose parent is this process (the unit tests' process is a subreaper: an
    init orphaned by a failed create would show up here)."""
    found = set()
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if int(data[data.rindex(b")") + 2:].split()[1]) == me:
                found.add(int(entry))
    return found


def mounts_under(*paths) -> list:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [m for m in points if any(m == p or m.startswith(p.rstrip("/") + "/") for p in paths)]


def assert_nothing_left(registry, before_children: set) -> None:
    assert registry.load(NAME) is None, "a registry entry is left (phase creating?)"
    assert NAME not in registry.names()
    assert not os.path.exists(registry.guest_dir(NAME))
    assert not os.path.exists(registry.alias_path(NAME)), "the /run/netns name is left"
    assert mounts_under(registry.guests_dir, registry.alias_path(NAME)) == [], "a pin is left mounted"
    assert registry.used_context_ids() == set(), "the context id is still reserved"
    assert children() - before_children == set(), "a process of the failed create is left"
    # the guest's lock is free (or was never made: refused before the lock was taken)
    try:
        fd = os.open(os.path.join(registry.locks_dir, NAME + ".lock"), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("params, param", [
    ({"namespaces": DEFAULTS + ["time"], "time_offsets": {"monotonic": -1e9}}, "time_offsets"),
    ({"namespaces": DEFAULTS + ["user"], "uid_map": ["0 0 1", "0 1000 1"]}, "uid_map"),
    ({"namespaces": DEFAULTS + ["user"], "uid_map": ["0 4294967295 10"]}, "uid_map"),
    ({"namespaces": DEFAULTS + ["user"], "gid_map": ["0 0 1", "0 5000 1"]}, "gid_map"),
], ids=["monotonic-minus-1e9", "uid-map-overlap", "uid-map-out-of-range", "gid-map-overlap"])
def test_rejected_write_fails_cleanly_and_rolls_back(unit_registry, params, param):
    """Denial of service by a parameter the kernel rejects (a hang holding the guest's
    lock).  pytest-timeout is the hang guard: the create must fail with a message that
    names the parameter and the kernel's errno, leave nothing behind (registry entry,
    pins, /run/netns name, processes, context id), free the lock, and a following valid
    create of the same name must work."""
    before = children()
    with pytest.raises(GuestError) as info:
        guests.ensure_guests(unit_registry, [dict(params, name=NAME)])
    msg = info.value.msg
    assert NAME in msg and param in msg and "the kernel refused" in msg
    assert "(EINVAL)" in msg or "(ERANGE)" in msg or "(EPERM)" in msg
    assert_nothing_left(unit_registry, before)

    valid = dict(params, name=NAME)
    valid.pop(param)
    if param == "time_offsets":
        valid["time_offsets"] = {"monotonic": 5}
    res = guests.ensure_guests(unit_registry, [valid])
    assert res["changed"] and unit_registry.find(NAME).phase == "ready"


@pytest.mark.timeout(60)
def test_non_finite_time_offset_is_refused_before_the_kernel(unit_registry):
    """The same hang through an offset Python cannot turn into an integer (inf)."""
    before = children()
    with pytest.raises(GuestError, match=r"time_offsets\.monotonic must be a finite number of seconds, not inf"):
        guests.ensure_guests(unit_registry, [{"name": NAME, "namespaces": DEFAULTS + ["time"],
                                              "time_offsets": {"monotonic": "inf"}}])
    assert_nothing_left(unit_registry, before)
