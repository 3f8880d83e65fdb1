"""Start-up of the commands domain: the waiter distributor, the removal hook, the command sweeper
(40 §6.5, §13) and the commands task of the retention loop (20-ops §11.2)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.dialect import table_of
from sindri_console.domains.commands import pipeline
from sindri_console.domains.commands import repository as repo
from sindri_console.domains.commands.state import (
    ACTIVE_STATUSES,
    CANCELLED,
    QUEUED,
    RUNNING,
    SENT,
    TERMINAL_STATUSES,
    TIMED_OUT,
    transition_many,
)
from sindri_console.domains.commands.waiters import CommandWaiters
from sindri_console.domains.commands.writer import CommandWriter
from sindri_console.domains.instances.removal import on_removal
from sindri_console.kit.clock import utcnow
from sindri_console.loops.base import LoopSpec
from sindri_console.loops.retention import delete_expired, register_retention
from sindri_console.models.commands import CommandExecution
from sindri_console.runtime import Runtime

log = structlog.get_logger("sindri_console.commands")

EXPIRED_MESSAGE = "The agent did not take the command before it expired"
NO_RESULT_MESSAGE = "The agent did not report a result in time"
REDRIVE_AFTER_SECONDS = 5
REPLY_LINGER_SECONDS = 0.002


async def cancel_on_removal(session: AsyncSession, instance_id: str, status: str, now: datetime) -> None:
    """QUEUED/SENT/RUNNING commands of a destroyed or deregistered instance → CANCELLED (20-ops §6.2)."""
    ids = await repo.active_ids_of_instance(session, instance_id, ACTIVE_STATUSES)
    message = "Instance destroyed" if status == "DESTROYED" else "Instance deregistered"
    await transition_many(session, ids, allowed_from=ACTIVE_STATUSES, to=CANCELLED, now=now,
                          values={"error_code": "INSTANCE_REMOVED", "error": message})


async def sweep(rt: Runtime) -> dict[str, int]:
    """One sweeper tick: expire undelivered rows, time out rows without a result (and cancel them on
    the agent), re-drive QUEUED rows whose agent is connected."""
    now = utcnow()
    async with rt.db.write() as s:
        expired = await transition_many(
            s, await repo.expired_ids(s, now), allowed_from=(QUEUED, SENT), to=TIMED_OUT, now=now,
            extra_where=(CommandExecution.expires_at <= now,),
            values={"error_code": "EXPIRED", "error": EXPIRED_MESSAGE})
    async with rt.db.write() as s:
        late = await repo.overdue(s, now)
        overdue = await transition_many(
            s, [r.id for r in late], allowed_from=(SENT, RUNNING), to=TIMED_OUT, now=now,
            extra_where=(CommandExecution.result_deadline_at <= now,),
            values={"error_code": "NO_RESULT", "error": NO_RESULT_MESSAGE})
    for row in overdue:
        await pipeline.request_cancel(rt, row.instance_id, row.id, NO_RESULT_MESSAGE)
    async with rt.db.read() as s:
        waiting = await repo.undelivered(s, now, REDRIVE_AFTER_SECONDS)
    for row in waiting:
        await pipeline.request_delivery(rt, row.instance_id, row.id)
    counts = {"expired": len(expired), "noResult": len(overdue), "redriven": len(waiting)}
    if any(counts.values()):
        log.info("command_sweep", **counts)
    return counts


async def purge_batch(rt: Runtime, batch: int) -> int:
    """Retention task (20-ops §11.2): one batch of terminal commands completed more than
    COMMAND_RETENTION_DAYS ago that no task run or remediation references."""
    cutoff = utcnow() - timedelta(days=rt.settings.COMMAND_RETENTION_DAYS)
    expired = and_(CommandExecution.status.in_(TERMINAL_STATUSES), CommandExecution.completed_at < cutoff,
                   CommandExecution.task_run_id.is_(None), CommandExecution.remediation_id.is_(None))
    return await delete_expired(rt.db, table_of(CommandExecution), expired, batch)


async def startup(rt: Runtime) -> None:
    waiters = CommandWaiters(rt.bus)
    await waiters.start()
    rt.services["command_waiters"] = waiters
    writer = CommandWriter(rt.db)
    writer.start()
    rt.services["command_writer"] = writer
    reply_writer = CommandWriter(rt.db, pipeline.apply_replies, linger=REPLY_LINGER_SECONDS)
    reply_writer.start()
    rt.services["command_reply_writer"] = reply_writer
    on_removal(cancel_on_removal)

    async def sweep_tick() -> Any:
        return await sweep(rt)

    rt.loops.add(LoopSpec("command-sweeper", rt.settings.COMMAND_SWEEP_SECONDS, sweep_tick, lease="command-sweeper"))
    register_retention("command_executions", purge_batch)


async def shutdown(rt: Runtime) -> None:
    await pipeline.shutdown()
    for name in ("command_reply_writer", "command_writer"):
        writer = rt.services.pop(name, None)
        if writer is not None:
            await writer.stop()
    waiters = rt.services.pop("command_waiters", None)
    if waiters is not None:
        await waiters.stop()
