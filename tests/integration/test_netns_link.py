"""netns_link over real ssh against lab hosts.

Every case runs check mode, then the task twice (``converge``), and is verified from
outside with ``ip -n GUEST -j link/addr/route`` and ``ip netns exec GUEST busybox ping``
run inside the lab host (tests/lab/lab.py exec).  Guest networks use 198.19.0.0/16 and
fd00:19::/32 only (198.18.N.0/24 are the lab hosts' own links).

This kernel has no dummy driver: when ``ip link add … type dummy`` fails, a veth end
made from outside stands in as the "host interface" (macvlan parent, physical move).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from harness import lab_exec as _lab_exec

pytestmark = pytest.mark.integration

MOD = "linuxns.guests.netns_link"
CREATE = "linuxns.guests.namespace_create"
GUESTS = ("lk1", "lk2", "lk3")
BRIDGE = "lnbr-t"
HOST_LINKS = ("vh-lk1", "vb-lk1", "vb-lk2", "vb-lk3", BRIDGE, "lnpar0", "lnpar0b", "lnphy0", "lnphy0b", "vh-lk9", "vg-lk1")
REPO = Path(__file__).resolve().parents[2]
# Lab hosts see the machine's files but not its /tmp, where a checkout may live: the
# venvs go under /var/tmp, one folder per test run, removed at the end of this module.
VENV_DIR = Path("/var/tmp/linuxns-test-venvs-%d" % os.getpid())


@pytest.fixture(scope="module", autouse=True)
def _remove_venvs():
    yield
    shutil.rmtree(str(VENV_DIR), ignore_errors=True)


PYROUTE2_09 = "0.9.7"


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def ipj(lab_exec, args, guest=None, host="lab1"):
    argv = ["ip"] + (["-n", guest] if guest else []) + ["-j"] + list(args)
    return json.loads(lab_exec(host, argv).stdout or "[]")


def link(lab_exec, ifname, guest=None):
    for item in ipj(lab_exec, ["addr", "show"], guest):
        if item["ifname"] == ifname:
            return item
    return None


def addrs(item):
    return sorted("%s/%s" % (a["local"], a["prefixlen"]) for a in item.get("addr_info", []) if a.get("scope") != "link")


def routes(lab_exec, guest, family="-4"):
    return [(r["dst"], r.get("gateway"), r.get("metric")) for r in ipj(lab_exec, [family, "route", "show", "proto", "76"], guest)]


def ping(lab_exec, guest, address, host="lab1"):
    argv = ["ip", "netns", "exec", guest, "busybox", "ping", "-c", "1", "-W", "3", address]
    out = lab_exec(host, argv, check=False)
    return out.returncode == 0


def all_links(lab_exec):
    """Every link (name, kind-ish) in the lab host and in each test guest."""
    out = {"host": sorted(i["ifname"] for i in ipj(lab_exec, ["link", "show"]))}
    for g in GUESTS:
        out[g] = sorted(i["ifname"] for i in ipj(lab_exec, ["link", "show"], g))
    return out


def addr_snapshot(lab_exec):
    """Global addresses per link of the lab host and each test guest (link-local ones come and go with DAD)."""
    out = {}
    for where in (None,) + GUESTS:
        out[where or "host"] = {i["ifname"]: addrs(i) for i in ipj(lab_exec, ["addr", "show"], where)}
    return out


def make_parent(lab_exec, name):
    """A host interface to hand out: a dummy, or a veth end where there is no dummy driver."""
    lab_exec("lab1", ["ip", "link", "del", name], check=False)
    if lab_exec("lab1", ["ip", "link", "add", name, "type", "dummy"], check=False).returncode != 0:
        lab_exec("lab1", ["ip", "link", "add", name, "type", "veth", "peer", "name", name + "b"])
    lab_exec("lab1", ["ip", "link", "set", name, "up"])


@pytest.fixture(scope="module")
def guests3(lab, ansible):
    """Guests lk1..lk3 on lab1 (net, uts, mnt namespaces); removed with every test link afterwards."""
    try:
        ansible.playbook([{"name": "guests", CREATE: {"guests": [{"name": g} for g in GUESTS], "namespaces": ["net", "uts", "mnt"]}}])
        yield GUESTS
    finally:
        ansible.playbook([{"name": "remove guests", CREATE: {"guests": [{"name": g} for g in GUESTS], "state": "absent"}}])
        for name in HOST_LINKS:
            _lab_exec(lab, "lab1", ["ip", "link", "del", name], check=False)


def task(args, name=None):
    return {"name": name or "netns_link", MOD: args}


# ------------------------------------------------------------------------------------------
# cases
# ------------------------------------------------------------------------------------------
def test_host_guest_veth_v4_v6_routes_and_gateways(guests3, converge, lab_exec):
    args = {
        "guest": "lk1", "ifname": "eth0", "mtu": 1400,
        "addresses": ["198.19.1.2/24", "fd00:19:1::2/64"],
        "gateway": "198.19.1.1", "gateway6": "fd00:19:1::1",
        "routes": [{"dst": "198.19.100.0/24", "gateway": "198.19.1.1", "metric": 20}],
        "peer": {"ifname": "vh-lk1", "addresses": ["198.19.1.1/24", "fd00:19:1::1/64"]},
    }
    c = converge(task(args), diff=True)
    assert c.check.changed and c.first["action"] == "create" and c.second["action"] == "none"
    assert c.check["diff"]["before"] == {} and c.check["diff"]["after"]["addresses"] == ["198.19.1.2/24", "fd00:19:1::2/64"]
    assert c.second["diff"]["before"] == c.second["diff"]["after"]
    assert c.first["pyroute2"].startswith("0.7")  # Debian 12's python3-pyroute2 under /usr/bin/python3
    guest_side, host_side = link(lab_exec, "eth0", "lk1"), link(lab_exec, "vh-lk1")
    assert addrs(guest_side) == ["198.19.1.2/24", "fd00:19:1::2/64"] and addrs(host_side) == ["198.19.1.1/24", "fd00:19:1::1/64"]
    assert guest_side["mtu"] == 1400 and host_side["mtu"] == 1400 and "UP" in guest_side["flags"] and "UP" in host_side["flags"]
    assert guest_side["link_index"] == host_side["ifindex"] and host_side["link_index"] == guest_side["ifindex"]
    assert c.first["link"]["index"] == guest_side["ifindex"] and c.first["link"]["peer"]["index"] == host_side["ifindex"]
    assert [i.get("ifalias") for i in ipj(lab_exec, ["link", "show", "eth0"], "lk1")] == ["linuxns.guests"]
    assert routes(lab_exec, "lk1") == [("default", "198.19.1.1", None), ("198.19.100.0/24", "198.19.1.1", 20)]
    assert routes(lab_exec, "lk1", "-6") == [("default", "fd00:19:1::1", 1024)]
    assert ping(lab_exec, "lk1", "198.19.1.1") and ping(lab_exec, "lk1", "fd00:19:1::1")

    # an address and a route added by hand: the address on the marked link goes, the route stays
    lab_exec("lab1", ["ip", "-n", "lk1", "addr", "add", "198.19.2.9/24", "dev", "eth0"])
    lab_exec("lab1", ["ip", "-n", "lk1", "route", "add", "198.19.101.0/24", "via", "198.19.1.1"])
    c = converge(task(dict(args, routes=[])), check_idempotent=True)
    assert c.first["action"] == "update"
    assert addrs(link(lab_exec, "eth0", "lk1")) == ["198.19.1.2/24", "fd00:19:1::2/64"]
    assert routes(lab_exec, "lk1") == [("default", "198.19.1.1", None)]
    assert "198.19.101.0/24" in [r["dst"] for r in ipj(lab_exec, ["route", "show"], "lk1")]


def test_guest_to_guest_veth_and_ping(guests3, converge, lab_exec):
    args = {"guest": "lk2", "ifname": "to-lk3", "addresses": ["198.19.3.1/30", "fd00:19:3::1/64"],
            "peer": {"guest": "lk3", "ifname": "to-lk2", "addresses": ["198.19.3.2/30", "fd00:19:3::2/64"]}}
    c = converge(task(args))
    assert c.first["link"]["peer"]["namespace"] == "guest 'lk3'"
    a, b = link(lab_exec, "to-lk3", "lk2"), link(lab_exec, "to-lk2", "lk3")
    assert addrs(a) == ["198.19.3.1/30", "fd00:19:3::1/64"] and addrs(b) == ["198.19.3.2/30", "fd00:19:3::2/64"]
    assert a["link_index"] == b["ifindex"] and b["link_index"] == a["ifindex"]
    assert "to-lk3" not in all_links(lab_exec)["host"] and "to-lk2" not in all_links(lab_exec)["host"]
    assert ping(lab_exec, "lk2", "198.19.3.2") and ping(lab_exec, "lk3", "fd00:19:3::1")


def test_bridge_with_three_guests_pinging_each_other_and_the_host(guests3, converge, lab_exec):
    args = {
        "ifname": "lan0",
        "peer": {"bridge": BRIDGE, "bridge_addresses": ["198.19.4.1/24"]},
        "links": [
            {"guest": g, "addresses": ["198.19.4.1%d/24" % i], "routes": [{"dst": "default", "gateway": "198.19.4.1", "metric": 100}],
             "peer": {"ifname": "vb-" + g}}
            for i, g in enumerate(GUESTS, start=1)
        ],
    }
    c = converge(task(args), diff=True)
    assert [r["action"] for r in c.first["links"]] == ["create"] * 3
    assert [r["action"] for r in c.second["links"]] == ["none"] * 3
    assert sorted(c.check["diff"]["after"]) == ["guest 'lk1': lan0", "guest 'lk2': lan0", "guest 'lk3': lan0"]
    br = link(lab_exec, BRIDGE)
    assert addrs(br) == ["198.19.4.1/24"] and "UP" in br["flags"]
    ports = sorted(i["ifname"] for i in ipj(lab_exec, ["link", "show", "master", BRIDGE]))
    assert ports == ["vb-lk1", "vb-lk2", "vb-lk3"]
    for i, g in enumerate(GUESTS, start=1):
        assert addrs(link(lab_exec, "lan0", g)) == ["198.19.4.1%d/24" % i]
        assert ("default", "198.19.4.1", 100) in routes(lab_exec, g)
    assert ping(lab_exec, "lk1", "198.19.4.12") and ping(lab_exec, "lk2", "198.19.4.13") and ping(lab_exec, "lk3", "198.19.4.11")
    assert all(ping(lab_exec, g, "198.19.4.1") for g in GUESTS)

    # absent removes each link and its peer, and nothing else (the bridge stays)
    gone = {"ifname": "lan0", "state": "absent", "links": [{"guest": g} for g in GUESTS]}
    c = converge(task(gone))
    assert [r["action"] for r in c.first["links"]] == ["remove"] * 3
    after = all_links(lab_exec)
    assert not {"vb-lk1", "vb-lk2", "vb-lk3"} & set(after["host"]) and BRIDGE in after["host"]
    assert all("lan0" not in after[g] for g in GUESTS)


def test_macvlan_on_a_host_parent_and_physical_move_in_and_back(guests3, converge, lab_exec):
    make_parent(lab_exec, "lnpar0")
    make_parent(lab_exec, "lnphy0")
    mac = link(lab_exec, "lnphy0")["address"]
    args = {"links": [
        {"guest": "lk1", "ifname": "mv0", "kind": "macvlan", "parent": "lnpar0", "addresses": ["198.19.5.2/24"],
         "routes": [{"dst": "198.19.50.0/24", "gateway": "198.19.5.1"}]},
        {"guest": "lk2", "ifname": "ext0", "kind": "physical", "parent": "lnphy0", "addresses": ["198.19.6.2/24"]},
    ]}
    c = converge(task(args))
    assert [r["action"] for r in c.first["links"]] == ["create", "create"]
    assert c.first["links"][0]["link"]["kind"] == "macvlan"
    mv = ipj(lab_exec, ["-d", "link", "show", "mv0"], "lk1")[0]
    assert mv["linkinfo"]["info_kind"] == "macvlan" and mv["linkinfo"]["info_data"]["mode"] == "bridge"
    assert addrs(link(lab_exec, "mv0", "lk1")) == ["198.19.5.2/24"]
    assert ("198.19.50.0/24", "198.19.5.1", None) in routes(lab_exec, "lk1")
    moved = link(lab_exec, "ext0", "lk2")
    assert moved["address"] == mac and addrs(moved) == ["198.19.6.2/24"] and "UP" in moved["flags"]
    assert link(lab_exec, "lnphy0") is None

    for entry in args["links"]:
        entry["state"] = "absent"
    c = converge(task(args))
    assert [r["action"] for r in c.first["links"]] == ["remove", "remove"]
    assert link(lab_exec, "mv0", "lk1") is None and link(lab_exec, "lnpar0") is not None
    back = link(lab_exec, "lnphy0")
    assert back is not None and back["address"] == mac and link(lab_exec, "ext0", "lk2") is None


def test_return_unchanged_false_returns_the_links_that_changed(guests3, ansible_playbook, converge, lab_exec):
    links = [{"guest": "lk2", "ifname": "bf0", "addresses": ["198.19.7.1/30"], "peer": {"guest": "lk3", "ifname": "bf0", "addresses": ["198.19.7.2/30"]}},
             {"guest": "lk1", "ifname": "bf1", "addresses": ["198.19.7.5/30"], "peer": {"guest": "lk3", "ifname": "bf1", "addresses": ["198.19.7.6/30"]}}]
    try:
        ansible_playbook([task(links[0])])
        c = converge(task({"links": links, "return_unchanged": False}), diff=True)
        for run in (c.check, c.first):
            assert [(r["guest"], r["ifname"], r["action"]) for r in run["links"]] == [("lk1", "bf1", "create")] and run["unchanged"] == 1
        assert c.second["links"] == [] and c.second["unchanged"] == 2 and c.second["diff"] == {"before": {}, "after": {}}
        assert addrs(link(lab_exec, "bf1", "lk1")) == ["198.19.7.5/30"] and addrs(link(lab_exec, "bf1", "lk3")) == ["198.19.7.6/30"]
        assert addrs(link(lab_exec, "bf0", "lk2")) == ["198.19.7.1/30"] and ping(lab_exec, "lk1", "198.19.7.6")

        # an address taken away by hand: the brief result names that one link
        lab_exec("lab1", ["ip", "-n", "lk2", "addr", "del", "198.19.7.1/30", "dev", "bf0"])
        c = converge(task({"links": links, "return_unchanged": False}))
        assert [(r["guest"], r["ifname"], r["action"]) for r in c.first["links"]] == [("lk2", "bf0", "update")] and c.first["unchanged"] == 1
        assert addrs(link(lab_exec, "bf0", "lk2")) == ["198.19.7.1/30"] and ping(lab_exec, "lk2", "198.19.7.2")
    finally:
        ansible_playbook([task({"links": links, "state": "absent", "return_unchanged": False})])
    assert link(lab_exec, "bf0", "lk2") is None and link(lab_exec, "bf1", "lk1") is None and link(lab_exec, "bf0", "lk3") is None


def test_ipv6_false_on_the_host_end_leaves_the_host_no_ipv6_route_for_it(guests3, converge, lab_exec):
    """peer.ipv6: false on a host end (the setting for thousands of guests per host): the lab host's
    kernel has no link-local address and no IPv6 route for it, set before it went up; the
    guest's end keeps IPv6; the rerun is quiet; ipv6 on again in place brings fe80::/64 back."""
    args = {"guest": "lk2", "ifname": "v6off", "addresses": ["198.19.11.2/24", "fd00:19:11::2/64"],
            "peer": {"ifname": "vh-lk9", "addresses": ["198.19.11.1/24"], "ipv6": False}}
    host_v6 = ["ip", "-j", "-6", "route", "show", "table", "all", "dev", "vh-lk9"]
    sysctl = ["cat", "/proc/sys/net/ipv6/conf/vh-lk9/disable_ipv6"]
    try:
        c = converge(task(args), diff=True)
        assert c.check["diff"]["after"]["peer"]["ipv6"] is False and c.first["link"]["peer"]["ipv6"] is False
        assert c.first["link"]["ipv6"] is True and c.second["action"] == "none"
        assert lab_exec("lab1", sysctl).stdout.strip() == "1"
        assert json.loads(lab_exec("lab1", host_v6).stdout or "[]") == []
        host_end = link(lab_exec, "vh-lk9")
        assert [a for a in host_end.get("addr_info", []) if a["family"] == "inet6"] == [] and addrs(host_end) == ["198.19.11.1/24"]
        assert "UP" in host_end["flags"] and ping(lab_exec, "lk2", "198.19.11.1")
        assert lab_exec("lab1", ["ip", "netns", "exec", "lk2", "cat", "/proc/sys/net/ipv6/conf/v6off/disable_ipv6"]).stdout.strip() == "0"

        c = converge(task(dict(args, peer=dict(args["peer"], ipv6=True))))
        assert c.first["action"] == "update" and c.first["link"]["peer"]["ipv6"] is True
        assert lab_exec("lab1", sysctl).stdout.strip() == "0"
        assert "fe80::/64" in [r["dst"] for r in json.loads(lab_exec("lab1", host_v6).stdout or "[]")]
    finally:
        lab_exec("lab1", ["ip", "link", "del", "vh-lk9"], check=False)


