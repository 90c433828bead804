# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Entering a guest: the one path every module uses.

A freshly forked child (single-threaded, so ``setns(CLONE_NEWNS)`` works) makes
itself non-dumpable, opens every namespace file first, then joins them in
nsenter's order: all but the user namespace, then the user namespace (as host
root we deprivilege last), then any that needed the user namespace.  The
mount namespace's root becomes the child's root (the guest's root after its
pivot_root).  PID and time namespaces apply to children only, so running a
program forks once more.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import sys
import time

from ansible_collections.linuxns.guests.plugins.module_utils import confine, errors
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import (
    ExecFailed,
    GuestError,
    GuestStale,
    InvalidInput,
    KernelError,
)
from ansible_collections.linuxns.guests.plugins.module_utils.procfs import read_text


def guest_types(meta: reg.GuestRecord) -> list:
    """Namespace types the guest has (private or shared), nsenter order."""
    return sc.ns_order(meta.pins)


def check_types(meta: reg.GuestRecord, types, param: str = "namespaces") -> list:
    """Validate a requested subset of the guest's namespace types."""
    have = guest_types(meta)
    if types is None:
        return have
    bad = [t for t in types if t not in sc.NS_TYPES]
    if bad:
        raise InvalidInput("%s: unknown namespace type(s) %s; known: %s" % (param, ", ".join(bad), ", ".join(sc.NS_TYPES)))
    missing = [t for t in types if t not in have]
    if missing:
        raise InvalidInput(
            "%s: guest %r has no %s namespace of its own (it has: %s)"
            % (param, meta.name, ", ".join(missing), ", ".join(have) or "none")
        )
    return sc.ns_order(types)


def check_entry(meta: reg.GuestRecord, types, root: bool = True, param: str = "namespaces") -> list:
    """The checked types to enter; refuses what would put the program outside the guest's root.

    A guest with a root folder is entered only through its own mount namespace
    (its pivot_root was done at creation).  Without ``mnt``, the only way to its
    root would be a chroot inside the host's mount namespace, which a process
    with the guest's privileges climbs out of (the double-chroot break-out): it
    is refused, never a fallback.  ``root=False`` asks for the caller's ``/`` on
    purpose (a host tool in, say, the guest's network) and is refused instead
    when it enters the mount namespace of a guest with a root.  A guest without
    a root may be entered with any subset.
    """
    types = check_types(meta, types, param)
    if not meta.root:
        return types
    if root and "mnt" not in types:
        raise InvalidInput(
            "%s: guest %r has its own root (%s) and is entered only through its mnt namespace; entering %s without mnt "
            "would need a chroot in the host's mount namespace, which its processes could break out of. Add mnt to %s "
            "(or set root: false to run a host program with the host's files)"
            % (param, meta.name, meta.root, ", ".join(types) or "nothing", param)
        )
    if not root and "mnt" in types:
        raise InvalidInput(
            "root: false cannot be used when entering the mnt namespace of guest %r, whose / is its own root; "
            "leave mnt out of %s to run with the host's files" % (meta.name, param)
        )
    return types


def open_namespaces(meta: reg.GuestRecord, types) -> list:
    """Open the pins of ``types`` (before the first setns); list of (type, fd)."""
    fds = []
    try:
        for t in types:
            path = meta.pins[t].path
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise GuestStale("guest %r: its %s namespace pin cannot be opened (%s)" % (meta.name, t, exc.strerror)) from None
            st = os.fstat(fd)
            if st.st_ino != meta.pins[t].ino:
                os.close(fd)
                raise GuestStale("guest %r: its %s namespace is gone (the pin no longer holds it)" % (meta.name, t))
            fds.append((t, fd))
    except BaseException:
        for _t, fd in fds:
            os.close(fd)
        raise
    return fds


def is_own_namespace(fd: int, nstype: str) -> bool:
    """Whether ``fd`` is the namespace of ``nstype`` this process is in already."""
    try:
        mine = os.stat("/proc/self/ns/%s" % nstype)
    except OSError:
        return False
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def join_cgroup(name: str, procs_files) -> None:
    """Move this process into guest ``name``'s cgroup, in every hierarchy: "0" written to each
    of its ``cgroup.procs`` files (the record's, :meth:`registry.GuestRecord.cgroup_procs`).
    Done before any setns or unshare: a user namespace would take the permission away, and
    the guest's cgroup namespace (if any) is then rooted at its cgroup.  A guest an older
    version made has no cgroup: nothing to join."""
    for path in procs_files:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        except OSError as exc:
            raise GuestStale("guest %r: its cgroup cannot be joined (%s: %s)" % (name, path, exc.strerror)) from None


