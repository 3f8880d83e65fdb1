"""In-process bus: one replica, no other server."""

from __future__ import annotations

from typing import Any

from sindri_console.bus.base import Bus


class MemoryBus(Bus):
    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self._deliver_local(topic, payload)
