"""Start-up of the lifecycle domain: the job runner, its poll and recovery loops, job retention (10-core §16.2)."""

from __future__ import annotations

from datetime import timedelta

from sindri_console.db.dialect import table_of
from sindri_console.domains.lifecycle.repository import expired_jobs_condition
from sindri_console.domains.lifecycle.runner import POLL_SECONDS, RECOVERY_SECONDS
from sindri_console.domains.lifecycle.service import runner_of
from sindri_console.domains.lifecycle.waiters import JobWaiters
from sindri_console.kit.clock import utcnow
from sindri_console.loops.base import LoopSpec
from sindri_console.loops.retention import delete_expired, register_retention
from sindri_console.models.jobs import InstanceJob
from sindri_console.runtime import Runtime


async def expired_jobs(rt: Runtime, batch: int) -> int:
    """One batch of the shared retention loop: finished jobs older than JOB_RETENTION_DAYS (§10)."""
    cutoff = utcnow() - timedelta(days=rt.settings.JOB_RETENTION_DAYS)
    return await delete_expired(rt.db, table_of(InstanceJob), expired_jobs_condition(cutoff), batch)


async def startup(rt: Runtime) -> None:
    runner = runner_of(rt)
    rt.loops.add(LoopSpec("lifecycle-jobs", POLL_SECONDS, runner.claim_and_start))
    rt.loops.add(LoopSpec("lifecycle-job-recovery", RECOVERY_SECONDS, runner.recover_interrupted))
    register_retention("instance_job", expired_jobs)
    waiters = JobWaiters(rt.bus)
    await waiters.start()
    rt.services["lifecycle_waiters"] = waiters


async def shutdown(rt: Runtime) -> None:
    runner = rt.services.get("lifecycle")
    if runner is not None:
        await runner.stop()
    waiters = rt.services.pop("lifecycle_waiters", None)
    if waiters is not None:
        await waiters.stop()
