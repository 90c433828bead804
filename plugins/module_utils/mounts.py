# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mount tables (/proc/PID/mountinfo parsing) and the mounts of one guest (namespace_mount's engine)."""

from __future__ import annotations

import errno as _errno
import os
import stat as _stat

from ansible_collections.linuxns.guests.plugins.module_utils import enter, model, persist, procfs
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.common import to_bool
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    GuestConflict,
    GuestError,
    InvalidInput,
    KernelError,
    MountBusy,
)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        c = field[i]
        if c == "\\" and i + 3 < len(field) + 0 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list:
    """Parse mountinfo text (proc(5)) into a list of dicts, in table order."""
    mounts = []
    for line in text.splitlines():
        if not line.strip():
            continue
        left, _sep, right = line.partition(" - ")
        f = left.split(" ")
        r = right.split(" ")
        if len(f) < 6 or len(r) < 2:
            continue
        optional = [x for x in f[6:] if x]
        propagation = "private"
        peer = master = None
        for tag in optional:
            if tag.startswith("shared:"):
                propagation, peer = "shared", int(tag[7:])
            elif tag.startswith("master:"):
                master = int(tag[7:])
                if propagation != "shared":
                    propagation = "slave"
            elif tag == "unbindable":
                propagation = "unbindable"
        mounts.append(
            {
                "mount_id": int(f[0]),
                "parent_id": int(f[1]),
                "dev": f[2],
                "root": _unescape(f[3]),
                "path": _unescape(f[4]),
                "mount_opts": f[5],
                "optional": optional,
                "propagation": propagation,
                "peer_group": peer,
                "master": master,
                "fstype": r[0],
                "src": _unescape(r[1]),
                "super_opts": r[2] if len(r) > 2 else "",
            }
        )
    return mounts


def _read_own_mountinfo(proc_fd: int) -> str:
    fd = os.open("self/mountinfo", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_fd)
    try:
        return enter.read_all(fd).decode(errors="surrogateescape")
    finally:
        os.close(fd)


def guest_mountinfo(meta: dict) -> list:
    """The guest's mount table as the kernel reports it from inside its mount namespace."""
    init = meta.get("init_pid")
    if init and procfs.process_alive(init, meta.get("init_start")):
        try:
            with open("/proc/%d/mountinfo" % init, "rb") as f:
                return parse_mountinfo(f.read().decode(errors="surrogateescape"))
        except OSError:
            pass
    # No live process in the guest: read it from a child that joined its mount
    # namespace, through the host's /proc (opened before setns).
    proc_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        text = enter.call_in_guest(meta, ["mnt"], _read_own_mountinfo, proc_fd)
    finally:
        os.close(proc_fd)
    return parse_mountinfo(text)


# =======================================================================================
# namespace_mount: mounts inside one guest's mount namespace
# =======================================================================================
#
# Compute, then apply.  ``converge`` validates every entry on the host side (bind
# sources, filesystem types, options - each option is handed to fsconfig(2) once, so
# the kernel names the one it rejects), reads the guest's mount table and its mount
# points from a worker inside the guest (mount points are walked one component at a
# time with O_NOFOLLOW: a symbolic link anywhere in a path is refused), plans every
# entry, and only then changes anything from a second worker:
#
#   1. that worker joins the guest's cgroup/ipc/uts/net (and pid, forking, when a proc
#      mount is made) namespaces but stays in the host's mount namespace;
#   2. it builds every new mount detached, with host paths: open_tree(OPEN_TREE_CLONE)
#      for binds, fsopen/fsconfig/fsmount for filesystems (proc, sysfs and mqueue take
#      the guest's pid, net and ipc namespaces this way);
#   3. it joins the guest's mount namespace (its root becomes the guest's root) and
#      attaches each mount with move_mount on an O_PATH fd of the walked mount point.
#
# What the worker attached is detached again when a later step fails.

STATES = ("mounted", "ephemeral", "present", "unmounted", "absent", "remounted")
BIND_TYPES = ("bind", "rbind")
PROPAGATIONS = ("private", "slave", "shared", "unbindable")
PROP_FLAGS = {"private": sc.MS_PRIVATE, "slave": sc.MS_SLAVE, "shared": sc.MS_SHARED, "unbindable": sc.MS_UNBINDABLE}
FLAG_WORDS = {
    # word: (attribute, value)
    "ro": ("ro", True), "rw": ("ro", False),
    "nosuid": ("nosuid", True), "suid": ("nosuid", False),
    "nodev": ("nodev", True), "dev": ("nodev", False),
    "noexec": ("noexec", True), "exec": ("noexec", False),
    "nodiratime": ("nodiratime", True), "diratime": ("nodiratime", False),
}
ATIME_WORDS = ("relatime", "noatime", "strictatime")
ATTR_BITS = {"ro": sc.MOUNT_ATTR_RDONLY, "nosuid": sc.MOUNT_ATTR_NOSUID, "nodev": sc.MOUNT_ATTR_NODEV,
             "noexec": sc.MOUNT_ATTR_NOEXEC, "nodiratime": sc.MOUNT_ATTR_NODIRATIME}
