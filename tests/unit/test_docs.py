"""Every module's DOCUMENTATION/EXAMPLES/RETURN renders with ansible-doc."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))
ANSIBLE_DOC = REPO / ".venv" / "bin" / "ansible-doc"


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module):
    if not ANSIBLE_DOC.exists():
        pytest.skip("no .venv (make venv)")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "build"), ANSIBLE_NOCOLOR="1")
    out = subprocess.run([str(ANSIBLE_DOC), "linuxns.guests." + module], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert "EXAMPLES:" in out.stdout or "EXAMPLES" in out.stdout
    assert "RETURN VALUES" in out.stdout
    assert "state_dir" in out.stdout
    assert "[WARNING]" not in out.stderr, out.stderr


@pytest.mark.parametrize("module", MODULES)
def test_examples_are_yaml_tasks(module):
    import importlib.util

    spec = importlib.util.spec_from_file_location("m_" + module, str(REPO / "plugins" / "modules" / (module + ".py")))
    src = (REPO / "plugins" / "modules" / (module + ".py")).read_text()
    ns = {}
    # Only the three doc strings are needed: exec the assignments, not the module.
    for var in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
        start = src.index(var + ' = r"""')
        end = src.index('"""', start + len(var) + 7)
        ns[var] = src[start + len(var) + 7 : end]
    assert spec is not None
    examples = yaml.safe_load(ns["EXAMPLES"])
    assert isinstance(examples, list) and examples
    for task in examples:
        assert "name" in task
    doc = yaml.safe_load(ns["DOCUMENTATION"])
    assert doc["module"] == module
    assert "attributes" in doc or "extends_documentation_fragment" in doc
    assert yaml.safe_load(ns["RETURN"])
