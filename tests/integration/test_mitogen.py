"""The collection's modules, and the guest connection, under Mitogen's strategy (mitogen_linear).

Needs a separate venv (ansible-core as in requirements-lock.txt plus mitogen 0.3.x) named by
LINUXNS_MITOGEN_VENV: ``make mitogen-test`` makes build/mitogen-venv and runs this file with it;
without the variable every test here is skipped (the default suite does not run Mitogen: ~3.5 min).

Under mitogen_linear with the ssh connection, modules run in Mitogen's in-process runner on the
lab host: their module_utils come from the controller into memory (no AnsiballZ zip, no files),
which the sealed clone of the interpreter (module_utils/sealed.py) must cope with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

pytestmark = pytest.mark.integration

VENV = os.environ.get("LINUXNS_MITOGEN_VENV", "")
STATE = "/run/linuxns"


def _mitogen_dir():
    py = os.path.join(VENV, "bin", "python")
    if not VENV or not os.access(py, os.X_OK):
        return None
    out = subprocess.run([py, "-c", "import ansible_mitogen, os; print(os.path.dirname(ansible_mitogen.__file__))"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else None


MITOGEN = _mitogen_dir()
needs_mitogen = pytest.mark.skipif(MITOGEN is None, reason="LINUXNS_MITOGEN_VENV names no venv with mitogen: run `make mitogen-test`")


def run_playbook(ansible, plays, inventory, name):
    path = ansible.workdir / ("mitogen-%s.yml" % name)
    path.write_text(json.dumps(plays))
    record = ansible.workdir / ("mitogen-%s.jsonl" % name)
    env = {"ANSIBLE_STRATEGY_PLUGINS": os.path.join(MITOGEN, "plugins", "strategy"), "ANSIBLE_STRATEGY": "mitogen_linear",
           "ANSIBLE_DEPRECATION_WARNINGS": "False"}
    argv = [os.path.join(VENV, "bin", "ansible-playbook"), "-i", str(inventory), str(path)]
    return ansible._run(argv, record, False, 600, env=env)


@needs_mitogen
def test_modules_run_in_mitogens_in_process_runner(lab, ansible, lab_exec):
    guests = [{"name": "mg1", "hostname": "mg1"}, {"name": "mg2", "namespaces": ["uts", "ipc", "net", "pid"]}]
    tasks = [
        # the module's parent is Mitogen's context on the lab host, not an ssh session's shell
        {"name": "parent", "ansible.builtin.shell": "tr '\\0' ' ' < /proc/$PPID/cmdline"},
        {"name": "create", "linuxns.guests.namespace_create": {"guests": guests}},
        {"name": "create again", "linuxns.guests.namespace_create": {"guests": guests}},
        {"name": "mount", "linuxns.guests.namespace_mount": {"guest": "mg1", "path": "/mnt", "src": "tmpfs", "fstype": "tmpfs",
                                                             "opts": "size=1m", "create": True}},
        {"name": "link", "linuxns.guests.netns_link": {"guest": "mg1", "ifname": "eth0", "kind": "veth",
                                                       "peer": {"ifname": "ve-mg1"}, "addresses": ["198.19.251.2/24"]}},
        {"name": "exec", "linuxns.guests.guest_enter_exec": {"guest": "mg1", "argv": ["sh", "-c", "hostname; grep -c ' /mnt ' /proc/self/mounts"]}},
        {"name": "info", "linuxns.guests.namespace_info": {"guests": ["mg1", "mg2"], "links": True}},
    ]
    try:
        run = run_playbook(ansible, [{"hosts": "lab1", "gather_facts": False, "tasks": tasks}], lab.inventory_path, "modules")
        parent = run.task("parent")["stdout"]
        assert "mitogen" in parent.lower(), parent  # really Mitogen's runner
        assert run.task("create").changed and not run.task("create again").changed
        assert run.task("mount").changed and run.task("link").changed
        assert run.task("exec")["stdout"].split() == ["mg1", "1"]
        info = {g["name"]: g for g in run.task("info")["guests"]}
        assert info["mg1"]["running"] and info["mg2"]["running"], info
        assert "198.19.251.2/24" in [a for link in info["mg1"]["links"] for a in link.get("addresses", [])], info["mg1"]["links"]
    finally:
        ansible.playbook([{"hosts": "lab1", "gather_facts": False, "tasks": [
            {"linuxns.guests.netns_link": {"guest": "mg1", "ifname": "eth0", "kind": "veth", "state": "absent"}, "ignore_errors": True},
            {"linuxns.guests.namespace_create": {"guests": ["mg1", "mg2"], "state": "absent", "stop_timeout": 2}}]}])
    left = lab_exec("lab1", ["sh", "-c", "ls %s/guests 2>/dev/null; ip -o link show ve-mg1 2>/dev/null; true" % STATE]).stdout
    assert "mg1" not in left and "mg2" not in left, left


@needs_mitogen
def test_guest_connection_under_mitogen_linear(lab, ansible, lab_exec):
    """Mitogen has no transport of its own for linuxns.guests.guest: such tasks keep Ansible's own connection
    and module path (AnsiballZ through our plugin) in the same play."""
    from lab import ssh_common_args

    base = "/var/tmp/linuxns-it-mitogen-%d" % os.getpid()
    os.makedirs(base, exist_ok=True)
    inv = os.path.join(base, "m.guests.yml")
    with open(inv, "w") as f:
        yaml.safe_dump({"plugin": "linuxns.guests.guests", "hostname_template": "{guest}",
                        "guest_vars": {"ansible_python_interpreter": "/usr/bin/python3"},
                        "physical_hosts_group": "hosts",
                        "hosts": {"lab1": {"address": lab.host(1).address, "guests": ["mgc"], "vars": {
                            "ansible_user": "root", "ansible_ssh_private_key_file": str(lab.key_path),
                            "ansible_ssh_common_args": " ".join(ssh_common_args(lab.state_dir))}}}}, f)
    plays = [
        {"hosts": "hosts", "gather_facts": False, "tasks": [
            {"linuxns.guests.namespace_create": {"guests": [{"name": "mgc", "namespaces": ["uts", "ipc", "net", "pid"], "hostname": "mgc"}]}}]},
        {"hosts": "mgc", "gather_facts": False, "tasks": [
            {"name": "ping", "ansible.builtin.ping": {}},
            {"name": "copy", "ansible.builtin.copy": {"dest": "/tmp/mitogen-mgc", "content": "via the guest connection\n"}},
            {"name": "hostname", "ansible.builtin.command": "hostname"}]},
    ]
    try:
        run = run_playbook(ansible, plays, inv, "connection")
        assert run.task("ping", "mgc")["ping"] == "pong"
        assert run.task("hostname", "mgc")["stdout"] == "mgc"
        assert lab_exec("lab1", ["cat", "/tmp/mitogen-mgc"]).stdout == "via the guest connection\n"
    finally:
        ansible.playbook([{"hosts": "lab1", "gather_facts": False, "tasks": [
            {"linuxns.guests.namespace_create": {"guests": ["mgc"], "state": "absent", "stop_timeout": 2}}]}])
        lab_exec("lab1", ["rm", "-f", "/tmp/mitogen-mgc"])
        shutil.rmtree(base, ignore_errors=True)