ATIME_BITS = {"relatime": sc.MOUNT_ATTR_RELATIME, "noatime": sc.MOUNT_ATTR_NOATIME, "strictatime": sc.MOUNT_ATTR_STRICTATIME}
# fstab-only words: accepted, meaningless for a mount made now.
IGNORED_WORDS = ("defaults", "auto", "noauto", "nofail", "_netdev", "user", "nouser", "users", "owner", "group")
# Superblock options the kernel changes in place (fspick + FSCONFIG_CMD_RECONFIGURE).
RECONFIGURABLE = {"tmpfs": ("size", "nr_blocks", "nr_inodes", "huge", "mpol")}
# Options the kernel leaves out of mountinfo when they have their default value.
HIDDEN_DEFAULTS = {"tmpfs": {"mode": "1777", "uid": "0", "gid": "0"}}
AT_FDCWD = -100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# ---------------------------------------------------------------------------------------
# Options and specs
# ---------------------------------------------------------------------------------------
def _memparse(text: str) -> int:
    """The kernel's memparse (k/m/g/t suffixes, binary) and tmpfs' N% of RAM, in bytes."""
    t = text.strip().lower()
    if t.endswith("%"):
        pct = int(t[:-1])
        with open("/proc/meminfo") as f:
            total_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
        pages = (total_kb * 1024 // PAGE) * pct // 100
        return pages * PAGE
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if t and t[-1] in mult:
        return int(t[:-1], 0) * mult[t[-1]]
    return int(t, 0)


def norm_value(key: str, value):
    """A comparable form of one filesystem option's value (as the kernel shows it)."""
    if value is None:
        return None
    try:
        if key == "size":
            return -(-_memparse(value) // PAGE) * PAGE
        if key in ("nr_blocks", "nr_inodes"):
            return _memparse(value)
        if key.endswith("mode"):
            return int(value, 8)
    except (ValueError, StopIteration, OSError):
        return value
    return value


def parse_opts(opts, fstype: str, where: str = "") -> dict:
    """Split an fstab option string into mount flags, atime and filesystem options."""
    flags, atime, fsopts = {}, None, []
    if opts is None:
        opts = ""
    if not isinstance(opts, str):
        raise InvalidInput("%sopts must be a comma separated string like fstab's, not %r" % (where, opts))
    for word in [w.strip() for w in opts.split(",")]:
        if not word or word in IGNORED_WORDS or word.startswith("x-"):
            continue
        if word in FLAG_WORDS:
            attr, val = FLAG_WORDS[word]
            flags[attr] = val
        elif word in ATIME_WORDS:
            atime = word
        elif word in ("bind", "rbind", "remount", "move", "make-shared", "make-private", "make-slave"):
            raise InvalidInput(
                "%sopts: %r is not an option here; use fstype=bind/rbind for binds, state=remounted to remount "
                "and propagation for shared/slave/private" % (where, word)
            )
        elif fstype in BIND_TYPES:
            raise InvalidInput(
                "%sopts: %r is a filesystem option, but a bind mount takes only mount flags "
                "(ro, rw, nosuid, nodev, noexec, relatime, noatime, strictatime, nodiratime)" % (where, word)
            )
        else:
            key, sep, value = word.partition("=")
            if any(k == key for k, _v in fsopts):
                raise InvalidInput("%sopts: option %r is given twice" % (where, key))
            fsopts.append((key, value if sep else None))
    return {"flags": flags, "atime": atime, "fsopts": fsopts}


def render_opts(flags: dict, atime, fsopts) -> str:
    words = ["ro" if flags.get("ro") else "rw"]
    words += [attr for attr in ("nosuid", "nodev", "noexec", "nodiratime") if flags.get(attr)]
    if atime:
        words.append(atime)
    words += [k if v is None else "%s=%s" % (k, v) for k, v in fsopts]
    return ",".join(words)


def kernel_filesystems() -> set:
    try:
        with open("/proc/filesystems") as f:
            return {line.split()[-1] for line in f if line.strip()}
    except OSError:
        return set()


class MountSpec:
    """One wanted mount of a guest, validated and normalised."""

    def __init__(self, params: dict, where: str = ""):
        self.where = where
        self.state = params.get("state") or "mounted"
        if self.state not in STATES:
            raise InvalidInput("%sstate must be one of %s, not %r" % (where, ", ".join(STATES), self.state))
        for key in ("path", "src", "fstype", "opts"):  # all reach the kernel or a file name
            model.check_text(params.get(key), where + key)
        path = params.get("path")
        if not isinstance(path, str) or not path:
            raise InvalidInput("%spath is required: the mount point as the guest sees it" % where)
        if not path.startswith("/"):
            raise InvalidInput("%spath %r must be absolute (as the guest sees it, inside its root)" % (where, path))
        if ".." in path.split("/"):
            raise InvalidInput("%spath %r must not contain '..': it would leave the place it names, maybe the guest's root" % (where, path))
        if "\0" in path or "\n" in path:
            raise InvalidInput("%spath %r contains a NUL or newline character" % (where, path))
        self.path = os.path.normpath(path).replace("//", "/")
        if self.path == "/":
            raise InvalidInput("%spath / is the guest's root; mounting over it is not supported" % where)
        self.create = to_bool(params.get("create"), True, where + "create")
        self.recreate = to_bool(params.get("recreate"), False, where + "recreate")
        self.lazy = to_bool(params.get("lazy_unmount"), False, where + "lazy_unmount")
        fstype = params.get("fstype")
        src = params.get("src")
        self.given_src = src is not None
        self.given_fstype = fstype is not None
        needs_type = self.state in ("mounted", "ephemeral", "present")
        if fstype is None and needs_type:
            raise InvalidInput("%sfstype is required with state=%s (bind, rbind, tmpfs, proc, overlay, ...)" % (where, self.state))
        if fstype is not None and (not isinstance(fstype, str) or not fstype or " " in fstype or "," in fstype):
            raise InvalidInput("%sfstype %r is not a filesystem type" % (where, fstype))
        self.fstype = fstype
        if fstype in BIND_TYPES:
            if not src:
                raise InvalidInput("%ssrc is required for a %s mount: the host path to bind" % (where, fstype))
            if not isinstance(src, str) or not src.startswith("/"):
                raise InvalidInput("%ssrc %r must be an absolute host path for a %s mount" % (where, src, fstype))
            src = os.path.normpath(src)
        elif src is not None and (not isinstance(src, str) or not src or " " in src or "\n" in src):
            raise InvalidInput("%ssrc %r is not a valid source" % (where, src))
        self.src = src if src is not None else fstype
        raw = params.get("opts")
        parsed = parse_opts(raw, fstype or "", where)
        self.flags, self.atime, self.fsopts = parsed["flags"], parsed["atime"], parsed["fsopts"]
        self.given_opts = raw is not None
        prop = params.get("propagation")
        if prop is not None:
            base = prop[1:] if isinstance(prop, str) and prop.startswith("r") and prop[1:] in PROPAGATIONS else prop
            if base not in PROPAGATIONS:
                raise InvalidInput(
                    "%spropagation %r is not one of %s (prefix r for recursive: rshared, rslave, ...)" % (where, prop, ", ".join(PROPAGATIONS))
                )
        self.propagation = prop
        self.src_stat = None

    @property
    def bind(self) -> bool:
        return self.fstype in BIND_TYPES

    @property
    def opts(self) -> str:
        return render_opts(self.flags, self.atime, self.fsopts)

    @property
    def prop_base(self):
        if not self.propagation:
            return None
        return self.propagation[1:] if self.propagation.startswith("r") and self.propagation != "private" else self.propagation

    @property
    def prop_recursive(self) -> bool:
        return bool(self.propagation) and self.propagation.startswith("r") and self.propagation[1:] in PROPAGATIONS

    def attr_bits(self) -> int:
        bits = 0
        for attr, bit in ATTR_BITS.items():
            if self.flags.get(attr):
                bits |= bit
        return bits | ATIME_BITS.get(self.atime or "relatime", 0)

    def view(self) -> dict:
        return {"path": self.path, "src": self.src, "fstype": self.fstype, "opts": self.opts, "propagation": self.propagation}

    def table_line(self) -> str:
        words = self.opts
        if self.propagation:
            words += ",x-linuxns.propagation=%s" % self.propagation
        return "%s %s %s %s 0 0" % (_escape(self.src), _escape(self.path), self.fstype, words)

    def table_entry(self) -> dict:
        return {"src": self.src, "path": self.path, "fstype": self.fstype, "opts": self.opts, "propagation": self.propagation}


def _escape(text: str) -> str:
    return text.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")


def validate_host_side(spec: MountSpec, host: HostMounts) -> None:
    """Check what can be checked on the host before anything changes."""
    w = spec.where
    if spec.state not in ("mounted", "ephemeral", "present") and not (spec.state == "remounted" and spec.fstype):
        return
    if spec.bind:
        try:
            st = os.stat(spec.src)
        except OSError as exc:
            raise InvalidInput("%ssrc %s: the bind source does not exist on the host (%s)" % (w, spec.src, exc.strerror)) from None
        spec.src_stat = st
        host.require_mount_api()
        return
    host.require_mount_api()
    if spec.fstype not in host.filesystems:
        try:  # fsopen loads the filesystem's module when it has one
            os.close(sc.fsopen(spec.fstype))
        except KernelError as exc:
            if exc.errno == _errno.ENODEV:
                raise InvalidInput("%sfstype %r is not a filesystem type this kernel knows (see /proc/filesystems)" % (w, spec.fstype)) from None
            raise
        host.filesystems.add(spec.fstype)
    fd = sc.fsopen(spec.fstype)
    try:
        for key, value in spec.fsopts:
            try:
                if value is None:
                    sc.fsconfig(fd, sc.FSCONFIG_SET_FLAG, key)
                else:
                    sc.fsconfig(fd, sc.FSCONFIG_SET_STRING, key, value)
            except KernelError as exc:
                why = _fs_log(fd) or sc.errno_text(exc.errno)
                word = key if value is None else "%s=%s" % (key, value)
                raise InvalidInput("%sopts: %s does not accept %r: %s" % (w, spec.fstype, word, why)) from None
    finally:
        os.close(fd)


class HostMounts:
    """What one run learns about the host's mounts, asked once and passed to every
    check of that run: the filesystem types the kernel knows, and whether it has the
    new mount API."""

    def __init__(self):
        self.filesystems = kernel_filesystems()
        self.mount_api = False

    def require_mount_api(self) -> None:
        """The new mount API (open_tree, move_mount, fsopen..., Linux 5.2+; mount_setattr 5.12+) is required."""
        if self.mount_api:
            return
        try:
            os.close(sc.fsopen("tmpfs"))
        except KernelError as exc:
            if exc.errno in (_errno.ENOSYS, _errno.EPERM) or "not supported" in exc.msg:
                raise KernelError(
                    "this kernel lacks the new mount API (open_tree/move_mount/fsopen, Linux 5.2 or newer): namespace_mount "
                    "cannot take a host path into a guest or make a mount outside it; mount from inside the guest instead "
                    "(guest_enter_exec with mount, sources visible in the guest)", errno=exc.errno,
                ) from None
            raise
        self.mount_api = True


def _fs_log(fd: int) -> str:
    """Messages the kernel left in an fs context (fsopen's log), joined."""
    out = []
    for _attempt in range(8):
        try:
            data = os.read(fd, 512)
        except OSError:
            break
        if not data:
            break
        text = data.decode(errors="replace").strip()
        out.append(text[2:] if text[:2] in ("e ", "w ", "i ") else text)
    return "; ".join(out)


# ---------------------------------------------------------------------------------------
# Walking a mount point inside the guest (never through a symbolic link)
# ---------------------------------------------------------------------------------------
class Missing(GuestError):
    """A component of a path does not exist."""


def walk(path: str, root_fd=None, create=None, mode: int = 0o755):
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
                if last and create == "file":
                    os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=cur))
                else:
                    os.mkdir(part, mode, dir_fd=cur)
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
    text = _read_own_mountinfo(proc_fd)
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


