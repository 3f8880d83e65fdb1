"""SQL of the metric tables: rollup upserts, watermarks, bucket reads, latest rows, raw points.

Reads that span several tables work on **partial aggregates** (sample counts, sums, per-field
counts, maxima): every table yields the same partial columns for its part of the window, the
parts are concatenated with UNION ALL and summed per (instance, bucket). A bucket split between
a rollup table and the finer not-yet-rolled-up rows is therefore exact, and averages stay
sample-weighted whichever table a sample came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Select,
    and_,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.dialect import Dialect
from sindri_console.models.instance import Instance
from sindri_console.models.metrics import (
    Metric1h,
    Metric1m,
    Metric15m,
    MetricDirty,
    MetricLatest,
    MetricPoint,
    RollupState,
)

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# rollup column -> the raw column it summarises
ROLLUP_FIELDS = {
    "mem_used": "mem_used_bytes",
    "disk_used": "disk_used_bytes",
    "load_avg_1": "load_avg_1",
    "net_rx_bps": "net_rx_bps",
    "net_tx_bps": "net_tx_bps",
}

# partial aggregate columns shared by every source table (see module docstring)
PART_NAMES = (
    "n", "cpu_sum", "cpu_max", "mem_sum", "mem_n", "mem_max", "mem_total_max", "disk_sum", "disk_n",
    "disk_max", "disk_total_max", "load_sum", "load_n", "rx_sum", "rx_n", "tx_sum", "tx_n", "core_max",
    "first_ms", "last_ms",
)
_SUMMED = {"n", "cpu_sum", "mem_sum", "mem_n", "disk_sum", "disk_n", "load_sum", "load_n", "rx_sum", "rx_n",
           "tx_sum", "tx_n"}
_MIN = {"first_ms"}
_FLOAT_PARTS = {"cpu_sum", "cpu_max", "mem_sum", "disk_sum", "load_sum", "rx_sum", "tx_sum"}


def _f(x: Any) -> ColumnElement[float]:
    return cast(x, Float)


def _i(x: Any) -> ColumnElement[int]:
    return cast(x, BigInteger)


# --------------------------------------------------------------------------------------------------
# Rollup writes
# --------------------------------------------------------------------------------------------------


def _minute_columns_from_raw(p: Any, bucket: ColumnElement[int]) -> list[ColumnElement[Any]]:
    """Columns of one metric_1m row computed from raw points `p` grouped by (instance, bucket)."""
    cols: list[ColumnElement[Any]] = [
        p.instance_id.label("instance_id"),
        bucket.label("bucket_ms"),
        func.count().label("sample_count"),
        _f(func.avg(_f(p.cpu_percent))).label("cpu_avg"),
        _f(func.max(p.cpu_percent)).label("cpu_max"),
    ]
    for short, raw in ROLLUP_FIELDS.items():
        col = getattr(p, raw)
        cols.append(_f(func.avg(_f(col))).label(f"{short}_avg"))
        cols.append(func.max(col).label(f"{short}_max"))
        cols.append(func.count(col).label(f"{short}_n"))
    cols += [
        func.max(p.mem_total_bytes).label("mem_total_max"),
        func.max(p.disk_total_bytes).label("disk_total_max"),
        func.max(p.core_count).label("core_count_max"),
    ]
    return cols


def _coarse_columns_from_minutes(m: Any, bucket: ColumnElement[int]) -> list[ColumnElement[Any]]:
    """Columns of one coarser rollup row from 1-minute rows: sample-count weighted averages."""
    n = func.sum(m.sample_count)
    cols: list[ColumnElement[Any]] = [
        m.instance_id.label("instance_id"),
        bucket.label("bucket_ms"),
        n.label("sample_count"),
        _f(func.sum(m.cpu_avg * m.sample_count) / func.nullif(n, 0)).label("cpu_avg"),
        _f(func.max(m.cpu_max)).label("cpu_max"),
    ]
    for short in ROLLUP_FIELDS:
        avg, mx, cnt = getattr(m, f"{short}_avg"), getattr(m, f"{short}_max"), getattr(m, f"{short}_n")
        cols.append(_f(func.sum(avg * cnt) / func.nullif(func.sum(cnt), 0)).label(f"{short}_avg"))
        cols.append(func.max(mx).label(f"{short}_max"))
        cols.append(func.coalesce(func.sum(cnt), 0).label(f"{short}_n"))
    cols += [
        func.max(m.mem_total_max).label("mem_total_max"),
        func.max(m.disk_total_max).label("disk_total_max"),
        func.max(m.core_count_max).label("core_count_max"),
    ]
    return cols


async def _upsert_from_select(session: AsyncSession, dialect: Dialect, model: Any, sel: Select[Any]) -> int:
    table = model.__table__
    names = [c.name for c in sel.selected_columns]
    stmt = dialect.insert(table).from_select(names, sel)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.instance_id, table.c.bucket_ms],
        set_={name: stmt.excluded[name] for name in names if name not in ("instance_id", "bucket_ms")},
    )
    result = await session.execute(stmt)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def minutes_select(dialect: Dialect, lo_ms: int, hi_ms: int) -> Select[Any]:
    """The 1-minute rows of every instance for minutes in [lo_ms, hi_ms), computed from raw points."""
    p = MetricPoint
    bucket = dialect.time_bucket(p.ts_ms, MINUTE_MS)
    return (select(*_minute_columns_from_raw(p, bucket))
            .where(p.ts_ms >= lo_ms, p.ts_ms < hi_ms)
            .group_by(p.instance_id, bucket))


async def reporting_instances(session: AsyncSession) -> int:
    """Instances with a latest metric row: about how many 1-minute rows one minute yields."""
    return int(await session.scalar(select(func.count()).select_from(MetricLatest)) or 0)


async def read_rollup_rows(session: AsyncSession, sel: Select[Any]) -> list[dict[str, Any]]:
    """Rows computed by a rollup select, read outside any write transaction."""
    return [dict(r) for r in (await session.execute(sel)).mappings()]


async def upsert_rollup_rows(session: AsyncSession, dialect: Dialect, model: Any, rows: list[dict[str, Any]]) -> int:
    """Write computed rollup rows with one cached executemany upsert on (instance_id, bucket_ms)."""
    if not rows:
        return 0
    table = model.__table__
    stmt = dialect.insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.instance_id, table.c.bucket_ms],
        set_={name: stmt.excluded[name] for name in rows[0] if name not in ("instance_id", "bucket_ms")},
    )
    for chunk in _chunks(rows, 1000):
        await session.execute(stmt, chunk)
    return len(rows)


async def take_dirty(session: AsyncSession, limit: int) -> list[tuple[str, int]]:
    rows = await session.execute(
        select(MetricDirty.instance_id, MetricDirty.minute_ms)
        .order_by(MetricDirty.minute_ms, MetricDirty.instance_id).limit(limit)
    )
    return [(r[0], int(r[1])) for r in rows]


async def rollup_dirty_minutes(session: AsyncSession, dialect: Dialect, keys: list[tuple[str, int]]) -> int:
    """Recompute the given (instance, minute) 1-minute rows from raw points and drop their dirty marks."""
    if not keys:
        return 0
    p = MetricPoint
    bucket = dialect.time_bucket(p.ts_ms, MINUTE_MS)
    # instance filter first so the primary key (instance_id, ts_ms) serves the read
    by_instance: dict[str, list[int]] = {}
    for inst, minute in keys:
        by_instance.setdefault(inst, []).append(minute)
    written = 0
    for chunk in _chunks(list(by_instance.items()), 200):
        cond = [and_(p.instance_id == inst, p.ts_ms >= min(ms), p.ts_ms < max(ms) + MINUTE_MS)
                for inst, ms in chunk]
        wanted = [(inst, m) for inst, ms in chunk for m in ms]
        sel = (select(*_minute_columns_from_raw(p, bucket))
               .where(or_(*cond))
               .where(tuple_(p.instance_id, bucket).in_(wanted))
               .group_by(p.instance_id, bucket))
        written += await _upsert_from_select(session, dialect, Metric1m, sel)
    for chunk in _chunks(keys, 2000):
        await session.execute(delete(MetricDirty).where(
            tuple_(MetricDirty.instance_id, MetricDirty.minute_ms).in_(chunk)))
    return written


ROLLUP_MODELS: dict[str, Any] = {"1m": Metric1m, "15m": Metric15m, "1h": Metric1h}
TIER_STEP_MS = {"1m": MINUTE_MS, "15m": 15 * MINUTE_MS, "1h": HOUR_MS}


def coarse_select(dialect: Dialect, tier: str, lo_ms: int, hi_ms: int) -> Select[Any]:
    """The `tier` rows (15m or 1h) of every instance for buckets in [lo_ms, hi_ms), from 1-minute rows."""
    m = Metric1m
    bucket = dialect.time_bucket(m.bucket_ms, TIER_STEP_MS[tier])
    return (select(*_coarse_columns_from_minutes(m, bucket))
            .where(m.bucket_ms >= lo_ms, m.bucket_ms < hi_ms)
            .group_by(m.instance_id, bucket))


async def rollup_instance_buckets(session: AsyncSession, dialect: Dialect, tier: str,
                                  keys: list[tuple[str, int]]) -> int:
    """Recompute the given (instance, bucket start) rows of `tier` from 1-minute rows."""
    if not keys:
        return 0
    m = Metric1m
    step = TIER_STEP_MS[tier]
    bucket = dialect.time_bucket(m.bucket_ms, step)
    written = 0
    for chunk in _chunks(keys, 500):
        cond = [and_(m.instance_id == inst, m.bucket_ms >= start, m.bucket_ms < start + step) for inst, start in chunk]
        sel = select(*_coarse_columns_from_minutes(m, bucket)).where(or_(*cond)).group_by(m.instance_id, bucket)
        written += await _upsert_from_select(session, dialect, ROLLUP_MODELS[tier], sel)
    return written


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------------------------------
# Watermarks
# --------------------------------------------------------------------------------------------------


# Sample writers mark a point "late" (dirty minute) when it is older than the claim line; the rollup
# moves the claim line forward in a short transaction before it reads the claimed minutes, and moves
# `1m` (minutes built) once they are written.
MINUTE_CLAIM = "1m-claim"


async def lock_watermark(session: AsyncSession, name: str) -> int | None:
    """The watermark `name`, row-locked until commit (PostgreSQL; SQLite write units are serial).

    Sample writers read the `1m-claim` line with a shared lock, so every writer either committed before
    the rollup moved it (and its points are read by the rollup) or sees the moved line (and marks its
    late minutes dirty).
    """
    value = await session.scalar(select(RollupState.watermark_ms).where(RollupState.name == name).with_for_update())
    return None if value is None else int(value)


async def read_watermarks(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(RollupState.name, RollupState.watermark_ms))
    return {r[0]: int(r[1]) for r in rows}


async def set_watermark(session: AsyncSession, dialect: Dialect, name: str, value: int) -> None:
    table = RollupState.__table__
    stmt = dialect.insert(table).values(name=name, watermark_ms=value)
    stmt = stmt.on_conflict_do_update(index_elements=[table.c.name], set_={"watermark_ms": value})
    await session.execute(stmt)


async def oldest_raw_ms(session: AsyncSession) -> int | None:
    value = await session.scalar(select(func.min(MetricPoint.ts_ms)))
    return None if value is None else int(value)


async def oldest_minute_ms(session: AsyncSession) -> int | None:
    value = await session.scalar(select(func.min(Metric1m.bucket_ms)))
    return None if value is None else int(value)


# --------------------------------------------------------------------------------------------------
# Bucket reads
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One source table and the half-open time range [lo_ms, hi_ms) read from it."""

    tier: str  # "1h" | "15m" | "1m" | "raw"
    lo_ms: int
    hi_ms: int


