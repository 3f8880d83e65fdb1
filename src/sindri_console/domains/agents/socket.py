"""One agent socket: handshake, identification, dialects, limits and frame dispatch (40 §3, §4)."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from sindri_console.domains.agents import service
from sindri_console.domains.agents.frames import (
    IDENTIFYING_TYPES,
    PROTOCOL_VERSION,
    Frame,
    FrameError,
    FrameErrorWithFrame,
    agent_timestamp,
    c_frame,
    d_frame,
    parse_frame,
    pick,
)
from sindri_console.domains.agents.ingest import (
    Counters,
    parse_config,
    parse_event,
    parse_extensions,
    parse_heartbeat,
    parse_llm_batch,
    parse_metrics,
)
from sindri_console.domains.agents.writer import Job
from sindri_console.kit.auth import AuthFailure, Principal, extract_raw_key
from sindri_console.kit.clock import to_iso, utcnow
from sindri_console.kit.context import current_context
from sindri_console.kit.ids import new_id

if TYPE_CHECKING:
    from sindri_console.domains.agents.hub import AgentHub
    from sindri_console.runtime import Runtime

log = structlog.get_logger("sindri_console.agents.socket")

SUBPROTOCOL = "sindri-agent.v1"
KNOWN_CAPABILITIES = ("heartbeat", "metrics", "terminal", "commands", "scripts", "logs", "processes", "extensions",
                      "packages", "config", "llm_usage")
LEGACY_CAPABILITIES = ["heartbeat", "metrics", "terminal", "llm_usage"]
HELD_FRAMES_MAX = 32
HELD_BYTES_MAX = 1_048_576
FRAMES_PER_MINUTE = 6000
FRAMES_PER_MINUTE_CLOSE = 12_000
RATE_ERROR_EVERY = 10.0
OUT_D_MAX = 60_000
COMMAND_TYPES = ("command:ack", "command:progress", "command:result")
REPORT_TYPES = ("processes:report", "extensions:report", "config:report")


class CloseSocket(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _commands_pipeline() -> Any:
    """The commands engineer's pipeline, when it is part of this build."""
    try:
        from sindri_console.domains.commands import pipeline
    except ImportError:
        return None
    return pipeline