def test_bad_input_fails_clearly_and_changes_nothing(guests3, ansible_playbook, lab_exec):
    good = {"guest": "lk1", "ifname": "good0", "addresses": ["198.19.10.2/24"], "routes": [{"dst": "198.19.110.0/24", "gateway": "198.19.10.1"}],
            "peer": {"ifname": "vg-lk1"}}
    ansible_playbook([task(good, "a link to conflict with")])
    base = {"guest": "lk1", "ifname": "bad0", "peer": {"ifname": "vh-lk9"}}
    cases = {
        "ifname too long": (dict(base, ifname="x" * 16), "ifname 'xxxxxxxxxxxxxxxx' is 16 characters long; an interface name has at most 15"),
        "ifname invalid": (dict(base, ifname="a/b"), "ifname 'a/b' is not a valid interface name"),
        "name taken": (dict(base, ifname="lo"), "ifname: 'lo' is taken in guest 'lk1' by a different link"),
        "bad cidr": (dict(base, addresses=["198.19.7.300/24"]), "addresses[0] '198.19.7.300/24' is not a valid CIDR address"),
        "address in use": (dict(base, addresses=["198.19.10.2/24"]), "address 198.19.10.2 is already in use on link 'good0' in guest 'lk1'"),
        "gateway unreachable": (dict(base, addresses=["198.19.7.2/24"], gateway="198.19.8.1"),
                                "gateway 198.19.8.1 (route to default) is not reachable on any link in guest 'lk1'"),
        "missing parent": ({"guest": "lk1", "ifname": "mv9", "kind": "macvlan", "parent": "nope0"}, "parent: host interface 'nope0' does not exist"),
        "missing bridge": (dict(base, peer={"ifname": "vh-lk9", "bridge": "nobr0", "bridge_create": False}),
                           "peer.bridge: bridge 'nobr0' does not exist in the host and peer.bridge_create is false"),
        "peer guest missing": (dict(base, peer={"ifname": "x9", "guest": "nope"}), "peer.guest: guest 'nope' does not exist on this host"),
        "guest missing": (dict(base, guest="nope"), "guest: guest 'nope' does not exist on this host"),
        "netns missing": ({"netns": "nope", "ifname": "bad0", "peer": {"ifname": "vh-lk9"}},
                          "netns: network namespace 'nope' does not exist (no /run/netns/nope)"),
        "route exists": (dict(base, addresses=["198.19.11.2/24"], routes=[{"dst": "198.19.110.0/24", "gateway": "198.19.11.1"}]),
                         "routes: a route to 198.19.110.0/24 with metric 0 already exists in guest 'lk1' "
                         "(via 198.19.10.1 on link 'good0', protocol 76)"),
        "peer differs": (dict(base, ifname="good0", peer={"ifname": "other9"}), "its peer is interface"),
    }
    before = all_links(lab_exec)
    before_addrs = addr_snapshot(lab_exec)
    run = ansible_playbook([dict(task(args, name), ignore_errors=True) for name, (args, _msg) in cases.items()])
    for name, (_args, msg) in cases.items():
        r = run.task(name)
        assert r.failed, "%s: did not fail: %s" % (name, r.result)
        assert msg in r["msg"], "%s: %r" % (name, r["msg"])
        assert "Traceback" not in r["msg"] and r.get("exception") in (None, "(traceback unavailable)")
    assert "set recreate=true to replace it" in run.task("peer differs")["msg"]
    assert all_links(lab_exec) == before
    assert addr_snapshot(lab_exec) == before_addrs


