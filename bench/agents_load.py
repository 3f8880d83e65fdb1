"""Agent socket load (issue 3, 40 §15): N concurrent simulated draupnir agents against one replica.

Usage:  python bench/agents_load.py [--database sqlite|postgresql] [--agents 5000] [--heartbeat 10]
                                    [--metrics 30] [--seconds 120] [--probe 200] [--ramp 200]

Starts one real `sindri-console serve` on 127.0.0.1 with a fresh database (SQLite file, or a new
PostgreSQL database on the server of TEST_DATABASE_URL), registers `--agents` instances with the
bootstrap key, opens one `/ws/agent` socket per instance (D dialect, identified by its first
heartbeat like draupnir), then for `--seconds` every agent sends a heartbeat every `--heartbeat`
seconds and a nested metrics frame every `--metrics` seconds, each at a random phase.

Measures:
- frames lost: heartbeat and metric rows in the database versus frames sent (after a drain);
- p50/p99 frame sent → visible through `GET /api/v1/metrics/latest`, for `--probe` agents polled every
  100 ms (so the figure includes up to 100 ms of polling granularity);
- server RSS (max over the run, from /proc) and server CPU seconds.
Loopback only; bounded in time (the whole run is cancelled after seconds + 600).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import websockets
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.server import Server, fresh_database, start_server  # noqa: E402

from sindri_console.models.instance import Heartbeat  # noqa: E402
from sindri_console.models.metrics import MetricPoint  # noqa: E402

AGENT_KEY = "bench-agents-bootstrap-key-0123456789abcdef"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def iso_ns(epoch: float) -> str:
    t = datetime.fromtimestamp(epoch, tz=UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def heartbeat(identity: str, started: float) -> str:
    return json.dumps({"protocol_version": "", "type": "heartbeat", "payload": {
        "instance_id": identity, "timestamp": iso_ns(time.time()), "uptime_seconds": int(time.time() - started)}})


def metrics(identity: str, ts: float, n: int) -> str:
    return json.dumps({"protocol_version": "", "type": "metrics", "payload": {
        "instance_id": identity, "timestamp": iso_ns(ts),
        "cpu": {"usage_percent": random.uniform(1, 90), "load_avg_1": 0.5, "load_avg_5": 0.4, "load_avg_15": 0.3,
                "core_count": 2},
        "memory": {"total_bytes": 8 << 30, "used_bytes": random.randint(1 << 30, 4 << 30), "free_bytes": 1 << 30,
                   "cached_bytes": 1 << 29, "usage_percent": 30.0, "swap_total_bytes": 0, "swap_used_bytes": 0},
        "disk": [{"mount_point": "/", "device": "/dev/vda", "fs_type": "ext4", "total_bytes": 100 << 30,
                  "used_bytes": 40 << 30, "free_bytes": 60 << 30, "usage_percent": 40.0}],
        "network": {"bytes_sent": 1000 * n, "bytes_recv": 5000 * n, "packets_sent": n, "packets_recv": n},
    }})


class Stats:
    def __init__(self) -> None:
        self.hb_sent = 0
        self.metrics_sent = 0
        self.errors = 0
        self.poll_errors = 0
        self.closed = 0
        self.probe_sent: dict[str, dict[str, float]] = {}  # instance id -> iso timestamp -> perf time sent
        self.latencies: list[float] = []


async def agent(server: Server, identity: str, instance_id: str, args: Any, stats: Stats, stop: list[float],
                probe: bool, ready: asyncio.Event) -> None:
    """One simulated draupnir: `stop[0]` is the loop time to stop at, set once every agent is connected."""
    url = server.url.replace("http://", "ws://", 1) + "/ws/agent"
    started = time.time()
    try:
        ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {AGENT_KEY}"},
                                      ping_interval=None, open_timeout=60, max_queue=4)
    except Exception:
        stats.errors += 1
        return
    try:
        await ws.send(heartbeat(identity, started))
        stats.hb_sent += 1
        await ready.wait()
        loop = asyncio.get_running_loop()
        stop_at = stop[0]
        next_hb = loop.time() + random.uniform(0, args.heartbeat)
        next_m = loop.time() + random.uniform(0, args.metrics)
        n = 0
        while loop.time() < stop_at:
            wake = min(next_hb, next_m, stop_at)
            await asyncio.sleep(max(0.0, wake - loop.time()))
            now = loop.time()
            if now >= stop_at:
                break
            if now >= next_hb:
                await ws.send(heartbeat(identity, started))
                stats.hb_sent += 1
                next_hb += args.heartbeat
            if now >= next_m:
                n += 1
                ts = time.time()
                frame = metrics(identity, ts, n)
                if probe:
                    key = datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                    stats.probe_sent.setdefault(instance_id, {})[key] = time.perf_counter()
                await ws.send(frame)
                stats.metrics_sent += 1
                next_m += args.metrics
        await ws.close(1001)
    except websockets.ConnectionClosed:
        stats.closed += 1
    except Exception:
        stats.errors += 1


async def poll_latest(server: Server, admin: dict[str, str], ids: list[str], stats: Stats, stop_at: float) -> None:
    seen: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        loop = asyncio.get_running_loop()
        while loop.time() < stop_at + 5:
            try:
                r = await http.get(server.url + "/api/v1/metrics/latest", params={"instanceIds": ",".join(ids)},
                                   headers=admin)
            except httpx.HTTPError:
                stats.poll_errors += 1
                continue
            now = time.perf_counter()
            if r.status_code == 200:
                for row in r.json()["data"]:
                    iid, ts = row["instanceId"], row["timestamp"]
                    if seen.get(iid) == ts:
                        continue
                    seen[iid] = ts
                    sent = stats.probe_sent.get(iid, {}).pop(ts, None)
                    if sent is not None:
                        stats.latencies.append((now - sent) * 1000)
            await asyncio.sleep(0.1)


async def register_all(server: Server, n: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=60) as http:
        async def one(i: int) -> None:
            identity = f"bench-agent-{i:05d}"
            async with sem:
                r = await http.post(server.url + "/api/v1/instances", headers={"Authorization": f"Bearer {AGENT_KEY}"},
                                    json={"instance_id": identity, "hostname": identity, "provider": "docker",
                                          "region": "local", "agent_version": "1.1.0-bench"})
            r.raise_for_status()
            out.append((identity, r.json()["id"]))

        await asyncio.gather(*(one(i) for i in range(n)))
    return out


async def count_rows(database_url: str, ids: list[str]) -> tuple[int, int]:
    eng = create_async_engine(database_url)
    try:
        async with eng.connect() as c:
            hb = await c.scalar(select(func.count()).select_from(Heartbeat))
            mp = await c.scalar(select(func.count()).select_from(MetricPoint))
    finally:
        await eng.dispose()
    return int(hb or 0), int(mp or 0)


async def run(server: Server, database_url: str, args: Any) -> dict[str, Any]:
    pid = server.proc.pid
    t0 = time.monotonic()
    agents = await register_all(server, args.agents)
    print(f"registered {len(agents)} instances in {time.monotonic() - t0:.1f} s", flush=True)
    stats = Stats()
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    probe_ids = {iid for _, iid in random.sample(agents, min(args.probe, len(agents)))}
    cpu0 = cpu_seconds(pid)
    t1 = time.monotonic()
    stop: list[float] = [0.0]
    tasks = []
    for identity, iid in agents:
        tasks.append(asyncio.create_task(agent(server, identity, iid, args, stats, stop, iid in probe_ids, ready)))
        if len(tasks) % 100 == 0:
            await asyncio.sleep(100 / args.ramp)
    # wait until every agent is identified (its first heartbeat sent)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(300):
            while stats.hb_sent + stats.errors < len(agents):  # noqa: ASYNC110 - counters, not an event
                await asyncio.sleep(0.2)
    print(f"connected {stats.hb_sent} agents in {time.monotonic() - t1:.1f} s (errors {stats.errors}); "
          f"RSS {rss_mb(pid):.0f} MB", flush=True)
    stop_at = stop[0] = loop.time() + args.seconds
    ready.set()
    max_rss = rss_mb(pid)
    cpu1 = cpu_seconds(pid)
    poller = asyncio.create_task(poll_latest(server, {"Authorization": f"Bearer {server.admin_key}"},
                                             sorted(probe_ids)[:100], stats, stop_at))
    poller2 = None
    if len(probe_ids) > 100:
        poller2 = asyncio.create_task(poll_latest(server, {"Authorization": f"Bearer {server.admin_key}"},
                                                  sorted(probe_ids)[100:200], stats, stop_at))
    while loop.time() < stop_at:
        await asyncio.sleep(1)
        max_rss = max(max_rss, rss_mb(pid))
    await asyncio.gather(*tasks, return_exceptions=True)
    cpu2 = cpu_seconds(pid)
    await poller
    if poller2:
        await poller2
    # frames still queued in the server's writer are not lost: wait (≤ 60 s) until the counts stop growing
    hb_rows, metric_rows = await count_rows(database_url, [iid for _, iid in agents])
    drain_started = time.monotonic()
    while (hb_rows, metric_rows) != (stats.hb_sent, stats.metrics_sent) and time.monotonic() - drain_started < 60:
        await asyncio.sleep(2)
        counts = await count_rows(database_url, [iid for _, iid in agents])
        if counts == (hb_rows, metric_rows):
            break
        hb_rows, metric_rows = counts
    return {
        "agents": len(agents), "connect_errors": stats.errors, "closed_by_server": stats.closed,
        "heartbeats_sent": stats.hb_sent, "heartbeat_rows": hb_rows, "metrics_sent": stats.metrics_sent,
        "metric_rows": metric_rows, "frames_lost": (stats.hb_sent - hb_rows) + (stats.metrics_sent - metric_rows),
        "drain_seconds": round(time.monotonic() - drain_started, 1),
        "frames_per_second": round((stats.hb_sent + stats.metrics_sent) / (args.seconds or 1), 1),
        "latency_samples": len(stats.latencies), "latest_poll_errors": stats.poll_errors,
        "probe_frames_never_visible": sum(len(v) for v in stats.probe_sent.values()), "p50_ms": round(pct(stats.latencies, 50), 1),
        "p99_ms": round(pct(stats.latencies, 99), 1), "max_ms": round(max(stats.latencies or [float("nan")]), 1),
        "server_rss_max_mb": round(max_rss, 1), "server_cpu_seconds_connect": round(cpu1 - cpu0, 1),
        "server_cpu_seconds_steady": round(cpu2 - cpu1, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--heartbeat", type=float, default=10)
    parser.add_argument("--metrics", type=float, default=30)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--probe", type=int, default=200)
    parser.add_argument("--ramp", type=float, default=200, help="new connections per second")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.agents * 2 + 1000)), hard))
    if args.database == "postgresql":
        os.environ.setdefault("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    else:
        os.environ.pop("TEST_DATABASE_URL", None)
    os.environ.pop("TEST_REDIS_URL", None)
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp)) as db:
        server = start_server(Path(tmp), db, extra_env={"SINDRI_CONSOLE_API_KEY": AGENT_KEY, "LOG_LEVEL": "warn"},
                              timeout=60)
        try:
            result = asyncio.run(asyncio.wait_for(run(server, db, args), args.seconds + 600))
        finally:
            server.stop()
    print(json.dumps({"database": args.database, **result}, indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
