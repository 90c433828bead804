# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Builds ``linuxns-guest``, the operator's command the role guest_host installs on a host.

The same bundling as the connection's entry program (:mod:`entry_program`): the
collection's own module_utils (as the files have them: see :func:`sources`), embedded in a
small bootstrap that makes them importable under their real names; the program then runs
``operator_cli.main()``.  It is one file, written by the role (no copy of the collection
on the host, no Ansible): every module_utils file except the modules' Ansible glue, each
compiled only when first imported (``list`` needs less than ``start``).  Compiling them is
most of a run's time (0.5-1 s of ``list``; more under load), so with ``cache_dir`` the
program keeps their code objects (marshal) in ``CACHE_DIR/KEY-TAG/NAME.code`` - KEY the
build's hash of the sources, TAG the Python's cache tag - and loads them from there on
later runs.  It trusts that cache only as root, only when the folder and the files are
root's and writable by nobody else (every folder above: root's, and not writable by
others unless sticky, as /tmp); else it compiles as without one.  ``list_forms.py``
imports two helpers of ansible-core; the bootstrap gives it small stand-ins (the
argument-spec validator is never used off a module).
"""

from __future__ import annotations

import hashlib
import os

from ansible_collections.linuxns.guests.plugins.plugin_utils.entry_program import PACKAGE, module_utils_dir

MAIN = "operator_cli"
DEFAULT_PYTHON = "/usr/bin/python3"

BOOTSTRAP = r'''
import sys, types, importlib, importlib.util, marshal, os, stat
P = %(package)r
ANSIBLE_SHIMS = {
    "ansible.module_utils.common.validation": """
BOOLEANS_TRUE = frozenset(('y', 'yes', 'on', '1', 'true', 't', 1, 1.0, True))
BOOLEANS_FALSE = frozenset(('n', 'no', 'off', '0', 'false', 'f', 0, 0.0, False))
def check_type_bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, int, float)):
        v = value.lower().strip() if isinstance(value, str) else value
        if v in BOOLEANS_TRUE:
            return True
        if v in BOOLEANS_FALSE:
            return False
    raise TypeError('%%s cannot be converted to a bool' %% type(value))
""",
    "ansible.module_utils.common.arg_spec": """
class ArgumentSpecValidator:
    def __init__(self, *a, **k):
        raise RuntimeError('argument specs are validated by Ansible modules only')
""",
}


def _package(name):
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        n = ".".join(parts[:i])
        if n not in sys.modules:
            m = types.ModuleType(n)
            m.__path__ = []
            sys.modules[n] = m
            if i > 1:
                setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], m)


class _Bundled:
    # The bundled sources, compiled when first imported.
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name in ANSIBLE_SHIMS or (name.startswith(P + ".") and name[len(P) + 1:] in SOURCES):
            return importlib.util.spec_from_loader(name, _Bundled)
        return None

    @staticmethod
    def create_module(spec):
        return None

    @staticmethod
    def exec_module(module):
        name = module.__name__
        src = ANSIBLE_SHIMS.get(name) or SOURCES[name[len(P) + 1:]]
        module.__file__ = "<linuxns-guest>/%%s.py" %% name.rsplit(".", 1)[-1]
        exec(_code(name, src, module.__file__), module.__dict__)
        parent, _dot, leaf = name.rpartition(".")
        setattr(sys.modules[parent], leaf, module)


_CACHE = []  # [the cache folder or None], found on first use


def _trusted(st, leaf):
    # root's, writable by nobody else (a folder above the cache: or sticky, as /tmp)
    return st.st_uid == 0 and (not st.st_mode & 0o022 or (not leaf and st.st_mode & 0o1000))


def _cache_dir():
    if not _CACHE:
        _CACHE.append(None)
        if CACHE and os.geteuid() == 0:
            tag = "-" + (sys.implementation.cache_tag or "none")  # one cache per build and Python
            d = os.path.join(CACHE, KEY + tag)
            try:
                fresh = not os.path.isdir(d)
                os.makedirs(d, 0o700, exist_ok=True)
                p, ok = d, True
                while ok:
                    st = os.lstat(p)
                    ok = stat.S_ISDIR(st.st_mode) and _trusted(st, p in (d, CACHE))
                    if p == "/":
                        break
                    p = os.path.dirname(p)
                if ok:
                    _CACHE[0] = d
                    if fresh:  # a new build: the folders of older ones go
                        for e in os.scandir(CACHE):
                            if e.path != d and e.name.endswith(tag) and e.is_dir(follow_symlinks=False):
                                for f in os.scandir(e.path):
                                    os.unlink(f.path)
                                os.rmdir(e.path)
            except OSError:
                pass
    return _CACHE[0]


def _code(name, src, filename):
    d = _cache_dir()
    path = d and os.path.join(d, name.rsplit(".", 1)[-1] + ".code")
    if path:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode) and _trusted(st, True):
                    with os.fdopen(os.dup(fd), "rb") as f:
                        return marshal.loads(f.read())
            finally:
                os.close(fd)
        except (OSError, EOFError, ValueError, TypeError):
            pass
    code = compile(src, filename, "exec")
    if path:
        tmp = "%%s.%%d.tmp" %% (path, os.getpid())
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(marshal.dumps(code))
            os.replace(tmp, path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return code


_package(P)
_package("ansible.module_utils.common")
sys.meta_path.insert(0, _Bundled)
sys.exit(importlib.import_module(P + ".%(main)s").main())
'''


def bundled_names(directory: str | None = None) -> list:
    """The module_utils bundled: every one but the modules' Ansible glue."""
    directory = directory or module_utils_dir()
    return sorted(f[:-3] for f in os.listdir(directory) if f.endswith(".py") and not f.startswith("_"))


def sources(directory: str | None = None) -> dict:
    """{name: source} of the bundled module_utils, as the files have them.

    Not stripped of docstrings and comments, as the connection's entry program is (there the
    program travels in a command line on every command, whose length counts): the role
    guest_host builds this text in a condition on every host of every run, and the ast round
    trips took ~0.25 s of the controller's CPU there, against ~3 ms more per command on the host
    to read the longer file (its code comes from the cache folder)."""
    directory = directory or module_utils_dir()
    out = {}
    for name in bundled_names(directory):
        with open(os.path.join(directory, name + ".py"), encoding="utf-8") as f:
            out[name] = f.read()
    return out


def program_text(python: str = DEFAULT_PYTHON, srcs: dict | None = None, cache_dir: str | None = None) -> str:
    """The whole program: a shebang for ``python`` (run isolated: -I -S), the sources, the bootstrap;
    ``cache_dir``: where it keeps its compiled module_utils (None: it compiles them on every run)."""
    srcs = sources() if srcs is None else srcs
    key = hashlib.sha1(repr(sorted(srcs.items())).encode("utf-8")).hexdigest()[:12]
    return "#!%s -IS\n# linuxns-guest, built from linuxns.guests module_utils (%s); do not edit\nSOURCES = %r\nKEY = %r\nCACHE = %r\n%s" % (
        python, key, srcs, key, os.path.normpath(cache_dir) if cache_dir else "", BOOTSTRAP % {"package": PACKAGE, "main": MAIN})
