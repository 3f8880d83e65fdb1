"""Shared fixtures: a database built by the real migrations, an app, clients and credentials.

Backend choice: `TEST_DATABASE_URL` (default: a SQLite file per test session) and `TEST_REDIS_URL`
(default: none, in-process bus). With PostgreSQL each test session gets its own fresh database.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from sindri_console.app import create_app
from sindri_console.db.base import Base
from sindri_console.db.migrate import upgrade
from sindri_console.kit.clock import clock
from sindri_console.runtime import Runtime
from sindri_console.settings import load_settings

PG_ADMIN_DB = "test"


def _pg_server_url(url: str, dbname: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    url = os.environ.get("TEST_DATABASE_URL", "")
    if url.startswith("postgresql"):
        name = f"sc_test_{uuid.uuid4().hex[:12]}"

        async def create() -> None:
            eng = create_async_engine(_pg_server_url(url, PG_ADMIN_DB), isolation_level="AUTOCOMMIT")
            async with eng.connect() as c:
                await c.execute(text(f'CREATE DATABASE "{name}"'))
            await eng.dispose()

        async def drop() -> None:
            eng = create_async_engine(_pg_server_url(url, PG_ADMIN_DB), isolation_level="AUTOCOMMIT")
            async with eng.connect() as c:
                await c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await eng.dispose()

        asyncio.run(create())
        full = _pg_server_url(url, name)
        asyncio.run(upgrade(full))
        yield full
        asyncio.run(drop())
    else:
        path = tmp_path_factory.mktemp("db") / "console.db"
        full = f"sqlite+aiosqlite:///{path}"
        asyncio.run(upgrade(full))
        yield full


@pytest.fixture(scope="session")
def redis_url() -> str | None:
    return os.environ.get("TEST_REDIS_URL") or None


async def _truncate(url: str) -> None:
    eng = create_async_engine(url)
    async with eng.begin() as c:
        if url.startswith("postgresql"):
            existing = {r[0] for r in await c.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))}
        else:
            existing = {r[0] for r in await c.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))}
        tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name in existing]
        if url.startswith("postgresql"):
            await c.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            await c.execute(text("PRAGMA foreign_keys=OFF"))
            for t in tables:
                await c.execute(text(f'DELETE FROM "{t}"'))
            extra = await c.execute(text("SELECT name FROM sqlite_master WHERE type='table' AND name='sqlite_sequence'"))
            if extra.first():
                await c.execute(text("DELETE FROM sqlite_sequence"))
    await eng.dispose()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its app."""
    return {}


@pytest.fixture
def make_settings(database_url: str, redis_url: str | None, tmp_path: Path) -> Any:
    def build(**overrides: Any) -> Any:
        env = {
            "DATABASE_URL": database_url,
            "DATA_DIR": str(tmp_path / "data"),
            "RATE_LIMIT_ENABLED": "false",
            "LOOPS_ENABLED": "false",
            "SINDRI_CONSOLE_API_KEY": "test-bootstrap-key-0123456789-abcdefghij",
            "SINDRI_BIN_PATH": str(tmp_path / "no-sindri-here"),
            "PATH": os.environ.get("PATH", ""),
        }
        if redis_url:
            env["REDIS_URL"] = redis_url
        return load_settings(env, **overrides)

    return build


@dataclass
class Console:
    app: Any
    rt: Runtime
    client: httpx.AsyncClient
    bootstrap_key: str

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def user(self, role: str = "VIEWER", email: str | None = None) -> tuple[str, str]:
        """Create a user with one key directly through the service; returns (user id, raw key)."""
        from sindri_console.domains.identity.keys import mint_user_key
        from sindri_console.domains.identity.schemas import UserCreate
        from sindri_console.domains.identity.service import create_user

        email = email or f"{role.lower()}-{uuid.uuid4().hex[:8]}@example.test"
        async with self.rt.db.write() as s:
            u = await create_user(self.rt, None, UserCreate(email=email, role=role), actor_kind="CLI", session=s)
            _, raw = await mint_user_key(s, user_id=u.id, name="test", role=None, expires_at=None, created_by=None)
        return u.id, raw

    async def register(self, key: str, name: str, provider: str = "fly", region: str | None = "sea",
                       **extra: Any) -> dict[str, Any]:
        body = {"name": name, "provider": provider, **extra}
        if region is not None:
            body["region"] = region
        r = await self.client.post("/api/v1/instances", json=body, headers=self.auth(key))
        assert r.status_code in (200, 201), r.text
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture
async def console(make_settings: Any, database_url: str, settings_overrides: dict[str, Any]) -> AsyncIterator[Console]:
    await _truncate(database_url)
    clock.reset()
    settings = make_settings(**settings_overrides)
    app = create_app(settings)
    rt: Runtime = app.state.runtime
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
            yield Console(app, rt, client, settings.SINDRI_CONSOLE_API_KEY)
    clock.reset()


@pytest.fixture
async def admin(console: Console) -> str:
    _, key = await console.user("ADMIN")
    return key
