# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Builds the entry program the ``guest`` connection runs with the host's Python.

Like Ansiballz, the program is assembled on the controller from the
collection's own module_utils sources (errors, syscalls, rootfs, procfs, registry, confine, enter
and entry - the one enter path ``guest_enter_exec`` uses too): docstrings and
comments are stripped, the sources are embedded in a small bootstrap that
registers them as modules under their real names, and the whole is compressed
and base64-encoded into one ``python -c`` argument: every command carries its
program (about 17 kB), so nothing has to be installed on the host first.

Compiling those sources takes the host's Python longer than everything else
an entry does before it runs the command, so the host keeps the compiled modules
(marshal, named by the hash of the sources and the Python's cache tag) in
``STATE/entry-cache``: a root-only folder on /run, trusted only when it and the
file belong to the entry's own uid and nobody else may write them. A new
collection version replaces the old entry; a missing or unusable cache only
means compiling again.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import os
import shlex
import tempfile
import zlib

PACKAGE = "ansible_collections.linuxns.guests.plugins.module_utils"
# Dependency order: each module only imports the ones before it.
# A non-root host login: sudo on the host (see command(become=...)).
BECOME_METHODS = ("sudo",)
STDIN_MARK_ARG = "--linuxns-stdin-mark"
STDIN_MARK_LINE = b"--linuxns-end-of-host-become-password--\n"
MODULES = ("errors", "syscalls", "rootfs", "procfs", "registry", "confine", "enter", "entry")

BOOTSTRAP = r'''
import sys, types, os, marshal, stat
P = %(package)r
if sys.argv[1:2] == [%(mark_arg)r]:
    # A host-side sudo -S was given its password as the first line of stdin; when it did not
    # read it (cached or NOPASSWD), the line is still there. Either way, everything up to the
    # marker line is not ours: drop it, byte by byte, so the command's own stdin stays whole.
    # The entry re-executes itself (a sealed clone, same argv): the second run must not read again.
    del sys.argv[1]
    _line = b"" if os.environ.pop("LINUXNS_STDIN_MARK_DROPPED", None) is None else None
    while _line is not None:
        _c = os.read(0, 1)
        if not _c:
            break
        _line = _line + _c if len(_line) < 65536 else _c
        if _c == b"\n":
            if _line == %(mark_line)r:
                os.environ["LINUXNS_STDIN_MARK_DROPPED"] = "1"
                break
            _line = b""
    del _line
CACHE = "entry-cache"
NAME = "%(key)s." + sys.implementation.cache_tag


def _cached():
    # The compiled modules, kept under STATE/entry-cache (argv[2]) by the host's own
    # Python: compiling the sources costs more than the rest of a start-up. Only a
    # folder and file of our own uid that no one else may write are trusted.
    state = sys.argv[2] if len(sys.argv) > 2 else ""
    if not os.path.isabs(state) or not os.path.isdir(state):
        return None, None
    where = os.path.join(state, CACHE)
    try:
        st = os.lstat(where)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
            return None, None
        fd = os.open(os.path.join(where, NAME), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None, where
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            return None, None
        try:
            return marshal.loads(f.read()), where
        except (ValueError, EOFError, TypeError):
            return None, where


def _store(where, codes):
    # Best effort: a read-only or full /run just means compiling next time too.
    import tempfile
    try:
        os.makedirs(where, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=where, prefix=".new-")
        with os.fdopen(fd, "wb") as f:
            f.write(marshal.dumps(codes))
        os.replace(tmp, os.path.join(where, NAME))
        for old in os.listdir(where):
            if old != NAME and not old.startswith(".new-"):
                os.unlink(os.path.join(where, old))
    except OSError:
        pass


codes, where = _cached()
if codes is None:
    codes = [(name, compile(src, "<linuxns-entry>/%%s.py" %% name, "exec")) for name, src in SOURCES]
    if where:
        _store(where, codes)
parts = P.split(".")
for i in range(1, len(parts) + 1):
    n = ".".join(parts[:i])
    m = sys.modules.get(n) or types.ModuleType(n)
    m.__path__ = []
    sys.modules[n] = m
    if i > 1:
        setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], m)
for name, code in codes:
    full = P + "." + name
    m = types.ModuleType(full)
    m.__file__ = "<linuxns-entry>/%%s.py" %% name
    sys.modules[full] = m
    exec(code, m.__dict__)
    setattr(sys.modules[P], name, m)
sys.exit(sys.modules[P + "." + %(main)r].main())
'''


def module_utils_dir() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")


def strip_source(source: str, filename: str = "<source>") -> str:
    """The source without docstrings and comments (ast round trip; same behaviour)."""
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                body.pop(0)
                if not body:
                    body.append(ast.Pass())
    return ast.unparse(tree)


def raw_sources(directory: str | None = None) -> list:
    """[(name, source as in the file)] of the entry program's modules, in dependency order."""
    directory = directory or module_utils_dir()
    out = []
    for name in MODULES:
        with open(os.path.join(directory, name + ".py"), encoding="utf-8") as f:
            out.append((name, f.read()))
    return out


def read_sources(directory: str | None = None) -> list:
    """[(name, stripped source)] of the entry program's modules, in dependency order."""
    return [(name, strip_source(src, name + ".py")) for name, src in raw_sources(directory)]


def program_text(sources: list | None = None, main: str = "entry") -> str:
    """The entry program as Python source.

    The hash of the sources (NAME in the bootstrap) names the host's cache of their compiled form.
    """
    sources = list(read_sources() if sources is None else sources)
    key = hashlib.sha1(repr(sources).encode("utf-8")).hexdigest()
    values = {"package": PACKAGE, "key": key, "mark_arg": STDIN_MARK_ARG, "mark_line": STDIN_MARK_LINE, "main": main}
    return "SOURCES = %r\n%s" % (sources, BOOTSTRAP % values)


_CACHE: dict = {}


def _build(sources: list) -> str:
    blob = base64.b64encode(zlib.compress(program_text(sources).encode("utf-8"), 9)).decode("ascii")
    return "import zlib,base64;exec(zlib.decompress(base64.b64decode('%s')))" % blob


def payload(sources: list | None = None, cache_dir: str | None = None) -> str:
    """The ``-c`` argument: a one-liner that decompresses and runs the program.

    Building it (ast round trips, zlib) costs a few hundred milliseconds on a busy
    controller, and Ansible forks a worker per task and host: the result is kept in
    memory and, with ``cache_dir`` (the run's local temp folder), in a file named by the
    hash of the sources, so one run builds it once.
    """
    if sources is not None:
        return _build(sources)
    raw = raw_sources()
    key = hashlib.sha1(repr(raw).encode("utf-8")).hexdigest()
    if key in _CACHE:
        return _CACHE[key]
    path = os.path.join(cache_dir, "linuxns-entry-%s.txt" % key) if cache_dir else None
    text = None
    if path:
        try:
            with open(path, encoding="ascii") as f:
                text = f.read()
        except (OSError, ValueError):
            text = None
    if not text:
        text = _build([(name, strip_source(src, name + ".py")) for name, src in raw])
        if path:
            try:
                fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".linuxns-entry-")
                with os.fdopen(fd, "w", encoding="ascii") as f:
                    f.write(text)
                os.replace(tmp, path)
            except OSError:
                pass
    _CACHE[key] = text
    return text


