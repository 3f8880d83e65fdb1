"""The job runner across replicas: claims, concurrency cap, leases, interrupted jobs, retention (10-core §6.4, §16.2)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from tests.domains.lifecycle.helpers import events_of, get_instance, set_status, wait_job
from tests.fakes.fake_sindri import FakeRun, FakeSindri

from sindri_console.domains.lifecycle import runner as runner_module
from sindri_console.domains.lifecycle.runner import INTERRUPTED_ERROR, JobRunner
from sindri_console.kit.clock import clock, utcnow
from sindri_console.loops.retention import run_retention
from sindri_console.models.agent import AgentState
from sindri_console.models.instance import Instance
from sindri_console.models.jobs import Backup, InstanceJob
from sindri_console.runtime import Runtime


async def _until(predicate: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def _job_row(console: Any, job_id: str) -> InstanceJob:
    async with console.rt.db.read() as s:
        job = await s.get(InstanceJob, job_id)
    assert job is not None
    return job


async def _lease_renewed_past(console: Any, job_id: str, moment: Any, within: float = 10.0) -> None:
    """Wait until the runner renewed the job's lease beyond `moment` (renewals run every 0.1 s here)."""
    deadline = time.monotonic() + within
    while True:
        expires = (await _job_row(console, job_id)).lease_expires_at
        if expires is not None and expires > moment:
            return
        assert time.monotonic() < deadline, "the lease was not renewed"
        await asyncio.sleep(0.05)


async def _crash_mid_job(console: Any, fake: FakeSindri, command: str) -> None:
    """Halt this replica's runner while `command` runs, as a crash would: the CLI dies, the row stays RUNNING."""
    await _until(lambda: any(r.command == command and r.ended is None for r in fake.runs()))
    assert len(await console.rt.services["lifecycle"].halt()) == 1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _overlap(runs: list[FakeRun]) -> int:
    points = sorted([(r.started, 1) for r in runs] + [(r.ended or float("inf"), -1) for r in runs],
                    key=lambda p: (p[0], p[1]))
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


@pytest.mark.parametrize(
    ("action", "start_status", "control", "command", "query", "after", "step"),
    [
        ("suspend", "RUNNING", {"sleep": 30}, "stop", "", "RUNNING", None),  # row 8
        ("resume", "STOPPED", {"sleep": 30}, "start", "", "STOPPED", None),  # row 11
        ("destroy", "RUNNING", {"commands": {"destroy": {"sleep": 30}}}, "destroy", "", "ERROR", "TEARDOWN"),  # 15
        ("destroy", "RUNNING", {"commands": {"connect": {"sleep": 30}}}, "connect", "&backup=true", "RUNNING",
         "BACKUP"),  # row 14
    ],
)
async def test_a_job_interrupted_by_a_dead_replica_fails_and_can_be_retried(
    console: Any, admin: str, operator: str, fake: FakeSindri, action: str, start_status: str,
    control: dict[str, Any], command: str, query: str, after: str, step: str | None,
) -> None:
    fake.control(**control)
    inst = await console.register(admin, f"crash-{action}-{command}")
    await set_status(console, inst["id"], start_status)
    if action == "destroy":
        r = await console.client.delete(f"/api/v1/instances/{inst['id']}?destroy=true{query}",
                                        headers=console.auth(operator))
    else:
        r = await console.client.post(f"/api/v1/instances/{inst['id']}/{action}", headers=console.auth(operator))
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["id"]
    await _crash_mid_job(console, fake, command)
    assert (await _job_row(console, job_id)).status == "RUNNING"

    # Before the lease expires nothing is touched; after it, the recovery loop fails the job.
    assert await console.rt.loops.run_once("lifecycle-job-recovery") == 0
    clock.advance(31)
    assert await console.rt.loops.run_once("lifecycle-job-recovery") == 1
    job = await _job_row(console, job_id)
    assert job.status == "FAILED" and job.error == INTERRUPTED_ERROR and job.finished_at is not None
    assert job.step == step
    inst_after = await get_instance(console, operator, inst["id"])
    assert inst_after["status"] == after and inst_after["activeJobId"] is None
    errors = [e for e in await events_of(console, inst["id"]) if e.type == "ERROR"]
    assert errors and errors[-1].metadata_["jobId"] == job_id and errors[-1].metadata_["error"] == INTERRUPTED_ERROR
    if step == "BACKUP":
        async with console.rt.db.read() as s:
            [backup] = (await s.scalars(select(Backup).where(Backup.job_id == job_id))).all()
        assert backup.status == "FAILED" and backup.error == INTERRUPTED_ERROR
    assert await console.rt.loops.run_once("lifecycle-job-recovery") == 0

    # The restarted server takes a new request for the same instance.
    console.rt.services["lifecycle"] = JobRunner(console.rt)
    fake.control()
    retry = "suspend" if after in ("RUNNING", "UNREACHABLE") else "resume"
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/{retry}?wait=10", headers=console.auth(operator))
    assert r.status_code == 200, r.text
    assert r.json()["job"]["status"] == "SUCCEEDED"


