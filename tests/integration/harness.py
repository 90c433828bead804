"""Integration-test harness: real ``ansible``/``ansible-playbook`` runs against lab hosts.

Every run goes through the lab's inventory and ansible.cfg (tests/lab/lab.py) and a
test-only callback (callback/linuxns_record.py) that records each task result as a JSON
line; the human-readable stdout is kept and shown when a run does not end as expected.

    run = ansible.playbook([{"ansible.builtin.command": "hostname"}], hosts="lab1")
    assert run.last.result["stdout"] == "lab1"

    c = ansible.converge({"ansible.builtin.file": {"path": "/run/x", "state": "directory"}})
    assert c.first.changed and not c.second.changed   # also asserted by converge itself

The project rule "every integration test runs the task twice (second run changed: false)
and once in check mode" is ``converge``: check mode first (the prediction), then the real
run, then the real run again.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab import run_tree

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CALLBACK_DIR = HERE / "callback"
CALLBACK_NAME = "linuxns_record"
RECORD_ENV = "LINUXNS_RECORD_FILE"
STDOUT_TAIL = 12000  # characters of ansible's stdout shown in a failure message


# Probe code run inside a guest (part of a probe script that defines err(exc) and
# open_for_write(path)): what /proc/PID/exe of a process in the guest is and whether guest
# root can reach its file for writing (CVE-2019-5736 class).  Opens with O_WRONLY, and
# O_PATH reopened through /proc/self/fd; never writes a byte.  The result: link, write,
# reopen (errno names or "OPENED"), seals (F_GET_SEALS: only a memfd has them), dev_ino.
EXE_PROBE = r"""
def exe_probe(path):
    res = {"link": os.readlink(path), "write": open_for_write(path)}
    try:
        opath = os.open(path, os.O_PATH | os.O_CLOEXEC)
        res["reopen"] = open_for_write("/proc/self/fd/%d" % opath)
        os.close(opath)
    except OSError as exc:
        res["reopen"] = "O_PATH " + err(exc)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        res["seals"] = fcntl.fcntl(fd, 1034)  # F_GET_SEALS
    except OSError as exc:
        res["seals"] = err(exc)
    st = os.fstat(fd)
    res["dev_ino"] = [st.st_dev, st.st_ino]
    os.close(fd)
    return res
"""


def _bin(name: str) -> str:
    """ansible executables from the interpreter's own venv (then PATH)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: run the tests with .venv/bin/python (make test)")
    return found


