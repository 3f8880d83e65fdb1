"""Credentials (00 §4, 10-core §3): headers, hashing, expiry, revocation, inactive users, agent keys."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update

from sindri_console.kit.clock import to_iso, utcnow
from sindri_console.models.audit import AuditLog
from sindri_console.models.identity import ApiKey, User

LIST = "/api/v1/instances"


async def test_missing_and_unknown_keys(console):
    r = await console.client.get(LIST)
    assert r.status_code == 401 and r.json()["error"] == "Unauthorized"
    r = await console.client.get(LIST, headers={"Authorization": "Bearer sk_" + "0" * 64})
    assert r.status_code == 401 and r.json()["message"] == "Invalid API key"
    r = await console.client.get(LIST, headers={"Authorization": "Bearer " + "x" * 600})
    assert r.status_code == 401


async def test_bearer_wins_over_x_api_key(console):
    _, key = await console.user("VIEWER")
    r = await console.client.get(LIST, headers={"X-Api-Key": key, "Authorization": "Bearer sk_bad"})
    assert r.status_code == 401
    r = await console.client.get(LIST, headers={"X-Api-Key": "sk_bad", "Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    r = await console.client.get(LIST, headers={"X-Api-Key": key})
    assert r.status_code == 200


async def test_key_in_query_string_is_refused(console):
    _, key = await console.user("VIEWER")
    r = await console.client.get(LIST, params={"apiKey": key})
    assert r.status_code == 401
    r = await console.client.get(LIST, params={"api_key": key})
    assert r.status_code == 401


async def test_expired_key(console):
    _, key = await console.user("VIEWER")
    r = await console.client.post("/api/v1/me/api-keys", headers=console.auth(key),
                                  json={"name": "short", "expiresAt": to_iso(utcnow() + timedelta(seconds=1))})
    assert r.status_code == 201, r.text
    short = r.json()["key"]
    assert (await console.client.get(LIST, headers=console.auth(short))).status_code == 200
    await asyncio.sleep(1.2)
    r = await console.client.get(LIST, headers=console.auth(short))
    assert r.status_code == 401 and "expired" in r.json()["message"]


async def test_revoked_key_and_inactive_user(console):
    uid, key = await console.user("VIEWER")
    assert (await console.client.get(LIST, headers=console.auth(key))).status_code == 200
    async with console.rt.db.write() as s:
        await s.execute(update(User).where(User.id == uid).values(is_active=False))
    r = await console.client.get(LIST, headers=console.auth(key))
    assert r.status_code == 401 and r.json()["message"] == "User account is disabled"
    async with console.rt.db.write() as s:
        await s.execute(update(User).where(User.id == uid).values(is_active=True))
    assert (await console.client.get(LIST, headers=console.auth(key))).status_code == 200
    keys = (await console.client.get("/api/v1/me/api-keys", headers=console.auth(key))).json()["data"]
    r = await console.client.delete(f"/api/v1/me/api-keys/{keys[0]['id']}", headers=console.auth(key))
    assert r.status_code == 200 and r.json()["status"] == "REVOKED"
    r = await console.client.get(LIST, headers=console.auth(key))
    assert r.status_code == 401 and "revoked" in r.json()["message"]


async def test_agent_credentials_only_reach_agent_routes(console, admin):
    inst = await console.register(admin, "agent-scope")
    r = await console.client.post("/api/v1/admin/api-keys", headers=console.auth(admin),
                                  json={"kind": "AGENT", "instanceId": inst["id"], "name": "agent"})
    assert r.status_code == 201, r.text
    agent_key = r.json()["key"]
    assert agent_key.startswith("ak_") and r.json()["role"] is None
    for key in (agent_key, console.bootstrap_key):
        for path in ("/api/v1/instances", "/api/v1/me", "/api/v1/version", "/api/v1/audit"):
            r = await console.client.get(path, headers=console.auth(key))
            assert r.status_code == 403, (path, r.status_code)
        r = await console.client.post("/api/v1/ws/ticket", headers=console.auth(key))
        assert r.status_code == 403
    r = await console.client.post("/api/v1/instances", headers=console.auth(agent_key),
                                  json={"name": "agent-scope", "provider": "fly"})
    assert r.status_code == 200 and r.json()["id"] == inst["id"]


async def test_keys_are_hashed_and_first_use_is_audited_once(console):
    uid, key = await console.user("VIEWER")
    for _ in range(2):
        assert (await console.client.get(LIST, headers=console.auth(key))).status_code == 200
    async with console.rt.db.read() as s:
        row = await s.scalar(select(ApiKey).where(ApiKey.user_id == uid))
        assert row.key_hash != key and len(row.key_hash) == 64 and row.last_used_at is not None
        logins = (await s.scalars(select(AuditLog).where(AuditLog.action == "LOGIN",
                                                         AuditLog.resource_id == row.id))).all()
    assert len(logins) == 1


async def test_role_cap_and_fresh_role(console, admin):
    uid, key = await console.user("OPERATOR")
    r = await console.client.post("/api/v1/me/api-keys", headers=console.auth(key),
                                  json={"name": "capped", "role": "viewer"})
    assert r.status_code == 201 and r.json()["role"] == "VIEWER"
    capped = r.json()["key"]
    r = await console.client.post("/api/v1/me/api-keys", headers=console.auth(capped),
                                  json={"name": "x", "role": "ADMIN"})
    assert r.status_code == 422
    r = await console.client.get("/api/v1/me", headers=console.auth(capped))
    assert r.json()["effectiveRole"] == "VIEWER" and r.json()["role"] == "OPERATOR"
    r = await console.client.patch(f"/api/v1/admin/users/{uid}", headers=console.auth(admin), json={"role": "VIEWER"})
    assert r.status_code == 200
    r = await console.client.get("/api/v1/me", headers=console.auth(key))
    assert r.json()["effectiveRole"] == "VIEWER"


async def test_failed_authentication_is_rate_limited(console):
    await console.rt.limiter.storage.reset()
    console.rt.limiter.enabled = True
    try:
        codes = []
        for _ in range(32):
            r = await console.client.get(LIST, headers={"Authorization": "Bearer wrong"})
            codes.append(r.status_code)
        assert codes[:30] == [401] * 30
        assert codes[-1] == 429 and "retry-after" in {k.lower() for k in r.headers}
    finally:
        console.rt.limiter.enabled = False


async def test_rate_limit_headers_by_route_class(console, admin):
    await console.rt.limiter.storage.reset()
    console.rt.limiter.enabled = True
    try:
        r = await console.client.post("/api/v1/instances", headers=console.auth(admin),
                                      json={"name": "rl-1", "provider": "fly"})
        assert r.headers["x-ratelimit-limit"] == "6000"
        r = await console.client.get(LIST, headers=console.auth(admin))
        assert r.headers["x-ratelimit-limit"] == "600"
        assert int(r.headers["x-ratelimit-remaining"]) < 600
    finally:
        console.rt.limiter.enabled = False


async def test_request_id_is_echoed_or_generated(console, admin):
    r = await console.client.get(LIST, headers={**console.auth(admin), "X-Request-Id": "req-123"})
    assert r.headers["x-request-id"] == "req-123"
    r = await console.client.get(LIST, headers=console.auth(admin))
    assert len(r.headers["x-request-id"]) >= 16
