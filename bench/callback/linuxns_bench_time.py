# Bench-only callback (bench/_common.py enables it): appends one JSON line per task result
# with the task's wall time on the controller (task start -> result) to $LINUXNS_BENCH_FILE.
from __future__ import annotations

DOCUMENTATION = """
    name: linuxns_bench_time
    type: aggregate
    short_description: Record each task's wall time (benchmarks only)
    description:
      - Writes host, task name, status, changed, the number of results in RV(guests)
        and the seconds from the task's start to its result on that host to the file named by E(LINUXNS_BENCH_FILE);
        for guest_deploy also its RV(steps) (each module call's wall time).
    requirements:
      - enabled via ANSIBLE_CALLBACKS_ENABLED=linuxns_bench_time
"""

import json  # noqa: E402 - imports follow DOCUMENTATION, as in every Ansible plugin
import os  # noqa: E402
import time  # noqa: E402

from ansible.plugins.callback import CallbackBase  # noqa: E402


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "linuxns_bench_time"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._path = os.environ.get("LINUXNS_BENCH_FILE")
        self._start = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start = time.monotonic()

    def _record(self, result, status):
        if not self._path:
            return
        res = result._result
        line = {
            "host": result._host.get_name(),
            "task": result._task.get_name(),
            "status": status,
            "changed": bool(res.get("changed")),
            "count": len(res.get("guests") or []),
            "unchanged": res.get("unchanged"),  # return_unchanged: false
            "seconds": time.monotonic() - (self._start or time.monotonic()),
            "msg": res.get("msg"),
        }
        if isinstance(res.get("steps"), list):  # guest_deploy: each module call's wall time
            line["steps"] = res["steps"]
        with open(self._path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")
