"""Roles guest_host and guest over real ssh against lab hosts.

The whole play is the unit here: check mode first (it must not fail and must predict
changes), the real run, the real run again (no task of the play may report a change) and
check mode again (nothing to change). The result is verified from outside the lab host:
/run/linuxns/guests, namespace pins, /proc/PID/mountinfo, the processes' parents, and
pages fetched from each guest's busybox httpd over the host bridge. Guest networks use
198.19.0.0/16 only (198.18.N.0/24 are the lab hosts' own links). Everything lives under the
lab host's private /tmp and /run and is removed by the fixtures, also on failure.
"""

from __future__ import annotations

import json

import pytest
from role_guests import GUEST_LIST, NET

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOST = "lab1"
BASE = "/tmp/lnsr-it"
TABLES = BASE + "/tables"
ROOTS = BASE + "/roots"
BRIDGE = "lnsrit0"
GUESTS = ("web", "side", "boxinit", "unt")
UN_POOL_START = 2100000000  # above every id of the lab host's /etc/passwd and /etc/group (test_userns.py uses 2000000000)
# an unprivileged guest (issue 16) whose clocks are a day ahead: the role's userns and time_offsets
UN_GUEST = {"name": "unt", "root_build": True, "userns": "auto", "namespaces": ["mnt", "uts", "ipc", "pid", "time"],
            "time_offsets": {"monotonic": 86400, "boottime": 86400}}
BRIDGE_TASK = "Host bridge with its addresses and the routes through its network"

HOST_VARS = {"guest_host_table_dir": TABLES, "guest_host_dirs": [ROOTS], "guest_host_ip_forward": True,
             "guest_host_min_namespaces": 100, "guest_host_bridge": BRIDGE, "guest_host_bridge_addresses": [NET + ".1/24"],
             "guest_host_routes": [{"dst": "198.19.9.0/24", "via": NET + ".254"}]}


def guest_play(state="started", guests=None, host_vars=None, with_host=False, **more):
    """[guest_host then] guest on HOST (guest_host gives the bridge the host's address)."""
    role_vars = {"guest_list": GUEST_LIST + [UN_GUEST] if guests is None else guests, "guest_state": state,
                 "guest_table_dir": TABLES, "guest_roots_dir": ROOTS, "guest_bridge": BRIDGE,
                 "guest_userns_pool": "%d:100000" % UN_POOL_START}
    role_vars.update(more)
    return [{"name": "guest roles", "hosts": HOST, "gather_facts": False,
             "roles": ([{"role": "linuxns.guests.guest_host", "vars": dict(HOST_VARS, **(host_vars or {}))}] if with_host else [])
             + [{"role": "linuxns.guests.guest", "vars": role_vars}]}]


def changed_tasks(run):
    return ["%s: %s" % (r.host, r.task) for r in run.results if r.changed]


def sh(lab_exec, script, check=True):
    return lab_exec(HOST, ["sh", "-c", script], check=check)


def guests_on_host(lab_exec):
    return sorted(sh(lab_exec, "ls /run/linuxns/guests 2>/dev/null || true").stdout.split())


def meta(lab_exec, name):
    return json.loads(sh(lab_exec, "cat /run/linuxns/guests/%s/meta.json" % name).stdout)


def page(lab_exec, address):
    out = sh(lab_exec, "timeout 5 busybox wget -q -O - http://%s/" % address, check=False)
    return out.stdout.strip() if out.returncode == 0 else None


def processes(lab_exec):
    """{pid: (ppid, args)} of the lab host."""
    out = sh(lab_exec, "ps -e -o pid= -o ppid= -o args=").stdout
    procs = {}
    for line in out.splitlines():
        pid, ppid, args = line.split(None, 2)
        procs[int(pid)] = (int(ppid), args)
    return procs


def httpd_parent(lab_exec, name):
    """The host pid of the parent of the httpd serving /www in guest NAME, or None."""
    init = meta(lab_exec, name)["init_pid"]
    procs = processes(lab_exec)
    for ppid, args in procs.values():
        if "httpd -f -p 80" in args and (ppid == init or procs.get(ppid, (0,))[0] == init):
            return ppid
    return None


