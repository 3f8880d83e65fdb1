"""Fleet overview (10-core §7.1, §7.2; acceptance checks 101-102) and team scope of fleet aggregates."""

from __future__ import annotations

from typing import Any

import pytest

from sindri_console.kit.clock import utcnow
from sindri_console.kit.scope import LIVE_STATUSES
from sindri_console.models.agent import AgentState


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"SINDRI_MIN_INSTANCE_VERSION": "3.0.0"}


async def _team_with(console: Any, admin: str, name: str, instance_ids: list[str],
                     member: str | None = None) -> str:
    h = console.auth(admin)
    team = (await console.client.post("/api/v1/admin/teams", headers=h, json={"name": name})).json()
    if instance_ids:
        r = await console.client.post(f"/api/v1/admin/teams/{team['id']}/instances", headers=h,
                                      json={"instanceIds": instance_ids})
        assert r.status_code == 200, r.text
    if member:
        r = await console.client.post(f"/api/v1/admin/teams/{team['id']}/members", headers=h,
                                      json={"userId": member})
        assert r.status_code == 201, r.text
    return team["id"]  # type: ignore[no-any-return]


async def test_stats_counts_live_instances(console: Any, admin: str) -> None:
    h = console.auth(admin)
    empty = (await console.client.get("/api/v1/fleet/stats", headers=h)).json()
    assert empty["total"] == 0 and set(empty["byStatus"]) == set(LIVE_STATUSES)
    assert empty["byProvider"] == [] and empty["activeSessions"] == 0
    a = await console.register(admin, "st-a", provider="fly", sindriVersion="2.9.0")
    await console.register(admin, "st-b", provider="docker", region="local", sindriVersion="3.1.0")
    await console.register(admin, "st-c", provider="docker", region="local")
    gone = await console.register(admin, "st-gone", provider="aws", region="us-east-1")
    r = await console.client.delete(f"/api/v1/instances/{gone['id']}", headers=h)
    assert r.status_code == 200, r.text
    async with console.rt.db.write() as s:
        s.add(AgentState(instance_id=a["id"], connected=True, updated_at=utcnow()))
    body = (await console.client.get("/api/v1/fleet/stats", headers=h)).json()
    assert body["total"] == 3
    assert set(body["byStatus"]) == set(LIVE_STATUSES) and sum(body["byStatus"].values()) == 3
    assert body["byProvider"] == [{"provider": "docker", "count": 2}, {"provider": "fly", "count": 1}]
    assert body["agentsConnected"] == 1 and body["versionOutdated"] == 1
    assert body["activeSessions"] == 0 and body["updatedAt"].endswith("Z")


async def test_geo_pins_and_unlocated(console: Any, admin: str) -> None:
    h = console.auth(admin)
    first = await console.register(admin, "geo-a", provider="fly", region="sea")
    second = await console.register(admin, "geo-b", provider="fly", region="sea")
    await console.register(admin, "geo-c", provider="aws", region="us-east-1")
    before = (await console.client.get("/api/v1/fleet/geo", headers=h)).json()
    await console.register(admin, "geo-local", provider="docker", region="local")
    body = (await console.client.get("/api/v1/fleet/geo", headers=h)).json()
    assert body["unlocated"] == before["unlocated"] + 1
    pin = body["data"][0]
    assert (pin["lat"], pin["lon"], pin["label"], pin["count"]) == (47.45, -122.3, "Seattle", 2)
    assert pin["region"] == "sea" and pin["provider"] == "fly" and pin["byStatus"] == {"RUNNING": 2}
    assert pin["instanceIds"] == [second["id"], first["id"]]
    assert [p["count"] for p in body["data"]] == [2, 1]
    assert body["data"][1]["label"] == "US East (N. Virginia)"


async def test_geo_merges_close_coordinates_and_orders_by_count_then_label(console: Any, admin: str) -> None:
    h = console.auth(admin)
    await console.register(admin, "near-1", provider="ssh", region=None, geo={"lat": 10.004, "lon": 20.0, "label": "B"})
    await console.register(admin, "near-2", provider="ssh", region=None, geo={"lat": 10.0, "lon": 20.001,
                                                                             "label": "B"})
    await console.register(admin, "far", provider="ssh", region=None, geo={"lat": -5.005, "lon": 1.0, "label": "A"})
    await console.register(admin, "far-2", provider="ssh", region=None, geo={"lat": 7.0, "lon": 1.0, "label": "C"})
    body = (await console.client.get("/api/v1/fleet/geo", headers=h)).json()
    assert [(p["lat"], p["lon"], p["count"], p["label"]) for p in body["data"]] == [
        (10.0, 20.0, 2, "B"), (-5.01, 1.0, 1, "A"), (7.0, 1.0, 1, "C")]
    assert body["data"][0]["region"] is None


async def test_fleet_aggregates_respect_team_scope(console: Any, admin: str) -> None:
    dev_id, dev = await console.user("DEVELOPER")
    mine = await console.register(admin, "scope-mine")
    theirs = await console.register(admin, "scope-theirs", provider="aws", region="us-east-1")
    await console.register(admin, "scope-free", provider="docker", region="local")
    await _team_with(console, admin, "team-t", [mine["id"]], member=dev_id)
    await _team_with(console, admin, "team-u", [theirs["id"]])
    stats = (await console.client.get("/api/v1/fleet/stats", headers=console.auth(dev))).json()
    assert stats["total"] == 2
    assert {p["provider"] for p in stats["byProvider"]} == {"fly", "docker"}
    geo = (await console.client.get("/api/v1/fleet/geo", headers=console.auth(dev))).json()
    assert [p["instanceIds"] for p in geo["data"]] == [[mine["id"]]] and geo["unlocated"] == 1
    admin_stats = (await console.client.get("/api/v1/fleet/stats", headers=console.auth(admin))).json()
    assert admin_stats["total"] == 3


async def test_fleet_routes_need_credentials(console: Any) -> None:
    for path in ("/api/v1/fleet/stats", "/api/v1/fleet/geo"):
        assert (await console.client.get(path)).status_code == 401


async def test_pin_lists_the_20_newest_ids(console: Any, admin: str) -> None:
    ids = [(await console.register(admin, f"many-{i:02d}", provider="fly", region="iad"))["id"] for i in range(22)]
    body = (await console.client.get("/api/v1/fleet/geo", headers=console.auth(admin))).json()
    [pin] = body["data"]
    assert pin["count"] == 22 and pin["label"] == "Ashburn, VA"
    assert pin["instanceIds"] == list(reversed(ids))[:20]
