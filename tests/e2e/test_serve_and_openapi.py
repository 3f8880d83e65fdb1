"""The two README commands on a fresh data directory, and a schema-driven fuzz run with no 5xx."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import httpx
import pytest
from tests.e2e.server import fresh_database, start_server


def test_first_start_prints_one_admin_key_and_it_works(tmp_path):
    with fresh_database(tmp_path) as db:
        server = start_server(tmp_path, db)
        try:
            assert server.admin_key and re.fullmatch(r"sk_[0-9a-f]{64}", server.admin_key)
            r = httpx.get(server.url + "/api/v1/instances", headers={"Authorization": f"Bearer {server.admin_key}"})
            assert r.status_code == 200 and r.json()["data"] == []
            assert server.admin_key not in server.log_path.read_text()
            doc = httpx.get(server.url + "/openapi.json").json()
            assert "/api/v1/instances" in doc["paths"] and "/health" in doc["paths"]
            assert httpx.get(server.url + "/docs").status_code == 200
        finally:
            server.stop()
        # a second start prints nothing: the key is shown once
        again = start_server(tmp_path, db, expect_admin_key=False)
        try:
            again.proc.terminate()
            out, _ = again.proc.communicate(timeout=15)
            assert out.strip() == ""
        finally:
            again.stop()


@pytest.mark.skipif(shutil.which("schemathesis") is None and shutil.which("st") is None,
                    reason="schemathesis is installed by requirements-dev.txt")
def test_schemathesis_finds_no_server_error(tmp_path):
    # a CLI that answers, so lifecycle actions are accepted instead of 503 "CLI missing"
    cli = tmp_path / "sindri"
    cli.write_text("#!/bin/sh\nif [ \"$1\" = version ]; then echo '{\"version\":\"3.4.1\"}'; exit 0; fi\n"
                   "echo 12345\nexit 0\n")
    cli.chmod(0o755)
    with fresh_database(tmp_path) as db:
        server = start_server(tmp_path, db, extra_env={"SINDRI_BIN_PATH": str(cli), "SECRET_VAULT_KEY": "00" * 32})
        try:
            headers = {"Authorization": f"Bearer {server.admin_key}"}
            httpx.post(server.url + "/api/v1/instances", headers=headers,
                       json={"name": "fuzz-target", "provider": "fly", "region": "sea"})
            cmd = [
                shutil.which("schemathesis") or shutil.which("st") or "schemathesis", "run",
                server.url + "/openapi.json",
                "--checks", "not_a_server_error,response_schema_conformance",
                "-H", f"Authorization: Bearer {server.admin_key}",
                "--max-examples", os.environ.get("SCHEMATHESIS_EXAMPLES", "20"),
                "--phases", "examples,coverage,fuzzing",
                # everything but endless streams, and the single command route whose 503 "no agent has
                # connected" is the contract's answer for an instance without an agent
                "--exclude-path-regex", r"(stream$|^/api/v1/commands$)",
                "--request-timeout", "20",
                "--generation-deterministic",
            ]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                                    env={**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"})
            tail = (result.stdout + result.stderr)[-6000:]
            assert result.returncode == 0, tail
        finally:
            server.stop()
    assert sys.executable
