"""namespace_mount over real ssh against a lab host.

Every case runs check mode, then the real run twice (``converge``) and is checked from
outside the guest: ``findmnt --task INIT`` (the guest's own mountinfo), ``nsenter
--mount=PIN`` for what the guest sees, the lab host's own mount table for what it must
not see, and the guest's table file.  Cases are batched in the list form so the module
stays well under a minute and a half.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration

MOD = "linuxns.guests.namespace_mount"
CREATE = "linuxns.guests.namespace_create"
HOST = "lab1"
BASE = "/tmp/lnsm-it"           # the lab host's private /tmp: invisible to the machine and lab2
ROOT = BASE + "/root"            # the guest's root
HIDDEN = BASE + "/hidden"        # a host folder the guest cannot see
VISIBLE = ROOT + "/srv/shared"   # a host folder inside the guest's root
TABLES = "/run/lnsm-it-tables"
MIRROR = BASE + "/guests"        # the shared-subtree mirror
GUEST = "mg"
APPLETS = ("sh", "ls", "cat", "echo", "sleep", "touch", "stat", "true")


def sh(lab_exec, script, check=True):
    return lab_exec(HOST, ["sh", "-c", script], check=check)


def meta(lab_exec, name=GUEST):
    return json.loads(lab_exec(HOST, ["cat", "/run/linuxns/guests/%s/meta.json" % name]).stdout)


def guest_mounts(lab_exec, name=GUEST):
    """The guest's mount table as findmnt shows it from outside: target -> row (top mount)."""
    m = meta(lab_exec, name)
    out = lab_exec(HOST, ["findmnt", "-J", "-l", "--task", str(m["init_pid"]), "-o", "ID,TARGET,SOURCE,FSTYPE,OPTIONS,PROPAGATION"]).stdout
    rows = {}
    for row in json.loads(out)["filesystems"]:
        rows[row["target"]] = row  # later rows are mounted on top
    return rows


def in_guest(lab_exec, *argv, name=GUEST, check=False):
    pin = "/run/linuxns/guests/%s/ns/mnt" % name
    return lab_exec(HOST, ["nsenter", "--mount=" + pin, "/bin/busybox", *argv], check=check)


def table(lab_exec, name=GUEST):
    return sh(lab_exec, "cat %s/%s/fstab 2>/dev/null || true" % (TABLES, name)).stdout


def host_mount_targets(lab_exec):
    return {line.split(" ")[4] for line in sh(lab_exec, "cat /proc/self/mountinfo").stdout.splitlines()}


def mount_task(name="mount", **args):
    args.setdefault("guest", GUEST)
    args.setdefault("table_dir", TABLES)
    return {"name": name, MOD: args}


@pytest.fixture(scope="module")
def guest(lab, ansible):
    """Guest mg (root with busybox, a symlink /evil -> /etc) and guest mg-nomnt (uts only) on lab1."""
    from harness import lab_exec as run

    def x(script):
        return run(lab, HOST, ["sh", "-c", script], check=True)

    applets = " ".join("ln -s busybox %s/bin/%s;" % (ROOT, a) for a in APPLETS)
    x(
        "set -e; rm -rf %(b)s; mkdir -p %(r)s/bin %(r)s/etc %(r)s/srv/shared %(h)s %(b)s/rsrc/sub %(b)s/lower %(b)s/ovl/up %(b)s/ovl/work;"
        "cp /usr/bin/busybox %(r)s/bin/busybox; %(a)s ln -s /etc %(r)s/evil;"
        "echo hidden > %(h)s/file; echo visible > %(v)s/file; echo lower > %(b)s/lower/file;"
        "mount -t tmpfs -o size=1m rsrc-sub %(b)s/rsrc/sub; echo sub > %(b)s/rsrc/sub/file"
        % {"b": BASE, "r": ROOT, "h": HIDDEN, "v": VISIBLE, "a": applets}
    )
    try:
        ansible.playbook([{CREATE: {"guests": [{"name": GUEST, "root": ROOT}, {"name": GUEST + "-nomnt", "namespaces": ["uts"]}]}}], hosts=HOST)
        yield
    finally:
        ansible.playbook([{CREATE: {"guests": [{"name": GUEST}, {"name": GUEST + "-nomnt"}], "state": "absent", "stop_timeout": 2}}], hosts=HOST)
        run(lab, HOST, ["sh", "-c", "mount --make-rprivate %s 2>/dev/null && umount -R -l %s; umount %s/rsrc/sub; rm -rf %s %s"
                        % (MIRROR, MIRROR, BASE, BASE, TABLES)], check=False)


