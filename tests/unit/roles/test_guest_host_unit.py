"""roles/guest_host: linuxns-guests.service (Delegate=yes) and its supervisor program.

systemd is not PID 1 on the test machine, so the unit is checked with `systemd-analyze verify`
and its behaviour by running exactly what its ExecStart runs, in a scratch "unit cgroup" named
linuxns-guests.service nested below the test process's own cgroup in each hierarchy systemd
would give the unit (unified, name=systemd and the v1 controllers systemd manages), as systemd
would start it: in that cgroup, with NOTIFY_SOCKET set (Type=notify).  Every cgroup made is
removed and the supervisor killed, also on failure.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import jinja2
import pytest

ROLE = Path(__file__).resolve().parents[3] / "roles" / "guest_host"
SUPERVISOR = ROLE / "files" / "linuxns-guests-supervisor"
TEMPLATE = ROLE / "templates" / "linuxns-guests.service.j2"
UNIT = "linuxns-guests.service"
# the hierarchies systemd makes a service's cgroup in (docs: "Controller Support"); cpuset and freezer are not among them
SYSTEMD_V1 = {"name=systemd", "cpu", "cpuacct", "blkio", "memory", "devices", "pids"}


def load_supervisor():
    loader = importlib.machinery.SourceFileLoader("linuxns_guests_supervisor", str(SUPERVISOR))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def render(tmp_path: Path) -> Path:
    text = jinja2.Template(TEMPLATE.read_text(), undefined=jinja2.StrictUndefined, keep_trailing_newline=True).render(
        guest_host_supervisor_path=str(SUPERVISOR))
    unit = tmp_path / UNIT
    unit.write_text(text)
    return unit


def unit_settings(unit: Path) -> dict:
    settings = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_verifies_and_delegates(tmp_path):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("no systemd-analyze (apt-get install systemd)")
    unit = render(tmp_path)
    out = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, check=False)
    # verify exits 0 on unknown keys and misplaced settings too: its output must be empty
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr
    s = unit_settings(unit)
    assert s["Delegate"] == ["yes"] and s["KillMode"] == ["process"] and s["Type"] == ["notify"]
    assert s["RefuseManualStop"] == ["yes"] and s["TasksMax"] == ["infinity"] and s["Slice"] == ["system.slice"]
    assert s["ExecStart"] == ["/usr/bin/python3 %s %%n" % SUPERVISOR]
    # with Delegate= these would run in a .control cgroup inside the delegated one
    assert not {"ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost"} & set(s)


HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
"""


def test_finds_the_unit_cgroup_in_each_hierarchy():
    sup = load_supervisor()
    own = ("5:memory:/system.slice/linuxns-guests.service\n2:cpu,cpuacct:/system.slice/linuxns-guests.service\n"
           "4:freezer:/\n1:name=systemd:/system.slice/linuxns-guests.service\n0::/system.slice/linuxns-guests.service\n")
    assert sup.unit_cgroups(UNIT, own, HYBRID_MOUNTINFO) == [
        "/sys/fs/cgroup/memory/system.slice/linuxns-guests.service",
        "/sys/fs/cgroup/cpu,cpuacct/system.slice/linuxns-guests.service",
        "/sys/fs/cgroup/systemd/system.slice/linuxns-guests.service",
        "/sys/fs/cgroup/unified/system.slice/linuxns-guests.service"]
    # pure v2, the cgroup mount rooted below / (a cgroup namespace) and a mount point with a space
    v2 = "29 22 0:26 /system.slice /sys/fs/cg\\040root rw - cgroup2 cgroup2 rw\n"
    assert sup.unit_cgroups(UNIT, "0::/system.slice/linuxns-guests.service\n", v2) == ["/sys/fs/cg root/linuxns-guests.service"]
    # never at a hierarchy root, never in a cgroup of another name
    assert sup.unit_cgroups(UNIT, "0::/\n1:name=systemd:/user.slice/session-3.scope\n", HYBRID_MOUNTINFO) == []


def own_hierarchies(everything: bool = False) -> dict:
    """{hierarchy key: (mount point, this process's cgroup path)} for unified and the v1 hierarchies systemd manages
    (``everything``: every mounted hierarchy)."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] in ("cgroup", "cgroup2") and fields[3] == "/":
                mounts.append((fields[sep + 1], set(fields[sep + 3].split(",")), fields[4]))
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _hid, controllers, path = line.rstrip("\n").split(":", 2)
            key = controllers or "unified"
            if not everything and key != "unified" and not set(key.split(",")) & SYSTEMD_V1:
                continue
            for fstype, opts, point in mounts:
                if (key == "unified" and fstype == "cgroup2") or (fstype == "cgroup" and set(key.split(",")) <= opts):
                    own[key] = (point, path.rstrip("/"))
                    break
    return own


def kill_and_remove(folder: str) -> None:
    """Remove a scratch cgroup tree bottom-up; processes still in it (ours) are killed first."""
    if not os.path.isdir(folder):
        return
    for sub in sorted((e.path for e in os.scandir(folder) if e.is_dir()), reverse=True):
        kill_and_remove(sub)
    for _attempt in range(200):
        with open(os.path.join(folder, "cgroup.procs")) as f:
            pids = [int(p) for p in f.read().split()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
    os.rmdir(folder)


@pytest.fixture
def unit_cgroup(tmp_path):
    """A scratch cgroup named linuxns-guests.service below this process's own cgroup, per hierarchy systemd manages."""
    if os.geteuid() != 0:
        pytest.skip("cgroups are made as root")
    scratch = "lnsops-%d" % os.getpid()
    own = own_hierarchies()
    if "unified" not in own and "name=systemd" not in own:
        pytest.skip("neither a unified nor a name=systemd hierarchy is mounted")
    made = {key: point + path + "/" + scratch for key, (point, path) in own.items()}
    try:
        for folder in made.values():
            os.makedirs(os.path.join(folder, UNIT))
        yield {"relative": scratch + "/" + UNIT, "dirs": {k: os.path.join(f, UNIT) for k, f in made.items()},
               "paths": {k: "%s/%s/%s" % (path, scratch, UNIT) for k, (_point, path) in own.items()}}
    finally:
        # also where systemd makes nothing (v1 cpuset, freezer): the module makes the path there for a guest
        for key, (point, path) in own_hierarchies(everything=True).items():
            kill_and_remove(made.get(key, point + path + "/" + scratch))


