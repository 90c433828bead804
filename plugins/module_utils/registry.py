# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest registry: state folder, metadata, context ids, pins and locks.

Layout of the state folder (default ``/run/linuxns``, a private bind mount of
itself so that pins made under it do not propagate anywhere)::

    STATE/guests/NAME/meta.json     guest metadata (written atomically)
    STATE/guests/NAME/ns/TYPE       namespace pins (bind mounts of /proc/PID/ns/TYPE)
    STATE/ctx/ID -> NAME            context id reservations (symlinks, made with O_EXCL semantics)
    STATE/locks/NAME.lock           per-guest flock
    STATE/.lock                     lock for the state folder's own setup
    STATE/.ctx.lock                 lock for allocating context ids against the kept ones

The guest's network namespace is also bind-mounted on /run/netns/NAME, the
way iproute2 does it, so ``ip netns exec NAME`` works.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import time

from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    GuestError,
    GuestNotFound,
    InvalidInput,
    KernelError,
    RecordTooNew,
)
from ansible_collections.linuxns.guests.plugins.module_utils.procfs import process_alive

DEFAULT_STATE_DIR = "/run/linuxns"
NETNS_RUN_DIR = "/run/netns"
CONTEXT_ID_MIN = 2
CONTEXT_ID_MAX = 65535
META_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
LOCK_TIMEOUT = 120.0

_nsfs_dev = None


def nsfs_dev() -> int:
    """st_dev shared by every namespace file (the nsfs superblock)."""
    global _nsfs_dev
    if _nsfs_dev is None:
        _nsfs_dev = os.stat("/proc/self/ns/net").st_dev
    return _nsfs_dev


def validate_name(name, param: str = "name") -> str:
    """Check a guest name; return it or raise InvalidInput naming ``param``."""
    if not isinstance(name, str) or name == "":
        raise InvalidInput("%s must be a non-empty guest name" % param)
    if name.isdigit():
        raise InvalidInput(
            "%s %r is all digits: a string of digits always means a context id, so a guest name cannot be one" % (param, name)
        )
    if len(name) > 63:
        raise InvalidInput("%s %r is %d characters long; a guest name has at most 63" % (param, name, len(name)))
    if not _NAME_RE.match(name):
        raise InvalidInput(
            "%s %r is not a valid guest name: use letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-' (no '/', spaces or '..')" % (param, name)
        )
    return name


def validate_context_id(ctx, param: str = "context_id") -> int:
    try:
        value = int(ctx)
    except (TypeError, ValueError):
        raise InvalidInput("%s %r is not a number" % (param, ctx)) from None
    if value in (0, 1):
        raise InvalidInput(
            "%s %d is reserved (0 is the host, 1 is reserved); use %d-%d" % (param, value, CONTEXT_ID_MIN, CONTEXT_ID_MAX)
        )
    if not CONTEXT_ID_MIN <= value <= CONTEXT_ID_MAX:
        raise InvalidInput("%s %d is out of range %d-%d" % (param, value, CONTEXT_ID_MIN, CONTEXT_ID_MAX))
    return value


