# Fleet check, run on each host by playbooks/fleet.yml: fetch every guest's page over the
# host bridge concurrently; print JSON {address: {"ok": bool, "body" or "error"}}.
import json
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def fetch(address):
    try:
        with urllib.request.urlopen("http://%s/" % address, timeout=5) as r:
            return address, {"ok": r.status == 200, "body": r.read(200).decode(errors="replace").strip()}
    except Exception as exc:  # every failure is a result to report
        return address, {"ok": False, "error": str(exc)}


addresses = json.loads(sys.argv[1])
with ThreadPoolExecutor(max_workers=min(32, max(1, len(addresses)))) as pool:
    print(json.dumps(dict(pool.map(fetch, addresses))))
