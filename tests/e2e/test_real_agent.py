"""The console's own agent process against a real `sindri-console serve` on 127.0.0.1 (issue: agents)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from tests.e2e.server import Server, fresh_database, start_server

AGENT_KEY = "e2e-bootstrap-agent-key-0123456789abcdef"
SERVER_ENV = {
    "SINDRI_CONSOLE_API_KEY": AGENT_KEY,
    "AGENT_HEARTBEAT_LOSS_SECONDS": "3",
    "AGENT_HEARTBEAT_LOSS_CHECK_SECONDS": "1",
    "METRICS_STALE_SECONDS": "5",
}


def start_agent(server_url: str, tmp_path: Path, name: str) -> subprocess.Popen[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SINDRI_", "DATABASE_URL", "REDIS_URL"))},
        "SINDRI_CONSOLE_URL": server_url,
        "SINDRI_CONSOLE_API_KEY": AGENT_KEY,
        "SINDRI_INSTANCE_ID": name,
        "SINDRI_INSTANCE_NAME": name,
        "SINDRI_PROVIDER": "docker",
        "SINDRI_AGENT_HEARTBEAT": "1",
        "SINDRI_AGENT_METRICS": "1",
        "SINDRI_AGENT_BACKOFF_MAX": "2",
        "SINDRI_AGENT_STATE_DIR": str(tmp_path / f"agent-state-{name}"),
        "SINDRI_BIN_PATH": str(tmp_path / "no-sindri"),
    }
    log = open(tmp_path / f"agent-{name}.log", "w")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen([sys.executable, "-m", "sindri_console.agent.main"], env=env, stdout=log, stderr=log,
                            text=True)


def wait_for(fn: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (httpx.HTTPError, KeyError, IndexError, TypeError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last={last!r}")


def find_instance(server: Server, key: str, name: str) -> dict[str, Any] | None:
    r = httpx.get(server.url + "/api/v1/instances", params={"search": name, "includeRemoved": "false"},
                  headers={"Authorization": f"Bearer {key}"}, timeout=5)
    items = [i for i in r.json()["data"] if i["name"] == name]
    return items[0] if items else None


def detail(server: Server, key: str, iid: str) -> dict[str, Any]:
    return httpx.get(f"{server.url}/api/v1/instances/{iid}", headers={"Authorization": f"Bearer {key}"},
                     timeout=5).json()


def test_agent_registers_reports_reconnects_and_loss_is_detected(tmp_path):
    with fresh_database(tmp_path) as db:
        server = start_server(tmp_path, db, extra_env=SERVER_ENV)
        port = int(server.url.rsplit(":", 1)[1])
        admin = server.admin_key
        assert admin
        agent = start_agent(server.url, tmp_path, "agent-e2e")
        try:
            # the header identifies the socket before its hello classifies it (40 §7.3: dialect "of the
            # latest classified connection"), so connected can be seen a moment before the dialect
            inst = wait_for(lambda: (i := find_instance(server, admin, "agent-e2e")) and i["agent"]
                            and i["agent"]["connected"] and i["agent"]["dialect"] and i, 30, "agent classified")
            assert inst["status"] == "RUNNING"
            assert inst["agent"]["dialect"] == "console"
            assert "commands" in inst["agent"]["capabilities"]
            # metrics within one interval (plus commit and scheduling slack)
            latest = wait_for(lambda: [m for m in httpx.get(
                server.url + "/api/v1/metrics/latest", headers={"Authorization": f"Bearer {admin}"},
                timeout=5).json()["data"] if m["instanceId"] == inst["id"]], 20, "latest metrics")
            assert latest[0]["cpuPercent"] is not None and latest[0]["memUsedBytes"] is not None
            hb = wait_for(lambda: detail(server, admin, inst["id"])["lastHeartbeat"], 20, "heartbeat")
            assert hb["agentUptimeSeconds"] is not None

            # restart the server: the agent reconnects by itself
            first_connected_at = detail(server, admin, inst["id"])["agent"]["connectedAt"]
            server.stop()
            server = start_server(tmp_path, db, port=port, extra_env=SERVER_ENV, expect_admin_key=False)
            again = wait_for(lambda: (d := detail(server, admin, inst["id"]))["agent"]["connected"]
                             and d["agent"]["connectedAt"] != first_connected_at and d, 45, "reconnect")
            assert again["status"] == "RUNNING"

            # the agent dies without a close frame: heartbeat loss is detected
            agent.send_signal(signal.SIGKILL)
            agent.wait(10)
            lost = wait_for(lambda: (d := detail(server, admin, inst["id"]))["status"] == "UNREACHABLE" and d,
                            20, "heartbeat loss")
            assert lost["agent"]["heartbeatLost"] is True
            events = httpx.get(f"{server.url}/api/v1/instances/{inst['id']}/events",
                               params={"type": "HEARTBEAT_LOST"},
                               headers={"Authorization": f"Bearer {admin}"}, timeout=5).json()["data"]
            assert events and events[0]["type"] == "HEARTBEAT_LOST"

            # a new agent process brings it back; a graceful stop (close 1000) makes it STOPPED
            agent = start_agent(server.url, tmp_path, "agent-e2e")
            wait_for(lambda: detail(server, admin, inst["id"])["status"] == "RUNNING", 30, "recovery")
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(20) == 0
            wait_for(lambda: detail(server, admin, inst["id"])["status"] == "STOPPED", 30, "graceful stop")
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait(5)
            server.stop()
