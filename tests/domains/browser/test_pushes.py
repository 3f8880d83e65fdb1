"""Pushes from bus topics: channels, types, scope per message, role caps, scope changes, re-checks."""

from __future__ import annotations

import asyncio

import pytest
from tests.domains.browser.helpers import build_world

pytestmark = pytest.mark.asyncio

HEARTBEAT = {"instanceId": "", "timestamp": "2026-11-28T13:05:27.123Z", "uptimeSeconds": 10, "cpuPercent": 12.5}


async def _publish(console, topic, payload):
    await console.rt.bus.publish(topic, payload)


async def test_every_topic_becomes_its_push(console, server, admin):
    w = await build_world(console, admin)
    i = w.i_0
    async with server.ws(key=admin) as ws:
        await ws.recv()
        replies = await ws.subscribe(instanceId=i)
        assert len(replies) == 6  # ADMIN: commands included
        cases = [
            (f"instance.{i}.metrics", {"instanceId": i, "cpuPercent": 41.5}, "metrics", "metrics"),
            (f"instance.{i}.heartbeat", {**HEARTBEAT, "instanceId": i}, "heartbeat", "heartbeats"),
            (f"instance.{i}.logs", {"instanceId": i, "entries": [{"message": "a"}, {"message": "b"}]}, "logs",
             "logs"),
            (f"instance.{i}.events", {"id": "e1", "instanceId": i, "type": "CONNECT"}, "event", "events"),
            (f"instance.{i}.status", {"instanceId": i, "from": "RUNNING", "to": "UNREACHABLE",
                                      "reason": "heartbeat_lost"}, "instance:status", "events"),
            (f"instance.{i}.agent", {"instanceId": i, "connected": True, "dialect": "console", "version": "1.0",
                                     "capabilities": ["commands"]}, "agent:status", "events"),
            (f"instance.{i}.llm_usage", {"instanceId": i, "records": 3}, "llm_usage", "events"),
            (f"instance.{i}.alerts", {"action": "fired", "alert": {"id": "a1", "instanceId": i}}, "alert", "alerts"),
            (f"instance.{i}.commands", {"commandId": "c1", "instanceId": i, "status": "RUNNING", "exitCode": None,
                                        "startedAt": None, "completedAt": None}, "command:status", "commands"),
            (f"instance.{i}.commands", {"commandId": "c1", "instanceId": i, "stream": "stdout", "seq": 1,
                                        "data": "hi\n"}, "command:output", "commands"),
        ]
        for topic, payload, type_, channel in cases:
            await _publish(console, topic, payload)
            push = await ws.recv()
            assert (push["type"], push["channel"], push["data"]) == (type_, channel, payload), topic
        # reports are narrowed to the §8.4 fields
        await _publish(console, f"instance.{i}.reports", {"instanceId": i, "kind": "processes",
                                                          "timestamp": "2026-11-28T13:05:27.123Z",
                                                          "report": {"big": "x" * 100}})
        push = await ws.recv()
        assert push["type"] == "report:updated" and push["data"] == {
            "instanceId": i, "kind": "processes", "timestamp": "2026-11-28T13:05:27.123Z"}
        # topics with no browser push and other instances' messages are not delivered
        await _publish(console, f"instance.{i}.jobs", {"instanceId": i, "jobId": "j"})
        await _publish(console, f"instance.{w.i_t}.metrics", {"instanceId": w.i_t})
        await _publish(console, f"agent.{i}.control", {"op": "close"})
        await _publish(console, f"instance.{i}.metrics", {"instanceId": i, "sentinel": True})
        assert await ws.until(lambda m: m["data"].get("sentinel")) == []
        seqs = [m["seq"] for m in ws.seen]
        assert seqs == list(range(1, len(seqs) + 1))


