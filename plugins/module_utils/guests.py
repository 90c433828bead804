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
import signal
import threading
import time

from ansible_collections.linuxns.guests.plugins.module_utils import cgroups, enter, faults, model, persist, procfs, sealed, userns
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    GuestConflict,
    GuestError,
    InvalidInput,
)
from ansible_collections.linuxns.guests.plugins.module_utils.guest_create import CreateRun, Turns, create
from ansible_collections.linuxns.guests.plugins.module_utils.guest_spec import CgroupRun, Spec, default_cgroup_parent, diff_view, public_view
from ansible_collections.linuxns.guests.plugins.module_utils.guest_stop import ProcIndex, forget, release_many, remove, stop_many


class Plan:
    def __init__(self, spec: Spec, action: str, before, after, reasons=None, changes=None, purged=None):
        self.spec = spec
        self.action = action  # none | create | recreate | update | remove | purge
        self.before = before
        self.after = after
        self.reasons = reasons or []
        self.changes = changes or {}
        self.purged = purged or []  # the kept files purge=true removes (or would remove)
        self.freeze = None  # True: freeze (state=frozen), False: thaw (state=present), None: neither (apply_ops)
        self.signalled = []  # the pids signal_all signals (or would signal in check mode)
        self.meta = None  # the guest's record the plan was made from (plan() reads it once)

    @property
    def changed(self) -> bool:
        return self.action != "none" or self.freeze is not None or bool(self.signalled)

    @property
    def shown_action(self) -> str:
        """The action reported: a plan whose only change is apply_ops' says freeze, thaw or signal."""
        if self.action != "none" or not self.changed:
            return self.action
        return "signal" if self.freeze is None else "freeze" if self.freeze else "thaw"


def plan(registry: reg.Registry, spec: Spec, kept=None, dirs=None) -> Plan:
    """``kept``: the run's persist.KeptIds (None: nothing kept on disk is looked at).  The
    guest's record is read once, here: the plan keeps it as ``meta``.  ``dirs``: the
    registry.DirListing of a first planning pass (None: each cgroup looked up; a re-plan
    under the guest's lock looks again)."""
    meta = registry.load(spec.name) if spec.name is not None else None
    p = plan_ops(registry, spec, _plan(registry, spec, meta, kept, dirs), meta)
    p.meta = meta
    return p


def _plan(registry: reg.Registry, spec: Spec, meta, kept=None, dirs=None) -> Plan:
    if spec.name is None:  # absent, by a context id nobody has
        return Plan(spec, "none", None, None)
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
        _check_cgroup(spec, want)
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
    if meta.proc_sys != want["proc_sys"]:  # privileged, for a guest with a root: its mounts are made at creation
        differ["proc_sys"] = (meta.proc_sys, want["proc_sys"])
    problems = reg.health(meta, dirs)
    if differ and not spec.recreate:
        names = ", ".join("%s (now %s, wanted %s%s)" % (k, _short(a), _short(b), PROC_SYS_WHY if k == "proc_sys" else "")
                          for k, (a, b) in sorted(differ.items()))
        raise GuestConflict(
            "guest %r exists with a different %s; that cannot change in place: set recreate=true to replace it" % (spec.name, names)
        )
    if differ or problems:
        reasons = problems + ["%s differs" % k for k in sorted(differ)]
        _check_cgroup(spec, want)
        _plan_userns(spec, kept, want)
        return Plan(spec, "recreate", diff_view(meta), want, reasons)
    meta = _kernel_limits(spec, meta, want)
    changes = {}
    for key in model.CHANGED_IN_PLACE:
        if meta.field(key) != want[key]:
            changes[key] = want[key]
    if changes:
        return Plan(spec, "update", diff_view(meta), want, ["%s differs" % k for k in sorted(changes)], changes)
    return Plan(spec, "none", diff_view(meta), diff_view(meta))


PROC_SYS_WHY = (": privileged decides the /proc and /sys mounts a guest with a root gets at creation - masked "
                "and read-only paths or none - so changing it replaces the guest")


