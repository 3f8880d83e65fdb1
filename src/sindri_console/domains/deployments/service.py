"""Deployments (20-ops §7): request rules in the §7.6 order, creation in one transaction, reads, and the
fleet deployments timeline (10-core §7.3). The job itself is `runner.py`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from sindri_console.db.engine import publish_after_commit
from sindri_console.domains.deployments import repository as repo
from sindri_console.domains.deployments import vault
from sindri_console.domains.deployments.sindri_yaml import (
    DISTROS,
    MAX_SECRETS,
    MAX_YAML_BYTES,
    SECRET_NAME_RE,
    FieldError,
    ParsedYaml,
    apply_overrides,
    canonical_provider,
    declared_config,
    declared_extensions,
    declared_region,
    deployment_provider,
    docker_host_violation,
    hardening_violations,
    is_storable_text,
    parse_sindri_yaml,
    reserved_secret_violations,
    sizing,
    validate_sindri_yaml,
)
from sindri_console.domains.instances.geo import resolve_geo
from sindri_console.domains.instances.state import record_initial_status, write_event
from sindri_console.domains.templates import repository as templates_repo
from sindri_console.kit.audit import write_audit
from sindri_console.kit.auth import Principal
from sindri_console.kit.clock import to_iso, utcnow
from sindri_console.kit.errors import ApiError, validation_errors
from sindri_console.kit.ids import new_id
from sindri_console.models.deployments import Deployment
from sindri_console.models.identity import Team
from sindri_console.models.instance import Instance
from sindri_console.runtime import Runtime

CLI_MISSING_FOR_DEPLOY = "Deployments need the Sindri CLI: install it or set SINDRI_BIN_PATH"
MAX_SECRET_VALUE_CHARS = 65_536
IGNORED_FIELDS = ("vm_size", "vmSize", "memory_gb", "memoryGb", "storage_gb", "storageGb")
# The console variables the job adds (§7.7 step 2); SINDRI_REGION only when a region is set.
CONSOLE_VARIABLES = ("SINDRI_CONSOLE_URL", "SINDRI_CONSOLE_API_KEY", "SINDRI_INSTANCE_ID", "SINDRI_INSTANCE_NAME",
                     "SINDRI_PROVIDER", "SINDRI_REGION")


# ---- request body (§7.2) -------------------------------------------------------------------------------


@dataclass
class DeploymentRequest:
    yaml_config: str | None = None
    template_ref: str | None = None
    name: str | None = None
    provider: str | None = None
    region: str | None = None
    team_id: str | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    docker_host: str | None = None
    warnings: list[str] = field(default_factory=list)


def _pick(data: dict[str, Any], *names: str) -> tuple[str | None, Any]:
    for name in names:
        if name in data and data[name] is not None:
            return name, data[name]
    return None, None


def parse_request(data: Any) -> DeploymentRequest:
    """The body's fields with their §7.2 rules; every problem is a 422 detail with its field."""
    if data is None:
        raise ApiError(422, "Invalid request: a JSON object body is required",
                       [{"field": "body", "message": "is required"}])
    if not isinstance(data, dict):
        raise ApiError(422, "Invalid request: the body must be a JSON object",
                       [{"field": "body", "message": "must be a JSON object"}])
    req = DeploymentRequest()
    details: list[dict[str, str]] = []

    def text(names: tuple[str, ...], lo: int, hi: int) -> str | None:
        key, value = _pick(data, *names)
        if key is None:
            return None
        if not isinstance(value, str):
            details.append({"field": names[0], "message": "must be a string"})
            return None
        if not lo <= len(value) <= hi:
            details.append({"field": names[0], "message": f"must be {lo}-{hi} characters"})
            return None
        if not is_storable_text(value):
            details.append({"field": names[0], "message": "must be Unicode text without NUL or lone surrogates"})
            return None
        return value

    req.yaml_config = text(("yamlConfig", "yaml_config", "yamlContent", "yaml_content"), 1, 10 * MAX_YAML_BYTES)
    if req.yaml_config is not None and len(req.yaml_config.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        details.append({"field": "yamlConfig", "message": f"must be at most {MAX_YAML_BYTES} bytes"})
    req.template_ref = text(("templateId", "template_id"), 1, 128)
    req.name = text(("name",), 1, 63)
    req.provider = text(("provider",), 1, 32)
    req.region = text(("region",), 1, 64)
    req.team_id = text(("teamId", "team_id"), 1, 128)
    req.docker_host = text(("dockerHost", "docker_host"), 1, 512)
    key, secrets = _pick(data, "secrets")
    if key is not None:
        if not isinstance(secrets, dict):
            details.append({"field": "secrets", "message": "must be an object of NAME to value"})
        elif len(secrets) > MAX_SECRETS:
            details.append({"field": "secrets", "message": f"must have at most {MAX_SECRETS} entries"})
        else:
            for name, value in secrets.items():
                where = f"secrets.{name[:130]}"
                if not SECRET_NAME_RE.fullmatch(name):
                    details.append({"field": where,
                                    "message": "name must be an upper-case letter then up to 127 of [A-Z0-9_]"})
                elif not isinstance(value, str) or not 1 <= len(value) <= MAX_SECRET_VALUE_CHARS:
                    details.append({"field": where,
                                    "message": f"value must be a string of 1-{MAX_SECRET_VALUE_CHARS} characters"})
                elif not is_storable_text(value):
                    details.append({"field": where, "message": "value must be Unicode text without NUL"})
                else:
                    req.secrets[name] = value
    if req.yaml_config is None and req.template_ref is None and not any(
            d["field"] in ("yamlConfig", "templateId") for d in details):
        details.append({"field": "yamlConfig", "message": "give yamlConfig or templateId"})
    if req.template_ref is not None and req.yaml_config is None and req.name is None and not any(
            d["field"] == "name" for d in details):
        details.append({"field": "name", "message": "is required when deploying a template"})
    if details:
        raise validation_errors(details)
    for ignored in IGNORED_FIELDS:
        if ignored in data:
            req.warnings.append(f"{ignored} is ignored: sizing comes from the sindri.yaml")
    return req


# ---- validation and creation (§7.6) ---------------------------------------------------------------------


@dataclass
class Accepted:
    """Everything the creating transaction needs, computed before it starts."""

    yaml_content: str
    parsed: ParsedYaml
    name: str
    provider: str
    region: str | None
    template_id: str | None
    secret_names: list[str]
    body_only_names: list[str]
    warnings: list[str]


def _yaml_errors(errors: list[FieldError]) -> ApiError:
    return validation_errors([e.under("yamlConfig").as_dict() for e in errors])


async def _resolve_template(rt: Runtime, req: DeploymentRequest) -> tuple[str | None, str | None]:
    """(template id, YAML built from it when the body has no yamlConfig)."""
    if req.template_ref is None:
        return None, None
    async with rt.db.read() as s:
        template = await templates_repo.by_id_or_slug(s, req.template_ref)
    if template is None:
        raise ApiError(422, f"Template '{req.template_ref}' not found",
                       [{"field": "templateId", "message": f"Template '{req.template_ref}' not found"}])
    if req.yaml_config is not None:
        return template.id, None
    if not (template.validation or {}).get("valid"):
        msg = f"Template '{template.slug}' is not a valid sindri.yaml"
        raise ApiError(422, msg, [{"field": "templateId", "message": msg}])
    parsed = parse_sindri_yaml(template.yaml_content)
    if not isinstance(parsed, ParsedYaml):
        msg = f"Template '{template.slug}' is not a valid sindri.yaml"
        raise ApiError(422, msg, [{"field": "templateId", "message": msg}])
    return template.id, apply_overrides(parsed, name=req.name, provider=req.provider)


async def _check_team(rt: Runtime, principal: Principal, team_id: str | None) -> None:
    if team_id is None:
        return
    if principal.is_admin:
        async with rt.db.read() as s:
            if await s.scalar(select(Team.id).where(Team.id == team_id)) is not None:
                return
        raise ApiError(422, "Invalid request: teamId is not an existing team",
                       [{"field": "teamId", "message": "is not an existing team"}])
    if team_id not in principal.memberships:
        raise ApiError(422, "Invalid request: teamId is not one of your teams",
                       [{"field": "teamId", "message": "is not one of your teams"}])


def _declared_secrets(parsed: ParsedYaml) -> list[tuple[str, bool]]:
    entries = parsed.document.get("secrets")
    found: list[tuple[str, bool]] = []
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                found.append((entry["name"], entry.get("required") is True))
    return found


async def validate_request(rt: Runtime, principal: Principal, req: DeploymentRequest) -> Accepted:
    """Every check before the name and CLI checks, in the §7.6 order; 422 on the first failing stage."""
    settings = rt.settings
    await _check_team(rt, principal, req.team_id)
    template_id, built = await _resolve_template(rt, req)
    yaml_content = built if built is not None else req.yaml_config
    assert yaml_content is not None
    parsed = parse_sindri_yaml(yaml_content)
    if not isinstance(parsed, ParsedYaml):
        raise _yaml_errors(parsed)
    result = validate_sindri_yaml(parsed)
    # reserved names are their own stage (below), with the body's names too
    reserved_in_yaml = set(reserved_secret_violations(parsed))
    schema_errors = [e for e in result.errors if e not in reserved_in_yaml]
    if schema_errors:
        raise _yaml_errors(schema_errors)
    doc_name = parsed.document["name"]
    provider = deployment_provider(parsed)
    assert provider is not None  # the schema check guarantees a deployable provider
    details: list[dict[str, str]] = []
    if req.yaml_config is not None and req.name is not None and req.name != doc_name:
        details.append({"field": "name", "message": f"must equal the YAML name '{doc_name}'"})
    if req.yaml_config is not None and req.provider is not None and canonical_provider(req.provider) != provider:
        details.append({"field": "provider", "message": f"must equal the YAML deployment.provider '{provider}'"})
    if details:
        raise validation_errors(details)

    stage = reserved_secret_violations(parsed, req.secrets.keys(), yaml_field_prefix="yamlConfig")
    stage += [e.under("yamlConfig") for e in hardening_violations(
        parsed, settings.DEPLOY_ALLOW_PRIVILEGED_DOCKER, settings.DEPLOY_DOCKER_HOSTS)]
    host_problem = docker_host_violation(req.docker_host, provider, settings.DEPLOY_DOCKER_HOSTS)
    if host_problem is not None:
        stage.append(host_problem)
    if stage:
        raise validation_errors([e.as_dict() for e in stage])

    declared = _declared_secrets(parsed)
    declared_names = {name for name, _ in declared}
    body_only = [name for name in req.secrets if name not in declared_names]
    entries = declared + [(name, False) for name in body_only]
    warnings = list(result.warnings) + list(req.warnings)
    unresolved = [(name, required) for name, required in entries if name not in req.secrets]
    if unresolved:
        # a new instance has no instance-bound vault secrets: only global ones can still resolve
        global_names = await vault.global_deployment_secret_names(rt, [name for name, _ in unresolved])
        unresolved = [(name, required) for name, required in unresolved if name not in global_names]
    missing_required = [name for name, required in unresolved if required]
    if missing_required:
        msg = f"Required secret(s) not available: {', '.join(missing_required)}"
        raise ApiError(422, msg, [{"field": "secrets", "message": msg}])
    for name, _ in unresolved:
        warnings.append(f"secret {name} has no value (not in the request or the vault) and is left out")
    if not settings.SINDRI_CONSOLE_PUBLIC_URL:
        warnings.append("SINDRI_CONSOLE_PUBLIC_URL is not set on the console: the deployed agent is not told "
                        "where to connect (SINDRI_CONSOLE_URL is left out)")
    dropped = {name for name, _ in unresolved}
    region = req.region if req.region is not None else declared_region(parsed)
    return Accepted(
        yaml_content=yaml_content, parsed=parsed, name=doc_name, provider=provider, region=region,
        template_id=template_id, secret_names=[name for name, _ in entries if name not in dropped],
        body_only_names=body_only, warnings=warnings,
    )


def _cli_present(rt: Runtime) -> bool:
    from sindri_console.domains.version.service import cli_of

    # a filesystem check of SINDRI_BIN_PATH / PATH; nothing is spawned on the request path
    return cli_of(rt).locate() is not None


async def create_deployment(rt: Runtime, principal: Principal, req: DeploymentRequest) -> dict[str, Any]:
    """Validate (§7.6 order), then in ONE transaction: the instance (DEPLOYING, row 2), the deployment
    (PENDING), the body's secrets in the vault and the DEPLOY audit entry. After commit
    `ops.wake.deploy` and `instance.<id>.status` are published. Two concurrent requests for one name
    end as one success and one 409 (the live-name unique index)."""
    accepted = await validate_request(rt, principal, req)
    async with rt.db.read() as s:
        status = await repo.live_instance_status(s, accepted.name)
    if status is not None:
        raise _name_conflict(accepted.name, status)
    if not _cli_present(rt):
        raise ApiError(503, CLI_MISSING_FOR_DEPLOY)
    if req.secrets:
        vault.require_key(rt.settings)

    now = utcnow()
    instance_id, deployment_id = new_id(), new_id()
    disk_gb, size_id = sizing(accepted.parsed)
    distro_raw = accepted.parsed.document.get("distro")
    distro = distro_raw.strip().lower() if isinstance(distro_raw, str) else None
    declared = declared_config(accepted.parsed, provider=accepted.provider, region=accepted.region,
                               extra_secret_names=accepted.body_only_names, known_secret_names=req.secrets.keys())
    instance = Instance(
        id=instance_id, name=accepted.name, provider=accepted.provider, region=accepted.region,
        distro=distro if distro in DISTROS else None, extensions=declared_extensions(accepted.parsed),
        config_hash=None, ssh_endpoint=None, docker_host=req.docker_host, size_id=size_id, disk_gb=disk_gb,
        tags={}, team_id=req.team_id, status="DEPLOYING", status_reason="Deployment requested",
        status_changed_at=now, created_at=now, updated_at=now, created_by=principal.user_id,
    )
    geo = resolve_geo(provider=accepted.provider, region=accepted.region, default_lat=rt.settings.DEFAULT_GEO_LAT,
                      default_lon=rt.settings.DEFAULT_GEO_LON, default_label=rt.settings.DEFAULT_GEO_LABEL)
    if geo is not None:
        instance.geo_lat, instance.geo_lon, instance.geo_label, instance.geo_source = (
            geo.lat, geo.lon, geo.label, geo.source)
    deployment = Deployment(
        id=deployment_id, name=accepted.name, instance_id=instance_id, template_id=accepted.template_id,
        team_id=req.team_id, provider=accepted.provider, region=accepted.region, status="PENDING",
        yaml_content=accepted.yaml_content,
        config_hash=hashlib.sha256(accepted.yaml_content.encode("utf-8", "surrogatepass")).hexdigest(),
        declared=declared, secret_names=accepted.secret_names, docker_host=req.docker_host,
        warnings=accepted.warnings, initiated_by=principal.user_id or "", created_at=now, logs="", logs_bytes=0,
        logs_truncated=False,
    )
    try:
        async with rt.db.write() as s:
            s.add(instance)
            await s.flush()
            record_initial_status(s, instance, "Deployment requested", bus_reason="deploy")
            write_event(s, instance_id, "DEPLOY", f"Deployment {deployment_id} requested",
                        {"phase": "REQUESTED", "fromStatus": None, "toStatus": "DEPLOYING",
                         "deploymentId": deployment_id, "provider": accepted.provider},
                        actor_kind="USER", user_id=principal.user_id, ts_ms=int(now.timestamp() * 1000))
            s.add(deployment)
            await s.flush()
            if req.secrets:
                await vault.store_instance_secrets(s, rt.settings, instance_id, req.secrets,
                                                   created_by=principal.user_id)
            await write_audit(s, principal, "DEPLOY", "deployment", deployment_id, {
                "deploymentId": deployment_id, "name": accepted.name, "provider": accepted.provider,
                "region": accepted.region, "templateId": accepted.template_id,
                "secretNames": accepted.secret_names,
            }, team_id=req.team_id)
            publish_after_commit(s, "ops.wake.deploy", {})
    except IntegrityError:
        async with rt.db.read() as s:
            status = await repo.live_instance_status(s, accepted.name)
        if status is None:
            raise
        raise _name_conflict(accepted.name, status) from None
    return deployment_to_wire(deployment)


def _name_conflict(name: str, status: str) -> ApiError:
    return ApiError(409, f"An instance named '{name}' already exists (status {status})")


# ---- reads ---------------------------------------------------------------------------------------------


def _logs_from(logs: str, offset: int) -> str:
    data = logs.encode("utf-8", "surrogatepass")
    if offset >= len(data):
        return ""
    # an offset inside a multi-byte character starts at the next whole character
    while offset < len(data) and (data[offset] & 0xC0) == 0x80:
        offset += 1
    return data[offset:].decode("utf-8", "replace")


def deployment_to_wire(d: Deployment, log_offset: int = 0) -> dict[str, Any]:
    """The Deployment object of §7.8; `logs` from the byte offset `log_offset`."""
    duration = None
    if d.started_at is not None and d.completed_at is not None:
        duration = int((d.completed_at - d.started_at).total_seconds() * 1000)
    return {
        "id": d.id,
        "name": d.name,
        "instanceId": d.instance_id,
        "templateId": d.template_id,
        "teamId": d.team_id,
        "provider": d.provider,
        "region": d.region,
        "status": d.status,
        "yamlContent": d.yaml_content,
        "configHash": d.config_hash,
        "declared": d.declared,
        "secretNames": list(d.secret_names or []),
        "dockerHost": d.docker_host,
        "warnings": list(d.warnings or []),
        "initiatedBy": d.initiated_by,
        "createdAt": to_iso(d.created_at),
        "startedAt": to_iso(d.started_at),
        "completedAt": to_iso(d.completed_at),
        "durationMs": duration,
        "exitCode": d.exit_code,
        "error": d.error,
        "logs": _logs_from(d.logs or "", log_offset),
        "logsBytes": int(d.logs_bytes or 0),
        "logsTruncated": bool(d.logs_truncated),
    }


async def get_deployment(rt: Runtime, principal: Principal, deployment_id: str, log_offset: int) -> dict[str, Any]:
    async with rt.db.read() as s:
        deployment = await repo.visible_deployment(s, principal, deployment_id)
    if deployment is None:
        raise ApiError(404, "Deployment not found")
    return deployment_to_wire(deployment, log_offset)


# ---- fleet timeline (10-core §7.3) ---------------------------------------------------------------------


def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


async def fleet_timeline(rt: Runtime, principal: Principal) -> dict[str, Any]:
    """24 UTC hourly buckets ending with the current hour, over the caller's visible deployments."""
    now = utcnow()
    last = _floor_hour(now)
    first = last - timedelta(hours=23)
    edges = [first + timedelta(hours=i) for i in range(24)]
    async with rt.db.read() as s:
        counts = await repo.timeline_counts(s, principal, edges, now)
    kinds = ("deployments", "succeeded", "failed", "inProgress")
    tally: list[dict[str, int]] = [dict.fromkeys(kinds, 0) for _ in edges]
    for index, status, count in counts:
        key = {"SUCCEEDED": "succeeded", "FAILED": "failed"}.get(status, "inProgress")
        tally[index][key] += count
        tally[index]["deployments"] += count
    succeeded = sum(t["succeeded"] for t in tally)
    failed = sum(t["failed"] for t in tally)
    finished = succeeded + failed
    return {
        "data": [{"hour": to_iso(edge), **t} for edge, t in zip(edges, tally, strict=True)],
        "total24h": sum(t["deployments"] for t in tally),
        "succeeded": succeeded,
        "failed": failed,
        "successRate": round(succeeded / finished, 4) if finished else None,
        "from": to_iso(first),
        "to": to_iso(now),
    }
