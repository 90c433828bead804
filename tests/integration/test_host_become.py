"""Non-root host logins (sudo on the physical host) for the guest connection and the guests
inventory, and the inventory's discovery of the guests that really exist, over real ssh.

Lab host lab1 is logged into as ``labpass`` (sudo asks a password), lab2 as ``labsudo`` (a
NOPASSWD rule); both users exist only inside their lab host (tests/lab/lab.py add_sudo_user).
One module-scoped set of guests: hb1 on lab1 and hb2 on lab2 (declared in the fleet file, hb1
with an address on a dummy link), and hbx on lab1 that no fleet file declares (discovered).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml
from harness import _bin
from harness import lab_exec as _lab_exec

pytestmark = pytest.mark.integration

CREATE = "linuxns.guests.namespace_create"
STATE = "/run/linuxns"
PASSWORD = "lab pw 'q' $x"  # quotes, a space and a $: it must reach sudo unchanged
NS = ["uts", "ipc", "net", "pid"]
GUESTS = {"lab1": ["hb1", "hbx"], "lab2": ["hb2"]}
ADDRESS = "198.19.250.1"  # inside hb1's own network namespace only (a veth pair inside it)


def fleet_doc(lab, discover=True, lab1_vars=None, cache_dir=None) -> dict:
    from lab import ssh_common_args

    common = {
        "ansible_ssh_private_key_file": str(lab.key_path),
        "ansible_ssh_common_args": " ".join(ssh_common_args(lab.state_dir)),
        "linuxns_host_become": True,
    }
    lab1 = dict(common, ansible_user="labpass", linuxns_host_become_password=PASSWORD)
    lab1.update(lab1_vars or {})
    lab2 = dict(common, ansible_user="labsudo")
    doc = {
        "plugin": "linuxns.guests.guests",
        "guest_vars": {"ansible_python_interpreter": "/usr/bin/python3"},
        "hostname_template": "{guest}",
        "hosts": {
            "lab1": {"address": lab.host(1).address, "vars": lab1, "guests": [{"name": "hb1", "vars": {"tier": "web"}}]},
            "lab2": {"address": lab.host(2).address, "vars": lab2, "guests": [{"name": "hb2", "vars": {"tier": "db"}}]},
        },
        "discover": discover,
        "keyed_groups": [{"key": "tier | default('none')", "prefix": "tier"},
                         {"key": "linuxns_guest_discovered | string", "prefix": "discovered"}],
        "groups": {"has_address": "linuxns_guest_addresses | default([]) | length > 0"},
        "compose": {"guest_address": "linuxns_guest_addresses | default([]) | first | default('none')"},
    }
    if cache_dir:
        doc.update({"cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": cache_dir})
    return doc


def plain(value):
    """ansible-inventory --list writes data that is not trusted as a template (what the hosts answered) as
    {"__ansible_unsafe": ...}: the plain value."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class Fleet:
    def __init__(self, ansible, lab, base):
        self.ansible, self.lab, self.base = ansible, lab, base
        self.n = 0

    def write(self, **kw) -> str:
        self.n += 1
        path = os.path.join(self.base, "f%02d.guests.yml" % self.n)
        with open(path, "w") as f:
            yaml.safe_dump(fleet_doc(self.lab, **kw), f)
        return path

    def run(self, argv, expect_fail=False, env=None):
        record = self.ansible.workdir / ("hb-%04d.jsonl" % self.n)
        self.n += 1
        return self.ansible._run(argv, record, expect_fail, 600, env=env)

    def inventory(self, path, *args, env=None):
        e = self.ansible.environment(self.ansible.workdir / "hb-inv.jsonl", env=env)
        proc = subprocess.run([_bin("ansible-inventory"), "-i", path, *args], env=e, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "WARNING" not in proc.stderr and "[WARNING]" not in proc.stderr, proc.stderr
        return proc


@pytest.fixture(scope="module")
def fleet(lab, ansible):
    base = "/var/tmp/linuxns-it-hb-%d" % os.getpid()
    os.makedirs(base, exist_ok=True)
    lab.add_sudo_user(1, "labpass", password=PASSWORD)
    lab.add_sudo_user(2, "labsudo")
    try:
        specs = {h: [{"name": g, "namespaces": NS, "hostname": g} for g in GUESTS[h]] for h in GUESTS}
        ansible.playbook([{"hosts": "lab1,lab2", "gather_facts": False, "tasks": [
            {CREATE: {"guests": "{{ specs[inventory_hostname] }}"}}]}], extra_vars={"specs": specs})
        pin = "--net=%s/guests/hb1/ns/net" % STATE
        _lab_exec(lab, "lab1", ["sh", "-c", "nsenter %s ip link add d0 type veth peer name d1 && nsenter %s ip addr add %s/24 dev d0 && "
                                "nsenter %s ip link set d0 up" % (pin, pin, ADDRESS, pin)])
        yield Fleet(ansible, lab, base)
    finally:
        ansible.playbook([{"hosts": "lab1,lab2", "gather_facts": False, "tasks": [
            {CREATE: {"guests": "{{ g[inventory_hostname] }}", "state": "absent", "stop_timeout": 2}}]}], extra_vars={"g": GUESTS})
        for host in ("lab1", "lab2"):
            left = _lab_exec(lab, host, ["sh", "-c", "ls %s/guests 2>/dev/null; rm -f /tmp/hb-*; true" % STATE]).stdout.split()
            assert not [n for n in left if n.startswith("hb")], (host, left)
        shutil.rmtree(base, ignore_errors=True)


def test_ping_command_copy_fetch_as_non_root_with_and_without_a_sudo_password(fleet, lab_exec):
    inv = fleet.write(discover=False)
    fetched = os.path.join(fleet.base, "fetched")
    play = os.path.join(fleet.base, "play.yml")
    with open(play, "w") as f:
        json.dump([{"hosts": "hb1,hb2", "gather_facts": False, "tasks": [
            {"name": "ping", "ansible.builtin.ping": {}},
            {"name": "who", "ansible.builtin.command": "sh -c 'id -u; hostname'", "register": "who"},
            {"name": "copy", "ansible.builtin.copy": {"dest": "/tmp/hb-{{ inventory_hostname }}", "content": "in {{ inventory_hostname }}\n"}},
            {"name": "stdin", "ansible.builtin.command": {"cmd": "cat", "stdin": "data for cat"}, "register": "cat"},
            # become inside the guest, without pipelining (temp files handed to the become user): Ansible's
            # "remote user" is the guest's root, not the host login
            {"name": "become", "ansible.builtin.command": "id -un", "become": True, "become_user": "nobody",
             "become_method": "ansible.builtin.sudo", "vars": {"ansible_pipelining": False}, "register": "bec"},
            {"name": "fetch", "ansible.builtin.fetch": {"src": "/tmp/hb-{{ inventory_hostname }}", "dest": fetched + "/", "flat": False}},
        ]}], f)
    run = fleet.run([_bin("ansible-playbook"), "-i", inv, "-vvv", play])
    assert sorted((r.host, r["ping"]) for r in run.results if r.get("ping")) == [("hb1", "pong"), ("hb2", "pong")]
    who = {r.host: r["stdout_lines"] for r in run.results if r.task == "who"}
    assert who == {"hb1": ["0", "hb1"], "hb2": ["0", "hb2"]}, who
    # the lab hosts' sshd let in the non-root users (and root only for the fixture's own plays)
    assert "Accepted publickey for labpass" in fleet.lab.sshd_log(1)
    assert "Accepted publickey for labsudo" in fleet.lab.sshd_log(2)
    assert {r.host: r["stdout"] for r in run.results if r.task == "become"} == {"hb1": "nobody", "hb2": "nobody"}
    cat = {r.host: r["stdout"] for r in run.results if r.task == "stdin"}
    assert cat == {"hb1": "data for cat", "hb2": "data for cat"}, cat  # the password line never reaches the command
    for guest, host in (("hb1", "lab1"), ("hb2", "lab2")):
        assert lab_exec(host, ["cat", "/tmp/hb-%s" % guest]).stdout == "in %s\n" % guest
        with open(os.path.join(fetched, guest, "tmp", "hb-%s" % guest)) as f:
            assert f.read() == "in %s\n" % guest
    # the password is on no command line and in no output (-vvv prints every ssh command)
    assert PASSWORD not in run.stdout and PASSWORD not in run.stderr
    assert "sudo -S -k -p" in run.stdout and "sudo -n -u root" in run.stdout


def test_host_become_failures_are_clear(fleet):
    wrong = fleet.write(discover=False, lab1_vars={"linuxns_host_become_password": "not it"})
    run = fleet.run([_bin("ansible"), "hb1", "-i", wrong, "-m", "ping"], expect_fail=True)
    assert run.rc == 4, run.describe()  # unreachable, not a module failure
    assert "host become (sudo to root as labpass on host" in run.stdout + run.stderr, run.describe()
    assert "incorrect password" in run.stdout + run.stderr
    none = fleet.write(discover=False, lab1_vars={"linuxns_host_become": False})
    run = fleet.run([_bin("ansible"), "hb1", "-i", none, "-m", "ping"], expect_fail=True)
    assert "needs root on the host" in run.stdout + run.stderr, run.describe()


def test_inventory_discovers_guests_over_non_root_logins_graph_list_and_cache(fleet, lab_exec):
    inv = fleet.write()
    graph = fleet.inventory(inv, "--graph").stdout
    for line in ("@linuxns_host_lab1:", "@linuxns_state_running:", "@tier_web:", "@discovered_True:", "@has_address:"):
        assert line in graph, graph
    listing = json.loads(fleet.inventory(inv, "--list").stdout)
    hv = plain(listing["_meta"]["hostvars"])
    assert sorted(h for h in hv if h.startswith("hb")) == ["hb1", "hb2", "hbx"]
    assert sorted(listing["linuxns_host_lab1"]["hosts"]) == ["hb1", "hbx"]
    assert listing["discovered_True"]["hosts"] == ["hbx"] and listing["has_address"]["hosts"] == ["hb1"]
    assert hv["hb1"]["linuxns_guest_addresses"] == [ADDRESS] and hv["hb1"]["guest_address"] == ADDRESS
    assert hv["hb1"]["linuxns_guest_interfaces"][0]["ifname"] == "d0"
    for g in ("hb1", "hb2", "hbx"):
        assert hv[g]["linuxns_guest_status"] == "running", hv[g]
        assert isinstance(hv[g]["linuxns_guest_context_id"], int)
        assert hv[g]["linuxns_guest_namespaces"] == sorted(NS)
        assert "linuxns_guest_cgroup" in hv[g]
    assert hv["hbx"]["ansible_user"] == "labpass" and hv["hbx"]["linuxns_host_become"] is True
    assert hv["hbx"]["ansible_connection"] == "linuxns.guests.guest"
    ctx = {g: int(lab_exec(h, ["python3", "-c", "import json;print(json.load(open('%s/guests/%s/meta.json'))['context_id'])" % (STATE, g)]).stdout)
           for g, h in (("hb1", "lab1"), ("hbx", "lab1"), ("hb2", "lab2"))}
    assert {g: hv[g]["linuxns_guest_context_id"] for g in ctx} == ctx
    # the discovered guest is usable at once: its connection variables come from its physical host
    run = fleet.run([_bin("ansible"), "hbx", "-i", inv, "-m", "command", "-a", "hostname"])
    assert run.results[-1]["stdout"] == "hbx"
    # caching: a second read answers from the cache (hbx is still listed after it is gone), --flush-cache asks again
    cache_dir = os.path.join(fleet.base, "cache")
    cached = fleet.write(cache_dir=cache_dir)
    assert "hbx" in json.loads(fleet.inventory(cached, "--list").stdout)["_meta"]["hostvars"]
    assert os.listdir(cache_dir)
    fleet.ansible.playbook([{"hosts": "lab1", "gather_facts": False, "tasks": [
        {CREATE: {"guests": ["hbx"], "state": "absent", "stop_timeout": 2}}]}])
    assert "hbx" in json.loads(fleet.inventory(cached, "--list").stdout)["_meta"]["hostvars"]
    assert "hbx" not in json.loads(fleet.inventory(cached, "--list", "--flush-cache").stdout)["_meta"]["hostvars"]
