# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Options every module of the collection shares.
    DOCUMENTATION = r"""
options:
  state_dir:
    description:
      - Folder on the target host where guests are registered (metadata, namespace pins, context ids, locks).
      - It is made a private bind mount of itself so that the pins under it never propagate.
      - The default lives in C(/run), so a reboot forgets every guest, as it should (their namespaces are gone too).
    type: path
    default: /run/linuxns
requirements:
  - Linux on the target host, run as root (C(become) or root login).
  - Python 3.9 or newer on the target.
notes:
  - A guest is referred to by its name or by its context id; a string of digits always means a context id.
"""

    # The result option of every list form that changes state (namespace_create, namespace_mount, netns_link).
    LIST_RESULT = r"""
options:
  return_unchanged:
    description:
      - With a list form, whether the result lists the entries that did not change (and would not, in check mode).
      - V(false) returns only the entries that changed, and the number of the others in RV(ignore:unchanged); with
        C(--diff), a by-name diff likewise leaves out the entries whose before and after are equal. Only the result
        is smaller - what the task checks and changes is the same.
      - For big lists. A no-change run of M(linuxns.guests.namespace_create) returns about 2 KB per guest, which the
        module, the connection and the controller each handle again. At 3000 guests such a rerun took 3.4 s returning
        every guest and 1.7 s with V(false) (C(bench/bench_scale.py --brief), docs/performance.md).
      - The single form always returns its one entry.
    type: bool
    default: true
    version_added: 0.1.0
"""

    # The attributes block shared by state-changing modules.
    ATTRIBUTES = r"""
attributes:
  check_mode:
    support: full
    description: Predicts exactly what a real run would change, without changing anything.
  diff_mode:
    support: full
    description: Shows the guest (or mount, link) before and after.
  idempotent:
    support: full
    description: A second identical run reports C(changed=false) and touches nothing.
  platform:
    support: full
    platforms: posix
    description: Linux only (namespaces, mount API, netlink).
"""

    # The attributes block of read-only (info) modules.
    INFO_ATTRIBUTES = r"""
attributes:
  check_mode:
    support: full
    description: Changes nothing, so it runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff.
  idempotent:
    support: full
    description: Never changes anything.
  platform:
    support: full
    platforms: posix
    description: Linux only.
"""
