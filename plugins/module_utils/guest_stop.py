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
from ansible_collections.linuxns.guests.plugins.module_utils.threads import in_threads


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


def signal_recorded(pid, start, sig) -> bool:
    """Send ``sig`` to the recorded process (pid and start time), never to a later one that
    reused its pid (through a pidfd where there is pidfd_open); False when it is gone."""
    pidfd = _open_pidfd(pid)
    if pidfd is None:
        return False
    try:
        return procfs.process_alive(pid, start) and _signal(pid, pidfd, sig)
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def kill_wait(pid, start, sig, timeout) -> bool:
    """Send ``sig`` to the recorded process; True when it is gone within ``timeout``."""
    return not halt_all([(pid, start, sig, timeout)], kill_after=None)


KILL_WAIT = 10.0  # seconds to wait for a process after SIGKILL (the kernel may be slow to end it)


def halt_all(todo, kill_after=KILL_WAIT) -> list:
    """Stop many recorded processes at once: ``todo`` is (pid, start, signal, timeout) per
    process.  Each gets its signal first, all of them before any wait, then they are waited
    for together; one still running at the end of its own timeout gets SIGKILL and up to
    ``kill_after`` seconds more (None: no SIGKILL).  Returns the (pid, start) of those still
    running at the end.

    A removal of N guests whose inits ignore their stop signal (a shell as PID 1 does) waits
    one stop_timeout in all, not N of them, as ``podman stop`` of many containers does."""
    now = time.monotonic()
    waiting = {}  # (pid, start) -> [deadline, killed]
    for pid, start, sig, timeout in todo:
        if signal_recorded(pid, start, sig):
            waiting[(pid, start)] = [now + timeout, False]
    left = []
    delay = 0.001
    while waiting:
        for key in [k for k in waiting if not procfs.process_alive(*k)]:
            del waiting[key]
        now = time.monotonic()
        for key, state in list(waiting.items()):
            if now < state[0]:
                continue
            if not state[1] and kill_after is not None:
                if signal_recorded(key[0], key[1], signal.SIGKILL):
                    state[:] = [now + kill_after, True]
                else:
                    del waiting[key]  # gone meanwhile
                continue
            del waiting[key]
            left.append(key)
        if waiting:
            time.sleep(min(delay, min(d for d, _killed in waiting.values()) - now))
            delay = min(delay * 2, 0.1)
    return [k for k in left if procfs.process_alive(*k)]


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
    """Stop one guest's processes (:func:`halt_guests` for one guest)."""
    halt_guests([meta], proc_index, registry)


def halt_guests(metas, proc_index=None, registry=None) -> None:
    """Stop the processes of guests, init-based or init-less (docs/concepts.md), all at once.

    Every init, and every member of an init-less guest, gets its guest's stop_signal before
    the first wait; then all are waited for together, each up to its guest's stop_timeout,
    and killed after it (:func:`halt_all`).  Last, the reapers of the init-less guests get
    SIGKILL, together (the kernel kills the rest of a PID namespace with its PID 1).
    ``proc_index``: a /proc scan to use (one is made when an init-less guest needs it)."""
    todo, reapers = [], []
    index = proc_index
    others = None  # every guest's record: only for a guest with neither a private pid nor mnt namespace
    for meta in metas:
        sig, timeout = getattr(signal, meta.stop_signal or "SIGTERM", signal.SIGTERM), float(meta.stop_timeout or 0)
        if meta.init and meta.init_pid:
            todo.append((meta.init_pid, meta.init_start, sig, timeout))
            continue
        index = index or ProcIndex()
        if others is None and registry is not None and not {"pid", "mnt"} & set(meta.namespaces):
            others = [m for m in (registry.load(n) for n in registry.names()) if m]
        members = index.members(meta, others or ())
        members.discard(meta.init_pid)
        for pid in members:
            start = procfs.proc_start_time(pid)
            if start is not None:  # else gone since the scan: its pid is no longer its own
                todo.append((pid, start, sig, timeout))
        if meta.init_pid:
            reapers.append((meta.init_pid, meta.init_start, signal.SIGKILL, KILL_WAIT))
    halt_all(todo)
    halt_all(reapers, kill_after=None)


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
            pidfd = _open_pidfd(pid)
            if pidfd is None:
                continue  # gone since the scan (counted below: maybe it forked first)
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


