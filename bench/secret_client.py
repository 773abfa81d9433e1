"""Benchmark client (python secretstorage over jeepney) for `deno task bench`.

usage: secret_client.py lookups N KEY VALUE
    Opens one connection, then N times: SearchItems by {KEY: VALUE}, unlock the hit if it is
    locked (the first time this raises one approval request), read its secret. Prints JSON
    {"ms": [per-lookup wall time in ms]} where the first lookup is left out (it includes the
    approval).
usage: secret_client.py requests N KEY VALUE
    N times: lock the item for this connection, unlock it (one approval request each), read it.
    Prints JSON {"requests": N}.
"""

import json
import sys
import time

import secretstorage
from secretstorage.util import SERVICE_IFACE, SS_PATH, DBusAddressWrapper

mode, n, key, value = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
conn = secretstorage.dbus_init()


def lookup():
    item = next(secretstorage.search_items(conn, {key: value}))
    if item.is_locked() and item.unlock():
        raise SystemExit("unlock dismissed")
    return item, item.get_secret()


if mode == "lookups":
    lookup()
    ms = []
    for _ in range(n):
        t0 = time.perf_counter()
        lookup()
        ms.append((time.perf_counter() - t0) * 1000)
    print(json.dumps({"ms": ms}))
elif mode == "requests":
    item, _ = lookup()
    for _ in range(n):
        # Service.Lock drops this connection's approval of the item (the agent's Lock).
        DBusAddressWrapper(SS_PATH, SERVICE_IFACE, conn).call("Lock", "ao", [item.item_path])
        if item.unlock():
            raise SystemExit("unlock dismissed")
        item.get_secret()
    print(json.dumps({"requests": n}))
else:
    raise SystemExit(__doc__)
