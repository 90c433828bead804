"""A simulated reboot of a lab host, and the restore service that brings its guests back.

Over real ssh on lab1: guest_host's restore tasks install linuxns-guests-restore and (no systemd
on a lab host) its boot script; namespace_create, namespace_mount and netns_link make four
guests and save their definitions (each play in check mode, then twice: the second changes
nothing):

* web   - autostart, a busybox root, httpd as its init, a persistent tmpfs on /srv and a veth
          to the lab host with an address on each end;
* side  - autostart, shares web's network and ipc namespaces (so it must come after web); init-less
          (the reaper is its PID 1) with a busybox root and a service, httpd on port 8080, recorded
          by namespace_create (``services``) and started as the guest role starts it
          (services.script with guest_enter_exec) - the restore service starts it again at boot;
* manual - not autostart: stays down;
* broken - autostart, but its root is removed before the reboot: reported, the others come up.

The reboot (as test_fleet_reliability does it): every process of the lab host in a namespace
other than its own is killed by pid, the pins are unmounted and the lab host's own /run/linuxns
and /run/netns removed; the table folder stays. Then the boot script runs over ssh and
everything is checked from outside: names, context ids, addresses, the page, the mount, the
shared namespace, exit status and log lines.
"""

from __future__ import annotations

import json

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import services

# About 2 min on a quiet machine; several times that on a loaded one.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

HOST = "lab1"
BASE = "/tmp/lns-restore-it"
TABLES = BASE + "/tables"
ROOTS = BASE + "/roots"
PROGRAM = BASE + "/bin/linuxns-guests-restore"
SCRIPT = BASE + "/bin/restore.sh"
HOST_IF, HOST_ADDR, WEB_ADDR = "lbweb0", "198.19.80.1/24", "198.19.80.2/24"
CREATE, MOUNT, LINK = "linuxns.guests.namespace_create", "linuxns.guests.namespace_mount", "linuxns.guests.netns_link"
NAMES = ("web", "side", "manual", "broken")
SERVICE = {"name": "httpd", "argv": ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]}  # side's

