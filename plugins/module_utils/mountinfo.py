# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mount tables: /proc/PID/mountinfo parsing (octal unescaping), the index of a table
by mount point, the top mount at a path, and the table seen inside a guest.
"""

from __future__ import annotations

import os

from ansible_collections.linuxns.guests.plugins.module_utils import enter, procfs
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg


def unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        c = field[i]
        if c == "\\" and i + 3 < len(field) + 0 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list:
    """Parse mountinfo text (proc(5)) into a list of dicts, in table order."""
    mounts = []
    for line in text.splitlines():
        if not line.strip():
            continue
        left, _sep, right = line.partition(" - ")
        f = left.split(" ")
        r = right.split(" ")
        if len(f) < 6 or len(r) < 2:
            continue
        optional = [x for x in f[6:] if x]
        propagation = "private"
        peer = master = None
        for tag in optional:
            if tag.startswith("shared:"):
                propagation, peer = "shared", int(tag[7:])
            elif tag.startswith("master:"):
                master = int(tag[7:])
                if propagation != "shared":
                    propagation = "slave"
            elif tag == "unbindable":
                propagation = "unbindable"
        mounts.append(
            {
                "mount_id": int(f[0]),
                "parent_id": int(f[1]),
                "dev": f[2],
                "root": unescape(f[3]),
                "path": unescape(f[4]),
                "mount_opts": f[5],
                "optional": optional,
                "propagation": propagation,
                "peer_group": peer,
                "master": master,
                "fstype": r[0],
                "src": unescape(r[1]),
                "super_opts": r[2] if len(r) > 2 else "",
            }
        )
    return mounts


def read_own_mountinfo(proc_fd: int) -> str:
    fd = os.open("self/mountinfo", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_fd)
    try:
        return enter.read_all(fd).decode(errors="surrogateescape")
    finally:
        os.close(fd)


def guest_mountinfo(meta: reg.GuestRecord) -> list:
    """The guest's mount table as the kernel reports it from inside its mount namespace."""
    init = meta.init_pid
    if init and procfs.process_alive(init, meta.init_start):
        try:
            with open("/proc/%d/mountinfo" % init, "rb") as f:
                return parse_mountinfo(f.read().decode(errors="surrogateescape"))
        except OSError:
            pass
    # No live process in the guest: read it from a child that joined its mount
    # namespace, through the host's /proc (opened before setns).
    proc_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        text = enter.call_in_guest(meta, ["mnt"], read_own_mountinfo, proc_fd)
    finally:
        os.close(proc_fd)
    return parse_mountinfo(text)


def index_mounts(table: list) -> dict:
    """path -> the mounts at that path, in table order (for many lookups)."""
    index = {}
    for m in table:
        index.setdefault(m["path"], []).append(m)
    return index


def top_mount(table, path: str):
    """The mount on top at ``path`` (the one no other mount at ``path`` sits on), or None.

    ``table`` is a mountinfo list or an :func:`index_mounts` dict."""
    here = table.get(path, []) if isinstance(table, dict) else [m for m in table if m["path"] == path]
    if not here:
        return None
    ids = {m["parent_id"] for m in here}
    tops = [m for m in here if m["mount_id"] not in ids]
    return (tops or here)[-1]


def host_table() -> list:
    """The mount table of our own mount namespace (the host's, for the mirror)."""
    with open("/proc/self/mountinfo") as f:
        return parse_mountinfo(f.read())
