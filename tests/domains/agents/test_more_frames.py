"""40 §3.2 held frames, §3.3 mimir aliases, §4.2 heartbeat processes, §4.9 registration frames, identity mismatches."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import select
from tests.domains.agents.helpers import (
    TERMFIX,
    agent_of,
    d_heartbeat,
    eventually,
    fixture_frame,
    get_instance,
    register_fixture,
)

from sindri_console.models.agent import AgentConnection, AgentState
from sindri_console.models.agent_reports import AgentReport
from sindri_console.models.llm_usage import LlmUsage


async def test_registration_frame_updates_agent_fields_only(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    ws = await server.connect(console.bootstrap_key)
    await ws.send(d_heartbeat())
    await ws.send(json.dumps({"protocol_version": "", "type": "registration", "payload": {
        "instance_id": "cm0000000000000000000001", "name": "renamed-by-agent", "provider": "k8s", "region": "eu-1",
        "agent_version": "1.2.0", "os": "linux", "arch": "arm64", "tags": {"env": "prod"}}}))

    async def updated() -> dict[str, Any] | None:
        body = await get_instance(console, admin, inst["id"])
        return body if (body.get("agent") or {}).get("arch") == "arm64" else None

    body = await eventually(updated, 5.0)
    assert body is not None
    assert body["name"] == inst["name"]  # never renamed by a frame
    assert (body["provider"], body["region"], body["tags"]) == ("kubernetes", "eu-1", {"env": "prod"})
    assert body["agent"]["version"] == "1.2.0"
    await ws.close(1012)


async def test_mimir_aliases_heartbeat_processes_and_mismatch(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    ws = await server.connect(console.bootstrap_key, headers={"X-Instance-ID": inst["id"]})
    await ws.send(json.dumps({"protocolVersion": "1.0", "channel": "heartbeat", "type": "heartbeat:ping",
                              "ts": int(time.time() * 1000), "instanceId": "someone-else",
                              "data": {"instance_id": "someone-else", "uptime": 42, "memoryUsed": 5,
                                       "memoryTotal": 10,
                                       "processes": [{"pid": 7, "name": "sshd", "cpuPercent": 1.5}]}}))

    async def seen() -> dict[str, Any] | None:
        agent = await agent_of(console, admin, inst["id"])
        return agent if agent.get("uptimeSeconds") == 42 else None

    agent = await eventually(seen, 5.0)
    assert agent is not None and agent["dialect"] == "mimir" and agent["name"] is None
    body = await get_instance(console, admin, inst["id"])
    assert body["lastHeartbeat"]["memoryUsedBytes"] == 5 and body["lastHeartbeat"]["memoryTotalBytes"] == 10

    async def report() -> AgentReport | None:
        async with console.rt.db.read() as s:
            return await s.get(AgentReport, (inst["id"], "processes"))

    rep = await eventually(report, 5.0)
    assert rep is not None and rep.source == "heartbeat" and rep.payload["processes"][0]["name"] == "sshd"
    await ws.close(1012)

    async def closed() -> AgentConnection | None:
        async with console.rt.db.read() as s:
            row = await s.scalar(select(AgentConnection).where(AgentConnection.instance_id == inst["id"]))
            return row if row is not None and row.disconnected_at is not None else None

    row = await eventually(closed, 5.0)
    assert row is not None and row.identity_mismatches == 1 and row.frames_in == 1 and row.close_code == 1012


async def test_held_frames_are_bounded(server: Any, admin: str) -> None:
    """More than 32 frames before identification: the oldest are dropped and counted."""
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    ws = await server.connect(console.bootstrap_key)
    batch = fixture_frame(TERMFIX, 32)["frame"]
    now_ms = int(time.time() * 1000)
    for i in range(40):
        frame = json.loads(json.dumps(batch))
        frame["payload"]["records"] = [{**frame["payload"]["records"][0], "ts": now_ms - 10_000 + i}]
        await ws.send(json.dumps(frame))
    await ws.send(d_heartbeat())

    async def stored() -> list[LlmUsage] | None:
        async with console.rt.db.read() as s:
            rows = list(await s.scalars(select(LlmUsage).where(LlmUsage.instance_id == inst["id"])))
        return rows if len(rows) >= 32 else None

    rows = await eventually(stored, 5.0)
    assert rows is not None and len(rows) == 32
    assert min(int(r.ts.timestamp() * 1000) for r in rows) == now_ms - 10_000 + 8  # the 8 oldest were dropped

    async def dropped() -> int:
        async with console.rt.db.read() as s:
            st = await s.get(AgentState, inst["id"])
            return st.frames_dropped if st else 0

    await ws.send(d_heartbeat(uptime=3))
    assert await eventually(dropped, 5.0) == 8
    await ws.close(1012)