def plan_segments(tiers: tuple[str, ...], lo_ms: int, hi_ms: int, watermarks: dict[str, int]) -> list[Segment]:
    """Split [lo_ms, hi_ms) over `tiers` (coarsest first): each rollup covers up to its watermark,
    the rest falls through to the next finer table, raw points take whatever is left."""
    out: list[Segment] = []
    cursor = lo_ms
    for tier in tiers:
        if cursor >= hi_ms:
            break
        if tier == "raw":
            out.append(Segment("raw", cursor, hi_ms))
            cursor = hi_ms
            break
        mark = watermarks.get(tier)
        if mark is None or mark <= cursor:
            continue
        end = min(mark, hi_ms)
        out.append(Segment(tier, cursor, end))
        cursor = end
    return out


def _raw_parts(p: Any) -> list[ColumnElement[Any]]:
    return [
        _i(func.count()).label("n"),
        _f(func.sum(p.cpu_percent)).label("cpu_sum"),
        _f(func.max(p.cpu_percent)).label("cpu_max"),
        _f(func.sum(_f(p.mem_used_bytes))).label("mem_sum"),
        _i(func.count(p.mem_used_bytes)).label("mem_n"),
        _i(func.max(p.mem_used_bytes)).label("mem_max"),
        _i(func.max(p.mem_total_bytes)).label("mem_total_max"),
        _f(func.sum(_f(p.disk_used_bytes))).label("disk_sum"),
        _i(func.count(p.disk_used_bytes)).label("disk_n"),
        _i(func.max(p.disk_used_bytes)).label("disk_max"),
        _i(func.max(p.disk_total_bytes)).label("disk_total_max"),
        _f(func.sum(p.load_avg_1)).label("load_sum"),
        _i(func.count(p.load_avg_1)).label("load_n"),
        _f(func.sum(_f(p.net_rx_bps))).label("rx_sum"),
        _i(func.count(p.net_rx_bps)).label("rx_n"),
        _f(func.sum(_f(p.net_tx_bps))).label("tx_sum"),
        _i(func.count(p.net_tx_bps)).label("tx_n"),
        _i(func.max(p.core_count)).label("core_max"),
        _i(func.min(p.ts_ms)).label("first_ms"),
        _i(func.max(p.ts_ms)).label("last_ms"),
    ]


