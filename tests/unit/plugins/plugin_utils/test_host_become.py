"""Host-side become (sudo) of the entry program and the inventory's discovery helpers, without a lab.

The program's stdin handling is run for real with this machine's Python (a probe module as its main
instead of entry.py): the password line and the marker never reach the command's input.
"""

from __future__ import annotations

import ast
import os
import shlex
import subprocess
import sys

import pytest

from ansible_collections.linuxns.guests.plugins.inventory import guests as inv
from ansible_collections.linuxns.guests.plugins.plugin_utils import entry_program as ep

PROBE = [("probe", "import os, sys\n\ndef main():\n    data = b''\n    while True:\n        chunk = os.read(0, 65536)\n"
                   "        if not chunk:\n            break\n        data += chunk\n    sys.stdout.write(repr((sys.argv[1:], data)))\n"
                   "    return 0\n")]


def run_probe(stdin: bytes, marked: bool, env=None):
    program = ep.program_text(PROBE, main="probe")
    argv = [sys.executable, "-I", "-S", "-c", program] + ([ep.STDIN_MARK_ARG] if marked else []) + ["status", "/nonexistent-state"]
    proc = subprocess.run(argv, input=stdin, capture_output=True, check=True, env=env if env is not None else {})
    return ast.literal_eval(proc.stdout.decode())


def test_the_password_line_and_marker_never_reach_the_command():
    data = b"module payload\n" + bytes(range(256)) * 4
    # sudo did not read the password (NOPASSWD, or cached): the program drops it and the marker
    assert run_probe(ep.become_stdin("s3cret pw", data), marked=True) == (["status", "/nonexistent-state"], data)
    # sudo read the password line: only the marker is left to drop
    assert run_probe(ep.STDIN_MARK_LINE + data, marked=True)[1] == data
    # no input of the command's own
    assert run_probe(ep.become_stdin("pw", None), marked=True)[1] == b""
    # a program started without the mark reads stdin untouched
    assert run_probe(b"pw\n" + ep.STDIN_MARK_LINE + b"x", marked=False)[1] == b"pw\n" + ep.STDIN_MARK_LINE + b"x"
    # the entry's re-exec from its sealed clone (same argv, flag in the environment) does not drop again
    assert run_probe(b"data", marked=True, env={"LINUXNS_STDIN_MARK_DROPPED": "1"})[1] == b"data"


def test_become_command_lines_and_refusals():
    cmd = ep.command("/usr/bin/python3", ["status", "/run/linuxns"], become=("sudo", "root", True))
    argv = shlex.split(cmd)
    assert argv[:8] == ["sudo", "-S", "-k", "-p", "", "-u", "root", "--"]
    assert argv[8:12] == ["/usr/bin/python3", "-I", "-S", "-c"] and argv[13:] == [ep.STDIN_MARK_ARG, "status", "/run/linuxns"]
    argv = shlex.split(ep.command("/usr/bin/python3", ["status", "/run/linuxns"], become=("sudo", "admin", False)))
    assert argv[:5] == ["sudo", "-n", "-u", "admin", "--"] and ep.STDIN_MARK_ARG not in argv
    assert shlex.split(ep.command("/usr/bin/python3", ["status", "/s"]))[0] == "/usr/bin/python3"
    with pytest.raises(ValueError, match="not one of: sudo"):
        ep.become_argv("su", "root", False)
    with pytest.raises(ValueError, match="not a user name"):
        ep.become_argv("sudo", "-h", False)
    with pytest.raises(ValueError, match="line break"):
        ep.become_stdin("two\nlines", None)
    disc = shlex.split(ep.discover_command("/usr/bin/python3", "/run/linuxns", become=("sudo", "root", True)))
    assert disc[:3] == ["sudo", "-S", "-k"] and disc[-3:] == [ep.STDIN_MARK_ARG, "discover", "/run/linuxns"]
    assert len(disc[12]) < 128 * 1024  # one argv string: below the kernel's MAX_ARG_STRLEN


def test_discover_program_runs_here_on_an_empty_state_dir(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the registry wants root")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    proc = subprocess.run(ep.discover_command(sys.executable, str(state)), shell=True, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '{"protocol": 1, "guests": {}}'


def test_inventory_reads_host_become_from_the_hosts_vars():
    host = {"vars": {}}
    assert inv.host_become(host) is None
    host["vars"] = {"linuxns_host_become": "yes"}
    assert inv.host_become(host) == ("sudo", "root", None)
    host["vars"] = {"ansible_linuxns_host_become": True, "linuxns_host_become_password": "pw", "linuxns_host_become_user": "adm"}
    assert inv.host_become(host) == ("sudo", "adm", "pw")
    host["vars"] = {"linuxns_host_become": "false", "linuxns_host_become_password": "pw"}
    assert inv.host_become(host) is None


def test_discovered_vars():
    answer = {"guests": {"web": {"context_id": 7, "status": "running", "namespaces": ["net", "uts"], "root": "/srv/web",
                                 "cgroup": {"parent": "linuxns", "paths": {"unified": "/sys/fs/cgroup/linuxns/web"}},
                                 "problems": [], "addresses": [{"ifname": "eth0", "family": "inet", "address": "10.0.0.2", "prefixlen": 24},
                                                               {"ifname": "eth0", "family": "inet6", "address": "fd00::2", "prefixlen": 64}]}}}
    got = inv.discovered_vars(answer, {"spec": {"name": "web"}, "discovered": True})
    assert got["linuxns_guest_addresses"] == ["10.0.0.2", "fd00::2"]
    assert got["linuxns_guest_context_id"] == 7 and got["linuxns_guest_discovered"] is True
    assert got["linuxns_guest_cgroup"]["parent"] == "linuxns" and got["linuxns_guest_root"] == "/srv/web"
    # declared with another context id: that guest is not this one
    other = inv.discovered_vars(answer, {"spec": {"name": "web", "context_id": 8}})
    assert other["linuxns_guest_addresses"] == [] and other["linuxns_guest_context_id"] is None
    # host unreachable
    assert inv.discovered_vars(None, {"spec": {"name": "web"}})["linuxns_guest_discovered"] is False
