"""Agent configuration from the environment (40-agent-protocol §10.1)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sindri_console.agent.util import hostname
from sindri_console.kit.providers import PROVIDER_ALIASES

EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h: the agent cannot run with this configuration


LOG_LEVELS = ("debug", "info", "warn", "error")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(Exception):
    """A configuration value the agent cannot start with; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class LogSource:
    pattern: str
    source: str


@dataclass(frozen=True)
class AgentConfig:
    console_url: str
    ws_url: str
    api_key: str = field(repr=False)
    ca_file: str | None
    allow_http: bool
    instance_id: str
    instance_name: str | None
    provider: str | None
    region: str | None
    tags: dict[str, str]
    heartbeat_seconds: float
    metrics_seconds: float
    processes_seconds: float
    extensions_seconds: float
    inventory_seconds: float
    config_seconds: float
    shell: str
    terminal_enabled: bool
    commands_enabled: bool
    max_commands: int
    max_output_bytes: int
    run_as: str | None
    log_files: tuple[LogSource, ...]
    log_from_start: bool
    pythons: tuple[str, ...]
    npm_roots: tuple[str, ...]
    state_dir: str
    backoff_max: float
    stable_after: float
    sindri_bin: str
    log_level: str

    def redacted(self) -> dict[str, object]:
        """The effective configuration as printed by ``--print-config``; the key never appears."""
        data = asdict(self)
        data["api_key"] = "***redacted***"
        data["log_files"] = [f"{item.pattern}={item.source}" for item in self.log_files]
        data["pythons"] = list(self.pythons)
        data["npm_roots"] = list(self.npm_roots)
        return data


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = _text(env, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(name, f"must be true or false, got {value!r}")


def _seconds(env: Mapping[str, str], name: str, default: float, minimum: float | None = None) -> float:
    value = _text(env, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(name, f"must be a number of seconds, got {value!r}") from None
    if not 0 < number < float("inf"):
        raise ConfigError(name, f"must be a number of seconds greater than 0, got {value!r}")
    if minimum is not None and number < minimum:
        raise ConfigError(name, f"must be at least {minimum} seconds, got {value!r}")
    return number


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    value = _text(env, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(name, f"must be an integer, got {value!r}") from None
    if number < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {value!r}")
    return number


def _is_loopback(host: str) -> bool:
    if host.lower() in {"localhost", "localhost.localdomain"} or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _urls(env: Mapping[str, str], allow_http: bool) -> tuple[str, str]:
    raw = _text(env, "SINDRI_CONSOLE_URL")
    if raw is None:
        raise ConfigError("SINDRI_CONSOLE_URL", "is required (the console's base URL)")
    base = raw[:-1] if raw.endswith("/") else raw
    parts = urlsplit(base)
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError("SINDRI_CONSOLE_URL", f"must be an http:// or https:// URL, got {raw!r}")
    if parts.query or parts.fragment:
        raise ConfigError("SINDRI_CONSOLE_URL", "must not contain a query or a fragment")
    if scheme == "http" and not allow_http and not _is_loopback(parts.hostname):
        raise ConfigError(
            "SINDRI_CONSOLE_URL",
            "http:// to a non-loopback host would send the key in clear; use https:// "
            "or set SINDRI_CONSOLE_ALLOW_HTTP=true",
        )
    ws_scheme = "wss" if scheme == "https" else "ws"
    return base, ws_scheme + base[len(parts.scheme) :]


def _api_key(env: Mapping[str, str]) -> str:
    key_file = _text(env, "SINDRI_CONSOLE_API_KEY_FILE")
    if key_file is not None:
        try:
            content = Path(key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            # a UnicodeDecodeError has no strerror
            reason = getattr(exc, "strerror", None) or exc
            raise ConfigError("SINDRI_CONSOLE_API_KEY_FILE", f"cannot be read: {reason}") from None
        key = content.rstrip("\r\n")
        if not key.strip():
            raise ConfigError("SINDRI_CONSOLE_API_KEY_FILE", "the file is empty")
        return key.strip()
    env_key = _text(env, "SINDRI_CONSOLE_API_KEY")
    if env_key is None:
        raise ConfigError("SINDRI_CONSOLE_API_KEY", "is required unless SINDRI_CONSOLE_API_KEY_FILE is set")
    return env_key


def _tags(env: Mapping[str, str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    raw = _text(env, "SINDRI_AGENT_TAGS")
    if raw is None:
        return tags
    for pair in raw.split(","):
        if "=" not in pair:
            continue
        key, _, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if key:
            tags[key] = value
    return tags


def _log_files(env: Mapping[str, str]) -> tuple[LogSource, ...]:
    raw = _text(env, "SINDRI_AGENT_LOG_FILES")
    if raw is None:
        return ()
    items: list[LogSource] = []
    for entry in raw.split(","):
        entry = entry.strip()
        if not entry:
            continue
        pattern, sep, source = entry.rpartition("=")
        if not sep:
            pattern, source = entry, "app"
        pattern, source = pattern.strip(), source.strip().lower() or "app"
        if not pattern:
            raise ConfigError("SINDRI_AGENT_LOG_FILES", f"entry {entry!r} has no file pattern")
        items.append(LogSource(pattern=os.path.expanduser(pattern), source=source))
    return tuple(items)


def _default_state_dir(env: Mapping[str, str]) -> str:
    xdg = _text(env, "XDG_STATE_HOME")
    if xdg:
        return str(Path(xdg) / "sindri-console-agent")
    home = _text(env, "HOME") or os.path.expanduser("~")
    return str(Path(home) / ".local" / "state" / "sindri-console-agent")


def load_config(env: Mapping[str, str] | None = None) -> AgentConfig:
    env = os.environ if env is None else env
    allow_http = _bool(env, "SINDRI_CONSOLE_ALLOW_HTTP", False)
    console_url, ws_url = _urls(env, allow_http)
    api_key = _api_key(env)

    ca_file = _text(env, "SINDRI_CONSOLE_CA_FILE")
    if ca_file is not None and not os.path.isfile(ca_file):
        raise ConfigError("SINDRI_CONSOLE_CA_FILE", f"{ca_file!r} is not a readable file")

    instance_id = _text(env, "SINDRI_INSTANCE_ID") or hostname()
    if len(instance_id) > 128:
        raise ConfigError("SINDRI_INSTANCE_ID", "must be at most 128 characters")

    provider = _text(env, "SINDRI_PROVIDER")
    if provider is not None:
        provider = PROVIDER_ALIASES.get(provider.lower(), provider.lower())

    log_level = (_text(env, "SINDRI_LOG_LEVEL") or "info").lower()
    if log_level == "warning":
        log_level = "warn"
    if log_level not in LOG_LEVELS:
        raise ConfigError("SINDRI_LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")

    pythons = tuple(p.strip() for p in (_text(env, "SINDRI_AGENT_PYTHONS") or "python3").split(",") if p.strip())
    home = _text(env, "HOME") or os.path.expanduser("~")
    npm_roots = tuple(
        p.strip() for p in (_text(env, "SINDRI_AGENT_NPM_ROOTS") or home).split(",") if p.strip()
    )

    return AgentConfig(
        console_url=console_url,
        ws_url=ws_url,
        api_key=api_key,
        ca_file=ca_file,
        allow_http=allow_http,
        instance_id=instance_id,
        instance_name=_text(env, "SINDRI_INSTANCE_NAME"),
        provider=provider,
        region=_text(env, "SINDRI_REGION"),
        tags=_tags(env),
        heartbeat_seconds=_seconds(env, "SINDRI_AGENT_HEARTBEAT", 30.0, minimum=0.5),
        metrics_seconds=_seconds(env, "SINDRI_AGENT_METRICS", 60.0, minimum=0.5),
        processes_seconds=_seconds(env, "SINDRI_AGENT_PROCESSES", 60.0),
        extensions_seconds=_seconds(env, "SINDRI_AGENT_EXTENSIONS", 300.0),
        inventory_seconds=_seconds(env, "SINDRI_AGENT_INVENTORY", 21600.0),
        config_seconds=_seconds(env, "SINDRI_AGENT_CONFIG", 3600.0),
        shell=_text(env, "SINDRI_AGENT_SHELL") or _text(env, "SHELL") or "/bin/bash",
        terminal_enabled=_bool(env, "SINDRI_AGENT_TERMINAL", True),
        commands_enabled=_bool(env, "SINDRI_AGENT_COMMANDS", True),
        max_commands=_int(env, "SINDRI_AGENT_MAX_COMMANDS", 8),
        max_output_bytes=_int(env, "SINDRI_AGENT_MAX_OUTPUT_BYTES", 1_048_576),
        run_as=_text(env, "SINDRI_AGENT_RUN_AS"),
        log_files=_log_files(env),
        log_from_start=_bool(env, "SINDRI_AGENT_LOG_FROM_START", False),
        pythons=pythons,
        npm_roots=npm_roots,
        state_dir=_text(env, "SINDRI_AGENT_STATE_DIR") or _default_state_dir(env),
        backoff_max=_seconds(env, "SINDRI_AGENT_BACKOFF_MAX", 60.0),
        stable_after=_seconds(env, "SINDRI_AGENT_STABLE_AFTER", 60.0),
        sindri_bin=_text(env, "SINDRI_BIN_PATH") or "sindri",
        log_level=log_level,
    )
