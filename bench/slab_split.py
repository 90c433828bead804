"""Bench helper: the kernel's kmalloc slabs a guest costs, by namespace type.

Run inside a lab host (tests/lab/lab.py exec) by the host's Python, as bench/module_main.py:
it makes N guests with only the namespace types given, in a state folder of its own
(/run/linuxns-slab), reads /proc/slabinfo before and after (3 s later), prints the KiB a guest
of the kmalloc caches that grew, and removes the guests (also when it fails).

    LINUXNS_LAB=s10 LINUXNS_LAB_BASE=180 .venv/bin/python tests/lab/lab.py up --hosts 1
    for ns in uts net ipc pid mnt; do
      LINUXNS_LAB=s10 LINUXNS_LAB_BASE=180 .venv/bin/python tests/lab/lab.py exec 1 \\
        env LINUXNS_CGROUP_PARENT=linuxns-lab-s10/lab1 /usr/bin/python3 $PWD/bench/slab_split.py $PWD/build 500 $ns
    done

Arguments: BUILD (a checkout's build/ folder), N, the namespace types (comma-separated).
docs/performance.md, "A memory cgroup's shrinker slots", has what it showed.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

CACHES = ("kmalloc-512", "kmalloc-1k", "kmalloc-2k", "kmalloc-4k", "kmalloc-8k", "kmalloc-cg-1k")
BASE = "/run/linuxns-slab"


def slabs() -> dict:
    """Cache name -> KiB its objects take, for CACHES (/proc/slabinfo: name, active objects, objects, object size)."""
    out = {}
    with open("/proc/slabinfo") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] in CACHES:
                out[fields[0]] = int(fields[2]) * int(fields[3]) // 1024
    return out


def main() -> int:
    sys.path.insert(0, sys.argv[1])
    n, types = int(sys.argv[2]), sys.argv[3].split(",")
    from ansible_collections.linuxns.guests.plugins.module_utils import guests, persist, registry
    from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
    from ansible_collections.linuxns.guests.plugins.module_utils.errors import KernelError

    os.environ[persist.TABLE_DIR_ENV] = BASE + "/tables"
    reg = registry.Registry(BASE + "/state", BASE + "/netns")
    names = ["slab%05d" % i for i in range(n)]
    before = slabs()
    try:
        guests.ensure_guests(reg, [{"name": name, "namespaces": types} for name in names])
        time.sleep(3)
        after = slabs()
    finally:
        guests.ensure_guests(reg, [{"name": name, "state": "absent", "purge": True} for name in names])
        for path in (reg.netns_dir, reg.state_dir):
            for _attempt in range(8):
                try:
                    sc.umount2(path, sc.MNT_DETACH)
                except KernelError:  # not (or no longer) a mount point
                    break
        shutil.rmtree(BASE, ignore_errors=True)
    grew = {k: round((after[k] - before[k]) / n, 1) for k in CACHES if k in before}
    print("namespaces %s, %d guests: KiB a guest %s" % (",".join(types), n, " ".join("%s=%s" % kv for kv in grew.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
