# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private id ranges of user-namespace guests (``userns: auto``).

Like Podman's ``--userns=auto`` (the ``containers`` owner in /etc/subuid and
/etc/subgid), systemd-nspawn's ``--private-users=pick`` and LXD's idmap
allocation: a guest gets ``size`` consecutive ids from a host **pool**, the same
START for uids and gids, and its maps are ``0 START SIZE``.

- The pool (:class:`Pool`) is either ``userns_pool`` (``START:COUNT``, as a line of
  subuid(5)) or the ranges /etc/subuid *and* /etc/subgid give ``userns_pool_owner``
  (default ``linuxns``; the ids in both files).  A pool that holds a host user's uid
  (/etc/passwd), a host group's gid (/etc/group) or a range that subuid/subgid hand
  to another owner is refused.
- The range a guest got is kept in ``TABLE_DIR/NAME/userns`` (``START SIZE SOURCE``,
  next to its kept context id, persist.Kept): it gets the same range back when it is
  made again, after a recreate or a reboot; purging its kept files releases it.
- :class:`Ranges` is the run's view of the ranges kept in one table folder (like
  persist.KeptIds for context ids): it predicts (plan, check mode) and allocates
  (under ``STATE/.userns.lock``) a range that overlaps no range another guest keeps.

This file imports nothing from Ansible.
"""

from __future__ import annotations

import os

from ansible_collections.linuxns.guests.plugins.module_utils import model
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError, InvalidInput

AUTO = "auto"
DEFAULT_SIZE = 65536
DEFAULT_OWNER = "linuxns"
RANGE_FILE = "userns"  # TABLE_DIR/NAME/userns
ID_LIMIT = 2 ** 32 - 1  # (uid_t) -1 is no id: every range ends below it
SUBUID, SUBGID, PASSWD, GROUP = "/etc/subuid", "/etc/subgid", "/etc/passwd", "/etc/group"
LOCK_FILE = ".userns.lock"  # in the state folder


class IdRange:
    """``size`` ids from ``start``; ``source`` says where they came from."""

    __slots__ = ("size", "source", "start")

    def __init__(self, start: int, size: int, source: str = "") -> None:
        self.start, self.size, self.source = start, size, source

    @property
    def end(self) -> int:  # exclusive
        return self.start + self.size

    def overlaps(self, start: int, end: int) -> bool:
        return self.start < end and start < self.end

    def map_lines(self) -> list:
        return ["0 %d %d" % (self.start, self.size)]

    def view(self) -> dict:
        return {"start": self.start, "size": self.size, "source": self.source}

    def text(self) -> str:
        return "%d-%d" % (self.start, self.end - 1)

    def __eq__(self, other) -> bool:
        return isinstance(other, IdRange) and (self.start, self.size) == (other.start, other.size)

    __hash__ = None

    def __repr__(self) -> str:
        return "IdRange(%d, %d, %r)" % (self.start, self.size, self.source)


# ---------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------
def parse_count_range(value, param: str) -> tuple:
    """``START:COUNT`` (a subuid(5) line without its owner) -> (start, end), end exclusive."""
    parts = value.split(":") if isinstance(value, str) else []
    try:
        start, count = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise InvalidInput("%s %r must be 'START:COUNT' (two non-negative integers, as in /etc/subuid)" % (param, value)) from None
    if start < 0 or count < 1 or start + count > ID_LIMIT:
        raise InvalidInput("%s %r: START must be >= 0, COUNT >= 1 and START+COUNT at most %d" % (param, value, ID_LIMIT))
    return start, start + count


def parse_subid(text: str) -> list:
    """(owner, start, end) of each valid line of an /etc/subuid or /etc/subgid text."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3:
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if start >= 0 and count > 0:
            out.append((parts[0], start, start + count))
    return out


def parse_ids(text: str) -> list:
    """(name, id) of /etc/passwd or /etc/group lines (the third field)."""
    out = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            out.append((parts[0], int(parts[2])))
    return out


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise GuestError("userns: cannot read %s: %s" % (path, exc.strerror)) from None


def _intersect(a: list, b: list) -> list:
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            s, e = max(s1, s2), min(e1, e2)
            if s < e:
                out.append((s, e))
    return _merge(out)


def _merge(intervals: list) -> list:
    out = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def parse_map_outside(lines) -> list:
    """(start, end) of the host side of ``inside outside count`` lines."""
    out = []
    for line in lines or ():
        _inside, outside, count = (int(x) for x in line.split())
        out.append((outside, outside + count))
    return out


