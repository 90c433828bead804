# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Creating, checking and removing guests (the engine behind namespace_create).

Compute, then apply: :func:`plan` compares the wanted guest with the registry
and the kernel and returns what would change (also for check mode and
--diff); :func:`apply` carries a plan out under the guest's lock and rolls
back whatever this run created when a step fails.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import time

from ansible_collections.linuxns.guests.plugins.module_utils import enter, faults, handshake, model, persist, procfs
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    GuestConflict,
    GuestError,
    GuestNotFound,
    InvalidInput,
    KernelError,
)

DEFAULT_NAMESPACES = tuple(model.default("namespaces"))
DEFAULT_STOP_SIGNAL = model.default("stop_signal")
DEFAULT_STOP_TIMEOUT = model.default("stop_timeout")
REAPER_CANDIDATES = (
    "/usr/bin/catatonit",
    "/usr/libexec/catatonit/catatonit",
    "/usr/libexec/podman/catatonit",
    "/usr/local/bin/catatonit",
)
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")


# ---------------------------------------------------------------------------------------
# Input normalisation
# ---------------------------------------------------------------------------------------
def parse_signal(value, param: str):
    if value is None:
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        num = int(value)
        try:
            return signal.Signals(num).name
        except ValueError:
            raise InvalidInput("%s %r is not a signal number" % (param, value)) from None
    name = str(value).upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if not hasattr(signal.Signals, name) or name.startswith("SIG_"):
        raise InvalidInput("%s %r is not a signal name" % (param, value))
    return name


def parse_id_map(value, param: str):
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.replace(",", "\n").splitlines() if v.strip()]
    lines = []
    for item in value:
        if isinstance(item, dict):
            parts = [item.get("inside"), item.get("outside"), item.get("count")]
        elif isinstance(item, (list, tuple)):
            parts = list(item)
        else:
            parts = str(item).split()
        try:
            nums = [int(p) for p in parts]
        except (TypeError, ValueError):
            nums = []
        if len(nums) != 3 or nums[2] < 1 or min(nums) < 0:
            raise InvalidInput("%s entry %r must be 'inside outside count' (three non-negative integers, count >= 1)" % (param, item))
        lines.append("%d %d %d" % tuple(nums))
    if not lines:
        raise InvalidInput("%s must not be empty" % param)
    return lines


def parse_time_offsets(value, param: str = "time_offsets"):
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("%s must be a dict with 'monotonic' and/or 'boottime' (seconds)" % param)
    out = {}
    for key, secs in value.items():
        if key not in ("monotonic", "boottime"):
            raise InvalidInput("%s: unknown clock %r (use monotonic or boottime)" % (param, key))
        try:
            out[key] = float(secs)
        except (TypeError, ValueError, OverflowError):
            raise InvalidInput("%s.%s %r is not a number of seconds" % (param, key, secs)) from None
        model.check_number(out[key], "%s.%s" % (param, key), -model.MAX_TIME_OFFSET, model.MAX_TIME_OFFSET, " seconds")
    return out


