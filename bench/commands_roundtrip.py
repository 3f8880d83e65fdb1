"""Command round trip (issue "Acting on the fleet"; 40 §15): API → agent → result stored → response.

Usage:  python bench/commands_roundtrip.py [--database sqlite|postgresql] [--agents 100] [--requests 300]
                                           [--bulk-agents 500] [--concurrency 1]

Starts a real `sindri-console serve` on 127.0.0.1, connects `--bulk-agents` simulated C agents over
/ws/agent that answer every `command:dispatch` at once (ack, then result), then measures:
- `POST /api/v1/commands` with `wait: true` against the first `--agents` agents, `--requests` times,
  `--concurrency` requests in flight: p50/p95/p99 of the response time (targets p50 < 50 ms, p99 < 200 ms);
- bulk to every agent: `POST /api/v1/commands/bulk` (100 instances per request, the route's cap), all
  requests sent together with `wait: true`, time until every response is back with every row SUCCEEDED
  (target < 5 s).
Loopback only; bounded in time (every wait has a timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stats import pct  # noqa: E402
from tests.e2e.server import fresh_database, start_server  # noqa: E402

AGENT_KEY = "bench-commands-agent-key-0123456789abcdef"
BULK_CAP = 100


def report(label: str, values: list[float]) -> None:
    print(f"{label:60s} n={len(values):4d}  p50={statistics.median(values):7.2f} ms  "
          f"p95={pct(values, 95):7.2f} ms  p99={pct(values, 99):7.2f} ms")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class SimulatedAgent:
    """A C-dialect agent that acknowledges and completes every dispatched command immediately."""

    def __init__(self, ws_url: str, instance_id: str) -> None:
        self.ws_url = ws_url
        self.instance_id = instance_id
        self.seq = 0
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    def _frame(self, type_: str, data: dict[str, Any]) -> str:
        self.seq += 1
        return json.dumps({"protocolVersion": "1.0", "type": type_, "id": f"{self.instance_id[:8]}-{self.seq}",
                           "ts": _now(), "data": data})

    async def connect(self) -> None:
        self.ws = await websockets.connect(self.ws_url, additional_headers={
            "Authorization": f"Bearer {AGENT_KEY}", "X-Instance-ID": self.instance_id}, max_size=2**24)
        await self.ws.send(json.dumps({"protocolVersion": "1.0", "type": "hello", "ts": _now(), "data": {
            "instanceId": self.instance_id, "agentInstanceId": self.instance_id,
            "agentName": "sindri-console-agent", "agentVersion": "bench", "protocolVersion": "1.0",
            "capabilities": ["heartbeat", "commands", "scripts"], "inFlightCommands": []}}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if msg["type"] == "welcome":
                break
        self.task = asyncio.create_task(self._serve())

    async def _serve(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                msg = json.loads(raw)
                if msg.get("type") != "command:dispatch":
                    continue
                cid = msg["data"]["commandId"]
                await self.ws.send(self._frame("command:ack", {"commandId": cid, "accepted": True, "pid": 1,
                                                               "startedAt": _now()}))
                await self.ws.send(self._frame("command:result", {
                    "commandId": cid, "exitCode": 0, "signal": None, "stdout": "ok\n", "stderr": "",
                    "stdoutBytes": 3, "stderrBytes": 0, "stdoutTruncated": False, "stderrTruncated": False,
                    "durationMs": 1, "timedOut": False, "cancelled": False, "error": None}))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def register(client: httpx.AsyncClient, n: int) -> list[str]:
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> str:
        name = f"bench-cmd-{i:04d}"
        async with sem:
            r = await client.post("/api/v1/instances", headers={"Authorization": f"Bearer {AGENT_KEY}"}, json={
                "instance_id": name, "hostname": name, "provider": "docker", "region": "local",
                "agent_version": "bench", "os": "linux", "arch": "amd64", "timestamp": _now()})
        assert r.status_code in (200, 201), r.text
        return r.json()["id"]  # type: ignore[no-any-return]

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def roundtrips(client: httpx.AsyncClient, ids: list[str], requests: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            r = await client.post("/api/v1/commands", json={"instanceId": ids[i % len(ids)], "command": "true"})
            latencies.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 201 and r.json()["status"] == "SUCCEEDED", r.text

    await asyncio.gather(*(one(i) for i in range(requests)))
    return latencies


async def bulk(client: httpx.AsyncClient, ids: list[str]) -> tuple[float, list[float]]:
    per_request: list[float] = []

    async def one(chunk: list[str]) -> None:
        t0 = time.perf_counter()
        r = await client.post("/api/v1/commands/bulk", json={"instanceIds": chunk, "command": "uptime"})
        per_request.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 207, r.text
        summary = r.json()["summary"]
        assert summary["succeeded"] == len(chunk), summary

    t0 = time.perf_counter()
    await asyncio.gather(*(one(ids[i:i + BULK_CAP]) for i in range(0, len(ids), BULK_CAP)))
    return (time.perf_counter() - t0), per_request


async def run(url: str, admin_key: str, args: argparse.Namespace) -> None:
    ws_url = url.replace("http://", "ws://") + "/ws/agent"
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits,
                                 headers={"Authorization": f"Bearer {admin_key}"}) as client:
        ids = await register(client, max(args.agents, args.bulk_agents))
        agents = [SimulatedAgent(ws_url, iid) for iid in ids]

        async def connect(upto: int) -> None:
            t0 = time.perf_counter()
            todo = [a for a in agents[:upto] if a.ws is None]
            for start in range(0, len(todo), 50):
                await asyncio.gather(*(a.connect() for a in todo[start:start + 50]))
            print(f"{upto} simulated agents connected ({len(todo)} new in {time.perf_counter() - t0:.1f} s)")
            await asyncio.sleep(2)  # let the connects' own writes settle

        try:
            await connect(args.agents)
            await roundtrips(client, ids[:args.agents], 20, 1)  # warm-up
            report(f"POST /commands wait:true, {args.agents} agents, concurrency {args.concurrency}",
                   await roundtrips(client, ids[:args.agents], args.requests, args.concurrency))
            await connect(args.bulk_agents)
            elapsed, per_request = await bulk(client, ids[:args.bulk_agents])
            print(f"bulk to {len(ids)} agents ({len(per_request)} requests of <= {BULK_CAP}, together): "
                  f"{elapsed:.2f} s until every result was stored and returned "
                  f"(slowest request {max(per_request):.0f} ms)")
        finally:
            await asyncio.gather(*(a.close() for a in agents), return_exceptions=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--bulk-agents", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=1)
    args = ap.parse_args()
    if args.database == "postgresql":
        os.environ.setdefault("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    else:
        os.environ.pop("TEST_DATABASE_URL", None)
    os.environ.pop("TEST_REDIS_URL", None)
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp)) as url:
        server = start_server(Path(tmp), url, extra_env={"SINDRI_CONSOLE_API_KEY": AGENT_KEY, "LOG_LEVEL": "warn"})
        try:
            assert server.admin_key
            print(f"database={args.database} agents={args.agents} bulk_agents={args.bulk_agents}")
            asyncio.run(asyncio.wait_for(run(server.url, server.admin_key, args), 600))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
