"""Metrics and fleet read speed (10-core §18) at the specified data sizes.

Usage:  python bench/metrics_queries.py [--database sqlite|postgresql] [--instances 10000]
                                        [--reporting 1000] [--requests 50]

Seeds a fresh database directly: `--instances` live instances spread over regions (fleet stats and
geo), `--reporting` of them with one raw point every 60 s for the last 24 h and a latest row (fleet
24 h series, latest), and one instance with 90 days of history (14 days of raw points, 1-minute
rollups back to 30 days, 1-hour rollups back to 90 days: what retention leaves behind). The rollup
loop then runs until it has caught up (its ticks are timed too), a real `sindri-console serve` starts
on 127.0.0.1 with loops off, and each route is called `--requests` times; p50/p95/p99 in ms.
Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stats import pct  # noqa: E402
from tests.e2e.server import fresh_database, start_server  # noqa: E402

from sindri_console.db.engine import Database  # noqa: E402
from sindri_console.domains.instances.geo import region_table  # noqa: E402
from sindri_console.domains.metrics.repository import TIER_STEP_MS  # noqa: E402
from sindri_console.domains.metrics.rollup import rollup_tick  # noqa: E402
from sindri_console.kit.ids import new_id  # noqa: E402
from sindri_console.models.instance import Instance  # noqa: E402
from sindri_console.models.metrics import Metric1h, Metric1m, MetricLatest, MetricPoint  # noqa: E402

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
REGIONS = ["sea", "iad", "fra", "ams", "lhr", "nrt", "syd", "gru", "sin", "ord", "dfw", "cdg", "local"]
PROVIDERS = ["fly", "docker", "kubernetes", "aws", "gcp"]
STATUSES = ["RUNNING", "RUNNING", "RUNNING", "SUSPENDED", "UNREACHABLE", "STOPPED", "ERROR"]
CHUNK = 5000


def report(label: str, values: list[float]) -> None:
    print(f"{label:62s} n={len(values):4d}  p50={statistics.median(values):8.2f} ms  "
          f"p95={pct(values, 95):8.2f} ms  p99={pct(values, 99):8.2f} ms", flush=True)


def _point(instance_id: str, ts: int, rng: random.Random) -> dict[str, Any]:
    return {"instance_id": instance_id, "ts_ms": ts, "cpu_percent": rng.uniform(0, 100), "load_avg_1": rng.uniform(0, 4),
            "mem_used_bytes": rng.randrange(1 << 30, 8 << 30), "mem_total_bytes": 8 << 30,
            "disk_used_bytes": rng.randrange(10 << 30, 50 << 30), "disk_total_bytes": 100 << 30,
            "net_rx_bps": rng.randrange(0, 10_000_000), "net_tx_bps": rng.randrange(0, 10_000_000), "core_count": 4}


def _rollup_row(instance_id: str, bucket: int, n: int, rng: random.Random) -> dict[str, Any]:
    cpu = rng.uniform(0, 100)
    return {"instance_id": instance_id, "bucket_ms": bucket, "sample_count": n, "cpu_avg": cpu,
            "cpu_max": min(100.0, cpu + 5), "mem_used_avg": float(4 << 30), "mem_used_max": 5 << 30,
            "disk_used_avg": float(20 << 30), "disk_used_max": 21 << 30, "load_avg_1_avg": 1.0,
            "load_avg_1_max": 2.0, "net_rx_bps_avg": 1e6, "net_rx_bps_max": 2_000_000, "net_tx_bps_avg": 1e6,
            "net_tx_bps_max": 2_000_000, "mem_total_max": 8 << 30, "disk_total_max": 100 << 30,
            "core_count_max": 4, "mem_used_n": n, "disk_used_n": n, "load_avg_1_n": n, "net_rx_bps_n": n,
            "net_tx_bps_n": n}


async def _insert(db: Database, table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        async with db.write() as s:
            await s.execute(table.insert(), rows[start:start + CHUNK])


async def seed(url: str, n_instances: int, n_reporting: int) -> tuple[str, list[str]]:
    """Returns (the 90-day instance id, ids of the reporting instances)."""
    rng = random.Random(7)
    db = Database(url)
    table = region_table()
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    instances = []
    for i in range(n_instances):
        created = now - timedelta(seconds=n_instances - i)
        provider, region = PROVIDERS[i % len(PROVIDERS)], REGIONS[i % len(REGIONS)]
        entry = table.lookup(provider, region)
        instances.append({
            "id": new_id(), "name": f"bench-{i:05d}", "provider": provider, "region": region, "extensions": [],
            "tags": {}, "status": STATUSES[i % len(STATUSES)], "status_changed_at": created, "created_at": created,
            "updated_at": created, "sindri_version": ["3.4.1", "2.0.0", None][i % 3],
            "geo_lat": entry.lat if entry else None, "geo_lon": entry.lon if entry else None,
            "geo_label": entry.label if entry else None, "geo_source": "REGION_TABLE" if entry else None,
        })
    await _insert(db, Instance.__table__, instances)
    reporting = [row["id"] for row in instances if row["status"] == "RUNNING"][:n_reporting]
    t0 = time.perf_counter()
    start = now_ms - DAY
    points: list[dict[str, Any]] = []
    latest = []
    for inst in reporting:
        offset = rng.randrange(0, MIN)
        for k in range(1440):
            points.append(_point(inst, start + k * MIN + offset, rng))
        latest.append({**points[-1], "updated_at": now})
        if len(points) >= 50_000:
            await _insert(db, MetricPoint.__table__, points)
            points = []
    await _insert(db, MetricPoint.__table__, points)
    await _insert(db, MetricLatest.__table__, latest)
    long_lived = reporting[0]
    # the 90-day instance: raw for days 1-14 (day 0 is already there), 1-minute rows for days 14-30,
    # 1-hour rows for days 30-90
    raw = [_point(long_lived, now_ms - d * DAY + k * MIN + 7, rng) for d in range(14, 1, -1) for k in range(1440)]
    await _insert(db, MetricPoint.__table__, raw)
    minute_floor = now_ms // MIN * MIN
    minutes = [_rollup_row(long_lived, minute_floor - d * DAY + k * MIN, 1, rng)
               for d in range(30, 14, -1) for k in range(1440)]
    await _insert(db, Metric1m.__table__, minutes)
    hour_floor = now_ms // HOUR * HOUR
    hours = [_rollup_row(long_lived, hour_floor - d * DAY + k * HOUR, 60, rng) for d in range(90, 30, -1)
             for k in range(24)]
    await _insert(db, Metric1h.__table__, hours)
    total_raw = len(reporting) * 1440 + len(raw)
    print(f"seeded {n_instances} instances, {total_raw} raw points, {len(minutes)} 1m rows, {len(hours)} 1h rows "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)
    ticks = []
    while True:
        t1 = time.perf_counter()
        result = await rollup_tick(db)
        ticks.append((time.perf_counter() - t1) * 1000)
        # a tier that did a full tick's worth may have more to do
        full = result.minutes >= 1440 or any(n >= 1440 * MIN // TIER_STEP_MS[tier]
                                             for tier, n in result.coarse.items())
        if not full:
            break
    print(f"rollup caught up in {len(ticks)} ticks: {', '.join(f'{t / 1000:.1f}' for t in ticks)} s", flush=True)
    steady = []
    for _ in range(5):
        t1 = time.perf_counter()
        await rollup_tick(db)
        steady.append((time.perf_counter() - t1) * 1000)
    report("rollup tick, caught up (1 minute of new data at most)", steady)
    await db.dispose()
    return long_lived, reporting


def timed(client: httpx.Client, path: str, params: dict[str, str], count: int) -> list[float]:
    out = []
    client.get(path, params=params)  # warm-up
    for _ in range(count):
        t0 = time.perf_counter()
        r = client.get(path, params=params)
        out.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{path}: {r.status_code} {r.text[:200]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--instances", type=int, default=10_000)
    ap.add_argument("--reporting", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=50)
    args = ap.parse_args()
    if args.database == "postgresql":
        os.environ.setdefault("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    else:
        os.environ.pop("TEST_DATABASE_URL", None)
    os.environ.pop("TEST_REDIS_URL", None)
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp)) as url:
        server = start_server(Path(tmp), url, extra_env={"LOOPS_ENABLED": "false"})
        try:
            long_lived, reporting = asyncio.run(seed(url, args.instances, args.reporting))
            print(f"database={args.database} instances={args.instances} reporting={len(reporting)}", flush=True)
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"},
                              timeout=60) as c:
                n = args.requests
                report("GET /fleet/stats", timed(c, "/api/v1/fleet/stats", {}, n))
                report("GET /fleet/geo", timed(c, "/api/v1/fleet/geo", {}, n))
                report("GET /metrics/timeseries?range=7d&instanceId= (90 days)",
                       timed(c, "/api/v1/metrics/timeseries", {"range": "7d", "instanceId": long_lived}, n))
                report("GET /metrics/timeseries?range=24h&instanceId=",
                       timed(c, "/api/v1/metrics/timeseries", {"range": "24h", "instanceId": long_lived}, n))
                report(f"GET /metrics/timeseries?range=24h fleet ({len(reporting)} instances)",
                       timed(c, "/api/v1/metrics/timeseries", {"range": "24h"}, n))
                report("GET /metrics/timeseries?range=1h fleet",
                       timed(c, "/api/v1/metrics/timeseries", {"range": "1h"}, n))
                report(f"GET /metrics/latest ({len(reporting)} instances)",
                       timed(c, "/api/v1/metrics/latest", {}, n))
                report("GET /metrics/latest?instanceIds= (100 ids)",
                       timed(c, "/api/v1/metrics/latest", {"instanceIds": ",".join(reporting[:100])}, n))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
