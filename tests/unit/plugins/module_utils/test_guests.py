"""The guest engine run directly as root (no Ansible): kernel state checked via /proc."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import (
    enter,
    faults,
    guest_create,
    guest_info,
    guest_spec,
    guest_stop,
    guests,
    list_forms,
    model,
    procfs,
)
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestConflict, InvalidInput, KernelError, LimitReached

pytestmark = pytest.mark.unit


def ensure(r, check=False, **params):
    return guests.ensure_guests(r, [params], check)


def one(r, **params):
    out = ensure(r, **params)
    return out["results"][0]


def ns_ino(pid, t):
    return os.stat("/proc/%d/ns/%s" % (pid, t)).st_ino


def alive(pid):
    return procfs.process_alive(pid, None)


def test_create_check_idempotent_remove(unit_registry):
    r = unit_registry
    predicted = guests.ensure_guests(r, [{"name": "g1"}], check_mode=True)
    assert predicted["changed"] and not os.path.exists(r.guest_dir("g1"))
    res = one(r, name="g1")
    assert res["changed"] and res["action"] == "create"
    g = res["guest"]
    pid = g["init_pid"]
    assert open("/proc/%d/comm" % pid).read().strip() in ("memfd:catatonit", "python3")  # the sealed copy (docs/security.md)
    for t in ("mnt", "uts", "ipc", "net", "pid"):
        assert g["namespaces"][t]["inode"] == ns_ino(pid, t) != os.stat("/proc/self/ns/%s" % t).st_ino
        assert os.stat(g["namespaces"][t]["pin"]).st_ino == g["namespaces"][t]["inode"]
    assert os.stat(os.path.join(r.netns_dir, "g1")).st_ino == g["namespaces"]["net"]["inode"]
    again = one(r, name="g1")
    assert not again["changed"] and again["guest"]["init_pid"] == pid
    assert not guests.ensure_guests(r, [{"name": "g1"}], check_mode=True)["changed"]
    rm = one(r, name="g1", state="absent")
    assert rm["action"] == "remove"
    time.sleep(0.05)
    assert not alive(pid)
    assert not os.path.exists(r.guest_dir("g1")) and not os.path.exists(os.path.join(r.netns_dir, "g1"))
    assert r.used_context_ids() == set()
    assert not one(r, name="g1", state="absent")["changed"]


def test_loopback_up_and_hostname(unit_registry):
    g = one(unit_registry, name="net1", hostname="h-one")["guest"]
    meta = unit_registry.load("net1")
    assert enter.call_in_guest(meta, ["uts"], lambda: os.uname().nodename) == "h-one"
    out = subprocess.run(["ip", "-j", "link", "show", "lo"], capture_output=True, text=True, check=True,
                         preexec_fn=lambda: sc.setns(os.open(g["namespaces"]["net"]["pin"], os.O_RDONLY), "net"))
    assert "UP" in out.stdout


def test_guest_without_pid_namespace_has_no_process(unit_registry):
    g = one(unit_registry, name="bare", namespaces=["net", "uts"])["guest"]
    assert g["init_pid"] is None
    assert reg.health(unit_registry.load("bare")) == []


def test_rooted_guest_sees_only_its_root(unit_registry, busybox_root):
    g = one(unit_registry, name="rooted", root=busybox_root)["guest"]
    meta = unit_registry.load("rooted")
    listing = enter.call_in_guest(meta, ["mnt"], lambda: sorted(os.listdir("/")))
    assert listing == sorted(os.listdir(busybox_root))
    devs = enter.call_in_guest(meta, ["mnt"], lambda: sorted(os.listdir("/dev")))
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd"} <= set(devs)
    from ansible_collections.linuxns.guests.plugins.module_utils.mountinfo import parse_mountinfo

    table = parse_mountinfo(open("/proc/%d/mountinfo" % g["init_pid"]).read())
    paths = [m["path"] for m in table]
    assert paths[0] == "/" and "/proc" in paths and "/dev/pts" in paths
    assert not [p for p in paths if p.startswith(("/work", "/run", "/tmp"))]
    # /sys is the guest's own sysfs (its own net namespace), read-only, no host mount below it
    sys_mounts = [m for m in table if m["path"] == "/sys" or m["path"].startswith("/sys/")]
    assert sys_mounts[0]["path"] == "/sys" and sys_mounts[0]["mount_opts"].startswith("ro,"), sys_mounts
    assert {m["path"] for m in sys_mounts} <= {"/sys", "/sys/firmware", "/sys/devices/virtual/powercap"}, sys_mounts


def test_user_and_time_namespaces(unit_registry):
    one(unit_registry, name="ut", namespaces=["user", "mnt", "pid", "time", "uts"], uid_map=["0 100000 65536"], gid_map=["0 100000 65536"],
        time_offsets={"monotonic": 86400, "boottime": 86400})
    meta = unit_registry.load("ut")
    pid = meta.init_pid
    assert open("/proc/%d/uid_map" % pid).read().split() == ["0", "100000", "65536"]
    offsets = open("/proc/%d/timens_offsets" % pid).read().split()
    assert offsets[offsets.index("monotonic") + 1] == "86400"
    owner = guest_info.ns_relations(meta.pins["uts"].path)["owner_user_ns"]
    assert owner == meta.pins["user"].ino


def test_share_joins_other_guests_namespace(unit_registry):
    a = one(unit_registry, name="a")["guest"]
    b = one(unit_registry, name="b", namespaces=["mnt", "pid"], share={"net": "a", "uts": str(a["context_id"])})["guest"]
    assert b["namespaces"]["net"]["inode"] == a["namespaces"]["net"]["inode"] == ns_ino(b["init_pid"], "net")
    assert b["namespaces"]["uts"]["inode"] == a["namespaces"]["uts"]["inode"]
    assert b["private_namespaces"] == ["pid", "mnt"]
    # The share survives removal of the source guest (b still pins it).
    one(unit_registry, name="a", state="absent")
    assert reg.health(unit_registry.load("b")) == []


def test_conflict_names_recreate_and_changes_nothing(unit_registry):
    g = one(unit_registry, name="c")["guest"]
    with pytest.raises(GuestConflict) as exc:
        ensure(unit_registry, name="c", namespaces=["net"])
    assert "recreate=true" in exc.value.msg and "namespaces" in exc.value.msg
    assert alive(g["init_pid"])
    res = one(unit_registry, name="c", namespaces=["net"], recreate=True)
    assert res["action"] == "recreate" and res["guest"]["context_id"] == g["context_id"]
    time.sleep(0.05)
    assert not alive(g["init_pid"])


def test_stale_guest_recreated_with_reason(unit_registry):
    g = one(unit_registry, name="s")["guest"]
    os.kill(g["init_pid"], signal.SIGKILL)
    time.sleep(0.05)
    res = one(unit_registry, name="s")
    assert res["action"] == "recreate" and any("not running" in x for x in res["reasons"])


def test_init_based_guest_gets_its_stop_signal(unit_registry, busybox_root):
    init = ["/bin/sh", "-c", "trap 'echo stopped > /tmp/stopped; exit 0' TERM; while :; do sleep 0.1; done"]
    g = one(unit_registry, name="ib", root=busybox_root, init=init, stop_timeout=5)["guest"]
    time.sleep(0.2)
    one(unit_registry, name="ib", state="absent")
    assert open(os.path.join(busybox_root, "tmp", "stopped")).read().strip() == "stopped"
    assert not alive(g["init_pid"])


def test_init_not_found_rolls_back(unit_registry, busybox_root):
    with pytest.raises(Exception) as exc:
        ensure(unit_registry, name="noinit", root=busybox_root, init=["/sbin/nope"])
    assert "/sbin/nope" in str(exc.value) and "inside the guest" in str(exc.value)
    assert not os.path.exists(unit_registry.guest_dir("noinit"))
    assert unit_registry.used_context_ids() == set()


def test_init_less_guest_processes_get_term_then_kill(unit_registry):
    g = one(unit_registry, name="il", stop_timeout=0.5)["guest"]
    meta = unit_registry.load("il")
    # A process that ignores TERM inside the guest's pid namespace.
    # (The joiner stays its parent and reaps it: a zombie of the guest's pid
    # namespace whose parent is outside would hold the dying init in exit.)
    fds = enter.open_namespaces(meta, ["pid", "mnt"])
    joiner = os.fork()
    if joiner == 0:
        enter.join_namespaces(fds)
        child = os.fork()
        if child == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.execv("/bin/sleep", ["sleep", "60"])
        os.waitpid(child, 0)
        os._exit(0)
    for _t, fd in fds:
        os.close(fd)
    time.sleep(0.2)
    members = guest_stop.ProcIndex().members(meta)
    assert g["init_pid"] in members and len(members) == 2
    one(unit_registry, name="il", state="absent")
    os.waitpid(joiner, 0)
    time.sleep(0.05)
    assert not any(alive(p) for p in members)


@pytest.mark.parametrize(
    "params,msg",
    [
        ({"name": "x", "share": {"bogus": "/proc/self/ns/net"}}, "share: unknown namespace type 'bogus'"),
        ({"name": "x", "share": {"net": "/etc/hostname"}}, "share.net: /etc/hostname is not a namespace file"),
        ({"name": "x", "share": {"net": "/proc/self/ns/uts"}}, "share.net: /proc/self/ns/uts is a uts namespace, not a net namespace"),
        ({"name": "x", "share": {"net": "ghost"}}, "share.net: guest 'ghost' does not exist"),
        ({"name": "x", "root": "rel"}, "root 'rel' must be an absolute path"),
        ({"name": "x", "root": "/nonexistent/linuxns"}, "root /nonexistent/linuxns does not exist"),
        ({"name": "x", "root": "/tmp", "namespaces": ["net"]}, "root needs a private mnt namespace"),
        ({"name": "x", "uid_map": ["0 0 1"]}, "uid_map/gid_map need a private user namespace"),
        ({"name": "x", "namespaces": ["user"], "uid_map": ["0 0"]}, "uid_map entry '0 0' must be"),
        ({"name": "x", "time_offsets": {"monotonic": 1}}, "time_offsets need a private time namespace"),
        ({"name": "x", "namespaces": ["time"], "time_offsets": {"realtime": 1}}, "unknown clock 'realtime'"),
        ({"name": "x", "init": ["/sbin/init"], "namespaces": ["mnt"]}, "init needs a private pid namespace"),
        ({"name": "x", "stop_signal": "SIGNOPE"}, "stop_signal 'SIGNOPE' is not a signal name"),
        ({"name": "x", "hostname": "a b"}, "hostname 'a b' is not a valid host name"),
        ({"name": "99"}, "no guest has context id 99"),
    ],
)
def test_bad_input(unit_registry, params, msg):
    with pytest.raises(InvalidInput) as exc:
        ensure(unit_registry, **params)
    assert msg in exc.value.msg
    assert unit_registry.names() == []


@pytest.mark.parametrize("step", [s for s in faults.Step if s is not faults.Step.READY])
def test_killed_at_a_step_then_converges(unit_registry, step):
    """Run the engine in a child that SIGKILLs itself at STEP; the next run cleans up."""
    r = unit_registry
    pid = os.fork()
    if pid == 0:
        os.environ[faults.ENV] = step.value
        try:
            guests.ensure_guests(reg.Registry(r.state_dir, r.netns_dir), [{"name": "crash"}])
        finally:
            os._exit(3)
    status = os.waitpid(pid, 0)[1]
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    time.sleep(0.1)
    res = one(r, name="crash")
    assert res["action"] == "create" and reg.health(r.load("crash")) == []
    one(r, name="crash", state="absent")
    table = open("/proc/self/mountinfo").read()
    assert r.state_dir + "/guests/crash" not in table and os.path.join(r.netns_dir, "crash") not in table
    # no process of the crashed run is left (its init saw the parent die)
    leftovers = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if open("/proc/%s/comm" % entry).read().strip() == "memfd:catatonit" and os.getppid() != int(entry):
                    if "crash" in os.readlink("/proc/%s/cwd" % entry):
                        leftovers.append(entry)
            except OSError:
                pass
    assert leftovers == []


def test_list_form_validates_everything_first(unit_registry):
    with pytest.raises(InvalidInput, match=r"guests\[1\]\.name"):
        guests.ensure_guests(unit_registry, [{"name": "ok1", "_in_list": True}, {"name": "bad/x", "_in_list": True}])
    assert unit_registry.names() == []


def test_namespace_limit_is_named(tmp_path):
    """With max_uts_namespaces at 0 (in a child user namespace), the error names the limit file."""
    code = r"""