def cleanup(ansible_playbook, lab_exec):
    ansible_playbook(guest_play("absent", guest_purge_root=True), expect_fail=False)
    sh(lab_exec, "ip link del %s; ip route del 198.19.9.0/24; sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0;"
       " rm -rf %s" % (BRIDGE, BASE), check=False)


@pytest.fixture(scope="module")
def deployed(lab, ansible):
    """The guests after the converge sequence of test_converge (removed at the end)."""
    def lab_exec(host, argv, check=True):
        from harness import lab_exec as run
        return run(lab, host, argv, check=check)

    yield {}
    cleanup(ansible.playbook, lab_exec)
    assert guests_on_host(lab_exec) == []


@pytest.mark.timeout(1200)  # it took over 600 s at load 15-20 (five role runs and the probes)
def test_converge_check_idempotent(deployed, ansible_playbook, lab_exec):
    limits = {k: sh(lab_exec, "sysctl -n user.max_%s_namespaces" % k).stdout.strip() for k in ("net", "mnt", "pid")}
    # Check mode on an empty host: predicts changes, creates nothing.
    check = ansible_playbook(guest_play(with_host=True), check=True)
    assert changed_tasks(check), check.describe()
    assert guests_on_host(lab_exec) == []
    assert sh(lab_exec, "test -e %s" % ROOTS, check=False).returncode != 0, "check mode made the roots folder"
    assert sh(lab_exec, "ip link show %s" % BRIDGE, check=False).returncode != 0, "check mode made the bridge"

    first = ansible_playbook(guest_play(with_host=True))
    assert changed_tasks(first)
    second = ansible_playbook(guest_play(with_host=True))
    assert changed_tasks(second) == [], "second run changed:\n" + second.describe()
    again = ansible_playbook(guest_play(with_host=True), check=True)
    assert changed_tasks(again) == [], "check mode after converging predicts changes:\n" + again.describe()

    # From outside. guest_host: bridge up with its address, route, forwarding on, limits never lowered.
    info = json.loads(sh(lab_exec, "ip -j addr show " + BRIDGE).stdout)[0]
    assert "UP" in info["flags"] and NET + ".1" in [a["local"] for a in info["addr_info"]]
    route = json.loads(sh(lab_exec, "ip -j route show 198.19.9.0/24").stdout)
    assert route and route[0]["gateway"] == NET + ".254"
    # made by netns_link (kind=bridge): the bridge is marked, the route is its protocol 76 route on the bridge
    assert route[0]["dev"] == BRIDGE and str(route[0]["protocol"]) == "76", route
    assert json.loads(sh(lab_exec, "ip -j link show " + BRIDGE).stdout)[0].get("ifalias") == "linuxns.guests"
    assert sh(lab_exec, "sysctl -n net.ipv4.ip_forward").stdout.strip() == "1"
    for k, v in limits.items():
        assert sh(lab_exec, "sysctl -n user.max_%s_namespaces" % k).stdout.strip() == v
    # systemd is not PID 1 on a lab host (no /run/systemd/system): no delegated unit, no supervisor
    assert sh(lab_exec, "ls /etc/systemd/system/linuxns-guests.service /usr/local/libexec/linuxns-guests-supervisor",
              check=False).returncode != 0
    # guest: the guests, shared network, pages over the bridge, mounts, supervision.
    assert guests_on_host(lab_exec) == sorted(GUESTS)
    pins = {g: sh(lab_exec, "stat -L -c %%i /run/linuxns/guests/%s/ns/net" % g).stdout.strip() for g in ("web", "side")}
    assert pins["web"] == pins["side"], "side does not share web's network namespace"
    assert sh(lab_exec, "ip netns exec side hostname", check=False).returncode == 0
    assert page(lab_exec, NET + ".11") == "page of web"
    assert page(lab_exec, NET + ".12") == "page of boxinit"
    web = meta(lab_exec, "web")
    assert "/scratch" in sh(lab_exec, "cut -d' ' -f5 /proc/%d/mountinfo" % web["init_pid"]).stdout.split()
    assert "/scratch" in sh(lab_exec, "cat %s/web/fstab" % TABLES).stdout
    procs = processes(lab_exec)
    # init-less: the service's parent is the guest's reaper; init-based: busybox init respawns it.
    assert httpd_parent(lab_exec, "web") == web["init_pid"]
    assert "catatonit" in procs[web["init_pid"]][1]
    box = meta(lab_exec, "boxinit")
    assert procs[box["init_pid"]][1].startswith("/bin/busybox init")
    assert httpd_parent(lab_exec, "boxinit") == box["init_pid"]
    deployed["web_init"] = web["init_pid"]
    userns_and_time_guest(ansible_playbook, lab_exec)

    # guest_host alone: a route dropped from guest_host_routes and an address changed are predicted
    # by check mode (--diff shows the bridge before and after), then changed; the guests' veths stay on the bridge.
    host_only = [{"name": "host", "hosts": HOST, "gather_facts": False, "roles": [
        {"role": "linuxns.guests.guest_host",
         "vars": dict(HOST_VARS, guest_host_routes=[], guest_host_bridge_addresses=[NET + ".1/24", NET + ".2/24"])}]}]
    predicted = ansible_playbook(host_only, check=True, diff=True)
    bridge_task = [r for r in predicted.results if r.changed]
    assert [r.task.endswith(BRIDGE_TASK) for r in bridge_task] == [True], predicted.describe()
    diff = bridge_task[0].get("diff")
    diff = diff[0] if isinstance(diff, list) else diff
    assert diff["before"]["routes"] and diff["after"]["routes"] == [], diff
    assert diff["after"]["addresses"] == [NET + ".1/24", NET + ".2/24"], diff
    assert json.loads(sh(lab_exec, "ip -j route show 198.19.9.0/24").stdout), "check mode removed the route"
    changed = ansible_playbook(host_only)
    assert [t.endswith(BRIDGE_TASK) for t in changed_tasks(changed)] == [True], changed.describe()
    assert json.loads(sh(lab_exec, "ip -j route show 198.19.9.0/24").stdout) == []
    info = json.loads(sh(lab_exec, "ip -j addr show " + BRIDGE).stdout)[0]
    assert sorted(a["local"] for a in info["addr_info"] if a["family"] == "inet") == [NET + ".1", NET + ".2"]
    assert changed_tasks(ansible_playbook(host_only)) == []
    assert page(lab_exec, NET + ".11") == "page of web"
    # back to the converged host (the route again, the extra address removed: the set is exact)
    back = ansible_playbook(guest_play(with_host=True))
    assert [t.endswith(BRIDGE_TASK) for t in changed_tasks(back)] == [True], back.describe()
    assert json.loads(sh(lab_exec, "ip -j route show 198.19.9.0/24").stdout)


