"""Background loops: registered in one place, each with a cadence, a per-tick timeout and a guard.

Every replica runs every loop. A loop guarded by a lease does its work only while this replica
holds the lease row; other loops rely on claims and compare-and-set updates in their own SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete, or_, select

from sindri_console.db.engine import Database
from sindri_console.kit.clock import utcnow
from sindri_console.models.lease import Lease, Replica

log = structlog.get_logger("sindri_console.loops")


async def try_acquire_lease(db: Database, name: str, holder: str, ttl_seconds: float) -> bool:
    """Take or renew the lease `name`; True when `holder` holds it afterwards."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl_seconds)
    table = Lease.__table__
    stmt = db.dialect.insert(table).values(name=name, holder=holder, expires_at=expires)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={"holder": holder, "expires_at": expires},
        where=or_(table.c.holder == holder, table.c.expires_at < now),
    )
    async with db.write() as s:
        await s.execute(stmt)
        current = await s.scalar(select(Lease.holder).where(Lease.name == name))
    return current == holder


async def release_lease(db: Database, name: str, holder: str) -> None:
    async with db.write() as s:
        await s.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))


TickFn = Callable[[], Awaitable[Any]]


@dataclass
class LoopSpec:
    name: str
    interval: float
    tick: TickFn
    lease: str | None = None
    lease_ttl: float | None = None
    timeout: float | None = None


class LoopRunner:
    def __init__(self, db: Database, replica_id: str) -> None:
        self.db = db
        self.replica_id = replica_id
        self.specs: list[LoopSpec] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: dict[str, asyncio.Event] = {}

    def add(self, spec: LoopSpec) -> None:
        self.specs.append(spec)
        self._wake[spec.name] = asyncio.Event()

    def wake(self, name: str) -> None:
        ev = self._wake.get(name)
        if ev:
            ev.set()

    def start(self) -> None:
        for spec in self.specs:
            self._tasks.append(asyncio.create_task(self._run(spec), name=f"loop-{spec.name}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        for spec in self.specs:
            if spec.lease:
                with contextlib.suppress(Exception):
                    await release_lease(self.db, spec.lease, self.replica_id)

    async def run_once(self, name: str) -> Any:
        """Run one tick now (tests and manual triggers), honouring the lease."""
        spec = next(s for s in self.specs if s.name == name)
        return await self._tick(spec)

    async def _tick(self, spec: LoopSpec) -> Any:
        if spec.lease:
            ttl = spec.lease_ttl or max(spec.interval * 3, 10)
            if not await try_acquire_lease(self.db, spec.lease, self.replica_id, ttl):
                return None
        timeout = spec.timeout or max(spec.interval * 4, 30)
        return await asyncio.wait_for(spec.tick(), timeout)

    async def _run(self, spec: LoopSpec) -> None:
        wake = self._wake[spec.name]
        while True:
            try:
                result = await self._tick(spec)
                if result:
                    log.debug("loop_tick", loop=spec.name, result=result)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("loop_tick_failed", loop=spec.name, error=type(exc).__name__, detail=str(exc)[:200])
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), spec.interval)


async def replica_heartbeat(db: Database, replica_id: str, started: bool = False) -> None:
    """Upsert this replica's liveness row (40 §0: refreshed every 10 s)."""
    now = utcnow()
    table = Replica.__table__
    stmt = db.dialect.insert(table).values(
        id=replica_id, started_at=now, heartbeat_at=now, hostname=socket.gethostname()[:253], pid=os.getpid()
    )
    stmt = stmt.on_conflict_do_update(index_elements=[table.c.id], set_={"heartbeat_at": now})
    async with db.write() as s:
        await s.execute(stmt)
