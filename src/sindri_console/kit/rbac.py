"""Roles and the route → minimum-role table: the one place that says who may call what.

Every HTTP route of the application must appear here (a test walks the app and this table).
`agent=True` marks the routes an agent principal may call (00 §4). `rate` picks the rate-limit
class of 00 §6; None means "by method".
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Role(enum.IntEnum):
    VIEWER = 1
    DEVELOPER = 2
    OPERATOR = 3
    ADMIN = 4

    @classmethod
    def parse(cls, value: str) -> Role:
        return cls[value.strip().upper()]


ROLE_NAMES = [r.name for r in Role]


def min_role(a: str | None, b: str | None) -> str | None:
    """The lower of two role names; None means "no cap"."""
    if a is None:
        return b
    if b is None:
        return a
    return a if Role[a] <= Role[b] else b


@dataclass(frozen=True)
class RouteRule:
    method: str
    path: str  # seed style: /api/v1/instances/:id
    role: Role
    agent: bool = False
    rate: str | None = None

    @property
    def fastapi_path(self) -> str:
        return re.sub(r":([A-Za-z_]+)", r"{\1}", self.path)


VIEWER, DEVELOPER, OPERATOR, ADMIN = Role.VIEWER, Role.DEVELOPER, Role.OPERATOR, Role.ADMIN
API = "/api/v1"


def _r(method: str, path: str, role: Role, agent: bool = False, rate: str | None = None) -> RouteRule:
    return RouteRule(method, API + path, role, agent, rate)


ROUTE_TABLE: tuple[RouteRule, ...] = (
    # version, self-service, admin (10-core §0)
    _r("GET", "/version", VIEWER),
    _r("GET", "/me", VIEWER),
    _r("GET", "/me/api-keys", VIEWER),
    _r("POST", "/me/api-keys", VIEWER),
    _r("DELETE", "/me/api-keys/:id", VIEWER),
    _r("GET", "/admin/users", ADMIN),
    _r("POST", "/admin/users", ADMIN),
    _r("GET", "/admin/users/:id", ADMIN),
    _r("PATCH", "/admin/users/:id", ADMIN),
    _r("DELETE", "/admin/users/:id", ADMIN),
    _r("GET", "/admin/teams", ADMIN),
    _r("POST", "/admin/teams", ADMIN),
    _r("GET", "/admin/teams/:id", ADMIN),
    _r("PATCH", "/admin/teams/:id", ADMIN),
    _r("DELETE", "/admin/teams/:id", ADMIN),
    _r("POST", "/admin/teams/:id/members", ADMIN),
    _r("PATCH", "/admin/teams/:id/members/:userId", ADMIN),
    _r("DELETE", "/admin/teams/:id/members/:userId", ADMIN),
    _r("POST", "/admin/teams/:id/instances", ADMIN),
    _r("DELETE", "/admin/teams/:id/instances/:instanceId", ADMIN),
    _r("GET", "/admin/api-keys", ADMIN),
    _r("POST", "/admin/api-keys", ADMIN),
    _r("GET", "/admin/api-keys/:id", ADMIN),
    _r("DELETE", "/admin/api-keys/:id", ADMIN),
    # fleet
    _r("GET", "/fleet/stats", VIEWER),
    _r("GET", "/fleet/geo", VIEWER),
    _r("GET", "/fleet/deployments", VIEWER),
    # instances and lifecycle
    _r("POST", "/instances", VIEWER, agent=True, rate="ingest"),
    _r("GET", "/instances", VIEWER),
    _r("GET", "/instances/:id", VIEWER),
    _r("DELETE", "/instances/:id", OPERATOR),
    _r("POST", "/instances/:id/suspend", OPERATOR),
    _r("POST", "/instances/:id/resume", OPERATOR),
    _r("POST", "/instances/:id/backup", OPERATOR),
    _r("POST", "/instances/bulk-action", OPERATOR),
    _r("GET", "/instances/:id/lifecycle", VIEWER),
    _r("GET", "/instances/:id/jobs", VIEWER),
    _r("GET", "/instances/:id/jobs/:jobId", VIEWER),
    _r("GET", "/instances/:id/backups", VIEWER),
    # metrics
    _r("GET", "/metrics/timeseries", VIEWER),
    _r("GET", "/metrics/timeseries/range", VIEWER),
    _r("GET", "/metrics/aggregate", VIEWER),
    _r("GET", "/metrics/latest", VIEWER),
    _r("GET", "/instances/:id/metrics", VIEWER),
    _r("GET", "/instances/:id/processes", VIEWER),
    _r("GET", "/instances/:id/extensions", VIEWER),
    _r("GET", "/instances/:id/events", VIEWER),
    # logs
    _r("GET", "/logs", VIEWER),
    _r("GET", "/logs/stats", VIEWER),
    _r("GET", "/logs/stream", VIEWER),
    _r("POST", "/logs/ingest", VIEWER, agent=True, rate="ingest"),
    _r("POST", "/logs/ingest/batch", VIEWER, agent=True, rate="ingest"),
    _r("GET", "/logs/:id", VIEWER),
    _r("GET", "/instances/:instanceId/logs", VIEWER),
    _r("GET", "/instances/:instanceId/logs/stats", VIEWER),
    _r("GET", "/instances/:instanceId/logs/stream", VIEWER),
    # alerts, rules, channels
    _r("GET", "/alerts", VIEWER),
    _r("GET", "/alerts/summary", VIEWER),
    _r("GET", "/alerts/:id", VIEWER),
    _r("POST", "/alerts/:id/acknowledge", OPERATOR),
    _r("POST", "/alerts/:id/resolve", OPERATOR),
    _r("POST", "/alerts/bulk-acknowledge", OPERATOR),
    _r("POST", "/alerts/bulk-resolve", OPERATOR),
    _r("GET", "/alerts/rules", VIEWER),
    _r("POST", "/alerts/rules", OPERATOR),
    _r("GET", "/alerts/rules/:id", VIEWER),
    _r("PUT", "/alerts/rules/:id", OPERATOR),
    _r("DELETE", "/alerts/rules/:id", OPERATOR),
    _r("POST", "/alerts/rules/:id/enable", OPERATOR),
    _r("POST", "/alerts/rules/:id/disable", OPERATOR),
    _r("GET", "/alerts/channels", VIEWER),
    _r("POST", "/alerts/channels", OPERATOR),
    _r("GET", "/alerts/channels/:id", VIEWER),
    _r("PUT", "/alerts/channels/:id", OPERATOR),
    _r("DELETE", "/alerts/channels/:id", OPERATOR),
    _r("POST", "/alerts/channels/:id/test", OPERATOR),
    # commands
    _r("POST", "/commands", DEVELOPER),
    _r("POST", "/commands/bulk", OPERATOR),
    _r("POST", "/commands/script", DEVELOPER),
    _r("GET", "/commands/history", VIEWER),
    _r("GET", "/commands/:id", VIEWER),
    # deployments and templates
    _r("POST", "/deployments", VIEWER),
    _r("GET", "/deployments/:id", VIEWER),
    _r("GET", "/templates", VIEWER),
    _r("POST", "/templates", OPERATOR),
    _r("GET", "/templates/:idOrSlug", VIEWER),
    _r("DELETE", "/templates/:id", ADMIN),
    # costs and budgets
    _r("GET", "/costs/summary", VIEWER),
    _r("GET", "/costs/trends", VIEWER),
    _r("GET", "/costs/idle", VIEWER),
    _r("GET", "/costs/idle-instances", VIEWER),
    _r("GET", "/costs/pricing", VIEWER),
    _r("GET", "/costs/instances/:id", VIEWER),
    _r("GET", "/costs/breakdown", VIEWER),
    _r("GET", "/costs/alerts", VIEWER),
    _r("GET", "/costs/recommendations", VIEWER),
    _r("POST", "/costs/recommendations/:id/dismiss", OPERATOR),
    _r("POST", "/costs/recommendations/analyze", OPERATOR),
    _r("GET", "/costs/budgets", VIEWER),
    _r("POST", "/costs/budgets", OPERATOR),
    _r("GET", "/costs/budgets/:id", VIEWER),
    _r("PUT", "/costs/budgets/:id", OPERATOR),
    _r("PATCH", "/costs/budgets/:id", OPERATOR),
    _r("DELETE", "/costs/budgets/:id", OPERATOR),
    # drift
    _r("GET", "/drift/summary", VIEWER),
    _r("GET", "/drift/snapshots", VIEWER),
    _r("GET", "/drift/snapshots/:id", VIEWER),
    _r("POST", "/drift/snapshots/:instanceId/trigger", OPERATOR),
    _r("GET", "/drift/events", VIEWER),
    _r("POST", "/drift/events/:id/resolve", OPERATOR),
    _r("POST", "/drift/events/:id/remediate", OPERATOR),
    _r("POST", "/drift/remediations/:id/execute", OPERATOR),
    _r("POST", "/drift/remediations/:id/dismiss", OPERATOR),
    _r("GET", "/drift/instances/:instanceId/latest", VIEWER),
    # extensions and policies
    _r("GET", "/extensions", VIEWER),
    _r("GET", "/extensions/categories", VIEWER),
    _r("GET", "/extensions/summary", VIEWER),
    _r("GET", "/extensions/:id", VIEWER),
    _r("POST", "/extensions", OPERATOR),
    _r("PUT", "/extensions/:id", OPERATOR),
    _r("DELETE", "/extensions/:id", ADMIN),
    _r("GET", "/extensions/:id/analytics", VIEWER),
    _r("GET", "/extensions/:id/dependencies", VIEWER),
    _r("GET", "/extensions/usage/matrix", VIEWER),
    _r("POST", "/extensions/usage", VIEWER),
    _r("GET", "/extensions/policies", VIEWER),
    _r("POST", "/extensions/policies", OPERATOR),
    _r("DELETE", "/extensions/policies/:id", OPERATOR),
    _r("GET", "/extensions/policies/effective/:instanceId", VIEWER),
    # scheduled tasks
    _r("GET", "/tasks/templates", VIEWER),
    _r("GET", "/tasks", VIEWER),
    _r("POST", "/tasks", VIEWER),
    _r("GET", "/tasks/:id", VIEWER),
    _r("PUT", "/tasks/:id", VIEWER),
    _r("DELETE", "/tasks/:id", VIEWER),
    _r("POST", "/tasks/:id/pause", VIEWER),
    _r("POST", "/tasks/:id/resume", VIEWER),
    _r("POST", "/tasks/:id/trigger", VIEWER),
    _r("GET", "/tasks/:id/history", VIEWER),
    # security
    _r("GET", "/security/summary", VIEWER),
    _r("GET", "/security/vulnerabilities", VIEWER),
    _r("GET", "/security/vulnerabilities/:id", VIEWER),
    _r("POST", "/security/vulnerabilities/:id/acknowledge", VIEWER),
    _r("POST", "/security/vulnerabilities/:id/fix", VIEWER),
    _r("POST", "/security/vulnerabilities/:id/false-positive", VIEWER),
    _r("GET", "/security/bom", VIEWER),
    _r("POST", "/security/scan/:instanceId", VIEWER),
    _r("GET", "/security/compliance", VIEWER),
    _r("GET", "/security/secrets", VIEWER),
    _r("POST", "/security/secrets", VIEWER),
    _r("POST", "/security/secrets/:id/rotate", VIEWER),
    _r("GET", "/security/ssh-keys", VIEWER),
    _r("POST", "/security/ssh-keys", VIEWER),
    _r("POST", "/security/ssh-keys/:id/revoke", VIEWER),
    # secrets vault
    _r("GET", "/secrets", VIEWER),
    _r("POST", "/secrets", OPERATOR),
    _r("GET", "/secrets/:id", VIEWER),
    _r("PUT", "/secrets/:id", OPERATOR),
    _r("DELETE", "/secrets/:id", OPERATOR),
    _r("POST", "/secrets/:id/rotate", OPERATOR),
    _r("GET", "/secrets/:id/value", ADMIN),
    # providers, catalogue, profiles, registry, integrations
    _r("GET", "/providers", VIEWER),
    _r("GET", "/providers/:provider/regions", VIEWER),
    _r("GET", "/providers/:provider/compute-catalog", VIEWER),
    _r("GET", "/providers/:provider/compute-catalog/estimate", VIEWER),
    _r("POST", "/providers/:provider/compute-catalog/refresh", ADMIN),
    _r("GET", "/profiles", VIEWER),
    _r("GET", "/registry/extensions", VIEWER),
    _r("GET", "/registry/extensions/categories", VIEWER),
    _r("GET", "/registry/profiles", VIEWER),
    _r("GET", "/registry/version", VIEWER),
    _r("GET", "/integrations", VIEWER),
    _r("GET", "/integrations/:id", VIEWER),
    _r("GET", "/integrations/providers", VIEWER),
    _r("GET", "/integrations/providers/:providerId", VIEWER),
    # tickets and audit
    _r("POST", "/ws/ticket", VIEWER),
    _r("GET", "/audit", ADMIN),
)

_BY_KEY: dict[tuple[str, str], RouteRule] = {(r.method, r.fastapi_path): r for r in ROUTE_TABLE}


def rule_for(method: str, fastapi_path: str) -> RouteRule | None:
    if method == "HEAD":
        method = "GET"
    return _BY_KEY.get((method, fastapi_path))


def rate_class(rule: RouteRule | None, method: str) -> str:
    if rule is not None and rule.rate:
        return rule.rate
    return "read" if method in ("GET", "HEAD", "OPTIONS") else "write"
