# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One thin wrapper per system call the helper needs.

``os.*`` is used where Python has the call (``os.setns``/``os.unshare`` on
3.12+), ctypes with ``use_errno=True`` elsewhere.  Every wrapper raises
:class:`KernelError` (or :class:`LimitReached`) with a message that names the
call, its subject and the errno in words.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os

from ansible_collections.linuxns.guests.plugins.module_utils.errors import KernelError, LimitReached


class NsType:
    """One namespace type, like a row of nsenter.c's ``namespace_files[]``.

    A plain slotted class (not typing.NamedTuple): the connection plugin's
    entry program imports this file on every command, and typing costs time.
    """

    __slots__ = ("children_only", "flag", "name", "pin_leaf")

    def __init__(self, name: str, flag: int, children_only: bool = False, pin_leaf: str = "") -> None:
        self.name = name  # the file under /proc/PID/ns/
        self.flag = flag  # its CLONE_NEW* flag (also what NS_GET_NSTYPE answers)
        self.children_only = children_only  # setns applies to children only (pid, time)
        # The /proc/PID/ns/ file a guest without an init process is pinned from.
        self.pin_leaf = pin_leaf or name

    @property
    def limit_file(self) -> str:
        """The kernel's limit on how many of them a user may have."""
        return "/proc/sys/user/max_%s_namespaces" % self.name

    def __repr__(self) -> str:
        return "NsType(%r)" % self.name


# The one table of namespace types, in nsenter's order (user first: the caller
# decides whether it is joined first or last).  Every other list derives from it.
NAMESPACES = (
    NsType("user", 0x10000000),
    NsType("cgroup", 0x02000000),
    NsType("ipc", 0x08000000),
    NsType("uts", 0x04000000),
    NsType("net", 0x40000000),
    NsType("pid", 0x20000000, children_only=True),
    NsType("mnt", 0x00020000),
    NsType("time", 0x00000080, children_only=True, pin_leaf="time_for_children"),
)
NS_BY_NAME = {t.name: t for t in NAMESPACES}
NS_TYPES = tuple(NS_BY_NAME)
CLONE_FLAGS = {t.name: t.flag for t in NAMESPACES}


def ns_type(name: str) -> NsType:
    """The table row of a namespace type name (KeyError when unknown)."""
    return NS_BY_NAME[name]


def ns_by_flag(flag: int):
    """The namespace type whose clone flag (or NS_GET_NSTYPE answer) is ``flag``, or None."""
    return next((t for t in NAMESPACES if t.flag == flag), None)


def ns_order(types) -> list:
    """``types`` (names) sorted into the table's (nsenter's) order."""
    wanted = set(types)
    return [t for t in NS_TYPES if t in wanted]


MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000

MNT_DETACH = 0x2
AT_FDCWD = -100
UMOUNT_NOFOLLOW = 0x8

OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_RECURSIVE = 0x8000
AT_EMPTY_PATH = 0x1000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36

