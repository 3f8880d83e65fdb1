"""Deployments against a real server with the fake CLI: the bus wakes the runner, and a server that stops
mid-job records the interruption (20-ops §7.7)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from tests.e2e.server import fresh_database, start_server
from tests.fakes.fake_sindri import FakeSindri

VAULT_KEY = "ab" * 32


def yaml_doc(name: str) -> str:
    return f'version: "3.0"\nname: {name}\ndeployment:\n  provider: docker\nextensions:\n  active: [git]\n'


def wait_status(url: str, headers: dict[str, str], wanted: set[str], timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = httpx.get(url, headers=headers, timeout=5).json()
        if body.get("status") in wanted:
            return body
        time.sleep(0.1)
    raise AssertionError(f"status never became {wanted}: {body}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_deploy_runs_promptly_and_a_stopping_server_records_the_interruption(tmp_path: Path) -> None:
    fake = FakeSindri(tmp_path / "fake-bin")
    fake.control(stdout=["provisioning", "done"])
    env = {"SINDRI_BIN_PATH": str(fake.path), "SECRET_VAULT_KEY": VAULT_KEY,
           "SINDRI_CONSOLE_PUBLIC_URL": "http://127.0.0.1:9"}
    with fresh_database(tmp_path) as db:
        server = start_server(tmp_path, db, extra_env=env)
        try:
            headers = {"Authorization": f"Bearer {server.admin_key}"}
            started = time.monotonic()
            r = httpx.post(server.url + "/api/v1/deployments", headers=headers,
                           json={"yamlConfig": yaml_doc("e2e-box"), "secrets": {"API_TOKEN": "token-abcdef"}})
            assert r.status_code == 202, r.text
            done = wait_status(server.url + r.headers["location"], headers, {"SUCCEEDED", "FAILED"})
            assert done["status"] == "SUCCEEDED", done
            # woken through the bus: well before the 2 s poll would have picked it up a second time
            assert time.monotonic() - started < 5
            assert "provisioning" in done["logs"] and "Deployment succeeded" in done["logs"]
            inst = httpx.get(f"{server.url}/api/v1/instances/{done['instanceId']}", headers=headers).json()
            assert inst["status"] == "RUNNING"

            fake.control(stdout=["working"], sleep=60)
            r = httpx.post(server.url + "/api/v1/deployments", headers=headers,
                           json={"yamlConfig": yaml_doc("e2e-slow")})
            assert r.status_code == 202, r.text
            location = r.headers["location"]
            wait_status(server.url + location, headers, {"IN_PROGRESS"})
            runs = fake.wait_for_runs(2)
            slow_pid = runs[-1].pid
            assert pid_alive(slow_pid)
        finally:
            server.stop()
        assert not pid_alive(slow_pid)  # the CLI's process group went down with the server

        again = start_server(tmp_path, db, extra_env=env, expect_admin_key=False)
        try:
            body = httpx.get(again.url + location, headers=headers).json()
            assert body["status"] == "FAILED", body
            assert body["error"].startswith("Interrupted: the server running this deployment stopped")
            inst = httpx.get(f"{again.url}/api/v1/instances/{body['instanceId']}", headers=headers).json()
            assert inst["status"] == "ERROR"
        finally:
            again.stop()


@pytest.mark.skipif(shutil.which("schemathesis") is None, reason="schemathesis is installed by requirements-dev.txt")
def test_schemathesis_finds_no_server_error_on_deployments_and_templates(tmp_path: Path) -> None:
    fake = FakeSindri(tmp_path / "fake-bin")
    with fresh_database(tmp_path) as db:
        server = start_server(tmp_path, db, extra_env={"SINDRI_BIN_PATH": str(fake.path),
                                                       "SECRET_VAULT_KEY": VAULT_KEY})
        try:
            headers = {"Authorization": f"Bearer {server.admin_key}"}
            r = httpx.post(server.url + "/api/v1/deployments", headers=headers,
                           json={"yamlConfig": yaml_doc("fuzz-box")})
            assert r.status_code == 202, r.text
            cmd = [
                shutil.which("schemathesis") or "schemathesis", "run", server.url + "/openapi.json",
                "--checks", "not_a_server_error,response_schema_conformance",
                "-H", f"Authorization: Bearer {server.admin_key}",
                "--max-examples", os.environ.get("SCHEMATHESIS_EXAMPLES", "15"),
                "--phases", "examples,coverage,fuzzing",
                "--include-path-regex", r"^/api/v1/(deployments|templates|fleet/deployments)",
                "--request-timeout", "20",
                "--generation-deterministic",
            ]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                                    env={**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"})
            assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
        finally:
            server.stop()


def test_a_crashed_server_s_deployment_ends_interrupted_once_its_lease_expires(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to record anything: the next replica's sweep does it after the 60 s lease."""
    import signal

    fake = FakeSindri(tmp_path / "fake-bin")
    fake.control(stdout=["working"], sleep=120)
    env = {"SINDRI_BIN_PATH": str(fake.path), "SECRET_VAULT_KEY": VAULT_KEY}
    slow_pid = None
    with fresh_database(tmp_path) as db:
        server = start_server(tmp_path, db, extra_env=env)
        try:
            headers = {"Authorization": f"Bearer {server.admin_key}"}
            r = httpx.post(server.url + "/api/v1/deployments", headers=headers,
                           json={"yamlConfig": yaml_doc("crashed")})
            assert r.status_code == 202, r.text
            location = r.headers["location"]
            wait_status(server.url + location, headers, {"IN_PROGRESS"})
            slow_pid = fake.wait_for_runs(1)[-1].pid
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(10)
            again = start_server(tmp_path, db, extra_env=env, expect_admin_key=False)
            try:
                assert httpx.get(again.url + location, headers=headers).json()["status"] == "IN_PROGRESS"
                body = wait_status(again.url + location, headers, {"FAILED", "SUCCEEDED"}, timeout=90)
                assert body["status"] == "FAILED"
                assert body["error"] == ("Interrupted: the server running this deployment stopped; the provider "
                                         "may hold partial resources")
                inst = httpx.get(f"{again.url}/api/v1/instances/{body['instanceId']}", headers=headers).json()
                assert inst["status"] == "ERROR"
            finally:
                again.stop()
        finally:
            server.stop()
            if slow_pid is not None and pid_alive(slow_pid):
                os.killpg(slow_pid, signal.SIGKILL)  # the orphaned CLI leads its own process group