def is_frozen(meta: reg.GuestRecord) -> bool:
    """Whether the guest's cgroup is frozen or freezing (namespace_create state=frozen): its v2
    ``cgroup.freeze`` is 1 or its v1 ``freezer.state`` is not THAWED (read from the record's paths)."""
    for key, folder in sorted(((meta.cgroup or {}).get("paths") or {}).items()):
        name = "cgroup.freeze" if key == "unified" else "freezer.state" if "freezer" in key.split(",") else None
        if name is None:
            continue
        try:
            state = read_text(os.path.join(folder, name)).strip()
        except OSError:
            continue
        if state and state not in ("0", "THAWED"):
            return True
    return False


def refuse_frozen(meta: reg.GuestRecord) -> None:
    """Entering a frozen guest would freeze the entering process (it joins the guest's cgroup first)."""
    if is_frozen(meta):
        raise GuestError("guest %r is frozen (namespace_create state=frozen): a process entering it would be frozen too and"
                         " hang; thaw it first (namespace_create state=present)" % meta.name)


def join_namespaces(fds) -> None:
    """setns() into every (type, fd) in nsenter's two-pass order; closes the fds.

    Like nsenter, never into the user namespace we are in already (the kernel
    refuses that with EINVAL): a guest that shares the host's user namespace."""
    pending = []
    user = [(t, fd) for t, fd in fds if t == "user" and not is_own_namespace(fd, t)]
    for t, fd in fds:
        if t == "user":
            continue
        try:
            sc.setns(fd, t)
        except KernelError as exc:
            if exc.errno != errno.EPERM or not user:
                raise
            pending.append((t, fd))
    for t, fd in user + pending:
        sc.setns(fd, t)
    if user:
        become_userns_root()
    for _t, fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def become_userns_root() -> None:
    """After joining a guest's user namespace: its root, as nsenter does unless
    --preserve-credentials (setgroups, setgid, setuid 0).  Host root's ids are not mapped
    there (a ``userns: auto`` guest): without this the process would be ``nobody`` with no
    capability in the guest.  A namespace that maps no uid or gid 0 leaves them as they were."""
    try:
        os.setgroups([])
    except OSError:
        pass  # /proc/PID/setgroups is "deny" in that namespace
    for call in (os.setresgid, os.setresuid):
        try:
            call(0, 0, 0)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: 0 is not mapped there
                raise


def close_fds_except(keep) -> None:
    """Close every fd >= 3 except those in ``keep`` (close_range(2) between them)."""
    lo = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > lo:
            sc.close_range(lo, fd - 1)
        lo = fd + 1
    sc.close_range(lo)


def seal_fds() -> None:
    """The last step before exec: every fd >= 3 close-on-exec (CVE-2024-21626).

    Like runc's ``utils.CloseExecFrom(3)`` and crun's ``close_range(3, ~0U,
    CLOSE_RANGE_CLOEXEC)``: whatever is still open - the status pipe, which must
    stay usable to report a failed exec, or an fd some library opened without
    O_CLOEXEC after :func:`close_fds_except` - is closed by the exec itself, so the
    program starts with 0, 1 and 2 only.
    """
    sc.close_range(3, sc.FD_MAX, sc.CLOSE_RANGE_CLOEXEC)


def check_cwd(name: str) -> None:
    """Refuse to start a program whose working folder is outside the root it sees.

    runc's ``verifyCwd`` (the CVE-2024-21626 fix): a working folder reached through an
    fd of the host (``/proc/self/fd/N``) or left over from before the mount namespace
    was joined is not under ``/``; the kernel's getcwd(2) then answers "(unreachable)"
    and glibc's getcwd() ENOENT.
    """
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    if not cwd.startswith("/"):
        raise InvalidInput("chdir: the working folder of the command is outside guest %r's root; refused" % name)


def raise_payload(payload: dict) -> None:
    raise errors.from_payload(payload)


def read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def wait_child(pid: int) -> int:
    """waitpid() ignoring EINTR; returns the raw status."""
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0


