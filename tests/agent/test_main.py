"""Configuration, the command line, and the real process's shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from tests.agent.conftest import API_KEY, agent_env

from sindri_console import __version__
from sindri_console.agent.config import ConfigError, load_config
from sindri_console.agent.main import main

SRC = str(Path(__file__).resolve().parents[2] / "src")


def base_env(**extra: str) -> dict[str, str]:
    env = {"SINDRI_CONSOLE_URL": "http://127.0.0.1:3001", "SINDRI_CONSOLE_API_KEY": "secret-key-value", "HOME": "/home/x"}
    env.update(extra)
    return env


def test_defaults():
    config = load_config(base_env())
    assert config.console_url == "http://127.0.0.1:3001"
    assert config.ws_url == "ws://127.0.0.1:3001"
    assert config.heartbeat_seconds == 30 and config.metrics_seconds == 60
    assert config.processes_seconds == 60 and config.extensions_seconds == 300
    assert config.max_commands == 8 and config.max_output_bytes == 1_048_576
    assert config.backoff_max == 60 and config.stable_after == 60
    assert config.commands_enabled and config.terminal_enabled and not config.log_from_start
    assert config.state_dir == "/home/x/.local/state/sindri-console-agent"
    assert config.sindri_bin == "sindri"
    assert config.instance_id  # hostname when SINDRI_INSTANCE_ID is unset


def test_urls_keys_tags_and_log_files(tmp_path: Path):
    key_file = tmp_path / "key"
    key_file.write_text("ak_from_file\n")
    config = load_config(
        {
            "SINDRI_CONSOLE_URL": "https://console.example.com/base/",
            "SINDRI_CONSOLE_API_KEY_FILE": str(key_file),
            "SINDRI_AGENT_TAGS": " a = 1 ,b=2,nopair, c=x=y",
            "SINDRI_AGENT_LOG_FILES": "/var/log/app/*.log=App, /var/log/syslog=system,/tmp/x.log",
            "SINDRI_PROVIDER": "GCE",
            "XDG_STATE_HOME": "/state",
        }
    )
    assert config.ws_url == "wss://console.example.com/base"
    assert config.api_key == "ak_from_file"
    assert config.tags == {"a": "1", "b": "2", "c": "x=y"}
    assert [(s.pattern, s.source) for s in config.log_files] == [
        ("/var/log/app/*.log", "app"),
        ("/var/log/syslog", "system"),
        ("/tmp/x.log", "app"),
    ]
    assert config.provider == "gcp"
    assert config.state_dir == "/state/sindri-console-agent"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SINDRI_AGENT_HEARTBEAT", "0.1"),
        ("SINDRI_AGENT_METRICS", "abc"),
        ("SINDRI_AGENT_PROCESSES", "0"),
        ("SINDRI_AGENT_BACKOFF_MAX", "-3"),
        ("SINDRI_AGENT_STABLE_AFTER", "nan"),
        ("SINDRI_AGENT_COMMANDS", "maybe"),
        ("SINDRI_AGENT_MAX_COMMANDS", "0"),
        ("SINDRI_LOG_LEVEL", "loud"),
        ("SINDRI_CONSOLE_URL", "ftp://x"),
        ("SINDRI_CONSOLE_URL", "http://console.example.com"),
    ],
)
def test_bad_values_name_the_variable(variable, value):
    with pytest.raises(ConfigError) as caught:
        load_config(base_env(**{variable: value}))
    assert caught.value.variable == variable
    assert variable in str(caught.value)


def test_http_to_remote_host_needs_opt_in():
    config = load_config(base_env(SINDRI_CONSOLE_URL="http://console.example.com", SINDRI_CONSOLE_ALLOW_HTTP="true"))
    assert config.ws_url == "ws://console.example.com"


def test_unreadable_key_files_are_config_errors(tmp_path: Path):
    not_utf8 = tmp_path / "latin1.key"
    not_utf8.write_bytes(b"caf\xe9-key")
    for path in (not_utf8, tmp_path / "missing.key"):
        with pytest.raises(ConfigError) as caught:
            load_config(base_env(SINDRI_CONSOLE_API_KEY_FILE=str(path)))
        assert caught.value.variable == "SINDRI_CONSOLE_API_KEY_FILE"
        assert "cannot be read" in str(caught.value)


def test_missing_key_is_an_error():
    with pytest.raises(ConfigError) as caught:
        load_config({"SINDRI_CONSOLE_URL": "http://localhost:3001"})
    assert caught.value.variable == "SINDRI_CONSOLE_API_KEY"


def test_version_flag(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sindri-console-agent {__version__}"


def test_print_config_redacts_the_key(capsys, monkeypatch):
    for name, value in base_env().items():
        monkeypatch.setenv(name, value)
    assert main(["--print-config"]) == 0
    out = capsys.readouterr().out
    assert "secret-key-value" not in out
    printed = json.loads(out)
    assert printed["api_key"] == "***redacted***"
    assert printed["console_url"] == "http://127.0.0.1:3001"


def test_bad_configuration_exits_78(capsys, monkeypatch):
    for name, value in base_env(SINDRI_AGENT_HEARTBEAT="fast").items():
        monkeypatch.setenv(name, value)
    assert main([]) == 78
    assert "SINDRI_AGENT_HEARTBEAT" in capsys.readouterr().err


async def _spawn_agent(env: dict[str, str]) -> asyncio.subprocess.Process:
    full = {**env, "PYTHONPATH": SRC}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sindri_console.agent.main",
        env=full, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def _finish(proc: asyncio.subprocess.Process, within: float) -> tuple[int, bytes]:
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, err


async def test_sigterm_closes_with_1000_and_exits_0(console, tmp_path: Path):
    proc = await _spawn_agent(agent_env(console, tmp_path))
    try:
        sock = await console.wait_socket(1, within=20)
        await sock.wait_for("heartbeat", within=5)
        proc.send_signal(signal.SIGTERM)
        code, err = await _finish(proc, within=15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, err.decode()
    await asyncio.wait_for(sock.closed.wait(), timeout=5)
    assert sock.close_code == 1000
    assert sock.close_reason == "agent shutdown"
    for line in err.decode().splitlines():
        entry = json.loads(line)  # every log line is one JSON object
        assert API_KEY not in line
        assert {"ts", "level", "msg"} <= set(entry)


async def test_wrong_key_exits_78_and_logs_the_message(console, tmp_path: Path):
    console.registration_responses.append(
        (401, {"error": "Unauthorized", "message": "Invalid API key", "statusCode": 401})
    )
    proc = await _spawn_agent(agent_env(console, tmp_path, SINDRI_CONSOLE_API_KEY="wrong"))
    code, err = await _finish(proc, within=20)
    assert code == 78
    assert "Invalid API key" in err.decode()


async def test_sigint_while_reconnecting_exits_0(tmp_path: Path):
    # Nothing listens on this port: the agent is in its retry loop when the signal arrives.
    env = {
        "SINDRI_CONSOLE_URL": "http://127.0.0.1:9",
        "SINDRI_CONSOLE_API_KEY": API_KEY,
        "SINDRI_AGENT_STATE_DIR": str(tmp_path / "state"),
        "SINDRI_BIN_PATH": str(tmp_path / "none"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    proc = await _spawn_agent(env)
    await asyncio.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    code, err = await _finish(proc, within=15)
    assert code == 0, err.decode()
