"""Browser push fan-out (40 §15): pushes/s and p99 trigger → receive latency for many `/ws` sockets.

Usage:  python bench/browser_fanout.py [--database sqlite|postgresql] [--redis] [--replicas 1|2]
                                       [--source agent|bus] [--sockets 500] [--rate 20] [--seconds 10]

Starts real `sindri-console serve` processes on 127.0.0.1 (two share PostgreSQL and Redis with
`--replicas 2`), opens `--sockets` browser sockets on the first replica, each subscribed to the
`metrics` channel of one instance, then triggers `--rate` pushes per second for `--seconds`:

- `--source agent`: a draupnir-style agent on the LAST replica sends metrics frames; the latency is
  frame sent → push received (ingest, commit, bus, fan-out, socket write);
- `--source bus` (needs `--redis`): the bench publishes on Redis itself; publish → push received.

Prints pushes received, pushes/s and p50/p95/p99/max latency in ms. Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stats import pct  # noqa: E402
from tests.e2e.server import Server, fresh_database, start_server  # noqa: E402

AGENT_KEY = "bench-bootstrap-agent-key-0123456789abcdef"
IDENTITY = "bench-fanout-agent"
DEADLINE_SECONDS = 300
TS_KEY = '"timestamp":"'


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux), to report server CPU per push independently of other load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://", 1)


class Receivers:
    def __init__(self, sockets: int) -> None:
        self.sockets = sockets
        self.sent_at: dict[str, float] = {}  # trigger key -> perf_counter at send
        self.latencies: list[float] = []
        self.received = 0
        self.lagged = 0
        self.last_receive = 0.0

    async def settle(self, expected: int, quiet_seconds: float = 5.0) -> None:
        """Wait until every push arrived, or nothing arrived for `quiet_seconds` (what is missing then is lost)."""
        last, since = -1, time.perf_counter()
        while self.received + self.lagged < expected and time.perf_counter() - since < quiet_seconds:
            if self.received != last:
                last, since = self.received, time.perf_counter()
            await asyncio.sleep(0.1)

    async def run(self, conn: Any) -> None:
        """Reads pushes; the trigger key is the push's `data.timestamp`, cut out without a JSON parse so the
        bench's own reading costs as little as possible."""
        with contextlib.suppress(websockets.ConnectionClosed, asyncio.CancelledError):
            async for raw in conn:
                now = time.perf_counter()
                if raw.startswith('{"type":"lagged"'):
                    self.lagged += json.loads(raw)["data"]["dropped"]
                    continue
                if not raw.startswith('{"type":"metrics"'):
                    continue
                start = raw.find(TS_KEY, raw.find('"data":')) + len(TS_KEY)
                sent = self.sent_at.get(raw[start:raw.find('"', start)])
                if sent is not None:
                    self.received += 1
                    self.latencies.append((now - sent) * 1000)
                    self.last_receive = now


async def open_browsers(server: Server, key: str, instance_id: str, count: int) -> list[Any]:
    conns = []
    for start in range(0, count, 50):
        batch = await asyncio.gather(*(
            websockets.connect(ws_url(server) + "/ws", additional_headers={"X-Api-Key": key}, open_timeout=30,
                               max_queue=None)
            for _ in range(start, min(count, start + 50))))
        conns.extend(batch)
    for conn in conns:
        assert json.loads(await conn.recv())["type"] == "welcome"
        await conn.send(json.dumps({"type": "subscribe", "id": "s",
                                    "data": {"channel": "metrics", "instanceId": instance_id}}))
        reply = json.loads(await conn.recv())
        assert reply["type"] == "subscribed", reply
    return conns


def metrics_frame(ts: datetime, cpu: float) -> str:
    stamp = ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}000000Z"
    return json.dumps({"protocol_version": "", "type": "metrics", "payload": {
        "instance_id": IDENTITY, "timestamp": stamp,
        "cpu": {"usage_percent": cpu, "load_avg_1": 0.5, "load_avg_5": 0.4, "load_avg_15": 0.3, "core_count": 2},
        "memory": {"total_bytes": 1 << 30, "used_bytes": 1 << 29, "free_bytes": 1 << 29, "usage_percent": 50.0},
        "disk": [], "network": {"bytes_sent": 1, "bytes_recv": 2, "packets_sent": 3, "packets_recv": 4}}})


async def drive_agent(server: Server, recv: Receivers, rate: int, seconds: float) -> int:
    """Metrics frames with distinct millisecond timestamps; the push carries the timestamp back."""
    base = datetime.now(UTC) - timedelta(seconds=1)
    async with websockets.connect(ws_url(server) + "/ws/agent", open_timeout=10,
                                  additional_headers={"Authorization": f"Bearer {AGENT_KEY}"}) as agent:
        drain = asyncio.create_task(_discard(agent))
        total = int(rate * seconds)
        start = time.perf_counter()
        for i in range(total):
            ts = base + timedelta(milliseconds=i * 7)
            iso = ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
            recv.sent_at[iso] = time.perf_counter()
            await agent.send(metrics_frame(ts, 10 + (i % 80)))
            await _pace(start, i + 1, rate)
        await recv.settle(total * recv.sockets)
        drain.cancel()
    return total


