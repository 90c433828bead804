"""Lab hosts for linuxns.guests: real hosts with real sshd, made on this machine.

A lab host is a process tree in its own net, mount, UTS and PID namespace. Its PID 1 is
``catatonit -P`` (a reaper that does nothing else), so killing that one process removes
everything made inside: sshd, Ansible's sessions, guests and their pins. The lab host is
joined to the machine by a veth pair (machine side ``lnsgG`` 198.18.G.1/24, lab side
``eth0`` 198.18.G.2/24, G = global host number), has private tmpfs mounts on /run and /tmp
and an overlay on /etc whose writes stay in the lab host, Debian's default root dot files
(/usr/share/base-files/dot.{bashrc,profile} bound over /root/.bashrc and /root/.profile),
hostname ``labN`` and its own sshd that lets root in with a key kept in the lab's state
folder. The machine's own sshd, ~/.ssh and network configuration are never touched.

A lab host shares the machine's filesystem except /run and /tmp: files under the machine's
/tmp (a pytest tmp_path, a clone made there) are not visible inside it. Its sshd reads its
config and keys from /run/lab (copied at setup) and logs to /run/lab/sshd.log, readable
from the machine as /proc/PID/root/run/lab/sshd.log (`status` shows the path).

Usage (as root):

    python3 tests/lab/lab.py up [--hosts N]     # idempotent; cleans up after a crash
    python3 tests/lab/lab.py down [--purge]     # idempotent; --purge drops the state folder
    python3 tests/lab/lab.py status             # JSON
    python3 tests/lab/lab.py inventory          # writes and prints STATE/inventory.ini
    eval "$(python3 tests/lab/lab.py env)"      # ANSIBLE_CONFIG, LAB_INVENTORY, LAB_STATE
    python3 tests/lab/lab.py exec N -- argv...  # runs argv inside lab host N

Environment: LINUXNS_LAB=NAME selects another lab (state folder ``.lab-NAME``, global host
numbers BASE+1..), LINUXNS_LAB_BASE=B picks that BASE (default: derived from NAME, a
multiple of 20), LINUXNS_LAB_PIPELINING=0/1 sets Ansible pipelining in the written
ansible.cfg (default 1).

Standard library only (Python 3.9+): tests import this file (``from lab import Lab``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

NET_PREFIX = "198.18"          # lab addresses stay inside 198.18.0.0/15
IF_PREFIX = "lnsg"
HOSTS_PER_LAB = 32             # a lab may use BASE+1 .. BASE+32; labs side by side must not overlap
MAX_GLOBAL = 254               # 198.18.G.x with 1 <= G <= 254
REAPER = "/usr/bin/catatonit"
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
HOST_PYTHON = "/usr/bin/python3"
# guest_host's installs in a lab host: its own /run and /tmp, never the machine's /usr/local, which
# lab hosts share. Every inventory of lab hosts carries these (lab.py's own, test_runner's slices).
LAB_ROLE_VARS = {"guest_host_operator_path": "/run/linuxns-lab/linuxns-guest",
                 "guest_host_operator_cache_dir": "/run/linuxns-lab/linuxns-guest.cache",
                 "guest_host_restore_path": "/tmp/linuxns-lab/linuxns-guests-restore"}
LAB_RUN = "/run/lab"           # inside a lab host: its sshd's config, keys and log
MARKER_ENV = "LINUXNS_LAB_ID"  # set on each lab host's unshare/PID 1 to find orphans
SOCKET_PATH_LIMIT = 50         # longest control_path_dir kept inside the state folder

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


class LabError(RuntimeError):
    """Raised when the lab cannot be brought to the requested state."""


# ---------------------------------------------------------------------------
# Pure functions: naming, addressing, file contents (unit-tested)
# ---------------------------------------------------------------------------

def validate_lab_name(name: str) -> str:
    if name and not _NAME_RE.match(name):
        raise LabError(f"LINUXNS_LAB={name!r}: use letters, digits, '_', '.', '-' (max 32)")
    return name


def lab_base(name: str, base: object | None = None) -> int:
    """Global number of host 0 of lab NAME: host N is BASE+N.

    The default lab ("") has base 0. Another lab takes an explicit base or one derived
    from its name: a multiple of 20 from 20 to 220. A lab may grow to HOSTS_PER_LAB hosts;
    with derived bases 20 apart, labs running side by side fit 19 hosts each (a host
    number already taken by another lab's running host is refused when it comes up).
    """
    if base is not None and str(base) != "":
        try:
            value = int(str(base))
        except ValueError:
            raise LabError(f"LINUXNS_LAB_BASE={base!r} is not a number") from None
        if not 0 <= value <= MAX_GLOBAL - 1:
            raise LabError(f"LINUXNS_LAB_BASE={value} is outside 0..{MAX_GLOBAL - 1}")
        return value
    if not name:
        return 0
    return 20 * (1 + zlib.crc32(name.encode()) % 11)


def global_number(base: int, n: int) -> int:
    if not 1 <= n <= HOSTS_PER_LAB:
        raise LabError(f"lab host {n}: host numbers run from 1 to {HOSTS_PER_LAB}")
    g = base + n
    if g > MAX_GLOBAL:
        raise LabError(f"lab host {n}: global number {g} exceeds {MAX_GLOBAL} (lower LINUXNS_LAB_BASE)")
    return g


def host_name(n: int) -> str:
    return f"lab{n}"


def ifname(g: int) -> str:
    name = f"{IF_PREFIX}{g}"
    assert len(name) <= 15
    return name


def machine_address(g: int) -> str:
    return f"{NET_PREFIX}.{g}.1"


def host_address(g: int) -> str:
    return f"{NET_PREFIX}.{g}.2"


def state_dir_for(repo: Path, name: str) -> Path:
    return Path(repo) / (".lab" if not name else f".lab-{name}")


def control_path_dir(state_dir: Path) -> Path:
    """Folder for ssh ControlMaster sockets.

    A unix socket path is limited to 108 bytes; ssh uses DIR/<40 hex>.<16 random> while
    creating it. A state folder too deep for that gets a short folder in /tmp instead.
    """
    inside = Path(state_dir) / "cp"
    if len(str(inside)) <= SOCKET_PATH_LIMIT:
        return inside
    digest = hashlib.sha1(str(state_dir).encode()).hexdigest()[:12]
    return Path("/tmp") / f"lnsg-cp-{digest}"


def ssh_common_args(state_dir: Path) -> list:
    return [
        "-F", "/dev/null",
        "-o", "StrictHostKeyChecking=no",
        "-o", f"UserKnownHostsFile={Path(state_dir) / 'known_hosts'}",
        "-o", "IdentitiesOnly=yes",
    ]


def inventory_text(hosts: Sequence[tuple], state_dir: Path) -> str:
    """Inventory for the lab; HOSTS is a list of (n, g) pairs."""
    state_dir = Path(state_dir)
    lines = ["# written by tests/lab/lab.py; regenerated on every `up`", "[lab]"]
    for n, g in sorted(hosts):
        lines.append(f"{host_name(n)} ansible_host={host_address(g)}")
    lines += [
        "",
        "[lab:vars]",
        "ansible_user=root",
        f"ansible_ssh_private_key_file={state_dir / 'id_ed25519'}",
        f"ansible_python_interpreter={HOST_PYTHON}",
        "ansible_ssh_common_args='" + " ".join(ssh_common_args(state_dir)) + "'",
        "ansible_host_key_checking=false",
        "ansible_paramiko_host_key_checking=false",
        "# lab hosts share the machine's /usr: guest_host's programs go to their own /run and /tmp",
        *("%s=%s" % kv for kv in LAB_ROLE_VARS.items()),
        "",
    ]
    return "\n".join(lines)


def ansible_cfg_text(state_dir: Path, repo: Path, pipelining: bool = True) -> str:
    state_dir = Path(state_dir)
    return "\n".join([
        "# written by tests/lab/lab.py; regenerated on every `up`",
        "[defaults]",
        f"inventory = {state_dir / 'inventory.ini'}",
        f"collections_path = {Path(repo) / 'build'}",
        "host_key_checking = False",
        "remote_tmp = /tmp/.ansible-remote",
        f"local_tmp = {state_dir / 'tmp'}",
        "forks = 10",
        f"interpreter_python = {HOST_PYTHON}",
        "retry_files_enabled = False",
        "timeout = 30",
        "",
        "[ssh_connection]",
        f"control_path_dir = {control_path_dir(state_dir)}",
        "control_path = %(directory)s/%%C",
        # Also here, not only in the inventory: an ssh connection to a host the inventory
        # does not describe (a plugin's inner connection) still keeps off ~/.ssh.
        "ssh_args = -o ControlMaster=auto -o ControlPersist=60s " + " ".join(ssh_common_args(state_dir)),
        f"pipelining = {bool(pipelining)}",
        "",
        "[paramiko_connection]",
        "host_key_checking = False",
        "record_host_keys = False",
        "",
    ])


def cgroup_parent_name(lab_name: str, host: str | None = None) -> str:
    """The cgroup parent of a lab's guests (relative: below the test's own cgroup): one folder
    per lab, one below it per lab host (the lab hosts share this machine's cgroupfs, and guests
    of the same name on two lab hosts must not share a cgroup)."""
    return f"linuxns-lab-{lab_name}" + (f"/{host}" if host else "")


def own_cgroup_dirs(relative: str = "", mountinfo: str = "/proc/self/mountinfo",
                    self_cgroup: str = "/proc/self/cgroup") -> dict:
    """Hierarchy key ("unified", "memory", "cpu,cpuacct", "name=systemd"...) -> the folder
    RELATIVE below this process's own cgroup in that hierarchy, for every mounted one."""
    own = {}
    with open(self_cgroup) as f:
        for line in f:
            _hid, ctrls, path = line.rstrip("\n").split(":", 2)
            own["unified" if not ctrls else ",".join(sorted(ctrls.split(",")))] = path
    out = {}
    with open(mountinfo) as f:
        for line in f:
            pre, _sep, post = line.rstrip("\n").partition(" - ")
            fields, tail = pre.split(), post.split()
            if len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
                continue
            if tail[0] == "cgroup2":
                key = "unified"
            else:
                skip = ("rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods")
                opts = [o for o in tail[2].split(",") if o not in skip and not o.startswith("release_agent=")]
                key = ",".join(sorted(opts))
            root, point = fields[3], fields[4].replace("\\040", " ")
            path = own.get(key)
            if key in out or path is None or not (path == root or path.startswith(root.rstrip("/") + "/")):
                continue
            rest = path[len(root.rstrip("/")):].lstrip("/")
            out[key] = os.path.normpath(os.path.join(point, rest, relative))
    return out


