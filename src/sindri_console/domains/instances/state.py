"""The instance state machine (10-core §6.2) and the event writer every transition uses.

Every status change goes through `transition`: a compare-and-set update, a status-history row,
an event, and `instance.<id>.status` / `instance.<id>.events` published after commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.engine import publish_after_commit
from sindri_console.kit.clock import clock, ms_to_iso, to_iso, utcnow
from sindri_console.kit.ids import new_id
from sindri_console.models.agent import AgentState
from sindri_console.models.instance import Instance, InstanceEvent, InstanceStatusHistory

LIVE_STATUSES = ("DEPLOYING", "RUNNING", "UNREACHABLE", "SUSPENDING", "SUSPENDED", "RESUMING", "STOPPED",
                 "ERROR", "DESTROYING")
REMOVED_STATUSES = ("DESTROYED", "DEREGISTERED")
SETTLED_STATUSES = ("RUNNING", "UNREACHABLE", "SUSPENDED", "STOPPED", "ERROR")
TRANSITIONAL_STATUSES = ("DEPLOYING", "SUSPENDING", "RESUMING", "DESTROYING")
ALL_STATUSES = LIVE_STATUSES + REMOVED_STATUSES

EVENT_TYPES = (
    "REGISTER", "DEPLOY", "CONNECT", "DISCONNECT", "HEARTBEAT_LOST", "HEARTBEAT_RECOVERED", "SUSPEND", "RESUME",
    "BACKUP", "RESTORE", "DESTROY", "DEREGISTER", "ERROR", "TEAM_CHANGE", "EXTENSION_INSTALL", "EXTENSION_REMOVE",
)


def event_to_wire(ev: InstanceEvent) -> dict[str, Any]:
    return {
        "id": ev.id,
        "instanceId": ev.instance_id,
        "type": ev.type,
        "timestamp": ms_to_iso(ev.ts_ms),
        "message": ev.message,
        "metadata": ev.metadata_ or {},
        "actorKind": ev.actor_kind,
        "userId": ev.user_id,
        "jobId": ev.job_id,
    }


def write_event(
    session: AsyncSession,
    instance_id: str,
    type_: str,
    message: str,
    metadata: dict[str, Any] | None = None,
    *,
    actor_kind: str = "SYSTEM",
    user_id: str | None = None,
    job_id: str | None = None,
    ts_ms: int | None = None,
) -> InstanceEvent:
    """Add an instance event to `session` and publish it after commit."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_}")
    ev = InstanceEvent(
        id=new_id(),
        instance_id=instance_id,
        type=type_,
        ts_ms=ts_ms if ts_ms is not None else clock.now_ms(),
        message=message,
        metadata_=metadata or {},
        actor_kind=actor_kind,
        user_id=user_id,
        job_id=job_id,
    )
    session.add(ev)
    publish_after_commit(session, f"instance.{instance_id}.events", event_to_wire(ev))
    return ev


def record_initial_status(session: AsyncSession, instance: Instance, reason: str | None,
                          bus_reason: str = "registration") -> None:
    """History row for a status set at creation (rows 1 and 2; a deployment passes bus_reason "deploy")."""
    session.add(InstanceStatusHistory(
        id=new_id(), instance_id=instance.id, from_status=None, to_status=instance.status,
        changed_at=instance.status_changed_at, reason=reason,
    ))
    publish_after_commit(session, f"instance.{instance.id}.status",
                         {"instanceId": instance.id, "from": None, "to": instance.status, "reason": bus_reason})


