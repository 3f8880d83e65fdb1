"""The one audit writer: an entry in the caller's transaction, secrets redacted (00 §7)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.kit.auth import Principal
from sindri_console.kit.clock import clock
from sindri_console.kit.context import current_context
from sindri_console.kit.ids import new_id
from sindri_console.models.audit import AuditLog

ACTIONS = (
    "CREATE", "UPDATE", "DELETE", "EXECUTE", "DEPLOY", "SUSPEND", "RESUME", "DESTROY", "BACKUP",
    "ACKNOWLEDGE", "RESOLVE", "ROTATE", "REVEAL", "REVOKE", "CONNECT", "DISCONNECT", "LOGIN",
)

_SECRET_KEY = re.compile(
    r"(passw|secret|token|api_?key|apikey|authorization|private_?key|^key$|^keyhash$|^key_hash$|"
    r"^value$|^values$|^agentkey$|^agent_key$|^stdin$|^env_values$|^envvalues$)",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(r"^(sk_|ak_)[0-9a-f]{16,}$|^[0-9a-f]{64}$")
REDACTED = "[REDACTED]"


_NOT_SECRET_SUFFIX = re.compile(r"(id|ids|prefix|name|names|keys|count)$", re.IGNORECASE)


def redact(value: Any, key: str | None = None) -> Any:
    """Replace secret-looking values; identifiers, names and prefixes of keys stay readable."""
    if key is not None and _SECRET_KEY.search(key) and not _NOT_SECRET_SUFFIX.search(key):
        return REDACTED if value is not None else None
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and _SECRET_VALUE.match(value):
        return REDACTED
    return value


def actor_kind_of(principal: Principal | None) -> str:
    if principal is None:
        return "SYSTEM"
    return "AGENT" if principal.is_agent else "USER"


async def write_audit(
    session: AsyncSession,
    principal: Principal | None,
    action: str,
    resource: str,
    resource_id: str | None,
    metadata: dict[str, Any] | None = None,
    *,
    team_id: str | None = None,
    actor_kind: str | None = None,
) -> AuditLog:
    """Add one audit row to `session`; it commits or rolls back with the change it records."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action}")
    ctx = current_context()
    entry = AuditLog(
        id=new_id(),
        ts_ms=clock.now_ms(),
        action=action,
        resource=resource,
        resource_id=resource_id,
        user_id=principal.user_id if principal else None,
        user_email=principal.user_email if principal else None,
        api_key_id=principal.api_key_id if principal else None,
        actor_kind=actor_kind or actor_kind_of(principal),
        team_id=team_id,
        ip_address=ctx.ip_address,
        user_agent=(ctx.user_agent or "")[:256] or None,
        request_id=ctx.request_id,
        metadata_=redact(metadata or {}),
    )
    session.add(entry)
    return entry
