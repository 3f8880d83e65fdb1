"""Command execution for ``command:dispatch`` (40-agent-protocol §6.2–§6.4, §10.4)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sindri_console.agent.config import AgentConfig
from sindri_console.agent.log import get_logger
from sindri_console.agent.protocol import encode
from sindri_console.agent.util import (
    iso_from_epoch,
    parse_iso,
    sanitized_environ,
    take_utf8_text,
    utf8_complete_prefix_len,
)

MAX_QUEUED = 100
RESULT_RETENTION_COUNT = 1000
RESULT_RETENTION_SECONDS = 3600.0
KILL_GRACE_SECONDS = 5.0
PIPE_DRAIN_SECONDS = 2.0
PROGRESS_INTERVAL_SECONDS = 0.1  # at most 10 progress frames per second per command
PROGRESS_CHUNK_BYTES = 16 * 1024
READ_CHUNK_BYTES = 64 * 1024
FRAME_HEADROOM_BYTES = 64 * 1024

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Sender(Protocol):
    max_frame_bytes: int

    async def send_reliable(self, type_: str, data: dict[str, Any]) -> dict[str, Any]: ...

    async def resend(self, frame: dict[str, Any]) -> None: ...

    async def send_volatile(self, type_: str, data: dict[str, Any], reply_to: str | None = None) -> bool: ...


class InvalidDispatch(ValueError):
    pass


@dataclass
class CommandSpec:
    command_id: str
    kind: str
    argv: list[str]
    script: str | None
    env: dict[str, str]
    working_dir: str | None
    stdin: bytes | None
    timeout_seconds: float | None
    output_limit: int
    expires_at: datetime | None


@dataclass
class CommandRecord:
    command_id: str
    state: str = "queued"  # queued → running → finished
    spec: CommandSpec | None = None
    ack_frame: dict[str, Any] | None = None
    result_frame: dict[str, Any] | None = None
    finished_at: float | None = None
    cancel_reason: str | None = None
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)


class StreamCapture:
    """Keeps the first ``limit`` bytes of a stream, counts all of them, and feeds live progress."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.total = 0
        self.pending = bytearray()
        self.eof = False

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit - len(self.kept)
        if room > 0:
            part = chunk[:room]
            self.kept += part
            self.pending += part

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def text(self) -> str:
        data = self.kept
        if self.truncated:
            data = data[: utf8_complete_prefix_len(data)]
        return bytes(data).decode("utf-8", "replace")


def _string(data: dict[str, Any], camel: str, snake: str | None = None) -> Any:
    if camel in data:
        return data[camel]
    return data.get(snake) if snake else None


