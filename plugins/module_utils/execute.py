# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running commands inside guests: the engine of ``guest_enter_exec``.

The process side (fork, join, fork, exec) is :func:`enter.spawn_in_guest`; this
file adds what a command runner needs around it:

- the request (argv, shell, env, user, chdir, creates/removes, stdin, timeout)
  validated once for a list of guests, before anything runs;
- the user looked up in the guest's own ``/etc/passwd`` and ``/etc/group``
  (parsed here, inside the guest: the host's NSS is never asked);
- one ``poll`` loop that feeds stdin and drains stdout/stderr, so any amount
  of output (binary too) and any amount of input flow without deadlock;
- when the command exits while processes it left in the background still
  hold its stdout/stderr open, the output already written is kept and
  reading stops after :data:`OUTPUT_GRACE` seconds instead of waiting for
  them (``ansible.builtin.command`` waits for one second of silence; a
  chatty background process would keep it waiting forever);
- on ``timeout`` the command's process group, its session and every
  descendant are stopped then killed, and the run fails clearly.

Nothing here imports Ansible or anything heavy: the module's payload stays small.
"""

from __future__ import annotations

import datetime
import errno
import glob
import json
import os
import re
import select
import shlex
import signal
import stat
import time

from ansible_collections.linuxns.guests.plugins.module_utils import checks, confine, enter, errors, procfs, sealed
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import ExecFailed, GuestError, GuestStale, InvalidInput

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_GRACE = 0.5
READ_CHUNK = 1 << 16
WRITE_CHUNK = 1 << 16
PARALLEL = 8  # guests entered at a time by run_many
MAX_PARALLEL = 256  # four fds of the run per running guest: well below the usual RLIMIT_NOFILE of 1024

__all__ = ["Request", "check_parallel", "kill_tree", "prepare_guests", "resolve_user", "run", "run_many"]


# ---------------------------------------------------------------------------------------
# The request
# ---------------------------------------------------------------------------------------
class Request:
    """What to run, validated; the same for every guest of a list."""

    def __init__(self, argv=None, cmd=None, shell=False, namespaces=None, root=True, chdir=None, env=None, user=None,
                 stdin=None, stdin_add_newline=True, strip_empty_ends=True, creates=None, removes=None, timeout=None):
        if argv is not None and cmd is not None:
            raise InvalidInput("argv and cmd are mutually exclusive: give the command as a list (argv) or a string (cmd)")
        if shell:
            if cmd is None:
                raise InvalidInput("shell: true needs the command as a string in cmd (it is run by the guest's /bin/sh -c)")
            self.argv = ["/bin/sh", "-c", cmd]
        elif cmd is not None:
            if not isinstance(cmd, str) or not cmd.strip():
                raise InvalidInput("cmd must be a non-empty string")
            try:
                self.argv = shlex.split(cmd)
            except ValueError as exc:
                raise InvalidInput("cmd %r cannot be split into arguments: %s" % (cmd, exc)) from None
        elif argv is not None:
            if not isinstance(argv, (list, tuple)) or not argv:
                raise InvalidInput("argv must be a non-empty list of strings")
            self.argv = [a if isinstance(a, str) else str(a) for a in argv]
            if not self.argv[0]:
                raise InvalidInput("argv[0] (the program) must not be empty")
        else:
            raise InvalidInput("one of argv or cmd is required")
        if any("\0" in a for a in self.argv):
            raise InvalidInput("%s: the command must not contain NUL characters" % ("cmd" if cmd is not None else "argv"))
        self.namespaces = None if namespaces is None else list(namespaces)
        if self.namespaces is not None and not self.namespaces:
            raise InvalidInput("namespaces must name at least one namespace type to enter (or be left out: all of the guest's)")
        self.root = bool(root)
        for name, value in (("chdir", chdir), ("creates", creates), ("removes", removes)):
            if value is not None and (not isinstance(value, str) or not value or "\0" in value):
                raise InvalidInput("%s must be a non-empty path inside the guest" % name)
            checks.check_text(value, name)
        self.chdir = chdir
        self.creates = creates
        self.removes = removes
        self.env = {}
        for key, value in (env or {}).items():
            key = str(key)
            if not key or "=" in key or "\0" in key:
                raise InvalidInput("env: %r is not a valid environment variable name" % key)
            if isinstance(value, (dict, list, tuple, set)):
                raise InvalidInput("env: the value of %s must be a string or a number, not a %s" % (key, type(value).__name__))
            value = "" if value is None else (value if isinstance(value, str) else str(value))
            if "\0" in value:
                raise InvalidInput("env: the value of %s must not contain NUL characters" % key)
            self.env[key] = value
        self.user = None if user is None else str(user)  # "" is refused by resolve_user (never "root by default")
        if self.user is not None and (":" in self.user or "\n" in self.user):
            raise InvalidInput("user %r must be a user name or a numeric uid" % self.user)
        self.stdin = None
        if stdin is not None:
            data = stdin.encode("utf-8", "surrogateescape") if isinstance(stdin, str) else bytes(stdin)
            if stdin_add_newline:
                data += b"\n"
            self.stdin = data
        self.strip_empty_ends = bool(strip_empty_ends)
        if timeout is not None:
            try:
                timeout = float(timeout)
            except (TypeError, ValueError, OverflowError):
                raise InvalidInput("timeout %r must be a number of seconds" % (timeout,)) from None
            checks.check_number(timeout, "timeout", None, checks.MAX_SECONDS, " seconds")
            if timeout <= 0:
                raise InvalidInput("timeout must be more than 0 seconds (leave it out for no limit)")
        self.timeout = timeout

    def environment(self) -> dict:
        env = {"PATH": DEFAULT_PATH, "container": "linuxns"}
        env.update(self.env)
        return env


# ---------------------------------------------------------------------------------------
# Users, from the guest's own files
# ---------------------------------------------------------------------------------------
# The guest writes these files: reading them in a process of the host (root, every
# capability) is bounded in size and time and never blocks on a FIFO or a device.
DB_MAX_BYTES = 4 << 20
DB_READ_SECONDS = 5.0
ID_MAX = 4294967294  # (uid_t)-1 = 4294967295 means "unchanged" to setresuid/setresgid: never a valid id
_ID_RE = re.compile(r"^[0-9]{1,10}$")
_INT_RE = re.compile(r"^[-+]?[0-9]+$")


class _ReadTimeout(Exception):
    pass


def _on_alarm(_signum, _frame):
    raise _ReadTimeout()


def read_guest_file(path: str, guest: str, what: str, max_bytes: int = DB_MAX_BYTES, seconds: float = DB_READ_SECONDS):
    """The bytes of a regular file the guest controls, bounded; None when it does not exist.

    Opened with O_NOFOLLOW|O_NONBLOCK (a symlink, a FIFO or a device is refused, and
    opening never waits for a FIFO's writer), checked with fstat, read up to
    ``max_bytes`` (more is refused, also when the file grows while read) within
    ``seconds`` (an interval timer, where signals can be used: a file system that
    stalls the read cannot hold the host's process forever).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidInput("%s: %s inside guest %r is a symbolic link; it is not followed (only a regular file is read)"
                               % (what, path, guest)) from None
        raise InvalidInput("%s: %s inside guest %r cannot be opened: %s" % (what, path, guest, exc.strerror)) from None
    old = None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput("%s: %s inside guest %r is not a regular file (%s); it is not read"
                               % (what, path, guest, _file_kind(st.st_mode)))
        if st.st_size > max_bytes:
            raise InvalidInput("%s: %s inside guest %r is %d bytes, more than the %d read at most; it is not read"
                               % (what, path, guest, st.st_size, max_bytes))
        try:
            old = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, seconds)
        except ValueError:  # not the main thread: the size bound alone
            old = None
        chunks, total = [], 0
        while True:
            data = os.read(fd, min(READ_CHUNK, max_bytes + 1 - total))
            if not data:
                break
            chunks.append(data)
            total += len(data)
            if total > max_bytes:
                raise InvalidInput("%s: %s inside guest %r is more than %d bytes (it grew while read); it is not read"
                                   % (what, path, guest, max_bytes))
        return b"".join(chunks)
    except _ReadTimeout:
        raise InvalidInput("%s: reading %s inside guest %r took more than %g seconds; gave up"
                           % (what, path, guest, seconds)) from None
    except OSError as exc:
        raise InvalidInput("%s: %s inside guest %r cannot be read: %s" % (what, path, guest, exc.strerror)) from None
    finally:
        if old is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        os.close(fd)


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return kind
    return "not a regular file"


def _read_db(path: str, guest: str, what: str) -> list:
    data = read_guest_file(path, guest, what)
    rows = []
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        if not line or line.startswith(("#", "+", "-")):
            continue
        rows.append(line.split(":"))
    return rows


def check_id(value, what: str, guest: str, where: str = "") -> int:
    """A uid or gid as a number in 0..4294967294; anything else (-1 above all) is refused."""
    text = str(value)
    if not _ID_RE.match(text) or int(text) > ID_MAX:
        raise InvalidInput("%s: %r%s is not a valid id for guest %r (use 0-%d; %d, which is -1, and negative numbers "
                           "are refused)" % (what, value, where, guest, ID_MAX, ID_MAX + 1))
    return int(text)


def check_user_name(user, guest: str, what: str = "user") -> str:
    if not isinstance(user, str) or not user.strip():
        raise InvalidInput("%s must be a non-empty user name or a numeric uid (guest %r); an empty user is refused, "
                           "leave %s out to run as root" % (what, guest, what))
    if any(c in user for c in ":\n\0") or user.startswith(("-", "+")):
        raise InvalidInput("%s %r is not a valid user name or uid for guest %r" % (what, user, guest))
    return user


def resolve_user(user: str, guest: str, passwd: str = "/etc/passwd", group: str = "/etc/group") -> dict:
    """Credentials of ``user`` (a name or a uid) from the passwd/group files at hand.

    Runs inside the guest, so the paths are the guest's (after its pivot_root:
    they resolve inside its root).  The files are read with
    :func:`read_guest_file` (bounded, no symlink/FIFO/device).  A numeric uid
    without a passwd entry runs with gid = uid, no supplementary groups and
    HOME=/.  Every id is checked: -1 (4294967295), negative or out-of-range ids
    and empty names are refused, never passed to setresuid/setresgid (where -1
    means "unchanged", i.e. root).
    """
    numeric = isinstance(user, str) and bool(_INT_RE.match(user))
    if numeric:
        check_id(user, "user", guest)
    check_user_name(user, guest)
    entry = None
    for row in _read_db(passwd, guest, "user"):
        if len(row) < 7:
            continue
        if row[0] == user or (numeric and row[2] == user):
            if not _ID_RE.match(row[2]) or not _ID_RE.match(row[3]):
                if row[0] == user and (_INT_RE.match(row[2]) or _INT_RE.match(row[3])):
                    where = " (the entry %r of %s)" % (row[0], passwd)
                    check_id(row[2], "user", guest, where)
                    check_id(row[3], "group", guest, where)
                continue
            entry = row
            if row[0] == user:
                break
    if entry is None:
        if not numeric:
            raise InvalidInput("user %r is not known inside guest %r (not in its /etc/passwd)" % (user, guest))
        uid = check_id(user, "user", guest)
        return {"uid": uid, "gid": uid, "groups": [], "env": {"HOME": "/", "USER": user, "LOGNAME": user}}
    where = " (the entry %r of %s)" % (entry[0], passwd)
    name = entry[0]
    if not name:
        raise InvalidInput("user %r: its entry in %s inside guest %r has an empty name" % (user, passwd, guest))
    uid = check_id(entry[2], "user", guest, where)
    gid = check_id(entry[3], "group", guest, where)
    home, shell = entry[5] or "/", entry[6] or "/bin/sh"
    groups = {gid}
    for row in _read_db(group, guest, "group"):
        if len(row) >= 4 and name in row[3].split(",") and _INT_RE.match(row[2]):
            groups.add(check_id(row[2], "group", guest, " (the group %r of %s, which lists user %r)" % (row[0], group, name)))
    return {"uid": uid, "gid": gid, "groups": sorted(groups), "env": {"HOME": home, "USER": name, "LOGNAME": name, "SHELL": shell}}


def _root_env() -> dict:
    return {"HOME": "/root", "USER": "root", "LOGNAME": "root"}


# ---------------------------------------------------------------------------------------
# Killing a command's processes
# ---------------------------------------------------------------------------------------
def kill_tree(pid: int) -> int:
    """Stop ``pid`` and everything it started (until no new process shows up), then kill them all.

    Stopping first means nothing can fork away while we look.  Returns how
    many processes were killed.
    """
    stopped = set()
    for _round in range(50):
        new = procfs.tree(pid, procfs.table()) - stopped
        if not new:
            break
        for p in new:
            try:
                os.kill(p, signal.SIGSTOP)
            except OSError:
                pass
        stopped |= new
    killed = 0
    for p in stopped:
        try:
            os.kill(p, signal.SIGKILL)
            killed += 1
        except OSError:
            pass
    return killed


# ---------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------
def _prepare_checks(creates, removes):
    """creates/removes as ansible.builtin.command checks them (globs, relative to chdir), inside the guest."""

    def check():
        if creates and glob.glob(creates):
            return {"skip": "creates", "path": creates}
        if removes and not glob.glob(removes):
            return {"skip": "removes", "path": removes}
        return None

    return check


def _now() -> datetime.datetime:
    return datetime.datetime.now()


def _decode(data: bytes, strip: bool) -> str:
    text = data.decode("utf-8", "replace")
    return text.rstrip("\r\n") if strip else text


def _fmt_seconds(value) -> str:
    return ("%g" % value) if value is not None else "?"


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class _Job:
    """One command in one guest: spawned at once, its pipes driven by :func:`_drive`.

    The caller's side of a command is stdin (written), stdout/stderr (drained) and E's
    status pipe (JSON lines, see :class:`enter.Spawned`), all non-blocking in one
    ``poll`` loop shared by every job of a run.
    """

    def __init__(self, meta: reg.GuestRecord, req: Request, check_only: bool, poller, owners: dict, confinements=None):
        self.meta, self.req, self.check_only = meta, req, check_only
        self.name = meta.name
        self.poller, self.owners = poller, owners
        self.stdin = memoryview(b"" if check_only or req.stdin is None else req.stdin)
        self.out, self.err, self.status = [], [], []
        self.exited_at = None
        self.timed_out = False
        self.grace_over = False
        self.left_open = False
        self.killed = 0
        self.bufs = {}
        env = req.environment()
        env.update({k: v for k, v in _root_env().items() if req.user is None and k not in req.env})
        credentials = None
        if req.user is not None:
            user, name = req.user, self.name

            def credentials():
                return resolve_user(user, name)

        prepare = _prepare_checks(req.creates, req.removes) if (req.creates or req.removes) else None
        fds = []
        try:
            for _attempt in range(3):
                fds.extend(os.pipe2(os.O_CLOEXEC))
            in_r, self.in_w, self.out_r, out_w, self.err_r, err_w = fds
            self.start = _now()
            t0 = time.monotonic()
            self.spawned = enter.spawn_in_guest(meta, req.namespaces, None if check_only else req.argv, env, (in_r, out_w, err_w),
                                                root=req.root, cwd=req.chdir, credentials=credentials, prepare=prepare,
                                                confinement=None if check_only else _confinement(meta, confinements))
        except BaseException:
            for fd in fds:
                _close(fd)
            raise
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        self.deadline = None if req.timeout is None else t0 + req.timeout
        self.bufs = {self.out_r: self.out, self.err_r: self.err, self.spawned.status_fd: self.status}
        for fd in self.bufs:
            os.set_blocking(fd, False)
            poller.register(fd, select.POLLIN)
            owners[fd] = self
        if len(self.stdin):
            os.set_blocking(self.in_w, False)
            poller.register(self.in_w, select.POLLOUT)
            owners[self.in_w] = self
        else:
            self._close_stdin()

    # -- the loop's side -------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return not self.bufs

    def _drop(self, fd: int) -> None:
        try:
            self.poller.unregister(fd)
        except (KeyError, ValueError):
            pass
        self.owners.pop(fd, None)
        self.bufs.pop(fd, None)
        if fd != self.spawned.status_fd:
            _close(fd)

    def _close_stdin(self) -> None:
        if self.in_w >= 0:
            try:
                self.poller.unregister(self.in_w)
            except (KeyError, ValueError):
                pass
            self.owners.pop(self.in_w, None)
            _close(self.in_w)
            self.in_w = -1

    def wait(self, now: float):
        """Seconds until this job has something to do without an event (None: nothing)."""
        if self.exited_at is not None and not self.grace_over:
            return self.exited_at + OUTPUT_GRACE - now
        if self.exited_at is None and self.deadline is not None and not self.timed_out:
            return self.deadline - now
        return None

    def on_time(self, now: float) -> None:
        wait = self.wait(now)
        if wait is None or wait > 0:
            return
        if self.exited_at is not None:
            # The command ended OUTPUT_GRACE ago; what still holds stdout/stderr open was
            # left in the background: stop reading (E's status pipe ends right away).
            self.grace_over = True
            for fd in (self.out_r, self.err_r):
                if fd in self.bufs:
                    self.left_open = True
                    self._drop(fd)
            return
        self.timed_out = True
        cmd_pid = next((m["pid"] for m in enter.status_messages(b"".join(self.status)) if "pid" in m), None)
        if cmd_pid is not None:
            self.killed = kill_tree(cmd_pid)
        else:
            os.kill(self.spawned.pid, signal.SIGKILL)

    def on_event(self, fd: int, ev: int) -> None:
        if fd == self.in_w:
            if ev & (select.POLLERR | select.POLLHUP):
                self._close_stdin()
                return
            try:
                n = os.write(fd, self.stdin[:WRITE_CHUNK])
            except BlockingIOError:
                return
            except OSError:
                self._close_stdin()
                return
            self.stdin = self.stdin[n:]
            if not len(self.stdin):
                self._close_stdin()
            return
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            data = b""
        if data:
            self.bufs[fd].append(data)
            if fd == self.spawned.status_fd and self.exited_at is None and b'"exit"' in b"".join(self.status):
                self.exited_at = time.monotonic()
            return
        self._drop(fd)
        if fd == self.spawned.status_fd and self.exited_at is None:
            self.exited_at = time.monotonic()

    def close(self, kill: bool = False) -> None:
        """Release everything; with ``kill``, the command and E are killed first (an aborted run)."""
        if kill and not self.done:
            cmd_pid = next((m["pid"] for m in enter.status_messages(b"".join(self.status)) if "pid" in m), None)
            if cmd_pid is not None and self.exited_at is None:
                kill_tree(cmd_pid)
            try:
                os.kill(self.spawned.pid, signal.SIGKILL)
            except OSError:
                pass
        self._close_stdin()
        for fd in list(self.bufs):
            self._drop(fd)
        if self.spawned.status_fd >= 0:
            _close(self.spawned.status_fd)
            self.spawned.status_fd = -1
            enter.wait_child(self.spawned.pid)

    # -- the result ------------------------------------------------------------------------
    def result(self) -> dict:
        """The result dict of ansible.builtin.command plus guest/context_id (raises for setup errors)."""
        self.close()
        end = _now()
        req, name = self.req, self.name
        result = {
            "guest": name, "context_id": self.meta.context_id, "cmd": list(req.argv), "changed": False, "rc": None,
            "stdout": "", "stderr": "", "start": None, "end": None, "delta": None, "msg": "",
        }
        msgs = enter.status_messages(b"".join(self.status))
        first_error = next((errors.from_payload(m) for m in msgs if "error" in m), None)
        report = next((m for m in msgs if "report" in m), None)
        exit_msg = next((m for m in msgs if "exit" in m), None)
        if first_error is not None and not isinstance(first_error, ExecFailed):
            # entering the guest, the user, chdir...: nothing ran
            raise first_error
        if report is not None:
            rep = report["report"]
            result["rc"] = 0
            if rep is not None and rep.get("skip"):
                verb = "Would" if self.check_only else "Did"
                if rep["skip"] == "creates":
                    result["msg"] = "%s not run command since '%s' exists inside guest %r" % (verb, rep["path"], name)
                    result["stdout"] = "skipped, since %s exists" % rep["path"]
                else:
                    result["msg"] = "%s not run command since '%s' does not exist inside guest %r" % (verb, rep["path"], name)
                    result["stdout"] = "skipped, since %s does not exist" % rep["path"]
                return result
            # check mode: the command would run
            result["msg"] = "Command would have run if not in check mode"
            if req.creates is None and req.removes is None:
                result["skipped"] = True
            else:
                result["changed"] = True
            return result
        if exit_msg is None:
            if self.timed_out:
                raise GuestError("guest %r: timed out after %s seconds before the command started (entering the guest hung)" % (
                    name, _fmt_seconds(req.timeout)))
            raise GuestError("guest %r: the process that entered it died before reporting the command's end" % name)
        status = exit_msg["exit"]
        rc = os.waitstatus_to_exitcode(status) if status else 0
        result.update({
            "changed": True, "rc": rc,
            "stdout": _decode(b"".join(self.out), req.strip_empty_ends),
            "stderr": _decode(b"".join(self.err), req.strip_empty_ends),
            "start": str(self.start), "end": str(end), "delta": str(end - self.start),
        })
        if self.timed_out:
            result["failed"] = True
            result["timed_out"] = True
            result["msg"] = "command timed out after %s seconds inside guest %r: killed it and its processes (%d)" % (
                _fmt_seconds(req.timeout), name, self.killed)
        elif first_error is not None:
            result["failed"] = True
            result["rc"] = first_error.details.get("rc", rc)
            result["msg"] = first_error.msg
            result["stderr"] = result["stderr"] or first_error.msg
        elif rc != 0:
            result["failed"] = True
            result["msg"] = "non-zero return code"
        if self.left_open:
            result["warnings"] = ["the command exited while processes it started kept its output open; "
                                  "stopped reading %ss after it ended" % _fmt_seconds(OUTPUT_GRACE)]
        return result


def _confinement(meta: reg.GuestRecord, cache) -> confine.Confinement:
    """The guest's confinement, built (and its filter compiled) once per distinct setting of a run."""
    if cache is None:
        return confine.for_guest(meta)
    key = json.dumps(confine.settings_of(meta), sort_keys=True)
    if key not in cache:
        cache[key] = confine.for_guest(meta)
    return cache[key]


def _failed(meta: reg.GuestRecord, req: Request, exc: GuestError) -> dict:
    return {"guest": meta.name, "context_id": meta.context_id, "cmd": list(req.argv), "changed": False, "failed": True,
            "rc": None, "stdout": "", "stderr": "", "msg": exc.msg, "start": None, "end": None, "delta": None}


def prepare_guests(registry: reg.Registry, refs, req: Request, param: str = "guest") -> list:
    """Metadata of every guest, checked (exists, healthy, namespace subset) before anything runs."""
    metas = []
    seen = set()
    for i, ref in enumerate(refs):
        where = param if param == "guest" else "%s[%d]" % (param, i)
        meta = registry.find(ref, where)
        if meta.name in seen:
            continue
        seen.add(meta.name)
        problems = reg.health(meta)
        if problems:
            raise GuestStale("%s: guest %r is not running: %s; recreate it with linuxns.guests.namespace_create"
                             % (where, meta.name, "; ".join(problems)))
        enter.check_entry(meta, req.namespaces, req.root)
        metas.append(meta)
    return metas


def check_parallel(parallel: int) -> int:
    """``parallel`` of :func:`run_many` (guests at a time) when it is 1 to MAX_PARALLEL; else InvalidInput."""
    if not 1 <= parallel <= MAX_PARALLEL:
        raise InvalidInput("parallel: %d is out of range: give 1 to %d guests at a time" % (parallel, MAX_PARALLEL))
    return parallel


def run(meta: reg.GuestRecord, req: Request, check_only: bool = False) -> dict:
    """Run in one guest; setup errors (user, chdir, entering) raise."""
    return run_many([meta], req, check_only, raise_errors=True)[0]


def run_many(metas, req: Request, check_only: bool = False, raise_errors: bool = False, parallel: int = PARALLEL) -> list:
    """Run in every guest, up to ``parallel`` at a time; results in the order of ``metas``.

    A guest's setup error (user, chdir...) becomes its failed result (or is raised, with
    ``raise_errors``).  Entering a guest is mostly waiting for two forks and an exec, so
    a few guests at a time overlap that wait (like Ansible's forks over hosts).

    The run happens in a sealed clone of the interpreter (:func:`sealed.in_sealed_clone`,
    the CVE-2019-5736 class): no process a guest can see runs the host's Python.
    """
    if not sc.running_sealed():
        return sealed.in_sealed_clone(run_many, metas, req, check_only, raise_errors, parallel)
    results = [None] * len(metas)
    pending = list(enumerate(metas))
    poller = select.poll()
    owners = {}
    running = []
    confinements = {}  # the run's confinements, one per distinct guest setting (built once, in the parent)

    def settle(job, i) -> None:
        try:
            results[i] = job.result()
        except GuestError as exc:
            if raise_errors:
                raise
            results[i] = _failed(job.meta, req, exc)

    try:
        while pending or running:
            while pending and len(running) < max(1, parallel):
                i, meta = pending.pop(0)
                try:
                    running.append((_Job(meta, req, check_only, poller, owners, confinements), i))
                except GuestError as exc:
                    if raise_errors:
                        raise
                    results[i] = _failed(meta, req, exc)
            now = time.monotonic()
            for job, _i in running:
                job.on_time(now)
            for job, i in [x for x in running if x[0].done]:
                running.remove((job, i))
                settle(job, i)
            if not running:
                continue
            waits = [w for w in (job.wait(now) for job, _i in running) if w is not None]
            if any(x[0].done for x in running) or (waits and min(waits) <= 0):
                continue
            timeout = None if not waits else int(min(waits) * 1000) + 1
            try:
                events = poller.poll(timeout)
            except InterruptedError:
                continue
            for fd, ev in events:
                job = owners.get(fd)
                if job is not None:
                    job.on_event(fd, ev)
    finally:
        for job, _i in running:
            job.close(kill=True)
    return results
