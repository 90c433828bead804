# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""linuxns-guests-restore: bring back, with no controller, every guest marked ``autostart``.

At boot the registry under /run is empty; what is kept is the table folder
(persist.py): each guest's definition ``TABLE_DIR/NAME/guest.json``, its mount table and
its context id.  :func:`restore` reads every definition and, for the guests whose
``guest.autostart`` is true and whose state is not absent:

1. orders them so that a guest whose namespaces another one ``share``s comes first;
2. makes each one with :func:`guests.ensure_guests` - the code behind namespace_create,
   which also gives it its kept context id (and userns range) and applies its mount table,
   starts its init (and so the services an init starts) - with the definition's fields and state;
3. then makes every guest's saved links with :func:`links.ensure_links` (netns_link's
   code), after all guests exist, so that a veth between two guests finds both;
4. then starts each guest's recorded services (an init-less guest's: namespace_create's
   ``services``) with the guest role's start script run by guest_enter_exec's code
   (:func:`start_services`, services.py).

A guest that fails (a broken definition, a root that is gone, a guest it shares from that
failed) is reported and the others go on.  A guest already up is left as it is (the run is
idempotent).  One log line per guest on stderr (the journal under systemd, with its
priority), then a summary line.

Exit status: 0 every autostart guest is up (or there is none), 1 at least one failed,
2 bad usage or a table folder that cannot be read (nothing was done).

