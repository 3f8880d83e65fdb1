"""Log lines and tracebacks never carry secrets (brief: secrets never leak into logs)."""

from __future__ import annotations

from typing import Any

import structlog

from sindri_console.logging import configure_logging
from sindri_console.settings import load_settings

API_KEY = "sk-console-bootstrap-0123456789abcdef0123456789"
DB_PASSWORD = "db-password-9f8e7d"


def test_exception_log_has_no_locals_and_settings_repr_masks_secrets(capsys: Any) -> None:
    settings = load_settings(env={
        "DATABASE_URL": f"postgresql+asyncpg://console:{DB_PASSWORD}@db.internal:5432/console",
        "REDIS_URL": f"redis://:{DB_PASSWORD}@cache.internal:6379/0",
        "SINDRI_CONSOLE_API_KEY": API_KEY,
    })
    text = repr(settings)
    assert API_KEY not in text and DB_PASSWORD not in text
    assert "console:***@db.internal" in text and "redis://:***@cache.internal" in text

    configure_logging("info")
    try:
        def handle(token: str, config: Any) -> None:
            raise RuntimeError("handler failed")

        try:
            handle(API_KEY, settings)
        except RuntimeError:
            structlog.get_logger("test").exception("handler_failed")
        out = capsys.readouterr().err
        assert "handler_failed" in out and "RuntimeError" in out and "handler failed" in out
        assert API_KEY not in out and DB_PASSWORD not in out
    finally:
        structlog.reset_defaults()
