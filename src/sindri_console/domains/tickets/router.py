"""`POST /api/v1/ws/ticket` (10-core §13)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from sindri_console.kit.auth import CurrentPrincipal
from sindri_console.kit.tickets import TICKET_TTL_SECONDS
from sindri_console.runtime import runtime_of

router = APIRouter(prefix="/api/v1", tags=["tickets"])


class TicketOut(BaseModel):  # the seed's spelling: expires_in
    ticket: str
    expires_in: int


@router.post("/ws/ticket", response_model=TicketOut, summary="Issue a single-use 30 s WebSocket/SSE ticket",
             responses={401: {"description": "Unauthenticated"}, 403: {"description": "Agent credential"}})
async def issue_ticket(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    assert principal.api_key_id is not None and principal.user_id is not None
    raw = await rt.services["tickets"].issue(principal.api_key_id, principal.user_id)
    return {"ticket": raw, "expires_in": TICKET_TTL_SECONDS}
