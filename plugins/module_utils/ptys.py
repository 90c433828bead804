# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Terminals and background processes inside guests: ``linuxns-guest enter`` and
``guest_enter_exec``'s ``tty`` and ``detach``.

A terminal is allocated *inside* the guest, like runc's console socket: the joining
process E (:func:`enter.spawn_in_guest`, after it joined the guest's namespaces) opens the
``/dev/ptmx`` the guest sees - for a guest with a root the ptmx of its own devpts
instance (guest_create mounts one), for a guest without a root the host's - unlocks it,
opens the other side with TIOCGPTPEER (no path walk) and hands the master back over a
socket (SCM_RIGHTS).  The command gets the pty's other side on 0/1/2 and as its
controlling terminal; the caller relays between the master and its own terminal.  The
caller's terminal is never handed to the guest (its processes could TIOCSTI into it and
keep it open: entry.relay_tty).  A guest whose ``/dev/ptmx`` is missing or is not the
ptmx device gets a pty of the host's devpts, allocated before entering and relayed the
same way (:attr:`GuestPty.where` says which).

A detached command's stdin is the guest's ``/dev/null`` and its stdout/stderr a log file
opened inside the guest (O_APPEND, O_NOFOLLOW on its last part, created 0600); E does not
wait for it, so it is re-parented to the guest's init and outlives the caller.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import socket
import stat
import struct
import termios
import time

from ansible_collections.linuxns.guests.plugins.module_utils import enter
from ansible_collections.linuxns.guests.plugins.module_utils.errors import ExecFailed, GuestError, InvalidInput

PTMX_RDEV = os.makedev(5, 2)
TIOCGPTPEER = 0x5441
TIOCSPTLCK = 0x40045431
CHUNK = 1 << 16
DRAIN_GRACE = 0.5  # seconds the output of a command that ended is still read (what it left may keep the pty open)
DEFAULT_TERM = "xterm"


def read_master(master: int) -> bytes:
    """What the terminal's master side has; b"" at the end (EIO: every process in the guest
    closed the terminal, which a pty reports as an error rather than as end of file)."""
    try:
        return os.read(master, CHUNK)
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        return b""


def _reap(spawned, master=None) -> None:
    """The end of a spawned command: its terminal's master side (when still open) and its
    status pipe closed, the joining process waited for."""
    if master is not None:
        os.close(master)
    os.close(spawned.status_fd)
    enter.wait_child(spawned.pid)


