"""Log file tailing and shipping as ``log:batch`` (40-agent-protocol §4.7, §10.6, §10.7)."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from sindri_console.agent.config import AgentConfig, LogSource
from sindri_console.agent.log import get_logger
from sindri_console.agent.util import now_iso, utf8_complete_prefix_len

MAX_LINE_BYTES = 16 * 1024
BATCH_LINES = 500
BATCH_MAX_BYTES = 4 * 1024 * 1024  # keeps a batch well inside the console's 8 MiB frame limit
SHIP_INTERVAL_SECONDS = 1.0
BUFFER_MAX_LINES = 10_000
BUFFER_MAX_BYTES = 8 * 1024 * 1024
GLOB_INTERVAL_SECONDS = 10.0
SAVE_INTERVAL_SECONDS = 5.0
POLL_INTERVAL_SECONDS = 0.25
READ_PER_POLL_BYTES = 1024 * 1024
STATE_FILE = "log-offsets.json"

_LEVEL_WORD = re.compile(r"(?i)\b(TRACE|DEBUG|INFO|NOTICE|WARNING|WARN|ERROR|ERR|FATAL|CRITICAL)\b")


def detect_level(text: str) -> str:
    """A JSON line's ``level``/``severity``, else the first level word in the first 64 characters, else info."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            for key in ("level", "severity"):
                value = parsed.get(key)
                if isinstance(value, str) and value.strip():
                    return value.strip().lower()
    match = _LEVEL_WORD.search(text[:64])
    return match.group(1).lower() if match else "info"


class ShipperHost(Protocol):
    @property
    def connected(self) -> bool: ...

    async def send_reliable(self, type_: str, data: dict[str, Any]) -> dict[str, Any]: ...

    @property
    def outbox(self) -> Any: ...


class LogShipper:
    """Buffers log lines and ships them in batches; offline it keeps at most 10 000 lines / 8 MiB."""

    def __init__(self, host: ShipperHost) -> None:
        self.host = host
        self.log = get_logger("logs")
        self.pending: deque[tuple[dict[str, Any], int]] = deque()
        self.pending_bytes = 0
        self.unacked: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self.dropped = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def _buffered(self) -> tuple[int, int]:
        lines = len(self.pending) + sum(count for count, _ in self.unacked.values())
        size = self.pending_bytes + sum(size for _, size in self.unacked.values())
        return lines, size

    def add(self, line: dict[str, Any]) -> None:
        size = len(line.get("message", "").encode("utf-8")) + 128
        self.pending.append((line, size))
        self.pending_bytes += size
        lines, total = self._buffered()
        while lines > BUFFER_MAX_LINES or total > BUFFER_MAX_BYTES:
            # Oldest first: batches waiting for an ack are older than anything still pending.
            if self.unacked:
                frame_id, (count, batch_size) = self.unacked.popitem(last=False)
                self.host.outbox.remove(frame_id)
                self.dropped += count
                lines, total = lines - count, total - batch_size
            else:
                _, old_size = self.pending.popleft()
                self.pending_bytes -= old_size
                self.dropped += 1
                lines, total = lines - 1, total - old_size
        if len(self.pending) >= BATCH_LINES:
            self._wake.set()

    def on_ack(self, frame_id: str) -> None:
        self.unacked.pop(frame_id, None)

    def on_reconnect(self) -> None:
        if self.dropped:
            line = {
                "message": f"[sindri-console-agent] dropped {self.dropped} log lines while disconnected",
                "level": "warn",
                "source": "agent",
                "timestamp": now_iso(),
            }
            self.pending.appendleft((line, 256))
            self.pending_bytes += 256
            self.dropped = 0
        self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=SHIP_INTERVAL_SECONDS)
            self._wake.clear()
            await self.flush_now()

    async def flush_now(self) -> None:
        async with self._lock:
            while self.pending and self.host.connected:
                batch: list[dict[str, Any]] = []
                size = 0
                while self.pending and len(batch) < BATCH_LINES:
                    line, line_size = self.pending[0]
                    if batch and size + line_size > BATCH_MAX_BYTES:
                        break
                    self.pending.popleft()
                    self.pending_bytes -= line_size
                    batch.append(line)
                    size += line_size
                frame = await self.host.send_reliable("log:batch", {"lines": batch})
                if frame["id"] in self.host.outbox:
                    self.unacked[frame["id"]] = (len(batch), size)


class LineSink(Protocol):
    def add(self, line: dict[str, Any]) -> None: ...


@dataclass
class TailedFile:
    path: str
    source: str
    device: int = 0
    inode: int = 0
    offset: int = 0
    handle: IO[bytes] | None = None
    partial: bytearray = field(default_factory=bytearray)
    skipping: bool = False  # the rest of an over-long line is being discarded


