"""Bad input as a class (issue 12, section 6): every module, run in-process as
Ansible runs it, gets inputs generated from its documented argument spec (which
``ansible-test validate-modules`` holds equal to the real one) and, for the
entries of its list forms, from the entry specs: wrong types, numbers out of
bounds, nan/inf, NUL and control characters, unknown keys, entries listed twice.

Each must fail cleanly - a message naming the parameter (its path for a list
entry), no "internal error", no traceback - and change nothing: no guest, pin,
lock or table file, no /run/netns entry, no mount, no network link.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shutil
import socket

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.linuxns.guests.plugins.module_utils import enter, guest_stop, guests, model
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg

pytestmark = pytest.mark.unit
PKG = "ansible_collections.linuxns.guests.plugins.modules."
MODULES = ("namespace_create", "namespace_info", "namespace_mount", "netns_link", "guest_enter_exec")
GUEST = "fz"
NUL, CTL = "a\0b", "a\x1bb"
HUGE = 10 ** 400  # no float can hold it


def run_module(name: str, args: dict) -> dict:
    """Run a module's main() in this process as Ansible does; its JSON result."""
    mod = importlib.import_module(PKG + name)
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out):
        try:
            mod.main()
        except SystemExit:
            pass
    return json.loads(out.getvalue())


def options(name: str) -> dict:
    mod = importlib.import_module(PKG + name)
    opts = yaml.safe_load(mod.DOCUMENTATION)["options"]
    opts["state_dir"] = {"type": "path"}  # from the doc fragment
    return opts


def bad_values(spec: dict, data_ok: bool = False) -> list:
    """(label, value) pairs that an option of this spec must refuse."""
    kind, elements = spec.get("type", "str"), spec.get("elements")
    out = []
    if spec.get("choices"):
        out.append(("not a choice", ["bogus"] if kind == "list" else "bogus"))
    if kind in ("str", "path"):
        out.append(("NUL", NUL))
        if not data_ok:
            out.append(("control character", CTL))
    elif kind == "int":
        out += [("not a number", "many"), ("negative", -1), ("huge", 2 ** 64), ("inf", float("inf")), ("nan", float("nan"))]
    elif kind == "float":
        out += [("not a number", "many"), ("negative", -1.0), ("huge", 1e300), ("too big for a float", HUGE),
                ("inf", float("inf")), ("nan", float("nan"))]
    elif kind == "bool":
        out.append(("not a bool", "maybe"))
    elif kind == "dict":
        out.append(("not a dict", "one two"))
    elif kind == "list" and elements in ("str", "path") and not spec.get("choices"):
        out.append(("NUL in an element", ["x", NUL]))
    elif kind == "list" and elements == "dict":
        out.append(("an element that is no dict", [["x"]]))
    return out


