"""Leases for singleton loops and replica liveness rows (10-core §16, 40 §0)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from sindri_console.db.base import Base, UtcDateTime


class Lease(Base):
    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Replica(Base):
    """One row per running server process, refreshed every 10 s; stale rows mark dead replicas."""

    __tablename__ = "replica"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime)
    hostname: Mapped[str | None] = mapped_column(String(253))
    pid: Mapped[int | None] = mapped_column()


class SystemState(Base):
    """Small facts the product keeps about itself (e.g. the region table version last applied)."""

    __tablename__ = "system_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
