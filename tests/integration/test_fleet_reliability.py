"""Reliability of playbooks/fleet.yml: a simulated reboot and a SIGKILLed ansible-playbook.

The real playbook runs over ssh against both lab hosts (4 guests each, every guest with a
persistent tmpfs mount on /srv through the fleet's ``fleet_mounts``):

* Reboot: everything a reboot loses is taken from both lab hosts - every guest process
  (the inits from the registry and whatever else lives in a namespace other than the lab
  host's), the namespace pins and /run/linuxns, /run/netns, the fleet bridge and the
  guests' host veths, ip forwarding - while the fleet's folder (tables, roots; on a real
  host /etc/linuxns and /var/lib/linuxns) stays as on disk. The same playbook run again
  must bring back the same fleet: same names, context ids (also when another guest held a
  lower id before the reboot), addresses, pages, mounts; the run after that changes nothing.
* SIGKILL: ansible-playbook (its own process group and the worker processes that left it,
  see kill_tree) is killed while it creates the guests one batch at a time; the next run
  must converge, namespace_info must list exactly the fleet, all healthy, and the teardown
  must leave nothing behind.

Every state is read from outside the guests: the lab host's registry, /proc/*/ns and
/proc/*/mountinfo, ``ip``, and pages fetched from the lab host.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import time

import pytest
from harness import REPO, _bin, load_records

# A fleet run takes about 25 s on a quiet machine and several times that on a loaded one.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

PLAYBOOK = REPO / "playbooks" / "fleet.yml"
HOSTS = ("lab1", "lab2")
SIZE = 4
NAMES = ["g%02d" % i for i in range(1, SIZE + 1)]
BRIDGE = "lnsfleet0"          # playbooks/vars/fleet.yml
FLEET_DIR = "/tmp/linuxns-fleet"
MOUNTS = [{"path": "/srv", "fstype": "tmpfs", "opts": "size=1m"}]
FLEET_VARS = {"fleet_size": SIZE, "fleet_mounts": MOUNTS}
INFO = "linuxns.guests.namespace_info"
CREATE = "linuxns.guests.namespace_create"
TEARDOWN_TASK = "Remove the guests, their tables and roots"


_T0 = [time.monotonic()]


def step(what):
    """A timestamped line in the captured output (shown when a test fails)."""
    print("[%6.1fs] %s" % (time.monotonic() - _T0[0], what), flush=True)


def address(host, i):
    """Guest number I (1-based) of HOST: 198.19.H.(10+I), H = the host's place in the play."""
    return "198.19.%d.%d" % (HOSTS.index(host) + 1, 10 + i)


# ------------------------------------------------------------------------------------------
# Scripts run inside a lab host (lab_exec): one call per host and step
# ------------------------------------------------------------------------------------------
COMMON = r"""
import json, os, subprocess, sys
STATE, NETNS, FLEET, BRIDGE = '/run/linuxns', '/run/netns', %r, %r
TYPES = ('pid', 'mnt', 'net', 'uts', 'ipc')

def ns(pid, t):
    return os.readlink('/proc/%%s/ns/%%s' %% (pid, t))

def stat(pid):
    with open('/proc/%%s/stat' %% pid) as f:
        text = f.read()
    comm = text[text.index('(') + 1:text.rindex(')')]
    rest = text.rsplit(')', 1)[1].split()
    return comm, rest[0], int(rest[1])

def foreign():
    # live processes of the lab host in a namespace that is not the lab host's own
    own = {t: ns(1, t) for t in TYPES}
    out = {}
    for p in os.listdir('/proc'):
        if not p.isdigit():
            continue
        try:
            comm, state, _ppid = stat(p)
            diff = [t for t in TYPES if ns(p, t) != own[t]]
        except OSError:
            continue
        if diff and state not in ('Z', 'X'):
            out[int(p)] = {'comm': comm, 'ns': diff}
    return out

def registry():
    out = {}
    base = STATE + '/guests'
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        try:
            with open('%%s/%%s/meta.json' %% (base, name)) as f:
                m = json.load(f)
        except (OSError, ValueError):
            out[name] = None
            continue
        out[name] = {'ctx': m['context_id'], 'init_pid': m['init_pid'], 'phase': m.get('phase')}
    return out

def mount_points(pid='self'):
    with open('/proc/%%s/mountinfo' %% pid) as f:
        return [(l.split(' ')[4], l.split(' - ')[1].split(' ')[0]) for l in f.read().splitlines()]

def links():
    return [l['ifname'] for l in json.loads(subprocess.run(['ip', '-j', 'link', 'show'], capture_output=True, text=True, check=True).stdout)]
"""

