"""Wire documents of the log routes (10-core §11, §12). Ingest bodies are validated by plain
functions in `service.py` for speed; these models describe them for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from sindri_console.kit.schema import ApiModel, OutModel


class LogEntryIn(ApiModel):
    instance_id: str | None = Field(None, description="Required for user keys; an agent key defaults to its instance")
    level: str = Field(description="DEBUG, INFO, WARN, ERROR or an alias (warning, err, fatal, ...)")
    source: str = Field(description="AGENT, EXTENSION, BUILD, APP or SYSTEM")
    message: str = Field(min_length=1, max_length=10_000)
    metadata: dict[str, Any] | None = Field(None, description="At most 8 KiB serialised")
    deployment_id: str | None = Field(None, max_length=128)
    path: str | None = Field(None, max_length=512)
    timestamp: str | None = Field(None, description="ISO 8601 with an offset; default: receive time")


class LogBatchIn(BaseModel):
    entries: list[dict[str, Any]] = Field(min_length=1, max_length=1000,
                                          description="1-1000 objects shaped like a single entry")


class LogOut(OutModel):
    id: str
    seq: int
    instance_id: str
    level: str
    source: str
    message: str
    metadata: dict[str, Any] | None = None
    deployment_id: str | None = None
    path: str | None = None
    timestamp: str
    received_at: str


class BatchError(BaseModel):
    index: int
    field: str
    message: str


class BatchOut(BaseModel):
    accepted: int
    rejected: int
    errors: list[BatchError]


class LogPagination(OutModel):
    page: int
    limit: int
    total: int
    total_pages: int
    total_capped: bool


class LogPage(BaseModel):
    data: list[LogOut]
    pagination: LogPagination


class LevelCounts(BaseModel):
    DEBUG: int
    INFO: int
    WARN: int
    ERROR: int


class SourceCounts(BaseModel):
    AGENT: int
    EXTENSION: int
    BUILD: int
    APP: int
    SYSTEM: int


class TopInstance(OutModel):
    instance_id: str
    instance_name: str
    count: int


class LogStatsOut(OutModel):
    from_: str = Field(alias="from")
    to: str
    total: int
    by_level: LevelCounts
    by_source: SourceCounts
    top_instances: list[TopInstance]


class InstanceLogStatsOut(OutModel):
    instance_id: str
    from_: str = Field(alias="from")
    to: str
    total: int
    by_level: LevelCounts
    by_source: SourceCounts
