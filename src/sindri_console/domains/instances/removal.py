"""Side effects of entering DESTROYED or DEREGISTERED (10-core §6.2), in the caller's transaction.

Other domains add their own effects by registering a hook here (commands are cancelled, the agent
socket is closed after commit, vault secrets of a destroyed deployment are deleted).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.engine import publish_after_commit
from sindri_console.models.identity import ApiKey

RemovalHook = Callable[[AsyncSession, str, str, datetime], Awaitable[None]]
_hooks: list[RemovalHook] = []


def on_removal(hook: RemovalHook) -> RemovalHook:
    """Register `hook(session, instance_id, new_status, now)`; runs inside the removing transaction."""
    if hook not in _hooks:
        _hooks.append(hook)
    return hook


async def on_instance_removed(session: AsyncSession, instance_id: str, status: str, now: datetime) -> None:
    reason = "instance destroyed" if status == "DESTROYED" else "instance deregistered"
    await session.execute(
        update(ApiKey).where(ApiKey.instance_id == instance_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=None, revoke_reason=reason)
    )
    for hook in list(_hooks):
        await hook(session, instance_id, status, now)
    label = "Instance destroyed" if status == "DESTROYED" else "Instance deregistered"
    publish_after_commit(session, f"agent.{instance_id}.control", {"op": "close", "code": 4410, "reason": label})
