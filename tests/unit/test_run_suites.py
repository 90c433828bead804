"""tests/run_suites.py (what `make test` runs): both suites run, and only two exit statuses of 0 pass.

The PYTHON it is given is a stand-in script here, which prints its arguments and exits with the
status the test asks for per suite: the runner's own logic is under test, not pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "tests" / "run_suites.py"

STAND_IN = """#!/bin/sh
# $1 = -m, $2 = pytest, $3 = the first test path
echo "ran: $*"
case "$3" in
  tests/unit) exit {unit} ;;
  *) exit {lab} ;;
esac
"""


def run(tmp_path, unit: int, lab: int) -> subprocess.CompletedProcess:
    python = tmp_path / "python"
    python.write_text(STAND_IN.format(unit=unit, lab=lab))
    python.chmod(0o755)
    return subprocess.run([sys.executable, str(RUNNER), str(python), "-m", "not extended", "-x"],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("unit, lab, rc", [(0, 0, 0), (0, 5, 1), (5, 0, 1), (1, 0, 1), (0, 1, 1), (2, 2, 1)])
def test_only_two_zero_statuses_pass(tmp_path, unit, lab, rc):
    out = run(tmp_path, unit, lab)
    assert out.returncode == rc, out.stdout + out.stderr
    # both suites ran, with the same arguments, each on its own paths
    assert "ran: -m pytest tests/unit -m not extended -x" in out.stdout
    assert "ran: -m pytest tests/integration tests/security -m not extended -x" in out.stdout
    # the unit output comes whole, after the lab suites' output, under its header
    assert out.stdout.index("tests/integration") < out.stdout.index("unit suite (ran at the same time)") \
        < out.stdout.index("tests/unit -m")
    assert "unit                       pytest exit %d" % unit in out.stdout
    assert "integration and security   pytest exit %d" % lab in out.stdout
    assert ("FAILED" in out.stdout) == (rc != 0)


def test_no_arguments_is_usage(tmp_path):
    out = subprocess.run([sys.executable, str(RUNNER)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "run_suites.py PYTHON" in out.stderr