# ---------------------------------------------------------------------------------------
# The pool
# ---------------------------------------------------------------------------------------
class Pool:
    """The host's pool of ids for ``userns: auto`` guests (validated on first use)."""

    def __init__(self, pool=None, owner=None, files=None) -> None:
        # The options' form is checked at once (the task fails before anything changes, also
        # when no guest needs the pool); the host's files only when a guest does.
        if pool is not None:
            model.check_text(pool, "userns_pool")
            parse_count_range(pool, "userns_pool")
        if owner is not None:
            model.check_text(owner, "userns_pool_owner")
            if not isinstance(owner, str) or not owner or ":" in owner:
                raise InvalidInput("userns_pool_owner %r must be a user name as in /etc/subuid" % (owner,))
        self.given = pool
        self.owner = owner or DEFAULT_OWNER
        f = dict(subuid=SUBUID, subgid=SUBGID, passwd=PASSWD, group=GROUP)
        f.update(files or {})
        self.files = f
        self._intervals = None
        self.source = None

    def intervals(self) -> list:
        """The pool's (start, end) intervals, checked against the host's users; InvalidInput when unusable."""
        if self._intervals is None:
            self._intervals = self._load()
        return self._intervals

    def _load(self) -> list:
        f = self.files
        subuid, subgid = parse_subid(_read(f["subuid"])), parse_subid(_read(f["subgid"]))
        if self.given is not None:
            param = "userns_pool"
            intervals = [parse_count_range(self.given, param)]
            self.source = "userns_pool"
            others = [(o, s, e, f["subuid"]) for o, s, e in subuid] + [(o, s, e, f["subgid"]) for o, s, e in subgid]
        else:
            param = "userns_pool_owner"
            mine_u = _merge([(s, e) for o, s, e in subuid if o == self.owner])
            mine_g = _merge([(s, e) for o, s, e in subgid if o == self.owner])
            intervals = _intersect(mine_u, mine_g)
            if not intervals:
                raise InvalidInput(
                    "userns: auto: the pool owner %s %r has no range in both %s and %s (ids in both files); add a line "
                    "such as '%s:1000000:1000000000' to each (subuid(5)), or give userns_pool (START:COUNT)"
                    % (param, self.owner, f["subuid"], f["subgid"], self.owner))
            self.source = "subid:%s" % self.owner
            others = [(o, s, e, f["subuid"]) for o, s, e in subuid if o != self.owner]
            others += [(o, s, e, f["subgid"]) for o, s, e in subgid if o != self.owner]
        for (start, end) in intervals:
            for kind, path in (("user", f["passwd"]), ("group", f["group"])):
                for who, num in parse_ids(_read(path)):
                    if start <= num < end:
                        raise InvalidInput(
                            "%s: the pool %d-%d holds host %s %r (id %d, %s): a guest's user would be that %s on the host; "
                            "choose a range above the host's own ids" % (param, start, end - 1, kind, who, num, path, kind))
            for who, s, e, path in others:
                if s < end and start < e:
                    raise InvalidInput(
                        "%s: the pool %d-%d overlaps the range %d-%d that %s gives to %r; choose a range nobody else has"
                        % (param, start, end - 1, s, e - 1, path, who))
        return intervals

    def first_free(self, size: int, busy: list):
        """The lowest start of ``size`` free ids (``busy``: (start, end) intervals), or None."""
        busy = _merge(busy)
        for start, end in self.intervals():
            candidate = start
            for s, e in busy:
                if e <= candidate:
                    continue
                if s >= candidate + size:
                    break
                candidate = e
            if candidate + size <= end:
                return candidate
        return None

    def holds(self, rng: IdRange) -> bool:
        return any(s <= rng.start and rng.end <= e for s, e in self.intervals())


# ---------------------------------------------------------------------------------------
# The ranges kept in a table folder
# ---------------------------------------------------------------------------------------
def range_path(table_dir: str, name: str) -> str:
    return os.path.join(table_dir, name, RANGE_FILE)


def read_range(table_dir: str, name: str):
    """The range kept for guest ``name``, or None (no file, or not a valid range)."""
    try:
        with open(range_path(table_dir, name)) as f:
            parts = f.read().split()
        start, size = int(parts[0]), int(parts[1])
    except (OSError, ValueError, IndexError):
        return None
    if start < 0 or size < 1 or start + size > ID_LIMIT:
        return None
    return IdRange(start, size, parts[2] if len(parts) > 2 else "")


