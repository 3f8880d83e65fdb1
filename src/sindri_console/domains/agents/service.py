"""Agent connection lifecycle, agent contact, report and event frames, and the agent loops (40 §3.5, §4, §7, §13)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.engine import publish_after_commit
from sindri_console.domains.agents import repository as repo
from sindri_console.domains.agents.frames import FrameError, agent_timestamp, pick
from sindri_console.domains.agents.ingest import (
    STORED_EVENT_TYPES,
    AgentEvent,
    ExtensionItem,
    HeartbeatValues,
    LlmRecord,
    parse_process_list,
)
from sindri_console.domains.instances.state import (
    apply_agent_contact,
    heartbeat_deadline,
    loss_threshold_seconds,
    transition,
    write_event,
)
from sindri_console.kit.audit import write_audit
from sindri_console.kit.auth import Principal
from sindri_console.kit.clock import to_iso, utcnow
from sindri_console.kit.context import RequestContext, set_context
from sindri_console.kit.ids import new_id
from sindri_console.models.agent import AgentConnection, AgentState
from sindri_console.models.instance import Instance

if TYPE_CHECKING:
    from sindri_console.domains.agents.socket import AgentSocket
    from sindri_console.runtime import Runtime

log = structlog.get_logger("sindri_console.agents")

MAX_REPORT_BYTES = 1_048_576


def _principal(conn: AgentSocket) -> Principal:
    return Principal(credential=conn.principal.credential, api_key_id=conn.principal.api_key_id,
                     instance_id=conn.principal.instance_id)


def agent_push(state: AgentState, **extra: Any) -> dict[str, Any]:
    from sindri_console.domains.instances.wire import agent_to_wire

    return {"instanceId": state.instance_id, **(agent_to_wire(state) or {}), **extra}


def new_state(instance_id: str, now: datetime) -> AgentState:
    return AgentState(instance_id=instance_id, capabilities=[], connected=False, heartbeat_lost=False,
                      frames_dropped=0, updated_at=now)


def apply_classification(state: AgentState, conn: AgentSocket) -> None:
    """Copy what the first frame told us about the agent (40 §3.4) onto AgentState."""
    state.dialect = conn.dialect
    state.capabilities = list(conn.stored_capabilities)
    state.protocol_version = conn.protocol_version
    state.agent_name = conn.agent_name
    hello = conn.hello or {}
    if conn.dialect == "console":
        if conn.agent_version:
            state.agent_version = conn.agent_version
        for attr, key, cap in (("hostname", "hostname", 253), ("os", "os", 32), ("arch", "arch", 32)):
            v = pick(hello, key)
            if isinstance(v, str) and v.strip():
                setattr(state, attr, v.strip()[:cap])
        ident = pick(hello, "agentInstanceId")
        if isinstance(ident, str) and 1 <= len(ident) <= 128:
            state.agent_instance_id = ident
        intervals = pick(hello, "intervals")
        state.intervals = intervals if isinstance(intervals, dict) else None
        if conn.hello_heartbeat_seconds:
            state.heartbeat_interval_seconds = conn.hello_heartbeat_seconds


# ---- connection lifecycle (§3.5) ---------------------------------------------------------------------


@dataclass
class Identified:
    instance_id: str
    name: str
    team_id: str | None
    agent_instance_id: str | None


async def identify_many(session: AsyncSession, rt: Runtime, requests: list[tuple[AgentSocket, str]]
                        ) -> list[Identified | None]:
    """§3.5 on identification, for a batch of sockets in the caller's transaction: connection rows,
    AgentState connected, audit and event CONNECT, 10-core §6.2 row 17. None for a vanished instance."""
    now = utcnow()
    ids = list(dict.fromkeys(iid for _, iid in requests))
    instances = {i.id: i for i in await session.scalars(select(Instance).where(Instance.id.in_(ids)))}
    states = await repo.load_states(session, ids)
    loss = rt.settings.AGENT_HEARTBEAT_LOSS_SECONDS
    out: list[Identified | None] = []
    for conn, instance_id in requests:
        inst = instances.get(instance_id)
        if inst is None:
            out.append(None)
            continue
        session.add(AgentConnection(
            id=conn.connection_id, instance_id=instance_id, replica_id=rt.replica_id,
            credential=conn.principal.credential, api_key_id=conn.principal.api_key_id, dialect=conn.dialect,
            agent_version=conn.agent_version, protocol_version=conn.protocol_version,
            capabilities=list(conn.stored_capabilities), remote_address=(conn.remote or "")[:64] or None,
            user_agent=(conn.user_agent or "")[:256] or None, connected_at=conn.connected_at, identified_at=now,
        ))
        state = states.get(instance_id)
        if state is None:
            state = new_state(instance_id, now)
            session.add(state)
            states[instance_id] = state
        state.connected = True
        state.connection_id = conn.connection_id
        state.replica_id = rt.replica_id
        state.connected_at = now
        state.disconnected_at = None
        state.last_seen_at = now
        if conn.dialect is not None:
            apply_classification(state, conn)
        previous = None
        if inst.status == "RUNNING" and not state.heartbeat_lost:
            # the common case without the state machine's extra reads: only the deadline moves
            threshold = loss_threshold_seconds(loss, state.heartbeat_interval_seconds)
            state.heartbeat_deadline_at = heartbeat_deadline(now, inst.status_changed_at, threshold)
            state.updated_at = now
        else:
            await session.flush()
            previous = await apply_agent_contact(session, state, kind="connect", loss_seconds=loss, now=now)
        meta: dict[str, Any] = {"connectionId": conn.connection_id, "dialect": conn.dialect,
                                "agentVersion": state.agent_version}
        if previous is not None:
            meta.update({"fromStatus": previous, "toStatus": "RUNNING"})
        write_event(session, instance_id, "CONNECT", "Agent connected", meta, actor_kind="AGENT",
                    ts_ms=int(now.timestamp() * 1000))
        # the audit entry carries the socket's own request context (address, user agent), not the writer's
        set_context(conn.context)
        await write_audit(session, _principal(conn), "CONNECT", "agent_connection", conn.connection_id, {
            "instanceId": instance_id, "credential": conn.principal.credential,
            "apiKeyId": conn.principal.api_key_id, "dialect": conn.dialect, "agentVersion": state.agent_version,
            "remoteAddress": conn.remote,
        }, team_id=inst.team_id, actor_kind="AGENT")
        publish_after_commit(session, f"instance.{instance_id}.agent",
                             agent_push(state, connectionId=conn.connection_id))
        out.append(Identified(instance_id, inst.name, inst.team_id, state.agent_instance_id))
    set_context(RequestContext())
    return out


async def classify(rt: Runtime, conn: AgentSocket) -> None:
    """The first frame of an already identified connection tells its dialect and capabilities."""
    now = utcnow()
    async with rt.db.write() as s:
        await s.execute(update(AgentConnection).where(AgentConnection.id == conn.connection_id).values(
            dialect=conn.dialect, agent_version=conn.agent_version, protocol_version=conn.protocol_version,
            capabilities=list(conn.stored_capabilities)))
        state = await s.get(AgentState, conn.instance_id)
        if state is None:
            return
        apply_classification(state, conn)
        state.updated_at = now
        publish_after_commit(s, f"instance.{conn.instance_id}.agent",
                             agent_push(state, connectionId=conn.connection_id))


def close_reason_word(code: int, by_server: bool) -> str:
    if code == 4409:
        return "replaced"
    if code == 1001 and by_server:
        return "server_shutdown"
    return "closed"


@dataclass
class Closing:
    conn: AgentSocket
    code: int
    reason: str
    by_server: bool


async def close_many(session: AsyncSession, rt: Runtime, closings: list[Closing]) -> None:
    """§3.5 on close, for a batch of sockets in the caller's transaction: connection row, AgentState (only
    while it still points at the closing connection), audit and event DISCONNECT, 10-core §6.2 row 19.

    Reads and updates are one statement each for the whole batch (a mass disconnect is thousands of
    closes); only graceful closes, which move the instance to STOPPED, go one by one.
    """
    if not closings:
        return
    now = utcnow()
    iids = [c.conn.instance_id for c in closings if c.conn.instance_id is not None]
    closing_ids = [c.conn.connection_id for c in closings]
    await repo.update_connections(session, [{
        "id": c.conn.connection_id, "disconnected_at": now, "close_code": c.code,
        "close_reason": (c.reason or "")[:123] or None, **c.conn.counter_values()} for c in closings])
    pointed = await repo.current_connections(session, iids)
    current = {c.conn.connection_id for c in closings if pointed.get(c.conn.instance_id or "") == c.conn.connection_id}
    await repo.mark_disconnected_many(
        session, [(c.conn.instance_id or "", c.conn.connection_id) for c in closings if c.conn.connection_id in current],
        now)
    maybe_graceful = {c.conn.connection_id: c.conn.instance_id or "" for c in closings
                      if c.code == 1000 and not c.by_server and c.conn.connection_id in current}
    kept_open = await repo.instances_with_other_open(session, list(maybe_graceful.values()), closing_ids)
    teams = await repo.instance_teams(session, iids)
    for item in closings:
        conn, code, reason = item.conn, item.code, item.reason
        iid = conn.instance_id
        assert iid is not None
        is_current = conn.connection_id in current
        dropped = conn.take_dropped()
        if dropped:
            await repo.add_dropped(session, iid, dropped)
        graceful = conn.connection_id in maybe_graceful and iid not in kept_open
        meta: dict[str, Any] = {"connectionId": conn.connection_id, "closeCode": code,
                                "reason": close_reason_word(code, item.by_server), "graceful": False}
        moved = None
        if graceful:
            meta["graceful"] = True
            moved = await transition(
                session, iid, allowed_from=("RUNNING", "UNREACHABLE"), to="STOPPED",
                reason="Agent closed its connection", bus_reason="agent_disconnect", event_type="DISCONNECT",
                event_message="Agent disconnected", event_metadata=meta, actor_kind="AGENT", now=now)
            if moved is None:
                meta["graceful"] = False
        if moved is None:
            write_event(session, iid, "DISCONNECT", "Agent disconnected", meta, actor_kind="AGENT",
                        ts_ms=int(now.timestamp() * 1000))
        set_context(conn.context)
        await write_audit(session, _principal(conn), "DISCONNECT", "agent_connection", conn.connection_id, {
            "instanceId": iid, "closeCode": code, "closeReason": reason,
            "durationSeconds": round((now - conn.connected_at).total_seconds(), 3),
        }, team_id=teams.get(iid), actor_kind="AGENT")
        publish_after_commit(session, f"instance.{iid}.agent", {
            "instanceId": iid, "connectionId": conn.connection_id, "connected": not is_current,
            "closeCode": code})
    set_context(RequestContext())


async def flush_counters(rt: Runtime, conns: list[AgentSocket]) -> None:
    rows = [{"id": c.connection_id, **c.counter_values()} for c in conns if c.instance_id]
    if not rows:
        return
    async with rt.db.write() as s:
        await repo.update_connections(s, rows)


# ---- agent contact (§7.2, 10-core §6.2 rows 17/18) ---------------------------------------------------


@dataclass
class Contact:
    conn: AgentSocket
    at: datetime
    heartbeat: HeartbeatValues | None = None
    heartbeat_received: datetime | None = None


async def record_contact(session: AsyncSession, rt: Runtime, contacts: dict[str, Contact]) -> None:
    """Every data frame is agent contact: lastSeenAt and the loss deadline move; UNREACHABLE → RUNNING.

    The common case (a RUNNING instance whose heartbeat is not lost) is one executemany UPDATE per
    column set; anything else goes through the state machine's `apply_agent_contact`.
    """
    rows = await repo.contact_rows(session, list(contacts))
    loss = rt.settings.AGENT_HEARTBEAT_LOSS_SECONDS
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    slow: list[str] = []
    for iid, lost, interval, status, changed_at in rows:
        c = contacts[iid]
        values: dict[str, Any] = {"instance_id": iid, **_heartbeat_values(c)}
        interval = values.get("heartbeat_interval_seconds", interval)
        dropped = c.conn.take_dropped()
        if dropped:
            await repo.add_dropped(session, iid, dropped)
        if status != "RUNNING" or lost:
            slow.append(iid)
            if len(values) > 1:
                groups.setdefault(tuple(sorted(values)), []).append(values)
            continue
        values["last_seen_at"] = c.at
        values["updated_at"] = c.at
        values["heartbeat_deadline_at"] = heartbeat_deadline(c.at, changed_at, loss_threshold_seconds(loss, interval))
        groups.setdefault(tuple(sorted(values)), []).append(values)
    for batch in groups.values():
        await repo.update_states(session, batch)
    for iid in slow:
        state = await session.get(AgentState, iid, populate_existing=True)
        if state is not None:
            await apply_agent_contact(session, state, kind="frame", loss_seconds=loss, now=contacts[iid].at)


def _heartbeat_values(c: Contact) -> dict[str, Any]:
    if c.heartbeat is None or c.heartbeat_received is None:
        return {}
    hb = c.heartbeat
    out: dict[str, Any] = {"last_heartbeat_at": c.heartbeat_received}
    if hb.agent_uptime_seconds is not None:
        out["uptime_seconds"] = hb.agent_uptime_seconds
    if hb.skew_ms is not None:
        out["clock_skew_ms"] = hb.skew_ms
    interval = c.conn.heartbeat_interval()
    if interval is not None:
        out["heartbeat_interval_seconds"] = interval
    return out


def heartbeat_values(instance_id: str, hb: HeartbeatValues, received: datetime) -> dict[str, Any]:
    return {
        "id": new_id(), "instance_id": instance_id, "timestamp": hb.timestamp, "received_at": received,
        "agent_uptime_seconds": hb.agent_uptime_seconds, "system_uptime_seconds": hb.system_uptime_seconds,
        "cpu_percent": hb.cpu_percent, "memory_used_bytes": hb.memory_used_bytes,
        "memory_total_bytes": hb.memory_total_bytes, "disk_used_bytes": hb.disk_used_bytes,
        "disk_total_bytes": hb.disk_total_bytes, "load_avg_1": hb.load_avg_1,
    }


# ---- frames handled in their own transaction ---------------------------------------------------------

FrameWork = Callable[[AsyncSession], Awaitable[Any]]


async def run_frame(rt: Runtime, conn: AgentSocket, frame_id: str | None, work: FrameWork) -> tuple[bool, Any]:
    """Run `work` in one transaction with the frame's receipt; (duplicate, result)."""
    iid = conn.instance_id
    assert iid is not None
    async with rt.db.write() as s:
        if frame_id is not None:
            if await repo.existing_receipts(s, [(iid, frame_id)]):
                return True, None
            await repo.insert_receipts(s, rt.db.dialect, [(iid, frame_id)], utcnow())
        result = await work(s)
    return False, result


