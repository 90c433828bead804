# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest role's plan, in Python (filters ``linuxns.guests.guest_*``; docs in the ``*.yml`` sidecars).

The role (roles/guest) calls these filters instead of Jinja blocks:

* ``guest_plan`` - each guest of ``guest_list`` with its state, root, namespace_create entry,
  creation wave, links, inittab and services; bad input the argument spec cannot express
  raises one error naming every guest and what is wrong.
* ``guest_waves`` - the namespace_create calls: one per wave (a guest sharing a listed guest's
  namespace comes after it) and per batch.
* ``guest_check_entries`` - check mode's namespace_create entries (a guest not created yet is
  predicted without its root and shares, which may not exist yet).
* ``guest_mount_entries`` - namespace_mount's ``guests`` entries.
* ``guest_service_groups`` - init-less services grouped by (name, argv, stop), one task each.

The pure functions below take plain data and raise :class:`GuestPlanError`; the FilterModule
wrappers turn that into AnsibleFilterError.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex

from ansible.errors import AnsibleFilterError

# Guest defaults come from the guest field table (module_utils/model.py), written once.
from ansible_collections.linuxns.guests.plugins.module_utils import model

STATES = ("started", "stopped", "restarted", "absent")
STOPPING = ("stopped", "restarted", "absent")
STARTING = ("started", "restarted")
CREATE_KEYS = ("context_id", "share", "hostname", "init", "privileged", "capabilities", "no_new_privs", "seccomp", "limits", "cgroup_parent",
               "userns", "userns_size", "userns_root", "uid_map", "gid_map", "time_offsets")
LINK_IFNAME = "eth0"
PEER_PREFIX = "ve-"
PEER_MAX_NAME = 12  # "ve-" + 12 characters = 15, the longest interface name
SERVICE_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
INITTAB_HEAD = ("# written by the linuxns.guests.guest role", "::ctrlaltdel:/bin/true")


class GuestPlanError(ValueError):
    """Role input the argument spec cannot check (the message names the guest and the problem)."""


def _given(guest: dict, key: str, default=None):
    """The value of ``key``, or ``default`` when missing or empty (Jinja's ``default(x, true)``)."""
    value = guest.get(key)
    return value if value else default


def _ref(value) -> str:
    """A share source as a lookup key: a guest name, a context id (as text) or a namespace file."""
    return str(value)


def peer_ifname(name: str) -> str:
    """Host-side name of a guest's ``address`` veth: ``ve-NAME``, or ``ve`` + 13 hex digits of a long name's sha1."""
    if len(name) <= PEER_MAX_NAME:
        return PEER_PREFIX + name
    return "ve" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:13]


def _problems(guest: dict, name: str, root, init, services: list) -> list:
    out = []
    if services and not init and not root:
        out.append("guest %s: services of an init-less guest need a root folder (root or root_build)" % name)
    if _given(guest, "files", []) and not root:
        out.append("guest %s: files need a root folder (root or root_build)" % name)
    names = [s.get("name") for s in services]
    if len(set(names)) != len(names):
        out.append("guest %s: service names must be unique" % name)
    for s in services:
        sname = s.get("name")
        if not isinstance(sname, str) or not SERVICE_NAME_RE.fullmatch(sname) or not s.get("argv"):
            out.append("guest %s: service %s needs a name of letters, digits, _.- and a non-empty argv" % (name, sname))
    return out


