# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A wanted mount of namespace_mount: :class:`MountSpec` (a validated entry), mount
options (parsing, normalising and rendering the flag, atime and filesystem words), the
checks made on the host side, and :class:`HostMounts` (the run's mount API check).
"""

from __future__ import annotations

import errno as _errno
import os

from ansible_collections.linuxns.guests.plugins.module_utils import model, rootfs
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    InvalidInput,
    KernelError,
)
from ansible_collections.linuxns.guests.plugins.module_utils.list_forms import to_bool

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
    # an idmapped bind (mount_setattr MOUNT_ATTR_IDMAP with the guest's user namespace, as
    # mount(8)'s X-mount.idmap and Podman's :idmap): host id N shows as guest id N
    "idmap": ("idmap", True),
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
        if word == "idmap" and fstype not in BIND_TYPES:
            raise InvalidInput("%sopts: 'idmap' is for bind mounts (fstype=bind/rbind) only" % where)
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
    words += [attr for attr in ("nosuid", "nodev", "noexec", "nodiratime", "idmap") if flags.get(attr)]
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
        self.src_roots = {}  # the guests' roots a bind source is resolved inside (validate_host_side)

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
        spec.src_roots = host.guest_roots()
        try:
            fd = rootfs.open_source(spec.src, spec.src_roots)  # inside a guest's root: resolved inside it
        except OSError as exc:
            raise InvalidInput("%ssrc %s: the bind source does not exist on the host (%s)" % (w, spec.src, exc.strerror)) from None
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
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
                why = fs_log(fd) or sc.errno_text(exc.errno)
                word = key if value is None else "%s=%s" % (key, value)
                raise InvalidInput("%sopts: %s does not accept %r: %s" % (w, spec.fstype, word, why)) from None
    finally:
        os.close(fd)


class HostMounts:
    """What one run learns about the host's mounts, asked once and passed to every
    check of that run: the filesystem types the kernel knows, and whether it has the
    new mount API."""

    def __init__(self, roots_of=None):
        self.filesystems = kernel_filesystems()
        self.mount_api = False
        self._roots_of = roots_of  # registry.guest_roots, asked once when a bind source needs it
        self._roots = None

    def guest_roots(self) -> dict:
        """{(st_dev, st_ino): name} of the guests' roots (empty without a registry)."""
        if self._roots is None:
            self._roots = self._roots_of() if self._roots_of is not None else {}
        return self._roots

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


def fs_log(fd: int) -> str:
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
