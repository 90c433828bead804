# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The class checks of values (model.py's "Values are checked as a class"): strings that
reach the kernel or a file name carry no NUL or control character, numbers are finite and
bounded.

Apart from model.py (which re-exports them) so that what guest_enter_exec imports stays
small: ansible-core parses every module_utils file a module imports when it builds the
module's payload, on the controller, for each ad hoc run (bench/bench_ansiballz.py).

This file imports nothing from Ansible.
"""

from __future__ import annotations

import math

from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput

# The largest number of seconds a wait accepts (poll() takes a C int of milliseconds).
MAX_SECONDS = 2147483


def _ctl_chars(text: str, allow: str = "") -> list:
    return sorted({c for c in text if (ord(c) < 32 or ord(c) == 127) and c not in allow})


def check_text(value, param: str, allow: str = "") -> None:
    """A string that reaches the kernel or a file name: no NUL, no control character."""
    if not isinstance(value, str):
        return
    bad = _ctl_chars(value, allow)
    if bad:
        what = "NUL" if "\0" in bad else "control"
        raise InvalidInput("%s %r must not contain %s characters (%s)" % (param, value, what, ", ".join(repr(c) for c in bad)))


def check_dir(value, param: str, default: str | None = None) -> str:
    """A folder option (state_dir, table_dir): a non-empty absolute path without NUL or
    control characters; ``default`` is named when it is given empty."""
    if not isinstance(value, str):
        raise InvalidInput("%s must be a folder path, not %s" % (param, type(value).__name__))
    if value == "":
        raise InvalidInput("%s must not be empty%s" % (param, " (leave it out for the default %s)" % default if default else ""))
    check_text(value, param)
    if not value.startswith("/"):
        raise InvalidInput("%s %r must be an absolute path" % (param, value))
    return value


def check_number(value, param: str, minimum=None, maximum=None, what: str = "") -> None:
    """A finite number within bounds (nan, inf and huge values refused)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput("%s must be a finite number%s, not %r" % (param, " of" + what if what else "", value))
    if minimum is not None and value < minimum:
        raise InvalidInput("%s %r must be at least %s%s" % (param, value, minimum, what))
    if maximum is not None and value > maximum:
        raise InvalidInput("%s %r must be at most %s%s" % (param, value, maximum, what))


def finite_and_small(value) -> bool:
    """Whether a number converts to both int and float without overflow."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def check_value(field, value, param: str) -> None:
    """The class checks of one (already type-converted) value (``field``: a model.Field; no
    import of model.py for the hint, which would ship it with guest_enter_exec)."""
    if value is None:
        return
    if field.text:
        allow = "\n\t" if field.text == "text" else ""
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            check_text(item, param, allow)
    if field.type in ("int", "float"):
        check_number(value, param, field.minimum, field.maximum, " seconds" if field.type == "float" else "")
