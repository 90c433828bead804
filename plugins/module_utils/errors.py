# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception hierarchy of the namespace helper.

Helpers raise these; only a module's ``main()`` turns them into ``fail_json``.
Messages are written for the user: they name the guest or the parameter and
what is wrong.
"""

from __future__ import annotations

# The entry program's failure report (the connection plugin reads it on the controller):
# it exits with ENTRY_ERROR_RC after one stderr line ENTRY_ERROR_MARK + json(to_payload(exc)).
ENTRY_ERROR_RC = 251
ENTRY_ERROR_MARK = "LINUXNS-ENTRY-ERROR "


class GuestError(Exception):
    """Base class of every error the helper raises on purpose."""

    errno = 0

    def __init__(self, msg: str, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details

    def __str__(self) -> str:
        return self.msg

    def with_message(self, msg: str) -> GuestError:
        """A copy with another message; class, errno and details are kept."""
        new = type(self).__new__(type(self), msg)
        new.__dict__.update(self.__dict__)
        new.args = (msg,)
        new.msg = msg
        new.details = dict(self.details)
        return new

    def with_prefix(self, prefix: str) -> GuestError:
        """A copy whose message is ``prefix`` + this one's (class, errno and details kept)."""
        return self.with_message(prefix + self.msg)

    def for_guest(self, name: str) -> GuestError:
        """A copy whose message names guest ``name`` (``guest 'NAME': ...`` unless it already does);
        class, errno and details are kept: the one way an error is re-raised for a guest or entry."""
        if repr(name) in self.msg:
            return self.with_message(self.msg)
        return self.with_prefix("guest %r: " % (name,))


class InvalidInput(GuestError):
    """A parameter value is wrong; nothing was changed."""


class GuestNotFound(GuestError):
    """The guest (by name or context id) does not exist on this host."""


class GuestConflict(GuestError):
    """The guest exists but differs in a way that cannot change in place."""


class GuestStale(GuestError):
    """The guest's state exists but its namespaces or init are gone."""


class RecordTooNew(GuestError):
    """A guest's record was written by a newer version of the collection; it is not read."""


class KernelError(GuestError):
    """A system call failed; ``errno`` holds the error number."""

    def __init__(self, msg: str, errno: int = 0, **details):
        super().__init__(msg, **details)
        self.errno = errno


class LimitReached(KernelError):
    """A /proc/sys/user/max_*_namespaces limit stopped the operation."""


class MountBusy(KernelError):
    """An unmount failed with EBUSY; ``details``: ``path`` and (once known) ``holders``."""


class ExecFailed(KernelError):
    """The guest was entered but its command could not be executed (execve failed); ``details["rc"]`` is the shell's code (126/127)."""


class PathError(InvalidInput):
    """A path inside the guest cannot be read or written (a task's failure, not the connection's)."""


def to_payload(exc: BaseException) -> dict:
    """The JSON form of an error, sent across a pipe or the entry program's stderr."""
    if isinstance(exc, GuestError):
        return {"error": exc.msg, "class": type(exc).__name__, "errno": exc.errno, "details": exc.details}
    if isinstance(exc, OSError):
        return {"error": "%s: %s" % (exc.strerror or exc, exc.filename or ""), "class": "KernelError", "errno": exc.errno or 0, "details": {}}
    return {"error": "%s: %s" % (type(exc).__name__, exc), "class": "GuestError", "errno": 0, "details": {}}


def from_payload(payload: dict) -> GuestError:
    """The error :func:`to_payload` described: same class (GuestError when unknown), message, errno, details."""
    cls = globals().get(payload.get("class") or "")
    if not (isinstance(cls, type) and issubclass(cls, GuestError)):
        cls = GuestError
    details = payload.get("details") or {}
    if not isinstance(details, dict):
        details = {}
    msg = str(payload.get("error", ""))
    if issubclass(cls, KernelError):
        return cls(msg, errno=payload.get("errno") or 0, **details)
    return cls(msg, **details)
