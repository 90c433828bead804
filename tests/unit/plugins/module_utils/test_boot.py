"""Saved definitions (persist.py, TABLE_DIR/NAME/guest.json) and the restore service (boot.py),
with real guests in a private state folder (as root, no Ansible)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import boot, guest_stop, guests, model, persist
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError

pytestmark = pytest.mark.unit


def _stamp(path):
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns


# ---- the definition file -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,words",
    [
        ("{torn", r"kept definition .*guest.json cannot be read"),
        ("[1, 2]", "is broken: not a JSON object"),
        ('{"guest": {}}', r"is broken: no format version \(version None\)"),
        ('{"version": true}', "is broken: no format version"),
        ('{"version": 1, "name": "other"}', "is broken: it names guest 'other'"),
        ('{"version": 1, "state": "gone"}', "is broken: state 'gone' is not one of present, frozen, absent"),
        ('{"version": 1, "guest": []}', "is broken: guest is not a dict"),
        ('{"version": 1, "guest": {"autostart": "yes"}}', "is broken: guest.autostart 'yes' is not a bool"),
        ('{"version": 1, "guest": {"context_id": true}}', "is broken: guest.context_id True is not a int"),
        ('{"version": 1, "links": {"eth0": 5}}', "is broken: links.eth0 is not a link entry"),
        ('{"version": 2, "guest": {}}', "has format version 2; this version of linuxns.guests reads version 1 at most"),
    ],
)
def test_bad_definition_refused_naming_guest_and_file(tmp_path, text, words):
    k = persist.Kept(str(tmp_path), "g1")
    os.makedirs(k.folder)
    with open(k.definition_path, "w") as f:
        f.write(text)
    with pytest.raises(GuestError, match=words) as exc:
        k.read_definition()
    assert "guest 'g1'" in exc.value.msg and k.definition_path in exc.value.msg
    assert persist.definitions(str(tmp_path))[0][0] == "g1" and isinstance(persist.definitions(str(tmp_path))[0][1], GuestError)


def test_unknown_guest_fields_are_kept_and_recorded_fields_are_generic(tmp_path, monkeypatch):
    k = persist.Kept(str(tmp_path), "g1")
    k.write_definition({"guest": {"later_field": {"x": 1}}})
    assert k.read_definition()["guest"] == {"later_field": {"x": 1}}  # a field of a newer model row: not refused
    # a model row added later is saved with no change in persist.py (as the restart rows were)
    meta = reg.GuestRecord("g1")
    meta.update({"namespaces": ["uts"], "a_later_row": "on-failure", "restart": "always", "autostart": True, "uid_map": ["0 0 1"]})
    assert "a_later_row" not in persist.guest_fields(meta) and persist.guest_fields(meta)["restart"] == "always"
    monkeypatch.setattr(model, "RECORDED", model.RECORDED + ("a_later_row",))
    fields = persist.guest_fields(meta)
    assert fields["a_later_row"] == "on-failure" and fields["autostart"] is True and fields["namespaces"] == ["uts"]
    meta.update({"userns": "auto", "gid_map": ["0 100000 65536"]})
    assert "uid_map" not in persist.guest_fields(meta) and "gid_map" not in persist.guest_fields(meta)


# ---- namespace_create keeps it -------------------------------------------------------------------
def test_namespace_create_saves_the_definition_idempotently(unit_registry, tmp_path):
    r, tables = unit_registry, str(tmp_path / "tables")
    k = persist.Kept(tables, "d1")
    entry = {"name": "d1", "namespaces": ["uts", "ipc"], "hostname": "d1.lab", "autostart": True, "description": "x"}
    check = guests.ensure_guests(r, [entry], True, table_dir=tables)
    assert check["changed"] and not os.path.exists(k.definition_path)  # check mode writes nothing
    first = guests.ensure_guests(r, [entry], table_dir=tables)
    assert first["results"][0]["guest"]["autostart"] is True
    d = k.read_definition()
    ctx = r.load("d1").context_id
    assert d["version"] == 1 and d["name"] == "d1" and d["state"] == "present" and d["links"] == {}
    assert d["guest"]["hostname"] == "d1.lab" and d["guest"]["autostart"] is True and d["guest"]["context_id"] == ctx
    assert d["guest"]["namespaces"] == ["ipc", "uts"] and d["guest"]["description"] == "x"
    assert set(d["guest"]) <= set(model.RECORDED)
    stamp = _stamp(k.definition_path)
    second = guests.ensure_guests(r, [entry], table_dir=tables)
    assert not second["changed"] and _stamp(k.definition_path) == stamp  # not rewritten
    # left out: an existing guest keeps its autostart
    assert not guests.ensure_guests(r, [{"name": "d1", "namespaces": ["uts", "ipc"], "hostname": "d1.lab",
                                         "description": "x"}], table_dir=tables)["changed"]
    # autostart changes in place, shown in the result and the diff
    off = dict(entry, autostart=False)
    check = guests.ensure_guests(r, [off], True, table_dir=tables)
    assert check["changed"] and check["results"][0]["action"] == "update" and _stamp(k.definition_path) == stamp
    out = guests.ensure_guests(r, [off], table_dir=tables)
    assert out["results"][0]["action"] == "update" and out["results"][0]["reasons"] == ["autostart differs"]
    assert out["diff"]["before"]["d1"]["autostart"] is True and out["diff"]["after"]["d1"]["autostart"] is False
    assert r.load("d1").context_id == ctx and k.read_definition()["guest"]["autostart"] is False
    assert not guests.ensure_guests(r, [off], table_dir=tables)["changed"]
    # state=absent keeps the definition, marked absent; purge forgets it
    guests.ensure_guests(r, [{"name": "d1", "state": "absent"}], table_dir=tables)
    assert k.read_definition()["state"] == "absent" and k.read_definition()["guest"]["hostname"] == "d1.lab"
    guests.ensure_guests(r, [{"name": "d1", "state": "absent", "purge": True}], table_dir=tables)
    assert not os.path.exists(k.folder)


def test_namespace_create_refuses_a_broken_or_newer_definition_changing_nothing(unit_registry, tmp_path):
    r, tables = unit_registry, str(tmp_path / "tables")
    k = persist.Kept(tables, "d2")
    os.makedirs(k.folder)
    for text, words in (('{"version": 9}', "has format version 9"), ("{torn", "cannot be read")):
        with open(k.definition_path, "w") as f:
            f.write(text)
        for check_mode in (True, False):
            with pytest.raises(GuestError, match=words) as exc:
                guests.ensure_guests(r, [{"name": "d2", "namespaces": ["uts"]}], check_mode, table_dir=tables)
            assert "guest 'd2'" in exc.value.msg and k.definition_path in exc.value.msg
            assert r.load("d2") is None and open(k.definition_path).read() == text
    # purge forgets a broken definition
    out = guests.ensure_guests(r, [{"name": "d2", "state": "absent", "purge": True}], table_dir=tables)
    assert out["results"][0]["action"] == "purge" and not os.path.exists(k.folder)


# ---- the restore service -------------------------------------------------------------------------
def _defs(**share):
    return {n: {"guest": {"share": s}} for n, s in share.items()}


def test_dependency_order():
    names, cyclic = boot.order(_defs(c={"net": "b"}, b={"net": "a", "ipc": "a"}, a={}, x={"uts": "/proc/1/ns/uts"},
                                     y={"net": "not-wanted"}))
    assert names == ["a", "x", "y", "b", "c"] and cyclic == {}
    names, cyclic = boot.order(_defs(p={"net": "q"}, q={"uts": "p"}, r={"net": "p"}, s={}))
    assert names == ["s"] and sorted(cyclic) == ["p", "q", "r"] and "cycle" in cyclic["p"]


def test_main_usage_and_config_errors(tmp_path, capsys):
    assert boot.main(["--bogus"]) == boot.EXIT_USAGE
    assert boot.main(["--table-dir", "relative"]) == boot.EXIT_USAGE
    assert "table_dir 'relative' must be an absolute path" in capsys.readouterr().err
    assert boot.main(["--table-dir", str(tmp_path / "none"), "--state-dir", str(tmp_path / "s")]) == boot.EXIT_OK
    assert "does not exist: no guest to bring back" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "s")


def _reboot(r):
    """What a reboot does to the registry: every guest stopped and its state (pins, record, context
    id) gone; the kept files stay."""
    for name in r.names():
        guest_stop.remove(r, name, r.load(name))
    assert r.names() == [] and r.used_context_ids() == set()


def test_restore_brings_back_autostart_guests_in_order(unit_registry, tmp_path):
    r, tables = unit_registry, str(tmp_path / "tables")
    root = tmp_path / "root"
    root.mkdir()
    plan = [
        {"name": "base", "namespaces": ["uts", "ipc", "net"], "hostname": "base.lab", "autostart": True},
        {"name": "child", "namespaces": ["uts"], "share": {"net": "base", "ipc": "base"}, "autostart": True,
         "context_id": 4242},
        {"name": "manual", "namespaces": ["uts"]},
        {"name": "gone", "namespaces": ["mnt", "uts", "pid"], "root": str(root), "autostart": True},
        {"name": "removed", "namespaces": ["uts"], "autostart": True},
    ]
    guests.ensure_guests(r, plan, table_dir=tables)
    guests.ensure_guests(r, [{"name": "removed", "state": "absent"}], table_dir=tables)
    before = {n: r.load(n).context_id for n in r.names()}
    persist.Kept(tables, "junk").write_definition({"guest": {}})
    with open(persist.Kept(tables, "junk").definition_path, "w") as f:
        f.write('{"version": 7}')
    _reboot(r)
    shutil.rmtree(root)  # a broken guest: its root is gone
    assert r.names() == []
    # dry run: nothing changes
    dry = io.StringIO()
    assert boot.restore(r, tables, boot.Report(dry, False), dry_run=True) == boot.EXIT_FAILED
    assert r.names() == [] and "guest base: would be brought back" in dry.getvalue()
    out = io.StringIO()
    status = boot.restore(r, tables, boot.Report(out, False))
    lines = out.getvalue().splitlines()
    assert status == boot.EXIT_FAILED, lines
    by_guest = {line.split(": ")[1]: line for line in lines if line.startswith("linuxns-guests-restore: guest ")}
    assert sorted(r.names()) == ["base", "child"], lines
    for n in ("base", "child"):
        meta = r.load(n)
        assert meta.phase == reg.READY and not reg.health(meta) and meta.context_id == before[n]
        assert "up (created; context id %d;" % before[n] in by_guest["guest " + n]
    assert r.load("child").pins["net"].ino == r.load("base").pins["net"].ino
    assert r.load("base").hostname == "base.lab" and r.load("base").field("autostart") is True
    assert "left down: autostart is false" in by_guest["guest manual"]
    assert "left down: it was removed (state absent)" in by_guest["guest removed"]
    assert "FAILED:" in by_guest["guest gone"] and "root" in by_guest["guest gone"]
    assert "FAILED: guest 'junk': its kept definition" in by_guest["guest junk"] and "format version 7" in by_guest["guest junk"]
    assert lines[-1] == "linuxns-guests-restore: 2 up, 2 failed, 2 left down"
    assert lines.index(by_guest["guest base"]) < lines.index(by_guest["guest child"])
    # run again: the guests that are up stay as they are
    pins = {n: r.load(n).pins["uts"].ino for n in ("base", "child")}
    again = io.StringIO()
    assert boot.restore(r, tables, boot.Report(again, True)) == boot.EXIT_FAILED
    assert "<6>linuxns-guests-restore: guest base: up (already up;" in again.getvalue()
    assert "<3>linuxns-guests-restore: guest gone: FAILED" in again.getvalue()
    assert {n: r.load(n).pins["uts"].ino for n in ("base", "child")} == pins
    # the definitions are unchanged by the restore (same content as namespace_create wrote)
    assert json.load(open(persist.Kept(tables, "base").definition_path))["guest"]["hostname"] == "base.lab"


def test_a_guest_whose_share_source_failed_is_reported(unit_registry, tmp_path):
    r, tables = unit_registry, str(tmp_path / "tables")
    root = tmp_path / "root"
    root.mkdir()
    guests.ensure_guests(r, [
        {"name": "src", "namespaces": ["mnt", "uts", "pid", "net"], "root": str(root), "autostart": True},
        {"name": "dep", "namespaces": ["uts"], "share": {"net": "src"}, "autostart": True},
        {"name": "free", "namespaces": ["uts"], "autostart": True},
    ], table_dir=tables)
    _reboot(r)
    shutil.rmtree(root)
    out = io.StringIO()
    assert boot.restore(r, tables, boot.Report(out, False)) == boot.EXIT_FAILED
    text = out.getvalue()
    assert "guest dep: FAILED: it shares namespaces of guest src, which did not come back" in text
    assert r.names() == ["free"] and text.splitlines()[-1].endswith("1 up, 2 failed, 0 left down")


def _in_pid_ns(pin_ino, argv):
    """Pids of the processes with command line ``argv`` in the pid namespace of inode ``pin_ino``."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat("/proc/%s/ns/pid" % pid).st_ino != pin_ino:
                continue
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if f.read().split(b"\0")[:-1] == [a.encode() for a in argv]:
                    out.append(int(pid))
        except OSError:
            pass
    return out


