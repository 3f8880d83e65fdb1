"""One open browser socket: its principal, subscriptions, bounded send queue and sequence numbers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

import structlog

from sindri_console.domains.browser.schemas import Frame, Target, build_frame
from sindri_console.kit.auth import Principal

log = structlog.get_logger("sindri_console.browser")

SEND_QUEUE_MAX_BYTES = 8 * 1024 * 1024  # 40 §8.5
INBOUND_SOFT_PER_SECOND = 200  # over it: error RATE_LIMITED, message dropped
INBOUND_HARD_PER_SECOND = 1000  # over it: close 4429


class BrowserSocket:
    """State of one `/ws` connection on this replica.

    Every server message goes through one queue written by one sender task, so `seq` grows by
    exactly 1 per message in the order the client receives them. Pushes are droppable: when the
    queue is over `max_messages` or 8 MiB the oldest pushes go and a `lagged {dropped}` follows.
    """

    def __init__(self, ws: Any, principal: Principal, connection_id: str, *, max_messages: int) -> None:
        self.ws = ws
        self.principal = principal  # setter below also refreshes the scope snapshot
        self.connection_id = connection_id
        self.max_messages = max_messages
        # (channel, target key) -> target
        self.subs: dict[tuple[str, str], Target] = {}
        self.closed = False
        self.close_code: int | None = None
        self._out: deque[Frame] = deque()
        self._bytes = 0
        self._dropped = 0
        self._seq = 0
        self._waiter: asyncio.Future[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._window = -1.0
        self._window_count = 0

    # ---- outbound ---------------------------------------------------------------------------

    def enqueue(self, frame: Frame) -> None:
        if self.closed:
            return
        self._out.append(frame)
        self._bytes += frame.size
        while len(self._out) > self.max_messages or self._bytes > SEND_QUEUE_MAX_BYTES:
            if not self._drop_oldest_push():
                break
        self._wake()

    def reply(self, type_: str, data: dict[str, Any], reply_to: str | None) -> None:
        self.enqueue(build_frame(type_, data, reply_to=reply_to))

    def _drop_oldest_push(self) -> bool:
        for i, frame in enumerate(self._out):
            if frame.droppable:
                del self._out[i]
                self._bytes -= frame.size
                self._dropped += 1
                return True
        return False

    def note_lost(self, count: int) -> None:
        """Pushes lost before they reached this socket's queue (bus overflow): reported as `lagged`."""
        if count > 0 and not self.closed:
            self._dropped += count
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def principal(self) -> Principal:
        return self._principal

    @principal.setter
    def principal(self, value: Principal) -> None:
        # scope snapshot read per pushed message (40 §8.3): unrestricted, or the team ids it may see
        self._principal = value
        self.unrestricted = value.unrestricted
        self.teams = frozenset(value.memberships)

    @property
    def queued(self) -> int:
        return len(self._out)

    def start_sender(self) -> None:
        self._sender = asyncio.create_task(self._send_loop(), name=f"ws-send-{self.connection_id}")

    async def _send_loop(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while not self.closed:
                if not self._out and not self._dropped:
                    self._waiter = loop.create_future()
                    await self._waiter
                    self._waiter = None
                while not self.closed and (self._out or self._dropped):
                    if self._dropped:
                        dropped, self._dropped = self._dropped, 0
                        frame = build_frame("lagged", {"dropped": dropped})
                    else:
                        frame = self._out.popleft()
                        self._bytes -= frame.size
                    self._seq += 1
                    await self.ws.send_text(frame.text(self._seq))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away; the receive side sees the disconnect
            log.debug("ws_send_failed", connection=self.connection_id, error=type(exc).__name__)
            self.closed = True

    async def close(self, code: int, reason: str) -> None:
        """Close the socket with `code` (idempotent); queued messages are abandoned."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        sender = self._sender
        if sender is not None and sender is not asyncio.current_task():
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason)

    async def stop_sender(self) -> None:
        self.closed = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sender

    # ---- inbound ----------------------------------------------------------------------------

    def count_inbound(self) -> int:
        """Messages received in the current one-second window, this one included."""
        now = time.monotonic()
        if now - self._window >= 1.0:  # a one-second window opened by the first message after the last one
            self._window = now
            self._window_count = 0
        self._window_count += 1
        return self._window_count
