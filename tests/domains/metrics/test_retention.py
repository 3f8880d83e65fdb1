"""The retention loop (10-core §10, §16.2): expired rows go in batches, the newest heartbeat stays."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from tests.domains.metrics.helpers import put, sample

from sindri_console.kit.clock import clock, utcnow
from sindri_console.kit.ids import new_id
from sindri_console.loops import retention
from sindri_console.models.audit import AuditLog
from sindri_console.models.instance import Heartbeat, InstanceEvent, InstanceStatusHistory
from sindri_console.models.metrics import Metric1h, Metric1m, Metric15m, MetricPoint

DAY = 86_400_000


async def _count(console: Any, model: Any, *where: Any) -> int:
    async with console.rt.db.read() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _rollup(model: Any, instance_id: str, bucket_ms: int) -> Any:
    return model(instance_id=instance_id, bucket_ms=bucket_ms, sample_count=1, cpu_avg=1.0, cpu_max=1.0,
                 mem_used_n=0, disk_used_n=0, load_avg_1_n=0, net_rx_bps_n=0, net_tx_bps_n=0)


async def test_retention_deletes_expired_rows_of_every_table(console: Any, admin: str) -> None:
    rt = console.rt
    st = rt.settings
    a = (await console.register(admin, "ret-a"))["id"]
    b = (await console.register(admin, "ret-b"))["id"]
    now_ms = clock.now_ms()
    now = utcnow()
    await put(console, [sample(a, now_ms - (st.METRICS_RAW_RETENTION_DAYS * DAY) + 60_000),
                        sample(a, now_ms - 1000)])
    async with rt.db.write() as s:
        # raw points older than retention cannot be stored through the writer: insert them directly
        s.add_all([MetricPoint(instance_id=a, ts_ms=now_ms - (st.METRICS_RAW_RETENTION_DAYS + 1) * DAY - i,
                               cpu_percent=1, mem_used_bytes=1, mem_total_bytes=1) for i in range(7)])
        s.add_all([_rollup(Metric1m, a, now_ms - (st.METRICS_1M_RETENTION_DAYS + 1) * DAY),
                   _rollup(Metric1m, a, now_ms - DAY),
                   _rollup(Metric15m, a, now_ms - (st.METRICS_1M_RETENTION_DAYS + 1) * DAY),
                   _rollup(Metric15m, a, now_ms - DAY),
                   _rollup(Metric1h, a, now_ms - (st.METRICS_1H_RETENTION_DAYS + 1) * DAY),
                   _rollup(Metric1h, a, now_ms - 300 * DAY)])
        old = now - timedelta(days=st.HEARTBEAT_RETENTION_DAYS + 1)
        for inst, stamps in ((a, [old - timedelta(hours=2), old - timedelta(hours=1), now]),
                             (b, [old - timedelta(hours=2), old - timedelta(hours=1)])):
            s.add_all([Heartbeat(id=new_id(), instance_id=inst, timestamp=t, received_at=t) for t in stamps])
        s.add(InstanceStatusHistory(id=new_id(), instance_id=a, from_status=None, to_status="RUNNING",
                                    changed_at=now - timedelta(days=st.STATUS_HISTORY_RETENTION_DAYS + 1)))
        s.add(InstanceEvent(id=new_id(), instance_id=a, type="ERROR", message="old",
                            ts_ms=now_ms - (st.EVENT_RETENTION_DAYS + 1) * DAY, metadata_={}, actor_kind="SYSTEM"))
        s.add(AuditLog(id=new_id(), ts_ms=now_ms - (st.AUDIT_RETENTION_DAYS + 1) * DAY, action="CREATE",
                       resource="instance", actor_kind="USER"))
    audit_before = await _count(console, AuditLog)
    events_before = await _count(console, InstanceEvent)
    history_before = await _count(console, InstanceStatusHistory)
    result = await retention.run_retention(rt, batch=3)
    assert result["complete"] is True
    assert result["deleted"]["metric_point"] == 7
    assert await _count(console, MetricPoint) == 2
    assert await _count(console, Metric1m) == 1 and await _count(console, Metric1h) == 1
    assert await _count(console, Metric15m) == 1
    # a: the two old rows go (a newer one exists); b: only the older one goes, its newest stays
    assert await _count(console, Heartbeat, Heartbeat.instance_id == a) == 1
    hb_b = await _count(console, Heartbeat, Heartbeat.instance_id == b)
    assert hb_b == 1
    assert await _count(console, InstanceStatusHistory) == history_before - 1
    assert await _count(console, InstanceEvent) == events_before - 1
    assert await _count(console, AuditLog) == audit_before - 1
    again = await retention.run_retention(rt)
    assert again["deleted"] == {}


async def test_registered_task_runs_and_budget_stops_a_run(console: Any) -> None:
    calls: list[int] = []

    async def fake_table(rt: Any, batch: int) -> int:
        calls.append(batch)
        return batch if len(calls) < 3 else 1

    retention.register_retention("test-extra", fake_table)
    try:
        result = await retention.run_retention(console.rt, batch=10)
        assert calls == [10, 10, 10] and result["deleted"]["test-extra"] == 21
        calls.clear()
        result = await retention.run_retention(console.rt, batch=10, budget_seconds=0)
        assert result["complete"] is False and calls == []
    finally:
        retention._tasks.pop("test-extra", None)


async def test_retention_loop_is_lease_guarded(console: Any) -> None:
    assert await console.rt.loops.run_once("retention") is not None
    assert await console.rt.loops.run_once("metrics-rollup") is not None
