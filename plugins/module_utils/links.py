# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network links, addresses and routes of guests (the engine behind netns_link).

The kernel's state is read with :mod:`rtnl` (three dumps per namespace, decoded with
struct), which also makes veths, sets links, adds addresses and removes links; the other
changes go through pyroute2, imported lazily (:func:`pyroute2_module`) when a run needs
it: a run that finds everything as asked never imports it.  Consecutive removals are made
together (:func:`_remove_together`: the kernel's waits after each overlap).  A
netlink socket for a namespace is opened by switching the calling thread into it with
setns(), creating the socket and switching back (a socket stays bound to the namespace
it was created in); that costs microseconds and works the same with pyroute2 0.7 and 0.9.

Compute, then apply: :func:`plan_links` normalises every entry, reads the
kernel's state through netlink, validates everything and returns one
:class:`LinkPlan` per entry (its before/after views and a list of steps);
:func:`apply_plan` carries a plan out and rolls back a link created in the
same run when a later step fails.

How managed addresses and routes are told apart from others:

* every link this module creates or moves into a namespace (and every bridge
  it creates) gets the interface alias ``linuxns.guests`` (``ip link`` shows
  ``alias linuxns.guests``); on such a *marked* link the address set is exact:
  every address except IPv6 link-local ones (fe80::/10, made by the kernel)
  belongs to the module, so one added by hand is removed on the next run.
  A matching link that exists unmarked is adopted (marked) by the run.
* routes are added with the routing protocol number 76 (``ip route`` shows
  ``proto 76``); the routes of a link are those in the main table with that
  protocol and the link as output device, so kernel prefix routes and routes
  added by hand or by other tools are never touched.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import re
import socket

from ansible_collections.linuxns.guests.plugins.module_utils import model, persist, rtnl
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    GuestConflict,
    GuestError,
    GuestStale,
    InvalidInput,
    KernelError,
)
from ansible_collections.linuxns.guests.plugins.module_utils.procfs import write_text
from ansible_collections.linuxns.guests.plugins.module_utils.threads import in_threads

MARK = "linuxns.guests"
RTPROT = 76
MAIN_TABLE = 254
RTN_UNICAST = 1
KINDS = ("veth", "macvlan", "ipvlan", "physical", "bridge")
VIRTUAL_KINDS = ("veth", "macvlan", "ipvlan")
STACKED_KINDS = ("macvlan", "ipvlan")  # never a moved interface (kind=physical may move a NIC, dummy or veth end)
MACVLAN_MODE = "bridge"
IPVLAN_MODE_L2 = 0
LINK_KEYS = (
    "guest", "netns", "ifname", "kind", "parent", "peer", "addresses", "mtu", "mac", "routes",
    "gateway", "gateway6", "ipv6", "state", "recreate",
)
PEER_KEYS = ("ifname", "guest", "netns", "bridge", "bridge_create", "bridge_addresses", "addresses", "mtu", "mac", "ipv6")
NOT_IFNAMES = ("all", "default")  # /proc/sys/net/ipv6/conf/ folders that are not links
ROUTE_KEYS = ("dst", "gateway", "metric")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
INSTALL_HINT = (
    "the Python library pyroute2 is missing on the target host for interpreter %s: install it with "
    "'apt-get install python3-pyroute2' (Debian/Ubuntu), 'dnf install python3-pyroute2' (Fedora/RHEL) "
    "or 'python3 -m pip install pyroute2', or point ansible_python_interpreter at a Python that has it"
)


# Parsed addresses, networks and interfaces, kept for the run: a task compares each guest's addresses
# and routes, wanted and read back from the kernel, several times over (the objects are immutable).
_iface = functools.lru_cache(maxsize=65536)(ipaddress.ip_interface)
_net = functools.lru_cache(maxsize=65536)(ipaddress.ip_network)
_ip = functools.lru_cache(maxsize=65536)(ipaddress.ip_address)


# ---------------------------------------------------------------------------------------
# pyroute2 (lazy)
# ---------------------------------------------------------------------------------------
_pyroute2 = None


def pyroute2_module():
    """The pyroute2 package, imported once; a clear error when it is missing."""
    global _pyroute2
    if _pyroute2 is None:
        try:
            import pyroute2
        except ImportError:
            import sys

            raise GuestError(INSTALL_HINT % sys.executable) from None
        _pyroute2 = pyroute2
    return _pyroute2


def pyroute2_present() -> None:
    """The clear error of :func:`pyroute2_module` when pyroute2 is missing, without importing
    it (a run that changes nothing does not need it, but the module requires it)."""
    if _pyroute2 is None:
        import importlib.util
        import sys

        if importlib.util.find_spec("pyroute2") is None:
            raise GuestError(INSTALL_HINT % sys.executable)


def pyroute2_version() -> str:
    """The version of pyroute2: the imported module's, else its package metadata's (a run
    that changed nothing did not import it)."""
    version = getattr(_pyroute2, "__version__", None) if _pyroute2 is not None else None
    if not version or version == "unknown":
        try:
            from importlib import metadata

            version = metadata.version("pyroute2")
        except Exception:
            version = "unknown"
    return version