def _check_cgroup(spec: Spec, want: dict) -> None:
    """Before a guest is made: its cgroup parent resolves on this host and the host has every
    controller its limits need (check mode predicts these failures too)."""
    layout = spec.cgroup_run.layout()
    try:
        parent = cgroups.resolve_parent(layout, want["cgroup_parent"] or default_cgroup_parent())
    except InvalidInput as exc:
        raise InvalidInput("cgroup_parent of guest %r: %s" % (spec.name, exc.msg)) from None
    if want["limits"] and spec.name:
        # the controllers its limits need, a cpuset within the parent's: what create() would refuse
        cgroups.GuestCgroup.plan(layout, parent, spec.name).check(want["limits"], "limits of guest %s" % spec.name)


def _kernel_limits(spec: Spec, meta: reg.GuestRecord, want: dict) -> reg.GuestRecord:
    """``meta`` with its limits as the kernel's cgroup files say, when ``limits`` is given, and
    ``want["limits"]`` as the kernel would say them once written (cgroups.GuestCgroup.expected:
    "no limit" left out, sizes in whole pages): the in-place plan compares those, --diff shows
    them.  A guest without a cgroup (made by an older version) can only have none."""
    if spec.limits is None:
        return meta  # not given: the guest keeps its limits
    cg = spec.cgroup_run.of(meta)
    if cg is None:
        if spec.limits:
            raise GuestConflict("guest %r has no cgroup of its own (it was made by a version without cgroups): its limits "
                                "cannot be set in place; set recreate=true to make it again with one" % spec.name)
        return meta.copy({"limits": {}})
    cg.check(spec.limits, "limits of guest %s" % spec.name)
    want["limits"] = cg.expected(spec.limits)
    try:
        return meta.copy({"limits": cg.read_limits()})
    except GuestError as exc:
        raise exc.with_prefix("its limits cannot be read: ").for_guest(spec.name) from None


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
        if not _restart_still_wanted(registry, p.spec):  # the supervisor's restart, and the guest changed meanwhile
            p2 = Plan(p.spec, "none", p2.before, p2.before)
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
            remove(registry, name, meta, keep_context_id=keep_ctx, proc_index=proc_index, cgroup_run=p.spec.cgroup_run)
        if p2.action in ("remove", "purge"):
            if p2.purged:
                p.purged = kept.forget(name)
            return None
        if p2.action == "update":
            return _update(registry, meta, p2.changes, p.spec)
        # A recreated guest keeps its cgroup parent and limits unless they are given.
        cg_kept = {k: p2.after[k] for k in ("cgroup_parent", "limits") if getattr(p.spec, k) is None and p2.after.get(k) is not None}
        if p.spec.params.get("_restarts") is not None:  # the supervisor's restart: its count, recorded with the guest
            cg_kept["restarts"] = p.spec.params["_restarts"]
        if create_run is not None:
            return create(registry, p.spec, create_run, p2.after.get("context_id"), kept, cg_kept)
        create_run = CreateRun(registry)
        try:
            return create(registry, p.spec, create_run, p2.after.get("context_id"), kept, cg_kept)
        finally:
            create_run.close()


def _restart_still_wanted(registry: reg.Registry, spec: Spec) -> bool:
    """A restart by the supervisor (supervisor.restart_params: ``_restart_of`` [pid, start]) goes
    on only while the guest's record names that init and it is not running (no double start)."""
    expected = spec.params.get("_restart_of")
    if expected is None:
        return True
    meta = registry.load(spec.name)
    return (meta is not None and [meta.init_pid, meta.init_start] == list(expected)
            and not procfs.process_alive(meta.init_pid, meta.init_start))