# ---------------------------------------------------------------------------------------
# Comparing with the kernel's view
# ---------------------------------------------------------------------------------------
def index_mounts(table: list) -> dict:
    """path -> the mounts at that path, in table order (for many lookups)."""
    index = {}
    for m in table:
        index.setdefault(m["path"], []).append(m)
    return index


def top_mount(table, path: str):
    """The mount on top at ``path`` (the one no other mount at ``path`` sits on), or None.

    ``table`` is a mountinfo list or an :func:`index_mounts` dict."""
    here = table.get(path, []) if isinstance(table, dict) else [m for m in table if m["path"] == path]
    if not here:
        return None
    ids = {m["parent_id"] for m in here}
    tops = [m for m in here if m["mount_id"] not in ids]
    return (tops or here)[-1]


def _super_opts(m: dict) -> dict:
    out = {}
    for word in m["super_opts"].split(","):
        if word:
            key, sep, value = word.partition("=")
            out[key] = value if sep else None
    return out


def current_view(m: dict, spec: MountSpec) -> dict:
    """The mount as the kernel shows it, in the spec's terms (for --diff and return values)."""
    if m is None:
        return None
    words = set(m["mount_opts"].split(","))
    flags = {"ro": "ro" in words}
    for attr in ("nosuid", "nodev", "noexec", "nodiratime"):
        flags[attr] = attr in words
    atime = "noatime" if "noatime" in words else ("relatime" if "relatime" in words else "strictatime")
    sup = _super_opts(m)
    hidden = HIDDEN_DEFAULTS.get(m["fstype"], {})
    fsopts = [(k, sup[k] if k in sup else hidden[k]) for k, _v in spec.fsopts if k in sup or k in hidden] if spec else []
    bind = spec is not None and spec.bind
    return {
        "path": m["path"],
        "src": spec.src if bind else m["src"],
        "fstype": spec.fstype if bind else m["fstype"],
        "device": m["src"],
        "kernel_fstype": m["fstype"],
        "opts": render_opts(flags, atime if (spec and spec.atime) else None, fsopts),
        "propagation": m["propagation"],
        "mount_id": m["mount_id"],
        "root": m["root"],
        "super_opts": m["super_opts"],
    }


