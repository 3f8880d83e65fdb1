from __future__ import annotations

from sindri_console.bus.base import Bus
from sindri_console.bus.memory import MemoryBus


def create_bus(redis_url: str | None) -> Bus:
    if redis_url:
        from sindri_console.bus.redis import RedisBus

        return RedisBus(redis_url)
    return MemoryBus()