def test_mounts_converge_verified_from_outside(guest, converge, lab_exec):
    host_before = host_mount_targets(lab_exec)
    mounts = [
        {"path": "/data", "fstype": "bind", "src": HIDDEN, "opts": "ro,nosuid"},
        {"path": "/vis", "fstype": "bind", "src": VISIBLE},
        {"path": "/r", "fstype": "rbind", "src": BASE + "/rsrc"},
        {"path": "/t", "fstype": "tmpfs", "opts": "size=2m,mode=0710,nodev"},
        {"path": "/proc2", "fstype": "proc", "opts": "nosuid,nodev,noexec", "state": "ephemeral"},
        {"path": "/ov", "fstype": "overlay", "opts": "lowerdir=%s/lower,upperdir=%s/ovl/up,workdir=%s/ovl/work" % (BASE, BASE, BASE)},
        {"path": "/sh", "fstype": "tmpfs", "propagation": "shared"},
    ]
    c = converge(mount_task(mounts=mounts), hosts=HOST, diff=True)
    assert c.check.changed and c.first.changed
    assert [r["action"] for r in c.check["mounts"]] == ["mount"] * 7
    assert [r["action"] for r in c.second["mounts"]] == ["none"] * 7
    assert "mount: %s on /data type bind (ro,nosuid)" % HIDDEN in c.first["diff"]["after"]
    assert "table: tmpfs /t tmpfs rw,nodev,size=2m,mode=0710 0 0" in c.first["diff"]["after"]
    rows = guest_mounts(lab_exec)
    assert rows["/data"]["options"].startswith("ro,nosuid")
    assert rows["/t"]["fstype"] == "tmpfs" and "size=2048k" in rows["/t"]["options"] and "mode=710" in rows["/t"]["options"]
    assert rows["/proc2"]["fstype"] == "proc" and rows["/ov"]["fstype"] == "overlay"
    assert rows["/r/sub"]["fstype"] == "tmpfs"  # rbind took the submount along
    assert rows["/sh"]["propagation"] == "shared" and rows["/t"]["propagation"] == "private"
    ids = {t: r["id"] for t, r in rows.items()}
    assert len([t for t in rows if t == "/data"]) == 1
    # what the guest sees
    assert in_guest(lab_exec, "cat", "/data/file").stdout == "hidden\n"
    assert in_guest(lab_exec, "ls", HIDDEN).returncode != 0  # the host folder itself stays invisible
    assert in_guest(lab_exec, "cat", "/vis/file").stdout == "visible\n"
    assert in_guest(lab_exec, "cat", "/r/sub/file").stdout == "sub\n"
    assert in_guest(lab_exec, "cat", "/ov/file").stdout == "lower\n"
    assert in_guest(lab_exec, "touch", "/data/new").returncode != 0  # read-only
    # proc of the guest's pid namespace: its init is 1 and there are only a few processes
    pids = [p for p in in_guest(lab_exec, "ls", "/proc2").stdout.split() if p.isdigit()]
    assert "1" in pids and len(pids) < 10
    # invisible on the lab host, and the table holds the mounted (not the ephemeral) ones
    assert host_mount_targets(lab_exec) == host_before
    lines = table(lab_exec).splitlines()
    assert "%s /data bind ro,nosuid 0 0" % HIDDEN in lines and not any(" /proc2 " in line for line in lines)
    assert "tmpfs /sh tmpfs rw,x-linuxns.propagation=shared 0 0" in lines

    # ro remount of the tmpfs, a bigger size, and propagation changed in place (same mount ids)
    c = converge(mount_task(mounts=[{"path": "/t", "opts": "ro,nodev,size=4m,mode=0710", "state": "remounted"},
                                    {"path": "/vis", "fstype": "bind", "src": VISIBLE, "propagation": "unbindable"},
                                    {"path": "/sh", "fstype": "tmpfs", "propagation": "private"}]), hosts=HOST)
    assert [r["action"] for r in c.first["mounts"]] == ["remount"] * 3
    rows = guest_mounts(lab_exec)
    assert rows["/t"]["id"] == ids["/t"] and rows["/t"]["options"].startswith("ro,nodev") and "size=4096k" in rows["/t"]["options"]
    assert rows["/sh"]["id"] == ids["/sh"] and rows["/sh"]["propagation"] == "private"
    assert rows["/vis"]["id"] == ids["/vis"] and "unbindable" in rows["/vis"]["propagation"]
    assert in_guest(lab_exec, "touch", "/t/x").returncode != 0

    # unmounted keeps the table line; absent removes it
    c = converge(mount_task(mounts=[{"path": "/t", "state": "unmounted"}, {"path": "/ov", "state": "absent"}]), hosts=HOST)
    assert [r["action"] for r in c.first["mounts"]] == ["unmount", "unmount"]
    rows = guest_mounts(lab_exec)
    assert "/t" not in rows and "/ov" not in rows
    lines = table(lab_exec)
    assert " /t tmpfs " in lines and " /ov " not in lines


