#!/usr/bin/python
# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netns_link
short_description: Network links, addresses and routes of guests (veth, macvlan, ipvlan, moved interfaces)
version_added: 0.1.0
description:
  - Gives guests real networking - the part of C(ip link), C(ip addr), C(ip route) and C(ip netns) that guest
    deployments need - idempotently, through netlink. The state is read with the collection's own read-only
    netlink reader, changes are made with the pyroute2 library (imported only by a run that changes something).
  - A link lives in a guest's network namespace (O(guest)), in a named network namespace from C(/run/netns)
    (O(netns)) or, with neither, on the host (the namespace the module runs in).
  - A veth pair is created with both ends directly in their target namespaces (no create-then-move window); the
    other end (O(peer)) is on the host, or in another guest or netns for a guest-to-guest link, and can be put on
    a host bridge (O(peer.bridge)) that is created when missing.
  - Links are brought up; addresses are an exact set and routes are kept as given. Every link the module creates
    or moves is marked with the interface alias C(linuxns.guests) (C(ip link) shows it); on a marked link every
    address except IPv6 link-local ones belongs to the module, so an address added by hand is removed on the next
    run. A matching link that exists without the mark is adopted (marked). Routes are added with routing protocol
    C(76) (C(ip route) shows C(proto 76)); only routes in the main table with that protocol and the link as output
    device are managed, so kernel prefix routes and routes made by other tools are never touched.
  - IPv6 addresses are added without duplicate address detection (C(nodad)), so they are usable at once.
  - Everything is validated and planned before anything changes; a link created in this run is removed again
    when a later step for it fails.
  - Use the list form O(links) to wire hundreds of guests in one task. Consecutive entries that only remove their
    link are removed together (up to 16 at a time, so that the waits of the kernel after each removal overlap);
    the results keep the list's order. When one of those removals fails, the task fails naming that entry, with
    the results of the entries before it; the others removed together with it are gone as well, and the next run
    reports them unchanged.
  - A link of a guest (or a host link whose veth peer is in a guest) is saved in that guest's definition
    C(TABLE_DIR/NAME/guest.json), so the restore service makes it again at boot; O(state=absent) forgets it
    (C(TABLE_DIR) is the folder M(linuxns.guests.namespace_create) or M(linuxns.guests.namespace_mount) last used, see docs/lifecycle.md).
author:
  - linuxns.guests developers (@linuxns)
extends_documentation_fragment:
  - linuxns.guests.guest
  - linuxns.guests.guest.ATTRIBUTES
  - linuxns.guests.guest.LIST_RESULT
