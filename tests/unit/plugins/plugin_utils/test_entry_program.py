"""The entry program builder, and the program it builds run for real against unit-test guests.

The program is run the way the connection runs it (``python3 -I -S -c PAYLOAD ...``
through a shell), in this test's private mount namespace where the guests' pins live.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import time

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import enter, entry, guests, procfs
from ansible_collections.linuxns.guests.plugins.plugin_utils import entry_program as ep

PYTHON = "/usr/bin/python3"


def run(args, stdin=b"", sources=None):
    cmd = ep.command(PYTHON, args, sources)
    return subprocess.run(["/bin/sh", "-c", cmd], input=stdin, capture_output=True, timeout=60, check=False)


def entry_error(proc) -> dict:
    assert proc.returncode == entry.ERROR_RC, proc
    line = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith(entry.ERROR_MARK)][-1]
    return json.loads(line[len(entry.ERROR_MARK):])


# ------------------------------------------------------------------------------------------
# building
# ------------------------------------------------------------------------------------------
def test_strip_source_drops_docstrings_and_comments_only():
    src = '"""module doc"""\nimport os  # comment\n\n\ndef f(x):\n    """doc"""\n    return x + 1\n\n\nclass C:\n    """only a doc"""\n'
    out = ep.strip_source(src)
    assert "doc" not in out and "comment" not in out
    ns = {}
    exec(compile(out, "<t>", "exec"), ns)
    assert ns["f"](1) == 2 and isinstance(ns["C"], type)


def test_program_embeds_the_module_utils_in_dependency_order():
    sources = ep.read_sources()
    assert [source[0] for source in sources] == list(ep.MODULES)
    imported = {}
    for name, src in sources:
        tree = ast.parse(src)
        imported[name] = {a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(ep.PACKAGE)
                          for a in node.names} | {node.module.rsplit(".", 1)[-1] for node in ast.walk(tree)
                                                  if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(ep.PACKAGE + ".")}
    order = list(ep.MODULES)
    for name, deps in imported.items():
        for dep in deps & set(order):
            assert order.index(dep) < order.index(name), (name, dep)
    text = ep.program_text(sources)
    assert "spawn_in_guest" in text  # the one enter path, not a copy of it
    compile(text, "<entry>", "exec")


def test_payload_is_small_and_cached():
    first = ep.payload()
    assert ep.payload() is first
    assert len(first) < 48 * 1024  # confine (its syscall tables) and rootfs brought it to ~41 kB; one argv string may have 128 kB
    cmd = ep.command("/usr/bin/python3", ["status", "/run/x y"])
    assert cmd.startswith("/usr/bin/python3 -I -S -c ") and cmd.endswith("status '/run/x y'")


def test_a_change_in_module_utils_changes_the_program(tmp_path):
    for name in ep.MODULES:
        src = os.path.join(ep.module_utils_dir(), name + ".py")
        with open(src, encoding="utf-8") as f:
            (tmp_path / (name + ".py")).write_text(f.read().replace("PROTOCOL = 1", "PROTOCOL = 7"), encoding="utf-8")
    proc = run(["status", str(tmp_path / "none")], sources=ep.read_sources(str(tmp_path)))
    assert json.loads(proc.stdout)["protocol"] == 7


# ------------------------------------------------------------------------------------------
# running it
# ------------------------------------------------------------------------------------------
@pytest.fixture
def guest(unit_registry, busybox_root):
    guests.ensure_guests(unit_registry, [{"name": "eg1", "context_id": 4242, "root": busybox_root, "hostname": "eg1.test"}])
    return unit_registry.find("eg1")


def test_exec_runs_in_the_guest_with_its_exit_status(unit_registry, guest):
    state = unit_registry.state_dir
    proc = run(["exec", state, "eg1", "hostname; echo $container; cat; exit 3"], stdin=b"from stdin\n")
    assert proc.returncode == 3, proc
    assert proc.stdout.decode().splitlines() == ["eg1.test", "linuxns", "from stdin"]
    # by context id, pid namespace of its own
    proc = run(["exec", state, "4242", "echo $$; readlink /proc/self/ns/pid"])
    pid, ns = proc.stdout.decode().split()
    assert ns == os.readlink("/proc/%d/ns/pid" % guest.init_pid) and ns != os.readlink("/proc/self/ns/pid")
    assert int(pid) > 1


def test_exec_without_shell_in_the_guest(unit_registry, guest):
    os.unlink(os.path.join(guest.root, "bin", "sh"))
    proc = run(["exec", unit_registry.state_dir, "eg1", "true"])
    assert proc.returncode == enter.RC_NOT_FOUND and b"/bin/sh" in proc.stderr and b"eg1" in proc.stderr


def test_put_fetch_stage_round_trip_with_odd_names(unit_registry, guest):
    state = unit_registry.state_dir
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = "/tmp/o d'd \"q\" ü.bin"
    assert run(["put", state, "eg1", path, str(len(data))], stdin=data).returncode == 0
    with open(os.path.join(guest.root, path.lstrip("/")), "rb") as f:
        assert f.read() == data
    back = run(["fetch", state, "eg1", path])
    assert back.returncode == 0 and back.stdout == data
    staged = run(["stage", state, "eg1", path])
    tmp = staged.stdout.decode().strip()
    assert staged.returncode == 0 and tmp.startswith(os.path.join(state, "transfer", "fetch-"))
    with open(tmp, "rb") as f:
        assert f.read() == data
    assert oct(os.stat(tmp).st_mode & 0o777) == "0o600"
    assert run(["unstage", state, tmp]).returncode == 0 and not os.path.exists(tmp)
    # empty file: SIZE 0 reads nothing
    assert run(["put", state, "eg1", "/tmp/empty", "0"]).returncode == 0
    assert os.path.getsize(os.path.join(guest.root, "tmp", "empty")) == 0
    # mkstage + place (the paramiko way)
    made = run(["mkstage", state]).stdout.decode().strip()
    with open(made, "wb") as f:
        f.write(b"placed")
    assert run(["place", state, "eg1", made, "/tmp/placed"]).returncode == 0
    assert not os.path.exists(made)
    with open(os.path.join(guest.root, "tmp", "placed"), "rb") as f:
        assert f.read() == b"placed"


def test_paths_resolve_inside_the_guest(unit_registry, guest, tmp_path):
    secret = tmp_path / "host-secret"
    secret.write_text("host only")
    os.symlink(str(secret), os.path.join(guest.root, "tmp", "link"))
    err = entry_error(run(["fetch", unit_registry.state_dir, "eg1", "/tmp/link"]))
    assert err["class"] == "PathError" and "cannot read /tmp/link inside guest 'eg1'" in err["error"]


def test_short_upload_and_bad_paths_fail_clearly(unit_registry, guest):
    state = unit_registry.state_dir
    err = entry_error(run(["put", state, "eg1", "/tmp/short", "100"], stdin=b"only ten b"))
    assert "got 10 bytes of 100" in err["error"]
    err = entry_error(run(["put", state, "eg1", "/no/such/dir/x", "1"], stdin=b"x"))
    assert err["class"] == "PathError" and "cannot write /no/such/dir/x inside guest 'eg1'" in err["error"]
    err = entry_error(run(["unstage", state, "/etc/passwd"]))
    assert "not a file that stage or mkstage made" in err["error"]
    err = entry_error(run(["bogus", state]))
    assert err["class"] == "InvalidInput" and "usage" in err["error"]


def test_missing_and_stopped_guests(unit_registry, guest):
    state = unit_registry.state_dir
    err = entry_error(run(["exec", state, "nosuch", "true"]))
    assert err["class"] == "GuestNotFound" and "'nosuch' does not exist" in err["error"]
    err = entry_error(run(["exec", state, "999", "true"]))
    assert err["class"] == "GuestNotFound" and "context id 999" in err["error"]
    os.kill(guest.init_pid, signal.SIGKILL)
    for _attempt in range(100):
        if not procfs.process_alive(guest.init_pid, guest.init_start):
            break
        time.sleep(0.05)
    err = entry_error(run(["exec", state, "eg1", "true"]))
    assert err["class"] == "GuestStale" and "guest 'eg1' is stopped" in err["error"] and "init" in err["error"]
    status = json.loads(run(["status", state, "eg1", "nosuch", "4242"]).stdout)
    assert status["guests"]["eg1"]["status"] == "stopped"
    assert status["refs"] == {"eg1": "eg1", "nosuch": None, "4242": "eg1"}


def test_payload_cache_file_is_shared_by_workers(tmp_path, monkeypatch):
    ep._CACHE.clear()
    first = ep.payload(cache_dir=str(tmp_path))
    files = os.listdir(str(tmp_path))
    assert len(files) == 1 and files[0].startswith("linuxns-entry-")
    # another worker (empty memory cache) reads the file instead of building
    ep._CACHE.clear()
    monkeypatch.setattr(ep, "strip_source", lambda *a: pytest.fail("built again instead of read from the cache file"))
    assert ep.payload(cache_dir=str(tmp_path)) == first


# ------------------------------------------------------------------------------------------
# the host's cache of the compiled program (STATE/entry-cache)
# ------------------------------------------------------------------------------------------
def cache_files(state) -> list:
    where = state / "entry-cache"
    return sorted(os.listdir(str(where))) if where.is_dir() else []


def protocol(state, sources=None) -> int:
    proc = run(["status", str(state)], sources=sources)
    assert proc.returncode == 0, proc
    return json.loads(proc.stdout)["protocol"]


def compiled_with(tmp_path, protocol_value: int):
    """marshal of the entry's code objects, with PROTOCOL changed: shows which code ran."""
    import marshal
    sources = [(name, src.replace("PROTOCOL = 1", "PROTOCOL = %d" % protocol_value)) for name, src in ep.read_sources()]
    return marshal.dumps([(name, compile(src, "<linuxns-entry>/%s.py" % name, "exec")) for name, src in sources])


