"""SQL of the instance event list (10-core §9.9)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from sindri_console.models.instance import InstanceEvent


def events_statement(instance_id: str, *, types: list[str] | None, from_ms: int | None,
                     to_ms: int | None) -> Select[Any]:
    """Events of one instance, newest first (timestamp desc, then id desc): served by
    the (instance_id, ts_ms, id) index."""
    stmt = select(InstanceEvent).where(InstanceEvent.instance_id == instance_id)
    if types:
        stmt = stmt.where(InstanceEvent.type.in_(types))
    if from_ms is not None:
        stmt = stmt.where(InstanceEvent.ts_ms >= from_ms)
    if to_ms is not None:
        stmt = stmt.where(InstanceEvent.ts_ms <= to_ms)
    return stmt.order_by(InstanceEvent.ts_ms.desc(), InstanceEvent.id.desc())
