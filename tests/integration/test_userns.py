"""userns: auto over real ssh against a lab host: unprivileged guests, checked from outside.

One module guest pair (a busybox root guest and a guest without a root), made by one
converged task (check mode, first run, second run); the probes share a playbook run each.
"""

from __future__ import annotations

import os
import shlex
import shutil

import harness
import pytest

pytestmark = pytest.mark.integration

CREATE = "linuxns.guests.namespace_create"
INFO = "linuxns.guests.namespace_info"
EXEC = "linuxns.guests.guest_enter_exec"
MOUNT = "linuxns.guests.namespace_mount"
LINK = "linuxns.guests.netns_link"
CONN = {"ansible_connection": "linuxns.guests.guest", "linuxns_guest": "un-a"}
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
    harness.busybox_tree(root, ("etc", "proc", "dev", "sys", "tmp", "data", "shared"), passwd=True)
    os.chmod(base, 0o755)  # the guest's root user (an unprivileged host uid) walks to its root
    os.chmod(root + "/tmp", 0o1777)
    for d in ("data", "shared"):  # host folders owned by host root, bound into the guest below
        os.makedirs("%s/host-%s" % (base, d))
        with open("%s/host-%s/hostfile" % (base, d), "w") as f:
            f.write("host\n")
    common = {"userns_pool": POOL, "table_dir": tables}
    task = {CREATE: dict(common, guests=[{"name": "un-a", "userns": "auto", "root": root},
                                         {"name": "un-b", "userns": "auto", "userns_size": 1000, "namespaces": ["uts", "pid"]}])}
    try:
        yield ansible.converge(task), root, tables, common
    finally:
        try:
            ansible.playbook([{CREATE: dict(common, guests=["un-a", "un-b", "un-c"], state="absent", stop_timeout=2)}])
            # the link's host end went with the guest's network namespace
            assert "vh-un-a" not in harness.lab_exec(lab, "lab1", ["ip", "-o", "link"]).stdout
        finally:
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
    # root inside; its root is idmapped (userns_root: auto), so its /etc (host root's on disk) is guest root's
    assert inside["stdout_lines"] == ["0", "0"], inside.result
    assert first["un-a"]["userns_root_done"] == "idmap" and first["un-b"]["userns_root_done"] is None
    init_a = first["un-a"]["init_pid"]
    # from outside: on disk the file is host root's (idmapped), through the guest's root it is the guest's range
    assert lab_exec("lab1", ["stat", "-c", "%u:%g", root + "/tmp/made", "/proc/%d/root/tmp/made" % init_a]).stdout.split() == [
        "0:0", "%d:%d" % (START, START)]
    info = run.task("info")["guests"][0]
    assert info["userns_range"] == want["un-a"] and info["userns"] == "auto" and info["userns_root_done"] == "idmap"
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


