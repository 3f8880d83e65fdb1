"""Instance events route (10-core §9.9)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sindri_console.domains.events.repository import events_statement
from sindri_console.domains.events.schemas import EventPage
from sindri_console.domains.instances.state import EVENT_TYPES, event_to_wire
from sindri_console.kit.auth import CurrentPrincipal
from sindri_console.kit.clock import to_ms
from sindri_console.kit.errors import ApiError
from sindri_console.kit.pagination import page_body, page_params, paginate
from sindri_console.kit.schema import query_enum_list, query_iso
from sindri_console.kit.scope import check_path_id, get_visible_instance
from sindri_console.runtime import runtime_of

router = APIRouter(prefix="/api/v1", tags=["events"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed instance id"}, 401: {"description": "Unauthenticated"},
    403: {"description": "Forbidden"}, 404: {"description": "Instance not found or out of scope"},
    422: {"description": "Validation error"}, 429: {"description": "Rate limited"},
}
_PARAMS = [
    {"name": "type", "in": "query", "required": False, "description": "comma list of event types",
     "schema": {"type": "string"}},
    {"name": "from", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}},
    {"name": "to", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}},
    {"name": "page", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "default": 1}},
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
]


@router.get("/instances/{id}/events", response_model=EventPage, responses=ERRORS,
            summary="Events of one instance, newest first", openapi_extra={"parameters": _PARAMS})
async def list_instance_events(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    check_path_id(id, "instance id")
    rt = runtime_of(request)
    q = request.query_params
    params = page_params(q)
    types = query_enum_list(q, "type", EVENT_TYPES)
    start, end = query_iso(q, "from"), query_iso(q, "to")
    if start is not None and end is not None and start > end:
        raise ApiError(422, "Invalid request: from must not be after to",
                       [{"field": "from", "message": "must not be after to"}])
    async with rt.db.read() as s:
        inst = await get_visible_instance(s, principal, id)
        stmt = events_statement(inst.id, types=types, from_ms=to_ms(start) if start else None,
                                to_ms=to_ms(end) if end else None)
        rows, total, _ = await paginate(s, stmt, params)
    return page_body([event_to_wire(r[0]) for r in rows], params, total)
