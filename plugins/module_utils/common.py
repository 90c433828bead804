# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection shares: the common argument spec and
the one place that turns helper errors into ``fail_json``.

Modules pass their AnsibleModule in; this file imports nothing from Ansible.
The list forms (``guests:``, ``mounts:``, ``links:``) are in list_forms.py.
"""

from __future__ import annotations

import gc
import traceback

from ansible_collections.linuxns.guests.plugins.module_utils import checks
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError
from ansible_collections.linuxns.guests.plugins.module_utils.registry import DEFAULT_STATE_DIR, Registry

GC_YOUNG = 100_000  # new objects between two runs of the cyclic garbage collector (new_module)

COMMON_ARGS = {
    "state_dir": {"type": "path", "default": DEFAULT_STATE_DIR},
}


def common_args(**more) -> dict:
    spec = dict(COMMON_ARGS)
    spec.update(more)
    return spec


def registry_for(module) -> Registry:
    return Registry(checks.check_dir(module.params["state_dir"], "state_dir", DEFAULT_STATE_DIR))


def new_module(factory, **kwargs):
    """``factory(**kwargs)`` (an AnsibleModule), failing cleanly where ansible-core's
    type checks let an OverflowError through (an int option given inf, a float
    option given an integer too large for a float): the module is made again
    with its number options untyped, and fails naming them.

    CPython's cyclic garbage collector runs every ``GC_YOUNG`` new objects instead of
    every 700 from here to the module's end. A task of many guests holds tens of
    objects per guest (its specs, records, netlink answers, results) until it returns,
    and each collection walked the young ones and, every tenth, all of them again:
    16 % of a 10,000-guest no-change rerun of netns_link in-process, 9 % of
    namespace_create's (bench/module_main.py; the collector off altogether gained no
    more). It is not turned off: a pyroute2 socket, closed, leaves ~34 KB of
    reference cycles, which the collector still frees."""
    gc.set_threshold(GC_YOUNG, 10, 10)
    try:
        return factory(**kwargs)
    except OverflowError as exc:
        spec = kwargs["argument_spec"]
        numbers = [k for k, v in spec.items() if v.get("type") in ("int", "float")]
        relaxed = {k: dict(v, type="raw") if k in numbers else v for k, v in spec.items()}
        module = factory(**dict(kwargs, argument_spec=relaxed))
        bad = [k for k in numbers if isinstance(module.params.get(k), (int, float)) and not checks.finite_and_small(module.params[k])]
        module.fail_json(msg="%s: %s is out of range (%s)" % (
            ", ".join(bad) or "a number option", " / ".join(repr(module.params[k]) for k in bad) or "a value", exc))
    return None  # not reached: fail_json exits


def run_module(module, body) -> None:
    """Call ``body(module)`` -> result dict; translate helper errors into fail_json.

    A GuestError becomes a clean ``msg`` (no traceback); anything else is a bug
    and is reported with its traceback in ``exception``.
    """
    try:
        result = body(module)
    except GuestError as exc:
        extra = {k: v for k, v in getattr(exc, "details", {}).items() if k in ("results", "guests", "guest", "diff")}
        module.fail_json(msg=exc.msg, **extra)
    except Exception as exc:
        module.fail_json(msg="internal error in linuxns.guests: %s: %s" % (type(exc).__name__, exc), exception=traceback.format_exc())
    module.exit_json(**result)


def task_main(factory, task) -> None:
    """The whole main() of a module whose options, rules and body are a module_utils ``task``
    (create_task, mount_task, link_task): ``factory`` is AnsibleModule."""
    module = new_module(factory, argument_spec=common_args(**task.OPTIONS), supports_check_mode=True, **task.RULES)
    run_module(module, lambda m: task.body(m.params, registry_for(m), m.check_mode, m._diff, m.warn))
