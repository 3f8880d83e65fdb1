"""Wire shape of instance events (10-core §9.9)."""

from __future__ import annotations

from typing import Any

from sindri_console.kit.schema import OutModel


class EventOut(OutModel):
    id: str
    instance_id: str
    type: str
    timestamp: str
    message: str
    metadata: dict[str, Any]
    actor_kind: str
    user_id: str | None
    job_id: str | None


class EventPage(OutModel):
    data: list[EventOut]
    pagination: dict[str, Any]
