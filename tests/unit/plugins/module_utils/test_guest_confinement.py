"""The guest's confinement fields (privileged, capabilities, no_new_privs, seccomp) wired to
every process that enters a guest: recorded, shown, changed in place, read back from /proc."""

from __future__ import annotations

import json
import sys

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import confine, confine_status, execute, guest_info, guests
from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput
from ansible_collections.linuxns.guests.plugins.module_utils.execute import Request

pytestmark = pytest.mark.unit

STATUS_KEYS = ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb", "NoNewPrivs", "Seccomp")
DEFAULT = [n for n in confine.CAP_NAMES if n in confine.DEFAULT_CAPABILITIES]  # in number order, as /proc shows them


def caps(*names) -> list:
    return [n for n in confine.CAP_NAMES if n in names]


def one(r, check=False, **params):
    return guests.ensure_guests(r, [params], check)["results"][0]


def status_inside(meta, **kw) -> dict:
    """/proc/self/status of a program started in the guest, decoded like confine_status.status."""
    res = execute.run(meta, Request(argv=["cat", "/proc/self/status"], **kw))
    assert res["rc"] == 0, res
    out = {}
    for line in res["stdout"].splitlines():
        key, _sep, value = line.partition(":")
        if key in STATUS_KEYS[:5]:
            out[key] = confine_status.decode_caps(int(value.strip(), 16))
        elif key in STATUS_KEYS[5:]:
            out[key] = int(value.strip())
    return out


def test_a_default_guest_confines_its_programs_and_its_init(unit_registry, busybox_root):
    g = one(unit_registry, name="conf1", root=busybox_root)["guest"]
    assert (g["privileged"], g["capabilities"], g["no_new_privs"], g["seccomp"]) == (False, None, True, "default")
    meta = unit_registry.find("conf1")
    st = status_inside(meta)
    assert st["CapBnd"] == st["CapEff"] == st["CapPrm"] == DEFAULT
    assert st["CapInh"] == st["CapAmb"] == []
    assert st["NoNewPrivs"] == 1 and st["Seccomp"] == 2
    init = confine_status.status(g["init_pid"])  # the reaper too
    assert init["CapBnd"] == DEFAULT and init["NoNewPrivs"] and init["Seccomp"] == "filter"
    nobody = status_inside(meta, user="nobody")  # bounding set cut before setresuid; no capability left
    assert nobody["CapBnd"] == DEFAULT and nobody["CapEff"] == nobody["CapPrm"] == [] and nobody["Seccomp"] == 2
    shown = guest_info.info(unit_registry, ["conf1"])["guests"][0]
    assert shown["confinement"] == {"privileged": False, "capabilities": DEFAULT, "no_new_privs": True, "seccomp": "default"}
    assert shown["confinement_outdated"] == []


def test_privileged_is_the_full_set_without_a_filter(unit_registry):
    g = one(unit_registry, name="priv1", privileged=True, namespaces=["uts", "pid"])["guest"]
    st = status_inside(unit_registry.find("priv1"))
    assert st["CapBnd"] == confine_status.status()["CapBnd"]  # what host root has here (today's full set)
    assert st["Seccomp"] == 0 and st["NoNewPrivs"] == 0
    assert g["privileged"] is True and confine_status.status(g["init_pid"])["Seccomp"] == "disabled"


def test_seccomp_denies_host_calls_with_eperm(unit_registry):
    """kexec_load, finit_module, keyctl, bpf, open_by_handle_at: EPERM from the filter (arguments that could never succeed)."""
    one(unit_registry, name="sec1", namespaces=["uts", "ipc", "pid"])
    probe = (
        "import ctypes, json\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "out = {}\n"
        "for name, nr, args in (('kexec_load', 246, (0, 0, 0, 0)), ('finit_module', 313, (-1, 0, 0)), ('keyctl', 250, (-1, 0, 0)),\n"
        "                       ('bpf', 321, (-1, 0, 0)), ('open_by_handle_at', 304, (-1, 0, 0))):\n"
        "    out[name] = (libc.syscall(nr, *args), ctypes.get_errno())\n"
        "print(json.dumps(out))\n"
    )
    if confine.machine() != "x86_64":
        pytest.skip("the probe uses x86_64 syscall numbers")
    res = execute.run(unit_registry.find("sec1"), Request(argv=[sys.executable, "-S", "-c", probe]))
    assert res["rc"] == 0, res
    for name, (ret, err) in json.loads(res["stdout"]).items():
        assert (ret, err) == (-1, 1), name  # EPERM