def _report_push(instance_id: str, kind: str, taken: datetime, count: int, request_id: str | None) -> dict[str, Any]:
    return {"kind": kind, "instanceId": instance_id, "timestamp": to_iso(taken), "count": count,
            "requestId": request_id}


def sort_processes(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda p: (-(p.get("cpuPercent") or 0), -(p.get("memoryRssBytes") or 0)))


async def store_processes(session: AsyncSession, rt: Runtime, instance_id: str, items: list[dict[str, Any]],
                          total: int | None, taken: datetime, received: datetime, request_id: str | None,
                          source: str) -> None:
    items = sort_processes(items)
    await repo.upsert_report(session, rt.db.dialect, {
        "instance_id": instance_id, "kind": "processes", "taken_at": taken, "received_at": received,
        "request_id": request_id, "source": source, "available": True, "reason": None,
        "item_count": len(items), "payload": {"processes": items, "totalCount": total},
    })
    publish_after_commit(session, f"instance.{instance_id}.reports",
                         _report_push(instance_id, "processes", taken, len(items), request_id))


def processes_from_frame(data: dict[str, Any], received: datetime
                         ) -> tuple[list[dict[str, Any]], int | None, datetime, str | None, list[dict[str, str]]]:
    items, errors = parse_process_list(pick(data, "processes") if pick(data, "processes") is not None else [])
    total = pick(data, "totalCount")
    if not (isinstance(total, int) and not isinstance(total, bool) and total >= 0):
        total = None
    taken, _ = agent_timestamp(pick(data, "timestamp"), received)
    request_id = pick(data, "requestId")
    return items, total, taken, request_id if isinstance(request_id, str) else None, errors


