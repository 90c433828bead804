# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mounts a guest with a root gets at creation: /proc, /sys and /dev.

- ``privileged: true`` lifts runc's masked and read-only paths and makes /sys read-write,
  as runc's and Docker's ``--privileged`` do; a change of ``privileged`` on a guest with a
  root replaces it (its mounts are made at creation), shown as ``proc_sys``.
- Symlink races at creation (runc CVE-2021-30465 class, "mount via fd"): the guest's root
  user owns the names below its root and, from another guest sharing that root or a
  process left running in it, can swap a folder for a link between the helper's look and
  its mount or its write.  The race is played deterministically: the helper's own
  ``os.open``/``os.lstat`` is wrapped so that right at the worst moment a process in this
  test's mount namespace (not the helper's private one, as the guest would) renames the
  folder and puts a link to a marker folder in its place.  The marker is a folder of the
  test; at worst a probe writes into it.

docs/security.md, "Mounts at creation" and "What privileged: true gives up".
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import guest_info, guests
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestConflict

pytestmark = pytest.mark.unit


def one(r, check=False, **params):
    return guests.ensure_guests(r, [params], check)["results"][0]


def mounts_of(pid: int) -> dict:
    """mount point -> (fstype, mount options) of the mounts ``pid`` sees (the top one of each path)."""
    out = {}
    with open("/proc/%d/mountinfo" % pid) as f:
        for line in f:
            fields = line.split()
            out[fields[4]] = (fields[fields.index("-") + 1], fields[5].split(","))
    return out


def sources_of(pid: int) -> dict:
    """mount point -> source of the guest's /proc, /sys and /dev mounts (the top one of each)."""
    out = {}
    with open("/proc/%d/mountinfo" % pid) as f:
        for line in f:
            fields = line.split()
            if fields[4] in ("/proc", "/sys", "/dev", "/dev/pts", "/dev/shm"):
                out[fields[4]] = fields[fields.index("-") + 2]
    return out


def snapshot(d) -> list:
    out = [("/", os.stat(d).st_mtime_ns)]
    for base, dirs, files in os.walk(d):
        for n in sorted(dirs + files):
            st = os.lstat(os.path.join(base, n))
            out.append((os.path.relpath(os.path.join(base, n), d), st.st_mode, st.st_mtime_ns, st.st_size))
    return sorted(out)


@pytest.fixture
def marker(tmp_path):
    d = tmp_path / "host-marker"
    d.mkdir()
    (d / "file").write_text("host marker\n")
    return str(d)


# ---------------------------------------------------------------------------------------
# privileged: true
# ---------------------------------------------------------------------------------------
MASKED = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/acpi", "/proc/scsi", "/sys/firmware")
READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/bus", "/proc/irq", "/proc/fs")


def surfaces(pid: int) -> dict:
    m = mounts_of(pid)
    return {"masked": sorted(p for p in MASKED if p in m), "read_only": sorted(p for p in READ_ONLY if p in m),
            "proc": m["/proc"][0], "sys": (m["/sys"][0], m["/sys"][1][0])}


def test_privileged_guest_gets_no_masks_and_a_writable_sys(unit_registry, busybox_root):
    """What runc gives ``--privileged``: no masked paths, no read-only paths, /sys read-write.
    On the old code a privileged guest kept every mask (only its capabilities changed)."""
    default = one(unit_registry, name="sec-masked", root=busybox_root)["guest"]
    priv = one(unit_registry, name="sec-open", root=busybox_root, privileged=True)["guest"]
    masked, opened = surfaces(default["init_pid"]), surfaces(priv["init_pid"])
    assert len(masked["masked"]) >= 3 and len(masked["read_only"]) >= 3, masked
    assert masked["sys"] == ("sysfs", "ro") and masked["proc"] == "proc"
    assert opened == {"masked": [], "read_only": [], "proc": "proc", "sys": ("sysfs", "rw")}, opened
    assert (default["proc_sys"], priv["proc_sys"]) == ("masked", "unmasked")
    # the sources mountinfo shows are what mount(2) gave before the mounts went through fds:
    # a namespace_mount entry {path: /sys, src: sysfs, fstype: sysfs} must keep matching
    assert sources_of(default["init_pid"]) == {"/proc": "proc", "/sys": "sysfs", "/dev": "tmpfs", "/dev/pts": "devpts",
                                               "/dev/shm": "shm"}
    shown = {g["name"]: g["proc_sys"] for g in guest_info.info(unit_registry, ["sec-masked", "sec-open"])["guests"]}
    assert shown == {"sec-masked": "masked", "sec-open": "unmasked"}  # namespace_info
    rootless = one(unit_registry, name="sec-norootp", privileged=True)["guest"]
    assert rootless["proc_sys"] is None


def test_changing_privileged_of_a_rooted_guest_replaces_it(unit_registry, busybox_root):
    """Both directions: the masks are made at creation, so a change of ``privileged`` on a
    guest with a root is a replacement (recreate=true), shown in check mode and --diff as
    ``proc_sys``; without recreate it is refused, naming recreate.  On the old code the
    change was made in place and the guest kept the mounts of its creation."""
    r = unit_registry
    one(r, name="sec-flip", root=busybox_root)
    for privileged, before, after in ((True, "masked", "unmasked"), (False, "unmasked", "masked")):
        for check in (True, False):
            with pytest.raises(GuestConflict) as info:
                one(r, check, name="sec-flip", root=busybox_root, privileged=privileged)
            assert "sec-flip" in info.value.msg and "proc_sys" in info.value.msg and "recreate=true" in info.value.msg
        run = guests.ensure_guests(r, [{"name": "sec-flip", "root": busybox_root, "privileged": privileged,
                                        "recreate": True}], check_mode=True)
        assert run["results"][0]["action"] == "recreate" and "proc_sys differs" in run["results"][0]["reasons"]
        assert (run["diff"]["before"]["sec-flip"]["proc_sys"], run["diff"]["after"]["sec-flip"]["proc_sys"]) == (before, after)
        got = one(r, name="sec-flip", root=busybox_root, privileged=privileged, recreate=True)
        assert got["action"] == "recreate" and got["guest"]["proc_sys"] == after
        masks = surfaces(got["guest"]["init_pid"])["masked"]
        assert (masks == []) is privileged, masks
        assert r.find("sec-flip").proc_sys == after
        assert not one(r, name="sec-flip", root=busybox_root, privileged=privileged)["changed"]
    # a guest without a root has no masks: privileged still changes in place
    one(r, name="sec-flip2")
    got = one(r, name="sec-flip2", privileged=True)
    assert got["action"] == "update" and got["guest"]["proc_sys"] is None