async def test_wildcard_follows_team_scope(console, server, admin):
    w = await build_world(console, admin)
    async with server.ws(key=w.dev_t) as ws:
        await ws.recv()
        [ok] = await ws.subscribe(channel="heartbeats", instanceId="*")
        assert ok["type"] == "subscribed"
        for iid in (w.i_u, w.i_t, w.i_0, w.i_u):
            await _publish(console, f"instance.{iid}.heartbeat", {**HEARTBEAT, "instanceId": iid})
        await _publish(console, f"instance.{w.i_t}.heartbeat", {"instanceId": w.i_t, "sentinel": 1})
        got = [m["data"]["instanceId"] for m in await ws.until(lambda m: m["data"].get("sentinel") == 1)]
        assert got == [w.i_t, w.i_0]
        # an instance registered after the socket opened is in scope (no team)
        new = (await console.register(console.bootstrap_key, "late"))["id"]
        await _publish(console, f"instance.{new}.heartbeat", {**HEARTBEAT, "instanceId": new})
        assert (await ws.next_of("heartbeat"))["data"]["instanceId"] == new
        # moving i-0 into team U takes it out of devT's scope at once (scope.changed)
        r = await console.client.post(f"/api/v1/admin/teams/{w.team_u}/instances", json={"instanceIds": [w.i_0]},
                                      headers=console.auth(admin))
        assert r.status_code == 200
        await asyncio.sleep(0.1)
        await _publish(console, f"instance.{w.i_0}.heartbeat", {**HEARTBEAT, "instanceId": w.i_0})
        await _publish(console, f"instance.{w.i_t}.heartbeat", {**HEARTBEAT, "instanceId": w.i_t})
        await _publish(console, f"instance.{w.i_t}.heartbeat", {"instanceId": w.i_t, "sentinel": 2})
        got = [m["data"]["instanceId"] for m in await ws.until(lambda m: m["data"].get("sentinel") == 2)
               if m["type"] == "heartbeat"]
        assert got == [w.i_t]


async def test_commands_wildcard_needs_developer_on_each_team(console, server, admin):
    w = await build_world(console, admin)
    r = await console.client.patch(f"/api/v1/admin/teams/{w.team_t}/members/{w.dev_t_id}", json={"role": "VIEWER"},
                                   headers=console.auth(admin))
    assert r.status_code == 200
    async with server.ws(key=w.dev_t) as ws:
        await ws.recv()
        [ok] = await ws.subscribe(channel="commands")
        assert ok["type"] == "subscribed"
        for iid in (w.i_t, w.i_0, w.i_u):
            await _publish(console, f"instance.{iid}.commands", {"commandId": f"c-{iid}", "instanceId": iid,
                                                                 "status": "SENT"})
        await _publish(console, f"instance.{w.i_0}.commands", {"commandId": "end", "instanceId": w.i_0,
                                                               "status": "SENT"})
        got = [m["data"]["instanceId"] for m in await ws.until(lambda m: m["data"]["commandId"] == "end")]
        assert got == [w.i_0]


async def test_fleet_alerts_reach_fleet_wide_subscribers_only(console, server, admin):
    w = await build_world(console, admin)
    async with server.ws(key=w.viewer) as one, server.ws(key=w.viewer) as fleet:
        await one.recv()
        await fleet.recv()
        await one.subscribe(channel="alerts", instanceId=w.i_0)
        await fleet.subscribe(channel="alerts")
        alert = {"action": "fired", "alert": {"id": "a9", "instanceId": None}}
        await _publish(console, "fleet.alerts", alert)
        push = await fleet.recv()
        assert push["type"] == "alert" and push["channel"] == "alerts" and push["data"] == alert
        assert await one.quiet(0.3) == []


async def test_command_topic_is_not_delivered_twice(console, server, admin):
    w = await build_world(console, admin)
    async with server.ws(key=admin) as ws:
        await ws.recv()
        await ws.subscribe(channel="commands", instanceId=w.i_0)
        status = {"commandId": "c7", "instanceId": w.i_0, "status": "SUCCEEDED", "exitCode": 0}
        await _publish(console, "command.c7", status)
        await _publish(console, f"instance.{w.i_0}.commands", status)
        await _publish(console, f"instance.{w.i_0}.commands", {**status, "commandId": "end"})
        got = await ws.until(lambda m: m["data"]["commandId"] == "end")
        assert [m["type"] for m in got] == ["command:status"]


