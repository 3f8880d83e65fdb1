"""SQL of the agent domain: connection rows, agent state, receipts, reports, extension status, LLM usage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.dialect import Dialect, table_of
from sindri_console.models.agent import AgentConnection, AgentState
from sindri_console.models.agent_reports import AgentFrameReceipt, AgentReport, ExtensionStatus
from sindri_console.models.instance import Heartbeat, Instance
from sindri_console.models.lease import Replica
from sindri_console.models.llm_usage import LlmUsage


async def load_states(session: AsyncSession, ids: list[str]) -> dict[str, AgentState]:
    if not ids:
        return {}
    rows = await session.scalars(select(AgentState).where(AgentState.instance_id.in_(ids)))
    return {r.instance_id: r for r in rows}


async def load_statuses(session: AsyncSession, ids: list[str]) -> dict[str, tuple[str, datetime]]:
    if not ids:
        return {}
    rows = await session.execute(
        select(Instance.id, Instance.status, Instance.status_changed_at).where(Instance.id.in_(ids)))
    return {r[0]: (r[1], r[2]) for r in rows}


async def contact_rows(session: AsyncSession, ids: list[str]) -> list[tuple[str, bool, float | None, str, datetime]]:
    """(instance id, heartbeat lost, heartbeat interval, status, status changed at) per agent state."""
    if not ids:
        return []
    rows = await session.execute(
        select(AgentState.instance_id, AgentState.heartbeat_lost, AgentState.heartbeat_interval_seconds,
               Instance.status, Instance.status_changed_at)
        .join(Instance, Instance.id == AgentState.instance_id).where(AgentState.instance_id.in_(ids)))
    return [(r[0], bool(r[1]), r[2], r[3], r[4]) for r in rows]


async def _update_many(session: AsyncSession, table: Any, key: str, rows: list[dict[str, Any]]) -> None:
    """One executemany UPDATE keyed by `key`; every row has `key` and the same other keys (a cached
    statement, where one UPDATE per row would be a round trip each)."""
    if not rows:
        return
    cols = [k for k in rows[0] if k != key]
    stmt = update(table).where(table.c[key] == bindparam(f"b_{key}")).values(
        {c: bindparam(f"b_{c}", type_=table.c[c].type) for c in cols})
    await session.execute(stmt, [{f"b_{k}": v for k, v in r.items()} for r in rows])


async def update_states(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """One executemany UPDATE of agent_state; every row has `instance_id` and the same other keys."""
    await _update_many(session, AgentState.__table__, "instance_id", rows)


async def add_dropped(session: AsyncSession, instance_id: str, n: int) -> None:
    await session.execute(update(AgentState).where(AgentState.instance_id == instance_id)
                          .values(frames_dropped=AgentState.frames_dropped + n))


async def insert_heartbeats(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(table_of(Heartbeat).insert(), rows)


async def existing_receipts(session: AsyncSession, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    if not keys:
        return set()
    rows = await session.execute(
        select(AgentFrameReceipt.instance_id, AgentFrameReceipt.frame_id)
        .where(tuple_(AgentFrameReceipt.instance_id, AgentFrameReceipt.frame_id).in_(keys)))
    return {(r[0], r[1]) for r in rows}


async def insert_receipts(session: AsyncSession, dialect: Dialect, keys: list[tuple[str, str]],
                          now: datetime) -> None:
    if not keys:
        return
    table = AgentFrameReceipt.__table__
    # executemany, not `.values([...])`: compiled once, not once per batch size
    await session.execute(
        dialect.insert(table).on_conflict_do_nothing(index_elements=[table.c.instance_id, table.c.frame_id]),
        [{"instance_id": i, "frame_id": f, "received_at": now} for i, f in keys])


async def upsert_report(session: AsyncSession, dialect: Dialect, row: dict[str, Any]) -> None:
    table = AgentReport.__table__
    stmt = dialect.insert(table).values(row)
    stmt = stmt.on_conflict_do_update(index_elements=[table.c.instance_id, table.c.kind],
                                      set_={k: stmt.excluded[k] for k in row if k not in ("instance_id", "kind")})
    await session.execute(stmt)


async def get_report(session: AsyncSession, instance_id: str, kind: str) -> AgentReport | None:
    return await session.get(AgentReport, (instance_id, kind))


async def extension_rows(session: AsyncSession, instance_id: str) -> list[ExtensionStatus]:
    rows = await session.scalars(select(ExtensionStatus).where(ExtensionStatus.instance_id == instance_id)
                                 .order_by(ExtensionStatus.name))
    return list(rows)


async def replace_extensions(session: AsyncSession, instance_id: str, rows: list[dict[str, Any]]) -> None:
    await session.execute(delete(ExtensionStatus).where(ExtensionStatus.instance_id == instance_id))
    if rows:
        await session.execute(table_of(ExtensionStatus).insert(), rows)


async def insert_llm_usage(session: AsyncSession, dialect: Dialect, rows: list[dict[str, Any]]) -> set[str]:
    """Insert records, skipping known dedupe keys; returns the keys actually stored."""
    if not rows:
        return set()
    table = LlmUsage.__table__
    stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=[table.c.dedupe_key])
    res = await session.execute(stmt.returning(table.c.dedupe_key), rows)
    return {r[0] for r in res}


# ---- connections ---------------------------------------------------------------------------------


async def update_connections(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Connection rows by `id`, every row with the same keys: counter snapshots (every 60 s) and closes."""
    await _update_many(session, AgentConnection.__table__, "id", rows)


