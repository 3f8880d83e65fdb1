"""Command routes (20-ops §6.6). The gateway has already enforced auth, rate limits and the route role."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sindri_console.domains.commands import repository as repo
from sindri_console.domains.commands import service
from sindri_console.domains.commands.schemas import (
    DEFAULT_SCRIPT_TIMEOUT_MS,
    DEFAULT_TIMEOUT_MS,
    BulkIn,
    BulkOut,
    CommandIn,
    CommandOut,
    CommandPage,
    ScriptIn,
)
from sindri_console.domains.commands.service import CommandSpec
from sindri_console.domains.commands.state import ALL_STATUSES, ORIGINS
from sindri_console.domains.commands.wire import command_to_wire
from sindri_console.kit.auth import CurrentPrincipal
from sindri_console.kit.errors import ApiError
from sindri_console.kit.pagination import page_body, page_params, paginate
from sindri_console.kit.rbac import Role
from sindri_console.kit.schema import (
    json_body_doc,
    parse_model,
    query_enum_list,
    query_iso,
    query_str,
    read_json,
)
from sindri_console.kit.scope import check_path_id
from sindri_console.runtime import runtime_of

router = APIRouter(prefix="/api/v1", tags=["commands"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed JSON or path id"}, 401: {"description": "Unauthenticated"},
    403: {"description": "Forbidden"}, 404: {"description": "Not found"},
    409: {"description": "Instance state, or an agent without command support"},
    413: {"description": "Body too large"}, 422: {"description": "Validation error"},
    429: {"description": "Rate limited"}, 503: {"description": "No agent ever connected, or SECRET_VAULT_KEY unset"},
}


def _exec_spec(body: CommandIn | BulkIn, origin: str) -> CommandSpec:
    return CommandSpec(
        origin=origin, mode=body.mode, command=body.program, args=body.arguments, env=dict(body.env or {}),
        working_dir=body.working_dir, stdin=body.stdin, timeout_ms=body.timeout_ms or DEFAULT_TIMEOUT_MS,
        queue_ttl_sec=body.queue_ttl_sec, wait=body.wait,
    )


@router.post("/commands", status_code=201, response_model=CommandOut,
             responses={202: {"model": CommandOut, "description": "Accepted, not finished yet"}, **ERRORS},
             summary="Run a command on an instance's agent", openapi_extra=json_body_doc(CommandIn))
async def create_command(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    body = parse_model(CommandIn, await read_json(request))
    status, doc = await service.create_single(rt, principal, body.instance_id, _exec_spec(body, "API"))
    headers = {"Location": f"/api/v1/commands/{doc['id']}"} if status == 202 else None
    return JSONResponse(doc, status_code=status, headers=headers)


@router.post("/commands/bulk", status_code=207, response_model=BulkOut, responses=ERRORS,
             summary="Run one command on up to 100 instances", openapi_extra=json_body_doc(BulkIn))
async def create_bulk(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    body = parse_model(BulkIn, await read_json(request))
    doc = await service.create_batch(rt, principal, body.instance_ids, _exec_spec(body, "BULK"),
                                     needed=Role.OPERATOR)
    return JSONResponse(doc, status_code=207)


@router.post("/commands/script", status_code=207, response_model=BulkOut, responses=ERRORS,
             summary="Run a script with an interpreter on up to 100 instances", openapi_extra=json_body_doc(ScriptIn))
async def create_script(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    body = parse_model(ScriptIn, await read_json(request))
    spec = CommandSpec(
        origin="SCRIPT", mode="SCRIPT", interpreter=body.interpreter, script=body.script, env=dict(body.env or {}),
        working_dir=body.working_dir, timeout_ms=body.timeout_ms or DEFAULT_SCRIPT_TIMEOUT_MS,
        queue_ttl_sec=body.queue_ttl_sec, wait=body.wait,
    )
    doc = await service.create_batch(rt, principal, body.targets, spec, needed=Role.DEVELOPER)
    return JSONResponse(doc, status_code=207)


def _search(q: Any) -> str | None:
    term = query_str(q, "search", 200)
    if term is not None and "\x00" in term:
        raise ApiError(422, "Invalid request: search must not contain NUL characters",
                       [{"field": "search", "message": "must not contain NUL characters"}])
    return term


@router.get("/commands/history", response_model=CommandPage, responses=ERRORS, summary="Command history")
async def command_history(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    q = request.query_params
    params = page_params(q)
    stmt = repo.history_statement(
        principal,
        instance_id=query_str(q, "instanceId", 128), user_id=query_str(q, "userId", 128),
        batch_id=query_str(q, "batchId", 128), task_run_id=query_str(q, "taskRunId", 128),
        remediation_id=query_str(q, "remediationId", 128),
        statuses=query_enum_list(q, "status", ALL_STATUSES), origins=query_enum_list(q, "origin", ORIGINS),
        created_from=query_iso(q, "from"), created_to=query_iso(q, "to"), search=_search(q),
        icontains=rt.db.dialect.icontains,
    )
    async with rt.db.read() as s:
        rows, total, _ = await paginate(s, stmt, params)
    return page_body([command_to_wire(r[0], r[1], history=True) for r in rows], params, total)


@router.get("/commands/{id}", response_model=CommandOut, responses=ERRORS, summary="Command execution detail")
async def get_command(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    check_path_id(id, "command id")
    return await service.get_command(runtime_of(request), principal, id)
