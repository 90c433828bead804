# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cgroups: the one place of the collection that talks to cgroup files.

A guest has one cgroup, ``<parent>/<guest name>``, in every hierarchy the host mounts (the
unified cgroup2 one and each v1 hierarchy, ``name=systemd`` included).  This module detects
the layout from /proc/self/mountinfo and /proc/self/cgroup (never assumed paths), resolves the
parent, checks limits against one table (:data:`LIMITS`), creates and removes the cgroup, writes
and reads limits, freezes, thaws, signals and kills.

What was followed, and where from (read with the ``search`` tool, cited by file and name):
- runc ``libcontainer/cgroups/utils.go``: ``WriteCgroupProc`` (retry EINVAL, a task in TASK_NEW),
  ``RemovePath`` (children first) and ``RemovePaths`` (5 tries, 10 ms doubling), ``GetAllPids``
  (walk the subtree), ``ConvertBlkIOToCgroupV2Value`` and ``ConvertCPUSharesToCgroupV2Value``.
- runc ``fs2/create.go`` ``CreateCgroupPath``: controllers enabled in ``cgroup.subtree_control``
  of each ancestor, refusal of ``domain invalid``/``threaded`` cgroups for domain controllers; we
  enable only what the limits need, and only where it is missing (systemd's delegation rules).
- runc ``fs/memory.go`` ``setMemoryAndSwap``: the write order of memory and memory+swap on v1 and
  the EBUSY of a limit below usage turned into a message with usage and peak.
- runc ``fs/cpuset.go`` (``ensureParent``/``copyIfNeeded``): a new v1 cpuset cgroup gets its
  parent's ``cpuset.cpus``/``cpuset.mems`` when empty, else no task can join it.
- runc ``fs/freezer.go`` (v1: write FROZEN, re-read while FREEZING, thaw back on failure) and
  ``fs2/freezer.go`` (``cgroup.freeze``, confirm the state; we wait for ``frozen 1`` in
  ``cgroup.events`` as the kernel documents).
- crun ``libcrun/cgroup-utils.c`` (kill: ``cgroup.kill`` where the kernel has it, else freeze,
  signal every pid, thaw, until empty) and runc ``signalAllProcesses`` (same fallback).
- LXC ``cgfsng.c``: one cgroup per container in every hierarchy incl. ``name=systemd``, cpuset
  initialised from the parent on v1, and the delegation of controllers down the subtree.
- systemd ``cgroup-util.h``: ``cgroup_cpu_weight_to_shares`` (weight * 1024 / 100) and
  ``cgroup_weight_io_to_blkio`` (weight * 500 / 100, 10..1000) keep the defaults aligned
  (cpu.weight 100 = cpu.shares 1024, io.weight 100 = blkio.weight 500); runc's linear formulas
  go the other way (v1 -> v2) and would map 1024 shares to weight 39.

No Ansible import; errors come from errors.py.
"""

from __future__ import annotations

import errno as _errno
import math
import os
import re
import signal as _signal
import time

from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestConflict, InvalidInput, KernelError
from ansible_collections.linuxns.guests.plugins.module_utils.procfs import read_text
from ansible_collections.linuxns.guests.plugins.module_utils.procfs import write_text as _write

UNIFIED = "unified"
SYSTEMD_UNIT_CGROUP = "/system.slice/linuxns-guests.service"
DEFAULT_PARENT = "/linuxns"
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
V1_MAX = 1 << 62          # v1 reads "no limit" back as 9223372036854771712; anything this big is "max"
CPU_PERIOD = 100000        # cpu.max / cpu.cfs_period_us (the kernel's and runc's default)
KIB = 1024
_SUFFIX = {"": 1, "K": KIB, "M": KIB**2, "G": KIB**3, "T": KIB**4}
_CLONING = set()  # v1 cpuset folders this process has seen with cgroup.clone_children at 1
_FILLED = {}  # v1 cpuset folder -> its inode, when this process saw it with cpus and mems (a folder made again is another)


def _rmdir(path: str, v1_cpuset: bool) -> None:
    """rmdir a cgroup; a v1 cpuset cgroup's CPUs are emptied first.  Its end otherwise has the
    kernel rebuild the scheduler domains (the cgroup has ``cpuset.sched_load_balance`` 1, as
    every new v1 cpuset has), a walk of every cpuset on the host, in a kernel worker that holds
    the cgroup lock: at 10,000 guests ~4.5 ms a guest, and the removals behind it wait for the
    lock.  A cpuset without CPUs ends without it.  The write fails (ignored) while a process or
    a child cgroup with CPUs is in it, as the rmdir does."""
    if v1_cpuset:
        try:
            _write(os.path.join(path, "cpuset.cpus"), "\n")
        except OSError:
            pass
    os.rmdir(path)


def _is_v1_cpuset(key: str) -> bool:
    """Whether hierarchy ``key`` is a v1 one with the cpuset controller (a new cgroup there has no cpus or mems)."""
    return key != UNIFIED and "cpuset" in key.split(",")


# --------------------------------------------------------------------------------------------
# small file helpers (runc fscommon: O_WRONLY|O_TRUNC, never O_CREAT: no stray files)


def _read_or(path: str, default=None):
    try:
        return read_text(path)
    except OSError:
        return default


def _kv(text: str) -> dict:
    """``key value`` lines (cgroup.events, cpu.stat, memory.events, memory.oom_control)."""
    out = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                out[parts[0]] = parts[1]
    return out


def _int_or_none(text):
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def _oserror_text(exc: OSError) -> str:
    return "%s (%s)" % (os.strerror(exc.errno) if exc.errno else str(exc), _errno.errorcode.get(exc.errno or 0, "?"))


# --------------------------------------------------------------------------------------------
# cpusets


def parse_cpuset(text: str) -> set:
    """``0-1,3`` -> {0, 1, 3}; ValueError on bad syntax (empty, reversed range, garbage)."""
    out: set = set()
    text = text.strip()
    if not text:
        raise ValueError("empty")
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError("bad item %r" % part)
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError("reversed range %r" % part)
        if hi > 65535:
            raise ValueError("%d is out of range" % hi)
        out.update(range(lo, hi + 1))
    return out


def format_cpuset(ids) -> str:
    """{0, 1, 3} -> ``0-1,3`` (the kernel's own list format)."""
    ids = sorted(ids)
    parts, i = [], 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(str(ids[i]) if i == j else "%d-%d" % (ids[i], ids[j]))
        i = j + 1
    return ",".join(parts)


def host_cpuset(kind: str) -> set:
    """Online CPUs (``cpus``) or memory nodes (``mems``) of the host."""
    path = "/sys/devices/system/cpu/online" if kind == "cpus" else "/sys/devices/system/node/online"
    text = _read_or(path)
    if text is None or not text.strip():
        return set(range(os.cpu_count() or 1)) if kind == "cpus" else {0}
    return parse_cpuset(text)


# --------------------------------------------------------------------------------------------
# the limit table


class Limit:
    """One row of :data:`LIMITS`: how a limit is given, checked, and written in v2 and v1.

    ``kind``: size | cpu | weight | cpuset | pids.  ``v2``: (controller, file); ``v1``:
    (controller, file) - the writers below turn a value into the text of each file.
    ``lo``/``hi``: bounds of the number given; ``default``: the value meaning "no limit".
    """

    def __init__(self, kind, v2, v1, lo, hi, default, doc):
        self.kind, self.v2, self.v1, self.lo, self.hi, self.default, self.doc = kind, v2, v1, lo, hi, default, doc

    @property
    def controller(self) -> str:
        return self.v2[0]


MAX_SIZE = 1 << 60   # 1 EiB: above that a "size" is a typo
PID_MAX = 4194304    # the kernel's PID_MAX_LIMIT

LIMITS = {
    "memory": Limit("size", ("memory", "memory.max"), ("memory", "memory.limit_in_bytes"), KIB**2, MAX_SIZE, "max",
                    "hard memory limit; above it the guest reclaims, then is OOM-killed"),
    "memory_high": Limit("size", ("memory", "memory.high"), ("memory", "memory.soft_limit_in_bytes"), KIB**2, MAX_SIZE, "max",
                         "memory throttle (v2) / soft limit (v1)"),
    "memory_swap": Limit("size", ("memory", "memory.swap.max"), ("memory", "memory.memsw.limit_in_bytes"), 0, MAX_SIZE, "max",
                         "swap allowed on top of memory (v1 writes memory + swap to memory.memsw.limit_in_bytes)"),
    "cpu": Limit("cpu", ("cpu", "cpu.max"), ("cpu", "cpu.cfs_quota_us"), 0.01, None, "max",
                 "CPU time as cores (1.5 = 150000 us every 100000 us)"),
    "cpu_weight": Limit("weight", ("cpu", "cpu.weight"), ("cpu", "cpu.shares"), 1, 10000, 100,
                        "relative CPU share; v1 cpu.shares = weight * 1024 / 100"),
    "cpuset_cpus": Limit("cpuset", ("cpuset", "cpuset.cpus"), ("cpuset", "cpuset.cpus"), None, None, "",
                         "CPUs the guest may run on"),
    "cpuset_mems": Limit("cpuset", ("cpuset", "cpuset.mems"), ("cpuset", "cpuset.mems"), None, None, "",
                         "memory nodes the guest may allocate on"),
    "pids": Limit("pids", ("pids", "pids.max"), ("pids", "pids.max"), 1, PID_MAX, "max",
                  "most tasks (processes and threads) at once"),
    "io_weight": Limit("weight", ("io", "io.weight"), ("blkio", "blkio.weight"), 1, 10000, 100,
                       "relative block io share; v1 blkio.weight = weight * 5 (10..1000), blkio.bfq.weight = weight (..1000)"),
}
V1_NAME = {"io": "blkio"}   # v2 controller name -> v1 name where they differ


def _where(param: str, key: str) -> str:
    return "%s.%s" % (param, key) if " of " not in param else param.replace(" of ", ".%s of " % key, 1)


def parse_size(value, what: str):
    """int bytes, or str with a binary K/M/G/T suffix ("64M", "1.5G", "512KiB"), or "max"."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput("%s must be a size (bytes, or a number with K/M/G/T, or 'max'), not %s %r" % (what, type(value).__name__, value))
    if isinstance(value, str):
        s = value.strip()
        if s.lower() == "max":
            return "max"
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?", s)
        if not m:
            raise InvalidInput("%s: %r is not a size (use bytes or a number with K/M/G/T, e.g. 64M, or 'max')" % (what, value))
        num, suffix = m.group(1), m.group(2).upper()
        value = int(float(num) * _SUFFIX[suffix]) if "." in num else int(num) * _SUFFIX[suffix]
    return value


def _check_one(key: str, value, what: str):
    spec = LIMITS[key]
    if spec.kind == "size":
        v = parse_size(value, what)
        if v == "max":
            return v
        if v < 0:
            raise InvalidInput("%s must not be negative (got %r)" % (what, value))
        if v < spec.lo:
            raise InvalidInput("%s: %r is too small (at least %d bytes, or 'max')" % (what, value, spec.lo))
        if v > spec.hi:
            raise InvalidInput("%s: %r is too big (at most %d bytes, or 'max')" % (what, value, spec.hi))
        return v
    if spec.kind == "cpu":
        if isinstance(value, str) and value.strip().lower() == "max":
            return "max"
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InvalidInput("%s must be a number of CPUs (e.g. 1.5) or 'max', not %s %r" % (what, type(value).__name__, value))
        try:
            v = float(value)
        except ValueError:
            raise InvalidInput("%s: %r is not a number of CPUs (e.g. 1.5) or 'max'" % (what, value))
        if math.isnan(v) or math.isinf(v):
            raise InvalidInput("%s: %r is not a number of CPUs" % (what, value))
        if v <= 0:
            raise InvalidInput("%s must be more than 0 CPUs (got %r); leave it out for no limit" % (what, value))
        if v < spec.lo:
            raise InvalidInput("%s: %r is too small (at least %s CPUs: the kernel's smallest quota is 1000 us per %d us)" % (what, value, spec.lo, CPU_PERIOD))
        ncpu = len(host_cpuset("cpus"))
        if v > ncpu:
            # like docker --cpus: more than the host has is a mistake, not a limit
            raise InvalidInput("%s: %r is more than the host's %d CPUs" % (what, value, ncpu))
        return round(v * CPU_PERIOD) / CPU_PERIOD
    if spec.kind in ("weight", "pids"):
        if spec.kind == "pids" and isinstance(value, str) and value.strip().lower() == "max":
            return "max"
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise InvalidInput("%s must be an integer%s, not %s %r" % (what, " or 'max'" if spec.kind == "pids" else "", type(value).__name__, value))
        if isinstance(value, str):
            if not re.fullmatch(r"\s*-?\d+\s*", value):
                raise InvalidInput("%s: %r is not an integer%s" % (what, value, " or 'max'" if spec.kind == "pids" else ""))
            value = int(value)
        if value < 0:
            raise InvalidInput("%s must not be negative (got %r)" % (what, value))
        if not spec.lo <= value <= spec.hi:
            raise InvalidInput("%s: %r is out of range (%d..%d)" % (what, value, spec.lo, spec.hi))
        return value
    # cpuset
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput("%s must be a CPU/node list like '0-1,3', not %s %r" % (what, type(value).__name__, value))
    if isinstance(value, int) and value < 0:
        raise InvalidInput("%s must not be negative (got %r)" % (what, value))
    try:
        ids = parse_cpuset(str(value))
    except ValueError as exc:
        raise InvalidInput("%s: %r is not a list like '0-1,3' (%s)" % (what, value, exc))
    kind = "cpus" if key == "cpuset_cpus" else "mems"
    host = host_cpuset(kind)
    if not ids <= host:
        noun = "CPUs" if kind == "cpus" else "memory nodes"
        raise InvalidInput("%s: %s outside the host's %s (%s)" % (what, format_cpuset(ids - host), noun, format_cpuset(host)))
    return format_cpuset(ids)


def check_limits(limits, param: str = "limits") -> dict:
    """Checked and normalised limits (sizes in bytes or "max", cpu rounded to the quota's
    resolution, cpusets in the kernel's list form); InvalidInput naming ``param.key`` else.
    ``param`` names the parameter, e.g. "limits of guest web1"."""
    if limits is None:
        return {}
    if not isinstance(limits, dict):
        raise InvalidInput("%s must be a dict of limits (%s), not %s" % (param, ", ".join(sorted(LIMITS)), type(limits).__name__))
    out = {}
    for key, value in limits.items():
        if key not in LIMITS:
            raise InvalidInput("%s: unknown limit %r (known: %s)" % (param, key, ", ".join(sorted(LIMITS))))
        out[key] = _check_one(key, value, _where(param, key))
    if "memory_swap" in out and "memory" not in out:
        raise InvalidInput("%s: memory_swap (the swap allowed on top of memory) needs memory too" % (param,))
    if isinstance(out.get("memory_high"), int) and isinstance(out.get("memory"), int) and out["memory_high"] > out["memory"]:
        raise InvalidInput("%s is above %s (%d > %d bytes)" % (_where(param, "memory_high"), _where(param, "memory"), out["memory_high"], out["memory"]))
    return out


def needed_controllers(limits) -> set:
    """The controllers (v2 names: memory, cpu, cpuset, pids, io) the limits need."""
    return {LIMITS[k].controller for k in (limits or {}) if k in LIMITS}


# --------------------------------------------------------------------------------------------
# layout


class Layout:
    """The host's cgroup hierarchies, read from mountinfo and /proc/self/cgroup.

    ``version``: "v2" (only cgroup2), "v1" (only v1 hierarchies) or "hybrid" (both).
    ``hierarchies``: key -> mount point; key "unified" or the v1 controller list as in
    /proc/self/cgroup ("memory", "cpu,cpuacct", "name=systemd").  ``own``: key -> the cgroup
    path of the process that detected (relative to the hierarchy's root).
    """

    def __init__(self, hierarchies: dict, own: dict, enabled=None):
        self.hierarchies = dict(hierarchies)
        self.own = dict(own)
        self.enabled = set(enabled) if enabled is not None else None
        v1 = [k for k in self.hierarchies if k != UNIFIED]
        if UNIFIED in self.hierarchies:
            self.version = "hybrid" if v1 else "v2"
        else:
            self.version = "v1"

    def __repr__(self) -> str:
        return "Layout(%s, %r)" % (self.version, self.hierarchies)

    def v1_key(self, controller: str):
        """The key of the v1 hierarchy carrying ``controller`` (v2 name), or None."""
        name = V1_NAME.get(controller, controller)
        if self.enabled is not None and name not in self.enabled:
            return None
        for key in self.hierarchies:
            if key != UNIFIED and name in key.split(","):
                return key
        return None

    def v2_controllers(self, dirpath=None) -> set:
        """Controllers offered by cgroup.controllers of ``dirpath`` (or its nearest existing
        ancestor; the unified root when None)."""
        if UNIFIED not in self.hierarchies:
            return set()
        root = self.hierarchies[UNIFIED]
        d = dirpath or root
        while True:
            text = _read_or(os.path.join(d, "cgroup.controllers"))
            if text is not None:
                return set(text.split())
            if os.path.normpath(d) == os.path.normpath(root) or d in ("/", ""):
                return set()
            d = os.path.dirname(d)

    def controllers(self, parent=None) -> set:
        """Usable controllers (v2 names): mounted and enabled v1 ones, plus on v2 those in
        cgroup.controllers of ``parent`` (a dir or a dict from resolve_parent; else the root)."""
        out = {c for c in ("memory", "cpu", "cpuset", "pids", "io", "freezer") if self.v1_key(c)}
        if UNIFIED in self.hierarchies:
            pdir = parent.get(UNIFIED) if isinstance(parent, dict) else parent
            out |= self.v2_controllers(pdir)
        return out

    def locate(self, controller: str):
        """("v1", key) or ("v2", "unified") for the hierarchy that carries ``controller``, or None.
        A controller bound to a v1 hierarchy cannot be used on v2 (hybrid hosts)."""
        key = self.v1_key(controller)
        if key:
            return ("v1", key)
        if UNIFIED in self.hierarchies and controller in self.v2_controllers():
            return ("v2", UNIFIED)
        return None

    def dir_of(self, key: str, cgpath: str) -> str:
        """The absolute directory of cgroup ``cgpath`` (absolute, within the hierarchy) in ``key``."""
        return os.path.normpath(self.hierarchies[key] + "/" + cgpath.strip("/")) if cgpath.strip("/") else self.hierarchies[key]


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def detect(mountinfo: str = "/proc/self/mountinfo", self_cgroup: str = "/proc/self/cgroup", proc_cgroups: str = "/proc/cgroups") -> Layout:
    """The cgroup layout of this host as this process sees it (paths are files to read, so a
    test can point them at a fake tree)."""
    v1_mounts, v2_mounts = [], []
    for line in read_text(mountinfo).splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        f, r = left.split(), right.split()
        if len(f) < 5 or len(r) < 3:
            continue
        fstype, root, point = r[0], _unescape(f[3]), _unescape(f[4])
        if fstype == "cgroup2":
            v2_mounts.append((point, root))
        elif fstype == "cgroup":
            opts = set(r[2].split(","))
            v1_mounts.append((point, root, opts))
    own_lines = {}
    for line in read_text(self_cgroup).splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            own_lines[(parts[0], parts[1])] = parts[2]
    hierarchies, own = {}, {}
    for (hid, ctrls), path in own_lines.items():
        if hid == "0" and ctrls == "":
            cands = v2_mounts
            key = UNIFIED
            want = set()
        else:
            key = ctrls
            want = set(ctrls.split(","))
            cands = [(p, rt) for p, rt, opts in v1_mounts if want <= opts]
        if not want and key != UNIFIED:
            continue
        best = None
        for point, root in cands:
            # a mount of the hierarchy's root, or of a subtree holding our cgroup
            below = root == "/" or path == root or path.startswith(root.rstrip("/") + "/")
            # the mount of the hierarchy's root first, else the shortest mount point
            if below and (best is None or (root != "/", len(point)) < (best[1] != "/", len(best[0]))):
                best = (point, root)
        if best is None:
            continue
        point, root = best
        rel = path[len(root.rstrip("/")):] if root != "/" else path
        hierarchies[key] = point
        own[key] = rel or "/"
    enabled = None
    text = _read_or(proc_cgroups)
    if text is not None:
        enabled = set()
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 4 and not line.startswith("#") and parts[3] != "0":
                enabled.add(parts[0])
        enabled.update(k.split("=", 1)[1] for k in hierarchies if k.startswith("name="))
    return Layout(hierarchies, own, enabled)


def _pid1_is_systemd() -> bool:
    comm = (_read_or("/proc/1/comm") or "").strip()
    return comm == "systemd"


def _check_path(parent: str, what: str) -> None:
    parts = [p for p in parent.split("/") if p]
    if "\n" in parent or any(p in (".", "..") for p in parts):
        raise InvalidInput("%s: %r must not contain '.', '..' or newlines" % (what, parent))


def resolve_parent(layout: Layout, parent, what: str = "cgroup_parent", systemd=None) -> dict:
    """key -> absolute dir of the parent in every hierarchy.

    ``auto``: the delegated systemd unit's cgroup (/system.slice/linuxns-guests.service) when PID 1
    is systemd and that cgroup exists (unified, else name=systemd), else ``/linuxns``.
    ``/a/b``: that path in every hierarchy.  ``a/b``: below this process's own cgroup in each.
    ``systemd``: whether PID 1 is systemd (None: read /proc/1/comm).
    """
    if parent is None or parent == "":
        parent = "auto"
    if not isinstance(parent, str):
        raise InvalidInput("%s must be 'auto', an absolute cgroup path or a relative one, not %r" % (what, parent))
    if not layout.hierarchies:
        raise InvalidInput("%s: this host mounts no cgroup hierarchy (no cgroup or cgroup2 in /proc/self/mountinfo)" % (what,))
    _check_path(parent, what)
    if parent == "auto":
        parent = DEFAULT_PARENT
        if _pid1_is_systemd() if systemd is None else systemd:
            for key in (UNIFIED, "name=systemd"):
                if key in layout.hierarchies and os.path.isdir(layout.dir_of(key, SYSTEMD_UNIT_CGROUP)):
                    parent = SYSTEMD_UNIT_CGROUP
                    break
    if parent.startswith("/"):
        return {key: layout.dir_of(key, parent) for key in layout.hierarchies}
    return {key: layout.dir_of(key, layout.own.get(key, "/").rstrip("/") + "/" + parent) for key in layout.hierarchies}


# --------------------------------------------------------------------------------------------
# conversions (see the module docstring for where they come from)


def weight_to_shares(w: int) -> int:
    return max(2, min(262144, w * 1024 // 100))


def shares_to_weight(s: int) -> int:
    return max(1, min(10000, round(s * 100 / 1024)))


def weight_to_blkio(w: int) -> int:
    return max(10, min(1000, w * 500 // 100))


def blkio_to_weight(b: int) -> int:
    return max(1, min(10000, b * 100 // 500))


def _size_text(v) -> str:
    return "max" if v == "max" else str(v)


def _v1_size_text(v) -> str:
    return "-1" if v == "max" else str(v)


def _size_back(text):
    t = (text or "").strip()
    if t in ("max", "-1", ""):
        return "max"
    n = int(t)
    return "max" if n >= V1_MAX else n


# --------------------------------------------------------------------------------------------
# the guest's cgroup


# Names a cgroup folder must not take, as systemd's cg_escape() has them (CGROUP_DELEGATION.md,
# "Some Dos" 2): the kernel's own files of a cgroup folder (v1 tasks, notify_on_release,
# release_agent; cgroup.*; CONTROLLER.*) - a guest named "cgroup.procs", "memory.max" or "tasks"
# would otherwise collide with a file of its parent.
_KERNEL_FILE_NAMES = ("tasks", "notify_on_release", "release_agent")
_ATTR_PREFIXES = ("cgroup", "cpu", "cpuacct", "cpuset", "io", "blkio", "memory", "devices", "pids", "freezer",
                  "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc", "irq")


def folder_name(name: str) -> str:
    """The cgroup folder of guest ``name``: the name itself, or ``_`` + name when it starts with
    ``_`` or ``.`` or could be one of the kernel's files of a cgroup (systemd escapes the same
    way, so two guests never share a folder: ``_x`` becomes ``__x``)."""
    if (name.startswith(("_", ".")) or name in _KERNEL_FILE_NAMES
            or ("." in name and name.split(".", 1)[0] in _ATTR_PREFIXES)):
        return "_" + name
    return name


class GuestCgroup:
    """A guest's cgroup: ``paths`` maps each hierarchy key to the guest's directory."""

    def __init__(self, layout: Layout, paths: dict):
        self.layout = layout
        self.paths = dict(paths)
        names = {os.path.basename(p) for p in self.paths.values()}
        self.name = names.pop() if len(names) == 1 else "?"

    def __repr__(self) -> str:
        return "GuestCgroup(%r)" % (self.paths,)

    @classmethod
    def plan(cls, layout: Layout, parent, name: str) -> GuestCgroup:
        """The guest's cgroup below ``parent`` (a cgroup_parent string or a resolve_parent dict)."""
        if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or "\n" in name:
            raise InvalidInput("guest %r: not a valid cgroup name" % (name,))
        pdirs = parent if isinstance(parent, dict) else resolve_parent(layout, parent)
        return cls(layout, {key: os.path.join(d, folder_name(name)) for key, d in pdirs.items()})

    # --- where each thing lives ---

    def _param(self, param):
        return param or "limits of guest %s" % self.name

    def _ctl_dir(self, controller: str):
        """("v1"|"v2", dir) of the guest for ``controller``, or None."""
        loc = self.layout.locate(controller)
        if loc is None or loc[1] not in self.paths:
            return None
        return loc[0], self.paths[loc[1]]

    def _unified(self):
        return self.paths.get(UNIFIED)

    def _freezer(self):
        """("v2", dir) when the unified cgroup has cgroup.freeze, else ("v1", dir) or None."""
        u = self._unified()
        if u and os.path.exists(os.path.join(u, "cgroup.freeze")):
            return ("v2", u)
        key = self.layout.v1_key("freezer")
        if key and key in self.paths:
            return ("v1", self.paths[key])
        return None

    def procs_files(self) -> list:
        """Every cgroup.procs of the guest (the joiner writes "0" to each, before any setns)."""
        return [os.path.join(self.paths[k], "cgroup.procs") for k in sorted(self.paths)]

    def exists(self) -> bool:
        return any(os.path.isdir(p) for p in self.paths.values())

    # --- checks before any change ---

    def check(self, limits: dict, param=None) -> None:
        """What :meth:`create` would refuse before writing anything - a controller the host does
        not offer, a cpuset outside the parent's - checked without changing anything (check mode
        predicts it).  ``limits``: the :func:`check_limits` form."""
        self._check_available(limits or {}, self._param(param))
        self._check_cpusets(limits or {}, self._param(param))

    def _check_available(self, limits: dict, param: str) -> list:
        """The v2 controllers to enable; InvalidInput naming limit and controller when missing."""
        need_v2 = []
        for key in [k for k in LIMITS if k in limits]:
            ctl = LIMITS[key].controller
            loc = self.layout.locate(ctl)
            what = _where(param, key)
            if loc is None or loc[1] not in self.paths:
                v1name = V1_NAME.get(ctl, ctl)
                raise InvalidInput(
                    "%s needs the cgroup controller %r, which this host does not offer (no v1 hierarchy with %r mounted%s%s): "
                    "enable it (kernel config / boot options, e.g. cgroup_enable=%s; on cgroup v2 in the subtree_control of the "
                    "parent's ancestors) or leave %s out"
                    % (what, ctl, v1name, ", and not in cgroup.controllers of the unified hierarchy" if UNIFIED in self.layout.hierarchies else "",
                       "" if self.layout.enabled is None or v1name in self.layout.enabled else "; disabled in /proc/cgroups", v1name, what))
            if loc[0] == "v2" and ctl not in need_v2:
                need_v2.append(ctl)
        return need_v2

    def _check_cpusets(self, limits: dict, param: str) -> None:
        for key, eff in (("cpuset_cpus", "cpus"), ("cpuset_mems", "mems")):
            if key not in limits:
                continue
            where = self._ctl_dir("cpuset")
            if where is None:
                continue
            ver, gdir = where
            pdir = os.path.dirname(gdir)
            allowed = self._parent_effective(ver, pdir, eff)
            want = parse_cpuset(limits[key])
            if allowed is not None and not want <= allowed:
                noun = "CPUs" if eff == "cpus" else "memory nodes"
                raise InvalidInput("%s: %s is not within the parent cgroup's %s (%s)"
                                   % (_where(param, key), limits[key], noun, format_cpuset(allowed) or "none"))

    def _parent_effective(self, ver: str, pdir: str, eff: str):
        names = ("cpuset.%s.effective" % eff, "cpuset.effective_%s" % eff, "cpuset.%s" % eff)
        d = pdir
        while d and d != "/":
            for n in names:
                text = _read_or(os.path.join(d, n))
                if text is not None and text.strip():
                    return parse_cpuset(text)
            d = os.path.dirname(d)
        return None

    # --- create / remove ---

    def create(self, limits=None, param=None) -> None:
        """mkdir in every hierarchy (v2: enable the needed controllers down the parent chain;
        v1 cpuset: copy the parent's cpus/mems), then write ``limits``.  On any error everything
        made here is removed again and the subtree_control changes are undone."""
        param = self._param(param)
        limits = check_limits(limits or {}, param)
        need_v2 = self._check_available(limits, param)
        self._check_cpusets(limits, param)
        made: list = []          # dirs created, in creation order
        enabled: list = []       # (subtree_control path, [controllers]) written in pre-existing dirs
        only = set(limits)       # a new cgroup starts with no limits: write only those asked for
        for gdir in self.paths.values():
            if os.path.isdir(gdir) and self._tasks_in(gdir):
                raise GuestConflict("guest %s: the cgroup %s already exists and has processes; remove them or choose another cgroup_parent"
                                    % (self.name, gdir))
        try:
            for key in sorted(self.paths):
                gdir = self.paths[key]
                root = self.layout.hierarchies[key]
                self._mkdirs(key, root, os.path.dirname(gdir), made)
                v1_cpuset = _is_v1_cpuset(key)
                if v1_cpuset:
                    self._clone_cpusets(os.path.dirname(gdir))
                if os.path.isdir(gdir):
                    made.append(gdir)   # a leftover of a crash: taken over (and removed on failure)
                    only = None         # ... with whatever limits it had: write the whole set
                else:
                    self._mkdir(gdir, made)
                if key == UNIFIED and need_v2:
                    self._enable_chain(root, os.path.dirname(gdir), need_v2, made, enabled, param)
                if v1_cpuset:
                    self._copy_cpuset(gdir)
            if only is None or only:
                self._apply(limits, param, restore=False, only=only)
        except BaseException as exc:
            leftovers = self._undo(made, enabled)
            if leftovers and isinstance(exc, (InvalidInput, KernelError, GuestConflict)):
                exc.details.setdefault("leftovers", leftovers)
            raise

    def _mkdir(self, path: str, made: list) -> None:
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            return
        except OSError as exc:
            raise KernelError("guest %s: cannot create the cgroup %s: %s" % (self.name, path, _oserror_text(exc)), errno=exc.errno or 0)
        made.append(path)

    def _mkdirs(self, key: str, root: str, pdir: str, made: list) -> None:
        missing = []
        d = pdir
        while not os.path.isdir(d):
            if os.path.normpath(d) == os.path.normpath(root) or d in ("/", ""):
                raise KernelError("guest %s: the cgroup hierarchy %s is gone" % (self.name, root), errno=_errno.ENOENT)
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            self._mkdir(d, made)
        if _is_v1_cpuset(key):
            self._fill_cpusets(root, pdir)

    @classmethod
    def _fill_cpusets(cls, root: str, pdir: str) -> None:
        """``pdir`` and its parents below ``root`` in a v1 cpuset hierarchy: each one's empty
        cpus and mems given its parent's, from the top down.  Also the parents that were there
        already: another run, or another thread of this one (guests made together), may have
        made one a moment ago and not filled it yet - a guest cgroup below it would get no CPUs,
        and its first process could not join it (ENOSPC).  Once seen filled, a folder is not
        read again (unless it was removed and made again: another inode)."""
        chain = []
        d = os.path.normpath(pdir)
        while d != os.path.normpath(root) and d not in ("/", ""):
            try:
                ino = os.stat(d).st_ino
            except OSError:
                ino = None
            if ino is not None and _FILLED.get(d) == ino:
                break
            chain.append((d, ino))
            d = os.path.dirname(d)
        _FILLED.update((d, ino) for d, ino in reversed(chain) if cls._copy_cpuset(d) and ino is not None)  # top down

    @staticmethod
    def _clone_cpusets(pdir: str) -> None:
        """The guests' parent in a v1 cpuset hierarchy gets ``cgroup.clone_children`` 1 (as LXC
        sets it), so the kernel gives each new guest cgroup the parent's cpus and mems at its
        ``mkdir``. Written into each new cgroup instead (:meth:`_copy_cpuset`, which stays for
        a parent that refuses it), each write has the kernel check every sibling cgroup: at
        10,000 guests, 4.5-9.9 ms a guest against 2.1 ms (docs/performance.md)."""
        if pdir in _CLONING:
            return
        path = os.path.join(pdir, "cgroup.clone_children")
        try:
            if read_text(path).strip() != "1":
                _write(path, "1")
        except OSError:
            return
        _CLONING.add(pdir)

    @staticmethod
    def _copy_cpuset(d: str) -> bool:
        """runc fs/cpuset.go copyIfNeeded: an empty cpuset.cpus/mems takes the parent's; whether
        both have some now."""
        filled = True
        for f in ("cpuset.cpus", "cpuset.mems"):
            mine = _read_or(os.path.join(d, f))
            if mine is not None and not mine.strip():
                parent = _read_or(os.path.join(os.path.dirname(d), f))
                if parent and parent.strip():
                    _write(os.path.join(d, f), parent.strip())
                else:
                    filled = False
        return filled

    def _enable_chain(self, root: str, pdir: str, ctls: list, made: list, enabled: list, param: str) -> None:
        """Enable ``ctls`` in cgroup.subtree_control of each cgroup from the hierarchy's root
        down to the parent, only where missing (systemd/runc delegation rules)."""
        chain = []
        d = os.path.normpath(pdir)
        root = os.path.normpath(root)
        while True:
            chain.append(d)
            if d == root or d in ("/", ""):
                break
            d = os.path.dirname(d)
        for d in reversed(chain):
            ctype = (_read_or(os.path.join(d, "cgroup.type")) or "domain").strip()
            if ctype in ("threaded", "domain threaded", "domain invalid") and {"memory", "io", "cpu"} & set(ctls):
                raise InvalidInput("%s: the cgroup %s is %r, which cannot hold the controllers %s; choose another cgroup_parent"
                                   % (param, d, ctype, ", ".join(ctls)))
            have = set((_read_or(os.path.join(d, "cgroup.subtree_control")) or "").split())
            have = {t.lstrip("+") for t in have if not t.startswith("-")}
            missing = [c for c in ctls if c not in have]
            if not missing:
                continue
            offered = set((_read_or(os.path.join(d, "cgroup.controllers")) or "").split())
            lacking = [c for c in missing if c not in offered]
            if lacking:
                raise InvalidInput("%s: the cgroup %s is not given the controller%s %s by its parent (cgroup.controllers: %s); delegate %s to it "
                                   "(e.g. systemd Delegate=yes) or choose another cgroup_parent"
                                   % (param, d, "s" if len(lacking) > 1 else "", ", ".join(lacking), " ".join(sorted(offered)) or "none", ", ".join(lacking)))
            try:
                _write(os.path.join(d, "cgroup.subtree_control"), " ".join("+" + c for c in missing))
            except OSError as exc:
                if exc.errno == _errno.EBUSY:
                    raise InvalidInput("%s: cannot enable %s in %s/cgroup.subtree_control: %s - the cgroup has processes of its own, and cgroup v2 "
                                       "allows controllers only below cgroups without processes ('no internal processes'); use a cgroup_parent "
                                       "whose ancestors hold no processes (e.g. the delegated linuxns-guests.service, whose process sits in a leaf)"
                                       % (param, ", ".join(missing), d, _oserror_text(exc)), errno=exc.errno)
                raise InvalidInput("%s: cannot enable %s in %s/cgroup.subtree_control: %s" % (param, ", ".join(missing), d, _oserror_text(exc)),
                                   errno=exc.errno)
            if d not in made:
                enabled.append((os.path.join(d, "cgroup.subtree_control"), missing))

    def _undo(self, made: list, enabled: list) -> list:
        leftovers = []
        for path in reversed(made):
            try:
                self._rmtree(path)
            except OSError:
                leftovers.append(path)
        for path, ctls in reversed(enabled):
            # disabled again only where no other cgroup is below: a guest made meanwhile by another
            # run under the same (shared) parent would otherwise lose its limits
            d = os.path.dirname(path)
            try:
                if any(e.is_dir(follow_symlinks=False) and os.path.exists(os.path.join(e.path, "cgroup.procs")) for e in os.scandir(d)):
                    continue
                _write(path, " ".join("-" + c for c in ctls))
            except OSError:
                pass
        return leftovers

    @staticmethod
    def _tasks_in(d: str) -> list:
        out = []
        for dirpath, _dirs, _files in os.walk(d):
            text = _read_or(os.path.join(dirpath, "cgroup.procs")) or ""
            out.extend(int(t) for t in text.split())
        return out

    @classmethod
    def _rmtree(cls, d: str, v1_cpuset: bool = False) -> None:
        """runc RemovePath: child cgroups first, then the cgroup itself."""
        try:
            _rmdir(d, v1_cpuset)
            return
        except FileNotFoundError:
            return
        except OSError:
            pass
        for entry in os.scandir(d):
            # only child cgroups (every cgroup dir has cgroup.procs): never anything else
            if entry.is_dir(follow_symlinks=False) and os.path.exists(os.path.join(entry.path, "cgroup.procs")):
                cls._rmtree(entry.path, v1_cpuset)
        try:
            _rmdir(d, v1_cpuset)
        except FileNotFoundError:
            pass

    def join(self, pid: int = 0) -> None:
        """Move ``pid`` (0 = the calling process) into the guest's cgroup in every hierarchy."""
        for path in self.procs_files():
            err = None
            for _attempt in range(5):
                try:
                    _write(path, str(pid))
                    err = None
                    break
                except OSError as exc:
                    err = exc
                    if exc.errno != _errno.EINVAL:   # runc WriteCgroupProc: EINVAL = task still in TASK_NEW
                        break
                    time.sleep(0.03)
            if err is not None:
                raise KernelError("guest %s: cannot move process %s into %s: %s" % (self.name, pid or os.getpid(), path, _oserror_text(err)),
                                  errno=err.errno or 0)

    def pids(self) -> list:
        """Every process in the guest's cgroup or below it, in any hierarchy."""
        seen: set = set()
        for d in self.paths.values():
            if os.path.isdir(d):
                try:
                    seen.update(self._tasks_in(d))
                except OSError:
                    pass
        return sorted(seen)

    def _empty(self) -> bool:
        u = self._unified()
        events = _read_or(os.path.join(u, "cgroup.events")) if u else None
        if events is not None and _kv(events).get("populated", 1) != 0:
            return False
        return not self.pids()

    def _wait(self, cond, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            if cond():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def remove(self, timeout: float = 10.0) -> None:
        """Kill every process, wait (bounded) until the cgroup is empty, rmdir it in every
        hierarchy (children first; EBUSY retried 5 times, 10 ms doubling, as runc does).

        A stopped guest's cgroups are empty: one rmdir each removes them, and only a cgroup
        that is still busy (a process, a child cgroup) takes the way above."""
        busy = False
        for key, p in self.paths.items():
            try:
                _rmdir(p, _is_v1_cpuset(key))
            except FileNotFoundError:
                pass
            except OSError:
                busy = True
        if not busy:
            return
        if self.pids():
            self.kill_all(timeout=timeout)
        left = dict((k, p) for k, p in self.paths.items() if os.path.isdir(p))
        delay = 0.01
        last = None
        for attempt in range(6):
            if attempt:
                time.sleep(delay)
                delay *= 2
            for key, p in list(left.items()):
                try:
                    self._rmtree(p, _is_v1_cpuset(key))
                except OSError as exc:
                    last = exc
                if not os.path.isdir(p):
                    del left[key]
            if not left:
                return
        raise KernelError("guest %s: cannot remove the cgroup%s %s: %s (processes left: %s)"
                          % (self.name, "s" if len(left) > 1 else "", ", ".join(sorted(left.values())), _oserror_text(last) if last else "busy",
                             self.pids() or "none"), errno=(last.errno if last else _errno.EBUSY) or 0)

    # --- limits ---

    def _plan_writes(self, limits: dict, param: str, only=None) -> list:
        """[(limit key, path, text)] in a safe order for the whole set (absent keys = no limit)."""
        writes = []
        full = {k: limits.get(k, LIMITS[k].default) for k in LIMITS}
        for key in LIMITS:
            if only is not None and key not in only:
                continue
            spec = LIMITS[key]
            where = self._ctl_dir(spec.controller)
            if where is None:
                continue   # no controller and no limit asked (asked ones were checked)
            ver, d = where
            v = full[key]
            what = _where(param, key)
            if ver == "v2":
                f = spec.v2[1]
                if key == "cpu":
                    text = "max %d" % CPU_PERIOD if v == "max" else "%d %d" % (round(v * CPU_PERIOD), CPU_PERIOD)
                elif key == "io_weight":
                    text = "default %d" % v
                elif spec.kind == "cpuset":
                    text = v
                else:
                    text = _size_text(v)
                writes.append((key, os.path.join(d, f), text, what))
                continue
            # v1
            if key == "memory_swap":
                continue   # written with memory below
            if key == "memory":
                writes.extend(self._v1_memory_writes(d, full, limits, what, _where(param, "memory_swap")))
                continue
            if key == "cpu":
                writes.append((key, os.path.join(d, "cpu.cfs_period_us"), str(CPU_PERIOD), what))
                writes.append((key, os.path.join(d, "cpu.cfs_quota_us"), "-1" if v == "max" else str(round(v * CPU_PERIOD)), what))
            elif key == "cpu_weight":
                writes.append((key, os.path.join(d, "cpu.shares"), str(weight_to_shares(v)), what))
            elif key == "io_weight":
                path, text = self._v1_blkio(d, v, what, key in limits)
                if path:
                    writes.append((key, path, text, what))
            elif spec.kind == "cpuset":
                if v == "":
                    v = (_read_or(os.path.join(os.path.dirname(d), spec.v1[1])) or "").strip()
                    if not v:
                        continue
                writes.append((key, os.path.join(d, spec.v1[1]), v, what))
            elif key == "pids":
                writes.append((key, os.path.join(d, "pids.max"), _size_text(v), what))
            else:
                writes.append((key, os.path.join(d, spec.v1[1]), _v1_size_text(v), what))
        return writes

    @staticmethod
    def _v1_blkio(d: str, v: int, what: str, asked: bool):
        # runc fs/blkio.go: blkio.weight (CFQ) where the kernel has it, else blkio.bfq.weight (BFQ)
        if os.path.exists(os.path.join(d, "blkio.weight")):
            return os.path.join(d, "blkio.weight"), str(weight_to_blkio(v))
        if os.path.exists(os.path.join(d, "blkio.bfq.weight")):
            return os.path.join(d, "blkio.bfq.weight"), str(max(1, min(1000, v)))
        if asked:
            raise InvalidInput("%s: this kernel has neither blkio.weight (CFQ is gone since Linux 5.0) nor blkio.bfq.weight (BFQ not built or "
                               "not the scheduler): no io weight on cgroup v1 here; leave it out" % (what,))
        return None, None

    def _v1_memory_writes(self, d: str, full: dict, limits: dict, what: str, what_swap: str) -> list:
        mem = full["memory"]
        swap = full["memory_swap"]
        memsw_path = os.path.join(d, "memory.memsw.limit_in_bytes")
        out = []
        if not os.path.exists(memsw_path):
            if "memory_swap" in limits:
                raise InvalidInput("%s: this kernel does not account swap in cgroup v1 (no memory.memsw.limit_in_bytes; boot with swapaccount=1) - "
                                   "leave memory_swap out" % (what_swap,))
            return [("memory", os.path.join(d, "memory.limit_in_bytes"), _v1_size_text(mem), what)]
        memsw = "max" if mem == "max" or swap == "max" else mem + swap
        # runc setMemoryAndSwap: memory <= memsw at every step; raise memsw first when it grows
        cur_mem = _size_back(_read_or(os.path.join(d, "memory.limit_in_bytes"), "max"))
        if memsw == "max" or (cur_mem != "max" and cur_mem <= memsw):
            out.append(("memory_swap", memsw_path, _v1_size_text(memsw), what_swap))
            out.append(("memory", os.path.join(d, "memory.limit_in_bytes"), _v1_size_text(mem), what))
        else:
            out.append(("memory", os.path.join(d, "memory.limit_in_bytes"), _v1_size_text(mem), what))
            out.append(("memory_swap", memsw_path, _v1_size_text(memsw), what_swap))
        return out

    def _apply(self, limits: dict, param: str, restore: bool = True, only=None) -> None:
        writes = []
        for w in self._plan_writes(limits, param, only):
            if os.path.exists(w[1]):
                writes.append(w)
            elif w[0] in limits:
                why = "swap accounting is off (boot with swapaccount=1) or " if w[0] == "memory_swap" else ""
                raise InvalidInput("%s: the kernel file %s is missing (%sthe controller is not enabled for this cgroup)" % (w[3], os.path.basename(w[1]), why))
            # else: a "no limit" value for a controller this cgroup does not have: nothing to reset
        saved = []
        if restore:
            saved = [(path, _read_or(path)) for _key, path, _text, _what in writes]
        done = []
        for key, path, text, what in writes:
            try:
                _write(path, text)
                done.append(path)
            except OSError as exc:
                if restore:
                    self._restore([s for s in saved if s[0] in done])
                raise InvalidInput(self._refusal(key, path, text, what, exc), errno=exc.errno or 0, file=path)

    @staticmethod
    def _restore(saved: list) -> None:
        failed = []
        for path, old in reversed(saved):
            if old is None:
                continue
            try:
                _write(path, _restore_text(path, old))
            except OSError:
                failed.append((path, old))
        for path, old in failed:   # a second pass, for pairs like memory / memsw
            try:
                _write(path, _restore_text(path, old))
            except OSError:
                pass

    def _refusal(self, key: str, path: str, text: str, what: str, exc: OSError) -> str:
        d = os.path.dirname(path)
        msg = "%s: the kernel refused %r in %s: %s" % (what, text, os.path.basename(path), _oserror_text(exc))
        if key in ("memory", "memory_swap") and exc.errno == _errno.EBUSY:
            usage = _read_or(os.path.join(d, "memory.usage_in_bytes")) or _read_or(os.path.join(d, "memory.current"))
            peak = _read_or(os.path.join(d, "memory.max_usage_in_bytes")) or _read_or(os.path.join(d, "memory.peak"))
            msg += " - the guest uses more than that now (usage %s bytes, peak %s bytes) and it cannot be reclaimed; " % (
                (usage or "?").strip(), (peak or "?").strip())
            msg += "free memory in the guest or choose a higher limit"
        elif key.startswith("cpuset") and exc.errno in (_errno.EINVAL, _errno.ENOSPC):
            msg += " - outside the parent's set, or the guest has tasks that would be left with none"
        elif key == "pids" and exc.errno == _errno.EINVAL:
            msg += " - out of the kernel's range"
        msg += "; nothing was changed"
        return msg

    def set_limits(self, limits, old=None, param=None) -> None:
        """Write the whole set in place (a key left out = no limit): all or nothing - on a
        refusal the values written so far are put back.  ``old`` (the set in force, as
        read_limits gives it): only keys whose value changes are written."""
        param = self._param(param)
        limits = check_limits(limits or {}, param)
        need_v2 = self._check_available(limits, param)
        self._check_cpusets(limits, param)
        only = None
        if old is not None:
            old = check_limits(old, param)
            only = {k for k in LIMITS if limits.get(k, LIMITS[k].default) != old.get(k, LIMITS[k].default)}
            if only & {"memory", "memory_swap"}:
                only |= {"memory", "memory_swap"}
            if not only:
                return
        enabled: list = []
        try:
            u = self._unified()
            if need_v2 and u:
                self._enable_chain(self.layout.hierarchies[UNIFIED], os.path.dirname(u), need_v2, [], enabled, param)
            self._apply(limits, param, restore=True, only=only)
        except BaseException:
            self._undo([], enabled)
            raise

    def read_limits(self) -> dict:
        """The limits in force, read back from the kernel's files; keys at their default
        ("no limit") are left out, so the result compares with :meth:`expected`."""
        out = {}
        for key, spec in LIMITS.items():
            where = self._ctl_dir(spec.controller)
            if where is None:
                continue
            ver, d = where
            v = self._read_one(key, spec, ver, d)
            if v is not None and v != spec.default:
                out[key] = v
        return out

    def _read_one(self, key, spec, ver, d):
        if ver == "v2":
            text = _read_or(os.path.join(d, spec.v2[1]))
            if text is None:
                return None
            text = text.strip()
            if key == "cpu":
                q, _sp, p = text.partition(" ")
                return "max" if q == "max" else int(q) / int(p or CPU_PERIOD)
            if key == "io_weight":
                for line in text.splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == "default":
                        return int(parts[1])
                return None
            if spec.kind == "cpuset":
                return format_cpuset(parse_cpuset(text)) if text else ""
            if key == "cpu_weight":
                return int(text)
            return _size_back(text)
        # v1
        if key == "memory_swap":
            memsw = _read_or(os.path.join(d, "memory.memsw.limit_in_bytes"))
            mem = _read_or(os.path.join(d, "memory.limit_in_bytes"))
            if memsw is None or mem is None:
                return None
            memsw, mem = _size_back(memsw), _size_back(mem)
            return "max" if "max" in (memsw, mem) else memsw - mem
        if key == "cpu":
            q = _int_or_none(_read_or(os.path.join(d, "cpu.cfs_quota_us")))
            p = _int_or_none(_read_or(os.path.join(d, "cpu.cfs_period_us"))) or CPU_PERIOD
            return None if q is None else ("max" if q < 0 else q / p)
        if key == "cpu_weight":
            s = _int_or_none(_read_or(os.path.join(d, "cpu.shares")))
            return None if s is None else shares_to_weight(s)
        if key == "io_weight":
            b = _int_or_none(_read_or(os.path.join(d, "blkio.weight")))
            if b is not None:
                return blkio_to_weight(b)
            b = _int_or_none(_read_or(os.path.join(d, "blkio.bfq.weight")))
            return b
        if spec.kind == "cpuset":
            mine = (_read_or(os.path.join(d, spec.v1[1])) or "").strip()
            parent = (_read_or(os.path.join(os.path.dirname(d), spec.v1[1])) or "").strip()
            if not mine or mine == parent:
                return ""
            return format_cpuset(parse_cpuset(mine))
        text = _read_or(os.path.join(d, spec.v1[1]))
        return None if text is None else _size_back(text)

    def expected(self, limits) -> dict:
        """What :meth:`read_limits` gives after ``set_limits(limits)`` on this host: defaults
        left out, sizes rounded down to pages, weights through the v1 conversion (lossy)."""
        limits = check_limits(limits or {}, self._param(None))
        out = {}
        for key, v in limits.items():
            spec = LIMITS[key]
            where = self._ctl_dir(spec.controller)
            ver = where[0] if where else "v2"
            if ver == "v1" and key == "memory_swap" and v != "max" and isinstance(limits.get("memory"), int):
                mem = limits["memory"]   # v1 keeps memory + swap, each rounded down to pages
                v = (mem + v) // PAGE * PAGE - mem // PAGE * PAGE
            elif spec.kind == "size" and v != "max":
                v = v // PAGE * PAGE
            if ver == "v1" and key == "cpu_weight":
                v = shares_to_weight(weight_to_shares(v))
            if ver == "v1" and key == "io_weight" and where is not None:
                if os.path.exists(os.path.join(where[1], "blkio.weight")) or not os.path.exists(os.path.join(where[1], "blkio.bfq.weight")):
                    v = blkio_to_weight(weight_to_blkio(v))
                else:
                    v = max(1, min(1000, v))
            if ver == "v1" and spec.kind == "cpuset" and where is not None:
                parent = (_read_or(os.path.join(os.path.dirname(where[1]), spec.v1[1])) or "").strip()
                if parent and v == format_cpuset(parse_cpuset(parent)):
                    v = ""
            if v != spec.default:
                out[key] = v
        return out

    # --- the view namespace_info shows ---

    def info(self, parent=None) -> dict:
        """``{parent, paths, version, frozen, <stats()>, limits}``: a guest's cgroup as
        namespace_info reports it (``parent``: the cgroup_parent the record keeps)."""
        out = {"parent": parent, "paths": dict(self.paths), "version": self.layout.version, "frozen": self.frozen()}
        out.update(self.stats())
        out["limits"] = self.read_limits()
        return out

    # --- stats ---

    def stats(self) -> dict:
        """memory_current, memory_peak (bytes), pids_current, cpu_usage_usec, oom_kills; None
        where this host has no such counter."""
        out = {"memory_current": None, "memory_peak": None, "pids_current": None, "cpu_usage_usec": None, "oom_kills": None}
        mem = self._ctl_dir("memory")
        if mem:
            ver, d = mem
            if ver == "v2":
                out["memory_current"] = _int_or_none(_read_or(os.path.join(d, "memory.current")))
                out["memory_peak"] = _int_or_none(_read_or(os.path.join(d, "memory.peak")))
                ev = _read_or(os.path.join(d, "memory.events"))
                out["oom_kills"] = _kv(ev).get("oom_kill") if ev is not None else None
            else:
                out["memory_current"] = _int_or_none(_read_or(os.path.join(d, "memory.usage_in_bytes")))
                out["memory_peak"] = _int_or_none(_read_or(os.path.join(d, "memory.max_usage_in_bytes")))
                oc = _read_or(os.path.join(d, "memory.oom_control"))
                out["oom_kills"] = _kv(oc).get("oom_kill") if oc is not None else None   # kernel >= 4.13
        pids = self._ctl_dir("pids")
        if pids:
            out["pids_current"] = _int_or_none(_read_or(os.path.join(pids[1], "pids.current")))
        u = self._unified()
        stat = _read_or(os.path.join(u, "cpu.stat")) if u else None
        if stat is not None and "usage_usec" in _kv(stat):
            out["cpu_usage_usec"] = _kv(stat)["usage_usec"]   # a core file of cgroup v2, there with or without the cpu controller
        else:
            key = self.layout.v1_key("cpuacct")
            if key and key in self.paths:
                ns = _int_or_none(_read_or(os.path.join(self.paths[key], "cpuacct.usage")))
                out["cpu_usage_usec"] = None if ns is None else ns // 1000
        return out

    # --- freeze / thaw ---

    def frozen(self) -> bool:
        """Whether the kernel reports the guest frozen (v2 ``cgroup.events`` frozen 1, v1 FROZEN or
        FREEZING): the state namespace_info shows.  Whether a freeze was *asked for* is
        enter.is_frozen (the freeze file), which the modules and the entry paths act on."""
        fz = self._freezer()
        if fz is None:
            return False
        ver, d = fz
        if ver == "v2":
            ev = _read_or(os.path.join(d, "cgroup.events"))
            if ev is not None and "frozen" in _kv(ev):
                return _kv(ev)["frozen"] == 1
            return (_read_or(os.path.join(d, "cgroup.freeze")) or "0").strip() == "1"
        return (_read_or(os.path.join(d, "freezer.state")) or "").strip() in ("FROZEN", "FREEZING")

    def freeze(self, timeout: float = 10.0) -> None:
        """Freeze every process of the guest; returns once the kernel reports it frozen
        (bounded by ``timeout``; on timeout the guest is thawed back and KernelError raised)."""
        fz = self._freezer()
        if fz is None:
            raise InvalidInput("guest %s: this host has no freezer (neither cgroup.freeze of cgroup v2, kernel >= 5.2, nor the v1 freezer hierarchy)"
                               % self.name)
        ver, d = fz
        if ver == "v2":
            path = os.path.join(d, "cgroup.freeze")
            try:
                _write(path, "1")
            except OSError as exc:
                raise KernelError("guest %s: cannot freeze (%s): %s" % (self.name, path, _oserror_text(exc)), errno=exc.errno or 0)
            ok = self._wait(lambda: _kv(_read_or(os.path.join(d, "cgroup.events"), "")).get("frozen") == 1, timeout)
        else:
            path = os.path.join(d, "freezer.state")

            def step():
                # runc fs/freezer.go: write FROZEN again while the state reads FREEZING
                _write(path, "FROZEN")
                return (_read_or(path) or "").strip() == "FROZEN"

            try:
                ok = self._wait(step, timeout)
            except OSError as exc:
                self._thaw_quiet()
                raise KernelError("guest %s: cannot freeze (%s): %s" % (self.name, path, _oserror_text(exc)), errno=exc.errno or 0)
        if not ok:
            self._thaw_quiet()
            raise KernelError("guest %s: not frozen within %s s (processes still running or forking); thawed again" % (self.name, timeout),
                              errno=_errno.ETIMEDOUT)

    def _thaw_quiet(self) -> None:
        try:
            self.thaw()
        except KernelError:
            pass

    def thaw(self) -> None:
        fz = self._freezer()
        if fz is None:
            return
        ver, d = fz
        path = os.path.join(d, "cgroup.freeze" if ver == "v2" else "freezer.state")
        if not os.path.exists(path):
            return
        try:
            _write(path, "0" if ver == "v2" else "THAWED")
        except OSError as exc:
            raise KernelError("guest %s: cannot thaw (%s): %s" % (self.name, path, _oserror_text(exc)), errno=exc.errno or 0)

    # --- signals ---

    def signal(self, sig, spare=()) -> list:
        """Send ``sig`` (number or name: 15, "TERM", "SIGTERM") to every process of the guest but
        those in ``spare`` (e.g. its init); returns the pids signalled."""
        signum = signal_number(sig)
        spare = {int(p) for p in spare or ()}
        done = []
        for pid in self.pids():
            if pid in spare or pid == os.getpid():
                continue
            try:
                os.kill(pid, signum)
                done.append(pid)
            except ProcessLookupError:
                pass
        return done

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL every process of the guest and wait (bounded) until the cgroup is empty:
        cgroup.kill where the kernel has it (5.14), else freeze, kill each pid, thaw, in a loop."""
        u = self._unified()
        kill_file = os.path.join(u, "cgroup.kill") if u else None
        if kill_file and os.path.exists(kill_file):
            try:
                _write(kill_file, "1")
            except OSError as exc:
                raise KernelError("guest %s: cannot kill through %s: %s" % (self.name, kill_file, _oserror_text(exc)), errno=exc.errno or 0)
            if self._wait(self._empty, timeout):
                return
        fz = self._freezer()

        def sweep():
            if not self.pids():
                return True
            frozen = False
            if fz is not None:
                try:
                    self.freeze(timeout=min(1.0, timeout))
                    frozen = True
                except KernelError:
                    pass
            self.signal(_signal.SIGKILL)
            if frozen:
                self.thaw()
            return not self.pids()

        if not self._wait(sweep, timeout):
            raise KernelError("guest %s: processes left after %s s of SIGKILL: %s" % (self.name, timeout, self.pids()), errno=_errno.ETIMEDOUT)


def _restore_text(path: str, old: str) -> str:
    old = old.strip()
    if path.endswith("io.weight"):
        for line in old.splitlines():
            if line.startswith("default "):
                return line
    return old.splitlines()[0] if old else old


def signal_number(sig) -> int:
    """15, "15", "TERM", "SIGTERM", "sigterm" -> 15; InvalidInput else."""
    if isinstance(sig, bool):
        raise InvalidInput("signal %r is not a signal name or number" % (sig,))
    if isinstance(sig, int):
        num = sig
    else:
        s = str(sig).strip().upper()
        if s.isdigit():
            num = int(s)
        else:
            if not s.startswith("SIG"):
                s = "SIG" + s
            num = getattr(_signal, s, None)
            if not isinstance(num, int):
                raise InvalidInput("signal %r is not a signal name or number" % (sig,))
    if not 1 <= int(num) < getattr(_signal, "NSIG", 65):
        raise InvalidInput("signal %r is out of range" % (sig,))
    return int(num)
