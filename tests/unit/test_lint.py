"""Quality gates for roles and playbooks: ansible-lint (production profile, offline),
`ansible-doc -t role` for both roles (and their defaults agree with meta/argument_specs.yml),
antsibull-docs lint-collection-docs finds nothing wrong in the roles' docs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
ROLES = ("guest", "guest_host")


def _env() -> dict:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "build"), ANSIBLE_NOCOLOR="1", NO_COLOR="1")
    env["PATH"] = "%s:%s" % (VENV_BIN, env.get("PATH", ""))
    env.pop("ANSIBLE_CONFIG", None)
    return env


def _tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        pytest.skip("no %s in .venv (make venv)" % name)
    return str(path)


@pytest.mark.slow
def test_ansible_lint_production_profile():
    targets = [t for t in ("roles", "playbooks", "extensions") if (REPO / t).exists()]
    out = subprocess.run([_tool("ansible-lint"), "--offline", "-p", *targets], cwd=str(REPO), env=_env(),
                         capture_output=True, text=True, timeout=300, check=False)
    report = out.stdout + out.stderr
    assert out.returncode == 0, report
    assert "Profile 'production' was required, and it passed" in report, report


@pytest.mark.parametrize("role", ROLES)
def test_ansible_doc_role(role):
    out = subprocess.run([_tool("ansible-doc"), "-t", "role", "--json", "linuxns.guests." + role], env=_env(),
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "[WARNING]" not in out.stderr, out.stderr
    doc = json.loads(out.stdout)["linuxns.guests." + role]["entry_points"]["main"]
    assert doc["short_description"]
    text = subprocess.run([_tool("ansible-doc"), "-t", "role", "linuxns.guests." + role], env=_env(),
                          capture_output=True, text=True, timeout=120, check=True).stdout
    for name, opt in doc["options"].items():
        assert name.startswith(role + "_"), "%s: option %s lacks the role prefix" % (role, name)
        assert opt.get("description"), "%s: option %s has no description" % (role, name)
        assert name in text


@pytest.mark.parametrize("role", ROLES)
def test_defaults_match_argument_specs(role):
    base = REPO / "roles" / role
    spec = yaml.safe_load((base / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((base / "defaults" / "main.yml").read_text())
    assert set(defaults) == set(spec), "defaults/main.yml and argument_specs.yml list different variables"
    for name, value in defaults.items():
        if spec[name].get("required"):
            continue
        assert spec[name].get("default") == value, "%s: default of %s differs: %r vs %r" % (role, name, spec[name].get("default"), value)


@pytest.mark.slow
def test_antsibull_docs_roles_clean():
    """antsibull-docs reads the whole collection (offline); the roles' docs must have no finding."""
    out = subprocess.run([_tool("antsibull-docs"), "lint-collection-docs", "--plugin-docs", "."],
                         cwd=str(REPO / "build" / "ansible_collections" / "linuxns" / "guests"), env=_env(),
                         capture_output=True, text=True, timeout=300, check=False)
    report = out.stdout + out.stderr
    assert "Traceback" not in report, report
    # A module whose own DOCUMENTATION fails antsibull's schema is "not there" for references:
    # that is reported against the module itself, not against the roles that name it.
    existing = {p.stem for p in (REPO / "plugins" / "modules").glob("*.py")}
    findings = [line for line in report.splitlines() if line.startswith(("roles/", "playbooks/"))
                and not any(line.endswith("there is no module linuxns.guests." + m) for m in existing)]
    assert not findings, "\n".join(findings)