import ctypes, os, sys
sys.path.insert(0, %r)
libc = ctypes.CDLL(None, use_errno=True)
assert libc.unshare(0x10000000) == 0, ctypes.get_errno()
open('/proc/self/uid_map', 'w').write('0 0 1')
with open('/proc/sys/user/max_uts_namespaces', 'w') as f:
    f.write('0')
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import LimitReached
try:
    sc.unshare_one('uts')
except LimitReached as exc:
    print(exc.msg)
""" % (os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "build"),)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if "Permission denied" in out.stderr or "Read-only" in out.stderr:
        pytest.skip("this kernel does not let a user namespace lower its own limit: %s" % out.stderr[-200:])
    assert "cannot create a uts namespace: the limit in /proc/sys/user/max_uts_namespaces is reached" in out.stdout, out.stderr


def test_syscall_errors_are_readable():
    with pytest.raises(KernelError) as exc:
        sc.umount2("/nonexistent/linuxns-test")
    assert exc.value.errno == errno.ENOENT
    assert exc.value.msg == "umount(/nonexistent/linuxns-test) failed: No such file or directory (ENOENT)"
    assert issubclass(LimitReached, KernelError)


def test_mnt_ns_id_is_available():
    assert isinstance(sc.mnt_ns_id(), int) or sc.mnt_ns_id() is None
    ctypes.CDLL(None)  # libc loads


def test_a_run_that_lost_the_race_reports_no_change(unit_registry):
    """Planned before the lock, done by another run meanwhile: changed must be false."""
    r = unit_registry
    spec = guest_spec.Spec({"name": "race"}, r)
    stale_plan = guests.plan(r, spec)
    assert stale_plan.action == "create"
    one(r, name="race")  # the other run
    meta = guests.apply(r, stale_plan)
    assert stale_plan.action == "none" and not stale_plan.changed
    assert meta.name == "race"


def test_share_a_guest_made_earlier_in_the_same_task(unit_registry):
    entries = [{"name": "web", "_in_list": True}, {"name": "side", "namespaces": ["mnt", "pid"], "share": {"net": "web"}, "_in_list": True}]
    predicted = guests.ensure_guests(unit_registry, entries, check_mode=True)
    assert [r["action"] for r in predicted["results"]] == ["create", "create"]
    out = guests.ensure_guests(unit_registry, entries)
    web, side = (r["guest"] for r in out["results"])
    assert side["namespaces"]["net"]["inode"] == web["namespaces"]["net"]["inode"]
    again = guests.ensure_guests(unit_registry, entries)
    assert not again["changed"]
    with pytest.raises(InvalidInput, match=r"guests\[1\]\.share\.net: guest 'web2' \(listed before\) gets no net namespace"):
        guests.ensure_guests(unit_registry, [{"name": "web2", "namespaces": ["mnt"], "_in_list": True},
                                             {"name": "s2", "share": {"net": "web2"}, "_in_list": True}])


def test_check_mode_update_keeps_the_current_values(unit_registry):
    g = one(unit_registry, name="upd")["guest"]
    res = guests.ensure_guests(unit_registry, [{"name": "upd", "hostname": "other"}], check_mode=True)["results"][0]
    assert res["action"] == "update"
    assert res["guest"]["init_pid"] == g["init_pid"] and res["guest"]["hostname"] == "other"
    assert res["guest"]["namespaces"]["net"]["inode"] == g["namespaces"]["net"]["inode"]


def test_guests_copy_a_clean_mount_table(unit_registry):
    """Mount namespaces come from the batch's template: no other guest's pins in them."""
    def mnt_fds():
        found = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink("/proc/self/fd/" + fd).startswith("mnt:"):
                    found.append(fd)
            except FileNotFoundError:  # listdir's own fd, closed by now
                pass
        return found

    before = mnt_fds()
    out = guests.ensure_guests(unit_registry, [{"name": "t%d" % i, "_in_list": True} for i in range(5)])
    for r in out["results"]:
        table = open("/proc/%d/mountinfo" % r["guest"]["init_pid"]).read()
        assert unit_registry.state_dir not in table and unit_registry.netns_dir not in table
    assert mnt_fds() == before  # the batch's template is closed at its end


def test_stacked_binds_of_the_netns_folder_stay_out_of_guests(unit_registry):
    """Two first-time setups of the netns folder racing (ours and an `ip netns add`) each bind it
    onto itself.  A guest's copy of the mount table must hold none of the binds: one umount took
    off only the top one, and CI saw /run/netns in a new guest's table."""
    reg = unit_registry
    first = guests.ensure_guests(reg, [{"name": "stk0"}])["results"]  # sets the netns folder up
    for _extra in range(2):
        sc.mount(reg.netns_dir, reg.netns_dir, None, sc.MS_BIND)
    stacked = [line.split()[4] for line in open("/proc/self/mountinfo")].count(reg.netns_dir)
    assert stacked >= 3
    alone = guests.ensure_guests(reg, [{"name": "stk1"}])["results"]
    batch = guests.ensure_guests(reg, [{"name": "stk%d" % i, "_in_list": True} for i in (2, 3)])["results"]
    for r in first + alone + batch:
        points = [line.split()[4] for line in open("/proc/%d/mountinfo" % r["guest"]["init_pid"])]
        assert not [p for p in points if p == reg.netns_dir or p.startswith(reg.netns_dir + "/")], points
        assert not [p for p in points if p == reg.state_dir or p.startswith(reg.state_dir + "/")], points