def test_namespace_info_expect_finds_drift_and_changes_nothing(guests3, ansible_playbook, converge, lab_exec):
    """namespace_info's expect: one call says whether namespace_create and netns_link tasks would
    change anything (each module's own check mode, over ssh); it never repairs the drift it finds."""
    pair = {"guest": "lk2", "ifname": "ex-lk3", "addresses": ["198.19.12.1/30"],
            "peer": {"guest": "lk3", "ifname": "ex-lk2", "addresses": ["198.19.12.2/30"]}}
    ansible_playbook([task({"links": [pair]}, "the link expect checks")])
    want = {"namespace_create": {"guests": [{"name": g} for g in GUESTS], "namespaces": ["net", "uts", "mnt"]},
            "netns_link": {"links": [pair]}}
    info = {"name": "expect", "linuxns.guests.namespace_info": {"expect": want}}
    # no drift: check mode, then twice; namespace_info itself never reports a change
    c = converge(info)
    for r in (c.check, c.first, c.second):
        assert r.changed is False and r["expect"]["changed"] is False, r.result
        assert [g["action"] for g in r["expect"]["namespace_create"]["guests"]] == ["none"] * 3
        assert [link["action"] for link in r["expect"]["netns_link"]["links"]] == ["none"]
        assert "guests" not in r.result  # expect given alone: the guests are not described
    # the very answer netns_link's own check mode gives
    checked = ansible_playbook([task({"links": [pair]}, "netns_link in check mode")], check=True).task("netns_link in check mode")
    assert c.first["expect"]["netns_link"]["links"] == checked["links"]
    # drift made from outside: an address gone in lk3, a guest's hostname changed in the declaration
    lab_exec("lab1", ["ip", "-n", "lk3", "addr", "del", "198.19.12.2/30", "dev", "ex-lk2"])
    want["namespace_create"]["guests"][0]["hostname"] = "lk1-renamed"
    c = converge(info)
    for r in (c.check, c.first, c.second):
        assert r.changed is False and r["expect"]["changed"] is True, r.result
        assert [g["action"] for g in r["expect"]["namespace_create"]["guests"]] == ["update", "none", "none"]
        assert [link["action"] for link in r["expect"]["netns_link"]["links"]] == ["update"]
    # nothing was repaired or changed: the kernel's view
    assert addrs(link(lab_exec, "ex-lk2", "lk3")) == [] and addrs(link(lab_exec, "ex-lk3", "lk2")) == ["198.19.12.1/30"]
    assert lab_exec("lab1", ["nsenter", "--uts=/run/linuxns/guests/lk1/ns/uts", "hostname"]).stdout.strip() == "lk1"
    # bad input names expect's task and option, and changes nothing
    bad = ansible_playbook([dict(info, name=name, ignore_errors=True, **{"linuxns.guests.namespace_info": {"expect": given}})
                            for name, given in (("unknown task", {"netns_links": {}}),
                                                ("bad option", {"netns_link": {"links": [pair], "mtu": "big"}}),
                                                ("own state_dir", {"netns_link": {"links": [pair], "state_dir": "/tmp"}}))])
    assert "expect: unknown key(s) netns_links" in bad.task("unknown task")["msg"]
    assert bad.task("bad option")["msg"].startswith("expect.netns_link: ") and "mtu" in bad.task("bad option")["msg"]
    assert bad.task("own state_dir")["msg"].startswith("expect.netns_link.state_dir: ")
    assert addrs(link(lab_exec, "ex-lk2", "lk3")) == []
    ansible_playbook([task({"links": [dict(pair, state="absent")]}, "remove the link")])