GUESTS = [
    {"name": "web", "namespaces": ["mnt", "uts", "ipc", "net", "pid"], "root": ROOTS + "/web", "autostart": True,
     "init": ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"], "stop_timeout": 1},
    {"name": "side", "namespaces": ["mnt", "uts", "pid"], "share": {"net": "web", "ipc": "web"}, "autostart": True,
     "root": ROOTS + "/side", "services": [SERVICE], "stop_timeout": 1},
    {"name": "manual", "namespaces": ["uts"], "autostart": False},
    {"name": "broken", "namespaces": ["mnt", "uts", "pid"], "root": ROOTS + "/broken", "autostart": True},
]
PLAY_GUESTS = [
    {"name": "restore service", "ansible.builtin.include_role": {"name": "linuxns.guests.guest_host", "tasks_from": "restore.yml"},
     "vars": {"guest_host_restore_path": PROGRAM, "guest_host_restore_script": SCRIPT, "guest_host_state_dir": "/run/linuxns",
              "guest_host_table_dir": TABLES}},
    {"name": "guests", CREATE: {"guests": GUESTS, "table_dir": TABLES}},
]
PLAY_WIRING = [
    {"name": "mount", MOUNT: {"guest": "web", "path": "/srv", "fstype": "tmpfs", "opts": "size=1m", "table_dir": TABLES}},
    {"name": "link", LINK: {"ifname": HOST_IF, "addresses": [HOST_ADDR],
                            "peer": {"guest": "web", "ifname": "eth0", "addresses": [WEB_ADDR]}}},
    # side's service, as the guest role starts it (guest_deploy's services[].cmd): changed only when it started it
    {"name": "service", "linuxns.guests.guest_enter_exec": {"guest": "side", "cmd": services.script(SERVICE), "shell": True},
     "register": "service", "changed_when": "(service.stdout | default('')) is match('^started')"},
]

# Inside the lab host (its own /run): the state seen from outside the guests, and the reboot.
COMMON = r"""
import json, os, subprocess, sys, time, urllib.request
STATE, NETNS = '/run/linuxns', '/run/netns'
TYPES = ('pid', 'mnt', 'net', 'uts', 'ipc')

def ns(pid, t):
    return os.readlink('/proc/%s/ns/%s' % (pid, t))

def foreign():
    own = {t: ns(1, t) for t in TYPES}
    out = []
    for p in os.listdir('/proc'):
        try:
            with open('/proc/%s/stat' % p) as f:
                state = f.read().rsplit(')', 1)[1].split()[0]
            if p.isdigit() and state not in 'ZX' and any(ns(p, t) != own[t] for t in TYPES):
                out.append(int(p))
        except OSError:
            pass
    return sorted(out)

def mount_points(pid='self'):
    with open('/proc/%s/mountinfo' % pid) as f:
        return [(l.split(' ')[4], l.split(' - ')[1].split(' ')[0]) for l in f.read().splitlines()]
"""

PROBE = COMMON + r"""
out = {'guests': {}, 'foreign': foreign(), 'netns': sorted(os.listdir(NETNS)) if os.path.isdir(NETNS) else [],
       'host_if': subprocess.run(['ip', '-j', 'addr', 'show', 'dev', sys.argv[1]], capture_output=True, text=True).stdout}
base = STATE + '/guests'
for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
    with open('%s/%s/meta.json' % (base, name)) as f:
        m = json.load(f)
    g = {'ctx': m['context_id'], 'init_pid': m['init_pid'], 'phase': m['phase'],
         'net': os.stat('%s/%s/ns/net' % (base, name)).st_ino if os.path.exists('%s/%s/ns/net' % (base, name)) else None}
    if m['init_pid']:
        g['mounts'] = sorted('%s %s' % mt for mt in mount_points(m['init_pid']) if mt[0] == '/srv')
        g['init'] = open('/proc/%d/cmdline' % m['init_pid'], 'rb').read().split(b'\0')[0].decode()
    if os.path.exists('%s/%s' % (NETNS, name)):
        addrs = json.loads(subprocess.run(['ip', '-n', name, '-j', 'addr', 'show', 'dev', 'eth0'], capture_output=True,
                                          text=True).stdout or '[]')
        g['addresses'] = [a['local'] + '/' + str(a['prefixlen']) for l in addrs for a in l['addr_info'] if a['family'] == 'inet']
    out['guests'][name] = g
try:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    out['page'] = opener.open('http://%s/' % sys.argv[2], timeout=10).read().decode().strip()
except Exception as e:  # noqa: BLE001 - reported, the test asserts on it
    out['page'] = 'ERROR %s' % e
try:
    out['service_page'] = opener.open('http://%s:8080/' % sys.argv[2], timeout=10).read().decode().strip()  # side's service
except Exception as e:  # noqa: BLE001 - reported, the test asserts on it
    out['service_page'] = 'ERROR %s' % e
print(json.dumps(out))
"""

REBOOT = COMMON + r"""
import shutil, signal
killed = foreign()
for pid in killed:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
while foreign():  # SIGKILL cannot be ignored: they go (bounded by the test's timeout)
    time.sleep(0.05)
mounts = sorted({m for m, _t in mount_points() if m in (STATE, NETNS) or m.startswith((STATE + '/', NETNS + '/'))},
                key=lambda m: (-m.count('/'), m))
for m in mounts:
    subprocess.run(['umount', '-l', m], check=True)
for d in (STATE, NETNS):
    shutil.rmtree(d, ignore_errors=True)
while subprocess.run(['ip', 'link', 'show', sys.argv[1]], capture_output=True).returncode == 0:
    time.sleep(0.05)  # the veth goes with web's network namespace
print(json.dumps({'killed': killed, 'umounted': mounts}))
"""


def sh(lab_exec, script, check=True):
    return lab_exec(HOST, ["sh", "-c", script], check=check)


def probe(lab_exec):
    return json.loads(lab_exec(HOST, ["python3", "-c", PROBE, HOST_IF, WEB_ADDR.split("/", maxsplit=1)[0]]).stdout)


def changed_tasks(run):
    return [r.task for r in run.results if r.changed]


def converge(ansible_playbook):
    """PLAY_GUESTS in check mode (the wiring needs the guests: it has nothing to act on in check mode
    on an empty host), then both plays twice for real and once more in check mode: check predicts the
    first run's changes, the second run and the last check change nothing."""
    check = ansible_playbook(PLAY_GUESTS, check=True)
    first = ansible_playbook(PLAY_GUESTS + PLAY_WIRING)
    second = ansible_playbook(PLAY_GUESTS + PLAY_WIRING)
    again = ansible_playbook(PLAY_GUESTS + PLAY_WIRING, check=True)
    assert changed_tasks(check) == [t for t in changed_tasks(first) if t not in ("mount", "link", "service")], (
        check.describe(), first.describe())
    assert {"mount", "link", "guests", "service"} <= set(changed_tasks(first)), first.describe()
    assert changed_tasks(second) == [] and changed_tasks(again) == [], (second.describe(), again.describe())
    return first


def boot(ansible_playbook):
    """The boot script, run over ssh; (rc, its log lines)."""
    run = ansible_playbook([{"name": "boot", "ansible.builtin.command": {"argv": [SCRIPT]}, "failed_when": False,
                             "changed_when": False}])
    res = run.task("boot").result
    return res["rc"], res["stderr"].splitlines() + ["(stdout) " + line for line in res["stdout"].splitlines()]


def remove_all(ansible_playbook, lab_exec):
    ansible_playbook([{"name": "remove", CREATE: {"guests": list(NAMES), "state": "absent", "purge": True, "stop_timeout": 1,
                                                  "table_dir": TABLES}}])
    sh(lab_exec, "ip link del %s 2>/dev/null; rm -rf %s; true" % (HOST_IF, BASE))


@pytest.fixture(scope="module")
def lab_host(lab, ansible):
    from harness import lab_exec as run

    def lab_exec(host, argv, check=True):
        return run(lab, host, argv, check=check)

    remove_all(ansible.playbook, lab_exec)
    for name in ("web", "broken", "side"):
        sh(lab_exec, "mkdir -p {r}/bin {r}/www {r}/srv && cp /bin/busybox {r}/bin/busybox && echo 'page of {n}' > {r}/www/index.html"
           " && for a in sh cat tr mkdir setsid sleep; do ln -s busybox {r}/bin/$a; done".format(r=ROOTS + "/" + name, n=name))
    yield lab_exec
    remove_all(ansible.playbook, lab_exec)
    assert probe(lab_exec)["guests"] == {} and not probe(lab_exec)["foreign"]


def test_simulated_reboot_brings_back_the_autostart_guests(lab_host, ansible_playbook):
    lab_exec = lab_host
    first = converge(ansible_playbook)
    assert any("Restore program" in t for t in changed_tasks(first)), first.describe()
    assert any("Boot script" in t for t in changed_tasks(first)), first.describe()
    assert sh(lab_exec, "test -x %s && test -x %s && head -c 19 %s" % (PROGRAM, SCRIPT, PROGRAM)).stdout == "#!/usr/bin/python3 "
    # what is saved: the definitions, in the table folder
    saved = {n: json.loads(sh(lab_exec, "cat %s/%s/guest.json" % (TABLES, n)).stdout) for n in NAMES}
    assert saved["web"]["guest"]["autostart"] is True and saved["manual"]["guest"]["autostart"] is False
    assert saved["web"]["guest"]["init"] == GUESTS[0]["init"] and saved["side"]["guest"]["share"] == {"net": "web", "ipc": "web"}
    assert saved["side"]["guest"]["services"] == [dict(SERVICE, pid_dir=services.DEFAULT_PID_DIR)]
    assert [e["peer"]["addresses"] for e in saved["web"]["links"].values()] == [[WEB_ADDR]]
    assert "/srv" in sh(lab_exec, "cat %s/web/fstab" % TABLES).stdout
    before = probe(lab_exec)
    assert sorted(before["guests"]) == sorted(NAMES) and before["page"] == "page of web", before
    assert before["service_page"] == "page of side", before
    assert before["guests"]["web"]["addresses"] == [WEB_ADDR] and before["guests"]["web"]["mounts"] == ["/srv tmpfs"]

    # the reboot; broken's root is gone with it
    gone = json.loads(lab_exec(HOST, ["python3", "-c", REBOOT, HOST_IF]).stdout)
    assert before["guests"]["web"]["init_pid"] in gone["killed"] and "/run/linuxns" in gone["umounted"]
    sh(lab_exec, "rm -rf %s/broken" % ROOTS)
    down = probe(lab_exec)
    assert down["guests"] == {} and down["foreign"] == [] and down["netns"] == [] and down["host_if"].strip() in ("", "[]")
    assert down["service_page"].startswith("ERROR"), down

    rc, lines = boot(ansible_playbook)
    print("\n".join(lines))  # docs/lifecycle.md shows a run (pytest -rP)
    assert rc == 1, lines  # broken did not come back
    log = {line.split(": ")[1]: line.split(": ", 2)[2] for line in lines if line.startswith("linuxns-guests-restore: guest ")}
    assert "guest web" in log, lines
    assert log["guest web"].startswith("up (created; context id %d;" % before["guests"]["web"]["ctx"]), lines
    assert "links lbweb0" in log["guest web"] and log["guest side"].startswith("up (created;"), lines
    assert log["guest manual"] == "left down: autostart is false"
    assert log["guest broken"].startswith("FAILED: ") and "root" in log["guest broken"], lines
    assert lines[-1] == "linuxns-guests-restore: 2 up, 1 failed, 1 left down", lines
    assert [n for n in log if n in ("guest web", "guest side")] == ["guest web", "guest side"]  # web first: side shares its net

    after = probe(lab_exec)
    assert sorted(after["guests"]) == ["side", "web"], after  # manual stays down, broken failed
    for name in ("web", "side"):
        assert after["guests"][name]["ctx"] == before["guests"][name]["ctx"] and after["guests"][name]["phase"] == "ready"
    web = after["guests"]["web"]
    assert web["addresses"] == [WEB_ADDR] and web["mounts"] == ["/srv tmpfs"] and web["init"] == "/bin/busybox"
    assert web["init_pid"] != before["guests"]["web"]["init_pid"]
    assert after["guests"]["side"]["net"] == web["net"] and after["guests"]["side"]["addresses"] == [WEB_ADDR]
    assert HOST_ADDR.split("/", maxsplit=1)[0] in after["host_if"] and after["page"] == "page of web", after
    assert after["service_page"] == "page of side", after  # the init-less guest's service is back
    assert "; services httpd (started " in log["guest side"], lines

    # run again: what is up stays as it is
    rc, lines = boot(ansible_playbook)
    assert rc == 1 and "guest web: up (already up;" in "\n".join(lines), lines
    assert "guest side: up (already up;" in "\n".join(lines) and "services httpd (running " in "\n".join(lines), lines
    assert probe(lab_exec)["guests"]["web"]["init_pid"] == web["init_pid"]
    # the modules agree with what the restore made: nothing to change (for the guests it brought back)
    plays = [PLAY_GUESTS[0], {"name": "guests", CREATE: {"guests": GUESTS[:2], "table_dir": TABLES}}] + PLAY_WIRING
    agree = ansible_playbook(plays)
    assert changed_tasks(agree) == [], agree.describe()


def test_bad_definition_is_refused_and_changes_nothing(lab_host, ansible_playbook):
    lab_exec = lab_host
    sh(lab_exec, "mkdir -p %s/bad && echo '{\"version\": 99, \"guest\": {}}' > %s/bad/guest.json" % (TABLES, TABLES))
    run = ansible_playbook([{"name": "bad", CREATE: {"name": "bad", "namespaces": ["uts"], "table_dir": TABLES}}], expect_fail=True)
    msg = run.task("bad").result["msg"]
    assert "guest 'bad'" in msg and "%s/bad/guest.json has format version 99" % TABLES in msg, msg
    assert "bad" not in probe(lab_exec)["guests"]
    assert json.loads(sh(lab_exec, "cat %s/bad/guest.json" % TABLES).stdout) == {"version": 99, "guest": {}}
    rc, lines = boot(ansible_playbook)
    assert rc == 1 and any(line.startswith("linuxns-guests-restore: guest bad: FAILED: guest 'bad': its kept definition")
                           for line in lines), lines
    sh(lab_exec, "rm -rf %s/bad" % TABLES)