def test_a_lost_definition_is_saved_again_by_a_no_change_run(deployed, ansible_playbook, lab_exec):
    """guest_deploy's one question (namespace_info expect) must not hide what a real namespace_create or
    netns_link run does even when nothing changes: save each guest's kept definition, the restore
    service's input. A definition lost, then only its links lost: the next run writes them back."""
    if "web_init" not in deployed:
        pytest.skip("needs test_converge_check_idempotent")
    path = TABLES + "/web/guest.json"
    kept = json.loads(sh(lab_exec, "cat " + path).stdout)
    assert kept["links"], kept

    def rerun():
        run = ansible_playbook(guest_play())
        assert changed_tasks(run) == [], run.describe()  # saving a definition is bookkeeping, not a change
        deploy = next(r.result for r in run.results if r.action == "linuxns.guests.guest_deploy")
        return [s["step"].split(" (")[0] for s in deploy["steps"]]

    sh(lab_exec, "rm " + path)
    steps = rerun()
    assert "create the guests' namespaces" in steps and "links, addresses and routes of the guests" in steps, steps
    assert json.loads(sh(lab_exec, "cat " + path).stdout) == kept
    # only the links lost: namespace_create keeps the rest, netns_link runs for real and saves them
    sh(lab_exec, "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d[\"links\"]={}; json.dump(d, open(sys.argv[1], \"w\"))' " + path)
    steps = rerun()
    assert "links, addresses and routes of the guests" in steps and "create the guests' namespaces" not in steps, steps
    assert json.loads(sh(lab_exec, "cat " + path).stdout) == kept
    # and then one question again
    assert rerun() == ["build busybox roots and write the guests' files", "check the guests' namespaces, mounts, links and services"]


