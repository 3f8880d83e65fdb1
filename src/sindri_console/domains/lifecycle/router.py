"""Lifecycle routes (10-core §6.3–§6.9): parse, authorise, shape. DELETE …?destroy=true lives in instances."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sindri_console.domains.lifecycle import repository as repo
from sindri_console.domains.lifecycle import service
from sindri_console.domains.lifecycle.schemas import (
    BACKUP_STATUSES,
    JOB_ACTIONS,
    JOB_STATUSES,
    ActionBody,
    ActionResultOut,
    BackupBody,
    BackupPage,
    BulkBody,
    BulkOut,
    JobOut,
    JobPage,
    LifecycleOut,
    backup_to_wire,
    job_to_wire,
)
from sindri_console.kit.auth import CurrentPrincipal
from sindri_console.kit.errors import ApiError
from sindri_console.kit.pagination import page_body, page_params, paginate
from sindri_console.kit.schema import json_body_doc, parse_model, query_enum_list, read_json
from sindri_console.kit.scope import check_path_id, get_visible_instance
from sindri_console.runtime import runtime_of

router = APIRouter(prefix="/api/v1", tags=["lifecycle"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed JSON or path id"}, 401: {"description": "Unauthenticated"},
    403: {"description": "Forbidden"}, 404: {"description": "Not found"}, 409: {"description": "Conflict"},
    413: {"description": "Body too large"}, 422: {"description": "Validation error"},
    429: {"description": "Rate limited"},
}
ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    202: {"model": ActionResultOut, "description": "Accepted; the job has not finished yet"},
    503: {"description": "The Sindri CLI is missing"},
}
WAIT_DOC = {"parameters": [{"name": "wait", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 0, "maximum": 60, "default": 0},
                            "description": "Seconds to wait for the job to finish (200) before answering 202"}]}


def _with_wait(body_model: type[Any]) -> dict[str, Any]:
    return {**json_body_doc(body_model), **WAIT_DOC}


@router.post("/instances/bulk-action", response_model=BulkOut, summary="Suspend, resume or destroy instances",
             responses={202: {"model": BulkOut, "description": "At least one item accepted"},
                        503: {"description": "The Sindri CLI is missing"}, **ERRORS},
             openapi_extra=json_body_doc(BulkBody))
async def bulk_action(request: Request, principal: CurrentPrincipal) -> Any:
    body = parse_model(BulkBody, await read_json(request))
    status, payload = await service.bulk_action(runtime_of(request), principal, body)
    return JSONResponse(payload, status_code=status)


async def _action(request: Request, principal: Any, instance_id: str, action: str) -> Any:
    check_path_id(instance_id, "instance id")
    data = await read_json(request)
    wait_seconds = service.parse_wait(request.query_params.get("wait"))
    if action == "BACKUP":
        backup = parse_model(BackupBody, data, empty_ok=True)
        req = service.ActionRequest("BACKUP", backup=service.BackupSpec(
            label=backup.label, profile=backup.profile, compression_level=backup.compression_level,
            purpose="MANUAL"))
    else:
        parsed = parse_model(ActionBody, data, empty_ok=True)
        req = service.ActionRequest(action, params={"reason": parsed.reason} if parsed.reason else {})
    return await service.perform_action(runtime_of(request), principal, instance_id, req, wait_seconds)


@router.post("/instances/{id}/suspend", response_model=ActionResultOut, responses=ACTION_ERRORS,
             summary="Suspend an instance (job)", openapi_extra=_with_wait(ActionBody))
async def suspend_instance(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    return await _action(request, principal, id, "SUSPEND")


@router.post("/instances/{id}/resume", response_model=ActionResultOut, responses=ACTION_ERRORS,
             summary="Resume an instance (job)", openapi_extra=_with_wait(ActionBody))
async def resume_instance(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    return await _action(request, principal, id, "RESUME")


@router.post("/instances/{id}/backup", response_model=ActionResultOut, responses=ACTION_ERRORS,
             summary="Back up an instance's volume (job)", openapi_extra=_with_wait(BackupBody))
async def backup_instance(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    return await _action(request, principal, id, "BACKUP")


@router.get("/instances/{id}/lifecycle", response_model=LifecycleOut, responses=ERRORS,
            summary="Available lifecycle actions")
async def get_lifecycle(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    return await service.lifecycle_of(runtime_of(request), principal, id)


@router.get("/instances/{id}/jobs", response_model=JobPage, responses=ERRORS, summary="Lifecycle jobs")
async def list_jobs(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    q = request.query_params
    params = page_params(q)
    statuses = query_enum_list(q, "status", JOB_STATUSES)
    actions = query_enum_list(q, "action", JOB_ACTIONS)
    async with rt.db.read() as s:
        inst = await get_visible_instance(s, principal, id)
        rows, total, _ = await paginate(s, repo.jobs_statement(inst.id, statuses, actions), params)
    return page_body([job_to_wire(r[0]) for r in rows], params, total)


@router.get("/instances/{id}/jobs/{jobId}", response_model=JobOut, responses=ERRORS, summary="One lifecycle job")
async def get_job(id: str, jobId: str, request: Request, principal: CurrentPrincipal) -> Any:  # noqa: N803
    rt = runtime_of(request)
    check_path_id(id, "instance id")
    check_path_id(jobId, "job id")
    async with rt.db.read() as s:
        inst = await get_visible_instance(s, principal, id)
        job = await repo.job_of_instance(s, inst.id, jobId)
    if job is None:
        raise ApiError(404, "Job not found")
    return job_to_wire(job)


@router.get("/instances/{id}/backups", response_model=BackupPage, responses=ERRORS, summary="Backups")
async def list_backups(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    q = request.query_params
    params = page_params(q)
    statuses = query_enum_list(q, "status", BACKUP_STATUSES)
    async with rt.db.read() as s:
        inst = await get_visible_instance(s, principal, id)
        rows, total, _ = await paginate(s, repo.backups_statement(inst.id, statuses), params)
    return page_body([backup_to_wire(r[0]) for r in rows], params, total)
