# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The parent/child handshake of a guest's creation (cf. util-linux unshare.c's sync_with_child).

The parent P forks the child C, which makes the namespaces; P does what only a
process outside them can do (write C's uid/gid maps and time offsets, pin the
namespaces) and tells C when to go on.  Four pipes, all close-on-exec:

    C -> P  one JSON line per :class:`Step` (``{"step": "user"}``...; ``error`` carries
            an error payload, :func:`errors.to_payload`)
    P -> C  :data:`ACK` after P handled ``user``/``time``; :data:`DONE` once C's
            namespaces are pinned (a guest without init: C may exit)
    P -> I  :data:`GO`: the guest is recorded, the init I may exec (EOF: P died, I exits)
    I -> P  the init's exec failure as text (EOF without text: it exec'd)

A byte other than the one expected (P died: EOF) makes the child exit at once.
"""

from __future__ import annotations

import enum
import json
import os

from ansible_collections.linuxns.guests.plugins.module_utils import enter, errors
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError

CHILD_ENDS = ("c2p_w", "p2c_r", "go_r", "status_w")  # C's and I's ends of the four pipes
PARENT_ENDS = ("c2p_r", "p2c_w", "go_w", "status_r")
ACK = b"k"
DONE = b"d"
GO = b"g"


class Step(str, enum.Enum):
    """What the child reports to the parent, in order."""

    USER = "user"  # C made its user namespace: P writes uid_map/gid_map, then ACK
    TIME = "time"  # C made its time namespace: P writes timens_offsets, then ACK
    ROOT = "root"  # C (or I) is about to bind its root (userns_root): P idmaps it or shifts it once, then ACK
    INIT = "init"  # C forked the init I (``pid``): P records it
    READY = "ready"  # every namespace is set up (``pid``: the process to pin without init)
    ERROR = "error"  # C failed (an error payload); C exits


def _read_byte(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, 1)
        except InterruptedError:
            continue


class Handshake:
    """The pipes of one creation and the named steps spoken over them.

    Made by the parent before the fork; each side then calls :meth:`child_side`
    or :meth:`parent_side`, which closes the other side's ends."""

    def __init__(self):
        self._fds = {}
        self._reader = None
        try:
            for a, b in (("c2p_r", "c2p_w"), ("p2c_r", "p2c_w"), ("go_r", "go_w"), ("status_r", "status_w")):
                self._fds[a], self._fds[b] = os.pipe2(os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise

    @classmethod
    def child_ends(cls, fds: dict) -> Handshake:
        """The child's side made of its ends alone (handed to the fork server: :mod:`forkserver`)."""
        hs = cls.__new__(cls)
        hs._fds, hs._reader = {end: fds[end] for end in CHILD_ENDS}, None
        return hs

    def fd(self, end: str) -> int:
        return self._fds.get(end, -1)

    def _close(self, *ends) -> None:
        for end in ends:
            fd = self._fds.pop(end, -1)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def close(self) -> None:
        """Close every end this side still holds."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._close(*list(self._fds))

    # -- the child (C, then the init I) --------------------------------------------------
    def child_side(self) -> None:
        self._close(*PARENT_ENDS)

    def send(self, step: Step, **fields) -> None:
        data = (json.dumps(dict(fields, step=step.value)) + "\n").encode()
        fd = self._fds["c2p_w"]
        while data:
            data = data[os.write(fd, data):]

    def send_error(self, exc: BaseException) -> None:
        self.send(Step.ERROR, **errors.to_payload(exc))

    def wait_ack(self) -> None:
        """Wait for P's ACK (after USER, TIME or ROOT); exit at once when P is gone."""
        if _read_byte(self._fds["p2c_r"]) != ACK:
            os._exit(1)

    def wait_done(self) -> None:
        """Wait until P pinned our namespaces (DONE) or died."""
        _read_byte(self._fds["p2c_r"])

    def wait_go(self) -> None:
        """The init waits until P recorded the guest (GO); exit at once when P is gone."""
        if _read_byte(self._fds["go_r"]) != GO:
            os._exit(1)

    def status_fd(self) -> int:
        """The init's end of the status pipe (kept open across exec: EOF tells P it exec'd)."""
        return self._fds["status_w"]

    # -- the parent (P) ------------------------------------------------------------------
    def parent_side(self) -> None:
        self._close(*CHILD_ENDS)
        self._reader = os.fdopen(self._fds.pop("c2p_r"), "rb", buffering=0)

    def receive(self, name: str) -> dict:
        """The child's next message (its ``step`` a :class:`Step`); its error re-raised."""
        line = self._reader.readline()
        if not line:
            raise GuestError("guest %r: the process creating its namespaces died unexpectedly" % name)
        try:
            msg = json.loads(line.decode())
            msg["step"] = Step(msg.get("step"))
        except (ValueError, AttributeError):
            raise GuestError("guest %r: the process creating its namespaces sent %r, not a step" % (name, line[:200])) from None
        if msg["step"] is Step.ERROR:
            raise errors.from_payload(msg)
        return msg

    def ack(self) -> None:
        os.write(self._fds["p2c_w"], ACK)

    def done(self) -> None:
        os.write(self._fds["p2c_w"], DONE)

    def go(self) -> str:
        """Let the init exec; the text of its exec failure ('' when it exec'd)."""
        os.write(self._fds["go_w"], GO)
        self._close("go_w")
        return enter.read_all(self._fds["status_r"]).decode(errors="replace")
