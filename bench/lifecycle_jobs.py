"""Lifecycle jobs speed (10-core §6.4–§6.8): acceptance, whole jobs, bulk throughput under the cap.

Usage:  python bench/lifecycle_jobs.py [--database sqlite|postgresql] [--requests 100] [--bulk 100]
        [--concurrency 4] [--cli-seconds 0.5]

Starts a real `sindri-console serve` on 127.0.0.1 with the test suite's fake `sindri` executable and prints
p50/p95/p99 latencies in milliseconds for: `GET …/lifecycle`, accepting a suspend (202: guard, compare-and-set,
job row, event, audit in one transaction), a whole suspend/resume with `wait` (fake CLI exiting at once;
the fake is a Python script, so each call includes an interpreter start),
then one bulk suspend of `--bulk` instances whose fake CLI takes `--cli-seconds`, reporting the time until
every job finished and the most CLI processes seen at once (must equal LIFECYCLE_MAX_CONCURRENCY).
Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stats import pct  # noqa: E402
from tests.e2e.server import fresh_database, start_server  # noqa: E402
from tests.fakes.fake_sindri import FakeSindri  # noqa: E402


def report(label: str, values: list[float]) -> None:
    print(f"{label:55s} n={len(values):4d}  p50={statistics.median(values):8.2f} ms  "
          f"p95={pct(values, 95):8.2f} ms  p99={pct(values, 99):8.2f} ms")


def register(c: httpx.Client, name: str) -> str:
    r = c.post("/api/v1/instances", json={"name": name, "provider": "docker", "region": "local"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def wait_finished(c: httpx.Client, iid: str, job_id: str, within: float) -> str:
    deadline = time.monotonic() + within
    while True:
        status = str(c.get(f"/api/v1/instances/{iid}/jobs/{job_id}").json()["status"])
        if status in ("SUCCEEDED", "FAILED", "TIMED_OUT") or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--bulk", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--cli-seconds", type=float, default=0.5)
    args = ap.parse_args()
    if args.database == "postgresql":
        os.environ.setdefault("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    else:
        os.environ.pop("TEST_DATABASE_URL", None)
    os.environ.pop("TEST_REDIS_URL", None)
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp)) as url:
        fake = FakeSindri(Path(tmp) / "fake-bin")
        server = start_server(Path(tmp), url, extra_env={"SINDRI_BIN_PATH": str(fake.path),
                                                         "LIFECYCLE_MAX_CONCURRENCY": str(args.concurrency)})
        try:
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"},
                              timeout=60) as c:
                print(f"database={args.database} requests={args.requests} bulk={args.bulk} "
                      f"LIFECYCLE_MAX_CONCURRENCY={args.concurrency} fake CLI {args.cli_seconds}s per bulk job")
                iid = register(c, "bench-one")
                views = []
                for _ in range(args.requests):
                    t0 = time.perf_counter()
                    assert c.get(f"/api/v1/instances/{iid}/lifecycle").status_code == 200
                    views.append((time.perf_counter() - t0) * 1000)
                report("GET /api/v1/instances/:id/lifecycle", views)

                accept, whole = [], []
                for i in range(args.requests):
                    action = "suspend" if i % 2 == 0 else "resume"
                    t0 = time.perf_counter()
                    r = c.post(f"/api/v1/instances/{iid}/{action}")
                    accept.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 202, r.text
                    assert wait_finished(c, iid, r.json()["job"]["id"], 30) == "SUCCEEDED"
                for i in range(args.requests):
                    action = "suspend" if i % 2 == 0 else "resume"
                    t0 = time.perf_counter()
                    r = c.post(f"/api/v1/instances/{iid}/{action}", params={"wait": 30})
                    whole.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200 and r.json()["job"]["status"] == "SUCCEEDED", r.text
                report("POST suspend/resume (202 accepted)", accept)
                report("POST suspend/resume?wait=30 → 200 SUCCEEDED (fake CLI)", whole)

                fake.control(sleep=args.cli_seconds)
                before = len(fake.runs())
                ids = [register(c, f"bench-bulk-{i:04d}") for i in range(args.bulk)]
                t0 = time.perf_counter()
                r = c.post("/api/v1/instances/bulk-action", json={"action": "suspend", "instanceIds": ids})
                accepted_ms = (time.perf_counter() - t0) * 1000
                assert r.status_code == 202 and r.json()["summary"]["accepted"] == args.bulk, r.text
                for item in r.json()["results"]:
                    assert wait_finished(c, item["id"], item["jobId"], 600) == "SUCCEEDED"
                total = time.perf_counter() - t0
                runs = fake.runs()[before:]
                points = sorted([(x.started, 1) for x in runs] + [(x.ended or 0.0, -1) for x in runs],
                                key=lambda p: (p[0], p[1]))
                peak = current = 0
                for _, delta in points:
                    current += delta
                    peak = max(peak, current)
                ideal = args.bulk * args.cli_seconds / args.concurrency
                print(f"{'bulk-action suspend of ' + str(args.bulk) + ' (accepted in one transaction)':55s} "
                      f"{accepted_ms:8.2f} ms")
                print(f"{'bulk: all jobs SUCCEEDED':55s} {total:8.2f} s  (ideal {ideal:.2f} s at the cap)  "
                      f"peak CLI processes={peak}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
