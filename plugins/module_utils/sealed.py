# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A call run in a child exec'd from a sealed clone of this Python (CVE-2019-5736 class).

The process that enters a guest must not run the host's interpreter file: a guest's
program that starts ``#!/proc/self/exe`` would run it again inside the guest, where guest
root could open it for writing (see :mod:`enter`, "The sealed clone of the interpreter",
and docs/security.md).  The entry program re-executes itself (:func:`enter.reexec_sealed`);
a module run cannot, so it hands its work to a child exec'd from the clone, as runc
hands ``runc init`` to its cloned binary (libcontainer/exeseal).  Not part of the entry
program.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from ansible_collections.linuxns.guests.plugins.module_utils.code_cache import CLONE_CACHE, cache_code

# The child's program: it only finds this module (the rest comes from the cache, see
# cache_code) and hands over to _clone_main.  A failure is told to the caller, if it
# calls (nothing on stderr when it does not).
_CLONE_MAIN = r"""
import os, sys, json
f = os.fdopen(int(sys.argv[1]), "rb")
head = json.loads(f.readline())
sys.path[:] = head["path"]
SHIPPED = head.get("sources") or {}  # the collection's modules by source: a caller without files (Mitogen)


class _Shipped:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in SHIPPED:
            return None
        import importlib.util
        return importlib.util.spec_from_loader(name, _Shipped, is_package=SHIPPED[name][0])

    @staticmethod
    def create_module(spec):
        return None

    @staticmethod
    def exec_module(module):
        exec(compile(SHIPPED[module.__name__][1], "<shipped>/" + module.__name__, "exec", dont_inherit=True), module.__dict__)


if SHIPPED:
    sys.meta_path.insert(0, _Shipped)
try:
    from ansible_collections.linuxns.guests.plugins.module_utils import sealed
except BaseException as exc:
    if f.read():
        import pickle
        os.write(int(sys.argv[2]), pickle.dumps(("error", {"error": "%s: %s" % (type(exc).__name__, exc), "class": "GuestError"})))
    os._exit(0)
sealed._clone_main(f, int(sys.argv[2]), head)
"""


def _clone_main(f, w: int, head: dict):  # pragma: no cover - the clone's program (_CLONE_MAIN), after its exec
    import pickle

    failed = errors = None
    try:
        cache_code(head["cache"])
        import fcntl  # noqa: F401 - these four are imported lazily (os.execvpe: warnings) once inside a guest
        import resource  # noqa: F401
        import struct  # noqa: F401
        import warnings  # noqa: F401

        from ansible_collections.linuxns.guests.plugins.module_utils import errors, syscalls

        for name in head["preload"]:  # while the caller still prepares the call
            __import__(name)
    except BaseException as exc:
        failed = exc
    data = f.read()
    if not data:
        os._exit(0)  # the caller ended without a call
    try:
        if failed is not None:
            raise failed
        if not syscalls.running_sealed():
            raise errors.GuestError("the sealed clone of %s does not run from a sealed copy" % sys.executable)
        func, args = pickle.loads(data)
        out = ("ok", func(*args))
    except BaseException as exc:
        out = ("error", errors.to_payload(exc) if errors else {"error": "%s: %s" % (type(exc).__name__, exc), "class": "GuestError"})
    out = pickle.dumps(out)
    while out:
        out = out[os.write(w, out):]
    os._exit(0)


_ON_PATH = {}  # tuple(sys.path) -> whether ansible_collections is found there (one path-finder lookup per process)


def _shipped_sources() -> dict:
    """{name: [is_package, source]} of the collection's loaded modules when they are not files on sys.path.

    Mitogen's in-process module runner imports them from the controller into memory: the clone,
    a new interpreter, could not import them. Empty in an ordinary (AnsiballZ) run."""
    key = tuple(sys.path)
    if key not in _ON_PATH:
        import importlib.machinery

        _ON_PATH.clear()
        _ON_PATH[key] = importlib.machinery.PathFinder.find_spec("ansible_collections", sys.path) is not None
    if _ON_PATH[key]:
        return {}
    out = {}
    for name, mod in list(sys.modules.items()):
        if mod is None or not (name == "ansible_collections" or name.startswith("ansible_collections.")):
            continue
        loader = getattr(mod, "__loader__", None)
        try:
            src = loader.get_source(name) if loader is not None and hasattr(loader, "get_source") else None
        except ImportError:
            src = None
        if isinstance(src, bytes):
            src = src.decode("utf-8", "replace")
        out[name] = [hasattr(mod, "__path__"), src or ""]
    return out


