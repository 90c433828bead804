"""The exec engine, run for real in guests made with busybox roots (as root, no Ansible)."""

from __future__ import annotations

import hashlib
import os
import signal
import time

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import enter, execute, guests, procfs
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestNotFound, GuestStale, InvalidInput
from ansible_collections.linuxns.guests.plugins.module_utils.execute import Request


@pytest.fixture
def guest(unit_registry, busybox_root):
    guests.ensure_guests(unit_registry, [{"name": "g1", "root": busybox_root, "hostname": "g1.test"}])
    return unit_registry.find("g1")


def run(meta, **kw):
    check_only = kw.pop("check_only", False)
    return execute.run(meta, Request(**kw), check_only=check_only)


def guest_pids(meta) -> set:
    """Host pids of every process in the guest's pid namespace, its init included."""
    ino = os.stat(meta.pins["pid"].path).st_ino
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat("/proc/%s/ns/pid" % name).st_ino == ino:
                    found.add(int(name))
            except OSError:
                pass
    return found


def test_runs_inside_every_namespace(guest):
    r = run(guest, argv=["sh", "-c", "echo $$; hostname; cat /proc/1/comm; ls /"])
    assert r["rc"] == 0 and r["changed"] and not r.get("failed")
    lines = r["stdout"].splitlines()
    assert lines[1] == "g1.test"
    # pid view: the shell has a small pid of the guest, and PID 1 is the guest's init, not the host's
    assert 1 < int(lines[0]) < 100
    with open("/proc/%d/comm" % guest.init_pid) as f:
        assert lines[2] == f.read().strip()
    assert "bin" in lines and "etc" in lines
    assert r["guest"] == "g1" and r["context_id"] == guest.context_id and r["cmd"][0] == "sh"
    assert r["start"] and r["end"] and r["delta"].startswith("0:00:")


def test_no_fd_of_the_caller_reaches_the_command(guest):
    held = os.open("/dev/null", os.O_RDONLY)  # not CLOEXEC: a leak would show it
    try:
        r = run(guest, argv=["ls", "/proc/self/fd"])
    finally:
        os.close(held)
    # 0, 1, 2 and the directory ls itself opens to list the folder
    assert sorted(int(x) for x in r["stdout"].split()) == [0, 1, 2, 3]
    # the fds a child of the command inherits, listed by another process once it runs sleep (a
    # background child of busybox sh closes its fd 0 and opens /dev/null there before its exec:
    # listed in between, fd 0 was missing now and then)
    script = ("sleep 5 & p=$!; i=0; while [ $i -lt 10000 ]; do case \"$(cat /proc/$p/cmdline)\" in sleep*) break;; esac; "
              "i=$((i+1)); done; ls /proc/$p/fd; kill $p")
    r = run(guest, argv=["sh", "-c", script])
    assert sorted(int(x) for x in r["stdout"].split()) == [0, 1, 2]


def test_program_is_looked_up_inside_the_guest(guest):
    # python3 exists on the host but not in the busybox root
    assert os.path.exists("/usr/bin/python3")
    r = run(guest, argv=["python3", "-c", "print(1)"])
    assert r["rc"] == enter.RC_NOT_FOUND and r["failed"]
    assert "was not found inside guest 'g1'" in r["msg"] and "PATH=" in r["msg"]
    r = run(guest, argv=["/usr/bin/python3"])
    assert r["rc"] == enter.RC_NOT_FOUND and "looked up at that path inside the guest" in r["msg"]
    r = run(guest, argv=["/etc/passwd"])
    assert r["rc"] == enter.RC_CANNOT_EXEC and "cannot be run inside guest 'g1'" in r["msg"]


def test_cmd_is_split_without_a_shell_and_shell_runs_the_guests_sh(guest):
    r = run(guest, cmd="echo 'a  b' $HOME >x")
    assert r["stdout"] == "a  b $HOME >x"
    r = run(guest, cmd="echo $HOME | cat; echo done", shell=True)
    assert r["stdout"].splitlines() == ["/root", "done"]
    assert r["cmd"] == ["/bin/sh", "-c", "echo $HOME | cat; echo done"]


def test_environment_is_clean_plus_env(guest, monkeypatch):
    monkeypatch.setenv("LINUXNS_SECRET_OF_THE_HOST", "x")
    r = run(guest, argv=["env"], env={"FOO": "bar baz", "PATH": "/bin"})
    env = dict(line.split("=", 1) for line in r["stdout"].splitlines())
    assert env["FOO"] == "bar baz" and env["PATH"] == "/bin" and env["HOME"] == "/root"
    assert "LINUXNS_SECRET_OF_THE_HOST" not in env


