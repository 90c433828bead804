# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a running process has of its confinement (confine.py), read back from /proc for
namespace_info: :func:`status`, and :func:`differences` against a guest's Confinement.

Apart from confine.py, which every entering process (and guest_enter_exec's payload,
parsed on the controller at each ad hoc run) needs, so that those do not carry it.

Stdlib only; no Ansible import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ansible_collections.linuxns.guests.plugins.module_utils.confine import cap_name
from ansible_collections.linuxns.guests.plugins.module_utils.errors import KernelError

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from ansible_collections.linuxns.guests.plugins.module_utils.confine import Confinement


# ---------------------------------------------------------------------------------------
# reading it back
# ---------------------------------------------------------------------------------------
SECCOMP_MODES = {0: "disabled", 1: "strict", 2: "filter"}


def decode_caps(mask: int) -> list:
    return [cap_name(n) for n in range(64) if mask >> n & 1]


def status(pid="self") -> dict:
    """CapBnd/CapEff/CapPrm/CapInh/CapAmb (names), NoNewPrivs, Seccomp, Seccomp_filters of a process.

    Raises KernelError when the process is gone.
    """
    path = "/proc/%s/status" % pid
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise KernelError("cannot read %s: %s" % (path, e.strerror), errno=e.errno or 0)
    out = {"pid": pid}
    for line in text.splitlines():
        key, _sep, value = line.partition(":")
        value = value.strip()
        if key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            out[key] = decode_caps(int(value, 16))
        elif key == "NoNewPrivs":
            out[key] = value == "1"
        elif key == "Seccomp":
            out[key] = SECCOMP_MODES.get(int(value), value)
        elif key == "Seccomp_filters":
            out[key] = int(value)
    return out


def differences(confinement: Confinement, st: dict) -> list:
    """Why a process read by :func:`status` does not match ``confinement`` (empty: it matches).

    Only what the kernel shows is compared: a filter's presence, not which filter it is.
    """
    out = []
    want = list(confinement.capabilities)
    # a privileged guest keeps whatever the host's entering process has: nothing was cut to compare
    if not confinement.privileged and st.get("CapBnd") != want:
        extra = sorted(set(st.get("CapBnd", [])) - set(want))
        missing = sorted(set(want) - set(st.get("CapBnd", [])))
        out.append("bounding set differs (extra: %s; missing: %s)" % (", ".join(extra) or "-", ", ".join(missing) or "-"))
    if not confinement.privileged and st.get("CapAmb"):
        out.append("ambient capabilities %s" % ", ".join(st["CapAmb"]))
    if confinement.no_new_privs and not st.get("NoNewPrivs"):
        out.append("no_new_privs is off")
    if confinement.filter and st.get("Seccomp") != "filter":
        out.append("no seccomp filter")
    if not confinement.filter and st.get("Seccomp") == "filter" and confinement.privileged:
        out.append("a seccomp filter is installed on a privileged guest's process")
    return out
