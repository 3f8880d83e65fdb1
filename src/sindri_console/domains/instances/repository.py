"""SQL of the instance registry."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.kit.auth import Principal
from sindri_console.kit.scope import visible_instances
from sindri_console.models.agent import AgentState
from sindri_console.models.instance import Heartbeat, Instance

REMOVED = ("DESTROYED", "DEREGISTERED")


def live() -> ColumnElement[bool]:
    return Instance.status.not_in(REMOVED)


async def find_live_by_name(session: AsyncSession, name: str) -> Instance | None:
    return await session.scalar(select(Instance).where(Instance.name == name, live()))


async def resolve_identities(session: AsyncSession, values: list[str]) -> dict[str, str]:
    """40 §2.4 resolve() for many values at once: value -> live instance id, looked up by id, then
    agent identity (newest instance first), then name, then normalised name. Unresolved values are
    left out. At most four queries, whatever the number of values."""
    from sindri_console.domains.instances.schemas import normalise_name

    found: dict[str, str] = {}
    rest = list(dict.fromkeys(v for v in values if v))
    if rest:
        ids = await session.scalars(select(Instance.id).where(Instance.id.in_(rest), live()))
        found.update({i: i for i in ids})
        rest = [v for v in rest if v not in found]
    if rest:
        rows = await session.execute(
            select(AgentState.agent_instance_id, Instance.id).join(Instance, AgentState.instance_id == Instance.id)
            .where(AgentState.agent_instance_id.in_(rest), live()).order_by(Instance.created_at.desc()))
        for ident, iid in rows:
            if ident is not None:
                found.setdefault(ident, iid)
        rest = [v for v in rest if v not in found]
    if rest:
        rows = await session.execute(select(Instance.name, Instance.id).where(Instance.name.in_(rest), live()))
        found.update({name: iid for name, iid in rows.tuples() if name is not None})
        rest = [v for v in rest if v not in found]
    normalised = {v: n for v in rest if (n := normalise_name(v)) and n != v}
    if normalised:
        rows = await session.execute(
            select(Instance.name, Instance.id).where(Instance.name.in_(set(normalised.values())), live()))
        by_name = {name: iid for name, iid in rows.tuples() if name is not None}
        found.update({v: by_name[n] for v, n in normalised.items() if n in by_name})
    return found


async def resolve_identity(session: AsyncSession, value: str) -> Instance | None:
    """40 §2.4 resolve() of one value, as the instance."""
    iid = (await resolve_identities(session, [value])).get(value)
    return await session.get(Instance, iid) if iid else None


async def agent_states(session: AsyncSession, ids: list[str]) -> dict[str, AgentState]:
    if not ids:
        return {}
    rows = await session.scalars(select(AgentState).where(AgentState.instance_id.in_(ids)))
    return {r.instance_id: r for r in rows}


async def latest_heartbeat(session: AsyncSession, instance_id: str) -> Heartbeat | None:
    return await session.scalar(
        select(Heartbeat).where(Heartbeat.instance_id == instance_id)
        .order_by(Heartbeat.timestamp.desc(), Heartbeat.id.desc()).limit(1)
    )


def list_statement(principal: Principal, *, statuses: list[str] | None, include_removed: bool,
                   providers: list[str] | None, regions: list[str] | None, team_id: str | None,
                   search: str | None, agent_connected: bool | None, sort: str,
                   icontains: Any) -> Select[Any]:
    stmt = select(Instance).where(visible_instances(principal))
    if statuses:
        stmt = stmt.where(Instance.status.in_(statuses))
    elif not include_removed:
        stmt = stmt.where(live())
    if providers:
        stmt = stmt.where(Instance.provider.in_(providers))
    if regions:
        stmt = stmt.where(func.lower(Instance.region).in_([r.lower() for r in regions]))
    if team_id is not None:
        stmt = stmt.where(Instance.team_id.is_(None) if team_id == "none" else Instance.team_id == team_id)
    if search:
        stmt = stmt.where(or_(icontains(Instance.name, search), icontains(Instance.region, search),
                              Instance.id == search))
    needs_agent = agent_connected is not None or sort in ("-lastSeenAt", "lastSeenAt")
    if needs_agent:
        stmt = stmt.outerjoin(AgentState, AgentState.instance_id == Instance.id)
    if agent_connected is True:
        stmt = stmt.where(AgentState.connected.is_(True))
    elif agent_connected is False:
        stmt = stmt.where(or_(AgentState.connected.is_(None), AgentState.connected.is_(False)))
    order: list[Any]
    if sort == "createdAt":
        order = [Instance.created_at.asc(), Instance.id.asc()]
    elif sort == "name":
        order = [Instance.name.asc(), Instance.id.asc()]
    elif sort == "-name":
        order = [Instance.name.desc(), Instance.id.desc()]
    elif sort == "status":
        order = [Instance.status.asc(), Instance.id.asc()]
    elif sort == "-lastSeenAt":
        order = [AgentState.last_seen_at.is_(None), AgentState.last_seen_at.desc(), Instance.id.desc()]
    elif sort == "lastSeenAt":
        order = [AgentState.last_seen_at.is_(None), AgentState.last_seen_at.asc(), Instance.id.asc()]
    else:
        order = [Instance.created_at.desc(), Instance.id.desc()]
    return stmt.order_by(*order)
