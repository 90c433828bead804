# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who may import whom (docs/architecture.md, "Layers").

Data flows from the roles down to module_utils, never back up. These rules are read from
the sources with ``ast``, so a new import that breaks a layer fails here, naming the file,
the line and the rule.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

from ansible_collections.linuxns.guests.plugins.plugin_utils import entry_program

pytestmark = pytest.mark.unit

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
PKG = "ansible_collections.linuxns.guests.plugins."
MU = PKG + "module_utils"
# The entry program the connection ships to the host bundles exactly these files of
# module_utils, in dependency order (each imports only the ones before it).
ENTRY_BUNDLE = ("errors", "syscalls", "rootfs", "procfs", "registry", "confine", "enter", "entry")
# Standard-library modules that talk to the kernel: only module_utils may use them.
KERNEL_MODULES = {"ctypes", "fcntl", "socket", "select", "subprocess", "signal", "mmap", "termios", "pty"}
# module_utils files that may use ansible-core's own module_utils (argument-spec
# validation of list entries); none of the entry bundle may.
MAY_IMPORT_ANSIBLE = {"list_forms", "model"}


def imports(path: pathlib.Path) -> list:
    """(line, module) for every import in a file, relative imports resolved to MU."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = MU + ("." + base if base else "")
            if base == MU or base.endswith(".module_utils"):
                out.extend((node.lineno, base + "." + a.name) for a in node.names)
            else:
                out.append((node.lineno, base))
    return out


def own_module_utils(path: pathlib.Path) -> set:
    names = set()
    for _line, mod in imports(path):
        if mod.startswith(MU + "."):
            names.add(mod[len(MU) + 1 :].split(".")[0])
    return names


def test_the_entry_program_bundles_exactly_its_files():
    assert tuple(entry_program.MODULES) == ENTRY_BUNDLE


@pytest.mark.parametrize("index,name", list(enumerate(ENTRY_BUNDLE)))
def test_entry_bundle_imports_only_earlier_bundle_files_and_no_ansible(index, name):
    path = PLUGINS / "module_utils" / (name + ".py")
    allowed = set(ENTRY_BUNDLE[:index])
    for line, mod in imports(path):
        where = "%s:%d imports %s" % (path.relative_to(ROOT), line, mod)
        assert not (mod == "ansible" or mod.startswith("ansible.")), where + ": the entry program runs without Ansible"
        if mod.startswith(MU + "."):
            leaf = mod[len(MU) + 1 :].split(".")[0]
            assert leaf in allowed, where + ": the entry bundle may only import %s" % (sorted(allowed) or "nothing of ours")
        else:
            assert not mod.startswith(PKG), where + ": module_utils never imports from other plugin types"


def module_utils_files():
    return sorted(p for p in (PLUGINS / "module_utils").glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", module_utils_files(), ids=lambda p: p.name)
def test_module_utils_never_import_upwards_and_stay_ansible_free(path):
    for line, mod in imports(path):
        where = "%s:%d imports %s" % (path.relative_to(ROOT), line, mod)
        if mod.startswith(PKG):
            assert mod.startswith(MU + "."), where + ": module_utils never imports modules, plugins or plugin_utils"
        if mod == "ansible" or mod.startswith("ansible."):
            assert path.stem in MAY_IMPORT_ANSIBLE, where + ": only %s may use ansible-core" % sorted(MAY_IMPORT_ANSIBLE)
            assert mod.startswith("ansible.module_utils.common"), where + ": only ansible.module_utils.common.* is allowed"


@pytest.mark.parametrize("path", sorted((PLUGINS / "modules").glob("*.py")), ids=lambda p: p.name)
def test_modules_are_thin_and_never_call_the_kernel(path):
    found = imports(path)
    for line, mod in found:
        where = "%s:%d imports %s" % (path.relative_to(ROOT), line, mod)
        assert mod.split(".")[0] not in KERNEL_MODULES, where + ": modules never call the kernel; module_utils does"
        if mod.startswith(PKG):
            assert mod.startswith(MU + "."), where + ": a module uses module_utils only"
    if (PLUGINS / "action" / path.name).exists() and all(mod == "__future__" for _line, mod in found):
        return  # the documentation of an action plugin that composes the modules (guest_deploy): no code of its own
    assert any(mod.startswith(MU + ".") for _line, mod in found), "%s does not call into module_utils" % path.name


@pytest.mark.parametrize("kind", ["connection", "inventory"])
def test_controller_plugins_reach_the_host_only_through_plugin_utils_or_the_helper(kind):
    for path in sorted((PLUGINS / kind).glob("*.py")):
        for line, mod in imports(path):
            where = "%s:%d imports %s" % (path.relative_to(ROOT), line, mod)
            if mod.startswith(PKG):
                assert mod.startswith((MU + ".", PKG + "plugin_utils")), where


# What guest_enter_exec's AnsiballZ payload carries of module_utils: ansible-core's finder
# follows every import of every file (also inside functions and under TYPE_CHECKING) and
# parses each file on the controller, once per ad hoc run (bench/bench_ansiballz.py).
# The field table (model.py), the list forms (list_forms.py) and reading confinement back
# (confine_status.py) are for the other modules.
EXEC_PAYLOAD = ("checks", "code_cache", "common", "confine", "enter", "errors", "execute", "procfs", "ptys", "registry", "sealed",
                "syscalls")
# netns_link reads the kernel's view with its own netlink reader and never enters a guest: no
# entry code (enter, confine, the sealed clone) in its payload, whose build costs every run.
LINK_PAYLOAD = ("checks", "code_cache", "common", "errors", "link_task", "links", "list_forms", "model", "persist", "procfs",
                "registry", "rtnl", "syscalls", "threads")


def payload_of(module: str) -> tuple:
    seen, todo = set(), [PLUGINS / "modules" / (module + ".py")]
    while todo:
        for name in own_module_utils(todo.pop()) - seen:
            seen.add(name)
            todo.append(PLUGINS / "module_utils" / (name + ".py"))
    return tuple(sorted(seen))


def test_guest_enter_exec_ships_only_what_entering_needs():
    assert payload_of("guest_enter_exec") == EXEC_PAYLOAD


def test_netns_link_ships_no_entry_code():
    assert payload_of("netns_link") == LINK_PAYLOAD
