# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rootfs.py: in-root resolution with openat2 RESOLVE_IN_ROOT and with the O_NOFOLLOW walk
used where openat2 is missing - both must give the same answers."""

from __future__ import annotations

import errno
import os

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import rootfs
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc

pytestmark = pytest.mark.unit


@pytest.fixture(params=[True, False], ids=["openat2", "walk"])
def use_openat2(request):
    return request.param


@pytest.fixture
def tree(tmp_path):
    """A root with links out of it (absolute, climbing), links inside it, a loop, a FIFO."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text("host\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")
    os.symlink(str(host), str(root / "abs"))
    os.symlink("../" * 12 + str(host).lstrip("/"), str(root / "etc" / "up"))
    os.symlink("/etc", str(root / "etc-link"))
    os.symlink("../../../../etc/passwd", str(root / "etc" / "pw-up"))
    os.symlink("loop2", str(root / "loop1"))
    os.symlink("loop1", str(root / "loop2"))
    os.mkfifo(str(root / "fifo"))
    fd = rootfs.open_root(str(root))
    yield root, host, fd
    os.close(fd)


def read(fd: int, path: str, use: bool) -> bytes:
    return rootfs.read_file(fd, path, 1 << 20, use_openat2=use)


def test_links_out_of_the_root_resolve_inside_it(tree, use_openat2):
    root, host, fd = tree
    for path in ("/abs/secret", "etc/up/secret", "/../../../" + str(host).lstrip("/") + "/secret"):
        with pytest.raises(FileNotFoundError):
            read(fd, path, use_openat2)
    # climbing links land on the root's own files, as they would inside the guest
    assert read(fd, "/etc/pw-up", use_openat2).startswith(b"root:x")
    assert read(fd, "/etc-link/passwd", use_openat2).startswith(b"root:x")
    rootfs.write_file(fd, "/etc-link/new", b"x\n", 0o600, use_openat2=use_openat2)
    assert (root / "etc" / "new").read_bytes() == b"x\n" and (root / "etc" / "new").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileNotFoundError):
        rootfs.write_file(fd, "/abs/secret", b"pwned\n", use_openat2=use_openat2)
    assert (host / "secret").read_text() == "host\n" and sorted(p.name for p in host.iterdir()) == ["secret"]


def test_fifo_device_folder_and_loops_are_refused(tree, use_openat2):
    root, _host, fd = tree
    os.mknod(str(root / "null"), 0o666 | 0o020000, os.makedev(1, 3))
    for path, kind in (("/fifo", "a FIFO"), ("/null", "a character device"), ("/etc", "a folder")):
        for flags in (os.O_RDONLY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
            with pytest.raises(rootfs.NotRegular, match=r"not a regular file \(%s\)" % kind):
                rootfs.open_regular(fd, path, flags, use_openat2=use_openat2)
    with pytest.raises(OSError) as info:
        read(fd, "/loop1", use_openat2)
    assert info.value.errno == errno.ELOOP
    with pytest.raises(OSError) as info:
        rootfs.open_in_root(fd, "/etc-link", os.O_RDONLY | os.O_NOFOLLOW, use_openat2=use_openat2)
    assert info.value.errno == errno.ELOOP


def test_read_is_bounded(tree, use_openat2):
    _root, _host, fd = tree
    with pytest.raises(OSError) as info:
        rootfs.read_file(fd, "/etc/passwd", 5, use_openat2=use_openat2)
    assert info.value.errno == errno.EFBIG


def test_makedirs_in_root(tree, use_openat2):
    root, host, fd = tree
    dfd, created = rootfs.makedirs_in_root(fd, "/etc-link/a/b", use_openat2=use_openat2)
    os.close(dfd)
    assert created == ["/etc-link/a", "/etc-link/a/b"] and (root / "etc" / "a" / "b").is_dir()
    with pytest.raises(FileNotFoundError):  # a link to a host folder leads nowhere inside the root
        rootfs.makedirs_in_root(fd, "/abs/c", use_openat2=use_openat2)
    assert sorted(p.name for p in host.iterdir()) == ["secret"]


def test_own_dir_never_follows(tree):
    root, _host, fd = tree
    with pytest.raises(rootfs.NotRegular, match="a symbolic link, not a folder"):
        rootfs.own_dir(fd, "abs")
    made = rootfs.own_dir(fd, "proc", 0o555)
    os.close(made)
    assert (root / "proc").is_dir() and (root / "proc").stat().st_mode & 0o777 == 0o555


def test_openat2_refuses_magic_links(tmp_path):
    """/proc/self/fd/N leads wherever the process's fd does: never followed."""
    target = tmp_path / "f"
    target.write_text("x")
    held = os.open(str(target), os.O_RDONLY)
    root = rootfs.open_root("/")
    try:
        with pytest.raises(OSError) as info:
            rootfs.open_in_root(root, "/proc/self/fd/%d" % held, os.O_RDONLY)
        assert info.value.errno == errno.ELOOP
    finally:
        os.close(root)
        os.close(held)


def test_openat2_wrapper_passes_mode_only_when_creating(tmp_path):
    dfd = os.open(str(tmp_path), os.O_PATH | os.O_DIRECTORY)
    try:
        fd = sc.openat2(dfd, "new", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640, sc.RESOLVE_IN_ROOT)
        os.close(fd)
        assert (tmp_path / "new").stat().st_mode & 0o777 == 0o640 & ~_umask()
        fd = sc.openat2(dfd, ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0o640, sc.RESOLVE_IN_ROOT)  # mode ignored
        os.close(fd)
    finally:
        os.close(dfd)


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_open_source_follows_host_links_but_not_a_guests(tmp_path):
    """A bind source: host links are followed; once the walk stands on a guest's root (found
    by identity, also through a host link), links planted there resolve inside it."""
    host = tmp_path / "host"
    (host / "sub").mkdir(parents=True)
    root = tmp_path / "root"
    (root / str(host).lstrip("/") / "sub").mkdir(parents=True)  # what the guest's links name, inside its root
    os.symlink(str(host), str(root / "abs"))
    os.symlink("../" * 12 + str(host).lstrip("/"), str(root / "up"))
    os.symlink(str(root), str(tmp_path / "alias"))  # the host's own link to the root
    os.symlink(str(host), str(tmp_path / "host-link"))
    os.symlink("loop", str(tmp_path / "loop"))
    st = os.stat(str(root))
    roots = {(st.st_dev, st.st_ino): "g"}

    def ino(path, known=None):
        fd = rootfs.open_source(path, roots if known is None else known)
        try:
            return os.fstat(fd).st_ino
        finally:
            os.close(fd)

    inside = os.stat(str(root / str(host).lstrip("/") / "sub")).st_ino
    outside = os.stat(str(host / "sub")).st_ino
    for src in ("%s/abs/sub" % root, "%s/up/sub" % root, "%s/alias/abs/sub" % tmp_path, "%s/alias/up/./sub" % tmp_path):
        assert ino(src) == inside, src
        assert ino(src, {}) == outside, src  # the root not known: a plain host path
    assert ino("%s/host-link/sub" % tmp_path) == outside
    with pytest.raises(OSError) as info:
        rootfs.open_source(str(tmp_path / "loop"), roots)
    assert info.value.errno == errno.ELOOP
    with pytest.raises(FileNotFoundError):
        rootfs.open_source(str(root / "nothing"), roots)
