"""The one migration chain builds the schema on both dialects and matches the models."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

import sindri_console.models  # noqa: F401
from sindri_console.db.base import Base
from sindri_console.db.migrate import current_revisions, downgrade, upgrade


@pytest.fixture
async def empty_database(tmp_path) -> Any:
    url = os.environ.get("TEST_DATABASE_URL", "")
    if url.startswith("postgresql"):
        base = url.rpartition("/")[0]
        name = f"sc_mig_{uuid.uuid4().hex[:10]}"
        admin = create_async_engine(f"{base}/test", isolation_level="AUTOCOMMIT")
        async with admin.connect() as c:
            await c.execute(text(f'CREATE DATABASE "{name}"'))
        yield f"{base}/{name}"
        async with admin.connect() as c:
            await c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'mig.db'}"


def _diff(sync_conn: Any) -> list[Any]:
    ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
    diffs = compare_metadata(ctx, Base.metadata)

    def relevant(d: Any) -> bool:
        # dialect-only search objects (FTS5 tables, trigram indexes) are written by hand in migrations
        if isinstance(d, tuple) and d[0] in ("remove_table", "remove_index"):
            name = getattr(d[1], "name", "") or ""
            if "_fts" in name or "trgm" in name:
                return False
        # SQLite cannot reflect expression indexes (lower(email)); they are checked by name below
        if isinstance(d, tuple) and d[0] in ("add_index", "remove_index") and sync_conn.dialect.name == "sqlite":
            return not any(not isinstance(e, str) and not hasattr(e, "name") for e in d[1].expressions)
        return True

    return [d for d in diffs if relevant(d)]


async def _tables(url: str) -> set[str]:
    eng = create_async_engine(url)
    async with eng.connect() as c:
        names = await c.run_sync(lambda sc: set(inspect(sc).get_table_names()))
    await eng.dispose()
    return names


async def test_upgrade_downgrade_upgrade_and_models_match(empty_database):
    url = empty_database
    await upgrade(url)
    applied, heads = await current_revisions(url)
    assert applied == heads and len(heads) == 1  # one linear chain for both dialects
    model_tables = set(Base.metadata.tables)
    assert model_tables <= await _tables(url)
    eng = create_async_engine(url)
    async with eng.connect() as c:
        diffs = await c.run_sync(_diff)
    await eng.dispose()
    assert diffs == [], diffs
    await downgrade(url, "base")
    left = await _tables(url) - {"alembic_version"}
    assert not (left & model_tables), left
    await upgrade(url)
    assert model_tables <= await _tables(url)


async def test_expression_indexes_exist(empty_database):
    url = empty_database
    await upgrade(url)
    eng = create_async_engine(url)
    async with eng.connect() as c:
        if url.startswith("sqlite"):
            # SQLite's inspector skips expression indexes; its catalogue has them
            names = {r[0] for r in await c.execute(text("SELECT name FROM sqlite_master WHERE type = 'index'"))}
        else:
            names = await c.run_sync(lambda sc: {i["name"] for i in inspect(sc).get_indexes("user_account")})
    await eng.dispose()
    assert "uq_user_account_email_lower" in names