class Ranges:
    """The run's view of the id ranges kept in ``table_dir`` and of the host's ``pool``.

    The folder's scan is cached for the run (a batch of 1000 guests would otherwise read
    every guest's file once per guest): :meth:`allocate` rescans under the lock when another
    run allocated or released meanwhile - each does, under the lock, bump a generation
    number kept in the lock file - and this run's own changes update the cache.  A range
    another run purged meanwhile is still seen as taken until the next rescan (never the
    other way round)."""

    def __init__(self, table_dir: str, pool: Pool, kept_ids=None) -> None:
        self.table_dir = table_dir
        self.pool = pool
        self.kept_ids = kept_ids  # the run's persist.KeptIds: told of the folders this run makes (no rescan for them)
        self.predicted = {}  # name -> IdRange this run predicted for a guest it has not made yet
        self._scan = None  # name -> IdRange: the last scan, with this run's own changes since
        self._sorted = None  # (start, end, name) of _scan and predicted, sorted (dropped at every change of them)
        self._gen = None  # the lock file's generation that scan saw
        self._state_dir = None  # the state folder of the lock (known from the first allocation)

    def _read_all(self) -> dict:
        try:
            names = sorted(os.listdir(self.table_dir))
        except OSError:
            names = []
        out = {}
        for n in names:
            rng = read_range(self.table_dir, n)
            if rng is not None:
                out[n] = rng
        return out

    def kept(self) -> dict:
        """name -> the range it keeps (the run's scan of the folder)."""
        if self._scan is None:
            self._scan, self._sorted = self._read_all(), None
        return dict(self._scan)

    def _lock(self, state_dir: str):
        return reg.Lock(os.path.join(state_dir, LOCK_FILE), "the userns id ranges of %s" % self.table_dir)

    def _sync(self, lock) -> None:
        """Under the lock: rescan when another run changed the ranges since our scan."""
        try:
            gen = int(os.pread(lock.fd, 32, 0).decode().strip() or 0)
        except ValueError:
            gen = 0
        if self._scan is None or gen != self._gen:
            self._scan, self._sorted = self._read_all(), None
        self._gen = gen

    def _bump(self, lock) -> None:
        self._gen = (self._gen or 0) + 1
        data = b"%d\n" % self._gen
        os.pwrite(lock.fd, data, 0)
        os.ftruncate(lock.fd, len(data))

    def forgotten(self, name: str) -> None:
        """This run purged ``name``'s kept files (persist.KeptIds.forget): its range is free."""
        if self._scan is not None:
            self._scan.pop(name, None)
            self._sorted = None

    def _busy(self, name: str, kept: dict) -> list:
        """(start, end) of the ranges other guests keep or were predicted, sorted (``kept``: the scan)."""
        if self._sorted is None:  # sorted once per change, not once per guest (a batch of 1000 guests)
            items = [(r.start, r.end, n) for n, r in kept.items()]
            items += [(r.start, r.end, n) for n, r in self.predicted.items() if n not in kept]
            self._sorted = sorted(items)
        return [(s, e) for s, e, n in self._sorted if n != name]

    def _choose(self, name: str, size: int, kept: dict, where: str) -> IdRange:
        own = kept.get(name)
        if own is not None and own.size == size and not any(own.overlaps(s, e) for s, e in self._busy(name, kept)):
            return own
        start = self.pool.first_free(size, self._busy(name, kept))
        if start is None:
            raise InvalidInput(
                "%suserns_size: guest %r: the userns pool (%s, %s) has no %d free consecutive ids left (%d guests keep "
                "ranges in %s); purge removed guests (state=absent, purge=true), give a smaller userns_size or a larger pool"
                % (where, name, self.pool.source, ", ".join("%d-%d" % (s, e - 1) for s, e in self.pool.intervals()),
                   size, len(kept), self.table_dir))
        return IdRange(start, size, self.pool.source)

    def predict(self, name: str, size: int, where: str = "") -> IdRange:
        """The range guest ``name`` would get (nothing written); remembered so that the run's
        next guests predict around it.  InvalidInput when the pool is unusable or exhausted."""
        rng = self._choose(name, size, self.kept(), where)
        self.predicted[name] = rng
        self._sorted = None
        return rng

    def allocate(self, name: str, size: int, state_dir: str) -> tuple:
        """(range, new): the range of guest ``name``, kept on disk; ``new`` when this call
        allocated it (the caller releases it again when the guest cannot be made)."""
        self._state_dir = state_dir
        with self._lock(state_dir) as lock:
            self._sync(lock)
            kept = self.kept()
            rng = self._choose(name, size, kept, "")
            own = kept.get(name)
            if own is not None and own == rng:
                self.predicted.pop(name, None)
                self._sorted = None
                return own, False
            folder = os.path.join(self.table_dir, name)
            try:
                if not os.path.isdir(folder):
                    os.makedirs(folder, mode=0o755, exist_ok=True)
                    if self.kept_ids is not None:
                        self.kept_ids.folder_made(name)
                reg.write_atomic(range_path(self.table_dir, name), "%d %d %s\n" % (rng.start, rng.size, rng.source), 0o644)
            except OSError as exc:
                raise GuestError("guest %r: cannot keep its userns range in %s: %s" % (name, folder, exc.strerror)) from None
            self._scan[name] = rng
            self._sorted = None
            self._bump(lock)
            self.predicted.pop(name, None)
            self._sorted = None
            return rng, True

    def release(self, name: str) -> bool:
        """Forget the range kept for ``name`` (a failed creation's new range)."""
        with self._lock(self._state_dir) as lock:
            self._sync(lock)
            try:
                os.unlink(range_path(self.table_dir, name))
            except FileNotFoundError:
                return False
            self._scan.pop(name, None)
            self._sorted = None
            self._bump(lock)
        try:
            os.rmdir(os.path.join(self.table_dir, name))
        except OSError:
            pass
        return True

    def check_map(self, name: str, lines, param: str) -> None:
        """An explicit uid_map/gid_map of guest ``name`` must not reach a range another guest keeps."""
        if not lines:
            return
        kept = self.kept()
        for start, end in parse_map_outside(lines):
            for other, rng in sorted(kept.items()):
                if other != name and rng.overlaps(start, end):
                    where = range_path(self.table_dir, other)
                    raise InvalidInput(
                        "%s: guest %r: host ids %d-%d overlap the userns range %s that guest %r keeps (%s); "
                        "choose ids outside it" % (param, name, start, end - 1, rng.text(), other, where))


