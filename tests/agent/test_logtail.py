"""Log tailing and shipping: appended lines, rotation, offsets, long lines and the offline buffer."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from tests.agent.conftest import AgentSocket

from sindri_console.agent import logtail
from sindri_console.agent.config import load_config
from sindri_console.agent.logtail import LogShipper, LogTailer, detect_level


def shipped_lines(sock: AgentSocket) -> list[dict[str, Any]]:
    return [line for frame in sock.matching("log:batch") for line in frame["data"]["lines"]]


async def wait_line(sock: AgentSocket, needle: str, within: float = 8.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            for line in shipped_lines(sock):
                if needle in line["message"]:
                    return line
            sock.changed.clear()
            await sock.changed.wait()


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


async def test_appended_error_line_is_shipped(console, agents, make_config, tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    app_log = logs / "a.log"
    app_log.write_text("old line that was there before\n")
    agents.start(make_config(SINDRI_AGENT_LOG_FILES=f"{logs}/*.log"))
    sock = await console.wait_socket(1)
    await asyncio.sleep(0.6)  # let the tailer open the file at its end
    append(app_log, "2026-01-01 12:00:00 ERROR boom\n")
    line = await wait_line(sock, "boom")
    assert line["level"] == "error"
    assert line["source"] == "app"
    assert line["path"] == str(app_log)
    assert line["message"] == "2026-01-01 12:00:00 ERROR boom"
    assert line["timestamp"].endswith("Z")
    batch = next(f for f in sock.matching("log:batch") if line in f["data"]["lines"])
    assert batch["id"]  # batches are acknowledged frames
    assert all("old line" not in entry["message"] for entry in shipped_lines(sock))


async def test_rotation_reads_the_old_file_to_its_end(console, agents, make_config, tmp_path: Path):
    app_log = tmp_path / "svc.log"
    app_log.write_text("")
    agents.start(make_config(SINDRI_AGENT_LOG_FILES=f"{app_log}=system"))
    sock = await console.wait_socket(1)
    await asyncio.sleep(0.6)
    append(app_log, "before rotation\n")
    await wait_line(sock, "before rotation")
    os.rename(app_log, tmp_path / "svc.log.1")
    append(tmp_path / "svc.log.1", "late write to the old file\n")
    app_log.write_text('{"level":"warning","msg":"fresh file"}\n')
    late = await wait_line(sock, "late write")
    fresh = await wait_line(sock, "fresh file")
    assert late["source"] == "system"
    assert fresh["level"] == "warning"
    messages = [line["message"] for line in shipped_lines(sock)]
    assert messages.index(late["message"]) < messages.index(fresh["message"])


async def test_truncation_restarts_at_zero(console, agents, make_config, tmp_path: Path):
    app_log = tmp_path / "t.log"
    app_log.write_text("")
    agents.start(make_config(SINDRI_AGENT_LOG_FILES=str(app_log)))
    sock = await console.wait_socket(1)
    await asyncio.sleep(0.6)
    append(app_log, "a fairly long first line before the truncation\n")
    await wait_line(sock, "first line")
    app_log.write_text("short\n")
    await wait_line(sock, "short")


def _tailer(tmp_path: Path, pattern: str, **extra: str) -> tuple[LogTailer, list[dict[str, Any]]]:
    env = {
        "SINDRI_CONSOLE_URL": "http://127.0.0.1:1",
        "SINDRI_CONSOLE_API_KEY": "k",
        "SINDRI_AGENT_LOG_FILES": pattern,
        "SINDRI_AGENT_STATE_DIR": str(tmp_path / "state"),
        **extra,
    }
    lines: list[dict[str, Any]] = []

    class Sink:
        def add(self, line: dict[str, Any]) -> None:
            lines.append(line)

    return LogTailer(load_config(env), Sink()), lines


def test_offsets_are_persisted_and_resumed(tmp_path: Path):
    path = tmp_path / "p.log"
    path.write_text("existing\n")
    tailer, lines = _tailer(tmp_path, str(path))
    tailer.load_state()
    tailer.expand(initial=True)
    append(path, "one\npartial")
    tailer.poll()
    assert [line["message"] for line in lines] == ["one"]
    tailer.save_state()

    state_dir = tmp_path / "state"
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    saved = json.loads((state_dir / logtail.STATE_FILE).read_text())[str(path)]
    st = path.stat()
    assert saved == {"device": st.st_dev, "inode": st.st_ino, "offset": len("existing\none\n")}

    append(path, " line\ntwo\n")
    again, more = _tailer(tmp_path, str(path))
    again.load_state()
    again.expand(initial=True)
    again.poll()
    assert [line["message"] for line in more] == ["partial line", "two"]


def test_from_start_and_long_lines(tmp_path: Path):
    path = tmp_path / "long.log"
    path.write_text("x" * (20 * 1024) + "\nDEBUG short\n")
    tailer, lines = _tailer(tmp_path, str(path), SINDRI_AGENT_LOG_FROM_START="true")
    tailer.expand(initial=True)
    tailer.poll()
    assert len(lines) == 2
    assert len(lines[0]["message"]) == 16 * 1024
    assert lines[0]["metadata"] == {"truncated": True}
    assert lines[1] == {**lines[1], "message": "DEBUG short", "level": "debug", "source": "app"}
    assert "metadata" not in lines[1]


def test_files_created_later_are_read_from_the_start(tmp_path: Path):
    tailer, lines = _tailer(tmp_path, f"{tmp_path}/*.log")
    tailer.expand(initial=True)
    (tmp_path / "new.log").write_text("first\nsecond\n")
    tailer.expand(initial=False)
    tailer.poll()
    assert [line["message"] for line in lines] == ["first", "second"]


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("2026-01-01 ERROR boom", "error"),
        ("[warn] disk almost full", "warn"),
        ('{"severity":"CRITICAL","msg":"x"}', "critical"),
        ('{"level":"debug"}', "debug"),
        ("nothing to see", "info"),
        ("x" * 70 + " ERROR too far", "info"),
        ("E: err: failed", "err"),
    ],
)
def test_detect_level(text, level):
    assert detect_level(text) == level


class FakeOutbox:
    def __init__(self) -> None:
        self.frames: dict[str, dict[str, Any]] = {}

    def remove(self, frame_id: str) -> None:
        self.frames.pop(frame_id, None)

    def __contains__(self, frame_id: object) -> bool:
        return frame_id in self.frames


class FakeHost:
    def __init__(self) -> None:
        self.connected = False
        self.outbox = FakeOutbox()
        self.sent: list[dict[str, Any]] = []
        self.counter = 0

    async def send_reliable(self, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        self.counter += 1
        frame = {"type": type_, "id": f"f{self.counter}", "data": data}
        self.outbox.frames[frame["id"]] = frame
        self.sent.append(frame)
        return frame


async def test_offline_buffer_drops_oldest_and_reports_it():
    host = FakeHost()
    shipper = LogShipper(host)
    for n in range(10_250):
        shipper.add({"message": f"line {n}", "level": "info", "source": "app"})
    assert len(shipper.pending) == 10_000
    assert shipper.pending[0][0]["message"] == "line 250"
    assert shipper.dropped == 250

    host.connected = True
    shipper.on_reconnect()
    await shipper.flush_now()
    first = host.sent[0]["data"]["lines"][0]
    assert first["message"] == "[sindri-console-agent] dropped 250 log lines while disconnected"
    assert first["level"] == "warn" and first["source"] == "agent"
    assert all(len(frame["data"]["lines"]) <= 500 for frame in host.sent)
    assert sum(len(frame["data"]["lines"]) for frame in host.sent) == 10_001
    shipper.on_ack(host.sent[0]["id"])
    assert host.sent[0]["id"] not in shipper.unacked


async def test_offline_buffer_respects_the_byte_cap():
    host = FakeHost()
    shipper = LogShipper(host)
    big = "y" * (64 * 1024)
    for _ in range(200):
        shipper.add({"message": big, "level": "info", "source": "app"})
    assert shipper.pending_bytes <= logtail.BUFFER_MAX_BYTES
    assert shipper.dropped > 0


async def test_unacknowledged_batches_count_towards_the_buffer():
    host = FakeHost()
    host.connected = True
    shipper = LogShipper(host)
    for n in range(600):
        shipper.add({"message": f"a{n}", "level": "info", "source": "app"})
    await shipper.flush_now()
    assert len(shipper.unacked) == 2
    host.connected = False
    for n in range(9_900):
        shipper.add({"message": f"b{n}", "level": "info", "source": "app"})
    # 600 unacknowledged + 9 900 pending > 10 000: the oldest batch (500 lines) goes first.
    assert shipper.dropped == 500
    assert "f1" not in host.outbox
