"""The guests of the role tests, written once: the play of tests/integration/test_roles.py
runs them on a lab host, and tests/unit/plugins/filter/test_guest_plan.py plans them with
the role's filter (both import this module through pytest's pythonpath). Guest networks use
198.19.0.0/16 only (198.18.N.0/24 are the lab hosts' own links). Tests deep-copy before
changing them."""

from __future__ import annotations

NET = "198.19.7"
GUEST_LIST = [
    {"name": "web", "root_build": True, "address": NET + ".11/24", "gateway": NET + ".1",
     "files": [{"path": "/www/index.html", "content": "page of web\n"}],
     "services": [{"name": "httpd", "argv": ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"], "stop": ["/bin/true"]}],
     "mounts": [{"path": "/scratch", "fstype": "tmpfs", "opts": "size=1m"}]},
    {"name": "side", "namespaces": ["mnt", "uts", "ipc", "pid"], "share": {"net": "web"}, "root_build": True,
     "hostname": "side.example"},
    {"name": "boxinit", "root_build": True, "init": ["/bin/busybox", "init"], "stop_signal": "SIGUSR2", "stop_timeout": 5,
     "address": NET + ".12/24",
     "files": [{"path": "/www/index.html", "content": "page of boxinit\n"}],
     "services": [{"name": "httpd", "argv": ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"]}]},
]
