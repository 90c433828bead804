# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""No fd, working folder or terminal of the host reaches a process started in a guest.

- **CVE-2024-21626** ("Leaky Vessels", runc < 1.1.12): runc's init kept an fd of the
  host's /sys/fs/cgroup open into the container, and a ``cwd`` of ``/proc/self/fd/7``
  started the container's process with its working folder on the host; ``..`` from there
  walks the host's tree.  Here: every process the collection starts in a guest - exec,
  the connection's commands, the init, a service - has fds 0, 1 and 2 only (``close_range``
  right before exec, also for an fd opened after the closing step), and starts with a
  working folder inside the guest's root (``..`` many times lands on the guest's ``/``,
  not the host's).
- **CVE-2016-9962** (``runc exec``, fixed in January 2017 with Docker 1.12.6): the joining process
  was dumpable, so a process of the container could ptrace it or read its /proc/PID/fd
  and reach its host fds.  Here the joiner E and the command's process C before exec
  are non-dumpable: a uid-0 prober without CAP_SYS_PTRACE (what guest root is in a
  confined guest) cannot reach them (/proc/PID/cwd, /proc/PID/mem).
- **The host's terminal** (issue 13, Low): ``raw`` over ssh runs with a tty (ssh -tt);
  the guest got the host's /dev/pts/N as 0/1/2 (TIOCSTI and friends on the host's
  terminal).  Now it gets pipes, which the entry program relays.

Every probe only lists fds, reads links and markers; nothing of the host is written.
Unit-level tests run the helper in this process (tests/unit fixtures); the lab tests
share one guest with a busybox root on lab1 and go through Ansible over real ssh.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil

import harness
import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import enter, guests
from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput

NAME = "sec-fdx"
GUEST_MARK = ".linuxns-guest-root"  # only in the guest's root
HOST_MARK = "etc/debian_version"  # only on the host's / (the busybox roots have no such file)
# From the starting folder, 64 times "..", then which / it is (and the folder itself).
WALK = ("d=.; i=0; while [ $i -lt 64 ]; do d=$d/..; i=$((i+1)); done; "
        "if [ -e $d/%s ]; then echo HOST; elif [ -e $d/%s ]; then echo GUEST; else echo LOST; fi; pwd" % (HOST_MARK, GUEST_MARK))


def fd_table(ls_output: str) -> dict:
    """``ls -l /proc/self/fd`` as {fd: target}, without ls's own listing fd (the /proc/N/fd folder)."""
    table = {}
    for line in ls_output.splitlines():
        if " -> " not in line:
            continue
        left, target = line.split(" -> ", 1)
        fd = int(left.split()[-1])
        if target.startswith("/proc/") and target.endswith("/fd"):
            continue
        table[fd] = target.strip()
    return table


# ------------------------------------------------------------------------------------------
# unit level: the enter path itself
# ------------------------------------------------------------------------------------------
@pytest.fixture
def guest(unit_registry, busybox_root):
    with open(os.path.join(busybox_root, GUEST_MARK), "w") as f:
        f.write("guest\n")
    guests.ensure_guests(unit_registry, [{"name": NAME, "root": busybox_root}])
    return unit_registry.find(NAME)


def spawn(meta, argv, **kw):
    """spawn_in_guest with pipes; (stdout, stderr, status messages)."""
    fds = [*os.pipe2(os.O_CLOEXEC), *os.pipe2(os.O_CLOEXEC), *os.pipe2(os.O_CLOEXEC)]
    in_r, in_w, out_r, out_w, err_r, err_w = fds
    try:
        spawned = enter.spawn_in_guest(meta, None, argv, {"PATH": "/bin"}, (in_r, out_w, err_w), **kw)
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        os.close(in_w)
        out, err = enter.read_all(out_r), enter.read_all(err_r)
        raw = enter.read_all(spawned.status_fd)
        os.close(spawned.status_fd)
        enter.wait_child(spawned.pid)
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
    return out.decode(), err.decode(), [json.loads(x) for x in raw.decode().splitlines() if x.strip()]


