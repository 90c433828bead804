# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stopping and removing a guest: signalling its processes (one /proc index per batch),
sweeping what is left in its namespaces, unpinning, and removing its state.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import time

from ansible_collections.linuxns.guests.plugins.module_utils import procfs
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    GuestError,
    KernelError,
)
from ansible_collections.linuxns.guests.plugins.module_utils.guest_spec import CgroupRun


def unpin(path: str) -> None:
    for _attempt in range(16):  # stacked mounts from a crash: detach them all
        try:
            sc.umount2(path, sc.MNT_DETACH | sc.UMOUNT_NOFOLLOW)
        except KernelError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                break
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def kill_wait(pid, start, sig, timeout) -> bool:
    """Send ``sig`` to the recorded process; True when it is gone within ``timeout``."""
    if not procfs.process_alive(pid, start):
        return True
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    delay = 0.002
    while time.monotonic() < deadline:
        if not procfs.process_alive(pid, start):
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return not procfs.process_alive(pid, start)


class ProcIndex(procfs.Index):
    """One scan of /proc: namespace inode -> pids (shared by a batch), and a guest's members."""

    def members(self, meta: reg.GuestRecord, others=()) -> set:
        """Processes of the guest: those in its private pid namespace, else in its
        private mount namespace, else in any of its private namespaces that are
        not members of another guest (``others``: their metadata) by pid or mnt."""
        pins = meta.pins
        private = meta.namespaces
        for t in ("pid", "mnt"):
            if t in private and t in pins:
                pids = self.pids(t, pins[t].ino)
                pids.discard(os.getpid())
                return pids
        pids = set()
        for t in private:
            if t in pins:
                pids |= self.by_ns.get((t, pins[t].ino), set())
        for other in others:
            if other is meta or other.name == meta.name:
                continue
            for t in ("pid", "mnt"):
                pin = other.pins.get(t)
                if pin and t in other.namespaces:
                    pids -= self.by_ns.get((t, pin.ino), set())
        pids.discard(os.getpid())
        return pids


def stop_processes(meta: reg.GuestRecord, proc_index=None, registry=None) -> None:
    """Stop the guest's processes: init-based or init-less semantics (docs/concepts.md)."""
    init_pid, init_start = meta.init_pid, meta.init_start
    timeout = float(meta.stop_timeout or 0)
    sig = getattr(signal, meta.stop_signal or "SIGTERM", signal.SIGTERM)
    if meta.init and init_pid:
        # Init-based guest: ask its init to halt, wait, then kill (the kernel kills the rest).
        if not kill_wait(init_pid, init_start, sig, timeout):
            kill_wait(init_pid, init_start, signal.SIGKILL, 10.0)
        return
    index = proc_index or ProcIndex()
    others = ()
    if not {"pid", "mnt"} & set(meta.namespaces) and registry is not None:
        others = [m for m in (registry.load(n) for n in registry.names()) if m]
    members = index.members(meta, others)
    if init_pid:
        members.discard(init_pid)
    starts = {pid: procfs.proc_start_time(pid) for pid in members}
    if members:
        for pid in members:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(procfs.process_alive(p, starts[p]) for p in members):
            time.sleep(0.05)
        for pid in members:
            if procfs.process_alive(pid, starts[pid]):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    if init_pid:
        kill_wait(init_pid, init_start, signal.SIGKILL, 10.0)


SWEEP_ROUNDS = 50


def sweep(meta: reg.GuestRecord, registry=None) -> int:
    """Kill every process still in one of the guest's private namespaces; how many
    (:func:`sweep_many` for one guest)."""
    return sweep_many([meta], registry)


