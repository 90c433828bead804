# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""guest_enter_exec's ``user:`` lookup, attacked through the guest's own /etc/passwd and /etc/group.

The lookup runs in a process of the host (root, every capability) that has joined the
guest: whatever the guest's root put in those files must neither hold that process
(size, time, a FIFO, a device), nor lead it outside the guest's root (a symlink), nor
turn a bogus id into root (setresuid(-1) means "unchanged").  Each attack checks that
the command did NOT run: a marker it would write stays absent.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import execute, guests
from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput
from ansible_collections.linuxns.guests.plugins.module_utils.execute import Request

pytestmark = pytest.mark.unit

NAME = "sec-user"
MARK = "/tmp/ran"
BOUND = getattr(execute, "DB_MAX_BYTES", 4 << 20)


@pytest.fixture
def guest(unit_registry, busybox_root):
    guests.ensure_guests(unit_registry, [{"name": NAME, "root": busybox_root}])
    return unit_registry.find(NAME)


def attempt(meta, root: str, user) -> str:
    """Run the marker command as ``user``; the refusal's message (fails the test when it ran)."""
    marker = os.path.join(root, MARK.lstrip("/"))
    with pytest.raises(InvalidInput) as info:
        execute.run(meta, Request(argv=["sh", "-c", "id -u > %s" % MARK], user=user))
    assert not os.path.exists(marker), "the command ran (as uid %s)" % open(marker).read().strip()
    msg = info.value.msg
    assert "guest %r" % NAME in msg
    return msg


def write_passwd(root: str, text: str) -> None:
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write(text)


# ---------------------------------------------------------------------------------------
# Bounded work on guest-controlled input
# ---------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_huge_passwd_is_refused_not_read(guest, busybox_root):
    """Resource exhaustion of a host-root helper (unbounded read of a guest file): the
    finding's 54 MB passwd took 5 s and 840 MB.  A sparse file just over the bound, with a
    valid root line first, costs the machine nothing and must be refused unread."""
    path = os.path.join(busybox_root, "etc", "passwd")
    write_passwd(busybox_root, "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/tmp:/bin/sh\n")
    os.truncate(path, BOUND + 1)  # sparse: no disk, no memory
    msg = attempt(guest, busybox_root, "web")
    assert "/etc/passwd" in msg and "bytes" in msg


@pytest.mark.timeout(60)
def test_fifo_passwd_does_not_block(guest, busybox_root):
    """Denial of service by a FIFO (the helper blocks in open() waiting for a writer that
    never comes, holding the task and the guest forever).  No one writes to this FIFO:
    the pytest-timeout is the hang guard, the call must fail cleanly at once."""
    path = os.path.join(busybox_root, "etc", "passwd")
    os.unlink(path)
    os.mkfifo(path, 0o644)
    msg = attempt(guest, busybox_root, "web")
    assert "/etc/passwd" in msg and "FIFO" in msg


@pytest.mark.timeout(60)
def test_device_passwd_is_not_read(guest, busybox_root):
    """A device node as /etc/passwd (a guest with CAP_MKNOD can make one: reading a
    device from a host process may block, never end or have side effects).  The node
    here is a null device: harmless to read even on old code."""
    path = os.path.join(busybox_root, "etc", "passwd")
    os.unlink(path)
    os.mknod(path, 0o644 | 0o020000, os.makedev(1, 3))
    msg = attempt(guest, busybox_root, "web")
    assert "/etc/passwd" in msg and "character device" in msg


@pytest.mark.timeout(60)
def test_symlinked_passwd_does_not_reach_a_host_file(guest, busybox_root, tmp_path):
    """Symlink attack on a host-side read (the guest points a file the host reads at a
    file of the host).  The host marker names a user that only it knows; the symlink is
    refused, the marker is never read and nothing runs."""
    host_marker = tmp_path / "host-passwd-marker"
    host_marker.write_text("hostonly:x:4242:4242::/:/bin/sh\n")
    path = os.path.join(busybox_root, "etc", "passwd")
    os.unlink(path)
    os.symlink(str(host_marker), path)
    msg = attempt(guest, busybox_root, "hostonly")
    assert "/etc/passwd" in msg and "symbolic link" in msg
    # the relative form, climbing above the guest's root
    os.unlink(path)
    os.symlink("../" * 16 + str(host_marker).lstrip("/"), path)
    msg = attempt(guest, busybox_root, "hostonly")
    assert "symbolic link" in msg