class SealedClone:
    """A child exec'd from a sealed clone of this Python, for one call (:meth:`call`).

    For a library caller (a module run) that cannot exec itself again.  Started at
    once: it imports ``preload`` (module names) while the caller still prepares the
    call, so its start-up runs alongside.  The collection's modules it imports from a zip
    (a module's AnsiballZ payload, which has no .pyc) are compiled once and kept in
    ``cache`` (when its parent folder exists: the default state folder), trusted only
    when it and the file belong to our uid and nobody else may write them.  The call's
    ``func`` and ``args`` must pickle (``func`` a module-level function; the child imports
    it through this process's ``sys.path``), and so must the result; a GuestError raised there is raised here with
    its class and message.  In a process that runs from a sealed copy already, nothing is
    started and :meth:`call` calls ``func`` here.  The child's stdout is our stderr (a
    module's stdout is its answer), its stdin /dev/null; it dies with us
    (PR_SET_PDEATHSIG) and ends when we close it (or exit) without a call.  ``keep_fds``:
    fds of ours it inherits at the same numbers (a socket its call serves on, as
    :mod:`forkserver` does; the call may run while we go on: :meth:`start`, :meth:`result`).
    """

    def __init__(self, preload=(), cache: str = CLONE_CACHE, keep_fds=()):
        from ansible_collections.linuxns.guests.plugins.module_utils import enter
        from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc

        self.pid = None
        self.job_w = self.res_r = -1
        if sc.running_sealed():
            return
        exe = enter.interpreter_clone()
        fds = []
        try:
            fds.extend(os.pipe2(os.O_CLOEXEC))
            fds.extend(os.pipe2(os.O_CLOEXEC))
            job_r, job_w, res_r, res_w = fds
            parent = os.getpid()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child, until its exec
                try:
                    sc.set_pdeathsig(signal.SIGKILL)
                    if os.getppid() != parent:
                        os._exit(1)
                    null = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(null, 0)
                    os.dup2(2, 1)
                    for fd in (job_r, res_w, *keep_fds):  # keep_fds: the caller's, at the same numbers in the clone
                        os.set_inheritable(fd, True)
                    os.execve(exe, [sys.executable, "-I", "-S", "-c", _CLONE_MAIN, str(job_r), str(res_w)], dict(os.environ))
                finally:
                    os._exit(127)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        finally:
            os.close(exe)
        os.close(job_r)
        os.close(res_w)
        self.pid, self.job_w, self.res_r = pid, job_w, res_r
        try:
            enter.write_all(job_w, json.dumps({"path": sys.path, "preload": list(preload), "cache": cache,
                                               "sources": _shipped_sources()}).encode() + b"\n")
        except BrokenPipeError:
            pass  # it died at once: call() tells

    def call(self, func, *args):
        if self.pid is None:
            return func(*args)
        self.start(func, *args)
        return self.result()

    def start(self, func, *args) -> None:
        """Hand the clone its call and return at once (its answer: :meth:`result`)."""
        import pickle

        from ansible_collections.linuxns.guests.plugins.module_utils import enter

        try:
            enter.write_all(self.job_w, pickle.dumps((func, args)))
        except BrokenPipeError:
            pass  # it died: result() tells
        os.close(self.job_w)
        self.job_w = -1

    def result(self):
        """Wait for the answer of the call :meth:`start` handed over; the clone ends."""
        import pickle

        from ansible_collections.linuxns.guests.plugins.module_utils import enter
        from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError

        try:
            data = enter.read_all(self.res_r)
        finally:
            status = self.close()
        if not data:
            raise GuestError("the sealed clone of %s that enters the guests ended without an answer (wait status %d)"
                             % (sys.executable, status))
        kind, value = pickle.loads(data)
        if kind == "error":
            enter.raise_payload(value)
        return value

    def close(self) -> int:
        """End it (without a call, it exits); its wait status."""
        for fd in (self.job_w, self.res_r):
            if fd >= 0:
                os.close(fd)
        self.job_w = self.res_r = -1
        pid, self.pid = self.pid, None
        if pid is None:
            return 0
        from ansible_collections.linuxns.guests.plugins.module_utils.enter import wait_child

        return wait_child(pid)


def in_sealed_clone(func, *args):
    """``func(*args)`` run in a child exec'd from a sealed clone of this Python (one
    :class:`SealedClone`, started for this call); its result."""
    return SealedClone((func.__module__,)).call(func, *args)
