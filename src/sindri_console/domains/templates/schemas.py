"""Wire types of deployment templates (20-ops §8.4, §8.5)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from sindri_console.kit.schema import ApiModel, OutModel


class TemplateCreate(ApiModel):
    """`POST /api/v1/templates` body; the service applies the §8.2 and §8.5 rules with field paths."""

    name: str = Field(min_length=1, max_length=128)
    slug: str = Field(description="§8.2: lower-case letters, digits and '-', 1-128, not id-shaped")
    category: str = Field(min_length=1, max_length=64)
    description: str = Field(min_length=1, max_length=1024)
    yaml_content: str = Field(description="a sindri.yaml document, 1-65 536 bytes")
    extensions: list[str] | None = Field(default=None, max_length=200)
    provider_recommendations: list[str] | None = Field(default=None, max_length=8)
    is_official: bool = False


class TemplateValidationErrorOut(OutModel):
    field: str
    message: str


class TemplateValidationOut(OutModel):
    valid: bool
    errors: list[TemplateValidationErrorOut]


class TemplateOut(OutModel):
    id: str
    name: str
    slug: str
    category: str
    description: str
    yaml_content: str
    provider: str | None
    profile: str | None
    extensions: list[str]
    provider_recommendations: list[str]
    is_official: bool
    validation: TemplateValidationOut
    created_by: str | None
    created_at: str
    updated_at: str


class TemplatePage(OutModel):
    data: list[TemplateOut]
    pagination: dict[str, Any]


class TemplateDeletedOut(OutModel):
    message: str
    id: str
    slug: str
