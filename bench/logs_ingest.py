"""Log ingest speed against the database's own ceiling, in the same run (issue 5 "Speed", 10-core §18).

Usage:  python bench/logs_ingest.py [--database sqlite|postgresql] [--entries 40000] [--clients 4]

1. Ceiling: a fresh database built by the migrations (same table, same indexes, the trigram/FTS5
   search index included) is loaded straight through the driver: PostgreSQL binary COPY, SQLite
   executemany, one transaction per 1000 entries.
2. API: another fresh database behind a real `sindri-console serve` on 127.0.0.1; `--clients`
   concurrent clients post 1000-entry batches to `POST /api/v1/logs/ingest/batch`.
Prints both rates (entries/s), their ratio, and the batch latency percentiles. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stats import pct  # noqa: E402
from tests.e2e.server import fresh_database, start_server  # noqa: E402

from sindri_console.db.migrate import upgrade  # noqa: E402
from sindri_console.kit.ids import new_id  # noqa: E402

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
BOOTSTRAP = "bench-logs-bootstrap-key-0123456789abcdef"
BATCH = 1000
WORDS = ("request", "served", "user", "cache", "miss", "hit", "upstream", "timeout", "retry", "worker", "queue",
         "payload", "session", "token", "refresh", "database", "query", "slow", "connection", "pool", "opened",
         "closed", "handler", "GET", "POST", "/api/v1/items", "/healthz", "status=200", "status=500", "ms")
LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR")
SOURCES = ("APP", "APP", "AGENT", "SYSTEM", "BUILD", "EXTENSION")


def messages(n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    return [" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(6, 16))) + f" id={rnd.getrandbits(48):012x}"
            for _ in range(n)]


def pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def seed_instance(url: str) -> str:
    from sindri_console.db.engine import Database
    from sindri_console.kit.clock import utcnow
    from sindri_console.models.instance import Instance

    db = Database(url)
    iid = new_id()
    now = utcnow()
    async with db.write() as s:
        s.add(Instance(id=iid, name="bench-logs", provider="docker", region="local", extensions=[], tags={},
                       status="RUNNING", status_changed_at=now, created_at=now, updated_at=now))
    await db.dispose()
    return iid


async def ceiling(url: str, iid: str, msgs: list[str], *, multirow: bool = False) -> float:
    """Entries per second straight into the migrated table, one transaction per 1000.

    `multirow` (SQLite only): one INSERT statement of 1000 rows instead of `executemany`, the path
    the console itself takes; reported beside the issue's executemany ceiling."""
    now_ms = int(time.time() * 1000)
    rows = [(new_id(), iid, LEVELS[i % 6], SOURCES[i % 6], m, None, None, None, now_ms - i, now_ms)
            for i, m in enumerate(msgs)]
    cols = ["id", "instance_id", "level", "source", "message", "metadata", "deployment_id", "path", "ts_ms",
            "received_ms"]
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        sql = f"INSERT INTO log_entry ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        t0 = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            chunk = rows[start:start + BATCH]
            conn.execute("BEGIN IMMEDIATE")
            if multirow:
                marks = "(" + ", ".join("?" * len(cols)) + ")"
                conn.execute(sql.split(" VALUES ")[0] + " VALUES " + ", ".join([marks] * len(chunk)),
                             [v for row in chunk for v in row])
            else:
                conn.executemany(sql, chunk)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        conn.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(pg_dsn(url))
        t0 = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            async with conn.transaction():
                await conn.copy_records_to_table("log_entry", records=rows[start:start + BATCH], columns=cols)
        elapsed = time.perf_counter() - t0
        await conn.close()
    return len(rows) / elapsed


HEADERS = {"Authorization": f"Bearer {BOOTSTRAP}", "Content-Type": "application/json"}


