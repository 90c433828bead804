# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Privileges of guest root: the escapes a cut bounding set, no_new_privs and seccomp close.

Before the confinement, every process entering a guest kept every capability of host
root (CapEff/CapBnd 000001fffeffffff), with no seccomp filter and no no_new_privs.  One
module-scoped guest with a busybox root on lab1 (its pid namespace, the lab host's /usr
bound read-only for Python, a marker folder bound read-only); ONE guest_enter_exec task
over real ssh runs every probe inside it and prints JSON; each test below checks one
technique in that answer.

Every probe is harmless even when the protection is missing: it reads only a marker the
test made, makes a block-device node in a folder of its own and removes it, mounts a
tmpfs and unmounts it, remounts a bind that exists only in the guest's mount namespace,
ptraces a child of its own, and calls kexec_load, init_module, finit_module,
delete_module, bpf, keyctl and open_by_handle_at with arguments that could never succeed
(an invalid fd, NULL pointers, flags the kernel refuses before doing anything).

LINUXNS_SEC_PRIVILEGED=1 runs the same probes in a ``privileged: true`` guest - today's
full set, which is what every guest had before: then every test here fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import harness
import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import confine, confine_status

pytestmark = pytest.mark.integration

# the lab fixtures of tests/integration (lab, ansible, lab_exec)
_IT_CONFTEST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration", "conftest.py")
_spec = importlib.util.spec_from_file_location("linuxns_security_integration_conftest", _IT_CONFTEST)
_it = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_it)
lab, ansible, lab_exec = _it.lab, _it.ansible, _it.lab_exec

CREATE = "linuxns.guests.namespace_create"
MOUNT = "linuxns.guests.namespace_mount"
EXEC = "linuxns.guests.guest_enter_exec"
NAME = "sec-caps"
PRIVILEGED = os.environ.get("LINUXNS_SEC_PRIVILEGED", "") not in ("", "0")
SECRET = "linuxns-shocker-marker"
EPERM = 1

# Run inside the guest by its /usr/bin/python3 (the lab host's, bound read-only).
PROBE = r'''
import ctypes, errno, json, os, stat, sys
NR = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
out = {}

def err(ret):
    return 0 if ret >= 0 else ctypes.get_errno()

# /proc/self/status
for line in open("/proc/self/status"):
    k, _, v = line.partition(":")
    if k in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb", "NoNewPrivs", "Seccomp"):
        out[k] = v.strip()

# shocker: name_to_handle_at on our marker, then open_by_handle_at (CAP_DAC_READ_SEARCH; seccomp)
class FH(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("f_handle", ctypes.c_ubyte * 128)]
fh = FH(128, 0)
mid = ctypes.c_int()
r = libc.name_to_handle_at(-100, b"/probe/marker", ctypes.byref(fh), ctypes.byref(mid), 0)
if r != 0:
    out["shocker"] = ["name_to_handle_at", ctypes.get_errno()]
else:
    mfd = os.open("/probe", os.O_RDONLY | os.O_DIRECTORY)
    fd = libc.open_by_handle_at(mfd, ctypes.byref(fh), os.O_RDONLY)
    e = ctypes.get_errno()
    if fd >= 0:
        out["shocker"] = ["read", os.read(fd, 100).decode()]
        os.close(fd)
    else:
        out["shocker"] = ["open_by_handle_at", e]
    os.close(mfd)

# mknod of a block device (loop0) in a folder of our own; removed at once if it worked
d = "/probe/tmp/mknod"
os.makedirs(d, exist_ok=True)
try:
    os.mknod(d + "/blk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    out["mknod"] = 0
    os.unlink(d + "/blk")
except OSError as e:
    out["mknod"] = e.errno
os.rmdir(d)

# mount -t tmpfs (unmounted at once if it worked)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
os.makedirs("/probe/tmp/mnt", exist_ok=True)
out["mount_tmpfs"] = err(libc.mount(b"none", b"/probe/tmp/mnt", b"tmpfs", 0, None))
if out["mount_tmpfs"] == 0:
    libc.umount2(b"/probe/tmp/mnt", 2)
os.rmdir("/probe/tmp/mnt")

# remount the read-only bind of the marker folder read-write (MS_REMOUNT | MS_BIND), then write
out["remount_rw"] = err(libc.mount(None, b"/ro", None, 32 | 4096, None))
try:
    with open("/ro/written", "w") as f:
        f.write("x")
    out["write_ro"] = 0
    os.unlink("/ro/written")
except OSError as e:
    out["write_ro"] = e.errno

# host-affecting syscalls with arguments that can never succeed
libc.syscall.restype = ctypes.c_long
calls = {
    "kexec_load": (0, 1000, None, 0xFFFFFFFF),   # too many segments, unknown flags: EINVAL before anything
    "init_module": (None, 0, None),              # an empty image: ENOEXEC
    "finit_module": (-1, None, 0),               # fd -1: EBADF
    "delete_module": (None, 0),                  # name NULL: EFAULT
    "bpf": (-1, None, 0),                        # no such command: EINVAL
    "keyctl": (-1, 0, 0, 0, 0),                  # no such operation: EOPNOTSUPP
    "open_by_handle_at": (-1, None, 0),          # fd -1, handle NULL
}
out["syscalls"] = {}
for name, args in calls.items():
    ret = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) if isinstance(a, int) else ctypes.c_void_p(a) for a in args])
    out["syscalls"][name] = err(ret)

# ptrace of a non-dumpable root process (as the joiner is until exec): CAP_SYS_PTRACE
PR_SET_DUMPABLE, PTRACE_ATTACH, PTRACE_DETACH = 4, 16, 17
r, w = os.pipe()
go_r, go_w = os.pipe()
child = os.fork()
if child == 0:
    os.close(r); os.close(go_w)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    os.write(w, b"x")
    os.read(go_r, 1)
    os._exit(0)
os.close(w); os.close(go_r)
os.read(r, 1)
libc.ptrace.restype = ctypes.c_long
ret = libc.ptrace(ctypes.c_long(PTRACE_ATTACH), ctypes.c_long(child), None, None)
out["ptrace"] = err(ret)
if ret == 0:
    os.waitpid(child, os.WUNTRACED | 0x40000000)  # __WALL
    libc.ptrace(ctypes.c_long(PTRACE_DETACH), ctypes.c_long(child), None, None)
os.close(go_w)
os.waitpid(child, 0)
print(json.dumps(out))
'''


