"""The one paginator (00 §2): page/limit (alias pageSize) parsing, counting and the response shape."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.kit.errors import ApiError


@dataclass(frozen=True)
class PageParams:
    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


def _parse_int(name: str, raw: str | None, default: int, lo: int, hi: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, f"Invalid request: {name} must be an integer",
                       [{"field": name, "message": "must be an integer"}]) from None
    if value < lo or value > hi:
        raise ApiError(422, f"Invalid request: {name} must be between {lo} and {hi}",
                       [{"field": name, "message": f"must be between {lo} and {hi}"}])
    return value


MAX_PAGE = 1_000_000


def page_params(query: Any, *, default_limit: int = 20, max_limit: int = 100) -> PageParams:
    """Read `page`, `limit` and its alias `pageSize` from a query mapping; 422 when out of range."""
    page = _parse_int("page", query.get("page"), 1, 1, MAX_PAGE)
    raw_limit = query.get("limit")
    name = "limit"
    if raw_limit is None and query.get("pageSize") is not None:
        raw_limit, name = query.get("pageSize"), "pageSize"
    limit = _parse_int(name, raw_limit, default_limit, 1, max_limit)
    return PageParams(page, limit)


def page_body(data: list[Any], params: PageParams, total: int, **extra: Any) -> dict[str, Any]:
    pagination: dict[str, Any] = {
        "page": params.page,
        "limit": params.limit,
        "total": total,
        "totalPages": math.ceil(total / params.limit) if total else 0,
    }
    pagination.update(extra)
    return {"data": data, "pagination": pagination}


async def paginate(session: AsyncSession, stmt: Select[*tuple[Any, ...]], params: PageParams,
                   count_cap: int | None = None) -> tuple[list[Any], int, bool]:
    """Rows of one page of an ordered select, the total, and whether the total was capped."""
    if count_cap is not None:
        capped = select(func.count()).select_from(stmt.order_by(None).limit(count_cap + 1).subquery())
        total = int(await session.scalar(capped) or 0)
        was_capped = total > count_cap
        total = min(total, count_cap)
    else:
        total = int(await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0)
        was_capped = False
    rows = list((await session.execute(stmt.limit(params.limit).offset(params.offset))).all())
    return rows, total, was_capped
