"""linuxns-guest (the operator's command) and guest_enter_exec's detach and tty, over real ssh
against a lab host.

The command is installed by the role guest_host (tasks/operator.yml, into the lab host's private
/run); ``enter`` runs under ``ssh -tt`` on a pseudo-terminal driven like a person at a terminal
(tests/integration/ptydriver.py); what it did is checked from outside (the lab host's /proc,
the guest's pins, namespace_info).
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from harness import busybox_tree
from harness import lab_exec as _lab_exec
from ptydriver import Terminal

pytestmark = pytest.mark.integration

CREATE = "linuxns.guests.namespace_create"
EXEC = "linuxns.guests.guest_enter_exec"
INFO = "linuxns.guests.namespace_info"
PROG = "/run/linuxns-it-operator/linuxns-guest"
STATE = "/run/linuxns"
GUESTS = ["lco1", "lco2", "lco3"]


@pytest.fixture(scope="module")
def fleet(lab, ansible):
    """linuxns-guest installed by the role; lco1 (busybox root, context id 71) and lco2 (no root) joined by
    a veth with addresses, lco3 (root, an init of its own) for stop/start; all removed at the end."""
    base = "/var/tmp/linuxns-it-operator-%d" % os.getpid()
    root = os.path.join(base, "root")
    busybox_tree(root, ["etc", "proc", "dev", "tmp", "sys", "root"], passwd=True)
    try:
        run = ansible.playbook([
            {"ansible.builtin.include_role": {"name": "linuxns.guests.guest_host", "tasks_from": "operator.yml"},
             "vars": {"guest_host_operator_path": PROG, "guest_host_operator_python": "/usr/bin/python3"}},
            {CREATE: {"stop_timeout": 1, "guests": [
                {"name": "lco1", "root": root, "hostname": "lco1.lab", "context_id": 71},
                {"name": "lco2", "namespaces": ["net", "uts", "mnt"]},
                {"name": "lco3", "root": root, "hostname": "lco3.lab", "init": ["/bin/sh", "-c", "exec sleep 100000"]}]}},
            {"linuxns.guests.netns_link": {"guest": "lco1", "ifname": "to2", "addresses": ["198.19.71.1/30"],
                                           "peer": {"guest": "lco2", "ifname": "to1", "addresses": ["198.19.71.2/30"]}}},
        ])
        installed = None
        for r in run.results:  # the first copy: the program's install
            if r.action.endswith("copy"):
                installed = r
                break
        assert installed is not None and installed.changed and installed["mode"] == "0755", installed.result
        yield {"root": root}
    finally:
        ansible.playbook([{CREATE: {"guests": GUESTS, "state": "absent", "stop_timeout": 1}}])
        _lab_exec(lab, "lab1", ["rm", "-rf", os.path.dirname(PROG)], check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def ssh_lg(lab):
    """linuxns-guest run over ssh (no terminal) on lab1: (rc, stdout, stderr)."""
    import subprocess

    def run(*args):
        res = subprocess.run(lab.ssh_argv(1, [PROG, *args]), capture_output=True, text=True, check=False)
        return res.returncode, res.stdout, res.stderr

    return run


BATCH = ("import json, subprocess, sys\n"
         "out = []\n"
         "for argv in json.loads(sys.argv[1]):\n"
         "    r = subprocess.run(argv, capture_output=True, text=True)\n"
         "    out.append([r.returncode, r.stdout, r.stderr])\n"
         "print(json.dumps(out))\n")


@pytest.fixture
def ssh_batch(lab):
    """Several linuxns-guest commands in one ssh call on lab1 (one after the other): [(rc, stdout, stderr)]."""
    import shlex
    import subprocess

    def run(*commands):
        argvs = json.dumps([[PROG, *args] for args in commands])
        res = subprocess.run(lab.ssh_argv(1, ["python3", "-c", shlex.quote(BATCH), shlex.quote(argvs)]), capture_output=True,
                             text=True, check=True)
        return [tuple(r) for r in json.loads(res.stdout)]

    return run


def in_pid_ns(lab_exec, ino: int) -> list:
    """(pid, comm) of the lab host's processes in the pid namespace with this inode."""
    script = ("for p in /proc/[0-9]*; do [ \"$(stat -L -c %%i $p/ns/pid 2>/dev/null)\" = %d ] && "
              "echo ${p#/proc/} $(cat $p/comm); done; true" % ino)
    return sorted(tuple(line.split(None, 1)) for line in lab_exec("lab1", ["sh", "-c", script]).stdout.splitlines())


