"""The guest role's plan filters (plugins/filter/guest_plan.py) on the role's real inputs."""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from role_guests import GUEST_LIST, NET

from ansible_collections.linuxns.guests.plugins.filter import guest_plan as gp
from ansible_collections.linuxns.guests.plugins.module_utils import model

ROOTS = "/tmp/roots"
REPO = Path(__file__).resolve().parents[4]
FILTERS = gp.FilterModule().filters()


def plan(guests=None, **kw):
    kw.setdefault("roots_dir", ROOTS)
    kw.setdefault("bridge", "br0")
    return FILTERS["guest_plan"](copy.deepcopy(GUEST_LIST if guests is None else guests), **kw)


def by_name(entries):
    return {e["name"]: e for e in entries}


def test_plan_of_the_role_guests():
    web, side, boxinit = plan()
    assert [e["state"] for e in (web, side, boxinit)] == ["started"] * 3
    # roots: built ones default to roots_dir/NAME
    assert (web["root"], web["build"]) == (ROOTS + "/web", True)
    assert web["create"] == {"name": "web", "namespaces": model.default("namespaces"), "stop_signal": "SIGTERM",
                             "stop_timeout": model.default("stop_timeout"), "root": ROOTS + "/web",
                             "services": [{"name": "httpd", "argv": web["services"][0]["argv"], "pid_dir": "/run/linuxns-services"}]}
    assert side["create"] == {"name": "side", "namespaces": ["mnt", "uts", "ipc", "pid"], "share": {"net": "web"},
                              "hostname": "side.example", "stop_signal": "SIGTERM",
                              "stop_timeout": model.default("stop_timeout"), "root": ROOTS + "/side"}
    assert boxinit["create"]["init"] == ["/bin/busybox", "init"]
    assert (boxinit["create"]["stop_signal"], boxinit["create"]["stop_timeout"]) == ("SIGUSR2", 5)
    # shares: a guest sharing a listed guest's namespace comes one wave later
    assert [e["level"] for e in (web, side, boxinit)] == [0, 1, 0]
    # hostnames default to the name
    assert [e["hostname"] for e in (web, side, boxinit)] == ["web", "side.example", "boxinit"]
    # addresses: the eth0 veth on the bridge, with the gateway when given
    assert web["links"] == [{"guest": "web", "ifname": "eth0", "addresses": [NET + ".11/24"], "gateway": NET + ".1",
                             "peer": {"ifname": "ve-web", "bridge": "br0"}}]
    assert boxinit["links"] == [{"guest": "boxinit", "ifname": "eth0", "addresses": [NET + ".12/24"],
                                 "peer": {"ifname": "ve-boxinit", "bridge": "br0"}}]
    assert side["links"] == []
    # services: an init-less guest's are started by the role; an init-based built root gets inittab lines
    assert [s["name"] for s in web["services"]] == ["httpd"] and web["inittab"] is None
    assert boxinit["services"] == []
    assert boxinit["inittab"] == ["# written by the linuxns.guests.guest role", "::ctrlaltdel:/bin/true",
                                  "::respawn:/bin/busybox httpd -f -p 80 -h /www"]
    assert web["mounts"] == GUEST_LIST[0]["mounts"] and side["mounts"] == []
    assert web["files"] == GUEST_LIST[0]["files"] and side["files"] == []


def test_plan_states_and_defaults():
    entries = by_name(plan([{"name": "a"}, {"name": "b", "state": "absent"}, {"name": "c", "state": "restarted"}], state="stopped"))
    assert {n: e["state"] for n, e in entries.items()} == {"a": "stopped", "b": "absent", "c": "restarted"}
    a = entries["a"]
    assert a["root"] is None and a["build"] is False and a["init"] is None and a["inittab"] is None
    assert "root" not in a["create"] and "context_id" not in a["create"]
    # empty values count as not given (the template's default(x, true))
    (e,) = plan([{"name": "z", "namespaces": [], "stop_signal": "", "stop_timeout": 0, "hostname": "", "root": ""}])
    assert e["create"]["namespaces"] == model.default("namespaces")
    assert (e["create"]["stop_signal"], e["create"]["stop_timeout"]) == (model.default("stop_signal"), model.default("stop_timeout"))
    assert e["hostname"] == "z" and e["root"] is None


def test_plan_passes_limits_and_cgroup_parent():
    limits = {"memory": "64M", "pids": 64, "cpu": 0.5}
    entries = by_name(plan([{"name": "a", "limits": limits, "cgroup_parent": "/linuxns"}, {"name": "b", "limits": {}}, {"name": "c"}]))
    assert entries["a"]["create"]["limits"] == limits and entries["a"]["create"]["cgroup_parent"] == "/linuxns"
    # {} is a value (remove every limit), not "not given"
    assert entries["b"]["create"]["limits"] == {} and "cgroup_parent" not in entries["b"]["create"]
    assert "limits" not in entries["c"]["create"]


