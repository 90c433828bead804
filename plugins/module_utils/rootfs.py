# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Paths inside a guest's root, resolved inside it: the one place that does it.

A guest's root is a folder its root user may change at any time.  A host
process that opens ``ROOT/etc/hostname`` by name follows whatever symbolic
links the guest put there (``etc -> /etc`` or ``etc -> ../../../etc``): a
host-root write lands on the host.  Like runc (``pathrs``/``securejoin``) and
LXC (``safe_mount`` with ``RESOLVE_BENEATH``), every open here is relative to
an fd of the root and resolved *inside* it:

- ``openat2(root_fd, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` (Linux
  5.6+): symbolic links are followed as if ``root_fd`` were ``/`` (an absolute
  link or ``..`` never leaves it), and ``/proc/PID/fd``-style magic links are
  refused;
- where openat2 is missing (ENOSYS), the same resolution by hand: an
  ``O_PATH | O_NOFOLLOW`` walk, one component at a time, that reads each link
  and resolves its target from the root (securejoin's old way).

Reads and writes of guest files never block and never touch a device: the file
is first looked at with ``O_PATH`` (opening a FIFO or device that way does
nothing), then opened with ``O_NONBLOCK``, and refused unless it is the same
regular file.

Errors are ``OSError`` (with ``errno``); callers say which guest and path.
"""

from __future__ import annotations

import errno
import os
import stat

from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import KernelError

RESOLVE = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS
MAX_LINKS = 40  # the kernel's MAXSYMLINKS
KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
         (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"))


class NotRegular(OSError):
    """The path is a FIFO, a device, a socket or a folder: it is not read or written."""


def kind(mode: int) -> str:
    for test, name in KINDS:
        if test(mode):
            return name
    return "not a regular file"


def open_root(path: str = "/") -> int:
    """An O_PATH fd of a root folder (the guest's root, as the host or the guest sees it)."""
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def _parts(path: str) -> list:
    return [p for p in path.split("/") if p not in ("", ".")]


def open_in_root(root_fd: int, path: str, flags: int, mode: int = 0o644, use_openat2: bool = True) -> int:
    """Open ``path`` resolved inside ``root_fd``: links are followed, but never out of it.

    ``flags`` as for os.open (O_CLOEXEC is added; O_NOFOLLOW refuses a link as the
    last component, with ELOOP).  ``use_openat2=False`` forces the walk (tests).
    """
    flags |= os.O_CLOEXEC
    if use_openat2:
        try:
            return sc.openat2(root_fd, path or ".", flags, mode, RESOLVE)
        except KernelError as exc:
            if exc.errno != errno.ENOSYS:
                raise OSError(exc.errno, os.strerror(exc.errno), path) from None
    return _walk_open(root_fd, path, flags, mode)


def _walk_open(root_fd: int, path: str, flags: int, mode: int) -> int:
    """openat2's RESOLVE_IN_ROOT by hand: O_PATH|O_NOFOLLOW one component at a time."""
    todo = _parts(path)
    stack = []  # O_PATH fds of the folders below the root, deepest last
    links = 0
    try:
        while True:
            cur = stack[-1] if stack else root_fd
            if not todo:  # the path was the root itself, or ended with '..'
                return os.open(".", flags, dir_fd=cur)
            part = todo.pop(0)
            if part == "..":
                if stack:
                    os.close(stack.pop())
                continue
            last = not todo
            try:
                nfd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            except FileNotFoundError:
                if not (last and flags & os.O_CREAT):
                    raise
                nfd = -1
            if nfd >= 0 and stat.S_ISLNK(os.fstat(nfd).st_mode):
                os.close(nfd)
                if last and flags & os.O_NOFOLLOW:  # the kernel's answer: ELOOP, or the link itself with O_PATH
                    return os.open(part, flags, mode, dir_fd=cur)
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(part, dir_fd=cur)
                if target.startswith("/"):
                    while stack:
                        os.close(stack.pop())
                todo = _parts(target) + todo
                continue
            if last:
                if nfd >= 0:
                    os.close(nfd)
                # O_NOFOLLOW: a link made here since the look above is refused, not followed.
                return os.open(part, flags | os.O_NOFOLLOW, mode, dir_fd=cur)
            stack.append(nfd)
    finally:
        for fd in stack:
            os.close(fd)


def makedirs_in_root(root_fd: int, path: str, mode: int = 0o755, use_openat2: bool = True) -> tuple:
    """``mkdir -p`` inside the root; (O_PATH fd of the folder, [paths created])."""
    parts = _parts(path)
    created = []
    for i in range(len(parts) + 1):
        sub = "/".join(parts[: i + 1])
        try:
            fd = open_in_root(root_fd, sub, os.O_PATH | os.O_DIRECTORY, 0, use_openat2)
        except FileNotFoundError:
            parent = open_in_root(root_fd, "/".join(parts[:i]), os.O_PATH | os.O_DIRECTORY, 0, use_openat2)
            try:
                os.mkdir(parts[i], mode, dir_fd=parent)  # mkdirat never follows a link at the last component
                created.append("/" + sub)
            except FileExistsError:
                pass
            finally:
                os.close(parent)
            fd = open_in_root(root_fd, sub, os.O_PATH | os.O_DIRECTORY, 0, use_openat2)
        if i == len(parts):
            return fd, created
        os.close(fd)
    raise AssertionError("unreachable")  # pragma: no cover


def _check_regular(fd: int, path: str, same=None) -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegular(errno.EINVAL, "not a regular file (%s)" % kind(st.st_mode), path)
    if same is not None and (st.st_dev, st.st_ino) != (same.st_dev, same.st_ino):
        raise NotRegular(errno.EAGAIN, "it was replaced while being opened", path)
    return st


def open_regular(root_fd: int, path: str, flags: int, mode: int = 0o644, use_openat2: bool = True) -> int:
    """Open a regular file inside the root for reading or writing; never blocks on a FIFO,
    never opens a device.  O_TRUNC is applied only once the file is known to be regular."""
    trunc = flags & os.O_TRUNC
    flags &= ~os.O_TRUNC
    try:
        look = open_in_root(root_fd, path, os.O_PATH, 0, use_openat2)
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
        seen = None
    else:
        try:
            seen = _check_regular(look, path)
        finally:
            os.close(look)
    fd = open_in_root(root_fd, path, flags | os.O_NONBLOCK | os.O_NOCTTY, mode, use_openat2)
    try:
        _check_regular(fd, path, seen)
        if trunc:
            os.ftruncate(fd, 0)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_file(root_fd: int, path: str, max_bytes: int, use_openat2: bool = True) -> bytes:
    """A regular file inside the root, whole; OSError(EFBIG) beyond ``max_bytes``."""
    fd = open_regular(root_fd, path, os.O_RDONLY, 0, use_openat2)
    try:
        chunks, total = [], 0
        while True:
            data = os.read(fd, min(1 << 16, max_bytes + 1 - total))
            if not data:
                return b"".join(chunks)
            total += len(data)
            if total > max_bytes:
                raise OSError(errno.EFBIG, "more than %d bytes" % max_bytes, path)
            chunks.append(data)
    finally:
        os.close(fd)


def write_file(root_fd: int, path: str, data: bytes, mode: int = 0o644, use_openat2: bool = True) -> None:
    """Replace a file inside the root by ``data`` with ``mode``, atomically (a new file
    beside it, renamed over it; both names resolved inside the root)."""
    parts = _parts(path)
    if not parts:
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    folder = "/".join(parts[:-1])
    dfd = open_in_root(root_fd, folder, os.O_PATH | os.O_DIRECTORY, 0, use_openat2)
    try:
        tmp = ".%s.linuxns-tmp" % parts[-1]
        try:
            os.unlink(tmp, dir_fd=dfd)
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                os.fchmod(f.fileno(), mode)
            os.rename(tmp, parts[-1], src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise
    finally:
        os.close(dfd)


def own_dir(dir_fd: int, name: str, mode: int = 0o755) -> int:
    """O_PATH fd of the folder ``name`` right below ``dir_fd``, made when missing.

    For mount points in a guest's root (its /proc and /dev at creation): the name is
    never followed - a symbolic link there is refused with ENOTDIR - and the caller
    mounts onto ``/proc/self/fd/N`` of the returned fd, as runc does, so what it
    mounts on is the folder it checked.
    """
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
    except FileExistsError:
        pass
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        os.close(fd)
        raise NotRegular(errno.ENOTDIR, "it is %s, not a folder" % kind(st.st_mode), name)
    return fd


def open_source(path: str, roots, flags: int = os.O_PATH) -> int:
    """Open a host path chosen by the admin (a bind source), knowing the guests' roots.

    ``roots``: {(st_dev, st_ino): guest name} of the folders that are guests' roots
    (registry.guest_roots).  The path is walked from the host's ``/`` one component at
    a time with ``O_PATH | O_NOFOLLOW``; a link on the host's side is followed as the host
    would (host root made it), but once the walk stands on a guest's root - by its
    identity, whatever the path that led there, a bind mount of it included - the rest of
    the path is resolved inside that root (:func:`open_in_root`): a link the guest planted
    (``data -> /etc`` or ``../../../etc``) never leads out of its root, as it would for the
    guest itself.  OSError (with errno) when the path cannot be opened.
    """
    todo = _parts(path)
    cur = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    links = 0
    try:
        while True:
            st = os.fstat(cur)
            if (st.st_dev, st.st_ino) in roots:
                return open_in_root(cur, "/".join(todo), flags)
            if not todo:
                return os.open(".", flags | os.O_CLOEXEC, dir_fd=cur)
            part = todo.pop(0)
            nfd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            if stat.S_ISLNK(os.fstat(nfd).st_mode):
                os.close(nfd)
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(part, dir_fd=cur)
                todo = _parts(target) + todo
                if target.startswith("/"):
                    nfd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                else:
                    continue
            os.close(cur)
            cur = nfd
    finally:
        os.close(cur)
