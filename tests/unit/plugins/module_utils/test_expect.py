"""namespace_info's ``expect`` (module_utils/expect.py): one call answers, to the field, what
check-mode runs of namespace_create, namespace_mount and netns_link with the same arguments
would; it never changes anything, and bad arguments fail naming the task before any is read.

Real guests of a unit_registry (guest-to-guest links, never the machine's own netns)."""

from __future__ import annotations

import copy
import json
import os
import subprocess

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import create_task, expect, link_task, mount_task, persist
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestNotFound, InvalidInput
from ansible_collections.linuxns.guests.plugins.module_utils.list_forms import task_params

pytestmark = pytest.mark.unit

CREATE = {"guests": [{"name": "ex-a", "namespaces": ["net", "uts", "mnt", "pid"], "hostname": "ex-a"},
                     {"name": "ex-b", "namespaces": ["net", "uts"], "hostname": "ex-b"}]}
MOUNT = {"guests": [{"guest": "ex-a", "mounts": [{"path": "/data", "fstype": "tmpfs", "opts": "size=1m", "state": "ephemeral"}]}]}
LINK = {"links": [{"guest": "ex-a", "ifname": "to-b", "addresses": ["198.19.210.1/30"],
                   "peer": {"guest": "ex-b", "ifname": "to-a", "addresses": ["198.19.210.2/30"]}}]}
EXPECT = {"namespace_create": CREATE, "namespace_mount": MOUNT, "netns_link": LINK}
TASKS = {"namespace_create": create_task, "namespace_mount": mount_task, "netns_link": link_task}


def run_task(registry, name: str, args: dict, check_mode: bool) -> dict:
    """What module ``name`` reports for ``args`` (typed by its own spec), as the module runs its body."""
    task = TASKS[name]
    warnings = []
    res = task.body(task_params(task.OPTIONS, task.RULES, copy.deepcopy(args), name, name), registry, check_mode, True, warnings.append)
    assert warnings == []
    return res


def ask(registry, given=None) -> dict:
    warnings = []
    out = expect.check(registry, copy.deepcopy(EXPECT if given is None else given), True, warnings.append)
    assert warnings == []
    return out


def addresses(registry, guest: str, ifname: str) -> list:
    pin = registry.load(guest).pins["net"].path
    out = subprocess.run(["nsenter", "--net=" + pin, "ip", "-o", "-4", "addr", "show", "dev", ifname],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines()]


def test_expect_answers_what_each_modules_check_mode_answers(unit_registry, busybox_root):
    reg = unit_registry
    CREATE["guests"][0]["root"] = busybox_root
    try:
        # nothing yet: namespace_create would make both guests; the links and mounts of guests that do not
        # exist are the errors the modules' check modes give, named for their task
        with pytest.raises(GuestNotFound) as exc:
            ask(reg)
        assert exc.value.msg.startswith("expect.namespace_mount: ") and "ex-a" in exc.value.msg
        assert reg.names() == []
        only_create = ask(reg, {"namespace_create": CREATE})
        assert only_create["changed"] and [g["action"] for g in only_create["namespace_create"]["guests"]] == ["create", "create"]
        assert only_create["namespace_create"] == run_task(reg, "namespace_create", CREATE, True)
        assert reg.names() == []
        # made for real by the modules' bodies, the way the modules run them
        for name in ("namespace_create", "namespace_mount", "netns_link"):
            assert run_task(reg, name, EXPECT[name], False)["changed"]
        quiet = ask(reg)
        assert quiet["changed"] is False
        for name in ("namespace_create", "namespace_mount", "netns_link"):
            assert quiet[name] == run_task(reg, name, EXPECT[name], True), name
            assert quiet[name]["changed"] is False
        # drift: an address taken off inside guest ex-b is seen, and only there; expect repairs nothing
        pin = reg.load("ex-b").pins["net"].path
        subprocess.run(["nsenter", "--net=" + pin, "ip", "addr", "del", "198.19.210.2/30", "dev", "to-a"], check=True)
        drift = ask(reg)
        assert drift["changed"] is True
        assert drift["namespace_create"]["changed"] is False and drift["namespace_mount"]["changed"] is False
        assert [link["action"] for link in drift["netns_link"]["links"]] == ["update"]
        assert drift["netns_link"] == run_task(reg, "netns_link", LINK, True)
        assert addresses(reg, "ex-b", "to-a") == []
        assert addresses(reg, "ex-a", "to-b") == ["198.19.210.1/30"]
        # a guest's declared field changed: namespace_create's part says so, the way its check mode does
        wanted = copy.deepcopy(EXPECT)
        wanted["namespace_create"]["guests"][1]["hostname"] = "ex-b2"
        renamed = ask(reg, wanted)
        assert renamed["namespace_create"]["changed"] is True
        assert renamed["namespace_create"] == run_task(reg, "namespace_create", wanted["namespace_create"], True)
        assert reg.load("ex-b").hostname == "ex-b"
    finally:
        del CREATE["guests"][0]["root"]