def call_in_guest(meta: reg.GuestRecord, types, func, *args, **kwargs):
    """Run ``func(*args, **kwargs)`` in a forked child inside the guest's ``types``.

    The result must be JSON-serialisable; a GuestError raised by ``func`` is
    re-raised here with its class and message.  The child never returns.
    The function runs in the joining process itself: when ``types`` holds
    pid or time, it is not a member of those (they apply to children only);
    use :func:`spawn_in_guest` for programs.  It runs the collection's own
    code, never a program of the guest, and never takes the guest's root
    (no chroot): without ``mnt`` it keeps the host's files.
    """
    types = check_types(meta, types)

    def body(_wfd):
        join_namespaces(open_namespaces(meta, types))
        if "mnt" in types:
            os.chdir("/")
        return func(*args, **kwargs)

    return run_forked(meta, body)


def run_forked(meta: reg.GuestRecord, body, *args):
    """Run ``body(wfd, *args)`` in a forked, non-dumpable child; return its result.

    The child sends back ``{"ok": result}`` or the error it raised through a
    pipe (``wfd`` is its write end, for a body that forks again and must close
    it in the process that does not answer); a GuestError is re-raised here
    with its class and message.  The child never returns.
    """
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(rfd)
            sc.set_dumpable(False)
            payload = {"ok": body(wfd, *args)}
        except BaseException as exc:
            payload = errors.to_payload(exc)
            code = 1
        try:
            write_all(wfd, json.dumps(payload).encode())
        finally:
            os._exit(code)
    os.close(wfd)
    try:
        data = read_all(rfd)
    finally:
        os.close(rfd)
        wait_child(pid)
    if not data:
        raise GuestError("guest %r: the helper process inside it died without an answer" % meta.name)
    payload = json.loads(data.decode())
    if "error" in payload:
        raise_payload(payload)
    return payload["ok"]


