"""SSE log-stream fan-out (10-core §12, §18; issue 5 "Speed"): delivery latency to concurrent clients.

Usage:  python bench/logs_sse.py [--database sqlite|postgresql] [--clients 100] [--rate 200] [--seconds 10]

Starts a real `sindri-console serve` on 127.0.0.1 (SSE_MAX_STREAMS_PER_KEY raised so one key can hold
every stream), opens `--clients` streams on `GET /api/v1/logs/stream`, then ingests `--rate` entries
per second (batches every 100 ms) for `--seconds`. Each entry carries its send time; every client
records receive time − send time. Prints delivered/expected and the latency percentiles. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stats import pct  # noqa: E402
from tests.e2e.server import fresh_database, start_server  # noqa: E402

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
SENT_AT = re.compile(r'"sentAt":([0-9.]+)')


async def run(base: str, key: str, clients: int, rate: int, seconds: float) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=httpx.Timeout(30, read=None),
                                 limits=limits) as http:
        r = await http.post("/api/v1/instances", json={"name": "sse-bench", "provider": "docker", "region": "local"})
        assert r.status_code in (200, 201), r.text
        iid = r.json()["id"]
        latencies: list[float] = []
        counts = [0] * clients
        ready = asyncio.Semaphore(0)
        stop = asyncio.Event()

        async def client(n: int) -> None:
            async with http.stream("GET", "/api/v1/logs/stream") as resp:
                assert resp.status_code == 200, await resp.aread()
                announced = False
                async for line in resp.aiter_lines():
                    if not announced and line.startswith("event: connected"):
                        announced = True
                        ready.release()
                    if line.startswith("data:") and '"sentAt"' in line:
                        m = SENT_AT.search(line)
                        if m:
                            latencies.append(time.time() - float(m.group(1)))
                            counts[n] += 1
                    if stop.is_set():
                        return

        tasks = [asyncio.create_task(client(i)) for i in range(clients)]
        for _ in range(clients):
            await asyncio.wait_for(ready.acquire(), 60)
        per_tick = max(1, rate // 10)
        sent = 0
        t_end = time.monotonic() + seconds
        next_tick = time.monotonic()
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as writer:
            while time.monotonic() < t_end:
                now = time.time()
                entries = [{"instanceId": iid, "level": "INFO", "source": "APP", "message": f"sse bench {sent + i}",
                            "metadata": {"sentAt": now}} for i in range(per_tick)]
                w = await writer.post("/api/v1/logs/ingest/batch", json={"entries": entries})
                assert w.status_code == 201, w.text
                sent += per_tick
                next_tick += 0.1
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        deadline = time.monotonic() + 10
        while sum(counts) < sent * clients and time.monotonic() < deadline:  # noqa: ASYNC110 - polling counters
            await asyncio.sleep(0.1)
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(f"clients={clients} rate={rate}/s seconds={seconds} entries sent={sent}")
    print(f"delivered {sum(counts):,} of {sent * clients:,} ({sum(counts) / (sent * clients):.2%}); "
          f"min per client {min(counts)}")
    print(f"delivery latency ms: p50={pct(latencies, 50) * 1000:.0f} p95={pct(latencies, 95) * 1000:.0f} "
          f"p99={pct(latencies, 99) * 1000:.0f} max={max(latencies) * 1000:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    if args.database == "postgresql":
        os.environ["TEST_DATABASE_URL"] = PG_URL
    else:
        os.environ.pop("TEST_DATABASE_URL", None)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-logsse-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    with fresh_database(tmp) as url:
        env = {"LOG_LEVEL": "warn", "SSE_MAX_STREAMS_PER_KEY": str(args.clients + 10)}
        server = start_server(tmp, url, extra_env=env)
        try:
            assert server.admin_key
            asyncio.run(run(server.url, server.admin_key, args.clients, args.rate, args.seconds))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
