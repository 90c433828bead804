# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mounts of one guest (namespace_mount's engine): plan (compare the wanted mounts
with the guest's table and its kept table), converge and apply, and re-applying a
guest's kept table when it is created (:func:`apply_table`).  The concerns live in
mountinfo (tables), mount_spec (wanted mounts), mount_worker (inside the guest) and
mount_mirror (the mirror tree).
"""

from __future__ import annotations

import stat as _stat

from ansible_collections.linuxns.guests.plugins.module_utils import persist
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    GuestConflict,
    GuestError,
    InvalidInput,
    MountBusy,
)
from ansible_collections.linuxns.guests.plugins.module_utils.mount_mirror import apply_mirror, mirror_copies, mirror_result, plan_mirror
from ansible_collections.linuxns.guests.plugins.module_utils.mount_spec import (
    ATIME_BITS,
    ATTR_BITS,
    HIDDEN_DEFAULTS,
    RECONFIGURABLE,
    HostMounts,
    MountSpec,
    mount_specs,
    norm_value,
    render_opts,
    validate_host_side,
)
from ansible_collections.linuxns.guests.plugins.module_utils.mount_worker import holders, inspect_guest, run_in_guest_mnt
from ansible_collections.linuxns.guests.plugins.module_utils.mountinfo import index_mounts, parse_mountinfo, top_mount, unescape


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
    flags["idmap"] = "idmapped" in words
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
        if spec.bind and bool(spec.flags.get("idmap")) != ("idmapped" in words):  # set only before a mount is attached
            out["fixed"].append("idmap (now %s)" % ("idmapped" if "idmapped" in words else "not idmapped"))
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
        out.append({"src": unescape(f[0]), "path": unescape(f[1]), "fstype": f[2], "opts": ",".join(words), "propagation": prop, "line": n})
    return out


def _table_lines(entries: list) -> dict:
    """path -> table line of the entries read by read_table."""
    out = {}
    for e in entries:
        spec = MountSpec(dict(e, state="present"))
        out[spec.path] = spec.table_line()
    return out


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


def plan_mounts(meta: reg.GuestRecord, specs: list, table: list, paths: dict, table_lines: dict) -> list:
    """Work out what each spec needs (raises before anything changes)."""
    name = meta.name
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
    name = meta.name
    specs = mount_specs(entries, name)
    kept = persist.Kept(table_dir or persist.resolve_table_dir(registry.state_dir), name)
    tpath = kept.table_path

    def work():
        current = meta if locked else registry.find(name, "guest")
        _check_guest(current, locked)
        host = HostMounts(registry.guest_roots)
        for spec in specs:
            validate_host_side(spec, host)
            _check_idmap(current, spec)
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


def validate_many(registry, per_guest: list) -> list:
    """Check the mounts of many guests before any of them changes (namespace_mount's
    ``guests`` form): each guest exists, runs and has its own mount namespace, no guest
    is listed twice, and every mount entry is well formed and possible on this host.
    ``per_guest`` is [(where, guest ref, entries)]; returns the guests' metadata."""
    host = HostMounts(registry.guest_roots)
    metas, names = [], {}
    for where, ref, entries in per_guest:
        meta = registry.find(ref, where + ".guest")
        try:
            _check_guest(meta, False)
        except GuestError as exc:
            msg = exc.msg[len("guest: "):] if exc.msg.startswith("guest: ") else exc.msg
            raise exc.with_message("%s.guest: %s" % (where, msg)) from None
        if meta.name in names:
            raise InvalidInput("%s: guest %r is listed twice (also %s)" % (where, meta.name, names[meta.name]))
        names[meta.name] = where
        for spec in mount_specs(entries, meta.name, where + "."):
            validate_host_side(spec, host)
        metas.append(meta)
    return metas


def _check_idmap(meta: reg.GuestRecord, spec: MountSpec) -> None:
    """An idmapped bind maps ids through the guest's own user namespace (userns: auto or uid_map)."""
    if spec.flags.get("idmap") and spec.state != "absent" and ("user" not in meta.pins or "user" not in meta.namespaces):
        raise InvalidInput("mounts: %s: opts 'idmap' maps ids through the guest's user namespace, but guest %r has none"
                           " of its own (namespace_create userns: auto, or uid_map/gid_map)" % (spec.path, meta.name))


def _check_guest(meta: reg.GuestRecord, creating: bool) -> None:
    name = meta.name
    if "mnt" not in meta.pins or "mnt" not in meta.namespaces:
        shared = meta.share.get("mnt")
        if shared:
            raise InvalidInput("guest: guest %r shares the mount namespace of %r; manage its mounts there" % (name, shared))
        raise InvalidInput("guest: guest %r has no mount namespace of its own (add mnt to its namespaces)" % name)
    if not creating:
        problems = reg.health(meta)
        if problems:
            raise GuestError("guest: guest %r is not running (%s); recreate it with namespace_create" % (name, "; ".join(problems)))


def _apply(meta: reg.GuestRecord, plans: list, table: list) -> list:
    """Carry out the plans (ordered: unmounts deepest first, then mounts shallowest first)."""
    todo = [p for p in plans if p.action != "none"]
    if not todo:
        return table
    unmounts = sorted([p for p in todo if p.action == "unmount"], key=lambda p: -_depth(p.spec.path))
    others = sorted([p for p in todo if p.action != "unmount"], key=lambda p: _depth(p.spec.path))
    ops = []
    rng = meta.field("userns_range")  # a userns: auto guest: mount points its root owns are made as its root
    for p in unmounts + others:
        s = p.spec
        op = {"path": s.path, "action": p.action, "fstype": s.fstype, "src": s.src, "fsopts": s.fsopts, "attr": s.attr_bits(),
              "create": s.create, "create_kind": p.create_kind or "dir", "lazy": s.lazy, "propagation": None, "src_roots": s.src_roots,
              "attr_set": 0, "attr_clr": 0, "undo_set": 0, "undo_clr": 0, "reconfigure": [],
              "idmap": meta.pins["user"].path if s.flags.get("idmap") else None,
              "create_as": (rng["start"],) * 2 if rng else None}
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
        who = holders(meta, m, mirror_copies(meta.name, path)) if m else []
        raise MountBusy(
            "guest %r: umount %s: target is busy%s; stop those processes, or set lazy_unmount=true to detach it anyway"
            % (meta.name, path, " (held by %s)" % ", ".join(who) if who else ""), errno=exc.errno, path=path, holders=who,
        ) from None
    except GuestError as exc:
        raise exc.for_guest(meta.name) from None
    return parse_mountinfo(out["mountinfo"])


def apply_table(registry, meta: reg.GuestRecord, table_dir: str) -> dict:
    """Re-apply the guest's persistent table (namespace_create calls this after making
    the guest's mount namespace, holding the guest's lock).  No table: nothing to do."""
    if "mnt" not in meta.namespaces:
        return {"changed": False, "results": []}
    kept = persist.Kept(table_dir, meta.name)
    path = kept.table_path
    if not kept.has_table():
        return {"changed": False, "results": []}
    try:
        entries = [dict(e, state="ephemeral", _in_list=True) for e in read_table(kept)]
        for e in entries:
            e.pop("line", None)
        return converge(registry, meta.name, entries, locked=True, meta=meta, table_dir=table_dir)
    except GuestError as exc:
        raise exc.with_message("guest %r: its mount table %s could not be applied: %s" % (meta.name, path, exc.msg)) from None
