"""mounts.py and its parts (mountinfo, mount_spec, mount_worker, mount_mirror): mountinfo
parsing, option handling, symlink-safe walks and namespace_mount's engine applied to real guests (the unit tests run as root in a private mount namespace)."""

from __future__ import annotations

import errno
import os
import subprocess
import time

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import guests, mount_spec, mount_worker, mountinfo, mounts, persist
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestConflict, GuestError, GuestNotFound, InvalidInput, KernelError, MountBusy

SAMPLE = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "25 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
    "40 22 0:35 /srv/my\\040data /mnt/with\\040space\\134x rw,nosuid master:7 - ext4 /dev/vdb rw,errors=remount-ro\n"
    "41 22 0:36 / /both ro shared:3 master:9 - tmpfs tm\\011p rw,size=1024k,mode=750\n"
    "42 22 0:37 / /nob ro,noatime unbindable - tmpfs tmpfs rw\n"
    "43 22 0:38 / /plain rw - overlay overlay rw,lowerdir=/a:/b,upperdir=/u,workdir=/w\n"
)


# ---- mountinfo parsing -------------------------------------------------------------------
def test_parse_mountinfo_fields_escapes_and_optional_fields():
    table = mountinfo.parse_mountinfo(SAMPLE + "\n")
    assert [m["mount_id"] for m in table] == [22, 25, 40, 41, 42, 43]
    root = table[0]
    assert (root["path"], root["fstype"], root["src"], root["propagation"], root["peer_group"]) == ("/", "ext4", "/dev/vda", "shared", 1)
    spaced = table[2]
    assert spaced["root"] == "/srv/my data"
    assert spaced["path"] == "/mnt/with space\\x"
    assert spaced["propagation"] == "slave" and spaced["master"] == 7
    assert spaced["super_opts"] == "rw,errors=remount-ro"
    both = table[3]
    assert both["propagation"] == "shared" and both["master"] == 9 and both["src"] == "tm\tp"
    assert table[4]["propagation"] == "unbindable" and table[4]["mount_opts"] == "ro,noatime"
    assert table[5]["propagation"] == "private" and table[5]["optional"] == []


def test_top_mount_picks_the_one_on_top():
    text = SAMPLE + "50 42 0:40 / /nob rw - tmpfs second rw\n51 50 0:41 / /nob rw - tmpfs third rw\n"
    assert mountinfo.top_mount(mountinfo.parse_mountinfo(text), "/nob")["src"] == "third"
    assert mountinfo.top_mount(mountinfo.parse_mountinfo(text), "/nothing") is None


# ---- options and specs --------------------------------------------------------------------
def test_parse_opts_splits_flags_atime_and_filesystem_options():
    p = mount_spec.parse_opts("defaults,ro,nosuid,noatime,size=1m,mode=0750,x-foo,huge=never", "tmpfs")
    assert p["flags"] == {"ro": True, "nosuid": True}
    assert p["atime"] == "noatime"
    assert p["fsopts"] == [("size", "1m"), ("mode", "0750"), ("huge", "never")]
    assert mount_spec.render_opts(p["flags"], p["atime"], p["fsopts"]) == "ro,nosuid,noatime,size=1m,mode=0750,huge=never"


def test_norm_value_matches_what_the_kernel_shows():
    assert mount_spec.norm_value("size", "1m") == mount_spec.norm_value("size", "1024k")
    assert mount_spec.norm_value("size", "1000") == mount_spec.PAGE
    assert mount_spec.norm_value("mode", "0750") == mount_spec.norm_value("mode", "750") == 0o750
    assert mount_spec.norm_value("size", "50%") > 0


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"path": "data", "fstype": "tmpfs"}, "must be absolute"),
        ({"path": "/a/../etc", "fstype": "tmpfs"}, "must not contain '..'"),
        ({"path": "/", "fstype": "tmpfs"}, "guest's root"),
        ({"path": "/x"}, "fstype is required"),
        ({"path": "/x", "fstype": "bind"}, "src is required"),
        ({"path": "/x", "fstype": "bind", "src": "rel"}, "absolute host path"),
        ({"path": "/x", "fstype": "bind", "src": "/tmp", "opts": "size=1m"}, "bind mount takes only mount flags"),
        ({"path": "/x", "fstype": "tmpfs", "opts": "bind"}, "fstype=bind"),
        ({"path": "/x", "fstype": "tmpfs", "propagation": "everywhere"}, "propagation 'everywhere'"),
        ({"path": "/x", "fstype": "tmpfs", "state": "gone"}, "state must be one of"),
        ({"path": "/x", "fstype": "tmpfs", "opts": "size=1m,size=2m"}, "given twice"),
        ({"path": "/x", "fstype": "tmpfs", "create": "maybe"}, "create must be a boolean"),
    ],
)
def test_spec_refuses_bad_input(params, words):
    with pytest.raises(InvalidInput) as exc:
        mount_spec.MountSpec(params)
    assert words in exc.value.msg