def compare(spec: MountSpec, m: dict, info: dict) -> dict:
    """How the mounted ``m`` differs from ``spec``.

    Returns {"identity": reason or None, "attr_set", "attr_clr", "atime", "propagation",
    "reconfigure": [(k, v)], "fixed": [words that cannot change in place]}.
    """
    out = {"identity": None, "attr_set": 0, "attr_clr": 0, "atime": None, "propagation": None, "reconfigure": [], "fixed": []}
    if spec.fstype:
        if spec.bind:
            if m["fstype"] in ("proc",) or not info.get("exists"):
                out["identity"] = "a %s from %s is mounted there" % (m["fstype"], m["src"])
            elif spec.src_stat is not None and (info["dev"], info["ino"]) != (spec.src_stat.st_dev, spec.src_stat.st_ino):
                out["identity"] = "another tree is mounted there (a %s from %s, root %s)" % (m["fstype"], m["src"], m["root"])
        elif m["fstype"] != spec.fstype:
            out["identity"] = "a %s (from %s) is mounted there" % (m["fstype"], m["src"])
        elif spec.given_src and m["src"] != spec.src:
            out["identity"] = "a %s from %s is mounted there" % (m["fstype"], m["src"])
    if out["identity"]:
        return out
    if spec.state != "remounted" or spec.given_opts:
        words = set(m["mount_opts"].split(","))
        for attr, bit in ATTR_BITS.items():
            want = bool(spec.flags.get(attr))
            if attr == "nodiratime" and attr not in spec.flags:
                continue
            have = attr in words
            if want and not have:
                out["attr_set"] |= bit
            elif have and not want:
                out["attr_clr"] |= bit
        if spec.atime:
            have = "noatime" if "noatime" in words else ("relatime" if "relatime" in words else "strictatime")
            if have != spec.atime:
                out["atime"] = spec.atime
        sup = _super_opts(m)
        allowed = RECONFIGURABLE.get(m["fstype"], ())
        hidden = HIDDEN_DEFAULTS.get(m["fstype"], {})
        for key, value in spec.fsopts:
            if key in sup:
                have = sup[key]
            elif key in hidden:
                have = hidden[key]  # the kernel shows it only when it is not the default
            else:
                continue  # the kernel does not show it: nothing to compare
            if norm_value(key, value) != norm_value(key, have):
                word = key if value is None else "%s=%s" % (key, value)
                if key in allowed:
                    out["reconfigure"].append((key, value))
                else:
                    out["fixed"].append("%s (now %s)" % (word, key if have is None else "%s=%s" % (key, have)))
    base = spec.prop_base
    if base:
        have = m["propagation"]
        ok = have == base or (base == "slave" and have == "private")  # a slave of nothing is private
        if not ok:
            out["propagation"] = spec.propagation
    return out


def _changed(cmp: dict) -> bool:
    return bool(cmp["attr_set"] or cmp["attr_clr"] or cmp["atime"] or cmp["propagation"] or cmp["reconfigure"])


