"""Registration, the agent socket and the agent's lifecycle (40-agent-protocol §2, §3, §10.2, §10.7)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import ssl
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from sindri_console import __version__
from sindri_console.agent import collectors, reports
from sindri_console.agent.commands import CommandRunner
from sindri_console.agent.config import EXIT_CONFIG, AgentConfig
from sindri_console.agent.inventory import Inventory
from sindri_console.agent.log import get_logger
from sindri_console.agent.logtail import LogShipper, LogTailer
from sindri_console.agent.protocol import (
    AGENT_NAME,
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    FrameIds,
    encode,
    make_frame,
    parse,
)
from sindri_console.agent.terminals import TerminalManager
from sindri_console.agent.util import (
    host_arch,
    host_os,
    hostname,
    iso_from_epoch,
    now_iso,
    platform_label,
    read_os_release,
)

T = TypeVar("T")

WELCOME_TIMEOUT_SECONDS = 10.0
WS_PING_INTERVAL_SECONDS = 30.0
WS_PING_TIMEOUT_SECONDS = 30.0
METRICS_BUFFER_SAMPLES = 120
MAX_INBOUND_FRAME_BYTES = 16 * 1024 * 1024  # dispatch stdin alone may be 1 MiB before JSON escaping
DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024
SHUTDOWN_ACK_WAIT_SECONDS = 2.0
MAX_IN_FLIGHT_IDS = 1000
CONFIG_FIRST_RUN_SECONDS = 30.0
PACKAGES_FIRST_RUN_SECONDS = 60.0

CLOSE_FATAL_AT_CONNECT = {4401, 4403, 4426}
CLOSE_REREGISTER = {4404, 4410}
CLOSE_REPLACED = 4409
# Codes in an `error` that mean the server dropped the referenced frame for good, so re-sending is futile.
_ERRORS_DROPPING_FRAME = {"MALFORMED", "UNKNOWN_TYPE", "INVALID_PAYLOAD", "UNKNOWN_COMMAND", "UNKNOWN_SESSION", "PROTOCOL"}


class FatalError(Exception):
    """The agent cannot go on with this configuration or credential (exit 78)."""


class _Stopped(Exception):
    """Raised inside the agent when a stop was requested while waiting."""


class _SessionLost(Exception):
    """The socket went away while the agent was writing to it."""


class Backoff:
    """Reconnect waits: 1 s doubling up to ``maximum``, each multiplied by a random factor in [0.5, 1.0]."""

    def __init__(self, maximum: float, initial: float = 1.0) -> None:
        self.maximum = maximum
        self.initial = initial
        self._attempt = 0

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * (2**self._attempt))
        if base < self.maximum:
            self._attempt += 1
        jitter = random.uniform(0.5, 1.0)
        return base * jitter

    def reset(self) -> None:
        self._attempt = 0


class Outbox:
    """Frames with an ``id`` that the server has not acknowledged yet, in sending order."""

    def __init__(self) -> None:
        self._frames: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._empty = asyncio.Event()
        self._empty.set()

    def add(self, frame: dict[str, Any]) -> None:
        self._frames[frame["id"]] = frame
        self._empty.clear()

    def remove(self, frame_id: str) -> dict[str, Any] | None:
        frame = self._frames.pop(frame_id, None)
        if not self._frames:
            self._empty.set()
        return frame

    async def wait_empty(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._empty.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    def __contains__(self, frame_id: object) -> bool:
        return frame_id in self._frames

    def __len__(self) -> int:
        return len(self._frames)

    def frames(self) -> list[dict[str, Any]]:
        return list(self._frames.values())

    def command_ids(self) -> list[str]:
        ids: list[str] = []
        for frame in self._frames.values():
            if frame["type"].startswith("command:"):
                command_id = frame["data"].get("commandId")
                if isinstance(command_id, str) and command_id not in ids:
                    ids.append(command_id)
        return ids


@dataclass
class SessionOutcome:
    code: int | None = None
    reason: str = ""
    welcomed: bool = False
    stable: bool = False
    stopped: bool = False


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 3600 else None


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return response.reason_phrase or f"HTTP {response.status_code}"


class Agent:
    """One agent process: registers, keeps the socket up, and runs collectors, commands and tailers."""

    def __init__(self, config: AgentConfig, *, install_signal_handlers: bool = True) -> None:
        self.config = config
        self.log = get_logger("agent")
        self.ids = FrameIds()
        self.outbox = Outbox()
        self.metrics_buffer: deque[dict[str, Any]] = deque(maxlen=METRICS_BUFFER_SAMPLES)
        self.latest_reports: dict[str, dict[str, Any]] = {}
        self.console_instance_id: str | None = None
        self.instance_name: str | None = None
        self.connection_id: str | None = None
        self.max_frame_bytes = DEFAULT_MAX_FRAME_BYTES
        self.install_signal_handlers = install_signal_handlers
        self.started_wall = time.time()
        self.started_monotonic = time.monotonic()
        self.os_release = read_os_release()
        self.hostname = hostname()
        self._tls = _tls_context(config.ca_file) if config.console_url.startswith("https") else None
        self._ws: ClientConnection | None = None
        self._ready = False
        self._send_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self.commands = CommandRunner(config, self)
        self.terminals = TerminalManager(config, self) if config.terminal_enabled else None
        self.log_shipper = LogShipper(self)
        self.log_tailer = LogTailer(config, self.log_shipper) if config.log_files else None
        self._hb_sampler: collectors.CpuSampler | None = None
        self._metrics_sampler: collectors.CpuSampler | None = None
        self._processes = collectors.ProcessCollector()
        self._last_extensions: list[dict[str, Any]] = []
        self._inventory = Inventory(config)

    # ----- public surface used by the other modules -------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ready

    @property
    def capabilities(self) -> list[str]:
        caps = ["heartbeat", "metrics", "processes", "extensions", "logs", "packages", "config"]
        if self.config.commands_enabled:
            caps += ["commands", "scripts"]
        if self.terminals is not None:
            caps.append("terminal")
        return caps

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def send_reliable(self, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        """Send a frame with an ``id``; it stays in the outbox until the server acknowledges it."""
        frame = make_frame(type_, data, self.ids.next())
        self.outbox.add(frame)
        if self._ready:
            await self._write(frame)
        return frame

    async def resend(self, frame: dict[str, Any]) -> None:
        """Send an already built frame again (same ``id``), keeping it in the outbox until acknowledged."""
        self.outbox.add(frame)
        if self._ready:
            await self._write(frame)

    async def send_volatile(self, type_: str, data: dict[str, Any], reply_to: str | None = None) -> bool:
        """Send a frame that is useless later (progress, terminal output, heartbeats): dropped offline."""
        if not self._ready:
            return False
        return await self._write(make_frame(type_, data, reply_to=reply_to))

    async def send_frame(self, frame: dict[str, Any]) -> bool:
        if not self._ready:
            return False
        return await self._write(frame)

    async def send_metrics(self, data: dict[str, Any]) -> None:
        frame = make_frame("metrics", data)
        if self._ready and await self._write(frame):
            return
        self.metrics_buffer.append(frame)

    async def send_report(self, type_: str, data: dict[str, Any]) -> None:
        frame = make_frame(type_, data)
        if self._ready and await self._write(frame):
            return
        self.latest_reports[type_] = frame  # offline only the latest report of each kind is worth sending

    # ----- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        if self.install_signal_handlers:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.request_stop)
                handled.append(signum)
        self._hb_sampler = collectors.CpuSampler()
        self._metrics_sampler = collectors.CpuSampler()
        self._tasks = [
            asyncio.create_task(self._metrics_loop(), name="metrics"),
            asyncio.create_task(self._processes_loop(), name="processes"),
            asyncio.create_task(self._extensions_loop(), name="extensions"),
            asyncio.create_task(self._config_loop(), name="config"),
            asyncio.create_task(self._packages_loop(), name="packages"),
            asyncio.create_task(self.log_shipper.run(), name="log-shipper"),
        ]
        if self.log_tailer is not None:
            self._tasks.append(asyncio.create_task(self.log_tailer.run(), name="log-tailer"))
        try:
            return await self._main_loop()
        except FatalError as exc:
            self.log.error(str(exc))
            return EXIT_CONFIG
        finally:
            await self.commands.shutdown()
            if self.terminals is not None:
                await self.terminals.close_all()
            background = self._tasks + list(self._side_tasks)
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for signum in handled:
                loop.remove_signal_handler(signum)

    async def _main_loop(self) -> int:
        backoff = Backoff(self.config.backoff_max)
        need_register = True
        while not self.stopping:
            if need_register:
                try:
                    await self._register()
                except _Stopped:
                    return 0
                need_register = False
            outcome = await self._connect_once()
            if outcome.stopped or self.stopping:
                return 0
            if outcome.stable:
                backoff.reset()
            code = outcome.code
            if code in CLOSE_FATAL_AT_CONNECT and not outcome.welcomed:
                raise FatalError(f"the console refused the agent socket (close {code}): {outcome.reason}")
            if code in CLOSE_REREGISTER:
                self.log.warning("the console no longer knows this instance; registering again", extra={"closeCode": code})
                need_register = True
                delay = backoff.next_delay()
            elif code == CLOSE_REPLACED:
                self.log.warning("another agent connected as this instance", extra={"closeCode": code})
                delay = self.config.backoff_max
            else:
                delay = backoff.next_delay()
            self.log.info("reconnecting", extra={"closeCode": code, "reason": outcome.reason, "delaySeconds": round(delay, 3)})
            try:
                await self._sleep(delay)
            except _Stopped:
                return 0
        return 0

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise _Stopped

    async def _race_stop(self, awaitable: Awaitable[T]) -> T:
        work = asyncio.ensure_future(awaitable)
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if work.done():
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        raise _Stopped

    # ----- registration ----------------------------------------------------------------------------

    def registration_body(self) -> dict[str, Any]:
        cfg = self.config
        body: dict[str, Any] = {"instanceId": cfg.instance_id, "hostname": self.hostname}
        if cfg.instance_name:
            body["name"] = cfg.instance_name
        if cfg.provider:
            body["provider"] = cfg.provider
        if cfg.region:
            body["region"] = cfg.region
        distro = self.os_release.get("ID", "").lower()
        if distro in {"ubuntu", "fedora"}:
            body["distro"] = distro
        elif distro.startswith("opensuse"):
            body["distro"] = "opensuse"
        body.update({"agentVersion": __version__, "os": host_os(), "arch": host_arch()})
        if cfg.tags:
            body["tags"] = dict(cfg.tags)
        body["timestamp"] = now_iso()
        return body

    async def _register(self) -> None:
        cfg = self.config
        backoff = Backoff(cfg.backoff_max)
        headers = {
            "Authorization": f"Bearer {cfg.api_key}",
            "X-Agent-Version": __version__,
            "User-Agent": f"{AGENT_NAME}/{__version__}",
        }
        url = f"{cfg.console_url}/api/v1/instances"
        verify: ssl.SSLContext | bool = self._tls if self._tls is not None else True
        async with httpx.AsyncClient(
            verify=verify, follow_redirects=False, timeout=httpx.Timeout(15.0, connect=5.0), headers=headers
        ) as client:
            while True:
                if self.stopping:
                    raise _Stopped
                delay: float | None = None
                try:
                    response = await self._race_stop(client.post(url, json=self.registration_body()))
                except httpx.HTTPError as exc:
                    self.log.warning("registration failed; will retry", extra={"error": f"{type(exc).__name__}: {exc}"})
                    response = None
                if response is not None:
                    status = response.status_code
                    if 200 <= status < 300:
                        self._apply_registration(response)
                        return
                    message = _server_message(response)
                    if status == 429:
                        delay = _retry_after(response)
                    elif status < 500 and status != 408:
                        raise FatalError(f"registration refused by the console ({status}): {message}")
                    self.log.warning("registration not accepted yet; will retry", extra={"status": status, "serverMessage": message})
                await self._sleep(delay if delay is not None else backoff.next_delay())

    def _apply_registration(self, response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("id"), str) and body["id"]:
                self.console_instance_id = body["id"]
            if isinstance(body.get("name"), str):
                self.instance_name = body["name"]
        self.log.info("registered", extra={"instanceId": self.console_instance_id, "status": response.status_code})

    # ----- the socket ------------------------------------------------------------------------------

    def hello_data(self) -> dict[str, Any]:
        cfg = self.config
        in_flight = list(dict.fromkeys(self.commands.in_flight_ids() + self.outbox.command_ids()))
        data: dict[str, Any] = {
            "instanceId": self.console_instance_id or cfg.instance_id,
            "agentInstanceId": cfg.instance_id,
            "agentName": AGENT_NAME,
            "agentVersion": __version__,
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": self.capabilities,
            "hostname": self.hostname,
            "os": host_os(),
            "arch": host_arch(),
            "pid": os.getpid(),
            "startedAt": iso_from_epoch(self.started_wall),
            "intervals": {
                "heartbeatSeconds": cfg.heartbeat_seconds,
                "metricsSeconds": cfg.metrics_seconds,
                "processesSeconds": cfg.processes_seconds,
                "extensionsSeconds": cfg.extensions_seconds,
                "packagesSeconds": cfg.inventory_seconds,
                "configSeconds": cfg.config_seconds,
            },
            "inFlightCommands": in_flight[:MAX_IN_FLIGHT_IDS],
            "limits": {
                "maxOutputBytes": cfg.max_output_bytes,
                "maxFrameBytes": MAX_INBOUND_FRAME_BYTES,
                "maxConcurrentCommands": cfg.max_commands,
                "maxTerminals": self.terminals.max_sessions if self.terminals is not None else 0,
            },
        }
        label = platform_label(self.os_release)
        if label:
            data["platform"] = label
        return data

    async def _open_socket(self) -> ClientConnection:
        cfg = self.config
        headers = {
            "Authorization": f"Bearer {cfg.api_key}",
            "X-Instance-ID": self.console_instance_id or cfg.instance_id,
        }
        return await connect(
            f"{cfg.ws_url}/ws/agent",
            additional_headers=headers,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            compression="deflate",
            open_timeout=WELCOME_TIMEOUT_SECONDS,
            ping_interval=WS_PING_INTERVAL_SECONDS,
            ping_timeout=WS_PING_TIMEOUT_SECONDS,
            close_timeout=5,
            max_size=MAX_INBOUND_FRAME_BYTES,
            ssl=self._tls,
            user_agent_header=f"{AGENT_NAME}/{__version__}",
        )

    async def _connect_once(self) -> SessionOutcome:
        outcome = SessionOutcome()
        try:
            ws = await self._race_stop(self._open_socket())
        except _Stopped:
            outcome.stopped = True
            return outcome
        except InvalidStatus as exc:
            status = exc.response.status_code
            outcome.reason = f"handshake answered HTTP {status}"
            if status in (401, 403):
                outcome.code = 4401 if status == 401 else 4403
            return outcome
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            outcome.reason = f"{type(exc).__name__}: {exc}"
            return outcome
        opened = time.monotonic()
        heartbeat: asyncio.Task[None] | None = None
        try:
            await ws.send(encode(make_frame("hello", self.hello_data())))
            early = await self._await_welcome(ws)
            if early is None:
                outcome.reason = "no welcome within 10 s"
                await ws.close(1000, "no welcome")
                return outcome
            outcome.welcomed = True
            self._ws = ws
            if not await self._flush_after_welcome():
                raise _SessionLost
            heartbeat = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
            for frame in early:
                await self._handle_frame(frame)
            reader = asyncio.create_task(self._read_loop(ws), name="reader")
            stopper = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                await self._shutdown_connected(ws)
                outcome.stopped = True
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await reader
            else:
                stopper.cancel()
                reader.result()
        except _Stopped:
            outcome.stopped = True
        except (ConnectionClosed, _SessionLost):
            pass
        except Exception:
            # A bug in frame handling must not end the agent: drop this connection and dial again.
            self.log.exception("agent socket session failed")
            with contextlib.suppress(Exception):
                await ws.close(1011, "agent error")
        finally:
            self._ready = False
            self._ws = None
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
            if self.terminals is not None:
                await self.terminals.close_all()
            if not outcome.stopped:
                await ws.close()
        rcvd = ws.protocol.close_rcvd
        if not outcome.stopped:
            outcome.code = rcvd.code if rcvd is not None else 1006
            outcome.reason = rcvd.reason if rcvd is not None else (outcome.reason or "connection lost")
        outcome.stable = time.monotonic() - opened >= self.config.stable_after
        return outcome

    async def _await_welcome(self, ws: ClientConnection) -> list[dict[str, Any]] | None:
        """Wait for ``welcome``; returns frames that arrived before it, or None on timeout."""
        early: list[dict[str, Any]] = []
        deadline = time.monotonic() + WELCOME_TIMEOUT_SECONDS
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                message = await self._race_stop(asyncio.wait_for(ws.recv(), timeout=remaining))
            except TimeoutError:
                return None
            except _Stopped:
                await ws.close(1000, "agent shutdown")
                raise
            frame = parse(message)
            if frame is None:
                continue
            if frame["type"] == "welcome":
                self._apply_welcome(frame["data"])
                return early
            if frame["type"] == "error":
                self.log.error("the console reported an error", extra={"code": frame["data"].get("code"), "serverMessage": frame["data"].get("message")})
                continue
            early.append(frame)

    def _apply_welcome(self, data: dict[str, Any]) -> None:
        if isinstance(data.get("instanceId"), str):
            self.console_instance_id = data["instanceId"]
        if isinstance(data.get("instanceName"), str):
            self.instance_name = data["instanceName"]
        self.connection_id = data.get("connectionId") if isinstance(data.get("connectionId"), str) else None
        max_frame = data.get("maxFrameBytes")
        if isinstance(max_frame, int) and max_frame > 1024:
            self.max_frame_bytes = max_frame
        self.log.info("connected", extra={"instanceId": self.console_instance_id, "connectionId": self.connection_id})

    async def _flush_after_welcome(self) -> bool:
        """Send the outbox, buffered metrics and latest reports, then let live traffic through."""
        self.log_shipper.on_reconnect()
        sent: set[str] = set()
        while True:
            progress = False
            for frame in self.outbox.frames():
                if frame["id"] in sent or frame["id"] not in self.outbox:
                    continue
                if not await self._write(frame):
                    return False
                sent.add(frame["id"])
                progress = True
            while self.metrics_buffer:
                frame = self.metrics_buffer.popleft()
                if not await self._write(frame):
                    self.metrics_buffer.appendleft(frame)
                    return False
                progress = True
            for type_ in list(self.latest_reports):
                frame = self.latest_reports.pop(type_)
                if not await self._write(frame):
                    self.latest_reports.setdefault(type_, frame)
                    return False
                progress = True
            if not progress:
                # No await between the last check and this flag, so no frame can slip in between.
                self._ready = True
                return True

    async def _write(self, frame: dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None:
            return False
        text = encode(frame)
        try:
            async with self._send_lock:
                await ws.send(text)
        except ConnectionClosed:
            return False
        return True

    async def _read_loop(self, ws: ClientConnection) -> None:
        async for message in ws:
            frame = parse(message)
            if frame is None:
                await self.send_volatile("error", {"code": "MALFORMED", "message": "frame is not a JSON object with a type"})
                continue
            try:
                await self._handle_frame(frame)
            except Exception:
                self.log.exception("failed to handle a console frame", extra={"type": frame.get("type")})

    async def _handle_frame(self, frame: dict[str, Any]) -> None:
        type_ = frame["type"]
        data = frame["data"]
        if type_ == "ack":
            frame_id = data.get("id") or frame.get("replyTo")
            if isinstance(frame_id, str):
                self.outbox.remove(frame_id)
                self.log_shipper.on_ack(frame_id)
        elif type_ == "error":
            self._handle_error(data)
        elif type_ == "ping":
            await self.send_volatile("pong", {}, reply_to=frame.get("id"))
        elif type_ in ("pong", "welcome"):
            return
        elif type_ == "command:dispatch":
            await self.commands.handle_dispatch(data)
        elif type_ == "command:cancel":
            await self.commands.handle_cancel(data)
        elif type_ == "report:request":
            task = asyncio.create_task(self._answer_report_request(data), name="report-request")
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)
        elif type_.startswith("terminal:") and self.terminals is not None:
            await self.terminals.handle(type_, data)
        else:
            error: dict[str, Any] = {"code": "UNKNOWN_TYPE", "message": f"the agent does not handle {type_!r}"}
            if isinstance(frame.get("id"), str):
                error["refId"] = frame["id"]
            await self.send_volatile("error", error)

    def _handle_error(self, data: dict[str, Any]) -> None:
        code, ref = data.get("code"), data.get("refId")
        self.log.warning("the console reported an error", extra={"code": code, "serverMessage": data.get("message"), "refId": ref})
        if isinstance(ref, str) and code in _ERRORS_DROPPING_FRAME and not data.get("partial"):
            self.outbox.remove(ref)
            self.log_shipper.on_ack(ref)

    async def _shutdown_connected(self, ws: ClientConnection) -> None:
        await self.commands.shutdown()
        if self.terminals is not None:
            await self.terminals.close_all()
        await self.log_shipper.flush_now()
        await self.outbox.wait_empty(SHUTDOWN_ACK_WAIT_SECONDS)
        self._ready = False
        await ws.close(1000, "agent shutdown")

    # ----- periodic collectors ---------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        assert self._hb_sampler is not None
        while True:
            data = collectors.heartbeat_data(self._hb_sampler, self.started_monotonic)
            await self.send_volatile("heartbeat", data)
            await asyncio.sleep(self.config.heartbeat_seconds)

    async def _periodic(self, interval: float, first_delay: float, job: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(first_delay)
        next_run = time.monotonic()
        while True:
            try:
                await job()
            except Exception:
                self.log.exception("collector failed")
            next_run += interval
            await asyncio.sleep(max(0.0, next_run - time.monotonic()))

    async def _collect_metrics(self) -> None:
        assert self._metrics_sampler is not None
        data = await asyncio.to_thread(collectors.metrics_data, self._metrics_sampler)
        await self.send_metrics(data)

    async def _metrics_loop(self) -> None:
        # The first sample needs a CPU window; one second is the priming sample of §10.2.
        await self._periodic(self.config.metrics_seconds, min(1.0, self.config.metrics_seconds), self._collect_metrics)

    async def _collect_processes(self, request_id: str | None = None) -> None:
        data = await asyncio.to_thread(self._processes.collect)
        if request_id:
            data["requestId"] = request_id
        await self.send_report("processes:report", data)

    async def _processes_loop(self) -> None:
        await asyncio.to_thread(self._processes.collect)  # primes per-process CPU counters
        await self._periodic(self.config.processes_seconds, 1.0, self._collect_processes)

    async def _collect_extensions(self, request_id: str | None = None) -> None:
        data = await collectors.extensions_report(self.config.sindri_bin)
        if data["available"]:
            self._last_extensions = data["extensions"]
        if request_id:
            data["requestId"] = request_id
        await self.send_report("extensions:report", data)

    async def _extensions_loop(self) -> None:
        await self._periodic(self.config.extensions_seconds, 0.0, self._collect_extensions)

    async def _collect_config(self, request_id: str | None = None) -> None:
        data = await asyncio.to_thread(reports.config_report, self.config, self._last_extensions)
        if request_id:
            data["requestId"] = request_id
        await self.send_report("config:report", data)

    async def _config_loop(self) -> None:
        await self._periodic(self.config.config_seconds, CONFIG_FIRST_RUN_SECONDS, self._collect_config)

    async def _collect_packages(self, request_id: str | None = None) -> None:
        data = await self._inventory.collect()
        if request_id:
            data["requestId"] = request_id
        budget = self.max_frame_bytes - 64 * 1024
        while data["packages"] and len(encode({"data": data}).encode("utf-8")) > budget:
            # Stay inside the console's frame limit; the report says it is incomplete.
            data["packages"] = data["packages"][: len(data["packages"]) * 3 // 4]
            data["truncated"] = True
        await self.send_report("packages:report", data)

    async def _packages_loop(self) -> None:
        await self._periodic(self.config.inventory_seconds, PACKAGES_FIRST_RUN_SECONDS, self._collect_packages)

    async def _answer_report_request(self, data: dict[str, Any]) -> None:
        request_id = data.get("requestId") if isinstance(data.get("requestId"), str) else None
        kinds = v if isinstance(v := data.get("kinds"), list) else []
        for kind in kinds:
            try:
                if kind == "processes":
                    await self._collect_processes(request_id)
                elif kind == "extensions":
                    await self._collect_extensions(request_id)
                elif kind == "config":
                    await self._collect_config(request_id)
                elif kind == "packages":
                    await self._collect_packages(request_id)
                else:
                    await self.send_volatile(
                        "error",
                        {"code": "UNSUPPORTED_REPORT", "message": f"this agent does not collect {kind!r} reports", "refId": request_id},
                    )
            except Exception:
                self.log.exception("report request failed", extra={"kind": kind})
