"""Build the HTML docs site of linuxns.guests (``make docs-site``) into build/docs-site/.

1. ``antsibull-docs sphinx-init --use-current`` writes the Sphinx project (conf.py, the
   antsibull-docs config); our index (docs/site/index.rst) replaces its generic one.
2. ``antsibull-docs collection --use-current`` writes the module, plugin and role pages
   (rst/collections/...) from the collection as ansible-doc sees it (build/ holds the
   collection link, ANSIBLE_COLLECTIONS_PATH=build).
3. docs/*.md (with the docs/*.png they show) are copied to rst/guide/ and read by myst-parser.  Only the copies change: a
   code fence without a language gets ``text`` (the site's default lexer is YAML+Jinja,
   which fails on shell sessions and is meant for the module examples), and a link to a
   file of the repository outside docs/ points at the repository (galaxy.yml's
   ``repository``) since the site does not contain that file.
4. Sphinx builds with ``-W --keep-going -E``: any warning fails the build.  The pages link
   to ansible-core's docs (ansible.builtin.command, ANSIBLE_PIPELINING...) through
   intersphinx; with no network here, the inventory for docs.ansible.com is written from
   the names the pages use (docs/site/ansible_targets.yml lists the non-module ones), so
   a reference to an unknown name still warns.

    .venv/bin/python docs/site/build.py [--dest build/docs-site]   ->  DEST/build/html/index.html
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ANSIBLE_DOCS = "https://docs.ansible.com/projects/ansible/devel/"

CONF_EXTRA = """
# --- linuxns.guests (docs/site/build.py) ---
import os
extensions.append('myst_parser')
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
myst_heading_anchors = 4
# docs.ansible.com through a local inventory (docs/site/build.py writes it; no network here)
intersphinx_mapping = {
    'ansible_devel': ('%s', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ansible_devel.inv')),
}
"""


def run(argv: list, cwd: Path, env: dict) -> None:
    print("$ " + " ".join(str(a) for a in argv), flush=True)
    subprocess.run([str(a) for a in argv], cwd=str(cwd), env=env, check=True)


def repository_url() -> str:
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    return galaxy["repository"].rstrip("/") + "/blob/main/"


def convert_markdown(text: str, repo_url: str) -> str:
    """docs/*.md as the site reads them (see the module docstring, step 3)."""
    out, fence = [], None
    for line in text.splitlines():
        m = re.match(r"^(\s*)(```+|~~~+)(.*)$", line)
        if m and fence is None:
            fence = m.group(2)
            if not m.group(3).strip():
                line = m.group(1) + m.group(2) + "text"
        elif m and line.strip() == fence:
            fence = None
        out.append(line)
    text = "\n".join(out) + "\n"
    return re.sub(r"\]\(\.\./([^)#\s]+)", lambda m: "](" + repo_url + m.group(1), text)


def write_inventory(rst: Path, dest: Path) -> list:
    """objects.inv (version 2) for docs.ansible.com with the targets the pages refer to."""
    known = yaml.safe_load((HERE / "ansible_targets.yml").read_text())
    text = "\n".join(p.read_text() for p in rst.rglob("*.rst"))
    lines = []
    for label in sorted(set(re.findall(r"<(ansible_collections\.([a-z0-9_]+)\.([a-z0-9_]+)\.([a-z0-9_]+)_(module|connection|"
                                       r"inventory|lookup|filter|become|callback))>", text))):
        full, ns, coll, name, kind = label
        if (ns, coll) == ("linuxns", "guests"):
            continue
        lines.append(f"{full} std:label -1 collections/{ns}/{coll}/{name}_{kind}.html#{full.replace('.', '-').replace('_', '-')} "
                     f"{ns}.{coll}.{name} {kind}")
    for label, (uri, title) in sorted(known["labels"].items()):
        lines.append(f"{label} std:label -1 {uri} {title}")
    own_envvars = set(re.findall(r"^\.\. envvar:: (\S+)", text, re.M))
    used = {v.replace("\\", "") for v in re.findall(r":envvar:`(?:[^`<]*<)?(ANSIBLE[A-Z0-9_\\]+)>?`", text)}
    lines.extend(f"{var} std:envvar 1 {known['envvar_page']}#envvar-$ -" for var in sorted(used - own_envvars))
    header = "# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n# The remainder of this file is compressed using zlib.\n"
    (dest / "ansible_devel.inv").write_bytes(header.encode() + zlib.compress(("\n".join(lines) + "\n").encode()))
    return lines


def build(dest: Path) -> int:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "build"), ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CONFIG", None)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    run([BIN / "antsibull-docs", "sphinx-init", "--use-current", "--fail-on-error", "--dest-dir", dest,
         "--project", "linuxns.guests", "--copyright", "linuxns.guests developers", "--title", "linuxns.guests",
         "--html-short-title", "linuxns.guests", "--index-rst-source", HERE / "index.rst",
         "--no-add-antsibull-docs-version", "linuxns.guests"], REPO, env)
    with open(dest / "conf.py", "a") as f:
        f.write(CONF_EXTRA % ANSIBLE_DOCS)
    rst = dest / "rst"
    rst.mkdir(exist_ok=True)
    rst.chmod(0o755)
    run([BIN / "antsibull-docs", "--config-file", "antsibull-docs.cfg", "collection", "--cleanup", "everything",
         "--fail-on-error", "--use-current", "--dest-dir", "rst", "linuxns.guests"], dest, env)
    guide = rst / "guide"
    guide.mkdir()
    repo_url = repository_url()
    for md in sorted((REPO / "docs").glob("*.md")):
        (guide / md.name).write_text(convert_markdown(md.read_text(), repo_url))
    for image in sorted((REPO / "docs").glob("*.png")):  # the figures the guides show (performance.md)
        shutil.copyfile(image, guide / image.name)
    index = rst / "index.rst"
    listed = set(re.findall(r"^   guide/(\S+)$", index.read_text(), re.M))
    rest = sorted(md.stem for md in guide.glob("*.md") if md.stem not in listed)
    if rest:   # a new docs/*.md not yet placed in docs/site/index.rst
        with open(index, "a") as f:
            f.write("\n.. toctree::\n   :maxdepth: 1\n   :caption: More guides:\n\n"
                    + "".join(f"   guide/{name}\n" for name in rest))
    write_inventory(rst, dest)
    proc = subprocess.run([str(BIN / "sphinx-build"), "-M", "html", "rst", "build", "-c", ".", "-W", "--keep-going",
                           "-E", "-q", "-w", "warnings.log"], cwd=str(dest), env=env, check=False)
    print(f"site: {dest / 'build' / 'html' / 'index.html'}" if proc.returncode == 0
          else f"sphinx-build failed (rc={proc.returncode}): warnings in {dest / 'warnings.log'}", flush=True)
    return proc.returncode


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=REPO / "build" / "docs-site")
    args = parser.parse_args(argv)
    return build(args.dest.resolve())


if __name__ == "__main__":
    sys.exit(main())