def test_capabilities_change_in_place_and_info_lists_the_processes_left_behind(unit_registry):
    g = one(unit_registry, name="inplace", namespaces=["uts", "pid"])["guest"]
    predicted = one(unit_registry, check=True, name="inplace", namespaces=["uts", "pid"], capabilities={"add": ["net_admin"]})
    assert predicted["action"] == "update" and predicted["reasons"] == ["capabilities differs"]
    upd = guests.ensure_guests(unit_registry, [{"name": "inplace", "namespaces": ["uts", "pid"], "capabilities": {"add": ["net_admin"]}}])
    assert upd["diff"]["before"]["inplace"]["capabilities"] is None
    assert upd["diff"]["after"]["inplace"]["capabilities"] == {"add": ["net_admin"]}
    res = upd["results"][0]
    assert res["action"] == "update" and res["guest"]["init_pid"] == g["init_pid"]
    meta = unit_registry.find("inplace")
    assert status_inside(meta)["CapBnd"] == caps(*DEFAULT, "CAP_NET_ADMIN")
    shown = guest_info.info(unit_registry, ["inplace"])["guests"][0]
    assert "CAP_NET_ADMIN" in shown["confinement"]["capabilities"]
    outdated = shown["confinement_outdated"]
    assert [p["pid"] for p in outdated] == [g["init_pid"]]  # the init entered before the change
    assert outdated[0]["differences"] == ["bounding set differs (extra: -; missing: CAP_NET_ADMIN)"]
    assert not one(unit_registry, name="inplace", namespaces=["uts", "pid"], capabilities={"add": ["net_admin"]})["changed"]
    # left out: the default again (the confinement options are the task's, not kept)
    assert one(unit_registry, name="inplace", namespaces=["uts", "pid"])["action"] == "update"


def test_a_root_without_a_pid_namespace_is_refused_unless_privileged(unit_registry, busybox_root):
    with pytest.raises(InvalidInput, match=r"^root: guest 'nopid' has a root folder but no pid namespace of its own.*privileged: true"):
        one(unit_registry, name="nopid", root=busybox_root, namespaces=["mnt", "uts"])
    with pytest.raises(InvalidInput, match=r"guests\[1\]\.root: guest 'nopid2'"):
        guests.ensure_guests(unit_registry, [{"name": "ok", "namespaces": ["uts"]},
                                             {"name": "nopid2", "root": busybox_root, "namespaces": ["mnt"]}])
    assert unit_registry.load("ok") is None  # refused before anything changed
    res = one(unit_registry, check=True, name="nopid", root=busybox_root, namespaces=["mnt", "uts"], privileged=True)
    assert res["action"] == "create" and res["guest"]["privileged"] is True


@pytest.mark.parametrize("params, msg", [
    ({"capabilities": {"add": ["CAP_NOPE"]}}, r"^capabilities\.add\[0\]: unknown capability 'CAP_NOPE' \(guest 'bad'\)"),
    ({"capabilities": {"keep": []}}, r"^capabilities: unknown key\(s\) 'keep'"),
    ({"privileged": True, "capabilities": {"add": ["NET_ADMIN"]}}, r"^capabilities: a privileged guest keeps every capability"),
    ({"privileged": True, "seccomp": "default"}, r"^seccomp: a privileged guest has no seccomp filter"),
    ({"seccomp": "/nonexistent/profile.json"}, r"^seccomp: .*/nonexistent/profile.json"),
    ({"privileged": "yes please"}, r"^privileged: true or false is expected"),
])
def test_bad_confinement_is_refused_naming_the_guest_and_parameter(unit_registry, params, msg):
    with pytest.raises(InvalidInput, match=msg):
        one(unit_registry, name="bad", namespaces=["uts"], **params)
    assert unit_registry.load("bad") is None


def test_a_json_profile_is_applied(unit_registry, tmp_path):
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                                   "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}))
    g = one(unit_registry, name="prof", namespaces=["uts", "pid"], seccomp=str(profile))["guest"]
    assert g["seccomp"] == str(profile)
    meta = unit_registry.find("prof")
    res = execute.run(meta, Request(argv=["uname", "-n"]))
    assert res["rc"] != 0 and "Operation not permitted" in res["stderr"]
    assert guest_info.info(unit_registry, ["prof"])["guests"][0]["confinement"]["seccomp"].startswith("profile:")


def test_the_connections_entry_program_confines_its_commands(unit_registry):
    """The linuxns.guests.guest connection: its entry program (the bundle shipped over ssh,
    here run locally) confines the command it runs in the guest."""
    import subprocess

    from ansible_collections.linuxns.guests.plugins.plugin_utils import entry_program

    one(unit_registry, name="conn1", namespaces=["uts", "ipc", "pid"], capabilities={"drop": ["kill"]})
    cmd = entry_program.command(sys.executable, ["exec", unit_registry.state_dir, "conn1", "grep -E '^(CapBnd|Seccomp):' /proc/self/status"])
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    got = dict(line.split(":\t") for line in res.stdout.splitlines())
    assert confine_status.decode_caps(int(got["CapBnd"], 16)) == [n for n in DEFAULT if n != "CAP_KILL"]
    assert got["Seccomp"] == "2"
