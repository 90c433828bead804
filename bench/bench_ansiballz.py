"""Bench: what building a module's AnsiballZ payload costs on the controller, ours against ansible.builtin.command.

An ad hoc `ansible HOST -m MODULE` builds the module's payload once per process (the
payload cache lives in the process's own temporary folder): ansible-core's recursive
finder parses every module_utils file the module imports, and zips them. That cost is
paid on the controller before the module runs, so it is part of the ad hoc ratio that
bench_exec.py measures (`guest_enter_exec` against `command` + nsenter), and the target
cannot win it back.

Each round runs one fresh Python process per module, alternating which goes first; in
it, ansible.builtin.ping is built first (so that what every build shares - plugin
loader, collection metadata - is paid already), then the module measured, once. Printed:
median first-build time of each module, the payload's size and file count, the source
bytes of the collection's own files in it, and the ratio to command.

    .venv/bin/python bench/bench_ansiballz.py [--rounds 7] [MODULE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT = ["ansible.builtin.command", "linuxns.guests.guest_enter_exec", "linuxns.guests.namespace_create",
           "linuxns.guests.namespace_info", "linuxns.guests.namespace_mount", "linuxns.guests.netns_link"]

CHILD = r"""
import base64, io, json, re, sys, time, zipfile
from ansible.executor import module_common
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader, module_loader
from ansible.template import Templar
init_plugin_loader()

def build(name):
    ctx = module_loader.find_plugin_with_context(name)
    return module_common.modify_module(
        module_name=ctx.resolved_fqcn, module_path=ctx.plugin_resolved_path, module_args={}, templar=Templar(loader=DataLoader()),
        task_vars={"ansible_python_interpreter": "/usr/bin/python3"}, module_compression="ZIP_DEFLATED", async_timeout=0,
        become_plugin=None, environment={}).b_module_data

build("ansible.builtin.ping")  # what every build shares: plugin loader, collection metadata
t0 = time.perf_counter()
data = build(sys.argv[1])
seconds = time.perf_counter() - t0
blob = max(re.findall(rb"'([A-Za-z0-9+/=]{10000,})'", data) + re.findall(rb'"([A-Za-z0-9+/=]{10000,})"', data), key=len)
infos = zipfile.ZipFile(io.BytesIO(base64.b64decode(blob))).infolist()
print(json.dumps({"seconds": seconds, "bytes": len(data), "files": len(infos),
                  "own": sum(i.file_size for i in infos if i.filename.startswith("ansible_collections/linuxns/"))}))
"""


def one(module: str) -> dict:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "build"))
    out = subprocess.run([sys.executable, "-c", CHILD, module], capture_output=True, text=True, env=env, cwd="/tmp", check=False)
    if out.returncode != 0:
        raise SystemExit("building %s failed:\n%s" % (module, out.stderr[-3000:]))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("modules", nargs="*", default=DEFAULT)
    args = ap.parse_args(argv)
    runs = {m: [] for m in args.modules}
    last = {}
    for r in range(args.rounds):
        order = args.modules if r % 2 == 0 else list(reversed(args.modules))
        for m in order:
            last[m] = one(m)
            runs[m].append(last[m]["seconds"])
    base = statistics.median(runs[args.modules[0]])
    print("AnsiballZ build on the controller, first build in a fresh process, median of %d (after a ping build):" % args.rounds)
    print("%-34s %8s %8s %6s %10s %7s" % ("module", "seconds", "bytes", "files", "own bytes", "ratio"))
    for m in args.modules:
        med = statistics.median(runs[m])
        print("%-34s %8.3f %8d %6d %10d %7.2f" % (m, med, last[m]["bytes"], last[m]["files"], last[m]["own"], med / base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
