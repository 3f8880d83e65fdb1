"""`GET /ws` (upgrade): the browser socket (40 §8). Parses frames; the service decides."""

from __future__ import annotations

import contextlib

import structlog
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from sindri_console.domains.browser.service import BrowserService, Refusal
from sindri_console.runtime import runtime_of

log = structlog.get_logger("sindri_console.browser")
router = APIRouter(tags=["websocket"])


@router.websocket("/ws")
async def browser_socket(websocket: WebSocket) -> None:
    """Accept first; refusals are close frames (4401, 4403, 4429), as on the agent socket."""
    rt = runtime_of(websocket)
    service: BrowserService = rt.services["browser"]
    await websocket.accept()
    try:
        principal = await service.authenticate(websocket.query_params, websocket.headers)
    except Refusal as refusal:
        with contextlib.suppress(Exception):
            await websocket.close(code=refusal.code, reason=refusal.reason)
        return
    except Exception as exc:  # database or Redis unreachable: say so, never a silent drop
        log.warning("ws_auth_unavailable", error=type(exc).__name__)
        with contextlib.suppress(Exception):
            await websocket.close(code=1011, reason="The server cannot check credentials right now; retry later")
        return
    sock = service.open(websocket, principal)
    max_bytes = rt.settings.WS_MAX_FRAME_BYTES
    try:
        while not sock.closed:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                data = message.get("bytes")
                if data is None:
                    continue
                if len(data) > max_bytes:
                    await sock.close(1009, f"Messages are limited to {max_bytes} bytes")
                    break
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    service.bad_frame(sock, "The message is not valid JSON")
                    continue
            # a character is at most 4 bytes: only long texts need encoding to be measured
            if len(text) * 4 > max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes:
                await sock.close(1009, f"Messages are limited to {max_bytes} bytes")
                break
            await service.receive_text(sock, text)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        await service.close(sock)
