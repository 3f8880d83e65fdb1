"""command:dispatch → ack / progress / result, end to end through the fake console."""

from __future__ import annotations

import asyncio
import itertools
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.agent.conftest import AgentSocket

from sindri_console.agent.commands import InvalidDispatch, StreamCapture, parse_dispatch

_ids = itertools.count(1)


async def run(sock: AgentSocket, within: float = 20.0, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    command_id = fields.pop("commandId", None) or f"cmd-{next(_ids)}"
    data = {"commandId": command_id, "kind": "exec", **fields}
    await sock.send("command:dispatch", data)
    result = await sock.wait_for("command:result", lambda d: d["commandId"] == command_id, within=within)
    acks = sock.matching("command:ack", lambda d: d["commandId"] == command_id)
    return (acks[0]["data"] if acks else {}), result["data"]


async def ack_of(sock: AgentSocket, **fields: Any) -> dict[str, Any]:
    command_id = fields.pop("commandId", None) or f"cmd-{next(_ids)}"
    await sock.send("command:dispatch", {"commandId": command_id, "kind": "exec", **fields})
    return (await sock.wait_for("command:ack", lambda d: d["commandId"] == command_id))["data"]


@pytest.fixture
async def sock(console, agents, make_config, monkeypatch):
    # The agent's own key is in its process environment, as in production.
    monkeypatch.setenv("SINDRI_CONSOLE_API_KEY", "test-agent-key")
    monkeypatch.setenv("SINDRI_AGENT_SOMETHING", "agent-only")
    agents.start(make_config())
    return await console.wait_socket(1)


async def test_echo_succeeds_with_ack_and_result(sock):
    ack, result = await run(sock, command="echo", args=["hi"])
    assert ack["accepted"] is True and isinstance(ack["pid"], int) and ack["startedAt"].endswith("Z")
    assert result["exitCode"] == 0
    assert result["stdout"] == "hi\n" and result["stderr"] == ""
    assert result["stdoutBytes"] == 3 and result["stdoutTruncated"] is False
    assert result["timedOut"] is False and result["cancelled"] is False and result["error"] is None
    assert result["signal"] is None
    assert result["durationMs"] >= 0 and result["finishedAt"] >= result["startedAt"]
    frames = sock.matching("command:result")
    assert frames[-1]["id"]  # results carry a frame id so they are acknowledged


async def test_exit_code_and_stderr(sock):
    _, result = await run(sock, command="/bin/sh", args=["-c", "echo out; echo err >&2; exit 3"])
    assert result["exitCode"] == 3
    assert result["stdout"] == "out\n" and result["stderr"] == "err\n"


async def test_child_environment_is_sanitised_and_extended(sock):
    _, result = await run(
        sock,
        command="/bin/sh",
        args=["-c", 'echo "[$SINDRI_CONSOLE_API_KEY][$SINDRI_AGENT_SOMETHING][$GREETING]"'],
        env={"GREETING": "hello"},
    )
    assert result["stdout"] == "[][][hello]\n"


async def test_working_dir_and_stdin(sock, tmp_path: Path):
    _, result = await run(sock, command="pwd", workingDir=str(tmp_path))
    assert result["stdout"] == f"{tmp_path}\n"
    _, result = await run(sock, command="cat", stdin="line one\nline two\n")
    assert result["stdout"] == "line one\nline two\n"
    # Without stdin the child reads /dev/null and ends at once.
    _, result = await run(sock, command="cat")
    assert result["exitCode"] == 0 and result["stdout"] == ""


async def test_shell_true_runs_through_sh(sock):
    _, result = await run(sock, command="echo $((6*7)) | tr 4 X", shell=True)
    assert result["stdout"] == "X2\n"


async def test_script_kind_runs_from_a_private_file(sock):
    content = 'import os, sys\nd = os.path.dirname(sys.argv[0])\nprint(oct(os.stat(d).st_mode & 0o777), os.path.basename(sys.argv[0]))\n'
    _, result = await run(sock, kind="script", script={"interpreter": "python3", "content": content})
    assert result["exitCode"] == 0, result
    assert result["stdout"] == "0o700 script\n"


async def test_script_directory_is_removed(sock):
    _, result = await run(sock, kind="script", script={"interpreter": "/bin/sh", "content": "echo $0"})
    path = result["stdout"].strip()
    assert path.endswith("/script")
    assert not Path(path).parent.exists()


async def test_timeout_kills_the_whole_group(sock):
    _, result = await run(sock, command="/bin/sh", args=["-c", "sleep 30 & sleep 30; echo never"], timeoutMs=500)
    ack = sock.matching("command:ack", lambda d: d["commandId"] == result["commandId"])[0]["data"]
    assert result["timedOut"] is True
    assert result["exitCode"] is None
    assert result["signal"] in ("SIGTERM", "SIGKILL")
    assert result["stdout"] == ""
    assert result["durationMs"] < 6000
    leftovers = [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == ack["pid"]]
    assert leftovers == []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


async def test_output_is_capped_with_totals(sock):
    _, result = await run(sock, command="/bin/sh", args=["-c", "yes | head -c 2000000"], within=30)
    assert result["exitCode"] == 0
    assert len(result["stdout"].encode()) == 1_048_576
    assert result["stdoutTruncated"] is True
    assert result["stdoutBytes"] == 2_000_000
    assert result["stderrTruncated"] is False


async def test_output_limit_from_dispatch_cuts_on_utf8_boundary(sock):
    _, result = await run(sock, command="printf", args=["aé€"], outputLimitBytes=5)
    # a(1) é(2) €(3): the 5-byte cut would split €, so only "aé" is kept.
    assert result["stdout"] == "aé"
    assert result["stdoutBytes"] == 6 and result["stdoutTruncated"] is True


async def test_progress_frames_are_sent(sock):
    _, result = await run(sock, command="/bin/sh", args=["-c", "echo one; sleep 0.4; echo two"])
    progress = sock.matching("command:progress", lambda d: d["commandId"] == result["commandId"])
    assert progress, "expected live output"
    assert "".join(p["data"]["data"] for p in progress).startswith("one\n")
    assert all(p["data"]["stream"] == "stdout" for p in progress)
    assert [p["data"]["seq"] for p in progress] == list(range(1, len(progress) + 1))


async def test_cancel_stops_a_running_command(sock):
    await sock.send("command:dispatch", {"commandId": "cmd-cancel", "kind": "exec", "command": "sleep", "args": ["30"]})
    await sock.wait_for("command:ack", lambda d: d["commandId"] == "cmd-cancel")
    await sock.send("command:cancel", {"commandId": "cmd-cancel", "reason": "user"})
    result = (await sock.wait_for("command:result", lambda d: d["commandId"] == "cmd-cancel"))["data"]
    assert result["cancelled"] is True and result["timedOut"] is False
    assert result["exitCode"] is None and result["signal"] == "SIGTERM"


async def test_rejections(sock, tmp_path: Path):
    past = (datetime.now(tz=UTC) - timedelta(seconds=5)).isoformat()
    ack = await ack_of(sock, command="echo", expiresAt=past)
    assert ack["accepted"] is False and ack["code"] == "EXPIRED"
    ack = await ack_of(sock, command="echo", workingDir=str(tmp_path / "missing"))
    assert ack["accepted"] is False and ack["code"] == "BAD_WORKDIR"
    ack = await ack_of(sock, command="echo", args=["a"], shell=True)
    assert ack["accepted"] is False and ack["code"] == "INVALID"


async def test_spawn_failure_is_a_result_with_error(sock):
    _, result = await run(sock, command="/no/such/program")
    assert result["exitCode"] is None
    assert "Could not start" in result["error"]


async def test_duplicate_dispatch_is_not_run_again(sock, tmp_path: Path):
    marker = tmp_path / "runs"
    data = {"commandId": "cmd-dup", "kind": "exec", "command": "/bin/sh", "args": ["-c", f"echo x >> {marker}; echo done"]}
    await sock.send("command:dispatch", data)
    first = await sock.wait_for("command:result", lambda d: d["commandId"] == "cmd-dup")
    await sock.send("command:dispatch", data)
    second = await sock.wait_for("command:result", lambda d: d["commandId"] == "cmd-dup", count=2)
    assert second["id"] == first["id"]
    assert len(sock.matching("command:ack", lambda d: d["commandId"] == "cmd-dup")) == 2
    assert marker.read_text() == "x\n"


async def test_disabled_commands_are_refused(console, agents, make_config):
    agents.start(make_config(SINDRI_AGENT_COMMANDS="false"))
    sock = await console.wait_socket(1)
    ack = await ack_of(sock, command="echo")
    assert ack["accepted"] is False and ack["code"] == "DISABLED"


async def test_queue_then_busy(console, agents, make_config):
    agents.start(make_config(SINDRI_AGENT_MAX_COMMANDS="1"))
    sock = await console.wait_socket(1)
    await sock.send("command:dispatch", {"commandId": "q-run", "kind": "exec", "command": "sleep", "args": ["30"]})
    await sock.wait_for("command:ack", lambda d: d["commandId"] == "q-run")
    for n in range(100):
        await sock.send("command:dispatch", {"commandId": f"q-{n}", "kind": "exec", "command": "echo", "args": [str(n)]})
    await sock.send("command:dispatch", {"commandId": "q-over", "kind": "exec", "command": "echo"})
    busy = (await sock.wait_for("command:ack", lambda d: d["commandId"] == "q-over"))["data"]
    assert busy["accepted"] is False and busy["code"] == "BUSY"
    assert sock.matching("command:ack", lambda d: d["commandId"] == "q-0") == []  # waiting in the FIFO
    await sock.send("command:cancel", {"commandId": "q-run", "reason": "test"})
    # Freed slot: the FIFO runs in order.
    first = await sock.wait_for("command:result", lambda d: d["commandId"] == "q-0")
    assert first["data"]["stdout"] == "0\n"
    last = await sock.wait_for("command:result", lambda d: d["commandId"] == "q-99", within=30)
    assert last["data"]["stdout"] == "99\n"
    order = [f["data"]["commandId"] for f in sock.matching("command:ack") if f["data"]["commandId"].startswith("q-")]
    numbered = [int(c[2:]) for c in order if c[2:].isdigit()]
    assert numbered == sorted(numbered)


async def test_cancel_of_a_queued_command(console, agents, make_config):
    agents.start(make_config(SINDRI_AGENT_MAX_COMMANDS="1"))
    sock = await console.wait_socket(1)
    await sock.send("command:dispatch", {"commandId": "c-run", "kind": "exec", "command": "sleep", "args": ["30"]})
    await sock.send("command:dispatch", {"commandId": "c-wait", "kind": "exec", "command": "echo"})
    await sock.wait_for("command:ack", lambda d: d["commandId"] == "c-run")
    await sock.send("command:cancel", {"commandId": "c-wait", "reason": "user"})
    result = (await sock.wait_for("command:result", lambda d: d["commandId"] == "c-wait"))["data"]
    assert result["cancelled"] is True and result["startedAt"] is None
    await sock.send("command:cancel", {"commandId": "c-run", "reason": "user"})
    await sock.wait_for("command:result", lambda d: d["commandId"] == "c-run")


def test_parse_dispatch_validates_fields():
    spec = parse_dispatch(
        {"commandId": "x", "kind": "exec", "command": "ls", "args": ["-l"], "outputLimitBytes": 5_000_000, "timeoutMs": 1500},
        1_048_576,
    )
    assert spec.argv == ["ls", "-l"] and spec.output_limit == 1_048_576 and spec.timeout_seconds == 1.5
    with pytest.raises(InvalidDispatch):
        parse_dispatch({"commandId": "x", "kind": "exec", "command": "ls", "env": {"1BAD": "v"}}, 10)
    with pytest.raises(InvalidDispatch):
        parse_dispatch({"commandId": "x", "kind": "other", "command": "ls"}, 10)
    with pytest.raises(InvalidDispatch):
        parse_dispatch({"commandId": "x", "kind": "exec", "command": "ls", "expiresAt": "2026-01-01T00:00:00"}, 10)


def test_stream_capture_counts_everything_and_keeps_the_head():
    capture = StreamCapture(limit=4)
    for chunk in (b"ab", b"cdef", b"gh"):
        capture.feed(chunk)
    assert capture.total == 8 and capture.truncated
    assert capture.text() == "abcd"
    assert bytes(capture.pending) == b"abcd"


async def test_shutdown_reports_running_commands(console, agents, make_config):
    running = agents.start(make_config())
    sock = await console.wait_socket(1)
    await sock.send("command:dispatch", {"commandId": "s-run", "kind": "exec", "command": "sleep", "args": ["30"]})
    await sock.wait_for("command:ack", lambda d: d["commandId"] == "s-run")
    running.agent.request_stop()
    assert await asyncio.wait_for(running.task, timeout=15) == 0
    result = sock.matching("command:result", lambda d: d["commandId"] == "s-run")[0]["data"]
    assert result["exitCode"] is None and "shut down" in result["error"]
    await asyncio.wait_for(sock.closed.wait(), timeout=5)
    assert sock.close_code == 1000 and sock.close_reason == "agent shutdown"
