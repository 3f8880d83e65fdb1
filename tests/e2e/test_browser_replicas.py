"""Two real `sindri-console serve` replicas sharing PostgreSQL and Redis: browser pushes cross replicas
(issue 3 item 6; 40 §8, §12, checks 93-111)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import websockets
from tests.e2e.server import Server, fresh_database, start_server

pytestmark = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql") or not os.environ.get("TEST_REDIS_URL"),
    reason="two replicas need a shared PostgreSQL (TEST_DATABASE_URL) and Redis (TEST_REDIS_URL)",
)

AGENT_KEY = "e2e-bootstrap-agent-key-0123456789abcdef"
HB_AT = "2026-11-28T13:12:45.395161557Z"


def _ws(url: str) -> str:
    return url.replace("http://", "ws://", 1)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    tmp = tmp_path_factory.mktemp("replicas")
    # short heartbeat-loss timers, as the (T) checks of 40 §17 assume
    env = {"SINDRI_CONSOLE_API_KEY": AGENT_KEY, "LOG_LEVEL": "warn", "AGENT_HEARTBEAT_LOSS_SECONDS": "3",
           "AGENT_HEARTBEAT_LOSS_CHECK_SECONDS": "1"}
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


class Fleet:
    """Users, teams and instances created through replica A's REST API."""

    def __init__(self, a: Server, b: Server) -> None:
        self.a, self.b = a, b
        self.admin = {"Authorization": f"Bearer {a.admin_key}"}

    async def user(self, http: httpx.AsyncClient, role: str) -> tuple[str, str]:
        r = await http.post(self.a.url + "/api/v1/admin/users", headers=self.admin,
                            json={"email": f"{role.lower()}-{uuid.uuid4().hex[:8]}@example.test", "role": role})
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        r = await http.post(self.a.url + "/api/v1/admin/api-keys", headers=self.admin,
                            json={"kind": "USER", "userId": uid, "name": "e2e"})
        assert r.status_code == 201, r.text
        return uid, r.json()["key"]

    async def register(self, http: httpx.AsyncClient, server: Server, identity: str) -> str:
        body = {"instance_id": identity, "hostname": identity, "provider": "docker", "region": "local",
                "agent_version": "1.1.0-debian", "os": "linux", "arch": "amd64", "tags": {"env": "test"},
                "timestamp": HB_AT}
        r = await http.post(server.url + "/api/v1/instances", json=body,
                            headers={"Authorization": f"Bearer {AGENT_KEY}"})
        assert r.status_code in (200, 201), r.text
        return r.json()["id"]  # type: ignore[no-any-return]

    async def team(self, http: httpx.AsyncClient, members: list[str], instances: list[str]) -> str:
        r = await http.post(self.a.url + "/api/v1/admin/teams", headers=self.admin,
                            json={"name": f"team-{uuid.uuid4().hex[:8]}"})
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        for uid in members:
            r = await http.post(self.a.url + f"/api/v1/admin/teams/{tid}/members", headers=self.admin,
                                json={"userId": uid})
            assert r.status_code == 201, r.text
        if instances:
            r = await http.post(self.a.url + f"/api/v1/admin/teams/{tid}/instances", headers=self.admin,
                                json={"instanceIds": instances})
            assert r.status_code == 200, r.text
        return tid

    async def ticket(self, http: httpx.AsyncClient, server: Server, key: str) -> str:
        r = await http.post(server.url + "/api/v1/ws/ticket", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        return r.json()["ticket"]  # type: ignore[no-any-return]


class Browser:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.seen: list[dict[str, Any]] = []

    async def recv(self, within: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            msg = json.loads(await self.conn.recv())
        self.seen.append(msg)
        return msg  # type: ignore[no-any-return]

    async def next_of(self, type_: str, within: float = 5.0, where: Any = None) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                msg = await self.recv(within)
                if msg["type"] == type_ and (where is None or where(msg)):
                    return msg

    async def subscribe(self, **data: Any) -> dict[str, Any]:
        mid = uuid.uuid4().hex[:12]
        await self.conn.send(json.dumps({"type": "subscribe", "id": mid, "data": data}))
        async with asyncio.timeout(5):
            while True:
                msg = await self.recv()
                if msg.get("replyTo") == mid:
                    return msg

    async def drain(self, seconds: float) -> list[dict[str, Any]]:
        got = []
        with contextlib.suppress(TimeoutError):
            while True:
                got.append(await self.recv(seconds))
        return got


@contextlib.asynccontextmanager
async def browser(server: Server, ticket: str) -> Any:
    async with websockets.connect(_ws(server.url) + f"/ws?ticket={ticket}", open_timeout=5) as conn:
        b = Browser(conn)
        assert (await b.recv())["type"] == "welcome"
        yield b


@contextlib.asynccontextmanager
async def agent(server: Server) -> Any:
    """A D double (draupnir's envelope, bootstrap key, no X-Instance-ID) on `server`."""
    async with websockets.connect(_ws(server.url) + "/ws/agent", open_timeout=5,
                                  additional_headers={"Authorization": f"Bearer {AGENT_KEY}"}) as conn:
        yield conn


def _now_ns() -> str:
    t = datetime.now(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def heartbeat(identity: str, uptime: int = 5) -> str:
    return json.dumps({"protocol_version": "", "type": "heartbeat",
                       "payload": {"instance_id": identity, "timestamp": _now_ns(), "uptime_seconds": uptime}})


def metrics(identity: str, cpu: float) -> str:
    return json.dumps({"protocol_version": "", "type": "metrics", "payload": {
        "instance_id": identity, "timestamp": _now_ns(),
        "cpu": {"usage_percent": cpu, "load_avg_1": 0.5, "load_avg_5": 0.4, "load_avg_15": 0.3, "core_count": 2},
        "memory": {"total_bytes": 1000, "used_bytes": 500, "free_bytes": 500, "usage_percent": 50.0},
        "disk": [], "network": {"bytes_sent": 1, "bytes_recv": 2, "packets_sent": 3, "packets_recv": 4}}})


async def test_agent_on_b_reaches_browser_on_a(replicas):
    a, b = replicas
    fleet = Fleet(a, b)
    async with httpx.AsyncClient(timeout=10) as http:
        _, viewer = await fleet.user(http, "VIEWER")
        async with browser(a, await fleet.ticket(http, a, viewer)) as web:
            assert (await web.subscribe(channel="events"))["type"] == "subscribed"
            identity = f"e2e-{uuid.uuid4().hex[:10]}"
            # registration on replica B: its status change is published on B and pushed on A
            iid = await fleet.register(http, b, identity)
            status = await web.next_of("instance:status", where=lambda m: m["data"]["instanceId"] == iid)
            assert status["data"]["reason"] == "registration"
            for channel in ("heartbeats", "metrics"):
                assert (await web.subscribe(channel=channel, instanceId=iid))["type"] == "subscribed"
            async with agent(b) as conn:
                sent = time.monotonic()
                await conn.send(heartbeat(identity))
                hb = await web.next_of("heartbeat", where=lambda m: m["data"].get("instanceId") == iid)
                assert hb["channel"] == "heartbeats"
                assert time.monotonic() - sent < 5
                await conn.send(metrics(identity, 37.25))
                push = await web.next_of("metrics", where=lambda m: m["data"].get("instanceId") == iid)
                assert "37.25" in json.dumps(push["data"])
                # the connect was pushed before the first heartbeat (same replica, same order as committed)
                connected = [m for m in web.seen if m["type"] == "agent:status" and m["data"]["instanceId"] == iid]
                assert connected and connected[0]["data"]["connected"] is True
            closed = await web.next_of("agent:status", within=10,
                                       where=lambda m: m["data"]["instanceId"] == iid and not m["data"]["connected"])
            assert closed["channel"] == "events"
            seqs = [m["seq"] for m in web.seen]
            assert seqs == list(range(1, len(seqs) + 1))


async def test_tickets_are_single_use_across_replicas(replicas):
    a, b = replicas
    fleet = Fleet(a, b)
    async with httpx.AsyncClient(timeout=10) as http:
        _, viewer = await fleet.user(http, "VIEWER")
        raw = await fleet.ticket(http, a, viewer)
        async with browser(b, raw) as web:
            await web.conn.send(json.dumps({"type": "ping", "id": "p"}))
            assert (await web.next_of("pong"))["replyTo"] == "p"
        for server in (a, b):
            async with websockets.connect(_ws(server.url) + f"/ws?ticket={raw}", open_timeout=5) as conn:
                with pytest.raises(websockets.ConnectionClosed) as info:
                    async with asyncio.timeout(5):
                        await conn.recv()
                assert info.value.rcvd is not None and info.value.rcvd.code == 4401


async def test_wildcard_scope_across_replicas(replicas):
    a, b = replicas
    fleet = Fleet(a, b)
    async with httpx.AsyncClient(timeout=10) as http:
        dev_id, dev_key = await fleet.user(http, "DEVELOPER")
        ids = {}
        for name in ("t", "u", "0"):
            ident = f"e2e-{name}-{uuid.uuid4().hex[:8]}"
            ids[name] = (ident, await fleet.register(http, b, ident))
        await fleet.team(http, [dev_id], [ids["t"][1]])
        await fleet.team(http, [], [ids["u"][1]])
        async with browser(a, await fleet.ticket(http, a, dev_key)) as web:
            assert (await web.subscribe(channel="heartbeats", instanceId="*"))["type"] == "subscribed"
            not_found = await web.subscribe(channel="heartbeats", instanceId=ids["u"][1])
            assert not_found["type"] == "error" and not_found["data"]["code"] == "NOT_FOUND"
            # bad messages never close the socket
            await web.conn.send("not json")
            assert (await web.next_of("error"))["data"]["code"] == "BAD_REQUEST"
            async with agent(b) as cu, agent(b) as ct, agent(b) as c0:
                for _ in range(2):
                    await cu.send(heartbeat(ids["u"][0]))
                    await ct.send(heartbeat(ids["t"][0]))
                    await c0.send(heartbeat(ids["0"][0]))
                got: set[str] = set()
                async with asyncio.timeout(10):
                    while got != {ids["t"][1], ids["0"][1]}:
                        got.add((await web.next_of("heartbeat"))["data"]["instanceId"])
                await asyncio.sleep(1.0)
                later = [m for m in await web.drain(0.5) if m["type"] == "heartbeat"]
            received = {m["data"]["instanceId"] for m in web.seen if m["type"] == "heartbeat"} | {
                m["data"]["instanceId"] for m in later}
            assert ids["u"][1] not in received
            seqs = [m["seq"] for m in web.seen]
            assert seqs == list(range(1, len(seqs) + 1))


class CDouble:
    """A console-dialect agent double: `hello` first, then command replies on request."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.n = 0

    async def send(self, type_: str, data: dict[str, Any]) -> None:
        self.n += 1
        await self.conn.send(json.dumps({"protocolVersion": "1.0", "type": type_, "id": f"f{self.n}",
                                         "ts": _now_ns()[:23] + "Z", "data": data}))

    async def expect(self, type_: str, within: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                frame = json.loads(await self.conn.recv())
                if frame["type"] == type_:
                    return frame.get("data") or {}


@contextlib.asynccontextmanager
async def c_agent(server: Server, iid: str, identity: str) -> Any:
    async with websockets.connect(_ws(server.url) + "/ws/agent", open_timeout=5, additional_headers={
            "Authorization": f"Bearer {AGENT_KEY}", "X-Instance-ID": iid}) as conn:
        double = CDouble(conn)
        await double.send("hello", {"instanceId": iid, "agentInstanceId": identity, "agentVersion": "0.1.0",
                                    "protocolVersion": "1.0", "capabilities": ["heartbeat", "commands", "logs"],
                                    "inFlightCommands": []})
        await double.expect("welcome")
        yield double


async def test_command_pushes_cross_replicas(replicas):
    """Check 106: command:status SENT, RUNNING, SUCCEEDED and command:output per progress frame, for a C double
    on replica B and DEVELOPER browsers on replica A (by instance, and by commandId)."""
    a, b = replicas
    fleet = Fleet(a, b)
    async with httpx.AsyncClient(timeout=10) as http:
        _, dev = await fleet.user(http, "DEVELOPER")
        _, viewer = await fleet.user(http, "VIEWER")
        identity = f"e2e-c-{uuid.uuid4().hex[:8]}"
        iid = await fleet.register(http, b, identity)
        async with browser(a, await fleet.ticket(http, a, dev)) as web, \
                browser(a, await fleet.ticket(http, a, viewer)) as watcher:
            assert (await web.subscribe(channel="commands", instanceId=iid))["type"] == "subscribed"
            forbidden = await watcher.subscribe(channel="commands", instanceId=iid)
            assert forbidden["data"]["code"] == "FORBIDDEN"
            async with c_agent(b, iid, identity) as agent_c:
                r = await http.post(a.url + "/api/v1/commands", headers={"Authorization": f"Bearer {dev}"},
                                    json={"instanceId": iid, "command": "echo", "args": ["hi"], "wait": False})
                assert r.status_code == 202, r.text
                cid = r.json()["id"]
                # a second DEVELOPER socket follows the command by its id
                async with browser(a, await fleet.ticket(http, a, dev)) as by_id:
                    assert (await by_id.subscribe(commandId=cid))["data"] == {
                        "channel": "commands", "instanceId": iid, "commandId": cid}
                    await agent_c.expect("command:dispatch")
                    await agent_c.send("command:ack", {"commandId": cid, "accepted": True, "pid": 7,
                                                       "startedAt": _now_ns()[:23] + "Z"})
                    await web.next_of("command:status", within=10, where=lambda m: m["data"]["status"] == "RUNNING")
                    for seq, text in enumerate(("h", "i\n")):
                        await agent_c.send("command:progress", {"commandId": cid, "stream": "stdout", "seq": seq,
                                                                "data": text})
                        await asyncio.sleep(0.15)
                    await agent_c.send("command:result", {"commandId": cid, "exitCode": 0, "stdout": "hi\n",
                                                          "stderr": "", "stdoutBytes": 3, "stderrBytes": 0,
                                                          "durationMs": 4})
                    await web.next_of("command:status", within=10,
                                      where=lambda m: m["data"]["status"] == "SUCCEEDED")
                    await by_id.next_of("command:status", within=10,
                                        where=lambda m: m["data"]["status"] == "SUCCEEDED")
                    mine = [m for m in by_id.seen if m["type"].startswith("command:")]
                    assert [m["data"]["data"] for m in mine if m["type"] == "command:output"] == ["h", "i\n"]
                    assert [m["data"]["status"] for m in mine if m["type"] == "command:status"] == [
                        "RUNNING", "SUCCEEDED"]
            statuses = [m["data"]["status"] for m in web.seen if m["type"] == "command:status"]
            assert statuses == ["SENT", "RUNNING", "SUCCEEDED"]
            outputs = [m["data"] for m in web.seen if m["type"] == "command:output"]
            assert [(o["commandId"], o["stream"], o["data"]) for o in outputs] == [(cid, "stdout", "h"),
                                                                                (cid, "stdout", "i\n")]
            assert all(m["channel"] == "commands" for m in web.seen if m["type"].startswith("command:"))
            assert not [m for m in watcher.seen if m["type"].startswith("command:")]


async def test_log_batch_and_heartbeat_loss_cross_replicas(replicas):
    """Check 108: one `logs` push with the 3 entries of check 55's batch; check 107 (T): `instance:status`
    RUNNING → UNREACHABLE when the agent goes silent."""
    a, b = replicas
    fleet = Fleet(a, b)
    async with httpx.AsyncClient(timeout=10) as http:
        _, viewer = await fleet.user(http, "VIEWER")
        identity = f"e2e-l-{uuid.uuid4().hex[:8]}"
        iid = await fleet.register(http, b, identity)
        async with browser(a, await fleet.ticket(http, a, viewer)) as web:
            for channel in ("logs", "events"):
                assert (await web.subscribe(channel=channel, instanceId=iid))["type"] == "subscribed"
            async with c_agent(b, iid, identity) as agent_c:
                await agent_c.send("heartbeat", {"timestamp": _now_ns()[:23] + "Z", "uptimeSeconds": 3})
                await agent_c.send("log:batch", {"path": "/var/log/app.log", "lines": [
                    {"message": "a", "level": "warning", "source": "app:web"}, {"message": "b", "level": "err"},
                    {"line": "c"}]})
                logs = await web.next_of("logs", within=10)
                assert logs["channel"] == "logs" and logs["data"]["instanceId"] == iid
                assert [e["message"] for e in logs["data"]["entries"]] == ["a", "b", "c"]
                # silence: the heartbeat-loss loop (any replica) moves the instance to UNREACHABLE
                lost = await web.next_of("instance:status", within=20,
                                         where=lambda m: m["data"]["to"] == "UNREACHABLE")
                assert lost["channel"] == "events"
                assert lost["data"] == {"instanceId": iid, "from": "RUNNING", "to": "UNREACHABLE",
                                        "reason": "heartbeat_lost"}


def start_console_agent(server: Server, tmp: Any, name: str) -> subprocess.Popen[str]:
    """Our own agent process (`sindri-console agent`), heartbeats and metrics every second."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SINDRI_", "DATABASE_URL", "REDIS_URL"))},
        "SINDRI_CONSOLE_URL": server.url, "SINDRI_CONSOLE_API_KEY": AGENT_KEY, "SINDRI_INSTANCE_ID": name,
        "SINDRI_INSTANCE_NAME": name, "SINDRI_PROVIDER": "docker", "SINDRI_AGENT_HEARTBEAT": "1",
        "SINDRI_AGENT_METRICS": "1", "SINDRI_AGENT_BACKOFF_MAX": "2",
        "SINDRI_AGENT_STATE_DIR": str(tmp / f"agent-state-{name}"), "SINDRI_BIN_PATH": str(tmp / "no-sindri"),
    }
    log = open(tmp / f"agent-{name}.log", "w")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen([sys.executable, "-m", "sindri_console.agent.main"], env=env, stdout=log,
                            stderr=log, text=True)


