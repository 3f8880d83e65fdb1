"""Users, API keys, teams and memberships (10-core §3, §4, §16.1)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from sindri_console.db.base import Base, IdType, UtcDateTime


class User(Base):
    __tablename__ = "user_account"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16), default="VIEWER", server_default="VIEWER")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(IdType)
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("uq_user_account_email_lower", func.lower(email), unique=True),
        Index("ix_user_account_role", "role"),
        Index("ix_user_account_is_active", "is_active"),
        Index("ix_user_account_created_at_id", "created_at", "id"),
    )


class ApiKey(Base):
    __tablename__ = "api_key"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64))
    key_prefix: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str | None] = mapped_column(IdType, ForeignKey("user_account.id", ondelete="CASCADE"))
    instance_id: Mapped[str | None] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"))
    role: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(IdType)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_ip: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_by: Mapped[str | None] = mapped_column(IdType)
    revoke_reason: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("uq_api_key_key_hash", "key_hash", unique=True),
        Index("ix_api_key_user_id_revoked_at", "user_id", "revoked_at"),
        Index("ix_api_key_instance_id_revoked_at", "instance_id", "revoked_at"),
        Index("ix_api_key_created_at_id", "created_at", "id"),
    )


class Team(Base):
    __tablename__ = "team"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(IdType)

    __table_args__ = (Index("uq_team_name_lower", func.lower(name), unique=True),)


class TeamMember(Base):
    __tablename__ = "team_member"

    team_id: Mapped[str] = mapped_column(IdType, ForeignKey("team.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        IdType, ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str | None] = mapped_column(String(16))
    added_at: Mapped[datetime] = mapped_column(UtcDateTime)
    added_by: Mapped[str | None] = mapped_column(IdType)

    __table_args__ = (Index("ix_team_member_user_id", "user_id"),)
