"""Shared helpers of the bench scripts: the lab host, timed Ansible tasks, ssh scripts.

Benchmarks run against lab host 1 of the lab selected by LINUXNS_LAB / LINUXNS_LAB_BASE
(tests/lab/lab.py). A lab that is not up is brought up with one host and taken down
again at the end; a lab that was already up is left as it was (only what the bench made
on it is removed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "lab"))

from lab import Lab, run_tree  # noqa: E402

VENV_BIN = REPO / ".venv" / "bin"
HOST = 1


def median(values):
    return statistics.median(values) if values else float("nan")


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def undone_on_failure(bench):
    """A bench's __enter__ (Bench, bench_fleet's Fleet): when it fails, the lab it brought up
    (``bench.brought_up``) goes down again and its scratch folder ``bench.tmp`` goes."""
    try:
        yield
    except BaseException:
        if bench.brought_up and not bench.keep_lab:
            with contextlib.suppress(Exception):
                bench.lab.down()
        shutil.rmtree(bench.tmp, ignore_errors=True)
        raise


def unwind_on_sigterm():
    """`timeout` or a kill sends SIGTERM: unwind like Ctrl-C so every finally and __exit__
    removes what the bench made (guests, roots, scratch folders, lab hosts it brought up)."""
    signal.signal(signal.SIGTERM, _terminated)


class Bench:
    """Lab host 1, a scratch folder on the controller and a warm ssh master."""

    def __init__(self, keep_lab: bool = False):
        self.lab = Lab()
        self.keep_lab = keep_lab
        self.brought_up = False
        self.tmp = Path(tempfile.mkdtemp(prefix="linuxns-bench-"))
        self.cm = self.tmp / "cm"
        self.record = self.tmp / "times.jsonl"

    # -- lab -----------------------------------------------------------------------
    def __enter__(self):
        unwind_on_sigterm()
        with undone_on_failure(self):
            if not self.lab.healthy(HOST):
                self.brought_up = True  # before up(): a host that came up but did not answer goes down again
                self.lab.up(HOST)
            self.host = self.lab.host(HOST)
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(Exception):
            subprocess.run(self._ssh_base() + ["-O", "exit", "root@" + self.host.address],
                           capture_output=True, timeout=10, check=False)
        if self.brought_up and not self.keep_lab:
            self.lab.down()
        shutil.rmtree(self.tmp, ignore_errors=True)  # its ssh control socket too
        return False

    def exec(self, argv, **kw):
        """Run argv inside the lab host (nsenter, no ssh): for checks and measurements."""
        return self.lab.exec(HOST, argv, **kw)

    # -- ssh: the baseline's transport ------------------------------------------------
    def _ssh_base(self):
        argv = self.lab.ssh_argv(HOST)[:-1]  # drop root@address
        return argv + ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.cm}", "-o", "ControlPersist=120"]

    def ssh_script(self, script: str, *args: str) -> tuple:
        """Run a bash script on the lab host over ssh (warm master); (seconds, stdout)."""
        subprocess.run(self._ssh_base() + ["root@" + self.host.address, "true"], check=True, capture_output=True)
        t0 = time.monotonic()
        proc = subprocess.run(self._ssh_base() + ["root@" + self.host.address, "bash", "-s", "--", *args],
                              input=script, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"baseline script failed (rc={proc.returncode}): {proc.stderr[-2000:]}")
        return seconds, proc.stdout

    # -- Ansible: one timed task ---------------------------------------------------------
    def env(self) -> dict:
        """ansible's environment for a bench run: the lab's config and the timing callback."""
        env = dict(os.environ)
        env.update({
            "ANSIBLE_CONFIG": str(self.lab.ansible_cfg_path),
            "ANSIBLE_CALLBACK_PLUGINS": str(HERE / "callback"),
            "ANSIBLE_CALLBACKS_ENABLED": "linuxns_bench_time",
            "LINUXNS_BENCH_FILE": str(self.record),
        })
        return env

    def task(self, module: str, args: dict, check: bool = False) -> dict:
        """Run one task on lab1 after a warming ping; returns the callback's record of it.

        ``seconds`` is the task's wall time on the controller (start of the task to its
        result: module transfer, the run on the host, the result back); ``process`` is
        the whole ansible-playbook run for reference.
        """
        vars_file = self.tmp / "args.json"
        vars_file.write_text(json.dumps({"bench_args": args}))
        play = [{
            "hosts": self.host.name,
            "gather_facts": False,
            "tasks": [
                {"name": "warm the connection", "ansible.builtin.ping": {}},
                {"name": "timed", module: "{{ bench_args }}", "check_mode": check},
            ],
        }]
        pb = self.tmp / "play.yml"
        pb.write_text(json.dumps(play))
        with contextlib.suppress(FileNotFoundError):
            self.record.unlink()
        env = self.env()
        t0 = time.monotonic()
        proc = run_tree([str(VENV_BIN / "ansible-playbook"), "-i", str(self.lab.inventory_path),
                         "-e", "@" + str(vars_file), str(pb)],
                        env=env, capture_output=True, text=True, check=False)
        process = time.monotonic() - t0
        records = [json.loads(line) for line in self.record.read_text().splitlines()] if self.record.exists() else []
        timed = [r for r in records if r["task"] == "timed"]
        if proc.returncode != 0 or not timed or timed[0]["status"] != "ok":
            raise RuntimeError(f"ansible-playbook failed (rc={proc.returncode}): {proc.stdout[-3000:]}{proc.stderr[-2000:]}")
        out = dict(timed[0])
        out["process"] = process
        return out


def table(rows, headers) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    fmt = "  ".join("{:>%d}" % w if i else "{:<%d}" % w for i, w in enumerate(widths))
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines)


# /proc/meminfo fields the memory benches read (KiB), and the kernel objects among them
KEYS = ("MemAvailable", "Slab", "SReclaimable", "SUnreclaim", "KernelStack", "PageTables", "Percpu", "Shmem")


def meminfo() -> dict:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, rest = line.split(":", 1)
            if key in KEYS:
                out[key] = int(rest.split()[0])  # KiB
    return out


def kernel(m: dict) -> int:
    return m["Slab"] + m["KernelStack"] + m["PageTables"] + m.get("Percpu", 0)