async def transition(
    session: AsyncSession,
    instance_id: str,
    *,
    allowed_from: tuple[str, ...],
    to: str,
    reason: str,
    bus_reason: str,
    event_type: str,
    event_message: str,
    event_metadata: dict[str, Any] | None = None,
    actor_kind: str = "SYSTEM",
    user_id: str | None = None,
    job_id: str | None = None,
    require_no_job: bool = False,
    values: dict[str, Any] | None = None,
    now: datetime | None = None,
    with_event: bool = True,
) -> str | None:
    """Compare-and-set the status; returns the previous status, or None when nothing matched.

    `values` are extra columns set in the same update (activeJobId, removedAt, …).
    """
    now = now or utcnow()
    current = await session.scalar(select(Instance.status).where(Instance.id == instance_id))
    if current is None or current not in allowed_from:
        return None
    stmt = update(Instance).where(Instance.id == instance_id, Instance.status == current)
    if require_no_job:
        stmt = stmt.where(Instance.active_job_id.is_(None))
    stmt = stmt.values(status=to, status_changed_at=now, status_reason=reason[:512], updated_at=now,
                       **(values or {}))
    res = await session.execute(stmt)
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return None
    session.add(InstanceStatusHistory(id=new_id(), instance_id=instance_id, from_status=current, to_status=to,
                                      changed_at=now, reason=reason[:512]))
    if with_event:
        meta = {"fromStatus": current, "toStatus": to}
        meta.update(event_metadata or {})
        write_event(session, instance_id, event_type, event_message, meta, actor_kind=actor_kind,
                    user_id=user_id, job_id=job_id, ts_ms=int(now.timestamp() * 1000))
    publish_after_commit(session, f"instance.{instance_id}.status",
                         {"instanceId": instance_id, "from": current, "to": to, "reason": bus_reason})
    return current


# ---- agent contact (10-core §6.2 rows 17/18, 40 §7) ---------------------------------------------

CONTACT_RECOVERS_FROM = ("UNREACHABLE", "STOPPED", "SUSPENDED", "ERROR")


def loss_threshold_seconds(loss_seconds: float, interval_seconds: float | None) -> float:
    """40 §7.1: max(AGENT_HEARTBEAT_LOSS_SECONDS, 3 × heartbeat interval)."""
    if interval_seconds:
        return max(loss_seconds, 3 * interval_seconds)
    return loss_seconds


def heartbeat_deadline(contact_at: datetime, running_since: datetime | None, threshold: float) -> datetime:
    """Contact time + threshold, never earlier than entering RUNNING + threshold (row 20)."""
    base = contact_at
    if running_since is not None and running_since > base:
        base = running_since
    return base + timedelta(seconds=threshold)


async def apply_agent_contact(
    session: AsyncSession,
    state: AgentState,
    *,
    kind: str,
    loss_seconds: float,
    now: datetime,
) -> str | None:
    """Record agent contact on `state` and apply row 17 (connect/register) or row 18 (frame).

    Returns the previous status when the status changed. The caller writes its own CONNECT or
    REGISTER event; this writes HEARTBEAT_RECOVERED when the instance comes back from UNREACHABLE.
    """
    inst_status, changed_at = (await session.execute(
        select(Instance.status, Instance.status_changed_at).where(Instance.id == state.instance_id)
    )).one()
    recover_from = CONTACT_RECOVERS_FROM if kind in ("connect", "register") else ("UNREACHABLE",)
    previous: str | None = None
    if inst_status in recover_from:
        reason = {"connect": "Agent connected", "register": "Agent registered"}.get(kind, "Agent frames resumed")
        bus_reason = "agent_connect" if kind == "connect" else (
            "registration" if kind == "register" else "heartbeat_recovered")
        if inst_status == "UNREACHABLE" and kind not in ("connect", "register"):
            bus_reason = "heartbeat_recovered"
        previous = await transition(
            session, state.instance_id, allowed_from=(inst_status,), to="RUNNING", reason=reason,
            bus_reason=bus_reason, event_type="HEARTBEAT_RECOVERED", event_message=reason,
            actor_kind="AGENT", now=now, with_event=False,
        )
        if previous is not None:
            changed_at = now
    if state.heartbeat_lost or previous == "UNREACHABLE":
        lost_at = state.heartbeat_lost_at
        downtime = round((now - lost_at).total_seconds(), 3) if lost_at else None
        write_event(session, state.instance_id, "HEARTBEAT_RECOVERED", "Agent contact resumed",
                    {"lostAt": to_iso(lost_at), "downtimeSeconds": downtime,
                     **({"fromStatus": previous, "toStatus": "RUNNING"} if previous else {})},
                    actor_kind="AGENT", ts_ms=int(now.timestamp() * 1000))
        state.heartbeat_lost = False
        state.heartbeat_lost_at = None
    threshold = loss_threshold_seconds(loss_seconds, state.heartbeat_interval_seconds)
    running_since = changed_at if (previous is not None or inst_status == "RUNNING") else None
    state.last_seen_at = now
    state.heartbeat_deadline_at = heartbeat_deadline(now, running_since, threshold)
    state.updated_at = now
    return previous
