"""Users, teams, keys and team scope (10-core §4, 00 §5)."""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from sindri_console.models.audit import AuditLog


async def _team(console, admin, name):
    r = await console.client.post("/api/v1/admin/teams", headers=console.auth(admin), json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()


async def test_me_and_own_keys(console):
    uid, v = await console.user("VIEWER")
    _, other = await console.user("VIEWER")
    r = await console.client.get("/api/v1/me", headers=console.auth(v))
    me = r.json()
    assert me["id"] == uid and me["role"] == "VIEWER" and me["effectiveRole"] == "VIEWER" and me["teams"] == []
    keys = (await console.client.get("/api/v1/me/api-keys", headers=console.auth(v))).json()["data"]
    assert me["apiKey"]["id"] == keys[0]["id"] and len(keys) == 1
    other_keys = (await console.client.get("/api/v1/me/api-keys", headers=console.auth(other))).json()["data"]
    r = await console.client.delete(f"/api/v1/me/api-keys/{other_keys[0]['id']}", headers=console.auth(v))
    assert r.status_code == 404
    r = await console.client.post("/api/v1/me/api-keys", headers=console.auth(v), json={"name": "second"})
    assert re.fullmatch(r"sk_[0-9a-f]{64}", r.json()["key"]) and r.json()["keyPrefix"] == r.json()["key"][:11]
    await console.client.delete(f"/api/v1/me/api-keys/{r.json()['id']}", headers=console.auth(v))
    data = (await console.client.get("/api/v1/me/api-keys", headers=console.auth(v))).json()["data"]
    assert len(data) == 1
    data = (await console.client.get("/api/v1/me/api-keys", headers=console.auth(v),
                                     params={"includeRevoked": "true"})).json()["data"]
    assert len(data) == 2
    for body in ({"name": "x", "expiresInDays": 0}, {"name": ""},
                 {"name": "x", "expiresInDays": 5, "expiresAt": "2099-01-01T00:00:00Z"},
                 {"name": "x", "expiresAt": "2099-01-01T00:00:00"}):
        r = await console.client.post("/api/v1/me/api-keys", headers=console.auth(v), json=body)
        assert r.status_code == 422, body


async def test_fifty_key_limit(console):
    _, v = await console.user("VIEWER")
    for i in range(49):
        r = await console.client.post("/api/v1/me/api-keys", headers=console.auth(v), json={"name": f"k{i}"})
        assert r.status_code == 201
    r = await console.client.post("/api/v1/me/api-keys", headers=console.auth(v), json={"name": "over"})
    assert r.status_code == 409


async def test_users_admin(console, admin):
    _, op = await console.user("OPERATOR")
    assert (await console.client.get("/api/v1/admin/users", headers=console.auth(op))).status_code == 403
    r = await console.client.post("/api/v1/admin/users", headers=console.auth(admin),
                                  json={"email": "New.User@Example.test", "role": "operator"})
    assert r.status_code == 201
    user = r.json()
    assert user["email"] == "new.user@example.test" and user["role"] == "OPERATOR" and user["isActive"] is True
    r = await console.client.post("/api/v1/admin/users", headers=console.auth(admin),
                                  json={"email": "NEW.user@example.test"})
    assert r.status_code == 409
    for body in ({"email": "no-at-sign"}, {"email": "a@b.test", "role": "ROOT"}, {"email": "a b@c.test"}):
        assert (await console.client.post("/api/v1/admin/users", headers=console.auth(admin), json=body)
                ).status_code == 422
    r = await console.client.patch(f"/api/v1/admin/users/{user['id']}", headers=console.auth(admin),
                                   json={"role": "DEVELOPER"})
    assert r.status_code == 200 and r.json()["role"] == "DEVELOPER"
    async with console.rt.db.read() as s:
        e = await s.scalar(select(AuditLog).where(AuditLog.action == "UPDATE", AuditLog.resource == "user"))
    assert e.metadata_["changes"]["role"] == {"from": "OPERATOR", "to": "DEVELOPER"}
    r = await console.client.get("/api/v1/admin/users", headers=console.auth(admin), params={"role": "DEVELOPER"})
    assert {u["role"] for u in r.json()["data"]} == {"DEVELOPER"}
    assert (await console.client.get("/api/v1/admin/users", headers=console.auth(admin),
                                     params={"role": "BOSS"})).status_code == 422
    r = await console.client.delete(f"/api/v1/admin/users/{user['id']}", headers=console.auth(admin))
    assert r.status_code == 204
    assert (await console.client.get(f"/api/v1/admin/users/{user['id']}", headers=console.auth(admin))
            ).status_code == 404


async def test_last_admin_is_protected(console, admin):
    me = (await console.client.get("/api/v1/me", headers=console.auth(admin))).json()
    for body in ({"role": "VIEWER"}, {"isActive": False}):
        r = await console.client.patch(f"/api/v1/admin/users/{me['id']}", headers=console.auth(admin), json=body)
        assert r.status_code == 409, body
    r = await console.client.delete(f"/api/v1/admin/users/{me['id']}", headers=console.auth(admin))
    assert r.status_code == 409


async def test_deactivation_blocks_at_once(console, admin):
    uid, v = await console.user("VIEWER")
    await console.client.patch(f"/api/v1/admin/users/{uid}", headers=console.auth(admin), json={"isActive": False})
    assert (await console.client.get("/api/v1/instances", headers=console.auth(v))).status_code == 401
    await console.client.patch(f"/api/v1/admin/users/{uid}", headers=console.auth(admin), json={"isActive": True})
    assert (await console.client.get("/api/v1/instances", headers=console.auth(v))).status_code == 200


async def test_admin_api_keys(console, admin):
    duid, _ = await console.user("DEVELOPER")
    r = await console.client.post("/api/v1/admin/api-keys", headers=console.auth(admin),
                                  json={"kind": "USER", "userId": duid, "name": "ci"})
    assert r.status_code == 201 and r.json()["key"].startswith("sk_")
    r = await console.client.post("/api/v1/admin/api-keys", headers=console.auth(admin),
                                  json={"kind": "USER", "userId": duid, "name": "x", "role": "ADMIN"})
    assert r.status_code == 422
    inst = await console.register(admin, "ak-1")
    r = await console.client.post("/api/v1/admin/api-keys", headers=console.auth(admin),
                                  json={"kind": "AGENT", "instanceId": inst["id"], "name": "agent"})
    assert r.status_code == 201 and r.json()["instanceName"] == "ak-1" and r.json()["role"] is None
    akey = r.json()
    r = await console.client.get("/api/v1/admin/api-keys", headers=console.auth(admin),
                                 params={"kind": "AGENT", "instanceId": inst["id"]})
    assert [k["id"] for k in r.json()["data"]] == [akey["id"]]
    text = json.dumps(r.json())
    assert akey["key"] not in text and not re.search(r"[0-9a-f]{64}", text)
    r = await console.client.delete(f"/api/v1/admin/api-keys/{akey['id']}", headers=console.auth(admin))
    assert r.status_code == 200 and r.json()["status"] == "REVOKED" and r.json()["revokedAt"]
    r = await console.client.post("/api/v1/instances", headers=console.auth(akey["key"]), json={"instanceId": "x"})
    assert r.status_code == 401
    r = await console.client.post("/api/v1/admin/api-keys", headers=console.auth(admin),
                                  json={"kind": "AGENT", "instanceId": "nope", "name": "agent"})
    assert r.status_code == 404
    _, op = await console.user("OPERATOR")
    await console.client.delete(f"/api/v1/instances/{inst['id']}", headers=console.auth(op))
    r = await console.client.post("/api/v1/admin/api-keys", headers=console.auth(admin),
                                  json={"kind": "AGENT", "instanceId": inst["id"], "name": "agent"})
    assert r.status_code == 409
    audit = (await console.client.get("/api/v1/audit", headers=console.auth(admin), params={"limit": 200})).json()
    assert akey["key"] not in json.dumps(audit)


async def test_teams_members_and_scope(console, admin):
    d_uid, dev = await console.user("DEVELOPER")
    o_uid, op = await console.user("OPERATOR")
    _, viewer = await console.user("VIEWER")
    t1 = await _team(console, admin, "Platform")
    r = await console.client.post("/api/v1/admin/teams", headers=console.auth(admin), json={"name": "platform"})
    assert r.status_code == 409
    t2 = await _team(console, admin, "Data")
    r = await console.client.post(f"/api/v1/admin/teams/{t1['id']}/members", headers=console.auth(admin),
                                  json={"userId": d_uid})
    assert r.status_code == 201 and r.json()["role"] is None and r.json()["effectiveRole"] == "DEVELOPER"
    assert (await console.client.post(f"/api/v1/admin/teams/{t1['id']}/members", headers=console.auth(admin),
                                      json={"userId": d_uid})).status_code == 409
    assert (await console.client.post(f"/api/v1/admin/teams/{t1['id']}/members", headers=console.auth(admin),
                                      json={"userId": "nobody"})).status_code == 422
    i1 = await console.register(admin, "i1")
    i2 = await console.register(admin, "i2")
    i3 = await console.register(admin, "i3")
    for team, inst in ((t1, i1), (t2, i2)):
        r = await console.client.post(f"/api/v1/admin/teams/{team['id']}/instances", headers=console.auth(admin),
                                      json={"instanceIds": [inst["id"]]})
        assert r.status_code == 200 and r.json()["data"][0]["teamId"] == team["id"]
    listed = {i["id"] for i in (await console.client.get("/api/v1/instances", headers=console.auth(dev))
                                ).json()["data"]}
    assert listed == {i1["id"], i3["id"]}
    assert (await console.client.get(f"/api/v1/instances/{i2['id']}", headers=console.auth(dev))).status_code == 404
    assert (await console.client.delete(f"/api/v1/instances/{i2['id']}", headers=console.auth(dev))
            ).status_code == 403  # below OPERATOR: the role table answers first
    listed = {i["id"] for i in (await console.client.get("/api/v1/instances", headers=console.auth(viewer))
                                ).json()["data"]}
    assert listed == {i1["id"], i2["id"], i3["id"]}
    r = await console.client.post("/api/v1/instances", headers=console.auth(dev), json={"name": "i2"})
    assert r.status_code == 409
    # member role cap
    r = await console.client.post(f"/api/v1/admin/teams/{t1['id']}/members", headers=console.auth(admin),
                                  json={"userId": o_uid, "role": "VIEWER"})
    assert r.status_code == 201
    r = await console.client.delete(f"/api/v1/instances/{i1['id']}", headers=console.auth(op))
    assert r.status_code == 403 and "Platform" in r.json()["message"]
    r = await console.client.patch(f"/api/v1/admin/teams/{t1['id']}/members/{o_uid}", headers=console.auth(admin),
                                   json={"role": None})
    assert r.status_code == 200 and r.json()["role"] is None
    # team deletion needs no live instances
    r = await console.client.delete(f"/api/v1/admin/teams/{t1['id']}", headers=console.auth(admin))
    assert r.status_code == 409 and "1" in r.json()["message"]
    r = await console.client.delete(f"/api/v1/admin/teams/{t1['id']}/instances/{i1['id']}", headers=console.auth(admin))
    assert r.status_code == 204
    assert (await console.client.delete(f"/api/v1/admin/teams/{t1['id']}", headers=console.auth(admin))
            ).status_code == 204
    # moving I3 into T2 writes an event and an audit entry
    await console.client.post(f"/api/v1/admin/teams/{t2['id']}/instances", headers=console.auth(admin),
                              json={"instanceIds": [i3["id"]]})
    assert (await console.client.get(f"/api/v1/instances/{i3['id']}", headers=console.auth(admin))
            ).json()["teamId"] == t2["id"]
    r = await console.client.get("/api/v1/audit", headers=console.auth(admin),
                                 params={"resource_id": i3["id"], "action": "UPDATE"})
    assert any(e["teamId"] == t2["id"] for e in r.json()["data"])
    r = await console.client.get("/api/v1/audit", headers=console.auth(admin),
                                 params={"resourceId": i3["id"], "action": "UPDATE"})
    assert r.json()["pagination"]["total"] >= 1


async def test_audit_route(console, admin):
    _, op = await console.user("OPERATOR")
    assert (await console.client.get("/api/v1/audit", headers=console.auth(op))).status_code == 403
    inst = await console.register(admin, "aud-1")
    r = await console.client.delete(f"/api/v1/instances/{inst['id']}", headers=console.auth(op))
    rid = r.headers["x-request-id"]
    r = await console.client.get("/api/v1/audit", headers=console.auth(admin), params={"action": "DELETE"})
    entry = r.json()["data"][0]
    assert entry["resource"] == "instance" and entry["metadata"]["mode"] == "deregister"
    assert entry["requestId"] == rid and entry["actorKind"] == "USER"
    for bad in ({"action": "BOGUS"}, {"limit": 201},
                {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}):
        assert (await console.client.get("/api/v1/audit", headers=console.auth(admin), params=bad)
                ).status_code == 422
    ts = [e["timestamp"] for e in (await console.client.get("/api/v1/audit", headers=console.auth(admin))
                                   ).json()["data"]]
    assert ts == sorted(ts, reverse=True)


async def test_patch_user_rejects_nulls_for_required_fields(console, admin):
    uid, _ = await console.user("VIEWER")
    for body in ({"role": None}, {"email": None}, {"isActive": None}, {"role": "boss"}):
        r = await console.client.patch(f"/api/v1/admin/users/{uid}", headers=console.auth(admin), json=body)
        assert r.status_code == 422, body
    r = await console.client.patch(f"/api/v1/admin/users/{uid}", headers=console.auth(admin), json={"name": None})
    assert r.status_code == 200 and r.json()["name"] is None