@pytest.mark.unit
@pytest.mark.timeout(120)
def test_cve_2024_21626_no_fd_reaches_the_program(guest, busybox_root):
    """Inheritable fds of the caller (an Ansible module's, a host folder) and one opened
    inside the guest after the closing step (a library that forgets O_CLOEXEC, in
    ``credentials``) never reach the program: it has 0, 1 and 2 only."""
    host_dir = os.open("/", os.O_RDONLY | os.O_DIRECTORY)  # inheritable, as a careless caller's
    os.set_inheritable(host_dir, True)

    def credentials():
        late = os.open("/", os.O_RDONLY | os.O_DIRECTORY)  # no O_CLOEXEC: opened after close_fds_except
        os.set_inheritable(late, True)
        return {"uid": 0, "gid": 0, "groups": []}

    try:
        out, err, msgs = spawn(guest, ["ls", "-l", "/proc/self/fd"], credentials=credentials)
    finally:
        os.close(host_dir)
    assert not [m for m in msgs if "error" in m], msgs
    table = fd_table(out)
    assert sorted(table) == [0, 1, 2], (out, err)
    assert all(t.startswith("pipe:") for t in table.values()), table


@pytest.mark.unit
@pytest.mark.timeout(120)
def test_cve_2024_21626_working_folder_is_the_guests(guest, busybox_root):
    """The program starts in the guest's / (or ``chdir`` resolved inside the guest): ``..``
    walks end at the guest's /; ``/proc/self/fd/N`` as chdir reaches no host folder."""
    os.makedirs(os.path.join(busybox_root, "srv"))
    os.symlink("/etc", os.path.join(busybox_root, "srv", "abs"))  # absolute: the guest's /etc
    os.symlink("../../../../../../../..", os.path.join(busybox_root, "srv", "up"))
    for cwd, want in ((None, "/"), ("srv/abs", "/etc"), ("/srv/up", "/")):
        out, err, msgs = spawn(guest, ["sh", "-c", "pwd -P; " + WALK], cwd=cwd)
        assert not [m for m in msgs if "error" in m], (cwd, msgs)
        lines = out.split()
        assert lines[0] == want and lines[1] == "GUEST", (cwd, out, err)
    host_dir = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(host_dir, True)
    try:
        for fd in (host_dir, 3, 4, 5):
            out, err, msgs = spawn(guest, ["sh", "-c", WALK], cwd="/proc/self/fd/%d" % fd)
            assert "HOST" not in out, (fd, out)
            assert [m for m in msgs if "error" in m and "chdir" in m["error"]], (fd, out, msgs)
    finally:
        os.close(host_dir)


