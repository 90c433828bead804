# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Builds the entry program the ``guest`` connection runs with the host's Python.

Like Ansiballz, the program is assembled on the controller from the
collection's own module_utils sources (errors, syscalls, registry, enter and
entry - the one enter path ``guest_enter_exec`` uses too): docstrings and
comments are stripped, the sources are embedded in a small bootstrap that
registers them as modules under their real names, and the whole is compressed
and base64-encoded into one ``python -c`` argument.  Nothing is installed or
cached on the host; every command carries its program (about 12 kB).
"""

from __future__ import annotations

import ast
import base64
import os
import shlex
import zlib

PACKAGE = "ansible_collections.linuxns.guests.plugins.module_utils"
# Dependency order: each module only imports the ones before it.
MODULES = ("errors", "syscalls", "registry", "enter", "entry")

BOOTSTRAP = r'''
import sys, types
P = %(package)r
parts = P.split(".")
for i in range(1, len(parts) + 1):
    n = ".".join(parts[:i])
    m = sys.modules.get(n) or types.ModuleType(n)
    m.__path__ = []
    sys.modules[n] = m
    if i > 1:
        setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], m)
for name, src in SOURCES:
    full = P + "." + name
    m = types.ModuleType(full)
    m.__file__ = "<linuxns-entry>/%%s.py" %% name
    sys.modules[full] = m
    exec(compile(src, m.__file__, "exec"), m.__dict__)
    setattr(sys.modules[P], name, m)
sys.exit(sys.modules[P + ".entry"].main())
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


def read_sources(directory: str | None = None) -> list:
    """[(name, stripped source)] of the entry program's modules, in dependency order."""
    directory = directory or module_utils_dir()
    out = []
    for name in MODULES:
        path = os.path.join(directory, name + ".py")
        with open(path, encoding="utf-8") as f:
            out.append((name, strip_source(f.read(), path)))
    return out


def program_text(sources: list | None = None) -> str:
    """The entry program as Python source."""
    sources = read_sources() if sources is None else sources
    return "SOURCES = %r\n%s" % (list(sources), BOOTSTRAP % {"package": PACKAGE})


_CACHE: dict = {}


def payload(sources: list | None = None) -> str:
    """The ``-c`` argument: a one-liner that decompresses and runs the program."""
    if sources is None and "payload" in _CACHE:
        return _CACHE["payload"]
    blob = base64.b64encode(zlib.compress(program_text(sources).encode("utf-8"), 9)).decode("ascii")
    text = "import zlib,base64;exec(zlib.decompress(base64.b64decode('%s')))" % blob
    if sources is None:
        _CACHE["payload"] = text
    return text


def command(python: str, args, sources: list | None = None) -> str:
    """The shell command line that runs the entry program with ``args`` on the host."""
    argv = [python, "-I", "-S", "-c", payload(sources)] + [str(a) for a in args]
    return " ".join(shlex.quote(a) for a in argv)