def test_restore_starts_the_recorded_services_of_init_less_guests(unit_registry, tmp_path, busybox_root):
    """namespace_create records services (and saves them); at boot the restore service starts them with
    the guest role's script once the guest is back; one that ends at once fails its guest only."""
    r, tables = unit_registry, str(tmp_path / "tables")
    for applet in ("tr", "mkdir", "setsid"):
        os.symlink("busybox", os.path.join(busybox_root, "bin", applet))
    idle = ["/bin/busybox", "sleep", "1000"]
    common = {"namespaces": ["mnt", "uts", "pid"], "root": busybox_root, "autostart": True, "stop_timeout": 1}
    out = guests.ensure_guests(r, [dict(common, name="svc", services=[{"name": "idle", "argv": idle}]),
                                   dict(common, name="svcbad", services=[{"name": "quick", "argv": ["/bin/busybox", "true"]}])],
                               table_dir=tables)
    assert out["diff"]["after"]["svc"]["services"] == [{"name": "idle", "argv": idle, "pid_dir": "/run/linuxns-services"}]
    saved = persist.Kept(tables, "svc").read_definition()["guest"]["services"]
    assert saved == [{"name": "idle", "argv": idle, "pid_dir": "/run/linuxns-services"}]
    assert _in_pid_ns(r.load("svc").pins["pid"].ino, idle) == []  # namespace_create only records them
    _reboot(r)
    report = io.StringIO()
    assert boot.restore(r, tables, boot.Report(report, False)) == boot.EXIT_FAILED
    by_guest = {line.split(": ")[1]: line for line in report.getvalue().splitlines() if ": guest " in line}
    running = _in_pid_ns(r.load("svc").pins["pid"].ino, idle)
    assert len(running) == 1, report.getvalue()
    assert "; services idle (started " in by_guest["guest svc"] and by_guest["guest svc"].endswith(")"), by_guest
    assert "FAILED: its services: guest 'svcbad': service quick: service quick ended right after its start" in by_guest["guest svcbad"]
    again = io.StringIO()
    boot.restore(r, tables, boot.Report(again, False))
    assert "services idle (running " in again.getvalue() and _in_pid_ns(r.load("svc").pins["pid"].ino, idle) == running


