"""Metrics routes (10-core §9.2-§9.6; acceptance checks 105-115)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from tests.domains.metrics.helpers import put, sample

from sindri_console.domains.metrics.rollup import rollup_tick
from sindri_console.kit.clock import clock, ms_to_iso

MIN = 60_000
HOUR = 3_600_000


def _iso(ms: int) -> str:
    return ms_to_iso(ms) or ""


def _bucket(data: list[dict[str, Any]], ts_ms: int) -> dict[str, Any]:
    """The bucket starting at ts_ms (a slow run may cross a minute between writing and reading)."""
    return next(d for d in data if d["timestamp"] == _iso(ts_ms))


def _by_time(data: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["timestamp"]: d for d in data}


async def test_timeseries_needs_credentials_and_valid_range(console: Any, admin: str) -> None:
    r = await console.client.get("/api/v1/metrics/timeseries")
    assert r.status_code == 401
    r = await console.client.get("/api/v1/metrics/timeseries?range=99y", headers=console.auth(admin))
    assert r.status_code == 422
    assert r.json()["details"][0]["field"] == "range"


@pytest.mark.parametrize(("range_", "seconds", "count"),
                         [(None, 60, 60), ("1h", 60, 60), ("6h", 300, 72), ("24h", 900, 96), ("7d", 3600, 168)])
async def test_fixed_ranges_have_aligned_gap_filled_buckets(console: Any, admin: str, range_: str | None,
                                                            seconds: int, count: int) -> None:
    url = "/api/v1/metrics/timeseries" + (f"?range={range_}" if range_ else "")
    before = clock.now_ms()
    body = (await console.client.get(url, headers=console.auth(admin))).json()
    assert body["bucketSeconds"] == seconds and body["range"] == (range_ or "1h")
    assert body["instanceId"] is None
    data = body["data"]
    assert len(data) == count
    stamps = [datetime.fromisoformat(d["timestamp"].replace("Z", "+00:00")) for d in data]
    assert all(int(s.timestamp()) % seconds == 0 for s in stamps)
    assert all((b - a).total_seconds() == seconds for a, b in zip(stamps, stamps[1:], strict=False))
    after = clock.now_ms()
    last_ms = int(stamps[-1].timestamp() * 1000)
    assert before < last_ms + seconds * 1000 and last_ms <= after
    assert body["from"] == data[0]["timestamp"]
    for d in data:
        assert d["sampleCount"] == 0 and d["cpuPercent"] is None and d["instanceCount"] == 0


async def test_instance_series_values_from_samples(console: Any, admin: str) -> None:
    inst = (await console.register(admin, "m1"))["id"]
    now = clock.now_ms()
    minute = now // MIN * MIN
    await put(console, [sample(inst, minute + i, cpu=c, mem=m, total=8000, disk_used_bytes=None)
                        for i, (c, m) in enumerate([(10, 1000), (20, 2000), (30, 3001)])])
    r = await console.client.get(f"/api/v1/instances/{inst}/metrics?range=1h", headers=console.auth(admin))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["instanceId"] == inst
    last = _bucket(body["data"], minute)
    assert last["sampleCount"] == 3 and last["cpuPercent"] == 20 and last["cpuPercentMax"] == 30
    assert last["memUsedBytes"] == 2000 and last["memTotalBytes"] == 8000
    assert last["diskUsedBytes"] is None and last["loadAvg1"] is None
    assert "instanceCount" not in last
    assert sum(d["sampleCount"] for d in body["data"]) == 3
    # the same through the query form
    r2 = await console.client.get(f"/api/v1/metrics/timeseries?instanceId={inst}", headers=console.auth(admin))
    assert _bucket(r2.json()["data"], minute) == last


async def test_series_is_the_same_before_and_after_rollup(console: Any, admin: str) -> None:
    a = (await console.register(admin, "roll-a"))["id"]
    b = (await console.register(admin, "roll-b"))["id"]
    now = clock.now_ms()
    base = now // HOUR * HOUR - 30 * HOUR
    samples = []
    for k in range(0, 30 * 60, 7):  # every 7 minutes for 30 hours, both instances
        ts = base + k * MIN + 1234
        samples.append(sample(a, ts, cpu=(k % 97), mem=1000 + k, disk_used_bytes=500 + k, net_rx_bps=k))
        if k % 2:
            samples.append(sample(b, ts, cpu=50, mem=10, load_avg_1=0.5))
    await put(console, samples)
    urls = [f"/api/v1/metrics/timeseries?range={r}" for r in ("1h", "6h", "24h", "7d")]
    urls += [f"/api/v1/metrics/timeseries?range={r}&instanceId={a}" for r in ("6h", "24h", "7d")]
    before = [(await console.client.get(u, headers=console.auth(admin))).json()["data"] for u in urls]
    await rollup_tick(console.rt.db)
    await rollup_tick(console.rt.db)
    after = [(await console.client.get(u, headers=console.auth(admin))).json()["data"] for u in urls]
    for b_data, a_data in zip(before, after, strict=True):
        b_map, a_map = _by_time(b_data), _by_time(a_data)
        common = set(b_map) & set(a_map)  # a slow run may shift a window by one bucket
        assert len(common) >= len(b_data) - 1
        assert all(b_map[t] == a_map[t] for t in common)
    week = after[3]
    assert sum(d["sampleCount"] for d in week) == len(samples)
    assert max(d["instanceCount"] for d in week) == 2


async def test_fleet_series_means_and_sums(console: Any, admin: str) -> None:
    a = (await console.register(admin, "fleet-a"))["id"]
    b = (await console.register(admin, "fleet-b"))["id"]
    minute = clock.now_ms() // MIN * MIN
    await put(console, [
        sample(a, minute + 1, cpu=10, mem=100, total=1000, net_rx_bps=5),
        sample(a, minute + 2, cpu=30, mem=300, total=1000, net_rx_bps=15),
        sample(b, minute + 3, cpu=80, mem=1000, total=4000),
    ])
    data = (await console.client.get("/api/v1/metrics/timeseries", headers=console.auth(admin))).json()["data"]
    last = _bucket(data, minute)
    assert last["instanceCount"] == 2 and last["sampleCount"] == 3
    assert last["cpuPercent"] == 50  # mean of 20 and 80
    assert last["cpuPercentMax"] == 80
    assert last["memUsedBytes"] == 1200 and last["memTotalBytes"] == 5000
    assert last["netRxBps"] == 10


async def test_range_validation(console: Any, admin: str) -> None:
    h = console.auth(admin)
    base = "/api/v1/metrics/timeseries/range"
    ok_from, ok_to = "2026-11-20T00:00:00Z", "2026-11-20T01:00:00Z"
    cases = [
        f"{base}?from={ok_to}&to={ok_from}",
        f"{base}?from={ok_to}&to={ok_to}",
        f"{base}?from={ok_from}&to={ok_to}&granularity=raw",
        f"{base}?from=2026-11-01T00:00:00Z&to=2026-11-11T00:00:00Z&granularity=1m",
        f"{base}?from={ok_from}&to={ok_to}&granularity=bogus",
        f"{base}?to={ok_to}",
        f"{base}?from=2026-11-20T00:00:00&to={ok_to}",
        f"{base}?from=yesterday&to={ok_to}",
    ]
    for url in cases:
        r = await console.client.get(url, headers=h)
        assert r.status_code == 422, (url, r.text)
        assert r.json()["statusCode"] == 422
    r = await console.client.get(f"{base}?from=2026-11-01T00:00:00Z&to=2026-11-11T00:00:00Z&granularity=1m",
                                 headers=h)
    assert r.json()["message"] == "Range too large for granularity 1m: 14401 buckets (max 5000)"


async def test_range_raw_points_and_truncation(console: Any, admin: str) -> None:
    inst = (await console.register(admin, "rawpts"))["id"]
    now = clock.now_ms()
    await put(console, [sample(inst, now - 3000 + i * 1000, cpu=10 * (i + 1), mem=111 * (i + 1),
                               net_bytes_recv=6000 * i, net_rx_bps=100) for i in range(3)])
    h = console.auth(admin)
    q = f"from={_iso(now - 60_000)}&to={_iso(now + 1000)}&instanceId={inst}&granularity=raw"
    body = (await console.client.get(f"/api/v1/metrics/timeseries/range?{q}", headers=h)).json()
    assert [p["cpuPercent"] for p in body["data"]] == [10, 20, 30]
    assert all(isinstance(p["memUsedBytes"], int) for p in body["data"])
    assert body["data"][1]["netBytesRecv"] == 6000 and body["data"][0]["diskUsedBytes"] is None
    assert body["meta"]["truncated"] is False and body["meta"]["bucketSeconds"] is None
    assert body["meta"]["granularity"] == "raw" and body["meta"]["count"] == 3
    assert body["meta"]["dataAvailableFrom"] == _iso(now - 3000)
    body = (await console.client.get(f"/api/v1/metrics/timeseries/range?{q}&limit=2", headers=h)).json()
    assert [p["cpuPercent"] for p in body["data"]] == [20, 30]
    assert body["meta"]["truncated"] is True
    r = await console.client.get(f"/api/v1/metrics/timeseries/range?{q}&limit=0", headers=h)
    assert r.status_code == 422
    far = f"from={_iso(now - 49 * HOUR)}&to={_iso(now)}&instanceId={inst}&granularity=raw"
    assert (await console.client.get(f"/api/v1/metrics/timeseries/range?{far}", headers=h)).status_code == 422


async def test_range_bucketed_and_auto(console: Any, admin: str) -> None:
    inst = (await console.register(admin, "bucketed"))["id"]
    day = clock.now_ms() // 86_400_000 * 86_400_000
    await put(console, [sample(inst, day + 90 * MIN + 5, cpu=40)])
    h = console.auth(admin)
    q = f"from={_iso(day + 61 * MIN + 30_000)}&to={_iso(day + 2 * HOUR)}&granularity=15m&instanceId={inst}"
    body = (await console.client.get(f"/api/v1/metrics/timeseries/range?{q}", headers=h)).json()
    stamps = [d["timestamp"] for d in body["data"]]
    assert stamps[0] == _iso(day + 60 * MIN) and stamps[-1] == _iso(day + 120 * MIN) and len(stamps) == 5
    assert [d["sampleCount"] for d in body["data"]] == [0, 0, 1, 0, 0]
    assert body["meta"]["bucketSeconds"] == 900 and body["meta"]["truncated"] is False
    q = f"from={_iso(day)}&to={_iso(day + 10 * 86_400_000)}&granularity=auto"
    body = (await console.client.get(f"/api/v1/metrics/timeseries/range?{q}", headers=h)).json()
    assert body["meta"]["granularity"] == "1h" and body["meta"]["count"] == 241


async def test_aggregate(console: Any, admin: str) -> None:
    m1 = (await console.register(admin, "agg-m1"))["id"]
    m2 = (await console.register(admin, "agg-a2"))["id"]
    now = clock.now_ms()
    await put(console, [sample(m1, now - 3000 + i, cpu=c, mem=100 * c) for i, c in enumerate((10, 20, 30))])
    await put(console, [sample(m2, now - 2000, cpu=90, mem=5, disk_used_bytes=7)])
    h = console.auth(admin)
    q = f"from={_iso(now - HOUR)}&to={_iso(now)}"
    body = (await console.client.get(f"/api/v1/metrics/aggregate?{q}&instanceId={m1}", headers=h)).json()
    assert body["source"] == "raw"
    [row] = body["data"]
    assert row["avgCpuPercent"] == 20 and row["maxCpuPercent"] == 30 and row["sampleCount"] == 3
    assert row["avgMemUsedBytes"] == 2000 and row["maxMemUsedBytes"] == 3000 and row["avgDiskUsedBytes"] is None
    assert row["instanceName"] == "agg-m1" and row["firstSampleAt"] == _iso(now - 3000)
    body = (await console.client.get(f"/api/v1/metrics/aggregate?{q}", headers=h)).json()
    assert [d["instanceName"] for d in body["data"]] == ["agg-a2", "agg-m1"]
    assert body["fleet"]["sampleCount"] == 4 and body["fleet"]["avgCpuPercent"] == 37.5
    assert body["fleet"]["avgDiskUsedBytes"] == 7
    long_ago = datetime.fromtimestamp((now - 401 * 86_400_000) / 1000, UTC).isoformat()
    r = await console.client.get(f"/api/v1/metrics/aggregate?from={long_ago.replace('+00:00', 'Z')}"
                                 f"&to={_iso(now)}", headers=h)
    assert r.status_code == 422
    r = await console.client.get(f"/api/v1/metrics/aggregate?from={_iso(now - 3 * 86_400_000)}&to={_iso(now)}",
                                 headers=h)
    assert r.json()["source"] == "1m" and r.json()["fleet"]["sampleCount"] == 4
    r = await console.client.get(f"/api/v1/metrics/aggregate?from={_iso(now - 90 * 86_400_000)}&to={_iso(now)}",
                                 headers=h)
    assert r.json()["source"] == "1h" and r.json()["fleet"]["sampleCount"] == 4


async def test_latest_and_staleness(console: Any, admin: str) -> None:
    m1 = (await console.register(admin, "lat-m1"))["id"]
    m2 = (await console.register(admin, "lat-m2"))["id"]
    now = clock.now_ms()
    await put(console, [sample(m1, now - 10_000, cpu=5, mem=333, total=1000, disk_used_bytes=1,
                               disk_total_bytes=0, load_avg_5=0.25)])
    await put(console, [sample(m1, now - 1000, cpu=7, mem=1, total=3)])
    await put(console, [sample(m2, now - 1000, cpu=9, mem=1, total=3)])
    h = console.auth(admin)
    body = (await console.client.get("/api/v1/metrics/latest", headers=h)).json()
    assert [d["instanceName"] for d in body["data"]] == ["lat-m1", "lat-m2"]
    first = body["data"][0]
    assert first["cpuPercent"] == 7 and first["memPercent"] == 33.33 and first["stale"] is False
    assert first["diskPercent"] is None and first["timestamp"] == _iso(now - 1000)
    body = (await console.client.get(f"/api/v1/metrics/latest?instanceIds={m2},nope,{m2}", headers=h)).json()
    assert [d["instanceId"] for d in body["data"]] == [m2]
    clock.advance(console.rt.settings.METRICS_STALE_SECONDS + 5)
    body = (await console.client.get("/api/v1/metrics/latest", headers=h)).json()
    assert all(d["stale"] for d in body["data"])
    many = ",".join(f"id{i}" for i in range(101))
    assert (await console.client.get(f"/api/v1/metrics/latest?instanceIds={many}", headers=h)).status_code == 422


async def test_unknown_instance_and_bad_range(console: Any, admin: str) -> None:
    h = console.auth(admin)
    assert (await console.client.get("/api/v1/instances/nope/metrics", headers=h)).status_code == 404
    assert (await console.client.get("/api/v1/metrics/timeseries?instanceId=nope", headers=h)).status_code == 404
    inst = (await console.register(admin, "bad-range"))["id"]
    r = await console.client.get(f"/api/v1/instances/{inst}/metrics?range=bad", headers=h)
    assert r.status_code == 422
    r = await console.client.get("/api/v1/instances/bad%20id/metrics", headers=h)
    assert r.status_code == 400
