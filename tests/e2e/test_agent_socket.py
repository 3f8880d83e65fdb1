"""The agent socket on a real `sindri-console serve` (uvicorn, 127.0.0.1): every recorded draupnir frame
replayed, keep-alive in both directions, identification timeout and heartbeat loss with short timers
(40 §3.6, §17.2, §17.6, §17.10)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from tests.e2e.server import Server, fresh_database, start_server

AGENT_KEY = "e2e-agent-socket-bootstrap-key-0123456789"
FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "agent-wire"
FILES = ("wire-v1.1.0-full.jsonl", "wire-termfix-full.jsonl", "wire-v1.1.0-ping.jsonl",
         "wire-v1.1.0-registration-retry.jsonl")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("agent-socket")
    env = {"SINDRI_CONSOLE_API_KEY": AGENT_KEY, "WS_PING_INTERVAL_SECONDS": "5", "WS_PING_TIMEOUT_SECONDS": "5",
           "AGENT_IDENTIFY_TIMEOUT_SECONDS": "3", "AGENT_HEARTBEAT_LOSS_SECONDS": "3",
           "AGENT_HEARTBEAT_LOSS_CHECK_SECONDS": "1"}
    with fresh_database(tmp) as db:
        srv = start_server(tmp, db, extra_env=env)
        try:
            yield srv
        finally:
            srv.stop()


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://", 1) + "/ws/agent"


def admin(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_key}"}


def iso_ns(epoch: float) -> str:
    t = datetime.fromtimestamp(epoch, tz=UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def restamp(frame: dict[str, Any], at: float) -> dict[str, Any]:
    """Fixture timestamps moved to `at` (same format); LLM record `ts` likewise (D double of §17)."""
    frame = json.loads(json.dumps(frame))
    payload = frame.get("payload")
    if isinstance(payload, dict):
        if "timestamp" in payload:
            payload["timestamp"] = iso_ns(at)
        for i, rec in enumerate(payload.get("records") or []):
            rec["ts"] = int(at * 1000) + i
    return frame


async def instance_by_name(http: httpx.AsyncClient, server: Server, name: str) -> dict[str, Any]:
    r = await http.get(f"{server.url}/api/v1/instances", params={"search": name, "limit": 100},
                       headers=admin(server))
    assert r.status_code == 200, r.text
    found = [i for i in r.json()["data"] if i["name"] == name]
    assert len(found) == 1, r.json()
    r = await http.get(f"{server.url}/api/v1/instances/{found[0]['id']}", headers=admin(server))
    return r.json()  # type: ignore[no-any-return]


async def replay(server: Server, http: httpx.AsyncClient, name: str) -> dict[str, int]:
    """Registration requests, then each recorded connection with its ws_in frames; counts what was sent."""
    lines = load(name)
    last_t = max(line["t"] for line in lines)
    base = time.time() - last_t - 2
    sent: dict[str, int] = {}
    for line in lines:
        if line["kind"] != "http":
            continue
        headers = {k: v for k, v in line["headers"].items()
                   if k in ("Content-Type", "X-Agent-Version", "User-Agent")}
        headers["Authorization"] = f"Bearer {AGENT_KEY}"
        r = await http.post(server.url + line["path"], content=line["body"], headers=headers)
        assert r.status_code in (200, 201, 409), r.text
    conns = sorted({line["conn"] for line in lines if line["kind"] == "ws_handshake"})
    for conn in conns:
        ws = await websockets.connect(ws_url(server), additional_headers={"Authorization": f"Bearer {AGENT_KEY}"},
                                      open_timeout=5)
        try:
            for line in lines:
                if line.get("conn") != conn:
                    continue
                if line["kind"] == "ws_in":
                    frame = restamp(line["frame"], base + line["t"])
                    await ws.send(json.dumps(frame))
                    sent[frame["type"]] = sent.get(frame["type"], 0) + 1
                elif line["kind"] == "ws_ping_in":
                    waiter = await ws.ping(b"")
                    await asyncio.wait_for(waiter, 1)  # §17.2 38: answered within 1 s
            # nothing is ever written to a D connection (no ack, no heartbeat:pong, no log:subscribe)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 1.0)
        finally:
            await ws.close(1001)
    return sent


async def test_replay_every_fixture_frame(server: Server) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        for name in FILES:
            sent = await replay(server, http, name)
            if not sent:
                continue
            ident = next(json.loads(line["body"])["instance_id"] for line in load(name) if line["kind"] == "http")
            body = await instance_by_name(http, server, ident)
            agent = body["agent"]
            assert agent["dialect"] == "draupnir" and agent["version"].startswith("1.1.0")
            assert agent["lastHeartbeatAt"] is not None
            assert body["lastHeartbeat"]["agentUptimeSeconds"] is not None
            assert body["lastHeartbeat"]["cpuPercent"] is None
            if sent.get("metrics"):
                r = await http.get(f"{server.url}/api/v1/metrics/latest", params={"instanceIds": body["id"]},
                                   headers=admin(server))
                assert r.status_code == 200, r.text
                latest = r.json()["data"]
                assert len(latest) == 1 and latest[0]["cpuPercent"] is not None
                assert latest[0]["memTotalBytes"] > 0
            r = await http.get(f"{server.url}/api/v1/instances/{body['id']}/events", params={"limit": 100},
                               headers=admin(server))
            types = [e["type"] for e in r.json()["data"]]
            assert types.count("CONNECT") >= 1 and "DEPLOY" not in types


async def test_server_pings_and_silent_client_is_closed(server: Server) -> None:
    """§17.2 39: a client that never answers the server's pings is closed within 12 s (ping 5 s + timeout 5 s)."""
    host, port = server.url.removeprefix("http://").split(":")
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(server.url + "/api/v1/instances", headers={"Authorization": f"Bearer {AGENT_KEY}"},
                            json={"instance_id": "silent-one", "hostname": "silent-one", "provider": "docker"})
        assert r.status_code in (200, 201)
        iid = r.json()["id"]
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /ws/agent HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      f"Authorization: Bearer {AGENT_KEY}\r\nX-Instance-ID: {iid}\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b" 101 " in head.split(b"\r\n", 1)[0]

        async def connected() -> bool:
            r = await http.get(f"{server.url}/api/v1/instances/{iid}", headers=admin(server))
            return bool((r.json().get("agent") or {}).get("connected"))

        end = time.monotonic() + 3
        while not await connected():
            assert time.monotonic() < end, "never connected"
            await asyncio.sleep(0.1)
        started = time.monotonic()
        while await connected():  # the client reads nothing, so it never answers a ping
            assert time.monotonic() - started < 12, "a client that ignores pings was not closed"
            await asyncio.sleep(0.25)
        writer.close()