def open_pair(ptmx: str = "/dev/ptmx") -> tuple:
    """(master, slave) of a new pty from ``ptmx``, both close-on-exec, not our controlling terminal.

    ``ptmx`` must be the ptmx character device (5:2): opened O_NONBLOCK (a FIFO put there
    never blocks us) and checked with fstat.  The slave is opened with TIOCGPTPEER, from
    the master itself: no /dev/pts/N path is looked up."""
    try:
        fd = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise GuestError("%s cannot be opened: %s" % (ptmx, exc.strerror), errno=exc.errno) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != PTMX_RDEV:
            raise GuestError("%s is not the pty multiplexer (character device 5:2)" % ptmx)
        os.set_blocking(fd, True)
        fcntl.ioctl(fd, TIOCSPTLCK, struct.pack("i", 0))
        slave = fcntl.ioctl(fd, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        os.close(fd)
        raise GuestError("%s: no pty could be allocated: %s" % (ptmx, exc.strerror), errno=exc.errno) from None
    except BaseException:
        os.close(fd)
        raise
    return fd, slave


def get_winsize(fd: int):
    """The window size of terminal ``fd`` (packed struct winsize), or None."""
    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None


def set_winsize(fd: int, size) -> None:
    if size:
        try:
            fcntl.ioctl(fd, termios.TIOCSWINSZ, size)
        except OSError:
            pass


def pack_winsize(rows: int, cols: int) -> bytes:
    return struct.pack("HHHH", rows, cols, 0, 0)


def take_ctty() -> None:
    """In the command's process (a new session, the pty on 0/1/2): make it the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class GuestPty:
    """A pty for one command, allocated inside the guest (see the module's docstring).

    ``stdio`` is the callable :func:`enter.spawn_in_guest` runs in E; :meth:`receive`
    (in the caller, after spawning) returns the master.  ``winsize``: the window size to
    start with; ``echo=False`` turns the terminal's echo off (input fed by a program)."""

    def __init__(self, winsize=None, echo: bool = True):
        self.winsize, self.echo = winsize, echo
        self.where = None
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.fallback = open_pair("/dev/ptmx")  # the host's, in case the guest has none
        except GuestError:
            self.fallback = None

    def stdio(self) -> tuple:  # pragma: no cover - runs in E, inside the guest
        try:
            master, slave = open_pair("/dev/ptmx")
            where = "guest"
        except GuestError:
            if self.fallback is None:
                raise
            master, slave = self.fallback
            where = "host"
        set_winsize(master, self.winsize)
        if not self.echo:
            attrs = termios.tcgetattr(slave)
            attrs[3] &= ~(termios.ECHO | termios.ECHONL)
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
        socket.send_fds(self.theirs, [where.encode()], [master])
        os.close(master)
        self.theirs.close()
        return (slave, slave, slave)

    def receive(self) -> int:
        """The master (after spawning; None when E failed before it sent one)."""
        self.theirs.close()
        if self.fallback is not None:
            os.close(self.fallback[1])
        try:
            msg, fds, _flags, _addr = socket.recv_fds(self.ours, 16, 1)
        finally:
            self.ours.close()
        self.where = msg.decode() if msg else None
        if self.fallback is not None and self.where != "host":
            os.close(self.fallback[0])
        self.fallback = None
        if not fds:
            return None
        os.set_inheritable(fds[0], False)
        return fds[0]

    def close(self) -> None:
        for s in (self.ours, self.theirs):
            s.close()
        if self.fallback is not None:
            for fd in self.fallback:
                os.close(fd)
            self.fallback = None


def with_ctty(prepare):
    """``prepare`` for spawn_in_guest that first takes the pty as the controlling terminal."""

    def both():
        take_ctty()
        return prepare() if prepare is not None else None

    return both


def spawn_with_pty(meta, argv, env, pty: GuestPty, cwd=None, credentials=None, prepare=None, confinement=None):
    """Start ``argv`` in the guest on a pty of the guest; (spawned, master)."""
    spawned = enter.spawn_in_guest(meta, None, argv, env, pty.stdio, cwd=cwd, credentials=credentials,
                                   prepare=with_ctty(prepare), confinement=confinement)
    try:
        master = pty.receive()
    except BaseException:
        os.kill(spawned.pid, signal.SIGKILL)
        _reap(spawned)
        raise
    return spawned, master


# ---------------------------------------------------------------------------------------
# Interactive: linuxns-guest enter
# ---------------------------------------------------------------------------------------
def interactive(meta, argv, env) -> tuple:
    """Run ``argv`` on a pty of the guest, relayed to our own 0/1 until it ends; (messages, where).

    With a terminal on 0 it goes raw for the time of the session (restored after, also on
    an error); its window size is copied at the start and on every SIGWINCH.  SIGTERM and
    SIGHUP end the session: the master is closed, so the guest's session gets SIGHUP from
    its terminal, as when an ssh connection drops.  Typed characters go to the guest's
    terminal, whose line discipline turns ^C, ^Z, ^\\ into signals of its foreground job."""
    import tty as ttymod

    interactive_tty = os.isatty(0)
    pty = GuestPty(get_winsize(0) if interactive_tty else None)
    env = dict(env)
    env.setdefault("TERM", DEFAULT_TERM)
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    got = []

    def on_signal(signum, _frame):
        got.append(signum)
        try:
            os.write(wake_w, b"x")
        except OSError:
            pass

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGWINCH, signal.SIGTERM, signal.SIGHUP)}
    saved = termios.tcgetattr(0) if interactive_tty else None
    try:
        try:
            spawned, master = spawn_with_pty(meta, argv, env, pty)
        finally:
            pty.close()
        if saved is not None:
            ttymod.setraw(0, termios.TCSANOW)
        status = _relay(spawned, master, wake_r, got, 0, interactive_tty)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)
        for s, h in old.items():
            signal.signal(s, h)
        os.close(wake_r)
        os.close(wake_w)
    return enter.status_messages(status), pty.where