def plan(guest_list, state: str = "started", roots_dir: str = "/var/lib/linuxns/roots", bridge: str = "linuxns0",
         service_dir: str = "/run/linuxns-services") -> list:
    """Each guest's plan entry (see guest_plan.yml); raises GuestPlanError listing every problem."""
    if not isinstance(guest_list, list) or not all(isinstance(g, dict) for g in guest_list):
        raise GuestPlanError("guest_list: must be a list of dicts, one per guest")
    if state not in STATES:
        raise GuestPlanError("guest_state: must be one of %s, not %r" % (", ".join(STATES), state))
    states = {}
    for g in guest_list:
        states[g.get("name")] = g.get("state") or state
        if g.get("context_id") is not None:
            states[_ref(g["context_id"])] = states[g.get("name")]
    levels = {}
    out = []
    problems = []
    for g in guest_list:
        name = g.get("name")
        root = _given(g, "root")
        build = bool(g.get("root_build"))
        if build and not root:
            root = "%s/%s" % (roots_dir, name)
        services = _given(g, "services", [])
        init = _given(g, "init")
        problems.extend(_problems(g, name, root, init, services))
        create = {
            "name": name,
            "namespaces": _given(g, "namespaces", model.default("namespaces")),
            "stop_signal": _given(g, "stop_signal", model.default("stop_signal")),
            "stop_timeout": _given(g, "stop_timeout", model.default("stop_timeout")),
        }
        for key in CREATE_KEYS:
            if g.get(key) is not None:
                create[key] = g[key]
        if root:
            create["root"] = root
        if not init and "services" in g:  # recorded in the guest's definition: the restore service starts them at boot
            create["services"] = [
                {"name": sv.get("name"), "argv": [str(a) for a in sv.get("argv") or []], "pid_dir": service_dir} for sv in services
            ]
        # creation wave: a guest sharing another listed guest's namespace is created after it
        share = _given(g, "share", {})
        level = 0
        for src in share.values():
            if _ref(src) in levels:
                level = max(level, levels[_ref(src)] + 1)
        levels[name] = level
        for src in share.values():
            src_state = states.get(_ref(src), "started")
            if src_state in STOPPING and states[name] == "started":
                problems.append(
                    "guest %s shares namespaces of guest %s, which is %s: give both the same state"
                    " (a shared namespace lives on while one guest holds it)" % (name, src, src_state)
                )
        if g.get("context_id") is not None:
            levels[_ref(g["context_id"])] = level
        links = []
        if _given(g, "address"):
            link = {"guest": name, "ifname": LINK_IFNAME, "addresses": [g["address"]],
                    "peer": {"ifname": _given(g, "peer_ifname") or peer_ifname(name), "bridge": bridge}}
            if _given(g, "gateway"):
                link["gateway"] = g["gateway"]
            links.append(link)
        links.extend(dict(extra, guest=name) for extra in _given(g, "links", []))
        inittab = None
        if init and build:
            inittab = list(INITTAB_HEAD) + ["::respawn:" + " ".join(shlex.quote(str(a)) for a in s.get("argv") or []) for s in services]
        out.append({
            "name": name,
            "state": g.get("state") or state,
            "root": root,
            "build": build,
            "hostname": _given(g, "hostname", name),
            "files": _given(g, "files", []),
            "inittab": inittab,
            "init": init,
            "create": create,
            "level": level,
            "mounts": _given(g, "mounts", []),
            "links": links,
            "services": [] if init else services,
        })
    names = [e["name"] for e in out]
    if len(set(names)) != len(names):
        problems.append("duplicate guest names")
    if problems:
        raise GuestPlanError("guest_list: " + "; ".join(problems))
    return out


def waves(starting: list, batch_size=0) -> list:
    """namespace_create calls: per wave (ascending) and per batch of ``batch_size`` guests (0: one batch)."""
    try:
        size = int(batch_size or 0)
    except (TypeError, ValueError):
        raise GuestPlanError("guest_batch_size: must be a whole number, not %r" % (batch_size,)) from None
    out = []
    for level in sorted({g["level"] for g in starting}):
        names = [g["name"] for g in starting if g["level"] == level]
        step = size if size > 0 else len(names)
        batches = [names[i:i + step] for i in range(0, len(names), step)]
        for number, batch in enumerate(batches, 1):
            out.append({"wave": level, "batch": number, "batches": len(batches), "guests": batch})
    return out


def check_entries(entries: list, known) -> list:
    """Check mode: an entry of a guest the host does not have yet loses ``root`` and ``share``.

    Its root folder (built by an earlier step) and the guests it shares namespaces with may not
    exist yet; the guest is predicted as created without them (it is created anyway).
    ``known`` is namespace_info's ``guests`` (dicts with ``name``) or a list of names.
    """
    names = {k.get("name") if isinstance(k, dict) else k for k in known or []}
    return [e if e["name"] in names else {k: v for k, v in e.items() if k not in ("root", "share")} for e in entries]


def mount_entries(plan_entries: list, ready) -> list:
    """namespace_mount ``guests`` entries of the guests with mounts among ``ready`` (the existing ones)."""
    ready = set(ready or [])
    return [{"guest": g["name"], "mounts": g["mounts"]} for g in plan_entries if g["mounts"] and g["name"] in ready]


def service_groups(plan_entries: list) -> list:
    """Services of the given guests grouped by (name, argv, stop): [{name, argv, stop, guests}], in first-seen order."""
    groups = {}
    for g in plan_entries:
        for s in g.get("services") or []:
            key = json.dumps([s.get("name"), s.get("argv"), s.get("stop")])
            if key not in groups:
                groups[key] = {"name": s.get("name"), "argv": s.get("argv"), "stop": s.get("stop"), "guests": []}
            groups[key]["guests"].append(g["name"])
    return list(groups.values())


def _filter(func):
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except GuestPlanError as exc:
            raise AnsibleFilterError(str(exc)) from None
    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


class FilterModule:
    """linuxns.guests.guest_plan and the role's other plan filters."""

    def filters(self):
        return {
            "guest_plan": _filter(plan),
            "guest_waves": _filter(waves),
            "guest_check_entries": _filter(check_entries),
            "guest_mount_entries": _filter(mount_entries),
            "guest_service_groups": _filter(service_groups),
        }
