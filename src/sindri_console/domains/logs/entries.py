"""The Log entry: enums, text cleaning, the wire object and the one insert path (10-core §11, 40 §4.7).

Hot-path code: entries are plain tuples and dicts, validated by functions, not one model per entry.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.dialect import Dialect
from sindri_console.db.engine import publish_after_commit
from sindri_console.kit.ids import new_ids

LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
SOURCES = ("AGENT", "EXTENSION", "BUILD", "APP", "SYSTEM")
# every accepted spelling, lower-cased (10-core §11, 40 §4.7)
LEVEL_ALIASES: dict[str, str] = {
    "debug": "DEBUG", "trace": "DEBUG",
    "info": "INFO", "notice": "INFO",
    "warn": "WARN", "warning": "WARN",
    "error": "ERROR", "err": "ERROR", "fatal": "ERROR", "critical": "ERROR", "crit": "ERROR",
    "alert": "ERROR", "emerg": "ERROR", "panic": "ERROR",
}
SOURCE_NAMES: dict[str, str] = {s.lower(): s for s in SOURCES}

MAX_MESSAGE_CHARS = 10_000
MAX_METADATA_BYTES = 8192
MAX_DEPLOYMENT_ID = 128
MAX_PATH = 512
FUTURE_SKEW_MS = 5 * 60_000
DAY_MS = 86_400_000

# the loop that does the search index's deferred work (hooks.py); woken after each ingest commit
SEARCH_INDEX_LOOP = "logs-search-index"

# column order of every bulk insert; `seq` is reserved explicitly so it follows commit order
LOG_TABLE = "log_entry"
LOG_COLUMNS = ("seq", "id", "instance_id", "level", "source", "message", "metadata", "deployment_id", "path",
               "ts_ms", "received_ms")

_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """U+0000 and lone surrogates (invalid UTF-8 after JSON escapes) become U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if value.isascii():  # the common case: no surrogate possible, no encode needed
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATES.sub("\ufffd", value)
    return value


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    return value


def dump_metadata(metadata: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(cleaned object, its JSON text). PostgreSQL jsonb refuses \\u0000 and lone surrogates."""
    text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        text.encode("utf-8")
        clean = "\\u0000" not in text
    except UnicodeEncodeError:
        clean = False
    if not clean:
        metadata = _clean_json(metadata)
        text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return metadata, text


_iso_cache: dict[int, str] = {}


def iso_ms(ms: int) -> str:
    """ISO 8601 UTC with milliseconds and `Z` (00 §1), cached per second: batches share seconds."""
    sec, frac = divmod(ms, 1000)
    head = _iso_cache.get(sec)
    if head is None:
        if len(_iso_cache) > 4096:
            _iso_cache.clear()
        head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _iso_cache[sec] = head
    return f"{head}.{frac:03d}Z"


def wire(seq: int, entry_id: str, instance_id: str, level: str, source: str, message: str,
         metadata: dict[str, Any] | None, deployment_id: str | None, path: str | None, ts_ms: int,
         received_ms: int) -> dict[str, Any]:
    """The one Log wire shape (10-core §11): responses, bus messages and SSE `log` events."""
    return {
        "id": entry_id,
        "seq": seq,
        "instanceId": instance_id,
        "level": level,
        "source": source,
        "message": message,
        "metadata": metadata,
        "deploymentId": deployment_id,
        "path": path,
        "timestamp": iso_ms(ts_ms),
        "receivedAt": iso_ms(received_ms),
    }


def row_to_wire(row: Any) -> dict[str, Any]:
    """A selected `LogEntry` row (ORM object or Row with the model's attribute names)."""
    return wire(row.seq, row.id, row.instance_id, row.level, row.source, row.message, row.metadata_,
                row.deployment_id, row.path, row.ts_ms, row.received_ms)


class PendingEntry:
    """A validated entry waiting for its seq: plain slots, no per-entry model validation."""

    __slots__ = ("instance_id", "level", "source", "message", "metadata", "metadata_json", "deployment_id",
                 "path", "ts_ms", "received_ms")

    def __init__(self, instance_id: str, level: str, source: str, message: str, metadata: dict[str, Any] | None,
                 metadata_json: str | None, deployment_id: str | None, path: str | None, ts_ms: int,
                 received_ms: int) -> None:
        self.instance_id = instance_id
        self.level = level
        self.source = source
        self.message = message
        self.metadata = metadata
        self.metadata_json = metadata_json
        self.deployment_id = deployment_id
        self.path = path
        self.ts_ms = ts_ms
        self.received_ms = received_ms


class PreparedEntries:
    """Ids, wire objects and row tails built before the write lock is taken: the locked section
    only reserves the seq range, stamps it and hands the rows to the driver."""

    __slots__ = ("instance_ids", "tails", "wires")

    def __init__(self, pending: Sequence[PendingEntry]) -> None:
        self.instance_ids: list[str] = []
        self.tails: list[tuple[Any, ...]] = []
        self.wires: list[dict[str, Any]] = []
        self.extend(pending)

    def extend(self, pending: Sequence[PendingEntry]) -> None:
        for p, entry_id in zip(pending, new_ids(len(pending)), strict=True):
            self.instance_ids.append(p.instance_id)
            self.tails.append((entry_id, p.instance_id, p.level, p.source, p.message, p.metadata_json,
                               p.deployment_id, p.path, p.ts_ms, p.received_ms))
            self.wires.append(wire(0, entry_id, p.instance_id, p.level, p.source, p.message, p.metadata,
                                   p.deployment_id, p.path, p.ts_ms, p.received_ms))

    def without(self, drop: set[int]) -> PreparedEntries:
        kept = PreparedEntries(())
        for i, (iid, tail, w) in enumerate(zip(self.instance_ids, self.tails, self.wires, strict=True)):
            if i not in drop:
                kept.instance_ids.append(iid)
                kept.tails.append(tail)
                kept.wires.append(w)
        return kept


async def store_prepared(session: AsyncSession, dialect: Dialect, prepared: PreparedEntries) -> list[dict[str, Any]]:
    """Insert prepared entries in the caller's transaction and queue one `instance.<id>.logs`
    message per instance for after the commit. Returns the stored entries as wire objects, in seq order.

    Inserts are serialised (SQLite BEGIN IMMEDIATE, PostgreSQL advisory lock) and seqs are reserved
    as one range under that lock, so `seq` grows in commit order (10-core §11). The rows go through
    the dialect's bulk path (COPY / executemany): one round trip, no bind-parameter limit.
    """
    count = len(prepared.tails)
    if not count:
        return []
    first = await dialect.lock_and_reserve_log_seqs(session, LOG_TABLE, "seq", count)
    rows = [(first + i, *tail) for i, tail in enumerate(prepared.tails)]
    by_instance: dict[str, list[dict[str, Any]]] = {}
    for i, w in enumerate(prepared.wires):
        w["seq"] = first + i
        by_instance.setdefault(w["instanceId"], []).append(w)
    await dialect.bulk_insert_rows(session, LOG_TABLE, LOG_COLUMNS, rows)
    for instance_id, entries in by_instance.items():
        publish_after_commit(session, f"instance.{instance_id}.logs", {"instanceId": instance_id, "entries": entries})
    return prepared.wires


async def store_pending(session: AsyncSession, dialect: Dialect, pending: Sequence[PendingEntry]) -> list[dict[str, Any]]:
    """`store_prepared` for entries not prepared beforehand (same guarantees)."""
    return await store_prepared(session, dialect, PreparedEntries(pending))
