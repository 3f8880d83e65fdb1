"""Set-ups shared by the log tests: teams for scope, agent keys, direct status changes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from sindri_console.domains.identity.keys import mint_agent_key
from sindri_console.models.instance import Instance

API = "/api/v1"


async def team_with(console: Any, admin: str, name: str, user_id: str, instance_ids: list[str]) -> str:
    r = await console.client.post(f"{API}/admin/teams", json={"name": name, "members": [{"userId": user_id}]},
                                  headers=console.auth(admin))
    assert r.status_code == 201, r.text
    team_id = r.json()["id"]
    if instance_ids:
        r = await console.client.post(f"{API}/admin/teams/{team_id}/instances", json={"instanceIds": instance_ids},
                                      headers=console.auth(admin))
        assert r.status_code == 200, r.text
    return team_id  # type: ignore[no-any-return]


async def agent_key(console: Any, instance_id: str) -> str:
    async with console.rt.db.write() as s:
        _, raw = await mint_agent_key(s, instance_id=instance_id, name="agent", expires_at=None, created_by=None)
    return raw  # type: ignore[no-any-return]


async def set_status(console: Any, instance_id: str, status: str) -> None:
    async with console.rt.db.write() as s:
        await s.execute(update(Instance).where(Instance.id == instance_id).values(status=status))


async def ingest(console: Any, key: str, instance_id: str | None, message: str, **fields: Any) -> Any:
    body: dict[str, Any] = {"level": "INFO", "source": "APP", "message": message, **fields}
    if instance_id is not None:
        body["instanceId"] = instance_id
    return await console.client.post(f"{API}/logs/ingest", json=body, headers=console.auth(key))


async def batch(console: Any, key: str, entries: list[dict[str, Any]]) -> Any:
    return await console.client.post(f"{API}/logs/ingest/batch", json={"entries": entries},
                                     headers=console.auth(key))
