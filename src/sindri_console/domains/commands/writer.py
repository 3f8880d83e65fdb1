"""Group commit for the pipeline's small writes (delivery, acks, results).

Work items queued while a transaction is committing are run together in the next one, so a burst
(a bulk command to 500 agents, 500 acks, 500 results) costs a handful of commits instead of one per
frame, while a lone item is committed at once (no batching window, no added latency). When a batch
fails, its items are retried one by one so one bad item cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.engine import Database

log = structlog.get_logger("sindri_console.commands")

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[Any]]
BatchHandler = Callable[[AsyncSession, list[Any]], Awaitable[list[Any]]]
MAX_BATCH = 250


async def run_works(session: AsyncSession, works: list[Work]) -> list[Any]:
    """The default handler: each item is a `work(session)` function, run in order."""
    return [await work(session) for work in works]


class CommandWriter:
    """Items queued with `run` are handed in batches to `handler(session, items)` (one transaction per
    batch), which returns one result per item; a handler can then treat the batch set-wise."""

    def __init__(self, db: Database, handler: BatchHandler = run_works, linger: float = 0.0) -> None:
        self.db = db
        self.handler = handler
        # a lone item waits this long for company (an agent's ack is followed by its result at once)
        self.linger = linger
        self._queue: list[tuple[Any, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="command-writer")

    async def stop(self) -> None:
        if self._task is None:
            return
        for _ in range(100):  # let queued work finish (bounded)
            if not self._queue:
                break
            await asyncio.sleep(0.05)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._task = None
        for _, fut in self._queue:
            if not fut.done():
                fut.set_exception(ConnectionError("the command writer stopped"))
        self._queue.clear()

    async def run(self, item: Any) -> Any:
        """Queue one item; returns the handler's result for it after the batch committed."""
        if self._task is None:  # not started (e.g. during shutdown): a transaction of its own
            async with self.db.write() as s:
                return (await self.handler(s, [item]))[0]
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.linger and len(self._queue) == 1:
                await asyncio.sleep(self.linger)
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            async with self.db.write() as s:
                results = await self.handler(s, [item for item, _ in batch])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            log.warning("command_batch_retried_singly", size=len(batch), error=type(exc).__name__)
            for item in batch:
                await self._commit([item])
            return
        self.batches += 1
        self.items += len(batch)
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)