Run as ``python3 -m ansible_collections.linuxns.guests.plugins.module_utils.boot`` with the
collection on sys.path (the guest_host role installs a launcher, linuxns-guests-restore).
This file imports nothing from Ansible.
"""

from __future__ import annotations

import argparse
import os
import sys

from ansible_collections.linuxns.guests.plugins.module_utils import model, persist
from ansible_collections.linuxns.guests.plugins.module_utils import registry as reg
from ansible_collections.linuxns.guests.plugins.module_utils.errors import GuestError

PROG = "linuxns-guests-restore"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# sd-daemon(3) priority prefixes, understood by the journal on a service's stderr
ERR, INFO = "<3>", "<6>"

UP, FAILED, DOWN = "up", "failed", "down"


def order(wanted: dict) -> tuple:
    """``wanted``: name -> definition of the guests to bring back.  Returns (names in an order
    where every guest comes after the wanted guests it shares namespaces from, {name: why} of
    the guests in a share cycle)."""
    deps = {}
    for name, d in wanted.items():
        share = (d.get("guest") or {}).get("share") or {}
        deps[name] = sorted({src for src in share.values() if isinstance(src, str) and src in wanted and src != name})
    done, out, cyclic = set(), [], {}
    while len(done) + len(cyclic) < len(wanted):
        ready = sorted(n for n in wanted if n not in done and n not in cyclic and all(d in done for d in deps[n]))
        if not ready:
            for n in sorted(set(wanted) - done - set(cyclic)):
                cyclic[n] = "its share sources form a cycle (%s)" % ", ".join(deps[n])
            break
        for n in ready:
            done.add(n)
            out.append(n)
    return out, cyclic


def _entry(name: str, d: dict) -> dict:
    """The namespace_create entry of a definition: the fields this version knows, its state."""
    fields = {k: v for k, v in (d.get("guest") or {}).items() if k in model.GUEST_BY_NAME and model.GUEST_BY_NAME[k].change}
    return dict(fields, name=name, state=d.get("state") or "present")


def relink(registry: reg.Registry, table_dir: str, name: str) -> str:
    """Make guest ``name``'s saved links (its definition's ``links``) with netns_link's code, after
    the guest was made (again): at boot, after a restart by the supervisor, by the operator's
    ``start``.  A veth whose peer is in another guest comes back in both.  Returns the log text
    ("links eth0, ve-x (already)"; "" without saved links); GuestError when a link fails."""
    from ansible_collections.linuxns.guests.plugins.module_utils import links  # netns_link's engine

    saved = list(((persist.Kept(table_dir, name).read_definition() or {}).get("links") or {}).values())
    if not saved:
        return ""
    out = links.ensure_links(registry, [dict(e, _in_list=True) for e in saved], table_dir=table_dir)  # kept again there
    return "links %s" % ", ".join("%s%s" % (r["ifname"], "" if r["changed"] else " (already)") for r in out["results"])


def start_services(registry: reg.Registry, name: str) -> str:
    """Start guest ``name``'s recorded services (namespace_create's ``services``, saved in its
    definition) unless they run, with the guest role's start script (services.py) run by
    guest_enter_exec's code; after the guest and its links are back: at boot, after the
    supervisor's restart, by the operator's ``start``.  Returns the log text ("services httpd
    (started 7)"; "" without services); GuestError naming the service when one fails."""
    from ansible_collections.linuxns.guests.plugins.module_utils import services

    meta = registry.load(name)
    wanted = meta.field("services") if meta is not None else None
    if not wanted:
        return ""
    done = services.start(meta, wanted)
    failed = ["%s: %s" % (sname, text) for sname, ok, text in done if not ok]
    if failed:
        raise GuestError("guest %r: service %s" % (name, "; ".join(failed)))
    return "services %s" % ", ".join("%s (%s)" % (sname, text) for sname, _ok, text in done)


def bring_up(registry: reg.Registry, table_dir: str, name: str) -> str:
    """What follows making guest ``name`` (again) - at boot, after the supervisor's restart, by
    the operator's ``start``: its saved links (:func:`relink`), then its recorded services
    (:func:`start_services`).  Returns their log text ("; links eth0; services httpd (started
    7)", "" for neither); GuestError "its links: ..." or "its services: ..." on a failure (the
    services are not started when the links failed)."""
    texts = []
    for what, step in (("its links", relink), ("its services", start_services)):
        try:
            texts.append(step(registry, table_dir, name) if step is relink else step(registry, name))
        except GuestError as exc:
            raise GuestError("%s: %s" % (what, exc.msg))
    return "".join("; " + t for t in texts if t)


class Report:
    """One line per guest (and a summary) on ``stream``."""

    def __init__(self, stream, journal: bool):
        self.stream = stream
        self.journal = journal
        self.outcome = {}  # name -> UP | FAILED | DOWN

    def line(self, name: str, outcome: str, text: str) -> None:
        self.outcome[name] = outcome
        prefix = (ERR if outcome == FAILED else INFO) if self.journal else ""
        self.stream.write("%s%s: guest %s: %s\n" % (prefix, PROG, name, text))
        self.stream.flush()

    def summary(self) -> int:
        counts = {k: sum(1 for v in self.outcome.values() if v == k) for k in (UP, FAILED, DOWN)}
        status = EXIT_FAILED if counts[FAILED] else EXIT_OK
        prefix = (ERR if status else INFO) if self.journal else ""
        self.stream.write("%s%s: %d up, %d failed, %d left down\n" % (prefix, PROG, counts[UP], counts[FAILED], counts[DOWN]))
        self.stream.flush()
        return status


def restore(registry: reg.Registry, table_dir: str, report: Report, dry_run: bool = False) -> int:
    """Bring back the autostart guests of ``table_dir``; returns the exit status."""
    from ansible_collections.linuxns.guests.plugins.module_utils import guests  # namespace_create's engine

    wanted = {}
    for name, d in persist.definitions(table_dir):
        if isinstance(d, GuestError):
            report.line(name, FAILED, "FAILED: %s" % d.msg)
        elif not d.get("guest"):
            report.line(name, DOWN, "left down: its definition has no guest fields yet (namespace_create writes them)")
        elif not d["guest"].get("autostart"):
            report.line(name, DOWN, "left down: autostart is false")
        elif d.get("state") == "absent":
            report.line(name, DOWN, "left down: it was removed (state absent)")
        else:
            wanted[name] = d
    names, cyclic = order(wanted)
    for name, why in cyclic.items():
        report.line(name, FAILED, "FAILED: %s" % why)
    made = {}
    for name in names:
        d = wanted[name]
        share = (d["guest"].get("share") or {}).values()
        bad = sorted(src for src in share if report.outcome.get(src) == FAILED and src in wanted)
        if bad:
            report.line(name, FAILED, "FAILED: it shares namespaces of guest %s, which did not come back" % ", ".join(bad))
            continue
        if dry_run:
            report.line(name, UP, "would be brought back (%d links)" % len(d.get("links") or {}))
            continue
        try:
            out = guests.ensure_guests(registry, [_entry(name, d)], check_mode=False, table_dir=table_dir)
        except GuestError as exc:
            report.line(name, FAILED, "FAILED: %s" % exc.msg)
            continue
        made[name] = out["results"][0]
    for name in names:
        if name not in made:
            continue
        try:
            text = bring_up(registry, table_dir, name)
        except GuestError as exc:
            report.line(name, FAILED, "FAILED: %s" % exc.msg)
            continue
        g = made[name]["guest"]
        action = {"none": "already up", "create": "created", "recreate": "made again"}.get(made[name]["action"], made[name]["action"])
        report.line(name, UP, "up (%s; context id %s; init pid %s%s)" % (action, g.get("context_id"), g.get("init_pid"), text))
    return report.summary()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Bring back every guest marked autostart (docs/lifecycle.md).")
    parser.add_argument("--state-dir", default=reg.DEFAULT_STATE_DIR, help="the registry folder (default %(default)s)")
    parser.add_argument("--table-dir", default=None,
                        help="the guests' kept files (default $%s, else %s)" % (persist.TABLE_DIR_ENV, persist.DEFAULT_TABLE_DIR))
    parser.add_argument("--dry-run", action="store_true", help="say what would be brought back; change nothing")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return EXIT_OK if exc.code in (0, None) else EXIT_USAGE
    report = Report(sys.stderr, bool(os.environ.get("JOURNAL_STREAM")))
    try:
        state_dir = model.check_dir(args.state_dir, "--state-dir")
        table_dir = persist.resolve_table_dir(state_dir, args.table_dir, remembered=False)
        if not os.path.isdir(table_dir):
            sys.stderr.write("%s: table folder %s does not exist: no guest to bring back\n" % (PROG, table_dir))
            return EXIT_OK
        persist.definitions(table_dir)  # readable at all (else: exit 2, nothing done)
        return restore(reg.Registry(state_dir), table_dir, report, args.dry_run)
    except GuestError as exc:
        sys.stderr.write("%s%s: %s\n" % (ERR if report.journal else "", PROG, exc.msg))
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
