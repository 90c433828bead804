# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The in-guest worker of namespace_mount: walking a path without following links,
making detached mounts, applying a guest's operations inside its mount namespace and
undoing them on failure, inspecting paths there, and naming a busy mount's holders.
"""

from __future__ import annotations

import errno as _errno
import os
import stat as _stat

from ansible_collections.linuxns.guests.plugins.module_utils import enter, procfs, rootfs, sealed
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    GuestError,
    InvalidInput,
    KernelError,
    MountBusy,
)
from ansible_collections.linuxns.guests.plugins.module_utils.mount_spec import BIND_TYPES, PROP_FLAGS, PROPAGATIONS, fs_log
from ansible_collections.linuxns.guests.plugins.module_utils.mountinfo import read_own_mountinfo


class Missing(GuestError):
    """A component of a path does not exist."""


def _create(part: str, cur: int, kind: str, mode: int, create_as) -> None:
    """Make ``part`` below ``cur``.  In a user-namespace guest's idmapped root host root's ids
    are not mapped (EOVERFLOW): made again as the guest's root (``create_as``: host uid, gid)."""
    def make() -> None:
        if kind == "file":
            os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=cur))
        else:
            os.mkdir(part, mode, dir_fd=cur)
    try:
        make()
    except OSError as exc:
        if exc.errno != _errno.EOVERFLOW or not create_as:
            raise
        os.setegid(create_as[1])
        os.seteuid(create_as[0])
        try:
            make()
        finally:
            os.seteuid(0)
            os.setegid(0)


def walk(path: str, root_fd=None, create=None, mode: int = 0o755, create_as=None):
    """Open ``path`` below ``root_fd`` (default: our root) one component at a time.

    Never follows a symbolic link: a link anywhere in the path raises InvalidInput
    naming it.  ``create`` ("dir" or "file") creates missing components (the last
    one as that kind).  Returns (O_PATH fd, [created paths]).
    """
    parts = [p for p in path.split("/") if p]
    if root_fd is None:
        cur = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        cur = os.dup(root_fd)
    created, sofar = [], ""
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            sofar += "/" + part
            if part in (".", ".."):
                raise InvalidInput("path %s: the component %r is not allowed" % (path, part))
            try:
                nfd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            except FileNotFoundError:
                if not create:
                    raise Missing("path %s: %s does not exist" % (path, sofar)) from None
                _create(part, cur, "file" if last and create == "file" else "dir", mode, create_as)
                created.append(sofar)
                nfd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            st = os.fstat(nfd)
            if _stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(part, dir_fd=cur)
                except OSError:
                    target = "?"
                os.close(nfd)
                raise InvalidInput(
                    "path %s: %s is a symbolic link (to %s); mount points are never resolved through symbolic links, "
                    "so a link cannot lead a mount out of the guest's root - give the real path" % (path, sofar, target)
                )
            if not last and not _stat.S_ISDIR(st.st_mode):
                os.close(nfd)
                raise InvalidInput("path %s: %s is not a directory" % (path, sofar))
            os.close(cur)
            cur = nfd
        return cur, created
    except BaseException:
        os.close(cur)
        raise


def _inspect_in_guest(proc_fd: int, paths: list) -> dict:
    """Runs inside the guest's mount namespace: its mount table and its mount points."""
    text = read_own_mountinfo(proc_fd)
    out = {}
    for path in paths:
        try:
            fd, _c = walk(path)
        except Missing as exc:
            out[path] = {"exists": False, "missing": exc.msg}
            continue
        except InvalidInput as exc:
            out[path] = {"exists": False, "refused": exc.msg}
            continue
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        out[path] = {"exists": True, "dev": st.st_dev, "ino": st.st_ino, "dir": _stat.S_ISDIR(st.st_mode)}
    return {"mountinfo": text, "paths": out}


