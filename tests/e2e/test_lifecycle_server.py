"""Lifecycle jobs on a real server with the fake CLI: a restart mid-job, graceful and by SIGKILL (10-core §6.4)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.server import fresh_database, start_server
from tests.fakes.fake_sindri import FakeSindri


def _poll(url: str, headers: dict[str, str], done: Any, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = httpx.get(url, headers=headers, timeout=5).json()
        if done(body):
            return body
        time.sleep(0.2)
    raise AssertionError(f"never reached: {body}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _suspend_mid_job(server: Any, fake: FakeSindri, name: str) -> tuple[dict[str, str], str, str, int]:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    r = httpx.post(server.url + "/api/v1/instances", headers=headers,
                   json={"name": name, "provider": "docker", "region": "local"})
    assert r.status_code == 201, r.text
    iid = r.json()["id"]
    r = httpx.post(f"{server.url}/api/v1/instances/{iid}/suspend", headers=headers)
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["id"]
    _poll(f"{server.url}/api/v1/instances/{iid}/jobs/{job_id}", headers, lambda b: b["status"] == "RUNNING", 10)
    runs = fake.wait_for_runs(1)
    assert runs and runs[-1].argv[0] == "stop"
    return headers, iid, job_id, runs[-1].pid


def test_a_restart_mid_job_fails_it_and_the_instance_takes_a_new_request(tmp_path: Path) -> None:
    fake = FakeSindri(tmp_path / "fake-bin")
    fake.control(sleep=60)
    env = {"SINDRI_BIN_PATH": str(fake.path)}
    with fresh_database(tmp_path) as db:
        server = start_server(tmp_path, db, extra_env=env)
        try:
            headers, iid, job_id, pid = _suspend_mid_job(server, fake, "e2e-lc-1")
        finally:
            server.stop()
        assert not _alive(pid)  # the CLI went down with the server

        fake.control()
        again = start_server(tmp_path, db, extra_env=env, expect_admin_key=False)
        try:
            job = httpx.get(f"{again.url}/api/v1/instances/{iid}/jobs/{job_id}", headers=headers).json()
            assert job["status"] == "FAILED" and job["error"] == "Interrupted: the server running this job stopped"
            inst = httpx.get(f"{again.url}/api/v1/instances/{iid}", headers=headers).json()
            assert inst["status"] == "RUNNING" and inst["activeJobId"] is None
            r = httpx.post(f"{again.url}/api/v1/instances/{iid}/suspend?wait=10", headers=headers, timeout=20)
            assert r.status_code == 200, r.text
            assert r.json()["job"]["status"] == "SUCCEEDED" and r.json()["instance"]["status"] == "SUSPENDED"
        finally:
            again.stop()


def test_a_killed_server_leaves_a_job_that_lease_expiry_fails(tmp_path: Path) -> None:
    fake = FakeSindri(tmp_path / "fake-bin")
    fake.control(sleep=45)
    env = {"SINDRI_BIN_PATH": str(fake.path)}
    orphan = None
    with fresh_database(tmp_path) as db:
        server = start_server(tmp_path, db, extra_env=env)
        try:
            headers, iid, job_id, orphan = _suspend_mid_job(server, fake, "e2e-lc-2")
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(10)
            fake.control()
            again = start_server(tmp_path, db, extra_env=env, expect_admin_key=False)
            try:
                # Still RUNNING until its lease (30 s after the last renewal) expires and recovery (every 30 s)
                # runs on the new server: at most about a minute.
                job = _poll(f"{again.url}/api/v1/instances/{iid}/jobs/{job_id}", headers,
                            lambda b: b["status"] != "RUNNING", 75)
                assert job["status"] == "FAILED" and job["error"].startswith("Interrupted:")
                inst = httpx.get(f"{again.url}/api/v1/instances/{iid}", headers=headers).json()
                assert inst["status"] == "RUNNING" and inst["activeJobId"] is None
            finally:
                again.stop()
        finally:
            server.stop()
            if orphan is not None and _alive(orphan):
                os.killpg(orphan, signal.SIGKILL)  # a crashed server cannot stop its CLI; the test does


@pytest.mark.skipif(shutil.which("schemathesis") is None, reason="schemathesis is installed by requirements-dev.txt")
def test_schemathesis_finds_no_server_error_on_lifecycle_routes(tmp_path: Path) -> None:
    fake = FakeSindri(tmp_path / "fake-bin")
    with fresh_database(tmp_path) as db:
        server = start_server(tmp_path, db, extra_env={"SINDRI_BIN_PATH": str(fake.path)})
        try:
            headers = {"Authorization": f"Bearer {server.admin_key}"}
            r = httpx.post(server.url + "/api/v1/instances", headers=headers,
                           json={"name": "fuzz-1", "provider": "docker"})
            assert r.status_code == 201, r.text
            # Every `{id}` is a live instance, so the fuzzer reaches acceptance, the guard and the job reads.
            config = tmp_path / "schemathesis.toml"
            config.write_text(f'[parameters]\n"path.id" = "{r.json()["id"]}"\n')
            cmd = [
                shutil.which("schemathesis") or "schemathesis", "--config-file", str(config), "run",
                server.url + "/openapi.json",
                "--checks", "not_a_server_error,response_schema_conformance",
                "-H", f"Authorization: Bearer {server.admin_key}",
                "--max-examples", os.environ.get("SCHEMATHESIS_EXAMPLES", "15"),
                "--phases", "examples,coverage,fuzzing",
                "--include-path-regex",
                r"^/api/v1/instances/(bulk-action|\{id\}/(suspend|resume|backup|lifecycle|jobs|backups))",
                "--request-timeout", "20",
                "--generation-deterministic",
            ]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                                    env={**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"})
            assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
        finally:
            server.stop()