def test_return_unchanged_false_returns_the_mounts_that_changed(guest, ansible_playbook, converge, lab_exec):
    mounts = [{"path": "/brief1", "fstype": "tmpfs", "opts": "size=1m"}, {"path": "/brief2", "fstype": "tmpfs", "opts": "size=1m"}]
    try:
        ansible_playbook([mount_task(mounts=mounts[:1])], hosts=HOST)
        c = converge(mount_task(mounts=mounts, return_unchanged=False), hosts=HOST)
        for run in (c.check, c.first):
            assert [(m["path"], m["action"]) for m in run["mounts"]] == [("/brief2", "mount")] and run["unchanged"] == 1
        assert c.second["mounts"] == [] and c.second["unchanged"] == 2
        rows = guest_mounts(lab_exec)
        assert rows["/brief1"]["fstype"] == "tmpfs" and rows["/brief2"]["fstype"] == "tmpfs"
        lines = table(lab_exec)
        assert " /brief1 tmpfs " in lines and " /brief2 tmpfs " in lines
        many = ansible_playbook([{MOD: {"guests": [{"guest": GUEST, "mounts": mounts}], "table_dir": TABLES, "return_unchanged": False}}],
                                hosts=HOST).last  # the many-guests form: a guest whose mounts are all right is left out
        assert not many.changed and many["guests"] == [] and many["unchanged"] == 1
    finally:
        ansible_playbook([mount_task(mounts=[dict(m, state="absent") for m in mounts], return_unchanged=False)], hosts=HOST)
    rows = guest_mounts(lab_exec)
    assert "/brief1" not in rows and "/brief2" not in rows and " /brief" not in table(lab_exec)


def test_table_reapplied_when_mount_namespace_is_recreated(guest, ansible_playbook, lab_exec):
    ansible_playbook([mount_task(path="/persist", fstype="tmpfs", opts="size=3m")], hosts=HOST)
    old = meta(lab_exec)
    # the guest's init dies: namespace_create recreates the guest (a new mount namespace)
    sh(lab_exec, "kill -KILL %d" % old["init_pid"])
    run = ansible_playbook([{"name": "recreate", CREATE: {"name": GUEST, "root": ROOT, "recreate": True}}], hosts=HOST)
    assert run.task("recreate").changed and run.task("recreate")["action"] == "recreate"
    new = meta(lab_exec)
    # a new init (pid and start time) in a new set of namespaces (inode numbers can be reused)
    assert (new["init_pid"], new["init_start"]) != (old["init_pid"], old["init_start"])
    assert new["created"] > old["created"]
    rows = guest_mounts(lab_exec)
    assert "size=3072k" in rows["/persist"]["options"]
    assert rows["/data"]["options"].startswith("ro,nosuid")  # from the first test's table
    assert in_guest(lab_exec, "cat", "/data/file").stdout == "hidden\n"
    assert "/proc2" not in rows  # the ephemeral one is not in the table
    # the re-applied table is what the tasks want: rerunning them changes nothing
    run = ansible_playbook([mount_task(path="/persist", fstype="tmpfs", opts="size=3m")], hosts=HOST, check=True)
    assert not run.last.changed


