"""Top-level pytest setup for linuxns.guests.

- Makes the collection importable as ``ansible_collections.linuxns.guests``: <repo>/build
  goes on sys.path and build/ansible_collections/linuxns/guests is a symlink to the repo
  root (what `make link` creates; made here too when missing).
- pytest.ini's ``pythonpath`` puts build/, tests/lab (``from lab import Lab``) and
  tests/integration (``import harness``) on sys.path; test files are imported with
  ``--import-mode=importlib`` as their basenames repeat across tests/unit/plugins/*.
- Marks tests by folder: tests/unit/** -> ``unit``, tests/integration/** -> ``integration``.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build"
COLLECTION_LINK = BUILD / "ansible_collections" / "linuxns" / "guests"


def ensure_collection_link() -> Path:
    if not COLLECTION_LINK.is_symlink():
        if COLLECTION_LINK.exists():
            raise RuntimeError(f"{COLLECTION_LINK} exists and is not a symlink; remove it")
        COLLECTION_LINK.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink("../../..", COLLECTION_LINK)
        except FileExistsError:  # made concurrently
            pass
    return COLLECTION_LINK


ensure_collection_link()
importlib.invalidate_caches()


def pytest_collection_modifyitems(config, items):
    unit_dir = REPO / "tests" / "unit"
    integration_dir = REPO / "tests" / "integration"
    for item in items:
        path = Path(str(item.fspath))
        if unit_dir in path.parents:
            item.add_marker(pytest.mark.unit)
        elif integration_dir in path.parents:
            item.add_marker(pytest.mark.integration)