def test_mount_link_exec_and_connection_work_in_the_guest(made, ansible, lab_exec):
    """namespace_mount (a plain bind and an idmapped one), netns_link, guest_enter_exec and the
    connection each work against a ``userns: auto`` guest: check mode, idempotent, checked outside."""
    _converged, root, tables, _common = made
    base = os.path.dirname(root)
    mounts = {MOUNT: {"guest": "un-a", "table_dir": tables, "mounts": [
        {"path": "/data", "src": base + "/host-data", "fstype": "bind", "opts": "idmap"},
        {"path": "/shared", "src": base + "/host-shared", "fstype": "bind", "opts": "ro"}]}}
    link = {LINK: {"guest": "un-a", "ifname": "eth0", "addresses": ["198.19.160.2/30"],
                   "peer": {"ifname": "vh-un-a", "addresses": ["198.19.160.1/30"]}}}
    tasks = [dict(mounts, name="mounts"), dict(link, name="link")]
    runs = [ansible.playbook(tasks, check=True), ansible.playbook(tasks), ansible.playbook(tasks)]
    for name in ("mounts", "link"):
        check, first, second = (r.task(name) for r in runs)
        assert check.changed and first.changed and not second.changed, (name, check.result, first.result, second.result)
    probe = ("id -u; cat /proc/self/uid_map; stat -c '%u:%g' /data/hostfile /shared/hostfile; touch /data/by-guest;"
             " touch /shared/nope 2>/dev/null; echo shared=$?; ip -o addr show eth0 | grep -c 198.19.160.2")
    run = ansible.playbook([
        {"name": "exec", EXEC: {"guest": "un-a", "cmd": "sh -c %s" % shlex.quote(probe)}},
        {"name": "exec check", EXEC: {"guest": "un-a", "argv": ["touch", "/tmp/check"]}, "check_mode": True},
        {"name": "conn", "ansible.builtin.raw": "id -u; cat /proc/self/uid_map; touch /tmp/by-conn", "vars": CONN},
        {"name": "info", INFO: {"name": "un-a"}},
    ])
    want_map = ["0", str(START), "65536"]
    out = run.task("exec")["stdout_lines"]
    # root inside, the guest's map; the idmapped bind shows the host's root files as the guest's root
    # (and guest root writes them as host root), the plain bind shows them as nobody (65534) and refuses
    assert out[0] == "0" and out[1].split() == want_map and out[2:4] == ["0:0", "65534:65534"], out
    assert out[4:] == ["shared=1", "1"], out
    assert not os.path.exists(root + "/tmp/check")  # check mode ran nothing
    conn = run.task("conn")["stdout_lines"]
    assert conn[0] == "0" and conn[1].split() == want_map, conn
    info = run.task("info")["guests"][0]
    owners = lab_exec("lab1", ["stat", "-c", "%u:%g", base + "/host-data/by-guest", root + "/tmp/by-conn",
                               "/proc/%d/root/tmp/by-conn" % info["init_pid"]]).stdout.split()
    assert owners == ["0:0", "0:0", "%d:%d" % (START, START)], owners
    # from outside: the guest's eth0 lives in the guest's netns, owned by the guest's user namespace
    assert info["namespaces"]["net"]["owner_user_ns"] == info["namespaces"]["user"]["inode"]
    addrs = lab_exec("lab1", ["nsenter", "--net=/run/linuxns/guests/un-a/ns/net", "ip", "-o", "addr", "show", "eth0"]).stdout
    assert "198.19.160.2/30" in addrs
    mi = lab_exec("lab1", ["cat", "/proc/%d/mountinfo" % info["init_pid"]]).stdout
    data = [line for line in mi.splitlines() if line.split()[4] == "/data"]
    assert len(data) == 1 and "idmapped" in data[0].split()[5].split(","), data


def test_the_range_survives_a_simulated_reboot(made, ansible, lab_exec):
    """Guest un-r in a state folder of its own: the 'reboot' kills its processes and wipes that
    folder (as a reboot wipes /run); made again, it gets the range it had, kept in the table folder."""
    _converged, _root, tables, common = made
    state = "/run/linuxns-unr"
    task = {CREATE: dict(common, name="un-r", userns="auto", userns_size=1000, namespaces=["uts", "pid"], state_dir=state)}
    want = {"start": START + 65536 + 1000, "size": 1000, "source": "userns_pool"}  # after un-a's and un-b's
    try:
        made_r = ansible.playbook([dict(task, name="make")]).task("make")["guest"]
        assert made_r["userns_range"] == want, made_r
        assert lab_exec("lab1", ["cat", tables + "/un-r/userns"]).stdout.split() == [str(want["start"]), "1000", "userns_pool"]
        lab_exec("lab1", ["sh", "-c", "kill -9 %d; umount -R -l %s; rm -rf %s" % (made_r["init_pid"], state, state)])
        run = ansible.playbook([dict(task, name="again"), dict(task, name="once more")])
        again = run.task("again")
        assert again.changed and again["guest"]["userns_range"] == want, again.result
        assert again["guest"]["init_pid"] != made_r["init_pid"]
        assert status_ids(lab_exec, again["guest"]["init_pid"]) == (want["start"],) * 2
        assert not run.task("once more").changed
    finally:
        ansible.playbook([{CREATE: dict(common, name="un-r", state="absent", purge=True, stop_timeout=2, state_dir=state)}])
        lab_exec("lab1", ["sh", "-c", "umount -R -l %s 2>/dev/null; rm -rf %s" % (state, state)], check=False)


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
