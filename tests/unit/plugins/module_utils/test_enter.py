"""The enter path: joining a guest's namespaces the way nsenter does."""

from __future__ import annotations

import os

from ansible_collections.linuxns.guests.plugins.module_utils import enter, guests


def _ns(t: str, pid="self") -> tuple:
    st = os.stat("/proc/%s/ns/%s" % (pid, t))
    return st.st_dev, st.st_ino


def test_join_skips_the_user_namespace_we_are_in():
    """setns() into our own user namespace is EINVAL: like nsenter, it is skipped (the fds are still closed)."""
    user = os.open("/proc/self/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    uts = os.open("/proc/self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
    assert enter.is_own_namespace(user, "user") and enter.is_own_namespace(uts, "uts")
    before = _ns("user"), _ns("uts")
    enter.join_namespaces([("user", user), ("uts", uts)])
    assert (_ns("user"), _ns("uts")) == before
    for fd in (user, uts):
        try:
            os.fstat(fd)
        except OSError:
            continue
        raise AssertionError("fd %d was left open" % fd)


def test_a_guest_sharing_the_hosts_user_namespace_is_created_and_entered(unit_registry):
    """share.user naming our own user namespace: created and entered without setns(user)."""
    guests.ensure_guests(unit_registry, [{"name": "hu", "namespaces": ["uts"], "share": {"user": "/proc/self/ns/user"}}])
    meta = unit_registry.load("hu")
    assert "user" in enter.guest_types(meta) and meta.pins["user"].ino == _ns("user")[1]

    def inside():
        return os.uname().nodename, list(_ns("user")), list(_ns("uts"))

    name, user, uts = enter.call_in_guest(meta, None, inside)
    assert name == "hu" and tuple(user) == _ns("user") and tuple(uts) != _ns("uts")
