"""The crash-test interface: its steps, how a test arms them, and a typo failing loudly."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import faults, guests
from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput

MODULE_UTILS = Path(faults.__file__).resolve().parent


def test_armed_steps_parse():
    assert faults.armed("") == frozenset()
    assert faults.armed("pinned") == {faults.Step.PINNED}
    assert faults.armed(" reserved , ready,") == {faults.Step.RESERVED, faults.Step.READY}
    with pytest.raises(InvalidInput) as exc:
        faults.armed("pinned,pined")
    assert "_LINUXNS_TEST_KILL_AT" in exc.value.msg and "'pined'" in exc.value.msg and "pinned" in exc.value.msg.split("known:")[1]


def test_every_crash_point_names_a_step_of_the_enum():
    """Every call site passes faults.Step.X (no bare strings), and every step has a call site."""
    used = []
    for path in MODULE_UTILS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "crash_point":
                if path.name == "faults.py":
                    continue
                arg = node.args[0]
                assert isinstance(arg, ast.Attribute) and ast.unparse(arg.value) == "faults.Step", (path.name, ast.unparse(node))
                used.append(arg.attr)
    assert sorted(used) == sorted(s.name for s in faults.Step)


def test_an_unknown_step_fails_before_anything_changes(unit_registry, monkeypatch):
    monkeypatch.setenv(faults.ENV, "reserverd")
    with pytest.raises(InvalidInput, match="unknown crash step"):
        guests.ensure_guests(unit_registry, [{"name": "typo"}])
    assert unit_registry.names() == [] and not os.path.exists(unit_registry.guest_dir("typo"))
