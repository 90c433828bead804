"""The confinement primitives (capabilities, no_new_privs, seccomp BPF), applied for real as root.

Every confined case runs in a forked child that applies the confinement, runs probes and
reports back through a pipe; the pytest process itself is never confined. Probes of blocked
calls use arguments that can never succeed and are harmless without the filter; each probe
also runs with the protection off ("unconfined") to show the kernel would have answered with
another errno - so the test can fail.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import traceback

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import confine, confine_status
from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput

pytestmark = pytest.mark.unit

ARCH = os.uname().machine
needs_arch = pytest.mark.skipif(ARCH not in confine.SYSCALLS, reason="no syscall table for %s" % ARCH)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="applies capabilities as root")
LAST = confine.cap_last_cap()
ALL_CAPS = [confine.cap_name(n) for n in range(LAST + 1)]
DEFAULT = list(confine.DEFAULT_CAPABILITIES)
NR = confine.SYSCALLS.get(ARCH, {})
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def sys_call(name: str, *args) -> tuple:
    """(return value, errno) of a raw syscall; every argument passed as a full 64-bit word."""
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_ulong(a) if isinstance(a, int) else a for a in args])
    return ret, (ctypes.get_errno() if ret == -1 else 0)


def in_child(conf: confine.Confinement, probe) -> dict:
    """Fork; the child applies ``conf`` then returns ``probe()`` (JSON) through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                confine.apply(conf)
                out = {"ok": probe()}
            except BaseException:
                out = {"error": traceback.format_exc()}
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    try:
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        wstatus = os.waitpid(pid, 0)[1]
    assert os.WIFEXITED(wstatus) and os.WEXITSTATUS(wstatus) == 0, "child ended with status %#x" % wstatus
    out = json.loads(b"".join(chunks) or b"{}")
    assert "error" not in out, out.get("error")
    return out["ok"]


