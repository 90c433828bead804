# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""No chroot fallback: a guest with a root is entered only through its own mount namespace.

Technique: the classic double-chroot break-out.  Before the fix, entering a rooted
guest with a namespace subset that left out ``mnt`` ended in ``chroot(root)`` inside
the *host's* mount namespace, as root with every capability.  chroot is no boundary
for such a process: it makes a folder ``/x``, chroots into it while keeping its
working folder outside (busybox ``nsenter -r/x`` saves the cwd, chroots, and goes
back to the saved cwd, as util-linux nsenter does), climbs with ``cd -P ..`` to the
host's real ``/``, and chroots there: the host's own ``cat`` then reads a host file.

The probe only reads a marker file that this test makes outside the guest's root and
removes afterwards; it writes nothing but a marker inside the guest's root.  Each
attempt must be refused before anything runs: the refusal names ``namespaces``, the
guest and why, and the marker the command would leave in the guest's root is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import enter, entry, execute, guests
from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput
from ansible_collections.linuxns.guests.plugins.module_utils.execute import Request

pytestmark = pytest.mark.unit

NAME = "sec-nochroot"
RAN = "/tmp/ran"  # inside the guest's root: the command ran
SECRET = "linuxns-host-marker-not-for-guests"
# Subsets of the default namespaces (mnt uts ipc net pid) without mnt.
SUBSETS = [["uts", "ipc", "net", "pid"], ["net"], ["uts"]]


def escape_script(marker: str) -> str:
    """The double-chroot break-out, with the guest's busybox only; prints the host marker."""
    return (
        "echo ran > %s; "
        "busybox mkdir -p /x/bin && busybox cp /bin/busybox /x/bin/busybox && cd / && "
        "busybox nsenter -r/x -F /bin/busybox sh -c "
        "'cd -P ../../../../../../../../../..; busybox chroot . /bin/cat %s'" % (RAN, marker)
    )


@pytest.fixture
def host_marker():
    """A file of the host, outside every guest root; removed afterwards."""
    fd, path = tempfile.mkstemp(prefix="linuxns-host-marker-", dir="/tmp")
    try:
        os.write(fd, SECRET.encode())
        os.close(fd)
        yield path
    finally:
        os.unlink(path)


@pytest.fixture
def guest(unit_registry, busybox_root):
    guests.ensure_guests(unit_registry, [{"name": NAME, "root": busybox_root}])
    return unit_registry.find(NAME)


def check_refusal(msg: str, types) -> None:
    assert msg.startswith("namespaces:"), msg
    assert "guest %r" % NAME in msg and "mnt" in msg and "own root" in msg, msg
    assert "chroot" in msg, msg  # says why: never a chroot in the host's mount namespace


@pytest.mark.timeout(120)
@pytest.mark.parametrize("types", SUBSETS, ids=["+".join(t) for t in SUBSETS])
def test_subset_without_mnt_is_refused(guest, unit_registry, busybox_root, host_marker, types):
    """guest_enter_exec's helper (execute.run) with ``namespaces`` leaving out mnt."""
    ran = os.path.join(busybox_root, RAN.lstrip("/"))
    req = Request(argv=["sh", "-c", escape_script(host_marker)], namespaces=types)
    with pytest.raises(InvalidInput) as info:
        r = execute.run(guest, req)
        pytest.fail("the command ran in the host's mount namespace (rc %s); it printed %r" % (r.get("rc"), r.get("stdout")))
    assert not os.path.exists(ran), "the command ran"
    check_refusal(info.value.msg, types)
    # refused up front too, before any guest of a list is entered
    with pytest.raises(InvalidInput) as info:
        execute.prepare_guests(unit_registry, [NAME], req)
    check_refusal(info.value.msg, types)


@pytest.mark.timeout(120)
def test_spawn_in_guest_never_chroots(guest, busybox_root, host_marker):
    """The one enter path itself (roles' services, the connection and the modules all end here)."""
    ran = os.path.join(busybox_root, RAN.lstrip("/"))
    with pytest.raises(InvalidInput) as info:
        spawned = enter.spawn_in_guest(guest, ["net", "uts"], ["sh", "-c", escape_script(host_marker)], {"PATH": "/bin"}, (0, 1, 2))
        msgs = entry.wait_spawned(spawned)
        pytest.fail("entered the guest without its mount namespace: %r" % msgs)
    check_refusal(info.value.msg, ["net", "uts"])
    assert not os.path.exists(ran), "the command ran"


@pytest.mark.timeout(120)
def test_connection_entry_without_mnt_pin_is_refused(guest, busybox_root, host_marker, capfd):
    """The connection's entry program enters all of the guest's namespaces; a registry entry
    with a root but no mnt pin (never written by namespace_create, which refuses a root
    without a private mnt) must not turn that into a chroot either."""
    meta = guest.copy()
    del meta.pins["mnt"]
    ran = os.path.join(busybox_root, RAN.lstrip("/"))
    with pytest.raises(InvalidInput) as info:
        entry.run_exec(meta, escape_script(host_marker))
    assert SECRET not in capfd.readouterr().out
    assert not os.path.exists(ran), "the command ran"
    check_refusal(info.value.msg, None)


@pytest.mark.timeout(120)
def test_module_refuses_subset_without_mnt(guest, unit_registry, busybox_root, host_marker, tmp_path):
    """The same attack through guest_enter_exec's own code (the module run as Ansible runs it)."""
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {
        "guest": NAME, "cmd": escape_script(host_marker), "shell": True, "namespaces": ["uts", "ipc", "net", "pid"],
        "state_dir": unit_registry.state_dir}}))
    build = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build")
    env = dict(os.environ, PYTHONPATH=build)
    proc = subprocess.run([sys.executable, "-m", "ansible_collections.linuxns.guests.plugins.modules.guest_enter_exec", str(args)],
                          capture_output=True, text=True, env=env, timeout=100, check=False)
    out = json.loads(proc.stdout)
    assert SECRET not in proc.stdout, "the host marker was read: %r" % out.get("stdout")
    assert not os.path.exists(os.path.join(busybox_root, RAN.lstrip("/"))), "the command ran"
    assert out.get("failed") and out.get("rc") is None, out
    check_refusal(out["msg"], None)
    assert "exception" not in out, out


@pytest.mark.timeout(120)
def test_what_still_works(guest, busybox_root, host_marker):
    """The other side: mnt in the subset enters the guest's own / (the escape finds no host
    file), and root: false without mnt keeps the caller's / on purpose (a host tool)."""
    r = execute.run(guest, Request(argv=["sh", "-c", escape_script(host_marker)], namespaces=["mnt", "uts"]))
    assert SECRET not in r["stdout"] and r["rc"] != 0, r
    assert os.path.exists(os.path.join(busybox_root, RAN.lstrip("/")))
    r = execute.run(guest, Request(argv=["/bin/cat", host_marker], namespaces=["net"], root=False))
    assert r["stdout"] == SECRET and r["rc"] == 0, r
