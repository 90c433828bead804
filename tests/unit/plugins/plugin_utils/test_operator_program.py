"""linuxns-guest, the operator's command: built into one file (as the role installs it) and run for
real against guests of a unit registry (as root, no Ansible); ``enter`` driven on a pseudo-terminal."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from ptydriver import Terminal

from ansible_collections.linuxns.guests.plugins.module_utils import guest_info, guests
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.plugin_utils import operator_program

PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("operator") / "linuxns-guest")
    with open(path, "w") as f:
        f.write(operator_program.program_text(PYTHON))
    os.chmod(path, 0o755)
    return path


@pytest.fixture
def fleet(unit_registry, busybox_root):
    for applet in ("stty", "tty"):
        os.symlink("busybox", os.path.join(busybox_root, "bin", applet))
    guests.ensure_guests(unit_registry, [{"name": "op1", "root": busybox_root, "hostname": "op1.test", "context_id": 41, "stop_timeout": 1},
                                         {"name": "op2", "namespaces": ["uts", "ipc"], "stop_timeout": 1}])
    return unit_registry


def lg(program, registry, *args, **kw):
    # the unit registry's own netns folder: a guest made again (start) never names its netns in the machine's /run/netns
    return subprocess.run([program, "--state-dir", registry.state_dir, "--netns-dir", registry.netns_dir, *args], capture_output=True, text=True, check=False,
                          **kw)


def test_the_program_embeds_the_module_utils_as_the_files_have_them():
    """No ast round trip on the controller: the role guest_host builds this text in a condition on
    every host of every run (the stripped build took ~0.25 s of the controller's CPU each time)."""
    srcs = operator_program.sources()
    assert set(srcs) == set(operator_program.bundled_names())
    for name, src in srcs.items():
        with open(os.path.join(operator_program.module_utils_dir(), name + ".py"), encoding="utf-8") as f:
            assert src == f.read(), name
    text = operator_program.program_text(PYTHON)
    assert "# Copyright: (c) 2026, linuxns.guests contributors" in text


def test_the_program_is_one_file_of_the_module_utils(program):
    with open(program) as f:
        head = f.read(200)
    assert head.startswith("#!%s -IS\n" % PYTHON)
    names = operator_program.bundled_names()
    assert {"operator_cli", "ptys", "enter", "guest_info", "guests", "sealed"} <= set(names)


def test_usage_errors_exit_2(program, unit_registry):
    for args in ([], ["bogus"], ["status"], ["status", "a", "b"], ["exec", "op1"], ["exec", "op1", "true"], ["--nope", "list"],
                 ["list", "extra"]):
        res = lg(program, unit_registry, *args)
        assert res.returncode == 2, (args, res)
        assert res.stderr.startswith("linuxns-guest: ") and "usage: linuxns-guest" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    res = lg(program, unit_registry, "--help")
    assert res.returncode == 0 and "enter NAME|CTXID" in res.stdout


def test_list_and_status_match_namespace_info(program, fleet):
    res = lg(program, fleet, "list", "--json")
    assert res.returncode == 0, res
    rows = {r["name"]: r for r in json.loads(res.stdout)["guests"]}
    views = {v["name"]: v for v in guest_info.info(fleet)["guests"]}
    assert set(rows) == set(views) == {"op1", "op2"}
    for name, view in views.items():
        assert rows[name]["context_id"] == view["context_id"]
        assert rows[name]["state"] == "running"
        assert rows[name]["init_pid"] == view["init_pid"]
        assert rows[name]["pids"] == view["cgroup"]["pids_current"]
    assert rows["op1"]["init_pid"] and rows["op1"]["memory_current"] > 0
    table = lg(program, fleet, "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "CTX", "STATE", "INIT", "MEMORY", "PIDS", "ADDRESSES"]
    assert table[1].split()[:4] == ["op2", str(views["op2"]["context_id"]), "running", "-"]
    assert table[2].split()[:4] == ["op1", "41", "running", str(views["op1"]["init_pid"])]
    res = lg(program, fleet, "status", "41")
    assert res.returncode == 0 and res.stdout.startswith("op1 (context 41): running, init pid %s" % views["op1"]["init_pid"])
    res = lg(program, fleet, "status", "nope")
    assert res.returncode == 4 and "nope" in res.stderr
    res = lg(program, fleet, "status", "nope", "--json")
    assert res.returncode == 4 and json.loads(res.stdout)["state"] == "unknown"


def test_exec_passes_the_exit_status_and_runs_inside(program, fleet):
    res = lg(program, fleet, "exec", "op1", "--", "sh", "-c", "hostname; echo err >&2; exit 7")
    assert (res.returncode, res.stdout, res.stderr) == (7, "op1.test\n", "err\n")
    res = lg(program, fleet, "exec", "op1", "--", "no-such-program")
    assert res.returncode == 127 and "was not found inside guest 'op1'" in res.stderr
    res = lg(program, fleet, "exec", "op1", "--", "sh", "-c", "kill -TERM $$")
    assert res.returncode == 128 + 15
    res = lg(program, fleet, "exec", "ghost", "--", "true")
    assert res.returncode == 4 and "no guest named 'ghost' on this host" in res.stderr


def test_stop_status_start_restart(program, fleet):
    before = fleet.find("op1")
    res = lg(program, fleet, "stop", "op1")
    assert res.returncode == 0 and "stopped" in res.stdout, res
    assert reg.health(fleet.find("op1"))
    res = lg(program, fleet, "status", "op1")
    assert res.returncode == 3 and "stopped" in res.stdout, res
    for cmd in (["exec", "op1", "--", "true"], ["enter", "op1"]):
        res = lg(program, fleet, *cmd)
        assert res.returncode == 125 and "is not running" in res.stderr and "linuxns-guest start op1" in res.stderr, res
    assert lg(program, fleet, "stop", "op1").returncode == 0  # stopping a stopped guest: nothing to do
    # op1 records a service (namespace_create's services, in place): start brings it back with the guest
    for applet in ("tr", "mkdir", "setsid"):
        os.symlink("busybox", os.path.join(before.field("root"), "bin", applet))
    guests.ensure_guests(fleet, [{"name": "op1", "root": before.field("root"), "hostname": "op1.test", "context_id": 41,
                                  "services": [{"name": "idle", "argv": ["/bin/busybox", "sleep", "1000"]}]}])
    assert lg(program, fleet, "stop", "op1").returncode == 0
    res = lg(program, fleet, "start", "op1")
    assert res.returncode == 0 and "; services idle (started " in res.stdout, res
    assert lg(program, fleet, "exec", "op1", "--", "cat", "/proc/%s/cmdline" % res.stdout.split("(started ")[1].split(")")[0]).stdout \
        == "/bin/busybox\0sleep\0001000\0"
    after = fleet.find("op1")
    assert not reg.health(after) and after.context_id == before.context_id == 41 and after.init_pid != before.init_pid
    assert lg(program, fleet, "exec", "op1", "--", "hostname").stdout == "op1.test\n"
    res = lg(program, fleet, "restart", "41")
    assert res.returncode == 0 and fleet.find("op1").init_pid != after.init_pid, res
    assert lg(program, fleet, "start", "op1").stdout.startswith("op1: already running")


def test_enter_is_a_shell_on_a_terminal_of_the_guest(program, fleet):
    meta = fleet.find("op1")
    term = Terminal([program, "--state-dir", fleet.state_dir, "enter", "op1"], rows=30, cols=100, env={"TERM": "xterm"})
    try:
        term.expect("# ")
        term.type("echo A$((6*7)); tty; stty size; hostname; echo $TERM\r")
        screen = term.expect("xterm\r\n")
        assert "A42\r\n/dev/pts/0\r\n30 100\r\nop1.test\r\n" in screen, screen
        term.resize(50, 132)
        term.type("stty size; echo B$((1+1))\r")
        assert "50 132\r\nB2" in term.expect("B2\r\n")
        term.type("sleep 300; echo C$((2+1))\r")
        term.expect("sleep 300")
        ino = os.stat(meta.pins["pid"].path).st_ino
        wait_foreground(ino, "sleep")  # ^C typed before the shell gave the terminal to sleep would be plain input
        term.type("\x03")  # ^C: the guest's terminal turns it into SIGINT for the shell's foreground job
        term.type("echo D$((3+1))\r")
        term.expect("D4\r\n")
        term.type("exit 5\r")
        assert term.wait() == 5
    finally:
        term.kill()
    # nothing is left: the guest's pid namespace holds its init only, no pty of the guest stays open
    ino = os.stat(meta.pins["pid"].path).st_ino
    left = [p for p in os.listdir("/proc") if p.isdigit() and _pid_ns(p) == ino]
    assert left == [str(meta.init_pid)]


def wait_foreground(ino: int, comm: str) -> int:
    """Wait until a process named ``comm`` of the pid namespace ``ino`` is its terminal's foreground job."""
    import time

    end = time.monotonic() + 60
    while time.monotonic() < end:
        for pid in os.listdir("/proc"):
            if pid.isdigit() and _pid_ns(pid) == ino:
                try:
                    with open("/proc/%s/stat" % pid) as f:
                        fields = f.read().rsplit(")", 1)
                except OSError:
                    continue
                rest = fields[1].split()
                if fields[0].endswith("(" + comm) and rest[2] == rest[5]:  # pgrp == tpgid
                    return int(pid)
        time.sleep(0.02)
    raise AssertionError("no %s became the foreground job" % comm)


def _pid_ns(pid):
    try:
        return os.stat("/proc/%s/ns/pid" % pid).st_ino
    except OSError:
        return None


def test_compiled_code_cache_is_used_only_when_root_owns_it(tmp_path, unit_registry):
    """With cache_dir the program keeps its module_utils' code objects and loads them on the next
    run - a planted code object shows it is used - but never from a file or folder another user
    owns or could write (it compiles then, and writes its own file again)."""
    import marshal

    os.chmod(tmp_path, 0o755)
    cache = tmp_path / "cache"
    path = str(tmp_path / "linuxns-guest")
    with open(path, "w") as f:
        f.write(operator_program.program_text(PYTHON, cache_dir=str(cache)))
    os.chmod(path, 0o755)
    assert lg(path, unit_registry, "list").returncode == 0
    (folder,) = cache.iterdir()
    assert folder.stat().st_mode & 0o777 == 0o700
    codes = {p.name: p for p in folder.iterdir()}
    assert {"operator_cli.code", "registry.code"} <= set(codes) and not [n for n in codes if n.endswith(".tmp")]
    assert all(p.stat().st_uid == 0 and p.stat().st_mode & 0o777 == 0o600 for p in codes.values())
    planted = marshal.dumps(compile("import sys\nprint('PLANTED')\nsys.exit(7)\n", "planted", "exec"))
    codes["operator_cli.code"].write_bytes(planted)
    res = lg(path, unit_registry, "list")
    assert (res.returncode, res.stdout) == (7, "PLANTED\n"), res  # loaded from the cache
    for bad in ("group-writable file", "folder of another user"):
        codes["operator_cli.code"].write_bytes(planted)
        if bad == "group-writable file":
            os.chmod(codes["operator_cli.code"], 0o620)
        else:
            os.chown(folder, 65534, 65534)
        res = lg(path, unit_registry, "list")
        assert res.returncode == 0 and "PLANTED" not in res.stdout and res.stdout.startswith("NAME"), (bad, res)
        os.chown(folder, 0, 0)
    # a broken file is compiled again and replaced
    codes["operator_cli.code"].write_bytes(b"\x00broken")
    assert lg(path, unit_registry, "list").returncode == 0
    assert marshal.loads(codes["operator_cli.code"].read_bytes()).co_filename == "<linuxns-guest>/operator_cli.py"