class AgentSocket:
    """An agent connection held by this replica (implements `contracts.AgentConn` once identified)."""

    def __init__(self, rt: Runtime, hub: AgentHub, ws: WebSocket, remote: str | None) -> None:
        self.rt = rt
        self.hub = hub
        self.ws = ws
        self.remote = remote
        self.user_agent = ws.headers.get("user-agent")
        self.context = current_context()
        self.connection_id = new_id()
        self.instance_id: str | None = None
        self.instance_name: str | None = None
        self.identities: set[str] = set()
        self.principal = Principal(credential="bootstrap")
        self.connected_at = utcnow()
        # classification (first frame)
        self.dialect: str | None = None
        self.capabilities: list[str] = []
        self.stored_capabilities: list[str] = []
        self.protocol_version: str | None = None
        self.agent_version: str | None = None
        self.agent_name: str | None = None
        self.hello: dict[str, Any] | None = None
        self.hello_heartbeat_seconds: float | None = None
        self.classified = asyncio.Event()
        # counters
        self.frames_in = self.frames_out = self.bytes_in = self.bytes_out = 0
        self.identity_mismatches = 0
        self._dropped = 0
        self.pending_jobs = 0
        self.idle = asyncio.Event()  # set when no writer job of this socket is pending
        self.idle.set()
        # pending identification
        self.held: deque[Frame] = deque()
        self.held_bytes = 0
        # rates and heartbeat gaps
        self.prev_counters: Counters | None = None
        self.hb_times: deque[float] = deque(maxlen=6)
        self.rate_window = 0.0
        self.rate_count = 0
        self.last_rate_error = 0.0
        self.send_lock = asyncio.Lock()
        self.server_close: tuple[int, str] | None = None
        self.task: asyncio.Task[Any] | None = asyncio.current_task()

    # ---- AgentConn ------------------------------------------------------------------------------

    @property
    def is_console(self) -> bool:
        return self.dialect == "console"

    async def send_frame(self, type_: str, data: dict[str, Any], *, frame_id: str | None = None,
                         reply_to: str | None = None, session_id: str | None = None) -> None:
        """Write one frame in this connection's dialect (frames wait up to the hello grace before the first frame)."""
        if not self.classified.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.classified.wait(), self.rt.settings.AGENT_HELLO_GRACE_SECONDS)
        if self.is_console:
            text = c_frame(type_, data, to_iso(utcnow()) or "", frame_id=frame_id, reply_to=reply_to)
        else:
            text = d_frame(type_, data, session_id=session_id)
            if len(text.encode()) > OUT_D_MAX:
                raise ValueError("frames to a draupnir agent are limited to 60 000 bytes")
        await self._send_text(text)

    async def _send_text(self, text: str) -> None:
        async with self.send_lock:
            if self.ws.application_state != WebSocketState.CONNECTED or self.server_close is not None:
                raise ConnectionError("agent socket closed")
            try:
                await self.ws.send_text(text)
            except Exception as exc:
                raise ConnectionError("agent socket closed") from exc
        self.frames_out += 1
        self.bytes_out += len(text)

    async def close_with(self, code: int, reason: str) -> None:
        """Close from the server side; the receive loop then records the close."""
        if self.server_close is not None:
            return
        self.server_close = (code, reason)
        async with self.send_lock:
            with contextlib.suppress(Exception):
                await self.ws.close(code, reason[:123])
        task = self.task
        if task is not None and task is not asyncio.current_task():
            # a peer that never answers the close frame must not keep the handler alive
            asyncio.get_running_loop().call_later(5.0, lambda: task.done() or task.cancel())

    # ---- counters ---------------------------------------------------------------------------------

    def count_dropped(self, n: int = 1) -> None:
        self._dropped += n

    def take_dropped(self) -> int:
        n, self._dropped = self._dropped, 0
        return n

    def counter_values(self) -> dict[str, int]:
        return {"frames_in": self.frames_in, "frames_out": self.frames_out, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "identity_mismatches": self.identity_mismatches}

    def heartbeat_interval(self) -> float | None:
        if self.hello_heartbeat_seconds:
            return self.hello_heartbeat_seconds
        if len(self.hb_times) < 2:
            return None
        times = list(self.hb_times)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        return min(3600.0, max(1.0, round(statistics.median(gaps), 3)))

    # ---- C replies --------------------------------------------------------------------------------

    async def reply_error(self, code: str, message: str, ref_id: str | None = None, **extra: Any) -> None:
        if not self.is_console:
            return
        data: dict[str, Any] = {"code": code, "message": message}
        if ref_id is not None:
            data["refId"] = ref_id
        data.update({k: v for k, v in extra.items() if v is not None})
        with contextlib.suppress(ConnectionError):
            await self.send_frame("error", data)

    async def ack(self, frame_id: str | None, duplicate: bool = False) -> None:
        if frame_id is None or not self.is_console:
            return
        data: dict[str, Any] = {"id": frame_id}
        if duplicate:
            data["duplicate"] = True
        with contextlib.suppress(ConnectionError):
            await self.send_frame("ack", data, reply_to=frame_id)

    # ---- handshake (§3.1) -------------------------------------------------------------------------

    async def authenticate(self) -> str | None:
        """Check the credential; returns the instance id to identify now, or None for a pending connection."""
        rt = self.rt
        fail_key = self.remote or "unknown"
        if await rt.limiter.exceeded("auth_fail", fail_key) is not None:
            raise CloseSocket(4429, "Too many failed authentication attempts")
        raw = extract_raw_key(self.ws.headers)
        if not raw:
            await rt.limiter.hit("auth_fail", fail_key)
            raise CloseSocket(4401, "Invalid or missing agent credential")
        try:
            principal = await rt.auth.authenticate(raw, self.remote)
        except AuthFailure:
            await rt.limiter.hit("auth_fail", fail_key)
            raise CloseSocket(4401, "Invalid or missing agent credential") from None
        if principal.credential == "user_key":
            raise CloseSocket(4403, "The agent socket needs an agent key")
        self.principal = principal
        header = self.ws.headers.get("x-instance-id")
        if header is not None and header.strip():
            value = header.strip()[:128]
            inst = await self._resolve(value)
            if inst is None:
                raise CloseSocket(4404, f"Unknown instance '{value[:40]}'; register it with POST /api/v1/instances")
            if principal.instance_id is not None and inst != principal.instance_id:
                raise CloseSocket(4403, "This agent key belongs to another instance")
            self.identities.add(value)
            return inst
        if principal.instance_id is not None:
            return principal.instance_id
        return None

    async def _resolve(self, value: str) -> str | None:
        return await self.hub.resolve(value)

    async def identify(self, instance_id: str) -> None:
        # identifications are batched with the ingest writer: a reconnect storm is a few transactions
        ident = await self.hub.writer.submit(Job(self, "identify", utcnow(), extra={"instance_id": instance_id}),
                                             wait=True)
        if ident is None:
            raise CloseSocket(4404, "Unknown instance; register it with POST /api/v1/instances")
        self.instance_id = ident.instance_id
        self.instance_name = ident.name
        self.identities.update({ident.instance_id, ident.name})
        if ident.agent_instance_id:
            self.identities.add(ident.agent_instance_id)
        await self.hub.attach(self)
        await self.rt.bus.publish(f"agent.{instance_id}.control",
                                  {"op": "replace", "keepConnectionId": self.connection_id})

    # ---- classification (§3.4) ----------------------------------------------------------------

    def classify_from(self, frame: Frame) -> None:
        if frame.type == "hello" and frame.dialect == "C":
            data = frame.data
            version = pick(data, "protocolVersion") or frame.protocol_version
            if not isinstance(version, str) or version.split(".", 1)[0] != "1":
                raise CloseSocket(4426, "Unsupported protocol version")
            caps = pick(data, "capabilities")
            caps = [c for c in caps if isinstance(c, str)][:32] if isinstance(caps, list) else []
            self.dialect = "console"
            self.capabilities = [c for c in dict.fromkeys(caps) if c in KNOWN_CAPABILITIES]
            self.stored_capabilities = list(dict.fromkeys(caps))
            self.protocol_version = PROTOCOL_VERSION
            name = pick(data, "agentName")
            self.agent_name = name[:64] if isinstance(name, str) else None
            ver = pick(data, "agentVersion")
            self.agent_version = ver[:64] if isinstance(ver, str) else None
            self.hello = data
            intervals = pick(data, "intervals")
            hb = pick(intervals, "heartbeatSeconds") if isinstance(intervals, dict) else None
            if isinstance(hb, int | float) and not isinstance(hb, bool) and 0 < hb:
                self.hello_heartbeat_seconds = float(min(3600, max(1, hb)))
        else:
            self.dialect = "draupnir" if frame.dialect == "D" else "mimir"
            self.capabilities = list(LEGACY_CAPABILITIES)
            self.stored_capabilities = list(LEGACY_CAPABILITIES)
            self.protocol_version = None
            self.agent_name = None
            pv = frame.protocol_version
            if frame.dialect == "C" and isinstance(pv, str) and pv:
                self.protocol_version = pv[:16]
        self.classified.set()

    # ---- main loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        code, reason, by_server = 1006, "", False
        try:
            try:
                instance_id = await self.authenticate()
                if instance_id is not None:
                    await self.identify(instance_id)
                code, reason = await self._receive_loop()
            except CloseSocket as exc:
                await self._error_before_close(exc)
                await self.close_with(exc.code, exc.reason)
        except asyncio.CancelledError:
            if self.server_close is None:
                raise
        except Exception:
            log.exception("agent_socket_failed", connection_id=self.connection_id, instance_id=self.instance_id)
            await self.close_with(1011, "Internal error")
        finally:
            if self.server_close is not None:
                code, reason, by_server = self.server_close[0], self.server_close[1], True
            if self.instance_id is not None:
                self.hub.detach(self)
                await self._wait_pending()
                try:
                    closing = service.Closing(self, code, reason, by_server)
                    await asyncio.shield(self.hub.writer.submit(Job(self, "close", utcnow(),
                                                                    extra={"closing": closing}), wait=True))
                except Exception as exc:
                    log.warning("agent_close_failed", connection_id=self.connection_id, error=type(exc).__name__)

    async def _error_before_close(self, exc: CloseSocket) -> None:
        if exc.code == 4426:
            await self._send_error_raw("UNSUPPORTED_PROTOCOL_VERSION", "Protocol version 1.x is required",
                                       supported=["1.0"])
        elif exc.code == 4000:
            await self._send_error_raw("PROTOCOL", exc.reason)

    async def _send_error_raw(self, code: str, message: str, **extra: Any) -> None:
        with contextlib.suppress(Exception):
            await self._send_text(c_frame("error", {"code": code, "message": message, **extra},
                                          to_iso(utcnow()) or ""))

    async def _wait_pending(self) -> None:
        """Frames already queued are committed before the close is recorded."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self.idle.wait()

    async def _receive_loop(self) -> tuple[int, str]:
        settings = self.rt.settings
        identify_deadline = time.monotonic() + settings.AGENT_IDENTIFY_TIMEOUT_SECONDS
        while True:
            if self.instance_id is None:
                remaining = identify_deadline - time.monotonic()
                if remaining <= 0:
                    raise CloseSocket(4408, "No identifying frame received")
                try:
                    message = await asyncio.wait_for(self.ws.receive(), remaining)
                except TimeoutError:
                    raise CloseSocket(4408, "No identifying frame received") from None
            else:
                message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return int(message.get("code") or 1005), str(message.get("reason") or "")
            text = message.get("text")
            if text is None:
                if message.get("bytes") is not None:
                    raise CloseSocket(1003, "Binary frames are not supported")
                continue
            size = len(text) if len(text) * 4 <= settings.AGENT_MAX_FRAME_BYTES else len(text.encode())
            if size > settings.AGENT_MAX_FRAME_BYTES:
                raise CloseSocket(1009, "Frame too large")
            self.frames_in += 1
            self.bytes_in += size
            try:
                await self.on_text(text)
            except ConnectionError:
                # the peer is going away while we answered (e.g. its close crossed our welcome): the next
                # receive returns its close frame with the real code
                continue

    def _rate_ok(self, frame_type: str | None) -> bool:
        """6000 non-terminal frames a minute per connection; beyond 12 000 the socket is closed."""
        if frame_type is not None and frame_type.startswith("terminal:"):
            return True
        now = time.monotonic()
        if now - self.rate_window >= 60:
            self.rate_window = now
            self.rate_count = 0
        self.rate_count += 1
        if self.rate_count > FRAMES_PER_MINUTE_CLOSE:
            raise CloseSocket(4429, "Too many frames")
        return self.rate_count <= FRAMES_PER_MINUTE

    async def on_text(self, text: str) -> None:
        try:
            frame = parse_frame(text)
        except FrameErrorWithFrame as exc:
            if not self._rate_ok(exc.frame.type):
                return await self._rate_limited()
            self.count_dropped()
            if self.instance_id is not None and not self.classified.is_set():
                await self._classify(exc.frame)
            await self.reply_error(exc.code, exc.message, exc.frame.id, details=exc.details)
            return
        except FrameError as exc:
            if not self._rate_ok(None):
                return await self._rate_limited()
            self.count_dropped()
            log.info("agent_frame_malformed", connection_id=self.connection_id, instance_id=self.instance_id)
            await self.reply_error(exc.code, exc.message)
            return
        if not self._rate_ok(frame.type):
            return await self._rate_limited()
        if self.instance_id is None:
            await self._pending_frame(frame)
            return
        if not self.classified.is_set():
            await self._classify(frame)
            if frame.type == "hello":
                await self._after_hello()
                return
        await self.dispatch(frame)

    async def _rate_limited(self) -> None:
        self.count_dropped()
        now = time.monotonic()
        if now - self.last_rate_error >= RATE_ERROR_EVERY:
            self.last_rate_error = now
            await self.reply_error("RATE_LIMITED", "More than 6000 frames in one minute; frames are dropped")

    async def _classify(self, frame: Frame) -> None:
        self.classify_from(frame)
        await service.classify(self.rt, self)

    async def _pending_frame(self, frame: Frame) -> None:
        """§3.2: identify from the first frame that carries an identity, hold the others."""
        identity: Any = None
        if frame.type == "hello" and frame.dialect == "C":
            identity = pick(frame.data, "instanceId")
        elif frame.type in IDENTIFYING_TYPES:
            identity = pick(frame.data, "instanceId")
        if not isinstance(identity, str) or not identity.strip():
            self.held.append(frame)
            self.held_bytes += frame.size
            while len(self.held) > HELD_FRAMES_MAX or self.held_bytes > HELD_BYTES_MAX:
                old = self.held.popleft()
                self.held_bytes -= old.size
                self.count_dropped()
            return
        value = identity.strip()[:128]
        instance_id = await self._resolve(value)
        if instance_id is None:
            raise CloseSocket(4404, f"Unknown instance '{value[:40]}'; register it with POST /api/v1/instances")
        self.identities.add(value)
        first = self.held[0] if self.held else frame
        self.classify_from(first)
        await self.identify(instance_id)
        held = list(self.held)
        self.held.clear()
        self.held_bytes = 0
        hello_first = frame.type == "hello" and first is frame
        if hello_first:
            await self._after_hello()
        for f in held:
            await self.dispatch(f)
        if not hello_first:
            await self.dispatch(frame)  # a hello after held frames ends in a protocol error here

    async def _after_hello(self) -> None:
        s = self.rt.settings
        await self.send_frame("welcome", {
            "instanceId": self.instance_id, "instanceName": self.instance_name, "connectionId": self.connection_id,
            "serverVersion": _server_version(), "protocolVersion": PROTOCOL_VERSION,
            "acceptedCapabilities": list(self.capabilities),
            "heartbeatLossAfterSeconds": max(s.AGENT_HEARTBEAT_LOSS_SECONDS, 3 * (self.hello_heartbeat_seconds or 0)),
            "maxFrameBytes": s.AGENT_MAX_FRAME_BYTES, "serverTime": to_iso(utcnow()),
        })
        pipeline = _commands_pipeline()
        if pipeline is not None and hasattr(pipeline, "on_hello"):
            in_flight = pick(self.hello or {}, "inFlightCommands")
            ids = [c for c in in_flight if isinstance(c, str)][:1000] if isinstance(in_flight, list) else []
            try:
                await pipeline.on_hello(self.rt, self, ids)
            except Exception:
                log.exception("command_redelivery_failed", connection_id=self.connection_id)

    # ---- dispatch (§4) --------------------------------------------------------------------------

    async def dispatch(self, frame: Frame) -> None:
        t = frame.type
        received = utcnow()
        if t == "hello":
            raise CloseSocket(4000, "Protocol error: hello was already received" if self.is_console
                              else "Protocol error: hello after other frames")
        ident = pick(frame.data, "instanceId")
        if isinstance(ident, str) and ident not in self.identities:
            self.identity_mismatches += 1
        try:
            if t == "heartbeat":
                await self._heartbeat(frame, received)
            elif t == "metrics":
                await self._metrics(frame, received)
            elif t.startswith("terminal:"):
                self.count_dropped()  # terminal sessions are not bridged by this build
            elif t in COMMAND_TYPES:
                await self._command(frame)
            elif t == "llm_usage:batch":
                await self._llm(frame, received)
            elif t in ("log:line", "log:batch"):
                await self._logs(frame)
            elif t == "event":
                ev = parse_event(frame.data, received, frame.ts, frame.mimir)
                await self._direct(frame, lambda s: service.store_event(s, self.instance_id or "", ev))
            elif t in REPORT_TYPES:
                await self._report(frame, received)
            elif t == "registration":
                await self._direct(frame, lambda s: service.apply_registration(s, self.instance_id or "", frame.data))
            elif t == "ping" and self.is_console:
                await self.send_frame("pong", {}, reply_to=frame.id)
            elif t == "error" and self.is_console:
                log.info("agent_reported_error", connection_id=self.connection_id, code=pick(frame.data, "code"),
                         message=str(pick(frame.data, "message"))[:200], ref_id=pick(frame.data, "refId"))
                self.count_dropped()
            else:
                self.count_dropped()
                await self.reply_error("UNKNOWN_TYPE", f"Unknown frame type '{frame.raw_type[:64]}'", frame.id)
        except FrameError as exc:
            self.count_dropped()
            await self.reply_error(exc.code, exc.message, frame.id, details=exc.details)

    async def _submit(self, job: Job, frame: Frame) -> None:
        writer = self.hub.writer
        if frame.id is not None and self.is_console:
            result = await writer.submit(job, wait=True)
            await self.ack(frame.id, duplicate=result == "duplicate")
        else:
            await writer.submit(job, wait=False)

    async def _partial(self, frame: Frame, errors: list[dict[str, str]]) -> None:
        if errors:
            await self.reply_error("INVALID_PAYLOAD", "Some fields were invalid and stored as null", frame.id,
                                   details=errors[:50], partial=True)

    async def _heartbeat(self, frame: Frame, received: datetime) -> None:
        hb = parse_heartbeat(frame.data, received, frame.ts)
        self.hb_times.append(time.monotonic())
        iid = self.instance_id
        assert iid is not None
        await self._partial(frame, hb.errors)
        await self._submit(Job(self, "heartbeat", received, heartbeat=hb,
                               frame_id=frame.id if self.is_console else None), frame)
        if hb.processes is not None:
            items, total, taken, _, _ = service.processes_from_frame({"processes": hb.processes}, received)
            await self._direct_unacked(lambda s: service.store_processes(
                s, self.rt, iid, items, total, hb.timestamp, received, None, "heartbeat"))

    async def _metrics(self, frame: Frame, received: datetime) -> None:
        iid = self.instance_id
        assert iid is not None
        res = parse_metrics(iid, frame.data, received, frame.ts, self.prev_counters)
        self.prev_counters = res.counters
        await self._partial(frame, res.errors)
        await self._submit(Job(self, "metrics", received, sample=res.sample,
                               frame_id=frame.id if self.is_console else None), frame)

    async def _contact(self) -> None:
        await self.hub.writer.submit(Job(self, "contact", utcnow()), wait=False)

    async def _direct(self, frame: Frame, work: Any) -> Any:
        """A low-volume frame: its own transaction (with its receipt), then contact and the ack."""
        duplicate, result = await service.run_frame(self.rt, self, frame.id if self.is_console else None, work)
        await self._contact()
        await self.ack(frame.id, duplicate=duplicate)
        return result

    async def _direct_unacked(self, work: Any) -> None:
        await service.run_frame(self.rt, self, None, work)

    async def _llm(self, frame: Frame, received: datetime) -> None:
        records, skipped, errors = parse_llm_batch(frame.data, received)
        if skipped:
            self.count_dropped(skipped)
        iid = self.instance_id or ""
        await self._direct(frame, lambda s: service.store_llm_usage(s, self.rt, iid, records, received))
        if errors:
            await self.reply_error("INVALID_PAYLOAD", f"{skipped} record(s) were invalid and skipped", frame.id,
                                   details=errors[:50], partial=True)

    async def _report(self, frame: Frame, received: datetime) -> None:
        iid = self.instance_id or ""
        data = frame.data
        request_id = pick(data, "requestId")
        request_id = request_id[:64] if isinstance(request_id, str) else None
        taken, _ = agent_timestamp(pick(data, "timestamp"), received)
        if frame.type == "processes:report":
            items, total, taken, request_id, errors = service.processes_from_frame(data, received)
            await self._direct(frame, lambda s: service.store_processes(
                s, self.rt, iid, items, total, taken, received, request_id, "report"))
        elif frame.type == "extensions:report":
            items_e, errors = parse_extensions(data)
            available = pick(data, "available")
            available = available if isinstance(available, bool) else True
            reason = pick(data, "reason")
            cli = pick(data, "cliVersion")
            await self._direct(frame, lambda s: service.store_extensions(
                s, self.rt, iid, available, reason[:256] if isinstance(reason, str) else None,
                cli[:64] if isinstance(cli, str) else None, items_e, taken, received, request_id))
        else:
            report, errors = parse_config(data)
            await self._direct(frame, lambda s: service.store_config(s, self.rt, iid, report, taken, received,
                                                                     request_id))
        if request_id:
            self.hub.report_arrived(iid, request_id, frame.type.split(":", 1)[0])
        await self._partial(frame, errors)

    async def _logs(self, frame: Frame) -> None:
        from sindri_console.domains.logs.service import ingest_agent_lines

        data = frame.data
        if frame.type == "log:line":
            lines: list[Any] = [data]
            batch_path = None
        else:
            lines = data.get("lines")  # type: ignore[assignment]
            if not isinstance(lines, list) or not 1 <= len(lines) <= 1000:
                raise FrameError("INVALID_PAYLOAD", "log:batch needs 1-1000 lines",
                                 [{"field": "lines", "message": "must be a list of 1-1000 objects"}])
            path = data.get("path")
            batch_path = path if isinstance(path, str) else None
        iid = self.instance_id or ""
        frame_id = frame.id if self.is_console else None
        if frame_id is not None:
            async with self.rt.db.read() as session:
                seen = await _has_receipt(session, iid, frame_id)
            if seen:
                await self.ack(frame_id, duplicate=True)
                return
        await ingest_agent_lines(self.rt, iid, lines, batch_path=batch_path)
        if frame_id is not None:
            await service.run_frame(self.rt, self, frame_id, _nothing)
        await self._contact()
        await self.ack(frame_id)

    async def _command(self, frame: Frame) -> None:
        pipeline = _commands_pipeline()
        if pipeline is None or not hasattr(pipeline, "on_agent_frame"):
            self.count_dropped()
            await self.reply_error("UNKNOWN_COMMAND", "This server has no command pipeline", frame.id)
            return
        reply = await pipeline.on_agent_frame(self.rt, self, frame.type, frame.data, frame.id)
        await self._contact()
        if reply and self.is_console:
            with contextlib.suppress(ConnectionError):
                await self.send_frame(reply["type"], reply.get("data") or {}, reply_to=frame.id)


async def _has_receipt(session: Any, instance_id: str, frame_id: str) -> bool:
    from sindri_console.domains.agents import repository as repo

    return bool(await repo.existing_receipts(session, [(instance_id, frame_id)]))


async def _nothing(session: Any) -> None:
    return None


def _server_version() -> str:
    import sindri_console

    return str(sindri_console.__version__)


__all__ = ["AgentSocket", "CloseSocket", "SUBPROTOCOL", "WebSocketDisconnect"]
