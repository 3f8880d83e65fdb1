"""LLM usage records reported by agents (40 §4.6, 30-admin §5.1, §18)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from sindri_console.db.base import Base, IdType, UtcDateTime


class LlmUsage(Base):
    __tablename__ = "llm_usage"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    day: Mapped[date] = mapped_column(Date)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(256))
    matched_model: Mapped[str | None] = mapped_column(String(256))
    operation: Mapped[str | None] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger)
    # priced by the cost engine (30-admin §5.2-§5.3); null until it has priced the record
    cost_micros: Mapped[int | None] = mapped_column(BigInteger)
    reported_cost_micros: Mapped[int | None] = mapped_column(BigInteger)
    price_source: Mapped[str | None] = mapped_column(String(16))
    capture_tier: Mapped[str | None] = mapped_column(String(16))
    trace_id: Mapped[str | None] = mapped_column(String(128))
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_llm_usage_instance_id_ts", "instance_id", "ts"),
        Index("ix_llm_usage_ts", "ts"),
        Index("ix_llm_usage_provider_model", "provider", "model"),
    )
