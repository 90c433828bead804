"""namespace_create and namespace_info over real ssh against lab hosts.

Every state is checked from outside the guest: ``ip netns``, ``nsenter``,
``readlink /proc/PID/ns/*``, /proc/*/mountinfo and the state folder on the lab
host (tests/lab/lab.py exec).
"""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import faults, forkserver

pytestmark = pytest.mark.integration

MOD = "linuxns.guests.namespace_create"
INFO = "linuxns.guests.namespace_info"
STATE = "/run/linuxns"


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def sh(lab_exec, host, script, check=True):
    return lab_exec(host, ["sh", "-c", script], check=check)


def guest_names(lab_exec, host="lab1"):
    out = sh(lab_exec, host, "ls %s/guests 2>/dev/null || true" % STATE).stdout.split()
    return sorted(out)


def netns_names(lab_exec, host="lab1"):
    return sorted(sh(lab_exec, host, "ls /run/netns 2>/dev/null || true").stdout.split())


def pin_mounts(lab_exec, host="lab1"):
    """Mount points under the state folder and /run/netns in the lab host's table."""
    text = sh(lab_exec, host, "cat /proc/self/mountinfo").stdout
    out = []
    for line in text.splitlines():
        path = line.split(" ")[4]
        if (path.startswith((STATE + "/", "/run/netns/"))) and path != STATE:
            out.append(path)
    return sorted(out)


def snapshot(lab_exec, host="lab1"):
    return {"guests": guest_names(lab_exec, host), "netns": netns_names(lab_exec, host), "mounts": pin_mounts(lab_exec, host)}


LIVE_REAPERS = r"""
import os
n = 0
for p in os.listdir('/proc'):
    try:
        stat = open('/proc/%s/stat' % p).read()
    except OSError:
        continue
    if p.isdigit() and ('(catatonit)' in stat or '(memfd:catatonit)' in stat) and stat.rsplit(')', 1)[1].split()[0] not in ('Z', 'X'):
        n += 1
print(n)
"""


def live_reapers(lab_exec, host="lab1"):
    """Number of live (not zombie) catatonit processes on the lab host."""
    return int(lab_exec(host, ["/usr/bin/python3", "-c", LIVE_REAPERS]).stdout)


def readlink_ns(lab_exec, host, pid, nstype):
    out = lab_exec(host, ["readlink", "/proc/%d/ns/%s" % (pid, nstype)]).stdout.strip()
    return int(out[out.index("[") + 1 : -1])


def remove_all_guests(ansible):
    ansible.playbook(
        [
            {"name": "list", INFO: {}, "register": "info"},
            {"name": "remove all", MOD: {"guests": "{{ info.guests | map(attribute='name') | list }}", "state": "absent", "stop_timeout": 2},
             "when": "info.guests | length > 0"},
        ],
        hosts="lab",
    )


@pytest.fixture(scope="module")
def clean_hosts(lab, ansible):
    """Remove every guest on both lab hosts after this module (also when it fails)."""
    yield
    remove_all_guests(ansible)


