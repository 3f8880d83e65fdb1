"""Metrics reads (10-core §9.1-§9.6): bucket series, raw points, aggregates, latest rows.

Every read is bounded: series by their bucket count (≤ 5000), raw points by `limit`, aggregates by
the number of in-scope instances, latest rows by the instance list. Buckets are served from the
coarsest table whose step divides the bucket and whose rollup covers it, the rest from the finer
tables (repository.plan_segments); an empty bucket is reported as empty, never filled in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic.alias_generators import to_camel
from sqlalchemy import ColumnElement, Select, and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.domains.instances.geo import round_half_away
from sindri_console.domains.metrics import repository as repo
from sindri_console.domains.metrics.repository import DAY_MS, HOUR_MS, MINUTE_MS
from sindri_console.kit.auth import Principal
from sindri_console.kit.clock import clock, ms_to_iso
from sindri_console.kit.errors import ApiError
from sindri_console.kit.scope import LIVE_STATUSES, get_visible_instance, visible_instances
from sindri_console.models.instance import Instance
from sindri_console.models.metrics import RAW_COLUMNS, MetricPoint
from sindri_console.runtime import Runtime

RANGES: dict[str, tuple[int, int]] = {"1h": (60, 60), "6h": (300, 72), "24h": (900, 96), "7d": (3600, 168)}
GRANULARITIES: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
GRANULARITY_CHOICES = ("raw", *GRANULARITIES, "auto")
MAX_BUCKETS = 5000
AUTO_MAX_BUCKETS = 500
RAW_MAX_SPAN_MS = 48 * HOUR_MS
RAW_LIMIT_DEFAULT = 1000
RAW_LIMIT_MAX = 5000
AGGREGATE_MAX_SPAN_MS = 400 * DAY_MS
LATEST_MAX_IDS = 100
LATEST_MAX_ROWS = 10_000


def _unprocessable(field: str, message: str, sentence: str | None = None) -> ApiError:
    return ApiError(422, sentence or f"Invalid request: {field} {message}", [{"field": field, "message": message}])


def tiers_for(step_ms: int) -> tuple[str, ...]:
    """Source tables, coarsest first, whose step divides `step_ms`."""
    if step_ms % HOUR_MS == 0:
        return ("1h", "15m", "1m", "raw")
    if step_ms % (15 * MINUTE_MS) == 0:
        return ("15m", "1m", "raw")
    if step_ms % MINUTE_MS == 0:
        return ("1m", "raw")
    return ("raw",)


def in_fleet(principal: Principal) -> ColumnElement[bool]:
    """The live instances in the caller's scope (fleet reads), as a condition on `Instance`."""
    return and_(Instance.status.in_(LIVE_STATUSES), visible_instances(principal))


def scope_ids(principal: Principal) -> Select[Any]:
    return select(Instance.id).where(in_fleet(principal))


async def resolve_instance(session: AsyncSession, principal: Principal, instance_id: str | None) -> str | None:
    if instance_id is None:
        return None
    inst = await get_visible_instance(session, principal, instance_id)
    return inst.id


def _r2(value: float | None) -> float | None:
    return None if value is None else round_half_away(value, 2)


def _int(value: float | None) -> int | None:
    return None if value is None else int(round_half_away(value, 0))


def _ratio(total: float | None, count: int | None) -> float | None:
    if total is None or not count:
        return None
    return total / count


def empty_bucket(ts_ms: int, fleet: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "timestamp": ms_to_iso(ts_ms), "sampleCount": 0, "cpuPercent": None, "cpuPercentMax": None,
        "loadAvg1": None, "memUsedBytes": None, "memTotalBytes": None, "diskUsedBytes": None,
        "diskTotalBytes": None, "netRxBps": None, "netTxBps": None,
    }
    if fleet:
        out["instanceCount"] = 0
    return out