async def test_real_agent_on_b_reaches_browser_on_a(replicas, tmp_path):
    """Our agent process registers and streams on replica B; a browser on replica A sees it live."""
    a, b = replicas
    fleet = Fleet(a, b)
    name = f"e2e-real-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(timeout=10) as http:
        _, viewer = await fleet.user(http, "VIEWER")
        async with browser(a, await fleet.ticket(http, a, viewer)) as web:
            for channel in ("events", "heartbeats", "metrics"):
                assert (await web.subscribe(channel=channel))["type"] == "subscribed"
            proc = start_console_agent(b, tmp_path, name)
            try:
                registered = await web.next_of("instance:status", within=30,
                                               where=lambda m: m["data"]["reason"] == "registration")
                iid = registered["data"]["instanceId"]
                # connect, then the classification by `hello` (dialect, capabilities)
                hello = await web.next_of("agent:status", within=30,
                                          where=lambda m: m["data"]["instanceId"] == iid
                                          and m["data"]["connected"] and m["data"].get("dialect") == "console")
                assert "metrics" in hello["data"]["capabilities"]
                hb = await web.next_of("heartbeat", within=15, where=lambda m: m["data"]["instanceId"] == iid)
                assert hb["channel"] == "heartbeats"
                metrics_push = await web.next_of("metrics", within=15,
                                                 where=lambda m: m["data"]["instanceId"] == iid)
                assert metrics_push["data"]["cpuPercent"] is not None
            finally:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            gone = await web.next_of("agent:status", within=20,
                                     where=lambda m: m["data"]["instanceId"] == iid and not m["data"]["connected"])
            assert gone["channel"] == "events"