def pin_ino(lab_exec, guest, nstype):
    return int(lab_exec("lab1", ["stat", "-L", "-c", "%i", "%s/guests/%s/ns/%s" % (STATE, guest, nstype)]).stdout)


def foreground(ino: int, comm: str) -> int:
    """Wait until a process named ``comm`` of the pid namespace ``ino`` is its terminal's foreground job
    (the machine's /proc sees the lab host's processes)."""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        for pid in os.listdir("/proc"):
            try:
                if not pid.isdigit() or os.stat("/proc/%s/ns/pid" % pid).st_ino != ino:
                    continue
                with open("/proc/%s/stat" % pid) as f:
                    head, rest = f.read().rsplit(")", 1)
            except OSError:
                continue
            fields = rest.split()
            if head.endswith("(" + comm) and fields[2] == fields[5]:  # pgrp == tpgid
                return int(pid)
        time.sleep(0.02)
    raise AssertionError("no %s became the foreground job of its terminal" % comm)


# ------------------------------------------------------------------------------------------
# enter, on a terminal, over ssh -tt
# ------------------------------------------------------------------------------------------
def test_enter_a_shell_over_ssh(fleet, lab, lab_exec):
    ino = pin_ino(lab_exec, "lco1", "pid")
    init = in_pid_ns(lab_exec, ino)
    mounts = lab_exec("lab1", ["sh", "-c", "wc -l < /proc/%s/mountinfo" % init[0][0]]).stdout
    argv = lab.ssh_argv(1, [PROG, "enter", "lco1"])
    argv.insert(1, "-tt")
    term = Terminal(argv, rows=30, cols=100, env={"TERM": "xterm"})
    try:
        term.expect("# ")
        term.type("echo A$((6*7)); tty; stty size; hostname; cat /proc/1/comm; echo $TERM\r")
        screen = term.expect("xterm\r\n")
        assert "A42\r\n/dev/pts/0\r\n30 100\r\nlco1.lab\r\n" in screen, screen
        term.resize(50, 132)  # ssh sends the window change; linuxns-guest passes it to the guest's terminal
        term.type("stty size; echo B$((1+1))\r")
        assert "50 132\r\nB2" in term.expect("B2\r\n")
        term.type("sleep 300; echo C$((2+1))\r")
        foreground(ino, "sleep")
        term.type("\x03")  # ^C: SIGINT from the guest's terminal to its foreground job
        term.type("echo D$((3+1))\r")
        term.expect("D4\r\n")
        term.type("exit 5\r")
        assert term.wait() == 5
    finally:
        term.kill()
    # nothing is left: the guest holds its init only, no linuxns-guest runs, its mount table is as before
    assert in_pid_ns(lab_exec, ino) == init
    left = lab_exec("lab1", ["sh", "-c", "grep -l linuxns-gues[t] /proc/[0-9]*/cmdline 2>/dev/null; true"]).stdout
    assert left.strip() == "", left
    assert lab_exec("lab1", ["sh", "-c", "wc -l < /proc/%s/mountinfo" % init[0][0]]).stdout == mounts


