"""Without the Sindri CLI the driver refuses with 503 and changes nothing (10-core §6.4; §20 check 82)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from sindri_console.kit.cli_runner import CLI_MISSING_MESSAGE
from sindri_console.models.jobs import InstanceJob


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}  # the shared set-up points SINDRI_BIN_PATH at a file that does not exist


async def test_driver_actions_answer_503_and_deregistration_still_works(console: Any, admin: str) -> None:
    inst = await console.register(admin, "nocli-1")
    iid = inst["id"]
    for method, url in (("POST", f"/api/v1/instances/{iid}/suspend"), ("POST", f"/api/v1/instances/{iid}/backup"),
                        ("DELETE", f"/api/v1/instances/{iid}?destroy=true")):
        r = await console.client.request(method, url, headers=console.auth(admin))
        assert r.status_code == 503, r.text
        assert r.json()["message"] == CLI_MISSING_MESSAGE and "SINDRI_BIN_PATH" in r.json()["message"]
    r = await console.client.post("/api/v1/instances/bulk-action", json={"action": "suspend", "instanceIds": [iid]},
                                  headers=console.auth(admin))
    assert r.status_code == 503
    r = await console.client.get(f"/api/v1/instances/{iid}/lifecycle", headers=console.auth(admin))
    assert r.json()["driverAvailable"] is False
    assert r.json()["availableActions"] == ["suspend", "backup", "destroy", "deregister"]
    async with console.rt.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(InstanceJob)) == 0
    r = await console.client.get(f"/api/v1/instances/{iid}", headers=console.auth(admin))
    assert r.json()["status"] == "RUNNING" and r.json()["activeJobId"] is None
    r = await console.client.delete(f"/api/v1/instances/{iid}", headers=console.auth(admin))
    assert r.status_code == 200 and r.json()["status"] == "DEREGISTERED"


async def test_409_comes_before_503(console: Any, admin: str) -> None:
    inst = await console.register(admin, "nocli-2")
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/resume", headers=console.auth(admin))
    assert r.status_code == 409
