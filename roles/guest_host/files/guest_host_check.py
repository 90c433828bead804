# Read by the guest_host role (tasks/main.yml, "Read the host's state in one call") and run with the
# host's Python: everything the role's later steps would each ask the host, read in one go, so that a
# step whose state is already right is skipped (a no-change run makes one call here and netns_link).
# Reads only. Argument: JSON {"pyroute2": bool, "packages": [...], "dirs": [...], "files": [...],
# "sysctl": [...]}; prints JSON {"pyroute2", "installed", "dirs_ok", "systemd", "files", "sysctl"}.
import hashlib
import importlib.util
import json
import os
import stat
import subprocess
import sys

req = json.loads(sys.argv[1])
out = {"systemd": os.path.isdir("/run/systemd/system")}  # sd_booted(3)
if req.get("pyroute2"):
    # Found the way netns_link finds it (module_utils/links.py, pyroute2_present): on the import path,
    # without importing it - an import costs 0.15-0.25 s, most of this call. netns_link imports it only to
    # change a link, and says how to install it if that import fails.
    try:
        out["pyroute2"] = importlib.util.find_spec("pyroute2") is not None
    except (ImportError, ValueError):
        out["pyroute2"] = False
if req.get("packages"):
    proc = subprocess.run(["dpkg-query", "--show", "--showformat=${Package} ${db:Status-Abbrev}\\n"] + req["packages"],
                          capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1):  # 1: some package is unknown to dpkg (not installed)
        sys.exit("dpkg-query failed (%d): %s" % (proc.returncode, proc.stderr.strip()))
    out["installed"] = [line.split(" ", 1)[0] for line in proc.stdout.splitlines() if line.split(" ")[1:2] == ["ii"]]
# a folder is right when it is one (links followed, as ansible.builtin.file) with mode 0755
ok = []
for path in req.get("dirs") or []:
    try:
        st = os.stat(path)
    except OSError:
        continue
    if stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755:
        ok.append(path)
out["dirs_ok"] = ok
files = {}
for path in req.get("files") or []:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            continue
        with open(path, "rb") as f:
            digest = hashlib.sha1(f.read()).hexdigest()
    except OSError:
        continue
    files[path] = {"sha1": digest, "mode": "%04o" % stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
out["files"] = files
values = []
for key in req.get("sysctl") or []:
    with open("/proc/sys/" + key.replace(".", "/")) as f:  # sysctl -n KEY
        values.append(f.read().strip())
out["sysctl"] = values
print(json.dumps(out))
