"""ptys: terminals allocated inside guests and detached commands, run for real (as root, no Ansible)."""

from __future__ import annotations

import os
import stat

import pytest
from waiting import wait_for

from ansible_collections.linuxns.guests.plugins.module_utils import guests, procfs, ptys
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, InvalidInput
from ansible_collections.linuxns.guests.plugins.module_utils.execute import Request


@pytest.fixture
def guest(unit_registry, busybox_root):
    for applet in ("tty", "stty", "test", "sh"):
        path = os.path.join(busybox_root, "bin", applet)
        if not os.path.lexists(path):
            os.symlink("busybox", path)
    guests.ensure_guests(unit_registry, [{"name": "p1", "root": busybox_root, "stop_timeout": 1}])
    return unit_registry.find("p1")


def cmdline(pid: int) -> list:
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().split(b"\0")


def guest_path(meta, path: str) -> str:
    return os.path.join(meta.root, path.lstrip("/"))


def test_open_pair_gives_a_pty_and_refuses_what_is_not_ptmx(tmp_path):
    master, slave = ptys.open_pair("/dev/ptmx")
    try:
        assert os.isatty(slave)
        os.write(master, b"x\n")
        assert os.read(slave, 10) == b"x\n"
    finally:
        os.close(master)
        os.close(slave)
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    with pytest.raises(GuestError, match="not the pty multiplexer"):
        ptys.open_pair(fifo)  # never blocks on a FIFO
    with pytest.raises(GuestError, match="cannot be opened"):
        ptys.open_pair(str(tmp_path / "missing"))


def test_tty_command_sees_a_terminal_of_the_guest(guest):
    req = Request(argv=["sh", "-c", "test -t 0 && test -t 1 && tty && stty size; echo to-stderr >&2"])
    res = ptys.run_tty(guest, req)
    assert res["rc"] == 0 and res["changed"] and res["tty"], res
    lines = res["stdout"].splitlines()
    assert lines[0].startswith("/dev/pts/"), res  # the guest's own devpts instance
    assert lines[1:] == ["24 80", "to-stderr"], res
    assert "\r" not in res["stdout"]


def test_tty_stdin_is_typed_without_echo_then_eof(guest):
    res = ptys.run_tty(guest, Request(argv=["sh", "-c", "read a; echo got=$a; cat; echo end"], stdin="hello"))
    assert res["stdout"].splitlines() == ["got=hello", "end"], res


def test_tty_failure_and_not_found(guest):
    res = ptys.run_tty(guest, Request(argv=["sh", "-c", "exit 3"]))
    assert res["rc"] == 3 and res.get("failed"), res
    res = ptys.run_tty(guest, Request(argv=["no-such-program"]))
    assert res["rc"] == 127 and res.get("failed") and "not found" in res["msg"], res


def test_detach_outlives_the_call_and_writes_its_log(guest):
    log = "/tmp/detached.log"
    res = ptys.run_detached(guest, Request(argv=["sh", "-c", "echo started; exec sleep 300"]), log)
    try:
        assert res["changed"] and res["rc"] == 0 and res["detach_log"] == log, res
        pid = res["pid"]
        assert procfs.process_alive(pid, procfs.proc_start_time(pid))
        # re-parented to the guest's init: its parent is the guest's PID 1
        with open("/proc/%d/status" % pid) as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        assert int(status["PPid"]) == guest.init_pid
        assert res["guest_pid"] == int(status["NSpid"].split()[-1]) and res["guest_pid"] != pid
        # the call returns once the command is started, not once the shell has run its script
        wait_for(lambda: cmdline(pid)[:2] == [b"sleep", b"300"], "the detached shell exec'ing sleep 300")
        st = os.stat(guest_path(guest, log))
        assert stat.S_IMODE(st.st_mode) == 0o600
        with open(guest_path(guest, log)) as f:
            assert f.read() == "started\n"
    finally:
        if res.get("pid"):
            os.kill(res["pid"], 9)


def test_detach_refuses_a_symlinked_log_and_reports_not_found(guest):
    os.symlink("/etc/passwd", guest_path(guest, "/tmp/link.log"))
    with pytest.raises(InvalidInput, match="cannot be opened inside guest 'p1'"):
        ptys.run_detached(guest, Request(argv=["true"]), "/tmp/link.log")
    res = ptys.run_detached(guest, Request(argv=["no-such-program"]), "/tmp/x.log")
    assert res.get("failed") and res["rc"] == 127, res


def test_detach_creates_skips(guest):
    res = ptys.run_detached(guest, Request(argv=["true"], creates="/etc"), "/tmp/x.log")
    assert not res["changed"] and "exists" in res["msg"], res
    assert not os.path.exists(guest_path(guest, "/tmp/x.log"))


@pytest.mark.parametrize("params,match", [
    ({"detach": True, "tty": True}, "cannot be used together"),
    ({"detach_log": "/tmp/x"}, "only used with detach"),
    ({"detach": True, "detach_log": "relative.log"}, "absolute path"),
    ({"detach": True, "timeout": 3}, "timeout cannot be used with detach"),
    ({"detach": True, "stdin": "x"}, "stdin cannot be used with detach"),
    ({"tty": True, "stdin": "x" * 5000}, "at most 4095 bytes"),
])
def test_check_options(params, match):
    with pytest.raises(InvalidInput, match=match):
        ptys.check_options(params)
    ptys.check_options({"detach": True, "detach_log": "/var/log/x.log"})
    ptys.check_options({"tty": True, "stdin": "short"})
