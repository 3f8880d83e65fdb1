"""Registration and the instance registry (10-core §5, 40 §2)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from sindri_console.models.audit import AuditLog

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "agent-wire"
REG = "/api/v1/instances"


def _fixture_registration(name: str) -> dict:
    for line in (FIXTURES / name).read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "http":
            return json.loads(rec["body"]) if isinstance(rec["body"], str) else rec["body"]
    raise AssertionError("no registration in fixture")


async def test_create_then_reregister_keeps_omitted_fields(console):
    _, v = await console.user("VIEWER")
    r = await console.client.post(REG, headers=console.auth(v),
                                  json={"name": "reg-a", "provider": "fly", "region": "sea", "tags": {"a": "1"}})
    assert r.status_code == 201, r.text
    a = r.json()
    assert a["status"] == "RUNNING" and a["teamId"] is None
    assert a["geo"] == {"lat": 47.45, "lon": -122.3, "label": "Seattle", "source": "REGION_TABLE"}
    r = await console.client.post(REG, headers=console.auth(v), json={"name": "reg-a", "provider": "fly"})
    assert r.status_code == 200 and r.json()["id"] == a["id"] and r.json()["region"] == "sea"
    assert r.json()["tags"] == {"a": "1"}
    r = await console.client.post(REG, headers=console.auth(v),
                                  json={"name": "reg-a", "sshEndpoint": "x:22", "ssh_endpoint": "ignored-snake"})
    assert r.json()["sshEndpoint"] == "x:22"
    r = await console.client.post(REG, headers=console.auth(v), json={"name": "reg-a", "sshEndpoint": None})
    assert r.status_code == 200 and r.json()["sshEndpoint"] is None
    r = await console.client.post(REG, headers=console.auth(v), json={"name": "reg-a", "disk_gb": 20})
    assert r.json()["diskGb"] == 20


@pytest.mark.parametrize("body,field", [
    ({"name": "My Instance!", "provider": "fly"}, "name"),
    ({"name": "-a", "provider": "fly"}, "name"),
    ({"name": "a" * 64, "provider": "fly"}, "name"),
    ({"name": "ok-name", "provider": "heroku"}, "provider"),
    ({"name": "ok-name", "provider": "fly", "configHash": "not-a-sha"}, "configHash"),
    ({"name": "ok-name"}, "provider"),
    ({"name": "ok-name", "provider": "fly", "diskGb": 0}, "diskGb"),
    ({"name": "ok-name", "provider": "fly", "tags": {"bad key": "x"}}, "tags.bad key"),
    ({"name": "ok-name", "provider": "fly", "geo": {"lat": 100, "lon": 0}}, "geo.lat"),
])
async def test_invalid_bodies_are_422_with_details(console, admin, body, field):
    r = await console.client.post(REG, headers=console.auth(admin), json=body)
    assert r.status_code == 422, r.text
    doc = r.json()
    assert doc["statusCode"] == 422 and doc["error"] == "Unprocessable Entity"
    assert field in [d["field"] for d in doc["details"]]
    r = await console.client.get("/api/v1/instances", headers=console.auth(admin))
    assert r.json()["pagination"]["total"] == 0


async def test_malformed_and_oversized_bodies(console, admin):
    r = await console.client.post(REG, headers={**console.auth(admin), "Content-Type": "application/json"},
                                  content=b"not-json")
    assert r.status_code == 400 and r.json()["error"] == "Bad Request"
    r = await console.client.post(REG, headers={**console.auth(admin), "Content-Type": "application/json"},
                                  content=b'{"name": NaN}')
    assert r.status_code == 400
    big = json.dumps({"name": "big", "provider": "fly", "tags": {"k": "x" * (1024 * 1024)}})
    r = await console.client.post(REG, headers={**console.auth(admin), "Content-Type": "application/json"},
                                  content=big.encode())
    assert r.status_code == 413 and r.json()["statusCode"] == 413
    r = await console.client.post(REG, content=b"not-json")
    assert r.status_code == 401  # authentication comes before body parsing


async def test_provider_aliases_and_sizing(console, admin):
    r = await console.client.post(REG, headers=console.auth(admin), json={"name": "k", "provider": "K8S"})
    assert r.json()["provider"] == "kubernetes"
    r = await console.client.post(REG, headers=console.auth(admin),
                                  json={"name": "sz-a", "provider": "fly", "sizeId": "shared-cpu-1x", "diskGb": 10})
    assert r.status_code == 201 and r.json()["sizeId"] == "shared-cpu-1x" and r.json()["diskGb"] == 10


async def test_geo_sources(console, admin):
    r = await console.client.post(REG, headers=console.auth(admin), json={
        "name": "geo-a", "provider": "docker", "region": "local", "geo": {"lat": 10, "lon": 20, "label": "Lab"}})
    assert r.json()["geo"]["source"] == "AGENT" and r.json()["geo"]["label"] == "Lab"
    r = await console.client.post(REG, headers=console.auth(admin), json={
        "name": "geo-b", "provider": "docker", "region": "local", "tags": {"geo_lat": "1.5", "geo_lon": "2.5"}})
    assert r.json()["geo"]["source"] == "TAGS" and r.json()["geo"]["label"] == "1.50, 2.50"
    r = await console.client.post(REG, headers=console.auth(admin), json={"name": "geo-c", "provider": "docker",
                                                                          "region": "local"})
    assert r.json()["geo"] is None


async def test_name_reuse_after_deregistration(console, admin):
    _, op = await console.user("OPERATOR")
    first = await console.register(admin, "reuse-me")
    r = await console.client.delete(f"/api/v1/instances/{first['id']}", headers=console.auth(op))
    assert r.status_code == 200 and r.json()["status"] == "DEREGISTERED" and r.json()["removedAt"]
    r = await console.client.delete(f"/api/v1/instances/{first['id']}", headers=console.auth(op))
    assert r.status_code == 409
    second = await console.register(admin, "reuse-me")
    assert second["id"] != first["id"] and second["status"] == "RUNNING"
    r = await console.client.get(f"/api/v1/instances/{first['id']}", headers=console.auth(admin))
    assert r.json()["status"] == "DEREGISTERED"
    r = await console.client.get("/api/v1/instances", headers=console.auth(admin), params={"status": "DEREGISTERED"})
    assert [i["id"] for i in r.json()["data"]] == [first["id"]]
    r = await console.client.get("/api/v1/instances", headers=console.auth(admin), params={"includeRemoved": "true"})
    assert r.json()["pagination"]["total"] == 2


async def test_concurrent_registrations_of_one_name(console, admin):
    async def one():
        return await console.client.post(REG, headers=console.auth(admin), json={"name": "race", "provider": "fly"})

    results = await asyncio.gather(*(one() for _ in range(5)))
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 200, 200, 200, 201]
    assert len({r.json()["id"] for r in results}) == 1


async def test_agent_body_from_the_fixture(console):
    body = _fixture_registration("wire-v1.1.0-full.jsonl")
    headers = {**console.auth(console.bootstrap_key), "X-Agent-Version": "1.1.0-debian"}
    r = await console.client.post(REG, headers=headers, json=body)
    assert r.status_code == 201, r.text
    inst = r.json()
    assert inst["name"] == body["instance_id"] and inst["id"] != body["instance_id"]
    assert inst["provider"] == "docker" and inst["region"] == "local"
    assert inst["tags"] == {"env": "test", "team": "platform"}
    assert inst["agent"]["agentInstanceId"] == body["instance_id"]
    assert inst["agent"]["version"] == "1.1.0-debian" and inst["agent"]["connected"] is False
    r = await console.client.post(REG, headers=headers, json=body)
    assert r.status_code == 200 and r.json()["id"] == inst["id"]
    no_tags = {k: v for k, v in body.items() if k != "tags"}
    r = await console.client.post(REG, headers=headers, json=no_tags)
    assert r.json()["tags"] == {"env": "test", "team": "platform"}
    async with console.rt.db.read() as s:
        entry = await s.scalar(select(AuditLog).where(AuditLog.resource_id == inst["id"], AuditLog.action == "CREATE"))
    assert entry.metadata_["via"] == "agent" and entry.metadata_["credential"] == "bootstrap"


async def test_agent_body_empty_provider_and_name_normaliser(console):
    body = _fixture_registration("wire-v1.1.0-registration-retry.jsonl")
    r = await console.client.post(REG, headers=console.auth(console.bootstrap_key), json=body)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "vm" and r.json()["provider"] is None and r.json()["region"] is None
    r = await console.client.post(REG, headers=console.auth(console.bootstrap_key), json=body)
    assert r.status_code == 200
    r = await console.client.post(REG, headers=console.auth(console.bootstrap_key),
                                  json={**body, "provider": "docker"})
    assert r.json()["provider"] == "docker"
    r = await console.client.post(REG, headers=console.auth(console.bootstrap_key),
                                  json={"instance_id": "MyBox.local", "hostname": "MyBox.local"})
    assert r.status_code == 201 and r.json()["name"] == "mybox-local"
    r = await console.client.post(REG, headers=console.auth(console.bootstrap_key),
                                  json={"instance_id": "x", "hostname": "!!!"})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "hostname"
    r = await console.client.post(REG, headers=console.auth(console.bootstrap_key),
                                  json={"instance_id": "y" * 129})
    assert r.status_code == 422


async def test_issue_agent_key(console):
    _, v = await console.user("VIEWER")
    r = await console.client.post(REG, headers=console.auth(v), json={"name": "ik", "provider": "fly",
                                                                     "issueAgentKey": True})
    assert r.status_code == 403
    r = await console.client.post(REG, headers=console.auth(console.bootstrap_key),
                                  json={"instanceId": "ik-agent", "provider": "fly", "issueAgentKey": True})
    assert r.status_code == 201 and r.json()["agentKey"].startswith("ak_")
    key = r.json()["agentKey"]
    r2 = await console.client.post(REG, headers=console.auth(key), json={"instanceId": "ik-agent"})
    assert r2.status_code == 200 and r2.json()["id"] == r.json()["id"] and "agentKey" not in r2.json()
    r3 = await console.client.post(REG, headers=console.auth(key), json={"name": "ik-agent", "issueAgentKey": True})
    assert r3.status_code == 403


async def test_agent_key_cannot_take_another_instance(console, admin):
    a = await console.register(admin, "ak-1")
    await console.register(admin, "ak-2")
    r = await console.client.post("/api/v1/admin/api-keys", headers=console.auth(admin),
                                  json={"kind": "AGENT", "instanceId": a["id"], "name": "agent"})
    key = r.json()["key"]
    r = await console.client.post(REG, headers=console.auth(key), json={"name": "ak-2", "provider": "fly"})
    assert r.status_code == 403 and "ak-1" in r.json()["message"]
    r = await console.client.post(REG, headers=console.auth(key), json={"name": "unused-name", "provider": "fly"})
    assert r.status_code == 200 and r.json()["id"] == a["id"] and r.json()["name"] == "ak-1"
    r = await console.client.post(REG, headers=console.auth(key), json={"instance_id": "ak-2"})
    assert r.status_code == 403


async def test_list_filters_pagination_and_search(console, admin):
    for i in range(5):
        await console.register(admin, f"list-{i}", region="sea" if i % 2 else "iad")
    r = await console.client.get("/api/v1/instances", headers=console.auth(admin),
                                 params={"limit": 2, "page": 2})
    assert r.json()["pagination"] == {"page": 2, "limit": 2, "total": 5, "totalPages": 3}
    assert len(r.json()["data"]) == 2
    r = await console.client.get("/api/v1/instances", headers=console.auth(admin), params={"pageSize": 3})
    assert r.json()["pagination"]["limit"] == 3
    for bad in ({"limit": 101}, {"page": 0}, {"limit": "x"}, {"status": "BOGUS"}, {"provider": "nope"},
                {"sort": "weird"}):
        r = await console.client.get("/api/v1/instances", headers=console.auth(admin), params=bad)
        assert r.status_code == 422, bad
    r = await console.client.get("/api/v1/instances", headers=console.auth(admin), params={"search": "SEA"})
    assert {i["region"] for i in r.json()["data"]} == {"sea"}
    some = r.json()["data"][0]
    r = await console.client.get("/api/v1/instances", headers=console.auth(admin), params={"search": some["id"]})
    assert [i["id"] for i in r.json()["data"]] == [some["id"]]
    r = await console.client.get("/api/v1/instances", headers=console.auth(admin),
                                 params={"status": "running,suspended", "sort": "name"})
    names = [i["name"] for i in r.json()["data"]]
    assert names == sorted(names) and len(names) == 5
    r = await console.client.get("/api/v1/instances/" + "a" * 200, headers=console.auth(admin))
    assert r.status_code == 400
    r = await console.client.get("/api/v1/instances/unknown-id", headers=console.auth(admin))
    assert r.status_code == 404 and r.json()["message"] == "Instance not found"


async def test_version_status(console, admin):
    console.rt.settings.SINDRI_MIN_INSTANCE_VERSION = "3.4.0"
    a = await console.register(admin, "v-old", sindriVersion="3.0.0")
    b = await console.register(admin, "v-new", sindriVersion="3.4.1")
    c = await console.register(admin, "v-none")
    assert (a["versionStatus"], b["versionStatus"], c["versionStatus"]) == ("OUTDATED", "CURRENT", "UNKNOWN")
    r = await console.client.get("/api/v1/instances", headers=console.auth(admin), params={"versionStatus": "OUTDATED"})
    assert [i["name"] for i in r.json()["data"]] == ["v-old"]


async def test_nul_and_lone_surrogates_are_422_not_database_errors(console, admin):
    for body in ({"name": "nul-a", "provider": "fly", "tags": {"a": "x\u0000y"}},
                 {"name": "nul-b", "provider": "fly", "region": "se\u0000a"},
                 {"instance_id": "nul\u0000c"}):
        r = await console.client.post(REG, headers=console.auth(admin), json=body)
        assert r.status_code == 422, (body, r.text)
    r = await console.client.post(REG, headers={**console.auth(admin), "Content-Type": "application/json"},
                                  content=b'{"name": "sur-a", "provider": "fly", "sshEndpoint": "\\ud800"}')
    assert r.status_code == 422
    r = await console.client.post("/api/v1/admin/teams", headers=console.auth(admin), json={"name": "T",
                                                                                          "description": "a\u0000"})
    assert r.status_code == 422
    r = await console.client.get("/api/v1/instances", headers=console.auth(admin), params={"search": "a\u0000b"})
    assert r.status_code == 400