def test_check_mode_before_pyroute2_is_installed(ansible_playbook, lab_exec):
    """A check run on a host whose Python lacks pyroute2 (which the real run installs) predicts the bridge without netns_link."""
    venv = BASE + "/nopyroute2"
    try:
        sh(lab_exec, "mkdir -p %s/state && python3 -m venv --without-pip %s" % (BASE, venv))
        assert sh(lab_exec, venv + "/bin/python -c 'import pyroute2'", check=False).returncode != 0
        host_vars = {"guest_host_state_dir": BASE + "/state", "guest_host_table_dir": BASE,
                     "guest_host_bridge": BRIDGE + "p", "guest_host_bridge_addresses": ["198.19.8.1/24"]}
        play = [{"name": "host", "hosts": HOST, "gather_facts": False, "vars": {"ansible_python_interpreter": venv + "/bin/python"},
                 "roles": [{"role": "linuxns.guests.guest_host", "vars": host_vars}]}]
        run = ansible_playbook(play, check=True)
        assert [t.endswith("Host bridge (check mode - pyroute2 comes with the real run, which then sets the bridge up)")
                for t in changed_tasks(run)] == [True], run.describe()
        assert sh(lab_exec, "ip link show %sp" % BRIDGE, check=False).returncode != 0, "check mode made the bridge"
    finally:
        sh(lab_exec, "rm -rf %s %s/state" % (venv, BASE), check=False)


def test_a_program_folder_already_right_costs_no_call(ansible_playbook, lab_exec):
    """guest_host's one read of the host covers the folders of linuxns-guest and of the restore
    program: a folder already right (as /usr/local/sbin is on most hosts) gets no task call of its
    own on a first deploy, a missing one is made with mode 0755; check mode predicts both, and a
    second run changes nothing."""
    base = BASE + "/progs"
    ready, missing = base + "/ready", base + "/missing"
    host_vars = {"guest_host_state_dir": base + "/state", "guest_host_table_dir": base + "/tables",
                 "guest_host_operator_path": ready + "/linuxns-guest",
                 "guest_host_restore_path": missing + "/linuxns-guests-restore"}
    play = [{"name": "host", "hosts": HOST, "gather_facts": False, "roles": [{"role": "linuxns.guests.guest_host", "vars": host_vars}]}]

    def folder_tasks(run):
        return {t: run.task("linuxns.guests.guest_host : " + t).status for t in ("Folder of linuxns-guest", "Folder of the restore program")}

    try:
        sh(lab_exec, "rm -rf %s && mkdir -p %s && chmod 0755 %s %s" % (base, ready, base, ready))
        check = ansible_playbook(play, check=True)
        assert folder_tasks(check) == {"Folder of linuxns-guest": "skipped", "Folder of the restore program": "changed"}, check.describe()
        assert sh(lab_exec, "test -e %s" % missing, check=False).returncode != 0, "check mode made the folder"
        run = ansible_playbook(play)
        assert folder_tasks(run) == {"Folder of linuxns-guest": "skipped", "Folder of the restore program": "changed"}, run.describe()
        modes = sh(lab_exec, "stat -c '%%a %%n' %s %s %s/linuxns-guest %s/linuxns-guests-restore" % (ready, missing, ready, missing)).stdout.split("\n")
        assert [m.split()[0] for m in modes if m] == ["755", "755", "755", "755"], modes
        again = ansible_playbook(play)
        assert changed_tasks(again) == [], again.describe()
    finally:
        sh(lab_exec, "rm -rf %s" % base, check=False)


def init_ids(lab_exec, pid):
    """The Uid and Gid lines (real, effective, saved, fs) of /proc/PID/status, read from outside."""
    status = dict(line.split(":", 1) for line in sh(lab_exec, "cat /proc/%d/status" % pid).stdout.splitlines())
    return status["Uid"].split(), status["Gid"].split()


