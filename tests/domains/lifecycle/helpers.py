"""Helpers of the lifecycle tests: polling jobs, reading instances and events, setting up statuses."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import select, update

from sindri_console.models.instance import Instance, InstanceEvent

FINISHED = ("SUCCEEDED", "FAILED", "TIMED_OUT")


async def wait_job(console: Any, key: str, instance_id: str, job_id: str, within: float = 20.0) -> dict[str, Any]:
    """Poll the job route until the job has finished."""
    deadline = time.monotonic() + within
    while True:
        r = await console.client.get(f"/api/v1/instances/{instance_id}/jobs/{job_id}", headers=console.auth(key))
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in FINISHED or time.monotonic() > deadline:
            return job  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)


async def get_instance(console: Any, key: str, instance_id: str) -> dict[str, Any]:
    r = await console.client.get(f"/api/v1/instances/{instance_id}", headers=console.auth(key))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def set_status(console: Any, instance_id: str, status: str, **values: Any) -> None:
    """Put an instance into a status directly (set-up for table tests, as other transitions would)."""
    async with console.rt.db.write() as s:
        await s.execute(update(Instance).where(Instance.id == instance_id).values(status=status, **values))


async def events_of(console: Any, instance_id: str) -> list[InstanceEvent]:
    async with console.rt.db.read() as s:
        return list((await s.scalars(select(InstanceEvent).where(InstanceEvent.instance_id == instance_id)
                                      .order_by(InstanceEvent.ts_ms, InstanceEvent.id))).all())


async def lifecycle(console: Any, key: str, instance_id: str) -> dict[str, Any]:
    r = await console.client.get(f"/api/v1/instances/{instance_id}/lifecycle", headers=console.auth(key))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]