# ---------------------------------------------------------------------------------------
# The persistent table (one fstab per guest)
# ---------------------------------------------------------------------------------------
def read_table(kept: persist.Kept) -> list:
    """Entries of a guest's kept table (dicts like MountSpec params), in order."""
    out = []
    for n, line in kept.read_table():
        f = line.split()
        if len(f) < 3:
            raise InvalidInput("mount table %s line %d is not 'src path fstype [opts]': %r" % (kept.table_path, n, line))
        opts = f[3] if len(f) > 3 else ""
        prop, words = None, []
        for w in opts.split(","):
            if w.startswith("x-linuxns.propagation="):
                prop = w.partition("=")[2]
            elif w:
                words.append(w)
        out.append({"src": _unescape(f[0]), "path": _unescape(f[1]), "fstype": f[2], "opts": ",".join(words), "propagation": prop, "line": n})
    return out


def _table_lines(entries: list) -> dict:
    """path -> table line of the entries read by read_table."""
    out = {}
    for e in entries:
        spec = MountSpec(dict(e, state="present"))
        out[spec.path] = spec.table_line()
    return out


# ---------------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------------
class MountPlan:
    def __init__(self, spec: MountSpec):
        self.spec = spec
        self.action = "none"  # none | mount | remount | replace | unmount
        self.cmp = None
        self.current = None  # mountinfo dict of the top mount at path
        self.table_before = None
        self.table_after = None
        self.create_kind = None
        self.note = ""

    @property
    def table_changed(self) -> bool:
        return self.table_before != self.table_after

    @property
    def changed(self) -> bool:
        return self.action != "none" or self.table_changed


def _describe_busy_beneath(table: list, path: str) -> list:
    prefix = path + "/"
    return sorted({m["path"] for m in table if m["path"].startswith(prefix)})


def plan_mounts(meta: dict, specs: list, table: list, paths: dict, table_lines: dict) -> list:
    """Work out what each spec needs (raises before anything changes)."""
    name = meta["name"]
    plans = []
    unmounting = {s.path for s in specs if s.state in ("unmounted", "absent")}
    index = index_mounts(table)
    for spec in specs:
        p = MountPlan(spec)
        p.table_before = table_lines.get(spec.path)
        if spec.state == "mounted" or spec.state == "present":
            p.table_after = spec.table_line()
        elif spec.state == "absent":
            p.table_after = None
        else:
            p.table_after = p.table_before
        w = spec.where
        if spec.state == "present":
            plans.append(p)
            continue
        m = top_mount(index, spec.path)
        p.current = m
        info = paths.get(spec.path, {})
        if spec.state in ("unmounted", "absent"):
            if m is not None:
                beneath = [b for b in _describe_busy_beneath(table, spec.path) if b not in unmounting]
                if beneath:
                    raise GuestConflict(
                        "%sguest %r: %s has other mounts beneath it (%s); unmount those first (list them too)"
                        % (w, name, spec.path, ", ".join(beneath))
                    )
                p.action = "unmount"
            plans.append(p)
            continue
        if info.get("refused"):
            raise InvalidInput("%sguest %r: %s" % (w, name, info["refused"]))
        if m is None:
            if spec.state == "remounted":
                raise InvalidInput("%sguest %r: nothing is mounted on %s to remount (use state=mounted or ephemeral)" % (w, name, spec.path))
            if not info.get("exists"):
                if not spec.create:
                    raise InvalidInput(
                        "%sguest %r: the mount point %s does not exist in the guest (%s); set create=true to make it"
                        % (w, name, spec.path, info.get("missing", "missing"))
                    )
                p.create_kind = "file" if (spec.bind and spec.src_stat is not None and not _stat.S_ISDIR(spec.src_stat.st_mode)) else "dir"
            elif spec.bind and spec.src_stat is not None and _stat.S_ISDIR(spec.src_stat.st_mode) != info.get("dir"):
                raise InvalidInput(
                    "%sguest %r: cannot bind the %s %s onto the %s %s" % (
                        w, name, "folder" if _stat.S_ISDIR(spec.src_stat.st_mode) else "file", spec.src,
                        "folder" if info.get("dir") else "file", spec.path)
                )
            p.action = "mount"
            plans.append(p)
            continue
        cmp = compare(spec, m, info)
        p.cmp = cmp
        if cmp["identity"] or cmp["fixed"]:
            why = cmp["identity"] or "%s cannot change in place (%s)" % ("option" if len(cmp["fixed"]) == 1 else "options", ", ".join(cmp["fixed"]))
            if spec.state == "remounted" or not spec.recreate:
                raise GuestConflict(
                    "%sguest %r: %s: %s; set recreate=true to unmount it and mount the wanted one" % (w, name, spec.path, why)
                )
            beneath = _describe_busy_beneath(table, spec.path)
            if beneath:
                raise GuestConflict("%sguest %r: %s cannot be replaced: other mounts are beneath it (%s)" % (w, name, spec.path, ", ".join(beneath)))
            p.action = "replace"
            p.note = why
        elif _changed(cmp):
            p.action = "remount"
        plans.append(p)
    return plans


def _depth(path: str) -> int:
    return path.count("/")


