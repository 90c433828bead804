# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules' list forms (``guests:``, ``mounts:``, ``links:``): one entry's argument
spec, the one normaliser of every list form (:func:`entries`), the single form's entry,
and the result of a batch engine.

Apart from common.py so that a module without a list form of entries (guest_enter_exec)
does not ship it: ansible-core parses every module_utils file a module imports when it
builds the module's payload, on the controller, for each ad hoc run
(bench/bench_ansiballz.py).  From Ansible this file imports only
``ansible.module_utils.common.arg_spec`` (the validator top-level options go through), so
that list entries are validated exactly like top-level options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ansible_collections.linuxns.guests.plugins.module_utils import checks
from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput

if TYPE_CHECKING:  # imported where used: the engines run on hosts without ansible-core too (supervisor.py)
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator


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


class EntryValidator:
    """Converts and checks the entries of one list form against ``spec`` (the
    argument spec of one entry, no defaults) with ansible-core's own validator,
    then runs the class checks of ``fields`` (NUL/control characters, finite
    bounds).

    It keeps one ArgumentSpecValidator per set of option names an entry gives
    (a list repeats a few shapes), so an entry is one validation.  When an
    entry fails, its options are validated one at a time, so that the message
    names the path (``guests[3].context_id: ...``).
    """

    def __init__(self, spec: dict, fields=()) -> None:
        self.spec = spec
        self.fields = {f.name: f for f in fields}
        self._validators = {}

    def _validator(self, keys: frozenset) -> ArgumentSpecValidator:
        found = self._validators.get(keys)
        if found is None:
            from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

            found = self._validators[keys] = ArgumentSpecValidator({k: self.spec[k] for k in keys})
        return found

    def validate(self, entry: dict, where: str) -> dict:
        """``entry`` with its options converted; keys the spec does not know, keys
        starting with ``_`` and None values are passed through as they are."""
        given = {k: v for k, v in entry.items() if v is not None and k in self.spec and not k.startswith("_")}
        out = dict(entry)
        if not given:
            return out
        try:
            result = self._validator(frozenset(given)).validate(given)
        except OverflowError:  # ansible-core's int()/float() of inf or a huge int
            result = None
        if result is None or result.error_messages:
            self._fail(given, where, result)
        for key in given:
            out[key] = result.validated_parameters[key]
            if key in self.fields:
                checks.check_value(self.fields[key], out[key], where + key)
        return out

    def _fail(self, given: dict, where: str, result) -> None:
        """Raise InvalidInput naming the first option of ``given`` that fails alone."""
        for key, value in given.items():
            try:
                alone = self._validator(frozenset((key,))).validate({key: value})
            except OverflowError as exc:
                raise InvalidInput("%s%s: %r is out of range (%s)" % (where, key, value, exc)) from None
            if alone.error_messages:
                raise InvalidInput("%s%s: %s" % (where, key, alone.error_messages[0]))
        raise InvalidInput("%s: %s" % (where.rstrip(".") or "options", result.error_messages[0] if result else "out of range"))


def _with_defaults(own: dict, defaults: dict, spec: dict, exclusive) -> dict:
    """One entry: the task's ``defaults`` overlaid by the entry's ``own`` options.

    An option with sub-options (netns_link's ``peer``) merges one level: the
    entry's sub-options over the task's.  An entry that gives an option of an
    ``exclusive`` group (``guest``/``netns``) drops the task's others of that group.
    """
    entry = dict(defaults)
    for group in exclusive:
        if any(own.get(k) is not None for k in group):
            for k in group:
                entry.pop(k, None)
    for key, value in own.items():
        top = entry.get(key)
        if isinstance(value, dict) and isinstance(top, dict) and "options" in spec.get(key, {}):
            value = dict(top, **{k: v for k, v in value.items() if v is not None})
        entry[key] = value
    return entry


