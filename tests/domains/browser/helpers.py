"""A small fleet with team scope, built through the real REST routes (40 §17 setup)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class World:
    admin: str
    viewer: str
    developer: str
    dev_t: str
    dev_t_id: str
    team_t: str
    team_u: str
    i_t: str
    i_u: str
    i_0: str


async def build_world(console: Any, admin: str) -> World:
    c = console.client
    a = console.auth(admin)
    _, viewer = await console.user("VIEWER")
    _, developer = await console.user("DEVELOPER")
    dev_t_id, dev_t = await console.user("DEVELOPER")
    ids = {}
    for name in ("i-t", "i-u", "i-0"):
        ids[name] = (await console.register(console.bootstrap_key, name))["id"]
    teams = {}
    for name in ("team-t", "team-u"):
        r = await c.post("/api/v1/admin/teams", json={"name": name}, headers=a)
        assert r.status_code == 201, r.text
        teams[name] = r.json()["id"]
    r = await c.post(f"/api/v1/admin/teams/{teams['team-t']}/members", json={"userId": dev_t_id}, headers=a)
    assert r.status_code == 201, r.text
    for team, inst in (("team-t", "i-t"), ("team-u", "i-u")):
        r = await c.post(f"/api/v1/admin/teams/{teams[team]}/instances", json={"instanceIds": [ids[inst]]},
                         headers=a)
        assert r.status_code == 200, r.text
    return World(admin, viewer, developer, dev_t, dev_t_id, teams["team-t"], teams["team-u"],
                 ids["i-t"], ids["i-u"], ids["i-0"])


async def ticket(console: Any, key: str) -> str:
    r = await console.client.post("/api/v1/ws/ticket", headers=console.auth(key))
    assert r.status_code == 200, r.text
    return r.json()["ticket"]  # type: ignore[no-any-return]
