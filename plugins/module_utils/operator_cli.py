# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``linuxns-guest``: the operator's command on a host, like util-vserver's ``vserver NAME
enter`` and ``vnamespace -e NAME cmd`` or ``machinectl shell``.

Built by plugins/plugin_utils/operator_program.py into one file from these module_utils
(the role guest_host installs it as /usr/local/sbin/linuxns-guest): every subcommand uses
the modules' own code - guest_info for ``list``/``status`` (as namespace_info), enter and
ptys for ``enter``/``exec`` (as guest_enter_exec and the connection: cgroup, namespaces,
root, confinement, from a sealed clone of the interpreter), guest_stop and guests for
``stop``/``start`` (as namespace_create).  docs/lifecycle-operator.md has sessions.

Exit status: a usage error 2; ``status`` 0 running, 3 stopped, 4 no such guest, 1 the guest
is broken; ``enter``/``exec`` the command's (128+N for signal N; 127 not found, 126 cannot
be run inside the guest) or 125 when the guest could not be entered (4: no such guest);
``start``/``stop``/``restart``/``list`` 0, 1 on failure, 4 no such guest.
"""

from __future__ import annotations

import json
import os
import sys

from ansible_collections.linuxns.guests.plugins.module_utils import enter, errors
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils.errors import ExecFailed, GuestError, GuestNotFound, GuestStale

PROG = "linuxns-guest"
RC_USAGE = 2
RC_RUNNING, RC_BROKEN, RC_STOPPED, RC_UNKNOWN = 0, 1, 3, 4
RC_ENTER_FAILED = 125
USAGE = """usage: linuxns-guest [--state-dir DIR] [--netns-dir DIR] COMMAND ...

  list [--json]                     every guest: state, context id, init pid, addresses, memory, pids
  status NAME|CTXID [--json]        exit 0 running, 3 stopped, 4 no such guest, 1 broken
  enter NAME|CTXID [-- CMD ...]     a shell (or CMD) on a terminal inside the guest
  exec NAME|CTXID -- CMD ...        run CMD inside the guest (no terminal); its exit status
  start NAME|CTXID                  bring a stopped guest back (see docs/lifecycle-operator.md)
  stop NAME|CTXID                   stop the guest's processes (its init: the guest is stopped)
  restart NAME|CTXID                stop, then start
"""


class Usage(Exception):
    pass


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write("%s: %s\n" % (PROG, text))
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------
# list and status: guest_info, as namespace_info
# ---------------------------------------------------------------------------------------
def _addresses(view: dict) -> list:
    return [a for link in view.get("links") or [] if link.get("ifname") != "lo" for a in link.get("addresses") or []]


def _usage(view: dict) -> dict:
    cgroup = view.get("cgroup") or {}
    return {"memory_current": cgroup.get("memory_current"), "pids": cgroup.get("pids_current")}


def state_of(view: dict) -> str:
    if view.get("running"):
        return "running"
    problems = view.get("problems") or []
    if problems and all("its init" in p and "not running" in p for p in problems):
        return "stopped"
    return "broken"


def summary(view: dict) -> dict:
    """One guest as ``list --json`` shows it (from guest_info.describe)."""
    return {
        "name": view.get("name"), "context_id": view.get("context_id"), "state": state_of(view),
        "init_pid": view.get("init_pid") if view.get("running") else None,
        "addresses": _addresses(view), "problems": view.get("problems") or [], **_usage(view),
    }


def _describe(registry, refs):
    from ansible_collections.linuxns.guests.plugins.module_utils import guest_info

    return guest_info.info(registry, refs, want_links=True)


def _size(value) -> str:
    if value is None:
        return "-"
    value = float(value)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return ("%d%s" % (value, unit)) if unit == "B" else ("%.1f%s" % (value, unit))
        value /= 1024
    return "-"


def cmd_list(registry, args) -> int:
    as_json = _flag(args, "--json")
    if args:
        raise Usage("list takes no guest names (use status NAME)")
    rows = [summary(v) for v in _describe(registry, None)["guests"]]
    rows.sort(key=lambda r: (r["context_id"] or 0, r["name"] or ""))
    if as_json:
        out(json.dumps({"guests": rows}, indent=2, sort_keys=True))
        return 0
    table = [("NAME", "CTX", "STATE", "INIT", "MEMORY", "PIDS", "ADDRESSES")]
    table += [(r["name"], str(r["context_id"] or "-"), r["state"], str(r["init_pid"] or "-"), _size(r["memory_current"]),
               "-" if r["pids"] is None else str(r["pids"]), ",".join(r["addresses"]) or "-") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        out("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def cmd_status(registry, args) -> int:
    as_json = _flag(args, "--json")
    ref = _one_guest(args, "status")
    try:
        find(registry, ref)
        view = _describe(registry, [ref])["guests"]
        if not view:  # removed meanwhile
            raise not_found(ref)
    except GuestNotFound as exc:
        if as_json:
            out(json.dumps({"name": ref, "state": "unknown", "message": exc.msg}))
        else:
            err(exc.msg)
        return RC_UNKNOWN
    row = summary(view[0])
    if as_json:
        out(json.dumps(row, sort_keys=True))
    elif row["state"] == "running":
        addresses = ", " + ", ".join(row["addresses"]) if row["addresses"] else ""
        out("%s (context %s): running, init pid %s%s" % (row["name"], row["context_id"], row["init_pid"] or "-", addresses))
    else:
        out("%s (context %s): %s: %s" % (row["name"], row["context_id"], row["state"], "; ".join(row["problems"])))
    return {"running": RC_RUNNING, "stopped": RC_STOPPED}.get(row["state"], RC_BROKEN)


# ---------------------------------------------------------------------------------------
# enter and exec: the enter path of guest_enter_exec and the connection
# ---------------------------------------------------------------------------------------
def find(registry, ref: str) -> reg.GuestRecord:
    """The guest by name or context id; GuestNotFound says so in the operator's words."""
    try:
        return registry.find(ref, "guest")
    except GuestNotFound:
        raise not_found(ref) from None


