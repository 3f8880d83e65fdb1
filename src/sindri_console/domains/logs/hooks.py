"""Start-up of the logs domain: the per-replica stream hub, the log retention loop (10-core §12, §16.2)
and, where the database defers search-index work, the loop that does it off the ingest path."""

from __future__ import annotations

import time

from sindri_console.domains.logs import repository as repo
from sindri_console.domains.logs.entries import DAY_MS, SEARCH_INDEX_LOOP
from sindri_console.domains.logs.stream import SERVICE, LogStreamHub
from sindri_console.kit.clock import clock
from sindri_console.loops.base import LoopSpec
from sindri_console.runtime import Runtime

RETENTION_BATCH = 5000
RETENTION_MAX_SECONDS = 60.0
INDEX_IDLE_SECONDS = 1.0
INDEX_MAX_SECONDS = 30.0


async def log_retention(rt: Runtime) -> int:
    """Delete entries older than LOG_RETENTION_DAYS (by entry timestamp) in batches of 5000, each its
    own short transaction, for at most 60 s; the rest waits for the next run. Returns rows deleted."""
    cutoff = clock.now_ms() - rt.settings.LOG_RETENTION_DAYS * DAY_MS
    started = time.monotonic()
    deleted = 0
    while time.monotonic() - started < RETENTION_MAX_SECONDS:
        async with rt.db.write() as s:
            n = await repo.delete_older_than(s, cutoff, RETENTION_BATCH)
        deleted += n
        if n < RETENTION_BATCH:
            break
    return deleted


async def flush_search_index(rt: Runtime) -> int:
    """Flush the search index's deferred work until none is left (or 30 s passed), one short
    transaction per pass. Woken after every ingest commit; a pass that finds another replica
    flushing stops. Returns pages flushed."""
    started = time.monotonic()
    flushed = 0
    while time.monotonic() - started < INDEX_MAX_SECONDS:
        async with rt.db.write() as s:
            pages = await rt.db.dialect.flush_log_search_index(s)
        if pages <= 0:
            break
        flushed += pages
    return flushed


async def startup(rt: Runtime) -> None:
    hub = LogStreamHub(rt)
    await hub.start()
    rt.services[SERVICE] = hub
    rt.loops.add(LoopSpec("logs-retention", 600, lambda: log_retention(rt), lease="logs-retention",
                          lease_ttl=180, timeout=RETENTION_MAX_SECONDS + 30))
    if rt.db.dialect.defers_log_index_work:
        rt.loops.add(LoopSpec(SEARCH_INDEX_LOOP, INDEX_IDLE_SECONDS, lambda: flush_search_index(rt),
                              timeout=INDEX_MAX_SECONDS + 30))


async def shutdown(rt: Runtime) -> None:
    hub = rt.services.pop(SERVICE, None)
    if hub is not None:
        await hub.stop()
