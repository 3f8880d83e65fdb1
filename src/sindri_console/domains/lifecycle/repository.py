"""SQL of the lifecycle domain: job and backup rows, claims, leases, reads and retention."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.dialect import Dialect
from sindri_console.models.agent import AgentState
from sindri_console.models.deployments import Deployment
from sindri_console.models.instance import Instance
from sindri_console.models.jobs import Backup, InstanceJob

LEASE_SECONDS = 30.0


async def job_of_instance(session: AsyncSession, instance_id: str, job_id: str) -> InstanceJob | None:
    return await session.scalar(
        select(InstanceJob).where(InstanceJob.id == job_id, InstanceJob.instance_id == instance_id)
    )


async def backup_of_job(session: AsyncSession, job_id: str) -> Backup | None:
    return await session.scalar(select(Backup).where(Backup.job_id == job_id).order_by(Backup.created_at.desc()))


async def label_in_use(session: AsyncSession, instance_id: str, label: str) -> bool:
    """True when a PENDING, RUNNING or SUCCEEDED backup of the instance has this label (§6.7)."""
    found = await session.scalar(
        select(Backup.id).where(Backup.instance_id == instance_id, Backup.label == label,
                                Backup.status != "FAILED").limit(1)
    )
    return found is not None


def jobs_statement(instance_id: str, statuses: list[str] | None, actions: list[str] | None) -> Select[Any]:
    stmt = select(InstanceJob).where(InstanceJob.instance_id == instance_id)
    if statuses:
        stmt = stmt.where(InstanceJob.status.in_(statuses))
    if actions:
        stmt = stmt.where(InstanceJob.action.in_(actions))
    return stmt.order_by(InstanceJob.created_at.desc(), InstanceJob.id.desc())


def backups_statement(instance_id: str, statuses: list[str] | None) -> Select[Any]:
    stmt = select(Backup).where(Backup.instance_id == instance_id)
    if statuses:
        stmt = stmt.where(Backup.status.in_(statuses))
    return stmt.order_by(Backup.created_at.desc(), Backup.id.desc())


async def agent_connected(session: AsyncSession, instance_id: str) -> bool:
    return bool(await session.scalar(select(AgentState.connected).where(AgentState.instance_id == instance_id)))


async def any_queued(session: AsyncSession) -> bool:
    found = await session.scalar(select(InstanceJob.id).where(InstanceJob.status == "QUEUED").limit(1))
    return found is not None


async def claim_queued(session: AsyncSession, dialect: Dialect, owner: str, limit: int,
                       now: datetime) -> list[InstanceJob]:
    """Move up to `limit` QUEUED jobs to RUNNING under `owner`'s lease, oldest first.

    FOR UPDATE SKIP LOCKED on PostgreSQL lets replicas claim side by side; on SQLite the write unit already
    holds the database lock. The status compare-and-set makes a lost race a no-op either way.
    """
    stmt = dialect.claim(
        select(InstanceJob.id).where(InstanceJob.status == "QUEUED")
        .order_by(InstanceJob.created_at, InstanceJob.id).limit(limit)
    )
    ids = list((await session.scalars(stmt)).all())
    claimed: list[InstanceJob] = []
    for job_id in ids:
        res = await session.execute(
            update(InstanceJob).where(InstanceJob.id == job_id, InstanceJob.status == "QUEUED").values(
                status="RUNNING", started_at=now, lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=LEASE_SECONDS),
            )
        )
        if res.rowcount == 1:  # type: ignore[attr-defined]
            job = await session.get(InstanceJob, job_id, populate_existing=True)
            if job is not None:
                claimed.append(job)
    return claimed


async def renew_lease(session: AsyncSession, job_id: str, owner: str, now: datetime) -> bool:
    res = await session.execute(
        update(InstanceJob).where(InstanceJob.id == job_id, InstanceJob.status == "RUNNING",
                                  InstanceJob.lease_owner == owner)
        .values(lease_expires_at=now + timedelta(seconds=LEASE_SECONDS))
    )
    return res.rowcount == 1  # type: ignore[attr-defined,no-any-return]


async def set_step(session: AsyncSession, job_id: str, owner: str, step: str) -> bool:
    res = await session.execute(
        update(InstanceJob).where(InstanceJob.id == job_id, InstanceJob.status == "RUNNING",
                                  InstanceJob.lease_owner == owner).values(step=step)
    )
    return res.rowcount == 1  # type: ignore[attr-defined,no-any-return]


async def finish_job(session: AsyncSession, job_id: str, *, expected_owner: str | None, status: str,
                     now: datetime, exit_code: int | None, error: str | None, output: str | None,
                     lease_expired_before: datetime | None = None) -> bool:
    """Compare-and-set RUNNING → final; False when the job is no longer this caller's to finish."""
    stmt = update(InstanceJob).where(InstanceJob.id == job_id, InstanceJob.status == "RUNNING")
    if expected_owner is not None:
        stmt = stmt.where(InstanceJob.lease_owner == expected_owner)
    if lease_expired_before is not None:
        stmt = stmt.where(InstanceJob.lease_expires_at < lease_expired_before)
    values: dict[str, Any] = {"status": status, "finished_at": now, "exit_code": exit_code, "error": error,
                              "lease_expires_at": None}
    if output is not None:
        values["output"] = output
    res = await session.execute(stmt.values(**values))
    return res.rowcount == 1  # type: ignore[attr-defined,no-any-return]


async def clear_active_job(session: AsyncSession, instance_id: str, job_id: str) -> None:
    await session.execute(
        update(Instance).where(Instance.id == instance_id, Instance.active_job_id == job_id)
        .values(active_job_id=None)
    )


async def expired_running_jobs(session: AsyncSession, now: datetime, limit: int = 100) -> list[str]:
    return list((await session.scalars(
        select(InstanceJob.id).where(InstanceJob.status == "RUNNING", InstanceJob.lease_expires_at < now)
        .order_by(InstanceJob.lease_expires_at).limit(limit)
    )).all())


def expired_jobs_condition(cutoff: datetime) -> ColumnElement[bool]:
    """Finished jobs older than `cutoff` (§10); their backups keep their rows (job_id → NULL by the FK)."""
    return and_(InstanceJob.status.in_(("SUCCEEDED", "FAILED", "TIMED_OUT")), InstanceJob.finished_at < cutoff)


async def latest_deployment_yaml(session: AsyncSession, instance_id: str) -> str | None:
    """The YAML of the instance's latest successful deployment (20 §7.1), None when it never had one."""
    value = await session.scalar(
        select(Deployment.yaml_content).where(Deployment.instance_id == instance_id,
                                              Deployment.status == "SUCCEEDED")
        .order_by(Deployment.completed_at.desc(), Deployment.created_at.desc()).limit(1)
    )
    return value if isinstance(value, str) and value.strip() else None