async def test_client_ping_answered_past_sixty_seconds_budget(server: Server) -> None:
    """Draupnir's keep-alive: its ping (empty payload) is answered at once, and server pings keep it alive."""
    ws = await websockets.connect(ws_url(server), additional_headers={"Authorization": f"Bearer {AGENT_KEY}"},
                                  ping_interval=None)
    try:
        await ws.send(json.dumps({"protocol_version": "", "type": "heartbeat", "payload": {
            "instance_id": "silent-one", "timestamp": iso_ns(time.time()), "uptime_seconds": 1}}))
        for _ in range(3):
            started = time.monotonic()
            waiter = await ws.ping(b"")
            await asyncio.wait_for(waiter, 1)
            assert time.monotonic() - started < 1
            await asyncio.sleep(4)  # server pings (every 5 s) are answered by the client library meanwhile
        assert ws.state is websockets.protocol.State.OPEN
    finally:
        await ws.close(1001)


async def test_identification_timeout_4408(server: Server) -> None:
    ws = await websockets.connect(ws_url(server), additional_headers={"Authorization": f"Bearer {AGENT_KEY}"})
    started = time.monotonic()
    with pytest.raises(websockets.ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 8)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4408
    assert 2.5 <= time.monotonic() - started <= 5


async def test_heartbeat_loss_and_recovery_real_time(server: Server) -> None:
    """§17.6 88-89 with AGENT_HEARTBEAT_LOSS_SECONDS=3 and the loop running every second."""
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(server.url + "/api/v1/instances", headers={"Authorization": f"Bearer {AGENT_KEY}"},
                            json={"instance_id": "lossy", "hostname": "lossy", "provider": "docker"})
        iid = r.json()["id"]
        ws = await websockets.connect(ws_url(server), additional_headers={"Authorization": f"Bearer {AGENT_KEY}"})

        def heartbeat(uptime: int) -> str:
            return json.dumps({"protocol_version": "", "type": "heartbeat", "payload": {
                "instance_id": "lossy", "timestamp": iso_ns(time.time()), "uptime_seconds": uptime}})

        async def status() -> dict[str, Any]:
            r = await http.get(f"{server.url}/api/v1/instances/{iid}", headers=admin(server))
            return r.json()  # type: ignore[no-any-return]

        try:
            await ws.send(heartbeat(1))
            started = time.monotonic()
            while (await status())["status"] != "UNREACHABLE":
                assert time.monotonic() - started < 6, "heartbeat loss not detected within 6 s"
                await asyncio.sleep(0.2)
            body = await status()
            assert body["agent"]["heartbeatLost"] is True and body["agent"]["connected"] is True
            await asyncio.sleep(0.5)
            await ws.send(heartbeat(9))
            started = time.monotonic()
            while (await status())["status"] != "RUNNING":
                assert time.monotonic() - started < 3
                await asyncio.sleep(0.1)
            r = await http.get(f"{server.url}/api/v1/instances/{iid}/events", params={"limit": 100},
                               headers=admin(server))
            events = r.json()["data"]
            lost = [e for e in events if e["type"] == "HEARTBEAT_LOST"]
            back = [e for e in events if e["type"] == "HEARTBEAT_RECOVERED"]
            assert lost and back and back[0]["metadata"]["downtimeSeconds"] >= 0.5
        finally:
            await ws.close(1001)