def test_read_guest_file_bounds(tmp_path):
    """The bounded reader itself (the same attacks without a guest): FIFO, symlink, size."""
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    with pytest.raises(InvalidInput, match="is not a regular file \\(a FIFO\\)"):
        execute.read_guest_file(str(fifo), "g", "user")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 11)
    with pytest.raises(InvalidInput, match="more than the 10 read at most"):
        execute.read_guest_file(str(big), "g", "user", max_bytes=10)
    link = tmp_path / "link"
    os.symlink(str(big), str(link))
    with pytest.raises(InvalidInput, match="is a symbolic link"):
        execute.read_guest_file(str(link), "g", "user")
    assert execute.read_guest_file(str(tmp_path / "missing"), "g", "user") is None
    assert execute.read_guest_file(str(big), "g", "user", max_bytes=11) == b"x" * 11


# ---------------------------------------------------------------------------------------
# Fail-open on ids: (uid_t)-1 means "unchanged" to setresuid, i.e. root
# ---------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("user", ["4294967295", "-1", "99999999999", "+5", "00000000000000000000001"])
def test_bogus_uids_are_refused(guest, busybox_root, user):
    """Fail-open on uid -1 (setresuid(-1) keeps uid 0): ``user: 4294967295`` ran as root
    with rc 0.  -1, negative, out-of-range and odd spellings of a uid are refused."""
    msg = attempt(guest, busybox_root, user)
    assert msg.startswith("user:") and "not a valid id" in msg


@pytest.mark.timeout(60)
def test_empty_user_is_refused(guest, busybox_root):
    """Fail-open on an empty name: ``user: ""`` ran the command as root."""
    msg = attempt(guest, busybox_root, "")
    assert "user must be a non-empty user name" in msg


@pytest.mark.timeout(60)
@pytest.mark.parametrize("entry, problem", [
    ("evil:x:4294967295:1000::/:/bin/sh", "user"),
    ("evil:x:1000:4294967295::/:/bin/sh", "group"),
    ("evil:x:-1:1000::/:/bin/sh", "user"),
    ("evil:x:1000:-1::/:/bin/sh", "group"),
])
def test_bogus_ids_in_the_guests_passwd_are_refused(guest, busybox_root, entry, problem):
    """Fail-open on uid/gid -1 planted by the guest in its own /etc/passwd: a user
    whose entry says 4294967295 ran as root."""
    write_passwd(busybox_root, "root:x:0:0:root:/root:/bin/sh\n%s\n" % entry)
    msg = attempt(guest, busybox_root, "evil")
    assert msg.startswith("%s:" % problem) and "not a valid id" in msg and "evil" in msg


@pytest.mark.timeout(60)
def test_bogus_gid_in_the_guests_group_is_refused(guest, busybox_root):
    """Fail-open on a supplementary gid -1 (setgroups with (gid_t)-1) planted in /etc/group."""
    with open(os.path.join(busybox_root, "etc", "group"), "a") as f:
        f.write("evil:x:4294967295:web\n")
    msg = attempt(guest, busybox_root, "web")
    assert msg.startswith("group:") and "4294967295" in msg and "/etc/group" in msg


@pytest.mark.timeout(60)
def test_valid_users_still_run(guest, busybox_root):
    """The fix refuses only what is bogus: a name, a uid and the largest valid uid run."""
    for user, want in (("web", "1000"), ("65534", "65534"), ("4294967294", "4294967294")):
        r = execute.run(guest, Request(argv=["id", "-u"], user=user))
        assert r["rc"] == 0 and r["stdout"] == want
