"""Bulk actions (10-core §6.8; §20 checks 95–100)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from tests.domains.lifecycle.helpers import set_status, wait_job
from tests.fakes.fake_sindri import FakeSindri

from sindri_console.models.audit import AuditLog
from sindri_console.models.jobs import InstanceJob

BULK = "/api/v1/instances/bulk-action"


async def test_duplicates_are_removed_in_request_order(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    a = (await console.register(admin, "bulk-a"))["id"]
    b = (await console.register(admin, "bulk-b"))["id"]
    r = await console.client.post(BULK, json={"action": "SUSPEND", "instanceIds": [a, a, b, "nope"]},
                                  headers=console.auth(operator))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["action"] == "suspend"
    assert [item["id"] for item in body["results"]] == [a, b, "nope"]
    assert body["summary"] == {"requested": 4, "unique": 3, "accepted": 2, "rejected": 1}
    nope = body["results"][2]
    assert nope == {"id": "nope", "name": None, "result": "NOT_FOUND", "error": "Instance not found", "jobId": None,
                    "status": None}
    for item, name in zip(body["results"][:2], ("bulk-a", "bulk-b"), strict=True):
        assert item["result"] == "ACCEPTED" and item["name"] == name and item["status"] == "SUSPENDING"
        assert item["error"] is None and item["jobId"]
    async with console.rt.db.read() as s:
        jobs = (await s.scalars(select(InstanceJob))).all()
        audits = (await s.scalars(select(AuditLog).where(AuditLog.action == "SUSPEND"))).all()
    assert len(jobs) == 2 and {j.bulk_id for j in jobs} == {body["bulkId"]}
    assert sorted(a.resource_id for a in audits) == sorted([a, b])
    assert all(entry.metadata_["bulkId"] == body["bulkId"] for entry in audits)
    for item in body["results"][:2]:
        assert (await wait_job(console, operator, item["id"], item["jobId"]))["status"] == "SUCCEEDED"
    assert len(fake.runs()) == 2


async def test_nothing_accepted_answers_200_with_conflicts(console: Any, admin: str, operator: str) -> None:
    a = (await console.register(admin, "bulk-c"))["id"]
    aws = (await console.register(admin, "bulk-d", provider="aws", region="us-east-1"))["id"]
    r = await console.client.post(BULK, json={"action": "resume", "instanceIds": [a, aws]},
                                  headers=console.auth(operator))
    assert r.status_code == 200, r.text
    first, second = r.json()["results"]
    assert first["result"] == "CONFLICT" and first["name"] == "bulk-c" and first["status"] == "RUNNING"
    assert "RUNNING" in first["error"]
    assert second["result"] == "CONFLICT" and "not managed" in second["error"]
    assert r.json()["summary"] == {"requested": 2, "unique": 2, "accepted": 0, "rejected": 2}


async def test_bulk_destroy_with_backup_checks_each_status(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    up = (await console.register(admin, "bulk-e"))["id"]
    down = (await console.register(admin, "bulk-f"))["id"]
    await set_status(console, down, "SUSPENDED")
    r = await console.client.post(BULK, json={"action": "destroy", "instanceIds": [up, down],
                                              "options": {"backupVolume": True, "backupProfile": "full"}},
                                  headers=console.auth(operator))
    assert r.status_code == 202
    first, second = r.json()["results"]
    assert first["result"] == "ACCEPTED" and first["status"] == "DESTROYING"
    assert second["result"] == "CONFLICT" and second["status"] == "SUSPENDED"
    job = await wait_job(console, operator, up, first["jobId"])
    assert job["status"] == "SUCCEEDED" and job["params"]["backupProfile"] == "FULL"
    assert fake.commands() == ["connect", "destroy"]


async def test_bulk_validation(console: Any, admin: str, operator: str) -> None:
    a = (await console.register(admin, "bulk-g"))["id"]
    for body in ({"action": "suspend", "instanceIds": [a] * 101}, {"action": "reboot", "instanceIds": [a]},
                 {"action": "suspend", "instanceIds": []}, {"action": "suspend"}, {"instanceIds": [a]},
                 {"action": "suspend", "instanceIds": ["bad id"]}, {"action": "suspend", "instanceIds": "x"},
                 {"action": "destroy", "instanceIds": [a], "options": {"backupProfile": "huge"}}):
        r = await console.client.post(BULK, json=body, headers=console.auth(operator))
        assert r.status_code == 422, (body, r.text)
    r = await console.client.post(BULK, content=b"", headers=console.auth(operator))
    assert r.status_code == 422
    _, dev = await console.user("DEVELOPER")
    r = await console.client.post(BULK, json={"action": "suspend", "instanceIds": [a]}, headers=console.auth(dev))
    assert r.status_code == 403
    r = await console.client.get(BULK, headers=console.auth(operator))
    assert r.status_code == 404  # `bulk-action` is just an unknown instance id for GET


async def test_scope_and_member_caps_are_per_item(console: Any, admin: str) -> None:
    op_id, op_key = await console.user("OPERATOR")
    mine = (await console.register(admin, "bulk-mine"))["id"]
    capped = (await console.register(admin, "bulk-capped"))["id"]
    hidden = (await console.register(admin, "bulk-hidden"))["id"]
    r = await console.client.post("/api/v1/admin/teams", json={"name": "blue", "members": [
        {"userId": op_id, "role": "VIEWER"}]}, headers=console.auth(admin))
    assert r.status_code == 201, r.text
    blue = r.json()["id"]
    r = await console.client.post("/api/v1/admin/teams", json={"name": "red"}, headers=console.auth(admin))
    red = r.json()["id"]
    for team, iid in ((blue, capped), (red, hidden)):
        r = await console.client.post(f"/api/v1/admin/teams/{team}/instances", json={"instanceIds": [iid]},
                                      headers=console.auth(admin))
        assert r.status_code == 200, r.text
    r = await console.client.post(BULK, json={"action": "suspend", "instanceIds": [mine, capped, hidden]},
                                  headers=console.auth(op_key))
    assert r.status_code == 202, r.text
    results = {item["id"]: item for item in r.json()["results"]}
    assert results[mine]["result"] == "ACCEPTED"
    assert results[capped]["result"] == "FORBIDDEN" and results[capped]["name"] == "bulk-capped"
    assert results[capped]["status"] == "RUNNING" and "blue" in results[capped]["error"]
    assert results[hidden] == {"id": hidden, "name": None, "result": "NOT_FOUND", "error": "Instance not found",
                               "jobId": None, "status": None}
    r = await console.client.post(f"/api/v1/instances/{capped}/suspend", headers=console.auth(op_key))
    assert r.status_code == 403
    r = await console.client.post(f"/api/v1/instances/{hidden}/suspend", headers=console.auth(op_key))
    assert r.status_code == 404
