"""The ASGI gate in front of every HTTP route.

Order of checks (00 §3): 404 / 405 → 401 → 429 → 403 → (route: 400 → 422 → domain).
It also assigns the request id, resolves the client address, caps body sizes (413) and writes
one structured access-log line per request.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from typing import Any

import structlog
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sindri_console.kit.auth import AuthFailure, extract_raw_key
from sindri_console.kit.context import RequestContext, set_context
from sindri_console.kit.errors import ApiError
from sindri_console.kit.ids import new_id
from sindri_console.kit.rbac import Role, rate_class, rule_for

log = structlog.get_logger("sindri_console.access")

PUBLIC_PATHS = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TICKET_QUERY = re.compile(r"(ticket|apiKey|api_key)=[^&]*")
LARGE_BODY_PATHS = {"/api/v1/logs/ingest/batch"}
# EventSource cannot send headers: the SSE routes also take a single-use `?ticket=` (10-core §13)
TICKET_ROUTES = {"/api/v1/logs/stream", "/api/v1/instances/:instanceId/logs/stream"}


class BodyTooLarge(Exception):
    pass


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def client_address(scope: Scope, headers: dict[str, str], trusted: list[Any]) -> str | None:
    peer = scope.get("client")
    addr = peer[0] if peer else None
    if not addr or not trusted:
        return addr

    def is_trusted(a: str) -> bool:
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            return False
        return any(ip in net for net in trusted)

    if not is_trusted(addr):
        return addr
    xff = headers.get("x-forwarded-for")
    if not xff:
        return addr
    hops = [h.strip() for h in xff.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop[:64]
    return hops[0][:64] if hops else addr


async def _send_error(send: Send, err: ApiError, extra_headers: dict[str, str]) -> int:
    body = json.dumps(err.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    for k, v in {**err.headers, **extra_headers}.items():
        headers.append((k.lower().encode(), v.encode()))
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return err.status


async def _ticket_principal(rt: Any, scope: Scope, ip: str | None) -> Any:
    """Consume the `ticket` query parameter (atomic, single use) and re-validate its key now."""
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ticket") or [None]
    store = rt.services.get("tickets")
    ticket = await store.consume(values[0]) if store is not None else None
    if ticket is None:
        raise AuthFailure("Invalid or expired ticket")
    principal = await rt.auth.authenticate_key_id(ticket.api_key_id, ip)
    if principal.user_id != ticket.user_id:
        raise AuthFailure("Invalid or expired ticket")
    return principal


class Gateway:
    def __init__(self, app: ASGIApp, fastapi_app: Any) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    def _match(self, scope: Scope) -> tuple[Any | None, set[str]]:
        full = None
        allowed: set[str] = set()
        for route in self.fastapi_app.router.routes:
            match, child = route.matches(scope)
            if match == Match.FULL:
                full = route
                break
            if match == Match.PARTIAL:
                allowed |= set(getattr(route, "methods", None) or ())
        return full, allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                headers = _headers(scope)
                rt = self.fastapi_app.state.runtime
                ip = client_address(scope, headers, rt.settings.trusted_networks())
                set_context(RequestContext(new_id(), ip, headers.get("user-agent")))
            await self.app(scope, receive, send)
            return
        rt = self.fastapi_app.state.runtime
        started = time.perf_counter()
        headers = _headers(scope)
        rid = headers.get("x-request-id")
        if not rid or not _REQUEST_ID.match(rid):
            rid = new_id()
        ip = client_address(scope, headers, rt.settings.trusted_networks())
        set_context(RequestContext(rid, ip, headers.get("user-agent")))
        scope.setdefault("state", {})
        scope["state"]["request_id"] = rid
        scope["state"]["client_ip"] = ip
        extra: dict[str, str] = {"x-request-id": rid}
        status_holder = {"status": 0}
        method = scope["method"]
        path = scope["path"]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                hdrs = list(message.get("headers", []))
                present = {k.lower() for k, _ in hdrs}
                for k, v in extra.items():
                    if k.encode() not in present:
                        hdrs.append((k.encode(), v.encode()))
                message = {**message, "headers": hdrs}
            await send(message)

        try:
            status = await self._handle(scope, receive, send_wrapper, rt, headers, ip, extra, method, path)
            if status:
                status_holder["status"] = status
        finally:
            qs = scope.get("query_string", b"").decode("latin-1")
            if qs:
                qs = _TICKET_QUERY.sub(lambda m: m.group(1) + "=***", qs)
            log.info(
                "request",
                method=method,
                path=path,
                query=qs or None,
                status=status_holder["status"],
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                request_id=rid,
                client=ip,
            )

    async def _handle(self, scope: Scope, receive: Receive, send: Send, rt: Any, headers: dict[str, str],
                      ip: str | None, extra: dict[str, str], method: str, path: str) -> int | None:
        if method == "OPTIONS" or path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return None
        route, allowed = self._match(scope)
        if route is None:
            if allowed:
                if "GET" in allowed:
                    allowed.add("HEAD")
                err = ApiError(405, f"Method {method} is not allowed on {path}",
                               headers={"Allow": ", ".join(sorted(allowed))})
            else:
                err = ApiError(404, f"No route for {method} {path}")
            return await _send_error(send, err, extra)
        rule = rule_for(method, route.path_format)
        if rule is None:
            # a route without a table entry is never reachable: the table is the authority
            return await _send_error(send, ApiError(403, "This route has no role assigned"), extra)

        # 401 (with brute-force protection per client address)
        fail_key = ip or "unknown"
        blocked = await rt.limiter.exceeded("auth_fail", fail_key)
        if blocked is not None:
            return await _send_error(send, ApiError(
                429, "Too many failed authentication attempts; retry later",
                headers={"Retry-After": str(max(1, blocked.reset - int(time.time())))},
                extra={"retryAfter": max(1, blocked.reset - int(time.time()))}), extra)
        try:
            raw_key = extract_raw_key(headers)
            if raw_key is None and rule.path in TICKET_ROUTES and b"ticket=" in scope.get("query_string", b""):
                principal = await _ticket_principal(rt, scope, ip)
            else:
                principal = await rt.auth.authenticate(raw_key, ip)
        except AuthFailure as exc:
            await rt.limiter.hit("auth_fail", fail_key)
            return await _send_error(send, ApiError(401, exc.message), extra)

        # 429
        klass = rate_class(rule, method)
        limit = await rt.limiter.hit(klass, principal.rate_key)
        if limit is not None:
            extra.update({k.lower(): v for k, v in limit.headers().items()})
            if not limit.allowed:
                retry = max(1, limit.reset - int(time.time()))
                return await _send_error(send, ApiError(
                    429, "Rate limit exceeded; retry later", headers={"Retry-After": str(retry)},
                    extra={"retryAfter": retry}), extra)

        # 403
        if principal.is_agent and not rule.agent:
            return await _send_error(send, ApiError(403, "Agent credentials may not call this route"), extra)
        if not principal.is_agent and principal.rank < rule.role:
            return await _send_error(send, ApiError(
                403, f"This action requires the {Role(rule.role).name} role or higher"), extra)

        # PostgreSQL text cannot hold NUL: refuse it in the path or query before any handler sees it
        raw_qs = scope.get("query_string", b"")
        if "\x00" in path or b"%00" in raw_qs or b"\x00" in raw_qs:
            return await _send_error(send, ApiError(400, "The path or query string contains a NUL character"),
                                     extra)

        # 413
        cap = rt.settings.LOG_INGEST_MAX_BODY_BYTES if path in LARGE_BODY_PATHS else rt.settings.MAX_BODY_BYTES
        length = headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > cap
            except ValueError:
                return await _send_error(send, ApiError(400, "Invalid Content-Length header"), extra)
            if too_big:
                return await _send_error(send, ApiError(413, f"Request body is larger than {cap} bytes"), extra)
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise BodyTooLarge()
            return message

        scope["state"]["principal"] = principal
        scope["state"]["route_rule"] = rule
        scope["state"]["body_cap"] = cap
        await self.app(scope, capped_receive, send)
        return None
