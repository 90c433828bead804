# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The entry program: how the ``linuxns.guests.guest`` connection reaches into a guest.

The connection plugin runs this with the *host's* Python over ssh, built at run
time from this file and the module_utils it imports (errors, syscalls,
rootfs, procfs, registry, confine, enter: see ``plugins/plugin_utils/entry_program.py``).  Entering is
:func:`enter.spawn_in_guest`, the same path ``guest_enter_exec`` uses; this
file only adds the small command line the connection speaks::

    exec   STATE GUEST CMD        run CMD with the guest's /bin/sh -c; stdin/stdout/stderr are the
                                  ssh channel's; exits with CMD's exit status
    put    STATE GUEST PATH SIZE  copy SIZE bytes of stdin to PATH inside the guest (its mount namespace
                                  and root); SIZE 0 reads nothing (an empty stdin may be a tty)
    fetch  STATE GUEST PATH       copy PATH inside the guest to stdout
    stage  STATE GUEST PATH       copy PATH inside the guest to a new host file under STATE/transfer;
                                  print that file's path (the caller fetches it, then runs ``unstage``)
    unstage STATE FILE            remove a file ``stage`` or ``mkstage`` made
    mkstage STATE                 make an empty private host file under STATE/transfer, print its path
                                  (a transport without stdin streaming uploads into it)
    place  STATE GUEST FILE PATH  copy that host FILE to PATH inside the guest, then remove FILE
    status STATE [GUEST...]       JSON: every guest of STATE with its state (running/stopped), and
                                  what each GUEST reference resolves to (or missing)

