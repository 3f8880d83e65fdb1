"""Registration, hello/welcome, periodic frames, reconnects and the outbox against a fake console."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from tests.agent.conftest import API_KEY, INSTANCE_DB_ID

from sindri_console import __version__
from sindri_console.agent import connection
from sindri_console.agent.connection import Backoff


async def test_registers_then_says_hello_with_capabilities(console, agents, make_config):
    agents.start(make_config())
    sock = await console.wait_socket(1)

    assert len(console.registrations) == 1
    registration = console.registrations[0]
    assert registration["path"] == "/api/v1/instances"
    assert registration["headers"]["authorization"] == f"Bearer {API_KEY}"
    body = registration["body"]
    assert body["instanceId"] == "agent-test"
    assert body["provider"] == "kubernetes"  # alias k8s normalised
    assert body["region"] == "eu-west-1"
    assert body["tags"] == {"env": "test", "team": "platform"}
    assert body["agentVersion"] == __version__
    assert body["os"] == "linux" and body["arch"] and body["hostname"]
    assert body["timestamp"].endswith("Z")
    assert "instance_id" not in body  # camelCase body

    assert sock.headers["authorization"] == f"Bearer {API_KEY}"
    assert sock.headers["x-instance-id"] == INSTANCE_DB_ID
    assert sock.subprotocol == "sindri-agent.v1"
    hello = sock.hello
    assert hello["type"] == "hello" and hello["protocolVersion"] == "1.0" and hello["ts"].endswith("Z")
    data = hello["data"]
    assert data["instanceId"] == INSTANCE_DB_ID
    assert data["agentInstanceId"] == "agent-test"
    assert data["agentName"] == "sindri-console-agent"
    assert data["agentVersion"] == __version__
    assert data["protocolVersion"] == "1.0"
    assert set(data["capabilities"]) == {
        "heartbeat", "metrics", "processes", "extensions", "logs", "packages", "config", "commands", "scripts",
        "terminal",
    }
    assert data["intervals"]["heartbeatSeconds"] == 0.5
    assert data["inFlightCommands"] == []
    assert data["limits"]["maxConcurrentCommands"] == 8
    assert data["limits"]["maxOutputBytes"] == 1_048_576
    assert isinstance(data["pid"], int)


async def test_capabilities_follow_the_switches(console, agents, make_config):
    agents.start(make_config(SINDRI_AGENT_COMMANDS="false", SINDRI_AGENT_TERMINAL="false"))
    sock = await console.wait_socket(1)
    assert set(sock.hello["data"]["capabilities"]) == {
        "heartbeat", "metrics", "processes", "extensions", "logs", "packages", "config",
    }
    assert sock.hello["data"]["limits"]["maxTerminals"] == 0


async def test_heartbeat_metrics_and_reports(console, agents, make_config):
    agents.start(make_config())
    sock = await console.wait_socket(1)

    first = await sock.wait_for("heartbeat", within=3)
    hb = first["data"]
    assert hb["timestamp"].endswith("Z")
    assert hb["uptimeSeconds"] >= 0 and hb["systemUptimeSeconds"] > 0
    assert 0 <= hb["cpuPercent"] <= 100
    assert hb["memoryTotalBytes"] > 0 and hb["memoryUsedBytes"] > 0
    assert hb["diskTotalBytes"] > 0
    assert "id" not in first  # heartbeats are not acknowledged
    await sock.wait_for("heartbeat", count=3, within=5)

    metrics = (await sock.wait_for("metrics", within=5))["data"]
    assert 0 <= metrics["cpu"]["usagePercent"] <= 100
    assert metrics["cpu"]["coreCount"] >= 1
    assert len(metrics["cpu"]["perCore"]) >= 1
    assert "stealPercent" in metrics["cpu"]
    assert metrics["memory"]["totalBytes"] > 0 and metrics["memory"]["usedBytes"] > 0
    assert {"swapTotalBytes", "swapUsedBytes", "cachedBytes", "freeBytes"} <= set(metrics["memory"])
    assert isinstance(metrics["disk"], list)
    for disk in metrics["disk"]:
        assert {"mountPoint", "device", "fsType", "totalBytes", "usedBytes", "freeBytes", "usagePercent"} <= set(disk)
    assert {"bytesSent", "bytesRecv", "packetsSent", "packetsRecv"} == set(metrics["network"])

    processes = (await sock.wait_for("processes:report", within=5))["data"]
    assert 0 < len(processes["processes"]) <= 100
    assert processes["totalCount"] >= len(processes["processes"])
    item = processes["processes"][0]
    assert {"pid", "ppid", "name", "username", "status", "cpuPercent", "memoryPercent", "memoryRssBytes",
            "createTime", "command"} <= set(item)
    cpu = [p["cpuPercent"] for p in processes["processes"]]
    assert cpu == sorted(cpu, reverse=True)

    extensions = (await sock.wait_for("extensions:report", within=5))["data"]
    assert extensions["available"] is False
    assert "not found" in extensions["reason"]
    assert extensions["extensions"] == []


async def test_report_request_answers_with_request_id(console, agents, make_config, tmp_path):
    agents.start(make_config(SINDRI_AGENT_PROCESSES="3600", SINDRI_AGENT_EXTENSIONS="3600",
                             SINDRI_AGENT_NPM_ROOTS=str(tmp_path)))
    sock = await console.wait_socket(1)
    await sock.send("report:request", {"requestId": "req-7", "kinds": ["processes", "extensions", "packages", "config"]})
    report = await sock.wait_for("processes:report", lambda d: d.get("requestId") == "req-7")
    assert report["data"]["processes"]
    await sock.wait_for("extensions:report", lambda d: d.get("requestId") == "req-7")
    config = (await sock.wait_for("config:report", lambda d: d.get("requestId") == "req-7"))["data"]
    assert config["provider"] == "kubernetes" and config["region"] == "eu-west-1"
    assert all(value.startswith("sha256:") and len(value) == 71 for value in config["env"].values())
    assert not any(key.startswith(("SINDRI_CONSOLE_", "SINDRI_AGENT_")) for key in config["env"])
    assert config["resources"]["cpuCount"] >= 1 and config["resources"]["memoryTotalBytes"] > 0
    assert config["network"]["listeningPorts"] == sorted(config["network"]["listeningPorts"])
    assert config["os"]["kernel"]
    packages = (await sock.wait_for("packages:report", lambda d: d.get("requestId") == "req-7", within=60))["data"]
    assert packages["osRelease"]["id"]
    assert packages["collectors"] and all({"ecosystem", "tool", "available", "count", "durationMs"} <= set(c)
                                          for c in packages["collectors"])
    assert packages["truncated"] is False
    keys = [(p["ecosystem"], p["name"], p["version"]) for p in packages["packages"]]
    assert len(keys) == len(set(keys))
    await sock.send("report:request", {"requestId": "req-8", "kinds": ["llm_usage"]})
    error = await sock.wait_for("error", lambda d: d.get("refId") == "req-8")
    assert "llm_usage" in error["data"]["message"]


async def test_app_ping_gets_pong_and_unknown_type_gets_error(console, agents, make_config):
    agents.start(make_config())
    sock = await console.wait_socket(1)
    await sock.send("ping", {}, frame_id="p-1")
    pong = await sock.wait_for("pong")
    assert any(f.get("replyTo") == "p-1" for f in sock.matching("pong"))
    assert pong["data"] == {}
    await sock.send("mystery:frame", {}, frame_id="m-1")
    error = await sock.wait_for("error", lambda d: d.get("code") == "UNKNOWN_TYPE")
    assert error["data"]["refId"] == "m-1"


async def test_reconnects_with_backoff_after_server_close(console, agents, make_config):
    agents.start(make_config(SINDRI_AGENT_BACKOFF_MAX="0.4"))
    first = await console.wait_socket(1)
    closed_at = time.monotonic()
    await first.ws.close(1011, "Internal error")
    second = await console.wait_socket(2)
    gap = time.monotonic() - closed_at
    # First wait is min(1 s, cap 0.4 s) × a factor in [0.5, 1.0].
    assert 0.15 <= gap < 3.0
    assert second.hello["type"] == "hello"
    assert len(console.registrations) == 1  # a plain drop does not register again
    await second.wait_for("heartbeat", within=3)


async def test_unknown_instance_close_registers_again(console, agents, make_config):
    agents.start(make_config())
    first = await console.wait_socket(1)
    await first.ws.close(4404, "Unknown instance 'x'; register it with POST /api/v1/instances")
    await console.wait_socket(2)
    assert len(console.registrations) == 2


async def test_replaced_connection_waits_the_maximum_backoff(console, agents, make_config):
    agents.start(make_config(SINDRI_AGENT_BACKOFF_MAX="1.0"))
    first = await console.wait_socket(1)
    closed_at = time.monotonic()
    await first.ws.close(4409, "Replaced by a newer connection")
    await console.wait_socket(2)
    assert time.monotonic() - closed_at >= 0.95


async def test_rejected_credential_at_connect_exits_78(console, agents, make_config):
    console.hello_close_codes.append((4401, "Invalid or missing agent credential"))
    running = agents.start(make_config())
    assert await asyncio.wait_for(running.task, timeout=10) == 78


async def test_registration_refused_exits_78(console, agents, make_config):
    console.registration_responses.append(
        (401, {"error": "Unauthorized", "message": "Invalid API key", "statusCode": 401})
    )
    running = agents.start(make_config())
    assert await asyncio.wait_for(running.task, timeout=10) == 78
    assert console.sockets == []


async def test_registration_retries_on_5xx(console, agents, make_config):
    console.registration_responses.append((503, {"error": "Service Unavailable", "message": "db down", "statusCode": 503}))
    agents.start(make_config())
    await console.wait_socket(1)
    assert len(console.registrations) == 2


async def test_outbox_is_resent_after_reconnect(console, agents, make_config):
    console.auto_ack = False
    agents.start(make_config())
    first = await console.wait_socket(1)
    await first.send("command:dispatch", {"commandId": "cmd-outbox", "kind": "exec", "command": "echo", "args": ["kept"]})
    result = await first.wait_for("command:result", lambda d: d["commandId"] == "cmd-outbox")
    ack = await first.wait_for("command:ack", lambda d: d["commandId"] == "cmd-outbox")
    assert result["id"] and ack["id"]
    await first.ws.close(1011, "Internal error")

    second = await console.wait_socket(2)
    assert "cmd-outbox" in second.hello["data"]["inFlightCommands"]
    again = await second.wait_for("command:result", lambda d: d["commandId"] == "cmd-outbox")
    assert again["id"] == result["id"]
    assert again["data"]["stdout"] == "kept\n"
    ack_again = await second.wait_for("command:ack", lambda d: d["commandId"] == "cmd-outbox")
    assert ack_again["id"] == ack["id"]

    # Acknowledged frames leave the outbox: the third connection gets nothing again.
    await second.send("ack", {"id": result["id"]})
    await second.send("ack", {"id": ack["id"]})
    await asyncio.sleep(0.3)
    await second.ws.close(1011, "Internal error")
    third = await console.wait_socket(3)
    assert third.hello["data"]["inFlightCommands"] == []
    await third.wait_for("heartbeat", within=3)
    assert third.matching("command:result") == []


async def test_metrics_are_buffered_while_offline(console, agents, make_config):
    running = agents.start(make_config(SINDRI_AGENT_BACKOFF_MAX="2.0"))
    first = await console.wait_socket(1)
    await first.wait_for("metrics", within=5)
    console.hello_close_codes.extend([(1011, "Internal error")] * 3)
    await first.ws.close(1011, "Internal error")
    second = await console.wait_socket(2, within=30)
    await second.wait_for("metrics", count=2, within=5)
    # The first frames after hello are the samples taken while disconnected, oldest first.
    stamps = [f["data"]["timestamp"] for f in second.matching("metrics")]
    assert stamps == sorted(stamps)
    offline = [s for s in stamps if s < second.hello["ts"]]
    assert len(offline) >= 2
    assert len(running.agent.metrics_buffer) == 0


async def test_metrics_buffer_keeps_the_last_120_samples(console, make_config):
    agent = connection.Agent(make_config(), install_signal_handlers=False)
    for n in range(130):
        await agent.send_metrics({"timestamp": f"2026-01-01T00:00:{n % 60:02d}.000Z", "n": n})
    assert len(agent.metrics_buffer) == 120
    assert agent.metrics_buffer[0]["data"]["n"] == 10
    assert agent.metrics_buffer[-1]["data"]["n"] == 129


def test_backoff_doubles_with_jitter_and_resets(monkeypatch):
    factors = iter([1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 1.0])
    calls = []

    def fake_uniform(low, high):
        calls.append((low, high))
        return next(factors)

    monkeypatch.setattr(random, "uniform", fake_uniform)
    backoff = Backoff(maximum=6.0)
    assert [backoff.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 6.0, 6.0, 3.0]
    assert all(call == (0.5, 1.0) for call in calls)
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_backoff_delays_stay_in_the_jitter_band():
    random.seed(7)
    backoff = Backoff(maximum=60.0)
    bases = [1, 2, 4, 8, 16, 32, 60, 60]
    for base in bases:
        delay = backoff.next_delay()
        assert 0.5 * base <= delay <= base


@pytest.mark.parametrize("code", [4401, 4403, 4426])
async def test_fatal_close_codes_at_connect(console, agents, make_config, code):
    console.hello_close_codes.append((code, "refused"))
    running = agents.start(make_config())
    assert await asyncio.wait_for(running.task, timeout=10) == 78
