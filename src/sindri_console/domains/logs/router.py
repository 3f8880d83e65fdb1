"""Log routes (10-core §11, §12): ingest, query, stats and the SSE streams."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from sindri_console.domains.logs import repository as repo
from sindri_console.domains.logs import service
from sindri_console.domains.logs.entries import LEVEL_ALIASES, LEVELS, SOURCES, row_to_wire
from sindri_console.domains.logs.repository import LogFilter
from sindri_console.domains.logs.schemas import (
    BatchOut,
    InstanceLogStatsOut,
    LogBatchIn,
    LogEntryIn,
    LogOut,
    LogPage,
    LogStatsOut,
)
from sindri_console.domains.logs.stream import open_stream
from sindri_console.kit.auth import CurrentPrincipal, Principal
from sindri_console.kit.clock import clock, ms_to_iso, to_ms
from sindri_console.kit.errors import ApiError
from sindri_console.kit.ids import is_valid_path_id
from sindri_console.kit.pagination import page_body, page_params
from sindri_console.kit.schema import json_body_doc, query_enum_list, query_iso, query_str
from sindri_console.kit.scope import check_path_id, get_visible_instance
from sindri_console.models.logs import LogEntry
from sindri_console.runtime import runtime_of

router = APIRouter(prefix="/api/v1", tags=["logs"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed JSON or path id"}, 401: {"description": "Unauthenticated"},
    403: {"description": "Forbidden"}, 404: {"description": "Not found"}, 409: {"description": "Instance removed"},
    413: {"description": "Body too large"}, 422: {"description": "Validation error"},
    429: {"description": "Rate limited"},
}
READ_ERRORS = {k: v for k, v in ERRORS.items() if k not in (409, 413)}
MAX_FILTER_IDS = 50
MAX_STREAM_IDS = 100
DAY_MS = 86_400_000


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def _ingest_body(request: Request) -> Any:
    """The JSON body; invalid UTF-8 bytes become U+FFFD instead of failing the whole batch."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        try:
            return json.loads(raw, parse_constant=_reject_constant)
        except UnicodeDecodeError:
            return json.loads(raw.decode("utf-8", "replace"), parse_constant=_reject_constant)
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON") from None


def _id_list(query: Any, names: tuple[str, ...], cap: int) -> tuple[str, ...] | None:
    raw = next((query.get(n) for n in names if query.get(n)), None)
    if raw is None:
        return None
    ids = tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
    if not ids:
        return None
    if len(ids) > cap or not all(is_valid_path_id(i) for i in ids):
        msg = f"must be a comma list of at most {cap} instance ids"
        raise ApiError(422, f"Invalid request: {names[0]} {msg}", [{"field": names[0], "message": msg}])
    return ids


def parse_filter(query: Any, *, instance_ids: tuple[str, ...] | None, with_range: bool = True) -> LogFilter:
    levels = query_enum_list(query, "level", LEVELS, LEVEL_ALIASES)
    sources = query_enum_list(query, "source", SOURCES)
    search = query_str(query, "search", 512)
    deployment_id = query_str(query, "deploymentId", 128) or query_str(query, "deployment_id", 128)
    from_ms = to_ms_ = None
    if with_range:
        start, end = query_iso(query, "from"), query_iso(query, "to")
        if start is not None and end is not None and start > end:
            raise ApiError(422, "Invalid request: from must not be after to",
                           [{"field": "from", "message": "must not be after to"}])
        from_ms = to_ms(start) if start else None
        to_ms_ = to_ms(end) if end else None
    return LogFilter(instance_ids=instance_ids, levels=tuple(levels) if levels else None,
                     sources=tuple(sources) if sources else None, search=search, deployment_id=deployment_id,
                     from_ms=from_ms, to_ms=to_ms_)


# --- ingest -----------------------------------------------------------------------------------

@router.post("/logs/ingest", status_code=201, response_model=LogOut, responses=ERRORS,
             summary="Ingest one log entry", openapi_extra=json_body_doc(LogEntryIn))
