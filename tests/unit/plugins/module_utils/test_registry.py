"""The guest registry: names, context ids, locks, staleness (as root, no Ansible)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import guests, procfs
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, GuestNotFound, InvalidInput

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["web1", "a", "Web_1.example-x", "x" * 63, "1web", "_x"])
def test_valid_names(name):
    assert reg.validate_name(name) == name


@pytest.mark.parametrize(
    "name,msg",
    [
        ("", "non-empty"),
        ("a/b", "not a valid guest name"),
        ("..", "not a valid guest name"),
        (".hidden", "not a valid guest name"),
        ("-x", "not a valid guest name"),
        ("has space", "not a valid guest name"),
        ("x" * 64, "at most 63"),
        ("123", "all digits"),
        (None, "non-empty"),
    ],
)
def test_invalid_names_name_the_parameter(name, msg):
    with pytest.raises(InvalidInput) as exc:
        reg.validate_name(name, "guests[3].name")
    assert msg in exc.value.msg and exc.value.msg.startswith("guests[3].name")


@pytest.mark.parametrize("ctx,msg", [(0, "reserved"), (1, "reserved"), (70000, "out of range"), (-5, "out of range"), ("x", "not a number")])
def test_invalid_context_ids(ctx, msg):
    with pytest.raises(InvalidInput) as exc:
        reg.validate_context_id(ctx)
    assert msg in exc.value.msg and "context_id" in exc.value.msg


def test_state_dir_must_be_absolute():
    with pytest.raises(InvalidInput, match="state_dir"):
        reg.Registry("relative/state")


def test_state_dir_is_a_private_mount_of_itself(unit_registry):
    unit_registry.ensure()
    unit_registry.ensure()  # idempotent: no stacked mounts
    lines = [line.split() for line in open("/proc/self/mountinfo")]
    mine = [f for f in lines if f[4] == unit_registry.state_dir]
    assert len(mine) == 1
    assert not any(tag.startswith("shared:") for tag in mine[0][6 : mine[0].index("-")])


def test_context_ids_lowest_free_and_explicit(unit_registry):
    r = unit_registry
    assert r.reserve_context_id("a") == 2
    assert r.reserve_context_id("b") == 3
    assert r.reserve_context_id("c", 10) == 10
    assert r.reserve_context_id("c", 10) == 10  # own id again: fine
    with pytest.raises(InvalidInput, match="context_id 10 is already taken by guest 'c'"):
        r.reserve_context_id("d", 10)
    r.release_context_id("a", 2)
    r._ctx_cache = None
    assert r.reserve_context_id("e") == 2
    r.release_context_id("x", 3)  # not the owner: nothing happens
    assert r.ctx_owner(3) == "b"


def test_concurrent_context_id_reservations_never_collide(unit_registry):
    r = unit_registry
    r.ensure()
    got = {}

    def grab(i):
        rr = reg.Registry(r.state_dir, r.netns_dir)
        got[i] = rr.reserve_context_id("g%d" % i)

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got.values()) == list(range(2, 22))


def test_resolve_by_context_id_and_missing(unit_registry):
    r = unit_registry
    r.ensure()
    r.reserve_context_id("web", 44)
    rec = reg.GuestRecord("web", reg.READY)
    rec.context_id = 44
    r.save(rec)
    assert r.resolve("44") == "web" and r.resolve(44) == "web"
    assert r.find("web").context_id == 44
    with pytest.raises(GuestNotFound, match="no guest has context id 45"):
        r.resolve("45")
    with pytest.raises(GuestNotFound, match="guest 'nope' does not exist"):
        r.find("nope")
    with pytest.raises(InvalidInput, match="boolean"):
        r.resolve(True)


def test_lock_times_out_with_a_clear_message(unit_registry):
    r = unit_registry
    with r.lock("web"):
        lk = reg.Lock(os.path.join(r.locks_dir, "web.lock"), "guest 'web'", timeout=0.2)
        t0 = time.monotonic()
        with pytest.raises(GuestError, match="guest 'web' is locked by another run"):
            with lk:
                pass
        assert time.monotonic() - t0 < 5


def test_health_detects_dead_and_reused_pids(unit_registry):
    pid = os.getpid()
    start = procfs.proc_start_time(pid)
    meta = reg.GuestRecord("x", reg.READY)
    meta.init_pid, meta.init_start = pid, start
    assert reg.health(meta) == []
    meta.init_start = start + 1  # same pid, another process (pid reuse)
    assert reg.health(meta) == ["its init (pid %d) is not running" % pid]
    meta.phase = reg.CREATING
    assert "did not finish" in reg.health(meta)[0]


def test_health_detects_a_pin_that_lost_its_namespace(unit_registry, tmp_path):
    plain = tmp_path / "not-a-pin"
    plain.write_text("")
    meta = reg.GuestRecord("x", reg.READY)
    meta.pins["net"] = reg.Pin(str(plain), 0, 1)
    assert reg.health(meta) == ["the pin of its net namespace is gone"]
    ino = os.stat("/proc/self/ns/net").st_ino
    meta.pins["net"] = reg.Pin("/proc/self/ns/net", 0, ino + 1)
    assert reg.health(meta) == ["the pin of its net namespace points to another namespace"]


def test_health_of_many_guests_lists_each_cgroup_parent_once_and_sees_what_is_gone(tmp_path, monkeypatch):
    """health(meta, DirListing()): a guest's cgroup folders checked against one listing of each
    parent; one that is gone (or a file of that name) is reported as without it, and a folder
    made after the listing is still found."""
    parents = [tmp_path / ("hier%d" % i) for i in range(3)]
    metas = []
    for n in range(50):
        meta = reg.GuestRecord("g%d" % n, reg.READY)
        meta.cgroup = {"paths": {}}
        for i, parent in enumerate(parents):
            d = parent / meta.name
            d.mkdir(parents=True)
            meta.cgroup["paths"]["k%d" % i] = str(d)
        metas.append(meta)
    (parents[1] / "g7").rmdir()
    (parents[1] / "g7").write_text("")  # a file is not the guest's cgroup
    (parents[2] / "g9").rmdir()
    dirs = reg.DirListing()
    listed = []
    real = os.scandir
    monkeypatch.setattr(reg.os, "scandir", lambda path: listed.append(path) or real(path))
    found = {m.name: reg.health(m, dirs) for m in metas}
    (parents[0] / "late").mkdir()  # after the listing
    late = reg.GuestRecord("late", reg.READY)
    late.cgroup = {"paths": {"k0": str(parents[0] / "late")}}
    found["late"] = reg.health(late, dirs)
    assert sorted(listed) == sorted(str(p) for p in parents)  # one listing per parent, not one stat per guest
    assert found["g7"] == ["its cgroup is gone (k1)"] and found["g9"] == ["its cgroup is gone (k2)"]
    assert found["late"] == []
    assert all(found[m.name] == [] for m in metas if m.name not in ("g7", "g9"))
    assert {m.name: reg.health(m) for m in metas + [late]} == found  # the same answers as one stat each


def test_proc_start_time_handles_odd_comm(tmp_path):
    # comm with spaces and parentheses must not confuse the stat parser
    import subprocess

    exe = tmp_path / "a b) (c"
    os.symlink("/bin/sleep", str(exe))
    p = subprocess.Popen([str(exe), "5"])
    try:
        time.sleep(0.05)
        assert procfs.proc_start_time(p.pid) == int(open("/proc/%d/stat" % p.pid).read().rsplit(")", 1)[1].split()[19])
    finally:
        p.kill()
        p.wait()
    assert procfs.proc_start_time(p.pid) is None


def test_corrupt_meta_is_treated_as_incomplete(unit_registry):
    r = unit_registry
    r.ensure()
    os.makedirs(r.pin_dir("torn"))
    with open(r.meta_path("torn"), "w") as f:
        f.write("{not json")
    meta = r.load("torn")
    assert meta.name == "torn" and meta.phase == reg.CORRUPT
    assert reg.health(meta) == ["its metadata cannot be read (%s)" % meta.problem] and "not JSON" in meta.problem


# ---- kept context ids (persist.KeptIds): preferred, skipped, conflicting ---------------------
def _keep(tables, name, text):
    (tables / name).mkdir(parents=True, exist_ok=True)
    (tables / name / "context_id").write_text(text)


def test_kept_context_id_preferred_and_others_skipped(unit_registry, tmp_path):
    from ansible_collections.linuxns.guests.plugins.module_utils import persist

    r, tables = unit_registry, tmp_path / "kept"
    for name, text in (("g01", "3\n"), ("stopped", "2\n"), ("junk", "1\n"), ("bad", "x\n")):
        _keep(tables, name, text)
    kept = persist.KeptIds(str(tables))
    assert r.reserve_context_id("g01", None, kept) == 3          # its own kept id
    assert r.reserve_context_id("new1", None, kept) == 4         # skips 2 (kept by 'stopped') and 3 (held)
    assert (tables / "new1" / "context_id").read_text() == "4\n"  # the id got is kept
    assert r.reserve_context_id("new1", None, kept) == 4         # own, held: the same again
    # an explicit id that another guest keeps fails, naming context_id and that guest
    with pytest.raises(InvalidInput) as exc:
        r.reserve_context_id("fixed", 2, kept)
    assert "context_id 2 is kept for guest 'stopped'" in exc.value.msg and "purge=true" in exc.value.msg
    assert r.ctx_owner(2) is None and not (tables / "fixed").exists()
    assert r.reserve_context_id("fixed", 9, kept) == 9 and (tables / "fixed" / "context_id").read_text() == "9\n"
    # an id a guest holds (and keeps): the registry's own message
    with pytest.raises(InvalidInput, match="context_id 3 is already taken by guest 'g01'"):
        r.reserve_context_id("other", 3, kept)
    # the kept guest itself gets its id back; 'junk' kept an invalid id: a new one
    assert r.reserve_context_id("stopped", None, kept) == 2
    assert r.reserve_context_id("junk", None, kept) == 5
    # a kept id another guest holds now: the lowest free one, and that is kept instead
    r.release_context_id("g01", 3)
    r.reserve_context_id("thief", 3)
    assert r.reserve_context_id("g01", None, kept) == 6 and (tables / "g01" / "context_id").read_text() == "6\n"


def test_kept_ids_seen_when_another_run_keeps_one_meanwhile(unit_registry, tmp_path):
    from ansible_collections.linuxns.guests.plugins.module_utils import persist

    r, tables = unit_registry, tmp_path / "kept"
    kept = persist.KeptIds(str(tables))
    assert r.reserve_context_id("a", None, kept) == 2
    _keep(tables, "other", "3\n")  # another run (or a reboot's leftovers) keeps 3
    assert r.reserve_context_id("b", None, kept) == 4


def test_kept_id_not_written_keeps_nothing_reserved(unit_registry, tmp_path):
    from ansible_collections.linuxns.guests.plugins.module_utils import persist

    r, tables = unit_registry, tmp_path / "kept"
    tables.mkdir()
    (tables / "g").write_text("a file where the guest's folder should be\n")
    with pytest.raises(GuestError) as exc:
        r.reserve_context_id("g", None, persist.KeptIds(str(tables)))
    assert "guest 'g'" in exc.value.msg and "table_dir" in exc.value.msg
    assert r.used_context_ids() == set()


def test_concurrent_reservations_with_kept_ids_never_collide(unit_registry, tmp_path):
    from ansible_collections.linuxns.guests.plugins.module_utils import persist

    r, tables = unit_registry, tmp_path / "kept"
    r.ensure()
    for i in range(0, 20, 2):
        _keep(tables, "g%d" % i, "%d\n" % (40 + i))
    got = {}

    def grab(i):
        rr = reg.Registry(r.state_dir, r.netns_dir)
        got[i] = rr.reserve_context_id("g%d" % i, None, persist.KeptIds(str(tables)))

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {i: got[i] for i in range(0, 20, 2)} == {i: 40 + i for i in range(0, 20, 2)}
    assert sorted(got[i] for i in range(1, 20, 2)) == list(range(2, 12))
    assert {i: int((tables / ("g%d" % i) / "context_id").read_text()) for i in range(20)} == got


class _CountingSet(set):
    """The registry's set of used ids, counting how often the allocation asks it."""

    asked = 0

    def __contains__(self, ctx):
        self.asked += 1
        return super().__contains__(ctx)


