"""Instances, their status history, events and heartbeats (10-core §5, §6, §8, §16.1)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from sindri_console.db.base import Base, IdType, JsonType, UtcDateTime

LIVE_CONDITION = "status NOT IN ('DESTROYED', 'DEREGISTERED')"


class Instance(Base):
    __tablename__ = "instance"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    provider: Mapped[str | None] = mapped_column(String(32))
    region: Mapped[str | None] = mapped_column(String(64))
    distro: Mapped[str | None] = mapped_column(String(16))
    extensions: Mapped[list[str]] = mapped_column(JsonType, default=list)
    config_hash: Mapped[str | None] = mapped_column(String(64))
    ssh_endpoint: Mapped[str | None] = mapped_column(String(256))
    docker_host: Mapped[str | None] = mapped_column(String(512))
    size_id: Mapped[str | None] = mapped_column(String(64))
    disk_gb: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    team_id: Mapped[str | None] = mapped_column(IdType, ForeignKey("team.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(String(512))
    status_changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    geo_lat: Mapped[float | None] = mapped_column(Float)
    geo_lon: Mapped[float | None] = mapped_column(Float)
    geo_label: Mapped[str | None] = mapped_column(String(128))
    geo_source: Mapped[str | None] = mapped_column(String(16))
    sindri_version: Mapped[str | None] = mapped_column(String(64))
    active_job_id: Mapped[str | None] = mapped_column(IdType)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(IdType)

    __table_args__ = (
        Index(
            "uq_instance_live_name",
            "name",
            unique=True,
            sqlite_where=text(LIVE_CONDITION),
            postgresql_where=text(LIVE_CONDITION),
        ),
        Index("ix_instance_status", "status"),
        Index("ix_instance_provider", "provider"),
        Index("ix_instance_team_id", "team_id"),
        Index("ix_instance_created_at_id", "created_at", "id"),
        Index("ix_instance_geo_lat_geo_lon", "geo_lat", "geo_lon"),
    )


class InstanceStatusHistory(Base):
    __tablename__ = "instance_status_history"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(String(512))

    __table_args__ = (Index("ix_instance_status_history_instance_id_changed_at", "instance_id", "changed_at"),)


class InstanceEvent(Base):
    __tablename__ = "instance_event"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    message: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JsonType)
    actor_kind: Mapped[str] = mapped_column(String(8))
    user_id: Mapped[str | None] = mapped_column(IdType)
    job_id: Mapped[str | None] = mapped_column(IdType)

    __table_args__ = (
        Index("ix_instance_event_instance_id_ts_ms_id", "instance_id", "ts_ms", "id"),
        Index("ix_instance_event_type_ts_ms", "type", "ts_ms"),
    )


class Heartbeat(Base):
    __tablename__ = "heartbeat"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"))
    timestamp: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    agent_uptime_seconds: Mapped[int | None] = mapped_column(BigInteger)
    system_uptime_seconds: Mapped[int | None] = mapped_column(BigInteger)
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    memory_used_bytes: Mapped[int | None] = mapped_column(BigInteger)
    memory_total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    disk_used_bytes: Mapped[int | None] = mapped_column(BigInteger)
    disk_total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    load_avg_1: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_heartbeat_instance_id_timestamp", "instance_id", "timestamp"),
        Index("ix_heartbeat_received_at", "received_at"),
    )
