"""A small SSE client over a real socket, and an in-process uvicorn on 127.0.0.1 for the stream tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """uvicorn on 127.0.0.1 serving an app whose lifespan already runs (the `console` fixture's)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None,
                            access_log=False, timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


class SseStream:
    """Reads events as they arrive: dicts with `event`, `id`, `data` (parsed JSON), or `comment`."""

    def __init__(self, http: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None,
                 params: dict[str, str] | None = None) -> None:
        self.http, self.url, self.headers, self.params = http, url, headers or {}, params
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.response: httpx.Response | None = None
        self.ended = asyncio.Event()
        self._cm: Any = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SseStream:
        self._cm = self.http.stream("GET", self.url, headers=self.headers, params=self.params,
                                    timeout=httpx.Timeout(10, read=None))
        self.response = await self._cm.__aenter__()
        if self.response.status_code == 200:
            self._task = asyncio.create_task(self._read())
        else:
            await self.response.aread()
        return self

    async def _read(self) -> None:
        assert self.response is not None
        current: dict[str, Any] = {}
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if current:
                        if "data" in current:
                            current["data"] = json.loads(current["data"])
                        await self.events.put(current)
                    current = {}
                elif line.startswith(":"):
                    await self.events.put({"comment": line[1:].strip()})
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    current[name] = current.get(name, "") + value if name == "data" else value
        except (httpx.HTTPError, asyncio.CancelledError):
            pass
        finally:
            self.ended.set()

    async def next(self, predicate: Callable[[dict[str, Any]], bool] | None = None,
                   within: float = 5.0) -> dict[str, Any]:
        """The next event satisfying `predicate` (others are skipped)."""
        async with asyncio.timeout(within):
            while True:
                ev = await self.events.get()
                if predicate is None or predicate(ev):
                    return ev

    async def logs(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        return [await self.next(lambda e: e.get("event") == "log", within) for _ in range(count)]

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._cm.__aexit__(None, None, None)
