"""Audit log (00 §7, 10-core §14)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from sindri_console.db.base import Base, IdType, JsonType


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(16))
    resource: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(128))
    user_id: Mapped[str | None] = mapped_column(IdType)
    user_email: Mapped[str | None] = mapped_column(String(254))
    api_key_id: Mapped[str | None] = mapped_column(IdType)
    actor_kind: Mapped[str] = mapped_column(String(8))
    team_id: Mapped[str | None] = mapped_column(IdType)
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    request_id: Mapped[str | None] = mapped_column(String(128))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JsonType)

    __table_args__ = (
        Index("ix_audit_log_ts_ms_id", "ts_ms", "id"),
        Index("ix_audit_log_user_id_ts_ms", "user_id", "ts_ms"),
        Index("ix_audit_log_team_id_ts_ms", "team_id", "ts_ms"),
        Index("ix_audit_log_resource_resource_id", "resource", "resource_id"),
        Index("ix_audit_log_action_ts_ms", "action", "ts_ms"),
    )
