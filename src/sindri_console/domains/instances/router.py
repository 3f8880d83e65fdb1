"""Instance registry routes (10-core §5)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from sindri_console.domains.instances import repository as repo
from sindri_console.domains.instances import service
from sindri_console.domains.instances.geo import PROVIDERS, normalise_provider
from sindri_console.domains.instances.schemas import (
    InstanceDetailOut,
    InstanceOut,
    InstancePage,
    RegistrationDoc,
    RegistrationOut,
    parse_registration,
)
from sindri_console.domains.instances.state import ALL_STATUSES
from sindri_console.domains.instances.wire import heartbeat_to_wire, instance_to_wire
from sindri_console.kit.auth import CurrentPrincipal
from sindri_console.kit.cli_runner import version_status
from sindri_console.kit.errors import ApiError
from sindri_console.kit.pagination import page_body, page_params, paginate
from sindri_console.kit.rbac import Role
from sindri_console.kit.schema import json_body_doc, query_bool, query_enum_list, query_str, read_json
from sindri_console.kit.scope import get_visible_instance, require_role_on_instance
from sindri_console.models.identity import Team
from sindri_console.models.instance import Instance
from sindri_console.runtime import runtime_of

router = APIRouter(prefix="/api/v1", tags=["instances"])

SORTS = ("-createdAt", "createdAt", "name", "-name", "status", "-lastSeenAt", "lastSeenAt")
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed JSON or path id"}, 401: {"description": "Unauthenticated"},
    403: {"description": "Forbidden"}, 404: {"description": "Not found"}, 409: {"description": "Conflict"},
    413: {"description": "Body too large"}, 422: {"description": "Validation error"},
    429: {"description": "Rate limited"},
}


@router.post("/instances", status_code=201, response_model=RegistrationOut,
             responses={200: {"model": RegistrationOut, "description": "Re-registered"}, **ERRORS},
             summary="Register or re-register an instance", openapi_extra=json_body_doc(RegistrationDoc))
async def register_instance(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    data = await read_json(request)
    reg = parse_registration(data if data is not None else {})
    result = await service.register(rt, principal, reg, request.headers.get("x-agent-version"))
    return JSONResponse(result.body, status_code=201 if result.created else 200)


@router.get("/instances", response_model=InstancePage, responses=ERRORS, summary="List instances")
async def list_instances(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    q = request.query_params
    params = page_params(q)
    statuses = query_enum_list(q, "status", ALL_STATUSES)
    providers = None
    if q.get("provider"):
        providers = []
        for part in q["provider"].split(","):
            if not part.strip():
                continue
            p = normalise_provider(part)
            if p is None:
                msg = "must be a comma list of " + ", ".join(PROVIDERS)
                raise ApiError(422, f"Invalid request: provider {msg}", [{"field": "provider", "message": msg}])
            providers.append(p)
    regions = [r.strip() for r in q["region"].split(",") if r.strip()] if q.get("region") else None
    search = query_str(q, "search", 128)
    sort = q.get("sort") or "-createdAt"
    if sort not in SORTS:
        msg = "must be one of " + ", ".join(SORTS)
        raise ApiError(422, f"Invalid request: sort {msg}", [{"field": "sort", "message": msg}])
    version_filter = query_enum_list(q, "versionStatus", ("CURRENT", "OUTDATED", "UNKNOWN"))
    agent_connected = query_bool(q, "agentConnected") if q.get("agentConnected") not in (None, "") else None
    stmt = repo.list_statement(
        principal, statuses=statuses, include_removed=query_bool(q, "includeRemoved"), providers=providers,
        regions=regions, team_id=query_str(q, "teamId", 128), search=search, agent_connected=agent_connected,
        sort=sort, icontains=rt.db.dialect.icontains,
    )
    min_version = service.min_instance_version(rt)
    async with rt.db.read() as s:
        if version_filter:
            # semver precedence is not expressible in SQL: select ids by computed status, then page
            ids = [row.id for row in (await s.execute(stmt.with_only_columns(Instance.id, Instance.sindri_version)))
                   if version_status(row.sindri_version, min_version) in version_filter]
            stmt = stmt.where(Instance.id.in_(ids)) if ids else stmt.where(Instance.id.is_(None))
        rows, total, _ = await paginate(s, stmt, params)
        items = [r[0] for r in rows]
        states = await repo.agent_states(s, [i.id for i in items])
    data = [instance_to_wire(i, states.get(i.id), min_version) for i in items]
    return page_body(data, params, total)


@router.get("/instances/{id}", response_model=InstanceDetailOut, responses=ERRORS, summary="Instance detail")
async def get_instance(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    async with rt.db.read() as s:
        inst = await get_visible_instance(s, principal, id)
        states = await repo.agent_states(s, [inst.id])
        hb = await repo.latest_heartbeat(s, inst.id)
        team = None
        if inst.team_id:
            name = await s.scalar(select(Team.name).where(Team.id == inst.team_id))
            team = {"id": inst.team_id, "name": name}
    body = instance_to_wire(inst, states.get(inst.id), service.min_instance_version(rt))
    body["team"] = team
    body["lastHeartbeat"] = heartbeat_to_wire(hb)
    return body


@router.delete("/instances/{id}", response_model=InstanceOut,
               responses={202: {"description": "Destroy accepted"}, **ERRORS},
               summary="Deregister (default) or destroy an instance")
async def delete_instance(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    q = request.query_params
    body: dict[str, Any] = {}
    raw = await request.body()
    if raw.strip():
        parsed = await read_json(request)
        if not isinstance(parsed, dict):
            raise ApiError(422, "Invalid request: the body must be a JSON object",
                           [{"field": "body", "message": "must be a JSON object"}])
        body = parsed

    def opt(name: str, *aliases: str) -> Any:
        for n in (name, *aliases):
            if q.get(n) not in (None, ""):
                return q.get(n)
        for n in (name, *aliases):
            if n in body:
                v = body[n]
                return v if not isinstance(v, bool) else ("true" if v else "false")
        return None

    options = {k: v for k, v in (
        ("destroy", opt("destroy")), ("backup", opt("backup", "backupVolume")),
        ("backupLabel", opt("backupLabel")), ("backupProfile", opt("backupProfile")), ("wait", opt("wait")),
    ) if v is not None}
    destroy = query_bool(options, "destroy")
    if not destroy:
        for name in ("backup", "backupLabel", "backupProfile", "wait"):
            if name in options and not (name == "backup" and not query_bool(options, "backup")):
                msg = "is only allowed with destroy=true"
                raise ApiError(422, f"Invalid request: {name} {msg}", [{"field": name, "message": msg}])
        async with rt.db.read() as s:
            inst = await get_visible_instance(s, principal, id)
            await require_role_on_instance(s, principal, inst, Role.OPERATOR)
        return await service.deregister(rt, principal, inst)
    from sindri_console.domains.lifecycle.service import destroy_instance

    return await destroy_instance(rt, principal, id, options)
