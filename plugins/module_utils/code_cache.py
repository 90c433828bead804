# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's modules imported from a module's AnsiballZ payload, compiled once.

A payload is a zip without .pyc files: every run compiled the collection's module_utils
again (0.1-0.3 s of a run).  :func:`cache_code` keeps their code in a root-only folder of the
state folder, by source.  Standard library only, and no other module of the collection:
ansible-core ships (and parses, when it builds the payload) every module_utils file a module
imports, so a module that only wants this cache does not ship the sealed clone's entry code
(:mod:`sealed` imports :func:`cache_code` for its clone, which calls it first thing).
"""

from __future__ import annotations

import os
import sys

CLONE_CACHE = "/run/linuxns/clone-cache"  # compiled modules of a zipped payload (module runs and their clones)
PKG = "ansible_collections.linuxns.guests.plugins.module_utils."


def _trusted(st, kind) -> bool:
    return kind(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


class _Cached:
    """Loader of one of the collection's modules from a zip (a module's AnsiballZ payload
    has no .pyc): its code kept in the cache folder (root-only, like the entry program's
    STATE/entry-cache), by source."""

    def __init__(self, importer, cache: str):
        self.importer, self.cache = importer, cache

    def create_module(self, spec):
        return None

    def get_source(self, name):
        return self.importer.get_source(name)

    def exec_module(self, module):
        import marshal
        import stat
        import zlib

        src = self.importer.get_source(module.__name__)
        if src is None:  # no source in the zip: its own code
            exec(self.importer.get_code(module.__name__), module.__dict__)
            return
        src = src.encode()
        stem = module.__name__.rsplit(".", 1)[-1] + "-"
        key = "%s%08x-%d.%s" % (stem, zlib.crc32(src), len(src), sys.implementation.cache_tag)
        code = None
        try:
            if _trusted(os.lstat(self.cache), stat.S_ISDIR):
                with open(os.open(os.path.join(self.cache, key), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as c:
                    if _trusted(os.fstat(c.fileno()), stat.S_ISREG):
                        code = marshal.loads(c.read())
        except (OSError, ValueError, EOFError, TypeError):
            pass
        if code is None:
            code = compile(src, module.__spec__.origin or module.__name__, "exec", dont_inherit=True)
            try:  # best effort: without it, compiling next time too
                os.makedirs(self.cache, mode=0o700, exist_ok=True)
                tmp = os.path.join(self.cache, ".new-%d-%s" % (os.getpid(), key))
                with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), "wb") as c:
                    c.write(marshal.dumps(code))
                os.replace(tmp, os.path.join(self.cache, key))
                for old in os.listdir(self.cache):
                    if old.startswith(stem) and old != key:
                        os.unlink(os.path.join(self.cache, old))
            except OSError:
                pass
        exec(code, module.__dict__)


class _Finder:
    """Finds the collection's plain modules in a zip on the package's path.  Not through
    the path finder: its spec of a module in a zip asks the zipimporter for the file name,
    which compiles the module (and the zipimporter's own load compiles it again)."""

    def __init__(self, cache: str):
        self.cache = cache

    def find_spec(self, name, path=None, target=None):
        tail = name[len(PKG):]
        if not name.startswith(PKG) or "." in tail:
            return None
        import importlib.machinery
        import zipimport

        for entry in path or ():
            importer = sys.path_importer_cache.get(entry)
            if importer is None:
                try:
                    importer = sys.path_importer_cache[entry] = zipimport.zipimporter(entry)
                except (zipimport.ZipImportError, OSError, TypeError, ValueError):
                    continue
            if not isinstance(importer, zipimport.zipimporter):
                continue
            try:
                if importer.is_package(name):
                    return None  # (none in module_utils) the usual way
            except zipimport.ZipImportError:
                continue
            spec = importlib.machinery.ModuleSpec(name, _Cached(importer, self.cache), origin="%s/%s.py" % (entry, tail))
            spec.has_location = True
            return spec
        return None


def cache_code(cache: str = CLONE_CACHE) -> None:
    """From now on, the collection's modules imported from a zip (a module's AnsiballZ
    payload, which has no .pyc) are compiled once and kept in ``cache`` (when its parent
    folder exists: the default state folder), trusted only when it and the file belong
    to our uid and nobody else may write them.  A module run calls it before it imports
    the rest of the collection; the sealed clone (``sealed.SealedClone``) does it first thing."""
    if cache and os.path.isdir(os.path.dirname(cache)) and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(cache))
