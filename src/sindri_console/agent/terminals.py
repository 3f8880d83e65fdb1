"""PTY sessions for ``terminal:*`` frames (40-agent-protocol §4.4, §5.2, §9.6, §10.5)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import os
import pwd
import signal
import struct
import termios
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from sindri_console.agent.config import AgentConfig
from sindri_console.agent.log import get_logger
from sindri_console.agent.util import sanitized_environ

MAX_SESSIONS = 10
CHUNK_BYTES = 16 * 1024
COALESCE_SECONDS = 0.02
KILL_GRACE_SECONDS = 5.0
PAUSE_READING_BYTES = 1024 * 1024


class TerminalSender(Protocol):
    async def send_volatile(self, type_: str, data: dict[str, Any], reply_to: str | None = None) -> bool: ...


def _dimension(value: Any, default: int, upper: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return max(1, min(upper, value))


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _take_controlling_terminal() -> None:
    # Runs in the child after setsid(): make the PTY (already on fd 0) the controlling terminal.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@dataclass
class TerminalSession:
    session_id: str
    process: asyncio.subprocess.Process
    master_fd: int
    buffer: bytearray = field(default_factory=bytearray)
    data_ready: asyncio.Event = field(default_factory=asyncio.Event)
    eof: bool = False
    reading: bool = True
    close_reason: str | None = None
    pump: asyncio.Task[None] | None = None


class TerminalManager:
    max_sessions = MAX_SESSIONS

    def __init__(self, config: AgentConfig, sender: TerminalSender) -> None:
        self.config = config
        self.sender = sender
        self.log = get_logger("terminals")
        self.sessions: dict[str, TerminalSession] = {}

    async def handle(self, type_: str, data: dict[str, Any]) -> None:
        session_id = data.get("sessionId") or data.get("session_id")
        if not isinstance(session_id, str) or not session_id:
            await self.sender.send_volatile(
                "error", {"code": "INVALID_PAYLOAD", "message": f"{type_} without a sessionId"}
            )
            return
        if type_ == "terminal:create":
            await self._create(session_id, data)
            return
        session = self.sessions.get(session_id)
        if session is None:
            if type_ != "terminal:close":
                await self._error(session_id, "UNKNOWN_SESSION", f"No terminal session {session_id!r} on this agent")
            return
        if type_ == "terminal:input":
            await self._input(session, data)
        elif type_ == "terminal:resize":
            cols = _dimension(data.get("cols"), 80, 1000)
            rows = _dimension(data.get("rows"), 24, 500)
            with contextlib.suppress(OSError):
                _set_size(session.master_fd, cols, rows)
        elif type_ == "terminal:close":
            reason = r if isinstance(r := data.get("reason"), str) else "closed"
            self._hang_up(session, reason)
        else:
            await self.sender.send_volatile(
                "error", {"code": "UNKNOWN_TYPE", "message": f"the agent does not handle {type_!r}"}
            )

    async def _error(self, session_id: str, code: str, message: str) -> None:
        await self.sender.send_volatile("terminal:error", {"sessionId": session_id, "code": code, "message": message})

    def _run_as(self) -> tuple[dict[str, Any], dict[str, str], str]:
        name = self.config.run_as
        if name and os.geteuid() == 0:
            entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
            kwargs = {
                "user": entry.pw_uid,
                "group": entry.pw_gid,
                "extra_groups": os.getgrouplist(entry.pw_name, entry.pw_gid),
            }
            env = {"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name, "SHELL": self.config.shell}
            return kwargs, env, entry.pw_dir
        home = os.environ.get("HOME") or os.path.expanduser("~")
        return {}, {}, home if os.path.isdir(home) else "/"

    async def _create(self, session_id: str, data: dict[str, Any]) -> None:
        if session_id in self.sessions:
            return  # a repeated create for a live session changes nothing
        if len(self.sessions) >= MAX_SESSIONS:
            await self._error(session_id, "LIMIT_EXCEEDED", f"At most {MAX_SESSIONS} terminals per agent")
            return
        cols = _dimension(data.get("cols"), 80, 1000)
        rows = _dimension(data.get("rows"), 24, 500)
        master_fd, slave_fd = os.openpty()
        try:
            _set_size(master_fd, cols, rows)
            run_as_kwargs, run_as_env, cwd = self._run_as()
            env = sanitized_environ({**run_as_env, "TERM": "xterm-256color"})
            process = await asyncio.create_subprocess_exec(
                self.config.shell,
                "-l",
                stdin=slave_fd,
                stdout=slave_fd,
                stderr=slave_fd,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_take_controlling_terminal,
                **run_as_kwargs,
            )
        except (OSError, KeyError, ValueError) as exc:
            os.close(master_fd)
            os.close(slave_fd)
            await self._error(session_id, "SPAWN_FAILED", f"Could not start {self.config.shell!r}: {exc}")
            return
        os.close(slave_fd)
        os.set_blocking(master_fd, False)
        session = TerminalSession(session_id=session_id, process=process, master_fd=master_fd)
        self.sessions[session_id] = session
        asyncio.get_running_loop().add_reader(master_fd, self._on_readable, session)
        session.pump = asyncio.create_task(self._pump(session), name=f"terminal-{session_id}")
        await self.sender.send_volatile("terminal:created", {"sessionId": session_id, "pid": process.pid})

    def _on_readable(self, session: TerminalSession) -> None:
        try:
            chunk = os.read(session.master_fd, CHUNK_BYTES)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""  # EIO: every holder of the PTY's other end has gone
        if not chunk:
            session.eof = True
            self._stop_reading(session)
        else:
            session.buffer += chunk
            if len(session.buffer) >= PAUSE_READING_BYTES:
                self._stop_reading(session)
        session.data_ready.set()

    def _stop_reading(self, session: TerminalSession) -> None:
        if session.reading:
            session.reading = False
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(session.master_fd)

    async def _pump(self, session: TerminalSession) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await session.data_ready.wait()
                session.data_ready.clear()
                await asyncio.sleep(COALESCE_SECONDS)
                while session.buffer:
                    chunk = bytes(session.buffer[:CHUNK_BYTES])
                    del session.buffer[:CHUNK_BYTES]
                    await self.sender.send_volatile(
                        "terminal:output",
                        {"sessionId": session.session_id, "data": base64.b64encode(chunk).decode("ascii")},
                    )
                if session.eof:
                    break
                if not session.reading:
                    session.reading = True
                    loop.add_reader(session.master_fd, self._on_readable, session)
            returncode = await session.process.wait()
        finally:
            self._stop_reading(session)
            with contextlib.suppress(OSError):
                os.close(session.master_fd)
            self.sessions.pop(session.session_id, None)
        closed: dict[str, Any] = {"sessionId": session.session_id}
        if returncode >= 0:
            closed["exitCode"] = returncode
        else:
            closed["exitCode"] = None
            closed["signal"] = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else None
        if session.close_reason:
            closed["reason"] = session.close_reason
        await self.sender.send_volatile("terminal:closed", closed)

    async def _input(self, session: TerminalSession, data: dict[str, Any]) -> None:
        try:
            payload = base64.b64decode(data.get("data") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            await self.sender.send_volatile(
                "error", {"code": "INVALID_PAYLOAD", "message": "terminal:input data must be base64"}
            )
            return
        view = memoryview(payload)
        deadline = time.monotonic() + 5.0
        while view and time.monotonic() < deadline:
            try:
                written = os.write(session.master_fd, view)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            except OSError:
                return  # the shell is gone; its closed frame follows from the pump
            view = view[written:]

    def _hang_up(self, session: TerminalSession, reason: str) -> None:
        if session.close_reason is not None:
            return
        session.close_reason = reason
        pgid = session.process.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGHUP)

        def kill_if_alive() -> None:
            if session.process.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)

        asyncio.get_running_loop().call_later(KILL_GRACE_SECONDS, kill_if_alive)

    async def close_all(self, reason: str = "agent_shutdown") -> None:
        sessions = list(self.sessions.values())
        for session in sessions:
            self._hang_up(session, reason)
        pumps = [s.pump for s in sessions if s.pump is not None]
        if pumps:
            await asyncio.wait(pumps, timeout=KILL_GRACE_SECONDS + 1.0)
