"""Deployments run against the shared fake `sindri` executable (tests/fakes/fake_sindri.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.fakes.fake_sindri import FakeSindri

VAULT_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


@pytest.fixture
def fake(tmp_path: Path) -> FakeSindri:
    return FakeSindri(tmp_path / "fake-bin")


@pytest.fixture
def settings_overrides(fake: FakeSindri) -> dict[str, Any]:
    return {"SINDRI_BIN_PATH": str(fake.path), "SECRET_VAULT_KEY": VAULT_KEY,
            "SINDRI_CONSOLE_PUBLIC_URL": "https://console.example.test"}
