# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one /proc scanner: processes, their namespaces, tree, start time and the mounts they hold.

:func:`scan` lists the processes once and yields a :class:`Proc` per pid whose
fields (``stat``, ``ns``, ``cwd``...) are read from /proc only when first asked
for, and then kept: a scan is a snapshot, a process that is gone reads as None.
On top of it: :class:`Index` (namespace (type, inode) -> pids, shared by a
removal batch), :func:`tree` (a process, its descendants, its group and
session), :func:`holders` (who keeps a mount busy, like ``fuser -m``) and the
start-time checks :func:`proc_start_time` / :func:`process_alive`, which tell a
recorded process from a later one that reused its pid.

Part of the connection's entry bundle (after syscalls, before registry): it
imports only syscalls (the one table of namespace types) and nothing from Ansible.
"""

from __future__ import annotations

import os

from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc

# Every namespace type a guest may have (the one table, syscalls.NAMESPACES).
NS_TYPES = sc.NS_TYPES


def read_text(path: str) -> str:
    """A small kernel file (a cgroup's control file, a /proc file), read with one open and read: half the
    cost of a text-mode open() where a task reads one per guest."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks).decode("utf-8", "replace")
            chunks.append(chunk)
    finally:
        os.close(fd)


def write_text(path: str, text: str) -> None:
    """Write a kernel file (a cgroup's control file, a sysctl) as runc's fscommon does:
    O_WRONLY|O_TRUNC, never O_CREAT (no stray files), one write."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode() or b"\n")   # an empty write() may never reach the kernel's handler
    finally:
        os.close(fd)


def _stat_fields(pid: int):
    """The fields of /proc/PID/stat after comm (state first), or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    return data[data.rindex(b")") + 2 :].split()


class Proc:
    """One process of a scan; fields are read lazily and kept (None: gone or unreadable)."""

    __slots__ = ("_ns", "_stat", "pid")

    def __init__(self, pid: int):
        self.pid = pid
        self._stat = False
        self._ns = {}

    def __repr__(self) -> str:
        return "Proc(%d)" % self.pid

    @property
    def base(self) -> str:
        return "/proc/%d/" % self.pid

    @property
    def stat(self):
        if self._stat is False:
            self._stat = _stat_fields(self.pid)
        return self._stat

    def _field(self, i: int):
        fields = self.stat
        return None if fields is None else fields[i]

    def _int(self, i: int):
        v = self._field(i)
        return None if v is None else int(v)

    @property
    def state(self):
        """The state letter as bytes (b"R", b"S", b"Z"...)."""
        return self._field(0)

    @property
    def dead(self) -> bool:
        """A zombie, dead, or gone."""
        return self.state in (None, b"Z", b"X")

    @property
    def ppid(self):
        return self._int(1)

    @property
    def pgrp(self):
        return self._int(2)

    @property
    def session(self):
        return self._int(3)

    @property
    def start_time(self):
        """Start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
        return self._int(19)

    def ns(self, nstype: str):
        """The inode of the process's namespace of ``nstype``, or None."""
        if nstype not in self._ns:
            try:
                target = os.readlink(self.base + "ns/" + nstype)
                self._ns[nstype] = int(target[target.index("[") + 1 : -1])
            except (OSError, ValueError):
                self._ns[nstype] = None
        return self._ns[nstype]

    def comm(self) -> str:
        try:
            with open(self.base + "comm") as f:
                return f.read().strip()
        except OSError:
            return "?"

    def cgroup(self):
        """The cgroup v2 path (``0::/...`` line of /proc/PID/cgroup), or None."""
        try:
            with open(self.base + "cgroup") as f:
                for line in f:
                    if line.startswith("0::"):
                        return line[3:].rstrip("\n")
        except OSError:
            pass
        return None

    def fds(self) -> list:
        """The process's open descriptor numbers, as text ([] when it is gone)."""
        try:
            return os.listdir(self.base + "fd")
        except OSError:
            return []


def pids() -> list:
    """The pids /proc lists now."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def scan(skip_self: bool = False):
    """One :class:`Proc` per process in /proc (ours left out with ``skip_self``)."""
    me = os.getpid() if skip_self else None
    for pid in pids():
        if pid != me:
            yield Proc(pid)


# ---------------------------------------------------------------------------------------
# Start time: a recorded process, not whoever reused its pid
# ---------------------------------------------------------------------------------------
def proc_start_time(pid: int):
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), or None."""
    return Proc(pid).start_time


def process_alive(pid, start) -> bool:
    """True when ``pid`` runs and is the same process (start time) as recorded."""
    if not pid:
        return False
    proc = Proc(int(pid))  # one read of its stat for both
    now = proc.start_time
    return now is not None and (start is None or now == start) and not proc.dead


def is_zombie(pid: int) -> bool:
    """True when ``pid`` is a zombie, dead, or gone."""
    return Proc(int(pid)).dead


# ---------------------------------------------------------------------------------------
# Namespaces and the process tree
# ---------------------------------------------------------------------------------------
class Index:
    """One scan of /proc: namespace (type, inode) -> pids (shared by a batch)."""

    def __init__(self, types=NS_TYPES):
        self.by_ns = {}
        for proc in scan():
            for t in types:
                ino = proc.ns(t)
                if ino is not None:
                    self.by_ns.setdefault((t, ino), set()).add(proc.pid)

    def pids(self, nstype: str, ino) -> set:
        """The pids in the namespace (a new set)."""
        return set(self.by_ns.get((nstype, ino), ()))


def table() -> dict:
    """pid -> (ppid, pgrp, session) of every process in our /proc."""
    out = {}
    for proc in scan():
        fields = proc.stat
        if fields is not None:
            out[proc.pid] = (int(fields[1]), int(fields[2]), int(fields[3]))
    return out


def tree(pid: int, procs: dict | None = None) -> set:
    """``pid``, its descendants and the members of its process group and session.

    ``procs``: a :func:`table` (a fresh one when None).
    """
    procs = table() if procs is None else procs
    found = {pid}
    for p, (_ppid, pgrp, sid) in procs.items():
        if pgrp == pid or sid == pid:
            found.add(p)
    grew = True
    while grew:
        grew = False
        for p, (ppid, _pgrp, _sid) in procs.items():
            if ppid in found and p not in found:
                found.add(p)
                grew = True
    return found


def children(pid: int, procs: dict | None = None) -> set:
    """The direct children of ``pid``."""
    procs = table() if procs is None else procs
    return {p for p, (ppid, _pgrp, _sid) in procs.items() if ppid == pid}


# ---------------------------------------------------------------------------------------
# Who holds a mount
# ---------------------------------------------------------------------------------------
def fdinfo_mnt_id(path: str):
    """The ``mnt_id:`` of an fdinfo file, or None."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("mnt_id:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def mnt_id_of(path: str):
    """The mount id of what ``path`` (a /proc magic link such as cwd) leads to, or None."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return fdinfo_mnt_id("/proc/self/fdinfo/%d" % fd)
    finally:
        os.close(fd)


def under_any(path: str, prefixes) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def holders(mnt_ino, mount_id, mirror_prefixes=()) -> list:
    """Processes that keep a mount busy (like fuser -m), as text.

    In the mount namespace ``mnt_ino``: cwd, root or an open file on the mount
    ``mount_id`` (mount ids from fdinfo).  With ``mirror_prefixes``: processes of
    other mount namespaces whose cwd, root or open file lies below one of them.
    """
    out = []
    for proc in scan(skip_self=True):
        ns = proc.ns("mnt")
        if ns is None:
            continue
        in_guest = ns == mnt_ino
        if not in_guest and not mirror_prefixes:
            continue
        base = proc.base
        why = []
        for what in ("cwd", "root"):
            try:
                if (mnt_id_of(base + what) == mount_id) if in_guest else under_any(os.readlink(base + what), mirror_prefixes):
                    why.append(what)
            except OSError:
                pass
        for fd in proc.fds():
            try:
                if (fdinfo_mnt_id(base + "fdinfo/" + fd) == mount_id) if in_guest else under_any(os.readlink(base + "fd/" + fd), mirror_prefixes):
                    why.append("fd %s" % fd)
            except OSError:
                pass
        if why:
            where = "" if in_guest else " on the host, in the mirror"
            out.append("pid %d (%s%s: %s)" % (proc.pid, proc.comm(), where, ", ".join(why[:4])))
    return out