async def store_extensions(session: AsyncSession, rt: Runtime, instance_id: str, available: bool,
                           reason: str | None, cli_version: str | None, items: list[ExtensionItem],
                           taken: datetime, received: datetime, request_id: str | None) -> None:
    """§4.11: replace ExtensionStatus, write install/remove events against the previous report."""
    previous_report = await repo.get_report(session, instance_id, "extensions")
    if available:
        before = {r.name: r for r in await repo.extension_rows(session, instance_id)}
        await repo.replace_extensions(session, instance_id, [
            {"instance_id": instance_id, "name": e.name, "version": e.version, "status": e.status,
             "status_since": e.status_since, "error": e.error, "reported_at": received} for e in items])
        if previous_report is not None:
            now_ms = int(received.timestamp() * 1000)
            after = {e.name: e for e in items}
            for e in items:
                old = before.get(e.name)
                if e.status == "installed" and (old is None or old.status != "installed"):
                    write_event(session, instance_id, "EXTENSION_INSTALL", f"Extension {e.name} installed",
                                {"extension": e.name, "version": e.version, "source": "agent_report"},
                                actor_kind="AGENT", ts_ms=now_ms)
            for name, old in before.items():
                new = after.get(name)
                if (new is None and old.status != "removed") or (
                        new is not None and new.status == "removed" and old.status != "removed"):
                    write_event(session, instance_id, "EXTENSION_REMOVE", f"Extension {name} removed",
                                {"extension": name, "version": (new.version if new else old.version),
                                 "source": "agent_report"}, actor_kind="AGENT", ts_ms=now_ms)
    await repo.upsert_report(session, rt.db.dialect, {
        "instance_id": instance_id, "kind": "extensions", "taken_at": taken, "received_at": received,
        "request_id": request_id, "source": "report", "available": available, "reason": reason,
        "item_count": len(items), "payload": {"cliVersion": cli_version},
    })
    publish_after_commit(session, f"instance.{instance_id}.reports",
                         _report_push(instance_id, "extensions", taken, len(items), request_id))


