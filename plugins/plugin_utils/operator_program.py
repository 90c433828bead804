# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Builds ``linuxns-guest``, the operator's command the role guest_host installs on a host.

The same bundling as the connection's entry program (:mod:`entry_program`): the
collection's own module_utils, docstrings and comments stripped, embedded in a small
bootstrap that makes them importable under their real names; the program then runs
``operator_cli.main()``.  It is one file, written by the role (no copy of the collection
on the host, no Ansible): every module_utils file except the modules' Ansible glue, each
compiled only when first imported (``list`` needs less than ``start``).  ``list_forms.py``
imports two helpers of ansible-core; the bootstrap gives it small stand-ins (the
argument-spec validator is never used off a module).
"""

from __future__ import annotations

import hashlib
import os

from ansible_collections.linuxns.guests.plugins.plugin_utils.entry_program import PACKAGE, module_utils_dir, strip_source

MAIN = "operator_cli"
DEFAULT_PYTHON = "/usr/bin/python3"

BOOTSTRAP = r'''
import sys, types, importlib, importlib.util
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
        exec(compile(src, module.__file__, "exec"), module.__dict__)
        parent, _dot, leaf = name.rpartition(".")
        setattr(sys.modules[parent], leaf, module)


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
    directory = directory or module_utils_dir()
    out = {}
    for name in bundled_names(directory):
        with open(os.path.join(directory, name + ".py"), encoding="utf-8") as f:
            out[name] = strip_source(f.read(), name + ".py")
    return out


def program_text(python: str = DEFAULT_PYTHON, srcs: dict | None = None) -> str:
    """The whole program: a shebang for ``python`` (run isolated: -I -S), the sources, the bootstrap."""
    srcs = sources() if srcs is None else srcs
    key = hashlib.sha1(repr(sorted(srcs.items())).encode("utf-8")).hexdigest()[:12]
    return "#!%s -IS\n# linuxns-guest, built from linuxns.guests module_utils (%s); do not edit\nSOURCES = %r\n%s" % (
        python, key, srcs, BOOTSTRAP % {"package": PACKAGE, "main": MAIN})