def netlink_code(exc) -> int:
    """errno of a pyroute2 NetlinkError (or OSError), else 0."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    return getattr(exc, "errno", 0) or 0


# ---------------------------------------------------------------------------------------
# Input normalisation
# ---------------------------------------------------------------------------------------
def validate_ifname(value, param: str) -> str:
    """A Linux interface name (the kernel's dev_valid_name) or InvalidInput."""
    if not isinstance(value, str) or value == "":
        raise InvalidInput("%s must be a non-empty interface name" % param)
    if len(value) >= rtnl.IFNAMSIZ:
        raise InvalidInput("%s %r is %d characters long; an interface name has at most %d" % (param, value, len(value), rtnl.IFNAMSIZ - 1))
    model.check_text(value, param)
    if value in (".", "..") or any(c in value for c in "/:") or any(c.isspace() for c in value):
        raise InvalidInput("%s %r is not a valid interface name (no '/', ':', whitespace, '.' or '..')" % (param, value))
    return value


def parse_interface(value, param: str) -> str:
    """'198.19.0.2/24' or 'fd00::2/64' normalised; the prefix length is required."""
    if not isinstance(value, str) or "/" not in value:
        raise InvalidInput("%s %r is not an address in CIDR form (such as 198.19.0.2/24 or fd00::2/64): the prefix length is missing" % (param, value))
    try:
        iface = _iface(value.strip())
    except ValueError as exc:
        raise InvalidInput("%s %r is not a valid CIDR address: %s" % (param, value, exc)) from None
    if iface.ip.is_multicast or iface.ip.is_unspecified:
        raise InvalidInput("%s %r cannot be an interface address" % (param, value))
    return str(iface)


def parse_network(value, param: str) -> str:
    if value in ("default", "0.0.0.0/0", "::/0"):
        value = {"default": "0.0.0.0/0"}.get(value, value)
    if not isinstance(value, str):
        raise InvalidInput("%s %r is not a network in CIDR form" % (param, value))
    try:
        net = _net(value.strip(), strict=True)
    except ValueError as exc:
        raise InvalidInput("%s %r is not a valid CIDR network (host bits must be zero): %s" % (param, value, exc)) from None
    return str(net)


def parse_ip(value, param: str) -> str:
    try:
        return str(_ip(str(value).strip()))
    except ValueError:
        raise InvalidInput("%s %r is not an IP address" % (param, value)) from None


def parse_mac(value, param: str):
    if value is None:
        return None
    mac = str(value).strip().lower().replace("-", ":")
    if not _MAC_RE.match(mac):
        raise InvalidInput("%s %r is not a MAC address (6 bytes as aa:bb:cc:dd:ee:ff)" % (param, value))
    if int(mac[:2], 16) & 1:
        raise InvalidInput("%s %r is a multicast MAC address (the first byte is odd)" % (param, value))
    return mac


def parse_mtu(value, param: str):
    if value is None:
        return None
    try:
        mtu = int(value)
    except (TypeError, ValueError):
        raise InvalidInput("%s %r is not a number" % (param, value)) from None
    if not 68 <= mtu <= 65535:
        raise InvalidInput("%s %d is out of range 68-65535" % (param, mtu))
    return mtu


def parse_ipv6(value, param: str, ifname, addresses, routes=()):
    """``ipv6`` of a link end: None (left as it is), True or False (no IPv6 on it: no link-local
    address and no IPv6 route of the kernel's; no IPv6 address or route may be asked for it)."""
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidInput("%s must be true or false, not %r" % (param, value))
    if ifname in NOT_IFNAMES:
        raise InvalidInput("%s: %r is not a name ipv6 can be set for (net.ipv6.conf.%s is every link's)" % (param, ifname, ifname))
    if not value:
        six = [a for a in addresses or [] if _iface(a).version == 6] + [r["dst"] for r in routes if _net(r["dst"]).version == 6]
        if six:
            raise InvalidInput("%s is false, but IPv6 is asked for on the same link: %s" % (param, ", ".join(six)))
    return value


def _addresses(value, param: str) -> list:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidInput("%s must be a list of CIDR addresses" % param)
    out = []
    for i, item in enumerate(value):
        addr = parse_interface(item, "%s[%d]" % (param, i))
        if any(_iface(a).ip == _iface(addr).ip for a in out):
            raise InvalidInput("%s[%d]: address %s is listed twice" % (param, i, str(_iface(addr).ip)))
        out.append(addr)
    return sorted(out, key=_addr_key)


def _addr_key(addr: str):
    iface = _iface(addr)
    return (iface.version, int(iface.ip), iface.network.prefixlen)


def default_metric(version: int, metric):
    if metric is not None:
        return int(metric)
    return 1024 if version == 6 else 0


def route_key(route: dict) -> tuple:
    return (route["dst"], route.get("gateway"), route["metric"])


def _route_sort(route: dict):
    net = _net(route["dst"])
    return (net.version, int(net.network_address), net.prefixlen, route.get("gateway") or "", route["metric"])


def parse_route(value, param: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput("%s must be a dict with dst, gateway and metric" % param)
    unknown = sorted(set(value) - set(ROUTE_KEYS))
    if unknown:
        raise InvalidInput("%s: unknown key(s) %s; a route has %s" % (param, ", ".join(unknown), ", ".join(ROUTE_KEYS)))
    if value.get("dst") is None:
        raise InvalidInput("%s.dst is required (a network such as 198.19.5.0/24, or default)" % param)
    dst = parse_network(value["dst"], param + ".dst")
    version = _net(dst).version
    if value["dst"] == "default" and value.get("gateway") and ":" in str(value.get("gateway")):
        dst, version = "::/0", 6
    gateway = value.get("gateway")
    if gateway is not None:
        gateway = parse_ip(gateway, param + ".gateway")
        if _ip(gateway).version != version:
            raise InvalidInput("%s.gateway %s is not of the same address family as dst %s" % (param, gateway, dst))
    metric = value.get("metric")
    if metric is not None:
        try:
            metric = int(metric)
        except (TypeError, ValueError):
            raise InvalidInput("%s.metric %r is not a number" % (param, metric)) from None
        if not 0 <= metric <= 0xFFFFFFFF:
            raise InvalidInput("%s.metric %d is out of range" % (param, metric))
    return {"dst": dst, "gateway": gateway, "metric": default_metric(version, metric)}


class NsRef:
    """Where a link lives: a guest, a /run/netns name or the host (this process's netns)."""

    def __init__(self, kind: str, name=None, label: str = "the host"):
        self.kind = kind
        self.name = name
        self.label = label
        self.path = None
        self.key = None
        self.meta = None

    @classmethod
    def from_params(cls, params: dict, param_prefix: str):
        guest, netns = params.get("guest"), params.get("netns")
        if guest is not None and netns is not None:
            raise InvalidInput("%sguest and %snetns are mutually exclusive" % (param_prefix, param_prefix))
        if guest is not None:
            if isinstance(guest, bool):
                raise InvalidInput("%sguest must be a guest name or context id" % param_prefix)
            return cls("guest", str(guest), "guest %r" % str(guest))
        if netns is not None:
            if not isinstance(netns, str) or not netns or "/" in netns or netns in (".", ".."):
                raise InvalidInput("%snetns %r must be a name in /run/netns (no '/')" % (param_prefix, netns))
            return cls("netns", netns, "netns %r" % netns)
        return cls("host")

    def public(self) -> dict:
        return {"guest": self.name if self.kind == "guest" else None, "netns": self.name if self.kind == "netns" else None}


class LinkSpec:
    """One wanted link, validated and normalised (no kernel access)."""

    def __init__(self, params: dict, where: str = ""):
        p = where
        self.where = where
        unknown = sorted(set(params) - set(LINK_KEYS) - {"state_dir"})
        if unknown:
            raise InvalidInput("%sunknown option(s) %s; a link has %s" % (p or "link: ", ", ".join(unknown), ", ".join(LINK_KEYS)))
        self.state = params.get("state") or "present"
        if self.state not in ("present", "absent"):
            raise InvalidInput("%sstate must be present or absent, not %r" % (p, self.state))
        self.recreate = bool(params.get("recreate"))
        self.ns = NsRef.from_params(params, p)
        if params.get("ifname") is None:
            raise InvalidInput("%sifname is required" % p)
        self.ifname = validate_ifname(params.get("ifname"), p + "ifname")
        self.kind = params.get("kind") or "veth"
        if self.kind not in KINDS:
            raise InvalidInput("%skind must be one of %s, not %r" % (p, ", ".join(KINDS), self.kind))
        parent = params.get("parent")
        self.parent = validate_ifname(parent, p + "parent") if parent is not None else None
        if self.kind in ("macvlan", "ipvlan", "physical") and self.parent is None:
            raise InvalidInput("%sparent is required with kind=%s (the host interface it %s)" % (
                p, self.kind, "is moved from" if self.kind == "physical" else "sits on"))
        if self.kind in ("veth", "bridge") and self.parent is not None:
            raise InvalidInput("%sparent is only for kind macvlan, ipvlan and physical, not %s" % (p, self.kind))
        if self.kind == "physical" and self.ns.kind == "host":
            raise InvalidInput("%skind=physical moves a host interface into a guest or netns: give guest or netns" % p)
        self.mtu = parse_mtu(params.get("mtu"), p + "mtu")
        self.mac = parse_mac(params.get("mac"), p + "mac")
        addrs = _addresses(params.get("addresses"), p + "addresses")
        self.addresses = addrs
        routes = params.get("routes")
        if routes is not None and not isinstance(routes, list):
            raise InvalidInput("%sroutes must be a list of dicts with dst, gateway and metric" % p)
        self.routes = [parse_route(r, "%sroutes[%d]" % (p, i)) for i, r in enumerate(routes or [])]
        for key, dst, version in (("gateway", "0.0.0.0/0", 4), ("gateway6", "::/0", 6)):
            gw = params.get(key)
            if gw is None:
                continue
            gw = parse_ip(gw, p + key)
            if _ip(gw).version != version:
                raise InvalidInput("%s%s %s must be an IPv%d address" % (p, key, gw, version))
            self.routes.append({"dst": dst, "gateway": gw, "metric": default_metric(version, None)})
        seen = set()
        for r in self.routes:
            k = (r["dst"], r["metric"])
            if k in seen:
                raise InvalidInput("%sroutes: the route to %s (metric %d) is given twice" % (p, r["dst"], r["metric"]))
            seen.add(k)
        self.routes.sort(key=_route_sort)
        self.manage_routes = routes is not None or params.get("gateway") is not None or params.get("gateway6") is not None
        self.ipv6 = parse_ipv6(params.get("ipv6"), p + "ipv6", self.ifname, self.addresses, self.routes)
        peer = params.get("peer")
        self.peer = None
        if peer is not None and not isinstance(peer, dict):
            raise InvalidInput("%speer must be a dict (ifname, guest or netns, bridge, addresses, mtu)" % p)
        if self.kind == "veth":
            if self.state == "present" and not (peer or {}).get("ifname"):
                raise InvalidInput("%speer.ifname is required for a veth (the name of its other end)" % p)
            if peer:
                self.peer = PeerSpec(peer, p + "peer.")
        elif peer:
            raise InvalidInput("%speer is only for kind=veth, not %s" % (p, self.kind))
        if self.peer and self.peer.ifname == self.ifname and self.peer.ns.kind == self.ns.kind and self.peer.ns.name == self.ns.name:
            raise InvalidInput("%speer.ifname %r is the same as ifname in the same namespace" % (p, self.ifname))

    def label(self) -> str:
        return "%s link %r" % (self.ns.label, self.ifname)


class PeerSpec:
    def __init__(self, params: dict, p: str):
        unknown = sorted(set(params) - set(PEER_KEYS))
        if unknown:
            raise InvalidInput("%s: unknown key(s) %s; peer has %s" % (p.rstrip("."), ", ".join(unknown), ", ".join(PEER_KEYS)))
        self.ns = NsRef.from_params(params, p)
        self.ifname = validate_ifname(params.get("ifname"), p + "ifname") if params.get("ifname") is not None else None
        bridge = params.get("bridge")
        self.bridge = validate_ifname(bridge, p + "bridge") if bridge is not None else None
        create = params.get("bridge_create")
        self.bridge_create = True if create is None else bool(create)
        self.bridge_addresses = _addresses(params.get("bridge_addresses"), p + "bridge_addresses")
        if self.bridge_addresses is not None and self.bridge is None:
            raise InvalidInput("%sbridge_addresses needs %sbridge" % (p, p))
        self.addresses = _addresses(params.get("addresses"), p + "addresses")
        self.mtu = parse_mtu(params.get("mtu"), p + "mtu")
        self.mac = parse_mac(params.get("mac"), p + "mac")
        self.ipv6 = parse_ipv6(params.get("ipv6"), p + "ipv6", self.ifname, self.addresses)


def normalize(entries) -> list:
    """LinkSpecs for a list of parameter dicts (``where`` is set for list entries)."""
    specs = []
    for i, params in enumerate(entries):
        where = "links[%d]." % i if params.get("_in_list") else ""
        params = {k: v for k, v in params.items() if k != "_in_list"}
        specs.append(LinkSpec(params, where))
    return specs


# ---------------------------------------------------------------------------------------
# Kernel state: namespaces, sockets, snapshots
# ---------------------------------------------------------------------------------------
def _with_up(v: dict) -> dict:
    """A link as rtnl.Reader gives it, with its ``flags`` turned into ``up``, as the planner compares it."""
    v["up"] = bool(v.pop("flags") & rtnl.IFF_UP)
    return v


class NsState:
    """An open netlink socket in one namespace and its (lazily read) state."""

    def __init__(self, net, ref: NsRef, path):
        self.net = net
        self.ref = ref
        self.path = path
        self.ipr = None
        self.rd = None
        self._links = None
        self._addrs = None
        self._routes = None
        self._all_routes = None
        self._by_index = None
        self._named = {}  # name -> link (or None) asked one at a time, before any whole dump

    def open(self):
        """The pyroute2 socket in this namespace (for changes)."""
        if self.ipr is None:
            self.ipr = self.net.iproute_in(self.path, self.ref)
        return self.ipr

    def reader(self) -> rtnl.Reader:
        """The rtnl reader in this namespace (for the state)."""
        if self.rd is None:
            self.rd = self.net.in_ns(self.path, self.ref, lambda: rtnl.Reader(self.ref.label))
        return self.rd

    def invalidate(self):
        self._links = self._addrs = self._routes = self._all_routes = None
        self._by_index = None
        self._named = {}

    def release(self):
        """Close the socket (what was read stays); :meth:`open` makes a new one when needed.

        A socket is 3 fds with pyroute2 0.7 (the socket and a control pipe): kept open for every
        guest of a task, 10,000 guests needed 30,000 fds besides their locks."""
        if self.ipr is not None:
            try:
                self.ipr.close()
            except Exception:
                pass
            self.ipr = None
        if self.rd is not None:
            self.rd.close()
            self.rd = None

    def links(self) -> dict:
        if self._links is None:
            self._links = {}
            for v in self.reader().links():
                self._links[v["ifname"]] = _with_up(v)
        return self._links

    def link(self, name: str):
        """The link named ``name``, or None: from the whole dump when it was read, else asked
        alone (a no-change run of a guest needs only its own link, not every one)."""
        if self._links is not None:
            return self._links.get(name)
        if name not in self._named:
            v = self.reader().link(name)
            self._named[name] = _with_up(v) if v is not None else None
        return self._named[name]

    def by_index(self, index):
        if self._by_index is None:  # indexed once: the host holds one veth end per guest
            self._by_index = {v["index"]: v for v in self.links().values()}
        return self._by_index.get(index)

    def addresses(self) -> dict:
        """index -> sorted list of CIDR addresses (IPv6 link-local left out)."""
        if self._addrs is None:
            out = {}
            for a in self.reader().addresses():
                if a["address"] is None:
                    continue
                iface = _iface("%s/%d" % (a["address"], a["prefixlen"]))
                if iface.version == 6 and iface.ip.is_link_local:
                    continue
                out.setdefault(a["index"], []).append(str(iface))
            for v in out.values():
                v.sort(key=_addr_key)
            self._addrs = out
        return self._addrs

    def routes(self) -> dict:
        """oif index -> sorted managed routes (main table, protocol RTPROT)."""
        if self._routes is None:
            out = {}
            for route in self.all_routes():
                if route["proto"] == RTPROT:
                    out.setdefault(route["oif"], []).append({k: route[k] for k in ("dst", "gateway", "metric")})
            for v in out.values():
                v.sort(key=_route_sort)
            self._routes = out
        return self._routes

    def all_routes(self) -> list:
        """Every unicast route of the main table: dst, gateway, metric, oif, proto."""
        if self._all_routes is None:
            out = []
            for family in (socket.AF_INET, socket.AF_INET6):
                for r in self.reader().routes(family, table=MAIN_TABLE, rtype=RTN_UNICAST):
                    dst = r["dst"] or ("0.0.0.0" if family == socket.AF_INET else "::")
                    net = str(_net("%s/%d" % (dst, r["dst_len"]), strict=False))
                    version = 4 if family == socket.AF_INET else 6
                    out.append({
                        "dst": net, "gateway": r["gateway"], "metric": default_metric(version, r["priority"]),
                        "oif": r["oif"], "proto": r["proto"],
                    })
            self._all_routes = out
        return self._all_routes


class Net:
    """Namespaces of one run: resolves references, opens sockets, holds guest locks."""

    def __init__(self, registry):
        self.registry = registry
        pyroute2_present()
        self.self_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.host_key = self._key_of_fd(self.self_fd)
        self.states = {}
        self.locks = {}
        self.dirs = reg.DirListing()  # the guests' cgroups, listed once for the plan (resolve)

    @staticmethod
    def _key_of_fd(fd):
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino)

    def close(self):
        for st in self.states.values():
            st.release()
        for lock in self.locks.values():
            lock.__exit__(None, None, None)
        self.locks = {}
        if self.self_fd >= 0:
            os.close(self.self_fd)
            self.self_fd = -1

    def resolve(self, ref: NsRef, param: str) -> NsState:
        """Find the namespace of ``ref``; GuestNotFound/InvalidInput when it is missing."""
        if ref.key is None:
            if ref.kind == "host":
                ref.key, ref.path = self.host_key, None
            elif ref.kind == "netns":
                path = os.path.join(self.registry.netns_dir, ref.name)
                key = reg.ns_id(path)
                if key is None:
                    raise InvalidInput("%snetns: network namespace %r does not exist (no %s)" % (param, ref.name, path))
                ref.key, ref.path = key, path
            else:
                meta = self.registry.find(ref.name, param + "guest")
                ref.name = meta.name
                ref.label = "guest %r" % meta.name
                ref.meta = meta
                pin = meta.pins.get("net")
                if meta.phase != reg.READY or pin is None:
                    raise InvalidInput("%sguest: guest %r has no network namespace of its own" % (param, meta.name))
                problems = reg.health(meta, self.dirs)
                if problems:
                    raise GuestStale("%sguest: guest %r is not running (%s)" % (param, meta.name, "; ".join(problems)))
                path = None
                alias = self.registry.alias_path(meta.name)
                for candidate in (alias, pin.path):
                    key = reg.ns_id(candidate)
                    if key is not None and key[1] == pin.ino:
                        path = candidate
                        break
                if path is None:
                    raise GuestStale("%sguest: the network namespace of guest %r is gone" % (param, meta.name))
                ref.key, ref.path = key, path
                self.lock_guest(meta.name)
        if ref.key == self.host_key:
            ref.path = None
        st = self.states.get(ref.key)
        if st is None:
            st = self.states[ref.key] = NsState(self, ref, ref.path)
        return st

    def release(self, p) -> None:
        """Close the sockets of plan ``p``'s namespaces other than the host's."""
        for st in (p.ns, p.peer_ns, p.parent_ns):
            if st is not None and st.ref.key != self.host_key:
                st.release()

    def lock_guests(self, specs) -> None:
        """Take the locks of every guest the specs name, in name order (no lock-order deadlock
        between two runs that link the same guests the other way round)."""
        names = set()
        for spec in specs:
            for ref in (spec.ns, spec.peer.ns if spec.peer else None):
                if ref is not None and ref.kind == "guest":
                    try:
                        names.add(self.registry.resolve(ref.name, "guest"))
                    except GuestError:
                        continue  # reported with its parameter name when planned
        for name in sorted(names):
            if os.path.exists(self.registry.meta_path(name)):  # read under the lock, once (resolve)
                self.lock_guest(name)

    def lock_guest(self, name: str) -> None:
        if name not in self.locks:
            lock = self.registry.lock(name)
            lock.__enter__()
            self.locks[name] = lock

    def iproute_in(self, path, ref: NsRef):
        """An IPRoute whose socket lives in the namespace at ``path`` (None: this one)."""
        return self.in_ns(path, ref, pyroute2_module().IPRoute)

    def in_ns(self, path, ref: NsRef, make):
        """``make()`` run in the namespace at ``path`` (None: this one): a socket it creates
        stays there."""
        if path is None:
            return make()
        fd = self.open_ns(path, ref)
        try:
            sc.setns(fd, "net")
            try:
                return make()
            finally:
                sc.setns(self.self_fd, "net")
        finally:
            os.close(fd)

    def open_ns(self, path, ref: NsRef) -> int:
        if path is None:
            return os.dup(self.self_fd)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise GuestStale("%s: its network namespace %s cannot be opened (%s)" % (ref.label, path, exc.strerror)) from None
        if self._key_of_fd(fd) != ref.key:
            os.close(fd)
            raise GuestStale("%s: its network namespace changed during the run" % ref.label)
        return fd


# ---------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------
class LinkPlan:
    def __init__(self, spec: LinkSpec):
        self.spec = spec
        self.ns = None          # NsState of the link
        self.peer_ns = None     # NsState of a veth's peer
        self.parent_ns = None   # NsState of the parent (the host)
        self.before = {}
        self.after = {}
        self.action = "none"    # none | create | recreate | update | remove
        self.steps = []         # (name, args) executed by apply_plan
        self.reasons = []
        self.made_peer = None   # the index of the veth peer this run made (its end's IFLA_LINK)

    @property
    def changed(self) -> bool:
        return bool(self.steps)

    def key(self) -> str:
        return "%s: %s" % (self.spec.ns.label, self.spec.ifname)


def _current_view(st: NsState, link: dict, peer_st=None, peer=None, bridge=None, managed_routes=True) -> dict:
    view = {
        "ifname": link["ifname"],
        "index": link["index"],
        "kind": link["kind"] or "physical",
        "mac": link["mac"],
        "mtu": link["mtu"],
        "up": link["up"],
        "managed": link["alias"] == MARK,
        "addresses": list(st.addresses().get(link["index"], [])),
        "routes": list(st.routes().get(link["index"], [])) if managed_routes else [],
        "ipv6": link.get("ipv6"),
        "peer": None,
    }
    if peer is not None:
        view["peer"] = {
            "ifname": peer["ifname"],
            "index": peer["index"],
            "namespace": peer_st.ref.label,
            "mac": peer["mac"],
            "mtu": peer["mtu"],
            "addresses": list(peer_st.addresses().get(peer["index"], [])),
            "bridge": bridge,
            "ipv6": peer.get("ipv6"),
        }
    return view


def _peer_of(st: NsState, link: dict, peer_st: NsState, peer_name: str):
    """The veth peer of ``link`` if it is ``peer_name`` in ``peer_st``, else None."""
    other = peer_st.link(peer_name)
    if other is None or other["kind"] != "veth":
        return None
    if other["index"] != link["link"] or other["link"] != link["index"]:
        return None
    same = st.ref.key == peer_st.ref.key
    if same != (link["link_netnsid"] is None):
        return None
    return other


def _actual_peer_desc(st: NsState, link: dict) -> str:
    if link["link_netnsid"] is None and link["link"]:
        other = st.by_index(link["link"])
        return "%r in the same namespace" % (other["ifname"] if other else link["link"])
    return "interface #%s in another namespace" % link["link"]


def _check_addresses_free(st: NsState, index, addrs, param: str, label: str) -> None:
    mine = {_iface(a).ip for a in addrs or []}
    for other_index, others in st.addresses().items():
        if other_index == index:
            continue
        for a in others:
            ip = _iface(a).ip
            if ip in mine:
                other = st.by_index(other_index)
                raise InvalidInput("%s: address %s is already in use on link %r in %s" % (param, ip, other["ifname"] if other else other_index, label))


def _check_gateways(st: NsState, spec: LinkSpec, index, addrs) -> None:
    nets = [_iface(a).network for a in addrs or []]
    for _i, r in enumerate(spec.routes):
        gw = r.get("gateway")
        if gw is None:
            continue
        ip = _ip(gw)
        if any(ip.version == n.version and ip in n for n in nets):
            continue
        where = "route to %s" % ("default" if r["dst"] in ("0.0.0.0/0", "::/0") else r["dst"])
        for other_index, others in st.addresses().items():
            if other_index == index:
                continue
            for a in others:
                n = _iface(a).network
                if ip.version == n.version and ip in n:
                    other = st.by_index(other_index)
                    raise InvalidInput(
                        "%sgateway %s (%s) is reachable only through link %r in %s, not through %r: put the route on that link"
                        % (spec.where, gw, where, other["ifname"] if other else other_index, spec.ns.label, spec.ifname)
                    )
        raise InvalidInput(
            "%sgateway %s (%s) is not reachable on any link in %s: no address of %r (%s) or of another link is in its subnet"
            % (spec.where, gw, where, spec.ns.label, spec.ifname, ", ".join(addrs or []) or "none")
        )


def _check_routes_free(st: NsState, spec: LinkSpec, index) -> None:
    """A wanted route whose destination and metric another route already uses fails (the kernel says EEXIST)."""
    for r in spec.routes:
        for other in st.all_routes():
            if other["dst"] != r["dst"] or other["metric"] != r["metric"]:
                continue
            if index is not None and other["oif"] == index and other["proto"] == RTPROT:
                continue
            dev = st.by_index(other["oif"]) if other["oif"] else None
            raise InvalidInput(
                "%sroutes: a route to %s with metric %d already exists in %s (via %s on link %r, protocol %s); give another metric or remove it"
                % (spec.where, "default" if r["dst"] in ("0.0.0.0/0", "::/0") else r["dst"], r["metric"], spec.ns.label,
                   other["gateway"] or "no gateway", dev["ifname"] if dev else other["oif"], other["proto"])
            )


class Planner:
    def __init__(self, net: Net):
        self.net = net
        self.bridges = {}       # (ns key, name) -> {"create": bool, "addresses": list|None, "owner": plan}
        self.taken = {}         # (ns key, ifname) -> where
        self.addr_taken = {}    # (ns key, ip) -> where

    def _claim_name(self, st, ifname, what):
        k = (st.ref.key, ifname)
        if k in self.taken:
            raise InvalidInput("%s: interface %r in %s is already used by %s of this task" % (what, ifname, st.ref.label, self.taken[k]))
        self.taken[k] = what

    def _claim_addrs(self, st, addrs, what):
        for a in addrs or []:
            k = (st.ref.key, _iface(a).ip)
            if k in self.addr_taken:
                raise InvalidInput(
                    "%s: address %s in %s is also given by %s of this task" % (what, _iface(a).ip, st.ref.label, self.addr_taken[k])
                )
            self.addr_taken[k] = what

    def plan(self, spec: LinkSpec) -> LinkPlan:
        p = LinkPlan(spec)
        w = spec.where
        st = p.ns = self.net.resolve(spec.ns, w)
        self._claim_name(st, spec.ifname, (w.rstrip(".") or "ifname"))
        link = st.link(spec.ifname)
        if spec.kind == "veth" and spec.peer is not None:
            p.peer_ns = self.net.resolve(spec.peer.ns, w + "peer.")
        if spec.kind in ("macvlan", "ipvlan", "physical"):
            p.parent_ns = self.net.resolve(NsRef("host"), w)
        if spec.state == "absent":
            return self._plan_absent(p, link)
        return self._plan_present(p, link)

    # -- absent ---------------------------------------------------------------------------
    def _plan_absent(self, p: LinkPlan, link) -> LinkPlan:
        spec, st = p.spec, p.ns
        if link is None:
            return p
        kind = link["kind"]
        p.before = _current_view(st, link)
        if spec.kind == "physical":
            if kind in STACKED_KINDS:
                raise InvalidInput("%s is a %s, not a moved host interface: state=absent with kind=physical only moves one back" % (spec.label(), kind))
            host = p.parent_ns
            if spec.parent in host.links():
                raise InvalidInput(
                    "%sparent: cannot move %s back to the host as %r: the host already has a link of that name" % (spec.where, spec.label(), spec.parent)
                )
            p.steps.append(("move_back", {}))
        else:
            if kind != spec.kind:
                raise InvalidInput(
                    "%s is a %s, not a %s: state=absent removes only a link of the given kind (kind=physical moves a host interface back)"
                    % (spec.label(), kind or "physical interface", spec.kind)
                )
            if link["alias"] != MARK and not spec.recreate:
                raise InvalidInput("%s was not made by this module (no alias %r); set recreate=true to remove it anyway" % (spec.label(), MARK))
            p.steps.append(("delete", {}))
        p.action = "remove"
        p.after = {}
        return p

    # -- present --------------------------------------------------------------------------
    def _plan_present(self, p: LinkPlan, link) -> LinkPlan:
        spec, st = p.spec, p.ns
        w = spec.where
        peer_st = p.peer_ns
        peer = None
        bridge_name = spec.peer.bridge if spec.peer else None
        replace = False
        if link is not None:
            problem = self._difference(p, link)
            if spec.kind == "veth" and problem is None:
                peer = _peer_of(st, link, peer_st, spec.peer.ifname)
            p.before = _current_view(st, link, peer_st, peer, self._bridge_of(peer_st, peer))
            if problem is not None:
                if link["alias"] != MARK or link["kind"] not in VIRTUAL_KINDS:
                    raise InvalidInput("%sifname: %r is taken in %s by a different link (%s)" % (w, spec.ifname, spec.ns.label, problem))
                if not spec.recreate:
                    raise GuestConflict("%s differs in a way that cannot change in place (%s); set recreate=true to replace it" % (spec.label(), problem))
                replace = True
                p.reasons.append(problem)
        # names the new link(s) need must be free
        if link is None or replace:
            if spec.kind == "veth":
                self._claim_name(peer_st, spec.peer.ifname, w + "peer.ifname")
                other = peer_st.links().get(spec.peer.ifname)
                if other is not None and not (replace and other["index"] == link["link"] and other["kind"] == "veth"):
                    raise InvalidInput("%speer.ifname: %r is taken in %s by another link" % (w, spec.peer.ifname, peer_st.ref.label))
            if spec.kind in ("macvlan", "ipvlan", "physical"):
                parent = p.parent_ns.links().get(spec.parent)
                if parent is None:
                    raise InvalidInput("%sparent: host interface %r does not exist" % (w, spec.parent))
                if spec.kind == "physical":
                    if parent["kind"] in STACKED_KINDS + ("bridge",):
                        raise InvalidInput("%sparent: %r is a %s; kind=physical moves an interface such as a NIC or dummy" % (w, spec.parent, parent["kind"]))
                    if spec.parent != spec.ifname and spec.parent in st.links():
                        raise InvalidInput(
                            "%sparent: %s already has a link %r, so %r cannot be moved in before its rename" % (w, spec.ns.label, spec.parent, spec.parent)
                        )
        elif spec.kind == "veth":
            self._claim_name(peer_st, spec.peer.ifname, w + "peer.ifname")
        # addresses and routes
        # the existing link (kept, or replaced and so freeing its addresses) is not "another link"
        index = link["index"] if link is not None else None
        self._claim_addrs(st, spec.addresses, w + "addresses")
        if spec.addresses:
            _check_addresses_free(st, index, spec.addresses, w + "addresses", spec.ns.label)
        if spec.routes:
            kept = index if not replace else None
            want_addrs = spec.addresses if spec.addresses is not None else (st.addresses().get(kept, []) if kept else [])
            _check_gateways(st, spec, index, want_addrs)
            _check_routes_free(st, spec, index if not replace else None)
        peer_index = peer["index"] if peer is not None else None
        if peer_index is None and replace and spec.peer is not None:
            old = peer_st.by_index(link["link"])  # the old pair's other end, gone with it
            if old is not None and old["kind"] == "veth" and old["link"] == link["index"]:
                peer_index = old["index"]
        if spec.peer is not None:
            self._claim_addrs(peer_st, spec.peer.addresses, w + "peer.addresses")
            if spec.peer.addresses:
                _check_addresses_free(peer_st, peer_index, spec.peer.addresses, w + "peer.addresses", peer_st.ref.label)
        bridge = self._plan_bridge(p, peer_st, spec) if bridge_name else None
        # steps
        if link is None or replace:
            p.action = "recreate" if replace else "create"
            if replace:
                p.steps.append(("delete", {}))
            p.steps.append(("create", {}))
            if spec.ipv6 is not None:  # before it is up: with IPv6 off, the kernel makes no link-local address or route
                p.steps.append(("ipv6", {"on": spec.ipv6}))
            p.steps.append(("configure", {"mtu": spec.mtu, "mac": spec.mac, "up": True, "mark": True, "new": True}))
            p.steps.append(("addresses", {"add": list(spec.addresses or []), "remove": []}))
            if spec.peer is not None:
                if spec.peer.ipv6 is not None:
                    p.steps.append(("peer_ipv6", {"on": spec.peer.ipv6}))
                p.steps.append(("peer", {"mtu": spec.peer.mtu, "mac": spec.peer.mac, "master": bridge_name, "mark": True, "up": True, "new": True}))
                p.steps.append(("peer_addresses", {"add": list(spec.peer.addresses or []), "remove": []}))
            if spec.routes:
                p.steps.append(("routes", {"add": list(spec.routes), "remove": []}))
        else:
            self._plan_update(p, link, peer, bridge_name)
            if p.steps:
                p.action = "update"
        if bridge is not None and bridge.get("steps") and bridge["owner"] is p:
            p.steps[0:0] = bridge["steps"]
            if p.action == "none":
                p.action = "update"
        p.after = self._after_view(p, link if not replace else None, peer if not replace else None)
        return p

    def _difference(self, p: LinkPlan, link: dict):
        """Why the existing link cannot be kept (None: it can, perhaps changed in place)."""
        spec, st = p.spec, p.ns
        kind = link["kind"]
        if spec.kind == "physical":
            if kind in STACKED_KINDS:
                return "it is a %s, not a moved host interface" % kind
            if spec.parent in p.parent_ns.links():
                return "it is not the host interface %r, which is still on the host" % spec.parent
            return None
        if kind != spec.kind:
            return "kind is %s, not %s" % (kind or "physical", spec.kind)
        if spec.kind == "veth":
            if _peer_of(st, link, p.peer_ns, spec.peer.ifname) is None:
                return "its peer is %s, not %r in %s" % (_actual_peer_desc(st, link), spec.peer.ifname, p.peer_ns.ref.label)
            return None
        if spec.kind == "bridge":
            return None
        parent = p.parent_ns.links().get(spec.parent)
        if parent is None or parent["index"] != link["link"] or (p.parent_ns.ref.key != st.ref.key) == (link["link_netnsid"] is None):
            return "its parent is not the host interface %r" % spec.parent
        return None

    def _bridge_of(self, peer_st, peer):
        if peer is None or not peer.get("master"):
            return None
        br = peer_st.by_index(peer["master"])
        return br["ifname"] if br else None

    def _plan_bridge(self, p: LinkPlan, peer_st: NsState, spec: LinkSpec):
        name = spec.peer.bridge
        key = (peer_st.ref.key, name)
        entry = self.bridges.get(key)
        w = spec.where + "peer."
        if entry is not None:
            if spec.peer.bridge_addresses is not None and entry["addresses"] is not None and entry["addresses"] != spec.peer.bridge_addresses:
                raise InvalidInput("%sbridge_addresses for bridge %r differ from those given by %s" % (w, name, entry["where"]))
            return entry
        br = peer_st.links().get(name)
        entry = {"create": False, "addresses": spec.peer.bridge_addresses, "owner": p, "steps": [], "where": spec.where.rstrip(".") or "this task"}
        if br is None:
            if not spec.peer.bridge_create:
                raise InvalidInput("%sbridge: bridge %r does not exist in %s and %sbridge_create is false" % (w, name, peer_st.ref.label, w))
            self._claim_name(peer_st, name, w + "bridge")
            entry["create"] = True
            entry["steps"].append(("bridge_create", {"name": name}))
            if spec.peer.bridge_addresses:
                self._claim_addrs(peer_st, spec.peer.bridge_addresses, w + "bridge_addresses")
                _check_addresses_free(peer_st, None, spec.peer.bridge_addresses, w + "bridge_addresses", peer_st.ref.label)
                entry["steps"].append(("bridge_addresses", {"name": name, "add": list(spec.peer.bridge_addresses), "remove": []}))
        else:
            if br["kind"] != "bridge":
                raise InvalidInput("%sbridge: %r in %s is a %s, not a bridge" % (w, name, peer_st.ref.label, br["kind"] or "physical interface"))
            if not br["up"]:
                entry["steps"].append(("bridge_up", {"name": name}))
            if spec.peer.bridge_addresses is not None:
                self._claim_addrs(peer_st, spec.peer.bridge_addresses, w + "bridge_addresses")
                _check_addresses_free(peer_st, br["index"], spec.peer.bridge_addresses, w + "bridge_addresses", peer_st.ref.label)
                have = peer_st.addresses().get(br["index"], [])
                add = [a for a in spec.peer.bridge_addresses if a not in have]
                remove = [a for a in have if a not in spec.peer.bridge_addresses] if br["alias"] == MARK else []
                if add or remove:
                    entry["steps"].append(("bridge_addresses", {"name": name, "add": add, "remove": remove}))
        self.bridges[key] = entry
        return entry

    def _plan_update(self, p: LinkPlan, link: dict, peer, bridge_name) -> None:
        spec, st = p.spec, p.ns
        changes = {}
        if spec.mtu is not None and link["mtu"] != spec.mtu:
            changes["mtu"] = spec.mtu
        if spec.mac is not None and (link["mac"] or "").lower() != spec.mac:
            changes["mac"] = spec.mac
        if not link["up"]:
            changes["up"] = True
        if link["alias"] != MARK:
            changes["mark"] = True
        if changes:
            p.steps.append(("configure", changes))
        ipv6 = _ipv6_change(spec.ipv6, link, spec.where + "ipv6", spec.label())
        if ipv6:  # on before IPv6 addresses and routes are added; off after the managed ones are removed (below)
            p.steps.append(("ipv6", {"on": True}))
        managed = link["alias"] == MARK or changes.get("mark")
        if spec.addresses is not None:
            have = st.addresses().get(link["index"], [])
            add = [a for a in spec.addresses if a not in have]
            remove = [a for a in have if a not in spec.addresses] if managed else []
            if add or remove:
                p.steps.append(("addresses", {"add": add, "remove": remove}))
        if spec.manage_routes:
            have = st.routes().get(link["index"], [])
            want_keys = {route_key(r) for r in spec.routes}
            have_keys = {route_key(r) for r in have}
            add = [r for r in spec.routes if route_key(r) not in have_keys]
            remove = [r for r in have if route_key(r) not in want_keys]
            if add or remove:
                p.steps.append(("routes", {"add": add, "remove": remove}))
        if ipv6 is False:
            p.steps.append(("ipv6", {"on": False}))
        if spec.peer is not None and peer is not None:
            pst = p.peer_ns
            pch = {}
            if spec.peer.mtu is not None and peer["mtu"] != spec.peer.mtu:
                pch["mtu"] = spec.peer.mtu
            if spec.peer.mac is not None and (peer["mac"] or "").lower() != spec.peer.mac:
                pch["mac"] = spec.peer.mac
            if not peer["up"]:
                pch["up"] = True
            if peer["alias"] != MARK:
                pch["mark"] = True
            if bridge_name is not None and self._bridge_of(pst, peer) != bridge_name:
                pch["master"] = bridge_name
            if pch:
                p.steps.append(("peer", pch))
            pipv6 = _ipv6_change(spec.peer.ipv6, peer, spec.where + "peer.ipv6", "%s link %r" % (pst.ref.label, spec.peer.ifname))
            if pipv6:
                p.steps.append(("peer_ipv6", {"on": True}))
            if spec.peer.addresses is not None:
                have = pst.addresses().get(peer["index"], [])
                pmanaged = peer["alias"] == MARK or pch.get("mark")
                add = [a for a in spec.peer.addresses if a not in have]
                remove = [a for a in have if a not in spec.peer.addresses] if pmanaged else []
                if add or remove:
                    p.steps.append(("peer_addresses", {"add": add, "remove": remove}))
            if pipv6 is False:
                p.steps.append(("peer_ipv6", {"on": False}))

    def _after_view(self, p: LinkPlan, link, peer) -> dict:
        """The link as it will be after the plan (index/mac unknown for a new link)."""
        spec = p.spec
        before = p.before if link is not None else {}
        view = {
            "ifname": spec.ifname,
            "index": before.get("index"),
            "kind": spec.kind if spec.kind != "physical" else (before.get("kind") or "physical"),
            "mac": spec.mac or before.get("mac"),
            "mtu": spec.mtu or before.get("mtu"),
            "up": True,
            "managed": True,
            "addresses": list(spec.addresses) if spec.addresses is not None else list(before.get("addresses") or []),
            "routes": list(spec.routes) if spec.manage_routes else list(before.get("routes") or []),
            "ipv6": spec.ipv6 if spec.ipv6 is not None else before.get("ipv6"),
            "peer": None,
        }
        if view["ipv6"] is False:  # turning IPv6 off takes the link's IPv6 addresses and routes with it
            view["addresses"] = [a for a in view["addresses"] if _iface(a).version == 4]
            view["routes"] = [r for r in view["routes"] if _net(r["dst"]).version == 4]
        if spec.kind == "physical" and link is None:
            view["kind"] = p.parent_ns.links()[spec.parent]["kind"] or "physical"
            view["mac"] = spec.mac or p.parent_ns.links()[spec.parent]["mac"]
            view["mtu"] = spec.mtu or p.parent_ns.links()[spec.parent]["mtu"]
        if spec.peer is not None:
            pb = (before.get("peer") or {}) if peer is not None else {}
            view["peer"] = {
                "ifname": spec.peer.ifname,
                "index": pb.get("index"),
                "namespace": p.peer_ns.ref.label,
                "mac": spec.peer.mac or pb.get("mac"),
                "mtu": spec.peer.mtu or pb.get("mtu") or (spec.mtu if link is None else None),
                "addresses": list(spec.peer.addresses) if spec.peer.addresses is not None else list(pb.get("addresses") or []),
                "bridge": spec.peer.bridge if spec.peer.bridge else pb.get("bridge"),
                "ipv6": spec.peer.ipv6 if spec.peer.ipv6 is not None else pb.get("ipv6"),
            }
            if view["peer"]["ipv6"] is False:
                view["peer"]["addresses"] = [a for a in view["peer"]["addresses"] if _iface(a).version == 4]
        return view


def _ipv6_change(want, link: dict, param: str, what: str):
    """None when ``ipv6`` needs no change on ``link``, else the value to set."""
    if want is None or link.get("ipv6") == want:
        return None
    if link.get("ipv6") is None:
        if not want:
            return None  # no IPv6 on it: the kernel has none
        raise InvalidInput("%s: the kernel has no IPv6 for %s (booted with ipv6.disable=1?)" % (param, what))
    return want


def plan_links(net: Net, specs) -> list:
    planner = Planner(net)
    plans = []
    for s in specs:
        p = planner.plan(s)
        plans.append(p)
        net.release(p)  # a guest's socket is not kept open for the rest of the task (fds)
    return plans


# ---------------------------------------------------------------------------------------
# Applying
# ---------------------------------------------------------------------------------------
def _nl(what: str, func, *args, **kwargs):
    """Call a pyroute2 request; NetlinkError -> KernelError naming ``what``."""
    try:
        return func(*args, **kwargs)
    except GuestError:
        raise
    except Exception as exc:
        code = netlink_code(exc)
        text = os.strerror(code) if code else str(exc)
        raise KernelError("%s failed: %s" % (what, text), errno=code) from None


def _lookup(st: NsState, ifname: str, what: str) -> int:
    """Index of ``ifname`` in ``st``."""
    return _find(st, ifname, what)["index"]


def _find(st: NsState, ifname: str, what: str) -> dict:
    """Link ``ifname`` of ``st`` (rtnl.Reader.link's fields): one RTM_GETLINK through the
    namespace's reader (pyroute2 decoded every attribute of the answer, ~0.4 ms a link)."""
    try:
        found = st.reader().link(ifname)
    except KernelError as exc:
        raise KernelError("%s: looking up %r in %s failed: %s" % (what, ifname, st.ref.label, exc.msg), errno=exc.errno) from None
    if found is None:
        raise KernelError("%s: link %r is gone from %s" % (what, ifname, st.ref.label), errno=errno.ENODEV)
    return found


def _set(st: NsState, index: int, what: str, changes: dict) -> None:
    """A link's mtu, alias (the mark), master and up state in one request (the kernel applies
    them in that order, up last); a MAC change first, with the link down for it."""
    rd = st.reader()
    kw = {}
    if "mtu" in changes and changes["mtu"] is not None:
        kw["mtu"] = changes["mtu"]
    if changes.get("mark"):
        kw["ifalias"] = MARK
    if "master" in changes and changes["master"] is not None:
        kw["master"] = _lookup(st, changes["master"], what)
    if changes.get("mac"):
        # a MAC change needs the link down on most drivers
        _nl("%s: setting it down" % what, rd.set_link, index, up=False)
        _nl("%s: setting mac %s" % (what, changes["mac"]), rd.set_link, index, mac=changes["mac"])
    names = sorted(kw)
    up = None
    if changes.get("up") or changes.get("mac"):
        up = True
        names.append("it up")
    if names:
        _nl("%s: setting %s" % (what, ", ".join(names)), rd.set_link, index, up=up, **kw)


def _set_ipv6(net: Net, st: NsState, ifname: str, on: bool, what: str) -> None:
    """IPv6 on or off on a link: its ``net.ipv6.conf.IFNAME.disable_ipv6``, written from inside
    the link's network namespace (/proc/sys/net is the namespace of the process that opens it).
    There is no netlink request for it; ``ip`` has none either (``sysctl`` does this)."""
    path = "/proc/sys/net/ipv6/conf/%s/disable_ipv6" % ifname
    try:
        net.in_ns(st.path, st.ref, lambda: write_text(path, "0" if on else "1"))
    except OSError as exc:
        raise KernelError("%s: turning IPv6 %s failed: %s: %s" % (what, "on" if on else "off", path, exc.strerror), errno=exc.errno) from None


def _addr_change(st: NsState, index: int, what: str, add, remove) -> None:
    rd = st.reader()
    for a in remove:
        iface = _iface(a)
        _nl("%s: removing address %s" % (what, a), rd.address, False, index, iface.ip, iface.network.prefixlen)
    for a in add:
        iface = _iface(a)
        _nl("%s: adding address %s" % (what, a), rd.address, True, index, iface.ip, iface.network.prefixlen, nodad=iface.version == 6)


def _route_args(route: dict, index: int) -> dict:
    net = _net(route["dst"])
    kw = {
        "dst": str(net.network_address),
        "dst_len": net.prefixlen,
        "oif": index,
        "proto": RTPROT,
        "table": MAIN_TABLE,
        "family": socket.AF_INET if net.version == 4 else socket.AF_INET6,
        "priority": route["metric"],
    }
    if route.get("gateway"):
        kw["gateway"] = route["gateway"]
    else:
        kw["scope"] = 253  # link
    return kw


def _route_change(st: NsState, index: int, what: str, add, remove) -> None:
    ipr = st.open()
    for r in remove:
        try:
            _nl("%s: removing route to %s" % (what, r["dst"]), ipr.route, "del", **_route_args(r, index))
        except KernelError as exc:
            if exc.errno != errno.ESRCH:  # ESRCH: the kernel dropped it with the address its gateway was reached by
                raise
    for r in add:
        _nl("%s: adding route to %s" % (what, r["dst"]), ipr.route, "add", **_route_args(r, index))


class _Undo:
    def __init__(self):
        self.actions = []

    def push(self, func, *args):
        self.actions.append((func, args))

    def run(self):
        for func, args in reversed(self.actions):
            try:
                func(*args)
            except Exception:
                pass
        self.actions = []


def apply_plan(net: Net, p: LinkPlan) -> dict:
    """Carry out a plan; on failure roll back what this plan created and re-raise."""
    spec, st = p.spec, p.ns
    what = spec.label()
    undo = _Undo()
    index = None
    peer_index = None
    try:
        for name, args in p.steps:
            if name == "bridge_create":
                pst = p.peer_ns
                _nl("creating bridge %r in %s" % (args["name"], pst.ref.label), pst.open().link, "add", ifname=args["name"], kind="bridge")
                bidx = _lookup(pst, args["name"], what)
                undo.push(_delete, pst, bidx)
                _set(pst, bidx, "bridge %r in %s" % (args["name"], pst.ref.label), {"mark": True, "up": True})
            elif name == "bridge_up":
                pst = p.peer_ns
                _set(pst, _lookup(pst, args["name"], what), "bridge %r in %s" % (args["name"], pst.ref.label), {"up": True})
            elif name == "bridge_addresses":
                pst = p.peer_ns
                _addr_change(pst, _lookup(pst, args["name"], what), "bridge %r in %s" % (args["name"], pst.ref.label), args["add"], args["remove"])
            elif name == "delete":
                _remove(st, spec.ifname, what)
            elif name == "move_back":
                _move_back(net, p)
            elif name == "create":
                index = _create(net, p, undo)
            elif name == "configure":
                if index is None:
                    index = _lookup(st, spec.ifname, what)
                _set(st, index, what, args)
            elif name == "addresses":
                if index is None:
                    index = _lookup(st, spec.ifname, what)
                _addr_change(st, index, what, args["add"], args["remove"])
            elif name == "routes":
                if index is None:
                    index = _lookup(st, spec.ifname, what)
                _route_change(st, index, what, args["add"], args["remove"])
            elif name == "ipv6":
                _set_ipv6(net, st, spec.ifname, args["on"], what)
            elif name == "peer_ipv6":
                _set_ipv6(net, p.peer_ns, spec.peer.ifname, args["on"], "%s link %r (peer of %s)" % (p.peer_ns.ref.label, spec.peer.ifname, what))
            elif name in ("peer", "peer_addresses"):
                pst = p.peer_ns
                pwhat = "%s link %r (peer of %s)" % (pst.ref.label, spec.peer.ifname, what)
                if peer_index is None:
                    peer_index = p.made_peer if p.made_peer is not None else _lookup(pst, spec.peer.ifname, pwhat)
                if name == "peer":
                    _set(pst, peer_index, pwhat, args)
                else:
                    _addr_change(pst, peer_index, pwhat, args["add"], args["remove"])
    except BaseException:
        undo.run()
        raise
    return final_view(p)


def _create(net: Net, p: LinkPlan, undo: _Undo) -> int:
    spec, st = p.spec, p.ns
    what = spec.label()
    host = net.resolve(NsRef("host"), "")
    fds = []
    try:
        fd = net.open_ns(st.path, st.ref)
        fds.append(fd)
        kw = {"ifname": spec.ifname, "net_ns_fd": fd}
        if spec.mtu:
            kw["mtu"] = spec.mtu
        if spec.mac:
            kw["address"] = spec.mac
        if spec.kind == "veth":
            pfd = net.open_ns(p.peer_ns.path, p.peer_ns.ref)
            fds.append(pfd)
            peer = {"ifname": spec.peer.ifname, "ns_fd": pfd, "mtu": spec.peer.mtu or spec.mtu or None, "mac": spec.peer.mac or None}
            _nl("%s: creating the veth pair" % what, host.reader().add_veth, spec.ifname, fd, peer, mtu=spec.mtu or None, mac=spec.mac or None)
        elif spec.kind == "bridge":
            _nl("%s: creating the bridge" % what, host.open().link, "add", kind="bridge", **kw)
        elif spec.kind in ("macvlan", "ipvlan"):
            parent = _lookup(host, spec.parent, what)
            if spec.kind == "macvlan":
                kw["macvlan_mode"] = MACVLAN_MODE
            else:
                kw["ipvlan_mode"] = IPVLAN_MODE_L2
            _nl("%s: creating the %s on %r" % (what, spec.kind, spec.parent), host.open().link, "add", kind=spec.kind, link=parent, **kw)
        else:  # physical: move the host interface in, then rename it there
            parent = _lookup(host, spec.parent, what)
            _nl("%s: setting host interface %r down" % (what, spec.parent), host.open().link, "set", index=parent, state="down")
            _nl("%s: moving host interface %r in" % (what, spec.parent), host.open().link, "set", index=parent, net_ns_fd=fd)
            undo.push(_move_out, net, p, spec.parent)
            index = _lookup(st, spec.parent, what)
            if spec.ifname != spec.parent:
                _nl("%s: renaming %r" % (what, spec.parent), st.open().link, "set", index=index, ifname=spec.ifname)
                undo.actions[-1] = (_move_out, (net, p, spec.ifname))
            return index
    finally:
        for fd in fds:
            os.close(fd)
    found = _find(st, spec.ifname, what)
    undo.push(_delete, st, found["index"])
    if spec.kind == "veth":
        # its peer's index from the new end (IFLA_LINK), not asked of the peer's namespace, where
        # the kernel looks up the id of this one among all it knows (the host: one per guest)
        p.made_peer = found["link"]
    return found["index"]


def _delete(st: NsState, index: int) -> None:
    st.reader().del_link(index)


def _remove(st: NsState, ifname: str, what: str) -> None:
    """Remove link ``ifname`` of ``st`` (a plan's delete step), looked up by name now."""
    _nl("%s: removing it" % what, _delete, st, _lookup(st, ifname, what))


# A link's removal waits for the kernel (its RCU grace periods), not all of it under the lock every
# link change takes, so removals from several threads overlap their waits: 100 veth pairs removed one at a time
# took 20-24 ms each, 4 at a time 12 ms, 8 at a time 5.7 ms and 16 at a time 2.7 ms (`ip link del`,
# in a throwaway namespace; docs/performance.md, "Links removed together").
REMOVE_THREADS = 16


def _removal_only(p: LinkPlan) -> bool:
    """A plan that only removes its link (state=absent of a link of this module's)."""
    return [name for name, _args in p.steps] == ["delete"]


def _remove_together(net: Net, plans) -> dict:
    """Remove the links of ``plans`` (each :func:`_removal_only`) from up to REMOVE_THREADS threads,
    each through an NsState of its own (its netlink socket in the link's namespace, not the plan's,
    which the threads would share); every removal is tried.  Returns {index in ``plans``: the
    error of a removal that failed}, raised again in order by the caller."""

    def remove(i: int) -> None:
        p = plans[i]
        st = NsState(net, p.ns.ref, p.ns.path)
        try:
            _remove(st, p.spec.ifname, p.spec.label())
        finally:
            st.release()

    return in_threads(list(range(len(plans))), remove, REMOVE_THREADS, "linuxns-unlink")


def _move_out(net: Net, p: LinkPlan, current: str) -> None:
    """Move the interface ``current`` of the plan's namespace back to the host as ``parent``."""
    spec, st = p.spec, p.ns
    what = spec.label()
    ipr = st.open()
    index = _lookup(st, current, what)
    _nl("%s: setting it down" % what, ipr.link, "set", index=index, state="down")
    if current != spec.parent:
        _nl("%s: renaming it back to %r" % (what, spec.parent), ipr.link, "set", index=index, ifname=spec.parent)
    _nl("%s: clearing its alias" % what, ipr.link, "set", index=index, ifalias="")
    fd = os.dup(net.self_fd)
    try:
        _nl("%s: moving it back to the host" % what, ipr.link, "set", index=index, net_ns_fd=fd)
    finally:
        os.close(fd)


def _move_back(net: Net, p: LinkPlan) -> None:
    _move_out(net, p, p.spec.ifname)


def _read_back(st: NsState, ifname: str, what: str) -> dict:
    """A link as the kernel has it now (one request, not what the plan read), for a result."""
    v = st.reader().link(ifname)
    if v is None:
        raise KernelError("%s: link %r is gone from %s" % (what, ifname, st.ref.label), errno=errno.ENODEV)
    return _with_up(v)


def final_view(p: LinkPlan) -> dict:
    """The link after apply: the plan's view with index/mac/mtu read back from the kernel."""
    if not p.after:
        return {}
    view = dict(p.after)
    link = _read_back(p.ns, p.spec.ifname, p.spec.label())
    view.update(index=link["index"], mac=link["mac"], mtu=link["mtu"], kind=link["kind"] or "physical", up=link["up"], ipv6=link["ipv6"])
    if view.get("peer"):
        peer = _read_back(p.peer_ns, p.spec.peer.ifname, "the peer of " + p.spec.label())
        view["peer"] = dict(view["peer"], index=peer["index"], mac=peer["mac"], mtu=peer["mtu"], ipv6=peer["ipv6"])
    return view


# ---------------------------------------------------------------------------------------
# Batches (the module's single and list forms)
# ---------------------------------------------------------------------------------------
def _public(p: LinkPlan, view: dict) -> dict:
    if not view:
        return {}
    out = dict(view)
    out.update(p.spec.ns.public())
    return out


def _diff_view(view: dict) -> dict:
    if not view:
        return {}
    out = {k: view[k] for k in ("kind", "mtu", "mac", "up", "addresses", "routes", "ipv6") if view.get(k) is not None}
    if view.get("peer"):
        pv = view["peer"]
        out["peer"] = {k: pv[k] for k in ("ifname", "namespace", "mtu", "addresses", "bridge", "ipv6") if pv.get(k) is not None}
    return out


def ensure_links(registry, entries, check_mode: bool = False, table_dir=None) -> dict:
    """Converge a list of link entries; all are validated and planned before any change.
    ``table_dir``: where the guests' definitions are (None: persist.resolve_table_dir's).

    Returns ``{"changed", "results": [...], "diff": {"before", "after"}}``.
    """
    specs = normalize(entries)
    sc.room_for_fds(len(specs))  # one lock per guest, held to the end of the task
    net = Net(registry)
    if table_dir is None and not check_mode:
        table_dir = persist.resolve_table_dir(registry.state_dir)
    try:
        net.lock_guests(specs)
        plans = plan_links(net, specs)
        owners = [link_owner(registry, p) for p in plans]  # the guest whose definition keeps each link, or None
        if table_dir is None and any(o is not None for o in owners):
            table_dir = persist.resolve_table_dir(registry.state_dir)  # check mode: once, when a definition is read
        read = {}  # each owner's definition, read once: the task holds every guest's lock (lock_guests)
        for owner in owners:  # a broken definition, or one a newer version wrote, is refused before anything changes
            if owner is not None and owner not in read:
                read[owner] = persist.check_definition_file(table_dir, owner)
        results, before, after, definitions = [], {}, {}, []
        removed = {}  # plan index -> None (removed together with its neighbours) or its failure
        for n, (p, owner) in enumerate(zip(plans, owners)):
            before[p.key()] = _diff_view(p.before)
            after[p.key()] = _diff_view(p.after)
            item = {"ifname": p.spec.ifname, "changed": p.changed, "action": p.action, "reasons": p.reasons, "state": p.spec.state}
            item.update(p.spec.ns.public())
            if check_mode or not p.changed:
                item["link"] = _public(p, p.after if p.changed else (p.before if p.spec.state == "present" else {}))
                if not check_mode:
                    keep_link(registry, table_dir, p, entries[len(results)], read=read)
                elif not p.changed and keep_link(registry, table_dir, p, entries[len(results)], check=True, read=read):
                    definitions.append(owner)  # a real run would save it, though the link is right
                results.append(item)
                continue
            if n not in removed:
                removed.update(_removals(net, plans, n))
            try:
                if n in removed:
                    if removed[n] is not None:
                        raise removed[n]
                    view = {}
                else:
                    view = apply_plan(net, p)
            except GuestError as exc:
                err = exc.with_message(exc.msg) if p.spec.ifname in exc.msg else exc.with_prefix("%s: " % p.spec.label())
                err.details["results"] = results
                raise err from None
            finally:
                for st in (p.ns, p.peer_ns, p.parent_ns):
                    if st is not None:
                        st.invalidate()
                net.release(p)
            item["link"] = _public(p, view)
            keep_link(registry, table_dir, p, entries[len(results)], read=read)
            results.append(item)
        out = {
            "changed": any(r["changed"] for r in results),
            "results": results,
            "diff": {"before": before, "after": after},
            "pyroute2": pyroute2_version(),
        }
        if check_mode:
            out["definitions"] = sorted(set(definitions))
        return out
    finally:
        net.close()


def _removals(net: Net, plans, n: int) -> dict:
    """When plan ``n`` begins a run of two or more consecutive plans that only remove their link,
    their links removed together (:func:`_remove_together`), when the task's walk in order comes to
    them: {plan index: None when removed, else its failure}; else {}.  A failure is raised at its
    entry, as when the links are removed one at a time; the links after it in its run are removed
    all the same (a rerun finds them absent and forgets them in their guests' definitions)."""
    end = n
    while end < len(plans) and plans[end].changed and _removal_only(plans[end]):
        end += 1
    if end - n < 2:
        return {}
    failed = _remove_together(net, plans[n:end])
    return {i: failed.get(i - n) for i in range(n, end)}


def link_owner(registry, p: LinkPlan):
    """The guest whose definition keeps link ``p``: the link's guest, else its veth peer's guest
    (a host or netns end); None for a link of no guest, or of a guest that is gone."""
    ns = p.spec.ns if p.spec.ns.kind == "guest" else (p.spec.peer.ns if p.spec.peer and p.spec.peer.ns.kind == "guest" else None)
    if ns is None:
        return None
    try:
        return registry.resolve(ns.name)
    except GuestError:
        return None


def keep_link(registry, table_dir: str, p: LinkPlan, params: dict, check: bool = False, read=None) -> bool:
    """Save a link of a guest in the guest's definition (persist.keep_link), or forget it
    (state=absent): the restore service makes it again at boot.  Links of no guest are not saved.
    Whether the definition is (``check``: would be) written."""
    name = link_owner(registry, p)
    if name is None:
        return False
    entry = {k: v for k, v in params.items() if k in LINK_KEYS and k not in ("state", "recreate") and v is not None}
    if isinstance(entry.get("peer"), dict):
        entry["peer"] = {k: v for k, v in entry["peer"].items() if v is not None}
    try:
        for where in (entry, entry.get("peer")):
            if isinstance(where, dict) and where.get("guest") is not None:
                where["guest"] = registry.resolve(where["guest"])
    except GuestError:
        return False  # its peer guest is gone
    return persist.keep_link(table_dir, name, p.key(), entry if p.spec.state == "present" else None, check, read)
