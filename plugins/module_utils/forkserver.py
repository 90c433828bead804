# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fork server: a small process that forks the children which make a batch's guests.

Each new guest's namespaces are made by a child C forked for it, which forks the guest's
init I (:mod:`guest_create`).  A fork copies the forking process's page tables, and in
Python every page the child then touches is copied as well (reading an object writes its
reference count); and while the child lives it shares every page with its parent, so each
page the parent writes meanwhile is copied too.  Forked from the module, that cost grows
with the module - which holds every spec and record of the task (40 MB at 2000 guests) -
and it was half of a big batch's creation (at 2000 guests, per guest: ~1.2 ms from
``fork()`` to C's first line and ~1.1 ms to I's, ~1680 pages copied between the module,
C and I; docs/performance.md, "The children that make the guests").

So a task that creates at least :data:`MIN_GUESTS` guests first starts a fork server: a
new interpreter exec'd from the sealed clone of this one (:class:`sealed.SealedClone`),
which imports :mod:`guest_create` and nothing of the task, and forks each guest's child C
on request - Python's own ``multiprocessing`` "forkserver" start method, for the same
reason.  C runs the very code it runs when forked from the module
(:func:`guest_create._child_main`), with what it needs passed along: the guest's spec
(without the rest of the task) and the creation's fds (the handshake's child ends, the
batch's clean mount namespace, the reaper, the namespaces it shares).

Over a ``SOCK_SEQPACKET`` socket pair, one request per guest: a pickle of
``(spec, registry, names, cgroup_procs, needs_init, parent_mnt_id)`` with the fds named
by ``names`` (SCM_RIGHTS); the answer a pickle of ``("ok", pid)`` with a pidfd of C, or
``("error", payload)``.  The module signals and waits for C through that pidfd (C is
not its child).  The server dies with the module (PR_SET_PDEATHSIG, as every sealed
clone), each C with the server (it sets PR_SET_PDEATHSIG first thing, as before), and it
ends when the module closes its socket.  Both processes are the module's own, with the
same code and privileges: the pickles never cross a trust boundary.

A task with the server makes its new guests several at a time, each from a thread of the
module (guests._Together): the requests still go one at a time (the run's lock,
guest_create.CreateRun), and the server forks in the order they come.  Each C still gets the
fds of its own guest alone.  When the server dies, the C of every guest under way dies with it.

For a guest with a PID namespace of its own and no user or time namespace (:func:`born_init`)
the server forks C as the first process of a new PID namespace, and C is the guest's init: one
fork a guest instead of two (C forking the init I, then exiting; at 10,000 guests the
children's forks, copy-on-write faults, exits and execs were ~26 % of the create's CPU).
"""

from __future__ import annotations

import errno
import os
import pickle
import select
import signal
import socket

from ansible_collections.linuxns.guests.plugins.module_utils import enter, errors
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, KernelError

# A task creating fewer guests forks their children itself, one guest at a time.  From here on its new guests
# are made together (guests._Together), which needs the server: in-process on 2 CPUs, 12 guests 0.88-0.98x the
# time of one at a time without a server, 20 0.66-0.90x, 50 0.66-0.72x (at 4, 1.2-1.35x: the server's start).
# (One at a time, the server alone cost more than it saved at 16 guests and as much at 50.)
MIN_GUESTS = 16
# A request is one datagram, which the kernel caps at the socket's send buffer (net.core.wmem_default,
# 208 KiB here): a bigger spec (a default one pickles to ~2.6 KB) has its child forked by the module instead.
MAX_SENT = 128 << 10
_MAX_ANSWER = 64 << 10  # ("ok", pid), or an error's payload
_MAX_FDS = 64


def fork_for(name: str) -> int:
    """``os.fork()`` for the child that makes guest ``name``'s namespaces; its failure named."""
    try:
        return os.fork()
    except OSError as exc:
        hint = " (the pids limit of this session or of its cgroup: guest_host's limits)" if exc.errno == errno.EAGAIN else ""
        raise KernelError("guest %r: the process that makes its namespaces could not be forked: %s%s"
                          % (name, sc.errno_text(exc.errno), hint), errno=exc.errno) from None