PROBE = r"""
import urllib.request
detail = sys.argv[1] == 'detail'
reg = registry()
out = {'registry': reg, 'foreign': foreign(),
       'netns': sorted(os.listdir(NETNS)) if os.path.isdir(NETNS) else None,
       'state_dir': os.path.isdir(STATE),
       'pin_mounts': sorted(m for m, _t in mount_points() if m.startswith((STATE + '/', NETNS + '/', FLEET + '/'))),
       'links': links(),
       'ip_forward': open('/proc/sys/net/ipv4/ip_forward').read().strip(),
       'tables': {}, 'kept_ctx': {}, 'roots': sorted(os.listdir(FLEET + '/roots')) if os.path.isdir(FLEET + '/roots') else None,
       'guests': {}}
if os.path.isdir(FLEET + '/tables'):
    for name in sorted(os.listdir(FLEET + '/tables')):
        try:
            with open(FLEET + '/tables/' + name + '/fstab') as f:
                out['tables'][name] = [l.split()[1] for l in f.read().splitlines() if l.strip() and not l.startswith('#')]
        except OSError:
            out['tables'][name] = None
        try:
            with open(FLEET + '/tables/' + name + '/context_id') as f:
                out['kept_ctx'][name] = int(f.read())
        except (OSError, ValueError):
            out['kept_ctx'][name] = None
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for name, meta in reg.items() if detail else ():
    g = {}
    pid = meta and meta['init_pid']
    g['mounts'] = sorted('%s %s' % mt for mt in mount_points(pid) if mt[0] == '/srv') if pid else None
    addrs = json.loads(subprocess.run(['ip', '-n', name, '-j', 'address', 'show', 'dev', 'eth0'],
                                      capture_output=True, text=True).stdout or '[]')
    g['addresses'] = [a['local'] + '/' + str(a['prefixlen']) for l in addrs for a in l['addr_info'] if a['family'] == 'inet']
    try:
        ip = g['addresses'][0].split('/')[0]
        g['page'] = opener.open('http://%s/' % ip, timeout=5).read().decode().strip()
    except Exception as e:  # noqa: BLE001 - reported, the test asserts on it
        g['page'] = 'ERROR %s' % e
    out['guests'][name] = g
print(json.dumps(out))
"""

# What a reboot does to the lab host: processes gone, /run empty, links and sysctls reset.
REBOOT = r"""
import shutil, signal, time
reg = registry()
inits = sorted(m['init_pid'] for m in reg.values() if m and m['init_pid'])
others = sorted(foreign())
killed = []
for pid in inits + [p for p in others if p not in inits]:
    try:
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    except ProcessLookupError:
        pass
deadline = time.monotonic() + 20
while foreign() and time.monotonic() < deadline:
    time.sleep(0.05)
left = foreign()
mounts = sorted({m for m, _t in mount_points() if m == STATE or m == NETNS or m.startswith((STATE + '/', NETNS + '/'))},
                key=lambda m: (-m.count('/'), m))
for m in mounts:
    subprocess.run(['umount', '-l', m], capture_output=True)
for d in (STATE, NETNS):
    shutil.rmtree(d, ignore_errors=True)
def fleet_links():
    return [n for n in links() if n == BRIDGE or n.startswith('ve-')]
for n in fleet_links():
    subprocess.run(['ip', 'link', 'del', n], capture_output=True)
deadline = time.monotonic() + 20
while fleet_links() and time.monotonic() < deadline:
    time.sleep(0.05)
with open('/proc/sys/net/ipv4/ip_forward', 'w') as f:
    f.write('0\n')
print(json.dumps({'inits': inits, 'foreign_before': others, 'killed': killed, 'left': left, 'umounted': mounts}))
"""

