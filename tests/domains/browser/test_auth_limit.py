"""Failed authentication on /ws counts against the per-address limit: close 4429 (40 §8.1 step 1)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"RATE_LIMIT_ENABLED": True, "RATE_LIMIT_AUTH_FAILURES_PER_MINUTE": 2}


async def test_failed_attempts_lead_to_4429(console, server):
    _, viewer = await console.user("VIEWER")
    codes = []
    for _ in range(3):
        async with server.ws(ticket="0" * 64) as ws:
            codes.append(await ws.close_code())
    # the window may already be used up by an earlier run sharing Redis: 4401s, then 4429 only
    assert codes[-1] == 4429 and set(codes) <= {4401, 4429}
    # the address is blocked, valid credentials included, until the window ends
    async with server.ws(key=viewer) as ws:
        assert await ws.close_code() == 4429
