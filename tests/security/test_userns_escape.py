# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest root in a ``userns: auto`` guest is not host root (issue 16), attacked as its root would.

Two guests that differ only in ``userns: auto``: both ``privileged: true`` (no capability
cut, no seccomp filter: the user namespace is the only barrier measured), both sharing the
host's pid namespace (host processes are visible) and without a root (the host's Python
runs the probe).  The guest without a user namespace is the old code's guest: there every
attack works, which shows that each probe is live and that this test fails without the
user namespace.  The probes are harmless when they work:

- T1 write a host-owned file bound into the guest (namespace_mount, rw bind): a marker the
  test made (append of nothing: open only);
- T2 read a host root-only file bound read-only: a marker of mode 0600;
- T3 kernel modules: ``delete_module`` of a module name that does not exist (the kernel
  checks CAP_SYS_MODULE in the initial user namespace first: EPERM, else ENOENT; a kernel
  without module support, as this machine's, says ENOSYS to both and T4/T7 carry the point:
  ``capable()`` checks CAP_SYS_MODULE and CAP_SYS_TIME in the initial user namespace only);
- T4 the host clock: ``settimeofday(NULL, NULL)`` (the kernel checks CAP_SYS_TIME, then sets
  nothing);
- T5 signal a host process: ``kill(pid, 0)`` of a ``sleep`` the test started as host root;
- T6 signal the other ``userns: auto`` guest's processes: ``kill(pid, 0)`` of its init;
- T8 a host binary reached through /proc/self/exe (the host's Python, which runs the probe:
  the CVE-2019-5736 path of issue 13): ``access(W_OK)`` and an open for writing.  Host root
  passes the permission check (only the running text's ETXTBSY stops the open, which a
  copy without that guard would not have); guest root of the user namespace is refused
  (EACCES: the file's owner, host root, is not mapped in its namespace);
- T7 capabilities: from outside, the guest's processes run as its range's first id, in a
  user namespace that is not the host's, whose every capability is in that namespace only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import execute, guests, mounts, persist

pytestmark = pytest.mark.unit

POOL = "3100000000:200000"  # above every id of this machine's /etc/passwd and /etc/group

PROBE = r"""
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a = json.loads(sys.argv[1])

def res(rc):
    return "ok" if rc == 0 else errno.errorcode[ctypes.get_errno()]

def try_(f):
    try:
        f()
        return "ok"
    except OSError as exc:
        return errno.errorcode[exc.errno]

out = {
    "T1": try_(lambda: os.close(os.open(a["bound"], os.O_WRONLY | os.O_APPEND))),
    "T2": try_(lambda: open(a["secret"]).read()),
    "T3": res(libc.syscall(176, b"linuxns_no_such_module", os.O_NONBLOCK)),  # delete_module (x86_64)
    "T4": res(libc.syscall(164, None, None)),  # settimeofday(NULL, NULL) (x86_64); glibc's wrapper reads *tv
    "T5": try_(lambda: os.kill(a["host_pid"], 0)),
    "T6": try_(lambda: os.kill(a["other_init"], 0)),
    "T8": [os.access("/proc/self/exe", os.W_OK), try_(lambda: os.close(os.open("/proc/self/exe", os.O_WRONLY)))],
    "uid": os.getuid(),
    "map": open("/proc/self/uid_map").read().split(),
}
print(json.dumps(out))
"""


def status(pid: int) -> dict:
    with open("/proc/%d/status" % pid) as f:
        return dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the delete_module syscall number is x86_64's")
def test_guest_root_in_a_user_namespace_is_not_host_root(unit_registry):
    r = unit_registry
    table = persist.resolve_table_dir(r.state_dir)
    base = tempfile.mkdtemp(prefix="linuxns-sec-userns-", dir="/var/tmp")
    sleeper = subprocess.Popen(["sleep", "600"])  # a host process (host root's)
    common = {"privileged": True, "namespaces": ["mnt", "uts"]}
    names = ("su-old", "su-new", "su-other")
    try:
        os.chmod(base, 0o755)
        for d in ("rw", "ro"):
            os.mkdir(os.path.join(base, d))
        bound, secret = os.path.join(base, "rw", "marker"), os.path.join(base, "ro", "secret")
        for path, mode in ((bound, 0o644), (secret, 0o600)):
            with open(path, "w") as f:
                f.write("host\n")
            os.chmod(path, mode)
        out = guests.ensure_guests(r, [dict(common, name="su-old"), dict(common, name="su-new", userns="auto"),
                                       dict(common, name="su-other", userns="auto", namespaces=["mnt", "uts", "pid"])],
                                   userns_pool=POOL)
        made = {res["name"]: res["guest"] for res in out["results"]}
        binds = [{"path": base + "/in-rw", "src": base + "/rw", "fstype": "bind"},
                 {"path": base + "/in-ro", "src": base + "/ro", "fstype": "bind", "opts": "ro"}]
        for d in ("in-rw", "in-ro"):
            os.mkdir(os.path.join(base, d))
        args = {"bound": base + "/in-rw/marker", "secret": base + "/in-ro/secret", "host_pid": sleeper.pid,
                "other_init": made["su-other"]["init_pid"]}
        seen = {}
        for name in ("su-old", "su-new"):
            mounts.converge(r, name, binds, table_dir=table)
            run = execute.run(r.find(name), execute.Request(argv=[sys.executable, "-c", PROBE, json.dumps(args)]))
            assert run["rc"] == 0, run
            seen[name] = json.loads(run["stdout"])
        modules = seen["su-old"].pop("T3") != "ENOSYS"  # a kernel with module support
        new_t3 = seen["su-new"].pop("T3")
        # the old code's guest (no user namespace): guest root is host root, every attack works
        assert seen["su-old"] == {"T1": "ok", "T2": "ok", "T4": "ok", "T5": "ok", "T6": "ok", "uid": 0,
                                  "T8": [True, "ETXTBSY"],
                                  "map": ["0", "0", "4294967295"]}
        # userns: auto: root inside, nobody's files refused, no capability in the initial user namespace
        assert seen["su-new"] == {"T1": "EACCES", "T2": "EACCES", "T4": "EPERM", "T5": "EPERM", "T6": "EPERM", "uid": 0,
                                  "T8": [False, "EACCES"],
                                  "map": ["0", str(made["su-new"]["userns_range"]["start"]), "65536"]}
        assert new_t3 == ("EPERM" if modules else "ENOSYS")
        with open(bound) as f:
            assert f.read() == "host\n"
        # T7 from outside: the other guest's init runs as its range's first id, in a user namespace that is
        # not the host's, whose full capability set counts in that namespace only; the two ranges are disjoint
        pid, rng = made["su-other"]["init_pid"], made["su-other"]["userns_range"]
        st = status(pid)
        assert st["Uid"].split() == [str(rng["start"])] * 4 and st["Gid"].split()[0] == str(rng["start"])
        assert os.stat("/proc/%d/ns/user" % pid).st_ino != os.stat("/proc/self/ns/user").st_ino  # this test: host root
        assert int(st["CapEff"], 16) != 0
        (a0, a1), (b0, b1) = ((g["userns_range"]["start"], g["userns_range"]["start"] + g["userns_range"]["size"])
                              for g in (made["su-new"], made["su-other"]))
        assert a1 <= b0 or b1 <= a0
    finally:
        sleeper.kill()
        sleeper.wait()
        guests.ensure_guests(r, [{"name": n, "state": "absent", "purge": True} for n in names], userns_pool=POOL)
        shutil.rmtree(base, ignore_errors=True)
