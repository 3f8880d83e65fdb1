"""The writers other domains call: agent log frames (40 §4.7) and `insert_entries` (deployments)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from sindri_console.domains.logs.service import LogLine, ingest_agent_lines, insert_entries
from sindri_console.kit.clock import clock
from sindri_console.models.logs import LogEntry


async def _rows(console: Any, instance_id: str) -> list[LogEntry]:
    async with console.rt.db.read() as s:
        return list((await s.scalars(select(LogEntry).where(LogEntry.instance_id == instance_id)
                                     .order_by(LogEntry.seq))).all())


async def test_agent_batch_lenient_mapping_one_publish(console: Any, admin: str) -> None:
    inst = await console.register(admin, "agent-logs")
    sub = await console.rt.bus.subscribe(f"instance.{inst['id']}.logs")
    lines = [
        {"message": "disk almost full", "level": "Warning", "source": "app:web"},
        {"line": "x" * 10_050, "level": "loud", "source": "kernel", "path": "/var/log/own.log"},
        {"message": "nul\x00byte", "level": "emerg", "timestamp": "2026-01-01T00:00:00Z"},
        {"message": "", "ts": clock.now_ms() - 1000, "metadata": {"k": "v"}},
        "not an object",
    ]
    stored = await ingest_agent_lines(console.rt, inst["id"], lines, batch_path="/var/log/app.log")
    assert stored == 4
    rows = await _rows(console, inst["id"])
    assert [(r.level, r.source) for r in rows] == [("WARN", "APP"), ("INFO", "AGENT"), ("ERROR", "AGENT"),
                                                   ("INFO", "AGENT")]
    assert rows[0].path == "/var/log/app.log" and rows[0].metadata_ == {"path": "/var/log/app.log"}
    assert len(rows[1].message) == 10_000
    assert rows[1].metadata_ == {"truncated": True, "path": "/var/log/own.log"}
    assert rows[2].message == "nul\ufffdbyte"
    # a timestamp outside [now - 7 d, now + 5 min] is replaced by the receive time
    assert abs(rows[2].ts_ms - rows[2].received_ms) < 1000
    assert rows[3].message == "" and rows[3].metadata_ == {"k": "v", "path": "/var/log/app.log"}
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    topic, payload = await asyncio.wait_for(sub.get(), 5)
    assert topic == f"instance.{inst['id']}.logs"
    assert payload["instanceId"] == inst["id"]
    assert [e["seq"] for e in payload["entries"]] == [r.seq for r in rows]
    await asyncio.sleep(0.2)
    assert sub.queue.empty()
    await sub.close()


async def test_insert_entries_in_callers_transaction(console: Any, admin: str) -> None:
    inst = await console.register(admin, "deploy-logs")
    async with console.rt.db.write() as s:
        out = await insert_entries(s, [LogLine(inst["id"], "step 1", level="INFO", source="BUILD",
                                               deployment_id="dep-1"),
                                       LogLine(inst["id"], "done", source="SYSTEM", deployment_id="dep-1")])
    assert [e["source"] for e in out] == ["BUILD", "SYSTEM"]
    assert out[1]["seq"] == out[0]["seq"] + 1
    rows = await _rows(console, inst["id"])
    assert [(r.message, r.deployment_id) for r in rows] == [("step 1", "dep-1"), ("done", "dep-1")]
    # a rolled-back transaction leaves nothing behind
    try:
        async with console.rt.db.write() as s:
            await insert_entries(s, [LogLine(inst["id"], "never")])
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    assert len(await _rows(console, inst["id"])) == 2
