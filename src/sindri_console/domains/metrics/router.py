"""Metrics routes (10-core §9.2-§9.6)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request

from sindri_console.domains.metrics import service
from sindri_console.domains.metrics.schemas import (
    AggregateResponseOut,
    LatestListOut,
    RangeOut,
    TimeseriesOut,
)
from sindri_console.kit.auth import CurrentPrincipal
from sindri_console.kit.clock import to_ms
from sindri_console.kit.errors import ApiError
from sindri_console.kit.schema import query_iso
from sindri_console.kit.scope import check_path_id
from sindri_console.runtime import runtime_of

router = APIRouter(prefix="/api/v1", tags=["metrics"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed instance id"}, 401: {"description": "Unauthenticated"},
    403: {"description": "Forbidden"}, 404: {"description": "Instance not found or out of scope"},
    422: {"description": "Validation error"}, 429: {"description": "Rate limited"},
}


def _param(name: str, where: str = "query", required: bool = False, schema: dict[str, Any] | None = None,
           description: str = "") -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema or {"type": "string"},
            "description": description}


_RANGE = _param("range", schema={"type": "string", "enum": list(service.RANGES), "default": "1h"})
_INSTANCE = _param("instanceId", description="one instance (404 when unknown or out of scope)")
_FROM = _param("from", required=True, schema={"type": "string", "format": "date-time"})
_TO = _param("to", required=True, schema={"type": "string", "format": "date-time"})


def _doc(*params: dict[str, Any]) -> dict[str, Any]:
    return {"parameters": list(params)}


def _required_iso(query: Any, name: str) -> datetime:
    value = query_iso(query, name)
    if value is None:
        raise ApiError(422, f"Invalid request: {name} is required", [{"field": name, "message": "is required"}])
    return value


def _window(query: Any) -> tuple[int, int]:
    start, end = _required_iso(query, "from"), _required_iso(query, "to")
    if start >= end:
        raise ApiError(422, "Invalid request: from must be before to", [{"field": "from", "message": "must be before to"}])
    return to_ms(start), to_ms(end)


def _instance_param(query: Any) -> str | None:
    raw = query.get("instanceId") or query.get("instance_id")
    return raw if raw else None


@router.get("/metrics/timeseries", response_model=TimeseriesOut, response_model_exclude_unset=True,
            responses=ERRORS, summary="Fleet or instance metrics over a fixed range",
            openapi_extra=_doc(_RANGE, _INSTANCE))
async def get_timeseries(request: Request, principal: CurrentPrincipal) -> Any:
    q = request.query_params
    return await service.timeseries(runtime_of(request), principal, q.get("range"), _instance_param(q))


@router.get("/instances/{id}/metrics", response_model=TimeseriesOut, response_model_exclude_unset=True,
            responses=ERRORS, summary="Metrics of one instance over a fixed range", openapi_extra=_doc(_RANGE))
async def get_instance_metrics(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    check_path_id(id, "instance id")
    return await service.timeseries(runtime_of(request), principal, request.query_params.get("range"), id)


@router.get("/metrics/timeseries/range", response_model=RangeOut, response_model_exclude_unset=True,
            responses=ERRORS, summary="Metrics between two times at a chosen granularity",
            openapi_extra=_doc(_FROM, _TO, _INSTANCE,
                               _param("granularity", schema={"type": "string",
                                                             "enum": list(service.GRANULARITY_CHOICES),
                                                             "default": "1m"}),
                               _param("limit", schema={"type": "integer", "minimum": 1,
                                                       "maximum": service.RAW_LIMIT_MAX,
                                                       "default": service.RAW_LIMIT_DEFAULT})))
async def get_timeseries_range(request: Request, principal: CurrentPrincipal) -> Any:
    q = request.query_params
    from_ms, to_ms_ = _window(q)
    granularity = (q.get("granularity") or "1m").strip().lower()
    if granularity not in service.GRANULARITY_CHOICES:
        msg = "must be one of " + ", ".join(service.GRANULARITY_CHOICES)
        raise ApiError(422, f"Invalid request: granularity {msg}", [{"field": "granularity", "message": msg}])
    limit = service.RAW_LIMIT_DEFAULT
    raw_limit = q.get("limit")
    if raw_limit not in (None, ""):
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = -1
        if not 1 <= limit <= service.RAW_LIMIT_MAX:
            msg = f"must be an integer between 1 and {service.RAW_LIMIT_MAX}"
            raise ApiError(422, f"Invalid request: limit {msg}", [{"field": "limit", "message": msg}])
    query = service.RangeQuery(from_ms, to_ms_, granularity, _instance_param(q), limit)
    return await service.timeseries_range(runtime_of(request), principal, query)


@router.get("/metrics/aggregate", response_model=AggregateResponseOut, responses=ERRORS,
            summary="Per-instance and fleet aggregates between two times", openapi_extra=_doc(_FROM, _TO, _INSTANCE))
async def get_aggregate(request: Request, principal: CurrentPrincipal) -> Any:
    q = request.query_params
    from_ms, to_ms_ = _window(q)
    return await service.aggregate(runtime_of(request), principal, from_ms, to_ms_, _instance_param(q))


@router.get("/metrics/latest", response_model=LatestListOut, responses=ERRORS,
            summary="The newest sample of each instance",
            openapi_extra=_doc(_param("instanceIds", description="comma list of at most 100 instance ids")))
async def get_latest(request: Request, principal: CurrentPrincipal) -> Any:
    raw = request.query_params.get("instanceIds") or request.query_params.get("instance_ids")
    ids: list[str] | None = None
    if raw:
        ids = list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
        if len(ids) > service.LATEST_MAX_IDS:
            msg = f"must list at most {service.LATEST_MAX_IDS} ids"
            raise ApiError(422, f"Invalid request: instanceIds {msg}", [{"field": "instanceIds", "message": msg}])
    return await service.latest(runtime_of(request), principal, ids)
