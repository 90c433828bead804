"""The HTML docs site (``make docs-site``, docs/site/build.py) builds without a warning.

The build test is slow (antsibull-docs runs ansible-doc for every plugin, Sphinx renders
about 40 pages: 178 s wall on a machine under load average 30); the other test is fast.
"""

from __future__ import annotations

import importlib.util
import re
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_PY = REPO / "docs" / "site" / "build.py"
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))
GUIDES = sorted(p.stem for p in (REPO / "docs").glob("*.md"))


def site_builder():
    spec = importlib.util.spec_from_file_location("linuxns_docs_site_build", BUILD_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_markdown_copies_mark_bare_fences_and_point_outside_links_at_the_repository():
    builder = site_builder()
    text = ("See [the demo](../playbooks/demo.yml) and [roles](roles.md#x).\n\n```\n$ make demo\n```\n\n"
            "```yaml\n- a: 1\n```\n\n````\n```\nnested\n```\n````\n")
    out = builder.convert_markdown(text, "https://repo.example/blob/main/")
    assert "[the demo](https://repo.example/blob/main/playbooks/demo.yml)" in out
    assert "[roles](roles.md#x)" in out
    fences = re.findall(r"^(`{3,})(\S*)$", out, re.M)
    assert fences == [("```", "text"), ("```", ""), ("```", "yaml"), ("```", ""),
                      ("````", "text"), ("```", ""), ("```", ""), ("````", "")], fences


@pytest.mark.slow
@pytest.mark.extended
def test_site_builds_without_warnings(tmp_path):
    if not (REPO / ".venv" / "bin" / "sphinx-build").exists():
        pytest.skip("no sphinx in .venv (make venv)")
    builder = site_builder()
    dest = tmp_path / "site"
    rc = builder.build(dest)
    warnings = (dest / "warnings.log").read_text() if (dest / "warnings.log").exists() else ""
    assert rc == 0 and not warnings.strip(), warnings[-6000:]

    html = dest / "build" / "html"
    pages = {p.relative_to(html).as_posix() for p in html.rglob("*.html")}
    plugins = "collections/linuxns/guests/"
    for module in MODULES:
        assert f"{plugins}{module}_module.html" in pages
    for page in ("guest_connection.html", "guests_inventory.html", "guest_role.html", "guest_host_role.html",
                 "guest_plan_filter.html", "index.html"):
        assert plugins + page in pages, page
    for guide in GUIDES:
        assert f"guide/{guide}.html" in pages, guide
    create = (html / plugins / "namespace_create_module.html").read_text()
    assert "state_dir" in create and "Examples" in create
    index = (html / "index.html").read_text()
    assert 'href="guide/ecosystem.html"' in index and 'href="collections/index.html"' in index
    # a reference to ansible-core's docs resolved through the offline intersphinx inventory
    connection = (html / plugins / "guest_connection.html").read_text()
    assert "https://docs.ansible.com/projects/ansible/devel/reference_appendices/config.html#envvar-ANSIBLE_PIPELINING" in connection
    raw = (dest / "ansible_devel.inv").read_bytes()
    body = zlib.decompress(raw.split(b"zlib.\n", 1)[1]).decode()
    assert "ansible_collections.ansible.builtin.command_module std:label" in body
