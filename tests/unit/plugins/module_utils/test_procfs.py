# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""procfs against real processes this test forks (and reaps): namespaces, tree, start time, holders."""

from __future__ import annotations

import contextlib
import os
import struct

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import procfs
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and mounts need root")


@contextlib.contextmanager
def held(setup=None, depth: int = 0):
    """Fork a child that runs ``setup()`` (its result: an int sent back) and forks ``depth``
    descendants, each the child of the one before; all block until the block ends.

    Yields (pids from the child down, setup's int).  Each waits for its own child, and
    the test reaps the first: nothing is left behind, also when an assertion fails.
    """
    ready_r, ready_w = os.pipe()
    release_r, release_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(ready_r)
            os.close(release_w)
            value = setup() if setup else 0
            os.write(ready_w, struct.pack("=ii", os.getpid(), value))
            child = 0
            for _level in range(depth):
                child = os.fork()
                if child:
                    break
                os.write(ready_w, struct.pack("=ii", os.getpid(), 0))
            os.close(ready_w)
            os.read(release_r, 1)  # EOF when the test ends the block
            if child:
                os.waitpid(child, 0)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(ready_w)
    os.close(release_r)
    try:
        pids, value = [], None
        with os.fdopen(ready_r, "rb") as f:
            for _i in range(depth + 1):
                got = f.read(8)
                assert len(got) == 8, "the forked child failed before it was ready"
                p, v = struct.unpack("=ii", got)
                pids.append(p)
                value = v if value is None else value
        yield pids, value
    finally:
        os.close(release_w)
        _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def ns_ino(pid, nstype: str) -> int:
    return os.stat("/proc/%d/ns/%s" % (pid, nstype)).st_ino


def test_index_finds_a_child_in_a_new_namespace():
    with held(lambda: sc.unshare_one("uts") or 0) as (pids, _v):
        pid = pids[0]
        ino = ns_ino(pid, "uts")
        assert ino != ns_ino(os.getpid(), "uts")
        index = procfs.Index()
        assert index.pids("uts", ino) == {pid}
        assert pid in index.pids("net", ns_ino(os.getpid(), "net"))
        assert procfs.Proc(pid).ns("uts") == ino
    assert procfs.Index().pids("uts", ino) == set()


def test_scan_reads_fields_of_a_process_and_none_when_gone():
    with held() as (pids, _v):
        proc = next(p for p in procfs.scan() if p.pid == pids[0])
        assert proc.ppid == os.getpid() and proc.state in (b"S", b"R")
        assert proc.start_time == procfs.proc_start_time(pids[0]) > 0
        assert proc.cgroup() is not None
        assert proc.cgroup() == procfs.Proc(os.getpid()).cgroup()
    assert all(p.pid != os.getpid() for p in procfs.scan(skip_self=True))
    gone = procfs.Proc(pids[0])
    assert gone.stat is None and gone.ppid is None and gone.ns("mnt") is None and gone.fds() == []


def test_tree_finds_forked_children_and_nothing_else():
    with held(depth=2) as (pids, _v), held() as (other, _w):
        child, grandchild, great = pids
        table = procfs.table()
        assert table[grandchild][0] == child and table[great][0] == grandchild
        assert procfs.tree(child, table) == {child, grandchild, great}
        assert procfs.tree(grandchild) == {grandchild, great}
        assert procfs.children(child, table) == {grandchild}
        assert procfs.children(os.getpid(), table) >= {child, other[0]}
        assert other[0] not in procfs.tree(child, table)


def test_start_time_tells_a_recorded_process_from_a_stale_record():
    with held() as (pids, _v):
        pid = pids[0]
        start = procfs.proc_start_time(pid)
        assert procfs.process_alive(pid, start) and procfs.process_alive(pid, None)
        assert not procfs.process_alive(pid, start + 1)  # the pid, but another process's record
        assert not procfs.process_alive(0, None) and not procfs.is_zombie(pid)
    assert procfs.proc_start_time(pid) is None and not procfs.process_alive(pid, start) and procfs.is_zombie(pid)


def test_a_zombie_is_not_alive():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
        start = procfs.proc_start_time(pid)
        assert start is not None and procfs.is_zombie(pid) and not procfs.process_alive(pid, start)
    finally:
        os.waitpid(pid, 0)


def _mount_id(pid: int, path: str) -> int:
    with open("/proc/%d/mountinfo" % pid) as f:
        ids = [int(line.split()[0]) for line in f if line.split()[4] == path]
    return ids[-1]


def test_holders_of_a_tmpfs_in_a_private_mount_namespace(tmp_path):
    where = str(tmp_path / "data")
    os.mkdir(where)

    def setup() -> int:
        sc.unshare_one("mnt")
        sc.mount("none", "/", None, sc.MS_REC | sc.MS_PRIVATE)
        sc.mount("tmpfs", where, "tmpfs")
        os.chdir(where)
        return os.open("held", os.O_CREAT | os.O_RDWR, 0o600)

    with held(setup) as (pids, fd), held() as (bystander, _w):
        pid = pids[0]
        mnt_ino, mount_id = ns_ino(pid, "mnt"), _mount_id(pid, where)
        assert mnt_ino != ns_ino(os.getpid(), "mnt")
        assert procfs.fdinfo_mnt_id("/proc/%d/fdinfo/%d" % (pid, fd)) == mount_id
        assert procfs.mnt_id_of("/proc/%d/cwd" % pid) == mount_id
        who = procfs.holders(mnt_ino, mount_id)
        assert len(who) == 1 and who[0].startswith("pid %d (" % pid) and who[0].endswith(": cwd, fd %d)" % fd)
        assert procfs.holders(mnt_ino, mount_id + 100000) == []
        # Seen from another mount namespace: by path (a mirror), not by mount id.
        mirror = procfs.holders(None, None, [where])
        assert any(h.startswith("pid %d (" % pid) and "on the host, in the mirror: cwd, fd %d)" % fd in h for h in mirror)
        assert not any(h.startswith("pid %d (" % bystander[0]) for h in mirror)
    assert procfs.holders(mnt_ino, mount_id) == []
    assert os.listdir(where) == []  # the tmpfs went with its namespace
