"""roles/guest_host/files/guest_host_check.py: the guest_host role's one read of the host, run as the
role runs it (``python -c SCRIPT JSON``, through ansible.builtin.raw).

pyroute2 is found the way netns_link finds it (on the import path), never imported: the import was
most of the call's time, and a package whose import has side effects must not run them here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPT = (Path(__file__).resolve().parents[3] / "roles" / "guest_host" / "files" / "guest_host_check.py").read_text()


def check(request: dict, env=None, python=sys.executable, flags=()) -> dict:
    proc = subprocess.run([python, *flags, "-c", SCRIPT, json.dumps(request)], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1, proc.stdout  # one line of JSON: the role parses raw's stdout
    return json.loads(proc.stdout)


def test_pyroute2_on_the_path_is_found_without_being_imported(tmp_path):
    fake = tmp_path / "site" / "pyroute2"
    fake.mkdir(parents=True)
    marker = tmp_path / "imported"
    (fake / "__init__.py").write_text("open(%r, 'w').close()\nraise SystemExit(3)\n" % str(marker))
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    os.chmod(str(tmp_path), 0o755)
    out = check({"pyroute2": True, "dirs": [str(tmp_path), str(tmp_path / "nope")], "sysctl": ["kernel.pid_max"]}, env=env)
    assert out["pyroute2"] is True
    assert not marker.exists()
    assert out["dirs_ok"] == [str(tmp_path)]
    with open("/proc/sys/kernel/pid_max") as f:
        assert out["sysctl"] == [f.read().strip()]


def test_pyroute2_missing_is_reported_not_raised(tmp_path):
    # -S -I: no site-packages, no PYTHONPATH - a Python without pyroute2
    out = check({"pyroute2": True}, python="/usr/bin/python3", flags=("-S", "-I"))
    assert out["pyroute2"] is False


def test_pyroute2_is_not_asked_when_the_role_does_not_need_it():
    assert "pyroute2" not in check({"pyroute2": False})
