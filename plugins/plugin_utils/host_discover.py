# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run on a physical host (inside the entry program, see entry_program.discover_command): every
guest registered under the state folder, with its state, context id, namespaces, root, hostname,
cgroup and the addresses of its network namespace - one JSON line, for the inventory plugin.

Only the entry program's modules are available here (errors, syscalls, procfs, registry, enter...):
it imports nothing from Ansible and nothing else from the collection.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from ansible_collections.linuxns.guests.plugins.module_utils import enter, errors
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg

PROTOCOL = 1
IP = ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip")


def addresses_here() -> list:
    """The addresses (without prefix) of the current network namespace, loopback left out."""
    for ip in IP:
        if os.access(ip, os.X_OK):
            out = subprocess.run([ip, "-j", "addr", "show"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
            if out.returncode == 0:
                return [{"ifname": link.get("ifname"), "family": a.get("family"), "address": a["local"], "prefixlen": a.get("prefixlen")}
                        for link in json.loads(out.stdout.decode() or "[]")
                        for a in link.get("addr_info", []) if a.get("scope") != "host" and a.get("local")]
    return [{"ifname": n, "family": None, "address": None, "prefixlen": None} for _i, n in socket.if_nameindex() if n != "lo"]


def describe(meta) -> dict:
    problems = reg.health(meta)
    cgroup = meta.cgroup or {}
    out = {
        "context_id": meta.context_id,
        "status": "stopped" if problems else "running",
        "problems": problems,
        "root": meta.root,
        "hostname": meta.hostname,
        "namespaces": sorted(meta.pins),
        "cgroup": {"parent": cgroup.get("parent"), "paths": dict(cgroup.get("paths") or {})} if cgroup else None,
        "addresses": [],
    }
    if not problems and "net" in meta.pins:
        try:
            out["addresses"] = enter.call_in_guest(meta, ["net"], addresses_here)
        except errors.GuestError as exc:
            out["problems"] = problems + ["addresses: %s" % exc.msg]
    return out


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] != "discover":
        sys.stderr.write("usage: discover STATE\n")
        return 2
    registry = reg.Registry(sys.argv[2])
    guests = {}
    for name in registry.names():
        try:
            meta = registry.load(name)
        except errors.GuestError as exc:  # one unreadable record: the others are still listed
            guests[name] = {"status": "unknown", "problems": [exc.msg], "context_id": None, "addresses": []}
            continue
        if meta is not None:
            guests[name] = describe(meta)
    sys.stdout.write(json.dumps({"protocol": PROTOCOL, "guests": guests}) + "\n")
    sys.stdout.flush()
    return 0
