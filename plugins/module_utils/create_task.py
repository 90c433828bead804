# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""namespace_create's options and body.

The module (plugins/modules/namespace_create.py) is its thin wrapper; namespace_info's
``expect`` (expect.py) runs the same body in check mode, so what it reports is what a
check-mode run of the module would.
"""

from __future__ import annotations

from ansible_collections.linuxns.guests.plugins.module_utils import model, persist, supervisor
from ansible_collections.linuxns.guests.plugins.module_utils.guests import ensure_guests
from ansible_collections.linuxns.guests.plugins.module_utils.list_forms import RESULT_OPTIONS, batch_result, entries, single_entry

OPTIONS = dict(
    guests=dict(type="list", elements="raw"),
    table_dir=dict(type="path"),
    userns_pool=dict(type="str"),
    userns_pool_owner=dict(type="str", default="linuxns"),
    **RESULT_OPTIONS,
    **model.argument_spec(model.GUEST),
)
RULES = {"mutually_exclusive": [("name", "guests")], "required_one_of": [("name", "guests")]}


def body(params: dict, registry, check_mode: bool, with_diff: bool, warn) -> dict:
    """The result for ``params`` (typed by the argument spec); ``warn(text)`` gives a warning."""
    listed = params["guests"] is not None
    if listed:
        todo = entries(params, "guests", model.argument_spec(model.GUEST, entry=True), "name", model.GUEST)
    else:
        todo = [single_entry(params, model.GUEST)]
    table_dir = persist.resolve_table_dir(registry.state_dir, params["table_dir"])
    out = ensure_guests(registry, todo, check_mode, table_dir, params["userns_pool"], params["userns_pool_owner"])
    if not check_mode:
        persist.remember_table_dir(registry, table_dir)  # netns_link saves the guests' links in the same folder
    result = batch_result(out, listed, "guests", "guest", with_diff, params["return_unchanged"])
    warning = supervisor.unwatched_warning(registry.state_dir, out["results"])  # restart asked, nobody watching
    if warning:
        warn(warning)
    if not listed and "purged" in out["results"][0]:
        result["purged"] = out["results"][0]["purged"]
    if not listed and "signalled" in out["results"][0]:
        result["signalled"] = out["results"][0]["signalled"]
    return result
