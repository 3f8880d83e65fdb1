"""Command executions (20-ops §6.1; the delivery columns of 40 §11.7)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from sindri_console.db.base import Base, IdType, JsonType, UtcDateTime


class CommandExecution(Base):
    __tablename__ = "command_executions"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(IdType, ForeignKey("user_account.id", ondelete="SET NULL"))
    origin: Mapped[str] = mapped_column(String(16))
    batch_id: Mapped[str | None] = mapped_column(IdType)
    # the task-run and remediation tables live in other domains' migration branches: plain columns here
    task_run_id: Mapped[str | None] = mapped_column(IdType)
    remediation_id: Mapped[str | None] = mapped_column(IdType)
    mode: Mapped[str] = mapped_column(String(8))
    command: Mapped[str | None] = mapped_column(Text)
    args: Mapped[list[str]] = mapped_column(JsonType, default=list)
    interpreter: Mapped[str | None] = mapped_column(String(128))
    script: Mapped[str | None] = mapped_column(Text)
    script_sha256: Mapped[str | None] = mapped_column(String(64))
    env_keys: Mapped[list[str]] = mapped_column(JsonType, default=list)
    # AES-256-GCM envelopes (kit/crypto); cleared in the update that makes the row terminal
    env_values: Mapped[str | None] = mapped_column(Text)
    stdin: Mapped[str | None] = mapped_column(Text)
    working_dir: Mapped[str | None] = mapped_column(String(512))
    timeout_ms: Mapped[int] = mapped_column(Integer)
    output_limit_bytes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    signal: Mapped[str | None] = mapped_column(String(32))
    pid: Mapped[int | None] = mapped_column(Integer)
    stdout: Mapped[str | None] = mapped_column(Text)
    stderr: Mapped[str | None] = mapped_column(Text)
    stdout_bytes: Mapped[int | None] = mapped_column(BigInteger)
    stderr_bytes: Mapped[int | None] = mapped_column(BigInteger)
    stdout_truncated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    stderr_truncated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    sent_connection_id: Mapped[str | None] = mapped_column(IdType)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # sent_at + timeout_ms + COMMAND_RESULT_GRACE_SECONDS, set with sent_at so the sweeper's
    # no-result deadline (40 §6.5) is one indexed comparison on both dialects
    result_deadline_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_command_executions_instance_id_status_created_at", "instance_id", "status", "created_at"),
        Index("ix_command_executions_status_expires_at", "status", "expires_at"),
        Index("ix_command_executions_status_result_deadline_at", "status", "result_deadline_at"),
        Index("ix_command_executions_created_at_id", "created_at", "id"),
        Index("ix_command_executions_batch_id", "batch_id"),
        Index("ix_command_executions_task_run_id", "task_run_id"),
        Index("ix_command_executions_remediation_id", "remediation_id"),
        Index("ix_command_executions_user_id_created_at", "user_id", "created_at"),
    )
