# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""netns_link's options and body.

The module (plugins/modules/netns_link.py) is its thin wrapper; namespace_info's ``expect``
(expect.py) runs the same body in check mode, so what it reports is what a check-mode run of
the module would.
"""

from __future__ import annotations

from ansible_collections.linuxns.guests.plugins.module_utils.links import LINK_KEYS, ensure_links
from ansible_collections.linuxns.guests.plugins.module_utils.list_forms import RESULT_OPTIONS, batch_result, entries, entry_spec

OPTIONS = dict(
    guest=dict(type="str"),
    netns=dict(type="str"),
    ifname=dict(type="str"),
    kind=dict(type="str", choices=["veth", "macvlan", "ipvlan", "physical", "bridge"], default="veth"),
    parent=dict(type="str"),
    peer=dict(
        type="dict",
        options=dict(
            ifname=dict(type="str"),
            guest=dict(type="str"),
            netns=dict(type="str"),
            bridge=dict(type="str"),
            bridge_create=dict(type="bool", default=True),
            bridge_addresses=dict(type="list", elements="str"),
            addresses=dict(type="list", elements="str"),
            mtu=dict(type="int"),
            mac=dict(type="str"),
            ipv6=dict(type="bool"),
        ),
    ),
    addresses=dict(type="list", elements="str"),
    mtu=dict(type="int"),
    mac=dict(type="str"),
    routes=dict(
        type="list",
        elements="dict",
        options=dict(
            dst=dict(type="str", required=True),
            gateway=dict(type="str"),
            metric=dict(type="int"),
        ),
    ),
    gateway=dict(type="str"),
    gateway6=dict(type="str"),
    ipv6=dict(type="bool"),
    links=dict(type="list", elements="dict"),
    recreate=dict(type="bool", default=False),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    **RESULT_OPTIONS,
)
LINK_ENTRY = entry_spec(OPTIONS, LINK_KEYS)
EXCLUSIVE = [("guest", "netns")]
RULES = {"mutually_exclusive": EXCLUSIVE, "required_one_of": [("ifname", "links")]}


def body(params: dict, registry, check_mode: bool, with_diff: bool, warn=None) -> dict:
    """The module's result for ``params`` (typed by its argument spec)."""
    del warn  # netns_link has no warning to give
    if params["links"] is not None:
        todo = entries(params, "links", LINK_ENTRY, exclusive=EXCLUSIVE)
    else:
        todo = [{k: params.get(k) for k in LINK_KEYS}]
    out = ensure_links(registry, todo, check_mode)
    result = batch_result(out, params["links"] is not None, "links", "link", with_diff, params["return_unchanged"])
    result["pyroute2"] = out["pyroute2"]
    return result
