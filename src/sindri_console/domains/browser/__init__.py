"""The browser socket `/ws` (40 §8): live pushes for browsers and CLIs, on every replica.

- `router.py` accepts the upgrade and reads frames; `service.py` authenticates (ticket or user key,
  close 4401/4403/4429), handles `ping`/`subscribe`/`unsubscribe`, and runs the one distributor of the
  replica: a single bus subscription (`instance.*.*`, `command.*`, `fleet.alerts`, `scope.changed`) fanned
  out to bounded per-socket queues (`connection.py`); `repository.py` holds the scope lookups.
- Scope is checked per pushed message: one instance → team map per replica (refreshed every 60 s, on
  `scope.changed`, and on a miss for an instance created since) and, per socket, a snapshot of the
  principal's teams, re-read every 60 s and at once when `scope.changed` names the user.
- Terminal sessions (40 §9) are not served by this version: `terminal:open` answers FORBIDDEN / NOT_FOUND
  by the usual role and scope rules, then `CAPABILITY_MISSING` (the type is part of the protocol, so
  UNKNOWN_TYPE would be false); session messages answer NOT_FOUND, since no session can exist. A later
  terminal domain registers its handlers in `BrowserService.handlers`.
"""
