"""Commands over a real `/ws/agent` socket with C and D test doubles (40 §17.5, checks 72-86), and
across two replicas sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from tests.e2e.server import Server, fresh_database, start_server

AGENT_KEY = "e2e-commands-agent-key-0123456789abcdef"
TIMERS = {  # the (T) settings of 40 §17
    "SINDRI_CONSOLE_API_KEY": AGENT_KEY, "COMMAND_QUEUE_TTL_SECONDS": "5", "COMMAND_SWEEP_SECONDS": "1",
    "COMMAND_RESULT_GRACE_SECONDS": "2", "AGENT_IDENTIFY_TIMEOUT_SECONDS": "3",
}
C_CAPS = ["heartbeat", "metrics", "commands"]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class Double:
    """A test agent on /ws/agent. C: starts with `hello`; D: draupnir frames, no X-Instance-ID."""

    def __init__(self, ws: Any, dialect: str) -> None:
        self.ws = ws
        self.dialect = dialect
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seq = 0
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                self.inbox.put_nowait(json.loads(raw))

    async def send(self, type_: str, data: dict[str, Any], *, with_id: bool = True) -> str:
        self.seq += 1
        frame_id = f"f{self.seq}-{time.monotonic_ns()}"
        frame: dict[str, Any] = {"protocolVersion": "1.0", "type": type_, "ts": _now(), "data": data}
        if with_id:
            frame["id"] = frame_id
        await self.ws.send(json.dumps(frame))
        return frame_id

    async def expect(self, type_: str, within: float = 5, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {type_} {match} within {within}s")
            frame = await asyncio.wait_for(self.inbox.get(), left)
            data = frame.get("data", frame.get("payload")) or {}
            if frame["type"] == type_ and all(data.get(k) == v for k, v in match.items()):
                return data  # type: ignore[no-any-return]

    async def reply(self, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        """Send a frame with an id and return the server's ack/error for it."""
        fid = await self.send(type_, data)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            frame = await asyncio.wait_for(self.inbox.get(), deadline - time.monotonic())
            d = frame.get("data") or {}
            if frame["type"] in ("ack", "error") and (d.get("id") == fid or d.get("refId") == fid
                                                      or frame.get("replyTo") == fid):
                return frame
        raise AssertionError(f"no reply to {type_}")

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/ws/agent"


async def connect_c(server: Server, instance_id: str, caps: list[str] | None = None,
                    in_flight: list[str] | None = None) -> Double:
    ws = await websockets.connect(_ws_url(server), additional_headers={
        "Authorization": f"Bearer {AGENT_KEY}", "X-Instance-ID": instance_id}, subprotocols=["sindri-agent.v1"])
    double = Double(ws, "console")
    await double.send("hello", {
        "instanceId": instance_id, "agentInstanceId": instance_id, "agentName": "sindri-console-agent",
        "agentVersion": "0.1.0-test", "protocolVersion": "1.0", "capabilities": caps or C_CAPS,
        "inFlightCommands": in_flight or [],
    }, with_id=False)
    await double.expect("welcome")
    return double


async def connect_d(server: Server, identity: str) -> Double:
    ws = await websockets.connect(_ws_url(server), additional_headers={"Authorization": f"Bearer {AGENT_KEY}"})
    double = Double(ws, "draupnir")
    await ws.send(json.dumps({"protocol_version": "", "type": "heartbeat", "payload": {
        "instance_id": identity, "timestamp": _now(), "uptime_seconds": 2}}))
    return double


