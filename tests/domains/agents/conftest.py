"""A real uvicorn server in the test's event loop (loopback, free port) over the `console` app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from tests.domains.agents.helpers import Server, free_port


@pytest.fixture
async def server(console: Any) -> AsyncIterator[Server]:
    port = free_port()
    s = console.rt.settings
    config = uvicorn.Config(console.app, host="127.0.0.1", port=port, lifespan="off", log_config=None,
                            access_log=False, ws_max_size=s.AGENT_MAX_FRAME_BYTES,
                            ws_ping_interval=s.WS_PING_INTERVAL_SECONDS, ws_ping_timeout=s.WS_PING_TIMEOUT_SECONDS)
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    for _ in range(200):
        if srv.started:
            break
        await asyncio.sleep(0.02)
    assert srv.started
    try:
        yield Server(console, f"ws://127.0.0.1:{port}")
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 15)


