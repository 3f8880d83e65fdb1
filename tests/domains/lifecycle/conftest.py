"""Lifecycle tests run the real job runner against the fake `sindri` of tests/fakes (10-core §20 set-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.fakes.fake_sindri import FakeSindri


@pytest.fixture
def fake(tmp_path: Path) -> FakeSindri:
    return FakeSindri(tmp_path / "bin")


@pytest.fixture
def settings_overrides(fake: FakeSindri) -> dict[str, Any]:
    return {"SINDRI_BIN_PATH": str(fake.path), "SINDRI_CLI_TIMEOUT_SECONDS": 5, "LIFECYCLE_MAX_CONCURRENCY": 2}


@pytest.fixture
async def operator(console: Any) -> str:
    _, key = await console.user("OPERATOR")
    return key