def _rollup_parts(r: Any) -> list[ColumnElement[Any]]:
    def wsum(short: str) -> ColumnElement[float]:
        return _f(func.sum(getattr(r, f"{short}_avg") * getattr(r, f"{short}_n")))

    return [
        _i(func.sum(r.sample_count)).label("n"),
        _f(func.sum(r.cpu_avg * r.sample_count)).label("cpu_sum"),
        _f(func.max(r.cpu_max)).label("cpu_max"),
        wsum("mem_used").label("mem_sum"),
        _i(func.sum(r.mem_used_n)).label("mem_n"),
        _i(func.max(r.mem_used_max)).label("mem_max"),
        _i(func.max(r.mem_total_max)).label("mem_total_max"),
        wsum("disk_used").label("disk_sum"),
        _i(func.sum(r.disk_used_n)).label("disk_n"),
        _i(func.max(r.disk_used_max)).label("disk_max"),
        _i(func.max(r.disk_total_max)).label("disk_total_max"),
        wsum("load_avg_1").label("load_sum"),
        _i(func.sum(r.load_avg_1_n)).label("load_n"),
        wsum("net_rx_bps").label("rx_sum"),
        _i(func.sum(r.net_rx_bps_n)).label("rx_n"),
        wsum("net_tx_bps").label("tx_sum"),
        _i(func.sum(r.net_tx_bps_n)).label("tx_n"),
        _i(func.max(r.core_count_max)).label("core_max"),
        _i(func.min(r.bucket_ms)).label("first_ms"),
        _i(func.max(r.bucket_ms)).label("last_ms"),
    ]