# ---------------------------------------------------------------------------------------
# Apply (in a worker inside the guest)
# ---------------------------------------------------------------------------------------
def _make_detached(op: dict) -> int:
    """A detached mount for ``op``, made with host paths (runs before joining the guest's mnt)."""
    if op["fstype"] in BIND_TYPES:
        rec = sc.AT_RECURSIVE if op["fstype"] == "rbind" else 0
        fd = sc.open_tree(AT_FDCWD, op["src"], sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC | rec)
        try:
            sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH | rec, op["attr"], sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NOSUID
                             | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC | sc.MOUNT_ATTR__ATIME)
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
            why = _fs_log(fsfd)
            raise exc.with_message("%s: making the %s filesystem failed: %s" % (op["path"], op["fstype"], why or exc.msg)) from None
        return sc.fsmount(fsfd, sc.FSMOUNT_CLOEXEC, op["attr"])
    finally:
        os.close(fsfd)


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
                fd, created = walk(path, create=op["create"] and op["create_kind"])
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
                                raise exc.with_message("%s: remounting failed: %s" % (path, _fs_log(pfd) or exc.msg)) from None
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
    return {"mountinfo": _read_own_mountinfo(proc_fd), "done": done}


def _undo(undo: list) -> None:
    """Detach what this run attached, remove what it created, restore changed flags."""
    for item in reversed(undo):
        try:
            if item[0] == "umount":
                sc.umount2(item[1], sc.MNT_DETACH | sc.UMOUNT_NOFOLLOW)
            elif item[0] == "rm":
                if os.path.isdir(item[1]) and not os.path.islink(item[1]):
                    os.rmdir(item[1])
                else:
                    os.unlink(item[1])
            elif item[0] == "attr":
                fd, _c = walk(item[1])
                try:
                    sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH, item[2], item[3])
                finally:
                    os.close(fd)
        except (OSError, GuestError):
            pass


def run_in_guest_mnt(meta: dict, ops: list):
    """Fork a worker: join the guest's non-mount namespaces, build the detached mounts
    with host paths, join its mount namespace, apply ``ops``.  Returns the worker's result."""
    pins = meta.get("pins", {})
    need_pid = any(op["action"] in ("mount", "replace") and op["fstype"] == "proc" for op in ops) and "pid" in pins
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


def inspect_guest(meta: dict, paths: list) -> dict:
    proc_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return enter.call_in_guest(meta, ["mnt"], _inspect_in_guest, proc_fd, paths)
    finally:
        os.close(proc_fd)


# ---------------------------------------------------------------------------------------
# Busy mounts: who holds them
# ---------------------------------------------------------------------------------------
def holders(meta: dict, m: dict, mirror_prefixes=()) -> list:
    """Processes that keep the mount ``m`` of the guest busy (like fuser -m), as text.

    In the guest's mount namespace: cwd, root or an open file on that very mount
    (mount ids from fdinfo).  With a mirror: host processes whose cwd, root or open
    file lies below one of ``mirror_prefixes``.  See :func:`procfs.holders`.
    """
    mnt_ino = meta.get("pins", {}).get("mnt", {}).get("ino")
    return procfs.holders(mnt_ino, m.get("mount_id"), mirror_prefixes)


# ---------------------------------------------------------------------------------------
# Converge: the module's engine (and the table re-apply at guest creation)
# ---------------------------------------------------------------------------------------
def _diff_text(view, spec) -> str:
    if not view:
        return ""
    prop = " propagation %s" % view["propagation"] if view.get("propagation") and spec.propagation else ""
    return "%s on %s type %s (%s)%s\n" % (view["src"], view["path"], view["fstype"], view["opts"], prop)


def _result(p: MountPlan, m, check_mode: bool) -> dict:
    spec = p.spec
    now = current_view(m, spec) if m is not None else None
    if check_mode and p.action in ("mount", "replace", "remount"):
        now = dict(spec.view(), mount_id=None)
        if p.action == "remount" and p.current:
            now["mount_id"] = p.current["mount_id"]
    mounted = now is not None and not (check_mode and p.action == "unmount")
    return {
        "path": spec.path,
        "src": now["src"] if now else spec.src,
        "fstype": now["fstype"] if now else spec.fstype,
        "opts": now["opts"] if now else spec.opts,
        "propagation": now["propagation"] if now else spec.propagation,
        "mount_id": now["mount_id"] if now else None,
        "device": now.get("device") if now else None,
        "mounted": mounted,
        "state": spec.state,
        "action": p.action,
        "changed": p.changed,
        "table_line": p.table_after,
    }


def converge(registry, ref, entries: list, check_mode: bool = False, table_dir=None, locked: bool = False, meta=None,
             mirror=None, mirror_state: str = "present") -> dict:
    """Bring the mounts ``entries`` (MountSpec params) of guest ``ref`` to their states.

    Returns {"changed", "results", "diff": {"before", "after"}}.  Everything is
    validated and planned before the first change; ``locked`` means the caller
    already holds the guest's lock (the re-apply at creation).
    """
    if meta is None:
        meta = registry.find(ref, "guest")
    name = meta["name"]
    specs = mount_specs(entries, name)
    kept = persist.Kept(table_dir or persist.resolve_table_dir(registry.state_dir), name)
    tpath = kept.table_path

    def work():
        current = meta if locked else registry.find(name, "guest")
        _check_guest(current, locked)
        host = HostMounts()
        for spec in specs:
            validate_host_side(spec, host)
        table_entries = read_table(kept)
        table_lines = _table_lines(table_entries)
        need = [s.path for s in specs if s.state != "present"]
        seen_state = inspect_guest(current, need) if need else {"mountinfo": "", "paths": {}}
        table = parse_mountinfo(seen_state["mountinfo"])
        plans = plan_mounts(current, specs, table, seen_state["paths"], table_lines)
        mplan = plan_mirror(current, mirror, mirror_state) if mirror else None
        before = "".join(("mount: " + _diff_text(current_view(p.current, p.spec), p.spec) if p.current is not None and p.action != "none" else "")
                         + ("table: %s\n" % p.table_before if p.table_changed and p.table_before else "") for p in plans if p.changed)
        after = "".join(("mount: " + _diff_text(p.spec.view(), p.spec) if p.action in ("mount", "replace", "remount") else "")
                        + ("table: %s\n" % p.table_after if p.table_changed and p.table_after else "") for p in plans if p.changed)
        if mplan and mplan["action"] != "none":
            line = "mirror: %s (the guest's tree, rbound and rshared)\n" % mplan["path"]
            before, after = (before, after + line) if mplan["action"] == "create" else (before + line, after)
        final = table
        if not check_mode:
            if mplan:
                apply_mirror(current, mplan)
            final = _apply(current, plans, table)
            if any(p.table_changed for p in plans):
                lines = dict(table_lines)
                order = [e["path"] for e in table_entries]
                for p in plans:
                    if p.table_after is None:
                        lines.pop(p.spec.path, None)
                    else:
                        if p.spec.path not in lines:
                            order.append(p.spec.path)
                        lines[p.spec.path] = p.table_after
                kept.write_table([lines[k] for k in order if k in lines])
        final_index = index_mounts(final)
        results = [_result(p, top_mount(final_index, p.spec.path), check_mode) for p in plans]
        out = {"changed": any(p.changed for p in plans), "results": results, "diff": {"before": before, "after": after}, "table": tpath}
        if mplan:
            out["mirror"] = mirror_result(mplan)
            out["changed"] = out["changed"] or out["mirror"]["changed"]
        return out

    if locked:
        return work()
    with registry.lock(name):
        return work()


