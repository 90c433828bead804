# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The crash-test interface: named points where a test can have the helper killed.

A test sets ``_LINUXNS_TEST_KILL_AT=STEP[,STEP...]`` (:data:`ENV`) in the
module's environment; when the helper reaches :func:`crash_point` for one of
those :class:`Step` values it sends itself SIGKILL, as a lost ssh connection or
an OOM kill would.  The next run must then converge and leave nothing behind
(docs/testing.md, "Fault injection"; docs/concepts.md, "Crash safety").

A step name the helper does not know is an :class:`InvalidInput` error, raised
before anything changes, so a typo in a test cannot pass as "never reached".
Never set the variable outside tests.
"""

from __future__ import annotations

import enum
import os
import signal

from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput

ENV = "_LINUXNS_TEST_KILL_AT"


class Step(str, enum.Enum):
    """The crash points of a guest's creation, in the order they are reached."""

    RESERVED = "reserved"  # the context id is reserved and the record saved (phase: creating)
    FORKED = "forked"  # the child that makes the namespaces is forked
    STARTED = "started"  # every namespace exists (and the init or reaper runs)
    PINNED = "pinned"  # the namespaces are bind-mounted under the state folder
    ALIASED = "aliased"  # the net namespace's alias under the netns folder is made
    READY = "ready"  # the guest is recorded as ready


def armed(value: str | None = None) -> frozenset:
    """The steps ``value`` (default: the environment's :data:`ENV`) names; InvalidInput for unknown ones."""
    raw = os.environ.get(ENV, "") if value is None else value
    names = [n.strip() for n in raw.split(",") if n.strip()]
    known = {s.value: s for s in Step}
    bad = [n for n in names if n not in known]
    if bad:
        raise InvalidInput("%s: unknown crash step(s) %s; known: %s" % (ENV, ", ".join(repr(n) for n in bad), ", ".join(known)))
    return frozenset(known[n] for n in names)


def check() -> None:
    """Fail early (before any change) when :data:`ENV` names an unknown step."""
    if os.environ.get(ENV):
        armed()


def crash_point(step: Step) -> None:
    """Die with SIGKILL here when a test armed ``step`` (a no-op otherwise)."""
    if os.environ.get(ENV) and step in armed():
        os.kill(os.getpid(), signal.SIGKILL)
