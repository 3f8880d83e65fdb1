"""The part of the secrets vault deployments need (20-ops §7.4, 30-admin §16): store the body's secrets
bound to the new instance, find global `deployment` secrets, and read values back for the job.

Envelope per 30-admin §16.1, built from `kit/crypto` (AES-256-GCM): a fresh 32-byte data key per
value sealed with AAD `sindri-console:vault:v1:value:<id>:<version>`, the data key sealed under the
vault key with AAD `sindri-console:vault:v1:dek:<id>:<kid>`. Nothing here reads the server's
environment for a secret value.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.kit import crypto
from sindri_console.kit.clock import utcnow
from sindri_console.kit.errors import ApiError
from sindri_console.kit.ids import new_id
from sindri_console.models.secrets import VaultSecret
from sindri_console.runtime import Runtime
from sindri_console.settings import Settings

VAULT_KEY_MISSING = (
    "Deployment secrets are stored encrypted in the vault, which needs SECRET_VAULT_KEY: set it to 32 random "
    "bytes (64 hex characters or base64) and restart the console, or deploy without secrets"
)
DEPLOYMENT_SCOPE = "deployment"
SECRET_TYPE = "ENV_VAR"


class VaultUnreadable(Exception):
    """A stored value cannot be opened with the configured key; the message names the key id only."""


def require_key(settings: Settings) -> bytes:
    """The vault key bytes; 503 naming SECRET_VAULT_KEY when it is not configured."""
    try:
        return crypto.parse_key(settings.SECRET_VAULT_KEY)
    except crypto.CryptoError:
        raise ApiError(503, VAULT_KEY_MISSING) from None


def key_id(kek: bytes) -> str:
    """`kid` of 30-admin §16.1: the first 16 hex digits of SHA-256("sindri-console/kek/" ‖ key)."""
    return hashlib.sha256(b"sindri-console/kek/" + kek).hexdigest()[:16]


def _value_aad(secret_id: str, version: int) -> bytes:
    return f"sindri-console:vault:v1:value:{secret_id}:{version}".encode()


def _dek_aad(secret_id: str, kid: str) -> bytes:
    return f"sindri-console:vault:v1:dek:{secret_id}:{kid}".encode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _split(envelope: str) -> tuple[bytes, bytes]:
    """(nonce, ciphertext+tag) of a `kit/crypto` envelope `v1.<nonce>.<sealed>`: the table keeps them apart."""
    version, nonce, sealed = envelope.split(".")
    if version != crypto.ENVELOPE_VERSION:
        raise crypto.CryptoError("not an encrypted envelope of this product")
    return _unb64(nonce), _unb64(sealed)


def _join(nonce: bytes, sealed: bytes) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    return f"{crypto.ENVELOPE_VERSION}.{b64(nonce)}.{b64(sealed)}"


def seal(secret_id: str, version: int, value: str, kek: bytes) -> dict[str, object]:
    """The encrypted columns of one value version."""
    dek = os.urandom(crypto.KEY_BYTES)
    kid = key_id(kek)
    value_nonce, ciphertext = _split(crypto.encrypt(value.encode("utf-8"), dek,
                                                    associated_data=_value_aad(secret_id, version)))
    dek_nonce, wrapped = _split(crypto.encrypt(dek, kek, associated_data=_dek_aad(secret_id, kid)))
    return {"kek_id": kid, "wrapped_dek": wrapped, "dek_nonce": dek_nonce, "value_nonce": value_nonce,
            "ciphertext": ciphertext}


def open_value(row: VaultSecret, kek: bytes) -> str:
    if row.kek_id != key_id(kek):
        raise VaultUnreadable(f"Secret cannot be decrypted with the configured vault keys (key id {row.kek_id})")
    try:
        dek = crypto.decrypt(_join(row.dek_nonce, row.wrapped_dek), kek,
                             associated_data=_dek_aad(row.id, row.kek_id))
        plain = crypto.decrypt(_join(row.value_nonce, row.ciphertext), dek,
                               associated_data=_value_aad(row.id, row.version))
    except crypto.CryptoError:
        raise VaultUnreadable(
            f"Secret cannot be decrypted with the configured vault keys (key id {row.kek_id})") from None
    return plain.decode("utf-8")


async def store_instance_secrets(session: AsyncSession, settings: Settings, instance_id: str,
                                 values: Mapping[str, str], *, created_by: str | None) -> None:
    """Write the body's secrets bound to `instance_id` (type ENV_VAR, scope [deployment]) in the caller's
    transaction; an existing secret of the same name on the instance gets a new version."""
    kek = require_key(settings)
    now = utcnow()
    for name, value in values.items():
        existing = await session.scalar(
            select(VaultSecret).where(VaultSecret.name == name, VaultSecret.scope_key == instance_id))
        if existing is None:
            secret_id = new_id()
            session.add(VaultSecret(
                id=secret_id, name=name, instance_id=instance_id, scope_key=instance_id, description=None,
                type=SECRET_TYPE, scope=[DEPLOYMENT_SCOPE], version=1, created_by=created_by, created_at=now,
                updated_at=now, **seal(secret_id, 1, value, kek),
            ))
        else:
            version = existing.version + 1
            for column, sealed in seal(existing.id, version, value, kek).items():
                setattr(existing, column, sealed)
            existing.version, existing.updated_at, existing.last_rotated_at = version, now, now


def _usable(now: datetime) -> ColumnElement[bool]:
    return or_(VaultSecret.expires_at.is_(None), VaultSecret.expires_at > now)


async def global_deployment_secret_names(rt: Runtime, names: Iterable[str]) -> set[str]:
    """Names that resolve from a global vault secret whose scope contains `deployment` (metadata only:
    global secret metadata is readable by every caller, 30-admin §0.4)."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return set()
    async with rt.db.read() as s:
        rows = await s.execute(select(VaultSecret.name, VaultSecret.scope).where(
            VaultSecret.scope_key == "", VaultSecret.name.in_(wanted), _usable(utcnow())))
        return {name for name, scope in rows if DEPLOYMENT_SCOPE in (scope or [])}


