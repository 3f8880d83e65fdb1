"""Log ingest decisions: HTTP entry rules (10-core §11), the agent frames' lenient mapping (40 §4.7)
and the entry point other domains use to write log lines (deployments).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.dialect import dialect_for
from sindri_console.domains.instances.state import apply_agent_contact
from sindri_console.domains.logs.entries import (
    DAY_MS,
    FUTURE_SKEW_MS,
    LEVEL_ALIASES,
    LEVELS,
    MAX_DEPLOYMENT_ID,
    MAX_MESSAGE_CHARS,
    MAX_METADATA_BYTES,
    MAX_PATH,
    SEARCH_INDEX_LOOP,
    SOURCE_NAMES,
    SOURCES,
    PendingEntry,
    PreparedEntries,
    clean_text,
    dump_metadata,
    store_pending,
    store_prepared,
)
from sindri_console.kit.auth import Principal
from sindri_console.kit.clock import clock, parse_iso, to_ms
from sindri_console.kit.errors import ApiError
from sindri_console.kit.scope import REMOVED_STATUSES, visible_instances
from sindri_console.models.agent import AgentState
from sindri_console.models.instance import Instance

if TYPE_CHECKING:
    from sindri_console.runtime import Runtime

MAX_BATCH = 1000
# Entries handled between two yields to the event loop: a 1000-entry batch is ~15 ms of CPU, and a
# write transaction of another request waiting for its next statement result must not wait for all of it.
CPU_SLICE = 200
AGENT_PAST_MS = 7 * DAY_MS  # 40 §3.9: agent timestamps older than this are re-stamped
LEVEL_MESSAGE = "must be one of " + ", ".join(LEVELS)
SOURCE_MESSAGE = "must be one of " + ", ".join(SOURCES)


# --- HTTP entries (10-core §11 entry rules) ---------------------------------------------------

def _get(raw: dict[str, Any], camel: str, snake: str) -> Any:
    value = raw.get(camel)
    if value is None and snake != camel:
        value = raw.get(snake)
    return value


def validate_http_entry(raw: Any, principal: Principal, now_ms: int, oldest_ms: int
                        ) -> tuple[PendingEntry | None, list[tuple[str, str]], str | None]:
    """(entry, field errors, instance id). Every failing field is reported, not only the first.

    The instance itself (existence, scope, removal) is checked by the caller in one query.
    """
    if not isinstance(raw, dict):
        return None, [("entry", "must be a JSON object")], None
    errors: list[tuple[str, str]] = []

    instance_id = _get(raw, "instanceId", "instance_id")
    if instance_id is None and principal.credential == "agent_key":
        instance_id = principal.instance_id
    if instance_id is None:
        errors.append(("instanceId", "is required"))
    elif not isinstance(instance_id, str) or not instance_id or len(instance_id) > 128:
        errors.append(("instanceId", "must be an instance id"))
        instance_id = None

    level = raw.get("level")
    if not isinstance(level, str):
        errors.append(("level", "is required" if level is None else LEVEL_MESSAGE))
    else:
        level = LEVEL_ALIASES.get(level.strip().lower())
        if level is None:
            errors.append(("level", LEVEL_MESSAGE))

    source = raw.get("source")
    if not isinstance(source, str):
        errors.append(("source", "is required" if source is None else SOURCE_MESSAGE))
    else:
        source = SOURCE_NAMES.get(source.strip().lower())
        if source is None:
            errors.append(("source", SOURCE_MESSAGE))

    message = raw.get("message")
    if not isinstance(message, str):
        errors.append(("message", "is required" if message is None else "must be a string"))
    else:
        message = clean_text(message)
        if not message:
            errors.append(("message", f"must be 1-{MAX_MESSAGE_CHARS} characters"))
        elif len(message) > MAX_MESSAGE_CHARS:
            errors.append(("message", f"must be at most {MAX_MESSAGE_CHARS} characters"))

    metadata = raw.get("metadata")
    metadata_json = None
    if metadata is not None:
        if not isinstance(metadata, dict):
            errors.append(("metadata", "must be an object"))
        else:
            metadata, metadata_json = dump_metadata(metadata)
            if len(metadata_json) > MAX_METADATA_BYTES // 4 and len(metadata_json.encode()) > MAX_METADATA_BYTES:
                errors.append(("metadata", f"must be at most {MAX_METADATA_BYTES} bytes when serialised"))

    deployment_id = _get(raw, "deploymentId", "deployment_id")
    if deployment_id is not None:
        if not isinstance(deployment_id, str) or not deployment_id or len(deployment_id) > MAX_DEPLOYMENT_ID:
            errors.append(("deploymentId", f"must be a string of 1-{MAX_DEPLOYMENT_ID} characters"))
        else:
            deployment_id = clean_text(deployment_id)

    path = raw.get("path")
    if path is not None:
        if not isinstance(path, str) or not path or len(path) > MAX_PATH:
            errors.append(("path", f"must be a string of 1-{MAX_PATH} characters"))
        else:
            path = clean_text(path)

    ts_ms = now_ms
    stamp = raw.get("timestamp")
    if stamp is not None:
        try:
            if not isinstance(stamp, str):
                raise ValueError
            ts_ms = to_ms(parse_iso(stamp))
        except ValueError:
            errors.append(("timestamp", "must be an ISO 8601 timestamp with an offset"))
        else:
            if ts_ms > now_ms + FUTURE_SKEW_MS:
                errors.append(("timestamp", "must not be more than 5 minutes in the future"))
            elif ts_ms < oldest_ms:
                errors.append(("timestamp", "must not be older than the log retention"))

    if errors:
        return None, errors, instance_id
    # no errors: each of them was checked to be a string above
    assert level is not None and source is not None and message is not None
    return (PendingEntry(instance_id, level, source, message, metadata, metadata_json, deployment_id, path,
                         ts_ms, now_ms), [], instance_id)


@dataclass
class IngestResult:
    accepted: int
    errors: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len({e["index"] for e in self.errors})


async def _instance_problems(session: AsyncSession, principal: Principal, ids: set[str]) -> dict[str, tuple[int, str]]:
    """Instance id → (status code, message) for every id that cannot take logs now."""
    problems: dict[str, tuple[int, str]] = {}
    if principal.credential == "agent_key":
        for iid in ids:
            if iid != principal.instance_id:
                problems[iid] = (403, "Agent keys may only send logs for their own instance")
        ids = ids - set(problems)
    if not ids:
        return problems
    rows = await session.execute(
        select(Instance.id, Instance.status).where(Instance.id.in_(ids), visible_instances(principal))
    )
    found = {iid: status for iid, status in rows}
    for iid in ids:
        status = found.get(iid)
        if status is None:
            problems[iid] = (404, "Instance not found")
        elif status in REMOVED_STATUSES:
            problems[iid] = (409, f"Instance is {status}")
    return problems


async def _record_agent_contact(rt: Runtime, session: AsyncSession, instance_id: str) -> None:
    state = await session.get(AgentState, instance_id)
    if state is not None:
        await apply_agent_contact(session, state, kind="frame",
                                  loss_seconds=rt.settings.AGENT_HEARTBEAT_LOSS_SECONDS, now=clock.now())


async def ingest_http(rt: Runtime, principal: Principal, raw_entries: list[Any], *, single: bool) -> IngestResult:
    """Validate each entry alone, insert every valid one in ONE transaction, publish after commit.

    `single`: the first problem raises the matching ApiError (403/404/409/422) instead of being
    reported per entry. Log ingest is not audited (telemetry); an agent principal's ingest is
    agent contact (10-core §8.1).
    """
    now_ms = clock.now_ms()
    oldest_ms = now_ms - rt.settings.LOG_RETENTION_DAYS * DAY_MS
    pending: list[tuple[int, PendingEntry]] = []
    errors: list[dict[str, Any]] = []
    instance_ids: set[str] = set()
    for index, raw in enumerate(raw_entries):
        if index % CPU_SLICE == CPU_SLICE - 1:
            await asyncio.sleep(0)
        entry, problems, iid = validate_http_entry(raw, principal, now_ms, oldest_ms)
        if single and iid is not None and principal.credential == "agent_key" and iid != principal.instance_id:
            raise ApiError(403, "Agent keys may only send logs for their own instance")
        if entry is None:
            errors.extend({"index": index, "field": f, "message": m} for f, m in problems)
            continue
        pending.append((index, entry))
        instance_ids.add(entry.instance_id)
    if single and errors:
        details = [{"field": e["field"], "message": e["message"]} for e in errors]
        raise ApiError(422, f"Invalid request: {details[0]['field']} {details[0]['message']}", details)

    stored: list[dict[str, Any]] = []
    if pending:
        # ids and wire objects are built before the write lock; the instance check stays inside it
        prepared = PreparedEntries(())
        for start in range(0, len(pending), CPU_SLICE):
            await asyncio.sleep(0)
            prepared.extend([e for _, e in pending[start:start + CPU_SLICE]])
        async with rt.db.write() as session:
            problems_by_id = await _instance_problems(session, principal, instance_ids)
            if problems_by_id:
                if single:
                    status, message = next(iter(problems_by_id.values()))
                    raise ApiError(status, message)
                drop = set()
                for position, (index, entry) in enumerate(pending):
                    problem = problems_by_id.get(entry.instance_id)
                    if problem is not None:
                        drop.add(position)
                        errors.append({"index": index, "field": "instanceId", "message": problem[1]})
                prepared = prepared.without(drop)
            stored = await store_prepared(session, rt.db.dialect, prepared)
            if stored and principal.credential == "agent_key" and principal.instance_id:
                await _record_agent_contact(rt, session, principal.instance_id)
        rt.loops.wake(SEARCH_INDEX_LOOP)
        errors.sort(key=lambda e: e["index"])
    return IngestResult(accepted=len(stored), errors=errors, entries=stored)


def batch_entries(body: Any) -> list[Any]:
    """The `entries` array of a batch body: 1-1000 items, else 422 for the whole request."""
    if not isinstance(body, dict):
        raise ApiError(422, "Invalid request: the body must be a JSON object with entries",
                       [{"field": "entries", "message": "is required"}])
    entries = body.get("entries")
    if not isinstance(entries, list) or not entries:
        msg = "is required" if entries is None else f"must be a list of 1-{MAX_BATCH} entries"
        raise ApiError(422, f"Invalid request: entries {msg}", [{"field": "entries", "message": msg}])
    if len(entries) > MAX_BATCH:
        msg = f"must be a list of 1-{MAX_BATCH} entries"
        raise ApiError(422, f"Invalid request: entries {msg}", [{"field": "entries", "message": msg}])
    return entries


# --- lenient writers: agent frames and deployment output --------------------------------------

@dataclass
class LogLine:
    """One line for `insert_entries`: unknown level → INFO, unknown source → AGENT, long messages cut."""

    instance_id: str
    message: str
    level: str | None = None
    source: str | None = None
    metadata: dict[str, Any] | None = None
    deployment_id: str | None = None
    path: str | None = None
    timestamp: datetime | int | None = None  # aware datetime or epoch ms; default: now


def _lenient_level(value: Any) -> str:
    if isinstance(value, str):
        return LEVEL_ALIASES.get(value.strip().lower(), "INFO")
    return "INFO"


def _lenient_source(value: Any) -> str:
    if isinstance(value, str):
        return SOURCE_NAMES.get(value.split(":", 1)[0].strip().lower(), "AGENT")
    return "AGENT"


def _lenient_ts(value: Any, now_ms: int) -> int:
    """40 §3.9: an agent time inside [now - 7 d, now + 5 min] is kept, anything else is now."""
    ts: int | None = None
    try:
        if isinstance(value, datetime):
            ts = to_ms(value)
        elif isinstance(value, bool):
            ts = None
        elif isinstance(value, (int, float)):
            ts = int(value)
        elif isinstance(value, str):
            ts = to_ms(parse_iso(value))
    except (ValueError, OverflowError, OSError):
        ts = None
    if ts is None or ts < now_ms - AGENT_PAST_MS or ts > now_ms + FUTURE_SKEW_MS:
        return now_ms
    return ts


def _lenient_text(value: Any, cap: int) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return clean_text(value[:cap])


def _pending_from_line(line: LogLine, now_ms: int) -> PendingEntry:
    message = clean_text(line.message) if isinstance(line.message, str) else ""
    metadata = dict(line.metadata) if isinstance(line.metadata, dict) else None
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS]
        metadata = {**(metadata or {}), "truncated": True}
    path = _lenient_text(line.path, MAX_PATH)
    if path is not None:
        metadata = {**(metadata or {}), "path": path}
    metadata_json = None
    if metadata is not None:
        try:
            metadata, metadata_json = dump_metadata(metadata)
        except (TypeError, ValueError):
            metadata, metadata_json = None, None
        if metadata_json is not None and len(metadata_json.encode()) > MAX_METADATA_BYTES:
            # the agent cannot fix a line: keep the flags we set, drop the oversized rest
            kept: dict[str, Any] = {
                k: metadata[k] for k in ("truncated", "path") if metadata and k in metadata}
            metadata, metadata_json = dump_metadata({**kept, "metadataDropped": True})
    return PendingEntry(line.instance_id, _lenient_level(line.level), _lenient_source(line.source), message,
                        metadata, metadata_json, _lenient_text(line.deployment_id, MAX_DEPLOYMENT_ID), path,
                        _lenient_ts(line.timestamp, now_ms), now_ms)


async def insert_entries(target: Runtime | AsyncSession, lines: list[LogLine]) -> list[dict[str, Any]]:
    """Write log lines for other domains (the deployment runner's BUILD/SYSTEM output, agent frames).

    `target` is either the Runtime (this opens and commits its own write transaction) or an open
    write session (the lines join the caller's transaction and commit with it). Lines are mapped
    leniently (40 §4.7): unknown level → INFO, unknown source → AGENT, messages over 10 000
    characters cut with `metadata.truncated`, `path` also copied to `metadata.path`, timestamps
    outside [now − 7 d, now + 5 min] re-stamped. Never raises for line content; the instance must
    exist. Publishes `instance.<id>.logs` (one message per instance) after the commit. Returns the
    stored entries as Log wire objects.
    """
    if not lines:
        return []
    now_ms = clock.now_ms()
    pending = [_pending_from_line(line, now_ms) for line in lines]
    if isinstance(target, AsyncSession):
        bind = target.bind
        # the Database's session makers bind every session to an engine
        assert bind is not None
        return await store_pending(target, dialect_for(bind.dialect.name), pending)
    prepared = PreparedEntries(pending)  # outside the write lock
    async with target.db.write() as session:
        stored = await store_prepared(session, target.db.dialect, prepared)
    target.loops.wake(SEARCH_INDEX_LOOP)
    return stored


async def ingest_agent_lines(rt: Runtime, instance_id: str, lines: list[dict[str, Any]], *,
                             batch_path: str | None) -> int:
    """Store the lines of one `log:line` / `log:batch` frame (40 §4.7) for `instance_id`.

    Lines that are not objects are skipped; everything else is stored (lenient mapping of
    `insert_entries`) with one multi-row insert in one transaction, then `instance.<id>.logs` is
    published once. Returns the number of stored entries. The caller (the agent socket) has already
    identified the instance and records agent contact itself.
    """
    out: list[LogLine] = []
    for raw in lines:
        if not isinstance(raw, dict):
            continue
        message = raw.get("message")
        if message is None:
            message = raw.get("line")
        stamp = raw.get("timestamp")
        if stamp is None:
            stamp = raw.get("ts")
        path = raw.get("path")
        if path is None:
            path = batch_path
        out.append(LogLine(
            instance_id=instance_id,
            message=message if isinstance(message, str) else "",
            level=raw.get("level"),
            source=raw.get("source"),
            metadata=raw.get("metadata") if isinstance(raw.get("metadata"), dict) else None,
            deployment_id=_get(raw, "deploymentId", "deployment_id"),
            path=path,
            timestamp=stamp,
        ))
    stored = await insert_entries(rt, out)
    return len(stored)
