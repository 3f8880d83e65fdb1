"""What one server process holds: settings, database, bus, limiter, authenticator, loops."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, WebSocket

from sindri_console.bus import Bus
from sindri_console.db.engine import Database
from sindri_console.kit.auth import Authenticator
from sindri_console.kit.ids import new_id
from sindri_console.kit.ratelimit import RateLimiter
from sindri_console.loops.base import LoopRunner
from sindri_console.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    db: Database
    bus: Bus
    limiter: RateLimiter
    auth: Authenticator
    loops: LoopRunner
    replica_id: str
    started_monotonic: float = field(default_factory=time.monotonic)
    # domain services register themselves here at start-up (e.g. "agents", "cli", "tickets")
    services: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        from sindri_console.bus import create_bus

        db = Database(settings.database_url)
        db.bus = create_bus(settings.REDIS_URL)
        replica_id = new_id()
        return cls(
            settings=settings,
            db=db,
            bus=db.bus,
            limiter=RateLimiter(settings),
            auth=Authenticator(db, settings.SINDRI_CONSOLE_API_KEY),
            loops=LoopRunner(db, replica_id),
            replica_id=replica_id,
        )


def runtime_of(request: Request | WebSocket) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]