@pytest.mark.parametrize("given, message", [
    ({}, "expect: give the options of at least one of namespace_create, namespace_mount, netns_link"),
    ({"namespace_crate": {"name": "x"}}, "expect: unknown key(s) namespace_crate; the keys are namespace_create, namespace_mount, netns_link"),
    ({"netns_link": "eth0"}, "expect.netns_link must be a dict of netns_link's options, not str"),
    ({"netns_link": {"links": [], "state_dir": "/tmp"}}, "expect.netns_link.state_dir: every task of expect is checked in namespace_info's own"),
    ({"namespace_create": {"name": "x"}, "netns_link": {"links": [], "mtu": "big"}}, "expect.netns_link: "),
    ({"namespace_create": {"name": "x"}, "netns_link": {"links": [], "colour": "red"}}, "expect.netns_link: "),
    ({"namespace_create": {"name": "x", "guests": ["y"]}}, "expect.namespace_create: "),
    ({"namespace_mount": {"path": "/x"}}, "expect.namespace_mount: "),
    ({"namespace_create": {"name": "x", "context_id": 10 ** 400}}, "expect.namespace_create"),
    ({"netns_link": {"links": [{"guest": "nobody", "ifname": "eth0", "mtu": 20}]}}, "expect.netns_link: links[0]"),
])
def test_bad_expect_fails_naming_the_task_and_reads_nothing(unit_registry, given, message):
    with pytest.raises(InvalidInput) as exc:
        expect.check(unit_registry, given, False, lambda text: None)
    assert message in exc.value.msg
    assert unit_registry.names() == []


def test_the_last_tasks_mistake_fails_before_the_first_task_is_checked(unit_registry, monkeypatch):
    checked = []
    monkeypatch.setattr(create_task, "body", lambda *args: checked.append(args) or {"changed": False})
    with pytest.raises(InvalidInput) as exc:
        expect.check(unit_registry, {"namespace_create": {"name": "x"}, "netns_link": {"ifname": "eth0", "kind": "tap"}}, False, print)
    assert exc.value.msg.startswith("expect.netns_link: ") and "kind" in exc.value.msg
    assert checked == []


def test_a_kept_definition_a_real_run_would_save_is_reported(unit_registry, kept_files_in_tmp):
    """A real run of namespace_create or netns_link saves each guest's definition (the restore
    service's input) also when nothing else changes; their check mode, and so expect, lists the
    guests whose definition that run would write - so that guest_deploy does not skip the call."""
    reg = unit_registry
    create = {"guests": [{"name": "kd-a", "namespaces": ["net"]}, {"name": "kd-b", "namespaces": ["net"]}]}
    link = {"links": [{"guest": "kd-a", "ifname": "to-b", "addresses": ["198.19.211.1/30"],
                       "peer": {"guest": "kd-b", "ifname": "to-a", "addresses": ["198.19.211.2/30"]}}]}
    run_task(reg, "namespace_create", create, False)
    run_task(reg, "netns_link", link, False)
    quiet = ask(reg, {"namespace_create": create, "netns_link": link})
    assert quiet["changed"] is False
    assert "definitions" not in quiet["namespace_create"] and "definitions" not in quiet["netns_link"]
    # kd-a's definition (where its link is kept too) lost - a mistake by hand, an old backup put back -
    # while nothing in the kernel differs
    path = persist.Kept(persist.resolve_table_dir(reg.state_dir), "kd-a").definition_path
    with open(path) as f:
        kept = json.load(f)
    os.unlink(path)
    lost = ask(reg, {"namespace_create": create, "netns_link": link})
    assert lost["changed"] is False
    assert lost["namespace_create"]["definitions"] == ["kd-a"] and lost["netns_link"]["definitions"] == ["kd-a"]
    assert not os.path.exists(path)  # check mode wrote nothing
    run_task(reg, "namespace_create", create, False)
    assert "definitions" not in ask(reg, {"namespace_create": create})["namespace_create"]
    # only its link is missing now (namespace_create keeps what is there): netns_link's part says so
    with open(path) as f:
        assert json.load(f)["links"] == {}
    assert ask(reg, {"netns_link": link})["netns_link"]["definitions"] == ["kd-a"]
    run_task(reg, "netns_link", link, False)
    with open(path) as f:
        assert json.load(f)["links"] == kept["links"]
    again = ask(reg, {"namespace_create": create, "netns_link": link})
    assert "definitions" not in again["namespace_create"] and "definitions" not in again["netns_link"]
