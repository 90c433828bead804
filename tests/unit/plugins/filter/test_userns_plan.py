"""The guest role's plan passes a guest's user namespace and time options to namespace_create (issue 16)."""

from __future__ import annotations

import pytest

from ansible_collections.linuxns.guests.plugins.filter import guest_plan as gp

pytestmark = pytest.mark.unit


def test_userns_maps_and_time_offsets_reach_namespace_create():
    guests = [{"name": "un", "root_build": True, "userns": "auto", "userns_size": 1000, "userns_root": "shift"},
              {"name": "mapped", "namespaces": ["mnt", "user", "time"], "uid_map": ["0 100000 10"], "gid_map": ["0 100000 10"],
               "time_offsets": {"monotonic": 86400}},
              {"name": "plain"}]
    un, mapped, plain = gp.plan(guests, roots_dir="/tmp/roots")
    assert {k: un["create"][k] for k in ("userns", "userns_size", "userns_root", "root")} == {
        "userns": "auto", "userns_size": 1000, "userns_root": "shift", "root": "/tmp/roots/un"}
    assert mapped["create"]["uid_map"] == ["0 100000 10"] and mapped["create"]["gid_map"] == ["0 100000 10"]
    assert mapped["create"]["time_offsets"] == {"monotonic": 86400}
    assert not {"userns", "userns_size", "userns_root", "uid_map", "gid_map", "time_offsets"} & set(plain["create"])