def _make_detached(op: dict) -> int:
    """A detached mount for ``op``, made with host paths (runs before joining the guest's mnt)."""
    if op["fstype"] in BIND_TYPES:
        rec = sc.AT_RECURSIVE if op["fstype"] == "rbind" else 0
        # A source inside a guest's root is resolved inside it (a link its guest planted stays there);
        # the tree is cloned from the fd that walk opened, never by name.
        try:
            src = rootfs.open_source(op["src"], op.get("src_roots") or {})
        except OSError as exc:
            raise InvalidInput("%s: the bind source %s cannot be opened: %s" % (op["path"], op["src"], sc.errno_text(exc.errno))) from None
        try:
            fd = sc.open_tree(src, "", sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC | sc.AT_EMPTY_PATH | rec)
        finally:
            os.close(src)
        try:
            sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH | rec, op["attr"], sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NOSUID
                             | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC | sc.MOUNT_ATTR__ATIME)
            if op.get("idmap"):
                _idmap(fd, rec, op)
        except BaseException:
            os.close(fd)
            raise
        return fd
    fsfd = sc.fsopen(op["fstype"])
    try:
        try:
            sc.fsconfig(fsfd, sc.FSCONFIG_SET_STRING, "source", op["src"])
            for key, value in op["fsopts"]:
                if value is None:
                    sc.fsconfig(fsfd, sc.FSCONFIG_SET_FLAG, key)
                else:
                    sc.fsconfig(fsfd, sc.FSCONFIG_SET_STRING, key, value)
            sc.fsconfig(fsfd, sc.FSCONFIG_CMD_CREATE)
        except KernelError as exc:
            why = fs_log(fsfd)
            raise exc.with_message("%s: making the %s filesystem failed: %s" % (op["path"], op["fstype"], why or exc.msg)) from None
        return sc.fsmount(fsfd, sc.FSMOUNT_CLOEXEC, op["attr"])
    finally:
        os.close(fsfd)


def _idmap(fd: int, rec: int, op: dict) -> None:
    """Make the detached bind ``fd`` idmapped through the guest's user namespace (pin ``op["idmap"]``)."""
    userns = os.open(op["idmap"], os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH | rec, sc.MOUNT_ATTR_IDMAP, 0, 0, userns)
    except KernelError as exc:
        if exc.errno in (_errno.EINVAL, _errno.EPERM, _errno.ENOSYS):
            raise InvalidInput(
                "%s: opts 'idmap': the bind source %s cannot be idmapped here (%s: idmapped mounts need kernel 5.12+ and a "
                "filesystem that supports them, such as ext4, xfs, btrfs or tmpfs, and no nested idmapping); leave out "
                "'idmap' and give the files to the guest's range instead (chown to its userns_range)"
                % (op["path"], op["src"], sc.errno_text(exc.errno))) from None
        raise
    finally:
        os.close(userns)


def _set_prop(fd: int, prop: str) -> None:
    rec = prop.startswith("r") and prop[1:] in PROPAGATIONS
    base = prop[1:] if rec else prop
    sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH | (sc.AT_RECURSIVE if rec else 0), 0, 0, PROP_FLAGS[base])


def _umount(path: str, lazy: bool) -> None:
    sc.umount2(path, sc.UMOUNT_NOFOLLOW | (sc.MNT_DETACH if lazy else 0))


def _apply_ops(detached: dict, ops: list, proc_fd: int) -> dict:
    """Runs with the guest's root as ours: attach, remount, unmount; undo on failure."""
    undo = []  # ("umount", path) | ("rm", path) | ("attr", path, set, clr)
    done = []
    try:
        for i, op in enumerate(ops):
            path, action = op["path"], op["action"]
            if action in ("unmount", "replace"):
                try:
                    _umount(path, op["lazy"])
                except KernelError as exc:
                    if exc.errno == _errno.EBUSY:
                        raise MountBusy("umount %s: target is busy" % path, errno=_errno.EBUSY, path=path) from None
                    if exc.errno != _errno.EINVAL:  # EINVAL: not a mount point (any more)
                        raise
            if action in ("mount", "replace"):
                fd, created = walk(path, create=op["create"] and op["create_kind"], create_as=op.get("create_as"))
                undo += [("rm", c) for c in created]
                try:
                    sc.move_mount(detached[i], "", fd, "", sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
                finally:
                    os.close(fd)
                undo.append(("umount", path))
            if action in ("mount", "replace", "remount"):
                fd, _c = walk(path)
                try:
                    if action == "remount" and (op["attr_set"] or op["attr_clr"]):
                        sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH, op["attr_set"], op["attr_clr"])
                        undo.append(("attr", path, op["undo_set"], op["undo_clr"]))
                    if action == "remount" and op["reconfigure"]:
                        pfd = sc.fspick(fd, "", sc.FSPICK_EMPTY_PATH | sc.FSPICK_CLOEXEC)
                        try:
                            try:
                                for key, value in op["reconfigure"]:
                                    sc.fsconfig(pfd, sc.FSCONFIG_SET_STRING, key, value)
                                sc.fsconfig(pfd, sc.FSCONFIG_CMD_RECONFIGURE)
                            except KernelError as exc:
                                raise exc.with_message("%s: remounting failed: %s" % (path, fs_log(pfd) or exc.msg)) from None
                        finally:
                            os.close(pfd)
                    if op["propagation"]:
                        _set_prop(fd, op["propagation"])
                finally:
                    os.close(fd)
            done.append(i)
    except OSError as exc:
        _undo(undo)
        raise KernelError("%s: %s" % (ops[len(done)]["path"], exc.strerror or exc), errno=exc.errno or 0) from None
    except BaseException:
        _undo(undo)
        raise
    return {"mountinfo": read_own_mountinfo(proc_fd), "done": done}


