"""Log streams over Server-Sent Events (10-core §12).

One `LogStreamHub` per replica holds ONE bus subscription (`instance.*.logs` + `scope.changed`) and
fans entries out to bounded per-client queues; each entry is JSON-encoded once, whatever the number
of clients. A queue item is the matching part of one bus message (one ingest request), so a
1000-entry batch takes one slot of the `SSE_CLIENT_QUEUE_SIZE` budget, not all of it. A client whose queue overflows is told to `reconnect` (`overflow`) and closed: it
resumes from the database with its `Last-Event-ID`, so a slow client never holds server memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import Request
from fastapi.responses import StreamingResponse

from sindri_console.domains.logs import repository as repo
from sindri_console.domains.logs.entries import row_to_wire
from sindri_console.domains.logs.repository import LogFilter
from sindri_console.kit.auth import AuthFailure, Principal
from sindri_console.kit.clock import to_iso, utcnow
from sindri_console.kit.errors import ApiError
from sindri_console.kit.scope import can_see_team, get_visible_instance

if TYPE_CHECKING:
    from sindri_console.runtime import Runtime

log = structlog.get_logger("sindri_console.logs.stream")

CREDENTIAL_RECHECK_SECONDS = 60.0  # 10-core §12
RETRY_MS = 3000
HUB_QUEUE_SIZE = 100_000
SERVICE = "log_streams"


def _sse(event: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def entry_matches(f: LogFilter, entry: dict[str, Any]) -> bool:
    """§11.3 semantics evaluated on one entry (case folding guaranteed for ASCII)."""
    if f.levels is not None and entry["level"] not in f.levels:
        return False
    if f.sources is not None and entry["source"] not in f.sources:
        return False
    if f.deployment_id is not None and entry["deploymentId"] != f.deployment_id:
        return False
    if f.search is not None and f.search.lower() not in entry["message"].lower():
        return False
    return True


class StreamClient:
    def __init__(self, principal: Principal, f: LogFilter, single_instance: str | None, queue_size: int) -> None:
        self.principal = principal
        self.filter = f
        self.single_instance = single_instance
        self.instance_ids: set[str] | None = set(f.instance_ids) if f.instance_ids else None
        self.queue: asyncio.Queue[list[tuple[int, str]]] = asyncio.Queue(maxsize=queue_size)
        self.wake = asyncio.Event()
        self.closing: str | None = None
        self.recheck_now = False

    @property
    def key(self) -> str:
        return self.principal.rate_key

    def sees(self, instance_id: str, team_id: str | None) -> bool:
        if self.instance_ids is not None:
            return instance_id in self.instance_ids
        return can_see_team(self.principal, team_id)

    @property
    def needs_team(self) -> bool:
        return self.instance_ids is None and not self.principal.unrestricted

    def offer(self, events: list[tuple[int, str]]) -> None:
        """Queue (seq, encoded event) pairs of one bus message; a full queue ends the stream (overflow)."""
        if self.closing is not None:
            return
        try:
            self.queue.put_nowait(events)
        except asyncio.QueueFull:
            self.close("overflow")
            return
        self.wake.set()

    def close(self, reason: str) -> None:
        if self.closing is None:
            self.closing = reason
        self.wake.set()


class LogStreamHub:
    """Per-replica fan-out of `instance.<id>.logs` to SSE clients, with the §12 limits."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.clients: set[StreamClient] = set()
        self.per_key: Counter[str] = Counter()
        self._teams: dict[str, str | None] = {}
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._restore_signals: list[tuple[int, Any]] = []

    async def start(self) -> None:
        self._sub = await self.rt.bus.subscribe("instance.*.logs", "scope.changed", maxsize=HUB_QUEUE_SIZE)
        self._task = asyncio.create_task(self._pump(), name="log-stream-hub")
        self._watch_signals()

    async def stop(self) -> None:
        self.shutdown_clients()
        for sig, handler in self._restore_signals:
            with contextlib.suppress(Exception):
                signal.signal(sig, handler)
        self._restore_signals.clear()
        # give open streams a moment to write their `reconnect` event
        for _ in range(20):
            if not self.clients:
                break
            await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._sub is not None:
            await self._sub.close()

    def shutdown_clients(self) -> None:
        for client in list(self.clients):
            client.close("shutdown")

    def _watch_signals(self) -> None:
        """uvicorn waits for open responses before the lifespan shutdown: tell streams on SIGTERM/SIGINT."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous = signal.getsignal(sig)
            except (ValueError, OSError):
                continue
            if not callable(previous):
                continue

            def handler(signum: int, frame: Any, _prev: Any = previous) -> None:
                loop.call_soon_threadsafe(self.shutdown_clients)
                _prev(signum, frame)

            try:
                signal.signal(sig, handler)
            except ValueError:  # not the main thread (tests, embedded servers)
                return
            self._restore_signals.append((sig, previous))

    def register(self, client: StreamClient) -> None:
        settings = self.rt.settings
        if self.per_key[client.key] >= settings.SSE_MAX_STREAMS_PER_KEY:
            raise ApiError(429, f"At most {settings.SSE_MAX_STREAMS_PER_KEY} open log streams per credential",
                           headers={"Retry-After": "5"}, extra={"retryAfter": 5})
        if len(self.clients) >= settings.SSE_MAX_CLIENTS:
            raise ApiError(503, "This server has no room for another log stream; retry later",
                           headers={"Retry-After": "5"})
        self.clients.add(client)
        self.per_key[client.key] += 1

    def unregister(self, client: StreamClient) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self.per_key[client.key] -= 1
            if self.per_key[client.key] <= 0:
                del self.per_key[client.key]

    async def _pump(self) -> None:
        sub = self._sub
        while True:
            topic, payload = await sub.get()
            try:
                if sub.overflowed:
                    # the replica's own queue lost messages: every client resumes from the database
                    sub.overflowed = False
                    for client in list(self.clients):
                        client.close("overflow")
                if topic == "scope.changed":
                    self._scope_changed(payload)
                else:
                    await self._dispatch(payload)
            except Exception as exc:  # one bad message must not end the fan-out
                log.warning("log_stream_dispatch_failed", error=type(exc).__name__)

    async def _team_of(self, instance_id: str) -> str | None:
        if instance_id not in self._teams:
            if len(self._teams) > 100_000:
                self._teams.clear()
            async with self.rt.db.read() as s:
                found = await repo.visible_instance_teams(s, [instance_id])
            self._teams[instance_id] = found.get(instance_id)
        return self._teams[instance_id]

    async def _dispatch(self, payload: dict[str, Any]) -> None:
        instance_id = payload.get("instanceId")
        entries = payload.get("entries") or []
        if not self.clients or not isinstance(instance_id, str):
            return
        team: str | None = None
        if any(c.needs_team for c in self.clients):
            team = await self._team_of(instance_id)
        targets = [c for c in self.clients if c.closing is None and c.sees(instance_id, team)]
        if not targets:
            return
        encoded: dict[int, str] = {}
        for client in targets:
            events = []
            for i, entry in enumerate(entries):
                if entry_matches(client.filter, entry):
                    data = encoded.get(i)
                    if data is None:
                        data = encoded[i] = _sse("log", entry, entry["seq"])
                    events.append((entry["seq"], data))
            if events:
                client.offer(events)

    def _scope_changed(self, payload: dict[str, Any]) -> None:
        users = set(payload.get("userIds") or [])
        teams = set(payload.get("teamIds") or [])
        instances = set(payload.get("instanceIds") or [])
        for iid in instances:
            self._teams.pop(iid, None)
        if teams:
            self._teams.clear()
        for client in self.clients:
            p = client.principal
            if (p.user_id in users or teams & set(p.memberships)
                    or (client.instance_ids is not None and client.instance_ids & instances)
                    or (instances and client.instance_ids is None)):
                client.recheck_now = True
                client.wake.set()


def hub_of(rt: Runtime) -> LogStreamHub:
    hub = rt.services.get(SERVICE)
    if hub is None:
        raise ApiError(503, "Log streams are not available on this server")
    return hub  # type: ignore[no-any-return]


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise ApiError(422, "Invalid request: lastEventId must be a non-negative integer (an entry's seq)",
                       [{"field": "lastEventId", "message": "must be a non-negative integer"}])
    return value


async def _recheck(rt: Runtime, client: StreamClient) -> bool:
    """Re-validate the credential and recompute scope; False when the stream must end (unauthorized)."""
    key_id = client.principal.api_key_id
    if key_id is None:
        return True
    try:
        fresh = await rt.auth.authenticate_key_id(key_id)
    except AuthFailure:
        return False
    client.principal = fresh
    if client.instance_ids is not None:
        async with rt.db.read() as s:
            still: set[str] = set()
            for iid in client.instance_ids:
                try:
                    await get_visible_instance(s, fresh, iid)
                    still.add(iid)
                except ApiError:
                    continue
        if client.single_instance is not None and client.single_instance not in still:
            return False
        # a fleet stream whose scope shrank simply stops receiving the lost instances
        client.instance_ids = still
    return True


async def open_stream(request: Request, principal: Principal, f: LogFilter, *,
                      single_instance: str | None) -> StreamingResponse:
    """Register a client (429/503 limits), then stream: `connected`, the resume replay, live `log`
    events, keep-alive comments, and a final `reconnect` with the reason the server closes it."""
    rt = request.app.state.runtime
    hub = hub_of(rt)
    last_id = _last_event_id(request)
    client = StreamClient(principal, f, single_instance, rt.settings.SSE_CLIENT_QUEUE_SIZE)
    hub.register(client)  # subscribe first: live entries buffer while the replay runs
    settings = rt.settings

    async def events() -> AsyncIterator[str]:
        try:
            connected = {
                "instanceIds": sorted(client.instance_ids) if client.instance_ids is not None else None,
                "filters": {"level": list(f.levels) if f.levels else None,
                            "source": list(f.sources) if f.sources else None, "search": f.search},
                "serverTime": to_iso(utcnow()),
                "lastEventId": str(last_id) if last_id is not None else None,
            }
            yield f"retry: {RETRY_MS}\n" + _sse("connected", connected)
            last_seq = -1
            if last_id is not None:
                last_seq = last_id
                async with rt.db.read() as s:
                    rows, skipped = await repo.replay(s, rt.db.dialect, client.principal, f, last_id,
                                                      settings.SSE_REPLAY_LIMIT)
                chunk = [_sse("gap", {"skipped": skipped})] if skipped else []
                for row in rows:
                    chunk.append(_sse("log", row_to_wire(row), row.seq))
                    last_seq = row.seq
                if chunk:
                    yield "".join(chunk)
            started = time.monotonic()
            deadline = started + settings.SSE_MAX_LIFETIME_SECONDS
            next_check = started + CREDENTIAL_RECHECK_SECONDS
            keepalive = settings.SSE_KEEPALIVE_SECONDS
            while True:
                if not client.queue.empty():
                    parts = []
                    while not client.queue.empty():
                        for seq, data in client.queue.get_nowait():
                            if seq > last_seq:  # drop what the replay already delivered
                                parts.append(data)
                                last_seq = seq
                    if parts:
                        yield "".join(parts)
                    continue
                if client.closing is not None:
                    yield _sse("reconnect", {"reason": client.closing})
                    return
                now = time.monotonic()
                if client.recheck_now or now >= next_check:
                    client.recheck_now = False
                    next_check = now + CREDENTIAL_RECHECK_SECONDS
                    if not await _recheck(rt, client):
                        client.close("unauthorized")
                    continue
                if now >= deadline:
                    client.close("lifetime")
                    continue
                client.wake.clear()
                if not client.queue.empty() or client.closing is not None or client.recheck_now:
                    continue
                wait = min(keepalive, deadline - now, next_check - now)
                try:
                    await asyncio.wait_for(client.wake.wait(), max(wait, 0.01))
                except TimeoutError:
                    if client.queue.empty() and client.closing is None and time.monotonic() - now >= keepalive - 0.01:
                        yield ": keep-alive\n\n"
        finally:
            hub.unregister(client)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return _ClientResponse(events(), on_close=lambda: hub.unregister(client), media_type="text/event-stream",
                           headers=headers)


class _ClientResponse(StreamingResponse):
    """Releases the client's slot even when the body generator never started (early disconnect)."""

    def __init__(self, content: AsyncIterator[str], *, on_close: Any, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