# Processes of the lab host started through its sshd (Ansible's remote commands).
REMOTE = r"""
procs = {}
for p in os.listdir('/proc'):
    if p.isdigit():
        try:
            comm, state, ppid = stat(p)
            with open('/proc/%s/cmdline' % p, 'rb') as f:
                cmd = f.read().replace(b'\0', b' ').decode(errors='replace')
        except OSError:
            continue
        procs[int(p)] = (ppid, state, cmd)
sessions = {p for p, (_pp, _s, cmd) in procs.items() if cmd.startswith('sshd: root@')}
out = []
for p, (ppid, state, cmd) in procs.items():
    q = ppid
    while q in procs and q not in sessions:
        q = procs[q][0]
    if q in sessions and state not in ('Z', 'X'):
        out.append([p, cmd[:120]])
print(json.dumps(out))
"""


def lab_python(lab_exec, host, body, *args):
    script = COMMON % (FLEET_DIR, BRIDGE) + body
    out = lab_exec(host, ["/usr/bin/python3", "-c", script, *args])
    return json.loads(out.stdout)


def probe(lab_exec, host, detail=False):
    return lab_python(lab_exec, host, PROBE, "detail" if detail else "short")


def wait_remote_done(lab_exec, timeout=90.0):
    """Poll until no command of a (killed) Ansible run is still running on the lab hosts."""
    deadline = time.monotonic() + timeout
    while True:
        left = {h: lab_python(lab_exec, h, REMOTE) for h in HOSTS}
        if not any(left.values()):
            return
        assert time.monotonic() < deadline, "remote commands still running after %ss: %s" % (timeout, left)
        time.sleep(0.2)


def fleet_view(state):
    """What must survive a reboot: per guest its context id, addresses, page and mounts."""
    return {name: {"ctx": state["registry"][name]["ctx"], "addresses": g["addresses"], "page": g["page"],
                   "mounts": g["mounts"]} for name, g in state["guests"].items() if name in NAMES}


def expected_view(host, ctx):
    return {name: {"ctx": ctx[name], "addresses": [address(host, i) + "/24"],
                   "page": "guest %s on %s" % (name, host), "mounts": ["/srv tmpfs"]}
            for i, name in enumerate(NAMES, 1)}


def assert_clean(state, host, what):
    """Nothing of the fleet's guests is left on HOST (the bridge and the fleet folder may stay)."""
    leaks = {k: state[k] for k in ("registry", "foreign", "pin_mounts") if state[k]}
    if state["netns"]:
        leaks["netns"] = state["netns"]
    veths = [n for n in state["links"] if n.startswith("ve-")]
    if veths:
        leaks["veths"] = veths
    assert not leaks, "%s: %s left behind: %s" % (host, what, leaks)


def changed_tasks(records):
    return ["%s: %s" % (r.host, r.task) for r in records if r.changed]


