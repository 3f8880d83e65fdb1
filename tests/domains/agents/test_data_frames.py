"""40 §4, §17.3-§17.4: data frames of both dialects, stored and visible, over a real WebSocket."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

from sqlalchemy import func, select
from tests.domains.agents.helpers import (
    TERMFIX,
    agent_of,
    c_msg,
    close_code,
    d_heartbeat,
    eventually,
    fixture_frame,
    hello,
    no_frame,
    now_iso_ns,
    recv_json,
    recv_type,
    register_fixture,
)

from sindri_console.models.agent_reports import AgentFrameReceipt
from sindri_console.models.instance import InstanceEvent
from sindri_console.models.metrics import MetricPoint


async def points(console: Any, iid: str) -> list[MetricPoint]:
    async with console.rt.db.read() as s:
        return list(await s.scalars(select(MetricPoint).where(MetricPoint.instance_id == iid)
                                    .order_by(MetricPoint.ts_ms)))


async def events(console: Any, iid: str, type_: str | None = None) -> list[InstanceEvent]:
    async with console.rt.db.read() as s:
        stmt = select(InstanceEvent).where(InstanceEvent.instance_id == iid)
        if type_:
            stmt = stmt.where(InstanceEvent.type == type_)
        return list(await s.scalars(stmt.order_by(InstanceEvent.ts_ms)))


def d_metrics(line: int, ts: str | None = None, **payload_changes: Any) -> dict[str, Any]:
    frame = copy.deepcopy(fixture_frame(TERMFIX, line)["frame"])
    frame["payload"]["timestamp"] = ts or now_iso_ns()
    frame["payload"].update(payload_changes)
    return frame


async def d_connected(server: Any) -> tuple[Any, str]:
    inst = await register_fixture(server.console, TERMFIX)
    ws = await server.connect(server.console.bootstrap_key)
    await ws.send(d_heartbeat())
    return ws, inst["id"]


async def test_metrics_mapping_rates_and_dedupe(server: Any) -> None:
    console = server.console
    ws, iid = await d_connected(server)
    t1 = "2026-11-28T13:13:46.116371357Z"
    # shift the fixture's clock to now, keeping the 3 s between lines 26 and 45
    now = time.time() - 10
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    first = d_metrics(26, f"{base}.116371357Z")
    second = d_metrics(45, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now + 3)) + ".117122537Z")
    assert t1  # the recorded timestamps are 3.000751180 s apart
    await ws.send(json.dumps(first))
    await ws.send(json.dumps(second))
    await ws.send(json.dumps(second))  # §17.3 45: the same frame twice → one sample

    async def two() -> list[MetricPoint] | None:
        got = await points(console, iid)
        return got if len(got) >= 2 else None

    got = await eventually(two, 3.0)
    assert got and len(got) == 2
    p1, p2 = got
    assert p1.cpu_percent == 8.080808080801585
    assert (p1.mem_used_bytes, p1.mem_total_bytes, p1.mem_cached_bytes) == (748253184, 25276502016, 1982468096)
    assert (p1.disk_used_bytes, p1.disk_total_bytes) == (26429779968, 270553174016)
    assert (p1.load_avg_1, p1.load_avg_5, p1.load_avg_15, p1.core_count) == (0.87, 1.05, 0.52, 2)
    assert (p1.net_bytes_sent, p1.net_bytes_recv) == (3161776, 573458370)
    assert (p1.swap_used_bytes, p1.swap_total_bytes) == (0, 0)
    assert p1.net_tx_bps is None and p1.net_rx_bps is None
    dt = (p2.ts_ms - p1.ts_ms) / 1000
    sent2 = second["payload"]["network"]["bytes_sent"]
    assert p2.net_tx_bps == round((sent2 - 3161776) / dt)
    await ws.close()


async def test_metrics_disk_null_dedupe_missing_cpu_old_and_mimir(server: Any) -> None:
    console = server.console
    ws, iid = await d_connected(server)
    await ws.send(json.dumps(d_metrics(26, disk=None)))
    disks = [{"device": "overlay", "total_bytes": 100, "used_bytes": 40},
             {"device": "/dev/vda", "total_bytes": 100, "used_bytes": 40},
             {"device": "/dev/vdb", "total_bytes": 50, "used_bytes": 5}]
    await asyncio.sleep(0.01)
    await ws.send(json.dumps(d_metrics(26, disk=disks)))
    no_cpu = d_metrics(26)
    del no_cpu["payload"]["cpu"]
    await ws.send(json.dumps(no_cpu))
    await asyncio.sleep(0.01)
    await ws.send(json.dumps(d_metrics(26, ts="2026-10-01T00:00:00Z")))  # 30+ days old → receive time
    await ws.send(json.dumps({"protocolVersion": "1.0", "channel": "metrics", "type": "metrics:update",
                              "ts": int(time.time() * 1000) - 5000,
                              "data": {"cpuPercent": 12.5, "memUsed": 1, "memTotal": 2, "diskUsed": 3,
                                       "diskTotal": 4}}))

    async def four() -> list[MetricPoint] | None:
        got = await points(console, iid)
        return got if len(got) >= 4 else None

    got = await eventually(four, 3.0)
    assert got and len(got) == 4, got
    by_disk = {(p.disk_used_bytes, p.disk_total_bytes) for p in got}
    assert (None, None) in by_disk
    assert (45, 150) in by_disk
    assert any(p.cpu_percent == 12.5 and p.disk_used_bytes == 3 for p in got)
    assert all(p.ts_ms > (time.time() - 3600) * 1000 for p in got)  # the old timestamp was re-stamped
    await ws.close()


async def test_events_and_logs_from_d_frames(server: Any) -> None:
    from sindri_console.models.logs import LogEntry

    console = server.console
    ws, iid = await d_connected(server)
    await ws.send(json.dumps({"protocol_version": "", "type": "event", "payload": {
        "instance_id": "cm0000000000000000000001", "event_type": "extension:install",
        "metadata": {"extension": "python", "version": "3.12"}}}))
    await ws.send(json.dumps({"protocol_version": "", "type": "event", "payload": {
        "instance_id": "cm0000000000000000000001", "event_type": "deploy", "message": "x"}}))

    async def installed() -> list[InstanceEvent]:
        return await events(console, iid, "EXTENSION_INSTALL")

    got = await eventually(installed, 3.0)
    assert got and got[0].metadata_["extension"] == "python"

    async def deploy_log() -> list[Any]:
        async with console.rt.db.read() as s:
            return list(await s.scalars(select(LogEntry).where(LogEntry.instance_id == iid)))

    logs = await eventually(deploy_log, 3.0)
    assert logs and logs[0].message == "DEPLOY: x" and logs[0].source == "AGENT"
    assert not await events(console, iid, "DEPLOY")
    await ws.close()


async def test_c_hello_welcome_and_negotiation(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    ws = await server.connect(console.bootstrap_key)
    await ws.send(hello("cm0000000000000000000001", ["heartbeat", "metrics", "teleport"]))
    welcome = await recv_json(ws)
    assert welcome["type"] == "welcome" and welcome["protocolVersion"] == "1.0"
    data = welcome["data"]
    assert data["instanceId"] == inst["id"] and data["instanceName"] == inst["name"]
    assert data["connectionId"] and data["protocolVersion"] == "1.0"
    assert data["acceptedCapabilities"] == ["heartbeat", "metrics"]
    agent = await agent_of(console, admin, inst["id"])
    assert agent["dialect"] == "console" and agent["name"] == "sindri-console-agent"
    assert agent["protocolVersion"] == "1.0"
    # ping → pong with replyTo
    await ws.send(c_msg("ping", {}, "p1"))
    pong = await recv_type(ws, "pong")
    assert pong["replyTo"] == "p1"
    # unknown type with id → UNKNOWN_TYPE
    await ws.send(c_msg("teleport:now", {}, "f2"))
    err = await recv_type(ws, "error")
    assert err["data"]["code"] == "UNKNOWN_TYPE" and err["data"]["refId"] == "f2"
    # malformed → MALFORMED, socket stays
    await ws.send("{nope")
    err = await recv_type(ws, "error")
    assert err["data"]["code"] == "MALFORMED"
    # heartbeat with id → ack after commit; again → duplicate
    await ws.send(c_msg("heartbeat", {"timestamp": now_iso_ns(), "uptimeSeconds": 7, "cpuPercent": 150}, "h1"))
    ack = await recv_type(ws, "ack")
    assert ack["data"] == {"id": "h1"}
    await ws.send(c_msg("heartbeat", {"timestamp": now_iso_ns(), "uptimeSeconds": 8}, "h1"))
    ack = await recv_type(ws, "ack")
    assert ack["data"] == {"id": "h1", "duplicate": True}
    body = await console.client.get(f"/api/v1/instances/{inst['id']}", headers=console.auth(admin))
    assert body.json()["lastHeartbeat"]["cpuPercent"] == 100  # clamped
    assert body.json()["agent"]["uptimeSeconds"] == 7
    # second hello → PROTOCOL error and 4000
    await ws.send(hello("cm0000000000000000000001"))
    err = await recv_type(ws, "error")
    assert err["data"]["code"] == "PROTOCOL"
    assert await close_code(ws) == 4000


async def test_hello_unsupported_version_4426(server: Any) -> None:
    await register_fixture(server.console, TERMFIX)
    ws = await server.connect(server.console.bootstrap_key)
    await ws.send(c_msg("hello", {"instanceId": "cm0000000000000000000001", "protocolVersion": "2.0",
                                  "capabilities": []}))
    err = await recv_json(ws)
    assert err["type"] == "error" and err["data"]["code"] == "UNSUPPORTED_PROTOCOL_VERSION"
    assert err["data"]["supported"] == ["1.0"]
    assert await close_code(ws) == 4426


async def test_c_logs_with_ack_and_duplicate(server: Any) -> None:
    from sindri_console.models.logs import LogEntry

    console = server.console
    inst = await register_fixture(console, TERMFIX)
    ws = await server.connect(console.bootstrap_key)
    await ws.send(hello(inst["id"]))
    await recv_type(ws, "welcome")
    await ws.send(c_msg("log:batch", {"path": "/var/log/app.log", "lines": [
        {"message": "a", "level": "warning", "source": "app:web"}, {"message": "b", "level": "err"},
        {"line": "c"}]}, "b1"))
    assert (await recv_type(ws, "ack"))["data"] == {"id": "b1"}
    await ws.send(c_msg("log:line", {"message": "z" * 20_000}, "f1"))
    assert (await recv_type(ws, "ack"))["data"] == {"id": "f1"}
    await ws.send(c_msg("log:line", {"message": "z" * 20_000}, "f1"))
    assert (await recv_type(ws, "ack"))["data"] == {"id": "f1", "duplicate": True}
    async with console.rt.db.read() as s:
        rows = list(await s.scalars(select(LogEntry).where(LogEntry.instance_id == inst["id"])))
    by_msg = {r.message[:1]: r for r in rows}
    assert len(rows) == 4
    assert (by_msg["a"].level, by_msg["a"].source) == ("WARN", "APP")
    assert (by_msg["b"].level, by_msg["b"].source) == ("ERROR", "AGENT")
    assert (by_msg["c"].level, by_msg["c"].source) == ("INFO", "AGENT")
    assert by_msg["a"].path == "/var/log/app.log"
    assert len(by_msg["z"].message) == 10_000
    async with console.rt.db.read() as s:
        n = await s.scalar(select(func.count()).select_from(AgentFrameReceipt))
    assert n == 2
    await ws.close()


async def test_reports_processes_extensions_config(server: Any, admin: str) -> None:
    console = server.console
    inst = await register_fixture(console, TERMFIX)
    iid = inst["id"]
    r = await console.client.get(f"/api/v1/instances/{iid}/processes", headers=console.auth(admin))
    assert r.status_code == 200 and r.json()["dataAvailable"] is False and r.json()["data"] == []
    ws = await server.connect(console.bootstrap_key)
    await ws.send(hello(iid))
    await recv_type(ws, "welcome")
    procs = [{"pid": 10 + i, "ppid": 1, "name": f"p{i}", "status": "running", "cpuPercent": float(i),
              "memoryPercent": 1.0, "memoryRssBytes": 1000 * i, "createTime": "2026-11-28T10:00:00Z",
              "command": f"/bin/p{i}"} for i in range(3)]
    ts = now_iso_ns()
    await ws.send(c_msg("processes:report", {"timestamp": ts, "totalCount": 120, "processes": procs}, "r1"))
    await recv_type(ws, "ack")
    r = await console.client.get(f"/api/v1/instances/{iid}/processes", headers=console.auth(admin))
    body = r.json()
    assert body["dataAvailable"] is True and body["totalCount"] == 120
    assert [p["pid"] for p in body["data"]] == [12, 11, 10]
    assert body["timestamp"][:19] == ts[:19]
    # 101 items → INVALID_PAYLOAD, previous report kept
    await ws.send(c_msg("processes:report", {"timestamp": ts, "processes": procs * 34}, "r2"))
    err = await recv_type(ws, "error")
    assert err["data"]["code"] == "INVALID_PAYLOAD" and err["data"]["refId"] == "r2"
    r = await console.client.get(f"/api/v1/instances/{iid}/processes", headers=console.auth(admin))
    assert len(r.json()["data"]) == 3
    # extensions: first report writes no events, second removes nodejs
    two = [{"name": "python", "version": "3.12", "status": "installed"},
           {"name": "nodejs", "version": "22", "status": "INSTALLED"}]
    await ws.send(c_msg("extensions:report", {"timestamp": ts, "available": True, "cliVersion": "3.1.0",
                                              "extensions": two}, "e1"))
    await recv_type(ws, "ack")
    r = await console.client.get(f"/api/v1/instances/{iid}/extensions", headers=console.auth(admin))
    body = r.json()
    assert body["dataAvailable"] is True and body["cliVersion"] == "3.1.0"
    assert [(e["name"], e["status"]) for e in body["data"]] == [("nodejs", "INSTALLED"), ("python", "INSTALLED")]
    await ws.send(c_msg("extensions:report", {"timestamp": ts, "available": True, "extensions": two[:1]}, "e2"))
    await recv_type(ws, "ack")
    r = await console.client.get(f"/api/v1/instances/{iid}/extensions", headers=console.auth(admin))
    assert [e["name"] for e in r.json()["data"]] == ["python"]
    removed = await events(console, iid, "EXTENSION_REMOVE")
    assert len(removed) == 1 and removed[0].metadata_["extension"] == "nodejs"
    assert not await events(console, iid, "EXTENSION_INSTALL")
    # config: env values only as sha256 strings; a plain value is refused for that key
    sub = await console.rt.bus.subscribe(f"instance.{iid}.reports")
    await ws.send(c_msg("config:report", {"timestamp": ts, "hostname": "vm", "env": {
        "GOOD": "sha256:" + "a" * 64, "BAD": "plain-secret"}}, "c1"))
    err = await recv_type(ws, "error")
    assert err["data"]["code"] == "INVALID_PAYLOAD" and err["data"]["partial"] is True
    topic, msg = await asyncio.wait_for(sub.get(), 3)
    assert msg["kind"] == "config"
    await sub.close()
    from sindri_console.models.agent_reports import AgentReport

    async with console.rt.db.read() as s:
        rep = await s.get(AgentReport, (iid, "config"))
    assert rep is not None and rep.payload["env"] == {"GOOD": "sha256:" + "a" * 64}
    assert "plain-secret" not in json.dumps(rep.payload)
    await ws.close()


async def test_terminal_frames_silently_dropped(server: Any) -> None:
    ws, iid = await d_connected(server)
    for line in (5, 23, 31):
        await ws.send(json.dumps(fixture_frame(TERMFIX, line)["frame"]))
    assert await no_frame(ws, 1.0)
    await ws.send(d_heartbeat(uptime=9))

    async def up9() -> bool:
        return (await agent_of(server.console, (await server.console.user("ADMIN"))[1], iid)).get(
            "uptimeSeconds") == 9

    assert await eventually(up9, 2.0)
    await ws.close()