def sweep_many(metas, registry=None, batch=()) -> int:
    """Kill every process still in one of the guests' private namespaces; how many.

    After :func:`stop_processes` (whose /proc scan may predate the lock, and which
    only looks at the pid namespace of a guest that has one), something may still
    be inside: a process that entered a subset of the namespaces (only ``net``...),
    or one forked after the scan.  The caller holds every guest's lock, so nothing
    new can join (see :func:`enter.lock_shared`): each round builds one index of
    /proc (:class:`procfs.Index`, whatever the number of guests), matches every
    guest's namespace inodes against it and stops each member found (SIGSTOP: no
    more forks).  Two rounds in a row that find nothing new (nor a member that
    vanished before it could be stopped) end the sweep; then every stopped process
    is killed.  Removal is final.  ``registry`` (None: nothing else holds these
    namespaces) tells namespaces that live on elsewhere (shared with another guest)
    from those of the guests: their processes are not killed.  ``batch``: the names of
    every guest removed with these (their pins keep nothing alive).
    """
    names = sorted({m.name for m in metas} | set(batch))
    owned = {}  # (type, inode) -> guest name: the namespaces to empty
    for meta in metas:
        pins = meta.pins
        for t in meta.namespaces:
            if t in pins:
                owned[(t, pins[t].ino)] = meta.name
    if not owned:
        return 0
    checked = registry is None
    me = os.getpid()

    def member(proc) -> bool:
        return any((t, proc.ns(t)) in owned for t in types)

    stopped = {}  # pid -> pidfd (-1 without pidfd_open): signals reach that process, never a reused pid
    quiet = 0
    for _round in range(SWEEP_ROUNDS):
        types = sorted({t for t, _ino in owned})
        index = procfs.Index(types)  # the round's one scan of /proc
        found = {pid for key in owned for pid in index.by_ns.get(key, ())} - {me} - set(stopped)
        if found and not checked:
            # A namespace another guest shares (or anything else keeps mounted) lives
            # on with it: its processes are not these guests' to kill.
            checked = True
            for key in _held_elsewhere(registry, names, owned):
                owned.pop(key)
            types = sorted({t for t, _ino in owned})
            found = {pid for key in owned for pid in index.by_ns.get(key, ())} - {me} - set(stopped)
        for pid in sorted(found):
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue  # gone since the scan (counted below: maybe it forked first)
            except (AttributeError, OSError):  # no pidfd_open (Python < 3.9, kernel < 5.3)
                pidfd = -1
            if pidfd >= 0 and not member(procfs.Proc(pid)):  # gone (and maybe reused) since the scan
                os.close(pidfd)
                continue
            stopped[pid] = pidfd
            _signal(pid, pidfd, signal.SIGSTOP)  # at once: no more forks from it
        # A process may fork and exit while a scan runs (its child is not in that
        # scan's listing, and it is gone when its turn comes): only two scans in a
        # row that find no member left running end the sweep.
        quiet = quiet + 1 if not found else 0
        if quiet >= 2:
            break
    for pid, pidfd in stopped.items():
        _signal(pid, pidfd, signal.SIGKILL)
        if pidfd >= 0:
            os.close(pidfd)
    return len(stopped)


def _held_elsewhere(registry, names, owned: dict) -> set:
    """Keys of ``owned`` ((type, inode) -> guest name) whose namespace is mounted somewhere
    other than the pins and /run/netns names of the guests ``names`` (another guest's pin
    above all; a guest of ``names`` that shares one's namespace goes too, so its pin keeps
    nothing alive).  One read of our mountinfo."""
    own = set()
    for n in names:
        own |= {os.path.realpath(registry.pin_path(n, t)) for t in sc.NS_TYPES}
        own.add(os.path.realpath(registry.alias_path(n)))
    keys = {"%s:[%d]" % key: key for key in owned}
    held = set()
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(None, 5)
            key = keys.get(fields[3].decode(errors="replace"))
            if key is not None and fields[4].decode(errors="replace").replace("\\040", " ") not in own:
                held.add(key)
    return held


def _signal(pid: int, pidfd: int, sig) -> None:
    try:
        if pidfd >= 0:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, OSError):
        pass


def remove(registry: reg.Registry, name: str, meta, keep_context_id: bool = False, proc_index=None, cgroup_run=None) -> None:
    """Stop and dispose of a guest, also one left half-made by a crash (under its lock)."""
    meta = meta or reg.GuestRecord(name)
    stop_many(registry, [meta], proc_index)
    dispose(registry, name, meta, keep_context_id, cgroup_run)


def stop_many(registry: reg.Registry, metas, proc_index=None) -> None:
    """Stop the processes of guests being removed, then sweep all their namespaces at once
    (:func:`sweep_many`: one /proc scan per round for the whole batch).  The caller holds
    every guest's lock."""
    running = [m for m in metas if m.phase == reg.READY or m.init_pid]
    for meta in running:
        stop_processes(meta, proc_index, registry)
    sweep_many(running, registry, [m.name for m in metas])


def dispose(registry: reg.Registry, name: str, meta, keep_context_id: bool = False, cgroup_run=None) -> None:
    """Remove a stopped guest's cgroup (whatever is still in it killed), unpin it and remove its
    state (its context id too, unless kept).  ``cgroup_run``: the run's guest_spec.CgroupRun."""
    meta = meta or reg.GuestRecord(name)
    if meta.cgroup:
        try:
            (cgroup_run or CgroupRun()).of(meta).remove()
        except GuestError as exc:
            raise exc.for_guest(name) from None
    alias = registry.alias_path(name)
    alias_id = reg.ns_id(alias)
    if alias_id is not None:
        ours = {p.ino for p in meta.pins.values()}
        net_pin = reg.ns_id(registry.pin_path(name, "net"))
        if net_pin:
            ours.add(net_pin[1])
        if alias_id[1] in ours:
            unpin(alias)
    pin_dir = registry.pin_dir(name)
    try:
        leaves = os.listdir(pin_dir)
    except FileNotFoundError:
        leaves = []
    for leaf in leaves:
        unpin(os.path.join(pin_dir, leaf))
    if not keep_context_id:
        registry.release_context_id(name, meta.context_id)
    shutil.rmtree(registry.guest_dir(name), ignore_errors=True)
