"""The one namespace table (syscalls) and the one guest field table (model)."""

from __future__ import annotations

import fcntl
import math
import os

import pytest
import yaml

from ansible_collections.linuxns.guests.plugins.module_utils import model
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput
from ansible_collections.linuxns.guests.plugins.modules import namespace_create

pytestmark = pytest.mark.unit
NS_GET_NSTYPE = 0xB703


@pytest.mark.parametrize("ns", sc.NAMESPACES, ids=lambda t: t.name)
def test_namespace_table_matches_the_kernel(ns):
    fd = os.open("/proc/self/ns/" + ns.name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert fcntl.ioctl(fd, NS_GET_NSTYPE) == ns.flag
    finally:
        os.close(fd)
    assert os.path.exists("/proc/self/ns/" + ns.pin_leaf)
    assert os.path.exists(ns.limit_file)
    assert sc.ns_by_flag(ns.flag) is ns and sc.ns_type(ns.name) is ns
    assert ns.children_only == os.path.exists("/proc/self/ns/%s_for_children" % ns.name)


def test_namespace_order_is_nsenters():
    assert sc.NS_TYPES == ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt", "time")
    assert sc.ns_order(["time", "mnt", "user", "net"]) == ["user", "net", "mnt", "time"]
    assert sc.ns_by_flag(0x1) is None


def test_the_guest_table_splits_fields_as_the_engine_did():
    assert model.REPLACED == ("context_id", "namespaces", "share", "root", "uid_map", "gid_map", "userns", "userns_size", "userns_root",
                              "time_offsets", "init", "cgroup_parent")
    assert model.CHANGED_IN_PLACE == ("hostname", "stop_signal", "stop_timeout", "description", "privileged", "capabilities",
                                      "no_new_privs", "seccomp", "limits", "restart", "restart_delay", "restart_max_delay",
                                      "restart_max", "autostart", "services")
    assert model.default("namespaces") == ["mnt", "uts", "ipc", "net", "pid"]
    assert (model.default("stop_signal"), model.default("stop_timeout")) == ("SIGTERM", 10.0)
    entry = model.argument_spec(entry=True)
    assert all("default" not in spec for spec in entry.values())
    assert model.argument_spec()["state"]["default"] == "present"


def test_namespace_create_documents_every_field_as_the_table_says():
    options = yaml.safe_load(namespace_create.DOCUMENTATION)["options"]
    for name, spec in model.argument_spec().items():
        doc = options[name]
        assert doc["type"] == spec["type"], name
        assert doc.get("elements") == spec.get("elements"), name
        assert sorted(doc.get("choices") or []) == sorted(spec.get("choices") or []), name
        assert doc.get("default") == spec.get("default"), name
        assert "O(%s)" % name in options["guests"]["description"][0] or name == "name", name
    returned = yaml.safe_load(namespace_create.RETURN)["guest"]["contains"]
    assert set(model.RESULT_KEYS) <= set(returned)


@pytest.mark.parametrize("value, msg", [
    ("a\0b", "must not contain NUL characters"),
    ("a\nb", "must not contain control characters"),
    ("a\x7fb", "must not contain control characters"),
])
def test_text_checks(value, msg):
    with pytest.raises(InvalidInput, match="hostname .*" + msg):
        model.check_value(model.GUEST_BY_NAME["hostname"], value, "hostname")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0, model.MAX_SECONDS + 1.0, 1e300])
def test_number_checks(value):
    with pytest.raises(InvalidInput, match="stop_timeout"):
        model.check_value(model.GUEST_BY_NAME["stop_timeout"], value, "stop_timeout")
    model.check_value(model.GUEST_BY_NAME["stop_timeout"], 0.5, "stop_timeout")
    model.check_value(model.GUEST_BY_NAME["description"], "two\nlines\tok", "description")


def test_namespace_info_documents_the_shown_fields():
    from ansible_collections.linuxns.guests.plugins.modules import namespace_info

    returned = yaml.safe_load(namespace_info.RETURN)["guests"]["contains"]
    assert set(model.RESULT_KEYS) <= set(returned)


@pytest.mark.parametrize("value, default, msg", [
    ("", "/run/linuxns", "state_dir must not be empty (leave it out for the default /run/linuxns)"),
    ("", None, "state_dir must not be empty"),
    ("run/x", None, "state_dir 'run/x' must be an absolute path"),
    ("/run/a\0b", None, "state_dir '/run/a\\x00b' must not contain NUL characters"),
    ("/run/a\x1bb", None, "must not contain control characters"),
    (7, None, "state_dir must be a folder path, not int"),
])
def test_dir_checks(value, default, msg):
    """The one check of a folder option (state_dir here; table_dir in test_persist)."""
    with pytest.raises(InvalidInput) as exc:
        model.check_dir(value, "state_dir", default)
    assert msg in exc.value.msg
    assert model.check_dir("/run/linuxns", "state_dir") == "/run/linuxns"
