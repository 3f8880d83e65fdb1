"""A small stand-in for the console: registration over HTTP and the agent socket, on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from sindri_console.agent.config import AgentConfig, load_config
from sindri_console.agent.connection import Agent

API_KEY = "test-agent-key"
INSTANCE_DB_ID = "inst-0001"


def c_frame(type_: str, data: dict[str, Any], frame_id: str | None = None) -> str:
    frame: dict[str, Any] = {"protocolVersion": "1.0", "type": type_, "ts": "2026-01-01T00:00:00.000Z", "data": data}
    if frame_id is not None:
        frame["id"] = frame_id
    return json.dumps(frame)


@dataclass
class AgentSocket:
    """One agent connection as the fake console sees it."""

    ws: ServerConnection
    headers: dict[str, str]
    subprotocol: str | None
    hello: dict[str, Any] | None = None
    welcomed: bool = False
    frames: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    close_reason: str | None = None

    async def send(self, type_: str, data: dict[str, Any], frame_id: str | None = None) -> None:
        await self.ws.send(c_frame(type_, data, frame_id))

    def matching(self, type_: str, predicate: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == type_ and (predicate is None or predicate(f["data"]))]

    async def wait_for(
        self,
        type_: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        count: int = 1,
        within: float = 10.0,
    ) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                found = self.matching(type_, predicate)
                if len(found) >= count:
                    return found[count - 1]
                self.changed.clear()
                await self.changed.wait()


class FakeConsole:
    """Answers ``POST /api/v1/instances`` itself and hands WebSocket upgrades to a ``websockets`` server."""

    def __init__(self) -> None:
        self.registrations: list[dict[str, Any]] = []
        self.registration_responses: list[tuple[int, dict[str, Any]]] = []
        self.sockets: list[AgentSocket] = []
        self.socket_arrived = asyncio.Event()
        self.auto_ack = True
        self.hello_close_codes: list[tuple[int, str]] = []
        self._ws_server: Any = None
        self._front: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._ws_server = await serve(
            self._agent_socket, "127.0.0.1", 0, subprotocols=["sindri-agent.v1"], max_size=8 * 1024 * 1024
        )
        self._ws_port = self._ws_server.sockets[0].getsockname()[1]
        self._front = await asyncio.start_server(self._front_door, "127.0.0.1", 0)
        self.port = self._front.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._front is not None
        self._front.close()
        self._ws_server.close()
        await self._ws_server.wait_closed()
        for task in list(self._pipes):
            task.cancel()
        for task in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def wait_socket(self, count: int, within: float = 15.0) -> AgentSocket:
        async with asyncio.timeout(within):
            while len([s for s in self.sockets if s.welcomed]) < count:
                self.socket_arrived.clear()
                await self.socket_arrived.wait()
        return [s for s in self.sockets if s.welcomed][count - 1]

    # ----- HTTP front door ---------------------------------------------------------------------------

    async def _front_door(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            if method == "POST":
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                await self._register(path, headers, body, writer)
                return
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._ws_port)
            upstream_writer.write(head)
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._pipes.discard(task)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.write_eof()

    async def _register(self, path: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter) -> None:
        self.registrations.append({"path": path, "headers": headers, "body": json.loads(body)})
        if self.registration_responses:
            status, payload = self.registration_responses.pop(0)
        else:
            status, payload = 201, {"id": INSTANCE_DB_ID, "name": "agent-test"}
        raw = json.dumps(payload).encode()
        reason = {200: "OK", 201: "Created", 401: "Unauthorized", 422: "Unprocessable Entity", 503: "Service Unavailable"}
        writer.write(
            f"HTTP/1.1 {status} {reason.get(status, 'Status')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\nConnection: close\r\n\r\n".encode()
            + raw
        )
        await writer.drain()

    # ----- agent socket ------------------------------------------------------------------------------

    async def _agent_socket(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        sock = AgentSocket(ws=ws, headers={k.lower(): v for k, v in ws.request.headers.raw_items()}, subprotocol=ws.subprotocol)
        self.sockets.append(sock)
        try:
            sock.hello = json.loads(await ws.recv())
            if self.hello_close_codes:
                code, reason = self.hello_close_codes.pop(0)
                await ws.close(code, reason)
                return
            await sock.send(
                "welcome",
                {
                    "instanceId": INSTANCE_DB_ID,
                    "instanceName": "agent-test",
                    "connectionId": f"conn-{len(self.sockets)}",
                    "serverVersion": "test",
                    "protocolVersion": "1.0",
                    "acceptedCapabilities": sock.hello["data"]["capabilities"],
                    "heartbeatLossAfterSeconds": 90,
                    "maxFrameBytes": 8 * 1024 * 1024,
                    "serverTime": "2026-01-01T00:00:00.000Z",
                },
            )
            sock.welcomed = True
            self.socket_arrived.set()
            async for message in ws:
                frame = json.loads(message)
                sock.frames.append(frame)
                sock.changed.set()
                if self.auto_ack and isinstance(frame.get("id"), str):
                    await sock.send("ack", {"id": frame["id"]})
        except Exception:  # a dropped connection ends the handler like a close does
            pass
        finally:
            rcvd = ws.protocol.close_rcvd
            sock.close_code = rcvd.code if rcvd is not None else 1006
            sock.close_reason = rcvd.reason if rcvd is not None else None
            sock.closed.set()
            sock.changed.set()
            self.socket_arrived.set()


@pytest.fixture
async def console() -> AsyncIterator[FakeConsole]:
    fake = FakeConsole()
    await fake.start()
    yield fake
    await fake.stop()


def agent_env(console: FakeConsole, tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        "SINDRI_CONSOLE_URL": console.url + "/",
        "SINDRI_CONSOLE_API_KEY": API_KEY,
        "SINDRI_INSTANCE_ID": "agent-test",
        "SINDRI_PROVIDER": "k8s",
        "SINDRI_REGION": "eu-west-1",
        "SINDRI_AGENT_TAGS": "env=test, team = platform,broken",
        "SINDRI_AGENT_HEARTBEAT": "0.5",
        "SINDRI_AGENT_METRICS": "0.5",
        "SINDRI_AGENT_PROCESSES": "1",
        "SINDRI_AGENT_EXTENSIONS": "1",
        "SINDRI_AGENT_BACKOFF_MAX": "0.2",
        "SINDRI_AGENT_STABLE_AFTER": "60",
        "SINDRI_AGENT_STATE_DIR": str(tmp_path / "state"),
        "SINDRI_BIN_PATH": str(tmp_path / "no-such-sindri"),
        "HOME": str(tmp_path),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    env.update(overrides)
    return env


@dataclass
class RunningAgent:
    agent: Agent
    task: asyncio.Task[int]


class AgentRunner:
    def __init__(self) -> None:
        self.running: list[RunningAgent] = []

    def start(self, config: AgentConfig) -> RunningAgent:
        agent = Agent(config, install_signal_handlers=False)
        running = RunningAgent(agent=agent, task=asyncio.create_task(agent.run()))
        self.running.append(running)
        return running

    async def stop_all(self) -> None:
        for running in self.running:
            running.agent.request_stop()
        for running in self.running:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(running.task, timeout=20)


@pytest.fixture
async def agents() -> AsyncIterator[AgentRunner]:
    runner = AgentRunner()
    yield runner
    await runner.stop_all()


@pytest.fixture
def make_config(console: FakeConsole, tmp_path: Path) -> Callable[..., AgentConfig]:
    def build(**overrides: str) -> AgentConfig:
        return load_config(agent_env(console, tmp_path, **overrides))

    return build
