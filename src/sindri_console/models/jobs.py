"""Lifecycle jobs and backups (10-core §6.4, §6.7, §16.1).

A job row is the unit any replica may claim; the partial unique index keeps one QUEUED/RUNNING job per
instance even when two requests race past the status check.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from sindri_console.db.base import Base, IdType, JsonType, UtcDateTime

ACTIVE_JOB_CONDITION = "status IN ('QUEUED', 'RUNNING')"
NOT_FAILED_BACKUP_CONDITION = "status <> 'FAILED'"


class InstanceJob(Base):
    __tablename__ = "instance_job"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    previous_status: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    step: Mapped[str | None] = mapped_column(String(16))
    bulk_id: Mapped[str | None] = mapped_column(IdType)
    requested_by: Mapped[str | None] = mapped_column(IdType)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(1024))
    output: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_instance_job_status_created_at", "status", "created_at"),
        Index("ix_instance_job_instance_id_created_at", "instance_id", "created_at"),
        Index("ix_instance_job_bulk_id", "bulk_id"),
        Index("ix_instance_job_finished_at", "finished_at"),
        Index(
            "uq_instance_job_active_instance",
            "instance_id",
            unique=True,
            sqlite_where=text(ACTIVE_JOB_CONDITION),
            postgresql_where=text(ACTIVE_JOB_CONDITION),
        ),
    )


class Backup(Base):
    __tablename__ = "backup"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"))
    # No cascade: a backup outlives the retention of its job (§10 keeps backups forever).
    job_id: Mapped[str | None] = mapped_column(IdType, ForeignKey("instance_job.id", ondelete="SET NULL"))
    label: Mapped[str] = mapped_column(String(128))
    profile: Mapped[str] = mapped_column(String(16))
    compression_level: Mapped[int] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    location: Mapped[str | None] = mapped_column(String(256))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(String(1024))
    requested_by: Mapped[str | None] = mapped_column(IdType)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_backup_instance_id_created_at", "instance_id", "created_at"),
        Index("ix_backup_job_id", "job_id"),
        Index(
            "uq_backup_instance_label",
            "instance_id",
            "label",
            unique=True,
            sqlite_where=text(NOT_FAILED_BACKUP_CONDITION),
            postgresql_where=text(NOT_FAILED_BACKUP_CONDITION),
        ),
    )
