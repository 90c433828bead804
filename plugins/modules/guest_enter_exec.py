#!/usr/bin/python
# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: guest_enter_exec
short_description: Run a command inside one guest or many - like vnamespace -e or nsenter
version_added: 0.1.0
description:
  - Runs a command inside a I(guest) made by M(linuxns.guests.namespace_create), the way util-vserver's
    C(vnamespace -e GUEST cmd) and C(nsenter --all) do, and returns what M(ansible.builtin.command) returns.
  - The program is looked up and executed inside the guest - in its root and mount namespace, with C(PATH) from
    O(env) or the default - never a host binary carried in.
  - The command is a member of every namespace entered, including the guest's PID namespace (it sees the guest's
    init as PID 1) and time namespace. It starts in a new session with a clean environment (C(PATH), C(HOME),
    C(USER), C(LOGNAME), C(container=linuxns), then O(env)), stdin from O(stdin) or empty, and no other open
    file descriptor of the module. The process that joins the namespaces is non-dumpable until it execs.
  - Use the list form O(guests) to run the same command in many guests in one task; Ansible's per-task overhead
    is far larger than the work of entering a guest.
  - Output of any size and binary output are read in full; bytes that are not valid UTF-8 are replaced by
    U+FFFD in RV(stdout) and RV(stderr). When the command exits while processes it left in the background still
    hold its stdout or stderr open, reading stops half a second after it exited (with a warning) rather than
    waiting for them.
  - A non-zero return code fails the task, as with M(ansible.builtin.command).
author:
  - linuxns.guests developers (@linuxns)
extends_documentation_fragment:
  - linuxns.guests.guest
