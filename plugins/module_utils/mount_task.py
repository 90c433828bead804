# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""namespace_mount's options and body.

The module (plugins/modules/namespace_mount.py) is its thin wrapper; namespace_info's
``expect`` (expect.py) runs the same body in check mode, so what it reports is what a
check-mode run of the module would.
"""

from __future__ import annotations

from ansible_collections.linuxns.guests.plugins.module_utils import persist
from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput
from ansible_collections.linuxns.guests.plugins.module_utils.list_forms import RESULT_OPTIONS, entry_spec, unchanged_left_out
from ansible_collections.linuxns.guests.plugins.module_utils.list_forms import entries as entries_of
from ansible_collections.linuxns.guests.plugins.module_utils.mounts import converge, validate_many

PER_MOUNT_KEYS = ("path", "src", "fstype", "opts", "propagation", "create", "state", "recreate", "lazy_unmount")
PROPAGATION_CHOICES = ["private", "slave", "shared", "unbindable", "rprivate", "rslave", "rshared", "runbindable"]


# The module's options (in main's argument spec) and, from them, the spec of one entry of mounts.
OPTIONS = dict(
    guest=dict(type="str"),
    guests=dict(type="list", elements="dict"),
    path=dict(type="str", aliases=["name"]),
    src=dict(type="str"),
    fstype=dict(type="str"),
    opts=dict(type="str"),
    propagation=dict(type="str", choices=PROPAGATION_CHOICES),
    create=dict(type="bool", default=True),
    state=dict(type="str", choices=["mounted", "ephemeral", "present", "unmounted", "absent", "remounted"], default="mounted"),
    recreate=dict(type="bool", default=False),
    lazy_unmount=dict(type="bool", default=False),
    mounts=dict(type="list", elements="dict"),
    table_dir=dict(type="path"),
    mirror=dict(type="path"),
    mirror_state=dict(type="str", choices=["present", "absent"], default="present"),
    **RESULT_OPTIONS,
)
MOUNT_ENTRY = entry_spec(OPTIONS, PER_MOUNT_KEYS)
# an entry of guests: (its mounts are then entries of MOUNT_ENTRY, named guests[N].mounts[M])
GUEST_ENTRY = {"guest": {"type": "str"}, "mounts": {"type": "list", "elements": "raw"}}
RULES = dict(
    mutually_exclusive=[("path", "mounts"), ("guests", "guest"), ("guests", "path"), ("guests", "mounts"), ("guests", "mirror")],
    required_one_of=[("path", "mounts", "mirror", "guests"), ("guest", "guests")],
)


def body(params: dict, registry, check_mode: bool, with_diff: bool, warn=None) -> dict:
    """The result for ``params`` (typed by the argument spec)."""
    del warn  # namespace_mount has no warning to give
    table_dir = persist.resolve_table_dir(registry.state_dir, params["table_dir"], remembered=False)
    if params["guests"] is not None:
        return _many_guests(params, registry, table_dir, check_mode, with_diff)
    if params["mounts"] is not None:
        entries = entries_of(params, "mounts", MOUNT_ENTRY, "path")
    else:
        entries = [{k: params.get(k) for k in PER_MOUNT_KEYS}]
    if params["mounts"] is None and params["path"] is None:
        entries = []
    out = converge(registry, params["guest"], entries, check_mode, table_dir=table_dir,
                   mirror=params["mirror"], mirror_state=params["mirror_state"])
    if not check_mode:
        persist.remember_table_dir(registry, table_dir)
    result = {"changed": out["changed"], "table": out["table"]}
    if with_diff:
        result["diff"] = out["diff"]
    if params["mounts"] is not None:
        result["mounts"] = out["results"]
    elif out["results"]:
        result["mount"] = out["results"][0]
    if "mirror" in out:
        result["mirror"] = out["mirror"]
    return unchanged_left_out(result, "mounts", params["return_unchanged"])


def _many_guests(params: dict, registry, table_dir: str, check_mode: bool, with_diff: bool) -> dict:
    per_guest = []
    for i, item in enumerate(entries_of(params, "guests", GUEST_ENTRY)):
        where = "guests[%d]" % i
        if not item.get("guest"):
            raise InvalidInput("%s: guest is required" % where)
        listed = item.get("mounts") or []
        entries = entries_of(dict(params, mounts=listed), "mounts", MOUNT_ENTRY, "path", prefix=where + ".")
        per_guest.append((where, str(item["guest"]), entries))
    metas = validate_many(registry, per_guest)
    results, changed, before, after = [], False, [], []
    for (_where, _ref, entries), meta in zip(per_guest, metas):
        out = converge(registry, meta.name, entries, check_mode, table_dir=table_dir)
        changed = changed or out["changed"]
        results.append({"guest": meta.name, "changed": out["changed"], "table": out["table"], "mounts": out["results"]})
        for side, acc in (("before", before), ("after", after)):
            if out["diff"][side]:
                acc.append("# guest %s\n%s" % (meta.name, out["diff"][side]))
    if not check_mode:
        persist.remember_table_dir(registry, table_dir)
    result = {"changed": changed, "guests": results}
    if with_diff:
        result["diff"] = {"before": "".join(before), "after": "".join(after)}
    return unchanged_left_out(result, "guests", params["return_unchanged"])