def test_description_is_recorded_shown_and_changed_in_place(unit_registry):
    """The dummy field of issue 12: one row of model.GUEST; recorded, shown, changed in place, kept when not given."""
    g = one(unit_registry, name="desc", description="web front end")["guest"]
    assert g["description"] == "web front end"
    assert unit_registry.load("desc").description == "web front end"
    assert guest_info.info(unit_registry, ["desc"])["guests"][0]["description"] == "web front end"
    assert not one(unit_registry, name="desc")["changed"]  # not given: kept
    predicted = guests.ensure_guests(unit_registry, [{"name": "desc", "description": "db"}], check_mode=True)
    res = predicted["results"][0]
    assert res["action"] == "update" and res["guest"]["description"] == "db"
    assert predicted["diff"]["before"]["desc"]["description"] == "web front end"
    assert predicted["diff"]["after"]["desc"]["description"] == "db"
    assert unit_registry.load("desc").description == "web front end"
    upd = one(unit_registry, name="desc", description="db\tsecond line\n")
    assert upd["action"] == "update" and upd["reasons"] == ["description differs"]
    assert upd["guest"]["init_pid"] == g["init_pid"]  # in place: the same guest
    assert guest_info.info(unit_registry, ["desc"])["guests"][0]["description"] == "db\tsecond line\n"
    with pytest.raises(InvalidInput, match=r"description .* must not contain control characters"):
        one(unit_registry, name="desc", description="bell\a")
    assert unit_registry.load("desc").description == "db\tsecond line\n"