@dataclasses.dataclass
class TaskResult:
    """One task's result on one host, as the record callback saw it."""

    host: str
    task: str
    action: str
    status: str      # ok | changed | failed | skipped | unreachable
    result: dict
    ignored: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.result.get("changed", False))

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "unreachable")

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    def __getitem__(self, key: str) -> Any:
        return self.result[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.result.get(key, default)


@dataclasses.dataclass
class AnsibleRun:
    argv: list
    rc: int
    stdout: str
    stderr: str
    results: list

    def for_host(self, host: str) -> list:
        return [r for r in self.results if r.host == host]

    def task(self, name: str, host: str | None = None) -> TaskResult:
        """Last result of the task called NAME (on HOST, if given)."""
        for r in reversed(self.results):
            if r.task == name and (host is None or r.host == host):
                return r
        raise KeyError(f"no result for task {name!r}" + (f" on {host}" if host else "")
                       + f"\n{self.describe()}")

    @property
    def last(self) -> TaskResult:
        if not self.results:
            raise KeyError(f"no task results recorded\n{self.describe()}")
        return self.results[-1]

    @property
    def hosts(self) -> list:
        seen: dict = {}
        for r in self.results:
            seen.setdefault(r.host, None)
        return list(seen)

    def describe(self) -> str:
        out = self.stdout if len(self.stdout) <= STDOUT_TAIL else "…" + self.stdout[-STDOUT_TAIL:]
        return (f"$ {' '.join(self.argv)}\nrc={self.rc}\n--- stdout ---\n{out}"
                f"\n--- stderr ---\n{self.stderr[-4000:]}")


@dataclasses.dataclass
class Converged:
    """Results of check mode, first real run and second real run, per host."""

    check: TaskResult
    first: TaskResult
    second: TaskResult
    runs: tuple             # the three AnsibleRun objects
    per_host: dict          # host -> (check, first, second)

    def assert_idempotent(self) -> None:
        for host, (check, first, second) in self.per_host.items():
            for label, r in (("check", check), ("first", first), ("second", second)):
                assert not r.failed, f"{host}: {label} run failed: {r.result}"
            assert check.changed == first.changed, (
                f"{host}: check mode predicted changed={check.changed}, the real run reported "
                f"changed={first.changed}\ncheck: {check.result}\nfirst: {first.result}")
            assert not second.changed, (
                f"{host}: second run is not idempotent (changed: true)\n{second.result}")


def load_records(path: Path) -> list:
    results = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                results.append(TaskResult(host=d["host"], task=d["task"], action=d["action"],
                                          status=d["status"], result=d["result"],
                                          ignored=d.get("ignored", False)))
    return results


def build_playbook(play_or_tasks: str | dict | list, hosts: str,
                   gather_facts: bool = False) -> str | list:
    """A playbook from a YAML string (verbatim), a play, a list of plays, a task or tasks."""
    if isinstance(play_or_tasks, str):
        return play_or_tasks
    items = [play_or_tasks] if isinstance(play_or_tasks, dict) else list(play_or_tasks)
    if items and all(isinstance(i, dict) and "hosts" in i for i in items):
        return items
    return [{"name": "linuxns test", "hosts": hosts, "gather_facts": gather_facts,
             "tasks": items}]


class Ansible:
    """Runs ansible against a Lab; files of each run go under WORKDIR."""

    _counter = itertools.count(1)

    def __init__(self, lab, workdir: os.PathLike) -> None:
        self.lab = lab
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)

    # -- environment ------------------------------------------------------------
    def environment(self, record: Path, pipelining: bool | None = None,
                    env: dict | None = None) -> dict:
        e = dict(os.environ)
        e.update({
            "ANSIBLE_CONFIG": str(self.lab.ansible_cfg_path),
            "ANSIBLE_COLLECTIONS_PATH": str(REPO / "build"),
            "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
            "ANSIBLE_CALLBACKS_ENABLED": CALLBACK_NAME,
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",  # callbacks for ad-hoc runs too
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            RECORD_ENV: str(record),
        })
        e.pop("ANSIBLE_INVENTORY", None)
        if pipelining is not None:
            e["ANSIBLE_PIPELINING"] = "True" if pipelining else "False"
        if env:
            e.update({k: str(v) for k, v in env.items()})
        return e

    def _run(self, argv: list, record: Path, expect_fail: bool, timeout: float,
             **env_kw) -> AnsibleRun:
        proc = run_tree(argv, env=self.environment(record, **env_kw), cwd=str(REPO),
                        stdin=subprocess.DEVNULL, capture_output=True, text=True,
                        timeout=timeout, check=False)
        run = AnsibleRun(argv=argv, rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr,
                         results=load_records(record))
        if expect_fail:
            assert run.rc != 0, f"expected the run to fail, but it succeeded\n{run.describe()}"
        else:
            assert run.rc == 0, f"ansible run failed\n{run.describe()}"
        return run

    def _files(self, kind: str) -> tuple:
        n = next(self._counter)
        base = self.workdir / f"{n:04d}-{kind}"
        return base.with_suffix(".yml"), base.with_suffix(".jsonl"), base.with_suffix(".vars.json")

    @staticmethod
    def _common_args(check: bool, diff: bool, extra_vars: dict | None, vars_file: Path,
                     verbosity: int) -> list:
        args = []
        if check:
            args.append("--check")
        if diff:
            args.append("--diff")
        if extra_vars:
            vars_file.write_text(json.dumps(extra_vars))
            args += ["-e", f"@{vars_file}"]
        verbosity = verbosity or int(os.environ.get("LINUXNS_TEST_VERBOSITY", "0") or 0)
        if verbosity:
            args.append("-" + "v" * verbosity)
        return args

    # -- public API ---------------------------------------------------------------
    def playbook(self, play_or_tasks: str | dict | list, hosts: str = "lab1",
                 check: bool = False, diff: bool = False, env: dict | None = None,
                 connection: str = "ssh", extra_vars: dict | None = None,
                 expect_fail: bool = False, pipelining: bool | None = None,
                 gather_facts: bool = False, verbosity: int = 0,
                 timeout: float = 600) -> AnsibleRun:
        """ansible-playbook on the lab; returns the run with per-task results."""
        playbook, record, vars_file = self._files("playbook")
        pb = build_playbook(play_or_tasks, hosts, gather_facts)
        playbook.write_text(pb if isinstance(pb, str) else json.dumps(pb, indent=1))
        argv = [_bin("ansible-playbook"), "-i", str(self.lab.inventory_path), "-c", connection,
                *self._common_args(check, diff, extra_vars, vars_file, verbosity), str(playbook)]
        return self._run(argv, record, expect_fail, timeout, pipelining=pipelining, env=env)

    def adhoc(self, host: str, module: str, args: str | dict | None = None,
              check: bool = False, diff: bool = False, env: dict | None = None,
              connection: str = "ssh", extra_vars: dict | None = None,
              expect_fail: bool = False, pipelining: bool | None = None,
              verbosity: int = 0, timeout: float = 600) -> AnsibleRun:
        """``ansible HOST -m MODULE -a ARGS`` (ARGS as k=v text or a dict, sent as JSON)."""
        record, vars_file = self._files("adhoc")[1:]
        argv = [_bin("ansible"), host, "-i", str(self.lab.inventory_path), "-c", connection,
                "-m", module]
        if args is not None:
            argv += ["-a", json.dumps(args) if isinstance(args, dict) else str(args)]
        argv += self._common_args(check, diff, extra_vars, vars_file, verbosity)
        return self._run(argv, record, expect_fail, timeout, pipelining=pipelining, env=env)

    def converge(self, task: dict, hosts: str = "lab1", check_idempotent: bool = True,
                 **kw) -> Converged:
        """Run TASK in check mode, then for real twice; by default assert the project rule:
        check mode predicts the first run's ``changed``, the second run changes nothing."""
        task = dict(task)
        name = task.setdefault("name", "converge: " + next(
            (k for k in task if k not in ("name", "register", "when", "vars", "become")), "task"))
        runs = (self.playbook([task], hosts=hosts, check=True, **kw),
                self.playbook([task], hosts=hosts, **kw),
                self.playbook([task], hosts=hosts, **kw))
        per_host = {}
        for host in runs[1].hosts:
            per_host[host] = tuple(r.task(name, host) for r in runs)
        if not per_host:
            raise AssertionError(f"task {name!r} produced no result\n{runs[1].describe()}")
        first_host = hosts if hosts in per_host else next(iter(per_host))
        check, first, second = per_host[first_host]
        result = Converged(check=check, first=first, second=second, runs=runs,
                           per_host=per_host)
        if check_idempotent:
            result.assert_idempotent()
        return result


