"""Single-use WebSocket/SSE tickets (10-core §13): only the SHA-256 is stored, 30 s, atomic consume."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

TICKET_TTL_SECONDS = 30
REDIS_PREFIX = "sindri:ws:ticket:"


@dataclass(frozen=True)
class Ticket:
    api_key_id: str
    user_id: str
    issued_at: float


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class TicketStore:
    """In-process map (one replica) or Redis SET EX / GETDEL (shared by every replica)."""

    def __init__(self, redis_url: str | None) -> None:
        self._mem: dict[str, tuple[float, Ticket]] = {}
        self._redis: Any = None
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(redis_url, decode_responses=True)

    async def issue(self, api_key_id: str, user_id: str) -> str:
        raw = secrets.token_hex(32)
        ticket = Ticket(api_key_id, user_id, time.time())
        if self._redis is not None:
            value = json.dumps({"apiKeyId": api_key_id, "userId": user_id, "issuedAt": ticket.issued_at})
            await self._redis.set(REDIS_PREFIX + _digest(raw), value, ex=TICKET_TTL_SECONDS)
        else:
            self._sweep()
            self._mem[_digest(raw)] = (time.monotonic() + TICKET_TTL_SECONDS, ticket)
        return raw

    async def consume(self, raw: str | None) -> Ticket | None:
        """The ticket's record once; None for unknown, used or expired tickets."""
        if not raw or len(raw) > 128:
            return None
        key = _digest(raw)
        if self._redis is not None:
            value = await self._redis.getdel(REDIS_PREFIX + key)
            if value is None:
                return None
            doc = json.loads(value)
            return Ticket(doc["apiKeyId"], doc["userId"], float(doc["issuedAt"]))
        entry = self._mem.pop(key, None)  # dict.pop is atomic within the event loop
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def _sweep(self) -> None:
        now = time.monotonic()
        if len(self._mem) > 1000:
            for k in [k for k, (exp, _) in self._mem.items() if exp < now]:
                self._mem.pop(k, None)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
