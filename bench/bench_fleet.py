"""Bench: the fleet play (2 lab hosts x N busybox guests serving pages) vs. a plain shell script.

On lab hosts 1 and 2 (LINUXNS_LAB / LINUXNS_LAB_BASE select the lab; hosts that are not
up are brought up, and a lab this bench brought up is taken down at the end), for each
size N guests per host (default 50 and 200) and each round, side by side in one run,
alternating which side goes first, three timed phases on each side:

  create     ours: the deploy play of playbooks/fleet.yml (its first play, taken from the
             file as it is: guest_host role - packages check, folders, sysctls, bridge
             lnsfleet0 198.19.H.1/24 - then the guest role with guest_state=started: busybox
             roots built by the role, namespaces mnt,uts,ipc,net,pid with the default
             reaper as init, hostname, a veth on the bridge with 198.19.H.(10+i)/24 and a
             default route (above 244 guests per host the host's network is a /22:
             fleet_net()), `busybox httpd -f -p 80 -h /www` started in each guest). The
             fleet's check and summary plays are not run (the bench checks from outside).
             base: one bash script per host over ssh, both hosts at once (as Ansible
             does): bridge, forwarding, a busybox root template (folders, busybox copy,
             `busybox --install -s`, passwd, group) copied per guest with `cp -a`, the
             guest's hostname and page written; per guest `unshare --mount=PIN --uts=PIN
             --ipc=PIN --net=/run/netns/NAME --pid=PIN --fork --kill-child` running a
             small sh init (hostname, lo up, bind the root, proc, a tmpfs /dev with the
             host's nodes bound, devpts, shm, the host's catatonit bound in, pivot_root,
             exec catatonit -P), with bench_create.py's wait-and-retry for the mount pin;
             then one `ip -batch` for all host-side veths (peer eth0 straight into the
             guest's netns, master the bridge, up), one `ip -n NAME -batch` per guest
             (address, up, default route) and one `nsenter` per guest starting busybox
             httpd (it daemonizes).
  rerun      ours: the same play again (no change; every task reports ok).
             base: an idempotent script: per guest, its netns, its init record and its
             page exist -> skip (checks existence only; ours checks every pin's identity,
             root files, links and that the service runs).
  teardown   ours: the tear-down play of playbooks/fleet.yml (-e fleet_teardown=true:
             guest role with guest_state=absent, guest_purge_root=true).
             base: one script per host: per guest SIGKILL its unshare (--kill-child takes
             the reaper, the pid namespace takes httpd), one `ip -batch` deleting the
             veths, one `umount` of the guest's 5 pins, then `rm -rf` of roots and pins.

Times: wall time of the whole `ansible-playbook` run on the controller (ours) and of the
two ssh sessions (base, warm ControlMasters on both sides: an untimed ping first). Between
phases each side is checked from outside on both lab hosts: guests' network namespaces,
bridge ports, guest processes (reaper + httpd), and every guest's page fetched from the
lab host (its body names the guest and host); after a teardown, nothing may remain.
After each side's teardown the bridge and folders are removed (untimed) so each create
starts from the same state.

Memory (largest size, every round): /proc/meminfo before the create (after a settle
pause) and with the fleet up and idle (after the create's check and a settle pause), and
the PSS (smaps_rollup) of every process in a guest's pid namespace (reaper and httpd)
plus, for the shell side, its `unshare` holders. Per guest, KiB: processes PSS without
Pss_Shmem, kernel objects (delta of Slab + KernelStack + PageTables + Percpu,
machine-wide as in bench_memory.py) and root files (delta of Shmem: the roots live on the
lab hosts' tmpfs /tmp, and each holds its own busybox copy; the part of those pages that
processes map, Pss_Shmem, is shown but counted only there).

    LINUXNS_LAB=fb LINUXNS_LAB_BASE=170 .venv/bin/python bench/bench_fleet.py [--sizes 50,200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import HERE, REPO, VENV_BIN, Lab, median, run_tree, table, undone_on_failure, unwind_on_sigterm
from bench_memory import kernel, meminfo

HOSTS = (1, 2)
BRIDGE = "lnsfleet0"
OURS_DIR = "/tmp/linuxns-fleet"           # playbooks/vars/fleet.yml fleet_dir
BASE_DIR = "/tmp/linuxns-bench-fleet"     # the shell side's roots, pins and template
FLEET = REPO / "playbooks" / "fleet.yml"
NET_START = 3323133952                    # 198.19.0.0: the fleet's guest networks are cut from 198.19.0.0/16
MAX_PER_HOST = 1012                       # playbooks/vars/fleet.yml fleet_prefix


def fleet_net(host: int, n: int) -> tuple:
    """(first address as a number, prefix length) of host number HOST's guest network with N
    guests per host, as playbooks/vars/fleet.yml plans it: a /24 up to 244 guests, a /22 above.
    The bridge has the first address + 1, guest i the first address + 10 + i."""
    prefix = 24 if n <= 244 else 22
    return NET_START + host * 2 ** (32 - prefix), prefix


# -- the shell side ------------------------------------------------------------------
# Run by unshare as the guest's first process (PID 1 of its new pid namespace, in its new
# mount, uts, ipc and net namespaces, mounts already private): $1 hostname, $2 root, $3 the
# folder with the fstab files and the /dev links template.
GUEST_INIT = r"""set -e
hostname "$1"
ip link set lo up
mount --bind "$2" "$2"
cd "$2"
mount -a -T "$3/fstab1" --target-prefix "$2"
: > dev/null; : > dev/zero; : > dev/full; : > dev/random; : > dev/urandom; : > dev/tty
cp -a "$3/devlinks/." dev/
mount -a -T "$3/fstab2" --target-prefix "$2"
pivot_root . .
umount -l .
exec /sbin/catatonit -P
"""

FSTAB1 = """proc /proc proc nosuid,nodev,noexec 0 0
dev /dev tmpfs nosuid,noexec,mode=755,size=64k 0 0
"""

FSTAB2 = "".join("/dev/%s /dev/%s none bind 0 0\n" % (n, n) for n in ("null", "zero", "full", "random", "urandom", "tty")) + """\
devpts /dev/pts devpts nosuid,noexec,newinstance,ptmxmode=0666,mode=620,X-mount.mkdir 0 0
shm /dev/shm tmpfs nosuid,nodev,mode=1777,size=65536k,X-mount.mkdir 0 0
/usr/bin/catatonit /sbin/catatonit none bind 0 0
"""

BASE_CREATE = r"""
set -u
B=$1; N=$2; H=$3; START=$4; PREFIX=$5; BR=%(bridge)s
ip4() { printf -v REPLY '%%d.%%d.%%d.%%d' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)); }
ip4 $((START + 1)); GW=$REPLY
T=$B/template; P=$B/pins; R=$B/roots; S=$B/setup
mkdir -p "$R" "$P" "$S" /run/netns
sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
ip link show "$BR" >/dev/null 2>&1 || ip -b - <<EOF
link add $BR type bridge
address add $GW/$PREFIX dev $BR
link set dev $BR up
EOF
mountpoint -q "$P" || { mount --bind "$P" "$P" && mount --make-private "$P"; }
# the init script, fstabs, /dev links, and the root template (once per run)
cat > "$S/init" <<'EOF'
%(init)sEOF
cat > "$S/fstab1" <<'EOF'
%(fstab1)sEOF
cat > "$S/fstab2" <<'EOF'
%(fstab2)sEOF
mkdir -p "$S/devlinks"
ln -sfn pts/ptmx "$S/devlinks/ptmx"; ln -sfn /proc/self/fd "$S/devlinks/fd"
ln -sfn /proc/self/fd/0 "$S/devlinks/stdin"; ln -sfn /proc/self/fd/1 "$S/devlinks/stdout"; ln -sfn /proc/self/fd/2 "$S/devlinks/stderr"
mkdir -p "$T"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,dev,run,var,root,www}
chmod 1777 "$T/tmp"
cp -p /bin/busybox "$T/bin/busybox"
chroot "$T" /bin/busybox --install -s
echo 'root:x:0:0:root:/root:/bin/sh' > "$T/etc/passwd"
echo 'root:x:0:' > "$T/etc/group"
: > "$T/sbin/catatonit"
ncpu=$(nproc); cpu=0; retries=0; made=0
links=""
for ((i = 1; i <= N; i++)); do
    printf -v g 'g%%02d' "$i"
    r=$R/$g; p=$P/$g
    if [ ! -e "$r" ]; then
        cp -a "$T" "$r"
        echo "$g.$H" > "$r/etc/hostname"
        echo "guest $g on $H" > "$r/www/index.html"
    fi
    mkdir -p "$p"
    : > "$p/mnt"; : > "$p/uts"; : > "$p/ipc"; : > "$p/pid"; : > "/run/netns/$g"
    while :; do
        unshare --mount="$p/mnt" --uts="$p/uts" --ipc="$p/ipc" --net="/run/netns/$g" --pid="$p/pid" \
            --fork --kill-child=KILL /bin/sh "$S/init" "$g.$H" "$r" "$S" </dev/null >/dev/null 2>&1 &
        pid=$!
        ok=
        while :; do
            # the mnt pin is made last: once it is unshare's mount namespace, all pins are made
            if [ "$p/mnt" -ef "/proc/$pid/ns/mnt" ]; then ok=1; break; fi
            st=
            read -r _ _ st _ < "/proc/$pid/stat" 2>/dev/null
            case $st in Z|X|'') break ;; esac
        done
        if [ -n "$ok" ]; then echo "$pid" > "$p/init"; break; fi
        wait "$pid"
        for q in /proc/[0-9]*; do
            [ "$q/ns/pid" -ef "$p/pid" ] && kill -KILL "${q#/proc/}" 2>/dev/null
        done
        umount -q "$p/mnt" "$p/uts" "$p/ipc" "/run/netns/$g" "$p/pid" 2>/dev/null
        retries=$((retries + 1))
        [ "$retries" -gt $((N + 50)) ] && { echo "too many retries" >&2; exit 1; }
        cpu=$(( (cpu + 1) %% ncpu ))
        taskset -pc "$cpu" $$ >/dev/null
    done
    # the guest is ready once its init (unshare's child) runs the reaper, after pivot_root
    while :; do
        c=
        read -r c _ < "/proc/$pid/task/$pid/children" 2>/dev/null
        if [ -n "$c" ] && [ "/proc/$c/exe" -ef /usr/bin/catatonit ]; then break; fi
        st=
        read -r _ _ st _ < "/proc/$pid/stat" 2>/dev/null
        case $st in Z|X|'') echo "guest $g: its init failed" >&2; exit 1 ;; esac
    done
    links+="link add ve-$g master $BR up type veth peer name eth0 netns $g"$'\n'
    made=$((made + 1))
