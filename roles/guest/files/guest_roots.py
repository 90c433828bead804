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
import subprocess
import sys

DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "dev", "run", "var", "root", "www")


class Fail(Exception):
    pass


def inside(root, rel, guest):
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise Fail("guest %s: file path %r must be absolute inside the guest, without '..'" % (guest, rel))
    path = root
    for p in parts[:-1]:
        path = os.path.join(path, p)
        if os.path.islink(path):
            raise Fail("guest %s: %r has a symbolic link in its path" % (guest, rel))
    return os.path.join(path, parts[-1])


def want_file(path, content, mode, check, changes, what):
    data = content.encode()
    try:
        if os.path.islink(path):
            os.unlink(path) if not check else None
            raise FileNotFoundError
        with open(path, "rb") as f:
            same = f.read() == data
        same = same and (os.stat(path).st_mode & 0o7777) == mode
    except FileNotFoundError:
        same = False
    if same:
        return
    changes.append(what)
    if check:
        return
    tmp = path + ".linuxns-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def build(spec, busybox, check, changes, applets):
    root = spec["root"]
    for d in ("",) + DIRS:
        path = os.path.join(root, d)
        if not os.path.isdir(path):
            changes.append("folder /" + d)
            if not check:
                os.makedirs(path, 0o755, exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777) if not check or os.path.isdir(os.path.join(root, "tmp")) else None
    target = os.path.join(root, "bin", "busybox")
    src = os.stat(busybox)
    try:
        st = os.lstat(target)
        fresh = st.st_size == src.st_size and int(st.st_mtime) == int(src.st_mtime)
    except FileNotFoundError:
        fresh = False
    if not fresh:
        changes.append("/bin/busybox")
        if not check:
            shutil.copy2(busybox, target + ".linuxns-tmp")
            os.replace(target + ".linuxns-tmp", target)
    missing = 0
    for rel in applets:
        link = os.path.join(root, rel)
        if os.path.islink(link) and os.readlink(link) == "/bin/busybox":
            continue
        if os.path.lexists(link) and not os.path.islink(link):
            continue  # a real program of the same name is kept
        missing += 1
        if not check:
            if os.path.lexists(link):
                os.unlink(link)
            os.makedirs(os.path.dirname(link), 0o755, exist_ok=True)
            os.symlink("/bin/busybox", link)
    if missing:
        changes.append("%d applet links" % missing)
    if check and not os.path.isdir(os.path.join(root, "etc")):
        changes.extend(["/etc/passwd", "/etc/group"])
        return
    want_file(os.path.join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n", 0o644, check, changes, "/etc/passwd")
    want_file(os.path.join(root, "etc/group"), "root:x:0:\n", 0o644, check, changes, "/etc/group")
    if spec.get("hostname"):
        want_file(os.path.join(root, "etc/hostname"), spec["hostname"] + "\n", 0o644, check, changes, "/etc/hostname")


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
            path = inside(root, f["path"], spec["name"])
            if check and not os.path.isdir(os.path.dirname(path)):
                changes.append(f["path"])
                continue
            if not check:
                os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
            want_file(path, f.get("content", ""), int(str(f.get("mode") or "0644"), 8), check, changes, f["path"])
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
