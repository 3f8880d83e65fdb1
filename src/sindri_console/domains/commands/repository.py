"""SQL of the commands domain."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.dialect import table_of
from sindri_console.domains.commands.state import QUEUED, SENT
from sindri_console.kit.auth import Principal
from sindri_console.kit.ids import is_valid_path_id
from sindri_console.kit.scope import visible_instances
from sindri_console.models.agent import AgentState
from sindri_console.models.commands import CommandExecution
from sindri_console.models.instance import Instance

SWEEP_BATCH = 1000


async def agent_states(session: AsyncSession, ids: list[str]) -> dict[str, AgentState]:
    if not ids:
        return {}
    rows = await session.scalars(select(AgentState).where(AgentState.instance_id.in_(ids)))
    return {r.instance_id: r for r in rows}


async def visible_instances_by_id(session: AsyncSession, principal: Principal,
                                  ids: list[str]) -> dict[str, Instance]:
    if not ids:
        return {}
    rows = await session.scalars(select(Instance).where(Instance.id.in_(ids), visible_instances(principal)))
    return {r.id: r for r in rows}


async def get_visible(session: AsyncSession, principal: Principal, command_id: str) -> tuple[Any, str] | None:
    """(row, instance name) when the command exists and its instance is in the caller's scope."""
    row = (await session.execute(
        select(CommandExecution, Instance.name).join(Instance, Instance.id == CommandExecution.instance_id)
        .where(CommandExecution.id == command_id, visible_instances(principal))
    )).first()
    return (row[0], row[1]) if row else None


async def rows_with_names(session: AsyncSession, ids: list[str]) -> dict[str, tuple[CommandExecution, str]]:
    if not ids:
        return {}
    rows = await session.execute(
        select(CommandExecution, Instance.name).join(Instance, Instance.id == CommandExecution.instance_id)
        .where(CommandExecution.id.in_(ids))
    )
    return {r[0].id: (r[0], r[1]) for r in rows}


