"""The only place that knows whether the database is SQLite or PostgreSQL.

Everything else asks this module for: the insert statement used for upserts, row claims,
time buckets, case-insensitive substring search and the log-sequence serialisation lock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Select, Table, func, literal, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


class Dialect(ABC):
    name: str = "base"

    @abstractmethod
    def insert(self, table: Any) -> Any: ...

    def claim(self, stmt: Select[Any]) -> Select[Any]:
        """Rows read by a claiming transaction; other replicas skip them."""
        return stmt

    def time_bucket(self, ts_ms: ColumnElement[int], step_ms: int) -> ColumnElement[int]:
        # `//` keeps integer division on both engines (SQLAlchemy 2 renders `/` as true division);
        # it truncates, which is the floor for non-negative epoch values
        return (ts_ms // literal(step_ms, BigInteger)) * literal(step_ms, BigInteger)

    def like_escape(self, term: str) -> str:
        return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

    @abstractmethod
    def icontains(self, column: ColumnElement[str], term: str) -> ColumnElement[bool]: ...

    @abstractmethod
    async def lock_log_sequence(self, session: AsyncSession) -> None:
        """Serialise log inserts so `seq` grows in commit order (10-core §11)."""

    @property
    def supports_skip_locked(self) -> bool:
        return False


class SqliteDialect(Dialect):
    name = "sqlite"

    def insert(self, table: Any) -> Any:
        return sqlite.insert(table)

    def icontains(self, column: ColumnElement[str], term: str) -> ColumnElement[bool]:
        # SQLite LIKE is ASCII case-insensitive already; lower() keeps the semantics explicit
        return func.lower(column).like(f"%{self.like_escape(term.lower())}%", escape="\\")

    async def lock_log_sequence(self, session: AsyncSession) -> None:
        # write units already run under BEGIN IMMEDIATE: one writer at a time
        return None


class PostgresDialect(Dialect):
    name = "postgresql"
    LOG_SEQ_LOCK = 0x51D1_0001

    def insert(self, table: Any) -> Any:
        return postgresql.insert(table)

    def claim(self, stmt: Select[Any]) -> Select[Any]:
        return stmt.with_for_update(skip_locked=True)

    def icontains(self, column: ColumnElement[str], term: str) -> ColumnElement[bool]:
        return column.ilike(f"%{self.like_escape(term)}%", escape="\\")

    async def lock_log_sequence(self, session: AsyncSession) -> None:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self.LOG_SEQ_LOCK})

    @property
    def supports_skip_locked(self) -> bool:
        return True


def dialect_for(url_or_name: str) -> Dialect:
    if url_or_name.startswith("sqlite"):
        return SqliteDialect()
    if url_or_name.startswith("postgresql"):
        return PostgresDialect()
    raise ValueError(f"unsupported database {url_or_name.split(':', 1)[0]}")


def table_of(model: Any) -> Table:
    return model.__table__  # type: ignore[no-any-return]
