"""Bus interface and the local fan-out shared by both implementations."""

from __future__ import annotations

import asyncio
import fnmatch
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


def topic_matches(pattern: str, topic: str) -> bool:
    if "*" not in pattern and "?" not in pattern and "[" not in pattern:
        return pattern == topic
    return _compile(pattern).match(topic) is not None


class Subscription:
    """A bounded queue of (topic, payload) for one consumer. Overflow drops and flags, never blocks."""

    def __init__(self, bus: Bus, patterns: tuple[str, ...], maxsize: int) -> None:
        self.bus = bus
        self.patterns = patterns
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False
        self.dropped = 0

    def offer(self, topic: str, payload: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait((topic, payload))
        except asyncio.QueueFull:
            self.overflowed = True
            self.dropped += 1

    async def get(self) -> tuple[str, dict[str, Any]]:
        return await self.queue.get()

    async def __aiter__(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        while True:
            yield await self.queue.get()

    async def close(self) -> None:
        await self.bus.unsubscribe(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Bus(ABC):
    """publish(topic, payload) and subscribe(*patterns) -> Subscription."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    @abstractmethod
    async def publish(self, topic: str, payload: dict[str, Any]) -> None: ...

    async def subscribe(self, *patterns: str, maxsize: int = 10_000) -> Subscription:
        sub = Subscription(self, patterns, maxsize)
        self._subs.append(sub)
        await self._ensure_patterns(patterns)
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    async def _ensure_patterns(self, patterns: tuple[str, ...]) -> None:
        return None

    def _deliver_local(self, topic: str, payload: dict[str, Any]) -> None:
        for sub in list(self._subs):
            for p in sub.patterns:
                if topic_matches(p, topic):
                    sub.offer(topic, payload)
                    break

    async def ping(self) -> float | None:
        """Round-trip latency in ms, or None when there is nothing remote to ping."""
        return None
