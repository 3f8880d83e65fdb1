"""Wire types of deployments (20-ops §7.2, §7.8) and the fleet deployments timeline (10-core §7.3)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from sindri_console.kit.schema import ApiModel, OutModel


class DeploymentRequestDoc(ApiModel):
    """OpenAPI description of `POST /api/v1/deployments`; the body is parsed by `parse_request`."""

    yaml_config: str | None = Field(default=None, description="sindri.yaml text ≤ 65 536 bytes (aliases: "
                                    "yaml_config, yamlContent)")
    template_id: str | None = Field(default=None, description="template id or slug")
    name: str | None = None
    provider: str | None = None
    region: str | None = Field(default=None, min_length=1, max_length=64)
    team_id: str | None = None
    secrets: dict[str, str] | None = Field(default=None, description="NAME → value, ≤ 100 entries")
    docker_host: str | None = Field(default=None, description="one of DEPLOY_DOCKER_HOSTS (provider docker)")


class DeploymentOut(OutModel):
    id: str
    name: str
    instance_id: str
    template_id: str | None
    team_id: str | None
    provider: str
    region: str | None
    status: str
    yaml_content: str
    config_hash: str
    declared: dict[str, Any]
    secret_names: list[str]
    docker_host: str | None
    warnings: list[str]
    initiated_by: str
    created_at: str
    started_at: str | None
    completed_at: str | None
    duration_ms: int | None
    exit_code: int | None
    error: str | None
    logs: str
    logs_bytes: int
    logs_truncated: bool


class TimelineBucketOut(OutModel):
    hour: str
    deployments: int
    succeeded: int
    failed: int
    in_progress: int


class TimelineOut(OutModel):
    data: list[TimelineBucketOut]
    total24h: int = Field(alias="total24h")
    succeeded: int
    failed: int
    success_rate: float | None
    from_: str = Field(alias="from")
    to: str
