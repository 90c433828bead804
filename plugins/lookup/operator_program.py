# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: operator_program
short_description: The text of linuxns-guest, the operator's command on a host
version_added: 0.2.0
description:
  - Returns the program C(linuxns-guest) built from the collection's own module_utils (one file, run with the host's
    Python; no copy of the collection and no Ansible needed on the host). The role C(linuxns.guests.guest_host) writes
    it to C(/usr/local/sbin/linuxns-guest).
  - See the collection's C(docs/lifecycle-operator.md) for its commands and exit codes.
options:
  python:
    description: The host's Python, written into the program's C(#!) line.
    type: str
    default: /usr/bin/python3
  cache_dir:
    description:
      - Where the program keeps the compiled code of its embedded module_utils, so that a run after the first one does
        not compile them again (a faster start). It trusts the folder only when it and every folder above it are root's
        and writable by no one else (a sticky folder above, such as C(/tmp), is allowed); else it compiles as without one.
      - An empty string - no cache.
    type: str
    default: /var/cache/linuxns-guest
    version_added: 0.2.0
author:
  - linuxns.guests developers (@linuxns)
"""

EXAMPLES = r"""
- name: Install linuxns-guest
  ansible.builtin.copy:
    content: "{{ lookup('linuxns.guests.operator_program', python='/usr/bin/python3', cache_dir='/var/cache/linuxns-guest') }}"
    dest: /usr/local/sbin/linuxns-guest
    mode: "0755"
"""

RETURN = r"""
_raw:
  description: The program's text (one element).
  type: list
  elements: str
"""

from ansible.plugins.lookup import LookupBase

from ansible_collections.linuxns.guests.plugins.plugin_utils.operator_program import program_text


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        return [program_text(self.get_option("python"), cache_dir=self.get_option("cache_dir") or None)]