options:
  guest:
    description:
      - The guest to run the command in, by name or context id (a string of digits always means a context id).
      - Exactly one of O(guest) and O(guests) is required.
    type: str
  guests:
    description:
      - Run the command in each of these guests (names or context ids) in one task, up to O(parallel) guests at a
        time (as Ansible runs hosts side by side); the O(timeout) applies to each guest's command.
      - Every guest is checked (exists, running, has the namespaces asked for) before the command runs anywhere.
      - The results per guest are in RV(results); the task fails when the command failed in any guest.
    type: list
    elements: str
  argv:
    description:
      - The command as a list of arguments; the first is the program, looked up in C(PATH) inside the guest.
      - Exactly one of O(argv) and O(cmd) is required.
    type: list
    elements: str
  cmd:
    description:
      - The command as a string, split into arguments like a shell would (quotes are honoured) but not run by one,
        so C(|), C(>), C(&&), C($VAR) and globs have no special meaning. Use O(shell=true) for those.
    type: str
  shell:
    description:
      - Run O(cmd) with the guest's C(/bin/sh -c).
    type: bool
    default: false
  namespaces:
    description:
      - The namespace types of the guest to enter. By default all of the guest's namespaces (its private and its
        shared ones).
      - A subset enters only those, for example V([mnt]) like util-vserver's C(vnamespace -e), or V([net]) to run
        in the guest's network only (with O(root=false), a host tool such as C(ip) or C(ss) sees the guest's
        network).
      - Naming a type the guest does not have fails.
      - A guest with a root is entered only through its own mount namespace, so a subset without V(mnt) fails for
        it, before anything runs in any guest (there is no C(chroot) into its root folder from the host's mount
        namespace, which is no boundary for the guest's root). Add V(mnt), or set O(root=false) to run a host
        program with the host's files. A guest without a root may be entered with any subset.
    type: list
    elements: str
    choices: [mnt, uts, ipc, net, pid, cgroup, time, user]
  root:
    description:
      - Run inside the guest's root - C(/) is the root of the guest's mount namespace when V(mnt) is entered, the
        host's C(/) for a guest without a root entered without V(mnt). A guest with a root needs V(mnt) in
        O(namespaces) for this (see there).
      - V(false) keeps the host's C(/); it cannot be combined with entering the mount namespace of a guest that has
        its own root.
    type: bool
    default: true
  chdir:
    description:
      - Change into this directory inside the guest (after switching to O(user)) before running the command.
      - A missing directory fails the task.
    type: str
  env:
    description:
      - Environment variables for the command, added to (and overriding) the clean default environment.
    type: dict
  user:
    description:
      - Run as this user - a name or a numeric uid - looked up in the guest's own C(/etc/passwd) and C(/etc/group)
        (never the host's user database). The primary group and the groups listing the user are set, and
        C(HOME), C(USER), C(LOGNAME), C(SHELL) come from the guest's passwd entry.
      - A uid without a passwd entry runs with gid = uid and no supplementary groups. An unknown name fails.
    type: str
  stdin:
    description:
      - Text fed to the command's standard input. Without it the command reads an empty stdin.
    type: str
  stdin_add_newline:
    description:
      - Append a newline to O(stdin).
    type: bool
    default: true
  strip_empty_ends:
    description:
      - Strip trailing newlines from RV(stdout) and RV(stderr).
    type: bool
    default: true
  creates:
    description:
      - A path or glob inside the guest (relative to O(chdir)); when it matches, the command is not run.
    type: str
  removes:
    description:
      - A path or glob inside the guest (relative to O(chdir)); when it does not match, the command is not run.
    type: str
  parallel:
    description:
      - With O(guests), how many guests run the command at a time (1 to 256). Entering a guest is mostly waiting for two
        forks and an exec; a command that mostly waits too (the guest role's service starts wait to see the service
        stay up) finishes sooner with more at a time. Each running guest holds four file descriptors of the task.
    type: int
    default: 8
  timeout:
    description:
      - Seconds the command may run. On expiry the command, its process group, its session and all its descendants
        inside the guest are stopped and killed, and the task fails with RV(timed_out=true).
      - No limit when not given.
    type: float
  detach:
    description:
      - Start the command in the background and return at once; it outlives the task. Its stdin is the guest's
        C(/dev/null), its stdout and stderr are appended to O(detach_log) inside the guest, and once the joining
        process has left it is a child of the guest's init (which reaps it).
      - The result has RV(pid) (as the host sees it) and RV(guest_pid) (inside the guest) and RV(rc=0) once the program
        was executed; a program that is not found fails as usual.
      - Always C(changed=true) (a process was started), unless O(creates) or O(removes) skip it. O(timeout) and O(stdin)
        cannot be used with it. Check mode starts nothing.
    type: bool
    default: false
  detach_log:
    description:
      - With O(detach), the file inside the guest (an absolute path) the command's output is appended to. It is
        created (mode C(0600), owned by root of the guest) when missing; a symbolic link there is refused.
      - Default C(/tmp/linuxns-detach-GUEST.log).
    type: str
  tty:
    description:
      - Give the command a terminal - a pty allocated inside the guest (from its own C(/dev/pts) for a guest with a root)
        as its stdin, stdout, stderr and controlling terminal, 80x24, C(TERM=xterm) unless O(env) sets it - for programs
        that need one (C(test -t 0) is true, C(tty) names it).
      - What the terminal shows (stdout and stderr together, C(\r\n) made C(\n)) is in RV(stdout); RV(stderr) is empty.
      - O(stdin) (at most 4096 bytes) is typed into the terminal with echo off, followed by end-of-file (C(^D));
        without it the command reads end-of-file.
    type: bool
    default: false
  run_in_check_mode:
    description:
      - Run the command in check mode too, for commands that change nothing. Without it, check mode only predicts
        the O(creates)/O(removes) decision and skips the command.
    type: bool
    default: false
attributes:
  check_mode:
    support: partial
    description: Can run in check mode and predicts whether the command would run.
    details:
      - The command is skipped in check mode (and the result says so) unless O(run_in_check_mode=true).
      - The O(creates)/O(removes) decision (and O(user), O(chdir)) is checked inside the guest, so check mode predicts
        whether the command would run.
  diff_mode:
    support: none
    description: Running a command has no before and after to show.
  idempotent:
    support: N/A
    description:
      - Whether running the command again changes something depends on the command. With O(creates) or O(removes)
        a second run is skipped with C(changed=false).
  platform:
    support: full
    platforms: posix
    description: Linux only.
notes:
  - The binary is looked up inside the guest; a command that is not found there fails with RV(rc=127) and says so.
  - O(timeout) does not reach processes that left the command's session and were re-parented to the guest's init
    before the timeout (a daemon that double-forked is no longer the command's).
seealso:
  - module: linuxns.guests.namespace_create
  - module: ansible.builtin.command
  - name: nsenter(1)
    description: Run a program in the namespaces of other processes.
    link: https://man7.org/linux/man-pages/man1/nsenter.1.html
"""

EXAMPLES = r"""
- name: Uptime of one guest
  linuxns.guests.guest_enter_exec:
    guest: web1
    cmd: uptime

- name: The same, ad hoc
  # ansible lab1 -m linuxns.guests.guest_enter_exec -a 'guest=web1 cmd="cat /proc/mounts"'
  ansible.builtin.debug:
    msg: see above

- name: A shell pipeline, as an unprivileged user of the guest, in a folder of the guest
  linuxns.guests.guest_enter_exec:
    guest: web1
    cmd: "ps | wc -l > /tmp/count"
    shell: true
    user: web
    chdir: /tmp

- name: Only once - creates is checked inside the guest
  linuxns.guests.guest_enter_exec:
    guest: "102"
    argv: [/bin/busybox, httpd, -p, "8080", -h, /srv/www]
    creates: /var/run/httpd.started

- name: The same command in many guests in one task
  linuxns.guests.guest_enter_exec:
    guests: "{{ groups_of_guests }}"
    argv: [hostname]
  register: names

- name: A host tool in a guest's network only (like ip netns exec)
  linuxns.guests.guest_enter_exec:
    guest: web1
    namespaces: [net]
    root: false
    argv: [ip, -brief, address]

- name: Feed stdin, limit the run time
  linuxns.guests.guest_enter_exec:
    guest: web1
    argv: [sh, -c, "cat > /etc/motd"]
    stdin: "welcome to web1"
    timeout: 30

- name: Start a server in the background; it outlives the task (output in /var/log/httpd.log in the guest)
  linuxns.guests.guest_enter_exec:
    guest: web1
    argv: [/bin/busybox, httpd, -f, -p, "8080", -h, /srv/www]
    detach: true
    detach_log: /var/log/httpd.log
  register: httpd

- name: A program that needs a terminal
  linuxns.guests.guest_enter_exec:
    guest: web1
    cmd: "stty size"
    tty: true

- name: A read-only command that also runs in check mode
  linuxns.guests.guest_enter_exec:
    guest: web1
    argv: [cat, /etc/os-release]
    run_in_check_mode: true
  changed_when: false
"""

RETURN = r"""
guest:
  description: Name of the guest (single form).
  returned: when O(guest) is used
  type: str
  sample: web1
context_id:
  description: Context id of the guest (single form).
  returned: when O(guest) is used
  type: int
  sample: 2
cmd:
  description: The command as it was executed (argv list).
  returned: always
  type: list
  elements: str
  sample: [uptime]
rc:
  description: The command's return code; V(127) when it was not found inside the guest, V(126) when it could not be
    executed, the negative signal number when a signal killed it.
  returned: when the command ran (single form)
  type: int
  sample: 0
stdout:
  description: The command's standard output (bytes that are not UTF-8 replaced by U+FFFD).
  returned: when the command ran (single form)
  type: str
  sample: " 10:00:00 up 1 day,  load average: 0.00, 0.00, 0.00"
stderr:
  description: The command's standard error.
  returned: when the command ran (single form)
  type: str
  sample: ""
stdout_lines:
  description: RV(stdout) split into lines.
  returned: when the command ran (single form)
  type: list
  elements: str
stderr_lines:
  description: RV(stderr) split into lines.
  returned: when the command ran (single form)
  type: list
  elements: str
start:
  description: When the command started.
  returned: when the command ran (single form)
  type: str
  sample: "2026-11-23 13:00:00.000001"
end:
  description: When the command ended.
  returned: when the command ran (single form)
  type: str
  sample: "2026-11-23 13:00:00.004321"
delta:
  description: How long the command ran.
  returned: when the command ran (single form)
  type: str
  sample: "0:00:00.004320"
msg:
  description: Why the command failed or was skipped; empty otherwise.
  returned: always
  type: str
  sample: "Did not run command since '/var/run/httpd.started' exists inside guest 'web1'"
timed_out:
  description: True when O(timeout) expired and the command's processes were killed.
  returned: when the command timed out
  type: bool
pid:
  description: With O(detach), the started process's pid as the host sees it.
  returned: when O(detach) started the command (single form)
  type: int
  sample: 4242
guest_pid:
  description: With O(detach), the started process's pid inside the guest's pid namespace (the same as RV(pid) for a guest
    without one); null when it already ended.
  returned: when O(detach) started the command (single form)
  type: int
  sample: 7
detach_log:
  description: With O(detach), the file inside the guest that gets the command's output.
  returned: when O(detach) started the command (single form)
  type: str
  sample: /tmp/linuxns-detach-web1.log
tty:
  description: True when the command ran on a terminal (O(tty)).
  returned: when O(tty) ran the command (single form)
  type: bool
results:
  description:
    - Per-guest results of the list form, in the order given; each has RV(guest), RV(context_id), RV(cmd),
      RV(rc), RV(stdout), RV(stderr), RV(stdout_lines), RV(stderr_lines), RV(start), RV(end), RV(delta), RV(msg),
      C(changed) and C(failed).
  returned: when O(guests) is used
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxns.guests.plugins.module_utils import code_cache, sealed

# Run as a module: the collection's modules below come compiled from the clone cache (the
# payload has no .pyc), and the sealed clone that enters the guests (CVE-2019-5736 class,
# docs/security.md) starts now, so that its start-up runs while this process imports and
# checks the arguments.
CLONE = None
if __name__ == "__main__":
    code_cache.cache_code()
    try:
        CLONE = sealed.SealedClone((code_cache.PKG + "execute",))
    except Exception:  # started again in run_module, which reports the error the Ansible way
        CLONE = None

from ansible_collections.linuxns.guests.plugins.module_utils import ptys
from ansible_collections.linuxns.guests.plugins.module_utils.common import common_args, new_module, registry_for, run_module
from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput
from ansible_collections.linuxns.guests.plugins.module_utils.execute import PARALLEL, Request, check_parallel, prepare_guests, run_many
from ansible_collections.linuxns.guests.plugins.module_utils.syscalls import NS_TYPES

NS_CHOICES = list(NS_TYPES)
REQUEST_KEYS = ("argv", "cmd", "shell", "namespaces", "root", "chdir", "env", "user", "stdin", "stdin_add_newline",
                "strip_empty_ends", "creates", "removes", "timeout")


def _lines(result: dict) -> dict:
    if result.get("rc") is not None or result.get("stdout") or result.get("stderr"):
        result["stdout_lines"] = result.get("stdout", "").splitlines()
        result["stderr_lines"] = result.get("stderr", "").splitlines()
    return result


def _body(module, clone):
    params = module.params
    req = Request(**{k: params[k] for k in REQUEST_KEYS})
    check_only = module.check_mode and not params["run_in_check_mode"]
    listed = params["guests"] is not None
    registry = registry_for(module)
    if listed:
        first = {}
        for i, ref in enumerate(params["guests"]):  # by name or context id: one guest listed twice is a mistake
            name = registry.resolve(ref, "guests[%d]" % i)
            if name in first:
                raise InvalidInput("guests[%d]: guest %r is listed twice (also as guests[%d])" % (i, name, first[name]))
            first[name] = i
        metas = prepare_guests(registry, params["guests"], req, "guests")
    else:
        metas = prepare_guests(registry, [params["guest"]], req, "guest")
    ptys.check_options(params)
    parallel = check_parallel(params["parallel"])
    special = not check_only and (params["detach"] or params["tty"])  # ptys.py; check mode predicts as usual
    if not listed:
        results = (clone.call(ptys.run_special, metas, req, params["tty"], params["detach"], params["detach_log"], True)
                   if special else clone.call(run_many, metas, req, check_only, True))
        result = _lines(results[0])
        if result.pop("failed", False):
            module.fail_json(**result)
        return result
    results = [_lines(r) for r in (clone.call(ptys.run_special, metas, req, params["tty"], params["detach"], params["detach_log"])
                                   if special else clone.call(run_many, metas, req, check_only, False, parallel))]
    failed = [r for r in results if r.get("failed")]
    out = {"changed": any(r.get("changed") for r in results), "cmd": list(req.argv), "results": results, "msg": ""}
    if failed:
        out["msg"] = "the command failed in %d of %d guests: %s" % (
            len(failed), len(results), "; ".join("%s: %s" % (r["guest"], r["msg"]) for r in failed[:5]))
        module.fail_json(**out)
    if check_only and all(r.get("skipped") for r in results):
        out["skipped"] = True
        out["msg"] = "Command would have run if not in check mode"
    return out


def main():
    module = new_module(
        AnsibleModule,
        argument_spec=common_args(
            guest=dict(type="str"),
            guests=dict(type="list", elements="str"),
            argv=dict(type="list", elements="str"),
            cmd=dict(type="str"),
            shell=dict(type="bool", default=False),
            namespaces=dict(type="list", elements="str", choices=NS_CHOICES),
            root=dict(type="bool", default=True),
            chdir=dict(type="str"),
            env=dict(type="dict"),
            user=dict(type="str"),
            stdin=dict(type="str"),
            stdin_add_newline=dict(type="bool", default=True),
            strip_empty_ends=dict(type="bool", default=True),
            creates=dict(type="str"),
            removes=dict(type="str"),
            timeout=dict(type="float"),
            parallel=dict(type="int", default=PARALLEL),
            run_in_check_mode=dict(type="bool", default=False),
            detach=dict(type="bool", default=False),
            detach_log=dict(type="str"),
            tty=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("guest", "guests"), ("argv", "cmd")],
        required_one_of=[("guest", "guests"), ("argv", "cmd")],
        supports_check_mode=True,
    )
    run_module(module, _run)


def _run(module):
    # The run enters guests from a sealed clone of this Python (CVE-2019-5736 class, docs/security.md).
    clone = CLONE or sealed.SealedClone((run_many.__module__,))
    try:
        return _body(module, clone)
    finally:
        clone.close()  # when it was not called (a failure before): it exits


if __name__ == "__main__":
    main()
