from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sindri_console.domains.version.service import version_info
from sindri_console.kit.auth import CurrentPrincipal
from sindri_console.kit.schema import OutModel
from sindri_console.runtime import runtime_of

router = APIRouter(prefix="/api/v1", tags=["version"])


class VersionOut(OutModel):
    api_version: str
    console_api: str
    cli_available: bool
    sindri_cli: str | None
    cli_target: str | None
    cli_commit: str | None
    cli_build_date: str | None
    cli_resolved_at: str | None
    min_instance_version: str | None
    min_instance_version_source: str | None


@router.get("/version", response_model=VersionOut, summary="API, Sindri CLI and minimum instance versions",
            responses={401: {"description": "Unauthenticated"}, 403: {"description": "Agent credential"}})
async def get_version(request: Request, principal: CurrentPrincipal) -> Any:
    return await version_info(runtime_of(request))
