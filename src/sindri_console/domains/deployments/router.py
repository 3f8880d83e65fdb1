"""Deployment routes (20-ops §7.9) and the fleet deployments timeline (10-core §7.3)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sindri_console.domains.deployments import service
from sindri_console.domains.deployments.schemas import DeploymentOut, DeploymentRequestDoc, TimelineOut
from sindri_console.kit.auth import CurrentPrincipal
from sindri_console.kit.errors import ApiError
from sindri_console.kit.schema import json_body_doc, read_json
from sindri_console.kit.scope import check_path_id
from sindri_console.runtime import runtime_of

router = APIRouter(prefix="/api/v1", tags=["deployments"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed JSON or path id"}, 401: {"description": "Unauthenticated"},
    403: {"description": "Forbidden"}, 404: {"description": "Not found"}, 409: {"description": "Conflict"},
    413: {"description": "Body too large"}, 422: {"description": "Validation error"},
    429: {"description": "Rate limited"}, 503: {"description": "Sindri CLI or vault key missing"},
}


@router.post("/deployments", status_code=202, response_model=DeploymentOut, responses=ERRORS,
             summary="Deploy a sindri.yaml or a template", openapi_extra=json_body_doc(DeploymentRequestDoc))
async def create_deployment(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    req = service.parse_request(await read_json(request))
    created = await service.create_deployment(rt, principal, req)
    return JSONResponse(created, status_code=202, headers={"Location": f"/api/v1/deployments/{created['id']}"})


LOG_OFFSET_DOC = {"parameters": [{
    "name": "logOffset", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0},
    "description": "byte offset into the captured output; poll with the previous logsBytes",
}]}


@router.get("/deployments/{id}", response_model=DeploymentOut, responses=ERRORS, summary="A deployment",
            openapi_extra=LOG_OFFSET_DOC)
async def get_deployment(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    check_path_id(id, "deployment id")
    raw = request.query_params.get("logOffset")
    offset = 0
    if raw not in (None, ""):
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            raise ApiError(422, "Invalid request: logOffset must be an integer ≥ 0",
                           [{"field": "logOffset", "message": "must be an integer ≥ 0"}])
        offset = int(raw)
    return await service.get_deployment(rt, principal, id, offset)


@router.get("/fleet/deployments", response_model=TimelineOut, responses=ERRORS,
            summary="Deployments of the last 24 hours in UTC hourly buckets")
async def fleet_deployments(request: Request, principal: CurrentPrincipal) -> Any:
    return await service.fleet_timeline(runtime_of(request), principal)
