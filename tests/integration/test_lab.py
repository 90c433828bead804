"""The lab itself: real ssh/paramiko logins, own namespaces, private /run, clean down."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

LAB_PY = Path(__file__).resolve().parents[1] / "lab" / "lab.py"


@pytest.mark.parametrize("connection", ["ssh", "paramiko"])
def test_ansible_reaches_every_lab_host(ansible_playbook, connection):
    run = ansible_playbook(
        [
            {"name": "ping", "ansible.builtin.ping": {}},
            {"name": "hostname", "ansible.builtin.command": "hostname"},
            {"name": "interpreter", "ansible.builtin.command": "readlink -f /proc/self/exe"},
        ],
        hosts="lab",
        connection=connection,
    )
    assert sorted(run.hosts) == ["lab1", "lab2"]
    for host in ("lab1", "lab2"):
        assert run.task("ping", host)["ping"] == "pong"
        assert run.task("hostname", host)["stdout"] == host
        assert run.task("hostname", host).status == "changed"


def test_adhoc_and_pinned_interpreter(ansible_adhoc):
    run = ansible_adhoc("lab2", "ansible.builtin.setup", {"gather_subset": ["!all", "!min", "python"]})
    facts = run.last["ansible_facts"]
    assert facts["ansible_python"]["executable"] == "/usr/bin/python3"
    assert run.last.host == "lab2"


def test_each_lab_host_has_its_own_namespaces(lab, lab_exec):
    inodes = {}
    for n in (1, 2):
        pid1 = lab_exec(n, ["cat", "/proc/1/comm"]).stdout.strip()
        assert pid1 == "catatonit"
        inodes[n] = {
            ns: lab_exec(n, ["readlink", f"/proc/1/ns/{ns}"]).stdout.strip()
            for ns in ("net", "mnt", "uts", "pid")
        }
        # the reaper seen from the machine is in the same namespaces
        assert inodes[n]["net"] == os.readlink(f"/proc/{lab.host_pid(n)}/ns/net")
    for ns in ("net", "mnt", "uts", "pid"):
        machine = os.readlink(f"/proc/self/ns/{ns}")
        assert inodes[1][ns] != machine
        assert inodes[2][ns] != machine
        assert inodes[1][ns] != inodes[2][ns]


def test_lab_network_is_only_its_veth(lab, lab_exec):
    for h in lab.hosts:
        addrs = lab_exec(h.n, ["ip", "-o", "-4", "addr", "show"]).stdout
        assert f"inet {h.address}/24" in addrs and "eth0" in addrs
        assert lab_exec(h.n, ["ip", "route", "show", "default"]).stdout.strip() == ""
        machine_side = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", h.ifname],
                                      capture_output=True, text=True, check=True).stdout
        assert f"inet {h.machine_address}/24" in machine_side


def test_private_run_and_tmp(lab, lab_exec):
    for n in (1, 2):
        mounts = lab_exec(n, ["cat", "/proc/self/mountinfo"]).stdout.splitlines()
        fstypes = {line.split()[4]: line.split(" - ")[1].split()[0] for line in mounts}
        assert fstypes.get("/run") == "tmpfs"
        assert fstypes.get("/tmp") == "tmpfs"
    marker = "/run/linuxns-lab-test-marker"
    try:
        lab_exec(1, ["touch", marker])
        assert lab_exec(1, ["test", "-e", marker], check=False).returncode == 0
        assert lab_exec(2, ["test", "-e", marker], check=False).returncode != 0
        assert not os.path.exists(marker)
    finally:
        lab_exec(1, ["rm", "-f", marker], check=False)


def test_root_shell_reads_a_fresh_hosts_dot_files(ansible_playbook):
    """An ssh command in a lab host runs root's bash, which reads ~/.bashrc: the lab gives it
    Debian's default (base-files), not the machine's (which may load pyenv or the like), so lab
    figures count no developer's shell setup and no lab command writes the machine's home."""
    default = Path("/usr/share/base-files/dot.bashrc")
    if not default.exists():
        pytest.skip("no /usr/share/base-files/dot.bashrc (not Debian's base-files)")
    run = ansible_playbook([{"name": "bashrc", "ansible.builtin.command": "cat /root/.bashrc"},
                            {"name": "env", "ansible.builtin.raw": "echo \"[$PYENV_ROOT]\""}], hosts="lab")
    for host in ("lab1", "lab2"):
        assert run.task("bashrc", host)["stdout"] == default.read_text().rstrip("\n")
        assert run.task("env", host)["stdout"].strip() == "[]"


def test_converge_helper(converge, lab_exec):
    path = "/run/linuxns-lab-converge"
    try:
        c = converge({"ansible.builtin.file": {"path": path, "state": "directory", "mode": "0750"}},
                     hosts="lab1", diff=True)
        assert c.check.changed and c.first.changed and not c.second.changed
        assert lab_exec("lab1", ["stat", "-c", "%a", path]).stdout.strip() == "750"
        assert lab_exec("lab2", ["test", "-e", path], check=False).returncode != 0
    finally:
        lab_exec("lab1", ["rm", "-rf", path], check=False)


def test_expected_failure_is_reported(ansible_playbook):
    run = ansible_playbook([{"name": "boom", "ansible.builtin.fail": {"msg": "on purpose"}}],
                           hosts="lab2", expect_fail=True)
    boom = run.task("boom", "lab2")
    assert boom.failed and boom.status == "failed"
    assert boom["msg"] == "on purpose"


def _lab_cli(env, *args, check=True):
    return subprocess.run(["/usr/bin/python3", str(LAB_PY), *args], env=env, capture_output=True,
                          text=True, check=check, timeout=120)


def _links():
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                          check=True).stdout


def _has_link(name, links):
    return re.search(rf"^\d+: {re.escape(name)}[@:]", links, re.M) is not None


def _free_global_number():
    """A host number near the top of the range with no lnsg veth (labs running beside us)."""
    links = _links()
    for g in range(254, 200, -1):
        if not _has_link(f"lnsg{g}", links):
            return g
    pytest.skip("no free lab host number in 201..254")


def test_separate_lab_up_is_idempotent_recovers_and_down_leaves_nothing(lab):
    """A second lab (LINUXNS_LAB) next to the session lab: up, crash, up, down."""
    from lab import Lab, is_running, kill_verified

    name, g = f"pytest-{os.getpid()}", _free_global_number()
    env = dict(os.environ, LINUXNS_LAB=name, LINUXNS_LAB_BASE=str(g - 1))
    other = Lab(name=name, base=g - 1)
    try:
        _lab_cli(env, "up", "--hosts", "1")
        status = json.loads(_lab_cli(env, "status").stdout)
        (host,) = status["hosts"]
        assert host["ifname"] == f"lnsg{g}" and host["address"] == f"198.18.{g}.2"
        assert host["healthy"] and host["name"] == "lab1"
        assert _lab_cli(env, "exec", "1", "--", "hostname").stdout.strip() == "lab1"
        ssh = subprocess.run(other.ssh_argv(1, ["cat", "/proc/sys/kernel/hostname"]),
                             capture_output=True, text=True, timeout=30, check=False)
        assert ssh.returncode == 0 and ssh.stdout.strip() == "lab1", ssh.stderr

        # idempotent: the healthy host is kept
        _lab_cli(env, "up", "--hosts", "1")
        assert other.host(1).pid == host["pid"]

        # crash: PID 1 gone -> up makes a new one
        kill_verified(host["pid"], host["pid_start"])
        _lab_cli(env, "up", "--hosts", "1")
        again = other.host(1)
        assert again.pid != host["pid"] and again.running

        pids = [(again.pid, again.pid_start), (again.unshare_pid, again.unshare_start)]
        _lab_cli(env, "down", "--purge")
        _lab_cli(env, "down")  # idempotent
        links = _links()
        assert not _has_link(f"lnsg{g}", links)
        assert not any(is_running(pid, start) for pid, start in pids)
        assert not other.state_dir.exists()
        # the session lab is untouched
        assert all(h.running and _has_link(h.ifname, links) for h in lab.hosts)
    finally:
        other.down(purge=True)


def test_up_refuses_a_live_lab_hosts_veth_and_replaces_a_stale_one(lab):
    from lab import Lab, LabError

    g = _free_global_number()
    first = Lab(name=f"pytest-{os.getpid()}-a", base=g - 1)
    second = Lab(name=f"pytest-{os.getpid()}-b", base=g - 1)
    try:
        first.up(1)
        with pytest.raises(LabError, match=f"lnsg{g} is in use by lab host"):
            second.up(1)
        second.down(purge=True)
        assert first.healthy(1), "down of a lab must not touch another lab's veth"
        first.down(purge=True)
        assert not _has_link(f"lnsg{g}", _links())

        # a veth of that name with no lab host behind it (left by a crash) is replaced
        subprocess.run(["ip", "link", "add", f"lnsg{g}", "type", "veth", "peer", "name",
                        f"lnsgx{g}"], check=True, capture_output=True)
        second.up(1)
        assert second.healthy(1) and not _has_link(f"lnsgx{g}", _links())
    finally:
        first.down(purge=True)
        second.down(purge=True)
        subprocess.run(["ip", "link", "del", f"lnsgx{g}"], capture_output=True, check=False)
    assert not _has_link(f"lnsg{g}", _links())