def test_spec_table_line_round_trip(tmp_path):
    spec = mount_spec.MountSpec({"path": "/my data", "fstype": "bind", "src": "/srv/a b", "opts": "ro", "propagation": "rslave"})
    assert spec.table_line() == "/srv/a\\040b /my\\040data bind ro,x-linuxns.propagation=rslave 0 0"
    kept = persist.Kept(str(tmp_path), "g")
    kept.write_table([spec.table_line()])
    (entry,) = mounts.read_table(kept)
    assert (entry["src"], entry["path"], entry["fstype"], entry["opts"], entry["propagation"]) == ("/srv/a b", "/my data", "bind", "ro", "rslave")
    assert mounts.read_table(persist.Kept(str(tmp_path), "none")) == []


# ---- the symlink-safe walk ------------------------------------------------------------------
@pytest.fixture
def root_fd(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "srv").mkdir()
    os.symlink("/etc", str(root / "evil"))
    os.symlink("../../../../../../etc", str(root / "srv" / "up"))
    (root / "file").write_text("x")
    fd = os.open(str(root), os.O_PATH | os.O_DIRECTORY)
    yield fd, root
    os.close(fd)


@pytest.mark.parametrize("path", ["/evil", "/evil/ssl", "/srv/up/x"])
def test_walk_refuses_symlinks_so_nothing_escapes(root_fd, path):
    fd, root = root_fd
    with pytest.raises(InvalidInput) as exc:
        mount_worker.walk(path, fd, create="dir")
    assert "is a symbolic link" in exc.value.msg
    assert sorted(os.listdir(str(root))) == ["etc", "evil", "file", "srv"]
    assert os.listdir(str(root / "etc")) == []


def test_walk_creates_missing_components_and_reports_missing(root_fd):
    fd, root = root_fd
    with pytest.raises(mount_worker.Missing) as exc:
        mount_worker.walk("/a/b", fd)
    assert "/a does not exist" in exc.value.msg
    nfd, created = mount_worker.walk("/a/b/f", fd, create="file")
    os.close(nfd)
    assert created == ["/a", "/a/b", "/a/b/f"]
    assert (root / "a" / "b" / "f").is_file()
    with pytest.raises(InvalidInput) as exc:
        mount_worker.walk("/file/x", fd)
    assert "/file is not a directory" in exc.value.msg


# ---- the engine on real guests -----------------------------------------------------------------
def _guest(registry, name, **kw):
    guests.ensure_guests(registry, [dict({"name": name}, **kw)])
    return registry.load(name)


def _mountinfo(meta):
    with open("/proc/%d/mountinfo" % meta.init_pid) as f:
        return mountinfo.parse_mountinfo(f.read())


def _in_guest(meta, *argv):
    return subprocess.run(["nsenter", "--mount=" + meta.pins["mnt"].path, "/bin/busybox", *argv], capture_output=True, text=True, check=False)


@pytest.fixture
def table_dir(tmp_path, monkeypatch):
    d = tmp_path / "tables"
    monkeypatch.setenv(persist.TABLE_DIR_ENV, str(d))
    return d


