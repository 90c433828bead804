"""userns: auto - the id range allocator (userns.py) and the engine's use of it, as root, no Ansible."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import execute, guest_info, guests, mounts, persist, userns
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestConflict, GuestError, InvalidInput

pytestmark = pytest.mark.unit

POOL = "3000000000:200000"  # above every id of this machine's /etc/passwd and /etc/group


def host_files(tmp_path, subuid="", subgid="", passwd="root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/:/bin/sh\n",
               group="root:x:0:\nbob:x:1000:\n") -> dict:
    out = {}
    for key, text in (("subuid", subuid), ("subgid", subgid), ("passwd", passwd), ("group", group)):
        path = tmp_path / key
        path.write_text(text)
        out[key] = str(path)
    return out


# ---- parsing and the pool ------------------------------------------------------------------
def test_subid_lines_and_pool_text():
    text = "# comment\nlinuxns:1000000:65536\nbad line\nalice:100000:65536\nzero:5:0\nx:y:z\n"
    assert userns.parse_subid(text) == [("linuxns", 1000000, 1065536), ("alice", 100000, 165536)]
    assert userns.parse_count_range("1000000:65536", "userns_pool") == (1000000, 1065536)
    for bad in ("1000000-1999999", "1:0", "-1:5", "4294967290:100", "a:b"):
        with pytest.raises(InvalidInput, match="userns_pool"):
            userns.parse_count_range(bad, "userns_pool")


def test_pool_from_the_owners_subuid_and_subgid(tmp_path):
    files = host_files(tmp_path, subuid="linuxns:1000000:300000\nalice:100000:65536\n",
                       subgid="linuxns:1100000:300000\nalice:100000:65536\n")
    pool = userns.Pool(files=files)
    assert pool.intervals() == [(1100000, 1300000)] and pool.source == "subid:linuxns"  # the ids in both files
    assert pool.first_free(65536, [(1100000, 1165536)]) == 1165536


def test_pool_refusals_name_the_parameter(tmp_path):
    files = host_files(tmp_path, subuid="alice:100000:65536\n", subgid="alice:100000:65536\n")
    with pytest.raises(InvalidInput, match="userns_pool_owner 'linuxns' has no range in both"):
        userns.Pool(files=files).intervals()
    with pytest.raises(InvalidInput, match=r"userns_pool: the pool 0-65535 holds host user 'root' \(id 0"):
        userns.Pool("0:65536", files=files).intervals()
    with pytest.raises(InvalidInput, match="userns_pool: the pool 500-1499 holds host user 'bob'"):
        userns.Pool("500:1000", files=files).intervals()
    with pytest.raises(InvalidInput, match=r"overlaps the range 100000-165535 that .*subuid gives to 'alice'"):
        userns.Pool("150000:100000", files=files).intervals()
    for owner, msg in (("", "must be a user name"), ("a:b", "must be a user name"), ("a\0b", "must not contain NUL")):
        with pytest.raises(InvalidInput, match="userns_pool_owner .*" + msg):
            userns.Pool(owner=owner, files=files)
    with pytest.raises(InvalidInput, match="userns_pool '1-2' must be 'START:COUNT'"):
        userns.Pool("1-2", files=files)  # at once, before any guest needs it
    files = host_files(tmp_path, subuid="linuxns:900:200\n", subgid="linuxns:900:200\n")
    with pytest.raises(InvalidInput, match="userns_pool_owner: the pool 900-1099 holds host user 'bob'"):
        userns.Pool(owner="linuxns", files=files).intervals()


# ---- the kept ranges -----------------------------------------------------------------------
def ranges(tmp_path, pool="1000000:200000"):
    return userns.Ranges(str(tmp_path / "tables"), userns.Pool(pool, files=host_files(tmp_path)))


def test_ranges_are_disjoint_kept_and_released(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    r = ranges(tmp_path, "1000000:197000")  # room for 3 x 65536 minus a little
    assert r.predict("a", 65536).view() == {"start": 1000000, "size": 65536, "source": "userns_pool"}
    assert r.predict("b", 65536).start == 1065536  # the run's predictions do not overlap
    a, new = r.allocate("a", 65536, str(state))
    assert new and a.start == 1000000
    assert open(userns.range_path(r.table_dir, "a")).read() == "1000000 65536 userns_pool\n"
    assert r.allocate("a", 65536, str(state)) == (a, False)  # its own, again
    b = r.allocate("b", 65536, str(state))[0]
    c = r.allocate("c", 1000, str(state))[0]
    assert (b.start, c.start) == (1065536, 1131072)
    with pytest.raises(InvalidInput, match=r"userns_size: guest 'd': the userns pool .* has no 65536 free consecutive ids"):
        r.allocate("d", 65536, str(state))
    assert not os.path.exists(os.path.join(r.table_dir, "d"))  # nothing written for it
    # purge = the kept files forgotten (persist.KeptIds, as the engine does): the range is free again
    kept = persist.KeptIds(r.table_dir)
    kept.userns = r
    assert kept.forget("b") == [userns.range_path(r.table_dir, "b"), os.path.join(r.table_dir, "b")]
    assert r.allocate("d", 65536, str(state))[0].start == 1065536
    # another run's cache: it rescans when this run allocates or releases (the lock file's generation)
    other = ranges(tmp_path, "1000000:197000")
    assert other.kept() == r.kept()
    kept.forget("d")
    r.allocate("e", 1000, str(state))
    assert other.allocate("f", 1000, str(state))[0].start == 1065536 + 1000  # e's range seen, d's free


def test_a_range_survives_a_reboot(tmp_path):
    """A new process with a fresh state folder (a reboot wiped /run) reads the kept files."""
    r = ranges(tmp_path)
    (tmp_path / "state").mkdir()
    first = {n: r.allocate(n, 4096, str(tmp_path / "state"))[0].start for n in ("x", "y")}
    (tmp_path / "state2").mkdir()
    code = (
        "from ansible_collections.linuxns.guests.plugins.module_utils import userns\n"
        "r = userns.Ranges(%r, userns.Pool('1000000:200000'))\n"
        "print(r.allocate('y', 4096, %r)[0].start, r.allocate('z', 4096, %r)[0].start)\n"
    ) % (r.table_dir, str(tmp_path / "state2"), str(tmp_path / "state2"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True, env=env)
    y, z = (int(v) for v in out.stdout.split())
    assert y == first["y"] and z not in first.values() and z == 1000000 + 2 * 4096


def test_explicit_map_must_not_reach_a_kept_range(tmp_path):
    r = ranges(tmp_path)
    (tmp_path / "state").mkdir()
    r.allocate("a", 65536, str(tmp_path / "state"))
    r.check_map("b", ["0 2000000 65536"], "uid_map")
    r.check_map("a", ["0 1000000 10"], "uid_map")  # its own
    with pytest.raises(InvalidInput, match=r"gid_map: guest 'b': host ids 1065000-1065999 overlap the userns range 1000000-1065535 "
                                           r"that guest 'a' keeps"):
        r.check_map("b", ["0 0 1", "1 1065000 1000"], "gid_map")


# ---- the engine ----------------------------------------------------------------------------
def status_ids(pid: int) -> tuple:
    """The real uid and gid of ``pid`` as the host sees them (/proc/PID/status, read from outside)."""
    lines = dict(line.split(":", 1) for line in open("/proc/%d/status" % pid).read().splitlines() if ":" in line)
    return int(lines["Uid"].split()[0]), int(lines["Gid"].split()[0])


def ensure(r, entries, check=False, pool=POOL):
    return guests.ensure_guests(r, entries, check, userns_pool=pool)


def test_userns_auto_guests(unit_registry, kept_files_in_tmp):
    r = unit_registry
    table = persist.resolve_table_dir(r.state_dir)
    entries = [{"name": "ua", "userns": "auto"}, {"name": "ub", "userns": "auto", "userns_size": 1000, "namespaces": ["mnt", "pid"]}]
    predicted = ensure(r, entries, check=True)
    want = [res["guest"]["userns_range"] for res in predicted["results"]]
    assert want == [{"start": 3000000000, "size": 65536, "source": "userns_pool"}, {"start": 3000065536, "size": 1000, "source": "userns_pool"}]
    assert not os.path.exists(os.path.join(table, "ua")) and r.load("ua") is None  # check mode: nothing kept
    out = ensure(r, entries)
    got = [res["guest"] for res in out["results"]]
    assert [g["userns_range"] for g in got] == want  # check mode predicted it
    assert got[0]["userns"] == "auto" and got[0]["userns_size"] == 65536 and "user" in got[0]["private_namespaces"]
    for g, rng in zip(got, want):
        pid = g["init_pid"]
        assert status_ids(pid) == (rng["start"], rng["start"])  # guest root is an unprivileged id on the host
        assert open("/proc/%d/uid_map" % pid).read().split() == ["0", str(rng["start"]), str(rng["size"])]
        assert open("/proc/%d/gid_map" % pid).read().split() == ["0", str(rng["start"]), str(rng["size"])]
    assert out["diff"]["after"]["ua"]["userns_range"] == want[0]
    # entering it (guest_enter_exec's path): root of its user namespace, with the guest's capabilities there
    res = execute.run(r.find("ua"), execute.Request(argv=["sh", "-c", "id -u; id -g; grep ^CapEff /proc/self/status"]))
    uid, gid, capeff = res["stdout"].splitlines()
    assert (res["rc"], uid, gid) == (0, "0", "0") and int(capeff.split()[1], 16) != 0, res
    # namespace_info: the range, and every namespace owned by the guest's user namespace, made by host root
    view = guest_info.info(r, ["ua"])["guests"][0]
    assert view["userns_range"] == want[0]
    userns_ino = view["namespaces"]["user"]["inode"]
    for t, ns in view["namespaces"].items():
        if t != "user":
            assert ns["owner_user_ns"] == userns_ino and ns["owner_uid"] == 0, t
    again = ensure(r, entries)
    assert not again["changed"] and [res["guest"]["userns_range"] for res in again["results"]] == want
    # recreate (a lost init = a reboot of the guest): the same range
    os.kill(got[0]["init_pid"], 9)
    os.waitpid(got[0]["init_pid"], 0)  # reparented to this process (the unit tests' subreaper): reaped, gone
    redo = ensure(r, entries[:1])
    assert redo["results"][0]["action"] == "recreate" and redo["results"][0]["guest"]["userns_range"] == want[0]
    # a change of size is a recreate, refused without recreate=true
    with pytest.raises(GuestConflict, match="userns_size"):
        ensure(r, [{"name": "ub", "userns": "auto", "userns_size": 2000, "namespaces": ["mnt", "pid"]}])
    # explicit maps of a third guest must stay out of the kept ranges; nothing is made
    with pytest.raises(InvalidInput, match=r"uid_map: guest 'uc': host ids 3000065000-3000065999 overlap the userns range "
                                           r"3000000000-3000065535 that guest 'ua' keeps"):
        ensure(r, [{"name": "uc", "namespaces": ["user"], "uid_map": ["0 3000065000 1000"]}])
    assert r.load("uc") is None
    # removal + purge releases the range: the next guest gets it
    gone = ensure(r, [{"name": "ua", "state": "absent", "purge": True}])
    assert os.path.join(table, "ua", "userns") in gone["results"][0]["purged"]
    nxt = ensure(r, [{"name": "ud", "userns": "auto"}])
    assert nxt["results"][0]["guest"]["userns_range"]["start"] == 3000000000


def test_userns_auto_bad_input_changes_nothing(unit_registry):
    r = unit_registry
    table = persist.resolve_table_dir(r.state_dir)
    with pytest.raises(InvalidInput, match="userns: auto allocates the guest's uid_map and gid_map"):
        ensure(r, [{"name": "x", "userns": "auto", "uid_map": ["0 0 1"]}])
    with pytest.raises(InvalidInput, match="userns_size goes with userns: auto only"):
        ensure(r, [{"name": "x", "userns_size": 10}])
    with pytest.raises(InvalidInput, match="userns_pool: the pool 0-65535 holds host user 'root'"):
        ensure(r, [{"name": "x", "userns": "auto"}], pool="0:65536")
    # exhausted: the batch's third guest does not fit; planned first, so not even the first is made
    with pytest.raises(InvalidInput, match=r"guests\[2\].userns_size: guest 'e3': the userns pool"):
        ensure(r, [{"name": "e%d" % i, "userns": "auto"} for i in (1, 2, 3)], pool="3000000000:140000")
    assert r.names() == [] and not any(os.path.exists(os.path.join(table, "e%d" % i, "userns")) for i in (1, 2, 3))


def test_a_failed_creation_releases_its_new_range(unit_registry):
    r = unit_registry
    table = persist.resolve_table_dir(r.state_dir)
    with pytest.raises(GuestError, match="could not be started"):
        ensure(r, [{"name": "uf", "userns": "auto", "init": ["/nonexistent/init"]}])
    assert r.load("uf") is None and not os.path.exists(userns.range_path(table, "uf"))
    # a guest's kept range survives a failed recreate of it (only a range this run allocated goes)
    ensure(r, [{"name": "uk", "userns": "auto"}])
    with pytest.raises(GuestError, match="could not be started"):
        ensure(r, [{"name": "uk", "userns": "auto", "init": ["/nonexistent/init"], "recreate": True}])
    assert userns.read_range(table, "uk") == userns.IdRange(3000000000, 65536)


# ---- host binds into a userns guest: plain and idmapped (namespace_mount opts=idmap) -------
def test_idmapped_bind_shows_host_ids_as_the_guests(unit_registry, kept_files_in_tmp):
    r = unit_registry
    table = persist.resolve_table_dir(r.state_dir)
    base = tempfile.mkdtemp(prefix="linuxns-unit-idmap-", dir="/var/tmp")
    try:
        os.chmod(base, 0o755)  # guest root (an unprivileged host uid) walks to the mount points
        for d in ("vol", "plain", "at-vol", "at-plain"):
            os.mkdir(os.path.join(base, d))
        for d in ("vol", "plain"):
            with open(os.path.join(base, d, "hostfile"), "w") as f:
                f.write("host\n")
        ensure(r, [{"name": "um", "userns": "auto"}, {"name": "un", "namespaces": ["mnt"]}])
        entries = [{"path": base + "/at-vol", "src": base + "/vol", "fstype": "bind", "opts": "idmap"},
                   {"path": base + "/at-plain", "src": base + "/plain", "fstype": "bind"}]
        assert mounts.converge(r, "um", entries, check_mode=True, table_dir=table)["changed"]
        assert mounts.converge(r, "um", entries, table_dir=table)["changed"]
        assert not mounts.converge(r, "um", entries, table_dir=table)["changed"]
        probe = "stat -c %u:%g at-vol/hostfile at-plain/hostfile; touch at-vol/new; touch at-plain/nope 2>/dev/null; echo $?"
        res = execute.run(r.find("um"), execute.Request(argv=["sh", "-c", probe], chdir=base))
        # idmapped: host root's file is guest root's, and what guest root writes is host root's;
        # plain: host root's file is nobody's and guest root cannot write there
        assert res["stdout"].split() == ["0:0", "65534:65534", "1"], res
        st = os.stat(os.path.join(base, "vol", "new"))
        assert (st.st_uid, st.st_gid) == (0, 0)
        assert not os.path.exists(os.path.join(base, "plain", "nope"))
        # the option cannot change on a mounted path, and needs the guest's own user namespace
        with pytest.raises(GuestConflict, match=r"idmap \(now idmapped\)"):
            mounts.converge(r, "um", [dict(entries[0], opts="")], table_dir=table)
        with pytest.raises(InvalidInput, match="opts 'idmap' maps ids through the guest's user namespace, but guest 'un' has none"):
            mounts.converge(r, "un", entries[:1], table_dir=table)
        with pytest.raises(InvalidInput, match="'idmap' is for bind mounts"):
            mounts.converge(r, "um", [{"path": base + "/at-plain", "src": "tmpfs", "fstype": "tmpfs", "opts": "idmap"}], table_dir=table)
    finally:
        ensure(r, [{"name": "um", "state": "absent", "purge": True}, {"name": "un", "state": "absent", "purge": True}])
        shutil.rmtree(base, ignore_errors=True)


# ---- roots under the mapping: idmapped, shifted once, refused -----------------------------
def _busybox_root(path: str) -> None:
    for d in ("bin", "etc", "tmp", "proc", "dev", "sys"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", os.path.join(path, "bin", "sh"))
    with open(os.path.join(path, "etc", "hosts"), "w") as f:
        f.write("127.0.0.1 localhost\n")


def test_userns_roots_idmapped_shifted_and_refused(unit_registry, kept_files_in_tmp):
    r = unit_registry
    table = persist.resolve_table_dir(r.state_dir)
    base = tempfile.mkdtemp(prefix="linuxns-unit-uroot-", dir="/var/tmp")
    ram = os.path.join(base, "ram")
    try:
        os.chmod(base, 0o755)
        for d in ("idm", "sh"):
            _busybox_root(os.path.join(base, d))
        os.mkdir(ram)
        subprocess.run(["mount", "-t", "ramfs", "-o", "mode=755", "none", ram], check=True)  # ramfs: no idmapped mounts
        _busybox_root(os.path.join(ram, "r"))
        out = ensure(r, [{"name": "ri", "userns": "auto", "root": base + "/idm"},
                         {"name": "rs", "userns": "auto", "root": base + "/sh", "userns_root": "shift"}])
        gi, gs = (res["guest"] for res in out["results"])
        assert (gi["userns_root"], gi["userns_root_done"]) == ("auto", "idmap")
        assert (gs["userns_root"], gs["userns_root_done"]) == ("shift", "shift")
        start_i, start_s = gi["userns_range"]["start"], gs["userns_range"]["start"]
        probe = "id -u; stat -c %u:%g /etc/hosts; echo x > /etc/hosts && echo wrote; touch /tmp/new"
        for name in ("ri", "rs"):
            res = execute.run(r.find(name), execute.Request(argv=["/bin/sh", "-c", probe]))
            assert res["stdout"].split() == ["0", "0:0", "wrote"], (name, res)
        # from outside, on disk: the idmapped root keeps host ids (guest root wrote as host root),
        # the shifted one belongs to the guest's range
        for rel, want in (("etc/hosts", 0), ("tmp/new", 0), ("bin", 0)):
            assert os.lstat(os.path.join(base, "idm", rel)).st_uid == want, rel
        for rel in ("etc/hosts", "tmp/new", "bin/sh", ""):
            st = os.lstat(os.path.join(base, "sh", rel))
            assert (st.st_uid, st.st_gid) == (start_s, start_s), rel
        # and through the guest's init's root (/proc/PID/root): both are the guest's range
        assert os.stat("/proc/%d/root/etc/hosts" % gi["init_pid"]).st_uid == start_i
        # namespace_mount makes a missing mount point in an idmapped root (as the guest's root, owned by it)
        assert mounts.converge(r, "ri", [{"path": "/made/here", "fstype": "tmpfs", "src": "tmpfs"}], table_dir=table)["changed"]
        assert os.lstat(os.path.join(base, "idm", "made", "here")).st_uid == 0
        assert open(userns.shift_path(table, "rs")).read().split() == [str(start_s), "65536", base + "/sh"]
        # namespace_info says what was done; a recreate does not shift again
        infos = {g["name"]: g for g in guest_info.info(r, ["ri", "rs"])["guests"]}
        assert infos["ri"]["userns_root_done"] == "idmap" and infos["rs"]["userns_root_done"] == "shift"
        os.lchown(os.path.join(base, "sh", "etc", "hosts"), 0, 0)  # a marker of "not shifted again"
        os.kill(gs["init_pid"], 9)  # a lost init (a reboot of the guest): made again
        os.waitpid(gs["init_pid"], 0)
        redo = ensure(r, [{"name": "rs", "userns": "auto", "root": base + "/sh", "userns_root": "shift"}])
        assert redo["results"][0]["action"] == "recreate" and os.lstat(os.path.join(base, "sh", "etc", "hosts")).st_uid == 0
        # a root that cannot be idmapped: refused with idmap (nothing made, no range kept) ...
        with pytest.raises(InvalidInput, match=r"userns_root: idmap: guest 'rf': its root %s/r cannot be idmapped" % ram):
            ensure(r, [{"name": "rf", "userns": "auto", "root": ram + "/r", "userns_root": "idmap"}])
        assert r.load("rf") is None and userns.read_range(table, "rf") is None
        assert os.lstat(os.path.join(ram, "r", "etc", "hosts")).st_uid == 0
        # ... shifted with auto
        fb = ensure(r, [{"name": "rf", "userns": "auto", "root": ram + "/r"}])["results"][0]["guest"]
        assert fb["userns_root_done"] == "shift"
        assert os.lstat(os.path.join(ram, "r", "etc", "hosts")).st_uid == fb["userns_range"]["start"]
        with pytest.raises(InvalidInput, match="userns_root goes with userns: auto and a root only"):
            ensure(r, [{"name": "rx", "userns": "auto", "userns_root": "idmap"}])
    finally:
        ensure(r, [{"name": n, "state": "absent", "purge": True} for n in ("ri", "rs", "rf")])
        subprocess.run(["umount", ram], check=False)
        shutil.rmtree(base, ignore_errors=True)
