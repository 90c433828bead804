# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Creating a guest, the counterpart of util-linux unshare.c: the batch's clean mount
namespace template, the forked child that unshares (driven by the handshake), the pins,
the /run/netns alias, the reaper or init, and the rollback of a failed creation.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import os
import shutil
import signal
import socket
import stat
import struct
import threading
import time

from ansible_collections.linuxns.guests.plugins.module_utils import cgroups, confine, enter, faults, forkserver, handshake, procfs, rootfs, userns
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    GuestConflict,
    GuestError,
    InvalidInput,
    KernelError,
)
from ansible_collections.linuxns.guests.plugins.module_utils.guest_spec import Spec
from ansible_collections.linuxns.guests.plugins.module_utils.guest_stop import kill_wait, unpin

REAPER_CANDIDATES = (
    "/usr/bin/catatonit",
    "/usr/libexec/catatonit/catatonit",
    "/usr/libexec/podman/catatonit",
    "/usr/local/bin/catatonit",
)


DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")


def find_reaper():
    for path in REAPER_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return None


def _lo_up() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    try:
        ifr = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s.fileno(), sc.SIOCGIFFLAGS, ifr + b"\0" * 22)[:18])[1]
        fcntl.ioctl(s.fileno(), sc.SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | sc.IFF_UP) + b"\0" * 22)
    finally:
        s.close()


DETACH_MAX = 64  # mounts stacked on one folder that _detach takes off; more is not a setup anyone made


def _detach(path: str) -> None:
    """Take every mount at ``path`` off (lazily, with what is below each): two setups of
    /run/netns racing (ours and an ``ip netns add``) each bind it onto itself, and one
    umount would leave the lower bind, with the folder's mounts, in the copy."""
    for _attempt in range(DETACH_MAX):
        try:
            sc.umount2(path, sc.MNT_DETACH)
        except KernelError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT, errno.EPERM, errno.EACCES):
                raise
            return


# Every mount of a guest's root at creation is made through file descriptors, as runc does
# ("mount via fd": libcontainer/rootfs_linux.go, utils.WithProcfd): the target is opened inside
# the root without following a link (rootfs.own_dir) and the new mount is attached onto that fd
# with move_mount, never onto a name the guest could swap for a link in between.  What goes
# below a mount (the masks in /proc, the nodes in /dev) is opened relative to the new mount's
# own fd (an fsmount/open_tree fd refers to the mount once it is attached), not by name.
_ATTACH = sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH
_NOSUID_NODEV_NOEXEC = sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC


def _new_fs(fstype: str, options=(), attrs: int = 0, source: str | None = None) -> int:
    """A detached mount of a new ``fstype`` file system (fsopen, fsconfig, fsmount); ``options``:
    (key, value) pairs, value None for a flag.  ``source`` (default: ``fstype``) is what
    mountinfo shows as its source, as mount(2)'s first argument did (without it the kernel
    shows "none", and a namespace_mount entry for the same file system would not match)."""
    fs = sc.fsopen(fstype)
    try:
        sc.fsconfig(fs, sc.FSCONFIG_SET_STRING, "source", source or fstype)
        for key, value in options:
            if value is None:
                sc.fsconfig(fs, sc.FSCONFIG_SET_FLAG, key)
            else:
                sc.fsconfig(fs, sc.FSCONFIG_SET_STRING, key, value)
        sc.fsconfig(fs, sc.FSCONFIG_CMD_CREATE)
        return sc.fsmount(fs, sc.FSMOUNT_CLOEXEC, attrs)
    finally:
        os.close(fs)


def _clone(dir_fd: int, path: str, recursive: bool = False, attrs: int = 0) -> int:
    """A detached bind mount of ``path`` (relative to ``dir_fd``; "" is ``dir_fd`` itself), with
    ``attrs`` set on every mount of it."""
    rec = sc.AT_RECURSIVE if recursive else 0
    fd = sc.open_tree(dir_fd, path, sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC | rec | (sc.AT_EMPTY_PATH if path == "" else 0))
    try:
        if attrs:
            sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH | rec, attr_set=attrs)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _attach(mount_fd: int, target_fd: int) -> None:
    """Attach the detached mount ``mount_fd`` onto what ``target_fd`` is (not onto a name)."""
    sc.move_mount(mount_fd, "", target_fd, "", _ATTACH)


def _mount_on(mount_fd: int, target_fd: int) -> int:
    """:func:`_attach`, closing ``target_fd``; returns ``mount_fd`` (now the attached mount)."""
    try:
        _attach(mount_fd, target_fd)
    except BaseException:
        os.close(mount_fd)
        raise
    finally:
        os.close(target_fd)
    return mount_fd


