"""Writing metric samples (10-core §8.3): raw point, latest row and dirty minutes in the caller's transaction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.dialect import Dialect
from sindri_console.domains.metrics.repository import MINUTE_CLAIM
from sindri_console.kit.clock import clock, utcnow
from sindri_console.models.metrics import MetricDirty, MetricLatest, MetricPoint, RollupState

MINUTE_MS = 60_000
DAY_MS = 86_400_000


@dataclass
class MetricSample:
    """One raw point: 10-core §8.3 columns (40 §4.3 mapping already applied)."""

    instance_id: str
    ts_ms: int
    cpu_percent: float
    mem_used_bytes: int
    mem_total_bytes: int
    load_avg_1: float | None = None
    load_avg_5: float | None = None
    load_avg_15: float | None = None
    cpu_steal_percent: float | None = None
    core_count: int | None = None
    mem_cached_bytes: int | None = None
    swap_used_bytes: int | None = None
    swap_total_bytes: int | None = None
    disk_used_bytes: int | None = None
    disk_total_bytes: int | None = None
    disk_read_bps: int | None = None
    disk_write_bps: int | None = None
    net_bytes_sent: int | None = None
    net_bytes_recv: int | None = None
    net_packets_sent: int | None = None
    net_packets_recv: int | None = None
    net_tx_bps: int | None = None
    net_rx_bps: int | None = None

    def row(self) -> dict[str, Any]:
        return asdict(self)


SAMPLE_FIELDS = tuple(f.name for f in fields(MetricSample))


async def store_samples(session: AsyncSession, dialect: Dialect, samples: list[MetricSample], *,
                        raw_retention_days: int) -> list[MetricSample]:
    """Insert raw points (a repeated (instance, timestamp) is ignored), keep the latest row per
    instance, and mark late minutes dirty for the rollup loop. Returns the samples actually stored.
    """
    if not samples:
        return []
    now_ms = clock.now_ms()
    cutoff = now_ms - raw_retention_days * DAY_MS
    fresh = [s for s in samples if s.ts_ms >= cutoff]
    if not fresh:
        return []
    # Statements below take their rows as executemany parameters, never `.values([...])`: a multi-row
    # VALUES clause is compiled anew for every batch size (most of the writer's CPU at 5 000 agents),
    # while an executemany statement is compiled once and cached.
    table = MetricPoint.__table__
    stmt = dialect.insert(table).on_conflict_do_nothing(
        index_elements=[table.c.instance_id, table.c.ts_ms]
    ).returning(table.c.instance_id, table.c.ts_ms)
    stored_keys = {(r[0], r[1]) for r in (await session.execute(stmt, [s.row() for s in fresh])).all()}
    stored = [s for s in fresh if (s.instance_id, s.ts_ms) in stored_keys]
    if not stored:
        return []
    newest: dict[str, MetricSample] = {}
    for s in stored:
        cur = newest.get(s.instance_id)
        if cur is None or s.ts_ms > cur.ts_ms:
            newest[s.instance_id] = s
    lt = MetricLatest.__table__
    now = utcnow()
    # one batched upsert: `newest` holds one row per instance, so no row is touched twice
    rows = [{**s.row(), "updated_at": now} for s in newest.values()]
    up = dialect.insert(lt)
    up = up.on_conflict_do_update(
        index_elements=[lt.c.instance_id],
        set_={k: up.excluded[k] for k in (*SAMPLE_FIELDS, "updated_at") if k != "instance_id"},
        where=lt.c.ts_ms < up.excluded.ts_ms,
    )
    await session.execute(up, rows)
    watermark = await _late_line(session)
    if watermark is not None:
        late = {(s.instance_id, s.ts_ms // MINUTE_MS * MINUTE_MS) for s in stored if s.ts_ms < watermark}
        if late:
            dt = MetricDirty.__table__
            await session.execute(
                dialect.insert(dt).on_conflict_do_nothing(index_elements=[dt.c.instance_id, dt.c.minute_ms]),
                [{"instance_id": i, "minute_ms": m} for i, m in late],
            )
    return stored


async def _late_line(session: AsyncSession) -> int | None:
    """Points older than this are late (their minute is marked dirty for the rollup).

    Read with a shared row lock: a concurrent rollup, which locks the claim line for update to move
    it, either reads this transaction's points or moved the line before we read it (rollup.py).
    Until the first rollup tick made the claim line, the `1m` mark is the line.
    """
    state = RollupState.__table__
    claim = await session.scalar(select(state.c.watermark_ms).where(state.c.name == MINUTE_CLAIM)
                                 .with_for_update(read=True))
    if claim is not None:
        return int(claim)
    built = await session.scalar(select(state.c.watermark_ms).where(state.c.name == "1m").with_for_update(read=True))
    if built is None:
        return None
    # the tick that creates the claim line holds `1m` while doing so: it has committed by now, or waits for us
    claim = await session.scalar(select(state.c.watermark_ms).where(state.c.name == MINUTE_CLAIM))
    return max(int(built), int(claim)) if claim is not None else int(built)
