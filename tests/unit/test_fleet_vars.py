"""playbooks/vars/fleet.yml's address plan, rendered by ansible-playbook itself (on localhost, no lab).

Each host gets a guest network cut from 198.19.0.0/16: a /24 up to 244 guests per host (as it
always was), a /22 up to 1012 (one bridge per host, at most 1024 ports). bench/bench_fleet.py
builds its shell side's addresses with fleet_net(), which must agree with the playbook.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VARS = REPO / "playbooks" / "vars" / "fleet.yml"
PLAYBOOK_BIN = Path(sys.executable).with_name("ansible-playbook")

# (fleet_size, fleet_host_number)
CASES = [(3, 1), (5, 2), (244, 1), (244, 255), (245, 2), (1012, 1), (1012, 63)]


@pytest.fixture(scope="module")
def bench_fleet():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("bench_fleet", str(REPO / "bench" / "bench_fleet.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(REPO / "bench"))
    return mod


def _play(name, size, host, out=None):
    what = ("{{ {'prefix': fleet_prefix, 'gateway': fleet_gateway, 'guests': fleet_guests, 'bridge': fleet_bridge,"
            " 'dir': fleet_dir} | to_json }}")
    task = ({"ansible.builtin.copy": {"dest": str(out), "content": what}} if out else {"ansible.builtin.debug": {"msg": what}})
    return {"name": name, "hosts": "localhost", "gather_facts": False, "vars_files": [str(VARS)],
            "vars": {"fleet_size": size, "fleet_host_number": host}, "tasks": [task]}


def _run(tmp_path, plays):
    book = tmp_path / ("play%d.yml" % len(list(tmp_path.glob("play*.yml"))))
    book.write_text(yaml.safe_dump(plays))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable}
    return subprocess.run([str(PLAYBOOK_BIN), "-i", "localhost,", "-c", "local", str(book)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet-vars")
    plays = [_play("n=%d h=%d" % c, *c, out=tmp / ("%d-%d.json" % c)) for c in CASES]
    proc = _run(tmp, plays)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return {c: json.loads((tmp / ("%d-%d.json" % c)).read_text()) for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=["n%d-h%d" % c for c in CASES])
def test_every_guest_has_its_own_address_in_the_host_network(rendered, bench_fleet, case):
    size, host = case
    got = rendered[case]
    assert len(got["guests"]) == size
    prefix = 24 if size <= 244 else 22
    assert int(got["prefix"]) == prefix
    start, bench_prefix = bench_fleet.fleet_net(host, size)
    assert bench_prefix == prefix
    net = ipaddress.ip_network("%s/%d" % (ipaddress.ip_address(start), prefix))
    assert net.subnet_of(ipaddress.ip_network("198.19.0.0/16"))
    assert got["gateway"] == str(net.network_address + 1)
    ifaces = [ipaddress.ip_interface(g["address"]) for g in got["guests"]]
    assert all(i.network == net for i in ifaces), "an address outside %s" % net
    assert [str(i.ip) for i in ifaces] == [str(net.network_address + 10 + i) for i in range(1, size + 1)]   # as bench_fleet's shell
    assert len(set(ifaces)) == size
    assert net.broadcast_address not in {i.ip for i in ifaces}
    assert {g["gateway"] for g in got["guests"]} == {got["gateway"]}
    assert (got["bridge"], got["dir"]) == (bench_fleet.BRIDGE, bench_fleet.OURS_DIR)


def test_up_to_244_guests_the_network_is_the_hosts_24_as_before(rendered):
    got = rendered[(5, 2)]
    assert [g["address"] for g in got["guests"]] == ["198.19.2.%d/24" % (10 + i) for i in range(1, 6)]
    assert got["gateway"] == "198.19.2.1"


def test_hosts_of_one_fleet_get_networks_apart(rendered):
    by_prefix = {}
    for c in CASES:
        net = ipaddress.ip_interface(rendered[c]["guests"][0]["address"]).network
        by_prefix.setdefault(net.prefixlen, {})[c[1]] = net
    assert sorted(by_prefix) == [22, 24]
    for nets in by_prefix.values():   # one fleet has one size: its hosts' networks never overlap
        assert len(nets) >= 2
        assert not any(a.overlaps(b) for h, a in nets.items() for k, b in nets.items() if h != k)


@pytest.mark.parametrize("size,host,message", [
    (1013, 1, "fleet_size: at most 1012 guests per host"),
    (300, 64, "fleet_host_number: host 64 has no /22 guest network left in 198.19.0.0/16"),
    (10, 256, "fleet_host_number: host 256 has no /24 guest network left in 198.19.0.0/16"),
])
def test_a_fleet_that_does_not_fit_fails_with_a_clear_message(tmp_path, size, host, message):
    proc = _run(tmp_path, [_play("too big", size, host)])
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
