"""The ansible-core version matrix: a smoke subset of the collection on each ansible-core.

Each version has its own venv on /usr/bin/python3 under build/matrix/<version>/ (made once,
then reused: a stamp file names what was installed).  The smoke subset is one
ansible-playbook run over ssh against lab1 plus ``ansible-inventory --graph``:

* namespace_create, namespace_mount, netns_link, guest_enter_exec, namespace_info and
  removal, all under ``module_defaults: {group/linuxns.guests.guests: {state_dir: ...}}``
  (meta/runtime.yml's action group): the guest's state folder, seen from the host with
  ansible.builtin.stat, must be the non-default one;
* the guest connection: ansible.builtin.ping and a command inside the guest, the guest
  described by a ``*.guests.yml`` file of the linuxns.guests.guests inventory plugin;
* ``ansible-inventory --graph`` of that file.

Versions: LINUXNS_MATRIX (space separated, "all" = 2.16 2.17 2.18 2.19); default 2.16, the
lowest version (meta/runtime.yml's requires_ansible) and not the .venv's.  ``make matrix``
runs all four.  Results: docs/ecosystem.md.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from harness import REPO, load_records

pytestmark = pytest.mark.integration

ALL_VERSIONS = ("2.16", "2.17", "2.18", "2.19")
MATRIX_DIR = REPO / "build" / "matrix"
PYTHON = "/usr/bin/python3"
# What each matrix venv gets besides ansible-core (paramiko: the paramiko transport).
EXTRA = ("paramiko",)
GUEST = "smk1"
ADDRESS, PEER_ADDRESS = "198.19.77.2", "198.19.77.1"


def versions() -> list:
    text = os.environ.get("LINUXNS_MATRIX", "").strip() or "2.16"
    return list(ALL_VERSIONS) if text == "all" else text.split()


def matrix_venv(version: str) -> Path:
    """build/matrix/VERSION: a venv with ansible-core VERSION.* (made once; a lock guards it)."""
    venv = MATRIX_DIR / version
    spec = [f"ansible-core~={version}.0", *EXTRA]
    stamp = venv / (".installed-" + "-".join(spec).replace("~=", "").replace("/", "_"))
    MATRIX_DIR.mkdir(parents=True, exist_ok=True)
    with open(MATRIX_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.exists() and (venv / "bin" / "ansible-playbook").exists()):
            subprocess.run([PYTHON, "-m", "venv", "--clear", str(venv)], check=True)
            out = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *spec],
                                 capture_output=True, text=True, check=False)
            if out.returncode:
                pytest.fail(f"ansible-core {version} does not install on {PYTHON}:\n{out.stdout}\n{out.stderr}")
            stamp.touch()
    return venv


def core_version(venv: Path) -> str:
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import ansible.release as r; print(r.__version__)"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def fleet_file(lab, path: Path, state_dir: str) -> Path:
    from lab import ssh_common_args

    doc = {
        "plugin": "linuxns.guests.guests",
        "hostname_template": "{guest}",
        "guest_vars": {"ansible_python_interpreter": PYTHON},
        "hosts": {"lab1": {
            "address": lab.host(1).address,
            "state_dir": state_dir,
            "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(lab.key_path),
                     "ansible_ssh_common_args": " ".join(ssh_common_args(lab.state_dir))},
            "guests": [{"name": GUEST, "hostname": f"{GUEST}.smoke", "vars": {"tier": "smoke"}}],
        }},
        "keyed_groups": [{"key": "tier", "prefix": "tier"}],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def smoke_playbook(state_dir: str) -> list:
    grp = {"group/linuxns.guests.guests": {"state_dir": state_dir}}
    guest_dir = f"{state_dir}/guests/{GUEST}"
    return [
        {"name": "smoke - modules", "hosts": "lab1", "gather_facts": False, "module_defaults": grp, "tasks": [
            {"name": "create", "linuxns.guests.namespace_create": {"name": GUEST, "hostname": f"{GUEST}.smoke"}},
            {"name": "mount", "linuxns.guests.namespace_mount": {
                "guest": GUEST, "path": "/mnt", "fstype": "tmpfs", "opts": "size=1m", "state": "ephemeral"}},
            {"name": "link", "linuxns.guests.netns_link": {
                "guest": GUEST, "ifname": "eth0", "addresses": [f"{ADDRESS}/24"],
                "peer": {"ifname": "vsmk1", "addresses": [f"{PEER_ADDRESS}/24"]}}},
            {"name": "exec", "linuxns.guests.guest_enter_exec": {
                "guest": GUEST, "shell": True,
                "cmd": "hostname; grep ' /mnt tmpfs ' /proc/mounts | cut -d' ' -f2,3; ip -o -4 addr show eth0"}},
            {"name": "info", "linuxns.guests.namespace_info": {"guests": [GUEST]}},
            {"name": "state folder used", "ansible.builtin.stat": {"path": guest_dir}},
            {"name": "default state folder unused", "ansible.builtin.stat": {"path": f"/run/linuxns/guests/{GUEST}"}},
        ]},
        {"name": "smoke - the guest connection", "hosts": GUEST, "gather_facts": False, "tasks": [
            {"name": "ping", "ansible.builtin.ping": {}},
            {"name": "inside", "ansible.builtin.command": "hostname"},
        ]},
        {"name": "smoke - remove", "hosts": "lab1", "gather_facts": False, "module_defaults": grp, "tasks": [
            {"name": "remove", "linuxns.guests.namespace_create": {"name": GUEST, "state": "absent", "stop_timeout": 2}},
            {"name": "state folder gone", "ansible.builtin.stat": {"path": guest_dir}},
        ]},
    ]


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 0, f"{what} failed (rc={proc.returncode})\n{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}"


@pytest.mark.parametrize("version", versions())
def test_smoke(version, lab, ansible, lab_exec):
    venv = matrix_venv(version)
    got = core_version(venv)
    assert got.startswith(version + "."), got
    work = ansible.workdir / f"matrix-{version}"
    work.mkdir(exist_ok=True)
    state_dir = "/run/linuxns-smoke"
    inventory = fleet_file(lab, work / "smoke.guests.yml", state_dir)
    playbook = work / "smoke.yml"
    playbook.write_text(json.dumps(smoke_playbook(state_dir), indent=1))
    record = work / "records.jsonl"
    env = ansible.environment(record)
    bin_dir = venv / "bin"
    try:
        graph = subprocess.run([str(bin_dir / "ansible-inventory"), "-i", str(inventory), "--graph"], env=env,
                               cwd=str(REPO), capture_output=True, text=True, check=False, timeout=300)
        _check(graph, f"ansible-inventory {got}")
        lines = [line.strip(" |-") for line in graph.stdout.splitlines()]
        assert lines[0] == "@all:" and "@linuxns_guests:" in lines and "@tier_smoke:" in lines, graph.stdout
        assert lines.count(GUEST) >= 2, graph.stdout   # in linuxns_guests and in tier_smoke

        run = subprocess.run([str(bin_dir / "ansible-playbook"), "-i", str(lab.inventory_path), "-i", str(inventory),
                              str(playbook)], env=env, cwd=str(REPO), stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, check=False, timeout=600)
        _check(run, f"ansible-playbook {got}")
        results = {(r.host, r.task): r for r in load_records(record)}

        def res(task, host="lab1"):
            return results[(host, task)].result

        assert res("create")["changed"] and res("create")["guest"]["name"] == GUEST
        assert res("mount")["changed"]
        assert res("link")["changed"]
        stdout = res("exec")["stdout"].splitlines()
        assert stdout[0] == f"{GUEST}.smoke" and stdout[1] == "/mnt tmpfs", stdout
        assert f"inet {ADDRESS}/24" in stdout[2], stdout
        assert [g["name"] for g in res("info")["guests"]] == [GUEST]
        # module_defaults of the action group: every module used the non-default state_dir
        assert res("state folder used")["stat"]["isdir"], res("state folder used")
        assert not res("default state folder unused")["stat"]["exists"]
        assert res("ping", GUEST)["ping"] == "pong"
        assert res("inside", GUEST)["stdout"] == f"{GUEST}.smoke"
        assert res("remove")["changed"] and not res("state folder gone")["stat"]["exists"]
        recap = re.search(r"lab1\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=0\s+failed=0", run.stdout)
        assert recap and int(recap.group(1)) == 9, run.stdout[-2000:]
        print(f"ansible-core {got}: smoke passed")
    finally:
        # the guest gone whatever happened above (a failed run), with the .venv's ansible
        left = lab_exec("lab1", ["test", "-d", f"{state_dir}/guests/{GUEST}"], check=False).returncode == 0
        if left:
            ansible.playbook([{"linuxns.guests.namespace_create": {
                "name": GUEST, "state": "absent", "state_dir": state_dir, "stop_timeout": 2}}])
        if lab_exec("lab1", ["test", "-d", f"{state_dir}/guests/{GUEST}"], check=False).returncode != 0:
            # the guest is gone: its state folder (and the folder's own mount) goes too
            lab_exec("lab1", ["sh", "-c", f"umount -R {state_dir} 2>/dev/null; rm -rf {state_dir}"], check=False)
