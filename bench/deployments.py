"""Deployments and templates speed (20-ops §7, §8; 10-core §7.3).

Usage:  python bench/deployments.py [--database sqlite|postgresql] [--history 20000] [--requests 200]

Seeds `--history` finished deployments spread over the last 24 hours (one instance each, bulk insert),
starts a real `sindri-console serve` on 127.0.0.1 with the test suite's fake `sindri` executable, and
prints p50/p95/p99 latencies in milliseconds for: the fleet timeline, the template list, accepting a
deployment (validation + the creating transaction), and the whole job (POST → SUCCEEDED, fake CLI
exiting at once). Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
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
from tests.fakes.fake_sindri import FakeSindri  # noqa: E402

from sindri_console.db.engine import Database  # noqa: E402
from sindri_console.kit.ids import new_id  # noqa: E402
from sindri_console.models.deployments import Deployment  # noqa: E402
from sindri_console.models.instance import Instance  # noqa: E402

YAML = 'version: "3.0"\nname: {name}\ndeployment:\n  provider: docker\nextensions:\n  active: [git, zsh]\n'
STATUSES = ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "FAILED"]


def report(label: str, values: list[float]) -> None:
    print(f"{label:55s} n={len(values):4d}  p50={statistics.median(values):8.2f} ms  "
          f"p95={pct(values, 95):8.2f} ms  p99={pct(values, 99):8.2f} ms")


async def seed(url: str, n: int, initiated_by: str) -> None:
    db = Database(url)
    now = datetime.now(UTC)
    instances, deployments = [], []
    for i in range(n):
        created = now - timedelta(seconds=(i * 86_000) // max(n, 1))
        instance_id = new_id()
        name = f"hist-{i:06d}"
        text = YAML.format(name=name)
        instances.append({
            "id": instance_id, "name": name, "provider": "docker", "extensions": ["git", "zsh"], "tags": {},
            "status": "DESTROYED", "status_changed_at": created, "created_at": created, "updated_at": created,
        })
        deployments.append({
            "id": new_id(), "name": name, "instance_id": instance_id, "provider": "docker",
            "status": STATUSES[i % 4], "yaml_content": text,
            "config_hash": hashlib.sha256(text.encode()).hexdigest(), "declared": {}, "secret_names": [],
            "warnings": [], "initiated_by": initiated_by, "created_at": created, "started_at": created,
            "completed_at": created, "exit_code": 0, "logs": "", "logs_bytes": 0, "logs_truncated": False,
        })
    async with db.write() as s:
        for start in range(0, n, 1000):
            await s.execute(Instance.__table__.insert(), instances[start:start + 1000])
            await s.execute(Deployment.__table__.insert(), deployments[start:start + 1000])
    await db.dispose()


def timed_get(client: httpx.Client, path: str, params: dict[str, str], count: int) -> list[float]:
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        r = client.get(path, params=params)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text
    return out


def accept_and_finish(client: httpx.Client, count: int, prefix: str) -> tuple[list[float], list[float]]:
    accept, whole = [], []
    for i in range(count):
        t0 = time.perf_counter()
        r = client.post("/api/v1/deployments", json={"yamlConfig": YAML.format(name=f"{prefix}-{i:05d}")})
        accept.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 202, r.text
        location = r.headers["location"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = client.get(location).json()["status"]
            if status in ("SUCCEEDED", "FAILED"):
                break
            time.sleep(0.005)
        assert status == "SUCCEEDED", status
        whole.append((time.perf_counter() - t0) * 1000)
    return accept, whole


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--history", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    if args.database == "postgresql":
        os.environ.setdefault("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    else:
        os.environ.pop("TEST_DATABASE_URL", None)
    os.environ.pop("TEST_REDIS_URL", None)
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp)) as url:
        fake = FakeSindri(Path(tmp) / "fake-bin")
        server = start_server(Path(tmp), url, extra_env={"SINDRI_BIN_PATH": str(fake.path)})
        try:
            assert server.admin_key
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"},
                              timeout=30) as c:
                me = c.get("/api/v1/me").json()
                asyncio.run(seed(url, args.history, me["id"]))
                print(f"database={args.database} history={args.history} (deployments in the last 24 h)")
                report("GET /api/v1/fleet/deployments", timed_get(c, "/api/v1/fleet/deployments", {},
                                                                   args.requests))
                report("GET /api/v1/templates", timed_get(c, "/api/v1/templates", {}, args.requests))
                report("GET /api/v1/templates?provider=fly&search=rust",
                       timed_get(c, "/api/v1/templates", {"provider": "fly", "search": "rust"}, args.requests))
                accept, whole = accept_and_finish(c, min(args.requests, 100), "bench")
                report("POST /api/v1/deployments (202 accepted)", accept)
                report("POST → SUCCEEDED (fake CLI, bus wake-up)", whole)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
