"""`GET /api/v1/audit` (10-core §14): read-only, ADMIN, newest first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select

from sindri_console.kit.audit import ACTIONS
from sindri_console.kit.auth import CurrentPrincipal
from sindri_console.kit.clock import ms_to_iso, to_ms
from sindri_console.kit.errors import ApiError
from sindri_console.kit.pagination import page_body, page_params, paginate
from sindri_console.kit.schema import OutModel, query_enum_list, query_iso, query_str
from sindri_console.models.audit import AuditLog
from sindri_console.runtime import runtime_of

router = APIRouter(prefix="/api/v1", tags=["audit"])


class AuditPage(OutModel):
    data: list[dict[str, Any]]
    pagination: dict[str, Any]


def audit_to_wire(e: AuditLog) -> dict[str, Any]:
    return {
        "id": e.id, "timestamp": ms_to_iso(e.ts_ms), "action": e.action, "resource": e.resource,
        "resourceId": e.resource_id, "userId": e.user_id, "userEmail": e.user_email, "apiKeyId": e.api_key_id,
        "actorKind": e.actor_kind, "teamId": e.team_id, "ipAddress": e.ip_address, "userAgent": e.user_agent,
        "requestId": e.request_id, "metadata": e.metadata_ or {},
    }


@router.get("/audit", response_model=AuditPage, summary="List audit entries",
            responses={401: {"description": "Unauthenticated"}, 403: {"description": "Not an ADMIN"},
                       422: {"description": "Validation error"}})
async def list_audit(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    q = request.query_params
    params = page_params(q, max_limit=200)
    stmt = select(AuditLog)
    for snake, camel, col in (("user_id", "userId", AuditLog.user_id), ("team_id", "teamId", AuditLog.team_id),
                              ("resource_id", "resourceId", AuditLog.resource_id)):
        value = query_str(q, snake, 128) or query_str(q, camel, 128)
        if value:
            stmt = stmt.where(col == value)
    actions = query_enum_list(q, "action", ACTIONS)
    if actions:
        stmt = stmt.where(AuditLog.action.in_(actions))
    resource = query_str(q, "resource", 64)
    if resource:
        stmt = stmt.where(AuditLog.resource == resource)
    frm, to = query_iso(q, "from"), query_iso(q, "to")
    if frm and to and frm > to:
        raise ApiError(422, "Invalid request: from must not be after to",
                       [{"field": "from", "message": "must not be after to"}])
    if frm:
        stmt = stmt.where(AuditLog.ts_ms >= to_ms(frm))
    if to:
        stmt = stmt.where(AuditLog.ts_ms <= to_ms(to))
    stmt = stmt.order_by(AuditLog.ts_ms.desc(), AuditLog.id.desc())
    async with rt.db.read() as s:
        rows, total, _ = await paginate(s, stmt, params)
    return page_body([audit_to_wire(r[0]) for r in rows], params, total)
