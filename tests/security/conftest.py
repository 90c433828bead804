# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The escape-test suite: each test attacks the collection the way a guest's root would.

Unit-level tests (marker ``unit``) run the helper in this process as root, exactly as
tests/unit does: they reuse its fixtures (``unit_registry``, ``busybox_root``) and its
private mount namespace, so nothing a test mounts outlives the pytest process.  Lab
tests (marker ``integration``) go through Ansible against lab hosts.

Every probe is harmless even when the protection it checks is missing: markers and
files the test makes itself, sparse files rather than real memory, FIFOs nobody
writes to, with a pytest-timeout as the hang guard.
"""

from __future__ import annotations

import importlib.util
import os


def _load_conftest(suite: str):
    """tests/SUITE/conftest.py as a module of its own (its fixtures are re-exported here)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), suite, "conftest.py")
    spec = importlib.util.spec_from_file_location("linuxns_security_%s_conftest" % suite, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_unit = _load_conftest("unit")

# the fixtures of tests/unit, for the unit-level attacks here
unit_registry = _unit.unit_registry
busybox_root = _unit.busybox_root
reap_zombies = _unit.reap_zombies
kept_files_in_tmp = _unit.kept_files_in_tmp  # autouse: kept files never go to /etc/linuxns
cgroups_below_the_test = _unit.cgroups_below_the_test  # autouse: no guest cgroup left
machine_etc_untouched = _unit.machine_etc_untouched  # autouse: the machine's /etc/linuxns never written

# the lab fixtures of tests/integration, for the attacks over real ssh (marker integration)
_integration = _load_conftest("integration")
lab = _integration.lab
ansible = _integration.ansible
lab_exec = _integration.lab_exec
