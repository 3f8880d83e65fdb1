"""The retention loop (10-core §10, §16.2): lease `retention`, every 10 minutes, at most 60 s per run.

Each retention task deletes expired rows of one table in batches of `BATCH_SIZE`, one short write
unit per batch, until a batch comes back short or the run's time budget is spent; whatever is left
is picked up by the next run. Built-in tasks: raw metric points, 1-minute, 15-minute and 1-hour
rollups, heartbeats (never the newest row of an instance), instance status history, instance events
and audit entries.

Other domains plug their own tables into the same loop instead of writing another one:

    from sindri_console.db.dialect import table_of
    from sindri_console.loops.retention import delete_expired, register_retention

    async def _expired_logs(rt: Runtime, batch: int) -> int:
        cutoff = clock.now_ms() - rt.settings.LOG_RETENTION_DAYS * 86_400_000
        return await delete_expired(rt.db, table_of(LogEntry), LogEntry.ts_ms < cutoff, batch)

    register_retention("logs", _expired_logs)      # e.g. in the domain's hooks.startup(rt)

A task receives the runtime and the batch size, deletes at most `batch` rows in one transaction and
returns how many it deleted. `delete_expired` does exactly that for a table and an expiry condition.
Registering the same name again replaces the task.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import ColumnElement, Table, and_, delete, exists, or_, select, tuple_
from sqlalchemy.orm import aliased

from sindri_console.db.dialect import table_of
from sindri_console.db.engine import Database
from sindri_console.kit.clock import clock, utcnow
from sindri_console.models.audit import AuditLog
from sindri_console.models.instance import Heartbeat, InstanceEvent, InstanceStatusHistory
from sindri_console.models.metrics import Metric1h, Metric1m, Metric15m, MetricPoint

if TYPE_CHECKING:
    from sindri_console.runtime import Runtime

log = structlog.get_logger("sindri_console.retention")

LEASE = "retention"
INTERVAL_SECONDS = 600
LEASE_TTL_SECONDS = 900
BATCH_SIZE = 5000
RUN_BUDGET_SECONDS = 60.0
DAY_MS = 86_400_000

RetentionTask = Callable[["Runtime", int], Awaitable[int]]

_tasks: dict[str, RetentionTask] = {}


def register_retention(name: str, task: RetentionTask) -> None:
    """Add (or replace) a retention task run by the `retention` loop; see the module docstring."""
    _tasks[name] = task


def retention_tasks() -> dict[str, RetentionTask]:
    return dict(_tasks)


async def delete_expired(db: Database, table: Table, expired: ColumnElement[bool], batch: int) -> int:
    """Delete at most `batch` rows of `table` matching `expired`, in one write unit; the count deleted.

    Rows are chosen by primary key through a bounded subquery, so the statement never touches more
    than `batch` rows whatever the table size.
    """
    pk = list(table.primary_key.columns)
    # no correlation: the subquery reads the same table as the DELETE and must keep its own FROM
    chosen = select(*pk).where(expired).limit(batch).correlate(None)
    target = pk[0].in_(chosen) if len(pk) == 1 else tuple_(*pk).in_(chosen)
    async with db.write() as s:
        result = await s.execute(delete(table).where(target))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _days_ago_ms(days: int) -> int:
    return clock.now_ms() - days * DAY_MS


async def _metric_points(rt: Runtime, batch: int) -> int:
    cutoff = _days_ago_ms(rt.settings.METRICS_RAW_RETENTION_DAYS)
    return await delete_expired(rt.db, table_of(MetricPoint), MetricPoint.ts_ms < cutoff, batch)


async def _metric_minutes(rt: Runtime, batch: int) -> int:
    cutoff = _days_ago_ms(rt.settings.METRICS_1M_RETENTION_DAYS)
    return await delete_expired(rt.db, table_of(Metric1m), Metric1m.bucket_ms < cutoff, batch)


async def _metric_quarters(rt: Runtime, batch: int) -> int:
    # 15-minute rows are built from 1-minute rows and kept as long as them
    cutoff = _days_ago_ms(rt.settings.METRICS_1M_RETENTION_DAYS)
    return await delete_expired(rt.db, table_of(Metric15m), Metric15m.bucket_ms < cutoff, batch)


async def _metric_hours(rt: Runtime, batch: int) -> int:
    cutoff = _days_ago_ms(rt.settings.METRICS_1H_RETENTION_DAYS)
    return await delete_expired(rt.db, table_of(Metric1h), Metric1h.bucket_ms < cutoff, batch)


async def _heartbeats(rt: Runtime, batch: int) -> int:
    cutoff = utcnow() - timedelta(days=rt.settings.HEARTBEAT_RETENTION_DAYS)
    newer = aliased(Heartbeat)
    # a row goes only when its instance has a newer one: `lastHeartbeat` survives any silence
    has_newer = exists().where(
        newer.instance_id == Heartbeat.instance_id,
        or_(newer.timestamp > Heartbeat.timestamp,
            and_(newer.timestamp == Heartbeat.timestamp, newer.id > Heartbeat.id)),
    )
    return await delete_expired(rt.db, table_of(Heartbeat), and_(Heartbeat.timestamp < cutoff, has_newer),
                                batch)


async def _status_history(rt: Runtime, batch: int) -> int:
    cutoff = utcnow() - timedelta(days=rt.settings.STATUS_HISTORY_RETENTION_DAYS)
    return await delete_expired(rt.db, table_of(InstanceStatusHistory),
                                InstanceStatusHistory.changed_at < cutoff, batch)


async def _events(rt: Runtime, batch: int) -> int:
    cutoff = _days_ago_ms(rt.settings.EVENT_RETENTION_DAYS)
    return await delete_expired(rt.db, table_of(InstanceEvent), InstanceEvent.ts_ms < cutoff, batch)


async def _audit(rt: Runtime, batch: int) -> int:
    cutoff = _days_ago_ms(rt.settings.AUDIT_RETENTION_DAYS)
    return await delete_expired(rt.db, table_of(AuditLog), AuditLog.ts_ms < cutoff, batch)


for _name, _task in (
    ("metric_point", _metric_points),
    ("metric_1m", _metric_minutes),
    ("metric_15m", _metric_quarters),
    ("metric_1h", _metric_hours),
    ("heartbeat", _heartbeats),
    ("instance_status_history", _status_history),
    ("instance_event", _events),
    ("audit_log", _audit),
):
    register_retention(_name, _task)


async def run_retention(rt: Runtime, *, batch: int = BATCH_SIZE,
                        budget_seconds: float = RUN_BUDGET_SECONDS) -> dict[str, Any]:
    """One retention run: every task until it runs dry or the time budget is spent.

    Returns rows deleted per task plus `complete` (False when the budget ran out first).
    """
    deadline = time.monotonic() + budget_seconds
    deleted: dict[str, int] = {}
    complete = True
    for name, task in retention_tasks().items():
        total = 0
        while True:
            if time.monotonic() >= deadline:
                complete = False
                break
            try:
                n = await task(rt, batch)
            except Exception as exc:  # one broken task must not stop the others
                log.warning("retention_task_failed", task=name, error=type(exc).__name__, detail=str(exc)[:200])
                break
            total += n
            if n < batch:
                break
        if total:
            deleted[name] = total
        if not complete:
            break
    if deleted:
        log.info("retention_run", deleted=deleted, complete=complete)
    return {"deleted": deleted, "complete": complete}