done
printf '%%s' "$links" | ip -b -
for ((i = 1; i <= N; i++)); do
    printf -v g 'g%%02d' "$i"
    ip4 $((START + 10 + i))
    printf 'address add %%s/%%d dev eth0\nlink set eth0 up\nroute add default via %%s\n' "$REPLY" "$PREFIX" "$GW" | ip -n "$g" -b -
    p=$P/$g
    nsenter --mount="$p/mnt" --uts="$p/uts" --ipc="$p/ipc" --net="/run/netns/$g" --pid="$p/pid" \
        /bin/busybox httpd -p 80 -h /www </dev/null >/dev/null 2>&1
done
echo "made=$made retries=$retries"
""" % {"bridge": BRIDGE, "init": GUEST_INIT, "fstab1": FSTAB1, "fstab2": FSTAB2}

BASE_RERUN = r"""
set -u
B=$1; N=$2; BR=%(bridge)s
ip link show "$BR" >/dev/null 2>&1 || { echo "bridge $BR missing" >&2; exit 1; }
skipped=0
for ((i = 1; i <= N; i++)); do
    printf -v g 'g%%02d' "$i"
    if [ -e "/run/netns/$g" ] && [ -s "$B/pins/$g/init" ] && [ -e "$B/roots/$g/www/index.html" ]; then
        skipped=$((skipped + 1)); continue
    fi
    echo "guest $g is missing (a rerun would create it)" >&2; exit 1
