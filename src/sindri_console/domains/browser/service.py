"""The browser socket's decisions: who may connect, what a subscription may see, and the one
distributor per replica that turns bus messages into pushes (40 §8, §12, §13).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from sqlalchemy import select

import sindri_console
from sindri_console.domains.browser import repository
from sindri_console.domains.browser.connection import (
    INBOUND_HARD_PER_SECOND,
    INBOUND_SOFT_PER_SECOND,
    BrowserSocket,
)
from sindri_console.domains.browser.schemas import (
    BUS_PATTERNS,
    CHANNEL_ROLES,
    CHANNELS,
    PROTOCOL_VERSION,
    REPORT_FIELDS,
    TOPIC_KINDS,
    BadMessage,
    Inbound,
    Target,
    dumps,
    now_iso,
    parse_inbound,
    parse_subscribe,
    push_frame,
)
from sindri_console.kit.auth import AuthFailure, Principal, extract_raw_key
from sindri_console.kit.context import current_context
from sindri_console.kit.ids import is_valid_path_id, new_id
from sindri_console.kit.rbac import Role
from sindri_console.models.identity import Team
from sindri_console.runtime import Runtime

log = structlog.get_logger("sindri_console.browser")

TICKET_FAILURE = "Invalid or expired ticket; request a new one with POST /api/v1/ws/ticket"
BUS_QUEUE_MAX = 100_000
SHUTDOWN_CLOSE_SECONDS = 1.0
MISS_TTL_SECONDS = 5.0
MISS_CACHE_MAX = 10_000
RECHECK_SECONDS = 60  # 40 §13 principal-recheck, and the scope cache refresh of §8.3
TERMINALS_UNAVAILABLE = ("Terminal sessions are not available in this version of Sindri Console; "
                         "connect to the instance with SSH instead")
_UNKNOWN = object()  # an instance this replica could not find: only unrestricted callers see its pushes

MessageHandler = Callable[[BrowserSocket, Inbound], Awaitable[None]]


class Refusal(Exception):
    """The upgrade is refused with a close frame after accept (40 §8.1)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class BrowserService:
    """One per replica (`rt.services["browser"]`): the sockets, their subscription index, the scope
    cache, and one bus subscription fanned out to every socket's bounded queue.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.sockets: set[BrowserSocket] = set()
        # (channel, target key) -> sockets subscribed to it
        self.index: dict[tuple[str, str], set[BrowserSocket]] = {}
        # scope cache: instance id -> team id (None = no team), refreshed every 60 s and on scope.changed
        self.instance_team: dict[str, str | None] = {}
        self._missing: dict[str, float] = {}  # unknown instance id -> monotonic time until which it stays unknown
        # extra message types (e.g. terminals) registered by other domains
        self.handlers: dict[str, MessageHandler] = {}
        self._bus_sub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._bus_lost = 0
        self._closing: asyncio.Future[None] | None = None
        self.pushed = 0  # pushes enqueued since start, reported by the re-check tick

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh_scope_cache()
        self._bus_sub = await self.rt.bus.subscribe(*BUS_PATTERNS, maxsize=BUS_QUEUE_MAX)
        self._task = asyncio.create_task(self._distribute(), name="browser-distributor")

    def begin_shutdown(self, then: Callable[[], None]) -> None:
        """Close every socket with 1001 now (the process is about to stop), then call `then`."""
        self._closing = asyncio.ensure_future(self._close_all_then(then))

    async def _close_all_then(self, then: Callable[[], None]) -> None:
        try:
            async with asyncio.timeout(SHUTDOWN_CLOSE_SECONDS):
                await self._close_all()
        except TimeoutError:
            pass
        finally:
            then()

    async def _close_all(self) -> None:
        await asyncio.gather(*(sock.close(1001, "Server shutting down") for sock in list(self.sockets)),
                             return_exceptions=True)

    async def stop(self) -> None:
        await self._close_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._bus_sub is not None:
            await self._bus_sub.close()

    # ---- authentication (40 §8.1) ---------------------------------------------------------------

    async def authenticate(self, query: Any, headers: Any) -> Principal:
        """The socket's principal, loaded fresh; raises Refusal with the close code."""
        ip = current_context().ip_address or "unknown"
        limiter = self.rt.limiter
        if await limiter.exceeded("auth_fail", ip) is not None:
            raise Refusal(4429, "Too many failed authentication attempts; retry later")
        try:
            if "ticket" in query:
                ticket = await self.rt.services["tickets"].consume(query.get("ticket"))
                if ticket is None:
                    raise AuthFailure(TICKET_FAILURE)
                principal = await self.rt.auth.authenticate_key_id(ticket.api_key_id, ip)
                if principal.user_id != ticket.user_id:
                    raise AuthFailure(TICKET_FAILURE)
            else:
                raw = extract_raw_key(headers)
                if not raw:
                    raise AuthFailure(TICKET_FAILURE)
                principal = await self.rt.auth.authenticate(raw, ip)
        except AuthFailure as exc:
            await limiter.hit("auth_fail", ip)
            # an unknown credential gets the ticket hint (§8.1 step 2); a known but revoked, expired or
            # disabled one says which (step 3)
            known = exc.message not in ("Invalid API key", TICKET_FAILURE) and not exc.message.startswith("Missing")
            raise Refusal(4401, exc.message if known else TICKET_FAILURE) from None
        if principal.is_agent:
            raise Refusal(4403, "Agents connect to /ws/agent")
        return principal

    def open(self, ws: Any, principal: Principal) -> BrowserSocket:
        """Register an accepted socket and queue its `welcome` (seq 1)."""
        sock = BrowserSocket(ws, principal, new_id(), max_messages=self.rt.settings.WS_SEND_QUEUE_MAX_MESSAGES)
        sock.reply("welcome", {
            "connectionId": sock.connection_id,
            "userId": principal.user_id,
            "role": principal.effective_role,
            "protocolVersion": PROTOCOL_VERSION,
            "serverVersion": sindri_console.__version__,
            "channels": list(CHANNELS),
            "pingIntervalSeconds": int(self.rt.settings.WS_PING_INTERVAL_SECONDS),
        }, None)
        sock.start_sender()
        self.sockets.add(sock)
        return sock

    async def close(self, sock: BrowserSocket) -> None:
        """Forget a socket whose connection ended."""
        self.sockets.discard(sock)
        for key in list(sock.subs):
            self._unindex(sock, key)
        sock.subs.clear()
        await sock.stop_sender()

    # ---- inbound messages (40 §8.2) -------------------------------------------------------------

    async def receive_text(self, sock: BrowserSocket, text: str) -> None:
        """Handle one client message; only the hard rate rule closes the socket."""
        count = sock.count_inbound()
        if count > INBOUND_HARD_PER_SECOND:
            await sock.close(4429, "Too many messages; slow down")
            return
        msg, msg_id, error = parse_inbound(text)
        if count > INBOUND_SOFT_PER_SECOND:
            error = BadMessage("RATE_LIMITED", f"More than {INBOUND_SOFT_PER_SECOND} messages per second; "
                                               "this message was dropped")
        if error is None and msg is not None:
            try:
                await self._dispatch(sock, msg)
                return
            except BadMessage as exc:
                error = exc
            except Exception as exc:  # a bug: answer INTERNAL, keep the socket
                log.exception("ws_message_failed", type=msg.type, error=type(exc).__name__)
                error = BadMessage("INTERNAL", "The server failed to handle this message")
        if error is not None:
            sock.reply("error", error.data(), msg_id)

    def bad_frame(self, sock: BrowserSocket, message: str) -> None:
        sock.reply("error", BadMessage("BAD_REQUEST", message).data(), None)

    async def _dispatch(self, sock: BrowserSocket, msg: Inbound) -> None:
        if msg.type == "ping":
            sock.reply("pong", {}, msg.id)
        elif msg.type == "subscribe":
            await self.subscribe(sock, msg)
        elif msg.type == "unsubscribe":
            self.unsubscribe(sock, msg)
        elif msg.type in self.handlers:
            await self.handlers[msg.type](sock, msg)
        elif msg.type.startswith("terminal:"):
            await self._terminal_unavailable(sock, msg)
        else:
            raise BadMessage("UNKNOWN_TYPE", f"Unknown message type '{msg.type[:64]}'")

    async def _terminal_unavailable(self, sock: BrowserSocket, msg: Inbound) -> None:
        """Terminals (40 §9) are not served by this version: a known type answered honestly."""
        if msg.type == "terminal:open":
            if sock.principal.rank < Role.DEVELOPER:
                raise BadMessage("FORBIDDEN", "Terminals require the DEVELOPER role or higher")
            instance_id = msg.data.get("instanceId", msg.data.get("instance_id"))
            if not isinstance(instance_id, str) or not instance_id:
                raise BadMessage("VALIDATION", "Invalid message: instanceId is required",
                                 [{"field": "instanceId", "message": "is required"}])
            await self._visible_team(sock.principal, instance_id, "Instance not found")
            raise BadMessage("CAPABILITY_MISSING", TERMINALS_UNAVAILABLE)
        if msg.type in ("terminal:input", "terminal:resize", "terminal:close", "terminal:attach"):
            # no session can exist, so every session id is unknown (§9.3)
            raise BadMessage("NOT_FOUND", "Terminal session not found")
        raise BadMessage("UNKNOWN_TYPE", f"Unknown message type '{msg.type[:64]}'")

    # ---- subscriptions (40 §8.3) ----------------------------------------------------------------

    async def _visible_team(self, principal: Principal, instance_id: str, not_found: str) -> str | None:
        if not is_valid_path_id(instance_id):
            raise BadMessage("NOT_FOUND", not_found)
        async with self.rt.db.read() as s:
            found, team = await repository.visible_instance_team(s, principal, instance_id)
        if not found:
            raise BadMessage("NOT_FOUND", not_found)
        self.instance_team[instance_id] = team
        return team

    async def _team_name(self, team_id: str | None) -> str | None:
        async with self.rt.db.read() as s:
            return await s.scalar(select(Team.name).where(Team.id == team_id))

    async def subscribe(self, sock: BrowserSocket, msg: Inbound) -> None:
        """`subscribe {channel?, instanceId?, commandId?}` → one `subscribed` per channel."""
        req = parse_subscribe(msg.data)
        principal = sock.principal
        for ch in req.channels or ():
            if principal.rank < CHANNEL_ROLES[ch]:
                raise BadMessage("FORBIDDEN", f"The {ch} channel requires the {CHANNEL_ROLES[ch].name} role or higher")
        team: str | None = None
        if req.command_id is not None:
            instance_id = None
            if is_valid_path_id(req.command_id):
                async with self.rt.db.read() as s:
                    instance_id = await repository.command_instance(s, req.command_id)
            if instance_id is None or (req.instance_id is not None and req.instance_id != instance_id):
                raise BadMessage("NOT_FOUND", "Command not found")
            team = await self._visible_team(principal, instance_id, "Command not found")
            target = Target(instance_id=instance_id, command_id=req.command_id)
        elif req.instance_id is not None:
            team = await self._visible_team(principal, req.instance_id, "Instance not found")
            target = Target(instance_id=req.instance_id)
        else:
            target = Target()
        # on one instance the member role of its team caps the caller (10-core §4.1)
        rank = self._rank_for(principal, target, team)
        if req.channels is None:
            channels = [ch for ch in CHANNELS if rank >= CHANNEL_ROLES[ch]]
        else:
            channels = req.channels
            for ch in channels:
                if rank < CHANNEL_ROLES[ch]:
                    name = await self._team_name(team)
                    raise BadMessage("FORBIDDEN", f"The {ch} channel requires the {CHANNEL_ROLES[ch].name} role "
                                                  f"or higher on instances of team '{name}'")
        new = [ch for ch in channels if (ch, target.key) not in sock.subs]
        limit = self.rt.settings.WS_MAX_SUBSCRIPTIONS
        if len(sock.subs) + len(new) > limit:
            raise BadMessage("LIMIT_EXCEEDED", f"At most {limit} subscriptions per socket; unsubscribe first")
        for ch in channels:
            if (ch, target.key) not in sock.subs:
                sock.subs[(ch, target.key)] = target
                self.index.setdefault((ch, target.key), set()).add(sock)
            sock.reply("subscribed", self._sub_data(ch, target), msg.id)

    def unsubscribe(self, sock: BrowserSocket, msg: Inbound) -> None:
        """`unsubscribe` with the keys of `subscribe` → one `unsubscribed` per channel; never an error for
        something that was not subscribed."""
        req = parse_subscribe(msg.data)
        if req.command_id is not None:
            target = Target(command_id=req.command_id)
        else:
            target = Target(instance_id=req.instance_id)
        if req.channels is not None:
            channels = req.channels
        else:
            allowed = [ch for ch in CHANNELS if sock.principal.rank >= CHANNEL_ROLES[ch]]
            held = {ch for ch, key in sock.subs if key == target.key}
            channels = [ch for ch in CHANNELS if ch in held or ch in allowed]
        for ch in channels:
            held_target = sock.subs.pop((ch, target.key), None)
            if held_target is not None:
                self._unindex(sock, (ch, target.key))
            sock.reply("unsubscribed", self._sub_data(ch, held_target or target), msg.id)

    def _unindex(self, sock: BrowserSocket, key: tuple[str, str]) -> None:
        members = self.index.get(key)
        if members is not None:
            members.discard(sock)
            if not members:
                del self.index[key]

    @staticmethod
    def _sub_data(channel: str, target: Target) -> dict[str, Any]:
        instance = target.instance_id if target.instance_id is not None else (
            None if target.command_id is not None else "*")
        return {"channel": channel, "instanceId": instance, "commandId": target.command_id}

    @staticmethod
    def _rank_for(principal: Principal, target: Target, team: str | None) -> int:
        if target.instance_id is None:
            return principal.rank
        role = principal.role_on_team(team)
        return Role[role] if role else 0

    # ---- scope cache and principal re-check (40 §8.1, §8.3, §13) --------------------------------

    async def refresh_scope_cache(self) -> None:
        async with self.rt.db.read() as s:
            self.instance_team = await repository.instance_teams(s)
        self._missing.clear()

    async def recheck(self) -> dict[str, int]:
        """Every 60 s: refresh the scope cache and re-read every socket's principal. Returns the tick's counts."""
        await self.refresh_scope_cache()
        closed = await self._recheck_sockets(list(self.sockets))
        return {"sockets": len(self.sockets), "subscriptions": sum(len(s.subs) for s in self.sockets),
                "closed": closed, "pushed": self.pushed}

    async def _recheck_sockets(self, sockets: list[BrowserSocket]) -> int:
        loaded: dict[str, Principal | AuthFailure] = {}
        closed = 0
        for sock in sockets:
            if sock.closed:
                continue
            key_id = sock.principal.api_key_id
            if key_id is None:
                continue
            if key_id not in loaded:
                try:
                    loaded[key_id] = await self.rt.auth.authenticate_key_id(key_id)
                except AuthFailure as exc:
                    loaded[key_id] = exc
            fresh = loaded[key_id]
            if isinstance(fresh, AuthFailure):
                await sock.close(4401, fresh.message)
                closed += 1
                continue
            sock.principal = fresh
            self._drop_forbidden(sock)
        return closed

    def _drop_forbidden(self, sock: BrowserSocket) -> None:
        """A lowered role loses the subscriptions it no longer allows, each with `unsubscribed forbidden`."""
        for (ch, key), target in list(sock.subs.items()):
            team = self.instance_team.get(target.instance_id) if target.instance_id is not None else None
            if self._rank_for(sock.principal, target, team) >= CHANNEL_ROLES[ch]:
                continue
            del sock.subs[(ch, key)]
            self._unindex(sock, (ch, key))
            sock.reply("unsubscribed", {**self._sub_data(ch, target), "reason": "forbidden"}, None)

    async def _on_scope_changed(self, payload: dict[str, Any]) -> None:
        await self.refresh_scope_cache()
        users = payload.get("userIds")
        user_ids = set(users) if isinstance(users, list) else set()
        affected = [s for s in self.sockets if s.principal.user_id in user_ids]
        if affected:
            await self._recheck_sockets(affected)

    async def _team_of(self, instance_id: str) -> object:
        if instance_id in self.instance_team:
            return self.instance_team[instance_id]
        # messages are published after commit, so a miss is an instance created after the last refresh
        # (pushes for "*" include instances created later); a truly unknown id is remembered briefly so a
        # stream of messages for it costs one query per MISS_TTL_SECONDS, not one per message
        now = time.monotonic()
        if self._missing.get(instance_id, 0.0) > now:
            return _UNKNOWN
        async with self.rt.db.read() as s:
            found = await repository.instance_teams(s, [instance_id])
        if instance_id not in found:
            if len(self._missing) >= MISS_CACHE_MAX:
                self._missing.clear()
            self._missing[instance_id] = now + MISS_TTL_SECONDS
            return _UNKNOWN
        self.instance_team[instance_id] = found[instance_id]
        return found[instance_id]

    # ---- the distributor (40 §12) ---------------------------------------------------------------

    async def _distribute(self) -> None:
        sub = self._bus_sub
        while True:
            topic, payload = await sub.queue.get()
            try:
                await self.handle_bus_message(topic, payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("browser_push_failed", topic=topic, error=type(exc).__name__)
            if sub.dropped != self._bus_lost:
                lost, self._bus_lost = sub.dropped - self._bus_lost, sub.dropped
                log.warning("browser_bus_overflow", lost=lost)
                for sock in self.sockets:
                    sock.note_lost(lost)

    async def handle_bus_message(self, topic: str, payload: dict[str, Any]) -> None:
        """Turn one bus message into pushes on every socket whose subscriptions and scope allow it."""
        if topic == "scope.changed":
            await self._on_scope_changed(payload)
            return
        if not self.sockets:
            return
        if topic == "fleet.alerts":
            # alerts that belong to no instance go to fleet-wide alert subscriptions (40 §8.3)
            targets = self.index.get(("alerts", "*"))
            if targets:
                self._push(targets, "alert", "alerts", payload)
            return
        parts = topic.split(".")
        if parts[0] == "command" and len(parts) == 2:
            await self._command_topic(parts[1], payload)
            return
        if parts[0] != "instance" or len(parts) != 3 or parts[2] not in TOPIC_KINDS:
            return
        instance_id, kind = parts[1], parts[2]
        type_: str | None
        channel, type_ = TOPIC_KINDS[kind]
        if kind == "commands":
            type_ = _command_push_type(payload)
            if type_ is None:
                return
        elif kind == "reports":
            payload = {k: payload[k] for k in REPORT_FIELDS if k in payload}
            payload.setdefault("instanceId", instance_id)
        wildcard = self.index.get((channel, "*"))
        single = self.index.get((channel, "i:" + instance_id))
        if not wildcard and not single:
            return
        team = await self._team_of(instance_id)
        candidates = (wildcard or set()) | (single or set())
        self._push(self._in_scope(candidates, channel, team), type_, channel, payload)

    async def _command_topic(self, command_id: str, payload: dict[str, Any]) -> None:
        """`command.<id>` reaches subscribers of that command that do not already receive it through
        `instance.<id>.commands` (both topics carry every command message, 40 §6.3)."""
        subscribers = self.index.get(("commands", "c:" + command_id))
        type_ = _command_push_type(payload)
        if not subscribers or type_ is None:
            return
        instance_id = payload.get("instanceId")
        if not isinstance(instance_id, str):
            return
        via_instance = (self.index.get(("commands", "*")) or set()) | (
            self.index.get(("commands", "i:" + instance_id)) or set())
        team = await self._team_of(instance_id)
        self._push(self._in_scope(subscribers - via_instance, "commands", team), type_, "commands", payload)

    def _in_scope(self, candidates: set[BrowserSocket], channel: str, team: object) -> list[BrowserSocket]:
        """Per pushed message, against each socket's cached scope (40 §8.3)."""
        needed = CHANNEL_ROLES[channel]
        if team is _UNKNOWN:
            return [s for s in candidates if s.unrestricted]
        team_id = team if isinstance(team, str) else None
        if needed == Role.VIEWER:
            # the same rule as kit/scope.can_see_team, on each socket's snapshot
            if team_id is None:
                return list(candidates)
            return [s for s in candidates if s.unrestricted or team_id in s.teams]
        out = []
        for sock in candidates:
            if not (sock.unrestricted or team_id is None or team_id in sock.teams):
                continue
            role = sock.principal.role_on_team(team_id)
            if role is None or Role[role] < needed:
                continue
            out.append(sock)
        return out

    def _push(self, sockets: Any, type_: str, channel: str, data: dict[str, Any]) -> None:
        if not sockets:
            return
        frame = push_frame(type_, channel, dumps(data), now_iso())
        for sock in sockets:
            sock.enqueue(frame)
            self.pushed += 1


def _command_push_type(payload: dict[str, Any]) -> str | None:
    if "stream" in payload:
        return "command:output"
    if "status" in payload:
        return "command:status"
    return None

