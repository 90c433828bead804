# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception hierarchy of the namespace helper.

Helpers raise these; only a module's ``main()`` turns them into ``fail_json``.
Messages are written for the user: they name the guest or the parameter and
what is wrong.
"""

from __future__ import annotations


class GuestError(Exception):
    """Base class of every error the helper raises on purpose."""

    def __init__(self, msg: str, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details

    def __str__(self) -> str:
        return self.msg

    def with_msg(self, msg: str) -> GuestError:
        """The same error (class, errno, details) with a new message, e.g. prefixed with its guest."""
        err = self.__class__.__new__(self.__class__)
        err.__dict__.update(self.__dict__)  # errno and any attribute of a subclass
        err.msg, err.args, err.details = msg, (msg,), dict(self.details)
        return err


class InvalidInput(GuestError):
    """A parameter value is wrong; nothing was changed."""


class GuestNotFound(GuestError):
    """The guest (by name or context id) does not exist on this host."""


class GuestConflict(GuestError):
    """The guest exists but differs in a way that cannot change in place."""


class GuestStale(GuestError):
    """The guest's state exists but its namespaces or init are gone."""


class KernelError(GuestError):
    """A system call failed; ``errno`` holds the error number."""

    def __init__(self, msg: str, errno: int = 0, **details):
        super().__init__(msg, **details)
        self.errno = errno


class LimitReached(KernelError):
    """A /proc/sys/user/max_*_namespaces limit stopped the operation."""
