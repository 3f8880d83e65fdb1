"""Start-up of the lifecycle domain: the job runner, its poll, recovery and retention loops (10-core §16.2)."""

from __future__ import annotations

from sindri_console.domains.lifecycle.runner import POLL_SECONDS, RECOVERY_SECONDS, RETENTION_SECONDS
from sindri_console.domains.lifecycle.service import runner_of
from sindri_console.loops.base import LoopSpec
from sindri_console.runtime import Runtime


async def startup(rt: Runtime) -> None:
    runner = runner_of(rt)
    rt.loops.add(LoopSpec("lifecycle-jobs", POLL_SECONDS, runner.claim_and_start))
    rt.loops.add(LoopSpec("lifecycle-job-recovery", RECOVERY_SECONDS, runner.recover_interrupted))
    rt.loops.add(LoopSpec("lifecycle-job-retention", RETENTION_SECONDS, runner.delete_expired_jobs,
                          lease="lifecycle-job-retention", lease_ttl=RETENTION_SECONDS * 2, timeout=120))


async def shutdown(rt: Runtime) -> None:
    runner = rt.services.get("lifecycle")
    if runner is not None:
        await runner.stop()
