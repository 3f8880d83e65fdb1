"""Log streams (10-core §12; acceptance checks 130-137) against uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.domains.logs.helpers import API, batch, ingest, team_with
from tests.domains.logs.sse import SseStream, serve

from sindri_console.domains.logs import stream as stream_mod


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"SSE_KEEPALIVE_SECONDS": 1.0, "SSE_MAX_STREAMS_PER_KEY": 2, "SSE_REPLAY_LIMIT": 5}


@pytest.fixture
async def http(console: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(console.app) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


def is_log(ev: dict[str, Any]) -> bool:
    return ev.get("event") == "log"


async def test_connected_then_live_entry(console: Any, admin: str, http: httpx.AsyncClient) -> None:
    x = await console.register(admin, "live-x")
    _, viewer = await console.user("VIEWER")
    async with SseStream(http, f"{API}/logs/stream", console.auth(viewer)) as s:
        assert s.response.status_code == 200
        assert s.response.headers["content-type"].startswith("text/event-stream")
        assert s.response.headers["cache-control"] == "no-cache"
        assert s.response.headers["x-accel-buffering"] == "no"
        first = await s.next()
        assert first["event"] == "connected" and first["retry"] == "3000"
        assert first["data"]["instanceIds"] is None and first["data"]["lastEventId"] is None
        entry = (await ingest(console, admin, x["id"], "hello stream")).json()
        ev = await s.next(is_log)
        assert ev["id"] == str(entry["seq"]) and ev["data"] == entry


async def test_filters_apply(console: Any, admin: str, http: httpx.AsyncClient) -> None:
    x = await console.register(admin, "filter-x")
    y = await console.register(admin, "filter-y")
    async with SseStream(http, f"{API}/instances/{x['id']}/logs/stream", console.auth(admin),
                         {"level": "error"}) as one, \
            SseStream(http, f"{API}/logs/stream", console.auth(admin),
                      {"instanceIds": f"{x['id']},{y['id']}", "search": "NEEDLE", "source": "app"}) as fleet:
        await one.next()
        await fleet.next()
        await ingest(console, admin, x["id"], "info needle", level="INFO")
        await ingest(console, admin, y["id"], "other haystack", level="ERROR")
        await ingest(console, admin, y["id"], "build needle", level="ERROR", source="BUILD")
        await ingest(console, admin, x["id"], "error needle", level="ERROR")
        await ingest(console, admin, y["id"], "y needle", level="WARN")
        assert [e["data"]["message"] for e in await one.logs(1)] == ["error needle"]
        got = [e["data"]["message"] for e in await fleet.logs(3)]
        assert got == ["info needle", "error needle", "y needle"]


async def test_keepalive_comment(console: Any, admin: str, http: httpx.AsyncClient) -> None:
    async with SseStream(http, f"{API}/logs/stream", console.auth(admin)) as s:
        await s.next()
        assert (await s.next(within=2.0)) == {"comment": "keep-alive"}


async def test_resume_replays_missed_without_duplicates(console: Any, admin: str, http: httpx.AsyncClient) -> None:
    x = await console.register(admin, "resume-x")
    first = (await ingest(console, admin, x["id"], "entry 1")).json()
    missed = [(await ingest(console, admin, x["id"], f"entry {i}")).json() for i in (2, 3, 4)]
    headers = {**console.auth(admin), "Last-Event-ID": str(first["seq"])}
    async with SseStream(http, f"{API}/instances/{x['id']}/logs/stream", headers) as s:
        connected = await s.next()
        assert connected["data"]["lastEventId"] == str(first["seq"])
        assert [e["data"] for e in await s.logs(3)] == missed
        live = (await ingest(console, admin, x["id"], "entry 5")).json()
        nxt = await s.next(is_log)
        assert nxt["data"] == live


async def test_resume_gap_sends_newest(console: Any, admin: str, http: httpx.AsyncClient) -> None:
    x = await console.register(admin, "gap-x")
    start = (await ingest(console, admin, x["id"], "start")).json()
    entries = [{"instanceId": x["id"], "level": "INFO", "source": "APP", "message": f"m{i}"} for i in range(8)]
    assert (await batch(console, admin, entries)).status_code == 201
    async with SseStream(http, f"{API}/logs/stream", console.auth(admin), {"lastEventId": str(start["seq"])}) as s:
        await s.next()
        gap = await s.next()
        assert gap["event"] == "gap" and gap["data"] == {"skipped": 3}
        assert [e["data"]["message"] for e in await s.logs(5)] == [f"m{i}" for i in range(3, 8)]
    r = await http.get(f"{API}/logs/stream", headers={**console.auth(admin), "Last-Event-ID": "abc"})
    assert r.status_code == 422


async def test_out_of_scope_streams_404(console: Any, admin: str, http: httpx.AsyncClient) -> None:
    i1 = await console.register(admin, "scope-1")
    i2 = await console.register(admin, "scope-2")
    dev_id, dev = await console.user("DEVELOPER")
    other, _ = await console.user("VIEWER")
    await team_with(console, admin, "dev-team", dev_id, [i1["id"]])
    await team_with(console, admin, "other-team", other, [i2["id"]])
    r = await http.get(f"{API}/instances/{i2['id']}/logs/stream", headers=console.auth(dev))
    assert r.status_code == 404
    r = await http.get(f"{API}/logs/stream", params={"instanceId": i2["id"]}, headers=console.auth(dev))
    assert r.status_code == 404
    # a fleet stream without ids only carries in-scope instances, including ones registered later
    async with SseStream(http, f"{API}/logs/stream", console.auth(dev)) as s:
        await s.next()
        later = await console.register(admin, "scope-later")
        await ingest(console, admin, i2["id"], "hidden")
        await ingest(console, admin, i1["id"], "mine")
        await ingest(console, admin, later["id"], "teamless")
        assert [e["data"]["message"] for e in await s.logs(2)] == ["mine", "teamless"]


async def test_ticket_is_single_use(console: Any, admin: str, http: httpx.AsyncClient) -> None:
    _, viewer = await console.user("VIEWER")
    ticket = (await http.post(f"{API}/ws/ticket", headers=console.auth(viewer))).json()["ticket"]
    async with SseStream(http, f"{API}/logs/stream", params={"ticket": ticket}) as s:
        assert s.response.status_code == 200
        assert (await s.next())["event"] == "connected"
    r = await http.get(f"{API}/logs/stream", params={"ticket": ticket})
    assert r.status_code == 401
    # tickets are refused on every other route
    ticket = (await http.post(f"{API}/ws/ticket", headers=console.auth(viewer))).json()["ticket"]
    assert (await http.get(f"{API}/logs", params={"ticket": ticket})).status_code == 401


async def test_streams_per_key_limit(console: Any, admin: str, http: httpx.AsyncClient) -> None:
    _, key = await console.user("VIEWER")
    async with SseStream(http, f"{API}/logs/stream", console.auth(key)) as a, \
            SseStream(http, f"{API}/logs/stream", console.auth(key)) as b:
        await a.next()
        await b.next()
        r = await http.get(f"{API}/logs/stream", headers=console.auth(key))
        assert r.status_code == 429
    # slots are released when streams end
    await asyncio.sleep(0.2)
    async with SseStream(http, f"{API}/logs/stream", console.auth(key)) as c:
        assert c.response.status_code == 200


async def test_revoked_key_gets_unauthorized(console: Any, admin: str, http: httpx.AsyncClient,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_mod, "CREDENTIAL_RECHECK_SECONDS", 0.5)
    _, key = await console.user("VIEWER")
    async with SseStream(http, f"{API}/logs/stream", console.auth(key)) as s:
        await s.next()
        key_id = (await console.client.get(f"{API}/me/api-keys", headers=console.auth(key))).json()["data"][0]["id"]
        r = await console.client.delete(f"{API}/admin/api-keys/{key_id}", headers=console.auth(admin))
        assert r.status_code == 200, r.text
        ev = await s.next(lambda e: e.get("event") == "reconnect", within=5)
        assert ev["data"] == {"reason": "unauthorized"}
        await asyncio.wait_for(s.ended.wait(), 5)


async def test_instance_leaving_scope_ends_instance_stream(console: Any, admin: str,
                                                           http: httpx.AsyncClient) -> None:
    x = await console.register(admin, "moving")
    dev_id, dev = await console.user("DEVELOPER")
    other, _ = await console.user("VIEWER")
    await team_with(console, admin, "home", dev_id, [x["id"]])
    away = await team_with(console, admin, "away", other, [])
    async with SseStream(http, f"{API}/instances/{x['id']}/logs/stream", console.auth(dev)) as s:
        await s.next()
        r = await console.client.post(f"{API}/admin/teams/{away}/instances", json={"instanceIds": [x["id"]]},
                                      headers=console.auth(admin))
        assert r.status_code == 200
        ev = await s.next(lambda e: e.get("event") == "reconnect", within=5)
        assert ev["data"] == {"reason": "unauthorized"}


async def test_slow_client_is_dropped_with_overflow(console: Any, admin: str, http: httpx.AsyncClient) -> None:
    console.rt.settings.SSE_CLIENT_QUEUE_SIZE = 3
    hub = console.rt.services["log_streams"]
    x = await console.register(admin, "flood")
    async with SseStream(http, f"{API}/logs/stream", console.auth(admin)) as s:
        await s.next()
        # five bus messages reach the hub before the stream can write: its 3-slot queue overflows
        for i in range(5):
            await hub._dispatch({"instanceId": x["id"], "entries": [
                {"id": f"e{i}", "seq": 10_000 + i, "instanceId": x["id"], "level": "INFO", "source": "APP",
                 "message": f"m{i}", "metadata": None, "deploymentId": None, "path": None,
                 "timestamp": "2026-11-28T00:00:00.000Z", "receivedAt": "2026-11-28T00:00:00.000Z"}]})
        ev = await s.next(lambda e: e.get("event") == "reconnect")
        assert ev["data"] == {"reason": "overflow"}
        await asyncio.wait_for(s.ended.wait(), 5)
    assert not hub.clients


async def test_lifetime_and_shutdown(console: Any, admin: str, http: httpx.AsyncClient) -> None:
    console.rt.settings.SSE_MAX_LIFETIME_SECONDS = 1
    async with SseStream(http, f"{API}/logs/stream", console.auth(admin)) as s:
        await s.next()
        ev = await s.next(lambda e: e.get("event") == "reconnect", within=4)
        assert ev["data"] == {"reason": "lifetime"}
    console.rt.settings.SSE_MAX_LIFETIME_SECONDS = 1800
    async with SseStream(http, f"{API}/logs/stream", console.auth(admin)) as s:
        await s.next()
        console.rt.services["log_streams"].shutdown_clients()
        ev = await s.next(lambda e: e.get("event") == "reconnect")
        assert ev["data"] == {"reason": "shutdown"}
