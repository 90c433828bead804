"""roles/guest_host: the restart supervisor's unit (linuxns-guests-restart.service) and its plain
script for other init systems.

systemd is not PID 1 here: the unit is checked with `systemd-analyze verify`; the script is run
for real (start, status, a second start, stop) against a scratch state folder, with the
collection's module_utils from this checkout as the role's lib folder would hold them.  The
supervisor it starts is stopped, also on failure.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
from waiting import wait_for

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "guest_host"
UNIT = "linuxns-guests-restart.service"


def render(name: str, dest: Path, **variables) -> Path:
    text = jinja2.Template((ROLE / "templates" / (name + ".j2")).read_text(), undefined=jinja2.StrictUndefined,
                           keep_trailing_newline=True).render(**variables)
    dest.write_text(text)
    return dest


def settings(unit: Path) -> dict:
    out = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def gone(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_unit_verifies(tmp_path):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("no systemd-analyze (apt-get install systemd)")
    unit = render(UNIT, tmp_path / UNIT, guest_host_lib_dir="/usr/local/lib/linuxns-guests",
                  guest_host_state_dir="/run/linuxns", guest_host_table_dir="/etc/linuxns/guests")
    out = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "linuxns-guests-restart" not in out.stdout + out.stderr, out.stdout + out.stderr
    s = settings(unit)
    assert s["Restart"] == ["always"] and s["KillMode"] == ["process"] and s["After"] == ["linuxns-guests.service"]
    assert s["ExecStart"] == ["/usr/bin/python3 -m ansible_collections.linuxns.guests.plugins.module_utils.supervisor "
                              "--state-dir /run/linuxns --table-dir /etc/linuxns/guests"]
    assert s["Environment"] == ["PYTHONPATH=/usr/local/lib/linuxns-guests"]


def plain_script(tmp_path: Path) -> Path:
    script = render("linuxns-guests-restart.sh", tmp_path / "linuxns-guests-restart", guest_host_lib_dir=str(REPO / "build"),
                    guest_host_state_dir=str(tmp_path / "state"), guest_host_table_dir=str(tmp_path / "tables"),
                    guest_host_restart_log=str(tmp_path / "restart.log"))
    script.chmod(0o755)
    return script


def test_plain_script_starts_once_reports_and_stops(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("runs the supervisor as root")
    state, log = tmp_path / "state", tmp_path / "restart.log"
    script = plain_script(tmp_path)

    def run(*args):
        return subprocess.run([str(script), *args], capture_output=True, text=True, check=False, timeout=60)

    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    pid = None
    try:
        assert run("status").returncode == 3
        assert run("start").stdout.strip() == "started"
        wait_for(lambda: log.exists() and "found 0 guests" in log.read_text(), "the supervisor's first look at %s" % state)
        assert "watching the guests of %s" % state in log.read_text()
        pid = int((state / "supervisor.lock").read_text())
        st = run("status")
        assert st.returncode == 0 and st.stdout.strip() == "running (pid %d)" % pid
        assert run("start").stdout.strip() == "running (pid %d)" % pid  # never a second one
        assert run("stop").stdout.strip() == "stopped"
        # "stop" returns once the supervisor is gone, as start-stop-daemon --retry does: a boot
        # script or an operator may start a new one right after
        assert gone(pid)
        assert run("status").returncode == 3
        pid = None
        assert "stopped; 0 guests were watched" in log.read_text()
    finally:
        if pid is not None and not gone(pid):
            os.kill(pid, signal.SIGKILL)


# A stand-in for a supervisor whose exit takes a while: it holds the lock as the real one does,
# and on SIGTERM becomes "sleep 1" with the lock still open.  That is what the kernel shows of
# any process on its way out: /proc/PID/cmdline is emptied when its memory is let go, before its
# files (the lock) are closed.  CI once caught the real supervisor in that window.
SLOW_EXIT = """
import fcntl, os, signal, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
os.set_inheritable(fd, True)  # kept across the exec below
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b"%d\\n" % os.getpid())
signal.signal(signal.SIGTERM, lambda *_: os.execv("/bin/sleep", ["sleep", "1"]))
while True:
    time.sleep(1)
"""


def test_plain_script_stop_waits_for_the_process_not_its_cmdline(tmp_path):
    script = plain_script(tmp_path)
    lock = tmp_path / "state" / "supervisor.lock"
    lock.parent.mkdir()
    fake = subprocess.Popen([sys.executable, "-c", SLOW_EXIT, str(lock), "fake-supervisor"])
    try:
        wait_for(lambda: lock.exists() and lock.read_text().strip() == str(fake.pid), "the stand-in's lock")
        out = subprocess.run([str(script), "stop"], capture_output=True, text=True, check=False, timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == "stopped", out
        assert fake.poll() is not None or gone(fake.pid), "stop returned while pid %d still runs" % fake.pid
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a start right after gets the lock
        finally:
            os.close(fd)
    finally:
        if fake.poll() is None:
            fake.kill()
        fake.wait()