def host_number(host: int | str) -> int:
    """1 for ``1``, ``"1"`` or ``"lab1"``."""
    if isinstance(host, int):
        return host
    text = str(host)
    if text.startswith("lab"):
        text = text[3:]
    return int(text)


def lab_exec(lab, host: int | str, argv: Sequence[str], check: bool = True,
             **kw) -> subprocess.CompletedProcess:
    """Run ARGV inside lab host HOST (all its namespaces) from outside Ansible."""
    return lab.exec(host_number(host), list(argv), check=check, **kw)


def busybox_tree(path: str, dirs: Sequence[str] = (), libs: bool = False, passwd: bool = False) -> None:
    """A guest root of this machine's static busybox at ``path``: /bin/busybox with a link
    per applet, the folders ``dirs``, with ``libs`` the /lib and /lib64 links into /usr (for
    a /usr bound from the lab host), with ``passwd`` an /etc/passwd of root."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    for d in ("bin", *dirs):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2(busybox, os.path.join(path, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", os.path.join(path, "bin", applet))
    if libs:
        os.symlink("usr/lib", os.path.join(path, "lib"))
        os.symlink("usr/lib64", os.path.join(path, "lib64"))
    if passwd:
        os.makedirs(os.path.join(path, "etc"), exist_ok=True)
        with open(os.path.join(path, "etc", "passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\n")
