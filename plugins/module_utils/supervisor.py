# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restart policy of guests' inits and the one supervisor per host that carries it out.

A guest's record (registry.GuestRecord, fields of model.GUEST) holds its policy:
``restart`` (no | on-failure | always), ``restart_delay`` (seconds before the first
restart), ``restart_max_delay`` (the cap of the doubling delay) and ``restart_max``
(restarts in a row before the supervisor gives up; 0: no limit).  :class:`Policy` decides
(pure, unit-tested); :class:`Supervisor` watches.

The supervisor is ONE process per state folder (an flock on STATE/supervisor.lock):

- it finds the guests in the registry (every READY record with an init pid: the guest's
  init or its reaper) and opens a pidfd of each init; a poll() on all of them wakes it when
  one exits.  Every ``scan_interval`` seconds it stats each guest's meta.json and reloads
  only the records that changed (new guests, changed policies, guests gone).
- when an init exits it reads the exit status (below), asks the policy, logs one line, and
  after the backoff delay forks a short-lived worker that does the work with the same code
  the modules use: guests.ensure_guests with the recorded fields and recreate=true (the
  guest is made again: same name, context id, cgroup parent and limits, mount table), or
  guest_stop.remove (the guest's processes, pins, cgroup and context id are disposed of,
  seed 002).  Its kept files on disk stay, as with namespace_create state=absent.