def test_user_by_name_and_uid_from_the_guests_passwd(guest, busybox_root):
    with open(os.path.join(busybox_root, "etc", "group"), "a") as f:
        f.write("staff:x:50:web,other\n")
    r = run(guest, argv=["sh", "-c", "id; echo $HOME $USER; pwd"], user="web", chdir="/tmp")
    lines = r["stdout"].splitlines()
    assert lines[0] == "uid=1000(web) gid=1000(web) groups=50(staff),1000(web)"
    assert lines[1:] == ["/tmp web", "/tmp"]
    r = run(guest, argv=["id", "-u"], user="65534")
    assert r["stdout"] == "65534"
    r = run(guest, argv=["sh", "-c", "id -u; id -g; echo $HOME"], user="4242")
    assert r["stdout"].splitlines() == ["4242", "4242", "/"]
    # a user only the host knows
    with pytest.raises(InvalidInput, match="user 'daemon' is not known inside guest 'g1'"):
        run(guest, argv=["id"], user="daemon")


def test_resolve_user_parses_files(tmp_path):
    passwd = tmp_path / "passwd"
    group = tmp_path / "group"
    passwd.write_text("# comment\nroot:x:0:0:root:/root:/bin/sh\nbroken\napp:x:10:20::/srv/app:\n")
    group.write_text("wheel:x:10:root,app\napp:x:20:\nother:x:30:root\n")
    creds = execute.resolve_user("app", "g", str(passwd), str(group))
    assert (creds["uid"], creds["gid"], creds["groups"]) == (10, 20, [10, 20])
    assert creds["env"] == {"HOME": "/srv/app", "USER": "app", "LOGNAME": "app", "SHELL": "/bin/sh"}
    assert execute.resolve_user("10", "g", str(passwd), str(group))["env"]["USER"] == "app"
    assert execute.resolve_user("0", "g", str(passwd), str(group))["groups"] == [0, 10, 30]
    with pytest.raises(InvalidInput, match="not known inside guest 'g'"):
        execute.resolve_user("nobody", "g", str(passwd), str(group))


def test_chdir_missing_inside_the_guest(guest):
    with pytest.raises(InvalidInput, match="chdir: /srv/nope cannot be entered inside guest 'g1'"):
        run(guest, argv=["true"], chdir="/srv/nope")
    # the host has /srv: still missing inside
    assert run(guest, argv=["pwd"], chdir="/etc")["stdout"] == "/etc"


def test_creates_and_removes_are_checked_inside_the_guest(guest, busybox_root):
    marker = os.path.join(busybox_root, "tmp", "done")
    r = run(guest, argv=["touch", "/tmp/done"], creates="/tmp/done", check_only=True)
    assert r["changed"] and "would have run" in r["msg"] and not os.path.exists(marker)
    r = run(guest, argv=["sh", "-c", "echo > /tmp/done"], creates="/tmp/d*")
    assert r["changed"] and os.path.exists(marker)
    r = run(guest, argv=["false"], creates="/tmp/d*")
    assert not r["changed"] and r["rc"] == 0 and r["msg"] == "Did not run command since '/tmp/d*' exists inside guest 'g1'"
    r = run(guest, argv=["false"], creates="done", chdir="/tmp", check_only=True)
    assert not r["changed"] and r["msg"].startswith("Would not run")
    # /etc exists on the host, /etc/hostname only in the host: removes is checked in the guest
    assert os.path.exists("/etc/hostname")
    r = run(guest, argv=["false"], removes="/etc/hostname")
    assert not r["changed"] and "does not exist inside guest 'g1'" in r["msg"]
    r = run(guest, argv=["busybox", "rm", "/tmp/done"], removes="/tmp/done")
    assert r["changed"] and not os.path.exists(marker)


def test_check_mode_without_creates_is_skipped(guest, busybox_root):
    r = run(guest, argv=["touch", "/tmp/x"], check_only=True)
    assert r["skipped"] and not r["changed"] and r["msg"] == "Command would have run if not in check mode"
    assert not os.path.exists(os.path.join(busybox_root, "tmp", "x"))