async def store_config(session: AsyncSession, rt: Runtime, instance_id: str, report: dict[str, Any],
                       taken: datetime, received: datetime, request_id: str | None) -> None:
    if len(json.dumps(report, default=str)) > MAX_REPORT_BYTES:
        raise FrameError("INVALID_PAYLOAD", "A config report is limited to 1 MiB",
                         [{"field": "data", "message": "must be at most 1 MiB"}])
    await repo.upsert_report(session, rt.db.dialect, {
        "instance_id": instance_id, "kind": "config", "taken_at": taken, "received_at": received,
        "request_id": request_id, "source": "report", "available": True, "reason": None,
        "item_count": len(report.get("env") or {}), "payload": {**report, "timestamp": to_iso(taken),
                                                                "requestId": request_id},
    })
    publish_after_commit(session, f"instance.{instance_id}.reports",
                         _report_push(instance_id, "config", taken, len(report.get("env") or {}), request_id))


async def store_event(session: AsyncSession, instance_id: str, ev: AgentEvent) -> str:
    """§4.8: agent-writable event types become events, anything else a log line."""
    ts_ms = int(ev.timestamp.timestamp() * 1000)
    if ev.event_type in STORED_EVENT_TYPES:
        write_event(session, instance_id, ev.event_type, ev.message or ev.event_type,
                    {**ev.metadata, "message": ev.message, "source": "agent"}, actor_kind="AGENT", ts_ms=ts_ms)
        return "event"
    from sindri_console.domains.logs.service import LogLine, insert_entries

    level = "ERROR" if ("ERROR" in ev.event_type or "FAIL" in ev.event_type) else "INFO"
    # insert_entries publishes the entry to `instance.<id>.logs` after the commit
    await insert_entries(session, [LogLine(
        instance_id=instance_id, message=f"{ev.event_type}: {ev.message}", level=level, source="AGENT",
        metadata={"eventType": ev.event_type, **ev.metadata}, timestamp=ts_ms)])
    return "log"