def _restrict(stmt: Select[Any], src: Any, instances: str | ColumnElement[bool]) -> Select[Any]:
    """One instance by id, or the instances matching a condition on `Instance` (joined: on SQLite a join
    walks the instance index and probes the metric table's key, faster than an IN list of ids)."""
    if isinstance(instances, str):
        return stmt.where(src.instance_id == instances)
    return stmt.join(Instance, Instance.id == src.instance_id).where(instances)


def _segment_select(seg: Segment, dialect: Dialect, step_ms: int | None,
                    instances: str | ColumnElement[bool]) -> Select[Any]:
    if seg.tier == "raw":
        src: Any = MetricPoint
        ts = MetricPoint.ts_ms
        parts = _raw_parts(MetricPoint)
    else:
        src = ROLLUP_MODELS[seg.tier]
        ts = src.bucket_ms
        parts = _rollup_parts(src)
    bucket = dialect.time_bucket(ts, step_ms) if step_ms else _i(literal(0))
    stmt = _restrict(select(src.instance_id.label("instance_id"), bucket.label("bucket_ms"), *parts), src,
                     instances).where(ts >= seg.lo_ms, ts < seg.hi_ms)
    return stmt.group_by(src.instance_id, bucket) if step_ms else stmt.group_by(src.instance_id)


