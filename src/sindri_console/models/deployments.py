"""Deployments, deployment templates and the seed marks of the official templates (20-ops §7.1, §8.1)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from sindri_console.db.base import Base, IdType, JsonType, UtcDateTime


class DeploymentTemplate(Base):
    __tablename__ = "deployment_templates"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    slug: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text)
    yaml_content: Mapped[str] = mapped_column(Text)
    provider: Mapped[str | None] = mapped_column(String(32))
    profile: Mapped[str | None] = mapped_column(String(64))
    extensions: Mapped[list[str]] = mapped_column(JsonType, default=list)
    provider_recommendations: Mapped[list[str]] = mapped_column(JsonType, default=list)
    is_official: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    validation: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    created_by: Mapped[str | None] = mapped_column(IdType)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("uq_deployment_templates_slug", "slug", unique=True),
        Index("ix_deployment_templates_category", "category"),
    )


class TemplateSeedMark(Base):
    """One row per official slug ever seeded: a deleted official template is never re-created."""

    __tablename__ = "template_seed_marks"

    slug: Mapped[str] = mapped_column(String(128), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    seeded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    instance_id: Mapped[str] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"))
    template_id: Mapped[str | None] = mapped_column(
        IdType, ForeignKey("deployment_templates.id", ondelete="SET NULL")
    )
    team_id: Mapped[str | None] = mapped_column(IdType)
    provider: Mapped[str] = mapped_column(String(32))
    region: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    yaml_content: Mapped[str] = mapped_column(Text)
    config_hash: Mapped[str] = mapped_column(String(64))
    declared: Mapped[dict[str, Any]] = mapped_column(JsonType)
    secret_names: Mapped[list[str]] = mapped_column(JsonType, default=list)
    docker_host: Mapped[str | None] = mapped_column(String(512))
    warnings: Mapped[list[str]] = mapped_column(JsonType, default=list)
    initiated_by: Mapped[str] = mapped_column(IdType)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(2048))
    logs: Mapped[str] = mapped_column(Text, default="", server_default="")
    # UTF-8 size of `logs`, kept beside it so the cap check and `logsBytes` never read the text
    logs_bytes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    logs_truncated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_deployments_status_created_at", "status", "created_at"),
        Index("ix_deployments_initiated_by_created_at", "initiated_by", "created_at"),
        Index("ix_deployments_template_id", "template_id"),
        # the fleet timeline (10-core §7.3) groups a 24-hour window by creation time and status; with the
        # instance id it is answered from the index alone
        Index("ix_deployments_created_at_status_instance_id", "created_at", "status", "instance_id"),
    )


Index(
    "ix_deployment_templates_is_official_created_at",
    DeploymentTemplate.is_official.desc(),
    DeploymentTemplate.created_at.desc(),
)
Index("ix_deployments_instance_id_created_at", Deployment.instance_id, Deployment.created_at.desc())
