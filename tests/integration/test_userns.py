"""userns: auto over real ssh against a lab host: unprivileged guests, checked from outside.

One module guest pair (a busybox root guest and a guest without a root), made by one
converged task (check mode, first run, second run); the probes share a playbook run each.
"""

from __future__ import annotations

import os
import shutil

import harness
import pytest

pytestmark = pytest.mark.integration

CREATE = "linuxns.guests.namespace_create"
INFO = "linuxns.guests.namespace_info"
EXEC = "linuxns.guests.guest_enter_exec"
POOL = "2000000000:200000"  # above every id of the lab host's /etc/passwd and /etc/group
START = 2000000000


def status_ids(lab_exec, pid: int) -> tuple:
    """Real uid and gid of ``pid`` as the lab host sees it (/proc/PID/status, from outside the guest)."""
    text = lab_exec("lab1", ["cat", "/proc/%d/status" % pid]).stdout
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


@pytest.fixture(scope="module")
def made(lab, ansible):
    """The converged creation of guests un-a (busybox root) and un-b; removed (and purged) at the end."""
    base = "/var/tmp/linuxns-userns-%d" % os.getpid()
    root, tables = base + "/root", base + "/tables"
    harness.busybox_tree(root, ("etc", "proc", "dev", "sys", "tmp"), passwd=True)
    os.chmod(base, 0o755)  # the guest's root user (an unprivileged host uid) walks to its root
    os.chmod(root + "/tmp", 0o1777)
    common = {"userns_pool": POOL, "table_dir": tables}
    task = {CREATE: dict(common, guests=[{"name": "un-a", "userns": "auto", "root": root},
                                         {"name": "un-b", "userns": "auto", "userns_size": 1000, "namespaces": ["uts", "pid"]}])}
    try:
        yield ansible.converge(task), root, tables, common
    finally:
        ansible.playbook([{CREATE: dict(common, guests=["un-a", "un-b", "un-c"], state="absent", stop_timeout=2)}])
        shutil.rmtree(base, ignore_errors=True)


def test_unprivileged_guests_from_outside_and_inside(made, ansible, lab_exec):
    converged, root, tables, common = made
    first = {r["name"]: r["guest"] for r in converged.first["guests"]}
    predicted = {r["name"]: r["guest"]["userns_range"] for r in converged.check["guests"]}
    want = {"un-a": {"start": START, "size": 65536, "source": "userns_pool"},
            "un-b": {"start": START + 65536, "size": 1000, "source": "userns_pool"}}
    assert {n: g["userns_range"] for n, g in first.items()} == predicted == want  # check mode predicted the ranges
    assert {n: r["guest"]["userns_range"] for n, r in ((r["name"], r) for r in converged.second["guests"])} == want
    for name, g in first.items():
        # the guest's init (reaper) runs as the first id of its range on the host
        assert status_ids(lab_exec, g["init_pid"]) == (want[name]["start"],) * 2, name
        uid_map = lab_exec("lab1", ["cat", "/proc/%d/uid_map" % g["init_pid"]]).stdout.split()
        assert uid_map == ["0", str(want[name]["start"]), str(want[name]["size"])], name
        kept = lab_exec("lab1", ["cat", "%s/%s/userns" % (tables, name)]).stdout.split()
        assert kept == [str(want[name]["start"]), str(want[name]["size"]), "userns_pool"], name
    run = ansible.playbook([
        {"name": "inside", EXEC: {"guest": "un-a", "cmd": "sh -c 'id -u; touch /tmp/made; touch /etc/nope 2>/dev/null; echo $?'"}},
        {"name": "info", INFO: {"name": "un-a"}},
        {"name": "overlap", CREATE: dict(common, name="un-c", namespaces=["user"], uid_map=["0 %d 10" % (START + 65530)]),
         "ignore_errors": True},
        {"name": "exhausted", CREATE: dict(common, name="un-c", userns="auto", userns_size=200000), "ignore_errors": True},
        {"name": "both", CREATE: dict(common, name="un-c", userns="auto", gid_map=["0 0 1"]), "ignore_errors": True},
    ])
    inside = run.task("inside")
    assert inside["stdout_lines"] == ["0", "1"], inside.result  # root inside; the host's /etc of its root is not its own
    assert lab_exec("lab1", ["stat", "-c", "%u:%g", root + "/tmp/made"]).stdout.strip() == "%d:%d" % (START, START)
    info = run.task("info")["guests"][0]
    assert info["userns_range"] == want["un-a"] and info["userns"] == "auto"
    userns_ino = info["namespaces"]["user"]["inode"]
    assert all(ns["owner_user_ns"] == userns_ino and ns["owner_uid"] == 0 for t, ns in info["namespaces"].items() if t != "user")
    overlap, exhausted, both = run.task("overlap"), run.task("exhausted"), run.task("both")
    assert overlap.failed and "uid_map: guest 'un-c': host ids %d-%d overlap the userns range %d-%d that guest 'un-a' keeps" % (
        START + 65530, START + 65539, START, START + 65535) in overlap["msg"], overlap.result
    assert exhausted.failed and "userns_size: guest 'un-c': the userns pool (userns_pool, %d-%d) has no 200000 free" % (
        START, START + 199999) in exhausted["msg"], exhausted.result
    assert both.failed and "userns: auto allocates the guest's uid_map and gid_map" in both["msg"], both.result
    # nothing changed by them: no guest, no kept range
    state = lab_exec("lab1", ["sh", "-c", "ls /run/linuxns/guests; ls %s" % tables]).stdout.split()
    assert "un-c" not in state


def test_removal_with_purge_releases_the_range(made, ansible, lab_exec):
    _converged, _root, tables, common = made
    run = ansible.playbook([
        {"name": "gone", CREATE: dict(common, name="un-a", state="absent", purge=True, stop_timeout=2)},
        {"name": "next", CREATE: dict(common, name="un-c", userns="auto", namespaces=["uts"])},
        {"name": "gone-c", CREATE: dict(common, name="un-c", state="absent", purge=True)},
    ])
    assert tables + "/un-a/userns" in run.task("gone")["purged"]
    assert run.task("next")["guest"]["userns_range"]["start"] == START  # un-a's range, free again
    assert lab_exec("lab1", ["sh", "-c", "ls %s" % tables]).stdout.split() == ["un-b"]