def born_init(spec) -> bool:
    """Whether the server forks ``spec``'s child C as the first process of a PID namespace of its
    own, so that C is the guest's init and forks none (one fork a guest instead of two).  Not for
    a guest with a user namespace, or one that shares another's: its PID namespace must belong to
    that user namespace, made (or joined) by C first; nor one with a time namespace, which (as a
    PID namespace) only the children of the process that makes it enter."""
    return ("pid" in spec.namespaces and "user" not in spec.namespaces and "user" not in spec.share
            and "time" not in spec.namespaces)  # a PID namespace of its own: the guest has an init (needs_init)


class Child:
    """The child C that makes one guest's namespaces, as the module sees it: its own
    child (forked by the module), or the server's (a pidfd).  ``is_init``: C is the guest's
    init itself (:func:`born_init`): it is not waited for once the guest is made."""

    def __init__(self, pid: int, pidfd: int = -1, is_init: bool = False):
        self.pid, self.pidfd, self.is_init = pid, pidfd, is_init

    def release(self) -> None:
        """Done with C without waiting for it (the guest's init goes on)."""
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def kill(self) -> None:
        try:
            if self.pidfd >= 0:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)  # our child, not reaped yet: the pid is still its
        except ProcessLookupError:
            pass

    def wait(self) -> None:
        """Until it ended (reaped by us, or by the server)."""
        if self.pidfd < 0:
            enter.wait_child(self.pid)
            return
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        while not poller.poll():
            pass
        os.close(self.pidfd)
        self.pidfd = -1


class ForkServer:
    """The module's end: start it, :meth:`fork` a guest's child, :meth:`close` it.

    Raises OSError or GuestError when it cannot be started (the caller forks its
    children itself then), GuestError when it dies under a request."""

    def __init__(self):
        from ansible_collections.linuxns.guests.plugins.module_utils import sealed

        if not hasattr(os, "pidfd_open"):
            raise GuestError("no pidfd_open here")
        os.close(os.pidfd_open(os.getpid()))  # the kernel's too (5.3+): OSError otherwise
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            self.clone = sealed.SealedClone((__name__,), keep_fds=(theirs.fileno(),))
            if self.clone.pid is None:  # this process runs from a sealed copy itself (the entry program)
                raise GuestError("no fork server from a sealed copy")
            self.clone.start(serve, theirs.fileno())
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours

    def fork(self, spec, registry, fds: dict, cgroup_procs, needs_init: bool, parent_mnt_id):
        """Have the server fork the child C of ``spec``'s guest (a :class:`Child`; C is the
        guest's init when :func:`born_init` says so); ``fds``: name -> fd it gets.  None, with
        nothing sent, when the request is too big for one datagram (:data:`MAX_SENT`): the
        caller forks that child itself."""
        names = list(fds)  # in the caller's order: its shares in the order C joins them
        request = pickle.dumps((spec, registry, names, list(cgroup_procs), needs_init, parent_mnt_id))
        if len(request) > MAX_SENT:
            return None
        try:
            socket.send_fds(self.sock, [request], [fds[n] for n in names])
            data, got, flags, _addr = socket.recv_fds(self.sock, _MAX_ANSWER, 1, socket.MSG_CMSG_CLOEXEC)
        except OSError as exc:
            raise GuestError("guest %r: the fork server that forks the guests' children failed: %s" % (spec.name, exc)) from None
        if not data or flags & socket.MSG_TRUNC:
            for fd in got:
                os.close(fd)
            raise GuestError("guest %r: the fork server that forks the guests' children %s"
                             % (spec.name, "ended unexpectedly" if not data else "answered more than %d bytes" % _MAX_ANSWER))
        kind, value = pickle.loads(data)
        if kind == "error":
            for fd in got:
                os.close(fd)
            enter.raise_payload(value)
        return Child(value, got[0], is_init=born_init(spec))

    def close(self) -> None:
        """End the server (it reaps its children and exits); errors of its own raised."""
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        self.clone.result()


