"""The command state machine (20-ops §6.2, 40 §6.3): every transition is a compare-and-set update.

`QUEUED → SENT → RUNNING → SUCCEEDED | FAILED | TIMED_OUT | CANCELLED`. A transition that finds the
row in another state changes nothing, so two replicas (or a late agent reply and the sweeper) can
never both apply one. The update that makes a row terminal also clears its encrypted env values
and stdin. `command.<id>` and `instance.<id>.commands` are published after commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.engine import publish_after_commit
from sindri_console.kit.clock import to_iso, utcnow
from sindri_console.models.commands import CommandExecution

QUEUED, SENT, RUNNING = "QUEUED", "SENT", "RUNNING"
SUCCEEDED, FAILED, TIMED_OUT, CANCELLED = "SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED"
ACTIVE_STATUSES = (QUEUED, SENT, RUNNING)
TERMINAL_STATUSES = (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED)
ALL_STATUSES = ACTIVE_STATUSES + TERMINAL_STATUSES
ORIGINS = ("API", "BULK", "SCRIPT", "TASK", "REMEDIATION")
MODES = ("SHELL", "EXEC", "SCRIPT")
ERROR_CODES = ("EXIT_CODE", "TIMEOUT", "EXPIRED", "NO_RESULT", "AGENT_RESTARTED", "AGENT_ERROR", "DISABLED",
               "BAD_WORKDIR", "BUSY", "CANCELLED", "INSTANCE_REMOVED")

_RETURNED = (CommandExecution.id, CommandExecution.instance_id, CommandExecution.status,
             CommandExecution.exit_code, CommandExecution.started_at, CommandExecution.completed_at)


def status_message(command_id: str, instance_id: str, status: str, exit_code: int | None,
                   started_at: datetime | None, completed_at: datetime | None) -> dict[str, Any]:
    """The bus payload of a transition (40 §6.3)."""
    return {"commandId": command_id, "instanceId": instance_id, "status": status, "exitCode": exit_code,
            "startedAt": to_iso(started_at), "completedAt": to_iso(completed_at)}


def publish_message(session: AsyncSession, msg: dict[str, Any]) -> None:
    """Queue a status message on `command.<id>` and `instance.<id>.commands` for after the commit."""
    publish_after_commit(session, f"command.{msg['commandId']}", msg)
    publish_after_commit(session, f"instance.{msg['instanceId']}.commands", msg)


def publish_status(session: AsyncSession, row: Any) -> None:
    publish_message(session, status_message(row.id, row.instance_id, row.status, row.exit_code, row.started_at,
                                            row.completed_at))


def _values(to: str, values: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    vals = dict(values or {})
    vals["status"] = to
    if to in TERMINAL_STATUSES:
        vals.setdefault("completed_at", now)
        vals["env_values"] = None
        vals["stdin"] = None
    return vals


async def transition(
    session: AsyncSession,
    command_id: str,
    *,
    allowed_from: tuple[str, ...],
    to: str,
    values: dict[str, Any] | None = None,
    instance_id: str | None = None,
    extra_where: Iterable[Any] = (),
    now: datetime | None = None,
) -> Any | None:
    """Compare-and-set one row; returns (id, instance_id, status, exit_code, started_at, completed_at)
    after the update, or None when the row was not in `allowed_from` (or not of `instance_id`)."""
    now = now or utcnow()
    stmt = update(CommandExecution).where(CommandExecution.id == command_id,
                                          CommandExecution.status.in_(allowed_from), *extra_where)
    if instance_id is not None:
        stmt = stmt.where(CommandExecution.instance_id == instance_id)
    row = (await session.execute(
        stmt.values(**_values(to, values, now)).returning(*_RETURNED)
        .execution_options(synchronize_session=False)
    )).first()
    if row is not None:
        publish_status(session, row)
    return row


async def transition_many(
    session: AsyncSession,
    ids: list[str],
    *,
    allowed_from: tuple[str, ...],
    to: str,
    values: dict[str, Any] | None = None,
    extra_where: Iterable[Any] = (),
    now: datetime | None = None,
) -> list[Any]:
    """The same compare-and-set for many rows at once (sweeper, instance removal)."""
    if not ids:
        return []
    now = now or utcnow()
    stmt = (update(CommandExecution)
            .where(CommandExecution.id.in_(ids), CommandExecution.status.in_(allowed_from), *extra_where)
            .values(**_values(to, values, now)).returning(*_RETURNED)
            .execution_options(synchronize_session=False))
    rows = list((await session.execute(stmt)).all())
    for row in rows:
        publish_status(session, row)
    return rows