async def store_llm_usage(session: AsyncSession, rt: Runtime, instance_id: str, records: list[LlmRecord],
                          received: datetime) -> int:
    rows: list[dict[str, Any]] = [{
        "id": new_id(), "instance_id": instance_id, "ts": r.ts, "day": r.ts.date(), "provider": r.provider,
        "model": r.model, "matched_model": None, "operation": r.operation, "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens, "cache_read_tokens": r.cache_read_tokens,
        "cache_write_tokens": r.cache_write_tokens, "cost_micros": None,
        "reported_cost_micros": r.reported_cost_micros, "price_source": None, "capture_tier": r.capture_tier,
        "trace_id": r.trace_id, "dedupe_key": r.dedupe_key(instance_id), "received_at": received,
    } for r in records]
    # one batch may repeat a record: keep the first of each key
    unique = list({row["dedupe_key"]: row for row in reversed(rows)}.values())[::-1]
    stored = await repo.insert_llm_usage(session, rt.db.dialect, unique)
    kept = [row for row in unique if row["dedupe_key"] in stored]
    if kept:
        cost = sum(r["reported_cost_micros"] or 0 for r in kept) / 1_000_000
        publish_after_commit(session, f"instance.{instance_id}.llm_usage", {
            "instanceId": instance_id, "records": len(kept),
            "inputTokens": sum(r["input_tokens"] for r in kept),
            "outputTokens": sum(r["output_tokens"] for r in kept), "costUsd": round(cost, 6)})
    return len(kept)