- the worker acts only on the init it was told about: under the guest's lock it checks
  that the record still names that init (pid and start time) and that it is not running
  (guests.apply's ``_restart_of``).  A guest recreated or removed by a module meanwhile,
  or an init that still runs, is left alone: no double start.
- it is safe to kill: nothing lives only in its memory.  The count of restarts in a row
  is recorded in the guest's record (``restarts``); a new supervisor finds the guests
  again and watches the running inits.  An init that exited while no supervisor ran is
  handled at once, with an unknown exit status.

The exit status of an init that is not the supervisor's child: an init is forked by a
child that exits at once, so it is an orphan whose status goes to the nearest subreaper
(or PID 1), not to the module that made it.  The supervisor sets PR_SET_CHILD_SUBREAPER,
so inits it (re)started through its workers are its own children and waitpid() gives
their status.  For the others it asks the kernel through their pidfd
(PIDFD_GET_INFO/PIDFD_INFO_EXIT, Linux 6.15+: the status of any process whose pidfd was
open when it was reaped), then /proc/PID/stat's exit_code while the process is a zombie
nobody reaped yet.  When none tells (an older kernel, or the init exited while no
supervisor ran), the status is unknown and counts as a failure: on-failure restarts such
an init.

The worker imports the engines (guests) only after the fork: the long-lived process keeps
only registry, procfs and syscalls in memory (bench/bench_supervisor.py measures it).
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import select
import signal
import struct
import sys
import time

from ansible_collections.linuxns.guests.plugins.module_utils import model, procfs
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, InvalidInput

NO, ON_FAILURE, ALWAYS = model.RESTART_POLICIES
RESET_AFTER = 10.0  # an init that ran this long (or restart_max_delay, the longer) starts the backoff over
SCAN_INTERVAL = 2.0  # seconds between two looks at the records' mtimes
STATUS_TRIES = 50  # rounds (of STATUS_WAIT) the exit status of an exited init is looked for
STATUS_WAIT = 0.02
LOCK_NAME = "supervisor.lock"
RESTART_KEYS = ("restart", "restart_delay", "restart_max_delay", "restart_max")

# linux/pidfd.h: ioctl PIDFD_GET_INFO = _IOWR(0xFF, 11, struct pidfd_info) (64 bytes, version 0)
PIDFD_GET_INFO = 0xC040FF0B
PIDFD_INFO_EXIT = 0x8
PIDFD_INFO_SIZE = 64
PIDFD_INFO_EXIT_CODE = 60  # offset of __s32 exit_code


# ---------------------------------------------------------------------------------------
# The policy (pure)
# ---------------------------------------------------------------------------------------
def parse_restart(value, param: str = "restart"):
    """``restart`` as given: no, on-failure or always (YAML's unquoted ``no`` is false); None: not given."""
    if value is None:
        return None
    if value is False or (isinstance(value, str) and value.lower() in ("no", "false")):
        return NO
    if isinstance(value, str) and value in model.RESTART_POLICIES:
        return value
    raise InvalidInput("%s %r is not a restart policy: use no, on-failure or always" % (param, value))


def check_restart(spec, params: dict, where: str = "") -> None:
    """Set ``spec``'s restart fields from ``params`` (None: not given, an existing guest keeps
    its own); a bad value fails naming the parameter and the guest."""
    name = getattr(spec, "name", None)
    try:
        spec.restart = parse_restart(params.get("restart"), where + "restart")
        for key in RESTART_KEYS[1:]:
            value = params.get(key)
            if value is not None:
                f = model.GUEST_BY_NAME[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    try:
                        value = float(value) if f.type == "float" else int(value)
                    except (TypeError, ValueError, OverflowError):
                        raise InvalidInput("%s%s %r is not a %s" % (where, key, value, "number of seconds" if f.type == "float"
                                                                    else "whole number")) from None
                if f.type == "int" and isinstance(value, float):
                    if value != int(value):
                        raise InvalidInput("%s%s %r is not a whole number" % (where, key, value))
                    value = int(value)
                model.check_value(f, value, where + key)
                value = float(value) if f.type == "float" else value
            setattr(spec, key, value)
    except InvalidInput as exc:
        raise InvalidInput("%s (guest %r)" % (exc.msg, name)) from None
    namespaces = getattr(spec, "namespaces", None)
    if spec.restart not in (None, NO) and namespaces is not None and "pid" not in namespaces:
        raise InvalidInput("%srestart %s: guest %r has no pid namespace of its own, so no init to watch (add pid to "
                           "namespaces)" % (where, spec.restart, name))


def watching(state_dir: str) -> bool:
    """Whether a supervisor watches the guests of ``state_dir``: its lock file STATE/supervisor.lock
    is flock'ed (read from /proc/locks: the lock itself is never tried, so a supervisor starting
    meanwhile is not turned away)."""
    try:
        st = os.stat(os.path.join(state_dir, LOCK_NAME))
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    for line in lines:
        parts = line.split()
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue  # a waiter, or not an flock
        try:
            major, minor, ino = parts[5].split(":")
            if (int(major, 16), int(minor, 16), int(ino)) == (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino):
                return True
        except ValueError:
            continue
    return False


def unwatched_warning(state_dir: str, results: list):
    """namespace_create's warning when a guest of ``results`` (ensure_guests') asks for a restart
    policy and no supervisor watches ``state_dir`` (None when there is none to give)."""
    asking = {}
    for r in results:
        policy = (r.get("guest") or {}).get("restart")
        if policy in (ON_FAILURE, ALWAYS) and r.get("state", "present") != "absent":
            asking[str(r.get("name"))] = policy
    if not asking or watching(state_dir):
        return None
    return ("%s: no supervisor watches the guests of %s (no process holds %s): nothing restarts an init that exits "
            "or disposes of its guest. Start linuxns-guests-restart for this state folder (the guest_host role does with "
            "guest_host_restart_supervisor: true; docs/lifecycle-restart.md)"
            % (", ".join("guest %s has restart %s" % (n, asking[n]) for n in sorted(asking)), state_dir,
               os.path.join(state_dir, LOCK_NAME)))


def describe(status) -> str:
    """An exit status as the log says it: ``status 3``, ``signal SIGKILL``, ``unknown status``."""
    if status is None:
        return "unknown status"
    if status < 0:
        try:
            return "signal %s" % signal.Signals(-status).name
        except ValueError:
            return "signal %d" % -status
    return "status %d" % status


def from_wait_status(wstatus: int) -> int:
    """A wait status as exit code (>= 0) or minus the signal number."""
    if os.WIFSIGNALED(wstatus):
        return -os.WTERMSIG(wstatus)
    return os.WEXITSTATUS(wstatus)


class Decision:
    __slots__ = ("action", "count", "delay", "why")

    def __init__(self, action: str, delay: float, count: int, why: str) -> None:
        self.action, self.delay, self.count, self.why = action, delay, count, why  # action: restart | dispose

    def __repr__(self) -> str:
        return "Decision(%r, %r, %r, %r)" % (self.action, self.delay, self.count, self.why)


class Policy:
    """A guest's restart policy, read from its record (bad recorded values name the guest)."""

    __slots__ = ("delay", "max_delay", "max_restarts", "restart")

    def __init__(self, restart: str = NO, delay: float = 1.0, max_delay: float = 60.0, max_restarts: int = 0) -> None:
        self.restart, self.delay, self.max_delay, self.max_restarts = restart, delay, max_delay, max_restarts

    @classmethod
    def of(cls, meta: reg.GuestRecord) -> Policy:
        class _Given:
            name = meta.name
            namespaces = None

        given = _Given()
        check_restart(given, {k: meta.field(k) for k in RESTART_KEYS}, "recorded ")
        return cls(
            given.restart or model.default("restart"),
            model.default("restart_delay") if given.restart_delay is None else given.restart_delay,
            model.default("restart_max_delay") if given.restart_max_delay is None else given.restart_max_delay,
            model.default("restart_max") if given.restart_max is None else given.restart_max,
        )

    def __eq__(self, other) -> bool:
        return isinstance(other, Policy) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None

    def reset_after(self) -> float:
        return max(RESET_AFTER, self.max_delay)

    def backoff(self, count: int) -> float:
        """The delay before restart number ``count + 1`` in a row: restart_delay doubled per
        restart, at most restart_max_delay."""
        if count >= 64:
            return self.max_delay
        return min(self.delay * (2 ** count), self.max_delay)

    def decide(self, status, count: int, ran_for=None) -> Decision:
        """What to do with a guest whose init exited with ``status`` (exit code, minus a signal
        number, None: unknown - a failure) after ``count`` restarts in a row, having run
        ``ran_for`` seconds (None: unknown)."""
        if ran_for is not None and ran_for >= self.reset_after():
            count = 0  # it ran well: the backoff starts over
        failed = status is None or status != 0
        if self.restart == NO:
            return Decision("dispose", 0.0, count, "restart=no")
        if self.restart == ON_FAILURE and not failed:
            return Decision("dispose", 0.0, count, "it exited with status 0 and restart=on-failure")
        if self.max_restarts and count >= self.max_restarts:
            return Decision("dispose", 0.0, count, "it was restarted %d times in a row (restart_max=%d)" % (count, self.max_restarts))
        return Decision("restart", self.backoff(count), count + 1, "restart=%s" % self.restart)


# ---------------------------------------------------------------------------------------
# Exit statuses
# ---------------------------------------------------------------------------------------
def pidfd_exit_status(pidfd: int):
    """The wait status of the reaped process of ``pidfd`` (PIDFD_INFO_EXIT, Linux 6.15+), or None."""
    buf = bytearray(PIDFD_INFO_SIZE)
    struct.pack_into("Q", buf, 0, PIDFD_INFO_EXIT)
    try:
        fcntl.ioctl(pidfd, PIDFD_GET_INFO, buf)
    except OSError:
        return None
    if not struct.unpack_from("Q", buf, 0)[0] & PIDFD_INFO_EXIT:
        return None
    return struct.unpack_from("i", buf, PIDFD_INFO_EXIT_CODE)[0]


def zombie_exit_status(pid: int, start):
    """The wait status in /proc/PID/stat (field 52) of a zombie not reaped yet, or None."""
    proc = procfs.Proc(pid)
    stat = proc.stat
    if stat is None or proc.state != b"Z" or (start is not None and proc.start_time != start):
        return None
    try:
        return int(stat[-1])
    except (ValueError, IndexError):
        return None


def _text(exc: BaseException) -> str:
    return getattr(exc, "msg", None) or "%s: %s" % (type(exc).__name__, exc)


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------
# The supervisor
# ---------------------------------------------------------------------------------------
class Watched:
    """One guest's init being watched."""

    __slots__ = ("count", "fd", "name", "pid", "policy", "start", "tries")

    def __init__(self, name: str, pid: int, start, fd: int, policy: Policy, count: int) -> None:
        self.name, self.pid, self.start, self.fd, self.policy, self.count = name, pid, start, fd, policy, count
        self.tries = 0  # rounds its exit status was looked for

    def ran_for(self):
        return None if self.start is None else max(0.0, boottime() - self.start / CLK_TCK)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def restarts_of(meta: reg.GuestRecord) -> int:
    rec = meta.field("restarts")
    count = rec.get("count") if isinstance(rec, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else 0


class Supervisor:
    """The host's one supervisor of a state folder (see the module's text)."""

    def __init__(self, registry: reg.Registry, table_dir=None, scan_interval: float = SCAN_INTERVAL, log=None) -> None:
        self.registry = registry
        self.table_dir = table_dir
        self.scan_interval = scan_interval
        self.log_file = log or sys.stderr
        self.watched = {}  # name -> Watched (running inits)
        self.exited = {}  # name -> Watched (exited, exit status looked for)
        self.due = {}  # name -> (when, Watched, Decision, status)
        self.workers = {}  # pid -> name
        self.mtimes = {}  # name -> mtime_ns of its meta.json when last read
        self.reaped = {}  # pid -> wait status of children reaped (inits it restarted)
        self.stopping = False
        self.lock_fd = -1

    def log(self, text: str) -> None:
        self.log_file.write("linuxns-guests-restart: %s\n" % text)
        self.log_file.flush()

    # ---- the one instance --------------------------------------------------------------
    def take_lock(self) -> None:
        os.makedirs(self.registry.state_dir, mode=0o700, exist_ok=True)
        path = os.path.join(self.registry.state_dir, LOCK_NAME)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise GuestError("another supervisor watches the guests of %s (it holds %s)" % (self.registry.state_dir, path)) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, b"%d\n" % os.getpid())
        self.lock_fd = fd

    # ---- finding guests ------------------------------------------------------------------
    def scan(self) -> None:
        """Look at every record whose meta.json changed since the last look."""
        names = set(self.registry.names())
        for name in list(self.watched):
            if name not in names:
                self.watched.pop(name).close()
        for name in list(self.mtimes):
            if name not in names:
                del self.mtimes[name]
        for name in sorted(names):
            if name in self.exited or name in self.due or name in self.workers.values():
                continue
            try:
                mtime = os.stat(self.registry.meta_path(name)).st_mtime_ns
            except OSError:
                continue
            if self.mtimes.get(name) == mtime:
                continue
            self.mtimes[name] = mtime
            try:
                self.look_at(name)
            except Exception as exc:  # one guest's record never stops the others' supervision
                self.forget(name)
                self.log("guest %s: not watched: %s" % (name, _text(exc)))

    def look_at(self, name: str) -> None:
        try:
            meta = self.registry.load(name)
        except GuestError as exc:  # a record of a newer version
            self.forget(name)
            self.log("guest %s: not watched: %s" % (name, exc.msg))
            return
        if meta is None or meta.phase != reg.READY or not meta.init_pid:
            self.forget(name)  # being made (looked at again once it changes), corrupt, or no init
            return
        try:
            policy = Policy.of(meta)
        except InvalidInput as exc:
            self.forget(name)
            self.log("guest %s: not watched: %s" % (name, exc.msg))
            return
        w = self.watched.get(name)
        if w is not None and (w.pid, w.start) == (meta.init_pid, meta.init_start):
            w.policy = policy  # changed in place
            return
        self.forget(name)
        fd = -1
        if procfs.process_alive(meta.init_pid, meta.init_start):
            try:
                fd = os.pidfd_open(meta.init_pid)
            except OSError:
                fd = -1
            if fd >= 0 and not procfs.process_alive(meta.init_pid, meta.init_start):  # the pid was reused meanwhile
                os.close(fd)
                fd = -1
        w = Watched(name, meta.init_pid, meta.init_start, fd, policy, restarts_of(meta))
        if fd < 0:
            self.log("guest %s: its init (pid %d) is not running" % (name, w.pid))
            w.tries = STATUS_TRIES  # nothing to wait for: its status is what was reaped, or unknown
            self.exited[name] = w
            return
        self.watched[name] = w

    def forget(self, name: str) -> None:
        w = self.watched.pop(name, None)
        if w is not None:
            w.close()

    # ---- exits -------------------------------------------------------------------------------
    def reap(self) -> None:
        """Reap every child that exited: restarted inits (their status kept by pid), workers."""
        for pid, wstatus in sc.exited_children():
            name = self.workers.pop(pid, None)
            if name is not None:
                if wstatus:
                    self.log("guest %s: the worker failed (%s)" % (name, describe(from_wait_status(wstatus))))
                self.mtimes.pop(name, None)  # its record is read again now
                continue
            self.reaped[pid] = wstatus
            if len(self.reaped) > 4096:
                self.reaped.pop(next(iter(self.reaped)))

    def status_of(self, w: Watched):
        """(known, status): the exit status of ``w``'s init when it can be told."""
        if w.pid in self.reaped:
            return True, from_wait_status(self.reaped.pop(w.pid))
        if w.fd >= 0:
            wstatus = pidfd_exit_status(w.fd)
            if wstatus is not None:
                return True, from_wait_status(wstatus)
        wstatus = zombie_exit_status(w.pid, w.start)
        if wstatus is not None:
            return True, from_wait_status(wstatus)
        return False, None

    def on_exit(self, w: Watched) -> None:
        known, status = self.status_of(w)
        if not known and w.tries < STATUS_TRIES:
            w.tries += 1
            self.exited[w.name] = w
            return
        self.exited.pop(w.name, None)
        w.close()
        d = w.policy.decide(status, w.count, w.ran_for())
        if d.action == "restart":
            self.log("guest %s: its init (pid %d) exited (%s): restart %d in a row in %gs (%s)"
                     % (w.name, w.pid, describe(status), d.count, d.delay, d.why))
        else:
            self.log("guest %s: its init (pid %d) exited (%s): disposing of the guest (%s)" % (w.name, w.pid, describe(status), d.why))
        self.due[w.name] = (time.monotonic() + d.delay, w, d, status)

    def _on_exit(self, w: Watched) -> None:
        try:
            self.on_exit(w)
        except Exception as exc:  # one guest never stops the others' supervision
            self.exited.pop(w.name, None)
            w.close()
            self.mtimes.pop(w.name, None)  # looked at again at the next scan
            self.log("guest %s: its init (pid %d) exited, and that could not be handled: %s" % (w.name, w.pid, _text(exc)))

    def start_due(self) -> None:
        now = time.monotonic()
        for name, (when, w, d, status) in sorted(self.due.items()):
            if when <= now:
                del self.due[name]
                self.workers[self.fork_worker(w, d, status)] = name

    def fork_worker(self, w: Watched, d: Decision, status) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the worker
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.close(self.lock_fd)
                code = work(self.registry, w.name, d, w.pid, w.start, describe(status), self.table_dir, self.log)
            except BaseException as exc:  # a worker reports everything and exits
                self.log("guest %s: %s" % (w.name, _text(exc)))
            finally:
                os._exit(code)
        return pid

    # ---- the loop ------------------------------------------------------------------------------
    def run_once(self, timeout: float) -> None:
        poller = select.poll()
        by_fd = {}
        for w in self.watched.values():
            poller.register(w.fd, select.POLLIN)
            by_fd[w.fd] = w
        if self.exited:
            timeout = min(timeout, STATUS_WAIT)
        if self.due:
            timeout = min(timeout, max(0.0, min(entry[0] for entry in self.due.values()) - time.monotonic()))
        if self.workers:
            timeout = min(timeout, 0.05)
        try:
            ready = poller.poll(int(timeout * 1000))
        except InterruptedError:
            ready = []
        self.reap()
        for fd, _ev in ready:
            w = by_fd.get(fd)
            if w is not None and self.watched.get(w.name) is w:
                del self.watched[w.name]
                self._on_exit(w)
        for w in list(self.exited.values()):
            if w.name in self.exited:
                del self.exited[w.name]
                self._on_exit(w)
        self.start_due()

    def run(self) -> int:
        self.take_lock()
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)  # inits its workers start are its children: their status
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        self.log("watching the guests of %s (pid %d)" % (self.registry.state_dir, os.getpid()))
        next_scan = 0.0
        first = True
        while not self.stopping:
            now = time.monotonic()
            if now >= next_scan:
                self.scan()
                next_scan = now + self.scan_interval
                if first:
                    first = False
                    self.log("found %d guests: watching %d running inits, %d exited"
                             % (len(self.registry.names()), len(self.watched), len(self.exited)))
            self.run_once(max(0.0, next_scan - time.monotonic()))
        self.log("stopped; %d guests were watched" % len(self.watched))
        return 0

    def _stop(self, *_args) -> None:
        self.stopping = True


# ---------------------------------------------------------------------------------------
# The worker (a forked child): the modules' code does the work
# ---------------------------------------------------------------------------------------
def restart_params(meta: reg.GuestRecord, pid: int, start) -> dict:
    """namespace_create's entry that makes the guest of ``meta`` again, as recorded; only while
    its record names the init ``pid`` (started at ``start``) and that init is not running."""
    params = {k: meta.field(k) for k in model.RECORDED}
    params.update(name=meta.name, state="present", recreate=True, _restart_of=[pid, start])
    return params


def join_module_cgroups(meta: reg.GuestRecord):
    """A relative cgroup_parent resolves below the cgroups of the process that runs namespace_create
    (in each hierarchy); the worker runs elsewhere.  So that the guest is made again in the same
    cgroup folders, the worker joins the cgroups the module ran in, found from the guest's recorded
    folders (FOLDER = MODULE_CGROUP/PARENT/NAME).  None when there is nothing to join (auto or an
    absolute parent), True when joined, else the reason why not."""
    parent = meta.cgroup_parent
    paths = (meta.cgroup or {}).get("paths") or {}
    if not parent or parent == "auto" or parent.startswith("/") or not paths:
        return None
    joins = []
    for _key, folder in sorted(paths.items()):
        suffix = "/%s/%s" % (parent.strip("/"), os.path.basename(folder))
        if not folder.endswith(suffix):
            return "its cgroup folder %s is not below its cgroup_parent %s" % (folder, parent)
        joins.append(os.path.join(folder[: -len(suffix)], "cgroup.procs"))
    for procs in joins:
        try:
            with open(procs, "w") as f:
                f.write("0")
        except OSError as exc:
            return "the cgroup %s cannot be joined: %s" % (os.path.dirname(procs), sc.errno_text(exc.errno))
    return True


def work(registry: reg.Registry, name: str, d: Decision, pid: int, start, status: str, table_dir, log) -> int:
    """Restart or dispose of guest ``name`` whose init ``pid`` exited; 0 when done or not needed."""
    from ansible_collections.linuxns.guests.plugins.module_utils import guest_stop, guests

    meta = registry.load(name)
    if meta is None or (meta.init_pid, meta.init_start) != (pid, start):
        log("guest %s: changed meanwhile (made again or removed by another run): left alone" % name)
        return 0
    if d.action == "dispose":
        with registry.lock(name):
            meta = registry.load(name)
            if meta is None or (meta.init_pid, meta.init_start) != (pid, start) or procfs.process_alive(pid, start):
                log("guest %s: changed meanwhile: left alone" % name)
                return 0
            if meta.cgroup:
                from ansible_collections.linuxns.guests.plugins.module_utils import enter
                from ansible_collections.linuxns.guests.plugins.module_utils.guest_spec import CgroupRun

                if enter.is_frozen(meta):
                    CgroupRun().of(meta).thaw()
            guest_stop.remove(registry, name, meta, proc_index=guest_stop.ProcIndex())
        log("guest %s: disposed of (its init exited, %s)" % (name, status))
        return 0
    joined = join_module_cgroups(meta)
    if joined not in (None, True):
        log("guest %s: not restarted: its cgroup_parent %s is relative and %s; give it an absolute cgroup_parent"
            % (name, meta.cgroup_parent, joined))
        return 1
    params = restart_params(meta, pid, start)
    params["_restarts"] = {"count": d.count, "delay": d.delay, "last_exit": status, "at": time.time()}
    out = guests.ensure_guests(registry, [params], table_dir=table_dir)
    if not out["changed"]:
        log("guest %s: changed meanwhile: left alone" % name)
        return 0
    log("guest %s: restarted, init pid %s (restart %d in a row)" % (name, out["results"][0]["guest"].get("init_pid"), d.count))
    # New namespaces: its saved links (netns_link, in its definition) are made again, then its services.
    from ansible_collections.linuxns.guests.plugins.module_utils import boot, persist

    try:
        text = boot.bring_up(registry, persist.resolve_table_dir(registry.state_dir, table_dir), name)
    except GuestError as exc:
        log("guest %s: restarted, but %s" % (name, exc.msg))
        return 1
    if text:
        log("guest %s: %s" % (name, text[2:]))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="linuxns-guests-restart", description="The restart supervisor of linuxns.guests' inits.")
    parser.add_argument("--state-dir", default=reg.DEFAULT_STATE_DIR)
    parser.add_argument("--table-dir", default=None)
    parser.add_argument("--scan-interval", type=float, default=SCAN_INTERVAL)
    args = parser.parse_args(argv)
    try:
        model.check_dir(args.state_dir, "--state-dir")
        if args.table_dir is not None:
            model.check_dir(args.table_dir, "--table-dir")
        model.check_number(args.scan_interval, "--scan-interval", 0.01, model.MAX_SECONDS, " seconds")
        return Supervisor(reg.Registry(args.state_dir), args.table_dir, args.scan_interval).run()
    except GuestError as exc:
        sys.stderr.write("linuxns-guests-restart: %s\n" % exc.msg)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