def _instance_bucket(ts_ms: int, r: Any) -> dict[str, Any]:
    return {
        "timestamp": ms_to_iso(ts_ms),
        "sampleCount": int(r.n),
        "cpuPercent": _r2(_ratio(r.cpu_sum, r.n)),
        "cpuPercentMax": _r2(r.cpu_max),
        "loadAvg1": _r2(_ratio(r.load_sum, r.load_n)),
        "memUsedBytes": _int(_ratio(r.mem_sum, r.mem_n)),
        "memTotalBytes": r.mem_total_max,
        "diskUsedBytes": _int(_ratio(r.disk_sum, r.disk_n)),
        "diskTotalBytes": r.disk_total_max,
        "netRxBps": _int(_ratio(r.rx_sum, r.rx_n)),
        "netTxBps": _int(_ratio(r.tx_sum, r.tx_n)),
    }


def _fleet_bucket(ts_ms: int, r: Any) -> dict[str, Any]:
    return {
        "timestamp": ms_to_iso(ts_ms),
        "sampleCount": int(r.n),
        "cpuPercent": _r2(r.cpu),
        "cpuPercentMax": _r2(r.cpu_max),
        "loadAvg1": _r2(r.load),
        "memUsedBytes": _int(r.mem),
        "memTotalBytes": _int(r.mem_total),
        "diskUsedBytes": _int(r.disk),
        "diskTotalBytes": _int(r.disk_total),
        "netRxBps": _int(r.rx),
        "netTxBps": _int(r.tx),
        "instanceCount": int(r.instance_count),
    }


async def bucket_series(rt: Runtime, session: AsyncSession, principal: Principal, instance_id: str | None,
                        first_ms: int, step_ms: int, count: int) -> list[dict[str, Any]]:
    """`count` buckets of `step_ms` starting at `first_ms`, gap-filled, for one instance or the fleet."""
    end_ms = first_ms + step_ms * count
    marks = await repo.read_watermarks(session)
    segments = repo.plan_segments(tiers_for(step_ms), first_ms, end_ms, marks)
    fleet = instance_id is None
    instances: Any = instance_id if instance_id is not None else in_fleet(principal)
    per_instance = repo.per_instance_buckets(segments, rt.db.dialect, step_ms, instances)
    found: dict[int, dict[str, Any]] = {}
    if per_instance is not None:
        if fleet:
            for r in await session.execute(repo.fleet_buckets(per_instance)):
                found[int(r.bucket_ms)] = _fleet_bucket(int(r.bucket_ms), r)
        else:
            for r in await session.execute(per_instance):
                if r.n:
                    found[int(r.bucket_ms)] = _instance_bucket(int(r.bucket_ms), r)
    return [found.get(first_ms + i * step_ms) or empty_bucket(first_ms + i * step_ms, fleet) for i in range(count)]


async def timeseries(rt: Runtime, principal: Principal, range_name: str | None,
                     instance_id: str | None) -> dict[str, Any]:
    """§9.2 / §9.6: a fixed range ending with the bucket that contains now."""
    name = (range_name or "1h").strip().lower()
    if name not in RANGES:
        raise _unprocessable("range", "must be one of " + ", ".join(RANGES))
    bucket_seconds, count = RANGES[name]
    step = bucket_seconds * 1000
    now = clock.now_ms()
    first = now // step * step - (count - 1) * step
    async with rt.db.read() as s:
        inst = await resolve_instance(s, principal, instance_id)
        data = await bucket_series(rt, s, principal, inst, first, step, count)
    return {"range": name, "bucketSeconds": bucket_seconds, "from": ms_to_iso(first), "to": ms_to_iso(now),
            "instanceId": inst, "data": data}


@dataclass(frozen=True)
class RangeQuery:
    from_ms: int
    to_ms: int
    granularity: str
    instance_id: str | None
    limit: int


