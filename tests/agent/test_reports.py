"""The configuration report: sindri.yaml redaction and hashed environment."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sindri_console.agent.config import load_config
from sindri_console.agent.reports import config_report, hashed_environment, redact_yaml_secrets

SAMPLE = """name: dev-box
deployment:
  provider: fly
  apiKey: abc123   # inline secret
  region: ams
secrets:
  - name: GITHUB_TOKEN
    source: env
db_password: |
  line one
  line two
after: visible
"""


def test_redact_yaml_secrets_keeps_layout():
    redacted = redact_yaml_secrets(SAMPLE)
    assert "abc123" not in redacted and "line one" not in redacted and "GITHUB_TOKEN" not in redacted
    assert "  apiKey: ***\n" in redacted
    assert "db_password: ***\n" in redacted
    assert "region: ams" in redacted and "after: visible" in redacted and "name: dev-box" in redacted
    assert redacted.count("\n") == SAMPLE.count("\n")


def test_hashed_environment(monkeypatch):
    monkeypatch.setenv("PLAIN_VALUE", "hello")
    monkeypatch.setenv("SINDRI_CONSOLE_API_KEY", "k")
    monkeypatch.setenv("SINDRI_AGENT_TAGS", "a=b")
    env = hashed_environment()
    assert env["PLAIN_VALUE"] == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert "SINDRI_CONSOLE_API_KEY" not in env and "SINDRI_AGENT_TAGS" not in env


def test_config_report_reads_sindri_yaml(monkeypatch, tmp_path: Path):
    (tmp_path / "sindri.yaml").write_text(SAMPLE)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SINDRI_CONFIG", raising=False)
    config = load_config({"SINDRI_CONSOLE_URL": "http://127.0.0.1:1", "SINDRI_CONSOLE_API_KEY": "k", "SINDRI_REGION": "ams"})
    report = config_report(config, [{"name": "python", "version": "3.12", "status": "installed", "error": None}])
    sindri = report["sindriConfig"]
    assert sindri["path"] == str(tmp_path / "sindri.yaml")
    assert sindri["sha256"] == hashlib.sha256(SAMPLE.encode()).hexdigest()
    assert "abc123" not in sindri["content"]
    assert report["extensions"] == [{"name": "python", "version": "3.12", "status": "installed"}]
    assert report["region"] == "ams" and report["provider"] is None
