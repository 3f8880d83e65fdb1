"""Start-up of the deployments domain: the job runner loop, its bus wake-up, and the vault clean-up of
destroyed instances (20-ops §7.7, 10-core §6.2)."""

from __future__ import annotations

import asyncio
import contextlib

from sindri_console.domains.deployments.runner import LOOP_NAME, TICK_SECONDS, runner_of
from sindri_console.domains.deployments.vault import delete_instance_secrets
from sindri_console.domains.instances.removal import on_removal
from sindri_console.loops.base import LoopSpec
from sindri_console.runtime import Runtime

WAKE_TOPIC = "ops.wake.deploy"


async def _forward_wakes(rt: Runtime) -> None:
    sub = await rt.bus.subscribe(WAKE_TOPIC, maxsize=64)
    try:
        while True:
            await sub.get()
            rt.loops.wake(LOOP_NAME)
    finally:
        await sub.close()


async def startup(rt: Runtime) -> None:
    runner = runner_of(rt)
    rt.loops.add(LoopSpec(LOOP_NAME, TICK_SECONDS, runner.tick))
    on_removal(delete_instance_secrets)
    if rt.settings.LOOPS_ENABLED:
        rt.services["deployments.wake"] = asyncio.create_task(_forward_wakes(rt), name="deployments-wake")


async def shutdown(rt: Runtime) -> None:
    task = rt.services.pop("deployments.wake", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await runner_of(rt).stop()
