"""`ansible-test sanity` (validate-modules, pylint, pep8, import, yamllint, ...) passes, without an ignore file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GET_PIP = REPO.parent / "shared" / "tools" / "get_pip_offline.py"


@pytest.mark.slow
def test_ansible_test_sanity():
    if not (REPO / ".venv" / "bin" / "ansible-test").exists():
        pytest.skip("no .venv (make venv)")
    if not GET_PIP.exists():
        pytest.skip("no ../shared/tools/get_pip_offline.py: ansible-test cannot bootstrap pip offline")
    assert not list((REPO / "tests").glob("sanity/ignore-*.txt")), "the collection keeps no sanity ignore file"
    out = subprocess.run(["make", "-s", "sanity"], cwd=str(REPO), capture_output=True, text=True, timeout=900, check=False)
    report = out.stdout[-6000:] + out.stderr[-6000:]
    assert out.returncode == 0, report
    assert "Running sanity test \"validate-modules\"" in out.stdout + out.stderr, report
