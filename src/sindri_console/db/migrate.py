"""Run the Alembic chain programmatically (serve, CLI and tests all use this)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from sindri_console.db.engine import probe_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


async def _with_connection(url: str, fn: Any) -> Any:
    engine = probe_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


async def upgrade(url: str, target: str = "heads") -> None:
    if url.startswith("sqlite") and ":///" in url:
        path = url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def run(sync_conn: Any) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, target)

    await _with_connection(url, run)


async def downgrade(url: str, target: str = "base") -> None:
    def run(sync_conn: Any) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.downgrade(cfg, target)

    await _with_connection(url, run)


async def current_revisions(url: str) -> tuple[set[str], set[str]]:
    """(revisions applied in the database, head revisions of the code)."""

    def run(sync_conn: Any) -> tuple[set[str], set[str]]:
        ctx = MigrationContext.configure(sync_conn)
        applied = set(ctx.get_current_heads())
        heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
        return applied, heads

    return await _with_connection(url, run)  # type: ignore[no-any-return]
