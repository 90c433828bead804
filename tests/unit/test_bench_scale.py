"""bench/bench_scale.py: --task-floor's modules parse our options as ours do and change nothing;
--cgroup-shards spreads the guests' cgroup parents.

The floor stands for Ansible's and the argument parsing's part of a task: a fair floor accepts
what our module accepts, refuses what it refuses (with the same kind of message), and does no
work. Each floor module is run as a script (AnsibleModule reads its arguments from a file) by the
host's Python, the collection's build/ and the venv's ansible-core on its path; no timing.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
bench_scale = importlib.import_module("bench_scale")

SITE = sysconfig.get_paths()["purelib"]  # this interpreter's (the venv's) ansible-core


def run_floor(path: Path, module: str, args: dict, tmp_path: Path) -> dict:
    argfile = tmp_path / "args.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([path, str(REPO / "build"), SITE]))
    script = Path(path) / "ansible_collections" / "benchfloor" / "guests" / "plugins" / "modules" / (module.rsplit(".", 1)[1] + ".py")
    proc = subprocess.run([sys.executable, str(script), str(argfile)], env=env, capture_output=True, text=True, timeout=120, check=False)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def floor(tmp_path_factory):
    return bench_scale.make_floor(tmp_path_factory.mktemp("floor") / "collections")


@pytest.mark.parametrize("module, args", [
    (bench_scale.CREATE, dict(bench_scale.create_args(3), return_unchanged=False)),
    (bench_scale.LINK, dict(bench_scale.link_args(3), return_unchanged=False)),
])
def test_a_floor_module_takes_the_bench_task_and_does_nothing(floor, module, args, tmp_path):
    table = Path(args.get("table_dir", "/nonexistent"))
    out = run_floor(floor, module, args, tmp_path)
    assert out.get("failed") is not True, out
    assert out["changed"] is False
    # the echo of the arguments (what the floor pays for) holds every entry, parsed
    entries = out["invocation"]["module_args"]["guests" if module == bench_scale.CREATE else "links"]
    assert len(entries) == 3
    assert not table.exists()  # nothing made: not even the table folder the task names


@pytest.mark.parametrize("module, args, named", [
    (bench_scale.CREATE, {"guests": [{"name": "a"}], "no_such_option": 1}, "no_such_option"),
    (bench_scale.LINK, {"guest": "a", "netns": "b", "ifname": "eth0"}, "guest"),  # mutually exclusive
    (bench_scale.LINK, {"guest": "a"}, "ifname"),  # required one of ifname, links
    (bench_scale.CREATE, {"guests": [{"name": "a"}], "state": "sideways"}, "state"),
])
def test_a_floor_module_refuses_what_ours_refuses(floor, module, args, named, tmp_path):
    out = run_floor(floor, module, args, tmp_path)
    assert out.get("failed") is True, out
    assert named in out["msg"]


def test_cgroup_shards_spread_the_guests_over_k_folders_and_the_teardown_names_none(monkeypatch):
    monkeypatch.setitem(bench_scale.CGROUP_SHARDS, "base", "linuxns-lab-x/lab1")
    monkeypatch.setitem(bench_scale.CGROUP_SHARDS, "count", 4)
    guests = bench_scale.create_args(10)["guests"]
    parents = [g["cgroup_parent"] for g in guests]
    assert parents[:5] == ["linuxns-lab-x/lab1/g000", "linuxns-lab-x/lab1/g001", "linuxns-lab-x/lab1/g002",
                           "linuxns-lab-x/lab1/g003", "linuxns-lab-x/lab1/g000"]
    assert len(set(parents)) == 4
    assert all("cgroup_parent" not in g for g in bench_scale.create_args(10, "absent")["guests"])
    monkeypatch.setitem(bench_scale.CGROUP_SHARDS, "count", 0)
    assert all("cgroup_parent" not in g for g in bench_scale.create_args(10)["guests"])
