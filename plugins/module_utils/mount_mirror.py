# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared-subtree mirror: a guest's whole tree shown below a host folder.

Ram Pai's layout from the LKML thread on entering namespaces:

- BASE: a host folder bound onto itself and made unbindable, so recursive binds of
  trees that contain it never copy it (no explosion);
- BASE/NAME: the guest's whole tree, rbound from inside its mount namespace after making
  it rshared: mounts made in the guest later appear here, and mounts made here appear
  in the guest (peer groups).

A host process whose cwd or open file lies below BASE/NAME keeps that copy busy, and
because an unmount propagates to every peer, the guest's own unmount then fails with
EBUSY: the busy message names such processes ("on the host, in the mirror").
"""

from __future__ import annotations

import errno as _errno
import os

from ansible_collections.linuxns.guests.plugins.module_utils import enter
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    InvalidInput,
    KernelError,
)
from ansible_collections.linuxns.guests.plugins.module_utils.mount_spec import AT_FDCWD
from ansible_collections.linuxns.guests.plugins.module_utils.mount_worker import holders
from ansible_collections.linuxns.guests.plugins.module_utils.mountinfo import host_table, parse_mountinfo, top_mount


def mirror_copies(name: str, path: str) -> list:
    """Host paths where a mirror shows the guest's ``path`` (``*/NAME/path`` mounts on the host)."""
    try:
        with open("/proc/self/mountinfo") as f:
            host = parse_mountinfo(f.read())
    except OSError:
        return []
    tail = "/%s%s" % (name, path)
    return sorted({m["path"] for m in host if m["path"].endswith(tail)})


def plan_mirror(meta: reg.GuestRecord, base, state: str) -> dict:
    if not isinstance(base, str) or not base.startswith("/") or ".." in base.split("/"):
        raise InvalidInput("mirror %r must be an absolute host path without '..'" % (base,))
    base = os.path.normpath(base)
    if base == "/":
        raise InvalidInput("mirror must not be / (it is bound onto itself and made unbindable)")
    if state not in ("present", "absent"):
        raise InvalidInput("mirror_state must be present or absent, not %r" % (state,))
    if os.path.lexists(base) and (os.path.islink(base) or not os.path.isdir(base)):
        raise InvalidInput("mirror %s exists and is not a folder" % base)
    table = host_table()
    target = os.path.join(base, meta.name)
    top = top_mount(table, target)
    base_top = top_mount(table, base)
    plan = {"base": base, "path": target, "state": state, "action": "none",
            "base_ready": base_top is not None and base_top["propagation"] == "unbindable"}
    if state == "present" and (top is None or not plan["base_ready"]):
        plan["action"] = "create"
    elif state == "absent" and top is not None:
        plan["action"] = "remove"
    return plan


def _clone_guest_tree(host_mnt_fd: int, target: str) -> None:
    """Runs in a worker inside the guest's mount namespace: rshare and clone its tree,
    go back to the host's mount namespace and attach the clone at ``target``."""
    sc.mount_setattr(AT_FDCWD, "/", sc.AT_RECURSIVE, 0, 0, sc.MS_SHARED)
    fd = sc.open_tree(AT_FDCWD, "/", sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC | sc.AT_RECURSIVE)
    try:
        sc.setns(host_mnt_fd, "mnt")
        sc.move_mount(fd, "", AT_FDCWD, target, sc.MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        os.close(fd)


def apply_mirror(meta: reg.GuestRecord, plan: dict) -> None:
    base, target = plan["base"], plan["path"]
    if plan["action"] == "create":
        os.makedirs(base, mode=0o755, exist_ok=True)
        if not plan["base_ready"]:
            if top_mount(host_table(), base) is None:
                sc.mount(base, base, None, sc.MS_BIND)
            sc.mount(None, base, None, sc.MS_UNBINDABLE)
        if top_mount(host_table(), target) is None:
            os.makedirs(target, mode=0o755, exist_ok=True)
            host_mnt = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            try:
                enter.call_in_guest(meta, ["mnt"], _clone_guest_tree, host_mnt, target)
            finally:
                os.close(host_mnt)
    elif plan["action"] == "remove":
        who = holders(None, {"mount_id": None}, [target])
        if who:
            raise KernelError("mirror %s: target is busy (held by %s); stop those processes first" % (target, ", ".join(who)), errno=_errno.EBUSY)
        # private first, so that the unmount does not propagate into the guest
        sc.mount_setattr(AT_FDCWD, target, sc.AT_RECURSIVE, 0, 0, sc.MS_PRIVATE)
        sc.umount2(target, sc.MNT_DETACH)
        try:
            os.rmdir(target)
        except OSError:
            pass


def mirror_result(plan: dict) -> dict:
    return {"path": plan["path"], "state": plan["state"], "action": plan["action"], "changed": plan["action"] != "none"}