def parse_dispatch(data: dict[str, Any], max_output_bytes: int) -> CommandSpec:
    command_id = _string(data, "commandId", "command_id")
    kind = data.get("kind") or "exec"
    if kind not in ("exec", "script"):
        raise InvalidDispatch(f"kind must be exec or script, got {kind!r}")
    env_raw = data.get("env") or {}
    if not isinstance(env_raw, dict) or len(env_raw) > 100:
        raise InvalidDispatch("env must be an object of at most 100 entries")
    env: dict[str, str] = {}
    for key, value in env_raw.items():
        if not isinstance(key, str) or len(key) > 256 or not _ENV_KEY.match(key):
            raise InvalidDispatch(f"env key {key!r} is not a valid variable name")
        if not isinstance(value, str) or len(value) > 4096:
            raise InvalidDispatch(f"env value of {key} must be a string of at most 4096 characters")
        env[key] = value
    working_dir = _string(data, "workingDir", "working_dir")
    if working_dir is not None and (not isinstance(working_dir, str) or len(working_dir) > 512):
        raise InvalidDispatch("workingDir must be a string of at most 512 characters")
    stdin_raw = data.get("stdin")
    if stdin_raw is not None and not isinstance(stdin_raw, str):
        raise InvalidDispatch("stdin must be a string")
    stdin = stdin_raw.encode("utf-8") if stdin_raw is not None else None
    if stdin is not None and len(stdin) > 1024 * 1024:
        raise InvalidDispatch("stdin must be at most 1 MiB")
    timeout_ms = _string(data, "timeoutMs", "timeout_ms")
    if timeout_ms is not None and (isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float) or timeout_ms <= 0):
        raise InvalidDispatch("timeoutMs must be a positive integer")
    limit = _string(data, "outputLimitBytes", "output_limit_bytes")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidDispatch("outputLimitBytes must be a non-negative integer")
    output_limit = max_output_bytes if limit is None else min(limit, max_output_bytes)
    expires_raw = _string(data, "expiresAt", "expires_at")
    expires_at = parse_iso(expires_raw) if isinstance(expires_raw, str) else None
    if expires_raw is not None and expires_at is None:
        raise InvalidDispatch("expiresAt must be an ISO 8601 time with an offset")

    script: str | None = None
    if kind == "exec":
        command = data.get("command")
        if not isinstance(command, str) or not 1 <= len(command) <= 4096:
            raise InvalidDispatch("command must be a string of 1 to 4096 characters")
        args = data.get("args") or []
        if not isinstance(args, list) or len(args) > 64 or not all(isinstance(a, str) and len(a) <= 1024 for a in args):
            raise InvalidDispatch("args must be at most 64 strings of at most 1024 characters")
        if data.get("shell") is True:
            if args:
                raise InvalidDispatch("args must be empty when shell is true")
            argv = ["/bin/sh", "-c", command]
        else:
            argv = [command, *args]
    else:
        spec = data.get("script")
        if not isinstance(spec, dict):
            raise InvalidDispatch("script must be an object with interpreter and content")
        interpreter, script = spec.get("interpreter"), spec.get("content")
        if not isinstance(interpreter, str) or not 1 <= len(interpreter) <= 128:
            raise InvalidDispatch("script.interpreter must be a string of 1 to 128 characters")
        if not isinstance(script, str) or len(script.encode("utf-8")) > 64 * 1024:
            raise InvalidDispatch("script.content must be text of at most 64 KiB")
        argv = [interpreter]
    return CommandSpec(
        command_id=command_id,
        kind=kind,
        argv=argv,
        script=script,
        env=env,
        working_dir=working_dir,
        stdin=stdin,
        timeout_seconds=float(timeout_ms) / 1000.0 if timeout_ms is not None else None,
        output_limit=output_limit,
        expires_at=expires_at,
    )


def _is_directory(path: str) -> bool:
    return os.path.isdir(path)


