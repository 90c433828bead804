"""guest_enter_exec over real ssh (and paramiko) against lab hosts.

What the command saw is checked against the kernel's view from outside: the
guest's pins (``stat -L``), its init, /proc of the lab host, the guest's root
folder on disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.integration

MOD = "linuxns.guests.guest_enter_exec"
CREATE = "linuxns.guests.namespace_create"
STATE = "/run/linuxns"
MANY = 50


def pin_inode(lab_exec, guest, nstype, host="lab1"):
    return int(lab_exec(host, ["stat", "-L", "-c", "%i", "%s/guests/%s/ns/%s" % (STATE, guest, nstype)]).stdout)


def cmdlines_in_pid_ns(lab_exec, inode, host="lab1"):
    """Command lines of the processes in the pid namespace with this inode (lab host's /proc)."""
    script = ("for p in /proc/[0-9]*; do [ \"$(stat -L -c %%i $p/ns/pid 2>/dev/null)\" = %d ] && "
              "tr '\\0' ' ' < $p/cmdline && echo; done; true" % inode)
    return sorted(line.strip() for line in lab_exec(host, ["sh", "-c", script]).stdout.splitlines() if line.strip())


def no_traceback(res):
    assert "Traceback" not in res.get("msg", "") and "Traceback" not in str(res.get("exception", "")), res.result


@pytest.fixture(scope="module")
def root_dir(lab):
    """A busybox root with every applet, a passwd and group; visible to the lab hosts."""
    base = "/var/tmp/linuxns-it-exec-%d" % os.getpid()
    root = os.path.join(base, "root")
    for d in ("bin", "etc", "proc", "dev", "tmp", "home/web"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy2("/bin/busybox", os.path.join(root, "bin", "busybox"))
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = os.path.join(root, "bin", applet)
        if applet != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/home/web:/bin/sh\n")
    with open(os.path.join(root, "etc", "group"), "w") as f:
        f.write("root:x:0:\nweb:x:1000:\nstaff:x:50:web\n")
    os.chown(os.path.join(root, "home", "web"), 1000, 1000)
    yield root
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def guests(lab, ansible, root_dir):
    """ex1 (busybox root, hostname ex1.lab) and ex2 (no root, only net+uts+mnt) on lab1; removed at the end."""
    names = ["ex1", "ex2"]
    try:
        run = ansible.playbook([{CREATE: {"guests": [{"name": "ex1", "root": root_dir, "hostname": "ex1.lab"},
                                                     {"name": "ex2", "namespaces": ["net", "uts", "mnt"]}]}}])
        yield {g["name"]: g["guest"] for g in run.last["guests"]}
    finally:
        ansible.playbook([{CREATE: {"guests": names + ["exdead"] + ["exm%02d" % i for i in range(MANY)], "state": "absent",
                                    "stop_timeout": 2}}])


# ------------------------------------------------------------------------------------------
# playbook: what the command sees
# ------------------------------------------------------------------------------------------
def test_playbook_runs_inside_the_guest(guests, ansible_playbook, lab_exec, root_dir):
    ex1 = guests["ex1"]
    big = 5 * 1024 * 1024
    run = ansible_playbook([
        {"name": "ns", MOD: {"guest": "ex1", "argv": ["sh", "-c", "for t in pid net mnt uts ipc; do stat -L -c %i /proc/self/ns/$t; done"]}},
        {"name": "pidview", MOD: {"guest": "ex1", "cmd": "cat /proc/1/comm"}},
        {"name": "shellpid", MOD: {"guest": "ex1", "cmd": "echo $$ $PPID", "shell": True}},
        {"name": "fds", MOD: {"guest": "ex1", "argv": ["ls", "/proc/self/fd"]}},
        {"name": "childfds", MOD: {"guest": "ex1", "cmd": "sleep 5 & ls /proc/$!/fd; kill $!", "shell": True}},
        {"name": "hostname", MOD: {"guest": str(ex1["context_id"]), "argv": ["hostname"]}},
        {"name": "user", MOD: {"guest": "ex1", "argv": ["sh", "-c", "id; echo $HOME; pwd"], "user": "web", "chdir": "/home/web"}},
        {"name": "uid", MOD: {"guest": "ex1", "argv": ["id", "-u"], "user": "4321"}},
        {"name": "env", MOD: {"guest": "ex1", "argv": ["env"], "env": {"GREETING": "hello world"}}},
        {"name": "stdin", MOD: {"guest": "ex1", "argv": ["sh", "-c", "cat > /tmp/from-stdin; wc -c < /tmp/from-stdin"],
                                "stdin": "line one\nline two"}},
        {"name": "big", MOD: {"guest": "ex1", "argv": ["sh", "-c", "head -c %d /dev/zero | tr '\\0' a; head -c %d /dev/zero | tr '\\0' b >&2" % (big, big)]}},
        {"name": "binary", MOD: {"guest": "ex1", "argv": ["printf", "ok\\377\\376"]}},
        {"name": "background", MOD: {"guest": "ex1", "cmd": "sleep 3 & echo bg", "shell": True}},
        {"name": "mnt only", MOD: {"guest": "ex1", "argv": ["sh", "-c", "hostname; ls /bin/busybox"], "namespaces": ["mnt"]}},
        {"name": "net only host tool", MOD: {"guest": "ex2", "argv": ["ip", "-o", "link"], "namespaces": ["net"], "root": False}},
        {"name": "no root guest", MOD: {"guest": "ex2", "argv": ["hostname"]}},
    ])
    r = {t: run.task(t) for t in ("ns", "pidview", "shellpid", "fds", "childfds", "hostname", "user", "uid", "env", "stdin",
                                  "big", "binary", "background", "mnt only", "net only host tool", "no root guest")}
    assert all(x.changed and x["rc"] == 0 for x in r.values())
    # every namespace the command is in is the guest's pinned one
    assert [int(x) for x in r["ns"]["stdout_lines"]] == [pin_inode(lab_exec, "ex1", t) for t in ("pid", "net", "mnt", "uts", "ipc")]
    assert r["ns"]["guest"] == "ex1" and r["ns"]["context_id"] == ex1["context_id"]
    # pid view: the guest's init is PID 1, the shell has a small pid of the guest's namespace
    assert r["pidview"]["stdout"] == "memfd:catatonit"  # the sealed copy of the host's reaper
    assert lab_exec("lab1", ["cat", "/proc/1/comm"]).stdout.strip() == "catatonit"  # the lab's own; inode differs:
    assert pin_inode(lab_exec, "ex1", "pid") != int(lab_exec("lab1", ["stat", "-L", "-c", "%i", "/proc/1/ns/pid"]).stdout)
    pid, ppid = (int(x) for x in r["shellpid"]["stdout"].split())
    assert 1 < pid < 1000 and ppid == 0  # its parent (the joining process) is outside the guest's pid namespace
    # no fd of the module: ls sees 0-2 and the folder it reads; a child sees only 0-2
    assert r["fds"]["stdout_lines"] == ["0", "1", "2", "3"]
    assert r["childfds"]["stdout_lines"] == ["0", "1", "2"]
    assert r["hostname"]["stdout"] == "ex1.lab" and r["hostname"]["guest"] == "ex1"
    assert r["user"]["stdout_lines"] == ["uid=1000(web) gid=1000(web) groups=50(staff),1000(web)", "/home/web", "/home/web"]
    assert r["uid"]["stdout"] == "4321"
    env = dict(line.split("=", 1) for line in r["env"]["stdout_lines"])
    assert env["GREETING"] == "hello world" and env["HOME"] == "/root" and not any(k.startswith("ANSIBLE") for k in env)
    assert r["stdin"]["stdout"] == "18"
    with open(os.path.join(root_dir, "tmp", "from-stdin")) as f:  # seen from outside, in the guest's root folder
        assert f.read() == "line one\nline two\n"
    assert r["big"]["stdout"] == "a" * big and r["big"]["stderr"] == "b" * big
    assert r["binary"]["stdout"] == "ok\ufffd\ufffd"
    assert r["background"]["stdout"] == "bg" and r["background"]["warnings"]
    assert r["mnt only"]["stdout_lines"] == ["lab1", "/bin/busybox"]
    links = r["net only host tool"]["stdout_lines"]
    assert len(links) == 1 and ": lo:" in links[0]
    assert r["no root guest"]["stdout"] == "ex2"
    for x in r.values():
        assert x["start"] and x["end"] and x["delta"].startswith("0:00:")


@pytest.mark.parametrize("connection,pipelining", [("ssh", False), ("paramiko", True)], ids=["ssh-nopipelining", "paramiko"])
def test_connections_and_pipelining(guests, ansible_playbook, lab_exec, connection, pipelining):
    run = ansible_playbook([
        {"name": "hostname", MOD: {"guest": "ex1", "argv": ["sh", "-c", "hostname; cat /proc/1/comm"]}},
        {"name": "fds", MOD: {"guest": "ex1", "argv": ["ls", "/proc/self/fd"]}},
    ], connection=connection, pipelining=pipelining)
    assert run.task("hostname")["stdout_lines"] == ["ex1.lab", "memfd:catatonit"]
    assert run.task("fds")["stdout_lines"] == ["0", "1", "2", "3"]


def test_adhoc(guests, ansible_adhoc, lab_exec):
    run = ansible_adhoc("lab1", MOD, 'guest=ex1 cmd="cat /proc/mounts"')
    res = run.last
    assert res.changed and res["rc"] == 0 and res["guest"] == "ex1"
    fstypes = {line.split()[1]: line.split()[2] for line in res["stdout_lines"]}
    assert fstypes["/proc"] == "proc" and "/run" not in fstypes  # the guest's table, not the lab host's
    res = ansible_adhoc("lab1", MOD, "guest=%d argv=hostname" % guests["ex1"]["context_id"]).last
    assert res["stdout"] == "ex1.lab"


# ------------------------------------------------------------------------------------------
# creates / removes / check mode: idempotence rules
# ------------------------------------------------------------------------------------------
def test_creates_removes_and_check_mode(guests, converge, ansible_playbook, root_dir):
    made = os.path.join(root_dir, "tmp", "made")
    task = {MOD: {"guest": "ex1", "argv": ["sh", "-c", "echo made > /tmp/made"], "creates": "/tmp/made"}}
    check = ansible_playbook([dict(task, name="predict")], check=True).last
    assert check.changed and "would have run" in check["msg"] and not os.path.exists(made)
    conv = converge(task)
    assert conv.first.changed and not conv.second.changed and os.path.exists(made)
    assert conv.second["msg"] == "Did not run command since '/tmp/made' exists inside guest 'ex1'"
    # /tmp/made exists only inside the guest: removes sees it there
    assert not os.path.exists("/tmp/made")
    conv = converge({MOD: {"guest": "ex1", "argv": ["rm", "/tmp/made"], "removes": "/tmp/made"}})
    assert conv.first.changed and not conv.second.changed and not os.path.exists(made)
    assert "does not exist inside guest 'ex1'" in conv.second["msg"]
    # check mode without creates/removes: skipped, nothing run; run_in_check_mode runs it
    run = ansible_playbook([
        {"name": "skip", MOD: {"guest": "ex1", "argv": ["sh", "-c", "[ ! -e /tmp/check ] && touch /tmp/skip"]}},
        {"name": "ran", MOD: {"guest": "ex1", "argv": ["touch", "/tmp/check"], "run_in_check_mode": True}},
    ], check=True)
    skipped = run.task("skip")
    assert skipped.skipped or skipped.get("skipped"), skipped.result
    assert "would have run" in skipped["msg"] and not os.path.exists(os.path.join(root_dir, "tmp", "skip"))
    ran = run.task("ran")
    assert ran.changed and ran["rc"] == 0 and os.path.exists(os.path.join(root_dir, "tmp", "check"))
    os.unlink(os.path.join(root_dir, "tmp", "check"))


# ------------------------------------------------------------------------------------------
# the list form across 50 guests
# ------------------------------------------------------------------------------------------
def test_guests_list_form_across_many_guests(guests, ansible_playbook, lab_exec):
    names = ["exm%02d" % i for i in range(MANY)]
    try:
        ansible_playbook([{CREATE: {"guests": names, "namespaces": ["mnt", "uts", "pid", "net"]}}])
        run = ansible_playbook([
            {"name": "all", MOD: {"guests": names, "argv": ["sh", "-c", "hostname; cat /proc/1/comm; stat -L -c %i /proc/self/ns/net"]}},
            {"name": "one fails", MOD: {"guests": names[:3], "argv": ["sh", "-c", "[ $(hostname) != exm01 ]"]}, "ignore_errors": True},
        ])
        res = run.task("all")
        assert res.changed and len(res["results"]) == MANY
        assert [r["guest"] for r in res["results"]] == names
        nets = set()
        for name, r in zip(names, res["results"]):
            hostname, comm, net = r["stdout_lines"]
            assert (hostname, comm, r["rc"]) == (name, "memfd:catatonit", 0)
            nets.add(int(net))
        assert len(nets) == MANY
        for name, r in list(zip(names, res["results"]))[:5]:
            assert int(r["stdout_lines"][2]) == pin_inode(lab_exec, name, "net")
        bad = run.task("one fails")
        assert bad.failed and [r["rc"] for r in bad["results"]] == [0, 1, 0]
        assert bad["msg"] == "the command failed in 1 of 3 guests: exm01: non-zero return code"
        check_parallel(names[:3], ansible_playbook, lab_exec)
    finally:
        ansible_playbook([{CREATE: {"guests": names, "state": "absent", "stop_timeout": 2}}])
    assert not set(names) & set(lab_exec("lab1", ["ls", STATE + "/guests"]).stdout.split())


BARRIER = "/tmp/exm-barrier"
# Each guest marks itself in a folder all three see (no root of their own: the lab host's /tmp),
# then waits up to 3 s for the three marks: only guests that run at the same time all get through.
AT_ONCE = ('touch %s/$(hostname); n=0; while [ "$(ls %s | wc -l)" -lt 3 ]; do n=$((n + 1)); [ $n -ge 30 ] && exit 9; '
           'sleep 0.1; done' % (BARRIER, BARRIER))


def check_parallel(names, ansible_playbook, lab_exec):
    """``parallel``: how many of ``guests`` run at a time, seen from the commands themselves."""
    def marks():
        return sorted(lab_exec("lab1", ["ls", BARRIER]).stdout.split())

    task = {MOD: {"guests": names, "cmd": AT_ONCE, "shell": True, "parallel": 3}}
    lab_exec("lab1", ["sh", "-c", "rm -rf %s && mkdir %s" % (BARRIER, BARRIER)])
    try:
        predicted = ansible_playbook([dict(task, name="at once")], check=True).task("at once")
        assert predicted.skipped and marks() == [], "check mode ran the command"
        res = ansible_playbook([dict(task, name="at once")]).task("at once")
        assert [r["rc"] for r in res["results"]] == [0, 0, 0] and marks() == sorted(names)
        lab_exec("lab1", ["sh", "-c", "rm -f %s/*" % BARRIER])
        two = dict(task[MOD], parallel=2)
        res = ansible_playbook([{"name": "two at a time", MOD: two, "ignore_errors": True}]).task("two at a time")
        # the first two wait for a third that starts only when one of them has given up
        assert res.failed and [r["rc"] for r in res["results"]] == [9, 9, 0], res["results"]
        bad = ansible_playbook([{"name": "bad", MOD: dict(two, parallel=0), "ignore_errors": True}]).task("bad")
        assert bad.failed and bad["msg"] == "parallel: 0 is out of range: give 1 to 256 guests at a time"
    finally:
        lab_exec("lab1", ["rm", "-rf", BARRIER])


# ------------------------------------------------------------------------------------------
# errors: a clear message, no traceback
# ------------------------------------------------------------------------------------------
ERRORS = [
    ("missing guest", {"guest": "nosuchguest", "argv": ["true"]}, "guest: guest 'nosuchguest' does not exist on this host"),
    ("missing context id", {"guests": ["ex1", "31999"], "argv": ["true"]}, "guests[1]: no guest has context id 31999"),
    ("not found", {"guest": "ex1", "argv": ["python3", "-V"]}, "command 'python3' was not found inside guest 'ex1'"),
    ("chdir", {"guest": "ex1", "argv": ["true"], "chdir": "/srv/missing"}, "chdir: /srv/missing cannot be entered inside guest 'ex1'"),
    ("user", {"guest": "ex1", "argv": ["true"], "user": "daemon"}, "user 'daemon' is not known inside guest 'ex1'"),
    ("subset", {"guest": "ex2", "argv": ["true"], "namespaces": ["net", "pid"]}, "namespaces: guest 'ex2' has no pid namespace of its own"),
    ("bad type", {"guest": "ex2", "argv": ["true"], "namespaces": ["bogus"]}, "namespaces"),
    ("root false", {"guest": "ex1", "argv": ["true"], "root": False}, "root: false cannot be used when entering the mnt namespace of guest 'ex1'"),
    ("no chroot", {"guests": ["ex2", "ex1"], "cmd": "touch /tmp/nochroot-ran", "namespaces": ["uts", "net"]},
     "namespaces: guest 'ex1' has its own root ("),
    ("shell argv", {"guest": "ex1", "argv": ["true"], "shell": True}, "shell: true needs the command as a string in cmd"),
    ("both", {"guest": "ex1", "argv": ["true"], "cmd": "true"}, "mutually exclusive"),
    ("split", {"guest": "ex1", "cmd": "echo 'open"}, "cannot be split"),
    ("bad timeout", {"guest": "ex1", "argv": ["true"], "timeout": -1}, "timeout must be more than 0"),
    ("nonzero", {"guest": "ex1", "cmd": "sh -c 'exit 7'"}, "non-zero return code"),
]


@pytest.fixture
def nochroot_ran(lab_exec, root_dir):
    """The file "no chroot" would make: on lab1 (ex2 has no root) and in ex1's root; removed before and after."""
    ran = "/tmp/nochroot-ran"
    paths = [os.path.join(root_dir, ran.lstrip("/"))]
    lab_exec("lab1", ["rm", "-f", ran])
    try:
        yield ran, paths
    finally:
        lab_exec("lab1", ["rm", "-f", ran] + paths, check=False)


def test_errors_are_clear(guests, ansible_playbook, lab_exec, nochroot_ran):
    ex1_pid = pin_inode(lab_exec, "ex1", "pid")
    ran, ran_in_roots = nochroot_ran  # "no chroot": neither ex2 (no root: the lab host's /tmp) nor ex1 (its root) ran it
    tasks = [{"name": name, MOD: args, "ignore_errors": True} for name, args, _msg in ERRORS]
    tasks.append({"name": "timeout", MOD: {"guest": "ex1", "cmd": "sleep 200 & (sleep 201 &); setsid sleep 202 & sleep 203", "shell": True,
                                           "timeout": 1}, "ignore_errors": True})
    run = ansible_playbook(tasks)
    for name, _args, msg in ERRORS:
        res = run.task(name)
        assert res.failed and res.ignored, (name, res.result)
        assert msg in res["msg"], (name, res["msg"])
        no_traceback(res)
    assert "mnt namespace" in run.task("no chroot")["msg"] and "chroot in the host's mount namespace" in run.task("no chroot")["msg"]
    assert lab_exec("lab1", ["test", "-e", ran], check=False).returncode == 1
    assert not any(os.path.lexists(p) for p in ran_in_roots)
    assert run.task("not found")["rc"] == 127 and "looked up in PATH=" in run.task("not found")["msg"]
    assert run.task("nonzero")["rc"] == 7
    t = run.task("timeout")
    assert t.failed and t["timed_out"] and t["rc"] == -9
    assert "command timed out after 1 seconds inside guest 'ex1': killed it and its processes" in t["msg"]
    # the whole tree is gone (the guest's init is still there)
    left = cmdlines_in_pid_ns(lab_exec, ex1_pid)
    assert any(c.startswith("catatonit") for c in left), left
    assert not [c for c in left if "sleep 20" in c], left


def test_guest_whose_init_died(guests, ansible_playbook, lab_exec):
    g = ansible_playbook([{CREATE: {"name": "exdead"}}]).last["guest"]
    lab_exec("lab1", ["kill", "-9", str(g["init_pid"])])
    res = ansible_playbook([{"name": "dead", MOD: {"guest": "exdead", "argv": ["true"]}}], expect_fail=True).last
    assert "guest 'exdead' is not running" in res["msg"] and "init" in res["msg"] and "namespace_create" in res["msg"]
    no_traceback(res)
    ansible_playbook([{CREATE: {"name": "exdead", "state": "absent", "stop_timeout": 2}}])