def test_symlink_escape_and_bad_input_change_nothing(guest, ansible_playbook, lab_exec):
    before_guest = guest_mounts(lab_exec)
    before_host = host_mount_targets(lab_exec)
    holder = sh(lab_exec, "nsenter --mount=/run/linuxns/guests/%s/ns/mnt /bin/busybox sh -c 'cd /persist && exec sleep 120' "
                          ">/dev/null 2>&1 & echo $!" % GUEST).stdout.strip()
    try:
        bad = {
            "symlink": dict(path="/evil", fstype="tmpfs"),
            "symlink below": dict(path="/evil/linuxns-test", fstype="tmpfs"),
            "no guest": dict(guest="ghost", path="/x", fstype="tmpfs"),
            "no mnt": dict(guest=GUEST + "-nomnt", path="/x", fstype="tmpfs"),
            "relative": dict(path="x", fstype="tmpfs"),
            "dotdot": dict(path="/a/../../etc", fstype="tmpfs"),
            "missing src": dict(path="/x", fstype="bind", src=BASE + "/nonexistent"),
            "unknown fstype": dict(path="/x", fstype="nosuchfs"),
            "bad opts": dict(path="/x", fstype="tmpfs", opts="size=lots"),
            "busy": dict(path="/persist", state="unmounted"),
            "other mount there": dict(path="/persist", fstype="tmpfs", opts="size=3m,mode=0700"),
        }
        tasks = [dict(mount_task(name, **args), ignore_errors=True) for name, args in bad.items()]
        run = ansible_playbook(tasks, hosts=HOST)
        msgs = {name: run.task(name)["msg"] for name in bad}
        for name in bad:
            assert run.task(name).failed and "Traceback" not in msgs[name], (name, msgs[name])
        assert "/evil is a symbolic link (to /etc)" in msgs["symlink"]
        assert "/evil is a symbolic link" in msgs["symlink below"]
        assert "'ghost' does not exist" in msgs["no guest"]
        assert "no mount namespace of its own" in msgs["no mnt"]
        assert "must be absolute" in msgs["relative"]
        assert "'..'" in msgs["dotdot"]
        assert "bind source does not exist on the host" in msgs["missing src"]
        assert "'nosuchfs' is not a filesystem type" in msgs["unknown fstype"]
        assert "does not accept 'size=lots'" in msgs["bad opts"]
        assert "target is busy" in msgs["busy"] and "pid %s (sleep" % holder in msgs["busy"] and "lazy_unmount" in msgs["busy"]
        assert "cannot change in place" in msgs["other mount there"] and "recreate=true" in msgs["other mount there"]
    finally:
        sh(lab_exec, "kill %s" % holder, check=False)
    assert guest_mounts(lab_exec) == before_guest
    assert host_mount_targets(lab_exec) == before_host
    # the lab host's /etc carries no mount but the lab's own overlay (tests/lab/lab.py)
    assert sh(lab_exec, "findmnt -n -o SOURCE /etc || true").stdout.split() in ([], ["lab-etc"])
    assert sh(lab_exec, "test -e /etc/linuxns-test", check=False).returncode != 0


def test_mirror_tree(guest, converge, ansible_playbook, lab_exec):
    c = converge(mount_task(mirror=MIRROR), hosts=HOST, diff=True)
    assert c.first["mirror"] == {"path": MIRROR + "/" + GUEST, "state": "present", "action": "create", "changed": True}
    host = sh(lab_exec, "findmnt -J -l -o TARGET,PROPAGATION").stdout
    props = {r["target"]: r["propagation"] for r in json.loads(host)["filesystems"]}
    assert "unbindable" in props[MIRROR] and "shared" in props[MIRROR + "/" + GUEST]
    assert sh(lab_exec, "cat %s/%s/data/file" % (MIRROR, GUEST)).stdout == "hidden\n"
    # a mount made in the guest afterwards shows in the mirror on the host
    ansible_playbook([mount_task(path="/later", fstype="tmpfs", opts="size=1m", state="ephemeral")], hosts=HOST)
    assert sh(lab_exec, "findmnt -n -o FSTYPE %s/%s/later" % (MIRROR, GUEST)).stdout.strip() == "tmpfs"
    c = converge(mount_task(mirror=MIRROR, mirror_state="absent"), hosts=HOST)
    assert c.first["mirror"]["action"] == "remove"
    assert sh(lab_exec, "findmnt -n %s/%s || true" % (MIRROR, GUEST)).stdout.strip() == ""
    assert "/later" in guest_mounts(lab_exec)  # the guest's own mounts are untouched


