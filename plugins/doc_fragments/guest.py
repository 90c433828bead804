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
