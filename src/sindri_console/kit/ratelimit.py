"""Fixed-window rate limits per credential and route class (00 §6), in memory or in Redis."""

from __future__ import annotations

from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter

from sindri_console.settings import Settings


@dataclass
class LimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # unix seconds

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(self.reset),
        }


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.RATE_LIMIT_ENABLED
        storage: Storage
        if settings.REDIS_URL:
            storage = RedisStorage(
                "async+" + settings.REDIS_URL, implementation="redispy", key_prefix="sindri:rl"
            )
        else:
            storage = MemoryStorage()
        self.storage = storage
        self._limiter = FixedWindowRateLimiter(storage)
        self._items = {
            "read": RateLimitItemPerMinute(settings.RATE_LIMIT_READ_PER_MINUTE),
            "write": RateLimitItemPerMinute(settings.RATE_LIMIT_WRITE_PER_MINUTE),
            "ingest": RateLimitItemPerMinute(settings.RATE_LIMIT_INGEST_PER_MINUTE),
            "auth_fail": RateLimitItemPerMinute(settings.RATE_LIMIT_AUTH_FAILURES_PER_MINUTE),
        }

    async def hit(self, klass: str, key: str) -> LimitResult | None:
        """Count one request; None when limits are switched off."""
        if not self.enabled:
            return None
        item = self._items[klass]
        allowed = await self._limiter.hit(item, klass, key)
        stats = await self._limiter.get_window_stats(item, klass, key)
        return LimitResult(allowed, item.amount, stats.remaining, int(stats.reset_time))

    async def exceeded(self, klass: str, key: str) -> LimitResult | None:
        """Whether the window is already used up, without counting."""
        if not self.enabled:
            return None
        item = self._items[klass]
        ok = await self._limiter.test(item, klass, key)
        if ok:
            return None
        stats = await self._limiter.get_window_stats(item, klass, key)
        return LimitResult(False, item.amount, stats.remaining, int(stats.reset_time))
