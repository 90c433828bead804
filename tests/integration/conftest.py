"""Fixtures for integration tests: a session lab of 2 hosts and Ansible runs against it.

    def test_example(ansible_playbook, converge, lab_exec):
        run = ansible_playbook([{"ansible.builtin.command": "hostname"}], hosts="lab2")
        assert run.last["stdout"] == "lab2"

The lab is taken down at the end of the session whatever happens (finalizer, atexit and
SIGTERM), unless LINUXNS_LAB_KEEP=1: then a running lab is reused and left up.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile

import pytest
from harness import Ansible
from harness import lab_exec as _lab_exec

LAB_HOSTS = 2


def _keep() -> bool:
    return os.environ.get("LINUXNS_LAB_KEEP", "") not in ("", "0")


@pytest.fixture(scope="session")
def lab(request):
    """The session's Lab (tests/lab/lab.py) with hosts lab1 and lab2 up."""
    from lab import Lab

    if os.geteuid() != 0:
        pytest.skip("lab hosts need root")
    the_lab = Lab()
    done = []

    def teardown():
        if done:
            return
        done.append(True)
        if not _keep():
            the_lab.down()

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, on_sigterm)
    atexit.register(teardown)
    request.addfinalizer(teardown)
    the_lab.up(LAB_HOSTS)
    yield the_lab
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(scope="session")
def ansible(lab):
    """Session Ansible runner (harness.Ansible) bound to the lab."""
    workdir = tempfile.mkdtemp(prefix="linuxns-ansible-")
    yield Ansible(lab, workdir)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def ansible_playbook(ansible):
    """ansible_playbook(play_or_tasks, hosts='lab1', check=False, diff=False, env=None,
    connection='ssh', extra_vars=None, expect_fail=False, ...) -> harness.AnsibleRun"""
    return ansible.playbook


@pytest.fixture
def ansible_adhoc(ansible):
    """ansible_adhoc(host, module, args=None, check=False, ...) -> harness.AnsibleRun"""
    return ansible.adhoc


@pytest.fixture
def converge(ansible):
    """converge(task, hosts='lab1', check_idempotent=True, **playbook_kw) -> harness.Converged"""
    return ansible.converge


@pytest.fixture
def lab_exec(lab):
    """lab_exec(host, argv, check=True) -> CompletedProcess; runs inside lab host (1 or 'lab1')."""

    def run(host, argv, check=True, **kw):
        return _lab_exec(lab, host, argv, check=check, **kw)

    return run