async def test_a_renewed_lease_is_not_recovered_and_a_lost_lease_abandons_the_job(
    console: Any, admin: str, operator: str, fake: FakeSindri, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "LEASE_RENEW_SECONDS", 0.1)
    fake.control(sleep=30)
    inst = await console.register(admin, "lease-1")
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend", headers=console.auth(operator))
    job_id = r.json()["job"]["id"]
    await _until(lambda: len(fake.runs()) == 1)
    first = (await _job_row(console, job_id)).lease_expires_at
    assert first is not None
    clock.advance(20)
    await _lease_renewed_past(console, job_id, utcnow() + timedelta(seconds=25))
    clock.advance(20)  # 40 s after the claim, but the lease was renewed meanwhile
    await _lease_renewed_past(console, job_id, utcnow() + timedelta(seconds=25))
    assert await console.rt.loops.run_once("lifecycle-job-recovery") == 0

    # Another replica's recovery took the job (as if this one had stalled): this one must let it go.
    async with console.rt.db.write() as s:
        await s.execute(update(InstanceJob).where(InstanceJob.id == job_id)
                        .values(status="FAILED", error=INTERRUPTED_ERROR))
    pid = fake.runs()[0].pid
    await _until(lambda: not _alive(pid), within=5)  # killed: the CLI of a job this replica lost is stopped
    await _until(lambda: not console.rt.services["lifecycle"].running_job_ids, within=5)
    job = await _job_row(console, job_id)
    assert job.status == "FAILED" and job.error == INTERRUPTED_ERROR
    assert (await get_instance(console, operator, inst["id"]))["status"] == "SUSPENDING"  # not this runner's to set