def _direct_select(seg: Segment, instances: Any) -> Select[Any]:
    """Partial-aggregate columns straight from rollup rows whose step is the bucket step: one row per
    (instance, bucket) already, so no grouping (the expensive part of a fleet series)."""
    r = ROLLUP_MODELS[seg.tier]

    def weighted(short: str) -> ColumnElement[float]:
        return _f(getattr(r, f"{short}_avg") * getattr(r, f"{short}_n"))

    cols = [
        _i(r.sample_count).label("n"),
        _f(r.cpu_avg * r.sample_count).label("cpu_sum"),
        _f(r.cpu_max).label("cpu_max"),
        weighted("mem_used").label("mem_sum"),
        _i(r.mem_used_n).label("mem_n"),
        _i(r.mem_used_max).label("mem_max"),
        _i(r.mem_total_max).label("mem_total_max"),
        weighted("disk_used").label("disk_sum"),
        _i(r.disk_used_n).label("disk_n"),
        _i(r.disk_used_max).label("disk_max"),
        _i(r.disk_total_max).label("disk_total_max"),
        weighted("load_avg_1").label("load_sum"),
        _i(r.load_avg_1_n).label("load_n"),
        weighted("net_rx_bps").label("rx_sum"),
        _i(r.net_rx_bps_n).label("rx_n"),
        weighted("net_tx_bps").label("tx_sum"),
        _i(r.net_tx_bps_n).label("tx_n"),
        _i(r.core_count_max).label("core_max"),
        _i(r.bucket_ms).label("first_ms"),
        _i(r.bucket_ms).label("last_ms"),
    ]
    return _restrict(select(r.instance_id.label("instance_id"), _i(r.bucket_ms).label("bucket_ms"), *cols), r,
                     instances).where(r.bucket_ms >= seg.lo_ms, r.bucket_ms < seg.hi_ms)


def _is_direct(seg: Segment, step_ms: int | None) -> bool:
    return (step_ms is not None and seg.tier != "raw" and TIER_STEP_MS[seg.tier] == step_ms
            and seg.lo_ms % step_ms == 0 and seg.hi_ms % step_ms == 0)


def per_instance_buckets(segments: list[Segment], dialect: Dialect, step_ms: int | None,
                         instances: Any) -> Any:
    """Partial aggregates, one row per (instance, bucket), over the segments; None when nothing to read.

    `instances` is one instance id or a condition on `Instance`; `step_ms` None groups per instance only.
    Segments read from a rollup of exactly the bucket step and aligned to it are taken row by row;
    the others (finer tables, the unaligned tail) are grouped, and merged when a bucket spans two of
    them. Aligned segments never share a bucket with the rest, so every (instance, bucket) is one row.
    """
    if not segments:
        return None
    direct = [_direct_select(seg, instances) for seg in segments if _is_direct(seg, step_ms)]
    grouped = [_segment_select(seg, dialect, step_ms, instances) for seg in segments if not _is_direct(seg, step_ms)]
    if len(grouped) > 1:
        u = union_all(*grouped).subquery("parts")
        merged = []
        for name in PART_NAMES:
            col = u.c[name]
            agg = func.sum(col) if name in _SUMMED else func.min(col) if name in _MIN else func.max(col)
            merged.append((_f(agg) if name in _FLOAT_PARTS else _i(agg)).label(name))
        grouped = [select(u.c.instance_id, u.c.bucket_ms, *merged).group_by(u.c.instance_id, u.c.bucket_ms)]
    parts = direct + grouped
    return parts[0] if len(parts) == 1 else union_all(*parts)


