"""Log ingest over HTTP (10-core §11.1, §11.2; acceptance checks 119-123, 129)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta, timezone
from typing import Any

from sqlalchemy import func, select
from tests.domains.logs.helpers import API, agent_key, batch, ingest, set_status, team_with

from sindri_console.kit.clock import clock, to_iso, utcnow
from sindri_console.models.agent import AgentState
from sindri_console.models.audit import AuditLog
from sindri_console.models.logs import LogEntry


async def test_single_entry_normalised_and_not_audited(console: Any, admin: str) -> None:
    inst = await console.register(admin, "single")
    _, viewer = await console.user("VIEWER")
    await console.client.get(f"{API}/logs", headers=console.auth(viewer))  # first use writes its LOGIN entry
    async with console.rt.db.read() as s:
        audits_before = await s.scalar(select(func.count()).select_from(AuditLog))
    r = await console.client.post(f"{API}/logs/ingest", headers=console.auth(viewer), json={
        "instance_id": inst["id"], "level": "warning", "source": "app", "message": "hello",
        "timestamp": to_iso(utcnow() - timedelta(minutes=1)),
        "metadata": {"k": "v\x00"}, "deployment_id": "d-1", "path": "/var/log/x.log"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["level"] == "WARN" and body["source"] == "APP"
    assert isinstance(body["id"], str) and isinstance(body["seq"], int)
    assert body["timestamp"].endswith("Z") and len(body["timestamp"]) == 24
    assert body["metadata"] == {"k": "v\ufffd"} and body["deploymentId"] == "d-1"
    assert body["path"] == "/var/log/x.log" and body["instanceId"] == inst["id"]
    async with console.rt.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(AuditLog)) == audits_before
        assert await s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.resource == "log")) == 0


async def test_offset_timestamp_normalised_to_utc(console: Any, admin: str) -> None:
    inst = await console.register(admin, "tz")
    now = utcnow().replace(microsecond=0)
    local = now.astimezone(timezone(timedelta(hours=5, minutes=30)))
    r = await ingest(console, admin, inst["id"], "tz", timestamp=local.isoformat())
    assert r.status_code == 201
    assert r.json()["timestamp"] == to_iso(now)
    r = await ingest(console, admin, inst["id"], "naive", timestamp="2026-11-28T10:00:00")
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "timestamp"


async def test_single_entry_errors(console: Any, admin: str) -> None:
    inst = await console.register(admin, "errs")
    assert (await ingest(console, admin, "nope-unknown", "x")).status_code == 404
    assert (await ingest(console, admin, inst["id"], "x", level="loud")).status_code == 422
    r = await ingest(console, admin, inst["id"], "x" * 10_001)
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "message"
    assert (await ingest(console, admin, inst["id"], "x" * 10_000)).status_code == 201
    future = to_iso(utcnow() + timedelta(minutes=10))
    assert (await ingest(console, admin, inst["id"], "x", timestamp=future)).status_code == 422
    old = to_iso(utcnow() - timedelta(days=15))
    assert (await ingest(console, admin, inst["id"], "x", timestamp=old)).status_code == 422
    assert (await ingest(console, admin, inst["id"], "x", metadata={"b": "y" * 9000})).status_code == 422
    r = await console.client.post(f"{API}/logs/ingest", content=b"{nope", headers=console.auth(admin))
    assert r.status_code == 400
    await set_status(console, inst["id"], "DESTROYED")
    r = await ingest(console, admin, inst["id"], "late")
    assert r.status_code == 409 and r.json()["message"] == "Instance is DESTROYED"


async def test_destroying_instance_still_accepts(console: Any, admin: str) -> None:
    inst = await console.register(admin, "going")
    await set_status(console, inst["id"], "DESTROYING")
    assert (await ingest(console, admin, inst["id"], "last words")).status_code == 201


async def test_mixed_batch_207_then_listed(console: Any, admin: str) -> None:
    inst = await console.register(admin, "mixed")
    entries = [{"instanceId": inst["id"], "level": "info", "source": "app", "message": "first"},
               {"instanceId": inst["id"], "level": "loud", "source": "nowhere", "message": "bad"},
               {"instanceId": "missing-instance", "level": "info", "source": "app", "message": "orphan"},
               {"instanceId": inst["id"], "level": "ERR", "source": "SYSTEM", "message": "third"}]
    r = await batch(console, admin, entries)
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["accepted"] == 2 and body["rejected"] == 2
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "level"), (1, "source"), (2, "instanceId")]
    r = await console.client.get(f"{API}/logs", params={"instanceId": inst["id"]}, headers=console.auth(admin))
    assert sorted(e["message"] for e in r.json()["data"]) == ["first", "third"]


async def test_batch_whole_request_failures(console: Any, admin: str) -> None:
    inst = await console.register(admin, "bulk")
    bad = [{"instanceId": inst["id"], "level": "loud", "source": "app", "message": "x"}] * 2
    r = await batch(console, admin, bad)
    assert r.status_code == 422
    assert r.json()["details"][0]["field"].startswith("entries[0].")
    one = {"instanceId": inst["id"], "level": "info", "source": "app", "message": "x"}
    assert (await batch(console, admin, [one] * 1001)).status_code == 422
    assert (await batch(console, admin, [])).status_code == 422
    r = await console.client.post(f"{API}/logs/ingest/batch", json={"nope": 1}, headers=console.auth(admin))
    assert r.status_code == 422
    r = await console.client.post(f"{API}/logs/ingest/batch", content=b"x" * (9 * 1024 * 1024),
                                  headers={**console.auth(admin), "content-type": "application/json"})
    assert r.status_code == 413
    r = await batch(console, admin, [one] * 1000)
    assert r.status_code == 201 and r.json() == {"accepted": 1000, "rejected": 0, "errors": []}
    async with console.rt.db.read() as s:
        seqs = list((await s.scalars(select(LogEntry.seq).order_by(LogEntry.seq))).all())
    assert len(seqs) == 1000 and seqs == list(range(seqs[0], seqs[0] + 1000))


async def test_invalid_utf8_and_lone_surrogates(console: Any, admin: str) -> None:
    inst = await console.register(admin, "bytes")
    raw = b'{"instanceId": "' + inst["id"].encode() + b'", "level": "info", "source": "app", "message": "bad \xff\xfe"}'
    r = await console.client.post(f"{API}/logs/ingest", content=raw,
                                  headers={**console.auth(admin), "content-type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["message"] == "bad \ufffd\ufffd"
    body = json.dumps({"instanceId": inst["id"], "level": "info", "source": "app", "message": "lone \ud800 here",
                       "metadata": {"s": "\udc00"}})
    r = await console.client.post(f"{API}/logs/ingest", content=body.encode(),
                                  headers={**console.auth(admin), "content-type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["message"] == "lone \ufffd here" and r.json()["metadata"] == {"s": "\ufffd"}


async def test_agent_key_defaults_and_must_match(console: Any, admin: str) -> None:
    x = await console.register(admin, "agent-x")
    y = await console.register(admin, "agent-y")
    key = await agent_key(console, x["id"])
    r = await ingest(console, key, None, "mine")
    assert r.status_code == 201 and r.json()["instanceId"] == x["id"]
    assert (await ingest(console, key, y["id"], "theirs")).status_code == 403
    r = await batch(console, key, [{"level": "info", "source": "agent", "message": "ok"},
                                   {"instanceId": y["id"], "level": "info", "source": "agent", "message": "no"}])
    assert r.status_code == 207
    assert r.json()["errors"][0]["index"] == 1 and r.json()["errors"][0]["field"] == "instanceId"
    # an agent key reads nothing
    r = await console.client.get(f"{API}/logs", headers=console.auth(key))
    assert r.status_code == 403


async def test_out_of_scope_instance_is_404(console: Any, admin: str) -> None:
    mine = await console.register(admin, "scope-mine")
    other = await console.register(admin, "scope-other")
    dev_id, dev = await console.user("DEVELOPER")
    outsider_id, _ = await console.user("VIEWER")
    await team_with(console, admin, "team-a", dev_id, [mine["id"]])
    await team_with(console, admin, "team-b", outsider_id, [other["id"]])
    assert (await ingest(console, dev, mine["id"], "ok")).status_code == 201
    assert (await ingest(console, dev, other["id"], "no")).status_code == 404
    r = await batch(console, dev, [{"instanceId": other["id"], "level": "info", "source": "app", "message": "no"},
                                   {"instanceId": mine["id"], "level": "info", "source": "app", "message": "ok"}])
    assert r.status_code == 207 and r.json()["errors"] == [
        {"index": 0, "field": "instanceId", "message": "Instance not found"}]


async def test_seq_grows_in_commit_order_under_concurrency(console: Any, admin: str) -> None:
    inst = await console.register(admin, "concurrent")
    entries = [{"instanceId": inst["id"], "level": "INFO", "source": "APP", "message": f"c{i}"} for i in range(200)]
    done = asyncio.Event()
    violations: list[tuple[int, int]] = []

    async def reader() -> None:
        seen: set[int] = set()
        high = 0
        while not done.is_set():
            async with console.rt.db.read() as s:
                now = set((await s.scalars(select(LogEntry.seq))).all())
            fresh = now - seen
            if fresh and min(fresh) <= high:
                violations.append((min(fresh), high))  # a reader saw n, then later an entry below n
            seen |= now
            high = max(seen, default=0)
            await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    results = await asyncio.gather(*(batch(console, admin, entries) for _ in range(8)))
    done.set()
    await task
    assert [r.status_code for r in results] == [201] * 8
    assert violations == []
    async with console.rt.db.read() as s:
        seqs = list((await s.scalars(select(LogEntry.seq).order_by(LogEntry.seq))).all())
    assert len(seqs) == 1600 and len(set(seqs)) == 1600


async def test_agent_ingest_is_agent_contact(console: Any, admin: str) -> None:
    inst = await console.register(console.bootstrap_key, "contact")  # an agent registration: AgentState exists
    key = await agent_key(console, inst["id"])
    async with console.rt.db.read() as s:
        before = (await s.get(AgentState, inst["id"])).last_seen_at
    clock.advance(30)
    assert (await ingest(console, key, None, "still here")).status_code == 201
    async with console.rt.db.read() as s:
        after = (await s.get(AgentState, inst["id"])).last_seen_at
    assert after is not None and before is not None and (after - before).total_seconds() >= 30
    # a user's ingest is not agent contact
    clock.advance(30)
    assert (await ingest(console, admin, inst["id"], "from a user")).status_code == 201
    async with console.rt.db.read() as s:
        assert (await s.get(AgentState, inst["id"])).last_seen_at == after
