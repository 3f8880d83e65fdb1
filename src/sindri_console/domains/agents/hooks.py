"""Start-up of the agent domain: the connection hub (`rt.services["agents"]`) and the agent loops (40 §13)."""

from __future__ import annotations

from sindri_console.domains.agents import service
from sindri_console.domains.agents.hub import AgentHub
from sindri_console.loops.base import LoopSpec
from sindri_console.runtime import Runtime


async def startup(rt: Runtime) -> None:
    hub = AgentHub(rt)
    rt.services["agents"] = hub
    await hub.start()
    s = rt.settings
    rt.loops.add(LoopSpec("heartbeat-loss", s.AGENT_HEARTBEAT_LOSS_CHECK_SECONDS,
                          lambda: service.heartbeat_loss_tick(rt), lease="heartbeat-loss",
                          lease_ttl=max(30.0, s.AGENT_HEARTBEAT_LOSS_CHECK_SECONDS * 3)))
    rt.loops.add(LoopSpec("replica-reaper", 30, lambda: service.reap_replicas(rt), lease="replica-reaper"))
    rt.loops.add(LoopSpec("agent-retention", 3600, lambda: service.retention_tick(rt), lease="agent-retention",
                          lease_ttl=600))


async def shutdown(rt: Runtime) -> None:
    hub = rt.services.get("agents")
    if isinstance(hub, AgentHub):
        await hub.stop()
