"""Two real `sindri-console serve` replicas sharing PostgreSQL and Redis: a newer connection on replica B
replaces the one on replica A with 4409 (40 §3.5 step 3); server shutdown closes agent sockets (§3.5)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import websockets
from tests.e2e.server import Server, fresh_database, start_server

AGENT_KEY = "e2e-agent-replicas-bootstrap-key-0123456789"
TWO_REPLICAS = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql") or not os.environ.get("TEST_REDIS_URL"),
    reason="two replicas need a shared PostgreSQL (TEST_DATABASE_URL) and Redis (TEST_REDIS_URL)",
)


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://", 1) + "/ws/agent"


def heartbeat(identity: str) -> str:
    t = datetime.now(UTC)
    return json.dumps({"protocol_version": "", "type": "heartbeat", "payload": {
        "instance_id": identity, "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z", "uptime_seconds": 3}})


async def agent_state(http: httpx.AsyncClient, server: Server, admin_key: str, iid: str) -> dict[str, Any]:
    r = await http.get(f"{server.url}/api/v1/instances/{iid}", headers={"Authorization": f"Bearer {admin_key}"})
    assert r.status_code == 200, r.text
    return r.json().get("agent") or {}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    if not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql") or not os.environ.get("TEST_REDIS_URL"):
        pytest.skip("two replicas need a shared PostgreSQL (TEST_DATABASE_URL) and Redis (TEST_REDIS_URL)")
    tmp = tmp_path_factory.mktemp("agent-replicas")
    env = {"SINDRI_CONSOLE_API_KEY": AGENT_KEY}
    with fresh_database(tmp) as db:
        a = start_server(tmp, db, extra_env=env)
        try:
            b = start_server(tmp, db, extra_env=env, expect_admin_key=False)
            try:
                yield a, b
            finally:
                b.stop()
        finally:
            a.stop()


@TWO_REPLICAS
async def test_replacement_across_replicas(replicas: tuple[Server, Server]) -> None:
    a, b = replicas
    assert a.admin_key
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(a.url + "/api/v1/instances", headers={"Authorization": f"Bearer {AGENT_KEY}"},
                            json={"instance_id": "roamer", "hostname": "roamer", "provider": "docker"})
        assert r.status_code == 201, r.text
        iid = r.json()["id"]
        first = await websockets.connect(ws_url(a), additional_headers={"Authorization": f"Bearer {AGENT_KEY}"})
        await first.send(heartbeat("roamer"))
        end = time.monotonic() + 3
        while not (await agent_state(http, a, a.admin_key, iid)).get("connected"):
            assert time.monotonic() < end
            await asyncio.sleep(0.1)
        second = await websockets.connect(ws_url(b), additional_headers={"Authorization": f"Bearer {AGENT_KEY}"})
        await second.send(heartbeat("roamer"))
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(first.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4409
        await asyncio.sleep(0.5)
        state = await agent_state(http, b, a.admin_key, iid)
        assert state["connected"] is True
        # the replaced connection's close did not clear the newer connection's state
        await second.send(heartbeat("roamer"))
        await asyncio.sleep(0.3)
        assert (await agent_state(http, a, a.admin_key, iid))["connected"] is True
        r = await http.get(f"{a.url}/api/v1/audit", params={"resource": "agent_connection", "limit": 50},
                           headers={"Authorization": f"Bearer {a.admin_key}"})
        entries = r.json()["data"]
        assert sum(e["action"] == "CONNECT" for e in entries) == 2
        assert [e["metadata"]["closeCode"] for e in entries if e["action"] == "DISCONNECT"] == [4409]
        await second.close(1001)


@pytest.fixture
def lone_server(tmp_path: Any) -> Iterator[Server]:
    with fresh_database(tmp_path) as db:
        srv = start_server(tmp_path, db, extra_env={"SINDRI_CONSOLE_API_KEY": AGENT_KEY})
        try:
            yield srv
        finally:
            srv.stop()


async def test_server_shutdown_closes_agent_sockets(lone_server: Server) -> None:
    srv = lone_server
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(srv.url + "/api/v1/instances", headers={"Authorization": f"Bearer {AGENT_KEY}"},
                            json={"instance_id": "short-lived", "hostname": "short-lived",
                                  "provider": "docker"})
        assert r.status_code == 201
    ws = await websockets.connect(ws_url(srv), additional_headers={"Authorization": f"Bearer {AGENT_KEY}"})
    await ws.send(heartbeat("short-lived"))
    await asyncio.sleep(0.5)
    srv.proc.terminate()
    with pytest.raises(websockets.ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None and info.value.rcvd.code in (1001, 1012), info.value.rcvd