def test_host_keeps_the_compiled_program_and_runs_it(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    assert protocol(state) == entry.PROTOCOL
    files = cache_files(state)
    assert len(files) == 1 and files[0].endswith(".cpython-%d%d" % __import__("sys").version_info[:2])
    where = state / "entry-cache"
    assert where.stat().st_mode & 0o777 == 0o700 and (where / files[0]).stat().st_mode & 0o777 == 0o600
    # the next run loads the cached code instead of compiling: plant code that says so
    (where / files[0]).write_bytes(compiled_with(tmp_path, 9))
    assert protocol(state) == 9


def test_host_cache_is_trusted_only_when_private(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    protocol(state)
    where = state / "entry-cache"
    cached = where / cache_files(state)[0]
    cached.write_bytes(compiled_with(tmp_path, 9))
    os.chmod(str(cached), 0o620)                    # a file others may write: compiled afresh, not loaded
    assert protocol(state) == entry.PROTOCOL
    os.chmod(str(cached), 0o600)
    os.chmod(str(where), 0o770)                     # a folder others may write
    assert protocol(state) == entry.PROTOCOL
    os.chmod(str(where), 0o700)
    assert protocol(state) == 9                     # private again: used
    # a symlinked cache folder is not followed
    other = tmp_path / "elsewhere"
    where.rename(other)
    os.symlink(str(other), str(where))
    assert protocol(state) == entry.PROTOCOL


def test_host_cache_survives_garbage_and_drops_old_versions(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    protocol(state)
    where = state / "entry-cache"
    name = cache_files(state)[0]
    (where / name).write_bytes(b"\x00garbage")      # a torn or foreign file: compiled and rewritten
    assert protocol(state) == entry.PROTOCOL
    assert (where / name).read_bytes() != b"\x00garbage"
    # another collection version (other sources, so another key) replaces the entry
    changed = [(n, src + "\n_OTHER_VERSION = 1\n") for n, src in ep.read_sources()]
    assert protocol(state, sources=changed) == entry.PROTOCOL
    files = cache_files(state)
    assert len(files) == 1 and files[0] != name


def test_no_state_folder_no_cache(tmp_path):
    # The entry program never creates the state folder itself.
    state = tmp_path / "missing"
    assert protocol(state) == entry.PROTOCOL
    assert not state.exists()