async def current_connections(session: AsyncSession, instance_ids: list[str]) -> dict[str, str | None]:
    """instance id → the connection its AgentState points at."""
    rows = await session.execute(select(AgentState.instance_id, AgentState.connection_id)
                                 .where(AgentState.instance_id.in_(set(instance_ids))))
    return {r[0]: r[1] for r in rows}


async def mark_disconnected_many(session: AsyncSession, pairs: list[tuple[str, str]], now: datetime) -> None:
    """AgentState → disconnected for (instance, connection) pairs, each only while it still points at
    that connection (§3.5 close step 2)."""
    if not pairs:
        return
    table = table_of(AgentState)
    stmt = (update(table).where(table.c.instance_id == bindparam("b_iid"), table.c.connection_id == bindparam("b_cid"))
            .values(connected=False, disconnected_at=now, updated_at=now))
    await session.execute(stmt, [{"b_iid": i, "b_cid": c} for i, c in pairs])


async def instances_with_other_open(session: AsyncSession, instance_ids: list[str],
                                    closing_ids: list[str]) -> set[str]:
    """Which of the instances keep an open connection besides the ones closing now."""
    if not instance_ids:
        return set()
    rows = await session.execute(select(AgentConnection.instance_id).where(
        AgentConnection.instance_id.in_(set(instance_ids)), AgentConnection.id.not_in(closing_ids),
        AgentConnection.disconnected_at.is_(None)).distinct())
    return {r[0] for r in rows}


async def instance_teams(session: AsyncSession, instance_ids: list[str]) -> dict[str, str | None]:
    rows = await session.execute(select(Instance.id, Instance.team_id).where(Instance.id.in_(set(instance_ids))))
    return {r[0]: r[1] for r in rows}


# ---- loops -----------------------------------------------------------------------------------------


async def loss_candidates(session: AsyncSession, now: datetime, limit: int) -> list[str]:
    rows = await session.execute(
        select(AgentState.instance_id).join(Instance, Instance.id == AgentState.instance_id)
        .where(AgentState.heartbeat_lost.is_(False), AgentState.heartbeat_deadline_at < now,
               Instance.status == "RUNNING")
        .order_by(AgentState.heartbeat_deadline_at).limit(limit))
    return [r[0] for r in rows]


async def dead_replicas(session: AsyncSession, cutoff: datetime, self_id: str) -> list[str]:
    rows = await session.execute(select(Replica.id).where(Replica.heartbeat_at < cutoff, Replica.id != self_id))
    return [r[0] for r in rows]


async def open_connections_on(session: AsyncSession, replica_ids: list[str], limit: int) -> list[AgentConnection]:
    if not replica_ids:
        return []
    rows = await session.scalars(select(AgentConnection).where(
        AgentConnection.replica_id.in_(replica_ids), AgentConnection.disconnected_at.is_(None)).limit(limit))
    return list(rows)


async def orphan_states(session: AsyncSession, replica_ids: list[str]) -> int:
    """AgentState rows still claiming a connection held by a dead replica."""
    if not replica_ids:
        return 0
    res = await session.execute(update(AgentState).where(
        AgentState.connected.is_(True), AgentState.replica_id.in_(replica_ids)).values(connected=False))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def delete_old(session: AsyncSession, receipts_before: datetime, connections_before: datetime,
                     batch: int) -> tuple[int, int]:
    r_ids = select(AgentFrameReceipt.instance_id, AgentFrameReceipt.frame_id).where(
        AgentFrameReceipt.received_at < receipts_before).limit(batch)
    keys = [(a, b) for a, b in (await session.execute(r_ids)).all()]
    n_r = 0
    if keys:
        res = await session.execute(delete(AgentFrameReceipt).where(
            tuple_(AgentFrameReceipt.instance_id, AgentFrameReceipt.frame_id).in_(keys)))
        n_r = int(res.rowcount or 0)  # type: ignore[attr-defined]
    c_ids = [r[0] for r in (await session.execute(select(AgentConnection.id).where(
        and_(AgentConnection.disconnected_at.is_not(None), AgentConnection.disconnected_at < connections_before))
        .limit(batch))).all()]
    n_c = 0
    if c_ids:
        res = await session.execute(delete(AgentConnection).where(AgentConnection.id.in_(c_ids)))
        n_c = int(res.rowcount or 0)  # type: ignore[attr-defined]
    return n_r, n_c
