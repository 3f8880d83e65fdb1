"""Per-process distributor of `command.<id>` messages to waiting HTTP requests (20-ops §6.4).

One bus subscription (`command.*`) per replica fans out to the requests that wait on given ids, so a
waiting request costs no bus subscription of its own. A lost or dropped message only delays a waiter
until its 500 ms database re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import structlog

from sindri_console.bus import Bus
from sindri_console.bus.base import Subscription
from sindri_console.domains.commands.state import TERMINAL_STATUSES

log = structlog.get_logger("sindri_console.commands")


class Watch:
    """What one waiting request learns from the bus: ids seen terminal, and a wake-up event."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids
        self.terminal: set[str] = set()
        self.changed = asyncio.Event()


class CommandWaiters:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._watches: dict[str, set[Watch]] = {}
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sub = await self.bus.subscribe("command.*", maxsize=100_000)
        self._task = asyncio.create_task(self._run(), name="command-waiters")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._sub is not None:
            await self._sub.close()

    async def _run(self) -> None:
        assert self._sub is not None
        while True:
            _topic, payload = await self._sub.get()
            try:
                self._offer(payload)
            except Exception as exc:  # a malformed message must not stop the distributor
                log.warning("command_waiter_message_ignored", error=type(exc).__name__)

    def _offer(self, payload: dict[str, Any]) -> None:
        command_id = payload.get("commandId")
        watches = self._watches.get(command_id) if isinstance(command_id, str) else None
        if not watches:
            return
        status = payload.get("status")
        for w in list(watches):
            if status in TERMINAL_STATUSES:
                w.terminal.add(command_id)  # type: ignore[arg-type]
            if status is not None:
                w.changed.set()

    @contextlib.contextmanager
    def watch(self, ids: list[str]) -> Iterator[Watch]:
        """Register interest in `ids` (before the rows are committed, so nothing is missed)."""
        w = Watch(set(ids))
        for cid in w.ids:
            self._watches.setdefault(cid, set()).add(w)
        try:
            yield w
        finally:
            for cid in w.ids:
                group = self._watches.get(cid)
                if group is not None:
                    group.discard(w)
                    if not group:
                        del self._watches[cid]
