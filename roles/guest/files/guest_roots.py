# linuxns.guests.guest role helper, run on the target with its Python (standard library only).
# Reads one JSON document on stdin and prints one on stdout:
#   {"check": bool, "busybox": "/bin/busybox",
#    "roots": [{"name", "root", "build": bool, "hostname", "inittab": [lines] or null,
#               "files": [{"path", "content", "mode"}]}],
#    "purge": [{"name", "root"}]}
# -> {"changed": bool, "changes": {guest: [what]}, "missing_roots": [guests whose root folder did not exist]}
# build: a minimal busybox root (folders, the host's static busybox, applet links, passwd,
# group, hostname, inittab); files: written inside the root without following symlinks;
# purge: the guest's root folder. The role only builds roots: context ids (kept in
# TABLE_DIR/NAME/context_id) and the mount tables are namespace_create's (purge: true forgets them).
import json
import os
import shutil
import stat
import subprocess
import sys

DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "dev", "run", "var", "root", "www")
DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Fail(Exception):
    pass


# Every path below a guest's root is opened relative to an fd of that root, one
# component at a time with O_NOFOLLOW (module_utils/rootfs.py's walk; this file runs
# with the target's bare Python and cannot import it). A link the guest put anywhere
# in a folder's path is refused, so no write of this host-root process lands outside
# the root; the last component is only ever created, replaced or unlinked, never
# followed. Files are opened O_NONBLOCK and read only when regular (a FIFO never
# blocks the role).
def parts_of(rel, guest):
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Fail("guest %s: file path %r must be absolute inside the guest, without '..'" % (guest, rel))
    return parts


def open_dir(root_fd, rel, guest, create):
    """O_PATH fd of the folder ``rel`` below ``root_fd``; None when missing and not ``create``."""
    cur = os.dup(root_fd)
    sofar = ""
    try:
        for part in parts_of(rel, guest):
            sofar += "/" + part
            try:
                nfd = os.open(part, DIR_FLAGS, dir_fd=cur)
            except FileNotFoundError:
                if not create:
                    os.close(cur)
                    return None
                try:
                    os.mkdir(part, 0o755, dir_fd=cur)
                except FileExistsError:
                    pass
                nfd = os.open(part, DIR_FLAGS, dir_fd=cur)
            except NotADirectoryError:
                nfd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            mode = os.fstat(nfd).st_mode
            os.close(cur)
            cur = nfd
            if stat.S_ISLNK(mode):
                raise Fail("guest %s: %s has a symbolic link in its path (%s); the role never follows links in a guest's root"
                           % (guest, rel, sofar))
            if not stat.S_ISDIR(mode):
                raise Fail("guest %s: %s is not a folder" % (guest, sofar))
        return cur
    except BaseException:
        os.close(cur)
        raise


def lstat_at(dfd, name):
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def symlinks_in(dfd):
    """{name: whether it is a symbolic link} of every entry of the folder ``dfd`` (an O_PATH fd):
    one directory read with the entries' types, no stat per entry (a root holds ~400 applet links)."""
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        with os.scandir(fd) as entries:
            return {e.name: e.is_symlink() for e in entries}
    finally:
        os.close(fd)


def applet_link(dfd, name):
    """Whether ``name`` in the folder ``dfd`` is a link to /bin/busybox (not followed)."""
    try:
        return os.readlink(name, dir_fd=dfd) == "/bin/busybox"
    except OSError:  # gone or no longer a link since the folder was read: made again
        return False


def same_content(dfd, name, data, mode):
    st = lstat_at(dfd, name)
    if st is None or not stat.S_ISREG(st.st_mode) or (st.st_mode & 0o7777) != mode or st.st_size != len(data):
        return False
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=dfd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return False
        return f.read(len(data) + 1) == data


def replace_file(dfd, name, data, mode, mtime_ns=None):
    """Write ``data`` beside ``name`` in the folder ``dfd`` and rename it over ``name``."""
    st = lstat_at(dfd, name)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OSError(21, "Is a folder", name)
    tmp = "." + name + ".linuxns-tmp"
    try:
        os.unlink(tmp, dir_fd=dfd)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            if mtime_ns is not None:
                os.utime(f.fileno(), ns=(mtime_ns, mtime_ns))
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise


def want_file(root_fd, rel, content, mode, check, changes, what, guest):
    parts = parts_of(rel, guest)
    if not parts:
        raise Fail("guest %s: file path %r names the root itself" % (guest, rel))
    data = content.encode()
    dfd = open_dir(root_fd, "/".join(parts[:-1]), guest, create=not check)
    if dfd is None:  # check mode: its folder does not exist yet
        changes.append(what)
        return
    try:
        if same_content(dfd, parts[-1], data, mode):
            return
        changes.append(what)
        if not check:
            replace_file(dfd, parts[-1], data, mode)
    finally:
        os.close(dfd)