def _open_pidfd(pid: int):
    """A pidfd of ``pid``: -1 where there is no pidfd_open (Python < 3.9, kernel < 5.3), None
    when the process is gone."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except (AttributeError, OSError):
        return -1


def _signal(pid: int, pidfd: int, sig) -> bool:
    """Send ``sig`` through ``pidfd`` (-1: by pid); False when it could not be sent (gone)."""
    try:
        if pidfd >= 0:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
    except OSError:  # ProcessLookupError above all
        return False
    return True


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
    halt_guests(running, proc_index, registry)  # all at once
    sweep_many(running, registry, [m.name for m in metas])


def dispose(registry: reg.Registry, name: str, meta, keep_context_id: bool = False, cgroup_run=None) -> None:
    """Remove a stopped guest's cgroup (whatever is still in it killed), unpin it and remove its
    state (its context id too, unless kept).  ``cgroup_run``: the run's guest_spec.CgroupRun."""
    meta = meta or reg.GuestRecord(name)
    release(registry, name, meta, cgroup_run)
    forget(registry, name, meta, keep_context_id)


def release(registry: reg.Registry, name: str, meta: reg.GuestRecord, cgroup_run=None) -> None:
    """The kernel's part of :func:`dispose` (``meta``: the guest's record, as dispose makes one
    for a guest without): the guest's cgroup removed and its pins (and its
    /run/netns name, when it is this guest's) unmounted; its state is left to :func:`forget`."""
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


def forget(registry: reg.Registry, name: str, meta: reg.GuestRecord, keep_context_id: bool = False) -> None:
    """The rest of :func:`dispose` once :func:`release` is done: the context id (unless kept)
    and the guest's state folder."""
    if not keep_context_id:
        registry.release_context_id(name, meta.context_id)
    shutil.rmtree(registry.guest_dir(name), ignore_errors=True)


RELEASE_THREADS = 8  # guests released at once by release_many


def release_many(registry: reg.Registry, going: dict, cgroup_runs: dict) -> dict:
    """:func:`release` for many stopped guests (``going``: name -> record; ``cgroup_runs``:
    name -> the run's CgroupRun), RELEASE_THREADS at a time (this thread one of them; where no
    more threads can be started, those that could, or this one alone); what each one raised, by name.

    The kernel's time here is mostly waiting: each unmount of a pin that holds a guest's last
    reference to a namespace destroys it and waits for an RCU grace period, and a mount
    namespace's end unmounts its whole table and waits again.  Released one at a time, 10,000
    guests wait ~60,000 times in a row; released together, the waits overlap.  Every guest's
    lock is held by the caller; two guests share no pin, cgroup or file here.

    Every guest's IPC namespace pin goes first, before any cgroup: each IPC namespace has a
    filesystem of its own (mqueue), and the end of a memory cgroup, in the kernel's worker,
    visits every filesystem's two reclaim lists (``memcg_reparent_list_lrus``) holding the cgroup
    lock the next ``rmdir`` waits for - with 10,000 guests up, 20,000 lists for each of 10,000
    cgroups.  A guest whose IPC pin cannot be unmounted fails and keeps everything else."""
    failed: dict = {}
    for run in {id(r): r for r in cgroup_runs.values() if r is not None}.values():
        run.layout()  # detected once, before the threads share it

    # release() unpins every leaf of the guest's pin folder; the IPC one goes here, earlier (a
    # guest without one: nothing to unmount or unlink)
    _in_threads(list(going), lambda name: unpin(registry.pin_path(name, "ipc")), failed)
    _in_threads([n for n in going if n not in failed], lambda name: release(registry, name, going[name], cgroup_runs.get(name)), failed)
    return failed


def _in_threads(names: list, job, failed: dict) -> None:
    """``job(name)`` for each of ``names`` from RELEASE_THREADS threads (this one among them);
    what a job raised goes to ``failed[name]``, to be raised again for its guest, in order."""
    failed.update(in_threads(names, job, RELEASE_THREADS, "linuxns-release"))
