"""A real uvicorn server on 127.0.0.1 (random port) serving the test app, and a small /ws client."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class WsClient:
    """Reads every server message in order and remembers them."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.seen: list[dict[str, Any]] = []

    async def send(self, doc: dict[str, Any] | str) -> None:
        await self.conn.send(doc if isinstance(doc, str) else json.dumps(doc))

    async def recv(self, within: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            msg = json.loads(await self.conn.recv())
        self.seen.append(msg)
        return msg  # type: ignore[no-any-return]

    async def next_of(self, type_: str, within: float = 5.0,
                      where: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """The next message of `type_` (and matching `where`); other messages are kept in `seen`."""
        async with asyncio.timeout(within):
            while True:
                msg = await self.recv(within)
                if msg["type"] == type_ and (where is None or where(msg)):
                    return msg

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Every message arriving within `seconds` (used to assert that nothing arrives)."""
        got = []
        with contextlib.suppress(TimeoutError):
            while True:
                got.append(await self.recv(seconds))
        return got

    async def close_code(self, within: float = 5.0) -> int | None:
        async with asyncio.timeout(within):
            with contextlib.suppress(ConnectionClosed):
                while True:
                    self.seen.append(json.loads(await self.conn.recv()))
        return self.conn.close_code

    async def subscribe(self, **data: Any) -> list[dict[str, Any]]:
        """Send subscribe and return its replies (`subscribed`… or the one `error`)."""
        mid = f"s{len(self.seen)}-{id(data) % 10000}"
        await self.send({"type": "subscribe", "id": mid, "data": data})
        expected = 1 if data.get("channel") or data.get("commandId") else None
        replies = [await self.next_of_reply(mid)]
        if replies[0]["type"] == "error" or expected == 1:
            return replies
        # channel omitted: one reply per channel, all of them before the answer to a later ping
        replies += [m for m in await self.through_pong() if m.get("replyTo") == mid]
        return replies

    async def through_pong(self, within: float = 5.0) -> list[dict[str, Any]]:
        """Messages that arrive before the pong of a fresh ping (replies come in request order)."""
        mid = f"ping-{len(self.seen)}"
        await self.send({"type": "ping", "id": mid})
        got = []
        async with asyncio.timeout(within):
            while True:
                msg = await self.recv(within)
                if msg["type"] == "pong" and msg.get("replyTo") == mid:
                    return got
                got.append(msg)

    async def until(self, where: Callable[[dict[str, Any]], bool], within: float = 5.0) -> list[dict[str, Any]]:
        """Every message up to the first one matching `where` (excluded): pushes published before a
        sentinel are delivered before it, so this shows exactly what arrived and what did not."""
        got = []
        async with asyncio.timeout(within):
            while True:
                msg = await self.recv(within)
                if where(msg):
                    return got
                got.append(msg)

    async def next_of_reply(self, mid: str, within: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                msg = await self.recv(within)
                if msg.get("replyTo") == mid:
                    return msg


class Server:
    def __init__(self, base: str) -> None:
        self.base = base

    @contextlib.asynccontextmanager
    async def ws_path(self, path: str) -> AsyncIterator[WsClient]:
        async with connect(self.base + path, open_timeout=5) as conn:
            yield WsClient(conn)

    @contextlib.asynccontextmanager
    async def ws(self, *, key: str | None = None, ticket: str | None = None, query: str = "",
                 headers: dict[str, str] | None = None) -> AsyncIterator[WsClient]:
        url = self.base + "/ws"
        if ticket is not None:
            url += f"?ticket={ticket}"
        elif query:
            url += "?" + query
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["X-Api-Key"] = key
        async with connect(url, additional_headers=hdrs, open_timeout=5, max_size=None) as conn:
            yield WsClient(conn)


@pytest.fixture
async def server(console: Any) -> AsyncIterator[Server]:
    """uvicorn on the test's event loop, serving the app whose lifespan the console fixture runs."""
    config = uvicorn.Config(console.app, host="127.0.0.1", port=0, lifespan="off", log_level="warning",
                            ws_max_size=console.rt.settings.AGENT_MAX_FRAME_BYTES)
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    async with asyncio.timeout(10):
        while not srv.started:  # noqa: ASYNC110 - uvicorn exposes only this flag
            await asyncio.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield Server(f"ws://127.0.0.1:{port}")
    finally:
        srv.should_exit = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(15):
                await task