def build(spec, busybox, check, changes, applets):
    root = spec["root"]
    guest = spec["name"]
    if not os.path.isdir(root):
        changes.append("folder /")
        if check:
            changes.extend(["folder /" + d for d in DIRS] + ["/bin/busybox", "%d applet links" % len(applets), "/etc/passwd", "/etc/group"])
            return
        os.makedirs(root, 0o755, exist_ok=True)
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        build_in(root_fd, spec, busybox, check, changes, applets, guest)
    finally:
        os.close(root_fd)


def build_in(root_fd, spec, busybox, check, changes, applets, guest):
    for d in DIRS:
        dfd = open_dir(root_fd, d, guest, create=False)
        if dfd is None:
            changes.append("folder /" + d)
            if not check:
                dfd = open_dir(root_fd, d, guest, create=True)
        if dfd is not None:
            os.close(dfd)
    tmp = open_dir(root_fd, "tmp", guest, create=False)
    if tmp is not None:
        os.close(tmp)
        fd = os.open("tmp", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root_fd)
        try:
            if os.fstat(fd).st_mode & 0o7777 != 0o1777 and not check:
                os.fchmod(fd, 0o1777)
        finally:
            os.close(fd)
    src = os.stat(busybox)
    bin_fd = open_dir(root_fd, "bin", guest, create=False)
    st = lstat_at(bin_fd, "busybox") if bin_fd is not None else None
    fresh = st is not None and stat.S_ISREG(st.st_mode) and st.st_size == src.st_size and int(st.st_mtime) == int(src.st_mtime)
    if not fresh:
        changes.append("/bin/busybox")
        if not check:
            with open(busybox, "rb") as f:
                replace_file(bin_fd, "busybox", f.read(), stat.S_IMODE(src.st_mode), src.st_mtime_ns)
    if bin_fd is not None:
        os.close(bin_fd)
    missing = 0
    folders = {}
    try:
        for rel in applets:
            folder, name = os.path.split(rel)
            if folder not in folders:
                dfd = open_dir(root_fd, folder, guest, create=not check)
                folders[folder] = (dfd, symlinks_in(dfd) if dfd is not None else {})
            dfd, listed = folders[folder]
            link = listed.get(name)  # None: no such entry; True: a symbolic link; False: anything else
            if link is False:
                continue  # a real program of the same name is kept
            if link and applet_link(dfd, name):
                continue
            if not check:
                st = lstat_at(dfd, name)
                if st is not None and not stat.S_ISLNK(st.st_mode):
                    continue  # a program put there since the folder was read: kept
                if st is not None:
                    os.unlink(name, dir_fd=dfd)
                os.symlink("/bin/busybox", name, dir_fd=dfd)
            missing += 1
    finally:
        for dfd, _listed in folders.values():
            if dfd is not None:
                os.close(dfd)
    if missing:
        changes.append("%d applet links" % missing)
    want_file(root_fd, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644, check, changes, "/etc/passwd", guest)
    want_file(root_fd, "/etc/group", "root:x:0:\n", 0o644, check, changes, "/etc/group", guest)
    if spec.get("hostname"):
        want_file(root_fd, "/etc/hostname", spec["hostname"] + "\n", 0o644, check, changes, "/etc/hostname", guest)


def main():
    req = json.load(sys.stdin)
    check = bool(req.get("check"))
    out = {}
    applets = None
    missing = []
    for spec in req.get("roots", []):
        changes = []
        root = spec["root"]
        if not os.path.isdir(root):
            missing.append(spec["name"])
        if spec.get("build"):
            if applets is None:
                listed = subprocess.run([req["busybox"], "--list-full"], capture_output=True, text=True, check=True).stdout
                applets = [a for a in listed.split() if a and a != "bin/busybox"]
            build(spec, req["busybox"], check, changes, applets)
        elif not os.path.isdir(root):
            raise Fail("guest %s: root folder %s does not exist (set root_build: true to build a busybox root)" % (spec["name"], root))
        files = list(spec.get("files") or [])
        if spec.get("inittab") is not None:
            files.append({"path": "/etc/inittab", "content": "".join(line + "\n" for line in spec["inittab"]), "mode": "0644"})
        for f in files:
            parts_of(f["path"], spec["name"])
        if files and os.path.isdir(root):
            root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                for f in files:
                    want_file(root_fd, f["path"], f.get("content", ""), int(str(f.get("mode") or "0644"), 8), check, changes, f["path"], spec["name"])
            finally:
                os.close(root_fd)
        elif files:
            changes.extend(f["path"] for f in files)
        if changes:
            out[spec["name"]] = changes
    for spec in req.get("purge", []):
        path = spec.get("root")
        if path and os.path.lexists(path):
            out.setdefault(spec["name"], []).append("root folder %s removed" % path)
            if not check:
                shutil.rmtree(path)
    json.dump({"changed": bool(out), "changes": out, "missing_roots": missing}, sys.stdout)


if __name__ == "__main__":
    try:
        main()
    except (Fail, OSError, subprocess.CalledProcessError, ValueError, KeyError) as exc:
        json.dump({"failed": True, "msg": str(exc)}, sys.stdout)
        sys.exit(1)
