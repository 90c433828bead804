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
    KernelError,
)


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
    """Kill every process still in one of the guest's private namespaces; how many.

    After :func:`stop_processes` (whose /proc scan may predate the lock, and which
    only looks at the pid namespace of a guest that has one), something may still
    be inside: a process that entered a subset of the namespaces (only ``net``...),
    or one forked after the scan.  Under the guest's lock nothing new can join (see
    :func:`enter.lock_shared`), so fresh scans stop every member (SIGSTOP: no more
    forks) until one finds no new one, then kill them all.  Removal is final.
    """
    pins = meta.pins
    wanted = {t: pins[t].ino for t in meta.namespaces if t in pins}
    if not wanted:
        return 0
    checked = [registry is None]

    def member(proc) -> bool:
        for t, ino in list(wanted.items()):
            if proc.ns(t) != ino:
                continue
            if not checked[0]:
                # A namespace another guest shares (or anything else keeps mounted)
                # lives on with it: its processes are not this guest's to kill.
                checked[0] = True
                for held in _held_elsewhere(registry, meta.name, wanted):
                    wanted.pop(held)
                return member(proc)
            return True
        return False

    stopped = {}  # pid -> pidfd (-1 without pidfd_open): signals reach that process, never a reused pid
    quiet = 0
    for _round in range(SWEEP_ROUNDS):
        new = 0
        for proc in procfs.scan(skip_self=True):
            if proc.pid in stopped or not member(proc):
                continue
            pid = proc.pid
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            except (AttributeError, OSError):  # no pidfd_open (Python < 3.9, kernel < 5.3)
                pidfd = -1
            if pidfd >= 0 and not member(procfs.Proc(pid)):  # gone (and maybe reused) since the check
                os.close(pidfd)
                continue
            stopped[pid] = pidfd
            _signal(pid, pidfd, signal.SIGSTOP)  # at once: no more forks from it
            new += 1
        # A process may fork and exit while a scan runs (its child is not in that
        # scan's listing, and it is gone when its turn comes): two scans in a row
        # that find nothing new end the sweep.
        quiet = quiet + 1 if not new else 0
        if quiet >= 2:
            break
    for pid, pidfd in stopped.items():
        _signal(pid, pidfd, signal.SIGKILL)
        if pidfd >= 0:
            os.close(pidfd)
    return len(stopped)


def _held_elsewhere(registry, name: str, wanted: dict) -> set:
    """Types of ``wanted`` (type -> inode) whose namespace is mounted somewhere other than
    this guest's own pins and /run/netns name (another guest's pin above all)."""
    own = {os.path.realpath(p) for p in [registry.pin_path(name, t) for t in wanted] + [registry.alias_path(name)]}
    keys = {"%s:[%d]" % (t, ino): t for t, ino in wanted.items()}
    held = set()
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(None, 5)
            t = keys.get(fields[3].decode(errors="replace"))
            if t is not None and fields[4].decode(errors="replace").replace("\\040", " ") not in own:
                held.add(t)
    return held


def _signal(pid: int, pidfd: int, sig) -> None:
    try:
        if pidfd >= 0:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, OSError):
        pass


def remove(registry: reg.Registry, name: str, meta, keep_context_id: bool = False, proc_index=None) -> None:
    """Stop and dispose of a guest, also one left half-made by a crash."""
    meta = meta or reg.GuestRecord(name)
    if meta.phase == reg.READY or meta.init_pid:
        stop_processes(meta, proc_index, registry)
        sweep(meta, registry)
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