options:
  guest:
    description:
      - The guest (name or context id) whose network namespace holds the link.
      - Mutually exclusive with O(netns). With neither, the link is on the host.
    type: str
  netns:
    description:
      - The name of a network namespace in C(/run/netns) that holds the link (as made by C(ip netns add)).
      - The module never creates it; a missing one fails the task.
    type: str
  ifname:
    description:
      - Name of the link inside its namespace, at most 15 characters, without C(/), C(:) or whitespace.
      - Required, in the single form and in every O(links) entry.
    type: str
  kind:
    description:
      - V(veth) - a veth pair, one end O(ifname) in the guest and the other O(peer.ifname).
      - V(macvlan) - a macvlan (mode C(bridge)) on the host interface O(parent), created straight in the guest.
      - V(ipvlan) - an ipvlan (mode C(l2)) on the host interface O(parent), created straight in the guest.
      - V(physical) - moves the existing host interface O(parent) into the guest and renames it O(ifname);
        O(state=absent) moves it back to the host under its O(parent) name (left down).
      - V(bridge) - a bridge O(ifname) in the guest, netns or host (without O(guest) and O(netns)), with its
        O(addresses) and O(routes) - for example the host bridge of guests' veths (O(peer.bridge)); an existing
        bridge is adopted.
    type: str
    choices: [veth, macvlan, ipvlan, physical, bridge]
    default: veth
  parent:
    description:
      - The host interface a V(macvlan) or V(ipvlan) sits on, or the host interface a V(physical) link is moved from.
    type: str
  peer:
    description:
      - The other end of a V(veth). Required for O(kind=veth) with O(state=present).
    type: dict
    suboptions:
      ifname:
        description: Name of the other end, at most 15 characters.
        type: str
      guest:
        description: Put the other end in this guest (name or context id) - a guest-to-guest link.
        type: str
      netns:
        description: Put the other end in this C(/run/netns) namespace. With neither O(peer.guest) nor this, the host.
        type: str
      bridge:
        description:
          - Enslave the other end to this bridge in the other end's namespace (usually the host).
          - The bridge is created (up, marked C(linuxns.guests)) when missing, unless O(peer.bridge_create=false).
          - Never removed by this module, also not by O(state=absent).
        type: str
      bridge_create:
        description: Create O(peer.bridge) when it does not exist; when false a missing bridge fails the task.
        type: bool
        default: true
      bridge_addresses:
        description:
          - Addresses of the bridge itself (CIDR) - for example the host's address on a guest network.
          - An exact set on a bridge this module created; every entry naming the bridge must give the same list or none.
        type: list
        elements: str
      addresses:
        description: Addresses (CIDR, IPv4 and IPv6) of the other end, an exact set like O(addresses).
        type: list
        elements: str
      mtu:
        description: MTU of the other end (defaults to O(mtu) for a new pair).
        type: int
      mac:
        description: MAC address of the other end.
        type: str
      ipv6:
        description:
          - IPv6 on the other end or not, as O(ipv6) for the link; for the host's ends of many guests' veths, see O(ipv6).
        type: bool
  addresses:
    description:
      - Addresses of the link in CIDR form, IPv4 and IPv6 (for example V(198.19.1.2/24), V(fd00:1::2/64)).
      - An exact set; missing ones are added, extra ones removed on a link marked by this module (see above).
      - When not given, the addresses are left as they are.
      - An address used by another link in the same namespace fails the task.
    type: list
    elements: str
  mtu:
    description: MTU of the link, changed in place.
    type: int
  mac:
    description: MAC address of the link (C(aa:bb:cc:dd:ee:ff)), changed in place (the link goes down for a moment).
    type: str
  routes:
    description:
      - Routes through this link in the main table of its namespace; an exact set of the routes this module made
        through the link (protocol 76). When not given (and no O(gateway)/O(gateway6)), routes are left as they are.
      - A gateway must be in the subnet of one of the link's addresses.
    type: list
    elements: dict
    suboptions:
      dst:
        description: Destination network in CIDR form, or V(default).
        type: str
        required: true
      gateway:
        description: Next hop; without it the route is direct on the link (scope link).
        type: str
      metric:
        description: Route metric (priority). Defaults to the kernel's default (0 for IPv4, 1024 for IPv6).
        type: int
  gateway:
    description: IPv4 default gateway through this link (adds a route to V(0.0.0.0/0)).
    type: str
  gateway6:
    description: IPv6 default gateway through this link (adds a route to V(::/0)).
    type: str
  ipv6:
    description:
      - Whether IPv6 runs on the link (its C(net.ipv6.conf.IFNAME.disable_ipv6) in its namespace), changed in place.
        Not given, it is left as the kernel has it (on, by default).
      - V(false) on a new link is set before the link goes up, so the kernel makes no link-local address and no
        IPv6 route for it. IPv6 O(addresses), O(routes) or O(gateway6) with V(false) fail the task.
      - Turning it off removes the link's IPv6 addresses and routes (the kernel's doing).
      - At thousands of guests, V(false) on the host's ends (O(peer.ipv6)) keeps the host fast. The kernel keeps one
        C(fe80::/64) route and one C(ff00::/8) route per IPv6 link of a namespace, in one list per prefix, so each
        change of a link there costs time in proportion to the links (docs/performance.md).
    type: bool
  links:
    description:
      - The list form. Each entry is a dict with the per-link options of this module (O(guest), O(netns), O(ifname),
        O(kind), O(parent), O(peer), O(addresses), O(mtu), O(mac), O(routes), O(gateway), O(gateway6),
        O(ipv6), O(state), O(recreate)).
      - Options given at the top level of the task are defaults for every entry; a top-level O(peer) is merged key by
        key with an entry's own O(peer) (so a shared O(peer.bridge) can be given once).
      - All entries are validated and planned before anything changes.
    type: list
    elements: dict
  recreate:
    description:
      - When an existing link made by this module differs in a way that cannot change in place (its kind, its peer or
        its parent), remove it and create it again. Without it such a difference fails the task and nothing changes.
      - With O(state=absent), also removes a link of the given kind that this module did not make.
    type: bool
    default: false
  state:
    description:
      - V(present) creates the link or brings it to the wanted state.
      - V(absent) removes the link (a veth's peer goes with it) and nothing else; a V(physical) link is moved back
        to the host.
    type: str
    choices: [present, absent]
    default: present
requirements:
  - pyroute2 on the target host (0.7 as packaged by Debian 12 as C(python3-pyroute2), or 0.9 from PyPI).
notes:
  - The guest's network namespace is found through its C(/run/netns) name or its namespace pin; all changes for a
    guest happen under the guest's lock.
  - Removing a guest with M(linuxns.guests.namespace_create) removes its links too (the kernel deletes a veth pair
    when one end's namespace goes away), so no veth is left behind on the host.
seealso:
  - module: linuxns.guests.namespace_create
  - module: linuxns.guests.namespace_info
  - name: ip-link(8)
    description: The iproute2 command whose link, address and route operations this module covers.
    link: https://man7.org/linux/man-pages/man8/ip-link.8.html
"""

EXAMPLES = r"""
- name: A veth between the host and guest web1, addresses on both ends, default gateway in the guest
  linuxns.guests.netns_link:
    guest: web1
    ifname: eth0
    addresses: [198.19.1.2/24, fd00:19:1::2/64]
    gateway: 198.19.1.1
    peer:
      ifname: ve-web1
      addresses: [198.19.1.1/24, fd00:19:1::1/64]

- name: A guest-to-guest link
  linuxns.guests.netns_link:
    guest: db1
    ifname: to-app
    addresses: [198.19.2.1/30]
    peer:
      guest: app1
      ifname: to-db
      addresses: [198.19.2.2/30]

- name: Three guests on one host bridge (created if missing), with the host's address on the bridge
  linuxns.guests.netns_link:
    ifname: eth0
    peer:
      bridge: br-guests
      bridge_addresses: [198.19.3.1/24]
    links:
      - {guest: g1, addresses: [198.19.3.11/24], gateway: 198.19.3.1, peer: {ifname: vb-g1}}
      - {guest: g2, addresses: [198.19.3.12/24], gateway: 198.19.3.1, peer: {ifname: vb-g2}}
      - {guest: g3, addresses: [198.19.3.13/24], gateway: 198.19.3.1, peer: {ifname: vb-g3}}

- name: A macvlan on host interface eno1 and an extra route
  linuxns.guests.netns_link:
    guest: "102"
    ifname: mv0
    kind: macvlan
    parent: eno1
    addresses: [198.19.4.20/24]
    routes:
      - dst: 198.19.40.0/24
        gateway: 198.19.4.1
        metric: 50

- name: A host bridge with the host's address on the guests' network and a route through a router on it
  linuxns.guests.netns_link:
    ifname: br-guests
    kind: bridge
    addresses: [198.19.3.1/24]
    routes:
      - dst: 198.19.9.0/24
        gateway: 198.19.3.254

- name: Hand a physical interface to a guest as eth1 (absent moves it back as enp3s0)
  linuxns.guests.netns_link:
    guest: router
    ifname: eth1
    kind: physical
    parent: enp3s0

- name: Many guests on one host, one veth each, no IPv6 on the host's ends (see O(ipv6))
  linuxns.guests.netns_link:
    ifname: eth0
    return_unchanged: false
    peer:
      ipv6: false
    links:
      - {guest: g0001, addresses: [198.19.128.2/17], peer: {ifname: vg0001}}
      - {guest: g0002, addresses: [198.19.128.3/17], peer: {ifname: vg0002}}

- name: Remove the guest's link (its host-side peer goes with it)
  linuxns.guests.netns_link:
    guest: web1
    ifname: eth0
    state: absent
"""

RETURN = r"""
link:
  description: The link after the run (single form); in check mode the predicted link. Empty after O(state=absent).
  returned: when O(links) is not used
  type: dict
  contains:
    ifname:
      description: Name of the link.
      type: str
      sample: eth0
    index:
      description: Interface index in its namespace (null for a link that check mode would create).
      type: int
      sample: 2
    kind:
      description: Link kind as the kernel reports it (C(veth), C(macvlan), C(ipvlan), C(bridge), or for a moved interface its own kind, C(physical) when none).
      type: str
      sample: veth
    mac:
      description: MAC address.
      type: str
      sample: "5a:3e:11:8c:02:7f"
    mtu:
      description: MTU.
      type: int
      sample: 1500
    up:
      description: Whether the link is administratively up.
      type: bool
    managed:
      description: Whether the link carries the C(linuxns.guests) alias (its addresses are an exact set).
      type: bool
    addresses:
      description: Addresses of the link (CIDR), IPv6 link-local ones left out.
      type: list
      elements: str
      sample: ["198.19.1.2/24", "fd00:19:1::2/64"]
    routes:
      description: Routes through the link made by this module, each with C(dst), C(gateway) and C(metric).
      type: list
      elements: dict
      sample: [{"dst": "0.0.0.0/0", "gateway": "198.19.1.1", "metric": 0}]
    ipv6:
      description: Whether IPv6 runs on the link (null where the kernel has no IPv6).
      type: bool
    peer:
      description: For a veth, its other end - C(ifname), C(index), C(namespace), C(mac), C(mtu), C(addresses), C(bridge), C(ipv6).
      type: dict
      sample: {"ifname": "ve-web1", "index": 7, "namespace": "the host", "addresses": ["198.19.1.1/24"], "bridge": null, "ipv6": true}
    guest:
      description: The guest holding the link, or null.
      type: str
    netns:
      description: The C(/run/netns) name holding the link, or null.
      type: str
action:
  description: What was done to the link (single form) - V(none), V(create), V(recreate), V(update) or V(remove).
  returned: when O(links) is not used
  type: str
  sample: create
links:
  description: Per-entry results of the list form, in the order given (only the links that changed with O(return_unchanged=false)).
  returned: when O(links) is used
  type: list
  elements: dict
  contains:
    ifname:
      description: Name of the link.
      type: str
    guest:
      description: The guest, or null.
      type: str
    netns:
      description: The netns name, or null.
      type: str
    changed:
      description: Whether this link changed (or would change in check mode).
      type: bool
    action:
      description: V(none), V(create), V(recreate), V(update) or V(remove).
      type: str
    reasons:
      description: Why a link is recreated.
      type: list
      elements: str
    link:
      description: The link as in RV(link).
      type: dict
unchanged:
  description: The number of entries of O(links) left out of RV(links) because they did not change (O(return_unchanged=false)).
  returned: when O(return_unchanged=false) and O(links) is used
  type: int
  sample: 9998
pyroute2:
  description: The pyroute2 version on the target (the one that makes changes; a run that changes nothing reads it from the package's metadata).
  returned: success
  type: str
  sample: 0.7.2
definitions:
  description:
    - In check mode, the guests whose kept definition (the restore service's input, in the table folder) a real run would
      write although their links are right - it is missing, or keeps this link other than the task gives it.
  returned: in check mode, when there is one
  type: list
  elements: str
  sample: [web1]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxns.guests.plugins.module_utils import code_cache

if __name__ == "__main__":
    code_cache.cache_code()  # the collection's modules below come compiled from the cache (the payload has no .pyc)

from ansible_collections.linuxns.guests.plugins.module_utils import link_task
from ansible_collections.linuxns.guests.plugins.module_utils.common import task_main


def main():
    task_main(AnsibleModule, link_task)


if __name__ == "__main__":
    main()