class Api:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.client = httpx.AsyncClient(base_url=server.url, timeout=30,
                                        headers={"Authorization": f"Bearer {server.admin_key}"})

    async def register(self, identity: str) -> str:
        r = await self.client.post("/api/v1/instances", headers={"Authorization": f"Bearer {AGENT_KEY}"}, json={
            "instance_id": identity, "hostname": identity, "provider": "docker", "region": "local",
            "agent_version": "1.1.0-debian", "os": "linux", "arch": "amd64", "timestamp": _now()})
        assert r.status_code in (200, 201), r.text
        return r.json()["id"]  # type: ignore[no-any-return]

    async def command(self, body: dict[str, Any], path: str = "/api/v1/commands") -> httpx.Response:
        return await self.client.post(path, json=body)

    async def get(self, command_id: str) -> dict[str, Any]:
        return (await self.client.get(f"/api/v1/commands/{command_id}")).json()  # type: ignore[no-any-return]

    async def until(self, command_id: str, status: str, within: float) -> dict[str, Any]:
        deadline = time.monotonic() + within
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = await self.get(command_id)
            if doc.get("status") == status:
                return doc
            await asyncio.sleep(0.1)
        raise AssertionError(f"{command_id} not {status} within {within}s: {doc.get('status')}")

    async def agent_connected(self, instance_id: str, connected: bool, within: float = 10) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            doc = (await self.client.get(f"/api/v1/instances/{instance_id}")).json()
            if doc.get("agent") and doc["agent"].get("connected") is connected:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"agent of {instance_id} connected != {connected}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    # synchronous: creating a PostgreSQL database runs its own event loop
    with fresh_database(tmp_path) as db:
        srv = start_server(tmp_path, db, extra_env=TIMERS)
        try:
            yield srv
        finally:
            srv.stop()


@pytest.fixture
async def api(server: Server) -> AsyncIterator[Api]:
    a = Api(server)
    try:
        yield a
    finally:
        await a.client.aclose()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    with fresh_database(tmp_path) as db:
        a = start_server(tmp_path, db, extra_env=TIMERS)
        b = start_server(tmp_path, db, extra_env=TIMERS, expect_admin_key=False)
        b.admin_key = a.admin_key
        try:
            yield a, b
        finally:
            b.stop()
            a.stop()


async def test_gate_for_legacy_and_absent_agents(api: Api) -> None:
    d_id = await api.register("draupnir-1")
    d = await connect_d(api.server, "draupnir-1")
    await api.agent_connected(d_id, True)
    t0 = time.monotonic()
    r = await api.command({"instanceId": d_id, "command": "ls"})
    assert r.status_code == 409 and time.monotonic() - t0 < 1  # check 72
    assert "does not support commands" in r.json()["message"]
    hist = (await api.client.get("/api/v1/commands/history", params={"instanceId": d_id})).json()
    assert hist["pagination"]["total"] == 0
    await d.close()
    await api.agent_connected(d_id, False)
    r = await api.command({"instanceId": d_id, "command": "ls"})
    assert r.status_code == 409  # check 73
    never = await api.register("never-connected")
    r = await api.command({"instanceId": never, "command": "ls"})
    assert r.status_code == 503  # check 74


