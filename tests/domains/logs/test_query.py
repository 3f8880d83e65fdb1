"""Log query, search, detail and stats (10-core §11.3-§11.6; acceptance checks 124-128)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text
from tests.domains.logs.helpers import API, batch, ingest, team_with

from sindri_console.domains.logs import repository as repo
from sindri_console.domains.logs.repository import LogFilter
from sindri_console.domains.logs.service import LogLine, insert_entries
from sindri_console.kit.auth import Principal
from sindri_console.kit.clock import clock
from sindri_console.models.logs import LogEntry

SEARCH_CORPUS = [
    "Connection TIMEOUT occurred",
    "all good",
    "load 50%",
    "load 500",
    "snake_case name",
    "snakeXcase name",
    "path C:\\temp\\new",
    "path C:/temp/new",
    "it's \"quoted\" here",
    "Größe: 42 ÜBER",
    "日本語のログ",
    "x",
    "ab",
]

# term → the corpus messages it must return, identical on SQLite and PostgreSQL
SEARCH_CASES = [
    ("timeout", {"Connection TIMEOUT occurred"}),
    ("TimeOut occ", {"Connection TIMEOUT occurred"}),
    ("50%", {"load 50%"}),
    ("%", {"load 50%"}),
    ("e_c", {"snake_case name"}),
    ("_", {"snake_case name"}),
    ("C:\\temp", {"path C:\\temp\\new"}),
    ("\\", {"path C:\\temp\\new"}),
    ("it's", {"it's \"quoted\" here"}),
    ('"quoted"', {"it's \"quoted\" here"}),
    ('"', {"it's \"quoted\" here"}),
    ("Größe", {"Größe: 42 ÜBER"}),
    ("ÜBER", {"Größe: 42 ÜBER"}),
    ("日本語", {"日本語のログ"}),
    ("ログ", {"日本語のログ"}),
    ("x", {"snakeXcase name", "x"}),
    ("AB", {"ab"}),
    ("oa", {"load 50%", "load 500"}),
    ("no such text", set()),
]


@pytest.fixture
async def corpus(console: Any, admin: str) -> dict[str, Any]:
    inst = await console.register(admin, "search-corpus")
    entries = [{"instanceId": inst["id"], "level": "INFO", "source": "APP", "message": m} for m in SEARCH_CORPUS]
    assert (await batch(console, admin, entries)).status_code == 201
    return inst


@pytest.mark.parametrize(("term", "expected"), SEARCH_CASES, ids=[repr(t) for t, _ in SEARCH_CASES])
async def test_search_is_literal_case_insensitive_substring(console: Any, admin: str, corpus: dict[str, Any],
                                                           term: str, expected: set[str]) -> None:
    r = await console.client.get(f"{API}/logs", params={"search": term, "limit": 100}, headers=console.auth(admin))
    assert r.status_code == 200, r.text
    assert {e["message"] for e in r.json()["data"]} == expected
    assert r.json()["pagination"]["total"] == len(expected)


@pytest.mark.parametrize("probe", [False, True], ids=["driven", "probed"])
async def test_search_query_plan_uses_index(console: Any, admin: str, corpus: dict[str, Any], probe: bool) -> None:
    dialect = console.rt.db.dialect
    principal = Principal(credential="bootstrap")
    stmt = select(LogEntry.seq).where(*repo.conditions(dialect, principal, LogFilter(search="timeout"), probe=probe))
    async with console.rt.db.read() as s:
        sql = stmt.compile(s.bind, compile_kwargs={"literal_binds": True})
        if dialect.name == "postgresql":
            await s.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(r[0] for r in await s.execute(text(f"EXPLAIN {sql}")))
            assert "ix_log_entry_message_trgm" in plan, plan
        else:
            plan = "\n".join(str(r[-1]) for r in await s.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
            assert "log_entry_fts VIRTUAL TABLE INDEX" in plan, plan


async def test_frequent_term_pages_in_order(console: Any, admin: str) -> None:
    inst = await console.register(admin, "frequent")
    other = await console.register(admin, "frequent-other")
    await insert_entries(console.rt, [LogLine(inst["id"] if i % 3 else other["id"],
                                              f"common line {i}" if i % 2 else f"rare line {i}",
                                              timestamp=clock.now_ms() - 100_000 + (i * 7919) % 40 * 1000)
                                      for i in range(40)])
    async with console.rt.db.read() as s:
        expected = [e.message for e in (await s.scalars(
            select(LogEntry).where(LogEntry.message.like("common%"), LogEntry.instance_id == inst["id"])
            .order_by(LogEntry.ts_ms.desc(), LogEntry.seq.desc()))).all()]
    got = []
    for page in range(1, 6):
        r = await console.client.get(f"{API}/logs", params={"search": "COMMON", "limit": 3, "page": page,
                                                          "instanceId": inst["id"]}, headers=console.auth(admin))
        assert r.json()["pagination"]["total"] == len(expected)
        got += [e["message"] for e in r.json()["data"]]
    assert got == expected
    r = await console.client.get(f"{API}/logs", params={"search": "common", "limit": 1}, headers=console.auth(admin))
    assert r.json()["pagination"]["total"] == 20 and r.json()["data"][0]["message"].startswith("common")


async def test_filters_order_and_validation(console: Any, admin: str) -> None:
    inst = await console.register(admin, "filters")
    for level in ("DEBUG", "INFO", "WARN", "ERROR"):
        assert (await ingest(console, admin, inst["id"], f"{level} line", level=level)).status_code == 201
    get = console.client.get
    h = console.auth(admin)
    r = await get(f"{API}/logs", params={"level": "error,warning"}, headers=h)
    assert sorted(e["level"] for e in r.json()["data"]) == ["ERROR", "WARN"]
    assert (await get(f"{API}/logs", params={"level": "LOUD"}, headers=h)).status_code == 422
    assert (await get(f"{API}/logs", params={"source": "kernel"}, headers=h)).status_code == 422
    r = await get(f"{API}/logs", params={"from": "2026-11-28T10:00:00Z", "to": "2026-11-28T09:00:00Z"}, headers=h)
    assert r.status_code == 422
    assert (await get(f"{API}/logs", params={"limit": 1001}, headers=h)).status_code == 422
    assert (await get(f"{API}/logs", params={"search": "s" * 513}, headers=h)).status_code == 422
    r = await get(f"{API}/logs", headers=h)
    page = r.json()
    assert page["pagination"]["limit"] == 50 and page["pagination"]["totalCapped"] is False
    stamps = [(e["timestamp"], e["seq"]) for e in page["data"]]
    assert stamps == sorted(stamps, reverse=True)
    r = await get(f"{API}/logs", params={"limit": 1, "page": 2}, headers=h)
    assert r.json()["data"][0]["message"] == "WARN line"


async def test_total_capped(console: Any, admin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = await console.register(admin, "capped")
    await insert_entries(console.rt, [LogLine(inst["id"], f"line {i}") for i in range(5)])
    monkeypatch.setattr(repo, "TOTAL_CAP", 3)
    r = await console.client.get(f"{API}/logs", params={"limit": 2}, headers=console.auth(admin))
    assert r.json()["pagination"]["total"] == 3 and r.json()["pagination"]["totalCapped"] is True
    assert r.json()["pagination"]["totalPages"] == 2


async def test_detail_and_scope(console: Any, admin: str) -> None:
    mine = await console.register(admin, "detail-mine")
    other = await console.register(admin, "detail-other")
    dev_id, dev = await console.user("DEVELOPER")
    other_user, _ = await console.user("VIEWER")
    await team_with(console, admin, "t-mine", dev_id, [mine["id"]])
    await team_with(console, admin, "t-other", other_user, [other["id"]])
    a = (await ingest(console, admin, mine["id"], "visible")).json()
    b = (await ingest(console, admin, other["id"], "hidden")).json()
    r = await console.client.get(f"{API}/logs/{a['id']}", headers=console.auth(dev))
    assert r.status_code == 200 and r.json() == a
    assert (await console.client.get(f"{API}/logs/{b['id']}", headers=console.auth(dev))).status_code == 404
    assert (await console.client.get(f"{API}/logs/ingest", headers=console.auth(dev))).status_code == 404
    r = await console.client.get(f"{API}/logs", headers=console.auth(dev))
    assert [e["message"] for e in r.json()["data"]] == ["visible"]
    r = await console.client.get(f"{API}/instances/{other['id']}/logs", headers=console.auth(dev))
    assert r.status_code == 404
    r = await console.client.get(f"{API}/logs/stats", headers=console.auth(dev))
    assert r.json()["total"] == 1


async def test_stats(console: Any, admin: str) -> None:
    x = await console.register(admin, "stats-x")
    y = await console.register(admin, "stats-y")
    await insert_entries(console.rt, [LogLine(x["id"], "a", level="ERROR", source="APP"),
                                      LogLine(x["id"], "b", level="ERROR", source="BUILD"),
                                      LogLine(y["id"], "c", level="INFO", source="APP")])
    r = await console.client.get(f"{API}/logs/stats", headers=console.auth(admin))
    body = r.json()
    assert body["byLevel"] == {"DEBUG": 0, "INFO": 1, "WARN": 0, "ERROR": 2}
    assert body["bySource"] == {"AGENT": 0, "EXTENSION": 0, "BUILD": 1, "APP": 2, "SYSTEM": 0}
    assert body["total"] == 3
    assert body["topInstances"] == [{"instanceId": x["id"], "instanceName": "stats-x", "count": 2},
                                    {"instanceId": y["id"], "instanceName": "stats-y", "count": 1}]
    r = await console.client.get(f"{API}/instances/{x['id']}/logs/stats", headers=console.auth(admin))
    assert r.json()["instanceId"] == x["id"] and r.json()["total"] == 2 and "topInstances" not in r.json()
    r = await console.client.get(f"{API}/instances/{x['id']}/logs", params={"instanceId": y["id"]},
                                 headers=console.auth(admin))
    assert {e["message"] for e in r.json()["data"]} == {"a", "b"}
    assert (await console.client.get(f"{API}/instances/unknown-one/logs", headers=console.auth(admin))).status_code == 404
    r = await console.client.get(f"{API}/logs/stats", params={"from": "2020-01-01T00:00:00Z",
                                                              "to": "2020-01-02T00:00:00Z"}, headers=console.auth(admin))
    assert r.json()["total"] == 0 and r.json()["topInstances"] == []
