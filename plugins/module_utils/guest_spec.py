# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The wanted guest: :class:`Spec` (a validated entry of namespace_create), the
parsers of its values, the checks of namespace files given as share sources, and the
views of a guest derived from the model (result and diff).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal

from ansible_collections.linuxns.guests.plugins.module_utils import cgroups, confine, model, services, supervisor, userns
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    GuestError,
    InvalidInput,
)


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


CGROUP_PARENT_ENV = "LINUXNS_CGROUP_PARENT"


def parse_cgroup_parent(value, param: str):
    """``auto``, an absolute path (the same in every hierarchy) or a relative one (below the
    cgroup of the process running the module); normalised (no doubled /), no ``.`` or ``..`` parts."""
    if value is None:
        return None
    if not isinstance(value, str) or value == "":
        raise InvalidInput("%s must be auto, an absolute cgroup path (/linuxns) or a relative one (lab/guests)" % param)
    model.check_text(value, param)
    if value == "auto":
        return value
    parts = [part for part in value.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise InvalidInput("%s %r must be a cgroup path without '.' or '..' parts" % (param, value))
    if value.startswith("/"):
        return "/" + "/".join(parts)
    if not parts:
        raise InvalidInput("%s %r must be auto, an absolute or a relative cgroup path" % (param, value))
    return "/".join(parts)


def default_cgroup_parent() -> str:
    """What a new guest gets when ``cgroup_parent`` is left out: $LINUXNS_CGROUP_PARENT, else auto."""
    return parse_cgroup_parent(os.environ.get(CGROUP_PARENT_ENV) or None, "$" + CGROUP_PARENT_ENV) or model.default("cgroup_parent")


class CgroupRun:
    """The run's view of the host's cgroups, a per-run context like guest_create.CreateRun:
    the layout is detected once, on first use (mountinfo holds every guest's pins: reading it
    per guest would make a batch quadratic), and shared by every guest of the run."""

    def __init__(self) -> None:
        self._layout = None

    def layout(self):
        if self._layout is None:
            self._layout = cgroups.detect()
        return self._layout

    def of(self, meta: reg.GuestRecord):
        """The guest's :class:`cgroups.GuestCgroup` from its record, or None (no cgroup of its own)."""
        if meta is None or not meta.cgroup:
            return None
        return cgroups.GuestCgroup(self.layout(), dict(meta.cgroup["paths"]))


class Spec:
    """A wanted guest, validated and normalised.

    ``params`` is an entry the argument spec already checked (``model.argument_spec``:
    AnsibleModule for the single form, ``list_forms.entries`` for the entries of ``guests:``):
    types, choices (``state``, the ``namespaces`` types) and the class checks are not
    repeated here.  What no argument spec can say is checked here: ``share``'s keys and
    sources, names and context ids against the registry, fields that need each other.
    """

    def __init__(self, params: dict, registry: reg.Registry, where: str = "", batch=None, confinements=None, cgroup_run=None):
        p = where
        self.params, self.where = params, where
        self.cgroup_run = cgroup_run or CgroupRun()  # the run's (shared by the batch)
        self.batch = batch if batch is not None else {}  # present entries of the same task, the earlier ones while this is made: name -> Spec
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
        self.signal_all = parse_signal(params.get("signal_all"), p + "signal_all")
        if self.signal_all is not None and self.state == "absent":
            raise InvalidInput("%ssignal_all goes with state=present or frozen (state=absent stops the guest with its stop_signal)" % p)
        if self.state == "absent":
            return
        if self.purge:
            raise InvalidInput("%spurge=true goes with state=absent only (it forgets a removed guest's kept files)" % p)
        nss = params.get("namespaces")
        nss = model.default("namespaces") if nss is None else list(nss)
        share = params.get("share") or {}
        if not isinstance(share, dict):
            raise InvalidInput("%sshare must be a dict of namespace type -> guest or namespace file" % p)
        self.share = {}
        self.share_ids = {}
        for t, src in sorted(share.items()):
            if t not in sc.NS_TYPES:
                raise InvalidInput("%sshare: unknown namespace type %r; known: %s" % (p, t, ", ".join(sc.NS_TYPES)))
            self.share[t], self.share_ids[t] = self._resolve_share(t, src, registry, "%sshare.%s" % (p, t))
        self.userns, self.userns_size = params.get("userns"), params.get("userns_size")
        if self.userns == userns.AUTO:
            if "user" in self.share:
                raise InvalidInput("%suserns: auto makes the guest a user namespace of its own; it cannot also share one "
                                   "(leave out share.user)" % p)
            if params.get("uid_map") is not None or params.get("gid_map") is not None:
                raise InvalidInput("%suserns: auto allocates the guest's uid_map and gid_map from the host's pool: leave out "
                                   "uid_map/gid_map, or leave out userns to give them yourself" % p)
            nss = list(nss) + ["user"]
            self.userns_size = userns.DEFAULT_SIZE if self.userns_size is None else self.userns_size
            model.check_value(model.GUEST_BY_NAME["userns_size"], self.userns_size, p + "userns_size")
        elif self.userns_size is not None:
            raise InvalidInput("%suserns_size goes with userns: auto only" % p)
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
        self.userns_root = params.get("userns_root")
        if self.userns_root is not None and (self.userns != userns.AUTO or root is None):
            raise InvalidInput("%suserns_root goes with userns: auto and a root only" % p)
        if self.userns == userns.AUTO and root is not None and self.userns_root is None:
            self.userns_root = "auto"  # idmapped where the kernel and the filesystem allow it, else shifted once
        self.uid_map = parse_id_map(params.get("uid_map"), p + "uid_map")
        self.gid_map = parse_id_map(params.get("gid_map"), p + "gid_map")
        if (self.uid_map or self.gid_map) and "user" not in self.namespaces:
            raise InvalidInput("%suid_map/gid_map need a private user namespace (add user to namespaces)" % p)
        if self.userns == userns.AUTO:
            pass  # "0 START SIZE", START allocated when the guest is made (guest_create.create)
        elif "user" in self.namespaces and not self.uid_map:
            # Root inside maps to root outside (like unshare --map-root-user as root).
            self.uid_map = ["0 0 1"]
            self.gid_map = self.gid_map or ["0 0 1"]
        if "user" in self.namespaces and not self.gid_map and self.userns != userns.AUTO:
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
        self.cgroup_parent = parse_cgroup_parent(params.get("cgroup_parent"), p + "cgroup_parent")
        self.limits = self._limits(params.get("limits"), p)
        supervisor.check_restart(self, params, p)  # restart and its backoff
        self.services = services.parse(params.get("services"), p, self.name)
        # Fields with no parsing of their own (their checks are the table's).
        for f in model.GUEST:
            if f.change and not hasattr(self, f.name):
                value = params.get(f.name)
                model.check_value(f, value, p + f.name)
                setattr(self, f.name, value)
        self.confinement = self._confinement(p, {} if confinements is None else confinements)

    def _limits(self, limits, p: str):
        """The normalised limits (cgroups.check_limits), None when not given; a bad one is named
        with the guest (``limits.memory of guest web1``)."""
        if limits is None:
            return None
        return cgroups.check_limits(limits, "%slimits of guest %s" % (p, self.name))

    def _confinement(self, p: str, cache: dict):
        """The processes' confinement, validated (and its filter compiled) before anything changes;
        a root without a pid namespace of its own only for a privileged guest."""
        if self.privileged is None:
            self.privileged = model.default("privileged")
        # not given: no filter and no no_new_privs for a privileged guest (today's full set), else the defaults
        if self.seccomp is None:
            self.seccomp = "unconfined" if self.privileged is True else model.default("seccomp")
        if self.no_new_privs is None:
            self.no_new_privs = False if self.privileged is True else model.default("no_new_privs")
        settings = {k: getattr(self, k) for k in confine.SETTINGS}
        key = json.dumps(settings, sort_keys=True, default=repr)  # the batch's guests share one (its filter compiled once)
        try:
            conf = cache.get(key) or cache.setdefault(key, confine.Confinement.from_settings(settings))
        except InvalidInput as exc:
            raise InvalidInput("%s%s (guest %r)" % (p, exc.msg, self.name)) from None
        if self.root is not None and "pid" not in self.namespaces and not conf.privileged:
            raise InvalidInput(
                "%sroot: guest %r has a root folder but no pid namespace of its own: its processes would see the host's "
                "(or another guest's) processes, and /proc/1/root leads out of its root. Add pid to namespaces, or set "
                "privileged: true to accept that" % (p, self.name)
            )
        return conf

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
        pin = meta.pins.get(nstype)
        if meta.phase != reg.READY or pin is None:
            raise InvalidInput("%s: guest %r has no %s namespace to share" % (param, name, nstype))
        problems = reg.health(meta)
        if problems:
            raise InvalidInput("%s: guest %r is not running (%s)" % (param, name, "; ".join(problems)))
        return name, (pin.dev, pin.ino)

    def wanted(self) -> dict:
        """The guest's fields as they would be recorded."""
        out = {"name": self.name}
        for key in model.RECORDED:
            value = getattr(self, key)
            out[key] = model.default(key) if value is None else value
        out["namespaces"], out["share"] = list(self.namespaces), dict(self.share)
        out["proc_sys"] = proc_sys_of(self.root, self.confinement.privileged)
        if self.cgroup_parent is None:
            out["cgroup_parent"] = default_cgroup_parent()
        if self.limits is None:
            out["limits"] = {}
        return out


def proc_sys_of(root, privileged: bool):
    """The /proc and /sys a guest gets at creation (GuestRecord.proc_sys): a guest with a root gets
    runc's masked and read-only paths and a read-only /sys, unless it is privileged (neither); a
    guest without a root has no /proc or /sys of its own to mask (None)."""
    if root is None:
        return None
    return reg.PROC_SYS_OPEN if privileged else reg.PROC_SYS_MASKED


def public_view(meta: reg.GuestRecord) -> dict:
    """The guest as modules return it."""
    if meta is None:
        return {}
    pins = meta.pins
    view = {k: meta.field(k) for k in model.RESULT_KEYS}
    view["proc_sys"] = meta.proc_sys
    view.update(
        namespaces={t: {"inode": p.ino, "pin": p.path, "shared_from": meta.share.get(t)} for t, p in sorted(pins.items())},
        private_namespaces=meta.namespaces,
        share=meta.share,
        init_pid=meta.init_pid,
        netns=meta.netns_alias,
        cgroup=meta.cgroup,
        userns_range=meta.field("userns_range"),  # {start, size, source} of a userns: auto guest
        userns_root_done=meta.field("userns_root_done"),  # idmap or shift: how its root works under the mapping
    )
    return view


def diff_view(meta) -> dict:
    if not meta:
        return {}
    return dict({k: meta.field(k) for k in model.DIFF_KEYS}, proc_sys=meta.proc_sys)


PER_GUEST_KEYS = model.GUEST_KEYS