def _undo(undo: list) -> None:
    """Detach what this run attached, remove what it created, restore changed flags."""
    for item in reversed(undo):
        try:
            if item[0] == "umount":
                sc.umount2(item[1], sc.MNT_DETACH | sc.UMOUNT_NOFOLLOW)
            elif item[0] == "rm":
                # relative to its folder, opened by the O_NOFOLLOW walk: a folder the guest
                # swapped for a link since it was made is not followed
                parent, name = item[1].rsplit("/", 1)
                pfd, _c = walk(parent)
                try:
                    if _stat.S_ISDIR(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode):
                        os.rmdir(name, dir_fd=pfd)
                    else:
                        os.unlink(name, dir_fd=pfd)
                finally:
                    os.close(pfd)
            elif item[0] == "attr":
                fd, _c = walk(item[1])
                try:
                    sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH, item[2], item[3])
                finally:
                    os.close(fd)
        except (OSError, GuestError):
            pass


def run_in_guest_mnt(meta: reg.GuestRecord, ops: list):
    """Fork a worker: join the guest's non-mount namespaces, build the detached mounts
    with host paths, join its mount namespace, apply ``ops``.  Returns the worker's result."""
    pins = meta.pins
    need_pid = any(op["action"] in ("mount", "replace") and op["fstype"] == "proc" for op in ops) and "pid" in pins
    if need_pid and not sc.running_sealed():  # its child is seen in the guest's pid namespace (CVE-2019-5736 class)
        return sealed.in_sealed_clone(run_in_guest_mnt, meta, ops)
    types = [t for t in ("cgroup", "ipc", "uts", "net") if t in pins] + (["pid"] if need_pid else []) + ["mnt"]
    types = enter.check_types(meta, types)

    def body(wfd, proc_fd):
        fds = enter.open_namespaces(meta, types)
        mnt_fd = next(fd for t, fd in fds if t == "mnt")
        enter.join_namespaces([(t, fd) for t, fd in fds if t != "mnt"])
        if need_pid:
            child = os.fork()
            if child:
                os.close(wfd)
                enter.wait_child(child)
                os._exit(0)
        detached = {}
        for i, op in enumerate(ops):
            if op["action"] in ("mount", "replace"):
                detached[i] = _make_detached(op)
        sc.setns(mnt_fd, "mnt")
        os.close(mnt_fd)
        os.chdir("/")
        return _apply_ops(detached, ops, proc_fd)

    proc_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return enter.run_forked(meta, body, proc_fd)
    finally:
        os.close(proc_fd)


def inspect_guest(meta: reg.GuestRecord, paths: list) -> dict:
    proc_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return enter.call_in_guest(meta, ["mnt"], _inspect_in_guest, proc_fd, paths)
    finally:
        os.close(proc_fd)


def holders(meta: reg.GuestRecord | None, m: dict, mirror_prefixes=()) -> list:
    """Processes that keep the mount ``m`` of the guest busy (like fuser -m), as text
    (``meta`` None: only the mirror's holders).

    In the guest's mount namespace: cwd, root or an open file on that very mount
    (mount ids from fdinfo).  With a mirror: host processes whose cwd, root or open
    file lies below one of ``mirror_prefixes``.  See :func:`procfs.holders`.
    """
    mnt_ino = meta.pins["mnt"].ino if meta is not None and "mnt" in meta.pins else None
    return procfs.holders(mnt_ino, m.get("mount_id"), mirror_prefixes)