def make_root(path: str) -> None:
    """A busybox root; /usr and /ro are empty mount points, /probe holds the marker."""
    harness.busybox_tree(path, ("etc", "usr", "proc", "dev", "ro", "probe/tmp"), libs=True)
    os.chmod(os.path.join(path, "probe", "tmp"), 0o1777)
    with open(os.path.join(path, "probe", "marker"), "w") as f:
        f.write(SECRET)


@pytest.fixture(scope="module")
def probes(lab, ansible):
    """The probes' answer, from ONE guest_enter_exec run in the module's guest."""
    base = "/var/tmp/linuxns-sec-caps-%d" % os.getpid()
    root, ro = base + "/root", base + "/ro"
    os.makedirs(ro)
    with open(ro + "/keep", "w") as f:
        f.write("read-only\n")
    make_root(root)
    numbers = {n: confine.SYSCALLS[confine.machine()][n] for n in
               ("kexec_load", "init_module", "finit_module", "delete_module", "bpf", "keyctl", "open_by_handle_at")}
    # its own table folder, given to every task: a folder noted in the lab host's state by an
    # earlier module must not receive this guest's kept files (nor this module's, a later one's)
    guest = {"name": NAME, "root": root, "table_dir": base + "/tables"}
    if PRIVILEGED:
        guest["privileged"] = True
    try:
        run = ansible.playbook([
            {"name": "guest", CREATE: guest},
            {"name": "mounts", MOUNT: {"guest": NAME, "table_dir": base + "/tables", "mounts": [
                {"path": "/usr", "src": "/usr", "fstype": "bind", "opts": "ro,nosuid,nodev"},
                {"path": "/ro", "src": ro, "fstype": "bind", "opts": "ro,nosuid,nodev"}]}},
            {"name": "probe", EXEC: {"guest": NAME, "argv": ["/usr/bin/python3", "-I", "-S", "-c", PROBE, json.dumps(numbers)]}},
        ])
        res = run.task("probe")
        assert res["rc"] == 0, res.result
        yield json.loads(res["stdout"])
    finally:
        ansible.playbook([{CREATE: {"name": NAME, "state": "absent", "stop_timeout": 2, "table_dir": base + "/tables"}}])
        assert not os.path.exists(ro + "/written")
        shutil.rmtree(base, ignore_errors=True)


def caps_of(mask: str) -> list:
    return confine_status.decode_caps(int(mask, 16))


def test_guest_root_has_the_default_bounding_set_no_new_privs_and_a_filter(probes):
    """/proc/self/status of guest root: CapBnd/CapEff cut to the default, nothing ambient or
    inheritable, NoNewPrivs 1, Seccomp 2 (filter) - before: 000001fffeffffff, 0, 0."""
    want = [n for n in confine.CAP_NAMES if n in confine.DEFAULT_CAPABILITIES]
    assert caps_of(probes["CapBnd"]) == caps_of(probes["CapEff"]) == caps_of(probes["CapPrm"]) == want
    assert caps_of(probes["CapInh"]) == caps_of(probes["CapAmb"]) == []
    assert (probes["NoNewPrivs"], probes["Seccomp"]) == ("1", "2")


def test_shocker_open_by_handle_at_cannot_read_a_marker(probes):
    """Shocker (Docker 2014): open_by_handle_at with CAP_DAC_READ_SEARCH opens any inode of a
    mounted file system by its handle; here only our own marker, which must not be read."""
    assert probes["shocker"] == ["open_by_handle_at", EPERM]


def test_mknod_of_a_block_device_is_refused(probes):
    """mknod of a block device node (a path to host disks bypassing every mount): CAP_MKNOD."""
    assert probes["mknod"] == EPERM


def test_mount_of_a_new_tmpfs_is_refused(probes):
    """mount -t tmpfs inside a default guest (CAP_SYS_ADMIN; the filter's mount rule)."""
    assert probes["mount_tmpfs"] == EPERM


def test_a_read_only_bind_cannot_be_remounted_read_write(probes):
    """The host's folder bound read-only into the guest (docs/connection.md's /usr): a remount
    with MS_REMOUNT|MS_BIND would make it writable - refused, and writing stays EROFS."""
    assert probes["remount_rw"] == EPERM
    assert probes["write_ro"] == 30  # EROFS


@pytest.mark.parametrize("call", ["kexec_load", "init_module", "finit_module", "delete_module", "bpf", "keyctl", "open_by_handle_at"])
def test_kernel_replacing_and_host_wide_syscalls_get_eperm_from_seccomp(probes, call):
    """kexec and kernel-module loading, the (not namespaced) keyring, bpf, open_by_handle_at:
    EPERM from the filter whatever the arguments (these could never succeed anyway)."""
    assert probes["syscalls"][call] == EPERM


def test_ptrace_of_a_non_dumpable_process_is_refused(probes):
    """CVE-2016-9962 class: the joining process is non-dumpable until exec, which stops a
    guest process from ptracing it only without CAP_SYS_PTRACE (guest root had it)."""
    assert probes["ptrace"] == EPERM