async def statuses(session: AsyncSession, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = await session.execute(select(CommandExecution.id, CommandExecution.status)
                                 .where(CommandExecution.id.in_(ids)))
    return {r.id: r.status for r in rows}


def history_statement(principal: Principal, *, instance_id: str | None, user_id: str | None,
                      batch_id: str | None, task_run_id: str | None, remediation_id: str | None,
                      statuses: list[str] | None, origins: list[str] | None, created_from: datetime | None,
                      created_to: datetime | None, search: str | None,
                      icontains: Any) -> Select[CommandExecution, str]:
    stmt = (select(CommandExecution, Instance.name)
            .join(Instance, Instance.id == CommandExecution.instance_id)
            .where(visible_instances(principal)))
    for column, value in ((CommandExecution.instance_id, instance_id), (CommandExecution.user_id, user_id),
                          (CommandExecution.batch_id, batch_id), (CommandExecution.task_run_id, task_run_id),
                          (CommandExecution.remediation_id, remediation_id)):
        if value is not None:
            # ids are [A-Za-z0-9_-]: anything else matches nothing (and never reaches the database)
            stmt = stmt.where(column == value if is_valid_path_id(value) else false())
    if statuses:
        stmt = stmt.where(CommandExecution.status.in_(statuses))
    if origins:
        stmt = stmt.where(CommandExecution.origin.in_(origins))
    if created_from is not None:
        stmt = stmt.where(CommandExecution.created_at >= created_from)
    if created_to is not None:
        stmt = stmt.where(CommandExecution.created_at <= created_to)
    if search:
        stmt = stmt.where(or_(icontains(CommandExecution.command, search),
                              icontains(CommandExecution.interpreter, search)))
    return stmt.order_by(CommandExecution.created_at.desc(), CommandExecution.id.desc())


# ---- pipeline ----------------------------------------------------------------------------------


async def fresh_row(session: AsyncSession, command_id: str) -> CommandExecution | None:
    """The row as stored now, even when the session already holds an older copy of it."""
    return (await session.execute(select(CommandExecution).where(CommandExecution.id == command_id)
                                  .execution_options(populate_existing=True))).scalar_one_or_none()


async def status_of(session: AsyncSession, command_id: str, instance_id: str) -> str | None:
    return await session.scalar(select(CommandExecution.status).where(
        CommandExecution.id == command_id, CommandExecution.instance_id == instance_id))


async def deliverable_ids(session: AsyncSession, instance_id: str, now: datetime) -> list[str]:
    """QUEUED and unacknowledged SENT rows of an instance that have not expired, oldest first."""
    return list((await session.scalars(
        select(CommandExecution.id)
        .where(CommandExecution.instance_id == instance_id, CommandExecution.status.in_((QUEUED, SENT)),
               CommandExecution.expires_at > now)
        .order_by(CommandExecution.created_at, CommandExecution.id)
    )).all())


async def rows_for_reply(session: AsyncSession, ids: list[str]) -> dict[str, Any]:
    """What applying agent replies needs of each row, locked until the transaction ends (PostgreSQL)."""
    rows = await session.execute(
        select(CommandExecution.id, CommandExecution.instance_id, CommandExecution.status,
               CommandExecution.output_limit_bytes, CommandExecution.started_at, CommandExecution.exit_code,
               CommandExecution.completed_at)
        .where(CommandExecution.id.in_(ids)).with_for_update()
    )
    return {r.id: r for r in rows.all()}


async def update_from(session: AsyncSession, changes: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """id -> (expected status, column values): compare-and-set updates, one executemany per column set."""
    table = table_of(CommandExecution)
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for cid, (expected, values) in changes.items():
        by_shape.setdefault(tuple(sorted(values)), []).append(
            {"b_id": cid, "b_expected": expected, **{f"v_{k}": v for k, v in values.items()}})
    for shape, params in by_shape.items():
        stmt = (table.update()
                .where(table.c.id == bindparam("b_id"), table.c.status == bindparam("b_expected"))
                .values({k: bindparam(f"v_{k}", type_=table.c[k].type) for k in shape}))
        await session.execute(stmt, params)


# ---- sweeper and retention ---------------------------------------------------------------------


async def expired_ids(session: AsyncSession, now: datetime) -> list[str]:
    """QUEUED or unacknowledged SENT rows past `expires_at`."""
    return list((await session.scalars(
        select(CommandExecution.id).where(CommandExecution.status.in_((QUEUED, SENT)),
                                          CommandExecution.expires_at <= now)
        .order_by(CommandExecution.expires_at).limit(SWEEP_BATCH)
    )).all())


async def overdue(session: AsyncSession, now: datetime) -> list[Any]:
    """(id, instance_id) of SENT/RUNNING rows past sent_at + timeoutMs + grace."""
    return list((await session.execute(
        select(CommandExecution.id, CommandExecution.instance_id)
        .where(CommandExecution.status.in_((SENT, "RUNNING")), CommandExecution.result_deadline_at <= now)
        .order_by(CommandExecution.result_deadline_at).limit(SWEEP_BATCH)
    )).all())


async def undelivered(session: AsyncSession, now: datetime, min_age_seconds: float) -> list[Any]:
    """(id, instance_id) of QUEUED rows older than `min_age_seconds` whose agent is connected."""
    return list((await session.execute(
        select(CommandExecution.id, CommandExecution.instance_id)
        .join(AgentState, AgentState.instance_id == CommandExecution.instance_id)
        .where(CommandExecution.status == QUEUED, AgentState.connected.is_(True),
               CommandExecution.created_at <= now - timedelta(seconds=min_age_seconds),
               CommandExecution.expires_at > now)
        .order_by(CommandExecution.created_at).limit(SWEEP_BATCH)
    )).all())


async def active_ids_of_instance(session: AsyncSession, instance_id: str, active: tuple[str, ...]) -> list[str]:
    return list((await session.scalars(
        select(CommandExecution.id).where(CommandExecution.instance_id == instance_id,
                                          CommandExecution.status.in_(active))
    )).all())