def test_a_batch_of_new_ids_walks_the_used_ids_once(unit_registry):
    """n new guests in one run: each allocation starts after the ids already given, so the
    whole batch asks about O(n) candidates, not O(n^2) (10,000 guests: 5*10^7 before)."""
    r = unit_registry
    r.ensure()
    r._ctx_cache = used = _CountingSet()
    got = [r._reserve("g%d" % i, None, {7, 8}) for i in range(500)]  # 7 and 8: kept by guests not running
    assert got == [i for i in range(2, 504) if i not in (7, 8)]
    assert used.asked <= 3 * 500, used.asked
    # a released id below the rest is found again, and then the walk goes on after the rest
    r.release_context_id("g100", got[100])
    assert r._reserve("again", None, ()) == got[100]
    assert r._reserve("next", None, ()) == 504


def test_a_reservation_left_by_a_killed_run_is_the_guests_own_again(unit_registry):
    """A run killed after it reserved a guest's context id and before it kept or recorded it
    (a guest made together with the one whose step the kill hit) leaves ctx/ID -> NAME and nothing
    else.  The next run gives that guest the same id, and removing the guest frees it: no id is
    held by a guest that does not exist."""
    r = unit_registry
    r.ensure()
    os.symlink("left", os.path.join(r.ctx_dir, "7"))  # what the killed run left: a reservation, no record, no kept id
    out = guests.ensure_guests(r, [{"name": "first"}, {"name": "left"}])
    assert [g["guest"]["context_id"] for g in out["results"]] == [2, 7]
    assert r.ctx_owner(7) == "left" and r.load("left").context_id == 7
    guests.ensure_guests(r, [{"name": "first", "state": "absent"}, {"name": "left", "state": "absent"}])
    assert r.used_context_ids() == set()
