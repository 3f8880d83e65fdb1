"""Command routes: validation, gate, scope, bulk/script 207 bodies, waiting, history, detail (20-ops §6)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import update

from sindri_console.kit.clock import utcnow
from sindri_console.kit.ids import new_id
from sindri_console.models.identity import Team, TeamMember
from sindri_console.models.instance import Instance

from .conftest import agent_frame, connect_fake, set_agent


async def _post(console: Any, key: str, body: Any, path: str = "/api/v1/commands") -> Any:
    # ASCII JSON so that lone surrogates travel as \uXXXX escapes, as a hostile client would send them
    return await console.client.post(path, content=json.dumps(body).encode(),
                                     headers={**console.auth(key), "content-type": "application/json"})


async def _team(console: Any, name: str, instance_id: str, members: dict[str, str | None]) -> str:
    tid = new_id()
    now = utcnow()
    async with console.rt.db.write() as s:
        s.add(Team(id=tid, name=name, created_at=now, updated_at=now))
        await s.flush()
        for uid, role in members.items():
            s.add(TeamMember(team_id=tid, user_id=uid, role=role, added_at=now))
        await s.execute(update(Instance).where(Instance.id == instance_id).values(team_id=tid))
    return tid


@pytest.mark.parametrize("body,field", [
    ({"command": "ls"}, "instanceId"),
    ({"instanceId": "i"}, "body"),
    ({"instanceId": "i", "command": "ls", "argv": ["ls"]}, "body"),
    ({"instanceId": "i", "argv": ["ls"], "args": ["-l"]}, "body"),
    ({"instanceId": "i", "command": ""}, "command"),
    ({"instanceId": "i", "command": "x" * 4097}, "command"),
    ({"instanceId": "i", "command": "ls", "args": ["a"] * 65}, "args"),
    ({"instanceId": "i", "argv": []}, "argv"),
    ({"instanceId": "i", "argv": ["ls", "y" * 1025]}, "argv"),
    ({"instanceId": "i", "command": "ls", "env": {"1BAD": "x"}}, "env"),
    ({"instanceId": "i", "command": "ls", "env": {"A": 1}}, "env.A"),
    ({"instanceId": "i", "command": "ls", "env": {f"K{i}": "v" for i in range(101)}}, "env"),
    ({"instanceId": "i", "command": "ls", "workingDir": "relative/dir"}, "workingDir"),
    ({"instanceId": "i", "command": "ls", "timeoutMs": 999}, "timeoutMs"),
    ({"instanceId": "i", "command": "ls", "timeoutMs": 3_600_001}, "timeoutMs"),
    ({"instanceId": "i", "command": "ls", "timeoutMs": "5000"}, "timeoutMs"),
    ({"instanceId": "i", "command": "ls", "queueTtlSec": 5}, "queueTtlSec"),
    ({"instanceId": "i", "command": "ls", "wait": "yes"}, "wait"),
    ({"instanceId": "i", "command": "ls", "stdin": "x" * 524_289}, "stdin"),
    ([1, 2], "body"),
])
async def test_single_validation(console: Any, admin: str, body: Any, field: str) -> None:
    r = await _post(console, admin, body)
    assert r.status_code == 422, r.text
    doc = r.json()
    assert doc["statusCode"] == 422 and any(d["field"] == field for d in doc["details"]), doc


async def test_malformed_json_is_400(console: Any, admin: str) -> None:
    r = await console.client.post("/api/v1/commands", content=b"{nope", headers={
        **console.auth(admin), "content-type": "application/json"})
    assert r.status_code == 400


async def test_gate_answers(console: Any, admin: str) -> None:
    _, dev = await console.user("DEVELOPER")
    never = await console.register(admin, "never")
    r = await _post(console, dev, {"instanceId": never["id"], "command": "ls"})
    assert r.status_code == 503 and "No agent has connected for instance 'never'" in r.json()["message"]
    legacy = await console.register(admin, "legacy")
    await set_agent(console, legacy["id"], capabilities=["heartbeat", "metrics", "terminal", "llm_usage"],
                    dialect="draupnir", version="1.1.0", connected=False)
    r = await _post(console, dev, {"instanceId": legacy["id"], "command": "ls"})
    assert r.status_code == 409 and "does not support commands" in r.json()["message"]
    assert "draupnir 1.1.0" in r.json()["message"] and "sindri-console agent" in r.json()["message"]
    r = await _post(console, dev, {"instanceId": new_id(), "command": "ls"})
    assert r.status_code == 404 and r.json()["message"] == "Instance not found"
    r = await _post(console, dev, {"instanceId": "not a valid id!", "command": "ls"})
    assert r.status_code == 404
    hist = await console.client.get("/api/v1/commands/history", headers=console.auth(dev))
    assert hist.json()["pagination"]["total"] == 0
    # removed instance
    gone = await console.register(admin, "gone")
    await set_agent(console, gone["id"])
    assert (await console.client.delete(f"/api/v1/instances/{gone['id']}", headers=console.auth(admin))).status_code == 200
    r = await _post(console, dev, {"instanceId": gone["id"], "command": "ls"})
    assert r.status_code == 409 and r.json()["message"] == "Instance 'gone' is DEREGISTERED"


async def test_roles_and_team_scope(console: Any, admin: str) -> None:
    _, viewer = await console.user("VIEWER")
    dev_id, dev = await console.user("DEVELOPER")
    inst = await console.register(admin, "team-box")
    other = await console.register(admin, "other-box")
    await set_agent(console, inst["id"], connected=False)
    await set_agent(console, other["id"], connected=False)
    r = await _post(console, viewer, {"instanceId": inst["id"], "command": "ls"})
    assert r.status_code == 403
    # dev is a VIEWER member of the team owning inst: capped below DEVELOPER there
    await _team(console, "t-cap", inst["id"], {dev_id: "VIEWER"})
    r = await _post(console, dev, {"instanceId": inst["id"], "command": "ls", "wait": False})
    assert r.status_code == 403 and "DEVELOPER" in r.json()["message"]
    # an instance of a team dev is not in is invisible
    await _team(console, "t-other", other["id"], {})
    r = await _post(console, dev, {"instanceId": other["id"], "command": "ls"})
    assert r.status_code == 404
    created = await _post(console, admin, {"instanceId": other["id"], "command": "ls", "wait": False})
    assert created.status_code == 202
    r = await console.client.get(f"/api/v1/commands/{created.json()['id']}", headers=console.auth(dev))
    assert r.status_code == 404 and r.json()["message"] == "Command execution not found"
    hist = await console.client.get("/api/v1/commands/history", headers=console.auth(dev))
    assert hist.json()["data"] == []


async def test_vault_key_required_for_env_and_stdin(console: Any, admin: str) -> None:
    inst = await console.register(admin, "box")
    await set_agent(console, inst["id"], connected=False)
    console.rt.settings.SECRET_VAULT_KEY = None
    r = await _post(console, admin, {"instanceId": inst["id"], "command": "ls", "env": {"A": "b"}})
    assert r.status_code == 503 and "SECRET_VAULT_KEY" in r.json()["message"]
    r = await _post(console, admin, {"instanceId": inst["id"], "command": "ls", "stdin": "x"})
    assert r.status_code == 503
    r = await _post(console, admin, {"instanceId": inst["id"], "command": "ls", "wait": False})
    assert r.status_code == 202


async def test_offline_agent_does_not_wait(console: Any, admin: str) -> None:
    inst = await console.register(admin, "box")
    await set_agent(console, inst["id"], connected=False)
    r = await _post(console, admin, {"instanceId": inst["id"], "command": "sleep 1"})
    assert r.status_code == 202 and r.json()["status"] == "QUEUED"
    assert r.json()["instanceName"] == "box" and r.json()["origin"] == "API" and r.json()["mode"] == "SHELL"


async def _answer(console: Any, conn: Any, exit_code: int, stdout: str) -> None:
    for _ in range(200):
        frames = conn.frames("command:dispatch")
        if frames:
            cid = frames[-1]["commandId"]
            await agent_frame(console.rt, conn, "command:ack", {"commandId": cid, "accepted": True}, None)
            await agent_frame(console.rt, conn, "command:result",
                                          {"commandId": cid, "exitCode": exit_code, "stdout": stdout}, None)
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no dispatch")


async def test_wait_returns_201_with_result(console: Any, admin: str) -> None:
    inst = await console.register(admin, "box")
    conn = await connect_fake(console, inst["id"])
    answer = asyncio.create_task(_answer(console, conn, 3, "out\n"))
    r = await _post(console, admin, {"instanceId": inst["id"], "argv": ["false"]})
    await answer
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["status"] == "FAILED" and doc["exitCode"] == 3 and doc["stdout"] == "out\n"
    assert doc["errorCode"] == "EXIT_CODE" and doc["mode"] == "EXEC" and doc["command"] == "false"


async def test_wait_elapses_to_202(console: Any, admin: str, make_settings: Any) -> None:
    inst = await console.register(admin, "box")
    await connect_fake(console, inst["id"])
    console.rt.settings.COMMAND_MAX_WAIT_SECONDS = 1
    r = await _post(console, admin, {"instanceId": inst["id"], "command": "sleep 100"})
    assert r.status_code == 202 and r.json()["status"] == "SENT"
    assert r.headers["location"].endswith(r.json()["id"])


async def test_bulk_207_mixed(console: Any, admin: str) -> None:
    _, op = await console.user("OPERATOR")
    _, dev = await console.user("DEVELOPER")
    online = await console.register(admin, "on")
    offline = await console.register(admin, "off")
    legacy = await console.register(admin, "legacy")
    conn = await connect_fake(console, online["id"])
    await set_agent(console, offline["id"], connected=False)
    await set_agent(console, legacy["id"], capabilities=["heartbeat"], dialect="draupnir", version="1.1.0")
    missing = new_id()
    body = {"instanceIds": [online["id"], missing, offline["id"], legacy["id"]], "command": "uptime",
            "env": {"REGION": "eu"}}
    assert (await _post(console, dev, body, "/api/v1/commands/bulk")).status_code == 403
    answer = asyncio.create_task(_answer(console, conn, 0, "up\n"))
    r = await _post(console, op, body, "/api/v1/commands/bulk")
    await answer
    assert r.status_code == 207, r.text
    doc = r.json()
    assert [x["instanceId"] for x in doc["results"]] == body["instanceIds"]
    on, miss, off, leg = doc["results"]
    assert on["accepted"] and on["execution"]["status"] == "SUCCEEDED" and on["execution"]["stdout"] == "up\n"
    assert miss["error"] == {"code": "NOT_FOUND", "statusCode": 404, "message": "Instance not found"}
    assert off["accepted"] and off["execution"]["status"] == "QUEUED"
    assert leg["error"]["code"] == "UNSUPPORTED" and leg["error"]["statusCode"] == 409
    assert doc["summary"] == {"total": 4, "accepted": 2, "rejected": 2, "succeeded": 1, "failed": 0,
                              "timedOut": 0, "cancelled": 0, "pending": 1}
    assert on["execution"]["batchId"] == off["execution"]["batchId"] == doc["batchId"]
    assert on["execution"]["origin"] == "BULK"
    audit = (await console.client.get("/api/v1/audit", params={"resource": "command"},
                                      headers=console.auth(admin))).json()["data"]
    assert len(audit) == 1 and audit[0]["resourceId"] == doc["batchId"]
    assert audit[0]["metadata"]["instanceIds"] == [online["id"], offline["id"]]
    assert audit[0]["metadata"]["envKeys"] == ["REGION"] and "eu" not in str(audit[0]["metadata"])
    for bad in ({"instanceIds": [], "command": "x"}, {"instanceIds": ["a", "a"], "command": "x"},
                {"instanceIds": [f"i{i}" for i in range(101)], "command": "x"}, {"command": "x"}):
        assert (await _post(console, op, bad, "/api/v1/commands/bulk")).status_code == 422


async def test_bulk_nothing_accepted_is_still_207(console: Any, admin: str) -> None:
    r = await _post(console, admin, {"instanceIds": [new_id()], "command": "x"}, "/api/v1/commands/bulk")
    assert r.status_code == 207 and r.json()["summary"]["accepted"] == 0


async def test_script_route(console: Any, admin: str) -> None:
    _, dev = await console.user("DEVELOPER")
    plain = await console.register(admin, "plain")
    capable = await console.register(admin, "capable")
    await connect_fake(console, plain["id"], capabilities=["heartbeat", "commands"])
    conn = await connect_fake(console, capable["id"])
    script = "#!/bin/bash\necho hello from script\n"
    r = await _post(console, dev, {"instanceIds": [plain["id"], capable["id"]], "script": script,
                                   "interpreter": "/bin/bash", "wait": False}, "/api/v1/commands/script")
    assert r.status_code == 207, r.text
    refused, ok = r.json()["results"]
    assert refused["error"]["code"] == "UNSUPPORTED" and refused["error"]["statusCode"] == 409
    assert "does not support scripts" in refused["error"]["message"]
    [frame] = conn.frames("command:dispatch")
    assert frame["kind"] == "script" and frame["script"] == {"interpreter": "/bin/bash", "content": script}
    assert frame["timeoutMs"] == 60000
    exe = ok["execution"]
    assert exe["mode"] == "SCRIPT" and exe["origin"] == "SCRIPT" and exe["command"] is None and exe["hasScript"]
    assert exe["scriptBytes"] == len(script) and len(exe["scriptSha256"]) == 64
    detail = (await console.client.get(f"/api/v1/commands/{exe['id']}", headers=console.auth(dev))).json()
    assert detail["script"] == script
    one = await _post(console, dev, {"instanceId": capable["id"], "script": "echo 1", "wait": False},
                      "/api/v1/commands/script")
    assert one.status_code == 207 and one.json()["results"][0]["execution"]["interpreter"] == "bash"
    for bad in ({"instanceId": capable["id"], "script": ""}, {"instanceId": capable["id"], "script": "x" * 65_537},
                {"instanceId": capable["id"], "script": "x", "interpreter": "bash -x"},
                {"instanceId": capable["id"], "instanceIds": [capable["id"]], "script": "x"},
                {"script": "x"}):
        r = await _post(console, dev, bad, "/api/v1/commands/script")
        assert r.status_code == 422, bad
    audit = (await console.client.get("/api/v1/audit", params={"resource": "command"},
                                      headers=console.auth(admin))).json()["data"]
    assert all("hello from script" not in str(a["metadata"]) for a in audit)
    assert any(a["metadata"].get("scriptSha256") == "sha256:" + exe["scriptSha256"] for a in audit)


async def test_history_filters_and_clipping(console: Any, admin: str) -> None:
    a = await console.register(admin, "alpha")
    b = await console.register(admin, "beta")
    conn_a = await connect_fake(console, a["id"])
    await set_agent(console, b["id"], connected=False)
    ids = []
    for i in range(3):
        r = await _post(console, admin, {"instanceId": a["id"], "command": f"deploy-step-{i}", "wait": False})
        ids.append(r.json()["id"])
    await _post(console, admin, {"instanceId": b["id"], "command": "other", "wait": False})
    await agent_frame(console.rt, conn_a, "command:result",
                                  {"commandId": ids[0], "exitCode": 0, "stdout": "x" * 10_000}, None)
    h = console.auth(admin)
    doc = (await console.client.get("/api/v1/commands/history", headers=h)).json()
    assert doc["pagination"]["total"] == 4 and doc["data"][0]["command"] == "other"  # newest first
    assert (await console.client.get("/api/v1/commands/history", params={"instanceId": a["id"]},
                                     headers=h)).json()["pagination"]["total"] == 3
    done = (await console.client.get("/api/v1/commands/history", params={"status": "succeeded"},
                                     headers=h)).json()["data"]
    assert [d["id"] for d in done] == [ids[0]]
    assert len(done[0]["stdout"]) == 8192 and done[0]["outputClipped"] is True
    full = (await console.client.get(f"/api/v1/commands/{ids[0]}", headers=h)).json()
    assert len(full["stdout"]) == 10_000 and not full.get("outputClipped")
    found = (await console.client.get("/api/v1/commands/history", params={"search": "STEP-1"}, headers=h)).json()
    assert [d["id"] for d in found["data"]] == [ids[1]]
    page = (await console.client.get("/api/v1/commands/history", params={"limit": 2, "page": 2}, headers=h)).json()
    assert page["pagination"] == {"page": 2, "limit": 2, "total": 4, "totalPages": 2} and len(page["data"]) == 2
    assert (await console.client.get("/api/v1/commands/history", params={"origin": "API,BULK"},
                                     headers=h)).json()["pagination"]["total"] == 4
    future = (await console.client.get("/api/v1/commands/history", params={"from": "2999-01-01T00:00:00Z"},
                                       headers=h)).json()
    assert future["data"] == []
    for bad in ({"status": "DONE"}, {"origin": "X"}, {"from": "yesterday"}, {"limit": 101}, {"page": 0},
                {"search": "s" * 201}, {"to": "2026-01-01T00:00:00"}):
        assert (await console.client.get("/api/v1/commands/history", params=bad, headers=h)).status_code == 422, bad


async def test_detail_ids(console: Any, admin: str) -> None:
    h = console.auth(admin)
    assert (await console.client.get("/api/v1/commands/" + "x" * 129, headers=h)).status_code == 400
    assert (await console.client.get("/api/v1/commands/bad.id", headers=h)).status_code == 400
    r = await console.client.get(f"/api/v1/commands/{new_id()}", headers=h)
    assert r.status_code == 404 and r.json()["message"] == "Command execution not found"


@pytest.mark.parametrize("body", [
    {"command": "echo a\x00b"},
    {"argv": ["echo", "a\x00b"]},
    {"command": "echo", "args": ["\ud800"]},
    {"command": "ls", "env": {"A": "x\x00y"}},
    {"command": "ls", "stdin": "\udfff"},
    {"command": "ls", "workingDir": "/tmp/\x00"},
])
async def test_text_that_no_process_or_column_can_hold_is_422(console: Any, admin: str, body: dict[str, Any]) -> None:
    inst = await console.register(admin, "box")
    await set_agent(console, inst["id"], connected=False)
    r = await _post(console, admin, {"instanceId": inst["id"], **body})
    assert r.status_code == 422, r.text


async def test_odd_ids_are_not_found_never_errors(console: Any, admin: str) -> None:
    for bad in ("a\x00b", "\ud800", "x" * 128, "with space"):
        r = await _post(console, admin, {"instanceId": bad, "command": "ls"})
        assert r.status_code in (404, 422), (bad, r.text)
        r = await _post(console, admin, {"instanceIds": [bad], "command": "ls"}, "/api/v1/commands/bulk")
        assert r.status_code in (207, 422), (bad, r.text)
    h = console.auth(admin)
    for params in ({"instanceId": "a\x00b"}, {"batchId": "no such/batch"}, {"search": "a\x00"}):
        r = await console.client.get("/api/v1/commands/history", params=params, headers=h)
        assert r.status_code in (200, 400, 422), (params, r.text)  # the gateway may refuse NUL first
        if r.status_code == 200:
            assert r.json()["data"] == []
    r = await console.client.get("/api/v1/commands/history", params={"stdin": "x"}, headers=h)
    assert r.status_code == 200
    r = await _post(console, admin, {"instanceIds": ["x" * 129], "command": "ls"}, "/api/v1/commands/bulk")
    assert r.status_code == 422
    r = await _post(console, admin, {"instanceIds": ["a\x00b"], "command": "ls"}, "/api/v1/commands/bulk")
    assert r.status_code == 422 or r.json()["results"][0]["error"]["code"] == "NOT_FOUND"
