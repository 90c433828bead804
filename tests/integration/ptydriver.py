"""Drive a program on a pseudo-terminal like a person at a terminal: type, read the screen, resize.

Used by the tests of ``linuxns-guest enter`` (unit: the program run directly; integration: run by
``ssh -tt`` on a lab host).  Reads wait for a marker the test expects (never for a time): each
``expect`` consumes the output up to and including the marker, so an earlier prompt is never
taken for a later one.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import termios

EXPECT_LIMIT = 60.0  # seconds: only a bound against a hung program, never part of what is asserted


class Terminal:
    def __init__(self, argv, rows: int = 24, cols: int = 80, env=None):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # pragma: no cover - the child
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                os.execvpe(argv[0], list(argv), dict(os.environ, **(env or {})))
            finally:
                os._exit(127)
        self.screen = b""
        self.seen = 0
        self.status = None

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def _read(self, timeout: float) -> bool:
        ready, _w, _x = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            data = b""
        if not data:
            raise EOFError
        self.screen += data
        return True

    def expect(self, marker: str) -> str:
        """The output up to and including ``marker`` (which must appear); consumed."""
        import time

        token = marker.encode()
        end = time.monotonic() + EXPECT_LIMIT
        while token not in self.screen[self.seen:]:
            if time.monotonic() > end:
                raise AssertionError("%r did not appear; the screen after what was read:\n%r" % (marker, self.screen[self.seen:]))
            try:
                self._read(0.5)
            except EOFError:
                raise AssertionError("the program ended before %r appeared; screen:\n%r" % (marker, self.screen[self.seen:])) from None
        at = self.screen.index(token, self.seen) + len(token)
        text = self.screen[self.seen:at].decode(errors="replace")
        self.seen = at
        return text

    def resize(self, rows: int, cols: int) -> None:
        """As a terminal emulator does: the new size on the terminal, SIGWINCH to its foreground job."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.kill(self.pid, signal.SIGWINCH)

    def wait(self) -> int:
        """Read to the end, reap the program; its exit code."""
        try:
            while True:
                self._read(None)
        except EOFError:
            pass
        _pid, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def kill(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.status = -9