async def apply_registration(session: AsyncSession, instance_id: str, data: dict[str, Any]) -> list[dict[str, str]]:
    """§4.9: a D `registration` frame updates agent fields, tags, provider and region; never creates or renames."""
    from sindri_console.domains.instances.schemas import parse_registration
    from sindri_console.kit.errors import ApiError

    try:
        reg = parse_registration(data)
    except ApiError as exc:
        raise FrameError("INVALID_PAYLOAD", exc.message, list(exc.details or [])) from None
    now = utcnow()
    inst = await session.get(Instance, instance_id)
    state = await session.get(AgentState, instance_id)
    if inst is None:
        return []
    if state is None:
        state = new_state(instance_id, now)
        session.add(state)
    for f in ("provider", "region", "tags"):
        if reg.has(f):
            setattr(inst, f, reg.get(f) if f != "tags" else (reg.get(f) or {}))
    for f in ("agent_version", "os", "arch", "hostname"):
        if reg.has(f):
            setattr(state, f, reg.get(f))
    if reg.has("timestamp"):
        state.last_registration_agent_time = reg.get("timestamp")
    inst.updated_at = now
    state.updated_at = now
    return []


# ---- loops (§13) -------------------------------------------------------------------------------------


async def heartbeat_loss_tick(rt: Runtime) -> int:
    """RUNNING instances whose agent deadline passed → UNREACHABLE, one transaction each."""
    now = utcnow()
    async with rt.db.read() as s:
        ids = await repo.loss_candidates(s, now, 500)
    lost = 0
    for iid in ids:
        try:
            async with rt.db.write() as s:
                st = await s.get(AgentState, iid)
                if (st is None or st.heartbeat_lost or st.heartbeat_deadline_at is None
                        or st.heartbeat_deadline_at >= now):
                    continue
                threshold = loss_threshold_seconds(rt.settings.AGENT_HEARTBEAT_LOSS_SECONDS,
                                                   st.heartbeat_interval_seconds)
                moved = await transition(
                    s, iid, allowed_from=("RUNNING",), to="UNREACHABLE", reason="Agent heartbeat lost",
                    bus_reason="heartbeat_lost", event_type="HEARTBEAT_LOST",
                    event_message="No agent contact within the heartbeat loss threshold",
                    event_metadata={"lastHeartbeatAt": to_iso(st.last_heartbeat_at), "thresholdSeconds": threshold,
                                    "agentConnected": bool(st.connected)}, now=now)
                if moved is None:
                    continue
                st.heartbeat_lost = True
                st.heartbeat_lost_at = now
                st.updated_at = now
                lost += 1
        except Exception as exc:  # one instance never stops the tick
            log.warning("heartbeat_loss_failed", instance_id=iid, error=type(exc).__name__)
    return lost


