"""The guest connection's reading of the entry program's error reports, and its option surface."""

from __future__ import annotations

import json

from ansible_collections.linuxns.guests.plugins.connection import guest
from ansible_collections.linuxns.guests.plugins.module_utils import entry, errors


def report(cls, msg) -> bytes:
    return (entry.ERROR_MARK + json.dumps({"class": cls, "error": msg}) + "\n").encode()


def parsed(found):
    return None if found is None else (type(found), found.msg)


def test_parse_entry_error():
    assert parsed(guest.parse_entry_error(entry.ERROR_RC, b"", report("GuestNotFound", "gone"))) == (errors.GuestNotFound, "gone")
    # with ssh -tt stderr arrives on stdout, after whatever else was printed
    assert parsed(guest.parse_entry_error(entry.ERROR_RC, b"noise\r\n" + report("GuestStale", "init died"), b"")) == (
        errors.GuestStale, "init died")
    # a path the task names inside the guest: its own class, not a word in the message
    assert parsed(guest.parse_entry_error(entry.ERROR_RC, b"", report("PathError", "no /x"))) == (errors.PathError, "no /x")
    # a class this controller does not know (a newer host program) is still a GuestError
    assert parsed(guest.parse_entry_error(entry.ERROR_RC, b"", report("Newer", "what"))) == (errors.GuestError, "what")
    # the command's own exit status, even 251, without the mark is the command's
    assert guest.parse_entry_error(entry.ERROR_RC, b"x", b"y") is None
    assert guest.parse_entry_error(0, b"", report("GuestNotFound", "gone")) is None
    assert guest.parse_entry_error(entry.ERROR_RC, b"", entry.ERROR_MARK.encode() + b"{not json\n") is None


def test_host_vars_are_ours_the_rest_goes_to_the_inner_connection():
    import yaml

    doc = yaml.safe_load(guest.DOCUMENTATION)
    ours = {v["name"] for o in doc["options"].values() for v in o.get("vars", [])}
    # every physical-host variable we claim is kept away from the inner plugin's var_options
    assert {"ansible_host", "ansible_port", "ansible_user", "ansible_ssh_private_key_file"} <= ours
    # (our own linuxns_* / ansible_linuxns_* names are unknown to the inner plugin: nothing to keep away)
    assert {n for n in ours if not n.startswith(("linuxns_", "ansible_linuxns_"))} <= guest.HOST_VARS
    assert set(doc["options"]["linuxns_transport"]["choices"]) == set(guest.INNER)
