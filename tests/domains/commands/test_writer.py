"""The group-commit writer: batching, per-item results, and isolation of a failing item."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select, update

from sindri_console.domains.commands.writer import CommandWriter
from sindri_console.models.commands import CommandExecution

from .conftest import connect_fake


async def test_burst_is_committed_in_few_batches_and_a_bad_item_fails_alone(console: Any, admin: str) -> None:
    inst = await console.register(admin, "box")
    await connect_fake(console, inst["id"])
    ids = []
    for _ in range(20):
        r = await console.client.post("/api/v1/commands", json={"instanceId": inst["id"], "command": "x",
                                                                "wait": False}, headers=console.auth(admin))
        ids.append(r.json()["id"])
    writer = CommandWriter(console.rt.db)
    writer.start()
    try:
        def mark(cid: str) -> Any:
            async def work(s: Any) -> str:
                await s.execute(update(CommandExecution).where(CommandExecution.id == cid).values(pid=7))
                return cid
            return work

        async def broken(s: Any) -> None:
            await s.execute(update(CommandExecution).where(CommandExecution.id == ids[0]).values(pid=99))
            raise RuntimeError("bad item")

        tasks = [asyncio.create_task(writer.run(mark(cid))) for cid in ids[1:]]
        bad = asyncio.create_task(writer.run(broken))
        assert await asyncio.gather(*tasks) == ids[1:]
        with pytest.raises(RuntimeError):
            await bad
        assert writer.batches < len(ids)  # grouped, not one commit per item
    finally:
        await writer.stop()
    async with console.rt.db.read() as s:
        pids = dict((await s.execute(select(CommandExecution.id, CommandExecution.pid))).all())
    assert pids[ids[0]] is None  # the failing item's write was rolled back
    assert all(pids[cid] == 7 for cid in ids[1:])
