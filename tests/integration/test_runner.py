"""playbooks/fleet.yml through ansible-runner (AWX's engine), sliced as AWX job slicing does.

AWX splits a sliced job's inventory into N slices (host i goes to slice i mod N) and runs
one ansible-runner job per slice, each with its own private data dir, at the same time on
different nodes.  Here: 2 slices of the lab (lab1, lab2), 2 guests per host, both
``ansible-runner run`` processes at once.  Checked per slice: rc, status, stdout and
job_events/ of the artifacts folder, the per-host ``changed`` counts of the runner_on_ok
events against playbook_on_stats, that the output reads well (every task named, the
summary table, no warnings); then that the whole fleet got built, each host on the guest
network its ``fleet_host_number`` pins (the same as an unsliced run gives it).  The jobs run
with ``fleet_teardown: true``: the playbook's tear-down play removes the guests in the same
job (no extra run; the fixture only cleans up what a failed job left).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from harness import REPO, _bin, lab_exec

pytestmark = pytest.mark.integration

SIZE = 2
SLICES = 2
NAMES = ["g%02d" % i for i in range(1, SIZE + 1)]
FLEET_DIR = "/tmp/linuxns-fleet"      # playbooks/vars/fleet.yml
BRIDGE = "lnsfleet0"


def slice_inventory(lab, hosts: list) -> dict:
    from lab import HOST_PYTHON, LAB_ROLE_VARS, ssh_common_args

    return {"all": {"children": {"lab": {
        "hosts": {h: {"ansible_host": lab.host(int(h[3:])).address, "fleet_host_number": int(h[3:])} for h in hosts},
        "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(lab.key_path),
                 "ansible_python_interpreter": HOST_PYTHON,
                 "ansible_ssh_common_args": " ".join(ssh_common_args(lab.state_dir)), **LAB_ROLE_VARS},
    }}}}


def private_data_dir(base: Path, lab, hosts: list, env: dict) -> Path:
    """An AWX-like private data dir: inventory/, env/envvars, env/extravars."""
    (base / "inventory").mkdir(parents=True)
    (base / "env").mkdir()
    (base / "inventory" / "hosts.yml").write_text(yaml.safe_dump(slice_inventory(lab, hosts)))
    (base / "env" / "envvars").write_text(yaml.safe_dump(env))
    (base / "env" / "extravars").write_text(yaml.safe_dump({"fleet_size": SIZE, "fleet_teardown": True}))
    return base


def guests_left(lab) -> dict:
    """host -> names of the guests in its registry (/run/linuxns/guests)."""
    left = {}
    for host in ("lab1", "lab2"):
        out = lab_exec(lab, host, ["ls", "-A", "/run/linuxns/guests"], check=False)
        left[host] = sorted(out.stdout.split()) if out.returncode == 0 else []
    return left


def remove_fleet(ansible, lab):
    """After the jobs: their tear-down play removed the guests; a failed job may have left some."""
    try:
        if any(guests_left(lab).values()):
            play = [{"name": "fleet guests absent", "hosts": "lab", "gather_facts": False,
                     "vars_files": [str(REPO / "playbooks" / "vars" / "fleet.yml")],
                     "vars": {"fleet_size": SIZE},
                     "tasks": [{"name": "guests absent", "ansible.builtin.include_role": {"name": "linuxns.guests.guest"},
                                "vars": {"guest_list": "{{ fleet_guests }}", "guest_state": "absent", "guest_purge_root": True,
                                         "guest_table_dir": "{{ fleet_dir }}/tables", "guest_roots_dir": "{{ fleet_dir }}/roots",
                                         "guest_bridge": "{{ fleet_bridge }}"}}]}]
            ansible.playbook(play, hosts="lab")
    finally:
        for host in ("lab1", "lab2"):   # guest_host's bridge and the fleet folder
            lab_exec(lab, host, ["ip", "link", "del", BRIDGE], check=False)
            lab_exec(lab, host, ["rm", "-rf", "--one-file-system", FLEET_DIR], check=False)


@pytest.fixture(scope="module")
def slices(lab, ansible):
    """Both slices run at once (fleet_teardown: each job also removes its guests at the end);
    yields {"jobs": {slice number: (private data dir, hosts, rc, output)}, "left": guests_left()}."""
    hosts = ["lab1", "lab2"]       # the session lab (conftest.LAB_HOSTS), sorted as AWX sorts
    env = {k: v for k, v in ansible.environment(Path("/dev/null")).items()
           if k in ("ANSIBLE_CONFIG", "ANSIBLE_COLLECTIONS_PATH")}
    env.update({"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"})
    base = ansible.workdir / "runner"
    # ansible-runner finds ansible-playbook on PATH (in an EE: the image's)
    run_env = dict(os.environ, PATH=os.pathsep.join([str(Path(_bin("ansible-playbook")).parent), os.environ.get("PATH", "")]))
    jobs = {}
    try:
        for k in range(1, SLICES + 1):
            part = hosts[k - 1::SLICES]          # AWX: host i -> slice i mod N
            pdd = private_data_dir(base / f"slice{k}", lab, part, env)
            argv = [_bin("ansible-runner"), "run", str(pdd), "-p", "fleet.yml", "--project-dir", str(REPO / "playbooks"),
                    "--ident", f"slice{k}", "-q"]
            jobs[k] = (pdd, part, subprocess.Popen(argv, cwd=str(REPO), env=run_env, stdin=subprocess.DEVNULL,
                                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        done = {}
        for k, (pdd, part, proc) in jobs.items():
            out = proc.communicate(timeout=600)[0]
            done[k] = (pdd, part, proc.returncode, out)
        # what the jobs' tear-down play left on the hosts
        yield {"jobs": done, "left": guests_left(lab)}
    finally:
        for _pdd, _part, proc in jobs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        remove_fleet(ansible, lab)


def artifacts(pdd: Path, k: int) -> Path:
    return pdd / "artifacts" / f"slice{k}"


def events(pdd: Path, k: int) -> list:
    files = sorted((artifacts(pdd, k) / "job_events").glob("*.json"), key=lambda p: int(p.name.split("-")[0]))
    return [json.loads(p.read_text()) for p in files]


def test_artifacts_and_job_events(slices):
    for k, (pdd, part, rc, out) in slices["jobs"].items():
        art = artifacts(pdd, k)
        stdout = (art / "stdout").read_text() if (art / "stdout").exists() else ""
        assert rc == 0, f"slice {k}: ansible-runner rc={rc}\n{out[-3000:]}\n{stdout[-8000:]}"
        assert (art / "rc").read_text().strip() == "0"
        assert (art / "status").read_text().strip() == "successful"
        assert json.loads((art / "command").read_text())["command"][0].endswith("ansible-playbook")
        evs = events(pdd, k)
        kinds = [e["event"] for e in evs]
        assert kinds[0] == "playbook_on_start" and kinds[-1] == "playbook_on_stats", kinds
        assert "runner_on_failed" not in kinds and "runner_on_unreachable" not in kinds
        stats = evs[-1]["event_data"]
        assert set(stats["ok"]) == set(part), stats
        assert not stats["failures"] and not stats["dark"]
        # per host: changed tasks seen in runner_on_ok events == the play recap's count
        for host in part:
            oks = [e for e in evs if e["event"] == "runner_on_ok" and e["event_data"]["host"] == host]
            changed = sum(1 for e in oks if e["event_data"]["res"].get("changed"))
            assert changed > 0 and stats["changed"][host] == changed, (host, changed, stats["changed"])
            # the guest role's namespaces step: one guest_deploy task (its steps list the module calls it made)
            created = [e["event_data"]["res"] for e in oks
                       if e["event_data"]["task_action"] in ("linuxns.guests.guest_deploy", "linuxns.guests.namespace_create")]
            assert created and created[0]["changed"], "no guest_deploy / namespace_create event on " + host
        assert {e["event_data"].get("host") for e in evs if "host" in e.get("event_data", {})} <= set(part)


def test_output_reads_well(slices):
    for k, (pdd, part, _rc, _out) in slices["jobs"].items():
        stdout = (artifacts(pdd, k) / "stdout").read_text()
        assert "[WARNING]" not in stdout and "DEPRECATION" not in stdout and "Traceback" not in stdout, stdout
        tasks = re.findall(r"^TASK \[(.*)\]", stdout, re.M)
        assert tasks and all(t.strip() for t in tasks), tasks
        assert "PLAY RECAP" in stdout
        # the summary table: a header and one row per guest of this slice's hosts, all answering
        summary = next(e for e in events(pdd, k) if e["event"] == "runner_on_ok"
                       and e["event_data"]["task"].startswith("Summary table"))
        lines = summary["event_data"]["res"]["msg"]
        assert lines[0].split() == ["host", "guest", "ctx", "address", "http", "peer"], lines
        rows = [line.split() for line in lines[1:]]
        assert sorted((r[0], r[1]) for r in rows) == sorted((h, g) for h in part for g in NAMES), lines
        assert all(r[4:] == ["ok", "ok"] for r in rows), lines
        assert f"all {SIZE * len(part)} guests on {len(part)} hosts answer" in stdout


def test_whole_fleet_built(slices):
    """The slices together built every guest of every host (each page fetched by the host and by
    the next guest), on the network fleet_host_number pins, and their tear-down removed them."""
    built = {}
    for k, (pdd, _part, _rc, _out) in slices["jobs"].items():
        summary = next(e for e in events(pdd, k) if e["event"] == "runner_on_ok"
                       and e["event_data"]["task"].startswith("Summary table"))
        for row in summary["event_data"]["res"]["msg"][1:]:
            host, guest, _ctx, address, http, peer = row.split()
            built[(host, guest)] = (address, http, peer)
    want = {(h, g): ("198.19.%d.%d" % (int(h[3:]), 10 + NAMES.index(g) + 1), "ok", "ok")
            for h in ("lab1", "lab2") for g in NAMES}
    assert built == want   # lab2 alone in its slice is still on 198.19.2.0/24
    assert slices["left"] == {"lab1": [], "lab2": []}, slices["left"]
