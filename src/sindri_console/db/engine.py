"""Engines and units of work.

SQLite: WAL, busy timeout, and write units that start with BEGIN IMMEDIATE on a one-connection
write pool, so concurrent writers queue in-process instead of failing with "database is locked".
PostgreSQL (asyncpg): one pooled engine for both reads and writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from sindri_console.db.dialect import Dialect, dialect_for

SQLITE_BUSY_TIMEOUT_MS = 10_000
PENDING_PUBLISH = "sindri_pending_publish"
log = structlog.get_logger("sindri_console.db")


def publish_after_commit(session: AsyncSession, topic: str, payload: dict[str, Any]) -> None:
    """Queue a bus message that is sent only if the surrounding write unit commits."""
    session.info.setdefault(PENDING_PUBLISH, []).append((topic, payload))


def _sqlite_engine(url: str, *, immediate: bool, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=30,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _: Any) -> None:
        # take transaction control away from the driver so we can issue BEGIN IMMEDIATE
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """Holds the engines of one process and hands out short explicit units of work."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.dialect: Dialect = dialect_for(url)
        self.bus: Any = None  # set by the runtime; used for publish-after-commit
        if self.dialect.name == "sqlite":
            path = url.split(":///", 1)[1] if ":///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.write_engine = _sqlite_engine(url, immediate=True, pool_size=1)
            self.read_engine = _sqlite_engine(url, immediate=False, pool_size=pool_size)
        else:
            self.write_engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=30, pool_pre_ping=False, echo=echo
            )
            self.read_engine = self.write_engine
        self._write_sessions = async_sessionmaker(self.write_engine, expire_on_commit=False, autoflush=False)
        self._read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False, autoflush=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect.name == "sqlite"

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction: commits when the block ends, rolls back when it raises.

        Bus messages queued with `publish_after_commit` go out only after the commit succeeded.
        """
        async with self._write_sessions() as session:
            async with session.begin():
                yield session
            pending = session.info.pop(PENDING_PUBLISH, None)
        if pending and self.bus is not None:
            for topic, payload in pending:
                try:
                    await self.bus.publish(topic, payload)
                except Exception as exc:  # the database is the source of truth; a lost push is tolerated
                    log.warning("publish_failed", topic=topic, error=type(exc).__name__)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        # closing (not rolling back) ends the transaction without expiring loaded objects
        async with self._read_sessions() as session:
            yield session

    async def dispose(self) -> None:
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()


def probe_engine(url: str) -> AsyncEngine:
    """A pool-less engine for one-off probes (health with a dead server, CLI checks)."""
    return create_async_engine(url, poolclass=NullPool)