def userns_and_time_guest(ansible_playbook, lab_exec):
    """Guest unt of the converged play (``userns: auto``, a time namespace a day ahead, set from the
    role): from outside, its init runs as the first id of its range; inside, ``id -u`` is 0, a file
    it makes is that id's on the host (seen through the guest's root), and /proc/uptime is the
    host's (read before and after it, in the same playbook run) plus the offset."""
    init = meta(lab_exec, "unt")["init_pid"]
    probe = "cat /proc/uptime; id -u; cat /proc/self/timens_offsets; touch /tmp/made-inside"
    run = ansible_playbook([
        {"name": "host before", "ansible.builtin.command": "cat /proc/uptime"},
        {"name": "inside", "linuxns.guests.guest_enter_exec": {"guest": "unt", "cmd": "sh -c '%s'" % probe}},
        {"name": "host after", "ansible.builtin.command": "cat /proc/uptime"},
        {"name": "info", "linuxns.guests.namespace_info": {"name": "unt"}}])
    before, after = (float(run.task(t)["stdout"].split()[0]) for t in ("host before", "host after"))
    out = run.task("inside")["stdout_lines"]
    # the guest's boot time clock is the host's plus a day (the same clock, read in this order)
    assert before + 86400 <= float(out[0].split()[0]) <= after + 86400, (before, out[0], after)
    assert out[1] == "0", out
    assert sorted(tuple(line.split()) for line in out[2:4]) == [("boottime", "86400", "0"), ("monotonic", "86400", "0")], out
    info = run.task("info")["guests"][0]
    assert info["userns"] == "auto" and info["userns_range"]["start"] == UN_POOL_START, info
    assert info["userns_root_done"] in ("idmap", "shift"), info
    assert info["namespaces"]["time"]["owner_user_ns"] == info["namespaces"]["user"]["inode"], info["namespaces"]
    # from outside: the init's uids and gids are the range's first id
    assert init_ids(lab_exec, init) == ([str(UN_POOL_START)] * 4,) * 2
    made = sh(lab_exec, "stat -c %%u:%%g /proc/%d/root/tmp/made-inside" % init).stdout.strip()
    assert made == "%d:%d" % (UN_POOL_START, UN_POOL_START), made


def killed_httpd(lab_exec, name):
    init = meta(lab_exec, name)["init_pid"]
    procs = processes(lab_exec)
    found = [pid for pid, (ppid, args) in procs.items() if "httpd -f" in args and (ppid == init or procs.get(ppid, (0,))[0] == init)]
    assert len(found) == 1, found
    sh(lab_exec, "kill -9 %d" % found[0])
    return found[0]


def test_services_and_state_transitions(deployed, ansible_playbook, lab_exec):
    if "web_init" not in deployed:
        pytest.skip("needs test_converge_check_idempotent")
    # Supervision: busybox init respawns its service by itself; the init-less guest's
    # service is started again by the next run (only the services task changes).
    old_box = killed_httpd(lab_exec, "boxinit")
    killed_httpd(lab_exec, "web")
    run = ansible_playbook(guest_play())
    changed = changed_tasks(run)
    assert len(changed) == 1 and changed[0].endswith("Start the services of init-less guests (one task per distinct service)"), run.describe()
    # the check from the host (namespace_info services) found web's service gone: only web was entered
    deploy = [r.result for r in run.results if r.action == "linuxns.guests.guest_deploy"]
    assert [g for s in deploy[0]["services_to_start"] for g in s["guests"]] == ["web"], deploy[0]["services"]
    assert page(lab_exec, NET + ".11") == "page of web"
    assert page(lab_exec, NET + ".12") == "page of boxinit"
    assert httpd_parent(lab_exec, "boxinit") == meta(lab_exec, "boxinit")["init_pid"]
    assert old_box not in processes(lab_exec)

    # restarted: new namespaces and init, mount table re-applied, services back.
    before = meta(lab_exec, "web")["init_pid"]
    run = ansible_playbook(guest_play("restarted"))
    assert changed_tasks(run)
    web = meta(lab_exec, "web")
    assert web["init_pid"] != before
    assert "/scratch" in sh(lab_exec, "cut -d' ' -f5 /proc/%d/mountinfo" % web["init_pid"]).stdout.split()
    assert page(lab_exec, NET + ".11") == "page of web"
    assert page(lab_exec, NET + ".12") == "page of boxinit"
    # the recreated unprivileged guest runs as its range again
    assert init_ids(lab_exec, meta(lab_exec, "unt")["init_pid"]) == ([str(UN_POOL_START)] * 4,) * 2

    # stopped: namespaces, processes and veths gone; root folders and mount table kept.
    stop = ansible_playbook(guest_play("stopped"))
    assert changed_tasks(stop)
    assert guests_on_host(lab_exec) == []
    assert not [a for _p, (_pp, a) in processes(lab_exec).items() if "httpd -f" in a]
    assert sh(lab_exec, "ip link show ve-web", check=False).returncode != 0
    assert sh(lab_exec, "test -x %s/web/bin/busybox && test -s %s/web/fstab" % (ROOTS, TABLES), check=False).returncode == 0

    # absent: the tables and, with guest_purge_root, the roots are gone too.
    gone = ansible_playbook(guest_play("absent", guest_purge_root=True))
    assert changed_tasks(gone)
    assert guests_on_host(lab_exec) == []
    assert sorted(sh(lab_exec, "ls %s %s" % (TABLES, ROOTS)).stdout.split()) == sorted([TABLES + ":", ROOTS + ":"])
    assert not sh(lab_exec, "ls /run/netns").stdout.split()


