"""Bench helper: one module's main() in-process, timed, in a lab host that holds bench_scale.py's guests.

Run inside the lab host (tests/lab/lab.py exec) by the host's Python, with ansible-core from
the venv after it, as `bench_scale.py --profile` does but without the profiler: the module's
own time for a no-change rerun, without Ansible's (controller, connection, result).

    LINUXNS_LAB=scale3 LINUXNS_LAB_BASE=180 .venv/bin/python bench/bench_scale.py --sizes 10000 --keep-guests
    for side in /path/to/base/build build; do
      LINUXNS_LAB=scale3 LINUXNS_LAB_BASE=180 .venv/bin/python tests/lab/lab.py exec 1 \\
        /usr/bin/python3 $PWD/bench/module_main.py $side netns_link $(ls -d $PWD/.venv/lib/python3*/site-packages) 10000
    done

Arguments: BUILD (a checkout's build/ folder: whose code), MODULE (namespace_create,
namespace_create:absent - the bench's teardown - netns_link, or netns_link:absent - each guest's link
removed), SITE (the venv's site-packages, for ansible-core), N (the guests bench_scale.py
made). The arguments are bench_scale.py's, with return_unchanged: false; BENCH_LINK_OPTIONS in the
environment is bench_scale.py's --link-options (JSON, e.g. '{"peer": {"ipv6": false}}'), BENCH_CGROUP_SHARDS
its --cgroup-shards (the shards below $LINUXNS_CGROUP_PARENT; a teardown leaves the empty folders). A checkout under /tmp
is not seen by a lab host (its /tmp is its own).

For netns_link, BENCH_SLICE=LO:HI takes the links of guests LO..HI-1 only (two processes with one half
each, side by side, against one with all: docs/performance.md, "10,000 guests made in under two
minutes"), and BENCH_STEPS=1 prints the wall time of each step of the links' making (the kernel's
requests by kind, the plan, the definitions) after main():

    LX="tests/lab/lab.py exec 1 env BENCH_LINK_OPTIONS={\"peer\":{\"ipv6\":false}}"
    $LX BENCH_STEPS=1 /usr/bin/python3 $PWD/bench/module_main.py $PWD/build netns_link $SITE 10000
    $LX BENCH_SLICE=0:5000 /usr/bin/python3 ... netns_link $SITE 10000 & $LX BENCH_SLICE=5000:10000 ...; wait
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

sys.path.insert(0, sys.argv[1])
sys.path.append(sys.argv[3])
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_scale


def main() -> int:
    module, _sep, state = sys.argv[2].partition(":")
    n = int(sys.argv[4])
    bench_scale.LINK_OPTIONS.update(json.loads(os.environ.get("BENCH_LINK_OPTIONS", "{}")))  # bench_scale.py's --link-options
    shards = int(os.environ.get("BENCH_CGROUP_SHARDS", "0"))  # bench_scale.py's --cgroup-shards
    if shards:
        bench_scale.CGROUP_SHARDS.update(base=os.environ["LINUXNS_CGROUP_PARENT"], count=shards)
    args = bench_scale.create_args(n, state or "present") if module == "namespace_create" else bench_scale.link_args(n)
    if module == "netns_link" and os.environ.get("BENCH_SLICE"):
        lo, hi = (int(x) for x in os.environ["BENCH_SLICE"].split(":"))
        args["links"] = args["links"][lo:hi]
    if module == "netns_link" and state == "absent":  # each guest's eth0 removed (its veth pair)
        args["links"] = [{"guest": e["guest"], "state": "absent"} for e in args["links"]]
    args.update(return_unchanged=False, _ansible_check_mode=False, _ansible_diff=False)
    from ansible.module_utils import basic
    from ansible.module_utils.common.text.converters import to_bytes

    basic._ANSIBLE_ARGS = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    basic._ANSIBLE_PROFILE = "legacy"
    mod = __import__("ansible_collections.linuxns.guests.plugins.modules." + module, fromlist=["main"])
    steps = StepTimes() if os.environ.get("BENCH_STEPS") and module == "netns_link" else None
    real_stdout = os.dup(1)
    devnull = os.open("/dev/null", os.O_WRONLY)
    os.dup2(devnull, 1)  # the module's JSON result
    t0 = time.perf_counter()
    try:
        mod.main()
    except SystemExit:
        pass
    finally:
        seconds = time.perf_counter() - t0
        os.dup2(real_stdout, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print("%s main() %.3f s (%s, %d guests; max RSS %d MiB)" % (sys.argv[2], seconds, sys.argv[1], n, peak))
    if steps is not None:
        steps.show()
    return 0


class StepTimes:
    """BENCH_STEPS: wall time of each step of netns_link's links (links.py's functions wrapped):
    its kernel requests by what they do (links._nl's first words), the reads, the plan, the
    definitions."""

    WRAPPED = ("_find", "_read_back", "_set_ipv6", "keep_link", "plan_links", "apply_plan", "_create")

    def __init__(self):
        from ansible_collections.linuxns.guests.plugins.module_utils import links

        self.seconds, self.calls = {}, {}
        self._wrap(links, "_nl", lambda args: "request: " + " ".join(args[0].split(": ", 1)[-1].split()[:2]))
        for name in self.WRAPPED:
            self._wrap(links, name, lambda args, name=name: name)

    def _wrap(self, mod, name, key):
        real = getattr(mod, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                k = key(args)
                self.seconds[k] = self.seconds.get(k, 0.0) + time.perf_counter() - t0
                self.calls[k] = self.calls.get(k, 0) + 1

        setattr(mod, name, timed)

    def show(self) -> None:
        for k, v in sorted(self.seconds.items(), key=lambda kv: -kv[1]):
            print("  %-36s %8.3f s %7d calls %8.1f us each" % (k, v, self.calls[k], 1e6 * v / self.calls[k]))


if __name__ == "__main__":
    sys.exit(main())
