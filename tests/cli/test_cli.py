"""`sindri-console` commands against the same database the server uses (10-core §3.6)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from sqlalchemy import select

from sindri_console.models.audit import AuditLog


@pytest.fixture
def run_cli(database_url, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(tmp_path / "cli-data")}
        env.pop("REDIS_URL", None)
        return subprocess.run([sys.executable, "-m", "sindri_console.cli", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    return run


async def test_users_and_keys(console, run_cli):
    r = run_cli("users", "create", "--email", "ops@example.test", "--role", "OPERATOR")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"sk_[0-9a-f]{64}\n", r.stdout)
    key = r.stdout.strip()
    assert (await console.client.get("/api/v1/instances", headers=console.auth(key))).status_code == 200
    assert (await console.client.get("/api/v1/admin/users", headers=console.auth(key))).status_code == 403

    again = run_cli("users", "create", "--email", "OPS@example.test")
    assert again.returncode == 3 and again.stdout == ""
    bad = run_cli("users", "create", "--email", "no-at", "--role", "OPERATOR")
    assert bad.returncode == 2
    bad_role = run_cli("users", "create", "--email", "x@example.test", "--role", "ROOT")
    assert bad_role.returncode == 2

    r = run_cli("keys", "create", "--email", "ops@example.test", "--name", "ci", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["apiKey"]["key"].startswith("sk_") and doc["apiKey"]["name"] == "ci"

    inst = await console.register(key, "cli-inst")
    r = run_cli("keys", "create", "--instance", "cli-inst")
    assert r.returncode == 0, r.stderr
    agent_key = r.stdout.strip()
    assert re.fullmatch(r"ak_[0-9a-f]{64}", agent_key)
    rr = await console.client.post("/api/v1/instances", headers=console.auth(agent_key),
                                   json={"name": "cli-inst", "provider": "fly"})
    assert rr.status_code == 200 and rr.json()["id"] == inst["id"]
    assert run_cli("keys", "create", "--instance", "unknown").returncode == 3

    r = run_cli("keys", "revoke", "--id", doc["apiKey"]["id"])
    assert r.returncode == 0 and r.stdout == ""
    assert (await console.client.get("/api/v1/instances", headers=console.auth(doc["apiKey"]["key"]))
            ).status_code == 401
    assert run_cli("keys", "revoke", "--id", doc["apiKey"]["id"]).returncode == 3
    async with console.rt.db.read() as s:
        entry = await s.scalar(select(AuditLog).where(AuditLog.action == "REVOKE",
                                                      AuditLog.resource_id == doc["apiKey"]["id"]))
    assert entry is not None and entry.actor_kind == "CLI"

    r = run_cli("users", "list")
    assert "ops@example.test" in r.stdout
    r = run_cli("db", "current")
    assert r.returncode == 0 and r.stdout.strip()


def test_version_command(run_cli):
    r = run_cli("version")
    assert r.returncode == 0 and r.stdout.startswith("sindri-console ")


def test_invalid_setting_stops_start_up_with_one_line(run_cli, tmp_path):
    env = {**os.environ, "DATABASE_URL": "mysql://nope", "DATA_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "sindri_console.cli", "serve"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert "DATABASE_URL" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    env = {**os.environ, "PORT": "not-a-port", "DATA_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "sindri_console.cli", "serve"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "PORT" in r.stderr