async def ingest_one(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    body = await _ingest_body(request)
    if not isinstance(body, dict):
        raise ApiError(422, "Invalid request: the body must be a JSON object",
                       [{"field": "body", "message": "must be a JSON object"}])
    result = await service.ingest_http(rt, principal, [body], single=True)
    return JSONResponse(result.entries[0], status_code=201)


@router.post("/logs/ingest/batch", status_code=201, response_model=BatchOut,
             responses={207: {"model": BatchOut, "description": "Some entries rejected"}, **ERRORS},
             summary="Ingest up to 1000 log entries", openapi_extra=json_body_doc(LogBatchIn))
async def ingest_batch(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    entries = service.batch_entries(await _ingest_body(request))
    result = await service.ingest_http(rt, principal, entries, single=False)
    if result.accepted == 0:
        details = [{"field": f"entries[{e['index']}].{e['field']}", "message": e["message"]} for e in result.errors]
        raise ApiError(422, f"Invalid request: no entry was accepted ({details[0]['field']} {details[0]['message']})",
                       details)
    body = {"accepted": result.accepted, "rejected": result.rejected, "errors": result.errors}
    return JSONResponse(body, status_code=207 if result.errors else 201)


# --- query ------------------------------------------------------------------------------------

async def _list(request: Request, principal: Principal, f: LogFilter) -> dict[str, Any]:
    rt = runtime_of(request)
    params = page_params(request.query_params, default_limit=50, max_limit=1000)
    rows, total, capped = await repo.list_page(rt.db, principal, f, params)
    return page_body([row_to_wire(r) for r in rows], params, total, totalCapped=capped)


@router.get("/logs", response_model=LogPage, responses=READ_ERRORS, summary="Query logs")
async def list_logs(request: Request, principal: CurrentPrincipal) -> Any:
    q = request.query_params
    f = parse_filter(q, instance_ids=_id_list(q, ("instanceId", "instance_id"), MAX_FILTER_IDS))
    return await _list(request, principal, f)


def _window(query: Any) -> tuple[int, int]:
    start, end = query_iso(query, "from"), query_iso(query, "to")
    end_ms = to_ms(end) if end else clock.now_ms()
    start_ms = to_ms(start) if start else end_ms - DAY_MS
    if start_ms > end_ms:
        raise ApiError(422, "Invalid request: from must not be after to",
                       [{"field": "from", "message": "must not be after to"}])
    return start_ms, end_ms


async def _stats(request: Request, principal: Principal, instance_ids: tuple[str, ...] | None,
                 with_top: bool) -> dict[str, Any]:
    rt = runtime_of(request)
    start_ms, end_ms = _window(request.query_params)
    f = LogFilter(instance_ids=instance_ids, from_ms=start_ms, to_ms=end_ms)
    async with rt.db.read() as s:
        by_level = await repo.counts(s, principal, f, LogEntry.level)
        by_source = await repo.counts(s, principal, f, LogEntry.source)
        top = await repo.top_instances(s, principal, f) if with_top else None
    body: dict[str, Any] = {
        "from": ms_to_iso(start_ms), "to": ms_to_iso(end_ms), "total": sum(by_level.values()),
        "byLevel": {lv: by_level.get(lv, 0) for lv in LEVELS},
        "bySource": {src: by_source.get(src, 0) for src in SOURCES},
    }
    if top is not None:
        body["topInstances"] = top
    return body


@router.get("/logs/stats", response_model=LogStatsOut, responses=READ_ERRORS, summary="Log counts")
async def log_stats(request: Request, principal: CurrentPrincipal) -> Any:
    ids = _id_list(request.query_params, ("instanceId", "instance_id"), MAX_FILTER_IDS)
    return await _stats(request, principal, ids, with_top=True)


@router.get("/logs/stream", responses={200: {"content": {"text/event-stream": {}},
                                              "description": "Server-Sent Events"}, **READ_ERRORS},
            summary="Live log stream of the fleet (SSE)")
async def stream_fleet(request: Request, principal: CurrentPrincipal) -> StreamingResponse:
    q = request.query_params
    ids = _id_list(q, ("instanceId", "instanceIds", "instance_id"), MAX_STREAM_IDS)
    f = parse_filter(q, instance_ids=ids, with_range=False)
    if ids is not None:
        rt = runtime_of(request)
        async with rt.db.read() as s:
            for iid in ids:
                await get_visible_instance(s, principal, iid)
    return await open_stream(request, principal, f, single_instance=None)


@router.get("/logs/{id}", response_model=LogOut, responses=READ_ERRORS, summary="One log entry")
async def get_log(request: Request, principal: CurrentPrincipal, id: str) -> Any:
    rt = runtime_of(request)
    check_path_id(id, "log entry id")
    async with rt.db.read() as s:
        entry = await repo.get_entry(s, principal, id)
    if entry is None:
        raise ApiError(404, "Log entry not found")
    return row_to_wire(entry)


@router.get("/instances/{instanceId}/logs", response_model=LogPage, responses=READ_ERRORS,
            summary="Query the logs of one instance")
async def list_instance_logs(request: Request, principal: CurrentPrincipal, instanceId: str) -> Any:  # noqa: N803
    rt = runtime_of(request)
    async with rt.db.read() as s:
        await get_visible_instance(s, principal, instanceId)
    f = parse_filter(request.query_params, instance_ids=(instanceId,))
    return await _list(request, principal, f)


@router.get("/instances/{instanceId}/logs/stats", response_model=InstanceLogStatsOut, responses=READ_ERRORS,
            summary="Log counts of one instance")
async def instance_log_stats(request: Request, principal: CurrentPrincipal, instanceId: str) -> Any:  # noqa: N803
    rt = runtime_of(request)
    async with rt.db.read() as s:
        await get_visible_instance(s, principal, instanceId)
    body = await _stats(request, principal, (instanceId,), with_top=False)
    return {"instanceId": instanceId, **body}


@router.get("/instances/{instanceId}/logs/stream",
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
                       **READ_ERRORS},
            summary="Live log stream of one instance (SSE)")
async def stream_instance(request: Request, principal: CurrentPrincipal, instanceId: str) -> StreamingResponse:  # noqa: N803
    rt = runtime_of(request)
    async with rt.db.read() as s:
        await get_visible_instance(s, principal, instanceId)
    f = parse_filter(request.query_params, instance_ids=(instanceId,), with_range=False)
    return await open_stream(request, principal, f, single_instance=instanceId)