def test_many_guests_in_one_task(guest, ansible_playbook, converge, lab_exec):
    """The guests form (what the guest role uses): two guests' mounts in one task, checked
    from outside; bad input anywhere changes nothing in any guest."""
    other = GUEST + "-b"
    ansible_playbook([{CREATE: {"name": other, "root": ROOT}}], hosts=HOST)
    try:
        before = {g: guest_mounts(lab_exec, g) for g in (GUEST, other)}
        bad = [
            ([{"guest": GUEST, "mounts": ["/many"]}, {"guest": other, "mounts": [{"path": "/many", "fstype": "nosuchfs"}]}],
             "guests[1].mounts[0]"),
            ([{"guest": GUEST, "mounts": ["/many"]}, {"guest": "no-such-guest", "mounts": ["/x"]}],
             "guests[1].guest: guest 'no-such-guest' does not exist"),
            ([{"guest": GUEST, "mounts": ["/many"]}, {"guest": GUEST, "mounts": ["/x"]}], "guest 'mg' is listed twice"),
            ([{"guest": GUEST, "mounts": ["/many"]}, {"guest": GUEST + "-nomnt", "mounts": ["/x"]}],
             "guests[1].guest: guest 'mg-nomnt' has no mount namespace of its own"),
            ([{"guest": GUEST, "colour": "red"}], "guests[0]: unknown option(s) colour"),
            ([{"guest": GUEST, "mounts": [{"path": "/many", "size": 3}]}], "guests[0].mounts[0]: unknown option(s) size"),
        ]
        for entries, msg in bad:
            res = ansible_playbook([{MOD: {"guests": entries, "fstype": "tmpfs", "table_dir": TABLES}}], hosts=HOST, expect_fail=True).last
            assert msg in res["msg"], (msg, res["msg"])
            assert "Traceback" not in res["msg"]
        res = ansible_playbook([{MOD: {"guests": [{"guest": other, "mounts": ["/many"]}], "guest": GUEST, "fstype": "tmpfs"}}],
                               hosts=HOST, expect_fail=True).last
        assert "mutually exclusive: guests|guest" in res["msg"], res["msg"]
        assert {g: guest_mounts(lab_exec, g) for g in (GUEST, other)} == before
        assert "/many" not in table(lab_exec) and "/many" not in table(lab_exec, other)

        c = converge({MOD: {"fstype": "tmpfs", "opts": "size=1m", "table_dir": TABLES, "guests": [
            {"guest": GUEST, "mounts": ["/many"]},
            {"guest": other, "mounts": [{"path": "/many", "opts": "size=2m"}, {"path": "/more", "state": "ephemeral"}]},
        ]}}, hosts=HOST)
        assert [g["guest"] for g in c.first["guests"]] == [GUEST, other]
        assert all(g["changed"] for g in c.first["guests"]) and not any(g["changed"] for g in c.second["guests"])
        assert [m["action"] for m in c.first["guests"][1]["mounts"]] == ["mount", "mount"]
        ours, theirs = guest_mounts(lab_exec), guest_mounts(lab_exec, other)
        assert ours["/many"]["fstype"] == "tmpfs" and "size=1024k" in ours["/many"]["options"]
        assert theirs["/many"]["fstype"] == "tmpfs" and "size=2048k" in theirs["/many"]["options"] and "/more" in theirs
        assert "/more" not in ours
        assert "tmpfs /many tmpfs rw,size=2m 0 0" in table(lab_exec, other) and "/more" not in table(lab_exec, other)
        assert "/many" not in host_mount_targets(lab_exec)
        # and away again, in one task
        gone = converge({MOD: {"state": "absent", "table_dir": TABLES, "guests": [
            {"guest": GUEST, "mounts": ["/many"]}, {"guest": other, "mounts": ["/many", "/more"]}]}}, hosts=HOST)
        assert gone.first["changed"]
        assert "/many" not in guest_mounts(lab_exec) and not {"/many", "/more"} & set(guest_mounts(lab_exec, other))
        assert "/many" not in table(lab_exec) and "/many" not in table(lab_exec, other)
    finally:
        ansible_playbook([{CREATE: {"name": other, "state": "absent", "stop_timeout": 2}}], hosts=HOST)
