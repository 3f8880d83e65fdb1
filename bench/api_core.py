"""Core API speed (10-core §18): credential lookup, instance list with filters on 10 000 instances.

Usage:  python bench/api_core.py [--database sqlite|postgresql] [--instances 10000] [--requests 300]

Seeds a fresh database directly (bulk insert), starts a real `sindri-console serve` on 127.0.0.1,
and prints p50/p95/p99 latencies in milliseconds. Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stats import pct  # noqa: E402
from tests.e2e.server import fresh_database, start_server  # noqa: E402

from sindri_console.db.engine import Database  # noqa: E402
from sindri_console.kit.auth import Authenticator  # noqa: E402
from sindri_console.kit.ids import new_id  # noqa: E402
from sindri_console.models.instance import Instance  # noqa: E402

PROVIDERS = ["fly", "docker", "kubernetes", "aws", "gcp"]
REGIONS = ["sea", "iad", "fra", "ams", "local"]
STATUSES = ["RUNNING", "RUNNING", "RUNNING", "SUSPENDED", "UNREACHABLE", "STOPPED"]


async def seed(url: str, n: int) -> None:
    db = Database(url)
    now = datetime.now(UTC)
    rows = []
    for i in range(n):
        created = now - timedelta(seconds=n - i)
        rows.append({
            "id": new_id(), "name": f"bench-{i:05d}", "provider": PROVIDERS[i % 5], "region": REGIONS[i % 5],
            "extensions": [], "tags": {}, "status": STATUSES[i % 6], "status_changed_at": created,
            "created_at": created, "updated_at": created,
        })
    async with db.write() as s:
        for start in range(0, n, 1000):
            await s.execute(Instance.__table__.insert(), rows[start:start + 1000])
    await db.dispose()


async def credential_lookup(url: str, key: str, count: int) -> list[float]:
    db = Database(url)
    auth = Authenticator(db, None)
    await auth.authenticate(key, "127.0.0.1")
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        await auth.authenticate(key, "127.0.0.1")
        out.append((time.perf_counter() - t0) * 1000)
    await db.dispose()
    return out


def timed(client: httpx.Client, path: str, params: dict[str, str], count: int) -> list[float]:
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        r = client.get(path, params=params)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text
    return out


def report(label: str, values: list[float]) -> None:
    print(f"{label:55s} n={len(values):4d}  p50={statistics.median(values):7.2f} ms  "
          f"p95={pct(values, 95):7.2f} ms  p99={pct(values, 99):7.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--instances", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    import os

    if args.database == "postgresql":
        os.environ.setdefault("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    else:
        os.environ.pop("TEST_DATABASE_URL", None)
    os.environ.pop("TEST_REDIS_URL", None)
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp)) as url:
        server = start_server(Path(tmp), url)
        try:
            asyncio.run(seed(url, args.instances))
            assert server.admin_key
            print(f"database={args.database} instances={args.instances}")
            report("credential lookup (Authenticator.authenticate)",
                   asyncio.run(credential_lookup(url, server.admin_key, args.requests)))
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"},
                              timeout=30) as c:
                report("GET /api/v1/me", timed(c, "/api/v1/me", {}, args.requests))
                report("GET /api/v1/instances (page of 20)", timed(c, "/api/v1/instances", {}, args.requests))
                report("GET /api/v1/instances?provider=fly&status=running,suspended",
                       timed(c, "/api/v1/instances", {"provider": "fly", "status": "running,suspended"},
                             args.requests))
                report("GET /api/v1/instances?search=bench-0042&sort=name",
                       timed(c, "/api/v1/instances", {"search": "bench-0042", "sort": "name"}, args.requests))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
