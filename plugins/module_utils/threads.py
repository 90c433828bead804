# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jobs whose time is mostly the kernel's waits, run from a few threads so that the waits overlap.

A guest's release (guest_stop.release_many: unmounting its pins, removing its cgroups) and a
link's removal (links._remove_together: the RCU grace periods after ``RTM_DELLINK``) wait for
the kernel with the GIL released; from several threads those waits overlap.
"""

from __future__ import annotations

import queue
import threading


def in_threads(items: list, job, count: int, name: str) -> dict:
    """``job(item)`` for each of ``items`` from up to ``count`` threads named ``name`` (this one
    among them, the only one when no other can start: a pids limit on the session).  Every job is
    run.  Returns {item: the exception its job raised}, for the caller to raise again, in order."""
    todo = queue.SimpleQueue()
    for item in items:
        todo.put(item)
    failed = {}

    def work() -> None:
        while True:
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                job(item)
            except Exception as exc:  # pylint: disable=broad-except  # raised again by the caller, in order
                failed[item] = exc

    threads = []
    for _slot in range(min(count, len(items)) - 1):
        thread = threading.Thread(target=work, name=name, daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: fewer do it
            break
        threads.append(thread)
    work()
    for thread in threads:
        thread.join()
    return failed
