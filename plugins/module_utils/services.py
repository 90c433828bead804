# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which guests' init-less services run, seen from the host without entering any guest.

The guest role starts an init-less guest's service with a shell run inside the guest
(roles/guest/templates/service.sh.j2): it reads the pid file ``SERVICE_DIR/NAME.pid``,
and the service runs when ``/proc/$pid/cmdline``, NULs made spaces, is the service's
argv joined by spaces plus one space.  Entering every guest for that costs a fork, the
namespace joins and a shell per guest and service.  :func:`check` asks the same two
files from the host, through the root of the guest's PID 1 (``/proc/INIT/root``, which
is the guest's root in its own mount namespace):

- the guest's init is its recorded ``init_pid`` with the recorded start time, and a
  member of the guest's pinned pid and mount namespaces (so its root is the guest's);
- both files are read inside that root (:mod:`rootfs`: openat2 ``RESOLVE_IN_ROOT``, so a
  link the guest planted never leads to a host file), the pid file must be a pid
  (digits) and ``proc/PID/cmdline`` is read in the guest's own ``/proc``.

A guest passes (``running``) only when the shell would print ``running``; every other
guest - no record, no init, a pid file that is missing, empty or not a pid, another
command line, an unreadable file - is ``enter``: the role runs its shell there as
before, which starts the service (or, in check mode, predicts that).  So the check
never changes what the role does, only how many guests it enters.

Imports nothing from Ansible.
"""

from __future__ import annotations

import os

from ansible_collections.linuxns.guests.plugins.module_utils import model, procfs, rootfs
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError

MAX_PID_FILE = 64
MAX_CMDLINE = 1 << 16


def validate(services, service_dir: str) -> None:
    """Refuse a bad service_dir or entry (InvalidInput naming the parameter) before reading anything."""
    model.check_dir(service_dir, "service_dir", "/run/linuxns-services")
    for i, svc in enumerate(services or []):
        model.check_text(svc["name"], "services[%d].name" % i)
        if not svc["name"] or "/" in svc["name"]:
            raise model.InvalidInput("services[%d].name %r must be a file name (not empty, no /)" % (i, svc["name"]))
        for j, arg in enumerate(svc["argv"]):
            if "\0" in arg:
                raise model.InvalidInput("services[%d].argv[%d] must not contain NUL characters" % (i, j))
        for j, guest in enumerate(svc["guests"]):
            reg.validate_name(guest, "services[%d].guests[%d]" % (i, j))


def wanted_cmdline(argv: list) -> bytes:
    """The service's command line as the role's shell compares it (``tr '\\0' ' '``)."""
    return (" ".join(argv) + " ").encode()


def _init_root(meta) -> int | None:
    """An O_PATH fd of the root of the guest's verified PID 1, or None."""
    if meta is None or not meta.init_pid:
        return None
    if not procfs.process_alive(meta.init_pid, meta.init_start):
        return None
    proc = procfs.Proc(int(meta.init_pid))
    for t in ("pid", "mnt"):
        pin = meta.pins.get(t)
        if pin is None or proc.ns(t) != pin.ino:
            return None
    try:
        fd = rootfs.open_root("/proc/%d/root" % int(meta.init_pid))
    except OSError:
        return None
    # The pid may have been reused between the check and the open: check again.
    if not procfs.process_alive(meta.init_pid, meta.init_start):
        os.close(fd)
        return None
    return fd


def _running(root_fd: int, service_dir: str, name: str, want: bytes) -> int | None:
    """The service's pid (as the guest sees it) when the role's shell would say ``running``."""
    try:
        raw = rootfs.read_file(root_fd, "%s/%s.pid" % (service_dir.rstrip("/"), name), MAX_PID_FILE)
    except OSError:
        return None
    text = raw.rstrip(b"\n")  # $(cat file) drops trailing newlines only
    if not text.isdigit():
        return None
    try:
        cmdline = rootfs.read_file(root_fd, "proc/%d/cmdline" % int(text), MAX_CMDLINE)
    except (OSError, ValueError):
        return None
    return int(text) if cmdline.replace(b"\0", b" ") == want else None


def check(registry: reg.Registry, services: list, service_dir: str) -> list:
    """For each service group ``{name, argv, guests}``: ``{name, running: {guest: pid}, enter: [guests]}``.

    ``enter`` keeps the group's order; nothing is changed anywhere.
    """
    roots: dict = {}
    out = []
    try:
        for svc in services:
            want = wanted_cmdline(svc["argv"])
            running, enter = {}, []
            for guest in svc["guests"]:
                if guest not in roots:
                    try:
                        meta = registry.load(guest)
                    except (GuestError, OSError, ValueError):  # an unreadable record: the shell's enter reports it
                        meta = None
                    roots[guest] = _init_root(meta)
                fd = roots[guest]
                pid = _running(fd, service_dir, svc["name"], want) if fd is not None else None
                if pid is None:
                    enter.append(guest)
                else:
                    running[guest] = pid
            out.append({"name": svc["name"], "running": running, "enter": enter})
    finally:
        for fd in roots.values():
            if fd is not None:
                os.close(fd)
    return out
