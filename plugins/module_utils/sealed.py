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

from ansible_collections.linuxns.guests.plugins.module_utils import enter
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError

CLONE_CACHE = "/run/linuxns/clone-cache"  # compiled modules of a zipped payload (the clone of a module run)
_CLONE_MAIN = r"""
import os, sys, json, pickle
import fcntl, resource, struct, warnings  # imported lazily (os.execvpe: warnings) once inside a guest
r, w = int(sys.argv[1]), int(sys.argv[2])
f = os.fdopen(r, "rb")
head = json.loads(f.readline())
sys.path[:] = head["path"]
PKG = "ansible_collections.linuxns.guests.plugins.module_utils."
CACHE = head["cache"]


def _trusted(st, kind):
    return kind(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


class _Cached:
    # The collection's modules from a zip (a module's AnsiballZ payload has no .pyc): code
    # kept in CACHE (root-only, like the entry program's STATE/entry-cache), by source.
    def __init__(self, spec):
        self.spec, self.inner = spec, spec.loader

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        import marshal, stat, zlib
        src = self.inner.get_source(module.__name__).encode()
        stem = module.__name__.rsplit(".", 1)[-1] + "-"
        key = "%s%08x-%d.%s" % (stem, zlib.crc32(src), len(src), sys.implementation.cache_tag)
        code = None
        try:
            if _trusted(os.lstat(CACHE), stat.S_ISDIR):
                with open(os.open(os.path.join(CACHE, key), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as c:
                    if _trusted(os.fstat(c.fileno()), stat.S_ISREG):
                        code = marshal.loads(c.read())
        except (OSError, ValueError, EOFError, TypeError):
            pass
        if code is None:
            code = compile(src, self.spec.origin or module.__name__, "exec", dont_inherit=True)
            try:  # best effort: without it, compiling next time too
                os.makedirs(CACHE, mode=0o700, exist_ok=True)
                tmp = os.path.join(CACHE, ".new-%d-%s" % (os.getpid(), key))
                with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), "wb") as c:
                    c.write(marshal.dumps(code))
                os.replace(tmp, os.path.join(CACHE, key))
                for old in os.listdir(CACHE):
                    if old.startswith(stem) and old != key:
                        os.unlink(os.path.join(CACHE, old))
            except OSError:
                pass
        exec(code, module.__dict__)


class _Finder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if not name.startswith(PKG):
            return None
        import importlib.machinery, zipimport
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and isinstance(spec.loader, zipimport.zipimporter) and spec.submodule_search_locations is None:
            spec.loader = _Cached(spec)
        return spec


if CACHE and os.path.isdir(os.path.dirname(CACHE)):
    sys.meta_path.insert(0, _Finder)
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
failed = errors = None
try:  # a failure is told to the caller, if it calls (nothing on stderr when it does not)
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
"""


def _shipped_sources() -> dict:
    """{name: [is_package, source]} of the collection's loaded modules when they are not files on sys.path.

    Mitogen's in-process module runner imports them from the controller into memory: the clone,
    a new interpreter, could not import them. Empty in an ordinary (AnsiballZ) run."""
    import importlib.machinery

    if importlib.machinery.PathFinder.find_spec("ansible_collections", sys.path) is not None:
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
    (PR_SET_PDEATHSIG) and ends when we close it (or exit) without a call.
    """

    def __init__(self, preload=(), cache: str = CLONE_CACHE):
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
                    os.set_inheritable(job_r, True)
                    os.set_inheritable(res_w, True)
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
        import pickle

        try:
            try:
                enter.write_all(self.job_w, pickle.dumps((func, args)))
            except BrokenPipeError:
                pass  # it died: told below
            os.close(self.job_w)
            self.job_w = -1
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
        return enter.wait_child(pid) if pid is not None else 0


def in_sealed_clone(func, *args):
    """``func(*args)`` run in a child exec'd from a sealed clone of this Python (one
    :class:`SealedClone`, started for this call); its result."""
    return SealedClone((func.__module__,)).call(func, *args)