def not_found(ref: str) -> GuestNotFound:
    what = "with context id" if str(ref).isdigit() else "named"
    return GuestNotFound("no guest %s %r on this host (%s list shows them)" % (what, ref, PROG))


def _running(registry, ref: str) -> reg.GuestRecord:
    meta = find(registry, ref)
    problems = reg.health(meta)
    if problems:
        raise GuestStale("guest %r is not running: %s; start it with: %s start %s" % (meta.name, "; ".join(problems), PROG, meta.name))
    return meta


def _command(args, what: str, required: bool) -> tuple:
    if not args or args[0].startswith("-"):
        raise Usage("%s needs a guest (a name or a context id)" % what)
    ref, rest = args[0], args[1:]
    if rest and rest[0] == "--":
        rest = rest[1:]
    elif rest:
        raise Usage("%s: put the command after --, as in: %s %s %s -- %s" % (what, PROG, what, ref, " ".join(rest)))
    if required and not rest:
        raise Usage("%s needs a command after --" % what)
    return ref, rest


def _exit_of(meta, msgs) -> int:
    from ansible_collections.linuxns.guests.plugins.module_utils.entry import exit_code

    failed = [errors.from_payload(m) for m in msgs if "error" in m]
    for exc in failed:
        if not isinstance(exc, ExecFailed):
            raise exc
    if failed:
        err(failed[0].msg)
        return failed[0].details.get("rc", enter.RC_NOT_FOUND)
    done = next((m for m in msgs if "exit" in m), None)
    if done is None:
        raise GuestError("guest %r: the process that entered it died before the command ended" % meta.name)
    return exit_code(done["exit"])


def cmd_enter(registry, args) -> int:
    from ansible_collections.linuxns.guests.plugins.module_utils import entry, ptys

    ref, argv = _command(args, "enter", False)
    meta = _running(registry, ref)
    env = entry.guest_env()
    msgs, _where = ptys.interactive(meta, argv or [env["SHELL"]], env)
    return _exit_of(meta, msgs)


def cmd_exec(registry, args) -> int:
    from ansible_collections.linuxns.guests.plugins.module_utils import entry

    ref, argv = _command(args, "exec", True)
    meta = _running(registry, ref)
    env = entry.guest_env()

    def spawn(stdio):
        return enter.spawn_in_guest(meta, None, argv, env, stdio)

    if any(entry._isatty(fd) for fd in (0, 1, 2)):
        msgs = entry.relay_tty(spawn)  # the host's terminal is never handed to the guest
    else:
        msgs = entry.wait_spawned(spawn((0, 1, 2)))
    return _exit_of(meta, msgs)


# ---------------------------------------------------------------------------------------
# stop, start, restart: guest_stop and guests, as namespace_create
# ---------------------------------------------------------------------------------------
def cmd_stop(registry, args) -> int:
    from ansible_collections.linuxns.guests.plugins.module_utils import guest_stop

    name = find(registry, _one_guest(args, "stop")).name
    with registry.lock(name):
        meta = registry.load(name)
        if meta is None:
            raise GuestNotFound("guest %r is gone (removed meanwhile)" % name)
        problems = reg.health(meta)
        if problems:
            out("%s: not running (%s); nothing to stop" % (name, "; ".join(problems)))
            return 0
        guest_stop.stop_processes(meta, guest_stop.ProcIndex(), registry)
        guest_stop.sweep_many([meta], registry, [name])
    if meta.init_pid:
        out("%s: stopped (its init, pid %s, and every process in it)" % (name, meta.init_pid))
    else:
        out("%s: its processes were stopped; a guest without an init keeps its namespaces and stays up" % name)
    return 0