def test_removing_a_guest_leaves_no_veth_on_the_host(lab, ansible_playbook, lab_exec):
    try:
        ansible_playbook([
            {"name": "guest", CREATE: {"name": "lk9", "namespaces": ["net"]}},
            task({"guest": "lk9", "ifname": "eth0", "addresses": ["198.19.12.2/24"],
                  "peer": {"ifname": "vh-lk9", "bridge": "lnbr-t9", "addresses": ["198.19.12.1/24"]}}, "link"),
        ])
        assert link(lab_exec, "vh-lk9") is not None
        ansible_playbook([{"name": "remove", CREATE: {"name": "lk9", "state": "absent"}}])
        assert link(lab_exec, "vh-lk9") is None
        assert "198.19.12.1/24" not in [a for item in ipj(lab_exec, ["addr", "show"]) for a in addrs(item)]
    finally:
        ansible_playbook([{"name": "cleanup", CREATE: {"name": "lk9", "state": "absent"}}])
        lab_exec("lab1", ["ip", "link", "del", "vh-lk9"], check=False)
        lab_exec("lab1", ["ip", "link", "del", "lnbr-t9"], check=False)


def _venv(name, packages):
    """A venv from /usr/bin/python3 under VENV_DIR (made once per run)."""
    path = VENV_DIR / name
    py = path / "bin" / "python"
    marker = path / ".ready"
    if not marker.exists():
        shutil.rmtree(path, ignore_errors=True)
        VENV_DIR.mkdir(parents=True, exist_ok=True)
        if packages:
            subprocess.run(["/usr/bin/python3", "-m", "venv", str(path)], check=True, timeout=120)
            subprocess.run([str(py), "-m", "pip", "install", "-q", *packages], check=True, timeout=300)
        else:
            subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
        marker.write_text("ok\n")
    return str(py)