@pytest.mark.parametrize("services,words", [
    ("httpd", "services must be a list of {name, argv, pid_dir} (guest 's1')"),
    ([{"name": "a b", "argv": ["x"]}], "services[0].name 'a b' must be a unique name of letters, digits, _.-"),
    ([{"name": "a", "argv": ["x"]}, {"name": "a", "argv": ["y"]}], "services[1].name 'a' must be a unique name"),
    ([{"name": "a", "argv": []}], "services[0].argv must be a non-empty list of non-empty strings"),
    ([{"name": "a", "argv": ["x"], "pid_dir": "rel"}], "services[0].pid_dir 'rel' must be an absolute path"),
    ([{"name": "a", "argv": ["x"], "user": "web"}], "services[0] must be a dict with name, argv and pid_dir (optional) only"),
])
def test_bad_services_are_refused_changing_nothing(unit_registry, tmp_path, services, words):
    for check in (True, False):
        with pytest.raises(GuestError) as exc:
            guests.ensure_guests(unit_registry, [{"name": "s1", "namespaces": ["uts"], "services": services}], check_mode=check,
                                 table_dir=str(tmp_path / "tables"))
        assert words in exc.value.msg
    assert unit_registry.names() == [] and not (tmp_path / "tables").exists()


def _veth(r, name, ifname):
    """(link name, its IPv4 addresses) of ``ifname`` in guest ``name``'s netns, from `ip -j`; None when it is not there."""
    pin = r.load(name).pins["net"].path
    out = subprocess.run(["nsenter", "--net=" + pin, "ip", "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout
    for item in json.loads(out or "[]"):
        if item["ifname"] == ifname:
            return ifname, sorted(a["local"] for a in item.get("addr_info", ()) if a.get("family") == "inet")
    return None


def test_relink_makes_the_saved_links_of_a_guest_made_again(unit_registry, tmp_path, monkeypatch):
    # The supervisor's restart and the operator's start make a guest's namespaces again: its veth
    # (in both guests) is gone until boot.relink makes the links its definition keeps.
    from ansible_collections.linuxns.guests.plugins.module_utils import links

    r, tables = unit_registry, str(tmp_path / "tables")
    monkeypatch.setenv(persist.TABLE_DIR_ENV, tables)
    made = [{"name": "rl-a", "namespaces": ["uts", "net"]}, {"name": "rl-b", "namespaces": ["uts", "net"]}]
    guests.ensure_guests(r, made, table_dir=tables)
    assert boot.relink(r, tables, "rl-a") == ""  # nothing saved yet
    links.ensure_links(r, [{"guest": "rl-a", "ifname": "to-b", "addresses": ["198.19.210.1/30"],
                            "peer": {"guest": "rl-b", "ifname": "to-a", "addresses": ["198.19.210.2/30"]}}])
    assert _veth(r, "rl-a", "to-b") == ("to-b", ["198.19.210.1"]) and _veth(r, "rl-b", "to-a") == ("to-a", ["198.19.210.2"])
    saved = json.load(open(persist.Kept(tables, "rl-a").definition_path))["links"]
    assert [e["ifname"] for e in saved.values()] == ["to-b"]
    # rl-a made again (as a restart does): new namespaces, the veth pair is gone from both guests
    guests.ensure_guests(r, [{"name": "rl-a", "state": "absent"}], table_dir=tables)
    guests.ensure_guests(r, made[:1], table_dir=tables)
    assert _veth(r, "rl-a", "to-b") is None
    # the old namespace is freed by a kernel worker (cleanup_net), later when the machine is busy
    # freeing others: its end of the pair, and so rl-b's, goes when that worker gets to it
    deadline = time.monotonic() + 60
    while _veth(r, "rl-b", "to-a") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _veth(r, "rl-b", "to-a") is None
    assert boot.relink(r, tables, "rl-a") == "links to-b"
    assert _veth(r, "rl-a", "to-b") == ("to-b", ["198.19.210.1"]) and _veth(r, "rl-b", "to-a") == ("to-a", ["198.19.210.2"])
    assert boot.relink(r, tables, "rl-a") == "links to-b (already)"
    assert json.load(open(persist.Kept(tables, "rl-a").definition_path))["links"] == saved
