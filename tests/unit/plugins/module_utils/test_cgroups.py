# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cgroups.py as root on this machine, no Ansible (docs/resources.md, "What ran where").

- v1 for real: this machine's v1 hierarchies, through a layout detected from the real
  mountinfo with the cgroup2 line left out (so nothing falls back to the unified files).
- v2 core files for real on /sys/fs/cgroup/unified (placement, cgroup.freeze, cgroup.kill,
  cpu.stat), and the hybrid layout as detected.
- v2 limit files against a temporary tree laid out like a v2 hierarchy (detect() pointed at
  a fake mountinfo and /proc/self/cgroup).

Every cgroup a test makes is below a test parent nested in the test process's own cgroup in
each hierarchy (relative cgroup_parent); fixtures kill the processes the test started (by
pid) and remove the parent in every hierarchy, also on failure.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import cgroups as cg
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestConflict, InvalidInput

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups are written as root")

_seq = itertools.count()


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def own_cgroups() -> dict:
    out = {}
    for line in read("/proc/self/cgroup").splitlines():
        _hid, ctrls, path = line.split(":", 2)
        out[ctrls or "unified"] = path
    return out


@pytest.fixture(scope="module")
def hybrid():
    layout = cg.detect()
    if "memory" not in layout.hierarchies or cg.UNIFIED not in layout.hierarchies:
        pytest.skip("this test file is written for the hybrid machine described in docs/resources.md")
    return layout


@pytest.fixture(scope="module")
def v1(tmp_path_factory):
    """This machine's real v1 hierarchies, without the unified mount."""
    d = tmp_path_factory.mktemp("v1layout")
    lines = [ln for ln in read("/proc/self/mountinfo").splitlines() if " - cgroup2 " not in ln]
    (d / "mountinfo").write_text("\n".join(lines) + "\n")
    layout = cg.detect(mountinfo=str(d / "mountinfo"))
    assert layout.version == "v1"
    return layout


class Procs:
    """Processes a test started; all killed by pid at teardown."""

    def __init__(self):
        self.popen = []
        self.pids = set()

    def start(self, argv, cgroup=None, **kw):
        pre = (lambda: cgroup.join(0)) if cgroup is not None else None
        p = subprocess.Popen(argv, preexec_fn=pre, stdin=subprocess.DEVNULL, **kw)
        self.popen.append(p)
        self.pids.add(p.pid)
        return p

    def adopt(self, pids):
        self.pids.update(pids)

    def cleanup(self):
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.popen:
            p.wait(timeout=30)
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)      # orphans of our shells come to us (the unit conftest's subreaper)
            except ChildProcessError:
                pass


@pytest.fixture
def procs():
    p = Procs()
    yield p
    p.cleanup()


def _thaw_below(dirs: dict) -> None:
    """A test that failed while its guest was frozen must not leave frozen processes behind."""
    for d in dirs.values():
        for dirpath, _dirs, files in os.walk(d):
            for name, text in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
                if name in files:
                    cg._write(os.path.join(dirpath, name), text)


def _remove_parent(layout, dirs: dict) -> None:
    for d in dirs.values():
        if os.path.isdir(d):
            for pid in cg.GuestCgroup._tasks_in(d):
                os.kill(pid, signal.SIGKILL)    # only ever our own processes live below our test parent
    # the same bounded retry as remove(): a killed task leaves its cgroup a moment later
    cg.GuestCgroup(layout, dirs).remove(timeout=10)


@pytest.fixture
def parent(hybrid, procs):
    """A test parent below this process's own cgroup in every hierarchy (a relative
    cgroup_parent), removed at teardown with everything below it."""
    name = "cgcore-test-%d-%d" % (os.getpid(), next(_seq))
    dirs = cg.resolve_parent(hybrid, name)
    yield name, dirs
    _thaw_below(dirs)
    procs.cleanup()
    _remove_parent(hybrid, dirs)
    assert not [d for d in dirs.values() if os.path.exists(d)]


def only(dirs: dict, layout) -> dict:
    return {k: v for k, v in dirs.items() if k in layout.hierarchies}


LIMIT_FILES = ("memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.memsw.limit_in_bytes", "cpu.cfs_quota_us", "cpu.cfs_period_us",
               "cpu.shares", "cpuset.cpus", "cpuset.mems", "pids.max", "blkio.weight", "blkio.bfq.weight", "memory.max", "memory.high",
               "memory.swap.max", "cpu.max", "cpu.weight", "io.weight", "cgroup.subtree_control")


def files_of(gc: cg.GuestCgroup) -> dict:
    """Every limit file of the guest and of its parent (to prove that nothing changed)."""
    out = {}
    for d in gc.paths.values():
        for dd in (d, os.path.dirname(d)):
            for name in LIMIT_FILES:
                if os.path.exists(os.path.join(dd, name)):
                    out[os.path.join(dd, name)] = read(os.path.join(dd, name))
    return out


# ---------------------------------------------------------------------------------------------
# layout


