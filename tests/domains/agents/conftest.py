"""A real uvicorn server in the test's event loop (loopback, free port) over the `console` app."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection

FIXTURES = Path("/work/shared/fixtures/agent-wire")
if not FIXTURES.exists():  # the repository copy, when the shared folder is not mounted
    FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "agent-wire"


def fixture_lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def fixture_frame(name: str, line: int) -> dict[str, Any]:
    """The `frame` (ws_in) or `body` (http) of a 1-based fixture line."""
    return fixture_lines(name)[line - 1]


def now_iso_ns() -> str:
    """Draupnir's timestamp format (nanoseconds, Z)."""
    t = datetime.now(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}123Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    console: Any
    url: str

    async def connect(self, key: str | None = None, *, headers: dict[str, str] | None = None,
                      path: str = "/ws/agent", **kw: Any) -> ClientConnection:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["Authorization"] = f"Bearer {key}"
        return await websockets.connect(self.url + path, additional_headers=hdrs, open_timeout=5,
                                        max_size=None, **kw)


@pytest.fixture
async def server(console: Any) -> AsyncIterator[Server]:
    port = free_port()
    s = console.rt.settings
    config = uvicorn.Config(console.app, host="127.0.0.1", port=port, lifespan="off", log_config=None,
                            access_log=False, ws_max_size=s.AGENT_MAX_FRAME_BYTES,
                            ws_ping_interval=s.WS_PING_INTERVAL_SECONDS, ws_ping_timeout=s.WS_PING_TIMEOUT_SECONDS)
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    for _ in range(200):
        if srv.started:
            break
        await asyncio.sleep(0.02)
    assert srv.started
    try:
        yield Server(console, f"ws://127.0.0.1:{port}")
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 15)


async def close_code(ws: ClientConnection, timeout: float = 5) -> int | None:
    """Wait for the server to close; the close code it sent."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    return None


async def no_frame(ws: ClientConnection, seconds: float) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    return False


async def eventually(check: Any, timeout: float = 5.0, interval: float = 0.05) -> Any:
    end = asyncio.get_running_loop().time() + timeout
    last = None
    while True:
        last = await check()
        if last:
            return last
        if asyncio.get_running_loop().time() > end:
            return last
        await asyncio.sleep(interval)
