"""Requests waiting for their job (`wait`, §6.5): one bus subscription per replica, one event per waiter.

Job ends are published on `instance.<id>.jobs` after commit by whichever replica ran the job. A request
registers its job id here and is woken by that message; it still re-reads the database at least once a
second, so a lost or dropped message only costs latency.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any

import structlog

from sindri_console.bus import Bus
from sindri_console.domains.lifecycle.schemas import FINISHED_JOB_STATUSES

log = structlog.get_logger("sindri_console.lifecycle")


class JobWaiters:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sub = await self.bus.subscribe("instance.*.jobs", maxsize=10_000)
        self._task = asyncio.get_running_loop().create_task(self._read(), name="lifecycle-job-waiters")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._sub is not None:
            await self._sub.close()
        for events in self._events.values():
            for event in events:
                event.set()

    async def _read(self) -> None:
        while True:
            _, payload = await self._sub.get()
            if payload.get("status") in FINISHED_JOB_STATUSES:
                for event in self._events.get(str(payload.get("jobId")), ()):
                    event.set()

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Any:
        """An event set when the job is reported finished; registered for the `with` block only."""
        event = asyncio.Event()
        self._events[job_id].add(event)
        try:
            yield event
        finally:
            waiting = self._events.get(job_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._events[job_id]