def start_as_systemd_would(unit_file: Path, dirs: dict, notify_path: str) -> subprocess.Popen:
    """ExecStart of the rendered unit (%n expanded), in the unit's cgroup, with NOTIFY_SOCKET (Type=notify)."""
    argv = shlex.split(unit_settings(unit_file)["ExecStart"][0].replace("%n", UNIT))

    def join_unit_cgroup():
        for folder in dirs.values():
            with open(os.path.join(folder, "cgroup.procs"), "w") as procs:
                procs.write("0")

    env = dict(os.environ, NOTIFY_SOCKET=notify_path)
    return subprocess.Popen(argv, env=env, preexec_fn=join_unit_cgroup, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def cgroup_of(pid: int) -> dict:
    with open("/proc/%d/cgroup" % pid) as f:
        return {(c or "unified"): p for _h, c, p in (line.rstrip("\n").split(":", 2) for line in f)}


def test_supervisor_moves_into_its_leaf_and_waits(tmp_path, unit_cgroup):
    unit_file = render(tmp_path)
    notify_path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(120)  # hang guard only: READY=1 comes as soon as the supervisor has moved
    proc = start_as_systemd_would(unit_file, unit_cgroup["dirs"], notify_path)
    try:
        message = listener.recv(4096).decode()
        assert message.startswith("READY=1\n"), message
        where = cgroup_of(proc.pid)
        for key, folder in unit_cgroup["dirs"].items():
            # the unit's cgroup holds no process (an inner node); the supervisor is in the leaf below it
            assert where[key] == unit_cgroup["paths"][key] + "/.supervisor", (key, where)
            assert Path(folder, "cgroup.procs").read_text() == ""
            assert Path(folder, ".supervisor", "cgroup.procs").read_text().split() == [str(proc.pid)]
        # it then only waits, as a small `sleep infinity` (the same pid: systemd's MainPID); the exec comes right after READY=1
        cmdline = Path("/proc/%d/cmdline" % proc.pid)
        for _attempt in range(6000):  # hang guard only
            if cmdline.read_bytes() == b"sleep\0infinity\0" or proc.poll() is not None:
                break
            time.sleep(0.01)
        assert cmdline.read_bytes() == b"sleep\0infinity\0"
        assert proc.poll() is None
    finally:
        listener.close()
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()


def test_supervisor_refuses_outside_a_unit_cgroup(unit_cgroup):
    """Started in a cgroup not named after the unit (here: the test's own), it fails and makes no cgroup."""
    before = {k: sorted(os.listdir(os.path.dirname(f))) for k, f in unit_cgroup["dirs"].items()}
    out = subprocess.run(["/usr/bin/python3", str(SUPERVISOR), UNIT], capture_output=True, text=True, check=False, env=dict(os.environ, NOTIFY_SOCKET=""))
    assert out.returncode == 1 and "in no cgroup named linuxns-guests.service" in out.stderr, out.stderr
    assert {k: sorted(os.listdir(os.path.dirname(f))) for k, f in unit_cgroup["dirs"].items()} == before
    out = subprocess.run(["/usr/bin/python3", str(SUPERVISOR)], capture_output=True, text=True, check=False)
    assert out.returncode == 2 and "usage:" in out.stderr


def test_guests_live_below_the_running_supervisor(tmp_path, unit_cgroup, unit_registry):
    """cgroup_parent = the scratch unit cgroup (relative to this process's, as the role's unit is for `auto`):
    the guest's cgroup is made next to .supervisor, its limits apply, removal takes only the guest's."""
    from ansible_collections.linuxns.guests.plugins.module_utils import guests

    notify_path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(120)  # hang guard only
    proc = start_as_systemd_would(render(tmp_path), unit_cgroup["dirs"], notify_path)
    try:
        assert listener.recv(4096).startswith(b"READY=1")
        guests.ensure_guests(unit_registry, [{"name": "supg1", "cgroup_parent": unit_cgroup["relative"], "limits": {"pids": 32},
                                              "stop_timeout": 1}])
        meta = unit_registry.load("supg1")
        where = cgroup_of(meta.init_pid)
        for key, path in unit_cgroup["paths"].items():
            assert where[key] == path + "/supg1", (key, where)
            assert Path(unit_cgroup["dirs"][key], "cgroup.procs").read_text() == ""  # still an inner node
        if "pids" in unit_cgroup["dirs"]:
            assert Path(unit_cgroup["dirs"]["pids"], "supg1", "pids.max").read_text().strip() == "32"
        guests.ensure_guests(unit_registry, [{"name": "supg1", "state": "absent", "stop_timeout": 1}])
        for key, folder in unit_cgroup["dirs"].items():
            assert sorted(e.name for e in os.scandir(folder) if e.is_dir()) == [".supervisor"], key
        assert cgroup_of(proc.pid)[next(iter(unit_cgroup["paths"]))].endswith("/.supervisor") and proc.poll() is None
    finally:
        listener.close()
        proc.kill()
        proc.wait()
