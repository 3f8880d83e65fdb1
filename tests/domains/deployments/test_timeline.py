"""`GET /api/v1/fleet/deployments` (10-core §7.3, acceptance 103–104)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from tests.fakes.fake_sindri import FakeSindri

from sindri_console.domains.deployments.runner import runner_of
from sindri_console.domains.version.service import cli_of
from sindri_console.kit.clock import parse_iso, to_iso, utcnow
from sindri_console.models.deployments import Deployment


def yaml_doc(name: str) -> str:
    return f'version: "3.0"\nname: {name}\ndeployment:\n  provider: docker\nextensions:\n  active: [git]\n'


async def timeline(console: Any, key: str) -> dict[str, Any]:
    r = await console.client.get("/api/v1/fleet/deployments", headers=console.auth(key))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_empty_timeline_has_24_zero_buckets_ending_this_hour(console: Any) -> None:
    _, key = await console.user("VIEWER")
    body = await timeline(console, key)
    hours = [parse_iso(b["hour"]) for b in body["data"]]
    assert len(hours) == 24
    assert all(b - a == timedelta(hours=1) for a, b in zip(hours, hours[1:], strict=False))
    now = utcnow()
    assert hours[-1] == now.replace(minute=0, second=0, microsecond=0)
    assert body["data"][-1]["hour"].endswith(":00:00.000Z")
    assert body["from"] == body["data"][0]["hour"]
    assert abs((parse_iso(body["to"]) - now).total_seconds()) < 5
    assert all(b["deployments"] == b["succeeded"] == b["failed"] == b["inProgress"] == 0 for b in body["data"])
    assert (body["total24h"], body["succeeded"], body["failed"], body["successRate"]) == (0, 0, 0, None)


async def test_one_succeeded_and_one_failed(console: Any, fake: FakeSindri) -> None:
    _, key = await console.user("VIEWER")
    await cli_of(console.rt).resolve()
    runner = runner_of(console.rt)
    assert (await console.client.post("/api/v1/deployments", json={"yamlConfig": yaml_doc("good")},
                                      headers=console.auth(key))).status_code == 202
    await runner.tick()
    await runner.drain()
    fake.control(exit=1, stderr=["nope"])
    assert (await console.client.post("/api/v1/deployments", json={"yamlConfig": yaml_doc("bad")},
                                      headers=console.auth(key))).status_code == 202
    await runner.tick()
    await runner.drain()
    assert (await console.client.post("/api/v1/deployments", json={"yamlConfig": yaml_doc("queued")},
                                      headers=console.auth(key))).status_code == 202
    body = await timeline(console, key)
    current = body["data"][-1]
    assert current == {"hour": current["hour"], "deployments": 3, "succeeded": 1, "failed": 1, "inProgress": 1}
    assert body["successRate"] == 0.5
    assert body["total24h"] == sum(b["deployments"] for b in body["data"]) == 3


async def test_buckets_by_creation_hour_window_and_rounding(console: Any) -> None:
    _, key = await console.user("VIEWER")
    for name in ("a-box", "b-box", "c-box", "d-box", "e-box"):
        r = await console.client.post("/api/v1/deployments", json={"yamlConfig": yaml_doc(name)},
                                      headers=console.auth(key))
        assert r.status_code == 202, r.text
    now = utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    placed = {  # name -> (created_at, status)
        "a-box": (hour - timedelta(hours=23) + timedelta(minutes=1), "SUCCEEDED"),  # oldest bucket
        "b-box": (hour - timedelta(hours=23) - timedelta(minutes=1), "SUCCEEDED"),  # outside the window
        "c-box": (hour - timedelta(hours=5, minutes=-30), "FAILED"),
        "d-box": (hour - timedelta(hours=5, minutes=-10), "SUCCEEDED"),
        "e-box": (hour - timedelta(hours=5, minutes=-20), "SUCCEEDED"),
    }
    async with console.rt.db.write() as s:
        for d in list(await s.scalars(select(Deployment))):
            d.created_at, d.status = placed[d.name]
    body = await timeline(console, key)
    by_hour = {b["hour"]: b for b in body["data"]}
    assert by_hour[to_iso(hour - timedelta(hours=23))]["succeeded"] == 1
    five = by_hour[to_iso(hour - timedelta(hours=5))]
    assert (five["deployments"], five["succeeded"], five["failed"]) == (3, 2, 1)
    assert body["total24h"] == 4 and body["succeeded"] == 3 and body["failed"] == 1
    assert body["successRate"] == 0.75


async def test_scope_applies(console: Any) -> None:
    from sindri_console.models.identity import Team, TeamMember

    owner_id, owner = await console.user("VIEWER")
    other_id, other = await console.user("VIEWER")
    now = datetime.now(UTC)
    async with console.rt.db.write() as s:
        s.add_all([Team(id="t-a", name="ta", created_at=now, updated_at=now),
                   Team(id="t-b", name="tb", created_at=now, updated_at=now)])
        await s.flush()
        s.add_all([TeamMember(team_id="t-a", user_id=owner_id, added_at=now),
                   TeamMember(team_id="t-b", user_id=other_id, added_at=now)])
    r = await console.client.post("/api/v1/deployments", json={"yamlConfig": yaml_doc("scoped"), "teamId": "t-a"},
                                  headers=console.auth(owner))
    assert r.status_code == 202, r.text
    assert (await timeline(console, owner))["total24h"] == 1
    assert (await timeline(console, other))["total24h"] == 0
    _, admin = await console.user("ADMIN")
    assert (await timeline(console, admin))["total24h"] == 1
