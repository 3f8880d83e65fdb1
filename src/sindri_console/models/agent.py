"""Agent state and agent connections (40 §11.1, §11.2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from sindri_console.db.base import Base, IdType, JsonType, UtcDateTime


class AgentState(Base):
    __tablename__ = "agent_state"

    instance_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True
    )
    agent_instance_id: Mapped[str | None] = mapped_column(String(128))
    dialect: Mapped[str | None] = mapped_column(String(16))
    agent_name: Mapped[str | None] = mapped_column(String(64))
    agent_version: Mapped[str | None] = mapped_column(String(64))
    protocol_version: Mapped[str | None] = mapped_column(String(16))
    capabilities: Mapped[list[str]] = mapped_column(JsonType, default=list)
    hostname: Mapped[str | None] = mapped_column(String(253))
    os: Mapped[str | None] = mapped_column(String(32))
    arch: Mapped[str | None] = mapped_column(String(32))
    intervals: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    connected: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    connection_id: Mapped[str | None] = mapped_column(IdType)
    replica_id: Mapped[str | None] = mapped_column(String(64))
    connected_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    disconnected_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    heartbeat_interval_seconds: Mapped[float | None] = mapped_column(Float)
    heartbeat_deadline_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    heartbeat_lost: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    heartbeat_lost_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    uptime_seconds: Mapped[int | None] = mapped_column(BigInteger)
    clock_skew_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_registered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_registration_agent_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    frames_dropped: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_agent_state_heartbeat_lost_heartbeat_deadline_at", "heartbeat_lost", "heartbeat_deadline_at"),
        Index("ix_agent_state_connected_replica_id", "connected", "replica_id"),
        Index("ix_agent_state_agent_instance_id", "agent_instance_id"),
    )


class AgentConnection(Base):
    __tablename__ = "agent_connection"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"))
    replica_id: Mapped[str] = mapped_column(String(64))
    credential: Mapped[str] = mapped_column(String(16))
    api_key_id: Mapped[str | None] = mapped_column(IdType)
    dialect: Mapped[str | None] = mapped_column(String(16))
    agent_version: Mapped[str | None] = mapped_column(String(64))
    protocol_version: Mapped[str | None] = mapped_column(String(16))
    capabilities: Mapped[list[str]] = mapped_column(JsonType, default=list)
    remote_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    connected_at: Mapped[datetime] = mapped_column(UtcDateTime)
    identified_at: Mapped[datetime] = mapped_column(UtcDateTime)
    disconnected_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    close_code: Mapped[int | None] = mapped_column(Integer)
    close_reason: Mapped[str | None] = mapped_column(String(123))
    frames_in: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    frames_out: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    identity_mismatches: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))

    __table_args__ = (
        Index("ix_agent_connection_instance_id_connected_at", "instance_id", "connected_at"),
        Index(
            "ix_agent_connection_open_replica",
            "replica_id",
            sqlite_where=text("disconnected_at IS NULL"),
            postgresql_where=text("disconnected_at IS NULL"),
        ),
    )