def definition_of(meta: reg.GuestRecord) -> dict:
    """The namespace_create entry that makes ``meta`` again: its recorded fields."""
    from ansible_collections.linuxns.guests.plugins.module_utils import model

    entry = {"name": meta.name}
    for key in model.RECORDED:
        value = meta.field(key)
        if value is not None:
            entry[key] = value
    if entry.get("userns") == "auto":  # its maps come from its kept id range
        entry.pop("uid_map", None)
        entry.pop("gid_map", None)
    entry["namespaces"] = list(meta.namespaces)
    return entry


def cmd_start(registry, args, name=None) -> int:
    from ansible_collections.linuxns.guests.plugins.module_utils import guests

    if name is None:
        name = find(registry, _one_guest(args, "start")).name
    meta = registry.load(name)
    if meta is None:
        raise GuestNotFound("guest %r is gone (removed meanwhile)" % name)
    if not reg.health(meta):
        out("%s: already running (init pid %s)" % (name, meta.init_pid or "-"))
        return 0
    result = guests.ensure_guests(registry, [definition_of(meta)])
    meta = registry.load(name)
    if meta is None or reg.health(meta):
        raise GuestError("guest %r did not come back: %s" % (name, "; ".join(reg.health(meta)) if meta else "it is gone"))
    action = result["results"][0].get("action", "start") if result.get("results") else "start"
    from ansible_collections.linuxns.guests.plugins.module_utils import boot, persist

    try:
        more = boot.bring_up(registry, persist.resolve_table_dir(registry.state_dir), name)  # its saved links and services
    except GuestError as exc:
        raise GuestError("guest %r started, but %s" % (name, exc.msg))
    out("%s: started (context %s, init pid %s; %s%s)" % (name, meta.context_id, meta.init_pid or "-", action, more))
    return 0


def cmd_restart(registry, args) -> int:
    name = find(registry, _one_guest(args, "restart")).name
    cmd_stop(registry, [name])
    return cmd_start(registry, [], name)


# ---------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------
def _flag(args: list, flag: str) -> bool:
    if flag in args:
        args.remove(flag)
        return True
    return False


def _one_guest(args, what: str) -> str:
    if len(args) != 1 or args[0].startswith("-"):
        raise Usage("%s takes exactly one guest (a name or a context id)" % what)
    return args[0]


COMMANDS = {"list": cmd_list, "status": cmd_status, "enter": cmd_enter, "exec": cmd_exec, "start": cmd_start,
            "stop": cmd_stop, "restart": cmd_restart}
ENTERS = ("enter", "exec", "start", "restart")  # run from a sealed clone of the interpreter


def parse(argv: list) -> tuple:
    args = list(argv)
    dirs = {"--state-dir": reg.DEFAULT_STATE_DIR, "--netns-dir": reg.NETNS_RUN_DIR}  # netns names: `ip netns`'s folder
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt in ("--help",):
            raise Usage(None)
        if opt in dirs and args:
            dirs[opt] = args.pop(0)
        elif opt.split("=", 1)[0] in dirs and "=" in opt:
            dirs[opt.split("=", 1)[0]] = opt.split("=", 1)[1]
        else:
            raise Usage("unknown option %s" % opt)
    if not args:
        raise Usage("a command is needed")
    if args[0] in ("help", "-h"):
        raise Usage(None)
    if args[0] not in COMMANDS:
        raise Usage("unknown command %r" % args[0])
    for opt, path in dirs.items():
        if not os.path.isabs(path):
            raise Usage("%s must be an absolute path" % opt)
    return dirs["--state-dir"], dirs["--netns-dir"], args[0], args[1:]


def main(argv=None) -> int:
    try:
        state_dir, netns_dir, command, args = parse(sys.argv[1:] if argv is None else argv)
    except Usage as exc:
        if exc.args and exc.args[0]:
            err(exc.args[0])
            sys.stderr.write(USAGE)
            return RC_USAGE
        sys.stdout.write(USAGE)
        return 0
    if os.geteuid() != 0:
        err("needs root on the host (running as uid %d)" % os.geteuid())
        return RC_BROKEN if command != "status" else RC_UNKNOWN
    failure = RC_ENTER_FAILED if command in ("enter", "exec") else RC_BROKEN
    try:
        if argv is None and command in ENTERS:
            enter.reexec_sealed()  # the CVE-2019-5736 class: see enter.reexec_sealed
        return COMMANDS[command](reg.Registry(state_dir, netns_dir), args)
    except Usage as exc:
        err(exc.args[0])
        sys.stderr.write(USAGE)
        return RC_USAGE
    except GuestNotFound as exc:
        err(exc.msg)
        return RC_UNKNOWN
    except GuestError as exc:
        err(exc.msg)
        return failure
    except KeyboardInterrupt:
        return 130
