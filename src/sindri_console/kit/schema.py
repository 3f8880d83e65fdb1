"""Wire-model base: camelCase on the wire, snake_case accepted on input (00 §1)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from sindri_console.kit.clock import parse_iso
from sindri_console.kit.errors import ApiError, details_from_pydantic


def unstorable_text(value: Any) -> bool:
    """True when a string (anywhere inside lists/dicts) holds NUL or a lone surrogate.

    PostgreSQL text cannot store U+0000 and UTF-8 cannot encode lone surrogates; such input is a
    validation error, never a database error.
    """
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(unstorable_text(k) or unstorable_text(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(unstorable_text(v) for v in value)
    return False


class ApiModel(BaseModel):
    """Request bodies: camelCase aliases, snake_case names accepted, unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="ignore",
        str_strip_whitespace=False,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        if unstorable_text(value):
            raise ValueError("must not contain NUL characters or invalid Unicode")
        return value


class OutModel(BaseModel):
    """Response documents: camelCase field names as declared (used for the OpenAPI schema)."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True,
                              extra="allow")


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("must include a UTC offset")
        return value
    if isinstance(value, str):
        try:
            return parse_iso(value)
        except ValueError as exc:
            raise ValueError(f"must be an ISO 8601 timestamp with an offset ({exc})") from None
    raise ValueError("must be an ISO 8601 timestamp with an offset")


IsoDatetime = Annotated[datetime, BeforeValidator(_iso)]

M = TypeVar("M", bound=BaseModel)


async def read_json(request: Request) -> Any:
    """The parsed body: 400 when it is not JSON (00 §3)."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The request body is not valid JSON") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_model(model: type[M], data: Any, *, empty_ok: bool = False) -> M:
    """Validate `data` against `model`; 422 with field details on failure."""
    if data is None:
        if not empty_ok:
            raise ApiError(422, "Invalid request: a JSON object body is required",
                           [{"field": "body", "message": "is required"}])
        data = {}
    if not isinstance(data, dict):
        raise ApiError(422, "Invalid request: the body must be a JSON object",
                       [{"field": "body", "message": "must be a JSON object"}])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = details_from_pydantic(exc.errors())
        raise ApiError(422, f"Invalid request: {details[0]['field']} {details[0]['message']}", details) from None


def query_bool(query: Any, name: str, default: bool = False) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    v = raw.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise ApiError(422, f"Invalid request: {name} must be true or false",
                   [{"field": name, "message": "must be true or false"}])


def query_iso(query: Any, name: str) -> datetime | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_iso(raw)
    except ValueError:
        raise ApiError(422, f"Invalid request: {name} must be an ISO 8601 timestamp with an offset",
                       [{"field": name, "message": "must be an ISO 8601 timestamp with an offset"}]) from None


def query_enum_list(query: Any, name: str, allowed: tuple[str, ...] | list[str],
                    aliases: dict[str, str] | None = None) -> list[str] | None:
    raw = query.get(name)
    if raw is None or raw.strip() == "":
        return None
    out = []
    for part in raw.split(","):
        p = part.strip()
        if not p:
            continue
        key = p.upper()
        if aliases and p.lower() in aliases:
            key = aliases[p.lower()]
        if key not in allowed:
            msg = f"must be a comma list of {', '.join(allowed)}"
            raise ApiError(422, f"Invalid request: {name} {msg}", [{"field": name, "message": msg}])
        if key not in out:
            out.append(key)
    return out or None


def query_str(query: Any, name: str, max_len: int, min_len: int = 1) -> str | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) < min_len or len(raw) > max_len:
        msg = f"must be {min_len}-{max_len} characters"
        raise ApiError(422, f"Invalid request: {name} {msg}", [{"field": name, "message": msg}])
    return raw


def json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that parses its JSON body itself (presence-aware bodies).

    Nested models are inlined so the schema needs no component references.
    """
    schema = model.model_json_schema(by_alias=True)
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.rsplit("/", 1)[1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": False, "content": {"application/json": {"schema": inline(schema)}}}}
