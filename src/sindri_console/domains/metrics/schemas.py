"""Wire shapes of the metrics routes (10-core §9), used for the OpenAPI document."""

from __future__ import annotations

from pydantic import Field

from sindri_console.kit.schema import OutModel


class BucketPointOut(OutModel):
    timestamp: str
    sample_count: int
    cpu_percent: float | None
    cpu_percent_max: float | None
    load_avg1: float | None
    mem_used_bytes: int | None
    mem_total_bytes: int | None
    disk_used_bytes: int | None
    disk_total_bytes: int | None
    net_rx_bps: int | None
    net_tx_bps: int | None
    instance_count: int | None = None


class TimeseriesOut(OutModel):
    range: str
    bucket_seconds: int
    from_: str = Field(alias="from")
    to: str
    instance_id: str | None
    data: list[BucketPointOut]


class RangeMetaOut(OutModel):
    instance_id: str | None
    from_: str = Field(alias="from")
    to: str
    granularity: str
    bucket_seconds: int | None
    count: int
    truncated: bool
    data_available_from: str | None


class RangeOut(OutModel):
    """`data` holds bucket points, or raw points (timestamp plus every stored column) for `raw`."""

    data: list[dict[str, str | int | float | None]]
    meta: RangeMetaOut


class AggregateOut(OutModel):
    sample_count: int
    avg_cpu_percent: float | None
    max_cpu_percent: float | None
    avg_mem_used_bytes: int | None
    max_mem_used_bytes: int | None
    avg_disk_used_bytes: int | None
    max_disk_used_bytes: int | None
    avg_load_avg1: float | None
    avg_net_rx_bps: int | None
    avg_net_tx_bps: int | None
    first_sample_at: str | None
    last_sample_at: str | None


class InstanceAggregateOut(AggregateOut):
    instance_id: str
    instance_name: str | None


class AggregateResponseOut(OutModel):
    from_: str = Field(alias="from")
    to: str
    source: str
    data: list[InstanceAggregateOut]
    fleet: AggregateOut


class LatestOut(OutModel):
    instance_id: str
    instance_name: str
    timestamp: str
    cpu_percent: float | None
    mem_used_bytes: int | None
    mem_total_bytes: int | None
    mem_percent: float | None
    disk_used_bytes: int | None
    disk_total_bytes: int | None
    disk_percent: float | None
    load_avg1: float | None
    load_avg5: float | None
    load_avg15: float | None
    net_rx_bps: int | None
    net_tx_bps: int | None
    stale: bool


class LatestListOut(OutModel):
    data: list[LatestOut]
