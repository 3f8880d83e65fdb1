"""PTY sessions through the fake console, plus the redaction and UTF-8 helpers."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from tests.agent.conftest import AgentSocket

from sindri_console.agent.collectors import _extension_items, extensions_report, redact_command_line
from sindri_console.agent.protocol import encode, make_frame, parse
from sindri_console.agent.util import take_utf8_text, utf8_complete_prefix_len


def output_of(sock: AgentSocket, session_id: str) -> bytes:
    frames = sock.matching("terminal:output", lambda d: d["sessionId"] == session_id)
    return b"".join(base64.b64decode(f["data"]["data"]) for f in frames)


async def wait_output(sock: AgentSocket, session_id: str, needle: bytes, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while needle not in output_of(sock, session_id):
            sock.changed.clear()
            await sock.changed.wait()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_terminal_session_runs_a_shell(console, agents, make_config, monkeypatch):
    monkeypatch.setenv("SINDRI_CONSOLE_API_KEY", "test-agent-key")
    agents.start(make_config(SINDRI_AGENT_SHELL="/bin/bash"))
    sock = await console.wait_socket(1)
    await sock.send("terminal:create", {"sessionId": "s1", "cols": 80, "rows": 24})
    created = await sock.wait_for("terminal:created", lambda d: d["sessionId"] == "s1")
    assert isinstance(created["data"]["pid"], int)

    await sock.send("terminal:input", {"sessionId": "s1", "data": b64("echo $((6*7))\n")})
    await wait_output(sock, "s1", b"42")
    await sock.send("terminal:resize", {"sessionId": "s1", "cols": 120, "rows": 40})
    await sock.send("terminal:input", {"sessionId": "s1", "data": b64("stty size; echo \"[$TERM][$SINDRI_CONSOLE_API_KEY]\"\n")})
    await wait_output(sock, "s1", b"40 120")
    await wait_output(sock, "s1", b"[xterm-256color][]")
    await sock.send("terminal:input", {"sessionId": "s1", "data": b64("exit 5\n")})
    closed = await sock.wait_for("terminal:closed", lambda d: d["sessionId"] == "s1")
    assert closed["data"]["exitCode"] == 5


async def test_terminal_close_hangs_up_and_unknown_sessions(console, agents, make_config):
    agents.start(make_config(SINDRI_AGENT_SHELL="/bin/sh"))
    sock = await console.wait_socket(1)
    await sock.send("terminal:create", {"sessionId": "s2", "cols": 80, "rows": 24})
    await sock.wait_for("terminal:created", lambda d: d["sessionId"] == "s2")
    await sock.send("terminal:close", {"sessionId": "s2", "reason": "user_closed"})
    closed = (await sock.wait_for("terminal:closed", lambda d: d["sessionId"] == "s2"))["data"]
    assert closed["exitCode"] is None and closed["signal"] in ("SIGHUP", "SIGKILL")
    assert closed["reason"] == "user_closed"

    await sock.send("terminal:input", {"sessionId": "nope", "data": b64("x")})
    error = (await sock.wait_for("terminal:error", lambda d: d["sessionId"] == "nope"))["data"]
    assert error["code"] == "UNKNOWN_SESSION"


async def test_terminal_spawn_failure(console, agents, make_config):
    agents.start(make_config(SINDRI_AGENT_SHELL="/no/such/shell"))
    sock = await console.wait_socket(1)
    await sock.send("terminal:create", {"sessionId": "s3", "cols": 80, "rows": 24})
    error = (await sock.wait_for("terminal:error", lambda d: d["sessionId"] == "s3"))["data"]
    assert error["code"] == "SPAWN_FAILED"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["app", "--password=hunter2", "--port=8080"], "app --password=*** --port=8080"),
        (["app", "--token", "abc", "--verbose"], "app --token *** --verbose"),
        (["env", "DB_PASSWORD=x", "API_KEY=y", "HOME=/root"], "env DB_PASSWORD=*** API_KEY=*** HOME=/root"),
        (["tool", "--Access-Key", "AKIA", "--api-key=k"], "tool --Access-Key *** --api-key=***"),
        (["svc --secret s3cr3t --mode fast"], "svc --secret *** --mode fast"),
        (["plain", "args"], "plain args"),
    ],
)
def test_redact_command_line(args, expected):
    assert redact_command_line(args) == expected


def test_utf8_helpers():
    data = "aé€".encode()  # 1 + 2 + 3 bytes
    assert utf8_complete_prefix_len(data) == 6
    assert utf8_complete_prefix_len(data[:5]) == 3
    assert utf8_complete_prefix_len(data[:2]) == 1
    assert take_utf8_text(data, 5) == ("aé", 3)
    assert take_utf8_text(data[:5], 16, final=True) == ("aé\ufffd", 5)
    assert take_utf8_text(data[:2], 16) == ("a", 1)
    text, used = take_utf8_text(b"\xff" * 30, 16, final=True)
    assert len(text.encode()) <= 16 and used == 5


def test_frames_are_c_dialect():
    frame = make_frame("heartbeat", {"uptimeSeconds": 1}, frame_id="a-1")
    assert list(frame) == ["protocolVersion", "type", "id", "ts", "data"]
    assert parse(encode(frame))["data"] == {"uptimeSeconds": 1}
    assert parse("[1]") is None and parse("not json") is None and parse('{"data":{}}') is None
    with pytest.raises(ValueError):
        encode(make_frame("metrics", {"x": float("nan")}))


def test_extension_items_accept_the_cli_shapes():
    listed = _extension_items(
        [{"name": "python", "version": "3.12", "status": "INSTALLED", "status_datetime": "2026-01-01T00:00:00Z"},
         {"name": "node", "status": "weird"}]
    )
    assert listed[0] == {"name": "python", "version": "3.12", "status": "installed",
                         "statusSince": "2026-01-01T00:00:00Z", "error": None}
    assert listed[1]["status"] == "unknown" and listed[1]["version"] is None
    wrapped = _extension_items({"extensions": [{"name": "go", "status": "failed", "error": "boom"}]})
    assert wrapped[0]["error"] == "boom"
    mapped = _extension_items({"rust": {"version": "1.80", "status": "installing"}})
    assert mapped[0]["name"] == "rust" and mapped[0]["status"] == "installing"


async def test_extensions_report_runs_the_cli(tmp_path):
    cli = tmp_path / "sindri"
    payload: list[dict[str, Any]] = [{"name": "python", "version": "3.12", "status": "installed"}]
    cli.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "sindri 3.1.0"; exit 0; fi\n'
        f"echo '{json.dumps(payload)}'\n"
    )
    cli.chmod(0o755)
    report = await extensions_report(str(cli))
    assert report["available"] is True
    assert report["cliVersion"] == "sindri 3.1.0"
    assert report["extensions"][0]["name"] == "python"

    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\necho nope >&2\nexit 2\n")
    broken.chmod(0o755)
    report = await extensions_report(str(broken))
    assert report["available"] is False and "exited with 2" in report["reason"]
