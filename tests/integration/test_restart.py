"""The restart supervisor (module_utils/supervisor.py) over real ssh against a lab host.

The supervisor runs in lab1 as the guest_host role's plain script would start it (python3 -m
...supervisor, from the collection under test); guests are made with namespace_create (each
create task run in check mode, then twice: the second reports no change).  Everything is
checked from outside the guests on the lab host: the records, /proc/PID (alive, its pid
namespace, its cgroup), the pins, /run/netns, the context id links and the cgroup folders.

Waiting is a bounded poll run inside the lab host (one lab exec per wait; its deadline is a
hang guard, never asserted): no durations are asserted, the backoff is read from what the
supervisor recorded and logged.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration

CREATE = "linuxns.guests.namespace_create"
STATE = "/run/linuxns"
LOG = "/run/lifesup-restart.log"
# The collection's module_utils, copied into the lab host's own /run: a lab host has private /run
# and /tmp, so a checkout under /tmp (a CI clone) is not visible inside it (as the role copies
# them to guest_host_lib_dir).
LIB = "/run/lifesup-lib"
COPY = r"""
import json, os, sys
folder = sys.argv[1]
os.makedirs(folder, exist_ok=True)
for name, text in json.load(sys.stdin).items():
    with open(os.path.join(folder, name), "w") as f:
        f.write(text)
"""
SUPERVISOR = "ansible_collections.linuxns.guests.plugins.module_utils.supervisor"
SLEEPER = ["sleep", "1000000"]
# sh as the guest's PID 1 exits 0 on SIGTERM (a handler is installed, so the signal is delivered)
CLEAN_EXIT = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1000000 & wait $!; done"]

# Run inside the lab host: python3 -c WAIT NAME WHAT ARG -> JSON of the guest's state once WHAT holds.
WAIT = r"""
import json, os, sys, time
name, what, arg = sys.argv[1], sys.argv[2], sys.argv[3]
state = "/run/linuxns"

def meta():
    try:
        with open("%s/guests/%s/meta.json" % (state, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, TypeError):
        return False

def log():
    try:
        with open("/run/lifesup-restart.log") as f:
            return f.read()
    except OSError:
        return ""

def holds(m):
    if what == "restarted":  # the record names another init than ARG, and it runs
        return m is not None and m.get("phase") == "ready" and m.get("init_pid") not in (None, int(arg)) and alive(m["init_pid"])
    if what == "gone":
        return m is None and not os.path.exists("%s/guests/%s" % (state, name))
    raise SystemExit("unknown wait " + what)

deadline = time.monotonic() + 60  # hang guard only (below lab exec's own timeout)
m = meta()
while not holds(m) and time.monotonic() < deadline:
    time.sleep(0.05)
    m = meta()
out = {"held": holds(m), "meta": m, "log": log()}
if m and m.get("init_pid"):
    pid = m["init_pid"]
    out["alive"] = alive(pid)
    try:
        out["pid_ns"] = os.stat("/proc/%d/ns/pid" % pid).st_ino
        with open("/proc/%d/cgroup" % pid) as f:
            out["cgroup"] = f.read()
    except OSError:
        pass
print(json.dumps(out))
"""

# Run inside the lab host: what is left of a guest (python3 -c LEFT NAME PID PIDNS_INO CTX PATHS...).
LEFT = r"""
import json, os, sys
name, pid, pid_ns, ctx, paths = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:]
in_ns = []
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            if os.stat("/proc/%s/ns/pid" % p).st_ino == pid_ns:
                in_ns.append(int(p))
        except OSError:
            pass
