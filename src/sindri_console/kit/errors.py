"""The one error type and the handlers that render every failure as the contract's body (00 §3)."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger("sindri_console.errors")


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ApiError(Exception):
    """A failure the caller must see: status, one actionable sentence, optional field details."""

    def __init__(
        self,
        status: int,
        message: str,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        b: dict[str, Any] = {"error": reason(self.status), "message": self.message, "statusCode": self.status}
        if self.details is not None:
            b["details"] = self.details
        b.update(self.extra)
        return b


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def forbidden(message: str = "Your role does not allow this action") -> ApiError:
    return ApiError(403, message)


def validation_error(field: str, message: str) -> ApiError:
    return ApiError(422, f"Invalid request: {field} {message}", [{"field": field, "message": message}])


def validation_errors(details: list[dict[str, str]]) -> ApiError:
    first = details[0]
    return ApiError(422, f"Invalid request: {first['field']} {first['message']}", details)


def error_response(status: int, message: str, details: list[dict[str, str]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return _render(ApiError(status, message, details, headers))


def _render(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers or None)


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            # pydantic puts union member / function names into loc; keep field names only
            if isinstance(p, str) and ("[" in p or p.startswith("function-")):
                continue
            out = f"{out}.{p}" if out else str(p)
    return out or "body"


def _clean_msg(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def details_from_pydantic(errors: list[Any]) -> list[dict[str, str]]:
    details = []
    seen = set()
    for e in errors:
        field = _loc_to_field(tuple(e.get("loc", ())))
        msg = _clean_msg(str(e.get("msg", "is invalid")))
        if (field, msg) in seen:
            continue
        seen.add((field, msg))
        details.append({"field": field, "message": msg})
    return details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _render(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        for e in errors:
            if e.get("type") == "json_invalid":
                return _render(ApiError(400, "The request body is not valid JSON"))
        details = details_from_pydantic(list(errors))
        if not details:
            details = [{"field": "body", "message": "is invalid"}]
        return _render(validation_errors(details))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        headers = dict(exc.headers or {})
        if status == 404:
            msg = exc.detail if isinstance(exc.detail, str) and exc.detail != "Not Found" else (
                f"No route for {request.method} {request.url.path}"
            )
        elif status == 405:
            msg = f"Method {request.method} is not allowed on {request.url.path}"
        elif isinstance(exc.detail, str):
            msg = exc.detail
        else:
            msg = reason(status)
        return _render(ApiError(status, msg, headers=headers))

    @app.exception_handler(PoolTimeoutError)
    async def _pool(_: Request, exc: Exception) -> JSONResponse:
        return _render(ApiError(503, "The database is busy; retry shortly", headers={"Retry-After": "1"}))

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def _db(request: Request, exc: Exception) -> JSONResponse:
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            return _render(ApiError(503, "The database is busy; retry shortly", headers={"Retry-After": "1"}))
        connection_words = ("connect", "closed", "refused", "unavailable", "terminat", "unable to open")
        if any(w in text for w in connection_words):
            return _render(ApiError(503, "The database is unavailable; retry shortly",
                                    headers={"Retry-After": "2"}))
        log.error("database_error", path=request.url.path, error_type=type(exc).__name__)
        return _render(ApiError(500, "Internal error; the request was not completed"))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path, error_type=type(exc).__name__)
        return _render(ApiError(500, "Internal error; the request was not completed"))


def is_json_decode_error(exc: Exception) -> bool:
    return isinstance(exc, json.JSONDecodeError | UnicodeDecodeError)
