"""Deployment templates (20-ops §8): creation rules, deletion, and seeding the official templates."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError

from sindri_console.domains.deployments.official_templates import (
    OfficialTemplate,
    load_official_templates,
    slug_error,
)
from sindri_console.domains.deployments.sindri_yaml import (
    DEPLOYMENT_PROVIDERS,
    EXTENSION_RE,
    MAX_YAML_BYTES,
    ParsedYaml,
    canonical_provider,
    declared_extensions,
    deployment_provider,
    is_storable_text,
    parse_sindri_yaml,
    reserved_secret_violations,
    validate_sindri_yaml,
)
from sindri_console.domains.templates import repository as repo
from sindri_console.domains.templates.schemas import TemplateCreate
from sindri_console.kit.audit import write_audit
from sindri_console.kit.auth import Principal
from sindri_console.kit.clock import to_iso, utcnow
from sindri_console.kit.errors import ApiError, validation_errors
from sindri_console.kit.ids import new_id
from sindri_console.models.deployments import DeploymentTemplate
from sindri_console.runtime import Runtime

log = structlog.get_logger("sindri_console.templates")


def template_to_wire(t: DeploymentTemplate) -> dict[str, Any]:
    """The Template object of §8.4."""
    validation = t.validation or {"valid": False, "errors": []}
    return {
        "id": t.id,
        "name": t.name,
        "slug": t.slug,
        "category": t.category,
        "description": t.description,
        "yamlContent": t.yaml_content,
        "provider": t.provider,
        "profile": t.profile,
        "extensions": list(t.extensions or []),
        "providerRecommendations": list(t.provider_recommendations or []),
        "isOfficial": bool(t.is_official),
        "validation": {"valid": bool(validation.get("valid")), "errors": list(validation.get("errors") or [])},
        "createdBy": t.created_by,
        "createdAt": to_iso(t.created_at),
        "updatedAt": to_iso(t.updated_at),
    }


def _profile_of(parsed: ParsedYaml) -> str | None:
    extensions = parsed.document.get("extensions")
    if isinstance(extensions, dict) and isinstance(extensions.get("profile"), str):
        profile: str = extensions["profile"]
        return profile[:64]
    return None


def derived_fields(yaml_content: str) -> dict[str, Any]:
    """What a template stores about its YAML: provider, profile, extensions and `validation` (§8.1).

    The YAML must at least load as one mapping; schema violations are recorded, not refused.
    """
    parsed = parse_sindri_yaml(yaml_content)
    if not isinstance(parsed, ParsedYaml):
        raise validation_errors([e.under("yamlContent").as_dict() for e in parsed])
    result = validate_sindri_yaml(parsed)
    return {
        "parsed": parsed,
        "provider": deployment_provider(parsed),
        "profile": _profile_of(parsed),
        "extensions": declared_extensions(parsed),
        "validation": result.as_validation(),
    }


def _check_body(body: TemplateCreate) -> list[dict[str, str]]:
    details: list[dict[str, str]] = []
    problem = slug_error(body.slug)
    if problem is not None:
        details.append({"field": "slug", "message": problem})
    for field_name, value in (("name", body.name), ("category", body.category), ("description", body.description),
                              ("yamlContent", body.yaml_content)):
        if not value.strip():
            details.append({"field": field_name, "message": "must not be blank"})
        elif not is_storable_text(value):
            details.append({"field": field_name, "message": "must be Unicode text without NUL or lone surrogates"})
    size = len(body.yaml_content.encode("utf-8", "surrogatepass"))
    if size > MAX_YAML_BYTES:
        details.append({"field": "yamlContent", "message": f"must be 1–{MAX_YAML_BYTES} bytes"})
    for index, name in enumerate(body.extensions or []):
        if not EXTENSION_RE.fullmatch(name):
            details.append({"field": f"extensions[{index}]",
                            "message": "must be an extension name such as python3 or node-lts@20"})
    seen: set[str] = set()
    for index, provider in enumerate(body.provider_recommendations or []):
        canonical = canonical_provider(provider)
        if canonical not in DEPLOYMENT_PROVIDERS:
            details.append({"field": f"providerRecommendations[{index}]",
                            "message": f"must be one of {', '.join(DEPLOYMENT_PROVIDERS)}"})
        elif canonical in seen:
            details.append({"field": f"providerRecommendations[{index}]", "message": "is listed twice"})
        seen.add(canonical)
    return details


async def create_template(rt: Runtime, principal: Principal, body: TemplateCreate) -> dict[str, Any]:
    """Validate and insert a template with its CREATE audit entry in one transaction.

    Order: field rules (422) → YAML loads as a mapping (422) → reserved secret names (422) →
    isOfficial by a non-ADMIN (403) → slug clash (409).
    """
    details = _check_body(body)
    if details:
        raise validation_errors(details)
    derived = derived_fields(body.yaml_content)
    reserved = reserved_secret_violations(derived["parsed"], yaml_field_prefix="yamlContent")
    if reserved:
        raise validation_errors([e.as_dict() for e in reserved])
    if body.is_official and not principal.is_admin:
        raise ApiError(403, "Only an ADMIN can mark a template official")
    if body.provider_recommendations is not None:
        recommendations = list(dict.fromkeys(canonical_provider(p) for p in body.provider_recommendations))
    else:
        recommendations = [derived["provider"]] if derived["provider"] else []
    extensions = list(dict.fromkeys(body.extensions)) if body.extensions is not None else derived["extensions"]
    now = utcnow()
    template = DeploymentTemplate(
        id=new_id(), name=body.name, slug=body.slug, category=body.category.strip().lower(),
        description=body.description, yaml_content=body.yaml_content, provider=derived["provider"],
        profile=derived["profile"], extensions=extensions, provider_recommendations=recommendations,
        is_official=body.is_official, validation=derived["validation"], created_by=principal.user_id,
        created_at=now, updated_at=now,
    )
    conflict = ApiError(409, f"Template with slug '{body.slug}' already exists")
    try:
        async with rt.db.write() as s:
            if await repo.slug_taken(s, body.slug):
                raise conflict
            s.add(template)
            await s.flush()
            await write_audit(s, principal, "CREATE", "deployment_template", template.id, {
                "name": template.name, "slug": template.slug, "category": template.category,
                "isOfficial": template.is_official, "valid": template.validation["valid"],
            })
    except IntegrityError:
        # a concurrent create took the slug between the check and the insert
        raise conflict from None
    return template_to_wire(template)


async def delete_template(rt: Runtime, principal: Principal, template_id: str) -> dict[str, Any]:
    """Delete by id (deployments keep running with templateId = null); audit DELETE, one transaction."""
    async with rt.db.write() as s:
        template = await repo.by_id(s, template_id)
        if template is None:
            raise ApiError(404, f"Template '{template_id}' not found")
        slug = template.slug
        await repo.delete_template(s, template_id)
        await write_audit(s, principal, "DELETE", "deployment_template", template_id,
                          {"name": template.name, "slug": slug, "isOfficial": bool(template.is_official)})
    return {"message": "Template deleted", "id": template_id, "slug": slug}


def _official_values(official: OfficialTemplate) -> dict[str, Any]:
    derived = derived_fields(official.yaml_content)
    return {
        "name": official.name,
        "category": official.category,
        "description": official.description,
        "yaml_content": official.yaml_content,
        "provider": derived["provider"],
        "profile": derived["profile"],
        "extensions": derived["extensions"],
        "provider_recommendations": list(official.provider_recommendations),
        "validation": derived["validation"],
    }


async def seed_official_templates(rt: Runtime) -> dict[str, int]:
    """Insert each official template whose slug has no seed mark; update one whose shipped revision
    is higher than its mark while it still exists (§8.1). Safe on any number of replicas at once:
    inserts are ON CONFLICT DO NOTHING on the id and the unique slug, marks never go down."""
    counts = {"inserted": 0, "updated": 0, "unchanged": 0}
    for official in load_official_templates():
        values = _official_values(official)
        now = utcnow()
        async with rt.db.write() as s:
            mark = await repo.seed_mark(s, official.slug)
            if mark is None:
                inserted = await repo.insert_if_absent(s, rt.db.dialect, {
                    "id": official.id, "slug": official.slug, "is_official": True, "created_by": None,
                    "created_at": now, "updated_at": now, **values,
                })
                owned = inserted or (await repo.by_id(s, official.id)) is not None
                if owned:
                    # a user template holding the slug keeps it; the official one is tried again next start
                    await repo.write_mark(s, rt.db.dialect, official.slug, official.revision, now)
                counts["inserted" if inserted else "unchanged"] += 1
            elif mark.revision < official.revision:
                updated = await repo.update_official_content(s, official.slug, {**values, "updated_at": now})
                await repo.write_mark(s, rt.db.dialect, official.slug, official.revision, now)
                counts["updated" if updated else "unchanged"] += 1
            else:
                counts["unchanged"] += 1
    if counts["inserted"] or counts["updated"]:
        log.info("official_templates_seeded", **counts)
    return counts