def check_ns_file(path: str, nstype: str, param: str) -> tuple:
    """Open-check a namespace file given in ``share``; return its (dev, ino)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidInput("%s: cannot open %s (%s)" % (param, path, exc.strerror)) from None
    try:
        st = os.fstat(fd)
        if st.st_dev != reg.nsfs_dev():
            raise InvalidInput("%s: %s is not a namespace file" % (param, path))
        try:
            kind = fcntl.ioctl(fd, sc.NS_GET_NSTYPE)
        except OSError:
            kind = None
        if kind is not None and kind != sc.ns_type(nstype).flag:
            found = sc.ns_by_flag(kind)
            raise InvalidInput("%s: %s is a %s namespace, not a %s namespace" % (param, path, found.name if found else kind, nstype))
        return (st.st_dev, st.st_ino)
    finally:
        os.close(fd)


class Spec:
    """A wanted guest, validated and normalised."""

    def __init__(self, params: dict, registry: reg.Registry, where: str = "", batch=None):
        p = where
        self.params, self.where = params, where
        self.batch = batch or {}  # earlier present entries of the same task: name -> Spec
        self.deferred = []  # share types naming a guest this task creates first
        self.state = params.get("state") or "present"
        name = params.get("name")
        self.ref = str(name)
        if isinstance(name, int) and not isinstance(name, bool):
            name = str(name)
        if isinstance(name, str) and name.isdigit():
            # A string of digits is a context id: it names an existing guest.
            try:
                name = registry.resolve(name, p + "name")
            except GuestError as exc:
                if self.state == "absent":
                    name = None
                    self.name = None
                else:
                    raise InvalidInput(
                        "%s (a name of digits is a context id; a new guest needs a name that is not all digits)" % exc.msg
                    ) from None
        self.name = reg.validate_name(name, p + "name") if name is not None else None
        ctx = params.get("context_id")
        self.context_id = None if ctx is None else reg.validate_context_id(ctx, p + "context_id")
        self.recreate = bool(params.get("recreate"))
        # None = not given: a new guest gets the defaults, an existing one keeps its own.
        self.stop_signal = parse_signal(params.get("stop_signal"), p + "stop_signal")
        timeout = params.get("stop_timeout")
        try:
            self.stop_timeout = None if timeout is None else float(timeout)
        except (TypeError, ValueError):
            raise InvalidInput("%sstop_timeout %r is not a number of seconds" % (p, timeout)) from None
        if self.stop_timeout is not None and self.stop_timeout < 0:
            raise InvalidInput("%sstop_timeout must not be negative" % p)
        model.check_value(model.GUEST_BY_NAME["stop_timeout"], self.stop_timeout, p + "stop_timeout")
        self.purge = bool(params.get("purge"))
        if self.state == "absent":
            return
        if self.purge:
            raise InvalidInput("%spurge=true goes with state=absent only (it forgets a removed guest's kept files)" % p)
        if self.state != "present":
            raise InvalidInput("%sstate must be present or absent, not %r" % (p, self.state))
        nss = params.get("namespaces")
        nss = list(DEFAULT_NAMESPACES) if nss is None else list(nss)
        bad = [t for t in nss if t not in sc.NS_TYPES]
        if bad:
            raise InvalidInput(
                "%snamespaces: unknown namespace type(s) %s; known: %s" % (p, ", ".join(map(str, bad)), ", ".join(sc.NS_TYPES))
            )
        share = params.get("share") or {}
        if not isinstance(share, dict):
            raise InvalidInput("%sshare must be a dict of namespace type -> guest or namespace file" % p)
        self.share = {}
        self.share_ids = {}
        for t, src in sorted(share.items()):
            if t not in sc.NS_TYPES:
                raise InvalidInput("%sshare: unknown namespace type %r; known: %s" % (p, t, ", ".join(sc.NS_TYPES)))
            self.share[t], self.share_ids[t] = self._resolve_share(t, src, registry, "%sshare.%s" % (p, t))
        self.namespaces = sorted(set(nss) - set(self.share), key=sc.NS_TYPES.index)
        uts = "uts" in self.namespaces
        hostname = params.get("hostname")
        if hostname is not None and not uts:
            raise InvalidInput("%shostname needs a private uts namespace (add uts to namespaces)" % p)
        if hostname is not None and (not isinstance(hostname, str) or not 0 < len(hostname) <= 64 or "/" in hostname or " " in hostname):
            raise InvalidInput("%shostname %r is not a valid host name" % (p, hostname))
        model.check_text(hostname, p + "hostname")
        self.hostname = (hostname or self.name[:64]) if uts else None
        root = params.get("root")
        if root is not None:
            if not isinstance(root, str) or not root.startswith("/"):
                raise InvalidInput("%sroot %r must be an absolute path" % (p, root))
            model.check_text(root, p + "root")
            root = os.path.normpath(root)
            if root == "/":
                root = None
            elif not os.path.isdir(root):
                raise InvalidInput("%sroot %s does not exist or is not a directory" % (p, root))
            elif "mnt" not in self.namespaces:
                raise InvalidInput("%sroot needs a private mnt namespace (add mnt to namespaces)" % p)
        self.root = root
        self.uid_map = parse_id_map(params.get("uid_map"), p + "uid_map")
        self.gid_map = parse_id_map(params.get("gid_map"), p + "gid_map")
        if (self.uid_map or self.gid_map) and "user" not in self.namespaces:
            raise InvalidInput("%suid_map/gid_map need a private user namespace (add user to namespaces)" % p)
        if "user" in self.namespaces and not self.uid_map:
            # Root inside maps to root outside (like unshare --map-root-user as root).
            self.uid_map = ["0 0 1"]
            self.gid_map = self.gid_map or ["0 0 1"]
        if "user" in self.namespaces and not self.gid_map:
            self.gid_map = ["0 0 1"]
        self.time_offsets = parse_time_offsets(params.get("time_offsets"), p + "time_offsets")
        if self.time_offsets and "time" not in self.namespaces:
            raise InvalidInput("%stime_offsets need a private time namespace (add time to namespaces)" % p)
        init = params.get("init")
        if init is not None:
            if isinstance(init, str):
                init = init.split()
            if not isinstance(init, (list, tuple)) or not init or not all(isinstance(a, str) and a for a in init):
                raise InvalidInput("%sinit must be a non-empty argv list" % p)
            for i, arg in enumerate(init):
                model.check_text(arg, "%sinit[%d]" % (p, i))
            if "pid" not in self.namespaces:
                raise InvalidInput("%sinit needs a private pid namespace (add pid to namespaces)" % p)
        self.init = list(init) if init else None
        # Fields with no parsing of their own (their checks are the table's).
        for f in model.GUEST:
            if f.change and not hasattr(self, f.name):
                value = params.get(f.name)
                model.check_value(f, value, p + f.name)
                setattr(self, f.name, value)

    def _resolve_share(self, nstype, src, registry, param):
        """Return (normalised source, (dev, ino)) for a share entry."""
        model.check_text(src, param)
        if isinstance(src, str) and src.startswith("/"):
            return src, check_ns_file(src, nstype, param)
        if isinstance(src, str) and src in self.batch:
            peer = self.batch[src]
            meta = registry.load(src)
            if meta is None or reg.health(meta):
                # Made earlier in this same task: resolved when this guest's turn comes.
                if nstype not in peer.namespaces and nstype not in peer.share:
                    raise InvalidInput("%s: guest %r (listed before) gets no %s namespace to share" % (param, src, nstype))
                self.deferred.append(nstype)
                return src, None
        name = registry.resolve(src, param)
        meta = registry.load(name)
        if meta is None:
            raise InvalidInput("%s: guest %r does not exist on this host" % (param, name))
        pin = meta.get("pins", {}).get(nstype)
        if meta.get("phase") != "ready" or pin is None:
            raise InvalidInput("%s: guest %r has no %s namespace to share" % (param, name, nstype))
        problems = reg.health(meta)
        if problems:
            raise InvalidInput("%s: guest %r is not running (%s)" % (param, name, "; ".join(problems)))
        return name, (pin["dev"], pin["ino"])

    def wanted(self) -> dict:
        """The guest's fields as they would be recorded."""
        out = {"name": self.name}
        for key in model.RECORDED:
            value = getattr(self, key)
            out[key] = model.default(key) if value is None else value
        out["namespaces"], out["share"] = list(self.namespaces), dict(self.share)
        return out


