"""wait_for: poll a condition the code under test makes true in another process.

A hang guard, not a speed check: the limit is far above any real wait, the test fails with
``what`` if it is reached, and nothing asserts how long the wait took.  Loops that count
rounds instead of time lose the race on a loaded machine (2 CPUs shared by several suites),
so every such wait in the tests goes through here.
"""

from __future__ import annotations

import time

HANG_LIMIT = 60.0


def wait_for(cond, what: str, limit: float = HANG_LIMIT, step: float = 0.01):
    """Return the first true value of ``cond()``; AssertionError naming ``what`` after ``limit`` s."""
    end = time.monotonic() + limit
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError("never happened within %g s: %s" % (limit, what))
        time.sleep(step)