# Options whose strings are data for a program (a command line, its stdin and
# environment): control characters are allowed there, NUL is refused (it
# cannot pass execve) except in stdin, which is a byte stream.
DATA = {("guest_enter_exec", k) for k in ("cmd", "argv", "stdin", "env")} | {("namespace_create", "description")}
SKIP = {
    ("guest_enter_exec", "stdin", "NUL"),
    ("namespace_create", "guests", "an element that is no dict"),  # raw: a list is refused below, per entry
    ("namespace_mount", "guests", "an element that is no dict"),  # covered per entry below
    ("netns_link", "peer", "not a dict"),  # ansible-core's own message for a dict with sub-options names no option
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A temporary state folder with one running guest (no root: the host's files),
    a table folder and a scratch folder; everything removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("runs the modules as root")
    base = tmp_path_factory.mktemp("fuzz")
    state, netns, table, scratch = (str(base / n) for n in ("state", "netns", "table", "scratch"))
    for d in (table, scratch):
        os.mkdir(d)
    r = reg.Registry(state, netns)
    guests.ensure_guests(r, [{"name": GUEST}], table_dir=table)
    try:
        yield {"registry": r, "state": state, "table": table, "scratch": scratch}
    finally:
        for name in r.names():
            guest_stop.remove(r, name, r.load(name))
        for path in (netns, state):
            for _attempt in range(8):
                if os.system("umount -l %s 2>/dev/null" % path) != 0:
                    break
        shutil.rmtree(str(base), ignore_errors=True)


def base_args(module: str, lab: dict) -> dict:
    """Arguments that would succeed (and change something) as they are."""
    common = {"state_dir": lab["state"]}
    return {
        "namespace_create": dict(common, name="fzn", table_dir=lab["table"]),
        "namespace_info": dict(common, name=GUEST),
        "namespace_mount": dict(common, guest=GUEST, path=lab["scratch"] + "/m", src="tmpfs", fstype="tmpfs",
                                table_dir=lab["table"]),
        "netns_link": dict(common, guest=GUEST, ifname="fz0", kind="veth", peer={"ifname": "fz1", "guest": GUEST}),
        "guest_enter_exec": dict(common, guest=GUEST, argv=["touch", lab["scratch"] + "/ran"]),
    }[module]


def top_level_cases():
    for module in MODULES:
        for opt, spec in options(module).items():
            for label, value in bad_values(spec, (module, opt) in DATA):
                if (module, opt, label) in SKIP or (module, opt) in (("namespace_mount", "mirror"),):
                    continue
                yield pytest.param(module, {opt: value}, opt, id="%s-%s-%s" % (module, opt, label))


def entry_cases():
    """Bad entries of the list forms, from the entry specs."""
    create_entry = model.argument_spec(model.GUEST, entry=True)
    for opt, spec in create_entry.items():
        for label, value in bad_values(spec, ("namespace_create", opt) in DATA):
            entry = {"name": "fzn", opt: value} if opt != "name" else {"name": value}
            yield pytest.param("namespace_create", {"name": None, "guests": [{"name": "fzm"}, entry]},
                               "guests[1].%s" % opt, id="create-entry-%s-%s" % (opt, label))
    mount_opts = options("namespace_mount")
    for opt in ("path", "src", "fstype", "opts", "propagation", "create", "state", "recreate", "lazy_unmount"):
        for label, value in bad_values(mount_opts[opt]):
            entry = {"path": "/fz-never", opt: value} if opt != "path" else {"path": value}
            yield pytest.param("namespace_mount", {"path": None, "mounts": [{"path": "/fz-a"}, entry]},
                               "mounts[1].%s" % opt, id="mount-entry-%s-%s" % (opt, label))
            yield pytest.param("namespace_mount", {"guest": None, "path": None, "guests": [{"guest": GUEST, "mounts": [entry]}]},
                               "guests[0].mounts[0].%s" % opt, id="mount-guests-entry-%s-%s" % (opt, label))
    link_opts = options("netns_link")
    for opt in ("ifname", "kind", "parent", "addresses", "mtu", "mac", "gateway", "gateway6", "recreate", "state"):
        for label, value in bad_values(link_opts[opt]):
            entry = {"ifname": "fz2", "peer": {"ifname": "fz2p"}, opt: value}
            yield pytest.param("netns_link", {"ifname": None, "links": [{"ifname": "fz3", "peer": {"ifname": "fz3p"}}, entry]},
                               "links[1].%s" % opt, id="link-entry-%s-%s" % (opt, label))
    # Shapes and keys.
    yield pytest.param("namespace_create", {"name": None, "guests": ["fzm", ["x"]]}, "guests[1]", id="create-entry-list")
    yield pytest.param("namespace_create", {"name": None, "guests": ["fzm", 2.5]}, "guests[1]", id="create-entry-float")
    yield pytest.param("namespace_create", {"name": None, "guests": [{"name": "fzm", "colour": 1}]}, "guests[0]", id="create-entry-unknown")
    yield pytest.param("namespace_mount", {"path": None, "mounts": [{"path": "/fz-a", "colour": 1}]}, "mounts[0]", id="mount-entry-unknown")
    yield pytest.param("netns_link", {"ifname": None, "links": [{"ifname": "fz3", "colour": 1}]}, "links[0]", id="link-entry-unknown")
    # Duplicates that matter (a second entry for the same thing).
    yield pytest.param("namespace_create", {"name": None, "guests": ["fzm", {"name": "fzm"}]}, "guests[1].name", id="create-dup")
    yield pytest.param("namespace_mount", {"path": None, "mounts": [{"path": "/fz-a"}, {"path": "/fz-a/"}]}, "mounts[1]", id="mount-dup")
    yield pytest.param("netns_link", {"ifname": None, "links": [{"ifname": "fz3", "peer": {"ifname": "fz4"}},
                                                                {"ifname": "fz3", "peer": {"ifname": "fz5"}}]},
                       "links[1]", id="link-dup")
    yield pytest.param("guest_enter_exec", {"guest": None, "guests": [GUEST, GUEST]}, "guests[1]", id="exec-dup")
    yield pytest.param("guest_enter_exec", {"guest": None, "guests": [GUEST, "fz-none\0"]}, "guests[1]", id="exec-guests-nul")
    yield pytest.param("guest_enter_exec", {"env": {"A": {"b": 1}}}, "env", id="exec-env-dict-value")
    yield pytest.param("guest_enter_exec", {"env": {"A": ["b"]}}, "env", id="exec-env-list-value")
    yield pytest.param("guest_enter_exec", {"env": {"A\0": "b"}}, "env", id="exec-env-nul-key")
    yield pytest.param("guest_enter_exec", {"env": {"A": "b\0"}}, "env", id="exec-env-nul-value")
    yield pytest.param("namespace_create", {"table_dir": ""}, "table_dir", id="create-empty-table_dir")
    yield pytest.param("namespace_mount", {"table_dir": ""}, "table_dir", id="mount-empty-table_dir")
    yield pytest.param("namespace_create", {"state_dir": ""}, "state_dir", id="create-empty-state_dir")
    yield pytest.param("namespace_create", {"init": ["/bin/sleep", "1\0"], "namespaces": ["pid", "mnt"]}, "init", id="create-init-nul")
    yield pytest.param("namespace_create", {"share": {"net": "/proc/self/ns/net\0"}}, "share.net", id="create-share-nul")
    yield pytest.param("namespace_create", {"time_offsets": {"monotonic": float("nan")}, "namespaces": ["time"]}, "time_offsets",
                       id="create-time-offsets-nan")
    yield pytest.param("namespace_create", {"uid_map": ["0 0 1\n1 1 1"], "namespaces": ["user"]}, "uid_map", id="create-uid-map-newline")


def snapshot(lab: dict) -> dict:
    def tree(top):
        return sorted(os.path.join(d, f) for d, dirs, files in os.walk(top) for f in dirs + files)

    r = lab["registry"]
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    return {
        "state": tree(lab["state"]),
        "table": tree(lab["table"]),
        "scratch": tree(lab["scratch"]),
        "run_netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
        "mountinfo": mountinfo,
        "guest_links": enter.call_in_guest(r.load(GUEST), ["net"], lambda: sorted(n for _i, n in socket.if_nameindex())),
        "guest_meta": r.load(GUEST),
    }


@pytest.mark.parametrize("module, change, names", list(top_level_cases()) + list(entry_cases()))
def test_bad_input_fails_cleanly_and_changes_nothing(lab, module, change, names):
    args = base_args(module, lab)
    args.update(change)
    args = {k: v for k, v in args.items() if v is not None}
    before = snapshot(lab)
    res = run_module(module, args)
    after = snapshot(lab)
    assert res.get("failed"), res
    msg = res.get("msg", "")
    assert "internal error" not in msg and "exception" not in res and "Traceback" not in msg, res
    # A list entry's path: "mounts[1].opts: ..." or "mounts[1]: opts ..." (messages of the entry's spec class).
    assert names in msg or (names.endswith("]") is False and "%s: %s" % tuple(names.rsplit(".", 1)) in msg), msg
    assert after == before
