"""`ansible-galaxy collection build` makes an artifact with the plugins and without local state."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GALAXY = REPO / ".venv" / "bin" / "ansible-galaxy"


def test_collection_builds(tmp_path):
    if not GALAXY.exists():
        pytest.skip("no .venv (make venv)")
    out = subprocess.run([str(GALAXY), "collection", "build", "--output-path", str(tmp_path), str(REPO)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    (artifact,) = tmp_path.glob("linuxns-guests-*.tar.gz")
    with tarfile.open(str(artifact)) as tar:
        names = tar.getnames()
    for must in ("MANIFEST.json", "plugins/modules/namespace_create.py", "plugins/modules/namespace_info.py",
                 "plugins/module_utils/guests.py", "plugins/doc_fragments/guest.py", "meta/runtime.yml", "README.md"):
        assert must in names
    for never in (".venv", ".lab", "build/", ".ruff_cache", "__pycache__", ".ci/"):
        assert not [n for n in names if n.startswith(never) or ("/" + never) in n], never