def test_mounts_applied_in_a_guest(unit_registry, busybox_root, tmp_path, table_dir):
    meta = _guest(unit_registry, "m1", root=busybox_root)
    src = tmp_path / "hostonly"
    src.mkdir()
    (src / "hello").write_text("hi\n")
    entries = [
        {"path": "/data", "fstype": "tmpfs", "opts": "size=1m,mode=0750", "_in_list": True},
        {"path": "/b/deep", "fstype": "bind", "src": str(src), "opts": "ro,nosuid", "_in_list": True, "state": "ephemeral"},
        {"path": "/proc2", "fstype": "proc", "_in_list": True, "state": "ephemeral"},
    ]
    before = _mountinfo(meta)
    check = mounts.converge(unit_registry, "m1", entries, check_mode=True)
    assert check["changed"] and [r["action"] for r in check["results"]] == ["mount"] * 3
    assert _mountinfo(meta) == before and not (table_dir / "m1" / "fstab").exists()
    first = mounts.converge(unit_registry, "m1", entries)
    assert first["changed"] and [r["action"] for r in first["results"]] == ["mount"] * 3
    table = {m["path"]: m for m in _mountinfo(meta)}
    assert table["/data"]["fstype"] == "tmpfs" and "size=1024k" in table["/data"]["super_opts"] and "mode=750" in table["/data"]["super_opts"]
    assert table["/b/deep"]["mount_opts"].startswith("ro,nosuid")
    assert table["/proc2"]["fstype"] == "proc"
    assert _in_guest(meta, "cat", "/b/deep/hello").stdout == "hi\n"
    # proc of the guest's pid namespace: its init is pid 1 there, our pid is not
    assert "1" in _in_guest(meta, "ls", "/proc2").stdout.split() and str(os.getpid()) not in _in_guest(meta, "ls", "/proc2").stdout.split()
    # the host path is not visible in the guest other than through the bind
    assert _in_guest(meta, "ls", str(src)).returncode != 0
    assert (table_dir / "m1" / "fstab").read_text().splitlines()[-1] == "tmpfs /data tmpfs rw,size=1m,mode=0750 0 0"
    second = mounts.converge(unit_registry, "m1", entries)
    assert not second["changed"] and [r["action"] for r in second["results"]] == ["none"] * 3
    assert len(_mountinfo(meta)) == len(table)
    # invisible on the host
    with open("/proc/self/mountinfo") as f:
        assert "/proc2" not in f.read()


def test_remount_in_place_conflict_and_replace(unit_registry, busybox_root, table_dir):
    meta = _guest(unit_registry, "m2", root=busybox_root)
    base = {"path": "/data", "fstype": "tmpfs", "opts": "size=1m,mode=0755", "state": "ephemeral"}
    mounts.converge(unit_registry, "m2", [base])
    mid = mountinfo.top_mount(_mountinfo(meta), "/data")["mount_id"]
    r = mounts.converge(unit_registry, "m2", [dict(base, opts="ro,size=2m,mode=0755", propagation="shared")])
    assert r["results"][0]["action"] == "remount"
    m = mountinfo.top_mount(_mountinfo(meta), "/data")
    assert m["mount_id"] == mid and m["mount_opts"].startswith("ro") and "size=2048k" in m["super_opts"] and m["propagation"] == "shared"
    assert "size=1024k" in r["diff"]["before"] and "size=2m" in r["diff"]["after"]
    # mode cannot change in place: fails naming recreate, nothing changes
    with pytest.raises(GuestConflict) as exc:
        mounts.converge(unit_registry, "m2", [dict(base, opts="ro,size=2m,mode=0700")])
    assert "recreate=true" in exc.value.msg and "mode=0700" in exc.value.msg
    assert mountinfo.top_mount(_mountinfo(meta), "/data")["mount_id"] == mid
    r = mounts.converge(unit_registry, "m2", [dict(base, opts="size=2m,mode=0700", recreate=True)])
    assert r["results"][0]["action"] == "replace"
    here = [x for x in _mountinfo(meta) if x["path"] == "/data"]
    assert len(here) == 1 and "mode=700" in here[0]["super_opts"]