REPLICA_DEAD_AFTER = timedelta(seconds=60)


async def reap_replicas(rt: Runtime) -> int:
    """Close the connection rows of replicas that stopped refreshing their lease (as 1006 "replica lost")."""
    now = utcnow()
    async with rt.db.read() as s:
        dead = await repo.dead_replicas(s, now - REPLICA_DEAD_AFTER, rt.replica_id)
        conns = await repo.open_connections_on(s, dead, 1000)
    if conns:
        # one transaction for the whole set, one statement per kind (as `close_many`)
        async with rt.db.write() as s:
            await repo.update_connections(s, [{"id": c.id, "disconnected_at": now, "close_code": 1006,
                                               "close_reason": "replica lost"} for c in conns])
            await repo.mark_disconnected_many(s, [(c.instance_id, c.id) for c in conns], now)
            teams = await repo.instance_teams(s, [c.instance_id for c in conns])
            for c in conns:
                write_event(s, c.instance_id, "DISCONNECT", "Agent disconnected (replica lost)",
                            {"connectionId": c.id, "closeCode": 1006, "reason": "closed", "graceful": False},
                            actor_kind="SYSTEM", ts_ms=int(now.timestamp() * 1000))
                await write_audit(s, None, "DISCONNECT", "agent_connection", c.id, {
                    "instanceId": c.instance_id, "closeCode": 1006, "closeReason": "replica lost",
                    "durationSeconds": round((now - c.connected_at).total_seconds(), 3)},
                    team_id=teams.get(c.instance_id), actor_kind="SYSTEM")
                publish_after_commit(s, f"instance.{c.instance_id}.agent",
                                     {"instanceId": c.instance_id, "connectionId": c.id, "connected": False,
                                      "closeCode": 1006})
    closed = len(conns)
    if dead:
        async with rt.db.write() as s:
            await repo.orphan_states(s, dead)
    return closed


async def retention_tick(rt: Runtime) -> tuple[int, int]:
    now = utcnow()
    total_r = total_c = 0
    while True:
        async with rt.db.write() as s:
            n_r, n_c = await repo.delete_old(s, now - timedelta(hours=24), now - timedelta(days=30), 5000)
        total_r += n_r
        total_c += n_c
        if n_r < 5000 and n_c < 5000:
            return total_r, total_c
