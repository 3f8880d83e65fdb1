"""Response documents of the agent routes (10-core §9.7, §9.8)."""

from __future__ import annotations

from sindri_console.kit.schema import OutModel


class ProcessOut(OutModel):
    pid: int
    ppid: int | None
    name: str | None
    username: str | None
    status: str | None
    cpu_percent: float | None
    memory_percent: float | None
    memory_rss_bytes: int | None
    create_time: str | None
    command: str | None


class ProcessesOut(OutModel):
    instance_id: str
    timestamp: str | None
    received_at: str | None
    data_available: bool
    refreshed: bool
    total_count: int | None
    data: list[ProcessOut]


class ExtensionOut(OutModel):
    name: str
    version: str | None
    status: str
    declared: bool
    status_since: str | None
    error: str | None


class ExtensionsOut(OutModel):
    instance_id: str
    instance_status: str
    reported_at: str | None
    data_available: bool
    refreshed: bool
    reason: str | None
    cli_version: str | None
    data: list[ExtensionOut]