def _below(mount_fd: int, path: str):
    """O_PATH fd of ``path`` below a mount of ours (procfs, sysfs), never through a link; None when missing."""
    try:
        return rootfs.open_in_root(mount_fd, path, os.O_PATH | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _setup_dev(root_fd: int) -> None:
    """A minimal /dev, as runc's and LXC's (docs/security.md, "/dev"): a tmpfs mounted
    nosuid,noexec and nodev, so a node that guest root makes with mknod cannot be opened;
    the host's standard nodes bound in (a bind keeps its source mount's flags, so these
    still work); a new devpts instance (its own ptys; ptmx 0666, new ptys 0620 owned by
    gid 5, tty, as runc and LXC do); /dev/shm a tmpfs nosuid,nodev,noexec; the usual links.
    Everything in it is made relative to the new tmpfs's own fd: a guest that renames its
    /dev or swaps it for a link meanwhile moves nothing of this out of the tmpfs."""
    dev = _mount_on(_new_fs("tmpfs", (("mode", "755"), ("size", "64k")), _NOSUID_NODEV_NOEXEC),
                    _mountpoint(root_fd, "dev", 0o755))
    try:
        for node in DEV_NODES:
            target = os.open(node, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dev)
            os.close(_mount_on(_clone(sc.AT_FDCWD, "/dev/" + node), target))
        for sub in ("pts", "shm"):
            os.mkdir(sub, 0o755, dir_fd=dev)
        opts = (("newinstance", None), ("ptmxmode", "0666"), ("mode", "620"))
        try:
            pts = _new_fs("devpts", opts + (("gid", "5"),), sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NOEXEC)
        except KernelError as exc:  # gid 5 is not mapped in the guest's user namespace
            if exc.errno != errno.EINVAL:
                raise
            pts = _new_fs("devpts", opts, sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NOEXEC)
        os.close(_mount_on(pts, _sub(dev, "pts")))
        shm = _new_fs("tmpfs", (("mode", "1777"), ("size", "65536k")), _NOSUID_NODEV_NOEXEC, source="shm")
        os.close(_mount_on(shm, _sub(dev, "shm")))
        links = (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))
        for link, target in links:
            os.symlink(target, link, dir_fd=dev)
    finally:
        os.close(dev)


def _sub(dir_fd: int, name: str) -> int:
    return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)


# runc's defaults (libcontainer/specconv/example.go, the OCI runtime-spec's example config;
# Docker/Podman use the same lists): paths of /proc made read-only, and paths of /proc and
# /sys masked (a file by binding /dev/null over it, a folder by an empty read-only tmpfs).
# A path this kernel does not have is skipped.  A privileged guest gets neither (runc's and
# Docker's --privileged).
READONLY_PATHS = ("proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger")
MASKED_PATHS = (
    "proc/acpi", "proc/asound", "proc/kcore", "proc/keys", "proc/latency_stats", "proc/timer_list",
    "proc/timer_stats", "proc/sched_debug", "proc/scsi", "sys/firmware", "sys/devices/virtual/powercap",
)
_RO_ATTRS = sc.MOUNT_ATTR_RDONLY | _NOSUID_NODEV_NOEXEC


def _mountpoint(root_fd: int, name: str, mode: int, optional: bool = False):
    """O_PATH fd of the folder ``name`` right below the guest's root, made when missing; a
    symbolic link or anything else there is refused (it would move the mount elsewhere).
    ``optional``: None instead of an error when it is missing and cannot be made (the root
    of a user-namespace guest that its root user may not write)."""
    try:
        return rootfs.own_dir(root_fd, name, mode)
    except PermissionError:
        if optional:
            return None
        raise
    except rootfs.NotRegular:
        raise InvalidInput("root: /%s in the guest's root is a symbolic link or a file, not a folder: a guest with a "
                           "root gets its own /%s mounted there; make it a folder" % (name, name)) from None


def _readonly(mount_fd: int, path: str) -> None:
    """runc's readonlyPath: ``path`` below ``mount_fd`` bound recursively over itself, every mount
    of it read-only, nosuid, nodev, noexec."""
    target = _below(mount_fd, path)
    if target is not None:
        os.close(_mount_on(_clone(target, "", True, _RO_ATTRS), target))


def _mask(mount_fd: int, path: str) -> None:
    """runc's maskPath: /dev/null bound over a file, an empty read-only tmpfs over a folder."""
    target = _below(mount_fd, path)
    if target is None:
        return  # not on this kernel
    if stat.S_ISDIR(os.fstat(target).st_mode):
        masked = _new_fs("tmpfs", (("mode", "555"),), _RO_ATTRS)
    else:
        masked = _clone(sc.AT_FDCWD, "/dev/null")
    os.close(_mount_on(masked, target))


