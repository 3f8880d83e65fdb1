"""40 §3.1-§3.2, §17.2: handshake, authentication and identification over a real WebSocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tests.domains.agents.helpers import (
    TERMFIX,
    close_code,
    d_heartbeat,
    eventually,
    fixture_frame,
    get_instance,
    no_frame,
    register_fixture,
)


async def instance(console: Any, admin: str, iid: str) -> dict[str, Any]:
    return await get_instance(console, admin, iid)


async def test_no_credentials_4401(server: Any) -> None:
    ws = await server.connect()
    assert await close_code(ws) == 4401


async def test_wrong_key_4401(server: Any) -> None:
    ws = await server.connect("wrong")
    assert await close_code(ws) == 4401


async def test_user_key_4403(server: Any, admin: str) -> None:
    ws = await server.connect(admin)
    assert await close_code(ws) == 4403


async def test_query_string_key_ignored(server: Any) -> None:
    ws = await server.connect(path=f"/ws/agent?apiKey={server.console.bootstrap_key}")
    assert await close_code(ws) == 4401


async def test_unknown_instance_header_4404(server: Any) -> None:
    ws = await server.connect(server.console.bootstrap_key, headers={"X-Instance-ID": "nope"})
    assert await close_code(ws) == 4404


async def test_header_identifies_and_sends_nothing(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console)
    ws = await server.connect(console.bootstrap_key, headers={"X-Instance-ID": inst["id"]})

    async def connected() -> bool:
        return ((await instance(console, admin, inst["id"])).get("agent") or {}).get("connected")

    assert await eventually(connected, 1.0)
    assert await no_frame(ws, 1.0)
    await ws.close()


async def test_header_with_agent_identity(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console)
    ws = await server.connect(console.bootstrap_key, headers={"X-Instance-ID": "cm0000000000000000000001"})

    async def connected() -> bool:
        return ((await instance(console, admin, inst["id"])).get("agent") or {}).get("connected")

    assert await eventually(connected, 1.0)
    await ws.close()


async def test_bound_key_other_instance_4403_and_own_instance(server: Any, admin: str) -> None:
    console = server.console
    a = await console.register(admin, "inst-a", issueAgentKey=True)
    b = await console.register(admin, "inst-b")
    ws = await server.connect(a["agentKey"], headers={"X-Instance-ID": b["id"]})
    assert await close_code(ws) == 4403
    ws = await server.connect(a["agentKey"])

    async def connected() -> bool:
        return ((await instance(console, admin, a["id"])).get("agent") or {}).get("connected")

    assert await eventually(connected, 1.0)
    await ws.close()


async def test_d_heartbeat_identifies_as_draupnir(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console)
    ws = await server.connect(console.bootstrap_key)
    await ws.send(d_heartbeat())

    async def identified() -> dict[str, Any] | None:
        body = await instance(console, admin, inst["id"])
        agent = body.get("agent") or {}
        return body if agent.get("connected") and agent.get("lastHeartbeatAt") else None

    body = await eventually(identified, 2.0)
    assert body, "heartbeat not applied"
    agent = body["agent"]
    assert agent["dialect"] == "draupnir"
    assert agent["capabilities"] == ["heartbeat", "metrics", "terminal", "llm_usage"]
    assert agent["protocolVersion"] is None
    assert agent["uptimeSeconds"] == 2
    hb = body["lastHeartbeat"]
    assert hb["agentUptimeSeconds"] == 2
    assert hb["cpuPercent"] is None and hb["memoryUsedBytes"] is None and hb["diskUsedBytes"] is None
    assert await no_frame(ws, 1.0)  # §17.2 42: nothing is answered to a D heartbeat
    await ws.close()


async def test_d_heartbeat_unknown_identity_4404(server: Any) -> None:
    await register_fixture(server.console)
    ws = await server.connect(server.console.bootstrap_key)
    await ws.send(d_heartbeat("does-not-exist"))
    assert await close_code(ws) == 4404


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"AGENT_IDENTIFY_TIMEOUT_SECONDS": 3}


async def test_identify_timeout_4408(server: Any) -> None:
    ws = await server.connect(server.console.bootstrap_key)
    started = asyncio.get_running_loop().time()
    assert await close_code(ws, 8) == 4408
    assert 2.5 <= asyncio.get_running_loop().time() - started <= 5.5


async def test_llm_batch_held_until_heartbeat(server: Any, admin: str) -> None:
    from sqlalchemy import select

    from sindri_console.models.llm_usage import LlmUsage

    console = server.console
    inst = await register_fixture(console, TERMFIX)
    ws = await server.connect(console.bootstrap_key)
    batch = fixture_frame(TERMFIX, 32)["frame"]
    now_ms = int(asyncio.get_running_loop().time() * 0) or __import__("time").time_ns() // 1_000_000
    for i, rec in enumerate(batch["payload"]["records"]):
        rec["ts"] = now_ms - 1000 + i
    await ws.send(json.dumps(batch))
    await ws.send(d_heartbeat())

    async def rows() -> list[Any]:
        async with console.rt.db.read() as s:
            return list(await s.scalars(select(LlmUsage).where(LlmUsage.instance_id == inst["id"])))

    got = await eventually(rows, 3.0)
    assert len(got) == 2
    by_model = {r.model: r for r in got}
    assert by_model["gpt-4o"].input_tokens == 100 and by_model["gpt-4o"].output_tokens == 50
    assert by_model["gpt-4o"].reported_cost_micros == 750 and by_model["gpt-4o"].capture_tier == "proxy"
    assert by_model["claude-sonnet-4-20250514"].cache_read_tokens == 200
    # the same batch again: still two records
    await ws.send(json.dumps(batch))
    await asyncio.sleep(0.5)
    assert len(await rows()) == 2
    await ws.close()


async def test_bad_frames_keep_socket_open(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console)
    ws = await server.connect(console.bootstrap_key)
    await ws.send("not json")
    await ws.send(json.dumps({"protocol_version": "", "type": "bogus", "payload": {}}))
    await ws.send(d_heartbeat())

    async def hb() -> Any:
        return (await instance(console, admin, inst["id"]))["lastHeartbeat"]

    assert await eventually(hb, 2.0)
    await ws.send("[1,2]")
    await ws.send('{"type": 5}')
    await ws.send('{"protocol_version":"","type":"heartbeat","payload":{"uptime_seconds": NaN}}')
    assert await no_frame(ws, 0.5)
    await ws.send(d_heartbeat(uptime=5))

    async def hb5() -> bool:
        return ((await instance(console, admin, inst["id"])).get("agent") or {}).get("uptimeSeconds") == 5

    assert await eventually(hb5, 2.0)
    await ws.close()


async def test_binary_frame_1003(server: Any) -> None:
    await register_fixture(server.console)
    ws = await server.connect(server.console.bootstrap_key)
    await ws.send(d_heartbeat())
    await ws.send(b"\x00\x01")
    assert await close_code(ws) == 1003


async def test_frame_too_large_1009(server: Any) -> None:
    await register_fixture(server.console)
    ws = await server.connect(server.console.bootstrap_key)
    await ws.send(d_heartbeat())
    await ws.send("x" * (9 * 1024 * 1024))
    assert await close_code(ws) == 1009
