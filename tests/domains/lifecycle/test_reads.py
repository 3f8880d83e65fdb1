"""Jobs and backups read routes (10-core §6.9)."""

from __future__ import annotations

from typing import Any

from tests.fakes.fake_sindri import FakeSindri


async def test_job_list_filters_pages_and_scope(console: Any, admin: str, fake: FakeSindri) -> None:
    _, op = await console.user("OPERATOR")
    inst = await console.register(admin, "reads-1")
    other = await console.register(admin, "reads-2")
    iid = inst["id"]
    jobs = []
    for action in ("suspend", "resume", "suspend"):
        r = await console.client.post(f"/api/v1/instances/{iid}/{action}?wait=10", headers=console.auth(op))
        assert r.status_code == 200, r.text
        jobs.append(r.json()["job"])
    fake.control(exit=1)
    r = await console.client.post(f"/api/v1/instances/{iid}/resume?wait=10", headers=console.auth(op))
    jobs.append(r.json()["job"])

    r = await console.client.get(f"/api/v1/instances/{iid}/jobs", headers=console.auth(admin))
    assert r.status_code == 200
    body = r.json()
    assert [j["id"] for j in body["data"]] == [j["id"] for j in reversed(jobs)]  # newest first
    assert body["pagination"] == {"page": 1, "limit": 20, "total": 4, "totalPages": 1}
    r = await console.client.get(f"/api/v1/instances/{iid}/jobs?action=suspend&limit=1&page=2",
                                 headers=console.auth(admin))
    assert [j["id"] for j in r.json()["data"]] == [jobs[0]["id"]]
    assert r.json()["pagination"]["total"] == 2
    r = await console.client.get(f"/api/v1/instances/{iid}/jobs?status=failed,timed_out", headers=console.auth(admin))
    assert [j["id"] for j in r.json()["data"]] == [jobs[3]["id"]]
    for bad in ("status=DONE", "action=REBOOT", "limit=0", "page=x"):
        r = await console.client.get(f"/api/v1/instances/{iid}/jobs?{bad}", headers=console.auth(admin))
        assert r.status_code == 422, bad

    r = await console.client.get(f"/api/v1/instances/{iid}/jobs/{jobs[0]['id']}", headers=console.auth(admin))
    assert r.status_code == 200
    assert r.json() == jobs[0]  # wait=10 returned the finished job; reading it again gives the same document
    r = await console.client.get(f"/api/v1/instances/{other['id']}/jobs/{jobs[0]['id']}", headers=console.auth(admin))
    assert r.status_code == 404
    r = await console.client.get(f"/api/v1/instances/{iid}/jobs/bad%20id", headers=console.auth(admin))
    assert r.status_code == 400
    r = await console.client.get("/api/v1/instances/nope/jobs", headers=console.auth(admin))
    assert r.status_code == 404


async def test_backup_list_filters(console: Any, admin: str, fake: FakeSindri) -> None:
    inst = await console.register(admin, "reads-3")
    iid = inst["id"]
    r = await console.client.post(f"/api/v1/instances/{iid}/backup?wait=10", json={"label": "one"},
                                  headers=console.auth(admin))
    assert r.json()["backup"]["status"] == "SUCCEEDED"
    fake.control(exit=1)
    r = await console.client.post(f"/api/v1/instances/{iid}/backup?wait=10", json={"label": "two"},
                                  headers=console.auth(admin))
    assert r.json()["backup"]["status"] == "FAILED"
    r = await console.client.get(f"/api/v1/instances/{iid}/backups", headers=console.auth(admin))
    assert [b["label"] for b in r.json()["data"]] == ["two", "one"]
    r = await console.client.get(f"/api/v1/instances/{iid}/backups?status=succeeded", headers=console.auth(admin))
    assert [b["label"] for b in r.json()["data"]] == ["one"]
    r = await console.client.get(f"/api/v1/instances/{iid}/backups?status=lost", headers=console.auth(admin))
    assert r.status_code == 422