def _setup_proc_sys(root_fd: int, own_net: bool, privileged: bool) -> None:
    """/proc and /sys of a guest with a root (the host's /dev/null is still reachable): a fresh
    proc for the guest's pid namespace with runc's read-only and masked paths, and /sys
    read-only - a fresh sysfs when the guest has its own network namespace (it shows that
    namespace's devices), else the host's, bound recursively, read-only.  LXC's
    ``lxc.mount.auto = proc:mixed sys:ro`` is the same idea.  ``privileged``: as runc's
    --privileged, no masked or read-only paths, and /sys read-write."""
    ro = 0 if privileged else sc.MOUNT_ATTR_RDONLY
    proc = _mount_on(_new_fs("proc", (), _NOSUID_NODEV_NOEXEC), _mountpoint(root_fd, "proc", 0o555))
    sys_ = None
    try:
        sys_target = _mountpoint(root_fd, "sys", 0o555, optional=True)  # no /sys when it cannot be made
        if sys_target is not None:
            if own_net:
                try:
                    sys_ = _new_fs("sysfs", (), ro | _NOSUID_NODEV_NOEXEC)
                except KernelError as exc:  # a net namespace another user namespace owns (share)
                    if exc.errno not in (errno.EPERM, errno.EACCES):
                        os.close(sys_target)
                        raise
            if sys_ is None:
                try:
                    sys_ = _clone(sc.AT_FDCWD, "/sys", True, ro | _NOSUID_NODEV_NOEXEC)
                except BaseException:
                    os.close(sys_target)
                    raise
            sys_ = _mount_on(sys_, sys_target)
        if privileged:
            return
        for path in READONLY_PATHS:
            _readonly(proc, path[len("proc/"):])
        for path in MASKED_PATHS:
            top, _sep, rest = path.partition("/")
            if top == "proc":
                _mask(proc, rest)
            elif sys_ is not None:
                _mask(sys_, rest)
    finally:
        os.close(proc)
        if sys_ is not None:
            os.close(sys_)


def _root_step(spec: Spec, hs: handshake.Handshake) -> None:  # pragma: no cover - forked child
    """A userns: auto guest's root: P idmaps it in our mount namespace, or shifts it (userns_root)."""
    if spec.root is not None and spec.userns_root not in (None, "none"):
        hs.send(handshake.Step.ROOT)
        hs.wait_ack()


def _prepare_root(spec: Spec, meta: reg.GuestRecord, pid: int, table_dir) -> str:
    """The parent's part of Step.ROOT: ``idmap`` or ``shift`` (what was done, recorded)."""
    rng = userns.IdRange(meta.field("userns_range")["start"], meta.field("userns_range")["size"])
    mode = spec.userns_root
    if mode in ("auto", "idmap"):
        try:
            userns.idmap_root(pid, spec.root, spec.name)
            return "idmap"
        except KernelError as exc:
            if mode == "idmap" or exc.errno not in (errno.EINVAL, errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP):
                raise InvalidInput(
                    "%suserns_root: idmap: guest %r: its root %s cannot be idmapped here (%s; idmapped mounts need kernel "
                    "5.12+ and a filesystem that supports them, such as ext4, xfs, btrfs or tmpfs); set userns_root: auto "
                    "or shift to shift its ownership into the guest's range once instead"
                    % (spec.where, spec.name, spec.root, exc.msg)) from None
    marker = userns.shift_path(table_dir, spec.name)
    done = "%d %d %s" % (rng.start, rng.size, spec.root)
    try:
        with open(marker) as f:
            if f.read().strip() == done:
                return "shift"  # shifted once already (a recreate, a reboot)
    except OSError:
        pass
    try:
        userns.shift_root(spec.root, rng)
        os.makedirs(os.path.dirname(marker), mode=0o755, exist_ok=True)
        reg.write_atomic(marker, done + "\n", 0o644)
    except OSError as exc:
        raise GuestError("guest %r: shifting the ownership of its root %s into %s failed: %s"
                         % (spec.name, spec.root, rng.text(), exc.strerror)) from None
    return "shift"


def _root_ack(spec: Spec, meta: reg.GuestRecord, pid: int, run, hs: handshake.Handshake) -> None:
    meta.update({"userns_root_done": _prepare_root(spec, meta, pid, run.table_dir)})
    hs.ack()


