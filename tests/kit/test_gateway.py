"""Cross-cutting HTTP behaviour: CORS, trusted proxies, error bodies."""

from __future__ import annotations

import httpx
import pytest

from sindri_console.app import create_app


@pytest.fixture
def settings_overrides():
    return {"CORS_ORIGINS": ["https://console.example.test"], "TRUSTED_PROXIES": ["127.0.0.1/32"]}


async def test_cors_preflight_and_headers(console, admin):
    r = await console.client.options("/api/v1/instances", headers={
        "Origin": "https://console.example.test", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "Authorization"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://console.example.test"
    r = await console.client.get("/api/v1/instances", headers={**console.auth(admin),
                                                               "Origin": "https://console.example.test"})
    assert r.headers["access-control-allow-origin"] == "https://console.example.test"
    r = await console.client.options("/api/v1/instances", headers={
        "Origin": "https://evil.example.test", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers


async def test_forwarded_for_is_believed_only_from_trusted_proxies(console, admin):
    r = await console.client.delete("/api/v1/instances/does-not-exist", headers=console.auth(admin))
    assert r.status_code == 404
    inst = await console.register(admin, "xff-a")
    _, op = await console.user("OPERATOR")
    r = await console.client.delete(f"/api/v1/instances/{inst['id']}",
                                    headers={**console.auth(op), "X-Forwarded-For": "203.0.113.7, 127.0.0.1"})
    assert r.status_code == 200
    entries = (await console.client.get("/api/v1/audit", headers=console.auth(admin),
                                        params={"action": "DELETE"})).json()["data"]
    assert entries[0]["ipAddress"] == "203.0.113.7"


async def test_untrusted_peer_cannot_spoof_its_address(make_settings):
    app = create_app(make_settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get("/api/v1/instances", headers={"X-Forwarded-For": "10.1.1.1"})
            assert r.status_code == 401
            from sindri_console.kit.gateway import client_address

            scope = {"client": ("198.51.100.9", 4000)}
            assert client_address(scope, {"x-forwarded-for": "10.1.1.1"}, []) == "198.51.100.9"
