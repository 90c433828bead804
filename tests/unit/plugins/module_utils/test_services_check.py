"""services.check: which guests' init-less services run, read from the host (namespace_info's
``services``), for real: a busybox guest whose service is started with the role's own script.

The check reads two files the guest controls (its pid file and /proc/PID/cmdline, through the
root of the guest's init).  The guest is the attacker here: whatever it plants, the host reads
nothing outside the guest's root, never blocks, and a doubtful answer is ``enter`` (the role
then runs its shell in the guest, as without the check) - never ``running``.
"""

from __future__ import annotations

import os
import signal

import pytest
from waiting import wait_for

from ansible_collections.linuxns.guests.plugins.module_utils import guests, services
from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput

IDLE = ["/bin/busybox", "sleep", "1000"]
PID_DIR = services.DEFAULT_PID_DIR


@pytest.fixture
def guest(unit_registry, busybox_root):
    for applet in ("tr", "mkdir", "setsid"):
        os.symlink("busybox", os.path.join(busybox_root, "bin", applet))
    guests.ensure_guests(unit_registry, [{"name": "sv1", "namespaces": ["mnt", "uts", "pid"], "root": busybox_root,
                                          "stop_timeout": 1}])
    meta = unit_registry.load("sv1")
    started = services.start(meta, [{"name": "idle", "argv": IDLE, "pid_dir": PID_DIR}])
    assert started[0][:2] == ("idle", True) and started[0][2].startswith("started "), started
    return unit_registry, meta, int(started[0][2].split()[1])


def check(registry, name="idle", argv=None, guests_=("sv1",)):
    return services.check(registry, [{"name": name, "argv": argv or IDLE, "guests": list(guests_)}], PID_DIR)


def pid_file(meta, name="idle") -> str:
    return os.path.join(meta.root, PID_DIR.lstrip("/"), name + ".pid")


def test_a_running_service_is_found_and_others_are_entered(guest):
    registry, meta, guest_pid = guest
    # the role's script says "running" for the same service: the check from the host agrees
    assert services.start(meta, [{"name": "idle", "argv": IDLE, "pid_dir": PID_DIR}]) == [("idle", True, "running %d" % guest_pid)]
    assert check(registry) == [{"name": "idle", "running": {"sv1": guest_pid}, "enter": []}]
    # another command line, another service name (no pid file), a guest with no record
    assert check(registry, argv=["/bin/busybox", "sleep", "999"]) == [{"name": "idle", "running": {}, "enter": ["sv1"]}]
    assert check(registry, name="other") == [{"name": "other", "running": {}, "enter": ["sv1"]}]
    assert check(registry, guests_=("sv1", "nosuch")) == [{"name": "idle", "running": {"sv1": guest_pid}, "enter": ["nosuch"]}]


def test_a_guest_whose_init_is_gone_is_entered(guest):
    registry, meta, _guest_pid = guest
    os.kill(meta.init_pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists("/proc/%d/root" % meta.init_pid) or
             open("/proc/%d/stat" % meta.init_pid).read().rsplit(")", 1)[1].split()[0] == "Z", "the guest's init dead")
    assert check(registry) == [{"name": "idle", "running": {}, "enter": ["sv1"]}]


def test_a_pid_file_linked_to_a_host_file_is_not_followed(guest, tmp_path):
    """The guest replaces its pid file by a link to a host path holding the right pid: read on
    the host without RESOLVE_IN_ROOT it would say "running" (and the host would have read a file
    of its own for the guest); resolved inside the guest's root it names nothing."""
    registry, meta, guest_pid = guest
    host_file = tmp_path / "host-pid"
    host_file.write_text("%d\n" % guest_pid)
    os.unlink(pid_file(meta))
    os.symlink(str(host_file), pid_file(meta))
    assert check(registry) == [{"name": "idle", "running": {}, "enter": ["sv1"]}]
    # the same link made relative, climbing out: still inside the root
    os.unlink(pid_file(meta))
    os.symlink("../" * 12 + str(host_file).lstrip("/"), pid_file(meta))
    assert check(registry) == [{"name": "idle", "running": {}, "enter": ["sv1"]}]


@pytest.mark.parametrize("plant", ["fifo", "big", "words", "empty", "dir"])
def test_whatever_the_guest_plants_as_pid_file_is_entered_never_blocks(guest, plant):
    registry, meta, guest_pid = guest
    path = pid_file(meta)
    os.unlink(path)
    if plant == "fifo":
        os.mkfifo(path)  # an open for reading would wait for a writer forever
    elif plant == "big":
        with open(path, "w") as f:
            f.write("%d\n" % guest_pid + " " * (1 << 20))
    elif plant == "words":
        with open(path, "w") as f:
            f.write("%d; rm -rf /\n" % guest_pid)
    elif plant == "empty":
        open(path, "w").close()
    else:
        os.mkdir(path)
    assert check(registry) == [{"name": "idle", "running": {}, "enter": ["sv1"]}]


@pytest.mark.parametrize("services_,service_dir,words", [
    ([{"name": "a/b", "argv": ["x"], "guests": ["g"]}], PID_DIR, "services[0].name 'a/b' must be a file name"),
    ([{"name": "", "argv": ["x"], "guests": ["g"]}], PID_DIR, "services[0].name '' must be a file name"),
    ([{"name": "a", "argv": ["x\0y"], "guests": ["g"]}], PID_DIR, "services[0].argv[0] must not contain NUL"),
    ([{"name": "a", "argv": ["x"], "guests": ["../g"]}], PID_DIR, "services[0].guests[0]"),
    ([], "relative/dir", "service_dir"),
    ([], "/run/x\0y", "service_dir"),
])
def test_bad_services_input_is_refused_before_anything_is_read(services_, service_dir, words):
    with pytest.raises(InvalidInput, match=None) as exc:
        services.validate(services_, service_dir)
    assert words in str(exc.value), str(exc.value)
