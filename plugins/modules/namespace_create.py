#!/usr/bin/python
# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: namespace_create
short_description: Create or remove guests - named, pinned sets of Linux namespaces
version_added: 0.1.0
description:
  - Creates a I(guest) on the target host - a named set of Linux namespaces with a numeric context id, in the spirit
    of util-vserver - or removes one.
  - Each namespace is pinned by bind-mounting C(/proc/PID/ns/TYPE) onto a file under O(state_dir), so the guest
    lives without any process in it. When the guest has a PID namespace its PID 1 is a tiny reaper
    (C(catatonit -P) when installed) or the init given in O(init).
  - The guest's network namespace is also visible as C(/run/netns/NAME), so C(ip netns exec NAME ...) and
    C(nsenter --net=/run/netns/NAME) work on it. Loopback is brought up in a new network namespace.
  - With O(root), the guest gets its own C(/) - a recursive bind of the folder onto itself (a chroot barrier),
    C(pivot_root), the old root detached, a fresh C(/proc) and a minimal C(/dev) (tmpfs with the null, zero, full,
    random, urandom and tty nodes bound from the host, devpts, shm).
  - Use the list form O(guests) to create or remove hundreds of guests in one task; Ansible's per-task overhead
    is far larger than the kernel work.
  - Every change to one guest happens under its lock; a run that fails or is killed leaves nothing behind that
    the next run does not clean up.
  - Every program that enters a guest - its init or reaper, M(linuxns.guests.guest_enter_exec), the
    C(linuxns.guests.guest) connection, the P(linuxns.guests.guest#role) role's services - is confined as the
    guest says (O(privileged), O(capabilities), O(no_new_privs), O(seccomp)); by default a cut capability bounding
    set, no_new_privs and a seccomp filter modelled on Docker's. See C(docs/security.md) and C(docs/confinement.md).
author:
  - linuxns.guests developers (@linuxns)
extends_documentation_fragment:
  - linuxns.guests.guest
  - linuxns.guests.guest.ATTRIBUTES
  - linuxns.guests.guest.LIST_RESULT
options:
  name:
    description:
      - Name of the guest. Letters, digits, C(_), C(.) and C(-), at most 63 characters, not all digits (a string of
        digits always means a context id), not starting with C(.) or C(-).
      - Exactly one of O(name) and O(guests) is required.
    type: str
  guests:
    description:
      - The list form. Each entry is a dict with the per-guest options of this module (O(name), O(context_id),
        O(namespaces), O(share), O(hostname), O(root), O(uid_map), O(gid_map), O(userns), O(userns_size), O(userns_root),
        O(time_offsets), O(init),
        O(stop_signal), O(stop_timeout), O(description), O(privileged), O(capabilities), O(no_new_privs), O(seccomp),
        O(limits), O(cgroup_parent), O(restart), O(restart_delay), O(restart_max_delay), O(restart_max),
        O(autostart), O(services), O(recreate), O(state), O(purge), O(signal_all)), or just a guest name (or context id).
      - Options given at the top level of the task are defaults for every entry.
      - All entries are validated and planned before anything changes.
      - Then they are carried out in their order, and the task stops at the first entry that fails. The entries
        before it stay done and are reported in the failure's C(results), the failing guest is rolled back, and
        nothing of the entries after it is left.
      - A task that creates 16 guests or more makes its new guests several at a time (as many as the host's CPUs
        plus one, 2 to 4); the results, the diff and the context ids new guests get are in the entries' order all
        the same, and a guest after a failing entry that was made meanwhile is removed again (its context id stays
        kept for it in O(table_dir), as for any removed guest).
    type: list
    elements: raw
  context_id:
    description:
      - Numeric context id of the guest, 2-65535, unique on the host (0 is the host, 1 is reserved).
      - When not given, an existing guest keeps its own, and a new guest gets the id it kept in
        C(TABLE_DIR/NAME/context_id) (O(table_dir)) when no other guest holds it, else the lowest id that no guest
        holds and no other guest keeps there. So a guest made again, also after a reboot, gets its old id back.
      - The id a guest gets is kept in C(TABLE_DIR/NAME/context_id). An id that another guest keeps there fails;
        O(purge) forgets a removed guest's kept id.
    type: int
  namespaces:
    description:
      - The namespace types the guest gets privately (new ones).
      - A type that is also in O(share) is joined, never created.
    type: list
    elements: str
    choices: [mnt, uts, ipc, net, pid, cgroup, time, user]
    default: [mnt, uts, ipc, net, pid]
  share:
    description:
      - Namespaces joined instead of created, as a dict of namespace type to either another guest (its name or
        context id) or the path of a namespace file such as C(/run/netns/x) or C(/proc/PID/ns/net).
      - Like util-vserver's C(ln .../vserver1/network new/network) composition, for example a guest that uses
        another guest's network.
    type: dict
  hostname:
    description:
      - Host name inside the guest; needs a private C(uts) namespace. Defaults to the guest name.
      - Changing it changes the running guest in place.
    type: str
  root:
    description:
      - Absolute path of a host folder that becomes the guest's C(/). Needs a private C(mnt) namespace.
      - Needs a private C(pid) namespace too, unless O(privileged=true) - without one C(/proc/1/root) leads to the
        host's C(/).
      - Missing C(proc) and C(dev) folders are created in it.
    type: path
  uid_map:
    description:
      - For a private C(user) namespace, lines C(inside outside count), written before anything runs in the guest.
      - Defaults to C(0 0 1) (root inside is root outside).
    type: list
    elements: str
  gid_map:
    description:
      - Like O(uid_map), for group ids.
    type: list
    elements: str
  userns:
    description:
      - V(auto) makes the guest an unprivileged one - root in the guest is an unprivileged id on the host - like
        Podman's C(--userns=auto) and systemd-nspawn's C(--private-users=pick). It adds C(user) to O(namespaces) and
        gives the guest a private range of O(userns_size) ids from the host's pool (O(userns_pool), or the ranges that
        C(/etc/subuid) and C(/etc/subgid) give O(userns_pool_owner)). Its maps are C(0 START SIZE) for uids and gids,
        written before anything runs in the guest.
      - The range overlaps no range another guest keeps and no id of the host's users and groups. It is kept in
        C(TABLE_DIR/NAME/userns) (O(table_dir)), so the guest gets it back when it is made again (recreate, reboot);
        O(purge) releases it. It is shown as RV(guest.userns_range).
      - Not with O(uid_map), O(gid_map) or C(share.user). Changing it replaces the guest (O(recreate)).
      - See C(docs/userns.md).
    type: str
    choices: [auto]
    version_added: 0.1.0
  userns_size:
    description:
      - With O(userns=auto), how many ids the guest gets. Defaults to V(65536) (ids 0-65535 inside, as nspawn and
        CRI-O give; Podman's rootful default is 1024).
      - Changing it replaces the guest (O(recreate)).
    type: int
    version_added: 0.1.0
  userns_root:
    description:
      - With O(userns=auto) and a O(root), how the root's files are made to work under the guest's mapping.
      - V(idmap) binds the root as an idmapped mount (C(mount_setattr) with C(MOUNT_ATTR_IDMAP), kernel 5.12+, on a
        filesystem that supports it, such as ext4, xfs, btrfs or tmpfs). The files keep their owners on disk (host uid
        0 is guest root) and what guest root writes belongs to host uid 0 on disk. A root that cannot be idmapped fails
        the creation and changes nothing.
      - V(shift) changes the owner of every file of the root (one filesystem) whose uid or gid is below O(userns_size)
        into the guest's range (C(START + id)), once; C(TABLE_DIR/NAME/userns-shift) records it, so a recreate or a
        reboot does not shift again. Files the guest creates belong to its range on disk.
      - V(auto) (the default with a root) is V(idmap) where the kernel and the filesystem allow it, else V(shift).
      - V(none) leaves the root as it is (host-owned files show as C(nobody) in the guest).
      - What was done is RV(guest.userns_root_done). Changing it replaces the guest (O(recreate)).
      - See C(docs/userns.md).
    type: str
    choices: [auto, idmap, shift, none]
    version_added: 0.1.0
  time_offsets:
    description:
      - For a private C(time) namespace, offsets in seconds of the C(monotonic) and C(boottime) clocks, set before
        the first process enters.
    type: dict
  init:
    description:
      - The argv of the guest's PID 1 for an init-based guest, looked up inside the guest (for example
        V([/sbin/init]) or V([/bin/busybox, init])). Needs a private C(pid) namespace.
      - When not given, the guest's PID 1 is a reaper that does nothing but reap orphans (an init-less guest).
    type: list
    elements: str
  stop_signal:
    description:
      - How O(state=absent) stops the guest. Init-based guests (O(init)) get this signal sent to their init and
        O(stop_timeout) seconds to halt before everything is killed. Init-less guests get this signal sent to
        all their processes, then C(SIGKILL) after O(stop_timeout).
      - A new guest gets V(SIGTERM) when not given; an existing guest keeps the one it has. Given with
        O(state=absent), it overrides the guest's own for this removal.
    type: str
  stop_timeout:
    description:
      - Seconds to wait after O(stop_signal) before C(SIGKILL).
      - The guests of one O(guests) list that are removed together are waited for together, each up to its own
        timeout; every init, and every process of a guest without one, gets its O(stop_signal) before the first
        wait. Removing many guests whose inits ignore the signal takes one O(stop_timeout), not one per guest.
      - A new guest gets V(10) when not given; an existing guest keeps its own. Given with O(state=absent), it
        overrides the guest's own for this removal.
      - A finite number from V(0) to V(2147483) (about 24 days).
    type: float
  description:
    description:
      - Free text about the guest, kept in its record and shown by this module and M(linuxns.guests.namespace_info).
      - Changes in place. When not given an existing guest keeps its own; a new (or recreated) guest has none.
      - No NUL or control characters other than newline and tab.
    type: str
    version_added: 0.1.0
  privileged:
    description:
      - An explicit opt-out of the confinement. V(true) - every process that enters the guest keeps every
        capability of host root (or of root in the guest's user namespace) and gets no seccomp filter; guest root
        is then host root for every purpose (it can load modules, write C(/proc/sys), mount, read any host file
        by handle). Also allows a O(root) without a C(pid) namespace. A guest with a O(root) then also gets its
        C(/proc) and C(/sys) as runc's C(--privileged) does - no masked paths (C(/proc/kcore), C(/proc/keys), ...),
        no read-only paths (C(/proc/sys), C(/proc/sysrq-trigger), ...), and C(/sys) read-write.
      - V(false) (the default when not given) - the confinement of O(capabilities), O(no_new_privs) and O(seccomp).
      - Without a O(root) it changes in place; the change applies to processes that enter the guest from then on
        (its init and processes already running keep theirs - M(linuxns.guests.namespace_info) lists them). With a
        O(root), its C(/proc) and C(/sys) mounts are made at creation, so a change replaces the guest (O(recreate)),
        shown as RV(guest.proc_sys). When not given the guest gets the default, as for the other confinement options.
    type: bool
  capabilities:
    description:
      - 'The capability bounding set of every process entering the guest, as changes to the default set: a dict
        with C(drop) and/or C(add), lists of capability names (C(CAP_NET_ADMIN), C(NET_ADMIN) or C(net_admin)), or
        V(ALL) (C(drop: [ALL]) starts from none, C(add: [ALL]) from every capability of the kernel).'
      - 'The default set: C(CAP_AUDIT_WRITE), C(CAP_CHOWN), C(CAP_DAC_OVERRIDE), C(CAP_FOWNER), C(CAP_FSETID),
        C(CAP_KILL), C(CAP_NET_BIND_SERVICE), C(CAP_SETFCAP), C(CAP_SETGID), C(CAP_SETPCAP), C(CAP_SETUID),
        C(CAP_SYS_CHROOT) - Docker''s default without C(CAP_MKNOD) and C(CAP_NET_RAW).'
      - Effective and permitted are the same set; ambient and inheritable are cleared.
      - Cannot be given with O(privileged=true). Changes in place, for processes that enter from then on.
    type: dict
  no_new_privs:
    description:
      - Set C(no_new_privs) on every process entering the guest (setuid binaries and file capabilities then grant
        nothing). Default V(true) (V(false) with O(privileged=true)). Changes in place, for processes that enter
        from then on.
    type: bool
  seccomp:
    description:
      - The seccomp filter of every process entering the guest. V(default) (when not given) - the collection's
        profile, modelled on Docker's, denying C(kexec_load), module loading, C(open_by_handle_at), the keyring,
        C(bpf), C(perf_event_open), C(mount) and the other calls listed in C(docs/confinement.md) (some are allowed
        when O(capabilities) adds the capability they need). V(unconfined) - no filter.
      - Or the absolute path of a host file with a profile in the OCI or Docker JSON format, read when a process
        enters the guest.
      - Must be V(unconfined) or left out with O(privileged=true) (then V(unconfined)). Changes in place, for processes that enter from
        then on.
    type: str
  limits:
    description:
      - 'Resource limits of the guest''s cgroup, as a dict. Every process of the guest is in that cgroup - its init or
        reaper, every M(linuxns.guests.guest_enter_exec) command, every command of the C(linuxns.guests.guest)
        connection and the P(linuxns.guests.guest#role) role''s services - from before it runs any guest code.'
      - 'Keys - C(memory): the hard memory limit (v2 C(memory.max), v1 C(memory.limit_in_bytes)); C(memory_high): the
        throttling limit (v2 C(memory.high), v1 C(memory.soft_limit_in_bytes)); C(memory_swap): the swap allowed on
        top of C(memory) (v2 C(memory.swap.max), v1 C(memory.memsw.limit_in_bytes) = memory + swap; needs C(memory));
        C(cpu): a number of cores, for example V(1.5) (C(cpu.max) / C(cpu.cfs_quota_us)); C(cpu_weight): 1-10000
        (v2 C(cpu.weight), v1 C(cpu.shares)); C(cpuset_cpus), C(cpuset_mems): lists such as V(0-1,3), within the
        parent''s; C(pids): the most processes and threads (C(pids.max)); C(io_weight): 1-10000 (v2 C(io.weight), v1
        C(blkio.weight)).'
      - Sizes are bytes, or a number with a K, M, G or T suffix (binary), or V(max). C(pids) takes V(max) too.
      - The whole set - a key left out has no limit; V({}) removes every limit. When O(limits) is not given an
        existing guest keeps its limits and a new guest has none.
      - Changes in place, without a restart; the change is compared with what the kernel's cgroup files say, and
        check mode and C(--diff) show it.
      - A limit the kernel refuses (for example C(memory) below what the guest uses now) fails the task, naming the
        limit and the kernel's reason, and changes nothing. A limit whose controller the host lacks fails naming
        the controller. See C(docs/resources.md) for the mapping on cgroup v1 and v2.
    type: dict
    version_added: 0.1.0
  cgroup_parent:
    description:
      - Where the guest's cgroup C(PARENT/NAME) is made, in every cgroup hierarchy of the host (the unified v2 one,
        or each mounted v1 one).
      - V(auto) - the C(linuxns-guests.service) unit's delegated cgroup when systemd is PID 1 and the unit exists
        (set up by the P(linuxns.guests.guest_host#role) role), else C(/linuxns) at the root of each hierarchy.
      - An absolute path such as V(/guests) - that path in every hierarchy.
      - A relative path such as V(lab/guests) - below the cgroup of the process that runs this module, in each
        hierarchy.
      - A new guest gets C($LINUXNS_CGROUP_PARENT) when not given, else V(auto); an existing guest keeps its own.
        A change needs O(recreate=true). The parent folders are shared by the guests and stay when a guest goes.
    type: str
    version_added: 0.1.0
  restart:
    description:
      - What the host's restart supervisor (C(linuxns-guests-restart), installed by the
        P(linuxns.guests.guest_host#role) role) does when the guest's init (or its reaper) exits.
      - V(no) - the guest is disposed of (its processes, pins, cgroup and context id; its kept files stay).
        V(on-failure) - it is made again (same name, context id, cgroup and mount table) when the init exited with a
        status other than 0 or was killed by a signal, else disposed of. V(always) - it is made again whatever the status.
      - Quote V("no") in YAML (an unquoted C(no) is a boolean, taken as V(no) too).
      - Changes in place. A new guest gets V(no) when not given; an existing guest keeps its own. Needs a pid
        namespace of its own. Without the supervisor running, nothing happens when an init exits; the module then
        warns (a guest with V(on-failure) or V(always), and no process holding the supervisor's lock
        C(STATE_DIR/supervisor.lock) of O(state_dir)).
    type: str
    choices: ["no", on-failure, always]
    version_added: 0.1.0
  restart_delay:
    description:
      - Seconds before the first restart in a row; each further restart in a row waits twice as long, at most
        O(restart_max_delay). An init that ran at least O(restart_max_delay) seconds (and at least 10) starts the
        backoff over.
      - Changes in place. A new guest gets V(1) when not given; an existing guest keeps its own. V(0) to V(2147483).
    type: float
    version_added: 0.1.0
  restart_max_delay:
    description:
      - The longest delay between two restarts in a row (systemd's C(RestartMaxDelaySec)).
      - Changes in place. A new guest gets V(60) when not given; an existing guest keeps its own. V(0) to V(2147483).
    type: float
    version_added: 0.1.0
  restart_max:
    description:
      - Restarts in a row after which the supervisor gives up and disposes of the guest (podman's
        C(on-failure:N)); V(0) - no limit.
      - Changes in place. A new guest gets V(0) when not given; an existing guest keeps its own.
    type: int
  autostart:
    description:
      - Bring the guest back at boot, with no controller, through the host's restore service that the
        P(linuxns.guests.guest_host#role) role installs (C(linuxns-guests-restore.service); docs/lifecycle.md).
      - The guest's definition is saved in C(TABLE_DIR/NAME/guest.json) (O(table_dir)) whatever this is; the restore
        service brings back only the guests marked V(true).
      - Changes in place. When not given an existing guest keeps its own; a new guest gets V(false).
    type: bool
    version_added: 0.1.0
  services:
    description:
      - The services of an init-less guest (one whose PID 1 is the collection's reaper), each a dict with C(name) (letters,
        digits, C(_.-), unique), C(argv) (the program and its arguments; it must stay in the foreground) and C(pid_dir) (the
        folder inside the guest of its pid file C(NAME.pid); default C(/run/linuxns-services)).
      - This module only records them (in the guest and its definition C(TABLE_DIR/NAME/guest.json)). The
        P(linuxns.guests.guest#role) role passes its O(linuxns.guests.guest#role:main:guest_list[].services) here and starts
        them; the host's restore service starts them at boot, after the guest and its links are back (docs/lifecycle.md).
      - Changes in place. When not given an existing guest keeps its own; a new guest gets none.
    type: list
    elements: dict
    version_added: 0.1.0
  recreate:
    description:
      - When the existing guest differs in a way that cannot change in place (O(namespaces), O(root),
        O(context_id), O(share), O(init), O(cgroup_parent), maps or offsets), remove and create it again. Without it such a
        difference fails the task and nothing changes.
      - A guest whose namespaces or init died (for example after a crash) is always recreated.
    type: bool
    default: false
  state:
    description:
      - V(present) creates the guest or keeps it as it is; V(absent) stops its processes and removes its pins,
        the C(/run/netns) name and its state.
      - V(frozen) creates the guest when it does not exist, then freezes every process of it through its cgroup (like
        C(lxc-freeze) or C(docker pause)) - cgroup v2's C(cgroup.freeze) where the host has it, else the v1 C(freezer)
        hierarchy. The guest keeps its namespaces, pins and memory; its processes run again when it is thawed.
        V(present) thaws a frozen guest. Both are idempotent, predicted in check mode, and shown by C(--diff) as
        C(frozen) (V(false) -> V(true)).
      - A frozen guest cannot be entered - M(linuxns.guests.guest_enter_exec) and the C(linuxns.guests.guest) connection
        refuse it (the entering process would be frozen too). V(absent) thaws it first so that its init gets the stop signal.
    type: str
    choices: [present, absent, frozen]
    default: present
  purge:
    description:
      - With O(state=absent), also forget what the guest keeps in O(table_dir) - its mount table
        C(TABLE_DIR/NAME/fstab), its kept context id C(TABLE_DIR/NAME/context_id) and its saved definition - and the
        folder C(TABLE_DIR/NAME) when that leaves it empty. Also done for a guest that no longer exists (action
        V(purge)).
      - Without it the kept files stay, so the guest gets its mounts and context id back when it is made again.
      - Only with O(state=absent).
    type: bool
    default: false
    version_added: 0.1.0
  signal_all:
    description:
      - Send this signal (name like V(SIGTERM) or V(TERM), or number) to every process of the guest except its init (the
        guest's PID 1), without removing the guest - util-vserver's "kill all in the context". The processes are read
        from the guest's cgroup, so commands entered with M(linuxns.guests.guest_enter_exec) and their children are found
        wherever they are in the guest's PID namespace.
      - V(SIGKILL) - a guest with an init is frozen while its processes are read and killed (nothing forks in between),
        then thawed (a frozen guest stays frozen); the task returns when they are gone. A guest without an init loses every
        process at once (C(cgroup.kill) where the kernel has it).
      - Changed when at least one process was signalled; check mode reports the processes without signalling them.
        Not with O(state=absent).
    type: str
  table_dir:
    description:
      - Folder of what guests keep across reboots - the persistent mount tables (C(TABLE_DIR/NAME/fstab), written by
        M(linuxns.guests.namespace_mount)) that are re-applied whenever a guest's mount namespace is made, after a
        reboot or a recreate, and the kept context ids (C(TABLE_DIR/NAME/context_id), see O(context_id)).
      - An absolute path without control characters; an empty string fails.
      - Defaults to C($LINUXNS_TABLE_DIR), then the folder M(linuxns.guests.namespace_mount) last remembered in
        O(state_dir), then C(/etc/linuxns/guests). That note lives under C(/run), so a reboot forgets it - give
        O(table_dir) when your tables are not in the default folder.
      - One folder for the whole task (all entries of O(guests)).
    type: path
    version_added: 0.1.0
  userns_pool:
    description:
      - The host's pool of ids for O(userns=auto) guests, as C(START:COUNT) (a line of subuid(5) without its owner),
        for example V(1000000:1000000000).
      - When not given, the pool is the ids that both C(/etc/subuid) and C(/etc/subgid) give O(userns_pool_owner).
      - A pool that holds an id of C(/etc/passwd) or C(/etc/group), or that overlaps a range subuid/subgid give
        another owner, fails. Read only when an entry has O(userns=auto). One pool for the whole task.
    type: str
    version_added: 0.1.0
  userns_pool_owner:
    description:
      - The owner whose C(/etc/subuid) and C(/etc/subgid) ranges are the pool when O(userns_pool) is not given (Podman
        uses C(containers) the same way).
    type: str
    default: linuxns
    version_added: 0.1.0
seealso:
  - module: linuxns.guests.namespace_info
  - module: linuxns.guests.guest_enter_exec
  - name: namespaces(7)
    description: Overview of Linux namespaces.
    link: https://man7.org/linux/man-pages/man7/namespaces.7.html
"""

EXAMPLES = r"""
- name: A guest whose processes may configure its network (ip addr, ip route) but nothing more than the default
  linuxns.guests.namespace_create:
    name: router1
    capabilities:
      add: [CAP_NET_ADMIN, CAP_NET_RAW]

- name: A guest with its own root, confined by the seccomp profile the team already uses with Docker
  linuxns.guests.namespace_create:
    name: app1
    root: /srv/guests/app1
    seccomp: /etc/linuxns/seccomp/app.json

- name: The explicit opt-out - a guest whose root is host root (a tool guest, trusted like the host)
  linuxns.guests.namespace_create:
    name: tools
    privileged: true

- name: Guests whose persistent mount tables live in another folder (re-applied after a reboot too)
  linuxns.guests.namespace_create:
    guests: [web1, web2]
    table_dir: /srv/linuxns/tables

- name: A guest with the default namespaces (mnt, uts, ipc, net, pid)
  linuxns.guests.namespace_create:
    name: web1

- name: A guest with its own root and a fixed context id
  linuxns.guests.namespace_create:
    name: web2
    context_id: 102
    root: /srv/guests/web2
    hostname: web2.example.org

- name: A guest that joins web1's network namespace (vserver-style composition)
  linuxns.guests.namespace_create:
    name: web1-sidecar
    namespaces: [mnt, uts, pid]
    share:
      net: web1

- name: An init-based guest that runs busybox init as its PID 1
  linuxns.guests.namespace_create:
    name: box
    root: /srv/guests/box
    init: [/bin/busybox, init]
    stop_signal: SIGUSR2
    stop_timeout: 20

- name: Many guests in one task (top-level options are defaults for every entry)
  linuxns.guests.namespace_create:
    namespaces: [mnt, uts, ipc, net, pid]
    guests:
      - name: worker1
      - name: worker2
        hostname: w2
      - name: worker3
        root: /srv/guests/worker3

- name: A guest with at most 512 MiB of memory, 1.5 CPUs and 256 processes
  linuxns.guests.namespace_create:
    name: web3
    limits:
      memory: 512M
      cpu: 1.5
      pids: 256

- name: Its limits changed in place (the whole set - cpu is no longer limited)
  linuxns.guests.namespace_create:
    name: web3
    limits:
      memory: 1G
      pids: 256

- name: Pause a guest (every process frozen; entering it is refused until it is thawed)
  linuxns.guests.namespace_create:
    name: web1
    state: frozen

- name: Thaw it
  linuxns.guests.namespace_create:
    name: web1
    state: present

- name: Kill every process of a guest but its init (the guest stays; a reaper init then has nothing left to reap)
  linuxns.guests.namespace_create:
    name: web1
    signal_all: SIGKILL
  register: killed  # killed.signalled: the host pids

- name: Remove a guest and forget its kept mount table and context id
  linuxns.guests.namespace_create:
    name: web1
    state: absent
    purge: true

- name: Remove a guest by context id
  linuxns.guests.namespace_create:
    name: "102"
    state: absent

- name: Remove every guest the host has
  block:
    - name: List the guests
      linuxns.guests.namespace_info:
      register: info

    - name: Remove them in one task
      linuxns.guests.namespace_create:
        guests: "{{ info.guests | map(attribute='name') | list }}"
        state: absent
"""

RETURN = r"""
guest:
  description: The guest after the run (single form). Empty after O(state=absent).
  returned: when O(name) is used
  type: dict
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
      description: Every namespace of the guest (private and shared) with its inode, pin path and share source.
      type: dict
      sample: {"net": {"inode": 4026532180, "pin": "/run/linuxns/guests/web1/ns/net", "shared_from": null}}
    private_namespaces:
      description: The namespace types created for this guest.
      type: list
      elements: str
      sample: [mnt, uts, ipc, net, pid]
    share:
      description: Shared namespace types and their sources.
      type: dict
      sample: {}
    init_pid:
      description: Host pid of the guest's PID 1 (null without a PID namespace, or in check mode for a new guest).
      type: int
      sample: 12345
    init:
      description: The init argv of an init-based guest, null for a reaper.
      type: list
      elements: str
    hostname:
      description: Host name in the guest's UTS namespace.
      type: str
      sample: web1
    root:
      description: The guest's root folder on the host, or null.
      type: str
    netns:
      description: The C(/run/netns) name of the guest's network namespace.
      type: str
      sample: /run/netns/web1
    userns:
      description: V(auto) for a guest whose user namespace got a range from the pool (O(userns)), else null.
      type: str
    userns_size:
      description: The size of its range (O(userns_size)), null without O(userns).
      type: int
    userns_range:
      description:
        - The id range of a O(userns=auto) guest (its uid and gid maps are C(0 START SIZE)); in check mode, the range
          it would get. Null for other guests.
        - Its C(source) is C(userns_pool) or C(subid:OWNER).
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
      description: The guest's O(description), or null.
      type: str
      sample: web front end
      version_added: 0.1.0
    autostart:
      description: Whether the host's restore service brings the guest back at boot (O(autostart)).
      type: bool
      sample: false
      version_added: 0.1.0
    privileged:
      description: Whether the guest opted out of the confinement (O(privileged)).
      type: bool
      sample: false
    capabilities:
      description: The O(capabilities) changes to the default set as given, or null for the default set.
      type: dict
      sample: {"add": ["CAP_NET_ADMIN"]}
    no_new_privs:
      description: Whether processes entering the guest get C(no_new_privs).
      type: bool
      sample: true
    seccomp:
      description: V(default), V(unconfined) or the path of the profile (O(seccomp)).
      type: str
      sample: default
    proc_sys:
      description:
        - The C(/proc) and C(/sys) a guest with a O(root) got at its creation - V(masked) (runc's masked and read-only
          paths, C(/sys) read-only) or V(unmasked) (O(privileged=true) - neither, C(/sys) read-write); null without a
          O(root).
      type: str
      sample: masked
    limits:
      description: The guest's O(limits) as recorded (sizes in bytes, C(cpu) in cores), or null for none.
      type: dict
      sample: {"memory": 536870912, "cpu": 1.5, "pids": 256}
      version_added: 0.1.0
    cgroup_parent:
      description: The O(cgroup_parent) the guest was made with (V(auto), an absolute or a relative path).
      type: str
      sample: auto
      version_added: 0.1.0
    restart:
      description: Its restart policy (O(restart)) - V(no), V(on-failure) or V(always).
      type: str
      sample: on-failure
      version_added: 0.1.0
    restart_delay:
      description: Seconds before the first restart in a row (O(restart_delay)).
      type: float
      sample: 1.0
      version_added: 0.1.0
    restart_max_delay:
      description: The longest delay between restarts (O(restart_max_delay)).
      type: float
      sample: 60.0
      version_added: 0.1.0
    restart_max:
      description: Restarts in a row before the supervisor gives up (O(restart_max)); 0 - no limit.
      type: int
      sample: 0
      version_added: 0.1.0
    cgroup:
      description: Where its cgroup is - C(parent) (as resolved) and C(paths), the folder of its cgroup in each
        hierarchy. Null for a guest made by a version without cgroups.
      type: dict
      sample: {"parent": "auto", "paths": {"unified": "/sys/fs/cgroup/linuxns/web1"}}
      version_added: 0.1.0
guests:
  description: Per-guest results of the list form, in the order given (only the guests that changed with O(return_unchanged=false)).
  returned: when O(guests) is used
  type: list
  elements: dict
  contains:
    name:
      description: Guest name.
      type: str
    changed:
      description: Whether this guest changed (or would change in check mode).
      type: bool
    action:
      description: What was done - V(none), V(create), V(recreate), V(update), V(remove), V(purge), or when nothing else
        changed V(freeze), V(thaw) (O(state=frozen), O(state=present)) or V(signal) (O(signal_all)).
      type: str
    reasons:
      description: Why a guest is recreated (for example its init died) or updated.
      type: list
      elements: str
    guest:
      description: The guest as in RV(guest).
      type: dict
    purged:
      description: The kept files (and folder) that O(purge) removed, or would remove in check mode.
      type: list
      elements: str
      returned: when O(purge=true)
    signalled:
      description: Host pids of the processes O(signal_all) signalled (or would signal in check mode).
      type: list
      elements: int
      returned: when O(signal_all) is given
unchanged:
  description: The number of entries of O(guests) left out of RV(guests) because they did not change (O(return_unchanged=false)).
  returned: when O(return_unchanged=false) and O(guests) is used
  type: int
  sample: 9998
action:
  description: What was done to the guest (single form) - V(none), V(create), V(recreate), V(update), V(remove),
    V(purge) (O(purge) forgot the kept files of a guest that no longer exists), or when nothing else changed V(freeze),
    V(thaw) or V(signal).
  returned: when O(name) is used
  type: str
  sample: create
purged:
  description: The kept files (and folder) that O(purge) removed, or would remove in check mode (single form).
  returned: when O(name) is used with O(purge=true)
  type: list
  elements: str
  sample: [/etc/linuxns/guests/web1/fstab, /etc/linuxns/guests/web1/context_id, /etc/linuxns/guests/web1]
signalled:
  description: Host pids of the processes O(signal_all) signalled, or would signal in check mode (single form).
  returned: when O(name) is used with O(signal_all)
  type: list
  elements: int
  sample: [4242, 4250]
definitions:
  description:
    - In check mode, the guests whose kept definition (O(table_dir)/NAME/guest.json, the restore service's input) a real
      run would write although nothing else of theirs changes - it is missing or out of date.
  returned: in check mode, when there is one
  type: list
  elements: str
  sample: [web1]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxns.guests.plugins.module_utils import code_cache

if __name__ == "__main__":
    code_cache.cache_code()  # the collection's modules below come compiled from the cache (the payload has no .pyc)

from ansible_collections.linuxns.guests.plugins.module_utils import create_task
from ansible_collections.linuxns.guests.plugins.module_utils.common import task_main


def main():
    task_main(AnsibleModule, create_task)


if __name__ == "__main__":
    main()
