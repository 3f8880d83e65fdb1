"""A stopping `sindri-console serve` closes browser sockets with 1001 (40 §8.5), on either backend."""

from __future__ import annotations

import asyncio
import json

import websockets
from tests.e2e.server import fresh_database, start_server


def test_server_shutdown_closes_browser_sockets_with_1001(tmp_path):
    with fresh_database(tmp_path) as db:
        server = start_server(tmp_path, db)
        try:
            async def run() -> tuple[int | None, str | None]:
                url = server.url.replace("http://", "ws://", 1) + "/ws"
                async with websockets.connect(url, additional_headers={"X-Api-Key": server.admin_key or ""},
                                              open_timeout=10) as conn:
                    assert json.loads(await conn.recv())["type"] == "welcome"
                    server.proc.terminate()
                    try:
                        async with asyncio.timeout(15):
                            while True:
                                await conn.recv()
                    except websockets.ConnectionClosed as exc:
                        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, None)
                return None, None

            code, reason = asyncio.run(run())
            assert code == 1001 and reason == "Server shutting down"
            # uvicorn re-raises the captured SIGTERM after its graceful shutdown
            assert server.proc.wait(20) in (0, -15)
        finally:
            server.stop()