def ns_id(path: str):
    """(st_dev, st_ino) of a namespace file, or None when it is not one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if st.st_dev != nsfs_dev():
        return None
    return (st.st_dev, st.st_ino)


def write_atomic(path: str, data: str, mode: int = 0o600) -> None:
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def is_mount_point_via_private(path: str) -> bool:
    """Make ``path`` private if it is a mount point; False when it is not one."""
    try:
        sc.mount(None, path, None, sc.MS_PRIVATE)
        return True
    except KernelError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise


class Lock:
    """An flock on a file, with a bounded wait and a clear message."""

    def __init__(self, path: str, what: str, timeout: float = LOCK_TIMEOUT):
        self.path = path
        self.what = what
        self.timeout = timeout
        self.fd = -1

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if time.monotonic() > deadline:
                os.close(self.fd)
                self.fd = -1
                raise GuestError("%s is locked by another run for more than %ds" % (self.what, self.timeout))
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def __exit__(self, *exc):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        return False


class Registry:
    """The guests of one state folder on this host."""

    def __init__(self, state_dir: str = DEFAULT_STATE_DIR, netns_dir: str = NETNS_RUN_DIR):
        if not isinstance(state_dir, str) or not state_dir.startswith("/"):
            raise InvalidInput("state_dir %r must be an absolute path" % (state_dir,))
        self.state_dir = os.path.normpath(state_dir)
        self.netns_dir = netns_dir
        self.guests_dir = os.path.join(self.state_dir, "guests")
        self.ctx_dir = os.path.join(self.state_dir, "ctx")
        self.locks_dir = os.path.join(self.state_dir, "locks")
        self._ready = False
        self._netns_ready = False
        self._ctx_cache = None
        self._ctx_low = CONTEXT_ID_MIN  # (with _ctx_cache) the lowest context id that may be free
        self._ctx_held = None  # (with _ctx_cache) name -> the lowest id reserved for it, read once (_held)

    # ---- setup -------------------------------------------------------------------------
    def exists(self) -> bool:
        return os.path.isdir(self.guests_dir)

    def ensure(self) -> None:
        """Create the state folder as a private bind mount of itself (idempotent)."""
        if self._ready:
            return
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        with Lock(os.path.join(self.state_dir, ".lock"), "state folder %s" % self.state_dir):
            if not is_mount_point_via_private(self.state_dir):
                sc.mount(self.state_dir, self.state_dir, None, sc.MS_BIND)
                sc.mount(None, self.state_dir, None, sc.MS_PRIVATE)
            for d in (self.guests_dir, self.ctx_dir, self.locks_dir):
                os.makedirs(d, mode=0o700, exist_ok=True)
        self._ready = True

    def ensure_netns_dir(self) -> None:
        """/run/netns as a shared mount, set up under an flock (iproute2's netns_add); once per
        run: MS_SHARED|MS_REC walks every mount below it, one alias per guest, so doing it for
        each new guest made a batch's creation quadratic."""
        if self._netns_ready:
            return
        os.makedirs(self.netns_dir, mode=0o755, exist_ok=True)
        with Lock(os.path.join(self.state_dir, ".netns.lock"), "the %s setup" % self.netns_dir):
            # iproute2's netns_add flocks the folder itself for the same setup: taken too, so that
            # an `ip netns add` at the same moment does not bind it a second time (bug 949235)
            folder = os.open(self.netns_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fcntl.flock(folder, fcntl.LOCK_EX)
                try:
                    sc.mount("none", self.netns_dir, None, sc.MS_SHARED | sc.MS_REC)
                except KernelError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    sc.mount(self.netns_dir, self.netns_dir, "none", sc.MS_BIND | sc.MS_REC)
                    sc.mount("none", self.netns_dir, None, sc.MS_SHARED | sc.MS_REC)
            finally:
                os.close(folder)
        self._netns_ready = True

    # ---- paths -------------------------------------------------------------------------
    def guest_dir(self, name: str) -> str:
        return os.path.join(self.guests_dir, name)

    def meta_path(self, name: str) -> str:
        return os.path.join(self.guests_dir, name, "meta.json")

    def pin_dir(self, name: str) -> str:
        return os.path.join(self.guests_dir, name, "ns")

    def pin_path(self, name: str, nstype: str) -> str:
        return os.path.join(self.guests_dir, name, "ns", nstype)

    def alias_path(self, name: str) -> str:
        return os.path.join(self.netns_dir, name)

    def lock(self, name: str) -> Lock:
        self.ensure()
        return Lock(os.path.join(self.locks_dir, name + ".lock"), "guest %r" % name)

    # ---- metadata ----------------------------------------------------------------------
    def names(self) -> list:
        try:
            return sorted(n for n in os.listdir(self.guests_dir) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def load(self, name: str):
        """The guest's :class:`GuestRecord`, or None when there is none (RecordTooNew when a
        newer version of the collection wrote it)."""
        return GuestRecord.load(self.meta_path(name), name)

    def save(self, meta: GuestRecord) -> None:
        os.makedirs(self.pin_dir(meta.name), mode=0o700, exist_ok=True)
        meta.save(self.meta_path(meta.name))

    # ---- context ids -------------------------------------------------------------------
    def ctx_owner(self, ctx: int):
        try:
            return os.readlink(os.path.join(self.ctx_dir, str(ctx)))
        except OSError:
            return None

    def used_context_ids(self) -> set:
        try:
            return {int(n) for n in os.listdir(self.ctx_dir) if n.isdigit()}
        except FileNotFoundError:
            return set()

    def reserve_context_id(self, name: str, ctx=None, kept=None) -> int:
        """Reserve ``ctx`` (or a free id) for ``name``; atomic per id.

        ``kept`` (persist.KeptIds, or None) knows the ids guests keep on disk: then,
        under the registry's allocation lock, ``name`` gets its own kept id back when
        no other guest holds it, a new id skips the ids other guests keep, an explicit
        ``ctx`` that another guest keeps fails, and the id got is kept for ``name``.
        """
        self.ensure()
        if kept is None:
            return self._reserve(name, ctx, ())
        with Lock(os.path.join(self.state_dir, ".ctx.lock"), "the context ids of %s" % self.state_dir):
            others = kept.others(name)
            if ctx is not None:
                holder = others.get(ctx)
                if holder is not None and self.ctx_owner(ctx) is None:  # held by a guest: _reserve says so
                    raise InvalidInput(kept_id_conflict(ctx, holder, kept.table_dir))
                got = self._reserve(name, ctx, ())
            else:
                own = kept.own(name)
                got = None
                if own is not None:
                    try:
                        got = self._reserve(name, own, ())
                    except InvalidInput:
                        got = None  # another guest holds it now
                if got is None:
                    got = self._reserve(name, None, others)
            try:
                kept.keep(name, got)
            except BaseException:
                self.release_context_id(name, got)
                raise
            return got

    def _reserve(self, name: str, ctx, skip) -> int:
        if ctx is not None:
            owner = self.ctx_owner(ctx)
            if owner == name:
                return ctx
            try:
                os.symlink(name, os.path.join(self.ctx_dir, str(ctx)))
                if self._ctx_cache is not None:
                    self._ctx_cache.add(ctx)
                return ctx
            except FileExistsError:
                owner = self.ctx_owner(ctx)
                raise InvalidInput("context_id %d is already taken by guest %r" % (ctx, owner)) from None
        if self._ctx_cache is None:
            self._ctx_cache = self.used_context_ids()
        held = self._held(name)
        if held is not None:
            return held
        # Every id below _ctx_low was used or kept by another guest when a walk passed it: a
        # batch of n new guests walks the used ids once, not once per guest (that was O(n^2):
        # 10,000 guests, 5*10^7 steps).  An id released in this run lowers it again
        # (release_context_id); one whose kept file goes in this run is taken again next run.
        candidate = self._ctx_low
        while candidate <= CONTEXT_ID_MAX:
            if candidate not in self._ctx_cache and candidate not in skip:
                try:
                    os.symlink(name, os.path.join(self.ctx_dir, str(candidate)))
                    self._ctx_cache.add(candidate)
                    self._ctx_low = candidate + 1
                    if self._ctx_held is not None:
                        self._ctx_held.setdefault(name, candidate)
                    return candidate
                except FileExistsError:
                    self._ctx_cache.add(candidate)
            candidate += 1
        raise GuestError("no free context id left (%d-%d are all used or kept)" % (CONTEXT_ID_MIN, CONTEXT_ID_MAX))

    def _held(self, name: str):
        """The id already reserved for ``name``, or None.  A run killed after it reserved a guest's
        id and before it kept or recorded it (a guest made together with the one the kill hit)
        leaves only the reservation: the guest gets that id again, instead of a new one while the
        old one stays reserved for nobody.  The reservations are read once a run (one readlink
        each), then kept up to date."""
        if self._ctx_held is None:
            held = {}
            for ctx in sorted(self._ctx_cache):
                owner = self.ctx_owner(ctx)
                if owner is not None:
                    held.setdefault(owner, ctx)
            self._ctx_held = held
        ctx = self._ctx_held.get(name)
        return ctx if ctx is not None and self.ctx_owner(ctx) == name else None

    def release_context_id(self, name: str, ctx) -> None:
        if ctx is None:
            return
        if self._ctx_held is not None and self._ctx_held.get(name) == ctx:
            del self._ctx_held[name]
        if self.ctx_owner(ctx) == name:
            try:
                os.unlink(os.path.join(self.ctx_dir, str(ctx)))
            except FileNotFoundError:
                pass
        if self._ctx_cache is not None:
            self._ctx_cache.discard(ctx)
            self._ctx_low = min(self._ctx_low, ctx)

    # ---- lookup ------------------------------------------------------------------------
    def resolve(self, ref, param: str = "guest") -> str:
        """Turn a guest reference (name or context id) into a name."""
        if isinstance(ref, bool):
            raise InvalidInput("%s must be a guest name or context id, not a boolean" % param)
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            ctx = validate_context_id(ref, param)
            owner = self.ctx_owner(ctx)
            if owner is None or self.load(owner) is None:
                raise GuestNotFound("%s: no guest has context id %d on this host" % (param, ctx))
            return owner
        return validate_name(ref, param)

    def guest_roots(self) -> dict:
        """{(st_dev, st_ino): name} of the root folders of this registry's guests (rootfs.open_source:
        a host path into one of them is resolved inside it)."""
        out = {}
        for name in self.names():
            try:
                meta = self.load(name)
            except GuestError:  # a record of a newer version
                continue
            if meta is None or not meta.root:
                continue
            try:
                st = os.stat(meta.root)
            except OSError:
                continue
            out[(st.st_dev, st.st_ino)] = name
        return out

    def find(self, ref, param: str = "guest") -> GuestRecord:
        """The metadata of an existing guest, or GuestNotFound."""
        name = self.resolve(ref, param)
        meta = self.load(name)
        if meta is None:
            raise GuestNotFound("%s: guest %r does not exist on this host" % (param, name))
        return meta


def kept_id_conflict(ctx: int, holder: str, table_dir: str) -> str:
    """The message for an explicit context id that another guest keeps on disk."""
    return (
        "context_id %d is kept for guest %r (in %s/%s/context_id, so that guest gets it back when it is made "
        "again); give another context_id, or forget that guest's kept files with state=absent and purge=true"
        % (ctx, holder, table_dir, holder)
    )


class DirListing:
    """Which directories exist, read as one listing of each parent: a task that checks
    thousands of guests (:func:`health`) lists each cgroup hierarchy's guest folder once
    instead of a ``stat`` per guest and hierarchy (10 per guest on a cgroup v1 host).

    For one planning pass, before the task changes anything: a name the listing has is
    taken as there; one it lacks is looked up again (made since, or really gone)."""

    def __init__(self) -> None:
        self._parents = {}

    def isdir(self, path: str) -> bool:
        parent, name = os.path.split(path)
        names = self._parents.get(parent)
        if names is None:
            try:
                with os.scandir(parent) as it:
                    names = {e.name for e in it if e.is_dir(follow_symlinks=False)}
            except OSError:
                names = set()
            self._parents[parent] = names
        return name in names or os.path.isdir(path)


def health(meta: GuestRecord, dirs=None) -> list:
    """Reasons why the guest is not healthy (empty list: running and healthy).  ``dirs``: a
    :class:`DirListing` of the planning pass, for many guests in one task."""
    reasons = []
    if meta.phase == CORRUPT:
        reasons.append("its metadata cannot be read (%s)" % meta.problem)
        return reasons
    if meta.phase != READY:
        reasons.append("creation of the guest did not finish (phase %s)" % meta.phase)
        return reasons
    for nstype, pin in sorted(meta.pins.items()):
        now = ns_id(pin.path)
        if now is None:
            reasons.append("the pin of its %s namespace is gone" % nstype)
        elif now[1] != pin.ino:
            reasons.append("the pin of its %s namespace points to another namespace" % nstype)
    if meta.init_pid and not process_alive(meta.init_pid, meta.init_start):
        reasons.append("its init (pid %s) is not running" % meta.init_pid)
    isdir = dirs.isdir if dirs is not None else os.path.isdir
    gone = [k for k, d in sorted(((meta.cgroup or {}).get("paths") or {}).items()) if not isdir(d)]
    if gone:
        reasons.append("its cgroup is gone (%s)" % ", ".join(gone))
    return reasons


# ---- the guest record ----------------------------------------------------------------------
# The phases of a record: being made, made, and unreadable (a torn or foreign meta.json).
CREATING, READY, CORRUPT = "creating", "ready", "corrupt"
# The /proc and /sys of a guest with a root (GuestRecord.proc_sys, set at creation): runc's masked and
# read-only paths with /sys read-only, or (privileged: true) neither, with /sys read-write.
PROC_SYS_MASKED, PROC_SYS_OPEN = "masked", "unmasked"


class Pin:
    """One namespace pin of a guest: the bind mount's path and the (dev, ino) it held when made."""

    __slots__ = ("dev", "ino", "path")

    def __init__(self, path: str, dev: int, ino: int) -> None:
        self.path, self.dev, self.ino = path, dev, ino

    def to_json(self) -> dict:
        return {"path": self.path, "dev": self.dev, "ino": self.ino}

    def __eq__(self, other) -> bool:
        return isinstance(other, Pin) and (self.path, self.dev, self.ino) == (other.path, other.dev, other.ino)

    __hash__ = None

    def __repr__(self) -> str:
        return "Pin(%r, %r, %r)" % (self.path, self.dev, self.ino)


def _from_version_0(data: dict) -> dict:
    """Records written before ``version`` was: the keys are those of version 1."""
    return data


# version -> the step that turns a record of that version into one of the next version
_MIGRATIONS = {0: _from_version_0}


class GuestRecord:
    """A guest's metadata, ``STATE/guests/NAME/meta.json``, typed.

    It holds what namespace_create recorded of the wanted guest (the model's fields that
    have a change kind, ``model.RECORDED``) and what the registry adds while it makes and
    runs the guest (phase, pins, init).  It loads and saves itself, as JSON, atomically:

    - a record written by a newer version (``version`` above :data:`META_VERSION`) is
      refused with :class:`errors.RecordTooNew`, naming the guest and both versions;
    - an older one (or one without ``version``) is migrated, one ``_MIGRATIONS`` step a
      version;
    - an unreadable one (not JSON, not an object, a field of the wrong type, another
      guest's name) loads with phase ``corrupt`` and the reason in ``problem``:
      :func:`health` reports it and namespace_create replaces the guest.

    Keys this version does not know (a field a later model row adds) are kept in
    ``extra`` and written back unchanged; :meth:`field` reads any field by its model name.
    """

    # The fields and the JSON types each may have (null is always allowed).
    FIELDS = {
        "phase": (str,),
        "context_id": (int,),
        "namespaces": (list,),
        "share": (dict,),
        "hostname": (str,),
        "root": (str,),
        "uid_map": (list,),
        "gid_map": (list,),
        "time_offsets": (dict,),
        "init": (list,),
        "stop_signal": (str,),
        "stop_timeout": (int, float),
        "description": (str,),
        "limits": (dict,),
        "cgroup_parent": (str,),
        "pins": (dict,),
        "created": (int, float),
        "reaper": (str,),
        "init_pid": (int,),
        "init_start": (int,),
        "netns_alias": (str,),
        # Confinement of the processes that enter it (confine.SETTINGS; None: the default).
        "privileged": (bool,),
        "capabilities": (dict,),
        "no_new_privs": (bool,),
        "seccomp": (str,),
        # The /proc and /sys a guest with a root got at creation: PROC_SYS_MASKED or PROC_SYS_OPEN.
        "proc_sys": (str,),
        "cgroup": (dict,),
    }
    # Fields added after version 1 was defined: written only when set, so a record of a
    # guest without them keeps its file format (and an older reader sees no new key).
    _SPARSE = ("privileged", "capabilities", "no_new_privs", "seccomp", "proc_sys", "limits", "cgroup_parent", "cgroup")
    _STR_LISTS = ("namespaces", "uid_map", "gid_map", "init")

    def __init__(self, name: str, phase: str = CREATING) -> None:
        self.name: str = name
        self.phase: str = phase
        # Recorded of the wanted guest (namespace_create's fields, see model.GUEST).
        self.context_id: int | None = None
        self.namespaces: list = []  # its private namespace types
        self.share: dict = {}  # type -> the guest or namespace file it shares
        self.hostname: str | None = None
        self.root: str | None = None
        self.uid_map: list | None = None
        self.gid_map: list | None = None
        self.time_offsets: dict | None = None
        self.init: list | None = None
        self.stop_signal: str | None = None
        self.stop_timeout: float | None = None
        self.description: str | None = None
        self.limits: dict | None = None  # cgroups.check_limits' form
        self.cgroup_parent: str | None = None  # as given (auto, /abs or relative)
        # The registry's own.
        self.pins: dict = {}  # type -> Pin
        self.created: float | None = None
        self.reaper: str | None = None  # the reaper's path, "python", or None (an init of its own)
        self.init_pid: int | None = None
        self.init_start: int | None = None  # its start time, so that a reused pid is not taken for it
        self.netns_alias: str | None = None  # its /run/netns name
        # Confinement (confine.settings_of; None: the default).
        self.privileged: bool | None = None
        self.capabilities: dict | None = None  # {drop: [...], add: [...]}
        self.no_new_privs: bool | None = None
        self.seccomp: str | None = None  # default | unconfined | a profile
        self.proc_sys: str | None = None  # PROC_SYS_MASKED | PROC_SYS_OPEN (a guest with a root), else None
        # Its cgroup as resolved at creation: {"parent": ..., "paths": {hierarchy key: folder}};
        # None for a guest an older version made (no cgroup of its own).
        self.cgroup: dict | None = None
        self.extra: dict = {}  # keys this version does not know, written back as they were
        self.problem: str | None = None  # why a corrupt record could not be read

    def cgroup_procs(self) -> list:
        """Every ``cgroup.procs`` file of the guest's cgroup (the joiner writes "0" to each)."""
        paths = (self.cgroup or {}).get("paths") or {}
        return [os.path.join(d, "cgroup.procs") for _k, d in sorted(paths.items())]

    # ---- fields by name (for code driven by the model's field table) ------------------------
    def field(self, key: str):
        """The value of field ``key`` (None when this record has none)."""
        if key == "name" or key in self.FIELDS:
            return getattr(self, key)
        return self.extra.get(key)

    def update(self, changes: dict) -> None:
        """Set fields by name (a key this version does not know goes to ``extra``)."""
        for key, value in changes.items():
            if key == "pins":
                self.pins = {t: p if isinstance(p, Pin) else Pin(p["path"], p["dev"], p["ino"]) for t, p in value.items()}
            elif key == "name" or key in self.FIELDS:
                setattr(self, key, value)
            else:
                self.extra[key] = value

    @classmethod
    def from_fields(cls, fields: dict) -> GuestRecord:
        """A new record (phase creating) of the wanted guest's fields (``Spec.wanted()``)."""
        rec = cls(fields["name"])
        rec.update({k: v for k, v in fields.items() if k != "name"})
        return rec

    def copy(self, changes=None) -> GuestRecord:
        """A copy of this record, with ``changes`` (fields by name) made to it."""
        rec = GuestRecord.from_json(self.name, self.to_json())
        rec.problem = self.problem
        rec.update(changes or {})
        return rec

    def __eq__(self, other) -> bool:
        return isinstance(other, GuestRecord) and (self.to_json(), self.problem) == (other.to_json(), other.problem)

    __hash__ = None

    def __repr__(self) -> str:
        return "GuestRecord(%r, phase=%r)" % (self.name, self.phase)

    # ---- JSON ------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        out = dict(self.extra)
        out["name"] = self.name
        for key in self.FIELDS:
            value = getattr(self, key)
            if value is not None or key not in self._SPARSE:
                out[key] = value
        out["pins"] = {t: p.to_json() for t, p in self.pins.items()}
        out["version"] = META_VERSION
        return out

    @classmethod
    def corrupt(cls, name: str, problem: str) -> GuestRecord:
        rec = cls(name, CORRUPT)
        rec.problem = problem
        return rec

    @classmethod
    def from_json(cls, name: str, data) -> GuestRecord:
        """The record of guest ``name`` from its JSON form (migrated when older)."""
        if not isinstance(data, dict):
            return cls.corrupt(name, "it holds a JSON %s, not an object" % type(data).__name__)
        version = data.get("version", 0)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            return cls.corrupt(name, "its version %r is not a record version" % (version,))
        if version > META_VERSION:
            raise RecordTooNew(
                "guest %r: its metadata was written by a newer version of linuxns.guests (record version %d; this "
                "version reads records up to version %d): manage this guest with that newer version"
                % (name, version, META_VERSION), version=version, supported=META_VERSION,
            )
        while version < META_VERSION:
            data = _MIGRATIONS[version](dict(data))
            version += 1
        if data.get("name", name) != name:
            return cls.corrupt(name, "it names another guest, %r" % (data.get("name"),))
        problem = cls._type_problem(data)
        if problem:
            return cls.corrupt(name, problem)
        rec = cls(name)
        for key, value in data.items():
            if key in ("name", "version"):
                continue
            if key == "pins":
                rec.pins = {t: Pin(p["path"], p["dev"], p["ino"]) for t, p in (value or {}).items()}
            elif key in cls.FIELDS:
                if value is None and key in ("namespaces", "share"):
                    value = [] if key == "namespaces" else {}
                setattr(rec, key, value)
            else:
                rec.extra[key] = value
        if rec.root is not None and "proc_sys" not in data:
            # Made before proc_sys was recorded: every guest with a root got the masks then.
            rec.proc_sys = PROC_SYS_MASKED
        return rec

    @classmethod
    def _type_problem(cls, data: dict):
        """What is wrong with the types of a record's fields (None: nothing)."""
        for key, types in cls.FIELDS.items():
            value = data.get(key)
            if value is None:
                continue
            if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
                return "its %s is %r, not a %s" % (key, value, " or ".join(t.__name__ for t in types))
            if key in cls._STR_LISTS and not all(isinstance(v, str) for v in value):
                return "its %s %r is not a list of strings" % (key, value)
        if not all(isinstance(v, str) for v in (data.get("share") or {}).values()):
            return "its share %r does not map types to guests or files" % (data.get("share"),)
        cgroup = data.get("cgroup")
        if cgroup is not None:
            paths = cgroup.get("paths")
            if not (isinstance(paths, dict) and all(isinstance(k, str) and isinstance(v, str) and v.startswith("/")
                                                    for k, v in paths.items())):
                return "its cgroup %r does not map hierarchies to folders" % (cgroup,)
        if data.get("phase") is None:
            return "it has no phase"
        for t, pin in (data.get("pins") or {}).items():
            if not (isinstance(pin, dict) and isinstance(pin.get("path"), str)
                    and all(isinstance(pin.get(k), int) and not isinstance(pin.get(k), bool) for k in ("dev", "ino"))):
                return "its pin of the %s namespace is %r, not a path, dev and ino" % (t, pin)
        return None

    # ---- the file ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str, name: str):
        """The record in ``path`` (guest ``name``), or None when there is no such file."""
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw.decode())
        except ValueError as exc:  # UnicodeDecodeError is one
            # A torn or foreign file: an incomplete guest, to clean up.
            return cls.corrupt(name, "it is not JSON: %s" % exc)
        return cls.from_json(name, data)

    def save(self, path: str) -> None:
        """Write the record to ``path`` atomically (a temporary file renamed over it)."""
        if self.phase == CORRUPT:
            raise GuestError("guest %r: a record that could not be read is not written back" % self.name)
        write_atomic(path, json.dumps(self.to_json(), sort_keys=True, indent=1))
