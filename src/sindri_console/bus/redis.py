"""Redis pub/sub bus: one pattern subscription connection per replica, fanned out locally.

Channel = `sindri:` + topic with `.` replaced by `:` (40 §12).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis.asyncio as aioredis
import structlog

from sindri_console.bus.base import Bus, topic_matches

log = structlog.get_logger("sindri_console.bus")
PREFIX = "sindri:"


def channel_of(topic: str) -> str:
    return PREFIX + topic.replace(".", ":")


def topic_of(channel: str) -> str:
    return channel[len(PREFIX):].replace(":", ".")


class RedisBus(Bus):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.client = aioredis.from_url(url, decode_responses=False, health_check_interval=30)
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._patterns: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=False)
        self._reader = asyncio.create_task(self._read_loop(), name="bus-redis-reader")

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except Exception:
                pass
        await self.client.aclose()

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        await self.client.publish(channel_of(topic), json.dumps(payload, separators=(",", ":"), default=str))

    async def _ensure_patterns(self, patterns: tuple[str, ...]) -> None:
        waits = []
        async with self._lock:
            for p in patterns:
                ch = channel_of(p)
                if ch in self._patterns:
                    waits.append(self._patterns[ch])
                    continue
                ev = asyncio.Event()
                self._patterns[ch] = ev
                waits.append(ev)
                await self._pubsub.psubscribe(ch)
        for ev in waits:
            await asyncio.wait_for(ev.wait(), 10)

    async def _read_loop(self) -> None:
        while True:
            try:
                if not self._patterns:
                    await asyncio.sleep(0.05)
                    continue
                msg = await self._pubsub.get_message(timeout=1.0)
                if msg is None:
                    continue
                kind = msg.get("type")
                if kind in (b"psubscribe", "psubscribe"):
                    ch = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
                    ev = self._patterns.get(ch)
                    if ev:
                        ev.set()
                    continue
                if kind not in (b"pmessage", "pmessage"):
                    continue
                ch = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
                try:
                    payload = json.loads(msg["data"])
                except (ValueError, TypeError):
                    continue
                if isinstance(payload, dict):
                    pattern = msg.get("pattern")
                    pattern = pattern.decode() if isinstance(pattern, bytes) else pattern
                    self._deliver_for_pattern(pattern, topic_of(ch), payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("bus_read_error", error=type(exc).__name__)
                await asyncio.sleep(1.0)
                await self._resubscribe()

    def _deliver_for_pattern(self, pattern: str | None, topic: str, payload: dict[str, Any]) -> None:
        """Redis sends one pmessage per matching pattern of the connection: each subscription takes the
        message only from the pmessage of its own first matching pattern, so it receives it once."""
        if pattern is None:
            self._deliver_local(topic, payload)
            return
        for sub in list(self._subs):
            first = next((p for p in sub.patterns if topic_matches(p, topic)), None)
            if first is not None and channel_of(first) == pattern:
                sub.offer(topic, payload)

    async def _resubscribe(self) -> None:
        try:
            self._pubsub = self.client.pubsub(ignore_subscribe_messages=False)
            if self._patterns:
                await self._pubsub.psubscribe(*self._patterns.keys())
        except Exception as exc:
            log.warning("bus_resubscribe_failed", error=type(exc).__name__)

    async def ping(self) -> float | None:
        t0 = time.perf_counter()
        await self.client.ping()
        return (time.perf_counter() - t0) * 1000
