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

import contextlib
import glob
import os
import shutil
import subprocess

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

# Guests made by a unit test get their cgroups below this process's own cgroup (a relative
# parent, in every hierarchy), never at a hierarchy's root (cgroups_below_the_test).
os.environ.setdefault("LINUXNS_CGROUP_PARENT", "linuxns-unit-%d" % os.getpid())


@pytest.fixture(scope="session", autouse=True)
def machine_etc_untouched():
    """No unit test may write the machine's /etc/linuxns (kept files go to a temporary folder:
    kept_files_in_tmp); a session that made it fails, naming what it found."""
    existed = os.path.lexists("/etc/linuxns")
    yield
    if not existed and os.path.lexists("/etc/linuxns"):
        found = sorted(os.path.join(b, n) for b, ds, fs in os.walk("/etc/linuxns") for n in ds + fs)
        raise AssertionError("the tests wrote the machine's /etc/linuxns: %s" % ", ".join(found[:20]))


@pytest.fixture(scope="session", autouse=True)
def machine_netns_names_untouched():
    """No unit test may leave a name in the machine's /run/netns (`ip netns`'s folder): unit
    registries keep theirs in their own folder, and a program a test runs is given it too
    (linuxns-guest --netns-dir).  A leak is removed (it pins a network namespace) and fails
    the session, naming it."""
    def names():
        try:
            return set(os.listdir("/run/netns"))
        except OSError:
            return set()

    before = names()
    yield
    leaked = sorted(names() - before)
    for name in leaked:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
    if leaked:
        raise AssertionError("the tests left names in the machine's /run/netns: %s" % ", ".join(leaked))


def reap_zombies() -> None:
    for _child in sc.exited_children():
        pass


def _remove_stale_unit_cgroups() -> None:
    """What an earlier unit session that was killed (SIGKILL, a CI timeout) left: its cgroup
    parent linuxns-unit-PID (PID no longer running) below this process's cgroup, with the
    processes of its guests still in it (their reapers outlive the session).  Those processes
    were started by that session: they are killed by pid and the folders removed, so that a
    killed run costs the next one nothing and leaves nothing for long."""
    import re
    import signal

    from lab import own_cgroup_dirs, remove_cgroup_tree

    if os.geteuid() != 0:
        return
    stale = set()
    for top in own_cgroup_dirs("").values():
        with contextlib.suppress(OSError):
            for name in os.listdir(top):
                m = re.fullmatch(r"linuxns-unit-(\d+)", name)
                if m and int(m.group(1)) != os.getpid() and not os.path.exists("/proc/" + m.group(1)):
                    stale.add(name)
    for name in sorted(stale):
        for folder in own_cgroup_dirs(name).values():
            for d, _subs, _files in os.walk(folder):
                with contextlib.suppress(OSError), open(os.path.join(d, "cgroup.procs")) as f:
                    for pid in f.read().split():
                        with contextlib.suppress(OSError):
                            os.kill(int(pid), signal.SIGKILL)
        reap_zombies()
        left = remove_cgroup_tree(name)
        print("\nremoved the cgroups of a killed unit session: %s%s" % (name, " (left: %s)" % ", ".join(left) if left else ""))


@pytest.fixture(scope="session", autouse=True)
def cgroups_below_the_test():
    """At the end of the session no guest cgroup may be left below the tests' cgroup parent
    ($LINUXNS_CGROUP_PARENT, relative to this process's cgroup); the parent is removed.  Nor may
    the session have made the default parent (/linuxns) at a hierarchy's root: a guest made
    without the tests' parent would land there, outside the tests' own cgroup."""
    roots = set(glob.glob("/sys/fs/cgroup/*/linuxns") + glob.glob("/sys/fs/cgroup/linuxns"))
    _remove_stale_unit_cgroups()
    yield
    made = sorted(set(glob.glob("/sys/fs/cgroup/*/linuxns") + glob.glob("/sys/fs/cgroup/linuxns")) - roots)
    for d in made:
        with contextlib.suppress(OSError):
            os.rmdir(d)  # only when empty: a live guest's cgroup is never removed here
    assert not made, "the tests made the default cgroup parent at a hierarchy's root: %s" % ", ".join(made)
    from lab import own_cgroup_dirs, remove_cgroup_tree

    rel = os.environ.get("LINUXNS_CGROUP_PARENT", "")
    if os.geteuid() != 0 or not rel or rel.startswith("/"):
        return
    leaked = sorted({os.path.join(d, n) for d in own_cgroup_dirs(rel).values() if os.path.isdir(d)
                     for n in os.listdir(d) if os.path.isdir(os.path.join(d, n))})
    left = remove_cgroup_tree(rel)
    assert not leaked and not left, "the tests left cgroups: %s" % ", ".join(leaked + left)


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


def _made_for_real(registry, results, names) -> None:
    """Every guest of ``results`` (a task's results, in its order: ``names``) made for real: recorded
    ready, its init alive in its own namespaces (pinned), in its own cgroup, holding no fd but its own
    (no socket or pipe of the fork server or the module)."""
    from ansible_collections.linuxns.guests.plugins.module_utils import procfs
    from ansible_collections.linuxns.guests.plugins.module_utils.registry import READY

    assert [g["name"] for g in results] == names and all(g["action"] == "create" for g in results)
    host = {t: os.stat("/proc/self/ns/%s" % t).st_ino for t in ("mnt", "uts", "ipc", "net", "pid")}
    for res in results:
        g = res["guest"]
        pid = g["init_pid"]
        assert procfs.process_alive(pid, None) and registry.load(res["name"]).phase == READY
        for t, ino in host.items():
            assert os.stat("/proc/%d/ns/%s" % (pid, t)).st_ino == g["namespaces"][t]["inode"] == os.stat(g["namespaces"][t]["pin"]).st_ino != ino
        with open("/proc/%d/cgroup" % pid) as f:
            cgroups = f.read()
        assert all(line.endswith("/" + res["name"]) for line in cgroups.splitlines() if ":memory:" in line or ":pids:" in line), cgroups
        links = [os.readlink("/proc/%d/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%d/fd" % pid)]
        assert not [link for link in links if link.startswith(("socket:", "pipe:"))], links


@pytest.fixture
def made_for_real():
    """The check that a task's new guests were made for real (``check(registry, results, names)``)."""
    return _made_for_real


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
