# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The services of an init-less guest: how one is started, once, for the guest role and at boot.

A guest with an init (busybox init) starts its services itself (the role writes its
inittab).  An init-less guest has the collection's reaper as PID 1; each of its services is
started in it by a small shell script run with guest_enter_exec's code (execute.py): it
starts the service unless the pid file ``PID_DIR/NAME.pid`` inside the guest names a
process with the service's command line, and then checks that it stayed up.

The guest role's ``guest_deploy`` action gives the role this script (:func:`script`) for
each service; namespace_create records a guest's services (model field ``services``: a
list of ``{name, argv, pid_dir}``) in its definition, and the restore service
(boot.py) runs :func:`start` for them after the guest and its links are back.

Which guests' services run is also seen from the host, without entering any guest
(:func:`check`, for namespace_info's ``services``): :func:`script` reads the pid file
``PID_DIR/NAME.pid``, and the service runs when ``/proc/$pid/cmdline``, NULs made spaces,
is the service's argv joined by spaces plus one space.  Entering every guest for that costs
a fork, the namespace joins and a shell per guest and service.  :func:`check` asks the same
two files from the host, through the root of the guest's PID 1 (``/proc/INIT/root``, which
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

This file imports nothing from Ansible.
"""

from __future__ import annotations

import os
import re
import shlex

from ansible_collections.linuxns.guests.plugins.module_utils import model, procfs, rootfs
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, InvalidInput

DEFAULT_PID_DIR = "/run/linuxns-services"  # the guest role's guest_service_dir
DEFAULT_CHECK_DELAY = 0.2  # the guest role's guest_service_check_delay
NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
KEYS = ("name", "argv", "pid_dir")


def parse(value, where: str = "", guest=None):
    """namespace_create's ``services``, normalised: [{name, argv, pid_dir}] (None: not given)."""
    if value is None:
        return None
    param = "%sservices" % where
    who = " (guest %r)" % guest if guest else ""
    if not isinstance(value, list):
        raise InvalidInput("%s must be a list of {name, argv, pid_dir}%s" % (param, who))
    out, seen = [], set()
    for i, s in enumerate(value):
        at = "%s[%d]" % (param, i)
        if not isinstance(s, dict) or set(s) - set(KEYS):
            raise InvalidInput("%s must be a dict with name, argv and pid_dir (optional) only%s" % (at, who))
        name, argv, pid_dir = s.get("name"), s.get("argv"), s.get("pid_dir") or DEFAULT_PID_DIR
        if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name in seen:
            raise InvalidInput("%s.name %r must be a unique name of letters, digits, _.-%s" % (at, name, who))
        seen.add(name)
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
            raise InvalidInput("%s.argv must be a non-empty list of non-empty strings%s" % (at, who))
        for j, arg in enumerate(argv):
            model.check_text(arg, "%s.argv[%d]" % (at, j))
        model.check_dir(pid_dir, at + ".pid_dir")
        out.append({"name": name, "argv": list(argv), "pid_dir": pid_dir})
    return out


def script(service: dict, check_mode: bool = False, delay: float = DEFAULT_CHECK_DELAY) -> str:
    """The shell (run by the guest's /bin/sh -c) that starts ``service`` unless it runs; it
    prints ``running PID``, ``started PID`` or (``check_mode``) ``would start``, and fails
    when the service ended right after its start."""
    q = shlex.quote
    pid_dir = service.get("pid_dir") or DEFAULT_PID_DIR
    argv = [str(a) for a in service["argv"]]
    lines = [
        "pf=%s" % q(pid_dir + "/" + service["name"] + ".pid"),
        "want=%s" % q(" ".join(argv) + " "),
        'pid=$(cat "$pf" 2>/dev/null)',
        'if [ -n "$pid" ] && [ "$(tr \'\\0\' \' \' < "/proc/$pid/cmdline" 2>/dev/null)" = "$want" ]; then echo "running $pid"; exit 0; fi',
    ]
    if check_mode:
        return "\n".join(lines + ['echo "would start"; exit 0']) + "\n"
    lines += [
        "mkdir -p %s" % q(pid_dir),
        "setsid %s </dev/null >/dev/null 2>&1 &" % " ".join(q(a) for a in argv),
        "new=$!",
        'echo "$new" > "$pf"',
        "sleep %s" % float(delay),
        "# On a loaded host the background shell may not have exec'd the service yet (its cmdline is",
        "# still the shell's or setsid's): wait for that, up to 10 s; an empty cmdline means it ended.",
        "n=0",
        "while :; do",
        '  cmd=$(tr \'\\0\' \' \' < "/proc/$new/cmdline" 2>/dev/null)',
        '  [ "$cmd" = "$want" ] && break',
        '  if [ -z "$cmd" ] || [ "$n" -ge 100 ]; then',
        "    echo %s >&2; exit 1" % q("service %s ended right after its start" % service["name"]),
        "  fi",
        "  n=$((n + 1)); sleep 0.1",
        "done",
        'echo "started $new"',
    ]
    return "\n".join(lines) + "\n"


def start(meta, services: list) -> list:
    """Start ``services`` (parse's entries) in the guest of record ``meta`` unless they run, with
    guest_enter_exec's code; returns [(name, ok, text)]: ``text`` is "started PID" or "running
    PID" when ``ok``, else why it failed (the script's last line of stderr)."""
    from ansible_collections.linuxns.guests.plugins.module_utils import execute  # guest_enter_exec's engine

    out = []
    for s in services:
        res = execute.run_many([meta], execute.Request(cmd=script(s), shell=True))[0]
        if res.get("failed") or res.get("rc"):
            why = (res.get("stderr") or res.get("msg") or "exit status %s" % res.get("rc")).strip().splitlines()
            out.append((s["name"], False, why[-1] if why else "failed"))
        else:
            out.append((s["name"], True, (res.get("stdout") or "").strip()))
    return out


MAX_PID_FILE = 64
MAX_CMDLINE = 1 << 16


def validate(services, service_dir: str) -> None:
    """Refuse a bad service_dir or entry (InvalidInput naming the parameter) before reading anything."""
    model.check_dir(service_dir, "service_dir", DEFAULT_PID_DIR)
    for i, svc in enumerate(services or []):
        model.check_text(svc["name"], "services[%d].name" % i)
        if not svc["name"] or "/" in svc["name"]:
            raise InvalidInput("services[%d].name %r must be a file name (not empty, no /)" % (i, svc["name"]))
        for j, arg in enumerate(svc["argv"]):
            if "\0" in arg:
                raise InvalidInput("services[%d].argv[%d] must not contain NUL characters" % (i, j))
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
