"""The official deployment templates shipped as data files (20-ops §8.3) and the slug rules (§8.2).

The files live in `sindri_console/data/templates/*.yaml`, one template each, read in file-name order.
They are product data: a malformed file is a packaging bug and stops the start with
`OfficialTemplateError` instead of being skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from sindri_console.domains.deployments.sindri_yaml import (
    DEPLOYMENT_PROVIDERS,
    ParsedYaml,
    canonical_provider,
    declared_extensions,
    deployment_provider,
    parse_sindri_yaml,
)

SLUG_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", re.ASCII)
MAX_SLUG_LENGTH = 128
# Slugs share the lookup path with ids (`GET /templates/:idOrSlug`), so id-shaped slugs are refused.
_ULID_RE = re.compile(r"[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}", re.ASCII)
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII
)

_TEMPLATE_PACKAGE = "sindri_console"
_TEMPLATE_DIR = ("data", "templates")


class OfficialTemplateError(ValueError):
    """A shipped template file is missing a field or holds a wrong value."""


@dataclass(frozen=True)
class OfficialTemplate:
    id: str
    slug: str
    name: str
    category: str
    description: str
    provider_recommendations: tuple[str, ...]
    revision: int
    yaml_content: str

    @property
    def provider(self) -> str | None:
        """`deployment.provider` of the content, canonical (the `provider` column of §8.1)."""
        parsed = parse_sindri_yaml(self.yaml_content)
        return deployment_provider(parsed) if isinstance(parsed, ParsedYaml) else None

    @property
    def extensions(self) -> list[str]:
        """The template's extension names, derived from its content (§8.4)."""
        parsed = parse_sindri_yaml(self.yaml_content)
        return declared_extensions(parsed) if isinstance(parsed, ParsedYaml) else []


def slug_error(slug: Any) -> str | None:
    """Why `slug` breaks §8.2 (uniqueness aside), or None when it is acceptable."""
    if not isinstance(slug, str) or not 1 <= len(slug) <= MAX_SLUG_LENGTH:
        return f"must be 1–{MAX_SLUG_LENGTH} characters"
    if not SLUG_RE.fullmatch(slug):
        return "must be lower-case letters, digits and '-', starting and ending with a letter or digit"
    if _ULID_RE.fullmatch(slug) or _UUID_RE.fullmatch(slug):
        return "must not have the form of a generated id (a ULID or a UUID)"
    return None


def _text(data: dict[str, Any], key: str, source: str, limit: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise OfficialTemplateError(f"{source}: `{key}` must be a string of 1–{limit} characters")
    return value


def _template_from(data: Any, source: str) -> OfficialTemplate:
    if not isinstance(data, dict):
        raise OfficialTemplateError(f"{source}: the file must hold one mapping")
    slug = _text(data, "slug", source, MAX_SLUG_LENGTH)
    problem = slug_error(slug)
    if problem is not None:
        raise OfficialTemplateError(f"{source}: slug {problem}")
    recommendations = data.get("providerRecommendations")
    if not isinstance(recommendations, list) or not all(isinstance(p, str) for p in recommendations):
        raise OfficialTemplateError(f"{source}: `providerRecommendations` must be a list of provider names")
    canonical = tuple(dict.fromkeys(canonical_provider(p) for p in recommendations))
    unknown = [p for p in canonical if p not in DEPLOYMENT_PROVIDERS]
    if unknown or len(canonical) > 8:
        raise OfficialTemplateError(f"{source}: `providerRecommendations` must be ≤ 8 providers of §7.3")
    revision = data.get("revision")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
        raise OfficialTemplateError(f"{source}: `revision` must be a positive integer")
    return OfficialTemplate(
        id=_text(data, "id", source, 128),
        slug=slug,
        name=_text(data, "name", source, 128),
        category=_text(data, "category", source, 64).lower(),
        description=_text(data, "description", source, 1024),
        provider_recommendations=canonical,
        revision=revision,
        yaml_content=_text(data, "yamlContent", source, 65_536),
    )


def load_official_templates() -> list[OfficialTemplate]:
    """Every shipped template, in file-name order. Raises OfficialTemplateError on a broken file or a
    repeated id or slug."""
    folder = resources.files(_TEMPLATE_PACKAGE)
    for part in _TEMPLATE_DIR:
        folder = folder / part
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".yaml")), key=lambda e: e.name
    )
    templates: list[OfficialTemplate] = []
    for entry in files:
        # Shipped product data, not user input: the plain safe loader is enough here.
        data = yaml.safe_load(entry.read_text(encoding="utf-8"))
        templates.append(_template_from(data, entry.name))
    for attribute in ("id", "slug"):
        values = [getattr(template, attribute) for template in templates]
        if len(set(values)) != len(values):
            raise OfficialTemplateError(f"two official templates share one {attribute}")
    return templates
