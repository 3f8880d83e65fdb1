"""Agent identity resolution (40 §2.4): many values in one pass, same order of precedence as one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from sindri_console.domains.instances.repository import resolve_identities, resolve_identity
from sindri_console.kit.clock import utcnow
from sindri_console.models.agent import AgentState
from sindri_console.models.instance import Instance


async def test_resolve_identities_by_id_agent_identity_name_and_normalised_name(console: Any, admin: str) -> None:
    a = await console.register(admin, "res-alpha")
    b = await console.register(admin, "res-beta")
    c = await console.register(admin, "my-host-01")
    gone = await console.register(admin, "res-gone")
    async with console.rt.db.write() as s:
        s.add(AgentState(instance_id=b["id"], agent_instance_id="agent-uuid-b", capabilities=[], connected=False,
                         heartbeat_lost=False, frames_dropped=0, updated_at=utcnow()))
        # an agent identity equal to another instance's name: identity wins over name (§2.4 order)
        s.add(AgentState(instance_id=c["id"], agent_instance_id="res-beta", capabilities=[], connected=False,
                         heartbeat_lost=False, frames_dropped=0, updated_at=utcnow()))
        await s.execute(update(Instance).where(Instance.id == gone["id"]).values(status="DESTROYED"))
    values = [a["id"], "agent-uuid-b", "res-alpha", "res-beta", "My_Host.01", "res-gone", gone["id"], "nobody", ""]
    async with console.rt.db.read() as s:
        found = await resolve_identities(s, values)
        assert found == {a["id"]: a["id"], "agent-uuid-b": b["id"], "res-alpha": a["id"],
                         "res-beta": c["id"], "My_Host.01": c["id"]}
        # the single lookup answers the same, as an instance
        for value in values:
            one = await resolve_identity(s, value)
            assert (one.id if one else None) == found.get(value)