def remove_cgroup_tree(relative: str, timeout: float = 10.0) -> list:
    """Remove the cgroup folder RELATIVE below this process's own cgroup, in every
    hierarchy, bottom-up (rmdir only: nothing is killed). A folder whose processes are
    still exiting is retried until TIMEOUT; returns the folders left (empty: all gone)."""
    if not relative or relative.startswith("/") or ".." in relative.split("/"):
        raise LabError(f"remove_cgroup_tree: {relative!r} is not a relative cgroup path")
    left = []
    deadline = time.monotonic() + timeout
    for top in own_cgroup_dirs(relative).values():
        if not os.path.isdir(top):
            continue
        dirs = [d for d, _subs, _files in os.walk(top, topdown=False)]
        for d in dirs:
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        left.append(d)
                        break
                    time.sleep(0.05)
    return left


def sshd_setenv_option(lab_name: str, host: str) -> str:
    """The sshd option every session of lab host HOST gets (on its command line, as the config
    file is the lab's): LINUXNS_CGROUP_PARENT=linuxns-lab-LAB/HOST, so the guests made through
    the lab have their cgroups below the test's own cgroup (lab sshd runs in it); `down`
    removes linuxns-lab-LAB."""
    return f"SetEnv=LINUXNS_CGROUP_PARENT={cgroup_parent_name(lab_name, host)}"


