# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin ``linuxns.guests.guest_deploy``: the guest role's steps in one task.

The role (roles/guest) hands its inputs (``guests``: its guest_list, with the state, the roots
folder and the bridge) to this plugin, which runs on the controller: it plans them with the
``guest_plan`` filter's own function first (bad input fails before any module call; ``plan``
takes a plan the filter made instead), then calls the collection's modules - their list forms,
one call for all the host's guests where it can - in the order the role's tasks used to:

1. stop (guests whose state is stopped, restarted or absent): namespace_info (only when a
   service has a stop command), guest_enter_exec of the stop commands, then one
   namespace_create ``state: absent`` call for the stopping guests, in reverse order -
   absent guests' entries carry ``purge`` (their kept files go in the same call);
2. start (started and restarted guests): the roots script (roles/guest/files/guest_roots.py,
   run with the target's Python), namespace_create, namespace_mount, netns_link;
3. purge: the root folders of absent guests (``purge_root``).

namespace_create, the step that takes long when guests are made, goes in waves (a guest
sharing a listed guest's namespace comes after it) and batches, with a progress line per
batch. A real run first asks one namespace_info call (``expect``: namespace_create,
namespace_mount and netns_link, each in its own check mode; and ``services``) about all the
guests: what it shows would not change is not called (the no-change rerun is that call and
the roots script). When the roots script found none of the starting guests' root folders, the
guests are new and the question is skipped: the steps run at once, and one with nothing to do
reports no change as it would have after the question. Check mode runs the steps as the role
always did (namespace_info, then every batch in check mode, a new guest predicted without its
root and shares), so that check mode and ``--diff`` predict the real run exactly; the modules'
diffs are returned as a list.

The result: ``changed``, ``steps`` (what each module call reported: step, changed,
guests, and the call's wall time on the controller in seconds), ``guests`` (namespace_create's per-guest results of the start step), ``ready``
(the started guests that exist now - in check mode without those only predicted) and
``services`` (the init-less services of the ready guests grouped by name, argv and stop, with
``cmd``, the shell that starts one unless it runs - services.script; the restore service runs
the same at boot) and ``services_to_start`` (those groups with only the guests where one
namespace_info ``services`` call - a check from the host, no guest entered - did not find the
service running: the role runs ``cmd`` with guest_enter_exec there, one loop item per group; a
no-change rerun has none and skips that task).
"""

from __future__ import annotations

import json
import shlex
import time

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.linuxns.guests.plugins.filter import guest_plan
from ansible_collections.linuxns.guests.plugins.module_utils import services

display = Display()

NS = "linuxns.guests."
# The options, as plugins/modules/guest_deploy.py documents them (validated with ansible-core's
# ArgumentSpecValidator: a wrong type or an unknown option fails the task naming it).
ARGUMENT_SPEC = {
    "guests": {"type": "list", "elements": "dict"},
    "state": {"type": "str", "default": "started"},
    "roots_dir": {"type": "path", "default": "/var/lib/linuxns/roots"},
    "bridge": {"type": "str", "default": "linuxns0"},
    "plan": {"type": "list", "elements": "dict"},
    "state_dir": {"type": "path", "default": "/run/linuxns"},
    "table_dir": {"type": "path", "default": "/etc/linuxns/guests"},
    "busybox": {"type": "path", "default": "/bin/busybox"},
    "recreate": {"type": "bool", "default": False},
    "batch_size": {"type": "int", "default": 0},
    "purge_root": {"type": "bool", "default": False},
    "userns_pool": {"type": "str"},
    "service_dir": {"type": "str", "default": services.DEFAULT_PID_DIR},
    "service_check_delay": {"type": "float", "default": services.DEFAULT_CHECK_DELAY},
}
ROOTS_SCRIPT = "guest_roots.py"
NOT_YET = ("create", "recreate")


class Step(Exception):
    """A module call failed: its result, with the step named in ``msg``."""

    def __init__(self, result: dict):
        super().__init__(result.get("msg"))
        self.result = result


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    # -- plumbing ----------------------------------------------------------------------
    def _args(self) -> dict:
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC, mutually_exclusive=[("guests", "plan")],
                                                        required_one_of=[("guests", "plan")])
        if args["batch_size"] < 0:
            raise AnsibleActionFail("guest_deploy: batch_size must be 0 (one batch per wave) or more, not %d" % args["batch_size"])
        return args

    def _call(self, step: str, module: str, module_args: dict, guests: int) -> dict:
        """One module call; a failure ends the task with the step named; else its result is noted."""
        self._t0 = time.monotonic()
        res = self._execute_module(module_name=NS + module, module_args=module_args, task_vars=self._vars)
        res.pop("invocation", None)
        if res.get("failed") or res.get("unreachable"):
            res["msg"] = "%s (%s): %s" % (step, NS + module, res.get("msg", "failed"))
            raise Step(res)
        self._note(step, res, guests)
        return res

    def _note(self, step: str, res: dict, guests: int) -> None:
        changed = bool(res.get("changed"))
        self._steps.append({"step": step, "changed": changed, "guests": guests, "seconds": round(time.monotonic() - self._t0, 3)})
        self._changed = self._changed or changed
        diff = res.get("diff")
        if diff and self._task.diff:
            self._diffs.extend(diff if isinstance(diff, list) else [diff])

    def _roots(self, step: str, request: dict, guests: int) -> dict:
        """The role's roots script (files/guest_roots.py) with the target's Python; it honours check mode itself."""
        script = self._loader.get_real_file(self._find_needle("files", ROOTS_SCRIPT))
        with open(script, encoding="utf-8") as f:
            source = f.read()
        python = self._templar.template(self._vars.get("ansible_python_interpreter") or "/usr/bin/python3")
        cmd = "%s -c %s" % (shlex.quote(python), shlex.quote(source))
        request = dict(request, check=bool(self._task.check_mode))
        self._t0 = time.monotonic()
        res = self._low_level_execute_command(cmd, in_data=json.dumps(request), sudoable=True)
        try:
            out = json.loads(res.get("stdout") or "")
        except ValueError:
            out = None
        if res.get("rc") != 0 or not isinstance(out, dict):
            raise Step({"failed": True, "rc": res.get("rc"), "stdout": res.get("stdout"), "stderr": res.get("stderr"),
                        "msg": "%s (%s): %s" % (step, ROOTS_SCRIPT, to_text(res.get("stderr") or res.get("stdout") or "failed").strip()[-2000:])})
        self._note(step, {"changed": bool(out.get("changed"))}, guests)
        return out

    # -- steps -------------------------------------------------------------------------
    def _stop(self, plan: list, args: dict) -> None:
        stopping = [g for g in plan if g["state"] in guest_plan.STOPPING]
        if not stopping:
            return
        groups = [s for s in guest_plan.service_groups(stopping) if s.get("stop")]
        if groups:
            info = self._call("list the guests the host has", "namespace_info", {"state_dir": args["state_dir"]}, len(stopping))
            have = {g["name"] for g in info.get("guests") or []}
            for group in guest_plan.service_groups([g for g in stopping if g["name"] in have]):
                if group.get("stop"):
                    self._call("stop command of service %s" % group["name"], "guest_enter_exec",
                               {"guests": group["guests"], "argv": group["stop"], "state_dir": args["state_dir"]}, len(group["guests"]))
                    self._changed = True  # as the role's stop commands task always reported
                    self._steps[-1]["changed"] = True
        entries = [{"name": g["name"], "purge": g["state"] == "absent"} for g in reversed(stopping)]
        self._call("stop the guests", "namespace_create",
                   {"guests": entries, "state": "absent", "state_dir": args["state_dir"], "table_dir": args["table_dir"]}, len(entries))

    def _common(self, args: dict) -> dict:
        """namespace_create's options common to every entry."""
        common = {"recreate": args["recreate"], "state": "present", "state_dir": args["state_dir"], "table_dir": args["table_dir"]}
        if args["userns_pool"]:
            common["userns_pool"] = args["userns_pool"]
        return common

    def _create(self, starting: list, args: dict) -> list:
        """namespace_create for the starting guests, in waves and batches; their per-guest results."""
        common = self._common(args)
        entries = {g["name"]: g["create"] for g in starting}
        if self._task.check_mode:
            known = self._call("list the guests the host has (check mode)", "namespace_info", {"state_dir": args["state_dir"]}, len(starting))
            entries = {e["name"]: e for e in guest_plan.check_entries(list(entries.values()), known.get("guests") or [])}
        out = []
        for call in guest_plan.waves(starting, args["batch_size"]):
            res = self._call("create the guests' namespaces (wave %d, batch %d/%d)" % (call["wave"], call["batch"], call["batches"]),
                             "namespace_create", dict(common, guests=[entries[n] for n in call["guests"]]), len(call["guests"]))
            out.extend(res.get("guests") or [])
            if call["batches"] > 1 or len(starting) >= 50:
                display.display("[%s] wave %d, batch %d/%d: %d guest(s)%s" % (
                    self._host_name, call["wave"], call["batch"], call["batches"], len(call["guests"]), " - changed" if res.get("changed") else ""))
        return out

    def _probe(self, starting: list, args: dict) -> dict:
        """One namespace_info call: would namespace_create, namespace_mount and netns_link change anything
        for the starting guests (its ``expect``: each module's own check mode, whose ``definitions``
        lists guests whose kept definition a real run would save), and which services run.

        The no-change rerun's whole answer in one call. Returns what it settles: ``guests``
        (namespace_create's per-guest results) when no guest would change; with it ``mounts`` and
        ``links`` (True) when those would not change either, and ``services`` (namespace_info's
        answer) when nothing at all would. An empty dict when a guest would change or the call
        fails: the steps then run one by one (and report the error)."""
        names = {g["name"] for g in starting}
        create = dict(self._common(args), guests=[g["create"] for g in starting])
        del create["state_dir"]  # namespace_info's own
        want = {"namespace_create": create}
        mounts = guest_plan.mount_entries(starting, names)
        if mounts:
            want["namespace_mount"] = {"guests": mounts, "table_dir": args["table_dir"]}
        links = [link for g in starting for link in g["links"]]
        if links:
            want["netns_link"] = {"links": links}
        asked = self._asked(guest_plan.service_groups(starting), set())
        module_args = {"expect": want, "state_dir": args["state_dir"]}
        if asked:
            module_args.update(services=asked, service_dir=args["service_dir"])
        self._t0 = time.monotonic()
        res = self._execute_module(module_name=NS + "namespace_info", module_args=module_args, task_vars=self._vars)
        expect = res.get("expect") or {}
        created = expect.get("namespace_create") or {}
        guests = created.get("guests") or []
        if (res.get("failed") or created.get("changed") or created.get("definitions") or len(guests) != len(starting)
                or any(g.get("action") != "none" for g in guests)):
            # something to do or to report (or a kept definition to save): the steps do it
            settled, answer = {}, "it failed, the steps report why" if res.get("failed") else "guests to make or change"
        else:
            mounts = expect.get("namespace_mount") or {}
            linked = expect.get("netns_link") or {}
            settled = {"guests": guests, "mounts": not mounts.get("changed"), "links": not (linked.get("changed") or linked.get("definitions"))}
            if not expect.get("changed") and settled["links"] and len(res.get("services") or []) == len(asked):
                settled["services"] = res.get("services") or []
            answer = "nothing to change" if "services" in settled else "mounts or links to change"
        self._note("check the guests' namespaces, mounts, links%s (one call: %s)" % (" and services" if asked else "", answer),
                   {"changed": False}, len(starting))
        return settled

    def _start(self, plan: list, args: dict) -> None:
        starting = [g for g in plan if g["state"] in guest_plan.STARTING]
        if not starting:
            return
        rooted = [g for g in starting if g.get("root")]
        new_roots = set()
        if rooted:
            built = self._roots("build busybox roots and write the guests' files", {"busybox": args["busybox"], "roots": rooted}, len(rooted))
            new_roots = set(built.get("missing_roots") or [])
        # A real run asks one question first; check mode runs the steps, so that it predicts them exactly.
        # When no starting guest had a root folder before this run, the guests are new: the steps run
        # at once (the question would have said that each has work; one that has none reports no change).
        fresh = {g["name"] for g in starting} <= new_roots
        settled = {} if self._task.check_mode or fresh else self._probe(starting, args)
        created = settled["guests"] if settled else self._create(starting, args)
        self._result["guests"] = created
        ready = {g["name"] for g in created if not (self._task.check_mode and g.get("action") in NOT_YET)}
        live = [g for g in starting if g["name"] in ready]
        mounts = guest_plan.mount_entries(live, ready)
        if mounts and not settled.get("mounts"):
            self._call("mount what the guests' tables list", "namespace_mount",
                       {"guests": mounts, "table_dir": args["table_dir"], "state_dir": args["state_dir"]}, len(mounts))
        links = [link for g in live for link in g["links"]]
        if links and not settled.get("links"):
            self._call("links, addresses and routes of the guests", "netns_link", {"links": links, "state_dir": args["state_dir"]}, len(live))
        self._result["ready"] = [g["name"] for g in live]
        groups = guest_plan.service_groups(live)
        for group in groups:  # the start script, services.py's (the restore service runs the same at boot)
            group["cmd"] = services.script(dict(group, pid_dir=args["service_dir"]), self._task.check_mode, args["service_check_delay"])
        self._result["services"] = groups
        fresh = {g["name"] for g in created if g.get("action") in NOT_YET}
        if "services" in settled:
            self._result["services_to_start"] = self._to_start(groups, settled["services"], fresh)
        else:
            self._result["services_to_start"] = self._services(groups, fresh, args)

    def _services(self, groups: list, fresh: set, args: dict) -> list:
        """The service groups reduced to the guests where the service does not run: one
        namespace_info call checks them all from the host (module_utils/services.py, the
        same test as the role's service shell), so only those guests are entered.  Guests
        namespace_create just made (``fresh``) are not asked about: the shell checks them."""
        asked = self._asked(groups, fresh)
        if not any(s["guests"] for s in asked):
            return groups
        res = self._call("check the services of the guests (one pass, no guest entered)", "namespace_info",
                         {"services": asked, "service_dir": args["service_dir"], "state_dir": args["state_dir"]},
                         sum(len(s["guests"]) for s in asked))
        return self._to_start(groups, res.get("services") or [], fresh)

    @staticmethod
    def _asked(groups: list, fresh: set) -> list:
        """namespace_info's ``services``: each group's name, argv and guests, but those ``fresh``."""
        return [{"name": s["name"], "argv": s["argv"], "guests": [g for g in s["guests"] if g not in fresh]} for s in groups]

    @staticmethod
    def _to_start(groups: list, checked: list, fresh: set) -> list:
        """``groups`` with only the guests where namespace_info's ``checked`` (one answer per
        group) did not find the service running, or that are ``fresh``; all of them when
        there is not an answer for every group."""
        if len(checked) != len(groups):
            return groups  # not an answer for every group: enter all their guests, as before
        out = []
        for group, seen in zip(groups, checked):
            enter = set(seen.get("enter", group["guests"])) | fresh
            todo = [g for g in group["guests"] if g in enter]
            if todo:
                out.append(dict(group, guests=todo))
        return out

    def _purge(self, plan: list, args: dict) -> None:
        gone = [g for g in plan if g["state"] == "absent" and g.get("root")]
        if args["purge_root"] and gone:
            self._roots("remove the root folders of absent guests", {"purge": gone}, len(gone))

    def run(self, tmp=None, task_vars=None):
        self._result = super().run(tmp, task_vars)
        self._vars = task_vars or {}
        self._host_name = self._vars.get("inventory_hostname", "?")
        self._steps, self._diffs, self._changed = [], [], False
        self._t0 = time.monotonic()
        args = self._args()
        try:  # the role's inputs are planned here, before any module call: bad input changes nothing
            plan = args["plan"] if args["plan"] is not None else guest_plan.plan(
                args["guests"], state=args["state"], roots_dir=args["roots_dir"], bridge=args["bridge"], service_dir=args["service_dir"])
        except guest_plan.GuestPlanError as exc:
            return dict(self._result, failed=True, changed=False, msg=str(exc), steps=[])  # no module call made
        self._result.update({"guests": [], "ready": [], "services": [], "services_to_start": []})
        try:
            self._stop(plan, args)
            self._start(plan, args)
            self._purge(plan, args)
        except Step as exc:
            self._result.update(exc.result)
            self._result["failed"] = True
        except guest_plan.GuestPlanError as exc:
            raise AnsibleActionFail(str(exc)) from None
        self._result["changed"] = self._changed
        self._result["steps"] = self._steps
        if self._diffs:
            self._result["diff"] = self._diffs
        return self._result
