"""Molecule scenarios (extensions/molecule) run by tests/lab/molecule.sh, each on its own lab
(create = lab up, destroy = lab down), both scenarios at the same time so that the wall
time is the longer of the two. `make molecule` runs the same script one scenario after the other.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.extended]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "lab" / "molecule.sh"
SCENARIOS = {"default": 1, "fleet": 2}   # scenario -> lab hosts it brings up
_LOCK = threading.Lock()


def _free_bases(count_per_scenario: dict) -> dict:
    """Lab bases whose host numbers have no lnsg veth on this machine (201..240, bottom up;
    test_lab takes free numbers from the top, 254 down)."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    taken = {int(n) for n in re.findall(r"^\d+: lnsg(\d+)[@:]", links, re.M)}
    bases, g = {}, 201
    for scenario, count in count_per_scenario.items():
        while g + count - 1 <= 240 and any(n in taken for n in range(g, g + count)):
            g += 1
        if g + count - 1 > 240:
            pytest.skip("no free lab host numbers in 201..240")
        bases[scenario] = g - 1
        g += count
    return bases


def test_molecule_scenarios():
    if os.geteuid() != 0:
        pytest.skip("lab hosts need root")
    if not (REPO / ".venv" / "bin" / "molecule").exists():
        pytest.skip("no molecule in .venv (make venv)")
    bases = _free_bases(SCENARIOS)
    procs = {}
    for scenario, base in bases.items():
        env = dict(os.environ, LINUXNS_LAB="mol%d-%s" % (os.getpid(), scenario), LINUXNS_LAB_BASE=str(base), NO_COLOR="1",
                   MOLECULE_LAB_PURGE="1")
        procs[scenario] = subprocess.Popen(["bash", str(SCRIPT), scenario], cwd=str(REPO), env=env, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = {}
    try:
        for scenario, proc in procs.items():
            outputs[scenario] = proc.communicate(timeout=900)[0]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()   # the script's trap takes its lab down
                proc.wait(timeout=120)
    for scenario, proc in procs.items():
        out = outputs.get(scenario, "")
        assert proc.returncode == 0, "molecule scenario %s failed:\n%s" % (scenario, out[-12000:])
        assert re.search(r"%s\s*: actions=\d+\s+successful=(\d+)\s+disabled=0\s+skipped=0\s+missing=0\s+failed=0" % scenario,
                         re.sub(r"\x1b\[[0-9;]*m", "", out)), out[-4000:]
        assert "idempotence: Executed: Successful" in re.sub(r"\x1b\[[0-9;]*m", "", out).replace("➜ ", "")
    # Each scenario's lab is gone again, state folder included.
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    for scenario, base in bases.items():
        for n in range(1, SCENARIOS[scenario] + 1):
            assert not re.search(r"^\d+: lnsg%d[@:]" % (base + n), links, re.M), "%s: lab host %d left behind" % (scenario, n)
        assert not (REPO / (".lab-mol%d-%s" % (os.getpid(), scenario))).exists()