def test_timeout_kills_the_whole_tree(guest):
    before = guest_pids(guest)
    t0 = time.monotonic()
    r = run(guest, argv=["sh", "-c", "sleep 300 & (sleep 301 &) ; setsid sleep 302 & sleep 303; echo never"], timeout=1)
    assert time.monotonic() - t0 < 10
    assert r["failed"] and r["timed_out"] and r["rc"] == -signal.SIGKILL
    assert "timed out after 1 seconds inside guest 'g1'" in r["msg"]
    assert "never" not in r["stdout"]
    for _attempt in range(50):
        if guest_pids(guest) == before:
            break
        time.sleep(0.05)
    assert guest_pids(guest) == before  # only the init is left


def test_big_output_on_both_pipes(guest):
    r = run(guest, argv=["sh", "-c", "yes abcdefghi | head -c 6000000 & yes 123456789 | head -c 6000000 >&2; wait"])
    assert r["rc"] == 0
    assert len(r["stdout"]) == 6000000 - 1 and len(r["stderr"]) == 6000000 - 1  # trailing newline stripped
    assert r["stdout"].count("abcdefghi") == 600000 and set(r["stderr"].split("\n")) == {"123456789"}


def test_binary_output_is_kept_and_replaced(guest):
    r = run(guest, argv=["busybox", "printf", "a\\377\\000b\\n"], strip_empty_ends=False)
    assert r["stdout"] == "a\ufffd\x00b\n"


def test_long_stdin(guest):
    data = "x" * 3000000 + "\nend"
    r = run(guest, argv=["sh", "-c", "cat | md5sum"], stdin=data)
    assert r["stdout"].split()[0] == hashlib.md5((data + "\n").encode()).hexdigest()
    r = run(guest, argv=["cat"], stdin="no newline", stdin_add_newline=False, strip_empty_ends=False)
    assert r["stdout"] == "no newline"
    # a command that does not read its stdin does not hang the writer
    r = run(guest, argv=["true"], stdin=data)
    assert r["rc"] == 0


def test_background_children_do_not_hang(guest):
    t0 = time.monotonic()
    r = run(guest, argv=["sh", "-c", "sleep 60 & echo started"])
    assert time.monotonic() - t0 < 5
    assert r["stdout"] == "started" and r["rc"] == 0 and r["warnings"]
    # a background child with its output elsewhere: no wait, no warning
    r = run(guest, argv=["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo ok"])
    assert r["stdout"] == "ok" and "warnings" not in r