async def resolve_values(session: AsyncSession, settings: Settings, instance_id: str,
                         names: Iterable[str]) -> dict[str, str]:
    """Values for `names`: the instance's own vault secret, else a global one scoped to `deployment`.
    Never another instance's secrets, never the server's environment. Raises VaultUnreadable."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return {}
    rows = list(await session.scalars(select(VaultSecret).where(
        VaultSecret.name.in_(wanted), VaultSecret.scope_key.in_((instance_id, "")), _usable(utcnow()))))
    if not rows:
        return {}
    kek = require_key(settings)
    chosen: dict[str, VaultSecret] = {}
    for row in rows:
        if row.scope_key == "" and DEPLOYMENT_SCOPE not in (row.scope or []):
            continue
        if row.name not in chosen or row.scope_key == instance_id:
            chosen[row.name] = row
    return {name: open_value(row, kek) for name, row in chosen.items()}


async def global_values(session: AsyncSession, settings: Settings, names: Iterable[str]) -> dict[str, str]:
    """Global vault secrets named exactly like `names` (the provider credentials the CLI may use when the
    environment lacks them, 10-core §6.4); empty when the vault holds none."""
    wanted = list(dict.fromkeys(names))
    rows = list(await session.scalars(select(VaultSecret).where(
        VaultSecret.name.in_(wanted), VaultSecret.scope_key == "", _usable(utcnow()))))
    if not rows:
        return {}
    kek = require_key(settings)
    return {row.name: open_value(row, kek) for row in rows}


async def delete_instance_secrets(session: AsyncSession, instance_id: str, status: str, now: datetime) -> None:
    """10-core §6.2: entering DESTROYED deletes the vault secrets bound to the instance."""
    if status == "DESTROYED":
        await session.execute(delete(VaultSecret).where(VaultSecret.instance_id == instance_id))