# x86_64 / aarch64 / generic syscall numbers of calls glibc 2.36 may lack a
# wrapper for in older builds (open_tree/move_mount are exported since 2.36).
_SYS_NR = {
    "x86_64": {"open_tree": 428, "move_mount": 429, "pivot_root": 155, "openat2": 437, "close_range": 436,
               "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442},
    "aarch64": {"open_tree": 428, "move_mount": 429, "pivot_root": 41, "openat2": 437, "close_range": 436,
                "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442},
}

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def exited_children():
    """Reap each child that has exited: its (pid, wait status), until none is left to reap now."""
    while True:
        try:
            pid, wstatus = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, wstatus


def errno_text(err: int) -> str:
    name = _errno.errorcode.get(err, str(err))
    return "%s (%s)" % (os.strerror(err), name)


def fail(call: str, subject: str, err: int) -> KernelError:
    """Build the error for a failed call (returned so callers can ``raise``)."""
    return KernelError("%s(%s) failed: %s" % (call, subject, errno_text(err)), errno=err)


def _check(res: int, call: str, subject: str) -> int:
    if res < 0:
        raise fail(call, subject, ctypes.get_errno())
    return res


def _b(path) -> bytes | None:
    if path is None:
        return None
    return os.fsencode(path)


def setns(fd: int, nstype: str = "") -> None:
    flag = CLONE_FLAGS.get(nstype, 0)
    try:
        if hasattr(os, "setns"):
            os.setns(fd, flag)
            return
        res = libc().setns(ctypes.c_int(fd), ctypes.c_int(flag))
    except OSError as exc:
        raise fail("setns", nstype or "fd %d" % fd, exc.errno) from None
    _check(res, "setns", nstype or "fd %d" % fd)


def unshare_one(nstype: str) -> None:
    """unshare() a single namespace type, so a limit error names its type."""
    flag = CLONE_FLAGS[nstype]
    err = 0
    if hasattr(os, "unshare"):
        try:
            os.unshare(flag)
        except OSError as exc:
            err = exc.errno
    else:
        if libc().unshare(ctypes.c_int(flag)) < 0:
            err = ctypes.get_errno()
    if not err:
        return
    if err == _errno.ENOSPC:
        limit = NS_BY_NAME[nstype].limit_file
        raise LimitReached(
            "cannot create a %s namespace: the limit in %s is reached (raise it, or remove guests)" % (nstype, limit),
            errno=err,
            limit=limit,
        )
    raise fail("unshare", nstype, err)


# The nsfs ioctls (linux/nsfs.h): NSIO = 0xb7.
NS_GET_USERNS = 0xB701  # _IO(NSIO, 0x1): an fd of the owning user namespace
NS_GET_PARENT = 0xB702  # _IO(NSIO, 0x2): an fd of the parent (pid and user namespaces)
NS_GET_NSTYPE = 0xB703  # _IO(NSIO, 0x3): the CLONE_NEW* flag of the namespace
NS_GET_MNTNS_ID = 0x8008B705  # _IOR(NSIO, 0x5, __u64): the 64-bit id of a mount namespace (6.8+)
NS_GET_OWNER_UID = 0xB704  # _IO(NSIO, 0x4): the uid (in the caller's user namespace) that made a user namespace
# Interface flags through a socket (linux/sockios.h, linux/if.h).
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def ns_owner_uid(fd: int):
    """NS_GET_OWNER_UID of the user namespace file ``fd``: the uid that created it, as the
    caller's user namespace sees it (None: not a user namespace, or the kernel says no)."""
    import fcntl
    import struct

    buf = bytearray(4)
    try:
        fcntl.ioctl(fd, NS_GET_OWNER_UID, buf)
    except OSError:
        return None
    return struct.unpack("I", bytes(buf))[0]


def mnt_ns_id(path: str = "/proc/self/ns/mnt"):
    """The kernel's 64-bit id of a mount namespace (Linux 6.8+), or None."""
    import fcntl
    import struct

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, NS_GET_MNTNS_ID, buf)
        return struct.unpack("Q", bytes(buf))[0]
    except OSError:
        return None
    finally:
        os.close(fd)


def mount(src, target, fstype=None, flags: int = 0, data=None) -> None:
    res = libc().mount(_b(src), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(res, "mount", str(target))


def umount2(target, flags: int = 0) -> None:
    res = libc().umount2(_b(target), ctypes.c_int(flags))
    _check(res, "umount", str(target))


def _syscall(name: str, *args) -> int:
    arch = os.uname().machine
    nr = _SYS_NR.get(arch, {}).get(name)
    if nr is None:
        raise KernelError("%s is not supported on %s" % (name, arch), errno=_errno.ENOSYS)
    return libc().syscall(ctypes.c_long(nr), *args)


def pivot_root(new_root, put_old) -> None:
    res = _syscall("pivot_root", ctypes.c_char_p(_b(new_root)), ctypes.c_char_p(_b(put_old)))
    _check(res, "pivot_root", str(new_root))


def sethostname(name: str) -> None:
    raw = name.encode()
    res = libc().sethostname(ctypes.c_char_p(raw), ctypes.c_size_t(len(raw)))
    _check(res, "sethostname", name)


def open_tree(dirfd: int, path, flags: int) -> int:
    res = _syscall("open_tree", ctypes.c_int(dirfd), ctypes.c_char_p(_b(path)), ctypes.c_uint(flags))
    return _check(res, "open_tree", str(path))


def move_mount(from_dirfd: int, from_path, to_dirfd: int, to_path, flags: int) -> None:
    res = _syscall(
        "move_mount",
        ctypes.c_int(from_dirfd),
        ctypes.c_char_p(_b(from_path)),
        ctypes.c_int(to_dirfd),
        ctypes.c_char_p(_b(to_path)),
        ctypes.c_uint(flags),
    )
    _check(res, "move_mount", str(to_path))


def prctl(option: int, arg: int) -> None:
    res = libc().prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    _check(res, "prctl", str(option))


def set_dumpable(on: bool) -> None:
    prctl(PR_SET_DUMPABLE, 1 if on else 0)


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


CLOSE_RANGE_CLOEXEC = 0x4  # linux/close_range.h: mark close-on-exec instead of closing (5.11+)
FD_MAX = 0xFFFFFFFF  # ~0U: every fd above ``first``


def _open_fds() -> list:
    """The fds this process has open, from /proc/self/fd (or every fd below RLIMIT_NOFILE without /proc)."""
    try:
        return sorted(int(n) for n in os.listdir("/proc/self/fd"))
    except OSError:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return list(range(soft if 0 < soft < (1 << 20) else (1 << 20)))


def close_range(first: int, last: int = FD_MAX, flags: int = 0) -> None:
    """close_range(2): close fds ``first``..``last``, or with CLOSE_RANGE_CLOEXEC mark them close-on-exec.

    The last step before a program is started in a guest (CVE-2024-21626: no fd of the
    host reaches it).  Where the kernel lacks the call (ENOSYS before 5.9, EINVAL for the
    CLOEXEC flag before 5.11) or the architecture has no number for it, every open fd in
    the range is handled one by one from /proc/self/fd.
    """
    try:
        err = 0
        if _syscall("close_range", ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(flags)) < 0:
            err = ctypes.get_errno()
    except KernelError as exc:  # no syscall number on this architecture
        err = exc.errno
    if not err:
        return
    if err not in (_errno.ENOSYS, _errno.EINVAL):
        raise fail("close_range", "%d..%d" % (first, last), err)
    close_range_loop(first, last, flags)


def close_range_loop(first: int, last: int = FD_MAX, flags: int = 0) -> None:
    """What :func:`close_range` does, one open fd at a time (kernels before 5.9/5.11)."""
    import fcntl

    for fd in _open_fds():
        if first <= fd <= last:
            try:
                if flags & CLOSE_RANGE_CLOEXEC:
                    fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.fcntl(fd, fcntl.F_GETFD) | fcntl.FD_CLOEXEC)
                else:
                    os.close(fd)
            except OSError:  # the listing's own fd, closed already
                pass


# ---- the new mount API (fsopen/fsconfig/fsmount/fspick/mount_setattr) -------------------
FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1
FSPICK_CLOEXEC = 0x1
FSPICK_EMPTY_PATH = 0x8
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSCONFIG_CMD_RECONFIGURE = 7
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def fsopen(fstype: str, flags: int = FSOPEN_CLOEXEC) -> int:
    res = _syscall("fsopen", ctypes.c_char_p(_b(fstype)), ctypes.c_uint(flags))
    return _check(res, "fsopen", fstype)


def fsconfig(fd: int, cmd: int, key=None, value=None, aux: int = 0) -> None:
    res = _syscall("fsconfig", ctypes.c_int(fd), ctypes.c_uint(cmd), ctypes.c_char_p(_b(key)), ctypes.c_char_p(_b(value)), ctypes.c_int(aux))
    _check(res, "fsconfig", str(key) if key is not None else "cmd %d" % cmd)


def fsmount(fd: int, flags: int = FSMOUNT_CLOEXEC, attr_flags: int = 0) -> int:
    res = _syscall("fsmount", ctypes.c_int(fd), ctypes.c_uint(flags), ctypes.c_uint(attr_flags))
    return _check(res, "fsmount", "fd %d" % fd)


def fspick(dirfd: int, path, flags: int) -> int:
    res = _syscall("fspick", ctypes.c_int(dirfd), ctypes.c_char_p(_b(path)), ctypes.c_uint(flags))
    return _check(res, "fspick", str(path) or "fd %d" % dirfd)


def mount_setattr(dirfd: int, path, flags: int, attr_set: int = 0, attr_clr: int = 0, propagation: int = 0, userns_fd: int = 0) -> None:
    attr = MountAttr(attr_set, attr_clr, propagation, userns_fd)
    res = _syscall("mount_setattr", ctypes.c_int(dirfd), ctypes.c_char_p(_b(path)), ctypes.c_uint(flags),
                   ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(res, "mount_setattr", str(path) or "fd %d" % dirfd)


# ---- sealed executable copies (the CVE-2019-5736 class) ---------------------------------
# A host binary exec'd inside a guest is reachable there as /proc/PID/exe; guest root could
# open it for writing (directly, or O_PATH now and reopen through /proc/self/fd later) and
# replace the host's file.  runc (libcontainer/dmz, formerly nsenter/cloned_binary.c) and
# LXC exec such a binary from a sealed memfd copy instead: /proc/PID/exe is then that
# anonymous, write-sealed file, never a host file.
MFD_CLOEXEC = 0x1
MFD_ALLOW_SEALING = 0x2
MFD_EXEC = 0x10  # Linux 6.3+: executable even when vm.memfd_noexec asks for noexec memfds
F_ADD_SEALS = 1033
F_GET_SEALS = 1034
F_SEAL_SEAL = 0x1
F_SEAL_SHRINK = 0x2
F_SEAL_GROW = 0x4
F_SEAL_WRITE = 0x8
F_SEAL_EXEC = 0x20  # Linux 6.3+: the mode's exec bits cannot change
SEALS = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE


def memfd_create(name: str, flags: int) -> int:
    """memfd_create(2); flags without MFD_EXEC are retried when the kernel (< 6.3) refuses it."""
    try:
        return os.memfd_create(name, flags)
    except OSError as exc:
        if exc.errno == _errno.EINVAL and flags & MFD_EXEC:
            return memfd_create(name, flags & ~MFD_EXEC)
        raise fail("memfd_create", name, exc.errno) from None


def add_seals(fd: int, seals: int) -> None:
    """fcntl(F_ADD_SEALS); F_SEAL_EXEC is dropped on kernels that do not know it."""
    import fcntl

    try:
        fcntl.fcntl(fd, F_ADD_SEALS, seals)
    except OSError as exc:
        if exc.errno == _errno.EINVAL and seals & F_SEAL_EXEC:
            add_seals(fd, seals & ~F_SEAL_EXEC)
            return
        raise fail("fcntl(F_ADD_SEALS)", "fd %d" % fd, exc.errno) from None


def sealed_copy(path: str, name: str) -> int:
    """A close-on-exec memfd holding a copy of the file at ``path``, sealed against any
    change (write, grow, shrink, exec bits, further seals): exec it with
    ``os.execve(fd, argv, env)`` (fexecve).  Made fresh for each use; nothing is cached."""
    try:
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise fail("sealed_copy", path, exc.errno) from None
    try:
        fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC)
        try:
            size = os.fstat(src).st_size
            done = 0
            while done < size:
                n = os.sendfile(fd, src, done, size - done)
                if n <= 0:
                    raise KernelError("sealed_copy(%s) failed: the file shrank while it was copied" % path, errno=_errno.EIO)
                done += n
            os.fchmod(fd, 0o555)
            add_seals(fd, SEALS | F_SEAL_EXEC)
        except OSError as exc:
            os.close(fd)
            raise fail("sealed_copy", path, exc.errno) from None
        except BaseException:
            os.close(fd)
            raise
        return fd
    finally:
        os.close(src)


def exe_seals(path: str = "/proc/self/exe") -> int:
    """The seals (F_GET_SEALS) of the file a process runs: 0 for a regular file (no memfd)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        return fcntl.fcntl(fd, F_GET_SEALS)
    except OSError:
        return 0
    finally:
        os.close(fd)


def running_sealed() -> bool:
    """Whether this process runs from a sealed copy (:func:`sealed_copy`) of its program."""
    return exe_seals() & SEALS == SEALS


def elf_is_static(fd: int) -> bool:
    """True when the ELF file open at ``fd`` has no program interpreter (PT_INTERP): it runs
    without loading any library, so a sealed copy of it runs the same inside a guest."""
    import struct

    head = os.pread(fd, 64, 0)
    if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
        return False
    is64 = head[4] == 2
    end = "<" if head[5] == 1 else ">"
    if is64:
        phoff, phentsize, phnum = struct.unpack(end + "Q", head[32:40])[0], *struct.unpack(end + "HH", head[54:58])
    else:
        phoff, phentsize, phnum = struct.unpack(end + "I", head[28:32])[0], *struct.unpack(end + "HH", head[42:46])
    if phentsize < 4 or phnum > 4096:
        return False
    table = os.pread(fd, phentsize * phnum, phoff)
    if len(table) < phentsize * phnum:
        return False
    types = (struct.unpack(end + "I", table[i * phentsize:i * phentsize + 4])[0] for i in range(phnum))
    return 3 not in types  # PT_INTERP


# openat2(2) (Linux 5.6+): path resolution scoped to a directory, the way runc's
# pathrs/securejoin and LXC's safe_mount open paths inside a container's root.
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(dirfd, path, {flags, mode, resolve}); the new fd.  ENOSYS on kernels before 5.6."""
    tmpfile = getattr(os, "O_TMPFILE", 0)
    creates = flags & os.O_CREAT or (tmpfile and flags & tmpfile == tmpfile)
    how = OpenHow(flags, mode if creates else 0, resolve)
    res = _syscall("openat2", ctypes.c_int(dirfd), ctypes.c_char_p(_b(path)), ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    return _check(res, "openat2", str(path))


FD_MARGIN = 256  # fds a task keeps for itself besides one per guest (sockets, pipes, files)


def room_for_fds(count: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE, up to its hard limit, so that ``count`` more fds
    fit (a task holds one lock fd per guest it links or removes in one batch): a session's soft
    limit is often 1024 (systemd's default; the hard one 524288), which a task of 1000 guests
    would pass.  Returns how many of the ``count`` fit (at least 1)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + FD_MARGIN
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if new > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
    return count if soft == resource.RLIM_INFINITY else max(1, min(count, soft - FD_MARGIN))
