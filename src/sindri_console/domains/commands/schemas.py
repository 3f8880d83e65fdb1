"""Request and response shapes of the command routes (20-ops §6.3, §6.5, §6.6)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StrictBool, StrictInt, field_validator, model_validator
from pydantic import StrictStr as _StrictStr

from sindri_console.kit.schema import ApiModel, OutModel

ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INTERPRETER = re.compile(r"^[A-Za-z0-9._+-]+$|^/[A-Za-z0-9._+/-]+$")
STDIN_MAX_BYTES = 524_288
SCRIPT_MAX_BYTES = 65_536
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_SCRIPT_TIMEOUT_MS = 60_000
MAX_TARGETS = 100



def _utf8(v: str) -> str:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 text") from None
    return v


def _no_nul(v: str) -> str:
    if "\x00" in v:
        raise ValueError("must not contain NUL characters")
    return v


# every text field is valid UTF-8; text that reaches a command line or a column also has no NUL
BinaryText = Annotated[_StrictStr, AfterValidator(_utf8)]
StrictStr = Annotated[_StrictStr, AfterValidator(_utf8), AfterValidator(_no_nul)]
Program = Annotated[StrictStr, Field(min_length=1, max_length=4096)]
Arg = Annotated[StrictStr, Field(max_length=1024)]
TimeoutMs = Annotated[StrictInt, Field(ge=1000, le=3_600_000)]
QueueTtl = Annotated[StrictInt, Field(ge=10, le=86_400)]
TargetId = Annotated[StrictStr, Field(min_length=1, max_length=128)]


class _Options(ApiModel):
    """Fields every command request shares."""

    env: dict[str, StrictStr] | None = None
    working_dir: Annotated[StrictStr, Field(max_length=512)] | None = None
    timeout_ms: TimeoutMs | None = None
    queue_ttl_sec: QueueTtl | None = None
    wait: StrictBool = True

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is None:
            return v
        if len(v) > 100:
            raise ValueError("must have at most 100 entries")
        for key, value in v.items():
            if len(key) > 256 or not ENV_KEY.match(key):
                raise ValueError(f"key {key[:64]!r} must match ^[A-Za-z_][A-Za-z0-9_]*$ (at most 256 characters)")
            if len(value) > 4096:
                raise ValueError(f"value of {key} must be at most 4096 characters")
        return v

    @field_validator("working_dir")
    @classmethod
    def _working_dir(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith("/"):
            raise ValueError("must be an absolute path")
        if "\x00" in v:
            raise ValueError("must not contain NUL")
        return v


class _Exec(_Options):
    command: Program | None = None
    args: Annotated[list[Arg], Field(max_length=64)] | None = None
    argv: Annotated[list[StrictStr], Field(min_length=1, max_length=65)] | None = None
    stdin: BinaryText | None = None

    @field_validator("argv")
    @classmethod
    def _argv(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not 1 <= len(v[0]) <= 4096:
            raise ValueError("item 0 must be 1-4096 characters")
        if any(len(a) > 1024 for a in v[1:]):
            raise ValueError("items after the first must be at most 1024 characters")
        return v

    @field_validator("stdin")
    @classmethod
    def _stdin(cls, v: str | None) -> str | None:
        if v is not None and len(v.encode("utf-8", "surrogatepass")) > STDIN_MAX_BYTES:
            raise ValueError(f"must be at most {STDIN_MAX_BYTES} bytes of UTF-8")
        return v

    @model_validator(mode="after")
    def _shape(self) -> _Exec:
        if self.command is not None and self.argv is not None:
            raise ValueError("give either command or argv, not both")
        if self.command is None and self.argv is None:
            raise ValueError("command or argv is required")
        if self.args is not None and self.command is None:
            raise ValueError("args is only allowed with command")
        return self

    @property
    def mode(self) -> str:
        return "SHELL" if self.command is not None and self.args is None else "EXEC"

    @property
    def program(self) -> str:
        return self.command if self.command is not None else self.argv[0]  # type: ignore[index]

    @property
    def arguments(self) -> list[str]:
        if self.command is not None:
            return list(self.args or [])
        return list(self.argv[1:])  # type: ignore[index]


class CommandIn(_Exec):
    instance_id: TargetId


def _unique(v: list[str]) -> list[str]:
    if len(set(v)) != len(v):
        raise ValueError("must not contain duplicates")
    return v


class BulkIn(_Exec):
    instance_ids: Annotated[list[TargetId], Field(min_length=1, max_length=MAX_TARGETS)]

    @field_validator("instance_ids")
    @classmethod
    def _unique_ids(cls, v: list[str]) -> list[str]:
        return _unique(v)


class ScriptIn(_Options):
    instance_ids: Annotated[list[TargetId], Field(min_length=1, max_length=MAX_TARGETS)] | None = None
    instance_id: TargetId | None = None
    script: StrictStr
    interpreter: Annotated[StrictStr, Field(min_length=1, max_length=128)] = "bash"

    @field_validator("instance_ids")
    @classmethod
    def _unique_ids(cls, v: list[str] | None) -> list[str] | None:
        return v if v is None else _unique(v)

    @field_validator("script")
    @classmethod
    def _script(cls, v: str) -> str:
        size = len(v.encode("utf-8", "surrogatepass"))
        if size < 1 or size > SCRIPT_MAX_BYTES:
            raise ValueError(f"must be 1-{SCRIPT_MAX_BYTES} bytes of UTF-8")
        return v

    @field_validator("interpreter")
    @classmethod
    def _interpreter(cls, v: str) -> str:
        if not INTERPRETER.match(v):
            raise ValueError("must be a program name or an absolute path, without spaces or arguments")
        return v

    @model_validator(mode="after")
    def _targets(self) -> ScriptIn:
        if (self.instance_ids is None) == (self.instance_id is None):
            raise ValueError("give either instanceIds or instanceId")
        return self

    @property
    def targets(self) -> list[str]:
        return self.instance_ids if self.instance_ids is not None else [self.instance_id]  # type: ignore[list-item]


# ---- responses (OpenAPI) -----------------------------------------------------------------------


class CommandOut(OutModel):
    id: str
    instance_id: str
    instance_name: str | None = None
    user_id: str | None = None
    origin: str
    batch_id: str | None = None
    task_run_id: str | None = None
    remediation_id: str | None = None
    mode: str
    command: str | None = None
    args: list[str]
    interpreter: str | None = None
    script_sha256: str | None = None
    script_bytes: int | None = None
    has_script: bool
    script: str | None = None
    env_keys: list[str]
    env: dict[str, str]
    working_dir: str | None = None
    has_stdin: bool
    timeout_ms: int
    output_limit_bytes: int
    status: str
    error_code: str | None = None
    error: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    pid: int | None = None
    stdout: str | None = None
    stderr: str | None = None
    stdout_bytes: int | None = None
    stderr_bytes: int | None = None
    stdout_truncated: bool
    stderr_truncated: bool
    duration_ms: int | None = None
    delivery_attempts: int
    created_at: str
    sent_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    expires_at: str
    output_clipped: bool | None = None


class PaginationOut(OutModel):
    page: int
    limit: int
    total: int
    total_pages: int


class CommandPage(OutModel):
    data: list[CommandOut]
    pagination: PaginationOut


class ItemErrorOut(OutModel):
    code: str
    status_code: int
    message: str


class BulkItemOut(OutModel):
    instance_id: str
    accepted: bool
    execution: CommandOut | None = None
    error: ItemErrorOut | None = None


class BulkSummaryOut(OutModel):
    total: int
    accepted: int
    rejected: int
    succeeded: int
    failed: int
    timed_out: int
    cancelled: int
    pending: int


class BulkOut(OutModel):
    batch_id: str
    summary: BulkSummaryOut
    results: list[BulkItemOut]

