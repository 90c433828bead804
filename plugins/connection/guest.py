# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: guest
short_description: Run tasks inside a guest on a remote host, through the host's ssh
version_added: 0.1.0
description:
  - Runs ordinary Ansible tasks (modules, C(raw), C(copy), C(template), C(fetch)...) inside a I(guest) - a named
    set of Linux namespaces made by M(linuxns.guests.namespace_create) - on a remote physical host. The guest needs
    no sshd and no network of its own.
  - The plugin reaches the physical host with ansible-core's own C(ssh) connection plugin (or C(paramiko_ssh),
    see O(linuxns_transport)), created inside this one with the host's address, port, user and key, so
    C(ControlPersist), C(ssh_args), host key settings and every other C(ansible_ssh_*) variable work as they do
    for the host itself.
  - Every command enters the guest in one hop - all of its namespaces and its root - with a small entry program
    run by the host's Python (O(linuxns_host_python)). The program is built on the controller from the
    collection's module_utils (the same enter path M(linuxns.guests.guest_enter_exec) uses) and sent with each
    command, like Ansiballz; nothing is installed on the host. The host's Python keeps the program's compiled
    modules in C(entry-cache) under O(linuxns_state_dir) (root-only, named by the program's hash) to skip
    compiling it on every command.
  - Files are copied into and out of the guest through its mount namespace and root, so paths are the guest's
    own and symlinks resolve inside the guest. Uploads stream over the ssh channel's stdin; downloads go to a
    private file under O(linuxns_state_dir) on the host that is then fetched and removed (with C(paramiko) they
    stream over stdout).
  - Commands run as root in the guest with the guest's C(/bin/sh). Modules need a Python inside the guest
    (C(raw) does not); C(become) works inside the guest when it has C(sudo) or C(su).
  - Failures say which part failed - the physical host is unreachable, the guest does not exist on it, or the
    guest is stopped - and the host is marked unreachable.
author:
  - linuxns.guests developers (@linuxns)
requirements:
  - On the physical host, root login (or O(linuxns_host_user) that is root), or a user with C(sudo) to root and
    O(linuxns_host_become); and Python 3.9 or newer.
  - In the guest, C(/bin/sh); a Python for modules (C(ansible_python_interpreter) is the guest's).
notes:
  - C(ansible_host), C(ansible_port), C(ansible_user) and C(ansible_ssh_private_key_file) describe the
    B(physical host) (they are the fallbacks of O(linuxns_host), O(linuxns_host_port), O(linuxns_host_user) and
    O(linuxns_host_private_key_file)); C(ansible_python_interpreter) is the B(guest's) Python.
  - Every other variable of the C(ssh) (or C(paramiko_ssh)) connection - C(ansible_ssh_args),
    C(ansible_ssh_common_args), C(ansible_ssh_extra_args), C(ansible_password), C(ansible_ssh_timeout),
    C(ansible_control_path), C(ansible_ssh_transfer_method)... - and their C(ansible.cfg) and environment
    settings are passed to the inner connection unchanged.
  - The inventory plugin P(linuxns.guests.guests#inventory) writes these variables for a whole fleet.
  - Under Mitogen's strategies (C(mitogen_linear)...) this connection stays Ansible's own - Mitogen has no transport
    for it - so guest tasks run as without Mitogen; the hosts' own tasks do use Mitogen.
seealso:
  - module: linuxns.guests.guest_enter_exec
  - module: linuxns.guests.namespace_create
  - plugin: linuxns.guests.guests
    plugin_type: inventory
  - plugin: ansible.builtin.ssh
    plugin_type: connection
options:
  linuxns_guest:
    description:
      - The guest to enter, by name or context id (a string of digits is a context id).
      - Defaults to the inventory host name.
    type: string
    vars:
      - name: inventory_hostname
      - name: linuxns_guest
  linuxns_host:
    description:
      - Address (or name) of the physical host the guest lives on, reached over ssh.
    type: string
    vars:
      - name: ansible_host
      - name: ansible_ssh_host
      - name: linuxns_host
  linuxns_host_port:
    description:
      - ssh port of the physical host. The ssh default (or ssh config) when not set.
    type: int
    vars:
      - name: ansible_port
      - name: ansible_ssh_port
      - name: linuxns_host_port
    keyword:
      - name: port
  linuxns_host_user:
    description:
      - User to log in as on the physical host; entering a guest needs root.
    type: string
    vars:
      - name: ansible_user
      - name: ansible_ssh_user
      - name: linuxns_host_user
    keyword:
      - name: remote_user
  linuxns_host_private_key_file:
    description:
      - Private key for the ssh login to the physical host.
    type: path
    vars:
      - name: ansible_private_key_file
      - name: ansible_ssh_private_key_file
      - name: linuxns_host_private_key_file
  linuxns_host_become:
    description:
      - Become root on the physical host (with O(linuxns_host_become_method)) to run the entry program, for a
        non-root O(linuxns_host_user) - as community.proxmox's C(pct_remote) and the lxd connection's
        C(lxd_become_method) do.
      - This is the B(host's) privilege escalation and is separate from C(become) in a task, which happens
        B(inside the guest) (the guest's C(sudo) or C(su)).
      - Needs C(linuxns_transport=ssh). File uploads stream over stdin and downloads over stdout (the host's
        staging folder is root's).
    type: boolean
    default: false
    version_added: 0.2.0
    env:
      - name: ANSIBLE_LINUXNS_HOST_BECOME
    vars:
      - name: linuxns_host_become
      - name: ansible_linuxns_host_become
  linuxns_host_become_method:
    description:
      - How to become O(linuxns_host_become_user) on the physical host. Only C(sudo) (it can read a password from
        stdin without a terminal).
    type: string
    default: sudo
    choices: [sudo]
    version_added: 0.2.0
    env:
      - name: ANSIBLE_LINUXNS_HOST_BECOME_METHOD
    vars:
      - name: linuxns_host_become_method
      - name: ansible_linuxns_host_become_method
  linuxns_host_become_user:
    description:
      - The user to become on the physical host; entering a guest needs root.
    type: string
    default: root
    version_added: 0.2.0
    env:
      - name: ANSIBLE_LINUXNS_HOST_BECOME_USER
    vars:
      - name: linuxns_host_become_user
      - name: ansible_linuxns_host_become_user
  linuxns_host_become_password:
    description:
      - The host's sudo password of O(linuxns_host_user). Without it, C(sudo -n) is used (a C(NOPASSWD) rule).
      - It is written as the first line of the command's stdin for C(sudo -S -k) - never on a command line, never
        in the output or logs - and the entry program drops that line (when sudo did not read it) before the
        command's own input.
      - Use Ansible Vault for it. It cannot contain a line break.
    type: string
    version_added: 0.2.0
    env:
      - name: ANSIBLE_LINUXNS_HOST_BECOME_PASSWORD
    vars:
      - name: linuxns_host_become_password
      - name: ansible_linuxns_host_become_password
  linuxns_host_python:
    description:
      - The physical host's Python, which runs the entry program (not the guest's, which runs modules).
    type: string
    default: /usr/bin/python3
    vars:
      - name: linuxns_host_python
  linuxns_state_dir:
    description:
      - The state folder of guests on the physical host (O(linuxns.guests.namespace_create#module:state_dir)).
    type: string
    default: /run/linuxns
    vars:
      - name: linuxns_state_dir
  linuxns_transport:
    description:
      - The connection plugin that reaches the physical host.
    type: string
    default: ssh
    choices: [ssh, paramiko]
    vars:
      - name: linuxns_transport
  pipelining:
    description:
      - Pipelining sends modules over the channel's stdin to the guest's Python instead of copying them into the
        guest first (fewer commands per task).
      - Same settings as the C(ssh) connection's pipelining.
    type: boolean
    default: false
    env:
      - name: ANSIBLE_PIPELINING
      - name: ANSIBLE_SSH_PIPELINING
    ini:
      - section: defaults
        key: pipelining
      - section: connection
        key: pipelining
      - section: ssh_connection
        key: pipelining
    vars:
      - name: ansible_pipelining
      - name: ansible_ssh_pipelining
"""

EXAMPLES = r"""
# Inventory (INI): guests web1 and db1 on physical host 198.18.81.2
# [guests]
# web1 linuxns_host=198.18.81.2
# db1  linuxns_host=198.18.81.2 linuxns_guest=102
# [guests:vars]
# ansible_connection=linuxns.guests.guest
# ansible_user=root
# ansible_ssh_private_key_file=~/.ssh/id_ed25519
# ansible_python_interpreter=/usr/bin/python3

- name: Ordinary tasks inside the guests
  hosts: guests
  gather_facts: true      # facts are the guest's: its hostname, addresses, mounts
  tasks:
    - name: A file inside the guest's own root
      ansible.builtin.copy:
        dest: /etc/motd
        content: "hello from {{ ansible_hostname }}\n"

    - name: A guest without Python still takes raw commands
      ansible.builtin.raw: cat /etc/hostname

- name: The same guest through paramiko, ad hoc
  hosts: web1
  gather_facts: false
  vars:
    linuxns_transport: paramiko
  tasks:
    - ansible.builtin.ping:
"""

import json
import os

from ansible import constants as C
from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.plugins.loader import connection_loader
from ansible.utils.display import Display

from ansible_collections.linuxns.guests.plugins.module_utils import errors
from ansible_collections.linuxns.guests.plugins.module_utils.errors import ENTRY_ERROR_MARK as ERROR_MARK
from ansible_collections.linuxns.guests.plugins.module_utils.errors import ENTRY_ERROR_RC as ERROR_RC
from ansible_collections.linuxns.guests.plugins.plugin_utils import entry_program

display = Display()

# ansible-core's own plugins, by the short names under which the config knows their variables.
INNER = {"ssh": "ssh", "paramiko": "paramiko_ssh"}
# Variables that describe the physical host: they reach the inner connection through our own options.
HOST_VARS = frozenset((
    "inventory_hostname", "ansible_host", "ansible_ssh_host", "ansible_paramiko_host",
    "ansible_port", "ansible_ssh_port", "ansible_paramiko_port",
    "ansible_user", "ansible_ssh_user", "ansible_paramiko_user",
    "ansible_private_key_file", "ansible_ssh_private_key_file", "ansible_paramiko_private_key_file",
    "ansible_pipelining", "ansible_ssh_pipelining",
))
# What sudo says when the host-side become itself fails (not the command it runs).
SUDO_FAILURES = ("incorrect password attempt", "a password is required", "is not in the sudoers file",
                 "is not allowed to execute", "a terminal is required", "no tty present", "sudo: not found",
                 "sudo: command not found", "Sorry, try again", "may not run sudo")


def _local_tmp():
    """The run's local temp folder (shared by the forked workers; removed at the end of the run), or None."""
    try:
        path = C.DEFAULT_LOCAL_TMP
    except Exception:  # pragma: no cover - very old or unusual configs
        return None
    return path if path and os.path.isdir(path) else None


def parse_entry_error(rc: int, stdout: bytes, stderr: bytes):
    """The entry program's own error report (the GuestError it raised, rebuilt), or None when the command itself ran."""
    if rc != ERROR_RC:
        return None
    for blob in (stderr, stdout):  # with a tty (ssh -tt) stderr arrives on stdout
        text = to_text(blob, errors="surrogate_or_replace")
        for line in reversed(text.splitlines()):
            line = line.strip()
            if line.startswith(ERROR_MARK):
                try:
                    payload = json.loads(line[len(ERROR_MARK):])
                except ValueError:
                    continue
                if isinstance(payload, dict):
                    return errors.from_payload(payload)
    return None


class Connection(ConnectionBase):
    """Commands and files inside a guest, through an inner ssh (or paramiko) connection to its host."""

    transport = "linuxns.guests.guest"
    # Ansible's action code asks for the "remote user" (for ~ and become's temp-file permissions): inside the
    # guest that is root, whoever logs into the host (linuxns_host_user is the host's login, not the guest's).
    default_user = "root"
    has_pipelining = True
    has_tty = True

    def __init__(self, play_context, *args, **kwargs):
        super().__init__(play_context, *args, **kwargs)
        self._inner = None
        self._inner_vars = {}
        self._task_keys = None

    # -- options -------------------------------------------------------------------------
    def _resolve_option_variables(self, variables, templar):
        """Our own variables, and the inner connection's (ansible_ssh_args...) kept aside for it."""
        options = super()._resolve_option_variables(variables, templar)
        transport = options.get("linuxns_transport") or "ssh"
        if transport not in INNER:
            transport = "ssh"
        inner = {}
        for plugin in (INNER[transport],):
            # The inner plugin's variable names are known to the config only once its class is loaded.
            try:
                connection_loader.get(plugin, class_only=True)
                names = C.config.get_plugin_vars("connection", plugin)
            except Exception:  # pragma: no cover - a broken or missing plugin fails later, when it is used
                names = []
            for name in names:
                if name in HOST_VARS or "[" in name or name in inner or name not in variables:
                    continue
                try:
                    inner[name] = templar.template(variables[name])
                except Exception:  # omitted or undefined: the inner plugin's default applies
                    continue
        self._inner_vars = inner
        return options

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        if task_keys is not None:
            self._task_keys = task_keys

    def set_become_plugin(self, plugin) -> None:
        super().set_become_plugin(plugin)
        if self._inner is not None:
            self._inner.set_become_plugin(plugin)

    @property
    def _guest(self) -> str:
        guest = self.get_option("linuxns_guest")
        if guest in (None, ""):
            raise AnsibleConnectionFailure("linuxns_guest is not set: name the guest to enter (its name or context id)")
        return str(guest)

    @property
    def _host(self) -> str:
        host = self.get_option("linuxns_host") or self._play_context.remote_addr
        if not host:
            raise AnsibleConnectionFailure("linuxns_host is not set for guest %r: give the address of its physical host" % self._guest)
        return str(host)

    def _where(self) -> str:
        port = self.get_option("linuxns_host_port")
        return "%s%s" % (self._host, ":%s" % port if port else "")

    # -- the inner connection ------------------------------------------------------------
    def _inner_connection(self):
        if self._inner is not None:
            return self._inner
        transport = self.get_option("linuxns_transport")
        if transport not in INNER:
            raise AnsibleConnectionFailure("linuxns_transport %r is not one of: %s" % (transport, ", ".join(INNER)))
        inner = connection_loader.get(INNER[transport], self._play_context, shell=self._shell)
        if inner is None:
            raise AnsibleConnectionFailure("the %s connection plugin (linuxns_transport) cannot be loaded" % INNER[transport])
        direct = {"host" if transport == "ssh" else "remote_addr": self._host}
        for ours, theirs in (("linuxns_host_port", "port"), ("linuxns_host_user", "remote_user"),
                             ("linuxns_host_private_key_file", "private_key_file")):
            value = self.get_option(ours)
            if value not in (None, ""):
                direct[theirs] = value
        inner.set_options(task_keys=self._task_keys, var_options=dict(self._inner_vars), direct=direct)
        if self.become is not None:
            inner.set_become_plugin(self.become)
        self._inner = inner
        return inner

    def _connect(self):
        if not self._connected:
            display.vvv("ESTABLISH GUEST CONNECTION TO %r ON %s" % (self._guest, self._where()), host=self._play_context.remote_addr)
            self._inner_connection()._connect()
            self._connected = True
        return self

    def _host_become(self):
        """(method, user, password or None) of the host-side become, or None without one."""
        if not self.get_option("linuxns_host_become"):
            return None
        if self.get_option("linuxns_transport") != "ssh":
            raise AnsibleConnectionFailure("guest %r: linuxns_host_become needs linuxns_transport=ssh (paramiko cannot stream "
                                           "the sudo password on stdin)" % self._guest)
        password = self.get_option("linuxns_host_become_password")
        return (self.get_option("linuxns_host_become_method") or "sudo", self.get_option("linuxns_host_become_user") or "root",
                None if password in (None, "") else str(password))

    def _entry(self, *args) -> str:
        become = self._host_become()
        try:
            return entry_program.command(self.get_option("linuxns_host_python"), [args[0], self.get_option("linuxns_state_dir")] + list(args[1:]),
                                         cache_dir=_local_tmp(), become=None if become is None else (become[0], become[1], become[2] is not None))
        except ValueError as exc:
            raise AnsibleConnectionFailure("guest %r: linuxns_host_become_*: %s" % (self._guest, exc)) from None

    def _outer(self, args, in_data=None, sudoable=True):
        """Run the entry program on the host; map its failures to clear connection errors."""
        inner = self._inner_connection()
        if self.become is not None and inner.become is not self.become:
            inner.set_become_plugin(self.become)
        command = self._entry(*args)
        become = self._host_become()
        if become is not None and become[2] is not None:
            try:
                in_data = entry_program.become_stdin(become[2], in_data)
            except ValueError as exc:
                raise AnsibleConnectionFailure("guest %r: linuxns_host_become_password: %s" % (self._guest, exc)) from None
        strip_success = False
        if become is not None and become[2] is not None and sudoable and self.become is not None and getattr(self.become, "success", None):
            # The ssh plugin would wait for the guest's become to succeed before sending stdin, but the host's sudo
            # reads its password from that stdin first: send at once and drop the success line here.
            if getattr(self.become, "prompt", None):
                raise AnsibleConnectionFailure("guest %r: become inside the guest with a password cannot be combined with "
                                               "linuxns_host_become_password (both would be answered on stdin); use a "
                                               "NOPASSWD rule on the host or no password for the guest's become" % self._guest)
            sudoable, strip_success = False, True
        try:
            rc, out, err = inner.exec_command(command, in_data=in_data, sudoable=sudoable)
        except AnsibleConnectionFailure as exc:
            raise AnsibleConnectionFailure("guest %r: its physical host %s is unreachable over %s: %s"
                                           % (self._guest, self._where(), self.get_option("linuxns_transport"), exc)) from None
        if strip_success:
            out = self._strip_become_success(out)
        if become is not None:
            self._check_host_become(become, rc, out, err)
        self._check_entry(rc, out, err)
        return rc, out, err

    def _strip_become_success(self, out: bytes) -> bytes:
        """The output after the guest become's success line (as the ssh plugin drops it when it watches)."""
        marker = to_bytes(self.become.success, errors="surrogate_or_strict")
        at = out.find(marker)
        if at < 0:
            return out
        end = out.find(b"\n", at)
        return b"" if end < 0 else out[end + 1:]

    def _check_host_become(self, become, rc, out, err) -> None:
        """A failed sudo on the host (wrong or missing password, no sudoers rule) is a connection failure."""
        if rc not in (1, 127):
            return
        text = to_text(err + out, errors="surrogate_or_replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        said = [line for line in lines if line.startswith(("sudo:", "Sorry, try again")) or "sudo: not found" in line
                or "is not in the sudoers file" in line]
        if said and any(f in line for line in said for f in SUDO_FAILURES) and ERROR_MARK not in text:
            raise AnsibleConnectionFailure("guest %r: host become (%s to %s as %s on host %s) failed: %s"
                                           % (self._guest, become[0], become[1], self.get_option("linuxns_host_user") or "the ssh user",
                                              self._where(), "; ".join(said[-2:])))

    def _check_entry(self, rc, out, err) -> None:
        found = parse_entry_error(rc, out, err)
        if found is not None:
            msg = found.msg
            where = "on host %s (state dir %s)" % (self._where(), self.get_option("linuxns_state_dir"))
            if isinstance(found, errors.GuestNotFound):
                raise AnsibleConnectionFailure("guest %r is missing: it does not exist %s: %s" % (self._guest, where, msg))
            if isinstance(found, errors.GuestStale):
                raise AnsibleConnectionFailure("guest %r is stopped %s: %s; start it again with linuxns.guests.namespace_create"
                                               % (self._guest, where, msg))
            if isinstance(found, errors.PathError):  # the guest was entered; the task's path is wrong
                raise AnsibleError(msg)
            raise AnsibleConnectionFailure("guest %r %s cannot be entered: %s" % (self._guest, where, msg))
        if rc == 127:
            text = to_text(err + out, errors="surrogate_or_replace")
            python = self.get_option("linuxns_host_python")
            if python in text and ("not found" in text or "No such file" in text):
                raise AnsibleConnectionFailure("guest %r: the host python %s (linuxns_host_python) was not found on host %s"
                                               % (self._guest, python, self._where()))

    def is_pipelining_enabled(self, wrap_async: bool = False) -> bool:
        # paramiko_ssh cannot send a module on stdin.
        if self.get_option("linuxns_transport") == "paramiko":
            return False
        return super().is_pipelining_enabled(wrap_async)

    # -- the connection API --------------------------------------------------------------
    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        display.vvv("EXEC in guest %r: %s" % (self._guest, cmd), host=self._play_context.remote_addr)
        return self._outer(["exec", self._guest, cmd], in_data=in_data, sudoable=sudoable)

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        display.vvv("PUT %s TO %s in guest %r" % (in_path, out_path, self._guest), host=self._play_context.remote_addr)
        b_in = to_bytes(in_path, errors="surrogate_or_strict")
        if not os.path.exists(b_in):
            raise AnsibleFileNotFound("file or module does not exist: %s" % in_path)
        with open(b_in, "rb") as f:
            data = f.read()
        out_path = to_text(out_path, errors="surrogate_or_strict")
        if self.get_option("linuxns_transport") == "paramiko":
            # paramiko cannot stream stdin: upload to a private host file, then copy that into the guest.
            rc, out, err = self._outer(["mkstage"], sudoable=False)
            self._transfer_failed(rc, err or out, in_path, out_path)
            staged = to_text(out, errors="surrogate_or_strict").strip().splitlines()[-1]
            try:
                self._inner_connection().put_file(in_path, staged)
            except BaseException:
                self._outer(["unstage", staged], sudoable=False)
                raise
            rc, out, err = self._outer(["place", self._guest, staged, out_path], sudoable=False)
            self._transfer_failed(rc, err or out, in_path, out_path)
            return
        # Empty data would give the command a pty for stdin: the size tells the program to read nothing.
        rc, out, err = self._outer(["put", self._guest, out_path, str(len(data))], in_data=data or None, sudoable=False)
        self._transfer_failed(rc, err or out, in_path, out_path)

    def _transfer_failed(self, rc, err, in_path, out_path) -> None:
        if rc != 0:
            raise AnsibleError("failed to transfer %s to %s inside guest %r: %s"
                               % (in_path, out_path, self._guest, to_text(err, errors="surrogate_or_replace").strip()))

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        display.vvv("FETCH %s FROM guest %r TO %s" % (in_path, self._guest, out_path), host=self._play_context.remote_addr)
        in_path = to_text(in_path, errors="surrogate_or_strict")
        b_out = to_bytes(out_path, errors="surrogate_or_strict")
        if self.get_option("linuxns_transport") == "paramiko" or self._host_become() is not None:
            # paramiko; or a non-root login, which cannot read the root-only staged copy: stream over stdout.
            rc, out, err = self._outer(["fetch", self._guest, in_path], sudoable=False)
            self._fetch_failed(rc, err, in_path)
            with open(b_out, "wb") as f:
                f.write(out)
            return
        # ssh: a big stdout is slow through the ssh plugin; stage on the host and fetch with its file transfer.
        rc, out, err = self._outer(["stage", self._guest, in_path], sudoable=False)
        self._fetch_failed(rc, err or out, in_path)
        staged = to_text(out, errors="surrogate_or_strict").strip().splitlines()[-1]
        try:
            self._inner_connection().fetch_file(staged, out_path)
        finally:
            try:
                self._outer(["unstage", staged], sudoable=False)
            except AnsibleError as exc:
                display.warning("guest %r: could not remove the staged copy %s on host %s: %s" % (self._guest, staged, self._where(), exc))

    def _fetch_failed(self, rc, err, in_path) -> None:
        if rc != 0:
            raise AnsibleError("failed to fetch %s from guest %r: %s" % (in_path, self._guest, to_text(err, errors="surrogate_or_replace").strip()))

    def reset(self):
        if self._inner is not None:
            self._inner.reset()

    def close(self):
        if self._inner is not None:
            self._inner.close()
        self._connected = False