BAD_INPUTS = [
    ({"guest_state": "paused"}, "guest_state"),
    ({"guest_list": [{"hostname": "x"}]}, "name"),
    ({"guest_list": [{"name": "a", "namespaces": ["net", "bogus"]}]}, "namespaces"),
    ({"guest_list": [{"name": "a", "services": [{"name": "s", "argv": ["/bin/true"]}]}]}, "need a root folder"),
    ({"guest_list": [{"name": "a"}, {"name": "a"}]}, "duplicate guest names"),
    ({"guest_list": [{"name": "a", "state": "stopped"}, {"name": "b", "share": {"net": "a"}}]}, "give both the same state"),
    ({"guest_list": [{"name": "a", "stop_timeout": "soon"}]}, "stop_timeout"),
    ({"guest_host": {"guest_host_install": False, "guest_host_packages": ["iproute2", "linuxns-no-such-package"]}},
     "linuxns-no-such-package"),
    ({"guest_host": {"guest_host_pyroute2_source": "conda"}}, "guest_host_pyroute2_source"),
    ({"guest_host": {"guest_host_bridge": "", "guest_host_routes": [{"dst": "198.19.9.0/24", "via": NET + ".254"}]}},
     "need guest_host_bridge"),
    ({"guest_host": {"guest_host_min_sysctls": {"fs/../../etc/shadow": 1, "kernel.pid_max": "lots"}}},
     "guest_host_min_sysctls: fs/../../etc/shadow, kernel.pid_max: each key must be a sysctl name"),
]


def _bad_run(ansible_playbook, bad):
    role_vars = {"guest_list": [{"name": "bad1", "root_build": True}], "guest_roots_dir": ROOTS, "guest_table_dir": TABLES,
                 "guest_bridge": BRIDGE}
    roles = []
    if "guest_host" in bad:
        roles.append({"role": "linuxns.guests.guest_host", "vars": dict({"guest_host_bridge": BRIDGE + "x"}, **bad["guest_host"])})
    else:
        role_vars.update(bad)
    roles.append({"role": "linuxns.guests.guest", "vars": role_vars})
    play = [{"name": "bad input", "hosts": HOST, "gather_facts": False, "roles": roles}]
    return ansible_playbook(play, expect_fail=True)


# the host-state read is a raw call (guest_host tasks/main.yml); reads with command where it is not done
READ_ONLY = {"validate_argument_spec", "set_fact", "assert", "package_facts", "command", "raw", "include_tasks"}


def test_bad_input_fails_before_any_change(ansible_playbook, lab_exec):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda case: _bad_run(ansible_playbook, case[0]), BAD_INPUTS))
    for (bad, word), run in zip(BAD_INPUTS, runs):
        failed = [r for r in run.results if r.failed]
        assert failed, run.describe()
        assert word in failed[0].get("msg", ""), "%r: %s" % (bad, failed[0].result)
        assert "Traceback" not in run.stdout + run.stderr
        # Nothing ran that changes the host: only validation, planning (guest_deploy's first step) and reading.
        assert not changed_tasks(run), run.describe()
        assert {r.action.rsplit(".", 1)[-1] for r in run.results} <= READ_ONLY | {"guest_deploy"}, [r.action for r in run.results]
        # guest_deploy plans first: its failure on the plan comes before any module call
        assert all(r.get("steps") == [] for r in run.results if r.action.endswith("guest_deploy")), run.describe()
    assert guests_on_host(lab_exec) == []
    assert sh(lab_exec, "test -e %s/bad1 || ip link show %sx" % (ROOTS, BRIDGE), check=False).returncode != 0
