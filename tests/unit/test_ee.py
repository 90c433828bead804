"""Execution environments: meta/execution-environment.yml through ansible-builder's own tools.

``ansible-builder create`` runs on the EE definition shown in docs/ecosystem.md and the
build context is checked (no image is built: that needs a registry).  Then the context's
own ``introspect.py`` - the script the image's builder stage runs - reads the collection
as ``ansible-galaxy collection install`` puts it into an image, from the collection's
build tarball, and must return exactly the controller-side requirements of meta/.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
DOC = REPO / "docs" / "ecosystem.md"
META = REPO / "meta"


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} not in .venv (make venv installs requirements-lock.txt)")
    return str(path)


def _run(argv: list, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    assert out.returncode == 0, f"$ {' '.join(argv)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _lines(path: Path) -> list:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def doc_ee_definition() -> str:
    """The YAML block after the ``ee-example`` marker in docs/ecosystem.md."""
    m = re.search(r"<!-- ee-example:[^\n]*-->\n```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert m, "docs/ecosystem.md lost its ee-example block"
    return m.group(1)


def test_meta_declares_controller_side_needs_only():
    meta = yaml.safe_load((META / "execution-environment.yml").read_text())
    want = {"python": "meta/ee-requirements.txt", "system": "meta/ee-bindep.txt"}
    assert meta == {"version": 1, "dependencies": want}
    pip = _lines(META / "ee-requirements.txt")
    bindep = _lines(META / "ee-bindep.txt")
    assert [re.split(r"[<>=\s]", p)[0] for p in pip] == ["paramiko"]
    assert bindep == ["openssh-client [platform:dpkg]", "openssh-clients [platform:rpm]"]
    # target-side packages are guest_host's job, never the image's
    for target_side in ("pyroute2", "iproute2", "util-linux", "catatonit", "busybox"):
        assert not [x for x in pip + bindep if target_side in x], target_side


def test_bindep_picks_the_ssh_client_per_platform():
    """bindep (the builder stage's parser) reads the file: openssh-client on dpkg, openssh-clients on rpm."""
    depends = pytest.importorskip("bindep.depends", reason="bindep not in .venv (make venv)")
    rules = depends.Depends((META / "ee-bindep.txt").read_text())
    assert [r[0] for r in rules.active_rules(["platform:dpkg", "platform:debian"])] == ["openssh-client"]
    assert [r[0] for r in rules.active_rules(["platform:rpm", "platform:redhat"])] == ["openssh-clients"]


def test_ansible_builder_create_and_introspect(tmp_path):
    builder = _tool("ansible-builder")
    definition = tmp_path / "execution-environment.yml"
    definition.write_text(doc_ee_definition())
    context = tmp_path / "context"
    _run([builder, "create", "--file", str(definition), "--context", str(context),
          "--output-filename", "Containerfile"], cwd=tmp_path)

    containerfile = (context / "Containerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", containerfile, re.M)
    assert stages == ["base", "galaxy", "builder", "final"], containerfile
    assert 'ARG EE_BASE_IMAGE="quay.io/fedora/python-311:latest"' in containerfile
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.16 ansible-runner"' in containerfile
    assert "ansible-galaxy collection install" in containerfile
    assert "/output/scripts/introspect.py introspect --write-bindep=" in containerfile
    assert "/output/scripts/install-from-bindep" in containerfile
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert requirements == {"collections": [{"name": "linuxns.guests"}]}
    scripts = {p.name for p in (context / "_build" / "scripts").iterdir()}
    assert {"introspect.py", "assemble", "install-from-bindep", "check_ansible", "check_galaxy"} <= scripts

    # What the galaxy stage leaves in /usr/share/ansible: the collection under
    # ansible_collections/linuxns/guests (here the repo itself, as `make link` does; the build
    # tarball carries meta/, tests/unit/test_galaxy_build.py).
    installed = tmp_path / "share"
    (installed / "ansible_collections" / "linuxns").mkdir(parents=True)
    (installed / "ansible_collections" / "linuxns" / "guests").symlink_to(REPO)

    # What the builder stage runs: the context's introspect.py on the installed collections.
    pip_out, bindep_out = tmp_path / "src" / "requirements.txt", tmp_path / "src" / "bindep.txt"
    _run([sys.executable, str(context / "_build" / "scripts" / "introspect.py"), "introspect",
          f"--write-pip={pip_out}", f"--write-bindep={bindep_out}", str(installed)])
    assert _lines(pip_out) == [line + "  # from collection linuxns.guests"
                               for line in _lines(META / "ee-requirements.txt")]
    assert _lines(bindep_out) == [line + "  # from collection linuxns.guests"
                                  for line in _lines(META / "ee-bindep.txt")]