# ---------------------------------------------------------------------------------------
# Describing guests
# ---------------------------------------------------------------------------------------
def public_view(meta: dict) -> dict:
    """The guest as modules return it."""
    if meta is None:
        return {}
    pins = meta.get("pins", {})
    view = {k: meta.get(k) for k in model.RESULT_KEYS}
    view.update(
        namespaces={t: {"inode": p["ino"], "pin": p["path"], "shared_from": meta.get("share", {}).get(t)} for t, p in sorted(pins.items())},
        private_namespaces=meta.get("namespaces", []),
        share=meta.get("share", {}),
        init_pid=meta.get("init_pid"),
        netns=meta.get("netns_alias"),
    )
    return view


def diff_view(meta) -> dict:
    if not meta:
        return {}
    return {k: meta.get(k) for k in model.DIFF_KEYS}


# ---------------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------------
class Plan:
    def __init__(self, spec: Spec, action: str, before, after, reasons=None, changes=None, purged=None):
        self.spec = spec
        self.action = action  # none | create | recreate | update | remove | purge
        self.before = before
        self.after = after
        self.reasons = reasons or []
        self.changes = changes or {}
        self.purged = purged or []  # the kept files purge=true removes (or would remove)

    @property
    def changed(self) -> bool:
        return self.action != "none"