def test_plan_shares_by_context_id_links_and_peer_names():
    long_name = "averyveryverylongname"
    entries = by_name(plan([
        {"name": long_name, "context_id": 77, "address": "10.0.0.2/24", "links": [{"ifname": "e1", "peer": {"ifname": "x"}}]},
        {"name": "dep", "context_id": 78, "share": {"net": 77, "uts": "/proc/1/ns/uts"}},
        {"name": "dep2", "share": {"ipc": 78}, "root": "/srv/dep2", "peer_ifname": "pp", "address": "10.0.0.3/24"},
    ]))
    assert [entries[n]["level"] for n in (long_name, "dep", "dep2")] == [0, 1, 2]
    assert entries["dep"]["create"]["context_id"] == 78
    long_links = entries[long_name]["links"]
    assert long_links[0]["peer"]["ifname"] == "ve" + hashlib.sha1(long_name.encode()).hexdigest()[:13]
    assert len(long_links[0]["peer"]["ifname"]) == 15
    assert long_links[1] == {"ifname": "e1", "peer": {"ifname": "x"}, "guest": long_name}
    assert entries["dep2"]["links"][0]["peer"]["ifname"] == "pp"
    assert (entries["dep2"]["root"], entries["dep2"]["build"]) == ("/srv/dep2", False)


def test_inittab_quotes_arguments():
    (e,) = plan([{"name": "i", "root_build": True, "init": ["/sbin/init"],
                  "services": [{"name": "s", "argv": ["/bin/echo", "it's here", "a b"]}]}])
    assert e["inittab"][-1] == "::respawn:/bin/echo 'it'\"'\"'s here' 'a b'"
    (e,) = plan([{"name": "j", "root": "/srv/j", "init": ["/sbin/init"], "services": [{"name": "s", "argv": ["x"]}]}])
    assert e["inittab"] is None  # only a built root gets an inittab


@pytest.mark.parametrize(("guests", "state", "message"), [
    ([{"name": "a", "services": [{"name": "s", "argv": ["/bin/true"]}]}], "started",
     "guest a: services of an init-less guest need a root folder (root or root_build)"),
    ([{"name": "a", "files": [{"path": "/f"}]}], "started", "guest a: files need a root folder (root or root_build)"),
    ([{"name": "a", "root": "/r", "services": [{"name": "s", "argv": ["x"]}, {"name": "s", "argv": ["y"]}]}], "started",
     "guest a: service names must be unique"),
    ([{"name": "a", "root": "/r", "services": [{"name": "s/x", "argv": ["x"]}]}], "started",
     "guest a: service s/x needs a name of letters, digits, _.- and a non-empty argv"),
    ([{"name": "a", "root": "/r", "services": [{"name": "s", "argv": []}]}], "started",
     "guest a: service s needs a name of letters, digits, _.- and a non-empty argv"),
    ([{"name": "a", "state": "stopped"}, {"name": "b", "share": {"net": "a"}}], "started",
     "guest b shares namespaces of guest a, which is stopped: give both the same state"),
    ([{"name": "a", "context_id": 9, "state": "absent"}, {"name": "b", "share": {"net": 9}}], "started",
     "guest b shares namespaces of guest 9, which is absent"),
    ([{"name": "a"}, {"name": "a"}], "started", "duplicate guest names"),
    ("web", "started", "guest_list: must be a list of dicts"),
    ([{"name": "a"}], "paused", "guest_state: must be one of started, stopped, restarted, absent"),
])
def test_plan_bad_input(guests, state, message):
    with pytest.raises(AnsibleFilterError, match=r"^(guest_list|guest_state): ") as err:
        FILTERS["guest_plan"](guests, state=state)
    assert message in str(err.value)


def test_names_are_case_sensitive_and_whole():
    # Jinja's unique filter compared names without case; guests, pid files and veths are case-sensitive
    entries = plan([{"name": "web", "root": "/r", "services": [{"name": "httpd", "argv": ["a"]}, {"name": "HTTPD", "argv": ["b"]}]},
                    {"name": "Web"}])
    assert [e["name"] for e in entries] == ["web", "Web"] and len(entries[0]["services"]) == 2
    with pytest.raises(AnsibleFilterError, match="service httpd\n needs a name of letters"):
        plan([{"name": "a", "root": "/r", "services": [{"name": "httpd\n", "argv": ["x"]}]}])


