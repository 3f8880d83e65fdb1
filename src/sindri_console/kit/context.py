"""Per-request context carried by a context variable into logs and audit entries."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class RequestContext:
    request_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("sindri_request_context", default=None)
_EMPTY = RequestContext()


def current_context() -> RequestContext:
    return _current.get() or _EMPTY


def set_context(ctx: RequestContext) -> None:
    _current.set(ctx)