# ------------------------------------------------------------------------------------------
# list and status against namespace_info; exec; bad input
# ------------------------------------------------------------------------------------------
def test_list_and_status_match_namespace_info(fleet, ssh_batch, ansible):
    info = ansible.adhoc("lab1", INFO, {"guests": GUESTS, "links": True}).last.result
    views = {g["name"]: g for g in info["guests"]}
    (rc, out, err), (_rc, table, _err), status, unknown = ssh_batch(["list", "--json"], ["list"], ["status", "71"], ["status", "nope"])
    assert rc == 0, err
    rows = {r["name"]: r for r in json.loads(out)["guests"] if r["name"] in GUESTS}
    assert set(rows) == set(GUESTS)
    for name, view in views.items():
        row = rows[name]
        assert (row["context_id"], row["state"], row["init_pid"]) == (view["context_id"], "running", view["init_pid"])
        addrs = sorted(a for link in view["links"] if link["ifname"] != "lo" for a in link["addresses"])
        assert sorted(row["addresses"]) == addrs
        assert row["pids"] == view["cgroup"]["pids_current"]
    assert "198.19.71.1/30" in rows["lco1"]["addresses"] and rows["lco1"]["context_id"] == 71
    line = next(x for x in table.splitlines() if x.startswith("lco1 "))
    assert line.split()[:4] == ["lco1", "71", "running", str(views["lco1"]["init_pid"])] and "198.19.71.1/30" in line
    assert status[0] == 0 and status[1].startswith("lco1 (context 71): running, init pid %s" % views["lco1"]["init_pid"])
    assert unknown[0] == 4 and "'nope'" in unknown[2]


def test_exec_and_bad_usage(fleet, ssh_batch):
    usage = (["frobnicate"], ["exec", "lco1", "true"], ["status"], ["enter"])
    runs = ssh_batch(["exec", "lco1", "--", "sh", "-c", "hostname; echo err >&2; exit 7"], ["exec", "lco1", "--", "no-such-program"],
                     ["exec", "ghost", "--", "true"], *usage)
    assert runs[0] == (7, "lco1.lab\n", "err\n")
    assert runs[1][0] == 127 and "was not found inside guest 'lco1'" in runs[1][2]
    assert runs[2][0] == 4 and "no guest named 'ghost' on this host" in runs[2][2]
    for args, (rc, _out, err) in zip(usage, runs[3:]):
        assert rc == 2 and err.startswith("linuxns-guest: ") and "usage:" in err and "Traceback" not in err, (args, err)


def test_stop_start_restart(fleet, ssh_batch, lab_exec):
    before, stop, stopped, exec_, enter_, start, now, host = ssh_batch(
        ["status", "lco3", "--json"], ["stop", "lco3"], ["status", "lco3"], ["exec", "lco3", "--", "true"], ["enter", "lco3"],
        ["start", "lco3"], ["status", "lco3", "--json"], ["exec", "lco3", "--", "hostname"])
    before, now = json.loads(before[1]), json.loads(now[1])
    assert stop[0] == 0 and "stopped" in stop[1], stop
    assert stopped[0] == 3 and "lco3 (context %d): stopped" % before["context_id"] in stopped[1], stopped
    for rc, _out, err in (exec_, enter_):
        assert rc == 125 and "guest 'lco3' is not running" in err and "linuxns-guest start lco3" in err, err
    assert start[0] == 0 and start[1].startswith("lco3: started (context %d" % before["context_id"]), start
    assert now["state"] == "running" and now["context_id"] == before["context_id"] and now["init_pid"] != before["init_pid"]
    assert host == (0, "lco3.lab\n", "")
    restart, again = ssh_batch(["restart", "lco3"], ["status", "lco3", "--json"])
    assert restart[0] == 0 and json.loads(again[1])["init_pid"] != now["init_pid"]


