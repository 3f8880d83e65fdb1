"""The rollup loop (10-core §16.2): minutes from raw, late points re-rolled, hours from minutes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from tests.domains.metrics.helpers import put, sample

from sindri_console.domains.metrics.rollup import rollup_tick
from sindri_console.kit.clock import clock
from sindri_console.models.metrics import Metric1h, Metric1m, Metric15m, MetricDirty, RollupState

MIN = 60_000
HOUR = 3_600_000


async def _rows(console: Any, model: Any, instance_id: str) -> list[Any]:
    async with console.rt.db.read() as s:
        return list(await s.scalars(select(model).where(model.instance_id == instance_id)
                                    .order_by(model.bucket_ms)))


async def _marks(console: Any) -> dict[str, int]:
    async with console.rt.db.read() as s:
        return {r.name: r.watermark_ms for r in await s.scalars(select(RollupState))}


async def test_minutes_and_hours_from_raw(console: Any, admin: str) -> None:
    inst = (await console.register(admin, "roll-a"))["id"]
    now = clock.now_ms()
    hour0 = now // HOUR * HOUR - 3 * HOUR
    samples = [
        sample(inst, hour0 + 5_000, cpu=10, mem=100, disk_used_bytes=50, net_rx_bps=10),
        sample(inst, hour0 + 20_000, cpu=30, mem=300, load_avg_1=1.5),
        sample(inst, hour0 + MIN + 1, cpu=50, mem=500, disk_used_bytes=70, core_count=4),
        sample(inst, hour0 + HOUR + 7, cpu=70, mem=700, total=8000),
    ]
    await put(console, samples)
    res = await rollup_tick(console.rt.db, now_ms=now)
    assert res.minutes > 0
    marks = await _marks(console)
    assert marks["1m"] == (now - 5_000) // MIN * MIN
    assert marks["1h"] == marks["1m"] // HOUR * HOUR
    assert marks["15m"] == marks["1m"] // (15 * MIN) * (15 * MIN)
    minutes = await _rows(console, Metric1m, inst)
    assert [m.bucket_ms for m in minutes] == [hour0, hour0 + MIN, hour0 + HOUR]
    first = minutes[0]
    assert first.sample_count == 2 and first.cpu_avg == pytest.approx(20) and first.cpu_max == 30
    assert first.mem_used_avg == pytest.approx(200) and first.mem_used_max == 300 and first.mem_used_n == 2
    assert first.disk_used_avg == pytest.approx(50) and first.disk_used_n == 1
    assert first.load_avg_1_avg == pytest.approx(1.5) and first.load_avg_1_n == 1
    assert first.net_tx_bps_avg is None and first.net_tx_bps_n == 0
    hours = await _rows(console, Metric1h, inst)
    assert [h.bucket_ms for h in hours] == [hour0, hour0 + HOUR]
    h0 = hours[0]
    assert h0.sample_count == 3 and h0.cpu_avg == pytest.approx(30) and h0.cpu_max == 50
    assert h0.disk_used_avg == pytest.approx(60) and h0.disk_used_n == 2
    assert h0.core_count_max == 4 and h0.mem_total_max == 4000
    assert hours[1].mem_total_max == 8000
    quarters = await _rows(console, Metric15m, inst)
    assert [(q.bucket_ms, q.sample_count) for q in quarters] == [(hour0, 3), (hour0 + HOUR, 1)]
    assert quarters[0].cpu_avg == pytest.approx(30) and quarters[0].disk_used_n == 2
    # a second tick changes nothing
    again = await rollup_tick(console.rt.db, now_ms=now)
    assert not again
    assert len(await _rows(console, Metric1m, inst)) == 3


async def test_late_point_is_rerolled(console: Any, admin: str) -> None:
    inst = (await console.register(admin, "roll-late"))["id"]
    now = clock.now_ms()
    minute = now // MIN * MIN - 2 * HOUR
    await put(console, [sample(inst, minute + 1000, cpu=10)])
    await rollup_tick(console.rt.db)
    await put(console, [sample(inst, minute + 2000, cpu=30)])
    async with console.rt.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(MetricDirty)) == 1
    await rollup_tick(console.rt.db)
    rows = await _rows(console, Metric1m, inst)
    assert rows[0].sample_count == 2 and rows[0].cpu_avg == pytest.approx(20)
    hours = await _rows(console, Metric1h, inst)
    assert hours[0].sample_count == 2 and hours[0].cpu_max == 30
    quarters = await _rows(console, Metric15m, inst)
    assert quarters[0].sample_count == 2 and quarters[0].cpu_avg == pytest.approx(20)
    async with console.rt.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(MetricDirty)) == 0


async def test_claimed_minutes_take_late_points_and_an_unfinished_claim_is_finished(console: Any, admin: str) -> None:
    """A tick that moved the claim line and died before building: points under the line are late
    (dirty), and the next tick builds the claimed minutes first."""
    inst = (await console.register(admin, "roll-claim"))["id"]
    now = clock.now_ms()
    base = now // MIN * MIN - HOUR
    await put(console, [sample(inst, base + 1000, cpu=10)])
    await rollup_tick(console.rt.db, now_ms=base + 2 * MIN)  # builds up to base + MIN
    marks = await _marks(console)
    assert marks["1m"] == marks["1m-claim"] == base + MIN
    # the dead tick: claim moved 10 minutes on, nothing built
    async with console.rt.db.write() as s:
        await s.execute(RollupState.__table__.update().where(RollupState.name == "1m-claim")
                        .values(watermark_ms=base + 11 * MIN))
    await put(console, [sample(inst, base + 5 * MIN + 7, cpu=50)])
    async with console.rt.db.read() as s:
        dirty = (await s.execute(select(MetricDirty.instance_id, MetricDirty.minute_ms))).all()
    assert [tuple(d) for d in dirty] == [(inst, base + 5 * MIN)]
    await rollup_tick(console.rt.db, now_ms=base + 3 * MIN)  # closed end before the claim: claim still finished
    assert (await _marks(console))["1m"] == base + 11 * MIN
    rows = await _rows(console, Metric1m, inst)
    assert [(r.bucket_ms, r.sample_count) for r in rows] == [(base, 1), (base + 5 * MIN, 1)]
    async with console.rt.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(MetricDirty)) == 0


async def test_catch_up_is_bounded_per_tick(console: Any, admin: str) -> None:
    inst = (await console.register(admin, "roll-catchup"))["id"]
    now = clock.now_ms()
    start = now // MIN * MIN - 3 * 1440 * MIN
    await put(console, [sample(inst, start + 10), sample(inst, now - 60 * MIN)])
    res = await rollup_tick(console.rt.db, now_ms=now)
    assert res.minutes == 1440
    assert (await _marks(console))["1m"] == start + 1440 * MIN
    await rollup_tick(console.rt.db, now_ms=now)
    await rollup_tick(console.rt.db, now_ms=now)
    await rollup_tick(console.rt.db, now_ms=now)
    assert (await _marks(console))["1m"] == (now - 5_000) // MIN * MIN
    assert sum(m.sample_count for m in await _rows(console, Metric1m, inst)) == 2
    assert sum(h.sample_count for h in await _rows(console, Metric1h, inst)) == 2


points = st.lists(
    st.tuples(st.integers(0, 3 * HOUR - 1), st.floats(0, 100, allow_nan=False),
              st.integers(0, 10**12), st.one_of(st.none(), st.integers(0, 10**9))),
    min_size=1, max_size=40, unique_by=lambda p: p[0],
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pts=points)
async def test_rollups_equal_raw_computation(console: Any, admin: str, pts: list[Any]) -> None:
    name = f"prop-{uuid.uuid4().hex[:12]}"
    inst = (await console.register(admin, name))["id"]
    base = clock.now_ms() // HOUR * HOUR - 4 * HOUR
    await put(console, [sample(inst, base + t, cpu=c, mem=m, net_rx_bps=rx) for t, c, m, rx in pts])
    await rollup_tick(console.rt.db)
    for model, step in ((Metric15m, 15 * MIN), (Metric1h, HOUR)):
        by_bucket: dict[int, list[Any]] = {}
        for t, c, m, rx in pts:
            by_bucket.setdefault((base + t) // step * step, []).append((c, m, rx))
        rows = {h.bucket_ms: h for h in await _rows(console, model, inst)}
        assert set(rows) == set(by_bucket)
        for bucket, vals in by_bucket.items():
            h = rows[bucket]
            assert h.sample_count == len(vals)
            assert h.cpu_avg == pytest.approx(sum(v[0] for v in vals) / len(vals), rel=1e-9, abs=1e-9)
            assert h.cpu_max == pytest.approx(max(v[0] for v in vals))
            assert h.mem_used_avg == pytest.approx(sum(v[1] for v in vals) / len(vals), rel=1e-9)
            assert h.mem_used_max == max(v[1] for v in vals)
            rx = [v[2] for v in vals if v[2] is not None]
            assert h.net_rx_bps_n == len(rx)
            if rx:
                assert h.net_rx_bps_avg == pytest.approx(sum(rx) / len(rx), rel=1e-9)
            else:
                assert h.net_rx_bps_avg is None