@pytest.mark.extended
def test_pyroute2_09_from_a_venv(guests3, converge, ansible_playbook, lab_exec):
    py = _venv("pyroute2-%s" % PYROUTE2_09, ["pyroute2==%s" % PYROUTE2_09])
    args = {"guest": "lk3", "ifname": "p09", "addresses": ["198.19.9.2/24", "fd00:19:9::2/64"], "gateway": "198.19.9.1",
            "peer": {"guest": "lk1", "ifname": "p09b", "addresses": ["198.19.9.1/24", "fd00:19:9::1/64"]}}
    c = converge(task(args), extra_vars={"ansible_python_interpreter": py})
    assert c.first["pyroute2"] == PYROUTE2_09 and c.second["pyroute2"] == PYROUTE2_09
    assert addrs(link(lab_exec, "p09", "lk3")) == ["198.19.9.2/24", "fd00:19:9::2/64"]
    assert routes(lab_exec, "lk3") == [("default", "198.19.9.1", None)]
    assert ping(lab_exec, "lk3", "198.19.9.1")
    # the same link seen by the default interpreter (pyroute2 0.7): nothing to change, also in check mode
    for check in (True, False):
        r = ansible_playbook([task(args, "0.7 sees no change")], check=check).task("0.7 sees no change")
        assert r["pyroute2"].startswith("0.7") and not r.changed
    ansible_playbook([task(dict(args, state="absent"), "cleanup")], extra_vars={"ansible_python_interpreter": py})
    assert link(lab_exec, "p09", "lk3") is None and link(lab_exec, "p09b", "lk1") is None


def test_missing_pyroute2_says_how_to_install(guests3, ansible_playbook):
    py = _venv("no-pyroute2", [])
    run = ansible_playbook([task({"guest": "lk1", "ifname": "eth9", "peer": {"ifname": "vh-lk9"}}, "no pyroute2")],
                           extra_vars={"ansible_python_interpreter": py}, expect_fail=True)
    msg = run.task("no pyroute2")["msg"]
    assert "pyroute2 is missing on the target host" in msg and "apt-get install python3-pyroute2" in msg and "pip install pyroute2" in msg
