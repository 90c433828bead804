"""The parent/child handshake of a guest's creation, over real pipes and a real fork."""

from __future__ import annotations

import errno
import os

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, LimitReached
from ansible_collections.linuxns.guests.plugins.module_utils.handshake import Handshake, Step


def _fork(child) -> tuple:
    """Fork a child running ``child(hs)`` on its side; returns (pid, hs on the parent's side)."""
    hs = Handshake()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 3
        try:
            hs.child_side()
            code = child(hs) or 0
        finally:
            os._exit(code)
    hs.parent_side()
    return pid, hs


def _exit_code(pid) -> int:
    status = os.waitpid(pid, 0)[1]
    assert os.WIFEXITED(status), status
    return os.WEXITSTATUS(status)


def test_steps_in_order_with_acks():
    def child(hs):
        hs.send(Step.USER)
        hs.wait_ack()
        hs.send(Step.TIME)
        hs.wait_ack()
        hs.send(Step.READY, pid=os.getpid())
        hs.wait_done()
        return 7

    pid, hs = _fork(child)
    try:
        assert hs.receive("g")["step"] is Step.USER
        hs.ack()
        assert hs.receive("g")["step"] is Step.TIME
        hs.ack()
        msg = hs.receive("g")
        assert msg["step"] is Step.READY and msg["pid"] == pid
        hs.done()
    finally:
        hs.close()
    assert _exit_code(pid) == 7


def test_a_child_whose_parent_is_gone_exits_at_once():
    """Without the ACK (the parent closed its ends: it died), the child exits 1 instead of going on."""
    def child(hs):
        hs.send(Step.USER)
        hs.wait_ack()
        return 0  # not reached

    pid, hs = _fork(child)
    assert hs.receive("g")["step"] is Step.USER
    hs.close()
    assert _exit_code(pid) == 1


def test_the_childs_error_keeps_its_class_and_details():
    def child(hs):
        hs.send_error(LimitReached("cannot create a pid namespace", errno=errno.ENOSPC, limit="/proc/sys/user/max_pid_namespaces"))

    pid, hs = _fork(child)
    try:
        with pytest.raises(LimitReached) as exc:
            hs.receive("g")
    finally:
        hs.close()
    _exit_code(pid)
    assert exc.value.errno == errno.ENOSPC and exc.value.details == {"limit": "/proc/sys/user/max_pid_namespaces"}


def test_a_dead_child_or_a_wrong_message_is_a_clear_error():
    pid, hs = _fork(lambda hs: 0)
    try:
        with pytest.raises(GuestError, match="guest 'g': the process creating its namespaces died unexpectedly"):
            hs.receive("g")
    finally:
        hs.close()
    _exit_code(pid)

    def child(hs):
        os.write(hs.fd("c2p_w"), b'{"step": "dance"}\n')

    pid, hs = _fork(child)
    try:
        with pytest.raises(GuestError, match="not a step"):
            hs.receive("g")
    finally:
        hs.close()
    _exit_code(pid)


def test_go_returns_the_inits_exec_failure():
    def child(hs):
        hs.send(Step.READY)
        hs.wait_go()
        os.write(hs.status_fd(), b"init /sbin/nope could not be started")
        return 0

    pid, hs = _fork(child)
    try:
        assert hs.receive("g")["step"] is Step.READY
        assert hs.go() == "init /sbin/nope could not be started"
    finally:
        hs.close()
    assert _exit_code(pid) == 0