def _write_script(content: str, run_as_kwargs: dict[str, Any]) -> tuple[str, str]:
    """Write a script into a fresh private directory; returns (directory, file)."""
    directory = tempfile.mkdtemp(prefix="sindri-script-")  # mkdtemp creates it with mode 0700
    os.chmod(directory, 0o700)
    path = os.path.join(directory, "script")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    if run_as_kwargs:
        os.chown(directory, run_as_kwargs["user"], run_as_kwargs["group"])
        os.chown(path, run_as_kwargs["user"], run_as_kwargs["group"])
    return directory, path


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class CommandRunner:
    def __init__(self, config: AgentConfig, sender: Sender) -> None:
        self.config = config
        self.sender = sender
        self.log = get_logger("commands")
        self._records: OrderedDict[str, CommandRecord] = OrderedDict()
        self._queue: deque[CommandRecord] = deque()
        self._running = 0
        self._supervisors: set[asyncio.Task[None]] = set()
        self._shutting_down = False

    def in_flight_ids(self) -> list[str]:
        return [r.command_id for r in self._records.values() if r.state in ("queued", "running")]

    def _prune(self) -> None:
        cutoff = time.monotonic() - RESULT_RETENTION_SECONDS
        finished = [r for r in self._records.values() if r.state == "finished"]
        excess = len(finished) - RESULT_RETENTION_COUNT
        for record in finished:
            if excess > 0 or (record.finished_at is not None and record.finished_at < cutoff):
                del self._records[record.command_id]
                excess -= 1

    async def handle_dispatch(self, data: dict[str, Any]) -> None:
        self._prune()
        command_id = _string(data, "commandId", "command_id")
        if not isinstance(command_id, str) or not command_id:
            await self.sender.send_volatile(
                "error", {"code": "INVALID_PAYLOAD", "message": "command:dispatch without a commandId"}
            )
            return
        known = self._records.get(command_id)
        if known is not None:
            # Redelivered dispatch (§6.4): never run twice, repeat what the console may have missed.
            if known.ack_frame is not None:
                await self.sender.resend(known.ack_frame)
            if known.result_frame is not None:
                await self.sender.resend(known.result_frame)
            return
        record = CommandRecord(command_id=command_id)
        self._records[command_id] = record
        if self._shutting_down:
            await self._reject(record, "SHUTTING_DOWN", "The agent is shutting down")
            return
        if not self.config.commands_enabled:
            await self._reject(record, "DISABLED", "Commands are disabled on this agent (SINDRI_AGENT_COMMANDS=false)")
            return
        try:
            spec = parse_dispatch(data, self.config.max_output_bytes)
        except InvalidDispatch as exc:
            await self._reject(record, "INVALID", str(exc))
            return
        record.spec = spec
        if await self._reject_if_expired(record):
            return
        if spec.working_dir is not None and not _is_directory(spec.working_dir):
            await self._reject(record, "BAD_WORKDIR", f"Working directory {spec.working_dir!r} does not exist")
            return
        if self._running >= self.config.max_commands:
            if len(self._queue) >= MAX_QUEUED:
                await self._reject(record, "BUSY", "The agent's command queue is full")
                return
            self._queue.append(record)
            return
        await self._start(record)

    async def handle_cancel(self, data: dict[str, Any]) -> None:
        command_id = _string(data, "commandId", "command_id")
        record = self._records.get(command_id) if isinstance(command_id, str) else None
        if record is None or record.state == "finished":
            return
        reason = data.get("reason") if isinstance(data.get("reason"), str) else "cancelled"
        record.cancel_reason = reason
        if record.state == "queued":
            with contextlib.suppress(ValueError):
                self._queue.remove(record)
            now = time.time()
            await self._finish(
                record,
                {
                    "exitCode": None,
                    "signal": None,
                    "stdout": "",
                    "stderr": "",
                    "stdoutBytes": 0,
                    "stderrBytes": 0,
                    "stdoutTruncated": False,
                    "stderrTruncated": False,
                    "durationMs": 0,
                    "startedAt": None,
                    "finishedAt": iso_from_epoch(now),
                    "timedOut": False,
                    "cancelled": True,
                    "error": f"Cancelled before it started: {reason}",
                },
            )
            return
        record.cancel_event.set()

    async def shutdown(self) -> None:
        """Refuse new work, drop the local queue (the console redelivers it) and end running commands."""
        self._shutting_down = True
        while self._queue:
            record = self._queue.popleft()
            self._records.pop(record.command_id, None)
        for record in self._records.values():
            if record.state == "running" and record.cancel_reason is None:
                record.cancel_reason = "shutdown"
                record.cancel_event.set()
        if self._supervisors:
            await asyncio.gather(*list(self._supervisors), return_exceptions=True)

    async def _reject(self, record: CommandRecord, code: str, message: str) -> None:
        record.state = "finished"
        record.finished_at = time.monotonic()
        record.ack_frame = await self.sender.send_reliable(
            "command:ack", {"commandId": record.command_id, "accepted": False, "code": code, "message": message}
        )

    async def _reject_if_expired(self, record: CommandRecord) -> bool:
        assert record.spec is not None
        expires = record.spec.expires_at
        if expires is not None and datetime.now(tz=UTC) >= expires:
            await self._reject(record, "EXPIRED", "The command expired before the agent could start it")
            return True
        return False

    async def _start_next(self) -> None:
        while self._queue and self._running < self.config.max_commands and not self._shutting_down:
            record = self._queue.popleft()
            if await self._reject_if_expired(record):
                continue
            await self._start(record)

    def _run_as(self) -> tuple[dict[str, Any], dict[str, str], str | None]:
        """Popen arguments, extra environment and home directory for SINDRI_AGENT_RUN_AS."""
        name = self.config.run_as
        if not name or os.geteuid() != 0:
            return {}, {}, None
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        kwargs = {
            "user": entry.pw_uid,
            "group": entry.pw_gid,
            "extra_groups": os.getgrouplist(entry.pw_name, entry.pw_gid),
        }
        env = {"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name}
        return kwargs, env, entry.pw_dir

    async def _start(self, record: CommandRecord) -> None:
        spec = record.spec
        assert spec is not None
        record.state = "running"
        self._running += 1
        started = time.time()
        started_mono = time.monotonic()
        script_dir: str | None = None
        try:
            run_as_kwargs, run_as_env, run_as_home = self._run_as()
            argv = list(spec.argv)
            if spec.kind == "script":
                script_dir, path = _write_script(spec.script or "", run_as_kwargs)
                argv.append(path)
            env = sanitized_environ({**run_as_env, **spec.env})
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if spec.stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=spec.working_dir or run_as_home,
                env=env,
                start_new_session=True,
                **run_as_kwargs,
            )
        except (OSError, KeyError, ValueError, subprocess.SubprocessError) as exc:
            if script_dir is not None:
                shutil.rmtree(script_dir, ignore_errors=True)
            self._running -= 1
            message = getattr(exc, "strerror", None) or str(exc)
            await self._finish(record, self._spawn_failure(started, f"Could not start {spec.argv[0]!r}: {message}"))
            await self._start_next()
            return
        record.ack_frame = await self.sender.send_reliable(
            "command:ack",
            {"commandId": record.command_id, "accepted": True, "pid": proc.pid, "startedAt": iso_from_epoch(started)},
        )
        task = asyncio.create_task(self._supervise(record, proc, started, started_mono, script_dir))
        self._supervisors.add(task)
        task.add_done_callback(self._supervisors.discard)

    @staticmethod
    def _spawn_failure(started: float, message: str) -> dict[str, Any]:
        return {
            "exitCode": None,
            "signal": None,
            "stdout": "",
            "stderr": "",
            "stdoutBytes": 0,
            "stderrBytes": 0,
            "stdoutTruncated": False,
            "stderrTruncated": False,
            "durationMs": 0,
            "startedAt": iso_from_epoch(started),
            "finishedAt": iso_from_epoch(time.time()),
            "timedOut": False,
            "cancelled": False,
            "error": message,
        }

    async def _supervise(
        self,
        record: CommandRecord,
        proc: asyncio.subprocess.Process,
        started: float,
        started_mono: float,
        script_dir: str | None,
    ) -> None:
        spec = record.spec
        assert spec is not None and proc.stdout is not None and proc.stderr is not None
        out, err = StreamCapture(spec.output_limit), StreamCapture(spec.output_limit)
        readers = asyncio.gather(self._read(proc.stdout, out), self._read(proc.stderr, err))
        helpers: list[asyncio.Task[None]] = [asyncio.create_task(self._progress(record, out, err))]
        if spec.stdin is not None and proc.stdin is not None:
            helpers.append(asyncio.create_task(self._write_stdin(proc.stdin, spec.stdin)))
        timed_out = False
        sent_signal: str | None = None
        try:
            waiter = asyncio.create_task(proc.wait())
            canceller = asyncio.create_task(record.cancel_event.wait())
            await asyncio.wait({waiter, canceller}, timeout=spec.timeout_seconds, return_when=asyncio.FIRST_COMPLETED)
            canceller.cancel()
            if not waiter.done():
                timed_out = not record.cancel_event.is_set()
                sent_signal = await self._terminate_group(proc)
            await waiter
            try:
                await asyncio.wait_for(asyncio.shield(readers), timeout=PIPE_DRAIN_SECONDS)
            except TimeoutError:
                # A background child still holds the pipes; the command itself is over.
                readers.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await readers
        finally:
            for helper in helpers:
                helper.cancel()
            for helper in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await helper
            if script_dir is not None:
                shutil.rmtree(script_dir, ignore_errors=True)
            self._running -= 1

        returncode = proc.returncode
        exit_code: int | None = returncode if returncode is not None and returncode >= 0 else None
        signal_name = _signal_name(-returncode) if returncode is not None and returncode < 0 else None
        cancelled = record.cancel_event.is_set() and record.cancel_reason != "shutdown"
        error: str | None = None
        if timed_out or cancelled or record.cancel_reason == "shutdown":
            exit_code = None
            signal_name = signal_name or sent_signal
        if timed_out:
            error = f"Timed out after {spec.timeout_seconds:g} s"
        elif record.cancel_reason == "shutdown":
            error = "The agent shut down while the command was running"
        finished = time.time()
        result = {
            "exitCode": exit_code,
            "signal": signal_name,
            "stdout": out.text(),
            "stderr": err.text(),
            "stdoutBytes": out.total,
            "stderrBytes": err.total,
            "stdoutTruncated": out.truncated,
            "stderrTruncated": err.truncated,
            "durationMs": int((time.monotonic() - started_mono) * 1000),
            "startedAt": iso_from_epoch(started),
            "finishedAt": iso_from_epoch(finished),
            "timedOut": timed_out,
            "cancelled": cancelled,
            "error": error,
        }
        await self._finish(record, result)
        await self._start_next()

    async def _finish(self, record: CommandRecord, result: dict[str, Any]) -> None:
        record.state = "finished"
        record.finished_at = time.monotonic()
        result = {"commandId": record.command_id, **result}
        self._fit_frame(result)
        record.result_frame = await self.sender.send_reliable("command:result", result)

    def _fit_frame(self, result: dict[str, Any]) -> None:
        """Shrink kept output until the result frame fits the console's frame limit."""
        budget = self.sender.max_frame_bytes - FRAME_HEADROOM_BYTES
        while len(encode({"data": result}).encode("utf-8")) > budget:
            longest = max(("stdout", "stderr"), key=lambda k: len(result[k]))
            text: str = result[longest]
            if not text:
                return
            raw = text.encode("utf-8")
            half = raw[: utf8_complete_prefix_len(raw[: len(raw) // 2])]
            result[longest] = half.decode("utf-8", "replace")
            result[f"{longest}Truncated"] = True

    @staticmethod
    async def _read(stream: asyncio.StreamReader, capture: StreamCapture) -> None:
        while chunk := await stream.read(READ_CHUNK_BYTES):
            capture.feed(chunk)
        capture.eof = True

    @staticmethod
    async def _write_stdin(pipe: asyncio.StreamWriter, data: bytes) -> None:
        try:
            pipe.write(data)
            await pipe.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the child stopped reading; that is its choice
        finally:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                pipe.close()

    async def _progress(self, record: CommandRecord, out: StreamCapture, err: StreamCapture) -> None:
        seq = 0
        streams = [("stdout", out), ("stderr", err)]
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)
            # One frame per tick keeps the rate at ≤ 10 frames/s; the stream with more waiting goes first.
            name, capture = max(streams, key=lambda item: len(item[1].pending))
            if not capture.pending:
                continue
            text, used = take_utf8_text(capture.pending, PROGRESS_CHUNK_BYTES, final=capture.eof)
            if used == 0:
                continue
            del capture.pending[:used]
            seq += 1
            await self.sender.send_volatile(
                "command:progress", {"commandId": record.command_id, "stream": name, "seq": seq, "data": text}
            )

    async def _terminate_group(self, proc: asyncio.subprocess.Process) -> str:
        pgid = proc.pid  # start_new_session made the child the leader of its own group
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        while time.monotonic() < deadline:
            if proc.returncode is not None and not _group_alive(pgid):
                return "SIGTERM"
            await asyncio.sleep(0.05)
        _signal_group(pgid, signal.SIGKILL)
        return "SIGKILL"

