"""The shape of a no-change run of playbooks/fleet.yml: how many tasks report a result.

Guards the fleet speed work of issue 18 by shape, not by time (no timed assertion): a
rerun that changes nothing runs the guest role as its plan, one guest_deploy task (the
module calls of every step, list forms) and the services task - a fixed number of tasks
whatever the number of guests - and the whole deploy play stays under a small ceiling.

One small fleet (2 guests on lab1): the first run creates it, the second runs with
``fleet_teardown=true``: everything before the tear-down play is the no-change run that is
counted, the tear-down must then leave nothing behind.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from harness import REPO, _bin, load_records

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOST = "lab1"
SIZE = 2
BRIDGE = "lnsfleet0"            # playbooks/vars/fleet.yml
FLEET_DIR = "/tmp/linuxns-fleet"
TEARDOWN_TASK = "Remove the guests, their tables and roots"
ROLE = "linuxns.guests.guest : "
# Tasks with a result (ok or changed, per host) in a no-change run. Before issue 18: 9 of the
# guest role (validation, plan, include, select, roots, create, ready, links, services) and
# 25 in the deploy play; then 4 (validation, plan, guest_deploy, services); then 3: guest_deploy checks
# the services from the host (one namespace_info call) and the services task is skipped; now 2: guest_deploy
# plans the guests itself (the plan's set_fact templated a plan of ~0.8 kB per guest twice). Inside
# guest_deploy a no-change run is two calls to the host: the roots script and one namespace_info call whose
# expect asks namespace_create, namespace_mount and netns_link (each in check mode) and checks the services.
GUEST_ROLE_CEILING = 2
# The deploy play: guest_host's include and its tasks with a result (not reshaped by issue 18: 14, then 21
# with the installs of issue 15 - the restore program and unit, the operator's command), the guest role's
# include and its tasks. guest_host now reads the host's state in one call and skips every step that is
# right: its argument validation, assert, that read, the bridge's include and netns_link; with the include of
# each role and the guest role's 2 that is 9; 1 to spare.
DEPLOY_PLAY_CEILING = 10
HOST_ROLE = "linuxns.guests.guest_host : "
# guest_host's module calls in a no-change run: the one read of the host's state and the bridge's netns_link
HOST_MODULE_TASKS = ["Read the host's state in one call (packages, folders, installed programs, kernel settings)",
                     "Host bridge with its addresses and the routes through its network"]


def run_fleet(lab, ansible, name, *extra):
    record = ansible.workdir / ("shape-%s.jsonl" % name)
    argv = [_bin("ansible-playbook"), "-i", str(lab.inventory_path), "-e", "fleet_group=" + HOST, "-e", "fleet_size=%d" % SIZE,
            *extra, str(REPO / "playbooks" / "fleet.yml")]
    proc = subprocess.run(argv, env=ansible.environment(record), cwd=str(REPO), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, "fleet run %s failed\n%s\n%s" % (name, proc.stdout[-8000:], proc.stderr[-3000:])
    return proc.stdout, load_records(record)


def leftovers(lab_exec):
    out = lab_exec(HOST, ["sh", "-c", "ls /run/linuxns/guests 2>/dev/null; ip -o link show type veth 2>/dev/null | grep -c ve-g || true"])
    return out.stdout.split()


@pytest.fixture
def small_fleet(lab, ansible, lab_exec):
    yield
    # also after a failure: the guests, the bridge and the fleet folder go
    if leftovers(lab_exec) != ["0"]:
        run_fleet(lab, ansible, "cleanup", "-e", "fleet_teardown=true")
    lab_exec(HOST, ["sh", "-c", "ip link del %s 2>/dev/null; rm -rf %s; true" % (BRIDGE, FLEET_DIR)])
    assert leftovers(lab_exec) == ["0"]


def test_no_change_run_is_a_few_tasks(small_fleet, lab, ansible, lab_exec):
    _out, first = run_fleet(lab, ansible, "create")
    assert [r for r in first if r.changed and r.task.startswith(ROLE)], "the first run created nothing"
    stdout, second = run_fleet(lab, ansible, "rerun", "-e", "fleet_teardown=true")
    split = next(i for i, r in enumerate(second) if r.task == TEARDOWN_TASK)
    rerun, teardown = second[:split], second[split:]
    reported = [r for r in rerun if r.status in ("ok", "changed")]
    assert [r.task for r in rerun if r.changed] == [], "the rerun changed something:\n" + stdout[-6000:]
    role = [r.task for r in reported if r.task.startswith(ROLE)]
    assert len(role) <= GUEST_ROLE_CEILING, "the guest role ran %d tasks in a no-change run: %s" % (len(role), json.dumps(role, indent=1))
    # the deploy play: everything up to the fleet's check play (its first task fetches the pages)
    check = next(i for i, r in enumerate(reported) if r.task == "Fetch every guest's page from the host")
    assert check <= DEPLOY_PLAY_CEILING, "the deploy play ran %d tasks in a no-change run: %s" % (
        check, json.dumps([r.task for r in reported[:check]], indent=1))
    host = [r.task[len(HOST_ROLE):] for r in reported if r.task.startswith(HOST_ROLE) and r.action.split(".")[-1] not in (
        "assert", "include_tasks", "validate_argument_spec")]
    assert host == HOST_MODULE_TASKS, json.dumps([r.task for r in reported], indent=1)
    # the one guest_deploy task checked every guest in a handful of module calls and changed nothing
    deploy = [r for r in reported if r.action == "linuxns.guests.guest_deploy"]
    assert len(deploy) == 1 and not deploy[0].changed, [r.task for r in reported]
    steps = deploy[0].result["steps"]
    assert [s["step"].split(" (")[0] for s in steps] == [
        "build busybox roots and write the guests' files", "check the guests' namespaces, mounts, links and services"], steps
    assert steps[1]["step"].endswith("(one call: nothing to change)"), steps
    assert sorted(deploy[0].result["ready"]) == ["g01", "g02"]
    # every guest's httpd was found running from the host: no guest entered, the services task skipped
    assert deploy[0].result["services_to_start"] == [], deploy[0].result["services"]
    assert [r.status for r in rerun if r.task.startswith(ROLE + "Start the services")] == ["skipped"], [r.task for r in rerun]
    # then the tear-down (guest_state=absent) changed and left nothing
    assert [r for r in teardown if r.changed]
    assert leftovers(lab_exec) == ["0"]


def _deploy_steps(results):
    deploy = [r for r in results if r.action == "linuxns.guests.guest_deploy" and r.status in ("ok", "changed")]
    assert len(deploy) == 1, [r.task for r in results]
    return [s["step"].split(" (")[0] for s in deploy[0].result["steps"]]


def _inits(lab_exec):
    return [json.loads(lab_exec(HOST, ["cat", "/run/linuxns/guests/%s/meta.json" % g]).stdout)["init_pid"] for g in ("g01", "g02")]


def test_new_guests_skip_the_question_and_lost_roots_hide_no_step(small_fleet, lab, ansible, lab_exec):
    """guest_deploy skips its one question (namespace_info expect) when the roots script found none
    of the guests' root folders: the guests are new, every step has work. The same rule must not
    hide work when the guests exist and only their root folders are gone from their place: then the
    steps run one by one, each finds its part right (no guest made again), and the fleet's own check
    play (part of every run_fleet) still fetches every guest's page."""
    question = "check the guests' namespaces, mounts, links and services"
    _out, first = run_fleet(lab, ansible, "new")   # (record files are per name, and the workdir per session)
    steps = _deploy_steps(first)
    assert question not in steps, steps
    assert steps[:3] == ["build busybox roots and write the guests' files", "create the guests' namespaces",
                         "links, addresses and routes of the guests"], steps
    assert leftovers(lab_exec)[:SIZE] == ["g01", "g02"]
    inits = _inits(lab_exec)
    # both roots moved away by hand (the running guests keep theirs: a move keeps the folder):
    # the next run builds them again and changes nothing else
    lab_exec(HOST, ["sh", "-c", "cd %s && mv roots/g01 moved-g01 && mv roots/g02 moved-g02" % FLEET_DIR])
    _out, again = run_fleet(lab, ansible, "roots-moved")
    steps = _deploy_steps(again)
    assert question not in steps and "create the guests' namespaces" in steps, steps
    deploy = next(r for r in again if r.action == "linuxns.guests.guest_deploy")
    assert [s["step"].split(" (")[0] for s in deploy.result["steps"] if s["changed"]] == [
        "build busybox roots and write the guests' files"], deploy.result["steps"]
    assert [r.task for r in again if r.changed and r.task.startswith(ROLE)] == [deploy.task], "only the roots changed"
    assert _inits(lab_exec) == inits, "a guest was made again"
    assert lab_exec(HOST, ["sh", "-c", "cat %s/roots/g02/www/index.html" % FLEET_DIR]).stdout == "guest g02 on %s\n" % HOST
    # and with the roots in place, the next run is the one question again
    _out, third = run_fleet(lab, ansible, "roots-back")
    assert _deploy_steps(third) == ["build busybox roots and write the guests' files", question]