def test_plan_bad_input_lists_every_problem():
    with pytest.raises(AnsibleFilterError) as err:
        plan([{"name": "a", "files": [{"path": "/f"}]}, {"name": "b", "services": [{"name": "s", "argv": ["x"]}]}, {"name": "a"}])
    assert str(err.value) == (
        "guest_list: guest a: files need a root folder (root or root_build); "
        "guest b: services of an init-less guest need a root folder (root or root_build); duplicate guest names"
    )


def test_stopping_both_sharing_guests_is_fine():
    entries = plan([{"name": "a", "state": "stopped"}, {"name": "b", "share": {"net": "a"}, "state": "stopped"}])
    assert [e["state"] for e in entries] == ["stopped", "stopped"]
    # a stopped guest may share a started one's namespace
    assert plan([{"name": "a"}, {"name": "b", "share": {"net": "a"}, "state": "absent"}])[1]["level"] == 1


def test_waves_and_batches():
    starting = [e for e in plan() if e["state"] in gp.STARTING]
    assert FILTERS["guest_waves"](starting) == [
        {"wave": 0, "batch": 1, "batches": 1, "guests": ["web", "boxinit"]},
        {"wave": 1, "batch": 1, "batches": 1, "guests": ["side"]},
    ]
    many = [{"name": "g%d" % i, "level": 0} for i in range(5)] + [{"name": "s", "level": 1}]
    assert FILTERS["guest_waves"](many, "2") == [
        {"wave": 0, "batch": 1, "batches": 3, "guests": ["g0", "g1"]},
        {"wave": 0, "batch": 2, "batches": 3, "guests": ["g2", "g3"]},
        {"wave": 0, "batch": 3, "batches": 3, "guests": ["g4"]},
        {"wave": 1, "batch": 1, "batches": 1, "guests": ["s"]},
    ]
    assert FILTERS["guest_waves"]([]) == []
    with pytest.raises(AnsibleFilterError, match="guest_batch_size: must be a whole number"):
        FILTERS["guest_waves"](many, "some")


def test_check_entries_predict_new_guests_without_root_and_share():
    entries = [e["create"] for e in plan()]
    out = FILTERS["guest_check_entries"](entries, [{"name": "web", "context_id": 2}])
    assert out[0] == entries[0]  # an existing guest keeps its entry
    assert out[1] == {k: v for k, v in entries[1].items() if k not in ("root", "share")} and "share" in entries[1]
    assert "root" not in out[2] and "root" in entries[2]
    assert FILTERS["guest_check_entries"](entries, ["web", "side", "boxinit"]) == entries
    assert FILTERS["guest_check_entries"](entries, None)[0] == {k: v for k, v in entries[0].items() if k != "root"}


def test_mount_entries():
    entries = plan()
    assert FILTERS["guest_mount_entries"](entries, ["web", "side", "boxinit"]) == [{"guest": "web", "mounts": GUEST_LIST[0]["mounts"]}]
    assert FILTERS["guest_mount_entries"](entries, ["side"]) == []


def test_service_groups():
    entries = plan() + plan([{"name": "web2", "root": "/r", "services": [
        {"name": "httpd", "argv": ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"], "stop": ["/bin/true"]},
        {"name": "httpd2", "argv": ["/bin/busybox", "httpd", "-f", "-p", "81"]}]}])
    groups = FILTERS["guest_service_groups"](entries)
    assert groups == [
        {"name": "httpd", "argv": ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"], "stop": ["/bin/true"], "guests": ["web", "web2"]},
        {"name": "httpd2", "argv": ["/bin/busybox", "httpd", "-f", "-p", "81"], "stop": None, "guests": ["web2"]},
    ]
    # the same name and argv with another stop command is another group; init-based guests have none
    other = plan([{"name": "w3", "root": "/r", "services": [{"name": "httpd", "argv": ["/bin/busybox", "httpd", "-f", "-p", "81"]}]}])
    assert len(FILTERS["guest_service_groups"](entries + other)) == 3
    assert FILTERS["guest_service_groups"]([e for e in plan() if e["name"] == "boxinit"]) == []


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_every_filter_has_its_documentation(name):
    doc = yaml.safe_load((REPO / "plugins" / "filter" / (name + ".yml")).read_text())
    assert doc["DOCUMENTATION"]["name"] == name
    assert "_input" in doc["DOCUMENTATION"]["options"] and doc["RETURN"]["_value"]["description"]
    examples = yaml.safe_load(doc["EXAMPLES"])
    assert isinstance(examples, list) and all("name" in task for task in examples)
    ansible_doc = REPO / ".venv" / "bin" / "ansible-doc"
    if not ansible_doc.exists():
        pytest.skip("no .venv (make venv)")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "build"), ANSIBLE_NOCOLOR="1")
    out = subprocess.run([str(ansible_doc), "-t", "filter", "linuxns.guests." + name], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert "RETURN VALUES" in out.stdout and "[WARNING]" not in out.stderr, out.stderr