def entries(params: dict, list_key: str, spec: dict, own_key=None, fields=(), exclusive=(), prefix: str = "") -> list:
    """The entries of a module's list form (``guests:``, ``mounts:``, ``links:``),
    each validated against ``spec`` (the argument spec of one entry, no defaults):
    the one normaliser of every list form.

    Each item is a dict of per-entry options or, where the list has an
    ``own_key``, a plain string meaning it (a guest name, a mount path).  The
    task's top-level options are defaults for every entry (``own_key``
    excepted), validated once per list; see :func:`_with_defaults` for
    sub-options and ``exclusive`` groups.  An unknown key fails naming the
    entry (``prefix`` + ``mounts[1]``: a list inside another list's entry);
    so does a value of the wrong type or out of bounds.  A bad top-level
    option is named as the task gave it.
    """
    keys = tuple(spec)
    check = EntryValidator(spec, fields)
    defaults = check.validate({k: params[k] for k in keys if k != own_key and params.get(k) is not None}, "")
    out = []
    for i, item in enumerate(params[list_key]):
        where = "%s%s[%d]" % (prefix, list_key, i)
        if own_key and isinstance(item, (str, int)) and not isinstance(item, bool):
            item = {own_key: str(item)}
        elif not isinstance(item, dict):
            raise InvalidInput("%s must be a dict of options%s, not %s" % (
                where, " or a " + own_key if own_key else "", type(item).__name__))
        unknown = sorted(map(str, set(item) - set(keys)))
        if unknown:
            raise InvalidInput("%s: unknown option(s) %s; per-entry options are %s" % (where, ", ".join(unknown), ", ".join(keys)))
        own = check.validate({k: v for k, v in item.items() if v is not None}, where + ".")
        entry = _with_defaults(own, defaults, spec, exclusive)
        entry["_in_list"] = True
        out.append(entry)
    return out


def task_params(spec: dict, rules: dict, args, where: str, module: str) -> dict:
    """``args``, the options of a whole task of ``module``, typed and checked against its argument
    ``spec`` and ``rules`` (mutually_exclusive, required_one_of, ...) as AnsibleModule would; a
    mistake fails naming ``where`` (namespace_info's ``expect.MODULE``)."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    if not isinstance(args, dict):
        raise InvalidInput("%s must be a dict of %s's options, not %s" % (where, module, type(args).__name__))
    try:
        result = ArgumentSpecValidator(spec, **rules).validate(dict(args))
    except OverflowError as exc:  # ansible-core's int()/float() of inf or a huge int
        raise InvalidInput("%s: a number is out of range (%s)" % (where, exc)) from None
    if result.error_messages:
        raise InvalidInput("%s: %s" % (where, result.error_messages[0]))
    return result.validated_parameters


def to_bool(value, default: bool, param: str) -> bool:
    """ansible-core's boolean parsing, for values that do not come through an argument spec."""
    if value is None:
        return default
    from ansible.module_utils.common.validation import check_type_bool

    try:
        return check_type_bool(value)
    except TypeError:
        raise InvalidInput("%s must be a boolean, not %r" % (param, value)) from None


def single_entry(params: dict, fields) -> dict:
    """The single form's one entry (top-level options already typed by
    AnsibleModule), through the same class checks as a list entry."""
    entry = {f.name: params.get(f.name) for f in fields}
    for f in fields:
        checks.check_value(f, entry[f.name], f.name)
    return entry


RESULT_OPTIONS = {"return_unchanged": {"type": "bool", "default": True}}  # every batch list form's


def unchanged_left_out(result: dict, list_key: str, return_unchanged: bool) -> dict:
    """``result`` of a list form, with ``return_unchanged: false`` applied: the entries under
    ``list_key`` that did not change (nor would in check mode) are left out and counted under
    ``unchanged``, and so are the keys of a by-name diff whose before and after are equal.

    A list of thousands returns kilobytes per entry otherwise, which the module, the connection
    and the controller each handle again (docs/performance.md)."""
    if return_unchanged or list_key not in result:
        return result
    shown = [r for r in result[list_key] if r.get("changed")]
    result["unchanged"] = len(result[list_key]) - len(shown)
    result[list_key] = shown
    diff = result.get("diff")
    if isinstance(diff, dict) and isinstance(diff.get("before"), dict) and isinstance(diff.get("after"), dict):
        before, after = diff["before"], diff["after"]
        differ = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        result["diff"] = {side: {k: v for k, v in diff[side].items() if k in differ} for side in ("before", "after")}
    return result


def batch_result(out: dict, listed: bool, list_key: str, item_key: str, with_diff: bool, return_unchanged: bool = True) -> dict:
    """A module result from a batch engine's ``{"changed", "results", "diff"}``.

    The list form returns every result under ``list_key`` and the whole diff
    (only what changed with ``return_unchanged: false``, :func:`unchanged_left_out`);
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
    if out.get("definitions"):  # check mode: guests whose kept definition a real run would write
        result["definitions"] = out["definitions"]
    return unchanged_left_out(result, list_key, return_unchanged)
