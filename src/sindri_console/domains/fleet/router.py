"""Fleet overview routes (10-core §7.1, §7.2). `/fleet/deployments` belongs to the deployments domain."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sindri_console.domains.fleet import service
from sindri_console.domains.fleet.schemas import FleetGeoOut, FleetStatsOut
from sindri_console.kit.auth import CurrentPrincipal
from sindri_console.runtime import runtime_of

router = APIRouter(prefix="/api/v1", tags=["fleet"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Unauthenticated"}, 403: {"description": "Forbidden"},
    429: {"description": "Rate limited"},
}


@router.get("/fleet/stats", response_model=FleetStatsOut, responses=ERRORS,
            summary="Counts over the live instances in scope")
async def get_fleet_stats(request: Request, principal: CurrentPrincipal) -> Any:
    return await service.fleet_stats(runtime_of(request), principal)


@router.get("/fleet/geo", response_model=FleetGeoOut, responses=ERRORS,
            summary="Live instances in scope grouped into map pins")
async def get_fleet_geo(request: Request, principal: CurrentPrincipal) -> Any:
    return await service.fleet_geo(runtime_of(request), principal)
