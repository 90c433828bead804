# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: guests
short_description: Guests of physical hosts as inventory hosts, from a C(*.guests.yml) fleet file
version_added: 0.1.0
description:
  - Reads a YAML file whose name ends in C(.guests.yml) (or C(.guests.yaml)) describing a fleet - physical hosts
    with the variables that reach them over ssh, and the guests on each - and makes one inventory host per guest,
    preset to use the P(linuxns.guests.guest#connection) connection.
  - Every guest is in the group O(group), in a group per physical host (O(host_group_template)), and in the
    groups O(keyed_groups), O(groups) and O(compose) make (the usual constructed options).
  - Each guest's description (name, context_id, namespaces, root, hostname, ...) is kept whole in the host
    variable C(linuxns_guest_spec), the form M(linuxns.guests.namespace_create) takes in its C(guests) list.
  - With O(query_hosts), each physical host is asked once over ssh which guests really exist and run (with the
    connection's entry program); every guest gets C(linuxns_guest_status) = C(running), C(stopped), C(missing)
    or C(unknown) (host unreachable). The answers can be cached (O(cache)).
  - With O(discover), the guests that really exist on each host are listed too - also those no fleet file
    declares - with their state, context id, addresses, namespaces, root and cgroup (one ssh call per host, at most
    O(query_forks) hosts at once), and grouped by host and by state (O(state_group_template)).
  - Hosts reached with a non-root login and sudo take the connection's C(linuxns_host_become*) variables from their
    C(vars) (see P(linuxns.guests.guest#connection)); the queries use them too.
author:
  - linuxns.guests developers (@linuxns)
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: Marks the file as one for this plugin.
    required: true
    type: string
    choices: [linuxns.guests.guests]
  hosts:
    description:
      - The physical hosts, as a dict of host key to its settings.
      - C(address) (default the key) is how the guests' connection reaches it (C(linuxns_host)).
      - C(vars) are the host's connection variables (C(ansible_user), C(ansible_port),
        C(ansible_ssh_private_key_file), C(ansible_ssh_common_args), ...); every guest of the host gets them.
      - C(state_dir) and C(python) override O(state_dir) and O(host_python) for this host.
      - C(guests) is the list of guests on the host; each is a guest name or a dict with C(name) and any of
        C(context_id), C(namespaces), C(share), C(hostname), C(root), C(init), ... (the options of
        M(linuxns.guests.namespace_create)), plus C(vars) (host variables of that guest only).
    type: dict
    required: true
  guest_defaults:
    description: Keys every guest description gets unless it sets them (for example C(namespaces)).
    type: dict
    default: {}
  guest_vars:
    description: Host variables every guest gets (for example C(ansible_python_interpreter), the guest's Python).
    type: dict
    default: {}
  hostname_template:
    description:
      - The inventory name of a guest; C({host}) is the physical host's key, C({guest}) the guest's name,
        C({context_id}) its context id (empty when not given).
    type: string
    default: "{host}-{guest}"
  group:
    description: Group of every guest (empty for none).
    type: string
    default: linuxns_guests
  host_group_template:
    description: Group of the guests of one physical host; C({host}) is its key (empty for none).
    type: string
    default: "linuxns_host_{host}"
  physical_hosts_group:
    description:
      - When set, the physical hosts themselves are added to this group too (with C(ansible_host) = their
        address and their C(vars)), for the plays that create the guests.
    type: string
  state_dir:
    description: Guests' state folder on the physical hosts (C(linuxns_state_dir)).
    type: string
    default: /run/linuxns
  host_python:
    description: The physical hosts' Python that runs the entry program (C(linuxns_host_python)).
    type: string
    default: /usr/bin/python3
  query_hosts:
    description:
      - Ask each physical host over ssh which of its guests exist and run, and set C(linuxns_guest_status).
      - Uses the C(ssh) binary with the host's C(ansible_user), C(ansible_port), C(ansible_ssh_private_key_file),
        C(ansible_ssh_common_args) and C(ansible_ssh_extra_args).
    type: bool
    default: false
  query_timeout:
    description: Seconds to wait for each physical host when O(query_hosts) or O(discover) is on.
    type: int
    default: 20
  query_forks:
    description: How many physical hosts are queried at once (O(query_hosts), O(discover)).
    type: int
    default: 8
    version_added: 0.2.0
  discover:
    description:
      - Ask each physical host (one ssh call) for every guest it really has, declared or not, with its state, context
        id, addresses, namespaces, root and cgroup.
      - A guest found on a host but not declared there becomes an inventory host too (named by O(hostname_template),
        with the connection variables of its physical host); a declared guest gets the facts found.
      - Every guest gets C(linuxns_guest_status) (C(running), C(stopped), C(missing), C(unknown)),
        C(linuxns_guest_context_id), C(linuxns_guest_addresses) (list of addresses without prefix, loopback left
        out), C(linuxns_guest_interfaces) (ifname, family, address, prefixlen), C(linuxns_guest_namespaces),
        C(linuxns_guest_root), C(linuxns_guest_cgroup) (parent and folders, or none), C(linuxns_guest_problems) and
        C(linuxns_guest_discovered) (true when no fleet file declares it); O(compose), O(groups) and
        O(keyed_groups) can use them all.
      - Implies O(query_hosts); the answers are cached like its answers (O(cache)).
      - A host may also have no C(guests) list; then all of its guests come from discovery.
    type: bool
    default: false
    version_added: 0.2.0
  state_group_template:
    description:
      - With O(query_hosts) or O(discover), the group of the guests in one state; C({state}) is C(running),
        C(stopped), C(missing) or C(unknown) (empty for none).
    type: string
    default: "linuxns_state_{state}"
    version_added: 0.2.0
"""

EXAMPLES = r"""
# fleet.guests.yml
plugin: linuxns.guests.guests
guest_vars:
  ansible_python_interpreter: /usr/bin/python3
guest_defaults:
  namespaces: [mnt, uts, ipc, net, pid]
hosts:
  rack1:
    address: 198.18.81.2
    vars:
      ansible_user: root
      ansible_ssh_private_key_file: ~/.ssh/fleet
    guests:
      - name: web1
        context_id: 101
        root: /srv/guests/web1
        vars:
          role: web
      - name: db1
        context_id: 102
        vars:
          role: db
  rack2:
    address: 198.18.82.2
    guests: [web2, web3]
  rack3:                 # a non-root login with sudo on the host; no guests listed: discovery finds them
    address: 198.18.83.2
    vars:
      ansible_user: deploy
      linuxns_host_become: true
      linuxns_host_become_password: "{{ vault_rack3_sudo }}"
keyed_groups:
  - key: role | default('none')
    prefix: role
query_hosts: true
discover: true          # also the guests nobody declared, with addresses, context ids, cgroups
compose:
  ansible_host_address: linuxns_guest_addresses | first | default(omit)
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/linuxns-inventory

# ansible-inventory -i fleet.guests.yml --graph
# @all:
#   |--@linuxns_guests:
#   |  |--rack1-web1
#   |  |--rack1-db1
#   ...
"""

import json
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.display import Display

from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError
from ansible_collections.linuxns.guests.plugins.plugin_utils import entry_program

display = Display()

CONNECTION = "linuxns.guests.guest"
HOST_KEYS = frozenset(("address", "vars", "guests", "state_dir", "python"))


class FleetError(ValueError):
    """The fleet file is wrong; the message names the place."""


def _guest_entry(raw, where: str, defaults: dict) -> dict:
    if isinstance(raw, (str, int)) and not isinstance(raw, bool):
        raw = {"name": str(raw)}
    if not isinstance(raw, dict):
        raise FleetError("%s must be a guest name or a dict with a name" % where)
    if "name" not in raw:
        raise FleetError("%s has no name" % where)
    spec = dict(defaults)
    spec.update(raw)
    extra = spec.pop("vars", None) or {}
    if not isinstance(extra, dict):
        raise FleetError("%s.vars must be a dict of host variables" % where)
    try:
        spec["name"] = reg.validate_name(str(spec["name"]), "%s.name" % where)
        if spec.get("context_id") is not None:
            spec["context_id"] = reg.validate_context_id(spec["context_id"], "%s.context_id" % where)
    except GuestError as exc:
        raise FleetError(exc.msg) from None
    return {"spec": spec, "vars": extra}


def parse_fleet(config: dict) -> list:
    """The fleet as a list of physical hosts: {key, address, vars, state_dir, python, guests: [{spec, vars}]}.

    ``config`` holds the options (hosts, guest_defaults, state_dir, host_python).  Names and context ids are
    checked as the modules check them; a context id or name used twice on one host is an error.
    """
    hosts = config.get("hosts")
    if not isinstance(hosts, dict) or not hosts:
        raise FleetError("hosts must be a dict of physical hosts (key: settings)")
    defaults = config.get("guest_defaults") or {}
    if not isinstance(defaults, dict):
        raise FleetError("guest_defaults must be a dict")
    if "name" in defaults or "vars" in defaults:
        raise FleetError("guest_defaults cannot set name or vars")
    out = []
    for key, settings in hosts.items():
        key = str(key)
        where = "hosts.%s" % key
        settings = {} if settings is None else settings
        if not isinstance(settings, dict):
            raise FleetError("%s must be a dict (address, vars, guests...)" % where)
        unknown = sorted(set(settings) - HOST_KEYS)
        if unknown:
            raise FleetError("%s: unknown key(s) %s; known: %s" % (where, ", ".join(unknown), ", ".join(sorted(HOST_KEYS))))
        host_vars = settings.get("vars") or {}
        if not isinstance(host_vars, dict):
            raise FleetError("%s.vars must be a dict of connection variables" % where)
        guests_raw = settings.get("guests") or []
        if not isinstance(guests_raw, list):
            raise FleetError("%s.guests must be a list" % where)
        guests, names, ctxs = [], set(), {}
        for i, raw in enumerate(guests_raw):
            g = _guest_entry(raw, "%s.guests[%d]" % (where, i), defaults)
            name, ctx = g["spec"]["name"], g["spec"].get("context_id")
            if name in names:
                raise FleetError("%s.guests[%d]: guest %r is listed twice on host %s" % (where, i, name, key))
            if ctx is not None and ctx in ctxs:
                raise FleetError("%s.guests[%d]: context id %d of %r is already used by %r on host %s" % (where, i, ctx, name, ctxs[ctx], key))
            names.add(name)
            if ctx is not None:
                ctxs[ctx] = name
            guests.append(g)
        out.append({
            "key": key, "address": str(settings.get("address") or key), "vars": host_vars, "guests": guests,
            "state_dir": str(settings.get("state_dir") or config.get("state_dir") or reg.DEFAULT_STATE_DIR),
            "python": str(settings.get("python") or config.get("host_python") or "/usr/bin/python3"),
        })
    return out


def inventory_name(template: str, host: str, spec: dict) -> str:
    try:
        name = template.format(host=host, guest=spec["name"], context_id="" if spec.get("context_id") is None else spec["context_id"])
    except (KeyError, IndexError, ValueError) as exc:
        raise FleetError("hostname_template %r cannot be filled: %s (use {host}, {guest}, {context_id})" % (template, exc)) from None
    if not name:
        raise FleetError("hostname_template %r gives an empty name for guest %r on %s" % (template, spec["name"], host))
    return name


def guest_hostvars(host: dict, guest: dict, guest_vars: dict) -> dict:
    """Every variable of one guest's inventory host (connection vars preset)."""
    hv = dict(host["vars"])
    hv.update(guest_vars)
    hv.update({
        "ansible_connection": CONNECTION,
        "linuxns_guest": guest["spec"]["name"],
        "linuxns_host": host["address"],
        "linuxns_physical_host": host["key"],
        "linuxns_state_dir": host["state_dir"],
        "linuxns_host_python": host["python"],
        "linuxns_guest_spec": dict(guest["spec"]),
    })
    hv.update(guest["vars"])
    return hv


def status_of(answer, spec: dict) -> str:
    """running / stopped / missing from a host's status answer (None: unknown)."""
    if answer is None:
        return "unknown"
    guests = answer.get("guests", {})
    ref = spec["name"]
    info = guests.get(ref)
    if info is None:
        return "missing"
    if spec.get("context_id") is not None and info.get("context_id") not in (None, spec["context_id"]):
        return "missing"
    return info.get("status", "unknown")


def discovered_vars(answer, guest: dict) -> dict:
    """The facts discovery found for one guest (empty values when its host or the guest is not there)."""
    info = (answer or {}).get("guests", {}).get(guest["spec"]["name"]) or {}
    if guest["spec"].get("context_id") is not None and info.get("context_id") not in (None, guest["spec"]["context_id"]):
        info = {}  # another guest of that name: this one is missing
    interfaces = list(info.get("addresses") or [])
    return {
        "linuxns_guest_context_id": info.get("context_id"),
        "linuxns_guest_addresses": [a["address"] for a in interfaces if a.get("address")],
        "linuxns_guest_interfaces": interfaces,
        "linuxns_guest_namespaces": list(info.get("namespaces") or []),
        "linuxns_guest_root": info.get("root"),
        "linuxns_guest_cgroup": info.get("cgroup"),
        "linuxns_guest_problems": list(info.get("problems") or []),
        "linuxns_guest_discovered": bool(guest.get("discovered")),
    }


def ssh_argv(host: dict, command: str, timeout: int) -> list:
    hv = host["vars"]
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=%d" % timeout]
    for key in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        if hv.get(key):
            argv += shlex.split(str(hv[key]))
    port = hv.get("ansible_port", hv.get("ansible_ssh_port"))
    if port:
        argv += ["-p", str(port)]
    user = hv.get("ansible_user", hv.get("ansible_ssh_user"))
    if user:
        argv += ["-l", str(user)]
    key = hv.get("ansible_ssh_private_key_file", hv.get("ansible_private_key_file"))
    if key:
        argv += ["-i", str(key)]
    return argv + ["--", host["address"], command]


def _bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y")
    return bool(value)


def host_become(host: dict):
    """(method, user, password or None) from the host's linuxns_host_become* variables, or None."""
    hv = host["vars"]

    def get(name, default=None):
        for key in ("linuxns_host_become" + name, "ansible_linuxns_host_become" + name):
            if hv.get(key) not in (None, ""):
                return hv[key]
        return default

    if not _bool(get("", False)):
        return None
    password = get("_password")
    return (str(get("_method", "sudo")), str(get("_user", "root")), None if password is None else str(password))


def query_host(host: dict, timeout: int, discover: bool = False):
    """The entry program's ``status`` answer of one physical host (with ``discover``, every guest with its
    addresses and cgroup), or None (with a warning) when it cannot be asked."""
    become = host_become(host)
    flags = None if become is None else (become[0], become[1], become[2] is not None)
    stdin = b""
    try:
        if discover:
            command = entry_program.discover_command(host["python"], host["state_dir"], become=flags)
        else:
            command = entry_program.command(host["python"], ["status", host["state_dir"]], become=flags)
        if become is not None and become[2] is not None:
            stdin = entry_program.become_stdin(become[2], None)
    except ValueError as exc:
        display.warning("linuxns.guests.guests: physical host %s: linuxns_host_become*: %s" % (host["key"], exc))
        return None
    try:
        proc = subprocess.run(ssh_argv(host, command, timeout), input=stdin, capture_output=True, timeout=timeout + 5, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        display.warning("linuxns.guests.guests: cannot query physical host %s (%s): %s" % (host["key"], host["address"], exc))
        return None
    if proc.returncode != 0:
        display.warning("linuxns.guests.guests: querying physical host %s (%s) failed (rc %d): %s"
                        % (host["key"], host["address"], proc.returncode, to_text(proc.stderr, errors="surrogate_or_replace").strip()[-500:]))
        return None
    try:
        return json.loads(to_text(proc.stdout).strip().splitlines()[-1])
    except (ValueError, IndexError):
        display.warning("linuxns.guests.guests: physical host %s gave no status answer" % host["key"])
        return None


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "linuxns.guests.guests"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith((".guests.yml", ".guests.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        try:
            fleet = parse_fleet({k: self.get_option(k) for k in ("hosts", "guest_defaults", "state_dir", "host_python")})
        except FleetError as exc:
            raise AnsibleParserError("%s: %s" % (path, exc)) from None
        statuses = self._statuses(fleet, path, cache) if self.get_option("query_hosts") or self.get_option("discover") else {}
        try:
            self._populate(fleet, statuses)
        except FleetError as exc:
            raise AnsibleParserError("%s: %s" % (path, exc)) from None

    def _statuses(self, fleet: list, path: str, cache: bool) -> dict:
        discover = bool(self.get_option("discover"))
        cache_key = self.get_cache_key(path) + ("_discover" if discover else "")
        use_cache = self.get_option("cache")
        answers = None
        if use_cache and cache:
            try:
                answers = self._cache[cache_key]
            except KeyError:
                answers = None
        if answers is None:
            timeout = self.get_option("query_timeout")
            forks = max(1, min(int(self.get_option("query_forks") or 1), len(fleet)))
            with ThreadPoolExecutor(max_workers=forks) as pool:
                found = list(pool.map(lambda h: query_host(h, timeout, discover), fleet))
            answers = {h["key"]: a for h, a in zip(fleet, found)}
            if use_cache:
                self._cache[cache_key] = answers
        return answers

    def _populate(self, fleet: list, statuses: dict) -> None:
        group = self.get_option("group")
        host_group_tpl = self.get_option("host_group_template")
        phys_group = self.get_option("physical_hosts_group")
        guest_vars = self.get_option("guest_vars") or {}
        template = self.get_option("hostname_template")
        strict = self.get_option("strict")
        state_tpl = self.get_option("state_group_template")
        seen = {}
        if group:
            self.inventory.add_group(group)
        if phys_group:
            self.inventory.add_group(phys_group)
        for host in fleet:
            if phys_group:
                self.inventory.add_host(host["key"], group=phys_group)
                self.inventory.set_variable(host["key"], "ansible_host", host["address"])
                for k, v in host["vars"].items():
                    self.inventory.set_variable(host["key"], k, v)
            hgroup = None
            if host_group_tpl:
                hgroup = self.inventory.add_group(host_group_tpl.format(host=host["key"]))
            answer = statuses.get(host["key"])
            guests = list(host["guests"])
            if self.get_option("discover"):
                declared = {g["spec"]["name"] for g in host["guests"]}
                for found_name in sorted((answer or {}).get("guests", {})):
                    if found_name not in declared:
                        try:
                            found = _guest_entry({"name": found_name}, "guest %r found on host %s" % (found_name, host["key"]), {})
                        except FleetError as exc:
                            display.warning("linuxns.guests.guests: %s" % exc)
                            continue
                        ctx = answer["guests"][found_name].get("context_id")
                        if ctx is not None:
                            found["spec"]["context_id"] = ctx
                        found["discovered"] = True
                        guests.append(found)
            for guest in guests:
                name = inventory_name(template, host["key"], guest["spec"])
                if name in seen:
                    raise FleetError("guest %r on %s and guest %r on %s both get the inventory name %r; change hostname_template"
                                     % (seen[name][1], seen[name][0], guest["spec"]["name"], host["key"], name))
                seen[name] = (host["key"], guest["spec"]["name"])
                self.inventory.add_host(name, group=group or None)
                if hgroup:
                    self.inventory.add_child(hgroup, name)
                hv = guest_hostvars(host, guest, guest_vars)
                if self.get_option("query_hosts") or self.get_option("discover"):
                    hv["linuxns_guest_status"] = status_of(answer, guest["spec"])
                    if state_tpl:
                        self.inventory.add_child(self.inventory.add_group(state_tpl.format(state=hv["linuxns_guest_status"])), name)
                if self.get_option("discover"):
                    hv.update(discovered_vars(answer, guest))
                for k, v in hv.items():
                    self.inventory.set_variable(name, k, v)
                self._set_composite_vars(self.get_option("compose"), hv, name, strict=strict)
                self._add_host_to_composed_groups(self.get_option("groups"), hv, name, strict=strict)
                self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hv, name, strict=strict)
