"""Unit tests of the netns_link engine: input normalisation, planning/diff, and real
guest-to-guest links made in guests of a unit_registry (never on the machine's own netns)."""

from __future__ import annotations

import errno
import json
import subprocess
import threading

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import guests, links, persist, rtnl
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestConflict, GuestNotFound, InvalidInput, KernelError

pytestmark = pytest.mark.unit


def spec(**params):
    return links.LinkSpec(params)


# ---------------------------------------------------------------------------------------
# normalisation (no kernel)
# ---------------------------------------------------------------------------------------
def test_addresses_are_normalised_sorted_and_v6_compressed():
    s = spec(guest="g", ifname="eth0", addresses=["fd00:0:0::2/64", "198.19.0.10/24", "198.19.0.2/24"], peer={"ifname": "vh"})
    assert s.addresses == ["198.19.0.2/24", "198.19.0.10/24", "fd00::2/64"]
    assert s.kind == "veth" and s.state == "present" and s.peer.ifname == "vh" and s.peer.ns.kind == "host"


def test_gateways_become_default_routes_with_kernel_default_metrics():
    s = spec(guest="g", ifname="eth0", gateway="198.19.0.1", gateway6="fd00::1",
             routes=[{"dst": "198.19.9.0/24", "gateway": "198.19.0.1", "metric": 7}], peer={"ifname": "vh"})
    assert s.routes == [
        {"dst": "0.0.0.0/0", "gateway": "198.19.0.1", "metric": 0},
        {"dst": "198.19.9.0/24", "gateway": "198.19.0.1", "metric": 7},
        {"dst": "::/0", "gateway": "fd00::1", "metric": 1024},
    ]
    assert s.manage_routes
    assert not spec(guest="g", ifname="eth0", peer={"ifname": "vh"}).manage_routes


@pytest.mark.parametrize(
    "params, message",
    [
        ({"ifname": "a-very-long-name"}, "ifname 'a-very-long-name' is 16 characters long; an interface name has at most 15"),
        ({"ifname": "eth/0"}, "ifname 'eth/0' is not a valid interface name"),
        ({"ifname": "eth 0"}, "ifname 'eth 0' is not a valid interface name"),
        ({"addresses": ["198.19.0.300/24"]}, "addresses[0] '198.19.0.300/24' is not a valid CIDR address"),
        ({"addresses": ["198.19.0.3"]}, "the prefix length is missing"),
        ({"addresses": ["198.19.0.3/24", "198.19.0.3/25"]}, "addresses[1]: address 198.19.0.3 is listed twice"),
        ({"routes": [{"dst": "198.19.9.1/24"}]}, "routes[0].dst '198.19.9.1/24' is not a valid CIDR network (host bits must be zero)"),
        ({"routes": [{"dst": "198.19.9.0/24", "gateway": "fd00::1"}]}, "routes[0].gateway fd00::1 is not of the same address family"),
        ({"routes": [{"gateway": "198.19.0.1"}]}, "routes[0].dst is required"),
        ({"gateway": "fd00::1"}, "gateway fd00::1 must be an IPv4 address"),
        ({"mtu": 20}, "mtu 20 is out of range 68-65535"),
        ({"mac": "01:00:5e:00:00:01"}, "is a multicast MAC address"),
        ({"mac": "zz"}, "is not a MAC address"),
        ({"kind": "tap"}, "kind must be one of veth, macvlan, ipvlan, physical"),
        ({"kind": "macvlan", "peer": None}, "parent is required with kind=macvlan"),
        ({"peer": None}, "peer.ifname is required for a veth"),
        ({"peer": {"ifname": "vh", "colour": "red"}}, "peer: unknown key(s) colour"),
        ({"peer": {"ifname": "vh", "guest": "a", "netns": "b"}}, "peer.guest and peer.netns are mutually exclusive"),
        ({"peer": {"ifname": "vh", "bridge_addresses": ["198.19.0.1/24"]}}, "peer.bridge_addresses needs peer.bridge"),
        ({"netns": "x"}, "guest and netns are mutually exclusive"),
        ({"state": "gone"}, "state must be present or absent"),
        ({"speed": 10}, "unknown option(s) speed"),
        ({"ipv6": False, "addresses": ["198.19.0.2/24", "fd00::2/64"]}, "ipv6 is false, but IPv6 is asked for on the same link: fd00::2/64"),
        ({"ipv6": False, "gateway6": "fd00::1"}, "ipv6 is false, but IPv6 is asked for on the same link: ::/0"),
        ({"ipv6": False, "routes": [{"dst": "fd00:9::/64"}]}, "ipv6 is false, but IPv6 is asked for on the same link: fd00:9::/64"),
        ({"ipv6": "no"}, "ipv6 must be true or false, not 'no'"),
        ({"ifname": "all", "ipv6": True}, "ipv6: 'all' is not a name ipv6 can be set for"),
        ({"peer": {"ifname": "vh", "ipv6": False, "addresses": ["fd00::1/64"]}}, "peer.ipv6 is false, but IPv6 is asked for on the same link"),
        ({"peer": {"ifname": "default", "ipv6": False}}, "peer.ipv6: 'default' is not a name ipv6 can be set for"),
    ],
)
def test_bad_input_names_the_parameter(params, message):
    base = {"guest": "g", "ifname": "eth0", "peer": {"ifname": "vh"}}
    base.update(params)
    base = {k: v for k, v in base.items() if v is not None}
    with pytest.raises(InvalidInput) as exc:
        links.LinkSpec(base)
    assert message in exc.value.msg


