# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading guests for namespace_info: kernel relations of namespace files, the host's
limits, and the description of a guest (mounts and links on request).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket

from ansible_collections.linuxns.guests.plugins.module_utils import confine, confine_status, enter, mountinfo
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    GuestError,
    GuestNotFound,
)
from ansible_collections.linuxns.guests.plugins.module_utils.guest_create import find_reaper
from ansible_collections.linuxns.guests.plugins.module_utils.guest_spec import CgroupRun, public_view
from ansible_collections.linuxns.guests.plugins.module_utils.guest_stop import ProcIndex


def ns_relations(path: str) -> dict:
    """Owning user namespace and (pid/user) parent inode via the nsfs ioctls, and the uid that
    made the owning user namespace (``owner_uid``, NS_GET_OWNER_UID)."""
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
                if key == "owner_user_ns":
                    out["owner_uid"] = sc.ns_owner_uid(rfd)
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
        used = sum(1 for m in metas if t in m.namespaces)
        out[t] = {"limit": limit, "used_by_guests": used, "headroom": limit - used, "path": path}
    return out


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


def confinement_view(meta: reg.GuestRecord, problems: list, proc_index=None) -> tuple:
    """The guest's confinement as it applies to processes entering now (capabilities kept,
    seccomp kind), and its running processes that still have other settings (entered before
    a change, or its init: a change applies to processes that enter from then on)."""
    try:
        conf = confine.for_guest(meta)
    except GuestError as exc:
        return {"error": exc.msg}, []
    outdated = []
    if not problems:
        index = proc_index if proc_index is not None else ProcIndex()
        for pid in sorted(index.members(meta)):
            try:
                st = confine_status.status(pid)
            except GuestError:
                continue  # gone meanwhile
            why = confine_status.differences(conf, st)
            if why:
                outdated.append({"pid": pid, "comm": _comm(pid), "differences": why})
    return conf.as_dict(), outdated


def _comm(pid: int) -> str:
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read(64).strip()
    except OSError:
        return ""


def cgroup_view(meta: reg.GuestRecord, cgroup_run: CgroupRun) -> dict | None:
    """The guest's cgroup as the kernel's files say: where, version, frozen, usage, OOM kills and
    the limits (None: a guest made by a version without cgroups)."""
    if not meta.cgroup:
        return None
    try:
        return cgroup_run.of(meta).info(meta.cgroup.get("parent"))
    except GuestError as exc:
        return {"parent": meta.cgroup.get("parent"), "paths": dict(meta.cgroup.get("paths") or {}), "error": exc.msg}


def describe(meta: reg.GuestRecord, want_mounts: bool = False, want_links: bool = False, proc_index=None,
             cgroup_run=None) -> dict:
    view = public_view(meta)
    problems = reg.health(meta)
    view["running"] = not problems
    view["healthy"] = not problems
    view["problems"] = problems
    view["confinement"], view["confinement_outdated"] = confinement_view(meta, problems, proc_index)
    view["cgroup"] = cgroup_view(meta, cgroup_run or CgroupRun())
    for info in view["namespaces"].values():
        if not problems:
            info.update(ns_relations(info["pin"]))
    if want_mounts:
        view["mounts"] = mountinfo.guest_mountinfo(meta) if not problems and "mnt" in meta.pins else []
    if want_links:
        view["links"] = enter.call_in_guest(meta, ["net"], _links_here) if not problems and "net" in meta.pins else []
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
    index = ProcIndex() if metas else None  # one /proc scan for every guest's processes
    cgroup_run = CgroupRun()  # the cgroup layout, detected once for every guest
    return {
        "guests": [describe(m, want_mounts, want_links, index, cgroup_run) for m in metas],
        "missing": missing,
        "host": {
            "state_dir": registry.state_dir,
            "guest_count": len([m for m in all_metas if m]),
            "limits": host_limits([m for m in all_metas if m]),
            "reaper": find_reaper(),
        },
    }
