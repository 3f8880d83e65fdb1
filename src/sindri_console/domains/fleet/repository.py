"""SQL of the fleet overview (10-core §7.1, §7.2): grouped queries over live in-scope instances."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.base import Base
from sindri_console.kit.auth import Principal
from sindri_console.kit.scope import LIVE_STATUSES, visible_instances
from sindri_console.models.agent import AgentState
from sindri_console.models.instance import Instance
from sindri_console.models.lease import Replica

PIN_INSTANCE_IDS = 20
# a replica whose liveness row is older than this is dead (40 §13 replica-reaper)
REPLICA_STALE_SECONDS = 60
TERMINAL_TABLE = "terminal_session"
OPEN_TERMINAL_STATUSES = ("ACTIVE", "DISCONNECTED")


def in_fleet(principal: Principal) -> ColumnElement[bool]:
    return and_(Instance.status.in_(LIVE_STATUSES), visible_instances(principal))


async def count_by_status(session: AsyncSession, principal: Principal) -> dict[str, int]:
    rows = await session.execute(
        select(Instance.status, func.count()).where(in_fleet(principal)).group_by(Instance.status))
    return {r[0]: int(r[1]) for r in rows}


async def count_by_provider(session: AsyncSession, principal: Principal) -> dict[str | None, int]:
    rows = await session.execute(
        select(Instance.provider, func.count()).where(in_fleet(principal)).group_by(Instance.provider))
    return {r[0]: int(r[1]) for r in rows}


async def count_by_version(session: AsyncSession, principal: Principal) -> dict[str | None, int]:
    rows = await session.execute(
        select(Instance.sindri_version, func.count()).where(in_fleet(principal)).group_by(Instance.sindri_version))
    return {r[0]: int(r[1]) for r in rows}


async def count_agents_connected(session: AsyncSession, principal: Principal) -> int:
    stmt = (select(func.count()).select_from(Instance)
            .join(AgentState, AgentState.instance_id == Instance.id)
            .where(in_fleet(principal), AgentState.connected.is_(True)))
    return int(await session.scalar(stmt) or 0)


async def count_open_terminal_sessions(session: AsyncSession, principal: Principal, now: datetime) -> int:
    """Open terminal sessions on fleet instances whose agent-side replica is alive.

    Terminal sessions are recorded by the agent protocol's `terminal_session` table; when that table
    is not part of this build there are no sessions to count.
    """
    table = Base.metadata.tables.get(TERMINAL_TABLE)
    if table is None:
        return 0
    cols = table.c
    alive = now - timedelta(seconds=REPLICA_STALE_SECONDS)
    stmt = (select(func.count()).select_from(table)
            .join(Instance, Instance.id == cols.instance_id)
            .join(Replica, Replica.id == cols.agent_replica_id)
            .where(in_fleet(principal), cols.status.in_(OPEN_TERMINAL_STATUSES), Replica.heartbeat_at >= alive))
    return int(await session.scalar(stmt) or 0)


async def count_unlocated(session: AsyncSession, principal: Principal) -> int:
    stmt = select(func.count()).select_from(Instance).where(
        in_fleet(principal), (Instance.geo_lat.is_(None)) | (Instance.geo_lon.is_(None)))
    return int(await session.scalar(stmt) or 0)


async def located_groups(session: AsyncSession, principal: Principal) -> list[Any]:
    """Instances with a geo grouped by exact coordinates, region, provider, label and status."""
    stmt = (select(Instance.geo_lat, Instance.geo_lon, Instance.region, Instance.provider, Instance.geo_label,
                   Instance.status, func.count().label("n"))
            .where(in_fleet(principal), Instance.geo_lat.is_not(None), Instance.geo_lon.is_not(None))
            .group_by(Instance.geo_lat, Instance.geo_lon, Instance.region, Instance.provider, Instance.geo_label,
                      Instance.status))
    return list((await session.execute(stmt)).all())


async def located_newest_first(session: AsyncSession, principal: Principal) -> AsyncGenerator[Any, None]:
    """(id, geo_lat, geo_lon) of located fleet instances, newest first, streamed: the caller stops
    reading as soon as every pin has its ids, so usually only a few hundred rows are fetched."""
    stmt = (select(Instance.id, Instance.geo_lat, Instance.geo_lon)
            .where(in_fleet(principal), Instance.geo_lat.is_not(None), Instance.geo_lon.is_not(None))
            .order_by(Instance.created_at.desc(), Instance.id.desc())
            .execution_options(yield_per=500))
    result = await session.stream(stmt)
    try:
        async for row in result:
            yield row
    finally:
        await result.close()
