"""The only place that knows whether the database is SQLite or PostgreSQL.

Everything else asks this module for: the insert statement used for upserts, row claims,
time buckets, case-insensitive substring search, the log-sequence serialisation lock, seq
reservation, the bulk-load path and the index-served log search.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, Select, Table, func, literal, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute


class Dialect(ABC):
    name: str = "base"

    @abstractmethod
    def insert(self, table: Any) -> Any: ...

    def claim(self, stmt: Select[Any]) -> Select[Any]:
        """Rows read by a claiming transaction; other replicas skip them."""
        return stmt

    def time_bucket(self, ts_ms: ColumnElement[int] | QueryableAttribute[int],
                    step_ms: int) -> ColumnElement[int]:
        # `//` keeps integer division on both engines (SQLAlchemy 2 renders `/` as true division);
        # it truncates, which is the floor for non-negative epoch values
        return (ts_ms // literal(step_ms, BigInteger)) * literal(step_ms, BigInteger)

    def like_escape(self, term: str) -> str:
        return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

    @abstractmethod
    def icontains(self, column: ColumnElement[str] | QueryableAttribute[str | None],
                  term: str) -> ColumnElement[bool]: ...

    @abstractmethod
    async def lock_log_sequence(self, session: AsyncSession) -> None:
        """Serialise log inserts so `seq` grows in commit order (10-core §11)."""

    @property
    def supports_skip_locked(self) -> bool:
        return False

    # --- log entries (10-core §11): bulk path, seq reservation, indexed substring search ---

    @abstractmethod
    async def reserve_seq_range(self, session: AsyncSession, table: str, column: str, count: int) -> int:
        """First of `count` consecutive values of an auto-increment key, reserved for explicit inserts.

        The caller must hold the log-sequence lock (`lock_log_sequence`) so ranges follow commit order.
        """

    async def lock_and_reserve_log_seqs(self, session: AsyncSession, table: str, column: str, count: int) -> int:
        """`lock_log_sequence` then `reserve_seq_range`, in one round trip where the dialect can."""
        await self.lock_log_sequence(session)
        return await self.reserve_seq_range(session, table, column, count)

    @abstractmethod
    async def bulk_insert_rows(self, session: AsyncSession, table: str, columns: tuple[str, ...],
                               rows: list[tuple[Any, ...]]) -> None:
        """Insert plain tuples in the session's transaction on the driver's fastest path.

        JSON columns take their serialised text; values are not processed by SQLAlchemy types.
        """

    @abstractmethod
    def log_message_search(self, seq: ColumnElement[int] | QueryableAttribute[int],
                           message: ColumnElement[str] | QueryableAttribute[str], term: str, *,
                           probe: bool = False) -> ColumnElement[bool]:
        """Case-insensitive (ASCII at least) literal substring of `message`, served by the search
        index for terms of 3+ characters; shorter terms are a scan bounded by the other filters.

        `probe`: the caller expects many matches, so the rows should be read newest-first from the
        time index and checked against the index's matches instead of driven by them.
        """

    # the search index defers work that a background pass can do off the insert path
    defers_log_index_work = False

    async def flush_log_search_index(self, session: AsyncSession) -> int:
        """Do the search index's deferred work now: pages flushed, 0 when there was none, -1 when
        another session is already doing it."""
        return 0

    async def log_search_plan(self, session: AsyncSession, term: str, *, window: int,
                              cap: int) -> tuple[int, bool] | None:
        """(matches of `term` counted up to cap + 1, whether `probe` pays off for the first `window`
        rows) when the dialect can tell cheaply; None leaves the choice to the query planner."""
        return None


class SqliteDialect(Dialect):
    name = "sqlite"
    # SQLITE_MAX_VARIABLE_NUMBER: 32766 since 3.32, 999 before
    MAX_BIND_PARAMS = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999

    def insert(self, table: Any) -> Any:
        return sqlite.insert(table)

    def icontains(self, column: ColumnElement[str] | QueryableAttribute[str | None],
                  term: str) -> ColumnElement[bool]:
        # SQLite LIKE is ASCII case-insensitive already; lower() keeps the semantics explicit
        return func.lower(column).like(f"%{self.like_escape(term.lower())}%", escape="\\")

    async def lock_log_sequence(self, session: AsyncSession) -> None:
        # write units already run under BEGIN IMMEDIATE: one writer at a time
        return None

    async def reserve_seq_range(self, session: AsyncSession, table: str, column: str, count: int) -> int:
        # AUTOINCREMENT tables remember their high-water mark in sqlite_sequence; explicit keys above it
        # move it forward on insert, so a reserved range is never handed out twice
        high = await session.scalar(text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table})
        if high is None:
            high = await session.scalar(text(f'SELECT max("{column}") FROM "{table}"'))
        return int(high or 0) + 1

    async def bulk_insert_rows(self, session: AsyncSession, table: str, columns: tuple[str, ...],
                               rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        # None only for an invalidated connection; this one was just checked out
        driver = raw.driver_connection
        assert driver is not None
        cols = ", ".join(f'"{c}"' for c in columns)
        row_marks = "(" + ", ".join("?" for _ in columns) + ")"
        per_statement = max(1, self.MAX_BIND_PARAMS // len(columns))
        # One multi-row INSERT per chunk, not one statement step per row: FTS5 flushes its pending
        # index at the end of every statement, so per-row statements write one tiny segment per row
        # and merge them (measured: 3-4x slower than one statement for 1000 log entries).
        for start in range(0, len(rows), per_statement):
            chunk = rows[start:start + per_statement]
            sql = f'INSERT INTO "{table}" ({cols}) VALUES ' + ", ".join([row_marks] * len(chunk))
            await driver.execute(sql, [value for row in chunk for value in row])

    @staticmethod
    def _fts_phrase(term: str) -> str:
        # a quoted trigram phrase is a case-insensitive literal substring match
        return '"' + term.replace('"', '""') + '"'

    def log_message_search(self, seq: ColumnElement[int] | QueryableAttribute[int],
                           message: ColumnElement[str] | QueryableAttribute[str], term: str, *,
                           probe: bool = False) -> ColumnElement[bool]:
        if len(term) < 3:
            # SQLite LIKE folds ASCII case
            return message.like(f"%{self.like_escape(term)}%", escape="\\")
        hits = text("SELECT rowid FROM log_entry_fts WHERE log_entry_fts MATCH :fts_phrase").bindparams(
            fts_phrase=self._fts_phrase(term)).columns(rowid=Integer).subquery().select()
        # `seq + 0` hides the rowid from the planner: it then walks the time index and probes the set
        return (seq + 0).in_(hits) if probe else seq.in_(hits)

    async def log_search_plan(self, session: AsyncSession, term: str, *, window: int,
                              cap: int) -> tuple[int, bool] | None:
        if len(term) < 3:
            return None
        hits = int(await session.scalar(
            text("SELECT count(*) FROM (SELECT rowid FROM log_entry_fts WHERE log_entry_fts MATCH :p LIMIT :n)"),
            {"p": self._fts_phrase(term), "n": cap + 1}) or 0)
        if hits == 0:
            return 0, False
        # two sub-selects: SQLite answers a lone max()/min() of the rowid from the b-tree ends
        span = int(await session.scalar(text(
            "SELECT (SELECT max(seq) FROM log_entry) - (SELECT min(seq) FROM log_entry) + 1")) or 0)
        # driving reads one row per match; probing reads about window * rows / matches index entries
        return hits, window * span < hits * hits


class PostgresDialect(Dialect):
    name = "postgresql"
    LOG_SEQ_LOCK = 0x51D1_0001
    LOG_INDEX_LOCK = 0x51D1_0002
    # pg_trgm's GIN index (fastupdate on, the default) appends new rows to a pending list that the
    # inserting transaction merges into the index once it passes gin_pending_list_limit. Flushed by a
    # separate session instead, the merge runs on another core while inserts go on (GIN lets
    # inserters append during a flush and skips their own flush when one is running).
    defers_log_index_work = True

    def insert(self, table: Any) -> Any:
        return postgresql.insert(table)

    def claim(self, stmt: Select[Any]) -> Select[Any]:
        return stmt.with_for_update(skip_locked=True)

    def icontains(self, column: ColumnElement[str] | QueryableAttribute[str | None],
                  term: str) -> ColumnElement[bool]:
        return column.ilike(f"%{self.like_escape(term)}%", escape="\\")

    async def lock_log_sequence(self, session: AsyncSession) -> None:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self.LOG_SEQ_LOCK})

    async def reserve_seq_range(self, session: AsyncSession, table: str, column: str, count: int) -> int:
        # one round trip: take the next value and move the sequence past the whole range
        last = await session.scalar(
            text("SELECT setval(pg_get_serial_sequence(:t, :c), nextval(pg_get_serial_sequence(:t, :c)) + :n - 1)"),
            {"t": table, "c": column, "n": count},
        )
        return int(last) - count + 1

    async def lock_and_reserve_log_seqs(self, session: AsyncSession, table: str, column: str, count: int) -> int:
        # the FROM sub-select takes the lock before the target list moves the sequence
        last = await session.scalar(
            text("SELECT setval(pg_get_serial_sequence(:t, :c), nextval(pg_get_serial_sequence(:t, :c)) + :n - 1) "
                 "FROM (SELECT pg_advisory_xact_lock(:k)) AS log_lock"),
            {"t": table, "c": column, "n": count, "k": self.LOG_SEQ_LOCK},
        )
        return int(last) - count + 1

    async def bulk_insert_rows(self, session: AsyncSession, table: str, columns: tuple[str, ...],
                               rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        # None only for an invalidated connection; this one was just checked out
        driver = raw.driver_connection
        assert driver is not None
        # binary COPY inside the session's transaction: no bind-parameter limit, the fastest load path
        await driver.copy_records_to_table(table, records=rows, columns=list(columns))

    async def flush_log_search_index(self, session: AsyncSession) -> int:
        # The try-lock keeps replicas from queueing on the index's own cleanup lock. Only the index's
        # owner (or a superuser) may flush; any other role leaves the flush to the inserts, as before.
        pages = await session.scalar(text(
            "SELECT CASE WHEN NOT pg_has_role(current_user, c.relowner, 'USAGE') THEN 0 "
            "WHEN pg_try_advisory_xact_lock(:k) THEN gin_clean_pending_list(c.oid) ELSE -1 END "
            "FROM pg_class c WHERE c.oid = 'ix_log_entry_message_trgm'::regclass"),
            {"k": self.LOG_INDEX_LOCK})
        return int(pages)

    def log_message_search(self, seq: ColumnElement[int] | QueryableAttribute[int],
                           message: ColumnElement[str] | QueryableAttribute[str], term: str, *,
                           probe: bool = False) -> ColumnElement[bool]:
        # default LIKE escape is backslash; pg_trgm's GIN index serves ILIKE for 3+ character terms
        pattern = f"%{self.like_escape(term)}%"
        if len(term) < 3:
            # no trigram to look up: keep the planner off the GIN index (a full index read) and let
            # the other filters bound the scan
            return message.concat("").ilike(pattern)
        return message.ilike(pattern)

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