def test_an_error_prefixed_with_its_guest_keeps_class_and_details():
    err = LimitReached("cannot create a net namespace", errno=errno.ENOSPC, limit="/proc/sys/user/max_net_namespaces")
    again = err.with_message("guest 'x': " + err.msg)
    assert again.__class__ is LimitReached and again.errno == errno.ENOSPC
    assert again.details["limit"] == "/proc/sys/user/max_net_namespaces" and again.msg.startswith("guest 'x': ")
    assert err.msg == "cannot create a net namespace" and str(again) == again.msg


def test_create_run_holds_the_fds_of_one_creation_and_the_batch_template(unit_registry):
    """guest_create.CreateRun, the per-run context: begin() opens what one creating child
    joins (share sources, the template for a private mnt) in a ChildRun of its own, whose
    close() closes it and keeps the template for the next guest; the run's close() closes the
    template; nothing is put on the Spec."""
    r = unit_registry
    one(r, name="cr-a", namespaces=["net", "uts"])
    spec = guest_spec.Spec({"name": "cr-b", "namespaces": ["mnt", "uts"], "share": {"net": "cr-a"}}, r)
    run = guest_create.CreateRun(r)
    try:
        child = run.begin(spec, ["/sys/fs/cgroup/pids/x/cgroup.procs"])
        [(nstype, fd)] = child.share_fds
        assert nstype == "net" and os.fstat(fd).st_ino == r.load("cr-a").pins["net"].ino
        assert child.mnt_template_fd >= 0 and child.mnt_template_fd == run.template_fd()
        assert child.cgroup_procs == ["/sys/fs/cgroup/pids/x/cgroup.procs"]
        other = run.begin(spec)  # a second guest at the same time: fds of its own, the same template
        assert other.share_fds[0][1] != fd and other.mnt_template_fd == child.mnt_template_fd
        template = run.template
        child.close()
        assert child.share_fds == [] and child.mnt_template_fd == -1 and run.template is template
        with pytest.raises(OSError):
            os.fstat(fd)
        os.fstat(other.share_fds[0][1])  # the other guest's still open
        other.close()
        later = run.begin(guest_spec.Spec({"name": "cr-c", "namespaces": ["net"]}, r))
        assert later.share_fds == [] and later.mnt_template_fd == -1
    finally:
        run.close()
    assert run.template is None
    assert [k for k in vars(spec) if k.startswith("_")] == []


def test_unknown_namespace_type_is_refused_by_the_entry_spec_naming_the_path(unit_registry):
    """Spec does not re-check the choices the argument spec checks: an unknown namespace
    type (or state) of an entry fails in list_forms.entries, naming its path, before any Spec."""
    spec = model.argument_spec(model.GUEST, entry=True)
    for bad, path in (({"namespaces": ["mnt", "bogus"]}, "guests[1].namespaces: "), ({"state": "gone"}, "guests[1].state: ")):
        with pytest.raises(InvalidInput) as exc:
            list_forms.entries({"guests": ["x", dict({"name": "y"}, **bad)]}, "guests", spec, "name", model.GUEST)
        assert exc.value.msg.startswith(path) and ("bogus" in exc.value.msg or "gone" in exc.value.msg), exc.value.msg
    assert unit_registry.names() == []
