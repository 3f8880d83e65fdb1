"""Instance events (10-core §9.9; check 118) and team scope of metrics routes (check 115)."""

from __future__ import annotations

from typing import Any

from tests.domains.metrics.helpers import put, sample

from sindri_console.domains.instances.state import write_event
from sindri_console.kit.clock import clock, ms_to_iso


async def test_events_newest_first_with_filters(console: Any, admin: str) -> None:
    inst = (await console.register(admin, "ev-a"))["id"]
    now = clock.now_ms()
    async with console.rt.db.write() as s:
        write_event(s, inst, "ERROR", "Disk full", {"source": "agent"}, actor_kind="AGENT", ts_ms=now - 5000)
        write_event(s, inst, "BACKUP", "Backup done", ts_ms=now - 4000)
        write_event(s, inst, "ERROR", "Disk full again", ts_ms=now + 1000)
    h = console.auth(admin)
    body = (await console.client.get(f"/api/v1/instances/{inst}/events", headers=h)).json()
    stamps = [e["timestamp"] for e in body["data"]]
    assert stamps == sorted(stamps, reverse=True)
    assert body["pagination"]["total"] == len(body["data"]) >= 4
    for e in body["data"]:
        assert {"id", "type", "timestamp", "message", "metadata", "actorKind", "userId", "jobId"} <= set(e)
    reg = (await console.client.get(f"/api/v1/instances/{inst}/events?type=register", headers=h)).json()
    assert reg["data"] and {e["type"] for e in reg["data"]} == {"REGISTER"}
    errs = (await console.client.get(f"/api/v1/instances/{inst}/events?type=ERROR,BACKUP&limit=2",
                                     headers=h)).json()
    assert [e["message"] for e in errs["data"]] == ["Disk full again", "Backup done"]
    assert errs["pagination"] == {"page": 1, "limit": 2, "total": 3, "totalPages": 2}
    window = (await console.client.get(
        f"/api/v1/instances/{inst}/events?type=ERROR&from={ms_to_iso(now - 6000)}&to={ms_to_iso(now)}",
        headers=h)).json()
    assert [e["message"] for e in window["data"]] == ["Disk full"]
    assert window["data"][0]["actorKind"] == "AGENT" and window["data"][0]["metadata"] == {"source": "agent"}
    for bad in ("limit=101", "type=NOPE", "page=0", f"from={ms_to_iso(now)}&to={ms_to_iso(now - 1)}",
                "from=2026-01-01T00:00:00"):
        r = await console.client.get(f"/api/v1/instances/{inst}/events?{bad}", headers=h)
        assert r.status_code == 422, bad
    assert (await console.client.get("/api/v1/instances/nope/events", headers=h)).status_code == 404


async def _scoped_pair(console: Any, admin: str) -> tuple[str, str, str]:
    """A DEVELOPER in team T, an instance of T and an instance of another team U."""
    h = console.auth(admin)
    dev_id, dev = await console.user("DEVELOPER")
    mine = (await console.register(admin, "in-t"))["id"]
    other = (await console.register(admin, "in-u"))["id"]
    for name, inst, member in (("T", mine, dev_id), ("U", other, None)):
        team = (await console.client.post("/api/v1/admin/teams", headers=h, json={"name": name})).json()
        await console.client.post(f"/api/v1/admin/teams/{team['id']}/instances", headers=h,
                                  json={"instanceIds": [inst]})
        if member:
            await console.client.post(f"/api/v1/admin/teams/{team['id']}/members", headers=h,
                                      json={"userId": member})
    return dev, mine, other


async def test_metrics_routes_hide_other_teams(console: Any, admin: str) -> None:
    dev, mine, other = await _scoped_pair(console, admin)
    now = clock.now_ms()
    await put(console, [sample(mine, now - 2000, cpu=10), sample(other, now - 1000, cpu=90)])
    h = console.auth(dev)
    window = f"from={ms_to_iso(now - 60_000)}&to={ms_to_iso(now)}"
    for url in (f"/api/v1/metrics/timeseries?instanceId={other}", f"/api/v1/instances/{other}/metrics",
                f"/api/v1/instances/{other}/events",
                f"/api/v1/metrics/timeseries/range?{window}&granularity=raw&instanceId={other}",
                f"/api/v1/metrics/aggregate?{window}&instanceId={other}"):
        r = await console.client.get(url, headers=h)
        assert r.status_code == 404, url
        assert r.json()["message"] == "Instance not found"
    assert (await console.client.get(f"/api/v1/instances/{mine}/metrics", headers=h)).status_code == 200
    data = (await console.client.get("/api/v1/metrics/timeseries", headers=h)).json()["data"]
    [last] = [d for d in data if d["sampleCount"]]
    assert last["instanceCount"] == 1 and last["cpuPercent"] == 10
    latest = (await console.client.get(f"/api/v1/metrics/latest?instanceIds={mine},{other}", headers=h)).json()
    assert [d["instanceId"] for d in latest["data"]] == [mine]
    agg = (await console.client.get(f"/api/v1/metrics/aggregate?{window}", headers=h)).json()
    assert [d["instanceId"] for d in agg["data"]] == [mine] and agg["fleet"]["maxCpuPercent"] == 10
    ranged = (await console.client.get(f"/api/v1/metrics/timeseries/range?{window}", headers=h)).json()
    assert sum(d["sampleCount"] for d in ranged["data"]) == 1
