"""The secrets vault table (30-admin §16, §18 `vault_secret`): envelope-encrypted values, metadata beside.

A value is sealed under a fresh data key (DEK); the DEK is sealed under the vault key (KEK, from
SECRET_VAULT_KEY) and stored wrapped, with the KEK's id so a rotation can find what to re-wrap.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from sindri_console.db.base import Base, IdType, JsonType, UtcDateTime


class VaultSecret(Base):
    __tablename__ = "vault_secret"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    instance_id: Mapped[str | None] = mapped_column(IdType, ForeignKey("instance.id", ondelete="CASCADE"))
    # the instance id, or "" for a global secret: one unique index covers both kinds of names
    scope_key: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(512))
    type: Mapped[str] = mapped_column(String(16))
    scope: Mapped[list[str]] = mapped_column(JsonType, default=list)
    version: Mapped[int] = mapped_column(Integer, default=1)
    kek_id: Mapped[str] = mapped_column(String(16))
    wrapped_dek: Mapped[bytes] = mapped_column(LargeBinary)
    dek_nonce: Mapped[bytes] = mapped_column(LargeBinary)
    value_nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(IdType)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_revealed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_revealed_by: Mapped[str | None] = mapped_column(IdType)

    __table_args__ = (
        Index("uq_vault_secret_name_scope_key", "name", "scope_key", unique=True),
        Index("ix_vault_secret_instance_id", "instance_id"),
        Index("ix_vault_secret_expires_at", "expires_at"),
        Index("ix_vault_secret_kek_id", "kek_id"),
    )

