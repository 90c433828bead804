# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection shares: the common argument spec and
the one place that turns helper errors into ``fail_json``.

This file imports nothing from Ansible: modules pass their AnsibleModule in.
"""

from __future__ import annotations

import traceback

from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError
from ansible_collections.linuxns.guests.plugins.module_utils.registry import DEFAULT_STATE_DIR, Registry

COMMON_ARGS = {
    "state_dir": {"type": "path", "default": DEFAULT_STATE_DIR},
}


def common_args(**more) -> dict:
    spec = dict(COMMON_ARGS)
    spec.update(more)
    return spec


def registry_for(module) -> Registry:
    return Registry(module.params["state_dir"])


def run_module(module, body) -> None:
    """Call ``body(module)`` -> result dict; translate helper errors into fail_json.

    A GuestError becomes a clean ``msg`` (no traceback); anything else is a bug
    and is reported with its traceback in ``exception``.
    """
    try:
        result = body(module)
    except GuestError as exc:
        extra = {k: v for k, v in getattr(exc, "details", {}).items() if k in ("results", "guests", "guest", "diff")}
        module.fail_json(msg=exc.msg, **extra)
    except Exception as exc:
        module.fail_json(msg="internal error in linuxns.guests: %s: %s" % (type(exc).__name__, exc), exception=traceback.format_exc())
    module.exit_json(**result)
