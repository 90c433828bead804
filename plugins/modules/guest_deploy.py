#!/usr/bin/python
# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# This module is implemented entirely by its action plugin (plugins/action/guest_deploy.py),
# which runs on the controller and calls the collection's other modules; this file holds
# its documentation only.

from __future__ import annotations

DOCUMENTATION = r"""
module: guest_deploy
short_description: Run the guest role's steps for all of a host's guests in one task
version_added: 0.1.0
description:
  - The engine of the P(linuxns.guests.guest#role) role. It takes the plan that the
    C(linuxns.guests.guest_plan) filter made from C(guest_list) and runs, on the controller, the module
    calls of every step for all the host's guests, using the modules' list forms.
  - Stop (guests whose state is V(stopped), V(restarted) or V(absent)) - M(linuxns.guests.namespace_info)
    only when a service has a stop command, M(linuxns.guests.guest_enter_exec) for the stop commands,
    then one M(linuxns.guests.namespace_create) O(linuxns.guests.namespace_create#module:state=absent)
    call; absent guests' entries carry C(purge).
  - Start (V(started) and V(restarted) guests) - the role's roots script, then
    M(linuxns.guests.namespace_create) in waves (a guest sharing a listed guest's namespace comes
    after it) and batches with a progress line per batch, then one M(linuxns.guests.namespace_mount)
    and one M(linuxns.guests.netns_link) call.
  - A real run first asks one question about all the guests, in one M(linuxns.guests.namespace_info) call -
    would M(linuxns.guests.namespace_create), M(linuxns.guests.namespace_mount) and M(linuxns.guests.netns_link)
    change anything (its O(linuxns.guests.namespace_info#module:expect), each module's own check mode), and in
    which guests each service runs. When no guest would change, no namespace_create batch runs; when the
    mounts or the links would not change either, their calls do not run; when nothing at all would change (a
    no-change rerun), that one call and the roots script are all the module calls of the task.
  - When the roots script found none of the starting guests' root folders (new guests), that question is
    not asked and the steps run at once; a step with nothing to do reports no change, as after the question.
  - Otherwise one M(linuxns.guests.namespace_info) O(linuxns.guests.namespace_info#module:services) call checks
    from the host, without entering a guest, in which ready guests (not those just made) each service
    already runs; RV(services_to_start) keeps the others, where the role starts the services.
  - In check mode the steps run as separate check-mode calls, so check mode and C(--diff) predict
    the real run; the modules' diffs are returned as a list.
  - The role is the supported way to use this module. It passes its inputs (O(guests), O(state),
    O(roots_dir), O(bridge)), and the plan is made here, before any module call, with the
    C(linuxns.guests.guest_plan) filter's own function, so bad input fails before anything changes, naming
    the role's variables (C(guest_list), C(guest_state)) as the filter does. O(plan) takes a plan already
    made by that filter instead; its format may change between releases.
author:
  - linuxns.guests developers (@linuxns)
options:
  guests:
    description:
      - The guests, as the role's C(guest_list) (see the role's argument spec); planned here with the
        C(linuxns.guests.guest_plan) filter's function and O(state), O(roots_dir), O(bridge) and O(service_dir).
      - Exactly one of O(guests) and O(plan) is required.
    type: list
    elements: dict
  state:
    description:
      - The state of the guests that do not give their own (the role's C(guest_state)), with O(guests).
    type: str
    default: started
  roots_dir:
    description:
      - The folder of the guests' built roots (the role's C(guest_roots_dir)), with O(guests).
    type: path
    default: /var/lib/linuxns/roots
  bridge:
    description:
      - The host bridge the guests' links join (the role's C(guest_bridge)), with O(guests).
    type: str
    default: linuxns0
  plan:
    description:
      - The guests and their steps, as the C(linuxns.guests.guest_plan) filter returns them (instead of O(guests)).
    type: list
    elements: dict
  state_dir:
    description:
      - The state folder the modules use (their O(linuxns.guests.namespace_create#module:state_dir)).
    type: path
    default: /run/linuxns
  table_dir:
    description:
      - The folder of the guests' kept files (their O(linuxns.guests.namespace_create#module:table_dir)).
    type: path
    default: /etc/linuxns/guests
  busybox:
    description:
      - The busybox binary the roots script links into busybox roots.
    type: path
    default: /bin/busybox
  recreate:
    description:
      - Passed to M(linuxns.guests.namespace_create) as its O(linuxns.guests.namespace_create#module:recreate).
    type: bool
    default: false
  batch_size:
    description:
      - Guests per M(linuxns.guests.namespace_create) call within a wave; V(0) is one call per wave.
    type: int
    default: 0
  purge_root:
    description:
      - Remove the root folders of absent guests after they are removed.
    type: bool
    default: false
  userns_pool:
    description:
      - Passed to M(linuxns.guests.namespace_create) as its O(linuxns.guests.namespace_create#module:userns_pool).
    type: str
  service_dir:
    description:
      - Folder inside each init-less guest of its services' pid files (the role's C(guest_service_dir)); it goes into
        the start script of RV(services[].cmd) and the services check
        (M(linuxns.guests.namespace_info) O(linuxns.guests.namespace_info#module:services)).
    type: str
    default: /run/linuxns-services
  service_check_delay:
    description:
      - Seconds a newly started service must stay alive for its start to count as a success (in RV(services[].cmd)).
    type: float
    default: 0.2
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
extends_documentation_fragment:
  - action_common_attributes
  - action_common_attributes.flow
notes:
  - Runs on the controller; the module calls it makes run on the host.
seealso:
  - module: linuxns.guests.namespace_create
  - module: linuxns.guests.namespace_info
  - module: linuxns.guests.namespace_mount
  - module: linuxns.guests.netns_link
"""

EXAMPLES = r"""
# What roles/guest/tasks/main.yml does
- name: Plan, stop, build, create, mount and link the guests
  linuxns.guests.guest_deploy:
    guests: "{{ guest_list }}"
    state: started
    roots_dir: /var/lib/linuxns/roots
    bridge: linuxns0
    batch_size: 50
  register: deployed
"""

RETURN = r"""
steps:
  description: What each call to the host reported (the roots script's and every module call's, the one
    question's too), in order.
  returned: always
  type: list
  elements: dict
  contains:
    step:
      description: The step, in words.
      type: str
      sample: "check the guests' namespaces, mounts, links and services (one call: nothing to change)"
    changed:
      description: Whether the call changed something.
      type: bool
    guests:
      description: How many guests the call was about.
      type: int
    seconds:
      description: The call's wall time on the controller.
      type: float
guests:
  description: M(linuxns.guests.namespace_create)'s per-guest results of the start step.
  returned: always
  type: list
  elements: dict
ready:
  description: The started guests that exist now (in check mode, without those only predicted).
  returned: always
  type: list
  elements: str
services:
  description: The init-less services of the ready guests, grouped by name, argv and stop command.
  returned: always
  type: list
  elements: dict
  contains:
    cmd:
      description: The shell that starts the service in a guest unless it runs (the role runs it with
        M(linuxns.guests.guest_enter_exec); the host's restore service runs the same at boot). It prints
        C(running PID), C(started PID) or, in check mode, C(would start).
      type: str
services_to_start:
  description:
    - RV(services) with, per group, only the guests where the service does not run (or was not checked - guests
      just made); groups left without a guest are left out. Empty in a no-change rerun.
  returned: always
  type: list
  elements: dict
diff:
  description: The modules' diffs, with C(--diff).
  returned: when diff mode is on and a call reported a diff
  type: list
  elements: dict
"""
