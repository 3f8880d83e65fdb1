"""The browser socket: handshake, envelope, subscriptions, roles and scope (40 §8, checks 93-112)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from tests.domains.browser.helpers import build_world, ticket
from websockets.exceptions import InvalidStatus

pytestmark = pytest.mark.asyncio


async def test_ticket_welcome_and_single_use(console, server, admin):
    _, viewer = await console.user("VIEWER")
    r = await console.client.post("/api/v1/ws/ticket", headers=console.auth(viewer))
    assert r.status_code == 200
    body = r.json()
    assert re.fullmatch(r"[0-9a-f]{64}", body["ticket"]) and body["expires_in"] == 30
    async with server.ws(ticket=body["ticket"]) as ws:
        welcome = await ws.recv()
    assert welcome["type"] == "welcome" and welcome["seq"] == 1
    data = welcome["data"]
    assert data["role"] == "VIEWER" and data["userId"] and data["protocolVersion"] == "1.0"
    assert data["channels"] == ["metrics", "heartbeats", "logs", "events", "alerts", "commands"]
    assert data["pingIntervalSeconds"] == 30 and data["connectionId"] and data["serverVersion"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", welcome["ts"])
    # the same ticket again
    async with server.ws(ticket=body["ticket"]) as ws:
        assert await ws.close_code() == 4401
    assert ws.seen == []
    assert "POST /api/v1/ws/ticket" in ws.conn.close_reason


async def test_expired_ticket_is_refused(console, server):
    _, viewer = await console.user("VIEWER")
    raw = await ticket(console, viewer)
    store = console.rt.services["tickets"]
    if getattr(store, "_redis", None) is not None:
        from sindri_console.kit.tickets import REDIS_PREFIX, _digest

        await store._redis.pexpire(REDIS_PREFIX + _digest(raw), 1)  # what 31 s of waiting does
        await asyncio.sleep(0.05)
    else:
        key, (expires, rec) = next(iter(store._mem.items()))
        store._mem[key] = (expires - 31, rec)
    async with server.ws(ticket=raw) as ws:
        assert await ws.close_code() == 4401


async def test_key_header_query_key_and_agent_credentials(console, server):
    _, viewer = await console.user("VIEWER")
    async with server.ws(key=viewer) as ws:
        assert (await ws.recv())["type"] == "welcome"
    async with server.ws(headers={"Authorization": f"Bearer {viewer}"}) as ws:
        assert (await ws.recv())["data"]["role"] == "VIEWER"
    # keys in the query string are ignored
    async with server.ws(query=f"apiKey={viewer}") as ws:
        assert await ws.close_code() == 4401
    async with server.ws(key="sk_" + "0" * 64) as ws:
        assert await ws.close_code() == 4401
    assert "POST /api/v1/ws/ticket" in ws.conn.close_reason
    async with server.ws(headers={"Authorization": f"Bearer {console.bootstrap_key}"}) as ws:
        assert await ws.close_code() == 4403
    assert ws.conn.close_reason == "Agents connect to /ws/agent"
    r = await console.client.post("/api/v1/ws/ticket", headers=console.auth(console.bootstrap_key))
    assert r.status_code == 403


async def test_revoked_key_after_ticket_issue_is_refused(console, server, admin):
    user_id, viewer = await console.user("VIEWER")
    raw = await ticket(console, viewer)
    r = await console.client.patch(f"/api/v1/admin/users/{user_id}", json={"isActive": False},
                                   headers=console.auth(admin))
    assert r.status_code == 200, r.text
    async with server.ws(ticket=raw) as ws:
        assert await ws.close_code() == 4401
    assert ws.conn.close_reason == "User account is disabled"


async def test_unknown_paths_are_refused_without_upgrading(server):
    for path in ("/ws/terminal/abc", "/ws/fleet", "/ws/instances"):
        with pytest.raises(InvalidStatus) as info:
            async with server.ws_path(path):
                pass
        assert info.value.response.status_code in (403, 404)


async def test_envelope_errors_keep_the_socket_open_and_seq_grows_by_one(console, server):
    _, viewer = await console.user("VIEWER")
    async with server.ws(key=viewer) as ws:
        await ws.recv()
        await ws.send("not json")
        err = await ws.recv()
        assert err["type"] == "error" and err["data"]["code"] == "BAD_REQUEST" and err["data"]["statusCode"] == 400
        await ws.send("[1, 2]")
        assert (await ws.recv())["data"]["code"] == "BAD_REQUEST"
        await ws.send('{"type": "ping", "data": NaN}')
        assert (await ws.recv())["data"]["code"] == "BAD_REQUEST"
        await ws.send({"id": "x1", "data": {}})
        err = await ws.recv()
        assert err["data"]["code"] == "BAD_REQUEST" and err["replyTo"] == "x1"
        await ws.send({"type": "bogus", "id": "x2"})
        err = await ws.recv()
        assert err["data"]["code"] == "UNKNOWN_TYPE" and err["replyTo"] == "x2"
        await ws.send({"type": "ping", "id": "x3", "data": [1]})
        err = await ws.recv()
        assert err["data"]["code"] == "VALIDATION" and err["data"]["statusCode"] == 422
        await ws.send({"type": "ping", "id": "x" * 65})
        assert (await ws.recv())["data"]["code"] == "VALIDATION"
        await ws.conn.send(b'{"type":"ping","id":"bin"}')
        assert (await ws.recv())["type"] == "pong"
        await ws.conn.send(b"\xff\xfe")
        assert (await ws.recv())["data"]["code"] == "BAD_REQUEST"
        await ws.send({"type": "ping", "id": "p1", "protocolVersion": "1.0", "channel": "system", "ts": 0})
        pong = await ws.recv()
        assert pong["type"] == "pong" and pong["replyTo"] == "p1" and pong["data"] == {}
        seqs = [m["seq"] for m in ws.seen]
        assert seqs == list(range(1, len(seqs) + 1))
        assert all("channel" not in m for m in ws.seen)


async def test_oversized_message_closes_1009(console, server):
    _, viewer = await console.user("VIEWER")
    async with server.ws(key=viewer) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "ping", "data": {"pad": "a" * 262_144}}))
        assert await ws.close_code() == 1009


async def test_message_rate_limits(console, server):
    _, viewer = await console.user("VIEWER")
    async with server.ws(key=viewer) as ws:
        await ws.recv()
        # 250 pings in one burst: at most 200 in one second are answered, the rest are RATE_LIMITED
        await asyncio.gather(*(ws.send({"type": "ping", "id": f"p{i}"}) for i in range(250)))
        got = [await ws.recv() for _ in range(250)]
        codes = {m["type"] if m["type"] == "pong" else m["data"]["code"] for m in got}
        assert "RATE_LIMITED" in codes and "pong" in codes
        limited = [m for m in got if m["type"] == "error"]
        assert all(m["data"]["statusCode"] == 429 for m in limited)
    async with server.ws(key=viewer) as ws:
        await ws.recv()
        frame = json.dumps({"type": "ping"})
        try:
            for _ in range(3000):
                await ws.conn.send(frame)
        except Exception:
            pass
        assert await ws.close_code() == 4429


async def test_subscribe_scope_roles_and_limits(console, server, admin):
    w = await build_world(console, admin)
    async with server.ws(key=w.viewer) as ws:
        await ws.recv()
        [r] = await ws.subscribe(channel="metrics", instanceId=w.i_t)
        assert r["type"] == "subscribed" and r["data"] == {"channel": "metrics", "instanceId": w.i_t,
                                                           "commandId": None}
        [again] = await ws.subscribe(channel="metrics", instanceId=w.i_t)
        assert again["type"] == "subscribed"
        [forbidden] = await ws.subscribe(channel="commands", instanceId=w.i_t)
        assert forbidden["type"] == "error" and forbidden["data"]["code"] == "FORBIDDEN"
        assert forbidden["data"]["statusCode"] == 403
        [bad] = await ws.subscribe(channel="nope")
        assert bad["data"]["code"] == "VALIDATION" and bad["data"]["details"][0]["field"] == "channel"
        [bad] = await ws.subscribe(instanceId=17)
        assert bad["data"]["code"] == "VALIDATION"
        # the mimir frame subscribes every channel a VIEWER may have, commands excluded
        await ws.send({"protocolVersion": "1.0", "channel": "system", "type": "subscribe", "ts": 0,
                       "data": {"instanceId": w.i_0}})
        replies = [await ws.next_of("subscribed") for _ in range(5)]
        assert sorted(r["data"]["channel"] for r in replies) == ["alerts", "events", "heartbeats", "logs",
                                                                 "metrics"]
        assert all(r["data"]["instanceId"] == w.i_0 for r in replies)
        assert await ws.quiet(0.3) == []
        await ws.send({"type": "unsubscribe", "id": "u1", "data": {"channel": "metrics", "instanceId": w.i_t}})
        un = await ws.recv()
        assert un["type"] == "unsubscribed" and un["replyTo"] == "u1" and un["data"]["channel"] == "metrics"
    async with server.ws(key=w.dev_t) as ws:
        await ws.recv()
        for target in (w.i_u, "0190a000-0000-7000-8000-000000000000", "../etc"):
            [err] = await ws.subscribe(channel="heartbeats", instanceId=target)
            assert err["type"] == "error" and err["data"]["code"] == "NOT_FOUND"
            assert err["data"]["statusCode"] == 404 and err["data"]["message"] == "Instance not found"
        [ok] = await ws.subscribe(channel="commands", instanceId=w.i_t)
        assert ok["type"] == "subscribed"
        [ok] = await ws.subscribe(channel="heartbeats", instanceId="*")
        assert ok["data"]["instanceId"] == "*"
        [err] = await ws.subscribe(commandId="0190a000-0000-7000-8000-000000000000")
        assert err["data"]["code"] == "NOT_FOUND"


async def test_member_role_caps_commands_on_the_team_instances(console, server, admin):
    w = await build_world(console, admin)
    r = await console.client.patch(f"/api/v1/admin/teams/{w.team_t}/members/{w.dev_t_id}", json={"role": "VIEWER"},
                                   headers=console.auth(admin))
    assert r.status_code == 200, r.text
    async with server.ws(key=w.dev_t) as ws:
        await ws.recv()
        [err] = await ws.subscribe(channel="commands", instanceId=w.i_t)
        assert err["data"]["code"] == "FORBIDDEN" and "team-t" in err["data"]["message"]
        replies = await ws.subscribe(instanceId=w.i_t)
        assert sorted(r["data"]["channel"] for r in replies) == ["alerts", "events", "heartbeats", "logs",
                                                                 "metrics"]
        [ok] = await ws.subscribe(channel="commands", instanceId=w.i_0)
        assert ok["type"] == "subscribed"


async def test_subscription_limit(console, server, settings_overrides):
    _, viewer = await console.user("VIEWER")
    limit = console.rt.settings.WS_MAX_SUBSCRIPTIONS
    assert limit == 200
    ids = [(await console.register(console.bootstrap_key, f"lim-{i}"))["id"] for i in range(41)]
    async with server.ws(key=viewer) as ws:
        await ws.recv()
        for iid in ids[:40]:
            replies = await ws.subscribe(instanceId=iid)
            assert len(replies) == 5 and all(r["type"] == "subscribed" for r in replies)
        [err] = await ws.subscribe(channel="metrics", instanceId=ids[40])
        assert err["data"]["code"] == "LIMIT_EXCEEDED" and err["data"]["statusCode"] == 429
        # re-subscribing something held is still fine at the limit
        [ok] = await ws.subscribe(channel="metrics", instanceId=ids[0])
        assert ok["type"] == "subscribed"


async def test_terminals_are_answered_honestly(console, server, admin):
    w = await build_world(console, admin)
    async with server.ws(key=w.viewer) as ws:
        await ws.recv()
        await ws.send({"type": "terminal:open", "id": "t1", "data": {"instanceId": w.i_0}})
        err = await ws.recv()
        assert err["data"]["code"] == "FORBIDDEN" and err["replyTo"] == "t1"
    async with server.ws(key=w.dev_t) as ws:
        await ws.recv()
        await ws.send({"type": "terminal:open", "id": "t2", "data": {"instanceId": w.i_u}})
        assert (await ws.recv())["data"]["code"] == "NOT_FOUND"
        await ws.send({"type": "terminal:open", "id": "t3", "data": {"instanceId": w.i_t, "cols": 80}})
        err = await ws.recv()
        assert err["data"]["code"] == "CAPABILITY_MISSING" and err["data"]["statusCode"] == 409
        assert "not available" in err["data"]["message"]
        await ws.send({"type": "terminal:input", "id": "t4", "data": {"sessionId": "s1", "data": "ls\n"}})
        assert (await ws.recv())["data"]["code"] == "NOT_FOUND"


async def test_ticket_value_never_reaches_the_server_log(console, server):
    import logging

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.INFO)
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    _, viewer = await console.user("VIEWER")
    raw = await ticket(console, viewer)
    logger = logging.getLogger("uvicorn.error")
    keep, level = Keep(), logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    try:
        async with server.ws(ticket=raw) as ws:
            assert (await ws.recv())["type"] == "welcome"
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)
    assert any("/ws?ticket=***" in line for line in keep.lines), keep.lines
    assert not any(raw in line for line in keep.lines)


async def test_credential_store_down_closes_1011(console, server, monkeypatch):
    async def down(*_a, **_k):
        raise ConnectionError("database unreachable")

    _, viewer = await console.user("VIEWER")
    monkeypatch.setattr(console.rt.auth, "authenticate", down)
    async with server.ws(key=viewer) as ws:
        assert await ws.close_code() == 1011
    assert "retry later" in ws.conn.close_reason


async def test_registered_handlers_and_internal_errors(console, server):
    """Other domains add message types through `handlers`; a crash in one answers INTERNAL, socket open."""
    service = console.rt.services["browser"]

    async def echo(sock, msg):
        sock.reply("echoed", {"got": msg.data}, msg.id)

    async def broken(sock, msg):
        raise RuntimeError("bug")

    service.handlers.update({"test:echo": echo, "terminal:open": broken})
    try:
        _, dev = await console.user("DEVELOPER")
        async with server.ws(key=dev) as ws:
            await ws.recv()
            await ws.send({"type": "test:echo", "id": "e1", "data": {"a": 1}})
            reply = await ws.recv()
            assert reply == {**reply, "type": "echoed", "replyTo": "e1", "data": {"got": {"a": 1}}}
            await ws.send({"type": "terminal:open", "id": "t1", "data": {}})
            err = await ws.recv()
            assert err["data"] == {"code": "INTERNAL", "statusCode": 500,
                                   "message": "The server failed to handle this message"}
            await ws.send({"type": "ping", "id": "still"})
            assert (await ws.recv())["type"] == "pong"
    finally:
        service.handlers.pop("test:echo", None)
        service.handlers.pop("terminal:open", None)