def test_detect_this_machine(hybrid):
    own = own_cgroups()
    assert hybrid.version == "hybrid"
    mounts = {}
    for line in read("/proc/self/mountinfo").splitlines():
        f, _sep, r = line.partition(" - ")
        if r.split()[0] in ("cgroup", "cgroup2"):
            mounts[f.split()[4]] = r.split()[0]
    for key, point in hybrid.hierarchies.items():
        assert point in mounts
        assert (mounts[point] == "cgroup2") == (key == cg.UNIFIED)
        assert hybrid.own[key] == own[key]
    assert {"memory", "cpu", "cpuset", "pids", "freezer", "blkio", "name=systemd", "unified"} <= set(hybrid.hierarchies)
    assert {"memory", "cpu", "cpuset", "pids", "io", "freezer"} <= hybrid.controllers()
    assert hybrid.locate("memory") == ("v1", "memory")
    assert hybrid.locate("io") == ("v1", "blkio")


MOUNTINFO_V2 = "30 23 0:26 / {root} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
MOUNTINFO_V1 = (
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "33 31 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "34 31 0:31 / /sys/fs/cgroup/my\\040systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
)


def test_detect_fake_layouts(tmp_path):
    (tmp_path / "mi2").write_text(MOUNTINFO_V2.format(root="/sys/fs/cgroup"))
    (tmp_path / "cg2").write_text("0::/user.slice/session-1.scope\n")
    lay = cg.detect(str(tmp_path / "mi2"), str(tmp_path / "cg2"), proc_cgroups="/nonexistent")
    assert (lay.version, lay.hierarchies, lay.own) == ("v2", {"unified": "/sys/fs/cgroup"}, {"unified": "/user.slice/session-1.scope"})

    (tmp_path / "mi1").write_text(MOUNTINFO_V1)
    (tmp_path / "cg1").write_text("3:name=systemd:/a\n2:memory:/b\n1:cpu,cpuacct:/\n0::/a\n")
    lay = cg.detect(str(tmp_path / "mi1"), str(tmp_path / "cg1"), proc_cgroups="/nonexistent")
    assert lay.version == "v1"     # a 0:: line without a cgroup2 mount is not a hierarchy
    assert lay.hierarchies == {"name=systemd": "/sys/fs/cgroup/my systemd", "memory": "/sys/fs/cgroup/memory", "cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct"}
    assert lay.v1_key("cpu") == "cpu,cpuacct" and lay.v1_key("cpuacct") == "cpu,cpuacct"
    assert lay.locate("pids") is None
    dirs = cg.resolve_parent(lay, "lab/x")
    assert dirs["memory"] == "/sys/fs/cgroup/memory/b/lab/x" and dirs["cpu,cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/lab/x"

    (tmp_path / "mi3").write_text(MOUNTINFO_V1 + MOUNTINFO_V2.format(root="/sys/fs/cgroup/unified"))
    lay = cg.detect(str(tmp_path / "mi3"), str(tmp_path / "cg1"), proc_cgroups="/nonexistent")
    assert lay.version == "hybrid" and lay.hierarchies["unified"] == "/sys/fs/cgroup/unified"


def test_resolve_parent(hybrid):
    own = own_cgroups()
    auto = cg.resolve_parent(hybrid, "auto")      # PID 1 is not systemd here: /linuxns everywhere
    assert auto == {k: os.path.join(p, "linuxns") for k, p in hybrid.hierarchies.items()}
    assert cg.resolve_parent(hybrid, None) == auto
    absolute = cg.resolve_parent(hybrid, "/a/b")
    assert absolute["memory"] == "/sys/fs/cgroup/memory/a/b" and absolute["unified"] == "/sys/fs/cgroup/unified/a/b"
    rel = cg.resolve_parent(hybrid, "a/b")
    assert rel["memory"] == "/sys/fs/cgroup/memory" + own["memory"] + "/a/b"
    assert rel["pids"] == "/sys/fs/cgroup/pids/a/b"
    for bad in ("../x", "a/../../b", "/a/./b", 5):
        with pytest.raises(InvalidInput, match="cgroup_parent"):
            cg.resolve_parent(hybrid, bad)
    gc = cg.GuestCgroup.plan(hybrid, "a/b", "web1")
    assert gc.paths["memory"] == rel["memory"] + "/web1"
    assert gc.procs_files() == [os.path.join(gc.paths[k], "cgroup.procs") for k in sorted(gc.paths)]
    for bad in ("", "a/b", "..", 7):
        with pytest.raises(InvalidInput):
            cg.GuestCgroup.plan(hybrid, "a/b", bad)


# ---------------------------------------------------------------------------------------------
# check_limits


def test_check_limits_normalises():
    got = cg.check_limits({"memory": "2G", "memory_high": "1.5G", "memory_swap": 0, "cpu": 1.5, "cpu_weight": "200",
                           "cpuset_cpus": "1,0", "cpuset_mems": 0, "pids": "max", "io_weight": 500}, "limits of guest web1")
    assert got == {"memory": 2 << 30, "memory_high": 3 << 29, "memory_swap": 0, "cpu": 1.5, "cpu_weight": 200,
                   "cpuset_cpus": "0-1", "cpuset_mems": "0", "pids": "max", "io_weight": 500}
    assert cg.check_limits(got, "x") == got
    assert cg.check_limits({"memory": "2048KiB", "memory_high": "1.5M"}, "x") == {"memory": 2 << 20, "memory_high": 3 << 19}
    assert cg.check_limits({"memory": "2g", "memory_swap": "max"}, "x") == {"memory": 2 << 30, "memory_swap": "max"}
    assert cg.check_limits({"cpu": "0.333333"}, "x") == {"cpu": 0.33333}
    assert cg.check_limits({}, "x") == {} and cg.check_limits(None, "x") == {}
    assert cg.needed_controllers({"memory": 1, "cpu_weight": 1, "io_weight": 1}) == {"memory", "cpu", "io"}


def test_check_limits_whole_set_rules():
    with pytest.raises(InvalidInput, match="limits of guest web1: unknown limit 'hugetlb'"):
        cg.check_limits({"hugetlb": "1G"}, "limits of guest web1")
    with pytest.raises(InvalidInput, match=r"memory_swap .* needs memory too"):
        cg.check_limits({"memory_swap": "1G"}, "limits")
    with pytest.raises(InvalidInput, match=r"limits.memory_high is above limits.memory"):
        cg.check_limits({"memory": "1G", "memory_high": "2G"}, "limits")
    with pytest.raises(InvalidInput, match="must be a dict"):
        cg.check_limits(["memory"], "limits")
    with pytest.raises(InvalidInput, match=r"limits.cpuset_cpus of guest g: 64-65 outside the host's CPUs"):
        cg.check_limits({"cpuset_cpus": "0,64-65"}, "limits of guest g")
    with pytest.raises(InvalidInput, match=r"more than the host's"):
        cg.check_limits({"cpu": len(cg.host_cpuset("cpus")) + 1}, "limits")


def bad_values(key: str) -> list:
    """Wrong input for ``key``, generated from its row in cg.LIMITS."""
    spec = cg.LIMITS[key]
    out = [[1], {"a": 1}, True, None, 1j, "garbage", "", "1-", "--1", "12Q", "0x10"]
    if spec.kind == "cpuset":
        return out + [-1, "-1", "3-1", "0,,1", "1.5", "99999", "max"]
    out += [-1, "-1", -(1 << 40)]
    if spec.kind == "size":
        out += [spec.hi + 1, "%dT" % (spec.hi // (1 << 40) + 1), "1K" if spec.lo > 1024 else "-1K", "12 parsecs"]
        if spec.lo > 0:
            out += [0, "0", "0M"]
    elif spec.kind == "cpu":
        out += [0, "0", 0.0, 0.001, 10**6, float("inf"), float("nan"), "1,5"]
    else:
        out += [0, "0", spec.hi + 1, str(spec.hi + 1), 10**12, 1.5, "1.5"]
        if spec.kind == "weight":
            out += ["max"]
    return out


BAD = [(key, value) for key in cg.LIMITS for value in bad_values(key)]


@pytest.mark.parametrize("key,value", BAD, ids=["%s=%r" % kv for kv in BAD])
def test_bad_input_is_refused_by_name(key, value):
    with pytest.raises(InvalidInput) as err:
        cg.check_limits({key: value} if key != "memory_swap" else {"memory": "1G", key: value}, "limits of guest web1")
    assert "limits.%s of guest web1" % key in str(err.value)


# ---------------------------------------------------------------------------------------------
# v1 for real


LIMITS_V1 = {"memory": "64M", "memory_high": "32M", "memory_swap": "16M", "cpu": 1.5, "cpu_weight": 200,
             "cpuset_cpus": "1", "cpuset_mems": "0", "pids": 64, "io_weight": 300}


def v1_io_weight_file(blkio_dir: str):
    """The v1 io weight file this kernel offers (CFQ's blkio.weight, BFQ's blkio.bfq.weight), or None."""
    return next((f for f in ("blkio.weight", "blkio.bfq.weight") if os.path.exists(os.path.join(blkio_dir, f))), None)


def test_v1_create_limits_read_back_and_remove(v1, parent):
    _name, dirs = parent
    gc = cg.GuestCgroup.plan(v1, only(dirs, v1), "g1")
    limits = dict(LIMITS_V1)
    if v1_io_weight_file(dirs["blkio"]) is None:
        # a kernel without CFQ or BFQ (the I/O scheduler none, mq-deadline or kyber): no v1 io weight
        # at all - refused by name, and nothing of the guest's cgroup is left
        with pytest.raises(InvalidInput, match=r"limits\.io_weight of guest g1: this kernel has neither blkio\.weight"):
            gc.create(limits)
        assert not [d for d in gc.paths.values() if os.path.exists(d)]
        del limits["io_weight"]
    gc.create(limits)
    p = gc.paths
    assert all(os.path.isdir(d) for d in p.values())
    assert read(p["memory"] + "/memory.limit_in_bytes") == str(64 << 20)
    assert read(p["memory"] + "/memory.soft_limit_in_bytes") == str(32 << 20)
    assert read(p["memory"] + "/memory.memsw.limit_in_bytes") == str(80 << 20)
    assert read(p["cpu"] + "/cpu.cfs_quota_us") == "150000" and read(p["cpu"] + "/cpu.cfs_period_us") == "100000"
    assert read(p["cpu"] + "/cpu.shares") == "2048"
    assert read(p["cpuset"] + "/cpuset.cpus") == "1" and read(p["cpuset"] + "/cpuset.mems") == "0"
    assert read(p["pids"] + "/pids.max") == "64"
    weight_file = v1_io_weight_file(p["blkio"])
    if weight_file == "blkio.weight":
        assert read(p["blkio"] + "/blkio.weight") == "1000"
    elif weight_file == "blkio.bfq.weight":
        assert read(p["blkio"] + "/blkio.bfq.weight") == "300"
    # the test parent's new cpuset got its parent's cpus/mems (runc copyIfNeeded), else no task could join
    assert read(dirs["cpuset"] + "/cpuset.cpus") == read(os.path.dirname(dirs["cpuset"]) + "/cpuset.cpus")
    # cpuset_mems "0" is the parent's own set: on v1 that reads back as "no limit"
    assert gc.read_limits() == gc.expected(limits) == {k: v for k, v in cg.check_limits(limits).items() if k != "cpuset_mems"}
    # in place: the whole set; what is left out goes back to "no limit"
    gc.set_limits({"memory": "128M", "pids": "max", "cpu_weight": 50})
    assert read(p["memory"] + "/memory.limit_in_bytes") == str(128 << 20)
    assert int(read(p["memory"] + "/memory.memsw.limit_in_bytes")) >= cg.V1_MAX
    assert read(p["pids"] + "/pids.max") == "max"
    assert read(p["cpu"] + "/cpu.cfs_quota_us") == "-1" and read(p["cpu"] + "/cpu.shares") == "512"
    assert read(p["cpuset"] + "/cpuset.cpus") == read(dirs["cpuset"] + "/cpuset.cpus")
    assert gc.read_limits() == {"memory": 128 << 20, "cpu_weight": 50}
    odd = {"memory": 64 * 1024 * 1024 + 1, "memory_swap": 4095, "memory_high": "1.5M"}    # sizes the kernel rounds to pages
    gc.set_limits(odd)
    assert gc.read_limits() == gc.expected(odd) == {"memory": 64 << 20, "memory_swap": 4096, "memory_high": 3 << 19}
    gc.set_limits({}, old=gc.read_limits())
    assert gc.read_limits() == {}
    gc.remove()
    assert not [d for d in p.values() if os.path.exists(d)]
    gc.remove()      # again: nothing to do


def test_guest_names_that_are_kernel_file_names_get_their_own_folder(v1, parent):
    """A guest named like a file of its parent cgroup (cgroup.procs, memory.max, v1 tasks) gets
    a folder escaped as systemd's cg_escape does ("_" + name); "_x" becomes "__x", so no two
    guests share one, and the parent's files are untouched."""
    _name, dirs = parent
    names = ("tasks", "notify_on_release", "cgroup.procs", "memory.max", "pids.max", "_tasks", "web.1", "cgroupx")
    assert [cg.folder_name(n) for n in names] == [
        "_tasks", "_notify_on_release", "_cgroup.procs", "_memory.max", "_pids.max", "__tasks", "web.1", "cgroupx"]
    made = []
    try:
        for n in names:
            gc = cg.GuestCgroup.plan(v1, only(dirs, v1), n)
            gc.create({"pids": 8})
            made.append(gc)
        folders = {os.path.basename(d) for gc in made for d in gc.paths.values()}
        assert folders == {cg.folder_name(n) for n in names}
        # the parent's own kernel files are still files, with their values
        assert os.path.isfile(os.path.join(dirs["pids"], "tasks")) and os.path.isfile(os.path.join(dirs["pids"], "cgroup.procs"))
        assert read(os.path.join(made[0].paths["pids"], "pids.max")) == "8"
    finally:
        for gc in made:
            gc.remove()
    assert not [d for gc in made for d in gc.paths.values() if os.path.exists(d)]


def test_v1_place_stats_freeze_kill_remove(v1, parent, procs):
    _name, dirs = parent
    gc = cg.GuestCgroup.plan(v1, only(dirs, v1), "g2")
    gc.create({"pids": 10})
    sleeps = [procs.start(["sleep", "300"]) for _i in range(3)]
    gc.join(sleeps[0].pid)
    for line in read("/proc/%d/cgroup" % sleeps[0].pid).splitlines():
        _hid, ctrls, path = line.split(":", 2)
        if ctrls in v1.hierarchies:
            assert path == v1.own[ctrls].rstrip("/") + "/" + _name + "/g2", line
    assert gc.pids() == [sleeps[0].pid]
    for s in sleeps[1:]:
        gc.join(s.pid)
    st = gc.stats()
    assert st["pids_current"] == 3 and isinstance(st["memory_current"], int) and isinstance(st["cpu_usage_usec"], int)
    assert st["oom_kills"] == 0 and isinstance(st["memory_peak"], int)
    gc.freeze()
    assert gc.frozen() and read(gc.paths["freezer"] + "/freezer.state") == "FROZEN"
    view = gc.info(parent=_name)
    assert view["parent"] == _name and view["paths"] == gc.paths and view["version"] == "v1" and view["frozen"] is True
    assert view["limits"] == {"pids": 10} and view["pids_current"] == 3 and set(st) <= set(view)
    for s in sleeps:
        assert "\tD (disk sleep)" in read("/proc/%d/status" % s.pid)     # a v1-frozen task sleeps in the refrigerator
    gc.thaw()
    assert not gc.frozen() and read(gc.paths["freezer"] + "/freezer.state") == "THAWED"
    assert gc.signal("TERM", spare=[sleeps[0].pid]) == sorted(s.pid for s in sleeps[1:])
    assert [s.wait(timeout=30) for s in sleeps[1:]] == [-signal.SIGTERM, -signal.SIGTERM]
    gc.kill_all()          # v1: no cgroup.kill -> freeze, SIGKILL each, thaw
    assert sleeps[0].wait(timeout=30) == -signal.SIGKILL
    assert gc.pids() == []
    gc.remove()
    assert not [d for d in gc.paths.values() if os.path.exists(d)]


def test_v1_remove_kills_what_is_left(v1, parent, procs):
    _name, dirs = parent
    gc = cg.GuestCgroup.plan(v1, only(dirs, v1), "g3")
    gc.create({})
    s = procs.start(["sleep", "300"], cgroup=gc)
    assert gc.pids() == [s.pid]
    gc.remove()
    assert s.wait(timeout=30) == -signal.SIGKILL
    assert not [d for d in gc.paths.values() if os.path.exists(d)]


def test_v1_remove_takes_child_cgroups_along(v1, parent, procs):
    """A guest's own child cgroups (its systemd's, say), one with a process in it: the first
    rmdir of each hierarchy fails (busy), and the slow way kills and removes everything."""
    _name, dirs = parent
    gc = cg.GuestCgroup.plan(v1, only(dirs, v1), "g3c")
    gc.create({})
    for d in gc.paths.values():
        os.mkdir(os.path.join(d, "child"))
    s = procs.start(["sleep", "300"], cgroup=gc)
    for key, d in gc.paths.items():
        if key != "cpuset":  # a new cpuset cgroup has no CPUs to run on
            cg._write(os.path.join(d, "child", "cgroup.procs"), str(s.pid))
    assert gc.pids() == [s.pid]
    gc.remove()
    assert s.wait(timeout=30) == -signal.SIGKILL
    assert not [d for d in gc.paths.values() if os.path.exists(d)]


def test_v1_refusals_change_nothing(v1, parent, procs):
    _name, dirs = parent
    gc = cg.GuestCgroup.plan(v1, only(dirs, v1), "g4")
    gc.create({"memory": "256M", "pids": 100})
    before = files_of(gc)
    # the test parent (ours) narrowed to CPU 0 and half a CPU: the guest may not ask for more
    cg._write(gc.paths["cpuset"] + "/cpuset.cpus", "0")
    cg._write(dirs["cpuset"] + "/cpuset.cpus", "0")
    cg._write(dirs["cpu"] + "/cpu.cfs_quota_us", "50000")
    before = files_of(gc)
    with pytest.raises(InvalidInput, match=r"limits.cpuset_cpus of guest g4: 1 is not within the parent cgroup's CPUs \(0\)"):
        gc.set_limits({"memory": "128M", "cpuset_cpus": "1"})
    assert files_of(gc) == before
    # check() predicts that refusal for a guest not made yet (check mode), making nothing
    new = cg.GuestCgroup.plan(v1, only(dirs, v1), "g4new")
    with pytest.raises(InvalidInput, match=r"limits.cpuset_cpus of guest g4new: 1 is not within the parent cgroup's CPUs \(0\)"):
        new.check(cg.check_limits({"cpuset_cpus": "1"}), "limits of guest g4new")
    new.check(cg.check_limits({"cpuset_cpus": "0", "pids": 5}), "limits of guest g4new")
    assert not [d for d in new.paths.values() if os.path.exists(d)]
    # the kernel refuses a quota above the parent's (v1): memory was written first and is put back
    with pytest.raises(InvalidInput) as err:
        gc.set_limits({"memory": "128M", "pids": 50, "cpu": 1})
    assert "limits.cpu of guest g4: the kernel refused '100000' in cpu.cfs_quota_us: Invalid argument (EINVAL)" in str(err.value)
    assert files_of(gc) == before
    # a memory limit below what the guest uses: EBUSY, with usage in the message
    hog = procs.start([sys.executable, "-c", "import sys, time; b = b'x' * (48 << 20); print(1, flush=True); time.sleep(300)"],
                      cgroup=gc, stdout=subprocess.PIPE)
    assert hog.stdout.readline().strip() == b"1"
    before = files_of(gc)
    with pytest.raises(InvalidInput) as err:
        gc.set_limits({"memory": "16M", "memory_swap": 0, "pids": 50})     # no swap to escape to, on any machine
    msg = str(err.value)
    assert re.search(r"limits\.memory(_swap)? of guest g4: the kernel refused '16777216' in memory\.(memsw\.)?limit_in_bytes: "
                     r"Device or resource busy \(EBUSY\) - the guest uses more than that now \(usage \d+ bytes", msg), msg
    assert msg.endswith("; nothing was changed")
    assert files_of(gc) == before
    # every generated bad value: refused by name before any file is touched
    for key, value in BAD:
        with pytest.raises(InvalidInput, match="limits.%s of guest g4" % key):
            gc.set_limits({key: value} if key != "memory_swap" else {"memory": "1G", key: value})
    assert files_of(gc) == before
    assert hog.poll() is None


def test_v1_create_rolls_back(v1, parent):
    _name, dirs = parent
    lay = v1
    gc = cg.GuestCgroup.plan(lay, only(dirs, lay), "g5")
    gc.create({})
    cg._write(dirs["cpu"] + "/cpu.cfs_quota_us", "50000")
    other = cg.GuestCgroup.plan(lay, {k: d + "/sub" for k, d in only(dirs, lay).items()}, "g6")
    with pytest.raises(InvalidInput, match=r"limits\.cpu of guest g6: the kernel refused"):
        other.create({"memory": "64M", "cpu": 1})
    # neither the guest's cgroup nor the intermediate "sub" made for it are left
    assert not [k for k, d in dirs.items() if k in lay.hierarchies and os.path.exists(d + "/sub")]
    assert all(os.path.isdir(d) for d in gc.paths.values())


def test_missing_controller_is_named(tmp_path, parent):
    _name, dirs = parent
    lines = [ln for ln in read("/proc/self/mountinfo").splitlines() if not ln.endswith(",memory") and " - cgroup2 " not in ln]
    (tmp_path / "mi").write_text("\n".join(lines) + "\n")
    lay = cg.detect(str(tmp_path / "mi"))
    assert "memory" not in lay.hierarchies and "memory" not in lay.controllers()
    gc = cg.GuestCgroup.plan(lay, only(dirs, lay), "g7")
    with pytest.raises(InvalidInput) as err:
        gc.create({"pids": 5, "memory": "64M"})
    assert "limits.memory of guest g7 needs the cgroup controller 'memory'" in str(err.value)
    assert "leave limits.memory of guest g7 out" in str(err.value)
    assert not [d for d in dirs.values() if os.path.exists(d)]     # nothing made, not even the parent


def test_v1_pids_limit_stops_a_bounded_fork_bomb_at_64(v1, parent, procs):
    _name, dirs = parent
    gc = cg.GuestCgroup.plan(v1, only(dirs, v1), "bomb")
    gc.create({"pids": 64})           # the limit is in place before the first fork
    assert read(gc.paths["pids"] + "/pids.max") == "64"
    # bounded: 200 forks at most, each child sleeps 120 s at most, the loop runs once
    bomb = procs.start(["sh", "-c", "i=0; while [ $i -lt 200 ]; do sleep 120 </dev/null >/dev/null 2>&1 & i=$((i+1)); done; echo done"],
                       cgroup=gc, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _out, err = bomb.communicate(timeout=120)
    procs.adopt(gc.pids())
    assert int(read(gc.paths["pids"] + "/pids.peak")) == 64
    assert int(cg._kv(read(gc.paths["pids"] + "/pids.events"))["max"]) >= 1
    assert b"fork" in err.lower()
    assert gc.stats()["pids_current"] <= 64
    gc.remove()
    assert not [d for d in gc.paths.values() if os.path.exists(d)]


def test_v1_memory_hog_is_oom_killed_and_counted(v1, parent, procs):
    _name, dirs = parent
    gc = cg.GuestCgroup.plan(v1, only(dirs, v1), "hog")
    gc.create({"memory": "64M", "memory_swap": 0})     # the limit (memory + swap) is in place before the hog starts
    assert gc.stats()["oom_kills"] == 0
    # bounded: 256 MiB at most, and no swap is allowed beyond the 64M (memsw = memory)
    hog = procs.start(["sh", "-c", "head -c 256M /dev/zero | tail > /dev/null"], cgroup=gc)
    rc = hog.wait(timeout=120)
    assert rc != 0
    st = gc.stats()
    assert st["oom_kills"] >= 1
    assert st["memory_peak"] <= 64 << 20
    gc.remove()


# ---------------------------------------------------------------------------------------------
# v2 core files for real on the unified mount


def test_v2_core_files_on_the_unified_mount(hybrid, parent, procs):
    _name, dirs = parent
    gc = cg.GuestCgroup.plan(hybrid, {"unified": dirs["unified"]}, "u1")
    gc.create({})
    u = gc.paths["unified"]
    s = procs.start(["sleep", "300"], cgroup=gc)
    assert "0::/%s/u1" % _name in read("/proc/%d/cgroup" % s.pid).splitlines()
    assert gc.pids() == [s.pid]
    gc.freeze()
    assert read(u + "/cgroup.freeze") == "1" and cg._kv(read(u + "/cgroup.events"))["frozen"] == 1 and gc.frozen()
    gc.thaw()
    assert cg._kv(read(u + "/cgroup.events"))["frozen"] == 0 and not gc.frozen()
    busy = procs.start(["sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"], cgroup=gc)
    assert busy.wait(timeout=120) == 0
    assert gc.stats()["cpu_usage_usec"] > 0
    assert gc.stats()["cpu_usage_usec"] == cg._kv(read(u + "/cpu.stat"))["usage_usec"]
    gc.kill_all()          # cgroup.kill
    assert s.wait(timeout=30) == -signal.SIGKILL
    assert cg._kv(read(u + "/cgroup.events"))["populated"] == 0
    gc.remove()
    assert not os.path.exists(u)


def test_hybrid_guest_in_every_hierarchy(hybrid, parent, procs):
    _name, dirs = parent
    gc = cg.GuestCgroup.plan(hybrid, dirs, "h1")
    gc.create({"memory": "64M", "pids": 20})
    s = procs.start(["sleep", "300"], cgroup=gc)
    lines = read("/proc/%d/cgroup" % s.pid).splitlines()
    assert len(lines) == len(hybrid.hierarchies)
    for line in lines:
        _hid, ctrls, path = line.split(":", 2)
        assert path == hybrid.own[ctrls or "unified"].rstrip("/") + "/" + _name + "/h1", line
    gc.freeze()            # hybrid: the unified mount's cgroup.freeze
    assert gc.frozen() and read(gc.paths["unified"] + "/cgroup.freeze") == "1"
    assert read(gc.paths["freezer"] + "/freezer.state") == "THAWED"
    gc.remove()            # cgroup.kill kills a frozen guest too
    assert s.wait(timeout=30) == -signal.SIGKILL
    assert not [d for d in gc.paths.values() if os.path.exists(d)]


def test_taken_over_only_when_empty(hybrid, parent, procs):
    _name, dirs = parent
    gc = cg.GuestCgroup.plan(hybrid, dirs, "t1")
    gc.create({})
    again = cg.GuestCgroup.plan(hybrid, dirs, "t1")
    again.create({"pids": 7})           # a leftover without processes is taken over
    assert read(gc.paths["pids"] + "/pids.max") == "7"
    procs.start(["sleep", "300"], cgroup=gc)
    with pytest.raises(GuestConflict, match="already exists and has processes"):
        cg.GuestCgroup.plan(hybrid, dirs, "t1").create({})
    assert gc.pids()
    gc.remove()


# ---------------------------------------------------------------------------------------------
# v2 limit files against a tree laid out like a v2 hierarchy


V2_FILES = {
    "cgroup.procs": "", "cgroup.subtree_control": "", "cgroup.type": "domain",
    "memory.max": "max", "memory.high": "max", "memory.swap.max": "max", "memory.current": "4096", "memory.peak": "8192",
    "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
    "cpu.max": "max 100000", "cpu.weight": "100", "cpu.stat": "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n",
    "cpuset.cpus": "", "cpuset.mems": "", "pids.max": "max", "pids.current": "2",
    "io.weight": "default 100\n8:0 200", "cgroup.freeze": "0", "cgroup.events": "populated 0\nfrozen 0\n",
}


@pytest.fixture
def fake_v2(tmp_path):
    """A v2 tree: root (all controllers, nothing enabled), lab (the parent), lab/web1 (the guest)."""
    root = tmp_path / "cgroup"
    for d, ctl in ((root, "cpuset cpu io memory hugetlb pids"), (root / "lab", "cpuset cpu io memory hugetlb pids"), (root / "lab" / "web1", "")):
        d.mkdir(parents=True)
        (d / "cgroup.controllers").write_text(ctl)
        for name, text in V2_FILES.items():
            if d != root or name.startswith("cgroup."):
                (d / name).write_text(text)
    (root / "lab" / "cpuset.cpus.effective").write_text("0-1")
    (root / "lab" / "cpuset.mems.effective").write_text("0")
    (tmp_path / "mountinfo").write_text(MOUNTINFO_V2.format(root=str(root)))
    (tmp_path / "self_cgroup").write_text("0::/\n")
    lay = cg.detect(str(tmp_path / "mountinfo"), str(tmp_path / "self_cgroup"), proc_cgroups="/nonexistent")
    assert lay.version == "v2" and lay.hierarchies == {"unified": str(root)}
    return lay, root


def test_v2_limit_files_and_subtree_control(fake_v2):
    lay, root = fake_v2
    (root / "cgroup.subtree_control").write_text("cpu memory")     # what the kernel shows: already enabled at the root
    gc = cg.GuestCgroup.plan(lay, "/lab", "web1")
    assert gc.paths == {"unified": str(root / "lab" / "web1")}
    gc.create({"memory": "64M", "memory_high": "48M", "memory_swap": "16M", "cpu": 1.5, "cpu_weight": 200,
               "cpuset_cpus": "1", "cpuset_mems": "0", "pids": 64, "io_weight": 300})
    g = root / "lab" / "web1"
    assert (root / "cgroup.subtree_control").read_text() == "+cpuset +pids +io"      # only what was missing
    assert (root / "lab" / "cgroup.subtree_control").read_text() == "+memory +cpu +cpuset +pids +io"
    assert (g / "cgroup.subtree_control").read_text() == ""                          # the guest is a leaf
    assert {n: (g / n).read_text() for n in ("memory.max", "memory.high", "memory.swap.max", "cpu.max", "cpu.weight",
                                             "cpuset.cpus", "cpuset.mems", "pids.max", "io.weight")} == {
        "memory.max": "67108864", "memory.high": "50331648", "memory.swap.max": "16777216", "cpu.max": "150000 100000",
        "cpu.weight": "200", "cpuset.cpus": "1", "cpuset.mems": "0", "pids.max": "64", "io.weight": "default 300"}
    assert gc.read_limits() == gc.expected({"memory": "64M", "memory_high": "48M", "memory_swap": "16M", "cpu": 1.5, "cpu_weight": 200,
                                            "cpuset_cpus": "1", "cpuset_mems": "0", "pids": 64, "io_weight": 300})
    assert gc.stats() == {"memory_current": 4096, "memory_peak": 8192, "pids_current": 2, "cpu_usage_usec": 1234, "oom_kills": 1}
    gc.set_limits({"cpu": 0.5})
    assert {n: (g / n).read_text() for n in ("memory.max", "memory.swap.max", "cpu.max", "cpu.weight", "cpuset.cpus", "pids.max", "io.weight")} == {
        "memory.max": "max", "memory.swap.max": "max", "cpu.max": "50000 100000", "cpu.weight": "100", "cpuset.cpus": "\n",
        "pids.max": "max", "io.weight": "default 100"}
    assert gc.read_limits() == {"cpu": 0.5}


def test_v2_failures_restore_everything(fake_v2):
    lay, root = fake_v2
    gc = cg.GuestCgroup.plan(lay, "/lab", "web1")
    g = root / "lab" / "web1"
    (g / "pids.max").unlink()
    (g / "pids.max").mkdir()                 # a write the "kernel" refuses (EISDIR), late in the order
    with pytest.raises(InvalidInput, match=r"limits.pids of guest web1: the kernel refused '64' in pids.max: Is a directory"):
        gc.create({"memory": "64M", "pids": 64})
    # root and lab keep their controllers: a cgroup is below them (another run's guest may use them)
    assert (root / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (root / "lab" / "cgroup.subtree_control").read_text() == "+memory +pids"
    (g / "pids.max").rmdir()
    (g / "pids.max").write_text("max")
    gc.set_limits({"memory": "64M"})
    (g / "cpu.weight").unlink()
    (g / "cpu.weight").mkdir()
    with pytest.raises(InvalidInput, match=r"limits\.cpu_weight of guest web1: the kernel refused '300'"):
        gc.set_limits({"memory": "32M", "cpu_weight": 300})
    assert (g / "memory.max").read_text() == "67108864"      # put back
    (root / "lab" / "cgroup.controllers").write_text("cpu pids")
    (root / "lab" / "cgroup.subtree_control").write_text("")
    with pytest.raises(InvalidInput, match=r"the cgroup .*/lab is not given the controller memory by its parent"):
        cg.GuestCgroup.plan(lay, "/lab", "web1").create({"memory": "64M"})
    (root / "cgroup.controllers").write_text("cpu pids")
    with pytest.raises(InvalidInput, match=r"limits\.io_weight of guest web1 needs the cgroup controller 'io'"):
        gc.set_limits({"io_weight": 300})
    (root / "lab" / "cgroup.type").write_text("threaded")
    (root / "lab" / "cgroup.controllers").write_text("cpu pids memory")
    with pytest.raises(InvalidInput, match="'threaded', which cannot hold"):
        cg.GuestCgroup.plan(lay, "/lab", "web1").create({"cpu": 1})


def test_auto_parent_is_the_delegated_unit_under_systemd(fake_v2):
    lay, root = fake_v2
    assert cg.resolve_parent(lay, "auto", systemd=True) == {"unified": str(root / "linuxns")}      # no unit cgroup: /linuxns
    (root / "system.slice" / "linuxns-guests.service").mkdir(parents=True)
    assert cg.resolve_parent(lay, "auto", systemd=True) == {"unified": str(root / "system.slice" / "linuxns-guests.service")}
    assert cg.resolve_parent(lay, "auto", systemd=False) == {"unified": str(root / "linuxns")}


def test_v2_create_failure_disables_what_it_enabled(fake_v2):
    lay, root = fake_v2
    shutil.rmtree(str(root / "lab"))
    gc = cg.GuestCgroup.plan(lay, "/new", "web1")      # a new parent and guest: mkdir'ed, so without the kernel's files here
    with pytest.raises(InvalidInput, match=r"the cgroup .*/new is not given the controller memory by its parent \(cgroup.controllers: none\)"):
        gc.create({"memory": "64M"})
    assert not (root / "new").exists()
    assert (root / "cgroup.subtree_control").read_text() == "-memory"     # enabled for it, disabled again


def test_v2_cpuset_must_be_within_the_parents(fake_v2):
    lay, root = fake_v2
    (root / "lab" / "cpuset.cpus.effective").write_text("0")
    gc = cg.GuestCgroup.plan(lay, "/lab", "web1")
    with pytest.raises(InvalidInput, match=r"limits.cpuset_cpus of guest web1: 1 is not within the parent cgroup's CPUs \(0\)"):
        gc.create({"cpuset_cpus": "1"})
    assert (root / "lab" / "cgroup.subtree_control").read_text() == ""


def test_v2_bad_input_touches_nothing(fake_v2):
    lay, root = fake_v2
    gc = cg.GuestCgroup.plan(lay, "/lab", "web1")
    gc.create({"memory": "64M"})
    before = {p: open(p).read() for p in (str(x) for x in root.rglob("*")) if os.path.isfile(p)}
    for key, value in BAD:
        with pytest.raises(InvalidInput, match="limits.%s of guest web1" % key):
            gc.set_limits({key: value} if key != "memory_swap" else {"memory": "1G", key: value})
    assert before == {p: open(p).read() for p in (str(x) for x in root.rglob("*")) if os.path.isfile(p)}


def test_signal_numbers():
    assert cg.signal_number("TERM") == cg.signal_number("SIGTERM") == cg.signal_number(15) == cg.signal_number("15") == signal.SIGTERM
    for bad in ("NOPE", 0, 999, True, "SIG"):
        with pytest.raises(InvalidInput):
            cg.signal_number(bad)
