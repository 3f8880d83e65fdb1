"""SQL of deployments: scoped reads, the job claim, lease renewal and log appends (20-ops §7)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.dialect import Dialect
from sindri_console.kit.auth import Principal
from sindri_console.kit.scope import visible_instances
from sindri_console.models.deployments import Deployment
from sindri_console.models.identity import ApiKey
from sindri_console.models.instance import Instance

# Agent keys minted for a deployment carry this name prefix, so a later deployment can revoke them.
AGENT_KEY_NAME_PREFIX = "deployment "


async def visible_deployment(session: AsyncSession, principal: Principal, deployment_id: str) -> Deployment | None:
    """The deployment when its instance is in the caller's scope (20-ops §0.3)."""
    return await session.scalar(
        select(Deployment)
        .join(Instance, Instance.id == Deployment.instance_id)
        .where(Deployment.id == deployment_id, visible_instances(principal))
    )


async def timeline_counts(session: AsyncSession, principal: Principal, boundaries: list[datetime],
                          until: datetime) -> list[tuple[int, str, int]]:
    """(bucket index, status, count) of the visible deployments created in [boundaries[0], until].

    Bucket i is [boundaries[i], boundaries[i + 1]); the last one ends at `until`. One grouped query over
    the created_at index: a CASE on the boundaries needs no date function, so it reads the same on both
    databases.
    """
    bucket = case(*((Deployment.created_at < edge, index) for index, edge in enumerate(boundaries[1:])),
                  else_=len(boundaries) - 1)
    stmt = (
        select(bucket.label("bucket"), Deployment.status, func.count())
        .where(Deployment.created_at >= boundaries[0], Deployment.created_at <= until)
        .group_by(bucket, Deployment.status)
    )
    if not principal.unrestricted:
        stmt = stmt.join(Instance, Instance.id == Deployment.instance_id).where(visible_instances(principal))
    rows = await session.execute(stmt)
    return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]


async def live_instance_status(session: AsyncSession, name: str) -> str | None:
    return await session.scalar(
        select(Instance.status).where(Instance.name == name, Instance.status.not_in(("DESTROYED", "DEREGISTERED")))
    )


async def has_pending(session: AsyncSession) -> bool:
    return await session.scalar(select(Deployment.id).where(Deployment.status == "PENDING").limit(1)) is not None


async def claim_next(session: AsyncSession, dialect: Dialect, replica_id: str, now: datetime,
                     lease_seconds: float) -> Deployment | None:
    """Move the oldest PENDING deployment to IN_PROGRESS under this replica's lease, or None."""
    stmt = dialect.claim(
        select(Deployment.id).where(Deployment.status == "PENDING")
        .order_by(Deployment.created_at, Deployment.id).limit(1)
    )
    deployment_id = await session.scalar(stmt)
    if deployment_id is None:
        return None
    result = await session.execute(
        update(Deployment).where(Deployment.id == deployment_id, Deployment.status == "PENDING")
        .values(status="IN_PROGRESS", started_at=now, claimed_by=replica_id,
                lease_expires_at=now + timedelta(seconds=lease_seconds))
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return await session.get(Deployment, deployment_id)


async def expired_leases(session: AsyncSession, now: datetime) -> list[str]:
    rows = await session.scalars(
        select(Deployment.id).where(Deployment.status == "IN_PROGRESS", Deployment.lease_expires_at < now)
        .order_by(Deployment.created_at).limit(100)
    )
    return list(rows)


async def renew_lease(session: AsyncSession, deployment_id: str, replica_id: str, until: datetime) -> bool:
    result = await session.execute(
        update(Deployment)
        .where(Deployment.id == deployment_id, Deployment.status == "IN_PROGRESS",
               Deployment.claimed_by == replica_id)
        .values(lease_expires_at=until)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


async def append_logs(session: AsyncSession, deployment_id: str, text: str, size: int, truncated: bool) -> None:
    values: dict[str, Any] = {"logs": Deployment.logs + text, "logs_bytes": Deployment.logs_bytes + size}
    if truncated:
        values["logs_truncated"] = True
    await session.execute(update(Deployment).where(Deployment.id == deployment_id).values(**values))


async def finish(session: AsyncSession, deployment_id: str, *, from_status: str, claimed_by: str | None,
                 values: dict[str, Any], lease_expired_before: datetime | None = None) -> bool:
    """Conditional end of a job: only the holder of an IN_PROGRESS row ends it, or the sweeper when the
    lease has expired."""
    stmt = update(Deployment).where(Deployment.id == deployment_id, Deployment.status == from_status)
    if claimed_by is not None:
        stmt = stmt.where(Deployment.claimed_by == claimed_by)
    if lease_expired_before is not None:
        stmt = stmt.where(Deployment.lease_expires_at < lease_expired_before)
    result = await session.execute(stmt.values(**values))
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


async def revoke_deployment_agent_keys(session: AsyncSession, instance_id: str, now: datetime) -> None:
    """Earlier keys minted by deployments of this instance stop working (§7.7 step 1)."""
    await session.execute(
        update(ApiKey)
        .where(ApiKey.instance_id == instance_id, ApiKey.kind == "AGENT", ApiKey.revoked_at.is_(None),
               ApiKey.name.startswith(AGENT_KEY_NAME_PREFIX))
        .values(revoked_at=now, revoke_reason="replaced by a new deployment")
    )