def test_unmounted_absent_and_busy(unit_registry, busybox_root, table_dir):
    meta = _guest(unit_registry, "m3", root=busybox_root)
    spec = {"path": "/data", "fstype": "tmpfs"}
    mounts.converge(unit_registry, "m3", [spec])
    tab = table_dir / "m3" / "fstab"
    assert "/data" in tab.read_text()
    holder = subprocess.Popen(["nsenter", "--mount=" + meta.pins["mnt"].path, "/bin/busybox", "sh", "-c", "cd /data && exec sleep 60"])
    try:
        for _attempt in range(100):
            with open("/proc/%d/comm" % holder.pid) as f:
                if f.read().strip() == "sleep":  # exec'd after cd /data
                    break
            time.sleep(0.02)
        with pytest.raises(MountBusy) as exc:
            mounts.converge(unit_registry, "m3", [{"path": "/data", "state": "unmounted"}])
        assert "target is busy" in exc.value.msg and "pid %d (sleep" % holder.pid in exc.value.msg and "cwd" in exc.value.msg
        assert exc.value.errno == errno.EBUSY and exc.value.details["path"] == "/data"
        assert any("pid %d (sleep" % holder.pid in h for h in exc.value.details["holders"])
        assert mountinfo.top_mount(_mountinfo(meta), "/data") is not None
    finally:
        holder.kill()
        holder.wait()
    r = mounts.converge(unit_registry, "m3", [{"path": "/data", "state": "unmounted"}])
    assert r["changed"] and mountinfo.top_mount(_mountinfo(meta), "/data") is None and "/data" in tab.read_text()
    assert not mounts.converge(unit_registry, "m3", [{"path": "/data", "state": "unmounted"}])["changed"]
    r = mounts.converge(unit_registry, "m3", [{"path": "/data", "state": "absent"}])
    assert r["changed"] and "/data" not in tab.read_text()
    assert not mounts.converge(unit_registry, "m3", [{"path": "/data", "state": "absent"}])["changed"]


def test_symlink_inside_guest_never_mounts_over_host_etc(unit_registry, busybox_root, table_dir):
    os.symlink("/etc", os.path.join(busybox_root, "evil"))
    meta = _guest(unit_registry, "m4", root=busybox_root)
    with open("/proc/self/mountinfo") as f:
        host_before = f.read()
    guest_before = _mountinfo(meta)
    with pytest.raises(InvalidInput) as exc:
        mounts.converge(unit_registry, "m4", [{"path": "/evil", "fstype": "tmpfs"}])
    assert "/evil is a symbolic link (to /etc)" in exc.value.msg
    with pytest.raises(InvalidInput):
        mounts.converge(unit_registry, "m4", [{"path": "/evil/sub", "fstype": "tmpfs"}])
    with open("/proc/self/mountinfo") as f:
        assert f.read() == host_before
    assert _mountinfo(meta) == guest_before
    assert not os.path.exists("/etc/sub")


def test_bad_input_changes_nothing(unit_registry, busybox_root, tmp_path, table_dir):
    meta = _guest(unit_registry, "m5", root=busybox_root)
    _guest(unit_registry, "nomnt", namespaces=["uts"])
    before = _mountinfo(meta)
    ok = {"path": "/ok", "fstype": "tmpfs", "_in_list": True}
    cases = [
        ([ok, {"path": "/b", "fstype": "bind", "src": str(tmp_path / "missing"), "_in_list": True}], InvalidInput, "does not exist on the host"),
        ([ok, {"path": "/b", "fstype": "nosuchfs", "_in_list": True}], InvalidInput, "not a filesystem type"),
        ([ok, {"path": "/b", "fstype": "tmpfs", "opts": "size=lots", "_in_list": True}], InvalidInput, "does not accept 'size=lots'"),
        ([ok, {"path": "/b", "fstype": "tmpfs", "opts": "bogus", "_in_list": True}], InvalidInput, "does not accept 'bogus'"),
        ([ok, dict(ok)], InvalidInput, "listed twice"),
        ([ok, {"path": "/nothere", "fstype": "tmpfs", "create": False, "_in_list": True}], InvalidInput, "set create=true"),
        ([ok, {"path": "/nothere", "opts": "ro", "state": "remounted", "_in_list": True}], InvalidInput, "nothing is mounted"),
    ]
    for entries, cls, words in cases:
        with pytest.raises(cls) as exc:
            mounts.converge(unit_registry, "m5", entries)
        assert words in exc.value.msg, exc.value.msg
        assert exc.value.msg.startswith("mounts[1]: ") or "twice" in exc.value.msg
    assert _mountinfo(meta) == before and not (table_dir / "m5" / "fstab").exists()
    assert not os.path.exists(os.path.join(busybox_root, "nothere"))
    with pytest.raises(GuestNotFound):
        mounts.converge(unit_registry, "ghost", [ok])
    with pytest.raises(InvalidInput) as exc:
        mounts.converge(unit_registry, "nomnt", [ok])
    assert "no mount namespace of its own" in exc.value.msg


