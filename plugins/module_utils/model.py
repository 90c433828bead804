# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one table of a guest's fields, in the spirit of community.docker's
``Option``/``OptionGroup``.

Each row says what a field is (Ansible type, elements, choices, bounds), what
a new guest gets when it is left out, how a change is made (in place, or only
by ``recreate``), and where it is shown (the result's guest, the diff).  The
argument spec of namespace_create (single form and the entries of
``guests:``), the plan's split between replace and in place, and the views
all come from here.  Adding a field is one row, plus the code that applies it
when it is not simply recorded in the guest's metadata.

Values are checked as a class, before anything changes: strings that reach
the kernel or a file name carry no NUL or control character, numbers are
finite and bounded.  See :func:`check_value`.

This file imports nothing from Ansible.
"""

from __future__ import annotations

from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.checks import (  # noqa: F401 - re-exported  # pylint: disable=unused-import
    MAX_SECONDS,
    check_dir,
    check_number,
    check_text,
    check_value,
    finite_and_small,
)

# time_offsets: the kernel takes a 64-bit nanosecond count per clock (KTIME_MAX / 2, about 146 years).
MAX_TIME_OFFSET = 2 ** 62 // 10 ** 9

# restart: what the supervisor does when a guest's init exits (podman's and Docker's names).
RESTART_POLICIES = ("no", "on-failure", "always")

# How a field's change is made on an existing guest.
IN_PLACE = "in_place"
RECREATE = "recreate"


class Field:
    """One row of a field table."""

    __slots__ = (
        "change",
        "choices",
        "default",
        "diff",
        "elements",
        "keep",
        "maximum",
        "minimum",
        "name",
        "result",
        "spec_default",
        "text",
        "type",
    )

    def __init__(self, name: str, type: str, elements: str | None = None, choices=None, default=None,
                 spec_default: bool = False, change: str | None = None, keep: bool = False, result: bool = False,
                 diff: bool = False, minimum=None, maximum=None, text: str | None = None) -> None:
        self.name = name
        self.type = type  # Ansible type: str, int, float, bool, list, dict, path, raw
        self.elements = elements  # of a list
        self.choices = choices
        # What a new guest gets when the field is left out; with spec_default it
        # is also the argument spec's default (else None there means "not given").
        self.default = default
        self.spec_default = spec_default
        self.change = change  # IN_PLACE | RECREATE | None (an option, not a field of the guest)
        self.keep = keep  # left out: an existing guest keeps its value (else it gets the default)
        self.result = result  # shown in the result's guest (and by namespace_info)
        self.diff = diff  # shown in the diff (and recorded: every diff field is in the metadata)
        self.minimum, self.maximum = minimum, maximum  # bounds of a number (inclusive)
        # Strings (or list elements): "line" = no control character at all, "text" = newline and tab allowed.
        self.text = text

    def arg_spec(self, with_default: bool = True) -> dict:
        """This field's entry of an Ansible argument spec."""
        spec = {"type": self.type}
        if self.elements:
            spec["elements"] = self.elements
        if self.choices:
            spec["choices"] = list(self.choices)
        if with_default and self.spec_default:
            spec["default"] = list(self.default) if isinstance(self.default, tuple) else self.default
        return spec


# ---------------------------------------------------------------------------------------
# The guest (namespace_create, shown by namespace_info)
# ---------------------------------------------------------------------------------------
GUEST = (
    Field("name", "str", result=True, diff=True, text="line"),
    # Its range (registry.CONTEXT_ID_MIN..MAX) is checked by registry.validate_context_id, with its own words.
    Field("context_id", "int", change=RECREATE, keep=True, result=True, diff=True),
    Field("namespaces", "list", elements="str", choices=sc.NS_TYPES, default=("mnt", "uts", "ipc", "net", "pid"),
          spec_default=True, change=RECREATE, diff=True),
    Field("share", "dict", change=RECREATE, result=True, diff=True),
    Field("hostname", "str", change=IN_PLACE, result=True, diff=True, text="line"),
    Field("root", "path", change=RECREATE, result=True, diff=True, text="line"),
    Field("uid_map", "list", elements="str", change=RECREATE, diff=True, text="line"),
    Field("gid_map", "list", elements="str", change=RECREATE, diff=True, text="line"),
    # userns: auto - a private id range from the host's pool (userns.py); the maps become "0 START SIZE".
    Field("userns", "str", choices=("auto",), change=RECREATE, result=True, diff=True),
    Field("userns_size", "int", change=RECREATE, result=True, diff=True, minimum=1, maximum=2 ** 32 - 2),
    # how a userns: auto guest's root is made to work under its mapping (userns.ROOT_MODES; guest_create)
    Field("userns_root", "str", choices=("auto", "idmap", "shift", "none"), change=RECREATE, result=True, diff=True),
    Field("time_offsets", "dict", change=RECREATE, diff=True),
    Field("init", "list", elements="str", change=RECREATE, result=True, diff=True, text="line"),
    Field("stop_signal", "str", default="SIGTERM", change=IN_PLACE, keep=True, result=True, diff=True, text="line"),
    Field("stop_timeout", "float", default=10.0, change=IN_PLACE, keep=True, result=True, diff=True,
          minimum=0, maximum=MAX_SECONDS),
    Field("description", "str", change=IN_PLACE, keep=True, result=True, diff=True, text="text"),
    # Confinement of every process that enters the guest (confine.py); left out: the default.
    Field("privileged", "bool", default=False, change=IN_PLACE, result=True, diff=True),
    Field("capabilities", "dict", change=IN_PLACE, result=True, diff=True),
    Field("no_new_privs", "bool", default=True, change=IN_PLACE, result=True, diff=True),
    Field("seccomp", "str", default="default", change=IN_PLACE, result=True, diff=True, text="line"),
    # The guest's cgroup (guest_spec.parse_limits, cgroups.py): limits change in place, the parent only by recreating.
    Field("limits", "dict", change=IN_PLACE, keep=True, result=True, diff=True),
    Field("cgroup_parent", "str", default="auto", change=RECREATE, keep=True, result=True, diff=True, text="line"),
    # The restart policy of its init (supervisor.py, one process per host): what the supervisor does when the
    # init exits - restart it after a doubling delay, or dispose of the guest; all change in place.
    Field("restart", "str", choices=RESTART_POLICIES, default="no", change=IN_PLACE, keep=True, result=True, diff=True),
    Field("restart_delay", "float", default=1.0, change=IN_PLACE, keep=True, result=True, diff=True,
          minimum=0, maximum=MAX_SECONDS),
    Field("restart_max_delay", "float", default=60.0, change=IN_PLACE, keep=True, result=True, diff=True,
          minimum=0, maximum=MAX_SECONDS),
    Field("restart_max", "int", default=0, change=IN_PLACE, keep=True, result=True, diff=True, minimum=0, maximum=2 ** 31 - 1),
    # Brought back at boot by the host's restore service (boot.py, saved in TABLE_DIR/NAME/guest.json).
    Field("autostart", "bool", default=False, change=IN_PLACE, keep=True, result=True, diff=True),
    # The services of an init-less guest (services.py: [{name, argv, pid_dir}]), recorded and saved so that the restore
    # service starts them at boot; the guest role starts them (guest_enter_exec), namespace_create does not.
    Field("services", "list", elements="dict", change=IN_PLACE, keep=True, diff=True),
    Field("recreate", "bool", default=False, spec_default=True),
    Field("state", "str", choices=("present", "absent", "frozen"), default="present", spec_default=True),
    Field("purge", "bool", default=False, spec_default=True),
    # Signal every process of the guest but its init (guests.py); an option, not a field.
    Field("signal_all", "str", text="line"),
)
GUEST_BY_NAME = {f.name: f for f in GUEST}
GUEST_KEYS = tuple(GUEST_BY_NAME)  # the per-guest options (the entries of guests:)
RECORDED = tuple(f.name for f in GUEST if f.change)  # fields of the guest's metadata
REPLACED = tuple(f.name for f in GUEST if f.change == RECREATE)  # change only by recreating
CHANGED_IN_PLACE = tuple(f.name for f in GUEST if f.change == IN_PLACE)
KEPT = tuple(f.name for f in GUEST if f.keep)
RESULT_KEYS = tuple(f.name for f in GUEST if f.result)
DIFF_KEYS = tuple(f.name for f in GUEST if f.diff)


def default(name: str, fields=GUEST):
    """The value a new guest gets when ``name`` is left out (a list for namespaces)."""
    by_name = GUEST_BY_NAME if fields is GUEST else {f.name: f for f in fields}  # GUEST's: once, not per call (24 a guest)
    value = by_name[name].default
    return list(value) if isinstance(value, tuple) else value


def argument_spec(fields=GUEST, entry: bool = False) -> dict:
    """An Ansible argument spec from a field table.

    ``entry=True`` gives the spec of one entry of a list form: no defaults
    (the task's top-level options are the entries' defaults).
    """
    return {f.name: f.arg_spec(with_default=not entry) for f in fields}