def mount_specs(entries: list, name: str, prefix: str = "") -> list:
    """The MountSpecs of one guest's entries; a bad entry or a path listed twice fails
    naming it (``PREFIXmounts[N]: ...`` in a list form)."""
    specs, seen = [], set()
    for i, params in enumerate(entries):
        where = "%smounts[%d]: " % (prefix, i) if params.get("_in_list") else ""
        spec = MountSpec(params, where)
        if spec.path in seen:
            raise InvalidInput("%spath %s is listed twice for guest %r" % (where, spec.path, name))
        seen.add(spec.path)
        specs.append(spec)
    return specs


def validate_many(registry, per_guest: list) -> list:
    """Check the mounts of many guests before any of them changes (namespace_mount's
    ``guests`` form): each guest exists, runs and has its own mount namespace, no guest
    is listed twice, and every mount entry is well formed and possible on this host.
    ``per_guest`` is [(where, guest ref, entries)]; returns the guests' metadata."""
    host = HostMounts()
    metas, names = [], {}
    for where, ref, entries in per_guest:
        meta = registry.find(ref, where + ".guest")
        try:
            _check_guest(meta, False)
        except GuestError as exc:
            msg = exc.msg[len("guest: "):] if exc.msg.startswith("guest: ") else exc.msg
            raise exc.with_message("%s.guest: %s" % (where, msg)) from None
        if meta["name"] in names:
            raise InvalidInput("%s: guest %r is listed twice (also %s)" % (where, meta["name"], names[meta["name"]]))
        names[meta["name"]] = where
        for spec in mount_specs(entries, meta["name"], where + "."):
            validate_host_side(spec, host)
        metas.append(meta)
    return metas


def _check_guest(meta: dict, creating: bool) -> None:
    name = meta["name"]
    if "mnt" not in meta.get("pins", {}) or "mnt" not in (meta.get("namespaces") or []):
        shared = (meta.get("share") or {}).get("mnt")
        if shared:
            raise InvalidInput("guest: guest %r shares the mount namespace of %r; manage its mounts there" % (name, shared))
        raise InvalidInput("guest: guest %r has no mount namespace of its own (add mnt to its namespaces)" % name)
    if not creating:
        problems = reg.health(meta)
        if problems:
            raise GuestError("guest: guest %r is not running (%s); recreate it with namespace_create" % (name, "; ".join(problems)))


def _apply(meta: dict, plans: list, table: list) -> list:
    """Carry out the plans (ordered: unmounts deepest first, then mounts shallowest first)."""
    todo = [p for p in plans if p.action != "none"]
    if not todo:
        return table
    unmounts = sorted([p for p in todo if p.action == "unmount"], key=lambda p: -_depth(p.spec.path))
    others = sorted([p for p in todo if p.action != "unmount"], key=lambda p: _depth(p.spec.path))
    ops = []
    for p in unmounts + others:
        s = p.spec
        op = {"path": s.path, "action": p.action, "fstype": s.fstype, "src": s.src, "fsopts": s.fsopts, "attr": s.attr_bits(),
              "create": s.create, "create_kind": p.create_kind or "dir", "lazy": s.lazy, "propagation": None,
              "attr_set": 0, "attr_clr": 0, "undo_set": 0, "undo_clr": 0, "reconfigure": []}
        if p.action in ("mount", "replace"):
            op["propagation"] = s.propagation
        elif p.action == "remount":
            c = p.cmp
            op["attr_set"] = c["attr_set"] | (ATIME_BITS[c["atime"]] if c["atime"] else 0)
            op["attr_clr"] = c["attr_clr"] | (sc.MOUNT_ATTR__ATIME if c["atime"] else 0)
            op["undo_set"], op["undo_clr"] = c["attr_clr"], c["attr_set"]
            op["reconfigure"] = c["reconfigure"]
            op["propagation"] = c["propagation"]
        ops.append(op)
    try:
        out = run_in_guest_mnt(meta, ops)
    except MountBusy as exc:
        path = exc.details["path"]
        m = top_mount(table, path)
        who = holders(meta, m, mirror_copies(meta["name"], path)) if m else []
        raise MountBusy(
            "guest %r: umount %s: target is busy%s; stop those processes, or set lazy_unmount=true to detach it anyway"
            % (meta["name"], path, " (held by %s)" % ", ".join(who) if who else ""), errno=exc.errno, path=path, holders=who,
        ) from None
    except GuestError as exc:
        raise exc.for_guest(meta["name"]) from None
    return parse_mountinfo(out["mountinfo"])