def _setup_mounts(spec: Spec, registry: reg.Registry, pid_private: bool) -> None:
    """Runs in the process that will be pinned, inside the new mount namespace."""
    sc.mount("none", "/", None, sc.MS_REC | sc.MS_PRIVATE)
    if spec.root is None:
        # Other guests' pins must not be copied into this guest (they would keep
        # those namespaces alive after their guest is removed).
        _detach(registry.state_dir)
        _detach(registry.netns_dir)
        if pid_private:
            sc.mount("proc", "/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
        return
    root = spec.root
    sc.mount(root, root, None, sc.MS_BIND | sc.MS_REC)
    root_fd = rootfs.open_root(root)  # the bind just made: every mount below is made through fds of it
    try:
        os.fchdir(root_fd)
        _setup_proc_sys(root_fd, "net" in spec.namespaces or "net" in spec.share, spec.confinement.privileged)
        _setup_dev(root_fd)
    finally:
        os.close(root_fd)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


class MountTemplate:
    """A clean mount namespace from which a batch's guests copy theirs.

    unshare(CLONE_NEWNS) copies the whole mount table, which holds every other
    guest's pins (six mounts a guest), and each new guest then had to detach
    them again: creation cost grew with the number of guests.  The template is
    made once per task - a copy of the host's table made private, with the
    state folder and /run/netns detached - and each guest's child joins it
    before unsharing, so it copies only the short clean table.
    """

    def __init__(self, registry: reg.Registry):
        self.fd = -1
        r, w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
        except OSError:  # none then (the guest's own fork tells why)
            for fd in (r, w, go_r, go_w):
                os.close(fd)
            return
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                os.close(r)
                os.close(go_w)
                sc.set_pdeathsig(signal.SIGKILL)
                sc.unshare_one("mnt")
                sc.mount("none", "/", None, sc.MS_REC | sc.MS_PRIVATE)
                _detach(registry.state_dir)
                _detach(registry.netns_dir)
                os.write(w, b"r")
                os.read(go_r, 1)
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        os.close(go_r)
        try:
            if os.read(r, 1) == b"r":
                self.fd = os.open("/proc/%d/ns/mnt" % pid, os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(r)
            os.close(go_w)
            enter.wait_child(pid)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _child_main(spec, registry, hs: handshake.Handshake, child_run: forkserver.ChildRun, reaper_fd, devnull_fd, needs_init,
                parent_mnt_id, born_init: bool = False) -> None:  # pragma: no cover - forked child
    """Process C: make the namespaces (joining what ``child_run`` opened for it); fork the init I when there is one.
    ``born_init``: C was forked as the first process of the guest's new PID namespace (forkserver.born_init):
    it is the init itself and forks none."""
    hs.child_side()
    try:
        sc.set_pdeathsig(signal.SIGKILL)
        sc.set_dumpable(False)
        # The guest's cgroup first, before any setns or unshare: the init forked below is born in it,
        # and a private cgroup namespace is rooted at it (the guest sees its cgroup as /).
        enter.join_cgroup(spec.name, child_run.cgroup_procs)
        if child_run.mnt_template_fd >= 0:
            sc.setns(child_run.mnt_template_fd, "mnt")  # while still privileged: before any user namespace
        shared = child_run.share_fds
        user_shared = [(t, fd) for t, fd in shared if t == "user" and not enter.is_own_namespace(fd, t)]
        for t, fd in user_shared:
            sc.setns(fd, t)
        if "user" in spec.namespaces:
            sc.unshare_one("user")
            hs.send(handshake.Step.USER)
            hs.wait_ack()
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        for t, fd in shared:
            if t != "user":
                sc.setns(fd, t)
        for t in spec.namespaces:
            if t != "user" and not (t == "pid" and born_init):
                sc.unshare_one(t)
        if "mnt" in spec.namespaces:
            _newer_mnt_ns(spec.name, parent_mnt_id)
        if "time" in spec.namespaces:
            hs.send(handshake.Step.TIME)
            hs.wait_ack()
        if "net" in spec.namespaces:
            _lo_up()
        if spec.hostname and "uts" in spec.namespaces:
            sc.sethostname(spec.hostname)
        pid_private = "pid" in spec.namespaces
        if not needs_init:
            if "mnt" in spec.namespaces:
                _root_step(spec, hs)
                _setup_mounts(spec, registry, False)
            hs.send(handshake.Step.READY, pid=os.getpid())
            hs.wait_done()  # the parent pinned us (or died)
            os._exit(0)
        if not born_init:
            child = os.fork()
            if child:
                hs.send(handshake.Step.INIT, pid=child)
                os._exit(0)
        # Process I: the guest's PID 1 (or its reaper when pid is shared); C itself when born_init.
        if "mnt" in spec.namespaces:
            _root_step(spec, hs)
            _setup_mounts(spec, registry, pid_private)
        hs.send(handshake.Step.READY)
        hs.wait_go()  # exits when the parent died before the guest was recorded
        if born_init:
            sc.set_pdeathsig(0)  # the guest is recorded: its init outlives the fork server
        status_w = hs.status_fd()
        os.setsid()
        for fd in (0, 1, 2):
            os.dup2(devnull_fd, fd)
        enter.close_fds_except({status_w, reaper_fd})
        enter.reset_signals()
        os.chdir("/")  # never the caller's folder on the host (without mnt, the host's /)
        enter.seal_fds()  # status_w and reaper_fd end with the exec (CVE-2024-21626)
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container": "linuxns"}
        try:
            confine.apply(spec.confinement)  # built in the parent (guest_spec.Spec); seccomp last
        except GuestError as exc:
            enter.write_all(status_w, ("the guest's confinement could not be applied to its init: %s" % exc.msg).encode())
            os._exit(127)
        if spec.init:
            try:
                os.execvpe(spec.init[0], spec.init, env)
            except OSError as exc:
                enter.write_all(status_w, ("init %s could not be started inside the guest: %s" % (spec.init[0], exc.strerror)).encode())
                os._exit(127)
        if reaper_fd >= 0:
            try:
                os.execve(reaper_fd, ["catatonit", "-P"], env)
            except OSError as exc:
                enter.write_all(status_w, ("the reaper could not be started: %s" % exc.strerror).encode())
                os._exit(127)
        os.close(status_w)
        _python_reaper()
    except BaseException as exc:
        try:
            hs.send_error(exc)
        finally:
            os._exit(1)


def _newer_mnt_ns(name, parent_id) -> None:  # pragma: no cover - forked child
    """Make sure our new mount namespace's id is above the pinning process's.

    Linux refuses to bind-mount a mount namespace file into a namespace whose
    id is not lower (mnt_ns_loop, EINVAL).  Since 6.18 ids come from per-CPU
    batches of 4096, so a namespace made later on another CPU can get a lower
    id.  The CPU whose batch gave the parent its id always gives higher ones:
    try each CPU in turn with a fresh unshare(CLONE_NEWNS).  ``parent_id``: the
    parent's mount namespace id, read before the fork (None: unknown).
    """
    mine = sc.mnt_ns_id()
    if parent_id is None or mine is None or mine > parent_id:
        return
    allowed = os.sched_getaffinity(0)
    try:
        for _attempt in range(3):
            for cpu in sorted(allowed):
                os.sched_setaffinity(0, {cpu})
                sc.unshare_one("mnt")
                if sc.mnt_ns_id() > parent_id:
                    return
    finally:
        os.sched_setaffinity(0, allowed)
    raise GuestError("guest %r: could not get a mount namespace the kernel lets us pin (namespace id order)" % name)


def _python_reaper() -> None:  # pragma: no cover - forked child
    """Fallback PID 1 when no catatonit is installed (costs a Python process)."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    while True:
        try:
            os.wait()
        except ChildProcessError:
            signal.pause()
        except InterruptedError:
            pass


class _Run:
    """What one creation made so far (for rollback)."""

    def __init__(self):
        self.pins = []
        self.alias = None
        self.init_pid = None
        self.init_start = None
        self.cgroup = None  # the guest's cgroups.GuestCgroup once its folders may exist
        self.table_dir = None  # the kept files' folder (a userns: auto root's shift marker)


def create(registry: reg.Registry, spec: Spec, create_run: CreateRun, context_id=None, kept=None, fields=None) -> reg.GuestRecord:
    """Create the guest (caller holds its lock and removed any leftovers).  ``create_run``:
    the run's :class:`CreateRun`.  ``kept`` (persist.KeptIds): the guest gets its kept context
    id back and its table re-applied.  ``fields``: recorded values the guest keeps over the
    spec's defaults (a recreated guest's cgroup_parent and limits)."""
    name = spec.name
    ranges = kept.userns if kept is not None else None
    rng, new_range = None, False
    if spec.userns == "auto":  # its id range first: a pool that cannot give one changes nothing
        if ranges is None:
            raise InvalidInput("guest %r: userns: auto needs the table folder of the guests' kept files" % name)
        rng, new_range = ranges.allocate(name, spec.userns_size, registry.state_dir)
    try:
        with create_run.turn(name):  # guests made at the same time get their ids in the task's order
            ctx = registry.reserve_context_id(name, context_id if context_id is not None else spec.context_id, kept)
    except BaseException:
        if new_range:
            ranges.release(name)
        raise
    meta = reg.GuestRecord.from_fields(dict(spec.wanted(), **(fields or {})))  # phase creating, no pins yet
    meta.context_id, meta.created = ctx, time.time()
    if rng is not None:
        meta.update({"userns_range": rng.view()})
    run = _Run()
    run.table_dir = kept.table_dir if kept is not None else None
    try:
        cg = cgroups.GuestCgroup.plan(spec.cgroup_run.layout(), meta.cgroup_parent, name)
        if cg.exists() and cg.pids():  # not ours (another state folder, or a host sharing this cgroupfs)
            raise GuestConflict("guest %r: its cgroup %s (and the same in the other hierarchies) already exists and has processes "
                                "(pids %s) that are not this guest's; remove them or give another cgroup_parent"
                                % (name, sorted(cg.paths.values())[0], ", ".join(str(p) for p in cg.pids()[:8])))
        # Recorded before its folders are made: a run killed from here on leaves a record that
        # names them, and the next run removes them with the rest.
        meta.cgroup = {"parent": meta.cgroup_parent, "paths": dict(cg.paths)}
        registry.save(meta)
        faults.crash_point(faults.Step.RESERVED)
        cg.create(meta.limits or {})  # the limits hold before the first process of the guest runs; undone on failure
        run.cgroup = cg  # ours from here: the rollback removes it (never one create refused)
        meta.limits = cg.expected(meta.limits or {})  # recorded as the kernel says them
        _create_processes(registry, spec, meta, run, create_run, cg.procs_files())
        if "mnt" in spec.namespaces and kept is not None:
            from ansible_collections.linuxns.guests.plugins.module_utils import mounts

            mounts.apply_table(registry, meta, kept.table_dir)  # the guest's persistent mount table (namespace_mount)
        meta.phase = reg.READY
        registry.save(meta)
        faults.crash_point(faults.Step.READY)
        return meta
    except BaseException:
        _rollback(registry, name, ctx, run)
        if new_range:
            ranges.release(name)
        raise


def _needs_init(spec: Spec) -> bool:
    """Whether the guest gets an init (its own or a shared PID namespace, or an init program)."""
    return "pid" in spec.namespaces or "pid" in spec.share or spec.init is not None


def _needs_reaper(spec: Spec) -> bool:
    """Whether the guest's init is the reaper (an init without an init program of the user's)."""
    return _needs_init(spec) and not spec.init


def _create_processes(registry, spec, meta, run, create_run, cgroup_procs) -> None:
    name = spec.name
    needs_init = _needs_init(spec)
    reaper_fd = -1
    devnull_fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    child_run = None
    try:
        child_run = create_run.begin(spec, cgroup_procs)
        if _needs_reaper(spec):
            reaper = find_reaper()
            meta.reaper = reaper or "python"
            if reaper:
                reaper_fd = create_run.reaper_fd(reaper)  # the run's; closed by the run
        parent_mnt_id = sc.mnt_ns_id()
        hs = handshake.Handshake()
        try:
            child = create_run.fork_child(spec, hs, child_run, reaper_fd, devnull_fd, needs_init, parent_mnt_id)
        except BaseException:
            hs.close()
            raise
        pid = child.pid
        made = False  # the guest's init runs: a child that is the init itself is not waited for
        try:
            hs.parent_side()
            if child.is_init:  # C is the init (forkserver.born_init): recorded as INIT records one
                run.init_pid, run.init_start = pid, procfs.proc_start_time(pid)
                meta.init_pid, meta.init_start = run.init_pid, run.init_start
                registry.save(meta)
            faults.crash_point(faults.Step.FORKED)
            target = None
            root_pending = False  # the ROOT step of the init came before its INIT
            ready = False
            while not ready or (needs_init and run.init_pid is None):
                msg = hs.receive(name)
                step = msg["step"]
                if step is handshake.Step.USER:
                    auto = meta.field("userns_range")  # userns: auto: "0 START SIZE" for both
                    auto = ["0 %d %d" % (auto["start"], auto["size"])] if auto else None
                    _write_proc(pid, "uid_map", "\n".join(spec.uid_map or auto) + "\n", name, "uid_map")
                    _write_proc(pid, "gid_map", "\n".join(spec.gid_map or auto) + "\n", name, "gid_map")
                    hs.ack()
                elif step is handshake.Step.ROOT:
                    # From the init I, its ROOT may come before C's INIT (both write the pipe; C exits after
                    # it): done once I's host pid is known.  Without init, from C itself.
                    root_pending = True
                    if not needs_init:
                        _root_ack(spec, meta, pid, run, hs)
                        root_pending = False
                elif step is handshake.Step.TIME:
                    text = _time_offsets_text(spec.time_offsets or {}, name)
                    if text:
                        _write_proc(pid, "timens_offsets", text, name, "time_offsets")
                    hs.ack()
                elif step is handshake.Step.INIT:
                    run.init_pid = msg["pid"]
                    run.init_start = procfs.proc_start_time(run.init_pid)
                    meta.init_pid, meta.init_start = run.init_pid, run.init_start
                    registry.save(meta)
                if root_pending and run.init_pid is not None:
                    _root_ack(spec, meta, run.init_pid, run, hs)
                    root_pending = False
                if step is handshake.Step.READY:
                    ready = True
                    target = msg.get("pid")
            if needs_init:
                target = run.init_pid
            if target is None:
                raise GuestError("guest %r: no process to pin" % name)
            faults.crash_point(faults.Step.STARTED)
            _make_pins(registry, spec, meta, run, target, needs_init)
            faults.crash_point(faults.Step.PINNED)
            if "net" in meta.pins:
                _make_alias(registry, name, meta, run)
            faults.crash_point(faults.Step.ALIASED)
            if needs_init:
                err = hs.go()
                if err:
                    raise GuestError("guest %r: %s" % (name, err))
                made = True
            else:
                hs.done()
        except BaseException:
            # The child may be waiting for an ack (uid/gid map, time offsets) or for the
            # go: our ends of the handshake close first, so it reads EOF and exits, and it
            # is killed besides (it is our child, not reaped yet: the pid is still its).
            # Waiting for it with the pipes open was a hang that kept the lock forever.
            hs.close()
            child.kill()
            raise
        finally:
            hs.close()  # a child still waiting for the parent reads EOF and exits
            if made and child.is_init:
                child.release()
            else:
                child.wait()
    finally:
        if child_run is not None:
            child_run.close()
        os.close(devnull_fd)


def _time_offsets_text(offsets: dict, name: str) -> str:
    """timens_offsets lines: whole seconds and 0 <= nanoseconds < 1e9 (floored, so -1.5 is -2 s + 0.5e9 ns)."""
    lines = []
    for key, value in sorted(offsets.items()):
        try:
            secs = int(value // 1)
        except (OverflowError, ValueError):
            raise InvalidInput("guest %r: time_offsets.%s %r is not a finite number of seconds" % (name, key, value)) from None
        nsec = min(round((value - secs) * 1e9), 999999999)
        lines.append("%s %d %d\n" % (key, secs, nsec))
    return "".join(lines)


def _write_proc(pid, leaf, text, name, param) -> None:
    """Write a /proc file of the child that creates the namespaces; a refusal names ``param`` and the errno."""
    try:
        fd = os.open("/proc/%d/%s" % (pid, leaf), os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise KernelError("guest %r: %s cannot be set: opening /proc/%d/%s failed: %s"
                          % (name, param, pid, leaf, sc.errno_text(exc.errno)), errno=exc.errno) from None
    try:
        data = text.encode()
        if os.write(fd, data) != len(data):
            raise KernelError("guest %r: %s %r: the kernel took only part of the write to %s" % (name, param, text.strip(), leaf))
    except OSError as exc:
        raise InvalidInput("guest %r: the kernel refused %s %r (writing %s: %s); check the values"
                           % (name, param, text.strip().replace("\n", ", "), leaf, sc.errno_text(exc.errno))) from None
    finally:
        os.close(fd)


def _make_pins(registry, spec, meta, run, target, has_init) -> None:
    name = spec.name
    os.makedirs(registry.pin_dir(name), mode=0o700, exist_ok=True)
    own_mnt = os.stat("/proc/self/ns/mnt").st_ino
    for t in sc.NS_TYPES:
        if t not in spec.namespaces and t not in spec.share:
            continue
        # time (like pid) applies to children only: without an init, pin the one they would get
        leaf = t if has_init else sc.ns_type(t).pin_leaf
        src = "/proc/%d/ns/%s" % (target, leaf)
        if t == "mnt" and "mnt" in spec.namespaces and os.stat(src).st_ino == own_mnt:
            raise GuestError("guest %r: the new mount namespace was not created (the child is still in ours)" % name)
        path = registry.pin_path(name, t)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
        os.close(fd)
        run.pins.append(path)
        sc.mount(src, path, None, sc.MS_BIND)
        st = os.stat(path)
        meta.pins[t] = reg.Pin(path, st.st_dev, st.st_ino)


def _make_alias(registry, name, meta, run) -> None:
    registry.ensure_netns_dir()
    alias = registry.alias_path(name)
    pin = meta.pins["net"]
    try:
        fd = os.open(alias, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
        os.close(fd)
    except FileExistsError:
        now = reg.ns_id(alias)
        if now is not None and now[1] == pin.ino:
            meta.netns_alias = alias
            return
        if now is not None:
            raise GuestConflict(
                "guest %r: a network namespace named %r already exists in %s and is not this guest's; "
                "remove it (ip netns delete %s) or rename the guest" % (name, name, registry.netns_dir, name)
            ) from None
        # A leftover name file with nothing mounted on it: take it over.
    run.alias = alias
    sc.mount(pin.path, alias, None, sc.MS_BIND)
    meta.netns_alias = alias


def _rollback(registry, name, ctx, run) -> None:
    if run.init_pid and procfs.process_alive(run.init_pid, run.init_start):
        kill_wait(run.init_pid, run.init_start, signal.SIGKILL, 5.0)
    if run.alias:
        unpin(run.alias)
    for path in run.pins:
        unpin(path)
    if run.cgroup is not None:
        try:
            run.cgroup.remove()  # whatever is in it killed, its folders removed
        except GuestError:
            return  # the record (phase creating) stays and names it: the next run removes it (the first error is raised)
    registry.release_context_id(name, ctx)
    shutil.rmtree(registry.guest_dir(name), ignore_errors=True)


class Turns:
    """The task's order for guests made at the same time (guests._Together): each one's context
    id is reserved after those of the guests listed before it, so that a task gives the same ids
    to the same names whether its guests are made one at a time or together.  A guest whose
    creation ends without reserving one (a failure before it, another run made it) gives its
    turn up (:meth:`over`)."""

    def __init__(self, names):
        self.index = {n: k for k, n in enumerate(names)}
        self.next = 0  # the first guest whose turn is not over
        self.ended = set()
        self.cond = threading.Condition()

    @contextlib.contextmanager
    def of(self, name: str):
        k = self.index.get(name)
        with self.cond:
            while k is not None and self.next < k:
                self.cond.wait()
        try:
            yield
        finally:
            self.over(name)

    def over(self, name: str) -> None:
        k = self.index.get(name)
        if k is None:
            return
        with self.cond:
            self.ended.add(k)
            while self.next in self.ended:
                self.next += 1
            self.cond.notify_all()


class CreateRun:
    """The per-run context of creating guests: made once per run by ``guests.ensure_guests``
    (or by a single ``guests.apply``), passed explicitly down to the forked child, closed by
    the run at its end.  Nothing of it lives at module level or on the :class:`Spec`.

    - The batch's clean mount namespace (a :class:`MountTemplate`): made on first use,
      shared by every guest the run creates.
    - The reaper the batch's inits exec, and the fork server of a big run.
    - For each guest being created, a :class:`forkserver.ChildRun` (:meth:`begin`): the
      namespace files its child joins (its ``share`` sources, opened before the fork), the
      template's fd when it gets a mount namespace of its own, its cgroup.procs files.

    Guests of one run may be made by several threads at once (guests._Together): what the
    run makes on first use is made under its lock, and one request at a time goes to the
    fork server.
    """

    def __init__(self, registry: reg.Registry, expected: int = 1):
        self.registry = registry
        self.expected = expected  # guests the run will create at most: a fork server from forkserver.MIN_GUESTS on
        self.forkserver = None  # started on the first fork of a big run; False: not to be had here
        self.template = None
        self.reaper = None  # (path, fd) of the reaper the batch's inits exec
        self.turns = None  # the task's order while guests are made at the same time (a Turns)
        self._lock = threading.Lock()

    def turn(self, name: str):
        """Wait for ``name``'s turn to reserve its context id (no wait unless guests are made together)."""
        return self.turns.of(name) if self.turns is not None else contextlib.nullcontext()

    def reaper_fd(self, path: str) -> int:
        """The fd the batch's inits exec the host's reaper ``path`` from (fexecve).

        CVE-2019-5736 class: exec'd from the host's file, the reaper would be that file
        as /proc/1/exe inside the guest, where guest root could open it for writing and
        change the host's binary.  A statically linked reaper (Debian's catatonit is)
        runs from a sealed memfd copy (syscalls.sealed_copy): /proc/1/exe is then an
        anonymous file nobody can write.  One copy per run, shared by the run's guests
        (sealed, so sharing it gives no guest a way to change it; a copy per guest would
        cost each idle guest ~700 KiB of memory that is now page cache shared with the
        host).  A dynamically linked reaper would load its libraries from the guest's
        root anyway: it is exec'd from the host's file, as before (docs/security.md)."""
        with self._lock:
            if self.reaper is None:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if sc.elf_is_static(fd):
                        sealed = sc.sealed_copy(path, os.path.basename(path))
                        os.close(fd)
                        fd = sealed
                except BaseException:
                    os.close(fd)
                    raise
                self.reaper = (path, fd)
            return self.reaper[1]

    def template_fd(self) -> int:
        """The template's namespace file, or -1 when it could not be made."""
        with self._lock:
            if self.template is None:
                self.template = MountTemplate(self.registry)
            return self.template.fd

    def _server(self):
        """The run's fork server, started on first use in a big run; None: not to be had."""
        with self._lock:
            if self.forkserver is None:
                self.forkserver = False
                if self.expected >= forkserver.MIN_GUESTS:
                    try:
                        self.forkserver = forkserver.ForkServer()
                    except (OSError, GuestError):
                        pass  # forked here, as in a small run
            return self.forkserver or None

    def start_together(self, specs) -> bool:
        """Before guests are made by several threads at once: start what is made on first use
        (a fork from a process with threads could copy a lock another thread holds).  True when
        the fork server runs: without it each guest's child is forked from this process, and
        the guests are made one at a time."""
        if self._server() is None:
            return False
        if any(self._joins_template(s) for s in specs):
            self.template_fd()
        if any(_needs_reaper(s) for s in specs):
            reaper = find_reaper()
            if reaper:
                self.reaper_fd(reaper)
        return True

    def fork_child(self, spec: Spec, hs: handshake.Handshake, child_run: forkserver.ChildRun, reaper_fd, devnull_fd, needs_init,
                   parent_mnt_id):
        """Fork the child C that makes ``spec``'s guest (:func:`_child_main`): through the
        run's fork server in a big run (:mod:`forkserver`), else from this process."""
        server = self._server()
        if server is not None:
            named = [(end, hs.fd(end)) for end in handshake.CHILD_ENDS]
            named += [("devnull", devnull_fd), ("template", child_run.mnt_template_fd), ("reaper", reaper_fd)]
            named += [("share:" + t, fd) for t, fd in child_run.share_fds]
            fds = {key: fd for key, fd in named if fd >= 0}
            alone = copy.copy(spec)  # without the rest of the task (spec.batch: every spec before it)
            alone.batch, alone.cgroup_run, alone.deferred = {}, None, []
            with self._lock:  # one request at a time on the server's socket
                child = server.fork(alone, reg.Registry(self.registry.state_dir, self.registry.netns_dir), fds,
                                    child_run.cgroup_procs, needs_init, parent_mnt_id)
            if child is not None:
                return child
        pid = forkserver.fork_for(spec.name)
        if pid == 0:  # pragma: no cover - child
            _child_main(spec, self.registry, hs, child_run, reaper_fd, devnull_fd, needs_init, parent_mnt_id)
            os._exit(1)
        return forkserver.Child(pid)

    def _joins_template(self, spec: Spec) -> bool:
        """Whether ``spec``'s child joins the batch's clean mount namespace before it unshares its own."""
        return "mnt" in spec.namespaces and self.registry.exists()

    def begin(self, spec: Spec, cgroup_procs=()) -> forkserver.ChildRun:
        """Open what the child that creates ``spec``'s guest joins (closed by its ``close()``)."""
        child_run = forkserver.ChildRun(cgroup_procs)
        try:
            for t in sc.NS_TYPES:
                if t in spec.share:
                    src = spec.share[t]
                    path = src if src.startswith("/") else self.registry.pin_path(src, t)
                    child_run.share_fds.append((t, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
            if self._joins_template(spec):
                child_run.mnt_template_fd = self.template_fd()
        except BaseException:
            child_run.close()
            raise
        return child_run

    def close(self) -> None:
        server, self.forkserver = self.forkserver, None
        if server:
            try:
                server.close()
            except GuestError:
                pass  # it died: the guests whose fork it failed were told, and are not made
        if self.template is not None:
            self.template.close()
            self.template = None
        if self.reaper is not None:
            os.close(self.reaper[1])
            self.reaper = None
