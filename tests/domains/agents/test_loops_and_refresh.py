"""Replica reaper, agent retention (40 §13) and `refresh=true` report requests (10-core §9.7-§9.8, 40 §5.3)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from tests.domains.agents.helpers import (
    TERMFIX,
    c_msg,
    d_heartbeat,
    eventually,
    hello,
    now_iso_ns,
    recv_type,
    register_fixture,
)

from sindri_console.kit.clock import utcnow
from sindri_console.kit.ids import new_id
from sindri_console.models.agent import AgentConnection, AgentState
from sindri_console.models.agent_reports import AgentFrameReceipt
from sindri_console.models.instance import InstanceEvent
from sindri_console.models.lease import Replica


async def test_replica_reaper_closes_connections_of_a_dead_replica(console: Any, admin: str) -> None:
    inst = await console.register(admin, "orphaned")
    now = utcnow()
    dead, conn_id = new_id(), new_id()
    async with console.rt.db.write() as s:
        s.add(Replica(id=dead, started_at=now - timedelta(hours=1), heartbeat_at=now - timedelta(seconds=90),
                      hostname="gone", pid=1))
        s.add(AgentConnection(id=conn_id, instance_id=inst["id"], replica_id=dead, credential="bootstrap",
                              capabilities=[], connected_at=now - timedelta(minutes=5),
                              identified_at=now - timedelta(minutes=5)))
        s.add(AgentState(instance_id=inst["id"], capabilities=[], connected=True, connection_id=conn_id,
                         replica_id=dead, heartbeat_lost=False, frames_dropped=0, updated_at=now))
    assert await console.rt.loops.run_once("replica-reaper") == 1
    async with console.rt.db.read() as s:
        row = await s.get(AgentConnection, conn_id)
        state = await s.get(AgentState, inst["id"])
        ev = await s.scalar(select(InstanceEvent).where(InstanceEvent.instance_id == inst["id"],
                                                        InstanceEvent.type == "DISCONNECT"))
    assert row is not None and row.close_code == 1006 and row.close_reason == "replica lost"
    assert row.disconnected_at is not None
    assert state is not None and state.connected is False
    assert ev is not None and ev.metadata_["closeCode"] == 1006
    assert await console.rt.loops.run_once("replica-reaper") == 0  # nothing left to close


async def test_retention_deletes_old_receipts_and_connections(console: Any, admin: str) -> None:
    inst = await console.register(admin, "retained")
    now = utcnow()
    async with console.rt.db.write() as s:
        s.add(AgentFrameReceipt(instance_id=inst["id"], frame_id="old", received_at=now - timedelta(hours=25)))
        s.add(AgentFrameReceipt(instance_id=inst["id"], frame_id="new", received_at=now - timedelta(hours=1)))
        for age_days, cid in ((31, "c-old"), (2, "c-new")):
            s.add(AgentConnection(id=cid, instance_id=inst["id"], replica_id="r", credential="bootstrap",
                                  capabilities=[], connected_at=now - timedelta(days=age_days + 1),
                                  identified_at=now - timedelta(days=age_days + 1),
                                  disconnected_at=now - timedelta(days=age_days)))
    assert await console.rt.loops.run_once("agent-retention") == (1, 1)
    async with console.rt.db.read() as s:
        receipts = list(await s.scalars(select(AgentFrameReceipt.frame_id)))
        conns = list(await s.scalars(select(AgentConnection.id)))
    assert receipts == ["new"] and conns == ["c-new"]


async def test_processes_refresh_round_trip(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    iid = inst["id"]
    r = await console.client.get(f"/api/v1/instances/{iid}/processes?refresh=true", headers=console.auth(admin))
    assert r.status_code == 503 and r.json()["message"] == "Agent is offline for this instance"
    ws = await server.connect(console.bootstrap_key)
    await ws.send(hello(iid))
    await recv_type(ws, "welcome")

    async def answer() -> None:
        req = await recv_type(ws, "report:request", 5)
        assert req["data"]["kinds"] == ["processes"]
        await ws.send(c_msg("processes:report", {"timestamp": now_iso_ns(), "totalCount": 1,
                                                 "requestId": req["data"]["requestId"],
                                                 "processes": [{"pid": 1, "name": "init", "cpuPercent": 0.1}]},
                            "rr1"))

    agent_task = asyncio.create_task(answer())
    r = await console.client.get(f"/api/v1/instances/{iid}/processes?refresh=true", headers=console.auth(admin))
    await agent_task
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["refreshed"] is True and body["dataAvailable"] is True and body["data"][0]["name"] == "init"
    r = await console.client.get(f"/api/v1/instances/{iid}/processes?sort=bogus", headers=console.auth(admin))
    assert r.status_code == 422
    r = await console.client.get(f"/api/v1/instances/{iid}/processes?limit=0", headers=console.auth(admin))
    assert r.status_code == 422
    await ws.close(1012)


async def test_refresh_refused_for_draupnir(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    ws = await server.connect(console.bootstrap_key)
    await ws.send(d_heartbeat())

    async def connected() -> bool:
        async with console.rt.db.read() as s:
            st = await s.get(AgentState, inst["id"])
            return bool(st and st.connected and st.dialect)

    assert await eventually(connected, 5.0)
    r = await console.client.get(f"/api/v1/instances/{inst['id']}/extensions?refresh=true",
                                 headers=console.auth(admin))
    assert r.status_code == 409 and "does not report extensions" in r.json()["message"]
    r = await console.client.get(f"/api/v1/instances/{inst['id']}/extensions", headers=console.auth(admin))
    body = r.json()
    assert r.status_code == 200 and body["dataAvailable"] is False and body["reportedAt"] is None
    async with console.rt.db.read() as s:
        n = await s.scalar(select(func.count()).select_from(AgentConnection))
    assert n == 1
    await ws.close(1012)


async def test_concurrent_identity_resolutions_share_reads(console: Any, admin: str, monkeypatch: Any) -> None:
    from sindri_console.domains.instances import repository as instances_repo

    hub = console.rt.services["agents"]
    made = [await console.register(admin, f"storm-{i}") for i in range(30)]
    calls: list[int] = []
    real = instances_repo.resolve_identities

    async def counting(session: Any, values: list[str]) -> dict[str, str]:
        calls.append(len(values))
        return await real(session, values)

    monkeypatch.setattr(instances_repo, "resolve_identities", counting)
    names = [m["name"] for m in made] + [made[0]["id"], "nobody-here"]
    found = await asyncio.gather(*(hub.resolve(n) for n in names))
    assert found == [m["id"] for m in made] + [made[0]["id"], None]
    # the first call reads alone; everything queued behind it shares the next read
    assert len(calls) <= 2 and sum(calls) == len(names)
