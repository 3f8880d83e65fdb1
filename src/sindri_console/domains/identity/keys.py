"""Minting and revoking API keys: one implementation for HTTP routes, the CLI, registration and deployments."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.kit.auth import generate_key
from sindri_console.kit.clock import utcnow
from sindri_console.kit.errors import ApiError
from sindri_console.kit.ids import new_id
from sindri_console.models.identity import ApiKey

MAX_ACTIVE_KEYS_PER_USER = 50


def resolve_expiry(expires_in_days: int | None, expires_at: datetime | None,
                   max_lifetime_days: int | None) -> datetime | None:
    """10-core §3.5: one of the two, or neither; bounded by API_KEY_MAX_LIFETIME_DAYS."""
    now = utcnow()
    if expires_in_days is not None and expires_at is not None:
        raise ApiError(422, "Invalid request: give expiresInDays or expiresAt, not both",
                       [{"field": "expiresAt", "message": "cannot be combined with expiresInDays"}])
    result: datetime | None = None
    if expires_in_days is not None:
        if not 1 <= expires_in_days <= 3650:
            raise ApiError(422, "Invalid request: expiresInDays must be between 1 and 3650",
                           [{"field": "expiresInDays", "message": "must be between 1 and 3650"}])
        result = now + timedelta(days=expires_in_days)
    elif expires_at is not None:
        if expires_at <= now:
            raise ApiError(422, "Invalid request: expiresAt must be in the future",
                           [{"field": "expiresAt", "message": "must be in the future"}])
        if expires_at > now + timedelta(days=3650):
            raise ApiError(422, "Invalid request: expiresAt must be at most 3650 days ahead",
                           [{"field": "expiresAt", "message": "must be at most 3650 days ahead"}])
        result = expires_at
    if max_lifetime_days is not None:
        limit = now + timedelta(days=max_lifetime_days)
        if result is None or result > limit:
            raise ApiError(422, f"Invalid request: keys must expire within {max_lifetime_days} days",
                           [{"field": "expiresInDays", "message": f"must be at most {max_lifetime_days} days"}])
    return result


async def active_key_count(session: AsyncSession, user_id: str) -> int:
    now = utcnow()
    return int(await session.scalar(
        select(func.count()).select_from(ApiKey).where(
            ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None),
            (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
        )
    ) or 0)


async def mint_user_key(session: AsyncSession, *, user_id: str, name: str, role: str | None,
                        expires_at: datetime | None, created_by: str | None) -> tuple[ApiKey, str]:
    if await active_key_count(session, user_id) >= MAX_ACTIVE_KEYS_PER_USER:
        raise ApiError(409, f"This user already has {MAX_ACTIVE_KEYS_PER_USER} active keys; revoke one first")
    raw, digest, prefix = generate_key("USER")
    key = ApiKey(id=new_id(), kind="USER", name=name, key_hash=digest, key_prefix=prefix, user_id=user_id,
                 instance_id=None, role=role, created_at=utcnow(), created_by=created_by, expires_at=expires_at)
    session.add(key)
    await session.flush()
    return key, raw


async def mint_agent_key(session: AsyncSession, *, instance_id: str, name: str, expires_at: datetime | None,
                         created_by: str | None) -> tuple[ApiKey, str]:
    raw, digest, prefix = generate_key("AGENT")
    key = ApiKey(id=new_id(), kind="AGENT", name=name, key_hash=digest, key_prefix=prefix, user_id=None,
                 instance_id=instance_id, role=None, created_at=utcnow(), created_by=created_by,
                 expires_at=expires_at)
    session.add(key)
    await session.flush()
    return key, raw


def key_status(key: ApiKey) -> str:
    if key.revoked_at is not None:
        return "REVOKED"
    if key.expires_at is not None and key.expires_at <= utcnow():
        return "EXPIRED"
    return "ACTIVE"
