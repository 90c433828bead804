# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a guest keeps on disk, across reboots: ``TABLE_DIR/NAME/``.

Layout (TABLE_DIR defaults to ``/etc/linuxns/guests``, then ``$LINUXNS_TABLE_DIR``
or the modules' ``table_dir`` option; see resolve_table_dir)::

    TABLE_DIR/NAME/fstab        the guest's persistent mount table (namespace_mount)
    TABLE_DIR/NAME/context_id   the guest's context id, so it gets it back when it is
                                made again (after a reboot wiped the registry too)
    TABLE_DIR/NAME/guest.json   the guest's definition: its wanted state, what the restore
                                service brings back at boot (boot.py; see "Definitions" below)
    TABLE_DIR/NAME/userns       the id range of a ``userns: auto`` guest (userns.py)

The registry under /run (registry.py) is what exists now; this folder is what is
kept.  Every file is written atomically.  The registry must not import this module
(the connection plugin's entry program bundles the registry only): it gets a
KeptIds object passed in.
"""

from __future__ import annotations

import json
import os

from ansible_collections.linuxns.guests.plugins.module_utils import model
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, InvalidInput

DEFAULT_TABLE_DIR = "/etc/linuxns/guests"
TABLE_DIR_ENV = "LINUXNS_TABLE_DIR"
TABLE_NOTE = "mount_table_dir"  # a file in the state folder: the table folder namespace_mount last used
TABLE_FILE = "fstab"
CONTEXT_ID_FILE = "context_id"
DEFINITION_FILE = "guest.json"
USERNS_FILE = "userns"  # the id range of a userns: auto guest (userns.py)
KEPT_FILES = (TABLE_FILE, CONTEXT_ID_FILE, DEFINITION_FILE, USERNS_FILE)
_UNREAD = object()  # write_definition: the caller did not pass what it read


# ---------------------------------------------------------------------------------------
# The table folder: resolved here only (checked by model.check_dir, like state_dir)
# ---------------------------------------------------------------------------------------
def resolve_table_dir(state_dir: str, given=None, remembered: bool = True) -> str:
    """The table folder of one run: ``given`` (a module's table_dir option, validated;
    an empty string fails), else $LINUXNS_TABLE_DIR, else (``remembered``) the folder
    namespace_mount noted in the state folder (on /run: a reboot forgets it), else the default."""
    if given is not None:
        return model.check_dir(given, "table_dir", DEFAULT_TABLE_DIR)
    env = os.environ.get(TABLE_DIR_ENV)
    if env:
        return model.check_dir(env, "$" + TABLE_DIR_ENV)
    if remembered:
        try:
            with open(os.path.join(state_dir, TABLE_NOTE)) as f:
                note = f.read().strip()
            return model.check_dir(note, "table_dir")
        except (OSError, InvalidInput):
            pass
    return DEFAULT_TABLE_DIR


def remember_table_dir(registry, table_dir: str) -> None:
    """Note a non-default table folder in the state folder so that namespace_create's
    re-apply finds it (until a reboot wipes the state folder)."""
    note = os.path.join(registry.state_dir, TABLE_NOTE)
    if table_dir == DEFAULT_TABLE_DIR and not os.path.exists(note):
        return
    try:
        with open(note) as f:
            if f.read().strip() == table_dir:
                return
    except OSError:
        pass
    registry.ensure()
    reg.write_atomic(note, table_dir + "\n", 0o644)


# ---------------------------------------------------------------------------------------
# One guest's kept files
# ---------------------------------------------------------------------------------------
class Kept:
    """The files kept for guest ``name`` in ``table_dir``."""

    def __init__(self, table_dir: str, name: str):
        self.table_dir = table_dir
        self.name = name
        self.folder = os.path.join(table_dir, name)
        self.table_path = os.path.join(self.folder, TABLE_FILE)
        self.context_id_path = os.path.join(self.folder, CONTEXT_ID_FILE)
        self.definition_path = os.path.join(self.folder, DEFINITION_FILE)
        self.userns_path = os.path.join(self.folder, USERNS_FILE)

    def _write(self, path: str, text: str) -> None:
        try:
            os.makedirs(self.folder, mode=0o755, exist_ok=True)
            reg.write_atomic(path, text, 0o644)
        except OSError as exc:
            raise GuestError("guest %r: cannot write %s (table_dir %s): %s" % (self.name, path, self.table_dir, exc.strerror)) from None

    # ---- the mount table ------------------------------------------------------------
    def read_table(self) -> list:
        """(line number, text) of the table's lines that are not empty or comments."""
        try:
            with open(self.table_path) as f:
                text = f.read()
        except FileNotFoundError:
            return []
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                out.append((n, line))
        return out

    def has_table(self) -> bool:
        return os.path.exists(self.table_path)

    def write_table(self, lines: list) -> None:
        head = "# Mount table of guest %s, applied when its mount namespace is made (linuxns.guests.namespace_mount).\n" % self.name
        head += "# src path fstype opts dump pass\n"
        self._write(self.table_path, head + "".join(line + "\n" for line in lines))

    # ---- the context id -------------------------------------------------------------
    def read_context_id(self):
        """The kept context id, or None (no file, or not a valid id)."""
        try:
            with open(self.context_id_path) as f:
                return reg.validate_context_id(f.read().strip())
        except (OSError, InvalidInput):
            return None

    def write_context_id(self, ctx: int) -> bool:
        """Keep ``ctx``; False when it was kept already."""
        ctx = reg.validate_context_id(ctx)
        if self.read_context_id() == ctx:
            return False
        self._write(self.context_id_path, "%d\n" % ctx)
        return True

    # ---- the definition (see "Definitions" below) -----------------------------------
    def read_definition(self):
        """The kept definition (a dict, checked by :func:`check_definition`), or None when there
        is none; a broken one, or one of a newer format, raises GuestError naming the guest and file."""
        try:
            with open(self.definition_path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise GuestError("guest %r: its kept definition %s cannot be read: %s" % (self.name, self.definition_path, exc)) from None
        return check_definition(data, self.name, self.definition_path)

    def stamped(self, definition: dict) -> dict:
        """``definition`` as :meth:`write_definition` keeps it (and :meth:`read_definition` gives it back)."""
        return dict(definition, version=DEFINITION_VERSION, name=self.name)

    def write_definition(self, definition: dict, check: bool = False, current=_UNREAD) -> bool:
        """Keep ``definition`` (its ``version`` set); False when it was kept already (not rewritten).
        ``check``: only say whether it would be written. ``current``: what the caller has just read
        with :meth:`read_definition` (saves reading and checking the file a second time)."""
        definition = self.stamped(definition)
        check_definition(definition, self.name, self.definition_path)
        try:
            if (self.read_definition() if current is _UNREAD else current) == definition:
                return False
        except GuestError:
            pass  # callers check first (check_definition_file): only a caller that means to replace it gets here
        if check:
            return True
        self._write(self.definition_path, json.dumps(definition, sort_keys=True, indent=1) + "\n")
        return True

    # ---- forgetting -----------------------------------------------------------------
    def files(self) -> list:
        """The kept files that exist (paths)."""
        return [p for p in (self.table_path, self.context_id_path, self.definition_path, self.userns_path) if os.path.lexists(p)]

    def forget(self, check_mode: bool = False) -> list:
        """Remove the kept files and the folder when that leaves it empty; returns what
        is (or, in check mode, would be) removed."""
        gone = self.files()
        if check_mode:
            others = set(os.listdir(self.folder)) - set(KEPT_FILES) if os.path.isdir(self.folder) else {None}
            return gone + ([self.folder] if not others and gone else [])
        try:
            for path in gone:
                os.unlink(path)
            if gone:
                try:
                    os.rmdir(self.folder)
                    gone.append(self.folder)
                except OSError:
                    pass  # missing, or it holds something else: kept
        except OSError as exc:
            raise GuestError("guest %r: cannot remove its kept files in %s: %s" % (self.name, self.folder, exc.strerror)) from None
        return gone


class KeptByOthers:
    """The context ids that guests other than one keep (:meth:`KeptIds.others`): ``get(ctx)``
    names the guest that keeps ``ctx`` (the first by name, when more do), ``ctx in view``
    says whether one does."""

    def __init__(self, by_ctx: dict, name: str):
        self._by_ctx, self._name = by_ctx, name

    def get(self, ctx, default=None):
        holders = self._by_ctx.get(ctx)
        if not holders or holders == {self._name}:
            return default
        return min(holders - {self._name})

    def __contains__(self, ctx) -> bool:
        return self.get(ctx) is not None

    def as_dict(self) -> dict:
        """context id -> guest, for every id another guest keeps (O(n): for tests and reports)."""
        return {ctx: self.get(ctx) for ctx in sorted(self._by_ctx) if ctx in self}


class KeptIds:
    """The context ids kept in one table folder, as the registry's allocation needs them
    (Registry.reserve_context_id takes one of these: it prefers a guest's kept id and
    skips the ids other guests keep).  The folder's scan is cached and redone when the
    folder changed."""

    def __init__(self, table_dir: str):
        self.table_dir = table_dir
        self._scan = None  # name -> the context id it keeps
        self._by_ctx = {}  # context id -> the names that keep it (two only when edited by hand)
        self._stamp = None
        self.userns = None  # the run's userns.Ranges (ensure_guests sets it)

    def own(self, name: str):
        return Kept(self.table_dir, name).read_context_id()

    def others(self, name: str) -> KeptByOthers:
        """The context ids kept by guests other than ``name``: a view, asked once per guest of
        a batch, so each question costs O(1) (a dict built per call made a batch of n new
        guests O(n^2): ~3 ms per guest at 10,000)."""
        try:
            st = os.stat(self.table_dir)
            stamp = (st.st_ino, st.st_mtime_ns)
        except OSError:
            stamp = None
        if self._scan is None or stamp != self._stamp:
            self._stamp, self._scan, self._by_ctx = stamp, {}, {}
            try:
                names = os.listdir(self.table_dir)
            except OSError:
                names = []
            for n in names:
                ctx = Kept(self.table_dir, n).read_context_id()
                if ctx is not None:
                    self._scan[n] = ctx
                    self._by_ctx.setdefault(ctx, set()).add(n)
        return KeptByOthers(self._by_ctx, name)

    def _own_change(self, name: str, ctx) -> None:
        # Our own change is known: no rescan of the folder for it (a batch of new guests
        # would otherwise scan it once per guest).
        if self._scan is None:
            return
        old = self._scan.pop(name, None)
        if old is not None:
            holders = self._by_ctx.get(old, set())
            holders.discard(name)
            if not holders:
                self._by_ctx.pop(old, None)
        if ctx is not None:
            self._scan[name] = ctx
            self._by_ctx.setdefault(ctx, set()).add(name)
        try:
            st = os.stat(self.table_dir)
            self._stamp = (st.st_ino, st.st_mtime_ns)
        except OSError:
            self._stamp = None

    def folder_made(self, name: str) -> None:
        """This run made the folder TABLE_DIR/NAME (userns.Ranges.allocate): no rescan for it."""
        self._own_change(name, self._scan.get(name) if self._scan is not None else None)

    def keep(self, name: str, ctx: int) -> bool:
        changed = Kept(self.table_dir, name).write_context_id(ctx)
        self._own_change(name, ctx)
        return changed

    def forget(self, name: str, check_mode: bool = False) -> list:
        gone = Kept(self.table_dir, name).forget(check_mode)
        if not check_mode:
            self._own_change(name, None)
            if self.userns is not None:
                self.userns.forgotten(name)
        return gone


# ---------------------------------------------------------------------------------------
# Definitions: TABLE_DIR/NAME/guest.json
# ---------------------------------------------------------------------------------------
# {"version": 1, "name": NAME, "state": present|frozen|absent,
#  "guest": {the guest's recorded model fields (model.RECORDED: namespaces, share, root,
#            hostname, init, limits, cgroup_parent, confinement, userns, autostart, and any
#            field a later model row adds)},
#  "links": {IFNAME: a netns_link entry of the guest (its addresses, peer, routes)}}
# The guest's mounts are its mount table, the fstab next to it (namespace_mount): creating
# the guest applies it, at boot too.  namespace_create writes "guest" and "state",
# netns_link writes "links"; each keeps the other's part.
DEFINITION_VERSION = 1
DEFINITION_KEYS = {"version": int, "name": str, "state": str, "guest": dict, "links": dict}
DEFINITION_STATES = ("present", "frozen", "absent")
_JSON_TYPES = {"str": str, "path": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict}


def check_definition(data, name: str, path: str) -> dict:
    """``data`` (a definition read from ``path``) when it is one this version can use, else
    GuestError naming the guest, the file and what is wrong."""
    def broken(what):
        return GuestError("guest %r: its kept definition %s is broken: %s; fix or remove the file "
                          "(namespace_create with state=absent and purge=true forgets it)" % (name, path, what))

    if not isinstance(data, dict):
        raise broken("not a JSON object")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise broken("no format version (version %r)" % (version,))
    if version > DEFINITION_VERSION:
        raise GuestError("guest %r: its kept definition %s has format version %d; this version of linuxns.guests reads "
                         "version %d at most: it was written by a newer version, use that one (nothing was changed)"
                         % (name, path, version, DEFINITION_VERSION))
    for key, kind in DEFINITION_KEYS.items():
        if key in data and not isinstance(data[key], kind):
            raise broken("%s is not a %s" % (key, kind.__name__))
    if data.get("name", name) != name:
        raise broken("it names guest %r" % data["name"])
    if data.get("state", "present") not in DEFINITION_STATES:
        raise broken("state %r is not one of %s" % (data["state"], ", ".join(DEFINITION_STATES)))
    for key, value in (data.get("guest") or {}).items():
        field = model.GUEST_BY_NAME.get(key)
        if field is None or not field.change:
            continue  # a field this version does not know: kept, and left to the version that does
        if value is not None and (not isinstance(value, _JSON_TYPES[field.type]) or (isinstance(value, bool) and field.type != "bool")):
            raise broken("guest.%s %r is not a %s" % (key, value, field.type))
    for ifname, entry in (data.get("links") or {}).items():
        if not isinstance(entry, dict):
            raise broken("links.%s is not a link entry (a JSON object)" % ifname)
    return data


def guest_fields(meta) -> dict:
    """The definition's "guest" part of guest record ``meta``: every recorded model field
    (model.RECORDED) that has a value, so a field a new model row adds is saved with no
    change here."""
    out = {}
    for key in model.RECORDED:
        value = meta.field(key)
        if value is not None:
            out[key] = value
    if out.get("userns") == "auto":  # its maps are allocated again from the kept range
        out.pop("uid_map", None)
        out.pop("gid_map", None)
    return out


def check_definition_file(table_dir: str, name: str):
    """Before a run changes guest ``name``: its kept definition, if any, must be readable and
    of a version this one writes (GuestError naming the guest and file).  Returns it (None: none)."""
    return Kept(table_dir, name).read_definition()


def keep_guest(table_dir: str, meta, state: str, check: bool = False) -> bool:
    """Save guest ``meta``'s fields and ``state`` (present or frozen) in its definition; False
    when nothing changed (the file is not rewritten). ``check``: only say whether it would be saved."""
    kept = Kept(table_dir, meta.name)
    current = kept.read_definition()
    old = current or {}
    return kept.write_definition(dict(old, state=state, guest=guest_fields(meta), links=old.get("links") or {}), check, current)


def keep_absent(table_dir: str, name: str, check: bool = False) -> bool:
    """A guest removed without purge: its definition (when it has one) says state absent, so
    the restore service leaves it down; its fields stay for a later creation."""
    kept = Kept(table_dir, name)
    old = kept.read_definition()
    if old is None or old.get("state") == "absent":
        return False
    return kept.write_definition(dict(old, state="absent"), check, old)


def keep_link(table_dir: str, name: str, ifname: str, entry, check: bool = False, read=None) -> bool:
    """Save (``entry`` a dict) or forget (None) link ``ifname`` of guest ``name`` in its definition;
    ``check``: only say whether the definition would be written.  ``read``: the definitions the
    task read while it holds the guests' locks (name -> definition or None, from
    :func:`check_definition_file`), used instead of reading the file again and kept as written."""
    kept = Kept(table_dir, name)
    old = read[name] if read is not None and name in read else kept.read_definition()
    links = dict((old or {}).get("links") or {})
    if entry is None:
        if old is None or ifname not in links:
            return False
        links.pop(ifname)
    else:
        links[ifname] = entry
    new = dict(old or {}, links=links)
    written = kept.write_definition(new, check, old)
    if read is not None and written and not check:
        read[name] = kept.stamped(new)
    return written


def definitions(table_dir: str) -> list:
    """[(name, definition or the GuestError of a broken one)] of every guest with a
    definition in ``table_dir``, by name."""
    try:
        names = sorted(os.listdir(table_dir))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise GuestError("table_dir %s cannot be read: %s" % (table_dir, exc.strerror)) from None
    out = []
    for n in names:
        kept = Kept(table_dir, n)
        if not os.path.lexists(kept.definition_path):
            continue
        try:
            out.append((n, kept.read_definition()))
        except GuestError as exc:
            out.append((n, exc))
    return out
