"""Log entries (10-core §11, §16.1). The substring-search index is dialect specific and lives in
the migration: a pg_trgm GIN index on PostgreSQL, an FTS5 trigram table kept by triggers on SQLite.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sindri_console.db.base import Base, BigIntPk, IdType, JsonType

LOG_FTS_TABLE = "log_entry_fts"
LOG_TRGM_INDEX = "ix_log_entry_message_trgm"


class LogEntry(Base):
    __tablename__ = "log_entry"

    # the stream cursor: grows in commit order (inserts are serialised, 10-core §11)
    seq: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(IdType, unique=True)
    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JsonType, nullable=True)
    deployment_id: Mapped[str | None] = mapped_column(String(128))
    path: Mapped[str | None] = mapped_column(String(512))
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    received_ms: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_log_entry_level_ts_ms", "level", "ts_ms"),
        Index("ix_log_entry_deployment_id", "deployment_id"),
        # AUTOINCREMENT: a seq is never reused, even after retention emptied the table
        {"sqlite_autoincrement": True},
    )


Index("ix_log_entry_instance_id_ts_ms_seq", LogEntry.instance_id, LogEntry.ts_ms.desc(), LogEntry.seq.desc())
Index("ix_log_entry_ts_ms_seq", LogEntry.ts_ms.desc(), LogEntry.seq.desc())