print(json.dumps({
    "guest_dir": os.path.exists("/run/linuxns/guests/" + name),
    "netns": os.path.lexists("/run/netns/" + name),
    "ctx": os.path.lexists("/run/linuxns/ctx/" + ctx),
    "init": os.path.exists("/proc/%d" % pid),
    "in_pid_ns": in_ns,
    "cgroups": [d for d in paths if os.path.isdir(d)],
}))
"""


class Supervisor:
    """The supervisor process in lab1: started, killed and read from outside."""

    def __init__(self, lab_exec, repo):
        self.lab_exec = lab_exec
        self.repo = repo
        self.pid = None

    def start(self) -> int:
        cmd = ("PYTHONPATH=%s setsid python3 -m %s --scan-interval 0.2 </dev/null >>%s 2>&1 & echo $!"
               % (LIB, SUPERVISOR, LOG))
        self.pid = int(self.lab_exec("lab1", ["sh", "-c", cmd]).stdout.strip())
        return self.pid

    def kill(self, sig: str = "KILL") -> None:
        if self.pid is not None:
            self.lab_exec("lab1", ["kill", "-" + sig, str(self.pid)], check=False)
            self.lab_exec("lab1", ["sh", "-c", "while kill -0 %d 2>/dev/null; do sleep 0.05; done" % self.pid], check=False)
            self.pid = None


GUESTS = [
    {"name": "rs1", "init": SLEEPER, "restart": "on-failure", "restart_delay": 0.2, "restart_max_delay": 3600},
    {"name": "rs2", "init": CLEAN_EXIT, "restart": "on-failure", "restart_delay": 0.2},
    {"name": "rs3", "init": SLEEPER, "restart": "always", "restart_delay": 0.2},
]


@pytest.fixture(scope="module")
def sup(lab, ansible):
    """The supervisor running in lab1, and the module's three guests, made by ONE namespace_create
    task run in check mode, then twice (the second changes nothing)."""
    from harness import REPO
    from harness import lab_exec as run

    def lab_exec(host, argv, check=True):
        return run(lab, host, argv, check=check)

    s = Supervisor(lab_exec, REPO)
    lab_exec("lab1", ["rm", "-rf", LOG, LIB])
    sources = {p.name: p.read_text() for p in (REPO / "plugins" / "module_utils").glob("*.py")}
    run(lab, "lab1", ["python3", "-c", COPY, LIB + "/ansible_collections/linuxns/guests/plugins/module_utils"], input=json.dumps(sources))
    s.start()
    try:
        c = ansible.converge({CREATE: {"guests": GUESTS, "stop_timeout": 1}})
        assert c.first.changed and not c.second.changed
        s.guests = {r["name"]: r["guest"] for r in c.first.result["guests"]}
        yield s
    finally:
        s.kill("TERM")
        ansible.playbook([{CREATE: {"guests": [g["name"] for g in GUESTS], "state": "absent", "stop_timeout": 1}}])
        lab_exec("lab1", ["rm", "-rf", LOG, LIB])


def wait(sup, name, what, arg="") -> dict:
    out = json.loads(sup.lab_exec("lab1", ["python3", "-c", WAIT, name, what, str(arg)]).stdout)
    assert out["held"], "never happened: %s %s %s\nrecord: %s\nsupervisor log:\n%s" % (name, what, arg, out["meta"], out["log"])
    return out


def test_sigkill_restarts_with_backoff(sup):
    guest = sup.guests["rs1"]
    assert (guest["restart"], guest["restart_delay"], guest["restart_max_delay"], guest["restart_max"]) == ("on-failure", 0.2, 3600.0, 0)
    pid, ctx = guest["init_pid"], guest["context_id"]
    delays = []
    for n in (1, 2):
        sup.lab_exec("lab1", ["kill", "-KILL", str(pid)])
        out = wait(sup, "rs1", "restarted", pid)
        m = out["meta"]
        assert m["restarts"]["count"] == n and m["restarts"]["last_exit"] == "signal SIGKILL", m["restarts"]
        delays.append(m["restarts"]["delay"])
        # the same guest made again, as seen from outside: same context id, a new pid namespace whose init is
        # the recorded one (its pin names it), in the guest's own cgroup
        assert m["context_id"] == ctx and out["alive"]
        assert out["pid_ns"] == m["pins"]["pid"]["ino"]
        assert any(line.endswith("/rs1") for line in out["cgroup"].splitlines()), out["cgroup"]
        assert "guest rs1: its init (pid %d) exited (signal SIGKILL): restart %d in a row" % (pid, n) in out["log"]
        pid = m["init_pid"]
    assert delays == [0.2, 0.4]  # doubled: the backoff, as recorded by the supervisor


def test_exit_0_under_on_failure_disposes_of_the_guest(sup):
    guest = sup.guests["rs2"]
    pid, ctx = guest["init_pid"], guest["context_id"]
    pid_ns = guest["namespaces"]["pid"]["inode"]
    paths = sorted(guest["cgroup"]["paths"].values())
    sup.lab_exec("lab1", ["kill", "-TERM", str(pid)])
    out = wait(sup, "rs2", "gone")
    assert "guest rs2: its init (pid %d) exited (status 0): disposing of the guest" % pid in out["log"]
    left = json.loads(sup.lab_exec("lab1", ["python3", "-c", LEFT, "rs2", str(pid), str(pid_ns), str(ctx), *paths]).stdout)
    assert left == {"guest_dir": False, "netns": False, "ctx": False, "init": False, "in_pid_ns": [], "cgroups": []}


def test_killed_supervisor_finds_its_guests_again(sup):
    running = json.loads(sup.lab_exec("lab1", ["cat", STATE + "/guests/rs1/meta.json"]).stdout)  # as the tests before left it
    dead = sup.guests["rs3"]
    sup.kill("KILL")
    sup.lab_exec("lab1", ["kill", "-KILL", str(dead["init_pid"])])  # dies while no supervisor runs
    found = sup.lab_exec("lab1", ["ls", STATE + "/guests"]).stdout.split()  # rs2 is there when its test did not run
    pid = sup.start()
    out = wait(sup, "rs3", "restarted", dead["init_pid"])
    since = out["log"].split("watching the guests of %s (pid %d)" % (STATE, pid), 1)
    assert len(since) == 2, out["log"]
    assert "found %d guests: watching %d running inits, 1 exited" % (len(found), len(found) - 1) in since[1]
    assert "guest rs3: its init (pid %d) exited (unknown status): restart 1 in a row" % dead["init_pid"] in since[1]
    # the running init was found and left running (not restarted, not started twice)
    again = json.loads(sup.lab_exec("lab1", ["cat", STATE + "/guests/rs1/meta.json"]).stdout)
    assert again["init_pid"] == running["init_pid"] and "rs1" not in since[1]
    # and it is watched: killed now, it is restarted
    sup.lab_exec("lab1", ["kill", "-KILL", str(running["init_pid"])])
    assert wait(sup, "rs1", "restarted", running["init_pid"])["alive"]
