"""Log queries (10-core §11.3-§11.6, §12 replay, §16.2 retention). Every statement is bounded."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.dialect import Dialect
from sindri_console.db.engine import Database
from sindri_console.kit.auth import Principal
from sindri_console.kit.pagination import PageParams
from sindri_console.kit.scope import visible_instances
from sindri_console.models.instance import Instance
from sindri_console.models.logs import LogEntry

TOTAL_CAP = 100_000
TOP_INSTANCES = 10


@dataclass(frozen=True)
class LogFilter:
    instance_ids: tuple[str, ...] | None = None
    levels: tuple[str, ...] | None = None
    sources: tuple[str, ...] | None = None
    search: str | None = None
    deployment_id: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None


def in_scope(principal: Principal) -> ColumnElement[bool] | None:
    """Entries of instances the caller sees; None when the caller sees everything (no join needed)."""
    if principal.credential == "bootstrap" or principal.unrestricted:
        return None
    return LogEntry.instance_id.in_(select(Instance.id).where(visible_instances(principal)))


def conditions(dialect: Dialect, principal: Principal, f: LogFilter, *, probe: bool = False
               ) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    scope = in_scope(principal)
    if scope is not None:
        out.append(scope)
    if f.instance_ids is not None:
        out.append(LogEntry.instance_id.in_(f.instance_ids) if len(f.instance_ids) != 1
                   else LogEntry.instance_id == f.instance_ids[0])
    if f.levels:
        out.append(LogEntry.level.in_(f.levels))
    if f.sources:
        out.append(LogEntry.source.in_(f.sources))
    if f.deployment_id is not None:
        out.append(LogEntry.deployment_id == f.deployment_id)
    if f.from_ms is not None:
        out.append(LogEntry.ts_ms >= f.from_ms)
    if f.to_ms is not None:
        out.append(LogEntry.ts_ms <= f.to_ms)
    if f.search:
        out.append(dialect.log_message_search(LogEntry.seq, LogEntry.message, f.search, probe=probe))
    return out


def list_statement(dialect: Dialect, principal: Principal, f: LogFilter, *, probe: bool = False) -> Select[Any]:
    """Newest first: `timestamp` desc, then `seq` desc (10-core §11.3)."""
    return (select(LogEntry).where(*conditions(dialect, principal, f, probe=probe))
            .order_by(LogEntry.ts_ms.desc(), LogEntry.seq.desc()))


async def list_page(db: Database, principal: Principal, f: LogFilter,
                    params: PageParams) -> tuple[list[LogEntry], int, bool]:
    """One page, the total (exact up to TOTAL_CAP) and whether it was capped.

    The count and the page run concurrently on two read sessions (the latency is the slower of the
    two, not their sum). When the dialect can count a search term's matches cheaply (SQLite FTS5),
    that count picks the plan: rare terms drive the read from the index, frequent ones probe it
    while the time index is walked newest-first; with no other filter the count is the total.
    """
    dialect = db.dialect
    plan = None
    if f.search is not None:
        async with db.read() as s:
            plan = await dialect.log_search_plan(s, f.search, window=params.offset + params.limit, cap=TOTAL_CAP)
    probe = False
    known_total: int | None = None
    if plan is not None:
        hits, probe = plan
        if hits == 0:
            return [], 0, False
        if not conditions(dialect, principal, replace(f, search=None)):
            known_total = hits

    async def count() -> int:
        if known_total is not None:
            return known_total
        counted = select(LogEntry.seq).where(*conditions(dialect, principal, f)).limit(TOTAL_CAP + 1)
        async with db.read() as s:
            return int(await s.scalar(select(func.count()).select_from(counted.subquery())) or 0)

    async def page() -> list[LogEntry]:
        stmt = list_statement(dialect, principal, f, probe=probe).limit(params.limit).offset(params.offset)
        async with db.read() as s:
            return list((await s.scalars(stmt)).all())

    total, rows = await asyncio.gather(count(), page())
    return rows, min(total, TOTAL_CAP), total > TOTAL_CAP


async def get_entry(session: AsyncSession, principal: Principal, entry_id: str) -> LogEntry | None:
    stmt = select(LogEntry).where(LogEntry.id == entry_id)
    scope = in_scope(principal)
    if scope is not None:
        stmt = stmt.where(scope)
    return await session.scalar(stmt)


async def counts(session: AsyncSession, principal: Principal, f: LogFilter, column: Any) -> dict[str, int]:
    stmt = (select(column, func.count()).where(*conditions_no_search(principal, f)).group_by(column))
    return {k: int(n) for k, n in (await session.execute(stmt)).all()}


def conditions_no_search(principal: Principal, f: LogFilter) -> list[ColumnElement[bool]]:
    # stats take no search term, so no dialect is needed
    assert f.search is None
    out: list[ColumnElement[bool]] = []
    scope = in_scope(principal)
    if scope is not None:
        out.append(scope)
    if f.instance_ids is not None:
        out.append(LogEntry.instance_id.in_(f.instance_ids))
    if f.from_ms is not None:
        out.append(LogEntry.ts_ms >= f.from_ms)
    if f.to_ms is not None:
        out.append(LogEntry.ts_ms <= f.to_ms)
    return out


async def top_instances(session: AsyncSession, principal: Principal, f: LogFilter) -> list[dict[str, Any]]:
    per_instance = (select(LogEntry.instance_id.label("iid"), func.count().label("n"))
                    .where(*conditions_no_search(principal, f)).group_by(LogEntry.instance_id).subquery())
    stmt = (select(per_instance.c.iid, Instance.name, per_instance.c.n)
            .join(Instance, Instance.id == per_instance.c.iid)
            .order_by(per_instance.c.n.desc(), per_instance.c.iid).limit(TOP_INSTANCES))
    return [{"instanceId": iid, "instanceName": name, "count": int(n)}
            for iid, name, n in (await session.execute(stmt)).all()]


async def replay(session: AsyncSession, dialect: Dialect, principal: Principal, f: LogFilter, after_seq: int,
                 limit: int) -> tuple[list[LogEntry], int]:
    """Matching entries with seq > after_seq, oldest first: at most `limit`, the newest ones when more
    matched. Returns (entries, how many older matches were skipped)."""
    conds = [*conditions(dialect, principal, f), LogEntry.seq > after_seq]
    newest = list((await session.scalars(
        select(LogEntry).where(*conds).order_by(LogEntry.seq.desc()).limit(limit + 1))).all())
    skipped = 0
    if len(newest) > limit:
        newest = newest[:limit]
        total = await session.scalar(select(func.count()).select_from(select(LogEntry.seq).where(*conds).subquery()))
        skipped = int(total or 0) - limit
    newest.reverse()
    return newest, skipped


async def visible_instance_teams(session: AsyncSession, ids: list[str]) -> dict[str, str | None]:
    rows = await session.execute(select(Instance.id, Instance.team_id).where(Instance.id.in_(ids)))
    return {iid: team for iid, team in rows}


async def delete_older_than(session: AsyncSession, cutoff_ms: int, batch: int) -> int:
    """Delete at most `batch` of the oldest entries before `cutoff_ms` (the FTS triggers follow)."""
    victims = select(LogEntry.seq).where(LogEntry.ts_ms < cutoff_ms).order_by(LogEntry.ts_ms).limit(batch)
    res = await session.execute(delete(LogEntry).where(LogEntry.seq.in_(victims.scalar_subquery())))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]
