"""40 §3.5, §7, §17.2 36-40, §17.6: connect, replace, close, removal, frame flood and heartbeat loss."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from tests.domains.agents.helpers import (
    TERMFIX,
    agent_of,
    close_code,
    d_heartbeat,
    eventually,
    get_instance,
    hello,
    recv_type,
    register_fixture,
)

from sindri_console.kit.clock import clock
from sindri_console.models.instance import InstanceEvent


async def event_types(console: Any, iid: str) -> list[str]:
    async with console.rt.db.read() as s:
        rows = await s.scalars(select(InstanceEvent).where(InstanceEvent.instance_id == iid)
                               .order_by(InstanceEvent.ts_ms, InstanceEvent.id))
        return [r.type for r in rows]


async def audit(console: Any, admin: str) -> list[dict[str, Any]]:
    r = await console.client.get("/api/v1/audit?resource=agent_connection&limit=100", headers=console.auth(admin))
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


async def test_replacement_4409_and_audit(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    first = await server.connect(console.bootstrap_key, headers={"X-Instance-ID": inst["id"]})

    async def connected() -> bool:
        return bool((await agent_of(console, admin, inst["id"])).get("connected"))

    assert await eventually(connected, 5.0)
    second = await server.connect(console.bootstrap_key, headers={"X-Instance-ID": inst["id"]})
    assert await close_code(first) == 4409

    async def audited() -> list[dict[str, Any]] | None:
        entries = await audit(console, admin)
        return entries if any(e["action"] == "DISCONNECT" for e in entries) else None

    entries = await eventually(audited, 3.0)
    assert entries
    assert sum(e["action"] == "CONNECT" for e in entries) == 2
    assert all(e["ipAddress"] == "127.0.0.1" and e["userId"] is None for e in entries)
    disc = [e for e in entries if e["action"] == "DISCONNECT"]
    assert len(disc) == 1 and disc[0]["metadata"]["closeCode"] == 4409
    assert disc[0]["metadata"]["instanceId"] == inst["id"]
    assert await agent_of(console, admin, inst["id"]) and (await agent_of(console, admin, inst["id"]))["connected"]
    await second.close(1011)


async def test_abrupt_close_keeps_status_and_records_events(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    ws = await server.connect(console.bootstrap_key)
    await ws.send(d_heartbeat())

    async def connected() -> bool:
        return bool((await agent_of(console, admin, inst["id"])).get("connected"))

    assert await eventually(connected, 5.0)
    await ws.close(1001)

    async def gone() -> bool:
        return (await agent_of(console, admin, inst["id"])).get("connected") is False

    assert await eventually(gone, 1.0)
    types = await event_types(console, inst["id"])
    assert "CONNECT" in types and "DISCONNECT" in types
    assert (await get_instance(console, admin, inst["id"]))["status"] == "RUNNING"


async def test_graceful_close_stops_and_reconnect_runs(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    ws = await server.connect(console.bootstrap_key)
    await ws.send(d_heartbeat())

    async def connected() -> bool:
        return bool((await agent_of(console, admin, inst["id"])).get("connected"))

    assert await eventually(connected, 5.0)
    await ws.close(1000, "agent shutdown")

    async def stopped() -> bool:
        return (await get_instance(console, admin, inst["id"]))["status"] == "STOPPED"

    assert await eventually(stopped, 2.0)
    async with console.rt.db.read() as s:
        ev = await s.scalar(select(InstanceEvent).where(InstanceEvent.instance_id == inst["id"],
                                                        InstanceEvent.type == "DISCONNECT"))
    assert ev is not None and ev.metadata_["graceful"] is True
    ws = await server.connect(console.bootstrap_key)
    await ws.send(d_heartbeat())

    async def running() -> bool:
        return (await get_instance(console, admin, inst["id"]))["status"] == "RUNNING"

    assert await eventually(running, 2.0)
    await ws.close(1012)


async def test_removed_instance_closes_4410(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    ws = await server.connect(console.bootstrap_key, headers={"X-Instance-ID": inst["id"]})

    async def connected() -> bool:
        return bool((await agent_of(console, admin, inst["id"])).get("connected"))

    assert await eventually(connected, 5.0)
    r = await console.client.delete(f"/api/v1/instances/{inst['id']}", headers=console.auth(admin))
    assert r.status_code in (200, 202), r.text
    assert await close_code(ws) == 4410


async def test_frame_flood_dropped_then_4429(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    ws = await server.connect(console.bootstrap_key)
    await ws.send(hello(inst["id"]))
    await recv_type(ws, "welcome")
    bogus = json.dumps({"protocolVersion": "1.0", "type": "bogus", "ts": 0, "data": {}})
    for _ in range(12_001):
        await ws.send(bogus)
    codes: set[str] = set()
    closed = None
    try:
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "error":
                codes.add(msg["data"]["code"])
    except Exception as exc:
        closed = getattr(getattr(exc, "rcvd", None), "code", None)
    assert closed == 4429
    assert "RATE_LIMITED" in codes and "UNKNOWN_TYPE" in codes


async def test_heartbeat_loss_and_recovery(server: Any, admin: str) -> None:
    """§17.6 88-89 with the clock moved forward instead of waiting."""
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    ws = await server.connect(console.bootstrap_key)
    await ws.send(d_heartbeat())

    async def heartbeat_seen() -> bool:
        return bool((await agent_of(console, admin, inst["id"])).get("lastHeartbeatAt"))

    assert await eventually(heartbeat_seen, 5.0)
    clock.advance(60)
    assert await console.rt.loops.run_once("heartbeat-loss") == 0  # 60 s < 90 s threshold
    clock.advance(40)
    assert await console.rt.loops.run_once("heartbeat-loss") == 1
    body = await get_instance(console, admin, inst["id"])
    assert body["status"] == "UNREACHABLE" and body["agent"]["heartbeatLost"] is True
    assert "HEARTBEAT_LOST" in await event_types(console, inst["id"])
    await ws.send(d_heartbeat(uptime=100))

    async def recovered() -> dict[str, Any] | None:
        b = await get_instance(console, admin, inst["id"])
        return b if b["status"] == "RUNNING" else None

    body = await eventually(recovered, 2.0)
    assert body and body["agent"]["heartbeatLost"] is False
    async with console.rt.db.read() as s:
        ev = await s.scalar(select(InstanceEvent).where(InstanceEvent.instance_id == inst["id"],
                                                        InstanceEvent.type == "HEARTBEAT_RECOVERED"))
    assert ev is not None and ev.metadata_["downtimeSeconds"] >= 0
    await ws.close(1012)
