#!/usr/bin/python
# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: namespace_mount
short_description: Mounts inside one guest's mount namespace, idempotent, symlink-safe, persistent per guest
version_added: 0.1.0
description:
  - Manages mounts that only one guest sees, like util-vserver's C(vnamespace -e GUEST mount ...) and per-guest
    fstab files. Options follow M(ansible.posix.mount).
  - Bind sources (O(src) with O(fstype=bind) or V(rbind)) are B(host) paths. They need not be visible inside the
    guest - the tree is taken on the host with C(open_tree(OPEN_TREE_CLONE)) and attached inside the guest with
    C(move_mount). Paths in O(opts) (for example overlay's C(lowerdir)) are host paths too.
  - Filesystems (tmpfs, proc, sysfs, devpts, mqueue, overlay, any type the kernel knows) are made with
    C(fsopen)/C(fsconfig)/C(fsmount) by a process that joined the guest's pid, net and ipc namespaces, so C(proc)
    shows the guest's processes, C(sysfs) its network devices and C(mqueue) its message queues.
  - The mount point O(path) is the path as the guest sees it, inside its root. It is walked one component at a time
    inside the guest without following symbolic links; a symbolic link anywhere in it is refused, so a link inside the
    guest can never lead a mount onto a host path.
  - Idempotent from the kernel's view - the guest's own mount table (mountinfo) is compared with the wanted mount
    (type, source, per-mount flags, the filesystem options the kernel shows, propagation). Different flags, propagation
    and tmpfs sizes are changed in place; anything else fails naming O(recreate). Reruns never stack mounts.
  - The persistent table of a guest is C(TABLE_DIR/NAME/fstab) (O(table_dir)). M(linuxns.guests.namespace_create)
    re-applies it whenever it makes the guest's mount namespace (creation, recreation, after a reboot), like
    util-vserver's mounts at guest start.
  - Use the list form O(mounts) to apply many mounts to one guest in one task, and O(guests) for the mounts of many
    guests in one task.
author:
  - linuxns.guests developers (@linuxns)
extends_documentation_fragment:
  - linuxns.guests.guest
  - linuxns.guests.guest.ATTRIBUTES
  - linuxns.guests.guest.LIST_RESULT
options:
  guest:
    description:
      - The guest, by name or context id (a string of digits is a context id). It must have a private C(mnt) namespace.
      - Required unless O(guests) is given.
    type: str
  guests:
    description:
      - The many-guests form. Each entry is a dict with O(guest) and O(mounts) (a list as in the list form, or omitted for
        none). Top-level per-mount options are defaults for every mount of every guest; O(table_dir) is common.
      - Every guest and every mount is validated before anything changes; then each guest's mounts are applied in turn,
        each guest all or nothing. When a guest's mounts fail at the kernel, the guests before it keep their changes and
        the message names the guest.
      - Mutually exclusive with O(guest), O(path), O(mounts) and O(mirror).
    type: list
    elements: dict
    version_added: 0.1.0
  path:
    description:
      - The mount point as the guest sees it (absolute, inside the guest's root). C(..) components are refused, and so is
        a symbolic link anywhere in the path.
      - At most one of O(path) and O(mounts); one of them or O(mirror) is required.
    type: str
    aliases: [name]
  src:
    description:
      - For V(bind) and V(rbind), the host path to bind (file or folder). It need not be visible in the guest.
      - For other types, the source the kernel records (a device path for disk filesystems, else a label; defaults to
        the O(fstype)). Compared with the mounted one only when given.
    type: str
  fstype:
    description:
      - V(bind), V(rbind) (recursive bind), V(tmpfs), V(proc), V(sysfs), V(devpts), V(mqueue), V(overlay) or any
        filesystem type the kernel knows (C(/proc/filesystems); modules are loaded on demand).
      - Required for O(state=mounted), V(ephemeral) and V(present).
    type: str
  opts:
    description:
      - Mount options as in fstab, comma separated. Mount flags (V(ro), V(rw), V(nosuid), V(nodev), V(noexec),
        V(relatime), V(noatime), V(strictatime), V(nodiratime)) apply per mount; everything else is handed to the
        filesystem one option at a time, so a bad option fails naming itself before anything changes.
      - A flag not given means its default (V(rw), suid, dev, exec), so removing V(ro) remounts read-write.
      - fstab-only words (V(defaults), V(noauto), V(nofail), V(_netdev), C(x-*)) are ignored.
      - V(idmap) (binds only) makes an idmapped bind mount through the guest's own user namespace (a guest made
        with C(userns=auto) or a C(uid_map)), as mount(8)'s C(X-mount.idmap) and Podman's C(:idmap) do; host id N then
        shows as id N inside the guest, so host root's files belong to guest root and what guest root writes there
        belongs to host root. Without it, host-owned files show as C(nobody) in such a guest. It needs kernel 5.12+ and
        a filesystem that supports idmapped mounts (ext4, xfs, btrfs, tmpfs...); otherwise the task fails naming the
        mount, and the fallback is to give the files to the guest's range (C(chown) into its C(userns_range)).
        It is set only when the mount is made; adding or removing it on a mounted path needs O(recreate=true).
    type: str
  propagation:
    description:
      - Mount propagation of the mount (its peer group, see mount_namespaces(7)); the V(r) forms apply it to every
        mount below too. Not managed when not given.
      - V(slave) on a mount that has no peers is V(private) (the kernel's rule) and is taken as such.
    type: str
    choices: [private, slave, shared, unbindable, rprivate, rslave, rshared, runbindable]
  create:
    description:
      - Create a missing mount point inside the guest (folders, or an empty file when binding a file). When this run's
        mount fails, what it created is removed again.
      - A guest without its own root shares the host's files, so its missing mount points are created in the host's
        filesystem (the mounts stay in the guest's namespace).
    type: bool
    default: true
  state:
    description:
      - V(mounted) - mounted and in the guest's table; V(ephemeral) - mounted, table untouched; V(present) - in the
        table only; V(unmounted) - not mounted, table untouched; V(absent) - not mounted and not in the table;
        V(remounted) - change the options of an existing mount in place (fails when nothing is mounted there).
      - Unlike M(ansible.posix.mount), V(remounted) reports a change only when something differs.
    type: str
    choices: [mounted, ephemeral, present, unmounted, absent, remounted]
    default: mounted
  recreate:
    description:
      - When something else is mounted on O(path), or a filesystem option differs that the kernel cannot change in place,
        unmount it and mount the wanted one. Without it such a difference fails the task and nothing changes.
    type: bool
    default: false
  lazy_unmount:
    description:
      - When an unmount finds the mount busy, detach it lazily (C(umount -l)) instead of failing with the processes that
        hold it.
    type: bool
    default: false
  mounts:
    description:
      - The list form. Each entry is a dict with the per-mount options O(path), O(src), O(fstype), O(opts),
        O(propagation), O(create), O(state), O(recreate), O(lazy_unmount). Options given at the top level are defaults
        for every entry.
      - All entries are validated and planned before anything changes. Unmounts run deepest first, then mounts shallowest
        first; when one fails, the mounts this task attached are detached again.
    type: list
    elements: dict
  table_dir:
    description:
      - Folder of the persistent tables, one C(NAME/fstab) per guest. Defaults to C($LINUXNS_TABLE_DIR) or
        C(/etc/linuxns/guests). An absolute path without control characters; an empty string fails.
      - A non-default folder is remembered in O(state_dir) so that M(linuxns.guests.namespace_create) finds the table.
    type: path
  mirror:
    description:
      - The shared-subtree mirror from the LKML discussion on entering namespaces - a host folder (for example
        V(/guests)) bound onto itself and made unbindable, with the guest's whole tree rbound beneath it as
        C(MIRROR/NAME) after making the guest's tree rshared. The host admin then sees every guest's mounts under
        C(MIRROR/NAME), and mounts made there or in the guest propagate both ways.
      - Done before the mounts of the same task, so they show in the mirror too. Leave O(propagation) unset (or
        V(shared)) for mounts that should propagate.
      - A host process whose cwd or open file lies inside the mirror keeps the copy busy; since an unmount
        propagates to every peer, the guest's own unmount then fails - the message names that process
        (C(on the host, in the mirror)).
      - Remove the mirror (O(mirror_state=absent)) before removing or recreating the guest; a mirror of a recreated
        guest shows its old tree.
    type: path
  mirror_state:
    description:
      - V(present) makes the mirror of the guest, V(absent) removes it (made private first, so the guest's mounts
        are untouched; fails naming the processes that still use it).
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: linuxns.guests.namespace_create
  - module: linuxns.guests.namespace_info
  - module: ansible.posix.mount
  - name: mount_namespaces(7)
    description: Mount namespaces and shared subtrees.
    link: https://man7.org/linux/man-pages/man7/mount_namespaces.7.html
notes:
  - Unmounting never detaches lazily unless O(lazy_unmount) is set; a busy mount fails naming the processes that hold it
    (their pid, command and what they hold - cwd, root or an open file).
  - The whole task for one guest runs under the guest's lock.
"""

EXAMPLES = r"""
- name: Bind a host folder into guest web1 (the guest cannot see /srv/data otherwise), read-only, kept in its table
  linuxns.guests.namespace_mount:
    guest: web1
    path: /data
    src: /srv/data
    fstype: bind
    opts: ro,nosuid,nodev

- name: A small tmpfs, only until the guest's mount namespace is recreated
  linuxns.guests.namespace_mount:
    guest: web1
    path: /scratch
    fstype: tmpfs
    opts: size=64m,mode=1777
    state: ephemeral

- name: Many mounts in one task (top-level options are defaults)
  linuxns.guests.namespace_mount:
    guest: "102"
    fstype: tmpfs
    opts: size=8m
    mounts:
      - path: /run
      - path: /var/cache/app
      - path: /proc
        fstype: proc
      - path: /merged
        fstype: overlay
        opts: lowerdir=/srv/base,upperdir=/srv/up/web1,workdir=/srv/work/web1

- name: The mounts of many guests in one task (each guest's own list; top-level options are defaults)
  linuxns.guests.namespace_mount:
    fstype: tmpfs
    opts: size=16m
    guests:
      - guest: web1
        mounts: [/srv, /var/cache/app]
      - guest: web2
        mounts:
          - path: /srv
            opts: size=64m

- name: Make /data read-write again (in place)
  linuxns.guests.namespace_mount:
    guest: web1
    path: /data
    opts: rw
    state: remounted

- name: Unmount and forget it
  linuxns.guests.namespace_mount:
    guest: web1
    path: /data
    state: absent
"""

RETURN = r"""
mount:
  description: The mount after the run (single form); in check mode the predicted one.
  returned: when O(path) is used
  type: dict
  contains:
    path:
      description: Mount point as the guest sees it.
      type: str
      sample: /data
    src:
      description: Source - the host path of a bind, else the source the kernel shows.
      type: str
      sample: /srv/data
    fstype:
      description: Filesystem type (V(bind)/V(rbind) for binds).
      type: str
      sample: bind
    opts:
      description: Mount flags and the given filesystem options as the kernel shows them.
      type: str
      sample: ro,nosuid,nodev
    propagation:
      description: Propagation of the mount (V(private), V(shared), V(slave), V(unbindable)).
      type: str
      sample: private
    mount_id:
      description: The kernel's mount id (mountinfo's first field); null when not mounted or predicted in check mode.
      type: int
      sample: 612
    device:
      description: The source field of mountinfo (for a bind, the device of the host filesystem).
      type: str
      sample: /dev/vda
    mounted:
      description: Whether it is mounted.
      type: bool
    state:
      description: The O(state) asked for.
      type: str
    action:
      description: What was done - V(none), V(mount), V(remount), V(replace) or V(unmount).
      type: str
      sample: mount
    changed:
      description: Whether this mount or its table line changed.
      type: bool
    table_line:
      description: The mount's line in the guest's table after the run (null when it has none).
      type: str
      sample: /srv/data /data bind ro,nosuid,nodev 0 0
mounts:
  description: Per-mount results of the list form, in the order given, each like RV(mount) (only the mounts that changed with O(return_unchanged=false)).
  returned: when O(mounts) is used
  type: list
  elements: dict
guests:
  description: Results of the many-guests form, in the order given (only the guests that changed with
    O(return_unchanged=false)) - per guest its name (C(guest)), C(changed), C(table) and C(mounts) (each like RV(mount)).
  returned: when O(guests) is used
  type: list
  elements: dict
  sample: [{"guest": "web1", "changed": true, "table": "/etc/linuxns/guests/web1/fstab", "mounts": []}]
unchanged:
  description: The number of entries of O(mounts) or O(guests) left out of RV(mounts) (or of RV(guests)) because they did
    not change (O(return_unchanged=false)).
  returned: when O(return_unchanged=false) and O(mounts) or O(guests) is used
  type: int
  sample: 9998
mirror:
  description: The guest's mirror (path V(MIRROR/NAME), state, action V(none), V(create) or V(remove), changed).
  returned: when O(mirror) is given
  type: dict
  sample: {"path": "/guests/web1", "state": "present", "action": "create", "changed": true}
table:
  description: Path of the guest's persistent table.
  returned: unless O(guests) is used
  type: str
  sample: /etc/linuxns/guests/web1/fstab
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxns.guests.plugins.module_utils import code_cache

if __name__ == "__main__":
    code_cache.cache_code()  # the collection's modules below come compiled from the cache (the payload has no .pyc)

from ansible_collections.linuxns.guests.plugins.module_utils import mount_task
from ansible_collections.linuxns.guests.plugins.module_utils.common import task_main


def main():
    task_main(AnsibleModule, mount_task)


if __name__ == "__main__":
    main()
