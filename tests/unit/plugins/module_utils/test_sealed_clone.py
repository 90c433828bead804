"""The sealed clone of the interpreter that enters guests (CVE-2019-5736 class), for real."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import enter, execute, guests, sealed
from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import KernelError
from ansible_collections.linuxns.guests.plugins.module_utils.execute import Request


def _nested():
    """Runs in the clone: a clone asked for a clone runs the call itself."""
    return os.getpid(), sealed.in_sealed_clone(os.getpid)


def test_in_sealed_clone_runs_from_a_sealed_copy():
    assert not sc.running_sealed()  # pytest: the host's interpreter file
    link = sealed.in_sealed_clone(os.readlink, "/proc/self/exe")
    assert link.startswith("/memfd:linuxns:python"), link
    assert sealed.in_sealed_clone(sc.exe_seals) & sc.SEALS == sc.SEALS
    outer, inner = sealed.in_sealed_clone(_nested)
    assert outer == inner != os.getpid()


def test_in_sealed_clone_keeps_the_error_class():
    with pytest.raises(KernelError, match=r"sealed_copy.*nonexistent"):
        sealed.in_sealed_clone(sc.sealed_copy, "/nonexistent/linuxns-x", "x")


def _entry_like(*env):
    """A program that calls reexec_sealed first, as the entry program does."""
    code = ("import os, sys; sys.path[:0] = %r; from ansible_collections.linuxns.guests.plugins.module_utils import enter; "
            "enter.reexec_sealed(); print(os.readlink('/proc/self/exe'), sys.argv[1:], 'LINUXNS_SEALED_REEXEC' in os.environ)"
            % (sys.path,))
    return subprocess.run([sys.executable, "-c", code, "a b", "c"], env=dict(os.environ, **dict(env)), capture_output=True,
                          text=True, check=False)


def test_reexec_sealed_runs_the_same_command_from_the_clone():
    out = _entry_like()
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("/memfd:linuxns:python"), out.stdout
    assert out.stdout.rstrip().endswith("['a b', 'c'] False"), out.stdout  # same arguments, marker gone


def test_reexec_sealed_refuses_a_copy_that_is_not_sealed():
    out = _entry_like(("LINUXNS_SEALED_REEXEC", "1"))  # as if the exec had happened, from the host's file
    assert out.returncode != 0 and "not sealed" in out.stderr, (out.stdout, out.stderr)


def test_a_proc_self_exe_script_runs_the_clone_not_the_hosts_python(unit_registry, tmp_path):
    """The attack of issue 13 through the exec engine: a program that starts
    ``#!/proc/self/exe`` re-runs the process that exec'd it.  A guest without a root (the
    host's files) so that the re-run interpreter finds its library."""
    guests.ensure_guests(unit_registry, [{"name": "gx", "namespaces": ["uts"]}])
    script = tmp_path / "hostile"
    script.write_text("#!/proc/self/exe\nimport os\nprint(os.readlink('/proc/self/exe'))\n")
    script.chmod(0o755)
    r = execute.run(unit_registry.find("gx"), Request(argv=[str(script)]))
    assert r["rc"] == 0, r
    assert r["stdout"].startswith("/memfd:linuxns:python"), r  # before: /usr/bin/python3.11


def test_an_init_script_of_proc_self_exe_runs_the_clone(unit_registry, tmp_path):
    """namespace_create's ``init:``: the guest's PID 1 execs it; a script that starts
    ``#!/proc/self/exe`` re-runs PID 1's own program, which must be the clone."""
    script = tmp_path / "init"
    script.write_text("#!/proc/self/exe\nimport signal\nsignal.pause()\n")
    script.chmod(0o755)
    guests.ensure_guests(unit_registry, [{"name": "gi", "namespaces": ["uts", "pid"], "init": [str(script)], "stop_signal": "KILL"}])
    meta = unit_registry.find("gi")
    link = os.readlink("/proc/%d/exe" % meta.init_pid)
    assert link.startswith("/memfd:linuxns:python"), link  # before: /usr/bin/python3.11


ZIP_RUN = r"""
import sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.linuxns.guests.plugins.module_utils import execute, sealed
print(sealed.SealedClone((execute.__name__,), cache=sys.argv[2]).call(execute.__name__.__len__) > 0)
print(sealed.SealedClone((execute.__name__,), cache=sys.argv[2]).call(execute.Request, ["true"]).argv)
"""


