"""The restart policy (supervisor.Policy), its fields' bad input, and the supervisor's watch
on real guests made by the engine (no Ansible; the lab's integration test runs the whole
supervisor: tests/integration/test_restart.py)."""

from __future__ import annotations

import io
import math
import os
import signal

import pytest
from waiting import wait_for

from ansible_collections.linuxns.guests.plugins.module_utils import guests, model, supervisor
from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput

pytestmark = pytest.mark.unit

SLEEPER = ["sleep", "1000000"]


# ---- the policy ----------------------------------------------------------------------------
@pytest.mark.parametrize("given, want", [(False, "no"), ("no", "no"), ("false", "no"), ("on-failure", "on-failure"),
                                         ("always", "always"), (None, None)])
def test_parse_restart(given, want):
    assert supervisor.parse_restart(given) == want


def test_defaults_are_the_tables():
    assert [model.default(k) for k in supervisor.RESTART_KEYS] == ["no", 1.0, 60.0, 0]
    assert set(supervisor.RESTART_KEYS) <= set(model.CHANGED_IN_PLACE) and set(supervisor.RESTART_KEYS) <= set(model.KEPT)


def test_backoff_doubles_up_to_the_cap():
    p = supervisor.Policy("on-failure", 0.5, 3.0, 0)
    assert [p.backoff(n) for n in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert p.backoff(10 ** 6) == 3.0  # no overflow however long it fails


@pytest.mark.parametrize("policy, status, count, ran, want", [
    # restart=no: every exit disposes of the guest (seed 002: "init and the context are disposed")
    (("no",), 1, 0, None, ("dispose", 0.0, 0)),
    (("no",), 0, 0, None, ("dispose", 0.0, 0)),
    # on-failure: status 0 disposes; a failure, a signal or an unknown status restarts
    (("on-failure",), 0, 0, None, ("dispose", 0.0, 0)),
    (("on-failure",), 3, 0, None, ("restart", 1.0, 1)),
    (("on-failure",), -signal.SIGKILL, 2, 1.0, ("restart", 4.0, 3)),
    (("on-failure",), None, 0, None, ("restart", 1.0, 1)),
    # always: status 0 restarts too
    (("always",), 0, 0, None, ("restart", 1.0, 1)),
    # the cap of the delay
    (("always", 1.0, 5.0), 1, 4, 0.0, ("restart", 5.0, 5)),
    # restart_max: gives up after that many restarts in a row
    (("on-failure", 1.0, 60.0, 2), 1, 2, 0.0, ("dispose", 0.0, 2)),
    (("on-failure", 1.0, 60.0, 2), 1, 1, 0.0, ("restart", 2.0, 2)),
    # an init that ran at least restart_max_delay (and at least 10 s) starts the backoff over
    (("on-failure", 1.0, 60.0, 2), 1, 2, 60.0, ("restart", 1.0, 1)),
    (("on-failure", 0.1, 2.0), 1, 5, 9.9, ("restart", 2.0, 6)),
    (("on-failure", 0.1, 2.0), 1, 5, 10.0, ("restart", 0.1, 1)),
])
def test_decide(policy, status, count, ran, want):
    d = supervisor.Policy(*policy).decide(status, count, ran)
    assert (d.action, d.delay, d.count) == want
    assert d.why


def test_describe():
    assert supervisor.describe(0) == "status 0"
    assert supervisor.describe(-9) == "signal SIGKILL"
    assert supervisor.describe(None) == "unknown status"
    assert supervisor.from_wait_status(3 << 8) == 3 and supervisor.from_wait_status(signal.SIGKILL) == -signal.SIGKILL


# ---- bad input: clear messages naming the parameter and the guest, nothing changes -----------
@pytest.mark.parametrize("params, msg", [
    ({"restart": "sometimes"}, "restart 'sometimes' is not a restart policy: use no, on-failure or always (guest 'b1')"),
    ({"restart": 1}, "restart 1 is not a restart policy"),
    ({"restart_delay": -1}, "restart_delay -1 must be at least 0 seconds (guest 'b1')"),
    ({"restart_delay": math.nan}, "restart_delay must be a finite number"),
    ({"restart_max_delay": "soon"}, "restart_max_delay 'soon' is not a number of seconds (guest 'b1')"),
    ({"restart_max_delay": 1e300}, "restart_max_delay 1e+300 must be at most 2147483"),
    ({"restart_max": 1.5}, "restart_max 1.5 is not a whole number (guest 'b1')"),
    ({"restart_max": -2}, "restart_max -2 must be at least 0 (guest 'b1')"),
    ({"restart": "always", "namespaces": ["net"], "init": None}, "restart always: guest 'b1' has no pid namespace of its own"),
])
def test_bad_restart_values(unit_registry, params, msg):
    for check in (True, False):
        with pytest.raises(InvalidInput) as exc:
            guests.ensure_guests(unit_registry, [dict({"name": "b1", "init": SLEEPER}, **params)], check_mode=check)
        assert msg in exc.value.msg
    assert unit_registry.names() == []


def test_bad_value_in_a_list_names_the_entry(unit_registry):
    with pytest.raises(InvalidInput, match=r"guests\[1\]\.restart_delay -3 must be at least 0 seconds \(guest 'b2'\)"):
        guests.ensure_guests(unit_registry, [{"name": "b1"}, {"name": "b2", "restart_delay": -3}])
    assert unit_registry.names() == []


# ---- real guests ---------------------------------------------------------------------------------
def test_changes_in_place_and_the_supervisor_finds_and_watches_the_init(unit_registry):
    r = unit_registry
    made = guests.ensure_guests(r, [{"name": "w1", "init": SLEEPER}])["results"][0]["guest"]
    assert made["restart"] == "no"
    # in place: the same init, the policy recorded for the supervisor
    out = guests.ensure_guests(r, [{"name": "w1", "init": SLEEPER, "restart": "on-failure", "restart_delay": 3600}])
    res = out["results"][0]
    assert res["action"] == "update" and res["guest"]["init_pid"] == made["init_pid"]
    assert out["diff"]["before"]["w1"]["restart"] == "no" and out["diff"]["after"]["w1"]["restart"] == "on-failure"
    meta = r.load("w1")
    assert supervisor.Policy.of(meta) == supervisor.Policy("on-failure", 3600.0, 60.0, 0)
    # left out: kept (a second run changes nothing)
    assert not guests.ensure_guests(r, [{"name": "w1", "init": SLEEPER}])["changed"]

    log = io.StringIO()
    s = supervisor.Supervisor(r, log=log)
    s.scan()
    assert list(s.watched) == ["w1"] and s.watched["w1"].pid == meta.init_pid
    os.kill(meta.init_pid, signal.SIGKILL)
    for _round in range(2000):  # hang guard only
        s.run_once(0.05)
        if "w1" in s.due:
            break
    _when, _w, d, status = s.due["w1"]
    # the delay (3600 s, capped at restart_max_delay 60) keeps the worker from starting here
    assert (d.action, d.delay, d.count, status) == ("restart", 60.0, 1, -signal.SIGKILL)
    assert "guest w1: its init (pid %d) exited (signal SIGKILL): restart 1 in a row in 60s" % meta.init_pid in log.getvalue()
    s.due.clear()
    # a record whose init is gone, found by a new supervisor: handled at once, status unknown
    s2 = supervisor.Supervisor(r, log=log)
    s2.scan()
    assert "w1" in s2.exited and not s2.watched
    for _round in range(2000):
        s2.run_once(0.05)
        if "w1" in s2.due:
            break
    assert s2.due["w1"][2].action == "restart" and s2.due["w1"][3] is None


def test_one_supervisor_per_state_folder(unit_registry):
    from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError

    a, b = supervisor.Supervisor(unit_registry), supervisor.Supervisor(unit_registry)
    a.take_lock()
    try:
        with pytest.raises(GuestError, match="another supervisor watches the guests of"):
            b.take_lock()
    finally:
        os.close(a.lock_fd)


def test_namespace_create_warns_when_no_supervisor_watches(unit_registry):
    """The warning namespace_create gives (module.warn) for a restart policy with no supervisor: it
    goes when a supervisor holds the state folder's lock, and comes back when it let go."""
    r = unit_registry
    asked = guests.ensure_guests(r, [{"name": "w2", "init": SLEEPER, "restart": "always"},
                                     {"name": "w3", "init": SLEEPER, "restart": "on-failure"},
                                     {"name": "w4", "init": SLEEPER}], check_mode=True)["results"]
    plain = guests.ensure_guests(r, [{"name": "w4", "init": SLEEPER}], check_mode=True)["results"]
    assert not supervisor.watching(r.state_dir)
    warning = supervisor.unwatched_warning(r.state_dir, asked)
    assert warning.startswith("guest w2 has restart always, guest w3 has restart on-failure: no supervisor watches the "
                              "guests of %s (no process holds %s/supervisor.lock)" % (r.state_dir, r.state_dir)), warning
    assert "guest_host_restart_supervisor: true" in warning and supervisor.unwatched_warning(r.state_dir, plain) is None
    s = supervisor.Supervisor(r)
    s.take_lock()
    try:
        assert supervisor.watching(r.state_dir) and supervisor.unwatched_warning(r.state_dir, asked) is None
    finally:
        os.close(s.lock_fd)
    assert not supervisor.watching(r.state_dir) and supervisor.unwatched_warning(r.state_dir, asked) == warning


def test_exit_status_of_a_reaped_process_and_of_a_zombie():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    fd = os.pidfd_open(pid)
    try:
        wait_for(lambda: supervisor.zombie_exit_status(pid, None) is not None, "the child becoming a zombie")
        assert supervisor.from_wait_status(supervisor.zombie_exit_status(pid, None)) == 7
        os.waitpid(pid, 0)
        got = supervisor.pidfd_exit_status(fd)
        if got is not None:  # Linux 6.15+
            assert supervisor.from_wait_status(got) == 7
    finally:
        os.close(fd)


def test_a_restarted_guest_gets_its_saved_links_back(unit_registry, tmp_path, monkeypatch):
    # The restart makes the guest's namespaces again: without boot.relink its veth to another
    # guest (kept in its definition by netns_link's code) was gone for good, in both guests.
    import json
    import subprocess

    from ansible_collections.linuxns.guests.plugins.module_utils import links, persist, procfs

    def veth(name, ifname):
        pin = r.load(name).pins["net"].path
        out = subprocess.run(["nsenter", "--net=" + pin, "ip", "-j", "addr", "show", "dev", ifname], capture_output=True, text=True, check=False)
        items = json.loads(out.stdout or "[]") if out.returncode == 0 else []
        return sorted(a["local"] for i in items for a in i.get("addr_info", ()) if a.get("family") == "inet") or None

    r, tables = unit_registry, str(tmp_path / "tables")
    monkeypatch.setenv(persist.TABLE_DIR_ENV, tables)
    guests.ensure_guests(r, [{"name": "sv-a", "init": SLEEPER, "restart": "on-failure"},
                             {"name": "sv-b", "namespaces": ["uts", "net"]}], table_dir=tables)
    links.ensure_links(r, [{"guest": "sv-a", "ifname": "to-b", "addresses": ["198.19.211.1/30"],
                            "peer": {"guest": "sv-b", "ifname": "to-a", "addresses": ["198.19.211.2/30"]}}])
    meta = r.load("sv-a")
    pid, start = meta.init_pid, meta.init_start
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not procfs.process_alive(pid, start), "the killed init gone")
    log = io.StringIO()
    decision = supervisor.Decision("restart", 0.0, 1, "test")
    assert supervisor.work(r, "sv-a", decision, pid, start, "signal SIGKILL", tables, lambda text: log.write(text + "\n")) == 0
    new = r.load("sv-a")
    assert new.init_pid != pid and procfs.process_alive(new.init_pid, new.init_start), log.getvalue()
    assert "guest sv-a: links to-b" in log.getvalue()
    assert veth("sv-a", "to-b") == ["198.19.211.1"] and veth("sv-b", "to-a") == ["198.19.211.2"]
