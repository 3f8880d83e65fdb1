"""Latest agent reports, extension status and C-frame receipts (40 §11.4–§11.6)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from sindri_console.db.base import Base, IdType, JsonType, UtcDateTime


class AgentReport(Base):
    """The latest report of one kind for one instance (replaced by every new report)."""

    __tablename__ = "agent_report"

    instance_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    request_id: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    available: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    reason: Mapped[str | None] = mapped_column(String(256))
    item_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    payload: Mapped[Any] = mapped_column(JsonType)


class ExtensionStatus(Base):
    __tablename__ = "extension_status"

    instance_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    status_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str | None] = mapped_column(String(1024))
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_extension_status_name_status", "name", "status"),)


class AgentFrameReceipt(Base):
    """C frames with an `id` already processed (de-duplication for 24 h)."""

    __tablename__ = "agent_frame_receipt"

    instance_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True
    )
    frame_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_agent_frame_receipt_received_at", "received_at"),)
