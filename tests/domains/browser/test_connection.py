"""The per-socket send queue: seq order, slow consumers, lagged (40 §8.5)."""

from __future__ import annotations

import asyncio
import json

from sindri_console.domains.browser.connection import SEND_QUEUE_MAX_BYTES, BrowserSocket
from sindri_console.domains.browser.schemas import build_frame, push_frame
from sindri_console.kit.auth import Principal


class GatedWs:
    """A peer that reads nothing until the gate opens."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.gate = asyncio.Event()
        self.closed: tuple[int, str] | None = None
        self.arrived = asyncio.Event()

    async def send_text(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(json.loads(text))
        self.arrived.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def _principal() -> Principal:
    return Principal(credential="user_key", api_key_id="k", user_id="u", user_role="VIEWER")


async def _drain(sock: BrowserSocket, ws: GatedWs, count: int) -> None:
    async with asyncio.timeout(5):
        while len(ws.sent) < count:
            ws.arrived.clear()
            await ws.arrived.wait()


async def test_slow_consumer_loses_oldest_pushes_then_gets_lagged():
    ws = GatedWs()
    sock = BrowserSocket(ws, _principal(), "c1", max_messages=10)
    sock.start_sender()
    sock.reply("welcome", {}, None)
    await asyncio.sleep(0.01)  # the sender holds the welcome, blocked on the peer
    for i in range(25):
        sock.enqueue(push_frame("metrics", "metrics", json.dumps({"n": i}), "2026-11-28T00:00:00.000Z"))
        if i == 12:
            sock.reply("pong", {}, "p1")  # a reply in the middle is never dropped
    assert sock.queued == 10
    ws.gate.set()
    await _drain(sock, ws, 12)
    await asyncio.sleep(0.05)
    types = [m["type"] for m in ws.sent]
    assert types[0] == "welcome" and types[1] == "lagged"
    assert ws.sent[1]["data"] == {"dropped": 16}
    assert "pong" in types
    kept = [m["data"]["n"] for m in ws.sent if m["type"] == "metrics"]
    assert kept == list(range(16, 25))  # the newest survive, in order
    assert [m["seq"] for m in ws.sent] == list(range(1, len(ws.sent) + 1))
    await sock.stop_sender()


async def test_byte_bound_drops_pushes_too():
    ws = GatedWs()
    sock = BrowserSocket(ws, _principal(), "c2", max_messages=100_000)
    sock.start_sender()
    sock.reply("welcome", {}, None)
    await asyncio.sleep(0.01)
    big = json.dumps("x" * (1024 * 1024))
    for _ in range(12):
        sock.enqueue(push_frame("logs", "logs", big, "2026-11-28T00:00:00.000Z"))
    assert sock.queued <= SEND_QUEUE_MAX_BYTES // (1024 * 1024)
    ws.gate.set()
    await _drain(sock, ws, 2)
    await asyncio.sleep(0.05)
    assert ws.sent[1]["type"] == "lagged" and ws.sent[1]["data"]["dropped"] >= 4
    await sock.stop_sender()


async def test_close_is_idempotent_and_stops_sending():
    ws = GatedWs()
    sock = BrowserSocket(ws, _principal(), "c3", max_messages=10)
    sock.start_sender()
    await sock.close(4401, "API key has been revoked")
    await sock.close(1001, "again")
    assert ws.closed == (4401, "API key has been revoked")
    sock.enqueue(build_frame("pong", {}))
    assert sock.queued == 0