async def test_principal_recheck_closes_revoked_and_drops_forbidden(console, server, admin):
    user_id, dev = await console.user("DEVELOPER")
    other_id, other = await console.user("VIEWER")
    async with server.ws(key=dev) as ws, server.ws(key=other) as ws2:
        await ws.recv()
        await ws2.recv()
        [ok] = await ws.subscribe(channel="commands")
        [ok2] = await ws.subscribe(channel="metrics")
        assert ok["type"] == ok2["type"] == "subscribed"
        # a lowered role: scope.changed re-checks the user's sockets at once
        r = await console.client.patch(f"/api/v1/admin/users/{user_id}", json={"role": "VIEWER"},
                                       headers=console.auth(admin))
        assert r.status_code == 200, r.text
        un = await ws.next_of("unsubscribed")
        assert un["data"] == {"channel": "commands", "instanceId": "*", "commandId": None, "reason": "forbidden"}
        assert "replyTo" not in un
        # revoking a key is found by the 60 s re-check
        async with console.rt.db.write() as s:
            from sqlalchemy import update

            from sindri_console.kit.clock import utcnow
            from sindri_console.models.identity import ApiKey

            await s.execute(update(ApiKey).where(ApiKey.user_id == other_id).values(revoked_at=utcnow()))
        await console.rt.loops.run_once("browser-principal-recheck")
        assert await ws2.close_code() == 4401
        # the other socket is untouched and still pushed to
        await _publish(console, "instance.x.metrics", {"instanceId": "x"})
        await ws.send({"type": "ping", "id": "after"})
        assert (await ws.next_of("pong"))["replyTo"] == "after"


async def _command_row(console, instance_id: str) -> str:
    from datetime import timedelta

    from sindri_console.kit.clock import utcnow
    from sindri_console.kit.ids import new_id
    from sindri_console.models.commands import CommandExecution

    cid = new_id()
    now = utcnow()
    async with console.rt.db.write() as s:
        s.add(CommandExecution(id=cid, instance_id=instance_id, origin="API", mode="EXEC", command="echo", args=[],
                               env_keys=[], timeout_ms=30000, output_limit_bytes=1024, status="QUEUED",
                               created_at=now, expires_at=now + timedelta(minutes=10)))
    return cid


async def test_command_id_subscriptions(console, server, admin):
    w = await build_world(console, admin)
    c_t = await _command_row(console, w.i_t)
    c_u = await _command_row(console, w.i_u)
    async with server.ws(key=w.dev_t) as ws, server.ws(key=w.viewer) as viewer:
        await ws.recv()
        await viewer.recv()
        [ok] = await ws.subscribe(commandId=c_t)
        assert ok["data"] == {"channel": "commands", "instanceId": w.i_t, "commandId": c_t}
        [err] = await ws.subscribe(commandId=c_u)
        assert err["data"]["code"] == "NOT_FOUND" and err["data"]["message"] == "Command not found"
        [err] = await ws.subscribe(commandId=c_t, instanceId=w.i_0)
        assert err["data"]["code"] == "NOT_FOUND"
        [err] = await ws.subscribe(channel="metrics", commandId=c_t)
        assert err["data"]["code"] == "VALIDATION"
        [err] = await viewer.subscribe(commandId=c_t)
        assert err["data"]["code"] == "FORBIDDEN"
        status = {"commandId": c_t, "instanceId": w.i_t, "status": "SENT", "exitCode": None}
        await _publish(console, f"command.{c_t}", status)
        await _publish(console, f"instance.{w.i_t}.commands", status)
        other = {"commandId": "zz", "instanceId": w.i_t, "status": "SENT"}
        await _publish(console, "command.zz", other)
        await _publish(console, f"instance.{w.i_t}.commands", other)
        await _publish(console, f"command.{c_t}", {**status, "status": "RUNNING"})
        got = await ws.until(lambda m: m["data"].get("status") == "RUNNING")
        assert [(m["type"], m["data"]["commandId"]) for m in got] == [("command:status", c_t)]
        await ws.send({"type": "unsubscribe", "id": "u", "data": {"commandId": c_t}})
        un = await ws.next_of("unsubscribed")
        assert un["data"] == {"channel": "commands", "instanceId": w.i_t, "commandId": c_t}
        await _publish(console, f"command.{c_t}", status)
        assert await ws.quiet(0.3) == []
