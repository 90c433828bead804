"""The guest engine's cgroup wiring, run directly as root: every guest gets a cgroup below
this test's own cgroup ($LINUXNS_CGROUP_PARENT, relative: tests/unit/conftest.py), its
processes land in it, its limits change in place, removal and rollback leave none."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import enter, entry, guest_spec, guests
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, InvalidInput

pytestmark = pytest.mark.unit


def one(r, check=False, **params):
    return guests.ensure_guests(r, [params], check)["results"][0]


def parent() -> str:
    return os.environ["LINUXNS_CGROUP_PARENT"]


def own_dirs(rel: str) -> set:
    from lab import own_cgroup_dirs

    return set(own_cgroup_dirs(rel).values())


def dirs_of(pid) -> set:
    from lab import own_cgroup_dirs

    return set(own_cgroup_dirs("", self_cgroup="/proc/%s/cgroup" % pid).values())


def key_dir(paths: dict, controller: str) -> str:
    return next(d for k, d in paths.items() if controller in k.split(","))


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@pytest.mark.parametrize("value, want", [
    ("auto", "auto"), ("/", "/"), ("/a//b/", "/a/b"), ("lab/x", "lab/x"), ("x/", "x"),
])
def test_parse_cgroup_parent(value, want):
    assert guest_spec.parse_cgroup_parent(value, "cgroup_parent") == want


@pytest.mark.parametrize("value, msg", [
    ("", "must be auto"), ("a/../b", "'..'"), ("./a", "'.'"), ("a\nb", "control characters"), (3, "must be auto"),
])
def test_parse_cgroup_parent_refuses(value, msg):
    with pytest.raises(InvalidInput, match="cgroup_parent") as err:
        guest_spec.parse_cgroup_parent(value, "cgroup_parent")
    assert msg in err.value.msg


def test_default_parent_from_the_environment(monkeypatch):
    monkeypatch.setenv(guest_spec.CGROUP_PARENT_ENV, "some/where/")
    assert guest_spec.default_cgroup_parent() == "some/where"
    monkeypatch.delenv(guest_spec.CGROUP_PARENT_ENV)
    assert guest_spec.default_cgroup_parent() == "auto"
    monkeypatch.setenv(guest_spec.CGROUP_PARENT_ENV, "../up")
    with pytest.raises(InvalidInput, match=r"\$LINUXNS_CGROUP_PARENT"):
        guest_spec.default_cgroup_parent()


def test_guest_processes_land_in_its_cgroup_and_removal_leaves_none(unit_registry):
    r = unit_registry
    g = one(r, name="cg1", namespaces=["mnt", "uts", "pid", "cgroup"], limits={"pids": 32})["guest"]
    paths = g["cgroup"]["paths"]
    assert g["cgroup"]["parent"] == parent() and g["cgroup_parent"] == parent()
    assert set(paths.values()) == own_dirs(parent() + "/cg1")
    assert read(os.path.join(key_dir(paths, "pids"), "pids.max")) == "32"
    assert dirs_of(g["init_pid"]) == set(paths.values())  # the reaper was born in it
    meta = r.load("cg1")
    # The one enter path (guest_enter_exec, the connection): the joiner is in the cgroup before any
    # setns, so the program is too; the guest's cgroup namespace was rooted at its cgroup.
    rfd, wfd = os.pipe()
    spawned = enter.spawn_in_guest(meta, None, ["/bin/sh", "-c", "echo $PPID; cat /proc/self/cgroup"], {"PATH": "/usr/bin:/bin"},
                                   (0, wfd, 2))
    os.close(wfd)
    msgs = entry.wait_spawned(spawned)
    out = enter.read_all(rfd).decode().split("\n")
    os.close(rfd)
    assert any("exit" in m for m in msgs), msgs
    assert [line for line in out[1:] if line] and all(line.endswith(":/") for line in out[1:] if line), out
    rm = one(r, name="cg1", state="absent")
    assert rm["action"] == "remove"
    assert not [d for d in paths.values() if os.path.exists(d)]


def test_limits_change_in_place_compared_with_the_kernel(unit_registry):
    r = unit_registry
    g = one(r, name="cg2", namespaces=["pid"], limits={"pids": 10})["guest"]
    pids_max = os.path.join(key_dir(g["cgroup"]["paths"], "pids"), "pids.max")
    assert not one(r, name="cg2", namespaces=["pid"], limits={"pids": 10})["changed"]
    assert not one(r, name="cg2", namespaces=["pid"])["changed"]  # not given: kept
    with open(pids_max, "w") as f:  # changed behind our back: the kernel's value is what counts
        f.write("12")
    predicted = guests.ensure_guests(r, [{"name": "cg2", "namespaces": ["pid"], "limits": {"pids": 10}}], True)
    assert predicted["changed"] and predicted["diff"]["before"]["cg2"]["limits"] == {"pids": 12}
    assert read(pids_max) == "12"  # check mode changed nothing
    res = one(r, name="cg2", namespaces=["pid"], limits={"pids": 10})
    assert res["action"] == "update" and read(pids_max) == "10" and res["guest"]["init_pid"] == g["init_pid"]
    res = one(r, name="cg2", namespaces=["pid"], limits={})
    assert res["action"] == "update" and read(pids_max) == "max" and res["guest"]["limits"] == {}
    assert not one(r, name="cg2", namespaces=["pid"], limits={})["changed"]
    with pytest.raises(GuestError, match="recreate"):
        one(r, name="cg2", namespaces=["pid"], cgroup_parent=parent() + "/other")
    res = one(r, name="cg2", namespaces=["pid"], cgroup_parent=parent() + "/other", recreate=True)
    assert res["action"] == "recreate"
    assert set(res["guest"]["cgroup"]["paths"].values()) == own_dirs(parent() + "/other/cg2")
    assert not [d for d in g["cgroup"]["paths"].values() if os.path.exists(d)]  # the old one is gone
    one(r, name="cg2", namespaces=["pid"], state="absent")
    for d in own_dirs(parent() + "/other"):
        os.rmdir(d)


def test_bad_limits_name_guest_and_parameter(unit_registry):
    r = unit_registry
    for limits, word in (({"bogus": 1}, "bogus"), ({"cpu": 0}, "cpu"), ({"pids": -3}, "pids"), ("64M", "dict")):
        with pytest.raises(InvalidInput) as err:
            one(r, name="cgbad", limits=limits)
        assert "cgbad" in err.value.msg and "limits" in err.value.msg and word in err.value.msg, err.value.msg
    assert not os.path.exists(r.guest_dir("cgbad"))
    assert not [d for d in own_dirs(parent() + "/cgbad") if os.path.exists(d)]


def test_a_failed_creation_removes_the_cgroup(unit_registry):
    r = unit_registry
    with pytest.raises(GuestError, match="cgfail"):
        one(r, name="cgfail", namespaces=["mnt", "pid"], init=["/nonexistent/init"], limits={"pids": 8})
    assert not os.path.exists(r.guest_dir("cgfail"))
    assert not [d for d in own_dirs(parent() + "/cgfail") if os.path.exists(d)]


def test_info_shows_the_cgroup(unit_registry):
    from ansible_collections.linuxns.guests.plugins.module_utils import guest_info

    r = unit_registry
    one(r, name="cg3", namespaces=["pid"], limits={"pids": 20})
    view = guest_info.info(r, ["cg3"])["guests"][0]["cgroup"]
    assert view["limits"] == {"pids": 20} and view["pids_current"] == 1 and view["frozen"] is False
    assert view["version"] in ("v1", "v2", "hybrid") and "error" not in view
    json.dumps(view)  # a module can return it
    one(r, name="cg3", state="absent")


def test_a_cgroup_with_processes_of_others_is_refused_and_left_alone(unit_registry):
    """Two hosts sharing one cgroupfs (lab hosts) or two state folders: a guest whose cgroup
    exists with processes in it is not created, and that cgroup and its processes stay."""
    import subprocess

    from ansible_collections.linuxns.guests.plugins.module_utils import cgroups

    r = unit_registry
    other = cgroups.GuestCgroup.plan(cgroups.detect(), parent(), "cgtaken")
    other.create({"pids": 4})
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        other.join(sleeper.pid)
        with pytest.raises(GuestError, match=r"cgtaken.*already exists and has processes"):
            one(r, name="cgtaken", namespaces=["pid"])
        assert sleeper.poll() is None and other.pids() == [sleeper.pid]
        assert not os.path.exists(r.guest_dir("cgtaken"))
    finally:
        other.remove()
        sleeper.wait()
    assert not other.exists()


def test_check_mode_predicts_a_cpuset_outside_the_parents(unit_registry):
    """A new guest asking for CPUs its cgroup parent does not have: check mode says so, as the
    real run would, and makes nothing."""
    from lab import own_cgroup_dirs

    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPUs")
    r = unit_registry
    rel = parent() + "/narrow"
    narrow = key_dir(own_cgroup_dirs(rel), "cpuset")
    base, root = os.path.dirname(narrow), os.path.dirname(os.path.dirname(narrow))
    made = [d for d in (base, narrow) if not os.path.isdir(d)]
    try:
        for d, cpus in ((base, read(root + "/cpuset.cpus")), (narrow, "0")):
            if d in made:
                os.mkdir(d)
                with open(d + "/cpuset.mems", "w") as f:
                    f.write(read(root + "/cpuset.mems"))
            with open(d + "/cpuset.cpus", "w") as f:
                f.write(cpus)
        with pytest.raises(InvalidInput, match=r"limits.cpuset_cpus of guest cgnarrow: 1 is not within the parent cgroup's CPUs \(0\)"):
            one(r, check=True, name="cgnarrow", cgroup_parent=rel, limits={"cpuset_cpus": "1"})
        assert not os.path.exists(r.guest_dir("cgnarrow")) and not os.path.exists(narrow + "/cgnarrow")
    finally:
        for d in reversed(made):
            os.rmdir(d)


def test_a_v1_cpuset_cgroup_gets_its_cpus_from_the_kernel_at_mkdir_not_written_per_guest(unit_registry, monkeypatch):
    """The guests' parent in a v1 cpuset hierarchy has cgroup.clone_children 1, so the kernel gives
    each new guest cgroup the parent's cpus and mems: nothing is written into the guest's cpuset
    files (each such write has the kernel check every sibling: slow at thousands of guests)."""
    from ansible_collections.linuxns.guests.plugins.module_utils import cgroups, registry

    written = []
    real = cgroups._write
    monkeypatch.setattr(cgroups, "_write", lambda path, text: written.append(path) or real(path, text))
    monkeypatch.setattr(cgroups, "_CLONING", set())
    one(unit_registry, name="cs-a", namespaces=["uts"])
    one(unit_registry, name="cs-b", namespaces=["uts"])
    paths = registry.Registry.load(unit_registry, "cs-b").cgroup["paths"]
    cpuset = next((d for k, d in paths.items() if k != "unified" and "cpuset" in k.split(",")), None)
    if cpuset is None:
        pytest.skip("no v1 cpuset hierarchy here")
    pdir = os.path.dirname(cpuset)
    with open(os.path.join(pdir, "cgroup.clone_children")) as f:
        assert f.read().strip() == "1"
    for name in ("cpuset.cpus", "cpuset.mems"):
        with open(os.path.join(cpuset, name)) as f, open(os.path.join(pdir, name)) as g:
            mine = f.read().strip()
            assert mine and mine == g.read().strip()
    assert not [p for p in written if os.path.basename(p) in ("cpuset.cpus", "cpuset.mems") and "cs-" in p]


def test_a_v1_cpuset_parent_another_run_made_and_did_not_fill_yet_is_filled_first(unit_registry, monkeypatch):
    """The guests' parent cgroup is there, made a moment ago by another run (or by another thread
    of this one, guests made together) that has not yet given it CPUs: the guest's cgroup would
    get none from it, and the guest's first process could not join it (ENOSPC).  The parent
    is filled first, from its own parent."""
    from ansible_collections.linuxns.guests.plugins.module_utils import cgroups

    monkeypatch.setattr(cgroups, "_FILLED", {})
    monkeypatch.setattr(cgroups, "_CLONING", set())
    one(unit_registry, name="cf-a", namespaces=["uts"])  # the unit's parent made, and where its cpuset is
    paths = unit_registry.load("cf-a").cgroup["paths"]
    cpuset = next((d for k, d in paths.items() if k != "unified" and "cpuset" in k.split(",")), None)
    if cpuset is None:
        pytest.skip("no v1 cpuset hierarchy here")
    raced = os.path.join(os.path.dirname(cpuset), "raced")
    os.mkdir(raced)  # the other run's mkdir; the kernel may have given it CPUs: taken back, as before its fill
    try:
        for name in ("cpuset.cpus", "cpuset.mems"):
            with open(os.path.join(raced, name), "w") as f:
                f.write("\n")
            with open(os.path.join(raced, name)) as f:
                assert f.read().strip() == ""
        g = one(unit_registry, name="cf-b", namespaces=["pid", "uts"], cgroup_parent=parent() + "/raced")
        assert g["action"] == "create"
        mine = next(d for k, d in g["guest"]["cgroup"]["paths"].items() if k != "unified" and "cpuset" in k.split(","))
        assert os.path.dirname(mine) == raced
        for name in ("cpuset.cpus", "cpuset.mems"):
            with open(os.path.join(os.path.dirname(raced), name)) as f:
                want = f.read().strip()
            for d in (raced, mine):
                with open(os.path.join(d, name)) as f:
                    assert f.read().strip() == want != "", (d, name)
        with open(os.path.join(mine, "cgroup.procs")) as f:
            assert [int(pid) for pid in f.read().split()] == [g["guest"]["init_pid"]]
        one(unit_registry, name="cf-b", state="absent")
        # The folder removed and made again, empty, by another run: this process saw it filled,
        # but that was another folder (another inode).
        for d in own_dirs(parent() + "/raced"):
            os.rmdir(d)
        os.mkdir(raced)
        for name in ("cpuset.cpus", "cpuset.mems"):
            with open(os.path.join(raced, name), "w") as f:
                f.write("\n")
        g = one(unit_registry, name="cf-c", namespaces=["pid", "uts"], cgroup_parent=parent() + "/raced")
        assert g["action"] == "create" and g["guest"]["init_pid"]
        with open(os.path.join(raced, "cpuset.cpus")) as f:
            assert f.read().strip()
        one(unit_registry, name="cf-c", state="absent")
    finally:
        for d in own_dirs(parent() + "/raced"):
            if os.path.isdir(d):
                os.rmdir(d)


def test_a_v1_cpuset_cgroup_is_emptied_of_cpus_before_its_rmdir(unit_registry, monkeypatch):
    """A removed guest's v1 cpuset cgroup has no CPUs left when it is removed: the kernel's end of a
    cpuset that still has CPUs (and sched_load_balance 1, as every new one) rebuilds the scheduler
    domains, a walk of every cpuset on the host in a worker holding the cgroup lock (thousands of
    guests: seconds of kernel time, the next removals waiting).  What the rmdir meets is read from
    the kernel's own file just before it.  While a process is in the cgroup, the kernel refuses
    to empty it (the cpus stay)."""
    from ansible_collections.linuxns.guests.plugins.module_utils import cgroups, registry

    one(unit_registry, name="cs-rm", namespaces=["uts", "pid"])
    paths = registry.Registry.load(unit_registry, "cs-rm").cgroup["paths"]
    cpuset = next((d for k, d in paths.items() if k != "unified" and "cpuset" in k.split(",")), None)
    if cpuset is None:
        pytest.skip("no v1 cpuset hierarchy here")
    with open(os.path.join(cpuset, "cgroup.procs")) as f:
        assert f.read().split()  # the guest's reaper is in it
    with pytest.raises(OSError), open(os.path.join(cpuset, "cpuset.cpus"), "w") as f:
        f.write("\n")  # a cpuset with a process: the kernel refuses to empty it
    with open(os.path.join(cpuset, "cpuset.cpus")) as f:
        assert f.read().strip()
    met = {}
    real = os.rmdir

    def rmdir(path, *args, **kw):
        if path == cpuset:
            with open(os.path.join(path, "cpuset.cpus")) as f:
                met[path] = f.read().strip()
        return real(path, *args, **kw)

    monkeypatch.setattr(cgroups.os, "rmdir", rmdir)
    one(unit_registry, name="cs-rm", state="absent")
    monkeypatch.setattr(cgroups.os, "rmdir", real)
    assert met == {cpuset: ""}  # before: {cpuset: '0-1'}
    assert not os.path.exists(cpuset)