def plan(registry: reg.Registry, spec: Spec, kept=None) -> Plan:
    """``kept``: the run's persist.KeptIds (None: nothing kept on disk is looked at)."""
    if spec.name is None:  # absent, by a context id nobody has
        return Plan(spec, "none", None, None)
    meta = registry.load(spec.name)
    if spec.state == "absent":
        purged = kept.forget(spec.name, check_mode=True) if spec.purge and kept is not None else []
        if meta is None and not os.path.isdir(registry.guest_dir(spec.name)):
            if purged:
                return Plan(spec, "purge", {"name": spec.name, "kept_files": purged}, None, purged=purged)
            return Plan(spec, "none", None, None)
        before = diff_view(meta) or {"name": spec.name}
        if purged:
            before = dict(before, kept_files=purged)
        return Plan(spec, "remove", before, None, purged=purged)
    if spec.context_id is not None and kept is not None and (meta or {}).get("context_id") != spec.context_id:
        holder = kept.others(spec.name).get(spec.context_id)
        if holder is not None and registry.ctx_owner(spec.context_id) is None:  # held: 'already taken' below
            raise InvalidInput(reg.kept_id_conflict(spec.context_id, holder, kept.table_dir))
    want = spec.wanted()
    if meta is None or meta.get("phase") != "ready":
        if meta is not None or os.path.isdir(registry.guest_dir(spec.name)):
            reasons = ["an earlier run did not finish creating it"]
        else:
            reasons = []
        if spec.context_id is not None:
            owner = registry.ctx_owner(spec.context_id)
            if owner not in (None, spec.name) and registry.load(owner) is not None:
                raise InvalidInput("context_id %d is already taken by guest %r" % (spec.context_id, owner))
        elif meta is not None and meta.get("context_id"):
            want["context_id"] = meta.get("context_id")
        return Plan(spec, "create", diff_view(meta) if meta else None, want, reasons)
    for key in model.KEPT:  # not given: the guest keeps its own
        if getattr(spec, key) is None:
            want[key] = meta.get(key)
    differ = {}
    for key in model.REPLACED:
        if key == "share":
            old_ids = {t: meta["pins"][t]["ino"] for t in meta.get("share", {}) if t in meta.get("pins", {})}
            new_ids = {t: ids[1] for t, ids in spec.share_ids.items() if ids is not None}
            old_ids = {t: ino for t, ino in old_ids.items() if t not in spec.deferred}
            if meta.get("share", {}) != want["share"] or old_ids != new_ids:
                differ[key] = (meta.get("share", {}), want["share"])
            continue
        if meta.get(key) != want[key]:
            differ[key] = (meta.get(key), want[key])
    problems = reg.health(meta)
    if differ and not spec.recreate:
        names = ", ".join("%s (now %s, wanted %s)" % (k, _short(a), _short(b)) for k, (a, b) in sorted(differ.items()))
        raise GuestConflict(
            "guest %r exists with a different %s; that cannot change in place: set recreate=true to replace it" % (spec.name, names)
        )
    if differ or problems:
        reasons = problems + ["%s differs" % k for k in sorted(differ)]
        return Plan(spec, "recreate", diff_view(meta), want, reasons)
    changes = {}
    for key in model.CHANGED_IN_PLACE:
        if meta.get(key) != want[key]:
            changes[key] = want[key]
    if changes:
        return Plan(spec, "update", diff_view(meta), want, ["%s differs" % k for k in sorted(changes)], changes)
    return Plan(spec, "none", diff_view(meta), diff_view(meta))


def _short(value) -> str:
    return json.dumps(value, sort_keys=True)


# ---------------------------------------------------------------------------------------
# Apply
# ---------------------------------------------------------------------------------------
def apply(registry: reg.Registry, p: Plan, proc_index=None, kept=None) -> dict:
    """Carry out a plan under the guest's lock; returns the resulting metadata."""
    faults.check()  # a test's unknown crash step fails before anything changes
    registry.ensure()
    name = p.spec.name
    with registry.lock(name):
        # Re-plan under the lock: another run may have changed the guest meanwhile.
        p2 = plan(registry, p.spec, kept)
        # Report what this run really did (another run may have done it first).
        p.action, p.reasons, p.before, p.after, p.purged = p2.action, p2.reasons, p2.before, p2.after, p2.purged
        if p2.action == "none":
            return registry.load(name)
        meta = registry.load(name)
        if meta is not None and p2.action == "remove":
            if p.spec.stop_signal is not None:
                meta["stop_signal"] = p.spec.stop_signal
            if p.spec.stop_timeout is not None:
                meta["stop_timeout"] = p.spec.stop_timeout
        if p2.action in ("remove", "recreate", "create") and (meta is not None or os.path.isdir(registry.guest_dir(name))):
            keep_ctx = p2.action != "remove"
            remove(registry, name, meta, keep_context_id=keep_ctx, proc_index=proc_index)
        if p2.action in ("remove", "purge"):
            if p2.purged:
                p.purged = kept.forget(name)
            return None
        if p2.action == "update":
            return _update(registry, meta, p2.changes)
        return create(registry, p.spec, p2.after.get("context_id"), kept)


def _update(registry, meta, changes) -> dict:
    if "hostname" in changes:
        enter.call_in_guest(meta, ["uts"], sc.sethostname, changes["hostname"])
    meta.update(changes)
    registry.save(meta)
    return meta


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


def _detach(path: str) -> None:
    try:
        sc.umount2(path, sc.MNT_DETACH)
    except KernelError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT, errno.EPERM, errno.EACCES):
            raise


