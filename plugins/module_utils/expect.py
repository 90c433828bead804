# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""namespace_info's ``expect``: would these tasks change anything on this host?

``expect`` holds the arguments of a namespace_create, a namespace_mount and a netns_link
task (any of them; ``state_dir`` is namespace_info's own). Each is validated against that
module's own argument spec and rules (create_task.py, mount_task.py, link_task.py, the specs
the modules are built from), then run through the module's own body in check mode. So the
answer is, to the field, what a check-mode run of each module would report - and a drift
check needs one module call for the three, in one process that reads the guests' records
once per body instead of once per call.

All the arguments are validated before anything is read: a mistake in the last task's
arguments fails the call naming it (``expect.netns_link: ...``) before the first task is
checked. An error of a body names its task the same way.
"""

from __future__ import annotations

from ansible_collections.linuxns.guests.plugins.module_utils import create_task, link_task, mount_task
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, InvalidInput
from ansible_collections.linuxns.guests.plugins.module_utils.list_forms import task_params

# In the order they run, which is the order the guest role runs them: namespaces, mounts, links.
TASKS = (("namespace_create", create_task), ("namespace_mount", mount_task), ("netns_link", link_task))


def _params(name: str, task, args) -> dict:
    where = "expect.%s" % name
    if isinstance(args, dict) and "state_dir" in args:
        raise InvalidInput("%s.state_dir: every task of expect is checked in namespace_info's own state_dir; give it there" % where)
    return task_params(task.OPTIONS, task.RULES, args, where, name)


def check(registry, expect: dict, with_diff: bool, warn) -> dict:
    """``{"changed": bool, NAME: the result of module NAME in check mode}`` for every task
    ``expect`` gives (``expect`` as namespace_info's argument spec typed it); the bodies'
    warnings go to ``warn(text)``."""
    known = [name for name, _task in TASKS]
    unknown = sorted(map(str, set(expect) - set(known)))
    if unknown:
        raise InvalidInput("expect: unknown key(s) %s; the keys are %s" % (", ".join(unknown), ", ".join(known)))
    todo = [(name, task, _params(name, task, expect[name])) for name, task in TASKS if expect.get(name) is not None]
    if not todo:
        raise InvalidInput("expect: give the options of at least one of %s" % ", ".join(known))
    out = {"changed": False}
    for name, task, params in todo:
        try:
            res = task.body(params, registry, True, with_diff, lambda text, name=name: warn("expect.%s: %s" % (name, text)))
        except GuestError as exc:
            raise exc.with_prefix("expect.%s: " % name) from None
        out[name] = res
        out["changed"] = out["changed"] or bool(res.get("changed"))
    return out
