"""rtnl.Reader, netns_link's read-only netlink client, against pyroute2 on real namespaces.

Two guests of a unit_registry get a varied network state (a guest-to-guest veth made by
ensure_links, a bridge with a port, a veth with a point-to-point address, an alias, a
MAC and an MTU set by hand, IPv4 and IPv6 addresses, routes of the module's protocol and
others, a blackhole and a route in another table).  The reader must decode every field
links.py compares exactly as pyroute2 does; never the machine's own namespace, whose
state changes under a test run.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import guests, links, rtnl
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import KernelError

pytestmark = pytest.mark.unit
pyroute2 = pytest.importorskip("pyroute2")

SETUP_A = [
    "link set lo up",
    "link add va0 type veth peer name va1",
    "link set va0 address 02:00:c6:13:00:0a mtu 1400 alias hand-made up",
    "link add br0 type bridge",
    "link set va1 master br0 up",
    "link set br0 up",
    "link add d0 type veth peer name d1",
    "link set d0 up",
    "addr add 198.19.230.1/24 dev va0",
    "addr add 198.19.231.1 peer 198.19.231.2/32 dev d0",
    "addr add fd00:e6::1/64 dev va0 nodad",
    "addr add 198.19.232.1/24 dev br0",
    "route add 198.19.240.0/24 via 198.19.230.9 metric 7 proto 76",
    "route add default via 198.19.230.254",
    "route add blackhole 198.19.241.0/24",
    "route add 198.19.242.0/24 dev d0 table 100",
    "-6 route add fd00:f0::/64 via fd00:e6::9 proto 76",
]


def ip(pin: str, *args: str) -> str:
    return subprocess.run(["nsenter", "--net=" + pin, "ip", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def varied(unit_registry):
    reg = unit_registry
    guests.ensure_guests(reg, [{"name": "rt-a", "namespaces": ["net"]}, {"name": "rt-b", "namespaces": ["net"]}])
    out = links.ensure_links(reg, [{"guest": "rt-a", "ifname": "to-b", "addresses": ["198.19.233.1/30"],
                                    "peer": {"guest": "rt-b", "ifname": "to-a", "addresses": ["198.19.233.2/30"]}}])
    assert out["changed"]
    pin = reg.load("rt-a").pins["net"].path
    for line in SETUP_A:
        ip(pin, *line.split())
    subprocess.run(["nsenter", "--net=" + pin, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/d1/disable_ipv6"], check=True)
    return reg


def _in(pin: str, make):
    """``make()`` inside the network namespace at ``pin`` (a socket made there stays there)."""
    own, target = os.open("/proc/self/ns/net", os.O_RDONLY), os.open(pin, os.O_RDONLY)
    try:
        sc.setns(target, "net")
        try:
            return make()
        finally:
            sc.setns(own, "net")
    finally:
        os.close(own)
        os.close(target)


def _pyroute2_views(ipr) -> tuple:
    """The fields links.py reads, as pyroute2 decodes them (what links.py used before rtnl)."""
    linkv = []
    for msg in ipr.get_links():
        info = msg.get_attr("IFLA_LINKINFO")
        linkv.append({
            "index": msg["index"], "flags": msg["flags"], "ifname": msg.get_attr("IFLA_IFNAME"),
            "kind": info.get_attr("IFLA_INFO_KIND") if info is not None else None,
            "mac": msg.get_attr("IFLA_ADDRESS"), "mtu": msg.get_attr("IFLA_MTU"), "alias": msg.get_attr("IFLA_IFALIAS"),
            "link": msg.get_attr("IFLA_LINK"), "link_netnsid": msg.get_attr("IFLA_LINK_NETNSID"), "master": msg.get_attr("IFLA_MASTER"),
            "ipv6": _pyroute2_ipv6(msg),
        })
    addrv = []
    for msg in ipr.get_addr():
        fam = msg["family"]
        addr = msg.get_attr("IFA_ADDRESS") if fam == socket.AF_INET6 else (msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS"))
        addrv.append({"family": fam, "index": msg["index"], "prefixlen": msg["prefixlen"], "address": addr})
    routev = {}
    for fam in (socket.AF_INET, socket.AF_INET6):
        routev[fam] = [{
            "table": msg.get_attr("RTA_TABLE") or msg["table"], "type": msg["type"], "proto": msg["proto"],
            "dst": msg.get_attr("RTA_DST"), "dst_len": msg["dst_len"], "gateway": msg.get_attr("RTA_GATEWAY"),
            "priority": msg.get_attr("RTA_PRIORITY"), "oif": msg.get_attr("RTA_OIF"),
        } for msg in ipr.get_routes(family=fam)]
    return linkv, addrv, routev


def _pyroute2_ipv6(msg):
    af_spec = msg.get_attr("IFLA_AF_SPEC")
    inet6 = af_spec.get_attr("AF_INET6") if af_spec is not None else None
    conf = inet6.get_attr("IFLA_INET6_CONF") if inet6 is not None else None
    return None if conf is None else conf["disable_ipv6"] == 0


def _key(d: dict):
    return sorted((k, str(v)) for k, v in d.items())


@pytest.mark.parametrize("guest", ["rt-a", "rt-b"])
def test_the_reader_decodes_what_pyroute2_decodes(varied, guest):
    pin = varied.load(guest).pins["net"].path
    ipr = _in(pin, pyroute2.IPRoute)
    rd = _in(pin, lambda: rtnl.Reader("guest %r" % guest))
    try:
        want_links, want_addrs, want_routes = _pyroute2_views(ipr)
        got_links, got_addrs = rd.links(), rd.addresses()
        got_routes = {fam: rd.routes(fam) for fam in want_routes}
    finally:
        ipr.close()
        rd.close()
    assert sorted(map(_key, got_links)) == sorted(map(_key, want_links))
    assert sorted(map(_key, got_addrs)) == sorted(map(_key, want_addrs))
    for fam in want_routes:
        assert sorted(map(_key, got_routes[fam])) == sorted(map(_key, want_routes[fam]))
    # and the state is the varied one, not two empty lists that agree
    names = {v["ifname"] for v in got_links}
    if guest == "rt-a":
        assert {"lo", "to-b", "va0", "va1", "br0", "d0"} <= names
        by_name = {v["ifname"]: v for v in got_links}
        assert by_name["va0"]["mac"] == "02:00:c6:13:00:0a" and by_name["va0"]["mtu"] == 1400 and by_name["va0"]["alias"] == "hand-made"
        assert by_name["va1"]["master"] == by_name["br0"]["index"] and by_name["br0"]["kind"] == "bridge"
        assert by_name["to-b"]["kind"] == "veth" and by_name["to-b"]["link_netnsid"] is not None
        assert by_name["d1"]["ipv6"] is False and by_name["d0"]["ipv6"] is True  # and as the kernel's own sysctl says:
        for name in ("d0", "d1", "va0"):
            out = subprocess.run(["nsenter", "--net=" + pin, "cat", "/proc/sys/net/ipv6/conf/%s/disable_ipv6" % name],
                                 check=True, capture_output=True, text=True).stdout.strip()
            assert by_name[name]["ipv6"] is (out == "0")
        assert {"address": "198.19.231.1", "prefixlen": 32} in [{k: a[k] for k in ("address", "prefixlen")} for a in got_addrs]
        v4 = got_routes[socket.AF_INET]
        assert any(r["proto"] == 76 and r["priority"] == 7 and r["gateway"] == "198.19.230.9" for r in v4)
        assert any(r["table"] == 100 for r in v4) and any(r["type"] != 1 for r in v4)
        assert any(r["proto"] == 76 and r["dst"] == "fd00:f0::" for r in got_routes[socket.AF_INET6])
    else:
        assert {"lo", "to-a"} <= names


def test_a_dump_over_many_datagrams_is_read_whole(varied):
    """300 veth pairs: the link dump (~1 KiB a link) spans many datagrams; nothing is lost or
    read twice, and the address dump agrees too."""
    pin = varied.load("rt-b").pins["net"].path
    batch = "".join("link add m%d type veth peer name n%d\naddr add 198.18.%d.%d/32 dev m%d\n" % (i, i, 10 + i // 250, i % 250 + 1, i)
                    for i in range(300))
    subprocess.run(["nsenter", "--net=" + pin, "ip", "-batch", "-"], input=batch, text=True, check=True, capture_output=True)
    ipr = _in(pin, pyroute2.IPRoute)
    rd = _in(pin, lambda: rtnl.Reader("guest 'rt-b'"))
    try:
        want_links, want_addrs, _routes = _pyroute2_views(ipr)
        got_links, got_addrs = rd.links(), rd.addresses()
    finally:
        ipr.close()
        rd.close()
    assert len(got_links) == len(want_links) >= 602 and len({v["index"] for v in got_links}) == len(got_links)
    assert sorted(map(_key, got_links)) == sorted(map(_key, want_links))
    assert sorted(map(_key, got_addrs)) == sorted(map(_key, want_addrs)) and len(got_addrs) >= 300


def test_links_planning_reads_through_the_reader_and_a_rerun_never_imports_pyroute2(varied, monkeypatch):
    entry = {"guest": "rt-a", "ifname": "to-b", "addresses": ["198.19.233.1/30"],
             "peer": {"guest": "rt-b", "ifname": "to-a", "addresses": ["198.19.233.2/30"]}}

    def no_import():
        raise AssertionError("a run that changes nothing imported pyroute2")

    with monkeypatch.context() as m:  # only these two: the fixture's own settings stay
        m.setattr(links, "_pyroute2", None)
        m.setattr(links, "pyroute2_module", no_import)
        out = links.ensure_links(varied, [entry])
    assert not out["changed"] and out["results"][0]["link"]["addresses"] == ["198.19.233.1/30"]
    assert out["pyroute2"] not in (None, "", "unknown")  # still reported, from the package's metadata
    # a change after the rerun: pyroute2 does it, and the reader sees it on the next run
    out = links.ensure_links(varied, [dict(entry, addresses=["198.19.233.1/30", "fd00:e9::1/64"])])
    assert out["changed"]
    again = links.ensure_links(varied, [dict(entry, addresses=["198.19.233.1/30", "fd00:e9::1/64"])])
    assert not again["changed"]


def test_a_datagram_larger_than_the_buffer_is_a_clear_error_not_a_short_answer(varied, monkeypatch):
    pin = varied.load("rt-a").pins["net"].path
    monkeypatch.setattr(rtnl, "BUFFER", 256)  # smaller than one RTM_NEWLINK message
    rd = _in(pin, lambda: rtnl.Reader("guest 'rt-a'"))
    try:
        with pytest.raises(KernelError, match=r"netlink dump of links in guest 'rt-a': a datagram of \d+ bytes is larger than the 256"):
            rd.links()
    finally:
        rd.close()


def test_a_closed_reader_fails_with_the_namespace_named():
    rd = rtnl.Reader("guest 'gone'")
    rd.close()
    with pytest.raises(KernelError, match=r"netlink dump of addresses in guest 'gone': send failed"):
        rd.addresses()


def test_one_link_asked_by_name_is_what_the_dump_gives_for_it(varied):
    """Reader.link(name), one RTM_GETLINK request: every link of the varied namespace equals
    its entry of the dump; a missing name, an alternative name and a name no link can have
    are None, and a failure names the link and the namespace."""
    pin = varied.load("rt-a").pins["net"].path
    ip(pin, "link", "property", "add", "dev", "va0", "altname", "va0-alternative")
    rd = _in(pin, lambda: rtnl.Reader("guest 'rt-a'"))
    try:
        every = rd.links()
        assert len(every) >= 7
        for v in every:
            assert rd.link(v["ifname"]) == v
        assert rd.link("va0")["alias"] == "hand-made"
        assert rd.link("nosuchlink") is None
        assert rd.link("va0-alternative") is None  # the kernel finds va0 by it; its name is not that
        assert rd.link("x" * 16) is None and rd.link("") is None
    finally:
        rd.close()
    with pytest.raises(KernelError, match=r"netlink dump of link 'va0' in guest 'rt-a': send failed"):
        rd.link("va0")


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_routes_of_one_table_are_filtered_by_the_kernel_and_equal_the_filtered_dump(varied, family):
    """routes(family, table, rtype) gives exactly the plain dump's routes of that table and
    type, and the kernel did the filtering (strict checking): the raw answer to the filtered
    request holds no route of another table."""
    pin = varied.load("rt-a").pins["net"].path
    rd = _in(pin, lambda: rtnl.Reader("guest 'rt-a'"))
    try:
        every = rd.routes(family)
        for table, rtype in ((links.MAIN_TABLE, links.RTN_UNICAST), (links.MAIN_TABLE, None), (100, None), (255, None)):
            want = [r for r in every if r["table"] == table and (rtype is None or r["type"] == rtype)]
            assert rd.routes(family, table=table, rtype=rtype) == want
        assert any(r["table"] != links.MAIN_TABLE for r in every)  # the local table at least: the filter has work
        ask = rtnl._RTMSG.pack(family, 0, 0, 0, links.MAIN_TABLE, 0, 0, 0, 0) + rtnl._rtattr(rtnl.RTA_TABLE, rtnl._U32.pack(links.MAIN_TABLE))
        raw = [head for head, a in rd._decoded(rtnl.RTM_GETROUTE, rtnl.RTM_NEWROUTE, rtnl._RTMSG, ask, "routes")]
        assert raw and all(head[4] == links.MAIN_TABLE for head in raw)
        assert len(raw) < len(every)
    finally:
        rd.close()


def test_routes_of_a_table_the_namespace_does_not_have_are_none(unit_registry):
    """A fresh network namespace (lo up, nothing else) has no IPv4 main table yet: the kernel
    answers a filtered dump with ENOENT, which is no routes, not an error."""
    guests.ensure_guests(unit_registry, [{"name": "rt-c", "namespaces": ["net"]}])
    pin = unit_registry.load("rt-c").pins["net"].path
    rd = _in(pin, lambda: rtnl.Reader("guest 'rt-c'"))
    try:
        every = rd.routes(socket.AF_INET)
        assert every and all(r["table"] != links.MAIN_TABLE for r in every)  # lo's, in the local table
        assert rd.routes(socket.AF_INET, table=links.MAIN_TABLE, rtype=links.RTN_UNICAST) == []
    finally:
        rd.close()


def test_a_filter_the_kernel_refuses_falls_back_to_the_plain_dump(varied, monkeypatch):
    """EINVAL to the filtered request (a family that takes no filter, such as MPLS, answers
    a dump too): the plain dump, filtered by the reader, gives the same routes."""
    pin = varied.load("rt-a").pins["net"].path
    rd = _in(pin, lambda: rtnl.Reader("guest 'rt-a'"))
    try:
        want = rd.routes(socket.AF_INET, table=links.MAIN_TABLE, rtype=links.RTN_UNICAST)
        real = rtnl.Reader._decoded
        asked = []

        def refuse_filters(self, request, reply, head, header, what, wanted=None):
            asked.append(len(header))
            if len(header) > head.size:  # the filtered request carries RTA_TABLE
                raise KernelError("netlink dump of routes: failed: Invalid argument", errno=22)
            return real(self, request, reply, head, header, what, wanted)

        monkeypatch.setattr(rtnl.Reader, "_decoded", refuse_filters)
        assert rd.routes(socket.AF_INET, table=links.MAIN_TABLE, rtype=links.RTN_UNICAST) == want
        assert want and len(asked) == 2
    finally:
        rd.close()


def test_a_no_change_rerun_asks_each_link_by_name_and_dumps_no_link_table(varied, monkeypatch):
    """A guest-to-guest veth rerun reads the link and its peer one request each: no namespace's
    whole link table is dumped (at 10,000 guests, the host's holds 10,000 veth ends)."""
    entry = {"guest": "rt-a", "ifname": "to-b", "addresses": ["198.19.233.1/30"],
             "peer": {"guest": "rt-b", "ifname": "to-a", "addresses": ["198.19.233.2/30"]}}
    dumps, asked = [], []
    real_links, real_link = rtnl.Reader.links, rtnl.Reader.link
    monkeypatch.setattr(rtnl.Reader, "links", lambda self: dumps.append(self.label) or real_links(self))
    monkeypatch.setattr(rtnl.Reader, "link", lambda self, name: asked.append((self.label, name)) or real_link(self, name))
    out = links.ensure_links(varied, [entry])
    assert not out["changed"] and out["results"][0]["link"]["peer"]["addresses"] == ["198.19.233.2/30"]
    assert dumps == []
    assert sorted(asked) == [("guest 'rt-a'", "to-b"), ("guest 'rt-b'", "to-a")]


def _ip_json(pin: str, *args: str) -> list:
    import json

    return json.loads(ip(pin, "-d", "-j", *args))


def _made(pin: str, name: str) -> dict:
    """What `ip -d addr show` says of a link, without what differs between two equal links."""
    view = _ip_json(pin, "addr", "show", "dev", name)[0]
    for key in ("ifindex", "ifname", "address", "link_index", "link", "operstate"):
        view.pop(key, None)
    view["addr_info"] = sorted((a["family"], a["prefixlen"], a.get("scope"), a.get("nodad", False), a.get("broadcast"))
                               for a in view["addr_info"] if a.get("scope") != "link")
    return view


def test_the_writer_makes_the_links_and_addresses_ip_makes(unit_registry):
    """A veth pair, its settings and addresses made by rtnl's writer are, as `ip` shows
    them, what `ip link add ... type veth peer ...`, `ip link set` and `ip addr add` make;
    an address twice is refused with the kernel's EEXIST, removing one removes it, and
    set_link(up=False) takes the link down."""
    import ipaddress

    guests.ensure_guests(unit_registry, [{"name": "wr-a", "namespaces": ["net"]}])
    pin = unit_registry.load("wr-a").pins["net"].path
    for line in ("link add ia mtu 1400 address 02:00:c6:13:00:0b type veth peer name ib mtu 1300",
                 "link set ia mtu 1400 alias linuxns up",
                 "addr add 198.19.250.1/24 dev ia",
                 "addr add fd00:fa::1/64 dev ia nodad"):
        ip(pin, *line.split())

    def write(rd):
        fd = os.open(pin, os.O_RDONLY)  # the guest's namespace, never the test runner's
        try:
            rd.add_veth("wa", fd, {"ifname": "wb", "ns_fd": fd, "mtu": 1300, "mac": None}, mtu=1400, mac="02:00:c6:13:00:0c")
        finally:
            os.close(fd)
        index = rd.link("wa")["index"]
        rd.set_link(index, up=True, ifalias="linuxns", mtu=1400)
        rd.address(True, index, ipaddress.ip_address("198.19.251.1"), 24)
        rd.address(True, index, ipaddress.ip_address("fd00:fb::1"), 64, nodad=True)
        return index

    rd = _in(pin, rtnl.Reader)
    try:
        index = write(rd)
        assert _made(pin, "wa") == _made(pin, "ia")
        assert _made(pin, "wb") == _made(pin, "ib")
        assert _ip_json(pin, "link", "show", "dev", "wa")[0]["address"] == "02:00:c6:13:00:0c"
        assert _ip_json(pin, "link", "show", "dev", "wa")[0]["link"] == "wb"
        with pytest.raises(OSError) as info:
            rd.address(True, index, ipaddress.ip_address("198.19.251.1"), 24)
        assert info.value.errno == errno.EEXIST
        rd.address(False, index, ipaddress.ip_address("198.19.251.1"), 24)
        assert [a["local"] for a in _ip_json(pin, "addr", "show", "dev", "wa")[0]["addr_info"] if a["family"] == "inet"] == []
        rd.set_link(index, up=False)
        assert "UP" not in _ip_json(pin, "link", "show", "dev", "wa")[0]["flags"]
        with pytest.raises(OSError) as info:
            rd.set_link(index + 1000, up=True)
        assert info.value.errno == errno.ENODEV
    finally:
        rd.close()