async def test_the_concurrency_cap_bounds_parallel_cli_processes(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    fake.control(sleep=1)
    ids = [(await console.register(admin, f"cap-{i}"))["id"] for i in range(6)]
    r = await console.client.post("/api/v1/instances/bulk-action", json={"action": "suspend", "instanceIds": ids},
                                  headers=console.auth(operator))
    assert r.status_code == 202, r.text
    jobs = {item["id"]: item["jobId"] for item in r.json()["results"]}
    for iid in ids:
        assert (await wait_job(console, operator, iid, jobs[iid], within=30))["status"] == "SUCCEEDED"
    assert len(fake.runs()) == 6
    assert fake.max_overlap() == 2  # LIFECYCLE_MAX_CONCURRENCY=2: parallel, never more


async def test_two_replicas_never_run_the_same_job(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    fake.control(sleep=0.3)
    other = Runtime.build(console.rt.settings)
    await other.bus.start()
    second = JobRunner(other)
    try:
        ids = [(await console.register(admin, f"rep-{i}"))["id"] for i in range(10)]
        r = await console.client.post("/api/v1/instances/bulk-action",
                                      json={"action": "suspend", "instanceIds": ids}, headers=console.auth(operator))
        assert r.json()["summary"]["accepted"] == 10
        first = console.rt.services["lifecycle"]

        async def both_claim() -> None:
            while True:
                async with console.rt.db.read() as s:
                    left = await s.scalar(select(InstanceJob.id).where(
                        InstanceJob.status.in_(("QUEUED", "RUNNING"))).limit(1))
                if left is None:
                    return
                await asyncio.gather(first.claim_and_start(), second.claim_and_start())
                await asyncio.sleep(0.02)

        await asyncio.wait_for(both_claim(), 60)
        async with console.rt.db.read() as s:
            job_rows = (await s.scalars(select(InstanceJob))).all()
        assert len(job_rows) == 10 and all(j.status == "SUCCEEDED" for j in job_rows)
        owners = {j.instance_id: j.lease_owner for j in job_rows}
        assert set(owners.values()) == {console.rt.replica_id, other.replica_id}
        runs_by_instance: dict[str, list[FakeRun]] = defaultdict(list)
        for run in fake.runs():
            runs_by_instance[run.cwd.rsplit("/", 1)[-1]].append(run)
        assert sorted(runs_by_instance) == sorted(ids)
        assert all(len(runs) == 1 for runs in runs_by_instance.values())
        for owner in (console.rt.replica_id, other.replica_id):
            mine = [runs_by_instance[iid][0] for iid, o in owners.items() if o == owner]
            assert _overlap(mine) <= 2
        async with console.rt.db.read() as s:
            statuses = set((await s.scalars(select(Instance.status).where(Instance.id.in_(ids)))).all())
        assert statuses == {"SUSPENDED"}
    finally:
        await second.stop()
        await other.bus.stop()
        await other.db.dispose()


async def test_the_instance_docker_host_reaches_the_cli(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    fake.control(commands={"stop": {"stdout": []}})
    inst = await console.register(admin, "docker-1", provider="docker", region=None)
    await set_status(console, inst["id"], "RUNNING", docker_host="tcp://10.1.2.3:2375")
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend?wait=10", headers=console.auth(operator))
    assert r.json()["job"]["status"] == "SUCCEEDED"
    [run] = fake.runs()
    assert "DOCKER_HOST" in run.env_keys
    body = await get_instance(console, operator, inst["id"])
    assert "dockerHost" not in body and "docker_host" not in body


async def test_finished_jobs_expire_after_the_retention_window(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    inst = await console.register(admin, "ret-1")
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/backup?wait=10", headers=console.auth(operator))
    job_id = r.json()["job"]["id"]
    assert r.json()["job"]["status"] == "SUCCEEDED"
    clock.advance(89 * 86400)
    result = await run_retention(console.rt)
    assert "instance_job" not in result["deleted"]
    clock.advance(2 * 86400)
    result = await run_retention(console.rt)
    assert result["deleted"]["instance_job"] == 1
    async with console.rt.db.read() as s:
        assert await s.get(InstanceJob, job_id) is None
        [backup] = (await s.scalars(select(Backup).where(Backup.instance_id == inst["id"]))).all()
    assert backup.status == "SUCCEEDED" and backup.job_id is None  # backups are never deleted by retention


async def test_a_resumed_instance_gets_a_full_heartbeat_threshold(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    inst = await console.register(admin, "hb-1")
    long_ago = utcnow() - timedelta(hours=2)
    async with console.rt.db.write() as s:
        s.add(AgentState(instance_id=inst["id"], last_seen_at=long_ago, heartbeat_interval_seconds=60,
                         heartbeat_deadline_at=long_ago, heartbeat_lost=True, updated_at=long_ago))
    await set_status(console, inst["id"], "UNREACHABLE")
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/resume?wait=10", headers=console.auth(operator))
    assert r.json()["instance"]["status"] == "RUNNING"
    async with console.rt.db.read() as s:
        state = await s.get(AgentState, inst["id"])
    assert state is not None and state.heartbeat_deadline_at is not None and state.heartbeat_lost is False
    # max(AGENT_HEARTBEAT_LOSS_SECONDS=90, 3 × 60 s) from the moment it entered RUNNING
    assert state.heartbeat_deadline_at >= utcnow() + timedelta(seconds=170)


async def test_a_graceful_shutdown_records_the_interruption_at_once(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    fake.control(sleep=30)
    inst = await console.register(admin, "stop-1")
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend", headers=console.auth(operator))
    job_id = r.json()["job"]["id"]
    await _until(lambda: len(fake.runs()) == 1)
    await console.rt.services["lifecycle"].stop()
    pid = fake.runs()[0].pid
    await _until(lambda: not _alive(pid), within=5)
    job = await _job_row(console, job_id)
    assert job.status == "FAILED" and job.error == INTERRUPTED_ERROR
    assert (await get_instance(console, operator, inst["id"]))["status"] == "RUNNING"