class LogTailer:
    def __init__(self, config: AgentConfig, sink: LineSink) -> None:
        self.sources: tuple[LogSource, ...] = config.log_files
        self.from_start = config.log_from_start
        self.state_dir = config.state_dir
        self.sink = sink
        self.log = get_logger("logtail")
        self.files: dict[str, TailedFile] = {}
        self.saved: dict[str, dict[str, int]] = {}
        self._state_loaded = False

    # ----- state -----------------------------------------------------------------------------------

    def _state_path(self) -> str:
        return os.path.join(self.state_dir, STATE_FILE)

    def load_state(self) -> None:
        self._state_loaded = True
        try:
            with open(self._state_path(), encoding="utf-8") as handle:
                raw = json.load(handle)
        except (OSError, ValueError):
            return
        if isinstance(raw, dict):
            for path, entry in raw.items():
                if isinstance(entry, dict) and all(isinstance(entry.get(k), int) for k in ("device", "inode", "offset")):
                    self.saved[path] = {k: entry[k] for k in ("device", "inode", "offset")}

    def save_state(self) -> None:
        state = dict(self.saved)
        for tailed in self.files.values():
            if tailed.handle is not None:
                # Resume at the start of an unfinished line so it is not lost across a restart.
                state[tailed.path] = {
                    "device": tailed.device,
                    "inode": tailed.inode,
                    "offset": max(0, tailed.offset - len(tailed.partial)),
                }
        try:
            os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
            os.chmod(self.state_dir, 0o700)
            tmp = self._state_path() + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(state, handle)
            os.replace(tmp, self._state_path())
        except OSError as exc:
            self.log.warning("could not save log offsets", extra={"error": str(exc)})

    # ----- discovery -------------------------------------------------------------------------------

    def expand(self, initial: bool) -> None:
        matched: set[str] = set()
        for item in self.sources:
            for path in sorted(glob.glob(item.pattern)):
                if not os.path.isfile(path):
                    continue
                matched.add(path)
                if path not in self.files:
                    tailed = TailedFile(path=path, source=item.source)
                    self.files[path] = tailed
                    self._open(tailed, initial=initial)
        for path in list(self.files):
            tailed = self.files[path]
            if path not in matched and tailed.handle is None:
                del self.files[path]

    def _open(self, tailed: TailedFile, initial: bool, rotated: bool = False) -> None:
        try:
            handle = open(tailed.path, "rb")  # kept open so a rotated file can be read to its end
            st = os.fstat(handle.fileno())
        except OSError:
            tailed.handle = None
            return
        saved = self.saved.pop(tailed.path, None)
        if rotated:
            offset = 0
        elif saved is not None and (saved["device"], saved["inode"]) == (st.st_dev, st.st_ino):
            offset = saved["offset"] if saved["offset"] <= st.st_size else 0
        elif saved is not None:
            offset = 0  # replaced while the agent was down: all of it is new
        elif initial and not self.from_start:
            offset = st.st_size
        else:
            # Created while the agent was watching (or LOG_FROM_START): every line in it is new.
            offset = 0
        handle.seek(offset)
        tailed.handle, tailed.device, tailed.inode, tailed.offset = handle, st.st_dev, st.st_ino, offset
        tailed.partial.clear()
        tailed.skipping = False

    # ----- reading ---------------------------------------------------------------------------------

    def poll(self) -> None:
        for tailed in list(self.files.values()):
            try:
                self._poll_file(tailed)
            except OSError as exc:
                self.log.warning("could not read log file", extra={"path": tailed.path, "error": str(exc)})

    def _poll_file(self, tailed: TailedFile) -> None:
        if tailed.handle is None:
            if os.path.isfile(tailed.path):
                self._open(tailed, initial=False, rotated=True)
            if tailed.handle is None:
                return
        try:
            st = os.stat(tailed.path)
        except FileNotFoundError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != (tailed.device, tailed.inode):
            # Rotated or removed: finish the old file, then start the new one from its beginning.
            self._read_available(tailed, unlimited=True)
            self._flush_partial(tailed)
            tailed.handle.close()
            tailed.handle = None
            if st is not None:
                self._open(tailed, initial=False, rotated=True)
                self._read_available(tailed)
            return
        if st.st_size < tailed.offset:
            # Truncated in place (copytruncate): the file restarts at 0.
            tailed.handle.seek(0)
            tailed.offset = 0
            tailed.partial.clear()
            tailed.skipping = False
        self._read_available(tailed)

    def _read_available(self, tailed: TailedFile, unlimited: bool = False) -> None:
        assert tailed.handle is not None
        while True:
            data = tailed.handle.read(READ_PER_POLL_BYTES)
            if not data:
                return
            tailed.offset += len(data)
            self._consume(tailed, data)
            if not unlimited:
                return

    def _consume(self, tailed: TailedFile, data: bytes) -> None:
        pieces = data.split(b"\n")
        for index, piece in enumerate(pieces):
            complete = index < len(pieces) - 1
            if tailed.skipping:
                if complete:
                    tailed.skipping = False
                continue
            tailed.partial += piece
            if complete:
                self._emit(tailed, bytes(tailed.partial))
                tailed.partial.clear()
            elif len(tailed.partial) > MAX_LINE_BYTES:
                self._emit(tailed, bytes(tailed.partial))
                tailed.partial.clear()
                tailed.skipping = True

    def _flush_partial(self, tailed: TailedFile) -> None:
        if tailed.partial:
            self._emit(tailed, bytes(tailed.partial))
            tailed.partial.clear()
        tailed.skipping = False

    def _emit(self, tailed: TailedFile, raw: bytes) -> None:
        truncated = len(raw) > MAX_LINE_BYTES
        if truncated:
            raw = raw[: utf8_complete_prefix_len(raw[:MAX_LINE_BYTES])]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        text = raw.decode("utf-8", "replace")
        line: dict[str, Any] = {
            "message": text,
            "level": detect_level(text),
            "source": tailed.source,
            "timestamp": now_iso(),
            "path": tailed.path,
        }
        if truncated:
            line["metadata"] = {"truncated": True}
        self.sink.add(line)

    # ----- loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        if not self._state_loaded:
            self.load_state()
        self.expand(initial=True)
        last_glob = last_save = time.monotonic()
        try:
            while True:
                await asyncio.sleep(POLL_INTERVAL_SECONDS)
                now = time.monotonic()
                if now - last_glob >= GLOB_INTERVAL_SECONDS:
                    self.expand(initial=False)
                    last_glob = now
                self.poll()
                if now - last_save >= SAVE_INTERVAL_SECONDS:
                    self.save_state()
                    last_save = now
        finally:
            self.save_state()
            for tailed in self.files.values():
                if tailed.handle is not None:
                    tailed.handle.close()
