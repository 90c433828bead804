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


def test_purge(tmp_path):
    tables, root = tmp_path / "tables", tmp_path / "roots" / "g1"
    (tables / "g1").mkdir(parents=True)
    (tables / "g1" / "fstab").write_text("x\n")
    root.mkdir(parents=True)
    req = {"purge": [{"name": "g1", "table_dir": str(tables), "root": str(root)}]}
    assert run(dict(req, check=True))["changed"] and (tables / "g1").exists() and root.exists()
    assert run(dict(req, check=False))["changed"]
    assert not (tables / "g1").exists() and not root.exists()
    assert run(dict(req, check=False))["changed"] is False


def test_context_ids_kept_and_given_back(tmp_path):
    """A new guest gets the id kept next to its table when no other guest holds it; the others the lowest id
    that no guest holds, no listed guest wants and no table keeps (the registry may have been wiped by a reboot)."""
    state, tables = tmp_path / "run" / "linuxns", tmp_path / "tables"
    (state / "ctx").mkdir(parents=True)
    (state / "guests" / "other").mkdir(parents=True)
    os.symlink("other", state / "ctx" / "2")
    for name, ctx in (("g01", "3\n"), ("g02", "2\n"), ("stopped", "4\n"), ("junk", "1\n"), ("other", "9\n")):
        (tables / name).mkdir(parents=True)
        (tables / name / "context_id").write_text(ctx)
    guests = [{"name": "new1"}, {"name": "g01"}, {"name": "g02"}, {"name": "fixed", "context_id": 5}, {"name": "other"},
              {"name": "new2"}, {"name": "junk"}]
    res = run({"context_ids": {"state_dir": str(state), "table_dir": str(tables), "guests": guests}})
    # g01: its kept 3; g02: its kept 2 is other's; other exists (namespace_create keeps its id); fixed has its own;
    # the rest in list order skip 2 (held), 3 (g01's), 4 (kept by the stopped guest), 5 (wanted by fixed), 9 (kept)
    assert res["context_ids"] == {"g01": 3, "new1": 6, "g02": 7, "new2": 8, "junk": 10}
    assert res["changed"] is False
    # without a state folder (after a reboot) every kept id is free
    res = run({"context_ids": {"state_dir": str(tmp_path / "none"), "table_dir": str(tables), "guests": [{"name": "g02"}, {"name": "g01"}]}})
    assert res["context_ids"] == {"g02": 2, "g01": 3}


def test_keep_context_ids_check_mode_idempotent(tmp_path):
    tables = tmp_path / "tables"
    req = {"keep_context_ids": {"table_dir": str(tables), "ids": {"g01": 3, "g02": 4}}}
    predicted = run(dict(req, check=True))
    assert predicted["changed"] and sorted(predicted["changes"]) == ["g01", "g02"]
    assert not tables.exists(), "check mode wrote something"
    assert run(req)["changes"] == predicted["changes"]
    assert (tables / "g01" / "context_id").read_text() == "3\n"
    assert (tables / "g02" / "context_id").stat().st_mode & 0o777 == 0o644
    assert run(req) == {"changed": False, "changes": {}, "missing_roots": []}
    assert run(dict(req, check=True))["changed"] is False
    (tables / "g01" / "context_id").write_text("7\n")
    changed = run(req)
    assert changed["changes"] == {"g01": ["context id 3 kept in %s" % (tables / "g01" / "context_id")]}
    assert (tables / "g01" / "context_id").read_text() == "3\n"
