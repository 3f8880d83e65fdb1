"""Log retention (10-core §10, §16.2): old entries go, the search index follows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from tests.domains.logs.helpers import API, batch

from sindri_console.domains.logs.entries import SEARCH_INDEX_LOOP
from sindri_console.domains.logs.service import LogLine, insert_entries
from sindri_console.kit.clock import clock
from sindri_console.models.logs import LogEntry


async def test_retention_deletes_old_entries_and_keeps_index(console: Any, admin: str) -> None:
    inst = await console.register(admin, "retained")
    await insert_entries(console.rt, [LogLine(inst["id"], f"ancient needle {i}") for i in range(7)])
    clock.advance(15 * 86_400)
    await insert_entries(console.rt, [LogLine(inst["id"], "fresh needle")])
    deleted = await console.rt.loops.run_once("logs-retention")
    assert deleted == 7
    async with console.rt.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(LogEntry)) == 1
        if console.rt.db.dialect.name == "sqlite":
            await s.execute(text("INSERT INTO log_entry_fts(log_entry_fts, rank) VALUES ('integrity-check', 1)"))
    r = await console.client.get(f"{API}/logs", params={"search": "needle"}, headers=console.auth(admin))
    assert [e["message"] for e in r.json()["data"]] == ["fresh needle"]
    assert await console.rt.loops.run_once("logs-retention") == 0


async def test_search_index_work_is_flushed_by_its_own_loop(console: Any, admin: str) -> None:
    rt = console.rt
    loops = [spec.name for spec in rt.loops.specs]
    if not rt.db.dialect.defers_log_index_work:
        # FTS5 merges inside the inserting statement: nothing is left for a loop
        assert SEARCH_INDEX_LOOP not in loops
        return
    assert SEARCH_INDEX_LOOP in loops
    inst = await console.register(admin, "indexed")
    r = await batch(console, admin, [{"instanceId": inst["id"], "level": "INFO", "source": "APP",
                                       "message": f"pending needle {i}"} for i in range(40)])
    assert r.status_code == 201
    # the new rows sit in the GIN pending list until the loop moves them into the index
    assert await rt.loops.run_once(SEARCH_INDEX_LOOP) > 0
    assert await rt.loops.run_once(SEARCH_INDEX_LOOP) == 0
    r = await console.client.get(f"{API}/logs", params={"search": "PENDING needle"}, headers=console.auth(admin))
    assert r.json()["pagination"]["total"] == 40
    # another replica flushing: this one steps aside instead of waiting on the index
    await batch(console, admin, [{"instanceId": inst["id"], "level": "INFO", "source": "APP",
                                       "message": "late needle"}])
    async with rt.db.write() as other:
        await other.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": rt.db.dialect.LOG_INDEX_LOCK})
        assert await rt.loops.run_once(SEARCH_INDEX_LOOP) == 0
    assert await rt.loops.run_once(SEARCH_INDEX_LOOP) > 0


async def test_search_index_flush_by_a_role_that_does_not_own_the_index_is_a_no_op(console: Any) -> None:
    rt = console.rt
    if not rt.db.dialect.defers_log_index_work:
        assert await rt.db.dialect.flush_log_search_index(None) == 0  # type: ignore[arg-type]
        return
    async with rt.db.write() as s:
        await s.execute(text("DO $$ BEGIN CREATE ROLE sindri_console_reader NOLOGIN; "
                             "EXCEPTION WHEN duplicate_object THEN NULL; END $$"))
    async with rt.db.write() as s:
        await s.execute(text("SET LOCAL ROLE sindri_console_reader"))
        # gin_clean_pending_list would raise for a non-owner; the flush steps aside instead
        assert await rt.db.dialect.flush_log_search_index(s) == 0
