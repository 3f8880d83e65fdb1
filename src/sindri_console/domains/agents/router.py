"""The agent socket `/ws/agent` (40 §3) and the process and extension views of an instance (10-core §9.7, §9.8)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, WebSocket

from sindri_console.domains.agents import repository as repo
from sindri_console.domains.agents.schemas import ExtensionsOut, ProcessesOut
from sindri_console.domains.agents.socket import SUBPROTOCOL, AgentSocket
from sindri_console.kit.auth import CurrentPrincipal
from sindri_console.kit.clock import to_iso, utcnow
from sindri_console.kit.context import current_context
from sindri_console.kit.errors import ApiError
from sindri_console.kit.schema import query_bool, query_enum_list
from sindri_console.kit.scope import get_visible_instance
from sindri_console.models.agent import AgentState
from sindri_console.runtime import Runtime, runtime_of

router = APIRouter(tags=["agents"])

REFRESH_WAIT_SECONDS = 5.0
STALLED_AFTER = timedelta(minutes=15)
# `refresh=true` (ask the connected agent, wait ≤ 5 s; 503 when it is offline, 409 when it cannot report) is
# described in the route text rather than as a parameter: its 503 is the contract's answer, not a fault
REFRESH_TEXT = ("With refresh=true the connected agent is asked for a fresh report (up to 5 s); 503 when the "
                "agent is offline, 409 when it cannot report this.")
PROCESSES_DOC = {"parameters": [
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
    {"name": "sort", "in": "query", "required": False,
     "schema": {"type": "string", "enum": ["cpu", "memory"], "default": "cpu"}},
]}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed path id"}, 401: {"description": "Unauthenticated"},
    403: {"description": "Forbidden"}, 404: {"description": "Not found"},
    409: {"description": "The agent cannot report this"}, 422: {"description": "Invalid query"},
    503: {"description": "Agent offline"},
}


@router.websocket("/ws/agent")
async def agent_socket(ws: WebSocket) -> None:
    rt = runtime_of(ws)
    hub = rt.services["agents"]
    offered = ws.headers.get("sec-websocket-protocol", "")
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in [p.strip() for p in offered.split(",")] else None
    await ws.accept(subprotocol=subprotocol)
    conn = AgentSocket(rt, hub, ws, current_context().ip_address)
    hub.track(conn)
    try:
        await conn.run()
    finally:
        hub.untrack(conn)


async def _refresh(rt: Runtime, instance_id: str, kind: str, missing_message: str) -> bool:
    """report:request to the instance's agent and wait ≤ 5 s (10-core §9.7 `refresh=true`)."""
    async with rt.db.read() as s:
        state = await s.get(AgentState, instance_id)
    if state is None or not state.connected:
        raise ApiError(503, "Agent is offline for this instance")
    if state.dialect != "console" or kind not in (state.capabilities or []):
        raise ApiError(409, missing_message)
    arrived = await rt.services["agents"].request_report(instance_id, kind, REFRESH_WAIT_SECONDS)
    return bool(arrived)


@router.get("/api/v1/instances/{id}/processes", response_model=ProcessesOut, responses=ERRORS,
            summary="Latest process report of an instance", description=REFRESH_TEXT,
            openapi_extra=PROCESSES_DOC)
async def instance_processes(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    q = request.query_params
    limit_raw = q.get("limit") or q.get("pageSize")
    limit = 20
    if limit_raw is not None:
        try:
            limit = int(limit_raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise ApiError(422, "Invalid request: limit must be an integer from 1 to 100",
                           [{"field": "limit", "message": "must be an integer from 1 to 100"}])
    sort = (query_enum_list(q, "sort", ("CPU", "MEMORY")) or ["CPU"])[0]
    refresh = query_bool(q, "refresh")
    async with rt.db.read() as s:
        inst = await get_visible_instance(s, principal, id)
    refreshed = False
    if refresh:
        refreshed = await _refresh(rt, inst.id, "processes", "The agent of this instance does not report processes")
    async with rt.db.read() as s:
        report = await repo.get_report(s, inst.id, "processes")
    if report is None:
        return {"instanceId": inst.id, "timestamp": None, "receivedAt": None, "dataAvailable": False,
                "refreshed": refreshed, "totalCount": None, "data": []}
    payload = report.payload or {}
    items = list(payload.get("processes") or [])
    key = "memoryRssBytes" if sort == "MEMORY" else "cpuPercent"
    other = "cpuPercent" if sort == "MEMORY" else "memoryRssBytes"
    items.sort(key=lambda p: (-(p.get(key) or 0), -(p.get(other) or 0), p.get("pid") or 0))
    fields = ("pid", "ppid", "name", "username", "status", "cpuPercent", "memoryPercent", "memoryRssBytes",
              "createTime", "command")
    return {
        "instanceId": inst.id, "timestamp": to_iso(report.taken_at), "receivedAt": to_iso(report.received_at),
        "dataAvailable": True, "refreshed": refreshed, "totalCount": payload.get("totalCount"),
        "data": [{f: p.get(f) for f in fields} for p in items[:limit]],
    }


def _extension_status(reported: str, since: Any, now: Any) -> str:
    if reported == "installing":
        return "STALLED" if since is not None and now - since > STALLED_AFTER else "INSTALLING"
    return {"installed": "INSTALLED", "failed": "FAILED", "removed": "REMOVED",
            "disabled": "DISABLED"}.get(reported, "UNKNOWN")


@router.get("/api/v1/instances/{id}/extensions", response_model=ExtensionsOut, responses=ERRORS,
            summary="Extension status of an instance, as its agent reports it", description=REFRESH_TEXT)
async def instance_extensions(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    refresh = query_bool(request.query_params, "refresh")
    async with rt.db.read() as s:
        inst = await get_visible_instance(s, principal, id)
    refreshed = False
    if refresh:
        refreshed = await _refresh(rt, inst.id, "extensions",
                                   "The agent of this instance does not report extensions")
    async with rt.db.read() as s:
        report = await repo.get_report(s, inst.id, "extensions")
        rows = await repo.extension_rows(s, inst.id)
    now = utcnow()
    declared = list(inst.extensions or [])
    usable = report is not None and report.available
    items: dict[str, dict[str, Any]] = {}
    if usable:
        for r in rows:
            items[r.name] = {"name": r.name, "version": r.version,
                             "status": _extension_status(r.status, r.status_since, now),
                             "declared": r.name in declared, "statusSince": to_iso(r.status_since),
                             "error": r.error}
    for name in declared:
        if name not in items:
            items[name] = {"name": name, "version": None, "status": "NOT_INSTALLED" if usable else "UNKNOWN",
                           "declared": True, "statusSince": None, "error": None}
    return {
        "instanceId": inst.id, "instanceStatus": inst.status,
        "reportedAt": to_iso(report.received_at) if report else None, "dataAvailable": usable,
        "refreshed": refreshed, "reason": report.reason if report else None,
        "cliVersion": (report.payload or {}).get("cliVersion") if report else None,
        "data": [items[k] for k in sorted(items)],
    }