# ---------------------------------------------------------------------------------------
# symlink races at creation
# ---------------------------------------------------------------------------------------
class Swap:
    """Plays the guest: when the helper's ``os.<call>`` matches, a process in this test's mount
    namespace renames ROOT/NAME to ROOT/NAME.looked and puts a link to ``target`` in its
    place - ``before`` the call (the helper then opens through the link) or right after it
    (the helper looked at the folder and then mounts on it)."""

    def __init__(self, monkeypatch, root: str, name: str, target: str, calls, match, before: bool):
        self.root, self.name, self.target, self.before, self.match = root, name, target, before, match
        self.test_pid = os.getpid()
        self.mnt_fd = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        self.done = False  # in the helper's forked child: it swaps once
        for call in calls:
            monkeypatch.setattr(os, call, self._hook(getattr(os, call)))

    def _hook(self, real):
        def hooked(path, *args, **kw):
            armed = os.getpid() != self.test_pid and not self.done and self.match(path, args, kw)
            if armed and self.before:
                self._swap()
            result = real(path, *args, **kw)
            if armed and not self.before:
                self._swap()
            return result
        return hooked

    def _swap(self) -> None:  # pragma: no cover - runs in the helper's forked child
        self.done = True
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                sc.setns(self.mnt_fd, "mnt")
                path = os.path.join(self.root, self.name)
                os.rename(path, path + ".looked")
                os.symlink(self.target, path)
                code = 0
            finally:
                os._exit(code)
        os.waitpid(pid, 0)

    def swapped(self) -> bool:
        return os.path.islink(os.path.join(self.root, self.name))

    def undo(self) -> None:
        os.close(self.mnt_fd)
        path = os.path.join(self.root, self.name)
        if os.path.islink(path):
            os.unlink(path)
            os.rename(path + ".looked", path)


def forms(marker: str) -> dict:
    return {"absolute": marker, "relative": "../" * 16 + marker.lstrip("/")}


def test_dev_nodes_are_made_in_the_guests_tmpfs_not_through_a_link(unit_registry, busybox_root, marker):
    """The guest swaps its /dev for a link to a host folder right when the helper makes the
    nodes in the new /dev tmpfs.  On the old code (nodes, pts, shm and links made by name
    ROOT/dev/...) the host folder got ``null``, ``zero``, ... ``pts``, ``shm`` and the links;
    now everything is made relative to the tmpfs's own fd."""
    before = snapshot(marker)
    for form, target in forms(marker).items():
        mp = pytest.MonkeyPatch()  # its own: undoing the test's monkeypatch would also drop the kept-files folder
        swap = Swap(mp, busybox_root, "dev", target, ("open",), before=True,
                    match=lambda path, args, kw: path in ("null", os.path.join(busybox_root, "dev", "null")))
        try:
            got = one(unit_registry, name="sec-devrace", root=busybox_root)["guest"]
            assert swap.swapped(), "the race was not played (%s)" % form
            assert snapshot(marker) == before, "nodes were made in the host folder through the %s link" % form
            m = mounts_of(got["init_pid"])
            assert m["/dev.looked"][0] == "tmpfs" and m["/dev.looked/null"][0] == "devtmpfs", m  # in the guest's tmpfs
            one(unit_registry, name="sec-devrace", state="absent")
        finally:
            mp.undo()
            swap.undo()


@pytest.mark.parametrize("name,fstype", [("proc", "proc"), ("sys", "sysfs"), ("dev", "tmpfs")])
def test_mounts_land_on_the_folder_that_was_checked(unit_registry, busybox_root, marker, name, fstype):
    """The guest swaps /proc, /sys or /dev for a link to a host folder right after the helper
    looked at it (a folder, not a link) and before it mounts there.  On the old code (check by
    name, then mount by name) the mount followed the link: the guest had no /proc, /sys or
    /dev of its own (they were on the host folder in the creating namespace).  Now the mount
    is attached to the folder that was checked, through its fd."""
    os.makedirs(os.path.join(busybox_root, name), exist_ok=True)
    before = snapshot(marker)
    for form, target in forms(marker).items():
        mp = pytest.MonkeyPatch()  # its own: undoing the test's monkeypatch would also drop the kept-files folder
        swap = Swap(mp, busybox_root, name, target, ("open", "lstat"), before=False,
                    match=lambda path, args, kw: path == name)
        try:
            got = one(unit_registry, name="sec-mntrace", root=busybox_root)["guest"]
            assert swap.swapped(), "the race was not played (%s)" % form
            m = mounts_of(got["init_pid"])
            assert m.get("/%s.looked" % name, ("none",))[0] == fstype, (form, m)
            assert snapshot(marker) == before
            one(unit_registry, name="sec-mntrace", state="absent")
        finally:
            mp.undo()
            swap.undo()