@pytest.mark.unit
@pytest.mark.timeout(60)
def test_cve_2024_21626_cwd_outside_the_root_is_refused(busybox_root):
    """runc's verifyCwd: a working folder the root cannot reach (getcwd "(unreachable)")
    is refused before exec.  A forked child chroots into the guest's root keeping its cwd
    on the host, as a leaked fd or a stale cwd would leave it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        answer = b"?"
        try:
            os.close(r)
            os.chdir("/tmp")
            os.chroot(busybox_root)
            try:
                enter.check_cwd(NAME)
                answer = b"allowed"
            except InvalidInput as exc:
                answer = b"refused " + str(exc).encode()
        finally:
            os.write(w, answer)
            os._exit(0)
    os.close(w)
    answer = enter.read_all(r).decode()
    os.close(r)
    enter.wait_child(pid)
    assert answer.startswith("refused") and NAME in answer and "outside" in answer, answer


CAP_SYS_PTRACE = 19
PR_CAPBSET_DROP = 24


def _drop_cap_sys_ptrace() -> None:
    """This (forked, uid 0) process and what it starts lose CAP_SYS_PTRACE: bounding, permitted, effective."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")
    hdr = Header(0x20080522, 0)
    data = (Data * 2)()
    if libc.capget(ctypes.byref(hdr), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    data[0].effective &= ~(1 << CAP_SYS_PTRACE)
    data[0].permitted &= ~(1 << CAP_SYS_PTRACE)
    data[0].inheritable &= ~(1 << CAP_SYS_PTRACE)
    if libc.capset(ctypes.byref(hdr), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _in_fork(func):
    """func() in a forked child; its JSON result."""
    r, w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:  # pragma: no cover - child
        try:
            os.close(r)
            out = {"ok": func()}
        except BaseException as exc:
            out = {"error": repr(exc)}
        try:
            enter.write_all(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = enter.read_all(r)
    os.close(r)
    enter.wait_child(child)
    return json.loads(data.decode())


def _probe(pids) -> dict:
    """Does ptrace's access check let this process at each pid (/proc/PID/cwd and /proc/PID/mem)?"""
    out = {}
    for pid in pids:
        try:
            os.readlink("/proc/%d/cwd" % pid)
            os.close(os.open("/proc/%d/mem" % pid, os.O_RDONLY | os.O_CLOEXEC))
            out[str(pid)] = "readable"
        except OSError as exc:
            out[str(pid)] = "refused %d" % exc.errno
    return out


def _joiner_probe(meta) -> dict:
    """Runs in a forked runner without CAP_SYS_PTRACE: enter the guest, stop C before exec,
    probe E and C from a sibling with the same uid and capabilities (so only dumpability
    decides), then let C exec and probe the program (dumpable again: the control)."""
    _drop_cap_sys_ptrace()
    go_r, go_w = os.pipe2(os.O_CLOEXEC)

    def prepare():  # in C, inside the guest, before exec: wait for the probe
        os.read(0, 1)
        return None

    spawned = enter.spawn_in_guest(meta, None, ["sh", "-c", "read x"], {"PATH": "/bin"}, (go_r, 2, 2), prepare=prepare)
    os.close(go_r)
    c_pid = json.loads(os.read(spawned.status_fd, 4096).decode().splitlines()[0])["pid"]
    before = _in_fork(lambda: _probe([spawned.pid, c_pid])).get("ok")
    os.write(go_w, b"x")  # prepare returns and C execs sh, which waits in `read`
    while True:  # until the exec is done (no timing: the cmdline changes at exec)
        with open("/proc/%d/cmdline" % c_pid, "rb") as f:
            if f.read().startswith(b"sh"):
                break
    after = _in_fork(lambda: _probe([c_pid])).get("ok")
    os.write(go_w, b"\n")
    os.close(go_w)
    rest = enter.read_all(spawned.status_fd).decode()
    os.close(spawned.status_fd)
    enter.wait_child(spawned.pid)
    return {"e": spawned.pid, "c": c_pid, "before": before, "after": after, "rest": rest}


@pytest.mark.unit
@pytest.mark.timeout(120)
def test_cve_2016_9962_joiner_is_not_dumpable(guest):
    """E (the joiner) and C before exec are non-dumpable: a process with the same uid and
    capabilities (uid 0 without CAP_SYS_PTRACE, what confined guest root is) cannot reach
    them through ptrace's access check (/proc/PID/cwd, /proc/PID/mem), while it can read the program after exec (the control)."""
    res = _in_fork(lambda: _joiner_probe(guest))
    assert "ok" in res, res
    res = res["ok"]
    e, c = str(res["e"]), str(res["c"])
    assert res["before"][e].startswith("refused"), res  # E
    assert res["before"][c].startswith("refused"), res  # C before exec
    assert res["after"][c] == "readable", res  # the control: same uid and caps, dumpable: readable
    assert '"exit": 0' in res["rest"], res


# ------------------------------------------------------------------------------------------
# lab: the same over real ssh - exec, a service, the init, the connection with a tty
# ------------------------------------------------------------------------------------------
LAB_GUEST = "sfdx"
STATE = "/run/linuxns"


@pytest.fixture(scope="module")
def lab_guest(lab, ansible):
    """One guest with a busybox root on lab1 (guest marker, symlinks in /srv); removed afterwards."""
    base = "/var/tmp/linuxns-sec-fdx-%d" % os.getpid()
    root = os.path.join(base, "root")
    try:
        harness.busybox_tree(root, ("etc", "root", "proc", "dev", "tmp", "srv"), passwd=True)
        with open(os.path.join(root, GUEST_MARK), "w") as f:
            f.write("guest\n")
        os.symlink("/etc", os.path.join(root, "srv", "abs"))
        os.symlink("../../../../../../../..", os.path.join(root, "srv", "up"))
        ansible.playbook([{"linuxns.guests.namespace_create": {"name": LAB_GUEST, "root": root, "table_dir": base + "/tables"}}], hosts="lab1")
        yield {"root": root, "base": base}
    finally:
        gone = {"name": LAB_GUEST, "state": "absent", "stop_timeout": 2, "table_dir": base + "/tables"}
        ansible.playbook([{"linuxns.guests.namespace_create": gone}], hosts="lab1")
        shutil.rmtree(base, ignore_errors=True)


# On the lab host: fds and working folder of the guest's init and of the guest's process
# whose pid inside the guest is argv[2] (the service), by NSpid in the guest's pid namespace.
HOST_PROBE = r"""
import json, os, sys
state, name, inner, root = sys.argv[1:5]
meta = json.load(open("%s/guests/%s/meta.json" % (state, name)))
ino = os.stat("%s/guests/%s/ns/pid" % (state, name)).st_ino
def show(pid):
    fds = {}
    for n in os.listdir("/proc/%d/fd" % pid):
        try:
            fds[n] = os.readlink("/proc/%d/fd/%s" % (pid, n))
        except OSError:
            pass
    cwd, top = os.stat("/proc/%d/cwd" % pid), os.stat(root)
    return {"pid": pid, "fds": fds, "cwd_is_root": (cwd.st_dev, cwd.st_ino) == (top.st_dev, top.st_ino)}
out = {"init": show(meta["init_pid"]), "service": None}
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        if os.stat("/proc/%s/ns/pid" % p).st_ino != ino:
            continue
        nspid = [l.split()[1:] for l in open("/proc/%s/status" % p) if l.startswith("NSpid:")][0]
    except OSError:
        continue
    if nspid[-1] == inner:
        out["service"] = show(int(p))
print(json.dumps(out))
"""


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_cve_2024_21626_exec_service_init_over_ssh(lab_guest, ansible, lab_exec):
    """guest_enter_exec (an Ansible module's process, with its own fds) and a service
    started the role's way (``setsid CMD &``): fds 0/1/2 only, working folder the
    guest's; the init seen from the lab host: fds 0/1/2 (/dev/null), cwd the guest's root."""
    ex = "linuxns.guests.guest_enter_exec"
    run = ansible.playbook([
        {"name": "fds", ex: {"guest": LAB_GUEST, "argv": ["ls", "-l", "/proc/self/fd"]}},
        {"name": "walk", ex: {"guest": LAB_GUEST, "cmd": WALK, "shell": True}},
        {"name": "walk srv/abs", ex: {"guest": LAB_GUEST, "cmd": "pwd -P; " + WALK, "shell": True, "chdir": "srv/abs"}},
        {"name": "walk /srv/up", ex: {"guest": LAB_GUEST, "cmd": "pwd -P; " + WALK, "shell": True, "chdir": "/srv/up"}},
        {"name": "proc fd chdir", ex: {"guest": LAB_GUEST, "cmd": WALK, "shell": True, "chdir": "/proc/self/fd/3"},
         "ignore_errors": True},
        {"name": "service", ex: {"guest": LAB_GUEST, "shell": True,
                                 "cmd": "setsid sleep 3600 </dev/null >/dev/null 2>&1 & echo $!"}},
    ], hosts="lab1")
    table = fd_table(run.task("fds")["stdout"])
    assert sorted(table) == [0, 1, 2], run.task("fds")["stdout"]
    assert run.task("walk")["stdout_lines"] == ["GUEST", "/"], run.task("walk").result
    assert run.task("walk srv/abs")["stdout_lines"] == ["/etc", "GUEST", "/etc"], run.task("walk srv/abs").result
    assert run.task("walk /srv/up")["stdout_lines"] == ["/", "GUEST", "/"], run.task("walk /srv/up").result
    refused = run.task("proc fd chdir")
    assert refused.failed and "HOST" not in refused.get("stdout", ""), refused.result
    assert "chdir" in refused["msg"], refused.result
    inner = run.task("service")["stdout"].strip()
    try:
        seen = json.loads(lab_exec("lab1", ["python3", "-c", HOST_PROBE, STATE, LAB_GUEST, inner, lab_guest["root"]]).stdout)
    finally:
        lab_exec("lab1", ["nsenter", "--pid=%s/guests/%s/ns/pid" % (STATE, LAB_GUEST), "--mount=%s/guests/%s/ns/mnt" % (STATE, LAB_GUEST),
                          "kill", "-KILL", inner], check=False)
    for what in ("init", "service"):
        proc = seen[what]
        assert proc is not None, seen
        own = {"anon_inode:[signalfd]"} if what == "init" else set()  # catatonit's own, made after exec
        assert [n for n, t in proc["fds"].items() if n not in ("0", "1", "2") and t not in own] == [], (what, proc)
        assert all(proc["fds"].get(n) for n in ("0", "1", "2")), (what, proc)
        assert proc["cwd_is_root"], (what, proc)  # the guest's / (the root folder, as the host sees it)


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_connection_gives_no_host_fd_or_tty(lab, lab_guest, ansible):
    """``raw`` through linuxns.guests.guest: ssh -tt gives the entry program the lab host's
    /dev/pts/N on 0/1/2 (checked: ``tty`` on the host says so); the command in the guest
    gets pipes (the relay), and no other fd.  Without a tty (ansible_ssh_use_tty=false)
    the same."""
    from lab import ssh_common_args

    inventory = os.path.join(lab_guest["base"], "fdx.guests.yml")
    with open(inventory, "w") as f:
        json.dump({"plugin": "linuxns.guests.guests", "hostname_template": "{guest}", "guest_vars": {"ansible_python_interpreter": "/usr/bin/python3"},
                   "hosts": {"lab1": {"address": lab.host(1).address, "guests": [{"name": LAB_GUEST}], "vars": {
                       "ansible_user": "root", "ansible_ssh_private_key_file": str(lab.key_path),
                       "ansible_ssh_common_args": " ".join(ssh_common_args(lab.state_dir))}}}}, f)
    host = ansible.adhoc("lab1", "raw", "tty; readlink /proc/self/fd/0")
    host_tty = host.last["stdout_lines"]
    assert host_tty and host_tty[0].startswith("/dev/pts/"), host.last.result  # ssh -tt: the host side has a tty
    from harness import _bin

    probe = "tty; ls -l /proc/self/fd"
    for use_tty in ("true", "false"):
        record = ansible.workdir / ("fdx-raw-%s.jsonl" % use_tty)
        run = ansible._run([_bin("ansible"), LAB_GUEST, "-i", inventory, "-m", "raw", "-a", probe, "-e", "ansible_ssh_use_tty=%s" % use_tty],
                           record, False, 300)
        lines = run.last["stdout"].replace("\r", "").splitlines()
        assert "not a tty" in lines, (use_tty, lines)
        table = fd_table("\n".join(lines))
        assert sorted(table) == [0, 1, 2], (use_tty, lines)
        assert not any("/dev/pts" in t or "ptmx" in t for t in table.values()), (use_tty, table)
