"""Start the browser service (one distributor per replica) and its 60 s principal re-check loop."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from typing import Any

from sindri_console.domains.browser.service import RECHECK_SECONDS, BrowserService
from sindri_console.loops.base import LoopSpec
from sindri_console.runtime import Runtime

_TICKET = re.compile(r"(ticket=)[^&\s\"]*")


class TicketRedaction(logging.Filter):
    """uvicorn logs `"WebSocket /ws?ticket=…" [accepted]`: the ticket value never reaches a log (40 §8.1)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_TICKET.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str) and "ticket=" in record.msg:
            record.msg = _TICKET.sub(r"\1***", record.msg)
        return True


def _install_redaction() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, TicketRedaction) for f in logger.filters):
        logger.addFilter(TicketRedaction())


def _close_sockets_first_on_exit_signal(service: BrowserService) -> None:
    """uvicorn fails every open WebSocket with 1012 before the lifespan shutdown runs; 40 §8.5 closes
    browser sockets with 1001. When uvicorn's own exit handler is installed (a `serve` process), the
    1001 closes run first and uvicorn's handler right after them (at most 1 s later)."""
    import uvicorn

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(sig)
        if not isinstance(getattr(current, "__self__", None), uvicorn.Server):
            continue

        def on_signal(signum: int, frame: Any, _uvicorn: Any = current) -> None:
            loop.call_soon_threadsafe(service.begin_shutdown, lambda: _uvicorn(signum, frame))

        try:
            signal.signal(sig, on_signal)
        except ValueError:  # not the main thread: leave uvicorn's handler alone
            return


async def startup(rt: Runtime) -> None:
    _install_redaction()
    service = BrowserService(rt)
    rt.services["browser"] = service
    await service.start()
    _close_sockets_first_on_exit_signal(service)
    rt.loops.add(LoopSpec("browser-principal-recheck", RECHECK_SECONDS, service.recheck))


async def shutdown(rt: Runtime) -> None:
    service = rt.services.get("browser")
    if service is not None:
        await service.stop()
