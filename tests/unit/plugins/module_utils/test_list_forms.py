"""The one normaliser of the modules' list forms (list_forms.entries): entries validated
against the entry spec with ansible-core's validator, the task's top-level options as
defaults (validated once per list), messages naming the entry's path."""

from __future__ import annotations

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import create_task as namespace_create
from ansible_collections.linuxns.guests.plugins.module_utils import link_task as netns_link
from ansible_collections.linuxns.guests.plugins.module_utils import list_forms, model
from ansible_collections.linuxns.guests.plugins.module_utils import mount_task as namespace_mount
from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput

pytestmark = pytest.mark.unit
GUEST_ENTRY = model.argument_spec(model.GUEST, entry=True)


def create_params(**given) -> dict:
    """namespace_create's params as AnsibleModule leaves them (spec defaults filled in)."""
    params = {k: v.get("default") for k, v in model.argument_spec(model.GUEST).items()}
    params.update(guests=None, table_dir=None, state_dir="/run/linuxns")
    params.update(given)
    return params


def link_params(**given) -> dict:
    params = {k: v.get("default") for k, v in netns_link.OPTIONS.items()}
    params.update(given)
    return params


def guest_entries(**given) -> list:
    return list_forms.entries(create_params(**given), "guests", GUEST_ENTRY, "name", model.GUEST)


def link_entries(**given) -> list:
    return list_forms.entries(link_params(**given), "links", netns_link.LINK_ENTRY, exclusive=netns_link.EXCLUSIVE)


