"""roles/guest_host: the restore service - linuxns-guests-restore.service and its program.

The unit is checked with `systemd-analyze verify` (systemd is not PID 1 here).  The program is
rendered from its template as the role renders it (the collection's module_utils embedded) and
run for real: a guest made through the modules' code, the registry's state wiped (what a reboot
does), then the program brings it back with the same context id and hostname.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import guest_stop, guests, persist
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "guest_host"
UNIT = "linuxns-guests-restore.service"


def render(name: str, **variables) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["to_json"] = json.dumps
    env.filters["basename"] = os.path.basename

    def lookup(kind, path, rstrip=True):
        assert kind == "ansible.builtin.file" and rstrip is False
        return Path(path).read_text()

    env.globals["lookup"] = lookup
    return env.from_string((ROLE / "templates" / name).read_text()).render(**variables)


def program(tmp_path: Path) -> Path:
    # as the role's task: query('ansible.builtin.fileglob', role_path ~ '/../../plugins/module_utils/*.py') | sort
    sources = sorted(str(p) for p in (ROLE / ".." / ".." / "plugins" / "module_utils").glob("*.py"))
    path = tmp_path / "linuxns-guests-restore"
    path.write_text(render("linuxns-guests-restore.j2", guest_host_restore_sources=sources))
    path.chmod(0o755)
    return path


def test_unit_verifies(tmp_path):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("no systemd-analyze (apt-get install systemd)")
    unit = tmp_path / UNIT
    unit.write_text(render(UNIT + ".j2", guest_host_restore_path=str(program(tmp_path)), guest_host_state_dir="/run/linuxns",
                           guest_host_table_dir="/etc/linuxns/guests"))
    out = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, check=False)
    # verify exits 0 on unknown keys and misplaced settings too: only the missing Wants= unit may be named
    lines = [line for line in (out.stdout + out.stderr).splitlines() if "linuxns-guests.service" not in line]
    assert out.returncode == 0 and lines == [], out.stdout + out.stderr
    s = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            s.setdefault(key, []).append(value)
    assert s["Type"] == ["oneshot"] and s["RemainAfterExit"] == ["yes"] and s["KillMode"] == ["process"]
    assert "network-online.target" in s["After"][0] and s["WantedBy"] == ["multi-user.target"]
    assert s["ExecStart"] == ["/usr/bin/python3 -I %s/linuxns-guests-restore --state-dir /run/linuxns --table-dir "
                              "/etc/linuxns/guests" % tmp_path]


def test_program_brings_back_a_guest(unit_registry, tmp_path):
    r, tables = unit_registry, str(tmp_path / "tables")
    prog = program(tmp_path)
    # the host's Python, as the unit runs it: without ansible-core (the program's shim stands in), with it (the venv's)
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    run = [python, "-I", str(prog), "--state-dir", r.state_dir, "--table-dir", tables]
    # bad usage: 2, nothing done
    out = subprocess.run([sys.executable, *run[1:], "--bogus"], capture_output=True, text=True, check=False)
    assert out.returncode == 2 and "unrecognized arguments: --bogus" in out.stderr
    persist.Kept(tables, "rb1").write_table(["tmpfs /srv tmpfs size=1m 0 0"])  # its mount table
    guests.ensure_guests(r, [{"name": "rb1", "namespaces": ["mnt", "uts", "ipc", "pid"], "hostname": "rb1.lab", "autostart": True,
                              "init": ["/bin/sleep", "1000000"], "stop_timeout": 0.1},
                             {"name": "rb2", "namespaces": ["uts"]}], table_dir=tables)
    before = r.load("rb1")
    for name in r.names():  # a reboot: processes and state gone, kept files stay
        guest_stop.remove(r, name, r.load(name))
    assert r.names() == []
    out = subprocess.run(run, capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert lines[-1] == "linuxns-guests-restore: 1 up, 0 failed, 1 left down", lines
    assert "linuxns-guests-restore: guest rb2: left down: autostart is false" in lines
    assert r.names() == ["rb1"]
    after = r.load("rb1")
    assert after.phase == reg.READY and not reg.health(after) and after.context_id == before.context_id
    assert after.hostname == "rb1.lab" and after.init_pid and after.init_pid != before.init_pid
    with open("/proc/%d/cmdline" % after.init_pid, "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"/bin/sleep", b"1000000"]
    with open("/proc/%d/mountinfo" % after.init_pid) as f:
        assert [line.split(" - ")[1].split()[0] for line in f if line.split()[4] == "/srv"] == ["tmpfs"]
    assert persist.Kept(tables, "rb1").read_definition()["guest"]["autostart"] is True
    # again: nothing to do, still 0
    out = subprocess.run(run, capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0 and "guest rb1: up (already up;" in out.stderr and r.load("rb1").init_pid == after.init_pid
