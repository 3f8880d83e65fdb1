"""Deployment template routes (20-ops §8.5)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sindri_console.domains.deployments.sindri_yaml import canonical_provider, is_storable_text
from sindri_console.domains.templates import repository as repo
from sindri_console.domains.templates import service
from sindri_console.domains.templates.schemas import (
    TemplateCreate,
    TemplateDeletedOut,
    TemplateOut,
    TemplatePage,
)
from sindri_console.kit.auth import CurrentPrincipal
from sindri_console.kit.errors import ApiError
from sindri_console.kit.pagination import page_body, page_params, paginate
from sindri_console.kit.schema import json_body_doc, parse_model, query_str, read_json
from sindri_console.kit.scope import check_path_id
from sindri_console.runtime import runtime_of

router = APIRouter(prefix="/api/v1", tags=["templates"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed JSON or path id"}, 401: {"description": "Unauthenticated"},
    403: {"description": "Forbidden"}, 404: {"description": "Not found"}, 409: {"description": "Conflict"},
    413: {"description": "Body too large"}, 422: {"description": "Validation error"},
    429: {"description": "Rate limited"},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


LIST_DOC = {"parameters": [
    _query("page", {"type": "integer", "minimum": 1}, "page number, default 1"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size, default 20 (alias pageSize)"),
    _query("category", {"type": "string", "maxLength": 64}, "case-insensitive exact category"),
    _query("provider", {"type": "string", "maxLength": 64}, "YAML provider or a recommended provider"),
    _query("search", {"type": "string", "maxLength": 200}, "substring of name, slug or description"),
    _query("isOfficial", {"type": "string", "enum": ["true", "false"]}, "only official or only user templates"),
]}


def _strict_bool(query: Any, name: str) -> bool | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if raw in ("true", "false"):
        return raw == "true"
    raise ApiError(422, f"Invalid request: {name} must be true or false",
                   [{"field": name, "message": "must be true or false"}])


@router.get("/templates", response_model=TemplatePage, responses=ERRORS, summary="List deployment templates",
            openapi_extra=LIST_DOC)
async def list_templates(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    q = request.query_params
    params = page_params(q)
    category, provider, search = (query_str(q, "category", 64), query_str(q, "provider", 64),
                                  query_str(q, "search", 200))
    for name, value in (("category", category), ("provider", provider), ("search", search)):
        if value is not None and not is_storable_text(value):
            msg = "must be text without NUL characters"
            raise ApiError(422, f"Invalid request: {name} {msg}", [{"field": name, "message": msg}])
    stmt = repo.list_statement(
        category=category.strip() if category else None,
        provider=canonical_provider(provider) if provider else None,
        search=search,
        is_official=_strict_bool(q, "isOfficial"),
        icontains=rt.db.dialect.icontains,
    )
    async with rt.db.read() as s:
        rows, total, _ = await paginate(s, stmt, params)
    return page_body([service.template_to_wire(r[0]) for r in rows], params, total)


@router.post("/templates", status_code=201, response_model=TemplateOut, responses=ERRORS,
             summary="Create a deployment template", openapi_extra=json_body_doc(TemplateCreate))
async def create_template(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    body = parse_model(TemplateCreate, await read_json(request))
    created = await service.create_template(rt, principal, body)
    return JSONResponse(created, status_code=201, headers={"Location": f"/api/v1/templates/{created['id']}"})


@router.get("/templates/{idOrSlug}", response_model=TemplateOut, responses=ERRORS,
            summary="A deployment template by id or slug")
async def get_template(idOrSlug: str, request: Request, principal: CurrentPrincipal) -> Any:  # noqa: N803
    rt = runtime_of(request)
    check_path_id(idOrSlug, "template id")
    async with rt.db.read() as s:
        template = await repo.by_id_or_slug(s, idOrSlug)
    if template is None:
        raise ApiError(404, f"Template '{idOrSlug}' not found")
    return service.template_to_wire(template)


@router.delete("/templates/{id}", response_model=TemplateDeletedOut, responses=ERRORS,
               summary="Delete a deployment template (by id)")
async def delete_template(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    check_path_id(id, "template id")
    return await service.delete_template(rt, principal, id)