def mirror_copies(name: str, path: str) -> list:
    """Host paths where a mirror shows the guest's ``path`` (``*/NAME/path`` mounts on the host)."""
    try:
        with open("/proc/self/mountinfo") as f:
            host = parse_mountinfo(f.read())
    except OSError:
        return []
    tail = "/%s%s" % (name, path)
    return sorted({m["path"] for m in host if m["path"].endswith(tail)})


def apply_table(registry, meta: dict, table_dir: str) -> dict:
    """Re-apply the guest's persistent table (namespace_create calls this after making
    the guest's mount namespace, holding the guest's lock).  No table: nothing to do."""
    if "mnt" not in (meta.get("namespaces") or []):
        return {"changed": False, "results": []}
    kept = persist.Kept(table_dir, meta["name"])
    path = kept.table_path
    if not kept.has_table():
        return {"changed": False, "results": []}
    try:
        entries = [dict(e, state="ephemeral", _in_list=True) for e in read_table(kept)]
        for e in entries:
            e.pop("line", None)
        return converge(registry, meta["name"], entries, locked=True, meta=meta, table_dir=table_dir)
    except GuestError as exc:
        raise exc.with_message("guest %r: its mount table %s could not be applied: %s" % (meta["name"], path, exc.msg)) from None


# ---------------------------------------------------------------------------------------
# The shared-subtree mirror (Ram Pai's layout from the LKML thread on entering namespaces)
# ---------------------------------------------------------------------------------------
#   BASE                 a host folder bound onto itself and made unbindable, so recursive
#                        binds of trees that contain it never copy it (no explosion)
#   BASE/NAME            the guest's whole tree, rbound from inside its mount namespace after
#                        making it rshared: mounts made in the guest later appear here, and
#                        mounts made here appear in the guest (peer groups)
# A host process whose cwd or open file lies below BASE/NAME keeps that copy busy, and
# because an unmount propagates to every peer, the guest's own unmount then fails with
# EBUSY: the busy message names such processes ("on the host, in the mirror").
def _host_table() -> list:
    with open("/proc/self/mountinfo") as f:
        return parse_mountinfo(f.read())


def plan_mirror(meta: dict, base, state: str) -> dict:
    if not isinstance(base, str) or not base.startswith("/") or ".." in base.split("/"):
        raise InvalidInput("mirror %r must be an absolute host path without '..'" % (base,))
    base = os.path.normpath(base)
    if base == "/":
        raise InvalidInput("mirror must not be / (it is bound onto itself and made unbindable)")
    if state not in ("present", "absent"):
        raise InvalidInput("mirror_state must be present or absent, not %r" % (state,))
    if os.path.lexists(base) and (os.path.islink(base) or not os.path.isdir(base)):
        raise InvalidInput("mirror %s exists and is not a folder" % base)
    table = _host_table()
    target = os.path.join(base, meta["name"])
    top = top_mount(table, target)
    base_top = top_mount(table, base)
    plan = {"base": base, "path": target, "state": state, "action": "none",
            "base_ready": base_top is not None and base_top["propagation"] == "unbindable"}
    if state == "present" and (top is None or not plan["base_ready"]):
        plan["action"] = "create"
    elif state == "absent" and top is not None:
        plan["action"] = "remove"
    return plan


def _clone_guest_tree(host_mnt_fd: int, target: str) -> None:
    """Runs in a worker inside the guest's mount namespace: rshare and clone its tree,
    go back to the host's mount namespace and attach the clone at ``target``."""
    sc.mount_setattr(AT_FDCWD, "/", sc.AT_RECURSIVE, 0, 0, sc.MS_SHARED)
    fd = sc.open_tree(AT_FDCWD, "/", sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC | sc.AT_RECURSIVE)
    try:
        sc.setns(host_mnt_fd, "mnt")
        sc.move_mount(fd, "", AT_FDCWD, target, sc.MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        os.close(fd)


def apply_mirror(meta: dict, plan: dict) -> None:
    base, target = plan["base"], plan["path"]
    if plan["action"] == "create":
        os.makedirs(base, mode=0o755, exist_ok=True)
        if not plan["base_ready"]:
            if top_mount(_host_table(), base) is None:
                sc.mount(base, base, None, sc.MS_BIND)
            sc.mount(None, base, None, sc.MS_UNBINDABLE)
        if top_mount(_host_table(), target) is None:
            os.makedirs(target, mode=0o755, exist_ok=True)
            host_mnt = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            try:
                enter.call_in_guest(meta, ["mnt"], _clone_guest_tree, host_mnt, target)
            finally:
                os.close(host_mnt)
    elif plan["action"] == "remove":
        who = holders({"pins": {}}, {"mount_id": None}, [target])
        if who:
            raise KernelError("mirror %s: target is busy (held by %s); stop those processes first" % (target, ", ".join(who)), errno=_errno.EBUSY)
        # private first, so that the unmount does not propagate into the guest
        sc.mount_setattr(AT_FDCWD, target, sc.AT_RECURSIVE, 0, 0, sc.MS_PRIVATE)
        sc.umount2(target, sc.MNT_DETACH)
        try:
            os.rmdir(target)
        except OSError:
            pass


def mirror_result(plan: dict) -> dict:
    return {"path": plan["path"], "state": plan["state"], "action": plan["action"], "changed": plan["action"] != "none"}