def _update(registry, meta: reg.GuestRecord, changes, spec=None) -> reg.GuestRecord:
    if "limits" in changes and meta.cgroup:
        cg = spec.cgroup_run.of(meta)
        try:
            cg.set_limits(changes["limits"], cg.read_limits())  # all or nothing
        except GuestError as exc:
            raise exc.for_guest(meta.name) from None
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
    if not check_mode and any(isinstance(p, dict) and p.get("init") for p in entries) and not sc.running_sealed():
        # an init: is exec'd by the guest's PID 1, forked here: from a sealed clone (CVE-2019-5736 class)
        return sealed.in_sealed_clone(ensure_guests, registry, entries, check_mode, table_dir, userns_pool, userns_pool_owner)
    kept = persist.KeptIds(table_dir or persist.resolve_table_dir(registry.state_dir))
    kept.userns = userns.Ranges(kept.table_dir, userns.Pool(userns_pool, userns_pool_owner), kept)
    specs, seen, batch, confinements, cgroup_run = [], set(), {}, {}, CgroupRun()
    for i, params in enumerate(entries):
        where = "guests[%d]." % i if len(entries) > 1 or params.get("_in_list") else ""
        spec = Spec(params, registry, where, batch, confinements, cgroup_run)
        if spec.name is not None and spec.name in seen:
            raise InvalidInput("%sname: guest %r is listed twice" % (where, spec.name))
        seen.add(spec.name)
        specs.append(spec)
        if spec.state != "absent" and spec.name:
            # One dict for the whole task, not a copy per guest (that was quadratic in time and
            # memory): a Spec reads it only while it is made, when it holds the earlier entries.
            batch[spec.name] = spec
    dirs = reg.DirListing()  # the guests' cgroups, listed once for this pass
    plans = [plan(registry, s, kept, dirs) for s in specs]
    for s in specs:  # a broken definition, or one a newer version wrote, is refused before anything changes
        if s.name and not s.purge:
            persist.check_definition_file(kept.table_dir, s.name)
    results, before, after = [], {}, {}
    creates = 0 if check_mode else sum(p.action in ("create", "recreate") for p in plans)
    create_run = CreateRun(registry, creates)  # the run's context: its clean mount namespace (and fork server), made on first use
    try:
        return _apply_plans(registry, plans, check_mode, results, before, after, kept, create_run)
    finally:
        create_run.close()


# Guests removed together at most: one lock fd each (as many as RLIMIT_NOFILE lets in, see
# syscalls.room_for_fds), and each batch scans /proc two rounds or more (guest_stop.sweep_many),
# so the number of batches times the processes on the host is the cost: 256 a batch made a
# 10,000-guest teardown scan /proc ~100 times.
REMOVE_BATCH = 4096


def _apply_plans(registry, plans, check_mode, results, before, after, kept=None, create_run=None):
    together = _Together(registry, kept, create_run)  # new guests made at the same time
    try:
        return _apply_in_order(registry, plans, check_mode, results, before, after, kept, create_run, together)
    finally:
        together.close()  # also when this run fails: guests made after the failing one are removed again


def _apply_in_order(registry, plans, check_mode, results, before, after, kept, create_run, together):
    proc_index = None
    definitions = []  # check mode: guests whose kept definition a real run would save, nothing else changing
    removals, batch = iter(()), []  # the batch of removals under way (apply_removals)
    earlier_changed = False  # an entry before this one changes something (it may touch this guest too)
    one_at_a_time = check_mode or create_run is None  # no guests made together in this run (_Together)
    for k, p in enumerate(plans):
        earlier_changed = earlier_changed or (k > 0 and plans[k - 1].changed)
        name = p.spec.name or p.spec.ref
        before[name] = p.before or {}
        after[name] = p.after or {}
        item = {"name": name, "changed": p.changed, "action": p.shown_action, "reasons": p.reasons, "state": p.spec.state}
        if p.spec.purge:
            item["purged"] = p.purged
        if p.spec.signal_all is not None:
            item["signalled"] = p.signalled
        if check_mode or not p.changed:
            # the record the plan read, unless an earlier entry changes something: then as it is now
            meta = None if p.spec.state == "absent" else registry.load(name) if earlier_changed else p.meta
            if meta and p.action == "update":
                meta = meta.copy(p.changes)  # changed in place: everything else stays
            item["guest"] = public_view(meta) if meta and p.action in ("none", "update") else _predicted_view(p)
            if not check_mode:
                keep_definition(kept, p.spec, meta)
            elif not p.changed and keep_definition(kept, p.spec, meta, check=True):
                definitions.append(name)  # a real run would save its definition, though nothing else changes
            results.append(item)
            continue
        if p.spec.deferred:
            # Its share source was made by an earlier entry of this task: resolve it now.
            p = plan(registry, Spec(p.spec.params, registry, p.spec.where, cgroup_run=p.spec.cgroup_run), kept)
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
                    batch = plans[k : k + sc.room_for_fds(min(end - k, REMOVE_BATCH))]
                    removals = apply_removals(registry, batch, proc_index, kept)
                next(removals)  # p is done: its guest is gone
                if p is batch[-1]:
                    next(removals, None)  # the end of the batch: its locks are released
                meta = None
            else:
                if not one_at_a_time and p not in together and _made_together(p, kept):
                    end = next((j for j in range(k + 1, len(plans)) if not _made_together(plans[j], kept)), len(plans))
                    if end - k > 1:
                        one_at_a_time = not together.start(plans[k:end])  # no fork server: not in this run either later
                if p in together:
                    meta = apply_ops(registry, p, together.take(p))
                else:
                    if p.action == "recreate":
                        thaw_to_remove(p.spec, registry.load(name))
                    meta = apply_ops(registry, p, apply(registry, p, proc_index, kept, create_run))
        except GuestError as exc:
            err = exc.with_message(exc.msg) if name in exc.msg else exc.for_guest(name)
            err.details["results"] = results
            raise err from None
        item.update(changed=p.changed, action=p.shown_action, reasons=p.reasons)
        if p.spec.purge:
            item["purged"] = p.purged
        if p.spec.signal_all is not None:
            item["signalled"] = p.signalled
        before[name], after[name] = p.before or {}, p.after or {}
        item["guest"] = public_view(meta) if meta else {}
        keep_definition(kept, p.spec, meta)
        results.append(item)
    out = {
        "changed": any(r["changed"] for r in results),
        "results": results,
        "diff": {"before": before, "after": after},
    }
    if check_mode:
        out["definitions"] = definitions
    return out