def _relay(spawned, master, wake_r, got, in_fd, is_tty) -> bytes:
    status, pending, exited_at = [], b"", None
    poller = select.poll()
    if master is not None:
        poller.register(master, select.POLLIN)
    poller.register(spawned.status_fd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    stdin_open = master is not None
    if stdin_open:
        poller.register(in_fd, select.POLLIN)
    status_open = True
    try:
        while status_open or master is not None:
            timeout = None
            if not status_open:
                timeout = max(0, int((exited_at + DRAIN_GRACE - time.monotonic()) * 1000))
                if timeout == 0:
                    break
            try:
                events = poller.poll(timeout)
            except InterruptedError:
                continue
            for fd, ev in events:
                if fd == wake_r:
                    try:
                        os.read(wake_r, 64)
                    except OSError:
                        pass
                    while got:
                        sig = got.pop(0)
                        if sig == signal.SIGWINCH and is_tty and master is not None:
                            set_winsize(master, get_winsize(in_fd))
                        elif sig in (signal.SIGTERM, signal.SIGHUP) and master is not None:
                            poller.unregister(master)
                            os.close(master)  # the guest's session is hung up
                            master = None
                            if stdin_open:
                                poller.unregister(in_fd)
                                stdin_open = False
                elif fd == spawned.status_fd:
                    data = os.read(fd, CHUNK)
                    if data:
                        status.append(data)
                    else:
                        poller.unregister(fd)
                        status_open = False
                        exited_at = time.monotonic()
                        if stdin_open:
                            poller.unregister(in_fd)
                            stdin_open = False
                elif fd == in_fd and stdin_open:
                    data = os.read(in_fd, CHUNK) if ev & select.POLLIN else b""
                    if not data:
                        poller.unregister(in_fd)
                        stdin_open = False
                        if not is_tty and master is not None:
                            pending = b"\x04"  # end of input: ^D to the guest's terminal
                    else:
                        pending = data
                    if pending and master is not None:
                        enter.write_all(master, pending)
                        pending = b""
                elif master is not None and fd == master:
                    data = read_master(master)
                    if data:
                        enter.write_all(1, data)
                    else:  # EIO: every process in the guest closed the terminal
                        poller.unregister(master)
                        os.close(master)
                        master = None
    finally:
        _reap(spawned, master)
    return b"".join(status)


# ---------------------------------------------------------------------------------------
# guest_enter_exec: tty and detach
# ---------------------------------------------------------------------------------------
def _result(meta, req) -> dict:
    return {"guest": meta.name, "context_id": meta.context_id, "cmd": list(req.argv), "changed": False, "rc": None,
            "stdout": "", "stderr": "", "start": None, "end": None, "delta": None, "msg": ""}


def _skip_message(rep: dict, name: str) -> tuple:
    if rep["skip"] == "creates":
        return ("Did not run command since '%s' exists inside guest %r" % (rep["path"], name),
                "skipped, since %s exists" % rep["path"])
    return ("Did not run command since '%s' does not exist inside guest %r" % (rep["path"], name),
            "skipped, since %s does not exist" % rep["path"])


def _credentials(req, name):
    if req.user is None:
        return None
    from ansible_collections.linuxns.guests.plugins.module_utils.execute import resolve_user

    user = req.user

    def credentials():
        return resolve_user(user, name)

    return credentials


def _env(req, term: bool) -> dict:
    env = req.environment()
    if req.user is None:
        for k, v in {"HOME": "/root", "USER": "root", "LOGNAME": "root"}.items():
            env.setdefault(k, v)
    if term:
        env.setdefault("TERM", DEFAULT_TERM)
    return env


def _prepare(req):
    if not (req.creates or req.removes):
        return None
    from ansible_collections.linuxns.guests.plugins.module_utils.execute import _prepare_checks

    return _prepare_checks(req.creates, req.removes)


def _outcome(meta, req, msgs, result: dict) -> dict:
    """Apply the status messages: setup errors raise, a skip or an exec failure is reported."""
    from ansible_collections.linuxns.guests.plugins.module_utils import errors

    failure = next((errors.from_payload(m) for m in msgs if "error" in m), None)
    if failure is not None and not isinstance(failure, ExecFailed):
        raise failure
    report = next((m["report"] for m in msgs if "report" in m), None)
    if report is not None and report.get("skip"):
        result["rc"] = 0
        result["msg"], result["stdout"] = _skip_message(report, meta.name)
        result["skipped_run"] = True
        return result
    if failure is not None:
        result.update({"failed": True, "rc": failure.details.get("rc", enter.RC_NOT_FOUND), "msg": failure.msg,
                       "stderr": failure.msg})
    return result


def run_tty(meta, req) -> dict:
    """Run ``req`` in ``meta`` on a pty of the guest; its output (stdout and stderr, as a terminal
    shows them, "\\r\\n" made "\\n") in ``stdout``.  ``req.stdin`` is typed into the terminal
    (echo off) followed by ^D; without it the command reads an empty terminal (^D)."""
    import datetime

    result = _result(meta, req)
    pty = GuestPty(pack_winsize(24, 80), echo=req.stdin is None)
    start = datetime.datetime.now()
    t0 = time.monotonic()
    try:
        spawned, master = spawn_with_pty(meta, req.argv, _env(req, True), pty, cwd=req.chdir,
                                         credentials=_credentials(req, meta.name), prepare=_prepare(req))
    finally:
        pty.close()
    out, status, cmd_pid, timed_out, killed = [], [], None, False, 0
    deadline = None if req.timeout is None else t0 + req.timeout
    status_open, exited_at = True, None
    try:
        if master is not None:
            enter.write_all(master, (req.stdin or b"") + b"\x04")
        while status_open or master is not None:
            now = time.monotonic()
            waits = []
            if not status_open:
                waits.append(exited_at + DRAIN_GRACE - now)
            elif deadline is not None and not timed_out:
                waits.append(deadline - now)
            if waits and min(waits) <= 0:
                if not status_open:
                    break
                timed_out = True
                cmd_pid = cmd_pid or next((m["pid"] for m in enter.status_messages(b"".join(status)) if "pid" in m), None)
                if cmd_pid is not None:
                    from ansible_collections.linuxns.guests.plugins.module_utils.execute import kill_tree

                    killed = kill_tree(cmd_pid)
                continue
            fds = [spawned.status_fd] if status_open else []
            if master is not None:
                fds.append(master)
            ready, _w, _x = select.select(fds, [], [], None if not waits else max(0.0, min(waits)))
            for fd in ready:
                if fd == spawned.status_fd:
                    data = os.read(fd, CHUNK)
                    if data:
                        status.append(data)
                    else:
                        status_open = False
                        exited_at = time.monotonic()
                else:
                    data = read_master(master)
                    if data:
                        out.append(data)
                    else:
                        os.close(master)
                        master = None
    finally:
        _reap(spawned, master)
    end = datetime.datetime.now()
    msgs = enter.status_messages(b"".join(status))
    _outcome(meta, req, msgs, result)
    if result.pop("skipped_run", False) or result.get("failed"):
        return result
    done = next((m for m in msgs if "exit" in m), None)
    if done is None:
        raise GuestError("guest %r: the process that entered it died before reporting the command's end" % meta.name)
    rc = os.waitstatus_to_exitcode(done["exit"]) if done["exit"] else 0
    text = b"".join(out).decode("utf-8", "replace").replace("\r\n", "\n")
    result.update({"changed": True, "rc": rc, "stdout": text.rstrip("\r\n") if req.strip_empty_ends else text,
                   "start": str(start), "end": str(end), "delta": str(end - start), "tty": True})
    if timed_out:
        result.update({"failed": True, "timed_out": True,
                       "msg": "command timed out after %g seconds inside guest %r: killed it and its processes (%d)"
                              % (req.timeout, meta.name, killed)})
    elif rc != 0:
        result.update({"failed": True, "msg": "non-zero return code"})
    return result


TTY_STDIN_MAX = 4096  # a terminal's input line (canonical mode) holds 4095 characters


def check_options(params: dict) -> None:
    """guest_enter_exec's detach, detach_log and tty, and what they cannot go with."""
    detach, tty = params.get("detach"), params.get("tty")
    if detach and tty:
        raise InvalidInput("detach and tty cannot be used together: a detached command's output goes to detach_log")
    if params.get("detach_log") is not None:
        if not detach:
            raise InvalidInput("detach_log is only used with detach: true")
        check_log_path(params["detach_log"])
    if detach:
        for key in ("timeout", "stdin"):
            if params.get(key) is not None:
                raise InvalidInput("%s cannot be used with detach: true (the command runs on after the task)" % key)
    if tty and params.get("stdin") is not None and len(params["stdin"].encode("utf-8", "surrogateescape")) >= TTY_STDIN_MAX:
        raise InvalidInput("stdin: at most %d bytes can be typed into the terminal of tty: true" % (TTY_STDIN_MAX - 1))


def check_log_path(path) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path or path.endswith("/"):
        raise InvalidInput("detach_log must be an absolute path of a file inside the guest, not %r" % (path,))
    return path


def default_log(name: str) -> str:
    return "/tmp/linuxns-detach-%s.log" % name


def _log_stdio(path: str, name: str, req=None):
    def skipped() -> bool:  # creates/removes will skip the command: no log file is made for it
        if req is None or not (req.creates or req.removes):
            return False
        from ansible_collections.linuxns.guests.plugins.module_utils.execute import _prepare_checks

        base = req.chdir or "/"
        return _prepare_checks(req.creates and os.path.join(base, req.creates),
                               req.removes and os.path.join(base, req.removes))() is not None

    def stdio():  # pragma: no cover - runs in E, inside the guest
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY)
        try:
            st = os.fstat(null)
            if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
                raise InvalidInput("/dev/null inside guest %r is not the null device" % name)
            if skipped():
                return (null, null, null)
            try:
                log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
                              | os.O_NONBLOCK, 0o600)
            except OSError as exc:
                raise InvalidInput("detach_log: %s cannot be opened inside guest %r: %s" % (path, name, exc.strerror)) from None
            if not stat.S_ISREG(os.fstat(log).st_mode):
                os.close(log)
                raise InvalidInput("detach_log: %s inside guest %r is not a regular file" % (path, name))
            os.set_blocking(log, True)
        except BaseException:
            os.close(null)
            raise
        return (null, log, log)

    return stdio