async def test_dispatch_ack_results_and_refusals(api: Api) -> None:
    iid = await api.register("c-double-1")
    c = await connect_c(api.server, iid)
    r = await api.command({"instanceId": iid, "command": "echo", "args": ["hi"], "wait": False})
    assert r.status_code == 202, r.text
    cid = r.json()["id"]
    frame = await c.expect("command:dispatch", commandId=cid)  # check 75
    assert frame["kind"] == "exec" and frame["command"] == "echo" and frame["args"] == ["hi"]
    assert frame["timeoutMs"] == 30000 and frame["outputLimitBytes"] == 1_048_576 and frame["expiresAt"]
    assert (await api.get(cid))["status"] == "SENT"
    ack = await c.reply("command:ack", {"commandId": cid, "accepted": True, "pid": 7, "startedAt": _now()})
    assert ack["type"] == "ack"
    assert (await api.get(cid))["status"] == "RUNNING"  # check 76
    res = await c.reply("command:result", {"commandId": cid, "exitCode": 0, "stdout": "hi\n", "stderr": "",
                                           "stdoutBytes": 3, "stderrBytes": 0, "durationMs": 4})
    assert res["type"] == "ack"
    done = await api.get(cid)
    assert done["status"] == "SUCCEEDED" and done["stdout"] == "hi\n"
    # check 84: a second result is a duplicate and changes nothing
    dup = await c.reply("command:result", {"commandId": cid, "exitCode": 9, "stdout": "changed"})
    assert dup["type"] == "ack" and dup["data"].get("duplicate") is True
    assert (await api.get(cid))["stdout"] == "hi\n"

    outcomes = [({"exitCode": 2}, "FAILED"), ({"exitCode": None, "timedOut": True}, "TIMED_OUT"),
                ({"exitCode": None, "cancelled": True}, "CANCELLED")]
    for extra, status in outcomes:  # check 77
        cid = (await api.command({"instanceId": iid, "command": "x", "wait": False})).json()["id"]
        await c.expect("command:dispatch", commandId=cid)
        await c.reply("command:result", {"commandId": cid, **extra})
        assert (await api.get(cid))["status"] == status
    cid = (await api.command({"instanceId": iid, "command": "x", "workingDir": "/nope", "wait": False})).json()["id"]
    await c.expect("command:dispatch", commandId=cid)
    await c.reply("command:ack", {"commandId": cid, "accepted": False, "code": "BAD_WORKDIR",
                                  "message": "Working directory '/nope' does not exist"})
    doc = await api.get(cid)
    assert doc["status"] == "FAILED" and doc["errorCode"] == "BAD_WORKDIR" and "/nope" in doc["error"]
    await c.close()


async def test_wait_answers_201_when_the_double_replies(api: Api) -> None:
    iid = await api.register("c-double-wait")
    c = await connect_c(api.server, iid)

    async def answer() -> None:
        d = await c.expect("command:dispatch")
        await c.send("command:ack", {"commandId": d["commandId"], "accepted": True})
        await c.send("command:result", {"commandId": d["commandId"], "exitCode": 0, "stdout": "ok"})

    task = asyncio.create_task(answer())
    r = await api.command({"instanceId": iid, "command": "true"})
    await task
    assert r.status_code == 201 and r.json()["status"] == "SUCCEEDED" and r.json()["stdout"] == "ok"
    await c.close()


async def test_offline_queue_and_reconnect_rules(api: Api) -> None:
    iid = await api.register("c-double-2")
    c = await connect_c(api.server, iid)
    await c.close()
    await api.agent_connected(iid, False)
    queued = (await api.command({"instanceId": iid, "command": "later"})).json()
    assert queued["status"] == "QUEUED"  # check 78: no wait for an offline agent
    c = await connect_c(api.server, iid)
    await c.expect("command:dispatch", within=1, commandId=queued["id"])
    assert (await api.get(queued["id"]))["status"] == "SENT"
    # check 79: SENT, reconnect with nothing in flight -> the same id again
    await c.close()
    c = await connect_c(api.server, iid, in_flight=[])
    await c.expect("command:dispatch", within=2, commandId=queued["id"])
    # check 80: RUNNING, reconnect without it -> FAILED (agent restarted)
    await c.reply("command:ack", {"commandId": queued["id"], "accepted": True})
    await c.close()
    c = await connect_c(api.server, iid, in_flight=[])
    failed = await api.until(queued["id"], "FAILED", 5)
    assert failed["errorCode"] == "AGENT_RESTARTED" and "restarted" in failed["error"]
    # check 81: RUNNING, reconnect with it in flight -> stays RUNNING, later result accepted
    kept = (await api.command({"instanceId": iid, "command": "long", "wait": False})).json()["id"]
    await c.expect("command:dispatch", commandId=kept)
    await c.reply("command:ack", {"commandId": kept, "accepted": True})
    await c.close()
    c = await connect_c(api.server, iid, in_flight=[kept])
    await asyncio.sleep(0.5)
    assert (await api.get(kept))["status"] == "RUNNING"
    await c.reply("command:result", {"commandId": kept, "exitCode": 0})
    assert (await api.get(kept))["status"] == "SUCCEEDED"
    await c.close()