# ------------------------------------------------------------------------------------------
# guest_enter_exec: detach and tty
# ------------------------------------------------------------------------------------------
def test_detach_outlives_the_task(fleet, ansible_playbook, lab_exec):
    task = {EXEC: {"guest": "lco1", "argv": ["sh", "-c", "echo started-$((1+1)); exec sleep 300"], "detach": True,
                   "detach_log": "/tmp/op-detach.log"}}
    ino = pin_ino(lab_exec, "lco1", "pid")
    before = in_pid_ns(lab_exec, ino)
    check = ansible_playbook([task], check=True).last
    assert check.changed is False or check.get("skipped"), check.result  # check mode starts nothing
    assert in_pid_ns(lab_exec, ino) == before
    res = ansible_playbook([task]).last
    pid = res["pid"]
    try:
        assert res.changed and res["rc"] == 0 and res["detach_log"] == "/tmp/op-detach.log", res.result
        # after the task: still running, a child of the guest's init, its output in the file inside the guest
        status = lab_exec("lab1", ["cat", "/proc/%d/status" % pid]).stdout
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        init = before[0][0]
        assert fields["PPid"].strip() == init and fields["NSpid"].split()[-1] == str(res["guest_pid"])
        assert lab_exec("lab1", ["cat", "/proc/%d/comm" % pid]).stdout == "sleep\n"
        log = lab_exec("lab1", ["nsenter", "-t", init, "-m", "cat", "/tmp/op-detach.log"]).stdout
        assert log == "started-2\n"
        creates = ansible_playbook([{EXEC: dict(task[EXEC], creates="/tmp/op-detach.log")}]).last
        assert not creates.changed and "exists" in creates["msg"]
    finally:
        lab_exec("lab1", ["kill", "-9", str(pid)], check=False)
        lab_exec("lab1", ["rm", "-f", os.path.join(fleet["root"], "tmp", "op-detach.log")], check=False)


def test_tty_gives_a_terminal(fleet, ansible_playbook):
    res = ansible_playbook([{EXEC: {"guest": "lco1", "cmd": "sh -c 'test -t 0 && test -t 1 && tty; stty size; read a; echo a=$a'",
                                    "tty": True, "stdin": "typed"}}]).last
    assert res.changed and res["rc"] == 0 and res["tty"], res.result
    lines = res["stdout_lines"]
    assert lines[0].startswith("/dev/pts/") and lines[1:] == ["24 80", "a=typed"], lines
    plain = ansible_playbook([{EXEC: {"guest": "lco1", "cmd": "sh -c 'test -t 0 || echo no-terminal'"}}]).last
    assert plain["stdout"] == "no-terminal"


def test_bad_input(fleet, ansible_playbook, ssh_lg):
    """Each bad input gets a clear message and starts nothing."""
    bad = [
        ({"guest": "lco1", "argv": ["true"], "detach": True, "tty": True}, "detach and tty cannot be used together"),
        ({"guest": "lco1", "argv": ["true"], "detach": True, "timeout": 5}, "timeout cannot be used with detach"),
        ({"guest": "lco1", "argv": ["true"], "detach": True, "detach_log": "rel.log"}, "detach_log must be an absolute path"),
        ({"guest": "ghost", "argv": ["true"], "detach": True}, "guest 'ghost' does not exist"),
        ({"guest": "ghost", "argv": ["true"], "tty": True}, "guest 'ghost' does not exist"),
    ]
    run = ansible_playbook([{EXEC: args, "ignore_errors": True} for args, _msg in bad])
    for (args, msg), res in zip(bad, run.results):
        assert res.failed and msg in res["msg"] and "Traceback" not in res["msg"], (args, res.result)
    assert ssh_lg("stop", "lco3")[0] == 0
    try:
        stopped = ansible_playbook([{EXEC: {"guest": "lco3", "argv": ["true"], "detach": True}}], expect_fail=True).last
        assert stopped.failed and "guest 'lco3' is not running" in stopped["msg"], stopped.result
    finally:
        assert ssh_lg("start", "lco3")[0] == 0
