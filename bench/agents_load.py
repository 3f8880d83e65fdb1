"""Agent socket load (issue 3, 40 §15): N concurrent simulated draupnir agents against one replica.

Usage:  python bench/agents_load.py [--database sqlite|postgresql] [--agents 5000] [--heartbeat 10] [--deflate]
                                    [--metrics 30] [--seconds 120] [--probe 200] [--ramp 200] [--workers 4]

Starts one real `sindri-console serve` on 127.0.0.1 with a fresh database (SQLite file, or a new
PostgreSQL database on the server of TEST_DATABASE_URL). The `--agents` instances are inserted
directly into the database as registered instances (registration itself is not what is measured
here; it is ~20/s through HTTP on this machine). `--workers` client processes then open one
`/ws/agent` socket per instance (D dialect, no X-Instance-ID, identified by its first heartbeat like
draupnir) at `--ramp` connections per second in total. Once every agent is connected, each sends a
heartbeat every `--heartbeat` seconds and a nested metrics frame every `--metrics` seconds, at a random
phase, for `--seconds`.

Measures:
- frames lost: heartbeat and metric rows in the database versus frames the clients sent (after the
  server's writer drained);
- p50/p99 frame sent → visible through `GET /api/v1/metrics/latest`, for `--probe` agents polled every
  100 ms (wall clock; includes up to 100 ms of polling granularity);
- server RSS (max over the run, /proc) and server CPU seconds while connecting and while steady.
Loopback only; bounded in time (the run is abandoned after seconds + 900).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
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

from bench.stats import pct  # noqa: E402
from tests.e2e.server import Server, fresh_database, start_server  # noqa: E402

from sindri_console.kit.clock import utcnow  # noqa: E402
from sindri_console.kit.ids import new_id  # noqa: E402
from sindri_console.models.agent import AgentState  # noqa: E402
from sindri_console.models.instance import Heartbeat, Instance  # noqa: E402
from sindri_console.models.metrics import MetricPoint  # noqa: E402

AGENT_KEY = "bench-agents-bootstrap-key-0123456789abcdef"


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


def iso_ms(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


# ---- client worker processes ----------------------------------------------------------------------


async def _agent(url: str, identity: str, iid: str, args: Any, out: dict[str, Any], start: Any,
                 probe: bool) -> None:
    started = time.time()
    try:
        # draupnir's upgrade request offers no permessage-deflate (fixtures' ws_handshake); --deflate offers it
        ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {AGENT_KEY}"},
                                      ping_interval=None, open_timeout=120, max_queue=4,
                                      compression="deflate" if args.deflate else None)
    except Exception:
        out["connect_errors"] += 1
        return
    try:
        await ws.send(heartbeat(identity, started))
        out["hb"] += 1
        out["connected"] += 1
        # a real agent keeps its heartbeat while the others connect: without it, a connect phase longer
        # than the loss threshold (90 s) would mark the first agents UNREACHABLE
        last_hb = time.monotonic()
        while not start.is_set():  # noqa: ASYNC110 - a multiprocessing event, not an asyncio one
            await asyncio.sleep(0.2)
            if time.monotonic() - last_hb >= args.heartbeat:
                last_hb = time.monotonic()
                await ws.send(heartbeat(identity, started))
                out["hb"] += 1
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + args.seconds
        next_hb = loop.time() + random.uniform(0, args.heartbeat)
        next_m = loop.time() + random.uniform(0, args.metrics)
        n = 0
        while True:
            wake = min(next_hb, next_m, stop_at)
            await asyncio.sleep(max(0.0, wake - loop.time()))
            now = loop.time()
            if now >= stop_at:
                break
            if now >= next_hb:
                await ws.send(heartbeat(identity, started))
                out["hb"] += 1
                next_hb += args.heartbeat
            if now >= next_m:
                n += 1
                ts = time.time()
                frame = metrics(identity, ts, n)
                await ws.send(frame)
                out["metrics"] += 1
                if probe:
                    out["probe"].setdefault(iid, {})[iso_ms(ts)] = time.time()
                next_m += args.metrics
        await ws.close(1001)
    except websockets.ConnectionClosed as exc:
        out["closed_by_server"] += 1
        code = exc.rcvd.code if exc.rcvd else None
        out["close_codes"][str(code)] = out["close_codes"].get(str(code), 0) + 1
    except Exception:
        out["errors"] += 1


async def _worker_main(url: str, agents: list[tuple[str, str, bool]], args: Any, start: Any, ready: Any,
                       results: Any) -> None:
    out: dict[str, Any] = {"hb": 0, "metrics": 0, "connected": 0, "connect_errors": 0, "closed_by_server": 0,
                           "errors": 0, "close_codes": {}, "probe": {}}
    tasks = []
    per_worker_ramp = args.ramp / args.workers
    for i, (identity, iid, probe) in enumerate(agents):
        tasks.append(asyncio.create_task(_agent(url, identity, iid, args, out, start, probe)))
        if (i + 1) % 50 == 0:
            await asyncio.sleep(50 / per_worker_ramp)
    while out["connected"] + out["connect_errors"] < len(agents):  # noqa: ASYNC110 - shared counters
        await asyncio.sleep(0.2)
    ready.put(len(agents))
    await asyncio.gather(*tasks)
    results.put(out)


def worker(url: str, agents: list[tuple[str, str, bool]], args: Any, start: Any, ready: Any, results: Any) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, len(agents) * 2 + 500)), hard))
    asyncio.run(_worker_main(url, agents, args, start, ready, results))


# ---- the measuring process --------------------------------------------------------------------------


async def insert_instances(database_url: str, n: int) -> list[tuple[str, str]]:
    """Registered instances, as POST /api/v1/instances with an agent body would leave them."""
    now = utcnow()
    agents = [(f"bench-agent-{i:05d}", new_id()) for i in range(n)]
    eng = create_async_engine(database_url)
    try:
        async with eng.begin() as c:
            for chunk in range(0, n, 1000):
                part = agents[chunk:chunk + 1000]
                await c.execute(Instance.__table__.insert(), [{
                    "id": iid, "name": ident, "provider": "docker", "region": "local", "extensions": [], "tags": {},
                    "status": "RUNNING", "status_reason": "Registered", "status_changed_at": now,
                    "created_at": now, "updated_at": now} for ident, iid in part])
                await c.execute(AgentState.__table__.insert(), [{
                    "instance_id": iid, "agent_instance_id": ident, "agent_version": "1.1.0-bench",
                    "capabilities": [], "connected": False, "heartbeat_lost": False, "frames_dropped": 0,
                    "last_registered_at": now, "updated_at": now} for ident, iid in part])
    finally:
        await eng.dispose()
    return agents


async def count_rows(database_url: str) -> tuple[int, int]:
    eng = create_async_engine(database_url)
    try:
        async with eng.connect() as c:
            hb = await c.scalar(select(func.count()).select_from(Heartbeat))
            mp_ = await c.scalar(select(func.count()).select_from(MetricPoint))
    finally:
        await eng.dispose()
    return int(hb or 0), int(mp_ or 0)


async def poll_latest(server: Server, ids: list[str], seen_at: dict[tuple[str, str], float], stop: asyncio.Event,
                      errors: list[int]) -> None:
    """Record the wall time at which each (instance, metrics timestamp) first shows in /metrics/latest."""
    last: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with httpx.AsyncClient(timeout=10) as http:
        while not stop.is_set():
            try:
                r = await http.get(server.url + "/api/v1/metrics/latest", params={"instanceIds": ",".join(ids)},
                                   headers=headers)
            except httpx.HTTPError:
                errors[0] += 1
                continue
            now = time.time()
            if r.status_code == 200:
                for row in r.json()["data"]:
                    if last.get(row["instanceId"]) != row["timestamp"]:
                        last[row["instanceId"]] = row["timestamp"]
                        seen_at.setdefault((row["instanceId"], row["timestamp"]), now)
            await asyncio.sleep(0.1)


async def run(server: Server, database_url: str, args: Any) -> dict[str, Any]:
    pid = server.proc.pid
    agents = await insert_instances(database_url, args.agents)
    probes = {iid for _, iid in random.sample(agents, min(args.probe, len(agents)))}
    ctx = mp.get_context("spawn")
    start, ready, results = ctx.Event(), ctx.Queue(), ctx.Queue()
    url = server.url.replace("http://", "ws://", 1) + "/ws/agent"
    slices = [agents[i::args.workers] for i in range(args.workers)]
    procs = [ctx.Process(target=worker, args=(url, [(a, b, b in probes) for a, b in part], args, start, ready,
                                              results), daemon=True) for part in slices]
    cpu0 = cpu_seconds(pid)
    t0 = time.monotonic()
    for p in procs:
        p.start()
    loop = asyncio.get_running_loop()
    for _ in procs:
        await loop.run_in_executor(None, ready.get)
    connect_seconds = time.monotonic() - t0
    rss_connected = rss_mb(pid)
    print(f"connected {args.agents} agents in {connect_seconds:.1f} s; RSS {rss_connected:.0f} MB", flush=True)
    cpu1 = cpu_seconds(pid)
    seen_at: dict[tuple[str, str], float] = {}
    stop = asyncio.Event()
    poll_errors = [0]
    probe_ids = sorted(probes)
    pollers = [asyncio.create_task(poll_latest(server, probe_ids[i:i + 100], seen_at, stop, poll_errors))
               for i in range(0, len(probe_ids), 100)]
    start.set()
    max_rss = rss_connected
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        await asyncio.sleep(1)
        max_rss = max(max_rss, rss_mb(pid))
    outs = [await loop.run_in_executor(None, results.get) for _ in procs]
    cpu2 = cpu_seconds(pid)
    await asyncio.sleep(5)
    stop.set()
    await asyncio.gather(*pollers)
    for p in procs:
        p.join(10)
    hb_sent = sum(o["hb"] for o in outs)
    m_sent = sum(o["metrics"] for o in outs)
    hb_rows, metric_rows = await count_rows(database_url)
    # the writer may still be committing the closes of every socket at once: wait until the rows match,
    # or until they stop changing for 15 s (at most 120 s)
    drain_started = last_change = time.monotonic()
    while (hb_rows, metric_rows) != (hb_sent, m_sent) and time.monotonic() - drain_started < 120:
        await asyncio.sleep(1)
        counts = await count_rows(database_url)
        if counts != (hb_rows, metric_rows):
            hb_rows, metric_rows = counts
            last_change = time.monotonic()
        elif time.monotonic() - last_change >= 15:
            break
    latencies = []
    never = 0
    for o in outs:
        for iid, sends in o["probe"].items():
            for ts, sent in sends.items():
                seen = seen_at.get((iid, ts))
                if seen is None:
                    never += 1
                else:
                    latencies.append((seen - sent) * 1000)
    close_codes: dict[str, int] = {}
    for o in outs:
        for k, v in o["close_codes"].items():
            close_codes[k] = close_codes.get(k, 0) + v
    return {
        "agents": args.agents, "workers": args.workers, "connect_seconds": round(connect_seconds, 1),
        "connect_errors": sum(o["connect_errors"] for o in outs),
        "closed_by_server": sum(o["closed_by_server"] for o in outs), "close_codes": close_codes,
        "client_errors": sum(o["errors"] for o in outs),
        "heartbeats_sent": hb_sent, "heartbeat_rows": hb_rows, "metrics_sent": m_sent, "metric_rows": metric_rows,
        "frames_lost": (hb_sent - hb_rows) + (m_sent - metric_rows),
        "frames_per_second": round((hb_sent + m_sent) / args.seconds, 1),
        "latency_samples": len(latencies), "probe_frames_never_visible": never,
        "latest_poll_errors": poll_errors[0], "p50_ms": round(pct(latencies, 50), 1),
        "p99_ms": round(pct(latencies, 99), 1), "max_ms": round(max(latencies or [float("nan")]), 1),
        "server_rss_connected_mb": round(rss_connected, 1), "server_rss_max_mb": round(max_rss, 1),
        "server_cpu_seconds_connect": round(cpu1 - cpu0, 1), "server_cpu_seconds_steady": round(cpu2 - cpu1, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--heartbeat", type=float, default=10)
    parser.add_argument("--metrics", type=float, default=30)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--probe", type=int, default=200)
    parser.add_argument("--ramp", type=float, default=200, help="new connections per second, all workers together")
    parser.add_argument("--deflate", action="store_true",
                        help="offer permessage-deflate like our own agent (draupnir does not)")
    parser.add_argument("--workers", type=int, default=4, help="client processes")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the server inherits it: one socket per agent
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
            result = asyncio.run(asyncio.wait_for(run(server, db, args), args.seconds + 900))
        finally:
            server.stop()
            lines = server.log_path.read_text().splitlines()
    slow = [line for line in lines if "ingest_batch_slow" in line]
    slowest = sorted(slow, key=lambda line: -json.loads(line).get("seconds", 0))[:3] if slow else []
    # a socket closed by an error is a bug, not load: show the first one
    errors = [line for line in lines if '"level": "error"' in line]
    print(json.dumps({"database": args.database, **result, "slow_batches": len(slow),
                      "slowest_batches": [json.loads(line) for line in slowest],
                      "server_errors": len(errors), "first_server_error": json.loads(errors[0]) if errors else None},
                     indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
