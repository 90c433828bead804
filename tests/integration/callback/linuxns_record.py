# Test-only callback (tests/integration/harness.py enables it): appends one JSON line per
# task result to the file named by $LINUXNS_RECORD_FILE. The normal stdout callback keeps
# printing for humans.
from __future__ import annotations

DOCUMENTATION = """
    name: linuxns_record
    type: aggregate
    short_description: Record every task result as a JSON line (tests only)
    description:
      - Writes host, task name, action, status (ok, changed, failed, skipped, unreachable),
        whether a failure was ignored, and the full result dictionary of each task to the
        file named by E(LINUXNS_RECORD_FILE).
    requirements:
      - enabled via ANSIBLE_CALLBACKS_ENABLED=linuxns_record
"""

import json
import os

from ansible.plugins.callback import CallbackBase


def _native(value):
    """Fallback for json.dumps: anything unknown becomes its string form."""
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "linuxns_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._path = os.environ.get("LINUXNS_RECORD_FILE")

    def _record(self, result, status, ignored=False):
        if not self._path:
            return
        res = getattr(result, "result", None)
        if not isinstance(res, dict):
            res = dict(result._result)
        task = getattr(result, "task", None) or result._task
        host = getattr(result, "host", None) or result._host
        if status == "ok" and res.get("changed"):
            status = "changed"
        line = {
            "host": host.get_name(),
            "task": task.get_name(),
            "action": task.action,
            "status": status,
            "ignored": ignored,
            "result": res,
        }
        with open(self._path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=_native) + "\n")

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed", ignored=bool(ignore_errors))

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")
