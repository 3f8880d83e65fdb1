from __future__ import annotations

from sindri_console.kit.tickets import TicketStore
from sindri_console.runtime import Runtime


async def startup(rt: Runtime) -> None:
    rt.services["tickets"] = TicketStore(rt.settings.REDIS_URL)


async def shutdown(rt: Runtime) -> None:
    store = rt.services.get("tickets")
    if store is not None:
        await store.close()
