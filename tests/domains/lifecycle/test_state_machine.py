"""The state machine as a table (10-core §6.2, §6.3; §20 checks 83–85).

The expected sets are written out from the spec's table here, independently of the guard's own table: for every
(status, action) pair the route must accept (2xx) exactly when the spec allows it and answer 409 otherwise, and
`GET …/lifecycle` must list exactly the allowed actions.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.domains.lifecycle.helpers import lifecycle, set_status

from sindri_console.kit.clock import utcnow

ACTIONS = ("suspend", "resume", "backup", "destroy", "deregister")
SPEC_AVAILABLE = {
    "RUNNING": ["suspend", "backup", "destroy", "deregister"],
    "UNREACHABLE": ["suspend", "resume", "backup", "destroy", "deregister"],
    "SUSPENDED": ["resume", "destroy", "deregister"],
    "STOPPED": ["resume", "destroy", "deregister"],
    "ERROR": ["resume", "destroy", "deregister"],
    "DEPLOYING": [],
    "SUSPENDING": [],
    "RESUMING": [],
    "DESTROYING": [],
    "DESTROYED": [],
    "DEREGISTERED": [],
}
ACCEPTED_STATUS = {"suspend": "SUSPENDING", "resume": "RESUMING", "backup": None, "destroy": "DESTROYING",
                   "deregister": "DEREGISTERED"}


async def _attempt(console: Any, key: str, iid: str, action: str) -> Any:
    if action == "deregister":
        return await console.client.delete(f"/api/v1/instances/{iid}", headers=console.auth(key))
    if action == "destroy":
        return await console.client.delete(f"/api/v1/instances/{iid}?destroy=true", headers=console.auth(key))
    return await console.client.post(f"/api/v1/instances/{iid}/{action}", headers=console.auth(key))


@pytest.mark.parametrize("status", list(SPEC_AVAILABLE))
async def test_every_action_from_every_status(console: Any, admin: str, operator: str, status: str) -> None:
    for action in ACTIONS:
        inst = await console.register(admin, f"sm-{status.lower()}-{action}")
        await set_status(console, inst["id"], status,
                         removed_at=utcnow() if status in ("DESTROYED", "DEREGISTERED") else None)
        view = await lifecycle(console, operator, inst["id"])
        assert view["availableActions"] == SPEC_AVAILABLE[status], (status, view)
        r = await _attempt(console, operator, inst["id"], action)
        if action in SPEC_AVAILABLE[status]:
            assert r.status_code in (200, 202), (status, action, r.text)
            body = r.json()
            after = body["instance"]["status"] if action != "deregister" else body["status"]
            assert after == (ACCEPTED_STATUS[action] or status), (status, action, after)
        else:
            assert r.status_code == 409, (status, action, r.text)


async def test_destroy_with_backup_only_where_backup_is_listed(console: Any, admin: str, operator: str) -> None:
    for status, allowed in (("RUNNING", True), ("UNREACHABLE", True), ("SUSPENDED", False), ("STOPPED", False),
                            ("ERROR", False)):
        inst = await console.register(admin, f"dwb-{status.lower()}")
        await set_status(console, inst["id"], status)
        r = await console.client.delete(f"/api/v1/instances/{inst['id']}?destroy=true&backup=true",
                                        headers=console.auth(operator))
        if allowed:
            assert r.status_code == 202, (status, r.text)
            assert r.json()["backup"]["purpose"] == "PRE_DESTROY"
        else:
            assert r.status_code == 409, (status, r.text)
            assert status in r.json()["message"]


async def test_an_active_backup_job_blocks_everything(console: Any, admin: str, operator: str) -> None:
    inst = await console.register(admin, "busy-backup")
    await set_status(console, inst["id"], "RUNNING", active_job_id="01a00000-0000-7000-8000-000000000000")
    view = await lifecycle(console, operator, inst["id"])
    assert view["availableActions"] == []
    for action in ACTIONS:
        r = await _attempt(console, operator, inst["id"], action)
        assert r.status_code == 409, (action, r.text)


@pytest.mark.parametrize("provider", ["aws", None])
async def test_unmanaged_providers_can_only_be_deregistered(
    console: Any, admin: str, operator: str, provider: str | None
) -> None:
    inst = await console.register(admin, "unmanaged", provider="aws", region="us-east-1")
    if provider is None:
        await set_status(console, inst["id"], "RUNNING", provider=None)
    view = await lifecycle(console, operator, inst["id"])
    assert view["availableActions"] == ["deregister"]
    assert view["managedProvider"] is False
    for action in ("suspend", "backup", "destroy"):
        r = await _attempt(console, operator, inst["id"], action)
        assert r.status_code == 409
        assert r.json()["message"] == (f"Provider '{provider or 'none'}' is not managed by the lifecycle driver; "
                                       "only deregistration is possible")
    r = await _attempt(console, operator, inst["id"], "deregister")
    assert r.status_code == 200


async def test_lifecycle_route_scope_and_roles(console: Any, admin: str) -> None:
    inst = await console.register(admin, "scoped")
    _, viewer = await console.user("VIEWER")
    assert (await lifecycle(console, viewer, inst["id"]))["availableActions"][0] == "suspend"
    r = await console.client.get("/api/v1/instances/nope/lifecycle", headers=console.auth(viewer))
    assert r.status_code == 404
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend", headers=console.auth(viewer))
    assert r.status_code == 403
