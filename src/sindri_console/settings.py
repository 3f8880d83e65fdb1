"""The one settings object: environment variables, optionally preloaded from a file.

`SINDRI_CONSOLE_CONFIG` may name a file of `NAME=value` lines; real environment variables win.
Any invalid value stops start-up with one line naming the setting (SettingsError).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class SettingsError(Exception):
    """Raised with one human sentence naming the offending setting."""


def _bool(name: str, raw: str) -> bool:
    v = raw.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _int(name: str, raw: str, lo: int | None, hi: int | None) -> int:
    try:
        v = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise SettingsError(f"{name} must be between {lo} and {hi}, got {v}")
    return v


def _float(name: str, raw: str, lo: float | None, hi: float | None) -> float:
    try:
        v = float(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if v != v or (lo is not None and v < lo) or (hi is not None and v > hi):
        raise SettingsError(f"{name} must be between {lo} and {hi}, got {raw!r}")
    return v


def _csv(raw: str) -> list[str]:
    return [p.strip() for p in raw.split(",") if p.strip()]


_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def setting(default: Any, lo: float | None = None, hi: float | None = None) -> Any:
    return field(default=default, metadata={"lo": lo, "hi": hi})


@dataclass
class Settings:
    # storage and bus
    DATABASE_URL: str | None = None
    REDIS_URL: str | None = None
    DATA_DIR: str | None = None
    # network
    HOST: str = "0.0.0.0"
    PORT: int = setting(3001, 1, 65535)
    WORKERS: int = setting(1, 1, 64)
    CORS_ORIGINS: list[str] = field(default_factory=list)
    TRUSTED_PROXIES: list[str] = field(default_factory=list)
    MAX_BODY_BYTES: int = setting(1_048_576, 1024, 67_108_864)
    LOG_INGEST_MAX_BODY_BYTES: int = setting(8_388_608, 1024, 67_108_864)
    LOG_LEVEL: str = "info"
    # credentials and secrets
    SINDRI_CONSOLE_API_KEY: str | None = field(default=None, repr=False)
    SECRET_VAULT_KEY: str | None = field(default=None, repr=False)
    API_KEY_MAX_LIFETIME_DAYS: int | None = setting(None, 1, 3650)
    # CLI
    SINDRI_BIN_PATH: str | None = None
    SINDRI_MIN_INSTANCE_VERSION: str | None = None
    SINDRI_CLI_TIMEOUT_SECONDS: int = setting(300, 1, 3600)
    LIFECYCLE_MAX_CONCURRENCY: int = setting(4, 1, 64)
    # geo
    DEFAULT_GEO_LAT: float | None = setting(None, -90, 90)
    DEFAULT_GEO_LON: float | None = setting(None, -180, 180)
    DEFAULT_GEO_LABEL: str | None = None
    # health
    HEALTH_DB_TIMEOUT_MS: int = setting(2000, 10, 60_000)
    HEALTH_DB_SLOW_MS: int = setting(500, 1, 60_000)
    HEALTH_REDIS_TIMEOUT_MS: int = setting(1000, 10, 60_000)
    # rate limits (00 §6)
    RATE_LIMIT_ENABLED: bool = True
    RATE_LIMIT_READ_PER_MINUTE: int = setting(600, 1, None)
    RATE_LIMIT_WRITE_PER_MINUTE: int = setting(120, 1, None)
    RATE_LIMIT_INGEST_PER_MINUTE: int = setting(6000, 1, None)
    RATE_LIMIT_AUTH_FAILURES_PER_MINUTE: int = setting(30, 1, None)
    # retention (10-core §10)
    METRICS_RAW_RETENTION_DAYS: int = setting(14, 1, 3650)
    METRICS_1M_RETENTION_DAYS: int = setting(30, 1, 3650)
    METRICS_1H_RETENTION_DAYS: int = setting(400, 1, 3650)
    HEARTBEAT_RETENTION_DAYS: int = setting(7, 1, 3650)
    STATUS_HISTORY_RETENTION_DAYS: int = setting(400, 1, 3650)
    LOG_RETENTION_DAYS: int = setting(14, 1, 3650)
    EVENT_RETENTION_DAYS: int = setting(90, 1, 3650)
    AUDIT_RETENTION_DAYS: int = setting(365, 1, 3650)
    JOB_RETENTION_DAYS: int = setting(90, 1, 3650)
    COMMAND_RETENTION_DAYS: int = setting(90, 1, 3650)
    METRICS_STALE_SECONDS: int = setting(180, 1, 86_400)
    # log streams (10-core §12)
    SSE_KEEPALIVE_SECONDS: float = setting(15.0, 0.1, 3600)
    SSE_CLIENT_QUEUE_SIZE: int = setting(1000, 1, 1_000_000)
    SSE_REPLAY_LIMIT: int = setting(1000, 1, 100_000)
    SSE_MAX_LIFETIME_SECONDS: int = setting(1800, 1, 86_400)
    SSE_MAX_STREAMS_PER_KEY: int = setting(10, 1, 10_000)
    SSE_MAX_CLIENTS: int = setting(1000, 1, 100_000)
    # agents (40 §14)
    AGENT_IDENTIFY_TIMEOUT_SECONDS: float = setting(120, 1, 3600)
    AGENT_HELLO_GRACE_SECONDS: float = setting(5, 0, 60)
    AGENT_HEARTBEAT_LOSS_SECONDS: float = setting(90, 1, 86_400)
    AGENT_HEARTBEAT_LOSS_CHECK_SECONDS: float = setting(15, 0.1, 300)
    AGENT_MAX_FRAME_BYTES: int = setting(8_388_608, 65_536, 67_108_864)
    WS_PING_INTERVAL_SECONDS: float = setting(30, 1, 300)
    WS_PING_TIMEOUT_SECONDS: float = setting(30, 1, 300)
    WS_MAX_FRAME_BYTES: int = setting(262_144, 4096, 8_388_608)
    WS_MAX_SUBSCRIPTIONS: int = setting(200, 1, 10_000)
    WS_SEND_QUEUE_MAX_MESSAGES: int = setting(1000, 10, 100_000)
    # commands (20-ops §0.5, 40 §14)
    COMMAND_MAX_WAIT_SECONDS: int = setting(60, 0, 300)
    COMMAND_QUEUE_TTL_SECONDS: int = setting(600, 1, 86_400)
    COMMAND_OUTPUT_LIMIT_BYTES: int = setting(1_048_576, 1024, 4_194_304)
    COMMAND_RESULT_GRACE_SECONDS: int = setting(30, 1, 600)
    COMMAND_SWEEP_SECONDS: float = setting(5, 0.1, 60)
    # deployments (20-ops §0.5)
    DEPLOY_TIMEOUT_SECONDS: int = setting(900, 1, 7200)
    DEPLOY_MAX_CONCURRENCY: int = setting(4, 1, 64)
    DEPLOY_LOG_MAX_BYTES: int = setting(1_048_576, 65_536, 16_777_216)
    DEPLOY_DOCKER_HOSTS: list[str] = field(default_factory=list)
    DEPLOY_ALLOW_PRIVILEGED_DOCKER: bool = False
    SINDRI_CONSOLE_PUBLIC_URL: str | None = None
    # outbound HTTP (00 §9)
    OUTBOUND_ALLOWLIST: list[str] = field(default_factory=list)
    # loops
    LOOPS_ENABLED: bool = True

    # ---- derived ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        # secrets are left out (repr=False) and URL passwords masked: settings end up in tracebacks
        parts = []
        for f in fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if isinstance(value, str) and "://" in value:
                value = _URL_PASSWORD.sub(r"\1***@", value)
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"

    @property
    def data_dir(self) -> Path:
        if self.DATA_DIR:
            return Path(self.DATA_DIR)
        url = self.DATABASE_URL
        if url and url.startswith("sqlite") and ":///" in url:
            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                return Path(path).parent
        return Path("./data")

    @property
    def database_url(self) -> str:
        if self.DATABASE_URL:
            return self.DATABASE_URL
        return f"sqlite+aiosqlite:///{(self.data_dir / 'sindri-console.db').as_posix()}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def trusted_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(p, strict=False) for p in self.TRUSTED_PROXIES]


_PREFIXED_ALIASES = {"HOST": "SINDRI_CONSOLE_HOST", "PORT": "SINDRI_CONSOLE_PORT"}


def _read_file(path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        raise SettingsError(f"SINDRI_CONSOLE_CONFIG points at {path!r}, which cannot be read") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise SettingsError(f"SINDRI_CONSOLE_CONFIG line {lineno} is not NAME=value")
        k, _, v = line.partition("=")
        values[k.strip()] = v.strip().strip('"').strip("'")
    return values


def load_settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from the environment (and the optional file), then apply overrides."""
    source = dict(os.environ if env is None else env)
    cfg_file = source.get("SINDRI_CONSOLE_CONFIG")
    if cfg_file:
        merged = _read_file(cfg_file)
        merged.update(source)
        source = merged
    s = Settings()
    for f in fields(Settings):
        name = f.name
        raw = source.get(name)
        if raw is None and name in _PREFIXED_ALIASES:
            raw = source.get(_PREFIXED_ALIASES[name])
        if raw is None:
            continue
        if raw.strip() == "":
            if f.type in ("str | None", "int | None", "float | None"):
                setattr(s, name, None)
            continue
        setattr(s, name, _convert(f, raw))
    for name, value in overrides.items():
        if not hasattr(s, name):
            raise SettingsError(f"unknown setting {name}")
        setattr(s, name, value)
    validate(s)
    return s