_DISCOVER: dict = {}


def discover_command(python: str, state_dir: str, become: tuple | None = None) -> str:
    """The shell command line that lists every guest on a host (plugin_utils/host_discover.py run by the
    entry program's bootstrap with the same modules), for the inventory plugin's discovery."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "host_discover.py"), encoding="utf-8") as f:
        extra = ("host_discover", f.read())
    sources = raw_sources() + [extra]
    key = hashlib.sha1(repr(sources).encode("utf-8")).hexdigest()
    if key not in _DISCOVER:
        text = program_text([(name, strip_source(src, name + ".py")) for name, src in sources], main="host_discover")
        _DISCOVER[key] = "import zlib,base64;exec(zlib.decompress(base64.b64decode('%s')))" % (
            base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii"))
    prefix = become_argv(become[0], become[1], become[2]) if become else []
    marker = [STDIN_MARK_ARG] if become and become[2] else []
    argv = prefix + [python, "-I", "-S", "-c", _DISCOVER[key]] + marker + ["discover", state_dir]
    return " ".join(shlex.quote(a) for a in argv)


def become_argv(method: str, user: str, password: bool) -> list:
    """The host-side become prefix: ``sudo`` to USER; with a password, read from stdin (never argv).

    ``-k`` makes sudo ask even when it has cached credentials, so the password line is read
    whenever a password is needed at all; the entry program drops what is left up to its marker.
    """
    if method not in BECOME_METHODS:
        raise ValueError("host become method %r is not one of: %s" % (method, ", ".join(BECOME_METHODS)))
    if not user or user.startswith("-"):
        raise ValueError("host become user %r is not a user name" % (user,))
    if password:
        return ["sudo", "-S", "-k", "-p", "", "-u", user, "--"]
    return ["sudo", "-n", "-u", user, "--"]


def become_stdin(password: str, in_data: bytes | None) -> bytes:
    """stdin for a command run with ``become_argv(..., password=True)``: the password line, the marker, the data."""
    secret = password.encode("utf-8") if isinstance(password, str) else bytes(password)
    if b"\n" in secret or b"\r" in secret or b"\0" in secret:
        raise ValueError("the host become password cannot contain a line break or NUL")
    return secret + b"\n" + STDIN_MARK_LINE + (in_data or b"")


def command(python: str, args, sources: list | None = None, cache_dir: str | None = None,
            become: tuple | None = None) -> str:
    """The shell command line that runs the entry program with ``args`` on the host.

    ``become`` is (method, user, with_password) for a non-root login: the program runs under that
    become, and with a password its stdin must start with ``become_stdin``.
    """
    prefix = []
    marker = []
    if become:
        method, user, with_password = become
        prefix = become_argv(method, user, with_password)
        marker = [STDIN_MARK_ARG] if with_password else []
    argv = prefix + [python, "-I", "-S", "-c", payload(sources, cache_dir)] + marker + [str(a) for a in args]
    return " ".join(shlex.quote(a) for a in argv)
