"""Shared set-up for metrics tests: samples written through the real sample writer."""

from __future__ import annotations

from typing import Any

from sindri_console.domains.metrics.ingest import MetricSample, store_samples


def sample(instance_id: str, ts_ms: int, cpu: float = 10.0, mem: int = 1000, total: int = 4000,
           **extra: Any) -> MetricSample:
    return MetricSample(instance_id=instance_id, ts_ms=ts_ms, cpu_percent=cpu, mem_used_bytes=mem,
                        mem_total_bytes=total, **extra)


async def put(console: Any, samples: list[MetricSample]) -> list[MetricSample]:
    rt = console.rt
    async with rt.db.write() as s:
        return await store_samples(s, rt.db.dialect, samples,
                                   raw_retention_days=rt.settings.METRICS_RAW_RETENTION_DAYS)
