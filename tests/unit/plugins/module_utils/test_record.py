"""The typed guest record (registry.GuestRecord): load/save, versions, corrupt files."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils.errors import RecordTooNew

pytestmark = pytest.mark.unit

# A record as the commit before the typed record wrote it (registry.save of a dict): the file
# format is unchanged, so guests made by that version load as they are.
OLD_FORMAT = {
    "context_id": 2,
    "created": 1780000000.25,
    "description": None,
    "gid_map": None,
    "hostname": "web",
    "init": None,
    "init_pid": 8111,
    "init_start": 240149,
    "name": "web",
    "namespaces": ["mnt", "uts", "ipc", "net", "pid"],
    "netns_alias": "/run/netns/web",
    "phase": "ready",
    "pins": {
        "mnt": {"dev": 4, "ino": 4026552477, "path": "/run/linuxns/guests/web/ns/mnt"},
        "net": {"dev": 4, "ino": 4026535650, "path": "/run/linuxns/guests/web/ns/net"},
    },
    "reaper": "/usr/bin/catatonit",
    "root": None,
    "share": {},
    "stop_signal": "SIGTERM",
    "stop_timeout": 10.0,
    "time_offsets": None,
    "uid_map": None,
    "version": 1,
}


def _write(path, data) -> str:
    if isinstance(data, dict):
        data = json.dumps(data)
    with open(str(path), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return str(path)


def test_old_format_loads_with_typed_attributes(tmp_path):
    rec = reg.GuestRecord.load(_write(tmp_path / "meta.json", OLD_FORMAT), "web")
    assert isinstance(rec, reg.GuestRecord) and rec.phase == reg.READY and rec.problem is None
    assert (rec.name, rec.context_id, rec.hostname, rec.stop_signal, rec.stop_timeout) == ("web", 2, "web", "SIGTERM", 10.0)
    assert rec.namespaces == ["mnt", "uts", "ipc", "net", "pid"] and rec.share == {}
    assert rec.pins["net"] == reg.Pin("/run/linuxns/guests/web/ns/net", 4, 4026535650)
    assert (rec.init_pid, rec.init_start, rec.reaper, rec.netns_alias) == (8111, 240149, "/usr/bin/catatonit", "/run/netns/web")
    assert rec.extra == {}


def test_save_load_round_trip_keeps_the_file_format(tmp_path):
    path = _write(tmp_path / "meta.json", OLD_FORMAT)
    rec = reg.GuestRecord.load(path, "web")
    rec.save(path)
    assert json.loads(open(path).read()) == OLD_FORMAT  # byte-for-byte the same keys and values
    assert [n for n in os.listdir(str(tmp_path)) if ".tmp." in n] == []  # atomic: no temp file left
    rec.hostname, rec.init_pid = "web2", None
    rec.save(path)
    again = reg.GuestRecord.load(path, "web")
    assert (again.hostname, again.init_pid, again.pins) == ("web2", None, rec.pins)


def test_record_without_a_cgroup_loads_and_one_with_a_cgroup_round_trips(tmp_path):
    path = _write(tmp_path / "meta.json", OLD_FORMAT)
    rec = reg.GuestRecord.load(path, "web")
    assert (rec.phase, rec.cgroup, rec.limits, rec.cgroup_parent, rec.cgroup_procs()) == (reg.READY, None, None, None, [])
    rec.cgroup = {"parent": "auto", "paths": {"unified": "/sys/fs/cgroup/linuxns/web", "pids": "/sys/fs/cgroup/pids/linuxns/web"}}
    rec.limits, rec.cgroup_parent = {"pids": 64}, "auto"
    rec.save(path)
    again = reg.GuestRecord.load(path, "web")
    assert again == rec and again.limits == {"pids": 64}
    assert again.cgroup_procs() == ["/sys/fs/cgroup/pids/linuxns/web/cgroup.procs", "/sys/fs/cgroup/linuxns/web/cgroup.procs"]
    bad = _write(tmp_path / "bad.json", dict(OLD_FORMAT, cgroup={"paths": {"pids": "relative"}}))
    assert "does not map hierarchies to folders" in reg.GuestRecord.load(bad, "web").problem


def test_record_without_version_is_migrated_and_unknown_keys_are_kept(tmp_path):
    data = {k: v for k, v in OLD_FORMAT.items() if k not in ("version", "description", "created")}
    data["future_field"] = {"a": 1}
    path = _write(tmp_path / "meta.json", data)
    rec = reg.GuestRecord.load(path, "web")
    assert rec.phase == reg.READY and rec.description is None and rec.created is None
    assert rec.field("future_field") == {"a": 1} and rec.extra == {"future_field": {"a": 1}}
    rec.save(path)
    written = json.loads(open(path).read())
    assert written["version"] == reg.META_VERSION and written["future_field"] == {"a": 1}


def test_from_fields_builds_a_new_record_and_copy_is_independent():
    rec = reg.GuestRecord.from_fields({"name": "n1", "namespaces": ["net"], "share": {}, "hostname": "h", "later": 3})
    assert (rec.name, rec.phase, rec.namespaces, rec.hostname, rec.pins, rec.extra) == ("n1", reg.CREATING, ["net"], "h", {}, {"later": 3})
    other = rec.copy({"hostname": "h2"})
    assert other.hostname == "h2" and rec.hostname == "h" and other.field("later") == 3


def test_newer_version_is_refused_naming_guest_and_both_versions(unit_registry):
    r = unit_registry
    r.ensure()
    os.makedirs(r.pin_dir("nw"))
    _write(r.meta_path("nw"), dict(OLD_FORMAT, name="nw", version=reg.META_VERSION + 1))
    try:
        for call in (lambda: r.load("nw"), lambda: r.find("nw")):
            with pytest.raises(RecordTooNew) as exc:
                call()
            msg = exc.value.msg
            assert "guest 'nw'" in msg and "newer version" in msg
            assert "record version %d" % (reg.META_VERSION + 1) in msg and "up to version %d" % reg.META_VERSION in msg
            assert exc.value.details == {"version": reg.META_VERSION + 1, "supported": reg.META_VERSION}
    finally:
        os.unlink(r.meta_path("nw"))  # the fixture's clean-up loads every record


@pytest.mark.parametrize(
    "content,problem",
    [
        ("{not json", "it is not JSON"),
        (b'{"name": "\xff"}', "it is not JSON"),  # not UTF-8
        ("[1, 2]", "it holds a JSON list, not an object"),
        (json.dumps(dict(OLD_FORMAT, version="1")), "its version '1' is not a record version"),
        (json.dumps(dict(OLD_FORMAT, name="other")), "it names another guest, 'other'"),
        (json.dumps(dict(OLD_FORMAT, init_pid="8111")), "its init_pid is '8111', not a int"),
        (json.dumps(dict(OLD_FORMAT, context_id=True)), "its context_id is True"),
        (json.dumps(dict(OLD_FORMAT, namespaces=["net", 3])), "its namespaces ['net', 3] is not a list of strings"),
        (json.dumps(dict(OLD_FORMAT, pins={"net": {"path": "/x"}})), "its pin of the net namespace is"),
        (json.dumps(dict(OLD_FORMAT, share={"net": 5})), "its share {'net': 5}"),
        (json.dumps({"name": "web"}), "it has no phase"),
    ],
)
def test_corrupt_file_loads_as_corrupt_with_its_reason(tmp_path, content, problem):
    rec = reg.GuestRecord.load(_write(tmp_path / "meta.json", content), "web")
    assert rec.name == "web" and rec.phase == reg.CORRUPT and problem in rec.problem
    assert reg.health(rec) == ["its metadata cannot be read (%s)" % rec.problem]
    with pytest.raises(reg.GuestError, match="could not be read is not written back"):
        rec.save(str(tmp_path / "again.json"))


def test_missing_file_is_none(tmp_path):
    assert reg.GuestRecord.load(str(tmp_path / "nothing.json"), "web") is None


def test_connection_listing_shows_a_too_new_record_and_still_lists_the_others(unit_registry, capsys):
    from ansible_collections.linuxns.guests.plugins.module_utils import entry

    r = unit_registry
    r.ensure()
    for name, version in (("nw", reg.META_VERSION + 1), ("od", reg.META_VERSION)):
        os.makedirs(r.pin_dir(name))
        _write(r.meta_path(name), dict(OLD_FORMAT, name=name, version=version, phase=reg.CREATING, pins={}, context_id=None))
    try:
        assert entry.status(r, ["nw"]) == 0
        guests = json.loads(capsys.readouterr().out)["guests"]
        assert sorted(guests) == ["nw", "od"] and guests["nw"]["status"] == guests["od"]["status"] == "stopped"
        assert "written by a newer version" in guests["nw"]["problems"][0]
        assert guests["od"]["problems"] == ["creation of the guest did not finish (phase creating)"]
    finally:
        os.unlink(r.meta_path("nw"))  # the fixture's clean-up loads every record


# The record as the confinement change wrote it: privileged, capabilities, no_new_privs and
# seccomp were keys the record did not know (kept in ``extra``, read with ``field``).
CONFINED_FORMAT = dict(OLD_FORMAT, root="/srv/web", privileged=False, capabilities={"add": ["CAP_NET_RAW"]},
                       no_new_privs=True, seccomp="default")


def test_confinement_fields_are_typed_attributes_and_old_records_load(tmp_path):
    from ansible_collections.linuxns.guests.plugins.module_utils import confine

    rec = reg.GuestRecord.load(_write(tmp_path / "meta.json", CONFINED_FORMAT), "web")
    assert rec.problem is None and rec.extra == {}
    assert (rec.privileged, rec.capabilities, rec.no_new_privs, rec.seccomp) == (False, {"add": ["CAP_NET_RAW"]}, True, "default")
    assert confine.settings_of(rec) == {"privileged": False, "capabilities": {"add": ["CAP_NET_RAW"]},
                                        "no_new_privs": True, "seccomp": "default"}
    assert "CAP_NET_RAW" in confine.for_guest(rec).capabilities
    # made before proc_sys was recorded: a guest with a root got the masks then
    assert rec.proc_sys == reg.PROC_SYS_MASKED
    # a record from before the confinement fields: the default confinement, no masks without a root
    old = reg.GuestRecord.load(_write(tmp_path / "old.json", OLD_FORMAT), "web")
    assert (old.privileged, old.capabilities, old.no_new_privs, old.seccomp, old.proc_sys) == (None,) * 5
    assert confine.for_guest(old) == confine.Confinement.from_settings(None)


def test_confinement_fields_round_trip_and_are_type_checked(tmp_path):
    path = _write(tmp_path / "meta.json", CONFINED_FORMAT)
    rec = reg.GuestRecord.load(path, "web")
    rec.save(path)
    assert json.loads(open(path).read()) == dict(CONFINED_FORMAT, proc_sys="masked")
    rec.privileged, rec.proc_sys = True, reg.PROC_SYS_OPEN
    rec.save(path)
    again = reg.GuestRecord.load(path, "web")
    assert (again.privileged, again.proc_sys) == (True, "unmasked") and again == rec
    for key, bad in (("privileged", 1), ("no_new_privs", "yes"), ("capabilities", ["CAP_CHOWN"]), ("seccomp", False)):
        broken = reg.GuestRecord.load(_write(tmp_path / "bad.json", dict(CONFINED_FORMAT, **{key: bad})), "web")
        assert broken.phase == reg.CORRUPT and "its %s is %r" % (key, bad) in broken.problem
