# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CVE-2019-5736 class on the entry path: a guest whose /bin/sh is ``#!/proc/self/exe``.

Attacks from a guest with a root, over real ssh, as its root would try them (issue 13,
"The entry path ... CVE-2019-5736 class"): the guest's ``/bin/sh`` is a script whose
interpreter is ``/proc/self/exe``.  A shell command run by ``guest_enter_exec``, or by the
connection's ``raw`` or ``command``, execs ``/bin/sh`` from the process that entered the
guest, so the kernel runs *that* process's own program again, inside the guest, with
``/bin/sh`` as its script: before the fix, the host's Python.  The script (Python, then)
reports what its ``/proc/self/exe`` is, opens it for writing (``O_WRONLY``, and ``O_PATH``
reopened through ``/proc/self/fd``; never a byte written) and reads its seals.

Harmless even when the protection is missing: the host interpreter the probes can reach is
a COPY of python3.11, bound over /usr/bin/python3.11 inside lab1's own mount namespace
only (never the machine's file); its sha256 and times are checked from outside.  One lab
guest for the module; one ansible call per probe set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil

import harness
import pytest

pytestmark = pytest.mark.integration

CREATE = "linuxns.guests.namespace_create"
MOUNT = "linuxns.guests.namespace_mount"
EXEC = "linuxns.guests.guest_enter_exec"
NAME = "sec-exe"
PYTHON = "/usr/bin/python3.11"
MARK = "EXE5736"

# The guest's /bin/sh: run by whatever /proc/self/exe was in the process that exec'd it.
# It is Python only because that is what the old code ran; a clone of it runs it the same.
SH = r"""#!/proc/self/exe
import errno, fcntl, json, os

def err(exc):
    return errno.errorcode.get(exc.errno, str(exc.errno))

def open_for_write(path):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        return err(exc)
    os.close(fd)  # never a byte written
    return "OPENED"

""" + harness.EXE_PROBE + r"""
out = exe_probe("/proc/self/exe")
try:
    os.utime("/proc/self/exe", None)  # would reach the host file's times
    out["utime"] = "done"
except OSError as exc:
    out["utime"] = err(exc)
print("EXE5736 " + json.dumps(out), flush=True)
"""


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def reports(text: str) -> list:
    """The probe's reports found in ``text`` (stdout, or a failed module's output)."""
    return [json.loads(m) for m in re.findall(MARK + r" (\{.*?\})(?:\\r|\\n|\r|\n|$|\")", text.replace('\\"', '"'))]


@pytest.fixture(scope="module")
def guest(lab, ansible):
    """lab1's python3.11 is a copy (bound over it in lab1's mount namespace); the guest: a
    busybox root with lab1's /usr read-only and the hostile /bin/sh."""
    def run(argv, check=True):
        return harness.lab_exec(lab, "lab1", argv, check=check)

    base = "/var/tmp/linuxns-sec-exe-%d" % os.getpid()  # /var/tmp: seen by the lab hosts
    root = os.path.join(base, "root")
    copy = os.path.join(base, "python3.11")
    tables = base + "/tables"
    os.makedirs(base)
    bound = False
    try:
        harness.busybox_tree(root, ("etc", "root", "usr", "tmp"), libs=True, passwd=True)
        os.unlink(os.path.join(root, "bin", "sh"))
        with open(os.path.join(root, "bin", "sh"), "w") as f:
            f.write(SH)
        os.chmod(os.path.join(root, "bin", "sh"), 0o755)
        shutil.copy2(PYTHON, copy)
        st = os.stat(copy)
        before = (sha256(copy), st.st_mtime_ns, st.st_atime_ns)
        run(["mount", "--bind", copy, PYTHON])  # lab1's own mount namespace (private)
        bound = True
        ansible.playbook([
            {CREATE: {"name": NAME, "root": root, "table_dir": tables}},
            {MOUNT: {"guest": NAME, "table_dir": tables,
                     "mounts": [{"path": "/usr", "src": "/usr", "fstype": "bind", "opts": "ro,nosuid,nodev"}]}},
        ])
        yield {"copy": copy, "before": before, "base": base, "ino": (st.st_dev, st.st_ino)}
    finally:
        ansible.playbook([{CREATE: {"name": NAME, "state": "absent", "stop_timeout": 2, "table_dir": tables}}])
        if bound:
            run(["umount", PYTHON])
        shutil.rmtree(base, ignore_errors=True)


def check(report: dict, guest: dict) -> None:
    """The process the guest's code ran in must not lead to the host's interpreter (the copy)."""
    assert report["write"] != "OPENED" and report["reopen"] != "OPENED", report
    assert report["link"].startswith("/memfd:"), report  # the anonymous sealed clone, not a host path
    assert isinstance(report["seals"], int) and report["seals"] & 0xF == 0xF, report  # SEAL|SHRINK|GROW|WRITE
    assert report["utime"] != "done" or tuple(report["dev_ino"]) != guest["ino"], report


def unchanged(guest: dict) -> None:
    st = os.stat(guest["copy"])
    assert (sha256(guest["copy"]), st.st_mtime_ns) == guest["before"][:2]


@pytest.mark.timeout(600)
def test_guest_enter_exec_never_runs_the_hosts_python_inside(guest, ansible):
    """CVE-2019-5736 class, guest_enter_exec: ``cmd`` with ``shell: true`` and an argv
    that starts /bin/sh, in check mode too (only the creates/removes probe runs inside)."""
    run = ansible.playbook([
        {"name": "shell", EXEC: {"guest": NAME, "cmd": "true", "shell": True}, "ignore_errors": True},
        {"name": "argv", EXEC: {"guest": NAME, "argv": ["/bin/sh", "-c", "true"]}, "ignore_errors": True},
    ])
    for task in ("shell", "argv"):
        found = reports(json.dumps(run.task(task).result))
        assert found, run.task(task).result  # the hostile /bin/sh ran (and reported)
        for report in found:
            check(report, guest)
    unchanged(guest)


@pytest.mark.timeout(600)
def test_connection_never_runs_the_hosts_python_inside(lab, guest, ansible):
    """CVE-2019-5736 class, the connection (linuxns.guests.guest): ``raw`` and ``command``
    both reach the guest's /bin/sh -c through the entry program."""
    from harness import _bin
    from lab import ssh_common_args

    inventory = os.path.join(guest["base"], "exe.guests.yml")
    with open(inventory, "w") as f:
        json.dump({"plugin": "linuxns.guests.guests", "hostname_template": "{guest}",
                   "guest_vars": {"ansible_python_interpreter": "/usr/bin/python3"},
                   "hosts": {"lab1": {"address": lab.host(1).address, "guests": [{"name": NAME}], "vars": {
                       "ansible_user": "root", "ansible_ssh_private_key_file": str(lab.key_path),
                       "ansible_ssh_common_args": " ".join(ssh_common_args(lab.state_dir))}}}}, f)
    texts = {}
    for module, args in (("raw", "true"), ("command", "true")):
        record = ansible.workdir / ("exe-%s.jsonl" % module)
        run = ansible._run([_bin("ansible"), NAME, "-i", inventory, "-m", module, "-a", args], record, module == "command", 300,
                           pipelining=True)
        texts[module] = json.dumps(run.last.result)
    for module, text in texts.items():
        found = reports(text)
        assert found, (module, text)
        for report in found:
            check(report, guest)
    unchanged(guest)