def fleet_buckets(per_instance: Any) -> Select[Any]:
    """Fleet series (10-core §9.1): cpu and load are means over instances, bytes and rates are sums."""
    pi = per_instance.subquery("per_instance")
    n = func.nullif(pi.c.n, 0)

    def avg_of(s: str, c: str) -> ColumnElement[float]:
        return _f(pi.c[s]) / func.nullif(pi.c[c], 0)

    return (select(
        pi.c.bucket_ms,
        _i(func.count()).label("instance_count"),
        _i(func.sum(pi.c.n)).label("n"),
        _f(func.avg(_f(pi.c.cpu_sum) / n)).label("cpu"),
        _f(func.max(pi.c.cpu_max)).label("cpu_max"),
        _f(func.avg(avg_of("load_sum", "load_n"))).label("load"),
        _f(func.sum(avg_of("mem_sum", "mem_n"))).label("mem"),
        _f(func.sum(pi.c.mem_total_max)).label("mem_total"),
        _f(func.sum(avg_of("disk_sum", "disk_n"))).label("disk"),
        _f(func.sum(pi.c.disk_total_max)).label("disk_total"),
        _f(func.sum(avg_of("rx_sum", "rx_n"))).label("rx"),
        _f(func.sum(avg_of("tx_sum", "tx_n"))).label("tx"),
    ).where(pi.c.n > 0).group_by(pi.c.bucket_ms))


async def oldest_time(session: AsyncSession, tier: str, instance_id: str | None,
                      instances: Select[Any] | None) -> int | None:
    """Oldest retained time in a source table for one instance or the given instances."""
    if tier == "raw":
        src: Any = MetricPoint
        ts = MetricPoint.ts_ms
    else:
        src = ROLLUP_MODELS[tier]
        ts = src.bucket_ms
    stmt = select(func.min(ts))
    if instance_id is not None:
        stmt = stmt.where(src.instance_id == instance_id)
    elif instances is not None:
        stmt = stmt.where(src.instance_id.in_(instances))
    value = await session.scalar(stmt)
    return None if value is None else int(value)


async def raw_points(session: AsyncSession, instance_id: str, lo_ms: int, hi_ms: int,
                     limit: int) -> tuple[list[MetricPoint], bool]:
    """The newest `limit` raw points with lo ≤ ts ≤ hi, ascending, and whether more existed."""
    rows = list(await session.scalars(
        select(MetricPoint)
        .where(MetricPoint.instance_id == instance_id, MetricPoint.ts_ms >= lo_ms, MetricPoint.ts_ms <= hi_ms)
        .order_by(MetricPoint.ts_ms.desc()).limit(limit + 1)
    ))
    truncated = len(rows) > limit
    rows = rows[:limit]
    rows.reverse()
    return rows, truncated


LATEST_COLUMNS = ("instance_id", "ts_ms", "cpu_percent", "mem_used_bytes", "mem_total_bytes", "disk_used_bytes",
                  "disk_total_bytes", "load_avg_1", "load_avg_5", "load_avg_15", "net_rx_bps", "net_tx_bps")


async def latest_rows(session: AsyncSession, in_scope: ColumnElement[bool], ids: list[str] | None,
                      limit: int) -> list[Any]:
    """Latest rows (the columns of §9.5 plus `name`) of the instances matching `in_scope`, by instance name."""
    cols = [getattr(MetricLatest, c) for c in LATEST_COLUMNS]
    stmt = (select(*cols, Instance.name).join(Instance, Instance.id == MetricLatest.instance_id).where(in_scope))
    if ids is not None:
        stmt = stmt.where(MetricLatest.instance_id.in_(ids))
    stmt = stmt.order_by(Instance.name, Instance.id).limit(limit)
    return list((await session.execute(stmt)).all())


async def instance_names(session: AsyncSession, ids: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for chunk in _chunks(ids, 1000):
        for r in await session.execute(select(Instance.id, Instance.name).where(Instance.id.in_(chunk))):
            out[r[0]] = r[1]
    return out
