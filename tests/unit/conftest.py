# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests run the helper directly as root on this machine (no Ansible).

So that nothing a test mounts can leak onto the machine, the test process
moves into a private mount namespace of its own on import: every mount made
by a unit test (pins, /run/netns, binds) vanishes with the pytest process even
when a test crashes.  The process is also a child subreaper, so guest inits
orphaned by a test are reaped here rather than left as zombies.
"""

from __future__ import annotations

import os
import shutil

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import KernelError


def _private_mount_namespace() -> None:
    if os.geteuid() != 0:
        return
    sc.unshare_one("mnt")
    sc.mount("none", "/", None, sc.MS_REC | sc.MS_PRIVATE)
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)


if not os.environ.get("_LINUXNS_UNIT_NS"):
    os.environ["_LINUXNS_UNIT_NS"] = "1"
    _private_mount_namespace()


def reap_zombies() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@pytest.fixture(autouse=True)
def kept_files_in_tmp(tmp_path_factory, monkeypatch):
    """Every unit test keeps guests' files (context ids, mount tables) in a folder of
    its own, never in the machine's /etc/linuxns: the helper writes kept ids for any
    guest it creates, also when a test calls a module or the engine directly."""
    from ansible_collections.linuxns.guests.plugins.module_utils import persist

    folder = tmp_path_factory.mktemp("tables")
    monkeypatch.setenv(persist.TABLE_DIR_ENV, str(folder))
    yield str(folder)
    shutil.rmtree(str(folder), ignore_errors=True)


@pytest.fixture
def unit_registry(tmp_path, monkeypatch):
    """A Registry in a fresh state folder with its own netns folder; every guest
    left in it is removed afterwards (processes killed, pins unmounted).  Kept files
    (context ids, mount tables) go to tmp_path/tables, never to /etc/linuxns."""
    from ansible_collections.linuxns.guests.plugins.module_utils import guest_stop, persist, registry

    if os.geteuid() != 0:
        pytest.skip("the helper's unit tests run as root")
    monkeypatch.setenv(persist.TABLE_DIR_ENV, str(tmp_path / "tables"))
    state = tmp_path / "state"
    netns = tmp_path / "netns"
    reg = registry.Registry(str(state), str(netns))
    yield reg
    for name in reg.names():
        guest_stop.remove(reg, name, reg.load(name))
    reap_zombies()
    for path in (str(netns), str(state)):
        for _attempt in range(8):
            try:
                sc.umount2(path, sc.MNT_DETACH)
            except KernelError:
                break
    shutil.rmtree(str(tmp_path), ignore_errors=True)


@pytest.fixture
def busybox_root(tmp_path):
    """A minimal guest root folder with busybox-static and its applet links."""
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    for sub in ("etc", "tmp", "proc", "dev", "root"):
        (root / sub).mkdir()
    src = shutil.which("busybox") or "/bin/busybox"
    shutil.copy2(src, str(root / "bin" / "busybox"))
    for applet in ("sh", "ls", "cat", "echo", "hostname", "ps", "sleep", "mount", "true", "false", "id", "env", "pwd"):
        os.symlink("busybox", str(root / "bin" / applet))
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\nweb:x:1000:1000:web:/tmp:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\nweb:x:1000:\n")
    return str(root)


# The machine's own table folder: no test may leave anything there (the helper's default
# for kept files is /etc/linuxns; tests use their own folders, lab hosts an /etc overlay).
_MACHINE_TABLES = "/etc/linuxns"
_MACHINE_TABLES_BEFORE = os.path.exists(_MACHINE_TABLES)


def pytest_sessionfinish(session, exitstatus):
    if not _MACHINE_TABLES_BEFORE and os.path.exists(_MACHINE_TABLES):
        left = sorted(os.path.join(d, f) for d, _dirs, files in os.walk(_MACHINE_TABLES) for f in files)
        session.exitstatus = 1
        print("\nERROR: the tests left files in the machine's %s: %s" % (_MACHINE_TABLES, ", ".join(left) or "(folders)"))