def test_nonzero_and_signal_rc(guest):
    r = run(guest, argv=["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert r["rc"] == 3 and r["failed"] and r["msg"] == "non-zero return code"
    assert (r["stdout"], r["stderr"]) == ("out", "err")
    r = run(guest, argv=["sh", "-c", "kill -TERM $$"])
    assert r["rc"] == -signal.SIGTERM


def test_namespace_subset_and_root(guest, unit_registry, busybox_root):
    # only mnt (vnamespace -e): the guest's files, the host's hostname and pid namespace
    r = run(guest, argv=["sh", "-c", "hostname; ls /bin/busybox; echo $$"], namespaces=["mnt"])
    lines = r["stdout"].splitlines()
    assert lines[:2] == [os.uname().nodename, "/bin/busybox"] and int(lines[2]) > 1
    # uts with mnt: the guest's hostname through the guest's own busybox (its root)
    r = run(guest, argv=["hostname"], namespaces=["uts", "mnt"])
    assert r["stdout"] == "g1.test"
    # a subset without mnt is never a chroot into the guest's root folder: refused
    with pytest.raises(InvalidInput, match=r"namespaces: guest 'g1' has its own root .* entered only through its mnt namespace"):
        run(guest, argv=["hostname"], namespaces=["uts"])
    with pytest.raises(InvalidInput, match="namespaces: guest 'g1' has its own root"):
        execute.prepare_guests(unit_registry, ["g1"], Request(argv=["hostname"], namespaces=["uts"]))
    # net only with the host's files: a host tool sees the guest's network
    assert not os.path.exists(os.path.join(busybox_root, "usr", "bin", "cat"))
    r = run(guest, argv=["/usr/bin/cat", "/proc/self/net/dev"], namespaces=["net"], root=False)
    assert [line.split(":")[0].strip() for line in r["stdout"].splitlines()[2:]] == ["lo"]
    with pytest.raises(InvalidInput, match="root: false cannot be used when entering the mnt namespace of guest 'g1'"):
        execute.prepare_guests(unit_registry, ["g1"], Request(argv=["true"], root=False))
    with pytest.raises(InvalidInput, match="namespaces: guest 'g1' has no time namespace"):
        execute.prepare_guests(unit_registry, ["g1"], Request(argv=["true"], namespaces=["net", "time"]))


def test_guest_lookup_errors(guest, unit_registry):
    with pytest.raises(GuestNotFound, match="guest: guest 'nope' does not exist"):
        execute.prepare_guests(unit_registry, ["nope"], Request(argv=["true"]))
    with pytest.raises(GuestNotFound, match=r"guests\[1\]: no guest has context id 999"):
        execute.prepare_guests(unit_registry, ["g1", "999"], Request(argv=["true"]), "guests")
    metas = execute.prepare_guests(unit_registry, ["g1", str(guest.context_id)], Request(argv=["true"]), "guests")
    assert [m.name for m in metas] == ["g1"]
    os.kill(guest.init_pid, signal.SIGKILL)
    for _attempt in range(100):
        if not procfs.process_alive(guest.init_pid, guest.init_start):
            break
        time.sleep(0.02)
    with pytest.raises(GuestStale, match=r"guest 'g1' is not running: .*its init"):
        execute.prepare_guests(unit_registry, ["g1"], Request(argv=["true"]))


def test_many_guests_in_one_call(unit_registry, busybox_root):
    names = ["m%d" % i for i in range(5)]
    guests.ensure_guests(unit_registry, [{"name": n, "root": busybox_root} for n in names])
    metas = execute.prepare_guests(unit_registry, names, Request(argv=["hostname"]), "guests")
    results = execute.run_many(metas, Request(argv=["hostname"]))
    assert [r["stdout"] for r in results] == names
    # guests run side by side: one that times out does not hold up or spoil the others, stdin reaches each
    req = Request(argv=["sh", "-c", "read x; [ $(hostname) = m1 ] && sleep 100; echo $x $(hostname)"], stdin="hi", timeout=1)
    results = execute.run_many(metas, req, parallel=3)
    assert [r.get("timed_out", False) for r in results] == [False, True, False, False, False]
    assert [r["stdout"] for i, r in enumerate(results) if i != 1] == ["hi m0", "hi m2", "hi m3", "hi m4"]
    assert all(r["rc"] == 0 for i, r in enumerate(results) if i != 1)
    results = execute.run_many(metas, Request(argv=["id"], user="nosuchuser"))
    assert all(r["failed"] and "not known inside guest" in r["msg"] for r in results)
    with pytest.raises(InvalidInput):
        execute.run_many(metas, Request(argv=["id"], user="nosuchuser"), raise_errors=True)


@pytest.mark.parametrize("kw, match", [
    ({}, "one of argv or cmd is required"),
    ({"argv": ["a"], "cmd": "a"}, "mutually exclusive"),
    ({"argv": ["a"], "shell": True}, "shell: true needs the command as a string in cmd"),
    ({"cmd": "echo 'unclosed"}, "cannot be split"),
    ({"argv": []}, "argv must be a non-empty list"),
    ({"argv": ["a"], "timeout": 0}, "timeout must be more than 0"),
    ({"argv": ["a"], "timeout": "soon"}, "timeout 'soon' must be a number"),
    ({"argv": ["a"], "env": {"A=B": "1"}}, "env: 'A=B' is not a valid"),
    ({"argv": ["a"], "user": "a:b"}, "user 'a:b' must be a user name or a numeric uid"),
    ({"argv": ["a"], "namespaces": []}, "namespaces must name at least one"),
    ({"argv": ["a"], "chdir": ""}, "chdir must be a non-empty path"),
])
def test_bad_requests(kw, match):
    with pytest.raises(InvalidInput, match=match):
        Request(**kw)


def test_every_namespace_type_with_a_user_namespace(unit_registry, busybox_root):
    all_types = ["user", "mnt", "uts", "pid", "time", "net", "ipc", "cgroup"]
    guests.ensure_guests(unit_registry, [{"name": "u1", "root": busybox_root, "namespaces": all_types, "uid_map": ["0 0 1", "1000 1000 1"],
                                          "gid_map": ["0 0 1", "1000 1000 1"], "time_offsets": {"monotonic": 86400}}])
    meta = unit_registry.find("u1")
    script = "id; for t in %s; do stat -L -c %%i /proc/self/ns/$t; done" % " ".join(all_types)
    r = run(meta, argv=["sh", "-c", script], user="web")
    lines = r["stdout"].splitlines()
    assert lines[0] == "uid=1000(web) gid=1000(web) groups=1000(web)"
    assert [int(x) for x in lines[1:]] == [meta.pins[t].ino for t in all_types]
