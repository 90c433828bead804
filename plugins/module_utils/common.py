# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection shares: the common argument spec and
the one place that turns helper errors into ``fail_json``.

This file imports nothing from Ansible: modules pass their AnsibleModule in.
"""

from __future__ import annotations

import traceback

from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, InvalidInput
from ansible_collections.linuxns.guests.plugins.module_utils.registry import DEFAULT_STATE_DIR, Registry

COMMON_ARGS = {
    "state_dir": {"type": "path", "default": DEFAULT_STATE_DIR},
}


def common_args(**more) -> dict:
    spec = dict(COMMON_ARGS)
    spec.update(more)
    return spec


def registry_for(module) -> Registry:
    return Registry(module.params["state_dir"])


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


def list_entries(params: dict, list_key: str, keys, own_key: str) -> list:
    """The entries of a module's list form (``guests:``, ``mounts:``...).

    Each item is a dict of per-entry options, or a plain string meaning its
    ``own_key`` (a guest name, a mount path).  The task's top-level options
    are defaults for every entry (``own_key`` excepted).  An unknown key fails
    naming the entry.
    """
    defaults = {k: params[k] for k in keys if k != own_key and params.get(k) is not None}
    entries = []
    for i, item in enumerate(params[list_key]):
        if not isinstance(item, dict):
            item = {own_key: str(item)}
        unknown = sorted(set(item) - set(keys))
        if unknown:
            raise InvalidInput("%s[%d]: unknown option(s) %s; per-entry options are %s" % (list_key, i, ", ".join(unknown), ", ".join(keys)))
        entry = dict(defaults)
        entry.update({k: v for k, v in item.items() if v is not None})
        entry["_in_list"] = True
        entries.append(entry)
    return entries


def batch_result(out: dict, listed: bool, list_key: str, item_key: str, with_diff: bool) -> dict:
    """A module result from a batch engine's ``{"changed", "results", "diff"}``.

    The list form returns every result under ``list_key`` and the whole diff;
    the single form returns the one item under ``item_key`` with its action.
    """
    result = {"changed": out["changed"]}
    if with_diff:
        if listed:
            result["diff"] = out["diff"]
        else:
            result["diff"] = {side: next(iter(out["diff"][side].values()), {}) for side in ("before", "after")}
    if listed:
        result[list_key] = out["results"]
    else:
        result[item_key] = out["results"][0][item_key]
        result["action"] = out["results"][0]["action"]
    return result
