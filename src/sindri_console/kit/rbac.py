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


V, D, O, A = Role.VIEWER, Role.DEVELOPER, Role.OPERATOR, Role.ADMIN
API = "/api/v1"


def _r(method: str, path: str, role: Role, agent: bool = False, rate: str | None = None) -> RouteRule:
    return RouteRule(method, API + path, role, agent, rate)


ROUTE_TABLE: tuple[RouteRule, ...] = (
    # version, self-service, admin (10-core §0)
    _r("GET", "/version", V),
    _r("GET", "/me", V),
    _r("GET", "/me/api-keys", V),
    _r("POST", "/me/api-keys", V),
    _r("DELETE", "/me/api-keys/:id", V),
    _r("GET", "/admin/users", A),
    _r("POST", "/admin/users", A),
    _r("GET", "/admin/users/:id", A),
    _r("PATCH", "/admin/users/:id", A),
    _r("DELETE", "/admin/users/:id", A),
    _r("GET", "/admin/teams", A),
    _r("POST", "/admin/teams", A),
    _r("GET", "/admin/teams/:id", A),
    _r("PATCH", "/admin/teams/:id", A),
    _r("DELETE", "/admin/teams/:id", A),
    _r("POST", "/admin/teams/:id/members", A),
    _r("PATCH", "/admin/teams/:id/members/:userId", A),
    _r("DELETE", "/admin/teams/:id/members/:userId", A),
    _r("POST", "/admin/teams/:id/instances", A),
    _r("DELETE", "/admin/teams/:id/instances/:instanceId", A),
    _r("GET", "/admin/api-keys", A),
    _r("POST", "/admin/api-keys", A),
    _r("GET", "/admin/api-keys/:id", A),
    _r("DELETE", "/admin/api-keys/:id", A),
    # fleet
    _r("GET", "/fleet/stats", V),
    _r("GET", "/fleet/geo", V),
    _r("GET", "/fleet/deployments", V),
    # instances and lifecycle
    _r("POST", "/instances", V, agent=True, rate="ingest"),
    _r("GET", "/instances", V),
    _r("GET", "/instances/:id", V),
    _r("DELETE", "/instances/:id", O),
    _r("POST", "/instances/:id/suspend", O),
    _r("POST", "/instances/:id/resume", O),
    _r("POST", "/instances/:id/backup", O),
    _r("POST", "/instances/bulk-action", O),
    _r("GET", "/instances/:id/lifecycle", V),
    _r("GET", "/instances/:id/jobs", V),
    _r("GET", "/instances/:id/jobs/:jobId", V),
    _r("GET", "/instances/:id/backups", V),
    # metrics
    _r("GET", "/metrics/timeseries", V),
    _r("GET", "/metrics/timeseries/range", V),
    _r("GET", "/metrics/aggregate", V),
    _r("GET", "/metrics/latest", V),
    _r("GET", "/instances/:id/metrics", V),
    _r("GET", "/instances/:id/processes", V),
    _r("GET", "/instances/:id/extensions", V),
    _r("GET", "/instances/:id/events", V),
    # logs
    _r("GET", "/logs", V),
    _r("GET", "/logs/stats", V),
    _r("GET", "/logs/stream", V),
    _r("POST", "/logs/ingest", V, agent=True, rate="ingest"),
    _r("POST", "/logs/ingest/batch", V, agent=True, rate="ingest"),
    _r("GET", "/logs/:id", V),
    _r("GET", "/instances/:instanceId/logs", V),
    _r("GET", "/instances/:instanceId/logs/stats", V),
    _r("GET", "/instances/:instanceId/logs/stream", V),
    # alerts, rules, channels
    _r("GET", "/alerts", V),
    _r("GET", "/alerts/summary", V),
    _r("GET", "/alerts/:id", V),
    _r("POST", "/alerts/:id/acknowledge", O),
    _r("POST", "/alerts/:id/resolve", O),
    _r("POST", "/alerts/bulk-acknowledge", O),
    _r("POST", "/alerts/bulk-resolve", O),
    _r("GET", "/alerts/rules", V),
    _r("POST", "/alerts/rules", O),
    _r("GET", "/alerts/rules/:id", V),
    _r("PUT", "/alerts/rules/:id", O),
    _r("DELETE", "/alerts/rules/:id", O),
    _r("POST", "/alerts/rules/:id/enable", O),
    _r("POST", "/alerts/rules/:id/disable", O),
    _r("GET", "/alerts/channels", V),
    _r("POST", "/alerts/channels", O),
    _r("GET", "/alerts/channels/:id", V),
    _r("PUT", "/alerts/channels/:id", O),
    _r("DELETE", "/alerts/channels/:id", O),
    _r("POST", "/alerts/channels/:id/test", O),
    # commands
    _r("POST", "/commands", D),
    _r("POST", "/commands/bulk", O),
    _r("POST", "/commands/script", D),
    _r("GET", "/commands/history", V),
    _r("GET", "/commands/:id", V),
    # deployments and templates
    _r("POST", "/deployments", V),
    _r("GET", "/deployments/:id", V),
    _r("GET", "/templates", V),
    _r("POST", "/templates", O),
    _r("GET", "/templates/:idOrSlug", V),
    _r("DELETE", "/templates/:id", A),
    # costs and budgets
    _r("GET", "/costs/summary", V),
    _r("GET", "/costs/trends", V),
    _r("GET", "/costs/idle", V),
    _r("GET", "/costs/idle-instances", V),
    _r("GET", "/costs/pricing", V),
    _r("GET", "/costs/instances/:id", V),
    _r("GET", "/costs/breakdown", V),
    _r("GET", "/costs/alerts", V),
    _r("GET", "/costs/recommendations", V),
    _r("POST", "/costs/recommendations/:id/dismiss", O),
    _r("POST", "/costs/recommendations/analyze", O),
    _r("GET", "/costs/budgets", V),
    _r("POST", "/costs/budgets", O),
    _r("GET", "/costs/budgets/:id", V),
    _r("PUT", "/costs/budgets/:id", O),
    _r("PATCH", "/costs/budgets/:id", O),
    _r("DELETE", "/costs/budgets/:id", O),
    # drift
    _r("GET", "/drift/summary", V),
    _r("GET", "/drift/snapshots", V),
    _r("GET", "/drift/snapshots/:id", V),
    _r("POST", "/drift/snapshots/:instanceId/trigger", O),
    _r("GET", "/drift/events", V),
    _r("POST", "/drift/events/:id/resolve", O),
    _r("POST", "/drift/events/:id/remediate", O),
    _r("POST", "/drift/remediations/:id/execute", O),
    _r("POST", "/drift/remediations/:id/dismiss", O),
    _r("GET", "/drift/instances/:instanceId/latest", V),
    # extensions and policies
    _r("GET", "/extensions", V),
    _r("GET", "/extensions/categories", V),
    _r("GET", "/extensions/summary", V),
    _r("GET", "/extensions/:id", V),
    _r("POST", "/extensions", O),
    _r("PUT", "/extensions/:id", O),
    _r("DELETE", "/extensions/:id", A),
    _r("GET", "/extensions/:id/analytics", V),
    _r("GET", "/extensions/:id/dependencies", V),
    _r("GET", "/extensions/usage/matrix", V),
    _r("POST", "/extensions/usage", V),
    _r("GET", "/extensions/policies", V),
    _r("POST", "/extensions/policies", O),
    _r("DELETE", "/extensions/policies/:id", O),
    _r("GET", "/extensions/policies/effective/:instanceId", V),
    # scheduled tasks
    _r("GET", "/tasks/templates", V),
    _r("GET", "/tasks", V),
    _r("POST", "/tasks", V),
    _r("GET", "/tasks/:id", V),
    _r("PUT", "/tasks/:id", V),
    _r("DELETE", "/tasks/:id", V),
    _r("POST", "/tasks/:id/pause", V),
    _r("POST", "/tasks/:id/resume", V),
    _r("POST", "/tasks/:id/trigger", V),
    _r("GET", "/tasks/:id/history", V),
    # security
    _r("GET", "/security/summary", V),
    _r("GET", "/security/vulnerabilities", V),
    _r("GET", "/security/vulnerabilities/:id", V),
    _r("POST", "/security/vulnerabilities/:id/acknowledge", V),
    _r("POST", "/security/vulnerabilities/:id/fix", V),
    _r("POST", "/security/vulnerabilities/:id/false-positive", V),
    _r("GET", "/security/bom", V),
    _r("POST", "/security/scan/:instanceId", V),
    _r("GET", "/security/compliance", V),
    _r("GET", "/security/secrets", V),
    _r("POST", "/security/secrets", V),
    _r("POST", "/security/secrets/:id/rotate", V),
    _r("GET", "/security/ssh-keys", V),
    _r("POST", "/security/ssh-keys", V),
    _r("POST", "/security/ssh-keys/:id/revoke", V),
    # secrets vault
    _r("GET", "/secrets", V),
    _r("POST", "/secrets", O),
    _r("GET", "/secrets/:id", V),
    _r("PUT", "/secrets/:id", O),
    _r("DELETE", "/secrets/:id", O),
    _r("POST", "/secrets/:id/rotate", O),
    _r("GET", "/secrets/:id/value", A),
    # providers, catalogue, profiles, registry, integrations
    _r("GET", "/providers", V),
    _r("GET", "/providers/:provider/regions", V),
    _r("GET", "/providers/:provider/compute-catalog", V),
    _r("GET", "/providers/:provider/compute-catalog/estimate", V),
    _r("POST", "/providers/:provider/compute-catalog/refresh", A),
    _r("GET", "/profiles", V),
    _r("GET", "/registry/extensions", V),
    _r("GET", "/registry/extensions/categories", V),
    _r("GET", "/registry/profiles", V),
    _r("GET", "/registry/version", V),
    _r("GET", "/integrations", V),
    _r("GET", "/integrations/:id", V),
    _r("GET", "/integrations/providers", V),
    _r("GET", "/integrations/providers/:providerId", V),
    # tickets and audit
    _r("POST", "/ws/ticket", V),
    _r("GET", "/audit", A),
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