def given(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def test_link_entries_merge_peer_one_level_and_an_entrys_guest_replaces_the_tasks_netns():
    entries = link_entries(ifname="eth0", netns="n1", peer={"bridge": "br0", "bridge_create": True, "ifname": None},
                           links=[{"guest": "g1", "peer": {"ifname": "v1"}}, {"peer": {"ifname": "v2", "bridge": "br1"}},
                                  {"netns": "n2", "ifname": "eth1"}])
    assert entries[0]["guest"] == "g1" and "netns" not in entries[0] and entries[0]["ifname"] == "eth0"
    assert given(entries[0]["peer"]) == {"bridge": "br0", "bridge_create": True, "ifname": "v1"}
    assert sorted(entries[0]["peer"]) == sorted(netns_link.OPTIONS["peer"]["options"])  # every sub-option, as validated
    assert entries[1]["netns"] == "n1" and "guest" not in entries[1] and entries[1]["peer"]["bridge"] == "br1"
    assert (entries[2]["netns"], entries[2]["ifname"], entries[2]["peer"]["bridge"]) == ("n2", "eth1", "br0")
    assert all(e["_in_list"] and e["kind"] == "veth" and e["state"] == "present" for e in entries)
    # the task's guest and an entry's netns: the entry's wins the same way
    (entry,) = link_entries(guest="g0", links=[{"netns": "n3", "ifname": "x"}])
    assert entry["netns"] == "n3" and "guest" not in entry
    # both in one entry stay both, for LinkSpec to refuse
    (entry,) = link_entries(netns="n1", links=[{"guest": "g", "netns": "n", "ifname": "x"}])
    assert (entry["guest"], entry["netns"]) == ("g", "n")
    with pytest.raises(InvalidInput, match=r"^links\[0\] must be a dict of options, not str$"):
        link_entries(links=["eth0"])


def test_link_entries_are_typed_and_name_their_path():
    (entry,) = link_entries(links=[{"ifname": "e", "mtu": "1400", "peer": {"ifname": "p", "mtu": "1500", "bridge_create": "no"}}])
    assert (entry["mtu"], entry["peer"]["mtu"], entry["peer"]["bridge_create"]) == (1400, 1500, False)
    with pytest.raises(InvalidInput, match=r"^links\[1\]\.peer: .*mtu"):
        link_entries(links=[{"ifname": "a"}, {"ifname": "b", "peer": {"ifname": "c", "mtu": "big"}}])
    with pytest.raises(InvalidInput, match=r"^links\[0\]: unknown option\(s\) colour, state_dir; per-entry options are guest, netns"):
        link_entries(links=[{"ifname": "a", "colour": "red", "state_dir": "/x"}])


def test_guest_entries_take_the_tasks_options_as_defaults_but_not_its_name():
    entries = guest_entries(name="top", hostname="h", stop_timeout=3.0, share={"net": "a"},
                            guests=["g1", 42, {"name": "g3", "context_id": "77", "hostname": None, "share": {"uts": "b"}}])
    assert [e["name"] for e in entries] == ["g1", "42", "g3"]
    assert [e["hostname"] for e in entries] == ["h"] * 3 and entries[2]["context_id"] == 77
    assert entries[0]["namespaces"] == model.default("namespaces") and entries[0]["state"] == "present"
    # a dict without sub-options is replaced, not merged
    assert entries[0]["share"] == {"net": "a"} and entries[2]["share"] == {"uts": "b"}
    assert all(e["_in_list"] for e in entries)


@pytest.mark.parametrize(
    "given_, message",
    [
        ({"guests": ["a", ["b"]]}, r"^guests\[1\] must be a dict of options or a name, not list$"),
        ({"guests": [True]}, r"^guests\[0\] must be a dict of options or a name, not bool$"),
        ({"guests": ["a", {"name": "b", "colour": 1}]}, r"^guests\[1\]: unknown option\(s\) colour"),
        ({"guests": [{"name": "a"}, {"name": "b", "context_id": "many"}]}, r"^guests\[1\]\.context_id: .*int"),
        ({"guests": [{"name": "b", "context_id": float("inf")}]}, r"^guests\[0\]\.context_id: inf is out of range"),
        ({"guests": [{"name": "b", "stop_timeout": 10 ** 400}]}, r"^guests\[0\]\.stop_timeout: 1000.* is out of range"),
        ({"guests": [{"name": "b", "stop_timeout": float("nan")}]}, r"^guests\[0\]\.stop_timeout must be a finite number"),
        ({"guests": [{"name": "b", "state": "gone"}]}, r"^guests\[0\]\.state: value of state must be one of"),
        ({"guests": [{"name": "b", "hostname": "x\0y"}]}, r"^guests\[0\]\.hostname 'x\\x00y' must not contain NUL"),
        # two faulty options: the first in the entry's order is named
        ({"guests": [{"name": "b", "context_id": "x", "stop_timeout": "y"}]}, r"^guests\[0\]\.context_id: "),
        # a bad top-level option is named as the task gave it, once, not as every entry's
        ({"hostname": "x\0y", "guests": ["a", "b"]}, r"^hostname 'x\\x00y' must not contain NUL"),
    ],
)
def test_bad_guest_entries_name_their_path(given_, message):
    with pytest.raises(InvalidInput, match=message):
        guest_entries(**given_)


def test_one_validator_per_shape_of_entry():
    check = list_forms.EntryValidator(GUEST_ENTRY, model.GUEST)
    for i in range(50):
        check.validate({"name": "g%d" % i}, "guests[%d]." % i)
        check.validate({"name": "h%d" % i, "context_id": str(100 + i), "_in_list": True, "extra": None}, "guests[%d]." % i)
    assert sorted(sorted(k) for k in check._validators) == [["context_id", "name"], ["name"]]
    out = check.validate({"context_id": "7", "name": "n", "_in_list": True, "unknown": "kept"}, "x.")
    assert out == {"context_id": 7, "name": "n", "_in_list": True, "unknown": "kept"} and list(out) == ["context_id", "name", "_in_list", "unknown"]


def test_a_list_in_an_entry_of_another_list_names_the_whole_path_but_not_for_the_tasks_options():
    params = {k: v.get("default") for k, v in namespace_mount.OPTIONS.items()}
    params.update(fstype="tmpfs", mounts=["/a", {"path": "/b", "create": "no"}])
    a, b = list_forms.entries(params, "mounts", namespace_mount.MOUNT_ENTRY, "path", prefix="guests[2].")
    assert (a["path"], a["fstype"], a["create"], b["path"], b["create"]) == ("/a", "tmpfs", True, "/b", False)
    with pytest.raises(InvalidInput, match=r"^guests\[2\]\.mounts\[1\]\.create: "):
        list_forms.entries(dict(params, mounts=["/a", {"path": "/b", "create": "maybe"}]), "mounts", namespace_mount.MOUNT_ENTRY, "path",
                           prefix="guests[2].")
    with pytest.raises(InvalidInput, match=r"^guests\[2\]\.mounts\[0\]: unknown option\(s\) size"):
        list_forms.entries(dict(params, mounts=[{"path": "/b", "size": 3}]), "mounts", namespace_mount.MOUNT_ENTRY, "path", prefix="guests[2].")
    with pytest.raises(InvalidInput, match=r"^create: .*bool"):
        list_forms.entries(dict(params, create="maybe"), "mounts", namespace_mount.MOUNT_ENTRY, "path", prefix="guests[2].")


# return_unchanged: false - the list forms' results leave out what did not change
def _batch(changed_names, names, diff_equal=True):
    results = [{"name": n, "changed": n in changed_names, "action": "update" if n in changed_names else "none", "guest": {"name": n}}
               for n in names]
    before = {n: {"hostname": n} for n in names}
    after = {n: {"hostname": n if (diff_equal or n not in changed_names) else "new-" + n} for n in names}
    return {"changed": bool(changed_names), "results": results, "diff": {"before": before, "after": after}}


def test_return_unchanged_false_leaves_out_the_unchanged_entries_and_counts_them():
    out = _batch({"b"}, ["a", "b", "c"], diff_equal=False)
    full = list_forms.batch_result(out, True, "guests", "guest", True)
    assert [r["name"] for r in full["guests"]] == ["a", "b", "c"] and "unchanged" not in full
    assert sorted(full["diff"]["before"]) == ["a", "b", "c"]
    brief = list_forms.batch_result(_batch({"b"}, ["a", "b", "c"], diff_equal=False), True, "guests", "guest", True, False)
    assert brief["changed"] is True
    assert [r["name"] for r in brief["guests"]] == ["b"] and brief["unchanged"] == 2
    assert brief["diff"] == {"before": {"b": {"hostname": "b"}}, "after": {"b": {"hostname": "new-b"}}}


def test_return_unchanged_false_on_a_no_change_run_returns_an_empty_list():
    brief = list_forms.batch_result(_batch(set(), ["a", "b"]), True, "links", "link", True, False)
    assert brief == {"changed": False, "links": [], "unchanged": 2, "diff": {"before": {}, "after": {}}}


def test_return_unchanged_false_keeps_a_new_or_removed_entry_of_the_diff():
    brief = list_forms.unchanged_left_out(
        {"changed": True, "guests": [{"name": "new", "changed": True}, {"name": "old", "changed": True}],
         "diff": {"before": {"old": {"x": 1}}, "after": {"new": {"x": 1}}}}, "guests", False)
    assert brief["diff"] == {"before": {"old": {"x": 1}}, "after": {"new": {"x": 1}}} and brief["unchanged"] == 0


def test_return_unchanged_does_not_touch_the_single_form_or_a_text_diff():
    single = list_forms.batch_result(_batch(set(), ["a"]), False, "guests", "guest", True, False)
    assert "unchanged" not in single and "guests" not in single and single["guest"] == {"name": "a"}
    text = {"changed": False, "mounts": [{"path": "/a", "changed": False}], "diff": {"before": "", "after": ""}}
    brief = list_forms.unchanged_left_out(text, "mounts", False)
    assert brief == {"changed": False, "mounts": [], "unchanged": 1, "diff": {"before": "", "after": ""}}


@pytest.mark.parametrize("task", [namespace_create, netns_link, namespace_mount])
def test_every_batch_list_form_takes_return_unchanged_but_not_in_an_entry(task):
    assert task.OPTIONS["return_unchanged"] == {"type": "bool", "default": True}
    entry_specs = [v for k, v in vars(task).items() if k.endswith("_ENTRY") and isinstance(v, dict)]
    assert all("return_unchanged" not in spec for spec in entry_specs)
