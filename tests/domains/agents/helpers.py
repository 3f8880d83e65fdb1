"""Helpers of the agent socket tests: fixture frames, a real uvicorn server, waiting."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "agent-wire"
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


async def close_code(ws: ClientConnection, within: float = 5) -> int | None:
    """Wait for the server to close; the close code it sent."""
    try:
        async with asyncio.timeout(within):
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


async def eventually(check: Any, within: float = 5.0, interval: float = 0.05) -> Any:
    end = asyncio.get_running_loop().time() + within
    last = None
    while True:
        last = await check()
        if last:
            return last
        if asyncio.get_running_loop().time() > end:
            return last
        await asyncio.sleep(interval)


TERMFIX = "wire-termfix-full.jsonl"
FULL = "wire-v1.1.0-full.jsonl"


async def register_fixture(console: Any, name: str = FULL) -> dict[str, Any]:
    """POST the fixture's registration body with the bootstrap key."""
    line = fixture_frame(name, 1)
    headers = {k: v for k, v in line["headers"].items() if k in ("Content-Type", "X-Agent-Version", "User-Agent")}
    headers["Authorization"] = f"Bearer {console.bootstrap_key}"
    r = await console.client.post("/api/v1/instances", content=line["body"], headers=headers)
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def d_heartbeat(instance_id: str = "cm0000000000000000000001", uptime: int = 2) -> str:
    frame = fixture_frame(TERMFIX, 6)["frame"]
    frame["payload"]["instance_id"] = instance_id
    frame["payload"]["timestamp"] = now_iso_ns()
    frame["payload"]["uptime_seconds"] = uptime
    return json.dumps(frame)


def c_msg(type_: str, data: dict[str, Any], frame_id: str | None = None) -> str:
    out: dict[str, Any] = {"protocolVersion": "1.0", "type": type_}
    if frame_id is not None:
        out["id"] = frame_id
    out["ts"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    out["data"] = data
    return json.dumps(out)


def hello(instance_id: str, capabilities: list[str] | None = None, **extra: Any) -> str:
    data = {"instanceId": instance_id, "agentInstanceId": "c-agent-1", "agentName": "sindri-console-agent",
            "agentVersion": "0.1.0", "protocolVersion": "1.0",
            "capabilities": capabilities if capabilities is not None else
            ["heartbeat", "metrics", "logs", "processes", "extensions", "config"], **extra}
    return c_msg("hello", data)


async def recv_json(ws: ClientConnection, within: float = 3.0) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), within)
    return json.loads(raw)  # type: ignore[no-any-return]


async def recv_type(ws: ClientConnection, type_: str, within: float = 3.0) -> dict[str, Any]:
    """The next frame of `type_`, skipping others."""
    async with asyncio.timeout(within):
        while True:
            msg = await recv_json(ws, within)
            if msg.get("type") == type_:
                return msg


async def get_instance(console: Any, key: str, iid: str) -> dict[str, Any]:
    r = await console.client.get(f"/api/v1/instances/{iid}", headers=console.auth(key))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def agent_of(console: Any, key: str, iid: str) -> dict[str, Any]:
    return (await get_instance(console, key, iid)).get("agent") or {}
