# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Removal is final: no process started during or after a removal survives it.

A guest without a PID namespace has no init whose death takes every member along:
removal scans /proc for members and kills them.  A process that entered between that
scan and the unpinning (or entered only some namespaces) outlived the guest, left in
namespaces that no guest owns any more - a process the operator believes gone.
"""

from __future__ import annotations

import os
import select
import signal
import time

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import enter, guests

pytestmark = pytest.mark.unit

NAME = "sec-rm"
ROUNDS = 20
# background processes that would outlive their command; no output held open
ARGV = ["/bin/sh", "-c", "sleep 300 >/dev/null 2>&1 & sleep 300 >/dev/null 2>&1 & exit 0"]


def in_namespaces(inodes: dict, token: str) -> set:
    """pids whose /proc/PID/ns/TYPE is one of ``inodes`` (type -> inode) and that carry
    ``token`` in their environment: the commands this test started (a namespace inode
    freed by the removal may be reused at once by another namespace of the machine)."""
    found = set()
    mark = ("LINUXNS_SEC_RM=%s" % token).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                if mark not in f.read().split(b"\0"):
                    continue
        except OSError:
            continue
        for t, ino in inodes.items():
            try:
                if os.stat("/proc/%s/ns/%s" % (entry, t)).st_ino == ino:
                    found.add(int(entry))
                    break
            except OSError:
                pass
    return found


def racer(meta: dict, ready_w: int, stop_r: int, types, token: str) -> None:  # pragma: no cover - forked child
    """Enter the guest again and again (each time leaving background processes) until told to stop."""
    code = 0
    try:
        devnull = os.open("/dev/null", os.O_RDWR)
        told = False
        while not select.select([stop_r], [], [], 0)[0]:
            try:
                spawned = enter.spawn_in_guest(meta, types, ARGV, {"PATH": "/usr/bin:/bin", "LINUXNS_SEC_RM": token}, (devnull, devnull, devnull))
                enter.read_all(spawned.status_fd)
                os.close(spawned.status_fd)
                enter.wait_child(spawned.pid)
            except Exception:
                pass  # the guest is gone (or going): keep trying, as an attacker would
            if not told:
                os.write(ready_w, b"r")
                told = True
    except BaseException:
        code = 1
    finally:
        os._exit(code)


@pytest.mark.timeout(300)
def start_racer(meta, types, token: str) -> tuple:
    """Fork a :func:`racer` for ``meta``; return (pid, the fd that stops it) once it has
    entered the guest once: from then on it races the removal."""
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        os.close(ready_r)
        os.close(stop_w)
        racer(meta, ready_w, stop_r, types, token)
    os.close(ready_w)
    os.close(stop_r)
    try:
        os.read(ready_r, 1)
    finally:
        os.close(ready_r)
    return pid, stop_w


def stop_racers(pids, stops) -> None:
    for stop_w in stops:
        os.write(stop_w, b"s")
        os.close(stop_w)
    for pid in pids:
        enter.wait_child(pid)


def kill_left(left) -> list:
    """Kill what a broken removal left behind (the old code's survivors); their pids, sorted."""
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return sorted(left)


@pytest.mark.parametrize("types", [None, ["net"]], ids=["all-namespaces", "net-only"])
def test_no_process_survives_removal(unit_registry, types):
    """Race entering against removal (ROUNDS times) for a guest without a PID namespace,
    entering all its namespaces or only ``net``: after each removal, no process is left
    in any namespace the guest had (inodes recorded from its pins before removal)."""
    survivors = {}
    for i in range(ROUNDS):
        guests.ensure_guests(unit_registry, [{"name": NAME, "namespaces": ["mnt", "uts", "ipc", "net"], "stop_timeout": 0}])
        meta = unit_registry.find(NAME)
        inodes = {t: pin.ino for t, pin in meta.pins.items()}
        token = "%d-%d-%d" % (os.getpid(), i, time.monotonic_ns())
        pid, stop_w = start_racer(meta, types, token)
        try:
            guests.ensure_guests(unit_registry, [{"name": NAME, "state": "absent"}])
        finally:
            stop_racers([pid], [stop_w])
        left = in_namespaces(inodes, token)
        if left:
            survivors[i] = kill_left(left)
    assert survivors == {}, "processes outlived the removal (round: pids): %r" % survivors


BATCH = ["sec-rm-a", "sec-rm-b", "sec-rm-c"]
BATCH_ROUNDS = 6


@pytest.mark.timeout(300)
@pytest.mark.parametrize("types", [None, ["net"]], ids=["all-namespaces", "net-only"])
def test_no_process_survives_batch_removal(unit_registry, types):
    """The same race for a batch: one task removes three guests (one lock each, one sweep over
    all their namespaces, one /proc scan per round) while a racer per guest keeps entering
    it (all its namespaces, or only ``net``): no process is left in any namespace of any of
    them, BATCH_ROUNDS times."""
    survivors = {}
    for i in range(BATCH_ROUNDS):
        guests.ensure_guests(unit_registry, [{"name": n, "namespaces": ["mnt", "uts", "ipc", "net"], "stop_timeout": 0} for n in BATCH])
        token = "%d-b%d-%d" % (os.getpid(), i, time.monotonic_ns())
        inodes, racers, stops = {}, [], []
        try:
            for name in BATCH:
                meta = unit_registry.find(name)
                inodes[name] = {t: pin.ino for t, pin in meta.pins.items()}
                pid, stop_w = start_racer(meta, types, token)
                racers.append(pid)
                stops.append(stop_w)
            guests.ensure_guests(unit_registry, [{"name": n, "state": "absent"} for n in BATCH])
        finally:
            stop_racers(racers, stops)
        for name in BATCH:
            left = in_namespaces(inodes.get(name, {}), token)
            if left:
                survivors["%d %s" % (i, name)] = kill_left(left)
    assert survivors == {}, "processes outlived the batch removal (round guest: pids): %r" % survivors
