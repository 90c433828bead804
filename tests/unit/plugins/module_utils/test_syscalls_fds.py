# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""close_range and its fallback loop, close_fds_except, seal_fds, check_cwd, and the tty relay of the entry program."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import enter, entry, guests
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError as exc:
        assert exc.errno == errno.EBADF
        return False


def _cloexec(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


def _inheritable_fds(n: int) -> list:
    fds = []
    for _i in range(n):
        fd = os.open("/dev/null", os.O_RDONLY)
        os.set_inheritable(fd, True)
        fds.append(fd)
    return sorted(fds)


@pytest.mark.parametrize("close", [sc.close_range, sc.close_range_loop], ids=["syscall", "loop"])
def test_close_range_closes_only_the_range(close):
    fds = _inheritable_fds(4)
    try:
        close(fds[1], fds[2])
        assert [_is_open(fd) for fd in fds] == [True, False, False, True]
    finally:
        for fd in (fds[0], fds[3]):
            os.close(fd)


@pytest.mark.parametrize("close", [sc.close_range, sc.close_range_loop], ids=["syscall", "loop"])
def test_close_range_cloexec_marks_without_closing(close):
    fds = _inheritable_fds(3)
    try:
        close(fds[1], fds[2], sc.CLOSE_RANGE_CLOEXEC)
        assert all(_is_open(fd) for fd in fds)
        assert [_cloexec(fd) for fd in fds] == [False, True, True]
    finally:
        for fd in fds:
            os.close(fd)


def _in_child(func, with_fd: bool = False) -> dict:
    """func() (or func(w), w: the answer pipe) in a forked child; its JSON answer."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            out = {"ok": func(w) if with_fd else func()}
        except BaseException as exc:
            out = {"error": "%s: %s" % (type(exc).__name__, exc)}
        enter.write_all(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = enter.read_all(r)
    os.close(r)
    enter.wait_child(pid)
    return json.loads(data.decode())


def test_close_fds_except_and_seal_fds():
    """In a child: close_fds_except keeps what it is told; seal_fds marks the rest close-on-exec."""

    def body(w):
        fds = _inheritable_fds(5)
        keep = {fds[1], fds[3], w}
        enter.close_fds_except(keep)
        left = sorted(fd for fd in (int(n) for n in os.listdir("/proc/self/fd")) if fd > 2 and _is_open(fd))
        enter.seal_fds()
        return {"keep": sorted(keep), "left": left, "cloexec": [_cloexec(fd) for fd in sorted(keep)], "stdin": _cloexec(0)}

    res = _in_child(body, with_fd=True)["ok"]
    assert res["left"] == res["keep"], res
    assert res["cloexec"] == [True, True, True] and res["stdin"] is False, res


def test_check_cwd_accepts_a_folder_under_the_root(tmp_path):
    def body():
        os.chdir(str(tmp_path))
        enter.check_cwd("g")
        return os.getcwd()

    assert _in_child(body) == {"ok": str(tmp_path)}


# ------------------------------------------------------------------------------------------
# the entry program's relay: a terminal on 0/1/2 never reaches the guest
# ------------------------------------------------------------------------------------------
def _run_on_a_pty(meta, cmd: str, typed: bytes) -> tuple:
    """entry.run_exec in a child whose 0/1/2 are a new pty (what sshd gives `ssh -tt`); (output, rc)."""
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - child
        rc = 99
        try:
            rc = entry.run_exec(meta, cmd)
        finally:
            os._exit(rc)
    os.write(master, typed)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child and its pty are gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    status = enter.wait_child(pid)
    return b"".join(chunks).decode(errors="replace").replace("\r", ""), os.WEXITSTATUS(status)


@pytest.mark.timeout(120)
def test_run_exec_on_a_tty_gives_the_guest_pipes(unit_registry, busybox_root):
    guests.ensure_guests(unit_registry, [{"name": "tty", "root": busybox_root}])
    meta = unit_registry.find("tty")
    out, rc = _run_on_a_pty(meta, "read x; echo got:$x; ls -l /proc/self/fd; exit 7", b"hello\n")
    assert rc == 7, out
    assert "got:hello" in out, out  # what is typed reaches the command's stdin
    links = [line.split(" -> ", 1)[1] for line in out.splitlines() if " -> " in line]
    fds = [line.split(" -> ", 1)[0].split()[-1] for line in out.splitlines() if " -> " in line]
    assert fds[:3] == ["0", "1", "2"] and all(t.startswith("pipe:") for t in links[:3]), out
    assert "/dev/pts" not in out and "ptmx" not in out, out


@pytest.mark.timeout(120)
def test_run_exec_without_a_tty_passes_its_own_fds(unit_registry, busybox_root):
    """No terminal: the program gets the caller's 0/1/2 themselves (no relay)."""
    guests.ensure_guests(unit_registry, [{"name": "notty", "root": busybox_root}])
    meta = unit_registry.find("notty")
    r, w = os.pipe()

    def body():
        os.dup2(w, 1)
        return entry.run_exec(meta, "readlink /proc/self/fd/1")

    try:
        res = _in_child(body)
        os.close(w)
        w = -1
        out = enter.read_all(r).decode()
        mine = os.readlink("/proc/self/fd/%d" % r)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    assert res == {"ok": 0}, res
    assert out.strip() == mine, (out, mine)  # the same pipe, not a relayed one