def _convert(f: Any, raw: str) -> Any:
    lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
    t = f.type
    if t in ("int", "int | None"):
        return _int(f.name, raw, lo, hi)
    if t in ("float", "float | None"):
        return _float(f.name, raw, lo, hi)
    if t == "bool":
        return _bool(f.name, raw)
    if t == "list[str]":
        return _csv(raw)
    return raw


_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


def validate(s: Settings) -> None:
    """Cross-field rules; each failure names its setting."""
    url = s.database_url
    if not (url.startswith("sqlite+aiosqlite://") or url.startswith("postgresql+asyncpg://")):
        raise SettingsError("DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
    if s.REDIS_URL and not s.REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("REDIS_URL must start with redis://, rediss:// or unix://")
    if s.WORKERS > 1 and not s.REDIS_URL:
        raise SettingsError("WORKERS above 1 needs REDIS_URL: worker processes share streams, tickets and "
                            "agent routing through Redis")
    for name in ("HOST",):
        if not getattr(s, name):
            raise SettingsError(f"{name} must not be empty")
    for p in s.TRUSTED_PROXIES:
        try:
            ipaddress.ip_network(p, strict=False)
        except ValueError:
            raise SettingsError(f"TRUSTED_PROXIES entry {p!r} is not an address or CIDR") from None
    for p in s.OUTBOUND_ALLOWLIST:
        try:
            ipaddress.ip_network(p, strict=False)
        except ValueError:
            if not _HOSTNAME.match(p):
                raise SettingsError(f"OUTBOUND_ALLOWLIST entry {p!r} is neither a host name nor a CIDR") from None
    for o in s.CORS_ORIGINS:
        if o != "*" and not re.match(r"^https?://[^/\s]+$", o):
            raise SettingsError(f"CORS_ORIGINS entry {o!r} must look like https://host[:port]")
    if not (s.METRICS_1H_RETENTION_DAYS >= s.METRICS_1M_RETENTION_DAYS >= s.METRICS_RAW_RETENTION_DAYS):
        raise SettingsError(
            "METRICS_1H_RETENTION_DAYS must be >= METRICS_1M_RETENTION_DAYS >= METRICS_RAW_RETENTION_DAYS"
        )
    if (s.DEFAULT_GEO_LAT is None) != (s.DEFAULT_GEO_LON is None):
        raise SettingsError("DEFAULT_GEO_LAT and DEFAULT_GEO_LON must be set together")
    if s.SINDRI_MIN_INSTANCE_VERSION and not re.match(
        r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$", s.SINDRI_MIN_INSTANCE_VERSION
    ):
        raise SettingsError("SINDRI_MIN_INSTANCE_VERSION must be a semantic version such as 3.2.0")
    if s.SECRET_VAULT_KEY is not None:
        import base64
        import binascii

        raw = s.SECRET_VAULT_KEY.strip()
        ok = False
        if re.fullmatch(r"[0-9a-fA-F]{64}", raw):
            ok = True
        else:
            try:
                ok = len(base64.b64decode(raw, validate=True)) == 32
            except (binascii.Error, ValueError):
                ok = False
        if not ok:
            raise SettingsError("SECRET_VAULT_KEY must be 32 bytes as 64 hex characters or base64")
    if s.SINDRI_CONSOLE_PUBLIC_URL and not re.match(r"^https?://", s.SINDRI_CONSOLE_PUBLIC_URL):
        raise SettingsError("SINDRI_CONSOLE_PUBLIC_URL must be an http(s) URL")
    if s.LOG_LEVEL.lower() not in ("debug", "info", "warning", "warn", "error"):
        raise SettingsError("LOG_LEVEL must be one of debug, info, warn, error")