def test_physical_needs_a_guest_and_list_entries_name_their_position():
    with pytest.raises(InvalidInput, match="kind=physical moves a host interface into a guest or netns"):
        spec(ifname="eth1", kind="physical", parent="dum0")
    with pytest.raises(InvalidInput, match=r"^links\[1\]\.addresses\[0\]"):
        links.normalize([{"guest": "g", "ifname": "a", "peer": {"ifname": "b"}, "_in_list": True},
                         {"guest": "g", "ifname": "c", "addresses": ["x"], "peer": {"ifname": "d"}, "_in_list": True}])


def test_missing_pyroute2_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **kw):
        if name == "pyroute2":
            raise ImportError("No module named 'pyroute2'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(links, "_pyroute2", None)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(links.GuestError, match=r"pyroute2 is missing on the target host.*apt-get install python3-pyroute2.*pip install pyroute2"):
        links.pyroute2_module()


# ---------------------------------------------------------------------------------------
# real links between guests
# ---------------------------------------------------------------------------------------
def _ns_json(reg, name, *args):
    """`ip -j ARGS` inside a guest's netns, via nsenter on its pin (unit_registry's netns dir is private)."""
    pin = reg.load(name).pins["net"].path
    out = subprocess.run(["nsenter", "--net=" + pin, "ip", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout or "[]")


def _addr_state(reg, name) -> list:
    """What a failed ensure_links must leave as it was: each link's name, master and addresses.
    Not the whole `ip -j addr` dump: its lifetimes count down, a new veth's operstate follows
    its carrier a moment later, and an IPv6 link-local address loses its ``tentative`` flag
    when DAD ends, so two dumps a second apart differ."""
    out = []
    for item in _ns_json(reg, name, "addr", "show"):
        addrs = sorted((a.get("family"), a.get("local"), a.get("prefixlen")) for a in item.get("addr_info", ())
                       if not (a.get("family") == "inet6" and a.get("scope") == "link"))
        out.append((item["ifname"], item.get("master"), addrs))
    return sorted(out)


def _link(reg, name, ifname):
    for item in _ns_json(reg, name, "addr", "show"):
        if item["ifname"] == ifname:
            return item
    return None


def _addrs(item):
    return sorted("%s/%s" % (a["local"], a["prefixlen"]) for a in item.get("addr_info", []) if a.get("scope") != "link")


@pytest.fixture
def two_guests(unit_registry):
    guests.ensure_guests(unit_registry, [{"name": "lk-a", "namespaces": ["net"]}, {"name": "lk-b", "namespaces": ["net"]}])
    return unit_registry


def _pair(**over):
    entry = {"guest": "lk-a", "ifname": "to-b", "addresses": ["198.19.200.1/30", "fd00:c8::1/64"],
             "peer": {"guest": "lk-b", "ifname": "to-a", "addresses": ["198.19.200.2/30", "fd00:c8::2/64"]}}
    entry.update(over)
    return entry


def test_guest_to_guest_veth_check_mode_create_and_idempotence(two_guests):
    reg = two_guests
    check = links.ensure_links(reg, [_pair()], check_mode=True)
    assert check["changed"] and check["results"][0]["action"] == "create"
    assert check["diff"]["before"] == {"guest 'lk-a': to-b": {}}
    assert check["diff"]["after"]["guest 'lk-a': to-b"]["addresses"] == ["198.19.200.1/30", "fd00:c8::1/64"]
    assert _link(reg, "lk-a", "to-b") is None  # check mode changed nothing

    first = links.ensure_links(reg, [_pair()])
    assert first["changed"] and first["results"][0]["action"] == "create"
    view = first["results"][0]["link"]
    a, b = _link(reg, "lk-a", "to-b"), _link(reg, "lk-b", "to-a")
    assert view["index"] == a["ifindex"] and view["peer"]["index"] == b["ifindex"]
    assert a["link_index"] == b["ifindex"] and b["link_index"] == a["ifindex"]
    assert _addrs(a) == ["198.19.200.1/30", "fd00:c8::1/64"] and _addrs(b) == ["198.19.200.2/30", "fd00:c8::2/64"]
    assert "UP" in a["flags"] and "UP" in b["flags"]
    links_a = {i["ifname"]: i for i in _ns_json(reg, "lk-a", "link", "show")}
    assert links_a["to-b"]["ifalias"] == links.MARK

    second = links.ensure_links(reg, [_pair()])
    assert not second["changed"] and second["results"][0]["action"] == "none"
    assert second["diff"]["before"] == second["diff"]["after"]
    pin = reg.load("lk-a").pins["net"].path
    ping = subprocess.run(["nsenter", "--net=" + pin, "busybox", "ping", "-c1", "-W2", "198.19.200.2"],
                          capture_output=True, text=True, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_exact_address_set_mtu_and_routes_change_in_place(two_guests):
    reg = two_guests
    links.ensure_links(reg, [_pair()])
    index = _link(reg, "lk-a", "to-b")["ifindex"]
    pin = reg.load("lk-a").pins["net"].path
    # an address added by hand on a marked link is removed (exact set)
    subprocess.run(["nsenter", "--net=" + pin, "ip", "addr", "add", "198.19.201.9/24", "dev", "to-b"], check=True)
    want = _pair(addresses=["198.19.200.1/30"], mtu=1400, routes=[{"dst": "198.19.210.0/24", "gateway": "198.19.200.2", "metric": 9}])
    plan = links.ensure_links(reg, [want], check_mode=True)
    diff = plan["diff"]
    key = "guest 'lk-a': to-b"
    assert diff["before"][key]["addresses"] == ["198.19.200.1/30", "198.19.201.9/24", "fd00:c8::1/64"]
    assert diff["after"][key]["addresses"] == ["198.19.200.1/30"]
    assert diff["after"][key]["mtu"] == 1400 and diff["before"][key]["mtu"] == 1500
    assert diff["after"][key]["routes"] == [{"dst": "198.19.210.0/24", "gateway": "198.19.200.2", "metric": 9}]
    out = links.ensure_links(reg, [want])
    assert out["changed"] and out["results"][0]["action"] == "update"
    a = _link(reg, "lk-a", "to-b")
    assert a["ifindex"] == index and a["mtu"] == 1400 and _addrs(a) == ["198.19.200.1/30"]
    routes = _ns_json(reg, "lk-a", "route", "show", "proto", str(links.RTPROT))
    assert [(r["dst"], r["gateway"], r.get("metric", 0)) for r in routes] == [("198.19.210.0/24", "198.19.200.2", 9)]
    assert not links.ensure_links(reg, [want])["changed"]
    # a route added by hand (another protocol) is left alone; dropping `routes` removes only ours
    subprocess.run(["nsenter", "--net=" + pin, "ip", "route", "add", "198.19.220.0/24", "via", "198.19.200.2"], check=True)
    links.ensure_links(reg, [dict(want, routes=[])])
    left = [r["dst"] for r in _ns_json(reg, "lk-a", "route", "show") if r.get("gateway")]
    assert left == ["198.19.220.0/24"]


def test_difference_that_cannot_change_in_place_needs_recreate(two_guests):
    reg = two_guests
    links.ensure_links(reg, [_pair()])
    other = _pair(peer={"guest": "lk-b", "ifname": "to-a2"})
    with pytest.raises(GuestConflict, match=r"its peer is .* not 'to-a2' in guest 'lk-b'.*set recreate=true"):
        links.ensure_links(reg, [other])
    assert _link(reg, "lk-b", "to-a") is not None and _link(reg, "lk-b", "to-a2") is None
    out = links.ensure_links(reg, [dict(other, recreate=True)])
    assert out["results"][0]["action"] == "recreate"
    assert _link(reg, "lk-b", "to-a") is None and _link(reg, "lk-b", "to-a2") is not None


def test_errors_are_clear_and_change_nothing(two_guests):
    reg = two_guests
    links.ensure_links(reg, [_pair()])
    before_a = _addr_state(reg, "lk-a")
    cases = [
        (_pair(peer={"guest": "nope", "ifname": "x"}), GuestNotFound, "peer.guest: guest 'nope' does not exist on this host"),
        (_pair(guest=None, netns="nope"), InvalidInput, "netns: network namespace 'nope' does not exist"),
        (_pair(ifname="x2", peer={"guest": "lk-b", "ifname": "to-a"}), InvalidInput, "peer.ifname: 'to-a' is taken in guest 'lk-b' by another link"),
        (_pair(ifname="x2", peer={"guest": "lk-b", "ifname": "x3"}), InvalidInput, "address 198.19.200.1 is already in use on link 'to-b' in guest 'lk-a'"),
        (_pair(gateway="198.19.99.1"), InvalidInput, "gateway 198.19.99.1 (route to default) is not reachable on any link in guest 'lk-a'"),
        (_pair(ifname="lo", addresses=None, peer={"guest": "lk-b", "ifname": "x3"}), InvalidInput, "ifname: 'lo' is taken in guest 'lk-a' by a different link"),
        (_pair(peer={"guest": "lk-b", "ifname": "to-a", "bridge": "nobr", "bridge_create": False}), InvalidInput,
         "peer.bridge: bridge 'nobr' does not exist in guest 'lk-b' and peer.bridge_create is false"),
        (_pair(ifname="mv0", kind="macvlan", parent="nope0", peer=None, addresses=None), InvalidInput, "parent: host interface 'nope0' does not exist"),
    ]
    for entry, cls, message in cases:
        entry = {k: v for k, v in entry.items() if v is not None}
        with pytest.raises(cls) as exc:
            links.ensure_links(reg, [entry])
        assert message in exc.value.msg, exc.value.msg
    assert _addr_state(reg, "lk-a") == before_a


def test_a_failing_step_rolls_back_the_link_created_in_this_run(two_guests, monkeypatch):
    reg = two_guests

    def boom(st, index, what, add, remove):
        raise KernelError("%s: adding address failed: injected" % what, errno=22)

    monkeypatch.setattr(links, "_addr_change", boom)
    with pytest.raises(KernelError, match="injected"):
        links.ensure_links(reg, [_pair()])
    assert _link(reg, "lk-a", "to-b") is None and _link(reg, "lk-b", "to-a") is None


def test_absent_removes_the_link_and_its_peer_only(two_guests):
    reg = two_guests
    links.ensure_links(reg, [_pair(), _pair(ifname="second", addresses=["198.19.202.1/30"], peer={"guest": "lk-b", "ifname": "second-b"})])
    absent = {"guest": "lk-a", "ifname": "to-b", "state": "absent"}
    assert links.ensure_links(reg, [absent], check_mode=True)["changed"]
    assert _link(reg, "lk-a", "to-b") is not None
    out = links.ensure_links(reg, [absent])
    assert out["changed"] and out["results"][0]["link"] == {}
    assert _link(reg, "lk-a", "to-b") is None and _link(reg, "lk-b", "to-a") is None
    assert _link(reg, "lk-a", "second") is not None and _link(reg, "lk-b", "second-b") is not None
    assert not links.ensure_links(reg, [absent])["changed"]
    with pytest.raises(InvalidInput, match=r"is a physical interface, not a veth"):
        links.ensure_links(reg, [{"guest": "lk-a", "ifname": "lo", "state": "absent"}])


def _many(n):
    """N veth pairs between the two guests (m0 in lk-a to m0-b in lk-b, ...)."""
    return [{"guest": "lk-a", "ifname": "m%d" % i, "addresses": ["198.19.210.%d/30" % (4 * i + 1)],
             "peer": {"guest": "lk-b", "ifname": "m%d-b" % i, "addresses": ["198.19.210.%d/30" % (4 * i + 2)]}} for i in range(n)]


def _gone(n):
    return [{"guest": "lk-a", "ifname": "m%d" % i, "state": "absent"} for i in range(n)]


def _kept_links(reg, name) -> dict:
    return (persist.Kept(persist.resolve_table_dir(reg.state_dir), name).read_definition() or {}).get("links") or {}


def _ifnames(reg, name) -> set:
    return {item["ifname"] for item in _ns_json(reg, name, "link", "show")}


@pytest.fixture
def unlinks(monkeypatch):
    """rtnl.Reader.del_link counted: the most links being removed at one moment.  The first
    removal waits (up to 5 s) for a second one to begin, so removals made together are seen
    together whatever the machine's pace, and one at a time is seen as one."""
    state = {"now": 0, "most": 0, "calls": 0, "wait": 5.0}
    lock, second = threading.Lock(), threading.Event()
    real = rtnl.Reader.del_link

    def del_link(self, index):
        with lock:
            state["now"] += 1
            state["calls"] += 1
            state["most"] = max(state["most"], state["now"])
            first = state["calls"] == 1
            if not first:
                second.set()
        try:
            if first:
                second.wait(state["wait"])
            return real(self, index)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(rtnl.Reader, "del_link", del_link)
    return state


def test_a_list_of_removals_removes_its_links_together(two_guests, unlinks):
    """Removals wait for the kernel's RCU grace periods: a list's are made together (threads of
    their own netlink sockets), and the task still reports and keeps them in its order."""
    reg = two_guests
    links.ensure_links(reg, _many(8))
    assert len(_kept_links(reg, "lk-a")) == 8
    check = links.ensure_links(reg, _gone(8), check_mode=True)
    assert [r["action"] for r in check["results"]] == ["remove"] * 8 and unlinks["calls"] == 0
    assert _ifnames(reg, "lk-a") == {"lo"} | {"m%d" % i for i in range(8)}
    out = links.ensure_links(reg, _gone(8))
    assert [(r["ifname"], r["action"], r["link"]) for r in out["results"]] == [("m%d" % i, "remove", {}) for i in range(8)]
    assert unlinks["calls"] == 8 and unlinks["most"] >= 2, unlinks  # one at a time before
    assert _ifnames(reg, "lk-a") == {"lo"} and _ifnames(reg, "lk-b") == {"lo"}  # each pair gone, both ends
    assert _kept_links(reg, "lk-a") == {}
    again = links.ensure_links(reg, _gone(8))
    assert not again["changed"] and unlinks["calls"] == 8


def test_a_removal_that_fails_mid_list_is_named_and_a_rerun_converges(two_guests, monkeypatch):
    """m3's removal fails (the kernel says EBUSY): the task fails naming it, with the results of the
    entries before it; the others of its run are removed all the same, and a rerun removes m3 and
    finds the rest absent."""
    reg = two_guests
    links.ensure_links(reg, _many(6))
    target = _link(reg, "lk-a", "m3")["ifindex"]
    real = rtnl.Reader.del_link

    def del_link(self, index):
        if index == target:
            raise OSError(errno.EBUSY, "Device or resource busy")
        return real(self, index)

    monkeypatch.setattr(rtnl.Reader, "del_link", del_link)
    with pytest.raises(KernelError) as failed:
        links.ensure_links(reg, _gone(6))
    assert "'m3'" in failed.value.msg and "removing it failed: Device or resource busy" in failed.value.msg, failed.value.msg
    assert [r["ifname"] for r in failed.value.details["results"]] == ["m0", "m1", "m2"]
    assert _ifnames(reg, "lk-a") == {"lo", "m3"} and _ifnames(reg, "lk-b") == {"lo", "m3-b"}
    monkeypatch.setattr(rtnl.Reader, "del_link", real)
    out = links.ensure_links(reg, _gone(6))
    assert [(r["ifname"], r["changed"]) for r in out["results"]] == [("m%d" % i, i == 3) for i in range(6)]
    assert _ifnames(reg, "lk-a") == {"lo"} and _kept_links(reg, "lk-a") == {}


def test_without_threads_a_list_of_removals_removes_them_one_at_a_time(two_guests, unlinks, monkeypatch):
    real = threading.Thread.start

    def start(self):
        if self.name == "linuxns-unlink":
            raise RuntimeError("can't start new thread")
        return real(self)

    reg = two_guests
    links.ensure_links(reg, _many(4))
    unlinks["wait"] = 0  # no second removal at the same time to wait for
    monkeypatch.setattr(threading.Thread, "start", start)
    out = links.ensure_links(reg, _gone(4))
    assert [r["action"] for r in out["results"]] == ["remove"] * 4 and unlinks["most"] == 1 and unlinks["calls"] == 4
    assert _ifnames(reg, "lk-a") == {"lo"}


def test_batch_conflicts_are_found_before_anything_changes(two_guests):
    reg = two_guests
    twice = [dict(_pair(), _in_list=True), dict(_pair(ifname="other", peer={"guest": "lk-b", "ifname": "other-b"}), _in_list=True)]
    with pytest.raises(InvalidInput, match=r"links\[1\]\.addresses: address 198.19.200.1 in guest 'lk-a' is also given by links\[0\]"):
        links.ensure_links(reg, twice)
    assert _link(reg, "lk-a", "to-b") is None


def test_bridge_kind_with_addresses_and_routes_check_mode_and_idempotence(two_guests):
    reg = two_guests
    want = {"guest": "lk-a", "ifname": "br-g", "kind": "bridge", "addresses": ["198.19.230.1/24"],
            "routes": [{"dst": "198.19.231.0/24", "gateway": "198.19.230.254"}]}
    check = links.ensure_links(reg, [want], check_mode=True)
    key = "guest 'lk-a': br-g"
    assert check["changed"] and check["results"][0]["action"] == "create"
    assert check["diff"]["after"][key]["kind"] == "bridge"
    assert check["diff"]["after"][key]["routes"] == [{"dst": "198.19.231.0/24", "gateway": "198.19.230.254", "metric": 0}]
    assert _link(reg, "lk-a", "br-g") is None  # check mode changed nothing
    out = links.ensure_links(reg, [want])
    assert out["changed"] and out["results"][0]["link"]["kind"] == "bridge"
    br = {i["ifname"]: i for i in _ns_json(reg, "lk-a", "-d", "link", "show")}["br-g"]
    assert br["linkinfo"]["info_kind"] == "bridge" and br["ifalias"] == links.MARK and "UP" in br["flags"]
    assert _addrs(_link(reg, "lk-a", "br-g")) == ["198.19.230.1/24"]
    routes = _ns_json(reg, "lk-a", "route", "show", "proto", str(links.RTPROT))
    assert [(r["dst"], r["gateway"], r["dev"]) for r in routes] == [("198.19.231.0/24", "198.19.230.254", "br-g")]
    again = links.ensure_links(reg, [want])
    assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"]
    # a veth of another guest joins the bridge without touching its addresses
    port = _pair(guest="lk-b", ifname="p0", addresses=None, peer={"guest": "lk-a", "ifname": "vp0", "bridge": "br-g"})
    assert links.ensure_links(reg, [port])["changed"]
    assert not links.ensure_links(reg, [want, port])["changed"]
    # an address and a route left out are removed; the bridge is kept, then removed with state=absent
    assert links.ensure_links(reg, [dict(want, addresses=["198.19.230.2/24"], routes=[])])["results"][0]["action"] == "update"
    assert _addrs(_link(reg, "lk-a", "br-g")) == ["198.19.230.2/24"]
    assert _ns_json(reg, "lk-a", "route", "show", "proto", str(links.RTPROT)) == []
    gone = links.ensure_links(reg, [{"guest": "lk-a", "ifname": "br-g", "kind": "bridge", "state": "absent"}])
    assert gone["results"][0]["action"] == "remove" and _link(reg, "lk-a", "br-g") is None


def test_bridge_kind_bad_input_and_a_different_link_of_that_name(two_guests):
    reg = two_guests
    with pytest.raises(InvalidInput, match="parent is only for kind macvlan, ipvlan and physical, not bridge"):
        spec(ifname="br0", kind="bridge", parent="eth0")
    with pytest.raises(InvalidInput, match="peer is only for kind=veth, not bridge"):
        spec(ifname="br0", kind="bridge", peer={"ifname": "x"})
    links.ensure_links(reg, [_pair()])
    with pytest.raises(GuestConflict, match=r"link .to-b. differs in a way that cannot change in place \(kind is veth, not bridge\)"):
        links.ensure_links(reg, [{"guest": "lk-a", "ifname": "to-b", "kind": "bridge"}])


def _sysctl(reg, name, ifname) -> str:
    """The kernel's own word: net.ipv6.conf.IFNAME.disable_ipv6 read inside the guest's namespace."""
    pin = reg.load(name).pins["net"].path
    return subprocess.run(["nsenter", "--net=" + pin, "cat", "/proc/sys/net/ipv6/conf/%s/disable_ipv6" % ifname],
                          capture_output=True, text=True, check=True).stdout.strip()


def _v6_state(reg, name, ifname):
    """(IPv6 addresses of the link, link-local ones too; IPv6 routes through it, every table)."""
    addrs = sorted(a["local"] for item in _ns_json(reg, name, "addr", "show", "dev", ifname)
                   for a in item.get("addr_info", ()) if a.get("family") == "inet6")
    routes = sorted(r["dst"] for r in _ns_json(reg, name, "-6", "route", "show", "table", "all", "dev", ifname))
    return addrs, routes


def test_ipv6_off_on_both_ends_is_set_before_they_are_up_and_idempotent(two_guests):
    """ipv6: false on a new veth's two ends: the kernel made no link-local address and no IPv6 route
    (nor the ff00::/8 and fe80::/64 routes every IPv6 link gets); the rerun changes nothing; check
    mode predicts; turning it on again in place brings the kernel's link-local address back."""
    reg = two_guests
    entry = _pair(addresses=["198.19.200.1/30"], ipv6=False, peer={"guest": "lk-b", "ifname": "to-a", "addresses": ["198.19.200.2/30"], "ipv6": False})
    check = links.ensure_links(reg, [entry], check_mode=True)
    assert check["changed"] and check["diff"]["after"]["guest 'lk-a': to-b"]["ipv6"] is False
    assert _link(reg, "lk-a", "to-b") is None
    net = links.Net(reg)
    try:  # the order of the steps: each end's IPv6 off before it goes up
        steps = [name for name, _args in links.plan_links(net, links.normalize([entry]))[0].steps]
    finally:
        net.close()
    assert steps.index("create") < steps.index("ipv6") < steps.index("configure")
    assert steps.index("peer_ipv6") < steps.index("peer")
    first = links.ensure_links(reg, [entry])
    assert first["changed"] and first["results"][0]["link"]["ipv6"] is False and first["results"][0]["link"]["peer"]["ipv6"] is False
    assert _sysctl(reg, "lk-a", "to-b") == "1" and _sysctl(reg, "lk-b", "to-a") == "1"
    assert _v6_state(reg, "lk-a", "to-b") == ([], []) and _v6_state(reg, "lk-b", "to-a") == ([], [])
    assert "UP" in _link(reg, "lk-a", "to-b")["flags"] and _addrs(_link(reg, "lk-a", "to-b")) == ["198.19.200.1/30"]
    again = links.ensure_links(reg, [entry])
    assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"]
    assert again["diff"]["before"]["guest 'lk-a': to-b"]["ipv6"] is False
    # left out, ipv6 is left as it is
    assert not links.ensure_links(reg, [_pair(addresses=["198.19.200.1/30"], peer={"guest": "lk-b", "ifname": "to-a"})])["changed"]
    # on again, in place: a check run predicts it and changes nothing, a real run does it, a rerun is quiet
    on = dict(entry, ipv6=True, addresses=["198.19.200.1/30", "fd00:c8::1/64"])
    check = links.ensure_links(reg, [on], check_mode=True)
    assert check["changed"] and check["results"][0]["action"] == "update" and _sysctl(reg, "lk-a", "to-b") == "1"
    out = links.ensure_links(reg, [on])
    assert out["results"][0]["action"] == "update" and out["results"][0]["link"]["ipv6"] is True
    assert _sysctl(reg, "lk-a", "to-b") == "0" and _sysctl(reg, "lk-b", "to-a") == "1"
    addrs, routes = _v6_state(reg, "lk-a", "to-b")
    assert "fd00:c8::1" in addrs and any(a.startswith("fe80::") for a in addrs) and "fe80::/64" in routes
    assert not links.ensure_links(reg, [on])["changed"]
    # off again: the kernel takes the IPv6 addresses, the managed one first removed by the module
    off = dict(entry, ipv6=False)
    out = links.ensure_links(reg, [off])
    assert out["changed"] and out["results"][0]["link"]["addresses"] == ["198.19.200.1/30"]
    assert _sysctl(reg, "lk-a", "to-b") == "1" and _v6_state(reg, "lk-a", "to-b") == ([], [])
    assert not links.ensure_links(reg, [off])["changed"]


def test_ipv6_false_with_ipv6_input_fails_before_anything_is_made(two_guests):
    reg = two_guests
    before = (_addr_state(reg, "lk-a"), _addr_state(reg, "lk-b"))
    with pytest.raises(InvalidInput, match=r"^links\[1\]\.peer\.ipv6 is false, but IPv6 is asked for on the same link: fd00:c8::2/64"):
        links.ensure_links(reg, [dict(_pair(ifname="x-b", peer={"guest": "lk-b", "ifname": "x-a"}), _in_list=True),
                                 dict(_pair(peer={"guest": "lk-b", "ifname": "to-a", "addresses": ["fd00:c8::2/64"], "ipv6": False}), _in_list=True)])
    assert (_addr_state(reg, "lk-a"), _addr_state(reg, "lk-b")) == before