def test_failure_mid_batch_detaches_what_it_attached(unit_registry, busybox_root, table_dir):
    meta = _guest(unit_registry, "m6", root=busybox_root)
    mounts.converge(unit_registry, "m6", [{"path": "/ro", "fstype": "tmpfs", "opts": "ro", "state": "ephemeral"}])
    before = _mountinfo(meta)
    entries = [
        {"path": "/first", "fstype": "tmpfs", "_in_list": True, "state": "ephemeral"},
        # planned fine (a missing mount point is created), fails when mkdir meets the read-only tmpfs
        {"path": "/ro/sub", "fstype": "tmpfs", "_in_list": True, "state": "ephemeral"},
    ]
    with pytest.raises(GuestError) as exc:
        mounts.converge(unit_registry, "m6", entries)
    assert exc.value.msg == "guest 'm6': /ro/sub: Read-only file system"
    assert _mountinfo(meta) == before
    assert not os.path.exists(os.path.join(busybox_root, "first"))


def test_table_reapplied_when_the_guest_is_recreated(unit_registry, busybox_root, table_dir):
    meta = _guest(unit_registry, "m7", root=busybox_root)
    mounts.converge(unit_registry, "m7", [{"path": "/data", "fstype": "tmpfs", "opts": "size=2m", "propagation": "shared"}])
    # the kernel's 64-bit mount namespace id is never reused (inode numbers are)
    old_id = sc.mnt_ns_id(meta.pins["mnt"].path)
    guests.ensure_guests(unit_registry, [{"name": "m7", "state": "absent"}])
    meta = _guest(unit_registry, "m7", root=busybox_root)
    assert old_id is not None and sc.mnt_ns_id(meta.pins["mnt"].path) != old_id
    m = mountinfo.top_mount(_mountinfo(meta), "/data")
    assert m is not None and "size=2048k" in m["super_opts"] and m["propagation"] == "shared"
    # a broken table makes the creation fail cleanly, with a message naming the table
    (table_dir / "m7" / "fstab").write_text("tmpfs /data tmpfs size=lots 0 0\n")
    guests.ensure_guests(unit_registry, [{"name": "m7", "state": "absent"}])
    with pytest.raises(GuestError) as exc:
        guests.ensure_guests(unit_registry, [{"name": "m7", "root": busybox_root}])
    assert "mount table" in exc.value.msg and "size=lots" in exc.value.msg
    assert unit_registry.load("m7") is None


def test_compare_knows_options_the_kernel_hides_at_their_default():
    (m,) = mountinfo.parse_mountinfo("60 22 0:50 / /t rw,relatime - tmpfs tmpfs rw,size=1024k\n")
    spec = mount_spec.MountSpec({"path": "/t", "fstype": "tmpfs", "opts": "size=1m,mode=0700"})
    assert mounts.compare(spec, m, {"exists": True})["fixed"] == ["mode=0700 (now mode=1777)"]
    spec = mount_spec.MountSpec({"path": "/t", "fstype": "tmpfs", "opts": "size=1m,mode=1777,nr_inodes=0"})
    cmp = mounts.compare(spec, m, {"exists": True})
    assert not cmp["fixed"] and not mounts._changed(cmp)


def _host_table():
    with open("/proc/self/mountinfo") as f:
        return mountinfo.parse_mountinfo(f.read())


@pytest.fixture
def mirror_base(tmp_path):
    base = str(tmp_path / "guests")
    yield base
    for path in (base + "/m8", base):
        for _attempt in range(4):
            if subprocess.run(["umount", "-l", path], capture_output=True, check=False).returncode:
                break


