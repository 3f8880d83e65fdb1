"""Credentials: key format, hashing, lookup and the Principal every route receives (10-core §3)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import Depends, Request
from sqlalchemy import or_, select, update

from sindri_console.db.engine import Database
from sindri_console.kit.clock import utcnow
from sindri_console.kit.errors import ApiError
from sindri_console.kit.rbac import Role, min_role
from sindri_console.models.identity import ApiKey, TeamMember, User
from sindri_console.models.instance import Instance

MAX_RAW_KEY_CHARS = 512
REMOVED_STATUSES = ("DESTROYED", "DEREGISTERED")


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def generate_key(kind: Literal["USER", "AGENT"]) -> tuple[str, str, str]:
    """(raw key, its hash, its display prefix)."""
    raw = ("sk_" if kind == "USER" else "ak_") + secrets.token_hex(32)
    return raw, hash_key(raw), raw[:11]


CredentialKind = Literal["user_key", "agent_key", "bootstrap"]


@dataclass
class Principal:
    credential: CredentialKind
    api_key_id: str | None = None
    user_id: str | None = None
    user_email: str | None = None
    user_role: str | None = None
    key_role: str | None = None
    instance_id: str | None = None  # agent key: the one instance it is bound to
    memberships: dict[str, str | None] = field(default_factory=dict)  # team id -> member role

    @property
    def is_agent(self) -> bool:
        return self.credential != "user_key"

    @property
    def effective_role(self) -> str | None:
        if self.is_agent:
            return None
        return min_role(self.user_role, self.key_role)

    @property
    def rank(self) -> int:
        role = self.effective_role
        return Role[role] if role else 0

    @property
    def is_admin(self) -> bool:
        return self.effective_role == "ADMIN"

    @property
    def unrestricted(self) -> bool:
        """Sees every instance: ADMIN, or a user in no team (00 §5)."""
        return self.is_admin or (not self.is_agent and not self.memberships)

    @property
    def rate_key(self) -> str:
        return self.api_key_id or ("bootstrap" if self.credential == "bootstrap" else "anon")

    def role_on_team(self, team_id: str | None) -> str | None:
        """The §4.1 member cap: min(effective role, membership role) on a team's instance."""
        role = self.effective_role
        if role is None or self.is_admin or team_id is None or team_id not in self.memberships:
            return role
        return min_role(role, self.memberships[team_id])


class AuthFailure(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def extract_raw_key(headers: Mapping[str, str]) -> str | None:
    """Bearer wins over X-Api-Key (00 §4); query strings are never read."""
    get = headers.get
    auth = get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
        return auth.strip()
    key = get("x-api-key")
    return key.strip() if key else None


@dataclass
class _KeyRow:
    key: ApiKey
    user: User | None


class Authenticator:
    def __init__(self, db: Database, bootstrap_key: str | None) -> None:
        self.db = db
        self._bootstrap_digest = hashlib.sha256(bootstrap_key.encode()).digest() if bootstrap_key else None

    def is_bootstrap(self, raw: str) -> bool:
        if self._bootstrap_digest is None:
            return False
        return hmac.compare_digest(hashlib.sha256(raw.encode("utf-8", "surrogatepass")).digest(),
                                   self._bootstrap_digest)

    async def authenticate(self, raw: str | None, ip: str | None) -> Principal:
        """Resolve a raw key to a Principal or raise AuthFailure (always a 401)."""
        if not raw:
            raise AuthFailure("Missing API key: send Authorization: Bearer <key> or X-Api-Key")
        if len(raw) > MAX_RAW_KEY_CHARS:
            raise AuthFailure("Invalid API key")
        if self.is_bootstrap(raw):
            return Principal(credential="bootstrap")
        return await self._load(hash_key(raw), None, ip)

    async def authenticate_key_id(self, key_id: str, ip: str | None = None) -> Principal:
        """Re-validate a credential known by id (tickets, long-lived sockets re-checking every 60 s)."""
        return await self._load(None, key_id, ip)

    async def _load(self, digest: str | None, key_id: str | None, ip: str | None) -> Principal:
        async with self.db.read() as s:
            stmt = select(ApiKey, User).outerjoin(User, User.id == ApiKey.user_id)
            stmt = stmt.where(ApiKey.key_hash == digest) if digest is not None else stmt.where(ApiKey.id == key_id)
            row = (await s.execute(stmt)).first()
            if row is None or (digest is not None and not hmac.compare_digest(row[0].key_hash, digest)):
                raise AuthFailure("Invalid API key")
            key, user = row[0], row[1]
            now = utcnow()
            if key.revoked_at is not None:
                raise AuthFailure("API key has been revoked")
            if key.expires_at is not None and key.expires_at <= now:
                raise AuthFailure("API key has expired")
            memberships: dict[str, str | None] = {}
            if key.kind == "USER":
                if user is None or not user.is_active:
                    raise AuthFailure("User account is disabled")
                rows = await s.execute(select(TeamMember.team_id, TeamMember.role).where(TeamMember.user_id == user.id))
                memberships = {t: r for t, r in rows}
            else:
                status = await s.scalar(select(Instance.status).where(Instance.id == key.instance_id))
                if status is None or status in REMOVED_STATUSES:
                    raise AuthFailure("API key has been revoked")
        if key.last_used_at is None or key.last_used_at < now - timedelta(seconds=60):
            await self._track_use(key, user, ip, now)
        if key.kind == "USER":
            assert user is not None
            return Principal(
                credential="user_key",
                api_key_id=key.id,
                user_id=user.id,
                user_email=user.email,
                user_role=user.role,
                key_role=key.role,
                memberships=memberships,
            )
        return Principal(credential="agent_key", api_key_id=key.id, instance_id=key.instance_id)

    async def _track_use(self, key: ApiKey, user: User | None, ip: str | None, now: datetime) -> None:
        """lastUsedAt at most once a minute; the first use ever writes a LOGIN audit entry."""
        from sindri_console.kit.audit import write_audit

        cutoff = now - timedelta(seconds=60)
        async with self.db.write() as s:
            res = await s.execute(
                update(ApiKey)
                .where(ApiKey.id == key.id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < cutoff))
                .values(last_used_at=now, last_used_ip=ip)
            )
            if res.rowcount == 0:  # type: ignore[attr-defined]
                return
            if user is not None:
                await s.execute(
                    update(User)
                    .where(User.id == user.id, or_(User.last_seen_at.is_(None), User.last_seen_at < cutoff))
                    .values(last_seen_at=now)
                )
            if key.last_used_at is None:
                principal = Principal(
                    credential="user_key" if key.kind == "USER" else "agent_key",
                    api_key_id=key.id,
                    user_id=user.id if user else None,
                    user_email=user.email if user else None,
                    instance_id=key.instance_id,
                )
                await write_audit(s, principal, "LOGIN", "api_key", key.id, {"kind": key.kind})


def principal_of(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise ApiError(401, "Missing API key: send Authorization: Bearer <key> or X-Api-Key")
    return principal  # type: ignore[no-any-return]


CurrentPrincipal = Annotated[Principal, Depends(principal_of)]
