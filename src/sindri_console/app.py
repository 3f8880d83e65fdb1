"""Application factory: routers of every domain, the gateway, error handlers and lifecycle."""

from __future__ import annotations

import contextlib
import gc
import importlib
import pkgutil
import warnings
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

import sindri_console
import sindri_console.domains as domains_pkg
from sindri_console.kit.errors import ApiError, _render, install_error_handlers
from sindri_console.kit.gateway import BodyTooLarge, Gateway
from sindri_console.loops.base import LoopSpec, replica_heartbeat
from sindri_console.runtime import Runtime
from sindri_console.settings import Settings, load_settings

log = structlog.get_logger("sindri_console.app")

# FastAPI copies field metadata (aliases) into its own fields; pydantic warns about it on every schema build
warnings.filterwarnings("ignore", message=r"The '.*alias' attribute with value")


def _domain_modules(kind: str) -> list[ModuleType]:
    mods = []
    for info in sorted(pkgutil.iter_modules(domains_pkg.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        name = f"{domains_pkg.__name__}.{info.name}.{kind}"
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return mods


def tune_gc() -> None:
    """Garbage collector settings for a serving process (measured in PERFORMANCE.md, Agents).

    With thousands of sockets the heap holds millions of tracked objects, and CPython's default
    thresholds (700, 10, 10) promote every burst of in-flight frames to the oldest generation, which
    then triggers full collections of 0.8-1.8 s every 10-20 s: every frame in flight waits for them.
    A larger first threshold lets short-lived objects die young; freezing what start-up built keeps
    the imported code and the app out of every later full collection.
    """
    gc.set_threshold(50_000, 20, 20)
    gc.freeze()


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    serving = False
    if settings is None:
        # started by uvicorn (possibly in a worker process): configure this process's logging too
        from sindri_console.logging import configure_logging

        settings = load_settings()
        configure_logging(settings.LOG_LEVEL)
        serving = True
    rt = runtime or Runtime.build(settings)
    hooks = _domain_modules("hooks")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await rt.bus.start()
        await replica_heartbeat(rt.db, rt.replica_id)
        rt.loops.add(LoopSpec("replica-heartbeat", 10, lambda: replica_heartbeat(rt.db, rt.replica_id)))
        for mod in hooks:
            fn = getattr(mod, "startup", None)
            if fn is not None:
                await fn(rt)
        if settings.LOOPS_ENABLED:
            rt.loops.start()
        if serving:
            tune_gc()
        log.info("started", replica=rt.replica_id, database=rt.db.dialect.name,
                 bus="redis" if settings.REDIS_URL else "memory")
        try:
            yield
        finally:
            await rt.loops.stop()
            for mod in reversed(hooks):
                fn = getattr(mod, "shutdown", None)
                if fn is not None:
                    with contextlib.suppress(Exception):
                        await fn(rt)
            await rt.bus.stop()
            await rt.db.dispose()

    app = FastAPI(
        title="Sindri Console API",
        version=sindri_console.__version__,
        description="Control plane for a fleet of Sindri cloud development environments.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.runtime = rt
    install_error_handlers(app)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Any, exc: BodyTooLarge) -> Any:
        cap = getattr(request.state, "body_cap", settings.MAX_BODY_BYTES)
        return _render(ApiError(413, f"Request body is larger than {cap} bytes"))

    for mod in _domain_modules("router"):
        app.include_router(mod.router)

    app.add_middleware(Gateway, fastapi_app=app)
    if settings.CORS_ORIGINS:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.CORS_ORIGINS,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "X-Api-Key", "Content-Type", "X-Request-Id", "Last-Event-ID"],
            expose_headers=["X-Request-Id", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                            "Retry-After", "Location"],
        )
    return app
