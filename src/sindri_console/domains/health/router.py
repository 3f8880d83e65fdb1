"""`GET /health` (10-core §1): concurrent probes with timeouts, computed at most once per second."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

import sindri_console
from sindri_console.kit.clock import to_iso, utcnow
from sindri_console.kit.schema import OutModel
from sindri_console.runtime import Runtime, runtime_of

router = APIRouter(tags=["health"])


class HealthOut(OutModel):
    status: str
    version: str
    uptime: float
    timestamp: str
    total_latency_ms: float
    checks: dict[str, Any]


async def _probe_db(rt: Runtime) -> dict[str, Any]:
    s = rt.settings
    t0 = time.perf_counter()
    try:
        async def ping() -> None:
            async with rt.db.read_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        await asyncio.wait_for(ping(), s.HEALTH_DB_TIMEOUT_MS / 1000)
    except TimeoutError:
        return {"status": "error", "latencyMs": None, "dialect": rt.db.dialect.name, "error": "timeout"}
    except Exception:
        return {"status": "error", "latencyMs": None, "dialect": rt.db.dialect.name, "error": "unreachable"}
    ms = round((time.perf_counter() - t0) * 1000, 2)
    return {"status": "slow" if ms > s.HEALTH_DB_SLOW_MS else "ok", "latencyMs": ms, "dialect": rt.db.dialect.name}


async def _probe_redis(rt: Runtime) -> dict[str, Any]:
    if not rt.settings.REDIS_URL:
        return {"status": "disabled", "latencyMs": None}
    try:
        ms = await asyncio.wait_for(rt.bus.ping(), rt.settings.HEALTH_REDIS_TIMEOUT_MS / 1000)
    except TimeoutError:
        return {"status": "error", "latencyMs": None, "error": "timeout"}
    except Exception:
        return {"status": "error", "latencyMs": None, "error": "unreachable"}
    ms = round(ms or 0.0, 2)
    return {"status": "slow" if ms > 200 else "ok", "latencyMs": ms}


class HealthCache:
    """One probe per second per replica, shared by concurrent callers."""

    def __init__(self) -> None:
        self._at = 0.0
        self._result: tuple[int, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def get(self, rt: Runtime) -> tuple[int, dict[str, Any]]:
        async with self._lock:
            if self._result is not None and time.monotonic() - self._at < 1.0:
                return self._result
            t0 = time.perf_counter()
            db, redis = await asyncio.gather(_probe_db(rt), _probe_redis(rt))
            total = round((time.perf_counter() - t0) * 1000, 2)
            if db["status"] == "error":
                status, code = "down", 503
            elif db["status"] == "slow" or redis["status"] in ("slow", "error"):
                status, code = "degraded", 200
            else:
                status, code = "ok", 200
            body = {
                "status": status,
                "version": sindri_console.__version__,
                "uptime": round(time.monotonic() - rt.started_monotonic, 3),
                "timestamp": to_iso(utcnow()),
                "totalLatencyMs": total,
                "checks": {"database": db, "redis": redis},
            }
            self._result, self._at = (code, body), time.monotonic()
            return self._result


def _cache(rt: Runtime) -> HealthCache:
    cache = rt.services.get("health")
    if cache is None:
        cache = rt.services["health"] = HealthCache()
    return cache  # type: ignore[no-any-return]


@router.get("/health", response_model=HealthOut, summary="Service health (database and Redis latency)",
            responses={503: {"model": HealthOut, "description": "Database down"}})
async def health(request: Request) -> Any:
    rt = runtime_of(request)
    code, body = await _cache(rt).get(rt)
    return JSONResponse(body, status_code=code)


@router.head("/health", include_in_schema=False)
async def health_head(request: Request) -> Response:
    rt = runtime_of(request)
    code, _ = await _cache(rt).get(rt)
    return Response(status_code=code)
