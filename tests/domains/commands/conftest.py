"""Fixtures of the command tests: a fake agent connection that records frames, and agent states."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from sindri_console.domains.commands import pipeline
from sindri_console.kit.clock import utcnow
from sindri_console.kit.ids import new_id
from sindri_console.models.agent import AgentState

VAULT_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
CONSOLE_CAPS = ["heartbeat", "metrics", "commands", "scripts"]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"SECRET_VAULT_KEY": VAULT_KEY}


@dataclass
class FakeConn:
    """An AgentConn that records what the server writes; `closed` makes writes fail like a dead socket."""

    instance_id: str
    connection_id: str = field(default_factory=new_id)
    dialect: str | None = "console"
    capabilities: list[str] = field(default_factory=lambda: list(CONSOLE_CAPS))
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    @property
    def is_console(self) -> bool:
        return self.dialect == "console"

    async def send_frame(self, type_: str, data: dict[str, Any], *, frame_id: str | None = None,
                         reply_to: str | None = None) -> None:
        if self.closed:
            raise ConnectionError("socket closed")
        if type_ in ("ack", "error"):
            self.replies.append({"type": type_, "data": data, "replyTo": reply_to})
        else:
            self.sent.append((type_, data))

    def frames(self, type_: str) -> list[dict[str, Any]]:
        return [d for t, d in self.sent if t == type_]


async def agent_frame(rt: Any, conn: FakeConn, type_: str, data: dict[str, Any],
                      frame_id: str | None) -> dict[str, Any] | None:
    """Feed one agent frame to the pipeline as the socket does; wait for its commit; return the reply
    (the returned frame, or the one written on the connection after the commit)."""
    before = len(conn.replies)
    reply = await pipeline.on_agent_frame(rt, conn, type_, data, frame_id)
    await pipeline.settle(rt)
    if reply is not None:
        return reply
    new = conn.replies[before:]
    return {"type": new[-1]["type"], "data": new[-1]["data"]} if new else None


class FakeHub:
    """Stands in for the agent socket registry `rt.services["agents"]`."""

    def __init__(self) -> None:
        self.conns: dict[str, FakeConn] = {}

    def local(self, instance_id: str) -> FakeConn | None:
        return self.conns.get(instance_id)


async def set_agent(console: Any, instance_id: str, *, capabilities: list[str] | None = None,
                    connected: bool = True, dialect: str = "console", version: str = "0.1.0") -> None:
    now = utcnow()
    caps = CONSOLE_CAPS if capabilities is None else capabilities
    async with console.rt.db.write() as s:
        state = await s.get(AgentState, instance_id)
        if state is None:
            state = AgentState(instance_id=instance_id, updated_at=now)
            s.add(state)
        state.capabilities = list(caps)
        state.connected = connected
        state.dialect = dialect
        state.agent_version = version
        state.replica_id = console.rt.replica_id if connected else None
        state.updated_at = now


async def connect_fake(console: Any, instance_id: str, **kw: Any) -> FakeConn:
    """A console agent connected on this replica (agent state + the hub entry)."""
    hub = console.rt.services.get("agents")
    if not isinstance(hub, FakeHub):
        hub = FakeHub()
        console.rt.services["agents"] = hub
    conn = FakeConn(instance_id, **kw)
    hub.conns[instance_id] = conn
    await set_agent(console, instance_id, capabilities=conn.capabilities, dialect=conn.dialect or "console")
    return conn


def disconnect_fake(console: Any, instance_id: str) -> None:
    hub = console.rt.services.get("agents")
    if isinstance(hub, FakeHub):
        conn = hub.conns.pop(instance_id, None)
        if conn is not None:
            conn.closed = True