When the program itself fails (the guest is missing or stopped, a path cannot
be opened inside the guest...) it writes one line ``LINUXNS-ENTRY-ERROR {json}``
to stderr and exits with :data:`ERROR_RC`; the JSON holds ``class`` (the
helper's error class: ``GuestNotFound``, ``GuestStale``...) and ``error``.
"""

from __future__ import annotations

import json
import os
import sys

from ansible_collections.linuxns.guests.plugins.module_utils import enter, errors, rootfs
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils.errors import ExecFailed, GuestError, GuestStale, InvalidInput, PathError

PROTOCOL = 1
ERROR_RC = errors.ENTRY_ERROR_RC
ERROR_MARK = errors.ENTRY_ERROR_MARK
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHUNK = 1 << 20
PASS_ENV = ("TERM", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ")
TRANSFER_DIR = "transfer"


def guest_env() -> dict:
    """The environment of a command in the guest: a clean root login's, plus locale and TERM."""
    env = {"PATH": DEFAULT_PATH, "HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/sh", "container": "linuxns"}
    for key in PASS_ENV:
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def find_running(registry: reg.Registry, ref: str) -> dict:
    """The guest's metadata; GuestNotFound when it does not exist, GuestStale when it is stopped."""
    meta = registry.find(ref, "linuxns_guest")
    problems = reg.health(meta)
    if problems:
        raise GuestStale("guest %r is stopped: %s" % (meta.name, "; ".join(problems)))
    return meta


def exit_code(status: int) -> int:
    """A wait status as a shell reports it (128+N for a signal)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 1


def wait_spawned(spawned) -> list:
    """Read the status pipe of a :class:`enter.Spawned` to its end, reap E; the messages."""
    try:
        raw = enter.read_all(spawned.status_fd)
    finally:
        os.close(spawned.status_fd)
        enter.wait_child(spawned.pid)
    return [json.loads(line.decode()) for line in raw.split(b"\n") if line.strip()]


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def relay_tty(spawn) -> list:
    """Run ``spawn(stdio)`` with pipes in place of the terminal on 0/1/2; relay them; the status messages.

    With a tty (ssh -tt, what ``raw`` asks for) 0/1/2 are the host's /dev/pts/N: handed to
    the guest, its processes could read and write the host's terminal, ioctl it (TIOCSTI
    injects input into the host's session) and keep it open.  The guest gets pipes; this
    process copies the terminal's input to the command and its output back, like runc
    and crun without a console socket.  Ends when the command ended (E's status pipe is
    at EOF) and its output has been drained.
    """
    import select

    ours, theirs = {}, [0, 1, 2]
    try:
        for fd in (0, 1, 2):
            if _isatty(fd):
                r, w = os.pipe2(os.O_CLOEXEC)
                ours[fd], theirs[fd] = (w, r) if fd == 0 else (r, w)
        spawned = spawn(tuple(theirs))
    finally:
        for fd in (0, 1, 2):
            if fd in ours:
                os.close(theirs[fd])
    status, pending, done = [], b"", False
    in_w = ours.get(0, -1)
    outs = {ours[fd]: fd for fd in (1, 2) if fd in ours}
    poller = select.poll()
    for fd in [spawned.status_fd, *outs]:
        poller.register(fd, select.POLLIN)
    if in_w >= 0:
        os.set_blocking(in_w, False)
        poller.register(0, select.POLLIN)

    watched = 0 if in_w >= 0 else -1  # the input side polled now: the terminal (0) or the pipe (in_w)

    def watch(fd, ev):
        nonlocal watched
        if watched >= 0:
            poller.unregister(watched)
        watched = fd
        if fd >= 0:
            poller.register(fd, ev)

    def stop_input():
        nonlocal in_w
        if in_w >= 0:
            watch(-1, 0)
            os.close(in_w)
            in_w = -1

    try:
        while not done or outs:
            events = poller.poll(0 if done else None)
            if done and not events:
                break  # the command ended and its output is drained (a daemon it left may keep the pipe)
            for fd, ev in events:
                if fd == watched == 0:
                    data = os.read(0, CHUNK) if ev & select.POLLIN else b""
                    if data:
                        pending = data
                        watch(in_w, select.POLLOUT)
                    else:
                        stop_input()
                elif fd == watched == in_w:
                    try:
                        pending = pending[os.write(in_w, pending):]
                    except BlockingIOError:
                        continue
                    except OSError:  # the command closed its stdin
                        stop_input()
                        continue
                    if not pending:
                        watch(0, select.POLLIN)
                elif fd == spawned.status_fd and not done:
                    data = os.read(fd, CHUNK)
                    status.append(data)
                    if not data:
                        poller.unregister(fd)
                        done = True
                        stop_input()
                elif fd in outs:
                    data = os.read(fd, CHUNK)
                    if data:
                        enter.write_all(outs[fd], data)
                    else:
                        poller.unregister(fd)
                        os.close(fd)
                        del outs[fd]
    finally:
        for fd in [*outs, in_w]:
            if fd >= 0:
                os.close(fd)
        os.close(spawned.status_fd)
        enter.wait_child(spawned.pid)
    return [json.loads(line.decode()) for line in b"".join(status).split(b"\n") if line.strip()]


def run_exec(meta: reg.GuestRecord, cmd: str) -> int:
    def spawn(stdio):
        return enter.spawn_in_guest(meta, None, ["/bin/sh", "-c", cmd], guest_env(), stdio)

    if any(_isatty(fd) for fd in (0, 1, 2)):
        msgs = relay_tty(spawn)
    else:
        msgs = wait_spawned(spawn((0, 1, 2)))
    failed = [errors.from_payload(m) for m in msgs if "error" in m]
    for exc in failed:
        if not isinstance(exc, ExecFailed):  # entering the guest failed: nothing ran
            raise exc
    if failed:
        sys.stderr.write("%s (a guest needs /bin/sh for Ansible)\n" % failed[0].msg)
        sys.stderr.flush()
        return failed[0].details.get("rc", enter.RC_NOT_FOUND)
    done = next((m for m in msgs if "exit" in m), None)
    if done is None:
        raise GuestError("guest %r: the process that entered it died before the command ended" % meta.name)
    return exit_code(done["exit"])


def _copy(src: int, dst: int) -> int:
    total = 0
    while True:
        try:
            data = os.read(src, CHUNK)
        except InterruptedError:
            continue
        if not data:
            return total
        enter.write_all(dst, data)
        total += len(data)


def _transfer(meta: reg.GuestRecord, stdio, prepare) -> dict:
    """Run ``prepare`` inside the guest (as root, in its root) with ``stdio``; its report."""
    spawned = enter.spawn_in_guest(meta, None, None, guest_env(), stdio, prepare=prepare)
    msgs = wait_spawned(spawned)
    for m in msgs:
        if "error" in m:
            enter.raise_payload(m)
    report = next((m for m in msgs if "report" in m), None)
    if report is None or report["report"] is None:
        raise GuestError("guest %r: the process that entered it died during the transfer" % meta.name)
    return report["report"]


def _path_error(verb: str, path: str, name: str, exc: OSError) -> PathError:
    return PathError("cannot %s %s inside guest %r: %s" % (verb, path, name, exc.strerror or exc))


def _open_in_guest(path: str, name: str, verb: str) -> int:
    """Open ``path`` for put ("write") or fetch ("read"), in the guest's mount namespace.

    ``/`` is the guest's root here; the path is still resolved with
    :func:`rootfs.open_regular` (openat2 RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS): no
    /proc magic link leads it to a file of the host, and a FIFO or a device is
    refused instead of blocking the transfer or streaming without end.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC if verb == "write" else os.O_RDONLY
    try:
        root_fd = rootfs.open_root("/")
        try:
            return rootfs.open_regular(root_fd, path, flags, 0o644)
        finally:
            os.close(root_fd)
    except rootfs.NotRegular as exc:
        raise PathError("cannot %s %s inside guest %r: %s; it is not %s" % (verb, path, name, exc.strerror, "written" if verb == "write" else "read")) from None
    except OSError as exc:
        raise _path_error(verb, path, name, exc) from None


def put(meta: reg.GuestRecord, path: str, size: str) -> int:
    name = meta.name
    try:
        want = int(size)
    except ValueError:
        raise InvalidInput("put: size %r is not a number" % size) from None

    def write_file():
        fd = _open_in_guest(path, name, "write")
        try:
            n = _copy(0, fd) if want else 0
        except OSError as exc:
            raise _path_error("write", path, name, exc) from None
        finally:
            os.close(fd)
        if n != want:
            raise GuestError("writing %s inside guest %r: got %d bytes of %d (the transfer was cut short)" % (path, name, n, want))
        return {"bytes": n}

    _transfer(meta, (0, 1, 2), write_file)
    return 0


def _reader(meta: reg.GuestRecord, path: str):
    name = meta.name

    def read_file():
        fd = _open_in_guest(path, name, "read")
        try:
            n = _copy(fd, 1)
        except OSError as exc:
            raise _path_error("read", path, name, exc) from None
        finally:
            os.close(fd)
        return {"bytes": n}

    return read_file


def fetch(meta: reg.GuestRecord, path: str) -> int:
    _transfer(meta, (0, 1, 2), _reader(meta, path))
    return 0


def stage(registry: reg.Registry, meta: reg.GuestRecord, path: str) -> int:
    where = os.path.join(registry.state_dir, TRANSFER_DIR)
    os.makedirs(where, mode=0o700, exist_ok=True)
    import tempfile  # only here: it costs the other commands ~10 ms of imports

    fd, tmp = tempfile.mkstemp(prefix="fetch-", dir=where)
    try:
        _transfer(meta, (0, fd, 2), _reader(meta, path))
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    sys.stdout.write(tmp + "\n")
    sys.stdout.flush()
    return 0


def _staged(registry: reg.Registry, path: str, mode: str) -> str:
    where = os.path.join(registry.state_dir, TRANSFER_DIR)
    if os.path.dirname(os.path.normpath(path)) != where or not os.path.basename(path).startswith(("fetch-", "put-")):
        raise InvalidInput("%s: %r is not a file that stage or mkstage made" % (mode, path))
    return path


def unstage(registry: reg.Registry, path: str) -> int:
    try:
        os.unlink(_staged(registry, path, "unstage"))
    except FileNotFoundError:
        pass
    return 0


def mkstage(registry: reg.Registry) -> int:
    where = os.path.join(registry.state_dir, TRANSFER_DIR)
    os.makedirs(where, mode=0o700, exist_ok=True)
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="put-", dir=where)
    os.close(fd)
    sys.stdout.write(tmp + "\n")
    sys.stdout.flush()
    return 0


