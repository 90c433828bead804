"""Parsing of *.guests.yml fleets (no hosts contacted), and the plugin run by ansible-inventory on a sample file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.linuxns.guests.plugins.inventory import guests as inv

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def fleet(**hosts):
    return {"hosts": hosts, "guest_defaults": {}, "state_dir": "/run/linuxns", "host_python": "/usr/bin/python3"}


def test_parse_fleet_entries_defaults_and_vars():
    cfg = fleet(rack1={"address": "198.18.81.2", "vars": {"ansible_user": "root"},
                       "guests": ["web1", {"name": "db1", "context_id": "102", "root": "/srv/db1", "vars": {"role": "db"}}]},
                rack2=None)
    cfg["guest_defaults"] = {"namespaces": ["mnt", "uts"]}
    out = inv.parse_fleet(cfg)
    assert [h["key"] for h in out] == ["rack1", "rack2"]
    r1, r2 = out
    assert r1["address"] == "198.18.81.2" and r2["address"] == "rack2" and r2["guests"] == []
    assert r1["guests"][0] == {"spec": {"namespaces": ["mnt", "uts"], "name": "web1"}, "vars": {}}
    assert r1["guests"][1]["spec"] == {"namespaces": ["mnt", "uts"], "name": "db1", "context_id": 102, "root": "/srv/db1"}
    assert r1["guests"][1]["vars"] == {"role": "db"}
    hv = inv.guest_hostvars(r1, r1["guests"][1], {"ansible_python_interpreter": "/usr/bin/python3", "role": "none"})
    assert hv["ansible_connection"] == "linuxns.guests.guest"
    assert (hv["linuxns_guest"], hv["linuxns_host"], hv["linuxns_physical_host"]) == ("db1", "198.18.81.2", "rack1")
    assert hv["ansible_user"] == "root" and hv["role"] == "db" and hv["linuxns_guest_spec"]["context_id"] == 102
    assert inv.inventory_name("{host}-{guest}", "rack1", r1["guests"][1]["spec"]) == "rack1-db1"
    assert inv.inventory_name("{guest}.{context_id}", "rack1", r1["guests"][0]["spec"]) == "web1."


@pytest.mark.parametrize("cfg, msg", [
    ({"hosts": []}, "hosts must be a dict"),
    (fleet(h={"guests": "web1"}), "hosts.h.guests must be a list"),
    (fleet(h={"adress": "x"}), "hosts.h: unknown key(s) adress"),
    (fleet(h={"vars": ["a"]}), "hosts.h.vars must be a dict"),
    (fleet(h={"guests": [{"context_id": 5}]}), "hosts.h.guests[0] has no name"),
    (fleet(h={"guests": ["123"]}), "hosts.h.guests[0].name '123' is all digits"),
    (fleet(h={"guests": ["bad/name"]}), "hosts.h.guests[0].name 'bad/name' is not a valid guest name"),
    (fleet(h={"guests": [{"name": "a", "context_id": 1}]}), "hosts.h.guests[0].context_id 1 is reserved"),
    (fleet(h={"guests": ["a", "a"]}), "guest 'a' is listed twice on host h"),
    (fleet(h={"guests": [{"name": "a", "context_id": 7}, {"name": "b", "context_id": 7}]}), "context id 7 of 'b' is already used by 'a'"),
    (fleet(h={"guests": [{"name": "a", "vars": "x"}]}), "hosts.h.guests[0].vars must be a dict"),
    (fleet(h={"guests": [True]}), "must be a guest name or a dict"),
])
def test_bad_fleets_name_the_place(cfg, msg):
    with pytest.raises(inv.FleetError) as info:
        inv.parse_fleet(cfg)
    assert msg in str(info.value)


def test_same_guest_name_on_two_hosts_is_fine_and_bad_templates_fail():
    out = inv.parse_fleet(fleet(a={"guests": ["web"]}, b={"guests": ["web"]}))
    assert [g["spec"]["name"] for h in out for g in h["guests"]] == ["web", "web"]
    with pytest.raises(inv.FleetError, match="cannot be filled"):
        inv.inventory_name("{nope}", "a", {"name": "web"})


def test_status_of_answers():
    answer = {"guests": {"web": {"status": "running", "context_id": 5}, "old": {"status": "stopped", "context_id": 6}}}
    assert inv.status_of(answer, {"name": "web"}) == "running"
    assert inv.status_of(answer, {"name": "old"}) == "stopped"
    assert inv.status_of(answer, {"name": "gone"}) == "missing"
    assert inv.status_of(answer, {"name": "web", "context_id": 9}) == "missing"  # another guest under that name
    assert inv.status_of(None, {"name": "web"}) == "unknown"


def test_ssh_argv_uses_the_hosts_connection_vars():
    host = {"address": "198.18.81.2", "vars": {"ansible_user": "root", "ansible_port": 2222, "ansible_ssh_private_key_file": "/k ey",
                                               "ansible_ssh_common_args": "-o A=1 -F '/dev/null'"}}
    argv = inv.ssh_argv(host, "cmd", 7)
    assert argv[:5] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=7"]
    assert argv[5:] == ["-o", "A=1", "-F", "/dev/null", "-p", "2222", "-l", "root", "-i", "/k ey", "--", "198.18.81.2", "cmd"]


def test_ansible_inventory_on_a_sample_file(tmp_path):
    sample = tmp_path / "sample.guests.yml"
    sample.write_text("""
plugin: linuxns.guests.guests
guest_vars: {ansible_python_interpreter: /usr/bin/python3}
physical_hosts_group: racks
hosts:
  rack1:
    address: 198.18.81.2
    vars: {ansible_user: root}
    guests:
      - {name: web1, context_id: 101, vars: {role: web}}
      - {name: db1, vars: {role: db}}
  rack2:
    guests: [web2]
keyed_groups:
  - {key: role | default('none'), prefix: role}
compose:
  short: linuxns_guest | upper
""")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, "build"), ANSIBLE_INVENTORY_UNPARSED_FAILED="1")
    env.pop("ANSIBLE_CONFIG", None)
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-inventory")
    proc = subprocess.run([exe, "-i", str(sample), "--list"], env=env, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)

    def plain(v):
        if isinstance(v, dict):
            return v.get("__ansible_unsafe") if set(v) == {"__ansible_unsafe"} else {k: plain(x) for k, x in v.items()}
        return [plain(x) for x in v] if isinstance(v, list) else v

    data = plain(data)
    hv = data["_meta"]["hostvars"]
    assert sorted(data["linuxns_guests"]["hosts"]) == ["rack1-db1", "rack1-web1", "rack2-web2"]
    assert sorted(data["linuxns_host_rack1"]["hosts"]) == ["rack1-db1", "rack1-web1"]
    assert data["role_web"]["hosts"] == ["rack1-web1"] and sorted(data["role_none"]["hosts"]) == ["rack2-web2"]
    assert sorted(data["racks"]["hosts"]) == ["rack1", "rack2"] and hv["rack1"]["ansible_host"] == "198.18.81.2"
    assert hv["rack1-web1"]["short"] == "WEB1" and hv["rack2-web2"]["linuxns_host"] == "rack2"
    assert "linuxns_guest_status" not in hv["rack1-web1"]