def ns_pid(pid: int):
    """The pid ``pid`` has in its own (innermost) pid namespace, from /proc/PID/status NSpid."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return None


def host_pid(meta, guest_pid: int):
    """The host's pid of the guest's process ``guest_pid`` (None: it ended already): one /proc scan
    of the guest's pid namespace.  A guest without a pid namespace: the same number."""
    from ansible_collections.linuxns.guests.plugins.module_utils import procfs

    pin = meta.pins.get("pid")
    if pin is None:
        return guest_pid
    for pid in sorted(procfs.Index(("pid",)).pids("pid", pin.ino)):
        if ns_pid(pid) == guest_pid:
            return pid
    return None


def run_detached(meta, req, log: str) -> dict:
    """Start ``req`` in ``meta`` in the background: it outlives us (re-parented to the guest's
    init), stdin the guest's /dev/null, stdout and stderr appended to ``log`` inside the guest.
    The result has ``pid`` (as the host sees it) and ``guest_pid`` (in the guest's pid
    namespace), ``detach_log``; ``rc`` 0 once it has exec'd."""
    import datetime

    check_log_path(log)
    result = _result(meta, req)
    start = datetime.datetime.now()
    spawned = enter.spawn_in_guest(meta, None, req.argv, _env(req, False), _log_stdio(log, meta.name, req), cwd=req.chdir,
                                   credentials=_credentials(req, meta.name), prepare=_prepare(req), detach=True)
    try:
        raw = enter.read_all(spawned.status_fd)  # ends when the command exec'd (or failed to)
    finally:
        _reap(spawned)
    msgs = enter.status_messages(raw)
    _outcome(meta, req, msgs, result)
    if result.pop("skipped_run", False) or result.get("failed"):
        return result
    guest_pid = next((m["guest_pid"] for m in msgs if "guest_pid" in m), None)
    pid = host_pid(meta, guest_pid) if guest_pid else None
    end = datetime.datetime.now()
    result.update({"changed": True, "rc": 0, "pid": pid, "guest_pid": guest_pid, "detach_log": log,
                   "start": str(start), "end": str(end), "delta": str(end - start),
                   "msg": "started in the background inside guest %r (pid %s); output in %s inside the guest"
                          % (meta.name, pid, log)})
    return result


def run_special(metas, req, tty: bool, detach: bool, log=None, raise_errors: bool = False) -> list:
    """``guest_enter_exec`` with ``tty`` or ``detach`` for every guest, one after the other, from a
    sealed clone of the interpreter (as execute.run_many)."""
    from ansible_collections.linuxns.guests.plugins.module_utils import sealed
    from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc

    if not sc.running_sealed():
        return sealed.in_sealed_clone(run_special, metas, req, tty, detach, log, raise_errors)
    results = []
    for meta in metas:
        try:
            if detach:
                results.append(run_detached(meta, req, log or default_log(meta.name)))
            else:
                results.append(run_tty(meta, req))
        except GuestError as exc:
            if raise_errors:
                raise
            results.append(dict(_result(meta, req), failed=True, msg=exc.msg))
    return results
