"""persist.py: what a guest keeps in TABLE_DIR/NAME/ (as root, no Ansible)."""

from __future__ import annotations

import os
import shutil

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import guest_stop, guests, persist
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, InvalidInput

pytestmark = pytest.mark.unit


# ---- the table folder ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value,words",
    [
        ("", "table_dir must not be empty"),
        ("relative/tables", "table_dir 'relative/tables' must be an absolute path"),
        ("/etc/a\x00b", "must not contain NUL characters"),
        ("/etc/a\nb", "must not contain control characters"),
        ("/etc/a\x7fb", "must not contain control characters"),
        (5, "table_dir must be a folder path"),
    ],
)
def test_table_dir_refused(value, words):
    with pytest.raises(InvalidInput) as exc:
        persist.resolve_table_dir("/nonexistent-state", value)
    assert words in exc.value.msg


def test_table_dir_resolved_given_env_note_default(tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.delenv(persist.TABLE_DIR_ENV, raising=False)
    assert persist.resolve_table_dir(str(state)) == persist.DEFAULT_TABLE_DIR == "/etc/linuxns/guests"
    (state / persist.TABLE_NOTE).write_text("/srv/noted\n")
    assert persist.resolve_table_dir(str(state)) == "/srv/noted"
    assert persist.resolve_table_dir(str(state), remembered=False) == persist.DEFAULT_TABLE_DIR
    (state / persist.TABLE_NOTE).write_text("not/absolute\n")
    assert persist.resolve_table_dir(str(state)) == persist.DEFAULT_TABLE_DIR
    monkeypatch.setenv(persist.TABLE_DIR_ENV, "/srv/env")
    assert persist.resolve_table_dir(str(state)) == "/srv/env"
    assert persist.resolve_table_dir(str(state), "/srv/given") == "/srv/given"
    with pytest.raises(InvalidInput, match="table_dir must not be empty"):
        persist.resolve_table_dir(str(state), "")  # never the default
    monkeypatch.setenv(persist.TABLE_DIR_ENV, "rel")
    with pytest.raises(InvalidInput, match=r"\$LINUXNS_TABLE_DIR 'rel' must be an absolute path"):
        persist.resolve_table_dir(str(state))


def test_remember_table_dir(unit_registry, tmp_path):
    note = os.path.join(unit_registry.state_dir, persist.TABLE_NOTE)
    persist.remember_table_dir(unit_registry, persist.DEFAULT_TABLE_DIR)
    assert not os.path.exists(note)  # the default needs no note
    persist.remember_table_dir(unit_registry, str(tmp_path / "t"))
    assert open(note).read() == str(tmp_path / "t") + "\n"
    assert persist.resolve_table_dir(unit_registry.state_dir, remembered=True) != str(tmp_path / "t")  # $LINUXNS_TABLE_DIR first
    persist.remember_table_dir(unit_registry, persist.DEFAULT_TABLE_DIR)
    assert open(note).read() == persist.DEFAULT_TABLE_DIR + "\n"


# ---- one guest's kept files ----------------------------------------------------------------------
def test_kept_files_written_atomically_and_read_back(tmp_path):
    k = persist.Kept(str(tmp_path / "tables"), "g1")
    assert k.read_context_id() is None and k.read_table() == [] and k.read_definition() is None and k.files() == []
    assert k.write_context_id(7) is True
    assert k.write_context_id(7) is False  # kept already: not rewritten
    assert open(k.context_id_path).read() == "7\n" and os.stat(k.context_id_path).st_mode & 0o777 == 0o644
    assert os.stat(k.folder).st_mode & 0o777 == 0o755
    with pytest.raises(InvalidInput, match="context_id 1 is reserved"):
        k.write_context_id(1)
    k.write_table(["tmpfs /data tmpfs size=1m 0 0", "/srv /www bind ro 0 0"])
    text = open(k.table_path).read()
    assert text.startswith("# Mount table of guest g1") and text.endswith("/srv /www bind ro 0 0\n")
    assert k.read_table() == [(3, "tmpfs /data tmpfs size=1m 0 0"), (4, "/srv /www bind ro 0 0")]
    assert k.write_definition({"state": "present", "guest": {"hostname": "g1.lab"}}) is True
    assert k.read_definition() == {"version": persist.DEFINITION_VERSION, "name": "g1", "state": "present", "guest": {"hostname": "g1.lab"}}
    assert k.write_definition({"state": "present", "guest": {"hostname": "g1.lab"}}) is False  # kept already: not rewritten
    assert sorted(os.listdir(k.folder)) == ["context_id", "fstab", "guest.json"]  # no temporary file left
    for text in ("42\n", "0\n", "70000\n", "x\n", ""):
        open(k.context_id_path, "w").write(text)
        assert k.read_context_id() == (42 if text == "42\n" else None)
    open(k.definition_path, "w").write("[1, 2]")
    with pytest.raises(GuestError, match="not a JSON object"):
        k.read_definition()
    open(k.definition_path, "w").write("{torn")
    with pytest.raises(GuestError, match=r"kept definition .* cannot be read"):
        k.read_definition()


def test_definition_updates_read_the_file_once(tmp_path, monkeypatch):
    """keep_link and keep_absent compare the new definition with the one they have just read: one
    read of the file per update (each update read and checked it twice; a no-change run of a
    10,000-guest task read 3 definitions per guest)."""
    table = str(tmp_path / "tables")
    assert persist.Kept(table, "g1").write_definition({"state": "present", "guest": {"hostname": "g1"}}) is True
    reads = []
    real = persist.Kept.read_definition
    monkeypatch.setattr(persist.Kept, "read_definition", lambda self: reads.append(self.name) or real(self))
    entry = {"peer": "h-g1", "addresses": ["198.18.1.10/24"]}
    for update, changed in ((lambda check: persist.keep_link(table, "g1", "eth0", entry, check), True),
                            (lambda check: persist.keep_link(table, "g1", "eth0", entry, check), False),
                            (lambda check: persist.keep_absent(table, "g1", check), True),
                            (lambda check: persist.keep_absent(table, "g1", check), False)):
        before = open(persist.Kept(table, "g1").definition_path).read()
        reads.clear()
        assert update(True) is changed and reads == ["g1"]  # check mode predicts, writes nothing
        assert open(persist.Kept(table, "g1").definition_path).read() == before
        reads.clear()
        assert update(False) is changed and reads == ["g1"]
    kept = real(persist.Kept(table, "g1"))
    assert kept["state"] == "absent" and kept["links"] == {"eth0": entry} and kept["guest"] == {"hostname": "g1"}


def test_forget_predicts_then_removes_and_keeps_foreign_files(tmp_path):
    tables = tmp_path / "tables"
    k = persist.Kept(str(tables), "g1")
    k.write_context_id(5)
    k.write_table(["tmpfs /data tmpfs size=1m 0 0"])
    predicted = k.forget(check_mode=True)
    assert predicted == [k.table_path, k.context_id_path, k.folder]
    assert os.path.isfile(k.table_path) and os.path.isfile(k.context_id_path)
    assert k.forget() == predicted and not os.path.exists(k.folder)
    assert k.forget(check_mode=True) == [] and k.forget() == []
    # something else in the folder: the kept files go, the folder stays
    k.write_context_id(5)
    (tables / "g1" / "notes.txt").write_text("mine\n")
    assert k.forget(check_mode=True) == [k.context_id_path]
    assert k.forget() == [k.context_id_path] and os.listdir(k.folder) == ["notes.txt"]


def test_kept_ids_scan(tmp_path):
    tables = tmp_path / "tables"
    ids = persist.KeptIds(str(tables))
    assert ids.others("a").as_dict() == {} and ids.own("a") is None  # no folder yet
    ids.keep("a", 3)
    ids.keep("b", 4)
    (tables / "stray-file").write_text("x")
    assert ids.others("a").as_dict() == {4: "b"} and ids.others("c").as_dict() == {3: "a", 4: "b"} and ids.own("a") == 3
    assert 4 in ids.others("a") and 3 not in ids.others("a") and ids.others("a").get(3) is None
    assert ids.forget("b", check_mode=True) == [str(tables / "b" / "context_id"), str(tables / "b")]
    assert ids.others("a").as_dict() == {4: "b"}
    ids.forget("b")
    assert ids.others("a").as_dict() == {}


def test_kept_ids_follow_changes_by_others_and_our_own(tmp_path):
    """A view answers from the scan: another process's folder change is seen (rescan), our
    own moves of an id are seen without one, and two guests keeping one id (a table edited
    by hand) name the first by name to a third."""
    tables = tmp_path / "tables"
    ids = persist.KeptIds(str(tables))
    ids.keep("a", 3)
    assert ids.others("z").get(3) == "a"
    persist.Kept(str(tables), "b").write_context_id(3)  # another process, by hand
    assert ids.others("z").get(3) == "a" and ids.others("a").get(3) == "b" and ids.others("b").get(3) == "a"
    ids.keep("a", 7)  # moved: 3 is b's alone now
    assert ids.others("z").as_dict() == {3: "b", 7: "a"} and ids.others("b").as_dict() == {7: "a"}


# ---- namespace_create's engine: kept ids across a "reboot", purge ------------------------------------
def _reboot(registry):
    """What a reboot does to the registry: every guest gone, the state folder empty."""
    for name in registry.names():
        guest_stop.remove(registry, name, registry.load(name))  # stops it; the ids are released
    shutil.rmtree(registry.ctx_dir)
    registry._ready = False
    registry._ctx_cache = None


def test_direct_calls_get_the_kept_id_back_after_a_reboot(unit_registry, tmp_path):
    r, tables = unit_registry, str(tmp_path / "elsewhere")
    r.ensure()
    r.reserve_context_id("squatter")  # holds 2: the guests below start at 3
    g = guests.ensure_guests(r, [{"name": "kb1", "namespaces": ["uts"]}], table_dir=tables)["results"][0]["guest"]
    assert g["context_id"] == 3 and persist.Kept(tables, "kb1").read_context_id() == 3
    r.release_context_id("squatter", 2)
    _reboot(r)
    # another guest made first must not take the kept id; kb1 then gets it back
    other = guests.ensure_guests(r, [{"name": "kb2", "namespaces": ["uts"]}], table_dir=tables)["results"][0]["guest"]
    assert other["context_id"] == 2
    # an explicit id another guest keeps fails before anything changes
    with pytest.raises(InvalidInput) as exc:
        guests.ensure_guests(r, [{"name": "kb4", "namespaces": ["uts"]}, {"name": "kb5", "namespaces": ["uts"], "context_id": 3}],
                             table_dir=tables)
    assert "context_id 3 is kept for guest 'kb1'" in exc.value.msg
    assert r.load("kb4") is None and r.load("kb5") is None and persist.Kept(tables, "kb5").files() == []
    again = guests.ensure_guests(r, [{"name": "kb3", "namespaces": ["uts"]}, {"name": "kb1", "namespaces": ["uts"]}],
                                 table_dir=tables)["results"]
    assert [x["guest"]["context_id"] for x in again] == [4, 3]
    # held now: the registry's message
    with pytest.raises(InvalidInput, match="context_id 3 is already taken by guest 'kb1'"):
        guests.ensure_guests(r, [{"name": "kb5", "namespaces": ["uts"], "context_id": 3}], table_dir=tables)


def test_purge_forgets_the_kept_files(unit_registry, tmp_path):
    r, tables = unit_registry, str(tmp_path / "elsewhere")
    k = persist.Kept(tables, "pg1")
    guests.ensure_guests(r, [{"name": "pg1", "namespaces": ["uts"]}], table_dir=tables)
    k.write_table(["tmpfs /data tmpfs size=1m 0 0"])
    want = [k.table_path, k.context_id_path, k.definition_path, k.folder]
    with pytest.raises(InvalidInput, match="purge=true goes with state=absent only"):
        guests.ensure_guests(r, [{"name": "pg1", "purge": True}], table_dir=tables)
    # without purge the kept files stay
    out = guests.ensure_guests(r, [{"name": "pg1", "state": "absent"}], True, table_dir=tables)
    assert out["results"][0]["action"] == "remove" and "purged" not in out["results"][0]
    # check mode predicts; nothing changes
    entry = [{"name": "pg1", "state": "absent", "purge": True}]
    check = guests.ensure_guests(r, entry, True, table_dir=tables)
    assert check["changed"] and check["results"][0]["action"] == "remove" and check["results"][0]["purged"] == want
    assert check["diff"]["before"]["pg1"]["kept_files"] == want and check["diff"]["after"]["pg1"] == {}
    assert r.load("pg1") is not None and k.files() == [k.table_path, k.context_id_path, k.definition_path]
    first = guests.ensure_guests(r, entry, table_dir=tables)
    assert first["changed"] and first["results"][0]["purged"] == want
    assert r.load("pg1") is None and not os.path.exists(k.folder) and r.used_context_ids() == set()
    second = guests.ensure_guests(r, entry, table_dir=tables)
    assert not second["changed"] and second["results"][0]["action"] == "none" and second["results"][0]["purged"] == []
    # a guest that no longer runs (a reboot) but kept its files: action purge
    k.write_context_id(9)
    assert guests.ensure_guests(r, entry, True, table_dir=tables)["results"][0]["action"] == "purge"
    assert k.files() == [k.context_id_path]
    gone = guests.ensure_guests(r, entry, table_dir=tables)["results"][0]
    assert gone["action"] == "purge" and gone["purged"] == [k.context_id_path, k.folder] and not os.path.exists(k.folder)
    assert guests.ensure_guests(r, entry, table_dir=tables)["changed"] is False


def test_registry_has_no_table_dir_side_channel(unit_registry):
    assert not hasattr(reg.Registry, "table_dir") and not hasattr(unit_registry, "table_dir")
