# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Symlink races and blocking reads: every host-side path operation into a guest's root.

The technique (runc CVE-2021-30465 / CVE-2018-15664 class, LXC's safe_mount): the
guest's root user, who owns every name below the guest's root, puts a symbolic link
where a host process is about to open, write or mount, pointing at a file of the host
(absolute, or ``../`` enough times to climb above the root).  A host process that
resolves the name as a host path follows the link out of the guest.  The probes
point at a marker folder each test makes in its own temporary folder: even when a
protection is missing, the worst a probe does is write into that marker.  A FIFO
or device put where a guest file is read or written must give a clean error, not a
hang (the pytest-timeout is the hang guard, never a timed assertion).

docs/security.md, "Symlink races", lists each operation, what the code did before
and which of these tests failed on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import entry, guests, mounts
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, InvalidInput, PathError

pytestmark = pytest.mark.unit

ROLE_HELPER = Path(__file__).resolve().parents[2] / "roles" / "guest" / "files" / "guest_roots.py"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"


@pytest.fixture
def marker(tmp_path):
    """A host folder outside every guest root, with one file; the probes aim at it."""
    d = tmp_path / "host-marker"
    d.mkdir()
    (d / "file").write_text("host marker\n")
    return d


def snapshot(d: Path):
    """Everything a probe could change in the marker: names, contents, modes, times."""
    out = [("/", d.stat().st_mtime_ns)]
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        out.append((str(p.relative_to(d)), st.st_mode, st.st_mtime_ns, p.read_bytes() if p.is_file() and not p.is_symlink() else None))
    return out


def links(target: Path) -> dict:
    """The two ways out of a root: an absolute link, and '..' climbing above it."""
    return {"absolute": str(target), "relative": "../" * 16 + str(target).lstrip("/")}


def replace_with_link(path: str, target: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
    os.symlink(target, path)


# ---------------------------------------------------------------------------------------
# The guest role's files (roles/guest/files/guest_roots.py): host side, as root
# ---------------------------------------------------------------------------------------
def run_role_helper(root: Path, **spec) -> subprocess.CompletedProcess:
    req = {"check": False, "busybox": BUSYBOX,
           "roots": [dict({"name": "g1", "root": str(root), "build": True, "hostname": "g1.lab", "inittab": None,
                           "files": [{"path": "/www/index.html", "content": "hi\n", "mode": "0644"}]}, **spec)]}
    return subprocess.run([sys.executable, str(ROLE_HELPER)], input=json.dumps(req), capture_output=True, text=True, check=False)


@pytest.fixture
def role_root(tmp_path):
    if not os.access(BUSYBOX, os.X_OK):
        pytest.skip("no busybox (apt-get install busybox-static)")
    root = tmp_path / "roots" / "g1"
    out = run_role_helper(root)
    assert out.returncode == 0, out.stdout + out.stderr
    return root


@pytest.mark.timeout(120)
def test_role_never_writes_through_a_guest_link(role_root, marker):
    """The role rebuilds a root that its guest has run in: /etc (passwd, group, hostname),
    /bin (the busybox copy), /usr (applet links) or /www (the role's files) is now a link
    to a host folder.  Every write stays out of the host folder; the run fails and names
    the link."""
    before = snapshot(marker)
    for name in ("etc", "bin", "usr", "www"):
        for form, target in links(marker).items():
            place = role_root / name
            saved = role_root.parent / ("saved-" + name)
            os.rename(place, saved)
            os.symlink(target, place)
            try:
                out = run_role_helper(role_root)
            finally:
                os.unlink(place)
                os.rename(saved, place)
            assert snapshot(marker) == before, "the role wrote through /%s (%s link) into the host folder" % (name, form)
            assert out.returncode == 1 and "Traceback" not in out.stderr, (name, form, out.stdout + out.stderr)
            msg = json.loads(out.stdout)["msg"]
            assert "guest g1" in msg and "symbolic link" in msg, (name, form, msg)


@pytest.mark.timeout(120)
def test_role_hostname_file_stays_in_root(role_root, marker):
    """/etc/hostname itself a link to a host file (the role's one hostname/hosts file):
    the file is replaced inside the root, the host file keeps its content."""
    before = snapshot(marker)
    for form, target in links(marker / "file").items():
        replace_with_link(str(role_root / "etc" / "hostname"), target)
        out = run_role_helper(role_root, hostname="g1-%s.lab" % form)
        assert out.returncode == 0, out.stdout + out.stderr
        assert snapshot(marker) == before, form
        assert not (role_root / "etc" / "hostname").is_symlink()
        assert (role_root / "etc" / "hostname").read_text() == "g1-%s.lab\n" % form


@pytest.mark.timeout(60)
def test_role_does_not_block_on_a_guest_fifo(role_root):
    """A FIFO where the role reads a file to compare it (/etc/passwd, /etc/hostname, a
    file of the role): the run ends at once and puts the file in place of the FIFO."""
    for rel in ("etc/passwd", "etc/hostname", "www/index.html"):
        os.unlink(role_root / rel)
        os.mkfifo(role_root / rel)
    out = run_role_helper(role_root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(json.loads(out.stdout)["changes"]["g1"]) == ["/etc/hostname", "/etc/passwd", "/www/index.html"]
    assert (role_root / "etc" / "passwd").read_text().startswith("root:x:0:0:")


# ---------------------------------------------------------------------------------------
# The connection's put and fetch (module_utils/entry.py, the program the connection runs)
# ---------------------------------------------------------------------------------------
NAME = "sec-links"


@pytest.fixture
def guest(unit_registry, busybox_root):
    guests.ensure_guests(unit_registry, [{"name": NAME, "root": busybox_root}])
    return unit_registry.find(NAME)


def fetch(registry, meta, path: str, capsys) -> bytes:
    """The connection's fetch over ssh: ``stage`` copies the guest file to a host file."""
    capsys.readouterr()
    entry.stage(registry, meta, path)
    staged = capsys.readouterr().out.strip().splitlines()[-1]
    try:
        with open(staged, "rb") as f:
            return f.read()
    finally:
        entry.unstage(registry, staged)


def put(registry, meta, path: str, data: bytes, capsys) -> None:
    """The connection's put without stdin streaming: ``mkstage``, upload, ``place``."""
    capsys.readouterr()
    entry.mkstage(registry)
    staged = capsys.readouterr().out.strip().splitlines()[-1]
    with open(staged, "wb") as f:
        f.write(data)
    entry.place(registry, meta, staged, path)


@pytest.mark.timeout(120)
def test_put_and_fetch_stay_in_the_guest(unit_registry, guest, busybox_root, marker, capsys):
    """A guest file that Ansible writes or reads is a link to a host file (absolute and
    climbing).  Put and fetch run inside the guest's mount namespace, after the guest's
    pivot_root: the link resolves inside the root, the host file is neither read nor
    changed."""
    before = snapshot(marker)
    for form, target in links(marker / "file").items():
        link = os.path.join(busybox_root, "tmp", "to-host-" + form)
        os.symlink(target, link)
        with pytest.raises(PathError, match="inside guest %r" % NAME):
            put(unit_registry, guest, "/tmp/to-host-" + form, b"from the controller\n", capsys)
        with pytest.raises(PathError, match="inside guest %r" % NAME):
            fetch(unit_registry, guest, "/tmp/to-host-" + form, capsys)
        assert snapshot(marker) == before, form
    # a link that stays inside the guest still works both ways
    os.symlink("../etc/group", os.path.join(busybox_root, "tmp", "group-link"))
    assert fetch(unit_registry, guest, "/tmp/group-link", capsys).startswith(b"root:x:0:")
    put(unit_registry, guest, "/tmp/new-file", b"data\n", capsys)
    assert Path(busybox_root, "tmp", "new-file").read_bytes() == b"data\n"


@pytest.mark.timeout(60)
def test_put_and_fetch_refuse_fifos_and_devices(unit_registry, guest, busybox_root, capsys):
    """A FIFO nobody opens on the other side, where Ansible fetches or puts a file: the
    transfer process (host root, in the guest) blocked in open() forever.  A device is
    streamed without end or written to: here a null device, harmless even unprotected."""
    os.mkfifo(os.path.join(busybox_root, "tmp", "fifo"))
    os.mknod(os.path.join(busybox_root, "tmp", "null"), 0o666 | 0o020000, os.makedev(1, 3))
    for path, what in (("/tmp/fifo", "a FIFO"), ("/tmp/null", "a character device")):
        with pytest.raises(PathError) as info:
            fetch(unit_registry, guest, path, capsys)
        assert "cannot read %s inside guest %r: not a regular file (%s)" % (path, NAME, what) in info.value.msg
        with pytest.raises(PathError) as info:
            put(unit_registry, guest, path, b"x", capsys)
        assert "cannot write %s inside guest %r: not a regular file (%s)" % (path, NAME, what) in info.value.msg
    assert not list(Path(unit_registry.state_dir, entry.TRANSFER_DIR).iterdir()), "a staged copy was left behind"


@pytest.mark.timeout(60)
def test_put_never_follows_a_proc_magic_link(unit_registry, guest, busybox_root, capsys):
    """/proc/self/fd/N in the guest is a magic link to whatever the transfer process holds:
    its stdin is the host's staged upload.  A put through such a link truncated that host
    file.  Magic links are refused (openat2 RESOLVE_NO_MAGICLINKS)."""
    os.symlink("/proc/self/fd/0", os.path.join(busybox_root, "tmp", "magic"))
    capsys.readouterr()
    entry.mkstage(unit_registry)
    staged = capsys.readouterr().out.strip().splitlines()[-1]
    with open(staged, "wb") as f:
        f.write(b"uploaded data\n")
    held = os.open(staged, os.O_RDONLY)  # the host file, followed after place removes its name
    try:
        with pytest.raises(GuestError) as info:
            entry.place(unit_registry, guest, staged, "/tmp/magic")
        assert os.fstat(held).st_size == len(b"uploaded data\n"), "the host's staged file was written through the link"
    finally:
        os.close(held)
    assert "/tmp/magic" in info.value.msg and "guest %r" % NAME in info.value.msg


# ---------------------------------------------------------------------------------------
# Mounts: namespace_mount targets, and the guest's /proc and /dev at creation
# ---------------------------------------------------------------------------------------
def host_mount_points() -> set:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


@pytest.mark.timeout(120)
def test_mount_target_link_never_leaves_the_root(unit_registry, guest, busybox_root, marker, table_dir):
    """namespace_mount with a target below a link to a host folder: refused, nothing is
    mounted on the host folder, nothing made in it."""
    before, points = snapshot(marker), host_mount_points()
    for form, target in links(marker).items():
        os.symlink(target, os.path.join(busybox_root, "mnt-" + form))
        for path in ("/mnt-" + form, "/mnt-%s/sub" % form):
            with pytest.raises(InvalidInput, match="symbolic link"):
                mounts.converge(unit_registry, NAME, [{"path": path, "fstype": "tmpfs"}])
    assert snapshot(marker) == before and host_mount_points() == points


def test_bind_source_in_a_guests_root_stays_in_that_root(unit_registry, guest, busybox_root, marker, table_dir, tmp_path):
    """namespace_mount binds a folder of a guest's root into another guest: src ROOT/data-FORM,
    where the first guest's root user planted data-FORM -> the host's marker folder (absolute,
    or ``../`` climbing).  On the old code the host resolved src as a host path and bound the
    host's marker folder into the other guest.  Now a source inside a guest's root is resolved
    inside that root, as the guest itself would see its link: the decoy the test made at
    ROOT/<marker path> is bound, never the marker.  Also when the host path reaches the root
    through a link of the host's own (an alias folder)."""
    (Path(busybox_root + str(marker)) / "decoy").mkdir(parents=True)
    alias = tmp_path / "alias"
    alias.symlink_to(busybox_root)
    peer = guests.ensure_guests(unit_registry, [{"name": "sec-peer"}])["results"][0]["guest"]
    before = snapshot(marker)
    for form, target in links(marker).items():
        os.symlink(target, os.path.join(busybox_root, "data-" + form))
        for via in (busybox_root, str(alias)):
            point = tmp_path / ("point-%s-%d" % (form, via == busybox_root))
            point.mkdir()
            mounts.converge(unit_registry, "sec-peer",
                            [{"path": str(point), "src": "%s/data-%s" % (via, form), "fstype": "bind", "state": "ephemeral"}])
            seen = sorted(os.listdir("/proc/%d/root%s" % (peer["init_pid"], point)))
            assert seen == ["decoy"], "the %s link in the guest's root led the bind to %s" % (form, seen)
    assert snapshot(marker) == before


@pytest.fixture
def table_dir(tmp_path, monkeypatch):
    from ansible_collections.linuxns.guests.plugins.module_utils import persist

    d = tmp_path / "tables"
    monkeypatch.setenv(persist.TABLE_DIR_ENV, str(d))
    return d


@pytest.mark.timeout(120)
def test_creation_refuses_linked_proc_and_dev(unit_registry, busybox_root, marker):
    """A root whose /proc or /dev is a link (left by the guest's last run) to a host
    folder: creation mounted procfs or the /dev tmpfs on the link's target.  That was in
    the new private mount namespace (the host's files stayed as they were), and the
    guest came up without its /proc or /dev; now creation is refused, naming the link."""
    before = snapshot(marker)
    for name in ("proc", "dev"):
        for form, target in links(marker).items():
            replace_with_link(os.path.join(busybox_root, name), target)
            with pytest.raises(InvalidInput) as info:
                guests.ensure_guests(unit_registry, [{"name": "sec-create", "root": busybox_root}])
            assert "/%s in the guest's root is a symbolic link" % name in info.value.msg and "sec-create" in info.value.msg
            assert "sec-create" not in unit_registry.names(), (name, form)
            assert snapshot(marker) == before, (name, form)
            os.unlink(os.path.join(busybox_root, name))
            os.mkdir(os.path.join(busybox_root, name))


def test_mount_rollback_removes_only_what_it_made(tmp_path, marker):
    """namespace_mount's rollback removes the mount points it created.  Between creating
    /made/point and removing it, the guest swaps /made for a link to a host folder that
    has a ``point`` of its own: the rollback (here called as the worker calls it, from
    this process's root) must not remove the host's."""
    from ansible_collections.linuxns.guests.plugins.module_utils import mount_worker

    (marker / "point").mkdir()
    before = snapshot(marker)
    for form, target in links(marker).items():
        made = tmp_path / ("made-" + form)
        (made / "point").mkdir(parents=True)
        shutil.rmtree(made)
        os.symlink(target if form == "absolute" else "../" * 16 + str(marker).lstrip("/"), str(made))
        mount_worker._undo([("rm", str(made / "point"))])
        assert snapshot(marker) == before, "the rollback removed the host's %s/point through the %s link" % (marker, form)