@pytest.fixture
def root_dir(lab):
    """A busybox root folder visible to the lab hosts (they share the machine's files, not its /tmp)."""
    base = "/var/tmp/linuxns-it-%d" % os.getpid()
    root = os.path.join(base, "root")
    os.makedirs(os.path.join(root, "bin"), exist_ok=True)
    for d in ("etc", "proc", "dev", "tmp"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy2("/bin/busybox", os.path.join(root, "bin", "busybox"))
    for applet in ("sh", "ls", "cat", "hostname", "sleep", "ps"):
        link = os.path.join(root, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    yield root
    shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# create / idempotence / check mode / removal
# ------------------------------------------------------------------------------------------
def test_create_then_remove_default_guest(clean_hosts, converge, lab_exec):
    before = snapshot(lab_exec)
    conv = converge({MOD: {"name": "it-web1"}}, diff=True)
    guest = conv.first["guest"]
    assert conv.first.changed and conv.check.changed
    assert conv.first["action"] == "create" and conv.second["action"] == "none"
    assert conv.check["diff"]["before"] in ({}, None) and conv.check["diff"]["after"]["name"] == "it-web1"
    assert sorted(guest["namespaces"]) == ["ipc", "mnt", "net", "pid", "uts"]
    pid = guest["init_pid"]
    # The kernel's view, from outside: the init's namespaces are the pinned ones.
    for t, ns in guest["namespaces"].items():
        assert readlink_ns(lab_exec, "lab1", pid, t) == ns["inode"]
        assert ns["pin"] == "%s/guests/it-web1/ns/%s" % (STATE, t)
    host_net = readlink_ns(lab_exec, "lab1", 1, "net")
    assert guest["namespaces"]["net"]["inode"] != host_net
    assert lab_exec("lab1", ["cat", "/proc/%d/comm" % pid]).stdout.strip() == "memfd:catatonit"  # its sealed copy
    # /run/netns alias, loopback up, hostname, PID 1 inside.
    assert "it-web1" in netns_names(lab_exec)
    links = json.loads(lab_exec("lab1", ["ip", "-n", "it-web1", "-j", "link", "show", "lo"]).stdout)
    assert "UP" in links[0]["flags"]
    assert lab_exec("lab1", ["nsenter", "--uts=%s/guests/it-web1/ns/uts" % STATE, "hostname"]).stdout.strip() == "it-web1"
    enter_pid1 = "nsenter --mount=%s/guests/it-web1/ns/mnt --pid=%s/guests/it-web1/ns/pid sh -c 'cat /proc/1/comm'" % (STATE, STATE)
    assert sh(lab_exec, "lab1", enter_pid1).stdout.strip() == "memfd:catatonit"
    # The guest's copy of the host's mount table holds no pins of other guests.
    guest_mounts = lab_exec("lab1", ["cat", "/proc/%d/mountinfo" % pid]).stdout
    points = [line.split()[4] for line in guest_mounts.splitlines()]  # not a substring: /run/linuxns-smoke is another folder
    assert not [p for p in points if p in (STATE, "/run/netns") or p.startswith((STATE + "/", "/run/netns/"))], points

    rm = converge({MOD: {"name": "it-web1", "state": "absent"}}, diff=True)
    assert rm.first["action"] == "remove"
    assert rm.check["diff"]["after"] in ({}, None)
    assert snapshot(lab_exec) == before
    assert lab_exec("lab1", ["kill", "-0", str(pid)], check=False).returncode != 0


def test_info_reports_guests_and_relations(clean_hosts, ansible_playbook, ansible_adhoc, lab_exec):
    ansible_playbook([{MOD: {"name": "it-info", "context_id": 4242, "namespaces": ["mnt", "uts", "net", "pid", "ipc", "user"]}}])
    run = ansible_adhoc("lab1", INFO, {"name": "4242", "mounts": True, "links": True}, check=True)
    res = run.last
    assert not res.changed and res["exists"] is True
    (g,) = res["guests"]
    assert g["name"] == "it-info" and g["context_id"] == 4242 and g["healthy"] and g["problems"] == []
    assert [link["ifname"] for link in g["links"]] == ["lo"]
    assert any(m["path"] == "/proc" and m["fstype"] == "proc" for m in g["mounts"])
    user_ino = g["namespaces"]["user"]["inode"]
    # every other namespace of the guest is owned by its own user namespace (NS_GET_USERNS)
    for t in ("mnt", "uts", "net", "pid", "ipc"):
        assert g["namespaces"][t]["owner_user_ns"] == user_ino
    assert g["namespaces"]["pid"]["parent"] == readlink_ns(lab_exec, "lab1", 1, "pid")
    assert res["host"]["limits"]["net"]["limit"] > 0 and res["host"]["limits"]["user"]["used_by_guests"] >= 1
    missing = ansible_adhoc("lab1", INFO, {"name": "it-nonexistent"}).last
    assert missing["exists"] is False and missing["guests"] == [] and missing["missing"] == ["it-nonexistent"]
    ansible_playbook([{MOD: {"name": "4242", "state": "absent"}}])
    assert "it-info" not in guest_names(lab_exec)


def test_hostname_changes_in_place(clean_hosts, converge, ansible_playbook, lab_exec):
    first = ansible_playbook([{MOD: {"name": "it-host"}}]).last
    conv = converge({MOD: {"name": "it-host", "hostname": "renamed"}}, diff=True)
    assert conv.first["action"] == "update"
    assert conv.first["guest"]["init_pid"] == first["guest"]["init_pid"]
    assert conv.check["diff"]["before"]["hostname"] == "it-host" and conv.check["diff"]["after"]["hostname"] == "renamed"
    uts = "%s/guests/it-host/ns/uts" % STATE
    assert lab_exec("lab1", ["nsenter", "--uts=" + uts, "hostname"]).stdout.strip() == "renamed"


def test_difference_needs_recreate(clean_hosts, ansible_playbook, converge, lab_exec):
    old = ansible_playbook([{MOD: {"name": "it-rec"}}]).last["guest"]
    run = ansible_playbook([{MOD: {"name": "it-rec", "namespaces": ["mnt", "net"]}}], expect_fail=True)
    res = run.last
    assert res.failed and "recreate" in res["msg"] and "namespaces" in res["msg"] and "Traceback" not in res["msg"]
    assert lab_exec("lab1", ["kill", "-0", str(old["init_pid"])], check=False).returncode == 0
    conv = converge({MOD: {"name": "it-rec", "namespaces": ["mnt", "net"], "recreate": True}})
    new = conv.first["guest"]
    assert conv.first["action"] == "recreate"
    assert sorted(new["namespaces"]) == ["mnt", "net"] and new["context_id"] == old["context_id"]
    assert new["namespaces"]["net"]["inode"] != old["namespaces"]["net"]["inode"]
    assert lab_exec("lab1", ["kill", "-0", str(old["init_pid"])], check=False).returncode != 0
    assert new["init_pid"] is None  # no pid namespace: no process at all
    assert readlink_ns(lab_exec, "lab1", 1, "uts") == int(
        lab_exec("lab1", ["stat", "-L", "-c", "%i", "/proc/1/ns/uts"]).stdout
    )


def test_list_form_many_guests_and_paramiko(clean_hosts, converge, lab_exec):
    # As many as make the module start its fork server (forkserver.MIN_GUESTS): the path of a big
    # batch, from the AnsiballZ payload, through paramiko.
    many = forkserver.MIN_GUESTS
    names = ["it-many%02d" % i for i in range(many)]
    conv = converge({MOD: {"guests": [{"name": n} for n in names[:10]] + names[10:], "namespaces": ["net", "uts", "mnt"]}}, connection="paramiko")
    assert [g["name"] for g in conv.first["guests"]] == names
    assert all(g["changed"] for g in conv.first["guests"]) and not any(g["changed"] for g in conv.second["guests"])
    ctxs = [g["guest"]["context_id"] for g in conv.first["guests"]]
    assert len(set(ctxs)) == many
    assert set(names) <= set(netns_names(lab_exec))
    nets = {sh(lab_exec, "lab1", "stat -L -c %%i /run/netns/%s" % n).stdout.strip() for n in names}
    assert len(nets) == many
    # each guest's namespaces held by its pins alone (no init), none of them the host's
    host_net = sh(lab_exec, "lab1", "stat -L -c %i /proc/self/ns/net").stdout.strip()
    assert host_net not in nets
    # the server ended with its task: no process of the sealed clone is left on the host
    left = sh(lab_exec, "lab1", "for p in /proc/[0-9]*; do readlink $p/exe; done 2>/dev/null | grep -c memfd:linuxns:python || true")
    assert left.stdout.strip() == "0", left.stdout
    rm = converge({MOD: {"guests": names, "state": "absent"}})
    assert all(g["action"] == "remove" for g in rm.first["guests"])
    assert not set(names) & set(netns_names(lab_exec)) and not set(names) & set(guest_names(lab_exec))


NSPID_AND_FDS = r"""
import json, os, sys
out = {}
for pid in sys.argv[1:]:
    with open("/proc/%s/status" % pid) as f:
        nspid = [int(v) for line in f if line.startswith("NSpid:") for v in line.split()[1:]]
    fds = [os.readlink("/proc/%s/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%s/fd" % pid)]
    out[pid] = {"nspid": nspid, "fds": fds, "pidns": os.stat("/proc/%s/ns/pid" % pid).st_ino, "comm": open("/proc/%s/comm" % pid).read().strip()}
print(json.dumps(out))
"""


def test_a_big_list_of_default_guests_is_made_together_each_init_pid_1_of_its_own(clean_hosts, converge, lab_exec):
    # As many as make the module start its fork server (forkserver.MIN_GUESTS) and make its new
    # guests together, with the default namespaces: each guest's init is forked by the server
    # straight into the guest's new PID namespace (one fork a guest), through the AnsiballZ
    # payload over ssh.
    many = forkserver.MIN_GUESTS + 4
    names = ["it-tog%02d" % i for i in range(many)]
    conv = converge({MOD: {"guests": names}})
    assert [g["name"] for g in conv.first["guests"]] == names and all(g["action"] == "create" for g in conv.first["guests"])
    assert [g["name"] for g in conv.check["guests"]] == names and not any(g["changed"] for g in conv.second["guests"])
    ctxs = [g["guest"]["context_id"] for g in conv.first["guests"]]
    assert ctxs == sorted(ctxs) and len(set(ctxs)) == many  # in the task's order, as one at a time
    inits = [g["guest"]["init_pid"] for g in conv.first["guests"]]
    seen = json.loads(lab_exec("lab1", ["/usr/bin/python3", "-c", NSPID_AND_FDS] + [str(p) for p in inits]).stdout)
    host_pidns = int(sh(lab_exec, "lab1", "stat -L -c %i /proc/self/ns/pid").stdout)
    for g, pid in zip(conv.first["guests"], inits):
        view = seen[str(pid)]
        assert view["nspid"][1:] == [1] and view["comm"] == "memfd:catatonit", view  # PID 1 right below the host's
        assert view["pidns"] == g["guest"]["namespaces"]["pid"]["inode"] != host_pidns
        assert not [fd for fd in view["fds"] if fd.startswith(("socket:", "pipe:"))], view  # no fd of the server's or the module's
    assert len({v["pidns"] for v in seen.values()}) == many
    assert set(names) <= set(netns_names(lab_exec)) and set(names) <= set(guest_names(lab_exec))
    left = sh(lab_exec, "lab1", "for p in /proc/[0-9]*; do readlink $p/exe; done 2>/dev/null | grep -c memfd:linuxns:python || true")
    assert left.stdout.strip() == "0", left.stdout  # the server ended with its task
    rm = converge({MOD: {"guests": names, "state": "absent"}})
    assert all(g["action"] == "remove" for g in rm.first["guests"])
    assert not set(names) & set(netns_names(lab_exec)) and not set(names) & set(guest_names(lab_exec))
    assert all(lab_exec("lab1", ["kill", "-0", str(pid)], check=False).returncode != 0 for pid in inits)


def test_return_unchanged_false_returns_what_changed_and_still_checks_every_guest(clean_hosts, ansible_playbook, converge, lab_exec):
    names = ["it-brief%d" % i for i in range(3)]
    try:
        ansible_playbook([{MOD: {"name": names[0]}}])
        conv = converge({MOD: {"guests": names, "return_unchanged": False}}, diff=True)
        for run in (conv.check, conv.first):  # the guest that was there already is left out, and counted
            assert [g["name"] for g in run["guests"]] == names[1:] and run["unchanged"] == 1
            assert [g["action"] for g in run["guests"]] == ["create", "create"]
            assert sorted(run["diff"]["after"]) == names[1:] and all(run["diff"]["after"][n]["name"] == n for n in names[1:])
        assert conv.second["guests"] == [] and conv.second["unchanged"] == 3
        assert conv.second["diff"] == {"before": {}, "after": {}}
        assert set(names) <= set(netns_names(lab_exec)) and set(names) <= set(guest_names(lab_exec))
        inits = {g["name"]: g["guest"]["init_pid"] for g in conv.first["guests"]}
        assert all(lab_exec("lab1", ["kill", "-0", str(pid)], check=False).returncode == 0 for pid in inits.values())

        # a guest broken behind the module's back is still found: the brief result names it alone
        lab_exec("lab1", ["kill", "-9", str(inits[names[2]])])
        conv = converge({MOD: {"guests": names, "return_unchanged": False}})
        assert [(g["name"], g["action"]) for g in conv.first["guests"]] == [(names[2], "recreate")] and conv.first["unchanged"] == 2
        assert [g["name"] for g in conv.check["guests"]] == [names[2]] and conv.second["unchanged"] == 3
        new_init = conv.first["guests"][0]["guest"]["init_pid"]
        assert new_init != inits[names[2]] and lab_exec("lab1", ["kill", "-0", str(new_init)], check=False).returncode == 0
    finally:
        ansible_playbook([{MOD: {"guests": names, "state": "absent", "return_unchanged": False}}])
    assert not set(names) & set(netns_names(lab_exec)) and not set(names) & set(guest_names(lab_exec))


def test_root_share_and_init_based_guest(clean_hosts, converge, ansible_playbook, lab_exec, root_dir):
    conv = converge({MOD: {"name": "it-root", "root": root_dir, "hostname": "rooted"}})
    g = conv.first["guest"]
    pid = g["init_pid"]
    ls_root = lab_exec("lab1", ["nsenter", "-t", str(pid), "-m", "-p", "-r", "-w", "/bin/ls", "/"]).stdout.split()
    assert "bin" in ls_root and "var" not in ls_root
    dev = lab_exec("lab1", ["nsenter", "-t", str(pid), "-m", "-r", "/bin/ls", "/dev"]).stdout.split()
    assert {"null", "zero", "urandom", "pts", "ptmx"} <= set(dev)
    ps = lab_exec("lab1", ["nsenter", "-t", str(pid), "-m", "-p", "-r", "-w", "/bin/cat", "/proc/1/comm"]).stdout.strip()
    assert ps == "memfd:catatonit"
    # The old root is detached: the guest's table has no host paths.
    table = lab_exec("lab1", ["cat", "/proc/%d/mountinfo" % pid]).stdout
    assert " /run " not in table and "/work" not in table

    # A guest joining it-root's network namespace (vserver composition).
    side = converge({MOD: {"name": "it-side", "namespaces": ["mnt", "uts", "pid"], "share": {"net": "it-root"}}}).first["guest"]
    assert side["namespaces"]["net"]["inode"] == g["namespaces"]["net"]["inode"]
    assert side["namespaces"]["net"]["shared_from"] == "it-root"
    assert readlink_ns(lab_exec, "lab1", side["init_pid"], "net") == g["namespaces"]["net"]["inode"]

    # Init-based guest: its own PID 1 from inside the root, stopped with its stop signal.
    init = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    box = converge({MOD: {"name": "it-box", "root": root_dir, "init": init, "stop_timeout": 5}}).first["guest"]
    assert lab_exec("lab1", ["cat", "/proc/%d/comm" % box["init_pid"]]).stdout.strip() == "sh"
    assert lab_exec("lab1", ["nsenter", "-t", str(box["init_pid"]), "-m", "-p", "-r", "-w", "/bin/cat", "/proc/1/cmdline"]).stdout.startswith("/bin/sh")
    ansible_playbook([{MOD: {"guests": ["it-box", "it-side", "it-root"], "state": "absent"}}])
    for p in (pid, box["init_pid"], side["init_pid"]):
        assert lab_exec("lab1", ["kill", "-0", str(p)], check=False).returncode != 0
    assert not {"it-box", "it-side", "it-root"} & set(guest_names(lab_exec))


def test_stale_guest_is_reported_and_recreated(clean_hosts, ansible_playbook, ansible_adhoc, lab_exec):
    g = ansible_playbook([{MOD: {"name": "it-stale"}}]).last["guest"]
    lab_exec("lab1", ["kill", "-9", str(g["init_pid"])])
    info = ansible_adhoc("lab1", INFO, {"name": "it-stale"}).last["guests"][0]
    assert info["healthy"] is False and any("init" in p for p in info["problems"])
    res = ansible_playbook([{MOD: {"name": "it-stale"}}]).last
    assert res.changed and res["action"] == "recreate" and res["guest"]["init_pid"] != g["init_pid"]
    assert res["guest"]["context_id"] == g["context_id"]
    assert ansible_adhoc("lab1", INFO, {"name": "it-stale"}).last["guests"][0]["healthy"] is True


def test_state_wiped_like_a_reboot(clean_hosts, ansible, ansible_playbook, ansible_adhoc, converge, lab_exec):
    # The wipe forgets every guest of the host: start with none but ours, so no
    # other test's guest (its init, its /run/netns name) outlives the registry.
    remove_all_guests(ansible)
    g = ansible_playbook([{MOD: {"name": "it-boot"}}]).last["guest"]
    # a persistent mount whose table is not in the default folder (kept on "disk":
    # only /run/linuxns and the netns name are wiped below)
    tables = "/run/lnsc-it-tables"
    mount = {"linuxns.guests.namespace_mount": {"guest": "it-boot", "path": "/srv", "fstype": "tmpfs", "opts": "size=3m",
                                                "table_dir": tables}}
    try:
        ansible_playbook([mount])
        # What a reboot does: every process gone, /run empty.
        lab_exec("lab1", ["kill", "-9", str(g["init_pid"])])
        sh(lab_exec, "lab1", "umount -l /run/netns/it-boot; rm -f /run/netns/it-boot; umount -l %s; rm -rf %s" % (STATE, STATE))
        res = ansible_adhoc("lab1", INFO, {"name": "it-boot"}).last
        assert res["exists"] is False and res["guests"] == []
        # the table's folder was only remembered under /run: table_dir names it again
        c = converge({MOD: {"name": "it-boot", "table_dir": tables}})
        assert c.first["action"] == "create" and c.second["action"] == "none"
        assert "it-boot" in netns_names(lab_exec)
        init = c.first["guest"]["init_pid"]
        rows = [ln.split() for ln in sh(lab_exec, "lab1", "cat /proc/%d/mountinfo" % init).stdout.splitlines()]
        srv = [r for r in rows if r[4] == "/srv"]
        assert srv and srv[-1][-3] == "tmpfs" and "size=3072k" in srv[-1][-1], srv
        bad = ansible_playbook([{MOD: {"name": "it-boot", "table_dir": "relative/tables"}}], expect_fail=True).last
        assert "table_dir 'relative/tables' must be an absolute path" in bad["msg"]
    finally:
        sh(lab_exec, "lab1", "rm -rf %s" % tables, check=False)


KSTATE, KTABLES = "/run/lnsc-it-kept-state", "/run/lnsc-it-kept-tables"


def _wipe_like_a_reboot(lab_exec, names, state=KSTATE):
    """What a reboot does to one state folder: every guest's process gone, the folder and the
    /run/netns names empty (the table folder stays)."""
    for name in names:
        meta = sh(lab_exec, "lab1", "cat %s/guests/%s/meta.json 2>/dev/null || true" % (state, name)).stdout
        if meta.strip():
            pid = json.loads(meta).get("init_pid")
            if pid:
                lab_exec("lab1", ["kill", "-9", str(pid)], check=False)
        sh(lab_exec, "lab1", "umount -l /run/netns/%s 2>/dev/null; rm -f /run/netns/%s" % (name, name), check=False)
    sh(lab_exec, "lab1", "umount -l %s 2>/dev/null; rm -rf %s" % (state, state), check=False)


def _kept(lab_exec, name):
    return sh(lab_exec, "lab1", "cat %s/%s/context_id 2>/dev/null || true" % (KTABLES, name)).stdout.strip()


def _ctx_owner(lab_exec, ctx):
    return sh(lab_exec, "lab1", "readlink %s/ctx/%d || true" % (KSTATE, ctx)).stdout.strip()


def test_direct_calls_get_the_kept_context_id_back_after_a_reboot(clean_hosts, ansible_playbook, converge, lab_exec):
    names = ["it-k0", "it-k1", "it-k2", "it-k3"]
    common = {"state_dir": KSTATE, "table_dir": KTABLES, "namespaces": ["uts", "net", "pid"]}
    try:
        k0 = ansible_playbook([{MOD: dict(common, name="it-k0")}]).last["guest"]
        c = converge({MOD: dict(common, name="it-k1")})
        assert (k0["context_id"], c.first["guest"]["context_id"]) == (2, 3)
        assert (_kept(lab_exec, "it-k0"), _kept(lab_exec, "it-k1")) == ("2", "3")
        assert c.check["guest"]["context_id"] is None and c.second["action"] == "none"
        _wipe_like_a_reboot(lab_exec, ["it-k0", "it-k1"])
        # a guest made first after the reboot takes no kept id (2 and 3 are kept by it-k0, it-k1)
        k2 = converge({MOD: dict(common, name="it-k2")})
        assert k2.first["guest"]["context_id"] == 4 and _ctx_owner(lab_exec, 4) == "it-k2" and _kept(lab_exec, "it-k2") == "4"
        # an explicit id another guest keeps fails, names context_id and that guest, changes nothing
        res = ansible_playbook([{MOD: dict(common, name="it-k3", context_id=3)}], expect_fail=True).last
        assert "context_id 3 is kept for guest 'it-k1'" in res["msg"] and "purge=true" in res["msg"], res["msg"]
        assert _ctx_owner(lab_exec, 3) == "" and _kept(lab_exec, "it-k3") == ""
        assert sh(lab_exec, "lab1", "ls %s/guests" % KSTATE).stdout.split() == ["it-k2"]
        # the kept guests come back with their ids, in any order, listed or not
        back = converge({MOD: dict(common, guests=["it-k1", "it-k0"])})
        assert [g["action"] for g in back.first["guests"]] == ["create", "create"]
        assert [g["guest"]["context_id"] for g in back.first["guests"]] == [3, 2]
        assert (_ctx_owner(lab_exec, 2), _ctx_owner(lab_exec, 3)) == ("it-k0", "it-k1")
        assert "it-k1" in netns_names(lab_exec)
    finally:
        ansible_playbook([{MOD: {"guests": names, "state": "absent", "state_dir": KSTATE, "stop_timeout": 2}}])
        _wipe_like_a_reboot(lab_exec, names)
        sh(lab_exec, "lab1", "rm -rf %s" % KTABLES, check=False)


def test_absent_with_purge_forgets_the_kept_files(clean_hosts, ansible_playbook, converge, lab_exec):
    names = ["it-p1", "it-p2", "it-p3", "it-p9"]
    common = {"state_dir": KSTATE, "table_dir": KTABLES}
    try:
        ansible_playbook([{MOD: dict(common, guests=["it-p1", "it-p2", "it-p3"], namespaces=["uts", "mnt"])}])
        ansible_playbook([{"linuxns.guests.namespace_mount": {"guest": "it-p1", "path": "/srv", "fstype": "tmpfs", "opts": "size=1m",
                                                              "table_dir": KTABLES, "state_dir": KSTATE}}])
        folder = KTABLES + "/it-p1"
        # without purge the kept files stay
        converge({MOD: dict(common, name="it-p3", state="absent")})
        assert _kept(lab_exec, "it-p3") != ""
        # single form: check mode predicts (and --diff shows) what the first run removes; then nothing
        c = converge({MOD: dict(common, name="it-p1", state="absent", purge=True)}, diff=True)
        want = [folder + "/fstab", folder + "/context_id", folder + "/guest.json", folder]
        assert c.check["purged"] == want and c.first["purged"] == want and c.second["purged"] == []
        assert c.check["action"] == c.first["action"] == "remove" and c.second["action"] == "none"
        assert c.check["diff"]["before"]["kept_files"] == want and c.check["diff"]["after"] == {}
        assert sh(lab_exec, "lab1", "ls -d %s %s/guests/it-p1 2>&1 || true" % (folder, KSTATE)).stdout.count("No such file") == 2
        assert "it-p1" not in sh(lab_exec, "lab1", "ls -l %s/ctx" % KSTATE).stdout
        # list form, with a guest that no longer exists but kept its files (action purge) and one that never existed
        sh(lab_exec, "lab1", "mkdir -p %s/it-p9 && echo 99 > %s/it-p9/context_id" % (KTABLES, KTABLES))
        lst = converge({MOD: dict(common, guests=["it-p2", "it-p3", "it-p9", "it-never"], state="absent", purge=True)})
        acts = {g["name"]: (g["action"], g["purged"]) for g in lst.first["guests"]}
        # it-p2 and it-p3 were made by namespace_create, which keeps their definition (guest.json); it-p9 only has a context id
        kept = {n: [KTABLES + "/%s/context_id" % n, KTABLES + "/%s/guest.json" % n, KTABLES + "/" + n] for n in ("it-p2", "it-p3")}
        kept["it-p9"] = [KTABLES + "/it-p9/context_id", KTABLES + "/it-p9"]
        assert acts == {"it-p2": ("remove", kept["it-p2"]), "it-p3": ("purge", kept["it-p3"]), "it-p9": ("purge", kept["it-p9"]),
                        "it-never": ("none", [])}
        assert {g["name"]: g["action"] for g in lst.check["guests"]} == {n: a for n, (a, _p) in acts.items()}
        assert all(g["action"] == "none" for g in lst.second["guests"])
        assert sh(lab_exec, "lab1", "ls -A %s" % KTABLES).stdout.split() == []
        assert sh(lab_exec, "lab1", "ls -A %s/guests %s/ctx" % (KSTATE, KSTATE)).stdout.split() == [KSTATE + "/ctx:", KSTATE + "/guests:"]
    finally:
        ansible_playbook([{MOD: {"guests": names, "state": "absent", "state_dir": KSTATE, "stop_timeout": 2}}])
        _wipe_like_a_reboot(lab_exec, names)
        sh(lab_exec, "lab1", "rm -rf %s" % KTABLES, check=False)


# ------------------------------------------------------------------------------------------
# bad input: a clear message, nothing created
# ------------------------------------------------------------------------------------------
BAD = [
    ({"name": "a/b"}, "not a valid guest name"),
    ({"name": ".."}, "not a valid guest name"),
    ({"name": "has space"}, "not a valid guest name"),
    ({"name": ""}, "non-empty"),
    ({"name": "x" * 64}, "at most 63"),
    ({"name": "31337"}, "no guest has context id 31337"),
    ({"name": "it-bad", "namespaces": ["mnt", "bogus"]}, "namespaces"),
    ({"name": "it-bad", "context_id": 0}, "context_id 0 is reserved"),
    ({"name": "it-bad", "context_id": 1}, "context_id 1 is reserved"),
    ({"name": "it-bad", "context_id": 70000}, "context_id 70000 is out of range"),
    ({"name": "it-bad", "root": "relative/path"}, "must be an absolute path"),
    ({"name": "it-bad", "root": "/nonexistent/linuxns"}, "does not exist"),
    ({"name": "it-bad", "share": {"net": "it-missing"}}, "share.net: guest 'it-missing' does not exist"),
    ({"name": "it-bad", "share": {"net": "/etc/hostname"}}, "/etc/hostname is not a namespace file"),
    ({"name": "it-bad", "share": {"net": "/proc/self/ns/uts"}}, "not a net namespace"),
    ({"name": "it-bad", "hostname": "h", "namespaces": ["net"]}, "hostname needs a private uts"),
    ({"guests": [{"name": "it-dup"}, {"name": "it-dup"}]}, "listed twice"),
    ({"guests": [{"name": "it-ok"}, {"name": "bad/one"}]}, "guests[1].name"),
    ({"guests": [{"name": "it-ok", "colour": "red"}]}, "unknown option"),
    ({"name": "it-bad", "table_dir": ""}, "table_dir must not be empty"),
    ({"name": "it-bad", "table_dir": "/run/a\nb"}, "table_dir '/run/a\\nb' must not contain control characters"),
    ({"name": "it-bad", "purge": True}, "purge=true goes with state=absent only"),
    ({"guests": [{"name": "it-ok"}, {"name": "it-bad", "purge": True}]}, "guests[1].purge=true goes with state=absent only"),
]


@pytest.mark.parametrize("args,msg", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_fails_cleanly(clean_hosts, ansible_playbook, lab_exec, args, msg):
    before = snapshot(lab_exec)
    res = ansible_playbook([{MOD: args}], expect_fail=True).last
    assert res.failed
    assert msg in res["msg"], res["msg"]
    assert "Traceback" not in res["msg"] and "Traceback" not in str(res.get("exception", ""))
    assert snapshot(lab_exec) == before


def test_taken_context_id_and_dead_pid_owner(clean_hosts, ansible_playbook, lab_exec):
    owner = ansible_playbook([{MOD: {"name": "it-owner", "context_id": 777}}]).last["guest"]
    before = snapshot(lab_exec)
    res = ansible_playbook([{MOD: {"name": "it-other", "context_id": 777}}], expect_fail=True).last
    assert "context_id 777 is already taken by guest 'it-owner'" in res["msg"]
    assert snapshot(lab_exec) == before
    lab_exec("lab1", ["kill", "-9", str(owner["init_pid"])])
    res = ansible_playbook([{MOD: {"name": "it-pidshare", "namespaces": ["mnt"], "share": {"pid": "it-owner"}}}], expect_fail=True).last
    assert "share.pid: guest 'it-owner' is not running" in res["msg"]
    assert snapshot(lab_exec) == before
    ansible_playbook([{MOD: {"name": "777", "state": "absent"}}])


# ------------------------------------------------------------------------------------------
# faults: killed between steps, concurrent runs
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("step", list(faults.Step), ids=lambda s: s.value)
def test_killed_between_steps_converges(clean_hosts, ansible_playbook, lab_exec, step):
    before = snapshot(lab_exec)
    reapers_before = live_reapers(lab_exec)
    killed = ansible_playbook([{MOD: {"name": "it-crash"}, "environment": {faults.ENV: step.value}}], expect_fail=True).last
    assert killed.failed
    again = ansible_playbook([{MOD: {"name": "it-crash"}}]).last
    assert again["guest"]["name"] == "it-crash"
    if step is faults.Step.READY:
        assert not again.changed  # it was complete when the run died
    else:
        assert again.changed and again["action"] == "create", again.result
    assert ansible_playbook([{MOD: {"name": "it-crash"}}]).last.changed is False
    ansible_playbook([{MOD: {"name": "it-crash", "state": "absent"}}])
    assert snapshot(lab_exec) == before
    # no process left in a namespace of the crashed run: every catatonit is a live guest's or the lab's
    # (zombies are not counted: the lab's PID 1 reaps them asynchronously; other
    # tests' guests may live on the host, so compare with the count before)
    assert live_reapers(lab_exec) == reapers_before


def test_two_runs_at_once_make_one_guest(clean_hosts, ansible, lab_exec):
    results = []

    def run():
        results.append(ansible.playbook([{MOD: {"name": "it-race"}}]).last)

    threads = [threading.Thread(target=run) for _run in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.changed for r in results) == [False, True]
    assert results[0]["guest"]["namespaces"]["net"]["inode"] == results[1]["guest"]["namespaces"]["net"]["inode"]
    assert guest_names(lab_exec).count("it-race") == 1
    assert pin_mounts(lab_exec).count("%s/guests/it-race/ns/net" % STATE) == 1
    ansible.playbook([{MOD: {"name": "it-race", "state": "absent"}}])
