"""Unit tests for the pure parts of tests/lab/lab.py (no lab hosts, no root needed)."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import lab
import pytest

LAB_NET = ipaddress.ip_network("198.18.0.0/15")


def test_default_lab_numbers_and_addresses():
    assert lab.lab_base("") == 0
    g = lab.global_number(0, 1)
    assert (g, lab.ifname(g), lab.host_name(1)) == (1, "lnsg1", "lab1")
    assert lab.machine_address(g) == "198.18.1.1"
    assert lab.host_address(g) == "198.18.1.2"


@pytest.mark.parametrize("name", ["b", "pytest-down", "x.y_z", "another-lab"])
def test_other_labs_get_a_base_of_their_own(name):
    base = lab.lab_base(name)
    assert base == lab.lab_base(name)  # stable
    assert base % 20 == 0 and 20 <= base <= 220
    assert base + lab.HOSTS_PER_LAB <= lab.MAX_GLOBAL


def test_explicit_base_wins_and_is_checked():
    assert lab.lab_base("b", "20") == 20
    assert lab.lab_base("", 40) == 40
    for bad in ("x", "-1", "254", "1000"):
        with pytest.raises(lab.LabError):
            lab.lab_base("b", bad)


def test_global_numbers_stay_in_range():
    assert lab.global_number(20, 1) == 21
    for base, n in ((0, 0), (0, lab.HOSTS_PER_LAB + 1), (250, 5)):
        with pytest.raises(lab.LabError):
            lab.global_number(base, n)


def test_every_possible_address_is_in_the_benchmark_range_and_names_fit():
    for g in range(1, lab.MAX_GLOBAL + 1):
        assert ipaddress.ip_address(lab.machine_address(g)) in LAB_NET
        assert ipaddress.ip_address(lab.host_address(g)) in LAB_NET
        assert len(lab.ifname(g)) <= 15


@pytest.mark.parametrize("name", ["../x", "a b", "-x", "x" * 40, "a/b"])
def test_bad_lab_names_are_refused(name):
    with pytest.raises(lab.LabError):
        lab.validate_lab_name(name)


def test_state_dirs():
    repo = Path("/r")
    assert lab.state_dir_for(repo, "") == Path("/r/.lab")
    assert lab.state_dir_for(repo, "b") == Path("/r/.lab-b")


def test_control_path_dir_respects_the_socket_path_limit():
    assert lab.control_path_dir(Path("/work/main/.lab")) == Path("/work/main/.lab/cp")
    deep = Path("/" + "d" * 80 + "/.lab")
    short = lab.control_path_dir(deep)
    assert str(short).startswith("/tmp/lnsg-cp-")
    assert short == lab.control_path_dir(deep)  # stable
    # socket: DIR/<40 hex %C>.<16 random chars while ssh creates it> < 108 bytes
    assert len(str(short)) + 1 + 40 + 17 < 108


def test_inventory_text():
    text = lab.inventory_text([(2, 22), (1, 21)], Path("/s"))
    lines = text.splitlines()
    assert lines.index("[lab]") < lines.index("lab1 ansible_host=198.18.21.2") < lines.index(
        "lab2 ansible_host=198.18.22.2")
    for want in (
        "ansible_user=root",
        "ansible_ssh_private_key_file=/s/id_ed25519",
        "ansible_python_interpreter=/usr/bin/python3",
        "ansible_paramiko_host_key_checking=false",
        "guest_host_operator_path=/run/linuxns-lab/linuxns-guest",  # never the machine's /usr, which lab hosts share
        "guest_host_operator_cache_dir=/run/linuxns-lab/linuxns-guest.cache",  # nor its /var
        "guest_host_restore_path=/tmp/linuxns-lab/linuxns-guests-restore",
        "ansible_ssh_common_args='-F /dev/null -o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/s/known_hosts -o IdentitiesOnly=yes'",
    ):
        assert want in lines


def test_inventory_is_read_by_ansible_inventory(tmp_path):
    """The written inventory parses as Ansible means it (quoting of ssh args)."""
    exe = Path(sys.executable).parent / "ansible-inventory"
    if not exe.exists():
        pytest.skip("ansible-inventory is not in this interpreter's venv")
    inv = tmp_path / "inventory.ini"
    inv.write_text(lab.inventory_text([(1, 1), (2, 2)], tmp_path))
    out = subprocess.run([str(exe), "-i", str(inv), "--list"], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                          "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")})
    data = json.loads(out.stdout)
    assert sorted(data["lab"]["hosts"]) == ["lab1", "lab2"]
    hv = data["_meta"]["hostvars"]["lab2"]
    assert hv["ansible_host"] == "198.18.2.2"
    assert hv["ansible_ssh_common_args"].split() == lab.ssh_common_args(tmp_path)
    assert hv["ansible_python_interpreter"] == "/usr/bin/python3"


def test_ansible_cfg_text():
    text = lab.ansible_cfg_text(Path("/s"), Path("/repo"), pipelining=False)
    for want in (
        "collections_path = /repo/build",
        "host_key_checking = False",
        "remote_tmp = /tmp/.ansible-remote",
        "local_tmp = /s/tmp",
        "forks = 10",
        "interpreter_python = /usr/bin/python3",
        "control_path_dir = /s/cp",
        "control_path = %(directory)s/%%C",
        "pipelining = False",
        "record_host_keys = False",
        "ssh_args = -o ControlMaster=auto -o ControlPersist=60s -F /dev/null "
        "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/s/known_hosts -o IdentitiesOnly=yes",
    ):
        assert want in text.splitlines()
    assert "pipelining = True" in lab.ansible_cfg_text(Path("/s"), Path("/repo")).splitlines()


def test_sshd_sets_the_cgroup_parent_per_lab_host():
    assert lab.sshd_setenv_option("ci", "lab2") == "SetEnv=LINUXNS_CGROUP_PARENT=linuxns-lab-ci/lab2"
    assert lab.cgroup_parent_name("ci") == "linuxns-lab-ci"  # what down removes
    assert not [line for line in lab.sshd_config_text(lab_name="ci").splitlines() if line.startswith("SetEnv")]


def test_sshd_config_text():
    lines = lab.sshd_config_text().splitlines()
    for want in (
        "HostKey /run/lab/ssh_host_ed25519_key",
        "PermitRootLogin prohibit-password",
        "AuthorizedKeysFile /run/lab/authorized_keys",
        "StrictModes no",
        "UsePAM no",
        "PidFile /run/sshd.pid",
        "MaxStartups 200",
        "MaxSessions 200",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
    ):
        assert want in lines
    assert not any(line.startswith("ListenAddress") for line in lines)  # given per host


def test_parse_stat_handles_odd_command_names():
    fields = " ".join(str(i) for i in range(3, 53)).split()
    fields[0] = "S"
    fields[19] = "123456"
    text = "42 (a) b (c)) " + " ".join(fields)
    assert lab.parse_stat(text) == ("S", 123456)


def test_proc_start_time_of_this_process():
    me = os.getpid()
    assert lab.proc_start_time(me) > 0
    assert lab.is_running(me, lab.proc_start_time(me))
    assert not lab.is_running(me, -1)


MOUNTINFO = """\
25 19 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:27 /process_api /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory
30 25 0:28 / /sys/fs/cgroup/pids rw,nosuid shared:14 - cgroup cgroup rw,pids,release_agent=/x
"""
SELF_CGROUP = """\
9:name=systemd:/
5:memory:/process_api/abc
4:cpu,cpuacct:/sess
3:pids:/
0::/u
"""


def test_own_cgroup_dirs_from_sample_text(tmp_path):
    (tmp_path / "mountinfo").write_text(MOUNTINFO)
    (tmp_path / "cgroup").write_text(SELF_CGROUP)
    dirs = lab.own_cgroup_dirs("linuxns-lab-x", str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert dirs == {
        "unified": "/sys/fs/cgroup/unified/u/linuxns-lab-x",
        "name=systemd": "/sys/fs/cgroup/systemd/linuxns-lab-x",
        "cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/sess/linuxns-lab-x",
        "memory": "/sys/fs/cgroup/memory/abc/linuxns-lab-x",  # the mount's root is /process_api
        "pids": "/sys/fs/cgroup/pids/linuxns-lab-x",
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="makes cgroups (below this process's own)")
def test_remove_cgroup_tree_removes_it_in_every_hierarchy():
    rel = "linuxns-labtest-%d" % os.getpid()
    dirs = lab.own_cgroup_dirs(rel)
    assert dirs
    try:
        for d in dirs.values():
            os.makedirs(os.path.join(d, "a", "b"))
        assert lab.remove_cgroup_tree(rel) == []
        assert [d for d in dirs.values() if os.path.exists(d)] == []
        assert lab.remove_cgroup_tree(rel) == []  # idempotent
    finally:
        for d in dirs.values():
            for sub in ("a/b", "a", ""):
                if os.path.isdir(os.path.join(d, sub)):
                    os.rmdir(os.path.join(d, sub))
    with pytest.raises(lab.LabError):
        lab.remove_cgroup_tree("../x")


def _alive(pid: int) -> bool:
    """Running (a zombie, killed and not yet reaped by its new parent, counts as gone)."""
    st = lab.proc_stat(pid)
    return st is not None and st[0] != "Z"


@pytest.mark.parametrize("how", ["timeout", "interrupt"])
def test_run_tree_kills_the_forked_children_too(tmp_path, how):
    """run_tree (ansible-playbook in the tests' harness and the benches): a timeout or an
    interruption kills the program and every process below it, not only the first process.
    Ansible's forked workers outlived a killed bench with subprocess.run (their ssh to a removed
    lab host hanging for ever), and killing the process group was not enough either: a worker
    calls setsid() and leaves it. The child here does both, as a worker does: a session of its
    own, its stdio on /dev/null."""
    pid_file = tmp_path / "child.pid"
    script = f"(exec >/dev/null 2>&1 </dev/null; exec setsid sleep 300) & echo $! > {pid_file}; wait"
    child = None
    try:
        if how == "timeout":
            with pytest.raises(subprocess.TimeoutExpired):
                lab.run_tree(["bash", "-c", script], capture_output=True, text=True, timeout=1)
        else:
            def interrupt():  # as the benches' SIGTERM handler does: an exception in the waiting caller
                while not pid_file.exists() or not pid_file.read_text().strip():
                    threading.Event().wait(0.02)
                signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

            def stop(signum, frame):
                raise KeyboardInterrupt

            old = signal.signal(signal.SIGUSR1, stop)
            try:
                threading.Thread(target=interrupt, daemon=True).start()
                with pytest.raises(KeyboardInterrupt):
                    lab.run_tree(["bash", "-c", script], capture_output=True, text=True)
            finally:
                signal.signal(signal.SIGUSR1, old)
        child = int(pid_file.read_text())
        for _attempt in range(100):  # SIGKILL is delivered asynchronously: a moment to die, not a timing check
            if not _alive(child):
                break
            threading.Event().wait(0.05)
        assert not _alive(child), "the forked child outlived the run"
    finally:
        if child is not None and _alive(child):
            os.kill(child, 9)  # the child this test started, by its pid