# ---------------------------------------------------------------------------------------
# Roots that work under the mapping (userns_root)
# ---------------------------------------------------------------------------------------
ROOT_MODES = ("auto", "idmap", "shift", "none")
SHIFT_FILE = "userns-shift"  # TABLE_DIR/NAME/userns-shift: "START SIZE ROOT" once the root was shifted


def shift_path(table_dir: str, name: str) -> str:
    return os.path.join(table_dir, name, SHIFT_FILE)


def idmap_root(pid: int, root: str, name: str) -> None:
    """Attach an idmapped clone of ``root`` (mount_setattr MOUNT_ATTR_IDMAP with the user
    namespace of process ``pid``) onto ``root`` in that process's mount namespace.  The
    process then binds ``root`` onto itself as for any root: a bind keeps the idmapping.
    KernelError when the kernel or the filesystem cannot idmap it."""
    from ansible_collections.linuxns.guests.plugins.module_utils import enter
    from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc

    fds = []
    try:
        fds.extend(os.open("/proc/%d/ns/%s" % (pid, t), os.O_RDONLY | os.O_CLOEXEC) for t in ("user", "mnt"))
        src = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fds.append(sc.open_tree(src, "", sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC | sc.AT_EMPTY_PATH | sc.AT_RECURSIVE))
        finally:
            os.close(src)
        userns_fd, mnt_fd, tree = fds
        sc.mount_setattr(tree, "", sc.AT_EMPTY_PATH | sc.AT_RECURSIVE, sc.MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
        r, w = os.pipe2(os.O_CLOEXEC)
        child = os.fork()
        if child == 0:  # pragma: no cover - forked child
            try:
                os.close(r)
                sc.setns(mnt_fd, "mnt")
                sc.move_mount(tree, "", sc.AT_FDCWD, root, sc.MOVE_MOUNT_F_EMPTY_PATH)
                os._exit(0)
            except BaseException as exc:  # reported to the parent
                try:
                    os.write(w, str(exc).encode()[:2000])
                finally:
                    os._exit(1)
        os.close(w)
        try:
            why = enter.read_all(r).decode(errors="replace")
        finally:
            os.close(r)
        if enter.wait_child(child) != 0:
            raise GuestError("guest %r: attaching its idmapped root %s failed: %s" % (name, root, why or "the helper died"))
    finally:
        for fd in fds:
            os.close(fd)


def shift_root(root: str, rng: IdRange) -> int:
    """The ownership shift: every file below ``root`` (one filesystem, links not followed)
    whose uid or gid is below ``rng.size`` gets ``rng.start`` added to it (ids already in
    the range stay).  Returns how many files changed."""
    dev = os.lstat(root).st_dev
    changed = 0

    def shift(path: str) -> None:
        nonlocal changed
        st = os.lstat(path)
        uid = st.st_uid + rng.start if st.st_uid < rng.size else st.st_uid
        gid = st.st_gid + rng.start if st.st_gid < rng.size else st.st_gid
        if (uid, gid) != (st.st_uid, st.st_gid):
            mode = st.st_mode & 0o7777
            os.lchown(path, uid, gid)
            if mode & 0o6000 and not os.path.islink(path):
                os.chmod(path, mode)  # chown drops setuid/setgid: they stay, now for the guest's ids
            changed += 1

    shift(root)
    for top, dirs, files in os.walk(root):
        keep = []
        for d in dirs:
            p = os.path.join(top, d)
            if os.lstat(p).st_dev == dev:  # never into another filesystem mounted below the root
                keep.append(d)
            shift(p)
        dirs[:] = keep
        for f in files:
            shift(os.path.join(top, f))
    return changed
