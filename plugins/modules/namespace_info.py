#!/usr/bin/python
# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: namespace_info
short_description: Report the guests on a host, their health, namespaces, mounts and links
version_added: 0.1.0
description:
  - Lists the guests registered on the target host - all of them, or those named - with the same fields
    M(linuxns.guests.namespace_create) returns, plus whether each is running and healthy and, if not, why
    (a pin whose namespace is gone, an init that died or was replaced by another process with the same pid).
  - Reports the namespace relations the kernel gives through the nsfs ioctls (the owning user namespace, the
    parent of a PID or user namespace) and the host's headroom under C(/proc/sys/user/max_*_namespaces).
  - On request, each guest's mount table (read from inside its mount namespace) and its network links.
  - On request (O(services)), which guests' init-less services run, seen from the host without entering any
    guest - the check of the P(linuxns.guests.guest#role) role's service step.
  - On request (O(expect)), whether a M(linuxns.guests.namespace_create), a M(linuxns.guests.namespace_mount)
    and a M(linuxns.guests.netns_link) task with the arguments given would change anything - each run through
    that module's own code in check mode, in this one call (a drift check; the P(linuxns.guests.guest#role)
    role's no-change rerun is this one call).
  - Never changes anything.
author:
  - linuxns.guests developers (@linuxns)
extends_documentation_fragment:
  - linuxns.guests.guest
  - linuxns.guests.guest.INFO_ATTRIBUTES
options:
  name:
    description:
      - Report only this guest (name or context id).
    type: str
    aliases: [guest]
  guests:
    description:
      - Report only these guests (names or context ids).
    type: list
    elements: str
  mounts:
    description:
      - Include each running guest's mount table as the kernel reports it (C(/proc/PID/mountinfo)).
    type: bool
    default: false
  links:
    description:
      - Include each running guest's network links and addresses (read inside its network namespace).
    type: bool
    default: false
  services:
    description:
      - Check, for each service, in which of its guests it runs, without entering them. A guest passes when its
        PID 1 is its recorded init (in the guest's pinned PID and mount namespaces) and, read inside that init's
        root, the pid file O(service_dir)C(/NAME.pid) holds a pid whose C(/proc/PID/cmdline) (the guest's
        C(/proc)), NULs read as spaces, is O(services[].argv) joined by spaces plus a space - the test the
        P(linuxns.guests.guest#role) role's service shell makes inside the guest. Every other guest is listed
        in RV(services[].enter).
      - Given without O(name) and O(guests), only RV(services) (and RV(expect), when asked) is returned (the guests
        are not described).
    type: list
    elements: dict
    suboptions:
      name:
        description: The service's name (its pid file is O(service_dir)C(/NAME.pid)).
        type: str
        required: true
      argv:
        description: The service's command as a list of arguments.
        type: list
        elements: str
        required: true
      guests:
        description: The guests (names) to check it in.
        type: list
        elements: str
        required: true
  service_dir:
    description:
      - The folder of the services' pid files inside the guests, for O(services).
    type: str
    default: /run/linuxns-services
  expect:
    description:
      - Check whether these tasks would change anything, without changing anything. The keys are
        C(namespace_create), C(namespace_mount) and C(netns_link) (any of them); each holds the arguments of one
        task of that module, exactly as the task would give them (the single form or the list form). Each is
        validated against that module's own argument spec, then run through that module's own code in check mode.
        RV(expect) holds each module's check-mode result and whether any of them would change something.
      - O(state_dir) is this module's; a task's arguments may not give their own.
      - The arguments of every task are validated before any is checked. A mistake fails the call with a
        message that starts with the task (as C(expect.netns_link)) and names the option; so does an error the
        check of a task meets (a guest that does not exist for namespace_mount, an address another link holds
        for netns_link).
      - Given without O(name) and O(guests), only RV(expect) (and RV(services), when asked) is returned.
    type: dict
seealso:
  - module: linuxns.guests.namespace_create
"""

EXAMPLES = r"""
- name: All guests on the host
  linuxns.guests.namespace_info:
  register: info

- name: Fail when a guest is not healthy
  ansible.builtin.assert:
    that: info.guests | rejectattr('healthy') | list | length == 0
    fail_msg: "{{ info.guests | rejectattr('healthy') | map(attribute='problems') | list }}"

- name: One guest by context id, with its mounts and links
  linuxns.guests.namespace_info:
    name: "102"
    mounts: true
    links: true

# A drift check, in one call and without check mode: would the deployment's tasks change anything?
- name: Does the host still match what the web guests' tasks declare?
  linuxns.guests.namespace_info:
    expect:
      namespace_create:
        guests:
          - {name: web1, hostname: web1}
          - {name: web2, hostname: web2}
      netns_link:
        links:
          - {guest: web1, ifname: eth0, addresses: [198.18.5.11/24], peer: {ifname: ve-web1, bridge: br0}}
          - {guest: web2, ifname: eth0, addresses: [198.18.5.12/24], peer: {ifname: ve-web2, bridge: br0}}
  register: drift

- name: Report the drift
  ansible.builtin.debug:
    msg: "{{ drift.expect.netns_link.links | selectattr('changed') | map(attribute='action') | list }}"
  when: drift.expect.changed
"""

RETURN = r"""
guests:
  description: The guests found, sorted by name (or in the order asked for).
  returned: unless O(services) or O(expect) is given alone
  type: list
  elements: dict
  contains:
    name:
      description: Guest name.
      type: str
      sample: web1
    context_id:
      description: Context id.
      type: int
      sample: 2
    namespaces:
      description:
        - Each namespace type with its inode, pin path, share source and, for a running guest, the inode of its
          owning user namespace (C(owner_user_ns)) and of its parent (C(parent), PID and user namespaces).
        - C(owner_uid) is the host uid that made the owning user namespace (C(NS_GET_OWNER_UID)). For a guest with a
          user namespace of its own (O(linuxns.guests.namespace_create#module:userns)), every other namespace's
          C(owner_user_ns) is the inode of its C(user) namespace.
      type: dict
      sample: {"pid": {"inode": 4026532249, "pin": "/run/linuxns/guests/web1/ns/pid", "shared_from": null,
                       "owner_user_ns": 4026531837, "owner_uid": 0, "parent": 4026531836}}
    private_namespaces:
      description: Namespace types created for this guest.
      type: list
      elements: str
    share:
      description: Shared namespace types and their sources.
      type: dict
    init_pid:
      description: Host pid of the guest's PID 1, or null.
      type: int
    init:
      description: The init argv of an init-based guest, null for a reaper.
      type: list
      elements: str
    hostname:
      description: Recorded host name.
      type: str
    root:
      description: The guest's root folder on the host, or null.
      type: str
    netns:
      description: The C(/run/netns) path of its network namespace, or null.
      type: str
    userns:
      description: V(auto) for a guest whose user namespace got a private id range from the host's pool, else null.
      type: str
    userns_size:
      description: The size of that range, or null.
      type: int
    userns_range:
      description: The id range of a V(auto) guest - its uid and gid maps are C(0 START SIZE) - or null.
      type: dict
      sample: {"start": 1000000, "size": 65536, "source": "subid:linuxns"}
    userns_root:
      description:
        - How a O(linuxns.guests.namespace_create#module:userns=auto) guest's root is made to work under its mapping
          (V(auto), V(idmap), V(shift), V(none)), or null.
      type: str
    userns_root_done:
      description:
        - What was done for that root when the guest was made - V(idmap) (an idmapped bind mount) or V(shift) (its
          files' owners shifted into the range once) - or null.
      type: str
      sample: idmap
    stop_signal:
      description: The signal that stops the guest (O(linuxns.guests.namespace_create#module:stop_signal)).
      type: str
      sample: SIGTERM
    stop_timeout:
      description: Seconds between the stop signal and C(SIGKILL).
      type: float
      sample: 10.0
    description:
      description: The guest's description (O(linuxns.guests.namespace_create#module:description)), or null.
      type: str
      version_added: 0.1.0
    autostart:
      description: Whether the host's restore service brings the guest back at boot (O(linuxns.guests.namespace_create#module:autostart)).
      type: bool
      version_added: 0.1.0
    privileged:
      description: Whether the guest opted out of the confinement (O(linuxns.guests.namespace_create#module:privileged)).
      type: bool
    capabilities:
      description: Its O(linuxns.guests.namespace_create#module:capabilities) changes to the default set, or null.
      type: dict
    no_new_privs:
      description: Its O(linuxns.guests.namespace_create#module:no_new_privs).
      type: bool
    seccomp:
      description: Its O(linuxns.guests.namespace_create#module:seccomp) - V(default), V(unconfined) or a profile's path.
      type: str
    proc_sys:
      description:
        - The C(/proc) and C(/sys) it got at its creation (a guest with a root) - V(masked) (runc's masked and
          read-only paths, C(/sys) read-only) or V(unmasked) (privileged - neither, C(/sys) read-write); null without
          a root. A change of O(linuxns.guests.namespace_create#module:privileged) changes them only by recreating it.
      type: str
    limits:
      description: Its O(linuxns.guests.namespace_create#module:limits) as recorded (sizes in bytes), or null. What
        the kernel applies is C(limits) of RV(guests[].cgroup).
      type: dict
      version_added: 0.1.0
    cgroup_parent:
      description: Its O(linuxns.guests.namespace_create#module:cgroup_parent) as given.
      type: str
      version_added: 0.1.0
    restart:
      description: Its restart policy (O(linuxns.guests.namespace_create#module:restart)), null for a guest made before it.
      type: str
      version_added: 0.1.0
    restart_delay:
      description: Its O(linuxns.guests.namespace_create#module:restart_delay).
      type: float
      version_added: 0.1.0
    restart_max_delay:
      description: Its O(linuxns.guests.namespace_create#module:restart_max_delay).
      type: float
      version_added: 0.1.0
    restart_max:
      description: Its O(linuxns.guests.namespace_create#module:restart_max).
      type: int
      version_added: 0.1.0
    cgroup:
      description:
        - The guest's cgroup, read from the kernel's cgroup files. Null for a guest made by a version without
          cgroups.
        - C(parent) and C(paths) (the guest's folder in each hierarchy, keyed V(unified) or by the v1 controllers);
          C(version) (V(v2), V(v1) or V(hybrid)); C(frozen); C(memory_current) and C(memory_peak) (bytes);
          C(pids_current); C(cpu_usage_usec); C(oom_kills) (v2 C(memory.events) C(oom_kill), v1
          C(memory.oom_control) C(oom_kill)); C(limits), read back from the kernel in the form of
          O(linuxns.guests.namespace_create#module:limits).
        - A value the kernel does not offer on this host is null. With an C(error) key when the files cannot be
          read (the cgroup is gone).
      type: dict
      sample: {"parent": "auto", "paths": {"memory": "/sys/fs/cgroup/memory/linuxns/web1"}, "version": "hybrid",
               "frozen": false, "memory_current": 1232896, "memory_peak": 2502656, "pids_current": 1,
               "cpu_usage_usec": 10563, "oom_kills": 0, "limits": {"memory": 536870912, "pids": 256}}
      version_added: 0.1.0
    confinement:
      description:
        - What a process entering the guest now gets - the kept capabilities (bounding, effective and permitted set),
          C(no_new_privs), and the seccomp filter (V(default), V(unconfined), or C(profile:) and the first 16 hex
          digits of the profile's SHA-256).
        - With an C(error) key instead when the settings cannot be applied (a profile file gone).
      type: dict
      sample: {"privileged": false, "capabilities": ["CAP_CHOWN", "CAP_KILL"], "no_new_privs": true, "seccomp": "default"}
    confinement_outdated:
      description:
        - The guest's running processes whose settings (C(CapBnd), C(CapAmb), C(NoNewPrivs), C(Seccomp) of
          C(/proc/PID/status)) differ from RV(guests[].confinement) - started before a change of the settings
          (a change applies to processes that enter from then on), the init of a guest changed in place among them.
          Restart them (or recreate the guest) to confine them as the guest now says.
      type: list
      elements: dict
      sample: [{"pid": 4242, "comm": "catatonit", "differences": ["no seccomp filter"]}]
    running:
      description: Whether all its namespaces are held and its init (if any) runs.
      type: bool
    healthy:
      description: Same as RV(guests[].running); false with RV(guests[].problems) saying why.
      type: bool
    problems:
      description: Why the guest is not healthy.
      type: list
      elements: str
      sample: ["its init (pid 4242) is not running"]
    mounts:
      description: The guest's mount table (with O(mounts=true)).
      type: list
      elements: dict
      returned: when O(mounts=true)
    links:
      description: The guest's network links with their addresses (with O(links=true)).
      type: list
      elements: dict
      returned: when O(links=true)
services:
  description: With O(services), per service (in the order given) the guests it runs in and those it does not.
  returned: when O(services) is given
  type: list
  elements: dict
  contains:
    name:
      description: The service's name.
      type: str
    running:
      description: The guests the service runs in, each with the service's pid as the guest sees it.
      type: dict
      sample: {web1: 7}
    enter:
      description:
        - The guests where the check did not find it running (or could not tell) - the role's service shell
          runs in these.
      type: list
      elements: str
expect:
  description:
    - With O(expect), what each task given would do, as a check-mode run of its module reports it.
  returned: when O(expect) is given
  type: dict
  contains:
    changed:
      description: Whether any of the tasks would change something.
      type: bool
      sample: false
    namespace_create:
      description: The result of M(linuxns.guests.namespace_create) in check mode (its RV(linuxns.guests.namespace_create#module:guests), or
        RV(linuxns.guests.namespace_create#module:guest) and RV(linuxns.guests.namespace_create#module:action) for the single form).
      type: dict
      returned: when O(expect) gives C(namespace_create)
    namespace_mount:
      description: The result of M(linuxns.guests.namespace_mount) in check mode.
      type: dict
      returned: when O(expect) gives C(namespace_mount)
    netns_link:
      description: The result of M(linuxns.guests.netns_link) in check mode (its RV(linuxns.guests.netns_link#module:links), or
        RV(linuxns.guests.netns_link#module:link) and RV(linuxns.guests.netns_link#module:action) for the single form).
      type: dict
      returned: when O(expect) gives C(netns_link)
missing:
  description: Guests asked for by O(name) or O(guests) that do not exist.
  returned: unless O(services) or O(expect) is given alone
  type: list
  elements: str
exists:
  description: With O(name), whether that guest exists.
  returned: when O(name) is given
  type: bool
host:
  description: Facts about the host.
  returned: unless O(services) or O(expect) is given alone
  type: dict
  contains:
    state_dir:
      description: The state folder.
      type: str
    guest_count:
      description: Number of guests registered on the host.
      type: int
    limits:
      description:
        - Per namespace type, C(limit) from C(/proc/sys/user/max_TYPE_namespaces), C(used_by_guests) and C(headroom).
      type: dict
    reaper:
      description: The reaper used as PID 1 of init-less guests, or null when only the Python fallback is available.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxns.guests.plugins.module_utils import code_cache

if __name__ == "__main__":
    code_cache.cache_code()  # the collection's modules below come compiled from the cache (the payload has no .pyc)

from ansible_collections.linuxns.guests.plugins.module_utils import expect, services
from ansible_collections.linuxns.guests.plugins.module_utils.common import common_args, new_module, registry_for, run_module
from ansible_collections.linuxns.guests.plugins.module_utils.guest_info import info


def _body(module):
    p = module.params
    services.validate(p["services"], p["service_dir"])
    alone = p["name"] is None and p["guests"] is None  # only what services / expect asked
    registry = registry_for(module)
    result = {"changed": False}
    if p["expect"] is not None:
        result["expect"] = expect.check(registry, p["expect"], module._diff, module.warn)
    if p["services"] is not None:
        result["services"] = services.check(registry, p["services"], p["service_dir"])
    if alone and len(result) > 1:
        return result
    refs = [p["name"]] if p["name"] is not None else p["guests"]
    out = info(registry, refs, p["mounts"], p["links"])
    result.update({"guests": out["guests"], "missing": out["missing"], "host": out["host"]})
    if p["name"] is not None:
        result["exists"] = not out["missing"]
    return result


def main():
    module = new_module(
        AnsibleModule,
        argument_spec=common_args(
            name=dict(type="str", aliases=["guest"]),
            guests=dict(type="list", elements="str"),
            mounts=dict(type="bool", default=False),
            links=dict(type="bool", default=False),
            services=dict(type="list", elements="dict", options=dict(
                name=dict(type="str", required=True),
                argv=dict(type="list", elements="str", required=True),
                guests=dict(type="list", elements="str", required=True),
            )),
            service_dir=dict(type="str", default="/run/linuxns-services"),
            expect=dict(type="dict"),
        ),
        mutually_exclusive=[("name", "guests")],
        supports_check_mode=True,
    )
    run_module(module, _body)


if __name__ == "__main__":
    main()