def _payload(tmp_path):
    """A zip of the collection's module_utils, laid out as in a module's AnsiballZ payload (no .pyc)."""
    import zipfile

    here = os.path.dirname(enter.__file__)
    payload = tmp_path / "payload.zip"
    with zipfile.ZipFile(str(payload), "w") as z:
        parts = enter.__name__.split(".")[:-1]
        for i in range(1, len(parts) + 1):
            z.writestr("/".join(parts[:i]) + "/__init__.py", "")
        for name in os.listdir(here):
            if name.endswith(".py") and name != "__init__.py":
                z.write(os.path.join(here, name), "/".join(parts) + "/" + name)
    return payload


def test_a_zipped_payload_is_compiled_once_into_the_cache(tmp_path):
    """A module's payload is a zip without .pyc: the clone keeps the compiled modules."""
    payload = _payload(tmp_path)
    cache = tmp_path / "state" / "clone-cache"
    (tmp_path / "state").mkdir(mode=0o700)
    for _round in range(2):
        out = subprocess.run([sys.executable, "-I", "-S", "-c", ZIP_RUN, str(payload), str(cache)], capture_output=True, text=True,
                             check=False)
        assert out.returncode == 0 and out.stdout.split("\n")[:2] == ["True", "['true']"], (out.stdout, out.stderr)
        kept = sorted(p.name.split("-")[0] for p in cache.iterdir())
        assert {"confine", "enter", "execute", "checks", "registry", "syscalls"} <= set(kept), kept
        assert len(kept) == len(set(kept))  # one version each
    cache.chmod(0o777)  # not ours alone any more: ignored, compiled again
    out = subprocess.run([sys.executable, "-I", "-S", "-c", ZIP_RUN, str(payload), str(cache)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


CACHED_IMPORT = r"""
import builtins, sys
compiled = []
real = builtins.compile
def counting(source, filename, *a, **kw):
    compiled.append(str(filename).rsplit("/", 1)[-1])
    return real(source, filename, *a, **kw)
builtins.compile = counting
sys.path.insert(0, sys.argv[1])
from ansible_collections.linuxns.guests.plugins.module_utils import sealed
sealed.cache_code(sys.argv[2])
del compiled[:]  # the package and sealed itself: before the cache
from ansible_collections.linuxns.guests.plugins.module_utils import execute
print(" ".join(sorted(compiled)))
print(execute.__file__)
"""


def test_a_module_run_imports_the_collection_compiled_once(tmp_path):
    """cache_code (a module run, then its clone): from a zip, each of the collection's
    modules is compiled the first time only, and once (the path finder's spec of a
    module in a zip compiles it just to name its file)."""
    payload = _payload(tmp_path)
    cache = tmp_path / "state" / "clone-cache"
    (tmp_path / "state").mkdir(mode=0o700)
    runs = []
    for _round in range(2):
        out = subprocess.run([sys.executable, "-I", "-S", "-c", CACHED_IMPORT, str(payload), str(cache)], capture_output=True,
                             text=True, check=False)
        assert out.returncode == 0, out.stderr
        runs.append(out.stdout.split("\n"))
    first = runs[0][0].split()
    assert {"confine.py", "enter.py", "execute.py", "registry.py", "syscalls.py"} <= set(first), first
    assert len(first) == len(set(first)), first  # once each
    assert runs[1][0] == "", runs[1]  # then: none
    assert runs[1][1] == "%s/%s.py" % (payload, execute.__name__.replace(".", "/")), runs[1]  # tracebacks name the file


def test_shipped_sources_looks_the_collection_up_once_per_sys_path(monkeypatch, tmp_path):
    """On a path that has the collection (an AnsiballZ run) nothing is shipped, and the
    path finder is asked once; a sys.path without it (Mitogen's in-memory import) ships
    the loaded modules' sources, asked again because the path changed."""
    monkeypatch.setattr(sealed, "_ON_PATH", {})
    assert sealed._shipped_sources() == {}
    assert {tuple(sys.path): True} == sealed._ON_PATH
    assert sealed._shipped_sources() == {}
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    shipped = sealed._shipped_sources()
    assert {(str(tmp_path),): False} == sealed._ON_PATH
    is_package, source = shipped[sealed.__name__]
    assert not is_package and "def _shipped_sources" in source