def sshd_config_text(run_dir: str = LAB_RUN, lab_name: str | None = None) -> str:
    """sshd_config as a lab host reads it: files are copied into RUN_DIR (on the lab
    host's private /run) at setup, as the state folder may be hidden inside the lab host
    (a clone under /tmp). ListenAddress and SetEnv (sshd_setenv_option) are given per host
    on the command line."""
    setenv = ["# SetEnv LINUXNS_CGROUP_PARENT=" + cgroup_parent_name(lab_name, "HOST") + " per host on the command line"] if lab_name else []
    return "\n".join([
        "# lab sshd (tests/lab/lab.py); one sshd per lab host, in its namespaces",
        f"HostKey {run_dir}/ssh_host_ed25519_key",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        f"AuthorizedKeysFile {run_dir}/authorized_keys",
        "StrictModes no",
        "UsePAM no",
        "PidFile /run/sshd.pid",
        "MaxStartups 200",
        "MaxSessions 200",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        f"Subsystem sftp {SFTP_SERVER}",
        *setenv,
        "",
    ])


def _stat_fields(text: str) -> list:
    """The fields of /proc/PID/stat's text after the command name: [0] is field 3 (state), [1]
    field 4 (the parent's pid), [19] field 22 (start time)."""
    return text[text.rindex(")") + 2:].split()


def parse_stat(text: str) -> tuple:
    """(state, start time in clock ticks) from the text of /proc/PID/stat."""
    rest = _stat_fields(text)
    return rest[0], int(rest[19])


# ---------------------------------------------------------------------------
# Process helpers
# ---------------------------------------------------------------------------

def proc_stat(pid: int) -> tuple | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_stat(f.read())
    except (OSError, ValueError, IndexError):
        return None


def proc_start_time(pid: int) -> int | None:
    st = proc_stat(pid)
    return st[1] if st else None


def is_running(pid: int | None, start: int | None) -> bool:
    """True if PID is alive (not a zombie) and is the process that started at START."""
    if not pid:
        return False
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X") and st[1] == start


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _children() -> dict:
    """{parent pid: [child pids]} of every process, from /proc/*/stat (field 4)."""
    out: dict = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            out.setdefault(int(_stat_fields(text)[1]), []).append(int(entry))
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL process PID and every process below it. Each one found is stopped first (SIGSTOP:
    it forks no more), the tree is walked again until it holds no new process, then all are
    killed. A process group or session is not enough: ansible-playbook's workers each call
    setsid() (WorkerProcess._detach), and so leave the group of the program that forked them."""
    stopped: dict = {}
    while True:
        children = _children()
        todo, tree = [pid], []
        while todo:
            p = todo.pop()
            tree.append(p)
            todo.extend(children.get(p, ()))
        new = [p for p in tree if p not in stopped]
        if not new:
            break
        for p in new:
            stopped[p] = proc_start_time(p)
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
    for p, start in stopped.items():
        if p == pid or (start is not None and proc_start_time(p) == start):  # not a reused pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


def run_tree(argv, check=False, capture_output=False, timeout=None, **kw):
    """subprocess.run for a program that forks (ansible-playbook and its workers): when the
    caller is interrupted (Ctrl-C, SIGTERM, ``timeout``) the program and every process below it
    are killed (kill_tree). subprocess.run alone kills only the first process: ansible's forked
    workers lived on, their ssh to a lab host already taken down hanging for ever - and, holding
    the output pipes, they made subprocess.run's own wait after a timeout hang with them."""
    if capture_output:
        kw.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc = subprocess.Popen(argv, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        kill_tree(proc.pid)
        proc.wait()
        raise
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, argv, out, err)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def kill_verified(pid: int | None, start: int | None, timeout: float = 10.0) -> None:
    """SIGKILL PID only if it is still the process that started at START; wait until gone."""
    if not is_running(pid, start):
        _reap(pid or 0)
        return
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_running(pid, start):
            return
        time.sleep(0.02)
    raise LabError(f"process {pid} did not exit within {timeout:.0f}s after SIGKILL")


