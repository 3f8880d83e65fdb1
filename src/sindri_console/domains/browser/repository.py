"""SQL of the browser socket: instance → team lookups for scope, and a command's instance."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.base import Base
from sindri_console.kit.auth import Principal
from sindri_console.kit.scope import visible_instances
from sindri_console.models.instance import Instance

# 20-ops §6.1; the table comes with the commands domain, looked up by name so this one does not import it
COMMAND_TABLE = "command_executions"


async def instance_teams(session: AsyncSession, ids: list[str] | None = None) -> dict[str, str | None]:
    """instance id -> team id (None = no team), for every instance or for the given ids."""
    stmt = select(Instance.id, Instance.team_id)
    if ids is not None:
        stmt = stmt.where(Instance.id.in_(ids))
    return {iid: team for iid, team in (await session.execute(stmt)).all()}


async def visible_instance_team(session: AsyncSession, principal: Principal,
                                instance_id: str) -> tuple[bool, str | None]:
    """(found, team id) for an instance in the principal's scope; (False, None) when absent or out of scope."""
    row = (await session.execute(
        select(Instance.id, Instance.team_id).where(Instance.id == instance_id, visible_instances(principal))
    )).first()
    return (False, None) if row is None else (True, row[1])


async def command_instance(session: AsyncSession, command_id: str) -> str | None:
    """The instance a command belongs to, or None when no such command exists (or commands are not installed)."""
    table = Base.metadata.tables.get(COMMAND_TABLE)
    if table is None:
        return None
    return await session.scalar(select(table.c.instance_id).where(table.c.id == command_id))
