"""The built collection artifact, installed into a clean path, runs a playbook on a lab host."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"


def test_installed_artifact_runs_a_playbook(ansible_playbook, lab_exec, tmp_path):
    if not (BIN / "ansible-galaxy").exists():
        pytest.skip("no .venv (make venv)")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CONFIG", None)
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path / "dist"), str(REPO)],
                   check=True, capture_output=True, env=env)
    (artifact,) = (tmp_path / "dist").glob("linuxns-guests-*.tar.gz")
    clean = tmp_path / "collections"
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-p", str(clean), str(artifact)],
                   check=True, capture_output=True, env=env)
    installed = clean / "ansible_collections" / "linuxns" / "guests"
    assert (installed / "MANIFEST.json").exists() and not (installed / "MANIFEST.json").is_symlink()
    listing = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "list", "linuxns.guests", "-p", str(clean)],
                             check=True, capture_output=True, text=True, env=dict(env, ANSIBLE_COLLECTIONS_PATH=str(clean))).stdout
    assert str(clean) in listing

    tasks = [
        {"name": "create", "linuxns.guests.namespace_create": {"name": "art1"}},
        {"name": "run", "linuxns.guests.guest_enter_exec": {"guest": "art1", "argv": ["hostname"]}},
        {"name": "info", "linuxns.guests.namespace_info": {"name": "art1"}},
        {"name": "remove", "linuxns.guests.namespace_create": {"name": "art1", "state": "absent"}},
    ]
    try:
        run = ansible_playbook(tasks, env={"ANSIBLE_COLLECTIONS_PATH": str(clean)})
        assert run.task("create").changed and run.task("run")["stdout"] == "art1"
        assert run.task("info")["guests"][0]["healthy"] is True
        assert run.task("remove")["action"] == "remove"
        assert "art1" not in lab_exec("lab1", ["sh", "-c", "ls /run/netns 2>/dev/null || true"]).stdout.split()
    finally:
        ansible_playbook([{"name": "cleanup", "linuxns.guests.namespace_create": {"name": "art1", "state": "absent"}}])