class ChildRun:
    """What the child C of one guest takes from the creating run (guest_create.CreateRun.begin
    makes one per guest: guests made at the same time each have their own): the cgroup.procs
    files it joins first, the batch's clean mount namespace (-1: none) and the namespaces it
    shares, (type, fd) in the table's order."""

    def __init__(self, cgroup_procs=(), mnt_template_fd: int = -1, share_fds=()):
        self.cgroup_procs, self.mnt_template_fd, self.share_fds = list(cgroup_procs), mnt_template_fd, list(share_fds)

    def close(self) -> None:
        """Close the share fds (the fds of the creating run's own are not this one's)."""
        fds, self.share_fds, self.mnt_template_fd = self.share_fds, [], -1
        for _t, fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


def _reap() -> None:
    for _child in sc.exited_children():
        pass


def _fork_one(request: bytes, fds: list):  # pragma: no cover - the server (a clone)
    from ansible_collections.linuxns.guests.plugins.module_utils import guest_create, handshake

    spec, registry, names, cgroup_procs, needs_init, parent_mnt_id = pickle.loads(request)
    if len(names) != len(fds):
        raise GuestError("guest %r: the fork server got %d fds for %d names" % (spec.name, len(fds), len(names)))
    named = dict(zip(names, fds))
    hs = handshake.Handshake.child_ends({k: named[k] for k in handshake.CHILD_ENDS})
    shares = [(n.split(":", 1)[1], fd) for n, fd in zip(names, fds) if n.startswith("share:")]  # in the run's order
    run = ChildRun(cgroup_procs, named.get("template", -1), shares)
    first = born_init(spec)
    if first:
        sc.unshare_one("pid")  # the next child is the first process of a new PID namespace: its init
    pid = -1
    try:
        pid = fork_for(spec.name)
    finally:
        if first and pid != 0:  # the server's next children in its own PID namespace again
            _own_pid_ns()
    if pid == 0:
        try:
            enter.close_fds_except(set(fds) | {0, 1, 2})  # the server's socket and pipes: not C's
            guest_create._child_main(spec, registry, hs, run, named.get("reaper", -1), named["devnull"], needs_init,
                                     parent_mnt_id, born_init=first)
        finally:
            os._exit(1)
    return pid, os.pidfd_open(pid)


def _own_pid_ns() -> None:  # pragma: no cover - the server (a clone)
    """After an unshare(CLONE_NEWPID): this process's children in its own PID namespace again
    (setns into one's own active PID namespace is allowed, and makes it the children's)."""
    fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.setns(fd, "pid")
    finally:
        os.close(fd)


def serve(sock_fd: int) -> None:  # pragma: no cover - the server (a clone)
    """The server's loop: one fork per request, until the module closes its end."""
    sock = socket.socket(fileno=sock_fd)
    try:
        while True:
            _reap()
            try:
                request, fds, _flags, _addr = socket.recv_fds(sock, MAX_SENT, _MAX_FDS, socket.MSG_CMSG_CLOEXEC)
            except InterruptedError:
                continue
            if not request:
                break
            pidfd = -1
            try:
                pid, pidfd = _fork_one(request, fds)
                answer = ("ok", pid)
            except BaseException as exc:  # told to the module, which fails that guest
                answer = ("error", errors.to_payload(exc))
            finally:
                for fd in fds:
                    os.close(fd)
            try:
                socket.send_fds(sock, [pickle.dumps(answer)], [pidfd] if pidfd >= 0 else [])
            finally:
                if pidfd >= 0:
                    os.close(pidfd)
    finally:
        sock.close()
        _reap()