# Guests a task makes at the same time (_Together): while one guest's child makes its namespaces,
# the module goes on with another's record, cgroup, pins and alias.  Made one at a time, a
# 10,000-guest task left this 2-core machine ~29 % idle (docs/performance.md, "Guests made
# together").  One more than the CPUs this process may run on, at least 2 and at most 4: at 2,000
# guests on 2 CPUs, 2 threads took 0.73x the time of one guest at a time, 3 0.70x, 4 0.69x.
CREATE_THREADS_MAX = 4


def create_threads() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except OSError:
        cpus = os.cpu_count() or 1
    return max(2, min(CREATE_THREADS_MAX, cpus + 1))


def _made_together(p: Plan, kept) -> bool:
    """Whether ``p``'s guest may be made while other guests of the task are: a new guest that
    needs nothing of another entry (no share resolved later) and nothing this process forks
    besides its child (no userns: auto range, idmap or shift; no kept mount table to apply)."""
    spec = p.spec
    if p.action != "create" or spec.name is None or spec.deferred or spec.userns == userns.AUTO or spec.params.get("_restart_of"):
        return False
    return not ("mnt" in spec.namespaces and kept is not None and persist.Kept(kept.table_dir, spec.name).has_table())


class _Together:
    """Consecutive plans of new guests (:func:`_made_together`) made :func:`create_threads` at a time,
    each by :func:`apply` in a thread of its own, through the run's fork server; taken by the
    caller in the plans' order.  What a failure leaves is what it leaves when the guests are made
    one at a time: the guests before the failing one stay, the failing one is rolled back, and
    a guest after it that was made meanwhile is removed again (:meth:`close`) - a task stops at
    its first failing entry.  Where the fork server cannot be had, or no thread can be started,
    the guests are made one at a time (:meth:`start` says False)."""

    def __init__(self, registry: reg.Registry, kept, create_run: CreateRun):
        self.registry, self.kept, self.create_run = registry, kept, create_run
        self.plans, self.index, self.outcomes, self.threads = [], {}, [], []
        self.handed = self.taken = 0  # the next plan a thread makes, the next one the caller takes
        self.stopped = False
        self.cond = threading.Condition()

    def __contains__(self, p: Plan) -> bool:
        return id(p) in self.index

    def start(self, plans: list) -> bool:
        """Begin making ``plans``' guests (the batch before, if any, is closed first)."""
        self.close()
        if not self.create_run.start_together([p.spec for p in plans]):
            return False
        self.plans, self.index = plans, {id(p): k for k, p in enumerate(plans)}
        self.outcomes, self.handed, self.taken, self.stopped = [None] * len(plans), 0, 0, False
        self.create_run.turns = Turns([p.spec.name for p in plans])
        for _slot in range(min(create_threads(), len(plans))):
            thread = threading.Thread(target=self._work, name="linuxns-create", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no thread to be had (a pids limit on the session): fewer make them
                break
            self.threads.append(thread)
        if not self.threads:
            self.plans, self.index, self.create_run.turns = [], {}, None
        return bool(self.threads)

    def _work(self) -> None:
        while True:
            with self.cond:
                if self.stopped or self.handed >= len(self.plans):
                    return
                k = self.handed
                self.handed += 1
            try:
                outcome = (True, apply(self.registry, self.plans[k], None, self.kept, self.create_run))
            except BaseException as exc:  # pylint: disable=broad-except  # raised again for its guest, in order
                outcome = (False, exc)
            finally:
                self.create_run.turns.over(self.plans[k].spec.name)  # reserved, or never will
            with self.cond:
                self.outcomes[k] = outcome
                self.stopped = self.stopped or not outcome[0]  # no new guest after a failure
                self.cond.notify_all()

    def take(self, p: Plan):
        """``p``'s record once its guest is made (what :func:`apply` returned), or what it raised."""
        k = self.index[id(p)]
        with self.cond:
            while self.outcomes[k] is None:
                if not any(t.is_alive() for t in self.threads):
                    raise GuestError("guest %r: the thread that made it ended without a result" % p.spec.name)
                self.cond.wait(1.0)
        self.taken = k + 1
        made, value = self.outcomes[k]
        if not made:
            raise value
        return value

    def close(self) -> None:
        """Wait for the guests under way; remove again each one made that the caller did not take
        (it stopped at an earlier guest's failure)."""
        with self.cond:
            self.stopped = True
        for thread in self.threads:
            thread.join()
        left = [(p, o) for p, o in zip(self.plans[self.taken:], self.outcomes[self.taken:]) if o is not None and o[0] and o[1] is not None]
        self.plans, self.index, self.outcomes, self.threads = [], {}, [], []
        if self.create_run is not None:
            self.create_run.turns = None
        for p, _outcome in left:
            if p.action != "create":  # another run made or changed it meanwhile: not this run's to remove
                continue
            name = p.spec.name
            try:
                with self.registry.lock(name):
                    remove(self.registry, name, self.registry.load(name), cgroup_run=p.spec.cgroup_run)
            except GuestError:
                pass  # it stays whole and recorded, and the next run reports it as there


def keep_definition(kept, spec: Spec, meta, check: bool = False) -> bool:
    """After a guest's successful run: its definition (persist.keep_guest) saved when it changed;
    a removed guest's marked absent (purge=true forgot it). ``check``: only say whether it would
    be written."""
    if kept is None or spec.name is None:
        return False
    if spec.state == "absent":
        return not spec.purge and persist.keep_absent(kept.table_dir, spec.name, check)
    return meta is not None and persist.keep_guest(kept.table_dir, meta, spec.state, check)


def apply_removals(registry: reg.Registry, plans, proc_index=None, kept=None):
    """Carry out consecutive removal plans as one batch; yields each plan when its guest is gone.

    Every guest's lock is taken first, exclusively and in name order (two batches never wait
    on each other in a circle), and each plan re-planned under it, as :func:`apply` does.
    Then the guests' processes are stopped and ONE sweep covers all their namespaces
    (guest_stop.stop_many: one /proc scan per round, not two or more per guest), their
    cgroups and pins are released together (guest_stop.release_many: the kernel's waits
    overlap), and their state is removed one by one, each plan yielded when its guest is
    gone; a guest whose release failed raises there, in order.  The locks are released when
    the generator ends (or is closed).
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
                thaw_to_remove(p.spec, meta)
                going[name] = meta
        stop_many(registry, list(going.values()), proc_index)
        failed = release_many(registry, going, {p.spec.name: p.spec.cgroup_run for p in plans if p.spec.name in going})
        for p in plans:
            name = p.spec.name
            try:
                if name in failed:
                    raise failed[name]
                if name in going:
                    forget(registry, name, going[name])
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
    parent = p.after.get("cgroup_parent") or default_cgroup_parent()
    view["cgroup"] = {"parent": parent, "paths": dict(cgroups.GuestCgroup.plan(p.spec.cgroup_run.layout(), parent, p.spec.name).paths)}
    return view


# ---------------------------------------------------------------------------------------
# state=frozen and signal_all: operations on an existing guest's cgroup, planned with the
# guest (plan_ops) and done after its creation or change, under its lock (apply_ops)
# ---------------------------------------------------------------------------------------
KILL_WAIT = 10.0  # seconds signal_all=SIGKILL waits for the killed processes to be gone


def _guest_cgroup(spec: Spec, meta: reg.GuestRecord, param: str) -> cgroups.GuestCgroup:
    cg = spec.cgroup_run.of(meta)
    if cg is None:
        raise InvalidInput("%s: guest %r has no cgroup of its own (a version without cgroups made it): remove it and create it"
                           " again to freeze it or signal all its processes" % (param, meta.name))
    return cg


def plan_ops(registry: reg.Registry, spec: Spec, p: Plan, meta) -> Plan:
    """Add to a present or frozen guest's plan what state=frozen (freeze; present: thaw) and
    signal_all would do.  A new or recreated guest is not frozen and has only its init.
    ``meta``: the guest's record, as :func:`plan` read it."""
    if spec.state == "absent" or spec.name is None:
        return p
    fresh = p.action in ("create", "recreate")
    now = meta is not None and meta.phase == reg.READY and enter.is_frozen(meta)
    want = spec.state == "frozen"
    if want != (False if fresh else now):
        p.freeze = want
    if want or now:  # shown only where freezing is involved: other guests' diffs stay as they were
        if p.before:
            p.before = dict(p.before, frozen=now)
        p.after = dict(p.after or {}, frozen=want)
    if not fresh and (want or spec.signal_all is not None):
        cg = _guest_cgroup(spec, meta, "signal_all" if spec.signal_all is not None else "state=frozen")
        if spec.signal_all is not None:
            p.signalled = [pid for pid in cg.pids() if pid != meta.init_pid]
    return p


def apply_ops(registry: reg.Registry, p: Plan, meta):
    """Thaw, signal_all, freeze (in that order) the guest ``meta`` that apply() made or kept."""
    if meta is None or p.spec.state == "absent" or (p.spec.state != "frozen" and p.freeze is None and p.spec.signal_all is None):
        return meta
    with registry.lock(meta.name):
        meta = registry.load(meta.name)
        if meta is None:
            return None
        want = p.spec.state == "frozen"
        now = enter.is_frozen(meta)
        p.freeze = want if want != now else None  # what this run does (another may have done it first)
        if p.freeze is None and p.spec.signal_all is None:
            return meta
        cg = _guest_cgroup(p.spec, meta, "signal_all" if p.spec.signal_all is not None else "state")
        if p.freeze is False:
            cg.thaw()
        if p.spec.signal_all is not None:
            p.signalled = signal_all(cg, meta, p.spec.signal_all)
        if p.freeze:
            cg.freeze()
        return meta


def signal_all(cg: cgroups.GuestCgroup, meta: reg.GuestRecord, sig) -> list:
    """Signal every process of the guest but its init; the pids signalled.

    SIGKILL: without an init, the kernel kills them all at once (cgroup.kill, or the freezer
    loop); with one, the guest is frozen while its processes are read and killed (nothing
    forks in between), then thawed (unless it was frozen before), and the killed processes
    are waited for (bounded).  Other signals go to each process once.
    """
    signum = cgroups.signal_number(sig)
    spare = (meta.init_pid,) if meta.init_pid else ()
    if signum != signal.SIGKILL:
        return cg.signal(signum, spare)
    if not spare:
        pids = cg.pids()
        if pids:
            cg.kill_all()
        return pids
    was_frozen = enter.is_frozen(meta)  # asked for (cgroup.freeze / freezer.state), even if still FREEZING
    if not was_frozen:
        cg.freeze()
    try:
        pids = cg.signal(signum, spare)
    finally:
        if not was_frozen:
            cg.thaw()
    deadline = time.monotonic() + KILL_WAIT
    while pids and set(pids) & set(cg.pids()) and time.monotonic() < deadline:
        time.sleep(0.005)
    return pids


def thaw_to_remove(spec: Spec, meta) -> None:
    """A frozen guest is thawed before it is stopped: its init must see the stop signal."""
    if meta is not None and meta.cgroup and enter.is_frozen(meta):
        spec.cgroup_run.of(meta).thaw()
