"""Wire types of the lifecycle routes (10-core §6.3–§6.9): request bodies, response documents, converters."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from sindri_console.domains.instances.schemas import InstanceOut
from sindri_console.kit.clock import to_iso
from sindri_console.kit.ids import ID_PATTERN
from sindri_console.kit.schema import ApiModel, OutModel
from sindri_console.models.jobs import Backup, InstanceJob

JOB_ACTIONS = ("SUSPEND", "RESUME", "DESTROY", "BACKUP")
JOB_STATUSES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT")
FINISHED_JOB_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT")
BACKUP_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED")
BACKUP_PROFILES = ("USER_DATA", "STANDARD", "FULL")
BULK_ACTIONS = ("suspend", "resume", "destroy")

LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_WAIT_SECONDS = 60


def normalise_profile(value: Any) -> str:
    """USER_DATA | STANDARD | FULL from any case (and the CLI's `user-data` spelling)."""
    if not isinstance(value, str):
        raise ValueError("must be one of USER_DATA, STANDARD, FULL")
    key = value.strip().upper().replace("-", "_")
    if key not in BACKUP_PROFILES:
        raise ValueError("must be one of USER_DATA, STANDARD, FULL")
    return key


def check_label(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 128 or not LABEL_RE.match(value):
        raise ValueError("must be 1-128 characters matching ^[A-Za-z0-9][A-Za-z0-9._-]*$")
    return value


# ---- request bodies ------------------------------------------------------------------------------------


class ActionBody(ApiModel):
    """Body of suspend and resume (optional)."""

    reason: str | None = Field(default=None, max_length=256)


class BackupBody(ApiModel):
    label: str | None = Field(default=None, min_length=1, max_length=128, pattern=LABEL_RE.pattern)
    profile: str = "STANDARD"
    compression_level: int = Field(default=6, ge=1, le=9, strict=True)

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, v: Any) -> Any:
        return None if v is None else check_label(v)

    @field_validator("profile", mode="before")
    @classmethod
    def _profile(cls, v: Any) -> Any:
        return normalise_profile(v)


class BulkOptions(ApiModel):
    backup: bool | None = None
    backup_volume: bool | None = None
    backup_profile: str = "STANDARD"

    @field_validator("backup_profile", mode="before")
    @classmethod
    def _profile(cls, v: Any) -> Any:
        return normalise_profile(v)

    @property
    def with_backup(self) -> bool:
        return bool(self.backup if self.backup is not None else self.backup_volume)


class BulkBody(ApiModel):
    action: str = Field(json_schema_extra={"enum": list(BULK_ACTIONS)})  # any case is accepted
    instance_ids: list[Annotated[str, StringConstraints(pattern=ID_PATTERN.pattern)]] = Field(
        min_length=1, max_length=100)
    options: BulkOptions = Field(default_factory=BulkOptions)

    @field_validator("action", mode="before")
    @classmethod
    def _action(cls, v: Any) -> Any:
        if not isinstance(v, str) or v.strip().lower() not in BULK_ACTIONS:
            raise ValueError("must be one of suspend, resume, destroy")
        return v.strip().lower()


# ---- response documents (OpenAPI) ----------------------------------------------------------------------


class JobOut(OutModel):
    id: str
    instance_id: str
    action: Literal["SUSPEND", "RESUME", "DESTROY", "BACKUP"]
    status: Literal["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT"]
    previous_status: str
    params: dict[str, Any]
    step: Literal["BACKUP", "TEARDOWN"] | None
    bulk_id: str | None
    requested_by: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    error: str | None
    output: str | None


class BackupOut(OutModel):
    id: str
    instance_id: str
    job_id: str | None
    label: str
    profile: Literal["USER_DATA", "STANDARD", "FULL"]
    compression_level: int
    purpose: Literal["MANUAL", "PRE_DESTROY"]
    status: Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED"]
    location: str | None
    size_bytes: int | None
    error: str | None
    requested_by: str | None
    created_at: str
    completed_at: str | None


class ActionResultOut(OutModel):
    instance: InstanceOut
    job: JobOut
    backup: BackupOut | None


class LifecycleOut(OutModel):
    instance_id: str
    status: str
    available_actions: list[Literal["suspend", "resume", "backup", "destroy", "deregister"]]
    active_job: JobOut | None
    managed_provider: bool
    driver_available: bool
    agent_connected: bool


class JobPage(OutModel):
    data: list[JobOut]
    pagination: dict[str, Any]


class BackupPage(OutModel):
    data: list[BackupOut]
    pagination: dict[str, Any]


class BulkItemOut(OutModel):
    id: str
    name: str | None
    result: Literal["ACCEPTED", "NOT_FOUND", "FORBIDDEN", "CONFLICT"]
    error: str | None
    job_id: str | None
    status: str | None


class BulkSummaryOut(OutModel):
    requested: int
    unique: int
    accepted: int
    rejected: int


class BulkOut(OutModel):
    bulk_id: str
    action: str
    results: list[BulkItemOut]
    summary: BulkSummaryOut


# ---- converters ----------------------------------------------------------------------------------------


def job_to_wire(job: InstanceJob | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {
        "id": job.id,
        "instanceId": job.instance_id,
        "action": job.action,
        "status": job.status,
        "previousStatus": job.previous_status,
        "params": dict(job.params or {}),
        "step": job.step,
        "bulkId": job.bulk_id,
        "requestedBy": job.requested_by,
        "createdAt": to_iso(job.created_at),
        "startedAt": to_iso(job.started_at),
        "finishedAt": to_iso(job.finished_at),
        "exitCode": job.exit_code,
        "error": job.error,
        "output": job.output,
    }


def backup_to_wire(backup: Backup | None) -> dict[str, Any] | None:
    if backup is None:
        return None
    return {
        "id": backup.id,
        "instanceId": backup.instance_id,
        "jobId": backup.job_id,
        "label": backup.label,
        "profile": backup.profile,
        "compressionLevel": backup.compression_level,
        "purpose": backup.purpose,
        "status": backup.status,
        "location": backup.location,
        "sizeBytes": backup.size_bytes,
        "error": backup.error,
        "requestedBy": backup.requested_by,
        "createdAt": to_iso(backup.created_at),
        "completedAt": to_iso(backup.completed_at),
    }