async def api_instance(base: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        r = await http.post("/api/v1/instances", headers=HEADERS,
                            json={"name": "bench-api", "provider": "docker", "region": "local"})
        assert r.status_code in (200, 201), r.text
        iid = r.json()["id"]
        # warm-up batch (connection set-up, first statements), not counted
        warm = [{"instanceId": iid, "level": "INFO", "source": "APP", "message": "warm-up"}] * 10
        await http.post("/api/v1/logs/ingest/batch", json={"entries": warm}, headers=HEADERS)
    return iid  # type: ignore[no-any-return]


async def through_api(base: str, iid: str, msgs: list[str], clients: int) -> tuple[float, list[float]]:
    headers = HEADERS
    # bodies are encoded up front so the client spends as little CPU as possible during the run
    bodies = []
    for start in range(0, len(msgs), BATCH):
        entries = [{"instanceId": iid, "level": LEVELS[i % 6], "source": SOURCES[i % 6], "message": m}
                   for i, m in enumerate(msgs[start:start + BATCH], start)]
        bodies.append(json.dumps({"entries": entries}).encode())
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    latencies: list[float] = []

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            while not queue.empty():
                body = queue.get_nowait()
                t0 = time.perf_counter()
                r = await http.post("/api/v1/logs/ingest/batch", content=body, headers=headers)
                latencies.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 201, r.text

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    return len(msgs) / elapsed, latencies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--entries", type=int, default=60_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.database == "postgresql":
        os.environ["TEST_DATABASE_URL"] = PG_URL
    else:
        os.environ.pop("TEST_DATABASE_URL", None)
    msgs = messages(args.entries)
    per_round = args.entries // args.rounds // BATCH * BATCH
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-logs-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    bare_rates: list[float] = []
    api_rates: list[float] = []
    latencies: list[float] = []
    # the two paths alternate round by round so both see the same machine load and table growth
    multirow_rates: list[float] = []
    with fresh_database(tmp) as bare_url, fresh_database(tmp) as api_url, fresh_database(tmp) as multi_url:
        asyncio.run(upgrade(bare_url))
        bare_iid = asyncio.run(seed_instance(bare_url))
        multi_iid = ""
        if args.database == "sqlite":
            asyncio.run(upgrade(multi_url))
            multi_iid = asyncio.run(seed_instance(multi_url))
        asyncio.run(upgrade(api_url))
        server = start_server(tmp, api_url, extra_env={"SINDRI_CONSOLE_API_KEY": BOOTSTRAP, "LOG_LEVEL": "warn"})
        try:
            api_iid = asyncio.run(api_instance(server.url))
            for r in range(args.rounds):
                chunk = msgs[r * per_round:(r + 1) * per_round]
                bare_rates.append(asyncio.run(ceiling(bare_url, bare_iid, chunk)))
                if multi_iid:
                    multirow_rates.append(asyncio.run(ceiling(multi_url, multi_iid, chunk, multirow=True)))
                rate, lat = asyncio.run(through_api(server.url, api_iid, chunk, args.clients))
                api_rates.append(rate)
                latencies += lat
            # one client alone: the latency of a single 1000-entry batch with no queue in front of it
            _, single = asyncio.run(through_api(server.url, api_iid, msgs[:10 * BATCH], 1))
        finally:
            server.stop()
    bare, api = statistics.median(bare_rates), statistics.median(api_rates)
    how = "COPY" if args.database == "postgresql" else "executemany"
    print(f"database={args.database} rounds={args.rounds} x {per_round} entries, batch={BATCH}, "
          f"clients={args.clients}")
    print(f"ceiling (bare {how}, 1000/tx) per round: " + ", ".join(f"{x:,.0f}" for x in bare_rates))
    print("API POST /logs/ingest/batch per round:   " + ", ".join(f"{x:,.0f}" for x in api_rates))
    print(f"median: ceiling {bare:,.0f} entries/s, API {api:,.0f} entries/s, ratio {api / bare:.1%}")
    print("per-round ratios: " + ", ".join(f"{a / b:.1%}" for a, b in zip(api_rates, bare_rates, strict=True)))
    if multirow_rates:
        multi = statistics.median(multirow_rates)
        print("bare multi-row INSERT (1000 rows per statement, the console's path) per round: "
              + ", ".join(f"{x:,.0f}" for x in multirow_rates))
        print(f"median: bare multi-row {multi:,.0f} entries/s, API / bare multi-row {api / multi:.1%}")
    print(f"batch latency ms ({args.clients} concurrent): p50={pct(latencies, 50):.1f} "
          f"p95={pct(latencies, 95):.1f} p99={pct(latencies, 99):.1f}")
    print(f"batch latency ms (1 client, 10 batches): p50={pct(single, 50):.1f} p95={pct(single, 95):.1f}")


if __name__ == "__main__":
    main()
