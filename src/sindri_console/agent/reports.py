"""The configuration report used for drift detection (40-agent-protocol §4.13, §10.3, §10.8)."""

from __future__ import annotations

import hashlib
import os
import platform
import re
from typing import Any

import psutil

from sindri_console.agent.config import AgentConfig
from sindri_console.agent.util import CHILD_ENV_BLOCKED_PREFIXES, hostname, now_iso, read_os_release

MAX_CONFIG_BYTES = 256 * 1024
MAX_ENV_KEYS = 500
MAX_PORTS = 1000

# A YAML mapping entry: indentation, optional list dash, key, colon, value.
_YAML_ENTRY = re.compile(r"^(?P<indent>\s*(?:-\s+)?)(?P<key>[\"']?[\w.\-/]+[\"']?)(?P<sep>\s*:)(?P<rest>.*)$")
_SECRET_KEY = re.compile(r"(?i)(secret|token|password|key)")


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def redact_yaml_secrets(text: str) -> str:
    """Replace the values of secret-looking keys by ``***``, keeping the layout of the file (§10.8)."""
    out: list[str] = []
    hide_deeper_than: int | None = None
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        if hide_deeper_than is not None:
            if not body.strip() or _indent_of(body) > hide_deeper_than:
                out.append(line if not body.strip() else " " * _indent_of(body) + "***" + ending)
                continue
            hide_deeper_than = None
        match = _YAML_ENTRY.match(body)
        if match and _SECRET_KEY.search(match.group("key")):
            rest = match.group("rest")
            value = rest.split(" #", 1)[0].strip()
            if value:
                # A block scalar (| or >) or an inline value: either way the value is hidden.
                out.append(f"{match.group('indent')}{match.group('key')}{match.group('sep')} ***{ending}")
                if value[0] in "|>":
                    hide_deeper_than = _indent_of(body)
                continue
            # A nested mapping or list under a secret key: hide everything below it.
            hide_deeper_than = _indent_of(body)
        out.append(line)
    return "".join(out)


def _sindri_config(home: str | None) -> dict[str, Any] | None:
    candidates = [os.environ.get("SINDRI_CONFIG")]
    if home:
        candidates.append(os.path.join(home, "sindri.yaml"))
    candidates.append("/etc/sindri/sindri.yaml")
    for path in candidates:
        if not path or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_CONFIG_BYTES + 1)
                digest = hashlib.sha256(raw)
                while chunk := handle.read(1024 * 1024):
                    digest.update(chunk)
        except OSError:
            continue
        content = None
        if len(raw) <= MAX_CONFIG_BYTES:
            content = redact_yaml_secrets(raw.decode("utf-8", "replace"))
        return {"path": path, "sha256": digest.hexdigest(), "content": content}
    return None


def hashed_environment() -> dict[str, str]:
    """The agent's environment without its own settings; values only as SHA-256 hashes."""
    env: dict[str, str] = {}
    for key in sorted(os.environ):
        if key.startswith(CHILD_ENV_BLOCKED_PREFIXES):
            continue
        env[key] = "sha256:" + hashlib.sha256(os.environ[key].encode("utf-8", "surrogateescape")).hexdigest()
        if len(env) >= MAX_ENV_KEYS:
            break
    return env


def _listening_ports() -> list[int]:
    try:
        connections = psutil.net_connections("tcp")
    except (psutil.AccessDenied, OSError):
        return []
    ports = {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN and c.laddr}
    return sorted(ports)[:MAX_PORTS]


def config_report(config: AgentConfig, extensions: list[dict[str, Any]]) -> dict[str, Any]:
    release = read_os_release()
    try:
        disk_total = int(psutil.disk_usage("/").total)
    except OSError:
        disk_total = 0
    name = hostname()
    return {
        "timestamp": now_iso(),
        "hostname": name,
        "provider": config.provider,
        "region": config.region,
        "sindriConfig": _sindri_config(os.environ.get("HOME")),
        "extensions": [{"name": e["name"], "version": e.get("version"), "status": e.get("status")} for e in extensions],
        "env": hashed_environment(),
        "resources": {
            "cpuCount": psutil.cpu_count() or 1,
            "memoryTotalBytes": int(psutil.virtual_memory().total),
            "diskTotalBytes": disk_total,
        },
        "network": {"hostname": name, "listeningPorts": _listening_ports()},
        "os": {"id": release.get("ID"), "versionId": release.get("VERSION_ID"), "kernel": platform.release()},
    }