def find_marked(marker: str, prefix: bool = False, with_marker: bool = False) -> list:
    """(pid, start) of processes whose environment carries MARKER_ENV=marker (or a prefix);
    (pid, start, marker) with WITH_MARKER."""
    want = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        hit = next((e for e in env if e == want or (prefix and e.startswith(want))), None)
        if hit is not None:
            st = proc_stat(int(entry))
            if st and st[0] not in ("Z", "X"):
                mark = hit.decode(errors="replace").split("=", 1)[1]
                found.append((int(entry), st[1], mark) if with_marker else (int(entry), st[1]))
    return found


def _tool(name: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin")
    if not path:
        raise LabError(f"{name} not found (run `make deps`)")
    return path


def _run(argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 60)
    proc = subprocess.run(list(argv), check=False, **kw)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed (rc={proc.returncode}): {(proc.stderr or '').strip()}")
    return proc


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def wait_link_gone(name: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while link_exists(name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def holds_peer(pid: int, name: str) -> bool:
    """True if the netns of PID holds the peer of veth NAME (of this netns)."""
    try:
        ifindex = Path(f"/sys/class/net/{name}/ifindex").read_text().strip()
    except OSError:
        return False
    proc = subprocess.run([_tool("nsenter"), f"--net=/proc/{pid}/ns/net", _tool("ip"), "-o",
                           "link", "show"], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30, check=False)
    return ifindex in re.findall(r"^\d+: [^@:\s]+@if(\d+):", proc.stdout, re.M)


def veth_owner(name: str) -> str | None:
    """Marker (``STATE#N``) of the live lab host, of any lab or clone, holding the peer of
    veth NAME; None when no lab host holds it (a stale veth, safe to delete)."""
    for pid, _start, mark in find_marked("", prefix=True, with_marker=True):
        try:
            if os.readlink(f"/proc/{pid}/exe") != REAPER:
                continue
        except OSError:
            continue
        if holds_peer(pid, name):
            return mark
    return None


def delete_link(name: str, timeout: float = 10.0) -> None:
    """Delete interface NAME (and so its veth peer); only for a veth known to be ours."""
    if link_exists(name):
        subprocess.run([_tool("ip"), "link", "del", name], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30, check=False)
    if not wait_link_gone(name, timeout):
        raise LabError(f"interface {name} is still there after {timeout:.0f}s")


def tcp_open(address: str, port: int = 22, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# The lab
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class LabHost:
    n: int                     # number inside this lab (lab1 = 1)
    g: int                     # global number: interface and addresses
    pid: int | None = None     # PID 1 of the lab host, as seen from the machine
    pid_start: int | None = None
    unshare_pid: int | None = None
    unshare_start: int | None = None

    @property
    def name(self) -> str:
        return host_name(self.n)

    @property
    def ifname(self) -> str:
        return ifname(self.g)

    @property
    def address(self) -> str:
        return host_address(self.g)

    @property
    def machine_address(self) -> str:
        return machine_address(self.g)

    @property
    def running(self) -> bool:
        return is_running(self.pid, self.pid_start)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(name=self.name, ifname=self.ifname, address=self.address,
                 machine_address=self.machine_address)
        return d


class Lab:
    """One lab: a state folder and the lab hosts recorded in it."""

    def __init__(self, name: str | None = None, base: object | None = None,
                 state_dir: os.PathLike | None = None, repo: os.PathLike = REPO,
                 pipelining: bool | None = None) -> None:
        self.name = validate_lab_name(os.environ.get("LINUXNS_LAB", "") if name is None else name)
        self.base = lab_base(self.name, os.environ.get("LINUXNS_LAB_BASE") if base is None else base)
        self.repo = Path(repo)
        self.state_dir = Path(state_dir) if state_dir else state_dir_for(self.repo, self.name)
        if pipelining is None:
            pipelining = os.environ.get("LINUXNS_LAB_PIPELINING", "1").lower() not in ("0", "false", "no")
        self.pipelining = pipelining

    # -- paths -------------------------------------------------------------
    @property
    def inventory_path(self) -> Path:
        return self.state_dir / "inventory.ini"

    @property
    def ansible_cfg_path(self) -> Path:
        return self.state_dir / "ansible.cfg"

    @property
    def key_path(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts_path(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def hosts_dir(self) -> Path:
        return self.state_dir / "hosts"

    @property
    def cp_dir(self) -> Path:
        return control_path_dir(self.state_dir)

    def _record_path(self, n: int) -> Path:
        return self.hosts_dir / f"{n}.json"

    @property
    def meta_path(self) -> Path:
        return self.state_dir / "lab.json"

    def _recorded_base(self) -> int | None:
        try:
            return int(json.loads(self.meta_path.read_text())["base"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _marker(self, n: int | None = None) -> str:
        return f"{self.state_dir}#" + ("" if n is None else str(n))

    # -- records -----------------------------------------------------------
    def _read(self, n: int) -> LabHost | None:
        try:
            data = json.loads(self._record_path(n).read_text())
        except (OSError, ValueError):
            return None
        fields = {f.name for f in dataclasses.fields(LabHost)}
        return LabHost(**{k: v for k, v in data.items() if k in fields})

    def _write(self, host: LabHost) -> None:
        self.hosts_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._record_path(host.n).with_suffix(".tmp")
        tmp.write_text(json.dumps(host.as_dict(), indent=1) + "\n")
        os.replace(tmp, self._record_path(host.n))

    def _recorded(self) -> list:
        if not self.hosts_dir.is_dir():
            return []
        numbers = sorted(int(p.stem) for p in self.hosts_dir.glob("*.json") if p.stem.isdigit())
        return [h for h in (self._read(n) for n in numbers) if h is not None]

    @property
    def hosts(self) -> list:
        """Recorded lab hosts (LabHost), running or not, ordered by number."""
        return self._recorded()

    def host(self, n: int) -> LabHost:
        h = self._read(n)
        if h is None:
            raise LabError(f"{host_name(n)} is not up in lab {self.state_dir.name}")
        return h

    def host_pid(self, n: int) -> int:
        """PID (as seen from the machine) of lab host N's PID 1; raises if it is not running."""
        h = self.host(n)
        if not h.running:
            raise LabError(f"{host_name(n)} is not running (stale record; run `up`)")
        return h.pid

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # -- health ------------------------------------------------------------
    def healthy(self, n: int) -> bool:
        h = self._read(n)
        if h is None or not h.running:
            return False
        try:
            exe = os.readlink(f"/proc/{h.pid}/exe")
        except OSError:
            return False
        return (exe == REAPER and link_exists(h.ifname) and self._keys_current(h)
                and tcp_open(h.address))

    def _keys_current(self, h: LabHost) -> bool:
        """The lab host's sshd uses the state folder's present keys and config (copied at setup)."""
        for name in ("authorized_keys", "ssh_host_ed25519_key", "sshd_config"):
            try:
                inside = Path(f"/proc/{h.pid}/root{LAB_RUN}/{name}").read_bytes()
                if inside != (self.state_dir / name).read_bytes():
                    return False
            except OSError:
                return False
        return True

    # -- up ------------------------------------------------------------------
    def up(self, n: int = 2, timeout: float = 20.0) -> list:
        """Make the lab consist of exactly hosts 1..N, all answering ssh. Idempotent."""
        wanted = [global_number(self.base, i) for i in range(1, n + 1)]  # validates N
        with self._locked():
            self._prepare()
            for h in self._recorded():
                if h.n > n:
                    self._destroy(h.n)
            created = []
            for i, g in zip(range(1, n + 1), wanted):
                if not self.healthy(i):
                    self._destroy(i)
                    created.append(i)
                    self._create(i, g)
            self._write_known_hosts()
            self._write_ansible_files()
            for i in created:
                self._wait_ssh(i, timeout)
        return self.hosts

    def _prepare(self) -> None:
        sd = self.state_dir
        sd.mkdir(parents=True, exist_ok=True)
        recorded = self._recorded_base()
        if recorded is not None and recorded != self.base and self._recorded():
            raise LabError(f"lab {sd.name} is up with base {recorded}, not {self.base}: "
                           "run `down` first or keep LINUXNS_LAB_BASE as it was")
        self.meta_path.write_text(json.dumps({"name": self.name, "base": self.base}) + "\n")
        for sub in (self.hosts_dir, sd / "tmp", self.cp_dir):
            sub.mkdir(parents=True, exist_ok=True, mode=0o700)
        keygen = _tool("ssh-keygen")
        for key, comment in ((sd / "id_ed25519", "linuxns-lab-client"),
                             (sd / "ssh_host_ed25519_key", "linuxns-lab-host")):
            if not (key.exists() and key.with_suffix(".pub").exists()):
                for p in (key, key.with_suffix(".pub")):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                _run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)])
        pub = (sd / "id_ed25519.pub").read_text()
        (sd / "authorized_keys").write_text(pub)
        (sd / "sshd_config").write_text(sshd_config_text(lab_name=self.name))

    def _create(self, n: int, g: int) -> None:
        ifn = ifname(g)
        for pid, start in find_marked(self._marker(n)):
            kill_verified(pid, start)
        self._clear_stale_link(ifn, strict=True)
        env = dict(os.environ)
        env[MARKER_ENV] = self._marker(n)
        proc = subprocess.Popen(
            [_tool("unshare"), "--pid", "--fork", "--kill-child=SIGKILL", "--mount-proc",
             "--mount", "--uts", "--net", "--propagation", "private", "--", REAPER, "-P"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True, start_new_session=True, cwd="/", env=env)
        host = LabHost(n=n, g=g, unshare_pid=proc.pid, unshare_start=proc_start_time(proc.pid))
        self._write(host)
        try:
            host.pid, host.pid_start = self._wait_reaper(proc)
            self._write(host)
            self._configure(host)
        except BaseException:
            with contextlib.suppress(Exception):
                self._destroy(n)
            raise

    @staticmethod
    def _wait_reaper(proc: subprocess.Popen, timeout: float = 10.0) -> tuple:
        """PID of unshare's child once it has exec'd the reaper (so /proc is mounted)."""
        deadline = time.monotonic() + timeout
        children = f"/proc/{proc.pid}/task/{proc.pid}/children"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LabError(f"unshare exited with {proc.returncode} before the lab host started")
            with contextlib.suppress(OSError, ValueError):
                with open(children) as f:
                    kids = [int(x) for x in f.read().split()]
                if kids:
                    pid = kids[0]
                    if os.readlink(f"/proc/{pid}/exe") == REAPER:
                        start = proc_start_time(pid)
                        if start is not None:
                            return pid, start
            time.sleep(0.01)
        raise LabError(f"lab host reaper did not start within {timeout:.0f}s")

    def _configure(self, host: LabHost) -> None:
        ip = _tool("ip")
        _run([ip, "link", "add", host.ifname, "type", "veth", "peer", "name", "eth0",
              "netns", str(host.pid)])
        # No IPv6 on the wire: lab traffic stays within 198.18.0.0/15.
        v6 = Path(f"/proc/sys/net/ipv6/conf/{host.ifname}/disable_ipv6")
        if v6.exists():
            v6.write_text("1\n")
        _run([ip, "addr", "add", f"{host.machine_address}/24", "dev", host.ifname])
        _run([ip, "link", "set", host.ifname, "up"])
        # The state folder is copied to LAB_RUN before /tmp is covered: it may live under
        # /tmp (a clone there), which the lab host does not see afterwards.
        script = r"""
set -eu
# The machine's own mounts at and below /run (its /run/netns once an `ip netns add` ran there)
# would stay in this host's mount table, hidden under the tmpfs below, and every guest made
# here would copy them. This mount namespace is private (unshare --propagation private):
# taking them off here never touches the machine's.
for m in $(awk '$5 == "/run" || index($5, "/run/") == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || true
done
mount -t tmpfs -o mode=0755,nosuid,nodev lab-run /run
mkdir -m 0700 "$4"
cp "$3/sshd_config" "$3/ssh_host_ed25519_key" "$3/authorized_keys" "$4/"
chmod 0600 "$4/ssh_host_ed25519_key"
mount -t tmpfs -o mode=1777,nosuid,nodev lab-tmp /tmp
# /etc is an overlay whose writes land in the lab host's /run: what a test writes
# there (e.g. /etc/linuxns/guests/NAME/fstab tables) never reaches the machine.
mkdir -m 0755 /run/lab-etc /run/lab-etc/upper /run/lab-etc/work
mount -t overlay -o lowerdir=/etc,upperdir=/run/lab-etc/upper,workdir=/run/lab-etc/work lab-etc /etc
# root's shell reads Debian's default dot files, as on a fresh host, not this machine's: each
# ssh command (every Ansible task) runs bash, which reads ~/.bashrc, and a developer's one
# (pyenv init here: ~165 ms per command, and a `pyenv rehash` that writes the machine's
# ~/.pyenv and, killed, leaves a lock that stalls every later shell for 60 s) would be
# counted in every lab figure. Bind mounts in this private namespace: the machine's files stay.
for f in bashrc profile; do
    if [ -f "/root/.$f" ] && [ -f "/usr/share/base-files/dot.$f" ]; then
        mount --bind "/usr/share/base-files/dot.$f" "/root/.$f"
    fi
done
hostname "$1"
if [ -e /proc/sys/net/ipv6/conf/eth0/disable_ipv6 ]; then
    echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6
fi
ip link set lo up
ip addr add "$2/24" dev eth0
ip link set eth0 up
mkdir -m 0755 /run/sshd
exec "$5" -f "$4/sshd_config" -o "ListenAddress=$2" -o "$6" -E "$4/sshd.log"
"""
        self._nsenter(host.pid, ["/bin/sh", "-c", script, "lab-setup", host.name, host.address,
                                 str(self.state_dir), LAB_RUN, SSHD, sshd_setenv_option(self.name, host.name)])

    def sshd_log(self, n: int) -> str:
        """Lab host N's sshd log (read from the machine through /proc/PID/root)."""
        try:
            return Path(f"/proc/{self.host_pid(n)}/root{LAB_RUN}/sshd.log").read_text()
        except (OSError, LabError) as e:
            return f"(no sshd log: {e})"

    def _nsenter_argv(self, pid: int, argv: Sequence[str]) -> list:
        return [_tool("nsenter"), "--target", str(pid), "--all", "--wd=/", "--", *argv]

    def _nsenter(self, pid: int, argv: Sequence[str]) -> subprocess.CompletedProcess:
        return _run(self._nsenter_argv(pid, argv))

    def ssh_argv(self, n: int, argv: Sequence[str] = ()) -> list:
        """ssh command line that logs into lab host N as root and runs ARGV (a string list)."""
        h = self.host(n)
        return [_tool("ssh"), *ssh_common_args(self.state_dir), "-i", str(self.key_path),
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", f"root@{h.address}", *argv]

    def _wait_ssh(self, n: int, timeout: float) -> None:
        h = self.host(n)
        deadline = time.monotonic() + timeout
        while not tcp_open(h.address, timeout=0.5):
            if time.monotonic() > deadline or not h.running:
                raise LabError(f"{h.name}: sshd on {h.address}:22 did not answer; sshd log:\n"
                               + self.sshd_log(n)[-2000:])
            time.sleep(0.05)
        last = ""
        while time.monotonic() < deadline:
            proc = subprocess.run(self.ssh_argv(n, ["true"]), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=30, check=False)
            if proc.returncode == 0:
                return
            last = proc.stderr.strip()
            time.sleep(0.2)
        raise LabError(f"{h.name}: ssh root@{h.address} true failed: {last}; sshd log:\n"
                       + self.sshd_log(n)[-2000:])

    def _write_known_hosts(self) -> None:
        key = (self.state_dir / "ssh_host_ed25519_key.pub").read_text().split()
        lines = [f"{h.address} {key[0]} {key[1]}" for h in self._recorded()]
        self.known_hosts_path.write_text("\n".join(lines) + "\n")

    def _write_ansible_files(self) -> None:
        self.inventory_path.write_text(
            inventory_text([(h.n, h.g) for h in self._recorded()], self.state_dir))
        self.ansible_cfg_path.write_text(
            ansible_cfg_text(self.state_dir, self.repo, self.pipelining))

    def write_inventory(self) -> str:
        """(Re)write inventory.ini and ansible.cfg for the recorded hosts; return the inventory."""
        with self._locked():
            for sub in (self.state_dir / "tmp", self.cp_dir):
                sub.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._write_ansible_files()
        return self.inventory_path.read_text()

    # -- down ----------------------------------------------------------------
    def down(self, purge: bool = False) -> None:
        """Remove every lab host of this lab, also after a crash. Idempotent."""
        if not self.state_dir.exists():
            for pid, start in find_marked(self._marker(), prefix=True):
                kill_verified(pid, start)
            return
        with self._locked():
            self._stop_control_masters()
            for h in self._recorded():
                self._destroy(h.n)
            self._sweep()
            left = remove_cgroup_tree(cgroup_parent_name(self.name))
            with contextlib.suppress(FileNotFoundError):
                self.inventory_path.unlink()
            shutil.rmtree(self.state_dir / "tmp", ignore_errors=True)
            shutil.rmtree(self.cp_dir, ignore_errors=True)
            if purge:
                shutil.rmtree(self.state_dir, ignore_errors=True)
            if left:
                raise LabError("cgroups left after the lab's hosts are gone: " + ", ".join(left))

    def _clear_stale_link(self, ifn: str, strict: bool) -> None:
        """Delete veth IFN left over from a crash, unless a live lab host holds its peer.

        A veth normally goes away with its lab host's netns; one held by a live lab host of
        another lab (or another clone) is never touched: with STRICT that is an error.
        """
        if not link_exists(ifn) or wait_link_gone(ifn, 0.5):
            return
        owner = veth_owner(ifn)
        if owner is None:
            delete_link(ifn)
        elif strict:
            raise LabError(f"{ifn} is in use by lab host {owner}; take that lab down or give "
                           "this one another LINUXNS_LAB / LINUXNS_LAB_BASE")

    def _sweep(self) -> None:
        """Kill this lab's orphaned processes and delete its stale veths (after a crash)."""
        for pid, start in find_marked(self._marker(), prefix=True):
            kill_verified(pid, start)
        base = self._recorded_base()
        if base is not None:
            for g in range(base + 1, min(base + HOSTS_PER_LAB, MAX_GLOBAL) + 1):
                self._clear_stale_link(ifname(g), strict=False)

    def _stop_control_masters(self) -> None:
        cp = self.cp_dir
        if not cp.is_dir():
            return
        ssh = _tool("ssh")
        for sock in cp.iterdir():
            if sock.is_socket():
                subprocess.run([ssh, "-F", "/dev/null", "-o", f"ControlPath={sock}", "-O", "exit",
                                "lab"], stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
                               check=False)
            with contextlib.suppress(OSError):
                sock.unlink()

    def _destroy(self, n: int) -> None:
        h = self._read(n)
        if h is not None and h.running and holds_peer(h.pid, h.ifname):
            # Our veth, our lab host alive: deleting it removes both ends at once.
            delete_link(h.ifname)
        if h is not None:
            kill_verified(h.pid, h.pid_start)
            kill_verified(h.unshare_pid, h.unshare_start)
        for pid, start in find_marked(self._marker(n)):
            kill_verified(pid, start)
        if h is not None:
            self._clear_stale_link(h.ifname, strict=False)
        with contextlib.suppress(FileNotFoundError):
            self._record_path(n).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.hosts_dir / f"{n}.tmp").unlink()

    # -- inspection ------------------------------------------------------------
    def status(self) -> dict:
        hosts = []
        for h in self._recorded():
            d = h.as_dict()
            d["running"] = h.running
            d["healthy"] = self.healthy(h.n)
            d["sshd_log"] = f"/proc/{h.pid}/root{LAB_RUN}/sshd.log" if h.running else None
            hosts.append(d)
        return {
            "lab": self.name,
            "base": self.base,
            "state_dir": str(self.state_dir),
            "inventory": str(self.inventory_path) if self.inventory_path.exists() else None,
            "ansible_cfg": str(self.ansible_cfg_path) if self.ansible_cfg_path.exists() else None,
            "hosts": hosts,
        }

    def add_sudo_user(self, n: int, user: str, password: str | None = None) -> None:
        """A login user of lab host N only, with sudo to root: with PASSWORD (sudo asks for it) or
        without (a NOPASSWD rule). It logs in with the lab's key (AuthorizedKeysFile is shared).

        Everything is written inside the lab host: /etc is its overlay (passwd, shadow, group,
        hosts, sudoers.d), the home folder is on its private /run; the machine's own files are
        never touched. Idempotent; gone with the lab host."""
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", user):
            raise LabError(f"lab user {user!r}: use a short lower-case name")
        if password is not None and (not password or any(c in password for c in ":\n\r\0")):
            raise LabError(f"lab user {user}: the password cannot be empty or hold ':' or a line break")
        if not Path("/usr/bin/sudo").exists():
            raise LabError("sudo is not installed on this machine (tests/lab/deps.sh installs it)")
        script = r"""
set -eu
u="$1"; rule="$2"; home="/run/lab-home/$u"
grep -q "^$u:" /etc/passwd || {
    uid=$(awk -F: 'BEGIN{m=4000} $3>=m && $3<60000 {m=$3+1} END{print m}' /etc/passwd)
    echo "$u:x:$uid:$uid:lab user:$home:/bin/sh" >> /etc/passwd
    echo "$u:x:$uid:" >> /etc/group
    echo "$u:*:20000:0:99999:7:::" >> /etc/shadow
}
# sshd reads every user's key from /run/lab/authorized_keys: the user may pass through /run/lab
# (0711: no listing; the host key in it stays 0600)
chmod 0711 /run/lab
mkdir -p "$home"
chown "$u:$u" "$home"
chmod 0700 "$home"
if [ "$rule" = password ]; then
    chpasswd
    echo "$u ALL=(ALL:ALL) ALL" > "/etc/sudoers.d/lab-$u"
else
    usermod -p '*' "$u"
    echo "$u ALL=(ALL:ALL) NOPASSWD: ALL" > "/etc/sudoers.d/lab-$u"
fi
chmod 0440 "/etc/sudoers.d/lab-$u"
grep -q " $(hostname)\$" /etc/hosts || echo "127.0.1.1 $(hostname)" >> /etc/hosts
"""
        rule = "password" if password is not None else "nopasswd"
        self.exec(n, ["/bin/sh", "-c", script, "lab-user", user, rule],
                  input=f"{user}:{password}\n" if password is not None else "", timeout=60)

    def exec(self, n: int, argv: Sequence[str], check: bool = True,
             **kw) -> subprocess.CompletedProcess:
        """Run ARGV inside lab host N (all its namespaces); capture text output by default."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 120)
        if "input" not in kw:
            kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self._nsenter_argv(self.host_pid(n), argv), check=check, **kw)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="bring up lab hosts 1..N (idempotent)")
    p_up.add_argument("--hosts", type=int, default=2)
    p_down = sub.add_parser("down", help="remove all lab hosts (idempotent)")
    p_down.add_argument("--purge", action="store_true", help="also remove the state folder")
    sub.add_parser("status", help="print the lab's state as JSON")
    sub.add_parser("inventory", help="write and print STATE/inventory.ini")
    sub.add_parser("env", help="print shell exports: ANSIBLE_CONFIG, LAB_INVENTORY, LAB_STATE")
    p_exec = sub.add_parser("exec", help="run a command inside lab host N")
    p_exec.add_argument("n", type=int)
    p_exec.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    try:
        lab = Lab()
        if args.cmd == "up":
            hosts = lab.up(args.hosts)
            for h in hosts:
                print(f"{h.name} {h.address} ({h.ifname}, pid {h.pid})")
            print(f"inventory: {lab.inventory_path}")
            print(f"ANSIBLE_CONFIG={lab.ansible_cfg_path}")
        elif args.cmd == "down":
            lab.down(purge=args.purge)
        elif args.cmd == "status":
            print(json.dumps(lab.status(), indent=2))
        elif args.cmd == "inventory":
            sys.stdout.write(lab.write_inventory())
        elif args.cmd == "env":
            for key, value in (("ANSIBLE_CONFIG", lab.ansible_cfg_path),
                               ("LAB_INVENTORY", lab.inventory_path),
                               ("LAB_STATE", lab.state_dir)):
                print(f"export {key}={shlex.quote(str(value))}")
        elif args.cmd == "exec":
            cmd = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not cmd:
                parser.error("exec needs a command: exec N -- argv...")
            sys.stdout.flush()
            return subprocess.run(lab._nsenter_argv(lab.host_pid(args.n), cmd),
                                  check=False).returncode
    except LabError as e:
        print(f"lab.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
