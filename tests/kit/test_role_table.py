"""The route → minimum-role table, tested as a table over every route the application serves."""

from __future__ import annotations

import re

import pytest

from sindri_console.kit.gateway import PUBLIC_PATHS
from sindri_console.kit.ids import new_id
from sindri_console.kit.rbac import ROUTE_TABLE, Role, rule_for

ROLE_ORDER = [Role.VIEWER, Role.DEVELOPER, Role.OPERATOR, Role.ADMIN]


def _served_routes(app):
    out = []
    for r in app.router.routes:
        methods = getattr(r, "methods", None)
        if not methods or r.path in PUBLIC_PATHS:
            continue
        for m in sorted(methods):
            if m == "HEAD":
                continue
            out.append((m, r.path_format))
    return out


def _concrete(path: str) -> str:
    # a well-formed id that names nothing: handlers answer 404/422, never 401/403
    return re.sub(r"\{[^}]+\}", lambda _: new_id(), path)


def _query(path: str) -> dict[str, str]:
    # streams would never end: an invalid filter makes them answer 422 after authorisation
    return {"level": "NOT-A-LEVEL"} if path.endswith("/stream") else {}


async def test_every_served_route_is_in_the_table(console):
    missing = [(m, p) for m, p in _served_routes(console.app) if rule_for(m, p) is None]
    assert missing == []


def test_table_matches_the_seed_roles():
    # spot checks straight from the seed's Min Role column
    expect = {
        ("DELETE", "/api/v1/instances/{id}"): Role.OPERATOR,
        ("POST", "/api/v1/commands"): Role.DEVELOPER,
        ("POST", "/api/v1/commands/bulk"): Role.OPERATOR,
        ("DELETE", "/api/v1/templates/{id}"): Role.ADMIN,
        ("GET", "/api/v1/secrets/{id}/value"): Role.ADMIN,
        ("GET", "/api/v1/audit"): Role.ADMIN,
        ("POST", "/api/v1/deployments"): Role.VIEWER,
        ("POST", "/api/v1/tasks/{id}/trigger"): Role.VIEWER,
        ("POST", "/api/v1/providers/{provider}/compute-catalog/refresh"): Role.ADMIN,
    }
    for (m, p), role in expect.items():
        assert rule_for(m, p).role == role
    keys = [(r.method, r.path) for r in ROUTE_TABLE]
    assert len(keys) == len(set(keys))


async def test_role_just_below_is_403_and_minimum_passes(console):
    keys = {}
    for role in ROLE_ORDER:
        _, keys[role] = await console.user(role.name)
    inst = await console.register(keys[Role.ADMIN], "role-walk")
    agent_key = console.bootstrap_key
    checked = 0
    for method, path in _served_routes(console.app):
        rule = rule_for(method, path)
        url = _concrete(path)
        params = _query(path)
        minimum = keys[rule.role]
        r = await console.client.request(method, url, headers=console.auth(minimum), params=params)
        assert r.status_code not in (401, 403), (method, path, r.status_code, r.text)
        assert r.status_code < 500, (method, path, r.status_code, r.text)
        idx = ROLE_ORDER.index(rule.role)
        if idx > 0:
            below = keys[ROLE_ORDER[idx - 1]]
            r = await console.client.request(method, url, headers=console.auth(below), params=params)
            assert r.status_code == 403, (method, path, "below", r.status_code)
            assert r.json()["statusCode"] == 403
        if not rule.agent:
            r = await console.client.request(method, url, headers=console.auth(agent_key), params=params)
            assert r.status_code == 403, (method, path, "agent", r.status_code)
        checked += 1
    assert checked >= 30
    assert inst["id"]


@pytest.mark.parametrize("method,path", [("GET", "/api/v1/nope"), ("PUT", "/api/v1/instances")])
async def test_unknown_route_and_method(console, admin, method, path):
    r = await console.client.request(method, path, headers=console.auth(admin))
    body = r.json()
    if path.endswith("nope"):
        assert r.status_code == 404 and body["message"] == "No route for GET /api/v1/nope"
    else:
        assert r.status_code == 405
        assert "GET" in r.headers["allow"] and "POST" in r.headers["allow"]
        assert body["error"] == "Method Not Allowed"