async def test_deadlines(api: Api) -> None:
    iid = await api.register("c-double-3")
    c = await connect_c(api.server, iid)
    await c.close()
    await api.agent_connected(iid, False)
    t0 = time.monotonic()
    queued = (await api.command({"instanceId": iid, "command": "never", "queueTtlSec": 10})).json()
    expired = await api.until(queued["id"], "TIMED_OUT", 15)  # check 82 (the route's minimum TTL is 10 s)
    assert expired["errorCode"] == "EXPIRED" and time.monotonic() - t0 < 13
    default_ttl = (await api.command({"instanceId": iid, "command": "never"})).json()
    expired = await api.until(default_ttl["id"], "TIMED_OUT", 7)  # COMMAND_QUEUE_TTL_SECONDS=5
    assert expired["errorCode"] == "EXPIRED"
    c = await connect_c(api.server, iid)
    cid = (await api.command({"instanceId": iid, "command": "hang", "timeoutMs": 1000, "wait": False})).json()["id"]
    await c.expect("command:dispatch", commandId=cid)
    await c.reply("command:ack", {"commandId": cid, "accepted": True})
    t0 = time.monotonic()
    cancel = await c.expect("command:cancel", within=6, commandId=cid)  # check 83
    assert time.monotonic() - t0 < 5 and cancel["reason"]
    assert (await api.get(cid))["errorCode"] == "NO_RESULT"
    await c.close()


async def test_foreign_results_and_scripts(api: Api) -> None:
    x = await api.register("c-double-x")
    y = await api.register("c-double-y")
    cx = await connect_c(api.server, x)
    cy = await connect_c(api.server, y, caps=["heartbeat", "commands", "scripts"])
    cid = (await api.command({"instanceId": y, "command": "mine", "wait": False})).json()["id"]
    await cy.expect("command:dispatch", commandId=cid)
    err = await cx.reply("command:result", {"commandId": cid, "exitCode": 0, "stdout": "hijack"})
    assert err["type"] == "error" and err["data"]["code"] == "UNKNOWN_COMMAND"  # check 85
    assert (await api.get(cid))["status"] == "SENT"
    r = await api.command({"instanceIds": [x, y], "script": "echo hi", "interpreter": "bash", "wait": False},
                          "/api/v1/commands/script")
    assert r.status_code == 207
    refused, ok = r.json()["results"]  # check 86
    assert refused["error"]["code"] == "UNSUPPORTED" and refused["error"]["statusCode"] == 409
    frame = await cy.expect("command:dispatch", commandId=ok["execution"]["id"])
    assert frame["kind"] == "script" and frame["script"] == {"interpreter": "bash", "content": "echo hi"}
    await cx.close()
    await cy.close()


@pytest.mark.skipif(not (os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql")
                         and os.environ.get("TEST_REDIS_URL")), reason="needs PostgreSQL and Redis")
async def test_command_created_on_replica_b_reaches_agent_on_replica_a(replicas: tuple[Server, Server]) -> None:
    a, b = replicas
    api_a, api_b = Api(a), Api(b)
    try:
        iid = await api_a.register("c-double-replicas")
        c = await connect_c(a, iid)

        async def answer() -> None:
            d = await c.expect("command:dispatch", within=10)
            await c.send("command:ack", {"commandId": d["commandId"], "accepted": True})
            await c.send("command:result", {"commandId": d["commandId"], "exitCode": 0, "stdout": "from A"})

        task = asyncio.create_task(answer())
        r = await api_b.command({"instanceId": iid, "command": "where"})
        await task
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "SUCCEEDED" and r.json()["stdout"] == "from A"
        await c.close()
    finally:
        await api_a.client.aclose()
        await api_b.client.aclose()