def reset_signals() -> None:
    """Signal dispositions Python changed, back to the defaults before exec."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_SETMASK, [])


# ---------------------------------------------------------------------------------------
# The sealed clone of the interpreter (CVE-2019-5736 class)
# ---------------------------------------------------------------------------------------
# The process that forks the command's process C runs the host's Python.  C is a member of
# the guest's pid namespace from its fork on, and its exec of a guest file that starts
# "#!/proc/self/exe" runs C's own program again: without a clone, guest code would run in
# a process whose /proc/PID/exe is the host's /usr/bin/python3.x, which guest root could
# open (O_PATH now, reopened for writing once nobody runs it) and replace.  As runc does
# for "runc init" (libcontainer/exeseal: CloneSelfExe, IsSelfExeCloned; formerly
# nsenter/cloned_binary.c) and LXC for lxc-init, everything that enters a guest to run a
# program runs from a sealed memfd copy of the interpreter, made before any namespace is
# joined: /proc/PID/exe is then an anonymous file nobody can write.  runc >= 1.2 prefers a
# private lower-only overlayfs of the binary's folder (zero copy); it would see the real
# file under a bind mount over the interpreter and needs fsopen, and the copy here costs
# ~4 ms against the ~10 ms start of the clone, so the memfd it is (docs/security.md).
# A process that cannot exec itself again (a module run) calls into a clone: sealed.py.
SEALED_MARK = "LINUXNS_SEALED_REEXEC"


def interpreter_clone() -> int:
    """A sealed memfd copy of this Python (``sys.executable``), close-on-exec; fexecve it."""
    path = os.path.realpath(sys.executable)
    return sc.sealed_copy(path, "linuxns:" + os.path.basename(path))


def reexec_sealed() -> None:
    """Run this very command (``sys.orig_argv``) again, from a sealed clone of the interpreter.

    For a program started on its own (the connection's entry program); returns at once
    when it runs from one already.  argv[0] stays the interpreter's path, so Python finds
    its library as before.  Never returns otherwise (the exec replaces the process)."""
    if os.environ.pop(SEALED_MARK, None) is not None:
        if not sc.running_sealed():
            raise GuestError("%s runs from a copy that is not sealed; refusing to enter a guest with it" % sys.executable)
        return
    if sc.running_sealed():
        return
    fd = interpreter_clone()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        env = dict(os.environ)
        env[SEALED_MARK] = "1"
        os.execve(fd, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError as exc:
        raise KernelError("cannot run %s from its sealed copy: %s" % (sys.executable, exc.strerror), errno=exc.errno) from None
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------
# Running a program inside a guest
# ---------------------------------------------------------------------------------------
# Exit status a command gets when it could not be started (like a shell).
RC_NOT_FOUND = 127
RC_CANNOT_EXEC = 126


class Spawned:
    """A program started by :func:`spawn_in_guest`.

    ``pid`` is the joining process E (the caller's child); ``status_fd`` is the
    read end of the status pipe.  It carries JSON lines, in order:
    ``{"pid": P}`` (the command's pid as the caller sees it), then either
    ``{"error": ..., "class": ..., "rc": N}`` (it could not be started) or
    ``{"report": X}`` (``prepare`` decided not to run it), then
    ``{"exit": STATUS}`` (the raw wait status).  EOF means E is gone.
    """

    def __init__(self, pid: int, status_fd: int):
        self.pid = pid
        self.status_fd = status_fd


def _send(fd: int, msg: dict) -> None:
    write_all(fd, (json.dumps(msg) + "\n").encode())


def status_messages(raw: bytes) -> list:
    """The messages :func:`_send` wrote on a status pipe (one JSON object a line), as read
    back by the caller; a line cut short (the writer died) is left out."""
    out = []
    for line in raw.split(b"\n"):
        if line.strip():
            try:
                out.append(json.loads(line.decode()))
            except ValueError:
                pass
    return out


def _exec_in_guest(meta, argv, env, cwd, credentials, prepare, stdio, status_w, conf=None) -> None:  # pragma: no cover - forked child C
    """The command's process C: inside every namespace, just before exec.  ``conf`` (a
    confine.Confinement): its bounding set is cut before the credentials change, the rest
    (capset, no_new_privs, seccomp last) right before exec; only a program is confined."""
    try:
        installed = confine.apply_early(conf) if conf is not None and argv is not None else False
        os.setsid()
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        close_fds_except({status_w})
        if credentials is not None:
            creds = credentials()
            os.setgroups(creds["groups"])
            os.setresgid(creds["gid"], creds["gid"], creds["gid"])
            os.setresuid(creds["uid"], creds["uid"], creds["uid"])
            for key, value in creds.get("env", {}).items():
                env.setdefault(key, value)
        if cwd:
            try:
                os.chdir(cwd)
            except OSError as exc:
                raise InvalidInput("chdir: %s cannot be entered inside guest %r: %s" % (cwd, meta.name, exc.strerror)) from None
        check_cwd(meta.name)
        if prepare is not None:
            report = prepare()
            if report is not None:
                _send(status_w, {"report": report})
                os._exit(0)
        if argv is None:
            _send(status_w, {"report": None})
            os._exit(0)
        reset_signals()
        seal_fds()
        if conf is not None:
            confine.apply_late(conf, installed)
    except BaseException as exc:
        payload = errors.to_payload(exc)
        payload["rc"] = 1
        try:
            _send(status_w, payload)
        finally:
            os._exit(1)
    err = errno.ENOEXEC
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        err = exc.errno
    if err in (errno.ENOENT, errno.ENOTDIR):
        where = "in PATH=%s" % env.get("PATH", "") if "/" not in argv[0] else "at that path"
        msg = "command %r was not found inside guest %r (looked up %s inside the guest)" % (argv[0], meta.name, where)
        rc = RC_NOT_FOUND
    else:
        msg = "command %r cannot be run inside guest %r: %s" % (argv[0], meta.name, sc.errno_text(err))
        rc = RC_CANNOT_EXEC
    try:
        _send(status_w, dict(errors.to_payload(ExecFailed(msg, errno=err, rc=rc)), rc=rc))
    finally:
        os._exit(rc)


LOCK_WAIT = 120.0


def lock_shared(meta: reg.GuestRecord, timeout: float = LOCK_WAIT) -> int:
    """Take the guest's lock (STATE/locks/NAME.lock) shared; its fd, or -1 without a state folder.

    Entering takes it shared, creating, changing and removing a guest take it
    exclusively: no process joins a guest while it is being removed.  The state
    folder is found from the pins (STATE/guests/NAME/ns/TYPE).
    """
    pins = meta.pins
    if not pins:
        return -1
    state = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(next(iter(pins.values())).path))))
    try:
        fd = os.open(os.path.join(state, "locks", meta.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        return -1
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        if time.monotonic() > deadline:
            os.close(fd)
            raise GuestError("guest %r is locked by another run (being created, changed or removed) for more than %ds"
                             % (meta.name, timeout))
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def spawn_in_guest(meta: reg.GuestRecord, types, argv, env: dict, stdio, root: bool = True, cwd=None, credentials=None, prepare=None,
                   confinement=None, detach: bool = False) -> Spawned:
    """Start ``argv`` inside the guest's ``types`` namespaces; return at once.

    The one enter path for programs: fork E (non-dumpable before it opens any
    namespace file), open every pin, join them (:func:`join_namespaces`), take
    the guest's root, fork C so that the program is a member of the guest's
    pid and time namespaces.  C starts a new session, puts ``stdio`` (three
    fds of the caller) on 0/1/2, closes every other fd, switches to
    ``credentials()`` (a callable run inside the guest returning ``uid``,
    ``gid``, ``groups`` and default ``env`` entries), changes to ``cwd``, asks
    ``prepare()`` (run inside the guest; a non-None result is reported instead
    of running the program), resets signal dispositions and execs ``argv``
    with ``os.execvpe``: the program is looked up in ``env["PATH"]`` inside
    the guest.  ``argv=None`` only runs ``prepare`` (check mode).  E waits
    for C and reports its wait status on the status pipe (see
    :class:`Spawned`); the caller reads it and reaps E.

    With ``root`` (the default) the program's ``/`` is the guest's: the root
    of its mount namespace.  A guest with a root folder is entered only with
    ``mnt`` (:func:`check_entry`); there is no chroot fallback in the host's
    mount namespace.  A guest without a root may be entered with any subset
    (the program keeps the host's ``/``).  ``root=False`` keeps the caller's
    ``/`` and is refused when it would mean a host root inside the guest's
    mount namespace.

    The program is confined as the guest says (:func:`confine.for_guest`, built here in
    the parent unless the caller passes the run's ``confinement``): bounding set, ambient
    and inheritable cleared, no_new_privs, seccomp.

    ``stdio`` may be a callable instead: E calls it once inside the guest (after joining,
    at the guest's ``/``) for the three fds, which then live in E only (ptys.py: a pty of
    the guest's own devpts, a log file in the guest).  With ``detach`` C forks the program's
    process once more and exits, so that its parent is the guest's init (a parent outside
    the guest's pid namespace would hand it to the host's reaper): C reports
    ``{"guest_pid": P}`` (its pid in the guest's pid namespace), E reaps C and exits, and the
    status pipe ends when the program has exec'd (or reports why it could not).
    """
    types = check_entry(meta, types, root)
    refuse_frozen(meta)
    if argv is not None and confinement is None:
        confinement = confine.for_guest(meta)
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except BaseException:
        os.close(status_r)
        os.close(status_w)
        raise
    if pid == 0:  # pragma: no cover - runs in the child E
        try:
            os.close(status_r)
            sc.set_dumpable(False)
            # Held from before the pins are opened until C exists inside the guest:
            # a removal (which holds the lock exclusively) either comes first, and the
            # pins are gone, or after, and its scan finds C.
            lock_fd = lock_shared(meta)
            join_cgroup(meta.name, meta.cgroup_procs())  # first: before any setns, before any guest code
            join_namespaces(open_namespaces(meta, types))
            # The guest's / (its root after joining mnt), never the caller's folder on the host.
            os.chdir("/")
            if callable(stdio):  # made inside the guest (ptys.py)
                stdio = tuple(stdio())
            # Never a chroot here: a guest with a root was refused above without mnt.
            # The caller's other fds (its ends of the pipes above all) must not
            # stay open here, or the program would never see EOF on stdin.
            close_fds_except({status_w, lock_fd} | set(stdio))
            child = os.fork()
            if child == 0:
                if detach:  # fork once more inside the guest's pid namespace: its init becomes the parent
                    grandchild = os.fork()
                    if grandchild:
                        _send(status_w, {"guest_pid": grandchild})
                        os._exit(0)
                _exec_in_guest(meta, argv, dict(env), cwd, credentials, prepare, stdio, status_w, confinement)
                os._exit(1)
            if lock_fd >= 0:
                os.close(lock_fd)
            for fd in set(stdio):
                if fd > 2:
                    os.close(fd)
            _send(status_w, {"pid": child})
            if detach:
                wait_child(child)
                os._exit(0)
            status = wait_child(child)
            _send(status_w, {"exit": status})
            os._exit(0)
        except BaseException as exc:
            payload = errors.to_payload(exc)
            try:
                _send(status_w, payload)
            finally:
                os._exit(1)
    os.close(status_w)
    return Spawned(pid, status_r)
