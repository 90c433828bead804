# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection shares: the common argument spec and
the one place that turns helper errors into ``fail_json``.

Modules pass their AnsibleModule in.  From Ansible this file imports only
``ansible.module_utils.common.arg_spec`` (the validator top-level options go
through), so that list entries are validated exactly like top-level options.
"""

from __future__ import annotations

import traceback

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.validation import check_type_bool

from ansible_collections.linuxns.guests.plugins.module_utils import model
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, InvalidInput
from ansible_collections.linuxns.guests.plugins.module_utils.registry import DEFAULT_STATE_DIR, Registry

COMMON_ARGS = {
    "state_dir": {"type": "path", "default": DEFAULT_STATE_DIR},
}


def common_args(**more) -> dict:
    spec = dict(COMMON_ARGS)
    spec.update(more)
    return spec


def check_dir(value, param: str) -> str:
    """A folder option (state_dir): absolute, no NUL or control character (table_dir: persist)."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise InvalidInput("%s %r must be an absolute path" % (param, value))
    model.check_text(value, param)
    return value


def registry_for(module) -> Registry:
    return Registry(check_dir(module.params["state_dir"], "state_dir"))


def new_module(factory, **kwargs):
    """``factory(**kwargs)`` (an AnsibleModule), failing cleanly where ansible-core's
    type checks let an OverflowError through (an int option given inf, a float
    option given an integer too large for a float): the module is made again
    with its number options untyped, and fails naming them."""
    try:
        return factory(**kwargs)
    except OverflowError as exc:
        spec = kwargs["argument_spec"]
        numbers = [k for k, v in spec.items() if v.get("type") in ("int", "float")]
        relaxed = {k: dict(v, type="raw") if k in numbers else v for k, v in spec.items()}
        module = factory(**dict(kwargs, argument_spec=relaxed))
        bad = [k for k in numbers if isinstance(module.params.get(k), (int, float)) and not model.finite_and_small(module.params[k])]
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


_VALIDATORS = {}


def _validator(key: str, spec: dict) -> ArgumentSpecValidator:
    """A validator of one option (cached: the same spec is used for every entry)."""
    cache_key = (key, repr(sorted(spec.items())))
    found = _VALIDATORS.get(cache_key)
    if found is None:
        found = _VALIDATORS[cache_key] = ArgumentSpecValidator({key: spec})
    return found


def entry_spec(argument_spec: dict, keys) -> dict:
    """The argument spec of one list entry: the options ``keys`` of a module's
    spec without defaults or aliases (the task's top-level options are the
    entries' defaults), sub-options likewise."""
    out = {}
    for key in keys:
        spec = {k: v for k, v in argument_spec[key].items() if k not in ("default", "aliases")}
        if "options" in spec:
            spec["options"] = entry_spec(spec["options"], spec["options"])
        out[key] = spec
    return out


def validate_entry(entry: dict, spec: dict, where: str, fields=()) -> dict:
    """Convert and check one entry's options against ``spec`` (an argument spec
    without defaults), option by option so that a message names its path
    (``guests[3].context_id: ...``); then the class checks of ``fields``
    (NUL/control characters, finite bounds).  Returns the converted entry."""
    by_name = {f.name: f for f in fields}
    out = {}
    for key, value in entry.items():
        if key.startswith("_") or value is None or key not in spec:  # unknown keys: the caller names them
            out[key] = value
            continue
        try:
            result = _validator(key, spec[key]).validate({key: value})
        except OverflowError as exc:  # ansible-core's int()/float() of inf or a huge int
            raise InvalidInput("%s%s: %r is out of range (%s)" % (where, key, value, exc)) from None
        if result.error_messages:
            raise InvalidInput("%s%s: %s" % (where, key, result.error_messages[0]))
        out[key] = result.validated_parameters[key]
        if key in by_name:
            model.check_value(by_name[key], out[key], where + key)
    return out


def entries(params: dict, list_key: str, spec: dict, own_key: str, fields=()) -> list:
    """The entries of a module's list form (``guests:``, ``mounts:``...), each
    validated against ``spec`` (the argument spec of one entry, no defaults).

    Each item is a dict of per-entry options, or a plain string meaning its
    ``own_key`` (a guest name, a mount path).  The task's top-level options
    are defaults for every entry (``own_key`` excepted).  An unknown key fails
    naming the entry; so does a value of the wrong type or out of bounds.
    """
    keys = tuple(spec)
    defaults = {k: params[k] for k in keys if k != own_key and params.get(k) is not None}
    out = []
    for i, item in enumerate(params[list_key]):
        where = "%s[%d]" % (list_key, i)
        if isinstance(item, (str, int)) and not isinstance(item, bool):
            item = {own_key: str(item)}
        elif not isinstance(item, dict):
            raise InvalidInput("%s must be a dict of options or a %s, not %s" % (where, own_key, type(item).__name__))
        unknown = sorted(map(str, set(item) - set(keys)))
        if unknown:
            raise InvalidInput("%s: unknown option(s) %s; per-entry options are %s" % (where, ", ".join(unknown), ", ".join(keys)))
        entry = dict(defaults)
        entry.update({k: v for k, v in item.items() if v is not None})
        entry = validate_entry(entry, spec, where + ".", fields)
        entry["_in_list"] = True
        out.append(entry)
    return out


def to_bool(value, default: bool, param: str) -> bool:
    """ansible-core's boolean parsing, for values that do not come through an argument spec."""
    if value is None:
        return default
    try:
        return check_type_bool(value)
    except TypeError:
        raise InvalidInput("%s must be a boolean, not %r" % (param, value)) from None


def single_entry(params: dict, fields) -> dict:
    """The single form's one entry (top-level options already typed by
    AnsibleModule), through the same class checks as a list entry."""
    entry = {f.name: params.get(f.name) for f in fields}
    for f in fields:
        model.check_value(f, entry[f.name], f.name)
    return entry


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