# ------------------------------------------------------------------------------------------
# Running the real playbook
# ------------------------------------------------------------------------------------------
class Fleet:
    """ansible-playbook playbooks/fleet.yml on the lab (files under the session's workdir)."""

    _counter = itertools.count(1)

    def __init__(self, lab, ansible):
        self.lab = lab
        self.ansible = ansible

    def _prepare(self, extra_vars, playbook=PLAYBOOK):
        n = next(self._counter)
        base = self.ansible.workdir / ("fleet-%02d" % n)
        vars_file, record, log = (base.with_suffix(s) for s in (".vars.json", ".jsonl", ".log"))
        vars_file.write_text(json.dumps(dict(FLEET_VARS, **(extra_vars or {}))))
        argv = [_bin("ansible-playbook"), "-i", str(self.lab.inventory_path), "-e", "@%s" % vars_file, str(playbook)]
        return argv, self.ansible.environment(record), record, log

    def run(self, extra_vars=None, playbook=PLAYBOOK, timeout=900):
        argv, env, record, log = self._prepare(extra_vars, playbook)
        proc = subprocess.run(argv, env=env, cwd=str(REPO), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)
        log.write_text(proc.stdout + proc.stderr)
        recap = [line.split(":", 1)[-1].split("unreachable")[0].strip() for line in proc.stdout.strip().splitlines()[-len(HOSTS):]]
        step("ran %s: %s" % (os.path.basename(argv[-1]), " | ".join(recap)))
        assert proc.returncode == 0, "fleet run failed (rc=%s)\n%s\n%s" % (proc.returncode, proc.stdout[-12000:], proc.stderr[-4000:])
        return proc.stdout, load_records(record)

    def start(self, extra_vars=None):
        """The playbook in its own process group (killed with kill_tree)."""
        argv, env, _record, log = self._prepare(extra_vars)
        out = open(log, "w")  # closed by the caller through proc.log_file
        proc = subprocess.Popen(argv, env=env, cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_file, proc.log_path = out, log
        return proc

    def remove(self):
        """The guest role with guest_state absent on the fleet's guests (what fleet_teardown does)."""
        play = [{"name": "fleet guests absent", "hosts": "lab", "gather_facts": False,
                 "vars_files": [str(REPO / "playbooks" / "vars" / "fleet.yml")],
                 "tasks": [{"name": "guests absent", "ansible.builtin.include_role": {"name": "linuxns.guests.guest"},
                            "vars": {"guest_list": "{{ fleet_guests }}", "guest_state": "absent", "guest_purge_root": True,
                                     "guest_table_dir": "{{ fleet_dir }}/tables", "guest_roots_dir": "{{ fleet_dir }}/roots",
                                     "guest_bridge": "{{ fleet_bridge }}"}}]}]
        path = self.ansible.workdir / ("fleet-remove-%02d.yml" % next(self._counter))
        path.write_text(json.dumps(play))
        return self.run(playbook=path)


def remove_everything(fleet, ansible, lab_exec):
    """Fleet guests absent, any other guest too, the bridge and the fleet folder gone."""
    errors = []
    if any(registry_names(fleet.lab, h) for h in HOSTS):
        try:
            fleet.remove()
        except AssertionError as e:  # still clear the rest, then report
            errors.append(str(e)[-3000:])
    if any(registry_names(fleet.lab, h) for h in HOSTS):
        rest = {"guests": "{{ info.guests | map(attribute='name') | list }}", "state": "absent", "stop_timeout": 2}
        ansible.playbook([{"name": "list", INFO: {}, "register": "info"},
                          {"name": "remove the rest", CREATE: rest, "when": "info.guests | length > 0"}], hosts="lab")
    for host in HOSTS:
        lab_exec(host, ["sh", "-c", "ip link del %s 2>/dev/null; rm -rf %s; true" % (BRIDGE, FLEET_DIR)])
    assert not errors, errors


def descendants(pid):
    """Pids of the processes below PID (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir("/proc/%d/task" % parent)
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open("/proc/%d/task/%s/children" % (parent, task)) as f:
                    kids = [int(k) for k in f.read().split()]
            except FileNotFoundError:
                continue
            out += kids
            todo += kids
    return out


def kill_tree(proc, timeout=30.0):
    """SIGKILL a Popen'd ansible-playbook and every process it started, as when its machine dies.

    Killing its process group is not enough: Ansible's worker processes (one per host and
    task, which also run the task's loop) setsid() into sessions of their own, and one left
    alone goes on with its task (and then blocks forever writing its result to the dead
    parent). So: stop the group (no new worker), stop every process below it until that
    set stops growing, then SIGKILL them all and wait until they are gone.
    """
    if proc.poll() is not None:
        return []
    os.killpg(proc.pid, signal.SIGSTOP)
    stopped = set()
    while True:
        below = set(descendants(proc.pid)) - stopped
        if not below:
            break
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        stopped |= below
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while [p for p in stopped if os.path.exists("/proc/%d" % p) and not _zombie(p)]:
        assert time.monotonic() < deadline, "processes of the killed run still alive: %s" % sorted(stopped)
        time.sleep(0.05)
    return sorted(stopped)


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def registry_names(lab, host):
    """Guest names in HOST's registry, read from the machine through the lab host's root (no subprocess)."""
    try:
        return os.listdir("/proc/%d/root/run/linuxns/guests" % lab.host_pid(int(host[3:])))
    except FileNotFoundError:
        return []


@pytest.fixture(scope="module")
def fleet(lab, ansible):
    """The fleet runner; the lab hosts start without guests and end without guest, bridge or fleet folder."""
    from harness import lab_exec as run_in_lab

    def lab_exec(host, argv, check=True):
        return run_in_lab(lab, host, argv, check=check)

    f = Fleet(lab, ansible)
    # The reboot wipes every guest of a lab host: start from none.
    remove_everything(f, ansible, lab_exec)
    yield f
    remove_everything(f, ansible, lab_exec)
    for host in HOSTS:
        state = probe(lab_exec, host)
        assert_clean(state, host, "the module's cleanup")
        assert BRIDGE not in state["links"] and state["roots"] is None


@pytest.fixture
def no_fleet(fleet, ansible, lab_exec):
    """Each test starts without guests (a failed test before may have left some)."""
    if any(registry_names(fleet.lab, h) for h in HOSTS):
        remove_everything(fleet, ansible, lab_exec)
    return fleet


def namespace_info(ansible):
    run = ansible.adhoc("lab", INFO)
    return {r.host: r.result for r in run.results}


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------
@pytest.mark.extended
def test_fleet_comes_back_after_a_reboot(no_fleet, ansible, lab_exec):
    fleet = no_fleet
    # On lab1 another guest (no processes) holds context id 2 when the fleet comes, and is
    # not made again after the reboot: the fleet's guests must still get their ids back.
    # Its kept files go under the fleet folder (removed by remove_everything), never to a
    # table folder another test module left noted in the lab host's state folder.
    ansible.playbook([{CREATE: {"name": "other", "namespaces": ["uts"], "table_dir": FLEET_DIR + "/other-tables"}}], hosts="lab1")
    _out, first = fleet.run()
    assert changed_tasks(first), "the first run changed nothing"
    before = {h: probe(lab_exec, h, detail=True) for h in HOSTS}
    ctx = {}
    for host, state in before.items():
        assert sorted(state["registry"]) == sorted(NAMES + (["other"] if host == "lab1" else [])), (host, state["registry"])
        ctx[host] = {n: state["registry"][n]["ctx"] for n in NAMES}
        assert sorted(ctx[host].values()) == ([3, 4, 5, 6] if host == "lab1" else [2, 3, 4, 5]), ctx
        assert state["kept_ctx"] == ctx[host], "%s: the context ids kept next to the tables" % host
        assert fleet_view(state) == expected_view(host, ctx[host])
        assert state["tables"] == {n: ["/srv"] for n in NAMES}, state["tables"]
        assert BRIDGE in state["links"] and state["ip_forward"] == "1"
        # each guest: its reaper and its httpd, nothing else outside the lab host's namespaces
        assert sorted(p["comm"] for p in state["foreign"].values()) == sorted(["memfd:catatonit", "busybox"] * SIZE), state["foreign"]

    step("fleet up, checked from outside")
    # The reboot, on both hosts at once as far as the fleet can tell.
    for host in HOSTS:
        boot = lab_python(lab_exec, host, REBOOT)
        assert boot["left"] == {}, (host, boot)
        inits = {m["init_pid"] for m in before[host]["registry"].values() if m["init_pid"]}
        assert set(boot["inits"]) == inits and inits <= set(boot["killed"]), (host, boot)
    for host in HOSTS:
        state = probe(lab_exec, host)
        assert_clean(state, host, "the reboot")
        assert not state["state_dir"] and state["netns"] is None
        assert BRIDGE not in state["links"] and state["ip_forward"] == "0"
        # ... while the disk keeps the tables (with the context ids) and roots
        assert state["tables"] == {n: ["/srv"] for n in NAMES} and state["roots"] == NAMES
        assert state["kept_ctx"] == ctx[host]
    step("rebooted, checked from outside")
    info = namespace_info(ansible)
    step("namespace_info after the reboot")
    assert sorted(info) == list(HOSTS) and all(r["guests"] == [] for r in info.values()), info

    # The same playbook brings the same fleet back.
    _out, second = fleet.run()
    created = [r for r in second if r.task.endswith("Create the guests' namespaces (one call per wave - guests sharing a listed guest's"
                                                    " namespace come after it - and per batch)")]
    assert {r.host for r in created if r.changed} == set(HOSTS)
    for host in HOSTS:
        state = probe(lab_exec, host, detail=True)
        assert sorted(state["registry"]) == NAMES
        assert fleet_view(state) == expected_view(host, ctx[host]), "%s: the fleet came back different" % host
        old = {m["init_pid"] for m in before[host]["registry"].values() if m["init_pid"]}
        assert not old & {m["init_pid"] for m in state["registry"].values()}, "init pids of before the reboot"
        assert BRIDGE in state["links"] and state["ip_forward"] == "1"
        assert sorted(p["comm"] for p in state["foreign"].values()) == sorted(["memfd:catatonit", "busybox"] * SIZE)
        fleet_info = next(r for r in second if r.host == host and r.task == "Read the guests' context ids")
        assert {g["name"]: (g["context_id"], g["healthy"]) for g in fleet_info["guests"]} == {n: (ctx[host][n], True) for n in NAMES}

    step("fleet back, checked from outside")
    # Once more, with the fleet's teardown at the end: nothing before the teardown changes.
    _out, third = fleet.run({"fleet_teardown": True})
    split = next(i for i, r in enumerate(third) if r.task == TEARDOWN_TASK)
    assert changed_tasks(third[:split]) == [], "the run after the reboot's rerun is not idempotent"
    assert changed_tasks(third[split:]), "the teardown changed nothing"
    for host in HOSTS:
        state = probe(lab_exec, host)
        assert_clean(state, host, "fleet_teardown")
        assert state["tables"] == {} and state["roots"] == []


@pytest.mark.extended
def test_killed_playbook_then_rerun_converges(no_fleet, ansible, lab_exec):
    fleet = no_fleet
    run_vars = {"fleet_batch_size": 1}  # one namespace_create call per guest: a long window to die in
    proc = fleet.start(run_vars)
    try:
        deadline = time.monotonic() + 180
        while not registry_names(fleet.lab, "lab1"):
            assert proc.poll() is None, "the playbook ended (rc=%s) before it created a guest:\n%s" % (
                proc.returncode, proc.log_path.read_text()[-6000:])
            assert time.monotonic() < deadline, "no guest after 180s:\n" + proc.log_path.read_text()[-6000:]
            time.sleep(0.02)
        step("lab1 has %s: killing ansible-playbook" % registry_names(fleet.lab, "lab1"))
    finally:
        killed = kill_tree(proc)
        proc.log_file.close()
    assert proc.returncode == -signal.SIGKILL
    assert killed, "ansible-playbook had no worker process to kill"
    assert proc.returncode == -signal.SIGKILL
    # The module that was running on each lab host finishes on its own; then the fleet is half made.
    wait_remote_done(lab_exec)
    step("killed %d processes; remote commands done" % len(killed))
    half = probe(lab_exec, "lab1", detail=True)
    assert 1 <= len(half["registry"]) < SIZE, half["registry"]
    assert not any(g["page"] == "guest %s on lab1" % n for n, g in half["guests"].items()), "a service already runs"

    _out, rerun = fleet.run(run_vars)
    assert changed_tasks(rerun)
    info = namespace_info(ansible)
    for host in HOSTS:
        guests = info[host]["guests"]
        assert sorted(g["name"] for g in guests) == NAMES, (host, guests)
        assert all(g["healthy"] and g["problems"] == [] for g in guests), (host, guests)
        state = probe(lab_exec, host, detail=True)
        ctx = {g["name"]: g["context_id"] for g in guests}
        assert fleet_view(state) == expected_view(host, ctx)
        assert sorted(p["comm"] for p in state["foreign"].values()) == sorted(["memfd:catatonit", "busybox"] * SIZE), state["foreign"]
        assert state["tables"] == {n: ["/srv"] for n in NAMES}

    _out, gone = fleet.remove()
    assert changed_tasks(gone)
    info = namespace_info(ansible)
    assert all(r["guests"] == [] for r in info.values()), info
    for host in HOSTS:
        state = probe(lab_exec, host)
        assert_clean(state, host, "the role's guest_state=absent")
        assert state["tables"] == {} and state["roots"] == []
