"""The error classes: one way to re-raise an error for a guest, and their JSON form across pipes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import errors
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    ExecFailed,
    GuestError,
    GuestNotFound,
    InvalidInput,
    KernelError,
    LimitReached,
    MountBusy,
)

BUILD = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "build"))


def test_for_guest_keeps_class_errno_and_details():
    exc = LimitReached("cannot create a uts namespace", errno=errno.ENOSPC, limit="/proc/sys/user/max_uts_namespaces")
    named = exc.for_guest("web1")
    assert named.__class__ is LimitReached and named.errno == errno.ENOSPC
    assert named.details == {"limit": "/proc/sys/user/max_uts_namespaces"}
    assert named.msg == str(named) == "guest 'web1': cannot create a uts namespace"
    # a copy: the original is untouched, and details are not shared
    named.details["results"] = []
    assert exc.msg == "cannot create a uts namespace" and exc.details == {"limit": "/proc/sys/user/max_uts_namespaces"}
    # a message that names the guest already is not named twice, but still a copy
    again = named.for_guest("web1")
    assert again.msg == named.msg and again is not named and again.__class__ is LimitReached
    assert InvalidInput("x").with_prefix("guests[2]: ").msg == "guests[2]: x"
    assert InvalidInput("x").with_prefix("p: ").__class__ is InvalidInput and GuestError("x").errno == 0


@pytest.mark.parametrize("exc", [
    LimitReached("limit", errno=errno.ENOSPC, limit="/proc/sys/user/max_pid_namespaces"),
    MountBusy("umount /x: target is busy", errno=errno.EBUSY, path="/x"),
    ExecFailed("command 'x' was not found", errno=errno.ENOENT, rc=127),
    GuestNotFound("no guest 'x'"),
])
def test_payload_round_trip(exc):
    back = errors.from_payload(json.loads(json.dumps(errors.to_payload(exc))))
    assert back.__class__ is exc.__class__ and back.msg == exc.msg and back.errno == exc.errno and back.details == exc.details


def test_payload_of_other_exceptions_and_unknown_classes():
    back = errors.from_payload(errors.to_payload(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")))
    assert back.__class__ is KernelError and back.errno == errno.ENOENT and "/x" in back.msg
    assert errors.from_payload({"class": "ValueError", "error": "e"}).__class__ is GuestError
    assert errors.from_payload({"class": "to_payload", "error": "e"}).__class__ is GuestError
    assert errors.from_payload({"class": "NotYetKnown", "error": "e", "details": "junk"}).__class__ is GuestError


LIMIT_IN_A_BATCH = r"""
import ctypes, json, sys
sys.path.insert(0, %(build)r)
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000 | 0x00020000) != 0:  # a user and a mount namespace of this process's own
    sys.exit("unshare: errno %%d" %% ctypes.get_errno())
open("/proc/self/setgroups", "w").write("deny")
open("/proc/self/uid_map", "w").write("0 0 1")
open("/proc/self/gid_map", "w").write("0 0 1")
if libc.mount(b"none", b"/", None, 0x40000 | 0x4000, None) != 0:
    sys.exit("mount: errno %%d" %% ctypes.get_errno())
with open("/proc/sys/user/max_uts_namespaces", "w") as f:
    f.write("0")
from ansible_collections.linuxns.guests.plugins.module_utils import guests, registry
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError
r = registry.Registry(%(tmp)r + "/state", %(tmp)r + "/netns")
try:
    guests.ensure_guests(r, [{"name": "lim1", "namespaces": ["uts"], "_in_list": True}])
except GuestError as exc:
    print(json.dumps({"class": type(exc).__name__, "msg": exc.msg, "errno": exc.errno, "details": sorted(exc.details),
                      "limit": exc.details.get("limit")}))
"""


def test_limit_reached_keeps_its_class_and_limit_through_a_batch(tmp_path):
    """A guest of a list run hits max_uts_namespaces (0, in a user namespace of the test's own):
    the error re-raised for that entry is still LimitReached and still names the limit file."""
    code = LIMIT_IN_A_BATCH % {"build": BUILD, "tmp": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=dict(os.environ))
    if "Permission denied" in out.stderr or "Read-only" in out.stderr:
        pytest.skip("this kernel does not let a user namespace lower its own limit: %s" % out.stderr[-200:])
    assert out.returncode == 0 and out.stdout, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["class"] == "LimitReached", got
    assert got["limit"] == "/proc/sys/user/max_uts_namespaces" and got["errno"] == errno.ENOSPC
    assert got["msg"].startswith("guest 'lim1': cannot create a uts namespace") and "results" in got["details"]


def test_info_counts_only_guest_not_found_as_missing(unit_registry):
    from ansible_collections.linuxns.guests.plugins.module_utils import guest_info

    assert guest_info.info(unit_registry, ["nosuch", "4242"])["missing"] == ["nosuch", "4242"]
    with pytest.raises(InvalidInput):  # a malformed reference is an error, not a missing guest
        guest_info.info(unit_registry, ["bad/name"])
