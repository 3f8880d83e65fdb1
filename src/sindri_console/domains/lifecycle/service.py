"""Lifecycle decisions (10-core §5.5, §6.3–§6.9): accept an action as a job, wait for it, read jobs.

Acceptance is one transaction: the status compare-and-set (or, for a backup, `activeJobId`), the job row,
the backup row, the REQUESTED event and the audit entry. After the commit this replica's runner is kicked to
claim the job at once; other replicas find it on their poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.engine import publish_after_commit
from sindri_console.domains.instances.state import transition, write_event
from sindri_console.domains.instances.wire import instance_to_wire
from sindri_console.domains.lifecycle import repository as repo
from sindri_console.domains.lifecycle.guard import available_actions, ensure_allowed, is_managed, refusal
from sindri_console.domains.lifecycle.runner import TRANSITIONAL_OF, JobRunner
from sindri_console.domains.lifecycle.schemas import (
    FINISHED_JOB_STATUSES,
    MAX_WAIT_SECONDS,
    BulkBody,
    backup_to_wire,
    check_label,
    job_to_wire,
    normalise_profile,
)
from sindri_console.domains.lifecycle.waiters import JobWaiters
from sindri_console.kit.audit import write_audit
from sindri_console.kit.auth import Principal
from sindri_console.kit.cli_runner import CLI_MISSING_MESSAGE
from sindri_console.kit.clock import utcnow
from sindri_console.kit.errors import ApiError, validation_error
from sindri_console.kit.ids import ID_PATTERN, new_id
from sindri_console.kit.rbac import Role
from sindri_console.kit.scope import get_visible_instance, require_role_on_instance, visible_instances
from sindri_console.models.agent import AgentState
from sindri_console.models.instance import Instance
from sindri_console.models.jobs import Backup, InstanceJob
from sindri_console.runtime import Runtime

WAIT_POLL_SECONDS = 0.1
WAIT_RECHECK_SECONDS = 1.0
_REQUESTED_WORD = {"SUSPEND": "Suspend", "RESUME": "Resume", "DESTROY": "Destroy", "BACKUP": "Backup"}


@dataclass
class BackupSpec:
    label: str | None
    profile: str
    compression_level: int
    purpose: str  # MANUAL | PRE_DESTROY


@dataclass
class ActionRequest:
    """One validated action: what to do and the params stored on the job."""

    action: str  # SUSPEND | RESUME | DESTROY | BACKUP
    params: dict[str, Any] = field(default_factory=dict)
    backup: BackupSpec | None = None


def runner_of(rt: Runtime) -> JobRunner:
    runner = rt.services.get("lifecycle")
    if runner is None:
        runner = JobRunner(rt)
        rt.services["lifecycle"] = runner
    return runner  # type: ignore[no-any-return]


async def driver_available(rt: Runtime) -> bool:
    """From the CLI cache (§2); before the first resolution finished, wait for the one in flight."""
    from sindri_console.domains.version.service import cli_of

    cli = cli_of(rt)
    facts = cli.cached_facts()
    if facts is None:
        facts = await cli.resolve()
    else:
        # Revalidates in the background at most once a minute, so a newly installed CLI is noticed.
        cli.start_background_resolution()
    return facts.available


async def require_driver(rt: Runtime) -> None:
    if not await driver_available(rt):
        raise ApiError(503, CLI_MISSING_MESSAGE)


def parse_wait(raw: Any) -> int:
    if raw is None or raw == "":
        return 0
    text = str(raw).strip()
    if isinstance(raw, bool) or not text.isascii() or not text.isdigit() or not 0 <= int(text) <= MAX_WAIT_SECONDS:
        raise validation_error("wait", f"must be an integer from 0 to {MAX_WAIT_SECONDS}")
    return int(text)


def default_label(prefix: str, name: str, now: datetime) -> str:
    return f"{prefix}-{name}-{now.strftime('%Y%m%dT%H%M%SZ')}"


# ---- acceptance ----------------------------------------------------------------------------------------


async def _accept_in(session: AsyncSession, principal: Principal, inst: Instance, req: ActionRequest,
                     now: datetime, bulk_id: str | None = None) -> tuple[InstanceJob, Backup | None] | str:
    """Accept `req` on `inst` inside `session`; returns the job (and backup), or the 409 sentence."""
    action = req.action
    lower = action.lower()
    from_status = inst.status  # the compare-and-set below refreshes `inst`
    reason = refusal(name=inst.name, status=inst.status, provider=inst.provider, active_job_id=inst.active_job_id,
                     action=lower, with_backup=req.backup is not None and action == "DESTROY")
    if reason is not None:
        return reason
    backup_row: Backup | None = None
    if req.backup is not None:
        label = req.backup.label or default_label(
            "pre-destroy" if req.backup.purpose == "PRE_DESTROY" else "backup", inst.name, now)
        if await repo.label_in_use(session, inst.id, label):
            return f"A backup labelled '{label}' already exists for instance '{inst.name}'"
        req.backup.label = label
    job_id = new_id()
    params = dict(req.params)
    if req.backup is not None and action == "DESTROY":
        params.update({"backup": True, "backupLabel": req.backup.label, "backupProfile": req.backup.profile})
    elif req.backup is not None:
        params.update({"label": req.backup.label, "profile": req.backup.profile,
                       "compressionLevel": req.backup.compression_level})
    who = principal.user_email or "an agent"
    meta = {"phase": "REQUESTED", "jobId": job_id, **({"bulkId": bulk_id} if bulk_id else {}), **params}
    if action in TRANSITIONAL_OF:
        previous = await transition(
            session, inst.id, allowed_from=(inst.status,), to=TRANSITIONAL_OF[action],
            reason=f"{_REQUESTED_WORD[action]} requested by {who}", bus_reason=lower, event_type=action,
            event_message=f"{_REQUESTED_WORD[action]} requested by {who}", event_metadata=meta,
            actor_kind="USER", user_id=principal.user_id, job_id=job_id, require_no_job=True,
            values={"active_job_id": job_id}, now=now,
        )
        if previous is None:
            current = await session.scalar(select(Instance).where(Instance.id == inst.id)
                                           .execution_options(populate_existing=True))
            assert current is not None
            return refusal(name=current.name, status=current.status, provider=current.provider,
                           active_job_id=current.active_job_id, action=lower) or (
                f"Instance '{inst.name}' changed while the request was handled; try again")
    else:
        res = await session.execute(
            update(Instance).where(Instance.id == inst.id, Instance.status.in_(("RUNNING", "UNREACHABLE")),
                                   Instance.active_job_id.is_(None))
            .values(active_job_id=job_id, updated_at=now)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return f"Instance '{inst.name}' has an operation in progress"
        write_event(session, inst.id, "BACKUP", f"Backup requested by {who}", meta, actor_kind="USER",
                    user_id=principal.user_id, job_id=job_id, ts_ms=int(now.timestamp() * 1000))
    job = InstanceJob(
        id=job_id, instance_id=inst.id, action=action, status="QUEUED", previous_status=from_status, params=params,
        step=None, bulk_id=bulk_id, requested_by=principal.user_id, created_at=now,
    )
    session.add(job)
    if req.backup is not None:
        # No ORM relationship orders the inserts: the job row must exist before the backup referencing it.
        await session.flush()
        assert req.backup.label is not None
        backup_row = Backup(
            id=new_id(), instance_id=inst.id, job_id=job_id, label=req.backup.label, profile=req.backup.profile,
            compression_level=req.backup.compression_level, purpose=req.backup.purpose, status="PENDING",
            requested_by=principal.user_id, created_at=now,
        )
        session.add(backup_row)
    await write_audit(session, principal, action, "instance", inst.id,
                      {"jobId": job_id, "name": inst.name, **({"bulkId": bulk_id} if bulk_id else {}), **params},
                      team_id=inst.team_id)
    publish_after_commit(session, f"instance.{inst.id}.jobs",
                         {"instanceId": inst.id, "jobId": job_id, "action": action, "status": "QUEUED"})
    # Rows are flushed at commit, a bulk's inserts together; a unique-index race surfaces there as IntegrityError.
    return job, backup_row


async def perform_action(rt: Runtime, principal: Principal, instance_id: str, req: ActionRequest,
                         wait_seconds: int) -> JSONResponse:
    """§6.5: 404 → 403 → 409 → 503 → accept, all in one transaction; then wait up to `wait_seconds`.

    Answers 200 when the job finished within the wait, else 202; the body is `{instance, job, backup}` as it
    is when the response is written (with no wait: as committed at acceptance).
    """
    from sindri_console.domains.instances.service import min_instance_version

    # Only a cold start waits here (for the resolution in flight); never inside the write transaction.
    facts_available = await driver_available(rt)
    name = instance_id
    try:
        async with rt.db.write() as s:
            inst = await get_visible_instance(s, principal, instance_id)
            name = inst.name
            await require_role_on_instance(s, principal, inst, Role.OPERATOR)
            ensure_allowed(name=inst.name, status=inst.status, provider=inst.provider,
                           active_job_id=inst.active_job_id, action=req.action.lower(),
                           with_backup=req.backup is not None and req.action == "DESTROY")
            if not facts_available:
                raise ApiError(503, CLI_MISSING_MESSAGE)
            accepted = await _accept_in(s, principal, inst, req, utcnow())
            if isinstance(accepted, str):
                raise ApiError(409, accepted)
            job, backup = accepted
            await s.refresh(inst)
            body = {"instance": instance_to_wire(inst, await s.get(AgentState, inst.id), min_instance_version(rt)),
                    "job": job_to_wire(job), "backup": backup_to_wire(backup)}
    except IntegrityError:
        # The partial unique indexes caught a race the compare-and-set could not see.
        raise ApiError(409, f"Instance '{name}' has an operation in progress") from None
    runner_of(rt).kick()
    if wait_seconds == 0:
        return JSONResponse(body, status_code=202)
    finished = await wait_for_job(rt, job.id, wait_seconds)
    return JSONResponse(await action_body(rt, inst.id, job.id), status_code=200 if finished else 202)


async def wait_for_job(rt: Runtime, job_id: str, wait_seconds: int) -> bool:
    """True once the job is finished, waiting at most `wait_seconds` (0 = just look).

    Woken by the job's end message on the bus; the database is re-read at least once a second regardless.
    """
    waiters: JobWaiters | None = rt.services.get("lifecycle_waiters")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    with contextlib.ExitStack() as stack:
        event = stack.enter_context(waiters.watch(job_id)) if waiters is not None and wait_seconds else None
        while True:
            async with rt.db.read() as s:
                status = await s.scalar(select(InstanceJob.status).where(InstanceJob.id == job_id))
            if status in FINISHED_JOB_STATUSES:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            if event is None:
                await asyncio.sleep(min(WAIT_POLL_SECONDS, remaining))
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(WAIT_RECHECK_SECONDS, remaining))


async def action_body(rt: Runtime, instance_id: str, job_id: str) -> dict[str, Any]:
    from sindri_console.domains.instances.service import min_instance_version

    async with rt.db.read() as s:
        inst = await s.get(Instance, instance_id)
        job = await s.get(InstanceJob, job_id)
        backup = await repo.backup_of_job(s, job_id)
        state = await s.get(AgentState, instance_id)
    assert inst is not None
    return {"instance": instance_to_wire(inst, state, min_instance_version(rt)), "job": job_to_wire(job),
            "backup": backup_to_wire(backup)}


# ---- DELETE …?destroy=true (§5.5) ------------------------------------------------------------------------


def _flag(options: dict[str, Any], name: str) -> bool:
    raw = options.get(name)
    if raw is None or raw == "":
        return False
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise validation_error(name, "must be true or false")


async def destroy_instance(rt: Runtime, principal: Principal, instance_id: str, options: dict[str, Any]) -> Any:
    """DELETE /instances/:id with destroy=true: a DESTROY job, optionally preceded by a backup (§5.5, §6.7).

    `options` holds the raw `destroy`, `backup`, `backupLabel`, `backupProfile` and `wait` values.
    """
    _flag(options, "destroy")
    with_backup = _flag(options, "backup")
    label = options.get("backupLabel")
    profile_raw = options.get("backupProfile")
    if label not in (None, "") and not with_backup:
        raise validation_error("backupLabel", "is only allowed with backup=true")
    if label not in (None, ""):
        try:
            label = check_label(label)
        except ValueError as exc:
            raise validation_error("backupLabel", str(exc)) from None
    else:
        label = None
    profile = "STANDARD"
    if profile_raw not in (None, ""):
        try:
            profile = normalise_profile(profile_raw)
        except ValueError as exc:
            raise validation_error("backupProfile", str(exc)) from None
    wait_seconds = parse_wait(options.get("wait"))
    req = ActionRequest("DESTROY")
    if with_backup:
        req.backup = BackupSpec(label=label, profile=profile, compression_level=6, purpose="PRE_DESTROY")
    return await perform_action(rt, principal, instance_id, req, wait_seconds)


# ---- bulk (§6.8) ---------------------------------------------------------------------------------------


async def bulk_action(rt: Runtime, principal: Principal, body: BulkBody) -> tuple[int, dict[str, Any]]:
    """Check every unique id like a single request, accept the rest in one transaction; (status, body)."""
    await require_driver(rt)
    action = body.action.upper()
    with_backup = action == "DESTROY" and body.options.with_backup
    unique: list[str] = []
    for iid in body.instance_ids:
        if iid not in unique:
            unique.append(iid)
    results: dict[str, dict[str, Any]] = {
        i: {"id": i, "name": None, "result": "NOT_FOUND", "error": "Instance not found", "jobId": None,
            "status": None} for i in unique
    }
    candidates: list[str] = []
    async with rt.db.read() as s:
        rows = (await s.scalars(select(Instance).where(Instance.id.in_(unique), visible_instances(principal)))).all()
        by_id = {r.id: r for r in rows}
        for iid in unique:
            inst = by_id.get(iid)
            if inst is None or not ID_PATTERN.match(iid):
                continue
            item = results[iid]
            item.update(name=inst.name, status=inst.status)
            try:
                await require_role_on_instance(s, principal, inst, Role.OPERATOR)
            except ApiError as exc:
                item.update(result="FORBIDDEN", error=exc.message)
                continue
            reason = refusal(name=inst.name, status=inst.status, provider=inst.provider,
                             active_job_id=inst.active_job_id, action=action.lower(), with_backup=with_backup)
            if reason is not None:
                item.update(result="CONFLICT", error=reason)
                continue
            candidates.append(iid)
    bulk_id = new_id()
    now = utcnow()
    accepted_any = False
    if candidates:
        try:
            await _accept_bulk(rt, principal, candidates, results, action, with_backup, body, bulk_id, now)
        except IntegrityError:
            raise ApiError(409, "An instance of this request changed while it was handled; try again") from None
        accepted_any = any(results[i]["result"] == "ACCEPTED" for i in candidates)
    if accepted_any:
        runner_of(rt).kick()
    ordered = [results[i] for i in unique]
    accepted_count = sum(1 for r in ordered if r["result"] == "ACCEPTED")
    payload = {
        "bulkId": bulk_id,
        "action": body.action,
        "results": ordered,
        "summary": {"requested": len(body.instance_ids), "unique": len(unique), "accepted": accepted_count,
                    "rejected": len(unique) - accepted_count},
    }
    return (202 if accepted_count else 200), payload


async def _accept_bulk(rt: Runtime, principal: Principal, candidates: list[str], results: dict[str, dict[str, Any]],
                       action: str, with_backup: bool, body: BulkBody, bulk_id: str, now: datetime) -> None:
    """Every candidate in one transaction; an item whose compare-and-set fails becomes CONFLICT."""
    async with rt.db.write() as s:
        rows = (await s.scalars(select(Instance).where(Instance.id.in_(candidates))
                                .execution_options(populate_existing=True))).all()
        by_id = {r.id: r for r in rows}
        for iid in candidates:
            inst = by_id[iid]
            item = results[iid]
            req = ActionRequest(action)
            if with_backup:
                req.backup = BackupSpec(label=None, profile=body.options.backup_profile, compression_level=6,
                                        purpose="PRE_DESTROY")
            accepted = await _accept_in(s, principal, inst, req, now, bulk_id=bulk_id)
            if isinstance(accepted, str):
                current = await s.scalar(select(Instance.status).where(Instance.id == iid))
                item.update(result="CONFLICT", error=accepted, status=current)
                continue
            item.update(result="ACCEPTED", error=None, jobId=accepted[0].id, status=TRANSITIONAL_OF[action])


# ---- reads (§6.3, §6.9) --------------------------------------------------------------------------------


async def lifecycle_of(rt: Runtime, principal: Principal, instance_id: str) -> dict[str, Any]:
    async with rt.db.read() as s:
        inst = await get_visible_instance(s, principal, instance_id)
        job = await s.get(InstanceJob, inst.active_job_id) if inst.active_job_id else None
        connected = await repo.agent_connected(s, inst.id)
    return {
        "instanceId": inst.id,
        "status": inst.status,
        "availableActions": available_actions(name=inst.name, status=inst.status, provider=inst.provider,
                                              active_job_id=inst.active_job_id),
        "activeJob": job_to_wire(job),
        "managedProvider": is_managed(inst.provider),
        "driverAvailable": await driver_available(rt),
        "agentConnected": connected,
    }