async def drive_bus(redis_url: str, instance_id: str, recv: Receivers, rate: int, seconds: float) -> int:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    channel = f"sindri:instance:{instance_id}:metrics"
    total = int(rate * seconds)
    start = time.perf_counter()
    try:
        for i in range(total):
            key = f"bench-{i}"
            recv.sent_at[key] = time.perf_counter()
            await client.publish(channel, json.dumps({"instanceId": instance_id, "timestamp": key,
                                                      "cpuPercent": 12.5}))
            await _pace(start, i + 1, rate)
        await recv.settle(total * recv.sockets)
    finally:
        await client.aclose()
    return total


async def _pace(start: float, done: int, rate: int) -> None:
    delay = start + done / rate - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


async def _discard(conn: Any) -> None:
    with contextlib.suppress(websockets.ConnectionClosed, asyncio.CancelledError):
        async for _ in conn:
            pass


async def run(servers: list[Server], args: argparse.Namespace) -> None:
    first, last = servers[0], servers[-1]
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(last.url + "/api/v1/instances", headers={"Authorization": f"Bearer {AGENT_KEY}"},
                            json={"instance_id": IDENTITY, "hostname": IDENTITY, "provider": "docker",
                                  "region": "local"})
        r.raise_for_status()
        instance_id = r.json()["id"]
    conns = await open_browsers(first, first.admin_key or "", instance_id, args.sockets)
    recv = Receivers(args.sockets)
    readers = [asyncio.create_task(recv.run(c)) for c in conns]
    started = time.perf_counter()
    cpu_before = [cpu_seconds(s.proc.pid) for s in servers]
    if args.source == "bus":
        sent = await drive_bus(os.environ["TEST_REDIS_URL"], instance_id, recv, args.rate, args.seconds)
    else:
        sent = await drive_agent(last, recv, args.rate, args.seconds)
    elapsed = (recv.last_receive or time.perf_counter()) - started
    cpu_used = [cpu_seconds(s.proc.pid) - b for s, b in zip(servers, cpu_before, strict=True)]
    for t in readers:
        t.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for c in conns:
        await c.close()
    expected = sent * args.sockets
    lat = recv.latencies
    print(f"database={args.database} redis={bool(args.redis)} replicas={args.replicas} source={args.source} "
          f"sockets={args.sockets} rate={args.rate}/s seconds={args.seconds}")
    print(f"triggers={sent} pushes_expected={expected} pushes_received={recv.received} lagged_dropped={recv.lagged}")
    print(f"pushes_per_second={recv.received / elapsed:.0f} "
          f"server_cpu_seconds={'/'.join(f'{c:.2f}' for c in cpu_used)} "
          f"first_replica_cpu_us_per_push={cpu_used[0] / max(recv.received, 1) * 1e6:.0f}")
    print(f"latency_ms p50={pct(lat, 50):.1f} p95={pct(lat, 95):.1f} p99={pct(lat, 99):.1f} max={max(lat or [0]):.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--redis", action="store_true", help="use Redis (redis://127.0.0.1:6379/0 unless TEST_REDIS_URL)")
    ap.add_argument("--replicas", type=int, choices=[1, 2], default=1)
    ap.add_argument("--source", choices=["agent", "bus"], default="agent")
    ap.add_argument("--sockets", type=int, default=500)
    ap.add_argument("--rate", type=int, default=20, help="triggers per second")
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    if args.replicas == 2 and not (args.redis and args.database == "postgresql"):
        ap.error("--replicas 2 needs --database postgresql and --redis")
    if args.source == "bus" and not args.redis:
        ap.error("--source bus needs --redis")
    if args.database == "postgresql":
        os.environ.setdefault("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    else:
        os.environ.pop("TEST_DATABASE_URL", None)
    if args.redis:
        os.environ.setdefault("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    else:
        os.environ.pop("TEST_REDIS_URL", None)
    env = {"SINDRI_CONSOLE_API_KEY": AGENT_KEY, "LOG_LEVEL": "warn"}
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp)) as url:
        servers: list[Server] = []
        try:
            servers.append(start_server(Path(tmp), url, extra_env=env))
            if args.replicas == 2:
                servers.append(start_server(Path(tmp), url, extra_env=env, expect_admin_key=False))
            asyncio.run(asyncio.wait_for(run(servers, args), DEADLINE_SECONDS))
        finally:
            for s in servers:
                s.stop()


if __name__ == "__main__":
    main()