def test_mirror_tree_shows_guest_mounts_and_reports_campers(unit_registry, busybox_root, mirror_base, table_dir):
    meta = _guest(unit_registry, "m8", root=busybox_root)
    base = mirror_base
    mirror = base + "/m8"
    check = mounts.converge(unit_registry, "m8", [], check_mode=True, mirror=base)
    assert check["changed"] and check["mirror"]["action"] == "create" and mountinfo.top_mount(_host_table(), mirror) is None
    r = mounts.converge(unit_registry, "m8", [], mirror=base)
    assert r["mirror"] == {"path": mirror, "state": "present", "action": "create", "changed": True}
    host = _host_table()
    assert mountinfo.top_mount(host, base)["propagation"] == "unbindable"
    assert mountinfo.top_mount(host, mirror)["propagation"] == "shared"
    assert os.path.exists(mirror + "/bin/busybox")
    assert not mounts.converge(unit_registry, "m8", [], mirror=base)["changed"]
    # a mount made in the guest later shows in the mirror
    mounts.converge(unit_registry, "m8", [{"path": "/data", "fstype": "tmpfs", "state": "ephemeral"}])
    assert mountinfo.top_mount(_host_table(), mirror + "/data")["fstype"] == "tmpfs"
    # a host process camping in the mirror keeps the guest's unmount from happening
    camper = subprocess.Popen(["sleep", "60"], cwd=mirror + "/data")
    try:
        with pytest.raises(KernelError) as exc:
            mounts.converge(unit_registry, "m8", [{"path": "/data", "state": "unmounted"}])
        assert "target is busy" in exc.value.msg and "pid %d (sleep on the host, in the mirror: cwd)" % camper.pid in exc.value.msg
        with pytest.raises(KernelError) as exc:
            mounts.converge(unit_registry, "m8", [], mirror=base, mirror_state="absent")
        assert "pid %d" % camper.pid in exc.value.msg
    finally:
        camper.kill()
        camper.wait()
    r = mounts.converge(unit_registry, "m8", [], mirror=base, mirror_state="absent")
    assert r["mirror"]["action"] == "remove"
    assert mountinfo.top_mount(_host_table(), mirror) is None and not os.path.exists(mirror)
    # removing the mirror did not unmount anything in the guest
    assert mountinfo.top_mount(_mountinfo(meta), "/data") is not None
    assert not mounts.converge(unit_registry, "m8", [], mirror=base, mirror_state="absent")["changed"]
    with pytest.raises(InvalidInput):
        mounts.converge(unit_registry, "m8", [], mirror="relative")


def test_kernel_without_the_new_mount_api_is_named(monkeypatch, tmp_path):
    import errno

    def no_fsopen(*_args, **_kw):
        raise KernelError("fsopen(tmpfs) failed: Function not implemented (ENOSYS)", errno=errno.ENOSYS)

    monkeypatch.setattr(mount_spec.sc, "fsopen", no_fsopen)
    spec = mount_spec.MountSpec({"path": "/x", "fstype": "bind", "src": str(tmp_path)})
    with pytest.raises(KernelError) as exc:
        mount_spec.validate_host_side(spec, mount_spec.HostMounts())
    assert "lacks the new mount API" in exc.value.msg and "Linux 5.2" in exc.value.msg


def test_table_dir_given_to_ensure_guests_wins_after_the_note_is_gone(unit_registry, busybox_root, tmp_path, monkeypatch):
    # namespace_create's table_dir option: the remembered folder is a note under /run,
    # which a reboot wipes; the option (passed explicitly, no side channel) still finds the table.
    monkeypatch.setenv(persist.TABLE_DIR_ENV, str(tmp_path / "default-tables"))
    tables = tmp_path / "elsewhere"
    _guest(unit_registry, "m9", root=busybox_root)
    mounts.converge(unit_registry, "m9", [{"path": "/data", "fstype": "tmpfs", "opts": "size=3m"}], table_dir=str(tables))
    assert (tables / "m9" / "fstab").is_file()
    assert not os.path.exists(os.path.join(unit_registry.state_dir, persist.TABLE_NOTE))
    guests.ensure_guests(unit_registry, [{"name": "m9", "state": "absent"}])
    meta = _guest(unit_registry, "m9", root=busybox_root)
    assert mountinfo.top_mount(_mountinfo(meta), "/data") is None      # the default folder: no table there
    guests.ensure_guests(unit_registry, [{"name": "m9", "state": "absent"}])
    guests.ensure_guests(unit_registry, [{"name": "m9", "root": busybox_root}], table_dir=str(tables))
    meta = unit_registry.load("m9")
    m = mountinfo.top_mount(_mountinfo(meta), "/data")
    assert m is not None and "size=3072k" in m["super_opts"]
    assert not hasattr(unit_registry, "table_dir")