def run_true() -> int:
    """Fork and exec /bin/true (an exec that must still work under the filter); its exit status, 127 if the exec failed."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execv("/bin/true", ["/bin/true"])
        finally:
            os._exit(127)
    return os.WEXITSTATUS(os.waitpid(pid, 0)[1])


def getcwd_errno() -> int:
    """0 when getcwd works, else its errno (the call the JSON profiles below make fail)."""
    try:
        os.getcwd()
    except OSError as e:
        return e.errno
    return 0


def conf(**params) -> confine.Confinement:
    return confine.Confinement.from_params(**params)


# Blocked whatever capabilities are kept. Arguments that can never succeed, harmless without the
# filter: the kernel then answers ENOSYS/EINVAL/EFAULT/EBADF/ENOENT/..., never success.
ALWAYS_DENIED_PROBES = [
    ("init_module", (0, 0, b"")),  # NULL image of length 0
    ("finit_module", (-1 & confine._U64, b"", 0)),  # fd -1
    ("delete_module", (b"linuxns_no_such_module_x", os.O_NONBLOCK)),
    ("kexec_load", (0, 17, 0, 0)),  # nr_segments above KEXEC_SEGMENT_MAX (16)
    ("kexec_file_load", (-1 & confine._U64, -1 & confine._U64, 0, 0, 0)),  # bad fds
    ("open_by_handle_at", (-1 & confine._U64, 0, 0)),  # "shocker": mount fd -1, NULL handle
    ("reboot", (0, 0, 0, 0)),  # wrong magic: EINVAL before anything happens
    ("swapoff", (b"/nonexistent/linuxns-swap",)),
    ("keyctl", (0xFFFF, 0, 0, 0, 0)),  # no such keyctl operation
    ("add_key", (0, 0, 0, 0, 0)),  # NULL type
    ("request_key", (0, 0, 0, 0)),  # NULL type
    ("userfaultfd", (0xFFFFFFFF,)),  # invalid flags
    ("io_uring_setup", (0, 0)),  # 0 entries, NULL params
    ("move_pages", (0x7FFFFFFF, 0, 0, 0, 0, 0)),  # nonexistent pid, 0 pages
]
# Blocked unless a capability is kept: probed with the default set.
CAP_GATED_PROBES = [
    ("bpf", (0xFFFF, 0, 0)),  # no such bpf command
    ("perf_event_open", (0, 0, -1 & confine._U64, -1 & confine._U64, 0)),  # NULL attr
    ("syslog", (0xFFFF, 0, 0)),  # no such syslog action
    ("setns", (-1 & confine._U64, 0)),  # fd -1
    ("mount", (b"none", b"/nonexistent/linuxns", b"tmpfs", 0, 0)),  # target does not exist
    ("umount2", (b"/nonexistent/linuxns", 0)),
    ("pivot_root", (b"/nonexistent/a", b"/nonexistent/b")),
    ("open_tree", (-1 & confine._U64, b"/nonexistent/linuxns", 0)),
    ("fsopen", (b"linuxns-no-such-fs", 0)),
    ("settimeofday", (1, 0)),  # unreadable timeval pointer: EFAULT before anything is set
    ("clock_settime", (0xFFFF, 0)),  # no such clock
    ("acct", (b"/nonexistent/linuxns-acct",)),
    ("quotactl", (0, 0, 0, 0)),
]
if ARCH == "x86_64":
    CAP_GATED_PROBES.append(("ioperm", (0x10000, 1, 1)))  # beyond IO_BITMAP_BITS: EINVAL


def probe_all(probes):
    return lambda: {name: sys_call(name, *args) for name, args in probes}


# ---------------------------------------------------------------------------------------
# syscall tables
# ---------------------------------------------------------------------------------------
def test_syscall_numbers_match_the_kernel_tables():
    # arch/x86/entry/syscalls/syscall_64.tbl and scripts/syscall.tbl (asm-generic)
    x86 = confine.SYSCALLS["x86_64"]
    assert (x86["open_by_handle_at"], x86["kexec_load"], x86["init_module"], x86["bpf"], x86["getcwd"], x86["clone3"]) == (304, 246, 175, 321, 79, 435)
    assert (x86["unshare"], x86["clone"], x86["personality"], x86["mseal"]) == (272, 56, 135, 462)
    a64 = confine.SYSCALLS["aarch64"]
    assert (a64["open_by_handle_at"], a64["kexec_load"], a64["init_module"], a64["bpf"], a64["getcwd"], a64["clone3"]) == (265, 104, 105, 280, 17, 435)
    assert (a64["unshare"], a64["clone"], a64["personality"], a64["kexec_file_load"]) == (97, 220, 92, 294)
    assert "open" not in a64 and "iopl" not in a64
    assert len(set(x86.values())) == len(x86) and len(set(a64.values())) == len(a64)


# ---------------------------------------------------------------------------------------
# validation (no kernel state changed)
# ---------------------------------------------------------------------------------------
def test_default_value():
    c = conf()
    assert c.as_dict() == {"privileged": False, "capabilities": [n for n in confine.CAP_NAMES if n in DEFAULT], "no_new_privs": True, "seccomp": "default"}
    assert c.filter and len(c.filter) % 8 == 0
    assert c == conf(capabilities={}, seccomp="default", no_new_privs=True)


def test_capability_names_in_every_spelling():
    c = conf(capabilities={"drop": ["chown", "CAP_KILL"], "add": ["sys_admin", "NET_ADMIN"]})
    assert set(c.capabilities) == (set(DEFAULT) - {"CAP_CHOWN", "CAP_KILL"}) | {"CAP_SYS_ADMIN", "CAP_NET_ADMIN"}
    assert conf(capabilities={"drop": ["ALL"], "add": ["net_bind_service"]}).capabilities == ("CAP_NET_BIND_SERVICE",)
    assert list(conf(capabilities={"add": ["all"]}).capabilities) == ALL_CAPS


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"capabilities": {"drop": ["chown", "kill", "CAP_FOO"]}}, "capabilities.drop[2]: unknown capability 'CAP_FOO'"),
        ({"capabilities": {"add": [7]}}, "capabilities.add[0]: a capability name is expected"),
        ({"capabilities": {"add": ["chown"], "drop": ["CAP_CHOWN"]}}, "capabilities.add[0]: 'CAP_CHOWN' is also in capabilities.drop[0]"),
        ({"capabilities": {"keep": ["chown"]}}, "capabilities: unknown key(s) 'keep'"),
        ({"capabilities": ["chown"]}, "capabilities: a dict with 'drop' and/or 'add' is expected"),
        ({"privileged": True, "capabilities": {"drop": ["chown"]}}, "capabilities: a privileged guest keeps every capability"),
        ({"privileged": True, "seccomp": "default"}, "seccomp: a privileged guest has no seccomp filter"),
        ({"privileged": "yes"}, "privileged: true or false is expected"),
        ({"no_new_privs": 1}, "no_new_privs: true or false is expected"),
        ({"seccomp": "strict"}, "seccomp: 'strict' is not 'default', 'unconfined' or an absolute path"),
        ({"seccomp": "/nonexistent/linuxns-profile.json"}, "seccomp: cannot read the profile /nonexistent/linuxns-profile.json"),
        ({"seccomp": "{not json"}, "seccomp: the profile is not valid JSON"),
        ({"seccomp": {"syscalls": []}}, "seccomp: defaultAction is missing"),
        ({"seccomp": {"defaultAction": "SCMP_ACT_FOO"}}, "seccomp.defaultAction: unknown action 'SCMP_ACT_FOO'"),
        (
            {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}]}},
            "seccomp.syscalls[0].action: action 'SCMP_ACT_NOTIFY' is not supported",
        ),
        (
            {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0}]}},
            "errnoRet 0 is not an errno",
        ),
        (
            {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": "getcwd", "action": "SCMP_ACT_ERRNO"}]}},
            "seccomp.syscalls[0].names: a list of syscall names",
        ),
        (
            {
                "seccomp": {
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}],
                }
            },
            "seccomp.syscalls[0].args[0].index: 6 is not a syscall argument",
        ),
        (
            {
                "seccomp": {
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}],
                }
            },
            "seccomp.syscalls[0].args[0].op: unsupported comparison 'SCMP_CMP_XX'",
        ),
        ({"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}}, "seccomp: listenerPath not supported"),
        (
            {
                "seccomp": {
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}, {"names": ["getcwd"], "action": "SCMP_ACT_KILL"}],
                }
            },
            "syscall 'getcwd' is given two different actions",
        ),
    ],
)
def test_bad_input_is_refused_with_the_parameter_named(params, message):
    with pytest.raises(InvalidInput) as e:
        conf(**params)
    assert message in str(e.value)


def test_from_settings():
    assert confine.Confinement.from_settings(None) == conf()
    c = confine.Confinement.from_settings({"capabilities": {"add": ["net_raw"]}, "seccomp": "unconfined", "no_new_privs": False})
    assert "CAP_NET_RAW" in c.capabilities and c.filter == b"" and c.as_dict()["seccomp"] == "unconfined" and c.no_new_privs is False
    with pytest.raises(InvalidInput, match="confinement: unknown setting"):
        confine.Confinement.from_settings({"apparmor": "x"})


def test_profile_path_bad_json_names_the_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"defaultAction": ')
    with pytest.raises(InvalidInput, match=r"seccomp \(%s\): the profile is not valid JSON" % p):
        conf(seccomp=str(p))


def test_unknown_syscall_names_are_skipped_and_conditions_follow_docker():
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["no_such_call", "vm86old", "getcwd"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["gettid"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["s390x"]}},
            {"names": ["getgid"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "99.0"}},
        ],
    }
    rules = confine.profile_rules(profile, "x86_64", frozenset())[1]
    assert [r.name for r in rules] == ["getcwd", "gettid"]
    rules = confine.profile_rules(profile, "x86_64", frozenset({confine.CAP_NUMBERS["CAP_SYS_ADMIN"]}))[1]
    assert [r.name for r in rules] == ["getcwd", "getppid"]


def test_filter_is_compiled_for_both_arches():
    for arch in ("x86_64", "aarch64"):
        c = confine.Confinement.from_params(arch=arch)
        first = c.filter[:16]
        # ld [arch]; jeq AUDIT_ARCH
        assert first[:8] == bytes.fromhex("2000000004000000")
        assert int.from_bytes(first[12:16], "little") == confine.AUDIT_ARCH[arch]


# ---------------------------------------------------------------------------------------
# applied for real
# ---------------------------------------------------------------------------------------
@needs_root
@needs_arch
def test_default_confinement_status():
    st = in_child(conf(), confine_status.status)
    assert st["CapBnd"] == st["CapEff"] == st["CapPrm"] == [n for n in confine.CAP_NAMES if n in DEFAULT]
    assert st["CapAmb"] == [] and st["CapInh"] == []
    assert st["NoNewPrivs"] is True
    assert st["Seccomp"] == "filter" and st["Seccomp_filters"] >= 1
    assert confine_status.differences(conf(), st) == []
    # the status file says so too, in its own words
    raw = in_child(conf(), lambda: open("/proc/self/status").read())
    fields = dict(line.split(":\t", 1) for line in raw.splitlines() if ":\t" in line)
    assert int(fields["CapBnd"], 16) == conf().cap_mask
    assert int(fields["CapAmb"], 16) == 0 and int(fields["CapInh"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"


@needs_root
@needs_arch
def test_always_denied_calls_get_eperm_even_with_every_capability():
    full = conf(capabilities={"add": ["ALL"]})
    confined = in_child(full, probe_all(ALWAYS_DENIED_PROBES))
    off = in_child(conf(capabilities={"add": ["ALL"]}, seccomp="unconfined"), probe_all(ALWAYS_DENIED_PROBES))
    for name in dict(ALWAYS_DENIED_PROBES):
        assert confined[name] == [-1, errno.EPERM], name
        # without the filter the kernel itself answers, and never with success or EPERM
        assert off[name][0] == -1 and off[name][1] not in (0, errno.EPERM), (name, off[name])


@needs_root
@needs_arch
def test_capability_gated_calls_get_eperm_from_the_filter():
    confined = in_child(conf(), probe_all(CAP_GATED_PROBES))
    for name in dict(CAP_GATED_PROBES):
        assert confined[name] == [-1, errno.EPERM], name
    # with the capability kept, the filter lets each through to the kernel (that says no by itself)
    full = in_child(conf(capabilities={"add": ["ALL"]}), probe_all(CAP_GATED_PROBES))
    for name in dict(CAP_GATED_PROBES):
        assert full[name][0] == -1 and full[name][1] not in (0, errno.EPERM), (name, full[name])


@needs_root
@needs_arch
def test_new_namespaces_are_refused_without_sys_admin():
    def probe():
        out = {"unshare_user": sys_call("unshare", 0x10000000), "unshare_files": sys_call("unshare", 0x400)}  # CLONE_NEWUSER, CLONE_FILES
        out["clone3"] = sys_call("clone3", 0, 0)
        pid = os.fork()  # plain clone() without namespace flags still works
        if pid == 0:
            os._exit(7)
        out["fork"] = os.WEXITSTATUS(os.waitpid(pid, 0)[1])
        return out

    confined = in_child(conf(), probe)
    assert confined["unshare_user"] == [-1, errno.EPERM]
    assert confined["unshare_files"] == [0, 0]
    assert confined["clone3"] == [-1, errno.ENOSYS]
    assert confined["fork"] == 7
    off = in_child(conf(seccomp="unconfined"), probe)
    assert off["unshare_user"] == [0, 0]  # only this short-lived child gets a user namespace
    assert off["clone3"][1] != errno.ENOSYS


@needs_root
@needs_arch
def test_personality_allows_only_dockers_values():
    def probe():
        return {"query": sys_call("personality", 0xFFFFFFFF), "norandom": sys_call("personality", 0x0040000)}

    confined = in_child(conf(), probe)
    assert confined["query"][0] >= 0
    assert confined["norandom"] == [-1, errno.EPERM]
    assert in_child(conf(seccomp="unconfined"), probe)["norandom"][0] >= 0


@needs_root
@pytest.mark.skipif(ARCH != "x86_64", reason="x32 is an x86_64 ABI")
def test_x32_syscalls_kill_the_process():
    def probe():
        pid = os.fork()
        if pid == 0:
            _libc.syscall(ctypes.c_long(confine.X32_SYSCALL_BIT | NR["getpid"]))
            os._exit(0)
        wstatus = os.waitpid(pid, 0)[1]
        return [os.WIFSIGNALED(wstatus) and os.WTERMSIG(wstatus), os.WIFEXITED(wstatus)]

    assert in_child(conf(), probe) == [signal.SIGSYS, False]
    assert in_child(conf(seccomp="unconfined"), probe) == [False, True]


@needs_root
@needs_arch
def test_allowed_calls_still_work(tmp_path):
    marker = tmp_path / "marker"
    marker.write_text("linuxns")

    def probe():
        with open(str(marker)) as f:
            text = f.read()
        return {"pid": os.getpid() == sys_call("getpid")[0], "text": text, "true": run_true(), "cwd": os.getcwd() != ""}

    assert in_child(conf(), probe) == {"pid": True, "text": "linuxns", "true": 0, "cwd": True}


@needs_root
@needs_arch
def test_exec_keeps_exactly_the_kept_set():
    def probe():
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.dup2(w, 1)
            os.execv("/bin/grep", ["grep", "-E", "^(CapBnd|CapEff|CapPrm|CapAmb|NoNewPrivs|Seccomp):", "/proc/self/status"])
        os.close(w)
        text = os.read(r, 4096).decode()
        os.waitpid(pid, 0)
        return dict(line.split(":\t") for line in text.splitlines())

    c = conf(capabilities={"drop": ["chown"], "add": ["net_admin"]})
    fields = in_child(c, probe)
    assert int(fields["CapBnd"], 16) == int(fields["CapEff"], 16) == int(fields["CapPrm"], 16) == c.cap_mask
    assert int(fields["CapAmb"], 16) == 0 and fields["Seccomp"] == "2" and fields["NoNewPrivs"] == "1"


@needs_root
@needs_arch
def test_add_and_drop_change_exactly_those_bits():
    base = in_child(conf(), confine_status.status)
    changed = in_child(conf(capabilities={"drop": ["chown", "setfcap"], "add": ["net_admin", "sys_ptrace"]}), confine_status.status)
    assert set(base["CapBnd"]) - set(changed["CapBnd"]) == {"CAP_CHOWN", "CAP_SETFCAP"}
    assert set(changed["CapBnd"]) - set(base["CapBnd"]) == {"CAP_NET_ADMIN", "CAP_SYS_PTRACE"}
    assert changed["CapEff"] == changed["CapBnd"]


@needs_root
@needs_arch
def test_without_no_new_privs_the_filter_is_still_installed():
    c = conf(no_new_privs=False)
    st = in_child(c, lambda: confine_status.status() | {"open_by_handle_at": sys_call("open_by_handle_at", -1 & confine._U64, 0, 0)})
    assert st["NoNewPrivs"] is False and st["Seccomp"] == "filter"
    assert st["open_by_handle_at"] == [-1, errno.EPERM]
    assert "CAP_SYS_ADMIN" not in st["CapEff"]


@needs_root
def test_privileged_keeps_everything_and_installs_no_filter():
    parent = confine_status.status()
    c = conf(privileged=True)
    st = in_child(c, confine_status.status)
    # every capability the entering process has (this test's process may itself lack some)
    assert st["CapBnd"] == parent["CapBnd"] and set(st["CapBnd"]) <= set(ALL_CAPS) == set(c.capabilities)
    assert st["CapEff"] == parent["CapEff"]
    assert st["Seccomp"] == "disabled" and st["NoNewPrivs"] is False
    assert c.as_dict()["seccomp"] == "unconfined" and confine_status.differences(c, st) == []
    # and the differences reader notices a default-confined guest's process is not that
    assert "no seccomp filter" in confine_status.differences(conf(), st)


@needs_root
@needs_arch
def test_json_profile_makes_exactly_one_call_fail():
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV}]}

    def probe():
        return {"getcwd": getcwd_errno(), "getppid": sys_call("getppid")[1], "uname": os.uname().sysname}

    assert in_child(conf(seccomp=profile), probe) == {"getcwd": errno.EXDEV, "getppid": 0, "uname": "Linux"}
    assert in_child(conf(seccomp="unconfined"), probe)["getcwd"] == 0


@needs_root
@needs_arch
def test_profile_from_a_file_with_argument_filters(tmp_path):
    big = 0x100000000
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            # who == 2**32 exactly: the high half is compared too (who == 0 must not match)
            {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV, "args": [{"index": 1, "value": big, "op": "SCMP_CMP_EQ"}]},
            # masked: which & 0xff00 == 0x0100
            {
                "names": ["getpriority"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.ENOTSUP,
                "args": [{"index": 0, "value": 0xFF00, "valueTwo": 0x100, "op": "SCMP_CMP_MASKED_EQ"}],
            },
            # Docker's socket pattern: LT / GT around one family; NE
            {
                "names": ["getpgid"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.ERANGE,
                "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_GT"}, {"index": 0, "value": big + 9, "op": "SCMP_CMP_LT"}],
            },
            {"names": ["getsid"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}]},
        ],
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))

    def probe():
        return {
            "who0": sys_call("getpriority", 0, 0)[1],
            "whobig": sys_call("getpriority", 0, big)[1],
            "masked": sys_call("getpriority", 0x1FF, 0)[1],
            "masked_no": sys_call("getpriority", 0x201, 0)[1],
            "pgid5": sys_call("getpgid", 5)[1],
            "pgid6": sys_call("getpgid", 6)[1],
            "pgid_big8": sys_call("getpgid", big + 8)[1],
            "pgid_big9": sys_call("getpgid", big + 9)[1],
            "sid0": sys_call("getsid", 0)[1],
            "sid1": sys_call("getsid", 1)[1],
        }

    got = in_child(conf(seccomp=str(path)), probe)
    assert got["who0"] == 0 and got["whobig"] == errno.EXDEV
    assert got["masked"] == errno.ENOTSUP and got["masked_no"] != errno.ENOTSUP
    assert got["pgid5"] != errno.ERANGE and got["pgid6"] == errno.ERANGE and got["pgid_big8"] == errno.ERANGE and got["pgid_big9"] != errno.ERANGE
    assert got["sid0"] == 0 and got["sid1"] == errno.EPERM  # errnoRet defaults to EPERM (OCI)
    off = in_child(conf(seccomp="unconfined"), probe)
    assert errno.EXDEV not in off.values() and errno.ENOTSUP not in off.values() and errno.ERANGE not in off.values()
    assert off["sid1"] == 0


@needs_root
@needs_arch
def test_allow_list_profile_with_docker_conditions():
    # an allow-list in Docker's form: everything else ERRNO(EPERM); getppid only with CAP_SYS_ADMIN
    base = [
        "read", "write", "close", "exit", "exit_group", "brk", "mmap", "munmap", "mprotect", "rt_sigaction",
        "rt_sigprocmask", "rt_sigreturn", "getpid", "openat", "fstat", "newfstatat", "lseek", "futex", "prctl",
        "capget", "capset", "madvise", "getrandom", "ioctl", "fcntl", "statx", "wait4",
    ]  # fmt: skip
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "syscalls": [
            {"names": base, "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        ],
    }

    def probe():
        return {"getpid": sys_call("getpid")[1], "getppid": sys_call("getppid")[1], "gettid": sys_call("gettid")[1]}

    assert in_child(conf(seccomp=profile), probe) == {"getpid": 0, "getppid": errno.EPERM, "gettid": errno.EPERM}
    assert in_child(conf(seccomp=profile, capabilities={"add": ["sys_admin"]}), probe) == {"getpid": 0, "getppid": 0, "gettid": errno.EPERM}


@needs_root
def test_status_of_another_process():
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(go_w)
            os.close(ready_r)
            confine.apply(conf(capabilities={"drop": ["ALL"], "add": ["kill"]}))
            os.write(ready_w, b"1")
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(go_r)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"1"
        st = confine_status.status(pid)
        assert st["CapBnd"] == st["CapEff"] == ["CAP_KILL"] and st["pid"] == pid and st["Seccomp"] == "filter"
        assert confine_status.differences(conf(), st)[0].startswith("bounding set differs (extra: -; missing: CAP_AUDIT_WRITE")
    finally:
        os.close(go_w)
        os.close(ready_r)
        os.waitpid(pid, 0)
    with pytest.raises(confine.KernelError, match="cannot read /proc/%d/status" % pid):
        confine_status.status(pid)


@needs_root
@needs_arch
def test_large_allow_list_with_far_argument_blocks():
    # every known call allowed but getcwd (default ERRNO), and an argument rule whose block sits
    # hundreds of instructions after its jeq: long jumps must land right
    names = sorted(n for n in NR if n != "getcwd")
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EXDEV,
        "syscalls": [
            {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ERANGE, "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": names, "action": "SCMP_ACT_ALLOW"},
        ],
    }
    c = conf(seccomp=profile)
    assert len(c.filter) // 8 > 2 * len(names) > 255

    def probe():
        return {
            "cwd": getcwd_errno(),
            "prio_pgrp": sys_call("getpriority", 1, 0)[1],
            "prio_self": sys_call("getpriority", 0, 0)[1],
            "true": run_true(),
        }

    assert in_child(c, probe) == {"cwd": errno.EXDEV, "prio_pgrp": errno.ERANGE, "prio_self": 0, "true": 0}