done
echo "skipped=$skipped"
""" % {"bridge": BRIDGE}

# also the cleanup after a failure: no `set -e`, every step tolerates what is not there
BASE_TEARDOWN = r"""
set -u
B=$1
dels=""
for p in "$B"/pins/g*; do
    [ -d "$p" ] || continue
    g=${p##*/}
    if [ -s "$p/init" ]; then read -r q < "$p/init"; kill -KILL "$q" 2>/dev/null; fi
    dels+="link del ve-$g"$'\n'
done
[ -n "$dels" ] && printf '%s' "$dels" | ip -force -b - 2>/dev/null
for p in "$B"/pins/g*; do
    [ -d "$p" ] || continue
    g=${p##*/}
    umount "$p/mnt" "$p/uts" "$p/ipc" "$p/pid" "/run/netns/$g"
    rm -f "/run/netns/$g"
done
mountpoint -q "$B/pins" && umount "$B/pins"
rm -rf "$B"
true
"""

# -- checks from outside, run inside each lab host --------------------------------------
COUNT = r"""
import concurrent.futures, json, os, subprocess, sys, urllib.request
start, host, n, base_dir = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
own = os.stat("/proc/self/ns/pid").st_ino
out = {"netns": len([f for f in os.listdir("/run/netns") if f.startswith("g")]) if os.path.isdir("/run/netns") else 0,
       "registered": len(os.listdir("/run/linuxns/guests")) if os.path.isdir("/run/linuxns/guests") else 0,
       "pins": 0, "ports": 0, "reapers": 0, "httpd": 0, "holders": 0, "pages": 0, "veths": 0}
# (this lab host's links: /sys/class/net shows the machine's network namespace)
links = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout)
out["veths"] = len([li for li in links if li["ifname"].startswith("ve-g")])
out["ports"] = len([li for li in links if li.get("master") == "BRIDGE"])
with open("/proc/self/mountinfo") as f:
    out["pins"] = sum(1 for line in f if line.split()[4].startswith(base_dir + "/pins/"))
for p in os.listdir("/proc"):
    if not p.isdigit() or p == "1":
        continue
    try:
        exe = os.readlink("/proc/%s/exe" % p)
        in_guest = os.stat("/proc/%s/ns/pid" % p).st_ino != own
        with open("/proc/%s/cmdline" % p, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        continue
    if in_guest and "catatonit" in exe:  # the sealed copy: /memfd:catatonit (deleted)
        out["reapers"] += 1
    elif in_guest and b"httpd" in argv[:2]:
        out["httpd"] += 1
    elif exe == "/usr/bin/unshare":
        out["holders"] += 1
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def fetch(i):
    name = "g%02d" % i
    try:
        a = start + 10 + i
        with opener.open("http://%d.%d.%d.%d/" % (a >> 24, a >> 16 & 255, a >> 8 & 255, a & 255), timeout=5) as r:
            return r.read().decode() == "guest %s on %s\n" % (name, host)
    except OSError:
        return False
if n:
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        got = dict(zip(range(1, n + 1), ex.map(fetch, range(1, n + 1))))
    # then one at a time, the pages that did not come: 8 fetches at once on a bridge of hundreds of
    # ports lose ARP requests (each broadcast queues a packet per port; the per-CPU backlog,
    # net.core.netdev_max_backlog, drops them), and a guest that misses its ARP misses the fetch
    for i in [i for i, ok in got.items() if not ok]:
        got[i] = fetch(i)
    out["pages"] = sum(got.values())
print(json.dumps(out))
""".replace("BRIDGE", BRIDGE)

PSS = r"""
import json, os
own = os.stat("/proc/self/ns/pid").st_ino
tot = {"guest_procs": 0, "guest_pss": 0, "holders": 0, "holder_pss": 0, "root_file_pss": 0}
for p in os.listdir("/proc"):
    if not p.isdigit() or p == "1":
        continue
    try:
        in_guest = os.stat("/proc/%s/ns/pid" % p).st_ino != own
        holder = os.readlink("/proc/%s/exe" % p) == "/usr/bin/unshare"
        if not (in_guest or holder):
            continue
        with open("/proc/%s/smaps_rollup" % p) as f:
            roll = dict((line.split(":")[0], int(line.split()[1])) for line in f if line.split()[1:2] and line.split()[1].isdigit())
        # pages of files on tmpfs (the busybox copy in the guest's root) are already in the Shmem delta
        pss = roll.get("Pss", 0) - roll.get("Pss_Shmem", 0)
        tot["root_file_pss"] += roll.get("Pss_Shmem", 0)
    except OSError:
        continue
    key = "guest" if in_guest else "holder"
    tot[key + ("_procs" if in_guest else "s")] += 1
    tot[key + "_pss"] += pss
print(json.dumps(tot))
"""


class Fleet:
    """Lab hosts 1 and 2, scratch files, and both sides' runs."""

    def __init__(self, keep_lab: bool, settle: float):
        self.lab = Lab()
        self.keep_lab = keep_lab
        self.settle = settle
        self.brought_up = False
        self.tmp = Path(tempfile.mkdtemp(prefix="linuxns-bench-fleet-"))
        self.record = self.tmp / "times.jsonl"
        self.breakdown = {}

    def __enter__(self):
        unwind_on_sigterm()
        with undone_on_failure(self):
            if not all(self.lab.healthy(n) for n in HOSTS):
                healthy = [h.n for h in self.lab.hosts if self.lab.healthy(h.n)]
                self.brought_up = not healthy
                self.lab.up(max([len(HOSTS)] + healthy))  # up(N) keeps exactly hosts 1..N
            self.hosts = [self.lab.host(n) for n in HOSTS]
        return self

    def __exit__(self, *exc):
        for h in self.hosts:
            with contextlib.suppress(Exception):
                subprocess.run(self._ssh(h)[:-1] + ["-O", "exit", "root@" + h.address], capture_output=True, timeout=10, check=False)
        if self.brought_up and not self.keep_lab:
            self.lab.down()
        shutil.rmtree(self.tmp, ignore_errors=True)  # its ssh control sockets too
        return False

    def exec(self, n, argv, **kw):
        return self.lab.exec(n, argv, **kw)

    # -- shell side ------------------------------------------------------------------
    def _ssh(self, h):
        argv = self.lab.ssh_argv(h.n)[:-1]
        return argv + ["-o", "ControlMaster=auto", "-o", "ControlPath=%s/cm-%d" % (self.tmp, h.n), "-o", "ControlPersist=300",
                       "root@" + h.address]

    def base(self, script, args_of) -> tuple:
        """Run SCRIPT on both lab hosts at once over ssh; (seconds until both are done, [stdout])."""
        for h in self.hosts:
            subprocess.run(self._ssh(h) + ["true"], check=True, capture_output=True, timeout=60)
        t0 = time.monotonic()
        procs = [subprocess.Popen(self._ssh(h) + ["bash", "-s", "--"] + args_of(i, h), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i, h in enumerate(self.hosts, 1)]
        outs = [p.communicate(script) for p in procs]
        seconds = time.monotonic() - t0
        for h, p, (out, err) in zip(self.hosts, procs, outs):
            if p.returncode != 0:
                raise RuntimeError("shell script failed on %s (rc=%d): %s" % (h.name, p.returncode, (out + err)[-2000:]))
        return seconds, [out[0] for out in outs]

    # -- our side ----------------------------------------------------------------------
    def plays(self):
        """The deploy and tear-down plays of playbooks/fleet.yml, vars_files made absolute."""
        plays = yaml.safe_load(FLEET.read_text())
        deploy = [p for p in plays if "deploy the guests" in p["name"]]
        teardown = [p for p in plays if "tear down" in p["name"]]
        if len(deploy) != 1 or len(teardown) != 1:
            raise SystemExit("%s: expected one deploy and one tear-down play" % FLEET)
        for name, play in (("deploy", deploy[0]), ("teardown", teardown[0])):
            play["vars_files"] = [str(FLEET.parent / v) for v in play.get("vars_files", [])]
            (self.tmp / (name + ".yml")).write_text(json.dumps([play]))

    def ours(self, which, n, expect_changed) -> float:
        env = {"ANSIBLE_CONFIG": str(self.lab.ansible_cfg_path), "ANSIBLE_CALLBACK_PLUGINS": str(HERE / "callback"),
               "ANSIBLE_CALLBACKS_ENABLED": "linuxns_bench_time", "LINUXNS_BENCH_FILE": str(self.record)}
        env = {**os.environ, **env}
        inv = ["-i", str(self.lab.inventory_path)]
        pattern = ":".join(h.name for h in self.hosts)
        run_tree([str(VENV_BIN / "ansible"), *inv, pattern, "-m", "ansible.builtin.ping"], env=env, capture_output=True, check=True)
        with contextlib.suppress(FileNotFoundError):
            self.record.unlink()
        argv = [str(VENV_BIN / "ansible-playbook"), *inv, "-e", "fleet_group=" + pattern, "-e", "fleet_size=%d" % n]
        if which == "teardown":
            argv += ["-e", "fleet_teardown=true"]
        t0 = time.monotonic()
        proc = run_tree(argv + [str(self.tmp / (which + ".yml"))], env=env, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError("ansible-playbook (%s, %d guests) failed (rc=%d): %s%s" % (which, n, proc.returncode, proc.stdout[-3000:], proc.stderr[-2000:]))
        changed = [int(line.split("changed=")[1].split()[0]) for line in proc.stdout.splitlines() if " changed=" in line]
        if len(changed) != len(self.hosts) or any(bool(c) != expect_changed for c in changed):
            raise RuntimeError("ansible-playbook (%s, %d guests): changed=%s in the recap, expected %s" % (which, n, changed, expect_changed))
        if self.record.exists():
            recs = [json.loads(line) for line in self.record.read_text().splitlines()]
            phase = which if which == "teardown" else "create" if expect_changed else "rerun"
            if phase == "create" and not any(k[0] == "first create" for k in self.breakdown):
                self.breakdown[("first create", n)] = recs  # the lab's first deploy: guest_host installs its programs
            self.breakdown[(phase, n)] = recs
        return seconds

    # -- checks ----------------------------------------------------------------------------
    def count(self, n):
        out = []
        for i, h in enumerate(self.hosts, 1):
            res = self.exec(h.n, ["python3", "-c", COUNT, str(fleet_net(i, n)[0]), h.name, str(n), BASE_DIR])
            out.append(json.loads(res.stdout))
        return out

    def expect(self, side, n, up, what):
        """Check both lab hosts from outside; a killed guest may take a moment to go."""
        if up:
            want = {"netns": n, "ports": n, "veths": n, "reapers": n, "httpd": n, "pages": n,
                    "registered": n if side == "ours" else 0, "pins": 4 * n if side == "base" else 0,
                    "holders": n if side == "base" else 0}
        else:
            want = dict.fromkeys(("netns", "ports", "veths", "reapers", "httpd", "pages", "registered", "pins", "holders"), 0)
        deadline = time.monotonic() + 30
        got = self.count(n if up else 0)
        while any(g != want for g in got) and time.monotonic() < deadline:
            time.sleep(0.5)
            got = self.count(n if up else 0)
        if any(g != want for g in got):
            raise SystemExit("%s %s %d: found %s on the lab hosts, expected %s on each" % (side, what, n, got, want))

    def reset(self):
        """Untimed, after a side's teardown: the bridge and the folders go, for a fresh create."""
        for h in self.hosts:
            self.exec(h.n, ["sh", "-c", "ip link del %s 2>/dev/null; rm -rf %s %s; true" % (BRIDGE, OURS_DIR, BASE_DIR)])

    def cleanup(self, sizes):
        """Remove whatever a failed round left (both sides)."""
        for h in self.hosts:
            self.exec(h.n, ["bash", "-c", BASE_TEARDOWN, "x", BASE_DIR], check=False)
        try:
            for h in self.hosts:
                if self.exec(h.n, ["sh", "-c", "ls /run/linuxns/guests 2>/dev/null | wc -l"]).stdout.strip() != "0":
                    self.ours("teardown", max(sizes), True)
                    break
        except RuntimeError as exc:
            print("cleanup: %s" % exc, file=sys.stderr)
        self.reset()

    def memory(self):
        out = {"guest_procs": 0, "guest_pss": 0, "holders": 0, "holder_pss": 0, "root_file_pss": 0}
        for h in self.hosts:
            for k, v in json.loads(self.exec(h.n, ["python3", "-c", PSS]).stdout).items():
                out[k] += v
        return out


def side_round(fleet, side, n, figures, measure_memory):
    total = n * len(fleet.hosts)
    if measure_memory:
        time.sleep(fleet.settle)
        before = meminfo()
    if side == "ours":
        seconds = fleet.ours("deploy", n, True)
    else:
        seconds, outs = fleet.base(BASE_CREATE, lambda i, h: [BASE_DIR, str(n), h.name, *map(str, fleet_net(i, n))])
        figures.setdefault(("base retries", n), []).append(sum(int(o.split("retries=")[1].split()[0]) for o in outs))
    figures.setdefault((side, "create", n), []).append(seconds)
    fleet.expect(side, n, True, "create")
    if measure_memory:
        time.sleep(fleet.settle)
        after = meminfo()
        pss = fleet.memory()
        if pss["guest_procs"] != 2 * total:
            raise SystemExit("%s: %d processes in guests, expected %d (reaper + httpd per guest)" % (side, pss["guest_procs"], 2 * total))
        figures.setdefault((side, "mem pss", n), []).append((pss["guest_pss"] + pss["holder_pss"]) / total)
        figures.setdefault((side, "mem holders", n), []).append(pss["holder_pss"] / total)
        figures.setdefault((side, "mem kernel", n), []).append((kernel(after) - kernel(before)) / total)
        figures.setdefault((side, "mem shmem", n), []).append((after["Shmem"] - before["Shmem"]) / total)
        figures.setdefault((side, "mem mapped", n), []).append(pss["root_file_pss"] / total)
    if side == "ours":
        seconds = fleet.ours("deploy", n, False)
    else:
        seconds = fleet.base(BASE_RERUN, lambda i, h: [BASE_DIR, str(n)])[0]
    figures.setdefault((side, "rerun", n), []).append(seconds)
    fleet.expect(side, n, True, "rerun")
    if side == "ours":
        seconds = fleet.ours("teardown", n, True)
    else:
        seconds = fleet.base(BASE_TEARDOWN, lambda i, h: [BASE_DIR])[0]
    figures.setdefault((side, "teardown", n), []).append(seconds)
    fleet.expect(side, n, False, "teardown")
    fleet.reset()


def slowest_tasks(fleet, n, phase="create"):
    """Ours' last PHASE at size N: (the tasks with a result in order, {task: the slowest host's
    seconds}, {task: that host's guest_deploy steps})."""
    order, slowest, steps = [], {}, {}
    for r in fleet.breakdown.get((phase, n)) or []:
        if r["task"] not in slowest:
            order.append(r["task"])
        if r["seconds"] >= slowest.get(r["task"], -1.0):
            slowest[r["task"]] = r["seconds"]
            if r.get("steps"):
                steps[r["task"]] = r["steps"]
    return order, slowest, steps


def where_ours_goes(fleet, n):
    """The slowest tasks of ours' last create at size N (slowest host), for the report."""
    top = sorted(slowest_tasks(fleet, n)[1].items(), key=lambda kv: -kv[1])[:6]
    return "; ".join("%s %.1fs" % (t[:70], s) for t, s in top)


def breakdown(fleet, n, phase="create"):
    """Every task with a result in ours' last PHASE at size N, in order, with the slowest host's
    seconds, then guest_deploy's steps (slowest host's): lines for the report."""
    order, slowest, steps = slowest_tasks(fleet, n, phase)
    if not slowest:
        return []
    which = "the lab's first create (a host's first deploy)" if phase == "first create" else "last " + phase
    lines = ["ours' %s at %d/host, tasks with a result (slowest host's seconds, task start to result):" % (which, n)]
    lines += ["  %6.2f  %s" % (slowest[t], t[:110]) for t in order]
    lines.append("  %6.2f  sum of %d tasks" % (sum(slowest.values()), len(order)))
    for st in steps.values():
        lines += ["    %6.2f  step: %s" % (x.get("seconds", 0.0), x["step"][:100]) for x in st]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--sizes", default="50,200", help="guests per host, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds to wait before each meminfo reading")
    ap.add_argument("--keep-lab", action="store_true", help="leave a lab this bench brought up running")
    ap.add_argument("--breakdown", action="store_true", help="also print every task of ours' last create and rerun at each size, and of the lab's first create")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(not 1 <= n <= MAX_PER_HOST for n in sizes):
        raise SystemExit("--sizes: each size must be 1..%d (one bridge per host, at most 1024 ports)" % MAX_PER_HOST)
    figures = {}
    notes = []
    with Fleet(args.keep_lab, args.settle) as fleet:
        fleet.plays()
        fleet.expect("ours", 0, False, "before the bench (lab hosts 1 and 2 must have no fleet)")
        try:
            for n in sizes:
                for r in range(args.rounds):
                    order = ("base", "ours") if r % 2 == 0 else ("ours", "base")
                    for side in order:
                        side_round(fleet, side, n, figures, n == max(sizes))
                    print("n=%d round %d done (%s first): %s" % (n, r + 1, order[0], " ".join(
                        "%s/%s=%.2f" % (k[0], k[1], v[-1]) for k, v in figures.items() if len(k) == 3 and k[2] == n)), file=sys.stderr, flush=True)
                notes.append("ours' slowest tasks, last create at %d/host: %s" % (n, where_ours_goes(fleet, n)))
                if args.breakdown:
                    notes.extend(breakdown(fleet, n, "first create") + breakdown(fleet, n, "create") + breakdown(fleet, n, "rerun"))
        finally:
            fleet.cleanup(sizes)
            fleet.expect("ours", 0, False, "after the cleanup")
        hosts = len(fleet.hosts)
    rows = []
    for n in sizes:
        total = n * hosts
        for phase in ("create", "rerun", "teardown"):
            b, o = median(figures[("base", phase, n)]), median(figures[("ours", phase, n)])
            paired = median([x / y for x, y in zip(figures[("ours", phase, n)], figures[("base", phase, n)])])
            rows.append(("%dx%d" % (hosts, n), phase, "%.2f" % b, "%.2f" % o, "%.1f" % (1000 * b / total), "%.1f" % (1000 * o / total),
                         "%.2fx" % (o / b), "%.2fx" % paired))
    print("median of %d rounds; seconds for the whole phase (both hosts in parallel); ms per guest = seconds / all guests" % args.rounds)
    print(table(rows, ("fleet", "phase", "base s", "ours s", "base ms/guest", "ours ms/guest", "ours/base", "paired")))
    m = max(sizes)
    mrows = []
    for side in ("base", "ours"):
        pss, ker, shm = (median(figures[(side, k, m)]) for k in ("mem pss", "mem kernel", "mem shmem"))
        mrows.append((side, "%.0f" % pss, "%.0f" % median(figures[(side, "mem holders", m)]), "%.0f" % ker, "%.0f" % (pss + ker), "%.0f" % shm,
                      "%.0f" % median(figures[(side, "mem mapped", m)]),
                      " ".join("%.0f" % (p + k) for p, k in zip(figures[(side, "mem pss", m)], figures[(side, "mem kernel", m)]))))
    print("KiB per idle guest, %dx%d fleet up (median of %d rounds; kernel objects and root files are machine-wide deltas)" % (hosts, m, args.rounds))
    print(table(mrows, ("side", "processes PSS", "of it holders", "kernel objs", "PSS+kernel", "root files (Shmem)", "of it mapped",
                        "PSS+kernel per round")))
    for note in notes:
        print(note)
    print("shell retries after EINVAL on the mount pin (per round): %s" % {n: figures.get(("base retries", n)) for n in sizes})
    print("raw: " + "; ".join("%s %s %d: %s" % (k[0], k[1], k[2], " ".join("%.2f" % v for v in vals))
                              for k, vals in sorted(figures.items(), key=lambda kv: str(kv[0])) if len(k) == 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
