"""§17.6 88-92 with AGENT_HEARTBEAT_LOSS_SECONDS=3 (the clock is moved instead of waiting)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.domains.agents.helpers import (
    TERMFIX,
    agent_of,
    c_msg,
    d_heartbeat,
    eventually,
    get_instance,
    hello,
    now_iso_ns,
    recv_type,
    register_fixture,
)

from sindri_console.kit.clock import clock


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"AGENT_HEARTBEAT_LOSS_SECONDS": 3}


async def status(console: Any, admin: str, iid: str) -> str:
    return (await get_instance(console, admin, iid))["status"]  # type: ignore[no-any-return]


async def test_d_agent_lost_after_threshold(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    ws = await server.connect(console.bootstrap_key)
    await ws.send(d_heartbeat())

    async def seen() -> bool:
        return bool((await agent_of(console, admin, inst["id"])).get("lastHeartbeatAt"))

    assert await eventually(seen, 2.0)
    clock.advance(2)
    await console.rt.loops.run_once("heartbeat-loss")
    assert await status(console, admin, inst["id"]) == "RUNNING"
    clock.advance(4)
    await console.rt.loops.run_once("heartbeat-loss")
    assert await status(console, admin, inst["id"]) == "UNREACHABLE"
    await ws.close(1012)


async def test_hello_interval_sets_threshold_and_user_instances_unmonitored(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    user_only = await console.register(admin, "no-agent-here")
    ws = await server.connect(console.bootstrap_key)
    await ws.send(hello(inst["id"], intervals={"heartbeatSeconds": 10}))
    await recv_type(ws, "welcome")
    await ws.send(c_msg("heartbeat", {"timestamp": now_iso_ns(), "uptimeSeconds": 1}, "h1"))
    await recv_type(ws, "ack")
    clock.advance(6)
    await console.rt.loops.run_once("heartbeat-loss")
    assert await status(console, admin, inst["id"]) == "RUNNING"  # threshold max(3, 3 × 10) = 30 s
    assert await status(console, admin, user_only["id"]) == "RUNNING"  # never had agent contact
    clock.advance(30)
    await console.rt.loops.run_once("heartbeat-loss")
    assert await status(console, admin, inst["id"]) == "UNREACHABLE"
    assert await status(console, admin, user_only["id"]) == "RUNNING"
    await ws.close(1012)
