# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Creating, checking and removing guests (the engine behind namespace_create).

Compute, then apply: :func:`plan` compares the wanted guest with the registry
and the kernel and returns what would change (also for check mode and
--diff); :func:`apply` carries a plan out under the guest's lock and rolls
back whatever this run created when a step fails.  The batch
(:func:`ensure_guests`) validates and plans every entry first.  The concerns live in
guest_spec (the wanted guest), guest_create, guest_stop and guest_info.
"""

from __future__ import annotations

import contextlib
import json
import os

from ansible_collections.linuxns.guests.plugins.module_utils import enter, faults, model, persist, userns
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    GuestConflict,
    GuestError,
    InvalidInput,
)
from ansible_collections.linuxns.guests.plugins.module_utils.guest_create import CreateRun, create
from ansible_collections.linuxns.guests.plugins.module_utils.guest_spec import Spec, diff_view, public_view
from ansible_collections.linuxns.guests.plugins.module_utils.guest_stop import ProcIndex, dispose, remove, stop_many


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
    if spec.context_id is not None and kept is not None and (meta.context_id if meta else None) != spec.context_id:
        holder = kept.others(spec.name).get(spec.context_id)
        if holder is not None and registry.ctx_owner(spec.context_id) is None:  # held: 'already taken' below
            raise InvalidInput(reg.kept_id_conflict(spec.context_id, holder, kept.table_dir))
    want = spec.wanted()
    if meta is None or meta.phase != reg.READY:
        if meta is not None and meta.phase == reg.CORRUPT:
            reasons = reg.health(meta)
        elif meta is not None or os.path.isdir(registry.guest_dir(spec.name)):
            reasons = ["an earlier run did not finish creating it"]
        else:
            reasons = []
        if spec.context_id is not None:
            owner = registry.ctx_owner(spec.context_id)
            if owner not in (None, spec.name) and registry.load(owner) is not None:
                raise InvalidInput("context_id %d is already taken by guest %r" % (spec.context_id, owner))
        elif meta is not None and meta.context_id:
            want["context_id"] = meta.context_id
        _plan_userns(spec, kept, want)
        return Plan(spec, "create", diff_view(meta) if meta else None, want, reasons)
    for key in model.KEPT:  # not given: the guest keeps its own
        if getattr(spec, key) is None:
            want[key] = meta.field(key)
    differ = {}
    for key in model.REPLACED:
        if key == "share":
            old_ids = {t: meta.pins[t].ino for t in meta.share if t in meta.pins}
            new_ids = {t: ids[1] for t, ids in spec.share_ids.items() if ids is not None}
            old_ids = {t: ino for t, ino in old_ids.items() if t not in spec.deferred}
            if meta.share != want["share"] or old_ids != new_ids:
                differ[key] = (meta.share, want["share"])
            continue
        if meta.field(key) != want[key]:
            differ[key] = (meta.field(key), want[key])
    problems = reg.health(meta)
    if differ and not spec.recreate:
        names = ", ".join("%s (now %s, wanted %s)" % (k, _short(a), _short(b)) for k, (a, b) in sorted(differ.items()))
        raise GuestConflict(
            "guest %r exists with a different %s; that cannot change in place: set recreate=true to replace it" % (spec.name, names)
        )
    if differ or problems:
        reasons = problems + ["%s differs" % k for k in sorted(differ)]
        _plan_userns(spec, kept, want)
        return Plan(spec, "recreate", diff_view(meta), want, reasons)
    changes = {}
    for key in model.CHANGED_IN_PLACE:
        if meta.field(key) != want[key]:
            changes[key] = want[key]
    if changes:
        return Plan(spec, "update", diff_view(meta), want, ["%s differs" % k for k in sorted(changes)], changes)
    return Plan(spec, "none", diff_view(meta), diff_view(meta))


def _plan_userns(spec: Spec, kept, want: dict) -> None:
    """A guest about to be made: its userns: auto range predicted (shown in the plan; the pool
    checked, exhaustion found before anything changes), or its explicit maps checked against
    the ranges other guests keep."""
    ranges = kept.userns if kept is not None else None
    if ranges is None:
        return
    if spec.userns == userns.AUTO:
        want["userns_range"] = ranges.predict(spec.name, spec.userns_size, spec.where).view()
    else:
        ranges.check_map(spec.name, spec.uid_map if "user" in spec.namespaces else None, spec.where + "uid_map")
        ranges.check_map(spec.name, spec.gid_map if "user" in spec.namespaces else None, spec.where + "gid_map")


def _short(value) -> str:
    return json.dumps(value, sort_keys=True)


def apply(registry: reg.Registry, p: Plan, proc_index=None, kept=None, create_run=None):
    """Carry out a plan under the guest's lock; returns the resulting record (None: removed).
    ``create_run``: the run's :class:`guest_create.CreateRun` (a single apply outside a
    batch makes its own and closes it)."""
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
                meta.stop_signal = p.spec.stop_signal
            if p.spec.stop_timeout is not None:
                meta.stop_timeout = p.spec.stop_timeout
        if p2.action in ("remove", "recreate", "create") and (meta is not None or os.path.isdir(registry.guest_dir(name))):
            keep_ctx = p2.action != "remove"
            remove(registry, name, meta, keep_context_id=keep_ctx, proc_index=proc_index)
        if p2.action in ("remove", "purge"):
            if p2.purged:
                p.purged = kept.forget(name)
            return None
        if p2.action == "update":
            return _update(registry, meta, p2.changes)
        if create_run is not None:
            return create(registry, p.spec, create_run, p2.after.get("context_id"), kept)
        create_run = CreateRun(registry)
        try:
            return create(registry, p.spec, create_run, p2.after.get("context_id"), kept)
        finally:
            create_run.close()


def _update(registry, meta: reg.GuestRecord, changes) -> reg.GuestRecord:
    if "hostname" in changes:
        enter.call_in_guest(meta, ["uts"], sc.sethostname, changes["hostname"])
    meta.update(changes)
    registry.save(meta)
    return meta


def ensure_guests(registry: reg.Registry, entries, check_mode: bool = False, table_dir=None, userns_pool=None,
                  userns_pool_owner=None) -> dict:
    """Converge a list of guest entries; everything is validated and planned first.

    Returns ``{"changed", "results": [...], "diff": {"before", "after"}}``.
    On a failure the guest being changed is rolled back and a GuestError
    carries the results of the guests already done.  ``table_dir``: the folder of the
    guests' kept files (persist.resolve_table_dir when None).  ``userns_pool``/``userns_pool_owner``:
    the host's pool for userns: auto guests (userns.Pool; read only when a guest needs it).
    """
    kept = persist.KeptIds(table_dir or persist.resolve_table_dir(registry.state_dir))
    kept.userns = userns.Ranges(kept.table_dir, userns.Pool(userns_pool, userns_pool_owner))
    specs, seen, batch, confinements = [], set(), {}, {}
    for i, params in enumerate(entries):
        where = "guests[%d]." % i if len(entries) > 1 or params.get("_in_list") else ""
        spec = Spec(params, registry, where, batch, confinements)
        if spec.name is not None and spec.name in seen:
            raise InvalidInput("%sname: guest %r is listed twice" % (where, spec.name))
        seen.add(spec.name)
        specs.append(spec)
        if spec.state == "present" and spec.name:
            batch = dict(batch)
            batch[spec.name] = spec
    plans = [plan(registry, s, kept) for s in specs]
    results, before, after = [], {}, {}
    create_run = CreateRun(registry)  # the run's context: its clean mount namespace, made on first use
    try:
        return _apply_plans(registry, plans, check_mode, results, before, after, kept, create_run)
    finally:
        create_run.close()


REMOVE_BATCH = 256  # guests removed together at most (one lock fd each)


def _apply_plans(registry, plans, check_mode, results, before, after, kept=None, create_run=None):
    proc_index = None
    removals, batch = iter(()), []  # the batch of removals under way (apply_removals)
    for k, p in enumerate(plans):
        name = p.spec.name or p.spec.ref
        before[name] = p.before or {}
        after[name] = p.after or {}
        item = {"name": name, "changed": p.changed, "action": p.action, "reasons": p.reasons, "state": p.spec.state}
        if p.spec.purge:
            item["purged"] = p.purged
        if check_mode or not p.changed:
            meta = registry.load(name) if p.spec.state == "present" else None
            if meta and p.action == "update":
                meta = meta.copy(p.changes)  # changed in place: everything else stays
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
            if p.action == "remove":
                if p not in batch:  # this removal and those right after it: one batch
                    end = next((j for j in range(k, len(plans)) if plans[j].action != "remove"), len(plans))
                    batch = plans[k : min(end, k + REMOVE_BATCH)]
                    removals = apply_removals(registry, batch, proc_index, kept)
                next(removals)  # p is done: its guest is gone
                if p is batch[-1]:
                    next(removals, None)  # the end of the batch: its locks are released
                meta = None
            else:
                meta = apply(registry, p, proc_index, kept, create_run)
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


def apply_removals(registry: reg.Registry, plans, proc_index=None, kept=None):
    """Carry out consecutive removal plans as one batch; yields each plan when its guest is gone.

    Every guest's lock is taken first, exclusively and in name order (two batches never wait
    on each other in a circle), and each plan re-planned under it, as :func:`apply` does.
    Then the guests' processes are stopped and ONE sweep covers all their namespaces
    (guest_stop.stop_many: one /proc scan per round, not two or more per guest), and the
    guests are disposed of one by one, each plan yielded when its guest is gone.  The locks
    are released when the generator ends (or is closed).
    """
    faults.check()
    registry.ensure()
    with contextlib.ExitStack() as locks:
        for name in sorted({p.spec.name for p in plans}):
            locks.enter_context(registry.lock(name))
        going = {}
        for p in plans:
            name = p.spec.name
            p2 = plan(registry, p.spec, kept)  # another run may have changed the guest meanwhile
            p.action, p.reasons, p.before, p.after, p.purged = p2.action, p2.reasons, p2.before, p2.after, p2.purged
            meta = registry.load(name)
            if p2.action == "remove" and (meta is not None or os.path.isdir(registry.guest_dir(name))):
                meta = meta or reg.GuestRecord(name)
                if p.spec.stop_signal is not None:
                    meta.stop_signal = p.spec.stop_signal
                if p.spec.stop_timeout is not None:
                    meta.stop_timeout = p.spec.stop_timeout
                going[name] = meta
        stop_many(registry, list(going.values()), proc_index)
        for p in plans:
            name = p.spec.name
            try:
                if name in going:
                    dispose(registry, name, going[name])
                if p.action in ("remove", "purge") and p.purged:
                    p.purged = kept.forget(name)
            except GuestError as exc:
                raise exc.for_guest(name) from None
            yield p


def _predicted_view(p: Plan) -> dict:
    if not p.after:
        return {}
    view = dict(p.after)
    types = sorted(set(p.after["namespaces"]) | set(p.after["share"]))
    view["namespaces"] = {t: {"inode": None, "pin": None, "shared_from": p.after["share"].get(t)} for t in types}
    view["private_namespaces"] = p.after["namespaces"]
    view["init_pid"] = None
    return view
