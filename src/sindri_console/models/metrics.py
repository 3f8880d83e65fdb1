"""Metric points, rollups (1 minute, 15 minutes, 1 hour), the latest row per instance and rollup bookkeeping (10-core §8.3, §9.1, §16.1)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from sindri_console.db.base import Base, IdType, UtcDateTime

RAW_COLUMNS = (
    "cpu_percent", "load_avg_1", "load_avg_5", "load_avg_15", "cpu_steal_percent", "core_count", "mem_used_bytes",
    "mem_total_bytes", "mem_cached_bytes", "swap_used_bytes", "swap_total_bytes", "disk_used_bytes",
    "disk_total_bytes", "disk_read_bps", "disk_write_bps", "net_bytes_sent", "net_bytes_recv", "net_packets_sent",
    "net_packets_recv", "net_tx_bps", "net_rx_bps",
)


class _RawColumns:
    cpu_percent: Mapped[float] = mapped_column(Float)
    load_avg_1: Mapped[float | None] = mapped_column(Float)
    load_avg_5: Mapped[float | None] = mapped_column(Float)
    load_avg_15: Mapped[float | None] = mapped_column(Float)
    cpu_steal_percent: Mapped[float | None] = mapped_column(Float)
    core_count: Mapped[int | None] = mapped_column(Integer)
    mem_used_bytes: Mapped[int] = mapped_column(BigInteger)
    mem_total_bytes: Mapped[int] = mapped_column(BigInteger)
    mem_cached_bytes: Mapped[int | None] = mapped_column(BigInteger)
    swap_used_bytes: Mapped[int | None] = mapped_column(BigInteger)
    swap_total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    disk_used_bytes: Mapped[int | None] = mapped_column(BigInteger)
    disk_total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    disk_read_bps: Mapped[int | None] = mapped_column(BigInteger)
    disk_write_bps: Mapped[int | None] = mapped_column(BigInteger)
    net_bytes_sent: Mapped[int | None] = mapped_column(BigInteger)
    net_bytes_recv: Mapped[int | None] = mapped_column(BigInteger)
    net_packets_sent: Mapped[int | None] = mapped_column(BigInteger)
    net_packets_recv: Mapped[int | None] = mapped_column(BigInteger)
    net_tx_bps: Mapped[int | None] = mapped_column(BigInteger)
    net_rx_bps: Mapped[int | None] = mapped_column(BigInteger)


class MetricPoint(_RawColumns, Base):
    __tablename__ = "metric_point"

    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True)
    ts_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)

    __table_args__ = (Index("ix_metric_point_ts_ms", "ts_ms"),)


class MetricLatest(_RawColumns, Base):
    __tablename__ = "metric_latest"

    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class _RollupColumns:
    sample_count: Mapped[int] = mapped_column(Integer)
    cpu_avg: Mapped[float | None] = mapped_column(Float)
    cpu_max: Mapped[float | None] = mapped_column(Float)
    mem_used_avg: Mapped[float | None] = mapped_column(Float)
    mem_used_max: Mapped[int | None] = mapped_column(BigInteger)
    disk_used_avg: Mapped[float | None] = mapped_column(Float)
    disk_used_max: Mapped[int | None] = mapped_column(BigInteger)
    load_avg_1_avg: Mapped[float | None] = mapped_column(Float)
    load_avg_1_max: Mapped[float | None] = mapped_column(Float)
    net_rx_bps_avg: Mapped[float | None] = mapped_column(Float)
    net_rx_bps_max: Mapped[int | None] = mapped_column(BigInteger)
    net_tx_bps_avg: Mapped[float | None] = mapped_column(Float)
    net_tx_bps_max: Mapped[int | None] = mapped_column(BigInteger)
    mem_total_max: Mapped[int | None] = mapped_column(BigInteger)
    disk_total_max: Mapped[int | None] = mapped_column(BigInteger)
    core_count_max: Mapped[int | None] = mapped_column(Integer)
    # per-field sample counts so averages stay sample-weighted when some samples lack a field
    mem_used_n: Mapped[int] = mapped_column(Integer, default=0)
    disk_used_n: Mapped[int] = mapped_column(Integer, default=0)
    load_avg_1_n: Mapped[int] = mapped_column(Integer, default=0)
    net_rx_bps_n: Mapped[int] = mapped_column(Integer, default=0)
    net_tx_bps_n: Mapped[int] = mapped_column(Integer, default=0)


class Metric1m(_RollupColumns, Base):
    __tablename__ = "metric_1m"

    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True)
    bucket_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)

    __table_args__ = (Index("ix_metric_1m_bucket_ms", "bucket_ms"),)


class Metric15m(_RollupColumns, Base):
    """15-minute rollups, built from 1-minute rows: they serve 15-minute (24 h range) and coarser
    buckets of the fleet series without reading 15 one-minute rows per instance and bucket."""

    __tablename__ = "metric_15m"

    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True)
    bucket_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)

    __table_args__ = (Index("ix_metric_15m_bucket_ms", "bucket_ms"),)


class Metric1h(_RollupColumns, Base):
    __tablename__ = "metric_1h"

    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True)
    bucket_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)

    __table_args__ = (Index("ix_metric_1h_bucket_ms", "bucket_ms"),)


class MetricDirty(Base):
    __tablename__ = "metric_dirty"

    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True)
    minute_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class RollupState(Base):
    __tablename__ = "rollup_state"

    name: Mapped[str] = mapped_column(String(8), primary_key=True)
    watermark_ms: Mapped[int] = mapped_column(BigInteger)
