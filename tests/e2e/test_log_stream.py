"""Log streams against real `sindri-console serve` processes on 127.0.0.1 (10-core §12, issue 5):
an entry ingested on replica B reaches a stream on replica A through the Redis bus, and SIGTERM ends
open streams with `reconnect` (`shutdown`)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.domains.logs.sse import SseStream
from tests.e2e.server import Server, fresh_database, start_server

API = "/api/v1"
AGENT_KEY = "e2e-logs-bootstrap-agent-key-0123456789ab"


def _admin(server: Server) -> dict[str, str]:
    assert server.admin_key
    return {"Authorization": f"Bearer {server.admin_key}"}


async def _instance(http: httpx.AsyncClient, server: Server, name: str) -> str:
    r = await http.post(server.url + f"{API}/instances", headers=_admin(server),
                        json={"name": name, "provider": "docker", "region": "local"})
    assert r.status_code == 201, r.text
    return r.json()["id"]  # type: ignore[no-any-return]


@pytest.fixture
def single(tmp_path: Path) -> Iterator[Server]:
    with fresh_database(tmp_path) as db:
        server = start_server(tmp_path, db, extra_env={"SSE_KEEPALIVE_SECONDS": "1"})
        try:
            yield server
        finally:
            server.stop()


async def test_real_server_streams_then_says_shutdown_on_sigterm(single: Server) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        iid = await _instance(http, single, "e2e-logs")
        async with SseStream(http, single.url + f"{API}/logs/stream", _admin(single)) as s:
            assert (await s.next())["event"] == "connected"
            r = await http.post(single.url + f"{API}/logs/ingest", headers=_admin(single),
                                json={"instanceId": iid, "level": "error", "source": "app", "message": "over tcp"})
            assert r.status_code == 201
            ev = await s.next(lambda e: e.get("event") == "log")
            assert ev["data"] == r.json() and ev["id"] == str(r.json()["seq"])
            single.proc.send_signal(signal.SIGTERM)
            ev = await s.next(lambda e: e.get("event") == "reconnect", within=10)
            assert ev["data"] == {"reason": "shutdown"}
            await asyncio.wait_for(s.ended.wait(), 10)
    # the process ends promptly; uvicorn re-raises the handled SIGTERM after a graceful stop
    assert await asyncio.to_thread(single.proc.wait, 15) in (0, -signal.SIGTERM)
    assert "Cancel" not in single.log_path.read_text()  # no stream outlived the graceful timeout


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    env = {"SINDRI_CONSOLE_API_KEY": AGENT_KEY}
    with fresh_database(tmp_path) as db:
        a = start_server(tmp_path, db, extra_env=env)
        try:
            b = start_server(tmp_path, db, extra_env=env, expect_admin_key=False)
            try:
                yield a, b
            finally:
                b.stop()
        finally:
            a.stop()


@pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="two replicas share the bus through Redis")
async def test_entry_ingested_on_b_reaches_stream_on_a(replicas: tuple[Server, Server]) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=10) as http:
        iid = await _instance(http, a, "cross-replica")
        r = await http.post(a.url + f"{API}/ws/ticket", headers=_admin(a))
        ticket = r.json()["ticket"]
        # the ticket was issued on A and is consumed on B: the store is shared
        async with SseStream(http, b.url + f"{API}/instances/{iid}/logs/stream", params={"ticket": ticket}) as on_b, \
                SseStream(http, a.url + f"{API}/logs/stream", _admin(a), {"level": "warn"}) as on_a:
            assert on_b.response.status_code == 200
            await on_a.next()
            await on_b.next()
            r = await http.post(b.url + f"{API}/logs/ingest/batch", headers=_admin(a), json={"entries": [
                {"instanceId": iid, "level": "info", "source": "app", "message": "quiet"},
                {"instanceId": iid, "level": "warning", "source": "app", "message": "loud"}]})
            assert r.status_code == 201, r.text
            ev = await on_a.next(lambda e: e.get("event") == "log")
            assert ev["data"]["message"] == "loud" and ev["data"]["instanceId"] == iid
            assert [e["data"]["message"] for e in await on_b.logs(2)] == ["quiet", "loud"]
        r = await http.get(a.url + f"{API}/logs/stream", params={"ticket": ticket})
        assert r.status_code == 401