def _bucket_count(from_ms: int, to_ms: int, step_ms: int) -> int:
    return (to_ms // step_ms - from_ms // step_ms) + 1


def resolve_granularity(requested: str, from_ms: int, to_ms: int) -> str:
    if requested != "auto":
        return requested
    for name, seconds in GRANULARITIES.items():
        if _bucket_count(from_ms, to_ms, seconds * 1000) <= AUTO_MAX_BUCKETS:
            return name
    return "1d"


def raw_point_to_wire(p: MetricPoint) -> dict[str, Any]:
    out: dict[str, Any] = {"timestamp": ms_to_iso(p.ts_ms)}
    for col in RAW_COLUMNS:
        out[to_camel(col)] = getattr(p, col)
    return out


async def timeseries_range(rt: Runtime, principal: Principal, q: RangeQuery) -> dict[str, Any]:
    """§9.3: bucketed series over [from, to] or raw points of one instance."""
    granularity = resolve_granularity(q.granularity, q.from_ms, q.to_ms)
    if granularity == "raw":
        if q.instance_id is None:
            raise _unprocessable("instanceId", "is required for granularity raw")
        if q.to_ms - q.from_ms > RAW_MAX_SPAN_MS:
            raise _unprocessable("to", "must be at most 48 hours after from for granularity raw",
                                 "Invalid request: raw points can be read over at most 48 hours")
    else:
        step = GRANULARITIES[granularity] * 1000
        n = _bucket_count(q.from_ms, q.to_ms, step)
        if n > MAX_BUCKETS:
            raise ApiError(422, f"Range too large for granularity {granularity}: {n} buckets (max {MAX_BUCKETS})",
                           [{"field": "granularity", "message": f"gives {n} buckets (max {MAX_BUCKETS})"}])
    async with rt.db.read() as s:
        inst = await resolve_instance(s, principal, q.instance_id)
        if granularity == "raw":
            points, truncated = await repo.raw_points(s, str(inst), q.from_ms, q.to_ms, q.limit)
            data = [raw_point_to_wire(p) for p in points]
            oldest = await repo.oldest_time(s, "raw", inst, None)
            bucket_seconds = None
        else:
            first = q.from_ms // step * step
            data = await bucket_series(rt, s, principal, inst, first, step, n)
            truncated = False
            tiers = tiers_for(step)
            oldest = await repo.oldest_time(s, tiers[0], inst, None if inst else scope_ids(principal))
            bucket_seconds = step // 1000
    meta = {"instanceId": inst, "from": ms_to_iso(q.from_ms), "to": ms_to_iso(q.to_ms),
            "granularity": granularity, "bucketSeconds": bucket_seconds, "count": len(data),
            "truncated": truncated, "dataAvailableFrom": ms_to_iso(oldest)}
    return {"data": data, "meta": meta}


def _aggregate_row(r: Any) -> dict[str, Any]:
    return {
        "sampleCount": int(r.n),
        "avgCpuPercent": _r2(_ratio(r.cpu_sum, r.n)),
        "maxCpuPercent": _r2(r.cpu_max),
        "avgMemUsedBytes": _int(_ratio(r.mem_sum, r.mem_n)),
        "maxMemUsedBytes": r.mem_max,
        "avgDiskUsedBytes": _int(_ratio(r.disk_sum, r.disk_n)),
        "maxDiskUsedBytes": r.disk_max,
        "avgLoadAvg1": _r2(_ratio(r.load_sum, r.load_n)),
        "avgNetRxBps": _int(_ratio(r.rx_sum, r.rx_n)),
        "avgNetTxBps": _int(_ratio(r.tx_sum, r.tx_n)),
        "firstSampleAt": ms_to_iso(r.first_ms),
        "lastSampleAt": ms_to_iso(r.last_ms),
    }


@dataclass
class _Totals:
    """Sample-weighted fleet totals merged from per-instance partial aggregates."""

    n: int = 0
    cpu_sum: float = 0.0
    cpu_max: float | None = None
    mem_sum: float = 0.0
    mem_n: int = 0
    mem_max: int | None = None
    disk_sum: float = 0.0
    disk_n: int = 0
    disk_max: int | None = None
    load_sum: float = 0.0
    load_n: int = 0
    rx_sum: float = 0.0
    rx_n: int = 0
    tx_sum: float = 0.0
    tx_n: int = 0
    first_ms: int | None = None
    last_ms: int | None = None

    def add(self, r: Any) -> None:
        for name in ("n", "mem_n", "disk_n", "load_n", "rx_n", "tx_n"):
            setattr(self, name, getattr(self, name) + int(getattr(r, name) or 0))
        for name in ("cpu_sum", "mem_sum", "disk_sum", "load_sum", "rx_sum", "tx_sum"):
            setattr(self, name, getattr(self, name) + float(getattr(r, name) or 0.0))
        for name in ("cpu_max", "mem_max", "disk_max", "last_ms"):
            v = getattr(r, name)
            if v is not None and (getattr(self, name) is None or v > getattr(self, name)):
                setattr(self, name, v)
        if r.first_ms is not None and (self.first_ms is None or r.first_ms < self.first_ms):
            self.first_ms = r.first_ms


async def aggregate(rt: Runtime, principal: Principal, from_ms: int, to_ms: int,
                    instance_id: str | None) -> dict[str, Any]:
    """§9.4: per-instance sample-weighted aggregates over [from, to] plus the fleet total."""
    if to_ms - from_ms > AGGREGATE_MAX_SPAN_MS:
        raise _unprocessable("to", "must be at most 400 days after from",
                             "Invalid request: the aggregate span is at most 400 days")
    now = clock.now_ms()
    tiers: tuple[str, ...]
    if to_ms - from_ms <= RAW_MAX_SPAN_MS:
        source, tiers = "raw", ("raw",)
    elif from_ms >= now - rt.settings.METRICS_1M_RETENTION_DAYS * DAY_MS:
        source, tiers = "1m", ("1m", "raw")
    else:
        source, tiers = "1h", ("1h", "15m", "1m", "raw")
    async with rt.db.read() as s:
        inst = await resolve_instance(s, principal, instance_id)
        marks = await repo.read_watermarks(s)
        # `to` is inclusive; segments are half-open
        segments = repo.plan_segments(tiers, from_ms, to_ms + 1, marks)
        instances: Any = inst if inst is not None else in_fleet(principal)
        stmt = repo.per_instance_buckets(segments, rt.db.dialect, None, instances)
        rows = [r for r in (await s.execute(stmt)).all() if r.n] if stmt is not None else []
        names = await repo.instance_names(s, [r.instance_id for r in rows])
    totals = _Totals()
    data = []
    for r in rows:
        totals.add(r)
        data.append({"instanceId": r.instance_id, "instanceName": names.get(r.instance_id), **_aggregate_row(r)})
    data.sort(key=lambda d: (d["instanceName"] or "", d["instanceId"]))
    return {"from": ms_to_iso(from_ms), "to": ms_to_iso(to_ms), "source": source, "data": data,
            "fleet": _aggregate_row(totals)}


def _percent(used: int | None, total: int | None) -> float | None:
    if used is None or not total:
        return None
    return round(used / total * 100, 2)


def latest_to_wire(row: Any, stale_before_ms: int) -> dict[str, Any]:
    return {
        "instanceId": row.instance_id,
        "instanceName": row.name,
        "timestamp": ms_to_iso(row.ts_ms),
        "cpuPercent": row.cpu_percent,
        "memUsedBytes": row.mem_used_bytes,
        "memTotalBytes": row.mem_total_bytes,
        "memPercent": _percent(row.mem_used_bytes, row.mem_total_bytes),
        "diskUsedBytes": row.disk_used_bytes,
        "diskTotalBytes": row.disk_total_bytes,
        "diskPercent": _percent(row.disk_used_bytes, row.disk_total_bytes),
        "loadAvg1": row.load_avg_1,
        "loadAvg5": row.load_avg_5,
        "loadAvg15": row.load_avg_15,
        "netRxBps": row.net_rx_bps,
        "netTxBps": row.net_tx_bps,
        "stale": row.ts_ms < stale_before_ms,
    }


async def latest(rt: Runtime, principal: Principal, ids: list[str] | None) -> dict[str, Any]:
    """§9.5: the one-row-per-instance latest table, for live in-scope instances."""
    stale_before = clock.now_ms() - rt.settings.METRICS_STALE_SECONDS * 1000
    async with rt.db.read() as s:
        rows = await repo.latest_rows(s, in_fleet(principal), ids, LATEST_MAX_ROWS)
    return {"data": [latest_to_wire(r, stale_before) for r in rows]}
