"""Log search speed on 1 000 000 stored entries (10-core §18, issue 5 "Speed").

Usage:  python bench/logs_search.py [--database sqlite|postgresql] [--entries 1000000] [--requests 60]

Seeds a fresh migrated database straight through the driver (the search index is dropped during
the load and rebuilt in bulk, which is only a seeding shortcut), starts a real `sindri-console serve`
on 127.0.0.1 and times first pages of `GET /api/v1/logs` for terms matching 1 %, 0.01 % and 0 % of
the entries, with and without an instance filter, plus a 2-character term (bounded scan) and the
unfiltered newest page. Prints p50/p95/p99 in milliseconds. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
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
WORDS = ("request", "served", "user", "cache", "miss", "hit", "upstream", "timeout", "retry", "worker", "queue",
         "payload", "session", "token", "refresh", "database", "query", "slow", "connection", "pool", "opened",
         "closed", "handler", "GET", "POST", "/api/v1/items", "/healthz", "status=200", "status=500", "ms")
INSTANCES = 20
COLS = ["id", "instance_id", "level", "source", "message", "metadata", "deployment_id", "path", "ts_ms",
        "received_ms"]
SQLITE_TRIGGERS = {
    "log_entry_fts_ai": "CREATE TRIGGER log_entry_fts_ai AFTER INSERT ON log_entry BEGIN "
                        "INSERT INTO log_entry_fts(rowid, message) VALUES (new.seq, new.message); END",
}


def rows(n: int, instance_ids: list[str]) -> list[tuple[object, ...]]:
    """1 % of messages carry `needle-one`, 0.01 % carry `rare-marker`."""
    rnd = random.Random(11)
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(n):
        words = [rnd.choice(WORDS) for _ in range(rnd.randint(6, 14))]
        if i % 100 == 37:
            words.insert(rnd.randint(0, len(words)), "needle-one")
        if i % 10_000 == 4242:
            words.insert(rnd.randint(0, len(words)), "rare-marker")
        # spread over 10 days (inside retention), oldest first
        ts = now_ms - (n - i) * (864_000_000 // n)
        out.append((new_id(), instance_ids[i % len(instance_ids)], ("INFO", "WARN", "ERROR", "DEBUG")[i % 4],
                    ("APP", "AGENT", "SYSTEM")[i % 3], " ".join(words) + f" id={rnd.getrandbits(40):010x}", None,
                    None, None, ts, ts))
    return out


async def seed(url: str, n: int) -> list[str]:
    from sindri_console.db.engine import Database
    from sindri_console.kit.clock import utcnow
    from sindri_console.models.instance import Instance

    await upgrade(url)
    db = Database(url)
    now = utcnow()
    ids = [new_id() for _ in range(INSTANCES)]
    async with db.write() as s:
        for i, iid in enumerate(ids):
            s.add(Instance(id=iid, name=f"search-{i:02d}", provider="docker", region="local", extensions=[],
                           tags={}, status="RUNNING", status_changed_at=now, created_at=now, updated_at=now))
    await db.dispose()
    data = rows(n, ids)
    t0 = time.perf_counter()
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("DROP TRIGGER log_entry_fts_ai")
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO log_entry ({', '.join(COLS)}) VALUES ({', '.join('?' * len(COLS))})", data)
        conn.execute("INSERT INTO log_entry_fts(log_entry_fts) VALUES ('rebuild')")
        conn.execute(SQLITE_TRIGGERS["log_entry_fts_ai"])
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        await conn.execute("DROP INDEX ix_log_entry_message_trgm")
        await conn.copy_records_to_table("log_entry", records=data, columns=COLS)
        await conn.execute("SET maintenance_work_mem = '256MB'")
        await conn.execute("CREATE INDEX ix_log_entry_message_trgm ON log_entry USING gin (message gin_trgm_ops)")
        await conn.execute("VACUUM ANALYZE log_entry")
        await conn.close()
    print(f"seeded {n:,} entries in {time.perf_counter() - t0:.0f} s")
    return ids


def run(base: str, key: str, ids: list[str], requests: int) -> None:
    cases = [
        ("search 1 % (needle-one)", {"search": "needle-one"}),
        ("search 0.01 % (rare-marker)", {"search": "rare-marker"}),
        ("search 0 % (absent-term)", {"search": "absent-term"}),
        ("search 1 % + instanceId", {"search": "needle-one", "instanceId": ids[17]}),
        ("search 1 % + level=WARN", {"search": "needle-one", "level": "WARN"}),
        ("search 2 chars (zq) + instanceId", {"search": "zq", "instanceId": ids[5]}),
        ("newest page, no filter", {}),
    ]
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        for label, params in cases:
            first = http.get("/api/v1/logs", params=params)
            assert first.status_code == 200, first.text
            total = first.json()["pagination"]["total"]
            times = []
            for _ in range(requests):
                t0 = time.perf_counter()
                r = http.get("/api/v1/logs", params=params)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200
            print(f"{label:36s} total={total:>7,}  p50={pct(times, 50):6.1f}  p95={pct(times, 95):6.1f}  "
                  f"p99={pct(times, 99):6.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--reuse", help="a database URL this script seeded before: skip seeding")
    args = ap.parse_args()
    if args.database == "postgresql":
        os.environ["TEST_DATABASE_URL"] = PG_URL
    else:
        os.environ.pop("TEST_DATABASE_URL", None)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-logsearch-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    if args.reuse:
        ids, key = asyncio.run(instance_ids(args.reuse))
        measure(tmp, args.reuse, ids, key, args)
        return
    with fresh_database(tmp) as url:
        measure(tmp, url, asyncio.run(seed(url, args.entries)), None, args)


async def instance_ids(url: str) -> tuple[list[str], str]:
    """The seeded instances and a new ADMIN key (a reused database printed its first key long ago)."""
    from sqlalchemy import select

    from sindri_console.db.engine import Database
    from sindri_console.domains.identity.keys import mint_user_key
    from sindri_console.kit.clock import utcnow
    from sindri_console.models.identity import User
    from sindri_console.models.instance import Instance

    db = Database(url)
    async with db.read() as s:
        ids = list((await s.scalars(select(Instance.id).where(Instance.name.like("search-%"))
                                    .order_by(Instance.name))).all())
    async with db.write() as s:
        now = utcnow()
        user = User(id=new_id(), email=f"bench-{new_id()}@example.test", role="ADMIN", is_active=True,
                    created_at=now, updated_at=now)
        s.add(user)
        await s.flush()
        _, key = await mint_user_key(s, user_id=user.id, name="bench", role=None, expires_at=None, created_by=None)
    await db.dispose()
    return ids, key


def measure(tmp: Path, url: str, ids: list[str], key: str | None, args: argparse.Namespace) -> None:
    server = start_server(tmp, url, extra_env={"LOG_LEVEL": "warn"}, expect_admin_key=key is None)
    try:
        key = key or server.admin_key
        assert key
        print(f"database={args.database} entries={args.entries:,} requests per case={args.requests}")
        run(server.url, key, ids, args.requests)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
