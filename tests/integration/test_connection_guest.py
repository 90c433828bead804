"""The guest connection and the guests inventory plugin over real ssh (and paramiko) against lab hosts.

One module-scoped fleet: 10 guests with Python on each of lab1 and lab2 (a busybox
root with the lab host's /usr bound read-only by namespace_mount), a guest without
Python, and a guest whose init is killed (stopped).  The inventory is a
``*.guests.yml`` fleet file read by linuxns.guests.guests, so every run here goes
through both plugins.  What the tasks did is checked from outside the guests:
``nsenter --mount=PIN`` on the lab host, the root folders on disk.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess

import pytest
import yaml
from harness import _bin
from harness import lab_exec as _lab_exec

pytestmark = pytest.mark.integration

CREATE = "linuxns.guests.namespace_create"
MOUNT = "linuxns.guests.namespace_mount"
STATE = "/run/linuxns"
PER_HOST = 10
PY = {"lab1": ["c%02d" % i for i in range(1, PER_HOST + 1)], "lab2": ["c%02d" % i for i in range(PER_HOST + 1, 2 * PER_HOST + 1)]}
NOPY = "cnopy"
STOPPED = "cstop"
MISSING = "cmissing"
ODD = "b ig 'q' \"dq\" ü $x.bin"
BIG = 50 * 1024 * 1024
_count = itertools.count(1)


def sha1(path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_root(path: str, busybox: str) -> None:
    """A busybox root; /usr is an empty mount point (the lab host's /usr is bound there for Python)."""
    for d in ("bin", "etc", "root", "usr", "sys", "proc", "dev", "home/web"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    for d in ("tmp", "var/tmp"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
        os.chmod(os.path.join(path, d), 0o1777)
    os.chmod(os.path.join(path, "var"), 0o755)
    os.link(busybox, os.path.join(path, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", os.path.join(path, "bin", applet))
    os.symlink("usr/lib", os.path.join(path, "lib"))
    os.symlink("usr/lib64", os.path.join(path, "lib64"))
    os.symlink("bin", os.path.join(path, "sbin"))
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/home/web:/bin/sh\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\nweb:x:1000:\n")
    os.chown(os.path.join(path, "home", "web"), 1000, 1000)


def fleet_doc(lab, roots: dict, query: bool = False, extra_lab1=()) -> dict:
    from lab import ssh_common_args

    host_vars = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(lab.key_path),
        # ServerAliveInterval=17 marks these args: the tests see them reach the inner ssh
        "ansible_ssh_common_args": " ".join(ssh_common_args(lab.state_dir) + ["-o", "ServerAliveInterval=17"]),
        "ansible_paramiko_host_key_checking": False,
    }
    hosts = {}
    for n, name in ((1, "lab1"), (2, "lab2")):
        guests = [{"name": g, "root": roots[g], "vars": {"tier": "even" if int(g[1:]) % 2 == 0 else "odd"}} for g in PY[name]]
        if name == "lab1":
            guests += [{"name": NOPY, "root": roots[NOPY], "vars": {"ansible_python_interpreter": "/nonexistent/python"}},
                       {"name": STOPPED}, *extra_lab1]
        hosts[name] = {"address": lab.host(n).address, "vars": host_vars, "guests": guests}
    return {
        "plugin": "linuxns.guests.guests",
        "guest_vars": {"ansible_python_interpreter": "/usr/bin/python3"},
        "hostname_template": "{guest}",
        "keyed_groups": [{"key": "tier | default('none')", "prefix": "tier"}],
        "groups": {"with_python": "linuxns_guest_spec.root is defined and linuxns_guest != 'cnopy'"},
        "hosts": hosts,
        "query_hosts": query,
    }


class Fleet:
    def __init__(self, ansible, lab, base, roots):
        self.ansible, self.lab, self.base, self.roots = ansible, lab, base, roots
        self.inventory = os.path.join(base, "fleet.guests.yml")
        with open(self.inventory, "w") as f:
            yaml.safe_dump(fleet_doc(lab, roots), f)

    def _run(self, argv, expect_fail, **kw):
        record = self.ansible.workdir / ("conn-%04d.jsonl" % next(_count))
        return self.ansible._run(argv, record, expect_fail, 600, **kw)

    def adhoc(self, pattern, module, args=None, expect_fail=False, extra=(), pipelining=None, env=None):
        argv = [_bin("ansible"), pattern, "-i", self.inventory, "-m", module]
        if args is not None:
            argv += ["-a", json.dumps(args) if isinstance(args, dict) else args]
        return self._run(argv + list(extra), expect_fail, pipelining=pipelining, env=env)

    def playbook(self, plays, expect_fail=False, extra=(), pipelining=None, env=None):
        path = os.path.join(self.base, "play-%04d.yml" % next(_count))
        with open(path, "w") as f:
            json.dump(plays, f)
        argv = [_bin("ansible-playbook"), "-i", self.inventory, *extra, path]
        return self._run(argv, expect_fail, pipelining=pipelining, env=env)

    def in_guest(self, lab_exec, guest, argv, host="lab1", check=True):
        """Run argv in the guest's mount namespace from the lab host (nsenter, not the plugin)."""
        return lab_exec(host, ["nsenter", "--mount=%s/guests/%s/ns/mnt" % (STATE, guest), *argv], check=check)


@pytest.fixture(scope="module")
def fleet(lab, ansible):
    def lab_exec(host, argv, check=True):
        return _lab_exec(lab, host, argv, check=check)

    base = "/var/tmp/linuxns-it-conn-%d" % os.getpid()
    os.makedirs(base, exist_ok=True)
    busybox = os.path.join(base, "busybox")
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", busybox)
    roots = {}
    for g in PY["lab1"] + PY["lab2"] + [NOPY]:
        roots[g] = os.path.join(base, "roots", g)
        make_root(roots[g], busybox)
    everyone = PY["lab1"] + PY["lab2"] + [NOPY, STOPPED]
    try:
        specs = {h: [{"name": g, "root": roots[g], "hostname": g} for g in PY[h]] for h in PY}
        specs["lab1"] += [{"name": NOPY, "root": roots[NOPY]}, {"name": STOPPED, "namespaces": ["mnt", "uts", "pid"]}]
        ansible.playbook([{
            "hosts": "lab1,lab2", "gather_facts": False,
            "tasks": [
                {"name": "guests", CREATE: {"guests": "{{ specs[inventory_hostname] }}"}},
                {"name": "the lab host's /usr, read-only, and a /sys in every guest with Python", MOUNT: {
                    "guest": "{{ item }}", "table_dir": base + "/tables", "mounts": [
                        {"path": "/usr", "src": "/usr", "fstype": "bind", "opts": "ro,nosuid,nodev"},
                        {"path": "/sys", "src": "sysfs", "fstype": "sysfs", "opts": "ro,nosuid,nodev,noexec"}]},
                 "loop": "{{ py[inventory_hostname] }}"},
            ]}], extra_vars={"specs": specs, "py": PY})
        meta = json.loads(lab_exec("lab1", ["cat", "%s/guests/%s/meta.json" % (STATE, STOPPED)]).stdout)
        lab_exec("lab1", ["kill", "-KILL", str(meta["init_pid"])])
        yield Fleet(ansible, lab, base, roots)
    finally:
        ansible.playbook([{"hosts": "lab1,lab2", "gather_facts": False, "tasks": [
            {CREATE: {"guests": everyone, "state": "absent", "stop_timeout": 2}}]}])
        for host in ("lab1", "lab2"):
            left = lab_exec(host, ["sh", "-c", "ls %s/guests %s/transfer 2>/dev/null; true" % (STATE, STATE)]).stdout.split()
            assert not [n for n in left if n in everyone or n.startswith(("fetch-", "put-"))], (host, left)
        assert not any(os.path.exists("/etc/linuxns/guests/%s" % g) for g in everyone), "mount tables left in /etc"
        shutil.rmtree(base, ignore_errors=True)


def no_traceback(res):
    assert "Traceback" not in json.dumps(res.result), res.result


# ------------------------------------------------------------------------------------------
# ad hoc: ping, setup
# ------------------------------------------------------------------------------------------
def test_ping_and_facts_are_the_guests(fleet, lab_exec):
    run = fleet.adhoc("c01,c11", "setup", {"gather_subset": ["!all", "!min", "network", "hardware"], "filter": [
        "ansible_hostname", "ansible_all_ipv4_addresses", "ansible_mounts", "ansible_interfaces"]})
    facts = {r.host: r["ansible_facts"] for r in run.results}
    assert set(facts) == {"c01", "c11"}
    for guest, f in facts.items():
        assert f["ansible_hostname"] == guest
        # the guest has its own network namespace: only lo, none of the lab host's addresses
        assert f["ansible_interfaces"] == ["lo"], f["ansible_interfaces"]
        assert not any(a.startswith("198.18.") for a in f["ansible_all_ipv4_addresses"]), f
        mounts = {m["mount"]: m for m in f["ansible_mounts"]}
        assert "/usr" in mounts and "ro" in mounts["/usr"]["options"].split(","), mounts.keys()
        assert "/run/lab" not in mounts and STATE not in mounts
    ping = fleet.adhoc("c01,c11", "ping")
    assert sorted((r.host, r["ping"]) for r in ping.results) == [("c01", "pong"), ("c11", "pong")]
    # each host compiled the entry program once and keeps it, private, for the next commands
    for host in ("lab1", "lab2"):
        out = lab_exec(host, ["sh", "-c", "stat -c '%%a %%U %%n' %s/entry-cache %s/entry-cache/*" % (STATE, STATE)]).stdout.split("\n")
        rows = [line.split() for line in out if line]
        assert rows[0][:2] == ["700", "root"] and len(rows) == 2, rows
        assert rows[1][:2] == ["600", "root"] and ".cpython-3" in rows[1][2], rows


# ------------------------------------------------------------------------------------------
# files: copy, template, fetch (50 MB, odd names); become
# ------------------------------------------------------------------------------------------
def test_copy_template_fetch_round_trip(fleet, lab_exec, tmp_path_factory):
    src = os.path.join(fleet.base, "big.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(1 << 20) * (BIG >> 20))
    tpl = os.path.join(fleet.base, "odd.j2")
    with open(tpl, "w") as f:
        f.write("guest={{ inventory_hostname }} ü\n")
    fetched = os.path.join(fleet.base, "fetched")
    dest_dir = "/srv/dir with 'quotes' ü"
    tasks = [
        {"name": "dir", "ansible.builtin.file": {"path": dest_dir, "state": "directory", "mode": "0755"}},
        {"name": "copy", "ansible.builtin.copy": {"src": src, "dest": "%s/%s" % (dest_dir, ODD), "mode": "0640"}},
        {"name": "template", "ansible.builtin.template": {"src": tpl, "dest": "%s/t 'é'.txt" % dest_dir}},
    ]
    play = [{"hosts": "c01", "gather_facts": False, "tasks": tasks}]
    check = fleet.playbook(play, extra=["--check"])
    first = fleet.playbook(play)
    second = fleet.playbook(play + [{"hosts": "c01", "gather_facts": False, "tasks": [
        {"name": "fetch", "ansible.builtin.fetch": {"src": "%s/%s" % (dest_dir, ODD), "dest": fetched + "/", "flat": False}},
        {"name": "become", "ansible.builtin.command": "id -un", "become": True, "become_method": "su", "become_user": "web"},
    ]}])
    for name in ("copy", "template"):
        assert check.task(name).changed and first.task(name).changed, (name, first.task(name).result)
        assert not second.task(name).changed, second.task(name).result
    # from outside: the file is inside the guest's root (its mount namespace), byte for byte
    inside = fleet.in_guest(lab_exec, "c01", ["sha1sum", "%s/%s" % (dest_dir, ODD)]).stdout.split()[0]
    assert inside == sha1(src)
    on_disk = os.path.join(fleet.roots["c01"], dest_dir.lstrip("/"), ODD)
    assert oct(os.stat(on_disk).st_mode & 0o777) == "0o640"
    with open(os.path.join(fleet.roots["c01"], dest_dir.lstrip("/"), "t 'é'.txt"), encoding="utf-8") as f:
        assert f.read() == "guest=c01 ü\n"
    assert sha1(os.path.join(fetched, "c01", dest_dir.lstrip("/"), ODD)) == sha1(src)
    assert second.task("become")["stdout"] == "web"
    # nothing staged is left on the lab host
    assert lab_exec("lab1", ["sh", "-c", "ls -A %s/transfer 2>/dev/null | wc -l" % STATE]).stdout.strip() == "0"


# ------------------------------------------------------------------------------------------
# pipelining on/off, paramiko
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pipelining, transport", [(True, "ssh"), (False, "ssh"), (False, "paramiko")])
def test_transports_and_pipelining(fleet, lab_exec, pipelining, transport):
    run = fleet.adhoc("c03", "ansible.builtin.shell", "hostname; for t in pid mnt net; do stat -L -c %i /proc/self/ns/$t; done; echo $container",
                      pipelining=pipelining, extra=["-vvv", "-e", "linuxns_transport=%s" % transport, "-e", "ansible_pipelining=%s" % pipelining],
                      env={"ANSIBLE_PARAMIKO_RECORD_HOST_KEYS": "False"})
    out = run.last["stdout_lines"]
    assert out[0] == "c03" and out[4] == "linuxns", out
    # the module ran in the guest's own pid, mnt and net namespaces (its pins, seen from the lab host)
    pins = [lab_exec("lab1", ["stat", "-L", "-c", "%i", "%s/guests/c03/ns/%s" % (STATE, t)]).stdout.strip() for t in ("pid", "mnt", "net")]
    assert out[1:4] == pins
    puts = run.stdout.count("PUT ")
    if pipelining:
        assert puts == 0, "pipelining on, yet the module was copied into the guest"
    else:
        assert puts >= 1, "pipelining off: the module should be put into the guest first"
    if transport == "paramiko":
        assert "paramiko" in run.stdout.lower()
    else:
        # the host's ansible_ssh_common_args reached the inner ssh connection
        assert "ServerAliveInterval=17" in run.stdout


# ------------------------------------------------------------------------------------------
# many guests, many tasks
# ------------------------------------------------------------------------------------------
@pytest.mark.extended
def test_playbook_of_ordinary_tasks_on_20_guests(fleet, lab_exec):
    tasks = [
        {"name": "file", "ansible.builtin.copy": {"dest": "/etc/motd", "content": "hello {{ inventory_hostname }}\n"}},
        {"name": "line", "ansible.builtin.lineinfile": {"path": "/etc/motd", "line": "tier {{ tier }}"}},
        {"name": "shell", "ansible.builtin.shell": "hostname; wc -l < /etc/motd; test -d /proc/1 && echo proc"},
    ]
    run = fleet.playbook([{"hosts": "with_python", "gather_facts": False, "tasks": tasks}], extra=["--forks", "20"])
    guests = PY["lab1"] + PY["lab2"]
    assert sorted(run.hosts) == sorted(guests)
    for g in guests:
        assert run.task("shell", g)["stdout_lines"] == [g, "2", "proc"]
        assert run.task("file", g).changed and run.task("line", g).changed
    # from outside: each guest's own root holds its own file (lab2's guests too)
    for g in ("c01", "c10", "c11", "c20"):
        tier = "even" if int(g[1:]) % 2 == 0 else "odd"
        with open(os.path.join(fleet.roots[g], "etc", "motd")) as f:
            assert f.read() == "hello %s\ntier %s\n" % (g, tier)
    host = "lab2" if "c11" in PY["lab2"] else "lab1"
    assert fleet.in_guest(lab_exec, "c11", ["cat", "/etc/motd"], host=host).stdout.startswith("hello c11")


# ------------------------------------------------------------------------------------------
# raw without Python; errors
# ------------------------------------------------------------------------------------------
def test_raw_in_a_guest_without_python(fleet):
    run = fleet.adhoc(NOPY, "raw", "hostname; test -e /usr/bin/python3 && echo has-python || echo no-python")
    assert run.last["stdout_lines"][-2:] == [NOPY, "no-python"], run.last.result
    # (a module there fails: see test_errors_name_what_is_wrong)


def test_put_and_fetch_of_a_link_out_of_the_root_stay_in_the_guest(fleet):
    """docs/security.md, "Symlink races": the guest's root put a link to a host file (an
    absolute one and one climbing with '..') where Ansible fetches and copies.  The
    connection's put and fetch run inside the guest's mount namespace: the links resolve
    inside the guest, the host file is neither fetched nor changed.  (A FIFO there is
    tested at unit level, tests/security/test_symlink_races.py: through Ansible, the
    fetch action's own stat module, run in the guest, would block on it first.)"""
    root = fleet.roots["c02"]
    marker = os.path.join(fleet.base, "host-marker")
    with open(marker, "w") as f:
        f.write("host marker\n")
    before = os.stat(marker)
    os.symlink(marker, os.path.join(root, "tmp", "abs-link"))
    os.symlink("../" * 16 + marker.lstrip("/"), os.path.join(root, "tmp", "rel-link"))
    dest = os.path.join(fleet.base, "fetched-links")
    # one task per link (each costs an Ansible round trip): fetch through one, copy through the other
    tasks = [{"name": "fetch", "ansible.builtin.fetch": {"src": "/tmp/rel-link", "dest": dest + "/", "flat": True}, "ignore_errors": True},
             {"name": "copy", "ansible.builtin.copy": {"content": "from the controller\n", "dest": "/tmp/abs-link"}, "ignore_errors": True}]
    run = fleet.playbook([{"hosts": "c02", "gather_facts": False, "tasks": tasks}])
    for task in tasks:
        no_traceback(run.task(task["name"]))
    with open(marker) as f:
        assert f.read() == "host marker\n"
    assert os.stat(marker).st_mtime_ns == before.st_mtime_ns
    assert not os.path.exists(dest) or not os.listdir(dest), os.listdir(dest)


def test_errors_name_what_is_wrong(fleet, tmp_path):
    doc = fleet_doc(fleet.lab, fleet.roots, extra_lab1=[{"name": MISSING}])
    doc["hosts"]["down"] = {"address": fleet.lab.host(1).address, "vars": dict(doc["hosts"]["lab1"]["vars"], ansible_port=1),
                            "guests": [{"name": "c01"}]}
    doc["hostname_template"] = "{host}-{guest}"
    inv = os.path.join(fleet.base, "errors.guests.yml")
    with open(inv, "w") as f:
        yaml.safe_dump(doc, f)
    argv = [_bin("ansible"), "lab1-%s,lab1-%s,down-c01,lab1-%s" % (MISSING, STOPPED, NOPY), "-i", inv, "-m", "ping"]
    run = fleet._run(argv, expect_fail=True)
    by_host = {r.host: r for r in run.results}
    assert set(by_host) == {"lab1-" + MISSING, "lab1-" + STOPPED, "down-c01", "lab1-" + NOPY}, run.describe()
    for r in by_host.values():
        no_traceback(r)
    for h in ("lab1-" + MISSING, "lab1-" + STOPPED, "down-c01"):
        assert by_host[h].status == "unreachable", by_host[h].result
    # a guest without Python is reachable; the module fails there, naming the interpreter
    nopy = by_host["lab1-" + NOPY]
    assert nopy.status == "failed" and "/nonexistent/python" in json.dumps(nopy.result), nopy.result
    assert "guest 'cmissing' is missing: it does not exist on host %s" % fleet.lab.host(1).address in by_host["lab1-cmissing"]["msg"]
    assert "guest 'cstop' is stopped" in by_host["lab1-cstop"]["msg"] and "init" in by_host["lab1-cstop"]["msg"]
    assert "physical host %s:1 is unreachable over ssh" % fleet.lab.host(1).address in by_host["down-c01"]["msg"]


# ------------------------------------------------------------------------------------------
# the inventory plugin
# ------------------------------------------------------------------------------------------
def plain(value):
    """ansible-inventory's JSON with the {"__ansible_unsafe": x} wrappers taken off."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _inventory(fleet, inv, *args):
    env = fleet.ansible.environment(fleet.ansible.workdir / "inv.jsonl")
    proc = subprocess.run([_bin("ansible-inventory"), "-i", inv, *args], env=env, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_inventory_graph_list_and_query(fleet):
    graph = _inventory(fleet, fleet.inventory, "--graph").stdout
    for line in ("@linuxns_guests:", "@linuxns_host_lab1:", "@linuxns_host_lab2:", "@tier_even:", "@with_python:", "|--c20", "|--" + NOPY):
        assert line in graph, graph
    doc = fleet_doc(fleet.lab, fleet.roots, query=True, extra_lab1=[{"name": MISSING, "context_id": 999}])
    inv = os.path.join(fleet.base, "query.guests.yml")
    with open(inv, "w") as f:
        yaml.safe_dump(doc, f)
    data = plain(json.loads(_inventory(fleet, inv, "--list").stdout))
    hv = data["_meta"]["hostvars"]
    assert sorted(data["linuxns_host_lab2"]["hosts"]) == PY["lab2"]
    assert sorted(data["tier_odd"]["hosts"]) == sorted(g for g in PY["lab1"] + PY["lab2"] if int(g[1:]) % 2)
    assert NOPY not in data["with_python"]["hosts"] and "c01" in data["with_python"]["hosts"]
    assert hv["c01"]["ansible_connection"] == "linuxns.guests.guest"
    assert hv["c01"]["linuxns_host"] == fleet.lab.host(1).address and hv["c11"]["linuxns_host"] == fleet.lab.host(2).address
    assert hv["c01"]["linuxns_guest_spec"]["root"] == fleet.roots["c01"]
    assert {g: hv[g]["linuxns_guest_status"] for g in ("c01", "c20", NOPY, STOPPED, MISSING)} == {
        "c01": "running", "c20": "running", NOPY: "running", STOPPED: "stopped", MISSING: "missing"}


def test_inventory_bad_file_names_the_place(fleet):
    doc = fleet_doc(fleet.lab, fleet.roots)
    doc["hosts"]["lab1"]["guests"].append({"name": "c01"})
    inv = os.path.join(fleet.base, "bad.guests.yml")
    with open(inv, "w") as f:
        yaml.safe_dump(doc, f)
    env = fleet.ansible.environment(fleet.ansible.workdir / "inv.jsonl")
    proc = subprocess.run([_bin("ansible-inventory"), "-i", inv, "--list"], env=dict(env, ANSIBLE_INVENTORY_UNPARSED_FAILED="1"),
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode != 0
    assert "guest 'c01' is listed twice on host lab1" in proc.stderr, proc.stderr