def place(registry: reg.Registry, meta: reg.GuestRecord, staged: str, path: str) -> int:
    _staged(registry, staged, "place")
    try:
        fd = os.open(staged, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise PathError("place: the uploaded copy %s cannot be opened: %s" % (staged, exc.strerror)) from None
    try:
        size = os.fstat(fd).st_size
        name = meta.name

        def write_file():
            out = _open_in_guest(path, name, "write")
            try:
                n = _copy(0, out)
            except OSError as exc:
                raise _path_error("write", path, name, exc) from None
            finally:
                os.close(out)
            if n != size:
                raise GuestError("writing %s inside guest %r: got %d bytes of %d" % (path, name, n, size))
            return {"bytes": n}

        _transfer(meta, (fd, 1, 2), write_file)
    finally:
        os.close(fd)
        os.unlink(staged)
    return 0


def status(registry: reg.Registry, refs) -> int:
    guests = {}
    for name in registry.names():
        try:
            meta = registry.load(name)
        except errors.RecordTooNew as exc:  # one guest a newer version made: the others are still listed
            meta = reg.GuestRecord.corrupt(name, exc.msg)
        if meta is None:
            continue
        problems = reg.health(meta)
        guests[name] = {"context_id": meta.context_id, "status": "stopped" if problems else "running",
                        "problems": problems, "root": meta.root, "namespaces": sorted(meta.pins)}
    resolved = {}
    for ref in refs:
        try:
            resolved[ref] = registry.resolve(ref, "guest")
        except GuestError:
            resolved[ref] = None
        if resolved[ref] not in guests:
            resolved[ref] = None
    sys.stdout.write(json.dumps({"protocol": PROTOCOL, "guests": guests, "refs": resolved}) + "\n")
    sys.stdout.flush()
    return 0


USAGE = ("usage: entry {exec STATE GUEST CMD | put STATE GUEST PATH SIZE | fetch STATE GUEST PATH | stage STATE GUEST PATH | "
         "unstage STATE FILE | mkstage STATE | place STATE GUEST FILE PATH | status STATE [GUEST...]}")
ENTERS = ("exec", "put", "fetch", "stage", "place")  # the commands that enter a guest
ARITY = {"exec": 3, "put": 4, "fetch": 3, "stage": 3, "unstage": 2, "mkstage": 1, "place": 4}


def dispatch(argv) -> int:
    if not argv or (argv[0] not in ARITY and argv[0] != "status"):
        raise InvalidInput(USAGE)
    mode = argv[0]
    if mode != "status" and len(argv) - 1 != ARITY[mode]:
        raise InvalidInput(USAGE)
    if len(argv) < 2:
        raise InvalidInput(USAGE)
    registry = reg.Registry(argv[1])
    if mode == "status":
        return status(registry, argv[2:])
    if mode == "unstage":
        return unstage(registry, argv[2])
    if mode == "mkstage":
        return mkstage(registry)
    meta = find_running(registry, argv[2])
    if mode == "exec":
        return run_exec(meta, argv[3])
    if mode == "put":
        return put(meta, argv[3], argv[4])
    if mode == "fetch":
        return fetch(meta, argv[3])
    if mode == "place":
        return place(registry, meta, argv[3], argv[4])
    return stage(registry, meta, argv[3])


def report_error(exc: BaseException) -> None:
    try:
        sys.stderr.write(ERROR_MARK + json.dumps(errors.to_payload(exc)) + "\n")
        sys.stderr.flush()
    except OSError:
        pass


def main(argv=None) -> int:
    if os.geteuid() != 0:
        report_error(InvalidInput("the guest connection needs root on the host to enter guests (logged in as uid %d); "
                                  "set linuxns_host_user to root" % os.geteuid()))
        return ERROR_RC
    try:
        if argv is None and sys.argv[1:2] and sys.argv[1] in ENTERS:
            enter.reexec_sealed()  # the CVE-2019-5736 class: see enter.reexec_sealed
        return dispatch(list(sys.argv[1:] if argv is None else argv))
    except Exception as exc:  # every failure is reported the same way, never as a traceback
        report_error(exc)
        return ERROR_RC