def _setup_dev(dev: str) -> None:
    """A minimal /dev: tmpfs with bind-mounted host nodes, devpts, shm and the usual links."""
    sc.mount("tmpfs", dev, "tmpfs", sc.MS_NOSUID | sc.MS_NOEXEC, "mode=755,size=64k")
    for node in DEV_NODES:
        target = os.path.join(dev, node)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666))
        sc.mount("/dev/" + node, target, None, sc.MS_BIND)
    for sub in ("pts", "shm"):
        os.mkdir(os.path.join(dev, sub), 0o755)
    sc.mount("devpts", os.path.join(dev, "pts"), "devpts", sc.MS_NOSUID | sc.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    sc.mount("shm", os.path.join(dev, "shm"), "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=1777,size=65536k")
    links = (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))
    for link, target in links:
        os.symlink(target, os.path.join(dev, link))


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
    os.chdir(root)
    for d, mode in (("proc", 0o555), ("dev", 0o755)):
        if not os.path.isdir(d):
            os.mkdir(d, mode)
    sc.mount("proc", "proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    _setup_dev(os.path.join(root, "dev"))
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
        pid = os.fork()
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


def _child_main(spec, registry, hs: handshake.Handshake, reaper_fd, devnull_fd, needs_init, parent_mnt_id) -> None:  # pragma: no cover - forked child
    """Process C: make the namespaces; fork the init I when there is one."""
    hs.child_side()
    try:
        sc.set_pdeathsig(signal.SIGKILL)
        sc.set_dumpable(False)
        template_fd = getattr(spec, "_mnt_template_fd", -1)
        if template_fd >= 0 and "mnt" in spec.namespaces:
            sc.setns(template_fd, "mnt")  # while still privileged: before any user namespace
        shared = getattr(spec, "_share_fds", [])
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
            if t != "user":
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
                _setup_mounts(spec, registry, False)
            hs.send(handshake.Step.READY, pid=os.getpid())
            hs.wait_done()  # the parent pinned us (or died)
            os._exit(0)
        child = os.fork()
        if child:
            hs.send(handshake.Step.INIT, pid=child)
            os._exit(0)
        # Process I: the guest's PID 1 (or its reaper when pid is shared).
        if "mnt" in spec.namespaces:
            _setup_mounts(spec, registry, pid_private)
        hs.send(handshake.Step.READY)
        hs.wait_go()  # exits when the parent died before the guest was recorded
        status_w = hs.status_fd()
        os.setsid()
        for fd in (0, 1, 2):
            os.dup2(devnull_fd, fd)
        enter.close_fds_except({status_w, reaper_fd})
        enter.reset_signals()
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container": "linuxns"}
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


def create(registry: reg.Registry, spec: Spec, context_id=None, kept=None) -> dict:
    """Create the guest (caller holds its lock and removed any leftovers).  ``kept``
    (persist.KeptIds): the guest gets its kept context id back and its table re-applied."""
    name = spec.name
    ctx = registry.reserve_context_id(name, context_id if context_id is not None else spec.context_id, kept)
    meta = spec.wanted()
    meta.update({"context_id": ctx, "phase": "creating", "pins": {}, "created": time.time(), "reaper": None, "init_pid": None})
    run = _Run()
    try:
        registry.save(meta)
        faults.crash_point(faults.Step.RESERVED)
        _create_processes(registry, spec, meta, run)
        if "mnt" in spec.namespaces and kept is not None:
            from ansible_collections.linuxns.guests.plugins.module_utils import mounts

            mounts.apply_table(registry, meta, kept.table_dir)  # the guest's persistent mount table (namespace_mount)
        meta["phase"] = "ready"
        registry.save(meta)
        faults.crash_point(faults.Step.READY)
        return meta
    except BaseException:
        _rollback(registry, name, ctx, run)
        raise


def _create_processes(registry, spec, meta, run) -> None:
    name = spec.name
    needs_init = "pid" in spec.namespaces or "pid" in spec.share or spec.init is not None
    share_fds = []
    reaper_fd = -1
    devnull_fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    try:
        for t in sc.NS_TYPES:
            if t in spec.share:
                src = spec.share[t]
                path = src if src.startswith("/") else registry.pin_path(src, t)
                share_fds.append((t, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
        spec._share_fds = share_fds
        if "mnt" in spec.namespaces and registry.exists():
            template = mount_template(registry)
            spec._mnt_template_fd = template.fd if template else -1
        if needs_init and not spec.init:
            reaper = find_reaper()
            meta["reaper"] = reaper or "python"
            if reaper:
                reaper_fd = os.open(reaper, os.O_RDONLY | os.O_CLOEXEC)
        parent_mnt_id = sc.mnt_ns_id()
        hs = handshake.Handshake()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            _child_main(spec, registry, hs, reaper_fd, devnull_fd, needs_init, parent_mnt_id)
            os._exit(1)
        try:
            hs.parent_side()
            faults.crash_point(faults.Step.FORKED)
            target = None
            ready = False
            while not ready or (needs_init and run.init_pid is None):
                msg = hs.receive(name)
                step = msg["step"]
                if step is handshake.Step.USER:
                    _write_proc(pid, "uid_map", "\n".join(spec.uid_map) + "\n", name, "uid_map")
                    _write_proc(pid, "gid_map", "\n".join(spec.gid_map) + "\n", name, "gid_map")
                    hs.ack()
                elif step is handshake.Step.TIME:
                    text = _time_offsets_text(spec.time_offsets or {}, name)
                    if text:
                        _write_proc(pid, "timens_offsets", text, name, "time_offsets")
                    hs.ack()
                elif step is handshake.Step.INIT:
                    run.init_pid = msg["pid"]
                    run.init_start = procfs.proc_start_time(run.init_pid)
                    meta["init_pid"] = run.init_pid
                    meta["init_start"] = run.init_start
                    registry.save(meta)
                elif step is handshake.Step.READY:
                    ready = True
                    target = msg.get("pid")
            if needs_init:
                target = run.init_pid
            if target is None:
                raise GuestError("guest %r: no process to pin" % name)
            faults.crash_point(faults.Step.STARTED)
            _make_pins(registry, spec, meta, run, target, needs_init)
            faults.crash_point(faults.Step.PINNED)
            if "net" in meta["pins"]:
                _make_alias(registry, name, meta, run)
            faults.crash_point(faults.Step.ALIASED)
            if needs_init:
                err = hs.go()
                if err:
                    raise GuestError("guest %r: %s" % (name, err))
            else:
                hs.done()
        except BaseException:
            # The child may be waiting for an ack (uid/gid map, time offsets) or for the
            # go: our ends of the handshake close first, so it reads EOF and exits, and it
            # is killed besides (it is our child, not reaped yet: the pid is still its).
            # Waiting for it with the pipes open was a hang that kept the lock forever.
            hs.close()
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise
        finally:
            hs.close()  # a child still waiting for the parent reads EOF and exits
            enter.wait_child(pid)
    finally:
        for fd in [fd for _t, fd in share_fds] + [reaper_fd, devnull_fd]:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass


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
        meta["pins"][t] = {"path": path, "dev": st.st_dev, "ino": st.st_ino}


def _make_alias(registry, name, meta, run) -> None:
    registry.ensure_netns_dir()
    alias = registry.alias_path(name)
    pin = meta["pins"]["net"]
    try:
        fd = os.open(alias, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
        os.close(fd)
    except FileExistsError:
        now = reg.ns_id(alias)
        if now is not None and now[1] == pin["ino"]:
            meta["netns_alias"] = alias
            return
        if now is not None:
            raise GuestConflict(
                "guest %r: a network namespace named %r already exists in %s and is not this guest's; "
                "remove it (ip netns delete %s) or rename the guest" % (name, name, registry.netns_dir, name)
            ) from None
        # A leftover name file with nothing mounted on it: take it over.
    run.alias = alias
    sc.mount(pin["path"], alias, None, sc.MS_BIND)
    meta["netns_alias"] = alias


def _unpin(path: str) -> None:
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


def _rollback(registry, name, ctx, run) -> None:
    if run.init_pid and procfs.process_alive(run.init_pid, run.init_start):
        _kill_wait(run.init_pid, run.init_start, signal.SIGKILL, 5.0)
    if run.alias:
        _unpin(run.alias)
    for path in run.pins:
        _unpin(path)
    registry.release_context_id(name, ctx)
    shutil.rmtree(registry.guest_dir(name), ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Stopping and removing
# ---------------------------------------------------------------------------------------
def _kill_wait(pid, start, sig, timeout) -> bool:
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

    def members(self, meta: dict, others=()) -> set:
        """Processes of the guest: those in its private pid namespace, else in its
        private mount namespace, else in any of its private namespaces that are
        not members of another guest (``others``: their metadata) by pid or mnt."""
        pins = meta.get("pins", {})
        private = meta.get("namespaces", [])
        for t in ("pid", "mnt"):
            if t in private and t in pins:
                pids = self.pids(t, pins[t]["ino"])
                pids.discard(os.getpid())
                return pids
        pids = set()
        for t in private:
            if t in pins:
                pids |= self.by_ns.get((t, pins[t]["ino"]), set())
        for other in others:
            if other is meta or other.get("name") == meta.get("name"):
                continue
            for t in ("pid", "mnt"):
                pin = other.get("pins", {}).get(t)
                if pin and t in other.get("namespaces", []):
                    pids -= self.by_ns.get((t, pin["ino"]), set())
        pids.discard(os.getpid())
        return pids


def stop_processes(meta: dict, proc_index=None, registry=None) -> None:
    """Stop the guest's processes: init-based or init-less semantics (docs/concepts.md)."""
    init_pid, init_start = meta.get("init_pid"), meta.get("init_start")
    timeout = float(meta.get("stop_timeout") or 0)
    sig = getattr(signal, meta.get("stop_signal") or "SIGTERM", signal.SIGTERM)
    if meta.get("init") and init_pid:
        # Init-based guest: ask its init to halt, wait, then kill (the kernel kills the rest).
        if not _kill_wait(init_pid, init_start, sig, timeout):
            _kill_wait(init_pid, init_start, signal.SIGKILL, 10.0)
        return
    index = proc_index or ProcIndex()
    others = ()
    if not {"pid", "mnt"} & set(meta.get("namespaces", [])) and registry is not None:
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
        _kill_wait(init_pid, init_start, signal.SIGKILL, 10.0)


SWEEP_ROUNDS = 50


def sweep(meta: dict, registry=None) -> int:
    """Kill every process still in one of the guest's private namespaces; how many.

    After :func:`stop_processes` (whose /proc scan may predate the lock, and which
    only looks at the pid namespace of a guest that has one), something may still
    be inside: a process that entered a subset of the namespaces (only ``net``...),
    or one forked after the scan.  Under the guest's lock nothing new can join (see
    :func:`enter.lock_shared`), so fresh scans stop every member (SIGSTOP: no more
    forks) until one finds no new one, then kill them all.  Removal is final.
    """
    pins = meta.get("pins") or {}
    wanted = {t: pins[t]["ino"] for t in meta.get("namespaces", []) if t in pins}
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
                for held in _held_elsewhere(registry, meta["name"], wanted):
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
    meta = meta or {"name": name}
    if meta.get("phase") == "ready" or meta.get("init_pid"):
        stop_processes(meta, proc_index, registry)
        sweep(meta, registry)
    alias = registry.alias_path(name)
    alias_id = reg.ns_id(alias)
    if alias_id is not None:
        ours = {p.get("ino") for p in meta.get("pins", {}).values()}
        net_pin = reg.ns_id(registry.pin_path(name, "net"))
        if net_pin:
            ours.add(net_pin[1])
        if alias_id[1] in ours:
            _unpin(alias)
    pin_dir = registry.pin_dir(name)
    try:
        leaves = os.listdir(pin_dir)
    except FileNotFoundError:
        leaves = []
    for leaf in leaves:
        _unpin(os.path.join(pin_dir, leaf))
    if not keep_context_id:
        registry.release_context_id(name, meta.get("context_id"))
    shutil.rmtree(registry.guest_dir(name), ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Kernel relations (namespace_info)
# ---------------------------------------------------------------------------------------
def ns_relations(path: str) -> dict:
    """Owning user namespace and (pid/user) parent inode via the nsfs ioctls."""
    out = {}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return out
    try:
        for key, req in (("owner_user_ns", sc.NS_GET_USERNS), ("parent", sc.NS_GET_PARENT)):
            try:
                rfd = fcntl.ioctl(fd, req)
            except OSError:
                continue
            try:
                out[key] = os.fstat(rfd).st_ino
            finally:
                os.close(rfd)
    finally:
        os.close(fd)
    return out


def host_limits(metas) -> dict:
    """max_*_namespaces per type with how many this registry's guests use."""
    out = {}
    for t in sc.NS_TYPES:
        path = sc.ns_type(t).limit_file
        try:
            with open(path) as f:
                limit = int(f.read().strip())
        except (OSError, ValueError):
            continue
        used = sum(1 for m in metas if t in (m.get("namespaces") or []))
        out[t] = {"limit": limit, "used_by_guests": used, "headroom": limit - used, "path": path}
    return out


# ---------------------------------------------------------------------------------------
# Batches (the module's single and list forms)
# ---------------------------------------------------------------------------------------
PER_GUEST_KEYS = model.GUEST_KEYS


def ensure_guests(registry: reg.Registry, entries, check_mode: bool = False, table_dir=None) -> dict:
    """Converge a list of guest entries; everything is validated and planned first.

    Returns ``{"changed", "results": [...], "diff": {"before", "after"}}``.
    On a failure the guest being changed is rolled back and a GuestError
    carries the results of the guests already done.  ``table_dir``: the folder of the
    guests' kept files (persist.resolve_table_dir when None).
    """
    kept = persist.KeptIds(table_dir or persist.resolve_table_dir(registry.state_dir))
    specs, seen, batch = [], set(), {}
    for i, params in enumerate(entries):
        where = "guests[%d]." % i if len(entries) > 1 or params.get("_in_list") else ""
        spec = Spec(params, registry, where, batch)
        if spec.name is not None and spec.name in seen:
            raise InvalidInput("%sname: guest %r is listed twice" % (where, spec.name))
        seen.add(spec.name)
        specs.append(spec)
        if spec.state == "present" and spec.name:
            batch = dict(batch)
            batch[spec.name] = spec
    plans = [plan(registry, s, kept) for s in specs]
    results, before, after = [], {}, {}
    try:
        return _apply_plans(registry, plans, check_mode, results, before, after, kept)
    finally:
        if _TEMPLATES.get(registry.state_dir) is not None:
            _TEMPLATES.pop(registry.state_dir).close()


_TEMPLATES = {}


def mount_template(registry: reg.Registry):
    """The batch's clean mount namespace (made on first use), or None."""
    t = _TEMPLATES.get(registry.state_dir)
    if t is None:
        t = _TEMPLATES[registry.state_dir] = MountTemplate(registry)
    return t if t.fd >= 0 else None


def _apply_plans(registry, plans, check_mode, results, before, after, kept=None):
    proc_index = None
    for p in plans:
        name = p.spec.name or p.spec.ref
        before[name] = p.before or {}
        after[name] = p.after or {}
        item = {"name": name, "changed": p.changed, "action": p.action, "reasons": p.reasons, "state": p.spec.state}
        if p.spec.purge:
            item["purged"] = p.purged
        if check_mode or not p.changed:
            meta = registry.load(name) if p.spec.state == "present" else None
            if meta and p.action == "update":
                meta = dict(meta, **p.changes)  # changed in place: everything else stays
            item["guest"] = public_view(meta) if meta and p.action in ("none", "update") else _predicted_view(p)
            results.append(item)
            continue
        if p.spec.deferred:
            # Its share source was made by an earlier entry of this task: resolve it now.
            p = plan(registry, Spec(p.spec.params, registry, p.spec.where), kept)
            if not p.changed:
                item.update(changed=False, action="none", guest=public_view(registry.load(name)))
                results.append(item)
                continue
        if p.action in ("remove", "recreate") and proc_index is None:
            proc_index = ProcIndex()
        try:
            meta = apply(registry, p, proc_index, kept)
        except GuestError as exc:
            err = exc.with_message(exc.msg) if name in exc.msg else exc.for_guest(name)
            err.details["results"] = results
            raise err from None
        item.update(changed=p.changed, action=p.action, reasons=p.reasons)
        if p.spec.purge:
            item["purged"] = p.purged
        before[name], after[name] = p.before or {}, p.after or {}
        item["guest"] = public_view(meta) if meta else {}
        results.append(item)
    return {
        "changed": any(r["changed"] for r in results),
        "results": results,
        "diff": {"before": before, "after": after},
    }


def _predicted_view(p: Plan) -> dict:
    if not p.after:
        return {}
    view = dict(p.after)
    types = sorted(set(p.after["namespaces"]) | set(p.after["share"]))
    view["namespaces"] = {t: {"inode": None, "pin": None, "shared_from": p.after["share"].get(t)} for t in types}
    view["private_namespaces"] = p.after["namespaces"]
    view["init_pid"] = None
    return view


# ---------------------------------------------------------------------------------------
# namespace_info
# ---------------------------------------------------------------------------------------
def _links_here() -> list:
    """Links and addresses of the current network namespace (ip -j, else names only)."""
    import subprocess

    for ip in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"):
        if os.access(ip, os.X_OK):
            out = subprocess.run([ip, "-j", "addr", "show"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
            if out.returncode == 0:
                return [
                    {
                        "ifname": link.get("ifname"),
                        "index": link.get("ifindex"),
                        "kind": (link.get("linkinfo") or {}).get("info_kind"),
                        "state": link.get("operstate"),
                        "mtu": link.get("mtu"),
                        "mac": link.get("address"),
                        "addresses": ["%s/%s" % (a["local"], a["prefixlen"]) for a in link.get("addr_info", [])],
                    }
                    for link in json.loads(out.stdout.decode() or "[]")
                ]
    return [{"ifname": n, "index": i} for i, n in socket.if_nameindex()]


def describe(meta: dict, want_mounts: bool = False, want_links: bool = False) -> dict:
    from ansible_collections.linuxns.guests.plugins.module_utils import mounts as mnt

    view = public_view(meta)
    problems = reg.health(meta)
    view["running"] = not problems
    view["healthy"] = not problems
    view["problems"] = problems
    for info in view["namespaces"].values():
        if not problems:
            info.update(ns_relations(info["pin"]))
    if want_mounts:
        view["mounts"] = mnt.guest_mountinfo(meta) if not problems and "mnt" in meta.get("pins", {}) else []
    if want_links:
        view["links"] = enter.call_in_guest(meta, ["net"], _links_here) if not problems and "net" in meta.get("pins", {}) else []
    return view


def info(registry: reg.Registry, refs=None, want_mounts: bool = False, want_links: bool = False) -> dict:
    """Guests of this host (all, or those named), their health and the host's headroom."""
    metas, missing = [], []
    if refs:
        for i, ref in enumerate(refs):
            param = "name" if len(refs) == 1 else "guests[%d]" % i
            try:
                metas.append(registry.find(ref, param))
            except GuestNotFound:
                missing.append(str(ref))
    else:
        for name in registry.names():
            meta = registry.load(name)
            if meta is not None:
                metas.append(meta)
    all_metas = [registry.load(n) for n in registry.names()] if refs else metas
    return {
        "guests": [describe(m, want_mounts, want_links) for m in metas],
        "missing": missing,
        "host": {
            "state_dir": registry.state_dir,
            "guest_count": len([m for m in all_metas if m]),
            "limits": host_limits([m for m in all_metas if m]),
            "reaper": find_reaper(),
        },
    }
