# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Entering a guest: the one path every module uses.

A freshly forked child (single-threaded, so ``setns(CLONE_NEWNS)`` works) makes
itself non-dumpable, opens every namespace file first, then joins them in
nsenter's order: all but the user namespace, then the user namespace (as host
root we deprivilege last), then any that needed the user namespace.  The
mount namespace's root becomes the child's root (the guest's root after its
pivot_root).  PID and time namespaces apply to children only, so running a
program forks once more.
"""

from __future__ import annotations

import errno
import json
import os
import signal

from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    GuestError,
    GuestStale,
    InvalidInput,
    KernelError,
)

# nsenter's order (user handled in a second pass).
ENTER_ORDER = ("cgroup", "ipc", "uts", "net", "pid", "mnt", "time")


def guest_types(meta: dict) -> list:
    """Namespace types the guest has (private or shared), nsenter order."""
    pins = meta.get("pins", {})
    return [t for t in ("user",) + ENTER_ORDER if t in pins]


def check_types(meta: dict, types, param: str = "namespaces") -> list:
    """Validate a requested subset of the guest's namespace types."""
    have = guest_types(meta)
    if types is None:
        return have
    bad = [t for t in types if t not in sc.NS_TYPES]
    if bad:
        raise InvalidInput("%s: unknown namespace type(s) %s; known: %s" % (param, ", ".join(bad), ", ".join(sc.NS_TYPES)))
    missing = [t for t in types if t not in have]
    if missing:
        raise InvalidInput(
            "%s: guest %r has no %s namespace of its own (it has: %s)"
            % (param, meta["name"], ", ".join(missing), ", ".join(have) or "none")
        )
    return [t for t in ("user",) + ENTER_ORDER if t in types]


def open_namespaces(meta: dict, types) -> list:
    """Open the pins of ``types`` (before the first setns); list of (type, fd)."""
    fds = []
    try:
        for t in types:
            path = meta["pins"][t]["path"]
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise GuestStale("guest %r: its %s namespace pin cannot be opened (%s)" % (meta["name"], t, exc.strerror)) from None
            st = os.fstat(fd)
            if st.st_ino != meta["pins"][t]["ino"]:
                os.close(fd)
                raise GuestStale("guest %r: its %s namespace is gone (the pin no longer holds it)" % (meta["name"], t))
            fds.append((t, fd))
    except BaseException:
        for _t, fd in fds:
            os.close(fd)
        raise
    return fds


def join_namespaces(fds) -> None:
    """setns() into every (type, fd) in nsenter's two-pass order; closes the fds."""
    pending = []
    user = [(t, fd) for t, fd in fds if t == "user"]
    for t, fd in fds:
        if t == "user":
            continue
        try:
            sc.setns(fd, t)
        except KernelError as exc:
            if exc.errno != errno.EPERM or not user:
                raise
            pending.append((t, fd))
    for t, fd in user + pending:
        sc.setns(fd, t)
    for _t, fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def close_fds_except(keep) -> None:
    """Close every fd >= 3 except those in ``keep`` (close_range where possible)."""
    lo = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 20)


def _error_payload(exc: BaseException) -> dict:
    if isinstance(exc, GuestError):
        return {"error": exc.msg, "class": type(exc).__name__, "errno": getattr(exc, "errno", 0)}
    if isinstance(exc, OSError):
        return {"error": "%s: %s" % (exc.strerror or exc, exc.filename or ""), "class": "KernelError", "errno": exc.errno or 0}
    return {"error": "%s: %s" % (type(exc).__name__, exc), "class": "GuestError", "errno": 0}


def raise_payload(payload: dict) -> None:
    from ansible_collections.linuxns.guests.plugins.module_utils import errors

    cls = getattr(errors, payload.get("class", "GuestError"), errors.GuestError)
    if issubclass(cls, errors.KernelError):
        raise cls(payload["error"], errno=payload.get("errno", 0))
    raise cls(payload["error"])


def read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def wait_child(pid: int) -> int:
    """waitpid() ignoring EINTR; returns the raw status."""
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0


def call_in_guest(meta: dict, types, func, *args, **kwargs):
    """Run ``func(*args, **kwargs)`` in a forked child inside the guest's ``types``.

    The result must be JSON-serialisable; a GuestError raised by ``func`` is
    re-raised here with its class and message.  The child never returns.
    The function runs in the joining process itself: when ``types`` holds
    pid or time, it is not a member of those (they apply to children only);
    use :func:`spawn_in_guest` for programs.
    """
    types = check_types(meta, types)
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(rfd)
            sc.set_dumpable(False)
            join_namespaces(open_namespaces(meta, types))
            if "mnt" in types:
                os.chdir("/")
            payload = {"ok": func(*args, **kwargs)}
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            payload = _error_payload(exc)
            code = 1
        try:
            write_all(wfd, json.dumps(payload).encode())
        finally:
            os._exit(code)
    os.close(wfd)
    try:
        data = read_all(rfd)
    finally:
        os.close(rfd)
        wait_child(pid)
    if not data:
        raise GuestError("guest %r: the helper process inside it died without an answer" % meta["name"])
    payload = json.loads(data.decode())
    if "error" in payload:
        raise_payload(payload)
    return payload["ok"]


def reset_signals() -> None:
    """Signal dispositions Python changed, back to the defaults before exec."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
