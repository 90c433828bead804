"""roles/guest/files/guest_roots.py - the guest role's root builder, run as on a target."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HELPER = Path(__file__).resolve().parents[3] / "roles" / "guest" / "files" / "guest_roots.py"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def run(request: dict, expect_rc: int = 0) -> dict:
    out = subprocess.run([sys.executable, str(HELPER)], input=json.dumps(request), capture_output=True, text=True, check=False)
    assert out.returncode == expect_rc, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    return json.loads(out.stdout)


def spec(root: Path, **more) -> dict:
    d = {"name": "g1", "root": str(root), "build": True, "hostname": "g1.lab", "inittab": None,
         "files": [{"path": "/www/index.html", "content": "hi\n", "mode": "0640"}]}
    d.update(more)
    return d


@pytest.fixture
def busybox():
    if not os.access(BUSYBOX, os.X_OK):
        pytest.skip("no busybox (apt-get install busybox-static)")
    return BUSYBOX


def test_build_check_mode_idempotent(tmp_path, busybox):
    root = tmp_path / "roots" / "g1"
    predicted = run({"check": True, "busybox": busybox, "roots": [spec(root)]})
    assert predicted["changed"] and predicted["missing_roots"] == ["g1"]
    assert not root.exists(), "check mode wrote something"

    built = run({"check": False, "busybox": busybox, "roots": [spec(root)]})
    assert built["changed"]
    assert set(predicted["changes"]["g1"]) <= set(built["changes"]["g1"]) | {"/etc/hostname"}
    assert (root / "bin" / "busybox").stat().st_size == Path(busybox).stat().st_size
    assert os.readlink(root / "bin" / "sh") == "/bin/busybox"
    assert (root / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    assert (root / "etc" / "hostname").read_text() == "g1.lab\n"
    assert (root / "www" / "index.html").read_text() == "hi\n"
    assert (root / "www" / "index.html").stat().st_mode & 0o777 == 0o640
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777

    assert run({"check": False, "busybox": busybox, "roots": [spec(root)]}) == {"changed": False, "changes": {}, "missing_roots": []}
    assert run({"check": True, "busybox": busybox, "roots": [spec(root)]})["changed"] is False

    # A changed file and a removed applet link are predicted, then repaired.
    (root / "bin" / "sh").unlink()
    changed = spec(root, files=[{"path": "/www/index.html", "content": "new\n", "mode": "0640"}],
                   inittab=["::respawn:/bin/busybox httpd -f"])
    predicted = run({"check": True, "busybox": busybox, "roots": [changed]})
    assert sorted(predicted["changes"]["g1"]) == ["/etc/inittab", "/www/index.html", "1 applet links"]
    assert (root / "www" / "index.html").read_text() == "hi\n"
    run({"check": False, "busybox": busybox, "roots": [changed]})
    assert (root / "etc" / "inittab").read_text().endswith("::respawn:/bin/busybox httpd -f\n")
    assert os.readlink(root / "bin" / "sh") == "/bin/busybox"


def test_existing_root_and_bad_paths(tmp_path):
    root = tmp_path / "r"
    out = run({"check": False, "roots": [spec(root, build=False, files=[])]}, expect_rc=1)
    assert out["failed"] and "guest g1: root folder" in out["msg"] and "root_build" in out["msg"]
    root.mkdir()
    out = run({"check": False, "roots": [spec(root, build=False, files=[{"path": "/../etc/x", "content": ""}])]}, expect_rc=1)
    assert "guest g1" in out["msg"] and ".." in out["msg"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "www").symlink_to(outside)
    out = run({"check": False, "roots": [spec(root, build=False)]}, expect_rc=1)
    assert "symbolic link" in out["msg"]
    assert list(outside.iterdir()) == [], "wrote through a symlink out of the root"


def test_purge_removes_only_roots(tmp_path):
    """The role only builds roots: its helper purges root folders; the kept files (mount table, context id)
    are namespace_create's (purge: true)."""
    tables, root = tmp_path / "tables", tmp_path / "roots" / "g1"
    (tables / "g1").mkdir(parents=True)
    (tables / "g1" / "fstab").write_text("x\n")
    root.mkdir(parents=True)
    req = {"purge": [{"name": "g1", "root": str(root)}, {"name": "g2", "root": None}]}
    predicted = run(dict(req, check=True))
    assert predicted["changes"] == {"g1": ["root folder %s removed" % root]} and root.exists()
    assert run(dict(req, check=False))["changes"] == predicted["changes"]
    assert not root.exists() and (tables / "g1" / "fstab").exists()
    assert run(dict(req, check=False))["changed"] is False


def test_no_context_id_allocation_left_in_the_role(tmp_path):
    text = HELPER.read_text()
    assert "ctx_dir" not in text and "CTX_FILE" not in text  # it never reads the registry's ctx/ folder again
    out = run({"check": False, "context_ids": {"state_dir": str(tmp_path), "table_dir": str(tmp_path), "guests": [{"name": "g"}]}})
    assert "context_ids" not in out and not list(tmp_path.iterdir())


def test_applet_links_are_told_apart_by_kind_and_target(tmp_path, busybox):
    """One directory read per folder decides: a link elsewhere is made again, a real
    program of an applet's name is kept, a link to /bin/busybox is left alone."""
    root = tmp_path / "roots" / "g1"
    run({"check": False, "busybox": busybox, "roots": [spec(root)]})
    (root / "bin" / "sh").unlink()
    (root / "bin" / "sh").symlink_to("/bin/evil")           # a link with another target
    (root / "bin" / "ls").unlink()
    (root / "bin" / "ls").write_text("#!/bin/sh\n")          # a real program the guest put there
    (root / "bin" / "cat").unlink()
    (root / "bin" / "cat").symlink_to("/bin/busybox/")       # same target but a trailing slash: not the link
    before = os.readlink(root / "bin" / "echo")

    predicted = run({"check": True, "busybox": busybox, "roots": [spec(root)]})
    assert predicted["changes"]["g1"] == ["2 applet links"]
    assert os.readlink(root / "bin" / "sh") == "/bin/evil", "check mode changed a link"

    repaired = run({"check": False, "busybox": busybox, "roots": [spec(root)]})
    assert repaired["changes"]["g1"] == ["2 applet links"]
    assert os.readlink(root / "bin" / "sh") == "/bin/busybox"
    assert os.readlink(root / "bin" / "cat") == "/bin/busybox"
    assert not (root / "bin" / "ls").is_symlink() and (root / "bin" / "ls").read_text() == "#!/bin/sh\n"
    assert os.readlink(root / "bin" / "echo") == before == "/bin/busybox"
    assert run({"check": True, "busybox": busybox, "roots": [spec(root)]})["changed"] is False
