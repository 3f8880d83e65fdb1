"""Log retention (10-core §10, §16.2): old entries go, the search index follows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from tests.domains.logs.helpers import API

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
